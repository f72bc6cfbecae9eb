"""experiments/plot_why.py: how a run's RL rounds are laid end to end on one rollout-batch axis."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from plot_why import curve  # noqa: E402


def test_curve_lays_rounds_end_to_end_and_drops_the_repeated_start():
    # RL only, 2 rounds of 4 rollout batches, validation every 2: round 2 starts from round 1's
    # last policy, so its first point is the same evaluation and is not drawn twice.
    report = {
        "curves": {
            "rl_2/val_accuracy": [[0, 0.60], [2, 0.62], [4, 0.61]],
            "rl_1/val_accuracy": [[0, 0.50], [2, 0.55], [4, 0.60]],
            "rl_1/val_sentence_score": [[0, 0.3], [2, 0.4], [4, 0.5]],
            "sft_1/val_accuracy": [[150, 0.7]],  # an ARES run's correction SFT: not an RL round
        }
    }
    assert curve(report, "val_accuracy") == ([0, 2, 4, 6, 8], [0.50, 0.55, 0.60, 0.62, 0.61])
    assert curve(report, "val_sentence_score") == ([0, 2, 4], [0.3, 0.4, 0.5])


def test_curve_offsets_by_each_rounds_own_length():
    report = {"curves": {"rl_1/seen_accuracy": [[0, 0.1], [16, 0.2]], "rl_2/seen_accuracy": [[0, 0.2], [8, 0.3]]}}
    assert curve(report, "seen_accuracy") == ([0, 16, 24], [0.1, 0.2, 0.3])

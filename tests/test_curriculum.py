"""Which training problems the SFT stages see: the rationale SFT's curriculum
(`rationale.first_kinds` / `first_steps`) and the problems with a gold rationale
(`data.gold_rationales`), with the start-up errors when the training split lacks them (a run with a
curriculum: tests/test_loop.py, the baseline-only run)."""

import json
from collections import Counter

import pytest
from conftest import TINY_SHAPES_RUN, stopped_at_start_up

from ares_jax.config import ConfigError, DataConfig, RationaleConfig
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.main import main
from ares_jax.sft.curriculum import first_stage_problems, gold_problems

TRAIN = make_split(ShapesTaskConfig(train_size=64), "train")


def test_first_stage_problems_are_those_of_the_chosen_kinds():
    curriculum = RationaleConfig(steps=100, batch_size=4, first_kinds=("count", "compare"), first_steps=5)
    chosen = first_stage_problems(TRAIN, curriculum)
    kinds = Counter(p.extras["question_kind"] for p in TRAIN)
    assert len(chosen) == kinds["count"] + kinds["compare"] > 0
    assert {p.extras["question_kind"] for p in chosen} == {"count", "compare"}
    assert all(p.question.startswith(("How many", "Are there more", "Which group")) for p in chosen)
    assert first_stage_problems(TRAIN, RationaleConfig()) == []  # no curriculum


def test_a_curriculum_without_its_problems_stops_at_start_up_naming_the_key(tmp_path, capsys):
    args = [f"workdir={tmp_path / 'run'}", *TINY_SHAPES_RUN, "data.shapes.kinds=[lookup]", "rationale.steps=6"]
    assert main([*args, "rationale.first_kinds=[count]", "rationale.first_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "bad configuration: rationale.first_kinds ['count']: 0 training problems, fewer than one batch (8)" in err
    assert "the training split's kinds: lookup (64)" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before anything was written


def test_gold_problems_are_the_first_of_the_training_split():
    every_gold = DataConfig(shapes=ShapesTaskConfig(gold_share=1.0))
    assert gold_problems(TRAIN, every_gold) is TRAIN  # 0: every problem keeps its gold rationale
    assert gold_problems(TRAIN, DataConfig(source="scienceqa", path="x")) is TRAIN  # a dataset's own: all
    assert gold_problems(TRAIN, DataConfig(gold_rationales=10)) == TRAIN[:10]
    assert gold_problems(TRAIN, DataConfig(gold_rationales=64)) == TRAIN
    with pytest.raises(
        ConfigError, match=r"data.gold_rationales=65: the training split \(train\) has only 64 problems"
    ):
        gold_problems(TRAIN, DataConfig(gold_rationales=65))


def test_the_built_in_task_keeps_gold_rationales_for_its_share_of_the_training_split():
    """The default run's task: the first 3 in 4 training problems with their gold rationale, the
    rest answer-only; an explicit `data.gold_rationales` count wins over the share."""
    assert DataConfig().shapes.gold_share == 0.75 and DataConfig().shapes.train_size == 4000
    assert gold_problems(TRAIN, DataConfig()) == TRAIN[:48]
    assert gold_problems(TRAIN, DataConfig(shapes=ShapesTaskConfig(gold_share=0.5))) == TRAIN[:32]
    assert gold_problems(TRAIN, DataConfig(gold_rationales=60)) == TRAIN[:60]
    with pytest.raises(ValueError, match=r"data.shapes.gold_share must be in \(0, 1\], got 1.5"):
        ShapesTaskConfig(gold_share=1.5)


def test_more_gold_rationales_than_training_problems_stops_at_start_up(tmp_path, capsys):
    err = stopped_at_start_up(tmp_path, capsys, "data.gold_rationales=65")
    assert "bad configuration: data.gold_rationales=65: the training split (train) has only 64 problems" in err


def test_sft_learns_the_gold_problems_and_the_teacher_corrects_any(tmp_path, sft_rows_seen):
    """data.gold_rationales=24: the baseline's rationale and answer SFT draw their batches from the
    first 24 training problems only; the round's corrections (drawn like RL's questions) come from
    all 64, and the correction SFT learns them."""
    args = [
        f"workdir={tmp_path}",
        *TINY_SHAPES_RUN,
        "data.gold_rationales=24",
        "rationale.steps=6",
        "rl.questions_per_round=16",
        "rl.epochs=1",
        "rl.value_warmup_batches=1",
    ]
    assert main(args) == 0
    # 6 rationale steps, 3 answer steps on the 24 gold problems, 4 correction steps on 16 corrections
    assert sft_rows_seen == [24] * 6 + [24] * 3 + [16] * 4
    gold_ids = {p.id for p in TRAIN[:24]}
    corrected = [r["id"] for r in json.loads((tmp_path / "corrections" / "round_1.json").read_text())]
    assert len(corrected) == 16 and not set(corrected) <= gold_ids
    assert set(corrected) <= {p.id for p in TRAIN}

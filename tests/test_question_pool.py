"""`rl.question_pool` (RL asks only the first N training problems) and `rl.seen_questions` (each
validation point also measures the round's own questions), and the start-up error when the
training split is shorter than the pool."""

import json

import numpy as np
from conftest import TINY_SHAPES_RUN, stopped_at_start_up

from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.loop import phases
from ares_jax.main import main

TRAIN = make_split(ShapesTaskConfig(train_size=64), "train")
VAL = make_split(ShapesTaskConfig(val_size=8), "val")


def _ids(path):
    return [row["id"] for row in json.loads(path.read_text())]


def test_rl_asks_only_the_pool_and_measures_its_own_questions(tmp_path, monkeypatch):
    rolled_out = []
    collect = phases.collect_rollout

    def recording_collect(run, params, reference, problems, *args):
        rolled_out.append([p.id for p in problems])
        return collect(run, params, reference, problems, *args)

    monkeypatch.setattr(phases, "collect_rollout", recording_collect)
    args = [
        f"workdir={tmp_path}",
        *TINY_SHAPES_RUN,
        "method=rl_only",
        "rationale.steps=6",
        "rl.questions_per_round=24",  # 3 rollout batches of 8 from a pool of 8: each question 3 times
        "rl.question_pool=8",
        "rl.seen_questions=8",
        "rl.eval_every=1",
        "rl.epochs=1",
        "rl.value_warmup_batches=1",
    ]
    assert main(args) == 0
    pool = {p.id for p in TRAIN[:8]}
    assert len(rolled_out) == 3 and all(sorted(batch) == sorted(pool) for batch in rolled_out)

    report = json.loads((tmp_path / "report.json").read_text())
    by_id = {p.id: p for p in TRAIN}
    for at in range(4):
        seen_file = tmp_path / "eval" / f"rl_1_seen_{at}.json"
        assert _ids(seen_file) == rolled_out[0]  # the round's first 8 questions, in its order
        assert sorted(_ids(tmp_path / "eval" / f"rl_1_val_{at}.json")) == sorted(p.id for p in VAL)
        # the seen_* points are measured on those questions (accuracy recomputed from the file)
        rows = json.loads(seen_file.read_text())
        accuracy = np.mean([row["answer"] == by_id[row["id"]].answer for row in rows])
        assert dict(map(tuple, report["curves"]["rl_1/seen_accuracy"]))[at] == accuracy
    for metric in ("sentence_score", "accuracy", "conclusion_accuracy", "response_tokens", "repeated_sentence"):
        assert [at for at, _ in report["curves"][f"rl_1/seen_{metric}"]] == [0, 1, 2, 3]
    assert "seen" not in json.dumps(report["validation"])  # the held-out table stays held-out
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum("seen_sentence_score" in line for line in metrics) == 4


def test_a_pool_larger_than_the_training_split_stops_at_start_up(tmp_path, capsys):
    err = stopped_at_start_up(tmp_path, capsys, "rl.question_pool=65")
    assert "bad configuration: rl.question_pool=65: the training split (train) has only 64 problems" in err

"""`rl.value_learning_rate` in a whole run: the value model's own AdamW is saved with the round's
checkpoints, and a round resumed from a checkpoint inside it ends as the unbroken round did."""

import json
import shutil

from conftest import TINY_SHAPES_RUN

from ares_jax.checkpoint import Checkpointer
from ares_jax.main import main

RUN = [
    *TINY_SHAPES_RUN,
    "method=rl_only",
    "rationale.steps=20",
    "rl.questions_per_round=32",  # 4 rollout batches of 8 questions, the first for the value model alone
    "rl.value_warmup_batches=1",
    "rl.value_learning_rate=0.003",
    "checkpoint.every_steps=2",  # a checkpoint after every rollout batch (2 PPO steps each)
    "checkpoint.keep=100",
]


def test_a_round_with_its_own_value_rate_resumes_from_inside_as_it_ran(tmp_path):
    whole = tmp_path / "whole"
    assert main([f"workdir={whole}", *RUN]) == 0
    report = json.loads((whole / "report.json").read_text())
    assert "over the value model (its own learning rate 0.003), warmed up alone" in (whole / "report.md").read_text()

    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    checkpoints = Checkpointer(resumed / "checkpoints", keep=100, read_only=True)
    records = {n: checkpoints.record(n) for n in checkpoints.numbers()}
    (inside, *_) = [n for n, r in records.items() if r["phase"] == "rl_1" and r["step"] == 2]
    assert "train" in records[inside]["trees"]  # the train state: both models' optimizer moments
    for n in records:
        if n > inside:
            shutil.rmtree(resumed / "checkpoints" / str(n))
    (resumed / "report.json").unlink()
    assert main([f"workdir={resumed}", *RUN]) == 0
    again = json.loads((resumed / "report.json").read_text())
    for key in ("phases", "curves", "ares"):  # every evaluation and curve
        assert again[key] == report[key], key

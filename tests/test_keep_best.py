"""`rl.keep_best`: an RL round ends with its policy at the best greedy validation point (model
selection on the validation split), and the start-up errors when there is no validation split to
select on, or it is the test split."""

import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_SHAPES_RUN

from ares_jax.checkpoint import Checkpointer
from ares_jax.config import load_config_args
from ares_jax.eval.report import validation_summary
from ares_jax.loop.phases import _keep_if_best
from ares_jax.loop.state import RunState
from ares_jax.main import main
from ares_jax.predict import main as predict

# A high learning rate moves the tiny policy far between validation points, so the policies of
# the round's points write different rationales (checked, not assumed). The tiny model scores 0 at
# every point, so the best is the first (ties keep the earlier point): the round returns to its
# start. A best point inside the round: the scripted test below.
RUN = [
    *TINY_SHAPES_RUN,
    "method=rl_only",
    "rationale.steps=60",
    "rationale.learning_rate=0.01",
    "rl.questions_per_round=24",
    "rl.eval_every=1",
    "rl.epochs=1",
    "rl.learning_rate=0.01",
    "rl.value_warmup_batches=0",
    "rl.keep_best=sentence_score",
    "checkpoint.every_steps=2",  # a checkpoint inside the round, which must hold the kept copy
    "checkpoint.keep=100",
]


def test_the_round_ends_with_its_best_validation_policy(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main([f"workdir={workdir}", *RUN]) == 0
    log = capsys.readouterr().out
    report = json.loads((workdir / "report.json").read_text())
    points = report["curves"]["rl_1/val_sentence_score"]
    assert [at for at, _ in points] == [0, 1, 2, 3]
    best_at, best = max(points, key=lambda point: point[1])  # the first of equal bests
    assert f"rl_1: the round ends with its policy after {best_at} rollout batches, val_sentence_score {best:.3f}" in log
    assert "each round ends with its policy of best validation sentence score" in (workdir / "report.md").read_text()
    assert report["kept_best"] == {"rl_1": best_at}
    accuracy = dict(map(tuple, report["curves"]["rl_1/val_accuracy"]))
    assert report["validation"]["rl_1"]["accuracy"] == accuracy[best_at]  # the kept point, not the last

    def rationales(path):
        return {line["id"]: line["rationale"] for line in map(json.loads, path.read_text().splitlines())}

    # the policy after the round (its checkpoint, as export and predict read it) writes on the
    # validation split exactly what the best point's policy wrote there
    out = tmp_path / "after_rl.jsonl"
    assert predict([f"workdir={workdir}", "phase=rl_1", "split=val", f"out={out}"]) == 0
    after = rationales(out)
    written = {at: json.loads((workdir / "eval" / f"rl_1_val_{at}.json").read_text()) for at, _ in points}
    assert after == {r["id"]: r["rationale"] for r in written[best_at]}
    others = [at for at, _ in points if at != best_at]
    assert any(after != {r["id"]: r["rationale"] for r in written[at]} for at in others)

    # a checkpoint inside the round holds the kept copy (a resumed round keeps it), and the
    # round's end hands that copy on as the policy
    checkpoints = Checkpointer(workdir / "checkpoints", keep=100, read_only=True)
    records = {n: checkpoints.record(n) for n in checkpoints.numbers()}
    inside = [n for n, record in records.items() if record["phase"] == "rl_1" and record["step"]]
    assert inside and all("best" in records[n]["trees"] for n in inside)
    assert all("best" not in record["trees"] for n, record in records.items() if n not in inside)
    kept = checkpoints.restore("best", None, inside[-1])
    final = checkpoints.restore("policy", None, checkpoints.numbers()[-1])
    jax.tree_util.tree_map(np.testing.assert_array_equal, kept, final)


def test_the_best_point_so_far_is_kept_and_ties_keep_the_earlier():
    config = load_config_args(["rl.keep_best=accuracy"])
    run, state = SimpleNamespace(config=config, val=["a problem"]), RunState()
    kept = []
    for at, (accuracy, score) in enumerate(
        [(0.50, 0.9), (0.625, 0.1), (0.5, 0.9), (0.625, 0.9), (0.75, 0.2), (0.25, 1.0)]
    ):
        state.add_point("rl_1/val_accuracy", at, accuracy)
        state.add_point("rl_1/val_sentence_score", at, score)
        _keep_if_best(run, state, "rl_1", {"w": jnp.full((2,), at)})
        kept.append(int(state.models.best["w"][0]))
        assert state.results["kept_best"] == {"rl_1": kept[-1]}
    assert kept == [0, 1, 1, 1, 4, 4]  # by accuracy, not by sentence score
    _keep_if_best(SimpleNamespace(config=load_config_args([]), val=["a problem"]), state, "rl_1", {"w": jnp.ones(2)})
    assert int(state.models.best["w"][0]) == 4  # keep_best '' copies nothing


def test_the_validation_table_shows_the_kept_point_of_a_round():
    curves = {
        "rl_1/val_accuracy": [[0, 0.50], [2, 0.60], [4, 0.55]],
        "rl_2/val_accuracy": [[0, 0.60], [2, 0.40], [4, 0.45]],
        "sft_2/val_accuracy": [[150, 0.58]],
    }
    assert validation_summary(curves) == {
        "baseline": {"accuracy": 0.50},
        "rl_1": {"accuracy": 0.55},
        "rl_2": {"accuracy": 0.45},
        "sft_2": {"accuracy": 0.58},
    }
    kept = validation_summary(curves, {"rl_1": 2, "rl_2": 0})
    assert kept == {
        "baseline": {"accuracy": 0.50},
        "rl_1": {"accuracy": 0.60},
        "rl_2": {"accuracy": 0.60},
        "sft_2": {"accuracy": 0.58},
    }


@pytest.mark.parametrize(
    "setting, message",
    [
        ("data.val_split=", "rl.keep_best selects on the validation split, and data.val_split is ''"),
        ("data.val_split=test", "rl.keep_best selects on data.val_split, which is the test split (test)"),
    ],
)
def test_keep_best_without_a_held_out_split_stops_at_start_up(tmp_path, capsys, setting, message):
    assert main([f"workdir={tmp_path / 'run'}", *RUN, setting]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()

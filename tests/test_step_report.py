"""The step report compiles the run's core steps and reports XLA's costs, memory and timings."""

from conftest import TINY_MODEL

from ares_jax.config import load_config
from ares_jax.tools.step_report import format_report, main, report

TINY = [
    "data.shapes.train_size=16",
    "data.vocab_size=300",
    *TINY_MODEL,
    "model.max_source_length=48",
    "model.max_target_length=16",
    "rationale.batch_size=4",
    "rl.prompts_per_rollout=4",
    "rl.k_samples=2",
    "rl.minibatch_size=8",
    "rl.questions_per_round=8",
    "ppo.accumulation_steps=2",
]


def test_step_report_of_the_core_steps(capsys):
    result = report(load_config(None, TINY), repeats=1, log=lambda line: None)
    assert result["peak_flops"] > 1e9 and "measured" in result["peak_source"]
    rows = {row["step"]: row for row in result["steps"]}
    assert list(rows) == ["sft_step", "sampling", "scoring", "ppo_step"]
    for row in rows.values():
        assert row["flops"] > 0 and row["bytes"] > 0 and row["seconds"] > 0 and row["temp"] > 0
        assert 0 < row["mfu"] < 1.5  # a measured fraction of the measured peak
    # An independent check of the FLOP counts: the PPO step runs policy and value forward and
    # backward (about 3 forward passes each) on 8 rows; scoring runs policy, reference and value
    # forward on the same 8 rows: a ratio of about 6 / 3. (The step's scan over its 2
    # micro-batches is counted once by XLA; the report scales it.)
    assert rows["ppo_step"]["batch"] == "8 x 48 -> 16, 2 micro-batch(es)"
    assert 1.6 < rows["ppo_step"]["flops"] / rows["scoring"]["flops"] < 2.4
    table = format_report(result)
    assert table.splitlines()[2].startswith("| step | batch | GFLOP / call")
    # bfloat16 compute (what the TPU/GPU MFU targets are measured in) compiles and runs too
    assert main(["--repeats=1", *TINY, "model.dtype=bfloat16"]) == 0 and "| ppo_step |" in capsys.readouterr().out

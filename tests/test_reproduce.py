"""The reproduction experiment (`experiments/reproduce.py`) on a tiny configuration, one seed:
every arm runs from one shared baseline and the table has its format. The figures of a tiny run
mean nothing; the full experiment is run by hand (README, "Reproducing ARES")."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SHAPES_RUN

from ares_jax.main import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [*TINY_SHAPES_RUN, "rationale.steps=20", "rl.questions_per_round=16", "rl.epochs=1"]
ARMS = ["baseline", "ares", "rl_only", "sequence_reward", "sft_more"]
PM = r"-?\d+\.\d+ ± \d+\.\d+"  # mean ± std


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    done = subprocess.run(
        [sys.executable, "experiments/reproduce.py", "--seeds", "0", "--out", str(out), *TINY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, (out / "results.md").read_text(), json.loads((out / "results.json").read_text())


def test_the_table_has_one_row_per_arm_with_mean_and_std(experiment):
    out, text, results = experiment
    assert text.startswith("# Reproducing ARES on the built-in task")
    assert f"--seeds 0 --out {out} data.shapes.train_size=64" in text  # the command that made it
    assert "CPU cores" in text  # the machine
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| arm |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    assert columns == [
        "arm",
        "answer accuracy %",
        "change vs baseline (points)",
        "win rate vs baseline %",
        "ROUGE-L",
        "sentence score",
        "repeated sentence %",
        "repeated n-gram %",
        "unfinished %",
        "Teacher requests (training)",
        "steps after baseline",
        "minutes",
    ]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[header + 2 : header + 2 + len(ARMS)]]
    assert [row[0] for row in rows] == ARMS
    for row in rows:
        assert len(row) == len(columns)
        for cell in row[1:4] + row[4:9] + row[11:]:
            assert cell == "–" or re.fullmatch(PM, cell), (row[0], cell)
    by_arm = {row[0]: row for row in rows}
    assert by_arm["baseline"][3] == "–" and re.fullmatch(PM, by_arm["ares"][3])
    # Steps after the baseline: one round of 16 questions / 8 per rollout x 1 epoch x 16 samples / 8
    # per minibatch = 4 PPO steps, + 4 correction SFT steps; SFT-more matches ARES.
    assert [by_arm[arm][10] for arm in ARMS] == ["0", "8", "4", "8", "8"]
    # Teacher feedback in training: RL scores 16 x 2 samples, corrections 16; none without RL.
    assert [by_arm[arm][9] for arm in ARMS] == ["0", "48", "32", "48", "0"]
    assert "ARES arm, phase by phase:" in text and "RL-only arm, phase by phase:" in text


def test_every_arm_starts_from_the_one_baseline(experiment):
    out, _, results = experiment
    runs = results["runs"]
    assert sorted(runs) == sorted(ARMS) and all(list(runs[arm]) == ["0"] for arm in ARMS)
    baseline = json.loads((out / "seed0" / "baseline" / "report.json").read_text())
    phases = {
        "baseline": ["baseline"],
        "ares": ["baseline", "rl_1", "sft_1"],
        "rl_only": ["baseline", "rl_1"],
        "sequence_reward": ["baseline", "rl_1", "sft_1"],
        "sft_more": ["baseline", "gold_1"],
    }
    for arm in ARMS[1:]:
        report = json.loads((out / "seed0" / arm / "report.json").read_text())
        assert list(report["phases"]) == phases[arm]
        assert report["baseline"] == baseline["baseline"]
        trained = {json.loads(line)["phase"] for line in (out / "seed0" / arm / "metrics.jsonl").open()}
        assert not trained & {"rationale_sft", "answer_sft"}, arm  # the baseline was not trained again
    assert (
        json.loads((out / "seed0" / "sequence_reward" / "report.json").read_text())["config"]["ppo"]["reward_placement"]
        == "sequence"
    )
    sft_more = json.loads((out / "seed0" / "sft_more" / "report.json").read_text())
    assert (
        sft_more["curves"]["gold_1/loss"][-1][0] == 7
    )  # 8 gold SFT steps: 4 PPO + 4 correction steps of an ARES round
    # held out: the SFT-more arm is measured before and after its gold SFT, like the RL arms
    assert [x for x, _ in sft_more["curves"]["gold_1/val_accuracy"]] == [0, 8]
    assert list(sft_more["validation"]) == ["baseline", "gold_1"]
    ares = json.loads((out / "seed0" / "ares" / "report.json").read_text())
    assert list(ares["validation"]) == ["baseline", "rl_1", "sft_1"]
    assert sft_more["validation"]["baseline"] == ares["validation"]["baseline"]  # one baseline, measured twice


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def test_baseline_from_reads_the_source_and_refuses_other_settings(experiment, tmp_path, capsys):
    out, _, _ = experiment
    source = out / "seed0" / "baseline"
    before = snapshot(source)
    args = [*TINY, "rounds=0", f"baseline_from={source}"]
    assert main([*args, f"workdir={tmp_path / 'copy'}"]) == 0
    assert snapshot(source) == before  # nothing in the source run was written
    copy = json.loads((tmp_path / "copy" / "report.json").read_text())
    assert copy["baseline"] == json.loads((source / "report.json").read_text())["baseline"]
    assert (tmp_path / "copy" / "eval" / "baseline.json").read_text() == (source / "eval" / "baseline.json").read_text()

    assert main([*args, "rationale.steps=21", f"workdir={tmp_path / 'other'}"]) == 2
    assert (
        f"baseline_from: {source}'s baseline was made with other settings (rationale.steps)" in capsys.readouterr().err
    )
    assert main([*TINY, "rounds=0", f"baseline_from={out / 'seed0' / 'ares'}", f"workdir={tmp_path / 'x'}"]) == 2
    assert "is not a finished baseline-only run (rounds=0" in capsys.readouterr().err
    assert main([*args[:-1], f"baseline_from={tmp_path / 'nothing'}", f"workdir={tmp_path / 'y'}"]) == 2
    assert "holds no checkpoints" in capsys.readouterr().err
    assert snapshot(source) == before

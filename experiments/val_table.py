"""The validation figures of tuning runs, one markdown row each (the tables in experiments/README.md).

    .venv/bin/python experiments/val_table.py runs/tune/*
    .venv/bin/python experiments/val_table.py --by-phase runs/ctune/*
    .venv/bin/python experiments/val_table.py --seen runs/mem/*

Per run (named by its folder): the greedy answer accuracy and mean sentence score on the validation
split at each evaluation of the RL round, the response length at the start and the end, and the last
rollout batch's KL to the reference. With --by-phase: accuracy / sentence score after each phase
(the report's held-out table). With --seen: also the accuracy and sentence score on the round's own
questions (`rl.seen_questions`) at each evaluation. Reads only report.json (a finished run)."""

import json
import pathlib
import sys

from ares_jax.eval.report import validation_summary


def row(workdir: pathlib.Path, prefixes=("val",)) -> str:
    report = json.loads((workdir / "report.json").read_text())
    curves = report["curves"]
    rounds = sorted({name.split("/")[0] for name in curves if name.startswith("rl_") and "/val_" in name})
    cells = []
    for phase in rounds:
        for prefix in prefixes:
            cells.append(" ".join(f"{y:.1%}" for _, y in curves[f"{phase}/{prefix}_accuracy"]))
            cells.append(" ".join(f"{y:.3f}" for _, y in curves[f"{phase}/{prefix}_sentence_score"]))
        tokens = [y for _, y in curves[f"{phase}/val_response_tokens"]]
        kl = curves.get(f"{phase}/kl", [[0, float("nan")]])[-1][1]
        cells.append(f"{tokens[0]:.1f} → {tokens[-1]:.1f} | {kl:.2f}")
    return f"| {workdir.name} | " + " | ".join(cells) + " |"


def phase_row(workdir: pathlib.Path) -> str:
    report = json.loads((workdir / "report.json").read_text())
    summary = validation_summary(report["curves"], report.get("kept_best"))
    return (
        f"| {workdir.name} | "
        + " | ".join(f"{phase} {m['accuracy']:.1%} / {m['sentence_score']:.3f}" for phase, m in summary.items())
        + " |"
    )


if __name__ == "__main__":
    if sys.argv[1] == "--by-phase":
        print("| run | validation accuracy / sentence score after each phase |\n|---|---|")
        for path in sys.argv[2:]:
            if (pathlib.Path(path) / "report.json").exists():
                print(phase_row(pathlib.Path(path)))
        sys.exit()
    seen = sys.argv[1] == "--seen"
    header = "| run | val accuracy at each evaluation | val sentence score at each evaluation |"
    if seen:
        header += " own questions: accuracy | own questions: sentence score |"
    print(header + " tokens | KL |\n" + "|---" * (header.count("|") + 1) + "|")
    for path in sys.argv[1 + seen :]:
        if (pathlib.Path(path) / "report.json").exists():
            print(row(pathlib.Path(path), ("val", "seen") if seen else ("val",)))

"""The validation figures of tuning runs, one markdown row each (the tables in experiments/README.md).

    .venv/bin/python experiments/val_table.py runs/tune/*
    .venv/bin/python experiments/val_table.py --by-phase runs/ctune/*

Per run (named by its folder): the greedy answer accuracy and mean sentence score on the validation
split at each evaluation of the RL round, the response length at the start and the end, and the last
rollout batch's KL to the reference. With --by-phase: accuracy / sentence score after each phase
(the report's held-out table). Reads only report.json (a finished run)."""

import json
import pathlib
import sys

from ares_jax.eval.report import validation_summary


def row(workdir: pathlib.Path) -> str:
    report = json.loads((workdir / "report.json").read_text())
    curves = report["curves"]
    rounds = sorted({name.split("/")[0] for name in curves if name.startswith("rl_") and "/val_" in name})
    cells = []
    for phase in rounds:
        acc = [y for _, y in curves[f"{phase}/val_accuracy"]]
        score = [y for _, y in curves[f"{phase}/val_sentence_score"]]
        tokens = [y for _, y in curves[f"{phase}/val_response_tokens"]]
        kl = curves.get(f"{phase}/kl", [[0, float("nan")]])[-1][1]
        cells.append(
            " ".join(f"{a:.1%}" for a in acc)
            + " | "
            + " ".join(f"{s:.3f}" for s in score)
            + f" | {tokens[0]:.1f} → {tokens[-1]:.1f} | {kl:.2f}"
        )
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
    print("| run | val accuracy at each evaluation | val sentence score at each evaluation | tokens | KL |")
    print("|---|---|---|---|---|")
    for path in sys.argv[1:]:
        if (pathlib.Path(path) / "report.json").exists():
            print(row(pathlib.Path(path)))

"""Two arms' final answers on one split, paired by problem and seed: is one ahead beyond the noise
of the problems?

    python experiments/paired_arms.py --a runs/pg2/ares4x2k_s{0,1,2} --b runs/pg2/corr2k_s{0,1,2} [--split test]
        [--measure accuracy|repeated_sentence|repeated_ngram|unfinished]

`--measure` a fluency defect (`eval.metrics.fluency`, per rationale) pairs that instead of the
answers' correctness: in points of the rationales (of their word n-grams for repeated_ngram).

Each `--a` run is paired with the `--b` run of the same position (the same seed's baseline, so
the same answer model). For each pair: both runs' last evaluation on the split (`eval/<last
phase>.json`; on validation the last phase's last point), each problem's correctness (1 or 0)
under A minus under B, its mean in points and the 95% interval over problems; then the same
over every problem of every pair (the seeds' models counted as fixed: the interval says how far
the problems alone could move the difference), and the mean and standard deviation of the
per-seed differences."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ares_jax.config import config_from_dict
from ares_jax.data.load import load_split
from ares_jax.eval.metrics import correctness_difference, fluency, mean_with_ci95

DEFECTS = ("repeated_sentence", "repeated_ngram", "unfinished")


def final_rows(workdir: Path, split: str) -> tuple[str, list[dict], object]:
    """(the run's last phase, its evaluation rows on `split`, the run's config)."""
    if not (workdir / "report.json").exists():
        raise SystemExit(f"{workdir}: no report.json (not a finished run)")
    report = json.loads((workdir / "report.json").read_text())
    phase = list(report["phases"])[-1]
    if split == "test":
        path = workdir / "eval" / f"{phase}.json"
    else:  # a validation point is named by the phase's step: the last one
        points = sorted((workdir / "eval").glob(f"{phase}_{split}_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        path = points[-1] if points else workdir / "eval" / f"{phase}_{split}_*.json"
    if not path.exists():
        raise SystemExit(f"{path}: no evaluation of the last phase ({phase}) on split {split}")
    return phase, json.loads(path.read_text()), config_from_dict(report["config"])


def b_in_order_of_a(rows_a: list[dict], rows_b: list[dict]) -> list[dict]:
    """B's evaluation rows in the order of A's problem ids; both must cover the same problems."""
    by_id_b = {row["id"]: row for row in rows_b}
    if sorted(by_id_b) != sorted(row["id"] for row in rows_a):
        raise SystemExit("the two runs were evaluated on different problems")
    return [by_id_b[row["id"]] for row in rows_a]


def paired_difference(rows_a: list[dict], rows_b: list[dict], answers: dict[str, int]) -> np.ndarray:
    """`eval.metrics.correctness_difference` `[N]` of two evaluations, their rows paired by
    problem id (in A's order)."""
    return correctness_difference(
        [row["answer"] for row in rows_a],
        [row["answer"] for row in b_in_order_of_a(rows_a, rows_b)],
        [answers[row["id"]] for row in rows_a],
    )


def paired_defect_difference(rows_a: list[dict], rows_b: list[dict], defect: str) -> np.ndarray:
    """`[N]` A's rationale's `defect` (`eval.metrics.fluency` of that rationale alone: 1 or 0, a
    share for repeated_ngram) minus B's, paired by problem id (in A's order)."""
    rows_b = b_in_order_of_a(rows_a, rows_b)
    return np.array(
        [fluency([a["rationale"]])[defect] - fluency([b["rationale"]])[defect] for a, b in zip(rows_a, rows_b)]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", nargs="+", type=Path, required=True)
    parser.add_argument("--b", nargs="+", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--measure", default="accuracy", choices=("accuracy", *DEFECTS))
    args = parser.parse_args(argv)
    if len(args.a) != len(args.b):
        raise SystemExit(f"--a has {len(args.a)} runs, --b {len(args.b)}: pair them seed by seed")
    print(f"{args.measure}, A - B\n")
    print("| A | B | A's phase | B's phase | A - B, points | 95% interval over problems |\n|---|---|---|---|---|---|")
    every, per_seed = [], []
    for run_a, run_b in zip(args.a, args.b):
        phase_a, rows_a, config = final_rows(run_a, args.split)
        phase_b, rows_b, _ = final_rows(run_b, args.split)
        if args.measure == "accuracy":
            answers = {problem.id: problem.answer for problem in load_split(config.data, args.split)}
            difference = paired_difference(rows_a, rows_b, answers)
        else:
            difference = paired_defect_difference(rows_a, rows_b, args.measure)
        mean, low, high = (100 * x for x in mean_with_ci95(difference))
        print(f"| {run_a} | {run_b} | {phase_a} | {phase_b} | {mean:+.1f} | {low:+.1f} to {high:+.1f} |")
        every.append(difference)
        per_seed.append(mean)
    mean, low, high = (100 * x for x in mean_with_ci95(np.concatenate(every)))
    spread = np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0.0
    print(
        f"\nover all {sum(map(len, every))} pairs: {mean:+.1f} points (95% interval over problems {low:+.1f} to "
        f"{high:+.1f}); per seed {np.mean(per_seed):+.1f} +- {spread:.1f} (standard deviation of {len(per_seed)})"
    )


if __name__ == "__main__":
    main()

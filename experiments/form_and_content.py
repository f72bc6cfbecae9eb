"""Form or content: how much of RL's held-out sentence-score gain is the neutral openings ("Let's
count the shapes.", a `Starter` claim, score 0.5) it stops writing, arm by arm, with intervals
over the problems; and the curves of it over the RL rounds.

    .venv/bin/python experiments/form_and_content.py --out docs/why_rl_estimators.png \
        --arm GAE=runs/reproduce_g3/seed{0,1,2}/rl_only runs/s8/rlgae_s{3,4} \
        --arm group=runs/reproduce_group/seed{0,1,2}/rl_only runs/s8/rlgroup_s{3,4}

Each run is RL only (`method=rl_only`) with its greedy validation files (`eval/rl_<r>_val_<batch>.json`)
and its test files (`eval/baseline.json`, `eval/rl_<last round>.json`). Per rationale: the mean
score of its sentences (the report's `mean_sentence_score`: a rationale with no scored sentence
counts 0) and the mean score of its sentences other than openings (rationales with no such
sentence left out). A run's gain is its last evaluation against its first (validation: the
round's start, the baseline's policy; test: the baseline phase). The table pairs the problems: per
problem, the mean over an arm's seeds of the end-minus-start change, and the 95% interval of the
mean over problems (`ares_jax.eval.metrics.mean_with_ci95`). Every split's problems are the same
for every seed (`data.shapes.seed`). Machine-independent: it rescores files with the rule Teacher.
`--val-only` leaves the test files unread (tuning, diagnostics).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from plot_why import curve, report_of, round_offsets, val_point_files  # noqa: E402
from rl_only_table import arm_of  # noqa: E402
from steps_table import read_rows  # noqa: E402

from ares_jax.config import load_config_args  # noqa: E402
from ares_jax.data.load import load_split  # noqa: E402
from ares_jax.data.prompts import strip_solution_tag  # noqa: E402
from ares_jax.data.shapes import claims as C  # noqa: E402
from ares_jax.eval.metrics import mean_with_ci95  # noqa: E402
from ares_jax.teacher.rule import RuleTeacher  # noqa: E402
from ares_jax.text.sentences import split_sentences  # noqa: E402


def per_rationale(rows: list[dict], problems: dict, teacher: RuleTeacher) -> dict[str, dict]:
    """{problem id: {"all": mean score of its sentences, "content": mean score of its sentences
    other than openings (absent when it has none), "openings": how many openings it has, "kind":
    the question's kind}}."""
    measures = {}
    for row in rows:
        sentences = split_sentences(strip_solution_tag(row["rationale"]))
        scores = teacher.sentence_scores(problems[row["id"]], sentences)
        opening = [isinstance(C.parse(s), C.Starter) for s in sentences]
        content = [score for score, is_opening in zip(scores, opening) if not is_opening]
        measure = {
            "all": float(np.mean(scores)) if scores else 0.0,
            "openings": float(sum(opening)),
            "kind": problems[row["id"]].extras["question_kind"],
        }
        if content:
            measure["content"] = float(np.mean(content))
        measures[row["id"]] = measure
    return measures


def split_mean(measures: dict[str, dict], key: str) -> float:
    return float(np.mean([m[key] for m in measures.values() if key in m]))


def val_points(workdir: Path, problems: dict, teacher: RuleTeacher) -> dict[int, dict]:
    """{rollout batch over the run: per_rationale of that validation point}; a later round's first
    point repeats the previous round's last (RL only: the same policy) and is kept once."""
    files = val_point_files(workdir, round_offsets(report_of(workdir), "val_accuracy"))
    return {batch: per_rationale(read_rows(path), problems, teacher) for batch, path in files.items()}


def test_pair(workdir: Path, problems: dict, teacher: RuleTeacher) -> tuple[dict, dict]:
    """per_rationale of the baseline's test evaluation and of the last RL round's."""
    rounds = [int(m.group(1)) for p in workdir.glob("eval/rl_*.json") if (m := re.fullmatch(r"rl_(\d+)", p.stem))]
    return tuple(
        per_rationale(read_rows(workdir / "eval" / name), problems, teacher)
        for name in ("baseline.json", f"rl_{max(rounds)}.json")
    )


def paired_change(pairs: list[tuple[dict, dict]], key: str) -> tuple[float, float, float]:
    """Mean over problems of the mean over runs of (end - start) for `key`, with its 95% interval;
    problems where some run lacks `key` at either end are left out."""
    common = set.intersection(*(set(a) & set(b) for a, b in pairs))
    changes = [
        np.mean([end[pid][key] - start[pid][key] for start, end in pairs])
        for pid in sorted(common)
        if all(key in start[pid] and key in end[pid] for start, end in pairs)
    ]
    return mean_with_ci95(changes)


def selective_drop(pairs: list[tuple[dict, dict]]) -> tuple[float, float]:
    """Where the openings went: over the rationales that had an opening at the start, the mean of
    (content score - 0.5) at the end where it has none left, and where it still has one. A neutral
    0.5 sentence lowers a rationale's mean score when the rest scores above 0.5 and raises it below,
    so dropping it only where the rest is good raises the mean without any sentence scoring more."""
    dropped, kept = [], []
    for start, end in pairs:
        for pid, before in start.items():
            after = end[pid]
            if before["openings"] and "content" in after:
                (kept if after["openings"] else dropped).append(after["content"] - 0.5)
    return tuple(float(np.mean(values)) if values else float("nan") for values in (dropped, kept))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="the figure (curves on validation); none: the table only")
    parser.add_argument("--arm", nargs="+", action="append", required=True, help="NAME=RUN RUN ...")
    parser.add_argument("--val-only", action="store_true", help="leave out the test split (tuning)")
    args = parser.parse_args(argv)

    config = load_config_args([])
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    split_problems = {split: {p.id: p for p in load_split(config.data, split)} for split in ("val", "test")}
    arms = {}
    for items in args.arm:
        name, runs = arm_of(items)
        arms[name] = [Path(run) for run in runs]

    curves, table = {}, []
    for name, runs in arms.items():
        points = [val_points(run, split_problems["val"], teacher) for run in runs]
        curves[name] = points
        val_pairs = [(p[min(p)], p[max(p)]) for p in points]
        splits = [("val", val_pairs)]
        if not args.val_only:
            splits.append(("test", [test_pair(run, split_problems["test"], teacher) for run in runs]))
        for split, pairs in splits:
            row = [name, split, len(runs)]
            for key in ("all", "content", "openings"):
                row.append(paired_change(pairs, key))
            row.append(np.mean([split_mean(start, "openings") for start, _ in pairs]))
            row.append([split_mean(end, "content") - split_mean(start, "content") for start, end in pairs])
            table.append(row)

    print("| arm | split | seeds | sentence score | without openings | by seed | openings per rationale | (from) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, split, seeds, *changes, openings_from, content_by_seed in table:
        cells = [f"{m:+.3f} ({lo:+.3f} to {hi:+.3f})" for m, lo, hi in changes[:2]]
        cells.append(", ".join(f"{c:+.3f}" for c in content_by_seed))
        m, lo, hi = changes[2]
        cells.append(f"{m:+.2f} ({lo:+.2f} to {hi:+.2f})")
        print(f"| {name} | {split} | {seeds} | " + " | ".join(cells) + f" | {openings_from:.2f} |")

    print("\nValidation, rationales without an opening by question kind, start -> end (all seeds):\n")
    kinds = sorted({m["kind"] for points in next(iter(curves.values())) for m in points[min(points)].values()})
    print("| arm | " + " | ".join(kinds) + " | content score where dropped / kept (minus 0.5) |")
    print("|---" * (len(kinds) + 2) + "|")
    for name, runs in curves.items():
        cells = []
        for kind in kinds:
            start, end = (
                np.mean(
                    [m["openings"] == 0 for points in runs for m in points[at(points)].values() if m["kind"] == kind]
                )
                for at in (min, max)
            )
            cells.append(f"{start:.2f} -> {end:.2f}")
        dropped, kept = selective_drop([(p[min(p)], p[max(p)]) for p in runs])
        print(f"| {name} | " + " | ".join(cells) + f" | {dropped:+.3f} / {kept:+.3f} |")
    starts = [m for points in next(iter(curves.values())) for m in points[min(points)].values() if "content" in m]
    print(
        f"\nContent score at the start ({next(iter(curves))}'s runs), by kind: "
        + ", ".join(f"{kind} {np.mean([m['content'] for m in starts if m['kind'] == kind]):.3f}" for kind in kinds)
    )

    if args.out:
        accuracies = {name: [curve(report_of(run), "val_accuracy")[1] for run in runs] for name, runs in arms.items()}
        plot(curves, accuracies, args.out)


def plot(curves: dict[str, list[dict[int, dict]]], accuracies: dict[str, list[list[float]]], out: Path) -> None:
    """Four panels over the rollout batches, validation: the change of the sentence score, of the
    score without openings, the openings per rationale and the accuracy's change (from each run's
    report); thin lines per seed, thick the mean."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = (
        ("all", "(a) sentence score, change from the baseline", True),
        ("content", "(b) the same without the neutral openings", True),
        ("openings", "(c) neutral openings per rationale", False),
    )
    for i, (name, runs) in enumerate(curves.items()):
        for ax, (key, title, as_change) in zip(axes.flat, panels):
            lines = [[split_mean(m, key) for m in points.values()] for points in runs]
            draw(ax, list(runs[0]), [[v - line[0] for v in line] if as_change else line for line in lines], i, name)
            ax.set_title(title)
        draw(axes[1, 1], list(runs[0]), [[100 * (v - line[0]) for v in line] for line in accuracies[name]], i, name)
    axes[1, 1].set_title("(d) answer accuracy, change from the baseline (points)")
    for ax in axes.flat:
        ax.set_xlabel("rollout batch (RL only, 2 rounds of 4; validation, greedy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("change (thin: one seed; thick: mean)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def draw(ax, batches: list[int], lines: list[list[float]], color: int, label: str) -> None:
    for line in lines:
        ax.plot(batches, line, color=f"C{color}", alpha=0.3, linewidth=1)
    ax.plot(batches, np.mean(lines, axis=0), color=f"C{color}", marker="o", linewidth=2.5, label=label)


if __name__ == "__main__":
    main()

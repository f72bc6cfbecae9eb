"""The curves behind README "Why RL did not learn": one figure of six panels from finished runs.

    .venv/bin/python experiments/plot_why.py --out docs/why_rl_curves.png \
        --default runs/tune2/R2default runs/kb/rl_s1 runs/kb/rl_s2 \
        --pool runs/mem/q128_s0 runs/mem/q128_s1 runs/mem/q128_s2 --long runs/mem/all8192_s0

--default: RL only at the default budget (one line per seed); --pool: RL on a pool of 128
training questions with `rl.seen_questions` (finding 17); --long: one run of 16 times the
default's rollouts with its greedy validation files (`eval/rl_1_val_<batch>.json`). The x axis is
the rollout batch counted over the run's rounds. Sentence scores and accuracies come from each
run's report.json; what the held-out rationales say (claims per rationale, mean score by claim) is
recomputed from the evaluation files with the rule Teacher, as `scores_by_claim.py` does.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scores_by_claim import by_claim  # noqa: E402
from steps_table import read_rows  # noqa: E402

from ares_jax.config import load_config_args  # noqa: E402
from ares_jax.data.load import load_split  # noqa: E402
from ares_jax.teacher.rule import RuleTeacher  # noqa: E402


def rl_rounds(report: dict, name: str) -> list[int]:
    """The RL rounds of a run that have the curve `rl_<round>/<name>`, in order."""
    found = (re.fullmatch(rf"rl_(\d+)/{name}", key) for key in report["curves"])
    return sorted(int(match.group(1)) for match in found if match)


def round_offsets(report: dict, name: str) -> dict[int, int]:
    """{RL round: the rollout batches of the rounds before it}, from the last point of each round's
    `rl_<round>/<name>` curve (each round evaluates after its last batch)."""
    offsets, offset = {}, 0
    for r in rl_rounds(report, name):
        offsets[r] = offset
        offset += report["curves"][f"rl_{r}/{name}"][-1][0]
    return offsets


def curve(report: dict, name: str) -> tuple[list[int], list[float]]:
    """`<round>/<name>` over every RL round of a run, as (rollout batch over the run, value); a
    round's first point repeats the previous round's last (RL only: the same policy) and is dropped."""
    batches, values = [], []
    for r, offset in round_offsets(report, name).items():
        points = report["curves"][f"rl_{r}/{name}"]
        for step, value in points[1:] if batches else points:
            batches.append(offset + step)
            values.append(value)
    return batches, values


def report_of(workdir: Path) -> dict:
    return json.loads((workdir / "report.json").read_text())


def val_point_files(workdir: Path, offsets: dict[int, int]) -> dict[int, Path]:
    """{rollout batch over the run: the run's `eval/rl_<r>_val_<batch>.json`} (`offsets`: from
    `round_offsets`); a round's first point repeats the previous round's last (RL only: the same
    policy) and the earlier file is kept."""
    files = {}
    for path in sorted(workdir.glob("eval/rl_*_val_*.json")):
        r, batch = map(int, re.fullmatch(r"rl_(\d+)_val_(\d+)", path.stem).groups())
        files.setdefault(offsets[r] + batch, path)
    return dict(sorted(files.items()))


def claims_per_point(workdir: Path, problems: dict, teacher: RuleTeacher, offsets: dict[int, int]):
    """{rollout batch over the run: ({claim kind: scores}, rationales)} from the run's validation
    files (`val_point_files`)."""
    points = {}
    for batch, path in val_point_files(workdir, offsets).items():
        rows = read_rows(path)
        points[batch] = (by_claim(rows, problems, teacher), len(rows))
    return points


def plot_per_rationale(ax, points: dict, kinds: tuple[tuple[str, str], ...]):
    """One line per (claim kind, label): how many such sentences a rationale holds at each point."""
    for kind, label in kinds:
        per_rationale = [len(scores.get(kind, [])) / rationales for scores, rationales in points.values()]
        ax.plot(list(points), per_rationale, marker="o", label=label)


def mean_score(points: dict, kind: str) -> list[float]:
    return [sum(s[kind]) / len(s[kind]) if s.get(kind) else float("nan") for s, _ in points.values()]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--default", nargs="+", type=Path, required=True)
    parser.add_argument("--pool", nargs="+", type=Path, required=True)
    parser.add_argument("--long", type=Path, required=True)
    args = parser.parse_args(argv)

    config = load_config_args([])
    problems = {p.id: p for p in load_split(config.data, "val")}
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))

    # (a, b) RL only at the default budget: the held-out score rises a little, accuracy wanders
    for workdir in args.default:
        report = report_of(workdir)
        for ax, name, scale in ((axes[0, 0], "val_sentence_score", 1), (axes[0, 1], "val_accuracy", 100)):
            x, y = curve(report, name)
            ax.plot(x, [scale * (v - y[0]) for v in y], marker="o", label=f"seed {report['config']['seed']}")
    axes[0, 0].axhline(0.03, color="grey", linestyle=":", label="#19's aim on test (+0.03)")
    axes[0, 0].set_title("(a) RL only, default budget: held-out sentence score")
    axes[0, 0].set_ylabel("change from the baseline")
    axes[0, 1].set_title("(b) RL only, default budget: held-out accuracy")
    axes[0, 1].set_ylabel("change from the baseline (points)")

    # (c) what RL learns at the default budget is form: starters go, listings turn empty
    first = args.default[0]
    report = report_of(first)
    points = claims_per_point(first, problems, teacher, round_offsets(report, "val_accuracy"))
    plot_per_rationale(
        axes[0, 2],
        points,
        (
            ("Starter", "opening starters"),
            ("empty listing", "listings naming no cell"),
            ("Listing", "listings naming cells"),
        ),
    )
    axes[0, 2].set_title(f"(c) RL only, default budget, seed {report['config']['seed']}: held-out")
    axes[0, 2].set_ylabel("per rationale")

    # (d) RL learns the questions it samples again and again, not new ones
    for i, workdir in enumerate(args.pool):
        report = report_of(workdir)
        seed = report["config"]["seed"]
        for name, style, label in (("val_sentence_score", "-", "held-out"), ("seen_sentence_score", "--", "own")):
            x, y = curve(report, name)
            axes[1, 0].plot(x, [v - y[0] for v in y], style, color=f"C{i}", marker="o", label=f"seed {seed}, {label}")
    axes[1, 0].set_title("(d) 128 questions sampled 32 times: own vs held-out")
    axes[1, 0].set_ylabel("sentence score, change from the start")

    # (e, f) sixteen times the rollouts: cells are read better, the steps it gets wrong go
    report = report_of(args.long)
    x, y = curve(report, "val_sentence_score")
    axes[1, 1].plot(x, y, marker="o", color="black", label="all sentences")
    points = claims_per_point(args.long, problems, teacher, round_offsets(report, "val_accuracy"))
    for kind, label in (("Cell", "a cell's content"), ("Answer", "the final answer")):
        axes[1, 1].plot(list(points), mean_score(points, kind), marker="o", label=label)
    long_seed = report["config"]["seed"]
    axes[1, 1].set_title(f"(e) RL only, 16x the rollouts, seed {long_seed}: held-out mean score")
    axes[1, 1].set_ylabel("the Teacher's mean score")
    plot_per_rationale(
        axes[1, 2],
        points,
        (
            ("Listing", "listings naming cells"),
            ("Count", "counts"),
            ("Starter", "opening starters"),
            ("empty listing", "listings naming no cell"),
        ),
    )
    x, y = curve(report, "val_accuracy")
    axes[1, 2].plot(x, y, marker="o", color="black", label="accuracy")
    axes[1, 2].set_title(f"(f) RL only, 16x the rollouts, seed {long_seed}: held-out")
    axes[1, 2].set_ylabel("per rationale / accuracy")
    axes[1, 2].set_ylim(0, 0.95)  # room for the legend above the curves

    for ax in axes.flat:
        ax.set_xlabel("rollout batch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3 if ax is axes[1, 2] else 1)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

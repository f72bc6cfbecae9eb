"""What decides the rule judge's judgements of a run's rationales against its baseline's, and how
far the run got toward the Teacher's own corrections of the baseline's rationales.

    .venv/bin/python experiments/judgements.py --split val \
        --arm ARES=runs/reproduce_g3/seed{0,1,2}/ares --arm SFT-more=runs/reproduce_g3/seed{0,1,2}/sft_more
    .venv/bin/python experiments/judgements.py --split val --arm all-gold=A_s0.jsonl:B_s0.jsonl A_s1.jsonl:B_s1.jsonl

The rule judge (`RuleTeacher.quality`) orders two rationales by a right conclusion, then the mean
sentence score, less 0.25 per fluency defect; a tie is half a win (`ares_jax.eval.win_rate`). Per
problem, the run's last evaluation (A: test, the last phase's `eval/<phase>.json`; validation, the
last phase's last `eval/<phase>_val_<step>.json`) against its first (B: `eval/baseline.json`; the
first validation point, the baseline's policy) falls in one of (an item `A.jsonl:B.jsonl` names the two
files instead, evaluation or `ares_jax.predict` files of `--split`: any two models' rationales):

  same text           A and B wrote the same rationale: a tie;
  same score, right   different words, the same scores, the right conclusion: a tie that only
                      form can break (a neutral opening dropped raises a mean above 0.5);
  same score, wrong   the same, without the right conclusion: a tie that better content breaks;
  A / B concludes     only one of them states the right answer: decided by the conclusion;
  A / B scores more   both or neither conclude: decided by the mean sentence score (and defects).

`corrected` is the same judge's rate for the Teacher's corrections of B's rationales
(`RuleTeacher.corrected`) against B: what a model that wrote the corrected rationale of every
problem would win, the mark for what the correction SFT could teach (a model that also drops
neutral openings could pass it). `of the way` is
(win rate - 0.5) / (corrected - 0.5). `accuracy A - B`: the change of answer accuracy in points (the
answers the files hold: the answer model's). `for 65%` is the share of the decided problems A would
have to win for a 65% win rate with the ties as they are. Means over the runs of an arm.
`--without-openings` takes the neutral opening sentences out of every rationale first
(`wins_without_openings.without_openings`): the judgements on content alone.
Machine-independent: it rescores files with the rule Teacher.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from plot_why import report_of
from rl_only_table import arm_of
from steps_table import read_rows
from wins_without_openings import without_openings

from ares_jax.config import load_config_args
from ares_jax.data.load import load_split
from ares_jax.eval.metrics import correctness_difference, mean_with_ci95
from ares_jax.teacher.rule import RuleTeacher

OUTCOMES = (
    "same text",
    "same score, right",
    "same score, wrong",
    "A concludes",
    "B concludes",
    "A scores more",
    "B scores more",
)
WON_BY_A = ("A concludes", "A scores more")
TIES = ("same text", "same score, right", "same score, wrong")
TARGET = 0.65  # #19's win rate


def outcome(teacher: RuleTeacher, problem, rationale_a: str, rationale_b: str) -> str:
    """Which of OUTCOMES the rule judge's verdict on A against B is."""
    if rationale_a.strip() == rationale_b.strip():
        return "same text"
    verdict = teacher.verdict(problem, rationale_a, rationale_b)
    if verdict == "tie":
        return "same score, right" if teacher.concludes(problem, rationale_a) else "same score, wrong"
    winner = "A" if verdict == "a" else "B"
    if teacher.concludes(problem, rationale_a) != teacher.concludes(problem, rationale_b):
        return f"{winner} concludes"
    return f"{winner} scores more"


def outcomes(teacher: RuleTeacher, problems: dict, rows_a: dict, rows_b: dict) -> list[str]:
    """`outcome` of A's rationale against B's ({id: rationale}) on each problem both hold."""
    return [outcome(teacher, problems[i], rows_a[i], rows_b[i]) for i in sorted(rows_a.keys() & rows_b.keys())]


def win_points(judged: list[str]) -> list[float]:
    """A's points per problem: 1 for a win, 0.5 for a tie, 0 for a loss."""
    return [1.0 if name in WON_BY_A else 0.5 if name in TIES else 0.0 for name in judged]


def shares_of(judged: list[str]) -> dict[str, float]:
    """{outcome: share of the problems} and the win rate (a tie half a win)."""
    counts = Counter(judged)
    shares = {name: counts[name] / len(judged) for name in OUTCOMES}
    shares["win rate"] = sum(win_points(judged)) / len(judged)
    return shares


def corrections_win_rate(teacher: RuleTeacher, problems: dict, rows: dict) -> float:
    """The win rate of the Teacher's corrections of `rows` against `rows`."""
    fixed = {i: teacher.corrected(problems[i], text) for i, text in rows.items()}
    return shares_of(outcomes(teacher, problems, fixed, rows))["win rate"]


def with_corrections(shares: dict[str, float], corrected: float) -> dict[str, float]:
    """`shares` with the columns that compare them with the corrections' win rate."""
    return shares | {
        "corrected": corrected,
        "of the way": (shares["win rate"] - 0.5) / (corrected - 0.5),
        f"for {TARGET:.0%}": needed_for(TARGET, shares),
    }


def judge_against(teacher: RuleTeacher, problems: dict, rows_a: dict, rows_b: dict):
    """(`with_corrections` of A's judgements against B, A's points per problem)."""
    judged = outcomes(teacher, problems, rows_a, rows_b)
    return with_corrections(shares_of(judged), corrections_win_rate(teacher, problems, rows_b)), win_points(judged)


def needed_for(target: float, shares: dict[str, float]) -> float:
    """The share of the decided problems A must win for `target` with the ties as they are."""
    ties = sum(shares[name] for name in TIES)
    return (target - 0.5 * ties) / (1.0 - ties) if ties < 1.0 else float("nan")


def accuracy_change(problems: dict, rows_a: dict, rows_b: dict) -> float:
    """A's answer accuracy minus B's (a fraction) on the problems both hold (`rows_on`'s rows)."""
    both = sorted(rows_a.keys() & rows_b.keys())
    answers_a, answers_b = ([rows[i]["answer"] for i in both] for rows in (rows_a, rows_b))
    return float(correctness_difference(answers_a, answers_b, [problems[i].answer for i in both]).mean())


def first_and_last(workdir: Path, split: str) -> tuple[Path, Path]:
    """(the baseline's evaluation file, the last phase's) of a run on `split` (test or val)."""
    phases = list(report_of(workdir)["phases"])
    if split == "test":
        return workdir / "eval" / "baseline.json", workdir / "eval" / f"{phases[-1]}.json"

    def points(phase: str) -> list[Path]:
        files = workdir.glob(f"eval/{phase}_val_*.json")
        return sorted(files, key=lambda p: int(re.fullmatch(rf"{phase}_val_(\d+)", p.stem).group(1)))

    trained = [phase for phase in phases if phase != "baseline" and points(phase)]
    if not trained:
        raise SystemExit(f"{workdir}: no validation files (eval/<phase>_val_<step>.json)")
    return points(trained[0])[0], points(trained[-1])[-1]


def files_of(item: str, split: str) -> tuple[Path, Path]:
    """(B's file, A's file) of an `--arm` item: a run (`first_and_last`) or `A.jsonl:B.jsonl`."""
    if ":" not in item:
        return first_and_last(Path(item), split)
    path_a, path_b = map(Path, item.split(":"))
    for path in (path_a, path_b):
        if not path.is_file():
            raise SystemExit(f"{item}: no file {path}")
    return path_b, path_a


def rows_on(path: Path, problems: dict, split: str, hint: str = "set --split") -> dict[str, dict]:
    """{id: row} of an evaluation or predict file whose problems are all of `split`; a file with
    others stops with its name and `hint`."""
    rows = {row["id"]: row for row in read_rows(path)}
    strangers = sorted(rows.keys() - problems.keys())
    if strangers:
        raise SystemExit(f"{path}: holds problems not of split {split} ({len(strangers)}, e.g. {strangers[0]}); {hint}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--arm", nargs="+", action="append", required=True, help="NAME=RUN RUN ... or NAME=A.jsonl:B.jsonl ..."
    )
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--without-openings", action="store_true", help="neutral openings taken out of both")
    args = parser.parse_args(argv)
    config = load_config_args([])
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    problems = {p.id: p for p in load_split(config.data, args.split)}

    text_of = without_openings if args.without_openings else str.strip
    columns = (
        ("win rate", "95% interval", "accuracy A - B") + OUTCOMES + ("corrected", "of the way", f"for {TARGET:.0%}")
    )
    print(
        f"judgements of each run's last {args.split} evaluation against its baseline's (A against B for a pair)"
        + (", neutral openings taken out" if args.without_openings else "")
        + " (% of the problems; the interval over the problems of all runs)\n"
    )
    print("| arm | runs | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for items in args.arm:
        name, runs = arm_of(items)
        rows, points = [], []
        for run in runs:
            path_b, path_a = files_of(run, args.split)
            rows_a, rows_b = (rows_on(path, problems, args.split) for path in (path_a, path_b))
            texts_a, texts_b = ({i: text_of(row["rationale"]) for i, row in r.items()} for r in (rows_a, rows_b))
            shares, run_points = judge_against(teacher, problems, texts_a, texts_b)
            rows.append(shares | {"accuracy A - B": accuracy_change(problems, rows_a, rows_b)})
            points += run_points
        print(f"| {name} | {len(rows)} | " + " | ".join(table_cells(rows, points, columns)) + " |")


def table_cells(rows: list[dict[str, float]], points: list[float], columns: tuple[str, ...]) -> list[str]:
    """Each column's mean over the runs (%), and the win rate's 95% interval over `points`."""
    _, low, high = mean_with_ci95(points)
    return [
        f"{100 * low:.1f} to {100 * high:.1f}"
        if column == "95% interval"
        else f"{100 * sum(row[column] for row in rows) / len(rows):.1f}"
        for column in columns
    ]


if __name__ == "__main__":
    main()

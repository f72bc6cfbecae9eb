"""The judgements of `judgements.py` on the training problems, grouped by what the loop did with
them: does a run get further toward the Teacher's corrections on the problems it was corrected
on than on the others?

    .venv/bin/python -m ares_jax.predict workdir=RUN split=train out=RUN_train.jsonl   # and the baseline's
    .venv/bin/python experiments/judgements_seen.py --arm ARES=RUN:RUN_train.jsonl:BASE_train.jsonl ...

Each `--arm` item is an ARES run's work directory (its corrections define the groups), a model's
greedy rationales on the training split (`ares_jax.predict`; the run's, or for a control arm such
as SFT-more those of another run from the same baseline) and the baseline's, joined by ':'.
Groups: the training problems with a gold rationale (the baseline's SFT data), and those without
one (answer-only) that the Teacher corrected in the run's last round, in an earlier round only,
or never (`corrections/round_<r>.json`).
Columns as in `judgements.py`; means over the runs of an arm. `key=value` arguments give the runs'
data settings where they are not the defaults (the training split is regenerated from them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from judgements import TARGET, judge_against, rows_on, table_cells
from plot_why import report_of
from rl_only_table import arm_of

from ares_jax.config import EARLIER_BEHAVIOUR, gold_count, load_config_args
from ares_jax.data.load import load_split
from ares_jax.teacher.rule import RuleTeacher

GROUPS = ("gold", "corrected last round", "corrected earlier", "never corrected")
COLUMNS = ("win rate", "95% interval", "A concludes", "B concludes", "corrected", "of the way", f"for {TARGET:.0%}")


def groups_of(workdir: Path, problems: dict) -> dict[str, set[str]]:
    """{group: problem ids} of the training problems (`problems`: {id: problem} in the split's
    order, whose first `gold_count` had their gold rationale in the run's SFT) for a run."""
    rounds = sorted(workdir.glob("corrections/round_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if not rounds:
        raise SystemExit(f"{workdir}: no corrections/round_<r>.json (not an ARES run?)")
    corrected = [{row["id"] for row in json.loads(path.read_text())} for path in rounds]
    data = report_of(workdir)["config"]["data"]
    share = data.get("shapes", {}).get("gold_share", EARLIER_BEHAVIOUR["data"]["shapes"]["gold_share"])
    golden = gold_count(data["source"], data.get("gold_rationales", 0), len(problems), share)  # as the report reads it
    answer_only = set(list(problems)[golden:])
    earlier = set().union(*corrected[:-1]) - corrected[-1]
    return {
        "gold": set(problems) - answer_only,
        "corrected last round": answer_only & corrected[-1],
        "corrected earlier": answer_only & earlier,
        "never corrected": answer_only - corrected[-1] - earlier,
    }


def training_rationales(path: Path, problems: dict) -> dict[str, str]:
    """{id: rationale} of a predict file on the whole training split (`problems`); a file of
    another split, or of part of this one, stops with its name."""
    hint = "predict with split=train, and give the runs' data settings as key=value"
    rows = rows_on(path, problems, "train", hint)
    missing = sorted(problems.keys() - rows.keys())
    if missing:
        raise SystemExit(
            f"{path}: lacks {len(missing)} of the {len(problems)} training problems (e.g. {missing[0]}); {hint}"
        )
    return {i: row["rationale"] for i, row in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm", nargs="+", action="append", required=True, help="NAME=RUN:MODEL.jsonl:BASE.jsonl ...")
    args, overrides = parser.parse_known_args(argv)
    config = load_config_args(overrides)  # the runs' data settings, e.g. data.shapes.train_size=8000
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    problems = {p.id: p for p in load_split(config.data, config.data.train_split)}

    print("judgements of each run's rationales on the training problems against its baseline's")
    print("(% of the problems; the interval over the problems of all runs)\n")
    print("| arm | training problems | runs | problems per run | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|---|" + "---|" * len(COLUMNS))
    for items in args.arm:
        name, triples = arm_of(items)
        rows = {group: [] for group in GROUPS}
        points = {group: [] for group in GROUPS}
        for triple in triples:
            run, model_file, base_file = triple.split(":")
            rows_a, rows_b = (training_rationales(Path(path), problems) for path in (model_file, base_file))
            for group, ids in groups_of(Path(run), problems).items():
                a, b = {i: rows_a[i] for i in ids}, {i: rows_b[i] for i in ids}
                shares, group_points = judge_against(teacher, problems, a, b)
                rows[group].append(shares)
                points[group] += group_points
        for group in GROUPS:
            size = len(points[group]) / len(rows[group])
            cells = table_cells(rows[group], points[group], COLUMNS)
            print(f"| {name} | {group} | {len(rows[group])} | {size:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

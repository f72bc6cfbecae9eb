"""Does a rationale's conclusion follow its reasoning? Per question kind: how many rationales make
every step of the gold solution with a true claim, and the answer accuracy with and without.

    python experiments/steps_table.py RUN/eval/LABEL.json [...] [--split test|val|train] [key=value ...]

Each file is an evaluation a run wrote (`eval/baseline.json`, `eval/rl_1_val_8.json`, ...: id,
rationale, answer) or predict's JSON lines; the problems are regenerated from the config
(`key=value` overrides as for a run; the split as the file's: `--split`). Also prints how the
listings of cells miss (exactly right, cells missing, cells extra, both, none right) and the
precision and recall of the cells they name.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from ares_jax.config import load_config_args
from ares_jax.data.load import load_split
from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import claims as C
from ares_jax.text.sentences import split_sentences


def read_rows(path: Path) -> list[dict]:
    text = path.read_text()
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]


def rationales(path: Path) -> dict[str, str]:
    """{problem id: rationale} of an evaluation or predict file."""
    return {row["id"]: row["rationale"] for row in read_rows(path)}


def listing_miss(listed: set, right: set) -> str:
    """How the cells a listing names (`listed`) miss the cells that hold such a shape (`right`)."""
    if listed == right:
        return "exact"
    if listed < right:
        return "missing"
    if listed > right:
        return "extra"
    return "both" if listed & right else "none right"


def table(rows: list[dict], problems: dict) -> tuple[dict, Counter, Counter]:
    """kind -> [made every step, right among them, the others, right among them]; listing misses;
    cells: named, named and right, right (over all listings)."""
    by_kind, misses, cells = defaultdict(lambda: [0, 0, 0, 0]), Counter(), Counter()
    for row in rows:
        problem = problems[row["id"]]
        scene = problem.extras["scene"]
        claims = [C.parse(s) for s in split_sentences(strip_solution_tag(row["rationale"]))]
        made = {
            C.topic(claim)
            for claim in claims
            if claim is not None
            and not isinstance(claim, C.Answer)
            and C.is_true(claim, scene, problem.choices, problem.answer)
        }
        steps = [c for c in problem.extras["gold_claims"] if not isinstance(c, (C.Starter, C.Answer))]
        group = 0 if all(C.topic(step) in made for step in steps) else 2
        counts = by_kind[problem.extras["question_kind"]]
        counts[group] += 1
        counts[group + 1] += row["answer"] == problem.answer
        for claim in claims:
            if isinstance(claim, C.Listing):
                named, right = set(claim.cells), set(scene.matching_cells(claim.size, claim.colour, claim.kind))
                misses[listing_miss(named, right)] += 1
                cells.update(named=len(named), named_right=len(named & right), right=len(right))
    return dict(sorted(by_kind.items())), misses, cells


def files_and_problems(argv=None):
    """The command line shared with `scores_by_claim.py`: (args with .files and .split, the config
    from the `key=value` overrides, {id: problem} of the split regenerated from it)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--split", default="test")
    args, overrides = parser.parse_known_args(argv)
    config = load_config_args(overrides)
    return args, config, {p.id: p for p in load_split(config.data, args.split)}


def main(argv=None):
    args, _, problems = files_and_problems(argv)
    for path in args.files:
        by_kind, misses, cells = table(read_rows(path), problems)
        print(f"\n{path} ({args.split})\n")
        print("| kind | every step made | accuracy then | the others | accuracy then |")
        print("|---|---|---|---|---|")
        for kind, (made, made_right, other, other_right) in by_kind.items():
            print(
                f"| {kind} | {made} ({made / (made + other):.0%}) | {made_right / max(made, 1):.1%} "
                f"| {other} | {other_right / max(other, 1):.1%} |"
            )
        total = sum(misses.values())
        print(f"\nlistings ({total}): " + ", ".join(f"{k} {v / total:.1%}" for k, v in misses.most_common()))
        print(
            f"cells named: precision {cells['named_right'] / max(cells['named'], 1):.2f}, "
            f"recall {cells['named_right'] / max(cells['right'], 1):.2f}"
        )


if __name__ == "__main__":
    main()

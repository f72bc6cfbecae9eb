"""RL only at the default budget against its baseline, over seeds: the table of README's "Why RL did
not learn, and what changed".

    python experiments/rl_only_table.py --baselines runs/base_s{0,1,2} --arm gae=runs/final/gae_s{0,1,2} \
        --arm group=runs/final/group_s{0,1,2}

Each baseline is a finished `rounds=0` run, each arm run a finished `method=rl_only` run started
from the same seed's baseline (`baseline_from`), listed in the same seed order. Prints
`reproduce.py`'s table (mean ± standard deviation over seeds; the change against the same seed's
baseline is paired) and the greedy validation sentence score and accuracy after each phase, per
seed. `--val-only`: the validation figures alone, for choosing settings before the test split is
read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from reproduce import arm_figures, summarize, table  # noqa: E402

from ares_jax.config import config_from_dict  # noqa: E402
from ares_jax.eval.report import validation_summary  # noqa: E402


def figures(workdir: str) -> tuple[dict, dict]:
    """(reproduce.py's figures of the run, its greedy validation figures after each phase)."""
    report = json.loads((Path(workdir) / "report.json").read_text())
    return arm_figures(report, config_from_dict(report["config"])), validation_summary(
        report["curves"], report.get("kept_best")
    )


def arm_of(items: list[str]) -> tuple[str, list[str]]:
    """An `--arm` argument: NAME=RUN RUN ... (or NAME=RUN NAME=RUN ..., as a shell's braces give
    it) -> (NAME, [RUN, ...])."""
    return items[0].split("=", 1)[0], [item.split("=", 1)[-1] for item in items]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baselines", nargs="+", required=True)
    parser.add_argument("--arm", nargs="+", action="append", required=True, help="NAME=RUN RUN ...")
    parser.add_argument("--val-only", action="store_true", help="leave out the test table (tuning)")
    args = parser.parse_args()
    runs = {"baseline": {seed: figures(run)[0] for seed, run in enumerate(args.baselines)}}
    validation = {}
    for items in args.arm:
        name, arm_runs = arm_of(items)
        for seed, run in enumerate(arm_runs):
            runs.setdefault(name, {})[seed], validation[(name, seed)] = figures(run)
    if not args.val_only:
        print(table(summarize(runs)), end="\n\n")
    print("| arm | seed | after | val accuracy | val sentence score |\n|---|---|---|---|---|")
    for (name, seed), phases in validation.items():
        for phase, metrics in phases.items():
            print(f"| {name} | {seed} | {phase} | {metrics['accuracy']:.1%} | {metrics['sentence_score']:.3f} |")


if __name__ == "__main__":
    main()

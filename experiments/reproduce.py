"""Reproduce ARES's claims on the built-in task, with the ablation the paper lacks.

    python experiments/reproduce.py [--seeds 0,1,2] [--out runs/reproduce] [key=value ...]

For every seed the baseline (MM-CoT: SFT on gold rationales) is trained once (`rounds=0`); four
arms then start from it (`baseline_from`), each with the default run's settings otherwise:

    ares             2 rounds of RL with sentence-level rewards + correction SFT (the method)
    rl_only          the same RL rounds without the correction SFT
    sequence_reward  ARES with one reward per rationale: the mean sentence score at the last token
    sft_more         the baseline trained on gold rationales for as many steps as ARES takes

`key=value` overrides apply to every run (a smaller run: `rationale.steps=200 ...`). Every run
keeps its workdir under `--out` (reports, evaluations, checkpoints); running the command again
resumes an interrupted run and reads finished ones. The table lands in `--out/results.md`, every
number behind it in `--out/results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ARMS = {
    "baseline": ["rounds=0"],
    "ares": [],
    "rl_only": ["method=rl_only"],
    "sequence_reward": ["ppo.reward_placement=sequence"],
    "sft_more": ["method=sft_more"],
}
FLUENCY = ("repeated_sentence", "repeated_ngram", "unfinished")
TRAINING_PHASES = ("rl_", "correction_")  # the Teacher's feedback (evaluation and judging excluded)


def arm_figures(report: dict, config) -> dict:
    """The table's figures of one run: its final model's evaluation and what it took."""
    final = report["baseline"] if config.rounds == 0 else report["ares"]
    by_phase = report["teacher"]["by_phase"]
    return {
        "answer_accuracy": final["answer_accuracy"],
        "win_rate": None if config.rounds == 0 else final["win_rate_vs_baseline"],
        "rouge_l": final["rouge_l"],
        "sentence_score": final["mean_sentence_score"],
        **{defect: final["fluency"][defect] for defect in FLUENCY},
        # the held-out checks inside RL rounds are not feedback (those after SFT fall in sft_/gold_ phases)
        "teacher_requests": sum(
            spent["requests"] for phase, spent in by_phase.items() if phase.startswith(TRAINING_PHASES)
        )
        - sum(
            spent
            for phase, spent in report["teacher"].get("validation_requests", {}).items()
            if phase.startswith(TRAINING_PHASES)
        ),
        "steps_after_baseline": config.rounds * config.steps_per_round,  # PPO + SFT optimizer steps
        "minutes": report["seconds"] / 60,
        "phases": {
            label: {"answer_accuracy": e["answer_accuracy"], **{d: e["fluency"][d] for d in FLUENCY}}
            for label, e in report["phases"].items()
        },
    }


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(runs: dict) -> dict:
    """runs[arm][seed] -> figures; per arm: mean and std over seeds of each figure, and the
    accuracy change against the same seed's baseline (paired)."""
    summary = {}
    for arm, by_seed in runs.items():
        seeds = sorted(by_seed)
        row = {}
        for key in (
            "answer_accuracy",
            "win_rate",
            "rouge_l",
            "sentence_score",
            *FLUENCY,
            "teacher_requests",
            "steps_after_baseline",
            "minutes",
        ):
            values = [by_seed[s][key] for s in seeds]
            row[key] = None if None in values else mean_std(values)
        row["accuracy_change"] = mean_std(
            [by_seed[s]["answer_accuracy"] - runs["baseline"][s]["answer_accuracy"] for s in seeds]
        )
        summary[arm] = row
    return summary


def _pm(value, scale=100.0, digits=1) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def table(summary: dict) -> str:
    """The markdown table: one row per arm, mean ± std over seeds."""
    header = (
        "| arm | answer accuracy % | change vs baseline (points) | win rate vs baseline % | ROUGE-L | "
        "sentence score | repeated sentence % | repeated n-gram % | unfinished % | Teacher requests (training) "
        "| steps after baseline | minutes |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for arm, row in summary.items():
        cells = [
            arm,
            _pm(row["answer_accuracy"]),
            _pm(row["accuracy_change"]),
            _pm(row["win_rate"]),
            _pm(row["rouge_l"], 1, 3),
            _pm(row["sentence_score"], 1, 3),
            *(_pm(row[d]) for d in FLUENCY),
            f"{row['teacher_requests'][0]:.0f}",
            f"{row['steps_after_baseline'][0]:.0f}",
            _pm(row["minutes"], 1, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phase_table(by_seed: dict) -> str:
    """One arm's evaluations phase by phase (mean over seeds): does RL hurt fluency, and does
    the correction SFT repair it?"""
    labels = list(next(iter(by_seed.values()))["phases"])
    lines = [
        "| after | answer accuracy % | repeated sentence % | repeated n-gram % | unfinished % |",
        "|---|---|---|---|---|",
    ]
    for label in labels:
        cells = [
            _pm(mean_std([figures["phases"][label][key] for figures in by_seed.values()]))
            for key in ("answer_accuracy", *FLUENCY)
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    import jax

    device = jax.devices()[0]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {device.platform} "
        f"({device.device_kind}), Python {platform.python_version()}, jax {jax.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    parser.add_argument("--out", default="runs/reproduce", help="folder of the runs and the table")
    parser.add_argument("overrides", nargs="*", help="key=value settings for every run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax

    # The arms compile the same steps as the baseline: keep compiled programs on disk and reuse
    # them (in --out, unless JAX_COMPILATION_CACHE_DIR names a cache already).
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(args.out).absolute() / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    from ares_jax import loop
    from ares_jax.config import ConfigError, load_config_args
    from ares_jax.loop.lock import WorkdirBusy

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out)
    started = time.perf_counter()
    runs = {arm: {} for arm in ARMS}
    try:
        for seed in seeds:
            baseline = out / f"seed{seed}" / "baseline"
            for arm, settings in ARMS.items():
                config = load_config_args(
                    [
                        *args.overrides,
                        *settings,
                        f"seed={seed}",
                        f"workdir={out / f'seed{seed}' / arm}",
                        *([] if arm == "baseline" else [f"baseline_from={baseline}"]),
                    ]
                )
                print(f"== seed {seed}: {arm}", flush=True)
                report = loop.run(config, log=lambda message: print(f"   {message}", flush=True))
                runs[arm][seed] = arm_figures(report, config)
    except ConfigError as error:
        print(f"reproduce: bad configuration: {error}", file=sys.stderr)
        return 2
    except WorkdirBusy as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 2
    summary = summarize(runs)
    command = " ".join(
        ["python", "experiments/reproduce.py", f"--seeds {args.seeds}", f"--out {args.out}", *args.overrides]
    )
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join(
        [
            "# Reproducing ARES on the built-in task",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}  ",
            f"Seeds: {', '.join(map(str, seeds))}; mean ± std over seeds; wall time of this command "
            f"{minutes:.1f} min (finished runs are read, not rerun).",
            "",
            table(summary),
            "",
            "ARES arm, phase by phase:",
            "",
            phase_table(runs["ares"]),
            "",
            "RL-only arm, phase by phase:",
            "",
            phase_table(runs["rl_only"]),
            "",
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps({"command": command, "seeds": seeds, "runs": runs, "summary": summary}, indent=1)
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run's report: `report.json` (everything), `report.md` (the table a person reads) and
`curves.png` (reward, KL, losses and accuracy per phase)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ares_jax.config import EARLIER_BEHAVIOUR, gold_count
from ares_jax.data.problem import Problem
from ares_jax.eval.metrics import correctness_difference, mean_with_ci95


def _title(label: str) -> str:
    """ "rl_1" -> "after RL 1", "sft_2" -> "after SFT 2", "gold_1" -> "after gold SFT 1"; "baseline" stays."""
    kind, _, number = label.partition("_")
    return {"rl": f"after RL {number}", "sft": f"after SFT {number}", "gold": f"after gold SFT {number}"}.get(
        kind, label
    )


METHOD_NAMES = {"ares": "ARES", "rl_only": "RL only", "sft_more": "SFT-more"}


def build_report(
    results: dict,
    final_label: str,
    teacher_name: str,
    teacher_total: dict,
    config: dict,
    test: Sequence[Problem],
    workdir: Path,
    seconds: float,
) -> dict:
    """Everything about a finished run; "ares" (the final model against the baseline) is None
    for a baseline-only run (`final_label` "baseline"), which has nothing to compare."""
    evaluations = results["evaluations"]
    texts = {label: json.loads((workdir / "eval" / f"{label}.json").read_text()) for label in ("baseline", final_label)}
    final = None
    if final_label != "baseline":
        comparison = results["comparison"]
        # The accuracy gain, paired by problem, with its 95% interval: is ARES ahead beyond noise?
        gain, low, high = mean_with_ci95(
            correctness_difference(
                [row["answer"] for row in texts[final_label]],
                [row["answer"] for row in texts["baseline"]],
                [p.answer for p in test],
            )
        )
        final = dict(
            evaluations[final_label],
            win_rate_vs_baseline=comparison["win_rate"],
            judgements=comparison,
            accuracy_gain={"points": 100 * gain, "ci95": [100 * low, 100 * high]},
        )
    return {
        "baseline": evaluations["baseline"],
        "ares": final,
        "phases": evaluations,
        "corrections": results.get("corrections", {}),
        "curves": results["curves"],
        "teacher": {
            "name": teacher_name,
            **teacher_total,
            "by_phase": results["teacher_by_phase"],
            "validation_requests": results.get("teacher_validation", {}),
        },
        "validation": validation_summary(results["curves"], results.get("kept_best")),
        "kept_best": results.get("kept_best", {}),  # rl.keep_best: the rollout batch each round's policy is from
        "seconds": seconds,
        "config": config,
        "examples": [
            {
                "id": p.id,
                "question": p.question,
                "gold": p.solution,
                "baseline": base["rationale"],
                "ares": None if final is None else ares["rationale"],
            }
            for p, base, ares in list(zip(test, texts["baseline"], texts[final_label]))[:5]
        ],
    }


def validation_summary(curves: dict, kept_best: dict | None = None) -> dict:
    """The greedy model on the validation split after each phase that measured it, in run order:
    {"baseline": {metric: value}, "rl_1": ..., "sft_1": ...}. The baseline is the first RL or gold
    round's start point (`<phase>/val_*` at 0); every phase's row is its last point, or for an RL
    round in `kept_best` ({phase: rollout batches}, `rl.keep_best`) the point whose policy it kept."""
    kept_best = kept_best or {}
    by_phase: dict = {}
    for name, points in curves.items():
        phase, _, metric = name.partition("/")
        if metric.startswith("val_") and points:
            end = next(p for p in points if p[0] == kept_best[phase]) if phase in kept_best else points[-1]
            by_phase.setdefault(phase, {})[metric[len("val_") :]] = (points[0], end)
    summary: dict = {}
    for phase, metrics in by_phase.items():
        first = next(iter(metrics.values()))[0]
        if not summary and first[0] == 0:
            summary["baseline"] = {metric: ends[0][1] for metric, ends in metrics.items()}
        summary[phase] = {metric: ends[1][1] for metric, ends in metrics.items()}
    return summary


def _validation_lines(summary: dict) -> list[str]:
    """The markdown table of the held-out progress (none without a validation split)."""
    if not summary:
        return []
    labels = list(summary)
    lines = [
        "## Held-out questions (validation split, greedy), after each phase",
        "",
        "| | " + " | ".join(_title(label) for label in labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for metric, name, fmt in [
        ("accuracy", "answer accuracy", "{:.1%}"),
        ("conclusion_accuracy", "the rationale's own conclusion right", "{:.1%}"),
        ("sentence_score", "Teacher's mean sentence score", "{:.3f}"),
        ("sentence_score_non_neutral", "  without neutral (0.5) sentences", "{:.3f}"),
        ("response_tokens", "response tokens", "{:.1f}"),
    ]:
        values = [summary[label].get(metric) for label in labels]  # runs before a measure existed lack it
        if any(v is not None for v in values):
            lines.append(_table_row(name, values, fmt))
    return lines + [""]


def _table_row(name: str, values, fmt: str) -> str:
    """A markdown table row: `name`, then each value in `fmt` ("–" for None)."""
    return f"| {name} | " + " | ".join("–" if v is None else fmt.format(v) for v in values) + " |"


def _rl_settings_lines(config: dict) -> list[str]:
    """One line naming the RL settings a run's rounds used (none for runs without RL rounds)."""
    if not config.get("rounds") or config.get("method") == "sft_more":
        return []
    ppo, rl = config["ppo"], config["rl"]
    if ppo["advantage"] == "group":
        estimator = "group-relative sentence advantages (no critic)"
    else:
        estimator = f"GAE (gamma {ppo['gamma']}, lambda {ppo['gae_lambda']}) over the value model"
        value_lambda = ppo.get("value_lambda")  # these two are absent from the reports of older versions
        value_learning_rate = rl.get("value_learning_rate")
        critic = [f"its targets with lambda {value_lambda}"] if value_lambda not in (None, ppo["gae_lambda"]) else []
        critic += [f"its own learning rate {value_learning_rate}"] if value_learning_rate is not None else []
        if critic:
            estimator += f" ({', '.join(critic)})"
        if rl["value_warmup_batches"]:
            estimator += f", warmed up alone on the first {rl['value_warmup_batches']} rollout batches"
    whitened = "whitened" if ppo["whiten_advantages"] else "not whitened"
    kept = rl.get("keep_best", "")  # absent from the reports of older versions
    ending = f"; each round ends with its policy of best validation {kept.replace('_', ' ')}" if kept else ""
    entropy_coef = ppo.get("entropy_coef", 0.0)  # absent from the reports of older versions
    bonus = f", entropy bonus {entropy_coef}" if entropy_coef else ""
    return [
        f"RL: rewards at {ppo['reward_placement']} ends, {estimator}, advantages {whitened}, "
        f"KL coefficient {ppo['kl_coef']}, learning rate {rl['learning_rate']}, {rl['epochs']} PPO epochs "
        f"per rollout batch, sampling temperature {rl['temperature']}{bonus}{ending}.",
        "",
        *_correction_settings_lines(config),
    ]


def _gold_rationale_lines(config: dict) -> list[str]:
    """One line when the SFT stages learnt the gold rationales of only part of the training split
    (the rest answer-only: RL and the corrections ask about them)."""
    data, earlier = config["data"], EARLIER_BEHAVIOUR["data"]["shapes"]
    shapes = data.get("shapes", {})
    # a dataset's size is not in its config: only the built-in task's share can be counted out
    total = shapes["train_size"] if data["source"] == "shapes" else None
    share = shapes.get("gold_share", earlier["gold_share"])  # absent from the reports of older versions
    count = gold_count(data["source"], data.get("gold_rationales", 0), total or 0, share)
    if not count or count == total:
        return []
    of = f" of the {total}" if total else ""
    return [
        f"Gold rationales: the SFT stages learnt those of the first {count}{of} training questions; the "
        "others have their answer only (RL and the Teacher's corrections ask about every one).",
        "",
    ]


def _correction_settings_lines(config: dict) -> list[str]:
    """One line on each ARES round's correction SFT (ARES runs only)."""
    if config.get("method", "ares") != "ares":
        return []
    correction = config["correction"]
    gold = correction.get("gold_questions", 0)
    mixed = f" mixed with {gold} gold rationales" if gold else ""
    # absent from the reports of older versions, which corrected any training question
    of = " of answer-only questions" if correction.get("pool", "all") == "answer_only" else ""
    return [
        f"Correction SFT: the Teacher's corrections of {correction['questions']} rationales{of}{mixed}, "
        f"{correction['steps']} steps at learning rate {correction['learning_rate']}.",
        "",
    ]


def _markdown(report: dict) -> str:
    phases = report["phases"]
    labels = list(phases)
    header = "| | " + " | ".join(_title(label) for label in labels) + " |"
    rows = [header, "|---" * (len(labels) + 1) + "|"]

    def row(name, values, fmt="{:.1%}"):
        rows.append(_table_row(name, values, fmt))

    row("answer accuracy", [phases[label]["answer_accuracy"] for label in labels])
    for kind in phases["baseline"]["answer_accuracy_by_kind"]:
        row(f"  accuracy: {kind}", [phases[label]["answer_accuracy_by_kind"].get(kind) for label in labels])
    row("Teacher's mean sentence score", [phases[label]["mean_sentence_score"] for label in labels], "{:.3f}")
    if any("mean_non_neutral_score" in phases[label] for label in labels):  # not in runs made before it
        row(
            "  without neutral (0.5) sentences",
            [phases[label].get("mean_non_neutral_score") for label in labels],
            "{:.3f}",
        )
    row("ROUGE-L vs gold", [phases[label]["rouge_l"] for label in labels], "{:.3f}")
    for defect in phases["baseline"]["fluency"]:
        row(f"fluency defect: {defect.replace('_', ' ')}", [phases[label]["fluency"][defect] for label in labels])
    for column in phases["baseline"].get("scienceqa", {}):  # ScienceQA's table, one row per category
        row(f"  ScienceQA {column}", [phases[label]["scienceqa"][column] for label in labels])
    if "aokvqa" in phases["baseline"]:
        row("  A-OKVQA multiple choice", [phases[label]["aokvqa"]["multiple_choice"] for label in labels])
        row("  A-OKVQA direct answer", [phases[label]["aokvqa"]["direct_answer"] for label in labels])
    ares, baseline, teacher = report["ares"], report["baseline"], report["teacher"]
    name = METHOD_NAMES[report["config"].get("method", "ares")]  # the run's final model ("ares" in the JSON)
    if ares is None:
        summary = (
            f"Baseline answer accuracy {baseline['answer_accuracy']:.1%}. A baseline-only run (rounds=0): no "
            "ARES rounds, nothing to compare."
        )
    else:
        judged, gain = ares["judgements"], ares["accuracy_gain"]
        low, high = gain["ci95"]
        verdict = "ahead" if low > 0 else "behind" if high < 0 else "not distinguishable from the baseline at 95%"
        summary = (
            f"{name} answer accuracy {ares['answer_accuracy']:.1%} vs baseline {baseline['answer_accuracy']:.1%}: "
            f"{gain['points']:+.1f} points (95% interval {low:+.1f} to {high:+.1f}, paired by problem), {verdict}. "
            f"{name} rationales win {ares['win_rate_vs_baseline']:.1%} (95% interval {judged['ci95'][0]:.1%} to "
            f"{judged['ci95'][1]:.1%}) of the Teacher's comparisons with the baseline's ({judged['wins']:.0f} "
            f"wins, {judged['ties']:.0f} ties, {judged['losses']:.0f} losses over {judged['judgements']:.0f} "
            "judgements, both orders)."
        )
    lines = [
        "# ARES run report",
        "",
        summary,
        "",
        *rows,
        "",
        *_validation_lines(report.get("validation", {})),
        *_gold_rationale_lines(report["config"]),
        *_rl_settings_lines(report["config"]),
        f"Teacher `{teacher['name']}`: {teacher['requests']} requests, {teacher['cache_hits']} cache hits, "
        f"{teacher['unscored']} unscored, ${teacher['cost_usd']:.4f}. Run time {report['seconds']:.0f} s.",
        "",
        "## Examples (test split)",
        "",
    ]
    for example in report["examples"]:
        lines += [
            f"**{example['id']}**: {example['question']}",
            "",
            f"- gold: {example['gold']}",
            f"- baseline: {example['baseline']}",
            *([] if example["ares"] is None else [f"- {name}: {example['ares']}"]),
            "",
        ]
    return "\n".join(lines)


# curves.png's RL panels: (curve `rl_<r>/<metric>`, title), one panel each
RL_PANELS = (
    ("sentence_score", "Teacher's mean sentence score (rollouts)"),
    ("val_sentence_score", "sentence score, validation (greedy)"),
    ("val_sentence_score_non_neutral", "the same without neutral (0.5) sentences"),
    ("val_accuracy", "answer accuracy, validation (greedy)"),
    ("pass_at_k", "right conclusion among k samples (rollouts)"),
    ("kl", "KL to reference (per sample)"),
    ("entropy", "policy entropy per token (rollouts)"),
    ("explained_variance", "value model: explained variance"),
    ("val_response_tokens", "response tokens, validation"),
    ("policy_loss", "PPO policy loss"),
    ("value_loss", "PPO value loss"),
)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = _figure(report, plt)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _figure(report: dict, plt):
    """curves.png's figure: the RL panels (`RL_PANELS`), then the SFT losses and the test answer
    accuracy per phase; the grid's spare panels are left blank."""
    curves = report["curves"]
    columns = 5
    rows = -(-(len(RL_PANELS) + 2) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows))
    for axis, (metric, title) in zip(axes.flat, RL_PANELS):
        for name, points in curves.items():
            if name.startswith("rl_") and name.endswith("/" + metric):
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name.split("/")[0])
            # rl.seen_questions: the same measure on the round's own questions, dashed beside it
            if metric.startswith("val_") and name.startswith("rl_") and name.endswith("/seen" + metric[3:]):
                label = name.split("/")[0] + ", its questions"
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="x", linestyle="--", label=label)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("rollout batch")
        if axis.get_legend_handles_labels()[0]:  # a run without RL rounds has nothing to label
            axis.legend(fontsize=8)
    axis = axes.flat[len(RL_PANELS)]
    for name, points in curves.items():
        if name.endswith("/loss"):
            axis.plot([p[0] for p in points], [p[1] for p in points], label=name.split("/")[0])
    axis.set_yscale("log")
    axis.set_title("SFT losses")
    axis.set_xlabel("step")
    axis.legend(fontsize=8)
    axis = axes.flat[len(RL_PANELS) + 1]
    labels = list(report["phases"])
    axis.plot(range(len(labels)), [report["phases"][label]["answer_accuracy"] for label in labels], marker="o")
    axis.set_xticks(range(len(labels)), [_title(label) for label in labels], rotation=30, fontsize=8)
    axis.set_title("test answer accuracy per phase")
    for axis in axes.flat[len(RL_PANELS) + 2 :]:
        axis.axis("off")
    figure.tight_layout()
    return figure


def write_report(workdir: Path, report: dict) -> None:
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    (workdir / "report.md").write_text(_markdown(report))
    _plot(report, workdir / "curves.png")

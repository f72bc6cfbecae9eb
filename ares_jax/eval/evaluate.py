"""One evaluation of rationales and answers on a split: the numbers every phase reports."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.eval.benchmarks import aokvqa_scores, scienceqa_table
from ares_jax.eval.metrics import answer_accuracy, fluency, mean_rouge_l
from ares_jax.teacher.base import NEUTRAL_SCORE, Teacher, run_batch
from ares_jax.text.sentences import split_sentences


def evaluate(
    rationales: Sequence[str],
    answers: Sequence[int],
    problems: Sequence[Problem],
    teacher: Teacher | None,
    concurrency: int,
) -> dict:
    """Answer accuracy (overall and by question kind), ROUGE-L against gold, fluency defects, the
    Teacher's mean sentence score (each rationale's mean, averaged; unscored rationales left out
    of the mean, and counted) and the same without the neutral sentences (`mean_non_neutral_score`,
    see `non_neutral_mean`); for ScienceQA or A-OKVQA problems also their standard table
    (`eval/benchmarks.py`)."""
    scores = (
        [None] * len(problems)  # no Teacher (predict without score=true): no sentence scores
        if teacher is None
        else run_batch(
            teacher.score_sentences,
            [(p, split_sentences(r)) for p, r in zip(problems, rationales)],
            concurrency,
            progress="teacher: sentence scores",
            stats=teacher.stats,
        )
    )
    scored = [s for s in scores if s is not None]
    by_kind: dict[str, list[bool]] = {}
    for p, a in zip(problems, answers):
        by_kind.setdefault(p.kind, []).append(a == p.answer)
    benchmark = {}  # the field's standard table where the problems are ScienceQA's or A-OKVQA's
    if (table := scienceqa_table(problems, answers)) is not None:
        benchmark["scienceqa"] = table
    if (accuracies := aokvqa_scores(problems, answers)) is not None:
        benchmark["aokvqa"] = accuracies
    return {
        **benchmark,
        "answer_accuracy": answer_accuracy(answers, [p.answer for p in problems]),
        "answer_accuracy_by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
        "rouge_l": mean_rouge_l(rationales, [p.solution for p in problems]),
        "fluency": fluency(rationales),
        "mean_sentence_score": float(np.mean([np.mean(s) if s else 0.0 for s in scored])) if scored else None,
        "mean_non_neutral_score": non_neutral_mean(scored),
        "unscored": len(scores) - len(scored),
    }


def non_neutral_mean(scores: Sequence[Sequence[float]]) -> float | None:
    """The mean over rationales of the mean score of their sentences that are not neutral (0.5,
    the rubric's starting thought or indecisive statement); rationales with no such sentence are
    left out (None when no rationale has one). A neutral sentence lowers a rationale's mean
    sentence score when the rest scores above 0.5 and raises it below, so a policy can raise that
    score by where it writes neutral sentences without any sentence scoring more (README, finding
    23); this measure does not move for it."""
    means = [np.mean(decisive) for s in scores if (decisive := [x for x in s if abs(x - NEUTRAL_SCORE) > 1e-9])]
    return float(np.mean(means)) if means else None

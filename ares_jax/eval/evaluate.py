"""One evaluation of rationales and answers on a split: the numbers every phase reports."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.eval.benchmarks import aokvqa_scores, scienceqa_table
from ares_jax.eval.metrics import answer_accuracy, fluency, mean_rouge_l
from ares_jax.teacher.base import Teacher, run_batch
from ares_jax.text.sentences import split_sentences


def evaluate(
    rationales: Sequence[str],
    answers: Sequence[int],
    problems: Sequence[Problem],
    teacher: Teacher | None,
    concurrency: int,
) -> dict:
    """Answer accuracy (overall and by question kind), ROUGE-L against gold, fluency defects and
    the Teacher's mean sentence score (unscored rationales left out of the mean, and counted);
    for ScienceQA or A-OKVQA problems also their standard table (`eval/benchmarks.py`)."""
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
        "unscored": len(scores) - len(scored),
    }

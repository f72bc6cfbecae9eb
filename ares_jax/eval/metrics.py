"""Evaluation metrics: answer accuracy, ROUGE-L, fluency defect rates and the pairwise win rate."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.teacher.base import Teacher, run_batch
from ares_jax.text.fluency import ends_unfinished, repeated_ngram_rate, repeated_sentences
from ares_jax.text.sentences import split_sentences

_TOKEN = re.compile(r"[a-z0-9]+")


def answer_accuracy(predicted: Sequence[int], gold: Sequence[int]) -> float:
    """Share of predictions equal to the gold index (an unparsed prediction, -1, is wrong)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} problems")
    return float(np.mean([p == g for p, g in zip(predicted, gold)])) if gold else 0.0


def correctness_difference(predicted_a: Sequence[int], predicted_b: Sequence[int], gold: Sequence[int]) -> np.ndarray:
    """Per problem `[N]`: 1 where A answers right and B not, -1 the other way, else 0 (the
    paired accuracy difference, for `mean_with_ci95`)."""
    if not len(predicted_a) == len(predicted_b) == len(gold):
        raise ValueError(f"{len(predicted_a)} and {len(predicted_b)} predictions for {len(gold)} problems")
    return np.array([float(a == g) - float(b == g) for a, b, g in zip(predicted_a, predicted_b, gold)])


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lowercased alphanumeric tokens (rouge-score's tokenisation, no stemming):
    LCS / len gives precision and recall, F1 = 2PR / (P + R)."""
    cand, ref = _TOKEN.findall(candidate.lower()), _TOKEN.findall(reference.lower())
    if not cand or not ref:
        return 0.0
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(candidates: Sequence[str], references: Sequence[str]) -> float:
    return float(np.mean([rouge_l(c, r) for c, r in zip(candidates, references, strict=True)]))


def fluency(rationales: Sequence[str], n: int = 3) -> dict[str, float]:
    """Defect rates over a set of rationales:
    repeated_sentence: share with at least one sentence written twice;
    repeated_ngram: mean share of word n-grams that repeat an earlier one in the same rationale;
    unfinished: share whose last sentence has no end mark."""
    if not rationales:
        return {"repeated_sentence": 0.0, "repeated_ngram": 0.0, "unfinished": 0.0}
    return {
        "repeated_sentence": float(np.mean([any(repeated_sentences(split_sentences(r))) for r in rationales])),
        "repeated_ngram": float(np.mean([repeated_ngram_rate(r, n) for r in rationales])),
        "unfinished": float(np.mean([ends_unfinished(r) for r in rationales])),
    }


_POINTS_FOR_FIRST = {"a": 1.0, "tie": 0.5, "b": 0.0}


def mean_with_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-problem values and its 95% interval (normal
    approximation, standard error over problems). Paired differences go in as one value each."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return 0.0, 0.0, 0.0
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def win_rate(
    teacher: Teacher,
    problems: Sequence[Problem],
    rationales_a: Sequence[str],
    rationales_b: Sequence[str],
    concurrency: int = 16,
) -> dict[str, float]:
    """How often A's rationale beats B's on the same problem. Each pair is judged twice, A shown
    first then B shown first, to cancel position bias; a win is 1, a tie 0.5; the rate is the
    mean over both orders and all problems, `ci95` its 95% interval over problems."""
    if not len(problems) == len(rationales_a) == len(rationales_b):
        raise ValueError("win_rate needs one rationale from each model per problem")
    a_first = run_batch(teacher.judge, list(zip(problems, rationales_a, rationales_b)), concurrency)
    b_first = run_batch(teacher.judge, list(zip(problems, rationales_b, rationales_a)), concurrency)
    points = [_POINTS_FOR_FIRST[v] for v in a_first] + [1.0 - _POINTS_FOR_FIRST[v] for v in b_first]
    per_problem = [(_POINTS_FOR_FIRST[x] + 1.0 - _POINTS_FOR_FIRST[y]) / 2 for x, y in zip(a_first, b_first)]
    rate, low, high = mean_with_ci95(per_problem)
    return {
        "win_rate": rate,
        "ci95": [low, high],
        "wins": float(sum(p == 1.0 for p in points)),
        "ties": float(sum(p == 0.5 for p in points)),
        "losses": float(sum(p == 0.0 for p in points)),
        "judgements": float(len(points)),
    }

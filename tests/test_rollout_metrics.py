"""The per-rollout-batch diagnostics of an RL round, on hand-worked examples."""

import numpy as np
import pytest

from ares_jax.data.problem import Problem
from ares_jax.loop.rollout import conclusion_rates, sample_diagnostics


def problem(answer: int, choices=("x", "y")) -> Problem:
    return Problem(id=f"p{answer}", question="q", choices=tuple(choices), answer=answer)


def test_conclusion_rates_count_right_conclusions_per_sample_and_per_question():
    problems = [problem(0), problem(0), problem(1), problem(1)]  # two questions, k = 2 samples each
    texts = [
        "Solution: Cell A1 is red. Thus, the answer is (A).",
        "So the answer is (B).",
        "No conclusion here.",
        "The answer is (C).",
    ]  # (C) is out of range for 2 options
    rates = conclusion_rates(texts, problems, k_samples=2)
    assert rates == {"sample_accuracy": 0.25, "pass_at_k": 0.5}


def test_sample_diagnostics_entropy_and_explained_variance_by_hand():
    mask = np.array([[1, 1, 1, 0]], np.float32)
    returns = np.array([[1.0, 2.0, 3.0, 9.0]])
    values = np.array([[1.0, 2.0, 2.0, -9.0]])  # padding is ignored
    entropy = np.array([[0.5, 1.0, 1.5, 7.0]])
    out = sample_diagnostics(entropy, values, returns, mask)
    # residuals 0, 0, 1: variance 2/9; returns' variance 2/3 -> 1 - (2/9) / (2/3) = 2/3
    assert out["explained_variance"] == pytest.approx(2 / 3)
    assert out["entropy"] == pytest.approx(1.0)
    perfect = sample_diagnostics(entropy, returns, returns, mask)
    assert perfect["explained_variance"] == pytest.approx(1.0)
    assert sample_diagnostics(entropy, values, returns, np.zeros_like(mask)) == {
        "entropy": 0.0,
        "explained_variance": 0.0,
    }

"""One rollout buffer of an RL round: k sampled rationales per question, the Teacher's sentence
scores, and the jitted scoring pass and advantages. Host code: it calls the Teacher."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ares_jax.data.batching import encode_prompts, rationale_examples
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import parse_answer, strip_solution_tag
from ares_jax.loop.generation import model_images
from ares_jax.models import SamplingConfig
from ares_jax.parallel import put_batch, to_host
from ares_jax.rl import compute_advantages, sample_responses
from ares_jax.teacher.base import run_batch
from ares_jax.text.sentences import response_segments

# What the PPO step reads of a buffer (the rest stays on the host).
PPO_KEYS = ("input_ids", "attention_mask", "image", "tokens", "response_mask", "logprobs", "advantages", "returns")


def segment_score_array(scores: Sequence[list[float] | None], length: int) -> np.ndarray:
    """Scores per sentence `[B, length]`, zero-padded (padding sentences own no tokens)."""
    out = np.zeros((len(scores), length), np.float32)
    for row, row_scores in enumerate(scores):
        if row_scores:
            out[row, : len(row_scores)] = row_scores[:length]
    return out


def _sample(
    run, policy_params, problems: Sequence[Problem], rng, k_samples: int, temperature: float, top_k: int
) -> dict:
    """`k_samples` sampled rationales per problem: the prompt batch repeated to `[B * k, ...]`
    with `tokens` and `response_mask` (on the run's mesh)."""
    config = run.config
    prompts, _ = rationale_examples(problems)
    arrays = encode_prompts(run.tokenizer, prompts, model_images(problems, config), config.model.max_source_length)
    sampling = SamplingConfig(config.model.max_target_length, temperature=temperature, top_k=top_k)
    batch = sample_responses(
        run.policy_model,
        policy_params,
        put_batch(arrays, run.rows),
        rng,
        sampling,
        k_samples,
        run.sampling_layout(run.policy_model),
    )
    batch.pop("sample_logprobs")
    return batch


def collect_samples(
    run, policy_params, problems: Sequence[Problem], rng, k_samples: int, temperature: float, top_k: int
) -> list[str]:
    """The texts (without the "Solution:" tag) of `k_samples` sampled rationales per problem, each
    problem's samples adjacent."""
    batch = _sample(run, policy_params, problems, rng, k_samples, temperature, top_k)
    lengths = to_host(batch["response_mask"]).sum(axis=1)
    texts, _, _ = response_segments(run.tokenizer, to_host(batch["tokens"]), lengths)
    return [strip_solution_tag(t) for t in texts]


def collect_rollout(run, params: dict, ref_params, problems: Sequence[Problem], rng, kl_coef: float, scoring):
    """Samples `rl.k_samples` rationales for each of `problems`, has the Teacher score their
    sentences, and scores them with the policy, the reference and the value model.

    Returns (buffer of `[B * k, ...]` arrays with advantages and returns, host metrics). An
    unscored sample (the Teacher gave no usable answer) gets an all-zero response mask: it stays
    in the buffer's fixed shape but adds nothing to the loss, and is counted.
    """
    config = run.config
    batch = _sample(run, params["policy"], problems, rng, config.rl.k_samples, config.rl.temperature, config.rl.top_k)
    lengths = to_host(batch["response_mask"]).sum(axis=1)
    texts, sentences, segment_ids = response_segments(run.tokenizer, to_host(batch["tokens"]), lengths)
    repeated = [p for p in problems for _ in range(config.rl.k_samples)]
    # The "Solution:" tag is part of the first sentence's tokens but not of its claim.
    requests = [(p, [strip_solution_tag(s) for s in row]) for p, row in zip(repeated, sentences)]
    scores = run_batch(
        run.teacher.score_sentences,
        requests,
        config.teacher.concurrency,
        progress="teacher: sentence scores",
        stats=run.teacher.stats,
    )
    scored = np.array([s is not None for s in scores])
    feedback = put_batch(
        {
            "scored": scored[:, None],
            "segment_ids": segment_ids,
            "segment_scores": segment_score_array(scores, segment_ids.shape[1]),
        },
        run.rows,
    )
    batch["response_mask"] = batch["response_mask"] * feedback.pop("scored").astype(batch["response_mask"].dtype)
    batch.update(feedback)
    batch.update(scoring(params, ref_params, batch))
    advantages, returns, rewards = compute_advantages(batch, config.ppo, kl_coef, config.rl.k_samples)
    batch.update(advantages=advantages, returns=returns)
    kl = to_host(jnp.sum(batch["logprobs"] - batch["ref_logprobs"], axis=1))
    flat_scores = [x for s in scores if s for x in s]
    metrics = {
        "sentence_score": float(np.mean(flat_scores)) if flat_scores else 0.0,
        "reward": float(to_host(jnp.sum(rewards, axis=1))[scored].mean()) if scored.any() else 0.0,
        "kl": float(kl[scored].mean()) if scored.any() else 0.0,
        "response_tokens": float(lengths.mean()),
        "unscored": float((~scored).sum()),
        **sample_diagnostics(
            to_host(batch["entropy"]), to_host(batch["values"]), to_host(returns), to_host(batch["response_mask"])
        ),
        **conclusion_rates(texts, repeated, config.rl.k_samples),
    }
    return {key: batch[key] for key in PPO_KEYS if key in batch}, metrics


def sample_diagnostics(entropy: np.ndarray, values: np.ndarray, returns: np.ndarray, mask: np.ndarray) -> dict:
    """Over the response tokens of a buffer (all `[B, T]`, `mask` 1 on tokens that count): the
    policy's mean next-token entropy, and the value model's explained variance of the returns,
    `1 - Var(returns - values) / Var(returns)` (1: perfect, 0: no better than their mean)."""
    on = mask > 0
    if not on.any():
        return {"entropy": 0.0, "explained_variance": 0.0}
    target, residual = returns[on], returns[on] - values[on]
    variance = float(np.var(target))
    return {
        "entropy": float(entropy[on].mean()),
        "explained_variance": 1.0 - float(np.var(residual)) / variance if variance > 0 else 0.0,
    }


def conclusion_rates(texts: Sequence[str], problems: Sequence[Problem], k_samples: int) -> dict:
    """How often sampled rationales conclude with the right option ("... the answer is (X)"):
    `sample_accuracy` over all samples, `pass_at_k` the share of questions (each `k_samples`
    adjacent rows) with a right conclusion among their samples: the headroom RL can sharpen."""
    right = np.array([parse_answer(t, len(p.choices)) == p.answer for t, p in zip(texts, problems)])
    return {"sample_accuracy": float(right.mean()), "pass_at_k": float(right.reshape(-1, k_samples).any(axis=1).mean())}

"""One rollout buffer of an RL round: k sampled rationales per question, the Teacher's sentence
scores, and the jitted scoring pass and advantages. Host code: it calls the Teacher."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ares_jax.data.batching import encode_prompts, rationale_examples
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import strip_solution_tag
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


def collect_rollout(run, params: dict, ref_params, problems: Sequence[Problem], rng, kl_coef: float, scoring):
    """Samples `rl.k_samples` rationales for each of `problems`, has the Teacher score their
    sentences, and scores them with the policy, the reference and the value model.

    Returns (buffer of `[B * k, ...]` arrays with advantages and returns, host metrics). An
    unscored sample (the Teacher gave no usable answer) gets an all-zero response mask: it stays
    in the buffer's fixed shape but adds nothing to the loss, and is counted.
    """
    config = run.config
    prompts, _ = rationale_examples(problems)
    arrays = encode_prompts(run.tokenizer, prompts, model_images(problems, config), config.model.max_source_length)
    sampling = SamplingConfig(config.model.max_target_length, temperature=config.rl.temperature, top_k=config.rl.top_k)
    batch = sample_responses(run.policy_model, params["policy"], put_batch(arrays, run.rows), rng, sampling,
                             config.rl.k_samples, run.sampling_layout(run.policy_model))
    batch.pop("sample_logprobs")
    lengths = to_host(batch["response_mask"]).sum(axis=1)
    _, sentences, segment_ids = response_segments(run.tokenizer, to_host(batch["tokens"]), lengths)
    repeated = [p for p in problems for _ in range(config.rl.k_samples)]
    # The "Solution:" tag is part of the first sentence's tokens but not of its claim.
    requests = [(p, [strip_solution_tag(s) for s in row]) for p, row in zip(repeated, sentences)]
    scores = run_batch(run.teacher.score_sentences, requests, config.teacher.concurrency,
                       progress="teacher: sentence scores", stats=run.teacher.stats)
    scored = np.array([s is not None for s in scores])
    feedback = put_batch({"scored": scored[:, None], "segment_ids": segment_ids,
                          "segment_scores": segment_score_array(scores, segment_ids.shape[1])}, run.rows)
    batch["response_mask"] = batch["response_mask"] * feedback.pop("scored").astype(batch["response_mask"].dtype)
    batch.update(feedback)
    batch.update(scoring(params, ref_params, batch))
    advantages, returns, rewards = compute_advantages(batch, config.ppo, kl_coef)
    batch.update(advantages=advantages, returns=returns)
    kl = to_host(jnp.sum(batch["logprobs"] - batch["ref_logprobs"], axis=1))
    flat_scores = [x for s in scores if s for x in s]
    metrics = {
        "sentence_score": float(np.mean(flat_scores)) if flat_scores else 0.0,
        "reward": float(to_host(jnp.sum(rewards, axis=1))[scored].mean()) if scored.any() else 0.0,
        "kl": float(kl[scored].mean()) if scored.any() else 0.0,
        "response_tokens": float(lengths.mean()),
        "unscored": float((~scored).sum()),
    }
    return {key: batch[key] for key in PPO_KEYS if key in batch}, metrics

"""Sentence-level rewards to per-token rewards, GAE and whitening: pure array functions.

Shapes: response tokens `[B, T]` (left-aligned, `mask` 1 on response tokens, 0 on padding),
sentences `[B, S]`. Inputs may be numpy or jax arrays; outputs are jax arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_rewards(
    *, logprobs, ref_logprobs, mask, segment_ids, segment_scores, kl_coef, neutral_score, placement="sentence"
):
    """Per-token rewards `[B, T]`.

    Every response token gets `-kl_coef * (logprobs - ref_logprobs)`; padding gets 0.
    placement="sentence" (ARES): the last token of sentence s also gets
    `segment_scores[b, s] - neutral_score`. placement="sequence" (the ablation): only the last
    response token gets `mean_s(segment_scores[b, s]) - neutral_score`, the mean over the
    sentences the rationale has. `segment_ids [B, T]` is the sentence of each token (-1 on
    padding), `segment_scores [B, S]` the Teacher's scores.
    """
    if placement not in ("sentence", "sequence"):
        raise ValueError(f"rl.reward_placement must be 'sentence' or 'sequence', got {placement!r}")
    mask = jnp.asarray(mask, jnp.float32)
    segments = jnp.asarray(segment_ids, jnp.int32)
    segment_scores = jnp.asarray(segment_scores, jnp.float32)
    kl_penalty = -kl_coef * (jnp.asarray(logprobs, jnp.float32) - jnp.asarray(ref_logprobs, jnp.float32))
    if placement == "sentence":
        next_segment = jnp.concatenate([segments[:, 1:], jnp.full_like(segments[:, :1], -1)], axis=1)
        rewarded = (segments >= 0) & (next_segment != segments) & (mask > 0)
        scores = jnp.take_along_axis(segment_scores, jnp.maximum(segments, 0), axis=1)
    else:
        next_mask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
        rewarded = (mask > 0) & (next_mask == 0)
        sentence_count = segments.max(axis=1, keepdims=True) + 1
        present = jnp.arange(segment_scores.shape[1])[None, :] < sentence_count
        scores = (segment_scores * present).sum(axis=1, keepdims=True) / jnp.maximum(sentence_count, 1)
    return (kl_penalty + jnp.where(rewarded, scores - neutral_score, 0.0)) * mask


def gae(*, rewards, values, mask, gamma, lam):
    """Generalised advantage estimation over the response tokens -> (advantages, returns) `[B, T]`.

    `delta_t = r_t + gamma * V_{t+1} - V_t` with `V_{t+1}` the next response token's value (0 after
    the last); `A_t = delta_t + gamma * lam * A_{t+1}`; `returns = A + V`; both 0 on padding.
    """
    mask = jnp.asarray(mask, jnp.float32)
    rewards = jnp.asarray(rewards, jnp.float32) * mask
    values = jnp.asarray(values, jnp.float32) * mask

    def backwards(carry, step):
        next_value, next_advantage = carry
        reward, value, valid = step
        delta = reward + gamma * next_value - value
        advantage = (delta + gamma * lam * next_advantage) * valid
        return (value * valid, advantage), advantage

    batch = rewards.shape[0]
    init = (jnp.zeros(batch), jnp.zeros(batch))
    _, advantages = jax.lax.scan(backwards, init, (rewards.T, values.T, mask.T), reverse=True)
    advantages = advantages.T
    return advantages, (advantages + values) * mask


def whiten(x, mask, eps: float = 1e-8):
    """`(x - mean) / std` with mean and (population) variance over the masked entries; 0 elsewhere."""
    x = jnp.asarray(x, jnp.float32)
    mask = jnp.asarray(mask, jnp.float32)
    n = jnp.maximum(mask.sum(), 1.0)
    mean = (x * mask).sum() / n
    variance = (jnp.square(x - mean) * mask).sum() / n
    return (x - mean) * jax.lax.rsqrt(variance + eps) * mask

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
    _, score_rewards = score_rewards_at_ends(
        mask=mask,
        segment_ids=segment_ids,
        segment_scores=segment_scores,
        neutral_score=neutral_score,
        placement=placement,
    )
    return kl_rewards(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask, kl_coef=kl_coef) + score_rewards


def kl_rewards(*, logprobs, ref_logprobs, mask, kl_coef):
    """The KL part of the token rewards `[B, T]`: `-kl_coef * (logprobs - ref_logprobs)` on
    response tokens, 0 on padding."""
    difference = jnp.asarray(logprobs, jnp.float32) - jnp.asarray(ref_logprobs, jnp.float32)
    return -kl_coef * difference * jnp.asarray(mask, jnp.float32)


def score_rewards_at_ends(*, mask, segment_ids, segment_scores, neutral_score, placement="sentence"):
    """The Teacher's part of the token rewards -> (rewarded `[B, T]` bool, rewards `[B, T]`):
    `score - neutral_score` at the last token of each sentence (placement="sentence"), or the
    mean score's at the last response token (placement="sequence"); 0 elsewhere."""
    if placement not in ("sentence", "sequence"):
        raise ValueError(f"rl.reward_placement must be 'sentence' or 'sequence', got {placement!r}")
    mask = jnp.asarray(mask, jnp.float32)
    segments = jnp.asarray(segment_ids, jnp.int32)
    segment_scores = jnp.asarray(segment_scores, jnp.float32)
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
    return rewarded, jnp.where(rewarded, scores - neutral_score, 0.0) * mask


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


def group_advantages(*, kl_rewards, score_rewards, sentence_end_mask, mask, group_size: int, eps: float = 1e-6):
    """Sentence-level group-relative advantages, no critic -> (advantages, returns) `[B, T]`.

    The rows come in groups of `group_size` samples of one question (adjacent rows).
    `score_rewards` holds each sentence's `score - neutral` at its last token (where
    `sentence_end_mask` is 1), `kl_rewards` the per-token KL penalty. Each sentence reward is
    normalised by the mean and (population) standard deviation of all sentence rewards of its
    question's samples, so a sentence counts by how it compares with the other attempts at the same
    question; a token's advantage is the sum of the normalised sentence rewards at or after it plus
    the KL rewards at or after it (gamma 1). A question whose sentences all score alike gives them
    0. `returns` are the plain rewards-to-go, which the value model still learns (for monitoring).
    """
    mask = jnp.asarray(mask, jnp.float32)
    kl_rewards = jnp.asarray(kl_rewards, jnp.float32) * mask
    ends = jnp.asarray(sentence_end_mask, jnp.float32) * mask
    score_rewards = jnp.asarray(score_rewards, jnp.float32) * ends
    batch, length = mask.shape
    if batch % group_size:
        raise ValueError(f"{batch} rows do not split into groups of {group_size} samples")
    grouped_scores = score_rewards.reshape(batch // group_size, group_size * length)
    grouped_ends = ends.reshape(batch // group_size, group_size * length)
    count = jnp.maximum(grouped_ends.sum(axis=1, keepdims=True), 1.0)
    mean = grouped_scores.sum(axis=1, keepdims=True) / count
    variance = (jnp.square(grouped_scores - mean) * grouped_ends).sum(axis=1, keepdims=True) / count
    scale = jnp.where(variance > 0, jax.lax.rsqrt(variance + eps), 0.0)  # all alike: nothing to prefer
    normalised = ((grouped_scores - mean) * scale * grouped_ends).reshape(batch, length)

    def to_go(x):  # sum over this token and the ones after it
        return jnp.flip(jnp.cumsum(jnp.flip(x, axis=1), axis=1), axis=1) * mask

    return to_go(normalised + kl_rewards), to_go(score_rewards + kl_rewards)

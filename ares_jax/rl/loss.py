"""The clipped PPO loss with a value term, exactly as the method states it."""

from __future__ import annotations

import jax.numpy as jnp


def ppo_loss(
    *, logprobs, old_logprobs, values, returns, advantages, mask, clip_range, vf_coef, entropy=None, entropy_coef=0.0
):
    """-> (loss, metrics). All arrays `[B, T]`; `mask` 1 on response tokens.

    `n = sum(mask)`; `ratio = exp((logprobs - old_logprobs) * mask)`;
    policy loss `sum(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) * mask) / n`;
    value loss `sum((values - returns)^2 * mask) / n`; loss = policy + vf_coef * value.
    With `entropy` (the policy's next-token entropy `[B, T]`), the loss also subtracts
    `entropy_coef * sum(entropy * mask) / n`: a bonus for keeping the sampler's spread.
    """
    mask = jnp.asarray(mask, jnp.float32)
    logprobs = jnp.asarray(logprobs, jnp.float32)
    old_logprobs = jnp.asarray(old_logprobs, jnp.float32)
    advantages = jnp.asarray(advantages, jnp.float32)
    n = jnp.maximum(mask.sum(), 1.0)
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    policy_loss = (jnp.maximum(unclipped, clipped) * mask).sum() / n
    value_loss = (jnp.square(jnp.asarray(values, jnp.float32) - jnp.asarray(returns, jnp.float32)) * mask).sum() / n
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "clipfrac": ((clipped > unclipped).astype(jnp.float32) * mask).sum() / n,
        # The low-variance estimator E[(r - 1) - log r] of KL(old || new).
        "approx_kl": (((ratio - 1.0) - log_ratio) * mask).sum() / n,
    }
    loss = policy_loss + vf_coef * value_loss
    if entropy is not None:
        metrics["entropy"] = (jnp.asarray(entropy, jnp.float32) * mask).sum() / n
        loss = loss - entropy_coef * metrics["entropy"]
    return loss, metrics

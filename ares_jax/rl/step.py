"""The jitted pieces of one PPO round: scoring the sampled responses, turning Teacher scores into
advantages, and the PPO update `(state, batch) -> (state, metrics)`.

A rollout batch is a dict of arrays:
  input_ids, attention_mask       `[B, S]`   prompts
  image (optional)                `[B, P, F]` or `[B, H, W, 3]`
  tokens, response_mask           `[B, T]`   sampled responses (mask: up to and including EOS)
  segment_ids                     `[B, T]`   sentence of each response token, -1 on padding
  segment_scores                  `[B, N]`   the Teacher's sentence scores
and, once scored, logprobs / ref_logprobs / values `[B, T]`, then advantages / returns `[B, T]`.
The train state's params are `{"policy": ..., "value": ...}`, updated together by one optimizer;
the frozen reference policy's params are passed beside it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from ares_jax.models.generate import SamplingConfig, generate
from ares_jax.models.model import MultimodalT5, decoder_inputs
from ares_jax.profiling import scoped
from ares_jax.rl.advantages import gae, group_advantages, kl_rewards, score_rewards_at_ends, whiten
from ares_jax.rl.config import PPOConfig
from ares_jax.rl.loss import ppo_loss
from ares_jax.train_state import TrainState, adamw

if TYPE_CHECKING:
    from ares_jax.parallel.sharding import StepShardings


def teacher_forced(model: MultimodalT5, params, batch):
    """`model` run over the sampled responses: logits `[B, T, V]` (policy) or values `[B, T]`."""
    return model.apply(
        {"params": params},
        batch["input_ids"],
        batch["attention_mask"],
        decoder_inputs(batch["tokens"], model.config.decoder_start_token_id),
        batch["response_mask"],
        batch.get("image"),
    )


def response_logprobs(model: MultimodalT5, params, batch, with_entropy: bool = False):
    """Log-probabilities `[B, T]` of the response tokens under `params` (one forward pass); with
    `with_entropy`, also the entropy `[B, T]` of the model's next-token distribution there."""
    log_probs = jax.nn.log_softmax(teacher_forced(model, params, batch))
    chosen = jnp.take_along_axis(log_probs, batch["tokens"][..., None], axis=-1)[..., 0]
    if not with_entropy:
        return chosen
    return chosen, -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def sample_responses(
    policy: MultimodalT5, params, prompts: dict, rng, sampling: SamplingConfig, k_samples: int, shardings=None
):
    """Samples `k_samples` responses per prompt. `prompts` holds input_ids, attention_mask and
    optionally image (`[B, ...]`); returns them repeated to `[B * k, ...]` (each prompt's copies
    adjacent) with `tokens`, `response_mask` and the sampler's `sample_logprobs` added.
    `shardings` (`parallel.StepShardings` of the params): the sampler's layout on a mesh."""
    batch = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k_samples, axis=0), prompts)
    if shardings is not None:
        batch = jax.device_put(batch, shardings.batch)
    out = generate(
        policy, params, batch["input_ids"], batch["attention_mask"], rng, sampling, batch.get("image"), shardings
    )
    return dict(batch, tokens=out.tokens, response_mask=out.response_mask, sample_logprobs=out.logprobs)


def make_scoring_fn(policy: MultimodalT5, value_model: MultimodalT5, shardings: StepShardings | None = None):
    """One jitted pass: `(params {"policy", "value"}, ref_params, batch) ->
    {"logprobs", "ref_logprobs", "values", "entropy"}`, each `[B, T]`, zero on padding (entropy:
    of the policy's next-token distribution, for monitoring). `shardings`
    (`parallel.StepShardings` whose `state` is the {"policy", "value"} params layout): the
    arguments' layout on a mesh; the outputs lie as the batch."""

    @scoped("scoring")
    def score(params, ref_params, batch):
        mask = batch["response_mask"].astype(jnp.float32)
        logprobs, entropy = response_logprobs(policy, params["policy"], batch, with_entropy=True)
        return {
            "logprobs": logprobs * mask,
            "ref_logprobs": response_logprobs(policy, ref_params, batch) * mask,
            "values": teacher_forced(value_model, params["value"], batch) * mask,
            "entropy": entropy * mask,
        }

    layout = (
        {}
        if shardings is None
        else dict(
            in_shardings=(shardings.state, shardings.state["policy"], shardings.batch), out_shardings=shardings.batch
        )
    )
    return jax.jit(score, **layout)


@functools.partial(jax.jit, static_argnames=("config", "group_size"))
def compute_advantages(batch, config: PPOConfig, kl_coef=None, group_size: int = 1):
    """Token rewards -> advantages (GAE over the critic's values, or group-relative with
    `config.advantage="group"`, the rows in groups of `group_size` samples of one question) ->
    (optional) whitening, jitted. Returns (advantages, returns, rewards); the returns are the
    value model's targets (GAE's with `config.value_lambda` where it is set). `kl_coef` overrides
    `config.kl_coef` (the adaptive controller's current value)."""
    mask = batch["response_mask"]
    kl_coef = config.kl_coef if kl_coef is None else kl_coef
    kl_penalty = kl_rewards(logprobs=batch["logprobs"], ref_logprobs=batch["ref_logprobs"], mask=mask, kl_coef=kl_coef)
    sentence_ends, score_rewards = score_rewards_at_ends(
        mask=mask,
        segment_ids=batch["segment_ids"],
        segment_scores=batch["segment_scores"],
        neutral_score=config.neutral_score,
        placement=config.reward_placement,
    )
    rewards = kl_penalty + score_rewards
    if config.advantage == "group":
        advantages, returns = group_advantages(
            kl_rewards=kl_penalty,
            score_rewards=score_rewards,
            sentence_end_mask=sentence_ends,
            mask=mask,
            group_size=group_size,
        )
    else:
        advantages, returns = gae(
            rewards=rewards, values=batch["values"], mask=mask, gamma=config.gamma, lam=config.gae_lambda
        )
        if config.value_lambda not in (None, config.gae_lambda):  # the value model's own targets
            _, returns = gae(
                rewards=rewards, values=batch["values"], mask=mask, gamma=config.gamma, lam=config.value_lambda
            )
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return advantages, returns, rewards


def rl_optimizer(learning_rate: float, weight_decay: float, value_learning_rate: float | None = None):
    """The optimizer of the `{"policy": ..., "value": ...}` params: one clipped AdamW over both at
    `learning_rate` (the method's), or with `value_learning_rate` one each, the value model's at
    its own rate, each gradient clipped by its own norm."""
    optimizer = adamw(learning_rate, weight_decay=weight_decay)
    if value_learning_rate is None:
        return optimizer
    value_optimizer = adamw(value_learning_rate, weight_decay=weight_decay)
    return optax.multi_transform(
        {"policy": optimizer, "value": value_optimizer}, {"policy": "policy", "value": "value"}
    )


def make_ppo_step(
    policy: MultimodalT5,
    value_model: MultimodalT5,
    optimizer: optax.GradientTransformation,
    config: PPOConfig,
    shardings: StepShardings | None = None,
    value_only: bool = False,
):
    """A jitted `(state, batch) -> (state, metrics)` over policy and value parameters together.
    `value_only`: the value model's warm-up step; the loss is the same, but the policy's gradient
    is zeroed (its Adam moments stay 0, the gradient clip sees only the value model's) and its
    parameters come back unchanged (no weight decay either).

    The batch (old `logprobs`, `advantages`, `returns` included) is split into
    `config.accumulation_steps` micro-batches whose gradients are summed by a `lax.scan` before
    one optimizer update. A batch whose loss or gradients are not finite leaves the state
    unchanged (`metrics["skipped"] == 1`). The state's buffers are donated. `shardings`
    (`parallel.StepShardings`): the state and batch layout on a mesh; the state comes back laid
    out the same, the metrics replicated.
    """
    accumulation = config.accumulation_steps

    def loss_fn(params, micro):
        mask = micro["response_mask"].astype(jnp.float32)
        entropy = None
        if config.entropy_coef > 0:  # the default graph stays without the entropy's extra work
            logprobs, entropy = response_logprobs(policy, params["policy"], micro, with_entropy=True)
        else:
            logprobs = response_logprobs(policy, params["policy"], micro)
        values = teacher_forced(value_model, params["value"], micro)
        return ppo_loss(
            logprobs=logprobs,
            old_logprobs=micro["logprobs"],
            values=values,
            returns=micro["returns"],
            advantages=micro["advantages"],
            mask=mask,
            clip_range=config.clip_range,
            vf_coef=config.vf_coef,
            entropy=entropy,
            entropy_coef=config.entropy_coef,
        )

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @scoped("ppo_step")
    def ppo_step(state: TrainState, batch):
        size = batch["tokens"].shape[0]
        if size % accumulation:
            raise ValueError(f"batch of {size} does not split into {accumulation} micro-batches")
        micro_batches = jax.tree_util.tree_map(
            lambda x: x.reshape((accumulation, size // accumulation) + x.shape[1:]), batch
        )

        def accumulate(grads, micro):
            (loss, metrics), micro_grads = grad_fn(state.params, micro)
            grads = jax.tree_util.tree_map(jnp.add, grads, micro_grads)
            return grads, dict(metrics, loss=loss)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        grads, metrics = jax.lax.scan(accumulate, zeros, micro_batches)
        grads = jax.tree_util.tree_map(lambda g: g / accumulation, grads)
        if value_only:  # no policy gradient: it neither moves the policy's Adam moments nor shares the clip
            grads = {**grads, "policy": jax.tree_util.tree_map(jnp.zeros_like, grads["policy"])}
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)

        grad_norm = optax.tree.norm(grads)
        metrics.update(
            policy_grad_norm=optax.tree.norm(grads["policy"]), value_grad_norm=optax.tree.norm(grads["value"])
        )
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if value_only:
            params = {**params, "policy": state.params["policy"]}
        # Keep the old state (bit for bit) when the batch is not finite.
        keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + finite.astype(state.step.dtype),
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
        )
        metrics.update(grad_norm=grad_norm, skipped=(~finite).astype(jnp.int32))
        return new_state, metrics

    layout = (
        {}
        if shardings is None
        else dict(
            in_shardings=(shardings.state, shardings.batch), out_shardings=(shardings.state, shardings.replicated)
        )
    )
    return jax.jit(ppo_step, donate_argnums=(0,), **layout)


class AdaptiveKLController:
    """Host-side KL coefficient (Ziegler et al. 2019): moves `value` so that the measured KL to the
    reference approaches `target`, by at most 20% of the error per `horizon` samples."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"rl.kl_target and rl.kl_horizon must be positive, got {target}, {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_samples: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
        return self.value

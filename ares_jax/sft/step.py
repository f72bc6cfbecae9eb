"""Teacher-forced cross-entropy and the pure, jitted SFT step `(state, batch) -> (state, metrics)`.

A batch is a dict of arrays:
  input_ids, attention_mask        `[B, S]`  the prompt
  decoder_input_ids                `[B, T]`  decoder start token + target[:-1]
  labels, label_mask               `[B, T]`  target tokens and which of them count
  image (optional)                 `[B, P, F]` features or `[B, H, W, 3]` pixels
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from ares_jax.models.model import MultimodalT5
from ares_jax.profiling import scoped
from ares_jax.train_state import TrainState

if TYPE_CHECKING:
    from ares_jax.parallel.sharding import StepShardings


def token_cross_entropy(logits, labels, label_mask):
    """Mean negative log-likelihood over the counted tokens.

    `logits [B, T, V]` float32, `labels [B, T]` int, `label_mask [B, T]` -> scalar.
    """
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    mask = label_mask.astype(jnp.float32)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def make_sft_step(
    model: MultimodalT5,
    optimizer: optax.GradientTransformation,
    donate: bool = True,
    shardings: StepShardings | None = None,
):
    """A jitted `(state, batch, dropout_rng) -> (state, metrics)`; the state's buffers are donated.
    `shardings` (`parallel.StepShardings`): the state and batch layout on a mesh; the state comes
    back laid out the same, the metrics replicated; the step is then called with all three
    arguments (the dropout key may be None)."""

    def loss_fn(params, batch, dropout_rng):
        logits = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["decoder_input_ids"],
            batch.get("decoder_attention_mask"),
            batch.get("image"),
            deterministic=dropout_rng is None,
            rngs={"dropout": dropout_rng} if dropout_rng is not None else {},
        )
        return token_cross_entropy(logits, batch["labels"], batch["label_mask"])

    @scoped("sft_step")
    def sft_step(state: TrainState, batch, dropout_rng=None):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, dropout_rng)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    donate_argnums = (0,) if donate else ()
    if shardings is None:
        return jax.jit(sft_step, donate_argnums=donate_argnums)
    # jit's in_shardings name every positional argument: call it with the dropout key, even None
    return jax.jit(
        sft_step,
        donate_argnums=donate_argnums,
        in_shardings=(shardings.state, shardings.batch, shardings.replicated),
        out_shardings=(shardings.state, shardings.replicated),
    )

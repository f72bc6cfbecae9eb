"""The training state shared by the SFT and PPO steps, and the optimizer the spec prescribes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a jitted step updates: a pytree, donated to the step and returned anew."""

    step: jax.Array
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation) -> "TrainState":
        return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params, opt_state=optimizer.init(params))


def decay_mask(params):
    """True for the weights AdamW decays: kernels and token embeddings. Biases, norm scales and
    T5's relative-attention bias table are left alone (the spec: no decay on biases or norms)."""

    def decays(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return names[-1] in ("kernel", "embedding") and "relative_attention_bias" not in names

    return jax.tree_util.tree_map_with_path(decays, params)


def adamw(
    learning_rate: float | optax.Schedule,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    max_grad_norm: float | None = 1.0,
) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW with decay masked as `decay_mask` says."""
    parts = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm else []
    parts.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask))
    return optax.chain(*parts)


def adamw_host_scheduled(max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
    """`adamw` whose learning rate and weight decay live in the optimizer state, set by the host
    before each step (`set_hyperparams`): every SFT phase of a model then shares one compiled
    step, whatever its schedule."""
    return optax.inject_hyperparams(adamw, static_args=("max_grad_norm",))(
        learning_rate=0.0, weight_decay=0.0, max_grad_norm=max_grad_norm
    )


def set_hyperparams(opt_state, **values):
    """`opt_state` with the injected hyperparameters `values` (e.g. learning_rate=1e-3) replaced,
    wherever in the state they are (also under `optax.multi_transform`)."""
    injected_types = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
    is_injected = lambda node: isinstance(node, injected_types)  # noqa: E731

    def replace(node):
        if not is_injected(node):
            return node
        hyperparams = dict(node.hyperparams)
        for name, value in values.items():
            hyperparams[name] = jax.numpy.asarray(value, hyperparams[name].dtype)
        return node._replace(hyperparams=hyperparams)

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=is_injected)

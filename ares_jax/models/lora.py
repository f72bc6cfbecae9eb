"""LoRA (Hu et al. 2021): a trainable low-rank update beside a frozen dense kernel.

`y = x W + (alpha / rank) * dropout(x) A B` with `W [*in, *out]` the base kernel (same name and
place as in the plain model, so base parameters load unchanged), `A [*in, rank]` random and
`B [rank, *out]` zero: a fresh adapter leaves the model's outputs as they were. Dropout on the
adapter's input is on whenever a "dropout" rng is given to `apply` (the SFT step gives one).

`lora_labels` tells the optimizer which leaves to train (`models.transplant` puts base
parameters into an adapted model's tree), and `merge_adapters` folds `A B` into the kernels, giving plain
parameters for the model without adapters.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ares_jax.models.config import T5Config

ADAPTER_NAMES = ("lora_a", "lora_b")


class LoRADense(nn.Module):
    """A bias-free dense layer over the trailing `n_in` axes of `x`, plus a LoRA adapter."""

    features: tuple[int, ...]
    n_in: int
    rank: int
    alpha: float
    dropout_rate: float
    kernel_init: Callable
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_shape = x.shape[x.ndim - self.n_in :]
        kernel = self.param("kernel", self.kernel_init, in_shape + self.features, jnp.float32)
        lora_a = self.param(
            "lora_a", nn.initializers.normal(1.0 / np.sqrt(np.prod(in_shape))), in_shape + (self.rank,), jnp.float32
        )
        lora_b = self.param("lora_b", nn.initializers.zeros, (self.rank,) + self.features, jnp.float32)
        x = x.astype(self.dtype)
        out = jnp.tensordot(x, kernel.astype(self.dtype), axes=self.n_in)
        if self.dropout_rate and self.has_rng("dropout"):
            x = nn.Dropout(self.dropout_rate, deterministic=False)(x)
        update = jnp.tensordot(
            jnp.tensordot(x, lora_a.astype(self.dtype), axes=self.n_in), lora_b.astype(self.dtype), axes=1
        )
        return out + (self.alpha / self.rank) * update


def dense(config: T5Config, name: str, features, kernel_init, n_in: int = 1) -> nn.Module:
    """The projection `name` of a T5 block: plain `nn.DenseGeneral`, or `LoRADense` when `name`
    is one of `config.lora_targets`."""
    features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
    if config.lora_rank and name in config.lora_targets:
        return LoRADense(
            features,
            n_in,
            config.lora_rank,
            config.lora_alpha,
            config.lora_dropout,
            kernel_init,
            config.compute_dtype,
            name=name,
        )
    return nn.DenseGeneral(
        features,
        axis=tuple(range(-n_in, 0)),
        use_bias=False,
        dtype=config.compute_dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        name=name,
    )


def _leaf_name(path) -> str:
    return getattr(path[-1], "key", str(path[-1]))


def lora_labels(params) -> dict:
    """ "adapter" for LoRA leaves, "frozen" for the rest (labels for `optax.multi_transform`)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "adapter" if _leaf_name(path) in ADAPTER_NAMES else "frozen", params
    )


def merge_adapters(params, alpha: float, rank: int):
    """Plain parameters: each adapted kernel `W + (alpha / rank) A B`, adapter leaves dropped."""

    def merge(node):
        if not isinstance(node, dict):
            return node
        if "lora_a" in node:
            a, b = node["lora_a"], node["lora_b"]
            update = jnp.tensordot(a, b, axes=1)
            return {"kernel": node["kernel"] + (alpha / rank) * update}
        return {key: merge(value) for key, value in node.items()}

    return merge(params)

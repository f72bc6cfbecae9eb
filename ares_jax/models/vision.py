"""Image side of the multimodal T5: MM-CoT's gated fusion and a small ViT patch encoder."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ares_jax.models.config import T5Config, VisionConfig
from ares_jax.models.t5 import normal_init

_lecun = nn.initializers.lecun_normal()


def _dense(features: int, axes: tuple, dtype, name: str, use_bias: bool = True):
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(_lecun, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]),
        name=name,
    )


def _layer_norm(dtype, name: str):
    return nn.LayerNorm(
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("image_features",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("image_features",)),
        name=name,
    )


class ImageFusion(nn.Module):
    """MM-CoT fusion after the text encoder.

    image -> Linear -> d_model; single-head attention (text states as queries, projected image
    as keys/values, scaled by 1/sqrt(d_model) as torch's MultiheadAttention); gate =
    sigmoid(Linear([h; att])); fused = (1 - gate) * h + gate * att.
    """

    config: T5Config

    @nn.compact
    def __call__(self, hidden, image_features):
        """`hidden [B, S, D]`, `image_features [B, P, F]` -> fused `[B, S, D]`."""
        c = self.config
        d, dtype = c.d_model, c.compute_dtype
        image = _dense(d, ("image_features", "embed"), dtype, "image_dense")(image_features.astype(dtype))
        queries = _dense(d, ("embed", "joined_kv"), dtype, "query")(hidden)
        keys = _dense(d, ("embed", "joined_kv"), dtype, "key")(image)
        values = _dense(d, ("embed", "joined_kv"), dtype, "value")(image)
        scores = jnp.einsum("bsd,bpd->bsp", queries, keys, preferred_element_type=jnp.float32) * d**-0.5
        weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
        attended = _dense(d, ("joined_kv", "embed"), dtype, "out")(jnp.einsum("bsp,bpd->bsd", weights, values))
        gate = jax.nn.sigmoid(
            _dense(d, ("fusion_in", "embed"), dtype, "gate_dense")(jnp.concatenate([hidden, attended], axis=-1))
        )
        return (1.0 - gate) * hidden + gate * attended


class PatchEncoder(nn.Module):
    """A small pre-LN ViT: pixels `[B, H, W, 3]` (uint8 0..255 or float 0..1) -> `[B, P, F]`."""

    vision: VisionConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, pixels, deterministic: bool = True):
        v = self.vision
        x = pixels.astype(jnp.float32)
        if jnp.issubdtype(pixels.dtype, jnp.integer):
            x = x / 255.0
        batch, height, width, channels = x.shape
        if height != v.image_size or width != v.image_size:
            raise ValueError(f"image of {height}x{width} pixels, but model.vision.image_size is {v.image_size}")
        p = v.patch_size
        patches = x.reshape(batch, height // p, p, width // p, p, channels)
        patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, -1, p * p * channels)
        h = _dense(v.feature_dim, ("patch", "image_features"), self.dtype, "patch_embed")(patches.astype(self.dtype))
        position = self.param(
            "position_embedding",
            normal_init(0.02, ("patches", "image_features")),
            (patches.shape[1], v.feature_dim),
            jnp.float32,
        )
        h = h + position.astype(self.dtype)
        head_dim = v.feature_dim // v.vit_heads
        for i in range(v.vit_layers):
            x = _layer_norm(self.dtype, f"layer_{i}_attention_norm")(h)
            qkv = _dense(3 * v.feature_dim, ("image_features", "joined_kv"), self.dtype, f"layer_{i}_qkv")(x)
            q, k, val = jnp.split(qkv.reshape(batch, -1, 3 * v.vit_heads, head_dim), 3, axis=2)
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * head_dim**-0.5
            weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
            attended = jnp.einsum("bhqk,bkhd->bqhd", weights, val).reshape(batch, -1, v.feature_dim)
            h = h + _dense(v.feature_dim, ("joined_kv", "image_features"), self.dtype, f"layer_{i}_out")(attended)
            x = _layer_norm(self.dtype, f"layer_{i}_mlp_norm")(h)
            x = jax.nn.gelu(_dense(v.vit_mlp_dim, ("image_features", "mlp"), self.dtype, f"layer_{i}_mlp_in")(x))
            h = h + _dense(v.feature_dim, ("mlp", "image_features"), self.dtype, f"layer_{i}_mlp_out")(x)
        return _layer_norm(self.dtype, "final_norm")(h)

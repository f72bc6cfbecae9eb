"""T5 building blocks in Flax linen, following the T5 paper and HF's `T5Config` semantics.

Layout conventions: activations `[B, T, D]`; attention keys `[B, H, Dh, S]` and values
`[B, H, S, Dh]`, so both attention products are plain batched matmuls with no transpose inside the
decoding loop (XLA's CPU batched matmul is ~3x slower with time before heads, and transposing a
cache every step costs more than the step's matmuls); attention
bias `[1 or B, H, Q, K]` (float32); attention masks `[B, 1, Q, K]` (bool, True = may attend).
Every parameter carries logical axis names (`vocab`, `embed`, `mlp`, `heads`, `kv`,
`relpos_buckets`) so `parallel/` can map them onto a device mesh by rules.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ares_jax.models.config import T5Config
from ares_jax.models.lora import dense

_MASKED = float(np.finfo(np.float32).min)


def normal_init(stddev: float, axes: tuple):
    """A normal initialiser tagged with logical axis names."""
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Maps `key_position - query_position` to T5's relative-attention bucket (host-side numpy).

    Computed in float32 with the same operation order as HF's PyTorch version so that bucket
    boundaries (where `log` lands on an integer) agree exactly. Shapes are static in every caller,
    so the table is a compile-time constant.
    """
    relative_position = np.asarray(relative_position, dtype=np.int64)
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int64) * num_buckets
        distance = np.abs(relative_position)
    else:
        distance = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    with np.errstate(divide="ignore"):
        scaled = np.log(distance.astype(np.float32) / np.float32(max_exact)) / np.float32(
            math.log(max_distance / max_exact)
        )
        scaled = scaled * np.float32(num_buckets - max_exact)
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return (buckets + np.where(is_small, distance, large)).astype(np.int32)


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, no bias; statistics in float32."""

    epsilon: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (x.shape[-1],), jnp.float32
        )
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return (scale * x32).astype(self.dtype)


class RelativePositionBias(nn.Module):
    """Learned per-head bias over bucketed relative positions, shared by all layers of a stack."""

    config: T5Config
    bidirectional: bool

    def setup(self):
        c = self.config
        self.embedding = self.param(
            "embedding",
            normal_init(c.d_model**-0.5, ("relpos_buckets", "heads")),
            (c.relative_attention_num_buckets, c.num_heads),
            jnp.float32,
        )

    def _buckets(self, relative_position):
        c = self.config
        return relative_position_bucket(
            relative_position, self.bidirectional, c.relative_attention_num_buckets, c.relative_attention_max_distance
        )

    def __call__(self, query_length: int, key_length: int):
        """Bias for queries at 0..Q-1 and keys at 0..K-1 -> `[1, H, Q, K]` float32."""
        relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
        # Gathering from the [H, buckets] table gives [H, Q, K] with no transpose, whose gradient
        # (a sum over the batch then a transpose) XLA's CPU backend fuses into a very slow loop.
        return jnp.take(self.embedding.T, jnp.asarray(self._buckets(relative)), axis=1)[None]

    def at_position(self, query_position, key_length: int):
        """Bias for one (traced) causal query position over keys 0..K-1 -> `[1, H, 1, K]`.

        Used by cached decoding: keys after the query are masked anyway, so only distances
        0..K-1 to the past are tabulated.
        """
        table = jnp.asarray(self._buckets(-np.arange(key_length)))  # bucket of distance d = q - k
        distance = jnp.clip(query_position - jnp.arange(key_length), 0, key_length - 1)
        return jnp.take(self.embedding.T, jnp.take(table, distance), axis=1)[None, :, None, :]


@jax.custom_vjp
def add_broadcast_bias(scores, bias):
    """`scores [B, H, Q, K] + bias [1, H, Q, K]`.

    The gradient of `bias` is a sum over the batch. In our CPU profiles XLA emitted that reduction
    as a 100-200 ms fusion per training step; written as a `ones[1, B] @ grad[B, H*Q*K]` product it
    takes a few ms, so the backward pass is written that way; the values are the same.
    """
    return scores + bias


def _add_broadcast_bias_fwd(scores, bias):
    return scores + bias, None


def _add_broadcast_bias_bwd(_, grad):
    batch = grad.shape[0]
    bias_grad = jnp.matmul(jnp.ones((1, batch), grad.dtype), grad.reshape(batch, -1))
    return grad, bias_grad.reshape((1,) + grad.shape[1:])


add_broadcast_bias.defvjp(_add_broadcast_bias_fwd, _add_broadcast_bias_bwd)


class Attention(nn.Module):
    """T5 multi-head attention: no 1/sqrt(d) scaling (folded into the init), no biases."""

    config: T5Config

    def setup(self):
        c = self.config
        heads = (c.num_heads, c.d_kv)
        self.q = dense(c, "q", heads, normal_init((c.d_model * c.d_kv) ** -0.5, ("embed", "heads", "kv")))
        self.k = dense(c, "k", heads, normal_init(c.d_model**-0.5, ("embed", "heads", "kv")))
        self.v = dense(c, "v", heads, normal_init(c.d_model**-0.5, ("embed", "heads", "kv")))
        self.o = dense(c, "o", c.d_model, normal_init(c.inner_dim**-0.5, ("heads", "kv", "embed")), n_in=2)
        self.dropout = nn.Dropout(c.dropout_rate)

    def key_values(self, x):
        """`[B, S, D]` -> keys `[B, H, Dh, S]`, values `[B, H, S, Dh]`."""
        return jnp.transpose(self.k(x), (0, 2, 3, 1)), _heads_first(self.v(x))

    def __call__(self, x, key_values, bias, mask, deterministic: bool):
        """Queries from `x [B, Q, D]` over `key_values`; bias `[1, H, Q, K]` or None, mask `[B, 1, Q, K]`."""
        keys, values = key_values
        queries = _heads_first(self.q(x))
        scores = jnp.matmul(queries, keys, preferred_element_type=jnp.float32)
        if bias is not None:
            scores = add_broadcast_bias(scores, bias)
        scores = jnp.where(mask, scores, _MASKED)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.config.compute_dtype)
        weights = self.dropout(weights, deterministic=deterministic)
        return self.o(_heads_first(jnp.matmul(weights, values)))


def _heads_first(x):
    """`[B, T, H, Dh]` <-> `[B, H, T, Dh]` (its own inverse)."""
    return jnp.swapaxes(x, 1, 2)


class FeedForward(nn.Module):
    """`relu`: wo(relu(wi x)); `gated-gelu`: wo(gelu_tanh(wi_0 x) * wi_1 x)."""

    config: T5Config

    @nn.compact
    def __call__(self, x, deterministic: bool):
        c = self.config
        if c.feed_forward_proj == "gated-gelu":
            hidden = jax.nn.gelu(
                dense(c, "wi_0", c.d_ff, normal_init(c.d_model**-0.5, ("embed", "mlp")))(x), approximate=True
            )
            hidden = hidden * dense(c, "wi_1", c.d_ff, normal_init(c.d_model**-0.5, ("embed", "mlp")))(x)
        else:
            hidden = jax.nn.relu(dense(c, "wi", c.d_ff, normal_init(c.d_model**-0.5, ("embed", "mlp")))(x))
        hidden = nn.Dropout(c.dropout_rate)(hidden, deterministic=deterministic)
        return dense(c, "wo", c.d_model, normal_init(c.d_ff**-0.5, ("mlp", "embed")))(hidden)


class EncoderLayer(nn.Module):
    config: T5Config

    def setup(self):
        c = self.config
        self.self_attention_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.self_attention = Attention(c)
        self.ffn_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.ffn = FeedForward(c)
        self.dropout = nn.Dropout(c.dropout_rate)

    def __call__(self, h, bias, mask, deterministic: bool):
        x = self.self_attention_norm(h)
        h = h + self.dropout(
            self.self_attention(x, self.self_attention.key_values(x), bias, mask, deterministic), deterministic
        )
        return h + self.dropout(self.ffn(self.ffn_norm(h), deterministic), deterministic)


class DecoderLayer(nn.Module):
    config: T5Config

    def setup(self):
        c = self.config
        self.self_attention_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.self_attention = Attention(c)
        self.cross_attention_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.cross_attention = Attention(c)
        self.ffn_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.ffn = FeedForward(c)
        self.dropout = nn.Dropout(c.dropout_rate)

    def cross_key_values(self, encoded):
        """Encoder states `[B, S, D]` -> this layer's cross-attention keys/values (computed once)."""
        return self.cross_attention.key_values(encoded)

    def __call__(
        self, h, self_bias, self_mask, cross_kv, cross_mask, deterministic: bool, cache=None, cache_index=None
    ):
        """One decoder layer. With `cache` (keys `[B, H, Dh, Tmax]`, values `[B, H, Tmax, Dh]`), `h`
        holds the tokens at `cache_index..`; their keys/values are written into the cache, which is
        returned."""
        x = self.self_attention_norm(h)
        key_values = self.self_attention.key_values(x)
        if cache is not None:
            (cached_keys, cached_values), (keys, values) = cache, key_values
            key_values = (
                jax.lax.dynamic_update_slice(cached_keys, keys.astype(cached_keys.dtype), (0, 0, 0, cache_index)),
                jax.lax.dynamic_update_slice(cached_values, values.astype(cached_values.dtype), (0, 0, cache_index, 0)),
            )
        h = h + self.dropout(self.self_attention(x, key_values, self_bias, self_mask, deterministic), deterministic)
        x = self.cross_attention_norm(h)
        h = h + self.dropout(self.cross_attention(x, cross_kv, None, cross_mask, deterministic), deterministic)
        h = h + self.dropout(self.ffn(self.ffn_norm(h), deterministic), deterministic)
        return h, (key_values if cache is not None else None)


class Encoder(nn.Module):
    config: T5Config

    def setup(self):
        c = self.config
        self.relative_attention_bias = RelativePositionBias(c, bidirectional=True)
        self.layers = [EncoderLayer(c, name=f"layer_{i}") for i in range(c.num_layers)]
        self.final_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.dropout = nn.Dropout(c.dropout_rate)

    def __call__(self, embedded, attention_mask, deterministic: bool):
        """`embedded [B, S, D]`, `attention_mask [B, S]` -> encoder states `[B, S, D]`."""
        length = embedded.shape[1]
        bias = self.relative_attention_bias(length, length)
        mask = attention_mask.astype(bool)[:, None, None, :]
        h = self.dropout(embedded, deterministic)
        for layer in self.layers:
            h = layer(h, bias, mask, deterministic)
        return self.dropout(self.final_norm(h), deterministic)


class Decoder(nn.Module):
    config: T5Config

    def setup(self):
        c = self.config
        self.relative_attention_bias = RelativePositionBias(c, bidirectional=False)
        self.layers = [DecoderLayer(c, name=f"layer_{i}") for i in range(c.num_decoder_layers)]
        self.final_norm = RMSNorm(c.layer_norm_epsilon, c.compute_dtype)
        self.dropout = nn.Dropout(c.dropout_rate)

    def cross_key_values(self, encoded):
        """Per-layer cross-attention keys/values, a list of `([B, H, Dh, S], [B, H, S, Dh])`."""
        return [layer.cross_key_values(encoded) for layer in self.layers]

    def __call__(self, embedded, decoder_attention_mask, cross_kv, encoder_mask, deterministic: bool):
        """Teacher-forced pass: `embedded [B, T, D]` -> decoder states `[B, T, D]`."""
        length = embedded.shape[1]
        bias = self.relative_attention_bias(length, length)
        causal = jnp.tril(jnp.ones((length, length), bool))
        self_mask = causal[None, None] & decoder_attention_mask.astype(bool)[:, None, None, :]
        cross_mask = encoder_mask.astype(bool)[:, None, None, :]
        h = self.dropout(embedded, deterministic)
        for layer, kv in zip(self.layers, cross_kv):
            h, _ = layer(h, bias, self_mask, kv, cross_mask, deterministic)
        return self.dropout(self.final_norm(h), deterministic)

    def step(self, embedded, cache_index, cache, encoder_mask):
        """Cached decoding of one token per sequence at position `cache_index` (a traced scalar).

        `embedded [B, 1, D]`; `cache` = {"self": [(keys [B, H, Dh, Tmax], values [B, H, Tmax, Dh])],
        "cross": [(keys, values)]}.
        Returns (decoder state `[B, 1, D]`, updated cache).
        """
        max_length = cache["self"][0][1].shape[2]
        bias = self.relative_attention_bias.at_position(cache_index, max_length)
        self_mask = (jnp.arange(max_length) <= cache_index)[None, None, None, :]
        cross_mask = encoder_mask.astype(bool)[:, None, None, :]
        h = embedded
        new_self = []
        for layer, layer_cache, kv in zip(self.layers, cache["self"], cache["cross"]):
            h, updated = layer(h, bias, self_mask, kv, cross_mask, True, cache=layer_cache, cache_index=cache_index)
            new_self.append(updated)
        return self.final_norm(h), {"self": new_self, "cross": cache["cross"]}

"""The multimodal T5 (MM-CoT): text encoder -> image fusion -> decoder -> LM head or value head.

One module serves both roles ARES needs:
- `MultimodalT5(config)` (head="lm"): the policy, returning float32 logits `[B, T, V]`;
- `MultimodalT5(config, head="value")`: the value model, the same architecture with an MLP head
  (d -> 2d -> ReLU -> 1) giving one float32 value per decoder position `[B, T]`; its parameters
  are a separate pytree.
Without an image (config.vision.kind == "none", or `image=None`) it is a plain T5.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ares_jax.models.config import T5Config
from ares_jax.models.t5 import Decoder, Encoder, normal_init
from ares_jax.models.vision import ImageFusion, PatchEncoder


class ValueHead(nn.Module):
    """`[B, T, D]` -> `[B, T]` float32: Linear(d, 2d) -> ReLU -> Linear(2d, 1)."""

    config: T5Config

    @nn.compact
    def __call__(self, hidden):
        c = self.config
        x = nn.Dense(
            2 * c.d_model,
            dtype=c.compute_dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
            name="hidden",
        )(hidden)
        x = nn.Dense(
            1,
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", None)),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
            name="out",
        )(jax.nn.relu(x))
        return x[..., 0]


class MultimodalT5(nn.Module):
    config: T5Config
    head: Literal["lm", "value"] = "lm"

    def setup(self):
        c = self.config
        self.shared = nn.Embed(
            c.vocab_size,
            c.d_model,
            dtype=c.compute_dtype,
            param_dtype=jnp.float32,
            embedding_init=normal_init(1.0, ("vocab", "embed")),
        )
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        if c.vision.kind != "none":
            self.fusion = ImageFusion(c)
        if c.vision.kind == "pixels":
            self.vision_encoder = PatchEncoder(c.vision, c.compute_dtype)
        if c.vision.kind != "none" and c.vision.decoder_attends_image:
            self.image_memory = nn.Dense(
                c.d_model,
                dtype=c.compute_dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("image_features", "embed")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            )
        if self.head == "value":
            self.value_head = ValueHead(c)
        elif not c.tie_word_embeddings:
            self.lm_head = nn.Dense(
                c.vocab_size,
                use_bias=False,
                dtype=c.compute_dtype,
                param_dtype=jnp.float32,
                kernel_init=normal_init(1.0, ("embed", "vocab")),
            )

    # -- encoder side -----------------------------------------------------------------------
    def _encode(self, input_ids, attention_mask, image, deterministic):
        """-> (fused encoder states `[B, S, D]`, image features `[B, P, F]` or None)."""
        encoded = self.encoder(self.shared(input_ids), attention_mask, deterministic)
        if image is None:
            return encoded, None
        if self.config.vision.kind == "none":
            raise ValueError("an image was given, but model.vision.kind is 'none' (a text-only T5)")
        if self.config.vision.kind == "pixels":
            image = self.vision_encoder(image, deterministic)
        return self.fusion(encoded, image), image

    def encode(self, input_ids, attention_mask, image=None, deterministic: bool = True):
        """`input_ids [B, S]`, `attention_mask [B, S]`, image `[B, P, F]` features or
        `[B, H, W, 3]` pixels (or None) -> fused encoder states `[B, S, D]`."""
        return self._encode(input_ids, attention_mask, image, deterministic)[0]

    def encode_memory(self, input_ids, attention_mask, image=None, deterministic: bool = True):
        """What the decoder cross-attends to: (`memory [B, M, D]`, `memory_mask [B, M]`).

        The fused encoder states (`M = S`), followed by the image tokens (`M = S + P`) when
        `vision.decoder_attends_image` is on and an image is given."""
        encoded, features = self._encode(input_ids, attention_mask, image, deterministic)
        if features is None or not self.config.vision.decoder_attends_image:
            return encoded, attention_mask
        image_tokens = self.image_memory(features.astype(self.config.compute_dtype)).astype(encoded.dtype)
        image_mask = jnp.ones(image_tokens.shape[:2], attention_mask.dtype)
        return (jnp.concatenate([encoded, image_tokens], axis=1), jnp.concatenate([attention_mask, image_mask], axis=1))

    # -- decoder side -----------------------------------------------------------------------
    def _output(self, hidden):
        """Decoder states `[B, T, D]` -> float32 logits `[B, T, V]` or values `[B, T]`."""
        c = self.config
        if self.head == "value":
            return self.value_head(hidden)
        if c.scale_decoder_outputs:
            hidden = hidden * (c.d_model**-0.5)
        if c.tie_word_embeddings:
            return self.shared.attend(hidden).astype(jnp.float32)
        return self.lm_head(hidden).astype(jnp.float32)

    def decode(self, encoded, attention_mask, decoder_input_ids, decoder_attention_mask=None, deterministic=True):
        """Teacher-forced decoder pass -> logits `[B, T, V]` (or values `[B, T]`)."""
        if decoder_attention_mask is None:
            decoder_attention_mask = jnp.ones(decoder_input_ids.shape, bool)
        cross_kv = self.decoder.cross_key_values(encoded)
        hidden = self.decoder(
            self.shared(decoder_input_ids), decoder_attention_mask, cross_kv, attention_mask, deterministic
        )
        return self._output(hidden)

    def __call__(
        self,
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask=None,
        image=None,
        deterministic: bool = True,
    ):
        memory, memory_mask = self.encode_memory(input_ids, attention_mask, image, deterministic)
        return self.decode(memory, memory_mask, decoder_input_ids, decoder_attention_mask, deterministic)

    # -- cached decoding --------------------------------------------------------------------
    def init_cache(self, encoded, max_length: int):
        """An empty self-attention cache for `max_length` tokens plus the cross-attention
        keys/values of `encoded [B, S, D]`, computed once."""
        c = self.config
        batch = encoded.shape[0]
        keys = jnp.zeros((batch, c.num_heads, c.d_kv, max_length), c.compute_dtype)
        values = jnp.zeros((batch, c.num_heads, max_length, c.d_kv), c.compute_dtype)
        return {
            "self": [(keys, values) for _ in range(c.num_decoder_layers)],
            "cross": self.decoder.cross_key_values(encoded),
        }

    def decode_step(self, token, cache_index, cache, attention_mask):
        """One cached decoder step: `token [B]` at position `cache_index` ->
        (logits `[B, V]` float32, or values `[B]`; updated cache)."""
        hidden, cache = self.decoder.step(self.shared(token[:, None]), cache_index, cache, attention_mask)
        return self._output(hidden)[:, 0], cache


def decoder_inputs(targets, start_token: int):
    """Teacher-forcing decoder inputs for targets `[B, T]`: the start token, then targets[:, :-1]."""
    start = jnp.full((targets.shape[0], 1), start_token, targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


def dummy_inputs(config: T5Config, batch: int = 1, length: int = 2):
    """Smallest inputs that touch every parameter (used by `init`)."""
    ids = jnp.zeros((batch, length), jnp.int32)
    mask = jnp.ones((batch, length), jnp.int32)
    image = None
    v = config.vision
    if v.kind == "features":
        image = jnp.zeros((batch, 1, v.feature_dim), jnp.float32)
    elif v.kind == "pixels":
        image = jnp.zeros((batch, v.image_size, v.image_size, 3), jnp.uint8)
    return dict(input_ids=ids, attention_mask=mask, decoder_input_ids=ids, decoder_attention_mask=mask, image=image)


def init_params(model: MultimodalT5, rng) -> dict:
    """Random float32 parameters (plain arrays, logical-axis boxes removed)."""
    variables = jax.jit(lambda r: model.init(r, **dummy_inputs(model.config)))(rng)
    return nn.unbox(variables["params"])


def logical_axes(model: MultimodalT5) -> dict:
    """The logical axis names of every parameter, a pytree of `PartitionSpec` like the params."""
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), **dummy_inputs(model.config)))
    return nn.get_partition_spec(abstract["params"])


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def transplant(source, target):
    """`target` with every leaf whose path also exists in `source` taken from `source` (same
    shape required): a value model's trunk from the policy, an adapted model's base kernels from
    the plain model. Leaves only `target` has (a fresh head, adapters) stay as they are."""

    def take(path, leaf):
        node = source
        for key in path:
            if not isinstance(node, dict) or key.key not in node:
                return leaf
            node = node[key.key]
        if np.shape(node) != np.shape(leaf):
            raise ValueError(
                f"parameter {'/'.join(k.key for k in path)}: shape {np.shape(node)} in the source, "
                f"{np.shape(leaf)} in the target"
            )
        return node

    return jax.tree_util.tree_map_with_path(take, target)

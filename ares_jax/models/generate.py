"""Jitted sampling from the multimodal T5 with a KV cache.

The encoder (and image fusion) runs once, cross-attention keys/values are computed once, and a
`jax.lax.while_loop` decodes one token per step until every sequence has emitted EOS or
`max_new_tokens` is reached. Returned log-probabilities are those of the *model* distribution
(`log_softmax(logits)`, before temperature / top-k / top-p shape the sampling), i.e. exactly what
a teacher-forced forward pass over the sampled tokens gives; that is what PPO needs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from ares_jax.models.model import MultimodalT5
from ares_jax.profiling import scoped

if TYPE_CHECKING:  # a type only: the models know nothing of the mesh at run time
    from ares_jax.parallel.sharding import StepShardings


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens. `greedy=True` ignores the rest; top_k=0 and top_p=1.0 disable them."""

    max_new_tokens: int = 64
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"sampling.max_new_tokens must be positive, got {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"sampling.temperature must be > 0 (or use greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampling.top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")


class SampleOutput(NamedTuple):
    tokens: jax.Array  # [B, N] int32, pad after EOS
    logprobs: jax.Array  # [B, N] float32, model log-prob of each token, 0 on padding
    response_mask: jax.Array  # [B, N] bool, True up to and including EOS
    lengths: jax.Array  # [B] int32, number of response tokens


def filter_logits(logits, sampling: SamplingConfig):
    """Temperature, then top-k, then top-p (nucleus) on `[B, V]` float32 logits."""
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth_largest = jax.lax.top_k(logits, sampling.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
    if sampling.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        # The smallest logit still inside the nucleus; the top token is always kept.
        kept = jnp.where(mass_before < sampling.top_p, sorted_logits, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return logits


@scoped("sampling")
def _generate(model: MultimodalT5, sampling: SamplingConfig, params, input_ids, attention_mask, rng, image):
    config = model.config
    batch, steps = input_ids.shape[0], sampling.max_new_tokens
    variables = {"params": params}
    memory, memory_mask = model.apply(variables, input_ids, attention_mask, image, method=MultimodalT5.encode_memory)
    cache = model.apply(variables, memory, steps, method=MultimodalT5.init_cache)

    def not_finished(state):
        step, _, _, _, done, _, _ = state
        return (step < steps) & ~jnp.all(done)

    def one_token(state):
        step, tokens, logprobs, mask, done, previous, cache = state
        logits, cache = model.apply(variables, previous, step, cache, memory_mask, method=MultimodalT5.decode_step)
        if sampling.greedy:
            token = jnp.argmax(logits, axis=-1)
        else:
            token = jax.random.categorical(jax.random.fold_in(rng, step), filter_logits(logits, sampling))
        token = jnp.where(done, config.pad_token_id, token).astype(jnp.int32)
        token_logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
        tokens = tokens.at[:, step].set(token)
        logprobs = logprobs.at[:, step].set(jnp.where(done, 0.0, token_logprob))
        mask = mask.at[:, step].set(~done)
        done = done | (token == config.eos_token_id)
        return step + 1, tokens, logprobs, mask, done, token, cache

    start = jnp.full((batch,), config.decoder_start_token_id, jnp.int32)
    state = (
        jnp.int32(0),
        jnp.full((batch, steps), config.pad_token_id, jnp.int32),
        jnp.zeros((batch, steps), jnp.float32),
        jnp.zeros((batch, steps), bool),
        jnp.zeros((batch,), bool),
        start,
        cache,
    )
    _, tokens, logprobs, mask, _, _, _ = jax.lax.while_loop(not_finished, one_token, state)
    return SampleOutput(tokens, logprobs, mask, mask.sum(axis=-1).astype(jnp.int32))


generate_jit = jax.jit(_generate, static_argnums=(0, 1))


@functools.lru_cache(maxsize=16)
def _sharded_generate(shardings: StepShardings):
    """`_generate` jitted with the parameters and batch laid out as `shardings` says (one
    compiled function per layout)."""
    batch, params = shardings.batch, shardings.state
    return jax.jit(
        _generate,
        static_argnums=(0, 1),
        in_shardings=(params, batch, batch, shardings.replicated, batch),
        out_shardings=batch,
    )


def generate(
    model: MultimodalT5,
    params,
    input_ids,
    attention_mask,
    rng,
    sampling: SamplingConfig = SamplingConfig(),
    image=None,
    shardings: StepShardings | None = None,
) -> SampleOutput:
    """Samples `sampling.max_new_tokens` tokens after the decoder start token.

    `input_ids`, `attention_mask`: `[B, S]` prompts, padded (any side) to one length;
    `image`: `[B, P, F]` features or `[B, H, W, 3]` pixels or None; `rng`: a PRNG key (the
    result is a deterministic function of it). Compiled once per (model, sampling, shapes).
    `shardings` (`parallel.StepShardings` whose `state` is the params layout): the layout on a
    mesh; the outputs lie as the batch.
    """
    jitted = generate_jit if shardings is None else _sharded_generate(shardings)
    return jitted(model, sampling, params, input_ids, attention_mask, rng, image)

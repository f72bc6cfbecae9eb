"""An end-to-end check of the foundation: tokenizer -> multimodal T5 -> SFT steps -> sampler.

A tiny T5 learns, from random initialisation, to reverse a list of digits given as text, then
greedy-decodes held-out lists. Runs in about a minute on a laptop CPU; the test suite uses it
as an end-to-end learning check of tokenizer, model, SFT step and sampler together.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ares_jax.models import (
    MultimodalT5,
    SamplingConfig,
    T5Config,
    count_params,
    decoder_inputs,
    generate,
    init_params,
)
from ares_jax.sft import make_sft_step
from ares_jax.text import train_bpe_tokenizer
from ares_jax.train_state import TrainState, adamw


def digit_problems(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    lists = [rng.integers(0, 10, size=rng.integers(3, 6)) for _ in range(n)]
    prompts = ["reverse: " + " ".join(map(str, d)) for d in lists]
    targets = [" ".join(map(str, d[::-1])) for d in lists]
    return prompts, targets


def run(steps: int = 800, batch_size: int = 32, seed: int = 0, log=print) -> dict:
    rng = np.random.default_rng(seed)
    train_prompts, train_targets = digit_problems(rng, 4000)
    # Few merges: one token per digit, so reversing is a token-level task.
    tokenizer = train_bpe_tokenizer(train_prompts + train_targets, vocab_size=270)
    config = T5Config(
        vocab_size=tokenizer.vocab_size,
        d_model=64,
        d_kv=16,
        d_ff=256,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
    )
    model = MultimodalT5(config)
    params = init_params(model, jax.random.key(seed))
    log(f"model: {count_params(params):,} parameters, vocab {config.vocab_size}")

    src_len, tgt_len = 24, 16
    src, src_mask = tokenizer.batch_encode(train_prompts, src_len)
    tgt, tgt_mask = tokenizer.batch_encode(train_targets, tgt_len)
    decoder_in = np.asarray(decoder_inputs(tgt, config.decoder_start_token_id))

    optimizer = adamw(3e-3, weight_decay=0.01)
    state = TrainState.create(params, optimizer)
    sft_step = make_sft_step(model, optimizer)
    t0 = time.perf_counter()
    for step in range(steps):
        rows = rng.integers(0, len(src), size=batch_size)
        batch = {
            "input_ids": jnp.asarray(src[rows]),
            "attention_mask": jnp.asarray(src_mask[rows]),
            "decoder_input_ids": jnp.asarray(decoder_in[rows]),
            "labels": jnp.asarray(tgt[rows]),
            "label_mask": jnp.asarray(tgt_mask[rows]),
        }
        state, metrics = sft_step(state, batch)
        if step % 50 == 0 or step == steps - 1:
            log(f"sft step {step:4d}  loss {float(metrics['loss']):.4f}")
    train_s = time.perf_counter() - t0

    test_prompts, test_targets = digit_problems(np.random.default_rng(seed + 1), 128)
    ids, mask = tokenizer.batch_encode(test_prompts, src_len)
    out = generate(
        model,
        state.params,
        jnp.asarray(ids),
        jnp.asarray(mask),
        jax.random.key(0),
        SamplingConfig(tgt_len, greedy=True),
    )
    answers = [tokenizer.decode(row[:n]) for row, n in zip(np.asarray(out.tokens), np.asarray(out.lengths))]
    accuracy = float(np.mean([a.strip() == t for a, t in zip(answers, test_targets)]))
    log(f"held-out exact match after {steps} steps ({train_s:.0f} s): {accuracy:.1%}")
    for i in range(3):
        log(f"  e.g. {test_prompts[i]!r} -> {answers[i]!r} (want {test_targets[i]!r})")
    return {"final_loss": float(metrics["loss"]), "exact_match": accuracy, "train_seconds": train_s}

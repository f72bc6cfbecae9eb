"""SFT loss against numpy, the jitted step's contract, and an end-to-end learning run."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ares_jax.models import MultimodalT5, T5Config, init_params
from ares_jax.sft import make_sft_step, token_cross_entropy
from ares_jax.train_state import TrainState, adamw


def test_cross_entropy_matches_numpy():
    r = np.random.default_rng(0)
    logits = r.normal(size=(3, 5, 11)).astype(np.float32) * 3
    labels = r.integers(0, 11, size=(3, 5))
    mask = (r.random((3, 5)) > 0.3).astype(np.int32)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    expected = (nll * mask).sum() / mask.sum()
    got = token_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def tiny_batch(seed):
    r = np.random.default_rng(seed)
    ids = r.integers(2, 40, size=(4, 6)).astype(np.int32)
    labels = r.integers(2, 40, size=(4, 5)).astype(np.int32)
    return {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.ones((4, 6), jnp.int32),
        "decoder_input_ids": jnp.asarray(np.concatenate([np.zeros((4, 1), np.int32), labels[:, :-1]], 1)),
        "labels": jnp.asarray(labels),
        "label_mask": jnp.ones((4, 5), jnp.int32),
    }


def test_sft_step_equals_a_hand_written_adamw_update_and_compiles_once():
    config = T5Config(
        vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, dropout_rate=0.0
    )
    model = MultimodalT5(config)
    params = init_params(model, jax.random.key(0))
    tx = adamw(1e-3, max_grad_norm=None)
    step = make_sft_step(model, tx, donate=False)
    batch = tiny_batch(0)

    def loss_fn(p):
        logits = model.apply({"params": p}, batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"])
        return token_cross_entropy(logits, batch["labels"], batch["label_mask"])

    @jax.jit  # one compiled reference, not a pass of eagerly dispatched primitives
    def reference(p):
        updates, _ = tx.update(jax.grad(loss_fn)(p), tx.init(p), p)
        return loss_fn(p), optax.apply_updates(p, updates)

    expected_loss, expected = reference(params)
    state, metrics = step(TrainState.create(params, tx), batch)
    assert int(state.step) == 1
    np.testing.assert_allclose(float(metrics["loss"]), float(expected_loss), rtol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, expected)
    for seed in (1, 2):
        state, _ = step(state, tiny_batch(seed))
    assert step._cache_size() == 1


def test_smoke_run_learns_to_reverse_digits():
    # 800 training steps: running, not compiling, is most of this test's time, so it runs in a
    # process of its own at XLA's default optimisation level (tests/conftest.py).
    from conftest import DEFAULT_XLA_FLAGS, run_python_for_json

    code = "import json; from ares_jax import smoke; print(json.dumps(smoke.run(steps=800, log=lambda _: None)))"
    result = run_python_for_json(["-c", code], dict(os.environ, XLA_FLAGS=DEFAULT_XLA_FLAGS), timeout=600)
    assert result["final_loss"] < 0.3
    assert result["exact_match"] >= 0.6

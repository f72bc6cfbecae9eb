"""LoRA adapters: a fresh adapter changes nothing, training moves only adapter leaves, and the
merged kernels give the unmerged model's logits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import jit_apply

from ares_jax.models import MultimodalT5, T5Config, VisionConfig, init_params, transplant
from ares_jax.models.lora import lora_labels, merge_adapters
from ares_jax.sft import make_sft_step
from ares_jax.train_state import TrainState, adamw

BASE = T5Config(
    vocab_size=40,
    d_model=16,
    d_kv=4,
    d_ff=32,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=4,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    vision=VisionConfig(kind="features", feature_dim=6),
)
TARGETS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")
RANK, ALPHA = 4, 8.0


def batch(seed):
    r = np.random.default_rng(seed)
    labels = r.integers(2, 40, size=(4, 5)).astype(np.int32)
    return {
        "input_ids": jnp.asarray(r.integers(2, 40, size=(4, 6)).astype(np.int32)),
        "attention_mask": jnp.ones((4, 6), jnp.int32),
        "decoder_input_ids": jnp.asarray(np.concatenate([np.zeros((4, 1), np.int32), labels[:, :-1]], 1)),
        "labels": jnp.asarray(labels),
        "label_mask": jnp.ones((4, 5), jnp.int32),
        "image": jnp.asarray(r.normal(size=(4, 3, 6)).astype(np.float32)),
    }


def logits(model, params, b):
    return jit_apply(model)(
        {"params": params}, b["input_ids"], b["attention_mask"], b["decoder_input_ids"], None, b["image"]
    )


@pytest.fixture(scope="module")
def models():
    base = MultimodalT5(BASE)
    adapted = MultimodalT5(BASE.replace(lora_rank=RANK, lora_alpha=ALPHA, lora_dropout=0.1, lora_targets=TARGETS))
    base_params = init_params(base, jax.random.key(0))
    params = transplant(base_params, init_params(adapted, jax.random.key(1)))
    return base, adapted, base_params, params


def test_a_fresh_adapter_leaves_the_outputs_as_they_were(models):
    base, adapted, base_params, params = models
    adapters = [path for path, label in jax.tree_util.tree_leaves_with_path(lora_labels(params)) if label == "adapter"]
    assert len(adapters) == 2 * (4 * 3 + 3 * 2)  # a and b of 4 attention kernels x 3 blocks + 3 MLP kernels x 2 layers
    b = batch(0)
    np.testing.assert_allclose(
        np.asarray(logits(adapted, params, b)), np.asarray(logits(base, base_params, b)), atol=1e-5
    )


def test_training_moves_only_the_adapter_and_merging_keeps_the_logits(models):
    base, adapted, base_params, params = models
    optimizer = optax.multi_transform({"adapter": adamw(1e-2), "frozen": optax.set_to_zero()}, lora_labels(params))
    step = make_sft_step(adapted, optimizer, donate=False)
    state = TrainState.create(params, optimizer)
    losses = []
    for i in range(20):
        state, metrics = step(state, batch(0), jax.random.key(i))  # with dropout on the adapter input
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 0.1
    labels = lora_labels(params)
    for (path, before), after, label in zip(
        jax.tree_util.tree_leaves_with_path(params),
        jax.tree_util.tree_leaves(state.params),
        jax.tree_util.tree_leaves(labels),
    ):
        if label == "frozen":
            np.testing.assert_array_equal(np.asarray(after), np.asarray(before), err_msg=str(path))
    trained_b = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.params) if path[-1].key == "lora_b"]
    assert all(float(jnp.abs(leaf).max()) > 0 for leaf in trained_b)

    merged = merge_adapters(state.params, ALPHA, RANK)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(base_params)
    for b in (batch(0), batch(1)):
        np.testing.assert_allclose(
            np.asarray(logits(base, merged, b)), np.asarray(logits(adapted, state.params, b)), atol=1e-4
        )
    # Without a dropout rng the adapted model is deterministic; with one the adapter input is dropped out.
    b = batch(2)
    plain = logits(adapted, state.params, b)
    noisy = jit_apply(adapted)(
        {"params": state.params},
        b["input_ids"],
        b["attention_mask"],
        b["decoder_input_ids"],
        None,
        b["image"],
        rngs={"dropout": jax.random.key(5)},
    )
    assert float(jnp.abs(plain - noisy).max()) > 1e-4

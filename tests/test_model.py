"""Model behaviour beyond HF parity: heads, image paths, logical axes, dtypes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import jit_apply

from ares_jax.models import MultimodalT5, T5Config, VisionConfig, init_params, logical_axes
from ares_jax.models.t5 import add_broadcast_bias
from ares_jax.train_state import decay_mask

TINY = dict(
    vocab_size=50,
    d_model=16,
    d_kv=4,
    d_ff=32,
    num_layers=1,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
)
PIXELS = VisionConfig(
    kind="pixels", feature_dim=24, image_size=16, patch_size=4, vit_layers=1, vit_heads=2, vit_mlp_dim=32
)


def batch(b=2, s=7, t=5, seed=0):
    r = np.random.default_rng(seed)
    ids = jnp.asarray(r.integers(2, 50, size=(b, s)), jnp.int32)
    dec = jnp.asarray(r.integers(2, 50, size=(b, t)), jnp.int32)
    return ids, jnp.ones((b, s), jnp.int32), dec


def test_value_model_has_own_head_and_one_value_per_position():
    config = T5Config(**TINY, vision=PIXELS)
    policy, value = MultimodalT5(config), MultimodalT5(config, head="value")
    policy_params, value_params = init_params(policy, jax.random.key(0)), init_params(value, jax.random.key(1))
    assert "value_head" in value_params and "value_head" not in policy_params
    ids, mask, dec = batch()
    pixels = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 3)), jnp.uint8)
    values = jit_apply(value)({"params": value_params}, ids, mask, dec, image=pixels)
    assert values.shape == (2, 5) and values.dtype == jnp.float32
    # The value head is Linear(d, 2d) -> ReLU -> Linear(2d, 1) on the decoder states.
    head = value_params["value_head"]
    assert head["hidden"]["kernel"].shape == (16, 32) and head["out"]["kernel"].shape == (32, 1)


def test_image_changes_the_output_and_text_only_model_rejects_one():
    config = T5Config(**TINY, vision=VisionConfig(kind="features", feature_dim=6))
    model = MultimodalT5(config)
    params = init_params(model, jax.random.key(0))
    ids, mask, dec = batch()
    r = np.random.default_rng(1)
    apply = jit_apply(model)
    a = apply({"params": params}, ids, mask, dec, image=jnp.asarray(r.normal(size=(2, 9, 6)), jnp.float32))
    b = apply({"params": params}, ids, mask, dec, image=jnp.asarray(r.normal(size=(2, 3, 6)), jnp.float32))
    assert not np.allclose(np.asarray(a), np.asarray(b), atol=1e-4)  # any number of patches works
    text_only = MultimodalT5(T5Config(**TINY))
    text_params = init_params(text_only, jax.random.key(0))
    with pytest.raises(ValueError, match="vision.kind is 'none'"):
        text_only.apply({"params": text_params}, ids, mask, dec, image=jnp.zeros((2, 1, 6)))


def test_wrong_pixel_size_is_named():
    model = MultimodalT5(T5Config(**TINY, vision=PIXELS))
    params = init_params(model, jax.random.key(0))
    ids, mask, dec = batch()
    with pytest.raises(ValueError, match="image_size is 16"):
        model.apply({"params": params}, ids, mask, dec, image=jnp.zeros((2, 32, 32, 3), jnp.uint8))


def test_every_parameter_has_logical_axes():
    model = MultimodalT5(T5Config(**TINY, tie_word_embeddings=False, vision=PIXELS))
    axes = logical_axes(model)
    params = init_params(model, jax.random.key(0))
    flat_axes = jax.tree_util.tree_leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    flat_params = jax.tree_util.tree_leaves(params)
    assert len(flat_axes) == len(flat_params)
    for spec, param in zip(flat_axes, flat_params):
        assert isinstance(spec, jax.sharding.PartitionSpec) and len(spec) == param.ndim
    assert axes["shared"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
    assert axes["encoder"]["layer_0"]["self_attention"]["q"]["kernel"] == jax.sharding.PartitionSpec(
        "embed", "heads", "kv"
    )
    assert axes["lm_head"]["kernel"] == jax.sharding.PartitionSpec("embed", "vocab")


def test_bfloat16_compute_keeps_float32_params_and_logits():
    f32 = MultimodalT5(T5Config(**TINY))
    bf16 = MultimodalT5(T5Config(**TINY, dtype="bfloat16"))
    params = init_params(f32, jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(init_params(bf16, jax.random.key(0))))
    ids, mask, dec = batch()
    a = jit_apply(f32)({"params": params}, ids, mask, dec)
    b = jit_apply(bf16)({"params": params}, ids, mask, dec)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=0.15 * float(jnp.abs(a).max()))


def test_dropout_only_when_not_deterministic():
    model = MultimodalT5(T5Config(**TINY, dropout_rate=0.5))
    params = init_params(model, jax.random.key(0))
    ids, mask, dec = batch()
    apply = jit_apply(model)
    run = lambda det, key: apply({"params": params}, ids, mask, dec, deterministic=det, rngs={"dropout": key})  # noqa: E731
    np.testing.assert_array_equal(np.asarray(run(True, jax.random.key(1))), np.asarray(run(True, jax.random.key(2))))
    assert not np.allclose(np.asarray(run(False, jax.random.key(1))), np.asarray(run(False, jax.random.key(2))))


def test_bias_gradient_equals_plain_broadcast_gradient():
    r = np.random.default_rng(0)
    scores = jnp.asarray(r.normal(size=(3, 2, 4, 5)), jnp.float32)
    bias = jnp.asarray(r.normal(size=(1, 2, 4, 5)), jnp.float32)
    weights = jnp.asarray(r.normal(size=(3, 2, 4, 5)), jnp.float32)
    loss = lambda add: lambda s, b: jnp.sum(jax.nn.softmax(add(s, b), -1) * weights)  # noqa: E731
    ours = jax.grad(loss(add_broadcast_bias), argnums=(0, 1))(scores, bias)
    plain = jax.grad(loss(lambda s, b: s + b), argnums=(0, 1))(scores, bias)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_weight_decay_skips_biases_norms_and_relative_bias():
    model = MultimodalT5(T5Config(**TINY, vision=PIXELS), head="value")
    mask = decay_mask(init_params(model, jax.random.key(0)))
    assert mask["encoder"]["layer_0"]["self_attention"]["q"]["kernel"]
    assert mask["shared"]["embedding"]
    assert not mask["encoder"]["layer_0"]["ffn_norm"]["scale"]
    assert not mask["encoder"]["relative_attention_bias"]["embedding"]
    assert not mask["value_head"]["hidden"]["bias"]
    assert not mask["vision_encoder"]["final_norm"]["scale"]


def test_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match="model.feed_forward_proj"):
        T5Config(feed_forward_proj="swish")
    with pytest.raises(ValueError, match="model.d_model"):
        T5Config(d_model=0)
    with pytest.raises(ValueError, match="model.vision.image_size"):
        VisionConfig(kind="pixels", image_size=30, patch_size=8)

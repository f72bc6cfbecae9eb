"""Our Flax T5 against HF transformers' PyTorch T5 on random tiny models (float32)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import jit_apply

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ares_jax.models import load_pretrained  # noqa: E402
from ares_jax.models.t5 import relative_position_bucket  # noqa: E402

CONFIGS = {
    "relu-tied": dict(feed_forward_proj="relu", tie=True, separate_head=False),
    "gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie=False, separate_head=True),
    # transformers 5 quirk: no scaling, head tied to `shared` (no lm_head.weight in the file).
    "relu-noscale-shared-head": dict(feed_forward_proj="relu", tie=False, separate_head=False),
    "gated-gelu-scaled-own-head": dict(feed_forward_proj="gated-gelu", tie=True, separate_head=True),
}


def build_hf_model(folder, feed_forward_proj, tie, separate_head, seed=0):
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=97,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=12,  # shorter than the sequences below
        feed_forward_proj=feed_forward_proj,
        tie_word_embeddings=tie,
        dropout_rate=0.0,
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # HF's init makes layer norms exactly 1: perturb them to test them
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    if separate_head:
        model.lm_head.weight = torch.nn.Parameter(torch.randn(97, 32))
    model.save_pretrained(folder)
    return model


def padded_batch(rng, batch, length, vocab):
    ids = rng.integers(2, vocab, size=(batch, length))
    lengths = rng.integers(length // 2, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
    return ids * mask, mask


def hf_and_ours(hf_model, model, params, input_ids, attention_mask, decoder_ids, decoder_mask):
    """(HF's PyTorch logits as numpy, ours) on one text-only batch, `[B, T, V]` each."""
    with torch.no_grad():
        expected = hf_model(
            input_ids=torch.tensor(input_ids),
            attention_mask=torch.tensor(attention_mask),
            decoder_input_ids=torch.tensor(decoder_ids),
            decoder_attention_mask=torch.tensor(decoder_mask),
        ).logits.numpy()
    logits = jit_apply(model)(
        {"params": params},
        input_ids=jnp.asarray(input_ids),
        attention_mask=jnp.asarray(attention_mask),
        decoder_input_ids=jnp.asarray(decoder_ids),
        decoder_attention_mask=jnp.asarray(decoder_mask),
        image=None,
    )
    return expected, logits


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_hf(tmp_path, name):
    hf_model = build_hf_model(tmp_path, **CONFIGS[name])
    model, params = load_pretrained(tmp_path)
    assert model.config.tie_word_embeddings == (not CONFIGS[name]["separate_head"])

    rng = np.random.default_rng(1)
    input_ids, attention_mask = padded_batch(rng, 3, 30, 97)
    decoder_ids, decoder_mask = padded_batch(rng, 3, 25, 97)
    expected, logits = hf_and_ours(hf_model, model, params, input_ids, attention_mask, decoder_ids, decoder_mask)
    assert logits.dtype == jnp.float32 and logits.shape == expected.shape
    valid = decoder_mask.astype(bool)
    diff = np.abs(np.asarray(logits)[valid] - expected[valid]).max()
    assert diff < 1e-3, diff
    assert np.abs(expected[valid]).max() > 1.0  # the comparison is not between near-zero numbers


def test_sharded_safetensors_load_the_same(tmp_path):
    hf_model = build_hf_model(tmp_path / "single", **CONFIGS["gated-gelu-untied"])
    hf_model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    _, single = load_pretrained(tmp_path / "single")
    _, sharded = load_pretrained(tmp_path / "sharded")
    jax.tree_util.tree_map(np.testing.assert_array_equal, single, sharded)


def test_relative_position_buckets_match_hf():
    reference = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    relative = np.arange(-3000, 3000)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 12), (64, 512), (16, 20)):
            ours = relative_position_bucket(relative, bidirectional, buckets, distance)
            theirs = reference(torch.tensor(relative), bidirectional, buckets, distance).numpy()
            np.testing.assert_array_equal(ours, theirs)


def test_pickle_only_folder_explains_conversion(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 8}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="(?s)safetensors only.*save_pretrained"):
        load_pretrained(tmp_path)


def test_mmcot_fusion_weights_load_and_match_torch(tmp_path):
    """MM-CoT's extra weights load into the fusion module, which then equals MM-CoT's
    torch fusion (Linear -> MultiheadAttention(1 head) -> sigmoid gate)."""
    hf_model = build_hf_model(tmp_path, **CONFIGS["gated-gelu-untied"])
    torch.manual_seed(3)
    d, features = 32, 20
    image_dense = torch.nn.Linear(features, d)
    mha = torch.nn.MultiheadAttention(embed_dim=d, num_heads=1, batch_first=True)
    gate_dense = torch.nn.Linear(2 * d, d)
    state = dict(hf_model.state_dict())
    state.update({f"image_dense.{k}": v for k, v in image_dense.state_dict().items()})
    state.update({f"mha_layer.{k}": v for k, v in mha.state_dict().items()})
    state.update({f"gate_dense.{k}": v for k, v in gate_dense.state_dict().items()})
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items() if "embed_tokens" not in k}, tmp_path / "model.safetensors")

    model, params = load_pretrained(tmp_path)
    assert model.config.vision.kind == "features" and model.config.vision.feature_dim == features

    rng = np.random.default_rng(0)
    input_ids, attention_mask = padded_batch(rng, 2, 14, 97)
    image = rng.normal(size=(2, 7, features)).astype(np.float32)
    decoder_ids, _ = padded_batch(rng, 2, 9, 97)
    with torch.no_grad():
        hidden = hf_model.encoder(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask)
        ).last_hidden_state
        projected = image_dense(torch.tensor(image))
        attended, _ = mha(hidden, projected, projected)
        gate = torch.sigmoid(gate_dense(torch.cat([hidden, attended], dim=-1)))
        fused = (1 - gate) * hidden + gate * attended
        expected = hf_model(
            encoder_outputs=(fused,),
            attention_mask=torch.tensor(attention_mask),
            decoder_input_ids=torch.tensor(decoder_ids),
        ).logits.numpy()
    logits = jit_apply(model)(
        {"params": params},
        input_ids=jnp.asarray(input_ids),
        attention_mask=jnp.asarray(attention_mask),
        decoder_input_ids=jnp.asarray(decoder_ids),
        image=jnp.asarray(image),
    )
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-3)


def test_value_model_loads_the_trunk_and_initialises_only_its_head(tmp_path):
    build_hf_model(tmp_path, **CONFIGS["relu-tied"])
    _, policy_params = load_pretrained(tmp_path)
    value_model, value_params = load_pretrained(tmp_path, head="value", rng=jax.random.key(3))
    assert value_model.head == "value" and "lm_head" not in value_params
    np.testing.assert_array_equal(
        value_params["encoder"]["layer_0"]["ffn"]["wi"]["kernel"],
        policy_params["encoder"]["layer_0"]["ffn"]["wi"]["kernel"],
    )
    head = value_params["value_head"]["hidden"]["kernel"]
    assert head.shape == (32, 64) and float(np.abs(head).sum()) > 0  # freshly initialised, not zeros

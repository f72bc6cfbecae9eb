"""The cached sampler against uncached full forward passes of the same model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import jit_apply

from ares_jax.models import MultimodalT5, SamplingConfig, T5Config, VisionConfig, generate, init_params
from ares_jax.models.generate import generate_jit

VOCAB = 24  # small, so EOS (id 1) comes up and the stopping logic is exercised
CONFIG = T5Config(
    vocab_size=VOCAB,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=10,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    scale_decoder_outputs=False,
    dropout_rate=0.0,
    vision=VisionConfig(kind="features", feature_dim=12),
)


@pytest.fixture(scope="module", params=[False, True], ids=["mm-cot-fusion", "decoder-attends-image"])
def model_and_params(request):
    """Every sampler test runs on both memories: fused text states, and those plus image tokens."""
    config = CONFIG.replace(vision=VisionConfig(kind="features", feature_dim=12, decoder_attends_image=request.param))
    model = MultimodalT5(config)
    params = init_params(model, jax.random.key(0))
    assert ("image_memory" in params) == request.param
    return model, params


def prompts(seed=0, batch=5, length=11):
    """A batch of prompts with different lengths, right-padded, plus image features."""
    rng = np.random.default_rng(seed)
    lengths = np.array([length, 3, 7, length - 1, 5][:batch])
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(2, VOCAB, size=(batch, length)) * mask
    image = rng.normal(size=(batch, 6, 12)).astype(np.float32)
    return jnp.asarray(ids, jnp.int32), jnp.asarray(mask), jnp.asarray(image)


def full_forward_logprobs(model, params, ids, mask, image, tokens):
    """Teacher-forced log-probs of `tokens [B, N]` from one uncached forward pass."""
    start = jnp.full((tokens.shape[0], 1), CONFIG.decoder_start_token_id, jnp.int32)
    decoder_ids = jnp.concatenate([start, tokens[:, :-1]], axis=1)
    logits = model.apply({"params": params}, ids, mask, decoder_ids, image=image)
    return jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1)[..., 0]


def test_greedy_cached_equals_uncached_argmax(model_and_params):
    model, params = model_and_params
    ids, mask, image = prompts()
    steps = 14
    out = generate(model, params, ids, mask, jax.random.key(0), SamplingConfig(steps, greedy=True), image)

    # Uncached: the whole decoder input so far, run again for every token. It is padded to `steps`
    # positions so that one compiled pass serves every step; the decoder is causal, so positions
    # after `t` do not change the logits at `t`.
    apply = jit_apply(model)
    decoder_ids = np.full((ids.shape[0], steps), CONFIG.pad_token_id, np.int32)
    decoder_ids[:, 0] = CONFIG.decoder_start_token_id
    done = np.zeros(ids.shape[0], bool)
    expected, expected_mask = [], []
    for t in range(steps):
        logits = apply({"params": params}, ids, mask, decoder_ids, image=image)
        token = np.asarray(jnp.argmax(logits[:, t], axis=-1))
        token = np.where(done, CONFIG.pad_token_id, token)
        expected.append(token)
        expected_mask.append(~done)
        done = done | (token == CONFIG.eos_token_id)
        if t + 1 < steps:
            decoder_ids[:, t + 1] = token
    np.testing.assert_array_equal(np.asarray(out.tokens), np.stack(expected, 1))
    np.testing.assert_array_equal(np.asarray(out.response_mask), np.stack(expected_mask, 1))


def test_padding_does_not_change_a_row(model_and_params):
    """A short prompt gives the same greedy output alone as inside a padded batch."""
    model, params = model_and_params
    ids, mask, image = prompts()
    sampling = SamplingConfig(10, greedy=True)
    batch_out = generate(model, params, ids, mask, jax.random.key(0), sampling, image)
    row_len = int(mask[1].sum())
    alone = generate(model, params, ids[1:2, :row_len], mask[1:2, :row_len], jax.random.key(0), sampling, image[1:2])
    np.testing.assert_array_equal(np.asarray(alone.tokens[0]), np.asarray(batch_out.tokens[1]))


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(16, temperature=1.0),
        SamplingConfig(16, temperature=0.7, top_k=5),
        SamplingConfig(16, temperature=1.3, top_p=0.8),
        SamplingConfig(16, greedy=True),
    ],
)
def test_logprobs_equal_teacher_forced_pass(model_and_params, sampling):
    model, params = model_and_params
    ids, mask, image = prompts(seed=1)
    out = generate(model, params, ids, mask, jax.random.key(7), sampling, image)
    reference = full_forward_logprobs(model, params, ids, mask, image, out.tokens)
    response = np.asarray(out.response_mask)
    np.testing.assert_allclose(np.asarray(out.logprobs)[response], np.asarray(reference)[response], atol=1e-4)
    assert np.all(np.asarray(out.logprobs)[~response] == 0.0)
    assert np.all(np.asarray(out.tokens)[~response] == CONFIG.pad_token_id)


def test_stops_at_eos_and_mask_marks_response(model_and_params):
    model, params = model_and_params
    ids, mask, image = prompts(seed=2)
    # A high temperature makes every token, EOS too, about equally likely at each step.
    out = generate(model, params, ids, mask, jax.random.key(3), SamplingConfig(40, temperature=50.0), image)
    tokens, response = np.asarray(out.tokens), np.asarray(out.response_mask)
    ended = 0
    for row_tokens, row_mask, length in zip(tokens, response, np.asarray(out.lengths)):
        assert row_mask[:length].all() and not row_mask[length:].any()
        eos = np.flatnonzero(row_tokens == CONFIG.eos_token_id)
        if eos.size:
            ended += 1
            assert length == eos[0] + 1  # the EOS is the last response token
        else:
            assert length == 40
    assert ended >= 3  # P(EOS) ~ 1/24 a step: most rows end before 40 steps


def test_top_k_one_equals_greedy(model_and_params):
    model, params = model_and_params
    ids, mask, image = prompts(seed=3)
    greedy = generate(model, params, ids, mask, jax.random.key(0), SamplingConfig(12, greedy=True), image)
    top1 = generate(model, params, ids, mask, jax.random.key(5), SamplingConfig(12, temperature=2.0, top_k=1), image)
    np.testing.assert_array_equal(np.asarray(greedy.tokens), np.asarray(top1.tokens))


def test_top_p_keeps_only_the_nucleus():
    from ares_jax.models.generate import filter_logits

    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.9, 0.03, 0.02]]))
    kept = np.isfinite(np.asarray(filter_logits(logits, SamplingConfig(top_p=0.75))))
    np.testing.assert_array_equal(kept, [[True, True, False, False], [False, True, False, False]])


def test_deterministic_for_a_key_and_varies_across_keys(model_and_params):
    model, params = model_and_params
    ids, mask, image = prompts(seed=4)
    sampling = SamplingConfig(12, temperature=1.0)
    a = generate(model, params, ids, mask, jax.random.key(11), sampling, image)
    b = generate(model, params, ids, mask, jax.random.key(11), sampling, image)
    c = generate(model, params, ids, mask, jax.random.key(12), sampling, image)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))


def test_not_retraced_for_batches_of_the_same_shape(model_and_params):
    model, params = model_and_params
    sampling = SamplingConfig(9, temperature=1.0, top_k=4)
    ids, mask, image = prompts(seed=5)
    generate(model, params, ids, mask, jax.random.key(0), sampling, image)
    compiled = generate_jit._cache_size()
    for seed in range(6, 9):
        ids, mask, image = prompts(seed=seed)
        generate(model, params, ids, mask, jax.random.key(seed), sampling, image)
    assert generate_jit._cache_size() == compiled
    ids, mask, image = prompts(seed=9, length=13)  # a new shape does compile once more
    generate(model, params, ids, mask, jax.random.key(0), sampling, image)
    assert generate_jit._cache_size() == compiled + 1

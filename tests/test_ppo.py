"""The scoring pass and the jitted PPO step: learning, compile-once, NaN skip, accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ares_jax.models import MultimodalT5, SamplingConfig, T5Config, generate, init_params
from ares_jax.models.model import decoder_inputs
from ares_jax.rl import (
    AdaptiveKLController,
    PPOConfig,
    compute_advantages,
    make_ppo_step,
    make_scoring_fn,
    rl_optimizer,
    sample_responses,
)
from ares_jax.train_state import TrainState, adamw

VOCAB, LENGTH, TARGET = 12, 6, 7
CONFIG = T5Config(
    vocab_size=VOCAB,
    d_model=32,
    d_kv=16,
    d_ff=64,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    relative_attention_num_buckets=8,
    dropout_rate=0.0,
    eos_token_id=-1,
)  # fixed-length responses
POLICY, VALUE = MultimodalT5(CONFIG), MultimodalT5(CONFIG, head="value")
SAMPLING = SamplingConfig(LENGTH, temperature=1.0)
SEGMENTS = np.repeat(np.array([[0, 0, 0, 1, 1, 1]], np.int32), 16, axis=0)  # two 3-token "sentences"


def prompts(seed, batch=16):
    ids = np.random.default_rng(seed).integers(2, VOCAB, size=(batch, 5)).astype(np.int32)
    return jnp.asarray(ids), jnp.ones((batch, 5), jnp.int32)


def fake_teacher(tokens):
    """Pays 1.0 for a sentence that contains the TARGET token, 0.0 otherwise."""
    tokens = np.asarray(tokens).reshape(tokens.shape[0], 2, 3)
    return (tokens == TARGET).any(axis=2).astype(np.float32)


def rollout(params, ref_params, scoring, seed, config, k_samples=4):
    ids, mask = prompts(seed, batch=16 // k_samples)
    batch = sample_responses(
        POLICY, params["policy"], {"input_ids": ids, "attention_mask": mask}, jax.random.key(seed), SAMPLING, k_samples
    )
    batch.update(segment_ids=jnp.asarray(SEGMENTS), segment_scores=jnp.asarray(fake_teacher(batch["tokens"])))
    batch.update(scoring(params, ref_params, batch))
    batch["advantages"], batch["returns"], _ = compute_advantages(batch, config)
    return batch, batch.pop("sample_logprobs")


@pytest.fixture(scope="module")
def setup():
    params = {"policy": init_params(POLICY, jax.random.key(0)), "value": init_params(VALUE, jax.random.key(1))}
    return params, make_scoring_fn(POLICY, VALUE)


def target_rate(policy_params, seed=1000):
    ids, mask = prompts(seed, batch=64)
    out = generate(POLICY, policy_params, ids, mask, jax.random.key(seed), SAMPLING)
    return float(np.mean(np.asarray(out.tokens) == TARGET))


def test_scoring_pass_agrees_with_the_sampler(setup):
    params, scoring = setup
    config = PPOConfig()
    batch, sample_logprobs = rollout(params, params["policy"], scoring, seed=0, config=config)
    np.testing.assert_allclose(np.asarray(batch["logprobs"]), np.asarray(sample_logprobs), atol=1e-4)
    # k = 4 samples of each prompt, adjacent: same prompt, (almost surely) different responses.
    np.testing.assert_array_equal(np.asarray(batch["input_ids"][0]), np.asarray(batch["input_ids"][3]))
    assert not np.array_equal(np.asarray(batch["tokens"][0]), np.asarray(batch["tokens"][1]))
    np.testing.assert_array_equal(np.asarray(batch["ref_logprobs"]), np.asarray(batch["logprobs"]))
    assert batch["values"].shape == (16, LENGTH)


def test_ppo_learns_to_emit_the_paid_token(setup):
    params, scoring = setup
    ref_params = params["policy"]
    config = PPOConfig(kl_coef=0.01)
    tx = adamw(3e-3, weight_decay=0.0)
    step = make_ppo_step(POLICY, VALUE, tx, config)
    state = TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx)
    before = target_rate(ref_params)
    for iteration in range(30):
        batch, _ = rollout(state.params, ref_params, scoring, seed=iteration, config=config)
        for _ in range(2):  # PPO epochs over the buffer
            state, metrics = step(state, batch)
    after = target_rate(state.params["policy"])
    kl = float(jnp.mean(batch["logprobs"] - batch["ref_logprobs"]))
    assert after > before + 0.3 and after > 0.6, (before, after)  # 0.24 -> 0.88 when written
    assert np.isfinite(kl) and kl > 0
    assert step._cache_size() == 1  # one compilation for the fixed batch shape
    assert int(metrics["skipped"]) == 0 and np.isfinite(float(metrics["approx_kl"]))


def test_non_finite_batch_is_skipped_bit_for_bit(setup):
    params, scoring = setup
    config = PPOConfig()
    tx = adamw(1e-3)
    step = make_ppo_step(POLICY, VALUE, tx, config)
    batch, _ = rollout(params, params["policy"], scoring, seed=3, config=config)
    batch["advantages"] = batch["advantages"].at[2, 1].set(jnp.nan)
    state = TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx)
    before = jax.tree_util.tree_map(np.array, (state.params, state.opt_state))
    state, metrics = step(state, batch)
    assert int(metrics["skipped"]) == 1 and int(state.step) == 0
    jax.tree_util.tree_map(np.testing.assert_array_equal, (state.params, state.opt_state), before)


def largest_moves(before, after):
    """The largest change of any parameter of each model: {"policy": float, "value": float}."""
    return {
        name: max(
            float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(after[name]), jax.tree.leaves(before[name]))
        )
        for name in ("policy", "value")
    }


@pytest.mark.parametrize("value_only", [False, True])
def test_value_learning_rate_moves_the_value_model_at_its_own_rate(setup, value_only):
    """Adam's first step moves a parameter with a gradient by its learning rate (m / sqrt(v) is the
    gradient's sign), so the largest move of each model is its own rate: 1e-4 for both with one
    optimizer, 1e-2 for the value model with rl.value_learning_rate; the warm-up step (value only)
    leaves the policy as it was."""
    params, scoring = setup
    batch, _ = rollout(params, params["policy"], scoring, seed=7, config=PPOConfig())
    for value_rate, expected in ((None, {"policy": 1e-4, "value": 1e-4}), (1e-2, {"policy": 1e-4, "value": 1e-2})):
        tx = rl_optimizer(1e-4, 0.0, value_learning_rate=value_rate)
        step = make_ppo_step(POLICY, VALUE, tx, PPOConfig(), value_only=value_only)
        state, _ = step(TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx), batch)
        moves = largest_moves(params, state.params)
        np.testing.assert_allclose(moves["value"], expected["value"], rtol=1e-3)
        np.testing.assert_allclose(moves["policy"], 0.0 if value_only else expected["policy"], rtol=1e-3)


def value_loss(value_params, batch):
    """The PPO value term on its own: mean squared error of the values against the returns."""
    values = VALUE.apply(
        {"params": value_params},
        batch["input_ids"],
        batch["attention_mask"],
        decoder_inputs(batch["tokens"], CONFIG.decoder_start_token_id),
        batch["response_mask"],
    )
    mask = batch["response_mask"].astype(jnp.float32)
    return (jnp.square(values - batch["returns"]) * mask).sum() / mask.sum()


def test_value_warm_up_step_moves_only_the_value_model(setup):
    """The value-only step: the policy comes back bit for bit (no weight decay either) with zero
    Adam moments, and the value model takes the step it would take with the policy frozen: the
    same as a full step on the value parameters alone. Its value loss falls over a few steps."""
    params, scoring = setup
    batch, _ = rollout(params, params["policy"], scoring, seed=5, config=PPOConfig())
    tx = adamw(1e-3, weight_decay=0.1)
    step = make_ppo_step(POLICY, VALUE, tx, PPOConfig(), value_only=True)
    state = TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx)
    losses = []
    for _ in range(5):
        state, metrics = step(state, batch)
        losses.append(float(metrics["value_loss"]))
        if len(losses) == 1:
            grads = jax.grad(value_loss)(params["value"], batch)
            updates, _ = tx.update(grads, tx.init(params["value"]), params["value"])
            expected = optax.apply_updates(params["value"], updates)
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), state.params["value"], expected
            )
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.params["policy"], params["policy"])
    policy_moments = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
        if "policy" in jax.tree_util.keystr(path)
    ]
    assert policy_moments and all(not np.asarray(leaf).any() for leaf in policy_moments)
    assert losses[-1] < losses[0], losses
    assert float(metrics["policy_grad_norm"]) == 0.0


def test_accumulated_micro_batches_equal_one_big_batch(setup):
    params, scoring = setup
    batch, _ = rollout(params, params["policy"], scoring, seed=4, config=PPOConfig())
    tx = adamw(1e-3)
    results = []
    for accumulation in (1, 4):
        step = make_ppo_step(POLICY, VALUE, tx, PPOConfig(accumulation_steps=accumulation))
        state, _ = step(TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx), batch)
        results.append(state.params)
    # Every response has the full length, so per-micro-batch means average to the batch mean.
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), *results)


def test_whitening_switch(setup):
    params, scoring = setup
    batch, _ = rollout(params, params["policy"], scoring, seed=5, config=PPOConfig())
    whitened, _, _ = compute_advantages(batch, PPOConfig(whiten_advantages=True))
    raw, returns, _ = compute_advantages(batch, PPOConfig(whiten_advantages=False))
    assert abs(float(whitened.mean())) < 1e-5 and abs(float(whitened.std()) - 1) < 1e-3
    np.testing.assert_allclose(np.asarray(raw + batch["values"]), np.asarray(returns), atol=1e-5)


def test_entropy_bonus_spreads_the_policy(setup):
    """With no advantage to follow, the entropy bonus alone moves the policy, toward a flatter
    next-token distribution; without it the policy stays where it is."""
    params, scoring = setup
    batch, _ = rollout(params, params["policy"], scoring, seed=6, config=PPOConfig())
    batch["advantages"] = jnp.zeros_like(batch["advantages"])
    tx = adamw(3e-3, weight_decay=0.0)
    entropies = {}
    for coef in (0.0, 0.1):
        step = make_ppo_step(POLICY, VALUE, tx, PPOConfig(entropy_coef=coef))
        state = TrainState.create(jax.tree_util.tree_map(jnp.copy, params), tx)
        for _ in range(10):
            state, metrics = step(state, batch)
        entropies[coef] = float(scoring(state.params, params["policy"], batch)["entropy"].mean())
        if coef:
            assert "entropy" in metrics
        else:
            jax.tree_util.tree_map(np.testing.assert_array_equal, state.params["policy"], params["policy"])
    before = float(batch["entropy"].mean())
    assert entropies[0.0] == pytest.approx(before, abs=1e-6)
    assert entropies[0.1] > before + 0.01, (before, entropies)


def test_adaptive_kl_controller():
    controller = AdaptiveKLController(0.1, target=1.0, horizon=100)
    assert controller.update(current_kl=2.0, n_samples=100) == pytest.approx(0.12)  # error clipped at +20%
    assert controller.update(current_kl=0.9, n_samples=50) == pytest.approx(0.12 * (1 - 0.1 * 0.5))
    with pytest.raises(ValueError, match="kl_target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)

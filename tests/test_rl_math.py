"""token_rewards, gae, whiten and ppo_loss against numpy loops and a hand-worked example."""

import math

import numpy as np
import pytest

from ares_jax.rl import gae, ppo_loss, token_rewards, whiten


def random_batch(seed=0, batch=5, length=9, sentences=4):
    r = np.random.default_rng(seed)
    lengths = r.integers(1, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.float32)
    segments = np.full((batch, length), -1, np.int32)
    for b, n in enumerate(lengths):
        cuts = np.sort(r.choice(np.arange(1, n + 1), size=min(sentences, n), replace=False))
        cuts[-1] = n
        start = 0
        for s, end in enumerate(cuts):
            segments[b, start:end] = s
            start = end
    return dict(
        logprobs=r.normal(size=(batch, length)).astype(np.float32) - 2,
        ref_logprobs=r.normal(size=(batch, length)).astype(np.float32) - 2,
        values=r.normal(size=(batch, length)).astype(np.float32),
        segment_scores=np.round(r.random((batch, sentences)), 1).astype(np.float32),
        mask=mask,
        segment_ids=segments,
    )


def numpy_token_rewards(logprobs, ref_logprobs, mask, segment_ids, segment_scores, kl_coef, neutral_score):
    out = np.zeros_like(logprobs)
    for b in range(logprobs.shape[0]):
        for t in range(logprobs.shape[1]):
            if not mask[b, t]:
                continue
            out[b, t] = -kl_coef * (logprobs[b, t] - ref_logprobs[b, t])
            s = segment_ids[b, t]
            last = t + 1 == logprobs.shape[1] or segment_ids[b, t + 1] != s
            if last:
                out[b, t] += segment_scores[b, s] - neutral_score
    return out


def numpy_gae(rewards, values, mask, gamma, lam):
    advantages = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        next_advantage = 0.0
        for t in reversed(range(n)):
            next_value = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            next_advantage = delta + gamma * lam * next_advantage
            advantages[b, t] = next_advantage
    return advantages, (advantages + values) * mask


def test_token_rewards_match_numpy():
    batch = random_batch()
    kw = {k: batch[k] for k in ("logprobs", "ref_logprobs", "mask", "segment_ids", "segment_scores")}
    got = token_rewards(**kw, kl_coef=0.05, neutral_score=0.5)
    np.testing.assert_allclose(np.asarray(got), numpy_token_rewards(**kw, kl_coef=0.05, neutral_score=0.5), atol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_gae_matches_numpy(gamma, lam):
    batch = random_batch(seed=1)
    rewards = np.random.default_rng(2).normal(size=batch["mask"].shape).astype(np.float32) * batch["mask"]
    advantages, returns = gae(rewards=rewards, values=batch["values"], mask=batch["mask"], gamma=gamma, lam=lam)
    expected_adv, expected_ret = numpy_gae(rewards, batch["values"], batch["mask"], gamma, lam)
    np.testing.assert_allclose(np.asarray(advantages), expected_adv, atol=1e-5)
    np.testing.assert_allclose(np.asarray(returns), expected_ret, atol=1e-5)


def test_whiten_uses_only_masked_entries():
    batch = random_batch(seed=3)
    x = batch["values"] + 100 * (1 - batch["mask"])  # padding holds junk that must not count
    got = np.asarray(whiten(x, batch["mask"]))
    valid = batch["mask"].astype(bool)
    expected = (x[valid] - x[valid].mean()) / np.sqrt(x[valid].var() + 1e-8)
    np.testing.assert_allclose(got[valid], expected, atol=1e-5)
    assert (got[~valid] == 0).all()


def test_ppo_loss_matches_numpy():
    batch = random_batch(seed=4)
    r = np.random.default_rng(5)
    old = batch["logprobs"] + r.normal(scale=0.3, size=batch["mask"].shape).astype(np.float32)
    advantages = r.normal(size=batch["mask"].shape).astype(np.float32)
    returns = r.normal(size=batch["mask"].shape).astype(np.float32)
    loss, metrics = ppo_loss(
        logprobs=batch["logprobs"],
        old_logprobs=old,
        values=batch["values"],
        returns=returns,
        advantages=advantages,
        mask=batch["mask"],
        clip_range=0.2,
        vf_coef=0.7,
    )
    m = batch["mask"]
    n = m.sum()
    ratio = np.exp((batch["logprobs"] - old) * m)
    policy = (np.maximum(-advantages * ratio, -advantages * np.clip(ratio, 0.8, 1.2)) * m).sum() / n
    value = (((batch["values"] - returns) ** 2) * m).sum() / n
    np.testing.assert_allclose(float(metrics["policy_loss"]), policy, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["value_loss"]), value, rtol=1e-5)
    np.testing.assert_allclose(float(loss), policy + 0.7 * value, rtol=1e-5)


def test_entropy_bonus_matches_numpy():
    batch = random_batch(seed=6)
    r = np.random.default_rng(7)
    m = batch["mask"]
    entropy = r.random(m.shape).astype(np.float32) + 100 * (1 - m)  # padding holds junk that must not count
    common = dict(
        logprobs=batch["logprobs"],
        old_logprobs=batch["logprobs"] - 0.1,
        values=batch["values"],
        returns=np.zeros_like(m),
        advantages=r.normal(size=m.shape).astype(np.float32),
        mask=m,
        clip_range=0.2,
        vf_coef=1.0,
    )
    plain, _ = ppo_loss(**common)
    loss, metrics = ppo_loss(**common, entropy=entropy, entropy_coef=0.03)
    mean_entropy = (entropy * m).sum() / m.sum()
    np.testing.assert_allclose(float(metrics["entropy"]), mean_entropy, rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(plain) - 0.03 * mean_entropy, rtol=1e-5)


def test_hand_worked_example():
    # One rationale, two sentences (tokens 0-1 and 2), one padding token.
    mask = np.array([[1, 1, 1, 0]], np.float32)
    rewards = token_rewards(
        logprobs=np.array([[-1.0, -2.0, -1.0, 0.0]]),
        ref_logprobs=np.array([[-1.5, -2.0, -0.5, 0.0]]),
        mask=mask,
        segment_ids=np.array([[0, 0, 1, -1]]),
        segment_scores=np.array([[1.0, 0.2]]),
        kl_coef=0.1,
        neutral_score=0.5,
    )
    # KL terms -0.05, 0, +0.05; sentence 0 pays 1.0 - 0.5 at token 1, sentence 1 pays 0.2 - 0.5 at token 2.
    np.testing.assert_allclose(np.asarray(rewards), [[-0.05, 0.5, -0.25, 0.0]], atol=1e-6)
    advantages, returns = gae(rewards=rewards, values=np.array([[0.1, 0.2, 0.3, 9.9]]), mask=mask, gamma=1.0, lam=0.5)
    # t2: -0.25 - 0.3 = -0.55; t1: 0.5 + 0.3 - 0.2 + 0.5 * -0.55 = 0.325; t0: -0.05 + 0.2 - 0.1 + 0.5 * 0.325
    np.testing.assert_allclose(np.asarray(advantages), [[0.2125, 0.325, -0.55, 0.0]], atol=1e-6)
    np.testing.assert_allclose(np.asarray(returns), [[0.3125, 0.525, -0.25, 0.0]], atol=1e-6)

    loss, metrics = ppo_loss(
        logprobs=np.array([[0.5, 0.0, -0.5, 3.0]]),
        old_logprobs=np.zeros((1, 4)),
        values=np.zeros((1, 4)),
        returns=np.zeros((1, 4)),
        advantages=np.array([[1.0, -1.0, 1.0, 5.0]]),
        mask=mask,
        clip_range=0.2,
        vf_coef=1.0,
    )
    # max(-1 * e^0.5, -1 * 1.2) = -1.2; max(1, 1) = 1; max(-e^-0.5, -0.8) = -e^-0.5
    expected = (-1.2 + 1.0 - math.exp(-0.5)) / 3
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["clipfrac"]), 1 / 3, rtol=1e-6)


def test_keyword_arguments_and_jax_inputs():
    import jax.numpy as jnp

    batch = random_batch(seed=6)
    a = token_rewards(**{k: jnp.asarray(v) for k, v in batch.items() if k != "values"}, kl_coef=0.1, neutral_score=0.5)
    b = token_rewards(**{k: v for k, v in batch.items() if k != "values"}, kl_coef=0.1, neutral_score=0.5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sequence_placement_puts_the_mean_score_on_the_last_token():
    batch = random_batch(seed=7)
    kw = {k: batch[k] for k in ("logprobs", "ref_logprobs", "mask", "segment_ids", "segment_scores")}
    got = np.asarray(token_rewards(**kw, kl_coef=0.05, neutral_score=0.5, placement="sequence"))
    kl_only = numpy_token_rewards(
        **{**kw, "segment_scores": np.full_like(batch["segment_scores"], 0.5)}, kl_coef=0.05, neutral_score=0.5
    )
    for b in range(got.shape[0]):
        n = int(batch["mask"][b].sum())
        sentences = batch["segment_ids"][b, :n].max() + 1
        expected = kl_only[b].copy()
        expected[n - 1] += batch["segment_scores"][b, :sentences].mean() - 0.5
        np.testing.assert_allclose(got[b], expected, atol=1e-6)
    with pytest.raises(ValueError, match="reward_placement"):
        token_rewards(**kw, kl_coef=0.05, neutral_score=0.5, placement="token")


def numpy_group_advantages(
    logprobs, ref_logprobs, mask, segment_ids, segment_scores, kl_coef, neutral_score, group_size
):
    """Loops: per question, the mean and std of every sentence reward of its samples; each
    sentence's normalised reward sits at its last token; advantages are sums to the end."""
    batch, length = logprobs.shape
    sentence_rewards = {}  # (row, last token) -> score - neutral
    for b in range(batch):
        for t in range(length):
            if mask[b, t] and (t + 1 == length or segment_ids[b, t + 1] != segment_ids[b, t]):
                sentence_rewards[b, t] = segment_scores[b, segment_ids[b, t]] - neutral_score
    advantages = np.zeros_like(logprobs)
    for b in range(batch):
        group = [v for (row, _), v in sentence_rewards.items() if row // group_size == b // group_size]
        mean, std = np.mean(group), np.std(group)
        for t in range(length):
            if not mask[b, t]:
                continue
            total = 0.0
            for u in range(t, length):
                if mask[b, u]:
                    total += -kl_coef * (logprobs[b, u] - ref_logprobs[b, u])
                    if (b, u) in sentence_rewards:
                        total += (sentence_rewards[b, u] - mean) / np.sqrt(std**2 + 1e-6)
            advantages[b, t] = total
    return advantages


def test_group_advantages_match_numpy_loops():
    from ares_jax.rl import PPOConfig, compute_advantages

    batch = random_batch(seed=5, batch=6)
    expected = numpy_group_advantages(
        **{k: v for k, v in batch.items() if k != "values"}, kl_coef=0.05, neutral_score=0.5, group_size=3
    )
    arrays = {"response_mask": batch["mask"], **{k: v for k, v in batch.items() if k != "mask"}}
    config = PPOConfig(advantage="group", kl_coef=0.05, whiten_advantages=False)
    advantages, returns, rewards = compute_advantages(arrays, config, group_size=3)
    np.testing.assert_allclose(np.asarray(advantages), expected, atol=1e-4)
    # The returns stay the plain rewards-to-go, for the value model.
    to_go = np.flip(np.cumsum(np.flip(np.asarray(rewards), 1), 1), 1) * batch["mask"]
    np.testing.assert_allclose(np.asarray(returns), to_go, atol=1e-5)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_value_lambda_sets_the_value_targets_only(gamma):
    """ppo.value_lambda=1: the value model's targets are the Monte Carlo returns (discounted
    rewards-to-go, whatever the critic says), the advantages still GAE's with gae_lambda; None
    (the default) keeps GAE's returns, A + V."""
    from ares_jax.rl import PPOConfig, compute_advantages

    batch = random_batch(seed=6)
    arrays = {"response_mask": batch["mask"], **{k: v for k, v in batch.items() if k != "mask"}}
    kl_coef, lam = 0.05, 0.95
    rewards = numpy_token_rewards(
        **{k: batch[k] for k in ("logprobs", "ref_logprobs", "mask", "segment_ids", "segment_scores")},
        kl_coef=kl_coef,
        neutral_score=0.5,
    )
    expected_adv, expected_ret = numpy_gae(rewards, batch["values"], batch["mask"], gamma, lam)
    monte_carlo = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        following = 0.0
        for t in reversed(range(int(batch["mask"][b].sum()))):
            following = rewards[b, t] + gamma * following
            monte_carlo[b, t] = following
    for value_lambda, targets in ((None, expected_ret), (lam, expected_ret), (1.0, monte_carlo)):
        config = PPOConfig(
            kl_coef=kl_coef, gamma=gamma, gae_lambda=lam, value_lambda=value_lambda, whiten_advantages=False
        )
        advantages, returns, _ = compute_advantages(arrays, config)
        np.testing.assert_allclose(np.asarray(advantages), expected_adv, atol=1e-5)
        np.testing.assert_allclose(np.asarray(returns), targets, atol=1e-5)
    assert not np.allclose(monte_carlo, expected_ret, atol=1e-3)  # the two targets differ here


def test_value_lambda_out_of_range_is_refused():
    from ares_jax.rl import PPOConfig

    with pytest.raises(ValueError, match="value_lambda must be in"):
        PPOConfig(value_lambda=1.5)


def test_group_advantages_by_hand():
    """One question, two samples of one sentence each: scores 1.0 and 0.0 around their mean 0.5
    (std 0.5) give +1 and -1 on every token of each sentence; a group that all scored alike gives 0."""
    from ares_jax.rl import group_advantages

    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 0]], np.float32)
    ends = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]], np.float32)
    scores = np.array([[0, 0.5, 0], [0, 0, -0.5], [0.3, 0, 0], [0.3, 0, 0]], np.float32)
    advantages, _ = group_advantages(
        kl_rewards=np.zeros_like(mask), score_rewards=scores, sentence_end_mask=ends, mask=mask, group_size=2, eps=0.0
    )
    np.testing.assert_allclose(np.asarray(advantages), [[1, 1, 0], [-1, -1, -1], [0, 0, 0], [0, 0, 0]], atol=1e-6)

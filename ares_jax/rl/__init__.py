"""RL core: sentence rewards to token rewards, GAE, whitening, the PPO loss (pure functions), the
jitted scoring pass and the jitted PPO step."""

from ares_jax.rl.advantages import gae, group_advantages, kl_rewards, score_rewards_at_ends, token_rewards, whiten
from ares_jax.rl.loss import ppo_loss
from ares_jax.rl.step import (
    AdaptiveKLController,
    PPOConfig,
    compute_advantages,
    make_ppo_step,
    make_scoring_fn,
    rl_optimizer,
    sample_responses,
)

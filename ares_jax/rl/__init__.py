"""RL core: sentence rewards to token rewards, GAE, whitening and the PPO loss (pure functions)."""

from ares_jax.rl.advantages import gae, token_rewards, whiten
from ares_jax.rl.loss import ppo_loss

"""The PPO settings of an RL round: the `ppo` section of the run's config (no JAX here, so the
config loads fast)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The method's PPO settings (defaults: the paper's base model)."""

    kl_coef: float = 1e-4
    neutral_score: float = 0.5
    reward_placement: str = "sentence"  # "sentence" (ARES) or "sequence" (one score at the last token)
    # "gae": the method's critic and GAE; "group": no critic, each sentence's reward normalised
    # against the other samples of its question (rl/advantages.py:group_advantages)
    advantage: str = "gae"
    gamma: float = 1.0
    gae_lambda: float = 0.95
    # The lambda of the value model's targets (GAE's returns, `A + V`); None: gae_lambda, the
    # method's one lambda. 1.0: Monte Carlo returns, targets that do not lean on the critic's own
    # (at first untrained) values. The advantages keep gae_lambda.
    value_lambda: float | None = None
    whiten_advantages: bool = True
    clip_range: float = 0.2
    vf_coef: float = 1.0
    # > 0: the PPO loss pays this times the policy's mean next-token entropy (not in the method)
    entropy_coef: float = 0.0
    accumulation_steps: int = 1  # micro-batches per optimizer step, accumulated inside the jitted step

    def __post_init__(self):
        if self.reward_placement not in ("sentence", "sequence"):
            raise ValueError(f"ppo.reward_placement must be 'sentence' or 'sequence', got {self.reward_placement!r}")
        if self.advantage not in ("gae", "group"):
            raise ValueError(f"ppo.advantage must be 'gae' or 'group', got {self.advantage!r}")
        if self.value_lambda is not None and not 0 <= self.value_lambda <= 1:
            raise ValueError(f"ppo.value_lambda must be in [0, 1] or null, got {self.value_lambda}")
        if not 0 < self.clip_range < 1:
            raise ValueError(f"ppo.clip_range must be in (0, 1), got {self.clip_range}")
        if self.entropy_coef < 0:
            raise ValueError(f"ppo.entropy_coef must be >= 0, got {self.entropy_coef}")
        if self.accumulation_steps < 1:
            raise ValueError(f"ppo.accumulation_steps must be >= 1, got {self.accumulation_steps}")

"""Supervised fine-tuning: teacher-forced cross-entropy and the jitted SFT step."""

from ares_jax.sft.step import make_sft_step, token_cross_entropy

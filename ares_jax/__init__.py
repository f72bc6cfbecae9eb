"""ares_jax: ARES (alternating RL and SFT with AI feedback) for multimodal chain of thought in JAX/Flax."""

__version__ = "0.1.0"

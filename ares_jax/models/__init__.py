"""Flax linen multimodal T5 (MM-CoT), its value-model variant, HF weight import and the sampler."""

from ares_jax.models.config import T5Config, VisionConfig
from ares_jax.models.generate import SampleOutput, SamplingConfig, generate
from ares_jax.models.model import MultimodalT5, count_params, decoder_inputs, init_params, logical_axes, transplant
from ares_jax.models.pretrained import load_pretrained, save_pretrained

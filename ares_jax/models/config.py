"""Model configuration: T5 hyper-parameters with Hugging Face `config.json` semantics, plus the image input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import jax.numpy as jnp

FEED_FORWARD_KINDS = ("relu", "gated-gelu")
IMAGE_KINDS = ("none", "features", "pixels")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The image input of the multimodal model.

    kind:
      "none"      plain T5, no image input.
      "features"  precomputed patch features `[B, P, feature_dim]` (ScienceQA ViT: 145 x 1024).
      "pixels"    uint8/float pixels `[B, image_size, image_size, 3]` through the small ViT in
                  `models/vision.py`, whose output width is `feature_dim`.
    """

    kind: Literal["none", "features", "pixels"] = "none"
    feature_dim: int = 1024
    # Only for kind == "pixels": the built-in ViT patch encoder.
    image_size: int = 64
    patch_size: int = 8
    vit_layers: int = 2
    vit_heads: int = 4
    vit_mlp_dim: int = 512
    # Not in MM-CoT: the decoder cross-attends to the image tokens (projected to d_model) as
    # well as to the fused text states. A small model trained from scratch learns to read the
    # image far sooner this way (the built-in task turns it on).
    decoder_attends_image: bool = False

    def __post_init__(self):
        if self.kind not in IMAGE_KINDS:
            raise ValueError(f"model.vision.kind must be one of {IMAGE_KINDS}, got {self.kind!r}")
        if self.kind == "pixels" and self.image_size % self.patch_size:
            raise ValueError(
                f"model.vision.image_size ({self.image_size}) must be a multiple of "
                f"model.vision.patch_size ({self.patch_size})"
            )
        if self.kind == "pixels" and self.feature_dim % self.vit_heads:
            raise ValueError(
                f"model.vision.feature_dim ({self.feature_dim}) must be divisible by "
                f"model.vision.vit_heads ({self.vit_heads})"
            )


@dataclasses.dataclass(frozen=True)
class T5Config:
    """T5 encoder-decoder hyper-parameters. Field names and meanings follow HF's `T5Config`.

    The LM head: `tie_word_embeddings=True` reuses the shared embedding, `False` gives a separate
    `lm_head` kernel (flan-t5). `scale_decoder_outputs` multiplies decoder outputs by
    `d_model**-0.5` before the head; original T5 does (tied), flan-t5 does not (untied). HF
    transformers 5 stores the two independently (`scale_decoder_outputs` in config.json, the head
    tied unless `lm_head.weight` is in the weights file), so we do too.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = True
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    # Compute dtype of activations and matmuls; parameters are always float32.
    dtype: Literal["float32", "bfloat16"] = "float32"
    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    # LoRA adapters (models/lora.py) on the dense kernels named in `lora_targets`; rank 0: none.
    lora_rank: int = 0
    lora_alpha: float = 1.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()

    def __post_init__(self):
        if self.lora_rank < 0 or (self.lora_rank and not self.lora_targets):
            raise ValueError(
                f"LoRA needs rank >= 0 and, with a rank, target kernels; got {self.lora_rank}, {self.lora_targets}"
            )
        if self.feed_forward_proj not in FEED_FORWARD_KINDS:
            raise ValueError(
                f"model.feed_forward_proj must be one of {FEED_FORWARD_KINDS}, got {self.feed_forward_proj!r}"
            )
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"model.dropout_rate must be in [0, 1), got {self.dropout_rate}")

    @property
    def compute_dtype(self):
        return jnp.bfloat16 if self.dtype == "bfloat16" else jnp.float32

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    def replace(self, **changes) -> "T5Config":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_dict(cls, hf: dict, **overrides) -> "T5Config":
        """Reads the fields we use from a HF T5 `config.json` dict; the rest is ignored."""
        act = hf.get("feed_forward_proj", "relu")
        # HF accepts "gated-gelu" and the equivalent long form; T5 v1.1 / flan-t5 use "gated-gelu".
        if act in ("gated-gelu_new", "gated-gelu"):
            act = "gated-gelu"
        fields = dict(
            vocab_size=hf["vocab_size"],
            d_model=hf["d_model"],
            d_kv=hf["d_kv"],
            d_ff=hf["d_ff"],
            num_layers=hf["num_layers"],
            num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
            num_heads=hf["num_heads"],
            relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
            dropout_rate=hf.get("dropout_rate", 0.1),
            layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
            feed_forward_proj=act,
            tie_word_embeddings=hf.get("tie_word_embeddings", True) is not False,
            # Older config files have no `scale_decoder_outputs`; HF derives it from the tie flag.
            scale_decoder_outputs=hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False),
            pad_token_id=hf.get("pad_token_id", 0) or 0,
            eos_token_id=_first(hf.get("eos_token_id", 1)),
            decoder_start_token_id=hf.get("decoder_start_token_id", 0) or 0,
        )
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_hf_file(cls, path: str | Path, **overrides) -> "T5Config":
        path = Path(path)
        try:
            hf = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read a T5 config.json ({err})") from err
        missing = [k for k in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads") if k not in hf]
        if missing:
            raise ValueError(f"{path}: not a T5 config, missing keys {missing}")
        return cls.from_hf_dict(hf, **overrides)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value

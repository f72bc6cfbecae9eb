"""The models of a run and what the host loop asks of them: rationales, then answers."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ares_jax.config import Config
from ares_jax.data.batching import answer_examples, encode_prompts, fixed_batches, rationale_examples, stack_images
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import parse_answer, strip_solution_tag
from ares_jax.data.shapes.scene import cell_features
from ares_jax.models import MultimodalT5, SamplingConfig, T5Config, VisionConfig, generate
from ares_jax.text.tokenizer import Tokenizer

ANSWER_TOKENS = 16  # "Answer: The answer is (B)." and its end token, with room to spare


def build_model(config: Config, vocab_size: int, lora: bool = False) -> MultimodalT5:
    """The rationale model (and, with `lora`, the answer model: the same with adapters)."""
    m, shapes = config.model, config.data.shapes
    if m.image_input == "features":
        vision = VisionConfig(kind="features", feature_dim=7 + shapes.rows + shapes.cols, decoder_attends_image=True)
    else:
        vision = VisionConfig(kind="pixels", decoder_attends_image=True, image_size=shapes.image_size,
                              patch_size=m.patch_size, feature_dim=m.d_model, vit_layers=m.vit_layers,
                              vit_heads=m.num_heads, vit_mlp_dim=2 * m.d_model)
    adapter = config.answer.lora
    return MultimodalT5(T5Config(
        vocab_size=vocab_size, d_model=m.d_model, d_kv=m.d_model // m.num_heads, d_ff=m.d_ff,
        num_layers=m.num_layers, num_decoder_layers=m.num_decoder_layers, num_heads=m.num_heads,
        dropout_rate=m.dropout_rate, relative_attention_max_distance=max(m.max_source_length, m.max_target_length),
        vision=vision,
        **(dict(lora_rank=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                lora_targets=adapter.targets) if lora else {}),
    ))


def model_images(problems: Sequence[Problem], config: Config) -> np.ndarray:
    """The image input of the model for `problems`: frozen cell features `[B, P, F]` or pixels."""
    if config.model.image_input == "features":
        shapes = config.data.shapes
        return np.stack([cell_features(p.image, shapes.rows, shapes.cols) for p in problems])
    return stack_images(problems)


def generate_texts(model: MultimodalT5, params, tokenizer: Tokenizer, arrays: dict, sampling: SamplingConfig,
                   batch_size: int, rng) -> list[str]:
    """Decode every row of `arrays` (input_ids, attention_mask, image) in fixed-size batches."""
    texts = []
    for index, (batch, real) in enumerate(fixed_batches(arrays, batch_size)):
        out = generate(model, params, jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"]),
                       jax.random.fold_in(rng, index), sampling, None if "image" not in batch else jnp.asarray(batch["image"]))
        tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
        texts += [tokenizer.decode(tokens[row, : lengths[row]]) for row in range(real)]
    return texts


def write_rationales(model, params, tokenizer, problems: Sequence[Problem], config: Config) -> list[str]:
    """Greedy rationales (without the "Solution:" tag) for `problems`."""
    prompts, _ = rationale_examples(problems)
    arrays = encode_prompts(tokenizer, prompts, model_images(problems, config), config.model.max_source_length)
    sampling = SamplingConfig(config.eval.max_new_tokens, greedy=True)
    texts = generate_texts(model, params, tokenizer, arrays, sampling, config.eval.batch_size, jax.random.key(0))
    return [strip_solution_tag(t) for t in texts]


def infer_answers(model, params, tokenizer, problems: Sequence[Problem], rationales: Sequence[str],
                  config: Config) -> list[int]:
    """The answer stage: option index per problem from question + rationale (-1 if unreadable)."""
    prompts, _ = answer_examples(problems, rationales)
    arrays = encode_prompts(tokenizer, prompts, model_images(problems, config), config.model.max_answer_source_length)
    sampling = SamplingConfig(ANSWER_TOKENS, greedy=True)
    texts = generate_texts(model, params, tokenizer, arrays, sampling, config.eval.batch_size, jax.random.key(0))
    return [parse_answer(t, len(p.choices)) for t, p in zip(texts, problems)]

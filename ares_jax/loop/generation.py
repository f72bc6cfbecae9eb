"""The models of a run and what the host loop asks of them: rationales, then answers."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from ares_jax.config import Config
from ares_jax.data.batching import (
    StackedRows,
    answer_examples,
    build_tokenizer,
    encode_prompts,
    fixed_batches,
    rationale_examples,
    stack_images,
)
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import parse_answer, strip_solution_tag
from ares_jax.data.shapes.scene import cell_feature_dim, cell_features
from ares_jax.models import MultimodalT5, SamplingConfig, T5Config, VisionConfig, generate, load_pretrained
from ares_jax.parallel import StepShardings, put_batch, to_host
from ares_jax.text.tokenizer import Tokenizer

ANSWER_TOKENS = 16  # "Answer: The answer is (B)." and its end token, with room to spare


def vision_config(config: Config, feature_dim: int | None) -> VisionConfig:
    """The model's image input: the built-in task's cell features or pixels; for a real dataset
    its precomputed features of width `feature_dim` (None: a text-only model)."""
    m, shapes = config.model, config.data.shapes
    if config.data.source != "shapes":
        return (
            VisionConfig("none")
            if feature_dim is None
            else VisionConfig(kind="features", feature_dim=feature_dim, decoder_attends_image=True)
        )
    if m.image_input == "features":
        return VisionConfig(
            kind="features", feature_dim=cell_feature_dim(shapes.rows, shapes.cols), decoder_attends_image=True
        )
    return VisionConfig(
        kind="pixels",
        decoder_attends_image=True,
        image_size=shapes.image_size,
        patch_size=m.patch_size,
        feature_dim=m.d_model,
        vit_layers=m.vit_layers,
        vit_heads=m.num_heads,
        vit_mlp_dim=2 * m.d_model,
    )


def build_model(config: Config, vocab_size: int, feature_dim: int | None = None) -> MultimodalT5:
    """The rationale model from random initialisation, sized by `config.model`."""
    m = config.model
    return MultimodalT5(
        T5Config(
            vocab_size=vocab_size,
            d_model=m.d_model,
            d_kv=m.d_model // m.num_heads,
            d_ff=m.d_ff,
            num_layers=m.num_layers,
            num_decoder_layers=m.num_decoder_layers,
            num_heads=m.num_heads,
            dropout_rate=m.dropout_rate,
            relative_attention_max_distance=max(m.max_source_length, m.max_target_length),
            vision=vision_config(config, feature_dim),
            dtype=m.dtype,
        )
    )


def build_models(config: Config, train: Sequence[Problem]) -> tuple[Tokenizer, MultimodalT5, MultimodalT5, dict | None]:
    """(tokenizer, rationale model, answer model, the rationale model's starting parameters).

    From random initialisation: a BPE tokenizer trained on `train` and a model sized by
    `config.model` (starting parameters None: drawn from the seed). From `model.pretrained`: the
    folder's tokenizer and weights, with MM-CoT's image fusion (fresh when the folder has none)
    for the data's features. The answer model is the rationale model, with LoRA adapters when
    `answer.lora.enabled`.
    """
    features = train[0].features if train else None
    feature_dim = None if features is None else features.shape[-1]
    if config.model.pretrained:
        tokenizer = Tokenizer.from_folder(config.model.pretrained)
        vision = dataclasses.replace(vision_config(config, feature_dim), decoder_attends_image=False)  # MM-CoT's
        policy_model, params = load_pretrained(
            config.model.pretrained, dtype=config.model.dtype, vision=vision, rng=jax.random.key(config.seed)
        )
    else:
        tokenizer = build_tokenizer(train, config.data.vocab_size)  # deterministic: the same on every resume
        policy_model, params = build_model(config, tokenizer.vocab_size, feature_dim), None
    adapter = config.answer.lora
    answer_model = (
        MultimodalT5(
            dataclasses.replace(
                policy_model.config,
                lora_rank=adapter.rank,
                lora_alpha=adapter.alpha,
                lora_dropout=adapter.dropout,
                lora_targets=adapter.targets,
            )
        )
        if adapter.enabled
        else policy_model
    )
    return tokenizer, policy_model, answer_model, params


def model_images(problems: Sequence[Problem], config: Config) -> np.ndarray | StackedRows | None:
    """The image input of the model for `problems` `[B, ...]`: the built-in task's frozen cell
    features (or pixels); a real dataset's precomputed features `[B, P, F]` (read lazily from
    the memory-mapped table); None when the run has no image input."""
    if config.data.source != "shapes":  # read when a batch is placed: each process reads its rows
        return StackedRows([p.features for p in problems]) if config.data.features else None
    if config.model.image_input == "features":
        shapes = config.data.shapes
        return np.stack([cell_features(p.image, shapes.rows, shapes.cols) for p in problems])
    return stack_images(problems)


def generate_texts(
    model: MultimodalT5,
    params,
    tokenizer: Tokenizer,
    arrays: dict,
    sampling: SamplingConfig,
    batch_size: int,
    rng,
    shardings: StepShardings | None = None,
    progress: str | None = None,
) -> list[str]:
    """Decode every row of `arrays` (input_ids, attention_mask, image) in fixed-size batches;
    on a mesh when `shardings` (of `params`) are given; a progress bar named `progress`."""
    texts = []
    if shardings is not None:
        params = jax.device_put(params, shardings.state)
    rows = len(arrays["input_ids"])
    batches = fixed_batches(arrays, batch_size)
    if progress:
        batches = tqdm(batches, desc=progress, total=-(-rows // batch_size), unit="batch", leave=False)
    for index, (batch, real) in enumerate(batches):
        batch = (
            put_batch(batch, shardings.batch) if shardings is not None else jax.tree_util.tree_map(jnp.asarray, batch)
        )
        out = generate(
            model,
            params,
            batch["input_ids"],
            batch["attention_mask"],
            jax.random.fold_in(rng, index),
            sampling,
            batch.get("image"),
            shardings,
        )
        tokens, lengths = to_host(out.tokens), to_host(out.lengths)
        texts += [tokenizer.decode(tokens[row, : lengths[row]]) for row in range(real)]
    return texts


def write_rationales(
    model,
    params,
    tokenizer,
    problems: Sequence[Problem],
    config: Config,
    shardings: StepShardings | None = None,
    progress: str | None = None,
) -> list[str]:
    """Greedy rationales (without the "Solution:" tag) for `problems`."""
    prompts, _ = rationale_examples(problems)
    arrays = encode_prompts(tokenizer, prompts, model_images(problems, config), config.model.max_source_length)
    sampling = SamplingConfig(config.eval.max_new_tokens, greedy=True)
    texts = generate_texts(
        model, params, tokenizer, arrays, sampling, config.eval.batch_size, jax.random.key(0), shardings, progress
    )
    return [strip_solution_tag(t) for t in texts]


def infer_answers(
    model,
    params,
    tokenizer,
    problems: Sequence[Problem],
    rationales: Sequence[str],
    config: Config,
    shardings: StepShardings | None = None,
    progress: str | None = None,
) -> list[int]:
    """The answer stage: option index per problem from question + rationale (-1 if unreadable)."""
    prompts, _ = answer_examples(problems, rationales)
    arrays = encode_prompts(tokenizer, prompts, model_images(problems, config), config.model.max_answer_source_length)
    sampling = SamplingConfig(ANSWER_TOKENS, greedy=True)
    texts = generate_texts(
        model, params, tokenizer, arrays, sampling, config.eval.batch_size, jax.random.key(0), shardings, progress
    )
    return [parse_answer(t, len(p.choices)) for t, p in zip(texts, problems)]

"""The host loop: phases of the run, each a short function, in the order the method runs them.

So far the MM-CoT baseline: SFT of the rationale model on gold rationales, SFT of the answer
model on (question + gold rationale -> answer), then the two-stage evaluation on the test split.
The RL and correction phases of ARES join here (issue: the ARES loop).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ares_jax.config import Config, SFTConfig, to_dict
from ares_jax.data.batching import (
    answer_examples,
    build_tokenizer,
    encode_prompts,
    encode_sft,
    fixed_batches,
    rationale_examples,
    shuffled_batches,
    stack_images,
)
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import parse_answer, strip_solution_tag
from ares_jax.data.shapes.scene import cell_features
from ares_jax.data.shapes.task import make_split
from ares_jax.eval.metrics import answer_accuracy, fluency, mean_rouge_l
from ares_jax.models import MultimodalT5, SamplingConfig, T5Config, VisionConfig, count_params, generate, init_params
from ares_jax.sft import make_sft_step
from ares_jax.teacher.base import Teacher, run_batch
from ares_jax.teacher.factory import make_teacher
from ares_jax.text.sentences import split_sentences
from ares_jax.text.tokenizer import Tokenizer
from ares_jax.train_state import TrainState, adamw

Log = Callable[[str], None]


def build_model(config: Config, vocab_size: int) -> MultimodalT5:
    m, shapes = config.model, config.data.shapes
    if m.image_input == "features":
        vision = VisionConfig(kind="features", feature_dim=7 + shapes.rows + shapes.cols, decoder_attends_image=True)
    else:
        vision = VisionConfig(kind="pixels", decoder_attends_image=True, image_size=shapes.image_size,
                              patch_size=m.patch_size, feature_dim=m.d_model, vit_layers=m.vit_layers,
                              vit_heads=m.num_heads, vit_mlp_dim=2 * m.d_model)
    return MultimodalT5(T5Config(
        vocab_size=vocab_size, d_model=m.d_model, d_kv=m.d_model // m.num_heads, d_ff=m.d_ff,
        num_layers=m.num_layers, num_decoder_layers=m.num_decoder_layers, num_heads=m.num_heads,
        dropout_rate=m.dropout_rate, relative_attention_max_distance=max(m.max_source_length, m.max_target_length),
        vision=vision,
    ))


def model_images(problems: Sequence[Problem], config: Config) -> np.ndarray:
    """The image input of the model for `problems`: frozen cell features `[B, P, F]` or pixels."""
    if config.model.image_input == "features":
        shapes = config.data.shapes
        return np.stack([cell_features(p.image, shapes.rows, shapes.cols) for p in problems])
    return stack_images(problems)


def sft_phase(model: MultimodalT5, params, arrays: dict, sft: SFTConfig, seed: int, log: Log, name: str):
    """`sft.steps` jitted SFT steps on shuffled batches of `arrays`; returns (params, losses)."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, sft.learning_rate, sft.warmup_steps, sft.steps,
                                                  sft.learning_rate * 0.1)
    optimizer = adamw(schedule, weight_decay=sft.weight_decay)
    state = TrainState.create(params, optimizer)
    step_fn = make_sft_step(model, optimizer)
    batches = shuffled_batches(arrays, sft.batch_size, np.random.default_rng(seed))
    losses, start = [], time.perf_counter()
    for step in range(sft.steps):
        state, metrics = step_fn(state, jax.tree_util.tree_map(jnp.asarray, next(batches)))
        if step % 50 == 0 or step == sft.steps - 1:
            losses.append((step, float(metrics["loss"])))
            log(f"{name}: step {step + 1}/{sft.steps}  loss {losses[-1][1]:.4f}  ({time.perf_counter() - start:.0f} s)")
    return state.params, losses


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
    sampling = SamplingConfig(16, greedy=True)
    texts = generate_texts(model, params, tokenizer, arrays, sampling, config.eval.batch_size, jax.random.key(0))
    return [parse_answer(t, len(p.choices)) for t, p in zip(texts, problems)]


def evaluate(rationales: Sequence[str], answers: Sequence[int], problems: Sequence[Problem],
             teacher: Teacher, concurrency: int) -> dict:
    """Answer accuracy, ROUGE-L against gold, fluency defects and the Teacher's mean sentence
    score (unscored rationales left out of the mean)."""
    scores = run_batch(teacher.score_sentences, [(p, split_sentences(r)) for p, r in zip(problems, rationales)],
                       concurrency, progress="teacher: sentence scores", stats=teacher.stats)
    scored = [s for s in scores if s is not None]
    by_kind: dict[str, list[bool]] = {}
    for p, a in zip(problems, answers):
        by_kind.setdefault(p.extras.get("question_kind", "all"), []).append(a == p.answer)
    return {
        "answer_accuracy": answer_accuracy(answers, [p.answer for p in problems]),
        "answer_accuracy_by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
        "rouge_l": mean_rouge_l(rationales, [p.solution for p in problems]),
        "fluency": fluency(rationales),
        "mean_sentence_score": float(np.mean([np.mean(s) if s else 0.0 for s in scored])) if scored else None,
        "unscored": len(scores) - len(scored),
    }


def run(config: Config, log: Log = print) -> dict:
    """The baseline run on the built-in task; writes `report.json` in the work directory."""
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    teacher = make_teacher(config.teacher, workdir / "teacher_cache.sqlite")  # a missing key fails here
    start = time.perf_counter()
    shapes = config.data.shapes
    train, test = make_split(shapes, "train"), make_split(shapes, "test")
    tokenizer = build_tokenizer(train, config.data.vocab_size)
    tokenizer.save(workdir / "tokenizer")
    model = build_model(config, tokenizer.vocab_size)
    initial_params = init_params(model, jax.random.key(config.seed))
    log(f"data: {len(train)} train / {len(test)} test problems; vocab {tokenizer.vocab_size}; "
        f"model {count_params(initial_params):,} parameters")
    m = config.model

    train_images = model_images(train, config)
    prompts, targets = rationale_examples(train)
    arrays = encode_sft(tokenizer, prompts, targets, train_images, m.max_source_length, m.max_target_length)
    rationale_params, rationale_losses = sft_phase(
        model, initial_params, arrays, config.rationale, config.seed, log,
        "baseline rationale SFT")

    prompts, targets = answer_examples(train, [p.solution for p in train])
    arrays = encode_sft(tokenizer, prompts, targets, train_images, m.max_answer_source_length, 16)
    answer_params, answer_losses = sft_phase(
        model, init_params(model, jax.random.key(config.seed + 1)), arrays, config.answer, config.seed + 1, log,
        "answer SFT")

    rationales = write_rationales(model, rationale_params, tokenizer, test, config)
    answers = infer_answers(model, answer_params, tokenizer, test, rationales, config)
    before = dataclasses.replace(teacher.stats)
    baseline = evaluate(rationales, answers, test, teacher, config.teacher.concurrency)
    teacher_by_phase = {"baseline_evaluation": teacher.stats.since(before).as_dict()}
    log(f"teacher, baseline evaluation: {teacher_by_phase['baseline_evaluation']}")
    report = {
        "baseline": baseline,
        "curves": {"baseline_rationale_sft_loss": rationale_losses, "answer_sft_loss": answer_losses},
        "teacher": {"name": teacher.name, **teacher.stats.as_dict(), "by_phase": teacher_by_phase},
        "seconds": time.perf_counter() - start,
        "config": to_dict(config),
        "examples": [
            {"id": p.id, "question": p.question, "gold": p.solution, "baseline": r}
            for p, r in list(zip(test, rationales))[:5]
        ],
    }
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    return report

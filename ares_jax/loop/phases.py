"""The phases of an ARES run, one function each, in the order the method runs them.

Every phase is `phase(run, state)`: it reads what earlier phases left in `state.models` /
`state.results` and adds its own. Phases with many steps save a checkpoint every
`checkpoint.every_steps` optimizer steps and stop cleanly on SIGTERM/SIGINT (`run.check_stop`);
the others are short and are redone from their start after an interruption (the Teacher cache
makes that free).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ares_jax.config import Config, ConfigError, SFTConfig
from ares_jax.data.batching import answer_examples, batch_at, encode_sft, rationale_examples
from ares_jax.data.problem import Problem
from ares_jax.eval.evaluate import evaluate
from ares_jax.eval.metrics import win_rate
from ares_jax.eval.report import METHOD_NAMES
from ares_jax.loop.generation import ANSWER_TOKENS, infer_answers, model_images, write_rationales
from ares_jax.loop.rollout import collect_rollout, conclusion_rates
from ares_jax.loop.state import Run, RunState, copy_tree
from ares_jax.models import MultimodalT5, init_params, transplant
from ares_jax.models.lora import lora_labels
from ares_jax.parallel import put_batch
from ares_jax.profiling import StepWindow
from ares_jax.rl import AdaptiveKLController
from ares_jax.sft.curriculum import first_stage_problems, gold_problems
from ares_jax.teacher.base import run_batch
from ares_jax.text.fluency import drop_repeated_sentences
from ares_jax.train_state import TrainState, set_hyperparams

LOG_EVERY = 25  # SFT steps between logged losses


def train_sft(
    run: Run,
    state: RunState,
    model: MultimodalT5,
    params,
    arrays: dict,
    sft: SFTConfig,
    curve: str,
    trainable=None,
    first: tuple[int, dict] | None = None,
):
    """`sft.steps` jitted SFT steps on `arrays` from `params` (or from the phase's checkpoint);
    returns the trained params. `trainable`: labels "adapter"/"frozen" (LoRA), else all train.
    `first`: (steps, arrays) the first steps take their batches from instead (a curriculum).
    Warmup then cosine decay to a tenth over all steps, computed here and set in the optimizer
    state per step."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, sft.learning_rate, sft.warmup_steps, sft.steps, sft.learning_rate * 0.1
    )
    optimizer, step_fn, layout = run.sft_trainer(model, trainable)
    train_state = run.restore_train(state, jax.device_put(TrainState.create(copy_tree(params), optimizer), layout))
    uses_dropout = model.config.dropout_rate > 0 or model.config.lora_dropout > 0
    seed = run.config.seed * 1000 + state.phase_index
    bar = tqdm(
        range(state.step, sft.steps),
        desc=curve.split("/")[0],
        initial=state.step,
        total=sft.steps,
        unit="step",
        leave=False,
        disable=not run.primary,
    )
    for step in bar:
        source = first[1] if first is not None and step < first[0] else arrays
        batch = put_batch(batch_at(source, sft.batch_size, seed, step), run.rows)
        train_state = train_state.replace(
            opt_state=set_hyperparams(
                train_state.opt_state, learning_rate=float(schedule(step)), weight_decay=sft.weight_decay
            )
        )
        train_state, metrics = step_fn(train_state, batch, run.key(state, step) if uses_dropout else None)
        state.step = step + 1
        if step % LOG_EVERY == 0 or state.step == sft.steps:
            loss = float(metrics["loss"])
            state.add_point(curve, step, loss)
            run.log_metrics(state, step, {"loss": loss, "grad_norm": metrics["grad_norm"]})
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if state.step % run.config.checkpoint.every_steps == 0 and state.step < sft.steps:
            run.save(state, train_state)
        run.check_stop(state, train_state)
    bar.close()
    run.log(f"{curve.split('/')[0]}: {sft.steps} steps, last loss {state.results['curves'][curve][-1][1]:.4f}")
    return train_state.params


def _rationale_arrays(run: Run, problems, targets=None) -> dict:
    """SFT arrays of the rationale stage: `problems`' prompts -> `targets` (default: gold)."""
    m = run.config.model
    prompts, targets = rationale_examples(problems, targets)
    return encode_sft(
        run.tokenizer, prompts, targets, model_images(problems, run.config), m.max_source_length, m.max_target_length
    )


def rationale_sft(run: Run, state: RunState) -> None:
    """Baseline stage 1 (MM-CoT): the rationale model learns the gold rationales (the first
    `rationale.first_steps` on the problems of `rationale.first_kinds` only)."""
    params = run.initial_policy
    if params is None:
        params = init_params(run.policy_model, jax.random.key(run.config.seed))
    rationale = run.config.rationale
    first_problems = first_stage_problems(run.gold_train, rationale)
    state.models.policy = train_sft(
        run,
        state,
        run.policy_model,
        params,
        _rationale_arrays(run, run.gold_train),
        rationale,
        "rationale_sft/loss",
        first=(rationale.first_steps, _rationale_arrays(run, first_problems)) if first_problems else None,
    )


def answer_sft(run: Run, state: RunState) -> None:
    """Baseline stage 2: question + gold rationale -> answer; a full model (from the pretrained
    start when there is one), or a LoRA adapter on the rationale model just trained. Baseline and
    ARES rationales are answered by this model."""
    gold = run.gold_train
    prompts, targets = answer_examples(gold, [p.solution for p in gold])
    arrays = encode_sft(
        run.tokenizer,
        prompts,
        targets,
        model_images(gold, run.config),
        run.config.model.max_answer_source_length,
        ANSWER_TOKENS,
    )
    params = init_params(run.answer_model, jax.random.key(run.config.seed + 1))
    trainable = None
    if run.config.answer.lora.enabled:
        params = transplant(state.models.policy, params)
        trainable = lora_labels(params)
    elif run.initial_policy is not None:
        params = transplant(run.initial_policy, params)
    state.models.answer = train_sft(
        run, state, run.answer_model, params, arrays, run.config.answer, "answer_sft/loss", trainable
    )


def evaluation(run: Run, state: RunState, label: str) -> None:
    """Rationales and answers on the test split with the current models; metrics into
    `results.evaluations[label]`, the texts into `eval/<label>.json`."""
    rationales = write_rationales(
        run.policy_model,
        state.models.policy,
        run.tokenizer,
        run.test,
        run.config,
        run.sampling_layout(run.policy_model),
    )
    answers = infer_answers(
        run.answer_model,
        state.models.answer,
        run.tokenizer,
        run.test,
        rationales,
        run.config,
        run.sampling_layout(run.answer_model),
    )
    metrics = evaluate(rationales, answers, run.test, run.teacher, run.config.teacher.concurrency)
    run.write_json(
        f"eval/{label}.json",
        [{"id": p.id, "rationale": r, "answer": a} for p, r, a in zip(run.test, rationales, answers)],
    )
    state.results["evaluations"][label] = metrics
    run.log_metrics(
        state,
        0,
        {
            "answer_accuracy": metrics["answer_accuracy"],
            "rouge_l": metrics["rouge_l"],
            **{f"fluency_{k}": v for k, v in metrics["fluency"].items()},
        },
    )
    run.log(
        f"evaluation {label}: accuracy {metrics['answer_accuracy']:.3f}, ROUGE-L {metrics['rouge_l']:.3f}, "
        f"sentence score {metrics['mean_sentence_score'] or 0:.3f}, fluency defects {metrics['fluency']}"
    )


def validation(run: Run, state: RunState, policy, name: str, at: int, unit: str = "rollout batches", seen=()) -> None:
    """Progress on held-out questions: greedy rationales of `policy` on `rl.val_questions` of the
    validation split, answered by the answer model and scored by the Teacher, after `at` `unit` of
    phase `name` (an RL round, a correction or gold SFT). Points of the curves `<name>/val_*` and a
    metrics line; the Teacher requests it takes are counted apart (`results.teacher_validation`),
    not as training. The same measures on `seen` (an RL round's own questions, `rl.seen_questions`)
    go into the curves `<name>/seen_*`."""
    for problems, prefix, what in (
        (run.val[: run.config.rl.val_questions or None], "val", "validation"),
        (seen, "seen", "on its own training questions"),
    ):
        if problems:
            point = _greedy_point(run, state, policy, name, at, problems, prefix)
            run.log(
                f"{name} {what} after {at} {unit} ({len(problems)} questions): accuracy "
                f"{point['accuracy']:.3f} (its own conclusion {point['conclusion_accuracy']:.3f}), "
                f"sentence score {point['sentence_score']:.3f} ({point['sentence_score_non_neutral']:.3f} without "
                f"neutral sentences), {point['response_tokens']:.1f} tokens"
            )


def _greedy_point(run: Run, state: RunState, policy, name: str, at: int, problems, prefix: str) -> dict:
    """One point of the curves `<name>/<prefix>_*`: `policy`'s greedy rationales on `problems`,
    answered and scored (written to `eval/<name>_<prefix>_<at>.json`); returns its measures."""
    before = dataclasses.replace(run.teacher.stats)
    rationales = write_rationales(
        run.policy_model, policy, run.tokenizer, problems, run.config, run.sampling_layout(run.policy_model)
    )
    answers = infer_answers(
        run.answer_model,
        state.models.answer,
        run.tokenizer,
        problems,
        rationales,
        run.config,
        run.sampling_layout(run.answer_model),
    )
    metrics = evaluate(rationales, answers, problems, run.teacher, run.config.teacher.concurrency)
    run.write_json(
        f"eval/{name}_{prefix}_{at}.json",
        [{"id": p.id, "rationale": r, "answer": a} for p, r, a in zip(problems, rationales, answers)],
    )
    spent = state.results.setdefault("teacher_validation", {})
    spent[name] = spent.get(name, 0) + run.teacher.stats.since(before).requests
    points = {
        "sentence_score": metrics["mean_sentence_score"] or 0.0,
        "sentence_score_non_neutral": metrics["mean_non_neutral_score"] or 0.0,
        "accuracy": metrics["answer_accuracy"],
        # the rationale's own "The answer is (X)": separates the policy from the answer model reading it
        "conclusion_accuracy": conclusion_rates(rationales, problems, 1)["sample_accuracy"],
        **{f"accuracy_{kind}": value for kind, value in metrics["answer_accuracy_by_kind"].items()},
        "response_tokens": float(np.mean([len(run.tokenizer.encode(r, add_eos=False)) for r in rationales])),
        **metrics["fluency"],
    }
    for key, value in points.items():
        state.add_point(f"{name}/{prefix}_{key}", at, value)
    run.log_metrics(state, at, {f"{prefix}_{key}": value for key, value in points.items()})
    return points


def rl_question_pool(train: Sequence[Problem], config: Config) -> Sequence[Problem]:
    """The training problems RL rounds draw their questions from: the first `rl.question_pool`
    of the training split, or all of it (0). A ConfigError naming the key when the split has
    fewer problems."""
    count = config.rl.question_pool
    if count > len(train):
        raise ConfigError(
            f"rl.question_pool={count}: the training split ({config.data.train_split}) has only {len(train)} problems"
        )
    return train[:count] if count else train


def correction_pool(train: Sequence[Problem], config: Config) -> Sequence[Problem]:
    """The training problems the Teacher's corrections are drawn from: all of them, or with
    `correction.pool=answer_only` those whose gold rationale the SFT stages do not learn. A
    ConfigError naming the keys when that leaves none."""
    if config.correction.pool == "all":
        return train
    answer_only = train[len(gold_problems(train, config.data)) :]
    if not answer_only:
        raise ConfigError(
            f"correction.pool=answer_only: every one of the {len(train)} training problems has a gold "
            "rationale the SFT stages learn; set data.gold_rationales (or data.shapes.gold_share) below "
            "the training split's size, or correction.pool=all"
        )
    return answer_only


def _questions(run: Run, count: int, *salt: int, pool=None):
    """`count` problems of `pool` (default: every training problem) in an order drawn from the seed
    and `salt` (wrapping around)."""
    pool = run.train if pool is None else pool
    order = np.random.default_rng([run.config.seed, *salt]).permutation(len(pool))
    return [pool[i] for i in np.resize(order, count)]


ROLLOUT_CURVES = (  # per rollout batch, into the curves `rl_<r>/<key>`
    "sentence_score",
    "reward",
    "kl",
    "policy_loss",
    "value_loss",
    "entropy",
    "explained_variance",
    "clipfrac",
    "pass_at_k",
    "sample_accuracy",
    "response_tokens",
)
PPO_METRICS = ("policy_loss", "value_loss", "clipfrac", "approx_kl", "skipped", "policy_grad_norm", "value_grad_norm")


def rl_round(run: Run, state: RunState, round_index: int) -> None:
    """ARES stage 1: rollouts scored sentence by sentence by the Teacher, PPO over each buffer.
    The reference policy is the policy as the round starts; the value model starts from the
    policy's trunk with a fresh head (first round), trains alone on the first
    `rl.value_warmup_batches` rollout batches of that round (GAE only), and carries over between
    rounds. The phase's step counter (`state.step`) counts rollout batches.

    Per rollout batch: collect (sample, Teacher scores, advantages: `collect_rollout`), PPO epochs
    over the buffer, log, validate every `rl.eval_every` batches, checkpoint. With `rl.keep_best`
    the round ends with its policy at its best validation point (the value model as trained)."""
    config, rl = run.config, run.config.rl
    questions = _questions(run, rl.questions_per_round, round_index, 0, pool=rl_question_pool(run.train, config))
    batches = len(questions) // rl.prompts_per_rollout
    seen = questions[: rl.seen_questions]  # measured beside the held-out questions (rl.seen_questions)
    if state.step == 0:
        state.models.reference = copy_tree(state.models.policy)
        if state.models.value is None:
            fresh = init_params(run.value_model, jax.random.key(config.seed + 2))
            state.models.value = transplant(state.models.policy, fresh)
    optimizer, ppo_step, value_step, scoring, layout = run.rl_trainer()
    params = copy_tree({"policy": state.models.policy, "value": state.models.value})
    train_state = run.restore_train(state, jax.device_put(TrainState.create(params, optimizer), layout))
    reference = jax.device_put(state.models.reference, run.param_layout(run.policy_model))
    controller = AdaptiveKLController(state.kl_coef, rl.kl_target, rl.kl_horizon) if rl.kl_target else None
    window = StepWindow(config.profile.steps, run.workdir / "profile")
    name = f"rl_{round_index}"
    # only round 1's value model has a fresh head, and only the critic's advantages (gae) read it;
    # the policy keeps at least one batch
    fresh_critic = round_index == 1 and config.ppo.advantage == "gae"
    warmup_batches = min(rl.value_warmup_batches, batches - 1) if fresh_critic else 0
    if state.step == 0:
        if warmup_batches:
            run.log(
                f"{name}: the first {warmup_batches} of {batches} rollout batches train only the value model "
                "(rl.value_warmup_batches)"
            )
        validation(run, state, train_state.params["policy"], name, 0, seen=seen)
        _keep_if_best(run, state, name, train_state.params["policy"])
    bar = tqdm(
        range(state.step, batches),
        desc=f"{name} rollouts",
        initial=state.step,
        total=batches,
        leave=False,
        disable=not run.primary,
    )
    for batch in bar:
        problems = questions[batch * rl.prompts_per_rollout : (batch + 1) * rl.prompts_per_rollout]
        with jax.profiler.TraceAnnotation("rollout"):
            buffer, metrics = collect_rollout(
                run, train_state.params, reference, problems, run.key(state, batch), state.kl_coef, scoring
            )
        step_fn = value_step if batch < warmup_batches else ppo_step
        order_rng = np.random.default_rng([config.seed, state.phase_index, batch])
        train_state, step_metrics = _ppo_epochs(run, state, train_state, buffer, step_fn, order_rng, window, name)
        metrics.update({key: float(np.mean([float(m[key]) for m in step_metrics])) for key in PPO_METRICS})
        if controller is not None:
            state.kl_coef = controller.update(metrics["kl"], len(problems) * rl.k_samples)
        metrics["kl_coef"] = state.kl_coef
        state.step = batch + 1
        _log_rollout_batch(run, state, name, batch, metrics)
        if (rl.eval_every and state.step % rl.eval_every == 0) or state.step == batches:
            validation(run, state, train_state.params["policy"], name, state.step, seen=seen)
            _keep_if_best(run, state, name, train_state.params["policy"])
        bar.set_postfix(score=f"{metrics['sentence_score']:.3f}", kl=f"{metrics['kl']:.3f}", refresh=False)
        if _checkpoint_due(batch, len(step_metrics), config.checkpoint.every_steps) and state.step < batches:
            run.save(state, train_state)
        run.check_stop(state, train_state)
    bar.close()
    window.close()
    state.models.policy, state.models.value = train_state.params["policy"], train_state.params["value"]
    state.models.reference = None
    curve = state.results["curves"][f"{name}/sentence_score"]
    run.log(f"{name}: {batches} rollout batches; Teacher's mean sentence score {curve[0][1]:.3f} -> {curve[-1][1]:.3f}")
    if state.models.best is not None:
        measure, at = f"val_{rl.keep_best}", state.results["kept_best"][name]
        value = dict(map(tuple, state.results["curves"][f"{name}/{measure}"]))[at]
        run.log(
            f"{name}: the round ends with its policy after {at} rollout batches, {measure} {value:.3f} (rl.keep_best)"
        )
        state.models.policy, state.models.best = state.models.best, None


def _keep_if_best(run: Run, state: RunState, name: str, policy) -> None:
    """With `rl.keep_best`: after a validation point of round `name`, a copy of `policy` as
    `state.models.best`, and the point's rollout batch as `results["kept_best"][name]`, when the
    point is the round's best so far by the measure (the earlier point on a tie). Both are saved
    with the round's checkpoints."""
    measure = run.config.rl.keep_best
    if not measure or not run.val:
        return
    points = state.results["curves"][f"{name}/val_{measure}"]
    values = [value for _, value in points]
    if len(values) == 1 or values[-1] > max(values[:-1]):
        state.models.best = copy_tree(policy)
        state.results.setdefault("kept_best", {})[name] = points[-1][0]


def _ppo_epochs(
    run: Run, state: RunState, train_state, buffer: dict, step_fn, order_rng, window: StepWindow, name: str
):
    """`rl.epochs` passes over the rollout `buffer` (`[B * k, ...]` arrays) in shuffled minibatches
    of `rl.minibatch_size` rows, one jitted `step_fn` each; returns (train state, step metrics)."""
    rl = run.config.rl
    size = jax.tree_util.tree_leaves(buffer)[0].shape[0]
    step_metrics = []
    ppo_bar = tqdm(
        total=rl.epochs * (size // rl.minibatch_size),
        desc=f"{name} PPO steps",
        unit="step",
        leave=False,
        disable=not run.primary,
    )
    for _ in range(rl.epochs):
        order = order_rng.permutation(size)
        for start in range(0, size - rl.minibatch_size + 1, rl.minibatch_size):
            rows = jnp.asarray(order[start : start + rl.minibatch_size])
            minibatch = jax.device_put(jax.tree_util.tree_map(lambda x: x[rows], buffer), run.rows)
            window.before(state.ppo_steps)
            with jax.profiler.StepTraceAnnotation("ppo", step_num=state.ppo_steps):
                train_state, metrics = step_fn(train_state, minibatch)
            window.after(state.ppo_steps, train_state)
            state.ppo_steps += 1
            step_metrics.append(metrics)
            ppo_bar.update(1)
    ppo_bar.close()
    return train_state, step_metrics


def _log_rollout_batch(run: Run, state: RunState, name: str, batch: int, metrics: dict) -> None:
    """One rollout batch's figures: points of the round's curves and a metrics line."""
    for key in ROLLOUT_CURVES:
        state.add_point(f"{name}/{key}", batch, metrics[key])
    run.log_metrics(state, batch, metrics)


def _checkpoint_due(batch: int, steps_per_batch: int, every_steps: int) -> bool:
    """Whether rollout batch `batch` (0-based, `steps_per_batch` PPO steps each) crossed a
    multiple of `every_steps` optimizer steps."""
    return ((batch + 1) * steps_per_batch) // every_steps > (batch * steps_per_batch) // every_steps


def correction(run: Run, state: RunState, round_index: int) -> None:
    """ARES stage 2, part 1: the RL-tuned model writes rationales for training questions, exact
    repeated sentences are removed, and the Teacher corrects them (`corrections/round_<r>.json`)."""
    pool = correction_pool(run.train, run.config)
    problems = _questions(run, run.config.correction.questions, round_index, 1, pool=pool)
    written = write_rationales(
        run.policy_model,
        state.models.policy,
        run.tokenizer,
        problems,
        run.config,
        run.sampling_layout(run.policy_model),
    )
    deduplicated = [drop_repeated_sentences(r) for r in written]
    corrected = run_batch(
        run.teacher.correct,
        list(zip(problems, deduplicated)),
        run.config.teacher.concurrency,
        progress="teacher: corrections",
        stats=run.teacher.stats,
    )
    run.write_json(
        f"corrections/round_{round_index}.json",
        [{"id": p.id, "rl_rationale": w, "corrected": c} for p, w, c in zip(problems, written, corrected)],
    )
    changed = float(np.mean([c != d for c, d in zip(corrected, deduplicated)]))
    had_repeats = float(np.mean([w != d for w, d in zip(written, deduplicated)]))
    state.results.setdefault("corrections", {})[f"round_{round_index}"] = {
        "rationales": len(problems),
        "with_repeated_sentences": had_repeats,
        "changed_by_teacher": changed,
    }
    run.log(
        f"correction round {round_index}: {len(problems)} rationales, {had_repeats:.1%} had repeated sentences, "
        f"the Teacher changed {changed:.1%}"
    )


def correction_sft(run: Run, state: RunState, round_index: int) -> None:
    """ARES stage 2, part 2: the RL-tuned model is fine-tuned on the Teacher's corrections (and
    `correction.gold_questions` gold rationales), then measured on the validation split (its
    start is the RL round's last validation point)."""
    records = json.loads((run.workdir / "corrections" / f"round_{round_index}.json").read_text())
    by_id = {p.id: p for p in run.train}
    problems = [by_id[r["id"]] for r in records]
    targets = [r["corrected"] for r in records]
    gold = _questions(run, run.config.correction.gold_questions, round_index, 2, pool=run.gold_train)
    arrays = _rationale_arrays(run, problems + gold, targets + [None] * len(gold))  # None: the gold rationale
    state.models.policy = train_sft(
        run, state, run.policy_model, state.models.policy, arrays, run.config.correction, f"sft_{round_index}/loss"
    )
    validation(run, state, state.models.policy, f"sft_{round_index}", run.config.correction.steps, "SFT steps")


def gold_sft(run: Run, state: RunState, round_index: int) -> None:
    """The SFT-more control (method=sft_more): in place of an ARES round, as many SFT steps as the
    round takes (its PPO steps + the correction SFT's), on gold rationales of the training set,
    with the correction SFT's settings. Is ARES better than training the baseline longer? Measured
    on the validation split after the round (and before round 1, as RL round 1 measures its start)."""
    sft = dataclasses.replace(run.config.correction, steps=run.config.steps_per_round)
    name = f"gold_{round_index}"
    if round_index == 1 and state.step == 0:
        validation(run, state, state.models.policy, name, 0, "SFT steps")
    state.models.policy = train_sft(
        run, state, run.policy_model, state.models.policy, _rationale_arrays(run, run.gold_train), sft, f"{name}/loss"
    )
    validation(run, state, state.models.policy, name, sft.steps, "SFT steps")


def comparison(run: Run, state: RunState, final_label: str) -> None:
    """The Teacher judges the final test rationales (ARES's) against the baseline's, both orders."""

    def texts(label):
        return [r["rationale"] for r in json.loads((run.workdir / "eval" / f"{label}.json").read_text())]

    state.results["comparison"] = win_rate(
        run.teacher, run.test, texts(final_label), texts("baseline"), run.config.teacher.concurrency
    )
    run.log(
        f"{METHOD_NAMES[run.config.method]} vs baseline (Teacher judge, both orders): win rate "
        f"{state.results['comparison']['win_rate']:.3f}"
    )

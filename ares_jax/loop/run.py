"""The whole ARES run, unattended: the phases in order, a checkpoint after each, resume from the
latest checkpoint of the work directory, and the report at the end.

    baseline:  rationale SFT -> answer SFT -> evaluation (or taken from another run: baseline_from)
    round r:   RL -> evaluation -> correction -> SFT on corrections -> evaluation
               (method=rl_only: RL -> evaluation; method=sft_more: SFT on gold -> evaluation)
    end:       Teacher judge of the final vs the baseline rationales; report.json, report.md, curves.png

With several processes (`distributed`), all run this same loop; process 0 alone asks the
Teacher and writes files (`parallel/multihost.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

import jax

from ares_jax.checkpoint import Checkpointer, CheckpointUnreadable
from ares_jax.config import Config, ConfigError, to_dict
from ares_jax.data.load import load_split
from ares_jax.eval.report import build_report, write_report
from ares_jax.loop import phases
from ares_jax.loop.generation import build_models
from ares_jax.loop.lock import WorkdirLock
from ares_jax.loop.state import Log, Run, RunState, StopSignals
from ares_jax.models import MultimodalT5, count_params
from ares_jax.parallel import ReplicationError, make_mesh, parse_axis_rules, replicated_share
from ares_jax.parallel.multihost import PeerWatch, is_primary, on_primary, processes_not_sharing
from ares_jax.sft.curriculum import first_stage_problems, gold_problems
from ares_jax.teacher.base import AskedByProcessZero, TeacherStats
from ares_jax.teacher.cache import CACHE_FILE
from ares_jax.teacher.factory import make_teacher

Phase = Callable[[Run, RunState], None]


def plan(config: Config) -> list[tuple[str, Phase]]:
    """(name, phase) in the order they run."""
    steps: list[tuple[str, Phase]] = [
        ("rationale_sft", phases.rationale_sft),
        ("answer_sft", phases.answer_sft),
        ("eval_baseline", functools.partial(phases.evaluation, label="baseline")),
    ]
    for r in range(1, config.rounds + 1):
        if config.method == "sft_more":
            steps += [
                (f"gold_{r}", functools.partial(phases.gold_sft, round_index=r)),
                (f"eval_gold_{r}", functools.partial(phases.evaluation, label=f"gold_{r}")),
            ]
            continue
        steps += [
            (f"rl_{r}", functools.partial(phases.rl_round, round_index=r)),
            (f"eval_rl_{r}", functools.partial(phases.evaluation, label=f"rl_{r}")),
        ]
        if config.method == "ares":
            steps += [
                (f"correction_{r}", functools.partial(phases.correction, round_index=r)),
                (f"sft_{r}", functools.partial(phases.correction_sft, round_index=r)),
                (f"eval_sft_{r}", functools.partial(phases.evaluation, label=f"sft_{r}")),
            ]
    if config.rounds:  # with no rounds there is nothing to judge against the baseline
        steps.append(("comparison", functools.partial(phases.comparison, final_label=final_label(config))))
    return steps


BASELINE_PHASES = 3  # rationale_sft, answer_sft, eval_baseline: the first phases of every plan


def final_label(config: Config) -> str:
    """The evaluation whose rationales the run ends with (ARES's: after the last round's SFT)."""
    if not config.rounds:
        return "baseline"
    return {"ares": "sft", "rl_only": "rl", "sft_more": "gold"}[config.method] + f"_{config.rounds}"


def check_batches_split(config: Config, shards: int) -> None:
    """Every batch the loop builds must split evenly over the mesh's `shards` batch shards
    (data x fsdp); a ConfigError naming the keys otherwise."""
    rl = config.rl
    sizes = {
        "rationale.batch_size": config.rationale.batch_size,
        "answer.batch_size": config.answer.batch_size,
        "correction.batch_size": config.correction.batch_size,
        "eval.batch_size": config.eval.batch_size,
        "rl.prompts_per_rollout": rl.prompts_per_rollout,
        "rl.minibatch_size / ppo.accumulation_steps": rl.minibatch_size // config.ppo.accumulation_steps,
    }
    uneven = [f"{key} ({size})" for key, size in sizes.items() if size % shards]
    if uneven:
        raise ConfigError(
            f"{', '.join(uneven)} must be a multiple of the mesh's batch shards (mesh.data x mesh.fsdp = {shards})"
        )


def setup(config: Config, log: Log, stop: StopSignals, phase_names: list[str]) -> Run:
    if config.data.source != "shapes" and config.teacher.backend == "rule":
        raise ConfigError(
            f"teacher.backend=rule judges only the built-in task (data.source=shapes); data.source="
            f"{config.data.source} needs an API Teacher (teacher.backend=openai or anthropic, teacher.model=...)"
        )
    if config.data.source != "shapes" and config.model.image_input == "pixels":
        raise ConfigError(
            "model.image_input=pixels is for the built-in task; a real dataset's image input is "
            "its precomputed features (data.features=...)"
        )
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    check_batches_split(config, mesh.shape["data"] * mesh.shape["fsdp"])
    train = load_split(config.data, config.data.train_split, log)  # bad data stops here, before any write
    test = load_split(config.data, config.data.test_split, log)
    val = load_split(config.data, config.data.val_split, log) if config.data.val_split and config.rounds else []
    # too few training problems for data.gold_rationales, or a curriculum without its problems, stops here
    first_stage_problems(gold_problems(train, config.data), config.rationale)
    phases.rl_question_pool(train, config)  # and so does one too short for rl.question_pool
    correction_pool = phases.correction_pool(train, config)  # or correction.pool=answer_only and none
    if config.method == "ares" and config.rounds and config.correction.questions > len(correction_pool):
        log(
            f"note: correction.questions={config.correction.questions} is more than the {len(correction_pool)} "
            f"questions of correction.pool={config.correction.pool}: some are corrected more than once a round, "
            "from the same greedy rationale"
        )
    if config.rl.keep_best and config.rounds and config.method != "sft_more":
        if not val:
            raise ConfigError("rl.keep_best selects on the validation split, and data.val_split is ''")
        if config.data.val_split == config.data.test_split:
            raise ConfigError(
                f"rl.keep_best selects on data.val_split, which is the test split ({config.data.test_split}): "
                "the test figures would no longer be held out"
            )
    if val and config.data.val_split == config.data.test_split:
        log(f"note: data.val_split is the test split ({config.data.test_split}): RL progress is measured on test")
    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    unshared = processes_not_sharing(workdir)
    if unshared:
        raise ConfigError(
            f"workdir {workdir}: processes {unshared} do not see the folder process 0 sees; a "
            "multi-host run needs a work directory every host shares (NFS, Filestore, gcsfuse)"
        )
    # one run per work directory, from here (before anything is written there) to the end
    held: list[WorkdirLock] = []

    def take_lock() -> bool:
        held.append(WorkdirLock.acquire(workdir, log))
        return True

    on_primary(take_lock)  # refused: process 0 raises WorkdirBusy, the others PrimaryFailed
    lock = held[0] if held else None
    try:
        if is_primary():  # the only process that asks the Teacher: a missing key fails here
            teacher = make_teacher(config.teacher, workdir / CACHE_FILE)
        else:
            teacher = AskedByProcessZero(f"{config.teacher.backend} (asked by process 0)")
        tokenizer, policy_model, answer_model, initial_policy = build_models(config, train)
        run = Run(
            config=config,
            workdir=workdir,
            tokenizer=tokenizer,
            train=train,
            test=test,
            val=val,
            policy_model=policy_model,
            value_model=MultimodalT5(policy_model.config, head="value"),
            answer_model=answer_model,
            initial_policy=initial_policy,
            mesh=mesh,
            axis_rules=parse_axis_rules(config.mesh.axis_rules),
            teacher=teacher,
            checkpointer=Checkpointer(workdir / "checkpoints", config.checkpoint.keep),
            log=log,
            stop=stop,
            phase_names=phase_names,
            lock=lock,
        )
        replicated = ""
        try:  # every model's layout, now: a dimension the mesh does not divide stops the run here
            models = {"policy": run.policy_model, "value": run.value_model, "answer": run.answer_model}
            layouts = {name: run.param_layout(model) for name, model in models.items()}
        except ReplicationError as error:
            raise ConfigError(f"mesh: {error}") from None
        if mesh.devices.size > 1:
            share = replicated_share(layouts, {name: run.abstract_params(name) for name in layouts})
            replicated = f" ({share:.0%} of parameter bytes replicated)"
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    log(
        f"data: {len(train)} train / {len(val)} validation / {len(test)} test problems; "
        f"vocab {tokenizer.vocab_size}; model "
        f"{count_params(run.abstract_params('policy')):,} parameters; mesh "
        f"{' x '.join(f'{name} {size}' for name, size in mesh.shape.items())} over {mesh.devices.size} "
        f"{mesh.devices.flat[0].platform} device(s){processes}{replicated}; Teacher {teacher.name}; "
        f"workdir {workdir}"
    )
    return run


def run(config: Config, log: Log = print, watch: PeerWatch | None = None) -> dict:
    """Runs (or resumes) the ARES loop in `config.workdir`; returns the report. Raises
    `state.Preempted` after saving when SIGTERM/SIGINT arrives. `watch` (several processes) is
    told where the loop is."""
    with StopSignals() as stop:
        steps = plan(config)
        run_ = setup(config, log, stop, [name for name, _ in steps])
        run_.watch = watch
        try:
            while True:
                try:
                    return _resume_and_run(run_, steps)
                except CheckpointUnreadable as damaged:  # the resumed phase's train state did not restore
                    run_.set_aside(damaged)  # then resume again from the next older checkpoint
        finally:
            run_.close()


def _resume_and_run(run_: Run, steps: list[tuple[str, Phase]]) -> dict:
    """The phases from where the work directory's checkpoints leave off, then the report."""
    config, log = run_.config, run_.log
    state = run_.resume()  # refuses other settings
    if state is None and config.baseline_from:
        state = run_.start_from_baseline(Path(config.baseline_from), BASELINE_PHASES)
    state = state or RunState(kl_coef=config.ppo.kl_coef)
    if run_.primary:
        run_.tokenizer.save(run_.workdir / "tokenizer")
    for index in range(state.phase_index, len(steps)):
        name, phase = steps[index]
        state.phase_index = index
        log(f"== phase {index + 1}/{len(steps)}: {name}")
        run_.mark_position(state)
        before = dataclasses.replace(run_.teacher.stats)
        phase(run_, state)
        spent = run_.teacher.stats.since(before)
        earlier = TeacherStats(**state.results["teacher_by_phase"].get(name, {}))  # a resumed phase
        state.results["teacher_by_phase"][name] = earlier.plus(spent).as_dict()
        state.phase_index, state.step = index + 1, 0
        run_.save(state, kept=name.startswith("eval_"))  # the models of a report column
        run_.check_stop(state)
    report = build_report(
        state.results,
        final_label(config),
        run_.teacher.name,
        run_.teacher_total(state).as_dict(),
        to_dict(config),
        run_.test,
        run_.workdir,
        seconds=run_.elapsed(state),
    )
    if run_.primary:
        write_report(run_.workdir, report)
    return report

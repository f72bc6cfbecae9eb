"""What a run carries from phase to phase, and how it survives interruption.

`RunState`: the run's parameters by name (policy, answer, value, reference, best) and its position
(phase, step inside it), the adaptive KL coefficient and the results so far (JSON). `Run`: the
fixed things of a run (config, data, tokenizer, models, Teacher) plus checkpoints, metric logs
and the stop signal. Random keys are derived from the seed and the position (phase, step), so
the position is the whole PRNG and data-order state a resumed run needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from ares_jax.checkpoint import Checkpointer, CheckpointUnreadable, abstract_like
from ares_jax.config import EARLIER_BEHAVIOUR, Config, ConfigError, to_dict
from ares_jax.data.problem import Problem
from ares_jax.loop.lock import WorkdirLock
from ares_jax.models import MultimodalT5, init_params, logical_axes
from ares_jax.parallel import StepShardings, batch_sharding, param_shardings, state_shardings
from ares_jax.parallel.multihost import PeerWatch, any_process, is_primary, on_primary
from ares_jax.rl import make_ppo_step, make_scoring_fn, rl_optimizer
from ares_jax.sft import make_sft_step
from ares_jax.sft.curriculum import gold_problems
from ares_jax.teacher.base import Teacher, TeacherStats
from ares_jax.text.tokenizer import Tokenizer
from ares_jax.train_state import TrainState, adamw_host_scheduled

Log = Callable[[str], None]

# Settings a resumed run may change: how the Teacher is reached and paid for, how often to save.
RESUMABLE_CHANGES = (
    "workdir",
    "teacher.timeout_s",
    "teacher.concurrency",
    "teacher.requests_per_minute",
    "teacher.tokens_per_minute",
    "teacher.max_retries",
    "teacher.backoff_s",
    "teacher.max_backoff_s",
    "teacher.max_requests",
    "teacher.max_cost_usd",
    "checkpoint.",
    "eval.batch_size",
    "mesh.",
    "distributed.",
    "profile.",
)  # a preempted pod may come back with another shape
# Settings that make a baseline: a run may start from another run's baseline when these agree.
BASELINE_SETTINGS = (
    "seed",
    "data.",
    "model.",
    "rationale.",
    "answer.",
    "eval.max_new_tokens",
    "teacher.backend",
    "teacher.model",
)


def _within(key: str, settings: Sequence[str]) -> bool:
    """`key` is one of `settings` (a name ending in "." stands for its whole section)."""
    return any(key == s or (s.endswith(".") and key.startswith(s)) for s in settings)


class Preempted(Exception):
    """SIGTERM or SIGINT arrived: the step in progress was finished and a checkpoint saved."""


class NoCheckpointRestores(Exception):
    """The work directory's checkpoints exist and none of them restores."""


class StopSignals:
    """While active, SIGTERM and SIGINT set `requested` instead of ending the process (a TPU
    preemption notice is a SIGTERM); the loop checks it after every step."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@dataclasses.dataclass
class Models:
    """The parameter trees of the run's models, by role; None until a phase makes one. Saved in
    checkpoints under the role's name."""

    policy: Any = None  # the rationale model, pi (the baseline's rationale SFT makes it)
    answer: Any = None  # question + rationale -> answer (the baseline's answer SFT)
    value: Any = None  # the critic, V: the policy's trunk with a value head (from RL round 1 on)
    reference: Any = None  # pi_ref: the policy as the current RL round started (during the round)
    best: Any = None  # with rl.keep_best: the round's policy at its best validation point so far

    def named(self) -> dict:
        """{role: params} of the models that exist."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclasses.dataclass
class RunState:
    """What the loop changes as it goes (`Run` is what stays fixed): the phase, the step in it,
    the adaptive KL coefficient, results so far, the models, and the counters."""

    phase_index: int = 0
    step: int = 0  # optimizer steps (SFT) or rollout batches (RL) finished in the current phase
    kl_coef: float = 0.0
    results: dict = dataclasses.field(default_factory=lambda: {"evaluations": {}, "curves": {}, "teacher_by_phase": {}})
    models: Models = dataclasses.field(default_factory=Models)
    teacher_before: TeacherStats = dataclasses.field(default_factory=TeacherStats)  # paid in earlier processes
    seconds_before: float = 0.0  # spent in earlier processes, up to their last checkpoint
    ppo_steps: int = 0  # PPO optimizer steps taken by this process (the profile window counts them)

    def add_point(self, curve: str, x: float, y: float) -> None:
        self.results["curves"].setdefault(curve, []).append([x, float(y)])


_MISSING = object()


def saved_config_defaults() -> dict:
    """What a key a saved config lacks stands for: the current default, or its EARLIER_BEHAVIOUR."""

    def merged(defaults: dict, earlier: dict) -> dict:
        return {
            k: merged(v, earlier[k]) if isinstance(v, dict) and k in earlier else earlier.get(k, v)
            for k, v in defaults.items()
        }

    return merged(to_dict(Config()), EARLIER_BEHAVIOUR)


def _changed_keys(saved, current, defaults, prefix="") -> list[str]:
    """Dotted keys whose value differs; a key the saved config lacks (written by an older
    version) counts as unchanged when the current value is the default."""
    if isinstance(saved, dict) and isinstance(current, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        return [
            k
            for key in sorted(set(saved) | set(current))
            for k in _changed_keys(
                saved.get(key, _MISSING), current.get(key, _MISSING), defaults.get(key, _MISSING), f"{prefix}{key}."
            )
        ]
    if saved is _MISSING:
        saved = defaults
    return [] if saved == current else [prefix.rstrip(".")]


def write_json_atomic(path: Path, value) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)


@dataclasses.dataclass
class Run:
    """The run's fixed context: configuration, data, model definitions, Teacher, mesh, the
    checkpointer and the compiled steps (built once, reused by every phase)."""

    config: Config
    workdir: Path
    tokenizer: Tokenizer
    train: Sequence[Problem]
    test: Sequence[Problem]
    val: Sequence[Problem]  # held-out questions the RL rounds are measured on (may be empty)
    policy_model: MultimodalT5
    value_model: MultimodalT5
    answer_model: MultimodalT5
    teacher: Teacher
    checkpointer: Checkpointer
    log: Log
    stop: StopSignals
    phase_names: list[str]
    mesh: Mesh | None = None  # the device mesh every jitted step runs on (one device: a 1x1x1 mesh)
    axis_rules: tuple = ()  # logical axis -> mesh axes (config.mesh.axis_rules, parsed)
    initial_policy: dict | None = None  # a pretrained start's weights; None: drawn from the seed
    _board: object = None
    _compiled: dict = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    lock: WorkdirLock | None = None  # the work directory's lock (process 0), released by `close`
    watch: PeerWatch | None = None  # several processes: told where the loop is (`mark_position`)

    @property
    def gold_train(self) -> Sequence[Problem]:
        """The training problems whose gold rationales the SFT stages learn (`data.gold_rationales`)."""
        return gold_problems(self.train, self.config.data)

    # ---- keys ---------------------------------------------------------------------------------

    def key(self, state: RunState, *path: int):
        """A PRNG key from the seed, the phase and `path` (e.g. the step)."""
        key = jax.random.fold_in(jax.random.key(self.config.seed), state.phase_index)
        for part in path:
            key = jax.random.fold_in(key, part)
        return key

    # ---- jitted steps, built once per run (each phase reuses the compiled step) ----------------

    @property
    def rows(self) -> NamedSharding:
        """The layout of every batch: rows split over the mesh's data x fsdp axes."""
        return batch_sharding(self.mesh)

    def param_layout(self, model: MultimodalT5):
        """The shardings of `model`'s parameters on the mesh, by the config's axis rules."""
        key = ("layout", model)
        if key not in self._compiled:
            self._compiled[key] = param_shardings(
                self._logical(model),
                self._abstract(model),
                self.mesh,
                self.axis_rules,
                allow_replicated=self.config.mesh.allow_replicated,
            )
        return self._compiled[key]

    def _logical(self, model: MultimodalT5):
        """`model`'s logical axis names, a pytree of `PartitionSpec`s like its parameters."""
        key = ("logical", model)
        if key not in self._compiled:
            self._compiled[key] = logical_axes(model)
        return self._compiled[key]

    def _state_layout(self, logical, abstract, optimizer) -> TrainState:
        """The train-state shardings of `optimizer` over parameters with these logical names."""
        return state_shardings(
            logical, abstract, optimizer, self.mesh, self.axis_rules, allow_replicated=self.config.mesh.allow_replicated
        )

    def _abstract(self, model: MultimodalT5):
        """`model`'s parameters as shapes and dtypes (traced once per model)."""
        key = ("abstract", model)
        if key not in self._compiled:
            self._compiled[key] = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
        return self._compiled[key]

    def sampling_layout(self, model: MultimodalT5) -> StepShardings:
        """How the sampler of `model` lies on the mesh (the sampler keeps one jitted function per
        layout, `models.generate._sharded_generate`)."""
        key = ("sampling", model)
        if key not in self._compiled:
            self._compiled[key] = StepShardings(self.param_layout(model), self.rows)
        return self._compiled[key]

    def sft_trainer(self, model: MultimodalT5, trainable=None):
        """(optimizer, jitted SFT step, train-state layout) for `model`; the learning rate and
        weight decay are set in the optimizer state by the phase (`set_hyperparams`).
        `trainable`: LoRA labels."""
        key = ("sft", model, trainable is not None)
        if key not in self._compiled:
            optimizer = adamw_host_scheduled()
            if trainable is not None:
                optimizer = optax.multi_transform({"adapter": optimizer, "frozen": optax.set_to_zero()}, trainable)
            layout = self._state_layout(self._logical(model), self._abstract(model), optimizer)
            step = make_sft_step(model, optimizer, shardings=StepShardings(layout, self.rows))
            self._compiled[key] = optimizer, step, layout
        return self._compiled[key]

    def rl_trainer(self):
        """(optimizer, jitted PPO step, jitted value-only warm-up step, jitted scoring pass,
        train-state layout) of the RL rounds."""
        if "rl" not in self._compiled:
            rl = self.config.rl
            optimizer = rl_optimizer(rl.learning_rate, rl.weight_decay, rl.value_learning_rate)
            models = {"policy": self.policy_model, "value": self.value_model}
            layout = self._state_layout(
                {name: self._logical(model) for name, model in models.items()},
                {name: self._abstract(model) for name, model in models.items()},
                optimizer,
            )
            ppo_step, value_step = (
                make_ppo_step(
                    self.policy_model,
                    self.value_model,
                    optimizer,
                    self.config.ppo,
                    StepShardings(layout, self.rows),
                    value_only=value_only,
                )
                for value_only in (False, True)
            )
            self._compiled["rl"] = (
                optimizer,
                ppo_step,
                value_step,
                make_scoring_fn(self.policy_model, self.value_model, StepShardings(layout.params, self.rows)),
                layout,
            )
        return self._compiled["rl"]

    # ---- metrics and files (process 0 writes them; every process may read them) ---------------

    @property
    def primary(self) -> bool:
        """This process writes the run's files and shows progress (process 0 of several)."""
        return is_primary()

    def write_json(self, relative: str, value) -> None:
        """`workdir/relative` as JSON, atomically, by process 0."""
        if self.primary:
            write_json_atomic(self.workdir / relative, value)

    def log_metrics(self, state: RunState, step: int, metrics: dict) -> None:
        """One line of `metrics.jsonl` (and TensorBoard scalars when tensorboardX is installed)."""
        if not self.primary:
            return
        phase = self.phase_names[state.phase_index]
        line = {
            "phase": phase,
            "step": step,
            "time": round(self.elapsed(state), 2),
            **{k: float(v) for k, v in metrics.items()},
        }
        with open(self.workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        if self._board is None:
            try:
                from tensorboardX import SummaryWriter

                self._board = SummaryWriter(str(self.workdir / "tensorboard"))
            except ImportError:
                self._board = False
        if self._board:
            for name, value in metrics.items():
                self._board.add_scalar(f"{phase}/{name}", float(value), step)

    def elapsed(self, state: RunState) -> float:
        """Seconds of the whole run, earlier processes included."""
        return state.seconds_before + time.perf_counter() - self.started

    def teacher_total(self, state: RunState) -> TeacherStats:
        """What the Teacher was asked over the whole run, earlier processes included."""
        return state.teacher_before.plus(self.teacher.stats)

    # ---- checkpoints ------------------------------------------------------------------------

    def save(self, state: RunState, train_state=None, kept: bool = False) -> None:
        """A checkpoint of the run where `state` is; `kept` (the end of an evaluation phase, with
        `checkpoint.keep_evaluated`): spared by the pruning to `checkpoint.keep`."""
        state.results["seconds"] = self.elapsed(state)
        items = state.models.named()
        if train_state is not None:
            items["train"] = train_state
        record = {
            "phase_index": state.phase_index,
            "phase": self.phase_names[min(state.phase_index, len(self.phase_names) - 1)],
            "step": state.step,
            "kl_coef": state.kl_coef,
            "results": state.results,
            "teacher": self.teacher_total(state).as_dict(),
            "config": to_dict(self.config),
        }
        self.checkpointer.save(items, record, kept=kept and self.config.checkpoint.keep_evaluated)

    def mark_position(self, state: RunState) -> None:
        """Where the loop is, for the line a lost process's peers print (`PeerWatch`)."""
        if self.watch is not None:
            finished = state.phase_index >= len(self.phase_names)
            phase = "the end" if finished else f"phase {self.phase_names[state.phase_index]}, step {state.step}"
            self.watch.position = phase

    def check_stop(self, state: RunState, train_state=None) -> None:
        """After a step: on SIGTERM/SIGINT (to any process), save and raise `Preempted`."""
        self.mark_position(state)
        if any_process(self.stop.requested):
            self.save(state, train_state)
            raise Preempted(f"stopped in phase {self.phase_names[state.phase_index]} at step {state.step}")

    def _model(self, name: str) -> MultimodalT5:
        return {
            "policy": self.policy_model,
            "reference": self.policy_model,
            "best": self.policy_model,
            "value": self.value_model,
            "answer": self.answer_model,
        }[name]

    def abstract_params(self, name: str):
        return self._abstract(self._model(name))

    def _restore_params(self, checkpointer: Checkpointer, name: str, number: int | None = None):
        """The params tree `name` of `checkpointer`'s checkpoint `number` (default: the latest),
        restored onto the mesh as the axis rules lay it out (with several processes, each reads
        only its devices' shards)."""
        placed = jax.tree_util.tree_map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
            self.abstract_params(name),
            self.param_layout(self._model(name)),
        )
        return checkpointer.restore(name, placed, number)

    def _changed_settings(self, record: dict) -> list[str]:
        """Dotted keys whose value in the config a checkpoint `record` was saved with differs from
        this run's (a key an older version did not save counts as its earlier behaviour)."""
        return _changed_keys(record["config"], to_dict(self.config), saved_config_defaults())

    def resume(self) -> RunState | None:
        """The state of the newest checkpoint in the work directory that restores (None when there
        is none); its models are restored, the phase's own train state is restored by the phase.
        A checkpoint that does not restore is set aside (`set_aside`) and the next older tried."""
        while (number := self.checkpointer.latest_number()) is not None:
            try:
                return self._resume_from(number)
            except CheckpointUnreadable as damaged:
                self.set_aside(damaged)
        return None

    def _resume_from(self, number: int) -> RunState:
        self.checkpointer.verify(number)  # every file there and whole, before anything is read
        record = self.checkpointer.record(number)
        changed = [k for k in self._changed_settings(record) if not _within(k, RESUMABLE_CHANGES)]
        if changed:
            raise ConfigError(
                f"{self.workdir} holds a run with other settings ({', '.join(changed)}); resume it with the "
                "settings it was started with, or choose a new workdir"
            )
        names = [n for n in record["trees"] if n != "train"]
        models = Models(**{name: self._restore_params(self.checkpointer, name, number) for name in names})
        if record["phase_index"] >= len(self.phase_names):
            self.log(f"{self.workdir} holds a finished run: rebuilding its report")
        else:
            self.log(f"resuming {self.workdir}: phase {record['phase']} (step {record['step']})")
        return RunState(
            phase_index=record["phase_index"],
            step=record["step"],
            kl_coef=record["kl_coef"],
            results=record["results"],
            models=models,
            teacher_before=TeacherStats(**record["teacher"]),
            seconds_before=record["results"].get("seconds", 0.0),
        )

    def set_aside(self, damaged: CheckpointUnreadable) -> None:
        """After checkpoint `damaged.number` of this run failed to restore: renamed to
        `<number>.corrupt` (nothing is deleted) with one line, so that the next older one is the
        latest; when no older one is left, `NoCheckpointRestores` and nothing is moved."""
        older = [number for number in self.checkpointer.numbers() if number < damaged.number]
        if not older:
            raise NoCheckpointRestores(
                f"{damaged}, and no older checkpoint is left to try. Nothing was deleted; to start this run "
                f"again from the beginning (the Teacher cache keeps every reply), move "
                f"{self.checkpointer.directory} aside"
            )
        target = on_primary(lambda: str(self.checkpointer.set_aside(damaged.number)))
        self.checkpointer.reload()  # the other processes see the rename too
        self.log(f"{damaged}: set aside as {target}; trying checkpoint {older[-1]}")

    def start_from_baseline(self, source: Path, phases: int) -> RunState:
        """A fresh run's state from `source`, the workdir of a finished baseline-only run
        (rounds=0) made with this run's baseline settings: its rationale and answer models, its
        baseline evaluation (results and eval/baseline.json) and SFT curves. The run goes on at
        phase `phases` (saved at once, so a resume never needs `source` again); nothing in
        `source` is written. The baseline's time and Teacher requests stay `source`'s."""
        if not (source / "checkpoints").is_dir():
            raise ConfigError(
                f"baseline_from: {source} holds no checkpoints; run the baseline there first "
                f"(rounds=0 workdir={source})"
            )
        reader = Checkpointer(source / "checkpoints", keep=1, read_only=True)
        try:
            if reader.latest_number() is not None:
                reader.verify(reader.latest_number())
            record = reader.latest_record()
            if record is None or record["config"].get("rounds") != 0 or record["phase_index"] < phases:
                raise ConfigError(
                    f"baseline_from: {source} is not a finished baseline-only run (rounds=0, its baseline evaluated)"
                )
            changed = [k for k in self._changed_settings(record) if _within(k, BASELINE_SETTINGS)]
            if changed:
                raise ConfigError(
                    f"baseline_from: {source}'s baseline was made with other settings "
                    f"({', '.join(changed)}); use the same ones or train this run's own baseline"
                )
            models = Models(**{name: self._restore_params(reader, name) for name in ("policy", "answer")})
        except CheckpointUnreadable as damaged:
            raise ConfigError(f"baseline_from: {damaged}") from None
        finally:
            reader.close()
        earlier = record["results"]
        self.write_json("eval/baseline.json", json.loads((source / "eval" / "baseline.json").read_text()))
        results = RunState().results
        results["evaluations"]["baseline"] = earlier["evaluations"]["baseline"]
        results["curves"] = {
            name: points
            for name, points in earlier["curves"].items()
            if name.split("/")[0] in self.phase_names[:phases]
        }
        results["baseline_from"] = str(source.absolute())
        state = RunState(phase_index=phases, kl_coef=self.config.ppo.kl_coef, results=results, models=models)
        self.save(state, kept=True)  # the baseline's models, as after its evaluation
        self.log(f"baseline from {source} (accuracy {results['evaluations']['baseline']['answer_accuracy']:.3f})")
        return state

    def close(self) -> None:
        """Finish pending writes (checkpoints, TensorBoard events), then free the work directory."""
        try:
            self.checkpointer.close()
            if self._board:
                self._board.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def restore_train(self, state: RunState, fresh_train_state):
        """The phase's train state: from the checkpoint when the phase was under way, else fresh.
        The checkpoint read is the one `resume` chose (every newer one was set aside); when this
        part of it does not restore, `CheckpointUnreadable` goes up to `run`, which resumes again."""
        if state.step == 0:
            return fresh_train_state
        return self.checkpointer.restore("train", abstract_like(fresh_train_state))


def copy_tree(tree):
    """A copy with its own buffers (the jitted steps donate theirs)."""
    return jax.tree_util.tree_map(jnp.copy, tree)

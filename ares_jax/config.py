"""The run's configuration: one typed dataclass tree, YAML files and `key=value` overrides.

`load_config(path, overrides)` starts from the defaults below, applies the YAML file (if any),
then each dotted override (`rationale.steps=400`), checking every key and value against the
tree: an unknown key or a value of the wrong type stops the run with a message naming the key
and what is allowed. Range checks live in each section's `__post_init__`.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from ares_jax.data.shapes.task import ShapesTaskConfig
from ares_jax.parallel.rules import parse_axis_rules
from ares_jax.rl.config import PPOConfig


class ConfigError(ValueError):
    """A bad configuration key or value; the message names the key."""


class _FieldError(ConfigError):
    """A range error of one field; `_build` puts the section's path in front of it."""


def _positive(obj, *names):
    for name in names:
        if getattr(obj, name) <= 0:
            raise _FieldError(f"{name} must be positive, got {getattr(obj, name)}")


DATA_SOURCES = ("shapes", "scienceqa", "aokvqa", "hf", "tfds")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the problems come from (`ares_jax/data/load.py`).

    source: `shapes` the built-in task (generated, no download); `scienceqa` the official layout
      in `path` (problems.json, pid_splits.json); `aokvqa` A-OKVQA in `path`, MM-CoT's
      problems.json style or allenai's aokvqa_v1p0_<split>.json (COCO 2017 folder in `images`);
      `hf` the HF parquet layout (a local folder or a hub name in `path`); `tfds` a TFDS builder
      named in `path`. File paths are relative to the working directory.
    """

    source: str = "shapes"
    path: str = ""
    train_split: str = "train"  # a pid_splits.json key (train, minitrain, ...) or the source's split
    test_split: str = "test"
    val_split: str = "val"  # held-out questions the RL rounds are measured on (rl.eval_every); '' for none
    captions: str = ""  # {"captions": {qid: text}}; the caption joins the hint in the context
    images: str = ""  # the image folder (ScienceQA's images/, COCO 2017 for A-OKVQA), for the Teachers
    features: str = ""  # precomputed image features .npy [N, P, F], the model's image input
    name_map: str = ""  # question id -> feature row; default: name_map.json beside `features`
    skip_bad_records: bool = False  # warn and count bad records instead of stopping
    tfds_data_dir: str = ""
    tfds_fields: tuple[str, ...] = ()  # FIELD=FEATURE pairs, e.g. question=question_text
    shapes: ShapesTaskConfig = dataclasses.field(
        default_factory=lambda: ShapesTaskConfig(train_size=4000, val_size=1000, test_size=500, gold_share=0.75)
    )
    vocab_size: int = 600  # of the BPE tokenizer built from the training corpus
    # the first N training problems keep their gold rationale for the SFT stages (0: the source's
    # own: all of them, or the built-in task's `shapes.gold_share`); RL and the corrections ask
    # about every training question (the Teacher needs only the answer)
    gold_rationales: int = 0

    def __post_init__(self):
        if self.source not in DATA_SOURCES:
            raise _FieldError(f"source must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.source != "shapes" and not self.path:
            raise _FieldError(f"path must name the {self.source} data (data.path=...)")
        if self.features.endswith((".pth", ".pt")):
            raise _FieldError(
                f"features: {self.features} is a PyTorch file; convert it to .npy once "
                f"(see configs/scienceqa_base.yaml)"
            )
        _positive(self, "vocab_size")
        if self.gold_rationales < 0:
            raise _FieldError(f"gold_rationales must be 0 (the source's own) or positive, got {self.gold_rationales}")


def gold_count(source: str, gold_rationales: int, train_size: int, shapes_gold_share: float = 1.0) -> int:
    """How many of the first training problems keep their gold rationale for the SFT stages:
    `data.gold_rationales`, or with 0 the source's own, i.e. all `train_size` of them, or on the
    built-in task its `data.shapes.gold_share` (at least one)."""
    if gold_rationales:
        return gold_rationales
    return max(1, int(train_size * shapes_gold_share)) if source == "shapes" else train_size


# Keys added since runs were first saved whose default is not what those runs did: a saved config
# or report without one is read with the value here (the built-in task had every gold rationale
# until `data.shapes.gold_share`), so a run or baseline made before is not taken for one made after.
EARLIER_BEHAVIOUR = {"data": {"shapes": {"gold_share": 1.0}}}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A multimodal T5 from random initialisation.

    image_input: "features" gives the model frozen per-cell features measured from the pixels
    (as MM-CoT uses frozen ViT/DETR features); "pixels" trains the small ViT end to end (slower
    to learn on a CPU budget).
    """

    image_input: str = "features"
    dtype: str = "float32"  # compute dtype of activations and matmuls (bfloat16 on TPU/GPU); params stay float32
    pretrained: str = ""  # a HF T5 / MM-CoT folder to start from; the sizes below are then its own
    d_model: int = 64
    num_heads: int = 4
    d_ff: int = 256
    num_layers: int = 2
    num_decoder_layers: int = 2
    dropout_rate: float = 0.0
    vit_layers: int = 1
    patch_size: int = 16
    max_source_length: int = 80
    max_target_length: int = 64
    max_answer_source_length: int = 144

    def __post_init__(self):
        _positive(
            self,
            "d_model",
            "num_heads",
            "d_ff",
            "num_layers",
            "num_decoder_layers",
            "patch_size",
            "max_source_length",
            "max_target_length",
            "max_answer_source_length",
        )
        if self.image_input not in ("features", "pixels"):
            raise _FieldError(f"image_input must be 'features' or 'pixels', got {self.image_input!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise _FieldError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.d_model % self.num_heads:
            raise _FieldError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise _FieldError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01

    def __post_init__(self):
        _positive(self, "steps", "batch_size", "learning_rate")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise _FieldError("warmup_steps and weight_decay must be >= 0")
        if self.warmup_steps >= self.steps:
            raise _FieldError(f"warmup_steps ({self.warmup_steps}) must be less than steps ({self.steps})")


@dataclasses.dataclass(frozen=True)
class RationaleConfig(SFTConfig):
    """The baseline's rationale SFT (question + image -> gold rationale). A curriculum: its first
    `first_steps` steps train only on problems whose kind (the built-in task's question kind) is
    in `first_kinds`, the rest on all; e.g. count questions first, whose listings teach the
    model to read the cells before the five-kind mixture."""

    steps: int = 2000
    first_kinds: tuple[str, ...] = ()
    first_steps: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.first_steps < 0 or self.first_steps >= self.steps:
            raise _FieldError(f"first_steps must be in [0, steps ({self.steps})), got {self.first_steps}")
        if bool(self.first_kinds) != bool(self.first_steps):
            raise _FieldError("first_kinds and first_steps go together: give both (a curriculum) or neither")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """A low-rank adapter on the rationale model's dense kernels named in `targets` (T5 names:
    q, k, v, o, wi, wo, wi_0, wi_1), instead of a full copy for the answer model. The paper:
    rank 64, alpha 128, dropout 0.05 on q and v."""

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q", "v")

    def __post_init__(self):
        _positive(self, "rank", "alpha")
        if not 0.0 <= self.dropout < 1.0:
            raise _FieldError(f"dropout must be in [0, 1), got {self.dropout}")
        allowed = ("q", "k", "v", "o", "wi", "wo", "wi_0", "wi_1")
        if not self.targets or any(t not in allowed for t in self.targets):
            raise _FieldError(f"targets must be a non-empty list of {allowed}, got {list(self.targets)}")


@dataclasses.dataclass(frozen=True)
class AnswerConfig(SFTConfig):
    """The answer stage (question + rationale -> answer): a full model, or a LoRA adapter on the
    baseline rationale model."""

    steps: int = 200
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)


KEEP_BEST = ("", "sentence_score", "accuracy")  # rl.keep_best: by which validation measure


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """The rollouts of one RL round (the PPO math is the `ppo` section). Each round samples
    `k_samples` rationales for `questions_per_round` training questions, `prompts_per_rollout`
    questions at a time; each rollout buffer gets `epochs` PPO passes in minibatches."""

    questions_per_round: int = 256
    prompts_per_rollout: int = 64
    k_samples: int = 4
    top_k: int = 50
    temperature: float = 1.0
    epochs: int = 4
    minibatch_size: int = 64
    learning_rate: float = 1e-4  # 3e-4 drifts within two rollout batches (README: "Why RL did not learn")
    # The value model's own learning rate, with its own AdamW and gradient clip (None: one optimizer
    # over policy and value at learning_rate, their gradients clipped together: the method's).
    value_learning_rate: float | None = None
    weight_decay: float = 0.01
    kl_target: float = 0.0  # > 0: adapt ppo.kl_coef toward this KL (per token); 0: fixed
    kl_horizon: int = 10000
    # Greedy rationales on `val_questions` of data.val_split (0: all), scored by the Teacher, at the
    # start of each round and every `eval_every` rollout batches (0: at the start and end only).
    eval_every: int = 2
    val_questions: int = 0
    # The first rollout batches of the first round (whose value model is the policy's trunk with a
    # fresh head) train only the value model: a fresh head's values would otherwise be most of the
    # first advantages. They count in the round's batches, and leave the policy at least one.
    # Not with ppo.advantage=group, whose advantages do not read the value model.
    value_warmup_batches: int = 2
    # Model selection on the validation split: each round ends with its policy at the greedy
    # validation point (every `eval_every` batches, the start included) that is best by this
    # measure, 'sentence_score' or 'accuracy'; '' ends with the last policy (the paper's method).
    # It holds one more copy of the policy's parameters, in memory and in the round's checkpoints.
    keep_best: str = ""
    # RL's questions from the first `question_pool` training problems only (0: all); a round that
    # asks for more questions than the pool holds comes back to each of them.
    question_pool: int = 0
    # At every validation point, the same greedy measures on the first `seen_questions` of the
    # round's own rollout questions too (curves `<round>/seen_*`): next to `val_*`, what RL learnt
    # on the questions it trained on against what carries to new ones.
    seen_questions: int = 0

    @property
    def optimizer_steps(self) -> int:
        """PPO optimizer steps of one round: rollout batches x epochs x minibatches per buffer."""
        return (
            (self.questions_per_round // self.prompts_per_rollout)
            * self.epochs
            * (self.prompts_per_rollout * self.k_samples // self.minibatch_size)
        )

    def __post_init__(self):
        _positive(
            self,
            "questions_per_round",
            "prompts_per_rollout",
            "k_samples",
            "top_k",
            "temperature",
            "epochs",
            "minibatch_size",
            "learning_rate",
            "kl_horizon",
        )
        if self.value_learning_rate is not None and self.value_learning_rate <= 0:
            raise _FieldError(f"value_learning_rate must be positive or null, got {self.value_learning_rate}")
        counts = (
            self.eval_every,
            self.val_questions,
            self.value_warmup_batches,
            self.question_pool,
            self.seen_questions,
        )
        if min(self.weight_decay, self.kl_target, *counts) < 0:
            raise _FieldError(
                "weight_decay, kl_target, eval_every, val_questions, value_warmup_batches, question_pool "
                "and seen_questions must be >= 0"
            )
        if self.seen_questions > min(self.questions_per_round, self.question_pool or self.questions_per_round):
            raise _FieldError(
                f"seen_questions ({self.seen_questions}) must be at most the questions a round rolls out: "
                f"questions_per_round ({self.questions_per_round}) and question_pool ({self.question_pool}, 0: all)"
            )
        if self.keep_best not in KEEP_BEST:
            raise _FieldError(f"keep_best must be one of {KEEP_BEST}, got {self.keep_best!r}")
        if self.questions_per_round % self.prompts_per_rollout:
            raise _FieldError(
                f"questions_per_round ({self.questions_per_round}) must be a multiple of "
                f"prompts_per_rollout ({self.prompts_per_rollout}): rollout batches have one shape"
            )
        if (self.prompts_per_rollout * self.k_samples) % self.minibatch_size:
            raise _FieldError(
                f"minibatch_size ({self.minibatch_size}) must divide prompts_per_rollout x k_samples "
                f"({self.prompts_per_rollout * self.k_samples})"
            )


CORRECTION_POOLS = ("all", "answer_only")  # correction.pool


@dataclasses.dataclass(frozen=True)
class CorrectionConfig(SFTConfig):
    """After each RL round: the RL-tuned model writes rationales for `questions` training
    questions, exact repeated sentences are removed, the Teacher corrects them, and the model
    is fine-tuned on the corrections (the SFT settings inherited here), mixed with the gold
    rationales of `gold_questions` other draws of training questions (0: corrections only)."""

    questions: int = 2000  # half the built-in task's training questions (about half its answer-only ones)
    # which training questions are corrected: any ("all"), or only those without a gold rationale
    # the SFT stages learn ("answer_only": where the Teacher knows what the gold data lacks)
    pool: str = "all"
    gold_questions: int = 0
    steps: int = 200  # 3.2 passes over 2,000 corrections at batch 32 (100 and 400 gain less: finding 27)
    learning_rate: float = 1e-3
    warmup_steps: int = 10

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "questions")
        if self.pool not in CORRECTION_POOLS:
            raise _FieldError(f"pool must be one of {CORRECTION_POOLS}, got {self.pool!r}")
        if self.gold_questions < 0:
            raise _FieldError(f"gold_questions must be 0 or more, got {self.gold_questions}")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints (orbax) at the end of every phase and every `every_steps` optimizer steps
    inside one; the last `keep` are kept, and with `keep_evaluated` also the one after each
    evaluation (the models of the report's columns, which export and predict `phase=` read)."""

    every_steps: int = 100
    keep: int = 3
    keep_evaluated: bool = True

    def __post_init__(self):
        _positive(self, "every_steps", "keep")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 100
    max_new_tokens: int = 64

    def __post_init__(self):
        _positive(self, "batch_size", "max_new_tokens")


TEACHER_BACKENDS = ("rule", "openai", "anthropic")
RULE_LISTING_CREDITS = ("exact", "overlap")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """Who gives the AI feedback. `rule` is the offline Teacher of the built-in task; `openai`
    also serves OpenAI-compatible servers (vLLM, Ollama, llama.cpp) through `base_url`. The key
    is read from the environment variable `api_key_env` (default OPENAI_API_KEY /
    ANTHROPIC_API_KEY), never from a file. Prices are USD per million tokens, for the cost
    shown in metrics and the `max_cost_usd` cap (0: no cap)."""

    backend: str = "rule"
    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 60.0
    concurrency: int = 8
    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0
    max_retries: int = 6
    backoff_s: float = 1.0  # the first retry's wait; doubles each retry (with jitter), up to max_backoff_s
    max_backoff_s: float = 60.0
    max_repairs: int = 2
    max_requests: int = 0
    max_cost_usd: float = 0.0
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    # the rule Teacher's score of a listing of cells that is partly right: exact (0.0, the
    # default) | overlap (the share that is right, Jaccard, in steps of 0.1)
    rule_listing_credit: str = "exact"

    def __post_init__(self):
        if self.backend not in TEACHER_BACKENDS:
            raise _FieldError(f"backend must be one of {TEACHER_BACKENDS}, got {self.backend!r}")
        if self.rule_listing_credit not in RULE_LISTING_CREDITS:
            raise _FieldError(
                f"rule_listing_credit must be one of {RULE_LISTING_CREDITS}, got {self.rule_listing_credit!r}"
            )
        if self.backend != "rule" and not self.model:
            raise _FieldError(f"model must name the {self.backend} model (e.g. teacher.model=claude-3-haiku-20240307)")
        _positive(self, "timeout_s", "concurrency")
        for name in (
            "requests_per_minute",
            "tokens_per_minute",
            "max_retries",
            "backoff_s",
            "max_backoff_s",
            "max_repairs",
            "max_requests",
            "max_cost_usd",
            "price_input_per_mtok",
            "price_output_per_mtok",
        ):
            if getattr(self, name) < 0:
                raise _FieldError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The device mesh (`ares_jax/parallel/`): the sizes of its axes (-1: the devices the others
    leave) and the rules laying each logical axis of the parameters and batches on mesh axes,
    `LOGICAL=AXIS[+AXIS]` (empty: not split), MaxText style."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    axis_rules: tuple[str, ...] = (
        "batch=data+fsdp",
        "vocab=tensor",
        "embed=fsdp",
        "mlp=tensor",
        "heads=tensor",
        "kv=",
        "joined_kv=tensor",
        "relpos_buckets=",
        "image_features=",
        "fusion_in=",
    )
    # A parameter dimension that the mesh axes of its logical axis do not divide is an error at
    # start-up (naming the parameter); true: keep such dimensions whole (replicated) instead.
    allow_replicated: bool = False

    def __post_init__(self):
        for name in ("data", "fsdp", "tensor"):
            if getattr(self, name) == 0 or getattr(self, name) < -1:
                raise _FieldError(f"{name} must be positive or -1 (the rest), got {getattr(self, name)}")
        if [self.data, self.fsdp, self.tensor].count(-1) > 1:
            raise _FieldError("data, fsdp, tensor: at most one may be -1")
        try:
            parse_axis_rules(self.axis_rules)
        except ValueError as error:
            raise _FieldError(str(error).removeprefix("mesh.")) from None


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Several processes in one run (`ares_jax/parallel/multihost.py`): on a TPU pod set `enabled`
    on every worker and JAX finds its peers (launch_tpu.sh does this); elsewhere name the
    coordinator (host:port of process 0), the number of processes and this one's id. Process 0
    alone asks the Teacher and writes the run's files; the work directory must be a folder
    every host shares. A process that stops answering for `lost_process_timeout_s` seconds
    stops the others, in one line each (`PeerWatch`)."""

    enabled: bool = False
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1
    lost_process_timeout_s: float = 60.0

    def __post_init__(self):
        _positive(self, "lost_process_timeout_s")
        if self.coordinator_address and not self.enabled:
            raise _FieldError("coordinator_address is given but enabled is false")
        if self.coordinator_address and not 0 <= self.process_id < self.num_processes:
            raise _FieldError(
                f"process_id ({self.process_id}) must be in 0 .. num_processes - 1 (num_processes "
                f"{self.num_processes}) when coordinator_address is given"
            )


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """`jax.profiler` trace of the core PPO steps `steps=[start, stop)` (optimizer steps of the RL
    rounds, counted from 0 in each process) into `workdir/profile`; empty: no trace."""

    steps: tuple[int, ...] = ()

    def __post_init__(self):
        if self.steps and (len(self.steps) != 2 or not 0 <= self.steps[0] < self.steps[1]):
            raise _FieldError(f"steps must be [start, stop] with 0 <= start < stop, got {list(self.steps)}")


METHODS = ("ares", "rl_only", "sft_more")


@dataclasses.dataclass(frozen=True)
class Config:
    """The run. After the baseline, `rounds` rounds of `method`:
      ares      RL with the Teacher's sentence scores -> Teacher corrections -> SFT on them
      rl_only   the RL alone (the paper's ablation: RL without the correction SFT)
      sft_more  the control: as many SFT steps on gold rationales as an ARES round takes
                (rl.optimizer_steps + correction.steps, with correction's SFT settings)
    `baseline_from`: the workdir of a finished baseline-only run (rounds=0) with the same seed,
    data, model, rationale, answer and Teacher; this run starts from its models and evaluation
    instead of training its own (ablations on one baseline, as `experiments/reproduce.py`)."""

    seed: int = 0
    workdir: str = "runs/default"
    method: str = "ares"
    baseline_from: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    rationale: RationaleConfig = dataclasses.field(default_factory=RationaleConfig)
    answer: AnswerConfig = dataclasses.field(default_factory=AnswerConfig)
    rounds: int = 2  # of `method` (ares: RL -> correction -> SFT)
    rl: RLConfig = dataclasses.field(default_factory=RLConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    correction: CorrectionConfig = dataclasses.field(default_factory=CorrectionConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    profile: ProfileConfig = dataclasses.field(default_factory=ProfileConfig)

    @property
    def steps_per_round(self) -> int:
        """Optimizer steps of one round of `method`: its PPO steps, plus the correction SFT's for
        ares; sft_more takes as many as an ares round."""
        if self.method == "rl_only":
            return self.rl.optimizer_steps
        return self.rl.optimizer_steps + self.correction.steps

    def __post_init__(self):
        if self.rounds < 0:
            raise _FieldError(f"rounds must be >= 0, got {self.rounds}")
        if self.method not in METHODS:
            raise _FieldError(f"method must be one of {METHODS}, got {self.method!r}")


# ---- building a tree from dicts, with checks -------------------------------------------------


def _type_name(tp) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp, value):
    """`value` as type `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key} is a section; give its keys ({', '.join(f.name for f in dataclasses.fields(tp))})"
            )
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(key, option, value)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{key}: {value!r} is not {' or '.join(_type_name(t) for t in typing.get_args(tp))}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(key, item, v) for v in value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key} must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; {prefix or 'the top level'} has: {', '.join(sorted(names))}"
        )
    defaults = cls()
    kwargs = {}
    for name in names:
        key = f"{prefix}.{name}" if prefix else name
        if name in values:
            if dataclasses.is_dataclass(hints[name]) and isinstance(values[name], dict):
                merged = dict(_as_dict(getattr(defaults, name)), **values[name])
                kwargs[name] = _coerce(key, hints[name], merged)
            else:
                kwargs[name] = _coerce(key, hints[name], values[name])
    try:
        return cls(**kwargs)
    except _FieldError as error:
        raise ConfigError(f"{prefix}.{error}" if prefix else str(error)) from None
    except ValueError as error:  # a section's own range check (e.g. ShapesTaskConfig)
        raise ConfigError(str(error)) from None


def _as_dict(obj) -> dict:
    """A section's values as a dict, nested sections as dicts too (to merge overrides into)."""
    return {
        f.name: _as_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v
        for f in dataclasses.fields(obj)
    }


def to_dict(config) -> dict:
    """Plain nested dict of a config (tuples as lists), for YAML/JSON."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(config)


def _set_dotted(tree: dict, dotted: str, value: Any):
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is a value, not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file at `path`, then `key=value` overrides (dotted keys)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(loaded).__name__}")
        tree = loaded
    return config_from_dict(tree, overrides)


def config_from_dict(values: dict, overrides: Sequence[str] = ()) -> Config:
    """The config a plain nested dict holds (a report's `config`, `to_dict`'s output), then
    `key=value` overrides (dotted keys), checked like a YAML file's."""
    tree = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return _build(Config, tree)


def load_config_args(args: list[str]) -> Config:
    """The config a command line names: `config=FILE.yaml` (optional) and `key=value` overrides."""
    files = [a.split("=", 1)[1] for a in args if a.startswith("config=")]
    return load_config(files[-1] if files else None, [a for a in args if not a.startswith("config=")])


def describe_keys(config=None, prefix: str = "") -> list[str]:
    """`key = default` lines of every leaf key, for `--help`."""
    config = Config() if config is None else config
    lines = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            lines += describe_keys(value, key + ".")
        else:
            lines.append(f"{key} = {value!r}")
    return lines

"""`python -m ares_jax.export workdir=DIR out=FOLDER [model=policy|answer] [phase=LABEL] [overwrite=true]`

Writes a trained model of a run as a HF T5 folder: `config.json`, `model.safetensors` (HF's T5
names, MM-CoT's for the image fusion, `ares_jax.*` for the parts neither has) and the run's
tokenizer files. `model=policy` (default) is the rationale model, `model=answer` the answer
model (LoRA adapters merged into their kernels). `phase=LABEL` picks the models as a finished
phase left them (a phase name such as `sft_1`, or an evaluation's label such as `baseline`);
default: the last finished phase. The models after each evaluation are kept for this
(`checkpoint.keep_evaluated`); other phases while their checkpoint is among the last
`checkpoint.keep`. `ares_jax.models.load_pretrained(FOLDER)` reads the folder back bit for bit
(so does `model.pretrained=FOLDER`); HF's `T5ForConditionalGeneration.from_pretrained(FOLDER)`
loads its text part. Nothing is written into the work directory.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

OPTIONS = {"workdir": "", "out": "", "model": "policy", "phase": "", "overwrite": "false"}


class ExportError(Exception):
    """Bad input to the export: the message names the folder, phase or option."""


def parse_options(argv: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """`key=value` arguments over `defaults`; an unknown key or a missing `=` is an error."""
    options = dict(defaults)
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key not in defaults:
            raise ExportError(f"unknown option {argument!r}; options: {', '.join(f'{k}=' for k in defaults)}")
        options[key] = value
    return options


def flag(options: dict[str, str], name: str) -> bool:
    """The option `name` as a bool (`true` or `false`)."""
    if options[name] not in ("true", "false"):
        raise ExportError(f"{name}={options[name]}: must be true or false")
    return options[name] == "true"


def finished_phases(workdir: Path):
    """(the run's config, {finished phase name: checkpoint number}) of the kept checkpoints that
    end a phase, oldest first. Raises `ExportError` when there is none."""
    from ares_jax.checkpoint import Checkpointer, CheckpointUnreadable
    from ares_jax.config import config_from_dict
    from ares_jax.loop.run import plan

    if not (workdir / "checkpoints").is_dir():
        raise ExportError(f"{workdir} holds no checkpoints (not a run's work directory?)")
    reader = Checkpointer(workdir / "checkpoints", keep=1, read_only=True)
    try:
        records = {}
        for number in reader.numbers():
            try:
                records[number] = reader.record(number)
            except CheckpointUnreadable:
                continue
    finally:
        reader.close()
    if not records:
        raise ExportError(f"{workdir} has no finished phase yet")
    config = config_from_dict(records[max(records)]["config"])  # one run: every record holds its settings
    names = [name for name, _ in plan(config)]
    # a run made by an older version may have saved past today's plan (rounds=0 once ended in a
    # comparison phase): such a record names no phase of the plan
    ends = {
        number: record
        for number, record in records.items()
        if record["step"] == 0 and 0 < record["phase_index"] <= len(names)
    }
    if not ends:
        raise ExportError(f"{workdir} has no finished phase yet")
    return config, {names[record["phase_index"] - 1]: number for number, record in ends.items()}


def choose_phase(phases: dict[str, int], label: str) -> tuple[str, int]:
    """The phase `label` names (a phase name, or `X` for the evaluation phase `eval_X`), or the
    last finished one when `label` is empty."""
    if not label:
        name = list(phases)[-1]
        return name, phases[name]
    for name, number in phases.items():
        if label in (name, name.removeprefix("eval_")):
            return name, number
    raise ExportError(f"phase={label}: not a finished phase whose checkpoint is kept; these are: {', '.join(phases)}")


def restore_models(workdir: Path, config, number: int, roles: Sequence[str]) -> dict:
    """{role: (model, float32 params)} for each of `roles` (policy, answer) in checkpoint `number`,
    on one device (a LoRA answer model with its adapters: `merged` folds them in). The models are
    built once, as the run built them (its data and settings)."""
    import jax

    from ares_jax.checkpoint import Checkpointer
    from ares_jax.data.load import load_split
    from ares_jax.loop.generation import build_models
    from ares_jax.models import init_params

    train = load_split(config.data, config.data.train_split, log=lambda message: None)
    _, policy_model, answer_model, _ = build_models(config, train)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    reader = Checkpointer(workdir / "checkpoints", keep=1, read_only=True)
    restored = {}
    try:
        for role in roles:
            model = policy_model if role == "policy" else answer_model
            abstract = jax.tree_util.tree_map(
                lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                jax.eval_shape(lambda model=model: init_params(model, jax.random.key(0))),
            )
            restored[role] = model, reader.restore(role, abstract, number)
    finally:
        reader.close()
    return restored


def merged(model, params):
    """A LoRA model's (model, params) as a plain model: each adapted kernel `W + (alpha/rank) A B`."""
    from ares_jax.models import MultimodalT5
    from ares_jax.models.lora import merge_adapters

    c = model.config
    if not c.lora_rank:
        return model, params
    plain = dataclasses.replace(c, lora_rank=0, lora_alpha=1.0, lora_dropout=0.0, lora_targets=())
    return MultimodalT5(plain), merge_adapters(params, c.lora_alpha, c.lora_rank)


def export(workdir: Path, out: Path, role: str = "policy", phase: str = "", overwrite: bool = False) -> str:
    """Writes the HF folder `out`; returns the exported phase's name."""
    from ares_jax.models import save_pretrained
    from ares_jax.text.tokenizer import Tokenizer

    if role not in ("policy", "answer"):
        raise ExportError(f"model={role}: must be policy or answer")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"out={out} exists and is not empty; choose another folder or add overwrite=true")
    config, phases = finished_phases(workdir)
    name, number = choose_phase(phases, phase)
    model, params = merged(*restore_models(workdir, config, number, [role])[role])
    tokenizer = Tokenizer.from_folder(workdir / "tokenizer")
    # Written beside `out`, then moved into place: an existing folder is replaced whole or not at all.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_pretrained(staging, model.config, params)
        tokenizer.save(staging)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        options = parse_options(argv, OPTIONS)
        if not options["workdir"] or not options["out"]:
            raise ExportError("workdir=DIR and out=FOLDER are required")
        workdir, out = Path(options["workdir"]), Path(options["out"])
        name = export(workdir, out, options["model"], options["phase"], flag(options, "overwrite"))
    except ExportError as error:
        print(f"ares_jax.export: {error}", file=sys.stderr)
        return 2
    print(f"exported the {options['model']} model after phase {name} of {workdir} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

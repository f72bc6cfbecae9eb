"""`python -m ares_jax.predict workdir=DIR [phase=LABEL] [split=NAME] out=FILE.jsonl [key=value ...]`
or `python -m ares_jax.predict pretrained=FOLDER [answer_pretrained=FOLDER] [split=NAME] out=FILE.jsonl ...`

Rationales and answers for every problem of a split, written one JSON object per line to `out`
(`id`, `rationale`, `answer` index and letter, the gold answer and whether it was right), and
the metrics (accuracy overall and by kind, ROUGE-L against the gold rationales, fluency
defects, ScienceQA's category table or A-OKVQA's accuracies for their data) printed and written
to `<out>.metrics.json`.

The models: a run's rationale and answer models as a finished phase left them (`phase=`, as
for `ares_jax.export`; default the last finished phase), or exported folders (`pretrained=`
the rationale model, `answer_pretrained=` the answer model, default the same folder). `split=`
any split of the data (default the run's test split). The run's data settings are the
defaults; `data.*`, `eval.*`, `mesh.*` and `teacher.*` keys change them (other data, batch
size, mesh), with the run's checks and bad-data errors. `score=true` asks the Teacher the run
names for sentence scores (its cache: `<out>.teacher_cache.sqlite`). Batched, greedy, on the
mesh, with a progress bar. Nothing is written into the work directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ares_jax.export import ExportError, choose_phase, finished_phases, flag, parse_options, restore_models

OPTIONS = {
    "workdir": "",
    "pretrained": "",
    "answer_pretrained": "",
    "phase": "",
    "split": "",
    "out": "",
    "score": "false",
    "overwrite": "false",
}
SETTINGS = ("data.", "eval.", "mesh.", "teacher.")  # the run settings predict may change


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(predict's own options, run settings); a training setting is an error."""
    own, settings = [], []
    for argument in argv:
        key = argument.partition("=")[0]
        if key.startswith(SETTINGS):
            settings.append(argument)
        elif "." in key:
            raise ExportError(f"{key}: predict takes only {', '.join(s + '*' for s in SETTINGS)} settings")
        else:
            own.append(argument)
    return own, settings


def load_models(options: dict, settings: list[str]):
    """(config, tokenizer, (rationale model, params), (answer model, params), what they are)."""
    from ares_jax.config import Config, config_from_dict, to_dict
    from ares_jax.models import load_pretrained
    from ares_jax.text.tokenizer import Tokenizer

    if bool(options["workdir"]) == bool(options["pretrained"]):
        raise ExportError("name the models: workdir=DIR (a run) or pretrained=FOLDER (an exported model), one of them")
    if options["workdir"]:
        workdir = Path(options["workdir"])
        saved, phases = finished_phases(workdir)
        name, number = choose_phase(phases, options["phase"])
        config = config_from_dict(to_dict(saved), settings)
        models = restore_models(workdir, saved, number, ["policy", "answer"])
        tokenizer = Tokenizer.from_folder(workdir / "tokenizer")
        return config, tokenizer, models["policy"], models["answer"], f"{workdir}, phase {name}"
    config = config_from_dict(to_dict(Config()), settings)
    folders = [Path(options["pretrained"]), Path(options["answer_pretrained"] or options["pretrained"])]
    models = []
    for folder in folders:
        try:
            models.append(load_pretrained(folder))
        except (OSError, ValueError) as error:
            raise ExportError(f"{folder} is not a T5 folder ({error})") from None
    try:
        tokenizer = Tokenizer.from_folder(folders[0])
    except (OSError, ValueError) as error:
        raise ExportError(f"{folders[0]}: no tokenizer ({error})") from None
    return config, tokenizer, models[0], models[1], " and ".join(dict.fromkeys(map(str, folders)))


def predict(argv: list[str], log=print) -> dict:
    """Runs the models on the split; writes `out` and its metrics; returns the metrics."""
    import jax

    from ares_jax.data.load import load_split
    from ares_jax.eval.evaluate import evaluate
    from ares_jax.loop.generation import infer_answers, write_rationales
    from ares_jax.models import init_params, logical_axes
    from ares_jax.parallel import StepShardings, batch_sharding, make_mesh, param_shardings, parse_axis_rules
    from ares_jax.teacher.factory import make_teacher

    own, settings = split_arguments(argv)
    options = parse_options(own, OPTIONS)
    if not options["out"]:
        raise ExportError("out=FILE.jsonl is required")
    score, overwrite = flag(options, "score"), flag(options, "overwrite")
    out = Path(options["out"])
    if out.exists() and not overwrite:
        raise ExportError(f"out={out} exists; choose another file or add overwrite=true")
    config, tokenizer, (policy_model, policy), (answer_model, answer), source = load_models(options, settings)
    split = options["split"] or config.data.test_split
    problems = load_split(config.data, split, log)  # bad data (or an empty split) stops here, before any write
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    rules = parse_axis_rules(config.mesh.axis_rules)

    def layout(model):
        abstract = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
        shardings = param_shardings(logical_axes(model), abstract, mesh, rules, config.mesh.allow_replicated)
        return StepShardings(shardings, batch_sharding(mesh))

    log(f"predicting {len(problems)} problems of split {split} with {source}")
    rationales = write_rationales(
        policy_model, policy, tokenizer, problems, config, layout(policy_model), progress="rationales"
    )
    answers = infer_answers(
        answer_model, answer, tokenizer, problems, rationales, config, layout(answer_model), progress="answers"
    )
    teacher = None
    if score:
        teacher = make_teacher(config.teacher, out.with_name(out.name + ".teacher_cache.sqlite"))
    metrics = evaluate(rationales, answers, problems, teacher, config.teacher.concurrency)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for problem, rationale, choice in zip(problems, rationales, answers):
            letter = chr(ord("A") + choice) if choice >= 0 else None
            line = {"id": problem.id, "rationale": rationale, "answer": choice, "answer_letter": letter}
            line.update(gold=problem.answer, correct=choice == problem.answer)
            f.write(json.dumps(line) + "\n")
    metrics = {"split": split, "models": source, "problems": len(problems), **metrics}
    out.with_name(out.name + ".metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from ares_jax.config import ConfigError
    from ares_jax.data.records import DataError
    from ares_jax.teacher.backends import TeacherSetupError

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    stops = {ExportError: "", ConfigError: "bad setting: ", DataError: "bad data: "}
    stops[TeacherSetupError] = "the Teacher cannot be used: "
    try:
        metrics = predict(argv)
    except tuple(stops) as error:
        kind = next(prefix for error_type, prefix in stops.items() if isinstance(error, error_type))
        print(f"ares_jax.predict: {kind}{error}", file=sys.stderr)
        return 2
    print(
        f"accuracy {metrics['answer_accuracy']:.4f} on {metrics['problems']} problems of split {metrics['split']}; "
        f"ROUGE-L {metrics['rouge_l']:.3f}"
        + (
            f"; sentence score {metrics['mean_sentence_score']:.3f}"
            if metrics["mean_sentence_score"] is not None
            else ""
        )
    )
    for name in ("scienceqa", "aokvqa"):
        if name in metrics:
            table = metrics[name]
            print(f"{name}: " + ", ".join(f"{k} {'–' if v is None else f'{v:.2%}'}" for k, v in table.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

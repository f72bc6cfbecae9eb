"""`python -m ares_jax.main [config=configs/X.yaml] [key=value ...]`: the run.

With no arguments: the built-in shapes task with the offline rule Teacher, on CPU in minutes.
Settings come from the defaults, then the YAML file named by `config=`, then dotted overrides
(`rationale.steps=400 workdir=runs/try1`). `--help` lists every key with its default.

So far the run is the MM-CoT baseline (rationale SFT, answer SFT, two-stage evaluation); the
RL and correction rounds of ARES are being added.
"""

from __future__ import annotations

import json
import sys

from ares_jax.config import ConfigError, describe_keys, load_config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print("keys (default):")
        print("\n".join(f"  {line}" for line in describe_keys()))
        return 0
    config_path = None
    overrides = []
    for arg in argv:
        if arg.startswith("config="):
            config_path = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"ares_jax: bad configuration: {error}", file=sys.stderr)
        return 2

    from ares_jax import loop
    from ares_jax.teacher.backends import TeacherSetupError
    from ares_jax.teacher.service import TeacherBudgetExhausted, TeacherUnavailable

    try:
        report = loop.run(config, log=lambda message: print(message, flush=True))
    except TeacherSetupError as error:
        print(f"ares_jax: the Teacher cannot be used: {error}", file=sys.stderr)
        return 2
    except (TeacherUnavailable, TeacherBudgetExhausted) as error:
        print(f"ares_jax: stopped: {error}. Every reply already received is in {config.workdir}/"
              "teacher_cache.sqlite and will not be paid again.", file=sys.stderr)
        return 3
    baseline = report["baseline"]
    print(json.dumps({k: baseline[k] for k in ("answer_accuracy", "answer_accuracy_by_kind", "rouge_l",
                                                "mean_sentence_score", "fluency")}, indent=2))
    print(f"report: {config.workdir}/report.json ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

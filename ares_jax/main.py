"""`python -m ares_jax.main [config=configs/X.yaml] [key=value ...]`: the run.

With no arguments: the built-in shapes task with the offline rule Teacher, on CPU in minutes.
Settings come from the defaults, then the YAML file named by `config=`, then dotted overrides
(`rationale.steps=400 workdir=runs/try1`). `--help` lists every key with its default.

The run: the MM-CoT baseline (rationale SFT, answer SFT, evaluation), then `rounds` rounds of
RL with the Teacher's sentence scores -> Teacher corrections -> SFT on them (each followed by an
evaluation), then the Teacher's judgement of the final vs the baseline rationales
(`method=rl_only|sft_more` swap the rounds for the ablation and the control that
experiments/reproduce.py runs). Everything lands in `workdir`: report.json, report.md,
curves.png, metrics.jsonl, checkpoints/, the Teacher cache.
Run the same command again to resume after a crash or preemption (SIGTERM/SIGINT save and exit 0).
Several hosts: the same command on each with `distributed.enabled=true` (launch_tpu.sh does this).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ares_jax.config import ConfigError, describe_keys, load_config_args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print("keys (default):")
        print("\n".join(f"  {line}" for line in describe_keys()))
        return 0
    try:
        config = load_config_args(argv)
    except ConfigError as error:
        print(f"ares_jax: bad configuration: {error}", file=sys.stderr)
        return 2

    from ares_jax.parallel import multihost

    spread = config.distributed
    watch = multihost.initialize(
        spread.enabled,
        spread.coordinator_address,
        spread.num_processes,
        spread.process_id,
        spread.lost_process_timeout_s,
    )
    if watch is not None:
        watch.workdir = config.workdir

    try:
        code = _run(config, watch)
    except BaseException:
        if watch is not None:  # a collective that failed as a peer died: the watch names it and exits
            watch.wait_for_loss()
        raise  # not a loss: the other processes find this one lost
    if watch is not None:
        watch.finish()
    return code


def _run(config, watch) -> int:
    """The run and the one-line account of each way it can stop; the exit code."""
    from ares_jax import loop
    from ares_jax.checkpoint import CheckpointSaveFailed
    from ares_jax.data.records import DataError
    from ares_jax.loop.lock import WorkdirBusy
    from ares_jax.loop.state import NoCheckpointRestores, Preempted
    from ares_jax.parallel import multihost
    from ares_jax.teacher.backends import TeacherSetupError
    from ares_jax.teacher.cache import TeacherCacheDamaged
    from ares_jax.teacher.service import TeacherBudgetExhausted, TeacherUnavailable

    primary = multihost.is_primary()  # the other processes of a multi-host run print only errors
    try:
        report = loop.run(config, log=lambda message: print(message, flush=True) if primary else None, watch=watch)
    except Preempted as stopped:
        print(
            f"ares_jax: {stopped}; checkpoint saved in {config.workdir}/checkpoints. Run the same command to resume.",
            file=sys.stderr,
        )
        return 0
    except ConfigError as error:
        print(f"ares_jax: bad configuration: {error}", file=sys.stderr)
        return 2
    except (WorkdirBusy, TeacherCacheDamaged, NoCheckpointRestores) as error:
        print(f"ares_jax: {error}", file=sys.stderr)
        return 2
    except DataError as error:
        print(f"ares_jax: bad data: {error}", file=sys.stderr)
        return 2
    except TeacherSetupError as error:
        print(f"ares_jax: the Teacher cannot be used: {error}", file=sys.stderr)
        return 2
    except (TeacherUnavailable, TeacherBudgetExhausted) as error:
        print(
            f"ares_jax: stopped: {error}. Every reply already received is in {config.workdir}/"
            "teacher_cache.sqlite and will not be paid again.",
            file=sys.stderr,
        )
        return 3
    except CheckpointSaveFailed as error:
        print(
            f"ares_jax: stopped: {error}. Free space (or make the folder writable) and run the same command "
            "to resume from the latest checkpoint.",
            file=sys.stderr,
        )
        return 3
    except multihost.PrimaryFailed as error:
        print(f"ares_jax: {error}", file=sys.stderr)
        return 3
    if not primary:
        return 0
    print((Path(config.workdir) / "report.md").read_text().split("## Examples")[0].rstrip())
    print(f"report: {config.workdir}/report.json, report.md, curves.png ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

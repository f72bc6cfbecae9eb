"""launch_tpu.sh: --dry-run prints a correct pod launch and never the Teacher's key."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "launch_tpu.sh"
KEY = "sk-ant-SECRET-launch-0123456789"


def dry_run(*args, **env):
    return subprocess.run(
        [str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **env),
        cwd=SCRIPT.parent,
    )


def test_dry_run_prints_every_command_of_a_pod_launch():
    done = dry_run(
        "ares-v4",
        "us-central2-b",
        "v4-8",
        "config=configs/scienceqa_base.yaml",
        "teacher.max_cost_usd=5",
        PROJECT="my-project",
        TEACHER_KEY_ENV="ANTHROPIC_API_KEY",
        ANTHROPIC_API_KEY=KEY,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("+ ")]
    where = "--zone us-central2-b --project my-project"
    assert lines[0] == (
        "+ gcloud compute tpus tpu-vm create ares-v4 "
        + where
        + " --accelerator-type v4-8 --version tpu-ubuntu2204-base"
    )
    assert lines[1].startswith("+ git archive --format=tar.gz --output ") and lines[1].endswith(" HEAD")
    assert f"ares-v4:ares_jax.tar.gz {where} --worker=all" in lines[2]
    assert lines[3].startswith(f"+ gcloud compute tpus tpu-vm ssh ares-v4 {where} --worker=all --command ")
    assert 'pip\\ install\\ -q\\ -e\\ .\\ \\"jax\\[tpu\\]\\"' in lines[3]
    # the key: created private on worker 0, copied there only, read into the variable, removed
    assert "--worker=0 --command umask\\ 077" in lines[4] and ":.ares_teacher_key" in lines[5]
    assert lines[5].endswith("--worker=0")
    run = lines[6]
    assert run.startswith(f"+ gcloud compute tpus tpu-vm ssh ares-v4 {where} --worker=all --command ")
    assert "export\\ ANTHROPIC_API_KEY=" in run and "rm\\ -f\\ ~/.ares_teacher_key" in run
    assert run.endswith(
        ".venv/bin/python\\ -m\\ ares_jax.main\\ distributed.enabled=true\\ "
        "config=configs/scienceqa_base.yaml\\ "
        "teacher.max_cost_usd=5"
    )
    assert len(lines) == 7
    assert KEY not in done.stdout + done.stderr  # the key's value is never printed or on a command line
    assert KEY not in SCRIPT.read_text()


def test_without_a_key_and_bad_arguments():
    done = dry_run("ares-v4", "us-central2-b", "v4-8")
    assert done.returncode == 0 and ".ares_teacher_key" not in done.stdout
    assert dry_run("ares-v4").returncode == 2  # NAME ZONE ACCELERATOR are required
    bad = dry_run("a", "b", "c", TEACHER_KEY_ENV="$(rm -rf /)")
    assert bad.returncode == 2 and "must name an environment variable" in bad.stderr


def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed here")
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout

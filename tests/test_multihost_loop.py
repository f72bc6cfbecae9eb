"""The whole loop as two processes joined by `jax.distributed` over 127.0.0.1 (gloo collectives
on CPU, 2 devices each, one 4-device mesh): process 0 alone asks the Teacher and writes the
run's files, and the run gives what one process with 4 devices gives."""

import json
import os
import socket
import sqlite3
import subprocess
import sys

from test_reproduce import TINY


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def main_command(workdir, *extra):
    return [sys.executable, "-m", "ares_jax.main", f"workdir={workdir}", *TINY, *extra]


def test_two_processes_run_the_loop_as_one_process_does(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    port = free_port()
    workers = [subprocess.Popen(
        main_command(tmp_path / "two", "distributed.enabled=true", f"distributed.coordinator_address=127.0.0.1:{port}",
                     "distributed.num_processes=2", f"distributed.process_id={i}"),
        env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    (primary_out, _), (other_out, _) = outputs
    assert "over 4 cpu device(s) in 2 processes" in primary_out and "ARES answer accuracy" in primary_out
    # The other process prints nothing of its own (gloo announces its connections).
    assert [line for line in other_out.splitlines() if not line.startswith("[Gloo]")] == []

    one = subprocess.run(main_command(tmp_path / "one"), env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=4"),
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two, single = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("two", "one"))
    # Every Teacher request was made once, by process 0: as many as one process makes.
    assert two["teacher"]["by_phase"] == single["teacher"]["by_phase"]
    assert two["teacher"]["requests"] == single["teacher"]["requests"] > 0
    with sqlite3.connect(tmp_path / "two" / "teacher_cache.sqlite") as db:
        assert db.execute("SELECT MAX(writes) FROM replies").fetchone()[0] == 1
    # The same run: the same evaluations and judgement, the same curves up to float rounding.
    assert two["phases"] == single["phases"] and two["ares"] == single["ares"]
    for name, points in single["curves"].items():
        for (x, y), (x2, y2) in zip(points, two["curves"][name], strict=True):
            assert x == x2 and abs(y - y2) <= 1e-4 * max(1.0, abs(y)), name
    lines = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").open()]
    assert len(lines) == len({(line["phase"], line["step"]) for line in lines})  # written once, not per process

"""The whole loop as two processes joined by `jax.distributed` over 127.0.0.1 (gloo collectives
on CPU, 2 devices each, one 4-device mesh), with an API Teacher on a local server: only process
0 holds the key and asks; a budget stop on process 0 stops both; the two resume, process 1 is
killed and process 0 stops within distributed.lost_process_timeout_s; the two resume from their
shared checkpoints, and the run gives what one process with 4 devices gives, each Teacher
request paid once."""

import json
import os
import re
import subprocess
import sys
import time

from conftest import free_port, xla_flags
from test_reproduce import TINY

KEY = "sk-multihost-SECRET-4242"
LOST_AFTER = 5  # distributed.lost_process_timeout_s when a process is killed


def start_processes(workdir, server, env, *extra) -> list[subprocess.Popen]:
    """The two processes of one run, started; only process 0 gets the Teacher's key."""
    port = free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ares_jax.main",
                *teacher_args(workdir, server),
                *extra,
                "distributed.enabled=true",
                f"distributed.coordinator_address=127.0.0.1:{port}",
                "distributed.num_processes=2",
                f"distributed.process_id={i}",
            ],
            env=dict(
                env,
                XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=2"),
                **({"MH_KEY": KEY} if i == 0 else {}),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def finish(workers: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process, once all have ended."""
    outputs = [worker.communicate(timeout=600) for worker in workers]
    return [(worker.returncode, out, err) for worker, (out, err) in zip(workers, outputs)]


def teacher_args(workdir, server):
    # One request at a time: two equal requests in flight together would both be paid, so the
    # count would depend on timing.
    return [
        f"workdir={workdir}",
        *TINY,
        "teacher.backend=openai",
        "teacher.model=fake",
        f"teacher.base_url=http://127.0.0.1:{server.port}/v1",
        "teacher.api_key_env=MH_KEY",
        "teacher.concurrency=1",
    ]


def own_lines(text: str) -> list[str]:
    """`text` without gloo's connection notices ("[Gloo] Rank 1 is connected to 3 peer ranks.
    Expected number of connected peer ranks is : 3"). Its threads write a notice in pieces that
    may interleave, leaving a count alone on a line (seen in a fresh-clone run: ['3'])."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and "[Gloo]" not in line and "peer ranks" not in line and not line.strip().isdigit()
    ]


def test_two_processes_run_the_loop_as_one_process_does(tmp_path, server):
    env = {k: v for k, v in os.environ.items() if k != "MH_KEY"}
    env["JAX_PLATFORMS"] = "cpu"
    # One process with 4 devices (the reference), and beside it the two processes, whose process
    # 0 runs out of Teacher budget partway: both stop, saying why.
    one = subprocess.Popen(
        [sys.executable, "-m", "ares_jax.main", *teacher_args(tmp_path / "one", server)],
        env=dict(env, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"), MH_KEY=KEY),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cap = 30
    (code, _, err), (code0, out0, err0), (code1, out1, err1) = finish(
        [one, *start_processes(tmp_path / "two", server, env, f"teacher.max_requests={cap}")]
    )
    assert code == 0, err[-3000:]
    paid_by_one = json.loads((tmp_path / "one" / "report.json").read_text())["teacher"]["requests"]
    assert paid_by_one > 2 * cap and len(server.requests) == paid_by_one + cap
    assert (code0, code1) == (3, 3), err0[-2000:] + err1[-2000:]
    assert f"teacher.max_requests ({cap}) reached" in err0
    assert "process 0 stopped: TeacherBudgetExhausted" in err1 and own_lines(out1) == []
    # Resumed, and process 1 killed partway: process 0 stops within the bound, in one line.
    metrics = tmp_path / "two" / "metrics.jsonl"
    logged_before = len(metrics.read_text().splitlines())
    workers = start_processes(tmp_path / "two", server, env, f"distributed.lost_process_timeout_s={LOST_AFTER}")
    while len(metrics.read_text().splitlines()) < logged_before + 3:  # the resumed run is under way
        assert workers[0].poll() is None, workers[0].communicate()
        time.sleep(0.1)
    workers[1].kill()
    killed = time.monotonic()
    (code0, _, err0), _ = finish(workers)
    assert code0 == 4 and time.monotonic() - killed < LOST_AFTER + 10, err0[-2000:]
    last = err0.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"ares_jax: process 1 of 2 is lost \(no heartbeat for \d+ s\) at phase \w+, step \d+; process 0 stops\. "
        rf"Start the run again on every host \(the same command\) to resume from its last checkpoint in "
        rf"{re.escape(str(tmp_path / 'two'))}/checkpoints\.",
        last,
    ), last
    # Resumed from the shared checkpoints without the cap, to the end.
    (code0, out0, err0), (code1, out1, err1) = finish(start_processes(tmp_path / "two", server, env))
    assert (code0, code1) == (0, 0), err0[-2000:] + err1[-2000:]
    assert "over 4 cpu device(s) in 2 processes" in out0 and "ARES answer accuracy" in out0
    assert own_lines(out1) == []  # the other process prints nothing of its own

    # Every request of the two-process run was paid once, by process 0: as many as one process paid.
    assert len(server.requests) == 2 * paid_by_one
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in server.requests)
    two, single = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("two", "one"))
    # The same run: the same evaluations and judgement, the same curves up to float rounding.
    assert two["phases"] == single["phases"] and two["ares"] == single["ares"]
    for name, points in single["curves"].items():
        for (x, y), (x2, y2) in zip(points, two["curves"][name], strict=True):
            assert x == x2 and abs(y - y2) <= 1e-4 * max(1.0, abs(y)), name

    def logged(name, phase):
        return [
            (line["step"], line.get("loss"))
            for line in map(json.loads, (tmp_path / name / "metrics.jsonl").open())
            if line["phase"] == phase
        ]

    for phase in ("rationale_sft", "answer_sft"):  # logged once (by process 0), as one process logs them
        assert [step for step, _ in logged("two", phase)] == [step for step, _ in logged("one", phase)]
    written = [p for p in (tmp_path / "two").rglob("*") if p.is_file()]
    assert all(KEY.encode() not in p.read_bytes() for p in written)

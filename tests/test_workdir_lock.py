"""One run per work directory: the lock's refusal names its holder, a dead holder's lock is taken
over with a line, a clean release leaves nothing to report. (A real second launch beside a
running run, and a takeover after kill -9: tests/test_loop.py.)"""

import json
import os
import socket

import pytest

from ares_jax.loop.lock import LOCK_FILE, WorkdirBusy, WorkdirLock


def test_a_second_holder_is_refused_with_the_first_ones_host_pid_and_start(tmp_path):
    lines = []
    first = WorkdirLock.acquire(tmp_path, lines.append)
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["host"] == socket.gethostname() and record["pid"] == os.getpid()
    with pytest.raises(WorkdirBusy) as refused:
        WorkdirLock.acquire(tmp_path, lines.append)  # another open file: flock refuses it
    assert str(refused.value) == (
        f"workdir {tmp_path} is in use by another run (host {record['host']}, pid {record['pid']}, started "
        f"{record['started']}); wait for it to end, stop it, or choose another workdir"
    )
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == record  # the refused one changed nothing
    first.release()
    assert (tmp_path / LOCK_FILE).read_text() == ""
    WorkdirLock.acquire(tmp_path, lines.append).release()
    assert lines == []  # a clean release leaves no stale record


def test_a_record_without_a_live_holder_is_taken_over_with_a_line(tmp_path):
    # what a run killed by SIGKILL leaves: its record, and no flock (the OS dropped it)
    dead = {"host": "pod-3", "pid": 4242, "started": "2026-12-03 01:02:03 UTC"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(dead))
    lines = []
    lock = WorkdirLock.acquire(tmp_path, lines.append)
    assert lines == [
        f"workdir {tmp_path}: taking over the lock of a run that is gone "
        "(host pod-3, pid 4242, started 2026-12-03 01:02:03 UTC)"
    ]
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()

"""One run per work directory: a lock held from start-up to exit.

Process 0 of a run holds an exclusive `fcntl.flock` on `<workdir>/.lock` and writes its holder
there (host, pid, start time); the other processes of a multi-host run are covered by their
process 0. The operating system drops a flock when its process dies, SIGKILL included, so a
file that still names a holder while the lock can be taken was left by a run that is gone: it
is taken over, with a line saying so. A clean exit empties the file. (flock works on local disks
and NFSv4; a folder mounted without locks, such as gcsfuse, is not protected.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Callable

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another run holds the work directory."""


def _holder(text: str) -> str:
    """`host H, pid P, started T` from a lock file's contents (or what it holds, when unreadable)."""
    try:
        holder = json.loads(text)
        return f"host {holder['host']}, pid {holder['pid']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return f"unreadable holder {text.strip()[:80]!r}"


class WorkdirLock:
    """The held lock of one work directory (`acquire`, then `release` at exit)."""

    def __init__(self, handle: IO[str]):
        self._handle = handle

    @classmethod
    def acquire(cls, workdir: Path, log: Callable[[str], None]) -> WorkdirLock:
        """Takes `workdir`'s lock, or raises `WorkdirBusy` naming the run that holds it."""
        handle = open(Path(workdir) / LOCK_FILE, "a+")  # "a+": never truncates a holder's record
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise WorkdirBusy(
                f"workdir {workdir} is in use by another run ({holder}); wait for it to end, stop it, or choose "
                "another workdir"
            ) from None
        handle.seek(0)
        previous = handle.read()
        if previous.strip():
            log(f"workdir {workdir}: taking over the lock of a run that is gone ({_holder(previous)})")
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": started}))
        handle.flush()
        os.fsync(handle.fileno())
        return cls(handle)

    def release(self) -> None:
        """Empties the record and drops the lock (a later run then starts without a word)."""
        if self._handle.closed:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

"""Several processes (hosts) in one run: start-up, the primary process, and sharing host values.

Every process runs the same host loop over the same deterministic global batches (each device
takes its rows, `put_batch`). Only process 0, the primary, talks to the Teacher and writes the
run's files; what it learns reaches the others by a collective broadcast, so they need no API
key and never pay for a request. Checkpoints are written by all processes together (orbax).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import jax
import numpy as np

T = TypeVar("T")


class PrimaryFailed(RuntimeError):
    """Process 0 failed while the others waited for its result; the message is its error."""


def initialize(
    enabled: bool,
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    lost_process_timeout_s: float = 60.0,
) -> PeerWatch | None:
    """Joins the run's processes (`jax.distributed.initialize`) before anything else touches JAX
    and starts watching them (`PeerWatch`). Without a coordinator address JAX finds the peers
    itself (TPU pods, SLURM). JAX's own heartbeat, which aborts a process with a native stack
    trace, is set well past `lost_process_timeout_s` so that the watch speaks first."""
    if not enabled:
        return None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only processes need a collective backend
    heartbeat = int(max(100, 2 * lost_process_timeout_s + 30))
    if coordinator_address:
        jax.distributed.initialize(
            coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=heartbeat,
        )
    else:
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat)
    if jax.process_count() == 1:
        return None
    return PeerWatch(lost_process_timeout_s)


class PeerWatch:
    """Notices a lost process of a multi-host run and stops this one, in one line.

    Every `interval` seconds each process bumps its counter in the coordination service's
    key-value store (`ares/alive/<process>`) and reads the others'. A counter that has not moved
    for `timeout_s` (by this process's clock), or a store that no longer answers (process 0,
    which hosts it, is gone), ends this process: one line naming the lost process and where the
    loop was (`position`, kept current by the loop), exit code 4. It exits from the watching
    thread (`os._exit`), since the main thread may be waiting in a collective that will never
    complete. A process that ends normally marks itself done (`finish`) and is not reported; nor
    is the store's silence once this process has shut its own client down."""

    EXIT_CODE = 4

    def __init__(self, timeout_s: float, interval_s: float | None = None):
        from jax._src import distributed  # the client jax.distributed.initialize made

        self.client = distributed.global_state.client
        self.me, self.count = jax.process_index(), jax.process_count()
        self.timeout_s = timeout_s
        self.interval_s = interval_s or min(5.0, timeout_s / 4)
        self.position = "start-up"
        self.workdir = ""
        self._stopped = threading.Event()
        self._all_done = threading.Event()  # every other process has marked itself done
        self._thread = threading.Thread(target=self._watch, name="ares_peer_watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last_seen: dict[int, tuple[int, float]] = {}  # process -> (its counter, when it last moved)
        done: set[int] = set()
        while not self._stopped.wait(self.interval_s):
            now = time.monotonic()
            try:
                self.client.key_value_increment(f"ares/alive/{self.me}", 1)
                values = dict(self.client.key_value_dir_get("ares/"))
            except Exception:  # noqa: BLE001 - any failure of the store: its host, process 0, is gone
                if self._stopped.is_set() or 0 in done or self._shut_down_here():
                    return
                self._lost(0, "its coordination service no longer answers")
                return
            done |= {int(key.rsplit("/", 1)[1]) for key in values if key.startswith("ares/done/")}
            if done >= set(range(self.count)) - {self.me}:
                self._all_done.set()
            for process in range(self.count):
                if process == self.me or process in done:
                    continue
                counter = int(values.get(f"ares/alive/{process}", 0))
                seen, since = last_seen.get(process, (-1, now))
                if counter != seen:
                    last_seen[process] = (counter, now)
                elif now - since > self.timeout_s:
                    self._lost(process, f"no heartbeat for {now - since:.0f} s")
                    return

    def _shut_down_here(self) -> bool:
        """This process shut its own client down (`jax.distributed.shutdown`, which JAX also runs at
        exit): the store's silence is then no loss. A shutdown under way (the client disconnects
        before JAX forgets it) is given `interval_s` to finish."""
        from jax._src import distributed

        deadline = time.monotonic() + self.interval_s
        while distributed.global_state.client is self.client:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _lost(self, process: int, why: str) -> None:
        if self._stopped.is_set():
            return
        resume = f" in {self.workdir}/checkpoints" if self.workdir else ""
        print(
            f"\nares_jax: process {process} of {self.count} is lost ({why}) at {self.position}; process {self.me} "
            f"stops. Start the run again on every host (the same command) to resume from its last checkpoint{resume}.",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(self.EXIT_CODE)

    def _grace_s(self) -> float:
        """Long enough for the watch to find a lost process (it reads every `interval_s`)."""
        return self.timeout_s + 3 * self.interval_s + 5

    def wait_for_loss(self) -> None:
        """After an error on this process: wait until the watch has found a lost process (it then
        exits the process) or every other process is done, at most `_grace_s`."""
        self._all_done.wait(self._grace_s())

    def finish(self) -> None:
        """This process ends (normally, or with a stop every process shares): it marks itself done
        and waits until every other process is done too, so that a stop caused by a process lost
        meanwhile (a save or a collective failing) is reported as that loss; then the watch stops."""
        try:
            self.client.key_value_set(f"ares/done/{self.me}", "1", allow_overwrite=True)
            self._all_done.wait(self._grace_s())
        except Exception:  # noqa: BLE001 - the service may already be gone at the very end
            pass
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 5)


def is_primary() -> bool:
    return jax.process_index() == 0


def broadcast_json(value: Any) -> Any:
    """Process 0's `value` (anything JSON can hold) on every process; with one process, `value`.
    Every process must call it at the same point of the loop."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    payload = json.dumps(value).encode() if is_primary() else b""
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
    data = np.frombuffer(payload, np.uint8) if is_primary() else np.zeros(size, np.uint8)
    return json.loads(np.asarray(multihost_utils.broadcast_one_to_all(data)).tobytes())


def on_primary(compute: Callable[[], T]) -> T:
    """`compute()` run by process 0 alone, its (JSON-able) result returned on every process.
    When it raises, process 0 raises that error and the others `PrimaryFailed` (no one hangs)."""
    if jax.process_count() == 1:
        return compute()
    if not is_primary():
        answer = broadcast_json(None)
        if "error" in answer:
            raise PrimaryFailed(f"process 0 stopped: {answer['error']}")
        return answer["result"]
    try:
        result = compute()
    except BaseException as error:
        broadcast_json({"error": f"{type(error).__name__}: {error}"})
        raise
    return broadcast_json({"result": result})["result"]  # as the others decode it (lists, not tuples)


def _every_process(flag: bool) -> np.ndarray:
    """`[process_count]` bool: each process's `flag`, on every process."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.int32(flag))).astype(bool)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (e.g. a stop signal one host got)."""
    return flag if jax.process_count() == 1 else bool(_every_process(flag).any())


def sync(name: str) -> None:
    """Waits until every process reaches the point called `name`."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def processes_not_sharing(folder: Path) -> list[int]:
    """The processes that do not see `folder` as process 0 does (the same list on every process).
    A multi-host run's work directory must be one folder for all: checkpoints and the files
    process 0 writes are read by every process."""
    if jax.process_count() == 1:
        return []
    token = broadcast_json(secrets.token_hex(8) if is_primary() else None)
    probe = folder / f".shared_check_{token}"
    if is_primary():
        probe.write_text(token)
    sync("shared_check_written")
    seen = _every_process(probe.is_file())
    if is_primary():
        probe.unlink()
    return np.flatnonzero(~seen).tolist()

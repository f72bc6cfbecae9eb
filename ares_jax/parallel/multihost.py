"""Several processes (hosts) in one run: start-up, the primary process, and sharing host values.

Every process runs the same host loop over the same deterministic global batches (each device
takes its rows, `put_batch`). Only process 0, the primary, talks to the Teacher and writes the
run's files; what it learns reaches the others by a collective broadcast, so they need no API
key and never pay for a request. Checkpoints are written by all processes together (orbax).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Callable, TypeVar

import jax
import numpy as np

T = TypeVar("T")


class PrimaryFailed(RuntimeError):
    """Process 0 failed while the others waited for its result; the message is its error."""


def initialize(enabled: bool, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """Joins the run's processes (`jax.distributed.initialize`) before anything else touches JAX.
    Without a coordinator address JAX finds the peers itself (TPU pods, SLURM)."""
    if not enabled:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only processes need a collective backend
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    else:
        jax.distributed.initialize()


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

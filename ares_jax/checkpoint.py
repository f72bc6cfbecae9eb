"""Checkpoints of a run: named pytrees (params, train states) plus a JSON record of where the run
is, saved together by orbax-checkpoint.

A save is atomic (orbax writes a temporary folder and renames it when complete), so a `kill -9`
or a failed write during a save leaves the previous checkpoint as the latest. Saves are numbered
1, 2, ...; the last `keep` are kept, and those saved `kept` (the end of each evaluation phase:
the models of the report's columns, for export and predict). A checkpoint that does not restore
(a file cut short, bad metadata) raises `CheckpointUnreadable`; the run sets it aside as
`<number>.corrupt` (orbax lists only numbered folders) and resumes from an older one.

After a save, process 0 lists the size of every file in the checkpoint (`files.json` inside it);
before a restore the sizes are checked, so a file cut short or missing is found in one line
before orbax reads it (orbax's own failure is a page of asynchronous tracebacks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointUnreadable(Exception):
    """Checkpoint `number` of `directory` does not restore."""

    def __init__(self, directory: Path, number: int, reason: str):
        super().__init__(f"checkpoint {number} in {directory} does not restore ({reason})")
        self.directory, self.number, self.reason = directory, number, reason


class CheckpointSaveFailed(Exception):
    """A save that did not complete; the checkpoints before it are intact."""


MANIFEST = "files.json"  # in each checkpoint folder: {relative path: size in bytes}


ORBAX_LOGGERS = ("absl", "asyncio")  # orbax's error lines; asyncio's about its abandoned tasks


def _without_closed_loop_reports(hook):
    """`sys.unraisablehook` `hook`, less the errors of tensorstore's write callbacks into the
    event loop orbax has already closed (one per abandoned write of a failed save, each with a
    traceback)."""

    def filtered(report):
        if not (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"):
            hook(report)

    return filtered


@contextlib.contextmanager
def _orbax_quiet():
    """Orbax's reports off while it saves: a failed save logs the same error from each of its
    threads (a dozen lines) and each abandoned write prints a traceback; the error that reaches
    us says it once. After a failed save they stay off for the rest of the process: orbax's
    threads go on failing after `save` has returned (its metadata thread, tensorstore's
    callbacks, asyncio's "exception was never retrieved" for each write as it is collected, often
    at exit), hundreds of lines after the run's one-line account. The run stops after a failed
    save, so nothing else of orbax's is lost."""
    loggers = [logging.getLogger(name) for name in ORBAX_LOGGERS]
    levels = [logger.level for logger in loggers]
    hook = sys.unraisablehook
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    sys.unraisablehook = _without_closed_loop_reports(hook)
    saved = False
    try:
        yield
        saved = True
    finally:
        if saved:
            sys.unraisablehook = hook
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
        else:
            warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)


def _reason(error: BaseException) -> str:
    """A short account of `error` for a one-line message (tensorstore's run to pages): its start
    and its end, where tensorstore puts the cause ("File too large", "not valid for ... size")."""
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 180 else f"{text[:70]} ... {text[-105:]}"  # the cause is at the end


def abstract_like(tree):
    """`jax.ShapeDtypeStruct` leaves for `tree` (what `restore` fills in), with the leaves'
    shardings: a restored tree lands on the mesh laid out as `tree` is."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)), tree
    )


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int, read_only: bool = False):
        """`read_only`: another run's checkpoints, read and never written, cleaned or created.
        The newest `keep` checkpoints are kept, and every one saved with `kept=True`; the
        pruning is ours (orbax's `max_to_keep` cannot spare chosen checkpoints)."""
        self.directory = Path(directory).absolute()
        self.keep = keep
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=None, create=not read_only, read_only=read_only),
        )
        self._spared: dict[int, bool] = {}  # checkpoint -> saved with kept=True (read once)

    def save(self, items: dict, record: dict, kept: bool = False) -> int:
        """Saves each pytree of `items` (name -> params, train state, ...) and the JSON-able
        `record`; returns the checkpoint's number. The record gets a `trees` entry listing the
        names, since what a run holds differs from phase to phase. `kept`: never pruned."""
        number = (self._manager.latest_step() or 0) + 1
        record = dict(record, trees=sorted(items), kept=kept)
        arguments = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        try:
            with _orbax_quiet():
                self._manager.save(number, args=ocp.args.Composite(record=ocp.args.JsonSave(record), **arguments))
                self._manager.wait_until_finished()
        except Exception as error:  # a full disk, an unwritable folder: orbax's temporary folder is left
            last = self._manager.latest_step()
            intact = f"checkpoint {last} is the latest and intact" if last else "no earlier checkpoint exists"
            raise CheckpointSaveFailed(
                f"checkpoint {number} could not be written in {self.directory} ({_reason(error)}); {intact}"
            ) from error
        if jax.process_index() == 0:
            self._write_manifest(number)
        self._spared[number] = kept
        self._prune()
        return number

    def _prune(self) -> None:
        """Deletes the checkpoints older than the newest `keep` that were not saved `kept`."""
        for number in self.numbers()[: -self.keep]:
            if number not in self._spared:
                try:
                    self._spared[number] = bool(self.record(number).get("kept"))
                except CheckpointUnreadable:
                    self._spared[number] = True  # not ours to judge: left for the fallback to set aside
            if not self._spared[number]:
                self._manager.delete(number)

    def _write_manifest(self, number: int) -> None:
        """`files.json`: every file of checkpoint `number` and its size (written last, atomically;
        a checkpoint without one, e.g. killed before it was written, is read unchecked)."""
        folder = self.directory / str(number)
        sizes = {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}
        temporary = folder / f"{MANIFEST}.tmp"
        temporary.write_text(json.dumps(sizes, indent=0))
        os.replace(temporary, folder / MANIFEST)

    def verify(self, number: int) -> None:
        """Raises `CheckpointUnreadable` when a file of checkpoint `number` is missing or not the
        size it was saved with."""
        folder = self.directory / str(number)
        manifest = folder / MANIFEST
        if not manifest.exists():
            return
        try:
            sizes = json.loads(manifest.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointUnreadable(self.directory, number, f"{MANIFEST}: {_reason(error)}") from None
        for relative, size in sizes.items():
            path = folder / relative
            if not path.is_file():
                raise CheckpointUnreadable(self.directory, number, f"{relative} is missing")
            if path.stat().st_size != size:
                raise CheckpointUnreadable(
                    self.directory, number, f"{relative} is {path.stat().st_size} bytes, {size} when saved"
                )

    def numbers(self) -> list[int]:
        """The complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_number(self) -> int | None:
        """The latest complete checkpoint, or None when there is none."""
        return self._manager.latest_step()

    def latest_record(self) -> dict | None:
        """The record of the latest complete checkpoint, or None when there is none."""
        number = self._manager.latest_step()
        return None if number is None else self.record(number)

    def record(self, number: int) -> dict:
        """The JSON record of checkpoint `number`."""
        return self._restore(number, record=ocp.args.JsonRestore())["record"]

    def restore(self, name: str, abstract, number: int | None = None):
        """The pytree `name` of checkpoint `number` (default: the latest), shaped like `abstract`."""
        number = self._manager.latest_step() if number is None else number
        return self._restore(number, **{name: ocp.args.StandardRestore(abstract)})[name]

    def _restore(self, number: int, **arguments) -> dict:
        try:
            return self._manager.restore(number, args=ocp.args.Composite(**arguments))
        except Exception as error:  # a file cut short or missing, metadata that does not parse
            raise CheckpointUnreadable(self.directory, number, _reason(error)) from error

    def set_aside(self, number: int) -> Path:
        """Renames checkpoint `number`'s folder to `<number>.corrupt` (`.corrupt-2`, ... when taken):
        kept for inspection, out of orbax's sight, and out of the way of the next save's number."""
        folder = self.directory / str(number)
        target, suffix = self.directory / f"{number}.corrupt", 1
        while target.exists():
            suffix += 1
            target = self.directory / f"{number}.corrupt-{suffix}"
        folder.rename(target)
        self.reload()
        return target

    def reload(self) -> None:
        """Lists the checkpoints again (after another process set one aside)."""
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()

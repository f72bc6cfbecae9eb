"""Checkpoints of a run: named pytrees (params, train states) plus a JSON record of where the run
is, saved together by orbax-checkpoint.

A save is atomic (orbax writes a temporary folder and renames it when complete), so a `kill -9`
during a save leaves the previous checkpoint as the latest. Saves are numbered 1, 2, ...; the
last `keep` are kept.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


def abstract_like(tree):
    """`jax.ShapeDtypeStruct` leaves for `tree` (what `restore` fills in), with the leaves'
    shardings: a restored tree lands on the mesh laid out as `tree` is."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)), tree
    )


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int, read_only: bool = False):
        """`read_only`: another run's checkpoints, read and never written, cleaned or created."""
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only),
        )

    def save(self, items: dict, record: dict) -> int:
        """Saves each pytree of `items` (name -> params, train state, ...) and the JSON-able
        `record`; returns the checkpoint's number. The record gets a `trees` entry listing the
        names, since what a run holds differs from phase to phase."""
        number = (self._manager.latest_step() or 0) + 1
        record = dict(record, trees=sorted(items))
        arguments = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        self._manager.save(number, args=ocp.args.Composite(record=ocp.args.JsonSave(record), **arguments))
        self._manager.wait_until_finished()
        return number

    def latest_record(self) -> dict | None:
        """The record of the latest complete checkpoint, or None when there is none."""
        number = self._manager.latest_step()
        if number is None:
            return None
        return self._manager.restore(number, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]

    def restore(self, name: str, abstract):
        """The pytree `name` of the latest checkpoint, shaped like `abstract`."""
        number = self._manager.latest_step()
        return self._manager.restore(number, args=ocp.args.Composite(**{name: ocp.args.StandardRestore(abstract)}))[
            name
        ]

    def close(self) -> None:
        self._manager.close()

"""Shardings of parameters, optimizer states and batches on a mesh (MaxText style).

Every parameter carries logical axis names (`models.logical_axes`); the config's rules map
them to mesh axes. A dimension the mesh axes do not divide evenly is an error naming the
parameter, unless replication is allowed (`mesh.allow_replicated`): then it stays whole along
those axes (a 97-token vocabulary on a 2-way `tensor` axis is not split), as MaxText does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ares_jax.train_state import TrainState

BATCH_AXES = ("data", "fsdp")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of a batch `[B, ...]` split over data x fsdp; the other dimensions whole."""
    return NamedSharding(mesh, P(BATCH_AXES))


def _axis_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    return int(np.prod([mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes)]))


class ReplicationError(ValueError):
    """A parameter dimension the mesh axes its logical axis maps to do not divide."""


def param_shardings(logical: Any, abstract: Any, mesh: Mesh, rules: Sequence, allow_replicated: bool = False) -> Any:
    """`NamedSharding`s like `abstract` (a params pytree of arrays or ShapeDtypeStructs):
    `logical` (a pytree of logical `PartitionSpec`s, `models.logical_axes`) through `rules`.
    A dimension its mesh axes do not divide raises `ReplicationError` naming the parameter,
    or with `allow_replicated` stays whole along them."""

    def one(path, spec: P, leaf) -> NamedSharding:
        physical = nn.logical_to_mesh_axes(tuple(spec), rules) if len(spec) else P()
        dims = []
        for index, (dim, axes) in enumerate(
            zip(leaf.shape, tuple(physical) + (None,) * (len(leaf.shape) - len(physical)))
        ):
            if axes is not None and dim % _axis_size(mesh, axes) != 0:
                if not allow_replicated:
                    named = "+".join((axes,) if isinstance(axes, str) else axes)
                    raise ReplicationError(
                        f"parameter {path_name(path)}: dimension {index} ({dim}, logical axis {spec[index]!r}) is "
                        f"not divisible by mesh axes {named} ({_axis_size(mesh, axes)}); choose mesh sizes that "
                        "divide it, change mesh.axis_rules, or set mesh.allow_replicated=true to keep it whole"
                    )
                axes = None
            dims.append(axes)
        return NamedSharding(mesh, P(*dims))

    return jax.tree_util.tree_map_with_path(one, logical, abstract, is_leaf=lambda x: isinstance(x, P))


def path_name(path) -> str:
    """A pytree path as `encoder/layer_0/ffn/wi/kernel`."""
    return "/".join(str(_key_name(k)) for k in path)


def replicated_share(layout: Any, abstract: Any) -> float:
    """The share of parameter bytes that every device holds whole: leaves of `layout` (shardings
    like `abstract`'s arrays) split over no mesh axis larger than 1."""
    whole = total = 0
    for sharding, leaf in zip(jax.tree_util.tree_leaves(layout), jax.tree_util.tree_leaves(abstract), strict=True):
        size = int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        total += size
        if all(_axis_size(sharding.mesh, axes) == 1 for axes in sharding.spec):
            whole += size
    return whole / total if total else 0.0


def _key_name(key) -> str | int:
    return getattr(key, "key", getattr(key, "name", getattr(key, "idx", None)))


def state_shardings(
    logical: Any,
    abstract_params: Any,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    rules: Sequence,
    allow_replicated: bool = False,
) -> TrainState:
    """The `TrainState` shardings, all from the parameters' logical annotations (the pattern of
    flax's lm1b `setup_initial_state`): the optimizer's state is traced (`eval_shape`) over the
    parameters boxed with their logical names, so every statistic shaped like a parameter
    (Adam's moments, also under LoRA's `multi_transform`) carries that parameter's names; its
    partition specs then go through the same `rules` as the parameters'. Leaves without names
    (counts, injected hyper-parameters, the step) are replicated.

    `logical`: a pytree of logical `PartitionSpec`s like `abstract_params` (`models.logical_axes`)."""
    boxed = jax.tree_util.tree_map(
        lambda spec, leaf: nn.LogicallyPartitioned(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), tuple(spec)),
        logical,
        abstract_params,
        is_leaf=lambda x: isinstance(x, P),
    )
    abstract_opt = jax.eval_shape(optimizer.init, boxed)
    opt = param_shardings(
        nn.get_partition_spec(abstract_opt), nn.unbox(abstract_opt), mesh, rules, allow_replicated=allow_replicated
    )
    params = param_shardings(logical, abstract_params, mesh, rules, allow_replicated=allow_replicated)
    return TrainState(step=replicated(mesh), params=params, opt_state=opt)


@dataclasses.dataclass(frozen=True, eq=False)
class StepShardings:
    """How a jitted step's arguments lie on the mesh: `state` (a TrainState of shardings, or a
    params tree for functions of parameters only) and `batch` (every batch array). Equal and
    hashed by value (the tree's structure and shardings): a key for compiled functions."""

    state: Any
    batch: NamedSharding

    def _key(self) -> tuple:
        leaves, structure = jax.tree_util.tree_flatten(self.state)
        return structure, tuple(leaves), self.batch

    def __eq__(self, other) -> bool:
        return isinstance(other, StepShardings) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def replicated(self) -> NamedSharding:
        return replicated(self.batch.mesh)


def put_batch(batch: dict, sharding: NamedSharding) -> dict:
    """A batch of host arrays, the same whole batch on every process (the loop builds its
    batches deterministically from the seed), as global arrays laid out by `sharding`: each
    device receives only its own rows. An array-like with a `shape` is indexed as it is, so a
    lazily read one (`data.batching.StackedRows`) is read only for this process's devices."""

    def put(value):
        if not hasattr(value, "shape"):
            value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return {name: put(value) for name, value in batch.items()}


def to_host(array) -> np.ndarray:
    """A global array as one host numpy array on every process (what the Teacher and the logs
    need); on one process simply its value."""
    if jax.process_count() == 1 or getattr(array, "is_fully_addressable", True):
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))

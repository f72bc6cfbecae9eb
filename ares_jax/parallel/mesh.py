"""The device mesh from the `mesh` config section, and its logical-axis rules.

Axes: `data` (replicas, each its own batch shard), `fsdp` (batch shards whose replicas also
split the parameters and optimizer states), `tensor` (a layer's heads / MLP / vocabulary
split across devices). A size of -1 takes the devices the other axes leave.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from ares_jax.parallel.rules import MESH_AXES


def mesh_shape(sizes: Sequence[int], device_count: int) -> tuple[int, ...]:
    """`sizes` (one may be -1) resolved for `device_count` devices; ValueError when they do not
    multiply to it."""
    sizes = list(sizes)
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if device_count % known:
            raise ValueError(f"mesh: {dict(zip(MESH_AXES, sizes))} does not divide {device_count} devices")
        sizes[sizes.index(-1)] = device_count // known
    if int(np.prod(sizes)) != device_count:
        raise ValueError(
            f"mesh: {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, there are {device_count}"
        )
    return tuple(sizes)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A `Mesh` with axes (data, fsdp, tensor) over `devices` (default: every device of every
    process), laid out by `jax.experimental.mesh_utils` so neighbours on the interconnect share
    the inner axes. Axis types are JAX's default (Auto): shardings are given explicitly to jit."""
    from jax.experimental import mesh_utils

    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape((data, fsdp, tensor), len(devices))
    try:
        grid = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):  # CPU / uneven topologies
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)

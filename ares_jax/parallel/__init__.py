"""Scale-out: the device mesh, logical-axis rules, shardings of params, optimizer states and
batches (knows nothing of the method)."""

from ares_jax.parallel.mesh import make_mesh, mesh_shape
from ares_jax.parallel.rules import MESH_AXES, parse_axis_rules
from ares_jax.parallel.sharding import (
    ReplicationError,
    StepShardings,
    batch_sharding,
    param_shardings,
    put_batch,
    replicated,
    replicated_share,
    state_shardings,
    to_host,
)

"""Run by tests/test_parallel.py as two processes joined by `jax.distributed` over 127.0.0.1
(gloo collectives on CPU), each with 2 CPU devices: a 4-device mesh spanning both processes.

Checks the loop's host <-> mesh data path where it matters, across processes: `put_batch`
gives each process's devices their rows of the same global batch, `to_host` gathers a result
back whole on every process, one sharded SFT step gives what a single device computes; and the
host side of a multi-host run (`parallel/multihost.py`): broadcasts from process 0, a failure
there reaching the other process, the shared-folder check.
Prints one JSON line per process.
"""

import json
import sys
from pathlib import Path

import jax

from ares_jax.parallel.multihost import initialize

process_id, port = int(sys.argv[1]), sys.argv[2]
watch = initialize(True, f"127.0.0.1:{port}", num_processes=2, process_id=process_id)  # what main does first

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ares_jax.config import MeshConfig  # noqa: E402
from ares_jax.data.batching import StackedRows  # noqa: E402
from ares_jax.models import MultimodalT5, T5Config, init_params, logical_axes  # noqa: E402
from ares_jax.parallel import (  # noqa: E402
    StepShardings,
    batch_sharding,
    make_mesh,
    parse_axis_rules,
    put_batch,
    state_shardings,
    to_host,
)
from ares_jax.parallel.multihost import (  # noqa: E402
    PrimaryFailed,
    broadcast_json,
    on_primary,
    processes_not_sharing,
)
from ares_jax.sft import make_sft_step  # noqa: E402
from ares_jax.train_state import TrainState, adamw_host_scheduled, set_hyperparams  # noqa: E402

mesh = make_mesh(-1, 1, 1)  # data 4 over both processes
rows = batch_sharding(mesh)
rng = np.random.default_rng(0)  # the same batch on both processes, as the loop builds it
B, S, T, V = 8, 10, 6, 64
batch = {
    "input_ids": rng.integers(2, V, (B, S)).astype(np.int32),
    "attention_mask": np.ones((B, S), np.int32),
    "decoder_input_ids": rng.integers(0, V, (B, T)).astype(np.int32),
    "labels": rng.integers(2, V, (B, T)).astype(np.int32),
    "label_mask": np.ones((B, T), np.float32),
}
laid = put_batch(batch, rows)
read = []  # feature rows this process read from "disk"


class Row:
    def __init__(self, i):
        self.i, self.shape, self.dtype = i, (3,), np.dtype(np.float32)

    def __array__(self, dtype=None, copy=None):
        read.append(self.i)
        return np.full(3, self.i, np.float32)


features = put_batch({"image": StackedRows([Row(i) for i in range(B)])[np.arange(B)[::-1]]}, rows)["image"]
features_ok = bool(np.array_equal(to_host(features)[:, 0], np.arange(B)[::-1]))
local_rows_ok = all(
    np.array_equal(np.asarray(shard.data), batch["input_ids"][shard.index])
    for shard in laid["input_ids"].addressable_shards
)
doubled = jax.jit(lambda x: x * 2, out_shardings=rows)(laid["input_ids"])

model = MultimodalT5(
    T5Config(vocab_size=V, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=4)
)
params = init_params(model, jax.random.key(0))
optimizer = adamw_host_scheduled()


def fresh():
    state = TrainState.create(jax.tree_util.tree_map(jnp.copy, params), optimizer)
    return state.replace(opt_state=set_hyperparams(state.opt_state, learning_rate=1e-3, eps=1e-4))


reference, _ = make_sft_step(model, optimizer, donate=False)(fresh(), batch)  # this process's own device
layout = state_shardings(logical_axes(model), params, optimizer, mesh, parse_axis_rules(MeshConfig().axis_rules))
sharded, metrics = make_sft_step(model, optimizer, shardings=StepShardings(layout, rows))(
    jax.device_put(fresh(), layout), laid, None
)
gathered = jax.tree_util.tree_map(to_host, sharded.params)

# What the loop does with host values: process 0's broadcast, its failure reaching the other,
# and the check that the work directory is one folder for both.
shared = broadcast_json({"scores": [0.5, None, 1.0], "text": "Solution: é"} if jax.process_index() == 0 else None)


def teacher_down():
    raise ValueError("teacher down")


try:
    on_primary(teacher_down)
    failure = None
except (ValueError, PrimaryFailed) as error:
    failure = f"{type(error).__name__}: {error}"
folder = Path(sys.argv[3])
own = folder / f"process{jax.process_index()}"  # a folder each: process 1 cannot see process 0's
own.mkdir()
print(
    json.dumps(
        {
            "process": jax.process_index(),
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "local_devices": jax.local_device_count(),
            "local_rows_ok": local_rows_ok,
            "gathered_ok": bool(np.array_equal(to_host(doubled), 2 * batch["input_ids"])),
            "sft_params": max(
                float(np.max(np.abs(a - np.asarray(b))))
                for a, b in zip(jax.tree_util.tree_leaves(gathered), jax.tree_util.tree_leaves(reference.params))
            ),
            "read_rows": sorted(read),
            "features_ok": features_ok,
            "shared": shared,
            "failure": failure,
            "on_primary": on_primary(lambda: [jax.process_index()]),
            "not_sharing_common": processes_not_sharing(folder),
            "not_sharing_own": processes_not_sharing(own),
            "moved": max(
                float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree_util.tree_leaves(reference.params), jax.tree_util.tree_leaves(params))
            ),
        }
    ),
    flush=True,
)
watch.finish()  # as main ends: marked done, so that neither process takes the other's exit for a loss
jax.distributed.shutdown()

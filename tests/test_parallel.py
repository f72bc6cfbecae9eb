"""Sharding by logical-axis rules on a device mesh: the sharded SFT step, PPO step, scoring pass
and sampler compute what the single-device ones do, with parameters laid out as the rules say."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ares_jax.config import ConfigError, load_config
from ares_jax.parallel import mesh_shape, parse_axis_rules

MESHES = ["8x1x1", "2x4x1", "2x2x2"]


@pytest.fixture(scope="module")
def sharded_results():
    """tests/sharding_equivalence.py in a fresh process with 8 CPU devices (the device count is
    fixed when JAX starts, so it cannot be changed inside this test process)."""
    from conftest import run_python_for_json, xla_flags

    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=8"), JAX_PLATFORMS="cpu")
    script = Path(__file__).parent / "sharding_equivalence.py"
    return run_python_for_json([str(script), *MESHES], env, timeout=900)


@pytest.mark.parametrize("mesh", MESHES)
def test_sharded_steps_compute_what_one_device_does(sharded_results, mesh):
    result = sharded_results[mesh]
    assert result["devices"] == 8
    # the steps really moved the parameters (by about the learning rate), and not on one side only
    assert result["sft_moved"] > 5e-4 and result["ppo_moved"] > 5e-4 and result["ppo_skipped"] == 0
    assert result["sft_params"] <= 1e-5 and result["ppo_params"] <= 1e-5
    assert result["sft_loss"] <= 1e-5 and result["ppo_loss"] <= 1e-5
    assert result["adam_moments"] <= 1e-7  # the gradients themselves
    assert result["scores"] <= 1e-5  # log-probs of policy and reference, values
    assert result["same_tokens"]  # sampling with the same key writes the same tokens


@pytest.mark.parametrize("mesh", MESHES)
def test_parameters_lie_as_the_rules_say(sharded_results, mesh):
    specs = sharded_results[mesh]["param_specs"]
    # default rules: embed -> fsdp, heads / mlp / vocab -> tensor, kv and position buckets whole
    assert specs["shared/embedding"] == "P('tensor', 'fsdp')"
    assert specs["encoder/layer_0/self_attention/q/kernel"] == "P('fsdp', 'tensor', None)"
    assert specs["encoder/layer_0/self_attention/o/kernel"] == "P('tensor', None, 'fsdp')"
    assert specs["encoder/layer_0/ffn/wi/kernel"] == "P('fsdp', 'tensor')"
    assert specs["encoder/layer_0/ffn/wo/kernel"] == "P('tensor', 'fsdp')"
    assert specs["encoder/final_norm/scale"] == "P('fsdp',)"
    assert specs["encoder/relative_attention_bias/embedding"] == "P(None, 'tensor')"
    result = sharded_results[mesh]
    assert result["moments_laid_out_as_params"]  # Adam's statistics lie like their parameters
    assert result["derived_layout_as_before"]  # the layouts derived from the logical names
    assert result["tokens_spec"] == "P(('data', 'fsdp'),)"  # sampled rows stay split over data x fsdp
    assert result["odd_vocab_spec"] == ("P(None, 'fsdp')" if mesh == "2x2x2" else "P('tensor', 'fsdp')")  # tensor 2 | 1
    if mesh == "2x2x2":  # not divisible, and not allowed: the error names the parameter and the axes
        assert result["odd_vocab_error"].startswith(
            "parameter shared/embedding: dimension 0 (97, logical axis 'vocab') is not divisible by mesh axes "
            "tensor (2)"
        )
        assert "mesh.allow_replicated=true" in result["odd_vocab_error"]
    else:
        assert result["odd_vocab_error"] is None
    # the share of parameter bytes held whole: all on a pure data-parallel mesh; with fsdp 4 and
    # tensor 1 only the relative-position biases ([buckets, heads], heads on tensor); none on 2x2x2
    share = result["replicated_share"]
    assert {"8x1x1": share == 1.0, "2x4x1": 0.0 < share < 0.02, "2x2x2": share == 0.0}[mesh]


def test_mesh_shapes():
    assert mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
    assert mesh_shape((2, -1, 2), 8) == (2, 2, 2)
    assert mesh_shape((1, 1, 1), 1) == (1, 1, 1)
    with pytest.raises(ValueError, match=r"needs 4 devices, there are 8"):
        mesh_shape((2, 2, 1), 8)
    with pytest.raises(ValueError, match=r"does not divide 8 devices"):
        mesh_shape((3, -1, 1), 8)


def test_step_shardings_are_keys_by_value():
    """Compiled functions are cached per layout: two layouts built apart but equal share one."""
    import jax
    from jax.sharding import PartitionSpec as P

    from ares_jax.parallel import StepShardings, batch_sharding, make_mesh, param_shardings

    mesh, rules = make_mesh(1, 1, 1), parse_axis_rules(["embed=fsdp"])
    logical = {"w": P("embed", None)}
    abstract = {"w": jax.ShapeDtypeStruct((4, 2), "float32")}

    def build():
        return StepShardings(param_shardings(logical, abstract, mesh, rules), batch_sharding(mesh))

    first, second = build(), build()
    assert first is not second and first == second and hash(first) == hash(second)
    assert len({first, second}) == 1
    other = StepShardings(param_shardings({"w": P(None, None)}, abstract, mesh, rules), batch_sharding(mesh))
    assert other != first  # another spec (P(None, None) against P('fsdp', None))
    assert StepShardings({"v": first.state["w"]}, first.batch) != first  # another tree


def test_axis_rules_parse():  # bad rules: tests/test_config.py
    assert parse_axis_rules(["batch=data+fsdp", "embed=fsdp", "kv="]) == (
        ("batch", ("data", "fsdp")),
        ("embed", "fsdp"),
        ("kv", None),
    )


def test_batches_must_split_over_the_mesh():
    from ares_jax.loop.run import check_batches_split

    check_batches_split(load_config(None, []), 1)
    expected = (
        r"rationale.batch_size \(32\), .*eval.batch_size \(50\), rl.prompts_per_rollout \(64\), "
        r"rl.minibatch_size / ppo.accumulation_steps \(64\) must be a multiple of the mesh's batch shards "
        r"\(mesh.data x mesh.fsdp = 3\)"
    )
    with pytest.raises(ConfigError, match=expected):
        check_batches_split(load_config(None, ["eval.batch_size=50"]), 3)


def test_two_processes_share_one_mesh(tmp_path):
    """Two processes joined by jax.distributed over 127.0.0.1, 2 CPU devices each: the loop's
    batch placement, gathering and a sharded SFT step work across processes
    (tests/multihost_check.py)."""
    from conftest import free_port, xla_flags

    port = free_port()
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=2"), JAX_PLATFORMS="cpu")
    script = str(Path(__file__).parent / "multihost_check.py")
    workers = [
        subprocess.Popen(
            [sys.executable, script, str(i), port, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["process"] for r in results] == [0, 1]
    for r in results:
        assert (r["processes"], r["devices"], r["local_devices"]) == (2, 4, 2)
        assert r["local_rows_ok"] and r["gathered_ok"]  # each device got its rows; results come back whole
        assert r["moved"] > 5e-4 and r["sft_params"] <= 1e-5  # the step ran, as on one device
        assert r["shared"] == {"scores": [0.5, None, 1.0], "text": "Solution: é"}
        assert r["on_primary"] == [0]  # computed by process 0, received by both
        assert r["not_sharing_common"] == [] and r["not_sharing_own"] == [1]
    # Feature rows are read by the process whose devices hold them: rows 7..4 (reversed) on
    # process 0's two devices, 3..0 on process 1's; the whole batch gathers back in order.
    assert [r["read_rows"] for r in results] == [[4, 5, 6, 7], [0, 1, 2, 3]]
    assert all(r["features_ok"] for r in results)
    assert results[0]["failure"] == "ValueError: teacher down"  # process 0 raises its own error,
    assert results[1]["failure"] == "PrimaryFailed: process 0 stopped: ValueError: teacher down"  # the other knows


class SilentStore:
    """A coordination-service client whose service is gone: every call fails."""

    def key_value_increment(self, *args):
        raise RuntimeError("UNAVAILABLE: failed to connect")

    key_value_dir_get = key_value_increment


@pytest.mark.parametrize("shut_down_here", [True, False])
def test_peer_watch_takes_a_silent_store_for_a_loss_unless_this_process_shut_down(monkeypatch, shut_down_here):
    """A store that stops answering means process 0 is gone, unless this process shut its own
    client down (`jax.distributed.shutdown`, as at exit): the fresh-clone CI once failed with
    exit code 4 when the watch woke between the shutdown and the end of the process."""
    import jax
    from jax._src import distributed

    from ares_jax.parallel.multihost import PeerWatch

    jax.devices()  # the backend up first, as a real run has it, so that it never meets the fake client
    lost = []
    monkeypatch.setattr(PeerWatch, "_lost", lambda self, process, why: lost.append((process, why)))
    monkeypatch.setattr(distributed.global_state, "client", SilentStore())
    watch = PeerWatch(timeout_s=5.0, interval_s=0.3)  # its first call comes after 0.3 s
    if shut_down_here:
        monkeypatch.setattr(distributed.global_state, "client", None)  # what shutdown leaves
    watch._thread.join(timeout=5)
    assert not watch._thread.is_alive()
    assert lost == ([] if shut_down_here else [(0, "its coordination service no longer answers")])

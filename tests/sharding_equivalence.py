"""Run by tests/test_parallel.py in a fresh process with 8 CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`, which must be set before JAX starts).

For each mesh shape given on the command line, one SFT step, one PPO step, the scoring pass and
sampling run sharded by the default axis rules and unsharded; prints one JSON object with the
largest differences and the layouts the parameters ended up with.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ares_jax.config import MeshConfig
from ares_jax.models import (
    MultimodalT5,
    SamplingConfig,
    T5Config,
    VisionConfig,
    generate,
    init_params,
    logical_axes,
    transplant,
)
from ares_jax.parallel import (
    ReplicationError,
    StepShardings,
    batch_sharding,
    make_mesh,
    param_shardings,
    parse_axis_rules,
    put_batch,
    replicated_share,
    state_shardings,
)
from ares_jax.rl import make_ppo_step, make_scoring_fn
from ares_jax.rl.config import PPOConfig
from ares_jax.rl.step import compute_advantages
from ares_jax.sft import make_sft_step
from ares_jax.train_state import TrainState, adamw_host_scheduled, set_hyperparams

B, S, T, P, F, VOCAB = 16, 12, 10, 5, 12, 96


def max_diff(a, b) -> float:
    return max(
        float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def copy(tree):
    return jax.tree_util.tree_map(jnp.array, tree)


def specs(tree) -> dict:
    return {
        "/".join(k.key for k in path): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def moments_and_rest(layout) -> bool:
    """Whether a train-state layout lays Adam's moments out as the parameters and replicates the
    rest of the optimizer state (counts, hyper-parameters) and the step."""
    split = lambda tree: [str(s.spec) for s in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    mu, nu = (optax.tree_utils.tree_get(layout.opt_state, name) for name in ("mu", "nu"))
    rest = len(jax.tree_util.tree_leaves(layout.opt_state)) - 2 * len(jax.tree_util.tree_leaves(layout.params))
    return (
        split(mu) == split(nu) == split(layout.params)
        and sum(s != "P()" for s in split(layout.opt_state)) == 2 * sum(s != "P()" for s in split(layout.params))
        and rest > 0
        and str(layout.step.spec) == "P()"
    )


def odd_vocab(mesh, rules, allow_replicated=False):
    return param_shardings(
        {"shared": {"embedding": jax.sharding.PartitionSpec("vocab", "embed")}},
        {"shared": {"embedding": jax.ShapeDtypeStruct((97, 32), jnp.float32)}},
        mesh,
        rules,
        allow_replicated=allow_replicated,
    )


def odd_vocab_error(mesh, rules) -> str | None:
    try:
        odd_vocab(mesh, rules)
    except ReplicationError as error:
        return str(error)
    return None


def main(shapes):
    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=4,
        vision=VisionConfig(kind="features", feature_dim=F, decoder_attends_image=True),
    )
    policy, value = MultimodalT5(config), MultimodalT5(config, head="value")
    params = init_params(policy, jax.random.key(0))
    both = {"policy": params, "value": transplant(params, init_params(value, jax.random.key(1)))}
    both = copy(both)  # the PPO step donates its state's buffers: no leaf may be shared
    logical = {"policy": logical_axes(policy), "value": logical_axes(value)}
    rules = parse_axis_rules(MeshConfig().axis_rules)
    rng = np.random.default_rng(0)
    prompts = {
        "input_ids": rng.integers(2, VOCAB, (B, S)).astype(np.int32),
        "attention_mask": (np.arange(S)[None] < rng.integers(S // 2, S + 1, (B, 1))).astype(np.int32),
        "image": rng.normal(size=(B, P, F)).astype(np.float32),
    }
    sft_batch = dict(
        prompts,
        decoder_input_ids=rng.integers(0, VOCAB, (B, T)).astype(np.int32),
        labels=rng.integers(2, VOCAB, (B, T)).astype(np.int32),
        label_mask=(np.arange(T)[None] < rng.integers(2, T + 1, (B, 1))).astype(np.float32),
    )
    # The loop's optimizer (clipping, AdamW, hyper-parameters in the state). eps 1e-4, not 1e-8:
    # Adam's first update is lr * g / (|g| + eps), which turns the last-bit differences of a
    # near-zero gradient summed in another order (sharded reductions) into differences up to lr;
    # with a larger eps the update is smooth in g and the comparison measures the sharding. The
    # gradients themselves are compared through Adam's first moments.
    optimizer = adamw_host_scheduled()

    def fresh_state(tree):
        state = TrainState.create(copy(tree), optimizer)
        return state.replace(
            opt_state=set_hyperparams(state.opt_state, learning_rate=1e-3, weight_decay=0.01, eps=1e-4)
        )

    sampling = SamplingConfig(T, temperature=1.0, top_k=20)
    ppo_config = PPOConfig(accumulation_steps=2)

    # --- unsharded references
    sft_ref, sft_metrics = make_sft_step(policy, optimizer, donate=False)(fresh_state(params), sft_batch)
    sample = generate(
        policy, params, prompts["input_ids"], prompts["attention_mask"], jax.random.key(7), sampling, prompts["image"]
    )
    rollout = dict(prompts, tokens=np.asarray(sample.tokens), response_mask=np.asarray(sample.response_mask))
    scored = make_scoring_fn(policy, value)(both, params, rollout)
    segment_ids = np.where(rollout["response_mask"], np.arange(T)[None] // 4, -1).astype(np.int32)
    ppo_batch = dict(
        rollout,
        **{k: np.asarray(v) for k, v in scored.items()},
        segment_ids=segment_ids,
        segment_scores=rng.uniform(0, 1, (B, 3)).astype(np.float32),
    )
    advantages, returns, _ = compute_advantages(ppo_batch, ppo_config)
    ppo_batch.update(advantages=np.asarray(advantages), returns=np.asarray(returns))
    ppo_ref, ppo_metrics = make_ppo_step(policy, value, optimizer, ppo_config)(fresh_state(both), ppo_batch)

    results = {}
    for shape in shapes:
        mesh = make_mesh(*shape)
        rows = batch_sharding(mesh)
        sft_layout = state_shardings(logical["policy"], params, optimizer, mesh, rules)
        ppo_layout = state_shardings(logical, both, optimizer, mesh, rules)
        policy_layout, both_layout = sft_layout.params, ppo_layout.params

        # fresh copies: device_put may alias a buffer that a donating step then deletes
        sft_state = jax.device_put(fresh_state(params), sft_layout)
        sft_new, sft_m = make_sft_step(policy, optimizer, shardings=StepShardings(sft_layout, rows))(
            sft_state, put_batch(sft_batch, rows), None
        )
        sharded_sample = generate(
            policy,
            jax.device_put(copy(params), policy_layout),
            *[put_batch(prompts, rows)[k] for k in ("input_ids", "attention_mask")],
            jax.random.key(7),
            sampling,
            put_batch(prompts, rows)["image"],
            shardings=StepShardings(policy_layout, rows),
        )
        sharded_scored = make_scoring_fn(policy, value, StepShardings(both_layout, rows))(
            jax.device_put(copy(both), both_layout),
            jax.device_put(copy(params), policy_layout),
            put_batch(rollout, rows),
        )
        ppo_state = jax.device_put(fresh_state(both), ppo_layout)
        ppo_new, ppo_m = make_ppo_step(policy, value, optimizer, ppo_config, StepShardings(ppo_layout, rows))(
            ppo_state, put_batch(ppo_batch, rows)
        )
        results["x".join(map(str, shape))] = {
            "sft_params": max_diff(sft_new.params, sft_ref.params),
            "sft_loss": abs(float(sft_m["loss"]) - float(sft_metrics["loss"])),
            "ppo_params": max_diff(ppo_new.params, ppo_ref.params),
            "ppo_loss": abs(float(ppo_m["loss"]) - float(ppo_metrics["loss"])),
            "adam_moments": max_diff(
                jax.tree_util.tree_leaves(ppo_new.opt_state), jax.tree_util.tree_leaves(ppo_ref.opt_state)
            ),
            "scores": max_diff(sharded_scored, scored),
            "same_tokens": bool(np.array_equal(np.asarray(sharded_sample.tokens), np.asarray(sample.tokens))),
            "param_specs": specs(sft_new.params),
            "moments_laid_out_as_params": specs(optax.tree_utils.tree_get(ppo_new.opt_state, "mu"))
            == specs(ppo_new.params)
            == specs(optax.tree_utils.tree_get(ppo_new.opt_state, "nu")),
            # the layout derived from the logical annotations, against the rule it replaced: each
            # statistic as the parameter it tracks (Adam's mu and nu), everything else replicated
            "derived_layout_as_before": all(moments_and_rest(layout) for layout in (sft_layout, ppo_layout)),
            "tokens_spec": str(sharded_sample.tokens.sharding.spec),
            "devices": len(jax.devices()),
            "sft_moved": max_diff(sft_ref.params, params),
            "ppo_moved": max_diff(ppo_ref.params, both),
            "ppo_skipped": int(ppo_m["skipped"]),
            # a dimension the mesh axes do not divide (a 97-row vocabulary) stays whole when
            # allowed, and is an error naming the parameter otherwise
            "odd_vocab_spec": str(odd_vocab(mesh, rules, allow_replicated=True)["shared"]["embedding"].spec),
            "odd_vocab_error": odd_vocab_error(mesh, rules),
            "replicated_share": replicated_share(sft_layout.params, params),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main([tuple(int(n) for n in arg.split("x")) for arg in sys.argv[1:]])

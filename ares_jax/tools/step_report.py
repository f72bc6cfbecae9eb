"""`python -m ares_jax.tools.step_report [config=configs/X.yaml] [key=value ...] [--repeats N]`

Compiles the run's core jitted functions exactly as the loop builds them (same models, mesh,
shardings and batch shapes) and prints, for each: FLOPs and bytes accessed from XLA's cost
analysis, memory from its memory analysis, the measured time per call, and MFU against the
device's peak (CPU: measured with a float32 matmul; TPU/GPU: bf16 dense peak from a table).

XLA's cost analysis counts a loop's body once. The PPO step accumulates its micro-batches in a
`lax.scan`, so its FLOPs and bytes are multiplied by `ppo.accumulation_steps` here. The
sampler's `while` loop cannot be scaled that way: its figures are the prompt's encoding plus one
decoding step, a lower bound, and its MFU is not comparable to the training steps'.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# bf16 dense peak FLOP/s per chip, by `device_kind` prefix.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "TPU7x": 2307e12,
    "NVIDIA H200": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
}


def cpu_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul FLOP/s of this machine (best of `repeats`)."""
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = min(_timed(lambda: matmul(a).block_until_ready()) for _ in range(repeats))
    return 2 * size**3 / best


def peak_flops(device) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    if device.platform == "cpu":
        return cpu_peak_flops(), "measured float32 matmul on this host"
    for prefix, flops in PEAK_FLOPS.items():
        if device.device_kind.startswith(prefix):
            return flops, f"{device.device_kind} bf16 dense, table"
    return float("nan"), f"{device.device_kind}: not in the table"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cost(compiled) -> tuple[float, float]:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))), float(cost.get("bytes accessed", float("nan")))


def _memory(compiled) -> dict:
    memory = compiled.memory_analysis()
    if memory is None:
        return {}
    return {name: getattr(memory, f"{name}_size_in_bytes", 0) for name in ("argument", "output", "temp")}


def measure(name: str, jitted, args: tuple, repeats: int, chain_state: bool, loop_trips: int = 1) -> dict:
    """Compile `jitted` for `args`, then time `repeats` calls after one warm-up; with
    `chain_state` the first argument is the (donated) state and each call gets the last one's.
    `loop_trips`: how many times the step's outer loop body runs (XLA counts it once)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    flops, bytes_accessed = (loop_trips * x for x in _cost(compiled))
    state, rest = args[0], args[1:]
    times = []
    for index in range(repeats + 1):
        begin = time.perf_counter()
        out = compiled(state, *rest)
        jax.block_until_ready(out)
        if index:
            times.append(time.perf_counter() - begin)
        if chain_state:
            state = out[0]
    return {
        "step": name,
        "flops": flops,
        "bytes": bytes_accessed,
        "seconds": float(np.median(times)),
        "compile_s": compile_s,
        **_memory(compiled),
    }


def report(config, repeats: int = 5, log=print) -> dict:
    """The step report of `config`'s run: {"device", "peak_flops", "peak_source", "steps": [...]}."""
    from ares_jax.data.batching import encode_prompts, encode_sft, rationale_examples
    from ares_jax.data.load import load_split
    from ares_jax.loop.generation import build_models, model_images
    from ares_jax.loop.state import Run
    from ares_jax.models import MultimodalT5, SamplingConfig, init_params
    from ares_jax.models.generate import _sharded_generate
    from ares_jax.parallel import make_mesh, parse_axis_rules, put_batch
    from ares_jax.train_state import TrainState

    rl, m = config.rl, config.model
    train = load_split(config.data, config.data.train_split, log)
    tokenizer, policy, answer, initial = build_models(config, train)
    run = Run(
        config=config,
        workdir=Path(config.workdir),
        tokenizer=tokenizer,
        train=train,
        test=[],
        val=[],
        policy_model=policy,
        value_model=MultimodalT5(policy.config, head="value"),
        answer_model=answer,
        teacher=None,
        checkpointer=None,
        log=log,
        stop=None,
        phase_names=[],
        mesh=make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor),
        axis_rules=parse_axis_rules(config.mesh.axis_rules),
        initial_policy=initial,
    )
    params = initial if initial is not None else init_params(policy, jax.random.key(0))
    rng = np.random.default_rng(0)
    results = []

    # SFT step: the rationale stage's batch of real training examples
    size = config.rationale.batch_size
    problems = [train[i % len(train)] for i in range(size)]
    prompts, targets = rationale_examples(problems)
    sft_batch = encode_sft(
        tokenizer, prompts, targets, model_images(problems, config), m.max_source_length, m.max_target_length
    )
    optimizer, sft_step, layout = run.sft_trainer(policy)
    state = jax.device_put(TrainState.create(jax.tree_util.tree_map(jnp.copy, params), optimizer), layout)
    results.append(
        dict(
            measure("sft_step", sft_step, (state, put_batch(sft_batch, run.rows), None), repeats, True),
            batch=f"{size} x {m.max_source_length} -> {m.max_target_length}",
        )
    )

    # a rollout batch: prompts_per_rollout x k sampled responses
    rows = rl.prompts_per_rollout * rl.k_samples
    problems = [train[i % len(train)] for i in range(rows)]
    prompts, _ = rationale_examples(problems)
    prompt_arrays = encode_prompts(tokenizer, prompts, model_images(problems, config), m.max_source_length)
    T = m.max_target_length
    tokens = rng.integers(3, tokenizer.vocab_size, (rows, T)).astype(np.int32)
    rollout = dict(prompt_arrays, tokens=tokens, response_mask=np.ones((rows, T), np.int32))
    sampling = SamplingConfig(T, temperature=rl.temperature, top_k=rl.top_k)
    sampler = _sharded_generate(run.sampling_layout(policy))
    laid = put_batch(prompt_arrays, run.rows)
    policy_params = jax.device_put(params, run.param_layout(policy))
    results.append(
        dict(
            measure(
                "sampling",
                _SamplerCall(sampler, policy, sampling),
                (policy_params, laid["input_ids"], laid["attention_mask"], jax.random.key(1), laid.get("image")),
                repeats,
                False,
            ),
            batch=f"{rows} x {m.max_source_length} -> {T} new tokens",
        )
    )

    optimizer, ppo_step, _, scoring, layout = run.rl_trainer()
    value_params = init_params(run.value_model, jax.random.key(2))
    both = {"policy": jax.tree_util.tree_map(jnp.copy, params), "value": value_params}
    both_laid = jax.device_put(jax.tree_util.tree_map(jnp.copy, both), layout.params)
    results.append(
        dict(
            measure("scoring", scoring, (both_laid, policy_params, put_batch(rollout, run.rows)), repeats, False),
            batch=f"{rows} x {m.max_source_length} -> {T}",
        )
    )

    size = rl.minibatch_size
    ppo_batch = {name: value[:size] for name, value in rollout.items()}
    ppo_batch.update(
        logprobs=np.full((size, T), -3.0, np.float32),
        advantages=rng.normal(size=(size, T)).astype(np.float32),
        returns=rng.normal(size=(size, T)).astype(np.float32),
    )
    if size > rows:
        raise SystemExit(f"rl.minibatch_size ({size}) is larger than a rollout ({rows} rows)")
    state = jax.device_put(TrainState.create(both, optimizer), layout)
    results.append(
        dict(
            measure(
                "ppo_step",
                ppo_step,
                (state, put_batch(ppo_batch, run.rows)),
                repeats,
                True,
                loop_trips=config.ppo.accumulation_steps,
            ),
            batch=f"{size} x {m.max_source_length} -> {T}, {config.ppo.accumulation_steps} micro-batch(es)",
        )
    )

    device = jax.devices()[0]
    peak, source = peak_flops(device)
    if device.platform != "cpu":
        peak *= len(jax.devices())
    for row in results:
        row["tflops_per_s"] = row["flops"] / row["seconds"] / 1e12
        row["mfu"] = row["flops"] / row["seconds"] / peak
    return {
        "device": f"{len(jax.devices())} x {device.device_kind}",
        "peak_flops": peak,
        "peak_source": source,
        "mesh": dict(run.mesh.shape),
        "steps": results,
    }


class _SamplerCall:
    """The jitted sampler with its static arguments (model, sampling) bound: `lower(*arrays)`
    as `measure` expects; the compiled function then takes the arrays only."""

    def __init__(self, jitted, model, sampling):
        self.jitted, self.model, self.sampling = jitted, model, sampling

    def lower(self, *args):
        return self.jitted.lower(self.model, self.sampling, *args)


def format_report(result: dict) -> str:
    lines = [
        f"device: {result['device']}; mesh {result['mesh']}; peak {result['peak_flops'] / 1e12:.2f} TFLOP/s "
        f"({result['peak_source']})",
        "",
        "| step | batch | GFLOP / call | GB accessed | args MB | temp MB | ms / call | TFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["steps"]:
        lines.append(
            f"| {r['step']} | {r['batch']} | {r['flops'] / 1e9:.2f} | {r['bytes'] / 1e9:.3f} | "
            f"{r.get('argument', 0) / 2**20:.1f} | {r.get('temp', 0) / 2**20:.1f} | {r['seconds'] * 1e3:.1f} | "
            f"{r['tflops_per_s']:.3f} | {100 * r['mfu']:.1f}% |"
        )
    lines.append("")
    lines.append(
        "sampling: XLA counts its decoding loop once (encoding + one step): its FLOPs and MFU are lower bounds."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ares_jax.config import ConfigError, load_config_args

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    repeats = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--repeats=")]
    try:
        config = load_config_args([a for a in argv if not a.startswith("--repeats=")])
    except ConfigError as error:
        print(f"step_report: bad configuration: {error}", file=sys.stderr)
        return 2
    print(format_report(report(config, repeats[-1] if repeats else 5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Our Flax T5 sampler and training step against HF transformers' PyTorch T5, in one run.

Same random weights for both (built in PyTorch, saved, loaded with `load_pretrained`), same
shapes, 2 CPU threads each. Reports tokens/s, the ratio, and each as a fraction of this
machine's float32 matmul peak (measured here, best of numpy/torch/XLA on large square matmuls).

    python bench/bench_model.py                # the issue's configuration
    python bench/bench_model.py --quick        # tiny shapes, a smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from ares_jax.models import SamplingConfig, decoder_inputs, generate, load_pretrained  # noqa: E402
from ares_jax.models.generate import generate_jit  # noqa: E402
from ares_jax.sft import make_sft_step  # noqa: E402
from ares_jax.train_state import TrainState, adamw  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def parse_args(doc: str, repeats: int) -> argparse.Namespace:
    """The options every benchmark takes (--quick, --repeats, --json), 2 torch threads set."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script runs")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", help="also write the results here")
    torch.set_num_threads(2)
    return parser.parse_args()


def report(results: dict, json_path: str | None) -> None:
    """Prints the results as JSON and, when asked, writes them to `json_path`."""
    print(json.dumps(results, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> dict:
    """float32 matmul FLOP/s of numpy, torch and XLA on `size`^3 products."""
    a = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    flops = 2 * size**3
    ta = torch.from_numpy(a)
    ja = jnp.asarray(a)
    jmm = jax.jit(lambda x: x @ x)
    jmm(ja).block_until_ready()
    return {
        "numpy": flops / best_time(lambda: a @ a, repeats),
        "torch": flops / best_time(lambda: ta @ ta, repeats),
        "xla": flops / best_time(lambda: jmm(ja).block_until_ready(), repeats),
    }


def t5_flops(cfg, batch: int, src: int, tgt: int, new_tokens: int) -> dict:
    """Matmul FLOPs (2 per multiply-add) of a teacher-forced forward pass and of generation."""
    d, inner, ff, vocab = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    ffn = (3 if cfg.feed_forward_proj == "gated-gelu" else 2) * d * ff
    enc_token = cfg.num_layers * (4 * d * inner + ffn + 2 * src * inner)
    cross_kv_per_src = cfg.num_decoder_layers * 2 * d * inner

    def dec_token(self_len):
        return (
            cfg.num_decoder_layers * (4 * d * inner + 2 * self_len * inner + 2 * d * inner + 2 * src * inner + ffn)
            + d * vocab
        )

    forward = batch * (src * (enc_token + cross_kv_per_src) + tgt * dec_token(tgt))
    gen = batch * (src * (enc_token + cross_kv_per_src) + sum(dec_token(t + 1) for t in range(new_tokens)))
    return {"train_step": 2 * 3 * forward, "generate": 2 * gen}


def main():
    args = parse_args(__doc__, repeats=3)
    batch, src, tgt, new = (4, 16, 16, 8) if args.quick else (32, 128, 128, 64)
    hf_config = transformers.T5Config(
        vocab_size=1024,
        d_model=256,
        d_kv=32,
        d_ff=1024,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=8,
        feed_forward_proj="relu",
        dropout_rate=0.0,
    )
    if args.quick:
        hf_config = transformers.T5Config(
            vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, dropout_rate=0.0
        )
    torch.manual_seed(0)
    hf_model = transformers.T5ForConditionalGeneration(hf_config).eval()
    folder = tempfile.mkdtemp()
    hf_model.save_pretrained(folder)
    model, params = load_pretrained(folder)
    # Both run the full `new` steps: HF through min_new_tokens, ours with an EOS id never sampled.
    model = model.clone(config=model.config.replace(eos_token_id=-1))

    rng = np.random.default_rng(0)
    input_ids = rng.integers(2, hf_config.vocab_size, size=(batch, src))
    attention_mask = np.ones_like(input_ids)
    labels = rng.integers(2, hf_config.vocab_size, size=(batch, tgt))
    flops = t5_flops(model.config, batch, src, tgt, new)
    peak = matmul_peak_flops(256 if args.quick else 2048)
    peak_flops = max(peak.values())
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": {"jax": jax.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        "shapes": {"batch": batch, "prompt": src, "target": tgt, "new_tokens": new},
        "matmul_peak_gflops": {k: v / 1e9 for k, v in peak.items()},
    }

    # -- generation -------------------------------------------------------------------------
    generation = transformers.GenerationConfig(
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        use_cache=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    t_ids, t_mask = torch.tensor(input_ids), torch.tensor(attention_mask)

    def hf_generate():
        with torch.no_grad():
            return hf_model.generate(input_ids=t_ids, attention_mask=t_mask, generation_config=generation)

    hf_generate()
    hf_gen_s = best_time(hf_generate, args.repeats)

    j_ids, j_mask = jnp.asarray(input_ids, jnp.int32), jnp.asarray(attention_mask, jnp.int32)
    sampling = SamplingConfig(new, greedy=True)
    key = jax.random.key(0)

    def jax_generate():
        return jax.block_until_ready(generate(model, params, j_ids, j_mask, key, sampling))

    start = time.perf_counter()
    ours = jax_generate()
    compile_s = time.perf_counter() - start
    jax_gen_s = best_time(jax_generate, args.repeats)
    same = float(np.mean(np.asarray(ours.tokens) == hf_generate()[:, 1:].numpy()))
    tokens = batch * new
    results["generate"] = {
        "hf_tokens_per_s": tokens / hf_gen_s,
        "ours_tokens_per_s": tokens / jax_gen_s,
        "speedup": hf_gen_s / jax_gen_s,
        "ours_first_call_s_incl_compile": compile_s,
        "hf_fraction_of_peak": flops["generate"] / hf_gen_s / peak_flops,
        "ours_fraction_of_peak": flops["generate"] / jax_gen_s / peak_flops,
        "greedy_tokens_equal_to_hf": same,
        "compiled_versions": generate_jit._cache_size(),
    }

    # -- training step (forward + backward + AdamW) ---------------------------------------------
    t_labels = torch.tensor(labels)
    decoder_input_ids = np.asarray(decoder_inputs(labels, model.config.decoder_start_token_id)).astype(np.int64)
    t_decoder_ids = torch.tensor(decoder_input_ids)
    optimizer = torch.optim.AdamW(hf_model.parameters(), lr=1e-4, weight_decay=0.01)
    hf_model.train()

    def hf_step():
        loss = hf_model(input_ids=t_ids, attention_mask=t_mask, decoder_input_ids=t_decoder_ids, labels=t_labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    hf_step()
    hf_train_s = best_time(hf_step, args.repeats)

    train_batch = {
        "input_ids": j_ids,
        "attention_mask": j_mask,
        "decoder_input_ids": jnp.asarray(decoder_input_ids, jnp.int32),
        "labels": jnp.asarray(labels, jnp.int32),
        "label_mask": jnp.ones((batch, tgt), jnp.int32),
    }
    tx = adamw(1e-4, max_grad_norm=None)
    step = make_sft_step(model, tx)
    state = TrainState.create(params, tx)
    state, metrics = step(state, train_batch)
    jax.block_until_ready(metrics)

    def jax_step():
        nonlocal state
        state, m = step(state, train_batch)
        jax.block_until_ready(m)

    jax_train_s = best_time(jax_step, args.repeats)
    dec_tokens = batch * tgt
    results["train_step"] = {
        "hf_decoder_tokens_per_s": dec_tokens / hf_train_s,
        "ours_decoder_tokens_per_s": dec_tokens / jax_train_s,
        "speedup": hf_train_s / jax_train_s,
        "hf_fraction_of_peak": flops["train_step"] / hf_train_s / peak_flops,
        "ours_fraction_of_peak": flops["train_step"] / jax_train_s / peak_flops,
        "flops_per_step": flops["train_step"],
    }
    report(results, args.json)


if __name__ == "__main__":
    main()

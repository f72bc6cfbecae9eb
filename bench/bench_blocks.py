"""Where the training step's gap to PyTorch lies: one attention block and one feed-forward block,
forward + backward, ares_jax's modules against the same computation in PyTorch, in one run.

    python bench/bench_blocks.py             # the foundation benchmark's sizes: 32 x 128 tokens, d 256
    python bench/bench_blocks.py --quick     # tiny shapes, a smoke test of the script

Ours: `models.t5.Attention` (T5 self-attention with a relative-position bias and a mask) and
`models.t5.FeedForward` (relu), jitted `jax.grad` of the sum of the block's output with respect
to its parameters and its input. PyTorch: the same operations as HF's `T5Attention` and
`T5DenseActDense` (four bias-free projections, heads split by view/transpose, bias added to the
scores, float32 softmax), `torch.autograd.grad` of the same sum. Same weights, 2 threads each;
best of `--repeats` after a warm-up call; the figure per block is interleaved over rounds, as this
machine's speed drifts.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_model import parse_args, report  # noqa: E402

from ares_jax.models import T5Config  # noqa: E402
from ares_jax.models.t5 import Attention, FeedForward  # noqa: E402


def ours(config, batch, length):
    """(jitted fwd+bwd of our attention block, of our FFN block, their arguments, the weights as numpy)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, length, config.d_model)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(1, config.num_heads, length, length)), jnp.float32)
    lengths = rng.integers(length // 2, length + 1, size=batch)
    mask = jnp.asarray((np.arange(length)[None] < lengths[:, None])[:, None, None, :])
    attention, ffn = Attention(config), FeedForward(config)

    def attention_apply(module, x):
        return module(x, module.key_values(x), bias, mask, True)

    attention_params = nn.unbox(attention.init(jax.random.key(0), x, method=attention_apply)["params"])
    ffn_params = nn.unbox(ffn.init(jax.random.key(1), x, True)["params"])

    def attention_loss(params, x):
        return jnp.sum(attention.apply({"params": params}, x, method=attention_apply))

    def ffn_loss(params, x):
        return jnp.sum(ffn.apply({"params": params}, x, True))

    grads = lambda loss: jax.jit(jax.grad(loss, argnums=(0, 1)))  # noqa: E731
    weights = jax.tree_util.tree_map(np.asarray, {"attention": attention_params, "ffn": ffn_params})
    return grads(attention_loss), grads(ffn_loss), (attention_params, ffn_params, x, bias, mask), weights


def torch_blocks(config, weights, x, bias, mask):
    """PyTorch fwd+bwd closures on the same weights and inputs."""
    heads, d_kv = config.num_heads, config.d_kv
    tensor = lambda a: torch.tensor(np.asarray(a), requires_grad=True)  # noqa: E731
    a = weights["attention"]
    wq, wk, wv = (tensor(a[n]["kernel"].reshape(config.d_model, -1)) for n in ("q", "k", "v"))
    wo = tensor(a["o"]["kernel"].reshape(-1, config.d_model))
    w_in, w_out = tensor(weights["ffn"]["wi"]["kernel"]), tensor(weights["ffn"]["wo"]["kernel"])
    tx, tbias = tensor(x), torch.tensor(np.asarray(bias))
    tmask = torch.tensor(np.asarray(mask))
    batch, length, _ = tx.shape
    split = lambda h: h.view(batch, length, heads, d_kv).transpose(1, 2)  # noqa: E731

    def attention():
        scores = split(tx @ wq) @ split(tx @ wk).transpose(3, 2) + tbias
        scores = scores.masked_fill(~tmask, torch.finfo(torch.float32).min)
        weights_ = torch.softmax(scores.float(), dim=-1)
        out = (weights_ @ split(tx @ wv)).transpose(1, 2).contiguous().view(batch, length, -1) @ wo
        return torch.autograd.grad(out.sum(), [wq, wk, wv, wo, tx])

    def ffn():
        out = torch.relu(tx @ w_in) @ w_out
        return torch.autograd.grad(out.sum(), [w_in, w_out, tx])

    return attention, ffn


def block_flops(config, batch, length) -> dict:
    """Matmul FLOPs of forward + backward (3 x forward), 2 per multiply-add."""
    d, inner, tokens = config.d_model, config.num_heads * config.d_kv, batch * length
    attention = 2 * tokens * 4 * d * inner + 2 * 2 * batch * config.num_heads * length * length * config.d_kv
    return {"attention": 3 * attention, "ffn": 3 * 2 * tokens * 2 * d * config.d_ff}


def main():
    args = parse_args(__doc__, repeats=10)
    if args.quick:
        config = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_heads=4, dropout_rate=0.0)
        batch, length = 2, 8
    else:
        config = T5Config(
            vocab_size=1024, d_model=256, d_kv=32, d_ff=1024, num_heads=8, feed_forward_proj="relu", dropout_rate=0.0
        )
        batch, length = 32, 128
    attention_grad, ffn_grad, (attention_params, ffn_params, x, bias, mask), weights = ours(config, batch, length)
    torch_attention, torch_ffn = torch_blocks(config, weights, x, bias, mask)
    runs = {
        ("attention", "ares_jax"): lambda: jax.block_until_ready(attention_grad(attention_params, x)),
        ("attention", "pytorch"): torch_attention,
        ("ffn", "ares_jax"): lambda: jax.block_until_ready(ffn_grad(ffn_params, x)),
        ("ffn", "pytorch"): torch_ffn,
    }
    times = {key: [] for key in runs}
    warm = {key: run() for key, run in runs.items()}  # warm-up (and compilation)
    # The two sides compute the same thing: the gradient with respect to the block's input.
    input_grad_diff = {
        block: float(np.abs(np.asarray(warm[block, "ares_jax"][1]) - warm[block, "pytorch"][-1].numpy()).max())
        for block in ("attention", "ffn")
    }
    for _ in range(args.repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    flops = block_flops(config, batch, length)
    results = {
        "shapes": {
            "batch": batch,
            "length": length,
            "d_model": config.d_model,
            "d_ff": config.d_ff,
            "heads": config.num_heads,
        },
        "input_gradient_max_abs_diff": input_grad_diff,
    }
    for block in ("attention", "ffn"):
        ours_s, torch_s = min(times[block, "ares_jax"]), min(times[block, "pytorch"])
        results[block] = {
            "ares_jax_ms": 1e3 * ours_s,
            "pytorch_ms": 1e3 * torch_s,
            "speedup": torch_s / ours_s,
            "ares_jax_gflops": flops[block] / ours_s / 1e9,
            "pytorch_gflops": flops[block] / torch_s / 1e9,
        }
    report(results, args.json)


if __name__ == "__main__":
    main()

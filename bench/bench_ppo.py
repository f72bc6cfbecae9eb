"""The PPO update and one whole rollout cycle: ares_jax against a PyTorch version of the paper's
update (HF T5 policy + a separate T5 value model with the MLP head), in one run.

    python bench/bench_ppo.py            # the foundation benchmark's model, batch 32, 128 + 64 tokens
    python bench/bench_ppo.py --quick    # tiny shapes, a smoke test of the script

Cycle = sample 64 tokens per prompt + score them (policy, frozen reference, value) + one PPO
update; the Teacher is not part of it. Same weights for both frameworks, 2 threads each.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from bench_model import best_time, matmul_peak_flops, parse_args, report, t5_flops  # noqa: E402

from ares_jax.models import MultimodalT5, SamplingConfig, generate, init_params, load_pretrained  # noqa: E402
from ares_jax.rl import PPOConfig, compute_advantages, make_ppo_step, make_scoring_fn  # noqa: E402
from ares_jax.train_state import TrainState, adamw  # noqa: E402


class TorchValueModel(torch.nn.Module):
    """The paper's value model: a T5 whose decoder states go through d -> 2d -> ReLU -> 1."""

    def __init__(self, config):
        super().__init__()
        self.t5 = transformers.T5ForConditionalGeneration(config)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(config.d_model, 2 * config.d_model), torch.nn.ReLU(), torch.nn.Linear(2 * config.d_model, 1)
        )

    def forward(self, **inputs):
        out = self.t5(**inputs, output_hidden_states=True)
        return self.head(out.decoder_hidden_states[-1]).squeeze(-1)


def torch_logprobs(model, ids, mask, decoder_ids, tokens):
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    return torch.gather(torch.log_softmax(logits.float(), -1), 2, tokens[..., None]).squeeze(-1)


def torch_ppo_loss(logprobs, old, values, returns, advantages, clip=0.2, vf_coef=1.0):
    n = logprobs.numel()
    ratio = torch.exp(logprobs - old)
    policy = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)).sum() / n
    return policy + vf_coef * ((values - returns) ** 2).sum() / n


def main():
    args = parse_args(__doc__, repeats=3)
    batch, src, new = (4, 16, 8) if args.quick else (32, 128, 64)
    size = (
        dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
        if args.quick
        else dict(vocab_size=1024, d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=8)
    )
    hf_config = transformers.T5Config(**size, feed_forward_proj="relu", dropout_rate=0.0)

    torch.manual_seed(0)
    hf_policy = transformers.T5ForConditionalGeneration(hf_config)
    hf_reference = transformers.T5ForConditionalGeneration(hf_config).eval()
    hf_reference.load_state_dict(hf_policy.state_dict())
    hf_value = TorchValueModel(hf_config)
    folder = tempfile.mkdtemp()
    hf_policy.save_pretrained(folder)
    policy, policy_params = load_pretrained(folder)
    policy = policy.clone(config=policy.config.replace(eos_token_id=-1))  # full-length responses, both sides
    value_model = MultimodalT5(policy.config, head="value")
    params = {"policy": policy_params, "value": init_params(value_model, jax.random.key(1))}
    reference_params = jax.tree_util.tree_map(jnp.copy, policy_params)

    rng = np.random.default_rng(0)
    ids = rng.integers(2, hf_config.vocab_size, size=(batch, src))
    tokens = rng.integers(2, hf_config.vocab_size, size=(batch, new))
    scores = np.round(rng.random((batch, 4)), 1)
    segments = np.repeat(np.arange(4), new // 4)[None].repeat(batch, 0)
    peak = max(matmul_peak_flops(256 if args.quick else 2048).values())
    flops = t5_flops(policy.config, batch, src, new, new)
    update_flops = 2 * flops["train_step"]  # policy and value model, forward + backward
    scoring_flops = 3 * flops["train_step"] / 3  # three forward passes

    # -- PyTorch ------------------------------------------------------------------------------
    t_ids, t_mask = torch.tensor(ids), torch.ones(batch, src, dtype=torch.long)
    t_tokens = torch.tensor(tokens)
    t_decoder = torch.cat([torch.zeros(batch, 1, dtype=torch.long), t_tokens[:, :-1]], 1)
    optimizer = torch.optim.AdamW(
        list(hf_policy.parameters()) + list(hf_value.parameters()), lr=2e-5, weight_decay=0.01
    )
    with torch.no_grad():
        t_old = torch_logprobs(hf_policy, t_ids, t_mask, t_decoder, t_tokens)
    t_adv, t_ret = torch.randn(batch, new), torch.randn(batch, new)

    def torch_update():
        loss = torch_ppo_loss(
            torch_logprobs(hf_policy, t_ids, t_mask, t_decoder, t_tokens),
            t_old,
            hf_value(input_ids=t_ids, attention_mask=t_mask, decoder_input_ids=t_decoder),
            t_ret,
            t_adv,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    generation = transformers.GenerationConfig(
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=True,
        top_k=50,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )

    def torch_cycle():
        with torch.no_grad():
            sampled = hf_policy.generate(input_ids=t_ids, attention_mask=t_mask, generation_config=generation)[:, 1:]
            decoder = torch.cat([torch.zeros(batch, 1, dtype=torch.long), sampled[:, :-1]], 1)
            torch_logprobs(hf_policy, t_ids, t_mask, decoder, sampled)
            torch_logprobs(hf_reference, t_ids, t_mask, decoder, sampled)
            hf_value(input_ids=t_ids, attention_mask=t_mask, decoder_input_ids=decoder)
        torch_update()

    torch_update()
    torch_update_s = best_time(torch_update, args.repeats)
    torch_cycle_s = best_time(torch_cycle, max(1, args.repeats - 1))

    # -- ares_jax -----------------------------------------------------------------------------
    config = PPOConfig()
    tx = adamw(2e-5, weight_decay=0.01, max_grad_norm=1.0)
    step = make_ppo_step(policy, value_model, tx, config)
    scoring = make_scoring_fn(policy, value_model)
    state = TrainState.create(params, tx)
    prompts = {"input_ids": jnp.asarray(ids, jnp.int32), "attention_mask": jnp.ones((batch, src), jnp.int32)}
    fixed = dict(
        prompts,
        tokens=jnp.asarray(tokens, jnp.int32),
        response_mask=jnp.ones((batch, new), bool),
        segment_ids=jnp.asarray(segments, jnp.int32),
        segment_scores=jnp.asarray(scores, jnp.float32),
    )
    fixed.update(scoring(state.params, reference_params, fixed))
    fixed["advantages"], fixed["returns"], _ = compute_advantages(fixed, config)
    sampling = SamplingConfig(new, top_k=50)

    def jax_update():
        nonlocal state
        state, metrics = step(state, fixed)
        jax.block_until_ready(metrics)

    phase_seconds = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        phase_seconds[name] = time.perf_counter() - start
        return result

    def jax_cycle():
        nonlocal state
        out = timed(
            "sample",
            lambda: generate(
                policy,
                state.params["policy"],
                prompts["input_ids"],
                prompts["attention_mask"],
                jax.random.key(0),
                sampling,
            ),
        )
        rollout = dict(fixed, tokens=out.tokens, response_mask=out.response_mask)
        rollout.update(timed("score", lambda: scoring(state.params, reference_params, rollout)))
        rollout["advantages"], rollout["returns"], _ = timed("advantages", lambda: compute_advantages(rollout, config))
        state, metrics = timed("update", lambda: step(state, rollout))

    jax_update()
    jax_update_s = best_time(jax_update, args.repeats)
    jax_cycle()
    jax_cycle_s = best_time(jax_cycle, max(1, args.repeats - 1))

    tokens_per_update = batch * new
    results = {
        "shapes": {"batch": batch, "prompt": src, "response": new},
        "matmul_peak_gflops": peak / 1e9,
        "ppo_update": {
            "torch_response_tokens_per_s": tokens_per_update / torch_update_s,
            "ours_response_tokens_per_s": tokens_per_update / jax_update_s,
            "speedup": torch_update_s / jax_update_s,
            "torch_fraction_of_peak": update_flops / torch_update_s / peak,
            "ours_fraction_of_peak": update_flops / jax_update_s / peak,
        },
        "cycle": {
            "torch_s": torch_cycle_s,
            "ours_s": jax_cycle_s,
            "speedup": torch_cycle_s / jax_cycle_s,
            "ours_fraction_of_peak": (update_flops + scoring_flops + flops["generate"]) / jax_cycle_s / peak,
            "ours_last_cycle_phases_s": phase_seconds,
        },
        "compiled_versions": {"ppo_step": step._cache_size()},
    }
    report(results, args.json)


if __name__ == "__main__":
    main()

"""`python -m ares_jax.main`: the ARES run.

The full loop (rollouts, Teacher feedback, PPO, corrections, SFT, evaluation, checkpoints) is
being built; until it lands this entry point runs the foundation's end-to-end check
(`ares_jax.smoke`): a tiny T5 trained from scratch with the jitted SFT step, then sampled.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ares_jax.main", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800, help="SFT steps of the end-to-end check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")

    from ares_jax import smoke

    print("ares_jax: the ARES loop is not in this version yet; running the foundation check "
          "(tokenizer -> multimodal T5 -> SFT -> sampler).", flush=True)
    result = smoke.run(steps=args.steps, seed=args.seed, log=lambda msg: print(msg, flush=True))
    print(f"exact match {result['exact_match']:.1%}, final loss {result['final_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

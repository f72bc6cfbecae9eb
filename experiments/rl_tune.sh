#!/usr/bin/env bash
# One RL-only tuning run from the saved seed-0 baseline: experiments/rl_tune.sh NAME [key=value ...]
# Writes runs/tune/NAME (report.json: curves rl_1/val_* are the validation figures used to choose).
set -euo pipefail
name=$1; shift
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-runs/xla_cache}
exec .venv/bin/python -m ares_jax.main baseline_from=${BASELINE:-runs/base_s0} method=rl_only rounds=1 \
    workdir=runs/tune/$name "$@"

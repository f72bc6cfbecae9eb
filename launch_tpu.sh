#!/usr/bin/env bash
# launch_tpu.sh: run ARES on a Cloud TPU VM pod (placeholder until the scale-out issue lands).
#
# What it will do, in order:
#   1. create (or reuse) a TPU VM:   gcloud compute tpus tpu-vm create NAME --zone ZONE --accelerator-type TYPE --version RUNTIME
#   2. copy this repository to every worker:   gcloud compute tpus tpu-vm scp --recurse . NAME: --worker=all
#   3. install it on every worker:   pip install -e '.[tfds]'
#   4. run the loop on every worker: python -m ares_jax.main config=configs/... key=value ...
#      with the Teacher API key forwarded from this shell's environment (never written into this
#      script, the command line or shell history).
#   --dry-run will print every command instead of running it.
set -euo pipefail

cat >&2 <<'MSG'
launch_tpu.sh is a placeholder: multi-host TPU launch arrives with the scale-out issue.
Read the comment at the top of this file for what it will do. For now run on one host:
  make run
MSG
exit 2

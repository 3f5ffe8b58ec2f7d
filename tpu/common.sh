#!/usr/bin/env bash
# Shared by the tpu/ scripts: option parsing helpers and `run`, which prints a command and, unless
# --dry-run was given, executes it. Sourced, not run.

DRY_RUN=0

# Prints the command (shell-quoted) and runs it unless DRY_RUN=1.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}

die() {
  echo "error: $*" >&2
  exit 2
}

# need NAME VALUE: fails with a clear message when a required option is empty.
need() {
  [[ -n "$2" ]] || die "--$1 is required (see --help)"
}

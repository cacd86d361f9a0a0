#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Usage: ./scripts/test.sh   (as root on Debian 12, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

start=$(date +%s)
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
log "test suite finished in $(( $(date +%s) - start ))s"

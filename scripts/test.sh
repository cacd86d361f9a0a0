#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Usage: ./scripts/test.sh   (as root on Debian 12, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
prepare
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

start=$(date +%s)
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
log "test suite finished in $(( $(date +%s) - start ))s"

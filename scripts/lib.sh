# Shared by the scripts in this directory: run setup, load cargo, log.
# shellcheck shell=bash

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs what is missing and puts cargo on PATH.
prepare() {
    ./scripts/setup.sh
    if [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
}

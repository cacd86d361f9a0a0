#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build, and produce a cluster's
# PKI, kubeconfigs and join credentials for a sample three-node HA cluster.
# Usage: ./scripts/quickstart.sh [OUT_DIR]   (default: out/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
out="${1:-out/quickstart}"

log "building bootstrap (release)"
cargo build --release --locked -p cairn-bootstrap
bootstrap=target/release/bootstrap

log "generating the PKI of the first control-plane node into $out"
"$bootstrap" certs generate \
    --cert-dir "$out/pki" \
    --node-name cp-1 \
    --apiserver-advertise-address 192.168.100.11 \
    --control-plane-endpoint 192.168.100.10 \
    --apiserver-cert-extra-sans "cairn.example.com,*.apps.example.com"

log "certificate lifetimes"
"$bootstrap" certs check-expiration --cert-dir "$out/pki"

log "admin.conf as kubectl reads it"
kubectl config view --kubeconfig "$out/admin.conf"

token=$("$bootstrap" token generate)
certificate_key=$("$bootstrap" certs certificate-key)
ca_hash=$("$bootstrap" certs ca-hash --cert-dir "$out/pki")
cat <<MSG

Your cluster's PKI is in $out. Nodes join it with:

  bootstrap join 192.168.100.10:6443 --token $token \\
      --discovery-token-ca-cert-hash $ca_hash

and control-plane nodes add:

      --control-plane --certificate-key $certificate_key

(The join verbs, the image builder and the QEMU cluster are not built yet;
see ARCHITECTURE.md for what exists today.)
MSG

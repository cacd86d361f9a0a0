#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build the default node image,
# boot it in QEMU, and generate the PKI and join credentials of a sample
# HA cluster.
# Usage: ./scripts/quickstart.sh [OUT_DIR]   (default: out)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
prepare
out="${1:-out}"

log "building bootstrap (release)"
cargo build --release --locked -p cairn-bootstrap
bootstrap=target/release/bootstrap

log "building the default image into $out/default"
"$bootstrap" image build --profile profiles/default.toml --out "$out/default"
"$bootstrap" image inspect "$out/default"

log "booting it in QEMU (kernel + initramfs)"
"$bootstrap" qemu boot --image "$out/default" --timeout 300 | grep -E "Linux version|Run /init|\[init\]|cairn|Power down"

log "generating the PKI of the first control-plane node into $out/cluster"
"$bootstrap" certs generate \
    --cert-dir "$out/cluster/pki" \
    --node-name cp-1 \
    --apiserver-advertise-address 192.168.100.11 \
    --control-plane-endpoint 192.168.100.10 \
    --apiserver-cert-extra-sans "cairn.example.com,*.apps.example.com"
"$bootstrap" certs check-expiration --cert-dir "$out/cluster/pki"
kubectl config view --kubeconfig "$out/cluster/admin.conf"

token=$("$bootstrap" token generate)
certificate_key=$("$bootstrap" certs certificate-key)
ca_hash=$("$bootstrap" certs ca-hash --cert-dir "$out/cluster/pki")
cat <<MSG

The image is in $out/default (boot it again with
\`$bootstrap qemu boot --image $out/default [--uefi]\`), the cluster PKI in
$out/cluster. Nodes will join that cluster with:

  bootstrap join 192.168.100.10:6443 --token $token \\
      --discovery-token-ca-cert-hash $ca_hash

and control-plane nodes add:

      --control-plane --certificate-key $certificate_key

(The node boot flow, the join verbs and the QEMU cluster are not built yet;
see ARCHITECTURE.md for what exists today.)
MSG

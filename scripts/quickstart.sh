#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build the default node image,
# boot three nodes from it in a QEMU lab (they run containerd, configured
# through their machine configs), and generate the PKI and join credentials
# of a sample HA cluster.
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

log "booting a 3-node lab \"demo\" in QEMU from it"
"$bootstrap" qemu up --name demo --nodes 3 --image "$out/default"
"$bootstrap" qemu status --name demo
log "running a container from the bundled busybox image on node-2"
"$bootstrap" qemu api --name demo node-2 run docker.io/library/busybox:1.35 -- \
    sh -c 'echo "hello from $(hostname), kernel $(uname -r)"'

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

The image is in $out/default. The lab "demo" keeps running:

  $bootstrap qemu status  --name demo            # nodes, services, timings
  $bootstrap qemu console --name demo node-1     # serial console
  $bootstrap qemu api     --name demo node-1 status|logs containerd|read PATH|reboot
  $bootstrap qemu down    --name demo            # remove everything

The cluster PKI is in $out/cluster. Nodes will join that cluster with:

  bootstrap join 192.168.100.10:6443 --token $token \\
      --discovery-token-ca-cert-hash $ca_hash

and control-plane nodes add:

      --control-plane --certificate-key $certificate_key

(Cluster formation on the nodes, the join verbs and the Kubernetes API are
not built yet; see ARCHITECTURE.md for what exists today.)
MSG

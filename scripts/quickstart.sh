#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build the default node image,
# boot three nodes from it in a QEMU lab that form a Kubernetes cluster from
# their machine configs (node-1 initialises it behind a virtual IP, the
# others join with a bootstrap token and the CA pin), and show `kubectl get
# nodes`.
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

log "booting a 3-node lab \"demo\" in QEMU: node-1 initialises the cluster, node-2 and node-3 join"
"$bootstrap" qemu up --name demo --nodes 3 --vip --image "$out/default"
"$bootstrap" qemu status --name demo
log "running a container from the bundled busybox image on node-2"
"$bootstrap" qemu api --name demo node-2 run docker.io/library/busybox:1.35 -- \
    sh -c 'echo "hello from $(hostname), kernel $(uname -r)"'

kubeconfig=$("$bootstrap" qemu kubeconfig --name demo | tail -1)
cat <<MSG

The image is in $out/default. The lab "demo" keeps running:

  $bootstrap qemu status  --name demo            # nodes, services, VIP holder
  $bootstrap qemu console --name demo node-1     # serial console
  $bootstrap qemu api     --name demo node-1 status|logs kube-apiserver|read PATH|reboot
  $bootstrap qemu down    --name demo            # remove everything

The cluster answers at its virtual IP 10.5.0.10 (forwarded to 127.0.0.1):

  kubectl --kubeconfig $kubeconfig get nodes
MSG
log "kubectl get nodes"
kubectl --kubeconfig "$kubeconfig" get nodes -o wide

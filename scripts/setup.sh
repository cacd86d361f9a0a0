#!/usr/bin/env bash
# Installs what building and testing Cairn needs on a Debian 12 machine.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages the build and the tests use.
#   openssl                 independent verifier of the PKI in tests
#   gcc, libc6-dev          C code in ring (crypto) and other -sys crates
#   pkg-config, git         -sys crates; the default SOURCE_DATE_EPOCH
#   squashfs-tools          mksquashfs/unsquashfs for the read-only root
#   qemu-system-x86, ovmf   booting images (UEFI through OVMF)
#   qemu-utils              qemu-img for VM disk overlays and qcow2 checks
#   fdisk, gdisk, mtools, dosfstools, cpio, binutils, systemd-boot-efi,
#   containerd, skopeo
#                           independent readers the format tests check against
#   iproute2, dnsmasq-base  the QEMU lab: network namespaces, bridge, taps;
#                           DHCP for nodes and iPXE inside the namespace
#   busybox-static          a static userland for container tests
#   etcd-server             the apiserver's storage in its integration tests
#   protobuf-compiler, libprotobuf-dev
#                           protoc and the well-known types for the etcd
#                           gRPC client's build script
#   python3-venv            a private virtualenv for the Python kubernetes
#                           client the apiserver's client tests drive
packages=(openssl ca-certificates gcc libc6-dev pkg-config git squashfs-tools
          qemu-system-x86 qemu-utils ovmf fdisk gdisk mtools dosfstools cpio
          binutils systemd-boot-efi containerd skopeo iproute2 dnsmasq-base
          busybox-static etcd-server protobuf-compiler libprotobuf-dev
          python3-venv)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A stock kubectl is the reference client; Debian ships it as kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
    missing+=(kubernetes-client)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Cairn needs Rust 1.90 or newer (edition 2024); install it with rustup." >&2
    exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "$rust_minor" -lt 90 ]; then
    echo "error: $(rustc --version) is too old; Cairn needs Rust 1.90 or newer (edition 2024)." >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            log "adding the $component component"
            rustup component add "$component"
        fi
    fi
done
mkdir -p "${CAIRN_CACHE:-$HOME/.cache/cairn}"

# The Python kubernetes client (PyPI), pinned, in a virtualenv under the
# cache so the system Python is left alone; the apiserver's client tests
# run their scripts with this venv's python.
kubernetes_py_version=37.0.2
venv="${CAIRN_CACHE:-$HOME/.cache/cairn}/python"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes') != '$kubernetes_py_version')" >/dev/null 2>&1; then
    log "installing the Python kubernetes client $kubernetes_py_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "kubernetes==$kubernetes_py_version"
fi

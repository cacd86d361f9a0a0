//! What the Node object says about this machine: capacity (CPUs, memory,
//! the size of `/var`) and system info (kernel, OS image, containerd,
//! machine and boot IDs), read from `/proc` and the filesystem.

use cairn_cluster::node::{DEFAULT_MAX_PODS, NodeResources};
use k8s_openapi::api::core::v1::NodeSystemInfo;

use super::Context;
use super::plan::KUBERNETES_VERSION;

/// CPUs, memory and `/var`'s size.
pub fn resources() -> NodeResources {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    let memory_kib = memory_total_kib().unwrap_or(0);
    let storage = nix::sys::statvfs::statvfs("/var")
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0);
    NodeResources {
        cpu_millis: cpus * 1000,
        memory_bytes: memory_kib * 1024,
        ephemeral_storage_bytes: storage,
        pods: DEFAULT_MAX_PODS,
    }
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
pub fn memory_total_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// kubelet's `nodeInfo` for this node.
pub fn system_info(context: &Context) -> NodeSystemInfo {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Cairn".to_owned());
    let containerd = context
        .agent
        .containerd_version()
        .map(|v| format!("containerd://{v}"))
        .unwrap_or_default();
    NodeSystemInfo {
        architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
        operating_system: std::env::consts::OS.to_owned(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        kernel_version: kernel,
        os_image,
        container_runtime_version: containerd,
        kubelet_version: KUBERNETES_VERSION.to_owned(),
        kube_proxy_version: String::new(),
        ..NodeSystemInfo::default()
    }
}

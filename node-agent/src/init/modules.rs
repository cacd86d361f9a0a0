//! Which kernel modules to load, in which order, from `modules.dep`.
//!
//! `modules.dep` lists, for each module, every module it depends on
//! (nearest first). Loading a module's dependencies from the end of its
//! list, then the module, satisfies each before its users, which is what
//! `modprobe` does. The builder writes this file for exactly the modules an
//! image carries.

use std::collections::{BTreeMap, BTreeSet};

/// Module name (`virtio_net`) from a path in `modules.dep`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .unwrap_or(file);
    stem.replace('-', "_")
}

/// Parsed `modules.dep`: module name → (its path, its dependencies' paths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulesDep {
    entries: BTreeMap<String, (String, Vec<String>)>,
}

impl ModulesDep {
    pub fn parse(text: &str) -> Self {
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim().to_owned();
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            entries.insert(module_name(&path), (path, deps));
        }
        Self { entries }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Paths to load, in order, so that `wanted` and all their dependencies
    /// end up loaded; each path once. Unknown names are returned separately
    /// (they may be built into the kernel).
    pub fn load_order(&self, wanted: &[String]) -> (Vec<String>, Vec<String>) {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut unknown = Vec::new();
        for name in wanted {
            let name = name.replace('-', "_");
            let Some((path, deps)) = self.entries.get(&name) else {
                unknown.push(name);
                continue;
            };
            for dep in deps.iter().rev().chain(std::iter::once(path)) {
                if seen.insert(dep.clone()) {
                    order.push(dep.clone());
                }
            }
        }
        (order, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/virtio_net.ko: kernel/net/net_failover.ko kernel/virtio/virtio_ring.ko kernel/net/failover.ko\nkernel/net/net_failover.ko: kernel/net/failover.ko\nkernel/net/failover.ko:\nkernel/virtio/virtio_ring.ko:\nkernel/fs/overlay.ko.xz:\n";

    #[test]
    fn dependencies_load_before_their_users_once() {
        let dep = ModulesDep::parse(DEP);
        let (order, unknown) = dep.load_order(&[
            "virtio-net".to_owned(),
            "net_failover".to_owned(),
            "ext4".to_owned(),
        ]);
        assert_eq!(
            order,
            [
                "kernel/net/failover.ko",
                "kernel/virtio/virtio_ring.ko",
                "kernel/net/net_failover.ko",
                "kernel/net/virtio_net.ko",
            ]
        );
        assert_eq!(unknown, ["ext4"]);
        assert!(dep.names().any(|n| n == "overlay"));
    }
}

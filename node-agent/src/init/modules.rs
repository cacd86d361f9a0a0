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
    ///
    /// Each dependency's own entry is followed (depth first, dependencies
    /// before their users), so the order is right whatever order a
    /// `modules.dep` line lists them in.
    pub fn load_order(&self, wanted: &[String]) -> (Vec<String>, Vec<String>) {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut unknown = Vec::new();
        for name in wanted {
            let name = name.replace('-', "_");
            if !self.entries.contains_key(&name) {
                unknown.push(name);
                continue;
            }
            self.visit(&name, &mut seen, &mut order);
        }
        (order, unknown)
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let Some((path, deps)) = self.entries.get(name) else {
            return;
        };
        for dep in deps.iter().rev() {
            let dep_name = module_name(dep);
            if self.entries.contains_key(&dep_name) {
                self.visit(&dep_name, seen, order);
            } else if seen.insert(dep_name) {
                order.push(dep.clone());
            }
        }
        order.push(path.clone());
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

    #[test]
    fn nested_dependencies_load_first_whatever_the_listed_order() {
        // stp needs llc, but the line lists stp last.
        let dep = ModulesDep::parse(
            "kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/llc/llc.ko kernel/net/802/stp.ko\nkernel/net/bridge/bridge.ko: kernel/net/llc/llc.ko kernel/net/802/stp.ko\nkernel/net/802/stp.ko: kernel/net/llc/llc.ko\nkernel/net/llc/llc.ko:\n",
        );
        let (order, unknown) = dep.load_order(&["br_netfilter".to_owned()]);
        assert!(unknown.is_empty());
        assert_eq!(
            order,
            [
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/net/bridge/br_netfilter.ko",
            ]
        );
    }
}

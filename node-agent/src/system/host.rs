//! Host settings of a running node: kernel modules (with their
//! dependencies from `modules.dep`), sysctls, hostname and machine-id.
//!
//! What the image asks for comes from the files the builder wrote
//! (`/usr/lib/modules-load.d/*.conf`, `/usr/lib/sysctl.d/*.conf`, as
//! systemd reads them); the machine config's `[kernel]` adds to them.
//! kubeadm's prerequisites (`overlay`, `br_netfilter`, IPv4 forwarding,
//! bridged traffic through iptables) are always applied, whatever the
//! profile says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::init::modules::ModulesDep;

/// Modules every Kubernetes node needs (kubeadm's prerequisites).
pub const REQUIRED_MODULES: [&str; 2] = ["overlay", "br_netfilter"];
/// Sysctls every Kubernetes node needs (kubeadm's prerequisites).
pub const REQUIRED_SYSCTLS: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];

/// Module names listed in `*.conf` files of `dirs` (later directories and
/// files sorted by name; `#`/`;` comments), each once, in order.
pub fn modules_from_dirs(dirs: &[&Path]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for text in conf_files(dirs) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let name = line.replace('-', "_");
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// `key = value` sysctls from `*.conf` files of `dirs`; a later setting of
/// the same key wins, as in `sysctl --system`.
pub fn sysctls_from_dirs(dirs: &[&Path]) -> BTreeMap<String, String> {
    let mut sysctls = BTreeMap::new();
    for text in conf_files(dirs) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().trim_start_matches('-').replace('/', ".");
                sysctls.insert(key, value.trim().to_owned());
            }
        }
    }
    sysctls
}

fn conf_files(dirs: &[&Path]) -> Vec<String> {
    let mut texts = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts
}

/// What loading a list of modules did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleReport {
    /// Module files newly loaded.
    pub loaded: usize,
    /// Names the image has no module file for but the kernel has built in.
    pub built_in: Vec<String>,
    /// Names neither shipped nor built in, or that failed to load.
    pub failed: Vec<String>,
}

/// Loads `names` and their dependencies from `/usr/lib/modules/<release>`.
pub fn load_modules(names: &[String]) -> ModuleReport {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = Path::new("/usr/lib/modules").join(&release);
    let dep = std::fs::read_to_string(base.join("modules.dep"))
        .map(|text| ModulesDep::parse(&text))
        .unwrap_or_default();
    let (order, unknown) = dep.load_order(names);
    let mut report = ModuleReport::default();
    for relative in order {
        let path = base.join(&relative);
        match load_module_file(&path) {
            Ok(true) => report.loaded += 1,
            Ok(false) => {}
            Err(error) => report.failed.push(format!("{relative}: {error}")),
        }
    }
    for name in unknown {
        if Path::new("/sys/module").join(&name).exists() {
            report.built_in.push(name);
        } else {
            report.failed.push(format!(
                "{name}: not in the image and not built into the kernel"
            ));
        }
    }
    report
}

fn load_module_file(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)?;
    match nix::kmod::finit_module(
        &file,
        &std::ffi::CString::default(),
        nix::kmod::ModuleInitFlags::empty(),
    ) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EEXIST) => Ok(false),
        Err(errno) => Err(std::io::Error::from(errno)),
    }
}

/// `/proc/sys/net/ipv4/ip_forward` for `net.ipv4.ip_forward`.
pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Writes each sysctl; returns `key: error` for those that failed.
pub fn apply_sysctls(sysctls: &BTreeMap<String, String>) -> Vec<String> {
    sysctls
        .iter()
        .filter_map(|(key, value)| {
            std::fs::write(sysctl_path(key), value)
                .err()
                .map(|error| format!("{key} = {value}: {error}"))
        })
        .collect()
}

/// Sets the kernel hostname and writes `/etc/hostname` and `/etc/hosts`.
pub fn set_hostname(name: &str, addresses: &[std::net::IpAddr]) -> std::io::Result<()> {
    nix::unistd::sethostname(name).map_err(std::io::Error::from)?;
    std::fs::write("/etc/hostname", format!("{name}\n"))?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for address in addresses {
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    if addresses.is_empty() {
        hosts.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    std::fs::write("/etc/hosts", hosts)
}

/// The machine-id kept in `state_file` (created on first boot from the
/// kernel's random UUID), copied to `/etc/machine-id`.
pub fn machine_id(state_file: &Path, etc_file: &Path) -> std::io::Result<(String, bool)> {
    let (id, created) = match std::fs::read_to_string(state_file) {
        Ok(text) if is_machine_id(text.trim()) => (text.trim().to_owned(), false),
        _ => {
            let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
            let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
            if let Some(parent) = state_file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::system::write_atomic(state_file, format!("{id}\n").as_bytes(), 0o444)?;
            (id, true)
        }
    };
    std::fs::write(etc_file, format!("{id}\n"))?;
    Ok((id, created))
}

fn is_machine_id(text: &str) -> bool {
    text.len() == 32
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_dirs_are_read_in_order_later_settings_winning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (usr, etc) = (dir.path().join("usr"), dir.path().join("etc"));
        std::fs::create_dir_all(&usr).expect("usr");
        std::fs::create_dir_all(&etc).expect("etc");
        std::fs::write(
            usr.join("50-cairn.conf"),
            "# kubeadm\nnet.ipv4.ip_forward = 1\nvm.swappiness=10\n",
        )
        .expect("w");
        std::fs::write(
            usr.join("10-a.conf"),
            "vm.swappiness = 60\n-kernel.foo = 2\n",
        )
        .expect("w");
        std::fs::write(usr.join("README"), "x = y\n").expect("w");
        std::fs::write(etc.join("99-local.conf"), "net/ipv4/ip_forward = 0\n").expect("w");
        let sysctls = sysctls_from_dirs(&[&usr, &etc]);
        assert_eq!(sysctls.get("vm.swappiness").map(String::as_str), Some("10"));
        assert_eq!(
            sysctls.get("net.ipv4.ip_forward").map(String::as_str),
            Some("0")
        );
        assert_eq!(sysctls.get("kernel.foo").map(String::as_str), Some("2"));
        assert_eq!(sysctls.len(), 3);

        let modules = dir.path().join("modules-load.d");
        std::fs::create_dir_all(&modules).expect("modules-load.d");
        std::fs::write(
            modules.join("cairn.conf"),
            "br-netfilter\n; comment\noverlay\nbr_netfilter\n",
        )
        .expect("w");
        assert_eq!(modules_from_dirs(&[&modules]), ["br_netfilter", "overlay"]);
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
    }

    #[test]
    fn machine_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("var/lib/cairn/machine-id");
        let etc = dir.path().join("machine-id");
        let (first, created) = machine_id(&state, &etc).expect("first");
        assert!(created && is_machine_id(&first), "{first}");
        let (second, created) = machine_id(&state, &etc).expect("second");
        assert!(!created);
        assert_eq!(first, second);
        assert_eq!(std::fs::read_to_string(&etc).expect("etc").trim(), first);
    }
}

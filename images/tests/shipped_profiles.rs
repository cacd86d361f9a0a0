//! The profiles shipped in `profiles/` load, validate and say what the
//! project promises they say.

use std::path::PathBuf;

use cairn_images::profile::{Output, Profile, ProfileError, ResolvedProfile};

fn load(name: &str) -> Result<ResolvedProfile, ProfileError> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .join(name);
    Profile::load(path)
}

fn names<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[test]
fn base_profile_is_a_bootable_minimum() -> Result<(), ProfileError> {
    let base = load("base.toml")?;
    assert_eq!(base.name.as_str(), "base");
    assert_eq!(base.kernel.package.as_str(), "linux-image-cloud-amd64");
    assert_eq!(
        names(
            &base
                .workspace_binaries
                .iter()
                .map(|b| b.name.clone())
                .collect::<Vec<_>>()
        ),
        ["node-agent"]
    );
    assert!(names(&base.excludes).contains(&"usr/share/doc/**".to_owned()));
    assert!(names(&base.skip_packages).contains(&"kmod".to_owned()));
    assert_eq!(base.outputs.len(), 7);
    Ok(())
}

#[test]
fn default_profile_has_every_role() -> Result<(), ProfileError> {
    let default = load("default.toml")?;
    let packages = names(&default.packages);
    for package in [
        "containerd",
        "runc",
        "containernetworking-plugins",
        "etcd-server",
        "nftables",
        "e2fsprogs",
    ] {
        assert!(
            packages.contains(&package.to_owned()),
            "{package} in {packages:?}"
        );
    }
    assert!(!packages.contains(&"kmod".to_owned()));
    let binaries: Vec<String> = default
        .workspace_binaries
        .iter()
        .map(|b| b.destination().to_string())
        .collect();
    assert_eq!(
        binaries,
        [
            "usr/bin/node-agent",
            "usr/bin/control-plane",
            "usr/bin/bootstrap"
        ]
    );
    let modules = names(&default.kernel.modules);
    for module in [
        "overlay",
        "br_netfilter",
        "squashfs",
        "virtio_net",
        "virtio_blk",
        "ext4",
    ] {
        assert!(modules.contains(&module.to_owned()), "{module}");
    }
    let sysctls: Vec<(String, String)> = default
        .boot
        .sysctls
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for key in [
        "net.ipv4.ip_forward",
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ] {
        assert!(sysctls.contains(&(key.to_owned(), "1".to_owned())), "{key}");
    }
    assert_eq!(default.cmdline(), "console=ttyS0");
    assert!(!default.boot.console_shell);
    assert_eq!(default.sources().len(), 2);
    Ok(())
}

#[test]
fn metal_profile_uses_the_generic_kernel_and_more_drivers() -> Result<(), ProfileError> {
    let metal = load("metal.toml")?;
    assert_eq!(metal.kernel.package.as_str(), "linux-image-amd64");
    let modules = names(&metal.kernel.modules);
    for module in [
        "nvme",
        "ahci",
        "e1000e",
        "igb",
        "ixgbe",
        "i40e",
        "mlx5_core",
        "br_netfilter",
    ] {
        assert!(modules.contains(&module.to_owned()), "{module}");
    }
    assert!(names(&metal.kernel.initramfs_modules).contains(&"nvme".to_owned()));
    assert_eq!(metal.cmdline(), "console=tty0 console=ttyS0,115200n8");
    assert!(metal.outputs.contains(&Output::DiskRaw));
    Ok(())
}

#[test]
fn debug_profile_adds_busybox_and_a_console_shell() -> Result<(), ProfileError> {
    let debug = load("debug.toml")?;
    assert!(names(&debug.packages).contains(&"busybox-static".to_owned()));
    assert!(names(&debug.packages).contains(&"containerd".to_owned()));
    assert!(debug.boot.console_shell);
    assert_eq!(debug.sources().len(), 3);
    Ok(())
}

#[test]
fn shipped_profiles_render_and_have_distinct_digests() -> Result<(), ProfileError> {
    let mut digests = Vec::new();
    for name in ["base.toml", "default.toml", "metal.toml", "debug.toml"] {
        let profile = load(name)?;
        let rendered = profile.to_toml()?;
        assert!(
            rendered.contains(&format!("name = \"{}\"", profile.name)),
            "{rendered}"
        );
        digests.push(profile.digest()?);
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4);
    Ok(())
}

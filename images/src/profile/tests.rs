//! Tests for parsing, merging, validation and rendering of profiles.

use std::path::{Path, PathBuf};

use super::*;

/// A temporary directory holding profile files.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("create temp dir"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create profile dir");
        }
        std::fs::write(&path, text).expect("write profile");
        path
    }
}

const MINIMAL: &str = r#"
name = "base"
version = "1.0.0"
outputs = ["vmlinuz", "initramfs"]
packages = ["containerd", "runc"]
excludes = ["usr/share/doc/**"]

[kernel]
package = "linux-image-cloud-amd64"
cmdline = ["console=ttyS0", "quiet"]
modules = ["overlay", "squashfs", "br_netfilter"]
initramfs-modules = ["squashfs"]

[boot]
modules = ["overlay"]
sysctls = { "net.ipv4.ip_forward" = 1, "vm.swappiness" = "10" }

[[file]]
from = "files/motd"
to = "/etc/motd"
mode = "0644"
"#;

fn parse_err(text: &str) -> ProfileError {
    match Profile::parse(text, Path::new("p.toml")) {
        Ok(profile) => panic!("expected a parse error, got {profile:?}"),
        Err(error) => error,
    }
}

fn load_err(path: &Path) -> ProfileError {
    match Profile::load(path) {
        Ok(profile) => panic!("expected an error, got {profile:?}"),
        Err(error) => error,
    }
}

#[test]
fn minimal_profile_resolves() -> Result<(), ProfileError> {
    let dir = Dir::new();
    let profile = Profile::load(dir.write("base.toml", MINIMAL))?;
    assert_eq!(profile.name.as_str(), "base");
    assert_eq!(profile.kernel.package.as_str(), "linux-image-cloud-amd64");
    assert_eq!(profile.cmdline(), "console=ttyS0 quiet");
    assert_eq!(profile.architecture, Architecture::Amd64);
    assert_eq!(profile.files[0].to.as_str(), "etc/motd");
    assert_eq!(profile.boot.sysctls.len(), 2);
    assert!(!profile.boot.console_shell);
    assert_eq!(profile.sources().len(), 1);
    Ok(())
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let error =
        parse_err("name = \"x\"\n\n[kernel]\npackage = \"linux-image-amd64\"\ncmdlin = []\n");
    match &error {
        ProfileError::Parse {
            path,
            line,
            column,
            key,
            message,
        } => {
            assert_eq!(path, Path::new("p.toml"));
            assert_eq!((*line, *column), (Some(5), Some(1)));
            assert_eq!(key, "kernel.cmdlin");
            assert!(message.contains("unknown field `cmdlin`"), "{message}");
            assert!(
                message.contains("cmdline"),
                "expected keys listed: {message}"
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.starts_with("p.toml:5:1: kernel.cmdlin: unknown field"),
        "{text}"
    );
}

#[test]
fn unknown_top_level_key_is_an_error() {
    let error = parse_err("name = \"x\"\npackage = [\"runc\"]\n");
    assert!(
        error
            .to_string()
            .starts_with("p.toml:2:1: package: unknown field `package`"),
        "{error}"
    );
}

#[test]
fn wrong_type_names_key_and_expectation() {
    let error = parse_err("[kernel]\ncmdline = \"console=ttyS0\"\n");
    let text = error.to_string();
    assert!(text.starts_with("p.toml:2:11: kernel.cmdline:"), "{text}");
    assert!(text.contains("expected a sequence"), "{text}");
}

#[test]
fn invalid_values_are_refused_at_parse_time() {
    let cases = [
        (
            "packages = [\"runc\", \"Bad_Name\"]\n",
            "packages[1]",
            "invalid package name `Bad_Name`",
        ),
        (
            "[[file]]\nfrom = \"x\"\nto = \"../etc/passwd\"\n",
            "file[0].to",
            "`..` is not allowed",
        ),
        (
            "[boot]\nsysctls = { \"Net.IPv4\" = 1 }\n",
            "boot.sysctls",
            "invalid sysctl key",
        ),
        (
            "[kernel]\nmodules = [\"overlay.ko\"]\n",
            "kernel.modules[0]",
            "invalid kernel module name",
        ),
        (
            "[[artifact]]\nurl = \"ftp://x/y\"\nsha256 = \"00\"\nto = \"a\"\n",
            "artifact[0].url",
            "expected an http:// or https:// URL",
        ),
        (
            "[[artifact]]\nurl = \"https://x/y\"\nsha256 = \"ABC\"\nto = \"a\"\n",
            "artifact[0].sha256",
            "expected 64 lowercase hex",
        ),
        (
            "[[file]]\nfrom = \"x\"\nto = \"a\"\nmode = 755\n",
            "file[0].mode",
            "octal mode string",
        ),
        (
            "outputs = [\"iso\"]\n",
            "outputs[0]",
            "unknown variant `iso`",
        ),
    ];
    for (text, key, expected) in cases {
        let error = parse_err(text);
        match &error {
            ProfileError::Parse {
                key: found,
                line: Some(_),
                column: Some(_),
                message,
                ..
            } => {
                assert_eq!(found, key, "for {text:?}: {error}");
                assert!(message.contains(expected), "for {text:?}: {error}");
            }
            other => panic!("for {text:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn syntax_errors_have_a_position() {
    let error = parse_err("name = \"x\"\nversion = \n");
    match error {
        ProfileError::Parse {
            line: Some(2),
            column: Some(_),
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn artifact_needs_exactly_one_placement() {
    let sha = "a".repeat(64);
    let both = format!(
        "[[artifact]]\nurl = \"https://x/a.tgz\"\nsha256 = \"{sha}\"\nunpack-to = \"usr\"\nto = \"usr/a\"\n"
    );
    assert!(parse_err(&both).to_string().contains("not both"));
    let neither = format!("[[artifact]]\nurl = \"https://x/a.tgz\"\nsha256 = \"{sha}\"\n");
    assert!(
        parse_err(&neither)
            .to_string()
            .contains("expected `unpack-to")
    );
    let archive = format!(
        "[[artifact]]\nurl = \"https://x/a.tgz\"\nsha256 = \"{sha}\"\nunpack-to = \"usr/lib/cni\"\nstrip-components = 1\n"
    );
    let profile = Profile::parse(&archive, Path::new("p.toml")).expect("archive artifact parses");
    assert_eq!(
        profile.artifacts[0].placement,
        ArtifactPlacement::Unpack {
            dir: "usr/lib/cni".parse().expect("valid path"),
            strip_components: 1
        }
    );
}

#[test]
fn unquoted_dotted_sysctl_keys_are_flattened() -> Result<(), ProfileError> {
    let profile = Profile::parse(
        "[boot.sysctls]\nnet.ipv4.ip_forward = 1\n\"kernel.pid_max\" = \"4194304\"\n",
        Path::new("p.toml"),
    )?;
    let keys: Vec<&str> = profile.boot.sysctls.keys().map(SysctlKey::as_str).collect();
    assert_eq!(keys, ["kernel.pid_max", "net.ipv4.ip_forward"]);
    Ok(())
}

#[test]
fn child_scalars_replace_lists_concatenate_maps_merge() -> Result<(), ProfileError> {
    let dir = Dir::new();
    dir.write("base.toml", MINIMAL);
    let child = dir.write(
        "child.toml",
        r#"
extends = "base.toml"
name = "child"
packages = ["runc", "etcd-server", "containerd", "etcd-server"]
outputs = ["uki"]

[uefi]
package = "systemd-boot-efi"

[kernel]
cmdline = ["console=ttyS0", "cairn.debug"]
modules = ["virtio_net", "overlay"]

[boot]
sysctls = { "vm.swappiness" = 1, "kernel.pid_max" = 4194304 }
"#,
    );
    let profile = Profile::load(&child)?;
    assert_eq!(profile.name.as_str(), "child");
    assert_eq!(profile.version.as_str(), "1.0.0", "inherited scalar");
    let packages: Vec<&str> = profile.packages.iter().map(PackageName::as_str).collect();
    assert_eq!(packages, ["containerd", "runc", "etcd-server"]);
    assert_eq!(profile.cmdline(), "console=ttyS0 quiet cairn.debug");
    let modules: Vec<&str> = profile
        .kernel
        .modules
        .iter()
        .map(ModuleName::as_str)
        .collect();
    assert_eq!(
        modules,
        ["overlay", "squashfs", "br_netfilter", "virtio_net"]
    );
    let sysctls: Vec<(&str, &str)> = profile
        .boot
        .sysctls
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        sysctls,
        [
            ("kernel.pid_max", "4194304"),
            ("net.ipv4.ip_forward", "1"),
            ("vm.swappiness", "1")
        ]
    );
    assert_eq!(
        profile.outputs,
        [Output::Vmlinuz, Output::Initramfs, Output::Uki]
    );
    assert_eq!(profile.sources(), [dir.0.path().join("base.toml"), child]);
    Ok(())
}

#[test]
fn remove_drops_inherited_entries() -> Result<(), ProfileError> {
    let dir = Dir::new();
    dir.write("base.toml", MINIMAL);
    let child = dir.write(
        "child.toml",
        r#"
extends = "base.toml"
packages = ["nftables"]

[remove]
packages = ["containerd"]
excludes = ["usr/share/doc/**"]
file = ["etc/motd"]

[remove.kernel]
cmdline = ["quiet"]

[remove.boot]
sysctls = ["vm.swappiness"]
modules = ["overlay"]
"#,
    );
    let profile = Profile::load(&child)?;
    let packages: Vec<&str> = profile.packages.iter().map(PackageName::as_str).collect();
    assert_eq!(packages, ["runc", "nftables"]);
    assert!(profile.excludes.is_empty());
    assert!(profile.files.is_empty());
    assert_eq!(profile.cmdline(), "console=ttyS0");
    assert_eq!(profile.boot.sysctls.len(), 1);
    assert!(profile.boot.modules.is_empty());
    assert!(!profile.to_toml()?.contains("[remove"));
    Ok(())
}

#[test]
fn removing_something_not_inherited_is_an_error() {
    let dir = Dir::new();
    dir.write("base.toml", MINIMAL);
    let child = dir.write(
        "child.toml",
        "extends = \"base.toml\"\n[remove]\npackages = [\"etcd-server\"]\n",
    );
    let text = load_err(&child).to_string();
    assert!(
        text.contains("child.toml: remove.packages: `etcd-server` is not in"),
        "{text}"
    );

    let root = dir.write("root.toml", "[remove]\npackages = [\"runc\"]\n");
    let text = load_err(&root).to_string();
    assert!(
        text.contains("root.toml: remove: this profile extends nothing"),
        "{text}"
    );
}

#[test]
fn keyed_entries_conflict_unless_removed_first() -> Result<(), ProfileError> {
    let dir = Dir::new();
    dir.write("base.toml", MINIMAL);
    let conflicting = dir.write(
        "conflict.toml",
        "extends = \"base.toml\"\n[[file]]\nfrom = \"other/motd\"\nto = \"etc/motd\"\n",
    );
    let text = load_err(&conflicting).to_string();
    assert!(
        text.contains("conflict.toml: file: `etc/motd` is declared twice"),
        "{text}"
    );
    assert!(text.contains("[remove] file"), "{text}");

    let dotted = dir.write(
        "dotted.toml",
        "extends = \"base.toml\"\n[[file]]\nfrom = \"./files/./motd\"\nto = \"etc/motd\"\nmode = \"0644\"\n",
    );
    assert_eq!(
        Profile::load(&dotted)?.files.len(),
        1,
        "same entry once normalised"
    );

    let replacing = dir.write(
        "replace.toml",
        "extends = \"base.toml\"\n[remove]\nfile = [\"etc/motd\"]\n[[file]]\nfrom = \"other/motd\"\nto = \"etc/motd\"\n",
    );
    let profile = Profile::load(&replacing)?;
    assert_eq!(profile.files.len(), 1);
    assert_eq!(profile.files[0].from, Path::new("other/motd"));

    let identical = dir.write(
        "same.toml",
        "extends = \"base.toml\"\n[[file]]\nfrom = \"files/motd\"\nto = \"etc/motd\"\nmode = \"0644\"\n",
    );
    assert_eq!(Profile::load(&identical)?.files.len(), 1);
    Ok(())
}

#[test]
fn host_paths_are_rebased_onto_the_loaded_profile() -> Result<(), ProfileError> {
    let dir = Dir::new();
    dir.write("profiles/base.toml", MINIMAL);
    let child = dir.write(
        "site/child.toml",
        "extends = \"../profiles/base.toml\"\n[[file]]\nfrom = \"local/issue\"\nto = \"etc/issue\"\n",
    );
    let profile = Profile::load(&child)?;
    assert_eq!(profile.files[0].from, Path::new("../profiles/files/motd"));
    assert_eq!(profile.files[1].from, Path::new("local/issue"));
    assert_eq!(
        profile.host_path(&profile.files[0].from),
        dir.0.path().join("site/../profiles/files/motd")
    );
    Ok(())
}

#[test]
fn extends_cycles_are_reported_with_the_chain() {
    let dir = Dir::new();
    let a = dir.write("a.toml", "extends = \"b.toml\"\n");
    dir.write("b.toml", "extends = \"c.toml\"\n");
    dir.write("c.toml", "extends = \"a.toml\"\n");
    match load_err(&a) {
        ProfileError::ExtendsCycle { chain } => {
            let names: Vec<String> = chain
                .iter()
                .map(|p| {
                    p.file_name()
                        .expect("file name")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            assert_eq!(names, ["a.toml", "b.toml", "c.toml", "a.toml"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let itself = dir.write("self.toml", "extends = \"./self.toml\"\n");
    assert!(matches!(
        load_err(&itself),
        ProfileError::ExtendsCycle { .. }
    ));
}

#[test]
fn missing_parent_names_both_files() {
    let dir = Dir::new();
    let child = dir.write("child.toml", "extends = \"nope.toml\"\n");
    let text = load_err(&child).to_string();
    assert!(text.contains("nope.toml (extended by"), "{text}");
    assert!(text.contains("child.toml)"), "{text}");
}

#[test]
fn parse_errors_in_a_parent_name_the_parent() {
    let dir = Dir::new();
    dir.write("base.toml", "name = \"base\"\nbogus = 1\n");
    let child = dir.write("child.toml", "extends = \"base.toml\"\n");
    let text = load_err(&child).to_string();
    assert!(
        text.contains("base.toml:2:1: bogus: unknown field"),
        "{text}"
    );
}

#[test]
fn whole_profile_checks() {
    let dir = Dir::new();
    let cases = [
        (
            "version = \"1\"\noutputs = [\"vmlinuz\"]\n[kernel]\npackage = \"linux-image-amd64\"\n",
            "name: not set",
        ),
        (
            "name = \"x\"\nversion = \"1\"\noutputs = [\"vmlinuz\"]\n",
            "kernel.package: not set",
        ),
        (
            "name = \"x\"\nversion = \"1\"\n[kernel]\npackage = \"linux-image-amd64\"\n",
            "outputs: expected at least one",
        ),
        (
            "name = \"x\"\nversion = \"1\"\noutputs = [\"disk-raw\"]\n[kernel]\npackage = \"linux-image-amd64\"\n",
            "uefi.package: output `disk-raw` needs the UEFI stub",
        ),
        (
            "name = \"x\"\nversion = \"1\"\noutputs = [\"vmlinuz\"]\n[kernel]\npackage = \"linux-image-amd64\"\ninitramfs-modules = [\"nvme\"]\n",
            "kernel.initramfs-modules: module `nvme` is not carried",
        ),
        (
            "name = \"x\"\nversion = \"1\"\noutputs = [\"vmlinuz\"]\n[kernel]\npackage = \"linux-image-amd64\"\n[boot]\nmodules = [\"overlay\"]\n",
            "boot.modules: module `overlay` is not carried",
        ),
        (
            "name = \"x\"\nversion = \"1\"\noutputs = [\"vmlinuz\"]\n[kernel]\npackage = \"linux-image-amd64\"\n[[workspace-binary]]\nname = \"bootstrap\"\n[[symlink]]\npath = \"/usr/bin/bootstrap\"\ntarget = \"x\"\n",
            "`usr/bin/bootstrap` is also installed by workspace-binary `bootstrap`",
        ),
    ];
    for (index, (text, expected)) in cases.into_iter().enumerate() {
        let path = dir.write(&format!("case{index}.toml"), text);
        let message = load_err(&path).to_string();
        assert!(message.contains(expected), "case {index}: {message}");
        assert!(
            message.contains(&format!("case{index}.toml")),
            "case {index}: {message}"
        );
    }
}

#[test]
fn rendering_round_trips_and_digest_is_stable() -> Result<(), ProfileError> {
    let dir = Dir::new();
    dir.write("base.toml", MINIMAL);
    let sha = "0123456789abcdef".repeat(4);
    let child = dir.write(
        "child.toml",
        &format!(
            r#"
extends = "base.toml"
name = "child"
description = "round trip"
outputs = ["uki", "ipxe"]

[uefi]
package = "systemd-boot-efi"

[boot]
console-shell = true

[[package-filter]]
package = "linux-image-*-cloud-amd64"
include = ["boot/vmlinuz-*", "usr/lib/modules/**"]

[[workspace-binary]]
name = "node-agent"

[[workspace-binary]]
name = "tool"
to = "usr/libexec/cairn/tool"

[[artifact]]
url = "https://example.org/cni.tgz"
sha256 = "{sha}"
unpack-to = "usr/lib/cni"
strip-components = 1

[[artifact]]
url = "https://example.org/etcdctl"
sha256 = "{sha}"
to = "usr/bin/etcdctl"
mode = "0755"

[[symlink]]
path = "usr/bin/kubectl"
target = "bootstrap"

[[oci-image]]
name = "registry.k8s.io/pause"
tag = "3.9"
source = {{ dir = "oci/pause" }}
entrypoint = ["/pause"]

[[oci-image]]
name = "cairn.local/busybox"
tag = "test"
source = {{ packages = ["busybox-static"] }}
"#
        ),
    );
    let profile = Profile::load(&child)?;
    let rendered = profile.to_toml()?;
    assert!(!rendered.contains("extends"), "{rendered}");

    let copy = dir.write("rendered.toml", &rendered);
    let reloaded = Profile::load(&copy)?;
    assert_eq!(reloaded.to_toml()?, rendered);
    assert_eq!(reloaded.digest()?, profile.digest()?);

    let mut changed = profile.clone();
    changed
        .packages
        .push("nftables".parse().expect("valid name"));
    assert_ne!(changed.digest()?, profile.digest()?);
    Ok(())
}

#[test]
fn digest_ignores_how_the_profile_was_split() -> Result<(), ProfileError> {
    let dir = Dir::new();
    let flat = Profile::load(dir.write("flat.toml", MINIMAL))?;
    dir.write(
        "parent.toml",
        "name = \"base\"\nversion = \"1.0.0\"\noutputs = [\"vmlinuz\"]\npackages = [\"containerd\"]\n[kernel]\npackage = \"linux-image-cloud-amd64\"\ncmdline = [\"console=ttyS0\"]\nmodules = [\"overlay\"]\n",
    );
    let layered = Profile::load(dir.write(
        "layered.toml",
        &MINIMAL.replacen("name = \"base\"", "extends = \"parent.toml\"", 1),
    ))?;
    assert_eq!(flat.digest()?, layered.digest()?);
    Ok(())
}

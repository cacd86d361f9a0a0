//! containerd: its configuration, its service, bundled images and one-off
//! containers.
//!
//! Cairn ships Debian 12's containerd 1.6 (config `version = 2`) with runc
//! and the CNI plugins in `/usr/lib/cni`. The node has no systemd, so runc
//! manages cgroups through cgroupfs (`SystemdCgroup = false`). Registry
//! mirrors use containerd's `config_path` layout: one
//! `<config_dir>/certs.d/<registry>/hosts.toml` per registry. All runtime
//! state (the socket, runc's root, ctr's FIFOs) lives under
//! [`ContainerdSettings::state`], and everything persistent under
//! [`ContainerdSettings::root`], so a second containerd (as in tests) can
//! run beside the node's own with nothing shared.
//!
//! Images bundled in the root filesystem (`/usr/lib/cairn/images/*.tar`,
//! OCI archives written by the image builder) are imported into the
//! `k8s.io` namespace at boot, unpacked for the configured snapshotter, so
//! pods start with no registry in reach. Every command goes through
//! [`crate::process::run`] with a timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Readiness, RestartPolicy, ServiceSpec};
use crate::process::{self, ProcessError};

pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";
/// The namespace the CRI plugin (and so the kubelet) uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where the image builder puts bundled image archives.
pub const BUNDLED_IMAGES: &str = "/usr/lib/cairn/images";

const CTR_TIMEOUT: Duration = Duration::from_secs(30);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerdError + '_ {
    move |source| ContainerdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What node-agent configures in containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdSettings {
    /// The pod sandbox image; bundled in the Cairn image.
    pub sandbox_image: String,
    /// `overlayfs` or `native`.
    pub snapshotter: String,
    /// Registry host (`docker.io`) → mirror endpoints, tried in order.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    pub root: PathBuf,
    pub state: PathBuf,
    /// The gRPC socket (the CRI endpoint).
    pub address: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// Holds `config.toml` and `certs.d/`.
    pub config_dir: PathBuf,
}

impl Default for ContainerdSettings {
    fn default() -> Self {
        ContainerdSettings {
            sandbox_image: "registry.k8s.io/pause:3.9".to_owned(),
            snapshotter: "overlayfs".to_owned(),
            registry_mirrors: BTreeMap::new(),
            root: PathBuf::from("/var/lib/containerd"),
            state: PathBuf::from("/run/containerd"),
            address: PathBuf::from("/run/containerd/containerd.sock"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            config_dir: PathBuf::from("/etc/containerd"),
        }
    }
}

impl ContainerdSettings {
    pub fn config_path(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// containerd's `config_path` for registry hosts.
    pub fn certs_dir(&self) -> PathBuf {
        self.config_dir.join("certs.d")
    }

    /// runc's state directory.
    pub fn runc_root(&self) -> PathBuf {
        self.state.join("runc")
    }

    /// Where `ctr run` creates the container's stdio FIFOs.
    pub fn fifo_dir(&self) -> PathBuf {
        self.state.join("fifo")
    }
}

/// A TOML basic string.
fn toml_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(path: &Path) -> String {
    toml_str(&path.to_string_lossy())
}

/// `/etc/containerd/config.toml`.
pub fn render_config(settings: &ContainerdSettings) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"# Written by cairn node-agent at boot; local changes are replaced.
version = 2
root = {root}
state = {state}
# Nothing disabled: the CRI plugin serves the kubelet.
disabled_plugins = []

[grpc]
  address = {address}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {sandbox}

[{cri}.containerd]
  snapshotter = {snapshotter}
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {runc_root}

[{cri}.cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}

[{cri}.registry]
  config_path = {certs}
"#,
        root = toml_path(&settings.root),
        state = toml_path(&settings.state),
        address = toml_path(&settings.address),
        opt = toml_path(&settings.root.join("opt")),
        sandbox = toml_str(&settings.sandbox_image),
        snapshotter = toml_str(&settings.snapshotter),
        runc_root = toml_path(&settings.runc_root()),
        cni_bin = toml_path(&settings.cni_bin_dir),
        cni_conf = toml_path(&settings.cni_conf_dir),
        certs = toml_path(&settings.certs_dir()),
    )
}

/// The upstream endpoint of a registry host (Docker Hub's differs from
/// its name).
fn registry_server(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        _ => with_scheme(registry),
    }
}

fn with_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// `certs.d/<registry>/hosts.toml`: the mirrors in order, then the
/// registry itself.
pub fn render_hosts(registry: &str, mirrors: &[String]) -> String {
    let mut text = format!(
        "# Written by cairn node-agent at boot.\nserver = {}\n",
        toml_str(&registry_server(registry))
    );
    for mirror in mirrors {
        text.push_str(&format!(
            "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
            toml_str(&with_scheme(mirror))
        ));
    }
    text
}

/// Through node-agent's one atomic writer (temp file, fsync, rename).
fn write_atomic(path: &Path, contents: &str) -> Result<(), ContainerdError> {
    crate::system::write_atomic(path, contents.as_bytes(), 0o644).map_err(io_err(path))
}

/// Writes `config.toml` and one `hosts.toml` per mirrored registry;
/// returns the config's path.
pub fn write_config(settings: &ContainerdSettings) -> Result<PathBuf, ContainerdError> {
    let config = settings.config_path();
    for (registry, mirrors) in &settings.registry_mirrors {
        let hosts = settings.certs_dir().join(registry).join("hosts.toml");
        write_atomic(&hosts, &render_hosts(registry, mirrors))?;
    }
    std::fs::create_dir_all(settings.certs_dir()).map_err(io_err(&settings.certs_dir()))?;
    write_atomic(&config, &render_config(settings))?;
    Ok(config)
}

/// The containerd service: ready once its socket accepts connections and
/// `ctr version` gets an answer from the daemon.
pub fn service_spec(settings: &ContainerdSettings) -> ServiceSpec {
    let mut spec = ServiceSpec::new("containerd", CONTAINERD);
    spec.args = vec![
        "--config".to_owned(),
        settings.config_path().to_string_lossy().into_owned(),
    ];
    spec.readiness = Readiness::All(vec![
        Readiness::UnixSocket(settings.address.clone()),
        Readiness::Command {
            program: PathBuf::from(CTR),
            args: vec![
                "--address".to_owned(),
                settings.address.to_string_lossy().into_owned(),
                "version".to_owned(),
            ],
        },
    ]);
    spec.restart = RestartPolicy::Always;
    spec.stop_timeout = Duration::from_secs(15);
    spec
}

/// `ctr --address <socket> [-n <namespace>] <args>`, failing on a
/// non-zero exit.
fn ctr(
    settings: &ContainerdSettings,
    namespace: Option<&str>,
    args: &[&str],
    timeout: Duration,
) -> Result<process::Output, ContainerdError> {
    let mut all = vec![
        "--address".to_owned(),
        settings.address.to_string_lossy().into_owned(),
    ];
    if let Some(namespace) = namespace {
        all.extend(["-n".to_owned(), namespace.to_owned()]);
    }
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let output = process::run(CTR, &all, timeout)?;
    if !output.status.success() {
        return Err(ContainerdError::Command {
            command: format!("{CTR} {}", all.join(" ")),
            status: output.status.to_string(),
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(output)
}

/// Imports every `*.tar` OCI archive in `dir` (sorted by name) into
/// `namespace`, unpacked for the configured snapshotter; returns the image
/// names the namespace holds afterwards. A missing directory imports
/// nothing.
pub fn import_images(
    settings: &ContainerdSettings,
    dir: &Path,
    namespace: &str,
) -> Result<Vec<String>, ContainerdError> {
    let mut archives = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(io_err(dir))?.path();
                if path.extension().is_some_and(|e| e == "tar") && path.is_file() {
                    archives.push(path);
                }
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_err(dir)(error)),
    }
    archives.sort();
    for archive in &archives {
        let archive = archive.to_string_lossy();
        ctr(
            settings,
            Some(namespace),
            &[
                "images",
                "import",
                "--snapshotter",
                &settings.snapshotter,
                &archive,
            ],
            IMPORT_TIMEOUT,
        )?;
    }
    let list = ctr(
        settings,
        Some(namespace),
        &["images", "list", "--quiet"],
        CTR_TIMEOUT,
    )?;
    Ok(list
        .stdout_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// What a one-off container printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOutput {
    /// The container's exit code (`ctr`'s own when it failed before the
    /// container ran; 128 + signal for a signal).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cairn-run-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `image` with `args` in the `k8s.io` namespace (`ctr run --rm`)
/// and collects its output. After `timeout` the container's task and the
/// container are removed and [`ProcessError::Timeout`] is returned.
pub fn run_container(
    settings: &ContainerdSettings,
    image: &str,
    args: &[impl AsRef<str>],
    timeout: Duration,
) -> Result<ContainerOutput, ContainerdError> {
    let id = unique_id();
    let fifo_dir = settings.fifo_dir();
    std::fs::create_dir_all(&fifo_dir).map_err(io_err(&fifo_dir))?;
    let address = settings.address.to_string_lossy().into_owned();
    let fifo = fifo_dir.to_string_lossy().into_owned();
    let runc_root = settings.runc_root().to_string_lossy().into_owned();
    let mut all: Vec<&str> = vec![
        "--address",
        &address,
        "-n",
        K8S_NAMESPACE,
        "run",
        "--rm",
        "--snapshotter",
        &settings.snapshotter,
        "--fifo-dir",
        &fifo,
        "--runc-root",
        &runc_root,
        image,
        &id,
    ];
    all.extend(args.iter().map(AsRef::as_ref));
    match process::run(CTR, &all, timeout) {
        Ok(output) => {
            let exit_code = match output.status {
                process::ExitStatus::Exited(code) => code,
                process::ExitStatus::Signaled { signal, .. } => 128 + signal as i32,
            };
            Ok(ContainerOutput {
                exit_code,
                stdout: output.stdout_text(),
                stderr: output.stderr_text(),
            })
        }
        Err(error) => {
            remove_container(settings, &id);
            Err(error.into())
        }
    }
}

/// Best effort: kill and delete a container's task, then the container
/// and its snapshot.
fn remove_container(settings: &ContainerdSettings, id: &str) {
    let ns = Some(K8S_NAMESPACE);
    let _ = ctr(
        settings,
        ns,
        &["tasks", "kill", "--signal", "SIGKILL", id],
        CTR_TIMEOUT,
    );
    let _ = ctr(
        settings,
        ns,
        &["tasks", "delete", "--force", id],
        CTR_TIMEOUT,
    );
    let _ = ctr(settings, ns, &["containers", "delete", id], CTR_TIMEOUT);
}

/// The installed containerd's version (`1.6.20~ds1`), from
/// `containerd --version`.
pub fn version() -> Result<String, ContainerdError> {
    let output = process::run(CONTAINERD, ["--version"], CTR_TIMEOUT)?;
    if !output.status.success() {
        return Err(ContainerdError::Command {
            command: format!("{CONTAINERD} --version"),
            status: output.status.to_string(),
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    let text = output.stdout_text();
    let line = text.lines().next().unwrap_or("").trim();
    // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
    Ok(line.split_whitespace().nth(2).unwrap_or(line).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_carries_the_settings() {
        let mut settings = ContainerdSettings {
            snapshotter: "native".to_owned(),
            root: PathBuf::from("/tmp/x \"quoted\"/root"),
            ..ContainerdSettings::default()
        };
        settings
            .registry_mirrors
            .insert("docker.io".to_owned(), vec!["mirror.local:5000".to_owned()]);
        let text = render_config(&settings);
        let value: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(value["version"].as_integer(), Some(2));
        assert_eq!(value["root"].as_str(), Some("/tmp/x \"quoted\"/root"));
        assert_eq!(value["state"].as_str(), Some("/run/containerd"));
        assert_eq!(
            value["grpc"]["address"].as_str(),
            Some("/run/containerd/containerd.sock")
        );
        let disabled = value["disabled_plugins"].as_array().expect("array");
        assert!(
            !disabled
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.contains("cri")))
        );
        let cri = &value["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(
            cri["sandbox_image"].as_str(),
            Some("registry.k8s.io/pause:3.9")
        );
        assert_eq!(cri["containerd"]["snapshotter"].as_str(), Some("native"));
        let runc = &cri["containerd"]["runtimes"]["runc"];
        assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
        assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(false));
        assert_eq!(
            runc["options"]["Root"].as_str(),
            Some("/run/containerd/runc")
        );
        assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
        assert_eq!(cri["cni"]["conf_dir"].as_str(), Some("/etc/cni/net.d"));
        assert_eq!(
            cri["registry"]["config_path"].as_str(),
            Some("/etc/containerd/certs.d")
        );
    }

    #[test]
    fn hosts_list_mirrors_before_the_registry() {
        let text = render_hosts(
            "docker.io",
            &["mirror.local:5000".to_owned(), "http://10.0.0.1".to_owned()],
        );
        let value: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(
            value["server"].as_str(),
            Some("https://registry-1.docker.io")
        );
        let hosts = value["host"].as_table().expect("hosts");
        assert!(hosts.contains_key("https://mirror.local:5000"));
        assert!(hosts.contains_key("http://10.0.0.1"));
        assert_eq!(
            hosts["http://10.0.0.1"]["capabilities"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert!(text.find("mirror.local") < text.find("10.0.0.1"));
    }

    #[test]
    fn config_and_hosts_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = ContainerdSettings {
            config_dir: dir.path().join("etc"),
            ..ContainerdSettings::default()
        };
        settings
            .registry_mirrors
            .insert("registry.k8s.io".to_owned(), vec!["m.local".to_owned()]);
        let path = write_config(&settings).expect("written");
        assert_eq!(path, dir.path().join("etc/config.toml"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("config"),
            render_config(&settings)
        );
        let hosts =
            std::fs::read_to_string(dir.path().join("etc/certs.d/registry.k8s.io/hosts.toml"))
                .expect("hosts");
        assert!(hosts.contains("server = \"https://registry.k8s.io\""));
    }
}

//! Shared by the end-to-end tests: a real etcd (TLS, client
//! certificates) and the `control-plane apiserver` binary on loopback, with
//! a PKI from `cairn_pki::generate`, driven by stock kubectl binaries with
//! the generated kubeconfigs.

#![allow(dead_code)]

#[path = "../../../apiserver/tests/storage_common/etcd_fixture.rs"]
#[allow(dead_code)]
pub mod etcd_fixture;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_pki::{ClusterPkiSpec, KubeconfigFile, PkiPaths};
use etcd_fixture::EtcdFixture;
use serde_json::Value;

/// The service range the apiserver gets unless a test names its own.
const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

pub struct Apiserver {
    /// `None` while stopped.
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub pki: PkiPaths,
    pub kubeconfigs: PathBuf,
    etcd_endpoint: String,
    etcd_pki: PathBuf,
    extra_args: Vec<String>,
}

/// The runtime the etcd fixture lives on (one worker: the tests drive
/// the binaries from their own thread).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A real etcd and the apiserver binary on it (not yet waited for); drop
/// them in reverse order (server, etcd, runtime), as locals bound in this
/// order are.
pub fn etcd_and_apiserver() -> (tokio::runtime::Runtime, EtcdFixture, Apiserver) {
    let runtime = runtime();
    let etcd = runtime.block_on(EtcdFixture::start());
    let server = Apiserver::start(&etcd);
    (runtime, etcd, server)
}

/// The last 40 lines of a log file under a `--- title ---` line.
pub fn log_tail(path: &Path, title: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(40);
    format!("--- {title} ---\n{}", lines[start..].join("\n"))
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Apiserver {
    pub fn start(etcd: &EtcdFixture) -> Self {
        Self::start_with(etcd, &[])
    }

    /// Starts the apiserver with `extra` flags after the usual ones (a
    /// `--service-cluster-ip-range` there replaces the default range).
    pub fn start_with(etcd: &EtcdFixture, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ClusterPkiSpec::new(
            "cp-1".parse().expect("node name"),
            "127.0.0.1".parse().expect("ip"),
        );
        let kubeconfigs = dir.path().join("kube");
        let pki = PkiPaths::new(dir.path().join("pki"), Some(kubeconfigs.clone()));
        cairn_pki::generate(&spec, &pki, time::OffsetDateTime::now_utc()).expect("generate PKI");
        let mut server = Self {
            child: None,
            dir,
            port: free_port(),
            pki,
            kubeconfigs,
            etcd_endpoint: etcd.endpoint(),
            etcd_pki: etcd.pki(),
            extra_args: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        for file in [KubeconfigFile::Admin, KubeconfigFile::Kubelet] {
            server.localize(file);
        }
        server.spawn();
        server
    }

    /// Starts the binary (again, after [`Self::stop`]) on the same port,
    /// PKI and etcd; the log is appended to.
    pub fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let own_range = self
            .extra_args
            .iter()
            .any(|a| a == "--service-cluster-ip-range");
        let child = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .arg("apiserver")
            .args(["--etcd-servers", &self.etcd_endpoint])
            .arg("--etcd-cafile")
            .arg(self.etcd_pki.join("etcd/ca.crt"))
            .arg("--etcd-certfile")
            .arg(self.etcd_pki.join("apiserver-etcd-client.crt"))
            .arg("--etcd-keyfile")
            .arg(self.etcd_pki.join("apiserver-etcd-client.key"))
            .arg("--tls-cert-file")
            .arg(self.pki.cert("apiserver"))
            .arg("--tls-private-key-file")
            .arg(self.pki.key("apiserver"))
            .arg("--client-ca-file")
            .arg(self.pki.cert("ca"))
            .arg("--service-account-key-file")
            .arg(self.pki.cert_dir.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(self.pki.cert_dir.join("sa.key"))
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .args(if own_range {
                Vec::new()
            } else {
                vec!["--service-cluster-ip-range", DEFAULT_SERVICE_CIDR]
            })
            .args(["--secure-port", &self.port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--advertise-address", "127.0.0.1"])
            .args(&self.extra_args)
            .env("RUST_LOG", "info,cairn_apiserver=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start control-plane apiserver");
        self.child = Some(child);
    }

    /// Kills the binary (a no-op when stopped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status once the binary has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("apiserver.log")
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), "apiserver log tail")
    }

    /// A copy of a generated kubeconfig pointing at this server's port.
    pub fn localize(&self, file: KubeconfigFile) {
        let path = self.pki.kubeconfig(file).expect("kubeconfig path");
        let text = std::fs::read_to_string(&path).expect("kubeconfig");
        let rewritten: Vec<String> = text
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with("server:") {
                    let indent = &line[..line.len() - trimmed.len()];
                    format!("{indent}server: https://127.0.0.1:{}", self.port)
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(self.local_kubeconfig(file), rewritten.join("\n")).expect("write");
    }

    pub fn local_kubeconfig(&self, file: KubeconfigFile) -> PathBuf {
        let name = self
            .pki
            .kubeconfig(file)
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
            .expect("kubeconfig name");
        self.kubeconfigs
            .join(format!("local-{}", name.to_string_lossy()))
    }

    pub fn wait_ready(&mut self, kubectl: &Path) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.exited() {
                panic!("apiserver exited with {status}\n{}", self.log_tail());
            }
            let out = self.kubectl_as(kubectl, KubeconfigFile::Admin, &["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn command(&self, kubectl: &Path, kubeconfig: &Path) -> Command {
        let mut command = Command::new(kubectl);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join(format!(
                "cache-{}",
                kubectl.file_name().and_then(|n| n.to_str()).unwrap_or("k")
            )))
            .args(["--request-timeout", "30s"])
            .env_remove("KUBECONFIG");
        command
    }

    pub fn kubectl_as(&self, kubectl: &Path, file: KubeconfigFile, args: &[&str]) -> Output {
        self.command(kubectl, &self.local_kubeconfig(file))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl as the admin; panics with its stderr and the server
    /// log when it fails.
    pub fn ok(&self, kubectl: &Path, args: &[&str]) -> String {
        let out = self.kubectl_as(kubectl, KubeconfigFile::Admin, args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl as the admin and expects it to fail; returns stderr.
    pub fn fails(&self, kubectl: &Path, file: KubeconfigFile, args: &[&str]) -> String {
        let out = self.kubectl_as(kubectl, file, args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `GET path` with a bearer token (and no client certificate) through
    /// curl: the answer as JSON.
    pub fn get_with_token(&self, token: &str, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "-H", &format!("Authorization: Bearer {token}")])
            .arg("--cacert")
            .arg(self.pki.cert("ca"))
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl");
        json(&String::from_utf8_lossy(&out.stdout))
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

pub fn kubectl_binary(version: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let real = std::fs::canonicalize(dir.join("kubectl")).ok()?;
        let versioned = real.parent()?.join(format!("kubectl.{version}"));
        versioned.is_file().then_some(versioned)
    })
}

/// The installed kubectl binaries of `versions` (`kubectl.<version>`
/// next to `kubectl` on PATH), in that order.
pub fn kubectl_versions(versions: &[&'static str]) -> Vec<(&'static str, PathBuf)> {
    versions
        .iter()
        .filter_map(|v| kubectl_binary(v).map(|b| (*v, b)))
        .collect()
}

/// `kubectl.1.33`, else `kubectl.1.27`, else the plain `kubectl` on PATH.
pub fn any_kubectl() -> Option<PathBuf> {
    kubectl_binary("1.33")
        .or_else(|| kubectl_binary("1.27"))
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
}

/// `control-plane controller-manager` with the production flags (plus a
/// test's own), logging to `<name>.log` next to the apiserver's; killed on
/// drop.
pub struct ControllerManager {
    pub child: Child,
    pub log_path: PathBuf,
    pub name: String,
}

impl ControllerManager {
    pub fn start(server: &Apiserver, name: &str, extra: &[&str]) -> Self {
        server.localize(KubeconfigFile::ControllerManager);
        let log_path = server.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let ca = server.pki.cert("ca");
        let child = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(server.local_kubeconfig(KubeconfigFile::ControllerManager))
            .arg("--cluster-signing-cert-file")
            .arg(&ca)
            .arg("--cluster-signing-key-file")
            .arg(server.pki.key("ca"))
            .arg("--root-ca-file")
            .arg(&ca)
            .args(extra)
            .env("RUST_LOG", "info,cairn_control_plane=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start control-plane controller-manager");
        Self {
            child,
            log_path,
            name: name.to_owned(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, &format!("{} log tail", self.name))
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}\n{}", self.name, self.log_tail());
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

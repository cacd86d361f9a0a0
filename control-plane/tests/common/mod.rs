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
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_pki::{ClusterPkiSpec, KubeconfigFile, PkiPaths};
use etcd_fixture::EtcdFixture;
use serde_json::Value;

pub struct Apiserver {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub pki: PkiPaths,
    pub kubeconfigs: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Apiserver {
    pub fn start(etcd: &EtcdFixture) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ClusterPkiSpec::new(
            "cp-1".parse().expect("node name"),
            "127.0.0.1".parse().expect("ip"),
        );
        let kubeconfigs = dir.path().join("kube");
        let pki = PkiPaths::new(dir.path().join("pki"), Some(kubeconfigs.clone()));
        cairn_pki::generate(&spec, &pki, time::OffsetDateTime::now_utc()).expect("generate PKI");
        let port = free_port();
        let etcd_pki = etcd.pki();
        let log = std::fs::File::create(dir.path().join("apiserver.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .arg("apiserver")
            .args(["--etcd-servers", &etcd.endpoint()])
            .arg("--etcd-cafile")
            .arg(etcd_pki.join("etcd/ca.crt"))
            .arg("--etcd-certfile")
            .arg(etcd_pki.join("apiserver-etcd-client.crt"))
            .arg("--etcd-keyfile")
            .arg(etcd_pki.join("apiserver-etcd-client.key"))
            .arg("--tls-cert-file")
            .arg(pki.cert("apiserver"))
            .arg("--tls-private-key-file")
            .arg(pki.key("apiserver"))
            .arg("--client-ca-file")
            .arg(pki.cert("ca"))
            .arg("--service-account-key-file")
            .arg(pki.cert_dir.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(pki.cert_dir.join("sa.key"))
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .args(["--service-cluster-ip-range", "10.96.0.0/12"])
            .args(["--secure-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--advertise-address", "127.0.0.1"])
            .env("RUST_LOG", "info,cairn_apiserver=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start control-plane apiserver");
        let server = Self {
            child,
            dir,
            port,
            pki,
            kubeconfigs,
        };
        for file in [KubeconfigFile::Admin, KubeconfigFile::Kubelet] {
            server.localize(file);
        }
        server
    }

    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("--- apiserver log tail ---\n{}", lines[start..].join("\n"))
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
            if let Ok(Some(status)) = self.child.try_wait() {
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

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

//! A real etcd for tests: `/usr/bin/etcd` on 127.0.0.1 with free ports, a
//! temporary data dir and TLS with client-certificate auth from a PKI made
//! by `cairn_pki::generate` (the kubeadm layout). Killed on drop; its log
//! tail is printed when a test panics.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_apiserver::storage::{EtcdConfig, EtcdStorage, Storage};
use cairn_pki::{ClusterPkiSpec, NodeName, PkiPaths};

pub const ETCD_BINARY: &str = "/usr/bin/etcd";
/// How long etcd may take to become healthy.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct EtcdFixture {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client_port: u16,
    pub peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

impl EtcdFixture {
    /// Generates the PKI and starts etcd; waits until it serves.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = ClusterPkiSpec::new(
            "storage-test".parse::<NodeName>().expect("node name"),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        cairn_pki::generate(
            &spec,
            &PkiPaths::new(dir.path().join("pki"), None),
            time::OffsetDateTime::now_utc(),
        )
        .expect("generate PKI");
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let mut fixture = Self {
            child: None,
            dir,
            client_port,
            peer_port,
        };
        fixture.spawn();
        fixture.wait_healthy().await;
        fixture
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// kube-apiserver's view: `--etcd-servers`, `--etcd-cafile`,
    /// `--etcd-certfile`, `--etcd-keyfile`.
    pub fn config(&self) -> EtcdConfig {
        let pki = self.pki();
        EtcdConfig::from_files(
            &self.endpoint(),
            Some(&pki.join("etcd/ca.crt")),
            Some(&pki.join("apiserver-etcd-client.crt")),
            Some(&pki.join("apiserver-etcd-client.key")),
        )
        .expect("etcd config")
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(2))
    }

    pub async fn storage(&self) -> EtcdStorage {
        EtcdStorage::connect(self.config()).await.expect("connect")
    }

    fn spawn(&mut self) {
        let pki = self.pki();
        let p = |rel: &str| pki.join(rel).display().to_string();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log");
        let log_err = log.try_clone().expect("etcd log");
        let child = Command::new(ETCD_BINARY)
            .args(["--name", "storage-test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("storage-test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--cert-file", &p("etcd/server.crt")])
            .args(["--key-file", &p("etcd/server.key")])
            .args(["--trusted-ca-file", &p("etcd/ca.crt")])
            .arg("--client-cert-auth")
            .args(["--experimental-watch-progress-notify-interval", "300ms"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// Kills etcd (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to this fixture's etcd process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("etcd running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Starts etcd again on the same data dir and ports; waits until it
    /// serves.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let storage = self.storage().await;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let last = match storage.health().await {
                Ok(()) => return,
                Err(e) => e,
            };
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd not healthy within {START_DEADLINE:?}: {last}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 40)
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!("--- etcd log tail ---\n{}", all[start..].join("\n"))
}

impl Drop for EtcdFixture {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

//! Test PKI, a recording `NodeService` double and a raw TLS client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_node_api::{
    ApiError, ApiEvent, ApiServer, ApiServerHandle, Caller, NodeService, NodeState, NodeStatus,
    ResetRequest, ResetResponse, RunContainerRequest, RunContainerResponse, ServerIdentity,
    ServerOptions, ServiceState, ServiceStatus,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A test CA.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self { issuer }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate: (cert PEM, key PEM).
    pub fn client(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `sans`: (cert PEM, key PEM).
    pub fn server(&self, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("SANs");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// What the double saw.
#[derive(Debug, Default)]
pub struct Record {
    pub calls: Vec<(String, Caller)>,
    pub configs: Vec<String>,
    /// (caller, status) of every answered request.
    pub requests: Vec<(Option<Caller>, String, String, u16)>,
    pub failures: Vec<String>,
    pub rejected: usize,
}

pub const BAD_CONFIG_PROBLEMS: [&str; 2] = [
    "api: cluster.name: must not be empty",
    "api: node.addresses[0]: \"10.0.0.300/24\" is not an IPv4 CIDR",
];

#[derive(Debug, Default)]
pub struct Double {
    pub record: Mutex<Record>,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Double {
    pub fn new() -> Arc<Self> {
        let mut files = BTreeMap::new();
        files.insert("/etc/os-release".to_string(), b"ID=cairn\n".to_vec());
        files.insert(
            "/var/big".to_string(),
            vec![b'x'; cairn_node_api::MAX_READ_BYTES + 1],
        );
        Arc::new(Self {
            record: Mutex::new(Record::default()),
            files,
        })
    }

    fn note(&self, call: &str, caller: &Caller) {
        self.record
            .lock()
            .expect("record lock")
            .calls
            .push((call.to_string(), caller.clone()));
    }

    pub fn calls(&self) -> Vec<(String, Caller)> {
        self.record.lock().expect("record lock").calls.clone()
    }
}

pub fn sample_status() -> NodeStatus {
    let mut status = NodeStatus {
        hostname: "node-1".into(),
        state: NodeState::Maintenance,
        addresses: vec!["10.5.0.11/24".into()],
        ..NodeStatus::default()
    };
    status.services.insert(
        "containerd".into(),
        ServiceStatus {
            state: ServiceState::Running,
            pid: Some(42),
            restarts: 1,
            last_exit: Some("exit status 1".into()),
            ready: true,
        },
    );
    status.checks.insert(
        "root-write".into(),
        "refused: Read-only file system (os error 30)".into(),
    );
    status
}

impl NodeService for Double {
    fn status(&self, caller: &Caller) -> NodeStatus {
        self.note("status", caller);
        sample_status()
    }

    fn logs(&self, caller: &Caller, service: &str, lines: usize) -> Result<String, ApiError> {
        self.note(&format!("logs {service} {lines}"), caller);
        match service {
            "panic" => panic!("the double was asked to panic"),
            "node-agent" | "kubelet" => Ok((1..=lines.min(3))
                .map(|i| format!("{service} line {i}\n"))
                .collect()),
            other => Err(ApiError::not_found(format!("no service {other}"))),
        }
    }

    fn read_file(
        &self,
        caller: &Caller,
        path: &Path,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ApiError> {
        self.note(&format!("read {} {max_bytes}", path.display()), caller);
        self.files
            .get(path.to_str().unwrap_or_default())
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("{}: no such file", path.display())))
    }

    fn apply_config(&self, caller: &Caller, toml: &str) -> Result<(), ApiError> {
        self.note("apply_config", caller);
        if toml.contains("bad") {
            return Err(ApiError::invalid_config(
                BAD_CONFIG_PROBLEMS.iter().map(|s| s.to_string()).collect(),
            ));
        }
        if toml.contains("busy") {
            return Err(ApiError::conflict("the node is not in maintenance mode"));
        }
        self.record
            .lock()
            .expect("record lock")
            .configs
            .push(toml.to_string());
        Ok(())
    }

    fn reboot(&self, caller: &Caller) {
        self.note("reboot", caller);
    }

    fn shutdown(&self, caller: &Caller) {
        self.note("shutdown", caller);
    }

    fn reset(&self, caller: &Caller, request: &ResetRequest) -> Result<ResetResponse, ApiError> {
        self.note(&format!("reset graceful={}", request.graceful), caller);
        if !request.reboot {
            return Err(ApiError::conflict("reset refused: etcd would lose quorum"));
        }
        Ok(ResetResponse {
            steps: vec!["Node node-1 deleted".into()],
        })
    }

    fn reset_finish(&self, caller: &Caller, request: &ResetRequest) {
        self.note(&format!("reset_finish reboot={}", request.reboot), caller);
    }

    fn run_container(
        &self,
        caller: &Caller,
        request: &RunContainerRequest,
    ) -> Result<RunContainerResponse, ApiError> {
        self.note(&format!("run {}", request.image), caller);
        Ok(RunContainerResponse {
            exit_code: 3,
            stdout: request.args.join(" "),
            stderr: "warning\n".into(),
        })
    }

    fn event(&self, event: &ApiEvent<'_>) {
        let mut record = self.record.lock().expect("record lock");
        match event {
            ApiEvent::Request {
                caller,
                method,
                path,
                status,
                ..
            } => record.requests.push((
                caller.cloned(),
                method.to_string(),
                path.to_string(),
                *status,
            )),
            ApiEvent::ConnectionFailed { error, .. } => record.failures.push(error.clone()),
            ApiEvent::ConnectionRejected { .. } => record.rejected += 1,
        }
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server with a fresh self-signed identity on an ephemeral port.
pub fn start(double: &Arc<Double>) -> ApiServerHandle {
    start_with(
        double,
        ServerIdentity::generate(&["127.0.0.1"]).expect("identity"),
        ServerOptions::default(),
    )
}

pub fn start_with(
    double: &Arc<Double>,
    identity: ServerIdentity,
    options: ServerOptions,
) -> ApiServerHandle {
    ApiServer::start_with(loopback(), identity, double.clone(), options).expect("server starts")
}

/// Sends raw bytes over TLS (trusting `ca_pem` for 127.0.0.1) and returns
/// the raw answer (empty if the server closed without one).
pub fn raw_tls_exchange(addr: SocketAddr, ca_pem: &str, bytes: &[u8]) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // The server may stop reading (oversized input) before all is written.
    let _ = stream.write_all(bytes).and_then(|()| stream.flush());
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw answer.
pub fn status_of(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1)?.parse().ok()
}

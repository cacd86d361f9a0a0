//! `bootstrap init` and `bootstrap join`, run as the real binary.
//!
//! Rendered configs are read back with cairn-config (the parser node-agent
//! uses) and compared with the flags; refusals must name the flag. Applying
//! goes to a real node API server (cairn-node-api's `ApiServer` over TLS on
//! loopback, with a maintenance key set, as node-agent runs it in
//! maintenance mode) backed by a recording `NodeService` double, built the
//! way node-api's own tests build theirs.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use cairn_config::{Addressing, MachineConfig, NodeRole};
use cairn_node_api::{
    ApiError, ApiServer, ApiServerHandle, Caller, MaintenanceKey, NodeService, NodeState,
    NodeStatus, RunContainerRequest, RunContainerResponse, ServerIdentity,
};

const TOKEN: &str = "abcdef.0123456789abcdef";
const CERT_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn pin() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

fn bootstrap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bootstrap")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed and returns its output.
fn succeeds(args: &[&str]) -> Output {
    let output = bootstrap(args);
    assert!(
        output.status.success(),
        "bootstrap {args:?} failed\nstdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Runs a command that must fail and returns its stderr.
fn fails(args: &[&str]) -> String {
    let output = bootstrap(args);
    assert!(
        !output.status.success(),
        "bootstrap {args:?} succeeded, expected a refusal\nstdout: {}",
        stdout(&output)
    );
    stderr(&output)
}

fn parse(text: &str) -> MachineConfig {
    MachineConfig::parse(text, "test").unwrap_or_else(|e| panic!("{e}\n--- config:\n{text}"))
}

/// The recording double behind the node API: a node in maintenance mode.
#[derive(Default)]
struct MaintenanceNode {
    configs: Mutex<Vec<String>>,
    /// The cluster CA the node "creates" after its config was applied;
    /// the first read after that still finds nothing, as on a node whose
    /// certs phase has not run yet.
    cluster_ca: Mutex<Option<String>>,
    ca_reads: Mutex<Vec<Caller>>,
}

impl MaintenanceNode {
    fn configs(&self) -> Vec<String> {
        self.configs.lock().expect("configs lock").clone()
    }
}

impl NodeService for MaintenanceNode {
    fn status(&self, _caller: &Caller) -> NodeStatus {
        NodeStatus {
            hostname: "maintenance".into(),
            state: NodeState::Maintenance,
            ..NodeStatus::default()
        }
    }

    fn logs(&self, _caller: &Caller, service: &str, _lines: usize) -> Result<String, ApiError> {
        Err(ApiError::not_found(format!("no service {service}")))
    }

    fn read_file(
        &self,
        caller: &Caller,
        path: &Path,
        _max_bytes: usize,
    ) -> Result<Vec<u8>, ApiError> {
        let missing = || ApiError::not_found(format!("{}: no such file", path.display()));
        if path != Path::new("/etc/kubernetes/pki/ca.crt") || self.configs().is_empty() {
            return Err(missing());
        }
        let mut reads = self.ca_reads.lock().expect("reads lock");
        reads.push(caller.clone());
        if reads.len() == 1 {
            return Err(missing());
        }
        let ca = self.cluster_ca.lock().expect("ca lock").clone();
        ca.map(String::into_bytes).ok_or_else(missing)
    }

    fn apply_config(&self, _caller: &Caller, toml: &str) -> Result<(), ApiError> {
        // Refuse what node-agent would refuse, with its problem lines.
        if let Err(e) = MachineConfig::parse(toml, "api") {
            return Err(ApiError::invalid_config(vec![e.to_string()]));
        }
        self.configs
            .lock()
            .expect("configs lock")
            .push(toml.to_owned());
        Ok(())
    }

    fn reboot(&self, _caller: &Caller) {}

    fn shutdown(&self, _caller: &Caller) {}

    fn run_container(
        &self,
        _caller: &Caller,
        _request: &RunContainerRequest,
    ) -> Result<RunContainerResponse, ApiError> {
        Err(ApiError::forbidden("not in this test"))
    }
}

/// A node API in maintenance mode on loopback: (server, double, key).
fn maintenance_node() -> (ApiServerHandle, Arc<MaintenanceNode>, MaintenanceKey) {
    let double = Arc::new(MaintenanceNode::default());
    let identity = ServerIdentity::generate(&["127.0.0.1"]).expect("identity");
    let server = ApiServer::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        identity,
        double.clone(),
    )
    .expect("node API starts");
    let key = MaintenanceKey::generate().expect("key");
    server.set_maintenance_key(Some(key.clone()));
    (server, double, key)
}

/// A real CA certificate made by `bootstrap certs generate`.
fn make_ca(dir: &Path) -> std::path::PathBuf {
    let cert_dir = dir.join("pki");
    succeeds(&[
        "certs",
        "generate",
        "--cert-dir",
        cert_dir.to_str().expect("utf-8"),
        "--skip-kubeconfigs",
        "--node-name",
        "admin",
        "--apiserver-advertise-address",
        "10.0.0.1",
    ]);
    cert_dir
}

#[test]
fn init_print_config_holds_what_the_flags_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = make_ca(dir.path());
    let ca = cert_dir.join("ca.crt");
    let output = succeeds(&[
        "init",
        "--node-name",
        "cp-1",
        "--address",
        "10.5.0.11/24",
        "--gateway",
        "10.5.0.1",
        "--interface",
        "eth0",
        "--control-plane-endpoint",
        "10.5.0.10:6443",
        "--pod-network-cidr",
        "10.200.0.0/16",
        "--service-cidr",
        "10.100.0.0/16",
        "--service-dns-domain",
        "example.internal",
        "--apiserver-cert-extra-sans",
        "k8s.example.org,10.9.9.9",
        "--token",
        TOKEN,
        "--upload-certs",
        "--certificate-key",
        CERT_KEY,
        "--vip",
        "10.5.0.10",
        "--vip-interface",
        "eth0",
        "--client-ca",
        ca.to_str().expect("utf-8"),
        "--print-config",
    ]);
    let config = parse(&stdout(&output));
    assert_eq!(config.node.name.as_ref().map(|n| n.as_str()), Some("cp-1"));
    assert_eq!(config.node.role, NodeRole::ControlPlane);
    assert_eq!(
        config
            .node
            .interface
            .as_ref()
            .map(|i| i.to_string())
            .as_deref(),
        Some("eth0")
    );
    match &config.node.addressing {
        Addressing::Static { addresses, gateway } => {
            assert_eq!(
                addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                ["10.5.0.11/24"]
            );
            assert_eq!(gateway.map(|g| g.to_string()).as_deref(), Some("10.5.0.1"));
        }
        other => panic!("expected static addressing, got {other:?}"),
    }
    assert!(config.join.is_none());
    let cluster = config.cluster.as_ref().expect("[cluster]");
    assert_eq!(
        cluster
            .control_plane_endpoint
            .as_ref()
            .map(|e| e.to_string())
            .as_deref(),
        Some("10.5.0.10:6443")
    );
    assert_eq!(
        cluster.pod_network_cidr.map(|c| c.to_string()).as_deref(),
        Some("10.200.0.0/16")
    );
    assert_eq!(
        cluster.service_cidr.map(|c| c.to_string()).as_deref(),
        Some("10.100.0.0/16")
    );
    assert_eq!(
        cluster.effective_service_dns_domain().as_str(),
        "example.internal"
    );
    assert_eq!(
        cluster.apiserver_cert_extra_sans,
        ["k8s.example.org", "10.9.9.9"]
            .map(|san| san.parse::<cairn_pki::SubjectAltName>().expect("SAN"))
    );
    assert_eq!(
        cluster.token.as_ref().map(|t| t.to_string()).as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        cluster
            .certificate_key
            .as_ref()
            .map(|k| k.to_string())
            .as_deref(),
        Some(CERT_KEY)
    );
    let vip = cluster.vip.as_ref().expect("[cluster.vip]");
    assert_eq!(vip.address.to_string(), "10.5.0.10");
    assert_eq!(vip.interface.to_string(), "eth0");
    let ca_pem = std::fs::read_to_string(&ca).expect("ca.crt");
    assert_eq!(
        config.api.client_ca.as_ref().map(|c| c.as_pem().trim()),
        Some(ca_pem.trim())
    );
    // The notes go to stderr, so stdout stays a clean config; they give the
    // join commands with the token, the key and the VIP.
    let notes = stderr(&output);
    assert!(notes.contains(&format!("bootstrap join 10.5.0.10:6443 --token {TOKEN} --discovery-token-ca-cert-hash <shown on the node's console")), "{notes}");
    assert!(
        notes.contains(&format!(
            "--control-plane --certificate-key {CERT_KEY} --vip 10.5.0.10 --vip-interface eth0"
        )),
        "{notes}"
    );
    assert!(notes.contains("bootstrap certs ca-hash"), "{notes}");
}

#[test]
fn init_generates_the_token_and_key_it_prints() {
    let output = succeeds(&[
        "init",
        "--node-name",
        "cp-1",
        "--dhcp",
        "--upload-certs",
        "--print-config",
    ]);
    let config = parse(&stdout(&output));
    assert_eq!(config.node.addressing, Addressing::Dhcp);
    let cluster = config.cluster.expect("[cluster]");
    let token = cluster.token.expect("a generated token").to_string();
    let key = cluster
        .certificate_key
        .expect("a generated key")
        .to_string();
    let notes = stderr(&output);
    assert!(
        notes.contains(&format!("bootstrap token: {token}")),
        "{notes}"
    );
    assert!(
        notes.contains(&format!("certificate key: {key}")),
        "{notes}"
    );
    assert!(notes.contains(&format!("--token {token}")), "{notes}");

    // Without --upload-certs there is no key, and the notes say control
    // planes cannot join.
    let output = succeeds(&["init", "--node-name", "cp-1", "--dhcp", "--print-config"]);
    let config = parse(&stdout(&output));
    assert!(config.cluster.expect("[cluster]").certificate_key.is_none());
    assert!(
        stderr(&output).contains("add --upload-certs"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn join_skip_discovery_renders_worker_and_control_plane_configs() {
    let pin = pin();
    let output = succeeds(&[
        "join",
        "10.5.0.10",
        "--token",
        TOKEN,
        "--discovery-token-ca-cert-hash",
        &pin,
        "--node-name",
        "worker-1",
        "--dhcp",
        "--skip-discovery",
        "--print-config",
    ]);
    let config = parse(&stdout(&output));
    assert_eq!(config.node.role, NodeRole::Worker);
    assert!(config.cluster.is_none());
    let join = config.join.expect("[join]");
    assert_eq!(join.endpoint.to_string(), "10.5.0.10");
    assert_eq!(join.token.to_string(), TOKEN);
    assert_eq!(join.discovery_token_ca_cert_hash.as_str(), pin);
    assert!(!join.control_plane);
    assert!(join.certificate_key.is_none());
    assert!(
        stderr(&output).contains("--skip-discovery"),
        "{}",
        stderr(&output)
    );

    let output = succeeds(&[
        "join",
        "10.5.0.10:6443",
        "--token",
        TOKEN,
        "--discovery-token-ca-cert-hash",
        &pin,
        "--control-plane",
        "--certificate-key",
        CERT_KEY,
        "--node-name",
        "cp-2",
        "--address",
        "10.5.0.12/24",
        "--gateway",
        "10.5.0.1",
        "--vip",
        "10.5.0.10",
        "--vip-interface",
        "eth0",
        "--skip-discovery",
        "--print-config",
    ]);
    let config = parse(&stdout(&output));
    assert_eq!(config.node.role, NodeRole::ControlPlane);
    let vip = config
        .cluster
        .as_ref()
        .and_then(|c| c.vip.as_ref())
        .expect("[cluster.vip]");
    assert_eq!(vip.address.to_string(), "10.5.0.10");
    let join = config.join.expect("[join]");
    assert!(join.control_plane);
    assert_eq!(
        join.certificate_key.map(|k| k.to_string()).as_deref(),
        Some(CERT_KEY)
    );
}

#[test]
fn invalid_combinations_are_refused_naming_the_flag() {
    let pin = pin();
    let join = |extra: &[&str]| {
        let mut args = vec![
            "join",
            "10.5.0.10",
            "--token",
            TOKEN,
            "--discovery-token-ca-cert-hash",
            &pin,
            "--node-name",
            "n-1",
            "--skip-discovery",
            "--print-config",
        ];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let cases: Vec<(String, &str)> = vec![
        // A worker holds no VIP.
        (
            join(&["--dhcp", "--vip", "10.5.0.10", "--vip-interface", "eth0"]),
            "--vip",
        ),
        // The certificate key is for control planes only.
        (
            join(&["--dhcp", "--certificate-key", CERT_KEY]),
            "--certificate-key",
        ),
        // A control-plane join needs it.
        (join(&["--dhcp", "--control-plane"]), "--certificate-key"),
        // Bad CIDR, address without prefix.
        (join(&["--address", "10.5.0.300/24"]), "--address"),
        (join(&["--address", "10.5.0.12"]), "--address"),
        // Gateway outside the subnet: a machine-config rule, named by flag.
        (
            join(&["--address", "10.5.0.12/24", "--gateway", "10.6.0.1"]),
            "--gateway",
        ),
        // Neither --address nor --dhcp, or both.
        (join(&[]), "--address"),
        (join(&["--dhcp", "--address", "10.5.0.12/24"]), "--dhcp"),
        // --vip without its interface.
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--vip",
                "10.5.0.10",
                "--print-config",
            ]),
            "--vip-interface",
        ),
        // init is for the first control plane only.
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--role",
                "worker",
                "--print-config",
            ]),
            "--role",
        ),
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--certificate-key",
                CERT_KEY,
                "--print-config",
            ]),
            "--upload-certs",
        ),
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--pod-network-cidr",
                "10.0.0.0/33",
                "--print-config",
            ]),
            "--pod-network-cidr",
        ),
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--token",
                "short",
                "--print-config",
            ]),
            "--token",
        ),
        (
            fails(&[
                "join",
                "10.5.0.10",
                "--token",
                TOKEN,
                "--discovery-token-ca-cert-hash",
                "sha256:12",
                "--node-name",
                "n",
                "--dhcp",
                "--print-config",
            ]),
            "--discovery-token-ca-cert-hash",
        ),
        // Nowhere to send the config, or an incomplete apply.
        (
            fails(&["init", "--node-name", "n", "--dhcp"]),
            "--print-config",
        ),
        (
            fails(&["init", "--node-name", "n", "--dhcp", "--node", "127.0.0.1"]),
            "--maintenance-key",
        ),
        (
            fails(&[
                "init",
                "--node-name",
                "n",
                "--dhcp",
                "--node",
                "127.0.0.1",
                "--maintenance-key",
                "7K2QD-M9XPA-0RTVB-4HN3C",
                "--fingerprint",
                "sha256:00",
            ]),
            "--fingerprint",
        ),
    ];
    for (message, flag) in cases {
        assert!(
            message.contains(flag),
            "expected the refusal to name {flag}, got:\n{message}"
        );
    }
}

#[test]
fn bad_client_ca_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = make_ca(dir.path());
    let out = dir.path().join("node.toml");
    // A private key where a CA certificate belongs.
    let message = fails(&[
        "init",
        "--node-name",
        "n",
        "--dhcp",
        "--client-ca",
        cert_dir.join("ca.key").to_str().expect("utf-8"),
        "--config-out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(message.contains("--client-ca"), "{message}");
    assert!(!out.exists(), "nothing may be written on a refusal");
}

#[test]
fn config_out_is_written_atomically() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("node-1.toml");
    // An older, longer file is replaced as a whole.
    std::fs::write(&out, "x".repeat(10_000)).expect("old file");
    let output = succeeds(&[
        "init",
        "--node-name",
        "node-1",
        "--address",
        "10.5.0.11/24",
        "--token",
        TOKEN,
        "--config-out",
        out.to_str().expect("utf-8"),
    ]);
    let text = std::fs::read_to_string(&out).expect("written config");
    let config = parse(&text);
    assert_eq!(
        config
            .cluster
            .and_then(|c| c.token)
            .map(|t| t.to_string())
            .as_deref(),
        Some(TOKEN)
    );
    let mode = std::fs::metadata(&out)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the config holds secrets");
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["node-1.toml"], "no temporary file may be left");
    // Without --print-config the notes go to stdout.
    assert!(
        stdout(&output).contains("written to"),
        "{}",
        stdout(&output)
    );

    // A directory that does not exist: the error names the flag.
    let missing = dir.path().join("missing/node.toml");
    let message = fails(&[
        "init",
        "--node-name",
        "node-1",
        "--dhcp",
        "--config-out",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(message.contains("--config-out"), "{message}");
}

#[test]
fn init_applies_exactly_the_rendered_config_to_a_maintenance_node() {
    let (server, double, key) = maintenance_node();
    let node = server.local_addr().to_string();
    let key_text = key.to_string();
    let common = [
        "init",
        "--node-name",
        "node-1",
        "--address",
        "10.5.0.11/24",
        "--gateway",
        "10.5.0.1",
        "--token",
        TOKEN,
        "--upload-certs",
        "--certificate-key",
        CERT_KEY,
        "--vip",
        "10.5.0.10",
        "--vip-interface",
        "eth0",
    ];
    let printed = stdout(&succeeds(&[&common[..], &["--print-config"]].concat()));
    let output = succeeds(
        &[
            &common[..],
            &[
                "--node",
                &node,
                "--maintenance-key",
                &key_text,
                "--fingerprint",
                server.fingerprint(),
            ],
        ]
        .concat(),
    );
    assert_eq!(
        double.configs(),
        std::slice::from_ref(&printed),
        "the node must receive exactly the rendered config"
    );
    let notes = stdout(&output);
    assert!(
        notes.contains(&format!("applied to node-1 at {node}")),
        "{notes}"
    );
    assert!(notes.contains("bootstrap qemu status"), "{notes}");
    assert!(notes.contains(&format!("--token {TOKEN}")), "{notes}");

    // The key is accepted in any case and without dashes, as the console
    // is read by people.
    let sloppy_key = key_text.replace('-', "").to_lowercase();
    succeeds(
        &[
            &common[..],
            &[
                "--node",
                &node,
                "--maintenance-key",
                &sloppy_key,
                "--fingerprint",
                server.fingerprint(),
            ],
        ]
        .concat(),
    );
    assert_eq!(double.configs().len(), 2);
}

#[test]
fn init_with_a_client_certificate_waits_for_the_ca_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The admin CA trusted by the node API, and a client certificate it
    // issued; a second PKI stands for the cluster CA the node creates.
    let admin = make_ca(&dir.path().join("admin"));
    let cluster = make_ca(&dir.path().join("cluster"));
    let expected_hash = stdout(&succeeds(&[
        "certs",
        "ca-hash",
        "--cert-dir",
        cluster.to_str().expect("utf-8"),
    ]))
    .trim()
    .to_owned();
    let (server, double, key) = maintenance_node();
    let admin_ca = std::fs::read_to_string(admin.join("ca.crt")).expect("admin CA");
    server.set_client_ca(Some(&admin_ca)).expect("client CA");
    *double.cluster_ca.lock().expect("ca lock") =
        Some(std::fs::read_to_string(cluster.join("ca.crt")).expect("cluster CA"));
    let node = server.local_addr().to_string();
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let output = succeeds(&[
        "init",
        "--node-name",
        "node-1",
        "--address",
        "10.5.0.11/24",
        "--token",
        TOKEN,
        "--node",
        &node,
        "--maintenance-key",
        &key.to_string(),
        "--fingerprint",
        server.fingerprint(),
        "--client-ca",
        &path(&admin.join("ca.crt")),
        "--client-cert",
        &path(&admin.join("apiserver-kubelet-client.crt")),
        "--client-key",
        &path(&admin.join("apiserver-kubelet-client.key")),
        "--wait-timeout",
        "120",
    ]);
    let notes = stdout(&output);
    assert!(
        notes.contains(&format!(
            "bootstrap join 10.5.0.11:6443 --token {TOKEN} --discovery-token-ca-cert-hash {expected_hash}"
        )),
        "{notes}"
    );
    assert!(!notes.contains("<shown on the node's console"), "{notes}");
    let config = parse(&double.configs()[0]);
    assert_eq!(
        config.api.client_ca.map(|c| c.as_pem().trim().to_owned()),
        Some(admin_ca.trim().to_owned())
    );
    // The CA was read with the client certificate, after one miss.
    let reads = double.ca_reads.lock().expect("reads lock").clone();
    assert!(reads.len() >= 2, "{reads:?}");
    assert!(
        reads
            .iter()
            .all(|caller| matches!(caller, Caller::Certificate { .. })),
        "{reads:?}"
    );

    // A client certificate without its key is refused before anything runs.
    let message = fails(&[
        "init",
        "--node-name",
        "node-1",
        "--dhcp",
        "--node",
        &node,
        "--maintenance-key",
        &key.to_string(),
        "--fingerprint",
        server.fingerprint(),
        "--client-ca",
        &path(&admin.join("ca.crt")),
        "--client-cert",
        &path(&admin.join("apiserver-kubelet-client.crt")),
    ]);
    assert!(message.contains("--client-key"), "{message}");
    assert_eq!(double.configs().len(), 1);

    // A node that never shows a CA: the wait ends at its deadline with what
    // was seen last and where else the hash is.
    let (server, double, key) = maintenance_node();
    server.set_client_ca(Some(&admin_ca)).expect("client CA");
    let message = fails(&[
        "init",
        "--node-name",
        "node-1",
        "--dhcp",
        "--node",
        &server.local_addr().to_string(),
        "--maintenance-key",
        &key.to_string(),
        "--fingerprint",
        server.fingerprint(),
        "--client-ca",
        &path(&admin.join("ca.crt")),
        "--client-cert",
        &path(&admin.join("apiserver-kubelet-client.crt")),
        "--client-key",
        &path(&admin.join("apiserver-kubelet-client.key")),
        "--wait-timeout",
        "2",
    ]);
    assert!(message.contains("/etc/kubernetes/pki/ca.crt"), "{message}");
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("console"), "{message}");
    assert_eq!(
        double.configs().len(),
        1,
        "the config was applied before the wait"
    );
}

#[test]
fn join_applies_with_skip_discovery() {
    let (server, double, key) = maintenance_node();
    let node = server.local_addr().to_string();
    let pin = pin();
    let output = succeeds(&[
        "join",
        "10.5.0.10:6443",
        "--token",
        TOKEN,
        "--discovery-token-ca-cert-hash",
        &pin,
        "--node-name",
        "worker-1",
        "--address",
        "10.5.0.21/24",
        "--skip-discovery",
        "--print-config",
        "--node",
        &node,
        "--maintenance-key",
        &key.to_string(),
        "--fingerprint",
        server.fingerprint(),
    ]);
    let printed = stdout(&output);
    assert_eq!(double.configs(), std::slice::from_ref(&printed));
    let config = parse(&printed);
    assert_eq!(config.join.expect("[join]").token.to_string(), TOKEN);
    let notes = stderr(&output);
    assert!(notes.contains("applied to worker-1"), "{notes}");
    assert!(
        notes.contains("joins 10.5.0.10:6443 as a worker"),
        "{notes}"
    );
}

#[test]
fn wrong_fingerprint_or_key_is_a_clear_error() {
    let (server, double, key) = maintenance_node();
    let node = server.local_addr().to_string();
    let base = ["init", "--node-name", "node-1", "--dhcp", "--node", &node];
    let other_fingerprint = format!("sha256:{}", "0".repeat(64));
    let message = fails(
        &[
            &base[..],
            &[
                "--maintenance-key",
                &key.to_string(),
                "--fingerprint",
                &other_fingerprint,
            ],
        ]
        .concat(),
    );
    assert!(message.contains("fingerprint"), "{message}");
    assert!(message.contains("--fingerprint"), "{message}");
    assert!(
        message.contains(server.fingerprint()),
        "the error shows what the node presented: {message}"
    );

    let wrong_key = MaintenanceKey::generate().expect("key").to_string();
    let message = fails(
        &[
            &base[..],
            &[
                "--maintenance-key",
                &wrong_key,
                "--fingerprint",
                server.fingerprint(),
            ],
        ]
        .concat(),
    );
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("--maintenance-key"), "{message}");

    // A node that is not listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let message = fails(&[
        "init",
        "--node-name",
        "node-1",
        "--dhcp",
        "--node",
        &closed_addr,
        "--maintenance-key",
        &key.to_string(),
        "--fingerprint",
        server.fingerprint(),
    ]);
    assert!(message.contains("--node"), "{message}");
    assert!(
        double.configs().is_empty(),
        "no config may have been applied"
    );
}

#[test]
fn unreachable_join_endpoint_fails_discovery_and_suggests_skip_discovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("node.toml");
    // A port nobody listens on: connection refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let message = fails(&[
        "join",
        &endpoint,
        "--token",
        TOKEN,
        "--discovery-token-ca-cert-hash",
        &pin(),
        "--node-name",
        "worker-1",
        "--dhcp",
        "--config-out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(message.contains("token discovery"), "{message}");
    assert!(message.contains("--skip-discovery"), "{message}");
    assert!(
        !out.exists(),
        "nothing may be written before discovery succeeded"
    );
}

#[test]
fn help_explains_the_verbs() {
    let help = stdout(&succeeds(&["join", "--help"]));
    assert!(help.contains("--skip-discovery"), "{help}");
    assert!(
        help.contains("not reachable from where this command runs"),
        "{help}"
    );
    let help = stdout(&succeeds(&["init", "--help"]));
    for flag in [
        "--upload-certs",
        "--maintenance-key",
        "--fingerprint",
        "--control-plane-endpoint",
        "--print-config",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn init_skip_phases_render_into_the_config_and_unsafe_ones_are_refused() {
    let output = succeeds(&[
        "init",
        "--node-name",
        "cp-1",
        "--dhcp",
        "--skip-phases",
        "mark-control-plane,show-join-command",
        "--print-config",
    ]);
    let config = parse(&stdout(&output));
    let cluster = config.cluster.expect("[cluster]");
    assert!(!cluster.runs(cairn_config::InitPhase::MarkControlPlane));
    assert!(!cluster.runs(cairn_config::InitPhase::ShowJoinCommand));
    assert!(cluster.runs(cairn_config::InitPhase::Etcd));

    let refused = fails(&[
        "init",
        "--node-name",
        "cp-1",
        "--dhcp",
        "--skip-phases",
        "etcd",
        "--print-config",
    ]);
    assert!(
        refused.contains("--skip-phases") && refused.contains("stacked etcd"),
        "expected the refusal to name --skip-phases and why etcd stays: {refused}"
    );
    let unknown = fails(&[
        "init",
        "--node-name",
        "cp-1",
        "--dhcp",
        "--skip-phases",
        "addon/kube-proxy",
        "--print-config",
    ]);
    assert!(unknown.contains("sub-phase"), "{unknown}");
}

//! `bootstrap init`: the machine config of a cluster's first control plane,
//! and the delivery shared with `bootstrap join`.
//!
//! Cairn nodes run kubeadm's phases by themselves from their machine config
//! (see `node-agent/src/cluster`), so `init` does not touch the node's
//! host: it turns kubeadm's flags into a [`MachineConfig`], checks it with
//! every rule node-agent applies (so the node never refuses what the CLI
//! accepted), and hands it over. Three destinations, any combination:
//! stdout (`--print-config`), a file written atomically (`--config-out`),
//! and the node API of a node in maintenance mode (`--node`, pinned by the
//! fingerprint and authenticated by the one-time maintenance key its console
//! shows).
//!
//! Secrets the cluster needs before it exists (the bootstrap token, the
//! certificate key for `--upload-certs`) are generated here when not given,
//! so the join commands can be printed at once. The CA pin cannot be: the
//! node creates its CA after it received the config, and prints the pin on
//! its console. Once the config is applied the maintenance key no longer
//! opens the node API, so only with a client certificate of the
//! `--client-ca` CA (`--client-cert`/`--client-key`) can `init` wait for
//! the CA (polling `/etc/kubernetes/pki/ca.crt` through the node API until
//! `--wait-timeout`) and print the join commands with the real pin.
//!
//! When the config goes to stdout, everything else goes to stderr, so
//! `bootstrap init ... --print-config > node-1.toml` yields a clean file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_config::{
    Addressing, ApiConfig, CaBundle, ClusterConfig, ContainerdConfig, KernelConfig, MachineConfig,
    NodeConfig, NodeRole, VipConfig,
};
use cairn_node_api::{ClientError, Credentials, NodeClient, ServerTrust};
use cairn_pki::{BootstrapToken, CertificateKey};

use crate::cli::{ConfigDestinationArgs, InitArgs, NodeNetworkArgs, VipArgs};
use crate::error::BootstrapError;

/// The node API port.
pub const NODE_API_PORT: u16 = 50000;
/// The apiserver port used when an endpoint gives none.
const APISERVER_PORT: u16 = cairn_config::model::DEFAULT_APISERVER_PORT;
/// What the join commands show where the CA pin belongs, before it exists.
pub const CA_HASH_PLACEHOLDER: &str = "<shown on the node's console as \"join workers with ...\">";

/// Why `init` or `join` could not produce or deliver a machine config.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// A flag (or combination) that cannot work.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag, e.g. `--vip`.
        flag: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The rendered config breaks a machine-config rule.
    #[error("the flags do not make a valid machine config:\n  {}", problems.join("\n  "))]
    Invalid {
        /// One `--flag: reason (config key)` line per problem.
        problems: Vec<String>,
    },
    /// Rendering or re-reading the config failed (a bug, not bad input).
    #[error("cannot render the machine config: {0}")]
    Render(Box<cairn_config::ConfigError>),
    /// `--client-ca` is unreadable or not a CA bundle.
    #[error("--client-ca: {path}: {reason}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--config-out` could not be written.
    #[error("--config-out: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The node did not take the config.
    #[error("--node {node}: cannot apply the machine config: {source}{hint}")]
    Apply {
        /// `host:port` of the node API.
        node: String,
        /// What to check, depending on the failure.
        hint: String,
        /// The client's error.
        source: Box<ClientError>,
    },
    /// The node's cluster CA did not become readable.
    #[error(
        "--client-cert: could not read {CLUSTER_CA_PATH} from {node} within {}s (last: {last}); \
         the config is applied: the node's console shows the CA hash (\"join workers with: ...\")",
        waited.as_secs()
    )]
    WaitForCa {
        /// `host:port` of the node API.
        node: String,
        /// How long it was tried.
        waited: Duration,
        /// The last failure.
        last: String,
    },
    /// Token discovery against the join endpoint failed.
    #[error("token discovery against {endpoint} failed: {source}{hint}")]
    Discovery {
        /// `host:port`.
        endpoint: String,
        /// What to do, depending on the failure.
        hint: String,
        /// Discovery's error, which says what was expected and seen.
        source: Box<cairn_cluster::discovery::DiscoveryError>,
    },
}

// Boxed: the CLI's error type stays small for every other command.
impl From<NodeConfigError> for BootstrapError {
    fn from(error: NodeConfigError) -> Self {
        BootstrapError::NodeConfig(Box::new(error))
    }
}

/// Runs `bootstrap init`.
pub fn run(args: InitArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let token = args.token.clone().unwrap_or_else(BootstrapToken::generate);
    let certificate_key = match (&args.certificate_key, args.upload_certs) {
        (Some(key), _) => Some(key.clone()),
        (None, true) => Some(CertificateKey::generate()),
        (None, false) => None,
    };
    let config = init_config(&args, &token, certificate_key.as_ref())?;
    // Read before anything is applied, so a bad path changes nothing.
    let admin = admin_credentials(&args)?;
    let delivered = deliver(&config, "bootstrap init", &args.destination, out)?;
    let mut notes = delivered.notes_writer(out);
    write_init_summary(
        &mut *notes,
        &args,
        &token,
        certificate_key.as_ref(),
        &delivered,
    )?;
    let ca_hash = match (&delivered.applied_to, admin, &args.destination.fingerprint) {
        (Some(address), Some(admin), Some(fingerprint)) => {
            writeln!(
                notes,
                "[init] waiting up to {}s for {}'s cluster CA ({CLUSTER_CA_PATH} through the node API)",
                args.wait_timeout, args.network.node_name
            )?;
            notes.flush()?;
            let hash = wait_for_ca_hash(
                address,
                fingerprint,
                admin,
                Duration::from_secs(args.wait_timeout),
            )?;
            writeln!(notes, "[init] cluster CA hash: {hash}")?;
            Some(hash)
        }
        _ => None,
    };
    write_join_commands(
        &mut *notes,
        &args,
        &config,
        &token,
        certificate_key.as_ref(),
        ca_hash.as_deref(),
    )?;
    Ok(())
}

/// Where node-agent keeps the cluster CA (kubeadm's layout, on STATE).
pub const CLUSTER_CA_PATH: &str = "/etc/kubernetes/pki/ca.crt";

/// `--client-cert`/`--client-key`, read into node API credentials.
fn admin_credentials(args: &InitArgs) -> Result<Option<Credentials>, NodeConfigError> {
    let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read_to_string(path).map_err(|e| NodeConfigError::Flag {
            flag: flag.to_owned(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    Ok(Some(Credentials::ClientCert {
        cert_pem: read("--client-cert", cert)?,
        key_pem: read("--client-key", key)?,
    }))
}

/// Polls the node API for the cluster CA until it exists (the node creates
/// it in its first phase) and returns its pin.
fn wait_for_ca_hash(
    address: &str,
    fingerprint: &str,
    admin: Credentials,
    timeout: Duration,
) -> Result<String, NodeConfigError> {
    let client = NodeClient::new(
        address,
        ServerTrust::Fingerprint(fingerprint.to_owned()),
        admin,
    )
    .map_err(|source| NodeConfigError::WaitForCa {
        node: address.to_owned(),
        waited: Duration::ZERO,
        last: source.to_string(),
    })?;
    let started = Instant::now();
    loop {
        // Until the node has applied the config (and so trusts
        // --client-ca) or created its CA, reads fail; only the deadline
        // ends the wait.
        let last = match client.read(CLUSTER_CA_PATH) {
            Ok(bytes) => {
                let pem = String::from_utf8_lossy(&bytes);
                match cairn_pki::ca_cert_hash(&pem) {
                    Ok(hash) => return Ok(hash),
                    Err(e) => format!("{CLUSTER_CA_PATH} is not a certificate: {e}"),
                }
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(node = %address, %last, "cluster CA not readable yet");
        if started.elapsed() >= timeout {
            return Err(NodeConfigError::WaitForCa {
                node: address.to_owned(),
                waited: started.elapsed(),
                last,
            });
        }
        std::thread::sleep(CA_POLL_INTERVAL);
    }
}

/// How often the node is asked for its CA.
const CA_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The machine config `init` renders from its flags.
pub fn init_config(
    args: &InitArgs,
    token: &BootstrapToken,
    certificate_key: Option<&CertificateKey>,
) -> Result<MachineConfig, NodeConfigError> {
    Ok(MachineConfig {
        cluster: Some(ClusterConfig {
            name: None,
            control_plane_endpoint: args.control_plane_endpoint.clone(),
            pod_network_cidr: args.pod_network_cidr,
            service_cidr: args.service_cidr,
            service_dns_domain: args.service_dns_domain.clone(),
            apiserver_cert_extra_sans: args.apiserver_cert_extra_sans.clone(),
            token: Some(token.clone()),
            certificate_key: certificate_key.cloned(),
            vip: vip_config(&args.vip),
            skip_phases: args.skip_phases.clone(),
        }),
        node: node_config(&args.network, args.role),
        kernel: KernelConfig::default(),
        containerd: ContainerdConfig::default(),
        join: None,
        api: api_config(args.destination.client_ca.as_deref())?,
    })
}

/// `[node]` from the network flags.
pub(crate) fn node_config(network: &NodeNetworkArgs, role: NodeRole) -> NodeConfig {
    NodeConfig {
        name: Some(network.node_name.clone()),
        role,
        interface: network.interface.clone(),
        addressing: if network.dhcp {
            Addressing::Dhcp
        } else {
            Addressing::Static {
                addresses: network.address.clone(),
                gateway: network.gateway,
            }
        },
        dns: Vec::new(),
        labels: Default::default(),
        taints: Vec::new(),
    }
}

/// `[cluster.vip]` from `--vip`/`--vip-interface` (clap requires both).
pub(crate) fn vip_config(vip: &VipArgs) -> Option<VipConfig> {
    match (vip.vip, &vip.vip_interface) {
        (Some(address), Some(interface)) => Some(VipConfig {
            address,
            interface: interface.clone(),
        }),
        _ => None,
    }
}

/// `[api]` from `--client-ca`.
pub(crate) fn api_config(client_ca: Option<&Path>) -> Result<ApiConfig, NodeConfigError> {
    let Some(path) = client_ca else {
        return Ok(ApiConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| NodeConfigError::ClientCa {
        path: path.to_owned(),
        reason: format!("cannot read it: {e}"),
    })?;
    let bundle: CaBundle =
        text.parse().map_err(
            |e: cairn_pki::types::InvalidValue| NodeConfigError::ClientCa {
                path: path.to_owned(),
                reason: e.0,
            },
        )?;
    Ok(ApiConfig {
        client_ca: Some(bundle),
    })
}

/// The flag a machine-config key comes from, for error messages.
fn flag_for_key(key: &str) -> &str {
    // Longest prefixes first: `cluster.vip.interface` before `cluster.vip`.
    const FLAGS: &[(&str, &str)] = &[
        ("node.name", "--node-name"),
        ("node.role", "--role/--control-plane"),
        ("node.interface", "--interface"),
        ("node.addresses", "--address"),
        ("node.gateway", "--gateway"),
        ("node.dhcp", "--dhcp"),
        ("cluster.vip.interface", "--vip-interface"),
        ("cluster.vip", "--vip"),
        ("cluster.control-plane-endpoint", "--control-plane-endpoint"),
        ("cluster.pod-network-cidr", "--pod-network-cidr"),
        ("cluster.service-cidr", "--service-cidr"),
        ("cluster.service-dns-domain", "--service-dns-domain"),
        (
            "cluster.apiserver-cert-extra-sans",
            "--apiserver-cert-extra-sans",
        ),
        ("cluster.token", "--token"),
        ("cluster.certificate-key", "--certificate-key"),
        ("cluster.skip-phases", "--skip-phases"),
        ("join.endpoint", "ENDPOINT"),
        ("join.token", "--token"),
        (
            "join.discovery-token-ca-cert-hash",
            "--discovery-token-ca-cert-hash",
        ),
        ("join.control-plane", "--control-plane"),
        ("join.certificate-key", "--certificate-key"),
        ("api.client-ca", "--client-ca"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or(key, |(_, flag)| flag)
}

/// Where the config went.
pub(crate) struct Delivered {
    /// The config was printed on the command's output.
    pub printed: bool,
    /// `--config-out`, when written.
    pub written: Option<PathBuf>,
    /// `host:port` of the node API, when applied.
    pub applied_to: Option<String>,
}

impl Delivered {
    /// Where the human-readable notes go: stderr when stdout carries the
    /// config, so that it stays a clean TOML document.
    pub fn notes_writer<'a>(&self, out: &'a mut dyn Write) -> Box<dyn Write + 'a> {
        if self.printed {
            Box::new(std::io::stderr())
        } else {
            Box::new(out)
        }
    }
}

/// Checks the config with cairn-config's rules, renders it, reads the
/// rendering back (what the node will parse) and sends it to every
/// destination: the output, the file, then the node.
pub(crate) fn deliver(
    config: &MachineConfig,
    origin: &str,
    destination: &ConfigDestinationArgs,
    out: &mut dyn Write,
) -> Result<Delivered, NodeConfigError> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(NodeConfigError::Invalid {
            problems: problems
                .iter()
                .map(|p| {
                    format!(
                        "{}: {} (machine config key {})",
                        flag_for_key(&p.key),
                        p.reason,
                        p.key
                    )
                })
                .collect(),
        });
    }
    let render_error = |e| NodeConfigError::Render(Box::new(e));
    let text = config.to_toml().map_err(render_error)?;
    // The node parses exactly this text; refuse here what it would refuse.
    let reread = MachineConfig::parse(&text, origin).map_err(render_error)?;
    if &reread != config {
        return Err(NodeConfigError::Invalid {
            problems: vec![format!(
                "the rendered config does not read back to the same config ({origin})"
            )],
        });
    }
    let mut delivered = Delivered {
        printed: false,
        written: None,
        applied_to: None,
    };
    if destination.print_config {
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| NodeConfigError::Write {
                path: PathBuf::from("<stdout>"),
                source,
            })?;
        delivered.printed = true;
    }
    if let Some(path) = &destination.config_out {
        write_atomically(path, &text).map_err(|source| NodeConfigError::Write {
            path: path.clone(),
            source,
        })?;
        delivered.written = Some(path.clone());
    }
    if let (Some(node), Some(key), Some(fingerprint)) = (
        &destination.node,
        &destination.maintenance_key,
        &destination.fingerprint,
    ) {
        let address = node_api_address(node);
        apply(&address, key, fingerprint, &text)?;
        delivered.applied_to = Some(address);
    }
    Ok(delivered)
}

/// `HOST[:PORT]` with the node API port added when none is given (IPv6
/// addresses in brackets when a port follows, bare otherwise).
pub fn node_api_address(node: &str) -> String {
    let node = node.trim();
    if node.parse::<std::net::SocketAddr>().is_ok() {
        return node.to_owned();
    }
    if let Ok(ip) = node
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return std::net::SocketAddr::new(ip, NODE_API_PORT).to_string();
    }
    match node.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => node.to_owned(),
        _ => format!("{node}:{NODE_API_PORT}"),
    }
}

fn apply(
    address: &str,
    key: &cairn_node_api::MaintenanceKey,
    fingerprint: &str,
    text: &str,
) -> Result<(), NodeConfigError> {
    let failed = |source: ClientError| NodeConfigError::Apply {
        node: address.to_owned(),
        hint: apply_hint(&source),
        source: Box::new(source),
    };
    let client = NodeClient::new(
        address,
        ServerTrust::Fingerprint(fingerprint.to_owned()),
        Credentials::MaintenanceKey(key.clone()),
    )
    .map_err(failed)?;
    tracing::info!(node = %address, "applying the machine config");
    client.apply_config(text).map_err(failed)
}

/// What the user should check for each way applying can fail.
fn apply_hint(error: &ClientError) -> String {
    let hint = match error {
        ClientError::FingerprintMismatch { .. } => {
            "check --fingerprint against the node's console (the node API line shows sha256:...)"
        }
        ClientError::Resolve { .. } | ClientError::Connect { .. } => {
            "check --node: the node API listens on port 50000 and must be reachable from here"
        }
        ClientError::Status { status: 401, .. } => {
            "the node refused the maintenance key: check --maintenance-key against the node's \
             console (a new key is shown at every boot, and none once the node has a config)"
        }
        ClientError::Status { status: 403, .. } => {
            "the maintenance key only opens status and config on a node in maintenance mode"
        }
        ClientError::Status { status: 409, .. } => {
            "the node is not waiting for a config (it already has one): use `bootstrap qemu api` \
             with an admin certificate, or reset the node"
        }
        ClientError::Tls { .. } => {
            "check --fingerprint and that --node is a Cairn node API (port 50000)"
        }
        _ => return String::new(),
    };
    format!("\n  ({hint})")
}

/// Writes `text` to `path` all at once: a temporary file next to it (mode
/// 0600: the config holds the token and the certificate key), fsync, then
/// a rename over the target, so readers never see a partial file.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".cairn-config-")
        .tempfile_in(dir)?;
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    temporary.write_all(text.as_bytes())?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// `HOST:PORT` other nodes join through: the control-plane endpoint, else
/// the VIP, else the node's first static address.
fn join_endpoint(config: &MachineConfig) -> String {
    let cluster = config.cluster.as_ref();
    if let Some(endpoint) = cluster.and_then(|c| c.control_plane_endpoint.as_ref()) {
        return endpoint
            .url(APISERVER_PORT)
            .trim_start_matches("https://")
            .to_owned();
    }
    if let Some(vip) = cluster.and_then(|c| c.vip.as_ref()) {
        return std::net::SocketAddr::new(vip.address, APISERVER_PORT).to_string();
    }
    match &config.node.addressing {
        Addressing::Static { addresses, .. } if !addresses.is_empty() => {
            std::net::SocketAddr::new(addresses[0].address(), APISERVER_PORT).to_string()
        }
        _ => format!("<the node's DHCP address>:{APISERVER_PORT}"),
    }
}

/// Where the config went, the secrets, and what the node does next.
fn write_init_summary(
    notes: &mut dyn Write,
    args: &InitArgs,
    token: &BootstrapToken,
    certificate_key: Option<&CertificateKey>,
    delivered: &Delivered,
) -> std::io::Result<()> {
    let name = args.network.node_name.as_str();
    if let Some(path) = &delivered.written {
        writeln!(
            notes,
            "[init] machine config for {name} written to {}",
            path.display()
        )?;
    }
    writeln!(notes, "[init] bootstrap token: {token}")?;
    if let Some(key) = certificate_key {
        writeln!(notes, "[init] certificate key: {key}")?;
    }
    match &delivered.applied_to {
        Some(address) => {
            writeln!(
                notes,
                "[init] machine config applied to {name} at {address}"
            )?;
            writeln!(
                notes,
                "\n{name} now initialises the cluster by itself (certs, etcd, apiserver, \
                 controller manager, bootstrap token); this takes a few minutes."
            )?;
            write_watch_hint(notes, name, args.destination.client_ca.is_some())?;
        }
        None => writeln!(
            notes,
            "\nGive {name} this config (in maintenance mode: add --node, --maintenance-key and \
             --fingerprint from its console; or serve it as a cairn.config= URL or NoCloud \
             drive); it then initialises the cluster by itself."
        )?,
    }
    Ok(())
}

/// The commands for the other nodes, with the CA hash when it is known.
fn write_join_commands(
    notes: &mut dyn Write,
    args: &InitArgs,
    config: &MachineConfig,
    token: &BootstrapToken,
    certificate_key: Option<&CertificateKey>,
    ca_hash: Option<&str>,
) -> std::io::Result<()> {
    let name = args.network.node_name.as_str();
    let endpoint = join_endpoint(config);
    let hash = ca_hash.unwrap_or(CA_HASH_PLACEHOLDER);
    let base =
        format!("bootstrap join {endpoint} --token {token} --discovery-token-ca-cert-hash {hash}");
    let node_flags = "--node-name NAME (--address CIDR --gateway IP | --dhcp) \\\n      \
                      --node HOST --maintenance-key KEY --fingerprint SHA256";
    writeln!(
        notes,
        "\nOnce it is up, join workers with:\n\n  {base} \\\n      {node_flags}"
    )?;
    match certificate_key {
        Some(key) => {
            let vip = match config.cluster.as_ref().and_then(|c| c.vip.as_ref()) {
                Some(vip) => format!(" --vip {} --vip-interface {}", vip.address, vip.interface),
                None => String::new(),
            };
            writeln!(
                notes,
                "\nand control planes with:\n\n  {base} \\\n      \
                 --control-plane --certificate-key {key}{vip} \\\n      {node_flags}"
            )?;
        }
        None => writeln!(
            notes,
            "\nControl planes cannot join this cluster: it uploads no CA files (add --upload-certs)."
        )?,
    }
    if ca_hash.is_none() {
        writeln!(
            notes,
            "\nThe CA hash exists once {name} has created its CA. It is on {name}'s console \
             (\"join workers with: ...\"); or give init --client-cert/--client-key to wait for \
             it here; or, in a QEMU lab, compute it from the CA: \
             `bootstrap qemu api --name LAB {name} read {CLUSTER_CA_PATH} > DIR/ca.crt` \
             then `bootstrap certs ca-hash --cert-dir DIR`."
        )?;
    }
    Ok(())
}

/// How to follow a node that got its config.
pub(crate) fn write_watch_hint(
    notes: &mut dyn Write,
    name: &str,
    has_client_ca: bool,
) -> std::io::Result<()> {
    writeln!(
        notes,
        "Watch it on its console, with `bootstrap qemu status --name LAB` in a QEMU lab, or \
         through its node API status (cluster: action, phase, member, error)."
    )?;
    if !has_client_ca {
        writeln!(
            notes,
            "The maintenance key no longer opens {name}'s node API now that it has a config; \
             without --client-ca only a certificate of the cluster CA does."
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_api_address_adds_the_api_port() {
        assert_eq!(node_api_address("10.5.0.11"), "10.5.0.11:50000");
        assert_eq!(node_api_address("10.5.0.11:1234"), "10.5.0.11:1234");
        assert_eq!(node_api_address("fd00::11"), "[fd00::11]:50000");
        assert_eq!(node_api_address("[fd00::11]"), "[fd00::11]:50000");
        assert_eq!(node_api_address("[fd00::11]:7"), "[fd00::11]:7");
        assert_eq!(node_api_address("node-1.lab"), "node-1.lab:50000");
        assert_eq!(node_api_address("node-1.lab:50001"), "node-1.lab:50001");
    }

    #[test]
    fn config_keys_map_to_their_flags() {
        assert_eq!(flag_for_key("node.addresses[0]"), "--address");
        assert_eq!(flag_for_key("cluster.vip.interface"), "--vip-interface");
        assert_eq!(flag_for_key("cluster.vip.address"), "--vip");
        assert_eq!(flag_for_key("join.endpoint"), "ENDPOINT");
        assert_eq!(flag_for_key("kernel.modules"), "kernel.modules");
    }
}

//! `bootstrap certs ...`

use std::io::Write;
use std::path::Path;

use cairn_pki::layout::Authority;
use cairn_pki::{
    CertificateKey, ClusterPkiSpec, NodeName, PkiPaths, RenewTarget, ca_cert_hash,
    check_expiration, generate, renew_adding_apiserver_sans,
};
use time::OffsetDateTime;

use crate::cli::{CertsCommand, GenerateArgs};
use crate::error::BootstrapError;

pub fn run(command: CertsCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        CertsCommand::Generate(args) => run_generate(args, out),
        CertsCommand::CaHash(args) => {
            writeln!(out, "{}", ca_hash(&args.cert_dir)?)?;
            Ok(())
        }
        CertsCommand::CheckExpiration(args) => {
            let paths = PkiPaths::new(&args.cert.cert_dir, Some(args.kubeconfig_dir()));
            let report = check_expiration(&paths, OffsetDateTime::now_utc())?;
            write!(out, "{}", report.render())?;
            Ok(())
        }
        CertsCommand::Renew(args) if args.node.is_some() => renew_on_node(&args, out),
        CertsCommand::Renew(args) => {
            let target = RenewTarget::parse(&args.name)?;
            let paths = PkiPaths::new(&args.dirs.cert.cert_dir, Some(args.dirs.kubeconfig_dir()));
            let report = renew_adding_apiserver_sans(
                &paths,
                target,
                &args.apiserver_cert_extra_sans,
                OffsetDateTime::now_utc(),
            )?;
            write!(out, "{report}")?;
            writeln!(
                out,
                "\nRestart the components that use the renewed certificates so they load them."
            )?;
            Ok(())
        }
        CertsCommand::CertificateKey => {
            writeln!(out, "{}", CertificateKey::generate())?;
            Ok(())
        }
    }
}

/// `sha256:<hex>` of the cluster CA in `cert_dir`.
pub fn ca_hash(cert_dir: &Path) -> Result<String, BootstrapError> {
    let path = PkiPaths::new(cert_dir, None).cert(Authority::Kubernetes.base_path());
    let pem = std::fs::read_to_string(&path).map_err(|source| BootstrapError::Read {
        path: path.clone(),
        source,
    })?;
    ca_cert_hash(&pem).map_err(|source| BootstrapError::BadCertificate { path, source })
}

fn host_node_name() -> Result<NodeName, BootstrapError> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    raw.to_ascii_lowercase()
        .parse()
        .map_err(|e| BootstrapError::InvalidFlag {
            flag: "--node-name",
            message: format!("not given, and the host name cannot be used: {e}"),
        })
}

pub fn spec_from_args(args: &GenerateArgs) -> Result<ClusterPkiSpec, BootstrapError> {
    let node_name = match &args.node_name {
        Some(name) => name.clone(),
        None => host_node_name()?,
    };
    let families: Vec<bool> = args
        .service_cidr
        .iter()
        .map(|c| c.network().is_ipv4())
        .collect();
    if args.service_cidr.len() > 2 || (families.len() == 2 && families[0] == families[1]) {
        return Err(BootstrapError::InvalidFlag {
            flag: "--service-cidr",
            message: "expected one CIDR, or two of different IP families for dual-stack".to_owned(),
        });
    }
    let mut spec = ClusterPkiSpec::new(node_name, args.apiserver_advertise_address);
    spec.bind_port = args.apiserver_bind_port;
    spec.control_plane_endpoint = args.control_plane_endpoint.clone();
    spec.service_cidrs = args.service_cidr.clone();
    spec.dns_domain = args.service_dns_domain.clone();
    spec.extra_sans = args.apiserver_cert_extra_sans.clone();
    spec.key_type = args.key_type;
    Ok(spec)
}

fn run_generate(args: GenerateArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let spec = spec_from_args(&args)?;
    let kubeconfig_dir = (!args.skip_kubeconfigs).then(|| args.dirs.kubeconfig_dir());
    let paths = PkiPaths::new(&args.dirs.cert.cert_dir, kubeconfig_dir);
    tracing::debug!(?spec, ?paths, "generating PKI");
    let report = generate(&spec, &paths, OffsetDateTime::now_utc())?;
    writeln!(
        out,
        "[certs] Using certificateDir folder {:?}",
        paths.cert_dir.display().to_string()
    )?;
    write!(out, "{report}")?;
    writeln!(
        out,
        "\nCA certificate hash (--discovery-token-ca-cert-hash): {}",
        ca_hash(&paths.cert_dir)?
    )?;
    Ok(())
}

/// Where a Cairn node keeps the machine config it runs (on STATE).
const NODE_CONFIG_PATH: &str = "/var/lib/cairn/config.toml";

/// `certs renew apiserver --node`: adds the SANs to the node's machine
/// config through its API; the node reissues the certificate and restarts
/// its apiserver (node-agent's `cluster::reconfigure`).
fn renew_on_node(args: &crate::cli::RenewArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let invalid =
        |flag: &'static str, message: String| BootstrapError::InvalidFlag { flag, message };
    if !matches!(args.name.as_str(), "apiserver" | "all") {
        return Err(invalid(
            "--node",
            format!(
                "a Cairn node renews its other certificates itself; with --node, renew `apiserver` (got {:?})",
                args.name
            ),
        ));
    }
    if args.apiserver_cert_extra_sans.is_empty() {
        return Err(invalid(
            "--apiserver-cert-extra-sans",
            "with --node, give the SANs to add".to_owned(),
        ));
    }
    let (Some(node), Some(fingerprint), Some(kubeconfig)) =
        (&args.node, &args.fingerprint, &args.kubeconfig)
    else {
        return Err(invalid(
            "--node",
            "needs --fingerprint and --kubeconfig".to_owned(),
        ));
    };
    let client = cairn_node_api::NodeClient::new(
        super::init::node_api_address(node).as_str(),
        cairn_node_api::ServerTrust::Fingerprint(fingerprint.clone()),
        super::reset::kubeconfig_credentials(kubeconfig)?,
    )?;
    let text = String::from_utf8(client.read(NODE_CONFIG_PATH)?).map_err(|e| {
        BootstrapError::Inspect(format!("{node}: {NODE_CONFIG_PATH} is not UTF-8: {e}"))
    })?;
    let mut config = cairn_config::MachineConfig::parse(&text, NODE_CONFIG_PATH)
        .map_err(|e| BootstrapError::Inspect(format!("{node}: {e}")))?;
    let cluster = config.cluster.get_or_insert_with(Default::default);
    let mut added = Vec::new();
    for san in &args.apiserver_cert_extra_sans {
        if !cluster.apiserver_cert_extra_sans.contains(san) {
            cluster.apiserver_cert_extra_sans.push(san.clone());
            added.push(san.to_string());
        }
    }
    if added.is_empty() {
        writeln!(
            out,
            "{node}: the apiserver certificate already covers those SANs"
        )?;
        return Ok(());
    }
    let rendered = config
        .to_toml()
        .map_err(|e| BootstrapError::Inspect(format!("rendering the config: {e}")))?;
    client.apply_config(&rendered)?;
    writeln!(
        out,
        "{node}: apiserver certificate reissued with {} added; its apiserver restarts to serve it",
        added.join(", ")
    )?;
    Ok(())
}

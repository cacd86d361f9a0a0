//! The assembled apiserver: what `control-plane apiserver` runs.
//!
//! [`ApiServerOptions`] mirrors kube-apiserver's flags. [`prepare`]
//! connects to etcd, builds the [`Registry`], seeds the bootstrap objects,
//! restores the Service ClusterIP and NodePort allocations, loads TLS and
//! binds the secure port; [`Prepared::serve`] then serves
//! until the shutdown future resolves, with a background probe of etcd
//! feeding `/readyz` (and the 503s of resource requests while it fails).
//! Every error names the flag it comes from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::auth::{PublicKeySet, ServiceAccountVerifier};
use crate::http::{HealthCheck, ServerConfig, TlsFiles, load_tls_config, serve};
use crate::registry::bootstrap::MasterService;
use crate::registry::{Admission, KubernetesAdmission, Registry, RegistryOptions};
use crate::storage::{EtcdConfig, EtcdStorage, Storage};

/// kube-apiserver's flags, as far as Cairn implements them.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// `--etcd-servers` (comma-separated URLs).
    pub etcd_servers: String,
    pub etcd_cafile: Option<PathBuf>,
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_keyfile: Option<PathBuf>,
    /// `--etcd-prefix`.
    pub etcd_prefix: String,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    /// `--service-account-key-file` (repeatable): keys that verify tokens.
    pub service_account_key_files: Vec<PathBuf>,
    /// `--service-account-signing-key-file`: its public half also verifies.
    pub service_account_signing_key_file: Option<PathBuf>,
    /// `--service-account-issuer` (repeatable; the first one signs).
    pub service_account_issuers: Vec<String>,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: String,
    /// `--service-node-port-range`.
    pub service_node_port_range: String,
    pub secure_port: u16,
    pub bind_address: IpAddr,
    pub advertise_address: Option<IpAddr>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            etcd_servers: String::new(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            etcd_prefix: "/registry".to_owned(),
            tls_cert_file: PathBuf::new(),
            tls_private_key_file: PathBuf::new(),
            client_ca_file: None,
            service_account_key_files: Vec::new(),
            service_account_signing_key_file: None,
            service_account_issuers: Vec::new(),
            service_cluster_ip_range: "10.96.0.0/12".to_owned(),
            service_node_port_range: "30000-32767".to_owned(),
            secure_port: 6443,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_address: None,
        }
    }
}

/// A startup failure, naming the flag at fault when there is one.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("{0}")]
    Other(String),
}

fn flag(flag: &'static str, message: impl std::fmt::Display) -> StartError {
    StartError::Flag {
        flag,
        message: message.to_string(),
    }
}

/// The first usable address of a CIDR (`10.96.0.0/12` → `10.96.0.1`).
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, String> {
    let (address, bits) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR (address/prefix)"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|e| format!("{cidr:?}: bad address: {e}"))?;
    let bits: u32 = bits
        .parse()
        .map_err(|e| format!("{cidr:?}: bad prefix length: {e}"))?;
    match address {
        IpAddr::V4(v4) => {
            if bits > 30 {
                return Err(format!(
                    "{cidr:?}: prefix /{bits} leaves no room for services"
                ));
            }
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Ok(IpAddr::V4(Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        IpAddr::V6(v6) => {
            if bits > 126 {
                return Err(format!(
                    "{cidr:?}: prefix /{bits} leaves no room for services"
                ));
            }
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Ok(IpAddr::V6(std::net::Ipv6Addr::from(
                (u128::from(v6) & mask) + 1,
            )))
        }
    }
}

/// Checks `--service-node-port-range` (`30000-32767`).
pub fn parse_port_range(range: &str) -> Result<(u16, u16), String> {
    let (low, high) = range
        .split_once('-')
        .ok_or_else(|| format!("{range:?} is not a range (low-high)"))?;
    let low: u16 = low.trim().parse().map_err(|e| format!("{range:?}: {e}"))?;
    let high: u16 = high.trim().parse().map_err(|e| format!("{range:?}: {e}"))?;
    if low == 0 || low > high {
        return Err(format!("{range:?}: empty or invalid range"));
    }
    Ok((low, high))
}

/// A server ready to serve: storage connected and seeded, port bound.
#[derive(Debug)]
pub struct Prepared {
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    registry: Arc<Registry>,
}

impl Prepared {
    /// The bound address (useful with `--secure-port 0`).
    pub fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.listener
            .local_addr()
            .map_err(|e| StartError::Other(e.to_string()))
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let monitor = tokio::spawn(self.registry.clone().monitor_health(Duration::from_secs(1)));
        tracing::info!(address = ?self.listener.local_addr().ok(), "serving");
        let result = serve(self.listener, self.config, self.registry, shutdown)
            .await
            .map_err(|e| StartError::Other(e.to_string()));
        monitor.abort();
        result
    }
}

/// Connects, seeds and binds (see the module doc).
pub async fn prepare(options: &ApiServerOptions) -> Result<Prepared, StartError> {
    prepare_with(options, Arc::new(KubernetesAdmission)).await
}

/// [`prepare`] with the given defaulting and validation.
pub async fn prepare_with(
    options: &ApiServerOptions,
    admission: Arc<dyn Admission>,
) -> Result<Prepared, StartError> {
    let service_ip = first_service_ip(&options.service_cluster_ip_range)
        .map_err(|e| flag("--service-cluster-ip-range", e))?;
    parse_port_range(&options.service_node_port_range)
        .map_err(|e| flag("--service-node-port-range", e))?;
    crate::validation::ClusterIpAllocator::new(&options.service_cluster_ip_range)
        .map_err(|e| flag("--service-cluster-ip-range", e))?;
    crate::validation::NodePortAllocator::new(&options.service_node_port_range)
        .map_err(|e| flag("--service-node-port-range", e))?;
    if !options.etcd_prefix.starts_with('/') {
        return Err(flag("--etcd-prefix", "must start with '/'"));
    }

    let tls = load_tls_config(&TlsFiles {
        cert_file: options.tls_cert_file.clone(),
        key_file: options.tls_private_key_file.clone(),
        client_ca_file: options.client_ca_file.clone(),
    })
    .map_err(|e| flag("--tls-cert-file/--tls-private-key-file/--client-ca-file", e))?;

    let service_accounts = service_account_verifier(options)?;

    let etcd = EtcdConfig::from_files(
        &options.etcd_servers,
        options.etcd_cafile.as_deref(),
        options.etcd_certfile.as_deref(),
        options.etcd_keyfile.as_deref(),
    )
    .map_err(|e| {
        flag(
            "--etcd-servers/--etcd-cafile/--etcd-certfile/--etcd-keyfile",
            e,
        )
    })?;
    let storage: Arc<dyn Storage> = Arc::new(
        EtcdStorage::connect(etcd)
            .await
            .map_err(|e| flag("--etcd-servers", e))?,
    );
    wait_for_storage(storage.as_ref()).await?;

    let registry = Arc::new(
        Registry::new(
            storage,
            RegistryOptions {
                prefix: options.etcd_prefix.clone(),
                service_accounts,
                admission,
                service_cluster_ip_range: options.service_cluster_ip_range.clone(),
                service_node_port_range: options.service_node_port_range.clone(),
                ..RegistryOptions::default()
            },
        )
        .map_err(|e| StartError::Other(e.to_string()))?,
    );
    registry
        .seed(Some(MasterService {
            cluster_ip: service_ip,
            advertise_address: options.advertise_address,
            port: options.secure_port,
        }))
        .await
        .map_err(|e| flag("--etcd-servers", format!("seeding bootstrap objects: {e}")))?;
    registry
        .restore_service_allocations()
        .await
        .map_err(|e| flag("--etcd-servers", format!("reading Services: {e}")))?;

    let mut config = ServerConfig::new(tls);
    let healthy = registry.health_flag();
    config.readiness = Arc::new(move || {
        if healthy.load(Ordering::Relaxed) {
            vec![HealthCheck::ok("etcd")]
        } else {
            vec![HealthCheck::failed("etcd", "etcd is unreachable")]
        }
    });
    let address = SocketAddr::new(options.bind_address, options.secure_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| flag("--bind-address/--secure-port", format!("{address}: {e}")))?;
    Ok(Prepared {
        listener,
        config,
        registry,
    })
}

/// Waits up to 60 s for etcd to answer.
async fn wait_for_storage(storage: &dyn Storage) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match storage.health().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(flag(
                    "--etcd-servers",
                    format!("etcd is not reachable: {e}"),
                ));
            }
            Err(e) => {
                tracing::info!(error = %e, "waiting for etcd");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn service_account_verifier(
    options: &ApiServerOptions,
) -> Result<Option<ServiceAccountVerifier>, StartError> {
    let mut keys = PublicKeySet::new();
    for path in &options.service_account_key_files {
        keys.add_file(path)
            .map_err(|e| flag("--service-account-key-file", e))?;
    }
    if let Some(path) = &options.service_account_signing_key_file {
        keys.add_file(path)
            .map_err(|e| flag("--service-account-signing-key-file", e))?;
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let mut issuers = options.service_account_issuers.clone();
    issuers.push(crate::auth::serviceaccount::LEGACY_ISSUER.to_owned());
    let audiences = options
        .service_account_issuers
        .first()
        .cloned()
        .into_iter()
        .collect();
    Ok(Some(ServiceAccountVerifier::new(keys, issuers, audiences)))
}

/// [`prepare`], then [`Prepared::serve`].
pub async fn run(
    options: &ApiServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    prepare(options).await?.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip_and_ranges() {
        assert_eq!(
            first_service_ip("10.96.0.0/12").ok(),
            Some("10.96.0.1".parse().expect("ip"))
        );
        assert_eq!(
            first_service_ip("10.100.3.7/16").ok(),
            Some("10.100.0.1".parse().expect("ip"))
        );
        assert_eq!(
            first_service_ip("fd00::/108").ok(),
            Some("fd00::1".parse().expect("ip"))
        );
        assert!(first_service_ip("10.96.0.0").is_err());
        assert_eq!(parse_port_range("30000-32767").ok(), Some((30000, 32767)));
        assert!(parse_port_range("32767-30000").is_err());
    }
}

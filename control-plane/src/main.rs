//! `control-plane`: Cairn's multi-call control-plane binary.
//!
//! `control-plane apiserver` runs the Kubernetes API server with
//! kube-apiserver's flag names (the PKI from `bootstrap certs generate`
//! plugs straight in). This file only parses flags and sets up logging
//! (`RUST_LOG`, default `info`); the server itself is
//! `cairn_apiserver::server`; `controller-manager` and `vip` live in the
//! library (`cairn_control_plane`).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "control-plane",
    version,
    about = "Cairn's control-plane components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The Kubernetes API server, storing objects in etcd.
    Apiserver(Box<ApiserverArgs>),
    /// The controllers cluster formation needs: bootstrap signer, token
    /// cleaner, CSR approver and signer.
    ControllerManager(cairn_control_plane::controllers::ControllerManagerArgs),
    /// The virtual IP in front of the apiservers (etcd election, gratuitous
    /// ARP).
    Vip(Box<cairn_control_plane::vip::VipArgs>),
}

#[derive(Debug, clap::Args)]
struct ApiserverArgs {
    /// Comma-separated etcd URLs.
    #[arg(long = "etcd-servers", required = true)]
    etcd_servers: String,
    /// CA bundle verifying etcd's serving certificate.
    #[arg(long = "etcd-cafile")]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd.
    #[arg(long = "etcd-certfile")]
    etcd_certfile: Option<PathBuf>,
    /// Key of --etcd-certfile.
    #[arg(long = "etcd-keyfile")]
    etcd_keyfile: Option<PathBuf>,
    /// Prefix of every key in etcd.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    etcd_prefix: String,
    /// Serving certificate (with intermediates).
    #[arg(long = "tls-cert-file", required = true)]
    tls_cert_file: PathBuf,
    /// Key of --tls-cert-file.
    #[arg(long = "tls-private-key-file", required = true)]
    tls_private_key_file: PathBuf,
    /// CA bundle verifying client certificates.
    #[arg(long = "client-ca-file")]
    client_ca_file: Option<PathBuf>,
    /// PEM file with keys verifying service-account tokens (repeatable).
    #[arg(long = "service-account-key-file")]
    service_account_key_file: Vec<PathBuf>,
    /// Private key signing service-account tokens.
    #[arg(long = "service-account-signing-key-file")]
    service_account_signing_key_file: Option<PathBuf>,
    /// Issuer of service-account tokens (repeatable; the first one signs).
    #[arg(long = "service-account-issuer")]
    service_account_issuer: Vec<String>,
    /// CIDR Service cluster IPs come from.
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Port range NodePorts come from.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    service_node_port_range: String,
    /// HTTPS port.
    #[arg(long = "secure-port", default_value_t = 6443)]
    secure_port: u16,
    /// Address to listen on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Address advertised to the cluster (the `kubernetes` Endpoints).
    #[arg(long = "advertise-address")]
    advertise_address: Option<IpAddr>,
}

impl From<ApiserverArgs> for cairn_apiserver::server::ApiServerOptions {
    fn from(a: ApiserverArgs) -> Self {
        Self {
            etcd_servers: a.etcd_servers,
            etcd_cafile: a.etcd_cafile,
            etcd_certfile: a.etcd_certfile,
            etcd_keyfile: a.etcd_keyfile,
            etcd_prefix: a.etcd_prefix,
            tls_cert_file: a.tls_cert_file,
            tls_private_key_file: a.tls_private_key_file,
            client_ca_file: a.client_ca_file,
            service_account_key_files: a.service_account_key_file,
            service_account_signing_key_file: a.service_account_signing_key_file,
            service_account_issuers: a.service_account_issuer,
            service_cluster_ip_range: a.service_cluster_ip_range,
            service_node_port_range: a.service_node_port_range,
            secure_port: a.secure_port,
            bind_address: a.bind_address,
            advertise_address: a.advertise_address,
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Apiserver(args) => {
            let options = cairn_apiserver::server::ApiServerOptions::from(*args);
            let served =
                runtime.block_on(cairn_apiserver::server::run(&options, shutdown_signal()));
            // Dropping the runtime would wait for every blocking task (a
            // stuck etcd call, say) and keep a stopped apiserver alive;
            // once serving is over, give them a moment and exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            served.context("apiserver")?;
        }
        Command::ControllerManager(args) => {
            cairn_control_plane::controllers::run(&args).context("controller-manager")?;
        }
        Command::Vip(args) => {
            cairn_control_plane::vip::run(&args).context("vip")?;
        }
    }
    Ok(())
}

//! `control-plane controller-manager`: the controllers kubeadm-style
//! cluster formation needs, with kube-controller-manager's flag names.
//!
//! | controller | module | what it keeps true |
//! |---|---|---|
//! | `bootstrapsigner` | [`bootstrapsigner`] | `kube-public/cluster-info` carries a JWS per signing bootstrap token |
//! | `tokencleaner` | [`tokencleaner`] | expired bootstrap-token Secrets are deleted |
//! | `csrapproving` | [`csrapproving`] | kubelet client CSRs the requester may create are Approved |
//! | `csrsigning` | [`csrsigning`] | Approved CSRs of the kubelet/apiserver-client signers get a certificate from the cluster CA |
//! | `garbagecollector` | [`garbagecollector`] | dependents of vanished owners are deleted; `foregroundDeletion` and `orphan` owners are finalized |
//!
//! Design: every controller is level-triggered: a pass lists the
//! complete current state and converges it, so passes are idempotent and
//! can run any number of times. Controllers talk to the API through the
//! small [`api::ClusterApi`] trait (the real client in [`kube`], an
//! in-memory double in tests), each runs on its own thread ([`runner`]),
//! woken by watches, by its own deadlines and by a 10 s resync. With
//! `--leader-elect` (the default) the process first wins the Lease
//! `kube-system/kube-controller-manager` ([`leader`]) and only then starts
//! controllers; losing the lease stops them and exits with an error (as
//! kube-controller-manager does; the supervisor restarts it as a
//! candidate). SIGTERM/SIGINT stop the controllers, release the lease so a
//! peer takes over at once, and exit 0.
//!
//! Differences from kube-controller-manager: `*` also enables
//! `bootstrapsigner` and `tokencleaner` (kube leaves them off by default
//! and kubeadm always turns them on), and controllers use the
//! controller manager's own credentials rather than per-controller
//! service-account tokens (the bootstrap policy binds the controller roles
//! to `system:kube-controller-manager` for that).

pub mod api;
pub mod bootstrapsigner;
pub mod csr;
pub mod csrapproving;
pub mod csrsigning;
pub mod garbagecollector;
pub use cairn_cluster::duration;
pub mod kube;
pub mod leader;
pub mod runner;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokencleaner;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ArgAction;

use self::api::{ClusterApi, Watched};
use self::duration::GoDuration;
use self::leader::{LeaderElector, LeaseConfig};
use self::runner::{Controller, Events};

/// Every controller this binary has, in start order.
pub const KNOWN_CONTROLLERS: [&str; 5] = [
    "bootstrapsigner",
    "tokencleaner",
    "csrapproving",
    "csrsigning",
    "garbagecollector",
];

/// Flags of `control-plane controller-manager` (kube-controller-manager's
/// names).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Example (what kubeadm-style nodes run):
  control-plane controller-manager \\
    --kubeconfig /etc/kubernetes/controller-manager.conf \\
    --cluster-signing-cert-file /etc/kubernetes/pki/ca.crt \\
    --cluster-signing-key-file /etc/kubernetes/pki/ca.key \\
    --root-ca-file /etc/kubernetes/pki/ca.crt

Logging: RUST_LOG (default info); one line per approval, signature and cluster-info update.")]
pub struct ControllerManagerArgs {
    /// kubeconfig with the controller manager's credentials (user
    /// system:kube-controller-manager), e.g.
    /// /etc/kubernetes/controller-manager.conf.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: PathBuf,

    /// PEM CA certificate that signs CSRs (csrsigning), e.g.
    /// /etc/kubernetes/pki/ca.crt. Required when csrsigning is enabled.
    #[arg(long = "cluster-signing-cert-file", value_name = "FILE")]
    pub cluster_signing_cert_file: Option<PathBuf>,

    /// PEM private key of --cluster-signing-cert-file (PKCS#8, SEC1 or
    /// PKCS#1), e.g. /etc/kubernetes/pki/ca.key.
    #[arg(long = "cluster-signing-key-file", value_name = "FILE")]
    pub cluster_signing_key_file: Option<PathBuf>,

    /// Longest validity of signed certificates (Go duration: 8760h0m0s,
    /// 720h, 90m). A CSR's spec.expirationSeconds can only shorten it
    /// (not below 10m).
    #[arg(
        long = "cluster-signing-duration",
        value_name = "DURATION",
        default_value = "8760h0m0s"
    )]
    pub cluster_signing_duration: GoDuration,

    /// Comma-separated controllers to run: '*' for all, 'name' to enable,
    /// '-name' to disable. Known: bootstrapsigner, tokencleaner,
    /// csrapproving, csrsigning, garbagecollector (kube's current names,
    /// e.g. garbage-collector-controller, work too).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,

    /// The cluster's root CA bundle (kube publishes it to pods; here it is
    /// checked to be a readable PEM certificate at startup).
    #[arg(long = "root-ca-file", value_name = "FILE")]
    pub root_ca_file: Option<PathBuf>,

    /// Run controllers only while holding the Lease
    /// kube-system/kube-controller-manager (needed when several
    /// control-plane nodes run the controller manager). Use
    /// --leader-elect=false for a single instance without a lease.
    #[arg(
        long = "leader-elect",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,

    /// How long a lease stays valid after its last renewal before another
    /// candidate may take it.
    #[arg(
        long = "leader-elect-lease-duration",
        value_name = "DURATION",
        default_value = "15s"
    )]
    pub leader_elect_lease_duration: GoDuration,

    /// How long the leader keeps trying to renew before it gives up
    /// leadership (must be shorter than the lease duration).
    #[arg(
        long = "leader-elect-renew-deadline",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub leader_elect_renew_deadline: GoDuration,

    /// Interval between attempts to acquire or renew the lease.
    #[arg(
        long = "leader-elect-retry-period",
        value_name = "DURATION",
        default_value = "2s"
    )]
    pub leader_elect_retry_period: GoDuration,
}

/// Why the controller manager could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ControllerManagerError {
    #[error(
        "--controllers: {0:?} is not a known controller (known: *, bootstrapsigner, tokencleaner, csrapproving, csrsigning, garbagecollector; prefix with - to disable)"
    )]
    UnknownController(String),
    #[error("csrsigning needs --cluster-signing-cert-file and --cluster-signing-key-file")]
    MissingSigningFiles,
    // The inner errors are part of the message rather than a `source`, so
    // anyhow's chain in main.rs does not print them twice.
    #[error("loading the cluster signing CA: {0}")]
    SigningCa(csrsigning::SigningError),
    #[error("--root-ca-file {path}: {reason}")]
    RootCa { path: String, reason: String },
    #[error("leader election timing: {0}")]
    LeaseTiming(&'static str),
    #[error("--kubeconfig: {error}")]
    Client {
        error: Box<cairn_cluster::client::Error>,
    },
    #[error("starting threads: {0}")]
    Thread(std::io::Error),
    #[error(
        "lost the lease {namespace}/{name}: not renewed within {renew_deadline:?}; controllers stopped"
    )]
    LeadershipLost {
        namespace: String,
        name: String,
        renew_deadline: Duration,
    },
}

/// kube-controller-manager's current names (1.28+) for the controllers,
/// accepted by `--controllers` next to the older names used here.
const CONTROLLER_ALIASES: [(&str, &str); 5] = [
    ("bootstrap-signer-controller", "bootstrapsigner"),
    ("token-cleaner-controller", "tokencleaner"),
    (
        "certificatesigningrequest-approving-controller",
        "csrapproving",
    ),
    ("certificatesigningrequest-signing-controller", "csrsigning"),
    ("garbage-collector-controller", "garbagecollector"),
];

/// Which controllers `--controllers` enables, with kube's rules: `-name`
/// wins over `name`, which wins over `*`.
pub fn enabled_controllers(list: &[String]) -> Result<Vec<&'static str>, ControllerManagerError> {
    let mut entries: Vec<String> = Vec::new();
    for entry in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (prefix, name) = match entry.strip_prefix('-') {
            Some(name) => ("-", name),
            None => ("", entry),
        };
        let name = CONTROLLER_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, known)| known);
        if entry != "*" && !KNOWN_CONTROLLERS.contains(&name) {
            return Err(ControllerManagerError::UnknownController(entry.to_owned()));
        }
        entries.push(format!("{prefix}{name}"));
    }
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    let star = entries.contains(&"*");
    Ok(KNOWN_CONTROLLERS
        .into_iter()
        .filter(|name| {
            let disabled = entries.iter().any(|e| e.strip_prefix('-') == Some(name));
            let named = entries.contains(name);
            !disabled && (named || star)
        })
        .collect())
}

fn check_lease_timing(args: &ControllerManagerArgs) -> Result<(), ControllerManagerError> {
    let lease = args.leader_elect_lease_duration.0;
    let renew = args.leader_elect_renew_deadline.0;
    let retry = args.leader_elect_retry_period.0;
    if retry.is_zero() {
        return Err(ControllerManagerError::LeaseTiming(
            "--leader-elect-retry-period must be positive",
        ));
    }
    if lease <= renew {
        return Err(ControllerManagerError::LeaseTiming(
            "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline",
        ));
    }
    if renew <= retry.mul_f64(1.2) {
        return Err(ControllerManagerError::LeaseTiming(
            "--leader-elect-renew-deadline must be greater than 1.2 x --leader-elect-retry-period",
        ));
    }
    Ok(())
}

fn check_root_ca(path: &Path) -> Result<(), ControllerManagerError> {
    let fail = |reason: String| ControllerManagerError::RootCa {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    cairn_pki::cert::CertInfo::from_pem(&text).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// `<hostname>_<random>`: unique per process, readable in the Lease.
fn leader_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller-manager".to_owned());
    let random: u128 = rand::random();
    let hex = format!("{random:032x}");
    format!(
        "{host}_{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn build_controllers(
    enabled: &[&str],
    args: &ControllerManagerArgs,
) -> Result<Vec<Box<dyn Controller>>, ControllerManagerError> {
    let mut controllers: Vec<Box<dyn Controller>> = Vec::new();
    for name in enabled {
        match *name {
            "bootstrapsigner" => {
                controllers.push(Box::new(bootstrapsigner::BootstrapSigner::new()))
            }
            "tokencleaner" => controllers.push(Box::new(tokencleaner::TokenCleaner::new())),
            "csrapproving" => controllers.push(Box::new(csrapproving::CsrApprover::new())),
            "garbagecollector" => {
                controllers.push(Box::new(garbagecollector::GarbageCollector::new()));
            }
            "csrsigning" => {
                let (Some(cert), Some(key)) = (
                    &args.cluster_signing_cert_file,
                    &args.cluster_signing_key_file,
                ) else {
                    return Err(ControllerManagerError::MissingSigningFiles);
                };
                let ca = csrsigning::ClusterCa::load(cert, key, args.cluster_signing_duration.0)
                    .map_err(ControllerManagerError::SigningCa)?;
                controllers.push(Box::new(csrsigning::CsrSigner::new(ca)));
            }
            other => return Err(ControllerManagerError::UnknownController(other.to_owned())),
        }
    }
    Ok(controllers)
}

/// Waits for the lease; `Ok(false)` when stopped before winning it.
fn acquire(elector: &mut LeaderElector, api: &dyn ClusterApi, events: &Events) -> bool {
    let retry = elector.config().retry_period;
    let mut reported = None::<String>;
    let mut waiting_logged = false;
    loop {
        match elector.try_acquire_or_renew(api, api::timestamp_now(), Instant::now()) {
            Ok(true) => {
                tracing::info!(
                    identity = elector.config().identity.as_str(),
                    "acquired lease {}/{}",
                    elector.config().namespace,
                    elector.config().name
                );
                return true;
            }
            Ok(false) => {
                if !waiting_logged {
                    tracing::info!(
                        holder = elector.observed_holder().unwrap_or(""),
                        "waiting for lease {}/{}",
                        elector.config().namespace,
                        elector.config().name
                    );
                    waiting_logged = true;
                }
            }
            Err(e) => {
                let message = e.to_string();
                if reported.as_deref() != Some(message.as_str()) {
                    tracing::warn!("leader election: {message}");
                    reported = Some(message);
                }
            }
        }
        if events.sleep(retry) {
            return false;
        }
    }
}

/// Keeps renewing until stop (`Ok`) or until renewal fails for longer
/// than the renew deadline (`Err`).
fn hold(
    elector: &mut LeaderElector,
    api: &dyn ClusterApi,
    events: &Events,
) -> Result<(), ControllerManagerError> {
    let config = elector.config().clone();
    let mut last_renewal = Instant::now();
    while !events.sleep(config.retry_period) {
        match elector.try_acquire_or_renew(api, api::timestamp_now(), Instant::now()) {
            Ok(true) => last_renewal = Instant::now(),
            Ok(false) => tracing::warn!(
                holder = elector.observed_holder().unwrap_or(""),
                "lease renewal refused"
            ),
            Err(e) => tracing::warn!("lease renewal failed: {e}"),
        }
        if last_renewal.elapsed() > config.renew_deadline {
            return Err(ControllerManagerError::LeadershipLost {
                namespace: config.namespace,
                name: config.name,
                renew_deadline: config.renew_deadline,
            });
        }
    }
    Ok(())
}

/// Runs the controllers until SIGTERM/SIGINT (then `Ok`), or until the
/// lease is lost (`Err`).
pub fn run(args: &ControllerManagerArgs) -> Result<(), ControllerManagerError> {
    let enabled = enabled_controllers(&args.controllers)?;
    check_lease_timing(args)?;
    if let Some(path) = &args.root_ca_file {
        check_root_ca(path)?;
    }
    // Everything that can be wrong with the flags and files fails here,
    // before any lease is taken.
    let controllers = build_controllers(&enabled, args)?;
    let client =
        cairn_cluster::client::KubeClient::from_kubeconfig(&args.kubeconfig).map_err(|error| {
            ControllerManagerError::Client {
                error: Box::new(error),
            }
        })?;
    let api: Arc<dyn ClusterApi> = Arc::new(kube::KubeApi::new(client.clone()));
    let events = Arc::new(Events::default());
    runner::spawn_signal_listener(Arc::clone(&events)).map_err(ControllerManagerError::Thread)?;

    let identity = leader_identity();
    tracing::info!(
        controllers = ?enabled,
        server = client.server_url(),
        leader_elect = args.leader_elect,
        identity = identity.as_str(),
        "starting controller manager"
    );
    let mut elector = args.leader_elect.then(|| {
        LeaderElector::new(LeaseConfig {
            namespace: leader::LEASE_NAMESPACE.into(),
            name: leader::LEASE_NAME.into(),
            identity,
            lease_duration: args.leader_elect_lease_duration.0,
            renew_deadline: args.leader_elect_renew_deadline.0,
            retry_period: args.leader_elect_retry_period.0,
        })
    });
    if let Some(elector) = elector.as_mut()
        && !acquire(elector, api.as_ref(), &events)
    {
        tracing::info!("stopped before becoming leader");
        return Ok(());
    }

    let mut watched: Vec<Watched> = Vec::new();
    for controller in &controllers {
        for w in controller.watches() {
            if !watched.contains(w) {
                watched.push(*w);
            }
        }
    }
    for w in watched {
        kube::spawn_watch(client.clone(), w, Arc::clone(&events))
            .map_err(ControllerManagerError::Thread)?;
    }
    let mut threads = Vec::new();
    for controller in controllers {
        threads.push(
            runner::spawn_controller(controller, Arc::clone(&api), Arc::clone(&events))
                .map_err(ControllerManagerError::Thread)?,
        );
    }

    let outcome = match elector.as_mut() {
        Some(elector) => hold(elector, api.as_ref(), &events),
        None => {
            while !events.sleep(Duration::from_secs(3600)) {}
            Ok(())
        }
    };
    events.stop();
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("a controller thread panicked");
        }
    }
    if outcome.is_ok()
        && let Some(elector) = elector.as_mut()
    {
        match elector.release(api.as_ref(), api::timestamp_now()) {
            Ok(()) => tracing::info!("released the lease"),
            Err(e) => tracing::warn!("could not release the lease: {e}"),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerManagerArgs,
    }

    fn parse(extra: &[&str]) -> ControllerManagerArgs {
        let mut argv = vec![
            "cm",
            "--kubeconfig",
            "/etc/kubernetes/controller-manager.conf",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parse").args
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_match_kube_controller_manager() {
        let args = parse(&[]);
        assert!(args.leader_elect);
        assert_eq!(
            args.cluster_signing_duration.0,
            Duration::from_secs(8760 * 3600)
        );
        assert_eq!(args.controllers, ["*"]);
        assert_eq!(args.leader_elect_lease_duration.0, Duration::from_secs(15));
        assert_eq!(args.leader_elect_renew_deadline.0, Duration::from_secs(10));
        assert_eq!(args.leader_elect_retry_period.0, Duration::from_secs(2));
        check_lease_timing(&args).expect("default timing is valid");
    }

    #[test]
    fn flag_forms() {
        let args = parse(&[
            "--leader-elect=false",
            "--cluster-signing-duration=720h",
            "--controllers=*,-tokencleaner",
        ]);
        assert!(!args.leader_elect);
        assert_eq!(
            args.cluster_signing_duration.0,
            Duration::from_secs(720 * 3600)
        );
        assert_eq!(
            enabled_controllers(&args.controllers).expect("valid"),
            [
                "bootstrapsigner",
                "csrapproving",
                "csrsigning",
                "garbagecollector"
            ]
        );
        assert!(parse(&["--leader-elect"]).leader_elect);
        let bad = Cli::try_parse_from([
            "cm",
            "--kubeconfig",
            "k",
            "--cluster-signing-duration",
            "1y",
        ])
        .expect_err("bad duration");
        assert!(bad.to_string().contains("8760h0m0s"), "{bad}");
    }

    #[test]
    fn controller_selection() {
        assert_eq!(
            enabled_controllers(&list(&["*"])).expect("ok"),
            KNOWN_CONTROLLERS
        );
        assert_eq!(
            enabled_controllers(&list(&["csrsigning", "csrapproving"])).expect("ok"),
            ["csrapproving", "csrsigning"]
        );
        assert_eq!(
            enabled_controllers(&list(&["-csrsigning", "csrsigning"])).expect("ok"),
            Vec::<&str>::new()
        );
        assert_eq!(
            enabled_controllers(&list(&["garbage-collector-controller", "tokencleaner"]))
                .expect("kube's current names are accepted"),
            ["tokencleaner", "garbagecollector"]
        );
        assert_eq!(
            enabled_controllers(&list(&["*", "-garbage-collector-controller"])).expect("ok"),
            [
                "bootstrapsigner",
                "tokencleaner",
                "csrapproving",
                "csrsigning"
            ]
        );
        assert!(matches!(
            enabled_controllers(&list(&["*", "nodelifecycle"])),
            Err(ControllerManagerError::UnknownController(name)) if name == "nodelifecycle"
        ));
    }

    #[test]
    fn lease_timing_is_checked() {
        let args = parse(&["--leader-elect-renew-deadline=20s"]);
        assert!(check_lease_timing(&args).is_err());
        let args = parse(&[
            "--leader-elect-renew-deadline=2s",
            "--leader-elect-retry-period=2s",
        ]);
        assert!(check_lease_timing(&args).is_err());
    }

    #[test]
    fn identities_are_unique_and_name_the_host() {
        let a = leader_identity();
        let b = leader_identity();
        assert_ne!(a, b);
        assert!(a.contains('_'), "{a}");
    }
}

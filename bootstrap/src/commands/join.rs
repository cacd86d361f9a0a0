//! `bootstrap join`: the machine config of a node that joins an existing
//! cluster.
//!
//! Like `init`, the CLI does not join anything itself: the node does, from
//! its `[join]` section. What the CLI adds is an early, local check: token
//! discovery against ENDPOINT from where the command runs (`cluster-info`,
//! the CA pin, the token's signature; nothing secret is sent), so a typo in
//! the token or the pin is refused here, with discovery's message, instead
//! of showing up minutes later on the node's console. When ENDPOINT is only
//! reachable from the node network (a VIP), `--skip-discovery` leaves the
//! check to the node, which makes the same one before it sends anything.
//!
//! The order is: flags that cannot work together → the machine-config rules
//! → discovery → delivery (shared with `init`, see [`super::init`]).

use std::io::Write;

use cairn_config::{
    ClusterConfig, ContainerdConfig, JoinConfig, KernelConfig, MachineConfig, NodeRole,
};

use super::init::{
    NodeConfigError, api_config, deliver, node_config, vip_config, write_watch_hint,
};
use crate::cli::JoinArgs;
use crate::error::BootstrapError;

/// The apiserver port used when ENDPOINT gives none.
const APISERVER_PORT: u16 = cairn_config::model::DEFAULT_APISERVER_PORT;

/// Runs `bootstrap join`.
pub fn run(args: JoinArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let config = join_config(&args)?;
    // Checked before discovery so that bad flags fail fast and offline.
    let problems = config.problems();
    if problems.is_empty() && !args.skip_discovery {
        discover(&args)?;
    }
    // `deliver` reports the problems, if any, naming the flags.
    let delivered = deliver(&config, "bootstrap join", &args.destination, out)?;
    let mut notes = delivered.notes_writer(out);
    let name = args.network.node_name.as_str();
    let role = if args.control_plane {
        "control plane"
    } else {
        "worker"
    };
    if args.skip_discovery {
        writeln!(
            notes,
            "[join] token discovery skipped (--skip-discovery): {name} checks the CA pin and the \
             token itself and shows a refusal in its status and on its console"
        )?;
    }
    if let Some(path) = &delivered.written {
        writeln!(
            notes,
            "[join] machine config for {name} written to {}",
            path.display()
        )?;
    }
    match &delivered.applied_to {
        Some(address) => {
            writeln!(
                notes,
                "[join] machine config applied to {name} at {address}"
            )?;
            writeln!(
                notes,
                "\n{name} now joins {} as a {role} by itself (discovery, then TLS bootstrap{}); \
                 it is a member once `kubectl get nodes` lists it.",
                args.endpoint,
                if args.control_plane {
                    ", shared CAs, etcd learner and promotion"
                } else {
                    ""
                }
            )?;
            write_watch_hint(&mut *notes, name, args.destination.client_ca.is_some())?;
        }
        None => writeln!(
            notes,
            "\nGive {name} this config (in maintenance mode: add --node, --maintenance-key and \
             --fingerprint from its console; or serve it as a cairn.config= URL or NoCloud \
             drive); it then joins {} as a {role} by itself.",
            args.endpoint
        )?,
    }
    Ok(())
}

/// The machine config `join` renders from its flags, after the checks that
/// need more context than the machine-config rules give.
pub fn join_config(args: &JoinArgs) -> Result<MachineConfig, NodeConfigError> {
    if args.certificate_key.is_some() && !args.control_plane {
        return Err(NodeConfigError::Flag {
            flag: "--certificate-key".into(),
            message: "only a control-plane join uses the certificate key; add --control-plane, \
                      or drop --certificate-key for a worker"
                .into(),
        });
    }
    if args.control_plane && args.certificate_key.is_none() {
        return Err(NodeConfigError::Flag {
            flag: "--certificate-key".into(),
            message: "a control-plane join needs the key the first control plane uploaded the \
                      CA files with (64 hex digits, printed by `bootstrap init --upload-certs`)"
                .into(),
        });
    }
    let vip = vip_config(&args.vip);
    if vip.is_some() && !args.control_plane {
        return Err(NodeConfigError::Flag {
            flag: "--vip".into(),
            message: "only control planes hold the VIP; a worker reaches the apiservers through \
                      ENDPOINT (drop --vip/--vip-interface, or add --control-plane)"
                .into(),
        });
    }
    let role = if args.control_plane {
        NodeRole::ControlPlane
    } else {
        NodeRole::Worker
    };
    Ok(MachineConfig {
        cluster: vip.map(|vip| ClusterConfig {
            vip: Some(vip),
            ..ClusterConfig::default()
        }),
        node: node_config(&args.network, role),
        kernel: KernelConfig::default(),
        containerd: ContainerdConfig::default(),
        join: Some(JoinConfig {
            endpoint: args.endpoint.clone(),
            token: args.token.clone(),
            discovery_token_ca_cert_hash: args.discovery_token_ca_cert_hash.clone(),
            control_plane: args.control_plane,
            certificate_key: args.certificate_key.clone(),
        }),
        api: api_config(args.destination.client_ca.as_deref())?,
    })
}

/// Token discovery from here, with discovery's own refusal messages.
fn discover(args: &JoinArgs) -> Result<(), NodeConfigError> {
    let endpoint = args
        .endpoint
        .url(APISERVER_PORT)
        .trim_start_matches("https://")
        .to_owned();
    tracing::info!(%endpoint, "token discovery");
    match cairn_cluster::discovery::discover(
        &endpoint,
        &args.token,
        args.discovery_token_ca_cert_hash.as_str(),
    ) {
        Ok(_) => Ok(()),
        Err(source) => {
            // Only failures to reach the cluster can be the network's
            // fault; a wrong pin or token must not be waved through.
            let hint = if source.is_transient() {
                format!(
                    "\n  (if {endpoint} is not reachable from here, e.g. a VIP only reachable \
                     inside the node network, re-run with --skip-discovery: the node then \
                     makes the same checks itself)"
                )
            } else {
                String::new()
            };
            Err(NodeConfigError::Discovery {
                endpoint,
                hint,
                source: Box::new(source),
            })
        }
    }
}

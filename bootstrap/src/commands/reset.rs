//! `bootstrap reset`: asks a node, through its API, to leave the cluster,
//! wipe its STATE partition and restart. The node does the work
//! (node-agent's `cluster::reset`); this side picks the credentials and
//! reports the steps the node took.

use std::io::Write;
use std::path::Path;

use cairn_node_api::{Credentials, NodeClient, ResetRequest, ResetResponse, ServerTrust};
use cairn_pki::kubeconfig::Kubeconfig;

use super::init::node_api_address;
use crate::cli::ResetArgs;
use crate::error::BootstrapError;

/// Runs `bootstrap reset`.
pub fn run(args: ResetArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let credentials = credentials(&args)?;
    let address = node_api_address(&args.node);
    let client = NodeClient::new(
        address.as_str(),
        ServerTrust::Fingerprint(args.fingerprint.clone()),
        credentials,
    )?;
    let answer = client.reset(&ResetRequest {
        graceful: args.graceful,
        reboot: !args.poweroff,
    })?;
    print_steps(out, &args.node, &answer)?;
    Ok(())
}

/// The node's steps, then what happens next.
pub fn print_steps(out: &mut dyn Write, node: &str, answer: &ResetResponse) -> std::io::Result<()> {
    for step in &answer.steps {
        writeln!(out, "{node}: {step}")?;
    }
    writeln!(out, "{node}: wiping STATE and restarting")
}

fn credentials(args: &ResetArgs) -> Result<Credentials, BootstrapError> {
    if let Some(path) = &args.kubeconfig {
        return kubeconfig_credentials(path);
    }
    match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Ok(Credentials::ClientCert {
            cert_pem: read("--client-cert", cert)?,
            key_pem: read("--client-key", key)?,
        }),
        _ => Err(BootstrapError::InvalidFlag {
            flag: "--kubeconfig",
            message: "give --kubeconfig FILE or --client-cert FILE --client-key FILE".into(),
        }),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<String, BootstrapError> {
    std::fs::read_to_string(path).map_err(|e| BootstrapError::InvalidFlag {
        flag,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// The client certificate of a kubeconfig's current user, as node API
/// credentials (a node trusts the cluster CA that signed it).
pub fn kubeconfig_credentials(path: &Path) -> Result<Credentials, BootstrapError> {
    let text = read("--kubeconfig", path)?;
    let creds = Kubeconfig::parse(&text)
        .and_then(|k| k.current_credentials())
        .map_err(|e| BootstrapError::InvalidFlag {
            flag: "--kubeconfig",
            message: format!("{}: {e}", path.display()),
        })?;
    Ok(Credentials::ClientCert {
        cert_pem: creds.client_cert_pem,
        key_pem: creds.client_key_pem,
    })
}

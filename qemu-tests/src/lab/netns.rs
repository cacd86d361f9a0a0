//! The lab's network namespace: creating it with its bridge and taps,
//! removing it, and running code inside it.
//!
//! Everything is done with `ip` (iproute2) so the commands are the ones an
//! operator would type; `ip -n NS ...` runs each command inside the
//! namespace, so the host's own interfaces are never touched.
//!
//! Sockets belong to the namespace of the thread that creates them and keep
//! it for their whole life. [`in_namespace`] therefore runs a closure on a
//! short-lived thread that first enters the namespace (`setns`), so a
//! listener bound or a connection opened there can be used from any thread
//! of the process afterwards, and no long-lived thread keeps the namespace
//! alive after `ip netns del`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};

use super::LabError;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named namespace.
pub fn path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// Whether `ip netns list` would show `netns`.
pub fn exists(netns: &str) -> bool {
    path(netns).exists()
}

/// Runs `ip ARGS`, failing with its standard error.
pub fn ip(args: &[&str]) -> Result<(), LabError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: format!("ip {}", args.join(" ")),
            message: format!("{e}; install iproute2"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("ip {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The network inside a namespace: one bridge with the gateway address and
/// one tap per VM enslaved to it.
#[derive(Debug, Clone)]
pub struct Topology<'a> {
    pub netns: &'a str,
    pub bridge: &'a str,
    /// The gateway address with its prefix, e.g. `10.5.0.1/24`.
    pub gateway_cidr: &'a str,
    pub taps: &'a [String],
}

/// Creates the namespace, its loopback, the bridge and the taps. On error
/// the namespace is removed again.
pub fn create(topology: &Topology<'_>) -> Result<(), LabError> {
    let ns = topology.netns;
    ip(&["netns", "add", ns])?;
    let result = (|| {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", topology.bridge, "type", "bridge"])?;
        // No STP: a VM's tap forwards as soon as it is attached.
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            topology.bridge,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            topology.gateway_cidr,
            "dev",
            topology.bridge,
        ])?;
        ip(&["-n", ns, "link", "set", topology.bridge, "up"])?;
        for tap in topology.taps {
            add_tap(ns, topology.bridge, tap)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = delete(ns);
    }
    result
}

/// Adds a tap device enslaved to `bridge`.
pub fn add_tap(netns: &str, bridge: &str, tap: &str) -> Result<(), LabError> {
    ip(&["-n", netns, "tuntap", "add", "dev", tap, "mode", "tap"])?;
    ip(&["-n", netns, "link", "set", tap, "master", bridge])?;
    ip(&["-n", netns, "link", "set", tap, "up"])
}

/// Removes the namespace (and with it the bridge and taps, once no process
/// is left inside). Absent is fine.
pub fn delete(netns: &str) -> Result<(), LabError> {
    if !exists(netns) {
        return Ok(());
    }
    ip(&["netns", "del", netns])
}

/// Runs `f` on a thread that has entered `netns`, and returns its result.
pub fn in_namespace<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    let file = File::open(path(netns)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {netns} is not there: {e}"),
        )
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::other(format!("cannot enter network namespace {netns}: {e}"))
                })?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a thread in the lab namespace panicked")))
    })
}

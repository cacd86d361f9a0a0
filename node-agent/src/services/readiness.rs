//! Readiness checks: when a started service counts as ready.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How the supervisor decides that a started service is ready. Checks
/// other than `Immediate` are repeated every [`PROBE_INTERVAL`] until they
/// pass, the process exits or the service's `ready_timeout` runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as the process is started.
    Immediate,
    /// Ready once a connection to this unix socket succeeds.
    UnixSocket(PathBuf),
    /// Ready once a TCP connection to this address succeeds.
    TcpConnect(SocketAddr),
    /// Ready once this command exits 0.
    Command { program: PathBuf, args: Vec<String> },
    /// All of these checks pass, in order.
    All(Vec<Readiness>),
}

/// Pause between two readiness checks.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Longest a single check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Readiness {
    /// One check; `Err` says why the service is not ready yet.
    pub fn probe(&self) -> Result<(), String> {
        match self {
            Readiness::Immediate => Ok(()),
            Readiness::UnixSocket(path) => UnixStream::connect(path)
                .map(drop)
                .map_err(|e| format!("connecting to {}: {e}", path.display())),
            Readiness::TcpConnect(address) => {
                TcpStream::connect_timeout(address, Duration::from_secs(1))
                    .map(drop)
                    .map_err(|e| format!("connecting to {address}: {e}"))
            }
            Readiness::Command { program, args } => {
                match crate::process::run(program, args, PROBE_TIMEOUT) {
                    Ok(output) if output.status.success() => Ok(()),
                    Ok(output) => Err(format!(
                        "{} {}: {} {}",
                        program.display(),
                        args.join(" "),
                        output.status,
                        output.stderr_text().trim()
                    )),
                    Err(error) => Err(error.to_string()),
                }
            }
            Readiness::All(checks) => checks.iter().try_for_each(Readiness::probe),
        }
    }
}

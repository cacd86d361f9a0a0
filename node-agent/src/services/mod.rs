//! The service supervisor: long-running programs of a node (containerd,
//! etcd, the control plane) started in dependency order, probed for
//! readiness, restarted with backoff and stopped in reverse order.
//!
//! Each service gets one thread that owns its life cycle:
//!
//! ```text
//! waiting ──deps ready──▶ starting ──probe ok──▶ running
//!    ▲                       │  (exit / ready timeout) │ exit
//!    └──── backoff ◀── restarting ◀─────────────────────┘
//!                 (policy says no) ──▶ stopped | failed
//! ```
//!
//! - A service starts only when every dependency is *ready*; when a
//!   dependency goes down, running dependents are left alone but a
//!   dependent that (re)starts waits for it again. A failed dependency
//!   therefore keeps its dependents waiting.
//! - Restarts back off exponentially ([`Backoff`]: 1 s doubling to 30 s),
//!   and the delay starts over once a run stayed up for `reset_after`.
//! - Exit statuses come from [`crate::process`]'s reaper; the supervisor
//!   never calls `waitpid` itself.
//! - A child gets a clean environment (`PATH` plus the spec's `env`), `/`
//!   as working directory, `/dev/null` as stdin, its own process group, and
//!   one pipe for stdout and stderr that a thread copies into
//!   `<log_dir>/<name>.log` with boot-time stamps ([`log`]). Supervisor
//!   events go to the same log, to `tracing`, and to an optional hook.
//! - [`Supervisor::stop_all`] stops services in reverse dependency order:
//!   SIGTERM to the service's process, SIGKILL to its whole process group
//!   after `stop_timeout`.

pub mod containerd;
pub mod graph;
pub mod log;
pub mod readiness;
mod runner;
pub mod supervisor;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

pub use log::ServiceLog;
pub use readiness::Readiness;
pub use supervisor::Supervisor;

/// `PATH` every service gets unless its spec sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    Never,
}

/// Delay before restart `n`: `initial * 2^n`, capped at `max`; back to
/// `initial` after a run that lasted at least `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// What to run and how to supervise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub depends_on: Vec<String>,
    pub readiness: Readiness,
    /// How long a started service may take to become ready before it is
    /// stopped and counted as failed.
    pub ready_timeout: Duration,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_timeout: Duration,
}

impl ServiceSpec {
    /// A service with no arguments or dependencies, ready at once, always
    /// restarted, 60 s to become ready, 10 s to stop.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            depends_on: Vec::new(),
            readiness: Readiness::Immediate,
            ready_timeout: Duration::from_secs(60),
            restart: RestartPolicy::Always,
            backoff: Backoff::default(),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a service is in its life cycle: the node API's type, so the
/// status PID 1 keeps is the status clients read.
pub use cairn_node_api::ServiceState;

/// Failed or stopped: the service will not run again by itself.
pub(crate) fn is_final(state: ServiceState) -> bool {
    matches!(state, ServiceState::Failed | ServiceState::Stopped)
}

/// A service as [`Supervisor::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub state: ServiceState,
    pub pid: Option<u32>,
    /// Restarts so far (the first start is not counted).
    pub restarts: u32,
    /// How the last run ended: `exit status 1`, `killed by SIGKILL`, or why
    /// it could not be started.
    pub last_exit: Option<String>,
    pub ready: bool,
}

impl ServiceStatus {
    pub(crate) fn new() -> ServiceStatus {
        ServiceStatus {
            state: ServiceState::Waiting,
            pid: None,
            restarts: 0,
            last_exit: None,
            ready: false,
        }
    }
}

/// Something the supervisor did, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorEvent {
    pub service: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Started { pid: u32 },
    StartFailed { error: String },
    Ready,
    NotReady { after: Duration, reason: String },
    Exited { status: String },
    Restarting { delay: Duration },
    Stopping { signal: Signal },
    Stopped,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::Started { pid } => write!(f, "started, pid {pid}"),
            EventKind::StartFailed { error } => write!(f, "could not be started: {error}"),
            EventKind::Ready => write!(f, "ready"),
            EventKind::NotReady { after, reason } => {
                write!(f, "not ready after {after:?} ({reason}); stopping it")
            }
            EventKind::Exited { status } => write!(f, "exited: {status}"),
            EventKind::Restarting { delay } => write!(f, "restarting in {delay:?}"),
            EventKind::Stopping { signal } => write!(f, "stopping ({})", signal.as_str()),
            EventKind::Stopped => write!(f, "stopped"),
        }
    }
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.service, self.kind)
    }
}

/// Receives every [`SupervisorEvent`]. Runs on supervisor threads with
/// the supervisor's table locked: it must return quickly and must not call
/// back into the [`Supervisor`].
pub type EventHook = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service {0} is already defined")]
    Duplicate(String),
    #[error("service {0} is not defined")]
    UnknownService(String),
    #[error("service {service} depends on unknown service {dependency}")]
    UnknownDependency { service: String, dependency: String },
    #[error("dependency cycle between {}", services.join(", "))]
    Cycle { services: Vec<String> },
    #[error(
        "service {service} will not become ready: it is {state}{}",
        last_exit_text(last_exit)
    )]
    NotReady {
        service: String,
        state: ServiceState,
        last_exit: Option<String>,
    },
    #[error(
        "service {service} not ready within {timeout:?}: it is {state}{}",
        last_exit_text(last_exit)
    )]
    ReadyTimeout {
        service: String,
        timeout: Duration,
        state: ServiceState,
        last_exit: Option<String>,
    },
    #[error("services still running after stop: {}", services.join(", "))]
    StopTimeout { services: Vec<String> },
    #[error("reading the log of {service}: {source}")]
    Log {
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the thread of service {service}: {source}")]
    Thread {
        service: String,
        #[source]
        source: std::io::Error,
    },
}

fn last_exit_text(last_exit: &Option<String>) -> String {
    match last_exit {
        Some(exit) => format!(" (last exit: {exit})"),
        None => String::new(),
    }
}

impl ServiceStatus {
    /// The node API's view of this status.
    pub fn to_api(&self) -> cairn_node_api::ServiceStatus {
        cairn_node_api::ServiceStatus {
            state: self.state,
            pid: self.pid,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            ready: self.ready,
        }
    }
}

//! [`Supervisor`]: the table of services shared by the API, each
//! service's thread ([`super::runner`]) and `stop_all`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    EventHook, EventKind, ServiceError, ServiceLog, ServiceSpec, ServiceState, ServiceStatus,
    SupervisorEvent, graph, log, runner,
};
use crate::process::Process;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) spec: Arc<ServiceSpec>,
    pub(super) status: ServiceStatus,
    pub(super) process: Option<Process>,
    /// Set by `stop_all`: do not start or restart again.
    pub(super) stopping: bool,
    pub(super) log: Arc<ServiceLog>,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) services: BTreeMap<String, Entry>,
    pub(super) started: bool,
}

impl Table {
    pub(super) fn deps_ready(&self, spec: &ServiceSpec) -> bool {
        spec.depends_on.iter().all(|dep| {
            self.services
                .get(dep)
                .is_some_and(|entry| entry.status.ready)
        })
    }

    fn graph(&self) -> BTreeMap<String, Vec<String>> {
        self.services
            .iter()
            .map(|(name, entry)| (name.clone(), entry.spec.depends_on.clone()))
            .collect()
    }
}

pub(super) struct Shared {
    log_dir: PathBuf,
    log_limit: u64,
    pub(super) table: Mutex<Table>,
    pub(super) changed: Condvar,
    hook: Mutex<Option<EventHook>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("log_dir", &self.log_dir)
            .field("log_limit", &self.log_limit)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the event to the service's log, `tracing` and the hook.
    /// Called with the table locked, so events are in the same order as
    /// the state changes that `status` shows.
    pub(super) fn emit(&self, log: &ServiceLog, event: SupervisorEvent) {
        log.line(&format!("[supervisor] {}", event.kind));
        match &event.kind {
            EventKind::StartFailed { .. } | EventKind::NotReady { .. } => {
                tracing::warn!(service = %event.service, "{}", event.kind);
            }
            _ => tracing::info!(service = %event.service, "{}", event.kind),
        }
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            hook(&event);
        }
    }
}

/// Runs and watches a node's services. Cheap to clone; clones share the
/// same services.
#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Service logs go to `<log_dir>/<name>.log` (`/var/log/cairn` on a
    /// node).
    pub fn new(log_dir: impl Into<PathBuf>) -> Supervisor {
        Supervisor::with_log_limit(log_dir, log::DEFAULT_LOG_LIMIT)
    }

    /// As [`Supervisor::new`], rotating logs at `limit` bytes.
    pub fn with_log_limit(log_dir: impl Into<PathBuf>, limit: u64) -> Supervisor {
        Supervisor {
            shared: Arc::new(Shared {
                log_dir: log_dir.into(),
                log_limit: limit,
                table: Mutex::new(Table::default()),
                changed: Condvar::new(),
                hook: Mutex::new(None),
            }),
        }
    }

    /// Calls `hook` for every event from now on (replacing an earlier one).
    pub fn on_event(&self, hook: impl Fn(&SupervisorEvent) + Send + Sync + 'static) {
        *self.shared.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    pub fn log_dir(&self) -> &Path {
        &self.shared.log_dir
    }

    /// Adds a service. Refused: a name already used, a dependency on
    /// itself or one that closes a cycle; once the supervisor is started, a
    /// dependency on a service not defined. Added after [`start`], the
    /// service starts as soon as its dependencies are ready.
    ///
    /// [`start`]: Supervisor::start
    pub fn add(&self, spec: ServiceSpec) -> Result<(), ServiceError> {
        let mut table = self.shared.lock();
        if table.services.contains_key(&spec.name) {
            return Err(ServiceError::Duplicate(spec.name));
        }
        let mut graph = table.graph();
        graph.insert(spec.name.clone(), spec.depends_on.clone());
        graph::start_order(&graph, !table.started)?;
        let name = spec.name.clone();
        let log = Arc::new(ServiceLog::new(
            &self.shared.log_dir,
            &name,
            self.shared.log_limit,
        ));
        table.services.insert(
            name.clone(),
            Entry {
                spec: Arc::new(spec),
                status: ServiceStatus::new(),
                process: None,
                stopping: false,
                log,
            },
        );
        if table.started {
            drop(table);
            if let Err(error) = runner::launch(&self.shared, &name) {
                self.shared.lock().services.remove(&name);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Checks the dependency graph and starts supervising every service;
    /// each starts once its dependencies are ready. Calling it again does
    /// nothing.
    pub fn start(&self) -> Result<(), ServiceError> {
        let mut table = self.shared.lock();
        if table.started {
            return Ok(());
        }
        let order = graph::start_order(&table.graph(), false)?;
        table.started = true;
        drop(table);
        for name in order {
            runner::launch(&self.shared, &name)?;
        }
        Ok(())
    }

    /// Every service's status, by name.
    pub fn status(&self) -> BTreeMap<String, ServiceStatus> {
        self.shared
            .lock()
            .services
            .iter()
            .map(|(name, entry)| (name.clone(), entry.status.clone()))
            .collect()
    }

    /// Waits until `name` is ready; fails at once when it failed or was
    /// stopped, or after `timeout`.
    pub fn wait_ready(&self, name: &str, timeout: Duration) -> Result<(), ServiceError> {
        let deadline = Instant::now() + timeout;
        let mut table = self.shared.lock();
        loop {
            let entry = table
                .services
                .get(name)
                .ok_or_else(|| ServiceError::UnknownService(name.to_owned()))?;
            let status = &entry.status;
            if status.ready {
                return Ok(());
            }
            if super::is_final(status.state) || entry.stopping {
                return Err(ServiceError::NotReady {
                    service: name.to_owned(),
                    state: status.state,
                    last_exit: status.last_exit.clone(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ServiceError::ReadyTimeout {
                    service: name.to_owned(),
                    timeout,
                    state: status.state,
                    last_exit: status.last_exit.clone(),
                });
            }
            table = self
                .shared
                .changed
                .wait_timeout(table, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The last `lines` lines of a service's log.
    pub fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, ServiceError> {
        let log = self
            .shared
            .lock()
            .services
            .get(name)
            .map(|entry| entry.log.clone())
            .ok_or_else(|| ServiceError::UnknownService(name.to_owned()))?;
        log.tail(lines).map_err(|source| ServiceError::Log {
            service: name.to_owned(),
            source,
        })
    }

    /// Restarts a running service: SIGTERM to its process, SIGKILL to its
    /// process group after the service's `stop_timeout`; the restart
    /// policy then starts it again (after its backoff). Returns at once;
    /// the termination runs on a thread of its own.
    pub fn restart(&self, name: &str) -> Result<(), ServiceError> {
        {
            let table = self.shared.lock();
            if !table.services.contains_key(name) {
                return Err(ServiceError::UnknownService(name.to_owned()));
            }
        }
        let shared = Arc::clone(&self.shared);
        let service = name.to_owned();
        std::thread::Builder::new()
            .name(format!("restart-{name}"))
            .spawn(move || runner::terminate_for_restart(&shared, &service))
            .map_err(|source| ServiceError::Thread {
                service: name.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Stops one service for good (it is not restarted); services that
    /// depend on it are left alone. SIGTERM, then SIGKILL after its
    /// `stop_timeout`, all within `timeout`.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<(), ServiceError> {
        let deadline = Instant::now() + timeout;
        {
            let mut table = self.shared.lock();
            let started = table.started;
            let entry = table
                .services
                .get_mut(name)
                .ok_or_else(|| ServiceError::UnknownService(name.to_owned()))?;
            entry.stopping = true;
            if !started {
                entry.status.state = ServiceState::Stopped;
            }
            self.shared.changed.notify_all();
        }
        if runner::stop(&self.shared, name, deadline) {
            Ok(())
        } else {
            Err(ServiceError::StopTimeout {
                services: vec![name.to_owned()],
            })
        }
    }

    /// Stops every service, dependents before their dependencies: SIGTERM,
    /// then SIGKILL to the process group after the service's
    /// `stop_timeout`; all within `timeout`. Services are not restarted
    /// afterwards.
    pub fn stop_all(&self, timeout: Duration) -> Result<(), ServiceError> {
        let deadline = Instant::now() + timeout;
        let order = {
            let mut table = self.shared.lock();
            let started = table.started;
            for entry in table.services.values_mut() {
                entry.stopping = true;
                if !started {
                    entry.status.state = ServiceState::Stopped;
                }
            }
            self.shared.changed.notify_all();
            graph::start_order(&table.graph(), true)
                .unwrap_or_else(|_| table.services.keys().cloned().collect())
        };
        let mut still_running = Vec::new();
        for name in order.iter().rev() {
            if !runner::stop(&self.shared, name, deadline) {
                still_running.push(name.clone());
            }
        }
        if still_running.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::StopTimeout {
                services: still_running,
            })
        }
    }
}

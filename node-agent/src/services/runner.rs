//! One service's life cycle: the thread that starts, probes, watches and
//! restarts it, and the stop sequence `stop_all` runs for it.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use super::readiness::PROBE_INTERVAL;
use super::supervisor::{Shared, Table};
use super::{
    DEFAULT_PATH, EventKind, RestartPolicy, ServiceError, ServiceLog, ServiceSpec, ServiceState,
    SupervisorEvent,
};
use crate::process::{self, ChildHandle, ExitStatus, Process};

/// How long the exit event waits for the output pump to drain, so a
/// service's last lines come before "exited" in its log.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the thread supervising `name`.
pub(super) fn launch(shared: &Arc<Shared>, name: &str) -> Result<(), ServiceError> {
    let thread_shared = shared.clone();
    let thread_name = name.to_owned();
    std::thread::Builder::new()
        .name(format!("svc-{name}"))
        .spawn(move || supervise(&thread_shared, &thread_name))
        .map(drop)
        .map_err(|source| ServiceError::Thread {
            service: name.to_owned(),
            source,
        })
}

/// Emits an event. Takes the table guard so that events are ordered with
/// the state changes others can observe.
fn event(shared: &Shared, _table: &Table, log: &ServiceLog, service: &str, kind: EventKind) {
    shared.emit(
        log,
        SupervisorEvent {
            service: service.to_owned(),
            kind,
        },
    );
}

/// How one run ended.
enum RunEnd {
    Exited(ExitStatus),
    NotStarted(String),
}

fn supervise(shared: &Shared, name: &str) {
    let (spec, log) = {
        let table = shared.lock();
        match table.services.get(name) {
            Some(entry) => (entry.spec.clone(), entry.log.clone()),
            None => return,
        }
    };
    let mut next_delay = spec.backoff.initial;
    loop {
        let started_at = Instant::now();
        let end = match start_when_ready(shared, &spec, &log) {
            Some(Ok((child, output))) => RunEnd::Exited(watch(shared, &spec, &log, child, output)),
            Some(Err(error)) => RunEnd::NotStarted(error),
            None => return,
        };
        let uptime = started_at.elapsed();
        let (summary, success) = match &end {
            RunEnd::Exited(status) => (status.to_string(), status.success()),
            RunEnd::NotStarted(error) => (error.clone(), false),
        };
        let restart = match spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        let delay = if uptime >= spec.backoff.reset_after {
            spec.backoff.initial
        } else {
            next_delay
        };
        let mut table = shared.lock();
        if let RunEnd::Exited(_) = end {
            let status = summary.clone();
            event(shared, &table, &log, name, EventKind::Exited { status });
        }
        let Some(entry) = table.services.get_mut(name) else {
            return;
        };
        entry.process = None;
        entry.status.pid = None;
        entry.status.ready = false;
        entry.status.last_exit = Some(summary);
        let stopping = entry.stopping;
        entry.status.state = if stopping {
            ServiceState::Stopped
        } else if restart {
            entry.status.restarts += 1;
            ServiceState::Restarting
        } else if success {
            ServiceState::Stopped
        } else {
            ServiceState::Failed
        };
        let state = entry.status.state;
        match state {
            ServiceState::Stopped => event(shared, &table, &log, name, EventKind::Stopped),
            ServiceState::Restarting => {
                event(shared, &table, &log, name, EventKind::Restarting { delay });
            }
            _ => {}
        }
        shared.changed.notify_all();
        drop(table);
        if state != ServiceState::Restarting || !sleep_unless_stopping(shared, &log, name, delay) {
            return;
        }
        next_delay = (delay * 2).min(spec.backoff.max);
    }
}

/// Waits for the dependencies, then starts the process. `None` when the
/// service is being stopped instead.
fn start_when_ready(
    shared: &Shared,
    spec: &ServiceSpec,
    log: &ServiceLog,
) -> Option<Result<(ChildHandle, OwnedFd), String>> {
    let mut table = shared.lock();
    loop {
        let entry = table.services.get_mut(&spec.name)?;
        if entry.stopping {
            entry.status.state = ServiceState::Stopped;
            event(shared, &table, log, &spec.name, EventKind::Stopped);
            shared.changed.notify_all();
            return None;
        }
        if entry.status.state != ServiceState::Waiting {
            entry.status.state = ServiceState::Waiting;
            shared.changed.notify_all();
        }
        if table.deps_ready(spec) {
            break;
        }
        table = shared
            .changed
            .wait(table)
            .unwrap_or_else(|e| e.into_inner());
    }
    // Spawned under the table lock, so `stop_all` either sees the process
    // or has already marked the service stopping.
    let started = spawn(spec);
    let entry = table.services.get_mut(&spec.name)?;
    entry.status.state = ServiceState::Starting;
    let kind = match &started {
        Ok((child, _)) => {
            entry.status.pid = Some(child.pid());
            entry.process = Some(child.process());
            EventKind::Started { pid: child.pid() }
        }
        Err(error) => EventKind::StartFailed {
            error: error.clone(),
        },
    };
    event(shared, &table, log, &spec.name, kind);
    shared.changed.notify_all();
    Some(started)
}

/// Starts the process with its output piped into the log.
fn spawn(spec: &ServiceSpec) -> Result<(ChildHandle, OwnedFd), String> {
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating the output pipe: {e}"))?;
    let error_writer = writer
        .try_clone()
        .map_err(|e| format!("creating the output pipe: {e}"))?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(&spec.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(error_writer))
        .process_group(0);
    let child = process::spawn(&mut command).map_err(|e| e.to_string())?;
    // Closes our copies of the pipe's write end: the pump sees end of file
    // once the service and everything that inherited its output are gone.
    drop(command);
    Ok((child, reader))
}

/// Probes readiness, then waits for the process to exit.
fn watch(
    shared: &Shared,
    spec: &ServiceSpec,
    log: &Arc<ServiceLog>,
    child: ChildHandle,
    output: OwnedFd,
) -> ExitStatus {
    let process = child.process();
    let drained = start_pump(log, output);
    let deadline = Instant::now() + spec.ready_timeout;
    loop {
        if process.try_status().is_some() || is_stopping(shared, &spec.name) {
            break;
        }
        match spec.readiness.probe() {
            Ok(()) => {
                let mut table = shared.lock();
                if let Some(entry) = table.services.get_mut(&spec.name)
                    && process.try_status().is_none()
                {
                    entry.status.ready = true;
                    entry.status.state = ServiceState::Running;
                    event(shared, &table, log, &spec.name, EventKind::Ready);
                    shared.changed.notify_all();
                }
                break;
            }
            Err(reason) if Instant::now() >= deadline => {
                let after = spec.ready_timeout;
                let table = shared.lock();
                event(
                    shared,
                    &table,
                    log,
                    &spec.name,
                    EventKind::NotReady { after, reason },
                );
                drop(table);
                terminate(shared, log, &spec.name, &process, spec.stop_timeout);
                break;
            }
            Err(_) => {
                // Wakes early when the process exits.
                let _ = process.wait_timeout(PROBE_INTERVAL);
            }
        }
    }
    let status = process.wait();
    if let Some(drained) = drained {
        let _ = drained.recv_timeout(DRAIN_TIMEOUT);
    }
    status
}

/// Starts the thread copying the run's output into the log; the receiver
/// reports when it reached end of file.
fn start_pump(log: &Arc<ServiceLog>, reader: OwnedFd) -> Option<mpsc::Receiver<()>> {
    let (done, drained) = mpsc::channel();
    let log = log.clone();
    std::thread::Builder::new()
        .name("svc-log".to_owned())
        .spawn(move || {
            log.pump(std::fs::File::from(reader));
            let _ = done.send(());
        })
        .ok()?;
    Some(drained)
}

fn is_stopping(shared: &Shared, name: &str) -> bool {
    shared
        .lock()
        .services
        .get(name)
        .is_none_or(|entry| entry.stopping)
}

/// Sleeps `delay`; false when the service is being stopped meanwhile.
fn sleep_unless_stopping(shared: &Shared, log: &ServiceLog, name: &str, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    let mut table = shared.lock();
    loop {
        let Some(entry) = table.services.get_mut(name) else {
            return false;
        };
        if entry.stopping {
            entry.status.state = ServiceState::Stopped;
            event(shared, &table, log, name, EventKind::Stopped);
            shared.changed.notify_all();
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        table = shared
            .changed
            .wait_timeout(table, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// SIGTERM, then SIGKILL to the process group after `grace`. Returns
/// whether the process exited.
fn terminate(
    shared: &Shared,
    log: &ServiceLog,
    name: &str,
    process: &Process,
    grace: Duration,
) -> bool {
    if process.try_status().is_some() {
        return true;
    }
    stopping_event(shared, log, name, Signal::SIGTERM);
    let _ = process.signal(Signal::SIGTERM);
    if process.wait_timeout(grace).is_some() {
        return true;
    }
    stopping_event(shared, log, name, Signal::SIGKILL);
    let _ = process.signal_group(Signal::SIGKILL);
    process.wait_timeout(Duration::from_secs(5)).is_some()
}

fn stopping_event(shared: &Shared, log: &ServiceLog, name: &str, signal: Signal) {
    let table = shared.lock();
    event(shared, &table, log, name, EventKind::Stopping { signal });
}

/// `Supervisor::restart`'s step: ends the current process (TERM, then KILL
/// after `stop_timeout`) without marking the service stopping, so its
/// restart policy starts it again.
pub(super) fn terminate_for_restart(shared: &Shared, name: &str) {
    if let Some((Some(process), log, stop_timeout)) = current_process(shared, name) {
        terminate(shared, &log, name, &process, stop_timeout);
    }
}

/// The service's running process (if any), its log and its stop timeout;
/// `None` for an unknown service.
fn current_process(
    shared: &Shared,
    name: &str,
) -> Option<(Option<Process>, Arc<ServiceLog>, Duration)> {
    let table = shared.lock();
    table.services.get(name).map(|entry| {
        (
            entry.process.clone(),
            entry.log.clone(),
            entry.spec.stop_timeout,
        )
    })
}

/// `stop_all`'s step for one service (already marked stopping): terminate
/// its process within `deadline` and wait until its thread has recorded
/// the end. Returns whether it is stopped.
pub(super) fn stop(shared: &Shared, name: &str, deadline: Instant) -> bool {
    let Some((process, log, stop_timeout)) = current_process(shared, name) else {
        return true;
    };
    if let Some(process) = process {
        let left = deadline.saturating_duration_since(Instant::now());
        terminate(shared, &log, name, &process, stop_timeout.min(left));
    }
    // The service's thread records the exit (or notices `stopping`).
    let mut table = shared.lock();
    loop {
        match table.services.get(name) {
            None => return true,
            Some(entry) if super::is_final(entry.status.state) => return true,
            Some(_) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        table = shared
            .changed
            .wait_timeout(table, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

//! Child processes: one reaper for the whole process.
//!
//! node-agent runs as PID 1, so every orphan on the node is re-parented to
//! it and must be reaped, while node-agent still needs the exit status of
//! each child it started itself. Both jobs are done by a single global
//! reaper thread; nothing else in node-agent may call `waitpid` or std's
//! `Child::wait`, or statuses would be stolen from each other. Every child
//! is therefore started through [`spawn`] (or [`run`] for short commands).
//!
//! The reaper loop:
//!
//! 1. `waitid(P_ALL, WEXITED | WNOWAIT)` blocks until some child has
//!    exited, *without* reaping it, and yields its pid;
//! 2. the registry lock is taken (spawns hold the same lock from `fork` to
//!    registration, so a child that exits at once is always registered
//!    before the reaper looks it up);
//! 3. the pid is reaped with `waitpid(pid, WNOHANG)`: a registered child's
//!    status goes to its [`Process`] handle, any other pid is an orphan and
//!    is only counted ([`orphans_reaped`]);
//! 4. on `ECHILD` (no children at all) the thread parks until the next
//!    spawn wakes it.
//!
//! Peeking before reaping also keeps std's own error path safe: when std's
//! `fork`/`exec` fallback fails to exec, it reaps the child itself while the
//! spawn still holds the lock, and the reaper then simply finds nothing.
//!
//! The same code works in an ordinary process (tests, development), where
//! `waitid(P_ALL)` only sees the process's own children; [`become_subreaper`]
//! makes orphans of descendants come to it as they would to PID 1.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("starting {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} did not finish within {timeout:?} and was killed")]
    Timeout { command: String, timeout: Duration },
    #[error("reading the output of {command}: {source}")]
    Output {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal {
        pid: u32,
        signal: Signal,
        #[source]
        source: Errno,
    },
    #[error("starting the reaper thread: {0}")]
    Reaper(#[source] std::io::Error),
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled { signal: Signal, core_dumped: bool },
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// The exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(code) => Some(*code),
            ExitStatus::Signaled { .. } => None,
        }
    }

    fn from_wait(status: WaitStatus) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, code) => Some(ExitStatus::Exited(code)),
            WaitStatus::Signaled(_, signal, core_dumped) => Some(ExitStatus::Signaled {
                signal,
                core_dumped,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    /// `exit status 1`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit status {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal.as_str())?;
                if *core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Where the reaper leaves one child's status.
#[derive(Debug, Default)]
struct Slot {
    status: Mutex<Option<ExitStatus>>,
    exited: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<ExitStatus>> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Reaper {
    /// pid → slot of every child started by [`spawn`] and not yet reaped.
    registry: Mutex<HashMap<i32, Arc<Slot>>>,
    thread: Thread,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();
static ORPHANS: AtomicU64 = AtomicU64::new(0);
static REAPER_START: Mutex<()> = Mutex::new(());

fn reaper() -> Result<&'static Reaper, ProcessError> {
    if let Some(reaper) = REAPER.get() {
        return Ok(reaper);
    }
    let _guard = REAPER_START.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(reaper) = REAPER.get() {
        return Ok(reaper);
    }
    let handle = thread::Builder::new()
        .name("reaper".to_owned())
        .spawn(reap_loop)
        .map_err(ProcessError::Reaper)?;
    let reaper = Reaper {
        registry: Mutex::new(HashMap::new()),
        thread: handle.thread().clone(),
    };
    // The thread waits for REAPER to be set before it touches the registry.
    let _ = REAPER.set(reaper);
    handle.thread().unpark();
    REAPER
        .get()
        .ok_or_else(|| ProcessError::Reaper(std::io::Error::other("reaper state was not stored")))
}

fn reap_loop() {
    let reaper = loop {
        match REAPER.get() {
            Some(reaper) => break reaper,
            None => thread::park(),
        }
    };
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                reap_one(reaper, pid);
            }
            Err(Errno::EINTR) => {}
            // No children at all: sleep until a spawn wakes us (the park
            // token makes a wake-up between ECHILD and park count).
            Err(Errno::ECHILD) => thread::park(),
            Err(error) => {
                tracing::error!("reaper: waitid failed: {error}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn reap_one(reaper: &Reaper, pid: Pid) {
    let mut registry = reaper.registry.lock().unwrap_or_else(|e| e.into_inner());
    match registry.get(&pid.as_raw()).cloned() {
        Some(slot) => {
            // Reap while holding the slot, so `signal` never targets a pid
            // that was reaped (and maybe reused) but not yet marked exited.
            let mut status = slot.lock();
            if let Ok(reaped) = waitpid(pid, Some(WaitPidFlag::WNOHANG))
                && let Some(exit) = ExitStatus::from_wait(reaped)
            {
                *status = Some(exit);
                registry.remove(&pid.as_raw());
                slot.exited.notify_all();
            }
        }
        None => {
            if let Ok(reaped) = waitpid(pid, Some(WaitPidFlag::WNOHANG))
                && ExitStatus::from_wait(reaped).is_some()
            {
                ORPHANS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the reaper now rather than at the first spawn, so orphans are
/// collected from the start (PID 1 calls this first thing). A failure is
/// logged; the next [`spawn`] tries again and reports it.
pub fn start_reaper() {
    if let Err(error) = reaper() {
        tracing::error!("{error}");
    }
}

/// How many processes the reaper collected that no [`spawn`] had started
/// (orphans re-parented to this process).
pub fn orphans_reaped() -> u64 {
    ORPHANS.load(Ordering::Relaxed)
}

/// Makes this process the reaper of its descendants' orphans, as PID 1 is
/// for the whole machine (`PR_SET_CHILD_SUBREAPER`). A no-op for PID 1.
pub fn become_subreaper() -> Result<(), std::io::Error> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    // Orphans may arrive before any spawn: make sure the reaper runs.
    reaper().map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}

/// `program arg1 arg2` for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// A started child's exit status, shareable between threads.
#[derive(Debug, Clone)]
pub struct Process {
    pid: u32,
    slot: Arc<Slot>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Blocks until the child has exited.
    pub fn wait(&self) -> ExitStatus {
        let mut status = self.slot.lock();
        loop {
            if let Some(exit) = *status {
                return exit;
            }
            status = self
                .slot
                .exited
                .wait(status)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The status if the child exits within `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut status = self.slot.lock();
        loop {
            if let Some(exit) = *status {
                return Some(exit);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            status = self
                .slot
                .exited
                .wait_timeout(status, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The status if the child has already exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.slot.lock()
    }

    /// Sends `signal` to the child. A child that has already exited is left
    /// alone (its pid may belong to someone else by now).
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        self.send(signal, false)
    }

    /// Sends `signal` to the child's process group; for children started
    /// with `Command::process_group(0)`, which lead their own group.
    pub fn signal_group(&self, signal: Signal) -> Result<(), ProcessError> {
        self.send(signal, true)
    }

    fn send(&self, signal: Signal, group: bool) -> Result<(), ProcessError> {
        let status = self.slot.lock();
        if status.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid as i32);
        let result = if group {
            signal::killpg(pid, signal)
        } else {
            signal::kill(pid, signal)
        };
        match result {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(ProcessError::Signal {
                pid: self.pid,
                signal,
                source,
            }),
        }
    }
}

/// A child started by [`spawn`], with the pipes it was given.
#[derive(Debug)]
pub struct ChildHandle {
    process: Process,
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
}

impl ChildHandle {
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// A handle on the exit status that can move to another thread.
    pub fn process(&self) -> Process {
        self.process.clone()
    }

    pub fn wait(&self) -> ExitStatus {
        self.process.wait()
    }

    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(timeout)
    }

    pub fn try_status(&self) -> Option<ExitStatus> {
        self.process.try_status()
    }

    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        self.process.signal(signal)
    }

    pub fn signal_group(&self, signal: Signal) -> Result<(), ProcessError> {
        self.process.signal_group(signal)
    }
}

/// Starts `command` and registers it with the reaper. The command's stdio,
/// environment, working directory and process group are used as
/// configured; its status is only ever available through the handle.
pub fn spawn(command: &mut Command) -> Result<ChildHandle, ProcessError> {
    let reaper = reaper()?;
    let mut registry = reaper.registry.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        command: describe(command),
        source,
    })?;
    let slot = Arc::new(Slot::default());
    registry.insert(child.id() as i32, slot.clone());
    drop(registry);
    reaper.thread.unpark();
    // Dropping std's Child neither waits nor kills: the reaper owns it.
    Ok(ChildHandle {
        process: Process {
            pid: child.id(),
            slot,
        },
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    })
}

/// What a finished short command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `program args..` with stdin from `/dev/null`, collects stdout and
/// stderr and waits up to `timeout`; on timeout the whole process group is
/// killed and [`ProcessError::Timeout`] names the command. A non-zero exit
/// is not an error here: callers look at [`Output::status`].
pub fn run<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
    timeout: Duration,
) -> Result<Output, ProcessError> {
    let mut command = Command::new(program);
    command.args(args);
    run_command(&mut command, timeout)
}

/// [`run`] for a prepared command (environment, working directory); its
/// stdio and process group are set here.
pub fn run_command(command: &mut Command, timeout: Duration) -> Result<Output, ProcessError> {
    let name = describe(command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn(command)?;
    let deadline = Instant::now() + timeout;
    let (sender, receiver) = std::sync::mpsc::channel();
    let readers = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ];
    for (index, reader) in readers.into_iter().enumerate() {
        let sender = sender.clone();
        let Some(mut reader) = reader else {
            let _ = sender.send((index, Ok(Vec::new())));
            continue;
        };
        thread::Builder::new()
            .name("run-output".to_owned())
            .spawn(move || {
                let mut data = Vec::new();
                let result = reader.read_to_end(&mut data).map(|_| data);
                let _ = sender.send((index, result));
            })
            .map_err(|source| ProcessError::Output {
                command: name.clone(),
                source,
            })?;
    }
    drop(sender);
    let Some(status) = child.wait_timeout(timeout) else {
        let _ = child.signal_group(Signal::SIGKILL);
        let _ = child.wait_timeout(Duration::from_secs(5));
        return Err(ProcessError::Timeout {
            command: name,
            timeout,
        });
    };
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        // Output pipes held open by a leftover grandchild must not hang us.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        match receiver.recv_timeout(left) {
            Ok((index, Ok(data))) => outputs[index] = data,
            Ok((_, Err(source))) => {
                return Err(ProcessError::Output {
                    command: name,
                    source,
                });
            }
            Err(_) => {
                return Err(ProcessError::Output {
                    command: name,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "output stayed open after the command exited",
                    ),
                });
            }
        }
    }
    let [stdout, stderr] = outputs;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_a_shell() {
        assert_eq!(ExitStatus::Exited(1).to_string(), "exit status 1");
        assert_eq!(
            ExitStatus::Signaled {
                signal: Signal::SIGKILL,
                core_dumped: false
            }
            .to_string(),
            "killed by SIGKILL"
        );
    }

    #[test]
    fn run_collects_output_and_status() {
        let output = run(
            "sh",
            ["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(output.status, ExitStatus::Exited(3));
        assert_eq!(output.stdout_text(), "out\n");
        assert_eq!(output.stderr_text(), "err\n");
    }

    #[test]
    fn missing_program_names_the_command() {
        let error =
            run("/nonexistent/prog", ["x"], Duration::from_secs(5)).expect_err("cannot start");
        assert!(error.to_string().contains("/nonexistent/prog x"), "{error}");
    }
}

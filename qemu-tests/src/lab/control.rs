//! Keeping a lab alive after `bootstrap qemu up` returns: the lab daemon
//! and its control socket.
//!
//! `bootstrap qemu up` starts `bootstrap qemu daemon` (a hidden
//! subcommand), which calls [`run_daemon`]: it leaves the caller's session
//! (`setsid`, so Ctrl-C in the terminal does not reach it), builds the lab
//! with [`Lab::up`], records its pid in state.json and serves
//! `<lab dir>/control.sock`. Its output goes to `<root>/<name>.daemon.log`
//! (outside the lab directory, so a failed start leaves its reason behind
//! until `down`).
//!
//! The protocol is one JSON [`Request`] line per connection, answered by
//! one JSON [`Response`] line. SIGTERM, SIGINT and SIGHUP make the daemon
//! tear the lab down and exit, like a `down` request. If the daemon died,
//! [`super::cleanup`] still removes everything (it needs no daemon).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};

use super::{Lab, LabError, LabSpec};

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Ping,
    /// Hard power-off of a node.
    Kill {
        node: String,
    },
    /// Boot a node that is not running.
    Start {
        node: String,
    },
    /// Serve another machine config (`None`: 404).
    SetConfig {
        node: String,
        config: Option<String>,
    },
    /// Tear the lab down and exit.
    Down,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Response {
    pub ok: bool,
    pub error: Option<String>,
}

/// `<dir>/control.sock`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Where the daemon of lab `name` logs: `<root>/<name>.daemon.log`.
pub fn daemon_log(root: &Path, name: &str) -> PathBuf {
    root.join(format!("{name}.daemon.log"))
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the
/// threads and processes it starts afterwards), and starts a thread that
/// waits for them and then runs `on_signal`. Call it before starting other
/// threads.
pub fn on_termination_signal(
    on_signal: impl FnOnce(Signal) + Send + 'static,
) -> Result<(), LabError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block()
        .map_err(|e| LabError::Control(format!("blocking signals: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(signal) = set.wait() {
                on_signal(signal);
            }
        })
        .map_err(|e| LabError::Control(format!("starting the signal thread: {e}")))?;
    Ok(())
}

/// The daemon: builds the lab from `spec` and serves the control socket
/// until `down` or a termination signal.
pub fn run_daemon(spec: LabSpec) -> Result<(), LabError> {
    // Ignore the error when already a session leader.
    let _ = nix::unistd::setsid();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        on_termination_signal(move |signal| {
            tracing::info!("{signal}: tearing the lab down");
            stop.store(true, Ordering::SeqCst);
        })?;
    }
    let mut lab = Lab::up(spec)?;
    lab.set_daemon_pid(Some(std::process::id()))?;
    serve(lab, &stop)
}

/// Serves `lab` on its control socket until a `down` request or `stop`.
pub fn serve(mut lab: Lab, stop: &AtomicBool) -> Result<(), LabError> {
    let path = socket_path(lab.dir());
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| LabError::io(&path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| LabError::io(&path, e))?;
    eprintln!(
        "lab {} is up; control socket {}",
        lab.name(),
        path.display()
    );
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if handle(&mut lab, stream) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(LabError::io(&path, e)),
        }
    }
    drop(listener);
    lab.down()?;
    eprintln!("lab torn down");
    Ok(())
}

/// Answers one connection; true when the lab is to go down.
fn handle(lab: &mut Lab, stream: UnixStream) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let Ok(reader) = stream.try_clone() else {
        return false;
    };
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return false;
    }
    let request: Result<Request, _> = serde_json::from_str(&line);
    let (result, down) = match request {
        Err(e) => (Err(format!("bad request: {e}")), false),
        Ok(Request::Ping) => (Ok(()), false),
        Ok(Request::Down) => (Ok(()), true),
        Ok(Request::Kill { node }) => (lab.kill(&node).map_err(|e| e.to_string()), false),
        Ok(Request::Start { node }) => (lab.start(&node).map_err(|e| e.to_string()), false),
        Ok(Request::SetConfig { node, config }) => (
            lab.set_config(&node, config).map_err(|e| e.to_string()),
            false,
        ),
    };
    let response = match result {
        Ok(()) => Response {
            ok: true,
            error: None,
        },
        Err(e) => Response {
            ok: false,
            error: Some(e),
        },
    };
    let mut stream = stream;
    let text = serde_json::to_string(&response).unwrap_or_default();
    let _ = writeln!(stream, "{text}");
    down
}

/// Sends `request` to the daemon of the lab in `dir`.
pub fn request(dir: &Path, request: &Request) -> Result<(), LabError> {
    let path = socket_path(dir);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stream =
        UnixStream::connect(&path).map_err(|_| LabError::NotRunning(name, path.clone()))?;
    // Starting a VM may probe KVM first: allow for it.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| LabError::io(&path, e))?;
    let text = serde_json::to_string(request).unwrap_or_default();
    writeln!(stream, "{text}").map_err(|e| LabError::io(&path, e))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| LabError::io(&path, e))?;
    let response: Response = serde_json::from_str(&line)
        .map_err(|e| LabError::Control(format!("bad answer {line:?}: {e}")))?;
    if response.ok {
        Ok(())
    } else {
        Err(LabError::Control(response.error.unwrap_or_default()))
    }
}

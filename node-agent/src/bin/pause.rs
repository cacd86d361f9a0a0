//! `pause`: the process of a pod's sandbox container.
//!
//! It holds the pod's namespaces open and does nothing else: waits for a
//! signal, reaps any zombie it inherits (it is PID 1 of the pod when the PID
//! namespace is shared), and exits cleanly on SIGINT or SIGTERM so pods stop
//! at once instead of after a kill timeout.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        signals.add(signal);
    }
    if let Err(error) = signals.thread_block() {
        eprintln!("pause: cannot block signals: {error}");
        std::process::exit(1);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => std::process::exit(0),
            Err(error) => {
                eprintln!("pause: sigwait failed: {error}");
                std::process::exit(1);
            }
        }
    }
}

fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

//! The supervisor and the reaper with real processes (`sh`, `sleep`,
//! `perl` for a unix socket). The test process makes itself a child
//! subreaper, so orphans come to its reaper as they would to PID 1.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_node_agent::process;
use cairn_node_agent::services::{
    Backoff, EventKind, Readiness, RestartPolicy, ServiceError, ServiceSpec, ServiceState,
    Supervisor, SupervisorEvent,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// A supervisor in a temp dir that records every event with its time and
/// stops everything when dropped (also when a test fails).
struct Harness {
    supervisor: Supervisor,
    events: Arc<Mutex<Vec<(Instant, SupervisorEvent)>>>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        process::become_subreaper().expect("subreaper");
        let dir = tempfile::tempdir().expect("tempdir");
        let supervisor = Supervisor::new(dir.path().join("log"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        supervisor.on_event(move |event| {
            sink.lock()
                .expect("events")
                .push((Instant::now(), event.clone()));
        });
        Harness {
            supervisor,
            events,
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn events(&self) -> Vec<(Instant, SupervisorEvent)> {
        self.events.lock().expect("events").clone()
    }

    fn event_names(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .map(|(_, e)| e.to_string())
            .collect()
    }

    /// Everything a failure message needs.
    fn report(&self) -> String {
        let mut text = format!("status: {:#?}\nevents:\n", self.supervisor.status());
        for event in self.event_names() {
            text.push_str(&format!("  {event}\n"));
        }
        for name in self.supervisor.status().keys() {
            let tail = self.supervisor.log_tail(name, 20).unwrap_or_default();
            text.push_str(&format!("--- {name}.log ---\n{}\n", tail.join("\n")));
        }
        text
    }

    /// Waits for `condition` with a deadline; panics with the report.
    fn wait_for(&self, what: &str, condition: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn state(&self, name: &str) -> ServiceState {
        self.supervisor.status()[name].state
    }

    fn log_contains(&self, name: &str, text: &str) -> bool {
        self.supervisor
            .log_tail(name, 1000)
            .unwrap_or_default()
            .iter()
            .any(|line| line.contains(text))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.supervisor.stop_all(Duration::from_secs(10));
    }
}

fn sh(name: &str, script: &str) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, "/bin/sh");
    spec.args = vec!["-c".to_owned(), script.to_owned()];
    spec
}

fn position(events: &[String], wanted: &str) -> usize {
    events
        .iter()
        .position(|e| e == wanted)
        .unwrap_or_else(|| panic!("no event {wanted:?} in {events:#?}"))
}

#[test]
fn dependents_start_only_after_their_dependency_is_ready() {
    let h = Harness::new();
    let flag = h.path("a.ready");
    let mut a = sh("a", &format!("sleep 0.3; touch {flag}; exec sleep 600"));
    a.readiness = Readiness::Command {
        program: "/usr/bin/test".into(),
        args: vec!["-e".to_owned(), flag.clone()],
    };
    let mut b = sh(
        "b",
        &format!("if test -e {flag}; then echo dependency-ready; fi; exec sleep 600"),
    );
    b.depends_on = vec!["a".to_owned()];
    // Added dependent first: order comes from the graph, not from add().
    h.supervisor.add(b).expect("add b");
    h.supervisor.add(a).expect("add a");
    h.supervisor.start().expect("start");
    assert_eq!(h.state("b"), ServiceState::Waiting, "{}", h.report());
    h.supervisor
        .wait_ready("b", DEADLINE)
        .unwrap_or_else(|e| panic!("{e}\n{}", h.report()));
    let events = h.event_names();
    assert!(
        position(&events, "a: ready")
            < events
                .iter()
                .position(|e| e.starts_with("b: started"))
                .expect("b started"),
        "{events:#?}"
    );
    h.wait_for("b's output", |h| h.log_contains("b", "dependency-ready"));
    let status = h.supervisor.status();
    assert_eq!(status["a"].state, ServiceState::Running);
    assert!(status["a"].ready && status["a"].pid.is_some());
}

#[test]
fn readiness_waits_for_a_unix_socket() {
    let h = Harness::new();
    let socket = h.path("svc.sock");
    let mut spec = ServiceSpec::new("listener", "/usr/bin/perl");
    spec.args = vec![
        "-e".to_owned(),
        "use Socket; $| = 1; select(undef, undef, undef, 0.5); \
         socket(S, PF_UNIX, SOCK_STREAM, 0) or die $!; \
         bind(S, sockaddr_un($ARGV[0])) or die $!; listen(S, 5) or die $!; \
         print \"listening\\n\"; while (accept(C, S)) { close C }"
            .to_owned(),
        socket.clone(),
    ];
    spec.readiness = Readiness::UnixSocket(socket.clone().into());
    h.supervisor.add(spec).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("the listener to start", |h| {
        h.supervisor.status()["listener"].pid.is_some()
    });
    let status = &h.supervisor.status()["listener"];
    if !Path::new(&socket).exists() {
        assert_eq!(status.state, ServiceState::Starting, "{}", h.report());
        assert!(!status.ready);
    }
    h.supervisor
        .wait_ready("listener", DEADLINE)
        .unwrap_or_else(|e| panic!("{e}\n{}", h.report()));
    assert!(Path::new(&socket).exists());
    h.wait_for("the listener's output", |h| {
        h.log_contains("listener", "listening")
    });
}

#[test]
fn crashing_service_restarts_with_growing_delays() {
    let h = Harness::new();
    let mut spec = sh("crash", "echo crashing; exit 1");
    spec.backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_millis(800),
        reset_after: Duration::from_secs(60),
    };
    h.supervisor.add(spec).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("four restarts", |h| {
        h.events()
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::Started { .. }))
            .count()
            >= 5
    });
    let status = h.supervisor.status()["crash"].clone();
    assert_eq!(status.last_exit.as_deref(), Some("exit status 1"));
    assert!(
        matches!(
            status.state,
            ServiceState::Restarting | ServiceState::Starting | ServiceState::Running
        ),
        "{status:?}"
    );
    let events = h.events();
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|(_, e)| match e.kind {
            EventKind::Restarting { delay } => Some(delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays[..4],
        [200, 400, 800, 800].map(Duration::from_millis),
        "{}",
        h.report()
    );
    // Each start comes at least the announced delay after the restart
    // was scheduled.
    let mut scheduled: Option<(Instant, Duration)> = None;
    let mut checked = 0;
    for (at, event) in &events {
        match event.kind {
            EventKind::Restarting { delay } => scheduled = Some((*at, delay)),
            EventKind::Started { .. } => {
                if let Some((when, delay)) = scheduled.take() {
                    assert!(at.duration_since(when) >= delay, "{}", h.report());
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    assert!(
        checked >= 4,
        "checked {checked} of {:#?}\n{}",
        events
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>(),
        h.report()
    );
}

#[test]
fn failed_dependency_keeps_dependents_waiting() {
    let h = Harness::new();
    let mut base = ServiceSpec::new("base", "/bin/false");
    base.restart = RestartPolicy::Never;
    // Never ready: `Immediate` would count it ready for a moment.
    base.readiness = Readiness::Command {
        program: "/usr/bin/test".into(),
        args: vec!["-e".to_owned(), h.path("never")],
    };
    let mut app = sh("app", "exec sleep 600");
    app.depends_on = vec!["base".to_owned()];
    h.supervisor.add(base).expect("add");
    h.supervisor.add(app).expect("add");
    h.supervisor.start().expect("start");
    let error = h
        .supervisor
        .wait_ready("base", DEADLINE)
        .expect_err("base fails");
    assert!(
        matches!(
            error,
            ServiceError::NotReady {
                state: ServiceState::Failed,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("exit status 1"), "{error}");
    let error = h
        .supervisor
        .wait_ready("app", Duration::from_millis(300))
        .expect_err("app waits");
    assert!(
        matches!(error, ServiceError::ReadyTimeout { .. }),
        "{error}"
    );
    let status = h.supervisor.status();
    assert_eq!(status["base"].state, ServiceState::Failed);
    assert_eq!(status["base"].restarts, 0);
    assert_eq!(status["app"].state, ServiceState::Waiting);
    assert_eq!(status["app"].pid, None);
}

#[test]
fn stop_all_goes_in_reverse_order_and_kills_what_ignores_sigterm() {
    let h = Harness::new();
    let db = sh("db", "echo db-up; exec sleep 600");
    let mut stubborn = sh(
        "stubborn",
        "trap '' TERM; echo ignoring-term; while :; do sleep 0.1; done",
    );
    stubborn.depends_on = vec!["db".to_owned()];
    stubborn.stop_timeout = Duration::from_millis(500);
    h.supervisor.add(db).expect("add");
    h.supervisor.add(stubborn).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("the trap", |h| h.log_contains("stubborn", "ignoring-term"));
    h.wait_for("db's output", |h| h.log_contains("db", "db-up"));
    let group = h.supervisor.status()["stubborn"].pid.expect("pid");

    let started = Instant::now();
    h.supervisor
        .stop_all(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", h.report()));
    assert!(started.elapsed() >= Duration::from_millis(500));
    let events = h.event_names();
    let term = position(&events, "stubborn: stopping (SIGTERM)");
    let kill = position(&events, "stubborn: stopping (SIGKILL)");
    let stopped = position(&events, "stubborn: stopped");
    let db_term = position(&events, "db: stopping (SIGTERM)");
    assert!(
        term < kill && kill < stopped && stopped < db_term,
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e == "db: stopping (SIGKILL)"),
        "{events:#?}"
    );
    let status = h.supervisor.status();
    assert_eq!(status["stubborn"].state, ServiceState::Stopped);
    assert_eq!(
        status["stubborn"].last_exit.as_deref(),
        Some("killed by SIGKILL")
    );
    assert_eq!(status["db"].state, ServiceState::Stopped);
    assert_eq!(status["db"].last_exit.as_deref(), Some("killed by SIGTERM"));
    // The whole process group went: no `sleep 0.1` survives.
    h.wait_for("the group to be gone", |_| {
        processes().iter().all(|(_, pgid, _)| *pgid != group)
    });
    // Stopped services stay stopped.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.state("db"), ServiceState::Stopped);
}

#[test]
fn logs_have_boot_timestamps_and_both_streams() {
    let h = Harness::new();
    let mut spec = sh("talker", "echo hello from talker; echo oops >&2; exit 0");
    spec.restart = RestartPolicy::OnFailure;
    h.supervisor.add(spec).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("talker to finish", |h| {
        h.state("talker") == ServiceState::Stopped
    });
    let lines = h.supervisor.log_tail("talker", 100).expect("log");
    let text: Vec<&str> = lines
        .iter()
        .map(|line| {
            assert!(is_stamped(line), "unstamped line {line:?}");
            &line[line.find("] ").expect("stamp") + 2..]
        })
        .collect();
    assert!(
        text[0].starts_with("[supervisor] started, pid "),
        "{lines:#?}"
    );
    assert!(text.contains(&"hello from talker"), "{lines:#?}");
    assert!(text.contains(&"oops"), "{lines:#?}");
    // Output is drained before the exit is recorded.
    assert_eq!(
        text[text.len() - 2..],
        ["[supervisor] exited: exit status 0", "[supervisor] stopped"],
        "{lines:#?}"
    );
    assert!(h.dir.path().join("log/talker.log").is_file());
    assert_eq!(h.supervisor.status()["talker"].restarts, 0);
}

/// `[   12.345] ...`
fn is_stamped(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once("] ") else {
        return false;
    };
    let Some((secs, millis)) = stamp.trim_start().split_once('.') else {
        return false;
    };
    !secs.is_empty()
        && secs.chars().all(|c| c.is_ascii_digit())
        && millis.len() == 3
        && millis.chars().all(|c| c.is_ascii_digit())
}

#[test]
fn graph_errors_are_reported_at_add_and_start() {
    let h = Harness::new();
    let mut a = sh("a", "exit 0");
    a.depends_on = vec!["b".to_owned()];
    h.supervisor
        .add(a)
        .expect("unknown dependency is fine before start");
    let mut b = sh("b", "exit 0");
    b.depends_on = vec!["a".to_owned()];
    let error = h.supervisor.add(b).expect_err("cycle");
    assert_eq!(error.to_string(), "dependency cycle between a, b");
    assert!(matches!(
        h.supervisor.add(sh("a", "exit 0")),
        Err(ServiceError::Duplicate(_))
    ));
    let error = h.supervisor.start().expect_err("b is unknown");
    assert_eq!(error.to_string(), "service a depends on unknown service b");
}

/// (pid, process group, state) of every process.
fn processes() -> Vec<(u32, u32, char)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) {
            found.push((
                pid,
                pgrp.parse().unwrap_or(0),
                state.chars().next().unwrap_or('?'),
            ));
        }
    }
    found
}

/// Zombie children of this process.
fn zombies() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for (pid, _, state) in processes() {
        if state != 'Z' {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1).map(str::to_owned));
        if ppid.as_deref() == Some(me.as_str()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn orphans_of_a_double_fork_are_reaped() {
    let h = Harness::new();
    let before = process::orphans_reaped();
    // The subshell outlives its parent and is re-parented to us.
    let output = process::run(
        "/bin/sh",
        ["-c", "( sleep 0.3 ) >/dev/null 2>&1 </dev/null & echo $!"],
        DEADLINE,
    )
    .expect("sh");
    assert!(output.status.success());
    let orphan: u32 = output.stdout_text().trim().parse().expect("pid");
    h.wait_for("the orphan to be reaped", |_| {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });
    assert!(process::orphans_reaped() > before);
    h.wait_for("no zombie children", |_| zombies().is_empty());
}

#[test]
fn run_kills_a_command_that_times_out() {
    let h = Harness::new();
    let pid_file = h.path("sleeper.pid");
    let started = Instant::now();
    let error = process::run(
        "/bin/sh",
        ["-c", &format!("sleep 30 & echo $! > {pid_file}; wait")],
        Duration::from_millis(500),
    )
    .expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = error.to_string();
    assert!(message.starts_with("/bin/sh -c sleep 30"), "{message}");
    assert!(message.contains("did not finish within 500ms"), "{message}");
    let sleeper = std::fs::read_to_string(&pid_file).expect("pid file");
    let sleeper = sleeper.trim();
    // The whole process group was killed, grandchild included.
    h.wait_for("the sleeper to be gone", |_| {
        !Path::new(&format!("/proc/{sleeper}")).exists()
    });
}

#[test]
fn spawn_reports_statuses_and_signals() {
    let _h = Harness::new();
    let mut command = std::process::Command::new("/bin/sleep");
    command.arg("600");
    let child = process::spawn(&mut command).expect("spawn");
    assert_eq!(child.try_status(), None);
    assert_eq!(child.wait_timeout(Duration::from_millis(50)), None);
    child
        .signal(nix::sys::signal::Signal::SIGTERM)
        .expect("signal");
    let status = child.wait_timeout(DEADLINE).expect("exits");
    assert_eq!(status.to_string(), "killed by SIGTERM");
    assert_eq!(child.try_status(), Some(status));
    // Signalling an exited child is a no-op, not a stray kill.
    child
        .signal(nix::sys::signal::Signal::SIGKILL)
        .expect("no-op");
    let quick = process::spawn(&mut std::process::Command::new("/bin/true")).expect("true");
    assert!(quick.wait().success());
    let mut statuses = BTreeMap::new();
    for code in 0..5 {
        let mut command = std::process::Command::new("/bin/sh");
        command.args(["-c", &format!("exit {code}")]);
        let child = process::spawn(&mut command).expect("spawn");
        statuses.insert(code, child);
    }
    for (code, child) in statuses {
        assert_eq!(child.wait().code(), Some(code));
    }
}

#[test]
fn backoff_starts_over_after_a_long_enough_run() {
    let h = Harness::new();
    let mut spec = sh("flaky", "sleep 0.3; exit 1");
    spec.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
        reset_after: Duration::from_millis(200),
    };
    h.supervisor.add(spec).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("three restarts", |h| {
        h.events()
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::Restarting { .. }))
            .count()
            >= 3
    });
    // Every run lasted longer than `reset_after`: no doubling.
    for (_, event) in h.events() {
        if let EventKind::Restarting { delay } = event.kind {
            assert_eq!(delay, Duration::from_millis(100), "{}", h.report());
        }
    }
}

#[test]
fn restart_ends_the_process_even_when_it_ignores_sigterm_and_starts_it_again() {
    let h = Harness::new();
    let mut spec = sh(
        "stubborn",
        "trap '' TERM; echo up; while true; do sleep 0.1; done",
    );
    spec.stop_timeout = Duration::from_millis(500);
    spec.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(100),
        reset_after: Duration::from_secs(60),
    };
    h.supervisor.add(spec).expect("add");
    h.supervisor.start().expect("start");
    h.wait_for("stubborn running", |h| {
        h.state("stubborn") == ServiceState::Running
    });
    let first_pid = h.supervisor.status()["stubborn"].pid;

    h.supervisor.restart("stubborn").expect("restart");
    h.wait_for("a second process", |h| {
        let status = h.supervisor.status()["stubborn"].clone();
        status.state == ServiceState::Running && status.pid.is_some() && status.pid != first_pid
    });
    assert_eq!(
        h.supervisor.status()["stubborn"].restarts,
        1,
        "{}",
        h.report()
    );
    assert!(matches!(
        h.supervisor.restart("missing"),
        Err(cairn_node_agent::services::ServiceError::UnknownService(_))
    ));
}

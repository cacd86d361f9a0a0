//! `bootstrap qemu ...`: thin wrappers over the QEMU lab library
//! (`cairn_qemu_tests`).
//!
//! `up` builds the image (the builder's caches make a warm build take
//! seconds), removes leftovers of a lab of the same name, starts
//! `bootstrap qemu daemon` detached (it owns the VMs, dnsmasq, the HTTP
//! server and the port forwards, and answers on the lab's control socket),
//! then waits through the forwarded node API until every node runs
//! containerd. Ctrl-C while `up` waits tears the lab down. `status`,
//! `console` and `api` read state.json and the console logs and talk to
//! the nodes through the forwards; `kill` and `start` ask the daemon;
//! `down` asks the daemon to stop and then removes whatever is left, so it
//! also cleans up after a crashed daemon.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_images::build::{self, BuildOptions, PackageSource};
use cairn_images::fetch::cache;
use cairn_node_api::{ResetRequest, RunContainerRequest};
use cairn_qemu_tests::lab::{
    self, AdminCredentials, BootMode, LabState, control, procs,
    ready::{self, Auth},
};
use cairn_qemu_tests::{Accel, Boot, LabError, LabSpec, Vm, VmConfig};

use crate::cli::{
    QemuApiArgs, QemuApiCall, QemuBootArgs, QemuBootMode, QemuCommand, QemuConsoleArgs,
    QemuDaemonArgs, QemuLabArgs, QemuNodeArgs, QemuStatusArgs, QemuUpArgs, StatusOutput,
};
use crate::error::BootstrapError;

pub fn run(command: QemuCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        QemuCommand::Boot(args) => boot(args, out),
        QemuCommand::Up(args) => up(args, out),
        QemuCommand::Status(args) => status(&args, out),
        QemuCommand::Console(args) => console(&args, out),
        QemuCommand::Kill(args) => kill_or_start(&args, true, out),
        QemuCommand::Start(args) => kill_or_start(&args, false, out),
        QemuCommand::Down(args) => down(&args, out),
        QemuCommand::Api(args) => api(args, out),
        QemuCommand::Kubeconfig(args) => kubeconfig(&args, out),
        QemuCommand::Daemon(args) => daemon(args),
    }
}

fn boot(args: QemuBootArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let image = &args.image;
    for file in ["vmlinuz", "initramfs.cpio.zst", "cmdline"] {
        if !image.join(file).is_file() {
            return Err(BootstrapError::Inspect(format!(
                "{} has no {file}; build it with `bootstrap image build --out {}`",
                image.display(),
                image.display()
            )));
        }
    }
    let temporary = tempfile::tempdir()?;
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let accel = Accel::detect(&image.join("vmlinuz"));
    let boot = if args.uefi {
        Boot::Uefi {
            disk: image.join("disk.qcow2"),
        }
    } else {
        let cmdline = std::fs::read_to_string(image.join("cmdline"))?;
        Boot::Kernel {
            kernel: image.join("vmlinuz"),
            initrd: image.join("initramfs.cpio.zst"),
            cmdline: cmdline.trim().to_owned(),
        }
    };
    writeln!(
        out,
        "[qemu] booting {} ({}, {accel:?}); serial log in {}",
        image.display(),
        if args.uefi {
            "UEFI disk"
        } else {
            "kernel + initramfs"
        },
        dir.display()
    )?;
    let mut config = VmConfig::new("node", boot, accel, dir);
    config.memory_mib = args.memory;
    let mut vm = Vm::start(config)?;
    match vm.follow_console(out, Duration::from_secs(args.timeout))? {
        Some(status) => writeln!(out, "\n[qemu] the VM stopped ({status})")?,
        None => writeln!(
            out,
            "\n[qemu] still running after {}s; stopping it",
            args.timeout
        )?,
    }
    Ok(())
}

fn boot_mode(mode: QemuBootMode) -> BootMode {
    match mode {
        QemuBootMode::Kernel => BootMode::Kernel,
        QemuBootMode::Uefi => BootMode::Uefi,
        QemuBootMode::Pxe => BootMode::Pxe,
    }
}

fn lab_dir(args: &QemuLabArgs) -> Result<PathBuf, BootstrapError> {
    lab::validate_name(&args.name)?;
    Ok(lab::lab_dir(&args.lab_root, &args.name))
}

/// The image directory for `up`: given, or `profile` built into the cache.
fn lab_image(args: &QemuUpArgs, out: &mut dyn Write) -> Result<PathBuf, BootstrapError> {
    if let Some(image) = &args.image {
        return Ok(image.clone());
    }
    let cache_root = args.cache.clone().unwrap_or_else(cache::default_root);
    let stem = args.profile.file_stem().map_or_else(
        || "profile".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let image = cache_root.join("lab-images").join(stem);
    writeln!(
        out,
        "[lab] building {} into {} (cached builds take seconds)",
        args.profile.display(),
        image.display()
    )?;
    out.flush()?;
    let started = Instant::now();
    build::build(&BuildOptions {
        profile: args.profile.clone(),
        out: image.clone(),
        cache: cache_root,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        source_date_epoch: BuildOptions::default_epoch(&args.profile),
        packages: PackageSource::Apt,
        binaries_dir: None,
        workspace: None,
        refresh: false,
        no_reuse: false,
    })?;
    writeln!(
        out,
        "[lab] image ready in {:.1}s",
        started.elapsed().as_secs_f64()
    )?;
    Ok(image)
}

/// Set when `up` was interrupted; the signal thread then owns the exit.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn up(args: QemuUpArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let dir = lab_dir(&args.lab)?;
    let (control_planes, workers) = match args.nodes {
        Some(nodes) => (1, nodes - 1),
        None => (args.control_planes, args.workers),
    };
    let nodes = control_planes + workers;
    let name = args.lab.name.clone();
    let root = args.lab.lab_root.clone();
    let image = lab_image(&args, out)?;
    let image = image.canonicalize().unwrap_or(image);
    let cleaned = lab::cleanup(&root, &name)?;
    if !cleaned.is_empty() {
        writeln!(
            out,
            "[lab] removed leftovers of an earlier lab {name}: {} process(es){}{}",
            cleaned.killed.len(),
            if cleaned.netns_removed {
                ", its namespace"
            } else {
                ""
            },
            if cleaned.dir_removed {
                ", its directory"
            } else {
                ""
            }
        )?;
    }
    std::fs::create_dir_all(&root).map_err(|source| BootstrapError::Read {
        path: root.clone(),
        source,
    })?;
    // Ctrl-C from here on tears the lab down.
    {
        let (root, name) = (root.clone(), name.clone());
        control::on_termination_signal(move |signal| {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\n[lab] {signal}: tearing lab {name} down");
            let dir = lab::lab_dir(&root, &name);
            let _ = control::request(&dir, &control::Request::Down);
            let _ = lab::cleanup(&root, &name);
            std::process::exit(130);
        })?;
    }
    let log_path = control::daemon_log(&root, &name);
    let log = std::fs::File::create(&log_path).map_err(|source| BootstrapError::Read {
        path: log_path.clone(),
        source,
    })?;
    let executable = std::env::current_exe()?;
    let mut daemon = Command::new(executable)
        .args(["qemu", "daemon", "--name", &name, "--state-dir"])
        .arg(&dir)
        .arg("--image")
        .arg(&image)
        .args(["--nodes", &nodes.to_string()])
        .args([
            "--control-planes",
            &if args.no_cluster { 0 } else { control_planes }.to_string(),
        ])
        .args(args.vip.then_some("--vip"))
        .args(["--memory", &args.memory.to_string()])
        .args(["--boot", &boot_mode(args.boot).to_string()])
        .args(args.diskless.then_some("--diskless"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    writeln!(
        out,
        "[lab] starting lab {name}: {} node(s), {} boot, {} MiB each; daemon pid {}, log {}",
        nodes,
        boot_mode(args.boot),
        args.memory,
        daemon.id(),
        log_path.display()
    )?;
    out.flush()?;
    // The daemon records its pid in state.json once everything runs.
    let deadline = Instant::now() + Duration::from_secs(180);
    let state = loop {
        if let Ok(state) = LabState::load(&dir)
            && state.daemon_pid.is_some()
            && control::socket_path(&dir).exists()
        {
            break state;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            // The signal thread tears down and exits the process.
            loop {
                std::thread::park();
            }
        }
        if let Some(status) = daemon.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = lab::cleanup(&root, &name);
            return Err(BootstrapError::Inspect(format!(
                "the lab daemon exited ({status}) before the lab was up:\n{}",
                log.trim()
            )));
        }
        if Instant::now() >= deadline {
            let _ = lab::cleanup(&root, &name);
            return Err(BootstrapError::Inspect(format!(
                "the lab daemon did not bring lab {name} up within 180s; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let admin = AdminCredentials::load(&dir)?;
    for node in &state.nodes {
        writeln!(
            out,
            "[lab] {} ({}) booting, console {}",
            node.name,
            node.ip,
            node.serial_log.display()
        )?;
    }
    let wait = Duration::from_secs(args.timeout);
    let keep_running = |e: &dyn std::fmt::Display| {
        BootstrapError::Inspect(format!(
            "{e}\n\nThe lab keeps running so you can look at it (`bootstrap qemu status --name {name}`, `bootstrap qemu console --name {name} NODE`); remove it with `bootstrap qemu down --name {name}`."
        ))
    };
    let (times, formed) = match &state.cluster {
        Some(cluster) => {
            writeln!(
                out,
                "[lab] forming the cluster: {} initialises it, the others join (up to {}s; TCG is slow)",
                state.nodes[0].name, args.timeout
            )?;
            out.flush()?;
            let formed = lab::cluster::form(
                &state,
                &admin,
                cluster,
                &mut |node, config| {
                    control::request(
                        &dir,
                        &control::Request::SetConfig {
                            node: node.to_owned(),
                            config: Some(config),
                        },
                    )
                },
                wait,
            )
            .map_err(|e| keep_running(&e))?;
            (formed.members.clone(), Some(formed))
        }
        None => {
            writeln!(
                out,
                "[lab] waiting until every node runs containerd (up to {}s; TCG is slow)",
                args.timeout
            )?;
            out.flush()?;
            let times =
                ready::wait_state_ready(&state, &admin, wait).map_err(|e| keep_running(&e))?;
            (times, None)
        }
    };
    writeln!(out, "\nlab {name} is up\n")?;
    writeln!(
        out,
        "{:<10} {:<12} {:>9}  {:<22} {:<22}",
        "NODE", "ADDRESS", "READY IN", "NODE API", "APISERVER"
    )?;
    for (node_name, took) in &times {
        let node = state.node(node_name)?;
        writeln!(
            out,
            "{:<10} {:<12} {:>8.1}s  {:<22} {:<22}",
            node.name,
            node.ip.to_string(),
            took.as_secs_f64(),
            node.api_addr().map(|a| a.to_string()).unwrap_or_default(),
            node.forwards
                .get(&lab::KUBE_PORT)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        )?;
    }
    writeln!(
        out,
        "\nadmin client certificate: {}\n                     key: {}\n                      CA: {} (in every node's [api] client-ca)",
        admin.paths.cert.display(),
        admin.paths.key.display(),
        admin.paths.ca_cert.display()
    )?;
    writeln!(
        out,
        "The node API pins the fingerprint each node prints on its console.\n\
         \n  bootstrap qemu status --name {name}\n  bootstrap qemu api --name {name} node-1 status\n  bootstrap qemu console --name {name} node-1\n  bootstrap qemu down --name {name}"
    )?;
    if let Some(formed) = formed {
        writeln!(
            out,
            "\nThe cluster is formed: the API listed every node {:.1} s after node-1 came up.\nadmin kubeconfig (also `bootstrap qemu kubeconfig --name {name}`):\n  kubectl --kubeconfig {} get nodes",
            formed.all_listed.as_secs_f64(),
            formed.kubeconfig.display()
        )?;
    }
    Ok(())
}

fn kubeconfig(args: &QemuLabArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let state = load_state(args)?;
    let path = lab::cluster::kubeconfig_path(&state.dir);
    if state.cluster.is_none() {
        return Err(BootstrapError::Inspect(format!(
            "lab {} forms no cluster (it was started with --no-cluster)",
            state.name
        )));
    }
    if !path.is_file() {
        return Err(BootstrapError::Inspect(format!(
            "lab {} has no admin kubeconfig yet ({} is written once the cluster is formed; `bootstrap qemu up` does that)",
            state.name,
            path.display()
        )));
    }
    writeln!(out, "{}", path.display())?;
    Ok(())
}

fn daemon(args: QemuDaemonArgs) -> Result<(), BootstrapError> {
    let root = args
        .state_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(lab::default_root);
    let nodes = usize::from(args.nodes);
    let control_planes = usize::from(args.control_planes);
    let mut spec = if control_planes == 0 {
        LabSpec::new(args.name, args.image, nodes)
    } else {
        LabSpec::with_cluster(
            args.name,
            args.image,
            control_planes,
            nodes.saturating_sub(control_planes),
            args.vip,
        )
    };
    spec.root = root;
    spec.boot = boot_mode(args.boot);
    spec.memory_mib = args.memory;
    for node in &mut spec.nodes {
        node.disk = !args.diskless;
    }
    // `up` removed the leftovers already (and this daemon's log lives next
    // to the lab directory, where cleaning would remove it).
    spec.clean_leftovers = false;
    control::run_daemon(spec)?;
    Ok(())
}

fn load_state(args: &QemuLabArgs) -> Result<LabState, BootstrapError> {
    let dir = lab_dir(args)?;
    if !LabState::path(&dir).is_file() {
        return Err(LabError::NotRunning(args.name.clone(), LabState::path(&dir)).into());
    }
    Ok(LabState::load(&dir)?)
}

fn state_name(state: cairn_node_api::NodeState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn status(args: &QemuStatusArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let state = load_state(&args.lab)?;
    let admin = AdminCredentials::load(&state.dir)?;
    let daemon = state.daemon_pid.is_some_and(procs::alive);
    let mut nodes = Vec::new();
    let mut vip_holders = Vec::new();
    for node in &state.nodes {
        let running = state.is_running(&node.name);
        let (node_state, services, error) = if running {
            match ready::status(node, &admin) {
                Ok(status) => (
                    {
                        if status.cluster.as_ref().is_some_and(|c| c.vip_holder) {
                            vip_holders.push(node.name.clone());
                        }
                        state_name(status.state)
                    },
                    status
                        .services
                        .iter()
                        .map(|(name, s)| {
                            (
                                name.clone(),
                                serde_json::to_value(s.state).unwrap_or_default(),
                            )
                        })
                        .collect::<serde_json::Map<_, _>>(),
                    None,
                ),
                Err(e) => ("unreachable".to_owned(), Default::default(), Some(e)),
            }
        } else {
            ("stopped".to_owned(), Default::default(), None)
        };
        nodes.push(serde_json::json!({
            "name": node.name,
            "address": node.ip.to_string(),
            "role": node.role,
            "mac": node.mac,
            "vm": if running { "running" } else { "stopped" },
            "state": node_state,
            "services": services,
            "api": node.api_addr().map(|a| a.to_string()),
            "apiserver": node.forwards.get(&lab::KUBE_PORT).map(|a| a.to_string()),
            "console": node.serial_log,
            "error": error,
        }));
    }
    match args.output {
        StatusOutput::Json => {
            let value = serde_json::json!({
                "name": state.name,
                "dir": state.dir,
                "boot": state.boot.to_string(),
                "daemon": daemon,
                "admin": state.admin,
                "kubeconfig": state.cluster.as_ref().map(|_| lab::cluster::kubeconfig_path(&state.dir)),
                // Several holders would be a split brain: show them all.
                "vip_holder": match vip_holders.len() {
                    0 => serde_json::Value::Null,
                    1 => serde_json::Value::String(vip_holders[0].clone()),
                    _ => serde_json::json!(vip_holders),
                },
                "nodes": nodes,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            )?;
        }
        StatusOutput::Table => {
            writeln!(
                out,
                "lab {} ({} boot){}",
                state.name,
                state.boot,
                if daemon {
                    ""
                } else {
                    "; its daemon is gone: `bootstrap qemu down` cleans up"
                }
            )?;
            writeln!(
                out,
                "{:<10} {:<12} {:<8} {:<13} {:<22} SERVICES",
                "NODE", "ADDRESS", "VM", "STATE", "NODE API"
            )?;
            for node in &nodes {
                let text = |key: &str| node[key].as_str().unwrap_or("").to_owned();
                let services = node["services"]
                    .as_object()
                    .map(|s| {
                        s.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<10} {:<12} {:<8} {:<13} {:<22} {services}",
                    text("name"),
                    text("address"),
                    text("vm"),
                    text("state"),
                    text("api"),
                )?;
                if let Some(error) = node["error"].as_str() {
                    writeln!(out, "           {error}")?;
                }
            }
        }
    }
    Ok(())
}

fn console(args: &QemuConsoleArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let state = load_state(&args.node.lab)?;
    let node = state.node(&args.node.node)?;
    let mut shown = 0usize;
    loop {
        let text = std::fs::read(&node.serial_log).unwrap_or_default();
        if text.len() > shown {
            out.write_all(&text[shown..])?;
            out.flush()?;
            shown = text.len();
        }
        if !args.follow || !state.dir.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill_or_start(
    args: &QemuNodeArgs,
    kill: bool,
    out: &mut dyn Write,
) -> Result<(), BootstrapError> {
    let state = load_state(&args.lab)?;
    state.node(&args.node)?;
    let request = if kill {
        control::Request::Kill {
            node: args.node.clone(),
        }
    } else {
        control::Request::Start {
            node: args.node.clone(),
        }
    };
    control::request(&state.dir, &request)?;
    writeln!(
        out,
        "{} {}",
        args.node,
        if kill { "powered off" } else { "booting" }
    )?;
    Ok(())
}

fn down(args: &QemuLabArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let dir = lab_dir(args)?;
    let daemon_pid = LabState::load(&dir).ok().and_then(|s| s.daemon_pid);
    if control::request(&dir, &control::Request::Down).is_ok()
        && let Some(pid) = daemon_pid
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while procs::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let cleaned = lab::cleanup(&args.lab_root, &args.name)?;
    if cleaned.is_empty() && daemon_pid.is_none() {
        writeln!(out, "no lab {} (nothing to remove)", args.name)?;
    } else {
        writeln!(
            out,
            "lab {} removed (namespace {}, {})",
            args.name,
            lab::netns_name(&args.name),
            dir.display()
        )?;
    }
    Ok(())
}

fn api(args: QemuApiArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let state = load_state(&args.node.lab)?;
    let admin = AdminCredentials::load(&state.dir)?;
    let node = state.node(&args.node.node)?;
    let client = |auth| ready::client(node, &admin, auth).map_err(LabError::NotReady);
    match args.call {
        QemuApiCall::Status => {
            let status = ready::status(node, &admin).map_err(LabError::NotReady)?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            )?;
        }
        QemuApiCall::Logs { service, lines } => {
            write!(out, "{}", client(Auth::Admin)?.logs(&service, lines)?)?;
        }
        QemuApiCall::Read { path } => out.write_all(&client(Auth::Admin)?.read(&path)?)?,
        QemuApiCall::Run {
            image,
            args,
            timeout,
        } => {
            let answer = client(Auth::Admin)?.run_container(&RunContainerRequest {
                image,
                args,
                timeout_seconds: timeout,
            })?;
            write!(out, "{}", answer.stdout)?;
            eprint!("{}", answer.stderr);
            if answer.exit_code != 0 {
                return Err(BootstrapError::Inspect(format!(
                    "the container exited with {}",
                    answer.exit_code
                )));
            }
        }
        QemuApiCall::Apply { file } => {
            let text = std::fs::read_to_string(&file).map_err(|source| BootstrapError::Read {
                path: file.clone(),
                source,
            })?;
            let auth = if node.maintenance_key().is_some()
                && client(Auth::Admin).map_or(true, |c| c.status().is_err())
            {
                Auth::MaintenanceKey
            } else {
                Auth::Admin
            };
            client(auth)?.apply_config(&text)?;
            writeln!(out, "{}: machine config applied", node.name)?;
        }
        QemuApiCall::Reboot => {
            client(Auth::Admin)?.reboot()?;
            writeln!(out, "{}: rebooting", node.name)?;
        }
        QemuApiCall::Shutdown => {
            client(Auth::Admin)?.shutdown()?;
            writeln!(out, "{}: powering off", node.name)?;
        }
        QemuApiCall::Reset { no_graceful } => {
            let answer = client(Auth::Admin)?
                .with_io_timeout(Duration::from_secs(120))
                .reset(&ResetRequest {
                    graceful: !no_graceful,
                    reboot: true,
                })?;
            super::reset::print_steps(out, &node.name, &answer)?;
        }
    }
    Ok(())
}

//! The system stage: node-agent as PID 1 on the real root.
//!
//! One pass from power-on to a node running containerd, in this order:
//!
//! 1. **PID 1 duties** first: the process reaper ([`crate::process`]), the
//!    signal thread (SIGTERM: power off, SIGINT — Ctrl-Alt-Del — and
//!    SIGUSR1: reboot), the timestamped [`console`].
//! 2. **STATE** on `/var` ([`crate::state`]), the console log in
//!    `/var/log/cairn/node-agent.log`, the machine-id.
//! 3. **Image host settings**: loopback, modules and sysctls from the
//!    image plus kubeadm's prerequisites ([`host`]).
//! 4. **The node API** on :50000 ([`agent`]); its certificate fingerprint
//!    goes to the console so clients can pin it.
//! 5. **The machine config** from the first source that has one
//!    ([`sources`]), validated completely. None, or an invalid one:
//!    **maintenance mode** — the problems and a one-time key are shown on
//!    the console and the node waits for `POST /v1/config`. Nothing is
//!    applied from a config that failed validation.
//! 6. **Config host settings**: network, hostname, DNS, the config's
//!    modules and sysctls; the config is kept on STATE.
//! 7. **Services**: containerd with a generated `config.toml`, then the
//!    image's bundled OCI archives imported into `k8s.io`.
//!
//! Then PID 1 waits for a reboot or shutdown (API or signal) and stops
//! services in reverse order, syncs and unmounts before the kernel call.

pub mod agent;
pub mod cmdline;
pub mod coldplug;
pub mod console;
pub mod fetch;
pub mod host;
pub mod mounts;
pub mod sources;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use cairn_config::{Addressing as ConfigAddressing, MachineConfig};
use cairn_node_api::{MaintenanceKey, ServerIdentity};

use crate::net;
use crate::services::containerd::{self, ContainerdSettings};
use crate::services::supervisor::Supervisor;
use agent::Agent;
use cmdline::{KernelCmdline, UrlVariables};
use console::{Console, since_boot};
use sources::{Found, Source};

/// Where node-agent keeps what it must remember, on STATE when there is one.
pub const LIB_DIR: &str = "/var/lib/cairn";
/// Per-service logs and the console log.
pub const LOG_DIR: &str = "/var/log/cairn";
/// The node API port (Talos's apid port).
pub const API_PORT: u16 = 50000;
/// Where the image keeps OCI archives to import at boot.
pub const BUNDLED_IMAGES: &str = "/usr/lib/cairn/images";

/// How long a node waits for its `cairn.config=` URL before giving up and
/// entering maintenance mode.
const CONFIG_URL_DEADLINE: Duration = Duration::from_secs(300);
/// How long network setup may take (carrier, DHCP).
const NETWORK_DEADLINE: Duration = Duration::from_secs(120);
/// How long containerd may take to accept connections.
const CONTAINERD_DEADLINE: Duration = Duration::from_secs(180);

/// What PID 1 reacts to, from the API, signals or its own threads.
#[derive(Debug)]
pub enum Event {
    /// A validated config arrived through the API in maintenance mode.
    ApplyConfig(Box<MachineConfig>, String),
    Reboot(String),
    PowerOff(String),
    /// Wipe STATE, then reboot or power off.
    Reset {
        reboot: bool,
        why: String,
    },
}

/// Writes `bytes` to `path` through a temp file in the same directory,
/// fsynced and renamed, so readers see the old or the new file, never a
/// part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// PID 1 on the real root. Never returns.
pub fn run(out: Box<dyn Write + Send>) -> ! {
    let console = Arc::new(Console::new(out));
    console.raw(&crate::banner());
    let pid1_ms = millis(since_boot());
    let (events, inbox) = channel();
    start_signal_thread(events.clone(), &console);
    crate::process::start_reaper();

    let os = crate::os_release_name().unwrap_or_else(|| "an unknown system".to_owned());
    let root = crate::root_filesystem().unwrap_or_else(|| "unknown".to_owned());
    console.line(&format!("PID 1 on {os}, root filesystem {root}"));
    for failure in mounts::mount_kernel_filesystems() {
        console.line(&format!("kernel filesystem not mounted: {failure}"));
    }
    console.line(&mount_state());
    for dir in [LIB_DIR, LOG_DIR] {
        if let Err(error) = std::fs::create_dir_all(dir) {
            console.line(&format!("cannot create {dir}: {error}"));
        }
    }
    if let Err(error) = console.attach_log(&Path::new(LOG_DIR).join("node-agent.log")) {
        console.line(&format!("console log not kept: {error}"));
    }
    match host::machine_id(
        &Path::new(LIB_DIR).join("machine-id"),
        Path::new("/etc/machine-id"),
    ) {
        Ok((id, true)) => console.line(&format!("machine-id {id} (new)")),
        Ok((id, false)) => console.line(&format!("machine-id {id}")),
        Err(error) => console.line(&format!("machine-id not set: {error}")),
    }

    let supervisor = Arc::new(Supervisor::new(Path::new(LOG_DIR)));
    let agent = Arc::new(Agent::new(
        Arc::clone(&console),
        Arc::clone(&supervisor),
        events.clone(),
        pid1_ms,
    ));
    apply_image_host_settings(&console, &agent);

    let server = start_api(&console, &agent);
    let cmdline =
        KernelCmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let mut early_network = None;
    let found = find_config(&console, &agent, &cmdline, &mut early_network);
    let (config, source) = match found.map(|found| validate(&console, found)) {
        Some(Ok(ok)) => ok,
        Some(Err(problems)) => {
            agent.set_problems(problems);
            maintenance(&console, &agent, server.as_ref(), &inbox)
        }
        None => {
            console.line("no machine config in STATE, cairn.config=, a cidata drive or the image");
            maintenance(&console, &agent, server.as_ref(), &inbox)
        }
    };
    agent.set_problems(Vec::new());
    agent.set_config_source(&source);
    if source != Source::State.to_string() {
        match config.to_toml() {
            Ok(text) => {
                if let Err(error) =
                    write_atomic(Path::new(sources::STATE_CONFIG), text.as_bytes(), 0o600)
                {
                    console.line(&format!("config not kept on STATE: {error}"));
                }
            }
            Err(error) => console.line(&format!("config not kept on STATE: {error}")),
        }
    }
    if let Some(server) = &server {
        server.set_maintenance_key(None);
        if let Some(ca) = &config.api.client_ca
            && let Err(error) = server.set_client_ca(Some(ca.as_pem()))
        {
            console.line(&format!("node API client CA refused: {error}"));
        }
    }

    agent.set_state(cairn_node_api::NodeState::Configuring);
    let _lease_keeper = configure_host(&console, &agent, &config, early_network);
    start_containerd(&console, &agent, &supervisor, &config);
    agent.set_running_config(&config);
    start_cluster(&console, &agent, &supervisor, &config);
    agent.set_state(cairn_node_api::NodeState::Running);
    console.line(&format!(
        "node is running (RSS {} KiB)",
        agent::rss_kib().unwrap_or(0)
    ));
    wait_for_end(&console, &agent, &supervisor, &inbox)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn mount_state() -> String {
    use crate::state::{Growth, StateOutcome};
    let (outcome, growth) = match crate::state::mount_state() {
        Ok(result) => result,
        Err(error) => return format!("{error}; /var stays in memory"),
    };
    let grown = match growth {
        Growth::Unchanged => String::new(),
        Growth::Grown { from, to } => {
            format!(", grown from {} MiB to {} MiB", from >> 20, to >> 20)
        }
        Growth::Failed(reason) => format!(" (not grown: {reason})"),
    };
    match outcome {
        StateOutcome::Formatted(device) => format!(
            "STATE {} formatted (ext4) and mounted on /var{grown}",
            device.display()
        ),
        StateOutcome::Mounted(device) => {
            format!("STATE {} mounted on /var{grown}", device.display())
        }
        StateOutcome::Absent => "no STATE partition; /var is in memory".to_owned(),
    }
}

/// Blocks the signals PID 1 acts on and turns them into events on a
/// thread of their own. Threads started later inherit the mask; children
/// get a clean one (std resets it at exec).
fn start_signal_thread(events: Sender<Event>, console: &Arc<Console>) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        set.add(signal);
    }
    if let Err(error) = set.thread_block() {
        console.line(&format!("signals not blocked: {error}"));
        return;
    }
    let console = Arc::clone(console);
    std::thread::spawn(move || {
        loop {
            let event = match set.wait() {
                Ok(Signal::SIGINT) | Ok(Signal::SIGUSR1) => {
                    Event::Reboot("signal (Ctrl-Alt-Del or SIGUSR1)".to_owned())
                }
                Ok(signal) => Event::PowerOff(format!("signal {signal}")),
                Err(error) => {
                    console.line(&format!("signal wait failed: {error}"));
                    return;
                }
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
}

fn apply_image_host_settings(console: &Console, agent: &Agent) {
    coldplug(console, agent);
    if let Err(error) = net::loopback_up() {
        console.line(&format!("loopback not up: {error}"));
    }
    let mut modules: Vec<String> = host::REQUIRED_MODULES
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    for module in host::modules_from_dirs(&[
        Path::new("/usr/lib/modules-load.d"),
        Path::new("/etc/modules-load.d"),
    ]) {
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    load_modules(console, agent, &modules, "image");
    let mut sysctls: BTreeMap<String, String> = host::REQUIRED_SYSCTLS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    sysctls.extend(host::sysctls_from_dirs(&[
        Path::new("/usr/lib/sysctl.d"),
        Path::new("/etc/sysctl.d"),
    ]));
    apply_sysctls(console, agent, &sysctls, "image");
}

/// Loads the drivers of the devices present, again after each round that
/// loaded something (a bus driver makes its devices appear).
fn coldplug(console: &Console, agent: &Agent) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let alias_file = Path::new("/usr/lib/modules")
        .join(release)
        .join("modules.alias");
    let aliases =
        coldplug::parse_aliases(&std::fs::read_to_string(&alias_file).unwrap_or_default());
    let mut loaded: Vec<String> = Vec::new();
    for _ in 0..3 {
        let devices = coldplug::device_modaliases(Path::new("/sys/devices"));
        let wanted: Vec<String> = coldplug::modules_for(&devices, &aliases)
            .into_iter()
            .filter(|module| !loaded.contains(module))
            .collect();
        if wanted.is_empty() {
            break;
        }
        let report = host::load_modules(&wanted);
        agent.add_problems(report.failed.iter().map(|f| format!("module {f}")));
        loaded.extend(wanted);
    }
    console.line(&format!(
        "device drivers: {}",
        if loaded.is_empty() {
            "none needed".to_owned()
        } else {
            loaded.join(", ")
        }
    ));
}

fn load_modules(console: &Console, agent: &Agent, modules: &[String], origin: &str) {
    let report = host::load_modules(modules);
    console.line(&format!(
        "{origin} kernel modules: {} requested, {} files loaded, {} built in{}",
        modules.len(),
        report.loaded,
        report.built_in.len(),
        if report.failed.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", report.failed.join(", "))
        }
    ));
    agent.add_problems(report.failed.iter().map(|f| format!("module {f}")));
}

fn apply_sysctls(
    console: &Console,
    agent: &Agent,
    sysctls: &BTreeMap<String, String>,
    origin: &str,
) {
    let failed = host::apply_sysctls(sysctls);
    console.line(&format!(
        "{origin} sysctls: {} set{}",
        sysctls.len() - failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failed.join(", "))
        }
    ));
    agent.add_problems(failed.iter().map(|f| format!("sysctl {f}")));
}

fn start_api(console: &Console, agent: &Arc<Agent>) -> Option<cairn_node_api::ApiServerHandle> {
    // Clients pin the certificate's fingerprint, so its name matters
    // little; the kernel's "(none)" is not a valid one.
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let identity =
        match ServerIdentity::load_or_generate(&Path::new(LIB_DIR).join("api"), &[hostname]) {
            Ok(identity) => identity,
            Err(error) => {
                console.line(&format!("node API disabled: no server identity: {error}"));
                return None;
            }
        };
    let fingerprint = identity.fingerprint().to_owned();
    let listen = std::net::SocketAddr::from(([0, 0, 0, 0], API_PORT));
    match cairn_node_api::ApiServer::start(
        listen,
        identity,
        Arc::clone(agent) as Arc<dyn cairn_node_api::NodeService>,
    ) {
        Ok(server) => {
            console.line(&format!(
                "node API on :{API_PORT}, certificate {fingerprint}"
            ));
            Some(server)
        }
        Err(error) => {
            console.line(&format!("node API disabled: {error}"));
            None
        }
    }
}

/// The first config any source has, bringing the network up early when a
/// `cairn.config=` URL needs it.
fn find_config(
    console: &Console,
    agent: &Agent,
    cmdline: &KernelCmdline,
    early_network: &mut Option<net::NetworkState>,
) -> Option<Found> {
    let report = |result: Result<Option<Found>, String>| match result {
        Ok(found) => found,
        Err(error) => {
            console.line(&format!("config source unreadable: {error}"));
            None
        }
    };
    if let Some(found) = report(sources::read_file(
        Path::new(sources::STATE_CONFIG),
        Source::State,
    )) {
        return Some(found);
    }
    if let Some(template) = cmdline.get("cairn.config") {
        let plan = match cmdline.get("ip") {
            Some(arg) => match net::parse_kernel_ip_arg(arg) {
                Ok(plan) => plan,
                Err(error) => {
                    console.line(&format!("kernel ip= ignored ({error}); using DHCP"));
                    net::NetworkPlan::dhcp()
                }
            },
            None => net::NetworkPlan::dhcp(),
        };
        match bring_up_network(console, agent, &plan) {
            Ok(state) => {
                let vars = UrlVariables {
                    mac: Some(state.mac.clone()),
                    hostname: state
                        .dhcp_hostname
                        .clone()
                        .or_else(|| plan.hostname.clone()),
                    uuid: std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
                        .ok()
                        .map(|u| u.trim().to_lowercase()),
                };
                *early_network = Some(state);
                match cmdline::substitute(template, &vars) {
                    Ok(url) => {
                        console.line(&format!("fetching the machine config from {url}"));
                        match sources::fetch_url(&url, CONFIG_URL_DEADLINE, &|m| console.line(m)) {
                            Ok(text) => {
                                return Some(Found {
                                    source: Source::Url(url),
                                    text,
                                });
                            }
                            Err(error) => {
                                console.line(&format!("no config from cairn.config: {error}"))
                            }
                        }
                    }
                    Err(error) => console.line(&format!("cairn.config: {error}")),
                }
            }
            Err(error) => console.line(&format!(
                "cairn.config= needs the network, which is down: {error}"
            )),
        }
    }
    for (device, filesystem) in
        sources::find_cidata(Path::new("/sys/class/block"), Path::new("/dev"))
    {
        let text = match filesystem {
            sources::Filesystem::Fat => sources::read_fat_user_data(&device),
            sources::Filesystem::Iso9660 => read_iso_user_data(console, agent, &device),
        };
        match text {
            Ok(text) => {
                return Some(Found {
                    source: Source::Cidata(device),
                    text,
                });
            }
            Err(error) => console.line(&format!("cidata drive skipped: {error}")),
        }
    }
    report(sources::read_file(
        Path::new(sources::IMAGE_CONFIG),
        Source::Image,
    ))
}

fn read_iso_user_data(console: &Console, agent: &Agent, device: &Path) -> Result<String, String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    load_modules(console, agent, &["isofs".to_owned()], "cidata");
    let target = Path::new("/run/cairn/cidata");
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(
        Some(device),
        target,
        Some("iso9660"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| format!("mounting {} (iso9660): {e}", device.display()))?;
    let result = sources::read_file(
        &target.join("user-data"),
        Source::Cidata(device.to_path_buf()),
    )
    .and_then(|found| {
        found
            .map(|f| f.text)
            .ok_or_else(|| format!("{}: no user-data file", device.display()))
    });
    let _ = umount2(target, MntFlags::MNT_DETACH);
    result
}

/// Parses a found config; on failure shows every problem on the console.
fn validate(console: &Console, found: Found) -> Result<(MachineConfig, String), Vec<String>> {
    let source = found.source.to_string();
    console.line(&format!("machine config from {source}"));
    match MachineConfig::parse(&found.text, &source) {
        Ok(config) => Ok((config, source)),
        Err(error) => {
            console.line(&format!(
                "machine config from {source} is INVALID; nothing of it was applied:"
            ));
            let problems: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
            for problem in &problems {
                console.line(&format!("  {problem}"));
            }
            Err(problems)
        }
    }
}

/// Waits for a valid config through the API (or a reboot/power-off).
fn maintenance(
    console: &Console,
    agent: &Agent,
    server: Option<&cairn_node_api::ApiServerHandle>,
    inbox: &Receiver<Event>,
) -> (MachineConfig, String) {
    agent.set_state(cairn_node_api::NodeState::Maintenance);
    match (server, MaintenanceKey::generate()) {
        (Some(server), Ok(key)) => {
            console.line(&format!(
                "maintenance mode: apply a machine config through the node API on :{API_PORT}"
            ));
            console.line(&format!("maintenance key: {key}"));
            server.set_maintenance_key(Some(key));
        }
        (None, _) => console
            .line("maintenance mode, but the node API is down; fix the config source and reboot"),
        (_, Err(error)) => console.line(&format!("maintenance mode without a key: {error}")),
    }
    loop {
        match inbox.recv() {
            Ok(Event::ApplyConfig(config, source)) => {
                console.line(&format!("machine config accepted from {source}"));
                return (*config, source);
            }
            Ok(Event::Reboot(why)) => finish(console, agent, None, Ending::plain(true), &why),
            Ok(Event::PowerOff(why)) => finish(console, agent, None, Ending::plain(false), &why),
            Ok(Event::Reset { reboot, why }) => {
                finish(console, agent, None, Ending::wiping(reboot), &why)
            }
            Err(_) => std::thread::park(),
        }
    }
}

fn bring_up_network(
    console: &Console,
    agent: &Agent,
    plan: &net::NetworkPlan,
) -> Result<net::NetworkState, String> {
    let state = net::apply(plan, NETWORK_DEADLINE).map_err(|e| e.to_string())?;
    let addresses: Vec<String> = state
        .addresses
        .iter()
        .map(|(a, p)| format!("{a}/{p}"))
        .collect();
    console.line(&format!(
        "network up on {} ({}): {}{}",
        state.interface,
        state.mac,
        addresses.join(", "),
        state
            .gateway
            .map(|g| format!(" via {g}"))
            .unwrap_or_default()
    ));
    agent.set_network(&state);
    Ok(state)
}

/// Applies the config's host settings; returns the keeper of a DHCP lease,
/// which must live as long as the node.
fn configure_host(
    console: &Console,
    agent: &Agent,
    config: &MachineConfig,
    early: Option<net::NetworkState>,
) -> Option<net::LeaseKeeper> {
    let node = &config.node;
    let plan = net::NetworkPlan {
        interface: node.interface.as_ref().map(|i| i.as_str().to_owned()),
        addressing: match &node.addressing {
            ConfigAddressing::Dhcp => net::Addressing::Dhcp,
            ConfigAddressing::Static { addresses, gateway } => net::Addressing::Static {
                addresses: addresses
                    .iter()
                    .map(|a| (a.address(), a.prefix_len()))
                    .collect(),
                gateway: *gateway,
            },
        },
        dns: node.dns.clone(),
        hostname: node.name.as_ref().map(|n| n.to_string()),
    };
    let reuse_early = matches!(plan.addressing, net::Addressing::Dhcp)
        && early.as_ref().is_some_and(|state| {
            plan.interface
                .as_deref()
                .is_none_or(|name| name == state.interface)
        });
    let network = if reuse_early {
        early
    } else {
        bring_up_network(console, agent, &plan)
            .map_err(|error| {
                console.line(&format!("network setup failed: {error}"));
                agent.add_problems([format!("network: {error}")]);
            })
            .ok()
    };
    if let Some(state) = &network {
        let dns = if node.dns.is_empty() {
            state.dns.clone()
        } else {
            node.dns.clone()
        };
        if let Err(error) = net::write_resolv_conf(Path::new("/etc/resolv.conf"), &dns, &[]) {
            console.line(&format!("resolv.conf not written: {error}"));
        }
    }
    let hostname = node
        .name
        .as_ref()
        .map(|n| n.to_string())
        .or_else(|| network.as_ref().and_then(|s| s.dhcp_hostname.clone()))
        .or_else(|| {
            network
                .as_ref()
                .map(|s| format!("cairn-{}", s.mac.replace(':', "")))
        })
        .unwrap_or_else(|| "cairn".to_owned());
    let addresses: Vec<IpAddr> = network
        .as_ref()
        .map(|s| s.addresses.iter().map(|(a, _)| *a).collect())
        .unwrap_or_default();
    match host::set_hostname(&hostname, &addresses) {
        Ok(()) => console.line(&format!("hostname {hostname}")),
        Err(error) => console.line(&format!("hostname {hostname} not set: {error}")),
    }
    agent.set_hostname(&hostname);
    if !config.kernel.modules.is_empty() {
        let modules: Vec<String> = config
            .kernel
            .modules
            .iter()
            .map(|m| m.to_string())
            .collect();
        load_modules(console, agent, &modules, "config");
    }
    if !config.kernel.sysctls.is_empty() {
        let sysctls: BTreeMap<String, String> = config
            .kernel
            .sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply_sysctls(console, agent, &sysctls, "config");
    }
    agent.set_check("root-write", root_write_check());
    let state = network.as_ref().filter(|state| state.lease.is_some())?;
    match net::LeaseKeeper::start(state) {
        Ok(keeper) => keeper,
        Err(error) => {
            console.line(&format!("DHCP lease will not be renewed: {error}"));
            None
        }
    }
}

/// Proves the root is read-only by trying to create a file on it.
fn root_write_check() -> String {
    let probe = Path::new("/.cairn-write-probe");
    match std::fs::File::create(probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(probe);
            "ACCEPTED: the root filesystem is writable".to_owned()
        }
        Err(error) => format!("refused: {error}"),
    }
}

fn start_containerd(
    console: &Console,
    agent: &Agent,
    supervisor: &Supervisor,
    config: &MachineConfig,
) {
    let mut settings = ContainerdSettings::default();
    if let Some(image) = &config.containerd.sandbox_image {
        settings.sandbox_image = image.to_string();
    }
    if let Some(snapshotter) = &config.containerd.snapshotter {
        settings.snapshotter = snapshotter.to_string();
    }
    settings.registry_mirrors = config
        .containerd
        .registry_mirrors
        .iter()
        .map(|(host, mirrors)| {
            (
                host.to_string(),
                mirrors.iter().map(|m| m.to_string()).collect(),
            )
        })
        .collect();
    if let Err(error) = containerd::write_config(&settings) {
        console.line(&format!("containerd config not written: {error}"));
        agent.add_problems([format!("containerd: {error}")]);
        return;
    }
    agent.set_containerd(settings.clone());
    if let Err(error) = supervisor.add(containerd::service_spec(&settings)) {
        console.line(&format!("containerd not supervised: {error}"));
        return;
    }
    if let Err(error) = supervisor.start() {
        console.line(&format!("services not started: {error}"));
        agent.add_problems([format!("services: {error}")]);
        return;
    }
    match supervisor.wait_ready("containerd", CONTAINERD_DEADLINE) {
        Ok(()) => {
            let elapsed = since_boot();
            agent.set_containerd_ready(millis(elapsed));
            console.line(&format!(
                "containerd is ready ({:.1} s after boot)",
                elapsed.as_secs_f64()
            ));
        }
        Err(error) => {
            console.line(&format!("containerd did not become ready: {error}"));
            agent.add_problems([format!("containerd: {error}")]);
            return;
        }
    }
    match containerd::import_images(&settings, Path::new(BUNDLED_IMAGES), "k8s.io") {
        Ok(images) => console.line(&format!("bundled images in k8s.io: {}", images.join(", "))),
        Err(error) => {
            console.line(&format!("bundled images not imported: {error}"));
            agent.add_problems([format!("image import: {error}")]);
        }
    }
}

/// Forms or joins the cluster in a thread of its own (see
/// [`crate::cluster`]).
fn start_cluster(
    console: &Arc<Console>,
    agent: &Arc<Agent>,
    supervisor: &Arc<Supervisor>,
    config: &MachineConfig,
) {
    let (hostname, address) = agent.identity();
    let node_name = match hostname.parse::<cairn_pki::NodeName>() {
        Ok(name) => name,
        Err(error) => {
            console.line(&format!(
                "cluster: the hostname {hostname:?} is no valid Node name: {error}"
            ));
            agent.add_problems([format!("cluster: hostname {hostname:?}: {error}")]);
            return;
        }
    };
    let Some(address) = address else {
        console.line("cluster: the node has no address; it cannot form or join a cluster");
        agent.add_problems(["cluster: no address".to_owned()]);
        return;
    };
    crate::cluster::start(crate::cluster::Context {
        console: Arc::clone(console),
        agent: Arc::clone(agent),
        supervisor: Arc::clone(supervisor),
        config: config.clone(),
        node_name,
        address,
    });
}

fn wait_for_end(
    console: &Console,
    agent: &Agent,
    supervisor: &Supervisor,
    inbox: &Receiver<Event>,
) -> ! {
    loop {
        match inbox.recv() {
            Ok(Event::Reboot(why)) => {
                finish(console, agent, Some(supervisor), Ending::plain(true), &why)
            }
            Ok(Event::PowerOff(why)) => {
                finish(console, agent, Some(supervisor), Ending::plain(false), &why)
            }
            Ok(Event::Reset { reboot, why }) => finish(
                console,
                agent,
                Some(supervisor),
                Ending::wiping(reboot),
                &why,
            ),
            Ok(Event::ApplyConfig(..)) => {}
            Err(_) => std::thread::park(),
        }
    }
}

/// How PID 1 ends.
#[derive(Debug, Clone, Copy)]
struct Ending {
    reboot: bool,
    /// Wipe STATE after unmounting it (reset).
    wipe_state: bool,
}

impl Ending {
    fn plain(reboot: bool) -> Self {
        Self {
            reboot,
            wipe_state: false,
        }
    }

    fn wiping(reboot: bool) -> Self {
        Self {
            reboot,
            wipe_state: true,
        }
    }
}

/// Stops everything in order and reboots or powers off.
fn finish(
    console: &Console,
    agent: &Agent,
    supervisor: Option<&Supervisor>,
    ending: Ending,
    why: &str,
) -> ! {
    let reboot = ending.reboot;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    agent.set_state(cairn_node_api::NodeState::ShuttingDown);
    let verb = if reboot { "rebooting" } else { "powering off" };
    console.line(&format!("{verb}: {why}"));
    if let Some(supervisor) = supervisor {
        match supervisor.stop_all(Duration::from_secs(30)) {
            Ok(()) => console.line("services stopped"),
            Err(error) => console.line(&format!("stopping services: {error}")),
        }
    }
    // Whatever is left (containers' shims, strays) gets TERM, then KILL.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    nix::unistd::sync();
    unmount_var(console);
    if ending.wipe_state {
        wipe_state(console);
    }
    console.line(&format!("{verb} now"));
    console.flush();
    nix::unistd::sync();
    let mode = if reboot {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    } else {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    };
    let error = nix::sys::reboot::reboot(mode);
    console.line(&format!("{verb} failed: {error:?}"));
    loop {
        std::thread::park();
    }
}

/// Overwrites the start of the STATE partition, where ext4 keeps its
/// superblock, so the next boot finds no filesystem and formats it afresh:
/// machine config, PKI, etcd data and machine-id are gone.
fn wipe_state(console: &Console) {
    let Some(name) = crate::state::find_partition(Path::new("/sys/class/block")) else {
        console.line("reset: no STATE partition (/var was in memory): nothing to wipe");
        return;
    };
    let device = Path::new("/dev").join(&name);
    match crate::state::wipe_start(&device) {
        Ok(bytes) => console.line(&format!(
            "reset: STATE {} wiped ({} KiB overwritten); it is formatted on the next boot",
            device.display(),
            bytes / 1024
        )),
        Err(error) => console.line(&format!("reset: wiping {}: {error}", device.display())),
    }
}

/// Unmounts everything below and on `/var`, deepest first, so STATE is
/// clean for the next boot.
fn unmount_var(console: &Console) {
    use nix::mount::{MntFlags, umount2};
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|t| *t == "/var" || t.starts_with("/var/"))
        .map(|t| t.replace("\\040", " "))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    targets.dedup();
    for target in targets {
        if umount2(target.as_str(), MntFlags::empty()).is_err()
            && let Err(error) = umount2(target.as_str(), MntFlags::MNT_DETACH)
        {
            console.line(&format!("unmounting {target}: {error}"));
        }
    }
}

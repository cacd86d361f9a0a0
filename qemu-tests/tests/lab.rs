//! The lab's plumbing, without a working node: namespace, bridge, taps,
//! dnsmasq, the HTTP server, port forwards, teardown and crash cleanup, and
//! a PXE boot through dnsmasq + iPXE + the HTTP server up to the kernel.
//! Needs root (namespaces, taps).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_qemu_tests::lab::{self, BootMode, Lab, LabSpec, netns, procs};

/// A stand-in image directory: enough for configs and PXE scripts.
fn fake_image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("boot.ipxe"),
        "#!ipxe\nkernel vmlinuz initrd=initramfs.cpio.zst console=ttyS0\ninitrd initramfs.cpio.zst\nboot\n",
    )
    .expect("boot.ipxe");
    std::fs::write(dir.path().join("cmdline"), "console=ttyS0\n").expect("cmdline");
    std::fs::write(dir.path().join("vmlinuz"), b"not a kernel").expect("vmlinuz");
    dir
}

/// A lab with `nodes` nodes that are not booted.
fn spec(name: &str, image: &Path, nodes: usize) -> LabSpec {
    let mut spec = LabSpec::new(name, image, nodes);
    spec.start_nodes = false;
    spec
}

fn netns_list() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ns_links(ns: &str) -> String {
    let output = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Nothing of the lab is left: namespace, processes, directory, daemon log.
fn assert_gone(name: &str, dir: &Path) {
    let ns = lab::netns_name(name);
    assert!(
        !netns_list()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
        "namespace {ns} is still there:\n{}",
        netns_list()
    );
    assert!(!netns::exists(&ns), "/run/netns/{ns} is still there");
    let left = procs::find(dir);
    assert!(
        left.is_empty(),
        "processes of the lab are still running: {left:?}"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    let log = lab::control::daemon_log(dir.parent().expect("root"), name);
    assert!(!log.exists(), "{} is still there", log.display());
}

/// One HTTP/1.0 GET from inside the namespace: (status, body).
fn get_in_namespace(ns: &str, url_path: &str) -> (u16, String) {
    let url_path = url_path.to_owned();
    let mut stream = netns::in_namespace(ns, || {
        TcpStream::connect_timeout(
            &SocketAddr::from((lab::GATEWAY, lab::HTTP_PORT)),
            Duration::from_secs(5),
        )
    })
    .expect("connect to the lab HTTP server");
    write!(stream, "GET {url_path} HTTP/1.0\r\nHost: lab\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn network_comes_up_and_down_leaves_nothing() {
    let image = fake_image();
    let lab = Lab::up(spec("lt-net", image.path(), 3)).expect("lab up");
    let dir = lab.dir().to_path_buf();
    let ns = lab.netns().to_owned();
    assert!(
        netns_list().contains(&ns),
        "{ns} missing from ip netns list"
    );
    let links = ns_links(&ns);
    for link in ["br0", "tap1", "tap2", "tap3"] {
        assert!(
            links.contains(&format!(": {link}")),
            "{link} missing in {ns}:\n{links}"
        );
    }
    for tap in ["tap1", "tap2", "tap3"] {
        let line = links
            .lines()
            .find(|l| l.contains(&format!(": {tap}")))
            .expect("tap line");
        assert!(
            line.contains("master br0"),
            "{tap} is not on the bridge: {line}"
        );
    }
    let running = procs::find(&dir);
    assert!(
        running.iter().any(|p| p.cmdline.contains("dnsmasq")),
        "no dnsmasq found: {running:?}"
    );
    let state = lab::LabState::load(&dir).expect("state.json");
    assert_eq!(state.nodes.len(), 3);
    assert_eq!(state.nodes[0].ip.to_string(), "10.5.0.11");
    assert_eq!(state.nodes[2].name, "node-3");
    assert!(state.nodes.iter().all(|n| n.api_addr().is_some()));
    assert!(lab.admin().paths.cert.is_file() && lab.admin().paths.key.is_file());
    lab.down().expect("down");
    assert_gone("lt-net", &dir);
}

#[test]
fn dropping_the_lab_tears_it_down() {
    let image = fake_image();
    let dir;
    {
        let lab = Lab::up(spec("lt-drop", image.path(), 1)).expect("lab up");
        dir = lab.dir().to_path_buf();
        assert!(netns::exists(lab.netns()));
    }
    assert_gone("lt-drop", &dir);
}

#[test]
fn leftovers_of_a_crashed_lab_are_cleaned_by_the_next_up_and_by_cleanup() {
    let image = fake_image();
    let lab = Lab::up(spec("lt-crash", image.path(), 2)).expect("lab up");
    let dir = lab.dir().to_path_buf();
    let old_dnsmasq = lab.state().dnsmasq_pid.expect("dnsmasq pid");
    // A crash: nothing is torn down.
    std::mem::forget(lab);
    assert!(procs::alive(old_dnsmasq));
    let lab = Lab::up(spec("lt-crash", image.path(), 2)).expect("lab up over leftovers");
    assert!(!procs::alive(old_dnsmasq), "the old dnsmasq survived");
    let dnsmasqs = procs::find(&dir)
        .into_iter()
        .filter(|p| p.cmdline.contains("dnsmasq"))
        .count();
    assert_eq!(dnsmasqs, 1, "exactly one dnsmasq after the second up");
    // A second crash, then `down` without any process of the lab knowing:
    // the cleanup works from the name alone.
    std::mem::forget(lab);
    let cleaned = lab::cleanup(&lab::default_root(), "lt-crash").expect("cleanup");
    assert!(cleaned.netns_removed && cleaned.dir_removed, "{cleaned:?}");
    assert!(
        !cleaned.killed.is_empty(),
        "dnsmasq should have been killed"
    );
    assert_gone("lt-crash", &dir);
}

#[test]
fn the_config_server_answers_inside_the_namespace() {
    let image = fake_image();
    let mut lab = Lab::up(spec("lt-http", image.path(), 2)).expect("lab up");
    let ns = lab.netns().to_owned();
    let node = lab.node("node-2").expect("node-2").clone();

    let (status, body) = get_in_namespace(&ns, &format!("/config/{}", node.mac));
    assert_eq!(status, 200);
    assert_eq!(Some(body.clone()), lab.config("node-2").expect("config"));
    assert!(body.contains("name = \"node-2\""), "{body}");
    assert!(body.contains("role = \"worker\""), "{body}");
    assert!(body.contains("addresses = [\"10.5.0.12/24\"]"), "{body}");
    assert!(
        body.contains("client-ca = \"\"\"\n-----BEGIN CERTIFICATE-----"),
        "{body}"
    );
    cairn_config::MachineConfig::parse(&body, "served").expect("the served config is valid");
    let node1 = lab
        .config("node-1")
        .expect("config")
        .expect("node-1 has one");
    assert!(node1.contains("role = \"worker\""), "{node1}");

    // A real client (busybox wget) from the namespace, with the MAC in
    // upper case and dashes as some firmware writes it.
    let mac_dashes = node.mac.to_uppercase().replace(':', "-");
    let output = Command::new("ip")
        .args(["netns", "exec", &ns, "busybox", "wget", "-q", "-O", "-"])
        .arg(format!(
            "http://{}:{}/config/{mac_dashes}",
            lab::GATEWAY,
            lab::HTTP_PORT
        ))
        .output()
        .expect("busybox wget");
    assert!(
        output.status.success(),
        "wget: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), body);

    // The PXE script carries the config URL.
    let (status, script) = get_in_namespace(&ns, &format!("/pxe/{}/boot.ipxe", node.mac));
    assert_eq!(status, 200);
    assert!(
        script.contains(&format!(
            "kernel vmlinuz initrd=initramfs.cpio.zst console=ttyS0 cairn.config=http://10.5.0.1:8080/config/{}\n",
            node.mac
        )),
        "{script}"
    );
    let (status, kernel) = get_in_namespace(&ns, &format!("/pxe/{}/vmlinuz", node.mac));
    assert_eq!((status, kernel.as_str()), (200, "not a kernel"));

    // Overrides: a broken config, then none, then a corrected one.
    lab.set_config("node-2", Some("[node\nbroken".into()))
        .expect("set");
    assert_eq!(
        get_in_namespace(&ns, "/config/node-2"),
        (200, "[node\nbroken".to_owned())
    );
    lab.set_config("node-2", None).expect("set");
    assert_eq!(
        get_in_namespace(&ns, &format!("/config/{}", node.mac)).0,
        404
    );
    let fixed = lab.default_config("node-2").expect("default");
    lab.set_config("node-2", Some(fixed.clone())).expect("set");
    assert_eq!(
        get_in_namespace(&ns, &format!("/config/{}", node.mac)),
        (200, fixed)
    );
    assert_eq!(get_in_namespace(&ns, "/config/52:54:00:00:00:00").0, 404);

    let requests = lab.http_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path == format!("/config/{mac_dashes}") && r.status == 200),
        "{requests:?}"
    );
    let log = std::fs::read_to_string(lab.dir().join("http.log")).expect("http.log");
    assert!(
        log.contains(&format!("GET /pxe/{}/boot.ipxe 200", node.mac)),
        "{log}"
    );
}

#[test]
fn a_port_forward_reaches_a_listener_in_the_namespace() {
    let image = fake_image();
    let lab = Lab::up(spec("lt-fwd", image.path(), 2)).expect("lab up");
    let ns = lab.netns().to_owned();
    let node = lab.node("node-2").expect("node-2").clone();
    // Stand in for the node: its address on the bridge, an echo server on
    // :50000, both inside the namespace.
    netns::ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{}/32", node.ip),
        "dev",
        "br0",
    ])
    .expect("add the node address");
    let listener = netns::in_namespace(&ns, || TcpListener::bind((node.ip, lab::API_PORT)))
        .expect("listen in the namespace");
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            let mut stream = stream;
            stream
                .write_all(format!("echo {line}").as_bytes())
                .expect("write");
        }
    });
    let addr = node.api_addr().expect("forward");
    assert!(addr.ip().is_loopback(), "{addr}");
    for round in 0..2 {
        let mut stream = TcpStream::connect(addr).expect("connect to the forward");
        stream
            .write_all(format!("hello {round}\n").as_bytes())
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert_eq!(answer, format!("echo hello {round}\n"));
    }
    server.join().expect("server");
    // A node that does not listen: the connection is closed, not hung.
    let other = lab
        .node("node-1")
        .expect("node-1")
        .api_addr()
        .expect("forward");
    let mut stream = TcpStream::connect(other).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buffer = Vec::new();
    let read = stream.read_to_end(&mut buffer);
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
}

/// Removes a namespace when dropped.
struct ClientNs(String);

impl Drop for ClientNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

#[test]
fn dnsmasq_leases_the_reserved_address() {
    let image = fake_image();
    let lab = Lab::up(spec("lt-dhcp", image.path(), 2)).expect("lab up");
    let ns = lab.netns().to_owned();
    let node = lab.node("node-2").expect("node-2").clone();
    // A client namespace on a veth whose lab end is on the bridge, with
    // node-2's MAC.
    let client = ClientNs("cairntest-lt-dhcp".into());
    let _ = netns::delete(&client.0);
    netns::ip(&["netns", "add", &client.0]).expect("client ns");
    netns::ip(&[
        "-n", &ns, "link", "add", "vh0", "type", "veth", "peer", "name", "vc0",
    ])
    .expect("veth");
    netns::ip(&["-n", &ns, "link", "set", "vh0", "master", "br0", "up"]).expect("vh0");
    netns::ip(&["-n", &ns, "link", "set", "vc0", "netns", &client.0]).expect("move vc0");
    netns::ip(&[
        "-n", &client.0, "link", "set", "vc0", "address", &node.mac, "up",
    ])
    .expect("vc0 up");
    let output = Command::new("ip")
        .args(["netns", "exec", &client.0, "busybox", "udhcpc"])
        .args([
            "-i",
            "vc0",
            "-f",
            "-q",
            "-n",
            "-t",
            "10",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .expect("udhcpc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "udhcpc failed:\n{text}");
    assert!(
        text.contains(&format!("lease of {} obtained", node.ip)),
        "udhcpc did not get {}:\n{text}",
        node.ip
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.dhcp_leases().iter().any(|l| l.contains(&node.mac)) {
        assert!(
            Instant::now() < deadline,
            "no lease recorded: {:?}",
            lab.dhcp_leases()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lease = lab
        .dhcp_leases()
        .into_iter()
        .find(|l| l.contains(&node.mac))
        .expect("lease");
    assert!(lease.contains(&format!("{} node-2", node.ip)), "{lease}");
}

/// The whole PXE chain with the real image: QEMU in the namespace on its
/// tap, SeaBIOS + iPXE get an address and the boot script URL from
/// dnsmasq, fetch the per-node script, kernel and initramfs from the lab's
/// HTTP server, and the kernel starts with `cairn.config=` on its command
/// line.
#[test]
fn a_node_pxe_boots_from_the_lab() {
    let image = common::image();
    let mut spec = LabSpec::new("lt-pxe", image, 1);
    spec.boot = BootMode::Pxe;
    spec.memory_mib = 1536;
    let mut lab = Lab::up(spec).expect("lab up");
    let node = lab.node("node-1").expect("node-1").clone();
    let line = lab
        .wait_for_console("node-1", "Kernel command line:", Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e}\nHTTP requests: {:?}", lab.http_requests()));
    assert!(
        line.contains(&format!(
            "cairn.config=http://10.5.0.1:8080/config/{}",
            node.mac
        )),
        "{line}"
    );
    let requests = lab.http_requests();
    for path in ["boot.ipxe", "vmlinuz", "initramfs.cpio.zst"] {
        let wanted = format!("/pxe/{}/{path}", node.mac);
        assert!(
            requests.iter().any(|r| r.path == wanted && r.status == 200),
            "{wanted} was not served: {requests:?}"
        );
    }
    assert!(
        lab.dhcp_leases().iter().any(|l| l.contains(&node.mac)),
        "{:?}",
        lab.dhcp_leases()
    );
    let dir: PathBuf = lab.dir().to_path_buf();
    lab.down().expect("down");
    assert_gone("lt-pxe", &dir);
}

/// The daemon's control socket: requests are answered, bad ones refused,
/// and `down` tears the lab down and ends the server.
#[test]
fn the_control_socket_serves_requests_until_down() {
    use std::sync::atomic::AtomicBool;

    use cairn_qemu_tests::lab::control::{self, Request};

    let image = fake_image();
    let lab = Lab::up(spec("lt-ctl", image.path(), 2)).expect("lab up");
    let dir = lab.dir().to_path_buf();
    let ns = lab.netns().to_owned();
    let server = std::thread::spawn(move || control::serve(lab, &AtomicBool::new(false)));
    let socket = control::socket_path(&dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while control::request(&dir, &Request::Ping).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never answered",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    control::request(
        &dir,
        &Request::SetConfig {
            node: "node-2".into(),
            config: Some("[node]\nrole = \"worker\"\n".into()),
        },
    )
    .expect("set-config");
    assert_eq!(
        get_in_namespace(&ns, "/config/node-2"),
        (200, "[node]\nrole = \"worker\"\n".to_owned())
    );
    let error = control::request(
        &dir,
        &Request::Kill {
            node: "node-9".into(),
        },
    )
    .expect_err("unknown node");
    assert!(error.to_string().contains("node-9"), "{error}");
    // Killing a node that does not run is fine.
    control::request(
        &dir,
        &Request::Kill {
            node: "node-1".into(),
        },
    )
    .expect("kill");
    control::request(&dir, &Request::Down).expect("down");
    server.join().expect("server thread").expect("serve");
    assert_gone("lt-ctl", &dir);
    assert!(matches!(
        control::request(&dir, &Request::Ping),
        Err(cairn_qemu_tests::LabError::NotRunning(..))
    ));
}

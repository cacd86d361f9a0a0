//! Cluster scenarios in QEMU: three control planes and a worker form a
//! Kubernetes cluster from machine configs alone (node-1 initialises, the
//! others join with the token, the CA pin and, for control planes, the
//! certificate key the lab serves them); a stock kubectl lists them
//! through the VIP; etcd has three voters; joins with bad material are
//! refused with messages that say what is wrong and what to do; the VIP
//! moves when its holder is killed or cut off, and is never held twice.
//!
//! One lab serves every check: forming it under TCG costs minutes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};
use cairn_pki::BootstrapToken;
use cairn_qemu_tests::lab::cluster::{CA_PATH, ETCD_PORT};
use cairn_qemu_tests::lab::ready::Auth;
use cairn_qemu_tests::lab::{Lab, LabSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const FORM: Duration = Duration::from_secs(1200);

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn consoles(lab: &Lab) -> String {
    lab.nodes()
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.console_tail(30)))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Ha {
    lab: Lab,
    kubeconfig: std::path::PathBuf,
}

impl Ha {
    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", consoles(&self.lab))
    }

    /// Control-plane nodes reporting that they hold the VIP.
    fn vip_holders(&self) -> Vec<String> {
        self.lab
            .nodes()
            .iter()
            .filter(|n| n.role == cairn_config::NodeRole::ControlPlane)
            .filter(|n| self.lab.state().is_running(&n.name))
            .filter(|n| {
                self.lab
                    .status(&n.name)
                    .ok()
                    .and_then(|s| s.cluster)
                    .is_some_and(|c| c.vip_holder)
            })
            .map(|n| n.name.clone())
            .collect()
    }

    fn wait_single_holder(&self, not: Option<&str>, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let holders = self.vip_holders();
            if holders.len() == 1 && Some(holders[0].as_str()) != not {
                return holders[0].clone();
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "expected exactly one VIP holder (not {not:?}) within {} s, saw {holders:?}",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn wait_member(&mut self, node: &str, timeout: Duration) {
        let result = self.lab.wait_status(node, timeout, |s| {
            s.cluster.as_ref().is_some_and(|c| c.member)
        });
        if let Err(e) = result {
            self.fail(&format!("{node} did not become a member again: {e}"));
        }
    }

    /// A client through the VIP forward with short timeouts.
    fn vip_client(&self) -> KubeClient {
        KubeClient::from_kubeconfig(&self.kubeconfig)
            .expect("admin client")
            .with_connect_timeout(Duration::from_secs(1))
            .with_io_timeout(Duration::from_secs(3))
    }

    /// Waits until the API answers `/readyz` through the VIP.
    fn wait_api(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = self.vip_client().request("GET", "/readyz", None) {
                return started.elapsed();
            }
            if started.elapsed() > timeout {
                self.fail(&format!(
                    "the API did not answer through the VIP within {} s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// etcd's voting members, asked through node-1's etcd forward with
    /// node-1's apiserver-etcd-client certificate.
    fn etcd_voters(&self, via: &str) -> Vec<String> {
        let node = self.lab.node(via).expect("node");
        let api = self.lab.client(via, Auth::Admin).expect("node API client");
        let read = |path: &str| {
            api.read(path)
                .unwrap_or_else(|e| self.fail(&format!("reading {path}: {e}")))
        };
        let forward = node.forwards.get(&ETCD_PORT).expect("etcd forward");
        let client = KubeClient::new(
            &format!("https://{forward}"),
            ServerTrust::CaPem(read("/etc/kubernetes/pki/etcd/ca.crt")),
            Credentials::ClientCertificate {
                cert_pem: read("/etc/kubernetes/pki/apiserver-etcd-client.crt"),
                key_pem: read("/etc/kubernetes/pki/apiserver-etcd-client.key"),
            },
        )
        .and_then(|c| c.with_server_name("localhost"))
        .expect("etcd client");
        let (status, body) = client
            .request("POST", "/v3/cluster/member/list", Some(b"{}"))
            .unwrap_or_else(|e| self.fail(&format!("etcd member list: {e}")));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("etcd JSON");
        value["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| !m["isLearner"].as_bool().unwrap_or(false))
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Host-observed times of `vip: holding|released` console lines, from all
/// control planes, read from their serial logs as QEMU writes them. The
/// host clock is the one timeline every VM shares.
struct VipTimeline {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(Instant, String, bool)>>>,
}

impl VipTimeline {
    fn start(lab: &Lab) -> Self {
        let logs: Vec<(String, std::path::PathBuf, u64)> = lab
            .nodes()
            .iter()
            .filter(|n| n.role == cairn_config::NodeRole::ControlPlane)
            .map(|n| {
                let size = std::fs::metadata(&n.serial_log)
                    .map(|m| m.len())
                    .unwrap_or(0);
                (n.name.clone(), n.serial_log.clone(), size)
            })
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut offsets: Vec<u64> = logs.iter().map(|l| l.2).collect();
            let mut partial: Vec<String> = vec![String::new(); logs.len()];
            let mut events = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                for (i, (name, path, _)) in logs.iter().enumerate() {
                    use std::io::{Read, Seek, SeekFrom};
                    let Ok(mut file) = std::fs::File::open(path) else {
                        continue;
                    };
                    if file.seek(SeekFrom::Start(offsets[i])).is_err() {
                        continue;
                    }
                    let mut bytes = Vec::new();
                    if file.read_to_end(&mut bytes).is_err() {
                        continue;
                    }
                    offsets[i] += bytes.len() as u64;
                    partial[i].push_str(&String::from_utf8_lossy(&bytes));
                    let now = Instant::now();
                    while let Some(end) = partial[i].find('\n') {
                        let line: String = partial[i].drain(..=end).collect();
                        if line.contains("vip: holding") {
                            events.push((now, name.clone(), true));
                        } else if line.contains("vip: released") {
                            events.push((now, name.clone(), false));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            events
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and checks that no two nodes held the VIP at once.
    fn finish(mut self) -> Vec<(Instant, String, bool)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn assert_never_two_holders(events: &[(Instant, String, bool)], initial: &str) {
    let mut holding: Vec<String> = vec![initial.to_owned()];
    for (_, node, holds) in events {
        if *holds {
            holding.push(node.clone());
        } else {
            holding.retain(|n| n != node);
        }
        assert!(
            holding.len() <= 1,
            "two nodes held the VIP at once: {holding:?}; timeline {:?}",
            events
                .iter()
                .map(|(at, n, h)| format!(
                    "{:?} {n} {}",
                    at.duration_since(events[0].0),
                    if *h { "holding" } else { "released" }
                ))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn three_control_planes_and_a_worker_form_a_cluster_and_the_vip_fails_over() {
    let mut spec = LabSpec::with_cluster("ct-ha", common::image(), 3, 1, true);
    spec.memory_mib = 1536;
    let mut lab = Lab::up(spec).unwrap_or_else(|e| panic!("lab up: {e}"));
    let formed = lab
        .form_cluster(FORM)
        .unwrap_or_else(|e| panic!("forming the cluster: {e}\n{}", consoles(&lab)));
    for (node, took) in &formed.members {
        eprintln!(
            "{node} became a member {:.1} s after the lab started forming",
            took.as_secs_f64()
        );
    }
    let ha = Ha {
        lab,
        kubeconfig: formed.kubeconfig.clone(),
    };
    let names = ["node-1", "node-2", "node-3", "node-4"];

    // A stock kubectl through the VIP lists every node, Ready.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let json = kubectl(&ha.kubeconfig, &["get", "nodes", "-o", "json"]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("kubectl JSON");
        let ready: Vec<String> = value["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|node| {
                node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        if names.iter().all(|n| ready.iter().any(|r| r == n)) {
            break;
        }
        if Instant::now() > deadline {
            ha.fail(&format!("expected {names:?} Ready, saw Ready {ready:?}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let table = kubectl(&ha.kubeconfig, &["get", "nodes"]);
    eprintln!("{table}");
    assert_eq!(
        table.matches("control-plane").count(),
        3,
        "expected three control-plane roles:\n{table}"
    );
    let mut voters = ha.etcd_voters("node-1");
    voters.sort();
    assert_eq!(
        voters,
        ["node-1", "node-2", "node-3"],
        "etcd voting members"
    );

    check_refused_joins(&ha);
    check_live_apiserver_san(&ha, "node-2");

    // Kill the VIP holder: the API answers through the VIP again from
    // another node, with the data written before.
    let holder = ha.wait_single_holder(None, Duration::from_secs(120));
    let admin = ha.vip_client();
    let marker = ConfigMap {
        metadata: ObjectMeta {
            name: Some("before-failover".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        data: Some([("written".to_owned(), "before the kill".to_owned())].into()),
        ..ConfigMap::default()
    };
    admin
        .create(Some("default"), &marker)
        .unwrap_or_else(|e| ha.fail(&format!("creating the marker ConfigMap: {e}")));
    let mut ha = ha;
    ha.lab.kill(&holder).expect("kill the VIP holder");
    let failover = ha.wait_api(Duration::from_secs(120));
    eprintln!(
        "VIP failover after killing {holder}: API answered through the VIP after {:.2} s",
        failover.as_secs_f64()
    );
    let new_holder = ha.wait_single_holder(Some(&holder), Duration::from_secs(60));
    let read: ConfigMap = ha
        .vip_client()
        .get(Some("default"), "before-failover")
        .unwrap_or_else(|e| ha.fail(&format!("reading the marker after failover: {e}")));
    assert_eq!(read.data, marker.data, "marker changed across the failover");

    // The killed node boots again from its disk and rejoins.
    ha.lab.start(&holder).expect("restart the killed node");
    ha.wait_member(&holder, Duration::from_secs(600));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut voters = ha.etcd_voters(&new_holder);
        voters.sort();
        if voters == ["node-1", "node-2", "node-3"] {
            break;
        }
        if Instant::now() > deadline {
            ha.fail(&format!("{holder} did not rejoin etcd: voters {voters:?}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    // Cut the holder off: it drops the VIP within its lease, another node
    // takes it, and at no moment do two nodes hold it.
    let holder = ha.wait_single_holder(None, Duration::from_secs(60));
    let timeline = VipTimeline::start(&ha.lab);
    let cut_at = Instant::now();
    ha.lab.set_link(&holder, false).expect("tap down");
    let taken = ha.wait_single_holder(Some(&holder), Duration::from_secs(120));
    let holder_log = ha.lab.node(&holder).expect("node").serial_log.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&holder_log)
        .unwrap_or_default()
        .rsplit("vip: holding")
        .next()
        .is_some_and(|after| after.contains("vip: released"))
    {
        if Instant::now() > deadline {
            ha.fail(&format!(
                "{holder}, cut off, never said it released the VIP"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let events = timeline.finish();
    let released = events
        .iter()
        .find(|(_, n, h)| n == &holder && !h)
        .map(|(at, ..)| at.duration_since(cut_at));
    eprintln!(
        "cut off {holder}: it released the VIP after {released:?}; {taken} took it; timeline {:?}",
        events
            .iter()
            .map(|(at, n, h)| format!(
                "+{:.2}s {n} {}",
                at.duration_since(cut_at).as_secs_f64(),
                if *h { "holding" } else { "released" }
            ))
            .collect::<Vec<_>>()
    );
    assert_never_two_holders(&events, &holder);
    let released =
        released.unwrap_or_else(|| ha.fail("no release seen on the cut-off node's console"));
    assert!(
        released < Duration::from_secs(10),
        "the cut-off node held the VIP {released:?} after losing its network"
    );
    ha.lab.set_link(&holder, true).expect("tap up");
    ha.wait_member(&holder, Duration::from_secs(300));
    assert_eq!(ha.vip_holders().len(), 1, "one holder after reconnecting");

    check_reset_and_rejoin(&mut ha);

    ha.lab.down().expect("lab down");
}

/// A SAN added to a running control plane's config through its node API
/// (what `bootstrap certs renew apiserver --node` does): the apiserver
/// serves a certificate for the new name without re-init or reboot.
fn check_live_apiserver_san(ha: &Ha, node: &str) {
    const NAME: &str = "api.cairn.test";
    let api = ha.lab.client(node, Auth::Admin).expect("node API client");
    let text = String::from_utf8(
        api.read("/var/lib/cairn/config.toml")
            .unwrap_or_else(|e| ha.fail(&format!("reading {node}'s config: {e}"))),
    )
    .expect("UTF-8 config");
    let mut config =
        cairn_config::MachineConfig::parse(&text, "node config").expect("valid config");
    config
        .cluster
        .get_or_insert_with(Default::default)
        .apiserver_cert_extra_sans
        .push(NAME.parse().expect("SAN"));
    api.apply_config(&config.to_toml().expect("render"))
        .unwrap_or_else(|e| ha.fail(&format!("applying a new SAN to running {node}: {e}")));
    let forward = *ha
        .lab
        .node(node)
        .expect("node")
        .forwards
        .get(&cairn_qemu_tests::lab::KUBE_PORT)
        .expect("apiserver forward");
    let creds = std::fs::read_to_string(&ha.kubeconfig)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            cairn_pki::kubeconfig::Kubeconfig::parse(&text)
                .and_then(|k| k.current_credentials())
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| ha.fail(&format!("admin kubeconfig: {e}")));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let answer = KubeClient::new(
            &format!("https://{forward}"),
            ServerTrust::CaPem(creds.ca_pem.clone().into_bytes()),
            Credentials::ClientCertificate {
                cert_pem: creds.client_cert_pem.clone().into_bytes(),
                key_pem: creds.client_key_pem.clone().into_bytes(),
            },
        )
        .and_then(|c| c.with_server_name(NAME))
        .map_err(|e| e.to_string())
        .and_then(|c| c.request("GET", "/readyz", None).map_err(|e| e.to_string()));
        match answer {
            Ok((200, _)) => break,
            other if Instant::now() > deadline => ha.fail(&format!(
                "{node}'s apiserver never served a certificate for {NAME}: last answer {other:?}"
            )),
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
    eprintln!("{node}: apiserver serves {NAME} after a live config change");
}

/// `reset` of a joined control plane (the VIP holder unless that is
/// node-1, whose lab config would initialise a new cluster): it leaves
/// etcd and deletes its Node before answering, wipes STATE, and with the
/// lab's join config comes back as a member under the same name.
fn check_reset_and_rejoin(ha: &mut Ha) {
    let holder = ha.wait_single_holder(None, Duration::from_secs(60));
    let target = if holder == "node-1" {
        "node-2".to_owned()
    } else {
        holder.clone()
    };
    let witness = if target == "node-3" {
        "node-2"
    } else {
        "node-3"
    };
    let mark = ha.lab.console_mark(&target).expect("console mark");
    let answer = ha
        .lab
        .client(&target, Auth::Admin)
        .expect("node API client")
        .with_io_timeout(Duration::from_secs(120))
        .reset(&cairn_node_api::ResetRequest::default())
        .unwrap_or_else(|e| ha.fail(&format!("reset of {target}: {e}")));
    eprintln!("reset of {target}: {:?}", answer.steps);
    let said = answer.steps.join("\n");
    for expected in [
        format!("Node {target} deleted"),
        "etcd: member".to_owned(),
        "2 member(s) left".to_owned(),
    ] {
        assert!(
            said.contains(&expected),
            "expected a reset step containing {expected:?}, got:\n{said}"
        );
    }
    let mut voters = ha.etcd_voters(witness);
    voters.sort();
    assert!(
        !voters.contains(&target),
        "{target} is still an etcd voter right after its reset: {voters:?}"
    );
    ha.lab
        .wait_for_console_after(&target, mark, "wiped", Duration::from_secs(120))
        .unwrap_or_else(|e| ha.fail(&format!("{target} did not wipe STATE: {e}")));
    ha.lab
        .wait_for_console_after(&target, mark, "formatted", Duration::from_secs(300))
        .unwrap_or_else(|e| ha.fail(&format!("{target} did not format a fresh STATE: {e}")));
    ha.wait_member(&target, Duration::from_secs(600));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut voters = ha.etcd_voters(witness);
        voters.sort();
        if voters == ["node-1", "node-2", "node-3"] {
            break;
        }
        if Instant::now() > deadline {
            ha.fail(&format!(
                "{target} did not rejoin etcd after its reset: voters {voters:?}"
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(ha.vip_holders().len(), 1, "one VIP holder after the reset");
}

/// Joins with bad material, through the VIP endpoint a node uses.
fn check_refused_joins(ha: &Ha) {
    let lab = &ha.lab;
    let kubeconfig = &ha.kubeconfig;
    let endpoint = lab
        .state()
        .cluster
        .as_ref()
        .and_then(|c| c.api_forward)
        .expect("VIP forward")
        .to_string();
    let client = lab.client("node-1", Auth::Admin).expect("node API client");
    let ca_pem = String::from_utf8(client.read(CA_PATH).expect("CA")).expect("CA text");
    let pin = cairn_pki::ca_cert_hash(&ca_pem).expect("pin");
    let token: BootstrapToken = lab
        .state()
        .cluster
        .as_ref()
        .expect("cluster")
        .token
        .parse()
        .expect("lab token");

    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let error = cairn_cluster::discovery::discover(&endpoint, &token, &wrong_pin)
        .expect_err("a wrong CA pin must be refused")
        .to_string();
    assert!(
        error.contains(&wrong_pin) && error.contains(&pin),
        "the pin error should show the expected and the seen pin: {error}"
    );

    let unknown: BootstrapToken = "zzzzzz.0123456789abcdef".parse().expect("token");
    let error = cairn_cluster::discovery::discover(&endpoint, &unknown, &pin)
        .expect_err("an unknown token must be refused")
        .to_string();
    assert!(
        error.contains("zzzzzz") && error.contains("bootstrap token create"),
        "the unknown-token error should name the token and the fix: {error}"
    );

    // An expired token: its Secret exists but the signer no longer signs
    // for it, and the apiserver refuses it.
    let admin = KubeClient::from_kubeconfig(kubeconfig).expect("admin client");
    let expired: BootstrapToken = "xpired.0123456789abcdef".parse().expect("token");
    let data = [
        ("token-id", expired.id().to_owned()),
        ("token-secret", expired.secret().to_owned()),
        ("expiration", "2020-01-01T00:00:00Z".to_owned()),
        ("usage-bootstrap-authentication", "true".to_owned()),
        ("usage-bootstrap-signing", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{}", expired.id())),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data),
        ..Secret::default()
    };
    // The token cleaner may delete it at once; either way it must not work.
    let _ = admin.create(Some("kube-system"), &secret);
    let error = cairn_cluster::discovery::discover(&endpoint, &expired, &pin)
        .expect_err("an expired token must be refused")
        .to_string();
    assert!(
        error.contains("xpired") && error.contains("bootstrap token create"),
        "the expired-token error should name the token and the fix: {error}"
    );

    // A second node named like an existing one.
    let info = cairn_cluster::discovery::discover(&endpoint, &token, &pin)
        .unwrap_or_else(|e| panic!("discovery with the lab's token: {e}"));
    let error =
        cairn_cluster::tls_bootstrap::bootstrap(&info, &token, "node-2", Duration::from_secs(60))
            .expect_err("a duplicate node name must be refused")
            .to_string();
    assert!(
        error.contains("node-2") && error.contains("already"),
        "the duplicate-name error should name the node: {error}"
    );

    // The anonymous view of cluster-info is all a joiner gets before it
    // trusts the CA: nothing else is readable without credentials.
    let anonymous = KubeClient::new(
        &format!("https://{endpoint}"),
        ServerTrust::CaPem(ca_pem.into_bytes()),
        Credentials::Anonymous,
    )
    .expect("anonymous client");
    let (status, _) = anonymous
        .request("GET", "/api/v1/namespaces/kube-system/secrets", None)
        .expect("request");
    assert_eq!(status, 403, "anonymous callers must not list secrets");
}

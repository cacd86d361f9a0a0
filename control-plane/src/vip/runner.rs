//! The run loop: feeds the [`Machine`] and carries out its actions.
//!
//! One task owns the machine, the address and the status file; everything
//! that waits on the network runs in its own task and comes back as an
//! [`Event`] on one channel:
//!
//! - the health loop (a probe every `--health-interval`, changes only);
//! - per term, the lease grant, the keepalive loop and the campaign (the
//!   keepalive and campaign tasks are aborted when the term ends, then the
//!   lease is revoked in the background);
//! - the leader watcher (the election's leader every 250 ms, for the status
//!   file).
//!
//! The loop wakes at the machine's next deadline as well as on a 100 ms
//! tick, so the fencing deadline is honoured even when no event arrives.
//! While holding, each successful keepalive renews the address's kernel
//! lifetime (see [`super::address`]).
//! Removing the address is done inline (a netlink round trip), before
//! anything else of the same decision.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cairn_node_agent::net::host::LinuxNet;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::address::VipAddress;
use super::arp::{Announcer, parse_mac};
use super::election::{Election, EtcdSettings, connect};
use super::handoff::{self, TlsFiles};
use super::health::{HealthCheck, Verdict};
use super::machine::{Action, Event, LeaseId, Machine, MachineConfig};
use super::status::{Status, rfc3339_now, write_status};
use super::{VipArgs, VipError};

const TICK: Duration = Duration::from_millis(100);
const LEADER_POLL: Duration = Duration::from_millis(250);
/// How often the holder checks whether its etcd member became the leader.
const HANDOFF_INTERVAL: Duration = Duration::from_secs(2);
const ARP_BURST_GAP: Duration = Duration::from_millis(100);
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long shutdown waits for lease revocations.
const REVOKE_ON_EXIT: Duration = Duration::from_secs(2);

/// Runs until SIGTERM/SIGINT.
pub async fn run(args: &VipArgs) -> Result<(), VipError> {
    let ttl = Duration::from_secs(args.lease_ttl);
    let name = args.election_name();
    let health = HealthCheck::new(
        &args.health_url,
        args.health_cafile.as_deref(),
        args.health_timeout,
    )?;
    let client = connect(&EtcdSettings {
        servers: &args.etcd_servers,
        cafile: args.etcd_cafile.as_deref(),
        certfile: args.etcd_certfile.as_deref(),
        keyfile: args.etcd_keyfile.as_deref(),
    })
    .await?;
    let election = Election::new(client.clone(), &name, &args.node_name, ttl);
    let signal_error = |source| VipError::Runtime {
        what: "listening for SIGTERM/SIGINT",
        source,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;

    let mut vip = VipAddress::new(LinuxNet, &args.interface, args.address);
    // No process of ours holds a lease now, so an address on the interface
    // was left by an earlier run that died: it must go.
    match vip.remove() {
        Ok(true) => tracing::warn!(
            address = %args.address,
            interface = %args.interface,
            "removed a VIP left on the interface by an earlier run"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot check for a VIP left by an earlier run"),
    }
    let (events, mut incoming) = mpsc::channel::<Event>(64);
    let health_task = tokio::spawn(watch_health(
        health,
        args.health_interval,
        args.health_failures,
        events.clone(),
    ));
    let (leader_tx, mut leader_rx) = watch::channel::<Option<String>>(None);
    let leader_task = tokio::spawn(watch_leader(election.clone(), leader_tx));
    let (holding_tx, holding_rx) = watch::channel(false);
    let handoff_task = args.etcd_leader_handoff.then(|| {
        let tls = TlsFiles {
            cafile: args.etcd_cafile.clone(),
            certfile: args.etcd_certfile.clone(),
            keyfile: args.etcd_keyfile.clone(),
        };
        tokio::spawn(keep_etcd_leadership_elsewhere(client, tls, holding_rx))
    });

    tracing::info!(
        address = %args.address,
        interface = %args.interface,
        node = %args.node_name,
        election = %name,
        lease_ttl_seconds = args.lease_ttl,
        "VIP manager started"
    );
    let safety_margin = (ttl / 4).max(Duration::from_millis(250));
    // Expires about with the fencing deadline (whole seconds, at least one):
    // the kernel's backstop should this process die while holding.
    let address_lifetime = u32::try_from(ttl.saturating_sub(safety_margin).as_secs())
        .unwrap_or(u32::MAX)
        .max(1);
    let mut run = Runner {
        args,
        machine: Machine::new(MachineConfig {
            safety_margin,
            retry_delay: RETRY_DELAY,
        }),
        vip,
        election,
        events,
        terms: HashMap::new(),
        campaign_started: HashMap::new(),
        revokes: JoinSet::new(),
        announcer: None,
        burst: None,
        address_lifetime,
        status: None,
        observed_leader: None,
        holding: holding_tx,
    };
    run.publish_status();

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut arp_timer = tokio::time::interval(if args.arp_interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        args.arp_interval
    });
    arp_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut follow_ups: VecDeque<Event> = VecDeque::new();
    loop {
        let event = if let Some(event) = follow_ups.pop_front() {
            event
        } else {
            let deadline = run
                .machine
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or(far_future);
            tokio::select! {
                biased;
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: releasing and exiting");
                    Event::Shutdown
                }
                _ = sigint.recv() => {
                    tracing::info!("SIGINT: releasing and exiting");
                    Event::Shutdown
                }
                () = tokio::time::sleep_until(deadline) => Event::Tick,
                Some(event) = incoming.recv() => event,
                Ok(()) = leader_rx.changed() => {
                    run.observed_leader = leader_rx.borrow_and_update().clone();
                    run.publish_status();
                    continue;
                }
                _ = arp_timer.tick() => {
                    if !args.arp_interval.is_zero() && run.machine.is_holding() {
                        run.announce_once();
                    }
                    continue;
                }
                _ = tick.tick() => Event::Tick,
            }
        };
        log_event(&event);
        let renews = matches!(event, Event::KeepaliveOk { .. });
        let actions = run.machine.handle(event, std::time::Instant::now());
        if renews && run.machine.is_holding() {
            run.renew_address();
        }
        let mut exit = false;
        for action in actions {
            match run.execute(action) {
                Some(Outcome::Exit) => exit = true,
                Some(Outcome::FollowUp(event)) => follow_ups.push_back(event),
                None => {}
            }
        }
        run.publish_status();
        if exit {
            break;
        }
    }
    health_task.abort();
    leader_task.abort();
    if let Some(task) = handoff_task {
        task.abort();
    }
    let _ = tokio::time::timeout(REVOKE_ON_EXIT, async {
        while run.revokes.join_next().await.is_some() {}
    })
    .await;
    tracing::info!("VIP manager stopped");
    Ok(())
}

fn log_event(event: &Event) {
    match event {
        Event::Tick => {}
        Event::KeepaliveOk { lease, ttl, .. } => {
            tracing::trace!(lease = format!("{lease:x}"), ?ttl, "keepalive ok");
        }
        Event::HealthChanged { healthy } => {
            tracing::info!(healthy, "health changed");
        }
        Event::LeaseGrantFailed { reason } => tracing::warn!(%reason, "lease grant failed"),
        Event::KeepaliveFailed { lease, reason } => {
            tracing::warn!(lease = format!("{lease:x}"), %reason, "lease keepalive failed");
        }
        Event::CampaignFailed { lease, reason } => {
            tracing::warn!(lease = format!("{lease:x}"), %reason, "campaign failed");
        }
        other => tracing::debug!(event = ?other, "event"),
    }
}

enum Outcome {
    Exit,
    FollowUp(Event),
}

struct Runner<'a> {
    args: &'a VipArgs,
    machine: Machine,
    vip: VipAddress<LinuxNet>,
    election: Election,
    events: mpsc::Sender<Event>,
    /// Keepalive and campaign tasks of each live term.
    terms: HashMap<LeaseId, Vec<JoinHandle<()>>>,
    campaign_started: HashMap<LeaseId, Instant>,
    revokes: JoinSet<()>,
    announcer: Option<Arc<Announcer>>,
    burst: Option<JoinHandle<()>>,
    /// Valid lifetime of the address in seconds, renewed by keepalives.
    address_lifetime: u32,
    /// The last status written: (holder, leader).
    status: Option<(bool, Option<String>)>,
    observed_leader: Option<String>,
    /// Whether the address is held, for the etcd leadership hand-off.
    holding: watch::Sender<bool>,
}

impl Runner<'_> {
    fn execute(&mut self, action: Action) -> Option<Outcome> {
        match action {
            Action::GrantLease => {
                let election = self.election.clone();
                let events = self.events.clone();
                tokio::spawn(async move {
                    let _ = events.send(election.grant().await).await;
                });
                None
            }
            Action::Campaign { lease } => {
                tracing::debug!(lease = format!("{lease:x}"), "campaigning");
                self.campaign_started.insert(lease, Instant::now());
                let keepalive = {
                    let election = self.election.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move { election.keep_alive(lease, events).await })
                };
                let campaign = {
                    let election = self.election.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let _ = events.send(election.campaign(lease).await).await;
                    })
                };
                self.terms.insert(lease, vec![keepalive, campaign]);
                None
            }
            Action::AddAddress => self.acquire(),
            Action::RemoveAddress { reason, held_for } => {
                if let Some(burst) = self.burst.take() {
                    burst.abort();
                }
                self.announcer = None;
                match self.vip.remove() {
                    Ok(_) => tracing::info!(
                        address = %self.args.address,
                        interface = %self.args.interface,
                        %reason,
                        held_for_ms = held_for.as_millis() as u64,
                        "released VIP"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        %reason,
                        "releasing the VIP failed"
                    ),
                }
                None
            }
            Action::RevokeLease { lease } => {
                for task in self.terms.remove(&lease).unwrap_or_default() {
                    task.abort();
                }
                self.campaign_started.remove(&lease);
                let election = self.election.clone();
                self.revokes.spawn(async move {
                    match election.revoke(lease).await {
                        Ok(()) => tracing::debug!(lease = format!("{lease:x}"), "lease revoked"),
                        Err(reason) => tracing::warn!(
                            lease = format!("{lease:x}"),
                            %reason,
                            "revoking the lease failed (it expires by itself)"
                        ),
                    }
                });
                // Forget finished revocations.
                while self.revokes.try_join_next().is_some() {}
                None
            }
            Action::Exit => {
                // Nobody keeps the last observation current after this.
                self.observed_leader = None;
                Some(Outcome::Exit)
            }
        }
    }

    /// Adds the address and starts the announcement burst.
    fn acquire(&mut self) -> Option<Outcome> {
        let link = match self.vip.add(Some(self.address_lifetime)) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "adding the VIP failed");
                return Some(Outcome::FollowUp(Event::AddressFailed {
                    reason: e.to_string(),
                }));
            }
        };
        let lease = self.machine.lease();
        let waited = lease
            .and_then(|l| self.campaign_started.get(&l))
            .map(|started| started.elapsed());
        tracing::info!(
            address = %self.args.address,
            interface = %self.args.interface,
            lease = lease.map(|l| format!("{l:x}")),
            campaigned_ms = waited.map(|w| w.as_millis() as u64),
            "acquired VIP"
        );
        self.announcer = match link.mac.as_deref().and_then(parse_mac) {
            Some(mac) => {
                match Announcer::new(&self.args.interface, link.index, mac, self.args.address) {
                    Ok(announcer) => Some(Arc::new(announcer)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the VIP is not announced");
                        None
                    }
                }
            }
            None => {
                tracing::warn!(
                    interface = %self.args.interface,
                    "the interface has no MAC address: the VIP is not announced"
                );
                None
            }
        };
        if let Some(announcer) = self.announcer.clone() {
            let count = self.args.arp_burst;
            self.burst = Some(tokio::spawn(async move {
                for sent in 0..count {
                    if sent > 0 {
                        tokio::time::sleep(ARP_BURST_GAP).await;
                    }
                    if let Err(e) = announcer.announce() {
                        tracing::warn!(error = %e, "announcing the VIP failed");
                    }
                }
            }));
        }
        None
    }

    /// Renews the address's lifetime after a successful keepalive.
    fn renew_address(&mut self) {
        if let Err(e) = self.vip.add(Some(self.address_lifetime)) {
            tracing::warn!(error = %e, "renewing the VIP's lifetime failed");
        }
    }

    fn announce_once(&self) {
        if let Some(announcer) = &self.announcer
            && let Err(e) = announcer.announce()
        {
            tracing::warn!(error = %e, "periodic announcement of the VIP failed");
        }
    }

    /// Rewrites the status file when holder or leader changed.
    fn publish_status(&mut self) {
        let holder = self.machine.is_holding();
        self.holding
            .send_if_modified(|held| std::mem::replace(held, holder) != holder);
        let leader = if holder {
            Some(self.args.node_name.clone())
        } else {
            self.observed_leader.clone()
        };
        let current = (holder, leader.clone());
        if self.status.as_ref() == Some(&current) {
            return;
        }
        let status = Status {
            address: self.args.address,
            interface: self.args.interface.clone(),
            node: self.args.node_name.clone(),
            holder,
            leader,
            since: rfc3339_now(),
            lease_ttl_seconds: self.args.lease_ttl,
        };
        match write_status(&self.args.status_file, &status) {
            Ok(()) => {
                tracing::debug!(holder, leader = ?status.leader, "status written");
                self.status = Some(current);
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the status file"),
        }
    }
}

/// Probes every `interval`, reporting changes of the verdict.
async fn watch_health(
    check: HealthCheck,
    interval: Duration,
    threshold: u32,
    events: mpsc::Sender<Event>,
) {
    let mut verdict = Verdict::new(threshold);
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = check.probe().await;
        if let Some(healthy) = verdict.record(result.is_ok()) {
            match &result {
                Ok(()) => tracing::info!("health check passes"),
                Err(reason) => tracing::warn!(%reason, "health check fails"),
            }
            if events.send(Event::HealthChanged { healthy }).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps `leader` current with the election's leader.
async fn watch_leader(election: Election, leader: watch::Sender<Option<String>>) {
    let mut ticker = tokio::time::interval(LEADER_POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let observed = match election.leader().await {
            Ok(observed) => observed,
            Err(reason) => {
                tracing::debug!(%reason, "cannot ask etcd for the leader");
                None
            }
        };
        leader.send_if_modified(|current| {
            if *current == observed {
                false
            } else {
                tracing::info!(leader = ?observed, "election leader changed");
                *current = observed;
                true
            }
        });
    }
}

/// While the address is held, moves etcd's leadership away from the local
/// member whenever it has it (see [`handoff`]).
async fn keep_etcd_leadership_elsewhere(
    client: etcd_client::Client,
    tls: TlsFiles,
    mut holding: watch::Receiver<bool>,
) {
    let mut last_problem: Option<String> = None;
    loop {
        if holding.wait_for(|held| *held).await.is_err() {
            return;
        }
        match handoff::hand_off(&client, &tls).await {
            Ok(handoff::Outcome::Moved { to }) => {
                last_problem = None;
                tracing::info!(
                    to = %to,
                    "moved etcd leadership off the VIP holder, so losing this machine costs no etcd election"
                );
            }
            Ok(handoff::Outcome::NotLeader | handoff::Outcome::NoSuccessor) => last_problem = None,
            Err(reason) => {
                if last_problem.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(%reason, "cannot hand etcd leadership to a peer");
                }
                last_problem = Some(reason);
            }
        }
        tokio::time::sleep(HANDOFF_INTERVAL).await;
    }
}

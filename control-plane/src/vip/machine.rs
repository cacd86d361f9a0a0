//! The VIP decision logic, sans-IO.
//!
//! [`Machine`] is fed [`Event`]s (health changes, lease and election
//! results, clock ticks, shutdown) together with the current time and
//! answers with [`Action`]s for the run loop to carry out (grant a lease,
//! campaign, add or remove the address, revoke a lease, exit). It reads no
//! clock and touches neither etcd nor the network, so every rule below is
//! unit-tested with made-up times.
//!
//! The rules:
//!
//! - A node campaigns only while its local health check passes. Each
//!   campaign is a *term* with its own etcd lease: losing a term for any
//!   reason revokes its lease (which deletes the election key, so the next
//!   candidate wins at once) and, while still healthy, starts a new term.
//! - **Fencing.** The lease's local deadline is `time the last successful
//!   keepalive was sent + TTL - safety margin`. etcd refreshed the lease no
//!   earlier than that send, so it cannot expire (and nobody else can win)
//!   before the deadline. The address is never held past it, even when
//!   etcd is unreachable and nothing else happens: the run loop wakes up at
//!   [`Machine::next_deadline`].
//! - The address is removed before the lease is revoked, so two nodes never
//!   hold it at once.
//! - Shutdown releases the address and the lease and then exits.

use std::fmt;
use std::time::{Duration, Instant};

/// An etcd lease id.
pub type LeaseId = i64;

/// Why the address was released (or a term ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The local health check failed.
    Unhealthy,
    /// A lease keepalive failed or etcd said the lease is gone.
    KeepaliveFailed,
    /// The fencing deadline passed without a successful keepalive.
    LeaseDeadline,
    /// The address could not be added to the interface.
    AddressFailed,
    /// SIGTERM or SIGINT.
    Shutdown,
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unhealthy => "health check failed",
            Self::KeepaliveFailed => "lease keepalive failed",
            Self::LeaseDeadline => "lease deadline passed without a keepalive",
            Self::AddressFailed => "adding the address failed",
            Self::Shutdown => "shutting down",
        })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The local health check changed its verdict.
    HealthChanged { healthy: bool },
    /// etcd granted `lease` for a request sent at `requested_at`.
    LeaseGranted {
        lease: LeaseId,
        ttl: Duration,
        requested_at: Instant,
    },
    /// Granting a lease failed (etcd unreachable, ...).
    LeaseGrantFailed { reason: String },
    /// A keepalive sent at `sent_at` was answered with a live lease.
    KeepaliveOk {
        lease: LeaseId,
        ttl: Duration,
        sent_at: Instant,
    },
    /// A keepalive failed, timed out or found the lease gone.
    KeepaliveFailed { lease: LeaseId, reason: String },
    /// The campaign of `lease` won the election.
    Elected { lease: LeaseId },
    /// The campaign of `lease` failed (not: is still waiting).
    CampaignFailed { lease: LeaseId, reason: String },
    /// Adding the address to the interface failed.
    AddressFailed { reason: String },
    /// Time passed.
    Tick,
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// What the run loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Grant a lease and report [`Event::LeaseGranted`] or
    /// [`Event::LeaseGrantFailed`].
    GrantLease,
    /// Keep `lease` alive and campaign with it; report
    /// [`Event::KeepaliveOk`]/[`Event::KeepaliveFailed`] and
    /// [`Event::Elected`]/[`Event::CampaignFailed`].
    Campaign { lease: LeaseId },
    /// Add the address and announce it (gratuitous ARP).
    AddAddress,
    /// Remove the address from the interface now.
    RemoveAddress {
        reason: ReleaseReason,
        held_for: Duration,
    },
    /// Stop keeping `lease` alive and revoke it (deleting its election key).
    RevokeLease { lease: LeaseId },
    /// Leave the run loop (after the actions before this one).
    Exit,
}

/// Tunables of the decision logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Subtracted from the lease TTL for the fencing deadline: covers clock
    /// rate differences and the time to remove the address.
    pub safety_margin: Duration,
    /// Wait before the next term after a failed grant or campaign.
    pub retry_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No lease; a new term starts when healthy and `retry_at` has passed.
    Standby { retry_at: Option<Instant> },
    /// A lease was asked for.
    Granting,
    /// Campaigning with a live lease.
    Campaigning { lease: LeaseId, deadline: Instant },
    /// Elected and holding the address.
    Holding {
        lease: LeaseId,
        deadline: Instant,
        since: Instant,
    },
    /// Shut down: nothing more happens.
    Stopped,
}

/// The decision state machine (see the module documentation).
#[derive(Debug, Clone)]
pub struct Machine {
    config: MachineConfig,
    healthy: bool,
    phase: Phase,
}

impl Machine {
    /// A machine that is unhealthy (until told otherwise) and holds nothing.
    pub fn new(config: MachineConfig) -> Self {
        Self {
            config,
            healthy: false,
            phase: Phase::Standby { retry_at: None },
        }
    }

    /// Whether the address is (to be) on the interface.
    pub fn is_holding(&self) -> bool {
        matches!(self.phase, Phase::Holding { .. })
    }

    /// Whether the last health verdict was healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// The lease of the current term.
    pub fn lease(&self) -> Option<LeaseId> {
        match self.phase {
            Phase::Campaigning { lease, .. } | Phase::Holding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// The next moment a [`Event::Tick`] must be delivered: the fencing
    /// deadline or the retry time.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Campaigning { deadline, .. } | Phase::Holding { deadline, .. } => Some(deadline),
            Phase::Standby { retry_at } if self.healthy => retry_at,
            _ => None,
        }
    }

    /// Feeds one event observed at `now`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        if self.phase == Phase::Stopped {
            // A lease granted after shutdown must not outlive us.
            return match event {
                Event::LeaseGranted { lease, .. } => vec![Action::RevokeLease { lease }],
                _ => Vec::new(),
            };
        }
        match event {
            Event::HealthChanged { healthy } => {
                self.healthy = healthy;
                if healthy {
                    self.start_term_if_due(now)
                } else {
                    self.end_term(ReleaseReason::Unhealthy, now, None)
                }
            }
            Event::LeaseGranted {
                lease,
                ttl,
                requested_at,
            } => {
                if self.phase != Phase::Granting || !self.healthy {
                    return vec![Action::RevokeLease { lease }];
                }
                let deadline = self.deadline_from(requested_at, ttl);
                if deadline <= now {
                    // The grant took longer than the lease is safe for.
                    self.phase = Phase::Standby {
                        retry_at: Some(now + self.config.retry_delay),
                    };
                    return vec![Action::RevokeLease { lease }];
                }
                self.phase = Phase::Campaigning { lease, deadline };
                vec![Action::Campaign { lease }]
            }
            Event::LeaseGrantFailed { .. } => {
                if self.phase == Phase::Granting {
                    self.phase = Phase::Standby {
                        retry_at: Some(now + self.config.retry_delay),
                    };
                }
                Vec::new()
            }
            Event::KeepaliveOk {
                lease,
                ttl,
                sent_at,
            } => {
                let extended = self.deadline_from(sent_at, ttl);
                match &mut self.phase {
                    Phase::Campaigning {
                        lease: current,
                        deadline,
                    }
                    | Phase::Holding {
                        lease: current,
                        deadline,
                        ..
                    } if *current == lease => {
                        *deadline = (*deadline).max(extended);
                    }
                    _ => {}
                }
                Vec::new()
            }
            Event::KeepaliveFailed { lease, .. } => {
                if self.lease() != Some(lease) {
                    return Vec::new();
                }
                let mut actions = self.end_term(ReleaseReason::KeepaliveFailed, now, None);
                actions.extend(self.start_term_if_due(now));
                actions
            }
            Event::Elected { lease } => match self.phase {
                Phase::Campaigning {
                    lease: current,
                    deadline,
                } if current == lease => {
                    if now < deadline {
                        self.phase = Phase::Holding {
                            lease,
                            deadline,
                            since: now,
                        };
                        vec![Action::AddAddress]
                    } else {
                        let mut actions = self.end_term(ReleaseReason::LeaseDeadline, now, None);
                        actions.extend(self.start_term_if_due(now));
                        actions
                    }
                }
                _ => Vec::new(),
            },
            Event::CampaignFailed { lease, .. } => {
                if self.lease() != Some(lease) {
                    return Vec::new();
                }
                self.end_term(
                    ReleaseReason::KeepaliveFailed,
                    now,
                    Some(now + self.config.retry_delay),
                )
            }
            Event::AddressFailed { .. } => {
                if !self.is_holding() {
                    return Vec::new();
                }
                self.end_term(
                    ReleaseReason::AddressFailed,
                    now,
                    Some(now + self.config.retry_delay),
                )
            }
            Event::Tick => match self.phase {
                Phase::Campaigning { deadline, .. } | Phase::Holding { deadline, .. }
                    if now >= deadline =>
                {
                    let mut actions = self.end_term(ReleaseReason::LeaseDeadline, now, None);
                    actions.extend(self.start_term_if_due(now));
                    actions
                }
                Phase::Standby { .. } => self.start_term_if_due(now),
                _ => Vec::new(),
            },
            Event::Shutdown => {
                let mut actions = self.end_term(ReleaseReason::Shutdown, now, None);
                self.phase = Phase::Stopped;
                actions.push(Action::Exit);
                actions
            }
        }
    }

    fn deadline_from(&self, sent_at: Instant, ttl: Duration) -> Instant {
        sent_at + ttl.saturating_sub(self.config.safety_margin)
    }

    /// Ends the current term: address first, then the lease.
    fn end_term(
        &mut self,
        reason: ReleaseReason,
        now: Instant,
        retry_at: Option<Instant>,
    ) -> Vec<Action> {
        let actions = match self.phase {
            Phase::Holding { lease, since, .. } => vec![
                Action::RemoveAddress {
                    reason,
                    held_for: now.saturating_duration_since(since),
                },
                Action::RevokeLease { lease },
            ],
            Phase::Campaigning { lease, .. } => vec![Action::RevokeLease { lease }],
            Phase::Standby { retry_at } => {
                // Keep a pending retry time.
                self.phase = Phase::Standby { retry_at };
                return Vec::new();
            }
            Phase::Granting | Phase::Stopped => Vec::new(),
        };
        self.phase = Phase::Standby { retry_at };
        actions
    }

    fn start_term_if_due(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Standby { retry_at } if self.healthy => {
                if retry_at.is_some_and(|at| now < at) {
                    return Vec::new();
                }
                self.phase = Phase::Granting;
                vec![Action::GrantLease]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_millis(500);

    fn machine() -> Machine {
        Machine::new(MachineConfig {
            safety_margin: MARGIN,
            retry_delay: Duration::from_secs(1),
        })
    }

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    /// Healthy, lease 7 granted at `start`, elected at +10 ms.
    fn holding(start: Instant) -> Machine {
        let mut m = machine();
        assert_eq!(
            m.handle(Event::HealthChanged { healthy: true }, start),
            vec![Action::GrantLease]
        );
        assert_eq!(
            m.handle(
                Event::LeaseGranted {
                    lease: 7,
                    ttl: TTL,
                    requested_at: start
                },
                ms(start, 5)
            ),
            vec![Action::Campaign { lease: 7 }]
        );
        assert_eq!(
            m.handle(Event::Elected { lease: 7 }, ms(start, 10)),
            vec![Action::AddAddress]
        );
        assert!(m.is_holding());
        m
    }

    #[test]
    fn does_not_campaign_while_unhealthy() {
        let start = Instant::now();
        let mut m = machine();
        assert!(m.handle(Event::Tick, start).is_empty());
        assert!(
            m.handle(Event::HealthChanged { healthy: false }, start)
                .is_empty()
        );
        // A lease that shows up anyway is revoked, never campaigned with.
        assert_eq!(
            m.handle(
                Event::LeaseGranted {
                    lease: 3,
                    ttl: TTL,
                    requested_at: start
                },
                start
            ),
            vec![Action::RevokeLease { lease: 3 }]
        );
        assert!(!m.is_holding());
    }

    #[test]
    fn never_holds_while_unhealthy() {
        let start = Instant::now();
        let mut m = holding(start);
        assert_eq!(
            m.handle(Event::HealthChanged { healthy: false }, ms(start, 100)),
            vec![
                Action::RemoveAddress {
                    reason: ReleaseReason::Unhealthy,
                    held_for: Duration::from_millis(90)
                },
                Action::RevokeLease { lease: 7 }
            ]
        );
        assert!(!m.is_holding());
        // A late election result of the ended term changes nothing.
        assert!(
            m.handle(Event::Elected { lease: 7 }, ms(start, 120))
                .is_empty()
        );
        assert!(m.handle(Event::Tick, ms(start, 5000)).is_empty());
        assert!(!m.is_holding());
    }

    #[test]
    fn unhealthy_while_granting_revokes_the_late_lease() {
        let start = Instant::now();
        let mut m = machine();
        m.handle(Event::HealthChanged { healthy: true }, start);
        m.handle(Event::HealthChanged { healthy: false }, ms(start, 1));
        assert_eq!(
            m.handle(
                Event::LeaseGranted {
                    lease: 9,
                    ttl: TTL,
                    requested_at: start
                },
                ms(start, 2)
            ),
            vec![Action::RevokeLease { lease: 9 }]
        );
    }

    #[test]
    fn fencing_deadline_releases_without_keepalive() {
        let start = Instant::now();
        let mut m = holding(start);
        assert_eq!(m.next_deadline(), Some(start + TTL - MARGIN));
        assert!(m.handle(Event::Tick, ms(start, 1499)).is_empty());
        assert!(m.is_holding());
        let actions = m.handle(Event::Tick, ms(start, 1500));
        assert_eq!(
            actions[..2],
            [
                Action::RemoveAddress {
                    reason: ReleaseReason::LeaseDeadline,
                    held_for: Duration::from_millis(1490)
                },
                Action::RevokeLease { lease: 7 }
            ]
        );
        // Still healthy: a new term starts right away.
        assert_eq!(actions[2..], [Action::GrantLease]);
        assert!(!m.is_holding());
    }

    #[test]
    fn keepalive_extends_the_deadline_from_its_send_time() {
        let start = Instant::now();
        let mut m = holding(start);
        m.handle(
            Event::KeepaliveOk {
                lease: 7,
                ttl: TTL,
                sent_at: ms(start, 600),
            },
            // The answer came late: the deadline still counts from the send.
            ms(start, 1200),
        );
        assert_eq!(m.next_deadline(), Some(ms(start, 2100)));
        assert!(m.handle(Event::Tick, ms(start, 2000)).is_empty());
        assert!(m.is_holding());
        // An older answer never moves the deadline back.
        m.handle(
            Event::KeepaliveOk {
                lease: 7,
                ttl: TTL,
                sent_at: ms(start, 100),
            },
            ms(start, 2001),
        );
        assert_eq!(m.next_deadline(), Some(ms(start, 2100)));
        assert!(!m.handle(Event::Tick, ms(start, 2100)).is_empty());
        assert!(!m.is_holding());
    }

    #[test]
    fn keepalive_of_another_lease_is_ignored() {
        let start = Instant::now();
        let mut m = holding(start);
        m.handle(
            Event::KeepaliveOk {
                lease: 8,
                ttl: TTL,
                sent_at: ms(start, 1000),
            },
            ms(start, 1000),
        );
        assert_eq!(m.next_deadline(), Some(ms(start, 1500)));
        assert!(
            m.handle(
                Event::KeepaliveFailed {
                    lease: 8,
                    reason: "gone".into()
                },
                ms(start, 1000)
            )
            .is_empty()
        );
        assert!(m.is_holding());
    }

    #[test]
    fn elected_after_the_deadline_does_not_hold() {
        let start = Instant::now();
        let mut m = machine();
        m.handle(Event::HealthChanged { healthy: true }, start);
        m.handle(
            Event::LeaseGranted {
                lease: 4,
                ttl: TTL,
                requested_at: start,
            },
            start,
        );
        let actions = m.handle(Event::Elected { lease: 4 }, ms(start, 1600));
        assert_eq!(
            actions,
            vec![Action::RevokeLease { lease: 4 }, Action::GrantLease]
        );
        assert!(!m.is_holding());
    }

    #[test]
    fn keepalive_failure_releases_and_recampaigns() {
        let start = Instant::now();
        let mut m = holding(start);
        let actions = m.handle(
            Event::KeepaliveFailed {
                lease: 7,
                reason: "lease not found".into(),
            },
            ms(start, 300),
        );
        assert_eq!(
            actions,
            vec![
                Action::RemoveAddress {
                    reason: ReleaseReason::KeepaliveFailed,
                    held_for: Duration::from_millis(290)
                },
                Action::RevokeLease { lease: 7 },
                Action::GrantLease
            ]
        );
        // The new term campaigns and can win again.
        assert_eq!(
            m.handle(
                Event::LeaseGranted {
                    lease: 11,
                    ttl: TTL,
                    requested_at: ms(start, 300)
                },
                ms(start, 310)
            ),
            vec![Action::Campaign { lease: 11 }]
        );
        assert_eq!(
            m.handle(Event::Elected { lease: 11 }, ms(start, 320)),
            vec![Action::AddAddress]
        );
    }

    #[test]
    fn recampaigns_after_health_returns_and_after_failed_grants() {
        let start = Instant::now();
        let mut m = holding(start);
        m.handle(Event::HealthChanged { healthy: false }, ms(start, 100));
        assert_eq!(
            m.handle(Event::HealthChanged { healthy: true }, ms(start, 200)),
            vec![Action::GrantLease]
        );
        m.handle(
            Event::LeaseGrantFailed {
                reason: "etcd unreachable".into(),
            },
            ms(start, 300),
        );
        assert_eq!(m.next_deadline(), Some(ms(start, 1300)));
        assert!(m.handle(Event::Tick, ms(start, 1000)).is_empty());
        assert_eq!(
            m.handle(Event::Tick, ms(start, 1300)),
            vec![Action::GrantLease]
        );
    }

    #[test]
    fn campaign_failure_retries_later() {
        let start = Instant::now();
        let mut m = machine();
        m.handle(Event::HealthChanged { healthy: true }, start);
        m.handle(
            Event::LeaseGranted {
                lease: 5,
                ttl: TTL,
                requested_at: start,
            },
            start,
        );
        assert_eq!(
            m.handle(
                Event::CampaignFailed {
                    lease: 5,
                    reason: "unavailable".into()
                },
                ms(start, 50)
            ),
            vec![Action::RevokeLease { lease: 5 }]
        );
        assert_eq!(
            m.handle(Event::Tick, ms(start, 1050)),
            vec![Action::GrantLease]
        );
    }

    #[test]
    fn shutdown_releases_then_exits() {
        let start = Instant::now();
        let mut m = holding(start);
        assert_eq!(
            m.handle(Event::Shutdown, ms(start, 50)),
            vec![
                Action::RemoveAddress {
                    reason: ReleaseReason::Shutdown,
                    held_for: Duration::from_millis(40)
                },
                Action::RevokeLease { lease: 7 },
                Action::Exit
            ]
        );
        assert!(!m.is_holding());
        // Nothing restarts after shutdown; a late lease is revoked.
        assert!(
            m.handle(Event::HealthChanged { healthy: true }, ms(start, 60))
                .is_empty()
        );
        assert_eq!(
            m.handle(
                Event::LeaseGranted {
                    lease: 12,
                    ttl: TTL,
                    requested_at: ms(start, 60)
                },
                ms(start, 70)
            ),
            vec![Action::RevokeLease { lease: 12 }]
        );
    }

    #[test]
    fn shutdown_while_campaigning_revokes() {
        let start = Instant::now();
        let mut m = machine();
        m.handle(Event::HealthChanged { healthy: true }, start);
        m.handle(
            Event::LeaseGranted {
                lease: 6,
                ttl: TTL,
                requested_at: start,
            },
            start,
        );
        assert_eq!(
            m.handle(Event::Shutdown, ms(start, 10)),
            vec![Action::RevokeLease { lease: 6 }, Action::Exit]
        );
    }

    #[test]
    fn address_failure_releases_and_retries() {
        let start = Instant::now();
        let mut m = holding(start);
        let actions = m.handle(
            Event::AddressFailed {
                reason: "no such device".into(),
            },
            ms(start, 20),
        );
        assert_eq!(
            actions,
            vec![
                Action::RemoveAddress {
                    reason: ReleaseReason::AddressFailed,
                    held_for: Duration::from_millis(10)
                },
                Action::RevokeLease { lease: 7 }
            ]
        );
        assert_eq!(m.next_deadline(), Some(ms(start, 1020)));
    }
}

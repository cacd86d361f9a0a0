//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for kube-controller-manager.
//!
//! Several control-plane nodes run the controller manager; only the holder
//! of `kube-system/kube-controller-manager` runs controllers. The lease is
//! taken when it does not exist, when its holder is empty (released), or
//! when its record has not changed for `leaseDurationSeconds` as measured
//! on *this* process's monotonic clock since it first saw that record
//! (clocks of different nodes are never compared). Every write is a create
//! or a replace with the resourceVersion just read, so of two candidates
//! racing for an expired lease exactly one wins (the other gets 409). The
//! holder renews every retry period; if it cannot renew within the renew
//! deadline it has lost the lease and must stop acting.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::api::{ApiError, ClusterApi};

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "kube-controller-manager";

/// Timing and identity of one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// `<hostname>_<random>`, unique per process.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The part of the Lease that changes hands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseRecord {
    holder: String,
    lease_duration_seconds: i32,
    acquire_time: Option<MicroTime>,
    renew_time: Option<MicroTime>,
    transitions: i32,
}

impl LeaseRecord {
    fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time,
            renew_time: spec.renew_time,
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    fn to_spec(&self, previous: Option<LeaseSpec>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.clone(),
            renew_time: self.renew_time.clone(),
            lease_transitions: Some(self.transitions),
            ..previous.unwrap_or_default()
        }
    }
}

/// One candidate's view of the election.
#[derive(Debug)]
pub struct LeaderElector {
    config: LeaseConfig,
    /// The last record seen and when (monotonic) it was first seen.
    observed: Option<(LeaseRecord, Instant)>,
}

impl LeaderElector {
    pub fn new(config: LeaseConfig) -> Self {
        Self {
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The holder of the lease as last observed.
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed.as_ref().map(|(r, _)| r.holder.as_str())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt: `Ok(true)` when this candidate holds the lease
    /// afterwards (acquired or renewed), `Ok(false)` when someone else
    /// validly holds it or won a race.
    pub fn try_acquire_or_renew(
        &mut self,
        api: &dyn ClusterApi,
        wall_now: Timestamp,
        now: Instant,
    ) -> Result<bool, ApiError> {
        let mut record = LeaseRecord {
            holder: self.config.identity.clone(),
            lease_duration_seconds: self.lease_seconds(),
            acquire_time: Some(MicroTime(wall_now)),
            renew_time: Some(MicroTime(wall_now)),
            transitions: 0,
        };
        let Some(mut lease) = api.get_lease(&self.config.namespace, &self.config.name)? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(record.to_spec(None)),
            };
            return match api.create_lease(&lease) {
                Ok(_) => {
                    self.observed = Some((record, now));
                    Ok(true)
                }
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = LeaseRecord::from_lease(&lease);
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == current => *at,
            _ => {
                self.observed = Some((current.clone(), now));
                now
            }
        };
        let held_by_other = !current.holder.is_empty() && current.holder != self.config.identity;
        let valid_for =
            Duration::from_secs(u64::try_from(current.lease_duration_seconds).unwrap_or(0));
        if held_by_other && now.saturating_duration_since(first_seen) < valid_for {
            return Ok(false);
        }
        if current.holder == self.config.identity {
            record.acquire_time = current.acquire_time.clone();
            record.transitions = current.transitions;
        } else {
            record.transitions = current.transitions.saturating_add(1);
        }
        lease.spec = Some(record.to_spec(lease.spec.take()));
        match api.replace_lease(&lease) {
            Ok(_) => {
                self.observed = Some((record, now));
                Ok(true)
            }
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (empty holder, 1 s duration) so another
    /// candidate can take over at once instead of waiting for expiry.
    pub fn release(&mut self, api: &dyn ClusterApi, wall_now: Timestamp) -> Result<(), ApiError> {
        let Some(mut lease) = api.get_lease(&self.config.namespace, &self.config.name)? else {
            return Ok(());
        };
        let current = LeaseRecord::from_lease(&lease);
        if current.holder != self.config.identity {
            return Ok(());
        }
        let released = LeaseRecord {
            holder: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(MicroTime(wall_now)),
            renew_time: Some(MicroTime(wall_now)),
            transitions: current.transitions,
        };
        lease.spec = Some(released.to_spec(lease.spec.take()));
        api.replace_lease(&lease).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::FakeApi;

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: LEASE_NAMESPACE.into(),
            name: LEASE_NAME.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn attempt(elector: &mut LeaderElector, api: &FakeApi, at: Instant) -> bool {
        elector
            .try_acquire_or_renew(api, crate::controllers::api::timestamp_now(), at)
            .expect("lease call")
    }

    fn holder(api: &FakeApi) -> String {
        api.lease()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    }

    #[test]
    fn one_leader_and_takeover_after_expiry() {
        let api = FakeApi::default();
        let mut a = LeaderElector::new(config("a"));
        let mut b = LeaderElector::new(config("b"));
        let start = Instant::now();
        assert!(attempt(&mut a, &api, start), "a creates the lease");
        assert!(!attempt(&mut b, &api, start), "b sees a valid lease");
        assert!(
            attempt(&mut a, &api, start + Duration::from_secs(2)),
            "a renews"
        );
        assert_eq!(holder(&api), "a");
        // b keeps seeing renewals: the record changes, so its clock restarts.
        assert!(!attempt(&mut b, &api, start + Duration::from_secs(16)));
        // a stops renewing; 15 s after b first saw the last record, b takes over.
        assert!(!attempt(&mut b, &api, start + Duration::from_secs(30)));
        assert!(attempt(&mut b, &api, start + Duration::from_secs(32)));
        assert_eq!(holder(&api), "b");
        let transitions = api
            .lease()
            .and_then(|l| l.spec)
            .and_then(|s| s.lease_transitions);
        assert_eq!(transitions, Some(1));
        // a comes back and may not take it while b renews.
        assert!(!attempt(&mut a, &api, start + Duration::from_secs(33)));
    }

    #[test]
    fn release_lets_the_other_take_over_at_once() {
        let api = FakeApi::default();
        let mut a = LeaderElector::new(config("a"));
        let mut b = LeaderElector::new(config("b"));
        let start = Instant::now();
        assert!(attempt(&mut a, &api, start));
        assert!(!attempt(&mut b, &api, start));
        a.release(&api, crate::controllers::api::timestamp_now())
            .expect("release");
        assert_eq!(holder(&api), "");
        assert!(attempt(&mut b, &api, start + Duration::from_secs(1)));
        assert_eq!(holder(&api), "b");
    }

    #[test]
    fn a_lost_race_is_not_an_error() {
        let api = FakeApi::default();
        let mut a = LeaderElector::new(config("a"));
        let start = Instant::now();
        api.fail_next_lease_write_with_conflict();
        assert!(!attempt(&mut a, &api, start));
        assert!(attempt(&mut a, &api, start));
    }
}

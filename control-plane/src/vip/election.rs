//! The etcd side: leases, their keepalives, the campaign and the observed
//! leader, through etcd's election service (`v3election`, the server-side
//! implementation of `concurrency.Election` that Talos's VIP also uses).
//!
//! A campaign puts `<election name>/<lease id in hex>` (value: the node
//! name) attached to the term's lease and returns once that key has the
//! lowest create revision under the election name, i.e. when every earlier
//! candidate's key is gone. Keys vanish when their lease is revoked (a
//! clean release) or expires (a crashed or cut-off holder), so a crash
//! fails over after the rest of the holder's TTL. Revoking the lease is
//! this crate's "resign": it deletes the key and ends the lease in one
//! call.
//!
//! Each operation reports its outcome as a [`machine::Event`]; the decision
//! what to do about it is [`machine::Machine`]'s.
//!
//! [`machine::Event`]: super::machine::Event
//! [`machine::Machine`]: super::machine::Machine

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::VipError;
use super::machine::{Event, LeaseId};

/// Where etcd is and how to authenticate.
#[derive(Debug, Clone)]
pub struct EtcdSettings<'a> {
    pub servers: &'a str,
    pub cafile: Option<&'a Path>,
    pub certfile: Option<&'a Path>,
    pub keyfile: Option<&'a Path>,
}

/// Connects (lazily: the first request dials) to the etcd endpoints.
pub async fn connect(settings: &EtcdSettings<'_>) -> Result<Client, VipError> {
    let endpoints: Vec<&str> = settings
        .servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    connect_to(settings, &endpoints, Duration::from_secs(2)).await
}

/// Connects to `endpoints` with the TLS material of `settings`, giving up
/// on a dial after `connect_timeout`.
pub async fn connect_to(
    settings: &EtcdSettings<'_>,
    endpoints: &[&str],
    connect_timeout: Duration,
) -> Result<Client, VipError> {
    let invalid = |reason: String| VipError::Etcd {
        servers: endpoints.join(","),
        reason,
    };
    if endpoints.is_empty() {
        return Err(invalid("no etcd server given".to_owned()));
    }
    if let Some(bad) = endpoints
        .iter()
        .find(|e| !(e.starts_with("https://") || e.starts_with("http://")))
    {
        return Err(invalid(format!(
            "etcd server {bad:?} must start with https:// or http://"
        )));
    }
    let read = |path: Option<&Path>| -> Result<Option<Vec<u8>>, VipError> {
        path.map(|path| {
            std::fs::read(path).map_err(|e| invalid(format!("reading {}: {e}", path.display())))
        })
        .transpose()
    };
    let ca = read(settings.cafile)?;
    let cert = read(settings.certfile)?;
    let key = read(settings.keyfile)?;
    let mut options = ConnectOptions::new()
        .with_connect_timeout(connect_timeout)
        // Notice a dead connection quickly; a partitioned member without a
        // leader must answer with an error instead of serving stale state.
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if endpoints.iter().any(|e| e.starts_with("https://")) {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        match (&cert, &key) {
            (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "--etcd-certfile and --etcd-keyfile go together".to_owned(),
                ));
            }
        }
        options = options.with_tls(tls);
    }
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| invalid(format!("connecting: {e}")))
}

/// One node's view of one election.
#[derive(Clone)]
pub struct Election {
    client: Client,
    name: String,
    node: String,
    ttl: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Election {
    pub fn new(client: Client, name: &str, node: &str, ttl: Duration) -> Self {
        Self {
            client,
            name: name.to_owned(),
            node: node.to_owned(),
            ttl,
            request_timeout: Duration::from_secs(2),
        }
    }

    /// Grants a lease for a new term.
    pub async fn grant(&self) -> Event {
        let requested_at = Instant::now();
        let ttl_seconds = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        match timeout(self.request_timeout, client.lease_grant(ttl_seconds, None)).await {
            Ok(Ok(granted)) if granted.ttl() > 0 => Event::LeaseGranted {
                lease: granted.id(),
                // etcd raises a TTL below its minimum: use what it granted.
                ttl: Duration::from_secs(granted.ttl().unsigned_abs()),
                requested_at: requested_at.into_std(),
            },
            Ok(Ok(granted)) => Event::LeaseGrantFailed {
                reason: format!(
                    "etcd granted lease {:x} with TTL {}",
                    granted.id(),
                    granted.ttl()
                ),
            },
            Ok(Err(e)) => Event::LeaseGrantFailed {
                reason: format!("granting a {ttl_seconds}s lease: {e}"),
            },
            Err(_) => Event::LeaseGrantFailed {
                reason: format!(
                    "granting a {ttl_seconds}s lease: no answer within {:?}",
                    self.request_timeout
                ),
            },
        }
    }

    /// Keeps `lease` alive every TTL/4 until a keepalive fails, reporting
    /// each answer. An answer that does not come within the TTL is a
    /// failure (the fencing deadline has passed by then anyway).
    pub async fn keep_alive(&self, lease: LeaseId, events: mpsc::Sender<Event>) {
        let interval = (self.ttl / 4).max(Duration::from_millis(100));
        let failed = |reason: String| Event::KeepaliveFailed { lease, reason };
        let mut client = self.client.clone();
        let (mut keeper, mut answers) =
            match timeout(self.ttl, client.lease_keep_alive(lease)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    let _ = events
                        .send(failed(format!("opening the keepalive stream: {e}")))
                        .await;
                    return;
                }
                Err(_) => {
                    let _ = events
                        .send(failed("opening the keepalive stream timed out".to_owned()))
                        .await;
                    return;
                }
            };
        loop {
            let sent_at = Instant::now();
            let outcome = match keeper.keep_alive().await {
                Err(e) => Err(format!("sending a keepalive: {e}")),
                Ok(()) => match timeout(self.ttl, answers.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                        Ok(Duration::from_secs(answer.ttl().unsigned_abs()))
                    }
                    Ok(Ok(Some(_))) => Err("etcd says the lease has expired".to_owned()),
                    Ok(Ok(None)) => Err("the keepalive stream ended".to_owned()),
                    Ok(Err(e)) => Err(format!("keepalive: {e}")),
                    Err(_) => Err(format!("no keepalive answer within {:?}", self.ttl)),
                },
            };
            match outcome {
                Ok(ttl) => {
                    let event = Event::KeepaliveOk {
                        lease,
                        ttl,
                        sent_at: sent_at.into_std(),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    let _ = events.send(failed(reason)).await;
                    return;
                }
            }
            tokio::time::sleep_until(sent_at + interval).await;
        }
    }

    /// Campaigns with `lease` until elected (or failed).
    pub async fn campaign(&self, lease: LeaseId) -> Event {
        let mut client = self.client.clone();
        match client
            .campaign(self.name.as_bytes(), self.node.as_bytes(), lease)
            .await
        {
            Ok(_) => Event::Elected { lease },
            Err(e) => Event::CampaignFailed {
                lease,
                reason: e.to_string(),
            },
        }
    }

    /// Revokes `lease`, deleting its election key.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), String> {
        let mut client = self.client.clone();
        match timeout(self.request_timeout, client.lease_revoke(lease)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.request_timeout)),
        }
    }

    /// The current leader's node name; `Ok(None)` when there is none.
    pub async fn leader(&self) -> Result<Option<String>, String> {
        let mut client = self.client.clone();
        match timeout(self.request_timeout, client.leader(self.name.as_bytes())).await {
            Ok(Ok(answer)) => Ok(answer
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Ok(Err(e)) if e.to_string().contains("no leader") => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.request_timeout)),
        }
    }
}

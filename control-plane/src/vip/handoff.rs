//! etcd leadership hand-off: the VIP holder keeps its own etcd member from
//! being etcd's raft leader.
//!
//! Why: when the holder's machine dies, the VIP moves once the holder's
//! election lease expires (one TTL). If that machine also ran etcd's
//! leader, etcd first has to elect a new leader (an election timeout,
//! randomised up to twice that), and the new leader then *extends every
//! lease* by its TTL plus an election timeout, so the dead holder's lease
//! outlives it by several seconds more: measured under emulation, a
//! failover took about 5 s instead of 2 s whenever the holder was etcd's
//! leader. Moving etcd leadership to another healthy voter while holding
//! the VIP (etcd's `MoveLeader`, what `etcdctl move-leader` does) keeps the
//! two roles on different machines, so a crash costs one of them, not both.
//!
//! A successor must be a voting member that answers its own status
//! request: `MoveLeader` to a dead member stalls proposals until the
//! transfer times out, so an unreachable peer is never picked. The choice is
//! the pure [`pick_successor`]; [`hand_off`] does the etcd round trips.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use tokio::time::timeout;

use super::election::{EtcdSettings, connect_to};

/// How long one status request to a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the leader transfer may take.
const MOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS material for connecting to any member (the members share a CA).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

impl TlsFiles {
    fn settings(&self) -> EtcdSettings<'_> {
        EtcdSettings {
            servers: "",
            cafile: self.cafile.as_deref(),
            certfile: self.certfile.as_deref(),
            keyfile: self.keyfile.as_deref(),
        }
    }
}

/// A peer as seen for the hand-off decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub is_learner: bool,
    /// The peer's raft index from its own status answer; `None` when it did
    /// not answer.
    pub raft_index: Option<u64>,
}

/// What a hand-off attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The local member is not etcd's leader: nothing to do.
    NotLeader,
    /// The local member leads, but no other voter answered.
    NoSuccessor,
    /// Leadership moved to this member.
    Moved { to: String },
}

/// The voter to hand leadership to: a voting peer that answered, the most
/// caught-up first (the transfer completes fastest), then by name so that
/// every attempt picks the same one.
pub fn pick_successor(own_id: u64, peers: &[Peer]) -> Option<&Peer> {
    peers
        .iter()
        .filter(|p| p.id != own_id && !p.is_learner && p.raft_index.is_some())
        .max_by(|a, b| {
            a.raft_index
                .cmp(&b.raft_index)
                .then_with(|| b.name.cmp(&a.name))
        })
}

/// When the member behind `local` leads etcd, moves leadership to a
/// healthy voting peer.
pub async fn hand_off(local: &Client, tls: &TlsFiles) -> Result<Outcome, String> {
    let mut client = local.clone();
    let status = timeout(PEER_TIMEOUT, client.status())
        .await
        .map_err(|_| "etcd status: no answer".to_owned())?
        .map_err(|e| format!("etcd status: {e}"))?;
    let own_id = status
        .header()
        .map(|h| h.member_id())
        .ok_or("etcd status: the answer has no header")?;
    if status.leader() != own_id {
        return Ok(Outcome::NotLeader);
    }
    let members = timeout(PEER_TIMEOUT, client.member_list())
        .await
        .map_err(|_| "etcd member list: no answer".to_owned())?
        .map_err(|e| format!("etcd member list: {e}"))?;
    let mut peers = Vec::new();
    let mut own_urls = Vec::new();
    for member in members.members() {
        if member.id() == own_id {
            own_urls = member.client_urls().to_vec();
            continue;
        }
        let raft_index = if member.is_learner() {
            None
        } else {
            peer_raft_index(member.client_urls(), tls).await
        };
        peers.push(Peer {
            id: member.id(),
            name: member.name().to_owned(),
            is_learner: member.is_learner(),
            raft_index,
        });
    }
    let Some(successor) = pick_successor(own_id, &peers) else {
        return Ok(Outcome::NoSuccessor);
    };
    // MoveLeader must reach the leader itself; --etcd-servers may list
    // several members, so dial this member's own client URLs.
    let mut leader = if own_urls.is_empty() {
        client
    } else {
        let urls: Vec<&str> = own_urls.iter().map(String::as_str).collect();
        connect_to(&tls.settings(), &urls, PEER_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?
    };
    timeout(MOVE_TIMEOUT, leader.move_leader(successor.id))
        .await
        .map_err(|_| format!("moving etcd leadership to {}: no answer", successor.name))?
        .map_err(|e| format!("moving etcd leadership to {}: {e}", successor.name))?;
    Ok(Outcome::Moved {
        to: successor.name.clone(),
    })
}

/// The raft index a member reports about itself, or `None` when it cannot
/// be reached within [`PEER_TIMEOUT`].
async fn peer_raft_index(urls: &[String], tls: &TlsFiles) -> Option<u64> {
    if urls.is_empty() {
        return None;
    }
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut client = connect_to(&tls.settings(), &urls, PEER_TIMEOUT)
        .await
        .ok()?;
    match timeout(PEER_TIMEOUT, client.status()).await {
        Ok(Ok(status)) => Some(status.raft_index()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, name: &str, learner: bool, index: Option<u64>) -> Peer {
        Peer {
            id,
            name: name.to_owned(),
            is_learner: learner,
            raft_index: index,
        }
    }

    #[test]
    fn the_most_caught_up_answering_voter_is_chosen() {
        let peers = [
            peer(2, "node-2", false, Some(90)),
            peer(3, "node-3", false, Some(100)),
        ];
        assert_eq!(pick_successor(1, &peers).map(|p| p.id), Some(3));
    }

    #[test]
    fn silent_peers_learners_and_self_are_never_chosen() {
        let peers = [
            peer(1, "node-1", false, Some(200)),
            peer(2, "node-2", false, None),
            peer(3, "node-3", true, Some(150)),
        ];
        assert_eq!(pick_successor(1, &peers), None);
    }

    #[test]
    fn ties_go_to_the_same_peer_every_time() {
        let peers = [
            peer(3, "node-3", false, Some(100)),
            peer(2, "node-2", false, Some(100)),
        ];
        assert_eq!(
            pick_successor(1, &peers).map(|p| p.name.as_str()),
            Some("node-2")
        );
    }
}

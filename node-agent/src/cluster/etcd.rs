//! etcd membership for a joining or leaving control-plane node, through
//! etcd's JSON gateway on the client port
//! (`POST /v3/cluster/member/list|add|promote|remove`)
//! with the node's own `apiserver-etcd-client` certificate, so node-agent
//! needs no gRPC stack.
//!
//! A new member joins as a **learner**: it receives the data but does not
//! vote, so a slow or failing joiner never costs the cluster its quorum.
//! It is promoted once etcd says it caught up (etcd refuses earlier; the
//! caller retries within a bound).

use std::path::Path;

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};
use serde::Deserialize;

/// One etcd member as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// The member ID: a uint64, which the gateway writes as a string.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Empty until the member started once.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

#[derive(Debug, Deserialize)]
struct MembersAnswer {
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    member: Option<Member>,
}

/// A client for the cluster's etcd at one member's client URL.
#[derive(Debug)]
pub struct EtcdMembership {
    client: KubeClient,
    url: String,
}

impl EtcdMembership {
    /// `host` is an address where an etcd member listens (the control-plane
    /// endpoint's host); the certificate is checked for `localhost`, which
    /// every member's serving certificate carries, because the endpoint may
    /// be a VIP no certificate names.
    pub fn new(host: &str, pki_dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            let path = pki_dir.join(name);
            std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let url = format!("https://{host}:{}", super::plan::ETCD_CLIENT_PORT);
        let client = KubeClient::new(
            &url,
            ServerTrust::CaPem(read("etcd/ca.crt")?),
            Credentials::ClientCertificate {
                cert_pem: read("apiserver-etcd-client.crt")?,
                key_pem: read("apiserver-etcd-client.key")?,
            },
        )
        .and_then(|client| client.with_server_name("localhost"))
        .map_err(|e| format!("etcd at {url}: {e}"))?;
        Ok(Self { client, url })
    }

    fn call(&self, operation: &str, body: &serde_json::Value) -> Result<MembersAnswer, String> {
        let path = format!("/v3/cluster/member/{operation}");
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let (status, answer) = self
            .client
            .request("POST", &path, Some(&bytes))
            .map_err(|e| format!("etcd {operation} at {}: {e}", self.url))?;
        if status != 200 {
            return Err(format!(
                "etcd {operation} at {} answered {status}: {}",
                self.url,
                String::from_utf8_lossy(&answer).trim()
            ));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| format!("etcd {operation} at {}: unexpected answer: {e}", self.url))
    }

    /// Every member.
    pub fn list(&self) -> Result<Vec<Member>, String> {
        Ok(self.call("list", &serde_json::json!({}))?.members)
    }

    /// Adds `peer_url` as a learner; returns the new member and the
    /// members after the change.
    pub fn add_learner(&self, peer_url: &str) -> Result<(Member, Vec<Member>), String> {
        let answer = self.call(
            "add",
            &serde_json::json!({ "peerURLs": [peer_url], "isLearner": true }),
        )?;
        let member = answer
            .member
            .ok_or_else(|| format!("etcd at {} added no member", self.url))?;
        Ok((member, answer.members))
    }

    /// Removes a member; etcd refuses when the rest could not keep quorum.
    pub fn remove(&self, id: &str) -> Result<Vec<Member>, String> {
        Ok(self
            .call("remove", &serde_json::json!({ "ID": id }))?
            .members)
    }

    /// Makes a learner a voting member; etcd refuses while it lags.
    pub fn promote(&self, id: &str) -> Result<(), String> {
        self.call("promote", &serde_json::json!({ "ID": id }))
            .map(|_| ())
    }
}

/// Refuses to remove `own_name` when the members left behind could not
/// keep quorum: every other voter must have started (a voter that never
/// started counts against quorum but cannot vote).
pub fn check_quorum_for_leave(members: &[Member], own_name: &str) -> Result<(), String> {
    let others: Vec<&Member> = members
        .iter()
        .filter(|m| m.name != own_name && !m.is_learner)
        .collect();
    let never_started: Vec<String> = others
        .iter()
        .filter(|m| m.name.is_empty())
        .map(|m| m.peer_urls.join(","))
        .collect();
    if !never_started.is_empty() {
        return Err(format!(
            "etcd voting member(s) {} never started; without this member the rest could lose quorum (remove the stuck member first, or reset with graceful = false)",
            never_started.join("; ")
        ));
    }
    Ok(())
}

/// Refuses a join that etcd could not absorb: a voting member that never
/// started (a half-finished earlier join) means adding another one could
/// cost the cluster its quorum.
pub fn check_quorum_for_join(members: &[Member], own_peer_url: &str) -> Result<(), String> {
    let stuck: Vec<&Member> = members
        .iter()
        .filter(|m| {
            !m.is_learner && m.name.is_empty() && !m.peer_urls.iter().any(|u| u == own_peer_url)
        })
        .collect();
    if stuck.is_empty() {
        return Ok(());
    }
    Err(format!(
        "etcd has {} voting member(s) that never started ({}); another member now could break quorum. \
         Finish or remove them first (`etcdctl member remove <ID>` on a control-plane node)",
        stuck.len(),
        stuck
            .iter()
            .map(|m| format!("{} at {}", m.id, m.peer_urls.join(",")))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// `--initial-cluster` members: every member with a name, plus this node
/// (whose entry has none until it starts).
pub fn initial_members(
    members: &[Member],
    own_name: &str,
    own_peer_url: &str,
) -> Vec<super::plan::EtcdMember> {
    let mut out: Vec<super::plan::EtcdMember> = members
        .iter()
        .filter(|m| !m.peer_urls.iter().any(|u| u == own_peer_url))
        .filter_map(|m| {
            Some(super::plan::EtcdMember {
                name: (!m.name.is_empty()).then(|| m.name.clone())?,
                peer_url: m.peer_urls.first()?.clone(),
            })
        })
        .collect();
    out.push(super::plan::EtcdMember {
        name: own_name.to_owned(),
        peer_url: own_peer_url.to_owned(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> MembersAnswer {
        serde_json::from_str(json).expect("gateway JSON")
    }

    #[test]
    fn gateway_answers_parse_with_string_ids() {
        let answer = parse(
            r#"{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},
                "member":{"ID":"11","peerURLs":["https://10.5.0.12:2380"],"isLearner":true},
                "members":[
                  {"ID":"10","name":"node-1","peerURLs":["https://10.5.0.11:2380"],"clientURLs":["https://10.5.0.11:2379"]},
                  {"ID":"11","peerURLs":["https://10.5.0.12:2380"],"isLearner":true}]}"#,
        );
        let member = answer.member.expect("member");
        assert_eq!(member.id, "11");
        assert!(member.is_learner);
        assert_eq!(answer.members.len(), 2);
        let initial = initial_members(&answer.members, "node-2", "https://10.5.0.12:2380");
        assert_eq!(
            initial
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect::<Vec<_>>(),
            [
                "node-1=https://10.5.0.11:2380",
                "node-2=https://10.5.0.12:2380"
            ]
        );
        assert!(check_quorum_for_join(&answer.members, "https://10.5.0.12:2380").is_ok());
    }

    #[test]
    fn a_voting_member_that_never_started_blocks_a_join() {
        let members = parse(
            r#"{"members":[
                {"ID":"10","name":"node-1","peerURLs":["https://10.5.0.11:2380"]},
                {"ID":"12","peerURLs":["https://10.5.0.13:2380"]}]}"#,
        )
        .members;
        let error = check_quorum_for_join(&members, "https://10.5.0.12:2380").expect_err("refused");
        assert!(error.contains("10.5.0.13"), "{error}");
    }

    #[test]
    fn leaving_is_refused_while_another_voter_never_started() {
        let members = parse(
            r#"{"members":[
                {"ID":"10","name":"node-1","peerURLs":["https://10.5.0.11:2380"]},
                {"ID":"11","name":"node-2","peerURLs":["https://10.5.0.12:2380"]},
                {"ID":"12","peerURLs":["https://10.5.0.13:2380"]}]}"#,
        )
        .members;
        let error = check_quorum_for_leave(&members, "node-2").expect_err("refused");
        assert!(
            error.contains("10.5.0.13") && error.contains("graceful"),
            "{error}"
        );
        assert!(check_quorum_for_leave(&members[..2], "node-2").is_ok());
    }
}

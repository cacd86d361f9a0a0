//! `bootstrap token ...`: bootstrap tokens the way `kubeadm token` manages
//! them.
//!
//! A token lives in the cluster as the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`
//! (the layout the apiserver's token authenticator, the bootstrap signer
//! and the token cleaner read). This module owns the mapping between that
//! Secret and [`TokenSpec`] in both directions, so `create` writes exactly
//! what `list` reads back and what node-agent writes at init.
//!
//! Design:
//! - inputs are typed and validated before anything is sent: tokens and
//!   ids ([`TokenRef`]), usages ([`TokenUsage`]), extra groups
//!   ([`TokenGroup`]), Go durations for the TTL ([`GoDuration`], shared with
//!   the controller manager's flags);
//! - every operation takes a [`KubeClient`] and, where time matters, the
//!   current time, so tests drive them against a real apiserver with a
//!   fixed clock;
//! - `create --print-join-command` reads `kube-public/cluster-info` before
//!   writing the Secret, so a cluster without it leaves no stray token;
//! - the table of `list` is kubeadm's (columns, `<forever>`, `<invalid>`,
//!   Go's tabwriter spacing) so scripts written for kubeadm keep working.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use cairn_cluster::client::{self, KubeClient, ListParams};
pub use cairn_cluster::token::{
    DEFAULT_NODE_TOKEN_GROUP, TOKEN_NAMESPACE, TOKEN_SECRET_PREFIX, TOKEN_SECRET_TYPE, TokenSecret,
    USAGE_PREFIX, rfc3339,
};
use cairn_pki::BootstrapToken;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use cairn_cluster::duration::GoDuration;

use crate::cli::{TokenCommand, TokenCreateArgs};
use crate::error::BootstrapError;

/// Where kubeadm looks for credentials when neither flag nor
/// `$KUBECONFIG` says otherwise.
pub const DEFAULT_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

const GROUP_PREFIX: &str = "system:bootstrappers:";

/// What can go wrong managing tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The kubeconfig cannot be used.
    #[error("cannot reach the cluster: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The client's reason (boxed: keeps the error small).
        source: Box<client::Error>,
    },
    /// A token with this id is already stored.
    #[error(
        "a bootstrap token with id {id:?} already exists ({TOKEN_NAMESPACE}/{TOKEN_SECRET_PREFIX}{id}); \
         choose another token or remove it with `bootstrap token delete {id}`"
    )]
    AlreadyExists {
        /// The token id.
        id: String,
    },
    /// Deleting an id that has no Secret.
    #[error(
        "bootstrap token {id:?} not found ({TOKEN_NAMESPACE}/{TOKEN_SECRET_PREFIX}{id} does not exist)"
    )]
    NotFound {
        /// The token id.
        id: String,
    },
    /// Groups were given for a token that cannot authenticate.
    #[error(
        "--groups needs the authentication usage: a token used only for {usages} never \
         authenticates, so its groups would have no effect"
    )]
    GroupsWithoutAuthentication {
        /// The usages asked for.
        usages: String,
    },
    /// No usage at all.
    #[error("--usages: a token needs at least one usage (signing, authentication)")]
    NoUsages,
    /// The expiration does not fit a timestamp.
    #[error("--ttl {ttl}: the expiration is out of range")]
    TtlOutOfRange {
        /// The TTL given.
        ttl: GoDuration,
    },
    /// `kube-public/cluster-info` is missing or unusable for a join command.
    #[error("cannot print a join command: kube-public/cluster-info {reason}")]
    ClusterInfo {
        /// What is missing or malformed.
        reason: String,
    },
    /// An API call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client's error (verb, URL, server message), boxed.
        source: Box<client::Error>,
    },
    /// Some deletions failed (the others were done).
    #[error("{}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Delete {
        /// One error per token that could not be deleted.
        failures: Vec<TokenError>,
    },
}

/// What a token may be used for (`usage-bootstrap-<usage>` in the Secret).
/// Declared in name order, as kubeadm lists usages sorted by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum TokenUsage {
    /// Authenticate to the apiserver as `system:bootstrap:<id>`.
    Authentication,
    /// Sign `kube-public/cluster-info` for token discovery.
    Signing,
}

impl TokenUsage {
    /// The name used in flags and in the Secret key.
    pub fn name(self) -> &'static str {
        match self {
            TokenUsage::Signing => "signing",
            TokenUsage::Authentication => "authentication",
        }
    }
}

/// An extra group for token authentication: kubeadm's pattern
/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenGroup(String);

impl TokenGroup {
    /// The group name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenGroup {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text.strip_prefix(GROUP_PREFIX).unwrap_or_default();
        let valid = text.starts_with(GROUP_PREFIX)
            && (1..=256).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
            && rest
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a bootstrap group: expected {GROUP_PREFIX}<name> with lower-case \
                 letters, digits, ':' and '-', ending in a letter or digit"
            ))
        }
    }
}

impl fmt::Display for TokenGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token named on the command line: a whole token or only its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    id: String,
}

impl TokenRef {
    /// The token id (`[a-z0-9]{6}`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for TokenRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.contains('.') {
            // The message of a rejected token never repeats the secret.
            let token: BootstrapToken = text
                .parse()
                .map_err(|e: cairn_pki::types::InvalidValue| e.0)?;
            return Ok(Self {
                id: token.id().to_owned(),
            });
        }
        if text.len() == 6
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Ok(Self {
                id: text.to_owned(),
            })
        } else {
            Err(format!(
                "{text:?} is neither a token id ([a-z0-9]{{6}}) nor a token ([a-z0-9]{{6}}.[a-z0-9]{{16}})"
            ))
        }
    }
}

/// A bootstrap token and its properties, as stored in its Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The token.
    pub token: BootstrapToken,
    /// Free text.
    pub description: Option<String>,
    /// When it stops being valid; `None` never.
    pub expires: Option<OffsetDateTime>,
    /// What it may be used for (sorted, no duplicates).
    pub usages: Vec<TokenUsage>,
    /// Extra groups when authenticating.
    pub groups: Vec<TokenGroup>,
}

impl TokenSpec {
    /// The spec `create` stores for these flags at `now`.
    pub fn from_create_args(
        args: &TokenCreateArgs,
        now: OffsetDateTime,
    ) -> Result<Self, TokenError> {
        let mut usages = args.usages.clone();
        usages.sort();
        usages.dedup();
        if usages.is_empty() {
            return Err(TokenError::NoUsages);
        }
        let authenticates = usages.contains(&TokenUsage::Authentication);
        let groups = match &args.groups {
            Some(groups) if !groups.is_empty() && !authenticates => {
                return Err(TokenError::GroupsWithoutAuthentication {
                    usages: usages_text(&usages),
                });
            }
            Some(groups) => groups.clone(),
            None if authenticates => vec![TokenGroup(DEFAULT_NODE_TOKEN_GROUP.to_owned())],
            None => Vec::new(),
        };
        let mut groups = groups;
        groups.sort();
        groups.dedup();
        Ok(Self {
            token: args.token.clone().unwrap_or_else(BootstrapToken::generate),
            description: args.description.clone().filter(|d| !d.is_empty()),
            expires: expiration(now, args.ttl)?,
            usages,
            groups,
        })
    }

    /// The name of its Secret.
    pub fn secret_name(&self) -> String {
        format!("{TOKEN_SECRET_PREFIX}{}", self.token.id())
    }

    /// The Secret as kubeadm writes it.
    pub fn to_secret(&self) -> Secret {
        let usages: Vec<&str> = self.usages.iter().map(|u| u.name()).collect();
        let groups: Vec<&str> = self.groups.iter().map(TokenGroup::as_str).collect();
        TokenSecret {
            token: &self.token,
            expires: self.expires,
            usages: &usages,
            groups: &groups,
            description: self.description.as_deref(),
        }
        .to_secret()
    }

    /// Reads a token Secret back; the error says what is wrong with it.
    pub fn from_secret(secret: &Secret) -> Result<Self, String> {
        let data = secret.data.clone().unwrap_or_default();
        let field = |key: &str| -> Result<Option<String>, String> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.0.clone()).map_err(|_| format!("{key} is not UTF-8"))
                })
                .transpose()
        };
        let id = field("token-id")?.ok_or("no token-id")?;
        let secret_part = field("token-secret")?.ok_or("no token-secret")?;
        let token: BootstrapToken = format!("{id}.{secret_part}")
            .parse()
            .map_err(|_| "token-id or token-secret is malformed".to_owned())?;
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        if name != format!("{TOKEN_SECRET_PREFIX}{id}") {
            return Err(format!("its name does not match token-id {id:?}"));
        }
        let expires = field("expiration")?
            .map(|text| {
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map_err(|e| format!("expiration {text:?} is not RFC 3339: {e}"))
            })
            .transpose()?;
        let mut usages: Vec<TokenUsage> = [TokenUsage::Authentication, TokenUsage::Signing]
            .into_iter()
            .filter(|usage| {
                field(&format!("{USAGE_PREFIX}{}", usage.name()))
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("true")
            })
            .collect();
        usages.sort();
        let groups = field("auth-extra-groups")?
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(|g| g.parse::<TokenGroup>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            token,
            description: field("description")?.filter(|d| !d.is_empty()),
            expires,
            usages,
            groups,
        })
    }
}

/// `now + ttl` truncated to seconds (as RFC 3339 stores it); `None` for a
/// zero TTL, which kubeadm reads as "never expires".
pub fn expiration(
    now: OffsetDateTime,
    ttl: GoDuration,
) -> Result<Option<OffsetDateTime>, TokenError> {
    if ttl.0.is_zero() {
        return Ok(None);
    }
    let ttl_signed =
        time::Duration::try_from(ttl.0).map_err(|_| TokenError::TtlOutOfRange { ttl })?;
    let expires = now
        .checked_add(ttl_signed)
        .and_then(|t| t.replace_nanosecond(0).ok())
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or(TokenError::TtlOutOfRange { ttl })?;
    Ok(Some(expires))
}

fn usages_text(usages: &[TokenUsage]) -> String {
    usages
        .iter()
        .map(|u| u.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// kubeadm's kubeconfig lookup: the flag, else the first entry of
/// `$KUBECONFIG`, else [`DEFAULT_KUBECONFIG`].
pub fn kubeconfig_path(flag: Option<&Path>, env: Option<&OsStr>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_owned();
    }
    env.and_then(|list| std::env::split_paths(list).find(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG))
}

/// A client for the kubeconfig's current context.
pub fn client_for(path: &Path) -> Result<KubeClient, TokenError> {
    KubeClient::from_kubeconfig(path).map_err(|source| TokenError::Kubeconfig {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Stores a new token; an existing id is refused, never overwritten.
pub fn create(client: &KubeClient, spec: &TokenSpec) -> Result<(), TokenError> {
    match client.create(Some(TOKEN_NAMESPACE), &spec.to_secret()) {
        Ok(_) => {
            tracing::info!(id = spec.token.id(), expires = ?spec.expires.map(rfc3339), "bootstrap token created");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Err(TokenError::AlreadyExists {
            id: spec.token.id().to_owned(),
        }),
        Err(source) => Err(TokenError::Api {
            action: format!("cannot create {TOKEN_NAMESPACE}/{}", spec.secret_name()),
            source: Box::new(source),
        }),
    }
}

/// What joiners need besides a token: the published API endpoint and the
/// pins of the cluster CA, from `kube-public/cluster-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget {
    /// `host:port` of the control plane, as published.
    pub endpoint: String,
    /// `sha256:<hex>` of each CA certificate.
    pub ca_cert_hashes: Vec<String>,
}

impl JoinTarget {
    /// `bootstrap join <endpoint> --token <t> --discovery-token-ca-cert-hash sha256:<hex>`.
    pub fn join_command(&self, token: &BootstrapToken) -> String {
        let mut command = format!("bootstrap join {} --token {token}", self.endpoint);
        for hash in &self.ca_cert_hashes {
            command.push_str(" --discovery-token-ca-cert-hash ");
            command.push_str(hash);
        }
        command
    }
}

/// The part of cluster-info's kubeconfig read here (kubeadm writes
/// `contexts: null` and `users: null`, so the full model is not used).
#[derive(Debug, serde::Deserialize)]
struct ClusterInfoKubeconfig {
    #[serde(default)]
    clusters: Option<Vec<cairn_pki::kubeconfig::NamedCluster>>,
}

/// Reads the endpoint and CA pins from `kube-public/cluster-info`.
pub fn join_target(client: &KubeClient) -> Result<JoinTarget, TokenError> {
    let bad = |reason: String| TokenError::ClusterInfo { reason };
    let map = client
        .get_opt::<ConfigMap>(Some("kube-public"), "cluster-info")
        .map_err(|source| TokenError::Api {
            action: "cannot read kube-public/cluster-info".to_owned(),
            source: Box::new(source),
        })?
        .ok_or_else(|| bad("does not exist: is this cluster initialised?".to_owned()))?;
    let text = map
        .data
        .as_ref()
        .and_then(|data| data.get("kubeconfig"))
        .ok_or_else(|| bad("has no \"kubeconfig\" key".to_owned()))?;
    join_target_from_kubeconfig(text).map_err(bad)
}

/// [`join_target`] on the text of cluster-info's `kubeconfig` value.
pub fn join_target_from_kubeconfig(text: &str) -> Result<JoinTarget, String> {
    let kubeconfig: ClusterInfoKubeconfig =
        serde_yaml::from_str(text).map_err(|e| format!("holds no kubeconfig: {e}"))?;
    let cluster = kubeconfig
        .clusters
        .as_deref()
        .and_then(<[_]>::first)
        .ok_or("defines no cluster")?;
    let endpoint = cluster
        .cluster
        .server
        .strip_prefix("https://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| {
            format!(
                "has server {:?}, expected https://host:port",
                cluster.cluster.server
            )
        })?
        .to_owned();
    let ca_data = cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .ok_or("has no certificate-authority-data")?;
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_data.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("has certificate-authority-data that is not base64 PEM")?;
    let ca_cert_hashes = pem_certificates(&ca_pem)
        .iter()
        .map(|pem| {
            cairn_pki::ca_cert_hash(pem).map_err(|e| format!("has a bad CA certificate: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ca_cert_hashes.is_empty() {
        return Err("has a CA bundle without certificates".to_owned());
    }
    Ok(JoinTarget {
        endpoint,
        ca_cert_hashes,
    })
}

/// The PEM blocks of a bundle, one certificate each (kubeadm prints a pin
/// per CA certificate).
fn pem_certificates(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

/// The cluster's bootstrap tokens, ordered by id. Secrets of the token type
/// that do not hold a valid token are skipped with a warning, as kubeadm
/// does.
pub fn list(client: &KubeClient) -> Result<Vec<TokenSpec>, TokenError> {
    let secrets = client
        .list::<Secret>(Some(TOKEN_NAMESPACE), &ListParams::default())
        .map_err(|source| TokenError::Api {
            action: format!("cannot list Secrets in {TOKEN_NAMESPACE}"),
            source: Box::new(source),
        })?;
    let mut tokens: Vec<TokenSpec> = secrets
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(TOKEN_SECRET_TYPE))
        .filter_map(|secret| match TokenSpec::from_secret(secret) {
            Ok(spec) => Some(spec),
            Err(reason) => {
                tracing::warn!(
                    secret = secret.metadata.name.as_deref().unwrap_or_default(),
                    "skipping a bootstrap-token Secret: {reason}"
                );
                None
            }
        })
        .collect();
    tokens.sort_by(|a, b| a.token.id().cmp(b.token.id()));
    Ok(tokens)
}

/// Writes kubeadm's `token list` table.
pub fn write_table(
    tokens: &[TokenSpec],
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut rows = vec![
        [
            "TOKEN",
            "TTL",
            "EXPIRES",
            "USAGES",
            "DESCRIPTION",
            "EXTRA GROUPS",
        ]
        .map(str::to_owned),
    ];
    for spec in tokens {
        let (ttl, expires) = match spec.expires {
            Some(at) => (short_human_duration(at - now), rfc3339(at)),
            None => ("<forever>".to_owned(), "<never>".to_owned()),
        };
        let groups: Vec<&str> = spec.groups.iter().map(TokenGroup::as_str).collect();
        rows.push([
            spec.token.to_string(),
            ttl,
            expires,
            usages_text(&spec.usages),
            spec.description
                .clone()
                .unwrap_or_else(|| "<none>".to_owned()),
            groups.join(","),
        ]);
    }
    write_tabbed(&rows, out)
}

/// Go's `tabwriter.NewWriter(out, 10, 4, 3, ' ', 0)` as kubeadm uses it:
/// each column but the last is as wide as its widest cell plus 3, at
/// least 10.
fn write_tabbed<const N: usize>(rows: &[[String; N]], out: &mut dyn Write) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let width = (widths[i] + 3).max(10);
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Kubernetes' `duration.ShortHumanDuration`: `45s`, `59m`, `23h`, `6d`,
/// `2y`; more than a second in the past is `<invalid>`.
pub fn short_human_duration(left: time::Duration) -> String {
    let seconds = left.whole_seconds();
    if seconds < -1 {
        "<invalid>".to_owned()
    } else if seconds < 0 {
        "0s".to_owned()
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 24 * 3600 {
        format!("{}h", seconds / 3600)
    } else if seconds < 365 * 24 * 3600 {
        format!("{}d", seconds / (24 * 3600))
    } else {
        format!("{}y", seconds / (365 * 24 * 3600))
    }
}

/// What `delete` did: the ids deleted and one error per id that was not.
#[derive(Debug, Default)]
pub struct DeleteReport {
    /// Ids whose Secret was deleted, in the order given.
    pub deleted: Vec<String>,
    /// Ids that failed, with the reason.
    pub failures: Vec<TokenError>,
}

impl DeleteReport {
    /// `Ok` when every id was deleted, else the failure(s).
    pub fn into_result(mut self) -> Result<(), TokenError> {
        match self.failures.len() {
            0 => Ok(()),
            1 => Err(self.failures.remove(0)),
            _ => Err(TokenError::Delete {
                failures: self.failures,
            }),
        }
    }
}

/// Deletes the tokens' Secrets. Every id is tried, so one unknown id does
/// not keep the others alive.
pub fn delete(client: &KubeClient, tokens: &[TokenRef]) -> DeleteReport {
    let mut report = DeleteReport::default();
    for token in tokens {
        let name = format!("{TOKEN_SECRET_PREFIX}{}", token.id());
        match client.delete::<Secret>(Some(TOKEN_NAMESPACE), &name) {
            Ok(()) => {
                tracing::info!(id = token.id(), "bootstrap token deleted");
                report.deleted.push(token.id().to_owned());
            }
            Err(e) if e.is_not_found() => report.failures.push(TokenError::NotFound {
                id: token.id().to_owned(),
            }),
            Err(source) => report.failures.push(TokenError::Api {
                action: format!("cannot delete {TOKEN_NAMESPACE}/{name}"),
                source: Box::new(source),
            }),
        }
    }
    report
}

/// Runs a `bootstrap token` verb.
pub fn run(command: TokenCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        TokenCommand::Generate => writeln!(out, "{}", BootstrapToken::generate())?,
        TokenCommand::Create(args) => {
            let spec = TokenSpec::from_create_args(&args, OffsetDateTime::now_utc())?;
            let client = client_for(&args.kubeconfig.kubeconfig_path())?;
            // Read first: a cluster without cluster-info gets no token it
            // cannot use.
            let target = if args.print_join_command {
                Some(join_target(&client)?)
            } else {
                None
            };
            create(&client, &spec)?;
            match target {
                Some(target) => writeln!(out, "{}", target.join_command(&spec.token))?,
                None => writeln!(out, "{}", spec.token)?,
            }
        }
        TokenCommand::List(args) => {
            let client = client_for(&args.kubeconfig.kubeconfig_path())?;
            let tokens = list(&client)?;
            write_table(&tokens, OffsetDateTime::now_utc(), out)?;
        }
        TokenCommand::Delete(args) => {
            let client = client_for(&args.kubeconfig.kubeconfig_path())?;
            let report = delete(&client, &args.tokens);
            // What was deleted is reported even when other ids failed.
            for id in &report.deleted {
                writeln!(out, "bootstrap token {id:?} deleted")?;
            }
            report.into_result()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn spec(text: &str, expires: Option<OffsetDateTime>) -> TokenSpec {
        TokenSpec {
            token: text.parse().expect("token"),
            description: Some("for node-4".into()),
            expires,
            usages: vec![TokenUsage::Authentication, TokenUsage::Signing],
            groups: vec![DEFAULT_NODE_TOKEN_GROUP.parse().expect("group")],
        }
    }

    #[test]
    fn secrets_round_trip_in_kubeadm_layout() {
        let spec = spec(
            "abcdef.0123456789abcdef",
            Some(datetime!(2026-11-24 07:00:00 UTC)),
        );
        let secret = spec.to_secret();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("bootstrap-token-abcdef")
        );
        assert_eq!(secret.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        let data = secret.data.clone().expect("data");
        let get = |k: &str| String::from_utf8(data[k].0.clone()).expect("utf-8");
        assert_eq!(get("token-id"), "abcdef");
        assert_eq!(get("token-secret"), "0123456789abcdef");
        assert_eq!(get("expiration"), "2026-11-24T07:00:00Z");
        assert_eq!(get("usage-bootstrap-signing"), "true");
        assert_eq!(get("usage-bootstrap-authentication"), "true");
        assert_eq!(get("auth-extra-groups"), DEFAULT_NODE_TOKEN_GROUP);
        assert_eq!(get("description"), "for node-4");
        assert_eq!(TokenSpec::from_secret(&secret).expect("parse"), spec);

        let forever = TokenSpec {
            expires: None,
            ..spec.clone()
        };
        let data = forever.to_secret().data.expect("data");
        assert!(!data.contains_key("expiration"));
    }

    #[test]
    fn secrets_that_are_not_tokens_are_explained() {
        let mut secret = spec("abcdef.0123456789abcdef", None).to_secret();
        secret.metadata.name = Some("bootstrap-token-zzzzzz".into());
        let err = TokenSpec::from_secret(&secret).expect_err("name mismatch");
        assert!(err.contains("does not match"), "{err}");
        let mut secret = spec("abcdef.0123456789abcdef", None).to_secret();
        if let Some(data) = secret.data.as_mut() {
            data.insert(
                "expiration".into(),
                k8s_openapi::ByteString(b"tomorrow".to_vec()),
            );
        }
        let err = TokenSpec::from_secret(&secret).expect_err("bad expiration");
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn ttl_is_shown_like_kubernetes() {
        for (seconds, shown) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (86_399, "23h"),
            (86_400, "1d"),
            (400 * 86_400, "1y"),
        ] {
            assert_eq!(
                short_human_duration(time::Duration::seconds(seconds)),
                shown
            );
        }
    }

    #[test]
    fn table_matches_kubeadm() {
        let now = datetime!(2026-11-23 07:00:30 UTC);
        let tokens = vec![
            spec(
                "abcdef.0123456789abcdef",
                Some(datetime!(2026-11-24 07:00:00 UTC)),
            ),
            TokenSpec {
                description: None,
                groups: vec![],
                usages: vec![TokenUsage::Signing],
                ..spec("ghijkl.0123456789abcdef", None)
            },
            spec(
                "mnopqr.0123456789abcdef",
                Some(datetime!(2026-11-23 07:00:00 UTC)),
            ),
        ];
        let mut out = Vec::new();
        write_table(&tokens, now, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let expected = "\
TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION   EXTRA GROUPS
abcdef.0123456789abcdef   23h         2026-11-24T07:00:00Z   authentication,signing   for node-4    system:bootstrappers:kubeadm:default-node-token
ghijkl.0123456789abcdef   <forever>   <never>                signing                  <none>
mnopqr.0123456789abcdef   <invalid>   2026-11-23T07:00:00Z   authentication,signing   for node-4    system:bootstrappers:kubeadm:default-node-token
";
        assert_eq!(text, expected);
    }

    #[test]
    fn inputs_are_validated() {
        assert!(
            "system:bootstrappers:kubeadm:default-node-token"
                .parse::<TokenGroup>()
                .is_ok()
        );
        for bad in [
            "system:masters",
            "system:bootstrappers:",
            "system:bootstrappers:a-",
            "system:bootstrappers:A",
        ] {
            assert!(bad.parse::<TokenGroup>().is_err(), "{bad}");
        }
        assert_eq!("abcdef".parse::<TokenRef>().expect("id").id(), "abcdef");
        assert_eq!(
            "abcdef.0123456789abcdef"
                .parse::<TokenRef>()
                .expect("token")
                .id(),
            "abcdef"
        );
        let err = "abcdef.0123456789ABCDEF"
            .parse::<TokenRef>()
            .expect_err("bad token");
        assert!(!err.contains("ABCDEF"), "{err}");
        assert!("abcde".parse::<TokenRef>().is_err());
    }

    #[test]
    fn kubeconfig_lookup_follows_kubeadm() {
        assert_eq!(
            kubeconfig_path(Some(Path::new("/a")), Some(OsStr::new("/b"))),
            PathBuf::from("/a")
        );
        assert_eq!(
            kubeconfig_path(None, Some(OsStr::new("/b:/c"))),
            PathBuf::from("/b")
        );
        assert_eq!(
            kubeconfig_path(None, Some(OsStr::new(""))),
            PathBuf::from(DEFAULT_KUBECONFIG)
        );
        assert_eq!(
            kubeconfig_path(None, None),
            PathBuf::from(DEFAULT_KUBECONFIG)
        );
    }

    #[test]
    fn join_target_reads_cluster_info() {
        let ca = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.5.0.10:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n",
            base64::engine::general_purpose::STANDARD.encode(ca)
        );
        // Not a real certificate: the error names the CA.
        let err = join_target_from_kubeconfig(&yaml).expect_err("bad CA");
        assert!(err.contains("CA certificate"), "{err}");
        assert_eq!(pem_certificates(&format!("{ca}{ca}")).len(), 2);
        let target = JoinTarget {
            endpoint: "10.5.0.10:6443".into(),
            ca_cert_hashes: vec!["sha256:ab".into()],
        };
        assert_eq!(
            target.join_command(&"abcdef.0123456789abcdef".parse().expect("token")),
            "bootstrap join 10.5.0.10:6443 --token abcdef.0123456789abcdef \
             --discovery-token-ca-cert-hash sha256:ab"
        );
    }

    #[test]
    fn groups_need_authentication() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let cli = crate::Cli::try_parse_from(
                ["bootstrap", "token", "create"].iter().chain(args).copied(),
            )
            .expect("parse");
            match cli.command {
                crate::cli::Command::Token(TokenCommand::Create(args)) => args,
                other => panic!("{other:?}"),
            }
        };
        let now = datetime!(2026-11-23 07:00:00 UTC);
        let defaults = TokenSpec::from_create_args(&parse(&[]), now).expect("defaults");
        assert_eq!(defaults.expires, Some(datetime!(2026-11-24 07:00:00 UTC)));
        assert_eq!(
            defaults.usages,
            vec![TokenUsage::Authentication, TokenUsage::Signing]
        );
        assert_eq!(defaults.groups[0].as_str(), DEFAULT_NODE_TOKEN_GROUP);
        let signing =
            TokenSpec::from_create_args(&parse(&["--usages", "signing", "--ttl", "0"]), now)
                .expect("signing only");
        assert!(signing.groups.is_empty() && signing.expires.is_none());
        let err = TokenSpec::from_create_args(
            &parse(&["--usages", "signing", "--groups", "system:bootstrappers:x"]),
            now,
        )
        .expect_err("groups without authentication");
        assert!(err.to_string().contains("--groups"), "{err}");
        let ttl = TokenSpec::from_create_args(&parse(&["--ttl", "1h30m"]), now).expect("ttl");
        assert_eq!(ttl.expires, Some(datetime!(2026-11-23 08:30:00 UTC)));
        assert!(
            crate::Cli::try_parse_from(["bootstrap", "token", "create", "--ttl", "1d"]).is_err()
        );
        assert!(
            crate::Cli::try_parse_from(["bootstrap", "token", "create", "--usages", "bogus"])
                .is_err()
        );
    }
}

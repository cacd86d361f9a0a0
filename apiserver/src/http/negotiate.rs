//! Content negotiation: what a client accepts (`Accept`) and what it sent
//! (`Content-Type`).
//!
//! Answers are JSON (or YAML when that is all a client takes); protobuf
//! requests get JSON, which every kubectl accepts. The `as=` parameter
//! selects a different representation: a `meta.k8s.io` Table, aggregated
//! discovery, or `PartialObjectMetadata`.

use super::status::{ApiError, StatusReason};

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
pub const DISCOVERY_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const DISCOVERY_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// One entry of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `type/subtype`, lowercased.
    pub essence: String,
    /// Parameters other than `q`, keys lowercased.
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaRange {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn is_json_like(&self) -> bool {
        matches!(
            self.essence.as_str(),
            JSON | "application/*" | "*/*" | PROTOBUF
        )
    }
}

/// Parses an Accept header, sorted by `q` (stable, so the client's order
/// breaks ties); entries with `q=0` are dropped.
pub fn parse_accept(header: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = split_outside_quotes(header, ',')
        .into_iter()
        .filter_map(|item| parse_media_type(&item))
        .filter(|range| range.q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    ranges
}

/// Parses `type/subtype;k=v;...`.
pub fn parse_media_type(item: &str) -> Option<MediaRange> {
    let mut parts = split_outside_quotes(item, ';').into_iter();
    let essence = parts.next()?.trim().to_ascii_lowercase();
    if essence.is_empty() || !essence.contains('/') {
        return None;
    }
    let mut params = Vec::new();
    let mut q = 1.0;
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').to_owned();
        if key == "q" {
            q = value.parse().unwrap_or(1.0);
        } else {
            params.push((key, value));
        }
    }
    Some(MediaRange { essence, params, q })
}

fn split_outside_quotes(input: &str, separator: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in input.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == separator && !quoted {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    out.push(current);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// Aggregated discovery versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryVersion {
    V2,
    V2beta1,
}

impl DiscoveryVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V2 => "apidiscovery.k8s.io/v2",
            Self::V2beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::V2 => DISCOVERY_V2,
            Self::V2beta1 => DISCOVERY_V2BETA1,
        }
    }
}

/// The representation to answer with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// The object or list itself, as JSON.
    #[default]
    Json,
    /// The object or list itself, as YAML (only when JSON is not accepted).
    Yaml,
    /// A `meta.k8s.io` Table; `version` is `v1` or `v1beta1`.
    Table { version: String },
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    PartialObjectMetadata { version: String },
    /// Aggregated discovery (for `/api` and `/apis` only).
    Discovery(DiscoveryVersion),
}

impl Output {
    pub fn is_table(&self) -> bool {
        matches!(self, Self::Table { .. })
    }
}

/// What the server could answer for the request at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerable {
    /// `/api`, `/apis`: discovery documents or the plain legacy ones.
    DiscoveryRoot,
    /// get, list and watch of resources: Tables and metadata too.
    ResourceRead,
    /// Anything else: JSON only.
    Plain,
}

/// Picks the first entry of `accept` the server can serve; an empty or
/// absent header means JSON; nothing acceptable is 406.
pub fn negotiate(accept: Option<&str>, answerable: Answerable) -> Result<Output, ApiError> {
    let Some(header) = accept.filter(|h| !h.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for range in parse_accept(header) {
        let as_kind = range.param("as");
        let group = range.param("g");
        let version = range.param("v");
        if range.is_json_like() || range.essence == YAML {
            match (as_kind, group, version) {
                (None, _, _) => {
                    return Ok(if range.essence == YAML {
                        Output::Yaml
                    } else {
                        Output::Json
                    });
                }
                (Some("Table"), Some("meta.k8s.io"), Some(v @ ("v1" | "v1beta1")))
                    if answerable == Answerable::ResourceRead =>
                {
                    return Ok(Output::Table {
                        version: v.to_owned(),
                    });
                }
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                    Some(v @ ("v1" | "v1beta1")),
                ) if answerable == Answerable::ResourceRead => {
                    return Ok(Output::PartialObjectMetadata {
                        version: v.to_owned(),
                    });
                }
                (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some(v))
                    if answerable == Answerable::DiscoveryRoot =>
                {
                    match v {
                        "v2" => return Ok(Output::Discovery(DiscoveryVersion::V2)),
                        "v2beta1" => return Ok(Output::Discovery(DiscoveryVersion::V2beta1)),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    Err(ApiError::new(
        StatusReason::NotAcceptable,
        format!(
            "only the following media types are accepted: {JSON}, {YAML}, {PROTOBUF} (requested {header})"
        ),
    ))
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// No body.
    Empty,
    Json,
    Yaml,
    /// The `k8s\0` envelope; the server turns it into JSON before the
    /// handler sees it.
    Protobuf,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    /// Server-side apply (`application/apply-patch+yaml`).
    ApplyPatch,
}

impl BodyType {
    /// From a Content-Type header; unknown types are 415.
    pub fn from_content_type(
        content_type: Option<&str>,
        body_empty: bool,
    ) -> Result<Self, ApiError> {
        let Some(header) = content_type.filter(|h| !h.trim().is_empty()) else {
            return Ok(if body_empty { Self::Empty } else { Self::Json });
        };
        let essence = parse_media_type(header)
            .map(|m| m.essence)
            .unwrap_or_default();
        match essence.as_str() {
            JSON => Ok(Self::Json),
            YAML | "application/x-yaml" | "text/yaml" => Ok(Self::Yaml),
            PROTOBUF => Ok(Self::Protobuf),
            "application/json-patch+json" => Ok(Self::JsonPatch),
            "application/merge-patch+json" => Ok(Self::MergePatch),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMergePatch),
            "application/apply-patch+yaml" => Ok(Self::ApplyPatch),
            _ if body_empty => Ok(Self::Empty),
            _ => Err(ApiError::unsupported_media_type(header)),
        }
    }

    /// The type the handler receives after the server's conversion
    /// (YAML and protobuf bodies become JSON).
    pub fn after_conversion(self) -> Self {
        match self {
            Self::Yaml | Self::Protobuf => Self::Json,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    const KUBECTL_133_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    const KUBECTL_127_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn parses_lists_and_params() {
        let ranges = parse_accept(KUBECTL_GET);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].param("as"), Some("Table"));
        assert_eq!(ranges[1].param("v"), Some("v1beta1"));
        assert_eq!(ranges[2].essence, "application/json");
        let ranges = parse_accept("text/html;q=0.5, application/json;q=0.9, */*;q=0");
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].essence, "application/json");
    }

    #[test]
    fn kubectl_headers() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET), Answerable::ResourceRead).expect("get"),
            Output::Table {
                version: "v1".into()
            }
        );
        assert_eq!(
            negotiate(Some(KUBECTL_GET), Answerable::Plain).expect("plain"),
            Output::Json
        );
        assert_eq!(
            negotiate(Some(KUBECTL_133_DISCOVERY), Answerable::DiscoveryRoot).expect("v2"),
            Output::Discovery(DiscoveryVersion::V2)
        );
        assert_eq!(
            negotiate(Some(KUBECTL_127_DISCOVERY), Answerable::DiscoveryRoot).expect("v2beta1"),
            Output::Discovery(DiscoveryVersion::V2beta1)
        );
        assert_eq!(
            negotiate(Some(KUBECTL_133_DISCOVERY), Answerable::Plain).expect("legacy"),
            Output::Json
        );
        assert_eq!(
            negotiate(
                Some("application/vnd.kubernetes.protobuf,application/json"),
                Answerable::Plain
            )
            .expect("protobuf"),
            Output::Json
        );
        assert_eq!(
            negotiate(Some("*/*"), Answerable::ResourceRead).expect("any"),
            Output::Json
        );
        assert_eq!(
            negotiate(None, Answerable::ResourceRead).expect("none"),
            Output::Json
        );
        assert_eq!(
            negotiate(Some("application/yaml"), Answerable::Plain).expect("yaml"),
            Output::Yaml
        );
        assert_eq!(
            negotiate(
                Some("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"),
                Answerable::ResourceRead
            )
            .expect("metadata"),
            Output::PartialObjectMetadata { version: "v1".into() }
        );
        let err = negotiate(Some("text/html"), Answerable::Plain).expect_err("406");
        assert_eq!(err.code, 406);
        let err = negotiate(
            Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
            Answerable::Plain,
        )
        .expect_err("table only");
        assert_eq!(err.code, 406);
    }

    #[test]
    fn body_types() {
        let t = |ct: &str| BodyType::from_content_type(Some(ct), false);
        assert_eq!(t("application/json").expect("json"), BodyType::Json);
        assert_eq!(
            t("application/json; charset=utf-8").expect("json"),
            BodyType::Json
        );
        assert_eq!(
            t("application/vnd.kubernetes.protobuf").expect("pb"),
            BodyType::Protobuf
        );
        assert_eq!(
            t("application/strategic-merge-patch+json").expect("smp"),
            BodyType::StrategicMergePatch
        );
        assert_eq!(
            t("application/merge-patch+json").expect("mp"),
            BodyType::MergePatch
        );
        assert_eq!(
            t("application/json-patch+json").expect("jp"),
            BodyType::JsonPatch
        );
        assert_eq!(
            t("application/apply-patch+yaml").expect("apply"),
            BodyType::ApplyPatch
        );
        assert_eq!(t("application/yaml").expect("yaml"), BodyType::Yaml);
        assert_eq!(t("text/plain").expect_err("415").code, 415);
        assert_eq!(
            BodyType::from_content_type(None, true).expect("empty"),
            BodyType::Empty
        );
    }
}

//! Kubernetes protobuf request bodies turned into JSON.
//!
//! kubectl 1.32 and later send `application/vnd.kubernetes.protobuf` for
//! `auth can-i`, `auth whoami` and `create <kind>`. The body is the magic
//! `k8s\0` followed by a `runtime.Unknown{typeMeta{apiVersion, kind}, raw,
//! contentEncoding, contentType}` whose `raw` is the typed message.
//!
//! The typed message is decoded by a small protobuf walker driven by field
//! tables (field number → JSON name and kind) for the kinds kubectl sends.
//! This was chosen over the prost types of `k8s-pb`: those carry no serde,
//! so each kind would need hand-written conversion of every nested struct
//! (PodSpec alone has forty fields), plus a large extra crate to compile;
//! the tables are a few lines per message and the walker is shared.
//!
//! Go writes every non-pointer field, zero or not, and its JSON leaves out
//! the zero ones (`omitempty`); the walker does the same. Pointer fields
//! (`replicas`, `immutable`, ...) are marked `keep` and kept when zero. An
//! unknown field with a zero value carries nothing and is skipped; an
//! unknown field with a value is an error, so nothing is silently lost.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::clock;

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s magic prefix")]
    NoMagic,
    #[error("malformed protobuf in {message}: {why}")]
    Malformed { message: String, why: String },
    #[error("protobuf envelope has no typeMeta kind")]
    NoKind,
    #[error("protobuf bodies of {api_version}, Kind={kind} are not supported; send JSON")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("protobuf field {number} of {message} is not supported; send JSON")]
    UnsupportedField { message: String, number: u32 },
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
}

/// The decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub api_version: String,
    pub kind: String,
    pub raw: Vec<u8>,
    pub content_encoding: String,
    pub content_type: String,
}

/// Splits the `k8s\0` + `runtime.Unknown` envelope.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope, ProtobufError> {
    let inner = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let mut envelope = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: Vec::new(),
        content_encoding: String::new(),
        content_type: String::new(),
    };
    let malformed = |why: String| ProtobufError::Malformed {
        message: "runtime.Unknown".into(),
        why,
    };
    let mut reader = Reader::new(inner);
    while let Some((number, wire)) = reader.key().map_err(malformed)? {
        match (number, wire) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut tm = Reader::new(type_meta);
                while let Some((n, w)) = tm.key().map_err(malformed)? {
                    match (n, w) {
                        (1, WireValue::Bytes(b)) => {
                            envelope.api_version = utf8(b).map_err(malformed)?
                        }
                        (2, WireValue::Bytes(b)) => envelope.kind = utf8(b).map_err(malformed)?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(raw)) => envelope.raw = raw.to_vec(),
            (3, WireValue::Bytes(b)) => envelope.content_encoding = utf8(b).map_err(malformed)?,
            (4, WireValue::Bytes(b)) => envelope.content_type = utf8(b).map_err(malformed)?,
            _ => {}
        }
    }
    if envelope.kind.is_empty() {
        return Err(ProtobufError::NoKind);
    }
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(envelope.content_encoding));
    }
    Ok(envelope)
}

/// Decodes a protobuf body into the JSON object kubectl would have sent.
pub fn to_json(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = decode_envelope(body)?;
    let message = message_for(&envelope.api_version, &envelope.kind).ok_or_else(|| {
        ProtobufError::UnsupportedKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        }
    })?;
    let decoded = decode_message(message, &envelope.raw)?;
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(envelope.kind.clone()));
    object.insert(
        "apiVersion".into(),
        Value::String(envelope.api_version.clone()),
    );
    if let Value::Object(fields) = decoded {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

/// The kinds whose protobuf bodies are understood, as `(apiVersion, kind)`.
pub fn supported_kinds() -> Vec<(&'static str, &'static str)> {
    KINDS.iter().map(|(v, k, _)| (*v, *k)).collect()
}

fn message_for(api_version: &str, kind: &str) -> Option<&'static Msg> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, m)| *m)
}

// ---------------------------------------------------------------------------
// Wire format.

enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "truncated varint".to_owned())?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| format!("length {len} runs past the end"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field number and value, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, WireValue<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number too large".to_owned())?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| "length too large".to_owned())?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((number, value)))
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
}

// ---------------------------------------------------------------------------
// Field tables.

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    /// `bytes` (base64 in JSON).
    Bytes,
    Bool,
    I32,
    I64,
    Msg(&'static Msg),
    /// `map<string,string>`.
    MapStr,
    /// `map<string,bytes>` (base64 in JSON).
    MapBytes,
    /// `map<string,Message>`.
    MapMsg(&'static Msg),
    /// `map<string,Quantity>`.
    MapQuantity,
    /// `metav1.Time` → RFC 3339.
    Time,
    IntOrString,
    /// `metav1.FieldsV1`: a message whose field 1 holds JSON bytes,
    /// embedded as that JSON (managedFields' `fieldsV1`).
    RawJson,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    number: u32,
    name: &'static str,
    kind: Kind,
    repeated: bool,
    /// A Go pointer field: keep it even when zero.
    keep: bool,
}

#[derive(Debug)]
struct Msg {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
        keep: false,
    }
}

/// A pointer field (kept when zero).
const fn p(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
        keep: true,
    }
}

/// A repeated field.
const fn r(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
        keep: false,
    }
}

use Kind::{Bool, I32, I64, IntOrString, MapBytes, MapQuantity, MapStr, Str, Time};

/// Fields that only a status carries: nothing is expected on create, and
/// anything non-zero is reported rather than dropped.
static OPAQUE_STATUS: Msg = Msg {
    name: "status",
    fields: &[],
};

static OWNER_REFERENCE: Msg = Msg {
    name: "OwnerReference",
    fields: &[
        f(5, "apiVersion", Str),
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        p(6, "controller", Bool),
        p(7, "blockOwnerDeletion", Bool),
    ],
};

/// A `metadata.managedFields` entry: clients that read an object and write
/// it back (kubectl 1.32+ in protobuf) send them along.
static MANAGED_FIELDS_ENTRY: Msg = Msg {
    name: "ManagedFieldsEntry",
    fields: &[
        f(1, "manager", Str),
        f(2, "operation", Str),
        f(3, "apiVersion", Str),
        f(4, "time", Time),
        f(6, "fieldsType", Str),
        f(7, "fieldsV1", Kind::RawJson),
        f(8, "subresource", Str),
    ],
};

static OBJECT_META: Msg = Msg {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Str),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", I64),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        p(10, "deletionGracePeriodSeconds", I64),
        f(11, "labels", MapStr),
        f(12, "annotations", MapStr),
        r(13, "ownerReferences", Kind::Msg(&OWNER_REFERENCE)),
        r(14, "finalizers", Str),
        r(17, "managedFields", Kind::Msg(&MANAGED_FIELDS_ENTRY)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Msg = Msg {
    name: "LabelSelectorRequirement",
    fields: &[f(1, "key", Str), f(2, "operator", Str), r(3, "values", Str)],
};

static LABEL_SELECTOR: Msg = Msg {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", MapStr),
        r(
            2,
            "matchExpressions",
            Kind::Msg(&LABEL_SELECTOR_REQUIREMENT),
        ),
    ],
};

// authorization.k8s.io/v1

static RAW_SELECTOR: Msg = Msg {
    name: "SelectorAttributes",
    fields: &[f(1, "rawSelector", Str)],
};

static RESOURCE_ATTRIBUTES: Msg = Msg {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Str),
        f(2, "verb", Str),
        f(3, "group", Str),
        f(4, "version", Str),
        f(5, "resource", Str),
        f(6, "subresource", Str),
        f(7, "name", Str),
        f(8, "fieldSelector", Kind::Msg(&RAW_SELECTOR)),
        f(9, "labelSelector", Kind::Msg(&RAW_SELECTOR)),
    ],
};

static NON_RESOURCE_ATTRIBUTES: Msg = Msg {
    name: "NonResourceAttributes",
    fields: &[f(1, "path", Str), f(2, "verb", Str)],
};

static SSAR_SPEC: Msg = Msg {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Kind::Msg(&RESOURCE_ATTRIBUTES)),
        f(
            2,
            "nonResourceAttributes",
            Kind::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
    ],
};

static SAR_STATUS: Msg = Msg {
    name: "SubjectAccessReviewStatus",
    fields: &[
        f(1, "allowed", Bool),
        f(4, "denied", Bool),
        f(2, "reason", Str),
        f(3, "evaluationError", Str),
    ],
};

static SELF_SUBJECT_ACCESS_REVIEW: Msg = Msg {
    name: "SelfSubjectAccessReview",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&SSAR_SPEC)),
        f(3, "status", Kind::Msg(&SAR_STATUS)),
    ],
};

// authentication.k8s.io/v1

static USER_INFO: Msg = Msg {
    name: "UserInfo",
    fields: &[
        f(1, "username", Str),
        f(2, "uid", Str),
        r(3, "groups", Str),
        f(4, "extra", Kind::MapMsg(&EXTRA_VALUE)),
    ],
};

static EXTRA_VALUE: Msg = Msg {
    name: "ExtraValue",
    fields: &[r(1, "items", Str)],
};

static SELF_SUBJECT_REVIEW_STATUS: Msg = Msg {
    name: "SelfSubjectReviewStatus",
    fields: &[f(1, "userInfo", Kind::Msg(&USER_INFO))],
};

static SELF_SUBJECT_REVIEW: Msg = Msg {
    name: "SelfSubjectReview",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "status", Kind::Msg(&SELF_SUBJECT_REVIEW_STATUS)),
    ],
};

static BOUND_OBJECT_REFERENCE: Msg = Msg {
    name: "BoundObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiVersion", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
    ],
};

static TOKEN_REQUEST_SPEC: Msg = Msg {
    name: "TokenRequestSpec",
    fields: &[
        r(1, "audiences", Str),
        p(4, "expirationSeconds", I64),
        p(3, "boundObjectRef", Kind::Msg(&BOUND_OBJECT_REFERENCE)),
    ],
};

static TOKEN_REQUEST: Msg = Msg {
    name: "TokenRequest",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&TOKEN_REQUEST_SPEC)),
        f(3, "status", Kind::Msg(&OPAQUE_STATUS)),
    ],
};

// core/v1

static NAMESPACE_SPEC: Msg = Msg {
    name: "NamespaceSpec",
    fields: &[r(1, "finalizers", Str)],
};

static NAMESPACE_STATUS: Msg = Msg {
    name: "NamespaceStatus",
    fields: &[f(1, "phase", Str)],
};

static NAMESPACE: Msg = Msg {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&NAMESPACE_SPEC)),
        f(3, "status", Kind::Msg(&NAMESPACE_STATUS)),
    ],
};

static CERTIFICATE_SIGNING_REQUEST: Msg = Msg {
    name: "CertificateSigningRequest",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&CSR_SPEC)),
        f(3, "status", Kind::Msg(&CSR_STATUS)),
    ],
};

static CSR_SPEC: Msg = Msg {
    name: "CertificateSigningRequestSpec",
    fields: &[
        f(1, "request", Kind::Bytes),
        f(2, "username", Str),
        f(3, "uid", Str),
        r(4, "groups", Str),
        r(5, "usages", Str),
        f(6, "extra", Kind::MapMsg(&EXTRA_VALUE)),
        f(7, "signerName", Str),
        p(8, "expirationSeconds", I32),
    ],
};

static CSR_STATUS: Msg = Msg {
    name: "CertificateSigningRequestStatus",
    fields: &[
        r(1, "conditions", Kind::Msg(&CSR_CONDITION)),
        f(2, "certificate", Kind::Bytes),
    ],
};

static CSR_CONDITION: Msg = Msg {
    name: "CertificateSigningRequestCondition",
    fields: &[
        f(1, "type", Str),
        f(2, "reason", Str),
        f(3, "message", Str),
        f(4, "lastUpdateTime", Time),
        f(5, "lastTransitionTime", Time),
        f(6, "status", Str),
    ],
};

static CONFIG_MAP: Msg = Msg {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "data", MapStr),
        f(3, "binaryData", MapBytes),
        p(4, "immutable", Bool),
    ],
};

static SECRET: Msg = Msg {
    name: "Secret",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "data", MapBytes),
        f(4, "stringData", MapStr),
        f(3, "type", Str),
        p(5, "immutable", Bool),
    ],
};

static OBJECT_REFERENCE: Msg = Msg {
    name: "ObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "namespace", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "resourceVersion", Str),
        f(7, "fieldPath", Str),
    ],
};

static LOCAL_OBJECT_REFERENCE: Msg = Msg {
    name: "LocalObjectReference",
    fields: &[f(1, "name", Str)],
};

static SERVICE_ACCOUNT: Msg = Msg {
    name: "ServiceAccount",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        r(2, "secrets", Kind::Msg(&OBJECT_REFERENCE)),
        r(3, "imagePullSecrets", Kind::Msg(&LOCAL_OBJECT_REFERENCE)),
        p(4, "automountServiceAccountToken", Bool),
    ],
};

static SERVICE_PORT: Msg = Msg {
    name: "ServicePort",
    fields: &[
        f(1, "name", Str),
        f(2, "protocol", Str),
        p(6, "appProtocol", Str),
        f(3, "port", I32),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", I32),
    ],
};

static SERVICE_SPEC: Msg = Msg {
    name: "ServiceSpec",
    fields: &[
        r(1, "ports", Kind::Msg(&SERVICE_PORT)),
        f(2, "selector", MapStr),
        f(3, "clusterIP", Str),
        r(18, "clusterIPs", Str),
        f(4, "type", Str),
        r(5, "externalIPs", Str),
        f(7, "sessionAffinity", Str),
        f(8, "loadBalancerIP", Str),
        r(9, "loadBalancerSourceRanges", Str),
        f(10, "externalName", Str),
        f(11, "externalTrafficPolicy", Str),
        f(12, "healthCheckNodePort", I32),
        f(13, "publishNotReadyAddresses", Bool),
        r(19, "ipFamilies", Str),
        p(17, "ipFamilyPolicy", Str),
        p(20, "allocateLoadBalancerNodePorts", Bool),
        p(21, "loadBalancerClass", Str),
        p(22, "internalTrafficPolicy", Str),
        p(23, "trafficDistribution", Str),
    ],
};

static SERVICE_STATUS: Msg = Msg {
    name: "ServiceStatus",
    fields: &[f(1, "loadBalancer", Kind::Msg(&OPAQUE_STATUS))],
};

static SERVICE: Msg = Msg {
    name: "Service",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&SERVICE_SPEC)),
        f(3, "status", Kind::Msg(&SERVICE_STATUS)),
    ],
};

static CONTAINER_PORT: Msg = Msg {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", I32),
        f(3, "containerPort", I32),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};

static KEY_SELECTOR: Msg = Msg {
    name: "KeySelector",
    fields: &[
        f(
            1,
            "localObjectReference",
            Kind::Msg(&LOCAL_OBJECT_REFERENCE),
        ),
        f(2, "key", Str),
        p(3, "optional", Bool),
    ],
};

static ENV_VAR_SOURCE: Msg = Msg {
    name: "EnvVarSource",
    fields: &[
        p(3, "configMapKeyRef", Kind::Msg(&KEY_SELECTOR)),
        p(4, "secretKeyRef", Kind::Msg(&KEY_SELECTOR)),
    ],
};

static ENV_VAR: Msg = Msg {
    name: "EnvVar",
    fields: &[
        f(1, "name", Str),
        f(2, "value", Str),
        p(3, "valueFrom", Kind::Msg(&ENV_VAR_SOURCE)),
    ],
};

static RESOURCE_REQUIREMENTS: Msg = Msg {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)],
};

static VOLUME_MOUNT: Msg = Msg {
    name: "VolumeMount",
    fields: &[
        f(1, "name", Str),
        f(2, "readOnly", Bool),
        f(3, "mountPath", Str),
        f(4, "subPath", Str),
        p(5, "mountPropagation", Str),
        f(6, "subPathExpr", Str),
        p(7, "recursiveReadOnly", Str),
    ],
};

static CONTAINER: Msg = Msg {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        r(3, "command", Str),
        r(4, "args", Str),
        f(5, "workingDir", Str),
        r(6, "ports", Kind::Msg(&CONTAINER_PORT)),
        r(7, "env", Kind::Msg(&ENV_VAR)),
        f(8, "resources", Kind::Msg(&RESOURCE_REQUIREMENTS)),
        r(9, "volumeMounts", Kind::Msg(&VOLUME_MOUNT)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        f(20, "terminationMessagePolicy", Str),
        p(24, "restartPolicy", Str),
    ],
};

static TOLERATION: Msg = Msg {
    name: "Toleration",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        f(3, "value", Str),
        f(4, "effect", Str),
        p(5, "tolerationSeconds", I64),
    ],
};

static POD_SPEC: Msg = Msg {
    name: "PodSpec",
    fields: &[
        r(20, "initContainers", Kind::Msg(&CONTAINER)),
        r(2, "containers", Kind::Msg(&CONTAINER)),
        f(3, "restartPolicy", Str),
        p(4, "terminationGracePeriodSeconds", I64),
        p(5, "activeDeadlineSeconds", I64),
        f(6, "dnsPolicy", Str),
        f(7, "nodeSelector", MapStr),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        p(21, "automountServiceAccountToken", Bool),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        p(27, "shareProcessNamespace", Bool),
        r(15, "imagePullSecrets", Kind::Msg(&LOCAL_OBJECT_REFERENCE)),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        f(19, "schedulerName", Str),
        r(22, "tolerations", Kind::Msg(&TOLERATION)),
        f(24, "priorityClassName", Str),
        p(25, "priority", I32),
        p(29, "runtimeClassName", Str),
        p(30, "enableServiceLinks", Bool),
        p(31, "preemptionPolicy", Str),
        p(35, "setHostnameAsFQDN", Bool),
        p(37, "hostUsers", Bool),
    ],
};

static POD_TEMPLATE_SPEC: Msg = Msg {
    name: "PodTemplateSpec",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&POD_SPEC)),
    ],
};

// apps/v1

static ROLLING_UPDATE_DEPLOYMENT: Msg = Msg {
    name: "RollingUpdateDeployment",
    fields: &[
        p(1, "maxUnavailable", IntOrString),
        p(2, "maxSurge", IntOrString),
    ],
};

static DEPLOYMENT_STRATEGY: Msg = Msg {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Str),
        p(2, "rollingUpdate", Kind::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

static DEPLOYMENT_SPEC: Msg = Msg {
    name: "DeploymentSpec",
    fields: &[
        p(1, "replicas", I32),
        p(2, "selector", Kind::Msg(&LABEL_SELECTOR)),
        f(3, "template", Kind::Msg(&POD_TEMPLATE_SPEC)),
        f(4, "strategy", Kind::Msg(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", I32),
        p(6, "revisionHistoryLimit", I32),
        f(7, "paused", Bool),
        p(9, "progressDeadlineSeconds", I32),
    ],
};

static DEPLOYMENT: Msg = Msg {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Kind::Msg(&OPAQUE_STATUS)),
    ],
};

// batch/v1

static JOB_SPEC: Msg = Msg {
    name: "JobSpec",
    fields: &[
        p(1, "parallelism", I32),
        p(2, "completions", I32),
        p(3, "activeDeadlineSeconds", I64),
        p(4, "selector", Kind::Msg(&LABEL_SELECTOR)),
        p(5, "manualSelector", Bool),
        f(6, "template", Kind::Msg(&POD_TEMPLATE_SPEC)),
        p(7, "backoffLimit", I32),
        p(8, "ttlSecondsAfterFinished", I32),
        p(9, "completionMode", Str),
        p(10, "suspend", Bool),
        p(12, "backoffLimitPerIndex", I32),
        p(13, "maxFailedIndexes", I32),
        p(14, "podReplacementPolicy", Str),
        p(15, "managedBy", Str),
    ],
};

static JOB: Msg = Msg {
    name: "Job",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&JOB_SPEC)),
        f(3, "status", Kind::Msg(&OPAQUE_STATUS)),
    ],
};

static JOB_TEMPLATE_SPEC: Msg = Msg {
    name: "JobTemplateSpec",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&JOB_SPEC)),
    ],
};

static CRON_JOB_SPEC: Msg = Msg {
    name: "CronJobSpec",
    fields: &[
        f(1, "schedule", Str),
        p(8, "timeZone", Str),
        p(2, "startingDeadlineSeconds", I64),
        f(3, "concurrencyPolicy", Str),
        p(4, "suspend", Bool),
        f(5, "jobTemplate", Kind::Msg(&JOB_TEMPLATE_SPEC)),
        p(6, "successfulJobsHistoryLimit", I32),
        p(7, "failedJobsHistoryLimit", I32),
    ],
};

static CRON_JOB: Msg = Msg {
    name: "CronJob",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&CRON_JOB_SPEC)),
        f(3, "status", Kind::Msg(&OPAQUE_STATUS)),
    ],
};

// rbac.authorization.k8s.io/v1

static POLICY_RULE: Msg = Msg {
    name: "PolicyRule",
    fields: &[
        r(1, "verbs", Str),
        r(2, "apiGroups", Str),
        r(3, "resources", Str),
        r(4, "resourceNames", Str),
        r(5, "nonResourceURLs", Str),
    ],
};

static ROLE: Msg = Msg {
    name: "Role",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        r(2, "rules", Kind::Msg(&POLICY_RULE)),
    ],
};

static AGGREGATION_RULE: Msg = Msg {
    name: "AggregationRule",
    fields: &[r(1, "clusterRoleSelectors", Kind::Msg(&LABEL_SELECTOR))],
};

static CLUSTER_ROLE: Msg = Msg {
    name: "ClusterRole",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        r(2, "rules", Kind::Msg(&POLICY_RULE)),
        p(3, "aggregationRule", Kind::Msg(&AGGREGATION_RULE)),
    ],
};

static SUBJECT: Msg = Msg {
    name: "Subject",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiGroup", Str),
        f(3, "name", Str),
        f(4, "namespace", Str),
    ],
};

static ROLE_REF: Msg = Msg {
    name: "RoleRef",
    fields: &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
};

static ROLE_BINDING: Msg = Msg {
    name: "RoleBinding",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        r(2, "subjects", Kind::Msg(&SUBJECT)),
        f(3, "roleRef", Kind::Msg(&ROLE_REF)),
    ],
};

static KINDS: &[(&str, &str, &Msg)] = &[
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &SELF_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
    (
        "authentication.k8s.io/v1beta1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
    (
        "authentication.k8s.io/v1alpha1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
    ("authentication.k8s.io/v1", "TokenRequest", &TOKEN_REQUEST),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ConfigMap", &CONFIG_MAP),
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &CERTIFICATE_SIGNING_REQUEST,
    ),
    ("v1", "Secret", &SECRET),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Service", &SERVICE),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("rbac.authorization.k8s.io/v1", "Role", &ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &ROLE_BINDING),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &ROLE_BINDING,
    ),
];

// ---------------------------------------------------------------------------
// The walker.

fn decode_message(message: &'static Msg, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let malformed = |why: String| ProtobufError::Malformed {
        message: message.name.to_owned(),
        why,
    };
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.key().map_err(malformed)? {
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            if is_zero(&wire) {
                continue;
            }
            return Err(ProtobufError::UnsupportedField {
                message: message.name.to_owned(),
                number,
            });
        };
        let value = decode_value(message, field, wire)?;
        let Some(value) = value else { continue };
        if field.repeated {
            match out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => match value {
                    // Packed repeated scalars arrive as one array.
                    Value::Array(many) => items.extend(many),
                    one => items.push(one),
                },
                other => *other = Value::Array(vec![value]),
            }
        } else if matches!(
            field.kind,
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) | Kind::MapQuantity
        ) {
            if let (Value::Object(entry), Value::Object(existing)) = (
                value,
                out.entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new())),
            ) {
                existing.extend(entry);
            }
        } else {
            out.insert(field.name.to_owned(), value);
        }
    }
    Ok(Value::Object(out))
}

fn is_zero(wire: &WireValue<'_>) -> bool {
    match wire {
        WireValue::Varint(v) | WireValue::Fixed64(v) => *v == 0,
        WireValue::Fixed32(v) => *v == 0,
        WireValue::Bytes(b) => b.is_empty(),
    }
}

/// One field's value; `None` when Go's JSON would leave it out.
fn decode_value(
    message: &'static Msg,
    field: &Field,
    wire: WireValue<'_>,
) -> Result<Option<Value>, ProtobufError> {
    let wrong = || ProtobufError::Malformed {
        message: message.name.to_owned(),
        why: format!(
            "field {} ({}) has the wrong wire type",
            field.number, field.name
        ),
    };
    let bad = |why: String| ProtobufError::Malformed {
        message: message.name.to_owned(),
        why: format!("field {} ({}): {why}", field.number, field.name),
    };
    let keep = field.keep || field.repeated;
    let value = match field.kind {
        Kind::Str => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            let s = utf8(b).map_err(bad)?;
            (keep || !s.is_empty()).then_some(Value::String(s))
        }
        Kind::Bytes => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            (keep || !b.is_empty())
                .then(|| Value::String(base64::engine::general_purpose::STANDARD.encode(b)))
        }
        Kind::Bool => match wire {
            WireValue::Varint(v) => (keep || v != 0).then_some(Value::Bool(v != 0)),
            _ => return Err(wrong()),
        },
        Kind::I32 | Kind::I64 => match wire {
            WireValue::Varint(v) => {
                // int32 negatives are sign-extended to 64 bits on the wire.
                let n = if matches!(field.kind, Kind::I32) {
                    i64::from(v as i64 as i32)
                } else {
                    v as i64
                };
                (keep || n != 0).then_some(Value::from(n))
            }
            WireValue::Bytes(packed) => {
                let mut reader = Reader::new(packed);
                let mut items = Vec::new();
                while reader.pos < packed.len() {
                    items.push(Value::from(reader.varint().map_err(bad)? as i64));
                }
                Some(Value::Array(items))
            }
            _ => return Err(wrong()),
        },
        Kind::Msg(inner) => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            Some(decode_message(inner, b)?)
        }
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) | Kind::MapQuantity => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            let (key, value) = map_entry(b).map_err(bad)?;
            let value = match (field.kind, value) {
                (Kind::MapStr, v) => Value::String(utf8(v).map_err(bad)?),
                (Kind::MapBytes, v) => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v))
                }
                (Kind::MapMsg(inner), v) if inner.name == "ExtraValue" => decode_message(inner, v)?
                    .get("items")
                    .cloned()
                    .unwrap_or_else(|| Value::Array(Vec::new())),
                (Kind::MapMsg(inner), v) => decode_message(inner, v)?,
                (_, v) => quantity(v).map_err(bad)?,
            };
            let mut entry = Map::new();
            entry.insert(key, value);
            Some(Value::Object(entry))
        }
        Kind::Time => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            let (seconds, _nanos) = time_fields(b).map_err(bad)?;
            (seconds != 0).then(|| Value::String(clock::format_rfc3339(seconds)))
        }
        Kind::IntOrString => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            Some(int_or_string(b).map_err(bad)?)
        }
        Kind::RawJson => {
            let WireValue::Bytes(b) = wire else {
                return Err(wrong());
            };
            Some(raw_json(b).map_err(bad)?)
        }
    };
    Ok(value)
}

fn map_entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let mut reader = Reader::new(bytes);
    let mut key = String::new();
    let mut value: &[u8] = &[];
    while let Some((n, w)) = reader.key()? {
        match (n, w) {
            (1, WireValue::Bytes(k)) => key = utf8(k)?,
            (2, WireValue::Bytes(v)) => value = v,
            _ => return Err("map entry with an unexpected field".into()),
        }
    }
    Ok((key, value))
}

/// The JSON held in field 1 (`Raw`) of a `FieldsV1` message.
fn raw_json(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::new(bytes);
    let mut raw: &[u8] = &[];
    while let Some((n, w)) = reader.key()? {
        match (n, w) {
            (1, WireValue::Bytes(b)) => raw = b,
            _ => return Err("FieldsV1 with an unexpected field".into()),
        }
    }
    if raw.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(raw).map_err(|e| format!("FieldsV1 is not JSON: {e}"))
}

fn time_fields(bytes: &[u8]) -> Result<(i64, i64), String> {
    let mut reader = Reader::new(bytes);
    let (mut seconds, mut nanos) = (0i64, 0i64);
    while let Some((n, w)) = reader.key()? {
        match (n, w) {
            (1, WireValue::Varint(v)) => seconds = v as i64,
            (2, WireValue::Varint(v)) => nanos = i64::from(v as i64 as i32),
            _ => return Err("Time with an unexpected field".into()),
        }
    }
    Ok((seconds, nanos))
}

fn int_or_string(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::new(bytes);
    let (mut kind, mut int, mut string) = (0u64, 0i64, String::new());
    while let Some((n, w)) = reader.key()? {
        match (n, w) {
            (1, WireValue::Varint(v)) => kind = v,
            (2, WireValue::Varint(v)) => int = i64::from(v as i64 as i32),
            (3, WireValue::Bytes(s)) => string = utf8(s)?,
            _ => return Err("IntOrString with an unexpected field".into()),
        }
    }
    Ok(if kind == 1 {
        Value::String(string)
    } else {
        Value::from(int)
    })
}

fn quantity(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::new(bytes);
    let mut text = String::new();
    while let Some((n, w)) = reader.key()? {
        if let (1, WireValue::Bytes(s)) = (n, w) {
            text = utf8(s)?;
        }
    }
    Ok(Value::String(text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(number: u32, payload: &[u8], out: &mut Vec<u8>) {
        encode_varint(u64::from(number << 3 | 2), out);
        encode_varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut type_meta);
        bytes_field(2, kind.as_bytes(), &mut type_meta);
        let mut out = MAGIC.to_vec();
        bytes_field(1, &type_meta, &mut out);
        bytes_field(2, raw, &mut out);
        out
    }

    fn fixture(name: &str) -> Value {
        let bytes = match name {
            "ssar-get-pods" => {
                &include_bytes!("../../tests/fixtures/protobuf/ssar-get-pods.pb")[..]
            }
            "ssar-create-deployments-kube-system" => &include_bytes!(
                "../../tests/fixtures/protobuf/ssar-create-deployments-kube-system.pb"
            )[..],
            "selfsubjectreview" => {
                &include_bytes!("../../tests/fixtures/protobuf/selfsubjectreview.pb")[..]
            }
            "namespace" => &include_bytes!("../../tests/fixtures/protobuf/namespace.pb")[..],
            "configmap" => &include_bytes!("../../tests/fixtures/protobuf/configmap.pb")[..],
            "secret" => &include_bytes!("../../tests/fixtures/protobuf/secret.pb")[..],
            "serviceaccount" => {
                &include_bytes!("../../tests/fixtures/protobuf/serviceaccount.pb")[..]
            }
            "deployment" => &include_bytes!("../../tests/fixtures/protobuf/deployment.pb")[..],
            "service-clusterip" => {
                &include_bytes!("../../tests/fixtures/protobuf/service-clusterip.pb")[..]
            }
            "service-nodeport" => {
                &include_bytes!("../../tests/fixtures/protobuf/service-nodeport.pb")[..]
            }
            other => panic!("no fixture {other}"),
        };
        to_json(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Bodies captured from kubectl 1.33 (see tests/fixtures/protobuf/README.md).
    #[test]
    fn kubectl_133_fixtures() {
        assert_eq!(
            fixture("ssar-get-pods"),
            json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                   "metadata": {}, "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
                   "status": {}})
        );
        assert_eq!(
            fixture("ssar-create-deployments-kube-system")["spec"]["resourceAttributes"],
            // Captured without discovery, so kubectl could not split the group off.
            json!({"namespace": "kube-system", "verb": "create", "resource": "deployments.apps"})
        );
        let review = fixture("selfsubjectreview");
        assert_eq!(review["kind"], "SelfSubjectReview");
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(
            fixture("namespace"),
            json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}})
        );
        assert_eq!(
            fixture("configmap"),
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm1"}, "data": {"a": "b", "c": "d"}})
        );
        assert_eq!(
            fixture("secret"),
            json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s1"}, "data": {"pw": "aHVudGVyMg=="}})
        );
        assert_eq!(
            fixture("serviceaccount"),
            json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "sa1"}})
        );
        assert_eq!(
            fixture("deployment"),
            json!({"kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}], "resources": {}}]}},
                    "strategy": {}},
                "status": {}})
        );
        assert_eq!(
            fixture("service-nodeport"),
            json!({"kind": "Service", "apiVersion": "v1",
                "metadata": {"name": "np1", "labels": {"app": "np1"}},
                "spec": {"ports": [{"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443}],
                    "selector": {"app": "np1"}, "type": "NodePort"},
                "status": {"loadBalancer": {}}})
        );
        assert_eq!(fixture("service-clusterip")["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(decode_envelope(b"{}"), Err(ProtobufError::NoMagic));
        assert!(matches!(
            to_json(&envelope("v1", "Pod", &[])),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
        let mut truncated = MAGIC.to_vec();
        truncated.extend_from_slice(&[0x0a, 0x10, 0x01]);
        assert!(matches!(
            decode_envelope(&truncated),
            Err(ProtobufError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_fields_zero_skipped_nonzero_refused() {
        // ConfigMap with metadata{name: "a"} and an unknown field 9 = "".
        let mut meta = Vec::new();
        bytes_field(1, b"a", &mut meta);
        let mut raw = Vec::new();
        bytes_field(1, &meta, &mut raw);
        bytes_field(9, b"", &mut raw);
        let value = to_json(&envelope("v1", "ConfigMap", &raw)).expect("decode");
        assert_eq!(
            value,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}})
        );
        bytes_field(9, b"x", &mut raw);
        assert_eq!(
            to_json(&envelope("v1", "ConfigMap", &raw)),
            Err(ProtobufError::UnsupportedField {
                message: "ConfigMap".into(),
                number: 9
            })
        );
    }

    #[test]
    fn negative_int32_and_time() {
        // DeploymentSpec.replicas = -1 (sign-extended), metadata.creationTimestamp = 1700000000.
        let mut spec = vec![0x08];
        encode_varint(u64::MAX, &mut spec);
        let mut time = vec![0x08];
        encode_varint(1_700_000_000, &mut time);
        let mut meta = Vec::new();
        bytes_field(8, &time, &mut meta);
        let mut raw = Vec::new();
        bytes_field(1, &meta, &mut raw);
        bytes_field(2, &spec, &mut raw);
        let value = to_json(&envelope("apps/v1", "Deployment", &raw)).expect("decode");
        assert_eq!(value["spec"]["replicas"], -1);
        assert_eq!(
            value["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn managed_fields_are_decoded_with_their_fields_v1_json() {
        let mut fields_v1 = Vec::new();
        bytes_field(1, br#"{"f:data":{"f:a":{}}}"#, &mut fields_v1);
        let mut entry = Vec::new();
        bytes_field(1, b"kubectl", &mut entry);
        bytes_field(2, b"Apply", &mut entry);
        bytes_field(3, b"v1", &mut entry);
        bytes_field(6, b"FieldsV1", &mut entry);
        bytes_field(7, &fields_v1, &mut entry);
        let mut meta = Vec::new();
        bytes_field(1, b"cm1", &mut meta);
        bytes_field(17, &entry, &mut meta);
        let mut raw = Vec::new();
        bytes_field(1, &meta, &mut raw);
        let value = to_json(&envelope("v1", "ConfigMap", &raw)).expect("decode");
        assert_eq!(
            value["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}])
        );
    }
}

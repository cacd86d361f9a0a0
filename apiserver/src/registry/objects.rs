//! The generic verbs over stored objects.
//!
//! - **create**: the body's kind must match the resource; `metadata.name`
//!   or `generateName` (plus 5 random characters); the namespace must
//!   exist (404 otherwise); `uid`, `creationTimestamp`, `generation: 1`
//!   are set; the status of kinds with a status subresource is reset
//!   (namespaces start `Active`, pods `Pending`); then strict field check,
//!   defaulting, validation, and a create-if-absent transaction (409
//!   AlreadyExists).
//! - **update**: `metadata.resourceVersion`, when given, must be the
//!   current revision (409 Conflict with kube's message); the identity
//!   fields are kept from the stored object; the main resource cannot
//!   change `status` of kinds with a status subresource, and the status
//!   subresource changes only `status`; `generation` is bumped when `spec`
//!   changes. An update that removes the last finalizer of an object being
//!   deleted deletes it (unless a pod's grace period is counting down).
//! - **patch**: JSON, merge or strategic merge patch (schema from the
//!   OpenAPI definitions) applied to the current object, then the update
//!   rules, retried on a storage conflict.
//! - **server-side apply** (`application/apply-patch+yaml`, `fieldManager`
//!   required → 422): the configuration merged by [`patch::apply`] (409
//!   with `FieldManagerConflict` causes unless `force=true`), creating the
//!   object when absent, then the update rules. A patch or apply that
//!   changes nothing is not written.
//! - **managedFields**: every create, update, patch and scale records an
//!   `Update` by its field manager (`fieldManager`, else the User-Agent's
//!   program name) through [`patch::record_update`].
//! - **delete**: [`super::deletion`] decides from the propagation policy
//!   and grace period: objects held by finalizers (`orphan` and
//!   `foregroundDeletion` included) and bound pods counting down their
//!   grace period get `deletionTimestamp` and stay (200 with the object);
//!   others are removed (compare-and-swap on the revision read). A
//!   namespace becomes `Terminating`, its contents are removed, then it is.
//! - **list**/**watch**: see [`list_objects`] and [`watch`].
//! - **scale**: `autoscaling/v1` Scale views of `spec.replicas`.
//!
//! Service writes go through the ClusterIP and NodePort allocators
//! ([`super::services`]) around the storage write; a created Job gets its
//! generated selector before validation.
//!
//! `dryRun=All` runs everything except the storage write.

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};

use super::Registry;
use super::deletion;
use super::fields::{
    has_finalizers, meta_str, metadata_mut, name_suffix, new_uid, now_rfc3339, object_mut,
    prune_unknown_fields, selector_string, strict_message, unknown_fields,
};
use crate::http::request::{FieldValidation, QueryOptions};
use crate::http::status::StatusCause;
use crate::http::{
    ApiError, ApiResponse, BodyType, RequestContext, ResourceDescriptor, Verb, WatchEvent,
    WatchEventType,
};
use crate::openapi::GroupVersionKind;
use crate::patch;
use crate::storage::{ContinueToken, KeyValue, ListOptions, StorageError};

/// How many times a patch or scale is retried on a storage conflict.
const CONFLICT_RETRIES: usize = 8;

/// kube's message for a stale resourceVersion.
pub const CONFLICT_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A failed write: refused before storage (allocation) or by storage.
#[derive(Debug)]
enum CommitError {
    Api(ApiError),
    Storage(StorageError),
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl CommitError {
    fn into_api(self, op: &Op<'_>, name: &str) -> ApiError {
        match self {
            Self::Api(e) => e,
            Self::Storage(e) => op.err(name, e),
        }
    }
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Main,
    Status,
    /// `certificatesigningrequests/approval`: only `status.conditions`
    /// (Approved / Denied) change; the issued certificate stays.
    Approval,
}

pub(crate) async fn handle(
    registry: &Registry,
    user: &crate::auth::UserInfo,
    desc: &ResourceDescriptor,
    ctx: &RequestContext,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    let a = &ctx.attributes;
    let namespace = if desc.namespaced {
        a.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let name = a.name.clone().unwrap_or_default();
    let query = with_default_field_manager(&a.query, &ctx.headers);
    let op = Op {
        registry,
        user,
        desc,
        namespace,
        query: &query,
        warnings: std::sync::Mutex::default(),
    };
    let result = dispatch(&op, ctx, &name, body).await;
    let mut warnings = op.warnings.into_inner().unwrap_or_default();
    warnings.dedup();
    match result {
        Ok(response) if !warnings.is_empty() => {
            Ok(ApiResponse::Warnings(warnings, Box::new(response)))
        }
        other => other,
    }
}

async fn dispatch(
    op: &Op<'_>,
    ctx: &RequestContext,
    name: &str,
    body: Bytes,
) -> Result<ApiResponse, ApiError> {
    let a = &ctx.attributes;
    let name = name.to_owned();
    validate_write_options(ctx)?;
    match (&a.verb, a.subresource.as_deref()) {
        (Verb::Get, None | Some("status")) => op.get(&name).await.map(ok),
        (Verb::Get, Some("scale")) => op.get(&name).await.map(|o| ok(op.scale_of(&o))),
        (Verb::List, None) => op.list().await,
        (Verb::Watch, None) => op.watch(a.name.as_deref()).await,
        (Verb::Create, None) => op.create(parse_body(ctx, &body)?).await,
        (Verb::Update, None) => op.update(&name, parse_body(ctx, &body)?, Part::Main).await,
        (Verb::Update, Some("status")) => {
            op.update(&name, parse_body(ctx, &body)?, Part::Status)
                .await
        }
        (Verb::Update, Some("scale")) => op.update_scale(&name, parse_body(ctx, &body)?).await,
        (Verb::Patch, None) if ctx.body_type == BodyType::ApplyPatch => {
            op.server_side_apply(&name, &body, ApplyThrough::Resource)
                .await
        }
        (Verb::Patch, Some("status")) if ctx.body_type == BodyType::ApplyPatch => {
            op.server_side_apply(&name, &body, ApplyThrough::Status)
                .await
        }
        (Verb::Patch, Some("scale")) if ctx.body_type == BodyType::ApplyPatch => {
            op.server_side_apply(&name, &body, ApplyThrough::Scale)
                .await
        }
        (Verb::Patch, None) => op.patch(&name, ctx.body_type, &body, Part::Main).await,
        (Verb::Patch, Some("status")) => op.patch(&name, ctx.body_type, &body, Part::Status).await,
        (Verb::Patch, Some("scale")) => op.patch_scale(&name, ctx.body_type, &body).await,
        (Verb::Update, Some("approval")) if op.is_csr() => {
            op.update(&name, parse_body(ctx, &body)?, Part::Approval)
                .await
        }
        (Verb::Patch, Some("approval")) if op.is_csr() => {
            op.patch(&name, ctx.body_type, &body, Part::Approval).await
        }
        (Verb::Create, Some("binding")) if op.is_pod() => {
            op.bind(&name, parse_body(ctx, &body)?).await
        }
        (Verb::Delete, None) => op.delete(&name).await,
        (Verb::DeleteCollection, None) => op.delete_collection().await,
        _ => Err(ApiError::method_not_allowed(ctx.method.as_str())),
    }
}

/// The longest `fieldManager` kube accepts.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// kube's CreateOptions, UpdateOptions and PatchOptions validation of the
/// client's own options (before any defaulting): `fieldManager` at most
/// 128 bytes of printable characters and required for an apply, `force`
/// only on an apply; a 422 listing every problem.
fn validate_write_options(ctx: &RequestContext) -> Result<(), ApiError> {
    let query = &ctx.attributes.query;
    let apply = ctx.body_type == BodyType::ApplyPatch;
    let kind = match ctx.attributes.verb {
        Verb::Create => "CreateOptions.meta.k8s.io",
        Verb::Update => "UpdateOptions.meta.k8s.io",
        Verb::Patch => "PatchOptions.meta.k8s.io",
        _ => return Ok(()),
    };
    let mut causes = Vec::new();
    let mut cause = |reason: &str, message: String, field: &str| {
        causes.push(StatusCause {
            reason: reason.to_owned(),
            message,
            field: field.to_owned(),
        });
    };
    if ctx.attributes.verb == Verb::Patch {
        if !apply && query.force.is_some() {
            cause(
                "FieldValueForbidden",
                "Forbidden: may not be specified for non-apply patch".to_owned(),
                "force",
            );
        }
        if apply && query.field_manager.is_none() {
            // The manager must be named by the client, not derived.
            cause(
                "FieldValueRequired",
                "Required value: is required for apply patch".to_owned(),
                "fieldManager",
            );
        }
    }
    let manager = query.field_manager.as_deref().unwrap_or_default();
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        cause(
            "FieldValueTooLong",
            format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
            "fieldManager",
        );
    }
    for (position, character) in manager.char_indices() {
        if !is_printable(character) {
            cause(
                "FieldValueInvalid",
                format!(
                    "Invalid value: {manager:?}: invalid character U+{:04X} (at position {position})",
                    u32::from(character)
                ),
                "fieldManager",
            );
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("meta.k8s.io", kind, "", causes))
    }
}

/// Go's `unicode.IsPrint`, near enough: no control characters and no
/// spaces other than the ASCII one.
fn is_printable(character: char) -> bool {
    character == ' ' || !(character.is_control() || character.is_whitespace())
}

/// The request's options with `fieldManager` defaulted as kube does: the
/// program name of the User-Agent (`kubectl/v1.33.0 (linux/amd64) ...` →
/// `kubectl`), at most 128 bytes.
fn with_default_field_manager(query: &QueryOptions, headers: &http::HeaderMap) -> QueryOptions {
    let mut query = query.clone();
    if query.field_manager.is_none() {
        let agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let program: String = agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect();
        query.field_manager = Some(if program.is_empty() {
            "unknown".to_owned()
        } else {
            program
        });
    }
    query
}

/// kube's answer to a refused apply: conflicts are a 409 whose causes
/// name each field (`FieldManagerConflict`), the rest a 400.
fn apply_error(error: patch::ApplyError) -> ApiError {
    match &error {
        patch::ApplyError::Conflicts(conflicts) => {
            let mut status = ApiError::new(
                crate::http::status::StatusReason::Conflict,
                error.to_string(),
            );
            for conflict in conflicts {
                status = status.with_cause(
                    "FieldManagerConflict",
                    &format!("conflict with {}", conflict.manager),
                    &conflict.field,
                );
            }
            status
        }
        _ => ApiError::bad_request(error.to_string()),
    }
}

/// The subresource a part is written through, as managedFields name it.
fn subresource_of(part: Part) -> &'static str {
    match part {
        Part::Main => "",
        Part::Status => "status",
        Part::Approval => "approval",
    }
}

/// Where a server-side apply is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApplyThrough {
    Resource,
    Status,
    Scale,
}

impl ApplyThrough {
    /// The subresource its managedFields entry names.
    fn subresource(self) -> &'static str {
        match self {
            Self::Resource => "",
            Self::Status => "status",
            Self::Scale => "scale",
        }
    }
}

/// kube's answer to a binding: a `Status` of success with code 201.
fn binding_success() -> ApiResponse {
    ApiResponse::Object {
        status: 201,
        object: json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201
        }),
    }
}

/// The `PodScheduled` condition set to `True`, replacing an earlier one.
fn set_pod_scheduled(pod: &mut Value) {
    let status = object_mut(pod).entry("status").or_insert_with(|| json!({}));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    conditions.push(json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now_rfc3339(),
    }));
}

fn ok(object: Value) -> ApiResponse {
    ApiResponse::Object {
        status: 200,
        object,
    }
}

fn parse_body(ctx: &RequestContext, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if !matches!(ctx.body_type, BodyType::Json | BodyType::Empty) {
        return Err(ApiError::unsupported_media_type(
            ctx.headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type JSON): {e}"
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

/// Maps a storage error about `name` to the API's answer.
pub(crate) fn storage_error(desc: &ResourceDescriptor, name: &str, e: StorageError) -> ApiError {
    match &e {
        StorageError::NotFound { .. } => ApiError::not_found(&desc.group, &desc.plural, name),
        StorageError::AlreadyExists { .. } => {
            ApiError::already_exists(&desc.group, &desc.plural, name)
        }
        StorageError::Conflict { .. } => {
            ApiError::conflict(&desc.group, &desc.plural, name, CONFLICT_MESSAGE)
        }
        StorageError::Compacted { revision, .. } => {
            ApiError::expired(format!("too old resource version: {revision}"))
        }
        StorageError::FutureRevision { revision, .. } => ApiError::timeout(format!(
            "Too large resource version: {revision}, current: unknown"
        )),
        StorageError::Unavailable { .. } => ApiError::service_unavailable(e.to_string()),
        StorageError::InvalidArgument { .. } => ApiError::bad_request(e.to_string()),
        StorageError::Internal { .. } => ApiError::internal(e.to_string()),
    }
}

/// The object stored at `kv`, with its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(object)
}

/// The stored form: no resourceVersion, no selfLink.
pub(crate) fn encode(object: &Value) -> Result<Bytes, ApiError> {
    let mut object = object.clone();
    let meta = metadata_mut(&mut object);
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Label, field and name filters of a list or watch.
#[derive(Clone)]
struct Filter {
    query: QueryOptions,
    name: Option<String>,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        if let Some(name) = &self.name
            && meta_str(object, "name") != Some(name.as_str())
        {
            return false;
        }
        if let Some(labels) = &self.query.label_selector
            && !labels.matches(object)
        {
            return false;
        }
        if let Some(fields) = &self.query.field_selector
            && !fields.matches(object)
        {
            return false;
        }
        true
    }

    fn is_trivial(&self) -> bool {
        self.name.is_none()
            && self
                .query
                .label_selector
                .as_ref()
                .is_none_or(|s| s.is_empty())
            && self
                .query
                .field_selector
                .as_ref()
                .is_none_or(|s| s.is_empty())
    }
}

struct Op<'a> {
    registry: &'a Registry,
    /// The authenticated caller (recorded in CertificateSigningRequests).
    user: &'a crate::auth::UserInfo,
    desc: &'a ResourceDescriptor,
    namespace: String,
    query: &'a QueryOptions,
    /// Unknown fields dropped under `fieldValidation=Warn`, as warnings.
    warnings: std::sync::Mutex<Vec<String>>,
}

impl Op<'_> {
    fn key(&self, name: &str) -> String {
        self.registry.key(self.desc, &self.namespace, name)
    }

    fn gvk(&self) -> GroupVersionKind {
        self.desc.gvk()
    }

    fn has_status(&self) -> bool {
        self.desc.subresource("status").is_some()
    }

    fn err(&self, name: &str, e: StorageError) -> ApiError {
        storage_error(self.desc, name, e)
    }

    async fn read(&self, name: &str) -> Result<(KeyValue, Value), ApiError> {
        let key = self.key(name);
        let kv = self
            .registry
            .storage
            .get(&key)
            .await
            .map_err(|e| self.err(name, e))?
            .ok_or_else(|| ApiError::not_found(&self.desc.group, &self.desc.plural, name))?;
        let object = decode(&kv)?;
        Ok((kv, object))
    }

    async fn get(&self, name: &str) -> Result<Value, ApiError> {
        Ok(self.read(name).await?.1)
    }

    // ---- list and watch ----

    async fn list(&self) -> Result<ApiResponse, ApiError> {
        let filter = Filter {
            query: self.query.clone(),
            name: None,
        };
        let page = list_objects(
            self.registry,
            self.desc,
            &self.namespace,
            self.query,
            &filter,
        )
        .await?;
        let mut metadata = json!({"resourceVersion": page.revision.to_string()});
        if let Some(token) = page.continue_token {
            metadata["continue"] = json!(token);
        }
        if let Some(remaining) = page.remaining {
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(ApiResponse::List(json!({
            "kind": format!("{}List", self.desc.kind),
            "apiVersion": self.desc.group_version(),
            "metadata": metadata,
            "items": page.items,
        })))
    }

    async fn watch(&self, name: Option<&str>) -> Result<ApiResponse, ApiError> {
        let filter = Filter {
            query: self.query.clone(),
            name: name.map(str::to_owned),
        };
        watch(
            self.registry,
            self.desc,
            &self.namespace,
            self.query,
            filter,
        )
        .await
    }

    // ---- create ----

    /// A CSR says who asked for it: the apiserver fills `spec.username`,
    /// `uid`, `groups` and `extra` from the authenticated caller, whatever the
    /// client sent, so approvers can trust them.
    fn record_requester(object: &mut Value, user: &crate::auth::UserInfo) {
        let Some(root) = object.as_object_mut() else {
            return;
        };
        let spec = root.entry("spec").or_insert_with(|| json!({}));
        let Some(spec) = spec.as_object_mut() else {
            return;
        };
        spec.insert("username".into(), json!(user.name));
        if user.uid.is_empty() {
            spec.remove("uid");
        } else {
            spec.insert("uid".into(), json!(user.uid));
        }
        spec.insert("groups".into(), json!(user.groups));
        if user.extra.is_empty() {
            spec.remove("extra");
        } else {
            spec.insert("extra".into(), json!(user.extra));
        }
    }

    async fn create(&self, object: Value) -> Result<ApiResponse, ApiError> {
        self.create_owned(object, None).await
    }

    /// A create; `applied` is the ownership a server-side apply computed
    /// (else the create is recorded as an `Update` by the field manager).
    async fn create_owned(
        &self,
        mut object: Value,
        applied: Option<patch::ManagedFields>,
    ) -> Result<ApiResponse, ApiError> {
        let desc = self.desc;
        self.check_kind(&object)?;
        let requested_ownership = patch::requested(&object);
        let meta = metadata_mut(&mut object);
        let body_namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if desc.namespaced {
            if !body_namespace.is_empty() && body_namespace != self.namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(self.namespace));
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if generate.is_empty() {
                return Err(
                    ApiError::invalid(&desc.group, &desc.kind, "", Vec::new()).with_cause(
                        "FieldValueRequired",
                        "name or generateName is required",
                        "metadata.name",
                    ),
                );
            }
            name = format!("{generate}{}", name_suffix());
            meta.insert("name".into(), json!(name));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(field);
        }
        self.reset_status_on_create(&mut object);
        if desc.namespaced {
            self.require_namespace().await?;
        }
        if desc.group == "batch" && desc.kind == "Job" {
            let uid = meta_str(&object, "uid").unwrap_or_default().to_owned();
            crate::validation::prepare_job_selector(&mut object, &uid);
        }
        if desc.group == "certificates.k8s.io" && desc.kind == "CertificateSigningRequest" {
            Self::record_requester(&mut object, self.user);
        }
        self.admit(&mut object, None)?;
        match applied {
            Some(managed) => managed.store_in(&mut object),
            None => self.record_update(None, &mut object, requested_ownership, ""),
        }
        let object = if self.is_service() {
            let name = &name;
            self.registry
                .services
                .write(
                    &desc.kind,
                    None,
                    Some(object),
                    self.query.dry_run,
                    |new| async move {
                        let object = self.store_new(name, new.unwrap_or(Value::Null)).await?;
                        Ok::<_, ApiError>((object.clone(), Some(object)))
                    },
                )
                .await?
        } else {
            self.store_new(&name, object).await?
        };
        Ok(ApiResponse::Object {
            status: 201,
            object,
        })
    }

    /// The storage write of a create (none on a dry run).
    async fn store_new(&self, name: &str, mut object: Value) -> Result<Value, ApiError> {
        if self.query.dry_run {
            return Ok(object);
        }
        let key = self.key(name);
        let revision = self
            .registry
            .storage
            .create(&key, encode(&object)?)
            .await
            .map_err(|e| self.err(name, e))?;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(revision.to_string()));
        tracing::debug!(%key, revision, "created");
        Ok(object)
    }

    /// What a dry-run update of a Service would allocate (nothing is
    /// kept).
    async fn dry_run_allocations(&self, object: Value, old: &Value) -> Result<Value, ApiError> {
        if !self.is_service() {
            return Ok(object);
        }
        self.registry
            .services
            .write(
                &self.desc.kind,
                Some(old),
                Some(object),
                true,
                |new| async { Ok::<_, ApiError>((new.unwrap_or(Value::Null), None)) },
            )
            .await
    }

    fn is_service(&self) -> bool {
        self.desc.group.is_empty() && self.desc.plural == "services"
    }

    /// [`Self::commit`], allocating and releasing Service addresses and
    /// ports around it (`old` is the stored state).
    async fn commit_allocating(
        &self,
        name: &str,
        object: Value,
        old: &Value,
        expected: i64,
    ) -> Result<Value, CommitError> {
        if !self.is_service() {
            return self
                .commit(name, object, expected)
                .await
                .map_err(CommitError::Storage);
        }
        let deletes = deletion::removed_on_write(&object);
        let (new, kept) = if deletes {
            (None, Some(object))
        } else {
            (Some(object), None)
        };
        self.registry
            .services
            .write(&self.desc.kind, Some(old), new, false, |new| async move {
                let object = new.or(kept).unwrap_or(Value::Null);
                let written = self
                    .commit(name, object, expected)
                    .await
                    .map_err(CommitError::Storage)?;
                let stays = (!deletes).then(|| written.clone());
                Ok((written, stays))
            })
            .await
    }

    /// The last step of a read-modify-write retry loop (patch, apply): an
    /// object equal to the stored one is not written (no new
    /// resourceVersion, as in kube), a dry run only allocates, anything
    /// else is committed against `mod_revision`. `Ok(None)`: another write
    /// came first; read again.
    async fn write_if_changed(
        &self,
        name: &str,
        object: Value,
        current: Value,
        mod_revision: i64,
    ) -> Result<Option<Value>, ApiError> {
        if object == current {
            return Ok(Some(current));
        }
        if self.query.dry_run {
            return Ok(Some(self.dry_run_allocations(object, &current).await?));
        }
        match self
            .commit_allocating(name, object, &current, mod_revision)
            .await
        {
            Ok(object) => Ok(Some(object)),
            Err(CommitError::Storage(e)) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into_api(self, name)),
        }
    }

    fn check_kind(&self, object: &Value) -> Result<(), ApiError> {
        let desc = self.desc;
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if (!kind.is_empty() && kind != desc.kind)
            || (!api_version.is_empty() && api_version != desc.group_version())
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                desc.group_version()
            ))
            .with_details("", &desc.group, &desc.kind));
        }
        Ok(())
    }

    fn reset_status_on_create(&self, object: &mut Value) {
        let map = object_mut(object);
        map.insert("kind".into(), json!(self.desc.kind));
        map.insert("apiVersion".into(), json!(self.desc.group_version()));
        if !self.has_status() {
            return;
        }
        match (self.desc.group.as_str(), self.desc.kind.as_str()) {
            ("", "Namespace") => {
                map.insert("status".into(), json!({"phase": "Active"}));
            }
            ("", "Pod") => {
                map.insert("status".into(), json!({"phase": "Pending"}));
            }
            // Nodes report their own status when they register.
            ("", "Node") => {}
            ("", "Service") => {
                map.insert("status".into(), json!({"loadBalancer": {}}));
            }
            _ => {
                map.insert("status".into(), json!({}));
            }
        }
    }

    async fn require_namespace(&self) -> Result<(), ApiError> {
        let Some(ns_desc) = self.registry.descriptor("", "namespaces") else {
            return Ok(());
        };
        let key = self.registry.key(ns_desc, "", &self.namespace);
        let found = self
            .registry
            .storage
            .get(&key)
            .await
            .map_err(|e| storage_error(ns_desc, &self.namespace, e))?;
        match found {
            None => Err(ApiError::not_found("", "namespaces", &self.namespace)),
            Some(kv) => {
                let ns = decode(&kv)?;
                if ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
                    return Err(ApiError::forbidden(format!(
                        "{} is forbidden: unable to create new content in namespace {} because it is being terminated",
                        self.desc.plural, self.namespace
                    )));
                }
                Ok(())
            }
        }
    }

    /// Strict field check, defaulting and validation.
    fn admit(&self, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let gvk = self.gvk();
        if let Some(schema) = self.registry.definitions.for_gvk(&gvk) {
            match self.query.field_validation {
                FieldValidation::Strict => {
                    let unknown = unknown_fields(object, schema);
                    if !unknown.is_empty() {
                        return Err(ApiError::bad_request(strict_message(&unknown)));
                    }
                }
                FieldValidation::Warn => {
                    let dropped = prune_unknown_fields(object, schema);
                    if let Ok(mut warnings) = self.warnings.lock() {
                        warnings.extend(dropped.iter().map(|f| format!("unknown field \"{f}\"")));
                    }
                }
                FieldValidation::Ignore => {
                    prune_unknown_fields(object, schema);
                }
            }
        }
        self.registry.admission.default_object(&gvk, object);
        let causes = self.registry.admission.validate_object(&gvk, object, old);
        if !causes.is_empty() {
            let name = meta_str(object, "name").unwrap_or_default().to_owned();
            return Err(ApiError::invalid(
                &self.desc.group,
                &self.desc.kind,
                &name,
                causes,
            ));
        }
        Ok(())
    }

    // ---- update ----

    /// The new state of `old` when a client sends `new` for `part`.
    fn prepare_update(&self, old: &Value, mut new: Value, part: Part) -> Result<Value, ApiError> {
        if part == Part::Approval {
            let mut result = old.clone();
            let conditions = new
                .get("status")
                .and_then(|s| s.get("conditions"))
                .cloned()
                .unwrap_or_else(|| json!([]));
            let map = object_mut(&mut result);
            let status = map.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                status.insert("conditions".into(), conditions);
            }
            return Ok(result);
        }
        if part == Part::Status {
            let mut result = old.clone();
            let status = new.get("status").cloned();
            let map = object_mut(&mut result);
            match status {
                Some(s) => map.insert("status".into(), s),
                None => map.remove("status"),
            };
            return Ok(result);
        }
        self.check_kind(&new)?;
        if self.is_service() {
            crate::validation::carry_over_service_allocations(&mut new, old);
            super::services::drop_type_dependent_fields(&mut new, old);
        }
        let new_map = object_mut(&mut new);
        new_map.insert("kind".into(), json!(self.desc.kind));
        new_map.insert("apiVersion".into(), json!(self.desc.group_version()));
        if self.has_status() {
            match old.get("status") {
                Some(s) => new_map.insert("status".into(), s.clone()),
                None => new_map.remove("status"),
            };
        }
        let spec_changed = old.get("spec") != new.get("spec");
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = metadata_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("managedFields");
        meta.remove("selfLink");
        if spec_changed {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta.insert("generation".into(), json!(generation + 1));
        }
        Ok(new)
    }

    /// Writes `object` over the revision `expected`; deletes it instead
    /// when it is being deleted and has no finalizers left.
    async fn commit(
        &self,
        name: &str,
        mut object: Value,
        expected: i64,
    ) -> Result<Value, StorageError> {
        let key = self.key(name);
        if deletion::removed_on_write(&object) {
            let deleted = self.registry.storage.delete(&key, Some(expected)).await?;
            metadata_mut(&mut object).insert(
                "resourceVersion".into(),
                json!(deleted.revision.to_string()),
            );
            return Ok(object);
        }
        let bytes = match encode(&object) {
            Ok(b) => b,
            Err(e) => {
                return Err(StorageError::Internal {
                    operation: crate::storage::Operation::Update,
                    key,
                    reason: e.message,
                });
            }
        };
        let revision = self.registry.storage.update(&key, bytes, expected).await?;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(revision.to_string()));
        Ok(object)
    }

    async fn update(&self, name: &str, new: Value, part: Part) -> Result<ApiResponse, ApiError> {
        if let Some(body_name) = meta_str(&new, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let (kv, current) = self.read(name).await?;
        let expected = match meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty()) {
            Some(rv) => {
                let rv: i64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                if rv != kv.mod_revision {
                    return Err(ApiError::conflict(
                        &self.desc.group,
                        &self.desc.plural,
                        name,
                        CONFLICT_MESSAGE,
                    ));
                }
                rv
            }
            None => kv.mod_revision,
        };
        let requested_ownership = patch::requested(&new);
        let mut object = self.prepare_update(&current, new, part)?;
        self.admit(&mut object, Some(&current))?;
        self.record_update(
            Some(&current),
            &mut object,
            requested_ownership,
            subresource_of(part),
        );
        if self.query.dry_run {
            return Ok(ok(self.dry_run_allocations(object, &current).await?));
        }
        let object = self
            .commit_allocating(name, object, &current, expected)
            .await
            .map_err(|e| e.into_api(self, name))?;
        Ok(ok(object))
    }

    // ---- patch ----

    fn apply_patch(
        &self,
        gvk: &GroupVersionKind,
        current: &Value,
        body_type: BodyType,
        patch_doc: &Value,
    ) -> Result<Value, ApiError> {
        let bad = |e: patch::PatchError| ApiError::bad_request(e.to_string());
        match body_type {
            BodyType::JsonPatch => patch::json_patch(current, patch_doc).map_err(bad),
            BodyType::MergePatch => Ok(patch::merge_patch(current, patch_doc)),
            BodyType::StrategicMergePatch => {
                let schema = self.registry.definitions.for_gvk(gvk);
                patch::strategic_merge_patch(current, patch_doc, schema).map_err(bad)
            }
            // Server-side apply has its own path (the main resource and status).
            BodyType::ApplyPatch => Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml (server-side apply is served on the resource and its status)",
            )),
            _ => Err(ApiError::unsupported_media_type(
                "the patch must be application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json",
            )),
        }
    }

    fn parse_patch(body: &[u8]) -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    }

    async fn patch(
        &self,
        name: &str,
        body_type: BodyType,
        body: &[u8],
        part: Part,
    ) -> Result<ApiResponse, ApiError> {
        let patch_doc = Self::parse_patch(body)?;
        let gvk = self.gvk();
        for _ in 0..CONFLICT_RETRIES {
            let (kv, current) = self.read(name).await?;
            let patched = self.apply_patch(&gvk, &current, body_type, &patch_doc)?;
            if let Some(rv) = meta_str(&patched, "resourceVersion")
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    &self.desc.group,
                    &self.desc.plural,
                    name,
                    CONFLICT_MESSAGE,
                ));
            }
            let requested_ownership = patch::requested(&patched);
            let mut object = self.prepare_update(&current, patched, part)?;
            self.admit(&mut object, Some(&current))?;
            self.record_update(
                Some(&current),
                &mut object,
                requested_ownership,
                subresource_of(part),
            );
            if let Some(written) = self
                .write_if_changed(name, object, current, kv.mod_revision)
                .await?
            {
                return Ok(ok(written));
            }
        }
        Err(ApiError::conflict(
            &self.desc.group,
            &self.desc.plural,
            name,
            CONFLICT_MESSAGE,
        ))
    }

    // ---- field ownership and server-side apply ----

    /// Top-level fields a write through `subresource` cannot own: the main
    /// resource does not write `status` of kinds with a status
    /// subresource, `/status` does not write `spec`.
    fn unowned_fields(&self, subresource: &str) -> &'static [&'static str] {
        match subresource {
            "" if self.has_status() => &["status"],
            "status" => &["spec"],
            _ => &[],
        }
    }

    /// The field manager writing (the `fieldManager` parameter, else
    /// derived from the User-Agent in [`handle`]).
    fn field_manager(&self) -> &str {
        self.query.field_manager.as_deref().unwrap_or("unknown")
    }

    /// Records the write of `object` over `live` as an `Update` by the
    /// field manager.
    fn record_update(
        &self,
        live: Option<&Value>,
        object: &mut Value,
        requested: patch::Requested,
        subresource: &str,
    ) {
        let time = now_rfc3339();
        let api_version = self.desc.group_version();
        let writer = patch::Writer {
            manager: self.field_manager(),
            operation: patch::Operation::Update,
            api_version: &api_version,
            subresource,
            time: &time,
        };
        let schema = self.registry.definitions.for_gvk(&self.gvk());
        patch::record_update(
            live,
            object,
            requested,
            &writer,
            schema,
            self.unowned_fields(subresource),
        );
    }

    /// `PATCH` with `application/apply-patch+yaml`: creates the object when
    /// absent, else merges the configuration into it (see
    /// [`patch::apply`]); then the update pipeline as for other patches.
    /// Through `/status` only `status` is applied (and owned, as
    /// subresource `status`); through `/scale` an `autoscaling/v1` Scale
    /// whose `spec.replicas` is the object's (kube's scale handler); both
    /// need the object to exist.
    async fn server_side_apply(
        &self,
        name: &str,
        body: &[u8],
        through: ApplyThrough,
    ) -> Result<ApiResponse, ApiError> {
        let subresource = through.subresource();
        tracing::debug!(
            name,
            manager = self.field_manager(),
            force = self.query.forced(),
            subresource,
            "server-side apply"
        );
        let mut config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        match meta_str(&config, "name") {
            Some(body_name) if body_name != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            Some(_) => {}
            None => {
                metadata_mut(&mut config).insert("name".into(), json!(name));
            }
        }
        if through == ApplyThrough::Scale {
            config = self.configuration_of_scale(name, &config)?;
        }
        self.check_kind(&config)?;
        let part = match through {
            ApplyThrough::Status => Part::Status,
            ApplyThrough::Resource | ApplyThrough::Scale => Part::Main,
        };
        let answer = |object: Value| match through {
            ApplyThrough::Scale => ok(self.scale_of(&object)),
            ApplyThrough::Resource | ApplyThrough::Status => ok(object),
        };
        let time = now_rfc3339();
        let api_version = self.desc.group_version();
        let request = patch::ApplyRequest {
            writer: patch::Writer {
                manager: self.field_manager(),
                operation: patch::Operation::Apply,
                api_version: &api_version,
                subresource,
                time: &time,
            },
            force: self.query.forced(),
            ignored: match through {
                // `/status` writes nothing but status (the metadata too
                // stays as stored), so it owns nothing else.
                ApplyThrough::Status => &["spec", "metadata"],
                ApplyThrough::Resource | ApplyThrough::Scale => self.unowned_fields(""),
            },
        };
        let schema = self.registry.definitions.for_gvk(&self.gvk());
        for _ in 0..CONFLICT_RETRIES {
            let (kv, current) = match self.read(name).await {
                Ok(found) => found,
                Err(e) if e.code == 404 && through == ApplyThrough::Resource => {
                    let applied = patch::server_side_apply(None, &config, schema, &request)
                        .map_err(apply_error)?;
                    let managed = patch::ManagedFields::of_object(Some(&applied));
                    return self.create_owned(applied, Some(managed)).await;
                }
                Err(e) => return Err(e),
            };
            let applied = patch::server_side_apply(Some(&current), &config, schema, &request)
                .map_err(apply_error)?;
            if let Some(rv) = meta_str(&applied, "resourceVersion")
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    &self.desc.group,
                    &self.desc.plural,
                    name,
                    CONFLICT_MESSAGE,
                ));
            }
            let managed = patch::ManagedFields::of_object(Some(&applied));
            let mut object = self.prepare_update(&current, applied, part)?;
            self.admit(&mut object, Some(&current))?;
            // Defaults filled in after the merge belong to nobody.
            managed.store_in(&mut object);
            if let Some(written) = self
                .write_if_changed(name, object, current, kv.mod_revision)
                .await?
            {
                return Ok(answer(written));
            }
        }
        Err(ApiError::conflict(
            &self.desc.group,
            &self.desc.plural,
            name,
            CONFLICT_MESSAGE,
        ))
    }

    /// The object's configuration an applied `autoscaling/v1` Scale stands
    /// for: its name, resourceVersion and `spec.replicas` (none when the
    /// Scale leaves them out, which gives the field up).
    fn configuration_of_scale(&self, name: &str, scale: &Value) -> Result<Value, ApiError> {
        let kind = scale
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = scale
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if (kind, api_version) != ("Scale", "autoscaling/v1") {
            return Err(ApiError::bad_request(format!(
                "the scale subresource applies an autoscaling/v1 Scale, not {api_version} {kind}"
            )));
        }
        let mut metadata = json!({"name": name});
        if let Some(rv) = meta_str(scale, "resourceVersion") {
            metadata["resourceVersion"] = json!(rv);
        }
        let mut config = json!({
            "apiVersion": self.desc.group_version(),
            "kind": self.desc.kind,
            "metadata": metadata,
        });
        match scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => {}
            Some(replicas) => {
                let replicas = replicas.as_i64().filter(|r| *r >= 0).ok_or_else(|| {
                    ApiError::invalid("autoscaling", "Scale", name, Vec::new()).with_cause(
                        "FieldValueInvalid",
                        "must be greater than or equal to 0",
                        "spec.replicas",
                    )
                })?;
                config["spec"] = json!({"replicas": replicas});
            }
        }
        Ok(config)
    }

    // ---- scale ----

    fn scale_of(&self, object: &Value) -> Value {
        let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let mut scale_meta = json!({});
        for field in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = meta.get(field) {
                scale_meta[field] = v.clone();
            }
        }
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_meta,
            "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
            "status": {
                "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
                "selector": selector_string(object.pointer("/spec/selector")),
            },
        })
    }

    fn with_replicas(&self, current: &Value, scale: &Value) -> Result<Value, ApiError> {
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                ApiError::invalid("autoscaling", "Scale", "", Vec::new()).with_cause(
                    "FieldValueInvalid",
                    "must be greater than or equal to 0",
                    "spec.replicas",
                )
            })?;
        let mut new = current.clone();
        object_mut(&mut new)
            .entry("spec")
            .or_insert_with(|| json!({}));
        new["spec"]["replicas"] = json!(replicas);
        let mut new = self.prepare_update(current, new, Part::Main)?;
        self.record_update(Some(current), &mut new, patch::Requested::Keep, "scale");
        Ok(new)
    }

    async fn update_scale(&self, name: &str, scale: Value) -> Result<ApiResponse, ApiError> {
        let (kv, current) = self.read(name).await?;
        if let Some(rv) = meta_str(&scale, "resourceVersion").filter(|rv| !rv.is_empty())
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                &self.desc.group,
                &self.desc.plural,
                name,
                CONFLICT_MESSAGE,
            ));
        }
        let object = self.with_replicas(&current, &scale)?;
        if self.query.dry_run {
            return Ok(ok(self.scale_of(&object)));
        }
        let object = self
            .commit(name, object, kv.mod_revision)
            .await
            .map_err(|e| self.err(name, e))?;
        Ok(ok(self.scale_of(&object)))
    }

    // ---- pods/binding ----

    fn is_pod(&self) -> bool {
        self.desc.group.is_empty() && self.desc.plural == "pods"
    }

    fn is_csr(&self) -> bool {
        self.desc.group == "certificates.k8s.io" && self.desc.plural == "certificatesigningrequests"
    }

    /// `pods/binding`: sets `spec.nodeName` to the Binding's target (a
    /// Node) and the PodScheduled condition, as the scheduler asks; a pod
    /// already on another node, or being deleted, is a 409.
    async fn bind(&self, name: &str, binding: Value) -> Result<ApiResponse, ApiError> {
        if let Some(body_name) = meta_str(&binding, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let target = binding.get("target").cloned().unwrap_or(Value::Null);
        let kind = target.get("kind").and_then(Value::as_str).unwrap_or("");
        if !kind.is_empty() && kind != "Node" {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![StatusCause {
                    reason: "FieldValueNotSupported".to_owned(),
                    message: format!("Unsupported value: \"{kind}\": supported values: \"Node\""),
                    field: "target.kind".to_owned(),
                }],
            ));
        }
        let node = target.get("name").and_then(Value::as_str).unwrap_or("");
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                name,
                vec![StatusCause {
                    reason: "FieldValueRequired".to_owned(),
                    message: "Required value".to_owned(),
                    field: "target.name".to_owned(),
                }],
            ));
        }
        let conflict = |why: &str| ApiError::conflict("", "pods", name, why);
        for _ in 0..CONFLICT_RETRIES {
            let (kv, mut pod) = self.read(name).await?;
            if meta_str(&pod, "deletionTimestamp").is_some() {
                return Err(conflict(&format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            let current = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if current == node {
                return Ok(binding_success());
            }
            if !current.is_empty() {
                return Err(conflict(&format!(
                    "pod {name} is already assigned to node \"{current}\""
                )));
            }
            object_mut(&mut pod)
                .entry("spec")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|spec| spec.insert("nodeName".into(), json!(node)));
            if let Some(annotations) = binding
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                let meta = metadata_mut(&mut pod);
                let into = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(into) = into.as_object_mut() {
                    for (k, v) in annotations {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
            set_pod_scheduled(&mut pod);
            if self.query.dry_run {
                return Ok(binding_success());
            }
            match self.commit(name, pod, kv.mod_revision).await {
                Ok(_) => return Ok(binding_success()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(self.err(name, e)),
            }
        }
        Err(conflict(CONFLICT_MESSAGE))
    }

    async fn patch_scale(
        &self,
        name: &str,
        body_type: BodyType,
        body: &[u8],
    ) -> Result<ApiResponse, ApiError> {
        let patch_doc = Self::parse_patch(body)?;
        let scale_gvk = GroupVersionKind::new("autoscaling", "v1", "Scale");
        for _ in 0..CONFLICT_RETRIES {
            let (kv, current) = self.read(name).await?;
            let scale = self.scale_of(&current);
            let patched = self.apply_patch(&scale_gvk, &scale, body_type, &patch_doc)?;
            let object = self.with_replicas(&current, &patched)?;
            if self.query.dry_run {
                return Ok(ok(self.scale_of(&object)));
            }
            match self.commit(name, object, kv.mod_revision).await {
                Ok(object) => return Ok(ok(self.scale_of(&object))),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(self.err(name, e)),
            }
        }
        Err(ApiError::conflict(
            &self.desc.group,
            &self.desc.plural,
            name,
            CONFLICT_MESSAGE,
        ))
    }

    // ---- delete ----

    async fn delete(&self, name: &str) -> Result<ApiResponse, ApiError> {
        for _ in 0..CONFLICT_RETRIES {
            let (kv, current) = self.read(name).await?;
            if let Some(uid) = &self.query.precondition_uid
                && meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    &self.desc.group,
                    &self.desc.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &self.query.precondition_resource_version
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    &self.desc.group,
                    &self.desc.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let is_namespace = self.desc.group.is_empty() && self.desc.plural == "namespaces";
            let outcome = if is_namespace {
                // The namespace's contents go with it (below); propagation
                // policies do not apply.
                let mut marked = current.clone();
                if meta_str(&marked, "deletionTimestamp").is_none() {
                    let meta = metadata_mut(&mut marked);
                    meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                marked["status"] = json!({"phase": "Terminating"});
                deletion::Outcome::Keep(marked)
            } else {
                let strategy = if self.is_pod() {
                    deletion::KindStrategy::GracefulPod
                } else {
                    deletion::KindStrategy::Immediate
                };
                let request = deletion::DeleteRequest {
                    propagation_policy: self.query.propagation_policy,
                    grace_period_seconds: self.query.grace_period_seconds,
                };
                deletion::plan(&current, request, strategy, crate::http::clock::now())
            };
            if let deletion::Outcome::Pending = outcome {
                return Ok(ok(current));
            }
            if let deletion::Outcome::Keep(mut marked) = outcome {
                if self.query.dry_run {
                    return Ok(ok(marked));
                }
                if marked != current {
                    let key = self.key(name);
                    match self
                        .registry
                        .storage
                        .update(&key, encode(&marked)?, kv.mod_revision)
                        .await
                    {
                        Ok(revision) => {
                            metadata_mut(&mut marked)
                                .insert("resourceVersion".into(), json!(revision.to_string()));
                        }
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(self.err(name, e)),
                    }
                }
                if is_namespace && !has_finalizers(&marked) {
                    self.finish_namespace(name).await?;
                }
                return Ok(ok(marked));
            }
            if self.query.dry_run {
                return Ok(ok(self.deleted_status(&current)));
            }
            let removed = if self.is_service() {
                self.registry
                    .services
                    .write(&self.desc.kind, Some(&current), None, false, |_| async {
                        let deleted = self
                            .registry
                            .storage
                            .delete(&kv.key, Some(kv.mod_revision))
                            .await
                            .map_err(CommitError::Storage)?;
                        Ok((deleted, None))
                    })
                    .await
            } else {
                self.registry
                    .storage
                    .delete(&kv.key, Some(kv.mod_revision))
                    .await
                    .map_err(CommitError::Storage)
            };
            match removed {
                Ok(_) => return Ok(ok(self.deleted_status(&current))),
                Err(CommitError::Api(e)) => return Err(e),
                Err(CommitError::Storage(e)) => match e {
                    e if e.is_conflict() => continue,
                    e if e.is_not_found() => {
                        return Err(ApiError::not_found(
                            &self.desc.group,
                            &self.desc.plural,
                            name,
                        ));
                    }
                    e => return Err(self.err(name, e)),
                },
            }
        }
        Err(ApiError::conflict(
            &self.desc.group,
            &self.desc.plural,
            name,
            CONFLICT_MESSAGE,
        ))
    }

    /// Removes everything in namespace `name`, then the namespace.
    async fn finish_namespace(&self, name: &str) -> Result<(), ApiError> {
        let storage = &self.registry.storage;
        for desc in self.registry.resources.iter().filter(|d| d.namespaced) {
            let prefix = self.registry.list_prefix(desc, name);
            let mut options = ListOptions::default();
            loop {
                let page = storage
                    .list(&prefix, options.clone())
                    .await
                    .map_err(|e| storage_error(desc, name, e))?;
                let is_service = desc.group.is_empty() && desc.plural == "services";
                for kv in &page.items {
                    match storage.delete(&kv.key, None).await {
                        Ok(_) if is_service => {
                            if let Ok(service) = decode(kv) {
                                self.registry.services.release(&service).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(storage_error(desc, name, e)),
                    }
                }
                match page.next_page(None) {
                    Some(next) => options = next,
                    None => break,
                }
            }
        }
        match storage.delete(&self.key(name), None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    fn deleted_status(&self, object: &Value) -> Value {
        let mut status = crate::http::status::success_status();
        status["details"] = json!({
            "name": meta_str(object, "name").unwrap_or_default(),
            "group": self.desc.group,
            "kind": self.desc.plural,
            "uid": meta_str(object, "uid").unwrap_or_default(),
        });
        status
    }

    async fn delete_collection(&self) -> Result<ApiResponse, ApiError> {
        let filter = Filter {
            query: self.query.clone(),
            name: None,
        };
        let mut all = self.query.clone();
        all.limit = None;
        all.continue_token = None;
        let page = list_objects(self.registry, self.desc, &self.namespace, &all, &filter).await?;
        let mut deleted = Vec::new();
        for object in page.items {
            let Some(name) = meta_str(&object, "name").map(str::to_owned) else {
                continue;
            };
            let op = Op {
                registry: self.registry,
                user: self.user,
                desc: self.desc,
                namespace: meta_str(&object, "namespace")
                    .unwrap_or_default()
                    .to_owned(),
                query: self.query,
                warnings: std::sync::Mutex::default(),
            };
            match op.delete(&name).await {
                Ok(_) => deleted.push(object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ApiResponse::List(json!({
            "kind": format!("{}List", self.desc.kind),
            "apiVersion": self.desc.group_version(),
            "metadata": {"resourceVersion": page.revision.to_string()},
            "items": deleted,
        })))
    }
}

/// One page of a filtered list.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// Reads a list: consistent across pages (every page at the first page's
/// revision, carried in the continue token), filtered by the selectors
/// while reading, so a page holds up to `limit` matching objects.
async fn list_objects(
    registry: &Registry,
    desc: &ResourceDescriptor,
    namespace: &str,
    query: &QueryOptions,
    filter: &Filter,
) -> Result<Page, ApiError> {
    let prefix = registry.list_prefix(desc, namespace);
    let limit = query
        .limit
        .filter(|l| *l > 0)
        .and_then(|l| usize::try_from(l).ok());
    let mut options = ListOptions {
        limit,
        ..ListOptions::default()
    };
    if let Some(token) = &query.continue_token {
        let decoded = ContinueToken::decode(token, &prefix)
            .map_err(|e| ApiError::bad_request(format!("invalid continue token: {e}")))?;
        options.start_after = Some(decoded.start_after);
        options.revision = Some(decoded.revision);
    } else if query.resource_version_match
        == Some(crate::http::request::ResourceVersionMatch::Exact)
        && let Some(rv) = &query.resource_version
    {
        options.revision = Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        );
    }
    let expired_continue = query.continue_token.is_some();
    let mut items = Vec::new();
    loop {
        let result = match registry.storage.list(&prefix, options.clone()).await {
            Ok(r) => r,
            Err(e) if e.is_compacted() && expired_continue => {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Err(e) => return Err(storage_error(desc, "", e)),
        };
        for kv in &result.items {
            let object = decode(kv)?;
            if filter.matches(&object) {
                items.push(object);
            }
        }
        let remaining_room = limit.map(|l| l.saturating_sub(items.len()));
        let next = match remaining_room {
            Some(0) | None => None,
            Some(room) => result.next_page(Some(room)),
        };
        if let Some(next) = next {
            options = next;
            continue;
        }
        let continue_token = if limit.is_some() && result.more {
            result.items.last().map(|last| {
                ContinueToken {
                    revision: result.revision,
                    start_after: last.key.clone(),
                }
                .encode(&prefix)
            })
        } else {
            None
        };
        let remaining = if filter.is_trivial() && continue_token.is_some() {
            result.remaining
        } else {
            None
        };
        return Ok(Page {
            items,
            revision: result.revision,
            continue_token,
            remaining,
        });
    }
}

/// A watch: from `resourceVersion` (events after it), or, when it is
/// unset or `0`, the current state as ADDED events and then the changes.
/// With selectors, an object that starts matching is ADDED and one that
/// stops matching is DELETED, as kube does.
async fn watch(
    registry: &Registry,
    desc: &ResourceDescriptor,
    namespace: &str,
    query: &QueryOptions,
    filter: Filter,
) -> Result<ApiResponse, ApiError> {
    let prefix = registry.list_prefix(desc, namespace);
    let rv = query.resource_version.as_deref().unwrap_or("");
    let (initial, from) = if rv.is_empty() || rv == "0" {
        let mut all = query.clone();
        all.limit = None;
        all.continue_token = None;
        all.resource_version_match = None;
        let page = list_objects(registry, desc, namespace, &all, &filter).await?;
        let events: Vec<WatchEvent> = page
            .items
            .into_iter()
            .map(|o| WatchEvent::new(WatchEventType::Added, o))
            .collect();
        (events, page.revision)
    } else {
        let from: i64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        (Vec::new(), from)
    };
    let changes = match registry
        .storage
        .watch(&prefix, from, query.allow_watch_bookmarks)
        .await
    {
        Ok(s) => s,
        Err(e) if e.is_compacted() => {
            let event = WatchEvent::expired(rv, &e.to_string());
            return Ok(ApiResponse::Watch(Box::pin(stream::iter([event]))));
        }
        Err(e) => return Err(storage_error(desc, "", e)),
    };
    let api_version = desc.group_version();
    let kind = desc.kind.clone();
    let requested = rv.to_owned();
    let events = changes.filter_map(move |item| {
        let event = convert(item, &filter, &api_version, &kind, &requested);
        std::future::ready(event)
    });
    Ok(ApiResponse::Watch(Box::pin(
        stream::iter(initial).chain(events),
    )))
}

fn convert(
    item: Result<crate::storage::WatchEvent, StorageError>,
    filter: &Filter,
    api_version: &str,
    kind: &str,
    requested: &str,
) -> Option<WatchEvent> {
    use crate::storage::WatchEvent as S;
    let decoded = |kv: &KeyValue| decode(kv).ok();
    match item {
        Ok(S::Put { kv, prev }) => {
            let object = decoded(&kv)?;
            let now = filter.matches(&object);
            let before = prev.as_ref().and_then(decoded).map(|p| filter.matches(&p));
            let kind = match (before, now) {
                (None | Some(false), true) => WatchEventType::Added,
                (Some(true), true) => WatchEventType::Modified,
                (Some(true), false) => WatchEventType::Deleted,
                (_, false) => return None,
            };
            Some(WatchEvent::new(kind, object))
        }
        Ok(S::Delete { prev, revision }) => {
            let mut object = decoded(&prev)?;
            if !filter.matches(&object) {
                return None;
            }
            metadata_mut(&mut object).insert("resourceVersion".into(), json!(revision.to_string()));
            Some(WatchEvent::new(WatchEventType::Deleted, object))
        }
        Ok(S::Progress { revision }) => Some(WatchEvent::bookmark(
            api_version,
            kind,
            &revision.to_string(),
        )),
        Err(e) if e.is_compacted() => Some(WatchEvent::expired(requested, &e.to_string())),
        Err(e) => Some(WatchEvent::error(&ApiError::internal(e.to_string()))),
    }
}

/// Server-side apply and managedFields through the registry on in-memory
/// storage: status codes, Status causes, no-op applies, dry runs and
/// requests that clear managedFields.
#[cfg(test)]
mod apply_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::{Value, json};

    use crate::auth::UserInfo;
    use crate::http::{ApiResponse, BodyType, Output, RequestAttributes, RequestContext};
    use crate::registry::{Registry, RegistryOptions, objects};
    use crate::storage::MemoryStorage;

    const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";

    /// One request: (HTTP status, body or Status).
    async fn call(
        registry: &Registry,
        method: &str,
        path: &str,
        query: &str,
        body_type: BodyType,
        body: Option<Value>,
    ) -> (u16, Value) {
        let attributes = RequestAttributes::parse(method, path, query).expect("attributes");
        let resource = registry
            .descriptor(&attributes.group, &attributes.resource)
            .cloned();
        let desc = resource.clone().expect("a served resource");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"),
        );
        let ctx = RequestContext {
            method: method.parse().expect("method"),
            version: http::Version::HTTP_11,
            attributes,
            resource,
            peer_certificates: Vec::new(),
            remote_addr: "127.0.0.1:1".parse().expect("address"),
            headers,
            output: Output::Json,
            body_type,
        };
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let user = UserInfo::new("admin", ["system:masters"]);
        match objects::handle(registry, &user, &desc, &ctx, bytes)
            .await
            .unwrap_or_else(ApiResponse::from)
        {
            ApiResponse::Object { status, object } => (status, object),
            ApiResponse::Status(e) => (e.code, e.to_status()),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    async fn setup() -> Registry {
        let registry = Registry::new(Arc::new(MemoryStorage::new()), RegistryOptions::default())
            .expect("registry on memory storage");
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        let (status, _) = call(
            &registry,
            "POST",
            "/api/v1/namespaces",
            "",
            BodyType::Json,
            Some(namespace),
        )
        .await;
        assert_eq!(status, 201);
        registry
    }

    fn config_map(value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": value}})
    }

    fn managers(object: &Value) -> Vec<String> {
        object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["manager"].as_str().unwrap_or(""),
                    e["operation"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn apply_creates_is_idempotent_and_requires_a_manager() {
        let registry = setup().await;
        let path = format!("{CONFIG_MAPS}/cm");
        let (status, body) = call(
            &registry,
            "PATCH",
            &path,
            "",
            BodyType::ApplyPatch,
            Some(config_map("1")),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["details"]["causes"][0]["field"], "fieldManager");

        let (status, created) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool",
            BodyType::ApplyPatch,
            Some(config_map("1")),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(managers(&created), ["tool/Apply"]);
        let (status, again) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool",
            BodyType::ApplyPatch,
            Some(config_map("1")),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            again["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );

        let (_, dry) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool&dryRun=All",
            BodyType::ApplyPatch,
            Some(config_map("2")),
        )
        .await;
        assert_eq!(dry["data"]["a"], "2");
        let (_, stored) = call(&registry, "GET", &path, "", BodyType::Empty, None).await;
        assert_eq!(stored["data"]["a"], "1");
    }

    #[tokio::test]
    async fn conflicts_are_409_with_causes_and_force_takes_over() {
        let registry = setup().await;
        let path = format!("{CONFIG_MAPS}/cm");
        // Created by a plain POST: an Update by the User-Agent's program.
        let (status, created) = call(
            &registry,
            "POST",
            CONFIG_MAPS,
            "",
            BodyType::Json,
            Some(config_map("1")),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(managers(&created), ["kubectl/Update"]);

        let (status, body) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool",
            BodyType::ApplyPatch,
            Some(config_map("2")),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["reason"], "Conflict");
        assert_eq!(
            body["details"]["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\" using v1", "field": ".data.a"}])
        );
        assert_eq!(
            body["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.a"
        );

        let (status, forced) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool&force=true",
            BodyType::ApplyPatch,
            Some(config_map("2")),
        )
        .await;
        assert_eq!(status, 200, "{forced}");
        assert_eq!(forced["data"]["a"], "2");
        assert_eq!(managers(&forced), ["tool/Apply"]);
    }

    #[tokio::test]
    async fn patches_record_their_manager_and_may_clear_managed_fields() {
        let registry = setup().await;
        let path = format!("{CONFIG_MAPS}/cm");
        call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=tool",
            BodyType::ApplyPatch,
            Some(config_map("1")),
        )
        .await;
        let (status, patched) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=kubectl-edit",
            BodyType::MergePatch,
            Some(json!({"data": {"b": "x"}})),
        )
        .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(managers(&patched), ["tool/Apply", "kubectl-edit/Update"]);
        let (status, cleared) = call(
            &registry,
            "PATCH",
            &path,
            "",
            BodyType::MergePatch,
            Some(json!({"metadata": {"managedFields": [{}]}})),
        )
        .await;
        assert_eq!(status, 200, "{cleared}");
        assert!(
            cleared["metadata"].get("managedFields").is_none(),
            "{cleared}"
        );
    }

    const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

    fn web_deployment(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}
                }
            }
        })
    }

    /// Deployment `web` with one replica, applied by `deployer`.
    async fn create_web(registry: &Registry) {
        let (status, body) = call(
            registry,
            "PATCH",
            &format!("{DEPLOYMENTS}/web"),
            "fieldManager=deployer",
            BodyType::ApplyPatch,
            Some(web_deployment(1)),
        )
        .await;
        assert_eq!(status, 201, "creating web by apply: {body}");
    }

    #[tokio::test]
    async fn write_options_are_validated_as_kube_does() {
        let registry = setup().await;
        let path = format!("{CONFIG_MAPS}/cm");
        let (status, created) = call(
            &registry,
            "POST",
            CONFIG_MAPS,
            "",
            BodyType::Json,
            Some(config_map("1")),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        // `force` belongs to apply; any value of it on another patch is refused.
        for force in ["true", "false"] {
            let (status, body) = call(
                &registry,
                "PATCH",
                &path,
                &format!("force={force}"),
                BodyType::MergePatch,
                Some(json!({"data": {"a": "2"}})),
            )
            .await;
            assert_eq!(status, 422, "force={force} on a merge patch: {body}");
            assert_eq!(
                body["message"],
                "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
            );
            assert_eq!(body["details"]["causes"][0]["field"], "force");
        }
        let too_long = "m".repeat(129);
        for (method, target, body_type, body, kind) in [
            (
                "POST",
                CONFIG_MAPS.to_owned(),
                BodyType::Json,
                config_map("x"),
                "CreateOptions",
            ),
            (
                "PUT",
                path.clone(),
                BodyType::Json,
                config_map("x"),
                "UpdateOptions",
            ),
            (
                "PATCH",
                path.clone(),
                BodyType::ApplyPatch,
                config_map("x"),
                "PatchOptions",
            ),
        ] {
            let (status, answer) = call(
                &registry,
                method,
                &target,
                &format!("fieldManager={too_long}"),
                body_type,
                Some(body),
            )
            .await;
            assert_eq!(status, 422, "{method} with a 129-byte manager: {answer}");
            assert_eq!(
                answer["message"],
                format!(
                    "{kind}.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
                )
            );
        }
        let (status, answer) = call(
            &registry,
            "PATCH",
            &path,
            &format!("fieldManager={}", "m".repeat(128)),
            BodyType::ApplyPatch,
            Some(config_map("x")),
        )
        .await;
        assert_eq!(
            status, 409,
            "128 bytes are allowed (then conflict): {answer}"
        );
        let (status, answer) = call(
            &registry,
            "PATCH",
            &path,
            "fieldManager=bell%07",
            BodyType::MergePatch,
            Some(json!({"data": {"a": "2"}})),
        )
        .await;
        assert_eq!(status, 422, "a control character in the manager: {answer}");
        assert_eq!(
            answer["details"]["causes"][0]["reason"],
            "FieldValueInvalid"
        );
    }

    #[tokio::test]
    async fn status_is_applied_through_its_subresource() {
        let registry = setup().await;
        // What the status applier sends: labels and spec it cannot write.
        let deployment = |replicas: i64, observed: i64| {
            let mut deployment = web_deployment(replicas);
            deployment["metadata"]["labels"] = json!({"via": "status"});
            deployment["status"] = json!({"observedGeneration": observed});
            deployment
        };
        let status_path = format!("{DEPLOYMENTS}/web/status");
        let (status, body) = call(
            &registry,
            "PATCH",
            &status_path,
            "fieldManager=reporter",
            BodyType::ApplyPatch,
            Some(deployment(1, 1)),
        )
        .await;
        assert_eq!(status, 404, "status apply does not create: {body}");

        create_web(&registry).await;

        let (status, applied) = call(
            &registry,
            "PATCH",
            &status_path,
            "fieldManager=reporter",
            BodyType::ApplyPatch,
            Some(deployment(7, 3)),
        )
        .await;
        assert_eq!(status, 200, "{applied}");
        assert_eq!(applied["status"]["observedGeneration"], 3, "{applied}");
        assert_eq!(
            applied["spec"]["replicas"], 1,
            "spec is not written through status"
        );
        assert!(
            applied["metadata"].get("labels").is_none(),
            "metadata is not written through status: {applied}"
        );
        let entry = applied["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["manager"] == "reporter")
            .unwrap_or_else(|| panic!("no entry of the status applier: {applied}"));
        assert_eq!(entry["operation"], "Apply");
        assert_eq!(entry["subresource"], "status");
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:status": {"f:observedGeneration": {}}}),
            "the status applier owns its status fields only"
        );
    }

    #[tokio::test]
    async fn replicas_are_applied_through_scale() {
        let registry = setup().await;
        create_web(&registry).await;
        let scale_path = format!("{DEPLOYMENTS}/web/scale");
        let scale = |replicas: i64| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": "web"}, "spec": {"replicas": replicas}})
        };
        let (status, body) = call(
            &registry,
            "PATCH",
            &scale_path,
            "fieldManager=autoscaler",
            BodyType::ApplyPatch,
            Some(scale(4)),
        )
        .await;
        assert_eq!(status, 409, "the deployer owns the replicas: {body}");
        assert_eq!(body["details"]["causes"][0]["field"], ".spec.replicas");
        let (status, body) = call(
            &registry,
            "PATCH",
            &scale_path,
            "fieldManager=autoscaler&force=true",
            BodyType::ApplyPatch,
            Some(scale(4)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["kind"], "Scale", "the answer is the Scale: {body}");
        assert_eq!(body["spec"]["replicas"], 4);
        let (_, stored) = call(
            &registry,
            "GET",
            &format!("{DEPLOYMENTS}/web"),
            "",
            BodyType::Empty,
            None,
        )
        .await;
        assert_eq!(stored["spec"]["replicas"], 4);
        let entries: Vec<(String, String)> = stored["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
            .map(|e| {
                (
                    format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap_or(""),
                        e["operation"].as_str().unwrap_or("")
                    ),
                    e["subresource"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [("autoscaler/Apply".to_owned(), "scale".to_owned())],
            "the replicas belong to the scale applier alone: {stored}"
        );
        let (status, body) = call(
            &registry,
            "PATCH",
            &scale_path,
            "fieldManager=autoscaler",
            BodyType::ApplyPatch,
            Some(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            ),
        )
        .await;
        assert_eq!(status, 400, "only a Scale is applied through scale: {body}");
    }
}

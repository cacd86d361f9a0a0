//! `garbagecollector`: owner references and the deletion finalizers, as
//! kube-controller-manager's garbage collector keeps them.
//!
//! A pass discovers every resource the API server serves that can be
//! listed, read and deleted, lists the metadata of all their objects and
//! builds the owner graph by uid (a name is not an identity: an owner
//! deleted and recreated under the same name owns nothing). Then:
//!
//! 1. **Orphan**: an owner being deleted with the `orphan` finalizer has
//!    its owner reference removed from every dependent, then loses the
//!    finalizer (and goes, unless other finalizers hold it).
//! 2. **Foreground**: an owner being deleted with `foregroundDeletion`
//!    has its dependents deleted (in the foreground themselves when they
//!    have dependents); a dependent that another live owner still holds
//!    only loses its reference to this one. The finalizer is removed once
//!    no dependent with `blockOwnerDeletion: true` is left.
//! 3. **Dangling**: an object whose owners are all gone is deleted in the
//!    background (or with the policy its own finalizers ask for); one
//!    that still has a live owner only loses the references to the owners
//!    that are gone (kube's "remove dangling references").
//!
//! The graph is a snapshot taken one resource at a time, so an owner
//! created after its kind was listed may look absent: before deleting a
//! dependent, the pass reads it again and reads each owner by name,
//! trusting only a 404 or a different uid (kube's "virtual node" check),
//! and the delete carries the dependent's uid as a precondition. An owner
//! whose kind the server does not serve is never taken as gone. Finalizer
//! and owner-reference changes are compare-and-swaps on the
//! resourceVersion, retried on 409 from a fresh read. A pass whose
//! discovery or any list fails acts on nothing: an incomplete graph could
//! finalize an owner whose dependents were simply not seen.
//!
//! Passes are woken by changes of the usual owner chain (Deployments,
//! ReplicaSets, Pods, kube-system Secrets), by the periodic resync for
//! every other resource (a watch per resource would be one stream each),
//! and two seconds later while a deletion it drives is in progress; a full
//! pass runs at most every two seconds however busy the watches are.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use time::OffsetDateTime;

use super::api::{
    ApiError, ApiErrorKind, ApiResource, ClusterApi, MetadataUpdate, Propagation, Watched,
};
use super::runner::Controller;

/// The finalizer of an owner whose dependents are deleted first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an owner whose dependents are kept without it.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Attempts of one compare-and-swap before the pass gives up on it.
const UPDATE_RETRIES: usize = 5;
/// How soon to look again while a deletion is in progress.
const BUSY_RECHECK: time::Duration = time::Duration::seconds(2);
/// The shortest time between two full passes (each lists everything).
const MIN_PASS_INTERVAL: time::Duration = time::Duration::seconds(2);

/// One object of the snapshot.
#[derive(Debug)]
struct Node {
    resource: usize,
    meta: ObjectMeta,
}

impl Node {
    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or_default()
    }

    fn uid(&self) -> &str {
        self.meta.uid.as_deref().unwrap_or_default()
    }

    fn being_deleted(&self) -> bool {
        self.meta.deletion_timestamp.is_some()
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        has_finalizer(&self.meta, finalizer)
    }

    fn owner_references(&self) -> &[OwnerReference] {
        self.meta.owner_references.as_deref().unwrap_or_default()
    }
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// The owner graph of one pass.
#[derive(Debug)]
struct Graph {
    resources: Vec<ApiResource>,
    nodes: Vec<Node>,
    by_uid: HashMap<String, usize>,
    /// Owner uid → the nodes referring to it.
    dependents: HashMap<String, Vec<usize>>,
}

impl Graph {
    fn load(api: &dyn ClusterApi) -> Result<Self, ApiError> {
        let resources = api.discover_resources()?;
        let mut nodes = Vec::new();
        for (index, resource) in resources.iter().enumerate() {
            for meta in api.list_metadata(resource)? {
                if meta.uid.as_deref().is_some_and(|u| !u.is_empty()) {
                    nodes.push(Node {
                        resource: index,
                        meta,
                    });
                }
            }
        }
        let mut by_uid = HashMap::new();
        let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, node) in nodes.iter().enumerate() {
            by_uid.insert(node.uid().to_owned(), index);
            for reference in node.owner_references() {
                dependents
                    .entry(reference.uid.clone())
                    .or_default()
                    .push(index);
            }
        }
        Ok(Self {
            resources,
            nodes,
            by_uid,
            dependents,
        })
    }

    fn resource(&self, node: &Node) -> &ApiResource {
        &self.resources[node.resource]
    }

    fn dependents_of(&self, uid: &str) -> &[usize] {
        self.dependents.get(uid).map_or(&[], Vec::as_slice)
    }

    /// The served resource an owner reference names: the same group,
    /// version and kind, else the same group and kind in the version
    /// served.
    fn resource_of(&self, reference: &OwnerReference) -> Option<&ApiResource> {
        let (group, version) = match reference.api_version.rsplit_once('/') {
            Some((group, version)) => (group, version),
            None => ("", reference.api_version.as_str()),
        };
        let same_kind = |r: &&ApiResource| r.group == group && r.kind == reference.kind;
        self.resources
            .iter()
            .filter(same_kind)
            .find(|r| r.version == version)
            .or_else(|| self.resources.iter().find(same_kind))
    }

    /// Whether the owner `uid` holds its dependents: it exists and is not
    /// itself waiting for them to go.
    fn is_solid_owner(&self, uid: &str) -> bool {
        self.by_uid.get(uid).is_some_and(|&i| {
            let owner = &self.nodes[i];
            !(owner.being_deleted() && owner.has_finalizer(FOREGROUND_FINALIZER))
        })
    }
}

/// What one pass found still to do.
#[derive(Debug, Default)]
struct Progress {
    /// A deletion the collector drives is not finished.
    busy: bool,
    first_error: Option<ApiError>,
}

/// The policy a dependent is deleted with: foreground when it has
/// dependents of its own and its owner waits (`cascade`), else what its
/// own finalizers ask for.
fn propagation_for(meta: &ObjectMeta, cascade: bool) -> Propagation {
    if has_finalizer(meta, ORPHAN_FINALIZER) {
        Propagation::Orphan
    } else if cascade || has_finalizer(meta, FOREGROUND_FINALIZER) {
        Propagation::Foreground
    } else {
        Propagation::Background
    }
}

/// The controller: remembers what it reported so each problem is logged
/// once.
#[derive(Debug, Default)]
pub struct GarbageCollector {
    reported: BTreeSet<String>,
    /// When the last full pass started.
    last_pass: Option<OffsetDateTime>,
}

impl GarbageCollector {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass over every object; asks for an early next pass while a
    /// deletion is in progress.
    pub fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        if let Some(last) = self.last_pass
            && now < last + MIN_PASS_INTERVAL
            && now >= last
        {
            return Ok(Some(last + MIN_PASS_INTERVAL));
        }
        self.last_pass = Some(now);
        let graph = Graph::load(api)?;
        let mut progress = Progress::default();
        for node in graph.nodes.iter().filter(|n| n.being_deleted()) {
            if node.has_finalizer(ORPHAN_FINALIZER) {
                self.orphan_dependents(api, &graph, node, &mut progress);
            } else if node.has_finalizer(FOREGROUND_FINALIZER) {
                self.delete_dependents_first(api, &graph, node, &mut progress);
            }
        }
        for node in graph.nodes.iter().filter(|n| !n.being_deleted()) {
            let some_owner_absent = node
                .owner_references()
                .iter()
                .any(|r| !graph.by_uid.contains_key(r.uid.as_str()));
            if some_owner_absent {
                self.collect_or_release(api, &graph, node, &mut progress);
            }
        }
        match progress.first_error {
            Some(e) => Err(e),
            None => Ok(progress.busy.then_some(now + BUSY_RECHECK)),
        }
    }

    fn fail(&mut self, progress: &mut Progress, what: &str, error: ApiError) {
        if self.reported.insert(format!("{what}: {error}")) {
            tracing::warn!(controller = "garbagecollector", "{what}: {error}");
        }
        progress.busy = true;
        progress.first_error.get_or_insert(error);
    }

    /// `orphan`: every dependent loses its reference to `owner`, then the
    /// owner loses the finalizer.
    fn orphan_dependents(
        &mut self,
        api: &dyn ClusterApi,
        graph: &Graph,
        owner: &Node,
        progress: &mut Progress,
    ) {
        progress.busy = true;
        let mut all_released = true;
        for &index in graph.dependents_of(owner.uid()) {
            let dependent = &graph.nodes[index];
            if let Err(e) = remove_owner_reference(api, graph, dependent, owner.uid()) {
                all_released = false;
                self.fail(progress, &describe(graph, dependent), e);
            }
        }
        if all_released {
            match remove_finalizer(api, graph, owner, ORPHAN_FINALIZER) {
                Ok(()) => tracing::info!(
                    controller = "garbagecollector",
                    "orphaned the dependents of {}",
                    describe(graph, owner)
                ),
                Err(e) => self.fail(progress, &describe(graph, owner), e),
            }
        }
    }

    /// `foregroundDeletion`: the dependents go first; blocking ones are
    /// waited for, then the owner loses the finalizer.
    fn delete_dependents_first(
        &mut self,
        api: &dyn ClusterApi,
        graph: &Graph,
        owner: &Node,
        progress: &mut Progress,
    ) {
        progress.busy = true;
        let owner_uid = owner.uid();
        let mut blocked = false;
        for &index in graph.dependents_of(owner_uid) {
            let dependent = &graph.nodes[index];
            let held_elsewhere = dependent
                .owner_references()
                .iter()
                .any(|r| r.uid != owner_uid && graph.is_solid_owner(&r.uid));
            if held_elsewhere {
                // Another owner keeps it: it only stops waiting on this one.
                if let Err(e) = remove_owner_reference(api, graph, dependent, owner_uid) {
                    blocked = true;
                    self.fail(progress, &describe(graph, dependent), e);
                }
                continue;
            }
            let blocks = dependent
                .owner_references()
                .iter()
                .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true));
            if dependent.being_deleted() {
                blocked |= blocks;
                continue;
            }
            let cascade = !graph.dependents_of(dependent.uid()).is_empty();
            let propagation = propagation_for(&dependent.meta, cascade);
            match delete(api, graph, dependent, propagation) {
                Ok(()) => {
                    tracing::info!(
                        controller = "garbagecollector",
                        "deleted {} ({}) before its owner {}",
                        describe(graph, dependent),
                        propagation.as_str(),
                        describe(graph, owner)
                    );
                    blocked |= blocks;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    blocked |= blocks;
                    self.fail(progress, &describe(graph, dependent), e);
                }
            }
        }
        if blocked {
            return;
        }
        match remove_finalizer(api, graph, owner, FOREGROUND_FINALIZER) {
            Ok(()) => tracing::info!(
                controller = "garbagecollector",
                "the dependents of {} are gone; removed {FOREGROUND_FINALIZER}",
                describe(graph, owner)
            ),
            Err(e) => self.fail(progress, &describe(graph, owner), e),
        }
    }

    /// Reads `node` again and each owner it names: deletes it when every
    /// owner is confirmed gone (404, or another uid under that name), else
    /// removes the references to the owners that are gone.
    fn collect_or_release(
        &mut self,
        api: &dyn ClusterApi,
        graph: &Graph,
        node: &Node,
        progress: &mut Progress,
    ) {
        let what = describe(graph, node);
        let Some(owners) = self.classify_owners(api, graph, node, progress) else {
            return;
        };
        if owners.dangling.is_empty() {
            return;
        }
        let gone = owners
            .dangling
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect::<Vec<_>>()
            .join(", ");
        if !owners.solid.is_empty() {
            let dangling_uids: Vec<&str> = owners.dangling.iter().map(|r| r.uid.as_str()).collect();
            match remove_owner_references(api, graph, node, &dangling_uids) {
                Ok(()) => tracing::info!(
                    controller = "garbagecollector",
                    "{what}: removed the references to its owners {gone}, which are gone"
                ),
                Err(e) => self.fail(progress, &what, e),
            }
            return;
        }
        let propagation = propagation_for(&owners.latest, false);
        match delete(api, graph, node, propagation) {
            Ok(()) => {
                progress.busy = true;
                tracing::info!(
                    controller = "garbagecollector",
                    "deleted {what}: its owners {gone} are gone"
                );
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => self.fail(progress, &what, e),
        }
    }

    /// The owners of `node` as a fresh read sees them; `None` when nothing
    /// may be decided now: the object is gone, replaced or being deleted,
    /// an owner's kind is not served (it might exist), or a read failed.
    fn classify_owners(
        &mut self,
        api: &dyn ClusterApi,
        graph: &Graph,
        node: &Node,
        progress: &mut Progress,
    ) -> Option<Owners> {
        let what = describe(graph, node);
        let resource = graph.resource(node);
        let latest = match api.get_metadata(resource, node.namespace(), node.name()) {
            Ok(Some(latest)) if latest.uid.as_deref() == Some(node.uid()) => latest,
            Ok(_) => return None,
            Err(e) => {
                self.fail(progress, &what, e);
                return None;
            }
        };
        if latest.deletion_timestamp.is_some() {
            return None;
        }
        let mut owners = Owners::default();
        for reference in latest.owner_references.iter().flatten() {
            let Some(owner_resource) = graph.resource_of(reference) else {
                let key = format!("{what}: owner kind {}", reference.kind);
                if self.reported.insert(key) {
                    tracing::warn!(
                        controller = "garbagecollector",
                        "{what}: the owner {} {} is of a kind the API does not serve; kept",
                        reference.api_version,
                        reference.kind
                    );
                }
                return None;
            };
            if owner_resource.namespaced && !resource.namespaced {
                // A cluster-scoped object cannot have a namespaced owner;
                // leave the invalid reference to whoever wrote it.
                return None;
            }
            match api.get_metadata(owner_resource, node.namespace(), &reference.name) {
                Ok(Some(owner)) if owner.uid.as_deref() == Some(reference.uid.as_str()) => {
                    owners.solid.push(reference.clone());
                }
                Ok(_) => owners.dangling.push(reference.clone()),
                Err(e) => {
                    self.fail(progress, &what, e);
                    return None;
                }
            }
        }
        owners.latest = latest;
        Some(owners)
    }
}

/// What a fresh read says about the owners an object names.
#[derive(Debug, Default)]
struct Owners {
    /// The object as read.
    latest: ObjectMeta,
    /// Owners that exist with the referenced uid.
    solid: Vec<OwnerReference>,
    /// Owners confirmed gone.
    dangling: Vec<OwnerReference>,
}

/// `kind namespace/name` for logs.
fn describe(graph: &Graph, node: &Node) -> String {
    let kind = &graph.resource(node).kind;
    if node.namespace().is_empty() {
        format!("{kind} {}", node.name())
    } else {
        format!("{kind} {}/{}", node.namespace(), node.name())
    }
}

fn delete(
    api: &dyn ClusterApi,
    graph: &Graph,
    node: &Node,
    propagation: Propagation,
) -> Result<(), ApiError> {
    api.delete_object(
        graph.resource(node),
        node.namespace(),
        node.name(),
        node.uid(),
        propagation,
    )
}

fn remove_finalizer(
    api: &dyn ClusterApi,
    graph: &Graph,
    node: &Node,
    finalizer: &str,
) -> Result<(), ApiError> {
    update_with_retry(api, graph, node, |meta| {
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return None;
        }
        Some(MetadataUpdate {
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            finalizers: Some(finalizers.into_iter().filter(|f| f != finalizer).collect()),
            owner_references: None,
        })
    })
}

fn remove_owner_reference(
    api: &dyn ClusterApi,
    graph: &Graph,
    node: &Node,
    owner_uid: &str,
) -> Result<(), ApiError> {
    remove_owner_references(api, graph, node, &[owner_uid])
}

/// Removes the references to `owner_uids` (a uid is never reused, so a
/// retry after a 409 removes the same owners from whatever is there now).
fn remove_owner_references(
    api: &dyn ClusterApi,
    graph: &Graph,
    node: &Node,
    owner_uids: &[&str],
) -> Result<(), ApiError> {
    let removed = |r: &OwnerReference| owner_uids.contains(&r.uid.as_str());
    update_with_retry(api, graph, node, |meta| {
        let references = meta.owner_references.clone().unwrap_or_default();
        if !references.iter().any(removed) {
            return None;
        }
        Some(MetadataUpdate {
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            finalizers: None,
            owner_references: Some(references.into_iter().filter(|r| !removed(r)).collect()),
        })
    })
}

/// Applies `change` to the object's metadata as a compare-and-swap,
/// re-reading it after each 409. An object gone, or replaced by another
/// uid, or already changed, needs nothing.
fn update_with_retry(
    api: &dyn ClusterApi,
    graph: &Graph,
    node: &Node,
    change: impl Fn(&ObjectMeta) -> Option<MetadataUpdate>,
) -> Result<(), ApiError> {
    let resource = graph.resource(node);
    let mut meta = node.meta.clone();
    for _ in 0..UPDATE_RETRIES {
        if meta.uid.as_deref() != Some(node.uid()) {
            return Ok(());
        }
        let Some(update) = change(&meta) else {
            return Ok(());
        };
        match api.update_metadata(resource, node.namespace(), node.name(), &update) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if e.is_conflict() => {
                match api.get_metadata(resource, node.namespace(), node.name())? {
                    Some(latest) => meta = latest,
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        ApiErrorKind::Conflict,
        format!("update {}", describe(graph, node)),
        format!("still conflicting after {UPDATE_RETRIES} attempts; retrying on the next pass"),
    ))
}

impl Controller for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }

    fn watches(&self) -> &'static [Watched] {
        &[
            Watched::Deployments,
            Watched::ReplicaSets,
            Watched::Pods,
            Watched::SystemSecrets,
        ]
    }

    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        GarbageCollector::sync(self, api, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::FakeApi;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn resource(group: &str, kind: &str, plural: &str, namespaced: bool) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    fn deployments() -> ApiResource {
        resource("apps", "Deployment", "deployments", true)
    }

    fn replicasets() -> ApiResource {
        resource("apps", "ReplicaSet", "replicasets", true)
    }

    fn pods() -> ApiResource {
        resource("", "Pod", "pods", true)
    }

    fn api() -> FakeApi {
        let api = FakeApi::default();
        for r in [deployments(), replicasets(), pods()] {
            api.serve(r);
        }
        api
    }

    fn owner_ref(kind: &str, name: &str, blocks: bool) -> OwnerReference {
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: blocks.then_some(true),
        }
    }

    fn meta(name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        }
    }

    fn deleting(mut meta: ObjectMeta, finalizer: &str) -> ObjectMeta {
        meta.deletion_timestamp = Some(Time(crate::controllers::api::timestamp_now()));
        meta.finalizers = Some(vec![finalizer.into()]);
        meta
    }

    /// The owners a ReplicaSet still names; panics when it was deleted.
    fn owner_names(api: &FakeApi, replica_set: &str) -> Vec<String> {
        api.object(&replicasets(), "default", replica_set)
            .unwrap_or_else(|| panic!("{replica_set} was deleted, expected it kept"))
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    /// One pass, at a time late enough not to be skipped.
    fn pass(gc: &mut GarbageCollector, api: &FakeApi) -> Option<OffsetDateTime> {
        let now = gc
            .last_pass
            .map_or_else(OffsetDateTime::now_utc, |last| last + MIN_PASS_INTERVAL);
        gc.sync(api, now).expect("pass")
    }

    /// Passes until nothing is left to do (at most `limit`).
    fn run(api: &FakeApi, limit: usize) -> usize {
        let mut gc = GarbageCollector::new();
        for pass_number in 1..=limit {
            let next = pass(&mut gc, api);
            if next.is_none() {
                return pass_number;
            }
        }
        panic!("still busy after {limit} passes");
    }

    #[test]
    fn dependents_of_vanished_owners_are_deleted_in_the_background() {
        let api = api();
        // The RS's owner is gone; the pod's owner exists.
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        api.put_object(
            &pods(),
            meta("web-1-a", vec![owner_ref("ReplicaSet", "web-1", true)]),
        );
        let mut gc = GarbageCollector::new();
        pass(&mut gc, &api);
        assert_eq!(
            api.deletes(),
            [("web-1".to_owned(), Propagation::Background)]
        );
        assert!(api.object(&replicasets(), "default", "web-1").is_none());
        // The next pass collects the pod, whose owner is now gone.
        run(&api, 5);
        assert!(api.object(&pods(), "default", "web-1-a").is_none());
    }

    #[test]
    fn an_owner_recreated_under_the_same_name_owns_nothing() {
        let api = api();
        let mut recreated = meta("web", vec![]);
        recreated.uid = Some("uid-web-second".into());
        api.put_object(&deployments(), recreated);
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        run(&api, 5);
        assert!(api.object(&replicasets(), "default", "web-1").is_none());
        assert!(api.object(&deployments(), "default", "web").is_some());
    }

    #[test]
    fn owners_of_unserved_kinds_and_live_owners_keep_their_dependents() {
        let api = api();
        api.put_object(&deployments(), meta("web", vec![]));
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        let mut custom = owner_ref("Widget", "w", false);
        custom.api_version = "example.com/v1".into();
        api.put_object(&pods(), meta("odd", vec![custom]));
        assert_eq!(run(&api, 3), 1, "nothing to do");
        assert!(api.deletes().is_empty(), "{:?}", api.deletes());
    }

    #[test]
    fn foreground_deletes_the_tree_then_the_owner() {
        let api = api();
        api.put_object(
            &deployments(),
            deleting(meta("web", vec![]), FOREGROUND_FINALIZER),
        );
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        api.put_object(
            &pods(),
            meta("web-1-a", vec![owner_ref("ReplicaSet", "web-1", true)]),
        );
        let mut gc = GarbageCollector::new();
        pass(&mut gc, &api);
        // The RS has a dependent: deleted in the foreground, the owner waits.
        assert_eq!(
            api.deletes(),
            [("web-1".to_owned(), Propagation::Foreground)]
        );
        assert!(api.object(&deployments(), "default", "web").is_some());
        run(&api, 10);
        for (r, name) in [
            (deployments(), "web"),
            (replicasets(), "web-1"),
            (pods(), "web-1-a"),
        ] {
            assert!(api.object(&r, "default", name).is_none(), "{name} left");
        }
    }

    #[test]
    fn foreground_waits_only_for_blocking_dependents() {
        let api = api();
        api.put_object(
            &deployments(),
            deleting(meta("web", vec![]), FOREGROUND_FINALIZER),
        );
        // A blocking dependent held by another finalizer keeps the owner.
        let mut held = meta("held", vec![owner_ref("Deployment", "web", true)]);
        held.finalizers = Some(vec!["example.com/keep".into()]);
        api.put_object(&replicasets(), held);
        let mut gc = GarbageCollector::new();
        for _ in 0..3 {
            pass(&mut gc, &api);
        }
        assert!(
            api.object(&deployments(), "default", "web").is_some(),
            "blocked by a dependent still being deleted"
        );
        let mut released = api.object(&replicasets(), "default", "held").expect("held");
        released.finalizers = None;
        released.owner_references = Some(vec![owner_ref("Deployment", "web", false)]);
        api.put_object(&replicasets(), released);
        pass(&mut gc, &api);
        assert!(
            api.object(&deployments(), "default", "web").is_none(),
            "a non-blocking dependent does not hold the owner"
        );
    }

    #[test]
    fn a_dependent_with_another_live_owner_only_loses_the_reference() {
        let api = api();
        api.put_object(
            &deployments(),
            deleting(meta("web", vec![]), FOREGROUND_FINALIZER),
        );
        api.put_object(&deployments(), meta("other", vec![]));
        api.put_object(
            &replicasets(),
            meta(
                "shared",
                vec![
                    owner_ref("Deployment", "web", true),
                    owner_ref("Deployment", "other", false),
                ],
            ),
        );
        run(&api, 5);
        assert_eq!(owner_names(&api, "shared"), ["other"]);
        assert!(api.object(&deployments(), "default", "web").is_none());
    }

    #[test]
    fn a_reference_to_a_vanished_owner_next_to_a_live_one_is_removed() {
        let api = api();
        api.put_object(&deployments(), meta("alive", vec![]));
        api.put_object(
            &replicasets(),
            meta(
                "shared",
                vec![
                    owner_ref("Deployment", "gone", true),
                    owner_ref("Deployment", "alive", false),
                ],
            ),
        );
        // A concurrent writer wins first: the swap is retried on a fresh read.
        api.conflict_metadata_updates(1);
        run(&api, 5);
        assert_eq!(
            owner_names(&api, "shared"),
            ["alive"],
            "only the live owner's reference stays"
        );
        assert!(api.deletes().is_empty(), "{:?}", api.deletes());
    }

    #[test]
    fn a_vanished_owner_next_to_an_unserved_kind_changes_nothing() {
        let api = api();
        let mut custom = owner_ref("Widget", "w", false);
        custom.api_version = "example.com/v1".into();
        let references = vec![owner_ref("Deployment", "gone", true), custom];
        api.put_object(&replicasets(), meta("odd", references.clone()));
        run(&api, 3);
        let odd = api
            .object(&replicasets(), "default", "odd")
            .expect("kept: the widget may exist");
        assert_eq!(
            odd.owner_references,
            Some(references),
            "the references of an object whose owners cannot all be read stay"
        );
        assert!(api.deletes().is_empty(), "{:?}", api.deletes());
    }

    #[test]
    fn orphan_strips_references_and_retries_on_conflict() {
        let api = api();
        api.put_object(
            &deployments(),
            deleting(meta("web", vec![]), ORPHAN_FINALIZER),
        );
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        // Two concurrent writers win first; the third attempt goes through.
        api.conflict_metadata_updates(2);
        run(&api, 5);
        let rs = api
            .object(&replicasets(), "default", "web-1")
            .expect("orphaned, not deleted");
        assert_eq!(rs.owner_references, None);
        assert!(api.object(&deployments(), "default", "web").is_none());
        assert!(api.deletes().is_empty(), "{:?}", api.deletes());
    }

    #[test]
    fn endless_conflicts_fail_the_pass_and_keep_the_finalizer() {
        let api = api();
        api.put_object(
            &deployments(),
            deleting(meta("web", vec![]), ORPHAN_FINALIZER),
        );
        api.conflict_metadata_updates(UPDATE_RETRIES);
        let error = GarbageCollector::new()
            .sync(&api, OffsetDateTime::now_utc())
            .expect_err("gave up");
        assert!(error.is_conflict(), "{error}");
        assert!(api.object(&deployments(), "default", "web").is_some());
    }

    #[test]
    fn passes_are_spaced_however_often_the_watches_wake_them() {
        let api = api();
        let mut gc = GarbageCollector::new();
        let start = OffsetDateTime::now_utc();
        assert_eq!(gc.sync(&api, start).expect("pass"), None);
        api.put_object(
            &replicasets(),
            meta("web-1", vec![owner_ref("Deployment", "web", true)]),
        );
        let soon = start + time::Duration::milliseconds(500);
        assert_eq!(
            gc.sync(&api, soon).expect("skipped"),
            Some(start + MIN_PASS_INTERVAL)
        );
        assert!(api.object(&replicasets(), "default", "web-1").is_some());
        gc.sync(&api, start + MIN_PASS_INTERVAL).expect("pass");
        assert!(api.object(&replicasets(), "default", "web-1").is_none());
    }
}

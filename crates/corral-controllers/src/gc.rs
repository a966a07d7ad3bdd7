//! The garbage collector: Kubernetes' `garbagecollector` controller, by `ownerReferences`, over
//! every kind Corral serves but Events (as in Kubernetes), run by the Raft leader.
//!
//! One informer per kind feeds a [`Graph`]: every object by uid, with its owner references, its
//! finalizers and whether it is being deleted, and the reverse index owner uid → dependents
//! (owners that are not, or no longer, in the graph included). A change marks the objects whose
//! verdict it may change (the object itself, its dependents when it appears, goes or starts being
//! deleted, and its owners that are being deleted); each marked object is looked at by [`plan`]
//! (pure) and, when something is to be done, by a worker (up to [`GcOptions::workers`] at once,
//! one per object at a time):
//!
//! - **Dependents** ([`decide_dependent`], Kubernetes' `attemptToDeleteItem`): each owner
//!   reference is *solid* (the owner exists and is not deleting in the foreground), *waiting*
//!   (it exists and is deleting in the foreground), *dangling* (no object of that kind, namespace
//!   and name has that uid) or *unresolvable* (a kind Corral does not serve, or a namespaced
//!   owner of a cluster-scoped object: never collected by it, as in Kubernetes). An owner that is
//!   not in the graph is looked up with a linearizable read before anything is decided on it
//!   (informers of different kinds do not move in step), and an owner found gone is remembered:
//!   uids are never reused. Then: with a solid owner, the references to dangling and waiting
//!   owners are removed and the object stays; with only dangling or waiting owners it is deleted
//!   (in the foreground when a waiting owner waits for it and it has dependents of its own;
//!   otherwise as its own `orphan` / `foregroundDeletion` finalizer says, else in the
//!   background). So a dependent with several owners goes only once every one of them is gone.
//! - **Background deletion** needs nothing more: the owner is deleted at once, its dependents'
//!   references dangle, and they follow.
//! - **Foreground deletion** (the owner has `deletionTimestamp` and the `foregroundDeletion`
//!   finalizer): its dependents are deleted; once none with `blockOwnerDeletion: true` is left,
//!   the finalizer is removed (the API server then deletes the owner).
//! - **Orphan deletion** (`deletionTimestamp` and the `orphan` finalizer): the owner's reference
//!   is removed from every dependent, then the finalizer.
//!
//! Before a foreground owner is let go or an orphaning owner's finalizer is removed, the kinds
//! whose informer has not yet seen the owner's revision are listed from the API, so a dependent
//! that the graph does not hold yet is neither left behind nor collected later as dangling.
//!
//! Every write names the resourceVersion it was decided on (deletes also the uid), so a write
//! decided on a stale graph, or by a deposed leader, is a Conflict and changes nothing; the
//! newer version reaches the graph and the object is looked at again.
//!
//! Owner references are resolved by `kind` (Corral serves one version of each kind); the
//! `apiVersion` of a reference is not checked.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use corral_api::kinds::{self, KindInfo};
use corral_api::{ApiError, object};
use corral_client::informer::{Change, Informer};
use corral_client::{Client, DeleteOptions, ListOptions, PropagationPolicy};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The finalizer of an object deleted with `propagationPolicy: Orphan`.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The finalizer of an object deleted with `propagationPolicy: Foreground`.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Kinds the collector does not watch: Events, as in Kubernetes (its default
/// `ignoredResources`): they are many, short-lived, and nobody owns them.
pub const IGNORED_KINDS: &[&str] = &["Event"];

/// How many owners found gone are remembered (then the memory starts over).
const ABSENT_MEMORY: usize = 50_000;
/// How many times a dependent that changed under an orphaning write is read again.
const MAX_CONFLICTS: usize = 5;
/// When an object is looked at again after the graph was found behind the API.
const SOON: Duration = Duration::from_millis(200);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// Settings of the garbage collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// How many objects are worked on at once (Kubernetes' `--concurrent-gc-syncs`, 20 there).
    pub workers: usize,
    /// How often every object is looked at again even when nothing changed.
    pub resync_period: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            workers: 8,
            resync_period: Duration::from_secs(60),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The graph
// ---------------------------------------------------------------------------------------------

/// Which object: kind, namespace (`""` for cluster-scoped kinds), name, uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {} (uid {})", self.kind, self.name, self.uid)
        } else {
            write!(
                f,
                "{} {}/{} (uid {})",
                self.kind, self.namespace, self.name, self.uid
            )
        }
    }
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

impl OwnerRef {
    /// `None` when the reference lacks a kind, a name or a uid.
    pub fn from_json(v: &Value) -> Option<OwnerRef> {
        let (kind, name, uid) = (
            str_field(v, "kind"),
            str_field(v, "name"),
            str_field(v, "uid"),
        );
        if kind.is_empty() || name.is_empty() || uid.is_empty() {
            return None;
        }
        Some(OwnerRef {
            api_version: str_field(v, "apiVersion").to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            controller: v.get("controller").and_then(Value::as_bool) == Some(true),
            block_owner_deletion: v.get("blockOwnerDeletion").and_then(Value::as_bool)
                == Some(true),
        })
    }
}

/// What the collector keeps of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: ObjectId,
    pub resource_version: String,
    pub owners: Vec<OwnerRef>,
    /// `metadata.ownerReferences` as stored (rewritten whole by the collector's patches).
    pub owner_references: Vec<Value>,
    pub finalizers: Vec<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl Node {
    /// `None` for an object without a kind, a name or a uid.
    pub fn from_object(obj: &Value) -> Option<Node> {
        let id = ObjectId {
            kind: object::kind(obj).to_string(),
            namespace: object::namespace(obj).to_string(),
            name: object::name(obj).to_string(),
            uid: object::uid(obj).to_string(),
        };
        if id.kind.is_empty() || id.name.is_empty() || id.uid.is_empty() {
            return None;
        }
        let owner_references: Vec<Value> = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Some(Node {
            id,
            resource_version: obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            owners: owner_references
                .iter()
                .filter_map(OwnerRef::from_json)
                .collect(),
            owner_references,
            finalizers: object::finalizers(obj),
            deleting: object::deletion_timestamp(obj).is_some(),
        })
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waits for its blocking dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FINALIZER_FOREGROUND)
    }

    /// Being deleted with its dependents orphaned.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(FINALIZER_ORPHAN)
    }

    /// Whether its dependents' verdicts may differ between the two versions.
    fn same_state(&self, other: &Node) -> bool {
        self.deleting == other.deleting && self.finalizers == other.finalizers
    }

    /// The references to `owner`, with `blockOwnerDeletion: true`.
    fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|o| o.uid == owner && o.block_owner_deletion)
    }
}

/// Every object by uid, and who depends on whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid (whether or not the owner is in the graph) → the uids of its dependents.
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Every uid held.
    pub fn uids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The objects that name `uid` as an owner, by kind, namespace and name.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        let mut deps: Vec<&Node> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect();
        deps.sort_by(|a, b| a.id.cmp(&b.id));
        deps
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(deps) = self.dependents.get_mut(owner) {
            deps.remove(dependent);
            if deps.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    /// The owners among `owners` that are being deleted: a change of their dependent may be what
    /// they wait for.
    fn deleting_owners<'a>(&self, owners: impl Iterator<Item = &'a OwnerRef>) -> Vec<String> {
        let uids: BTreeSet<&str> = owners.map(|o| o.uid.as_str()).collect();
        uids.into_iter()
            .filter(|u| self.nodes.get(*u).is_some_and(|n| n.deleting))
            .map(str::to_string)
            .collect()
    }

    /// Adds or replaces an object; answers the uids to look at because of it.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.id.uid.clone();
        let old = self.nodes.remove(&uid);
        if let Some(old) = &old {
            for o in &old.owners {
                self.unlink(&o.uid, &uid);
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        let mut look = vec![uid.clone()];
        let old_owners = old.iter().flat_map(|o| o.owners.iter());
        look.extend(self.deleting_owners(old_owners.chain(node.owners.iter())));
        if old.as_ref().is_none_or(|o| !o.same_state(&node)) {
            look.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.nodes.insert(uid, node);
        look.retain(|u| !u.is_empty());
        look
    }

    /// Forgets an object (it was deleted); answers the uids to look at because of it: its
    /// dependents (their owner is gone) and its owners that wait for it.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        for o in &old.owners {
            self.unlink(&o.uid, uid);
        }
        let mut look: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        look.extend(self.deleting_owners(old.owners.iter()));
        look
    }

    /// Applies an informer change; answers the uids to look at.
    pub fn apply(&mut self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(obj) => Node::from_object(obj)
                .map(|n| self.upsert(n))
                .unwrap_or_default(),
            Change::Modified { old, new } => {
                let mut look = Vec::new();
                let (old_uid, new_uid) = (object::uid(old), object::uid(new));
                if old_uid != new_uid {
                    look.extend(self.remove(old_uid));
                }
                if let Some(n) = Node::from_object(new) {
                    look.extend(self.upsert(n));
                }
                look
            }
            Change::Deleted(obj) => self.remove(object::uid(obj)),
            Change::Relisted => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// What an owner reference resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not being deleted in the foreground.
    Solid,
    /// The owner exists and is being deleted in the foreground (it waits for its dependents).
    Waiting,
    /// No object of that kind, namespace and name has that uid.
    Dangling,
    /// Not in the graph: to be read from the API before anything is decided on it.
    Missing,
    /// A kind Corral does not serve, or a namespaced owner named by a cluster-scoped object:
    /// it keeps the object, as in Kubernetes.
    Unresolvable,
}

/// Where the owner named by `r` of the object `dependent` lives: its kind and namespace (the
/// dependent's for a namespaced kind, `""` for a cluster-scoped one). `None` when it cannot be
/// resolved.
pub fn owner_location(dependent: &ObjectId, r: &OwnerRef) -> Option<(&'static KindInfo, String)> {
    let info = kinds::kind_info(&r.kind)?;
    if !info.namespaced {
        return Some((info, String::new()));
    }
    if dependent.namespace.is_empty() {
        return None;
    }
    Some((info, dependent.namespace.clone()))
}

/// The state of `dependent`'s owner `r` as the graph sees it.
pub fn owner_state(graph: &Graph, dependent: &Node, r: &OwnerRef) -> OwnerState {
    let Some((info, namespace)) = owner_location(&dependent.id, r) else {
        return OwnerState::Unresolvable;
    };
    match graph.get(&r.uid) {
        Some(o) if o.id.kind == info.kind && o.id.namespace == namespace && o.id.name == r.name => {
            if o.deleting_dependents() {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Missing,
    }
}

/// The work an object calls for, as the graph sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Nothing,
    /// A foreground owner waits for these dependents, which are not being deleted yet: look at
    /// them (their owner is waiting, so they are to go).
    LookAt(Vec<String>),
    /// Remove `owner`'s references from its dependents, then its `orphan` finalizer.
    Orphan {
        owner: Node,
        dependents: Vec<Node>,
    },
    /// A foreground owner none of whose dependents blocks it any more: remove its
    /// `foregroundDeletion` finalizer (after checking the kinds the graph may not be current on).
    FinishForeground {
        owner: Node,
    },
    /// An object some of whose owners are not solid: resolve the missing ones, then
    /// [`decide_dependent`].
    Dependent {
        item: Node,
        owners: Vec<(OwnerRef, OwnerState)>,
        has_dependents: bool,
        /// Whether one of its dependents is itself deleting in the foreground.
        dependent_deleting_dependents: bool,
    },
}

/// What the object `uid` calls for (Kubernetes' `attemptToDeleteItem`,
/// `processDeletingDependentsItem` and `attemptToOrphan`).
pub fn plan(graph: &Graph, uid: &str) -> Plan {
    let Some(item) = graph.get(uid) else {
        return Plan::Nothing;
    };
    if item.deleting {
        if item.orphaning() {
            return Plan::Orphan {
                owner: item.clone(),
                dependents: graph.dependents(uid).into_iter().cloned().collect(),
            };
        }
        if item.deleting_dependents() {
            let blocking: Vec<&Node> = graph
                .dependents(uid)
                .into_iter()
                .filter(|d| d.blocks(uid))
                .collect();
            if blocking.is_empty() {
                return Plan::FinishForeground {
                    owner: item.clone(),
                };
            }
            let look: Vec<String> = blocking
                .iter()
                .filter(|d| !d.deleting)
                .map(|d| d.id.uid.clone())
                .collect();
            return if look.is_empty() {
                Plan::Nothing
            } else {
                Plan::LookAt(look)
            };
        }
        // Being deleted otherwise: on its way already.
        return Plan::Nothing;
    }
    if item.owners.is_empty() {
        return Plan::Nothing;
    }
    let owners: Vec<(OwnerRef, OwnerState)> = item
        .owners
        .iter()
        .map(|r| (r.clone(), owner_state(graph, item, r)))
        .collect();
    if owners
        .iter()
        .all(|(_, s)| matches!(s, OwnerState::Solid | OwnerState::Unresolvable))
    {
        return Plan::Nothing;
    }
    let dependents = graph.dependents(uid);
    Plan::Dependent {
        item: item.clone(),
        owners,
        has_dependents: !dependents.is_empty(),
        dependent_deleting_dependents: dependents.iter().any(|d| d.deleting_dependents()),
    }
}

/// What is done to a dependent once its owners are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Remove the references to these owner uids (gone, or waiting for their dependents); the
    /// object's solid owners keep it.
    RemoveOwnerRefs(Vec<String>),
    /// Delete the object with this propagation. `unblock`: first set `blockOwnerDeletion: false`
    /// on its owner references (one of its own dependents is deleting in the foreground: without
    /// this, owner and dependent could wait for each other for ever).
    Delete {
        propagation: PropagationPolicy,
        unblock: bool,
    },
}

/// Kubernetes' verdict on a dependent (`attemptToDeleteItem`). A `Missing` owner counts as solid
/// (the caller resolves them first).
pub fn decide_dependent(
    item: &Node,
    owners: &[(OwnerRef, OwnerState)],
    has_dependents: bool,
    dependent_deleting_dependents: bool,
) -> Action {
    let solid = owners.iter().any(|(_, s)| {
        matches!(
            s,
            OwnerState::Solid | OwnerState::Missing | OwnerState::Unresolvable
        )
    });
    let uids_in = |state: OwnerState| -> Vec<String> {
        owners
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let dangling = uids_in(OwnerState::Dangling);
    let waiting = uids_in(OwnerState::Waiting);
    if solid {
        if dangling.is_empty() && waiting.is_empty() {
            return Action::None;
        }
        let mut remove = dangling;
        remove.extend(waiting);
        return Action::RemoveOwnerRefs(remove);
    }
    if !waiting.is_empty() && has_dependents {
        return Action::Delete {
            propagation: PropagationPolicy::Foreground,
            unblock: dependent_deleting_dependents,
        };
    }
    let propagation = if item.has_finalizer(FINALIZER_ORPHAN) {
        PropagationPolicy::Orphan
    } else if item.has_finalizer(FINALIZER_FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    Action::Delete {
        propagation,
        unblock: false,
    }
}

/// `ownerReferences` without the references to `uids`.
pub fn without_owner_refs(refs: &[Value], uids: &[String]) -> Vec<Value> {
    refs.iter()
        .filter(|r| !uids.iter().any(|u| u == str_field(r, "uid")))
        .cloned()
        .collect()
}

/// `ownerReferences` with `blockOwnerDeletion: false` where it was true.
pub fn unblocked_owner_refs(refs: &[Value]) -> Vec<Value> {
    refs.iter()
        .map(|r| {
            let mut r = r.clone();
            if r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                r["blockOwnerDeletion"] = json!(false);
            }
            r
        })
        .collect()
}

/// A merge patch setting `metadata.<field>` to `list` (removing it when empty), on the
/// condition that the object is still at `resource_version`.
fn metadata_list_patch(resource_version: &str, field: &str, list: Vec<Value>) -> Value {
    let value = if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    };
    json!({"metadata": {"resourceVersion": resource_version, field: value}})
}

/// The finalizers without `finalizer`.
fn finalizers_without(node: &Node, finalizer: &str) -> Vec<Value> {
    node.finalizers
        .iter()
        .filter(|f| *f != finalizer)
        .map(|f| json!(f))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Carrying it out
// ---------------------------------------------------------------------------------------------

/// How a piece of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Done, or nothing to do until the graph changes.
    Done,
    /// The graph was behind the API: look again shortly.
    Soon,
}

#[derive(Clone)]
struct Ctx {
    client: Client,
    informers: Arc<Vec<Informer>>,
    /// Owner references found dangling (`kind/namespace/name/uid`): they stay so, uids are never
    /// reused.
    absent: Arc<Mutex<HashSet<String>>>,
}

fn is_conflict(e: &ApiError) -> bool {
    matches!(e, ApiError::Conflict { .. })
}

fn is_not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::NotFound { .. })
}

impl Ctx {
    async fn execute(&self, plan: Plan) -> Result<Outcome, ApiError> {
        match plan {
            Plan::Nothing | Plan::LookAt(_) => Ok(Outcome::Done),
            Plan::Orphan { owner, dependents } => self.orphan(&owner, dependents).await,
            Plan::FinishForeground { owner } => self.finish_foreground(&owner).await,
            Plan::Dependent {
                item,
                owners,
                has_dependents,
                dependent_deleting_dependents,
            } => {
                self.collect(&item, owners, has_dependents, dependent_deleting_dependents)
                    .await
            }
        }
    }

    fn absent_key(info: &KindInfo, namespace: &str, r: &OwnerRef) -> String {
        format!("{}/{}/{}/{}", info.kind, namespace, r.name, r.uid)
    }

    /// Reads the owner `r` of `dependent` from the API.
    async fn confirm(&self, dependent: &ObjectId, r: &OwnerRef) -> Result<OwnerState, ApiError> {
        let Some((info, namespace)) = owner_location(dependent, r) else {
            return Ok(OwnerState::Unresolvable);
        };
        let key = Self::absent_key(info, &namespace, r);
        if self
            .absent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(OwnerState::Dangling);
        }
        match self.client.get(info.kind, &namespace, &r.name).await {
            Ok(owner) if object::uid(&owner) == r.uid => {
                let owner = Node::from_object(&owner);
                Ok(match owner {
                    Some(o) if o.deleting_dependents() => OwnerState::Waiting,
                    _ => OwnerState::Solid,
                })
            }
            Ok(_) => Ok(self.remember_absent(key)),
            Err(e) if is_not_found(&e) => Ok(self.remember_absent(key)),
            Err(e) => Err(e),
        }
    }

    fn remember_absent(&self, key: String) -> OwnerState {
        let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
        if absent.len() >= ABSENT_MEMORY {
            absent.clear();
        }
        absent.insert(key);
        OwnerState::Dangling
    }

    /// Resolves the missing owners of `item`, decides, and acts.
    async fn collect(
        &self,
        item: &Node,
        owners: Vec<(OwnerRef, OwnerState)>,
        has_dependents: bool,
        dependent_deleting_dependents: bool,
    ) -> Result<Outcome, ApiError> {
        let mut resolved = Vec::with_capacity(owners.len());
        for (r, state) in owners {
            let state = match state {
                OwnerState::Missing => self.confirm(&item.id, &r).await?,
                s => s,
            };
            resolved.push((r, state));
        }
        let action = decide_dependent(
            item,
            &resolved,
            has_dependents,
            dependent_deleting_dependents,
        );
        let id = &item.id;
        match action {
            Action::None => Ok(Outcome::Done),
            Action::RemoveOwnerRefs(uids) => {
                let refs = without_owner_refs(&item.owner_references, &uids);
                let patch = metadata_list_patch(&item.resource_version, "ownerReferences", refs);
                match self
                    .client
                    .patch(&id.kind, &id.namespace, &id.name, &patch, false)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(object = %id, owners = ?uids, "garbage collector: removed references to owners that are gone or deleting");
                        Ok(Outcome::Done)
                    }
                    Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Outcome::Done),
                    Err(e) => Err(e),
                }
            }
            Action::Delete {
                propagation,
                unblock,
            } => {
                let mut resource_version = item.resource_version.clone();
                if unblock {
                    let refs = unblocked_owner_refs(&item.owner_references);
                    let patch = metadata_list_patch(&resource_version, "ownerReferences", refs);
                    match self
                        .client
                        .patch(&id.kind, &id.namespace, &id.name, &patch, false)
                        .await
                    {
                        Ok(updated) => {
                            resource_version = updated
                                .pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string();
                        }
                        Err(e) if is_conflict(&e) || is_not_found(&e) => {
                            return Ok(Outcome::Done);
                        }
                        Err(e) => return Err(e),
                    }
                }
                let options = DeleteOptions {
                    propagation_policy: Some(propagation),
                    resource_version: Some(resource_version).filter(|s| !s.is_empty()),
                    uid: Some(id.uid.clone()),
                    ..DeleteOptions::default()
                };
                match self
                    .client
                    .delete(&id.kind, &id.namespace, &id.name, &options)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(object = %id, %propagation, "garbage collector: deleted an object whose owners are gone");
                        Ok(Outcome::Done)
                    }
                    Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Outcome::Done),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The dependents of `owner` the graph may not hold yet: those of the kinds whose informer
    /// has not reached the owner's revision, read from the API.
    async fn unseen_dependents(&self, owner: &Node) -> Result<Vec<Node>, ApiError> {
        let revision: u64 = owner.resource_version.parse().unwrap_or(u64::MAX);
        let owner_namespaced = kinds::kind_info(&owner.id.kind).is_some_and(|k| k.namespaced);
        let namespace = owner_namespaced.then_some(owner.id.namespace.as_str());
        let mut found = Vec::new();
        for informer in self.informers.iter() {
            if informer.revision() >= revision {
                continue;
            }
            let Some(info) = kinds::kind_info(informer.kind()) else {
                continue;
            };
            if owner_namespaced && !info.namespaced {
                continue;
            }
            let list = self
                .client
                .list(info.kind, namespace, &ListOptions::default())
                .await?;
            found.extend(
                list.items
                    .iter()
                    .filter_map(Node::from_object)
                    .filter(|n| n.owners.iter().any(|o| o.uid == owner.id.uid)),
            );
        }
        Ok(found)
    }

    /// Removes the finalizer from `owner` (the API server deletes it when it was the last).
    async fn remove_finalizer(&self, owner: &Node, finalizer: &str) -> Result<Outcome, ApiError> {
        let id = &owner.id;
        let patch = metadata_list_patch(
            &owner.resource_version,
            "finalizers",
            finalizers_without(owner, finalizer),
        );
        match self
            .client
            .patch(&id.kind, &id.namespace, &id.name, &patch, false)
            .await
        {
            Ok(_) => {
                tracing::info!(object = %id, finalizer, "garbage collector: finalizer removed");
                Ok(Outcome::Done)
            }
            // A newer version reaches the graph and is looked at again.
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Outcome::Done),
            Err(e) => Err(e),
        }
    }

    async fn finish_foreground(&self, owner: &Node) -> Result<Outcome, ApiError> {
        let unseen = self.unseen_dependents(owner).await?;
        if unseen.iter().any(|d| d.blocks(&owner.id.uid)) {
            tracing::debug!(object = %owner.id, "garbage collector: blocking dependents not in the graph yet");
            return Ok(Outcome::Soon);
        }
        self.remove_finalizer(owner, FINALIZER_FOREGROUND).await
    }

    async fn orphan(&self, owner: &Node, dependents: Vec<Node>) -> Result<Outcome, ApiError> {
        let mut all: Vec<Node> = dependents;
        for d in self.unseen_dependents(owner).await? {
            match all.iter_mut().find(|n| n.id.uid == d.id.uid) {
                Some(n) => *n = d,
                None => all.push(d),
            }
        }
        for dependent in all {
            self.orphan_one(dependent, &owner.id.uid).await?;
        }
        tracing::info!(object = %owner.id, "garbage collector: dependents orphaned");
        self.remove_finalizer(owner, FINALIZER_ORPHAN).await
    }

    /// Removes the references to `owner` from `dependent`, reading it again when it changed.
    async fn orphan_one(&self, mut dependent: Node, owner: &str) -> Result<(), ApiError> {
        let owner_uids = [owner.to_string()];
        for _ in 0..MAX_CONFLICTS {
            if !dependent.owners.iter().any(|o| o.uid == owner) {
                return Ok(());
            }
            let id = dependent.id.clone();
            let refs = without_owner_refs(&dependent.owner_references, &owner_uids);
            let patch = metadata_list_patch(&dependent.resource_version, "ownerReferences", refs);
            match self
                .client
                .patch(&id.kind, &id.namespace, &id.name, &patch, false)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => {
                    match self.client.get(&id.kind, &id.namespace, &id.name).await {
                        Ok(live) if object::uid(&live) == id.uid => {
                            match Node::from_object(&live) {
                                Some(n) => dependent = n,
                                None => return Ok(()),
                            }
                        }
                        Ok(_) => return Ok(()),
                        Err(e) if is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict {
            kind: dependent.id.kind.clone(),
            name: dependent.id.name.clone(),
            field: "metadata.ownerReferences".into(),
            expected: "a stable object".into(),
            actual: format!("changed {MAX_CONFLICTS} times while being orphaned"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

/// Marked objects, each once, in order.
#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<String>,
    queued: HashSet<String>,
}

impl Queue {
    fn push(&mut self, uid: String) {
        if self.queued.insert(uid.clone()) {
            self.order.push_back(uid);
        }
    }

    fn pop(&mut self) -> Option<String> {
        let uid = self.order.pop_front()?;
        self.queued.remove(&uid);
        Some(uid)
    }
}

/// Runs the garbage collector until `cancel` fires.
pub async fn run(client: Client, opts: GcOptions, cancel: CancellationToken) {
    let (tx, mut changes) = mpsc::unbounded_channel::<Change>();
    let mut informers = Vec::new();
    for info in kinds::all()
        .iter()
        .filter(|k| !IGNORED_KINDS.contains(&k.kind))
    {
        let informer = Informer::builder(client.clone(), info.kind).start(cancel.clone());
        let mut rx = informer.subscribe();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                if tx.send(change).is_err() {
                    break;
                }
            }
        });
        informers.push(informer);
    }
    drop(tx);
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { for i in &informers { i.wait_synced().await } } => {}
    }
    let mut graph = Graph::default();
    for informer in &informers {
        for obj in informer.list() {
            if let Some(node) = Node::from_object(&obj) {
                graph.upsert(node);
            }
        }
    }
    tracing::info!(
        objects = graph.len(),
        "garbage collector: caches synced, watching every kind"
    );
    let ctx = Ctx {
        client,
        informers: Arc::new(informers),
        absent: Arc::new(Mutex::new(HashSet::new())),
    };
    let workers = opts.workers.max(1);
    let mut queue = Queue::default();
    for uid in graph.uids() {
        queue.push(uid);
    }
    let (requeue_tx, mut requeue) = mpsc::unbounded_channel::<String>();
    let mut tasks: JoinSet<(String, Result<Outcome, ApiError>)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut again: HashSet<String> = HashSet::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut resync = tokio::time::interval(opts.resync_period.max(Duration::from_secs(1)));
    resync.tick().await;
    let later = |uid: String, after: Duration| {
        let (tx, cancel) = (requeue_tx.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(after) => { let _ = tx.send(uid); }
            }
        });
    };
    loop {
        while tasks.len() < workers {
            let Some(uid) = queue.pop() else { break };
            if in_flight.contains(&uid) {
                again.insert(uid);
                continue;
            }
            match plan(&graph, &uid) {
                Plan::Nothing => {}
                Plan::LookAt(uids) => uids.into_iter().for_each(|u| queue.push(u)),
                work => {
                    in_flight.insert(uid.clone());
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        let outcome = ctx.execute(work).await;
                        (uid, outcome)
                    });
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((uid, outcome)) = done else { continue };
                in_flight.remove(&uid);
                match outcome {
                    Ok(Outcome::Done) => {
                        failures.remove(&uid);
                    }
                    Ok(Outcome::Soon) => later(uid.clone(), SOON),
                    Err(e) => {
                        let n = failures.entry(uid.clone()).or_insert(0);
                        let after = FIRST_RETRY
                            .saturating_mul(2u32.saturating_pow(*n))
                            .min(LONGEST_RETRY);
                        *n = n.saturating_add(1);
                        tracing::warn!(uid = %uid, error = %e, "garbage collector: retrying in {after:?}");
                        later(uid.clone(), after);
                    }
                }
                if again.remove(&uid) {
                    queue.push(uid);
                }
            }
            Some(change) = changes.recv() => {
                let mut next = Some(change);
                while let Some(change) = next {
                    if change == Change::Relisted {
                        graph.uids().into_iter().for_each(|u| queue.push(u));
                    }
                    graph.apply(&change).into_iter().for_each(|u| queue.push(u));
                    next = changes.try_recv().ok();
                }
            }
            Some(uid) = requeue.recv() => queue.push(uid),
            _ = resync.tick() => graph.uids().into_iter().for_each(|u| queue.push(u)),
        }
    }
    tracing::info!("garbage collector: stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid,
               "controller": true, "blockOwnerDeletion": block})
    }

    fn obj(kind: &str, ns: &str, name: &str, uid: &str, owners: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": kind,
               "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": "7",
                            "ownerReferences": owners}})
    }

    fn cm(name: &str, uid: &str, owners: Vec<Value>) -> Node {
        Node::from_object(&obj("ConfigMap", "default", name, uid, owners)).expect("a node")
    }

    fn deleting(mut n: Node, finalizers: &[&str]) -> Node {
        n.deleting = true;
        n.finalizers = finalizers.iter().map(|f| f.to_string()).collect();
        n
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        let mut g = Graph::default();
        for n in nodes {
            g.upsert(n);
        }
        g
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn nodes_read_what_the_collector_needs() {
        let mut o = obj(
            "ConfigMap",
            "default",
            "a",
            "u1",
            vec![
                owner_ref("ConfigMap", "o", "u0", true),
                json!({"kind": "ConfigMap", "name": "no-uid"}),
            ],
        );
        o["metadata"]["finalizers"] = json!(["orphan"]);
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let n = Node::from_object(&o).expect("a node");
        assert_eq!(n.id.to_string(), "ConfigMap default/a (uid u1)");
        assert_eq!(n.owners.len(), 1, "a reference without a uid is no owner");
        assert_eq!(n.owner_references.len(), 2, "but is kept when rewriting");
        assert!(n.owners[0].block_owner_deletion && n.owners[0].controller);
        assert!(n.orphaning() && !n.deleting_dependents());
        assert_eq!(Node::from_object(&json!({"kind": "ConfigMap"})), None);
    }

    #[test]
    fn the_graph_marks_whom_a_change_concerns() {
        let mut g = Graph::default();
        let owner = cm("o", "u0", vec![]);
        let dep = cm("d", "u1", vec![owner_ref("ConfigMap", "o", "u0", true)]);
        // A dependent arriving before its owner: itself only (its owner is unknown).
        assert_eq!(g.upsert(dep.clone()), vec!["u1"]);
        assert_eq!(g.dependents("u0").len(), 1, "indexed under a missing owner");
        // The owner arrives: it and its dependents.
        assert_eq!(sorted(g.upsert(owner.clone())), vec!["u0", "u1"]);
        // An unchanged state: itself only.
        assert_eq!(g.upsert(owner.clone()), vec!["u0"]);
        // The owner starts deleting in the foreground: its dependents too.
        let fg = deleting(owner.clone(), &[FINALIZER_FOREGROUND]);
        assert_eq!(sorted(g.upsert(fg)), vec!["u0", "u1"]);
        // The dependent changes: its deleting owner is looked at.
        let mut dep2 = dep.clone();
        dep2.resource_version = "9".into();
        assert_eq!(sorted(g.upsert(dep2)), vec!["u0", "u1"]);
        // The dependent goes: its deleting owner is looked at.
        assert_eq!(g.remove("u1"), vec!["u0"]);
        assert!(g.dependents("u0").is_empty());
        // The owner goes: its (re-added) dependent is looked at.
        g.upsert(dep);
        assert_eq!(g.remove("u0"), vec!["u1"]);
        assert_eq!(g.remove("u0"), Vec::<String>::new(), "already gone");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn a_modification_to_another_uid_replaces_the_object() {
        let mut g = Graph::default();
        let a = Arc::new(obj("ConfigMap", "default", "a", "u1", vec![]));
        let b = Arc::new(obj("ConfigMap", "default", "a", "u2", vec![]));
        g.apply(&Change::Added(a.clone()));
        g.apply(&Change::Modified {
            old: a,
            new: b.clone(),
        });
        assert!(g.get("u1").is_none());
        assert!(g.get("u2").is_some());
        g.apply(&Change::Deleted(b));
        assert!(g.is_empty());
    }

    #[test]
    fn owners_resolve_by_kind_namespace_name_and_uid() {
        let owner = cm("o", "u0", vec![]);
        let node =
            Node::from_object(&json!({"kind": "Node", "metadata": {"name": "n1", "uid": "n-uid"}}))
                .expect("a node");
        let g = graph(vec![owner.clone(), node]);
        let cases = [
            (
                "present",
                owner_ref("ConfigMap", "o", "u0", false),
                OwnerState::Solid,
            ),
            (
                "other name",
                owner_ref("ConfigMap", "x", "u0", false),
                OwnerState::Missing,
            ),
            (
                "other kind",
                owner_ref("Secret", "o", "u0", false),
                OwnerState::Missing,
            ),
            (
                "unknown uid",
                owner_ref("ConfigMap", "o", "u9", false),
                OwnerState::Missing,
            ),
            (
                "cluster-scoped owner",
                owner_ref("Node", "n1", "n-uid", false),
                OwnerState::Solid,
            ),
            (
                "unknown kind",
                owner_ref("Widget", "w", "w1", false),
                OwnerState::Unresolvable,
            ),
        ];
        for (what, r, want) in cases {
            let dep = cm("d", "u1", vec![r.clone()]);
            let r = OwnerRef::from_json(&r).expect("a ref");
            assert_eq!(owner_state(&g, &dep, &r), want, "{what}");
        }
        // A cluster-scoped object cannot be owned by a namespaced one.
        let pv = Node::from_object(&json!({"kind": "PersistentVolume",
            "metadata": {"name": "pv", "uid": "pv1", "ownerReferences": [owner_ref("ConfigMap", "o", "u0", false)]}}))
            .expect("a node");
        assert_eq!(
            owner_state(&g, &pv, &pv.owners[0]),
            OwnerState::Unresolvable
        );
        // An owner of the same name in another namespace is not the owner.
        let other_ns = Node::from_object(&obj(
            "ConfigMap",
            "prod",
            "d",
            "u3",
            vec![owner_ref("ConfigMap", "o", "u0", false)],
        ))
        .expect("a node");
        assert_eq!(
            owner_state(&g, &other_ns, &other_ns.owners[0]),
            OwnerState::Missing
        );
        // Deleting in the foreground: waiting; otherwise solid.
        let g = graph(vec![deleting(owner.clone(), &[FINALIZER_FOREGROUND])]);
        let dep = cm("d", "u1", vec![owner_ref("ConfigMap", "o", "u0", false)]);
        assert_eq!(owner_state(&g, &dep, &dep.owners[0]), OwnerState::Waiting);
        let g = graph(vec![deleting(owner, &[FINALIZER_ORPHAN])]);
        assert_eq!(owner_state(&g, &dep, &dep.owners[0]), OwnerState::Solid);
    }

    fn r(uid: &str) -> OwnerRef {
        OwnerRef::from_json(&owner_ref("ConfigMap", uid, uid, true)).expect("a ref")
    }

    /// What, the item, its owners, has dependents, a dependent deleting in the foreground, the
    /// verdict.
    type DependentCase<'a> = (
        &'a str,
        &'a Node,
        Vec<(OwnerRef, OwnerState)>,
        bool,
        bool,
        Action,
    );

    #[test]
    fn dependents_are_decided_as_kubernetes_decides() {
        use OwnerState::*;
        let plain = cm("d", "u1", vec![]);
        let with_orphan = Node {
            finalizers: vec![FINALIZER_ORPHAN.into()],
            ..plain.clone()
        };
        let with_fg = Node {
            finalizers: vec![FINALIZER_FOREGROUND.into()],
            ..plain.clone()
        };
        let bg = Action::Delete {
            propagation: PropagationPolicy::Background,
            unblock: false,
        };
        let cases: Vec<DependentCase> = vec![
            (
                "all solid",
                &plain,
                vec![(r("a"), Solid), (r("b"), Solid)],
                false,
                false,
                Action::None,
            ),
            (
                "unresolvable keeps it",
                &plain,
                vec![(r("a"), Unresolvable)],
                false,
                false,
                Action::None,
            ),
            (
                "owner gone",
                &plain,
                vec![(r("a"), Dangling)],
                false,
                false,
                bg.clone(),
            ),
            (
                "every owner gone",
                &plain,
                vec![(r("a"), Dangling), (r("b"), Dangling)],
                true,
                false,
                bg.clone(),
            ),
            (
                "one of two gone: its reference goes",
                &plain,
                vec![(r("a"), Solid), (r("b"), Dangling)],
                false,
                false,
                Action::RemoveOwnerRefs(vec!["b".into()]),
            ),
            (
                "a solid owner and a waiting one: stays, unblocking the waiting one",
                &plain,
                vec![(r("a"), Waiting), (r("b"), Solid), (r("c"), Dangling)],
                false,
                false,
                Action::RemoveOwnerRefs(vec!["c".into(), "a".into()]),
            ),
            (
                "waiting owner, no dependents",
                &plain,
                vec![(r("a"), Waiting)],
                false,
                false,
                bg.clone(),
            ),
            (
                "waiting owner, with dependents: in the foreground",
                &plain,
                vec![(r("a"), Waiting), (r("b"), Dangling)],
                true,
                false,
                Action::Delete {
                    propagation: PropagationPolicy::Foreground,
                    unblock: false,
                },
            ),
            (
                "waiting owner, a dependent deleting in the foreground: unblock first",
                &plain,
                vec![(r("a"), Waiting)],
                true,
                true,
                Action::Delete {
                    propagation: PropagationPolicy::Foreground,
                    unblock: true,
                },
            ),
            (
                "its own orphan finalizer",
                &with_orphan,
                vec![(r("a"), Dangling)],
                true,
                false,
                Action::Delete {
                    propagation: PropagationPolicy::Orphan,
                    unblock: false,
                },
            ),
            (
                "its own foreground finalizer",
                &with_fg,
                vec![(r("a"), Dangling)],
                false,
                false,
                Action::Delete {
                    propagation: PropagationPolicy::Foreground,
                    unblock: false,
                },
            ),
            (
                "missing counts as solid",
                &plain,
                vec![(r("a"), Missing)],
                false,
                false,
                Action::None,
            ),
        ];
        for (what, item, owners, has_deps, dep_fg, want) in cases {
            assert_eq!(
                decide_dependent(item, &owners, has_deps, dep_fg),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn plans_follow_the_deletion_state() {
        let owner = cm("o", "u0", vec![]);
        let blocking = cm("a", "u1", vec![owner_ref("ConfigMap", "o", "u0", true)]);
        let free = cm("b", "u2", vec![owner_ref("ConfigMap", "o", "u0", false)]);

        // Nothing to do for an object whose owners are all there, or that has none.
        let g = graph(vec![owner.clone(), blocking.clone(), free.clone()]);
        assert_eq!(plan(&g, "u0"), Plan::Nothing);
        assert_eq!(plan(&g, "u1"), Plan::Nothing);
        assert_eq!(plan(&g, "nobody"), Plan::Nothing);

        // Orphaning: every dependent, then the finalizer.
        let g = graph(vec![
            deleting(owner.clone(), &[FINALIZER_ORPHAN]),
            blocking.clone(),
            free.clone(),
        ]);
        assert_eq!(
            plan(&g, "u0"),
            Plan::Orphan {
                owner: deleting(owner.clone(), &[FINALIZER_ORPHAN]),
                dependents: vec![blocking.clone(), free.clone()],
            }
        );

        // Foreground: the blocking dependent is looked at; the dependents are to go.
        let fg = deleting(owner.clone(), &[FINALIZER_FOREGROUND]);
        let g = graph(vec![fg.clone(), blocking.clone(), free.clone()]);
        assert_eq!(plan(&g, "u0"), Plan::LookAt(vec!["u1".into()]));
        let Plan::Dependent {
            owners,
            has_dependents,
            ..
        } = plan(&g, "u1")
        else {
            panic!("the dependent of a waiting owner has work");
        };
        assert_eq!(owners[0].1, OwnerState::Waiting);
        assert!(!has_dependents);
        // The blocking dependent is being deleted (a finalizer holds it): wait.
        let g = graph(vec![
            fg.clone(),
            deleting(blocking.clone(), &["example.com/hold"]),
            free.clone(),
        ]);
        assert_eq!(plan(&g, "u0"), Plan::Nothing);
        assert_eq!(plan(&g, "u1"), Plan::Nothing, "being deleted: on its way");
        // Only non-blocking dependents left: the owner is let go.
        let g = graph(vec![fg.clone(), free.clone()]);
        assert_eq!(plan(&g, "u0"), Plan::FinishForeground { owner: fg.clone() });

        // Background: the owner is gone, its dependents have work.
        let g = graph(vec![blocking.clone()]);
        let Plan::Dependent { owners, .. } = plan(&g, "u1") else {
            panic!("a dependent of a missing owner has work");
        };
        assert_eq!(owners[0].1, OwnerState::Missing);

        // Deleting with some other finalizer: nothing for the collector.
        let g = graph(vec![deleting(owner, &["example.com/x"])]);
        assert_eq!(plan(&g, "u0"), Plan::Nothing);
    }

    #[test]
    fn patches_rewrite_owner_references_and_finalizers() {
        let refs = vec![
            owner_ref("ConfigMap", "a", "ua", true),
            owner_ref("ConfigMap", "b", "ub", false),
        ];
        assert_eq!(
            without_owner_refs(&refs, &["ua".into()]),
            vec![refs[1].clone()]
        );
        let unblocked = unblocked_owner_refs(&refs);
        assert_eq!(unblocked[0]["blockOwnerDeletion"], json!(false));
        assert_eq!(unblocked[1], refs[1]);
        assert_eq!(
            metadata_list_patch("5", "ownerReferences", vec![]),
            json!({"metadata": {"resourceVersion": "5", "ownerReferences": null}})
        );
        let n = deleting(cm("o", "u0", vec![]), &[FINALIZER_ORPHAN, "x"]);
        assert_eq!(finalizers_without(&n, FINALIZER_ORPHAN), vec![json!("x")]);
    }

    #[test]
    fn the_queue_holds_each_uid_once() {
        let mut q = Queue::default();
        q.push("a".into());
        q.push("b".into());
        q.push("a".into());
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.push("a".into());
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop(), None);
    }
}

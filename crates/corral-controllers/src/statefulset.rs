//! The StatefulSet controller: Kubernetes' `statefulset-controller`
//! (`pkg/controller/statefulset`), run by the Raft leader.
//!
//! Every decision is the pure function [`decide`]: the StatefulSet, the pods and
//! ControllerRevisions of its namespace, a lookup of its claims and "now" in, a [`Plan`] out. It
//! follows Kubernetes' `stateful_set_control.go` and `stateful_set_utils.go`:
//!
//! - **Identity.** Pod `<set>-<ordinal>` for every ordinal of `[start, start + replicas)`
//!   (`spec.ordinals.start`, default 0), with `spec.hostname` = its name and `spec.subdomain` =
//!   `serviceName`, the template's labels plus `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index` and `controller-revision-hash`, and the StatefulSet as its
//!   controller. A pod is the StatefulSet's when it is its controller (or an orphan it adopts),
//!   its selector matches and its name is `<set>-<ordinal>`.
//! - **Storage.** Each `volumeClaimTemplates` entry gives every ordinal its own claim
//!   `<claim>-<set>-<ordinal>` (the template's labels and the selector's `matchLabels`, no owner
//!   reference: `persistentVolumeClaimRetentionPolicy` Retain), created before the pod; the pod's
//!   volume of that name refers to it. Claims stay when pods go, so an ordinal that comes back
//!   finds its claim. A claim being deleted holds its pod's creation back.
//! - **OrderedReady** (`podManagementPolicy`, the default; Kubernetes' "monotonic"): ordinals are
//!   visited in ascending order and the first one that is not Running and Ready (and available
//!   for `minReadySeconds`) stops the pass, so ordinal N+1 is created only once 0..N are ready;
//!   a pod that failed or succeeded is deleted and its replacement made on a later pass, once the
//!   old object is gone; a terminating pod blocks until it is gone. Ordinals past the end are
//!   deleted highest first, one at a time, each only after the previous one is gone, and only
//!   while every other pod is healthy (an unhealthy one blocks, except the lowest unhealthy one,
//!   which may go). **Parallel**: every missing pod is created and every surplus one deleted in
//!   one pass.
//! - **At most one pod per identity.** A pod is created only for an ordinal whose slot is empty
//!   in the cache; a pod that is terminating still holds its slot, so its replacement is made
//!   only after the old object is gone from the store (names are unique, so the API would refuse
//!   a second one anyway).
//! - **Revisions.** The template's history is kept in `ControllerRevision` objects named
//!   `<set>-<hash>`, whose `data` is the patch `{"spec":{"template":{..., "$patch":"replace"}}}`
//!   and whose `revision` is a number that grows with every new template. The update revision
//!   is the one equal to the current template (a new one is created, or an older equal one is
//!   given the next number: a rollback); a name taken by a different revision bumps
//!   `status.collisionCount`. The current revision is `status.currentRevision` (the update one
//!   at first). Revisions that neither status revision nor any pod uses are deleted, oldest
//!   first, down to `revisionHistoryLimit`.
//! - **Updates.** `RollingUpdate` deletes the highest ordinal not at the update revision, one at
//!   a time, each only after the previous replacement is Running and Ready; ordinals below
//!   `partition` keep the current revision (and a replacement made for them gets it). Once
//!   every pod is updated and ready the update revision becomes the current one. `OnDelete`
//!   replaces nothing itself: a pod deleted by someone else comes back at the update revision.
//! - **Deletion.** The controller puts the finalizer [`SCALE_DOWN_FINALIZER`] on every
//!   StatefulSet. When one is deleted, it removes the pods highest ordinal first, one at a time
//!   with OrderedReady (each gone before the next one goes; readiness is not waited for, so a
//!   broken StatefulSet can still be deleted), all at once with Parallel, then removes the
//!   finalizer and the API server deletes the StatefulSet. The claims stay. Deleted with
//!   `propagationPolicy: Orphan`, it leaves the pods to the garbage collector, which orphans
//!   them; with `Foreground`, the garbage collector deletes the pods too.
//! - **Status**: `replicas`, `readyReplicas`, `currentReplicas`, `updatedReplicas`,
//!   `availableReplicas` (ready for `minReadySeconds`), `currentRevision`, `updateRevision`,
//!   `observedGeneration`, `collisionCount`.
//!
//! [`run`] feeds [`decide`] from informers (StatefulSets, Pods, ControllerRevisions,
//! PersistentVolumeClaims) on the shared runtime ([`run_controller`]) and carries the plan out:
//! every write names what it was decided on (creates: the name must be free; updates and
//! patches: the resourceVersion; deletes: the uid), with Kubernetes' events
//! (`SuccessfulCreate`, `SuccessfulDelete`, `RecreatingFailedPod`, ...). It makes no pod changes
//! for a StatefulSet while its earlier creations and deletions have not come back through the
//! watch ([`Expectations`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use corral_api::ApiError;
use corral_api::object;
use corral_api::selector::{LabelSelector, from_label_selector_json};
use corral_client::events::EventRecorder;
use corral_client::informer::index_by_namespace;
use corral_client::{Change, Client, DeleteOptions, Informer, ListOptions};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::deployment::{
    Claim, InvalidObject, canonical_json, compute_hash, controller_ref, with_owner, without_owner,
};
use crate::gc::FINALIZER_ORPHAN;
use crate::node_lifecycle::parse_time;
use crate::replicaset::index_by_controller_uid;
use crate::runtime::{Action, ControllerOptions, Expectations, Source, run_controller};

/// The label naming the pod's StatefulSet pod name (a Service may select one pod by it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the ControllerRevision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label holding a ControllerRevision's hash.
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The finalizer the controller puts on every StatefulSet, so that deleting one scales it to
/// zero (highest ordinal first) before it goes.
pub const SCALE_DOWN_FINALIZER: &str = "corral.io/statefulset-scale-down";

/// Event reasons, as Kubernetes' StatefulSet controller writes them.
pub const EVENT_SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
pub const EVENT_FAILED_CREATE: &str = "FailedCreate";
pub const EVENT_SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
pub const EVENT_FAILED_DELETE: &str = "FailedDelete";
pub const EVENT_SUCCESSFUL_UPDATE: &str = "SuccessfulUpdate";
pub const EVENT_FAILED_UPDATE: &str = "FailedUpdate";
pub const EVENT_RECREATING_FAILED_POD: &str = "RecreatingFailedPod";
pub const EVENT_RECREATING_TERMINATED_POD: &str = "RecreatingTerminatedPod";

const COMPONENT: &str = "statefulset-controller";
const NAMESPACE_INDEX: &str = "namespace";
const CONTROLLER_INDEX: &str = "controller-uid";
const ORPHAN_INDEX: &str = "orphans-by-namespace";

/// The longest prefix of a ControllerRevision name (Kubernetes' `ControllerRevisionName`).
const MAX_REVISION_PREFIX: usize = 223;

/// How long after a pod's availability time the StatefulSet is looked at again.
const AVAILABILITY_MARGIN: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What a sync of one StatefulSet can fail with. `BadKey` and `Invalid` are logged and not
/// retried (the object has to change first); `Api` is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workqueue key {0:?} is not namespace/name")]
    BadKey(String),
    #[error(transparent)]
    Invalid(#[from] InvalidObject),
    #[error("StatefulSet {sts}: {action}: {source}")]
    Api {
        sts: String,
        action: String,
        source: Box<ApiError>,
    },
    #[error("StatefulSet {sts}: {why}")]
    NotYet { sts: String, why: String },
}

fn api(sts: &str, action: impl Into<String>) -> impl FnOnce(ApiError) -> Error {
    let (sts, action) = (sts.to_string(), action.into());
    move |source| Error::Api {
        sts,
        action,
        source: Box::new(source),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading objects
// ---------------------------------------------------------------------------------------------

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

fn key_of(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

/// The StatefulSet name and ordinal a pod name carries (Kubernetes' `getParentNameAndOrdinal`:
/// `(.*)-([0-9]+)$`, the ordinal a 32-bit integer).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i64)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ordinal: i32 = digits.parse().ok()?;
    Some((parent, i64::from(ordinal)))
}

/// The pod's ordinal, when its name has one.
pub fn ordinal_of(pod: &Value) -> Option<i64> {
    parent_and_ordinal(object::name(pod)).map(|(_, o)| o)
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i64) -> String {
    format!("{set}-{ordinal}")
}

/// `<claim>-<set>-<ordinal>`: the claim of one ordinal.
pub fn claim_name(claim: &str, set: &str, ordinal: i64) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn terminating(obj: &Value) -> bool {
    object::deletion_timestamp(obj).is_some()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
}

/// Kubernetes' `isRunningAndReady`: phase Running and the Ready condition True.
pub fn is_running_and_ready(pod: &Value) -> bool {
    phase(pod) == "Running" && ready_condition(pod).is_some_and(|c| str_at(c, "/status") == "True")
}

/// When a running and ready pod counts as available (`None`: it is not running and ready, or
/// has no time to count from while `min_ready_seconds` is not 0).
fn available_from(pod: &Value, min_ready_seconds: i64) -> Option<Timestamp> {
    if !is_running_and_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Timestamp::MIN);
    }
    parse_time(ready_condition(pod)?.get("lastTransitionTime"))?
        .checked_add(SignedDuration::from_secs(min_ready_seconds))
        .ok()
}

/// Kubernetes' `isRunningAndAvailable`: running and ready for longer than `min_ready_seconds`.
pub fn is_running_and_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> bool {
    available_from(pod, min_ready_seconds).is_some_and(|t| min_ready_seconds <= 0 || t < now)
}

/// Kubernetes' `isHealthy`: running and ready, and not being deleted.
fn is_healthy(pod: &Value) -> bool {
    is_running_and_ready(pod) && !terminating(pod)
}

/// The ControllerRevision a pod was made from (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Value) -> &str {
    pod.pointer("/metadata/labels")
        .and_then(|l| l.get(REVISION_LABEL))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A ControllerRevision's `revision` number.
pub fn revision_number(rev: &Value) -> i64 {
    rev.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

/// The pod template a StatefulSet ControllerRevision holds (its `data.spec.template` without
/// the `$patch` directive).
pub fn revision_template(rev: &Value) -> Option<Value> {
    let mut template = rev.pointer("/data/spec/template")?.clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    Some(template)
}

/// The `data` of a revision of `template`: the patch that puts the template back
/// (Kubernetes' `getPatch`).
pub fn revision_data(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

fn same_data(a: &Value, b: &Value) -> bool {
    canonical_json(a) == canonical_json(b)
}

/// `<set>-<hash>`: the name of a ControllerRevision (Kubernetes' `ControllerRevisionName`, the
/// prefix cut to 223 characters).
pub fn revision_name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(MAX_REVISION_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// The hash of a revision's data with a collision count (Kubernetes' `HashControllerRevision`:
/// FNV over the data and the count, safe-encoded).
pub fn revision_hash(data: &Value, collision_count: i64) -> String {
    compute_hash(data, Some(collision_count))
}

/// Kubernetes' `SortControllerRevisions`: by revision number, then creation time, then name.
fn sort_revisions(revs: &mut [&Value]) {
    revs.sort_by(|a, b| {
        revision_number(a)
            .cmp(&revision_number(b))
            .then_with(|| {
                parse_time(a.pointer("/metadata/creationTimestamp"))
                    .cmp(&parse_time(b.pointer("/metadata/creationTimestamp")))
            })
            .then_with(|| object::name(a).cmp(object::name(b)))
    });
}

/// The controller reference a StatefulSet puts on its pods and revisions.
pub fn owner_reference(sts: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": object::name(sts),
        "uid": object::uid(sts),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Kubernetes' `ControllerRefManager.ClaimObject` with the StatefulSet's own filter folded into
/// `matches`.
fn claim_object(owner_uid: &str, owner_deleting: bool, matches: bool, obj: &Value) -> Claim {
    match controller_ref(obj) {
        Some(r) if r.get("uid").and_then(Value::as_str) != Some(owner_uid) => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || terminating(obj) => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// How a StatefulSet replaces pods of an older revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    OnDelete,
    /// `partition`: `None` when `rollingUpdate` is absent.
    RollingUpdate {
        partition: Option<i64>,
    },
}

/// A StatefulSet as the decision reads it.
struct Set<'a> {
    obj: &'a Value,
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    selector: LabelSelector,
    replicas: i64,
    start: i64,
    /// `podManagementPolicy: Parallel` (Kubernetes' "burst").
    burst: bool,
    strategy: Strategy,
    min_ready_seconds: i64,
    history_limit: usize,
    service_name: &'a str,
}

impl<'a> Set<'a> {
    fn read(sts: &'a Value) -> Result<Self, InvalidObject> {
        let invalid = |why: String| InvalidObject {
            kind: "StatefulSet",
            key: key_of(sts),
            why,
        };
        let selector =
            from_label_selector_json(sts.pointer("/spec/selector").unwrap_or(&Value::Null))
                .map_err(|e| invalid(format!("spec.selector: {e}")))?;
        if selector.is_empty() || selector.is_nothing() {
            return Err(invalid(
                "spec.selector: a StatefulSet needs a selector that is not empty".into(),
            ));
        }
        let strategy = match str_at(sts, "/spec/updateStrategy/type") {
            "OnDelete" => Strategy::OnDelete,
            _ => Strategy::RollingUpdate {
                partition: sts
                    .pointer("/spec/updateStrategy/rollingUpdate")
                    .filter(|r| r.is_object())
                    .map(|r| r.get("partition").and_then(Value::as_i64).unwrap_or(0)),
            },
        };
        let replicas = match sts.pointer("/spec/replicas") {
            None | Some(Value::Null) => 1,
            Some(v) => v.as_i64().unwrap_or(0).max(0),
        };
        Ok(Self {
            obj: sts,
            name: object::name(sts),
            namespace: object::namespace(sts),
            uid: object::uid(sts),
            selector,
            replicas,
            start: int_at(sts, "/spec/ordinals/start").unwrap_or(0).max(0),
            burst: str_at(sts, "/spec/podManagementPolicy") == "Parallel",
            strategy,
            min_ready_seconds: int_at(sts, "/spec/minReadySeconds").unwrap_or(0),
            history_limit: usize::try_from(
                int_at(sts, "/spec/revisionHistoryLimit")
                    .unwrap_or(10)
                    .max(0),
            )
            .unwrap_or(10),
            service_name: str_at(sts, "/spec/serviceName"),
        })
    }

    fn claim_templates(&self) -> &'a [Value] {
        self.obj
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn available(&self, pod: &Value, now: Timestamp) -> bool {
        is_running_and_available(pod, self.min_ready_seconds, now)
    }

    fn in_range(&self, ordinal: i64) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas
    }

    /// Whether the pod belongs to this StatefulSet by name (Kubernetes' `isMemberOf`).
    fn is_member(&self, pod: &Value) -> bool {
        parent_and_ordinal(object::name(pod)).is_some_and(|(parent, _)| parent == self.name)
    }

    /// Kubernetes' `identityMatches`.
    fn identity_matches(&self, pod: &Value) -> bool {
        let Some((parent, ordinal)) = parent_and_ordinal(object::name(pod)) else {
            return false;
        };
        parent == self.name
            && object::name(pod) == pod_name(self.name, ordinal)
            && object::namespace(pod) == self.namespace
            && object::labels(pod).get(POD_NAME_LABEL).map(String::as_str)
                == Some(object::name(pod))
            && object::labels(pod).get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
    }

    /// The claims of `ordinal` (Kubernetes' `getPersistentVolumeClaims`): each template named
    /// for the ordinal, in the StatefulSet's namespace, with the template's labels and the
    /// selector's `matchLabels`.
    fn claims(&self, ordinal: i64) -> Vec<(String, Value)> {
        let match_labels = self
            .obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        self.claim_templates()
            .iter()
            .map(|template| {
                let volume = str_at(template, "/metadata/name").to_string();
                let mut labels = template
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                labels.extend(match_labels.clone());
                let mut meta = Map::new();
                meta.insert(
                    "name".into(),
                    json!(claim_name(&volume, self.name, ordinal)),
                );
                meta.insert("namespace".into(), json!(self.namespace));
                if !labels.is_empty() {
                    meta.insert("labels".into(), Value::Object(labels));
                }
                if let Some(a) = template
                    .pointer("/metadata/annotations")
                    .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
                {
                    meta.insert("annotations".into(), a.clone());
                }
                let claim = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
                });
                (volume, claim)
            })
            .collect()
    }

    /// The pod of `ordinal` made from `template` at `revision` (Kubernetes'
    /// `newStatefulSetPod`: `GetPodFromTemplate`, `initIdentity`, `updateStorage`, and the
    /// revision label).
    fn new_pod(&self, template: &Value, ordinal: i64, revision: &str) -> Value {
        let name = pod_name(self.name, ordinal);
        let template_meta = template.get("metadata").unwrap_or(&Value::Null);
        let mut labels = template_meta
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        labels.insert(POD_NAME_LABEL.into(), json!(name));
        labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
        labels.insert(REVISION_LABEL.into(), json!(revision));
        let mut meta = Map::new();
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(self.namespace));
        meta.insert("labels".into(), Value::Object(labels));
        for field in ["annotations", "finalizers"] {
            if let Some(v) = template_meta.get(field).filter(|v| !v.is_null()) {
                meta.insert(field.into(), v.clone());
            }
        }
        meta.insert("ownerReferences".into(), json!([owner_reference(self.obj)]));
        let mut spec = template
            .get("spec")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("hostname".into(), json!(name));
            if !self.service_name.is_empty() {
                spec.insert("subdomain".into(), json!(self.service_name));
            }
            // updateStorage: one volume per claim template, then the template's other volumes.
            let claims = self.claims(ordinal);
            let mut volumes: Vec<Value> = claims
                .iter()
                .map(|(volume, claim)| {
                    json!({"name": volume, "persistentVolumeClaim": {"claimName": object::name(claim)}})
                })
                .collect();
            let names: BTreeSet<&str> = claims.iter().map(|(v, _)| v.as_str()).collect();
            if let Some(own) = spec.get("volumes").and_then(Value::as_array) {
                volumes.extend(
                    own.iter()
                        .filter(|v| !names.contains(str_at(v, "/name")))
                        .cloned(),
                );
            }
            if !volumes.is_empty() {
                spec.insert("volumes".into(), Value::Array(volumes));
            }
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": spec,
        })
    }

    /// The ControllerRevision of `template` numbered `number` (Kubernetes' `newRevision`): the
    /// template's labels with the hash, the StatefulSet's annotations, the StatefulSet as its
    /// controller.
    fn new_revision(&self, template: &Value, number: i64, collision_count: i64) -> Value {
        let data = revision_data(template);
        let hash = revision_hash(&data, collision_count);
        let mut labels = template
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.into(), json!(hash));
        let mut meta = Map::new();
        meta.insert("name".into(), json!(revision_name(self.name, &hash)));
        meta.insert("namespace".into(), json!(self.namespace));
        meta.insert("labels".into(), Value::Object(labels));
        if let Some(a) = self
            .obj
            .pointer("/metadata/annotations")
            .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
        {
            meta.insert("annotations".into(), a.clone());
        }
        meta.insert("ownerReferences".into(), json!([owner_reference(self.obj)]));
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": meta,
            "data": data,
            "revision": number,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// `apps/v1` `StatefulSetStatus` (conditions are kept as they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatefulSetStatus {
    pub observed_generation: i64,
    pub replicas: i64,
    pub ready_replicas: i64,
    pub current_replicas: i64,
    pub updated_replicas: i64,
    pub available_replicas: i64,
    pub current_revision: String,
    pub update_revision: String,
    pub collision_count: Option<i64>,
    pub conditions: Option<Value>,
}

impl StatefulSetStatus {
    pub fn from_json(status: Option<&Value>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        let int = |f: &str| s.get(f).and_then(Value::as_i64).unwrap_or(0);
        let text = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        Self {
            observed_generation: int("observedGeneration"),
            replicas: int("replicas"),
            ready_replicas: int("readyReplicas"),
            current_replicas: int("currentReplicas"),
            updated_replicas: int("updatedReplicas"),
            available_replicas: int("availableReplicas"),
            current_revision: text("currentRevision"),
            update_revision: text("updateRevision"),
            collision_count: s.get("collisionCount").and_then(Value::as_i64),
            conditions: s.get("conditions").filter(|c| !c.is_null()).cloned(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut s = json!({
            "observedGeneration": self.observed_generation,
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "currentReplicas": self.current_replicas,
            "updatedReplicas": self.updated_replicas,
            "availableReplicas": self.available_replicas,
        });
        if !self.current_revision.is_empty() {
            s["currentRevision"] = json!(self.current_revision);
        }
        if !self.update_revision.is_empty() {
            s["updateRevision"] = json!(self.update_revision);
        }
        if let Some(c) = self.collision_count {
            s["collisionCount"] = json!(c);
        }
        if let Some(c) = &self.conditions {
            s["conditions"] = c.clone();
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// It failed: it is recreated once it is gone.
    Failed,
    /// It ran to completion: it is recreated once it is gone.
    Succeeded,
    /// Its ordinal is past the end (scale down).
    ScaleDown,
    /// A rolling update replaces it.
    Update,
    /// The StatefulSet is being deleted.
    SetDeleted,
}

/// One pod write, in the order the plan makes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the claims that do not exist yet, then (only if all went well) the pod.
    Create {
        ordinal: i64,
        claims: Vec<Value>,
        pod: Value,
    },
    /// Create the missing claims of a pending pod (Kubernetes'
    /// `createMissingPersistentVolumeClaims`).
    CreateClaims { pod: String, claims: Vec<Value> },
    /// Delete a pod (uid precondition).
    Delete {
        name: String,
        uid: String,
        ordinal: i64,
        reason: DeleteReason,
    },
    /// Put the identity labels back on a pod (resourceVersion precondition).
    UpdatePod(Value),
}

/// What happens to the revision the current template needs.
#[derive(Debug, Clone, PartialEq)]
pub enum RevisionWrite {
    /// A new ControllerRevision.
    Create(Value),
    /// An older revision equal to the template gets the next number (a rollback); the object
    /// carries its resourceVersion.
    Renumber(Value),
}

/// What one sync of a StatefulSet does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The finalizer [`SCALE_DOWN_FINALIZER`] is missing: add it.
    pub add_finalizer: bool,
    /// The StatefulSet is being deleted and has no pods left (or is orphaning them): remove the
    /// finalizer.
    pub remove_finalizer: bool,
    /// Pods and revisions it adopts or releases (the objects to write, with their
    /// resourceVersion).
    pub claim_updates: Vec<Value>,
    pub revision_write: Option<RevisionWrite>,
    /// Pod writes, in order.
    pub steps: Vec<Step>,
    /// Why the pass stopped where it did, when it is waiting for something.
    pub waiting: Option<String>,
    /// ControllerRevisions to delete (name, uid): history past `revisionHistoryLimit`.
    pub delete_revisions: Vec<(String, String)>,
    /// The status to write when it differs from the stored one.
    pub status: StatefulSetStatus,
    /// Look again after this long (a ready pod becomes available after `minReadySeconds`).
    pub requeue_after: Option<Duration>,
    /// Events to record on the StatefulSet: (type, reason, message).
    pub events: Vec<(String, String, String)>,
}

/// The state of one ordinal during a pass.
enum Slot<'p> {
    Pod(&'p Value),
    /// No pod: one is made.
    New,
}

/// The two revisions a pass works with.
struct Revisions<'a> {
    current_name: &'a str,
    current_template: &'a Value,
    update_name: &'a str,
    update_template: &'a Value,
    /// `status.currentReplicas` as stored.
    current_replicas: i64,
}

impl Revisions<'_> {
    /// Kubernetes' `newVersionedStatefulSetPod`: below the partition (or, without
    /// `rollingUpdate`, below the current replicas) a new pod gets the current revision, else
    /// the update one. Answers the revision's name and template.
    fn for_ordinal(&self, set: &Set, ordinal: i64) -> (&str, &Value) {
        let index = ordinal - set.start;
        let keep_current = match set.strategy {
            Strategy::RollingUpdate { partition: None } => index < self.current_replicas,
            Strategy::RollingUpdate { partition: Some(p) } => index < p,
            Strategy::OnDelete => false,
        };
        if keep_current {
            (self.current_name, self.current_template)
        } else {
            (self.update_name, self.update_template)
        }
    }
}

/// Decides one sync of `sts` (Kubernetes' `UpdateStatefulSet`: the revisions, the pass over
/// the ordinals, the status and the history), given the pods and ControllerRevisions of its
/// namespace (others are ignored), a lookup of claims by name in its namespace, and the time.
pub fn decide(
    sts: &Value,
    pods: &[Arc<Value>],
    revisions: &[Arc<Value>],
    claim: &dyn Fn(&str) -> Option<Arc<Value>>,
    now: Timestamp,
) -> Result<Plan, InvalidObject> {
    let set = Set::read(sts)?;
    let deleting = terminating(sts);
    let stored = StatefulSetStatus::from_json(sts.get("status"));
    let mut plan = Plan::default();
    let has_finalizer = object::finalizers(sts)
        .iter()
        .any(|f| f == SCALE_DOWN_FINALIZER);

    // Claim revisions.
    let in_namespace: Vec<&Value> = revisions
        .iter()
        .map(|r| &**r)
        .filter(|r| object::namespace(r) == set.namespace)
        .collect();
    let mut owned_revisions: Vec<&Value> = Vec::new();
    for rev in &in_namespace {
        let matches = set.selector.matches(&object::labels(rev));
        match claim_object(set.uid, deleting, matches, rev) {
            Claim::Owned => owned_revisions.push(rev),
            Claim::Adopt => {
                plan.claim_updates
                    .push(with_owner(rev, owner_reference(sts)));
                owned_revisions.push(rev);
            }
            Claim::Release => plan.claim_updates.push(without_owner(rev, set.uid)),
            Claim::Ignore => {}
        }
    }
    sort_revisions(&mut owned_revisions);

    if deleting {
        // Every pod it controls goes, whether its selector still matches or not.
        let owned: Vec<&Value> = pods
            .iter()
            .map(|p| &**p)
            .filter(|p| object::namespace(p) == set.namespace)
            .filter(|p| controller_ref(p).is_some_and(|r| str_at(r, "/uid") == set.uid))
            .collect();
        decide_deletion(&set, sts, &owned, &stored, has_finalizer, now, &mut plan);
        return Ok(plan);
    }
    plan.add_finalizer = !has_finalizer;

    // Claim pods.
    let mut owned: Vec<&Value> = Vec::new();
    for pod in pods {
        if object::namespace(pod) != set.namespace {
            continue;
        }
        let matches = set.selector.matches(&object::labels(pod)) && set.is_member(pod);
        match claim_object(set.uid, deleting, matches, pod) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                plan.claim_updates
                    .push(with_owner(pod, owner_reference(sts)));
                owned.push(pod);
            }
            Claim::Release => plan.claim_updates.push(without_owner(pod, set.uid)),
            Claim::Ignore => {}
        }
    }

    // The update and current revisions (Kubernetes' `getStatefulSetRevisions`).
    let template = sts
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let data = revision_data(&template);
    let mut collision_count = stored.collision_count.unwrap_or(0);
    let next_number = owned_revisions.last().map_or(0, |r| revision_number(r)) + 1;
    let equal: Vec<&Value> = owned_revisions
        .iter()
        .copied()
        .filter(|r| r.get("data").is_some_and(|d| same_data(d, &data)))
        .collect();
    let update_name = match (equal.last(), owned_revisions.last()) {
        (Some(e), Some(last)) if object::name(e) == object::name(last) => {
            object::name(e).to_string()
        }
        (Some(e), _) => {
            let mut renumbered = (*e).clone();
            renumbered["revision"] = json!(next_number);
            plan.revision_write = Some(RevisionWrite::Renumber(renumbered));
            object::name(e).to_string()
        }
        (None, _) => {
            // A new revision; a name another revision holds bumps the collision count.
            let taken: BTreeSet<&str> = in_namespace.iter().map(|r| object::name(r)).collect();
            let mut rev = set.new_revision(&template, next_number, collision_count);
            while taken.contains(object::name(&rev)) {
                collision_count += 1;
                rev = set.new_revision(&template, next_number, collision_count);
            }
            let name = object::name(&rev).to_string();
            plan.revision_write = Some(RevisionWrite::Create(rev));
            name
        }
    };
    let current = owned_revisions.iter().find(|r| {
        !stored.current_revision.is_empty() && object::name(r) == stored.current_revision
    });
    let (current_name, current_template) = match current {
        Some(r) => (
            object::name(r).to_string(),
            revision_template(r).unwrap_or_else(|| template.clone()),
        ),
        None => (update_name.clone(), template.clone()),
    };

    plan.status = count_status(&set, &owned, &current_name, &update_name, now);
    plan.status.observed_generation = object::generation(sts);
    plan.status.collision_count = Some(collision_count);
    plan.status.conditions = stored.conditions.clone();
    plan.requeue_after = next_availability(&set, &owned, now);

    // History: revisions no status and no pod uses, oldest first, beyond the limit.
    let mut live: BTreeSet<&str> = BTreeSet::new();
    live.insert(current_name.as_str());
    live.insert(update_name.as_str());
    for pod in &owned {
        live.insert(pod_revision(pod));
    }
    let history: Vec<&Value> = owned_revisions
        .iter()
        .copied()
        .filter(|r| !live.contains(object::name(r)))
        .collect();
    if history.len() > set.history_limit {
        plan.delete_revisions = history[..history.len() - set.history_limit]
            .iter()
            .map(|r| (object::name(r).to_string(), object::uid(r).to_string()))
            .collect();
    }

    // The pass over the ordinals (Kubernetes' `updateStatefulSet`).
    let mut slots: BTreeMap<i64, &Value> = BTreeMap::new();
    let mut condemned: Vec<(i64, &Value)> = Vec::new();
    for pod in &owned {
        let Some(ordinal) = ordinal_of(pod) else {
            continue;
        };
        if set.in_range(ordinal) {
            slots.insert(ordinal, pod);
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let revs = Revisions {
        current_name: &current_name,
        current_template: &current_template,
        update_name: &update_name,
        update_template: &template,
        current_replicas: stored.current_replicas,
    };
    let ordinals: Vec<i64> = (set.start..set.start + set.replicas).collect();
    let mut view: BTreeMap<i64, Slot> = BTreeMap::new();
    for &ordinal in &ordinals {
        let slot = match slots.get(&ordinal) {
            Some(pod) => Slot::Pod(pod),
            None => Slot::New,
        };
        view.insert(ordinal, slot);
    }
    // The first unhealthy pod: of the replicas (a missing one counts), else the lowest
    // condemned one.
    let first_unhealthy: Option<i64> = view
        .iter()
        .find(|(_, slot)| match slot {
            Slot::Pod(p) => !is_healthy(p),
            Slot::New => true,
        })
        .map(|(o, _)| *o)
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !is_healthy(p))
                .map(|(o, _)| *o)
        });
    let monotonic = !set.burst;

    if pass_replicas(&set, &view, &revs, claim, monotonic, now, &mut plan) {
        return Ok(finish(&set, plan));
    }
    // Condemned pods, highest ordinal first.
    for &(ordinal, pod) in &condemned {
        if terminating(pod) {
            if monotonic {
                plan.waiting = Some(format!(
                    "waiting for Pod {} to terminate prior to scale down",
                    object::name(pod)
                ));
                return Ok(finish(&set, plan));
            }
            continue;
        }
        if monotonic && Some(ordinal) != first_unhealthy && !set.available(pod, now) {
            plan.waiting = Some(format!(
                "waiting for Pod {} to be Running and Ready prior to scale down",
                first_unhealthy
                    .map(|o| pod_name(set.name, o))
                    .unwrap_or_else(|| object::name(pod).to_string())
            ));
            return Ok(finish(&set, plan));
        }
        plan.steps.push(Step::Delete {
            name: object::name(pod).to_string(),
            uid: object::uid(pod).to_string(),
            ordinal,
            reason: DeleteReason::ScaleDown,
        });
        if monotonic {
            return Ok(finish(&set, plan));
        }
    }
    // Updates.
    let Strategy::RollingUpdate { partition } = set.strategy else {
        return Ok(finish(&set, plan));
    };
    let update_min = set.start + partition.unwrap_or(0).max(0);
    for &ordinal in ordinals.iter().rev() {
        if ordinal < update_min {
            break;
        }
        let pod = match view.get(&ordinal) {
            Some(Slot::Pod(pod)) => *pod,
            _ => {
                plan.waiting = Some(format!(
                    "waiting for Pod {} to update",
                    pod_name(set.name, ordinal)
                ));
                break;
            }
        };
        let deleted_already = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::Delete { uid, .. } if uid == object::uid(pod)));
        if pod_revision(pod) != update_name && !terminating(pod) && !deleted_already {
            plan.steps.push(Step::Delete {
                name: object::name(pod).to_string(),
                uid: object::uid(pod).to_string(),
                ordinal,
                reason: DeleteReason::Update,
            });
            if pod_revision(pod) == current_name {
                plan.status.current_replicas -= 1;
            }
            break;
        }
        if !is_healthy(pod) {
            plan.waiting = Some(format!("waiting for Pod {} to update", object::name(pod)));
            break;
        }
    }
    Ok(finish(&set, plan))
}

/// Kubernetes' `processReplica` over the ordinals in range, ascending. Answers whether the
/// pass stops here (OrderedReady only: a Parallel pass goes on past what it waits for).
fn pass_replicas(
    set: &Set,
    view: &BTreeMap<i64, Slot>,
    revs: &Revisions,
    claim: &dyn Fn(&str) -> Option<Arc<Value>>,
    monotonic: bool,
    now: Timestamp,
    plan: &mut Plan,
) -> bool {
    for (&ordinal, slot) in view {
        let pod = match slot {
            Slot::New => {
                let (revision, template) = revs.for_ordinal(set, ordinal);
                let pod = set.new_pod(template, ordinal, revision);
                let mut missing = Vec::new();
                let mut blocked = None;
                for (_, c) in set.claims(ordinal) {
                    match claim(object::name(&c)) {
                        None => missing.push(c),
                        Some(existing) if terminating(&existing) => {
                            blocked = Some(object::name(&existing).to_string());
                        }
                        Some(_) => {}
                    }
                }
                if let Some(name) = blocked {
                    // Kubernetes: "pvc ... is being deleted"; the pod waits for it to go.
                    plan.waiting = Some(format!(
                        "waiting for PersistentVolumeClaim {name} to be deleted before Pod {} is created",
                        object::name(&pod)
                    ));
                    if monotonic {
                        return true;
                    }
                    continue;
                }
                plan.steps.push(Step::Create {
                    ordinal,
                    claims: missing,
                    pod,
                });
                if monotonic {
                    return true;
                }
                continue;
            }
            Slot::Pod(pod) => *pod,
        };
        let name = object::name(pod);
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !terminating(pod) {
                let (reason, event, what) = if phase(pod) == "Failed" {
                    (DeleteReason::Failed, EVENT_RECREATING_FAILED_POD, "failed")
                } else {
                    (
                        DeleteReason::Succeeded,
                        EVENT_RECREATING_TERMINATED_POD,
                        "terminated",
                    )
                };
                plan.events.push((
                    "Warning".into(),
                    event.into(),
                    format!(
                        "StatefulSet {}/{} is recreating {what} Pod {name}",
                        set.namespace, set.name
                    ),
                ));
                plan.steps.push(Step::Delete {
                    name: name.to_string(),
                    uid: object::uid(pod).to_string(),
                    ordinal,
                    reason,
                });
            }
            // The replacement is made on a later pass, once the old object is gone.
            plan.waiting = Some(format!(
                "waiting for Pod {name} to be gone before recreating it"
            ));
            if monotonic {
                return true;
            }
            continue;
        }
        if phase(pod) == "Pending" && !terminating(pod) {
            let missing: Vec<Value> = set
                .claims(ordinal)
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| claim(object::name(c)).is_none())
                .collect();
            if !missing.is_empty() {
                plan.steps.push(Step::CreateClaims {
                    pod: name.to_string(),
                    claims: missing,
                });
            }
        }
        if monotonic {
            if terminating(pod) {
                plan.waiting = Some(format!("waiting for Pod {name} to terminate"));
                return true;
            }
            if !is_running_and_ready(pod) {
                plan.waiting = Some(format!("waiting for Pod {name} to be Running and Ready"));
                return true;
            }
            if !set.available(pod, now) {
                plan.waiting = Some(format!("waiting for Pod {name} to be Available"));
                return true;
            }
        }
        if !terminating(pod) && !set.identity_matches(pod) {
            let mut fixed = pod.clone();
            if let Some(labels) = object::metadata_mut(&mut fixed).map(|m| {
                m.entry("labels")
                    .or_insert_with(|| Value::Object(Map::new()))
            }) {
                if !labels.is_object() {
                    *labels = Value::Object(Map::new());
                }
                labels[POD_NAME_LABEL] = json!(name);
                labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
            }
            plan.steps.push(Step::UpdatePod(fixed));
        }
    }
    false
}

/// The status counts over the pods (Kubernetes' `computeReplicaStatus`).
fn count_status(
    set: &Set,
    pods: &[&Value],
    current: &str,
    update: &str,
    now: Timestamp,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus {
        current_revision: current.to_string(),
        update_revision: update.to_string(),
        ..StatefulSetStatus::default()
    };
    for pod in pods {
        let created = !phase(pod).is_empty();
        if created {
            s.replicas += 1;
        }
        if is_running_and_ready(pod) {
            s.ready_replicas += 1;
            if set.available(pod, now) {
                s.available_replicas += 1;
            }
        }
        if created && !terminating(pod) {
            if pod_revision(pod) == current {
                s.current_replicas += 1;
            }
            if pod_revision(pod) == update {
                s.updated_replicas += 1;
            }
        }
    }
    s
}

/// Kubernetes' `completeRollingUpdate`: once every pod is updated and ready, the update
/// revision becomes the current one.
fn finish(set: &Set, mut plan: Plan) -> Plan {
    let s = &mut plan.status;
    if matches!(set.strategy, Strategy::RollingUpdate { .. })
        && s.updated_replicas == s.replicas
        && s.ready_replicas == s.replicas
    {
        s.current_replicas = s.updated_replicas;
        s.current_revision = s.update_revision.clone();
    }
    plan
}

/// The pass of a StatefulSet being deleted: highest ordinal first, one at a time (all at once
/// with Parallel), then the finalizer goes.
fn decide_deletion(
    set: &Set,
    sts: &Value,
    owned: &[&Value],
    stored: &StatefulSetStatus,
    has_finalizer: bool,
    now: Timestamp,
    plan: &mut Plan,
) {
    plan.status = count_status(
        set,
        owned,
        &stored.current_revision,
        &stored.update_revision,
        now,
    );
    plan.status.observed_generation = object::generation(sts);
    plan.status.collision_count = stored.collision_count;
    plan.status.conditions = stored.conditions.clone();
    if object::finalizers(sts)
        .iter()
        .any(|f| f == FINALIZER_ORPHAN)
    {
        // Orphan propagation: the garbage collector lets the pods go; nothing to scale down.
        plan.remove_finalizer = has_finalizer;
        return;
    }
    if !has_finalizer {
        return;
    }
    let mut pods: Vec<(i64, &Value)> = owned
        .iter()
        .map(|p| (ordinal_of(p).unwrap_or(-1), *p))
        .collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.0));
    if pods.is_empty() {
        plan.remove_finalizer = true;
        return;
    }
    for (ordinal, pod) in pods {
        if terminating(pod) {
            if !set.burst {
                plan.waiting = Some(format!(
                    "waiting for Pod {} to be gone before the next one goes",
                    object::name(pod)
                ));
                return;
            }
            continue;
        }
        plan.steps.push(Step::Delete {
            name: object::name(pod).to_string(),
            uid: object::uid(pod).to_string(),
            ordinal,
            reason: DeleteReason::SetDeleted,
        });
        if !set.burst {
            return;
        }
    }
}

/// The earliest time a ready pod becomes available (`minReadySeconds`), if one is waiting.
fn next_availability(set: &Set, pods: &[&Value], now: Timestamp) -> Option<Duration> {
    if set.min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter_map(|p| available_from(p, set.min_ready_seconds))
        .filter(|t| *t >= now)
        .min()
        .map(|t| {
            Duration::try_from(t.duration_since(now)).unwrap_or_default() + AVAILABILITY_MARGIN
        })
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Settings of the StatefulSet controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetOptions {
    /// StatefulSets synced at once (Kubernetes' `--concurrent-statefulset-syncs`, 5).
    pub workers: usize,
    /// How often every StatefulSet is synced even when nothing changed (default 30 s).
    pub resync: Duration,
}

impl Default for StatefulSetOptions {
    fn default() -> Self {
        Self {
            workers: 5,
            resync: Duration::from_secs(30),
        }
    }
}

/// An index function: the namespace of an object without a controller.
fn index_orphans_by_namespace(obj: &Value) -> Vec<String> {
    if controller_ref(obj).is_some() {
        Vec::new()
    } else {
        index_by_namespace(obj)
    }
}

/// Runs the StatefulSet controller until `cancel` fires.
pub async fn run(client: Client, opts: StatefulSetOptions, cancel: CancellationToken) {
    let sets = Informer::builder(client.clone(), "StatefulSet")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(CONTROLLER_INDEX, index_by_controller_uid)
        .index(ORPHAN_INDEX, index_orphans_by_namespace)
        .start(cancel.clone());
    let revisions = Informer::builder(client.clone(), "ControllerRevision")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let claims = Informer::builder(client.clone(), "PersistentVolumeClaim").start(cancel.clone());
    let ctx = Arc::new(Ctx {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        sets: sets.clone(),
        pods: pods.clone(),
        revisions: revisions.clone(),
        claims: claims.clone(),
        expectations: Expectations::new(),
    });
    let sources = vec![
        Source::informer(&sets, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.set_changed(change)
        }),
        Source::informer(&pods, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.pod_changed(change)
        }),
        Source::informer(&revisions, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.revision_changed(change)
        }),
        Source::informer(&claims, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.claim_changed(change)
        }),
    ];
    let all_keys = move || sets.list().iter().map(|s| key_of(s)).collect();
    let reconcile = move |key: String| {
        let ctx = Arc::clone(&ctx);
        async move { ctx.sync(&key).await }
    };
    let opts = ControllerOptions::new(COMPONENT, opts.workers, opts.resync);
    run_controller(sources, all_keys, reconcile, opts, cancel).await;
}

struct Ctx {
    client: Client,
    sets: Informer,
    pods: Informer,
    revisions: Informer,
    claims: Informer,
    /// Per StatefulSet key: pod creations; per `<key>/deletions`: pod deletions.
    expectations: Expectations,
    events: EventRecorder,
}

fn deletions_key(key: &str) -> String {
    format!("{key}/deletions")
}

fn changed_objects(change: &Change) -> Vec<&Arc<Value>> {
    match change {
        Change::Added(o) | Change::Deleted(o) => vec![o],
        Change::Modified { old, new } => vec![old, new],
        Change::Relisted => Vec::new(),
    }
}

impl Ctx {
    /// The StatefulSet a controller reference names, when the cache holds it (name and uid).
    fn owner_key(&self, obj: &Value) -> Option<String> {
        let r = controller_ref(obj)?;
        if str_at(r, "/kind") != "StatefulSet" {
            return None;
        }
        let sts = self.sets.get(object::namespace(obj), str_at(r, "/name"))?;
        (object::uid(&sts) == str_at(r, "/uid")).then(|| key_of(&sts))
    }

    /// The StatefulSets of the object's namespace whose selector matches it.
    fn matching(&self, obj: &Value) -> Vec<String> {
        let labels = object::labels(obj);
        self.sets
            .by_index(NAMESPACE_INDEX, object::namespace(obj))
            .iter()
            .filter(|s| {
                s.pointer("/spec/selector")
                    .and_then(|sel| from_label_selector_json(sel).ok())
                    .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
            })
            .map(|s| key_of(s))
            .collect()
    }

    fn set_changed(&self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(s) => vec![key_of(s)],
            Change::Modified { old, new } => {
                if object::uid(old) != object::uid(new) {
                    self.forget(&key_of(old));
                }
                vec![key_of(new)]
            }
            Change::Deleted(s) => {
                self.forget(&key_of(s));
                vec![key_of(s)]
            }
            Change::Relisted => Vec::new(),
        }
    }

    fn forget(&self, key: &str) {
        self.expectations.delete(key);
        self.expectations.delete(&deletions_key(key));
    }

    /// The keys a pod change concerns, noting the creations and deletions it shows.
    fn pod_changed(&self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(pod) => match self.owner_key(pod) {
                Some(key) => {
                    if terminating(pod) {
                        self.expectations
                            .deletion_observed(&deletions_key(&key), object::uid(pod));
                    } else {
                        self.expectations.creation_observed(&key);
                    }
                    vec![key]
                }
                None if controller_ref(pod).is_some() => Vec::new(),
                None => self.matching(pod),
            },
            Change::Modified { old, new } => {
                let mut keys = Vec::new();
                if let Some(key) = self.owner_key(new) {
                    if terminating(new) {
                        self.expectations
                            .deletion_observed(&deletions_key(&key), object::uid(new));
                    }
                    keys.push(key);
                } else if controller_ref(new).is_none() {
                    keys.extend(self.matching(new));
                }
                if controller_ref(old) != controller_ref(new) {
                    keys.extend(self.owner_key(old));
                }
                keys
            }
            Change::Deleted(pod) => match self.owner_key(pod) {
                Some(key) => {
                    self.expectations
                        .deletion_observed(&deletions_key(&key), object::uid(pod));
                    vec![key]
                }
                None => Vec::new(),
            },
            Change::Relisted => Vec::new(),
        }
    }

    fn revision_changed(&self, change: &Change) -> Vec<String> {
        let mut keys = Vec::new();
        for rev in changed_objects(change) {
            match self.owner_key(rev) {
                Some(key) => keys.push(key),
                None if controller_ref(rev).is_none() => keys.extend(self.matching(rev)),
                None => {}
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// A claim appearing, going or starting to go may unblock the pod of its ordinal.
    fn claim_changed(&self, change: &Change) -> Vec<String> {
        let mut keys = Vec::new();
        for claim in changed_objects(change) {
            keys.extend(self.matching(claim));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The pods the StatefulSet controls and the orphans of its namespace.
    fn candidates(&self, sts: &Value) -> Vec<Arc<Value>> {
        let mut pods: BTreeMap<String, Arc<Value>> = BTreeMap::new();
        let owned = self.pods.by_index(CONTROLLER_INDEX, object::uid(sts));
        let orphans = self.pods.by_index(ORPHAN_INDEX, object::namespace(sts));
        for pod in owned.into_iter().chain(orphans) {
            pods.insert(key_of(&pod), pod);
        }
        pods.into_values().collect()
    }

    /// Kubernetes' `sync` of one StatefulSet.
    async fn sync(&self, key: &str) -> Result<Action, Error> {
        let Some((namespace, name)) = key.split_once('/') else {
            tracing::warn!(error = %Error::BadKey(key.to_string()), "statefulset: cannot sync");
            return Ok(Action::await_change());
        };
        let Some(sts) = self.sets.get(namespace, name) else {
            self.forget(key);
            return Ok(Action::await_change());
        };
        let pods = self.candidates(&sts);
        let revisions = self.revisions.by_index(NAMESPACE_INDEX, namespace);
        let claims = &self.claims;
        let lookup = |claim: &str| claims.get(namespace, claim);
        let plan = match decide(&sts, &pods, &revisions, &lookup, jiff::Timestamp::now()) {
            Ok(plan) => plan,
            Err(e) => {
                // Not retried: the StatefulSet must change first.
                tracing::warn!(error = %e, "statefulset: cannot act on it");
                return Ok(Action::await_change());
            }
        };
        if let Some(why) = &plan.waiting {
            tracing::debug!(sts = %key, "{why}");
        }
        let mut sts: Value = (*sts).clone();
        if plan.add_finalizer {
            sts = self.add_finalizer(key, &sts).await?;
        }
        for obj in &plan.claim_updates {
            match self.client.update(obj).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(api(
                        key,
                        format!("claiming {} {}", object::kind(obj), object::name(obj)),
                    )(e));
                }
            }
        }
        if let Some(write) = &plan.revision_write {
            self.write_revision(key, write).await?;
        }
        let pods_result = if self.expectations.satisfied(key)
            && self.expectations.satisfied(&deletions_key(key))
        {
            for (type_, reason, message) in &plan.events {
                self.events.event(&sts, type_, reason, message.clone());
            }
            self.carry_out(key, &sts, &plan.steps).await
        } else {
            tracing::debug!(sts = %key, "waiting for earlier pod writes to be observed");
            Ok(())
        };
        let stored = StatefulSetStatus::from_json(sts.get("status"));
        if plan.status != stored && !plan.remove_finalizer {
            let mut next = sts.clone();
            next["status"] = plan.status.to_json();
            sts = self
                .client
                .update_status(&next)
                .await
                .map_err(api(key, "updating its status"))?;
        }
        for (name, uid) in &plan.delete_revisions {
            let options = DeleteOptions {
                uid: Some(uid.clone()),
                ..DeleteOptions::default()
            };
            match self
                .client
                .delete("ControllerRevision", namespace, name, &options)
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                Err(e) => return Err(api(key, format!("deleting revision {name}"))(e)),
            }
        }
        pods_result?;
        if plan.remove_finalizer {
            self.remove_finalizer(key, &sts).await?;
        }
        Ok(plan
            .requeue_after
            .map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    async fn add_finalizer(&self, key: &str, sts: &Value) -> Result<Value, Error> {
        let mut finalizers = object::finalizers(sts);
        finalizers.push(SCALE_DOWN_FINALIZER.to_string());
        let patch = json!({"metadata": {
            "resourceVersion": str_at(sts, "/metadata/resourceVersion"),
            "finalizers": finalizers,
        }});
        self.client
            .patch(
                "StatefulSet",
                object::namespace(sts),
                object::name(sts),
                &patch,
                false,
            )
            .await
            .map_err(api(key, "adding its finalizer"))
    }

    /// Removes the finalizer once a linearizable read shows no pod of the StatefulSet left
    /// (the cache may lag behind a pod created just before the deletion).
    async fn remove_finalizer(&self, key: &str, sts: &Value) -> Result<(), Error> {
        let (namespace, uid) = (object::namespace(sts), object::uid(sts));
        let orphaning = object::finalizers(sts)
            .iter()
            .any(|f| f == FINALIZER_ORPHAN);
        if !orphaning {
            let pods = self
                .client
                .list("Pod", Some(namespace), &ListOptions::default())
                .await
                .map_err(api(key, "listing its pods"))?;
            let left: Vec<&str> = pods
                .items
                .iter()
                .filter(|p| controller_ref(p).is_some_and(|r| str_at(r, "/uid") == uid))
                .map(object::name)
                .collect();
            if !left.is_empty() {
                return Err(Error::NotYet {
                    sts: key.to_string(),
                    why: format!("pods {left:?} are still there; the finalizer stays"),
                });
            }
        }
        let finalizers: Vec<String> = object::finalizers(sts)
            .into_iter()
            .filter(|f| f != SCALE_DOWN_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "resourceVersion": str_at(sts, "/metadata/resourceVersion"),
            "finalizers": finalizers,
        }});
        match self
            .client
            .patch("StatefulSet", namespace, object::name(sts), &patch, false)
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                tracing::info!(sts = %key, "statefulset scaled down; finalizer removed");
                Ok(())
            }
            Err(e) => Err(api(key, "removing its finalizer")(e)),
        }
    }

    async fn write_revision(&self, key: &str, write: &RevisionWrite) -> Result<(), Error> {
        match write {
            RevisionWrite::Create(rev) => match self.client.create(rev).await {
                Ok(_) => Ok(()),
                Err(ApiError::AlreadyExists { .. }) => {
                    // Made by an earlier sync the cache does not show yet, or a collision the
                    // next sync resolves (the cache will hold the other revision by then).
                    let existing = self
                        .client
                        .get(
                            "ControllerRevision",
                            object::namespace(rev),
                            object::name(rev),
                        )
                        .await
                        .map_err(api(key, "reading a revision"))?;
                    let ours = controller_ref(&existing).is_some_and(|r| {
                        str_at(r, "/uid") == str_at(rev, "/metadata/ownerReferences/0/uid")
                    });
                    let same = existing
                        .get("data")
                        .zip(rev.get("data"))
                        .is_some_and(|(a, b)| same_data(a, b));
                    if ours && same {
                        Ok(())
                    } else {
                        Err(Error::NotYet {
                            sts: key.to_string(),
                            why: format!(
                                "revision name {} is taken by another revision; trying the next name",
                                object::name(rev)
                            ),
                        })
                    }
                }
                Err(e) => Err(api(key, format!("creating revision {}", object::name(rev)))(e)),
            },
            RevisionWrite::Renumber(rev) => self.client.update(rev).await.map(|_| ()).map_err(api(
                key,
                format!("renumbering revision {}", object::name(rev)),
            )),
        }
    }

    /// Carries the pod steps out in order, stopping at the first failure.
    async fn carry_out(&self, key: &str, sts: &Value, steps: &[Step]) -> Result<(), Error> {
        let creations = steps
            .iter()
            .filter(|s| matches!(s, Step::Create { .. }))
            .count();
        let deletions: Vec<String> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Delete { uid, .. } => Some(uid.clone()),
                _ => None,
            })
            .collect();
        if creations > 0 {
            self.expectations.expect_creations(key, creations);
        }
        if !deletions.is_empty() {
            self.expectations
                .expect_deletions(&deletions_key(key), deletions);
        }
        let mut pending_creations = creations;
        let set_name = object::name(sts);
        let result = async {
            for step in steps {
                match step {
                    Step::Create { claims, pod, .. } => {
                        self.create_claims(key, sts, object::name(pod), claims)
                            .await?;
                        pending_creations -= 1;
                        self.create_pod(key, sts, pod).await?;
                    }
                    Step::CreateClaims { pod, claims } => {
                        self.create_claims(key, sts, pod, claims).await?;
                    }
                    Step::Delete {
                        name, uid, reason, ..
                    } => {
                        let options = DeleteOptions {
                            uid: Some(uid.clone()).filter(|u| !u.is_empty()),
                            ..DeleteOptions::default()
                        };
                        let result = self
                            .client
                            .delete("Pod", object::namespace(sts), name, &options)
                            .await;
                        match result {
                            Ok(_) => {
                                tracing::info!(sts = %key, pod = %name, ?reason, "deleted a pod");
                                self.events.event(
                                    sts,
                                    "Normal",
                                    EVENT_SUCCESSFUL_DELETE,
                                    format!("delete Pod {name} in StatefulSet {set_name} successful"),
                                );
                            }
                            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {
                                self.expectations
                                    .deletion_observed(&deletions_key(key), uid);
                            }
                            Err(e) => {
                                self.expectations
                                    .deletion_observed(&deletions_key(key), uid);
                                self.events.event(
                                    sts,
                                    "Warning",
                                    EVENT_FAILED_DELETE,
                                    format!("delete Pod {name} in StatefulSet {set_name} failed error: {e}"),
                                );
                                return Err(api(key, format!("deleting pod {name}"))(e));
                            }
                        }
                    }
                    Step::UpdatePod(pod) => {
                        let name = object::name(pod);
                        match self.client.update(pod).await {
                            Ok(_) => self.events.event(
                                sts,
                                "Normal",
                                EVENT_SUCCESSFUL_UPDATE,
                                format!("update Pod {name} in StatefulSet {set_name} successful"),
                            ),
                            Err(ApiError::NotFound { .. }) => {}
                            Err(e) => {
                                self.events.event(
                                    sts,
                                    "Warning",
                                    EVENT_FAILED_UPDATE,
                                    format!("update Pod {name} in StatefulSet {set_name} failed error: {e}"),
                                );
                                return Err(api(key, format!("updating pod {name}"))(e));
                            }
                        }
                    }
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        if result.is_err() && pending_creations > 0 {
            // Creations never attempted will not come back through the watch.
            self.expectations.lower_creations(key, pending_creations);
        }
        // Deletions never attempted will not either.
        if result.is_err() {
            for step in steps {
                if let Step::Delete { uid, .. } = step {
                    self.expectations
                        .deletion_observed(&deletions_key(key), uid);
                }
            }
        }
        result
    }

    async fn create_claims(
        &self,
        key: &str,
        sts: &Value,
        pod: &str,
        claims: &[Value],
    ) -> Result<(), Error> {
        let set_name = object::name(sts);
        for claim in claims {
            let name = object::name(claim);
            match self.client.create(claim).await {
                Ok(_) => self.events.event(
                    sts,
                    "Normal",
                    EVENT_SUCCESSFUL_CREATE,
                    format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
                ),
                // Made by an earlier sync the cache does not show yet: it is there.
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => {
                    self.events.event(
                        sts,
                        "Warning",
                        EVENT_FAILED_CREATE,
                        format!(
                            "create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                        ),
                    );
                    return Err(api(key, format!("creating claim {name}"))(e));
                }
            }
        }
        Ok(())
    }

    async fn create_pod(&self, key: &str, sts: &Value, pod: &Value) -> Result<(), Error> {
        let (name, set_name) = (object::name(pod), object::name(sts));
        match self.client.create(pod).await {
            Ok(_) => {
                tracing::info!(sts = %key, pod = %name, "created a pod");
                self.events.event(
                    sts,
                    "Normal",
                    EVENT_SUCCESSFUL_CREATE,
                    format!("create Pod {name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            Err(e) => {
                self.expectations.lower_creations(key, 1);
                if matches!(e, ApiError::AlreadyExists { .. }) {
                    // The old object of this identity is still there (the cache is behind):
                    // the next pass sees it.
                    return Ok(());
                }
                self.events.event(
                    sts,
                    "Warning",
                    EVENT_FAILED_CREATE,
                    format!("create Pod {name} in StatefulSet {set_name} failed error: {e}"),
                );
                Err(api(key, format!("creating pod {name}"))(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_lifecycle::format_time;

    fn at(offset_secs: i64) -> Timestamp {
        "2026-01-01T00:10:00Z"
            .parse::<Timestamp>()
            .expect("a test timestamp")
            .checked_add(SignedDuration::from_secs(offset_secs))
            .expect("in range")
    }

    fn ts(offset_secs: i64) -> String {
        format_time(at(offset_secs))
    }

    /// The reference StatefulSet: `web`, serviceName `nginx`, a claim template `www`.
    fn sts(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1,
                         "resourceVersion": "7", "finalizers": [SCALE_DOWN_FINALIZER]},
            "spec": {
                "replicas": replicas,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "busybox",
                        "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]},
                },
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "revisionHistoryLimit": 10,
            },
        })
    }

    fn arcs(v: &[Value]) -> Vec<Arc<Value>> {
        v.iter().cloned().map(Arc::new).collect()
    }

    /// The cluster as the controller would see it, and what carrying a plan out does to it.
    struct World {
        sts: Value,
        pods: Vec<Value>,
        revisions: Vec<Value>,
        claims: BTreeMap<String, Value>,
        /// Deleted pods stay, terminating, until [`World::gone`] (a node finishing them).
        graceful: bool,
        made: usize,
    }

    impl World {
        fn new(sts: Value) -> Self {
            Self {
                sts,
                pods: Vec::new(),
                revisions: Vec::new(),
                claims: BTreeMap::new(),
                graceful: true,
                made: 0,
            }
        }

        fn plan(&self) -> Plan {
            self.plan_at(at(0))
        }

        fn plan_at(&self, now: Timestamp) -> Plan {
            let claims = self.claims.clone();
            let lookup = move |name: &str| claims.get(name).cloned().map(Arc::new);
            decide(
                &self.sts,
                &arcs(&self.pods),
                &arcs(&self.revisions),
                &lookup,
                now,
            )
            .expect("a plan")
        }

        fn uid(&mut self) -> String {
            self.made += 1;
            format!("uid-{}", self.made)
        }

        /// Carries the plan out as the API would.
        fn apply(&mut self, plan: &Plan) {
            if plan.add_finalizer {
                self.sts["metadata"]["finalizers"] = json!([SCALE_DOWN_FINALIZER]);
            }
            match &plan.revision_write {
                Some(RevisionWrite::Create(rev)) => {
                    let mut rev = rev.clone();
                    rev["metadata"]["uid"] = json!(self.uid());
                    rev["metadata"]["creationTimestamp"] = json!(ts(0));
                    self.revisions.push(rev);
                }
                Some(RevisionWrite::Renumber(rev)) => {
                    for r in &mut self.revisions {
                        if object::name(r) == object::name(rev) {
                            *r = rev.clone();
                        }
                    }
                }
                None => {}
            }
            for step in &plan.steps {
                match step {
                    Step::Create { claims, pod, .. } => {
                        for c in claims {
                            assert!(
                                !self.claims.contains_key(object::name(c)),
                                "{} is created once",
                                object::name(c)
                            );
                            self.claims.insert(object::name(c).to_string(), c.clone());
                        }
                        assert!(
                            !self
                                .pods
                                .iter()
                                .any(|p| object::name(p) == object::name(pod)),
                            "{} is created while a pod of that name exists",
                            object::name(pod)
                        );
                        let mut pod = pod.clone();
                        pod["metadata"]["uid"] = json!(self.uid());
                        pod["status"] = json!({"phase": "Pending"});
                        self.pods.push(pod);
                    }
                    Step::CreateClaims { claims, .. } => {
                        for c in claims {
                            self.claims.insert(object::name(c).to_string(), c.clone());
                        }
                    }
                    Step::Delete { name, uid, .. } => {
                        if self.graceful {
                            for p in &mut self.pods {
                                if object::name(p) == name && object::uid(p) == uid {
                                    p["metadata"]["deletionTimestamp"] = json!(ts(0));
                                }
                            }
                        } else {
                            self.pods.retain(|p| object::uid(p) != uid);
                        }
                    }
                    Step::UpdatePod(pod) => {
                        for p in &mut self.pods {
                            if object::name(p) == object::name(pod) {
                                *p = pod.clone();
                            }
                        }
                    }
                }
            }
            let gone: Vec<&str> = plan
                .delete_revisions
                .iter()
                .map(|(_, u)| u.as_str())
                .collect();
            self.revisions.retain(|r| !gone.contains(&object::uid(r)));
            self.sts["status"] = plan.status.to_json();
        }

        fn pod(&mut self, name: &str) -> &mut Value {
            self.pods
                .iter_mut()
                .find(|p| object::name(p) == name)
                .unwrap_or_else(|| panic!("no pod {name}"))
        }

        fn ready(&mut self, name: &str) {
            self.pod(name)["status"] = json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": ts(-60)}]});
        }

        fn not_ready(&mut self, name: &str) {
            self.pod(name)["status"] = json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": ts(-60)}]});
        }

        fn failed(&mut self, name: &str) {
            self.pod(name)["status"] = json!({"phase": "Failed"});
        }

        /// A user deletes the pod (it terminates).
        fn delete(&mut self, name: &str) {
            self.pod(name)["metadata"]["deletionTimestamp"] = json!(ts(0));
        }

        /// The pod's node finished it: the object is gone.
        fn gone(&mut self, name: &str) {
            self.pods.retain(|p| object::name(p) != name);
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .pods
                .iter()
                .map(|p| object::name(p).to_string())
                .collect();
            names.sort();
            names
        }

        fn set(&mut self, pointer: &str, value: Value) {
            *self.sts.pointer_mut(pointer).expect("the pointer exists") = value;
            let generation = object::generation(&self.sts) + 1;
            self.sts["metadata"]["generation"] = json!(generation);
        }

        /// Runs plans, making every new pod ready, until a plan changes nothing.
        fn settle(&mut self) {
            for _ in 0..50 {
                let plan = self.plan();
                self.apply(&plan);
                let terminating: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|p| terminating(p))
                    .map(|p| object::name(p).to_string())
                    .collect();
                let changed = !terminating.is_empty();
                for name in terminating {
                    self.gone(&name);
                }
                let pending: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|p| phase(p) == "Pending")
                    .map(|p| object::name(p).to_string())
                    .collect();
                for name in &pending {
                    self.ready(name);
                }
                if plan.steps.is_empty()
                    && plan.revision_write.is_none()
                    && pending.is_empty()
                    && !changed
                {
                    return;
                }
            }
            panic!("no steady state: {:?}", self.names());
        }

        fn revision_of(&self, pod: &str) -> String {
            self.pods
                .iter()
                .find(|p| object::name(p) == pod)
                .map(|p| pod_revision(p).to_string())
                .unwrap_or_default()
        }
    }

    fn created(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Create { pod, .. } => Some(object::name(pod).to_string()),
                _ => None,
            })
            .collect()
    }

    fn deleted(plan: &Plan) -> Vec<(String, DeleteReason)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Delete { name, reason, .. } => Some((name.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn d(name: &str, reason: DeleteReason) -> (String, DeleteReason) {
        (name.to_string(), reason)
    }

    #[test]
    fn pod_names_parse_like_kubernetes() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
        assert_eq!(
            parent_and_ordinal("web-99999999999"),
            None,
            "not a 32-bit ordinal"
        );
        assert_eq!(pod_name("web", 3), "web-3");
        assert_eq!(claim_name("www", "web", 3), "www-web-3");
    }

    #[test]
    fn a_new_pod_gets_its_identity_its_claim_and_the_revision() {
        let w = World::new(sts(2));
        let plan = w.plan();
        let Some(RevisionWrite::Create(rev)) = &plan.revision_write else {
            panic!("a first revision is created: {plan:?}");
        };
        let rev_name = object::name(rev).to_string();
        assert!(rev_name.starts_with("web-"), "{rev_name}");
        assert_eq!(rev["revision"], 1);
        assert_eq!(rev["metadata"]["ownerReferences"][0]["uid"], "sts-uid");
        assert_eq!(rev["metadata"]["labels"]["app"], "nginx");
        assert_eq!(
            revision_template(rev).as_ref(),
            w.sts.pointer("/spec/template")
        );

        assert_eq!(plan.steps.len(), 1, "one pod at a time: {plan:?}");
        let Step::Create {
            ordinal,
            claims,
            pod,
        } = &plan.steps[0]
        else {
            panic!("a create: {plan:?}");
        };
        assert_eq!(*ordinal, 0);
        assert_eq!(object::name(pod), "web-0");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "nginx", POD_NAME_LABEL: "web-0", POD_INDEX_LABEL: "0",
                   REVISION_LABEL: rev_name})
        );
        assert_eq!(pod["spec"]["hostname"], "web-0");
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}])
        );
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                    "uid": "sts-uid", "controller": true, "blockOwnerDeletion": true}])
        );
        // The claim comes with the pod, to be created before it; it has no owner (Retain).
        assert_eq!(claims.len(), 1);
        assert_eq!(object::name(&claims[0]), "www-web-0");
        assert_eq!(claims[0]["metadata"]["labels"], json!({"app": "nginx"}));
        assert_eq!(claims[0]["metadata"].get("ownerReferences"), None);
        assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "1Gi");

        let s = &plan.status;
        assert_eq!(
            (s.replicas, s.observed_generation, s.collision_count),
            (0, 1, Some(0))
        );
        assert_eq!(s.current_revision, rev_name);
        assert_eq!(s.update_revision, rev_name);
        assert!(!plan.add_finalizer);
    }

    #[test]
    fn ordered_ready_creates_the_next_ordinal_only_once_the_previous_is_running_and_ready() {
        let mut w = World::new(sts(3));
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-0"]);
        w.apply(&plan);

        let plan = w.plan();
        assert!(plan.steps.is_empty(), "web-0 is Pending: {plan:?}");
        assert!(plan.waiting.as_deref().unwrap_or("").contains("web-0"));
        w.not_ready("web-0");
        assert!(w.plan().steps.is_empty(), "Running but not Ready");

        w.ready("web-0");
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-1"]);
        w.apply(&plan);
        assert!(w.plan().steps.is_empty());
        w.ready("web-1");
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-2"]);
        w.apply(&plan);
        w.ready("web-2");
        let plan = w.plan();
        assert!(plan.steps.is_empty() && plan.waiting.is_none(), "{plan:?}");
        let s = &plan.status;
        assert_eq!(
            (
                s.replicas,
                s.ready_replicas,
                s.available_replicas,
                s.current_replicas,
                s.updated_replicas
            ),
            (3, 3, 3, 3, 3)
        );
    }

    #[test]
    fn a_missing_lower_ordinal_is_made_before_anything_else() {
        let mut w = World::new(sts(3));
        w.settle();
        w.delete("web-0");
        assert!(w.plan().steps.is_empty(), "web-0 is still terminating");
        w.gone("web-0");
        w.not_ready("web-2");
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-0"], "{plan:?}");
    }

    #[test]
    fn parallel_creates_and_deletes_everything_at_once() {
        let mut s = sts(3);
        s["spec"]["podManagementPolicy"] = json!("Parallel");
        let mut w = World::new(s);
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-0", "web-1", "web-2"]);
        w.apply(&plan);
        assert!(
            w.plan().steps.is_empty(),
            "nothing more to do while they start"
        );
        w.set("/spec/replicas", json!(1));
        let plan = w.plan();
        assert_eq!(
            deleted(&plan),
            vec![
                d("web-2", DeleteReason::ScaleDown),
                d("web-1", DeleteReason::ScaleDown)
            ],
            "not ready and still deleted at once"
        );
    }

    #[test]
    fn claims_come_with_their_pod_are_kept_and_are_found_again() {
        let mut w = World::new(sts(2));
        w.settle();
        assert_eq!(
            w.claims.keys().collect::<Vec<_>>(),
            vec!["www-web-0", "www-web-1"]
        );
        // Scale down: the pod goes, its claim stays.
        w.set("/spec/replicas", json!(1));
        w.settle();
        assert_eq!(w.names(), vec!["web-0"]);
        assert!(w.claims.contains_key("www-web-1"));
        // Scale up: the pod comes back to the same claim, which is not created again.
        w.set("/spec/replicas", json!(2));
        let plan = w.plan();
        match &plan.steps[..] {
            [Step::Create { pod, claims, .. }] => {
                assert_eq!(object::name(pod), "web-1");
                assert!(claims.is_empty(), "www-web-1 exists: {claims:?}");
                assert_eq!(
                    pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
                    "www-web-1"
                );
            }
            other => panic!("one create: {other:?}"),
        }
        // A claim being deleted holds its pod back.
        let mut claim = w.claims["www-web-1"].clone();
        claim["metadata"]["deletionTimestamp"] = json!(ts(0));
        w.claims.insert("www-web-1".into(), claim);
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert!(plan.waiting.as_deref().unwrap_or("").contains("www-web-1"));
        // A pending pod whose claim went missing gets it made again.
        w.claims.remove("www-web-1");
        let plan = w.plan();
        w.apply(&plan);
        w.claims.remove("www-web-1");
        let plan = w.plan();
        match &plan.steps[..] {
            [Step::CreateClaims { pod, claims }] => {
                assert_eq!(pod, "web-1");
                assert_eq!(object::name(&claims[0]), "www-web-1");
            }
            other => panic!("the claim of the pending pod: {other:?}"),
        }
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let mut w = World::new(sts(3));
        w.settle();
        w.set("/spec/replicas", json!(1));
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-2", DeleteReason::ScaleDown)]);
        w.apply(&plan);
        let plan = w.plan();
        assert!(
            plan.steps.is_empty(),
            "web-2 is still terminating: {plan:?}"
        );
        w.gone("web-2");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-1", DeleteReason::ScaleDown)]);
        w.apply(&plan);
        w.gone("web-1");
        let plan = w.plan();
        assert!(plan.steps.is_empty());
        assert_eq!(w.names(), vec!["web-0"]);
    }

    #[test]
    fn an_unhealthy_pod_blocks_progress_as_kubernetes_does() {
        let mut w = World::new(sts(3));
        w.settle();
        // Scaling up waits for every lower ordinal.
        w.set("/spec/replicas", json!(4));
        w.not_ready("web-1");
        assert!(w.plan().steps.is_empty());
        w.ready("web-1");
        w.settle();

        // Scaling down: a healthy highest pod goes even when a lower condemned one is the
        // first unhealthy pod; that one may go next; with two unhealthy ones, it waits.
        w.set("/spec/replicas", json!(2));
        w.not_ready("web-2");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-3", DeleteReason::ScaleDown)]);
        w.apply(&plan);
        w.gone("web-3");
        let plan = w.plan();
        assert_eq!(
            deleted(&plan),
            vec![d("web-2", DeleteReason::ScaleDown)],
            "the first unhealthy pod may go"
        );

        let mut w = World::new(sts(4));
        w.settle();
        w.set("/spec/replicas", json!(2));
        w.not_ready("web-2");
        w.not_ready("web-3");
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert!(plan.waiting.as_deref().unwrap_or("").contains("web-2"));

        // A replica that is not ready stops the pass before any scale down.
        w.ready("web-2");
        w.ready("web-3");
        w.not_ready("web-0");
        assert!(w.plan().steps.is_empty());
    }

    #[test]
    fn a_failed_pod_is_replaced_only_after_the_old_object_is_gone() {
        let mut w = World::new(sts(2));
        w.settle();
        w.failed("web-0");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-0", DeleteReason::Failed)]);
        assert!(created(&plan).is_empty());
        assert_eq!(plan.events[0].1, EVENT_RECREATING_FAILED_POD);
        w.apply(&plan);
        // Terminating: it still holds its identity; nothing is created, nothing deleted again.
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "{plan:?}");
        w.gone("web-0");
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-0"]);

        // A pod someone deletes: the same.
        let mut w = World::new(sts(2));
        w.settle();
        w.delete("web-1");
        assert!(w.plan().steps.is_empty());
        w.gone("web-1");
        assert_eq!(created(&w.plan()), vec!["web-1"]);

        // Parallel: the failed pod is deleted, the others carry on.
        let mut s = sts(3);
        s["spec"]["podManagementPolicy"] = json!("Parallel");
        let mut w = World::new(s);
        w.settle();
        w.failed("web-0");
        w.gone("web-2");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-0", DeleteReason::Failed)]);
        assert_eq!(created(&plan), vec!["web-2"]);
    }

    fn new_image(w: &mut World, image: &str) {
        w.set("/spec/template/spec/containers/0/image", json!(image));
    }

    #[test]
    fn a_rolling_update_goes_from_the_highest_ordinal_down_one_ready_pod_at_a_time() {
        let mut w = World::new(sts(3));
        w.settle();
        let old = w.revision_of("web-0");
        new_image(&mut w, "busybox:2");
        let plan = w.plan();
        let Some(RevisionWrite::Create(rev)) = &plan.revision_write else {
            panic!("a second revision: {plan:?}");
        };
        let new = object::name(rev).to_string();
        assert_ne!(new, old);
        assert_eq!(rev["revision"], 2);
        assert_eq!(deleted(&plan), vec![d("web-2", DeleteReason::Update)]);
        assert_eq!(plan.status.current_revision, old);
        assert_eq!(plan.status.update_revision, new);
        assert_eq!(plan.status.current_replicas, 2);
        w.apply(&plan);
        assert!(w.plan().steps.is_empty(), "web-2 terminating");
        w.gone("web-2");
        let plan = w.plan();
        assert_eq!(created(&plan), vec!["web-2"]);
        w.apply(&plan);
        assert_eq!(w.revision_of("web-2"), new);
        assert_eq!(
            w.pod("web-2")["spec"]["containers"][0]["image"],
            "busybox:2"
        );
        assert!(w.plan().steps.is_empty(), "web-2 is not ready yet");
        w.ready("web-2");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-1", DeleteReason::Update)]);
        assert_eq!(plan.status.updated_replicas, 1);
        w.settle();
        for pod in ["web-0", "web-1", "web-2"] {
            assert_eq!(w.revision_of(pod), new, "{pod}");
        }
        let s = StatefulSetStatus::from_json(w.sts.get("status"));
        assert_eq!(s.current_revision, new, "the update is complete");
        assert_eq!((s.current_replicas, s.updated_replicas), (3, 3));
    }

    #[test]
    fn a_partition_keeps_the_lower_ordinals_at_the_current_revision() {
        let mut w = World::new(sts(3));
        w.settle();
        let old = w.revision_of("web-0");
        w.set("/spec/updateStrategy/rollingUpdate/partition", json!(2));
        new_image(&mut w, "busybox:2");
        w.settle();
        let new = w.revision_of("web-2");
        assert_ne!(new, old);
        assert_eq!(w.revision_of("web-1"), old);
        assert_eq!(w.revision_of("web-0"), old);
        let s = StatefulSetStatus::from_json(w.sts.get("status"));
        assert_eq!(
            (s.current_revision.as_str(), s.update_revision.as_str()),
            (old.as_str(), new.as_str())
        );
        assert_eq!((s.current_replicas, s.updated_replicas), (2, 1));
        // A pod below the partition that is deleted comes back at the current revision.
        w.delete("web-0");
        w.settle();
        assert_eq!(w.revision_of("web-0"), old);
        // Lowering the partition rolls the rest.
        w.set("/spec/updateStrategy/rollingUpdate/partition", json!(0));
        w.settle();
        assert_eq!(w.revision_of("web-0"), new);
        let s = StatefulSetStatus::from_json(w.sts.get("status"));
        assert_eq!(s.current_revision, new);
    }

    #[test]
    fn on_delete_replaces_only_the_pods_someone_deletes() {
        let mut s = sts(2);
        s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        let mut w = World::new(s);
        w.settle();
        let old = w.revision_of("web-0");
        new_image(&mut w, "busybox:2");
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "{plan:?}");
        w.apply(&plan);
        w.delete("web-1");
        w.settle();
        assert_ne!(
            w.revision_of("web-1"),
            old,
            "recreated at the update revision"
        );
        assert_eq!(w.revision_of("web-0"), old);
    }

    #[test]
    fn revisions_are_reused_on_rollback_named_past_collisions_and_trimmed() {
        let mut w = World::new(sts(1));
        w.settle();
        let first = w.revision_of("web-0");
        new_image(&mut w, "busybox:2");
        w.settle();
        let second = w.revision_of("web-0");
        // Back to the first template: the first revision is renumbered, none is created.
        new_image(&mut w, "busybox");
        let plan = w.plan();
        match &plan.revision_write {
            Some(RevisionWrite::Renumber(rev)) => {
                assert_eq!(object::name(rev), first);
                assert_eq!(rev["revision"], 3);
            }
            other => panic!("a renumbered revision: {other:?}"),
        }
        assert_eq!(plan.status.update_revision, first);
        w.settle();
        assert_eq!(w.revision_of("web-0"), first);

        // With a limit of 1, of the revisions no status and no pod uses the oldest goes.
        new_image(&mut w, "busybox:3");
        w.settle();
        w.sts["spec"]["revisionHistoryLimit"] = json!(1);
        new_image(&mut w, "busybox:4");
        let plan = w.plan();
        // Live: the current (busybox:3) and update (busybox:4) revisions; history: `second`
        // and `first`, of which the oldest by number (`second`, 2) goes.
        assert_eq!(
            plan.delete_revisions
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            vec![second.as_str()]
        );

        // A name taken by another revision bumps the collision count.
        let mut w = World::new(sts(1));
        let plan = w.plan();
        let Some(RevisionWrite::Create(rev)) = &plan.revision_write else {
            panic!("a revision");
        };
        let mut squatter = rev.clone();
        squatter["data"] = json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
        squatter["metadata"]["ownerReferences"] = json!([]);
        squatter["metadata"]["labels"] = json!({"app": "other"});
        w.revisions.push(squatter);
        let plan = w.plan();
        let Some(RevisionWrite::Create(rev2)) = &plan.revision_write else {
            panic!("a revision");
        };
        assert_ne!(object::name(rev2), object::name(rev));
        assert_eq!(plan.status.collision_count, Some(1));
        assert_eq!(created(&plan), vec!["web-0"]);
        assert_eq!(
            pod_revision(match &plan.steps[0] {
                Step::Create { pod, .. } => pod,
                other => panic!("{other:?}"),
            }),
            object::name(rev2)
        );
    }

    #[test]
    fn a_deleted_statefulset_scales_down_highest_first_then_lets_go() {
        let mut w = World::new(sts(3));
        w.settle();
        w.not_ready("web-1");
        w.sts["metadata"]["deletionTimestamp"] = json!(ts(0));
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-2", DeleteReason::SetDeleted)]);
        assert!(plan.revision_write.is_none() && !plan.remove_finalizer);
        w.apply(&plan);
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "web-2 must be gone first");
        w.gone("web-2");
        let plan = w.plan();
        assert_eq!(
            deleted(&plan),
            vec![d("web-1", DeleteReason::SetDeleted)],
            "an unready pod does not hold the deletion"
        );
        w.apply(&plan);
        w.gone("web-1");
        let plan = w.plan();
        assert_eq!(deleted(&plan), vec![d("web-0", DeleteReason::SetDeleted)]);
        w.apply(&plan);
        w.gone("web-0");
        let plan = w.plan();
        assert!(plan.steps.is_empty() && plan.remove_finalizer, "{plan:?}");
        assert_eq!(w.claims.len(), 3, "the claims stay");

        // Parallel: all at once.
        let mut s = sts(3);
        s["spec"]["podManagementPolicy"] = json!("Parallel");
        let mut w = World::new(s);
        w.settle();
        w.sts["metadata"]["deletionTimestamp"] = json!(ts(0));
        assert_eq!(deleted(&w.plan()).len(), 3);

        // Orphan propagation: the pods stay for the garbage collector to orphan.
        let mut w = World::new(sts(2));
        w.settle();
        w.sts["metadata"]["deletionTimestamp"] = json!(ts(0));
        w.sts["metadata"]["finalizers"] = json!(["orphan", SCALE_DOWN_FINALIZER]);
        let plan = w.plan();
        assert!(plan.steps.is_empty() && plan.remove_finalizer, "{plan:?}");
    }

    #[test]
    fn the_finalizer_is_added_to_a_statefulset_without_it() {
        let mut s = sts(1);
        s["metadata"]["finalizers"] = json!([]);
        let mut w = World::new(s);
        let plan = w.plan();
        assert!(plan.add_finalizer);
        w.apply(&plan);
        assert!(!w.plan().add_finalizer);
    }

    #[test]
    fn orphans_are_adopted_only_when_their_name_is_of_the_set() {
        let w = World::new(sts(2));
        let plan = w.plan();
        let Step::Create { pod, .. } = &plan.steps[0] else {
            panic!("a create");
        };
        let mut orphan = pod.clone();
        orphan["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        orphan["metadata"]["uid"] = json!("o-1");
        orphan["status"] =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        let mut stranger = orphan.clone();
        stranger["metadata"]["name"] = json!("db-0");
        stranger["metadata"]["uid"] = json!("o-2");
        let mut w = World::new(sts(2));
        w.pods = vec![orphan, stranger];
        let plan = w.plan();
        assert_eq!(plan.claim_updates.len(), 1, "{plan:?}");
        assert_eq!(object::name(&plan.claim_updates[0]), "web-0");
        assert_eq!(
            plan.claim_updates[0]["metadata"]["ownerReferences"][0]["uid"],
            "sts-uid"
        );
        assert_eq!(created(&plan), vec!["web-1"], "the adopted web-0 counts");
    }

    #[test]
    fn min_ready_seconds_holds_the_next_ordinal_and_counts_availability() {
        let mut s = sts(2);
        s["spec"]["minReadySeconds"] = json!(30);
        let mut w = World::new(s);
        let plan = w.plan();
        w.apply(&plan);
        w.pod("web-0")["status"] = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": ts(-10)}]});
        let plan = w.plan();
        assert!(plan.steps.is_empty(), "ready for 10 s only: {plan:?}");
        assert_eq!(
            (plan.status.ready_replicas, plan.status.available_replicas),
            (1, 0)
        );
        assert_eq!(
            plan.requeue_after,
            Some(Duration::from_secs(20) + AVAILABILITY_MARGIN)
        );
        let plan = w.plan_at(at(21));
        assert_eq!(created(&plan), vec!["web-1"]);
        assert_eq!(plan.status.available_replicas, 1);
    }

    #[test]
    fn ordinals_start_where_the_spec_says() {
        let mut s = sts(2);
        s["spec"]["ordinals"] = json!({"start": 5});
        let mut w = World::new(s);
        w.settle();
        assert_eq!(w.names(), vec!["web-5", "web-6"]);
        assert_eq!(w.pod("web-5")["metadata"]["labels"][POD_INDEX_LABEL], "5");
        assert!(w.claims.contains_key("www-web-6"));
    }

    #[test]
    fn a_pod_that_lost_its_identity_labels_gets_them_back() {
        let mut w = World::new(sts(1));
        w.settle();
        w.pod("web-0")["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove(POD_NAME_LABEL);
        let plan = w.plan();
        match &plan.steps[..] {
            [Step::UpdatePod(pod)] => {
                assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], "web-0")
            }
            other => panic!("an update: {other:?}"),
        }
    }

    #[test]
    fn the_web_example_is_valid_and_starts_with_web_0_and_its_claim() {
        let objects = object::parse_manifests(include_str!("../../../examples/web.yaml"))
            .expect("the example parses");
        assert_eq!(objects.len(), 2);
        for obj in &objects {
            let mut obj = obj.clone();
            corral_api::defaults::apply_defaults(&mut obj);
            corral_api::validation::validate(&obj).expect("the example is valid");
        }
        let mut sts = objects[1].clone();
        corral_api::defaults::apply_defaults(&mut sts);
        sts["metadata"]["namespace"] = json!("default");
        sts["metadata"]["uid"] = json!("u");
        let w = World::new(sts);
        let plan = w.plan();
        match &plan.steps[..] {
            [Step::Create { pod, claims, .. }] => {
                assert_eq!(object::name(pod), "web-0");
                assert_eq!(pod["spec"]["subdomain"], "nginx");
                assert_eq!(object::name(&claims[0]), "www-web-0");
                assert_eq!(claims[0]["spec"]["accessModes"], json!(["ReadWriteOnce"]));
            }
            other => panic!("web-0 first: {other:?}"),
        }
    }

    #[test]
    fn the_status_round_trips() {
        let s = StatefulSetStatus {
            observed_generation: 3,
            replicas: 2,
            ready_replicas: 1,
            current_replicas: 1,
            updated_replicas: 1,
            available_replicas: 1,
            current_revision: "web-a".into(),
            update_revision: "web-b".into(),
            collision_count: Some(0),
            conditions: None,
        };
        assert_eq!(StatefulSetStatus::from_json(Some(&s.to_json())), s);
    }
}

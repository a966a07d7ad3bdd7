//! The ReplicaSet controller: Kubernetes' `replicaset-controller` (`pkg/controller/replicaset`),
//! run by the Raft leader.
//!
//! Event handlers only queue keys (`namespace/name` of a ReplicaSet): a ReplicaSet's own
//! changes, a change of a pod it controls (through the pod's controller ownerReference), and a
//! change of an orphan pod its selector matches. A sync of one key:
//!
//! 1. reads the ReplicaSet and the candidate pods (those it controls, and the orphans of its
//!    namespace) from the informers' caches;
//! 2. asks [`decide`], a pure function, what to do: the pods it claims (as Kubernetes'
//!    `ControllerRefManager`: it adopts matching orphans and releases the pods it controls that
//!    its selector no longer matches), how many pods to create (`replicas` minus the active
//!    pods, at most [`BURST_REPLICAS`] per sync), which surplus pods to delete (ranked as
//!    Kubernetes ranks them, see [`deletion_order`]), and the new status;
//! 3. adopts and releases with merge patches of `ownerReferences` that name the pod's
//!    resourceVersion;
//! 4. unless [`Expectations`] still wait for its previous creations or deletions to come back
//!    through the watch, creates pods from the template (in slow-start batches of 1, 2, 4...,
//!    stopping at the first failing batch) or deletes the surplus (each with a uid
//!    precondition), with `SuccessfulCreate` / `SuccessfulDelete` events (`FailedCreate` /
//!    `FailedDelete` on errors) as Kubernetes writes them;
//! 5. writes the status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//!    observedGeneration, and the `ReplicaFailure` condition while creating or deleting fails)
//!    with the ReplicaSet's resourceVersion, when it changed.
//!
//! A failing sync is retried with the workqueue's back-off; every ReplicaSet is synced again
//! every resync period, and a ReplicaSet with pods that are ready but not yet available (for
//! `minReadySeconds`) is synced again when the first of them becomes available.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_api::ApiError;
use corral_api::object;
use corral_api::selector::{LabelSelector, from_label_selector_json};
use corral_client::events::EventRecorder;
use corral_client::informer::index_by_namespace;
use corral_client::{Change, Client, DeleteOptions, Informer};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Action, ControllerOptions, Expectations, Source, run_controller};

/// The most pods one sync creates or deletes (Kubernetes' `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The pod annotation that orders deletions among otherwise equal pods (lower cost first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The condition written while creating or deleting pods fails.
pub const CONDITION_REPLICA_FAILURE: &str = "ReplicaFailure";

/// Event reasons, as Kubernetes' pod control writes them.
pub const EVENT_SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
pub const EVENT_FAILED_CREATE: &str = "FailedCreate";
pub const EVENT_SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
pub const EVENT_FAILED_DELETE: &str = "FailedDelete";

/// The events' source, as Kubernetes names it.
const COMPONENT: &str = "replicaset-controller";

/// Informer indexes: objects by the uid of their controller ownerReference; pods without a
/// controller by namespace; ReplicaSets by namespace.
const CONTROLLER_INDEX: &str = "controller-uid";
const ORPHAN_INDEX: &str = "orphans-by-namespace";
const NAMESPACE_INDEX: &str = "namespace";

/// How long after a pod's availability time the ReplicaSet is looked at again (times are whole
/// seconds and availability is strictly after `readySince + minReadySeconds`).
const AVAILABILITY_MARGIN: Duration = Duration::from_millis(100);

/// How the controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetOptions {
    /// ReplicaSets synced at once (default 5, Kubernetes' `--concurrent-replicaset-syncs`).
    pub workers: usize,
    /// How often every ReplicaSet is synced even when nothing changed (default 30 s).
    pub resync: Duration,
}

impl Default for ReplicaSetOptions {
    fn default() -> Self {
        Self {
            workers: 5,
            resync: Duration::from_secs(30),
        }
    }
}

/// What a sync of one ReplicaSet can fail with. `Selector` and `BadKey` are logged and not
/// retried (the object has to change first); every other variant is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workqueue key {0:?} is not namespace/name")]
    BadKey(String),
    #[error("ReplicaSet {rs}: spec.selector: {source}")]
    Selector { rs: String, source: Box<ApiError> },
    #[error("ReplicaSet {rs} cannot adopt pods: {why}")]
    CannotAdopt { rs: String, why: String },
    #[error("ReplicaSet {rs}: {action} pod {pod}: {source}")]
    Pod {
        rs: String,
        action: &'static str,
        pod: String,
        source: Box<ApiError>,
    },
    #[error("ReplicaSet {rs}: creating pods: {source}")]
    Create { rs: String, source: Box<ApiError> },
    #[error("ReplicaSet {rs}: updating its status: {source}")]
    Status { rs: String, source: Box<ApiError> },
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// What one sync of a ReplicaSet does.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Pods to create from the template.
    pub create: usize,
    /// Surplus pods to delete, in deletion order.
    pub delete: Vec<Arc<Value>>,
    /// Orphans the selector matches: they get the ReplicaSet as controller.
    pub adopt: Vec<Arc<Value>>,
    /// Pods the ReplicaSet controls that its selector no longer matches: they lose it.
    pub release: Vec<Arc<Value>>,
    /// The new `status` (written only when it differs from the stored one).
    pub status: Value,
    /// When some claimed pod becomes available (ready for `minReadySeconds`): sync again then.
    pub requeue_after: Option<Duration>,
}

impl Decision {
    /// Whether the status differs from the ReplicaSet's stored one.
    pub fn status_changed(&self, rs: &Value) -> bool {
        rs.get("status").unwrap_or(&Value::Null) != &self.status
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str)?.parse().ok()
}

fn key_of(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

/// The object's controller ownerReference (the first with `controller: true`).
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// An index function: the uid of the object's controller, when it has one.
pub fn index_by_controller_uid(obj: &Value) -> Vec<String> {
    controller_ref(obj)
        .and_then(|r| r.get("uid").and_then(Value::as_str))
        .filter(|uid| !uid.is_empty())
        .map(|uid| vec![uid.to_string()])
        .unwrap_or_default()
}

/// An index function: the namespace of an object without a controller.
fn index_orphans_by_namespace(obj: &Value) -> Vec<String> {
    if controller_ref(obj).is_some() {
        Vec::new()
    } else {
        index_by_namespace(obj)
    }
}

/// The controller ownerReference a ReplicaSet gives its pods.
pub fn owner_reference(rs: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": object::name(rs),
        "uid": object::uid(rs),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Kubernetes' `IsPodActive`: not `Succeeded`, not `Failed`, not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
        && object::deletion_timestamp(pod).is_none()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).and_then(|c| c.get("status").and_then(Value::as_str)) == Some("True")
}

/// When a ready pod became ready (its `Ready` condition's `lastTransitionTime`).
fn ready_since(pod: &Value) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    parse_time(ready_condition(pod)?.get("lastTransitionTime"))
}

/// When the pod is available (Kubernetes' `IsPodAvailable`): `Some(time)` for a ready pod,
/// available once `now` is strictly after that time (at once with `minReadySeconds` 0);
/// `None` for a pod that is not ready, or has no time to count from.
fn available_after(pod: &Value, min_ready_seconds: i64) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Timestamp::MIN);
    }
    let since = ready_since(pod)?;
    Some(
        since
            .checked_add(SignedDuration::from_secs(min_ready_seconds))
            .unwrap_or(Timestamp::MAX),
    )
}

fn selector_of(rs: &Value) -> Result<LabelSelector, Error> {
    from_label_selector_json(rs.pointer("/spec/selector").unwrap_or(&Value::Null)).map_err(
        |source| Error::Selector {
            rs: key_of(rs),
            source: Box::new(source),
        },
    )
}

fn desired_replicas(rs: &Value) -> usize {
    match rs.pointer("/spec/replicas") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_i64()
            .map_or(0, |n| usize::try_from(n.max(0)).unwrap_or(usize::MAX)),
    }
}

fn min_ready_seconds(rs: &Value) -> i64 {
    rs.pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What the ReplicaSet should do, given every candidate pod (those it controls and the
/// orphans of its namespace; pods controlled by others are ignored), the pods of its sibling
/// ReplicaSets (`related`: those with the same controller, such as a Deployment's, which rank
/// pods colocated on a node for deletion; empty for a ReplicaSet without a controller), and the
/// time.
///
/// Claiming is that of Kubernetes' `ControllerRefManager`, over active pods only: a pod it
/// controls and matches is kept, one it controls and no longer matches is released; an orphan
/// it matches is adopted. A ReplicaSet being deleted adopts, releases, creates and deletes
/// nothing. Errors only for a selector that cannot be read.
pub fn decide(
    rs: &Value,
    pods: &[Arc<Value>],
    related: &[Arc<Value>],
    now: Timestamp,
) -> Result<Decision, Error> {
    let selector = selector_of(rs)?;
    let uid = object::uid(rs);
    let namespace = object::namespace(rs);
    let deleting = object::deletion_timestamp(rs).is_some();
    let mut claimed = Vec::new();
    let mut adopt = Vec::new();
    let mut release = Vec::new();
    for pod in pods {
        if !is_active(pod) || object::namespace(pod) != namespace {
            continue;
        }
        let matches = selector.matches(&object::labels(pod));
        match controller_ref(pod) {
            Some(r) if r.get("uid").and_then(Value::as_str) == Some(uid) => {
                if matches {
                    claimed.push(Arc::clone(pod));
                } else if !deleting {
                    release.push(Arc::clone(pod));
                }
            }
            Some(_) => {}
            None if !deleting && matches => {
                adopt.push(Arc::clone(pod));
                claimed.push(Arc::clone(pod));
            }
            None => {}
        }
    }

    let wanted = desired_replicas(rs);
    let (create, delete) = if deleting {
        (0, Vec::new())
    } else if claimed.len() < wanted {
        ((wanted - claimed.len()).min(BURST_REPLICAS), Vec::new())
    } else {
        let surplus = (claimed.len() - wanted).min(BURST_REPLICAS);
        let mut ordered = claimed.clone();
        deletion_order(&mut ordered, related, now);
        ordered.truncate(surplus);
        (0, ordered)
    };

    let min_ready = min_ready_seconds(rs);
    let requeue_after = claimed
        .iter()
        .filter_map(|p| available_after(p, min_ready))
        .filter(|at| *at >= now)
        .min()
        .map(|at| {
            Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
                + AVAILABILITY_MARGIN
        });

    Ok(Decision {
        create,
        delete,
        adopt,
        release,
        status: status_of(rs, &claimed, now),
        requeue_after,
    })
}

/// The ReplicaSet's status over the pods it claims (Kubernetes' `calculateStatus`): `replicas`
/// counts them, `fullyLabeledReplicas` those carrying every label of the template,
/// `readyReplicas` the ready ones, `availableReplicas` those ready for `minReadySeconds`;
/// `observedGeneration` is the ReplicaSet's generation. Other fields (conditions) are kept;
/// zero counts are left out, as Kubernetes' JSON leaves them out.
pub fn status_of(rs: &Value, claimed: &[Arc<Value>], now: Timestamp) -> Value {
    let template_labels = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let mut fully_labeled = 0usize;
    let mut ready = 0usize;
    let mut available = 0usize;
    for pod in claimed {
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
            if available_after(pod, min_ready).is_some_and(|at| at < now) {
                available += 1;
            }
        }
    }
    let mut status = rs
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    status.insert("replicas".into(), json!(claimed.len()));
    let mut set = |field: &str, n: i64| {
        if n == 0 {
            status.remove(field);
        } else {
            status.insert(field.into(), json!(n));
        }
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    set("fullyLabeledReplicas", count(fully_labeled));
    set("readyReplicas", count(ready));
    set("availableReplicas", count(available));
    set("observedGeneration", object::generation(rs));
    Value::Object(status)
}

/// Sets or clears the `ReplicaFailure` condition of a status (Kubernetes' way): a failure
/// (reason `FailedCreate` / `FailedDelete`, message) adds it when it is not there yet; no
/// failure removes it.
pub fn set_replica_failure(status: &mut Value, failure: Option<(&str, &str)>, now: Timestamp) {
    let Some(map) = status.as_object_mut() else {
        return;
    };
    let mut conditions: Vec<Value> = map
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let present = conditions
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some(CONDITION_REPLICA_FAILURE));
    match failure {
        Some((reason, message)) if !present => conditions.push(json!({
            "type": CONDITION_REPLICA_FAILURE,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": Timestamp::from_second(now.as_second()).unwrap_or(now).to_string(),
        })),
        None if present => conditions
            .retain(|c| c.get("type").and_then(Value::as_str) != Some(CONDITION_REPLICA_FAILURE)),
        _ => return,
    }
    if conditions.is_empty() {
        map.remove("conditions");
    } else {
        map.insert("conditions".into(), Value::Array(conditions));
    }
}

/// `floor(log2(now - t in nanoseconds))`, or -1 when `t` is not in the past: Kubernetes'
/// `LogarithmicScaleDown` buckets.
fn age_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.duration_since(t).as_nanos();
    if nanos > 0 {
        i64::from(nanos.ilog2())
    } else {
        -1
    }
}

/// The highest restart count of the pod's containers, and of its sidecars (init containers
/// with `restartPolicy: Always`).
fn max_restarts(pod: &Value) -> (i64, i64) {
    let max_of = |statuses: &str, only: Option<&dyn Fn(&str) -> bool>| {
        pod.pointer(statuses)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| only.is_none_or(|f| f(str_at(s, "/name"))))
            .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
            .max()
            .unwrap_or(0)
    };
    let sidecars: Vec<&str> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect();
    let is_sidecar = |name: &str| sidecars.contains(&name);
    (
        max_of("/status/containerStatuses", None),
        max_of("/status/initContainerStatuses", Some(&is_sidecar)),
    )
}

/// The sort key of a pod for deletion: smaller is deleted first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DeletionRank<'a> {
    /// 1. unassigned before assigned.
    assigned: bool,
    /// 2. Pending (or no phase) < Unknown < Running.
    phase: u8,
    /// 3. not ready before ready.
    ready: bool,
    /// 4. lower `pod-deletion-cost` first.
    cost: i32,
    /// 5. more related active pods on the same node first.
    colocated: Reverse<usize>,
    /// 6. (ready pods) ready for a shorter time first, no time first of all.
    ready_age: (bool, i64),
    /// 7. higher restart counts first (containers, then sidecars).
    restarts: Reverse<(i64, i64)>,
    /// 8. newer first, no creation time first of all.
    age: (bool, i64),
    /// Then by uid (Kubernetes' tie-break within a log-scale bucket), then name.
    uid: &'a str,
    name: &'a str,
}

fn deletion_rank<'a>(
    pod: &'a Value,
    on_node: &HashMap<&str, usize>,
    now: Timestamp,
) -> DeletionRank<'a> {
    let node = str_at(pod, "/spec/nodeName");
    let ready = is_ready(pod);
    let bucket = |t: Option<Timestamp>| match t {
        Some(t) => (true, age_bucket(t, now)),
        None => (false, 0),
    };
    DeletionRank {
        assigned: !node.is_empty(),
        phase: match str_at(pod, "/status/phase") {
            "Unknown" => 1,
            "Running" => 2,
            _ => 0,
        },
        ready,
        cost: object::annotations(pod)
            .get(POD_DELETION_COST)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        colocated: Reverse(on_node.get(node).copied().unwrap_or(0)),
        ready_age: if ready {
            bucket(ready_since(pod))
        } else {
            (false, 0)
        },
        restarts: Reverse(max_restarts(pod)),
        age: bucket(parse_time(pod.pointer("/metadata/creationTimestamp"))),
        uid: object::uid(pod),
        name: object::name(pod),
    }
}

/// Sorts pods in the order a ReplicaSet deletes its surplus, as Kubernetes' `ActivePodsWithRanks`
/// with `LogarithmicScaleDown`: unassigned < assigned; Pending < Unknown < Running; not ready <
/// ready; lower `controller.kubernetes.io/pod-deletion-cost` first; more active `related` pods
/// on the same node first; ready for a shorter time first; higher restart count first; newer
/// first. Ready and creation times are compared on a log2 scale of their age (pods of the same
/// bucket are equal there), so which of a group of similarly old pods goes is spread rather than
/// always the very newest; ties end on the uid.
///
/// (Kubernetes breaks a tie within one bucket by uid at once; here the later criteria come
/// first and the uid last, which keeps the order total.)
pub fn deletion_order(pods: &mut [Arc<Value>], related: &[Arc<Value>], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(str_at(pod, "/spec/nodeName")).or_insert(0) += 1;
    }
    let order: Vec<Arc<Value>> = {
        let mut ranked: Vec<(DeletionRank<'_>, &Arc<Value>)> = pods
            .iter()
            .map(|p| (deletion_rank(p, &on_node, now), p))
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        ranked.into_iter().map(|(_, p)| Arc::clone(p)).collect()
    };
    pods.clone_from_slice(&order);
}

/// A new pod for the ReplicaSet (Kubernetes' `GetPodFromTemplate`): the template's labels,
/// annotations, finalizers and spec, `generateName: <rs name>-`, the ReplicaSet's namespace and
/// a controller ownerReference to it.
pub fn new_pod(rs: &Value) -> Value {
    let template = rs.pointer("/spec/template").unwrap_or(&Value::Null);
    let mut meta = Map::new();
    meta.insert(
        "generateName".into(),
        json!(format!("{}-", object::name(rs))),
    );
    meta.insert("namespace".into(), json!(object::namespace(rs)));
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{field}"))
            && !v.is_null()
        {
            meta.insert(field.into(), v.clone());
        }
    }
    meta.insert("ownerReferences".into(), json!([owner_reference(rs)]));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The merge patch that makes the ReplicaSet the pod's controller, on the pod's version.
fn adopt_patch(rs: &Value, pod: &Value) -> Value {
    let mut refs: Vec<Value> = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(object::uid(rs)));
    refs.push(owner_reference(rs));
    json!({"metadata": {
        "resourceVersion": str_at(pod, "/metadata/resourceVersion"),
        "ownerReferences": refs,
    }})
}

/// The merge patch that removes the ReplicaSet from the pod's owners, on the pod's version.
fn release_patch(rs: &Value, pod: &Value) -> Value {
    let refs: Vec<Value> = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(object::uid(rs)))
        .cloned()
        .collect();
    json!({"metadata": {
        "resourceVersion": str_at(pod, "/metadata/resourceVersion"),
        "ownerReferences": if refs.is_empty() { Value::Null } else { Value::Array(refs) },
    }})
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the ReplicaSet controller until `cancel` fires.
pub async fn run(client: Client, opts: ReplicaSetOptions, cancel: CancellationToken) {
    let replica_sets = Informer::builder(client.clone(), "ReplicaSet")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .index(CONTROLLER_INDEX, index_by_controller_uid)
        .start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(CONTROLLER_INDEX, index_by_controller_uid)
        .index(ORPHAN_INDEX, index_orphans_by_namespace)
        .start(cancel.clone());
    let ctx = Arc::new(Ctx {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        replica_sets: replica_sets.clone(),
        pods: pods.clone(),
        expectations: Expectations::new(),
    });
    let sources = vec![
        Source::informer(&replica_sets, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.replica_set_changed(change)
        }),
        Source::informer(&pods, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.pod_changed(change)
        }),
    ];
    let all_keys = move || replica_sets.list().iter().map(|rs| key_of(rs)).collect();
    let reconcile = move |key: String| {
        let ctx = Arc::clone(&ctx);
        async move { ctx.sync(&key).await }
    };
    let opts = ControllerOptions::new(COMPONENT, opts.workers, opts.resync);
    run_controller(sources, all_keys, reconcile, opts, cancel).await;
}

struct Ctx {
    client: Client,
    replica_sets: Informer,
    pods: Informer,
    expectations: Expectations,
    events: EventRecorder,
}

impl Ctx {
    /// The ReplicaSet a controller ownerReference names, when it is one the cache holds (same
    /// name and uid).
    fn resolve(&self, namespace: &str, r: &Value) -> Option<Arc<Value>> {
        if str_at(r, "/kind") != "ReplicaSet" {
            return None;
        }
        let rs = self.replica_sets.get(namespace, str_at(r, "/name"))?;
        (object::uid(&rs) == str_at(r, "/uid")).then_some(rs)
    }

    fn owner_key(&self, pod: &Value) -> Option<String> {
        let r = controller_ref(pod)?;
        self.resolve(object::namespace(pod), r)
            .map(|rs| key_of(&rs))
    }

    /// The ReplicaSets of the pod's namespace whose selector matches it (an orphan's
    /// candidates for adoption).
    fn matching(&self, pod: &Value) -> Vec<String> {
        let labels = object::labels(pod);
        self.replica_sets
            .by_index(NAMESPACE_INDEX, object::namespace(pod))
            .iter()
            .filter(|rs| selector_of(rs).is_ok_and(|s| !s.is_empty() && s.matches(&labels)))
            .map(|rs| key_of(rs))
            .collect()
    }

    fn replica_set_changed(&self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(rs) => vec![key_of(rs)],
            Change::Modified { old, new } => {
                if object::uid(old) != object::uid(new) {
                    self.expectations.delete(&key_of(old));
                }
                vec![key_of(new)]
            }
            Change::Deleted(rs) => {
                self.expectations.delete(&key_of(rs));
                vec![key_of(rs)]
            }
            Change::Relisted => Vec::new(),
        }
    }

    /// A pod is gone or going: its owner has seen the deletion it may have expected.
    fn pod_gone(&self, pod: &Value) -> Vec<String> {
        let Some(key) = self.owner_key(pod) else {
            return Vec::new();
        };
        self.expectations.deletion_observed(&key, object::uid(pod));
        vec![key]
    }

    /// Kubernetes' `addPod` / `updatePod` / `deletePod`.
    fn pod_changed(&self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(pod) => {
                if object::deletion_timestamp(pod).is_some() {
                    return self.pod_gone(pod);
                }
                match self.owner_key(pod) {
                    Some(key) => {
                        self.expectations.creation_observed(&key);
                        vec![key]
                    }
                    None if controller_ref(pod).is_some() => Vec::new(),
                    None => self.matching(pod),
                }
            }
            Change::Modified { old, new } => {
                let labels_changed = object::labels(old) != object::labels(new);
                if object::deletion_timestamp(new).is_some() {
                    let mut keys = self.pod_gone(new);
                    if labels_changed {
                        keys.extend(self.pod_gone(old));
                    }
                    return keys;
                }
                let (old_ref, new_ref) = (controller_ref(old), controller_ref(new));
                let ref_changed = old_ref != new_ref;
                let mut keys = Vec::new();
                if ref_changed && let Some(key) = self.owner_key(old) {
                    keys.push(key);
                }
                if new_ref.is_some() {
                    keys.extend(self.owner_key(new));
                } else if labels_changed || ref_changed {
                    keys.extend(self.matching(new));
                }
                keys
            }
            Change::Deleted(pod) => self.pod_gone(pod),
            Change::Relisted => Vec::new(),
        }
    }

    /// The pods the ReplicaSet controls and the orphans of its namespace.
    fn candidates(&self, rs: &Value) -> Vec<Arc<Value>> {
        let mut pods: BTreeMap<String, Arc<Value>> = BTreeMap::new();
        let owned = self.pods.by_index(CONTROLLER_INDEX, object::uid(rs));
        let orphans = self.pods.by_index(ORPHAN_INDEX, object::namespace(rs));
        for pod in owned.into_iter().chain(orphans) {
            pods.insert(key_of(&pod), pod);
        }
        pods.into_values().collect()
    }

    /// The pods of every ReplicaSet with the same controller as this one (none without one).
    fn related(&self, rs: &Value) -> Vec<Arc<Value>> {
        let Some(owner) = controller_ref(rs).map(|r| str_at(r, "/uid")) else {
            return Vec::new();
        };
        if owner.is_empty() {
            return Vec::new();
        }
        self.replica_sets
            .by_index(CONTROLLER_INDEX, owner)
            .iter()
            .filter(|sibling| object::namespace(sibling) == object::namespace(rs))
            .flat_map(|sibling| self.pods.by_index(CONTROLLER_INDEX, object::uid(sibling)))
            .collect()
    }

    /// Kubernetes' `syncReplicaSet`.
    async fn sync(&self, key: &str) -> Result<Action, Error> {
        let Some((namespace, name)) = key.split_once('/') else {
            // Not retried: the key will not change.
            tracing::warn!(error = %Error::BadKey(key.to_string()), "replicaset: cannot sync");
            return Ok(Action::await_change());
        };
        let Some(rs) = self.replica_sets.get(namespace, name) else {
            self.expectations.delete(key);
            return Ok(Action::await_change());
        };
        let needs_sync = self.expectations.satisfied(key);
        let now = Timestamp::now();
        let decision = match decide(&rs, &self.candidates(&rs), &self.related(&rs), now) {
            Ok(d) => d,
            Err(e @ Error::Selector { .. }) => {
                // Not retried: the ReplicaSet must change first (admission rejects such
                // selectors anyway).
                tracing::warn!(error = %e, "replicaset: cannot sync");
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        };
        self.claim(&rs, &decision).await?;

        let manage = if needs_sync {
            self.manage(key, &rs, &decision).await
        } else {
            tracing::debug!(rs = %key, pending = ?self.expectations.pending(key), "waiting for earlier writes to be observed");
            Ok(())
        };
        let mut status = decision.status.clone();
        let failure = manage.as_ref().err().map(|e| {
            let reason = if decision.create > 0 {
                EVENT_FAILED_CREATE
            } else {
                EVENT_FAILED_DELETE
            };
            (reason, e.to_string())
        });
        set_replica_failure(
            &mut status,
            failure.as_ref().map(|(r, m)| (*r, m.as_str())),
            now,
        );
        if rs.get("status").unwrap_or(&Value::Null) != &status {
            let mut next = (*rs).clone();
            next["status"] = status;
            self.client
                .update_status(&next)
                .await
                .map_err(|source| Error::Status {
                    rs: key.to_string(),
                    source: Box::new(source),
                })?;
        }
        manage?;
        Ok(decision
            .requeue_after
            .map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    /// Adopts and releases what the decision says; stops at the first failure (the sync is
    /// retried on fresh state).
    async fn claim(&self, rs: &Value, decision: &Decision) -> Result<(), Error> {
        let rs_key = key_of(rs);
        if !decision.adopt.is_empty() {
            // Adopt only for a ReplicaSet that still exists as read and is not being deleted,
            // checked with a quorum read (Kubernetes' `RecheckDeletionTimestamp`).
            let fresh = self
                .client
                .get("ReplicaSet", object::namespace(rs), object::name(rs))
                .await
                .map_err(|e| Error::CannotAdopt {
                    rs: rs_key.clone(),
                    why: e.to_string(),
                })?;
            if object::uid(&fresh) != object::uid(rs) {
                return Err(Error::CannotAdopt {
                    rs: rs_key,
                    why: format!(
                        "it was replaced (uid {} is now {})",
                        object::uid(rs),
                        object::uid(&fresh)
                    ),
                });
            }
            if object::deletion_timestamp(&fresh).is_some() {
                return Err(Error::CannotAdopt {
                    rs: rs_key,
                    why: "it is being deleted".into(),
                });
            }
        }
        let writes = decision
            .adopt
            .iter()
            .map(|p| ("adopting", p, adopt_patch(rs, p)))
            .chain(
                decision
                    .release
                    .iter()
                    .map(|p| ("releasing", p, release_patch(rs, p))),
            );
        for (action, pod, patch) in writes {
            let (ns, name) = (object::namespace(pod), object::name(pod));
            self.client
                .patch("Pod", ns, name, &patch, false)
                .await
                .map_err(|source| Error::Pod {
                    rs: rs_key.clone(),
                    action,
                    pod: name.to_string(),
                    source: Box::new(source),
                })?;
            tracing::info!(rs = %rs_key, pod = %name, "{action} pod");
        }
        Ok(())
    }

    /// Kubernetes' `manageReplicas`: creates or deletes what the decision says, with
    /// expectations set first.
    async fn manage(&self, key: &str, rs: &Arc<Value>, decision: &Decision) -> Result<(), Error> {
        if decision.create > 0 {
            let n = decision.create;
            self.expectations.expect_creations(key, n);
            tracing::info!(rs = %key, creating = n, "too few replicas");
            let (created, result) = self.create_pods(rs, n).await;
            if created < n {
                // The pods never attempted (or failed) will not come back through the watch.
                self.expectations.lower_creations(key, n - created);
            }
            return result.map_err(|source| Error::Create {
                rs: key.to_string(),
                source: Box::new(source),
            });
        }
        if decision.delete.is_empty() {
            return Ok(());
        }
        tracing::info!(rs = %key, deleting = decision.delete.len(), "too many replicas");
        self.expectations.expect_deletions(
            key,
            decision.delete.iter().map(|p| object::uid(p).to_string()),
        );
        let mut deletes = JoinSet::new();
        for pod in &decision.delete {
            let (client, pod) = (self.client.clone(), Arc::clone(pod));
            deletes.spawn(async move {
                let options = DeleteOptions {
                    uid: Some(object::uid(&pod).to_string()).filter(|u| !u.is_empty()),
                    ..DeleteOptions::default()
                };
                let result = client
                    .delete("Pod", object::namespace(&pod), object::name(&pod), &options)
                    .await;
                (pod, result)
            });
        }
        let mut first_error = None;
        while let Some(joined) = deletes.join_next().await {
            let Ok((pod, result)) = joined else {
                continue;
            };
            let name = object::name(&pod);
            match result {
                Ok(_) => {
                    self.events.event(
                        rs,
                        "Normal",
                        EVENT_SUCCESSFUL_DELETE,
                        format!("Deleted pod: {name}"),
                    );
                }
                // Gone already, or replaced by another pod of the same name: either way the
                // pod meant is gone, and its deletion will not be observed as expected.
                Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {
                    self.expectations.deletion_observed(key, object::uid(&pod));
                }
                Err(source) => {
                    self.expectations.deletion_observed(key, object::uid(&pod));
                    self.events.event(
                        rs,
                        "Warning",
                        EVENT_FAILED_DELETE,
                        format!("Error deleting: {source}"),
                    );
                    first_error.get_or_insert(Error::Pod {
                        rs: key.to_string(),
                        action: "deleting",
                        pod: name.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Creates `n` pods in slow-start batches (1, 2, 4...), stopping after the first batch with
    /// a failure; answers how many were created and the first error.
    async fn create_pods(&self, rs: &Arc<Value>, n: usize) -> (usize, Result<(), ApiError>) {
        let pod = Arc::new(new_pod(rs));
        let mut created = 0;
        let mut batch = 1usize;
        while created < n {
            let size = batch.min(n - created);
            let mut creates = JoinSet::new();
            for _ in 0..size {
                let (client, pod) = (self.client.clone(), Arc::clone(&pod));
                creates.spawn(async move { client.create(&pod).await });
            }
            let mut first_error = None;
            while let Some(joined) = creates.join_next().await {
                match joined {
                    Ok(Ok(new)) => {
                        created += 1;
                        self.events.event(
                            rs,
                            "Normal",
                            EVENT_SUCCESSFUL_CREATE,
                            format!("Created pod: {}", object::name(&new)),
                        );
                    }
                    Ok(Err(e)) => {
                        self.events.event(
                            rs,
                            "Warning",
                            EVENT_FAILED_CREATE,
                            format!("Error creating: {e}"),
                        );
                        first_error.get_or_insert(e);
                    }
                    Err(e) => {
                        first_error.get_or_insert(ApiError::internal(e));
                    }
                }
            }
            if let Some(e) = first_error {
                return (created, Err(e));
            }
            batch = batch.saturating_mul(2);
        }
        (created, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS_UID: &str = "rs-uid";

    fn t(offset_secs: i64) -> Timestamp {
        "2026-01-01T00:10:00Z"
            .parse::<Timestamp>()
            .expect("a test time")
            .checked_add(SignedDuration::from_secs(offset_secs))
            .expect("in range")
    }

    fn ts(offset_secs: i64) -> String {
        t(offset_secs).to_string()
    }

    fn rs(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": RS_UID,
                         "generation": 4, "resourceVersion": "10"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"},
                                 "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        })
    }

    /// A pod of the ReplicaSet, created `age` seconds ago.
    fn pod(name: &str, age: i64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "resourceVersion": "5",
                "creationTimestamp": ts(-age),
                "labels": {"app": "web", "tier": "front"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                     "uid": RS_UID, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"},
        })
    }

    fn orphan(mut p: Value) -> Value {
        p["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        p
    }

    fn owned_by(mut p: Value, uid: &str) -> Value {
        p["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
        p
    }

    fn on_node(mut p: Value, node: &str) -> Value {
        p["spec"]["nodeName"] = json!(node);
        p
    }

    fn phase(mut p: Value, phase: &str) -> Value {
        p["status"]["phase"] = json!(phase);
        p
    }

    /// Running and ready since `ready_for` seconds ago.
    fn ready(p: Value, ready_for: i64) -> Value {
        let mut p = phase(p, "Running");
        p["status"]["conditions"] = json!([
            {"type": "Ready", "status": "True", "lastTransitionTime": ts(-ready_for)},
        ]);
        p
    }

    fn restarts(mut p: Value, n: i64) -> Value {
        p["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": n}]);
        p
    }

    fn labels(mut p: Value, labels: Value) -> Value {
        p["metadata"]["labels"] = labels;
        p
    }

    fn arcs(pods: Vec<Value>) -> Vec<Arc<Value>> {
        pods.into_iter().map(Arc::new).collect()
    }

    fn names(pods: &[Arc<Value>]) -> Vec<String> {
        pods.iter().map(|p| object::name(p).to_string()).collect()
    }

    fn decide_now(rs: &Value, pods: Vec<Value>) -> Decision {
        decide(rs, &arcs(pods), &[], t(0)).expect("a decision")
    }

    #[test]
    fn creates_what_is_missing_and_deletes_what_is_too_many() {
        // (what, replicas, pods, creates, deletes)
        let cases: Vec<(&str, i64, Vec<Value>, usize, usize)> = vec![
            ("nothing yet", 3, vec![], 3, 0),
            ("one there", 3, vec![pod("a", 10)], 2, 0),
            ("exactly", 2, vec![pod("a", 10), pod("b", 10)], 0, 0),
            ("one too many", 1, vec![pod("a", 10), pod("b", 10)], 0, 1),
            ("scaled to zero", 0, vec![pod("a", 10), pod("b", 10)], 0, 2),
            ("burst-limited", 1200, vec![], BURST_REPLICAS, 0),
            (
                "finished and terminating pods do not count",
                3,
                vec![
                    phase(pod("a", 10), "Succeeded"),
                    phase(pod("b", 10), "Failed"),
                    {
                        let mut p = pod("c", 10);
                        p["metadata"]["deletionTimestamp"] = json!(ts(0));
                        p
                    },
                    pod("d", 10),
                ],
                2,
                0,
            ),
            (
                "pods of other controllers do not count",
                2,
                vec![owned_by(pod("a", 10), "other"), pod("b", 10)],
                1,
                0,
            ),
            (
                "pods of another namespace do not count",
                1,
                vec![{
                    let mut p = pod("a", 10);
                    p["metadata"]["namespace"] = json!("elsewhere");
                    p
                }],
                1,
                0,
            ),
        ];
        for (what, replicas, pods, creates, deletes) in cases {
            let d = decide_now(&rs(replicas), pods);
            assert_eq!(d.create, creates, "{what}: creates");
            assert_eq!(d.delete.len(), deletes, "{what}: deletes");
        }
    }

    #[test]
    fn matching_orphans_are_adopted_and_owned_pods_that_stopped_matching_released() {
        let pods = vec![
            orphan(pod("orphan-match", 10)),
            labels(orphan(pod("orphan-other", 10)), json!({"app": "db"})),
            labels(pod("owned-changed", 10), json!({"app": "db"})),
            owned_by(pod("someone-elses", 10), "other"),
            pod("owned", 10),
            phase(orphan(pod("orphan-finished", 10)), "Succeeded"),
        ];
        let d = decide_now(&rs(2), pods);
        assert_eq!(names(&d.adopt), ["orphan-match"]);
        assert_eq!(names(&d.release), ["owned-changed"]);
        assert_eq!(d.create, 0, "the adopted orphan counts");
        assert_eq!(d.status["replicas"], 2);
    }

    #[test]
    fn a_replica_set_being_deleted_only_reports_status() {
        let mut r = rs(5);
        r["metadata"]["deletionTimestamp"] = json!(ts(0));
        let pods = vec![
            orphan(pod("orphan", 10)),
            labels(pod("owned-changed", 10), json!({"app": "db"})),
            pod("owned", 10),
        ];
        let d = decide_now(&r, pods);
        assert_eq!(d.create, 0);
        assert!(d.delete.is_empty() && d.adopt.is_empty() && d.release.is_empty());
        assert_eq!(d.status["replicas"], 1);
        let mut r = rs(0);
        r["metadata"]["deletionTimestamp"] = json!(ts(0));
        assert!(decide_now(&r, vec![pod("a", 1)]).delete.is_empty());
    }

    #[test]
    fn an_unreadable_selector_is_an_error() {
        let mut r = rs(1);
        r["spec"]["selector"] = json!({"matchLabels": "app=web"});
        assert!(matches!(
            decide(&r, &[], &[], t(0)),
            Err(Error::Selector { .. })
        ));
        r["spec"]["selector"] = Value::Null;
        let d = decide(&r, &arcs(vec![pod("a", 1)]), &[], t(0)).expect("a null selector");
        assert_eq!(names(&d.release), ["a"], "a null selector matches nothing");
    }

    /// Scaling two pods down to one deletes `first`, whatever order they come in.
    #[test]
    fn the_surplus_is_deleted_in_kubernetes_order() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "unassigned before assigned",
                pod("first", 10),
                on_node(pod("second", 10), "n1"),
            ),
            (
                "Pending before Unknown",
                on_node(pod("first", 10), "n1"),
                phase(on_node(pod("second", 10), "n1"), "Unknown"),
            ),
            (
                "Unknown before Running",
                phase(on_node(pod("first", 10), "n1"), "Unknown"),
                phase(on_node(pod("second", 10), "n1"), "Running"),
            ),
            (
                "not ready before ready",
                phase(on_node(pod("first", 10), "n1"), "Running"),
                ready(on_node(pod("second", 10), "n1"), 5),
            ),
            (
                "lower deletion cost first",
                {
                    let mut p = ready(on_node(pod("first", 10), "n1"), 5);
                    p["metadata"]["annotations"] = json!({POD_DELETION_COST: "-5"});
                    p
                },
                ready(on_node(pod("second", 10), "n1"), 5),
            ),
            (
                "ready for a shorter time first",
                ready(on_node(pod("first", 1000), "n1"), 10),
                ready(on_node(pod("second", 1000), "n1"), 900),
            ),
            (
                "higher restart count first",
                restarts(ready(on_node(pod("first", 1000), "n1"), 100), 3),
                restarts(ready(on_node(pod("second", 1000), "n1"), 100), 1),
            ),
            (
                "newer first",
                on_node(pod("first", 10), "n1"),
                on_node(pod("second", 5000), "n1"),
            ),
        ];
        for (what, a, b) in cases {
            for pods in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
                let d = decide_now(&rs(1), pods);
                assert_eq!(names(&d.delete), ["first"], "{what}");
            }
        }
    }

    #[test]
    fn pods_doubled_up_on_a_node_go_first_and_ages_compare_on_a_log_scale() {
        // The related pods (the siblings' under the same Deployment) crowd node n1.
        let a = ready(on_node(pod("crowded", 10), "n1"), 5);
        let b = ready(on_node(pod("alone", 10), "n2"), 5);
        let related = arcs(vec![
            a.clone(),
            b.clone(),
            on_node(pod("sibling", 10), "n1"),
        ]);
        for pods in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let d = decide(&rs(1), &arcs(pods), &related, t(0)).expect("a decision");
            assert_eq!(names(&d.delete), ["crowded"]);
        }
        // 100 s and 110 s old are the same log2 bucket: the restart count decides, not the age
        // (nor the uid, which would pick "a-young").
        let young = on_node(pod("a-young", 100), "n1");
        let old = restarts(on_node(pod("b-old", 110), "n1"), 2);
        let d = decide_now(&rs(1), vec![young.clone(), old.clone()]);
        assert_eq!(names(&d.delete), ["b-old"]);
        // Without the restarts, the same bucket falls to the uid.
        let d = decide_now(&rs(1), vec![old.clone(), restarts(young, 2)]);
        assert_eq!(names(&d.delete), ["a-young"]);
    }

    #[test]
    fn deletion_order_ranks_a_whole_set() {
        let mut pods = arcs(vec![
            ready(on_node(pod("ready-long", 5000), "n1"), 4000),
            on_node(pod("pending-assigned", 10), "n1"),
            pod("unassigned", 10),
            ready(on_node(pod("ready-short", 5000), "n1"), 10),
            phase(on_node(pod("running-not-ready", 10), "n1"), "Running"),
        ]);
        deletion_order(&mut pods, &[], t(0));
        assert_eq!(
            names(&pods),
            [
                "unassigned",
                "pending-assigned",
                "running-not-ready",
                "ready-short",
                "ready-long"
            ]
        );
    }

    #[test]
    fn status_counts_replicas_labels_readiness_and_availability() {
        let mut r = rs(4);
        r["spec"]["minReadySeconds"] = json!(30);
        r["status"] = json!({"replicas": 9, "conditions": [{"type": "Other", "status": "True"}]});
        let pods = vec![
            ready(pod("available", 10), 60),
            ready(pod("ready-not-yet-available", 10), 20),
            labels(pod("partly-labeled", 10), json!({"app": "web"})),
            pod("pending", 10),
            phase(pod("done", 10), "Succeeded"),
        ];
        let d = decide_now(&r, pods);
        assert_eq!(
            d.status,
            json!({
                "replicas": 4,
                "fullyLabeledReplicas": 3,
                "readyReplicas": 2,
                "availableReplicas": 1,
                "observedGeneration": 4,
                "conditions": [{"type": "Other", "status": "True"}],
            })
        );
        assert!(d.status_changed(&r));
        assert_eq!(
            d.requeue_after,
            Some(Duration::from_secs(10) + AVAILABILITY_MARGIN),
            "synced again when the second pod becomes available"
        );

        // Without minReadySeconds every ready pod is available; zero counts are left out.
        let r = rs(1);
        let d = decide_now(&r, vec![ready(pod("a", 10), 1)]);
        assert_eq!(d.status["availableReplicas"], 1);
        assert_eq!(d.requeue_after, None);
        let d = decide_now(&r, vec![]);
        assert_eq!(d.status, json!({"replicas": 0, "observedGeneration": 4}));
        let mut settled = r.clone();
        settled["status"] = d.status.clone();
        assert!(!decide_now(&settled, vec![]).status_changed(&settled));
    }

    #[test]
    fn the_replica_failure_condition_comes_and_goes_with_failures() {
        let mut status = json!({"replicas": 1});
        set_replica_failure(&mut status, Some(("FailedCreate", "quota")), t(0));
        assert_eq!(status["conditions"][0]["type"], CONDITION_REPLICA_FAILURE);
        assert_eq!(status["conditions"][0]["reason"], "FailedCreate");
        assert_eq!(status["conditions"][0]["message"], "quota");
        let before = status.clone();
        set_replica_failure(&mut status, Some(("FailedCreate", "other")), t(5));
        assert_eq!(status, before, "kept as first written");
        set_replica_failure(&mut status, None, t(10));
        assert_eq!(status, json!({"replicas": 1}));
    }

    #[test]
    fn new_pods_come_from_the_template_with_a_controller_reference() {
        let p = new_pod(&rs(1));
        assert_eq!(
            p,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": "web-",
                    "namespace": "default",
                    "labels": {"app": "web", "tier": "front"},
                    "annotations": {"a": "b"},
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                        "uid": RS_UID, "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            })
        );
    }

    #[test]
    fn adoption_and_release_patch_owner_references_on_the_pods_version() {
        let r = rs(1);
        let mut p = orphan(pod("a", 1));
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "cm"}]);
        let patch = adopt_patch(&r, &p);
        assert_eq!(patch["metadata"]["resourceVersion"], "5");
        let refs = patch["metadata"]["ownerReferences"]
            .as_array()
            .expect("refs");
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1], owner_reference(&r));

        let patch = release_patch(&r, &pod("b", 1));
        assert_eq!(patch["metadata"]["ownerReferences"], Value::Null);
        let mut both = pod("c", 1);
        both["metadata"]["ownerReferences"]
            .as_array_mut()
            .expect("refs")
            .push(json!({"kind": "ConfigMap", "name": "x", "uid": "cm"}));
        let patch = release_patch(&r, &both);
        assert_eq!(
            patch["metadata"]["ownerReferences"],
            json!([{"kind": "ConfigMap", "name": "x", "uid": "cm"}])
        );
    }

    #[test]
    fn only_the_controller_reference_indexes_a_pod() {
        let p = pod("a", 1);
        assert_eq!(index_by_controller_uid(&p), vec![RS_UID.to_string()]);
        assert!(index_orphans_by_namespace(&p).is_empty());
        let mut o = orphan(pod("b", 1));
        o["metadata"]["ownerReferences"] = json!([{"kind": "X", "name": "x", "uid": "u"}]);
        assert!(index_by_controller_uid(&o).is_empty());
        assert_eq!(index_orphans_by_namespace(&o), vec!["default".to_string()]);
    }
}

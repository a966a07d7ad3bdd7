//! The DaemonSet controller: Kubernetes' `daemonset-controller`, run by the Raft leader. One pod
//! of the DaemonSet on every eligible node.
//!
//! Every decision is the pure function [`decide`]: the DaemonSet, the nodes, the pods of its
//! namespace and "now" in, a [`DaemonSetPlan`] out. It follows Kubernetes' `syncDaemonSet`:
//!
//! - **Eligibility** ([`NodeRules`], Kubernetes' `NodeShouldRunDaemonPod`): the pod the
//!   DaemonSet would put on the node, with the tolerations Kubernetes adds to every daemon pod
//!   ([`add_daemon_tolerations`]: `not-ready` and `unreachable` `NoExecute` for ever,
//!   `disk-pressure`, `memory-pressure`, `pid-pressure`, `unschedulable` `NoSchedule`, and
//!   `network-unavailable` for `hostNetwork` pods), must match the node's labels (nodeSelector
//!   and required node affinity) and tolerate its `NoSchedule` / `NoExecute` taints. The
//!   matching is corral-scheduler's ([`PodInfo::matches_node`], [`PodInfo::tolerates`]), the
//!   same rules the scheduler applies. A node whose only untolerated taints are `NoSchedule`
//!   keeps a pod it already has but gets no new one. As in Kubernetes, readiness and free
//!   resources are not the DaemonSet's business (a cordoned node still gets its pod).
//! - **Placement**: a node that should run the pod and has none gets one; pods on a node that
//!   must not run it, failed or succeeded pods, and all but the oldest of several pods on a node
//!   are deleted. Pods are created with `spec.nodeName` set: the controller itself decided the
//!   node, so they do not go through the scheduler (Kubernetes before 1.12 did the same; since,
//!   it sets a `matchFields metadata.name` node affinity and lets the scheduler bind). Pods of
//!   a node that no longer exists are deleted with a grace period of 0 (no agent will finish
//!   them; Kubernetes leaves this to its pod garbage collector).
//! - **Pods** are made from the template with the controller's owner reference, the
//!   `controller-revision-hash` label (the template's hash: FNV-32a of its canonical JSON, as
//!   Deployments hash theirs; Corral keeps no ControllerRevision objects) and the
//!   `pod-template-generation` label. A pod is up to date when either label matches.
//! - **Updates**: `RollingUpdate` replaces old pods while no more than `maxUnavailable`
//!   (default 1; a percentage of the nodes that should run the pod, rounded up) are
//!   unavailable; with `maxSurge` the new pod starts beside the old one, which goes once the
//!   new one is available. `OnDelete` replaces a pod only when someone deletes it. The update
//!   step runs only on a pass where placement had nothing to do.
//! - **Status**: `desiredNumberScheduled`, `currentNumberScheduled`, `numberReady`,
//!   `numberAvailable` (ready for `minReadySeconds`), `numberUnavailable`,
//!   `updatedNumberScheduled`, `numberMisscheduled`, `observedGeneration`.
//!
//! [`run`] feeds [`decide`] from informers (DaemonSets, Nodes, Pods) and carries the plan out,
//! with `SuccessfulCreate` / `SuccessfulDelete` / `FailedDaemonPod` events on the DaemonSet.
//! After creating or deleting pods it waits for its cache to show them before placing pods
//! for that DaemonSet again (Kubernetes' expectations); failed pods are replaced with a
//! back-off per node.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use corral_api::ApiError;
use corral_api::object;
use corral_api::selector::{LabelSelector, from_label_selector_json};
use corral_client::events::EventRecorder;
use corral_client::informer::{Informer, index_by_namespace, index_by_owner_uid};
use corral_client::{Change, Client, DeleteOptions};
use corral_scheduler::{NodeInfo, PodInfo};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::deployment::{
    Claim, InvalidObject, Queue, backoff, claim, compute_hash, controller_ref, instant_at, int_at,
    key_of, object_at, scaled_value, sleep_until, split_key, str_at, with_owner, without_owner,
};
use crate::node_lifecycle::parse_time;

/// The label naming the template revision a daemon pod was made from.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The label naming the DaemonSet generation a daemon pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Kubernetes' record of the template's generation on the DaemonSet, when present.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// Event reasons, as Kubernetes words them.
pub const EVENT_SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
pub const EVENT_FAILED_CREATE: &str = "FailedCreate";
pub const EVENT_SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
pub const EVENT_FAILED_DELETE: &str = "FailedDelete";
pub const EVENT_FAILED_DAEMON_POD: &str = "FailedDaemonPod";
pub const EVENT_SELECTING_ALL: &str = "SelectingAll";

const COMPONENT: &str = "daemonset-controller";
const NAMESPACE_INDEX: &str = "namespace";
const OWNER_INDEX: &str = "owner";

/// The back-off of a node whose daemon pod keeps failing (Kubernetes: 1 s doubling to 15 min).
const FAILED_POD_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------------
// The daemon pod
// ---------------------------------------------------------------------------------------------

fn toleration_matches(a: &Value, b: &Value) -> bool {
    ["key", "operator", "value", "effect"]
        .iter()
        .all(|f| str_at(a, &format!("/{f}")) == str_at(b, &format!("/{f}")))
}

/// Kubernetes' `AddOrUpdateTolerationInPodSpec`: a toleration with the same key, operator,
/// value and effect is replaced; otherwise it is added.
fn add_or_update_toleration(spec: &mut Map<String, Value>, toleration: Value) {
    let list = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|t| toleration_matches(t, &toleration)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// Kubernetes' `AddOrUpdateDaemonPodTolerations`: a daemon pod stays on a node that is not
/// ready or unreachable (no `tolerationSeconds`), and goes on nodes under disk, memory or pid
/// pressure and on cordoned ones; a `hostNetwork` pod also on nodes whose network is not set up.
pub fn add_daemon_tolerations(spec: &mut Map<String, Value>) {
    let exists =
        |key: &str, effect: &str| json!({"key": key, "operator": "Exists", "effect": effect});
    add_or_update_toleration(spec, exists(TAINT_NOT_READY, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_UNREACHABLE, "NoExecute"));
    for key in [
        TAINT_DISK_PRESSURE,
        TAINT_MEMORY_PRESSURE,
        TAINT_PID_PRESSURE,
        TAINT_UNSCHEDULABLE,
    ] {
        add_or_update_toleration(spec, exists(key, "NoSchedule"));
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        add_or_update_toleration(spec, exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

/// The generation the DaemonSet's template is at: Kubernetes' template-generation annotation
/// when present, else `metadata.generation`.
pub fn template_generation(ds: &Value) -> i64 {
    ds.pointer("/metadata/annotations")
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| object::generation(ds))
}

/// The pod spec the DaemonSet puts on `node`: the template's, with the daemon tolerations and
/// `nodeName`.
fn daemon_pod_spec(ds: &Value, node: &str) -> Value {
    let mut spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let map = object_at(&mut spec, &[]);
    add_daemon_tolerations(map);
    if !node.is_empty() {
        map.insert("nodeName".into(), json!(node));
    }
    spec
}

/// The pod to create on `node` (Kubernetes' `CreatePodTemplate` and `GetPodFromTemplate`):
/// named `<daemonset>-<random>`, the template's labels with `controller-revision-hash` and
/// `pod-template-generation`, its annotations and finalizers, the DaemonSet as controller, and
/// the daemon pod spec bound to the node.
pub fn new_pod(ds: &Value, node: &str, hash: &str, generation: i64) -> Value {
    let template_meta = ds
        .pointer("/spec/template/metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut labels = template_meta
        .get("labels")
        .filter(|l| l.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    object_at(&mut labels, &[]).insert(CONTROLLER_REVISION_HASH_LABEL.into(), json!(hash));
    object_at(&mut labels, &[]).insert(
        TEMPLATE_GENERATION_LABEL.into(),
        json!(generation.to_string()),
    );
    let mut meta = json!({
        "generateName": format!("{}-", object::name(ds)),
        "namespace": object::namespace(ds),
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": object::name(ds),
            "uid": object::uid(ds),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    for field in ["annotations", "finalizers"] {
        if let Some(v) = template_meta.get(field).filter(|v| !v.is_null()) {
            meta[field] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": daemon_pod_spec(ds, node),
    })
}

// ---------------------------------------------------------------------------------------------
// Node eligibility
// ---------------------------------------------------------------------------------------------

/// Whether a DaemonSet's pod belongs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    /// A pod should be there (and is made if missing).
    pub should_run: bool,
    /// A pod already there may stay (its untolerated taints, if any, are only `NoSchedule`).
    pub should_continue_running: bool,
}

const NOT_ELIGIBLE: Eligibility = Eligibility {
    should_run: false,
    should_continue_running: false,
};

/// A DaemonSet's placement rules, read once: its daemon pod as the scheduler reads pods.
#[derive(Debug, Clone)]
pub struct NodeRules {
    pod: PodInfo,
    /// `spec.template.spec.nodeName`, when the template pins a node.
    pinned: String,
}

impl NodeRules {
    pub fn from_daemon_set(ds: &Value) -> Result<Self, InvalidObject> {
        let pod = json!({
            "metadata": {"name": object::name(ds), "namespace": object::namespace(ds)},
            "spec": daemon_pod_spec(ds, ""),
        });
        let pod = PodInfo::from_pod(&pod).map_err(|e| InvalidObject {
            kind: "DaemonSet",
            key: key_of(ds),
            why: format!("spec.template: {e}"),
        })?;
        Ok(Self {
            pod,
            pinned: str_at(ds, "/spec/template/spec/nodeName").to_string(),
        })
    }

    /// Kubernetes' `NodeShouldRunDaemonPod`.
    pub fn check(&self, node: &Value) -> Eligibility {
        let name = object::name(node);
        if !self.pinned.is_empty() && self.pinned != name {
            return NOT_ELIGIBLE;
        }
        let (info, _problems) = NodeInfo::from_node(node);
        if !self.pod.matches_node(name, info.labels()) {
            return NOT_ELIGIBLE;
        }
        let mut untolerated = info
            .taints()
            .iter()
            .filter(|t| t.blocks_scheduling() && !self.pod.tolerates(t))
            .peekable();
        if untolerated.peek().is_none() {
            return Eligibility {
                should_run: true,
                should_continue_running: true,
            };
        }
        Eligibility {
            should_run: false,
            should_continue_running: !untolerated.any(|t| t.effect == "NoExecute"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pods as the controller reads them
// ---------------------------------------------------------------------------------------------

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn deleting(pod: &Value) -> bool {
    object::deletion_timestamp(pod).is_some()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
}

/// Kubernetes' `IsPodReady`.
pub fn is_pod_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| str_at(c, "/status") == "True")
}

/// When a ready pod counts as available: its `Ready` transition plus `min_ready_seconds`
/// (`None`: not ready, or ready without a time while `min_ready_seconds` is not 0).
fn available_from(pod: &Value, min_ready_seconds: i64) -> Option<Timestamp> {
    let c = ready_condition(pod).filter(|c| str_at(c, "/status") == "True")?;
    if min_ready_seconds <= 0 {
        return Some(Timestamp::MIN);
    }
    parse_time(c.get("lastTransitionTime"))?
        .checked_add(SignedDuration::from_secs(min_ready_seconds))
        .ok()
}

/// Kubernetes' `IsPodAvailable`: ready, for longer than `min_ready_seconds`.
pub fn is_pod_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> bool {
    available_from(pod, min_ready_seconds).is_some_and(|t| min_ready_seconds <= 0 || t < now)
}

/// Kubernetes' `IsPodUpdated`: made from the current template, by hash or by generation.
pub fn is_pod_updated(pod: &Value, hash: &str, generation: i64) -> bool {
    let labels = object::labels(pod);
    let generation_matches = labels.get(TEMPLATE_GENERATION_LABEL) == Some(&generation.to_string());
    let hash_matches = !hash.is_empty()
        && labels
            .get(CONTROLLER_REVISION_HASH_LABEL)
            .map(String::as_str)
            == Some(hash);
    hash_matches || generation_matches
}

/// The node a daemon pod is for: its `spec.nodeName`, or the node its `matchFields`
/// `metadata.name` affinity names (pods made the way Kubernetes makes them).
pub fn target_node(pod: &Value) -> Option<String> {
    let node = str_at(pod, "/spec/nodeName");
    if !node.is_empty() {
        return Some(node.to_string());
    }
    pod.pointer(
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    )
    .and_then(Value::as_array)?
    .iter()
    .flat_map(|term| term.get("matchFields").and_then(Value::as_array).into_iter().flatten())
    .find(|f| str_at(f, "/key") == "metadata.name" && str_at(f, "/operator") == "In")
    .and_then(|f| f.pointer("/values/0"))
    .and_then(Value::as_str)
    .map(str::to_string)
}

/// Kubernetes' `podByCreationTimestampAndPhase`: bound pods first, then oldest, then by name.
fn by_creation_and_phase(a: &Value, b: &Value) -> Ordering {
    let bound = |p: &Value| !str_at(p, "/spec/nodeName").is_empty();
    let created = |p: &Value| parse_time(p.pointer("/metadata/creationTimestamp"));
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| object::name(a).cmp(object::name(b)))
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// `apps/v1` `DaemonSetStatus` (the counts; conditions and collision count are kept as they are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetStatus {
    pub current_number_scheduled: i64,
    pub number_misscheduled: i64,
    pub desired_number_scheduled: i64,
    pub number_ready: i64,
    pub observed_generation: i64,
    pub updated_number_scheduled: i64,
    pub number_available: i64,
    pub number_unavailable: i64,
    pub collision_count: Option<i64>,
    pub conditions: Option<Value>,
}

impl DaemonSetStatus {
    pub fn from_json(status: Option<&Value>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        let int = |f: &str| s.get(f).and_then(Value::as_i64).unwrap_or(0);
        Self {
            current_number_scheduled: int("currentNumberScheduled"),
            number_misscheduled: int("numberMisscheduled"),
            desired_number_scheduled: int("desiredNumberScheduled"),
            number_ready: int("numberReady"),
            observed_generation: int("observedGeneration"),
            updated_number_scheduled: int("updatedNumberScheduled"),
            number_available: int("numberAvailable"),
            number_unavailable: int("numberUnavailable"),
            collision_count: s.get("collisionCount").and_then(Value::as_i64),
            conditions: s.get("conditions").filter(|c| !c.is_null()).cloned(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut s = json!({
            "currentNumberScheduled": self.current_number_scheduled,
            "numberMisscheduled": self.number_misscheduled,
            "desiredNumberScheduled": self.desired_number_scheduled,
            "numberReady": self.number_ready,
            "observedGeneration": self.observed_generation,
            "updatedNumberScheduled": self.updated_number_scheduled,
            "numberAvailable": self.number_available,
            "numberUnavailable": self.number_unavailable,
        });
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

/// Why a daemon pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// It failed: it is replaced (with a back-off per node).
    Failed,
    /// It ran to completion: it is replaced.
    Succeeded,
    /// The node has more than one.
    Excess,
    /// The node must no longer run it (labels, affinity, an untolerated `NoExecute` taint).
    NotEligible,
    /// Its node no longer exists.
    NodeGone,
    /// A rolling update replaces it.
    Update,
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDeletion {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub reason: DeleteReason,
    /// `Some(0)` for pods of a node that is gone (nobody else will finish them).
    pub grace_period_seconds: Option<i64>,
}

/// What one sync of a DaemonSet does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetPlan {
    /// Orphan pods the DaemonSet adopts (with its owner reference added).
    pub adopt: Vec<Value>,
    /// Owned pods that stopped matching its selector (with the reference removed).
    pub release: Vec<Value>,
    /// Nodes that get a new pod, in order.
    pub create_on: Vec<String>,
    pub delete: Vec<PodDeletion>,
    /// The status as of the pods before this plan.
    pub status: DaemonSetStatus,
    /// The template's hash (the `controller-revision-hash` of new pods).
    pub hash: String,
    /// The template's generation (the `pod-template-generation` of new pods).
    pub template_generation: i64,
    /// Look again at this time (a ready pod becomes available after `minReadySeconds`).
    pub requeue_at: Option<Timestamp>,
    /// Warnings to record on the DaemonSet: (reason, message).
    pub warnings: Vec<(String, String)>,
}

impl DaemonSetPlan {
    /// Whether placement has pods to create or delete.
    pub fn changes_pods(&self) -> bool {
        !self.create_on.is_empty() || !self.delete.is_empty()
    }
}

/// How a DaemonSet replaces its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    OnDelete,
    Rolling {
        max_surge: i64,
        max_unavailable: i64,
    },
}

struct Ds<'a> {
    obj: &'a Value,
    selector: LabelSelector,
    min_ready_seconds: i64,
    hash: String,
    generation: i64,
}

impl Ds<'_> {
    fn deletion(&self, pod: &Value, node: &str, reason: DeleteReason) -> PodDeletion {
        PodDeletion {
            namespace: object::namespace(pod).to_string(),
            name: object::name(pod).to_string(),
            uid: object::uid(pod).to_string(),
            node: node.to_string(),
            reason,
            grace_period_seconds: (reason == DeleteReason::NodeGone).then_some(0),
        }
    }

    fn available(&self, pod: &Value, now: Timestamp) -> bool {
        is_pod_available(pod, self.min_ready_seconds, now)
    }

    fn updated(&self, pod: &Value) -> bool {
        is_pod_updated(pod, &self.hash, self.generation)
    }

    /// The update strategy, with `maxSurge` / `maxUnavailable` scaled against `desired` nodes
    /// (both rounded up; both 0 makes unavailable 1, as Kubernetes does).
    fn update(&self, desired: i64) -> Update {
        match str_at(self.obj, "/spec/updateStrategy/type") {
            "OnDelete" => Update::OnDelete,
            _ => {
                let rolling = self.obj.pointer("/spec/updateStrategy/rollingUpdate");
                let field = |f: &str| rolling.and_then(|r| r.get(f));
                let max_surge = scaled_value(field("maxSurge"), desired, true).unwrap_or(0);
                let mut max_unavailable = match field("maxUnavailable") {
                    None | Some(Value::Null) => 1,
                    v => scaled_value(v, desired, true).unwrap_or(1),
                };
                if desired > 0 && max_surge == 0 && max_unavailable == 0 {
                    max_unavailable = 1;
                }
                Update::Rolling {
                    max_surge,
                    max_unavailable,
                }
            }
        }
    }

    /// Kubernetes' `AllowsSurge`: a `maxSurge` that is not 0 even for one node.
    fn allows_surge(&self) -> bool {
        matches!(self.update(1), Update::Rolling { max_surge, .. } if max_surge != 0)
    }

    /// Kubernetes' `findUpdatedPodsOnNode`: the node's one new and one old pod (not being
    /// deleted); `None` when it has two of either.
    fn updated_and_old<'p>(
        &self,
        pods: &[&'p Value],
    ) -> Option<(Option<&'p Value>, Option<&'p Value>)> {
        let (mut new, mut old) = (None, None);
        for &pod in pods {
            if deleting(pod) {
                continue;
            }
            let slot = if self.updated(pod) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(pod);
        }
        Some((new, old))
    }
}

/// Decides one sync of `ds` (Kubernetes' `syncDaemonSet`: `manage`, then, when placement has
/// nothing to do, `rollingUpdate`; and the status), given every node, the pods of its namespace
/// and the time.
pub fn decide(
    ds: &Value,
    nodes: &[Arc<Value>],
    pods: &[Arc<Value>],
    now: Timestamp,
) -> Result<DaemonSetPlan, InvalidObject> {
    let invalid = |why: String| InvalidObject {
        kind: "DaemonSet",
        key: key_of(ds),
        why,
    };
    let selector = from_label_selector_json(ds.pointer("/spec/selector").unwrap_or(&Value::Null))
        .map_err(|e| invalid(format!("spec.selector: {e}")))?;
    let stored = DaemonSetStatus::from_json(ds.get("status"));
    let hash = compute_hash(
        ds.pointer("/spec/template").unwrap_or(&Value::Null),
        stored.collision_count,
    );
    let d = Ds {
        obj: ds,
        selector,
        min_ready_seconds: int_at(ds, "/spec/minReadySeconds").unwrap_or(0),
        generation: template_generation(ds),
        hash,
    };
    let mut plan = DaemonSetPlan {
        hash: d.hash.clone(),
        template_generation: d.generation,
        status: stored.clone(),
        ..DaemonSetPlan::default()
    };
    if d.selector.is_empty() || d.selector.is_nothing() {
        plan.warnings.push((
            EVENT_SELECTING_ALL.into(),
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        ));
        return Ok(plan);
    }
    if deleting(ds) {
        return Ok(plan);
    }
    let rules = NodeRules::from_daemon_set(ds)?;

    // Claim pods, and file them by node.
    let uid = object::uid(ds);
    let mut adopted = Vec::new();
    let mut by_node: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for pod in pods {
        if object::namespace(pod) != object::namespace(ds) {
            continue;
        }
        let pod: &Value = match claim(uid, false, &d.selector, pod) {
            Claim::Owned => pod,
            Claim::Adopt => {
                adopted.push(with_owner(
                    pod,
                    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": object::name(ds),
                           "uid": uid, "controller": true, "blockOwnerDeletion": true}),
                ));
                pod
            }
            Claim::Release => {
                plan.release.push(without_owner(pod, uid));
                continue;
            }
            Claim::Ignore => continue,
        };
        if is_terminal(pod) && deleting(pod) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    plan.adopt = adopted;
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| by_creation_and_phase(a, b));
    }

    let mut nodes: Vec<&Value> = nodes.iter().map(|n| &**n).collect();
    nodes.sort_by(|a, b| object::name(a).cmp(object::name(b)));
    let eligibility: BTreeMap<&str, Eligibility> = nodes
        .iter()
        .map(|n| (object::name(n), rules.check(n)))
        .collect();

    plan.status = status(&d, &stored, &nodes, &eligibility, &by_node, now);
    plan.requeue_at = next_availability(&d, &by_node, now);

    // manage: pods where they belong.
    let surge = d.allows_surge();
    for node in &nodes {
        let name = object::name(node);
        let e = eligibility.get(name).copied().unwrap_or(NOT_ELIGIBLE);
        match by_node.get(name) {
            None if e.should_run => plan.create_on.push(name.to_string()),
            None => {}
            Some(pods) if e.should_continue_running => {
                manage_node(&d, name, pods, surge, now, &mut plan.delete);
            }
            Some(pods) => {
                for pod in pods.iter().filter(|p| !deleting(p)) {
                    plan.delete
                        .push(d.deletion(pod, name, DeleteReason::NotEligible));
                }
            }
        }
    }
    for (name, pods) in &by_node {
        if !eligibility.contains_key(name.as_str()) {
            for pod in pods {
                plan.delete
                    .push(d.deletion(pod, name, DeleteReason::NodeGone));
            }
        }
    }
    if plan.changes_pods() {
        return Ok(plan);
    }

    // rollingUpdate.
    if let Update::Rolling {
        max_surge,
        max_unavailable,
    } = d.update(plan.status.desired_number_scheduled)
    {
        let on_nodes: Vec<(&str, &Vec<&Value>)> = by_node
            .iter()
            .filter(|(n, _)| eligibility.contains_key(n.as_str()))
            .map(|(n, p)| (n.as_str(), p))
            .collect();
        if max_surge == 0 {
            plan.delete = rolling_update(&d, &on_nodes, max_unavailable, now);
        } else {
            let (create, delete) = surge_update(&d, &on_nodes, &eligibility, max_surge, now);
            plan.create_on = create;
            plan.delete = delete;
        }
    }
    Ok(plan)
}

/// Kubernetes' `podsShouldBeOnNode` for a node that may keep its pods: finished pods go, and
/// all but the oldest running one (with surge: the oldest new and the oldest old one, the old
/// one going once it is not ready or the new one is available).
fn manage_node(
    d: &Ds,
    node: &str,
    pods: &[&Value],
    surge: bool,
    now: Timestamp,
    delete: &mut Vec<PodDeletion>,
) {
    let mut running = Vec::new();
    for &pod in pods {
        if deleting(pod) {
            continue;
        }
        match phase(pod) {
            "Failed" => delete.push(d.deletion(pod, node, DeleteReason::Failed)),
            "Succeeded" => delete.push(d.deletion(pod, node, DeleteReason::Succeeded)),
            _ => running.push(pod),
        }
    }
    // `pods` are sorted by creation and phase already.
    if !surge {
        for pod in running.iter().skip(1) {
            delete.push(d.deletion(pod, node, DeleteReason::Excess));
        }
        return;
    }
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in running {
        let slot = if str_at(
            pod,
            &format!("/metadata/labels/{CONTROLLER_REVISION_HASH_LABEL}"),
        ) == d.hash
        {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            delete.push(d.deletion(pod, node, DeleteReason::Excess));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_pod_ready(old) || d.available(new, now))
    {
        delete.push(d.deletion(old, node, DeleteReason::Update));
    }
}

/// Kubernetes' `rollingUpdate` without surge: old pods are deleted (the next pass makes their
/// replacements) while at most `max_unavailable` nodes lack an available up-to-date pod; old
/// pods that are not available are replaced regardless.
fn rolling_update(
    d: &Ds,
    nodes: &[(&str, &Vec<&Value>)],
    max_unavailable: i64,
    now: Timestamp,
) -> Vec<PodDeletion> {
    let mut unavailable = 0;
    let mut replacements = Vec::new();
    let mut candidates = Vec::new();
    for &(node, pods) in nodes {
        let Some((new, old)) = d.updated_and_old(pods) else {
            // Placement will sort out the excess pods; count the node as unavailable.
            unavailable += 1;
            continue;
        };
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !d.available(new, now) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !d.available(old, now) {
                    replacements.push(d.deletion(old, node, DeleteReason::Update));
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(d.deletion(old, node, DeleteReason::Update));
                }
            }
        }
    }
    let remaining = (max_unavailable - unavailable).max(0) as usize;
    replacements.extend(candidates.into_iter().take(remaining));
    replacements
}

/// Kubernetes' `rollingUpdate` with surge: a new pod starts beside an old one (at once where
/// the old one is not available, else on at most `max_surge` nodes at a time), and the old
/// one goes when the new one is available.
fn surge_update(
    d: &Ds,
    nodes: &[(&str, &Vec<&Value>)],
    eligibility: &BTreeMap<&str, Eligibility>,
    max_surge: i64,
    now: Timestamp,
) -> (Vec<String>, Vec<PodDeletion>) {
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    let mut delete = Vec::new();
    for &(node, pods) in nodes {
        let Some((new, old)) = d.updated_and_old(pods) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !d.available(old, now) {
                    let should_run = eligibility.get(node).is_some_and(|e| e.should_run);
                    if should_run {
                        allowed.push(node.to_string());
                    } else {
                        delete.push(d.deletion(old, node, DeleteReason::Update));
                    }
                } else if surging < max_surge {
                    candidates.push(node.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if d.available(new, now) {
                    delete.push(d.deletion(old, node, DeleteReason::Update));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let remaining = (max_surge - surging).max(0) as usize;
    allowed.extend(candidates.into_iter().take(remaining));
    (allowed, delete)
}

/// Kubernetes' `updateDaemonSetStatus` counts, judged on the oldest pod of each node.
fn status(
    d: &Ds,
    stored: &DaemonSetStatus,
    nodes: &[&Value],
    eligibility: &BTreeMap<&str, Eligibility>,
    by_node: &BTreeMap<String, Vec<&Value>>,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut s = DaemonSetStatus {
        observed_generation: object::generation(d.obj),
        collision_count: stored.collision_count,
        conditions: stored.conditions.clone(),
        ..DaemonSetStatus::default()
    };
    for node in nodes {
        let name = object::name(node);
        let should_run = eligibility.get(name).is_some_and(|e| e.should_run);
        let oldest = by_node.get(name).and_then(|pods| pods.first().copied());
        if !should_run {
            if oldest.is_some() {
                s.number_misscheduled += 1;
            }
            continue;
        }
        s.desired_number_scheduled += 1;
        let Some(pod) = oldest else {
            continue;
        };
        s.current_number_scheduled += 1;
        if is_pod_ready(pod) {
            s.number_ready += 1;
            if d.available(pod, now) {
                s.number_available += 1;
            }
        }
        if d.updated(pod) {
            s.updated_number_scheduled += 1;
        }
    }
    s.number_unavailable = s.desired_number_scheduled - s.number_available;
    s
}

/// The earliest time a ready pod becomes available (`minReadySeconds`), if one is waiting.
fn next_availability(
    d: &Ds,
    by_node: &BTreeMap<String, Vec<&Value>>,
    now: Timestamp,
) -> Option<Timestamp> {
    if d.min_ready_seconds <= 0 {
        return None;
    }
    by_node
        .values()
        .flatten()
        .filter_map(|p| available_from(p, d.min_ready_seconds))
        .filter(|t| *t >= now)
        .min()
        .map(|t| t.checked_add(SignedDuration::from_secs(1)).unwrap_or(t))
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Settings of the DaemonSet controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetOptions {
    /// How often every DaemonSet is synced even when nothing changed (default 30 s).
    pub resync_period: Duration,
    /// How long the controller waits for its cache to show the pods it created or deleted
    /// before it places pods for that DaemonSet again anyway (default 30 s).
    pub expectation_timeout: Duration,
}

impl Default for DaemonSetOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(30),
            expectation_timeout: Duration::from_secs(30),
        }
    }
}

/// Pods the controller created or deleted and waits to see so in its cache.
#[derive(Debug)]
struct Expectations {
    /// `(namespace, name)` of pods created.
    created: Vec<(String, String)>,
    /// `(namespace, name, uid)` of pods deleted.
    deleted: Vec<(String, String, String)>,
    since: tokio::time::Instant,
}

/// Runs the DaemonSet controller until `cancel` fires.
pub async fn run(client: Client, opts: DaemonSetOptions, cancel: CancellationToken) {
    let daemon_sets = Informer::builder(client.clone(), "DaemonSet").start(cancel.clone());
    let nodes = Informer::builder(client.clone(), "Node").start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .index(OWNER_INDEX, index_by_owner_uid)
        .start(cancel.clone());
    let mut ds_changes = daemon_sets.subscribe();
    let mut node_changes = nodes.subscribe();
    let mut pod_changes = pods.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            daemon_sets.wait_synced().await;
            nodes.wait_synced().await;
            pods.wait_synced().await;
        } => {}
    }
    tracing::info!("daemonset controller: caches synced");
    let mut controller = Controller {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        daemon_sets,
        nodes,
        pods,
        opts: opts.clone(),
        expectations: HashMap::new(),
        failures: HashMap::new(),
        failed_pod_backoff: HashMap::new(),
    };
    let mut queue = Queue::default();
    controller.enqueue_all(&mut queue);
    let mut resync = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.resync_period,
        opts.resync_period.max(Duration::from_millis(100)),
    );
    loop {
        for key in queue.take_ready(tokio::time::Instant::now()) {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = controller.sync_and_schedule(&key) => next,
            };
            if let Some(at) = next {
                queue.add_at(key, at);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = resync.tick() => controller.enqueue_all(&mut queue),
            Some(change) = ds_changes.recv() => controller.on_daemon_set(change, &mut queue),
            Some(change) = node_changes.recv() => controller.on_node(change, &mut queue),
            Some(change) = pod_changes.recv() => controller.on_pod(change, &mut queue),
            _ = sleep_until(queue.next_due()) => {}
        }
        while let Ok(change) = ds_changes.try_recv() {
            controller.on_daemon_set(change, &mut queue);
        }
        while let Ok(change) = node_changes.try_recv() {
            controller.on_node(change, &mut queue);
        }
        while let Ok(change) = pod_changes.try_recv() {
            controller.on_pod(change, &mut queue);
        }
    }
    tracing::info!("daemonset controller: stopped");
}

struct Controller {
    client: Client,
    daemon_sets: Informer,
    nodes: Informer,
    pods: Informer,
    events: EventRecorder,
    opts: DaemonSetOptions,
    expectations: HashMap<String, Expectations>,
    failures: HashMap<String, u32>,
    /// `(DaemonSet uid, node)` → (not before, last delay): failed pods replaced with back-off.
    failed_pod_backoff: HashMap<(String, String), (tokio::time::Instant, Duration)>,
}

/// The expectations of a DaemonSet, made when there are none.
fn expectations_for<'a>(
    map: &'a mut HashMap<String, Expectations>,
    key: &str,
) -> &'a mut Expectations {
    map.entry(key.to_string()).or_insert_with(|| Expectations {
        created: Vec::new(),
        deleted: Vec::new(),
        since: tokio::time::Instant::now(),
    })
}

/// Whether a node change can change what a DaemonSet does there: anything but its heartbeat
/// (Kubernetes' `shouldIgnoreNodeUpdate`: conditions compared by type and status only).
fn node_change_matters(old: &Value, new: &Value) -> bool {
    let conditions = |n: &Value| -> BTreeSet<(String, String)> {
        n.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    str_at(c, "/type").to_string(),
                    str_at(c, "/status").to_string(),
                )
            })
            .collect()
    };
    old.get("spec") != new.get("spec")
        || object::labels(old) != object::labels(new)
        || conditions(old) != conditions(new)
}

impl Controller {
    fn enqueue_all(&self, queue: &mut Queue) {
        for ds in self.daemon_sets.list() {
            queue.add(key_of(&ds));
        }
    }

    fn on_daemon_set(&self, change: Change, queue: &mut Queue) {
        match change {
            Change::Added(ds) | Change::Deleted(ds) | Change::Modified { new: ds, .. } => {
                queue.add(key_of(&ds));
            }
            Change::Relisted => self.enqueue_all(queue),
        }
    }

    fn on_node(&self, change: Change, queue: &mut Queue) {
        match change {
            Change::Modified { old, new } if !node_change_matters(&old, &new) => {}
            _ => self.enqueue_all(queue),
        }
    }

    /// The DaemonSets a pod concerns: its controller, or, for an orphan, those of its
    /// namespace whose selector matches it.
    fn daemon_sets_of(&self, pod: &Value) -> Vec<String> {
        let ns = object::namespace(pod);
        if let Some(r) = controller_ref(pod) {
            if str_at(r, "/kind") == "DaemonSet" {
                return vec![format!("{ns}/{}", str_at(r, "/name"))];
            }
            return Vec::new();
        }
        let labels = object::labels(pod);
        self.daemon_sets
            .list()
            .into_iter()
            .filter(|ds| object::namespace(ds) == ns)
            .filter(|ds| {
                ds.pointer("/spec/selector")
                    .and_then(|s| from_label_selector_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .map(|ds| key_of(&ds))
            .collect()
    }

    fn on_pod(&self, change: Change, queue: &mut Queue) {
        let mut keys = Vec::new();
        match change {
            Change::Added(p) | Change::Deleted(p) => keys = self.daemon_sets_of(&p),
            Change::Modified { old, new } => {
                keys.extend(self.daemon_sets_of(&new));
                if controller_ref(&old) != controller_ref(&new) {
                    keys.extend(self.daemon_sets_of(&old));
                }
            }
            Change::Relisted => self.enqueue_all(queue),
        }
        for key in keys {
            queue.add(key);
        }
    }

    async fn sync_and_schedule(&mut self, key: &str) -> Option<tokio::time::Instant> {
        match self.sync(key).await {
            Ok(next) => {
                self.failures.remove(key);
                next
            }
            Err(e) => {
                let failures = self.failures.entry(key.to_string()).or_insert(0);
                *failures += 1;
                if matches!(e, ApiError::Conflict { .. } | ApiError::NotFound { .. }) {
                    tracing::debug!(daemonset = %key, error = %e, "daemonset changed under the sync; deciding again");
                } else {
                    tracing::warn!(daemonset = %key, error = %e, "daemonset sync failed");
                }
                Some(tokio::time::Instant::now() + backoff(*failures))
            }
        }
    }

    /// Whether the cache shows the pods this DaemonSet's last writes made and removed (or the
    /// wait has run out); else the time the wait runs out.
    fn caught_up(&mut self, key: &str) -> Result<(), tokio::time::Instant> {
        let Some(e) = self.expectations.get(key) else {
            return Ok(());
        };
        let expires = e.since + self.opts.expectation_timeout;
        if tokio::time::Instant::now() >= expires {
            tracing::debug!(daemonset = %key, "daemonset: own pod changes not seen in time; deciding anyway");
            self.expectations.remove(key);
            return Ok(());
        }
        let created = e
            .created
            .iter()
            .all(|(ns, name)| self.pods.get(ns, name).is_some());
        let deleted = e.deleted.iter().all(|(ns, name, uid)| {
            self.pods
                .get(ns, name)
                .is_none_or(|p| object::uid(&p) != uid || deleting(&p))
        });
        if created && deleted {
            self.expectations.remove(key);
            Ok(())
        } else {
            Err(expires)
        }
    }

    async fn sync(&mut self, key: &str) -> Result<Option<tokio::time::Instant>, ApiError> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.daemon_sets.get(ns, name) else {
            self.expectations.remove(key);
            return Ok(None);
        };
        let caught_up = self.caught_up(key);
        // Back-offs of failed pods are forgotten once long over.
        let long_ago = tokio::time::Instant::now()
            .checked_sub(FAILED_POD_BACKOFF_MAX)
            .unwrap_or_else(tokio::time::Instant::now);
        self.failed_pod_backoff
            .retain(|_, (not_before, _)| *not_before > long_ago);
        let nodes = self.nodes.list();
        let pods = self.pods.by_index(NAMESPACE_INDEX, ns);
        let now = Timestamp::now();
        let plan = match decide(&ds, &nodes, &pods, now) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(error = %e, "daemonset: cannot act on it");
                return Ok(None);
            }
        };
        for (reason, message) in &plan.warnings {
            self.events.event(&ds, "Warning", reason, message.clone());
        }
        let mut next = plan.requeue_at.map(instant_at);
        let mut status = plan.status.clone();
        match caught_up {
            Ok(()) => {
                if let Some(at) = self.carry_out(key, &ds, &plan).await? {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            Err(expires) => {
                // Placement waits; the status is written, of the generation seen last.
                status.observed_generation =
                    DaemonSetStatus::from_json(ds.get("status")).observed_generation;
                next = Some(next.map_or(expires, |n| n.min(expires)));
            }
        }
        if status != DaemonSetStatus::from_json(ds.get("status")) {
            let mut next_ds = (*ds).clone();
            next_ds["status"] = status.to_json();
            self.client.update_status(&next_ds).await?;
        }
        Ok(next)
    }

    /// Adopts, releases, deletes and creates as planned. Answers when a failed pod's back-off
    /// ends, if one is waiting.
    async fn carry_out(
        &mut self,
        key: &str,
        ds: &Arc<Value>,
        plan: &DaemonSetPlan,
    ) -> Result<Option<tokio::time::Instant>, ApiError> {
        for pod in plan.adopt.iter().chain(&plan.release) {
            match self.client.update(pod).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut wake = None;
        let ds_uid = object::uid(ds).to_string();
        for deletion in &plan.delete {
            if deletion.reason == DeleteReason::Failed {
                let id = (ds_uid.clone(), deletion.node.clone());
                let now = tokio::time::Instant::now();
                if let Some((not_before, _)) = self.failed_pod_backoff.get(&id)
                    && now < *not_before
                {
                    wake = Some(
                        wake.map_or(*not_before, |w: tokio::time::Instant| w.min(*not_before)),
                    );
                    continue;
                }
                let delay = self
                    .failed_pod_backoff
                    .get(&id)
                    .map_or(FAILED_POD_BACKOFF_FIRST, |(_, d)| {
                        (*d * 2).min(FAILED_POD_BACKOFF_MAX)
                    });
                self.failed_pod_backoff.insert(id, (now + delay, delay));
                self.events.event(
                    ds,
                    "Warning",
                    EVENT_FAILED_DAEMON_POD,
                    format!(
                        "Found failed daemon pod {}/{} on node {}, will try to kill it",
                        deletion.namespace, deletion.name, deletion.node
                    ),
                );
            }
            let options = DeleteOptions {
                grace_period_seconds: deletion.grace_period_seconds,
                uid: Some(deletion.uid.clone()).filter(|u| !u.is_empty()),
                ..DeleteOptions::default()
            };
            match self
                .client
                .delete("Pod", &deletion.namespace, &deletion.name, &options)
                .await
            {
                Ok(_) => {
                    tracing::info!(daemonset = %key, pod = %deletion.name, node = %deletion.node, reason = ?deletion.reason, "deleted a daemon pod");
                    self.events.event(
                        ds,
                        "Normal",
                        EVENT_SUCCESSFUL_DELETE,
                        format!("Deleted pod: {}", deletion.name),
                    );
                    expectations_for(&mut self.expectations, key).deleted.push((
                        deletion.namespace.clone(),
                        deletion.name.clone(),
                        deletion.uid.clone(),
                    ));
                }
                Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
                Err(e) => {
                    self.events.event(
                        ds,
                        "Warning",
                        EVENT_FAILED_DELETE,
                        format!("Error deleting: {e}"),
                    );
                    return Err(e);
                }
            }
        }
        // Creates in slow-start batches (1, 2, 4, ...), stopping at the first batch with a
        // failure, as Kubernetes does: a node that cannot take pods is not hammered.
        let mut batch = 1;
        let mut rest: &[String] = &plan.create_on;
        while !rest.is_empty() {
            let (now_nodes, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let mut tasks = tokio::task::JoinSet::new();
            for node in now_nodes {
                let pod = new_pod(ds, node, &plan.hash, plan.template_generation);
                let client = self.client.clone();
                let node = node.clone();
                tasks.spawn(async move { (node, client.create(&pod).await) });
            }
            let mut failed = None;
            while let Some(joined) = tasks.join_next().await {
                let Ok((node, result)) = joined else {
                    continue;
                };
                match result {
                    Ok(pod) => {
                        tracing::info!(daemonset = %key, pod = %object::name(&pod), node = %node, "created a daemon pod");
                        self.events.event(
                            ds,
                            "Normal",
                            EVENT_SUCCESSFUL_CREATE,
                            format!("Created pod: {}", object::name(&pod)),
                        );
                        expectations_for(&mut self.expectations, key).created.push((
                            object::namespace(&pod).to_string(),
                            object::name(&pod).to_string(),
                        ));
                    }
                    Err(e) => {
                        self.events.event(
                            ds,
                            "Warning",
                            EVENT_FAILED_CREATE,
                            format!("Error creating: {e}"),
                        );
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(wake)
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

    fn daemon_set() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "fluentd", "namespace": "kube-system", "uid": "ds-uid",
                         "generation": 1, "resourceVersion": "7"},
            "spec": {
                "selector": {"matchLabels": {"name": "fluentd"}},
                "template": {
                    "metadata": {"labels": {"name": "fluentd"}},
                    "spec": {
                        "tolerations": [{"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{"name": "fluentd", "image": "busybox"}],
                        "terminationGracePeriodSeconds": 30,
                    },
                },
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            },
        })
    }

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
               "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn with(mut v: Value, pointer: &str, value: Value) -> Value {
        *v.pointer_mut(pointer).expect("the pointer exists") = value;
        v
    }

    fn hash_of(ds: &Value) -> String {
        compute_hash(&ds["spec"]["template"], None)
    }

    /// A pod of `ds` on `node`, running and ready since `ready_since`.
    fn pod(ds: &Value, name: &str, node: &str, created: i64, ready_since: Option<i64>) -> Value {
        let mut p = new_pod(ds, node, &hash_of(ds), template_generation(ds));
        p["metadata"]["name"] = json!(name);
        p["metadata"]["uid"] = json!(format!("uid-{name}"));
        p["metadata"]["creationTimestamp"] = json!(ts(created));
        p["status"] = match ready_since {
            Some(t) => json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": ts(t)}]}),
            None => json!({"phase": "Pending"}),
        };
        p
    }

    fn arcs(v: &[Value]) -> Vec<Arc<Value>> {
        v.iter().cloned().map(Arc::new).collect()
    }

    fn deleted(plan: &DaemonSetPlan) -> Vec<(&str, DeleteReason)> {
        plan.delete
            .iter()
            .map(|d| (d.name.as_str(), d.reason))
            .collect()
    }

    #[test]
    fn daemon_pods_get_kubernetes_default_tolerations() {
        let mut spec = Map::new();
        spec.insert(
            "tolerations".into(),
            json!([{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                   {"key": "mine", "operator": "Exists"}]),
        );
        add_daemon_tolerations(&mut spec);
        let tolerations = spec["tolerations"].as_array().expect("tolerations");
        assert_eq!(
            tolerations[0],
            json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"}),
            "the 300 s toleration is replaced by one for ever"
        );
        let keys: Vec<(&str, &str)> = tolerations
            .iter()
            .map(|t| (str_at(t, "/key"), str_at(t, "/effect")))
            .collect();
        assert_eq!(
            keys,
            vec![
                (TAINT_NOT_READY, "NoExecute"),
                ("mine", ""),
                (TAINT_UNREACHABLE, "NoExecute"),
                (TAINT_DISK_PRESSURE, "NoSchedule"),
                (TAINT_MEMORY_PRESSURE, "NoSchedule"),
                (TAINT_PID_PRESSURE, "NoSchedule"),
                (TAINT_UNSCHEDULABLE, "NoSchedule"),
            ]
        );
        let mut host_network = Map::new();
        host_network.insert("hostNetwork".into(), json!(true));
        add_daemon_tolerations(&mut host_network);
        add_daemon_tolerations(&mut host_network);
        let tolerations = host_network["tolerations"].as_array().expect("tolerations");
        assert_eq!(tolerations.len(), 7, "added once: {tolerations:?}");
        assert!(
            tolerations
                .iter()
                .any(|t| str_at(t, "/key") == TAINT_NETWORK_UNAVAILABLE)
        );
    }

    #[test]
    fn a_new_pod_is_bound_to_its_node_and_labelled_with_the_revision() {
        let ds = daemon_set();
        let p = new_pod(&ds, "n1", "abc", 3);
        assert_eq!(p["metadata"]["generateName"], "fluentd-");
        assert_eq!(p["metadata"]["namespace"], "kube-system");
        assert_eq!(
            p["metadata"]["labels"],
            json!({"name": "fluentd", CONTROLLER_REVISION_HASH_LABEL: "abc", TEMPLATE_GENERATION_LABEL: "3"})
        );
        assert_eq!(
            p["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "ds-uid",
                    "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(7));
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        let by_affinity = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}}}}});
        assert_eq!(target_node(&by_affinity).as_deref(), Some("n7"));
    }

    #[test]
    fn nodes_are_eligible_as_kubernetes_judges_them() {
        let ds = daemon_set();
        let taint = |key: &str, effect: &str| {
            with(
                node("n"),
                "/spec",
                json!({"taints": [{"key": key, "effect": effect}]}),
            )
        };
        let e = |run, keep| Eligibility {
            should_run: run,
            should_continue_running: keep,
        };
        let selecting = with(
            ds.clone(),
            "/spec/template/spec",
            json!({"nodeSelector": {"disk": "ssd"}, "containers": []}),
        );
        let affinity = with(
            ds.clone(),
            "/spec/template/spec",
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        let pinned = with(
            ds.clone(),
            "/spec/template/spec",
            json!({"nodeName": "other", "containers": []}),
        );
        let cases: Vec<(&str, &Value, Value, Eligibility)> = vec![
            ("a plain node", &ds, node("n"), e(true, true)),
            (
                "a cordoned node",
                &ds,
                with(node("n"), "/spec", json!({"unschedulable": true})),
                e(true, true),
            ),
            (
                "the unschedulable taint",
                &ds,
                taint(TAINT_UNSCHEDULABLE, "NoSchedule"),
                e(true, true),
            ),
            (
                "a tolerated master taint",
                &ds,
                taint("node-role.kubernetes.io/master", "NoSchedule"),
                e(true, true),
            ),
            (
                "memory pressure",
                &ds,
                taint(TAINT_MEMORY_PRESSURE, "NoSchedule"),
                e(true, true),
            ),
            (
                "unreachable, NoExecute: tolerated for ever",
                &ds,
                taint(TAINT_UNREACHABLE, "NoExecute"),
                e(true, true),
            ),
            (
                "not ready, NoSchedule: no new pod, the old one stays",
                &ds,
                taint(TAINT_NOT_READY, "NoSchedule"),
                e(false, true),
            ),
            (
                "a user's NoSchedule taint",
                &ds,
                taint("dedicated", "NoSchedule"),
                e(false, true),
            ),
            (
                "a user's NoExecute taint",
                &ds,
                taint("dedicated", "NoExecute"),
                e(false, false),
            ),
            (
                "PreferNoSchedule is no obstacle",
                &ds,
                taint("dedicated", "PreferNoSchedule"),
                e(true, true),
            ),
            (
                "a nodeSelector the node lacks",
                &selecting,
                node("n"),
                e(false, false),
            ),
            (
                "a nodeSelector the node has",
                &selecting,
                with(node("n"), "/metadata/labels", json!({"disk": "ssd"})),
                e(true, true),
            ),
            (
                "required affinity, not matched",
                &affinity,
                node("n"),
                e(false, false),
            ),
            (
                "required affinity, matched",
                &affinity,
                with(node("n"), "/metadata/labels", json!({"zone": "a"})),
                e(true, true),
            ),
            (
                "a template pinned elsewhere",
                &pinned,
                node("n"),
                e(false, false),
            ),
        ];
        for (what, ds, node, want) in cases {
            let rules = NodeRules::from_daemon_set(ds).expect("valid");
            assert_eq!(rules.check(&node), want, "{what}");
        }
    }

    #[test]
    fn every_eligible_node_gets_one_pod() {
        let ds = daemon_set();
        let nodes = arcs(&[node("n2"), node("n1"), node("n3")]);
        let plan = decide(&ds, &nodes, &[], at(0)).expect("a plan");
        assert_eq!(plan.create_on, vec!["n1", "n2", "n3"]);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.desired_number_scheduled, 3);
        assert_eq!(plan.status.current_number_scheduled, 0);
        assert_eq!(plan.status.number_unavailable, 3);
        assert_eq!(plan.hash, hash_of(&ds));
        assert_eq!(plan.template_generation, 1);

        let pods = arcs(&[pod(&ds, "a", "n1", -10, Some(-5))]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert_eq!(plan.create_on, vec!["n2", "n3"]);
        assert_eq!(plan.status.current_number_scheduled, 1);
        assert_eq!(plan.status.number_ready, 1);
        assert_eq!(plan.status.number_available, 1);
        assert_eq!(plan.status.updated_number_scheduled, 1);
    }

    #[test]
    fn pods_go_from_nodes_that_left_or_no_longer_qualify() {
        let ds = daemon_set();
        let tainted = with(
            node("n2"),
            "/spec",
            json!({"taints": [{"key": "dedicated", "effect": "NoExecute"}]}),
        );
        let no_schedule = with(
            node("n3"),
            "/spec",
            json!({"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}),
        );
        let nodes = arcs(&[node("n1"), tainted, no_schedule]);
        let pods = arcs(&[
            pod(&ds, "a", "n1", -10, Some(-5)),
            pod(&ds, "b", "n2", -10, Some(-5)),
            pod(&ds, "c", "n3", -10, Some(-5)),
            pod(&ds, "d", "gone", -10, Some(-5)),
        ]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert_eq!(
            deleted(&plan),
            vec![
                ("b", DeleteReason::NotEligible),
                ("d", DeleteReason::NodeGone)
            ]
        );
        assert_eq!(plan.delete[1].grace_period_seconds, Some(0));
        assert_eq!(plan.delete[0].grace_period_seconds, None);
        assert!(plan.create_on.is_empty());
        assert_eq!(plan.status.desired_number_scheduled, 1);
        assert_eq!(plan.status.number_misscheduled, 2);
    }

    #[test]
    fn extra_and_finished_pods_are_removed() {
        let ds = daemon_set();
        let nodes = arcs(&[node("n1"), node("n2")]);
        let mut failed = pod(&ds, "f", "n2", -20, None);
        failed["status"]["phase"] = json!("Failed");
        let mut terminating = pod(&ds, "t", "n2", -30, Some(-25));
        terminating["metadata"]["deletionTimestamp"] = json!(ts(-1));
        let pods = arcs(&[
            pod(&ds, "old", "n1", -100, Some(-90)),
            pod(&ds, "young", "n1", -10, Some(-5)),
            failed,
            terminating,
        ]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert_eq!(
            deleted(&plan),
            vec![("young", DeleteReason::Excess), ("f", DeleteReason::Failed)]
        );
        // n2 has a pod still (terminating): no new one until it is gone.
        assert!(plan.create_on.is_empty(), "{plan:?}");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut ds = daemon_set();
        ds["spec"]["minReadySeconds"] = json!(30);
        let nodes = arcs(&[node("n1"), node("n2"), node("n3")]);
        let pods = arcs(&[
            pod(&ds, "a", "n1", -100, Some(-60)),
            pod(&ds, "b", "n2", -100, Some(-10)),
            pod(&ds, "c", "n3", -100, None),
        ]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        let s = &plan.status;
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.number_available,
                s.number_unavailable
            ),
            (3, 3, 2, 1, 2)
        );
        assert_eq!(plan.requeue_at, Some(at(21)));
        assert!(is_pod_available(&pods[1], 30, at(21)));
        assert!(!is_pod_available(&pods[1], 30, at(20)));
        assert!(is_pod_available(&pods[1], 0, at(-9)));
        assert!(!is_pod_available(&pods[2], 0, at(0)));
    }

    #[test]
    fn orphans_that_match_are_adopted() {
        let ds = daemon_set();
        let mut orphan = pod(&ds, "o", "n1", -10, Some(-5));
        orphan["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        let mut stranger = orphan.clone();
        stranger["metadata"]["name"] = json!("s");
        stranger["metadata"]["labels"] = json!({"name": "other"});
        let plan =
            decide(&ds, &arcs(&[node("n1")]), &arcs(&[orphan, stranger]), at(0)).expect("a plan");
        assert_eq!(plan.adopt.len(), 1);
        assert_eq!(plan.adopt[0]["metadata"]["name"], "o");
        assert_eq!(
            plan.adopt[0]["metadata"]["ownerReferences"][0]["uid"],
            "ds-uid"
        );
        assert!(plan.create_on.is_empty(), "the adopted pod counts");
    }

    /// The DaemonSet after a template change, with its pods of the old template.
    fn updated(ds: &Value) -> Value {
        let mut next = with(
            ds.clone(),
            "/spec/template/spec/containers/0/image",
            json!("busybox:2"),
        );
        next["metadata"]["generation"] = json!(2);
        next
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_at_a_time() {
        let old = daemon_set();
        let ds = updated(&old);
        let nodes = arcs(&[node("n1"), node("n2"), node("n3")]);
        let olds = |ready: [bool; 3]| {
            arcs(&[
                pod(&old, "a", "n1", -100, ready[0].then_some(-90)),
                pod(&old, "b", "n2", -100, ready[1].then_some(-90)),
                pod(&old, "c", "n3", -100, ready[2].then_some(-90)),
            ])
        };
        let plan = decide(&ds, &nodes, &olds([true; 3]), at(0)).expect("a plan");
        assert_eq!(deleted(&plan), vec![("a", DeleteReason::Update)]);
        assert_eq!(plan.status.updated_number_scheduled, 0);

        // Old pods that are not available are replaced regardless of the budget.
        let plan = decide(&ds, &nodes, &olds([false, true, false]), at(0)).expect("a plan");
        assert_eq!(
            deleted(&plan),
            vec![("a", DeleteReason::Update), ("c", DeleteReason::Update)]
        );

        // A new pod not available yet uses the budget up.
        let pods = arcs(&[
            pod(&ds, "a2", "n1", -1, None),
            pod(&old, "b", "n2", -100, Some(-90)),
            pod(&old, "c", "n3", -100, Some(-90)),
        ]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert!(plan.delete.is_empty(), "{plan:?}");
        assert_eq!(plan.status.updated_number_scheduled, 1);

        // maxUnavailable 50% of 3 rounds up to 2.
        let half = with(
            ds.clone(),
            "/spec/updateStrategy/rollingUpdate/maxUnavailable",
            json!("50%"),
        );
        let plan = decide(&half, &nodes, &olds([true; 3]), at(0)).expect("a plan");
        assert_eq!(plan.delete.len(), 2);

        // OnDelete: nothing is replaced.
        let on_delete = with(
            ds.clone(),
            "/spec/updateStrategy",
            json!({"type": "OnDelete"}),
        );
        let plan = decide(&on_delete, &nodes, &olds([true; 3]), at(0)).expect("a plan");
        assert!(plan.delete.is_empty() && plan.create_on.is_empty());
    }

    #[test]
    fn a_surge_update_starts_the_new_pod_before_the_old_one_goes() {
        let old = daemon_set();
        let ds = with(
            updated(&old),
            "/spec/updateStrategy/rollingUpdate",
            json!({"maxSurge": 1, "maxUnavailable": 0}),
        );
        let nodes = arcs(&[node("n1"), node("n2")]);
        let pods = arcs(&[
            pod(&old, "a", "n1", -100, Some(-90)),
            pod(&old, "b", "n2", -100, Some(-90)),
        ]);
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert_eq!(plan.create_on, vec!["n1"]);
        assert!(plan.delete.is_empty());

        // The new pod is not available yet: both stay, no more surge.
        let mut pods = pods;
        pods.push(Arc::new(pod(&ds, "a2", "n1", -5, None)));
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert!(
            plan.create_on.is_empty() && plan.delete.is_empty(),
            "{plan:?}"
        );

        // Once it is, the old one goes.
        pods.pop();
        pods.push(Arc::new(pod(&ds, "a2", "n1", -5, Some(-1))));
        let plan = decide(&ds, &nodes, &pods, at(0)).expect("a plan");
        assert_eq!(deleted(&plan), vec![("a", DeleteReason::Update)]);
    }

    #[test]
    fn a_rolling_update_over_many_nodes_never_exceeds_the_budget() {
        for (nodes_count, max_unavailable) in [(5, json!(1)), (6, json!(2)), (4, json!("50%"))] {
            let old = daemon_set();
            let ds = with(
                updated(&old),
                "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                max_unavailable.clone(),
            );
            let budget = scaled_value(Some(&max_unavailable), nodes_count, true).expect("valid");
            let nodes: Vec<Value> = (0..nodes_count).map(|i| node(&format!("n{i}"))).collect();
            let nodes = arcs(&nodes);
            let mut pods: Vec<Value> = (0..nodes_count)
                .map(|i| pod(&old, &format!("old-{i}"), &format!("n{i}"), -100, Some(-90)))
                .collect();
            let mut clock = 0;
            let mut made = 0;
            for step in 0..100 {
                clock += 10;
                // Pods made last step are ready now.
                for p in &mut pods {
                    if p["status"]["phase"] == "Pending" {
                        p["status"] = json!({"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": ts(clock - 5)}]});
                    }
                }
                let plan = decide(&ds, &nodes, &arcs(&pods), at(clock)).expect("a plan");
                for d in &plan.delete {
                    pods.retain(|p| p["metadata"]["name"] != d.name.as_str());
                }
                for node in &plan.create_on {
                    made += 1;
                    let mut p = pod(&ds, &format!("new-{made}"), node, clock, None);
                    p["status"] = json!({"phase": "Pending"});
                    pods.push(p);
                }
                let without: i64 = (0..nodes_count)
                    .filter(|i| {
                        !pods.iter().any(|p| {
                            p["spec"]["nodeName"] == format!("n{i}")
                                && is_pod_available(p, 0, at(clock))
                        })
                    })
                    .count() as i64;
                assert!(
                    without <= budget,
                    "{nodes_count} nodes, budget {budget}: step {step}: {without} nodes without an available pod"
                );
                if !plan.changes_pods() && plan.status.updated_number_scheduled == nodes_count {
                    break;
                }
            }
            assert_eq!(pods.len() as i64, nodes_count);
            assert!(
                pods.iter().all(|p| is_pod_updated(p, &hash_of(&ds), 2)),
                "{pods:?}"
            );
        }
    }

    #[test]
    fn a_pod_is_up_to_date_by_hash_or_by_generation() {
        let p = |labels: Value| json!({"metadata": {"labels": labels}});
        assert!(is_pod_updated(
            &p(json!({CONTROLLER_REVISION_HASH_LABEL: "h"})),
            "h",
            5
        ));
        assert!(is_pod_updated(
            &p(json!({TEMPLATE_GENERATION_LABEL: "5"})),
            "h",
            5
        ));
        assert!(!is_pod_updated(
            &p(json!({CONTROLLER_REVISION_HASH_LABEL: "g", TEMPLATE_GENERATION_LABEL: "4"})),
            "h",
            5
        ));
    }

    #[test]
    fn the_status_round_trips_and_a_heartbeat_is_no_node_change() {
        let s = DaemonSetStatus {
            current_number_scheduled: 2,
            desired_number_scheduled: 3,
            number_ready: 1,
            observed_generation: 4,
            number_unavailable: 2,
            ..DaemonSetStatus::default()
        };
        assert_eq!(DaemonSetStatus::from_json(Some(&s.to_json())), s);
        let n = node("n1");
        let mut beat = n.clone();
        beat["status"]["conditions"][0]["lastHeartbeatTime"] = json!(ts(0));
        beat["metadata"]["resourceVersion"] = json!("99");
        assert!(!node_change_matters(&n, &beat));
        let labelled = with(n.clone(), "/metadata/labels", json!({"disk": "ssd"}));
        assert!(node_change_matters(&n, &labelled));
        let not_ready = with(n.clone(), "/status/conditions/0/status", json!("False"));
        assert!(node_change_matters(&n, &not_ready));
    }

    #[test]
    fn a_daemon_set_being_deleted_places_nothing() {
        let mut ds = daemon_set();
        ds["metadata"]["deletionTimestamp"] = json!(ts(0));
        let plan = decide(&ds, &arcs(&[node("n1")]), &[], at(0)).expect("a plan");
        assert!(!plan.changes_pods());
    }
}

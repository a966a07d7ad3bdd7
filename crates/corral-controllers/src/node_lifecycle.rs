//! The node lifecycle controller: Kubernetes' `node-lifecycle-controller` with taint-based
//! eviction (the `taint-eviction-controller`), run by the Raft leader.
//!
//! Agents heartbeat two ways: they renew the Lease `kube-node-lease/<node>` (`spec.renewTime`) and
//! they post the Node's `Ready` condition (`lastHeartbeatTime`). Every monitor period, and whenever
//! a Node, a node Lease or a Pod changes, the controller looks at every node:
//!
//! - **Health** ([`node_health`]): a node whose latest heartbeat (the newer of the two; for a node
//!   never heard from, its creation time) is older than the grace period is `Unknown`; a node that
//!   heartbeats but reports `Ready=False` is `NotReady`; anything else is `Healthy`.
//! - **Status** ([`unknown_conditions`]): an `Unknown` node's `Ready` condition (and its
//!   `MemoryPressure` / `DiskPressure` / `PIDPressure` conditions, where present) become `Unknown`
//!   with reason `NodeStatusUnknown`, "Kubelet stopped posting node status.", written as a status
//!   update with the node's resourceVersion (Conflict: read again and decide again). The node gets
//!   a `NodeNotReady` event when it was `Ready` before.
//! - **Taints** ([`wanted_taints`]): `Unknown` → `node.kubernetes.io/unreachable` `NoExecute` (with
//!   `timeAdded`) and `NoSchedule`; `NotReady` → `node.kubernetes.io/not-ready` likewise; `Healthy`
//!   → neither. The controller only adds and removes those four; every other taint is the user's
//!   and is kept as it is.
//! - **Pods on an `Unknown` node** ([`pod_not_ready_conditions`]): their `Ready` condition becomes
//!   `False` (Kubernetes' `MarkPodsNotReady`) with a `NodeNotReady` event, so endpoints drop them.
//! - **Taint-based eviction** ([`eviction_deadline`]): every pod on a node with a `NoExecute` taint
//!   (the controller's or a user's) is compared with its tolerations. A taint no toleration matches
//!   evicts at once; a matching toleration with `tolerationSeconds` evicts at the taint's
//!   `timeAdded` plus those seconds (every pod gets 300 s for `not-ready` and `unreachable` at
//!   admission); a matching toleration without seconds never evicts. Each pod waiting for its
//!   deadline is tracked, and the controller wakes at the earliest one.
//!
//! The controller reads only committed state (informers over the API), writes only through the
//! API, and every write names the resourceVersion it was decided on, so a deposed leader's late
//! write is a Conflict. Times come from a [`Clock`], so every decision is a pure function of the
//! objects and "now", tested beside the code.
//!
//! Heartbeat times are compared with the controller's clock (Kubernetes instead times them on
//! arrival), which trusts agents' and servers' clocks to agree to well within the grace period
//! (40 s by default). One thing is kept from Kubernetes' way: a new leader neither declares a
//! node `Unknown` nor lets a toleration run out before it has watched for itself (a grace period
//! for nodes, the toleration for pods; [`node_health_observed_since`]). So after the whole
//! control plane was down, and no agent could heartbeat, the agents get the time to come back
//! instead of every node being tainted and every pod evicted at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_api::object;
use corral_client::events::EventRecorder;
use corral_client::informer::{Informer, index_by_node_name};
use corral_client::{Client, DeleteOptions};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// The namespace of the node heartbeat Leases (one per node, named after it).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node that stopped heartbeating.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose agent reports `Ready=False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Reason and message of a condition the controller turned `Unknown`.
pub const REASON_NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_NODE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// Reason and message of a `Ready` condition the agent never posted.
pub const REASON_NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NODE_STATUS_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// Reason and message of the pod condition `DisruptionTarget` set before an eviction.
pub const REASON_DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
pub const MESSAGE_DELETION_BY_TAINT_MANAGER: &str =
    "Taint manager: deleting due to NoExecute taint";

/// Event reasons.
pub const EVENT_NODE_NOT_READY: &str = "NodeNotReady";
pub const EVENT_TAINT_MANAGER_EVICTION: &str = "TaintManagerEviction";

/// Event sources, as Kubernetes names them.
const NODE_COMPONENT: &str = "node-controller";
const EVICTION_COMPONENT: &str = "taint-eviction-controller";

/// The node conditions that go `Unknown` with `Ready`, when the node has them.
/// (`NetworkUnavailable` is not the agent's to report, so it is left alone, as in Kubernetes.)
const PRESSURE_CONDITIONS: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

/// The pod informer's index: pods by `spec.nodeName`.
const POD_NODE_INDEX: &str = "spec.nodeName";

/// How often a write lost to a concurrent one is decided again before the pass moves on.
const MAX_CONFLICTS: usize = 5;

/// Changes arriving faster than this are folded into one pass.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(100);

/// How long a pod the controller just wrote is left alone while the cache catches up.
const ACTED_MEMORY: SignedDuration = SignedDuration::from_secs(30);

/// Timings of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLifecycleOptions {
    /// How long a node may go without a heartbeat before it is `Unknown` (default 40 s, as
    /// Kubernetes' `--node-monitor-grace-period`).
    pub grace_period: Duration,
    /// How often every node is looked at even when nothing changed (default 5 s, as Kubernetes'
    /// `--node-monitor-period`). The controller also wakes when a node is due to go stale and
    /// when a pod's eviction is due, so this is a safety net more than a delay.
    pub monitor_period: Duration,
}

impl Default for NodeLifecycleOptions {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// Where the controller reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// A node's health as the controller judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    /// Heartbeating and not reporting `Ready=False`.
    Healthy,
    /// Heartbeating, but its agent reports `Ready=False`.
    NotReady,
    /// No heartbeat within the grace period.
    Unknown,
}

/// A time in Kubernetes JSON (RFC 3339; `MicroTime` has fractional seconds). `None` when absent
/// or not a time.
pub fn parse_time(value: Option<&Value>) -> Option<Timestamp> {
    value.and_then(Value::as_str)?.parse().ok()
}

/// A time as Kubernetes writes `metav1.Time`: RFC 3339, UTC, whole seconds.
pub fn format_time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn conditions(obj: &Value) -> &[Value] {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions(obj)
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_status<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    condition(obj, type_)?.get("status").and_then(Value::as_str)
}

/// The node's latest sign of life: the newest of its Lease's `renewTime`, its `Ready`
/// condition's `lastHeartbeatTime` and its creation time (a node cannot be expected to have
/// heartbeated before it existed; a Lease left over from an earlier node of the same name does
/// not count against a new one). `None` when none of them is a time.
pub fn latest_heartbeat(node: &Value, lease: Option<&Value>) -> Option<Timestamp> {
    [
        lease.and_then(|l| parse_time(l.pointer("/spec/renewTime"))),
        condition(node, "Ready").and_then(|c| parse_time(c.get("lastHeartbeatTime"))),
        parse_time(node.pointer("/metadata/creationTimestamp")),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// `t` plus `d`, saturating at the end of time.
fn after(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// When the node goes stale unless it heartbeats again: its latest heartbeat plus the grace
/// period. (It is `Unknown` once `now` is strictly after this.)
pub fn stale_at(node: &Value, lease: Option<&Value>, grace: Duration) -> Option<Timestamp> {
    latest_heartbeat(node, lease).map(|t| after(t, signed(grace)))
}

/// The node's health at `now`: `Unknown` when its latest heartbeat ([`latest_heartbeat`]) is
/// older than `grace`; else `NotReady` when its `Ready` condition is `False`; else `Healthy`.
/// A fresh heartbeat with `Ready=Unknown` (the controller's own mark, before the returning agent
/// posts its status) or without any `Ready` condition (just registered) is `Healthy`.
pub fn node_health(
    node: &Value,
    lease: Option<&Value>,
    now: Timestamp,
    grace: Duration,
) -> NodeHealth {
    node_health_observed_since(node, lease, now, grace, Timestamp::MIN)
}

/// [`node_health`] for a controller that has been watching since `observing_since` (the leader
/// took over then). A node whose heartbeat is stale is not judged `Unknown` before the
/// controller itself has watched it for a grace period: until then it keeps the state its
/// `Ready` condition records (`Unknown` stays `Unknown`, `False` is `NotReady`, anything else
/// `Healthy`). So after the whole control plane was down, during which no agent could renew
/// anything, a new leader gives every agent a grace period to come back before it marks nodes
/// and evicts pods, as Kubernetes' controller does by timing heartbeats from when it sees them.
pub fn node_health_observed_since(
    node: &Value,
    lease: Option<&Value>,
    now: Timestamp,
    grace: Duration,
    observing_since: Timestamp,
) -> NodeHealth {
    let ready = condition_status(node, "Ready");
    let stale = stale_at(node, lease, grace).is_some_and(|stale| now > stale);
    if stale && now > after(observing_since, signed(grace)) {
        return NodeHealth::Unknown;
    }
    match ready {
        Some("False") => NodeHealth::NotReady,
        Some("Unknown") if stale => NodeHealth::Unknown,
        _ => NodeHealth::Healthy,
    }
}

/// The node's conditions after it is found `Unknown`, or `None` when they already say so: `Ready`
/// and the pressure conditions it has become `Unknown` (reason `NodeStatusUnknown`, transition
/// time `now`, heartbeat time kept); a missing `Ready` condition is added as
/// `NodeStatusNeverUpdated` with the node's creation time as its heartbeat.
pub fn unknown_conditions(node: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let mut conds = conditions(node).to_vec();
    let now = format_time(now);
    let mut changed = false;
    for type_ in std::iter::once("Ready").chain(PRESSURE_CONDITIONS) {
        let existing = conds
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(type_));
        match existing {
            Some(c) => {
                if c.get("status").and_then(Value::as_str) == Some("Unknown") {
                    continue;
                }
                if let Some(m) = c.as_object_mut() {
                    m.insert("status".into(), json!("Unknown"));
                    m.insert("reason".into(), json!(REASON_NODE_STATUS_UNKNOWN));
                    m.insert("message".into(), json!(MESSAGE_NODE_STATUS_UNKNOWN));
                    m.insert("lastTransitionTime".into(), json!(now));
                    changed = true;
                }
            }
            None if type_ == "Ready" => {
                let mut c = json!({
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": REASON_NODE_STATUS_NEVER_UPDATED,
                    "message": MESSAGE_NODE_STATUS_NEVER_UPDATED,
                    "lastTransitionTime": now,
                });
                if let Some(created) = node.pointer("/metadata/creationTimestamp") {
                    c["lastHeartbeatTime"] = created.clone();
                }
                conds.push(c);
                changed = true;
            }
            None => {}
        }
    }
    changed.then_some(conds)
}

/// The controller's taints (key, effect) a node of this health carries.
pub fn controller_taints(health: NodeHealth) -> &'static [(&'static str, &'static str)] {
    match health {
        NodeHealth::Healthy => &[],
        NodeHealth::NotReady => &[
            (TAINT_NOT_READY, NO_EXECUTE),
            (TAINT_NOT_READY, NO_SCHEDULE),
        ],
        NodeHealth::Unknown => &[
            (TAINT_UNREACHABLE, NO_EXECUTE),
            (TAINT_UNREACHABLE, NO_SCHEDULE),
        ],
    }
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn is_controller_taint(taint: &Value) -> bool {
    matches!(str_field(taint, "key"), TAINT_UNREACHABLE | TAINT_NOT_READY)
        && matches!(str_field(taint, "effect"), NO_EXECUTE | NO_SCHEDULE)
}

/// The node's `spec.taints` for this health, or `None` when they are right already. The
/// controller's four taints (`not-ready` / `unreachable` × `NoExecute` / `NoSchedule`) are added
/// or removed to match [`controller_taints`]; one already present is kept with its `timeAdded`
/// (eviction deadlines count from it); every other taint is left as it is. New `NoExecute` taints
/// get `timeAdded: now`; `NoSchedule` ones carry no time, as in Kubernetes.
pub fn wanted_taints(node: &Value, health: NodeHealth, now: Timestamp) -> Option<Vec<Value>> {
    let current = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let wanted = controller_taints(health);
    let mut next: Vec<Value> = current
        .iter()
        .filter(|t| {
            !is_controller_taint(t)
                || wanted
                    .iter()
                    .any(|(k, e)| str_field(t, "key") == *k && str_field(t, "effect") == *e)
        })
        .cloned()
        .collect();
    for (key, effect) in wanted {
        let present = next
            .iter()
            .any(|t| str_field(t, "key") == *key && str_field(t, "effect") == *effect);
        if !present {
            let mut taint = json!({"key": key, "effect": effect});
            if *effect == NO_EXECUTE {
                taint["timeAdded"] = json!(format_time(now));
            }
            next.push(taint);
        }
    }
    (next.as_slice() != current).then_some(next)
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
    /// `timeAdded` (written for `NoExecute` taints), if any.
    pub time_added: Option<Timestamp>,
}

impl Taint {
    pub fn from_json(v: &Value) -> Taint {
        Taint {
            key: str_field(v, "key").to_string(),
            value: str_field(v, "value").to_string(),
            effect: str_field(v, "effect").to_string(),
            time_added: parse_time(v.get("timeAdded")),
        }
    }
}

/// A `NoExecute` taint with the time its tolerations count from.
pub type TimedTaint = (Taint, Timestamp);

/// The node's `NoExecute` taints.
pub fn no_execute_taints(node: &Value) -> Vec<Taint> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Taint::from_json)
        .filter(|t| t.effect == NO_EXECUTE)
        .collect()
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    /// `Equal` (also when empty) or `Exists`.
    pub operator: String,
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    pub fn from_json(v: &Value) -> Toleration {
        Toleration {
            key: str_field(v, "key").to_string(),
            operator: str_field(v, "operator").to_string(),
            value: str_field(v, "value").to_string(),
            effect: str_field(v, "effect").to_string(),
            toleration_seconds: v.get("tolerationSeconds").and_then(Value::as_i64),
        }
    }

    /// Kubernetes' `Toleration.ToleratesTaint`: the effect (when given) and key (when given) must
    /// match; `Exists` takes any value, `Equal` (or no operator) the same value.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == taint.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// The pod's `spec.tolerations`.
pub fn tolerations(pod: &Value) -> Vec<Toleration> {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Toleration::from_json)
        .collect()
}

/// When a pod must leave a node, given its tolerations and the node's `NoExecute` taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// No `NoExecute` taint, or every one tolerated for ever.
    Never,
    /// A taint no toleration matches.
    Now,
    /// Every taint is tolerated, the first to run out at this time (possibly already past).
    At(Timestamp),
}

impl Eviction {
    /// Whether the pod must go at `now`.
    pub fn due(self, now: Timestamp) -> bool {
        match self {
            Eviction::Never => false,
            Eviction::Now => true,
            Eviction::At(t) => t <= now,
        }
    }
}

/// Taint-based eviction for one pod. `taints` are the node's `NoExecute` taints, each with the
/// time it was added (its `timeAdded`, or when the controller first saw it). As in Kubernetes,
/// each taint is matched by the first toleration that tolerates it: no toleration → [`Eviction::Now`];
/// `tolerationSeconds` → the taint's time plus those seconds (zero or negative: the taint's time);
/// no `tolerationSeconds` → that taint never evicts. The earliest deadline wins.
pub fn eviction_deadline(tolerations: &[Toleration], taints: &[TimedTaint]) -> Eviction {
    let mut deadline: Option<Timestamp> = None;
    for (taint, added) in taints.iter().filter(|(t, _)| t.effect == NO_EXECUTE) {
        let Some(toleration) = tolerations.iter().find(|t| t.tolerates(taint)) else {
            return Eviction::Now;
        };
        if let Some(seconds) = toleration.toleration_seconds {
            let at = after(*added, SignedDuration::from_secs(seconds.max(0)));
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline.map_or(Eviction::Never, Eviction::At)
}

/// The pod's conditions with `Ready` turned `False` (Kubernetes' `MarkPodsNotReady`: the status
/// and transition time change, reason and message stay), or `None` when it has no `Ready`
/// condition or it is `False` already.
pub fn pod_not_ready_conditions(pod: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let mut conds = conditions(pod).to_vec();
    let ready = conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    if ready.get("status").and_then(Value::as_str) == Some("False") {
        return None;
    }
    let m = ready.as_object_mut()?;
    m.insert("status".into(), json!("False"));
    m.insert("lastTransitionTime".into(), json!(format_time(now)));
    Some(conds)
}

/// The pod's conditions with `DisruptionTarget=True` (reason `DeletionByTaintManager`), as
/// Kubernetes' taint eviction writes before it deletes; `None` when it says so already.
pub fn disruption_target_conditions(pod: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let mut conds = conditions(pod).to_vec();
    let wanted = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": REASON_DELETION_BY_TAINT_MANAGER,
        "message": MESSAGE_DELETION_BY_TAINT_MANAGER,
        "lastTransitionTime": format_time(now),
    });
    match conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionTarget"))
    {
        Some(c)
            if str_field(c, "status") == "True"
                && str_field(c, "reason") == REASON_DELETION_BY_TAINT_MANAGER =>
        {
            None
        }
        Some(c) => {
            *c = wanted;
            Some(conds)
        }
        None => {
            conds.push(wanted);
            Some(conds)
        }
    }
}

/// What the controller does to a pod: its grace period when deleting it.
///
/// A pod evicted from an **unreachable** node (`Unknown`) is deleted with a grace period of 0.
/// The pod is bound, so an ordinary delete would only mark it for graceful deletion and wait for
/// its agent to stop it and remove the object; that agent is gone, so the pod would stay
/// `Terminating` and its owner (ReplicaSet, StatefulSet) would not replace it until the node came
/// back. Deleting it outright lets the owner replace it at once. The price is Kubernetes'
/// at-most-one guarantee: an agent that is only cut off (a partition, not a crash) may still run
/// the old copy until it reconnects and finds the pod gone. For a `NotReady` node the agent is
/// alive and heartbeating, so the pod gets its normal graceful deletion.
pub fn eviction_grace_period(health: NodeHealth) -> Option<i64> {
    match health {
        NodeHealth::Unknown => Some(0),
        NodeHealth::Healthy | NodeHealth::NotReady => None,
    }
}

/// The controller's decision for one pod on one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    /// New status conditions with `Ready=False`, when the pod must be marked not ready.
    pub not_ready_conditions: Option<Vec<Value>>,
    pub eviction: PodEviction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodEviction {
    /// Nothing to do.
    None,
    /// Delete the pod at this time (a future one).
    At(Timestamp),
    /// Delete the pod now, with this grace period (`None`: the pod's own).
    Now { grace_period_seconds: Option<i64> },
}

/// What to do with a pod on a node of this health with these `NoExecute` taints (each with the
/// time it was added), at `now`. A pod being deleted already is left to its agent, except on an
/// unreachable node, where no agent will finish it: there it is deleted outright once its
/// toleration runs out. Pods on an unreachable node are marked not ready, unless they are about
/// to be deleted.
pub fn plan_pod(pod: &Value, health: NodeHealth, taints: &[TimedTaint], now: Timestamp) -> PodPlan {
    let terminating = object::deletion_timestamp(pod).is_some();
    let eviction = if terminating && health != NodeHealth::Unknown {
        Eviction::Never
    } else {
        eviction_deadline(&tolerations(pod), taints)
    };
    let eviction = match eviction {
        e if e.due(now) => PodEviction::Now {
            grace_period_seconds: eviction_grace_period(health),
        },
        Eviction::At(t) => PodEviction::At(t),
        Eviction::Never | Eviction::Now => PodEviction::None,
    };
    let not_ready_conditions = match (health, eviction) {
        (_, PodEviction::Now { .. }) => None,
        (NodeHealth::Unknown, _) => pod_not_ready_conditions(pod, now),
        _ => None,
    };
    PodPlan {
        not_ready_conditions,
        eviction,
    }
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the node lifecycle controller until `cancel` fires, with the system clock.
pub async fn run(client: Client, opts: NodeLifecycleOptions, cancel: CancellationToken) {
    run_with_clock(client, opts, Arc::new(SystemClock), cancel).await;
}

/// [`run`] with the time read from `clock`.
pub async fn run_with_clock(
    client: Client,
    opts: NodeLifecycleOptions,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let nodes = Informer::builder(client.clone(), "Node").start(cancel.clone());
    let leases = Informer::builder(client.clone(), "Lease")
        .namespace(NODE_LEASE_NAMESPACE)
        .start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(POD_NODE_INDEX, index_by_node_name)
        .start(cancel.clone());
    let mut node_changes = nodes.subscribe();
    let mut lease_changes = leases.subscribe();
    let mut pod_changes = pods.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { nodes.wait_synced().await; leases.wait_synced().await; pods.wait_synced().await } => {}
    }
    tracing::info!(
        grace_period = ?opts.grace_period,
        monitor_period = ?opts.monitor_period,
        "node lifecycle controller: caches synced, watching nodes"
    );
    let mut controller = Controller {
        node_events: EventRecorder::new(client.clone(), NODE_COMPONENT, ""),
        eviction_events: EventRecorder::new(client.clone(), EVICTION_COMPONENT, ""),
        client,
        nodes,
        leases,
        pods,
        grace: opts.grace_period,
        observing_since: clock.now(),
        taint_first_seen: HashMap::new(),
        scheduled: HashMap::new(),
        acted: HashMap::new(),
        attention: HashSet::new(),
    };
    loop {
        let started = Instant::now();
        let now = clock.now();
        // A pass cut short by the loss of leadership leaves nothing half-done that matters: every
        // write stands alone and names the version it was decided on.
        let wake = tokio::select! {
            _ = cancel.cancelled() => break,
            wake = controller.pass(now) => wake,
        };
        let mut sleep_for = opts.monitor_period;
        if let Some(wake) = wake {
            let until = Duration::try_from(wake.duration_since(now)).unwrap_or(Duration::ZERO);
            // Timestamps are whole seconds or microseconds: wake just after the moment.
            sleep_for = sleep_for.min(until + Duration::from_millis(10));
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(sleep_for) => {}
            Some(_) = node_changes.recv() => {}
            Some(_) = lease_changes.recv() => {}
            _ = relevant_pod_change(&mut pod_changes, &controller.attention) => {}
        }
        // Fold a burst of changes into one pass.
        let since = started.elapsed();
        if since < MIN_PASS_INTERVAL {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(MIN_PASS_INTERVAL - since) => {}
            }
        }
        while node_changes.try_recv().is_ok() {}
        while lease_changes.try_recv().is_ok() {}
        while pod_changes.try_recv().is_ok() {}
    }
    tracing::info!("node lifecycle controller: stopped");
}

/// Waits for a pod change that matters to the controller: one on a node in `attention`, or a
/// relist. (Pods of healthy, untainted nodes are none of its business; without this filter every
/// pod status update in the cluster would cost a pass over every node.)
async fn relevant_pod_change(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<corral_client::Change>,
    attention: &HashSet<String>,
) {
    use corral_client::Change;
    loop {
        let pod = match changes.recv().await {
            None => return std::future::pending().await,
            Some(Change::Relisted) => return,
            Some(Change::Added(p)) | Some(Change::Deleted(p)) => p,
            Some(Change::Modified { new, .. }) => new,
        };
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if attention.contains(node) {
            return;
        }
    }
}

struct Controller {
    client: Client,
    nodes: Informer,
    leases: Informer,
    pods: Informer,
    node_events: EventRecorder,
    eviction_events: EventRecorder,
    grace: Duration,
    /// When this controller (this leader) started watching: no node is judged `Unknown`, and no
    /// toleration runs out, before it has watched for itself (see
    /// [`node_health_observed_since`]).
    observing_since: Timestamp,
    /// When the controller first saw each `NoExecute` taint without a `timeAdded`
    /// (node, key, value): deadlines count from there.
    taint_first_seen: HashMap<(String, String, String), Timestamp>,
    /// Pods waiting for their eviction deadline: `namespace/name` → (uid, deadline).
    scheduled: HashMap<String, (String, Timestamp)>,
    /// Nodes whose pods the last pass looked at (Unknown, or with NoExecute taints): only a
    /// change of a pod on one of these calls for a new pass.
    attention: HashSet<String>,
    /// Pods the controller wrote: uid → what it did. The pod is left alone until the cache shows
    /// a newer version (or a while has passed), so a lagging cache does not make it act twice.
    acted: HashMap<String, Acted>,
}

/// The controller's last write to a pod.
struct Acted {
    /// The pod's resourceVersion the write was decided on.
    resource_version: u64,
    at: Timestamp,
    /// The write was (the start of) an eviction.
    evicted: bool,
}

/// A node after the controller's writes, with its health.
struct NodeState {
    node: Arc<Value>,
    health: NodeHealth,
    stale_at: Option<Timestamp>,
}

fn is_conflict(e: &ApiError) -> bool {
    matches!(e, ApiError::Conflict { .. })
}

fn is_not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::NotFound { .. })
}

/// Sets `obj.status.conditions`, making `status` an object if it is not one.
fn set_status_conditions(obj: &mut Value, conds: Vec<Value>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let status = map
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    if let Some(status) = status.as_object_mut() {
        status.insert("conditions".into(), Value::Array(conds));
    }
}

fn resource_version_str(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Controller {
    /// One look at every node; answers the earliest future moment something is due (a node going
    /// stale, a pod's eviction).
    async fn pass(&mut self, now: Timestamp) -> Option<Timestamp> {
        let mut wake: Option<Timestamp> = None;
        let mut earliest = |t: Timestamp| {
            if t > now {
                wake = Some(wake.map_or(t, |w: Timestamp| w.min(t)));
            }
        };
        let mut scheduled = HashMap::new();
        let mut attention = HashSet::new();
        let mut taints_seen = HashSet::new();
        let mut pods_seen = HashSet::new();
        for node in self.nodes.list() {
            let name = object::name(&node).to_string();
            if name.is_empty() {
                continue;
            }
            let lease = self.leases.get(NODE_LEASE_NAMESPACE, &name);
            let state = match self.reconcile_node(node, lease, now).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "node lifecycle: could not update the node");
                    continue;
                }
            };
            if state.health != NodeHealth::Unknown
                && let Some(t) = state.stale_at
            {
                earliest(t.max(after(self.observing_since, signed(self.grace))));
            }
            let taints: Vec<TimedTaint> = no_execute_taints(&state.node)
                .into_iter()
                .map(|t| {
                    let id = (name.clone(), t.key.clone(), t.value.clone());
                    // Tolerations run from the taint's time, but never from before this leader
                    // watched (Kubernetes' taint manager, too, times them from when it sees them).
                    let added = t
                        .time_added
                        .unwrap_or_else(|| *self.taint_first_seen.entry(id.clone()).or_insert(now))
                        .max(self.observing_since);
                    taints_seen.insert(id);
                    (t, added)
                })
                .collect();
            if taints.is_empty() && state.health != NodeHealth::Unknown {
                continue;
            }
            attention.insert(name.clone());
            for pod in self.pods.by_index(POD_NODE_INDEX, &name) {
                if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(name.as_str()) {
                    continue;
                }
                let uid = object::uid(&pod).to_string();
                let key = format!("{}/{}", object::namespace(&pod), object::name(&pod));
                pods_seen.insert(uid.clone());
                let rv = object::resource_version(&pod).unwrap_or(0);
                if let Some(acted) = self.acted.get(&uid)
                    && rv <= acted.resource_version
                    && now < after(acted.at, ACTED_MEMORY)
                {
                    // The cache has not caught up with the controller's own write yet.
                    if let Some(entry) = self.scheduled.get(&key) {
                        scheduled.insert(key, entry.clone());
                    }
                    continue;
                }
                let plan = plan_pod(&pod, state.health, &taints, now);
                if let Some(conds) = plan.not_ready_conditions {
                    self.mark_not_ready(&pod, conds, now).await;
                }
                match plan.eviction {
                    PodEviction::None => {}
                    PodEviction::At(t) => {
                        earliest(t);
                        scheduled.insert(key, (uid, t));
                    }
                    PodEviction::Now {
                        grace_period_seconds,
                    } => self.evict(&pod, grace_period_seconds, now).await,
                }
            }
        }
        // Pods that were waiting for an eviction and no longer are (their node recovered, or the
        // taint went away) and still exist: say so, as Kubernetes does.
        for (key, (uid, _)) in &self.scheduled {
            if scheduled.contains_key(key) || self.acted.get(uid).is_some_and(|a| a.evicted) {
                continue;
            }
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            if let Some(pod) = self.pods.get(ns, name)
                && object::uid(&pod) == uid
            {
                self.eviction_events.event(
                    &pod,
                    "Normal",
                    EVENT_TAINT_MANAGER_EVICTION,
                    format!("Cancelling deletion of Pod {key}"),
                );
            }
        }
        self.scheduled = scheduled;
        self.attention = attention;
        self.taint_first_seen
            .retain(|id, _| taints_seen.contains(id));
        self.acted
            .retain(|uid, a| pods_seen.contains(uid) && now < after(a.at, ACTED_MEMORY));
        wake
    }

    /// Reads the node's Lease from the API (`None`: there is none).
    async fn lease(&self, node: &str) -> Result<Option<Arc<Value>>, ApiError> {
        match self.client.get("Lease", NODE_LEASE_NAMESPACE, node).await {
            Ok(lease) => Ok(Some(Arc::new(lease))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Judges the node's health and writes its status and taints to match; on a Conflict reads
    /// the node (and its Lease) again and decides again.
    async fn reconcile_node(
        &self,
        mut node: Arc<Value>,
        mut lease: Option<Arc<Value>>,
        now: Timestamp,
    ) -> Result<NodeState, ApiError> {
        let name = object::name(&node).to_string();
        let mut lease_fresh = false;
        let mut conflicts = 0;
        loop {
            let health = node_health_observed_since(
                &node,
                lease.as_deref(),
                now,
                self.grace,
                self.observing_since,
            );
            let unknown = match health {
                NodeHealth::Unknown => unknown_conditions(&node, now),
                _ => None,
            };
            if unknown.is_some() && !lease_fresh {
                // The cached Lease may lag behind: read it before declaring the node unreachable.
                lease = self.lease(&name).await?;
                lease_fresh = true;
                continue;
            }
            match self.write_node(&node, health, unknown, now).await {
                Ok(node) => {
                    let stale_at = stale_at(&node, lease.as_deref(), self.grace);
                    return Ok(NodeState {
                        node,
                        health,
                        stale_at,
                    });
                }
                Err(e) if is_conflict(&e) && conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                    tracing::debug!(node = %name, "node changed while being updated; deciding again");
                    node = Arc::new(self.client.get("Node", "", &name).await?);
                    lease = self.lease(&name).await?;
                    lease_fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the `Unknown` conditions (when given) and the taints this health calls for;
    /// answers the node as committed (the node given, when nothing needed writing).
    async fn write_node(
        &self,
        node: &Arc<Value>,
        health: NodeHealth,
        unknown: Option<Vec<Value>>,
        now: Timestamp,
    ) -> Result<Arc<Value>, ApiError> {
        let mut node = Arc::clone(node);
        let name = object::name(&node).to_string();
        if let Some(conds) = unknown {
            let was_ready = condition_status(&node, "Ready") == Some("True");
            let mut next = (*node).clone();
            set_status_conditions(&mut next, conds);
            node = Arc::new(self.client.update_status(&next).await?);
            tracing::info!(node = %name, "node stopped heartbeating: Ready is now Unknown");
            if was_ready {
                self.node_events.event(
                    &node,
                    "Normal",
                    EVENT_NODE_NOT_READY,
                    format!("Node {name} status is now: {EVENT_NODE_NOT_READY}"),
                );
            }
        }
        if let Some(taints) = wanted_taints(&node, health, now) {
            let taints_json = if taints.is_empty() {
                Value::Null
            } else {
                Value::Array(taints)
            };
            let patch = json!({
                "metadata": {"resourceVersion": resource_version_str(&node)},
                "spec": {"taints": taints_json},
            });
            node = Arc::new(self.client.patch("Node", "", &name, &patch, false).await?);
            tracing::info!(node = %name, ?health, "node taints updated");
        }
        Ok(node)
    }

    fn remember(&mut self, pod: &Value, now: Timestamp, evicted: bool) {
        let acted = Acted {
            resource_version: object::resource_version(pod).unwrap_or(0),
            at: now,
            evicted,
        };
        self.acted.insert(object::uid(pod).to_string(), acted);
    }

    /// Patches the pod's status to `Ready=False` (precondition: the version read).
    async fn mark_not_ready(&mut self, pod: &Value, conds: Vec<Value>, now: Timestamp) {
        let (ns, name) = (object::namespace(pod), object::name(pod));
        let patch = json!({
            "metadata": {"resourceVersion": resource_version_str(pod)},
            "status": {"conditions": conds},
        });
        match self.client.patch("Pod", ns, name, &patch, true).await {
            Ok(updated) => {
                self.remember(pod, now, false);
                tracing::info!(pod = %format!("{ns}/{name}"), "pod marked not ready: its node is unreachable");
                self.node_events.event(
                    &updated,
                    "Warning",
                    EVENT_NODE_NOT_READY,
                    "Node is not ready".to_string(),
                );
            }
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                self.remember(pod, now, false);
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "pod changed; will look again");
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not mark the pod not ready");
            }
        }
    }

    /// Evicts the pod: `DisruptionTarget` condition, event, then Delete with the version read as
    /// precondition (and `grace_period_seconds`, see [`eviction_grace_period`]).
    async fn evict(&mut self, pod: &Value, grace_period_seconds: Option<i64>, now: Timestamp) {
        let (ns, name) = (
            object::namespace(pod).to_string(),
            object::name(pod).to_string(),
        );
        let key = format!("{ns}/{name}");
        self.remember(pod, now, true);
        let mut current = pod.clone();
        if object::deletion_timestamp(pod).is_none()
            && let Some(conds) = disruption_target_conditions(pod, now)
        {
            let patch = json!({
                "metadata": {"resourceVersion": resource_version_str(pod)},
                "status": {"conditions": conds},
            });
            match self.client.patch("Pod", &ns, &name, &patch, true).await {
                Ok(updated) => current = updated,
                Err(e) if is_conflict(&e) || is_not_found(&e) => {
                    tracing::debug!(pod = %key, error = %e, "pod changed before its eviction; will look again");
                    return;
                }
                Err(e) => {
                    self.acted.remove(object::uid(pod));
                    tracing::warn!(pod = %key, error = %e, "could not evict the pod");
                    return;
                }
            }
        }
        self.eviction_events.event(
            &current,
            "Normal",
            EVENT_TAINT_MANAGER_EVICTION,
            format!("Marking for deletion Pod {key}"),
        );
        let options = DeleteOptions {
            grace_period_seconds,
            resource_version: Some(resource_version_str(&current)).filter(|s| !s.is_empty()),
            uid: Some(object::uid(pod).to_string()).filter(|s| !s.is_empty()),
            ..DeleteOptions::default()
        };
        match self.client.delete("Pod", &ns, &name, &options).await {
            Ok(_) => {
                tracing::info!(pod = %key, ?grace_period_seconds, "pod evicted by a NoExecute taint")
            }
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                tracing::debug!(pod = %key, error = %e, "pod changed before its deletion; will look again");
            }
            Err(e) => {
                self.acted.remove(object::uid(pod));
                tracing::warn!(pod = %key, error = %e, "could not delete the evicted pod");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn t(s: &str) -> Timestamp {
        s.parse().expect("a test timestamp")
    }

    /// 2026-01-01T00:10:00Z, and seconds around it.
    fn at(offset_secs: i64) -> Timestamp {
        after(
            t("2026-01-01T00:10:00Z"),
            SignedDuration::from_secs(offset_secs),
        )
    }

    fn ts(offset_secs: i64) -> String {
        format_time(at(offset_secs))
    }

    fn node(created: i64, ready: Option<(&str, i64)>) -> Value {
        let mut n = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "creationTimestamp": ts(created), "resourceVersion": "7"},
            "spec": {},
            "status": {"conditions": []},
        });
        if let Some((status, heartbeat)) = ready {
            n["status"]["conditions"] = json!([{
                "type": "Ready", "status": status, "reason": "KubeletReady",
                "lastHeartbeatTime": ts(heartbeat), "lastTransitionTime": ts(-3000),
            }]);
        }
        n
    }

    fn lease(renewed: i64) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": NODE_LEASE_NAMESPACE},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                     "renewTime": format!("{}", at(renewed).checked_add(SignedDuration::from_micros(123_456)).expect("in range"))},
        })
    }

    #[test]
    fn health_follows_the_newest_heartbeat() {
        use NodeHealth::*;
        let old = -3600;
        let cases: Vec<(&str, Value, Option<Value>, NodeHealth)> = vec![
            (
                "fresh lease, Ready",
                node(old, Some(("True", -100))),
                Some(lease(-5)),
                Healthy,
            ),
            (
                "stale lease, fresh status",
                node(old, Some(("True", -5))),
                Some(lease(-100)),
                Healthy,
            ),
            (
                "both stale",
                node(old, Some(("True", -100))),
                Some(lease(-41)),
                Unknown,
            ),
            (
                "exactly at the grace period",
                node(old, Some(("True", -100))),
                Some(lease(-40)),
                Healthy,
            ),
            (
                "no lease, status stale",
                node(old, Some(("True", -41))),
                None,
                Unknown,
            ),
            ("never heard from, new", node(-10, None), None, Healthy),
            ("never heard from, old", node(old, None), None, Unknown),
            (
                "lease from an earlier node of the name",
                node(-10, None),
                Some(lease(-600)),
                Healthy,
            ),
            (
                "agent says not ready",
                node(old, Some(("False", -100))),
                Some(lease(-1)),
                NotReady,
            ),
            (
                "not ready and stale",
                node(old, Some(("False", -100))),
                Some(lease(-100)),
                Unknown,
            ),
            (
                "back after Unknown",
                node(old, Some(("Unknown", -500))),
                Some(lease(-1)),
                Healthy,
            ),
        ];
        for (what, n, l, want) in cases {
            assert_eq!(node_health(&n, l.as_ref(), at(0), GRACE), want, "{what}");
        }
    }

    #[test]
    fn a_new_leader_gives_stale_nodes_a_grace_period_of_its_own() {
        use NodeHealth::*;
        let since = at(-10);
        let cases: Vec<(&str, Value, Option<Value>, NodeHealth)> = vec![
            (
                "stale, was Ready: not judged yet",
                node(-3600, Some(("True", -600))),
                Some(lease(-600)),
                Healthy,
            ),
            (
                "stale, was Unknown: stays Unknown",
                node(-3600, Some(("Unknown", -600))),
                Some(lease(-600)),
                Unknown,
            ),
            (
                "stale, was not ready",
                node(-3600, Some(("False", -600))),
                Some(lease(-600)),
                NotReady,
            ),
            (
                "fresh and Ready",
                node(-3600, Some(("True", -600))),
                Some(lease(-1)),
                Healthy,
            ),
            (
                "fresh, Unknown from before: back",
                node(-3600, Some(("Unknown", -600))),
                Some(lease(-1)),
                Healthy,
            ),
        ];
        for (what, n, l, want) in cases {
            assert_eq!(
                node_health_observed_since(&n, l.as_ref(), at(0), GRACE, since),
                want,
                "{what}"
            );
        }
        // Once the leader has watched for a grace period, stale is Unknown.
        let n = node(-3600, Some(("True", -600)));
        assert_eq!(
            node_health_observed_since(&n, Some(&lease(-600)), at(31), GRACE, since),
            Unknown
        );
        assert_eq!(
            node_health_observed_since(&n, Some(&lease(-600)), at(30), GRACE, since),
            Healthy,
            "exactly a grace period"
        );
    }

    #[test]
    fn unparsable_times_are_ignored_and_no_time_at_all_is_judged_by_the_condition() {
        let mut n = node(-3600, Some(("True", -5)));
        n["status"]["conditions"][0]["lastHeartbeatTime"] = json!("yesterday");
        assert_eq!(
            latest_heartbeat(&n, None),
            Some(at(-3600)),
            "creation time stands in"
        );
        n["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("creationTimestamp");
        assert_eq!(latest_heartbeat(&n, None), None);
        assert_eq!(node_health(&n, None, at(0), GRACE), NodeHealth::Healthy);
        n["status"]["conditions"][0]["status"] = json!("False");
        assert_eq!(node_health(&n, None, at(0), GRACE), NodeHealth::NotReady);
    }

    #[test]
    fn lease_micro_times_parse_and_the_newest_wins() {
        let n = node(-3600, Some(("True", -30)));
        let got = latest_heartbeat(&n, Some(&lease(-5))).expect("a heartbeat");
        assert_eq!(got.as_second(), at(-5).as_second());
        assert_eq!(
            stale_at(&n, Some(&lease(-5)), GRACE).map(|t| t.as_second()),
            Some(at(35).as_second())
        );
    }

    #[test]
    fn unknown_conditions_mark_ready_and_present_pressure_conditions() {
        let mut n = node(-3600, Some(("True", -100)));
        n["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .extend([
                json!({"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": ts(-100)}),
                json!({"type": "NetworkUnavailable", "status": "False"}),
            ]);
        let conds = unknown_conditions(&n, at(0)).expect("a change");
        assert_eq!(conds.len(), 3, "nothing added: {conds:?}");
        for c in &conds[..2] {
            assert_eq!(c["status"], "Unknown", "{c}");
            assert_eq!(c["reason"], REASON_NODE_STATUS_UNKNOWN);
            assert_eq!(c["message"], "Kubelet stopped posting node status.");
            assert_eq!(c["lastTransitionTime"], ts(0));
            assert_eq!(c["lastHeartbeatTime"], ts(-100), "heartbeat kept");
        }
        assert_eq!(
            conds[2],
            json!({"type": "NetworkUnavailable", "status": "False"})
        );

        set_status_conditions(&mut n, conds);
        assert_eq!(unknown_conditions(&n, at(10)), None, "already Unknown");
    }

    #[test]
    fn a_node_that_never_posted_gets_a_never_updated_ready_condition() {
        let n = node(-3600, None);
        let conds = unknown_conditions(&n, at(0)).expect("a change");
        assert_eq!(
            conds,
            vec![json!({
                "type": "Ready", "status": "Unknown",
                "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status.",
                "lastTransitionTime": ts(0), "lastHeartbeatTime": ts(-3600),
            })]
        );
    }

    fn with_taints(taints: Value) -> Value {
        let mut n = node(-3600, Some(("True", -5)));
        n["spec"]["taints"] = taints;
        n
    }

    #[test]
    fn taints_follow_health_and_keep_the_users() {
        use NodeHealth::*;
        let user = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let user_reserved = json!({"key": TAINT_UNREACHABLE, "effect": "PreferNoSchedule"});
        let unreachable_old =
            json!({"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(-60)});
        let unreachable_ns = json!({"key": TAINT_UNREACHABLE, "effect": "NoSchedule"});
        let unreachable_new =
            json!({"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(0)});
        let not_ready_old =
            json!({"key": TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": ts(-60)});
        let not_ready_ns = json!({"key": TAINT_NOT_READY, "effect": "NoSchedule"});
        let not_ready_new =
            json!({"key": TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": ts(0)});
        let cases: Vec<(&str, Value, NodeHealth, Option<Vec<Value>>)> = vec![
            ("healthy, untainted", json!(null), Healthy, None),
            ("healthy, user's taint", json!([user]), Healthy, None),
            (
                "unreachable: both taints, user's kept",
                json!([user]),
                Unknown,
                Some(vec![
                    user.clone(),
                    unreachable_new.clone(),
                    unreachable_ns.clone(),
                ]),
            ),
            (
                "unreachable again: nothing to do, timeAdded kept",
                json!([unreachable_old, unreachable_ns]),
                Unknown,
                None,
            ),
            (
                "half there: the missing one is added",
                json!([unreachable_old]),
                Unknown,
                Some(vec![unreachable_old.clone(), unreachable_ns.clone()]),
            ),
            (
                "not ready becomes unreachable",
                json!([not_ready_old, user, not_ready_ns]),
                Unknown,
                Some(vec![
                    user.clone(),
                    unreachable_new.clone(),
                    unreachable_ns.clone(),
                ]),
            ),
            (
                "agent reports not ready",
                json!([]),
                NotReady,
                Some(vec![not_ready_new.clone(), not_ready_ns.clone()]),
            ),
            (
                "back: ours removed, the user's stay",
                json!([user, unreachable_old, user_reserved, unreachable_ns]),
                Healthy,
                Some(vec![user.clone(), user_reserved.clone()]),
            ),
            (
                "back: nothing left",
                json!([not_ready_old, not_ready_ns]),
                Healthy,
                Some(vec![]),
            ),
        ];
        for (what, taints, health, want) in cases {
            assert_eq!(
                wanted_taints(&with_taints(taints), health, at(0)),
                want,
                "{what}"
            );
        }
    }

    fn taint(key: &str, value: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: NO_EXECUTE.into(),
            time_added: None,
        }
    }

    fn toleration(v: Value) -> Toleration {
        Toleration::from_json(&v)
    }

    #[test]
    fn tolerations_match_as_kubernetes_matches_them() {
        let cases = [
            (
                json!({"key": "k", "operator": "Exists"}),
                taint("k", "v"),
                true,
            ),
            (
                json!({"key": "k", "operator": "Equal", "value": "v"}),
                taint("k", "v"),
                true,
            ),
            (json!({"key": "k", "value": "v"}), taint("k", "v"), true),
            (json!({"key": "k", "value": "w"}), taint("k", "v"), false),
            (
                json!({"key": "other", "operator": "Exists"}),
                taint("k", "v"),
                false,
            ),
            (json!({"operator": "Exists"}), taint("k", "v"), true),
            (
                json!({"operator": "Exists", "effect": "NoExecute"}),
                taint("k", "v"),
                true,
            ),
            (
                json!({"operator": "Exists", "effect": "NoSchedule"}),
                taint("k", "v"),
                false,
            ),
            (
                json!({"key": "k", "operator": "Lt", "value": "v"}),
                taint("k", "v"),
                false,
            ),
        ];
        for (tol, taint, want) in cases {
            assert_eq!(toleration(tol.clone()).tolerates(&taint), want, "{tol}");
        }
    }

    #[test]
    fn eviction_deadlines_come_from_tolerations_and_taint_times() {
        let unreachable = (taint(TAINT_UNREACHABLE, ""), at(-60));
        let user = (taint("dedicated", "x"), at(-10));
        let for_300 = json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let for_ever =
            json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
        let user_for_20 = json!({"key": "dedicated", "value": "x", "effect": "NoExecute", "tolerationSeconds": 20});
        let cases: Vec<(&str, Vec<Value>, Vec<TimedTaint>, Eviction)> = vec![
            ("no taint", vec![], vec![], Eviction::Never),
            (
                "untolerated",
                vec![],
                vec![unreachable.clone()],
                Eviction::Now,
            ),
            (
                "tolerated for 300 s from timeAdded",
                vec![for_300.clone()],
                vec![unreachable.clone()],
                Eviction::At(at(240)),
            ),
            (
                "tolerated for ever",
                vec![for_ever.clone()],
                vec![unreachable.clone()],
                Eviction::Never,
            ),
            (
                "the earliest of two",
                vec![for_300.clone(), user_for_20.clone()],
                vec![unreachable.clone(), user.clone()],
                Eviction::At(at(10)),
            ),
            (
                "one for ever, one timed",
                vec![for_ever.clone(), user_for_20.clone()],
                vec![unreachable.clone(), user.clone()],
                Eviction::At(at(10)),
            ),
            (
                "one of two untolerated",
                vec![for_300.clone()],
                vec![unreachable.clone(), user.clone()],
                Eviction::Now,
            ),
            (
                "the first matching toleration counts",
                vec![for_ever.clone(), for_300.clone()],
                vec![unreachable.clone()],
                Eviction::Never,
            ),
            (
                "zero seconds: at the taint's time",
                vec![json!({"operator": "Exists", "tolerationSeconds": 0})],
                vec![unreachable.clone()],
                Eviction::At(at(-60)),
            ),
            (
                "negative seconds: at the taint's time",
                vec![json!({"operator": "Exists", "tolerationSeconds": -5})],
                vec![unreachable.clone()],
                Eviction::At(at(-60)),
            ),
            (
                "a NoSchedule toleration does not cover NoExecute",
                vec![json!({"operator": "Exists", "effect": "NoSchedule"})],
                vec![unreachable.clone()],
                Eviction::Now,
            ),
        ];
        for (what, tols, taints, want) in cases {
            let tols: Vec<Toleration> = tols.into_iter().map(toleration).collect();
            assert_eq!(eviction_deadline(&tols, &taints), want, "{what}");
        }
        assert!(Eviction::At(at(0)).due(at(0)));
        assert!(!Eviction::At(at(1)).due(at(0)));
        assert!(Eviction::Now.due(at(0)));
        assert!(!Eviction::Never.due(at(0)));
    }

    /// A pod as admission leaves it (default tolerations of 300 s), bound to n1 and ready.
    fn pod(extra_tolerations: Value) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "12"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
                     "tolerations": extra_tolerations},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": ts(-900)},
            ]},
        });
        // Admission starts a pod Pending; these pods have run since.
        let status = p["status"].clone();
        corral_api::admission::admit_new_pod(&mut p);
        p["status"] = status;
        p
    }

    #[test]
    fn admitted_pods_tolerate_an_unreachable_node_for_five_minutes() {
        let p = pod(json!([]));
        let taints = [(taint(TAINT_UNREACHABLE, ""), at(-60))];
        assert_eq!(
            eviction_deadline(&tolerations(&p), &taints),
            Eviction::At(at(240))
        );
        let taints = [(taint(TAINT_NOT_READY, ""), at(-60))];
        assert_eq!(
            eviction_deadline(&tolerations(&p), &taints),
            Eviction::At(at(240))
        );
    }

    #[test]
    fn pod_plans() {
        use NodeHealth::*;
        let unreachable = vec![(taint(TAINT_UNREACHABLE, ""), at(-60))];
        let not_ready = vec![(taint(TAINT_NOT_READY, ""), at(-60))];
        let user_taint = vec![(taint("k", ""), at(-60))];
        let short = json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                           {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
        let mut terminating = pod(short.clone());
        terminating["metadata"]["deletionTimestamp"] = json!(ts(-30));
        let mut not_ready_pod = pod(json!([]));
        not_ready_pod["status"]["conditions"][1]["status"] = json!("False");

        let marked = |p: &Value| pod_not_ready_conditions(p, at(0));
        let cases: Vec<(&str, Value, NodeHealth, &[TimedTaint], PodPlan)> = vec![
            (
                "unreachable, tolerated: marked not ready, evicted later",
                pod(json!([])),
                Unknown,
                &unreachable,
                PodPlan {
                    not_ready_conditions: marked(&pod(json!([]))),
                    eviction: PodEviction::At(at(240)),
                },
            ),
            (
                "unreachable, toleration run out: deleted outright",
                pod(short.clone()),
                Unknown,
                &unreachable,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::Now {
                        grace_period_seconds: Some(0),
                    },
                },
            ),
            (
                "not ready, toleration run out: graceful deletion",
                pod(short.clone()),
                NotReady,
                &not_ready,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::Now {
                        grace_period_seconds: None,
                    },
                },
            ),
            (
                "not ready, tolerated: pods left to their agent",
                pod(json!([])),
                NotReady,
                &not_ready,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::At(at(240)),
                },
            ),
            (
                "terminating on a live node: its agent finishes it",
                terminating.clone(),
                NotReady,
                &not_ready,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::None,
                },
            ),
            (
                "terminating on an unreachable node: nobody will finish it",
                terminating.clone(),
                Unknown,
                &unreachable,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::Now {
                        grace_period_seconds: Some(0),
                    },
                },
            ),
            (
                "already not ready: nothing to mark",
                not_ready_pod.clone(),
                Unknown,
                &unreachable,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::At(at(240)),
                },
            ),
            (
                "unknown but untainted yet: marked only",
                pod(json!([])),
                Unknown,
                &[],
                PodPlan {
                    not_ready_conditions: marked(&pod(json!([]))),
                    eviction: PodEviction::None,
                },
            ),
            (
                "healthy with a user's NoExecute taint tolerated for ever",
                pod(json!([{"key": "k", "operator": "Exists", "effect": "NoExecute"}])),
                Healthy,
                &user_taint,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::None,
                },
            ),
            (
                "healthy with a user's NoExecute taint not tolerated",
                pod(json!([])),
                Healthy,
                &user_taint,
                PodPlan {
                    not_ready_conditions: None,
                    eviction: PodEviction::Now {
                        grace_period_seconds: None,
                    },
                },
            ),
        ];
        for (what, p, health, taints, want) in cases {
            assert_eq!(plan_pod(&p, health, taints, at(0)), want, "{what}");
        }
    }

    #[test]
    fn marking_a_pod_not_ready_changes_only_its_ready_condition() {
        let p = pod(json!([]));
        let conds = pod_not_ready_conditions(&p, at(0)).expect("a change");
        assert_eq!(conds[0], json!({"type": "PodScheduled", "status": "True"}));
        assert_eq!(
            conds[1],
            json!({"type": "Ready", "status": "False", "lastTransitionTime": ts(0)})
        );
        let mut no_ready = p.clone();
        no_ready["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
        assert_eq!(pod_not_ready_conditions(&no_ready, at(0)), None);
    }

    #[test]
    fn the_disruption_target_condition_is_added_once() {
        let mut p = pod(json!([]));
        let conds = disruption_target_conditions(&p, at(0)).expect("a change");
        assert_eq!(conds.len(), 3);
        assert_eq!(
            conds[2],
            json!({"type": "DisruptionTarget", "status": "True",
                   "reason": "DeletionByTaintManager",
                   "message": "Taint manager: deleting due to NoExecute taint",
                   "lastTransitionTime": ts(0)})
        );
        set_status_conditions(&mut p, conds);
        assert_eq!(disruption_target_conditions(&p, at(5)), None);
    }

    #[test]
    fn no_execute_taints_are_read_with_their_times() {
        let n = with_taints(json!([
            {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(-60)},
            {"key": TAINT_UNREACHABLE, "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoExecute"},
        ]));
        assert_eq!(
            no_execute_taints(&n),
            vec![
                Taint {
                    time_added: Some(at(-60)),
                    ..taint(TAINT_UNREACHABLE, "")
                },
                taint("k", "v"),
            ]
        );
    }

    #[test]
    fn times_are_written_in_whole_seconds() {
        assert_eq!(
            format_time(t("2026-01-01T00:00:01.987654Z")),
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(parse_time(Some(&json!("not a time"))), None);
        assert_eq!(parse_time(None), None);
    }

    #[test]
    fn default_options_are_kubernetes_timings() {
        let o = NodeLifecycleOptions::default();
        assert_eq!(o.grace_period, Duration::from_secs(40));
        assert_eq!(o.monitor_period, Duration::from_secs(5));
    }
}

//! The leader-run scheduler: watches Nodes and Pods through shared informers, places pending
//! pods in batches against one [`Snapshot`] and binds each batch with one `Bind` call.
//!
//! - **Which pods.** A pod is the scheduler's when it has no `spec.nodeName`, its
//!   `spec.schedulerName` is this scheduler's (`default-scheduler` by default), it is not being
//!   deleted, has not finished and has no `spec.schedulingGates`.
//! - **The queue** ([`Queue`]), as kube-scheduler's: *active* pods in arrival order; pods
//!   whose bind failed wait in *backoff* (1 s doubling to 10 s); *unschedulable* pods wait until
//!   the cluster changes in a way that may help them (a Node added or changed in what scheduling
//!   reads, a bound pod deleted or finished, an update of the pod itself), or until they have
//!   waited [`SchedulerOptions::retry_period`].
//! - **Batches.** Everything active (up to [`SchedulerOptions::batch_size`]) is placed with
//!   [`schedule_batch`] against one snapshot that also holds the pods assumed by earlier batches,
//!   so no batch gives out capacity twice. The batch is bound with one `Bind` call (one Raft
//!   entry); the next batch may be placed while up to
//!   [`SchedulerOptions::max_binds_in_flight`] binds are in flight. A placed pod stays assumed
//!   on its node until its bind answers; a failed binding (Conflict, NotFound...) is forgotten,
//!   and the pod goes to backoff.
//! - **Outcomes.** A bound pod gets a `Scheduled` Normal event "Successfully assigned ns/p to
//!   n1". A pod no node fits gets the PodScheduled=False condition (reason `Unschedulable`,
//!   Kubernetes' "0/3 nodes are available: ..." message) through a status update carrying its
//!   resourceVersion, unless the condition already says exactly that, and a `FailedScheduling`
//!   Warning event. Events go through the asynchronous [`EventRecorder`], so they never slow
//!   binding down.
//! - **The snapshot** is kept up to date from the informers' changes (a pod bound, deleted or
//!   finished is counted or forgotten) and rebuilt from the caches when a Node changes in what
//!   scheduling reads, or after a relist.
//!
//! - **Volumes.** PersistentVolumeClaims, PersistentVolumes and StorageClasses come from their
//!   own informers into the snapshot's [`VolumeState`] (rebuilt on every change of them, which
//!   also retries unschedulable pods). Before a pod with unbound WaitForFirstConsumer claims is
//!   bound, each such claim is annotated `volume.kubernetes.io/selected-node: <node>` (a merge
//!   patch), so the PV controller binds it, or its provisioner makes a volume, on that node; a
//!   pod whose claim cannot be annotated (deleted meanwhile) is not bound and goes to backoff.
//!
//! The pure part (queue, snapshot bookkeeping, plans) is [`Planner`]; [`run`] feeds it
//! informer changes and bind answers and performs the writes it asks for.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_client::{Change, Client, EventRecorder, Informer};
use corral_proto::v1::Binding;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::pod::PodInfo;
use crate::schedule::{Placement, ScheduleError, schedule_batch};
use crate::snapshot::Snapshot;
use crate::volumes::VolumeState;

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// How the driver batches, retries and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Pods whose `spec.schedulerName` is this are this scheduler's; also the events' source
    /// component.
    pub scheduler_name: String,
    /// Most pods placed and bound together (default 500; the API takes up to 1,000 bindings).
    pub batch_size: usize,
    /// An unschedulable pod is tried again at least this often (default 30 s), even when
    /// nothing in the cluster changed.
    pub retry_period: Duration,
    /// Bind calls in flight at once: the next batch is placed while earlier ones bind
    /// (default 2).
    pub max_binds_in_flight: usize,
    /// The first wait after a failed bind, doubled each time up to `max_backoff` (1 s, 10 s).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// PodScheduled=False status writes in flight at once (default 16).
    pub status_writes_in_flight: usize,
    /// The events' `source.host` (default: this machine's host name).
    pub host: String,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            batch_size: 500,
            retry_period: Duration::from_secs(30),
            max_binds_in_flight: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            status_writes_in_flight: 16,
            host: host_name(),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "corral".to_string())
}

// ---------------------------------------------------------------------------------------------
// Reading pods and nodes
// ---------------------------------------------------------------------------------------------

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// `namespace/name`: the queue's key, and the snapshot's.
pub fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        str_at(pod, "/metadata/namespace").unwrap_or_default(),
        str_at(pod, "/metadata/name").unwrap_or_default()
    )
}

/// A stand-in holding only the namespace and name of a key, for [`Snapshot::forget`].
fn key_stub(key: &str) -> Value {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    json!({ "metadata": { "namespace": namespace, "name": name } })
}

fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid").unwrap_or_default()
}

/// `spec.nodeName`, when set.
pub fn bound_node(pod: &Value) -> Option<&str> {
    str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty())
}

/// Whether the pod has finished (phase `Succeeded` or `Failed`).
pub fn finished(pod: &Value) -> bool {
    matches!(
        str_at(pod, "/status/phase"),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether the pod occupies a node: bound and not finished.
fn holds_node(pod: &Value) -> Option<&str> {
    if finished(pod) { None } else { bound_node(pod) }
}

/// Whether this scheduler should place the pod now: unbound, its scheduler, not being deleted,
/// not finished, no scheduling gates.
pub fn wants_scheduling(pod: &Value, scheduler_name: &str) -> bool {
    let scheduler = str_at(pod, "/spec/schedulerName")
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME);
    let gated = pod
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty());
    bound_node(pod).is_none()
        && scheduler == scheduler_name
        && pod
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
        && !finished(pod)
        && !gated
}

/// Whether an update of a pending pod may change where it fits: its spec, labels or
/// annotations (not its status, which the scheduler itself writes).
pub fn scheduling_changed(old: &Value, new: &Value) -> bool {
    ["/spec", "/metadata/labels", "/metadata/annotations"]
        .iter()
        .any(|p| old.pointer(p) != new.pointer(p))
}

/// What scheduling reads from a Node: labels, taints, unschedulable, allocatable, readiness.
/// A change to anything else (heartbeats, images, addresses) neither rebuilds the snapshot nor
/// retries unschedulable pods.
pub fn node_fingerprint(node: &Value) -> Value {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status"))
        .cloned();
    json!([
        node.pointer("/metadata/labels"),
        node.pointer("/metadata/annotations")
            .and_then(|a| a.get(corral_api::storage::LOCAL_PATH_ROOT_ANNOTATION)),
        node.pointer("/spec/taints"),
        node.pointer("/spec/unschedulable"),
        node.pointer("/status/allocatable"),
        ready,
    ])
}

/// The pod with PodScheduled=False (`reason`, `message`), or `None` when its condition already
/// says exactly that. The transition time is kept when the condition was already False.
pub fn unschedulable_update(pod: &Value, reason: &str, message: &str, now: &str) -> Option<Value> {
    let conditions = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let current = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let was_false =
        current.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("False"));
    if was_false
        && current.is_some_and(|c| {
            c.get("reason").and_then(Value::as_str) == Some(reason)
                && c.get("message").and_then(Value::as_str) == Some(message)
        })
    {
        return None;
    }
    let transition = current
        .filter(|_| was_false)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .filter(|t| !t.is_null())
        .unwrap_or_else(|| json!(now));
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"))
        .collect();
    conditions.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }));
    let mut updated = pod.clone();
    if !updated.get("status").is_some_and(Value::is_object) {
        updated["status"] = json!({});
    }
    updated["status"]["conditions"] = Value::Array(conditions);
    Some(updated)
}

/// The binding that puts `pod` on `node`, with the pod's uid and resourceVersion as
/// preconditions.
pub fn binding_for(pod: &Value, node: &str) -> Binding {
    Binding {
        namespace: str_at(pod, "/metadata/namespace")
            .unwrap_or_default()
            .to_string(),
        name: str_at(pod, "/metadata/name")
            .unwrap_or_default()
            .to_string(),
        uid: uid(pod).to_string(),
        resource_version: str_at(pod, "/metadata/resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        node: node.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Taken by a batch. `removed`: the pod stopped wanting scheduling meanwhile; `updated`: it
    /// changed meanwhile (an unschedulable verdict is then retried at once).
    InFlight {
        removed: bool,
        updated: bool,
    },
}

/// The scheduling queue: each pod (by `namespace/name`) is in at most one place. Pure: time is
/// passed in.
#[derive(Debug)]
pub struct Queue {
    slots: HashMap<String, Slot>,
    /// Active keys in arrival order; may also hold keys that have since left (skipped).
    active: VecDeque<String>,
    active_len: usize,
    backoff: BTreeSet<(Instant, String)>,
    unschedulable: BTreeSet<(Instant, String)>,
    attempts: HashMap<String, u32>,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// How many pods are where, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

impl Queue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            slots: HashMap::new(),
            active: VecDeque::new(),
            active_len: 0,
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            attempts: HashMap::new(),
            initial_backoff,
            max_backoff,
        }
    }

    pub fn counts(&self) -> QueueCounts {
        let in_flight = self
            .slots
            .values()
            .filter(|s| matches!(s, Slot::InFlight { .. }))
            .count();
        QueueCounts {
            active: self.active_len,
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable.len(),
            in_flight,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.slots.contains_key(key)
    }

    fn set_active(&mut self, key: String) {
        self.slots.insert(key.clone(), Slot::Active);
        self.active_len += 1;
        self.active.push_back(key);
        // Keys that left the active list stay in the deque until popped; keep it compact.
        if self.active.len() > 2 * self.active_len + 1024 {
            let slots = &self.slots;
            let mut seen = HashSet::new();
            self.active
                .retain(|k| slots.get(k) == Some(&Slot::Active) && seen.insert(k.clone()));
        }
    }

    /// Takes the key out of wherever it waits (not out of flight).
    fn leave(&mut self, key: &str) {
        match self.slots.get(key).copied() {
            Some(Slot::Active) => self.active_len -= 1,
            Some(Slot::Backoff(at)) => {
                self.backoff.remove(&(at, key.to_string()));
            }
            Some(Slot::Unschedulable(since)) => {
                self.unschedulable.remove(&(since, key.to_string()));
            }
            Some(Slot::InFlight { .. }) | None => return,
        }
        self.slots.remove(key);
    }

    /// A pod that wants scheduling was seen: queued unless it already waits somewhere.
    pub fn add(&mut self, key: &str) {
        if !self.slots.contains_key(key) {
            self.set_active(key.to_string());
        }
    }

    /// A pending pod changed in a way that may change where it fits: an unschedulable pod is
    /// retried at once.
    pub fn update(&mut self, key: &str) {
        match self.slots.get_mut(key) {
            None => self.set_active(key.to_string()),
            Some(Slot::Unschedulable(_)) => {
                self.leave(key);
                self.set_active(key.to_string());
            }
            Some(Slot::InFlight { updated, .. }) => *updated = true,
            Some(Slot::Active | Slot::Backoff(_)) => {}
        }
    }

    /// The pod no longer wants scheduling (bound, deleted, being deleted).
    pub fn remove(&mut self, key: &str) {
        match self.slots.get_mut(key) {
            Some(Slot::InFlight { removed, .. }) => *removed = true,
            Some(_) => {
                self.leave(key);
                self.attempts.remove(key);
            }
            None => {}
        }
    }

    /// Whether [`Queue::pop_batch`] would answer something now.
    pub fn has_ready(&self, now: Instant) -> bool {
        self.active_len > 0 || self.backoff.first().is_some_and(|(at, _)| *at <= now)
    }

    /// Up to `max` pods, in arrival order (backoffs that are over first join the active ones);
    /// they are in flight until `done`, `unschedulable` or `failed`.
    pub fn pop_batch(&mut self, max: usize, now: Instant) -> Vec<String> {
        while let Some((at, _)) = self.backoff.first()
            && *at <= now
        {
            if let Some((_, key)) = self.backoff.pop_first() {
                self.slots.remove(&key);
                self.set_active(key);
            }
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(key) = self.active.pop_front() else {
                break;
            };
            if self.slots.get(&key) == Some(&Slot::Active) {
                self.active_len -= 1;
                self.slots.insert(
                    key.clone(),
                    Slot::InFlight {
                        removed: false,
                        updated: false,
                    },
                );
                out.push(key);
            }
        }
        out
    }

    fn take_in_flight(&mut self, key: &str) -> Option<(bool, bool)> {
        match self.slots.get(key).copied() {
            Some(Slot::InFlight { removed, updated }) => {
                self.slots.remove(key);
                Some((removed, updated))
            }
            _ => None,
        }
    }

    /// The pod was bound, or turned out not to need scheduling: forgotten.
    pub fn done(&mut self, key: &str) {
        if self.take_in_flight(key).is_some() {
            self.attempts.remove(key);
        }
    }

    /// No node fits the pod now: it waits for a cluster change or the retry period (or, when
    /// it was updated while being placed, is retried at once).
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        match self.take_in_flight(key) {
            Some((true, _)) => {
                self.attempts.remove(key);
            }
            Some((false, true)) => self.set_active(key.to_string()),
            Some((false, false)) => {
                self.slots.insert(key.to_string(), Slot::Unschedulable(now));
                self.unschedulable.insert((now, key.to_string()));
            }
            None => {}
        }
    }

    /// Its bind failed: retried after a back-off that doubles with each failure.
    pub fn failed(&mut self, key: &str, now: Instant) {
        match self.take_in_flight(key) {
            Some((true, _)) => {
                self.attempts.remove(key);
            }
            Some((false, _)) => {
                let n = self.attempts.entry(key.to_string()).or_insert(0);
                let delay = self
                    .initial_backoff
                    .saturating_mul(1u32 << (*n).min(16))
                    .min(self.max_backoff);
                *n = n.saturating_add(1);
                let at = now + delay;
                self.slots.insert(key.to_string(), Slot::Backoff(at));
                self.backoff.insert((at, key.to_string()));
            }
            None => {}
        }
    }

    /// The cluster changed in a way that may help: every unschedulable pod is retried, oldest
    /// first.
    pub fn move_all_unschedulable(&mut self) {
        for (_, key) in std::mem::take(&mut self.unschedulable) {
            self.slots.remove(&key);
            self.set_active(key);
        }
    }

    /// Unschedulable pods that have waited `period` are retried.
    pub fn flush_unschedulable(&mut self, now: Instant, period: Duration) {
        while let Some((since, _)) = self.unschedulable.first()
            && *since + period <= now
        {
            if let Some((_, key)) = self.unschedulable.pop_first() {
                self.slots.remove(&key);
                self.set_active(key);
            }
        }
    }

    /// When a backoff ends or an unschedulable pod's `period` is up, whichever is first.
    pub fn next_wakeup(&self, period: Duration) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(at, _)| *at);
        let retry = self.unschedulable.first().map(|(since, _)| *since + period);
        match (backoff, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps only the keys `keep` accepts (pods in flight are marked removed instead).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.slots.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.remove(&key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The planner: queue + snapshot + assumed pods, no I/O
// ---------------------------------------------------------------------------------------------

/// A pod placed by a batch whose binding has not been confirmed by the informer yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assumed {
    uid: String,
    node: String,
    /// Its bind has not answered yet.
    in_flight: bool,
}

/// One binding of a batch, with the pod it was planned from.
#[derive(Debug, Clone)]
pub struct PlannedBind {
    pub key: String,
    pub pod: Arc<Value>,
    pub binding: Binding,
    /// WaitForFirstConsumer claims (`namespace`, `name`) to annotate with the chosen node
    /// before the pod is bound.
    pub select_node_on: Vec<(String, String)>,
}

/// A pod that got no placement: the condition reason and message to report.
#[derive(Debug, Clone)]
pub struct Failure {
    pub pod: Arc<Value>,
    pub reason: &'static str,
    pub message: String,
}

/// What placing a batch decided.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub binds: Vec<PlannedBind>,
    pub failures: Vec<Failure>,
}

/// Looks a pod up by `namespace/name` in the current cache.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<Arc<Value>>;

/// The driver's state and decisions, without I/O: fed informer changes and bind answers, it
/// answers batches to place and bindings to send.
pub struct Planner {
    scheduler_name: String,
    batch_size: usize,
    retry_period: Duration,
    queue: Queue,
    snapshot: Snapshot,
    /// The snapshot must be rebuilt from the caches before its next use.
    dirty: bool,
    assumed: HashMap<String, Assumed>,
    node_prints: HashMap<String, Value>,
}

impl Planner {
    pub fn new(opts: &SchedulerOptions) -> Self {
        Self {
            scheduler_name: opts.scheduler_name.clone(),
            batch_size: opts.batch_size.max(1),
            retry_period: opts.retry_period,
            queue: Queue::new(opts.initial_backoff, opts.max_backoff),
            snapshot: Snapshot::default(),
            dirty: true,
            assumed: HashMap::new(),
            node_prints: HashMap::new(),
        }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn needs_rebuild(&self) -> bool {
        self.dirty
    }

    /// The whole node list (start, relist): the snapshot is rebuilt and unschedulable pods
    /// retried.
    pub fn resync_nodes(&mut self, nodes: &[Arc<Value>]) {
        self.node_prints = nodes
            .iter()
            .map(|n| {
                (
                    str_at(n, "/metadata/name").unwrap_or_default().to_string(),
                    node_fingerprint(n),
                )
            })
            .collect();
        self.dirty = true;
        self.queue.move_all_unschedulable();
    }

    pub fn node_changed(&mut self, change: &Change) {
        match change {
            Change::Added(n) | Change::Modified { new: n, .. } => {
                let name = str_at(n, "/metadata/name").unwrap_or_default().to_string();
                let print = node_fingerprint(n);
                if self.node_prints.get(&name) != Some(&print) {
                    self.node_prints.insert(name, print);
                    self.dirty = true;
                    self.queue.move_all_unschedulable();
                }
            }
            Change::Deleted(n) => {
                self.node_prints
                    .remove(str_at(n, "/metadata/name").unwrap_or_default());
                self.dirty = true;
            }
            Change::Relisted => {
                self.dirty = true;
                self.queue.move_all_unschedulable();
            }
        }
    }

    /// The whole pod list (start, relist): the queue holds exactly the pods that want
    /// scheduling, and the snapshot is rebuilt.
    pub fn resync_pods(&mut self, pods: &[Arc<Value>]) {
        let wanted: HashSet<String> = pods
            .iter()
            .filter(|p| wants_scheduling(p, &self.scheduler_name))
            .map(|p| pod_key(p))
            .collect();
        self.queue.retain(|k| wanted.contains(k));
        for p in pods {
            if wants_scheduling(p, &self.scheduler_name) {
                self.queue.add(&pod_key(p));
            }
        }
        self.dirty = true;
    }

    pub fn pod_changed(&mut self, change: &Change) {
        match change {
            Change::Added(p) => self.observe(None, Some(p)),
            Change::Modified { old, new } => self.observe(Some(old), Some(new)),
            Change::Deleted(p) => self.observe(Some(p), None),
            // The differences came as changes already; the caller may also resync_pods.
            Change::Relisted => self.dirty = true,
        }
    }

    fn observe(&mut self, old: Option<&Value>, new: Option<&Value>) {
        let Some(key) = new.or(old).map(pod_key) else {
            return;
        };
        let name = self.scheduler_name.as_str();
        match new {
            Some(p) if wants_scheduling(p, name) => {
                if old.is_some_and(|o| wants_scheduling(o, name) && scheduling_changed(o, p)) {
                    self.queue.update(&key);
                } else {
                    self.queue.add(&key);
                }
            }
            _ => self.queue.remove(&key),
        }
        // Capacity freed: a pod that held a node no longer does.
        let held = old.and_then(holds_node);
        if held.is_some() && held != new.and_then(holds_node) {
            self.queue.move_all_unschedulable();
        }
        self.sync_pod(&key, new);
    }

    /// Makes the snapshot count the pod as `current` says (bound and not finished: on its
    /// node; otherwise nowhere), except while a bind of ours for it is unanswered or not yet
    /// seen by the informer.
    fn sync_pod(&mut self, key: &str, current: Option<&Value>) {
        if self.dirty {
            // A rebuild reads everything (assumed pods included) before the next batch.
            return;
        }
        if let Some(a) = self.assumed.get(key) {
            if a.in_flight {
                return;
            }
            let not_seen_bound_yet =
                current.is_some_and(|p| uid(p) == a.uid && bound_node(p).is_none() && !finished(p));
            if not_seen_bound_yet {
                return;
            }
            self.assumed.remove(key);
        }
        let desired = current.and_then(holds_node);
        let have = self.snapshot.node_of(key);
        if desired == have {
            return;
        }
        if have.is_some() {
            let _ = self.snapshot.forget(&key_stub(key));
        }
        if let (Some(node), Some(pod)) = (desired, current)
            && let Err(e) = self.snapshot.assume(pod, node)
        {
            tracing::debug!(pod = key, error = %e, "scheduler: cannot count a bound pod");
        }
    }

    /// Rebuilds the snapshot from the caches when needed, counting every assumed pod the
    /// caches do not show bound yet.
    pub fn ensure_snapshot(&mut self, nodes: &[Arc<Value>], pods: &[Arc<Value>], lookup: Lookup) {
        if !self.dirty {
            return;
        }
        let nodes: Vec<Value> = nodes.iter().map(|n| (**n).clone()).collect();
        let bound: Vec<Value> = pods
            .iter()
            .filter(|p| holds_node(p).is_some())
            .map(|p| (**p).clone())
            .collect();
        let volumes = self.snapshot.take_volumes();
        self.snapshot = Snapshot::new(&nodes, &bound);
        self.snapshot.set_volumes(volumes);
        for w in self.snapshot.warnings() {
            tracing::debug!(warning = %w, "scheduler: snapshot");
        }
        let mut stale = Vec::new();
        for (key, a) in &self.assumed {
            match lookup(key) {
                Some(p) if uid(&p) == a.uid && bound_node(&p).is_none() && !finished(&p) => {
                    if let Err(e) = self.snapshot.assume(&p, &a.node) {
                        tracing::debug!(pod = %key, error = %e, "scheduler: cannot count an assumed pod");
                    }
                }
                _ if a.in_flight => {}
                _ => stale.push(key.clone()),
            }
        }
        for key in stale {
            self.assumed.remove(&key);
        }
        self.dirty = false;
    }

    pub fn has_ready(&self, now: Instant) -> bool {
        self.queue.has_ready(now)
    }

    /// The claims, volumes or classes changed: placement uses the new ones (keeping the volumes
    /// assumed for pods not yet seen bound), and unschedulable pods are retried.
    pub fn volumes_changed(
        &mut self,
        claims: &[Arc<Value>],
        pvs: &[Arc<Value>],
        classes: &[Arc<Value>],
    ) {
        let next = VolumeState::new(
            claims.iter().map(|c| &**c),
            pvs.iter().map(|v| &**v),
            classes.iter().map(|c| &**c),
            Some(self.snapshot.volumes()),
        );
        self.snapshot.set_volumes(next);
        self.queue.move_all_unschedulable();
    }

    /// The next batch: the queued pods (up to the batch size) that still want scheduling, as
    /// the cache holds them now.
    pub fn take_batch(&mut self, now: Instant, lookup: Lookup) -> Vec<Arc<Value>> {
        let keys = self.queue.pop_batch(self.batch_size, now);
        let mut pods = Vec::with_capacity(keys.len());
        for key in keys {
            match lookup(&key) {
                Some(p) if wants_scheduling(&p, &self.scheduler_name) => pods.push(p),
                _ => self.queue.done(&key),
            }
        }
        pods
    }

    /// Places a batch against the snapshot (the pure step [`run`] runs off the async threads).
    pub fn place(&mut self, pods: &[Arc<Value>]) -> Vec<Result<Placement, ScheduleError>> {
        let values: Vec<Value> = pods.iter().map(|p| (**p).clone()).collect();
        schedule_batch(&mut self.snapshot, &values)
    }

    /// Takes the placement results of a batch: placed pods are assumed (in flight) and their
    /// bindings returned; the others are reported and wait.
    pub fn apply_plan(
        &mut self,
        pods: Vec<Arc<Value>>,
        results: Vec<Result<Placement, ScheduleError>>,
        now: Instant,
    ) -> Plan {
        let mut plan = Plan::default();
        let mut results = results.into_iter();
        for pod in pods {
            let key = pod_key(&pod);
            match results.next() {
                Some(Ok(placement)) => {
                    self.assumed.insert(
                        key.clone(),
                        Assumed {
                            uid: uid(&pod).to_string(),
                            node: placement.node.clone(),
                            in_flight: true,
                        },
                    );
                    let binding = binding_for(&pod, &placement.node);
                    let select_node_on = match PodInfo::from_pod(&pod) {
                        Ok(info) if !info.claim_names().is_empty() => self
                            .snapshot
                            .volumes()
                            .claims_to_select(&info, &placement.node),
                        _ => Vec::new(),
                    };
                    plan.binds.push(PlannedBind {
                        key,
                        pod,
                        binding,
                        select_node_on,
                    });
                }
                Some(Err(ScheduleError::Unschedulable(u))) => {
                    self.queue.unschedulable(&key, now);
                    plan.failures.push(Failure {
                        pod,
                        reason: "Unschedulable",
                        message: u.message,
                    });
                }
                Some(Err(e @ ScheduleError::InvalidPod { .. })) => {
                    self.queue.unschedulable(&key, now);
                    plan.failures.push(Failure {
                        pod,
                        reason: "SchedulerError",
                        message: e.to_string(),
                    });
                }
                Some(Err(ScheduleError::AlreadyAssigned { .. })) => self.queue.done(&key),
                None => self.queue.failed(&key, now),
            }
        }
        plan
    }

    /// Takes a batch's bind answer (or the call's error); answers the pods bound, as the server
    /// returned them, with their nodes.
    pub fn bind_finished(
        &mut self,
        binds: Vec<PlannedBind>,
        answer: Result<Vec<Result<Value, ApiError>>, ApiError>,
        now: Instant,
        lookup: Lookup,
    ) -> Vec<(Value, String)> {
        let results: Vec<Result<Value, ApiError>> = match answer {
            Ok(r) => r,
            Err(e) => binds.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results = results.into_iter();
        let mut bound = Vec::new();
        for b in binds {
            let result = results
                .next()
                .unwrap_or_else(|| Err(ApiError::internal("no bind result for this pod")));
            match result {
                Ok(pod) => {
                    if let Some(a) = self.assumed.get_mut(&b.key) {
                        a.in_flight = false;
                    }
                    self.queue.done(&b.key);
                    self.sync_pod(&b.key, lookup(&b.key).as_deref());
                    bound.push((pod, b.binding.node));
                }
                Err(e) => {
                    tracing::debug!(pod = %b.key, node = %b.binding.node, error = %e, "scheduler: binding failed");
                    if self.assumed.get(&b.key).is_some_and(|a| a.in_flight) {
                        self.assumed.remove(&b.key);
                        if !self.dirty {
                            let _ = self.snapshot.forget(&key_stub(&b.key));
                        }
                        // What it was assumed to hold is free again (as kube-scheduler does).
                        self.queue.move_all_unschedulable();
                    }
                    if matches!(e, ApiError::NotFound { .. }) {
                        self.queue.done(&b.key);
                    } else {
                        self.queue.failed(&b.key, now);
                    }
                    // Someone (or an earlier attempt of ours) may have bound it: count that.
                    self.sync_pod(&b.key, lookup(&b.key).as_deref());
                }
            }
        }
        bound
    }

    /// Retries the unschedulable pods that have waited the retry period.
    pub fn tick(&mut self, now: Instant) {
        self.queue.flush_unschedulable(now, self.retry_period);
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_wakeup(self.retry_period)
    }
}

// ---------------------------------------------------------------------------------------------
// The async driver
// ---------------------------------------------------------------------------------------------

/// What a bind task answers.
struct BindDone {
    binds: Vec<PlannedBind>,
    answer: Result<Vec<Result<Value, ApiError>>, ApiError>,
}

/// Runs the scheduler until `cancel` (the loss of leadership) is cancelled.
pub async fn run(client: Client, opts: SchedulerOptions, cancel: CancellationToken) {
    let token = cancel.child_token();
    let _stop_informers = token.clone().drop_guard();
    let nodes = Informer::builder(client.clone(), "Node").start(token.clone());
    let pods = Informer::builder(client.clone(), "Pod").start(token.clone());
    let claims = Informer::builder(client.clone(), "PersistentVolumeClaim").start(token.clone());
    let pvs = Informer::builder(client.clone(), "PersistentVolume").start(token.clone());
    let classes = Informer::builder(client.clone(), "StorageClass").start(token.clone());
    let mut node_rx = nodes.subscribe();
    let mut pod_rx = pods.subscribe();
    let mut claim_rx = claims.subscribe();
    let mut pv_rx = pvs.subscribe();
    let mut class_rx = classes.subscribe();
    tokio::select! {
        _ = token.cancelled() => return,
        _ = async {
            for i in [&nodes, &pods, &claims, &pvs, &classes] {
                i.wait_synced().await;
            }
        } => {}
    }
    if token.is_cancelled() {
        return;
    }
    let recorder = EventRecorder::new(client.clone(), &opts.scheduler_name, &opts.host);
    let status_slots = Arc::new(Semaphore::new(opts.status_writes_in_flight.max(1)));
    let mut planner = Planner::new(&opts);
    planner.resync_nodes(&nodes.list());
    planner.resync_pods(&pods.list());
    planner.volumes_changed(&claims.list(), &pvs.list(), &classes.list());
    tracing::info!(
        nodes = nodes.list().len(),
        pending = planner.queue().counts().active,
        "scheduler: started"
    );
    let lookup_pods = pods.clone();
    let lookup = move |key: &str| -> Option<Arc<Value>> {
        let (ns, name) = key.split_once('/')?;
        lookup_pods.get(ns, name)
    };
    let mut binds: JoinSet<BindDone> = JoinSet::new();
    let mut status_writes: JoinSet<()> = JoinSet::new();
    loop {
        // Take in everything already reported before deciding anything.
        while let Ok(change) = node_rx.try_recv() {
            on_node_change(&mut planner, &nodes, &change);
        }
        while let Ok(change) = pod_rx.try_recv() {
            on_pod_change(&mut planner, &pods, &change);
        }
        let mut volumes_changed = false;
        for rx in [&mut claim_rx, &mut pv_rx, &mut class_rx] {
            while rx.try_recv().is_ok() {
                volumes_changed = true;
            }
        }
        if volumes_changed {
            planner.volumes_changed(&claims.list(), &pvs.list(), &classes.list());
        }
        while status_writes.try_join_next().is_some() {}
        let now = Instant::now();
        planner.tick(now);
        if binds.len() < opts.max_binds_in_flight.max(1) && planner.has_ready(now) {
            if planner.needs_rebuild() {
                planner.ensure_snapshot(&nodes.list(), &pods.list(), &lookup);
            }
            let batch = planner.take_batch(now, &lookup);
            if !batch.is_empty() {
                let started = Instant::now();
                // Placing is CPU work (every node for every pod): off the async threads.
                let mut snapshot = std::mem::take(&mut planner.snapshot);
                let values: Vec<Value> = batch.iter().map(|p| (**p).clone()).collect();
                let placing = tokio::task::spawn_blocking(move || {
                    let results = schedule_batch(&mut snapshot, &values);
                    (snapshot, results)
                });
                let (snapshot, results) = tokio::select! {
                    _ = token.cancelled() => return,
                    placed = placing => match placed {
                        Ok(placed) => placed,
                        Err(e) => {
                            tracing::error!(error = %e, "scheduler: placing a batch failed");
                            planner.dirty = true;
                            let now = Instant::now();
                            for p in &batch {
                                planner.queue.failed(&pod_key(p), now);
                            }
                            continue;
                        }
                    },
                };
                planner.snapshot = snapshot;
                let plan = planner.apply_plan(batch, results, Instant::now());
                tracing::debug!(
                    placed = plan.binds.len(),
                    unschedulable = plan.failures.len(),
                    took = ?started.elapsed(),
                    queue = ?planner.queue().counts(),
                    "scheduler: batch placed"
                );
                for f in plan.failures {
                    report_unschedulable(&client, &recorder, &status_slots, &mut status_writes, f);
                }
                if !plan.binds.is_empty() {
                    let client = client.clone();
                    binds.spawn(async move {
                        // WaitForFirstConsumer claims learn their node before the pod is bound.
                        let mut selection_failed: HashMap<String, ApiError> = HashMap::new();
                        for b in &plan.binds {
                            if let Err(e) = select_node(&client, b).await {
                                selection_failed.insert(b.key.clone(), e);
                            }
                        }
                        let bindings: Vec<Binding> = plan
                            .binds
                            .iter()
                            .filter(|b| !selection_failed.contains_key(&b.key))
                            .map(|b| b.binding.clone())
                            .collect();
                        let sent = Instant::now();
                        let answer = if selection_failed.is_empty() {
                            client.bind(&bindings).await
                        } else {
                            let bound = if bindings.is_empty() {
                                Ok(Vec::new())
                            } else {
                                client.bind(&bindings).await
                            };
                            bound.map(|results| {
                                let mut results = results.into_iter();
                                plan.binds
                                    .iter()
                                    .map(|b| match selection_failed.remove(&b.key) {
                                        Some(e) => Err(e),
                                        None => results.next().unwrap_or_else(|| {
                                            Err(ApiError::internal("no bind result for this pod"))
                                        }),
                                    })
                                    .collect()
                            })
                        };
                        tracing::debug!(
                            bindings = bindings.len(),
                            took = ?sent.elapsed(),
                            ok = answer.as_ref().map_or(0, |r| r.iter().filter(|r| r.is_ok()).count()),
                            "scheduler: bind answered"
                        );
                        BindDone {
                            binds: plan.binds,
                            answer,
                        }
                    });
                }
                continue;
            }
        }
        let wake = planner
            .next_wakeup()
            .unwrap_or_else(|| Instant::now() + opts.retry_period);
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            Some(done) = binds.join_next() => match done {
                Ok(done) => {
                    let bound = planner.bind_finished(done.binds, done.answer, Instant::now(), &lookup);
                    for (pod, node) in bound {
                        let message = format!("Successfully assigned {} to {node}", pod_key(&pod));
                        recorder.event(&pod, "Normal", "Scheduled", message);
                    }
                }
                Err(e) => {
                    // A bind task cannot panic; if it did, its pods stay in flight until the
                    // next relist. Say so loudly.
                    tracing::error!(error = %e, "scheduler: a bind task failed");
                }
            },
            Some(change) = node_rx.recv() => on_node_change(&mut planner, &nodes, &change),
            Some(change) = pod_rx.recv() => on_pod_change(&mut planner, &pods, &change),
            Some(_) = claim_rx.recv() => planner.volumes_changed(&claims.list(), &pvs.list(), &classes.list()),
            Some(_) = pv_rx.recv() => planner.volumes_changed(&claims.list(), &pvs.list(), &classes.list()),
            Some(_) = class_rx.recv() => planner.volumes_changed(&claims.list(), &pvs.list(), &classes.list()),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    tracing::info!("scheduler: stopped");
}

/// Annotates the pod's WaitForFirstConsumer claims with the node chosen for it (Kubernetes'
/// volume binder does this in PreBind).
async fn select_node(client: &Client, b: &PlannedBind) -> Result<(), ApiError> {
    for (namespace, name) in &b.select_node_on {
        let patch = json!({"metadata": {"annotations": {
            (corral_api::storage::ANN_SELECTED_NODE): b.binding.node,
        }}});
        client
            .patch("PersistentVolumeClaim", namespace, name, &patch, false)
            .await?;
    }
    Ok(())
}

fn on_node_change(planner: &mut Planner, nodes: &Informer, change: &Change) {
    if matches!(change, Change::Relisted) {
        planner.resync_nodes(&nodes.list());
    } else {
        planner.node_changed(change);
    }
}

fn on_pod_change(planner: &mut Planner, pods: &Informer, change: &Change) {
    if matches!(change, Change::Relisted) {
        planner.resync_pods(&pods.list());
    } else {
        planner.pod_changed(change);
    }
}

/// PodScheduled=False (when it changes) and a FailedScheduling event, both in the background.
fn report_unschedulable(
    client: &Client,
    recorder: &EventRecorder,
    slots: &Arc<Semaphore>,
    writes: &mut JoinSet<()>,
    f: Failure,
) {
    tracing::debug!(pod = %pod_key(&f.pod), message = %f.message, "scheduler: unschedulable");
    recorder.event(&f.pod, "Warning", "FailedScheduling", f.message.clone());
    let Some(updated) = unschedulable_update(
        &f.pod,
        f.reason,
        &f.message,
        &corral_api::meta::now_rfc3339(),
    ) else {
        return;
    };
    let client = client.clone();
    let slots = slots.clone();
    writes.spawn(async move {
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        match client.update_status(&updated).await {
            Ok(_) => {}
            // Changed or gone meanwhile (bound, deleted): the next attempt writes it again if
            // it still applies.
            Err(e @ (ApiError::Conflict { .. } | ApiError::NotFound { .. })) => {
                tracing::debug!(pod = %pod_key(&updated), error = %e, "scheduler: PodScheduled not written")
            }
            Err(e) => {
                tracing::warn!(pod = %pod_key(&updated), error = %e, "scheduler: cannot write PodScheduled")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bound_to, node, pod_requesting, set};

    fn t0() -> Instant {
        Instant::now()
    }

    fn queue() -> Queue {
        Queue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn with_meta(p: Value, uid: &str, rv: u64) -> Value {
        let p = set(p, "/metadata/uid", json!(uid));
        set(p, "/metadata/resourceVersion", json!(rv.to_string()))
    }

    fn pending(name: &str, cpu: &str) -> Value {
        with_meta(pod_requesting(name, cpu, "1Gi"), &format!("uid-{name}"), 1)
    }

    // --- reading pods -------------------------------------------------------------------------

    #[test]
    fn which_pods_are_the_schedulers() {
        let p = pending("p", "1");
        assert!(wants_scheduling(&p, DEFAULT_SCHEDULER_NAME));
        assert!(!wants_scheduling(&p, "other-scheduler"));
        let named = set(p.clone(), "/spec/schedulerName", json!("other-scheduler"));
        assert!(wants_scheduling(&named, "other-scheduler"));
        assert!(!wants_scheduling(&named, DEFAULT_SCHEDULER_NAME));
        assert!(!wants_scheduling(
            &bound_to(p.clone(), "n1"),
            DEFAULT_SCHEDULER_NAME
        ));
        let deleting = set(
            p.clone(),
            "/metadata/deletionTimestamp",
            json!("2026-01-01T00:00:00Z"),
        );
        assert!(!wants_scheduling(&deleting, DEFAULT_SCHEDULER_NAME));
        let done = set(p.clone(), "/status/phase", json!("Failed"));
        assert!(!wants_scheduling(&done, DEFAULT_SCHEDULER_NAME));
        let gated = set(
            p.clone(),
            "/spec/schedulingGates",
            json!([{ "name": "example.com/wait" }]),
        );
        assert!(!wants_scheduling(&gated, DEFAULT_SCHEDULER_NAME));
        let ungated = set(p, "/spec/schedulingGates", json!([]));
        assert!(wants_scheduling(&ungated, DEFAULT_SCHEDULER_NAME));
    }

    #[test]
    fn status_changes_do_not_count_as_scheduling_changes() {
        let p = pending("p", "1");
        let status = set(
            p.clone(),
            "/status/conditions",
            json!([{ "type": "PodScheduled" }]),
        );
        let status = set(status, "/metadata/resourceVersion", json!("9"));
        assert!(!scheduling_changed(&p, &status));
        let tolerated = set(
            p.clone(),
            "/spec/tolerations",
            json!([{ "operator": "Exists" }]),
        );
        assert!(scheduling_changed(&p, &tolerated));
        let labelled = set(p.clone(), "/metadata/labels", json!({ "a": "b" }));
        assert!(scheduling_changed(&p, &labelled));
    }

    #[test]
    fn node_fingerprints_ignore_heartbeats() {
        let n = node("n1", "4", "8Gi", "110");
        let heartbeat = set(
            n.clone(),
            "/status/conditions/0/lastHeartbeatTime",
            json!("2026-01-01T00:00:00Z"),
        );
        assert_eq!(node_fingerprint(&n), node_fingerprint(&heartbeat));
        let not_ready = set(n.clone(), "/status/conditions/0/status", json!("False"));
        assert_ne!(node_fingerprint(&n), node_fingerprint(&not_ready));
        let cordoned = set(n.clone(), "/spec/unschedulable", json!(true));
        assert_ne!(node_fingerprint(&n), node_fingerprint(&cordoned));
        let bigger = set(n.clone(), "/status/allocatable/cpu", json!("8"));
        assert_ne!(node_fingerprint(&n), node_fingerprint(&bigger));
    }

    #[test]
    fn the_unschedulable_condition_is_written_only_when_it_changes() {
        let p = set(
            pending("p", "1"),
            "/status/conditions",
            json!([{ "type": "Initialized", "status": "True" }]),
        );
        let msg = "0/3 nodes are available: 3 Insufficient cpu.";
        let updated = unschedulable_update(&p, "Unschedulable", msg, "T1").expect("a change");
        let conds = updated["status"]["conditions"]
            .as_array()
            .expect("conditions");
        assert_eq!(conds.len(), 2, "other conditions are kept");
        assert_eq!(
            conds[1],
            json!({
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": msg, "lastProbeTime": null, "lastTransitionTime": "T1",
            })
        );
        assert_eq!(
            updated["metadata"]["resourceVersion"], "1",
            "carries the precondition"
        );
        assert_eq!(
            unschedulable_update(&updated, "Unschedulable", msg, "T2"),
            None
        );
        // A new message keeps the transition time: the status did not change.
        let again =
            unschedulable_update(&updated, "Unschedulable", "0/4 nodes", "T3").expect("a change");
        assert_eq!(again["status"]["conditions"][1]["lastTransitionTime"], "T1");
        assert_eq!(again["status"]["conditions"][1]["message"], "0/4 nodes");
        // A pod without status gets one.
        let bare = json!({ "metadata": { "name": "x" } });
        let with = unschedulable_update(&bare, "Unschedulable", msg, "T").expect("a change");
        assert_eq!(with["status"]["conditions"][0]["reason"], "Unschedulable");
    }

    #[test]
    fn bindings_carry_uid_and_resource_version() {
        let b = binding_for(&with_meta(pending("p", "1"), "u-1", 42), "n7");
        assert_eq!(
            b,
            Binding {
                namespace: "default".into(),
                name: "p".into(),
                uid: "u-1".into(),
                resource_version: 42,
                node: "n7".into(),
            }
        );
    }

    // --- the queue ----------------------------------------------------------------------------

    #[test]
    fn batches_take_everything_active_in_order_up_to_the_limit() {
        let mut q = queue();
        let now = t0();
        for k in ["a", "b", "c", "a"] {
            q.add(k);
        }
        assert_eq!(q.counts().active, 3, "added once");
        assert_eq!(q.pop_batch(2, now), ["a", "b"]);
        assert_eq!(q.pop_batch(10, now), ["c"]);
        assert!(q.pop_batch(10, now).is_empty());
        assert_eq!(q.counts().in_flight, 3);
        // Seen again while in flight: not queued twice.
        q.add("a");
        assert_eq!(q.counts().active, 0);
        q.done("a");
        q.done("b");
        q.done("c");
        assert_eq!(q.counts(), QueueCounts::default());
    }

    #[test]
    fn removed_pods_leave_wherever_they_wait() {
        let mut q = queue();
        let now = t0();
        for k in ["a", "b", "c"] {
            q.add(k);
        }
        q.remove("b");
        assert_eq!(q.pop_batch(10, now), ["a", "c"]);
        // Removed while in flight: an unschedulable verdict is then dropped.
        q.remove("a");
        q.unschedulable("a", now);
        q.unschedulable("c", now);
        assert!(!q.contains("a"));
        assert_eq!(q.counts().unschedulable, 1);
        q.remove("c");
        assert_eq!(q.counts(), QueueCounts::default());
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_or_the_retry_period() {
        let mut q = queue();
        let now = t0();
        let period = Duration::from_secs(30);
        q.add("a");
        q.add("b");
        assert_eq!(q.pop_batch(10, now), ["a", "b"]);
        q.unschedulable("a", now);
        q.unschedulable("b", now + Duration::from_secs(5));
        assert!(!q.has_ready(now));
        assert_eq!(q.next_wakeup(period), Some(now + period));
        q.flush_unschedulable(now + Duration::from_secs(31), period);
        assert_eq!(q.pop_batch(10, now + Duration::from_secs(31)), ["a"]);
        q.unschedulable("a", now + Duration::from_secs(31));
        // A cluster change brings every unschedulable pod back, oldest first.
        q.move_all_unschedulable();
        assert_eq!(q.pop_batch(10, now), ["b", "a"]);
    }

    #[test]
    fn an_update_retries_an_unschedulable_pod_at_once() {
        let mut q = queue();
        let now = t0();
        q.add("a");
        q.pop_batch(10, now);
        q.unschedulable("a", now);
        q.add("a");
        assert!(!q.has_ready(now), "seeing it again is no reason to retry");
        q.update("a");
        assert_eq!(q.pop_batch(10, now), ["a"]);
        // Updated while being placed: an unschedulable verdict is retried at once.
        q.update("a");
        q.unschedulable("a", now);
        assert_eq!(q.pop_batch(10, now), ["a"]);
    }

    #[test]
    fn failed_binds_back_off_doubling_up_to_the_limit() {
        let mut q = queue();
        let now = t0();
        q.add("a");
        let mut at = now;
        for expected in [1, 2, 4, 8, 10, 10] {
            assert_eq!(q.pop_batch(10, at), ["a"]);
            q.failed("a", at);
            let wake = q.next_wakeup(Duration::from_secs(300)).expect("a backoff");
            assert_eq!(wake - at, Duration::from_secs(expected));
            assert!(!q.has_ready(at));
            at = wake;
            assert!(q.has_ready(at));
        }
        assert_eq!(q.pop_batch(10, at), ["a"]);
        q.done("a");
        q.add("a");
        q.pop_batch(10, at);
        q.failed("a", at);
        assert_eq!(
            q.next_wakeup(Duration::from_secs(300)),
            Some(at + Duration::from_secs(1)),
            "a bound pod starts over"
        );
    }

    #[test]
    fn retain_keeps_only_what_is_still_pending() {
        let mut q = queue();
        let now = t0();
        for k in ["a", "b", "c", "d"] {
            q.add(k);
        }
        assert_eq!(q.pop_batch(1, now), ["a"]);
        q.retain(|k| k == "c");
        q.unschedulable("a", now);
        assert_eq!(q.pop_batch(10, now), ["c"]);
        assert_eq!(
            q.counts().unschedulable,
            0,
            "a was marked removed in flight"
        );
    }

    #[test]
    fn the_active_list_stays_compact_under_churn() {
        let mut q = queue();
        for i in 0..10_000 {
            let k = format!("p{i}");
            q.add(&k);
            q.remove(&k);
        }
        q.add("last");
        assert!(q.active.len() < 2100, "{} entries", q.active.len());
        assert_eq!(q.pop_batch(10, t0()), ["last"]);
    }

    // --- the planner --------------------------------------------------------------------------

    struct Cluster {
        nodes: Vec<Arc<Value>>,
        pods: HashMap<String, Arc<Value>>,
    }

    impl Cluster {
        fn new(nodes: &[Value]) -> Self {
            Self {
                nodes: nodes.iter().cloned().map(Arc::new).collect(),
                pods: HashMap::new(),
            }
        }

        fn put(&mut self, p: Value) -> Arc<Value> {
            let p = Arc::new(p);
            self.pods.insert(pod_key(&p), p.clone());
            p
        }

        fn pods(&self) -> Vec<Arc<Value>> {
            let mut v: Vec<_> = self.pods.values().cloned().collect();
            v.sort_by_key(|p| pod_key(p));
            v
        }

        fn lookup(&self) -> impl Fn(&str) -> Option<Arc<Value>> + '_ {
            |k| self.pods.get(k).cloned()
        }
    }

    fn planner() -> Planner {
        Planner::new(&SchedulerOptions {
            batch_size: 100,
            ..SchedulerOptions::default()
        })
    }

    /// One scheduling round as `run` does it, without the bind.
    fn round(pl: &mut Planner, c: &Cluster, now: Instant) -> Plan {
        pl.ensure_snapshot(&c.nodes, &c.pods(), &c.lookup());
        let batch = pl.take_batch(now, &c.lookup());
        let results = pl.place(&batch);
        pl.apply_plan(batch, results, now)
    }

    fn nodes_of(plan: &Plan) -> Vec<(String, String)> {
        plan.binds
            .iter()
            .map(|b| (b.key.clone(), b.binding.node.clone()))
            .collect()
    }

    #[test]
    fn a_second_batch_sees_the_first_batch_assumed_while_its_bind_is_in_flight() {
        let mut c = Cluster::new(&[node("n1", "2", "8Gi", "110")]);
        let mut pl = planner();
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        let a = c.put(pending("a", "1500m"));
        pl.resync_pods(&c.pods());
        let first = round(&mut pl, &c, now);
        assert_eq!(nodes_of(&first), [("default/a".into(), "n1".into())]);
        // b arrives while a's bind is in flight: the node has 500m left, b wants 1.
        let b = c.put(pending("b", "1"));
        pl.pod_changed(&Change::Added(b.clone()));
        let second = round(&mut pl, &c, now);
        assert!(second.binds.is_empty());
        assert_eq!(second.failures.len(), 1);
        assert_eq!(
            second.failures[0].message,
            "0/1 nodes are available: 1 Insufficient cpu."
        );
        assert_eq!(second.failures[0].reason, "Unschedulable");
        assert_eq!(pl.queue().counts().unschedulable, 1);
        // a's bind fails (Conflict): it is forgotten, and backs off; b still waits for a change.
        let conflict = ApiError::Conflict {
            kind: "Pod".into(),
            name: "a".into(),
            field: "metadata.resourceVersion".into(),
            expected: "1".into(),
            actual: "2".into(),
        };
        let bound = pl.bind_finished(first.binds, Ok(vec![Err(conflict)]), now, &c.lookup());
        assert!(bound.is_empty());
        assert_eq!(pl.snapshot().node_of("default/a"), None);
        // a backs off; what it was assumed to hold is free, so b is retried at once.
        let counts = pl.queue().counts();
        assert_eq!(
            (counts.backoff, counts.unschedulable, counts.active),
            (1, 0, 1)
        );
        let third = round(&mut pl, &c, now);
        assert_eq!(nodes_of(&third), [("default/b".into(), "n1".into())]);
        // a is deleted while backing off: it leaves the queue.
        c.pods.remove("default/a");
        pl.pod_changed(&Change::Deleted(a));
        assert_eq!(pl.queue().counts().backoff, 0);
    }

    #[test]
    fn a_bound_pod_stays_counted_until_the_informer_shows_it_then_follows_the_informer() {
        let mut c = Cluster::new(&[node("n1", "2", "8Gi", "110")]);
        let mut pl = planner();
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        c.put(pending("a", "1500m"));
        pl.resync_pods(&c.pods());
        let plan = round(&mut pl, &c, now);
        let answer = set((*plan.binds[0].pod).clone(), "/spec/nodeName", json!("n1"));
        let bound = pl.bind_finished(plan.binds, Ok(vec![Ok(answer.clone())]), now, &c.lookup());
        assert_eq!(bound, [(answer.clone(), "n1".to_string())]);
        // The informer still shows it pending: still counted, not scheduled again.
        assert_eq!(pl.snapshot().node_of("default/a"), Some("n1"));
        assert_eq!(pl.queue().counts(), QueueCounts::default());
        // The informer catches up, then the pod finishes: forgotten.
        let seen = c.put(set(answer.clone(), "/metadata/resourceVersion", json!("2")));
        pl.pod_changed(&Change::Modified {
            old: Arc::new(pending("a", "1500m")),
            new: seen.clone(),
        });
        assert_eq!(pl.snapshot().node_of("default/a"), Some("n1"));
        let done = c.put(set((*seen).clone(), "/status/phase", json!("Succeeded")));
        pl.pod_changed(&Change::Modified {
            old: seen,
            new: done,
        });
        assert_eq!(pl.snapshot().node_of("default/a"), None);
        assert_eq!(pl.snapshot().nodes()[0].pod_count(), 0);
    }

    fn plan_pod(c: &Cluster, key: &str) -> Arc<Value> {
        c.pods.get(key).cloned().expect("the pod is in the cache")
    }

    #[test]
    fn a_node_change_rebuilds_the_snapshot_and_retries_unschedulable_pods() {
        let mut c = Cluster::new(&[node("n1", "1", "8Gi", "110")]);
        let mut pl = planner();
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        c.put(pending("big", "4"));
        pl.resync_pods(&c.pods());
        let first = round(&mut pl, &c, now);
        assert_eq!(first.failures.len(), 1);
        assert!(!pl.has_ready(now));
        // A heartbeat changes nothing scheduling reads.
        let old = c.nodes[0].clone();
        let beat = Arc::new(set(
            (*old).clone(),
            "/status/conditions/0/lastHeartbeatTime",
            json!("later"),
        ));
        pl.node_changed(&Change::Modified {
            old: old.clone(),
            new: beat.clone(),
        });
        assert!(!pl.has_ready(now));
        assert!(!pl.needs_rebuild());
        // A bigger node joins.
        let n2 = Arc::new(node("n2", "8", "8Gi", "110"));
        c.nodes.push(n2.clone());
        pl.node_changed(&Change::Added(n2));
        assert!(pl.needs_rebuild());
        assert!(pl.has_ready(now));
        let second = round(&mut pl, &c, now);
        assert_eq!(nodes_of(&second), [("default/big".into(), "n2".into())]);
    }

    #[test]
    fn pods_bound_by_others_are_counted_and_leave_the_queue() {
        let mut c = Cluster::new(&[node("n1", "2", "8Gi", "110")]);
        let mut pl = planner();
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        pl.resync_pods(&c.pods());
        pl.ensure_snapshot(&c.nodes, &c.pods(), &c.lookup());
        let p = c.put(pending("x", "1500m"));
        pl.pod_changed(&Change::Added(p.clone()));
        assert!(pl.has_ready(now));
        let bound = c.put(bound_to((*p).clone(), "n1"));
        pl.pod_changed(&Change::Modified { old: p, new: bound });
        assert!(!pl.has_ready(now), "bound elsewhere: not ours any more");
        assert_eq!(pl.snapshot().node_of("default/x"), Some("n1"));
        c.put(pending("y", "1"));
        pl.pod_changed(&Change::Added(plan_pod(&c, "default/y")));
        let plan = round(&mut pl, &c, now);
        assert_eq!(plan.failures.len(), 1, "x holds the cpu y needs");
    }

    #[test]
    fn a_failed_call_requeues_the_whole_batch_and_a_lost_answer_is_recounted() {
        let mut c = Cluster::new(&[node("n1", "4", "8Gi", "110"), node("n2", "4", "8Gi", "110")]);
        let mut pl = planner();
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        c.put(pending("a", "1"));
        c.put(pending("b", "1"));
        pl.resync_pods(&c.pods());
        let plan = round(&mut pl, &c, now);
        assert_eq!(plan.binds.len(), 2);
        // The call failed, but a had been bound (answer lost): the informer shows it.
        c.put(bound_to(pending("a", "1"), "n2"));
        let bound = pl.bind_finished(
            plan.binds,
            Err(ApiError::unavailable("connection reset", None)),
            now,
            &c.lookup(),
        );
        assert!(bound.is_empty());
        assert_eq!(pl.snapshot().node_of("default/a"), Some("n2"));
        assert_eq!(pl.snapshot().node_of("default/b"), None);
        assert_eq!(pl.queue().counts().backoff, 2);
        // After the backoff only b is placed again (a no longer wants scheduling).
        let later = now + Duration::from_secs(1);
        let retry = round(&mut pl, &c, later);
        assert_eq!(retry.binds.len(), 1);
        assert_eq!(retry.binds[0].key, "default/b");
    }

    #[test]
    fn a_batch_is_capped_and_never_overcommits() {
        let mut c = Cluster::new(&[node("n1", "10", "64Gi", "110")]);
        let mut pl = Planner::new(&SchedulerOptions {
            batch_size: 4,
            ..SchedulerOptions::default()
        });
        let now = t0();
        pl.resync_nodes(&c.nodes.clone());
        for i in 0..6 {
            c.put(pending(&format!("p{i}"), "3"));
        }
        pl.resync_pods(&c.pods());
        let first = round(&mut pl, &c, now);
        assert_eq!(first.binds.len() + first.failures.len(), 4, "capped");
        assert_eq!(first.binds.len(), 3, "10 cpu hold three pods of 3");
        let second = round(&mut pl, &c, now);
        assert_eq!(second.binds.len(), 0);
        assert_eq!(second.failures.len(), 2);
    }
}

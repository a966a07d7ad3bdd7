//! The Job controller: Kubernetes' `job-controller` (`pkg/controller/job/job_controller.go`, as of
//! 1.34) and its `ttl-after-finished-controller`, run by the Raft leader.
//!
//! Every decision is made by one pure function, [`decide`]: the Job, the pods it controls and
//! "now" in, what to write out. The driver ([`run`]) carries it out through the API.
//!
//! - **Selector.** A Job without `spec.selector` (Corral's admission does not generate one) gets
//!   the generated one first, written with the Job's resourceVersion: `spec.selector.matchLabels`
//!   `batch.kubernetes.io/controller-uid: <uid>`, and the template labels `controller-uid`,
//!   `batch.kubernetes.io/controller-uid` (the uid), `job-name`, `batch.kubernetes.io/job-name`
//!   (the name), as Kubernetes' registry adds them at create. Nothing else happens before that.
//! - **Pods** are made from the template with `generateName: <job>-`, the controller
//!   ownerReference (`batch/v1` `Job`, `controller`, `blockOwnerDeletion`) and the tracking
//!   finalizer `batch.kubernetes.io/job-tracking`.
//! - **How many.** `completions` unset (a work queue): `parallelism` pods until one succeeds, then
//!   no new ones, and the Job is complete once one succeeded and none is active. Otherwise
//!   `min(parallelism, completions - succeeded)` active pods, complete at `completions`
//!   successes with none active. Surplus pods are deleted (not-ready, unscheduled, pending ones
//!   first). After failures, new pods wait out the back-off (10 s doubling to 10 min since the
//!   last failure, counted from the failures after the last success).
//! - **Counting** is Kubernetes' finalizer tracking: a finished pod (Succeeded; Failed; or deleted
//!   before it succeeded) that still has the finalizer goes into
//!   `status.uncountedTerminatedPods` (written first), then its finalizer is removed, then (next
//!   sync, once the pod shows it) it moves to `status.succeeded` / `status.failed`. So every pod
//!   is counted exactly once even if it is deleted right after it finishes, and a controller that
//!   restarts mid-way counts nothing twice.
//! - **Failure.** More failed pods than `backoffLimit` (default 6), or, with `restartPolicy:
//!   OnFailure`, container restarts of the running pods reaching it, fails the Job with reason
//!   `BackoffLimitExceeded`; `activeDeadlineSeconds` past `status.startTime` with reason
//!   `DeadlineExceeded`. Active pods are deleted (and counted failed). As in 1.34 the interim
//!   condition `FailureTarget` comes first and `Failed` once no pod is terminating or uncounted;
//!   success likewise goes `SuccessCriteriaMet` (reason `CompletionsReached`) → `Complete` (with
//!   `completionTime`).
//! - **Suspend** deletes the active pods (not counted as failures), sets `Suspended=True`
//!   (`JobSuspended`); resuming sets it `False` (`JobResumed`) and restarts `startTime`, so the
//!   deadline counts active time only.
//! - **TTL.** A finished Job with `ttlSecondsAfterFinished` is deleted (Background propagation,
//!   preconditions on uid and resourceVersion) that long after its `Complete` / `Failed`
//!   condition's transition.
//! - **Orphans.** Pods that carry the tracking finalizer but whose Job is gone or finished lose
//!   it, so they can be deleted.
//!
//! Only `completionMode: NonIndexed` (the default) is managed; an `Indexed` Job gets a warning
//! event and is left alone. `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex` and
//! adoption of orphan pods by selector are not implemented.
//!
//! The driver acts on committed state only (informers over the API), every write names the
//! resourceVersion (or uid) it was decided on, and its own creations and deletions are
//! "expected" until the pod informer shows them, so a lagging cache never makes it create twice.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_api::{ApiError, object};
use corral_client::events::EventRecorder;
use corral_client::informer::{Informer, index_by_owner_uid};
use corral_client::{Change, Client, DeleteOptions, PropagationPolicy};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::node_lifecycle::{Clock, SystemClock};
use crate::node_lifecycle::{format_time, parse_time};

/// The finalizer on every pod of a Job until it is counted.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The generated selector's label (and a template label): the Job's uid.
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The legacy spelling Kubernetes still adds to the template.
pub const LABEL_LEGACY_CONTROLLER_UID: &str = "controller-uid";
/// A template label: the Job's name.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LABEL_LEGACY_JOB_NAME: &str = "job-name";

/// Job condition types.
pub const CONDITION_COMPLETE: &str = "Complete";
pub const CONDITION_FAILED: &str = "Failed";
pub const CONDITION_SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const CONDITION_FAILURE_TARGET: &str = "FailureTarget";
pub const CONDITION_SUSPENDED: &str = "Suspended";

/// Condition reasons and messages, as Kubernetes words them.
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const MESSAGE_BACKOFF_LIMIT_EXCEEDED: &str = "Job has reached the specified backoff limit";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const MESSAGE_DEADLINE_EXCEEDED: &str = "Job was active longer than specified deadline";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
pub const MESSAGE_COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";

/// `spec.managedBy` of Jobs this controller manages (also when unset).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// `backoffLimit` when the Job has none.
pub const DEFAULT_BACKOFF_LIMIT: i64 = 6;
/// At most this many pods are created or deleted by one sync (Kubernetes'
/// `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// At most this many uids wait in `status.uncountedTerminatedPods` (Kubernetes'
/// `MaxUncountedPods`).
pub const MAX_UNCOUNTED_PODS: usize = 500;

/// Event source, as Kubernetes names it.
const COMPONENT: &str = "job-controller";
/// The pod informer's index: pods by owner uid.
const OWNER_INDEX: &str = "ownerUid";
/// How long the controller waits to see its own pod creations and deletions before it acts
/// anyway.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(60);
/// Delay before a sync that failed (an API error, a Conflict) is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The back-off before pods are created again after failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFailureBackoff {
    /// After the first failure (Kubernetes' `DefaultJobPodFailureBackOff`, 10 s).
    pub initial: Duration,
    /// The longest (Kubernetes' `MaxJobPodFailureBackOff`, 10 min).
    pub max: Duration,
}

impl Default for PodFailureBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl PodFailureBackoff {
    /// The back-off after `failures` failures in a row: `initial`, doubled for each further
    /// failure, at most `max`.
    pub fn after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let mut d = self.initial;
        for _ in 1..failures {
            d = d.saturating_mul(2);
            if d >= self.max {
                return self.max;
            }
        }
        d.min(self.max)
    }
}

/// Timings of the Job controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    /// Every Job is synced at least this often, even when nothing changed (default 30 s).
    pub resync_period: Duration,
    /// Changes arriving within this long of each other are folded into one sync (default
    /// 100 ms; Kubernetes batches pod events for 1 s).
    pub batch_period: Duration,
    pub backoff: PodFailureBackoff,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(30),
            batch_period: Duration::from_millis(100),
            backoff: PodFailureBackoff::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small readers
// ---------------------------------------------------------------------------------------------

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_terminating(obj: &Value) -> bool {
    object::deletion_timestamp(obj).is_some()
}

/// Whether the pod carries the Job tracking finalizer.
pub fn has_tracking_finalizer(pod: &Value) -> bool {
    object::finalizers(pod)
        .iter()
        .any(|f| f == JOB_TRACKING_FINALIZER)
}

/// The object's controller ownerReference, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `obj`'s controller ownerReference names the owner with this uid.
pub fn is_controlled_by(obj: &Value, owner_uid: &str) -> bool {
    !owner_uid.is_empty() && controller_ref(obj).is_some_and(|r| str_at(r, "/uid") == owner_uid)
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| str_at(c, "/type") == type_)
}

fn condition_true<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    condition(obj, type_).filter(|c| str_at(c, "/status") == "True")
}

fn pod_ready(pod: &Value) -> bool {
    condition_true(pod, "Ready").is_some()
}

/// The Job's terminal condition type (`Complete` or `Failed`, status `True`), if it finished.
pub fn finished_condition(job: &Value) -> Option<&'static str> {
    if condition_true(job, CONDITION_COMPLETE).is_some() {
        Some(CONDITION_COMPLETE)
    } else if condition_true(job, CONDITION_FAILED).is_some() {
        Some(CONDITION_FAILED)
    } else {
        None
    }
}

/// Whether the Job finished (`Complete` or `Failed` is `True`).
pub fn is_finished(job: &Value) -> bool {
    finished_condition(job).is_some()
}

/// When the Job finished: the transition time of its `True` `Complete` / `Failed` condition.
pub fn finish_time(job: &Value) -> Option<Timestamp> {
    [CONDITION_COMPLETE, CONDITION_FAILED]
        .into_iter()
        .filter_map(|t| condition_true(job, t))
        .filter_map(|c| parse_time(c.get("lastTransitionTime")))
        .max()
}

fn after(t: Timestamp, seconds: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(if seconds >= 0 {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        })
}

fn add_duration(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

// ---------------------------------------------------------------------------------------------
// The Job's spec
// ---------------------------------------------------------------------------------------------

/// The fields of a Job's spec the controller reads, with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    parallelism: i64,
    completions: Option<i64>,
    backoff_limit: i64,
    active_deadline_seconds: Option<i64>,
    ttl_seconds_after_finished: Option<i64>,
    suspend: bool,
    /// `podReplacementPolicy: Failed` (or a `podFailurePolicy`): terminating pods are not
    /// failures, and are not replaced until they are.
    replace_failed_only: bool,
    restart_policy: String,
    completion_mode: String,
    manual_selector: bool,
    has_selector: bool,
}

impl Spec {
    fn of(job: &Value) -> Spec {
        let spec = job.get("spec").unwrap_or(&Value::Null);
        let non_negative = |key: &str| int_at(spec, &format!("/{key}")).map(|n| n.max(0));
        let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|p| !p.is_null());
        Spec {
            parallelism: non_negative("parallelism").unwrap_or(1),
            completions: non_negative("completions"),
            backoff_limit: non_negative("backoffLimit").unwrap_or(DEFAULT_BACKOFF_LIMIT),
            active_deadline_seconds: int_at(spec, "/activeDeadlineSeconds"),
            ttl_seconds_after_finished: non_negative("ttlSecondsAfterFinished"),
            suspend: spec.get("suspend").and_then(Value::as_bool) == Some(true),
            replace_failed_only: str_at(spec, "/podReplacementPolicy") == "Failed"
                || has_failure_policy,
            restart_policy: str_at(spec, "/template/spec/restartPolicy").to_string(),
            completion_mode: str_at(spec, "/completionMode").to_string(),
            manual_selector: spec.get("manualSelector").and_then(Value::as_bool) == Some(true),
            has_selector: spec
                .get("selector")
                .and_then(Value::as_object)
                .is_some_and(|s| !s.is_empty()),
        }
    }
}

/// The Job with Kubernetes' generated selector and template labels (see the module doc). Labels
/// the template already has are kept as they are.
pub fn with_generated_selector(job: &Value) -> Value {
    let mut next = job.clone();
    let (name, uid) = (object::name(job).to_string(), object::uid(job).to_string());
    let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) else {
        return next;
    };
    let template = spec
        .entry("template")
        .or_insert_with(|| Value::Object(Map::new()));
    if !template.is_object() {
        *template = Value::Object(Map::new());
    }
    if let Some(template) = template.as_object_mut() {
        let meta = template
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Some(meta) = meta.as_object_mut() {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            if let Some(labels) = labels.as_object_mut() {
                for (key, value) in [
                    (LABEL_LEGACY_JOB_NAME, &name),
                    (LABEL_JOB_NAME, &name),
                    (LABEL_LEGACY_CONTROLLER_UID, &uid),
                    (LABEL_CONTROLLER_UID, &uid),
                ] {
                    labels
                        .entry(key)
                        .or_insert_with(|| Value::String(value.clone()));
                }
            }
        }
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {LABEL_CONTROLLER_UID: uid}}),
    );
    next
}

/// A pod for the Job, from its template (Kubernetes' `GetPodFromTemplate`): `generateName`
/// `<job>-`, the template's labels, annotations and finalizers plus the tracking finalizer, the
/// controller ownerReference, the template's spec.
pub fn pod_from_template(job: &Value) -> Value {
    let template = job.pointer("/spec/template").unwrap_or(&Value::Null);
    let template_meta = template.get("metadata").unwrap_or(&Value::Null);
    let mut meta = Map::new();
    meta.insert(
        "generateName".into(),
        json!(format!("{}-", object::name(job))),
    );
    meta.insert("namespace".into(), json!(object::namespace(job)));
    for key in ["labels", "annotations"] {
        if let Some(m) = template_meta
            .get(key)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            meta.insert(key.into(), Value::Object(m.clone()));
        }
    }
    let mut finalizers = object::finalizers(template);
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    meta.insert("finalizers".into(), json!(finalizers));
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": object::name(job),
            "uid": object::uid(job),
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

/// A pod the decision names: enough to write to it with preconditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

impl PodRef {
    pub fn of(pod: &Value) -> PodRef {
        PodRef {
            name: object::name(pod).to_string(),
            uid: object::uid(pod).to_string(),
            resource_version: str_at(pod, "/metadata/resourceVersion").to_string(),
        }
    }
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDeletion {
    pub pod: PodRef,
    /// Remove the tracking finalizer first, so the pod is not counted (surplus pods, suspended
    /// Jobs). Pods deleted because the Job failed keep it: they are counted as failed.
    pub remove_finalizer: bool,
}

/// Whether the pod counts as failed: `Failed`, or being deleted before it succeeded (unless
/// only failed pods are replaced).
fn is_pod_failed(pod: &Value, spec: &Spec) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !spec.replace_failed_only && is_terminating(pod) && phase(pod) != "Succeeded"
}

/// When the pod finished (Kubernetes' `getFinishedTime`): its containers' latest `finishedAt`,
/// else its `Ready=False` transition, else its deletion time, else its creation.
fn pod_finish_time(pod: &Value) -> Option<Timestamp> {
    let containers = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| parse_time(c.pointer("/state/terminated/finishedAt")))
        .max();
    containers
        .or_else(|| {
            condition(pod, "Ready")
                .filter(|c| str_at(c, "/status") == "False")
                .and_then(|c| parse_time(c.get("lastTransitionTime")))
        })
        .or_else(|| parse_time(pod.pointer("/metadata/deletionTimestamp")))
        .or_else(|| parse_time(pod.pointer("/metadata/creationTimestamp")))
}

/// How long new pods must still wait after failures: failures since the last success (in
/// finish-time order), back-off from the last of them.
fn backoff_remaining(
    pods: &[&Value],
    spec: &Spec,
    now: Timestamp,
    backoff: &PodFailureBackoff,
) -> Duration {
    let mut finished: Vec<(Timestamp, bool)> = pods
        .iter()
        .filter_map(|p| {
            let failed = is_pod_failed(p, spec);
            (failed || phase(p) == "Succeeded")
                .then(|| pod_finish_time(p).map(|t| (t, !failed)))
                .flatten()
        })
        .collect();
    // At equal times a success comes after the failure, and resets the count.
    finished.sort();
    let mut failures = 0u32;
    let mut last_failure = None;
    for (t, succeeded) in finished {
        if succeeded {
            failures = 0;
            last_failure = None;
        } else {
            failures = failures.saturating_add(1);
            last_failure = Some(t);
        }
    }
    let Some(last) = last_failure else {
        return Duration::ZERO;
    };
    let wait = backoff.after(failures);
    let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    wait.saturating_sub(elapsed)
}

/// The order in which surplus active pods go (Kubernetes' `controller.ActivePods`): unscheduled
/// before scheduled, pending before unknown before running, not ready before ready, more
/// restarts first, newer first.
fn removal_order(a: &&Value, b: &&Value) -> std::cmp::Ordering {
    let phase_rank = |p: &Value| match phase(p) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let restarts = |p: &Value| {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
            .max()
            .unwrap_or(0)
    };
    let key = |p: &Value| {
        (
            !str_at(p, "/spec/nodeName").is_empty(),
            phase_rank(p),
            pod_ready(p),
            std::cmp::Reverse(restarts(p)),
            std::cmp::Reverse(str_at(p, "/metadata/creationTimestamp").to_string()),
        )
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| object::name(a).cmp(object::name(b)))
}

/// With `restartPolicy: OnFailure`, whether the container restarts of the pending and running
/// pods reach the backoff limit (Kubernetes' `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(spec: &Spec, pods: &[&Value]) -> bool {
    if spec.restart_policy != "OnFailure" {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            ["initContainerStatuses", "containerStatuses"]
                .into_iter()
                .flat_map(move |key| {
                    p.pointer(&format!("/status/{key}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
        })
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    if spec.backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= spec.backoff_limit
    }
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// The status fields the controller owns.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tracked {
    conditions: Vec<Value>,
    start_time: Option<Value>,
    completion_time: Option<Value>,
    active: i64,
    ready: i64,
    terminating: i64,
    succeeded: i64,
    failed: i64,
    uncounted_succeeded: Vec<String>,
    uncounted_failed: Vec<String>,
}

impl Tracked {
    fn of(job: &Value) -> Tracked {
        let status = job.get("status").unwrap_or(&Value::Null);
        let count = |key: &str| int_at(status, &format!("/{key}")).unwrap_or(0).max(0);
        let uids = |key: &str| -> Vec<String> {
            status
                .pointer(&format!("/uncountedTerminatedPods/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect()
        };
        let time = |key: &str| {
            status
                .get(key)
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .cloned()
        };
        Tracked {
            conditions: conditions(job),
            start_time: time("startTime"),
            completion_time: time("completionTime"),
            active: count("active"),
            ready: count("ready"),
            terminating: count("terminating"),
            succeeded: count("succeeded"),
            failed: count("failed"),
            uncounted_succeeded: uids("succeeded"),
            uncounted_failed: uids("failed"),
        }
    }

    /// The Job's status with these fields written over the old ones (others are kept). Zero
    /// `active` / `succeeded` / `failed` are left out and `ready` / `terminating` always written,
    /// as Kubernetes serialises them.
    fn to_status(&self, old: &Value) -> Value {
        let mut status = old
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut set = |key: &str, value: Option<Value>| match value {
            Some(v) => {
                status.insert(key.into(), v);
            }
            None => {
                status.remove(key);
            }
        };
        set(
            "conditions",
            (!self.conditions.is_empty()).then(|| Value::Array(self.conditions.clone())),
        );
        set("startTime", self.start_time.clone());
        set("completionTime", self.completion_time.clone());
        for (key, n) in [
            ("active", self.active),
            ("succeeded", self.succeeded),
            ("failed", self.failed),
        ] {
            set(key, (n > 0).then(|| json!(n)));
        }
        set("ready", Some(json!(self.ready)));
        set("terminating", Some(json!(self.terminating)));
        let mut uncounted = Map::new();
        if !self.uncounted_succeeded.is_empty() {
            uncounted.insert("succeeded".into(), json!(self.uncounted_succeeded));
        }
        if !self.uncounted_failed.is_empty() {
            uncounted.insert("failed".into(), json!(self.uncounted_failed));
        }
        set("uncountedTerminatedPods", Some(Value::Object(uncounted)));
        Value::Object(status)
    }
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    let mut c = json!({
        "type": type_,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    });
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// Kubernetes' `ensureJobConditionStatus`: the condition of this type gets this status, reason
/// and message (a new one is appended unless its status would be `False`). Answers whether the
/// list changed.
fn ensure_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| str_at(c, "/type") == type_) {
        if str_at(c, "/status") != status
            || str_at(c, "/reason") != reason
            || str_at(c, "/message") != message
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        conds.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// An event about the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: String,
    pub message: String,
}

impl JobEvent {
    fn new(type_: &'static str, reason: &str, message: impl Into<String>) -> JobEvent {
        JobEvent {
            type_,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// What the controller does about one Job, in this order: write the generated selector (and
/// nothing else), or delete the finished Job (TTL), or: delete pods, create pods, write the
/// status, remove tracking finalizers (only once the status naming those pods is written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDecision {
    /// The Job with its generated selector, to write (Update, with its resourceVersion).
    pub set_selector: Option<Value>,
    /// The finished Job's TTL ran out: delete it (Background propagation).
    pub delete_job: bool,
    pub delete: Vec<PodDeletion>,
    /// New pods from the template.
    pub create: usize,
    /// The new `status`, when it changed.
    pub status: Option<Value>,
    /// Pods whose tracking finalizer goes (after the status is written).
    pub remove_finalizers: Vec<PodRef>,
    /// Events to record once the status is written.
    pub events: Vec<JobEvent>,
    /// When the Job must be looked at again even if nothing changes (deadline, back-off, TTL).
    pub wake_at: Option<Timestamp>,
}

/// How a Job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finish {
    Success {
        reason: String,
        message: String,
        /// The interim `SuccessCriteriaMet` condition is on the Job already.
        interim_written: bool,
    },
    Failure {
        reason: String,
        message: String,
        interim_written: bool,
    },
}

/// [`decide_with_backoff`] with Kubernetes' pod failure back-off (10 s doubling to 10 min).
pub fn decide(job: &Value, pods: &[&Value], now: Timestamp) -> JobDecision {
    decide_with_backoff(job, pods, now, &PodFailureBackoff::default())
}

/// What to do about `job` given its pods (those whose controller ownerReference names it; others
/// in `pods` are ignored) at `now`. Pure: the driver carries it out.
///
/// The caller must not decide again while creations or deletions it made are not yet in its
/// view of the pods (Kubernetes' expectations): the decision counts every pod it is shown.
pub fn decide_with_backoff(
    job: &Value,
    pods: &[&Value],
    now: Timestamp,
    backoff: &PodFailureBackoff,
) -> JobDecision {
    let mut d = JobDecision::default();
    let uid = object::uid(job);
    let pods: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| is_controlled_by(p, uid))
        .collect();
    let spec = Spec::of(job);

    // A Job another controller manages (Kubernetes' `spec.managedBy`) is none of ours.
    if job
        .pointer("/spec/managedBy")
        .and_then(Value::as_str)
        .is_some_and(|m| m != MANAGED_BY)
    {
        return d;
    }

    // A finished Job: only orphaned finalizers and the TTL are left.
    if is_finished(job) {
        d.remove_finalizers = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .map(|p| PodRef::of(p))
            .collect();
        if let (Some(ttl), Some(finished)) = (spec.ttl_seconds_after_finished, finish_time(job))
            && !is_terminating(job)
        {
            let expire = after(finished, ttl);
            if now >= expire {
                d.delete_job = true;
            } else {
                d.wake_at = Some(expire);
            }
        }
        return d;
    }

    if !spec.has_selector {
        if spec.manual_selector {
            d.events.push(JobEvent::new(
                "Warning",
                "InvalidSelector",
                "spec.manualSelector is true but spec.selector is empty: no pods are created",
            ));
        } else {
            d.set_selector = Some(with_generated_selector(job));
        }
        return d;
    }
    if !spec.completion_mode.is_empty() && spec.completion_mode != "NonIndexed" {
        d.events.push(JobEvent::new(
            "Warning",
            "UnsupportedCompletionMode",
            format!(
                "completionMode {} is not supported by Corral's job controller; the Job is left alone",
                spec.completion_mode
            ),
        ));
        return d;
    }

    let now_str = format_time(now);
    let deleting = is_terminating(job);
    let mut st = Tracked::of(job);

    let uncounted_s: HashSet<String> = st.uncounted_succeeded.iter().cloned().collect();
    let uncounted_f: HashSet<String> = st.uncounted_failed.iter().cloned().collect();
    let uncounted = |p: &Value| {
        let u = object::uid(p);
        uncounted_s.contains(u) || uncounted_f.contains(u)
    };

    let active_pods: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| !is_terminal(p) && !is_terminating(p))
        .collect();
    let mut active = active_pods.len() as i64;
    let mut ready = active_pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let mut terminating = pods
        .iter()
        .filter(|p| is_terminating(p) && !is_terminal(p))
        .count() as i64;
    let new_succeeded = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && !uncounted(p) && phase(p) == "Succeeded")
        .count() as i64;
    let new_failed = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && !uncounted(p) && is_pod_failed(p, &spec))
        .count() as i64;
    let succeeded = st.succeeded + uncounted_s.len() as i64 + new_succeeded;
    let failed = st.failed + uncounted_f.len() as i64 + new_failed;

    if st.start_time.is_none() && !spec.suspend {
        st.start_time = Some(json!(now_str));
    }
    let start_time = st
        .start_time
        .as_ref()
        .and_then(|t| parse_time(Some(t)))
        .unwrap_or(now);

    // Is the Job done?
    let mut finish = None;
    if let Some(c) = condition_true(job, CONDITION_SUCCESS_CRITERIA_MET) {
        finish = Some(Finish::Success {
            reason: str_at(c, "/reason").to_string(),
            message: str_at(c, "/message").to_string(),
            interim_written: true,
        });
    } else if let Some(c) = condition_true(job, CONDITION_FAILURE_TARGET) {
        finish = Some(Finish::Failure {
            reason: str_at(c, "/reason").to_string(),
            message: str_at(c, "/message").to_string(),
            interim_written: true,
        });
    } else if failed > spec.backoff_limit || past_backoff_limit_on_failure(&spec, &pods) {
        finish = Some(Finish::Failure {
            reason: REASON_BACKOFF_LIMIT_EXCEEDED.into(),
            message: MESSAGE_BACKOFF_LIMIT_EXCEEDED.into(),
            interim_written: false,
        });
    } else if let Some(ads) = spec.active_deadline_seconds
        && !spec.suspend
    {
        let deadline = after(start_time, ads);
        if now >= deadline {
            finish = Some(Finish::Failure {
                reason: REASON_DEADLINE_EXCEEDED.into(),
                message: MESSAGE_DEADLINE_EXCEEDED.into(),
                interim_written: false,
            });
        } else {
            d.wake_at = earliest(d.wake_at, deadline);
        }
    }

    if finish.is_some() {
        // Every active pod goes; they keep their finalizer and are counted as failed.
        for p in &active_pods {
            d.delete.push(PodDeletion {
                pod: PodRef::of(p),
                remove_finalizer: false,
            });
        }
        terminating += active;
        active = 0;
        ready = 0;
    } else {
        let mut managed = false;
        if !deleting {
            managed = true;
            if spec.suspend {
                // The deadline counts active time only: it starts again on resume.
                st.start_time = None;
                for p in &active_pods {
                    d.delete.push(PodDeletion {
                        pod: PodRef::of(p),
                        remove_finalizer: true,
                    });
                }
                terminating += active;
                active = 0;
                ready = 0;
            } else {
                let want = match spec.completions {
                    None if succeeded > 0 => active,
                    None => spec.parallelism,
                    Some(completions) => (completions - succeeded).min(spec.parallelism).max(0),
                };
                if active > want {
                    let mut surplus = active_pods.clone();
                    surplus.sort_by(removal_order);
                    let n = usize::try_from(active - want)
                        .unwrap_or(0)
                        .min(MAX_POD_CREATE_DELETE_PER_SYNC);
                    for p in surplus.into_iter().take(n) {
                        if pod_ready(p) {
                            ready -= 1;
                        }
                        d.delete.push(PodDeletion {
                            pod: PodRef::of(p),
                            remove_finalizer: true,
                        });
                    }
                    active -= n as i64;
                    terminating += n as i64;
                } else {
                    let waiting = if spec.replace_failed_only {
                        terminating
                    } else {
                        0
                    };
                    let diff = want - waiting - active;
                    if diff > 0 {
                        let remaining = backoff_remaining(&pods, &spec, now, backoff);
                        if remaining > Duration::ZERO {
                            d.wake_at = earliest(d.wake_at, add_duration(now, remaining));
                        } else {
                            let n = usize::try_from(diff)
                                .unwrap_or(0)
                                .min(MAX_POD_CREATE_DELETE_PER_SYNC);
                            d.create = n;
                            active += n as i64;
                        }
                    }
                }
            }
        }
        let complete = match spec.completions {
            None => succeeded > 0 && active == 0,
            Some(completions) => succeeded >= completions && active == 0,
        };
        if complete {
            finish = Some(Finish::Success {
                reason: REASON_COMPLETIONS_REACHED.into(),
                message: MESSAGE_COMPLETIONS_REACHED.into(),
                interim_written: false,
            });
        } else if managed {
            if spec.suspend {
                if ensure_condition(
                    &mut st.conditions,
                    CONDITION_SUSPENDED,
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now_str,
                ) {
                    d.events
                        .push(JobEvent::new("Normal", "Suspended", "Job suspended"));
                }
            } else if ensure_condition(
                &mut st.conditions,
                CONDITION_SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                &now_str,
            ) {
                d.events
                    .push(JobEvent::new("Normal", "Resumed", "Job resumed"));
                // The deadline counts the time the Job is active, from now on.
                st.start_time = Some(json!(now_str));
            }
        }
    }
    st.active = active;
    st.ready = ready.max(0);
    st.terminating = terminating;

    // Counting: uncounted pods whose finalizer is gone are counted now.
    let with_finalizer: HashSet<&str> = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p))
        .map(|p| object::uid(p))
        .collect();
    let before = st.uncounted_succeeded.len();
    st.uncounted_succeeded
        .retain(|u| with_finalizer.contains(u.as_str()));
    st.succeeded += (before - st.uncounted_succeeded.len()) as i64;
    let before = st.uncounted_failed.len();
    st.uncounted_failed
        .retain(|u| with_finalizer.contains(u.as_str()));
    st.failed += (before - st.uncounted_failed.len()) as i64;

    // Finished pods still carrying the finalizer are named in the status, then let go.
    let failing = matches!(finish, Some(Finish::Failure { .. }));
    let mut reached_max_uncounted = false;
    for p in pods.iter().filter(|p| has_tracking_finalizer(p)) {
        let considered_failed = is_pod_failed(p, &spec);
        let can_remove =
            deleting || finish.is_some() || phase(p) == "Succeeded" || considered_failed;
        if !can_remove {
            continue;
        }
        d.remove_finalizers.push(PodRef::of(p));
        let u = object::uid(p).to_string();
        if phase(p) == "Succeeded" && !uncounted_f.contains(&u) {
            if !uncounted_s.contains(&u) {
                st.uncounted_succeeded.push(u);
            }
        } else if (considered_failed || failing) && !uncounted_f.contains(&u) {
            st.uncounted_failed.push(u);
        }
        if st.uncounted_succeeded.len() + st.uncounted_failed.len() >= MAX_UNCOUNTED_PODS {
            reached_max_uncounted = true;
            break;
        }
    }

    // The interim condition, then (once nothing is uncounted or terminating) the final one.
    let final_condition = match &finish {
        None => None,
        Some(Finish::Failure {
            reason,
            message,
            interim_written,
        }) => {
            if !interim_written {
                st.conditions.push(new_condition(
                    CONDITION_FAILURE_TARGET,
                    "True",
                    reason,
                    message,
                    &now_str,
                ));
            }
            Some((CONDITION_FAILED, reason.clone(), message.clone()))
        }
        Some(Finish::Success {
            reason,
            message,
            interim_written,
        }) => {
            if !interim_written {
                st.conditions.push(new_condition(
                    CONDITION_SUCCESS_CRITERIA_MET,
                    "True",
                    reason,
                    message,
                    &now_str,
                ));
            }
            Some((CONDITION_COMPLETE, reason.clone(), message.clone()))
        }
    };
    if let Some((type_, reason, message)) = final_condition
        && !reached_max_uncounted
        && st.uncounted_succeeded.is_empty()
        && st.uncounted_failed.is_empty()
        && st.terminating == 0
    {
        ensure_condition(
            &mut st.conditions,
            type_,
            "True",
            &reason,
            &message,
            &now_str,
        );
        if type_ == CONDITION_COMPLETE {
            st.completion_time = Some(json!(now_str));
            if let Some(completions) = spec.completions
                && st.succeeded > completions
            {
                d.events.push(JobEvent::new(
                    "Warning",
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                ));
            }
            d.events
                .push(JobEvent::new("Normal", "Completed", "Job completed"));
        } else {
            d.events.push(JobEvent::new("Warning", &reason, message));
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            d.wake_at = earliest(d.wake_at, after(now, ttl));
        }
    }

    let status = st.to_status(job);
    if job.get("status") != Some(&status) {
        d.status = Some(status);
    }
    d
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the Job controller until `cancel` fires, with the system clock.
pub async fn run(client: Client, opts: JobOptions, cancel: CancellationToken) {
    run_with_clock(client, opts, Arc::new(SystemClock), cancel).await;
}

type Key = (String, String);

/// [`run`] with the time read from `clock`.
pub async fn run_with_clock(
    client: Client,
    opts: JobOptions,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let jobs = Informer::builder(client.clone(), "Job").start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(OWNER_INDEX, index_by_owner_uid)
        .start(cancel.clone());
    let mut job_changes = jobs.subscribe();
    let mut pod_changes = pods.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { jobs.wait_synced().await; pods.wait_synced().await } => {}
    }
    tracing::info!("job controller: caches synced");
    let mut c = Controller {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        jobs,
        pods,
        backoff: opts.backoff,
        expectations: HashMap::new(),
        written_jobs: HashMap::new(),
        written_pods: HashMap::new(),
        wake: HashMap::new(),
        dirty: BTreeSet::new(),
        orphans: BTreeSet::new(),
        warned: HashSet::new(),
    };
    c.resync_all();
    let mut next_resync = Instant::now() + opts.resync_period;
    loop {
        let now = clock.now();
        let keys = std::mem::take(&mut c.dirty);
        for key in keys {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = c.sync(&key, now) => {}
            }
        }
        let orphans = std::mem::take(&mut c.orphans);
        for key in orphans {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = c.release_orphan(&key) => {}
            }
        }
        // Sleep until something changes, a Job is due, or the resync.
        let mut until = next_resync;
        let now = clock.now();
        for t in c.wake.values() {
            let d = Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO);
            // Timestamps are whole seconds or microseconds: wake just after the moment.
            until = until.min(Instant::now() + d + Duration::from_millis(10));
        }
        if !c.dirty.is_empty() || !c.orphans.is_empty() {
            until = Instant::now() + opts.batch_period;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(until) => {}
            change = job_changes.recv() => match change {
                Some(change) => c.job_changed(change),
                None => break,
            },
            change = pod_changes.recv() => match change {
                Some(change) => c.pod_changed(change),
                None => break,
            },
        }
        // Fold a burst of changes into one pass.
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(opts.batch_period) => {}
        }
        drain(&mut job_changes, |ch| c.job_changed(ch));
        drain(&mut pod_changes, |ch| c.pod_changed(ch));
        let now = clock.now();
        let due: Vec<Key> = c
            .wake
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            c.wake.remove(&key);
            c.dirty.insert(key);
        }
        if Instant::now() >= next_resync {
            c.resync_all();
            next_resync = Instant::now() + opts.resync_period;
        }
    }
    tracing::info!("job controller: stopped");
}

fn drain(rx: &mut UnboundedReceiver<Change>, mut f: impl FnMut(Change)) {
    while let Ok(change) = rx.try_recv() {
        f(change);
    }
}

/// The controller's own creations and deletions for one Job not yet seen by its informer.
#[derive(Debug, Default)]
struct Expectation {
    /// Uids of pods created and not yet seen.
    adds: HashSet<String>,
    /// Uids of pods deleted and not yet seen deleted or terminating.
    dels: HashSet<String>,
    since: Option<Instant>,
}

struct Controller {
    client: Client,
    jobs: Informer,
    pods: Informer,
    events: EventRecorder,
    backoff: PodFailureBackoff,
    /// By Job uid.
    expectations: HashMap<String, Expectation>,
    /// The controller's latest writes of Jobs, used until the cache catches up.
    written_jobs: HashMap<Key, Arc<Value>>,
    /// The controller's latest writes of pods (by uid), used until the cache catches up.
    written_pods: HashMap<String, Arc<Value>>,
    /// When each Job must be synced again.
    wake: HashMap<Key, Timestamp>,
    /// Jobs to sync.
    dirty: BTreeSet<Key>,
    /// Pods with the tracking finalizer that may have lost their Job.
    orphans: BTreeSet<Key>,
    /// Warnings already given (Job uid, reason), so a Job left alone is not warned about on
    /// every sync.
    warned: HashSet<(String, String)>,
}

fn key_of(obj: &Value) -> Key {
    (
        object::namespace(obj).to_string(),
        object::name(obj).to_string(),
    )
}

fn rv(obj: &Value) -> u64 {
    object::resource_version(obj).unwrap_or(0)
}

/// The newer of the cached object and the controller's own last write of it (same uid).
fn newest(cached: Arc<Value>, written: Option<&Arc<Value>>) -> Arc<Value> {
    match written {
        Some(w) if object::uid(w) == object::uid(&cached) && rv(w) > rv(&cached) => Arc::clone(w),
        _ => cached,
    }
}

fn is_conflict_or_gone(e: &ApiError) -> bool {
    matches!(e, ApiError::Conflict { .. } | ApiError::NotFound { .. })
}

impl Controller {
    fn resync_all(&mut self) {
        for job in self.jobs.list() {
            self.dirty.insert(key_of(&job));
        }
        for pod in self.pods.list() {
            if has_tracking_finalizer(&pod) {
                self.orphans.insert(key_of(&pod));
            }
        }
    }

    fn job_changed(&mut self, change: Change) {
        match change {
            Change::Added(job) | Change::Modified { new: job, .. } => {
                self.dirty.insert(key_of(&job));
            }
            Change::Deleted(job) => {
                let key = key_of(&job);
                self.dirty.insert(key.clone());
                self.written_jobs.remove(&key);
                self.wake.remove(&key);
                self.expectations.remove(object::uid(&job));
                self.warned.retain(|(u, _)| u != object::uid(&job));
                // Its pods keep their finalizer until released.
                for pod in self.pods.by_index(OWNER_INDEX, object::uid(&job)) {
                    if has_tracking_finalizer(&pod) {
                        self.orphans.insert(key_of(&pod));
                    }
                }
            }
            Change::Relisted => self.resync_all(),
        }
    }

    fn pod_changed(&mut self, change: Change) {
        let (pod, gone) = match change {
            Change::Added(pod) | Change::Modified { new: pod, .. } => (pod, false),
            Change::Deleted(pod) => (pod, true),
            Change::Relisted => {
                self.resync_all();
                return;
            }
        };
        let uid = object::uid(&pod).to_string();
        // The controller's own write of the pod is no longer needed once the cache has it.
        if gone
            || self
                .written_pods
                .get(&uid)
                .is_some_and(|w| rv(w) <= rv(&pod))
        {
            self.written_pods.remove(&uid);
        }
        let owner = controller_ref(&pod)
            .filter(|r| str_at(r, "/kind") == "Job")
            .map(|r| {
                (
                    str_at(r, "/uid").to_string(),
                    str_at(r, "/name").to_string(),
                )
            });
        if let Some((owner_uid, owner_name)) = &owner {
            if let Some(exp) = self.expectations.get_mut(owner_uid) {
                exp.adds.remove(&uid);
                if gone || is_terminating(&pod) {
                    exp.dels.remove(&uid);
                }
            }
            self.dirty
                .insert((object::namespace(&pod).to_string(), owner_name.clone()));
        }
        if !gone && has_tracking_finalizer(&pod) {
            let orphaned = match &owner {
                None => true,
                Some((owner_uid, owner_name)) => {
                    match self.jobs.get(object::namespace(&pod), owner_name) {
                        Some(job) => object::uid(&job) != owner_uid || is_finished(&job),
                        None => true,
                    }
                }
            };
            if orphaned {
                self.orphans.insert(key_of(&pod));
            }
        }
    }

    /// The Job as the controller knows it best: the cache, or its own newer write.
    fn job(&mut self, key: &Key) -> Option<Arc<Value>> {
        let Some(cached) = self.jobs.get(&key.0, &key.1) else {
            self.written_jobs.remove(key);
            return None;
        };
        let job = newest(cached.clone(), self.written_jobs.get(key));
        if Arc::ptr_eq(&job, &cached) {
            self.written_jobs.remove(key);
        }
        Some(job)
    }

    /// Whether the pods the controller created and deleted for this Job are all in its cache.
    fn expectations_satisfied(&mut self, job_uid: &str, pods: &[Arc<Value>]) -> bool {
        let Some(exp) = self.expectations.get_mut(job_uid) else {
            return true;
        };
        let present: HashMap<&str, &Arc<Value>> =
            pods.iter().map(|p| (object::uid(p), p)).collect();
        exp.adds.retain(|u| !present.contains_key(u.as_str()));
        exp.dels
            .retain(|u| present.get(u.as_str()).is_some_and(|p| !is_terminating(p)));
        let expired = exp
            .since
            .is_some_and(|s| s.elapsed() > EXPECTATIONS_TIMEOUT);
        if exp.adds.is_empty() && exp.dels.is_empty() || expired {
            if expired {
                tracing::info!(job = job_uid, "job controller: expectations timed out");
            }
            self.expectations.remove(job_uid);
            return true;
        }
        false
    }

    fn expect(&mut self, job_uid: &str) -> &mut Expectation {
        let exp = self.expectations.entry(job_uid.to_string()).or_default();
        exp.since = Some(Instant::now());
        exp
    }

    fn retry(&mut self, key: &Key, now: Timestamp) {
        let at = add_duration(now, RETRY_AFTER);
        let t = self.wake.entry(key.clone()).or_insert(at);
        *t = (*t).min(at);
    }

    fn record(&self, job: &Value, event: &JobEvent) {
        self.events
            .event(job, event.type_, &event.reason, event.message.clone());
    }

    async fn sync(&mut self, key: &Key, now: Timestamp) {
        let Some(job) = self.job(key) else {
            self.wake.remove(key);
            return;
        };
        let uid = object::uid(&job).to_string();
        let pods: Vec<Arc<Value>> = self
            .pods
            .by_index(OWNER_INDEX, &uid)
            .into_iter()
            .filter(|p| is_controlled_by(p, &uid))
            .map(|p| {
                let u = object::uid(&p).to_string();
                newest(p, self.written_pods.get(&u))
            })
            .collect();
        if !self.expectations_satisfied(&uid, &pods) {
            // The informer will bring the rest; look again soon regardless.
            self.retry(key, now);
            return;
        }
        let refs: Vec<&Value> = pods.iter().map(|p| p.as_ref()).collect();
        let decision = decide_with_backoff(&job, &refs, now, &self.backoff);
        if let Some(t) = decision.wake_at {
            self.wake.insert(key.clone(), t);
        } else {
            self.wake.remove(key);
        }
        let job_name = format!("{}/{}", key.0, key.1);

        if let Some(updated) = decision.set_selector {
            match self.client.update(&updated).await {
                Ok(written) => {
                    tracing::info!(job = %job_name, "job controller: generated the selector");
                    self.written_jobs.insert(key.clone(), Arc::new(written));
                    self.dirty.insert(key.clone());
                }
                Err(e) => {
                    if !is_conflict_or_gone(&e) {
                        tracing::warn!(job = %job_name, error = %e, "job controller: could not set the selector");
                    }
                    self.retry(key, now);
                }
            }
            return;
        }
        if decision.delete_job {
            let options = DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Background),
                resource_version: Some(str_at(&job, "/metadata/resourceVersion").to_string())
                    .filter(|s| !s.is_empty()),
                uid: Some(uid.clone()),
                ..DeleteOptions::default()
            };
            match self.client.delete("Job", &key.0, &key.1, &options).await {
                Ok(_) => {
                    tracing::info!(job = %job_name, "job controller: deleted the finished job (ttlSecondsAfterFinished)")
                }
                Err(e) if is_conflict_or_gone(&e) => {
                    self.dirty.insert(key.clone());
                }
                Err(e) => {
                    tracing::warn!(job = %job_name, error = %e, "job controller: could not delete the finished job");
                    self.retry(key, now);
                }
            }
            return;
        }
        if decision.status.is_none() {
            // Events without a status change are warnings about a Job the controller leaves
            // alone: given once, not on every sync.
            for event in &decision.events {
                if self.warned.insert((uid.clone(), event.reason.clone())) {
                    self.record(&job, event);
                }
            }
        }

        // Pods deleted this sync, as the API answered them (their new resourceVersion).
        let mut latest: HashMap<String, Value> = HashMap::new();
        let mut failed_writes = 0i64;
        let deletions: Vec<PodDeletion> = decision.delete.clone();
        if !deletions.is_empty() {
            let exp = self.expect(&uid);
            for del in &deletions {
                exp.dels.insert(del.pod.uid.clone());
            }
        }
        for del in deletions {
            let pod_name = del.pod.name.clone();
            if del.remove_finalizer
                && let Some(pod) = pods.iter().find(|p| object::uid(p) == del.pod.uid)
                && has_tracking_finalizer(pod)
            {
                match self.remove_finalizer(pod, &del.pod.resource_version).await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(pod = %pod_name, error = %e, "job controller: could not release a pod before deleting it");
                        if let Some(exp) = self.expectations.get_mut(&uid) {
                            exp.dels.remove(&del.pod.uid);
                        }
                        failed_writes += 1;
                        continue;
                    }
                }
            }
            let options = DeleteOptions {
                uid: Some(del.pod.uid.clone()),
                ..DeleteOptions::default()
            };
            match self.client.delete("Pod", &key.0, &pod_name, &options).await {
                Ok(p) => {
                    if is_terminating(&p) {
                        latest.insert(del.pod.uid.clone(), p);
                    }
                    self.record(
                        &job,
                        &JobEvent::new(
                            "Normal",
                            "SuccessfulDelete",
                            format!("Deleted pod: {pod_name}"),
                        ),
                    );
                }
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    if let Some(exp) = self.expectations.get_mut(&uid) {
                        exp.dels.remove(&del.pod.uid);
                    }
                    failed_writes += 1;
                    self.record(
                        &job,
                        &JobEvent::new(
                            "Warning",
                            "FailedDelete",
                            format!("Error deleting pod {pod_name}: {e}"),
                        ),
                    );
                }
            }
        }

        let mut failed_creates = 0i64;
        if decision.create > 0 {
            failed_creates = self.create_pods(&job, decision.create).await as i64;
        }

        if failed_writes > 0 || failed_creates > 0 {
            self.retry(key, now);
        }
        if let Some(mut status) = decision.status {
            if failed_creates > 0
                && let Some(active) = status.get("active").and_then(Value::as_i64)
            {
                let active = (active - failed_creates).max(0);
                if active > 0 {
                    status["active"] = json!(active);
                } else if let Some(s) = status.as_object_mut() {
                    s.remove("active");
                }
            }
            let mut next = (*job).clone();
            next["status"] = status;
            match self.client.update_status(&next).await {
                Ok(written) => {
                    let written = Arc::new(written);
                    for event in &decision.events {
                        self.record(&written, event);
                    }
                    self.written_jobs.insert(key.clone(), written);
                }
                Err(e) => {
                    if !is_conflict_or_gone(&e) {
                        tracing::warn!(job = %job_name, error = %e, "job controller: could not write the status");
                    }
                    // The pods named in the status stay as they are until it is written.
                    self.retry(key, now);
                    return;
                }
            }
        }
        let mut removal_failed = false;
        for r in &decision.remove_finalizers {
            let pod = match latest.remove(&r.uid) {
                Some(p) => Arc::new(p),
                None => match pods.iter().find(|p| object::uid(p) == r.uid) {
                    Some(p) => Arc::clone(p),
                    None => continue,
                },
            };
            let resource_version = str_at(&pod, "/metadata/resourceVersion").to_string();
            if let Err(e) = self.remove_finalizer(&pod, &resource_version).await {
                tracing::debug!(pod = %r.name, error = %e, "job controller: could not remove the tracking finalizer");
                removal_failed = true;
            }
        }
        if removal_failed {
            self.retry(key, now);
        }
    }

    /// Removes the tracking finalizer from the pod, with its resourceVersion as precondition.
    /// Answers the pod as written (`None`: it is gone, or had no finalizer).
    async fn remove_finalizer(
        &mut self,
        pod: &Value,
        resource_version: &str,
    ) -> Result<Option<Value>, ApiError> {
        let remaining: Vec<String> = object::finalizers(pod)
            .into_iter()
            .filter(|f| f != JOB_TRACKING_FINALIZER)
            .collect();
        let finalizers = if remaining.is_empty() {
            Value::Null
        } else {
            json!(remaining)
        };
        let patch = json!({
            "metadata": {"resourceVersion": resource_version, "finalizers": finalizers},
        });
        let (ns, name) = (object::namespace(pod), object::name(pod));
        match self.client.patch("Pod", ns, name, &patch, false).await {
            Ok(written) => {
                if object::uid(&written) == object::uid(pod) && !has_tracking_finalizer(&written) {
                    self.written_pods
                        .insert(object::uid(pod).to_string(), Arc::new(written.clone()));
                }
                Ok(Some(written))
            }
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates `n` pods for the Job in batches of 1, 2, 4... (Kubernetes' slow start: a batch
    /// with a failure stops the rest). Answers how many were not created.
    async fn create_pods(&mut self, job: &Arc<Value>, n: usize) -> usize {
        let template = pod_from_template(job);
        let uid = object::uid(job).to_string();
        let mut remaining = n;
        let mut batch = 1usize;
        while remaining > 0 {
            let size = batch.min(remaining);
            let mut set = JoinSet::new();
            for _ in 0..size {
                let (client, pod) = (self.client.clone(), template.clone());
                set.spawn(async move { client.create(&pod).await });
            }
            let mut failures = 0;
            while let Some(result) = set.join_next().await {
                match result {
                    Ok(Ok(pod)) => {
                        self.expect(&uid).adds.insert(object::uid(&pod).to_string());
                        self.record(
                            job,
                            &JobEvent::new(
                                "Normal",
                                "SuccessfulCreate",
                                format!("Created pod: {}", object::name(&pod)),
                            ),
                        );
                    }
                    Ok(Err(e)) => {
                        failures += 1;
                        tracing::warn!(job = %object::name(job), error = %e, "job controller: could not create a pod");
                        self.record(
                            job,
                            &JobEvent::new(
                                "Warning",
                                "FailedCreate",
                                format!("Error creating: {e}"),
                            ),
                        );
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "job controller: a pod creation task failed");
                    }
                }
            }
            remaining -= size;
            if failures > 0 {
                return failures + remaining;
            }
            batch = batch.saturating_mul(2);
        }
        0
    }

    /// Removes the tracking finalizer from a pod whose Job is gone or finished.
    async fn release_orphan(&mut self, key: &Key) {
        let Some(pod) = self.pods.get(&key.0, &key.1) else {
            return;
        };
        let pod = newest(pod.clone(), self.written_pods.get(object::uid(&pod)));
        if !has_tracking_finalizer(&pod) {
            return;
        }
        if let Some(r) = controller_ref(&pod) {
            if str_at(r, "/kind") != "Job" || str_at(r, "/apiVersion") != "batch/v1" {
                return;
            }
            if let Some(job) = self.jobs.get(&key.0, str_at(r, "/name"))
                && object::uid(&job) == str_at(r, "/uid")
                && !is_finished(&job)
            {
                return;
            }
        }
        let resource_version = str_at(&pod, "/metadata/resourceVersion").to_string();
        match self.remove_finalizer(&pod, &resource_version).await {
            Ok(_) => {
                tracing::debug!(pod = %format!("{}/{}", key.0, key.1), "job controller: released an orphan pod")
            }
            Err(e) => {
                tracing::debug!(pod = %format!("{}/{}", key.0, key.1), error = %e, "job controller: could not release an orphan pod; will look again");
                self.orphans.insert(key.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "job-uid";

    fn t(s: &str) -> Timestamp {
        s.parse().expect("a test timestamp")
    }

    /// 2026-01-01T00:10:00Z plus seconds.
    fn at(secs: i64) -> Timestamp {
        after(t("2026-01-01T00:10:00Z"), secs)
    }

    fn ts(secs: i64) -> String {
        format_time(at(secs))
    }

    /// A Job with its generated selector, `spec` merged over completions 4, parallelism 2.
    fn job(spec: Value, status: Value) -> Value {
        let mut j = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": UID, "resourceVersion": "10"},
            "spec": {
                "completions": 4, "parallelism": 2, "backoffLimit": 6,
                "completionMode": "NonIndexed", "suspend": false,
                "template": {"metadata": {"labels": {"app": "pi"}},
                             "spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "pi", "image": "busybox"}]}},
            },
            "status": status,
        });
        j = with_generated_selector(&j);
        if let (Some(s), Some(extra)) = (j["spec"].as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        j
    }

    fn pod(name: &str, phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "resourceVersion": "5", "creationTimestamp": ts(-100),
                "finalizers": [JOB_TRACKING_FINALIZER],
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                     "uid": UID, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"containers": [{"name": "pi", "image": "busybox"}]},
            "status": {"phase": phase},
        })
    }

    fn without_finalizer(mut p: Value) -> Value {
        p["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("finalizers");
        p
    }

    fn set(mut v: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        v.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("the parent exists")
            .insert(key.to_string(), value);
        v
    }

    fn decide_at(job: &Value, pods: &[Value], now: Timestamp) -> JobDecision {
        let refs: Vec<&Value> = pods.iter().collect();
        decide(job, &refs, now)
    }

    fn status(d: &JobDecision) -> Value {
        d.status.clone().expect("a status change")
    }

    fn cond_types(status: &Value) -> Vec<String> {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "True")
            .map(|c| c["type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn names(refs: &[PodRef]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    fn deleted(d: &JobDecision) -> Vec<(&str, bool)> {
        d.delete
            .iter()
            .map(|x| (x.pod.name.as_str(), x.remove_finalizer))
            .collect()
    }

    #[test]
    fn a_job_without_selector_gets_the_generated_one_first() {
        let mut j = job(json!({}), json!({}));
        j["spec"].as_object_mut().expect("spec").remove("selector");
        let d = decide_at(&j, &[], at(0));
        let updated = d.set_selector.clone().expect("the selector is set");
        assert_eq!(
            updated["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": UID}})
        );
        assert_eq!(
            updated["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "controller-uid": UID, "batch.kubernetes.io/controller-uid": UID,
                   "job-name": "pi", "batch.kubernetes.io/job-name": "pi"})
        );
        assert_eq!(d.create, 0, "nothing else before the selector is written");
        assert!(d.status.is_none());

        // A manual selector that is missing: nothing is created, a warning says why.
        let manual = set(j, "/spec/manualSelector", json!(true));
        let d = decide_at(&manual, &[], at(0));
        assert!(d.set_selector.is_none() && d.create == 0);
        assert_eq!(d.events[0].reason, "InvalidSelector");
    }

    #[test]
    fn pods_come_from_the_template_with_owner_and_finalizer() {
        let p = pod_from_template(&job(json!({}), json!({})));
        assert_eq!(p["metadata"]["generateName"], "pi-");
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            UID
        );
        assert_eq!(p["metadata"]["finalizers"], json!([JOB_TRACKING_FINALIZER]));
        assert_eq!(
            p["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": UID,
                    "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }

    /// (what, job, pods, pods created, pods deleted (name, finalizer removed first)).
    #[test]
    fn how_many_pods_run() {
        let running = |n: &str| pod(n, "Running");
        let done = |n: &str| without_finalizer(pod(n, "Succeeded"));
        type Row = (
            &'static str,
            Value,
            Vec<Value>,
            usize,
            Vec<(&'static str, bool)>,
        );
        let table: Vec<Row> = vec![
            (
                "a new job starts parallelism pods",
                job(json!({}), json!({})),
                vec![],
                2,
                vec![],
            ),
            (
                "never more than completions - succeeded",
                job(
                    json!({"completions": 3, "parallelism": 5}),
                    json!({"succeeded": 2}),
                ),
                vec![done("a"), done("b")],
                1,
                vec![],
            ),
            (
                "a finished pod is replaced",
                job(json!({}), json!({"succeeded": 1})),
                vec![done("a"), running("b")],
                1,
                vec![],
            ),
            (
                "parallelism reached: nothing to do",
                job(json!({}), json!({})),
                vec![running("a"), running("b")],
                0,
                vec![],
            ),
            (
                "parallelism lowered: the surplus pod goes, the pending one first",
                job(json!({"parallelism": 1}), json!({})),
                vec![running("a"), pod("b", "Pending")],
                0,
                vec![("b", true)],
            ),
            (
                "work queue: parallelism pods",
                job(json!({"completions": null}), json!({})),
                vec![],
                2,
                vec![],
            ),
            (
                "work queue: after a success no new pods",
                job(
                    json!({"completions": null, "parallelism": 3}),
                    json!({"succeeded": 1}),
                ),
                vec![done("a"), running("b")],
                0,
                vec![],
            ),
            (
                "a pod deleted before it finished is replaced (TerminatingOrFailed)",
                job(json!({"completions": 1, "parallelism": 1}), json!({})),
                vec![set(
                    running("a"),
                    "/metadata/deletionTimestamp",
                    json!(ts(-20)),
                )],
                1,
                vec![],
            ),
            (
                "podReplacementPolicy Failed: not until the terminating pod failed",
                job(
                    json!({"completions": 1, "parallelism": 1, "podReplacementPolicy": "Failed"}),
                    json!({}),
                ),
                vec![set(
                    running("a"),
                    "/metadata/deletionTimestamp",
                    json!(ts(-1)),
                )],
                0,
                vec![],
            ),
            (
                "suspended: active pods deleted, uncounted",
                job(json!({"suspend": true}), json!({"startTime": ts(-50)})),
                vec![running("a"), running("b")],
                0,
                vec![("a", true), ("b", true)],
            ),
            (
                "a job being deleted creates nothing",
                set(
                    job(json!({}), json!({})),
                    "/metadata/deletionTimestamp",
                    json!(ts(-1)),
                ),
                vec![],
                0,
                vec![],
            ),
            (
                "pods of another owner are not counted",
                job(json!({}), json!({})),
                vec![set(
                    running("x"),
                    "/metadata/ownerReferences/0/uid",
                    json!("other"),
                )],
                2,
                vec![],
            ),
        ];
        for (what, j, pods, create, delete) in table {
            let d = decide_at(&j, &pods, at(0));
            assert_eq!(d.create, create, "{what}: created");
            assert_eq!(deleted(&d), delete, "{what}: deleted");
        }
    }

    #[test]
    fn a_new_job_gets_its_start_time_and_counters() {
        let d = decide_at(&job(json!({}), json!({})), &[], at(0));
        assert_eq!(d.create, 2);
        assert_eq!(
            status(&d),
            json!({"startTime": ts(0), "active": 2, "ready": 0, "terminating": 0,
                   "uncountedTerminatedPods": {}})
        );
        // A suspended Job has no start time, and says it is suspended.
        let d = decide_at(&job(json!({"suspend": true}), json!({})), &[], at(0));
        let s = status(&d);
        assert!(s.get("startTime").is_none(), "{s}");
        assert_eq!(s["conditions"][0]["type"], "Suspended");
        assert_eq!(s["conditions"][0]["reason"], "JobSuspended");
        assert_eq!(
            d.events,
            vec![JobEvent::new("Normal", "Suspended", "Job suspended")]
        );
        // Suspending a started Job clears its start time (the deadline counts active time).
        let started = job(
            json!({"suspend": true}),
            json!({"startTime": ts(-50), "active": 1}),
        );
        let d = decide_at(&started, &[pod("a", "Running")], at(0));
        let s = status(&d);
        assert!(s.get("startTime").is_none(), "{s}");
        assert_eq!(s["terminating"], 1);
    }

    #[test]
    fn finished_pods_are_counted_once_through_uncounted_and_their_finalizer() {
        let j = job(json!({}), json!({"startTime": ts(-60), "active": 2}));
        // 1. The succeeded pod is named in uncountedTerminatedPods, its finalizer goes after.
        let pods = vec![pod("a", "Succeeded"), pod("b", "Running")];
        let d = decide_at(&j, &pods, at(0));
        let s = status(&d);
        assert_eq!(
            s["uncountedTerminatedPods"],
            json!({"succeeded": ["uid-a"]})
        );
        assert!(s.get("succeeded").is_none());
        assert_eq!(s["active"], 2, "a replacement is created");
        assert_eq!(d.create, 1);
        assert_eq!(names(&d.remove_finalizers), vec!["a"]);

        // 2. Same view again (the finalizer removal not seen yet): not counted twice, removal retried.
        let j2 = set(j.clone(), "/status", s.clone());
        let pods2 = vec![
            pod("a", "Succeeded"),
            pod("b", "Running"),
            pod("c", "Pending"),
        ];
        let d = decide_at(&j2, &pods2, at(1));
        assert!(d.status.is_none(), "{:?}", d.status);
        assert_eq!(names(&d.remove_finalizers), vec!["a"]);
        assert_eq!(d.create, 0);

        // 3. The finalizer is gone: counted.
        let pods3 = vec![
            without_finalizer(pod("a", "Succeeded")),
            pod("b", "Running"),
            pod("c", "Pending"),
        ];
        let d = decide_at(&j2, &pods3, at(2));
        let s = status(&d);
        assert_eq!(s["succeeded"], 1);
        assert_eq!(s["uncountedTerminatedPods"], json!({}));
        assert!(d.remove_finalizers.is_empty());

        // 4. A counted pod that is deleted later does not make the count go down.
        let j4 = set(j2, "/status", s);
        let d = decide_at(&j4, &[pod("b", "Running"), pod("c", "Pending")], at(3));
        assert!(d.status.is_none(), "{:?}", d.status);
        assert_eq!(
            d.create, 0,
            "succeeded 1 + 2 active = 3 of 4: parallelism 2 is full"
        );
    }

    #[test]
    fn completions_reached_gives_success_criteria_met_then_complete() {
        let j = job(
            json!({}),
            json!({"startTime": ts(-60), "succeeded": 3, "active": 1}),
        );
        // The last pod succeeded but is not counted yet: SuccessCriteriaMet only.
        let d = decide_at(&j, &[pod("d", "Succeeded")], at(0));
        let s = status(&d);
        assert_eq!(cond_types(&s), vec!["SuccessCriteriaMet"]);
        assert_eq!(s["conditions"][0]["reason"], "CompletionsReached");
        assert_eq!(
            s["conditions"][0]["message"],
            "Reached expected number of succeeded pods"
        );
        assert!(s.get("completionTime").is_none());
        assert!(d.events.is_empty());
        assert_eq!(d.create, 0);

        // Counted: Complete, with the completion time and the event.
        let j = set(j, "/status", s);
        let d = decide_at(&j, &[without_finalizer(pod("d", "Succeeded"))], at(1));
        let s = status(&d);
        assert_eq!(s["succeeded"], 4);
        assert_eq!(cond_types(&s), vec!["SuccessCriteriaMet", "Complete"]);
        assert_eq!(s["completionTime"], ts(1));
        assert!(s.get("active").is_none());
        assert_eq!(
            d.events,
            vec![JobEvent::new("Normal", "Completed", "Job completed")]
        );

        // Finished: nothing more, and the same decision again changes nothing.
        let j = set(j, "/status", s);
        let d = decide_at(&j, &[without_finalizer(pod("d", "Succeeded"))], at(2));
        assert_eq!(d, JobDecision::default());
    }

    #[test]
    fn a_work_queue_is_complete_when_one_succeeded_and_none_is_active() {
        let j = job(
            json!({"completions": null}),
            json!({"startTime": ts(-9), "succeeded": 1}),
        );
        let d = decide_at(
            &j,
            &[
                without_finalizer(pod("a", "Succeeded")),
                pod("b", "Running"),
            ],
            at(0),
        );
        assert!(!cond_types(&status(&d)).contains(&"SuccessCriteriaMet".to_string()));
        let d = decide_at(
            &j,
            &[
                without_finalizer(pod("a", "Succeeded")),
                without_finalizer(pod("b", "Failed")),
            ],
            at(0),
        );
        assert!(
            cond_types(&status(&d)).contains(&"Complete".to_string()),
            "{:?}",
            d.status
        );
    }

    #[test]
    fn more_failures_than_the_backoff_limit_fail_the_job() {
        let failed = |n: &str| pod(n, "Failed");
        let j = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 1}),
            json!({"startTime": ts(-60), "failed": 1}),
        );
        let d = decide_at(&j, &[without_finalizer(failed("a")), failed("b")], at(0));
        let s = status(&d);
        assert_eq!(cond_types(&s), vec!["FailureTarget"]);
        assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
        assert_eq!(s["uncountedTerminatedPods"], json!({"failed": ["uid-b"]}));
        assert_eq!(d.create, 0);
        assert_eq!(names(&d.remove_finalizers), vec!["b"]);

        let j = set(j, "/status", s);
        let d = decide_at(
            &j,
            &[
                without_finalizer(failed("a")),
                without_finalizer(failed("b")),
            ],
            at(1),
        );
        let s = status(&d);
        assert_eq!(s["failed"], 2);
        assert_eq!(cond_types(&s), vec!["FailureTarget", "Failed"]);
        let failed_cond = &s["conditions"][1];
        assert_eq!(failed_cond["reason"], "BackoffLimitExceeded");
        assert_eq!(failed_cond["message"], MESSAGE_BACKOFF_LIMIT_EXCEEDED);
        assert!(s.get("completionTime").is_none());
        assert_eq!(
            d.events,
            vec![JobEvent::new(
                "Warning",
                REASON_BACKOFF_LIMIT_EXCEEDED,
                MESSAGE_BACKOFF_LIMIT_EXCEEDED
            )]
        );
    }

    #[test]
    fn failed_pods_are_replaced_after_the_back_off() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 4}),
            json!({"startTime": ts(-60), "failed": 1}),
        );
        let finished_at = |p: Value, secs: i64| {
            set(
                p,
                "/status/containerStatuses",
                json!([{"name": "pi", "restartCount": 0,
                        "state": {"terminated": {"exitCode": 1, "finishedAt": ts(secs)}}}]),
            )
        };
        let first = finished_at(without_finalizer(pod("a", "Failed")), -5);
        let d = decide_at(&j, std::slice::from_ref(&first), at(0));
        assert_eq!(d.create, 0, "10 s after the failure, not 5");
        assert_eq!(d.wake_at, Some(at(5)));
        let d = decide_at(&j, std::slice::from_ref(&first), at(5));
        assert_eq!(d.create, 1);

        // Two failures in a row: 20 s.
        let j = set(j, "/status/failed", json!(2));
        let second = finished_at(without_finalizer(pod("b", "Failed")), 0);
        let d = decide_at(&j, &[first.clone(), second.clone()], at(10));
        assert_eq!((d.create, d.wake_at), (0, Some(at(20))));
        // A success in between resets the count.
        let j = job(
            json!({"completions": 3, "parallelism": 1, "backoffLimit": 4}),
            json!({"startTime": ts(-60), "failed": 1, "succeeded": 1}),
        );
        let ok = finished_at(without_finalizer(pod("c", "Succeeded")), -3);
        let d = decide_at(&j, &[first, ok], at(0));
        assert_eq!(d.create, 1);
    }

    #[test]
    fn on_failure_restarts_count_toward_the_backoff_limit() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 2,
                   "template": {"spec": {"restartPolicy": "OnFailure",
                                         "containers": [{"name": "pi", "image": "busybox"}]}}}),
            json!({"startTime": ts(-60), "active": 1}),
        );
        let restarted = |n: i64| {
            set(
                pod("a", "Running"),
                "/status/containerStatuses",
                json!([{"name": "pi", "restartCount": n}]),
            )
        };
        let d = decide_at(&j, &[restarted(1)], at(0));
        assert!(!cond_types(&status_or_old(&d, &j)).contains(&"FailureTarget".to_string()));
        let d = decide_at(&j, &[restarted(2)], at(0));
        let s = status(&d);
        assert_eq!(cond_types(&s), vec!["FailureTarget"]);
        assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
        assert_eq!(
            deleted(&d),
            vec![("a", false)],
            "deleted, counted as failed"
        );
        assert_eq!(s["uncountedTerminatedPods"], json!({"failed": ["uid-a"]}));
        assert_eq!(s["terminating"], 1);
        assert!(s.get("active").is_none());
    }

    fn status_or_old(d: &JobDecision, j: &Value) -> Value {
        d.status.clone().unwrap_or_else(|| j["status"].clone())
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_deletes_its_pods() {
        let j = job(
            json!({"activeDeadlineSeconds": 60}),
            json!({"startTime": ts(-30), "active": 2}),
        );
        let pods = vec![pod("a", "Running"), pod("b", "Running")];
        let d = decide_at(&j, &pods, at(0));
        assert_eq!(d.wake_at, Some(at(30)));
        assert!(d.delete.is_empty());

        let d = decide_at(&j, &pods, at(30));
        let s = status(&d);
        assert_eq!(cond_types(&s), vec!["FailureTarget"]);
        assert_eq!(s["conditions"][0]["reason"], "DeadlineExceeded");
        assert_eq!(s["conditions"][0]["message"], MESSAGE_DEADLINE_EXCEEDED);
        assert_eq!(deleted(&d), vec![("a", false), ("b", false)]);
        assert_eq!(d.create, 0);

        // The deleted pods are still terminating (their node stops them): not Failed yet.
        let j = set(j, "/status", s);
        let terminating = |n: &str| {
            set(
                without_finalizer(pod(n, "Running")),
                "/metadata/deletionTimestamp",
                json!(ts(30)),
            )
        };
        let d = decide_at(&j, &[terminating("a"), terminating("b")], at(31));
        let s = status(&d);
        assert_eq!(s["failed"], 2);
        assert_eq!(s["terminating"], 2);
        assert_eq!(cond_types(&s), vec!["FailureTarget"]);
        // Gone: Failed.
        let j = set(j, "/status", s);
        let d = decide_at(&j, &[], at(32));
        let s = status(&d);
        assert_eq!(cond_types(&s), vec!["FailureTarget", "Failed"]);
        assert_eq!(s["conditions"][1]["reason"], "DeadlineExceeded");
    }

    #[test]
    fn resuming_restarts_the_clock() {
        let j = job(
            json!({"suspend": false, "activeDeadlineSeconds": 60}),
            json!({"conditions": [
                {"type": "Suspended", "status": "True", "reason": "JobSuspended",
                 "message": "Job suspended", "lastProbeTime": ts(-400), "lastTransitionTime": ts(-400)}]}),
        );
        let d = decide_at(&j, &[], at(0));
        let s = status(&d);
        assert_eq!(s["startTime"], ts(0));
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["conditions"][0]["reason"], "JobResumed");
        assert_eq!(
            d.create, 2,
            "not failed by the deadline counted while suspended"
        );
        assert_eq!(
            d.events,
            vec![JobEvent::new("Normal", "Resumed", "Job resumed")]
        );
    }

    #[test]
    fn a_finished_job_is_deleted_after_its_ttl_and_lets_its_pods_go() {
        let finished = json!({"conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": ts(-50)}]});
        let j = job(json!({"ttlSecondsAfterFinished": 100}), finished);
        let d = decide_at(&j, &[pod("a", "Succeeded")], at(0));
        assert!(!d.delete_job);
        assert_eq!(d.wake_at, Some(at(50)));
        assert_eq!(names(&d.remove_finalizers), vec!["a"]);
        assert!(d.status.is_none());
        let d = decide_at(&j, &[], at(50));
        assert!(d.delete_job);
        // Without a TTL it stays.
        let j = job(json!({}), j["status"].clone());
        assert_eq!(decide_at(&j, &[], at(1000)), JobDecision::default());
    }

    #[test]
    fn a_job_managed_by_another_controller_is_left_alone() {
        let j = job(json!({"managedBy": "example.com/batch"}), json!({}));
        assert_eq!(decide_at(&j, &[], at(0)), JobDecision::default());
        let j = job(json!({"managedBy": MANAGED_BY}), json!({}));
        assert_eq!(decide_at(&j, &[], at(0)).create, 2);
    }

    #[test]
    fn an_indexed_job_is_left_alone_with_a_warning() {
        let j = job(json!({"completionMode": "Indexed"}), json!({}));
        let d = decide_at(&j, &[], at(0));
        assert_eq!(d.create, 0);
        assert!(d.status.is_none());
        assert_eq!(d.events[0].reason, "UnsupportedCompletionMode");
    }

    #[test]
    fn decisions_are_stable_once_written() {
        // Whatever decide writes, deciding again on it (same pods) changes nothing more.
        let cases = vec![
            (
                job(json!({}), json!({})),
                vec![pod("a", "Running"), pod("b", "Pending")],
            ),
            (job(json!({"suspend": true}), json!({})), vec![]),
            (
                job(json!({"completions": null}), json!({})),
                vec![pod("a", "Running"), pod("b", "Running")],
            ),
        ];
        for (j, pods) in cases {
            let d = decide_at(&j, &pods, at(0));
            let j = match d.status {
                Some(s) => set(j, "/status", s),
                None => j,
            };
            let again = decide_at(&j, &pods, at(5));
            assert!(again.status.is_none(), "{j}: {:?}", again.status);
            assert!(again.events.is_empty());
        }
    }

    #[test]
    fn the_back_off_doubles_up_to_its_maximum() {
        let b = PodFailureBackoff::default();
        assert_eq!(b.after(0), Duration::ZERO);
        assert_eq!(b.after(1), Duration::from_secs(10));
        assert_eq!(b.after(2), Duration::from_secs(20));
        assert_eq!(b.after(4), Duration::from_secs(80));
        assert_eq!(b.after(7), Duration::from_secs(600));
        assert_eq!(b.after(1000), Duration::from_secs(600));
    }
}

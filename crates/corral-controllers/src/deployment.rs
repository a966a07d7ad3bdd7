//! The Deployment controller: Kubernetes' `deployment-controller`, run by the Raft leader. A
//! Deployment owns ReplicaSets, one per pod template it has had; the controller only writes
//! ReplicaSets (their size, annotations and ownership) and the Deployment's status. The
//! ReplicaSet controller makes the pods.
//!
//! Every decision is the pure function [`decide`]: the Deployment, the ReplicaSets of its
//! namespace, the pods of its ReplicaSets (for `Recreate`) and "now" in, a [`Plan`] of writes
//! out. It follows Kubernetes' `syncDeployment` step by step:
//!
//! - **Ownership**: ReplicaSets whose controller is the Deployment and that match its selector
//!   are its own; orphans that match are adopted, owned ones that stopped matching released.
//! - **The new ReplicaSet** is the oldest owned one whose template equals the Deployment's,
//!   ignoring the `pod-template-hash` label ([`equal_ignore_hash`]). When none does, one is
//!   created, named `<deployment>-<hash>`, the hash ([`compute_hash`]) on its selector, its
//!   template's labels and its own labels. The hash is Kubernetes': FNV-32a, then the decimal
//!   digits of the sum written in the "safe" alphabet `bcdfghjklmnpqrstvwxz2456789`, with
//!   `status.collisionCount` folded in. What is hashed is the template's JSON in a canonical
//!   form (keys sorted, nulls and empty lists dropped) rather than Go's memory dump of the
//!   struct, so the hashes differ from a Kubernetes cluster's, but they are just as stable. A
//!   name taken by a ReplicaSet with another template is a collision: `collisionCount` goes up
//!   and the next pass tries the next name.
//! - **Revisions**: the new ReplicaSet's `deployment.kubernetes.io/revision` is one more than
//!   the highest of the others (so an old ReplicaSet that becomes new again, a rollback, gets
//!   the next revision and keeps its earlier ones in `revision-history`); the Deployment's own
//!   annotation follows the new ReplicaSet's. The Deployment's other annotations are copied to
//!   the new ReplicaSet (so `kubernetes.io/change-cause` shows in `rollout history`).
//! - **Scaling** (a changed `replicas`, or a paused Deployment): the one active ReplicaSet
//!   takes the whole count; several active ones are scaled in proportion to their size, read
//!   against the `max-replicas` annotation each carries ([`proportional_sizes`]).
//! - **RollingUpdate**: `maxSurge` and `maxUnavailable` (an integer or a percentage of
//!   `replicas`: surge rounds up, unavailable down; both 0 makes unavailable 1;
//!   [`resolve_fenceposts`]). The new ReplicaSet grows while the total stays within `replicas +
//!   maxSurge` ([`new_rs_new_replicas`]); old ones shrink, their unhealthy replicas first
//!   ([`cleanup_unhealthy_replicas`]), then as long as `replicas - maxUnavailable` stay
//!   available ([`scale_down_old_replica_sets`]). Availability is the ReplicaSets'
//!   `status.availableReplicas`, which count `minReadySeconds` (copied to every new
//!   ReplicaSet), never more than their `spec.replicas`: a ReplicaSet just scaled down cannot
//!   count the pods it is losing while its status catches up (Kubernetes reads the status as
//!   it is, which lets a stale status push an old ReplicaSet below the floor).
//! - **Recreate**: old ReplicaSets to 0, then, once none of their pods is left running, the new
//!   one up to `replicas`.
//! - **History**: once a rollout is complete, old ReplicaSets scaled to 0 beyond
//!   `revisionHistoryLimit` are deleted, oldest revision first.
//! - **Status**: `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
//!   `unavailableReplicas`, `observedGeneration`, `collisionCount`, and the conditions
//!   `Available` (`MinimumReplicasAvailable` / `MinimumReplicasUnavailable`) and `Progressing`
//!   (`NewReplicaSetCreated`, `FoundNewReplicaSet`, `ReplicaSetUpdated`,
//!   `NewReplicaSetAvailable`, `DeploymentPaused`, `DeploymentResumed`, and
//!   `ProgressDeadlineExceeded` with status False once no progress was seen for
//!   `progressDeadlineSeconds`); a ReplicaSet's `ReplicaFailure` condition is carried over.
//! - **Paused**: no rollout (no new ReplicaSet, no surge), but scaling still applies.
//!
//! Rollback is `corralctl rollout undo`'s job (it copies an old ReplicaSet's template into the
//! Deployment); the controller sees a template change like any other.
//!
//! [`run`] feeds [`decide`] from informers (Deployments, ReplicaSets, Pods) and carries the plan
//! out: every ReplicaSet update names the resourceVersion it was decided on (a Conflict means
//! "decide again"), creates are by name, deletions carry uid and resourceVersion
//! preconditions. After its own writes the controller waits for its cache to show them before
//! deciding again for that Deployment, so a lagging cache never makes it scale twice. Scaling
//! is told in `ScalingReplicaSet` events on the Deployment ("Scaled up replica set
//! nginx-5d4c7b9f8 to 3").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use corral_api::ApiError;
use corral_api::object;
use corral_api::selector::{LabelSelector, from_label_selector_json};
use corral_client::events::EventRecorder;
use corral_client::informer::{Informer, index_by_namespace, index_by_owner_uid};
use corral_client::{Change, Client, DeleteOptions};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::node_lifecycle::{format_time, parse_time};

/// The label that ties a ReplicaSet (and its pods) to one pod template of its Deployment.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and of its Deployment: that of the new ReplicaSet).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions of a ReplicaSet that became new again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's `replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The pre-`apps/v1` rollback request; never copied to ReplicaSets.
const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// The longest `revision-history` annotation kept (Kubernetes' limit).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Condition types.
pub const CONDITION_AVAILABLE: &str = "Available";
pub const CONDITION_PROGRESSING: &str = "Progressing";
pub const CONDITION_REPLICA_FAILURE: &str = "ReplicaFailure";

/// Condition reasons, as Kubernetes words them.
pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_MINIMUM_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MINIMUM_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const REASON_FAILED_RS_CREATE: &str = "ReplicaSetCreateError";

/// Event reasons.
pub const EVENT_SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
pub const EVENT_SELECTING_ALL: &str = "SelectingAll";

/// The event source, as Kubernetes names it.
const COMPONENT: &str = "deployment-controller";

/// `progressDeadlineSeconds` of this value means "no deadline" (Go's `math.MaxInt32`).
const NO_PROGRESS_DEADLINE: i64 = i32::MAX as i64;

/// The informers' namespace index.
const NAMESPACE_INDEX: &str = "namespace";
/// The informers' owner index.
const OWNER_INDEX: &str = "owner";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An object the controller cannot act on: it names the object and what is wrong with it. Not
/// retryable: the object must change first (the apiserver's validation normally prevents it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidObject {
    pub kind: &'static str,
    /// `namespace/name`.
    pub key: String,
    pub why: String,
}

impl fmt::Display for InvalidObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.key, self.why)
    }
}

impl std::error::Error for InvalidObject {}

// ---------------------------------------------------------------------------------------------
// Pod template hash
// ---------------------------------------------------------------------------------------------

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv32a_update(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
pub fn fnv32a(bytes: &[u8]) -> u32 {
    fnv32a_update(FNV_OFFSET, bytes)
}

/// The alphabet of Kubernetes' `rand.SafeEncodeString`: no vowels (no words), no `0`, `1`, `3`
/// (no confusion with `o`, `l`, `e`).
const SAFE_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `rand.SafeEncodeString`: every byte becomes the letter of its value modulo 27.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Keys whose value, when an empty object, means the same as none: maps, and Kubernetes
/// structs held by value (`metadata`, `resources`).
const MAP_KEYS: [&str; 5] = [
    "labels",
    "annotations",
    "nodeSelector",
    "metadata",
    "resources",
];

/// `v` without what does not change its meaning: `null` members, empty lists, and empty
/// `labels` / `annotations` / `nodeSelector` / `metadata` / `resources` objects. (Kubernetes compares templates with
/// `Semantic.DeepEqual`, for which a nil and an empty list or map are equal.)
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = normalized(v);
                let empty = match &v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(m) => m.is_empty() && MAP_KEYS.contains(&k.as_str()),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Writes `v` as JSON with every object's keys in sorted order (whatever the map's own order).
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical text of a template that is hashed: normalized, keys sorted, no spaces.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(&normalized(v), &mut out);
    out
}

/// The `pod-template-hash` of a pod template, as Kubernetes' `controller.ComputeHash`:
/// FNV-32a over the template (here: its [`canonical_json`]), then, when there is a collision
/// count, over its value as 8 little-endian bytes (4 significant, as Kubernetes writes it);
/// the decimal digits of the sum, [`safe_encode`]d.
pub fn compute_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut hash = fnv32a(canonical_json(template).as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        // Go writes `uint32(*collisionCount)`: the low 32 bits.
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a_update(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

/// The template without its `pod-template-hash` label, normalized.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    normalized(&t)
}

/// Whether two pod templates are the same but for the `pod-template-hash` label (Kubernetes'
/// `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

// ---------------------------------------------------------------------------------------------
// maxSurge / maxUnavailable
// ---------------------------------------------------------------------------------------------

/// An `IntOrString` scaled against `total` (Kubernetes' `GetScaledValueFromIntOrPercent`): an
/// integer as it is; `"N%"` as N percent of `total`, rounded up or down. Absent is 0. A string
/// that is not a percentage is an error.
pub fn scaled_value(value: Option<&Value>, total: i64, round_up: bool) -> Result<i64, String> {
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{n} is not an integer")),
        Some(Value::String(s)) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err(format!("{s:?} is neither an integer nor a percentage"));
            };
            let percent: i64 = digits
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage"))?;
            let scaled = percent.saturating_mul(total);
            let (q, r) = (scaled.div_euclid(100), scaled.rem_euclid(100));
            Ok(if round_up && r != 0 { q + 1 } else { q })
        }
        Some(other) => Err(format!("{other} is neither an integer nor a percentage")),
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas (Kubernetes' `ResolveFenceposts`): surge
/// rounds up, unavailable down, and when both come to 0 unavailable is 1 (validation refuses
/// both 0, but rounding down can get there). A value that cannot be read counts as 0.
pub fn resolve_fenceposts(
    max_surge: Option<&Value>,
    max_unavailable: Option<&Value>,
    desired: i64,
) -> (i64, i64) {
    let surge = scaled_value(max_surge, desired, true).unwrap_or(0);
    let mut unavailable = scaled_value(max_unavailable, desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

// ---------------------------------------------------------------------------------------------
// The rolling-update math
// ---------------------------------------------------------------------------------------------

/// The new ReplicaSet's size for the next step (Kubernetes' `NewRSNewReplicas`). `Recreate`:
/// all of `desired`. `RollingUpdate`: grow while every ReplicaSet's replicas together
/// (`current_total`) stay within `desired + max_surge`, never beyond `desired`.
pub fn new_rs_new_replicas(
    rolling: bool,
    desired: i64,
    max_surge: i64,
    current_total: i64,
    new_rs_replicas: i64,
) -> i64 {
    if !rolling {
        return desired;
    }
    let max_total = desired + max_surge;
    if current_total >= max_total {
        return new_rs_replicas;
    }
    let scale_up = (max_total - current_total).min(desired - new_rs_replicas);
    new_rs_replicas + scale_up
}

/// A ReplicaSet as the scale-down math sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsCounts {
    /// `spec.replicas`.
    pub replicas: i64,
    /// `status.availableReplicas`.
    pub available: i64,
}

/// How far old ReplicaSets may shrink in total (Kubernetes' `maxScaledDown` of
/// `reconcileOldReplicaSets`): every pod counted (`all_replicas`), less the minimum to keep
/// available, less the new ReplicaSet's replicas that are not available yet.
pub fn max_scaled_down(
    all_replicas: i64,
    desired: i64,
    max_unavailable: i64,
    new_rs: RsCounts,
) -> i64 {
    let min_available = desired - max_unavailable;
    let new_unavailable = new_rs.replicas - new_rs.available;
    all_replicas - min_available - new_unavailable
}

/// Scales down the unhealthy (not available) replicas of the old ReplicaSets, oldest first, at
/// most `max_cleanup` in all (Kubernetes' `cleanupUnhealthyReplicas`): removing a replica that
/// is not available never lowers availability. `olds` are updated in place; answers how many
/// replicas went.
pub fn cleanup_unhealthy_replicas(olds: &mut [RsCounts], max_cleanup: i64) -> i64 {
    let mut total = 0;
    for rs in olds.iter_mut() {
        if total >= max_cleanup {
            break;
        }
        if rs.replicas == 0 || rs.available >= rs.replicas {
            continue;
        }
        let down = (max_cleanup - total).min(rs.replicas - rs.available);
        rs.replicas -= down;
        total += down;
    }
    total
}

/// Scales down the old ReplicaSets, oldest first, as far as availability allows (Kubernetes'
/// `scaleDownOldReplicaSetsForRollingUpdate`): the available replicas of every active ReplicaSet
/// (the olds' and `new_available`) beyond `desired - max_unavailable` may go. `olds` are updated
/// in place; answers how many replicas went.
pub fn scale_down_old_replica_sets(
    olds: &mut [RsCounts],
    new_available: i64,
    desired: i64,
    max_unavailable: i64,
) -> i64 {
    let min_available = desired - max_unavailable;
    let available: i64 = olds
        .iter()
        .filter(|rs| rs.replicas > 0)
        .map(|rs| rs.available)
        .sum::<i64>()
        + new_available;
    if available <= min_available {
        return 0;
    }
    let to_scale_down = available - min_available;
    let mut total = 0;
    for rs in olds.iter_mut() {
        if total >= to_scale_down {
            break;
        }
        if rs.replicas == 0 {
            continue;
        }
        let down = rs.replicas.min(to_scale_down - total);
        rs.replicas -= down;
        total += down;
    }
    total
}

/// One active ReplicaSet for proportional scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    /// `spec.replicas`.
    pub replicas: i64,
    /// Its `max-replicas` annotation: the Deployment's `replicas + maxSurge` when it was last
    /// scaled.
    pub annotated_max: Option<i64>,
}

/// The new sizes of the active ReplicaSets when the Deployment is scaled in the middle of a
/// rollout (Kubernetes' proportional scaling in `scale`). `sets` must be sorted as Kubernetes
/// sorts them: largest first, ties to the newer when adding, to the older when removing.
/// `to_add` is `replicas + maxSurge` (0 when scaling to 0) less their current total; each set
/// gets its share in proportion to its size against its `max-replicas` annotation (or the
/// Deployment's `status.replicas` without one), and what rounding leaves over goes to the
/// first. A set never goes below 0.
pub fn proportional_sizes(
    sets: &[Proportion],
    desired: i64,
    max_surge: i64,
    status_replicas: i64,
    to_add: i64,
) -> Vec<i64> {
    let max_after = desired + max_surge;
    let mut added = 0;
    let mut sizes: Vec<i64> = Vec::with_capacity(sets.len());
    for rs in sets {
        if to_add == 0 {
            sizes.push(rs.replicas);
            continue;
        }
        let proportion = if rs.replicas == 0 || to_add == added {
            0
        } else {
            let fraction = if desired == 0 {
                -rs.replicas
            } else {
                let before = rs.annotated_max.unwrap_or(status_replicas);
                if before <= 0 {
                    0
                } else {
                    let size = (rs.replicas * max_after) as f64 / before as f64;
                    size.round() as i64 - rs.replicas
                }
            };
            let allowed = to_add - added;
            if to_add > 0 {
                fraction.min(allowed)
            } else {
                fraction.max(allowed)
            }
        };
        sizes.push(rs.replicas + proportion);
        added += proportion;
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        *first = (*first + to_add - added).max(0);
    }
    sizes
}

// ---------------------------------------------------------------------------------------------
// Objects as the controller reads them
// ---------------------------------------------------------------------------------------------

pub(crate) fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `v` as an object, made one (replacing `null` or a non-object) when it is not.
fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
        .expect("the value was made an object just above")
}

/// The object at `path` under `v`, made (replacing `null` or a non-object) when missing.
pub(crate) fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = ensure_object(v);
    for key in path {
        let child = cur
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = ensure_object(child);
    }
    cur
}

pub(crate) fn key_of(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

/// The object's controller (the owner reference with `controller: true`), if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The controller reference an owner puts on what it makes.
pub fn owner_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": object::name(owner),
        "uid": object::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// What an owner does with an object its selector might cover (Kubernetes'
/// `ControllerRefManager.ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and matching: its own.
    Owned,
    /// An orphan that matches: the owner takes it.
    Adopt,
    /// Controlled by the owner but no longer matching: the owner lets it go.
    Release,
    /// Someone else's, or nothing to do with the owner.
    Ignore,
}

/// Whether an owner (`owner_uid`, being deleted or not) claims `obj` with `selector`.
pub fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    obj: &Value,
) -> Claim {
    let matches = selector.matches(&object::labels(obj));
    match controller_ref(obj) {
        Some(r) if r.get("uid").and_then(Value::as_str) != Some(owner_uid) => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || object::deletion_timestamp(obj).is_some() => {
            Claim::Ignore
        }
        None => Claim::Adopt,
    }
}

/// `obj` with `owner_ref` added to its owner references.
pub fn with_owner(obj: &Value, owner_ref: Value) -> Value {
    let mut obj = obj.clone();
    let meta = object_at(&mut obj, &["metadata"]);
    let refs = meta
        .entry("ownerReferences")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !refs.is_array() {
        *refs = Value::Array(Vec::new());
    }
    if let Value::Array(refs) = refs {
        refs.push(owner_ref);
    }
    obj
}

/// `obj` without the owner reference to `owner_uid`.
pub fn without_owner(obj: &Value, owner_uid: &str) -> Value {
    let mut obj = obj.clone();
    if let Some(refs) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
    }
    obj
}

/// How a Deployment replaces its pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Recreate,
    /// `maxSurge` and `maxUnavailable` as written (integers or percentages).
    RollingUpdate {
        max_surge: Option<Value>,
        max_unavailable: Option<Value>,
    },
}

/// `apps/v1` `DeploymentStatus`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentStatus {
    pub observed_generation: i64,
    pub replicas: i64,
    pub updated_replicas: i64,
    pub ready_replicas: i64,
    pub available_replicas: i64,
    pub unavailable_replicas: i64,
    pub conditions: Vec<Value>,
    pub collision_count: Option<i64>,
}

impl DeploymentStatus {
    pub fn from_json(status: Option<&Value>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        let int = |field: &str| s.get(field).and_then(Value::as_i64).unwrap_or(0);
        Self {
            observed_generation: int("observedGeneration"),
            replicas: int("replicas"),
            updated_replicas: int("updatedReplicas"),
            ready_replicas: int("readyReplicas"),
            available_replicas: int("availableReplicas"),
            unavailable_replicas: int("unavailableReplicas"),
            conditions: s
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            collision_count: s.get("collisionCount").and_then(Value::as_i64),
        }
    }

    /// The status as Kubernetes writes it (zero counts left out, as `omitempty` does).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (field, value) in [
            ("observedGeneration", self.observed_generation),
            ("replicas", self.replicas),
            ("updatedReplicas", self.updated_replicas),
            ("readyReplicas", self.ready_replicas),
            ("availableReplicas", self.available_replicas),
            ("unavailableReplicas", self.unavailable_replicas),
        ] {
            if value != 0 {
                m.insert(field.into(), json!(value));
            }
        }
        if !self.conditions.is_empty() {
            m.insert("conditions".into(), Value::Array(self.conditions.clone()));
        }
        if let Some(c) = self.collision_count {
            m.insert("collisionCount".into(), json!(c));
        }
        Value::Object(m)
    }
}

/// A Deployment as the controller reads it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: i64,
    pub replicas: i64,
    /// `spec.selector` as written (copied into the ReplicaSets' selectors).
    pub selector_json: Value,
    pub selector: LabelSelector,
    pub template: Value,
    pub strategy: Strategy,
    pub min_ready_seconds: i64,
    pub revision_history_limit: Option<i64>,
    pub paused: bool,
    pub progress_deadline_seconds: Option<i64>,
    pub annotations: BTreeMap<String, String>,
    pub status: DeploymentStatus,
    pub deleting: bool,
}

impl Deployment {
    pub fn from_json(obj: &Value) -> Result<Self, InvalidObject> {
        let invalid = |why: String| InvalidObject {
            kind: "Deployment",
            key: key_of(obj),
            why,
        };
        let selector_json = obj
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        let selector = from_label_selector_json(&selector_json)
            .map_err(|e| invalid(format!("spec.selector: {e}")))?;
        let strategy = match str_at(obj, "/spec/strategy/type") {
            "" | "RollingUpdate" => Strategy::RollingUpdate {
                max_surge: obj
                    .pointer("/spec/strategy/rollingUpdate/maxSurge")
                    .cloned(),
                max_unavailable: obj
                    .pointer("/spec/strategy/rollingUpdate/maxUnavailable")
                    .cloned(),
            },
            "Recreate" => Strategy::Recreate,
            other => {
                return Err(invalid(format!(
                    "spec.strategy.type {other:?} is not one of Recreate, RollingUpdate"
                )));
            }
        };
        Ok(Self {
            name: object::name(obj).to_string(),
            namespace: object::namespace(obj).to_string(),
            uid: object::uid(obj).to_string(),
            generation: object::generation(obj),
            replicas: int_at(obj, "/spec/replicas").unwrap_or(1),
            selector_json,
            selector,
            template: obj.pointer("/spec/template").cloned().unwrap_or(json!({})),
            strategy,
            min_ready_seconds: int_at(obj, "/spec/minReadySeconds").unwrap_or(0),
            revision_history_limit: int_at(obj, "/spec/revisionHistoryLimit"),
            paused: obj
                .pointer("/spec/paused")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            progress_deadline_seconds: int_at(obj, "/spec/progressDeadlineSeconds"),
            annotations: object::annotations(obj),
            status: DeploymentStatus::from_json(obj.get("status")),
            deleting: object::deletion_timestamp(obj).is_some(),
        })
    }

    pub fn is_rolling_update(&self) -> bool {
        matches!(self.strategy, Strategy::RollingUpdate { .. })
    }

    fn fenceposts(&self) -> Option<(i64, i64)> {
        match &self.strategy {
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } => Some(resolve_fenceposts(
                max_surge.as_ref(),
                max_unavailable.as_ref(),
                self.replicas,
            )),
            Strategy::Recreate => None,
        }
    }

    /// `maxSurge` in replicas (0 for `Recreate`).
    pub fn max_surge(&self) -> i64 {
        self.fenceposts().map_or(0, |(surge, _)| surge)
    }

    /// `maxUnavailable` in replicas, at most `replicas` (0 for `Recreate` or 0 replicas).
    pub fn max_unavailable(&self) -> i64 {
        if self.replicas == 0 {
            return 0;
        }
        self.fenceposts()
            .map_or(0, |(_, unavailable)| unavailable.min(self.replicas))
    }

    pub fn has_progress_deadline(&self) -> bool {
        self.progress_deadline_seconds
            .is_some_and(|s| s != NO_PROGRESS_DEADLINE)
    }

    fn owner_reference(&self) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": self.name,
            "uid": self.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }
}

/// A ReplicaSet, as the controller's working copy.
#[derive(Debug, Clone, PartialEq)]
struct Rs {
    obj: Value,
}

impl Rs {
    fn name(&self) -> &str {
        object::name(&self.obj)
    }

    fn uid(&self) -> &str {
        object::uid(&self.obj)
    }

    /// `spec.replicas` (1 when absent, as the apiserver defaults it).
    fn replicas(&self) -> i64 {
        int_at(&self.obj, "/spec/replicas").unwrap_or(1)
    }

    fn status(&self, field: &str) -> i64 {
        self.obj
            .get("status")
            .and_then(|s| s.get(field))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    fn available(&self) -> i64 {
        self.status("availableReplicas")
    }

    /// Its available replicas as the scale-down math counts them: at most `spec.replicas`. A
    /// ReplicaSet just scaled down whose status has not caught up yet still reports the pods it
    /// is about to lose; Kubernetes reads the status as it is, which lets a stale status
    /// over-count and an old ReplicaSet shrink below the availability floor.
    fn available_now(&self) -> i64 {
        self.available().min(self.replicas())
    }

    fn counts(&self) -> RsCounts {
        RsCounts {
            replicas: self.replicas(),
            available: self.available_now(),
        }
    }

    fn min_ready_seconds(&self) -> i64 {
        int_at(&self.obj, "/spec/minReadySeconds").unwrap_or(0)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    fn int_annotation(&self, key: &str) -> Option<i64> {
        self.annotation(key).and_then(|v| v.parse().ok())
    }

    fn set_annotation(&mut self, key: &str, value: String) {
        object_at(&mut self.obj, &["metadata", "annotations"]).insert(key.into(), json!(value));
    }

    fn set_replicas(&mut self, n: i64) {
        object_at(&mut self.obj, &["spec"]).insert("replicas".into(), json!(n));
    }

    /// Its creation time; one not created yet is the newest.
    fn created(&self) -> Timestamp {
        parse_time(self.obj.pointer("/metadata/creationTimestamp")).unwrap_or(Timestamp::MAX)
    }

    fn revision(&self) -> i64 {
        self.int_annotation(REVISION_ANNOTATION).unwrap_or(0)
    }

    fn deleting(&self) -> bool {
        object::deletion_timestamp(&self.obj).is_some()
    }

    fn template(&self) -> &Value {
        self.obj.pointer("/spec/template").unwrap_or(&Value::Null)
    }
}

fn by_creation(a: &Rs, b: &Rs) -> std::cmp::Ordering {
    a.created()
        .cmp(&b.created())
        .then_with(|| a.name().cmp(b.name()))
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Value {
    let t = format_time(now);
    json!({
        "type": type_,
        "status": status,
        "lastUpdateTime": t,
        "lastTransitionTime": t,
        "reason": reason,
        "message": message,
    })
}

/// The condition of this type, if any.
pub fn get_condition<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| str_at(c, "/type") == type_)
}

/// Kubernetes' `SetDeploymentCondition`: nothing when status and reason are the same already;
/// the transition time kept when only the reason changes.
fn set_condition(conditions: &mut Vec<Value>, mut condition: Value) {
    let type_ = str_at(&condition, "/type").to_string();
    if let Some(current) = get_condition(conditions, &type_) {
        let same_status = str_at(current, "/status") == str_at(&condition, "/status");
        if same_status && str_at(current, "/reason") == str_at(&condition, "/reason") {
            return;
        }
        if same_status && let Some(t) = current.get("lastTransitionTime") {
            condition["lastTransitionTime"] = t.clone();
        }
    }
    remove_condition(conditions, &type_);
    conditions.push(condition);
}

fn remove_condition(conditions: &mut Vec<Value>, type_: &str) {
    conditions.retain(|c| str_at(c, "/type") != type_);
}

fn condition_reason<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a str> {
    get_condition(conditions, type_).map(|c| str_at(c, "/reason"))
}

/// Kubernetes' `DeploymentComplete`: every replica updated, no extra, every one available, and
/// the status is of the current generation.
fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    status.updated_replicas == d.replicas
        && status.replicas == d.replicas
        && status.available_replicas == d.replicas
        && status.observed_generation >= d.generation
}

/// Kubernetes' `DeploymentProgressing`: more updated, ready or available replicas than the last
/// status said, or fewer old ones.
fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = old.replicas - old.updated_replicas;
    let new_old = new.replicas - new.updated_replicas;
    new.updated_replicas > old.updated_replicas
        || new_old < old_old
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

/// When the `Progressing` condition (last updated at its `lastUpdateTime`) runs out of time.
fn progress_deadline(d: &Deployment, condition: &Value) -> Option<Timestamp> {
    let from = parse_time(condition.get("lastUpdateTime"))?;
    let seconds = d.progress_deadline_seconds?;
    from.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// Kubernetes' `DeploymentTimedOut`: the `Progressing` condition of `status` saw no update for
/// `progressDeadlineSeconds`.
fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !d.has_progress_deadline() {
        return false;
    }
    let Some(condition) = get_condition(&status.conditions, CONDITION_PROGRESSING) else {
        return false;
    };
    match str_at(condition, "/reason") {
        REASON_NEW_RS_AVAILABLE => false,
        REASON_TIMED_OUT => true,
        _ => progress_deadline(d, condition).is_some_and(|deadline| deadline < now),
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// One write of a [`Plan`], in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet; each event (a `ScalingReplicaSet` message) is recorded on the
    /// Deployment once it exists.
    CreateReplicaSet { rs: Value, events: Vec<String> },
    /// Replace this ReplicaSet (its `metadata.resourceVersion` is the precondition).
    UpdateReplicaSet { rs: Value, events: Vec<String> },
    /// Delete this ReplicaSet (an old revision beyond the history limit).
    DeleteReplicaSet {
        namespace: String,
        name: String,
        uid: String,
        resource_version: String,
    },
    /// Set the Deployment's `deployment.kubernetes.io/revision` annotation.
    SetRevision { revision: String },
    /// Write the Deployment's status.
    UpdateStatus { status: Value },
}

/// What one sync of a Deployment does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Look again at this time even if nothing changes (the progress deadline).
    pub requeue_at: Option<Timestamp>,
    /// Warnings to record on the Deployment: (reason, message).
    pub warnings: Vec<(String, String)>,
}

/// Decides one sync of `deployment` (Kubernetes' `syncDeployment`), given every ReplicaSet of
/// its namespace, the pods of its ReplicaSets (read only by `Recreate`, which waits for the old
/// ones to be gone) and the time. The plan's writes assume each one succeeds; stop at the first
/// that fails and decide again once the cache has caught up.
pub fn decide(
    deployment: &Value,
    replica_sets: &[Arc<Value>],
    pods: &[Arc<Value>],
    now: Timestamp,
) -> Result<Plan, InvalidObject> {
    let d = Deployment::from_json(deployment)?;
    if d.selector.is_empty() || d.selector.is_nothing() {
        // Kubernetes: "This deployment will select all pods"; only observedGeneration moves.
        let mut plan = Plan::default();
        plan.warnings.push((
            EVENT_SELECTING_ALL.into(),
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        ));
        if d.status.observed_generation < d.generation {
            let mut status = d.status.clone();
            status.observed_generation = d.generation;
            plan.actions.push(Action::UpdateStatus {
                status: status.to_json(),
            });
        }
        return Ok(plan);
    }

    let mut releases = Vec::new();
    let mut claimed = Vec::new();
    let mut adopted = BTreeSet::new();
    let mut names = BTreeMap::new();
    for rs in replica_sets {
        if object::namespace(rs) != d.namespace {
            continue;
        }
        names.insert(object::name(rs).to_string(), Arc::clone(rs));
        match claim(&d.uid, d.deleting, &d.selector, rs) {
            Claim::Owned => claimed.push(Rs {
                obj: (**rs).clone(),
            }),
            Claim::Adopt => {
                adopted.insert(object::name(rs).to_string());
                claimed.push(Rs {
                    obj: with_owner(rs, d.owner_reference()),
                });
            }
            Claim::Release => releases.push(without_owner(rs, &d.uid)),
            Claim::Ignore => {}
        }
    }
    claimed.sort_by(by_creation);
    let pods_by_rs = pods_by_replica_set(&d, &claimed, pods);

    let mut s = Sync::new(d, claimed, names, now);
    // Adopted ReplicaSets carry their new owner reference: they are written whatever else
    // happens to them.
    for i in 0..s.rses.len() {
        if adopted.contains(s.rses[i].name()) {
            s.touch(i);
        }
    }
    s.releases = releases;

    if s.d.deleting {
        s.sync_status_only();
    } else {
        s.check_paused_conditions();
        if s.d.paused || s.is_scaling_event() {
            s.sync();
        } else {
            match s.d.strategy {
                Strategy::Recreate => s.rollout_recreate(&pods_by_rs),
                Strategy::RollingUpdate { .. } => s.rollout_rolling(),
            }
        }
    }
    Ok(s.finish())
}

/// The pods of each claimed ReplicaSet (by uid) that the Deployment's selector covers.
fn pods_by_replica_set(
    d: &Deployment,
    rses: &[Rs],
    pods: &[Arc<Value>],
) -> HashMap<String, Vec<Arc<Value>>> {
    let uids: BTreeSet<&str> = rses.iter().map(Rs::uid).filter(|u| !u.is_empty()).collect();
    let mut out: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for pod in pods {
        if object::namespace(pod) != d.namespace || !d.selector.matches(&object::labels(pod)) {
            continue;
        }
        let Some(owner) = controller_ref(pod)
            .and_then(|r| r.get("uid"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if uids.contains(owner) {
            out.entry(owner.to_string())
                .or_default()
                .push(Arc::clone(pod));
        }
    }
    out
}

/// One sync in progress: the Deployment and working copies of its ReplicaSets, changed as
/// Kubernetes' controller would change them, turned into writes at the end.
struct Sync {
    d: Deployment,
    /// The Deployment's status as the sync goes (Kubernetes mutates `d.Status` in place).
    status: DeploymentStatus,
    /// The Deployment's revision annotation as the sync goes.
    revision: Option<String>,
    /// Working copies of the Deployment's ReplicaSets, oldest first.
    rses: Vec<Rs>,
    /// Every ReplicaSet name in the namespace (a new name may collide with one).
    names: BTreeMap<String, Arc<Value>>,
    /// ReplicaSets changed, in the order they were first changed.
    touched: Vec<usize>,
    events: HashMap<usize, Vec<String>>,
    created: Option<usize>,
    deletes: Vec<usize>,
    releases: Vec<Value>,
    /// A hash collision was found: the sync ends with the new collision count.
    stopped: bool,
    requeue_at: Option<Timestamp>,
    now: Timestamp,
}

impl Sync {
    fn new(
        d: Deployment,
        rses: Vec<Rs>,
        names: BTreeMap<String, Arc<Value>>,
        now: Timestamp,
    ) -> Self {
        Self {
            status: d.status.clone(),
            revision: d.annotations.get(REVISION_ANNOTATION).cloned(),
            d,
            rses,
            names,
            touched: Vec::new(),
            events: HashMap::new(),
            created: None,
            deletes: Vec::new(),
            releases: Vec::new(),
            stopped: false,
            requeue_at: None,
            now,
        }
    }

    fn touch(&mut self, i: usize) {
        if !self.touched.contains(&i) {
            self.touched.push(i);
        }
    }

    fn update(&mut self, i: usize, rs: Rs, event: Option<String>) {
        self.rses[i] = rs;
        self.touch(i);
        if let Some(e) = event {
            self.events.entry(i).or_default().push(e);
        }
    }

    fn active(&self, indices: &[usize]) -> Vec<usize> {
        indices
            .iter()
            .copied()
            .filter(|&i| self.rses[i].replicas() > 0)
            .collect()
    }

    fn total_replicas(&self, indices: &[usize]) -> i64 {
        indices.iter().map(|&i| self.rses[i].replicas()).sum()
    }

    /// Kubernetes' `FindNewReplicaSet`: the oldest whose template equals the Deployment's.
    fn find_new(&self) -> Option<usize> {
        self.rses
            .iter()
            .position(|rs| equal_ignore_hash(rs.template(), &self.d.template))
    }

    fn set_deployment_revision(&mut self, revision: &str) {
        if self.revision.as_deref() != Some(revision) {
            self.revision = Some(revision.to_string());
        }
    }

    /// Kubernetes' `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (made when `create`
    /// and there is none) with its annotations brought up to date, and the old ones.
    fn new_and_old(&mut self, create: bool) -> (Option<usize>, Vec<usize>) {
        let new = self.find_new();
        let olds: Vec<usize> = (0..self.rses.len()).filter(|&i| Some(i) != new).collect();
        let max_old_revision = olds
            .iter()
            .map(|&i| self.rses[i].revision())
            .max()
            .unwrap_or(0);
        let new_revision = (max_old_revision + 1).to_string();
        if let Some(i) = new {
            let mut rs = self.rses[i].clone();
            let annotations_updated = set_new_rs_annotations(&self.d, &mut rs, &new_revision, true);
            let min_ready_changed = rs.min_ready_seconds() != self.d.min_ready_seconds;
            if annotations_updated || min_ready_changed {
                object_at(&mut rs.obj, &["spec"])
                    .insert("minReadySeconds".into(), json!(self.d.min_ready_seconds));
                self.update(i, rs, None);
                return (Some(i), olds);
            }
            let revision = rs.annotation(REVISION_ANNOTATION).unwrap_or("").to_string();
            self.set_deployment_revision(&revision);
            if self.d.has_progress_deadline()
                && get_condition(&self.status.conditions, CONDITION_PROGRESSING).is_none()
            {
                let message = format!("Found new replica set \"{}\"", rs.name());
                set_condition(
                    &mut self.status.conditions,
                    new_condition(
                        CONDITION_PROGRESSING,
                        "True",
                        REASON_FOUND_NEW_RS,
                        message,
                        self.now,
                    ),
                );
            }
            return (Some(i), olds);
        }
        if !create || self.stopped {
            return (None, olds);
        }

        let hash = compute_hash(&self.d.template, self.status.collision_count);
        let mut rs = Rs {
            obj: new_replica_set(&self.d, &hash),
        };
        if self.names.contains_key(rs.name()) {
            // Kubernetes finds this out from the create's AlreadyExists: an owned ReplicaSet of
            // that name with this template would have been found above, so this is a collision.
            self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
            self.stopped = true;
            self.requeue_at = Some(self.now);
            return (None, olds);
        }
        let mut all = olds.clone();
        let current_total = self.total_replicas(&all);
        let count = new_rs_new_replicas(
            self.d.is_rolling_update(),
            self.d.replicas,
            self.d.max_surge(),
            current_total,
            0,
        );
        rs.set_replicas(count);
        set_new_rs_annotations(&self.d, &mut rs, &new_revision, false);
        let name = rs.name().to_string();
        self.rses.push(rs);
        let i = self.rses.len() - 1;
        all.push(i);
        self.created = Some(i);
        self.touch(i);
        if count > 0 {
            self.events
                .entry(i)
                .or_default()
                .push(format!("Scaled up replica set {name} to {count}"));
        }
        self.set_deployment_revision(&new_revision);
        if self.d.has_progress_deadline() {
            set_condition(
                &mut self.status.conditions,
                new_condition(
                    CONDITION_PROGRESSING,
                    "True",
                    REASON_NEW_RS_CREATED,
                    format!("Created new replica set \"{name}\""),
                    self.now,
                ),
            );
        }
        (Some(i), olds)
    }

    /// Kubernetes' `scaleReplicaSet`: the new size and the replicas annotations.
    fn scale(&mut self, i: usize, new_scale: i64, operation: &str) {
        let rs = &self.rses[i];
        let max = self.d.replicas + self.d.max_surge();
        let size_changes = rs.replicas() != new_scale;
        if !size_changes && !replicas_annotations_need_update(rs, self.d.replicas, max) {
            return;
        }
        let mut next = rs.clone();
        next.set_replicas(new_scale);
        set_replicas_annotations(&mut next, self.d.replicas, max);
        let event = size_changes.then(|| {
            format!(
                "Scaled {operation} replica set {} to {new_scale}",
                rs.name()
            )
        });
        self.update(i, next, event);
    }

    /// Kubernetes' `scaleReplicaSetAndRecordEvent`: whether the size changed.
    fn scale_and_record(&mut self, i: usize, new_scale: i64) -> bool {
        let current = self.rses[i].replicas();
        if current == new_scale {
            return false;
        }
        let operation = if current < new_scale { "up" } else { "down" };
        self.scale(i, new_scale, operation);
        true
    }

    /// Kubernetes' `isScalingEvent`: an active ReplicaSet was sized for another `replicas`.
    fn is_scaling_event(&mut self) -> bool {
        let (new, olds) = self.new_and_old(false);
        let all: Vec<usize> = olds.into_iter().chain(new).collect();
        self.active(&all).into_iter().any(|i| {
            self.rses[i]
                .int_annotation(DESIRED_REPLICAS_ANNOTATION)
                .is_some_and(|desired| desired != self.d.replicas)
        })
    }

    /// Kubernetes' `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if !self.d.has_progress_deadline() {
            return;
        }
        let reason = condition_reason(&self.status.conditions, CONDITION_PROGRESSING);
        if reason == Some(REASON_TIMED_OUT) {
            return;
        }
        let paused_condition = reason == Some(REASON_PAUSED);
        let condition = if self.d.paused && !paused_condition {
            new_condition(
                CONDITION_PROGRESSING,
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
                self.now,
            )
        } else if !self.d.paused && paused_condition {
            new_condition(
                CONDITION_PROGRESSING,
                "Unknown",
                REASON_RESUMED,
                "Deployment is resumed".into(),
                self.now,
            )
        } else {
            return;
        };
        set_condition(&mut self.status.conditions, condition);
    }

    /// Kubernetes' `sync`: scaling (and history clean-up when paused), then the status.
    fn sync(&mut self) {
        let (new, olds) = self.new_and_old(false);
        let snapshot = self.snapshot(new, &olds);
        self.scale_deployment(new, &olds);
        if self.d.paused && !self.d.annotations.contains_key(ROLLBACK_TO_ANNOTATION) {
            self.cleanup(&olds);
        }
        self.sync_deployment_status(&snapshot, new.map(|i| self.rses[i].clone()));
    }

    fn sync_status_only(&mut self) {
        let (new, olds) = self.new_and_old(false);
        let snapshot = self.snapshot(new, &olds);
        self.sync_deployment_status(&snapshot, new.map(|i| self.rses[i].clone()));
    }

    fn snapshot(&self, new: Option<usize>, olds: &[usize]) -> Vec<Rs> {
        olds.iter()
            .copied()
            .chain(new)
            .map(|i| self.rses[i].clone())
            .collect()
    }

    /// Kubernetes' `scale`.
    fn scale_deployment(&mut self, new: Option<usize>, olds: &[usize]) {
        if self.stopped {
            return;
        }
        if let Some(i) = self.active_or_latest(new, olds) {
            if self.rses[i].replicas() != self.d.replicas {
                self.scale_and_record(i, self.d.replicas);
            }
            return;
        }
        if new.is_some_and(|i| is_saturated(&self.d, &self.rses[i])) {
            for i in self.active(olds) {
                self.scale_and_record(i, 0);
            }
            return;
        }
        if !self.d.is_rolling_update() {
            return;
        }
        let all: Vec<usize> = olds.iter().copied().chain(new).collect();
        let mut all = self.active(&all);
        let total = self.total_replicas(&all);
        let allowed = if self.d.replicas > 0 {
            self.d.replicas + self.d.max_surge()
        } else {
            0
        };
        let to_add = allowed - total;
        let operation = match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => {
                // Larger first; among equals, newer first.
                all.sort_by(|&a, &b| {
                    let (a, b) = (&self.rses[a], &self.rses[b]);
                    b.replicas()
                        .cmp(&a.replicas())
                        .then_with(|| by_creation(b, a))
                });
                "up"
            }
            std::cmp::Ordering::Less => {
                // Larger first; among equals, older first.
                all.sort_by(|&a, &b| {
                    let (a, b) = (&self.rses[a], &self.rses[b]);
                    b.replicas()
                        .cmp(&a.replicas())
                        .then_with(|| by_creation(a, b))
                });
                "down"
            }
            std::cmp::Ordering::Equal => "",
        };
        let sets: Vec<Proportion> = all
            .iter()
            .map(|&i| Proportion {
                replicas: self.rses[i].replicas(),
                annotated_max: self.rses[i].int_annotation(MAX_REPLICAS_ANNOTATION),
            })
            .collect();
        let sizes = proportional_sizes(
            &sets,
            self.d.replicas,
            self.d.max_surge(),
            self.d.status.replicas,
            to_add,
        );
        for (&i, size) in all.iter().zip(sizes) {
            self.scale(i, size, operation);
        }
    }

    /// Kubernetes' `FindActiveOrLatest`: the only active ReplicaSet; with none active, the new
    /// one or else the newest old one; with several, none.
    fn active_or_latest(&self, new: Option<usize>, olds: &[usize]) -> Option<usize> {
        if new.is_none() && olds.is_empty() {
            return None;
        }
        let all: Vec<usize> = olds.iter().copied().chain(new).collect();
        let active = self.active(&all);
        match active.as_slice() {
            [] => new.or_else(|| {
                olds.iter()
                    .copied()
                    .max_by(|&a, &b| by_creation(&self.rses[a], &self.rses[b]))
            }),
            [only] => Some(*only),
            _ => None,
        }
    }

    /// Kubernetes' `rolloutRolling`.
    fn rollout_rolling(&mut self) {
        let (new, olds) = self.new_and_old(true);
        let Some(new) = new else {
            // A collision: the new collision count is all there is to write.
            return;
        };
        let snapshot = self.snapshot(Some(new), &olds);
        let new_rs = self.rses[new].clone();
        let all: Vec<usize> = olds.iter().copied().chain([new]).collect();
        if self.reconcile_new_replica_set(&all, new) {
            return self.sync_rollout_status(&snapshot, Some(new_rs));
        }
        let active_olds = self.active(&olds);
        if self.reconcile_old_replica_sets(&active_olds, new) {
            return self.sync_rollout_status(&snapshot, Some(new_rs));
        }
        if deployment_complete(&self.d, &self.d.status) {
            self.cleanup(&olds);
        }
        self.sync_rollout_status(&snapshot, Some(new_rs));
    }

    /// Kubernetes' `reconcileNewReplicaSet`: whether the new ReplicaSet was resized.
    fn reconcile_new_replica_set(&mut self, all: &[usize], new: usize) -> bool {
        let current = self.rses[new].replicas();
        if current == self.d.replicas {
            return false;
        }
        if current > self.d.replicas {
            return self.scale_and_record(new, self.d.replicas);
        }
        let count = new_rs_new_replicas(
            self.d.is_rolling_update(),
            self.d.replicas,
            self.d.max_surge(),
            self.total_replicas(all),
            current,
        );
        self.scale_and_record(new, count)
    }

    /// Kubernetes' `reconcileOldReplicaSets`: whether an old ReplicaSet shrank.
    fn reconcile_old_replica_sets(&mut self, active_olds: &[usize], new: usize) -> bool {
        if self.total_replicas(active_olds) == 0 {
            return false;
        }
        let all: Vec<usize> = active_olds.iter().copied().chain([new]).collect();
        let max_unavailable = self.d.max_unavailable();
        let max_down = max_scaled_down(
            self.total_replicas(&all),
            self.d.replicas,
            max_unavailable,
            self.rses[new].counts(),
        );
        if max_down <= 0 {
            return false;
        }
        let mut olds = active_olds.to_vec();
        olds.sort_by(|&a, &b| by_creation(&self.rses[a], &self.rses[b]));
        let mut counts: Vec<RsCounts> = olds.iter().map(|&i| self.rses[i].counts()).collect();
        let cleaned = cleanup_unhealthy_replicas(&mut counts, max_down);
        for (&i, c) in olds.iter().zip(&counts) {
            self.scale_and_record(i, c.replicas);
        }
        let scaled = scale_down_old_replica_sets(
            &mut counts,
            self.rses[new].available_now(),
            self.d.replicas,
            max_unavailable,
        );
        for (&i, c) in olds.iter().zip(&counts) {
            self.scale_and_record(i, c.replicas);
        }
        cleaned + scaled > 0
    }

    /// Kubernetes' `rolloutRecreate`.
    fn rollout_recreate(&mut self, pods: &HashMap<String, Vec<Arc<Value>>>) {
        let (mut new, mut olds) = self.new_and_old(false);
        let mut snapshot = self.snapshot(new, &olds);
        let mut scaled_down = false;
        for i in self.active(&olds) {
            scaled_down |= self.scale_and_record(i, 0);
        }
        if scaled_down || self.old_pods_running(new, &olds, pods) {
            let new_rs = new.map(|i| self.rses[i].clone());
            return self.sync_rollout_status(&snapshot, new_rs);
        }
        if new.is_none() {
            (new, olds) = self.new_and_old(true);
            snapshot = self.snapshot(new, &olds);
        }
        let Some(new) = new else {
            return;
        };
        let new_rs = self.rses[new].clone();
        self.scale_and_record(new, self.d.replicas);
        if deployment_complete(&self.d, &self.d.status) {
            self.cleanup(&olds);
        }
        self.sync_rollout_status(&snapshot, Some(new_rs));
    }

    /// Kubernetes' `oldPodsRunning`: an old ReplicaSet still counts pods, or one of its pods is
    /// not finished.
    fn old_pods_running(
        &self,
        new: Option<usize>,
        olds: &[usize],
        pods: &HashMap<String, Vec<Arc<Value>>>,
    ) -> bool {
        if olds
            .iter()
            .map(|&i| self.rses[i].status("replicas"))
            .sum::<i64>()
            > 0
        {
            return true;
        }
        let new_uid = new.map(|i| self.rses[i].uid());
        pods.iter()
            .filter(|(uid, _)| Some(uid.as_str()) != new_uid)
            .flat_map(|(_, pods)| pods)
            .any(|pod| !matches!(str_at(pod, "/status/phase"), "Failed" | "Succeeded"))
    }

    /// Kubernetes' `cleanupDeployment`: old ReplicaSets beyond `revisionHistoryLimit`, oldest
    /// revision first, if they are scaled to 0 with no pods left and their status is current.
    fn cleanup(&mut self, olds: &[usize]) {
        let Some(limit) = self.d.revision_history_limit else {
            return;
        };
        let mut cleanable: Vec<usize> = olds
            .iter()
            .copied()
            .filter(|&i| !self.rses[i].deleting())
            .collect();
        let diff = cleanable.len() as i64 - limit;
        if diff <= 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            let (a, b) = (&self.rses[a], &self.rses[b]);
            a.revision()
                .cmp(&b.revision())
                .then_with(|| by_creation(a, b))
        });
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.rses[i];
            let generation = object::generation(&rs.obj);
            if rs.status("replicas") != 0
                || rs.replicas() != 0
                || generation > rs.status("observedGeneration")
                || self.touched.contains(&i)
            {
                continue;
            }
            self.deletes.push(i);
        }
    }

    /// Kubernetes' `syncDeploymentStatus`.
    fn sync_deployment_status(&mut self, all: &[Rs], new: Option<Rs>) {
        if self.stopped {
            return;
        }
        self.status = calculate_status(&self.d, &self.status, all, new.as_ref(), self.now);
    }

    /// Kubernetes' `syncRolloutStatus`: the counts, `Available`, and `Progressing` judged
    /// against the progress deadline.
    fn sync_rollout_status(&mut self, all: &[Rs], new: Option<Rs>) {
        if self.stopped {
            return;
        }
        let mut status = calculate_status(&self.d, &self.status, all, new.as_ref(), self.now);
        if !self.d.has_progress_deadline() {
            remove_condition(&mut status.conditions, CONDITION_PROGRESSING);
        }
        let current = get_condition(&self.status.conditions, CONDITION_PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| str_at(c, "/reason") == REASON_NEW_RS_AVAILABLE);
        if self.d.has_progress_deadline() && !complete_before {
            let subject = match &new {
                Some(rs) => format!("ReplicaSet \"{}\"", rs.name()),
                None => format!("Deployment \"{}\"", self.d.name),
            };
            if deployment_complete(&self.d, &status) {
                set_condition(
                    &mut status.conditions,
                    new_condition(
                        CONDITION_PROGRESSING,
                        "True",
                        REASON_NEW_RS_AVAILABLE,
                        format!("{subject} has successfully progressed."),
                        self.now,
                    ),
                );
            } else if deployment_progressing(&self.status, &status) {
                let mut condition = new_condition(
                    CONDITION_PROGRESSING,
                    "True",
                    REASON_RS_UPDATED,
                    format!("{subject} is progressing."),
                    self.now,
                );
                if let Some(c) = &current {
                    if str_at(c, "/status") == "True"
                        && let Some(t) = c.get("lastTransitionTime")
                    {
                        condition["lastTransitionTime"] = t.clone();
                    }
                    remove_condition(&mut status.conditions, CONDITION_PROGRESSING);
                }
                set_condition(&mut status.conditions, condition);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                set_condition(
                    &mut status.conditions,
                    new_condition(
                        CONDITION_PROGRESSING,
                        "False",
                        REASON_TIMED_OUT,
                        format!("{subject} has timed out progressing."),
                        self.now,
                    ),
                );
            }
        }
        match replica_failure(all, new.as_ref()) {
            Some(c) => set_condition(&mut status.conditions, c),
            None => remove_condition(&mut status.conditions, CONDITION_REPLICA_FAILURE),
        }
        // Kubernetes' `requeueStuckDeployment`: look again when the deadline runs out.
        if self.d.has_progress_deadline()
            && let Some(c) = &current
            && !deployment_complete(&self.d, &status)
            && str_at(c, "/reason") != REASON_TIMED_OUT
            && let Some(deadline) = progress_deadline(&self.d, c)
        {
            let at = deadline
                .checked_add(SignedDuration::from_secs(1))
                .unwrap_or(deadline)
                .max(self.now);
            self.requeue_at = Some(self.requeue_at.map_or(at, |r: Timestamp| r.min(at)));
        }
        self.status = status;
    }

    fn finish(self) -> Plan {
        let mut actions = Vec::new();
        for rs in self.releases {
            actions.push(Action::UpdateReplicaSet {
                rs,
                events: Vec::new(),
            });
        }
        let mut events = self.events;
        for &i in &self.touched {
            let rs = self.rses[i].obj.clone();
            let events = events.remove(&i).unwrap_or_default();
            if Some(i) == self.created {
                actions.push(Action::CreateReplicaSet { rs, events });
            } else {
                actions.push(Action::UpdateReplicaSet { rs, events });
            }
        }
        for &i in &self.deletes {
            let rs = &self.rses[i].obj;
            actions.push(Action::DeleteReplicaSet {
                namespace: object::namespace(rs).to_string(),
                name: object::name(rs).to_string(),
                uid: object::uid(rs).to_string(),
                resource_version: str_at(rs, "/metadata/resourceVersion").to_string(),
            });
        }
        if let Some(revision) = &self.revision
            && self.d.annotations.get(REVISION_ANNOTATION) != Some(revision)
        {
            actions.push(Action::SetRevision {
                revision: revision.clone(),
            });
        }
        if self.status != self.d.status {
            actions.push(Action::UpdateStatus {
                status: self.status.to_json(),
            });
        }
        Plan {
            actions,
            requeue_at: self.requeue_at,
            warnings: Vec::new(),
        }
    }
}

/// Kubernetes' `IsSaturated`: the new ReplicaSet has all the replicas, sized for this count,
/// and all of them available.
fn is_saturated(d: &Deployment, rs: &Rs) -> bool {
    rs.replicas() == d.replicas
        && rs.int_annotation(DESIRED_REPLICAS_ANNOTATION) == Some(d.replicas)
        && rs.available() == d.replicas
}

/// Kubernetes' `calculateStatus`.
fn calculate_status(
    d: &Deployment,
    current: &DeploymentStatus,
    all: &[Rs],
    new: Option<&Rs>,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i64 = all.iter().map(Rs::available).sum();
    let total: i64 = all.iter().map(Rs::replicas).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.generation,
        replicas: all.iter().map(|rs| rs.status("replicas")).sum(),
        updated_replicas: new.map_or(0, |rs| rs.status("replicas")),
        ready_replicas: all.iter().map(|rs| rs.status("readyReplicas")).sum(),
        available_replicas: available,
        unavailable_replicas: (total - available).max(0),
        conditions: current.conditions.clone(),
        collision_count: current.collision_count,
    };
    let condition = if available >= d.replicas - d.max_unavailable() {
        new_condition(
            CONDITION_AVAILABLE,
            "True",
            REASON_MINIMUM_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            CONDITION_AVAILABLE,
            "False",
            REASON_MINIMUM_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status.conditions, condition);
    status
}

/// The `ReplicaFailure` condition to carry over: the new ReplicaSet's, else the first old one's.
fn replica_failure(all: &[Rs], new: Option<&Rs>) -> Option<Value> {
    let failure = |rs: &Rs| {
        rs.obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .find(|c| str_at(c, "/type") == CONDITION_REPLICA_FAILURE)
            .map(|c| {
                json!({
                    "type": CONDITION_REPLICA_FAILURE,
                    "status": str_at(c, "/status"),
                    "lastUpdateTime": c.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
                    "lastTransitionTime": c.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
                    "reason": str_at(c, "/reason"),
                    "message": str_at(c, "/message"),
                })
            })
    };
    new.and_then(failure)
        .or_else(|| all.iter().find_map(failure))
}

/// Kubernetes' `ReplicasAnnotationsNeedUpdate`.
fn replicas_annotations_need_update(rs: &Rs, desired: i64, max: i64) -> bool {
    rs.annotation(DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || rs.annotation(MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

/// Kubernetes' `SetReplicasAnnotations`: whether anything changed.
fn set_replicas_annotations(rs: &mut Rs, desired: i64, max: i64) -> bool {
    if !replicas_annotations_need_update(rs, desired, max) {
        return false;
    }
    rs.set_annotation(DESIRED_REPLICAS_ANNOTATION, desired.to_string());
    rs.set_annotation(MAX_REPLICAS_ANNOTATION, max.to_string());
    true
}

/// Annotations of a Deployment that are not copied to its ReplicaSets.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        corral_client::LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: the Deployment's annotations copied; the revision
/// raised to `new_revision` when lower (the earlier one kept in `revision-history`); for a
/// ReplicaSet about to be made (`!exists`), the replicas annotations. Whether anything changed.
fn set_new_rs_annotations(d: &Deployment, rs: &mut Rs, new_revision: &str, exists: bool) -> bool {
    let mut changed = false;
    for (k, v) in &d.annotations {
        if skip_copy_annotation(k) || rs.annotation(k) == Some(v.as_str()) {
            continue;
        }
        rs.set_annotation(k, v.clone());
        changed = true;
    }
    let old_revision = rs.annotation(REVISION_ANNOTATION).map(str::to_string);
    let old = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    let Ok(new) = new_revision.parse::<i64>() else {
        return changed;
    };
    if old < new {
        rs.set_annotation(REVISION_ANNOTATION, new_revision.to_string());
        changed = true;
        if let Some(old_revision) = old_revision {
            let history = rs
                .annotation(REVISION_HISTORY_ANNOTATION)
                .unwrap_or("")
                .to_string();
            if history.is_empty() {
                rs.set_annotation(REVISION_HISTORY_ANNOTATION, old_revision);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old_revision.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    revisions.drain(..start);
                    revisions.push(&old_revision);
                    let joined = revisions.join(",");
                    rs.set_annotation(REVISION_HISTORY_ANNOTATION, joined);
                }
            }
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, d.replicas, d.replicas + d.max_surge());
    }
    changed
}

/// The new ReplicaSet of a Deployment for its current template (0 replicas; the caller sizes
/// and annotates it): `<deployment>-<hash>`, the hash label on its selector, template and self.
fn new_replica_set(d: &Deployment, hash: &str) -> Value {
    let mut template = d.template.clone();
    object_at(&mut template, &["metadata", "labels"])
        .insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let mut selector = d.selector_json.clone();
    object_at(&mut selector, &["matchLabels"]).insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
    let mut spec = json!({
        "replicas": 0,
        "selector": selector,
        "template": template,
    });
    if d.min_ready_seconds != 0 {
        spec["minReadySeconds"] = json!(d.min_ready_seconds);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", d.name),
            "namespace": d.namespace,
            "labels": labels,
            "ownerReferences": [d.owner_reference()],
        },
        "spec": spec,
    })
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Settings of the Deployment controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOptions {
    /// How often every Deployment is synced even when nothing changed (default 30 s).
    pub resync_period: Duration,
    /// How long the controller waits for its cache to show its own writes before it decides
    /// for that Deployment again anyway (default 30 s).
    pub expectation_timeout: Duration,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(30),
            expectation_timeout: Duration::from_secs(30),
        }
    }
}

/// Keys (`namespace/name`) waiting to be synced: now, or at a time.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    ready: BTreeSet<String>,
    later: HashMap<String, tokio::time::Instant>,
}

impl Queue {
    pub(crate) fn add(&mut self, key: String) {
        self.later.remove(&key);
        self.ready.insert(key);
    }

    pub(crate) fn add_at(&mut self, key: String, at: tokio::time::Instant) {
        if self.ready.contains(&key) {
            return;
        }
        let entry = self.later.entry(key).or_insert(at);
        *entry = (*entry).min(at);
    }

    /// Every key due by `now`, in order.
    pub(crate) fn take_ready(&mut self, now: tokio::time::Instant) -> Vec<String> {
        let due: Vec<String> = self
            .later
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.later.remove(&key);
            self.ready.insert(key);
        }
        std::mem::take(&mut self.ready).into_iter().collect()
    }

    pub(crate) fn next_due(&self) -> Option<tokio::time::Instant> {
        if !self.ready.is_empty() {
            return Some(tokio::time::Instant::now());
        }
        self.later.values().min().copied()
    }
}

/// Sleeps until `at`, or for ever.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The delay before the `failures`-th retry of a failed sync: 100 ms doubling to 30 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(9))
        .min(Duration::from_secs(30))
}

/// A tokio instant for a wall-clock time (now when it is past).
pub(crate) fn instant_at(at: Timestamp) -> tokio::time::Instant {
    let wait = at.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

/// A write of the controller it waits to see in its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// The ReplicaSet at this resourceVersion or later.
    ReplicaSet {
        namespace: String,
        name: String,
        resource_version: u64,
    },
    /// The ReplicaSet gone.
    ReplicaSetGone {
        namespace: String,
        name: String,
        uid: String,
    },
    /// The Deployment at this resourceVersion or later.
    Deployment { resource_version: u64 },
}

#[derive(Debug)]
struct Expectations {
    items: Vec<Expected>,
    since: tokio::time::Instant,
}

/// Runs the Deployment controller until `cancel` fires.
pub async fn run(client: Client, opts: DeploymentOptions, cancel: CancellationToken) {
    let deployments = Informer::builder(client.clone(), "Deployment").start(cancel.clone());
    let replica_sets = Informer::builder(client.clone(), "ReplicaSet")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(OWNER_INDEX, index_by_owner_uid)
        .start(cancel.clone());
    let mut deployment_changes = deployments.subscribe();
    let mut rs_changes = replica_sets.subscribe();
    let mut pod_changes = pods.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            deployments.wait_synced().await;
            replica_sets.wait_synced().await;
            pods.wait_synced().await;
        } => {}
    }
    tracing::info!("deployment controller: caches synced");
    let mut controller = Controller {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        deployments,
        replica_sets,
        pods,
        opts: opts.clone(),
        expectations: HashMap::new(),
        failures: HashMap::new(),
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
            Some(change) = deployment_changes.recv() => controller.on_deployment(change, &mut queue),
            Some(change) = rs_changes.recv() => controller.on_replica_set(change, &mut queue),
            Some(change) = pod_changes.recv() => controller.on_pod(change, &mut queue),
            _ = sleep_until(queue.next_due()) => {}
        }
        while let Ok(change) = deployment_changes.try_recv() {
            controller.on_deployment(change, &mut queue);
        }
        while let Ok(change) = rs_changes.try_recv() {
            controller.on_replica_set(change, &mut queue);
        }
        while let Ok(change) = pod_changes.try_recv() {
            controller.on_pod(change, &mut queue);
        }
    }
    tracing::info!("deployment controller: stopped");
}

struct Controller {
    client: Client,
    deployments: Informer,
    replica_sets: Informer,
    pods: Informer,
    events: EventRecorder,
    opts: DeploymentOptions,
    /// Per Deployment key: the controller's writes its cache has not shown yet.
    expectations: HashMap<String, Expectations>,
    /// Per Deployment key: failed syncs in a row.
    failures: HashMap<String, u32>,
}

fn is_retryable_race(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Conflict { .. } | ApiError::NotFound { .. } | ApiError::AlreadyExists { .. }
    )
}

/// `(namespace, name)` of a key.
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Controller {
    fn enqueue_all(&self, queue: &mut Queue) {
        for d in self.deployments.list() {
            queue.add(key_of(&d));
        }
    }

    fn on_deployment(&self, change: Change, queue: &mut Queue) {
        match change {
            Change::Added(d) | Change::Deleted(d) | Change::Modified { new: d, .. } => {
                queue.add(key_of(&d));
            }
            Change::Relisted => self.enqueue_all(queue),
        }
    }

    /// The Deployments a ReplicaSet concerns: its controller, or, for an orphan, every
    /// Deployment of its namespace whose selector matches it.
    fn deployments_of(&self, rs: &Value) -> Vec<String> {
        let ns = object::namespace(rs);
        if let Some(r) = controller_ref(rs) {
            if str_at(r, "/kind") == "Deployment" {
                return vec![format!("{ns}/{}", str_at(r, "/name"))];
            }
            return Vec::new();
        }
        let labels = object::labels(rs);
        self.deployments
            .list()
            .into_iter()
            .filter(|d| object::namespace(d) == ns)
            .filter(|d| {
                d.pointer("/spec/selector")
                    .and_then(|s| from_label_selector_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .map(|d| key_of(&d))
            .collect()
    }

    fn on_replica_set(&self, change: Change, queue: &mut Queue) {
        match change {
            Change::Added(rs) | Change::Deleted(rs) => {
                for key in self.deployments_of(&rs) {
                    queue.add(key);
                }
            }
            Change::Modified { old, new } => {
                let mut keys = self.deployments_of(&new);
                keys.extend(self.deployments_of(&old));
                for key in keys {
                    queue.add(key);
                }
            }
            Change::Relisted => self.enqueue_all(queue),
        }
    }

    /// A pod change matters to a `Recreate` Deployment waiting for its old pods to go.
    fn on_pod(&self, change: Change, queue: &mut Queue) {
        let pod = match change {
            Change::Added(p) | Change::Deleted(p) | Change::Modified { new: p, .. } => p,
            Change::Relisted => return self.enqueue_all(queue),
        };
        let Some(r) = controller_ref(&pod) else {
            return;
        };
        if str_at(r, "/kind") != "ReplicaSet" {
            return;
        }
        let ns = object::namespace(&pod);
        let Some(rs) = self.replica_sets.get(ns, str_at(r, "/name")) else {
            return;
        };
        for key in self.deployments_of(&rs) {
            let (ns, name) = split_key(&key);
            if self
                .deployments
                .get(ns, name)
                .is_some_and(|d| str_at(&d, "/spec/strategy/type") == "Recreate")
            {
                queue.add(key);
            }
        }
    }

    /// Syncs one Deployment; answers when to look at it again, if at a particular time.
    async fn sync_and_schedule(&mut self, key: &str) -> Option<tokio::time::Instant> {
        match self.sync(key).await {
            Ok(next) => {
                self.failures.remove(key);
                next.map(instant_at)
            }
            Err(e) => {
                let failures = self.failures.entry(key.to_string()).or_insert(0);
                *failures += 1;
                if is_retryable_race(&e) {
                    tracing::debug!(deployment = %key, error = %e, "deployment changed under the sync; deciding again");
                } else {
                    tracing::warn!(deployment = %key, error = %e, "deployment sync failed");
                }
                Some(tokio::time::Instant::now() + backoff(*failures))
            }
        }
    }

    /// Whether the cache shows every write the controller made for this Deployment (or the
    /// wait has run out); the time to give up waiting otherwise.
    fn caught_up(&mut self, key: &str, d: &Value) -> Result<(), tokio::time::Instant> {
        let Some(e) = self.expectations.get(key) else {
            return Ok(());
        };
        let expires = e.since + self.opts.expectation_timeout;
        if tokio::time::Instant::now() >= expires {
            tracing::debug!(deployment = %key, "deployment: own writes not seen in time; deciding anyway");
            self.expectations.remove(key);
            return Ok(());
        }
        let seen = e.items.iter().all(|x| match x {
            Expected::ReplicaSet {
                namespace,
                name,
                resource_version,
            } => self
                .replica_sets
                .get(namespace, name)
                .is_some_and(|rs| object::resource_version(&rs).unwrap_or(0) >= *resource_version),
            Expected::ReplicaSetGone {
                namespace,
                name,
                uid,
            } => self
                .replica_sets
                .get(namespace, name)
                .is_none_or(|rs| object::uid(&rs) != uid),
            Expected::Deployment { resource_version } => {
                object::resource_version(d).unwrap_or(0) >= *resource_version
            }
        });
        if seen {
            self.expectations.remove(key);
            Ok(())
        } else {
            Err(expires)
        }
    }

    fn expect(&mut self, key: &str, what: Expected) {
        self.expectations
            .entry(key.to_string())
            .or_insert_with(|| Expectations {
                items: Vec::new(),
                since: tokio::time::Instant::now(),
            })
            .items
            .push(what);
    }

    fn expect_replica_set(&mut self, key: &str, rs: &Value) {
        self.expect(
            key,
            Expected::ReplicaSet {
                namespace: object::namespace(rs).to_string(),
                name: object::name(rs).to_string(),
                resource_version: object::resource_version(rs).unwrap_or(0),
            },
        );
    }

    fn expect_deployment(&mut self, key: &str, d: &Value) {
        self.expect(
            key,
            Expected::Deployment {
                resource_version: object::resource_version(d).unwrap_or(0),
            },
        );
    }

    /// One sync of the Deployment `key`: decide, then write. Answers when to look again.
    async fn sync(&mut self, key: &str) -> Result<Option<Timestamp>, ApiError> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(ns, name) else {
            self.expectations.remove(key);
            return Ok(None);
        };
        if let Err(expires) = self.caught_up(key, &d) {
            // The changes being waited for wake the key; this is the safety net.
            let wait = expires.saturating_duration_since(tokio::time::Instant::now());
            return Ok(Timestamp::now()
                .checked_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::ZERO))
                .ok());
        }
        let rses = self.replica_sets.by_index(NAMESPACE_INDEX, ns);
        let mut pods = Vec::new();
        if str_at(&d, "/spec/strategy/type") == "Recreate" {
            for rs in &rses {
                if controller_ref(rs)
                    .and_then(|r| r.get("uid"))
                    .and_then(Value::as_str)
                    == Some(object::uid(&d))
                {
                    pods.extend(self.pods.by_index(OWNER_INDEX, object::uid(rs)));
                }
            }
        }
        let now = Timestamp::now();
        let plan = match decide(&d, &rses, &pods, now) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(error = %e, "deployment: cannot act on it");
                return Ok(None);
            }
        };
        for (reason, message) in &plan.warnings {
            self.events.event(&d, "Warning", reason, message.clone());
        }
        let requeue = plan.requeue_at;
        if self.execute(key, &d, plan.actions).await? {
            return Ok(Some(now));
        }
        Ok(requeue)
    }

    /// Carries out the writes of a plan in order, stopping at the first that fails. Answers
    /// whether the Deployment must be synced again at once (a hash collision was found).
    async fn execute(
        &mut self,
        key: &str,
        d: &Arc<Value>,
        actions: Vec<Action>,
    ) -> Result<bool, ApiError> {
        let mut current: Value = (**d).clone();
        let (ns, name) = split_key(key);
        for action in actions {
            match action {
                Action::CreateReplicaSet { rs, events } => {
                    let rs_name = object::name(&rs).to_string();
                    match self.client.create(&rs).await {
                        Ok(created) => {
                            tracing::info!(deployment = %key, replica_set = %rs_name, "created the new replica set");
                            self.expect_replica_set(key, &created);
                            for e in events {
                                self.events
                                    .event(&current, "Normal", EVENT_SCALING_REPLICA_SET, e);
                            }
                        }
                        Err(ApiError::AlreadyExists { .. }) => {
                            let existing = self.client.get("ReplicaSet", ns, &rs_name).await?;
                            let ours = controller_ref(&existing)
                                .and_then(|r| r.get("uid"))
                                .and_then(Value::as_str)
                                == Some(object::uid(&current));
                            let same = equal_ignore_hash(
                                existing.pointer("/spec/template").unwrap_or(&Value::Null),
                                current.pointer("/spec/template").unwrap_or(&Value::Null),
                            );
                            if ours && same {
                                // The cache was behind: this is the new ReplicaSet already.
                                self.expect_replica_set(key, &existing);
                                continue;
                            }
                            let mut status = DeploymentStatus::from_json(current.get("status"));
                            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                            tracing::info!(deployment = %key, replica_set = %rs_name, collision_count = ?status.collision_count, "pod-template-hash collision: trying the next name");
                            let mut next = current.clone();
                            next["status"] = status.to_json();
                            let updated = self.client.update_status(&next).await?;
                            self.expect_deployment(key, &updated);
                            return Ok(true);
                        }
                        Err(e) => {
                            let message =
                                format!("Failed to create new replica set \"{rs_name}\": {e}");
                            self.events.event(
                                &current,
                                "Warning",
                                REASON_FAILED_RS_CREATE,
                                message.clone(),
                            );
                            let has_deadline = Deployment::from_json(&current)
                                .is_ok_and(|d| d.has_progress_deadline());
                            if has_deadline {
                                let mut status = DeploymentStatus::from_json(current.get("status"));
                                set_condition(
                                    &mut status.conditions,
                                    new_condition(
                                        CONDITION_PROGRESSING,
                                        "False",
                                        REASON_FAILED_RS_CREATE,
                                        message,
                                        Timestamp::now(),
                                    ),
                                );
                                let mut next = current.clone();
                                next["status"] = status.to_json();
                                if let Ok(updated) = self.client.update_status(&next).await {
                                    self.expect_deployment(key, &updated);
                                }
                            }
                            return Err(e);
                        }
                    }
                }
                Action::UpdateReplicaSet { rs, events } => {
                    let updated = self.client.update(&rs).await?;
                    self.expect_replica_set(key, &updated);
                    for e in events {
                        tracing::info!(deployment = %key, "{e}");
                        self.events
                            .event(&current, "Normal", EVENT_SCALING_REPLICA_SET, e);
                    }
                }
                Action::DeleteReplicaSet {
                    namespace,
                    name: rs_name,
                    uid,
                    resource_version,
                } => {
                    let options = DeleteOptions {
                        uid: Some(uid.clone()).filter(|u| !u.is_empty()),
                        resource_version: Some(resource_version).filter(|r| !r.is_empty()),
                        ..DeleteOptions::default()
                    };
                    match self
                        .client
                        .delete("ReplicaSet", &namespace, &rs_name, &options)
                        .await
                    {
                        Ok(_) | Err(ApiError::NotFound { .. }) => {
                            tracing::info!(deployment = %key, replica_set = %rs_name, "deleted an old replica set beyond the revision history limit");
                            self.expect(
                                key,
                                Expected::ReplicaSetGone {
                                    namespace,
                                    name: rs_name,
                                    uid,
                                },
                            );
                        }
                        Err(e) => return Err(e),
                    }
                }
                Action::SetRevision { revision } => {
                    let patch = json!({
                        "metadata": {
                            "resourceVersion": str_at(&current, "/metadata/resourceVersion"),
                            "annotations": {REVISION_ANNOTATION: revision},
                        },
                    });
                    current = self
                        .client
                        .patch("Deployment", ns, name, &patch, false)
                        .await?;
                    self.expect_deployment(key, &current);
                }
                Action::UpdateStatus { status } => {
                    let mut next = current.clone();
                    next["status"] = status;
                    current = self.client.update_status(&next).await?;
                    self.expect_deployment(key, &current);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("a test timestamp")
    }

    /// 2026-01-01T00:10:00Z, and seconds around it.
    fn at(offset_secs: i64) -> Timestamp {
        t("2026-01-01T00:10:00Z")
            .checked_add(SignedDuration::from_secs(offset_secs))
            .expect("in range")
    }

    fn ts(offset_secs: i64) -> String {
        format_time(at(offset_secs))
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "nginx"}},
               "spec": {"containers": [{"name": "nginx", "image": image}]}})
    }

    fn deployment(replicas: i64, surge: Value, unavailable: Value, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "d-uid", "generation": 1,
                         "resourceVersion": "10", "creationTimestamp": ts(-1000)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": template(image),
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
        })
    }

    /// A ReplicaSet of the nginx Deployment as the API would hold it.
    fn replica_set(
        image: &str,
        revision: i64,
        replicas: i64,
        available: i64,
        created: i64,
    ) -> Value {
        let d = Deployment::from_json(&deployment(replicas, json!(1), json!(0), image))
            .expect("a deployment");
        let hash = compute_hash(&template(image), None);
        let mut rs = new_replica_set(&d, &hash);
        rs["metadata"]["uid"] = json!(format!("uid-{hash}"));
        rs["metadata"]["creationTimestamp"] = json!(ts(created));
        rs["metadata"]["resourceVersion"] = json!("5");
        rs["metadata"]["generation"] = json!(1);
        rs["metadata"]["annotations"] = json!({REVISION_ANNOTATION: revision.to_string(),
            DESIRED_REPLICAS_ANNOTATION: replicas.to_string(),
            MAX_REPLICAS_ANNOTATION: (replicas + 1).to_string()});
        rs["spec"]["replicas"] = json!(replicas);
        rs["status"] = json!({"replicas": replicas, "readyReplicas": available,
                              "availableReplicas": available, "observedGeneration": 1});
        rs
    }

    fn arcs(v: &[Value]) -> Vec<Arc<Value>> {
        v.iter().cloned().map(Arc::new).collect()
    }

    #[test]
    fn fnv32a_and_the_safe_alphabet_are_kubernetes_own() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
        assert_eq!(safe_encode("123"), "567");
        assert_eq!(safe_encode("0"), "4");
    }

    #[test]
    fn the_template_hash_is_stable_and_sensitive_to_what_matters() {
        let a = template("nginx:1.14.2");
        let reordered = json!({"spec": {"containers": [{"image": "nginx:1.14.2", "name": "nginx"}]},
                               "metadata": {"labels": {"app": "nginx"}, "annotations": {}}});
        let with_nulls = json!({"metadata": {"labels": {"app": "nginx"}, "name": null},
                                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "env": []}]}});
        let h = compute_hash(&a, None);
        assert_eq!(h, compute_hash(&reordered, None));
        assert_eq!(h, compute_hash(&with_nulls, None));
        assert_ne!(h, compute_hash(&template("busybox:1.9.1"), None));
        assert_ne!(h, compute_hash(&a, Some(1)));
        assert_ne!(compute_hash(&a, Some(1)), compute_hash(&a, Some(2)));
        assert!(h.len() <= 10 && !h.is_empty(), "{h}");
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        // The same text Kubernetes' encoding gives for the digits of the sum.
        let digits = fnv32a(canonical_json(&a).as_bytes()).to_string();
        assert_eq!(h, safe_encode(&digits));
    }

    #[test]
    fn templates_are_equal_ignoring_the_hash_label() {
        let mut labelled = template("nginx:1.14.2");
        labelled["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!("abc");
        assert!(equal_ignore_hash(&labelled, &template("nginx:1.14.2")));
        assert!(!equal_ignore_hash(&labelled, &template("busybox")));
        let only_hash = json!({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: "x"}}, "spec": {}});
        assert!(equal_ignore_hash(&only_hash, &json!({"spec": {}})));
        // An emptyDir means something even though it is empty.
        let with_volume = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let without = json!({"spec": {"volumes": [{"name": "v"}]}});
        assert!(!equal_ignore_hash(&with_volume, &without));
    }

    #[test]
    fn int_or_percent_values_scale_as_kubernetes_scales_them() {
        let cases: Vec<(Value, i64, bool, Result<i64, ()>)> = vec![
            (json!("25%"), 3, true, Ok(1)),
            (json!("25%"), 3, false, Ok(0)),
            (json!("25%"), 4, false, Ok(1)),
            (json!("50%"), 5, true, Ok(3)),
            (json!("50%"), 5, false, Ok(2)),
            (json!("100%"), 7, false, Ok(7)),
            (json!("0%"), 10, true, Ok(0)),
            (json!(2), 10, true, Ok(2)),
            (json!(0), 10, false, Ok(0)),
            (json!("2"), 10, true, Err(())),
            (json!("x%"), 10, true, Err(())),
            (json!(true), 10, true, Err(())),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(
                scaled_value(Some(&v), total, up).map_err(|_| ()),
                want,
                "{v} of {total}"
            );
        }
        assert_eq!(scaled_value(None, 10, true), Ok(0));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down_and_never_both_zero() {
        let cases = [
            (json!("25%"), json!("25%"), 3, (1, 0)),
            (json!("25%"), json!("25%"), 4, (1, 1)),
            (json!("25%"), json!("25%"), 10, (3, 2)),
            (json!(1), json!(0), 3, (1, 0)),
            (json!(0), json!(0), 3, (0, 1)),
            (json!("0%"), json!("10%"), 3, (0, 1)),
            (json!(0), json!(2), 3, (0, 2)),
            (json!("bad"), json!(0), 3, (0, 1)),
        ];
        for (surge, unavailable, desired, want) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&surge), Some(&unavailable), desired),
                want,
                "{surge} {unavailable} of {desired}"
            );
        }
        // maxUnavailable never exceeds replicas; Recreate has neither.
        let d = Deployment::from_json(&deployment(2, json!(0), json!(5), "a")).expect("valid");
        assert_eq!((d.max_surge(), d.max_unavailable()), (0, 2));
        let mut recreate = deployment(2, json!(0), json!(5), "a");
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        let d = Deployment::from_json(&recreate).expect("valid");
        assert_eq!((d.max_surge(), d.max_unavailable()), (0, 0));
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        // (rolling, desired, surge, total, new) -> new size
        let cases = [
            (true, 3, 1, 3, 0, 1),
            (true, 3, 1, 4, 1, 1),
            (true, 3, 1, 3, 1, 2),
            (true, 3, 3, 3, 0, 3),
            (true, 10, 3, 10, 0, 3),
            (true, 3, 0, 2, 0, 1),
            (true, 3, 1, 0, 0, 3),
            (true, 3, 1, 5, 0, 0),
            (false, 3, 0, 3, 0, 3),
        ];
        for (rolling, desired, surge, total, new, want) in cases {
            assert_eq!(
                new_rs_new_replicas(rolling, desired, surge, total, new),
                want,
                "{rolling} desired {desired} surge {surge} total {total} new {new}"
            );
        }
    }

    fn counts(v: &[(i64, i64)]) -> Vec<RsCounts> {
        v.iter()
            .map(|&(replicas, available)| RsCounts {
                replicas,
                available,
            })
            .collect()
    }

    #[test]
    fn unhealthy_old_replicas_go_first_oldest_first() {
        type Case = (Vec<(i64, i64)>, i64, Vec<i64>, i64);
        let cases: Vec<Case> = vec![
            (vec![(3, 3)], 2, vec![3], 0),
            (vec![(3, 1)], 5, vec![1], 2),
            (vec![(3, 1)], 1, vec![2], 1),
            (vec![(2, 0), (3, 1)], 3, vec![0, 2], 3),
            (vec![(0, 0), (3, 2)], 3, vec![0, 2], 1),
            // More available than wanted (being scaled down): nothing unhealthy.
            (vec![(1, 3)], 3, vec![1], 0),
        ];
        for (olds, max, want, total) in cases {
            let mut c = counts(&olds);
            assert_eq!(cleanup_unhealthy_replicas(&mut c, max), total, "{olds:?}");
            let got: Vec<i64> = c.iter().map(|c| c.replicas).collect();
            assert_eq!(got, want, "{olds:?} max {max}");
        }
    }

    #[test]
    fn old_replica_sets_shrink_only_as_far_as_availability_allows() {
        // (olds, new available, desired, max unavailable) -> sizes, total
        type Case = (Vec<(i64, i64)>, i64, i64, i64, Vec<i64>, i64);
        let cases: Vec<Case> = vec![
            (vec![(3, 3)], 0, 3, 0, vec![3], 0),
            (vec![(3, 3)], 1, 3, 0, vec![2], 1),
            (vec![(3, 3)], 0, 3, 1, vec![2], 1),
            (vec![(2, 2), (2, 2)], 2, 4, 1, vec![0, 1], 3),
            (vec![(3, 1)], 0, 3, 1, vec![3], 0),
            (vec![(3, 3)], 3, 3, 0, vec![0], 3),
        ];
        for (olds, new_available, desired, max_unavailable, want, total) in cases {
            let mut c = counts(&olds);
            assert_eq!(
                scale_down_old_replica_sets(&mut c, new_available, desired, max_unavailable),
                total,
                "{olds:?}"
            );
            let got: Vec<i64> = c.iter().map(|c| c.replicas).collect();
            assert_eq!(got, want, "{olds:?}");
        }
        assert_eq!(
            max_scaled_down(
                4,
                3,
                0,
                RsCounts {
                    replicas: 1,
                    available: 0
                }
            ),
            0
        );
        assert_eq!(
            max_scaled_down(
                4,
                3,
                1,
                RsCounts {
                    replicas: 1,
                    available: 0
                }
            ),
            1
        );
    }

    #[test]
    fn a_scaled_deployment_scales_its_replica_sets_in_proportion() {
        let p = |replicas, annotated_max| Proportion {
            replicas,
            annotated_max,
        };
        // Kubernetes' own cases (sync_test.go, TestScale).
        // 5 -> 10: new 2, old 3, both annotated for 5 (surge 0): sorted larger first.
        assert_eq!(
            proportional_sizes(&[p(3, Some(5)), p(2, Some(5))], 10, 0, 5, 5),
            vec![6, 4]
        );
        // 5 -> 3.
        assert_eq!(
            proportional_sizes(&[p(3, Some(5)), p(2, Some(5))], 3, 0, 5, -2),
            vec![2, 1]
        );
        // 3 -> 4 over three sets of one: the leftover goes to the first (the newest).
        assert_eq!(
            proportional_sizes(&[p(1, Some(3)), p(1, Some(3)), p(1, Some(3))], 4, 0, 3, 1),
            vec![2, 1, 1]
        );
        // To zero.
        assert_eq!(
            proportional_sizes(&[p(6, Some(10)), p(4, Some(10))], 0, 0, 10, -10),
            vec![0, 0]
        );
        // No annotation: the Deployment's status.replicas stands in.
        assert_eq!(
            proportional_sizes(&[p(4, None), p(4, None)], 16, 0, 8, 8),
            vec![8, 8]
        );
        // Nothing to add: sizes stay.
        assert_eq!(
            proportional_sizes(&[p(4, Some(8)), p(4, Some(8))], 8, 0, 8, 0),
            vec![4, 4]
        );
    }

    fn creates(plan: &Plan) -> Vec<&Value> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateReplicaSet { rs, .. } => Some(rs),
                _ => None,
            })
            .collect()
    }

    fn updates(plan: &Plan) -> Vec<&Value> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet { rs, .. } => Some(rs),
                _ => None,
            })
            .collect()
    }

    fn status_of(plan: &Plan) -> Option<&Value> {
        plan.actions.iter().find_map(|a| match a {
            Action::UpdateStatus { status } => Some(status),
            _ => None,
        })
    }

    fn annotation<'a>(rs: &'a Value, key: &str) -> &'a str {
        rs.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    #[test]
    fn a_new_deployment_creates_its_first_replica_set() {
        let d = deployment(3, json!("25%"), json!("25%"), "nginx:1.14.2");
        let plan = decide(&d, &[], &[], at(0)).expect("a plan");
        let created = creates(&plan);
        assert_eq!(created.len(), 1, "{plan:?}");
        let rs = created[0];
        let hash = compute_hash(&template("nginx:1.14.2"), None);
        assert_eq!(rs["metadata"]["name"], format!("nginx-{hash}"));
        assert_eq!(rs["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(rs["metadata"]["labels"]["app"], "nginx");
        assert_eq!(
            rs["spec"]["selector"]["matchLabels"],
            json!({"app": "nginx", POD_TEMPLATE_HASH_LABEL: hash})
        );
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL],
            hash
        );
        assert_eq!(rs["spec"]["replicas"], 3);
        assert_eq!(annotation(rs, REVISION_ANNOTATION), "1");
        assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), "3");
        assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), "4");
        assert_eq!(
            rs["metadata"]["ownerReferences"][0],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "nginx", "uid": "d-uid",
                   "controller": true, "blockOwnerDeletion": true})
        );
        match &plan.actions[0] {
            Action::CreateReplicaSet { events, .. } => assert_eq!(
                events,
                &vec![format!("Scaled up replica set nginx-{hash} to 3")]
            ),
            other => panic!("first action {other:?}"),
        }
        assert!(plan.actions.contains(&Action::SetRevision {
            revision: "1".into()
        }));
        let status = status_of(&plan).expect("a status");
        let progressing = get_condition(
            status["conditions"].as_array().expect("conditions"),
            CONDITION_PROGRESSING,
        )
        .expect("progressing");
        assert_eq!(progressing["reason"], REASON_NEW_RS_CREATED);
        assert_eq!(
            progressing["message"],
            format!("Created new replica set \"nginx-{hash}\"")
        );
        assert_eq!(status["observedGeneration"], 1);
    }

    /// A small world: the Deployment, its ReplicaSets, and pods that appear at once and become
    /// available `per_step` at a time (the ReplicaSet controller and the agents, simulated).
    struct World {
        d: Value,
        rses: Vec<Value>,
        clock: i64,
        next_uid: u32,
    }

    impl World {
        fn apply(&mut self, plan: &Plan) {
            for action in &plan.actions {
                match action {
                    Action::CreateReplicaSet { rs, .. } => {
                        let mut rs = rs.clone();
                        self.next_uid += 1;
                        rs["metadata"]["uid"] = json!(format!("rs-{}", self.next_uid));
                        rs["metadata"]["creationTimestamp"] = json!(ts(self.clock));
                        rs["metadata"]["resourceVersion"] = json!("1");
                        rs["metadata"]["generation"] = json!(1);
                        rs["status"] = json!({"observedGeneration": 1});
                        assert!(
                            !self
                                .rses
                                .iter()
                                .any(|r| r["metadata"]["name"] == rs["metadata"]["name"]),
                            "created twice"
                        );
                        self.rses.push(rs);
                    }
                    Action::UpdateReplicaSet { rs, .. } => {
                        let slot = self
                            .rses
                            .iter_mut()
                            .find(|r| r["metadata"]["name"] == rs["metadata"]["name"])
                            .expect("an update of an existing replica set");
                        let status = slot["status"].clone();
                        *slot = rs.clone();
                        slot["status"] = status;
                    }
                    Action::DeleteReplicaSet { name, .. } => {
                        self.rses
                            .retain(|r| r["metadata"]["name"] != *name.as_str());
                    }
                    Action::SetRevision { revision } => {
                        self.d["metadata"]["annotations"][REVISION_ANNOTATION] = json!(revision);
                    }
                    Action::UpdateStatus { status } => self.d["status"] = status.clone(),
                }
            }
        }

        /// Pods follow the ReplicaSets: deleted at once, new ones available `per_step` at a
        /// time (only the current template's; `broken` ones never become available).
        fn pods_step(&mut self, per_step: i64, broken: bool) {
            let current = self.d["spec"]["template"].clone();
            for rs in &mut self.rses {
                let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(0);
                let available = rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
                let is_new = equal_ignore_hash(&rs["spec"]["template"], &current);
                let available = if is_new && !broken {
                    (available + per_step).min(replicas)
                } else {
                    available.min(replicas)
                };
                rs["status"] = json!({"replicas": replicas, "readyReplicas": available,
                                      "availableReplicas": available, "observedGeneration": 1});
            }
        }

        fn totals(&self) -> (i64, i64) {
            let spec = self
                .rses
                .iter()
                .map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0))
                .sum();
            let available = self
                .rses
                .iter()
                .map(|r| r["status"]["availableReplicas"].as_i64().unwrap_or(0))
                .sum();
            (spec, available)
        }

        fn step(&mut self) -> Plan {
            self.clock += 1;
            let plan = decide(&self.d, &arcs(&self.rses), &[], at(self.clock)).expect("a plan");
            self.apply(&plan);
            plan
        }
    }

    /// Rolls `replicas` from one image to another with these fenceposts, pods becoming
    /// available `per_step` at a time, and checks at every step that the total never exceeds
    /// `replicas + maxSurge` and availability never drops below `replicas - maxUnavailable`.
    fn roll(
        replicas: i64,
        surge: Value,
        unavailable: Value,
        per_step: i64,
        initial_available: i64,
    ) {
        let what = format!(
            "{replicas} replicas, surge {surge}, unavailable {unavailable}, {per_step} per step, {initial_available} available at first"
        );
        let d = deployment(replicas, surge.clone(), unavailable.clone(), "nginx:1.14.2");
        let mut old = replica_set("nginx:1.14.2", 1, replicas, initial_available, -100);
        old["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION] =
            json!((replicas + Deployment::from_json(&d).expect("valid").max_surge()).to_string());
        let mut world = World {
            d,
            rses: vec![old],
            clock: 0,
            next_uid: 0,
        };
        // Settle on the first template.
        world.step();
        world.pods_step(per_step, false);
        let dep = Deployment::from_json(&world.d).expect("valid");
        let (max_surge, max_unavailable) = (dep.max_surge(), dep.max_unavailable());
        let floor = (replicas - max_unavailable).min(initial_available);

        // `set image`.
        world.d["spec"]["template"] = template("busybox:1.9.1");
        world.d["metadata"]["generation"] = json!(2);
        for step in 0..200 {
            let plan = world.step();
            let (total, _) = world.totals();
            assert!(
                total <= replicas + max_surge,
                "{what}: step {step}: {total} replicas > {replicas} + {max_surge}: {plan:?}"
            );
            world.pods_step(per_step, false);
            let (_, available) = world.totals();
            assert!(
                available >= floor,
                "{what}: step {step}: {available} available < {floor}: {plan:?}"
            );
            if plan.actions.is_empty() {
                break;
            }
        }
        // Done: the new ReplicaSet has everything, the old one nothing.
        let new_hash = compute_hash(&template("busybox:1.9.1"), None);
        for rs in &world.rses {
            let name = rs["metadata"]["name"].as_str().unwrap_or("");
            let want = if name == format!("nginx-{new_hash}") {
                replicas
            } else {
                0
            };
            assert_eq!(rs["spec"]["replicas"], want, "{what}: {name}");
        }
        assert_eq!(world.rses.len(), 2, "{what}");
        let new = world
            .rses
            .iter()
            .find(|r| r["metadata"]["name"] == format!("nginx-{new_hash}"))
            .expect("the new replica set");
        assert_eq!(annotation(new, REVISION_ANNOTATION), "2");
        assert_eq!(annotation(&world.d, REVISION_ANNOTATION), "2", "{what}");
        let status = DeploymentStatus::from_json(world.d.get("status"));
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas
            ),
            (replicas, replicas, replicas),
            "{what}"
        );
        assert_eq!(status.observed_generation, 2);
        assert_eq!(
            condition_reason(&status.conditions, CONDITION_PROGRESSING),
            Some(REASON_NEW_RS_AVAILABLE),
            "{what}"
        );
        assert_eq!(
            condition_reason(&status.conditions, CONDITION_AVAILABLE),
            Some(REASON_MINIMUM_AVAILABLE)
        );
    }

    #[test]
    fn rolling_updates_stay_within_surge_and_unavailability_at_every_step() {
        let cases = [
            (3, json!("25%"), json!("25%"), 1, 3),
            (3, json!(1), json!(0), 1, 3),
            (3, json!(0), json!(1), 1, 3),
            (10, json!("25%"), json!("25%"), 1, 10),
            (10, json!("25%"), json!("25%"), 3, 10),
            (10, json!(0), json!("30%"), 2, 10),
            (10, json!("100%"), json!(0), 10, 10),
            (10, json!(3), json!(3), 1, 10),
            (5, json!(0), json!(0), 1, 5),
            (1, json!("25%"), json!("25%"), 1, 1),
            // Some old pods are unhealthy to begin with: they go first.
            (5, json!(1), json!(0), 1, 3),
            (5, json!(0), json!(1), 2, 2),
        ];
        for (replicas, surge, unavailable, per_step, available) in cases {
            roll(replicas, surge, unavailable, per_step, available);
        }
    }

    #[test]
    fn a_shrinking_replica_set_whose_status_lags_does_not_count_its_lost_pods() {
        // Old: scaled to 2, its status still says 3 available; new: 2 of 2 available. Only 4
        // are sure to stay available (2 + 2), so one old replica may go, not two.
        let d = deployment(3, json!(1), json!(0), "busybox:1.9.1");
        let mut old = replica_set("nginx:1.14.2", 1, 2, 3, -1000);
        old["status"]["replicas"] = json!(3);
        let mut new = replica_set("busybox:1.9.1", 2, 2, 2, -10);
        for rs in [&mut old, &mut new] {
            rs["metadata"]["annotations"][DESIRED_REPLICAS_ANNOTATION] = json!("3");
            rs["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION] = json!("4");
        }
        let plan = decide(&d, &arcs(&[old, new]), &[], at(0)).expect("a plan");
        let scaled = updates(&plan);
        assert_eq!(scaled.len(), 1, "{plan:?}");
        assert_eq!(
            scaled[0]["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.14.2"
        );
        assert_eq!(scaled[0]["spec"]["replicas"], 1, "{plan:?}");
    }

    #[test]
    fn a_rollout_that_makes_no_progress_runs_out_of_time() {
        let mut d = deployment(3, json!(1), json!(0), "busybox:1.9.1");
        d["spec"]["progressDeadlineSeconds"] = json!(60);
        let mut world = World {
            d,
            rses: vec![replica_set("nginx:1.14.2", 1, 3, 3, -1000)],
            clock: 0,
            next_uid: 0,
        };
        // The new pods never become available.
        for _ in 0..5 {
            world.step();
            world.pods_step(1, true);
        }
        let status = DeploymentStatus::from_json(world.d.get("status"));
        // One new replica was made (progress), then nothing more.
        assert_eq!(
            condition_reason(&status.conditions, CONDITION_PROGRESSING),
            Some(REASON_RS_UPDATED),
        );
        // A requeue is asked for when the deadline runs out.
        let plan = decide(&world.d, &arcs(&world.rses), &[], at(10)).expect("a plan");
        let progressing =
            get_condition(&status.conditions, CONDITION_PROGRESSING).expect("progressing");
        let updated = parse_time(progressing.get("lastUpdateTime")).expect("a time");
        assert_eq!(
            plan.requeue_at,
            Some(updated + SignedDuration::from_secs(61))
        );
        // Past it: Progressing=False, ProgressDeadlineExceeded.
        let plan = decide(&world.d, &arcs(&world.rses), &[], at(100)).expect("a plan");
        let status = status_of(&plan).expect("a status update");
        let conds = status["conditions"].as_array().expect("conditions");
        let progressing = get_condition(conds, CONDITION_PROGRESSING).expect("progressing");
        assert_eq!(progressing["status"], "False");
        assert_eq!(progressing["reason"], REASON_TIMED_OUT);
        let new_hash = compute_hash(&template("busybox:1.9.1"), None);
        assert_eq!(
            progressing["message"],
            format!("ReplicaSet \"nginx-{new_hash}\" has timed out progressing.")
        );
        // The old pods stay: availability is kept.
        assert!(updates(&plan).is_empty(), "{plan:?}");
    }

    #[test]
    fn recreate_scales_the_old_down_waits_for_its_pods_then_scales_the_new_up() {
        let mut d = deployment(3, json!(0), json!(0), "busybox:1.9.1");
        d["spec"]["strategy"] = json!({"type": "Recreate"});
        let old = replica_set("nginx:1.14.2", 1, 3, 3, -1000);
        let old_uid = old["metadata"]["uid"].clone();
        let plan = decide(&d, &arcs(std::slice::from_ref(&old)), &[], at(0)).expect("a plan");
        assert!(creates(&plan).is_empty());
        let scaled = updates(&plan);
        assert_eq!(scaled.len(), 1);
        assert_eq!(scaled[0]["spec"]["replicas"], 0);

        // Scaled to 0, but a pod is still running: no new ReplicaSet yet.
        let mut old = scaled[0].clone();
        old["status"] = json!({"replicas": 0, "observedGeneration": 1});
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "nginx"},
                          "ownerReferences": [{"kind": "ReplicaSet", "name": "x", "uid": old_uid, "controller": true}]},
                         "status": {"phase": "Running"}});
        let plan = decide(
            &d,
            &arcs(std::slice::from_ref(&old)),
            &arcs(std::slice::from_ref(&pod)),
            at(1),
        )
        .expect("a plan");
        assert!(creates(&plan).is_empty(), "{plan:?}");
        assert!(updates(&plan).is_empty(), "{plan:?}");

        // A finished pod does not count: the new ReplicaSet comes with every replica.
        let mut done = pod.clone();
        done["status"]["phase"] = json!("Succeeded");
        let plan = decide(&d, &arcs(&[old]), &arcs(&[done]), at(2)).expect("a plan");
        let created = creates(&plan);
        assert_eq!(created.len(), 1, "{plan:?}");
        assert_eq!(created[0]["spec"]["replicas"], 3);
        assert_eq!(annotation(created[0], REVISION_ANNOTATION), "2");
    }

    #[test]
    fn a_paused_deployment_does_not_roll_out_but_still_scales() {
        let mut d = deployment(5, json!(1), json!(0), "busybox:1.9.1");
        d["spec"]["paused"] = json!(true);
        let old = replica_set("nginx:1.14.2", 1, 3, 3, -1000);
        let plan = decide(&d, &arcs(&[old]), &[], at(0)).expect("a plan");
        assert!(creates(&plan).is_empty(), "{plan:?}");
        let scaled = updates(&plan);
        assert_eq!(scaled.len(), 1);
        assert_eq!(scaled[0]["spec"]["replicas"], 5);
        assert_eq!(annotation(scaled[0], DESIRED_REPLICAS_ANNOTATION), "5");
        match &plan.actions[0] {
            Action::UpdateReplicaSet { events, .. } => {
                assert_eq!(events.len(), 1);
                assert!(
                    events[0].starts_with("Scaled up replica set nginx-")
                        && events[0].ends_with(" to 5"),
                    "{events:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let status = status_of(&plan).expect("a status");
        let progressing = get_condition(
            status["conditions"].as_array().expect("conditions"),
            CONDITION_PROGRESSING,
        )
        .expect("progressing");
        assert_eq!(
            (
                progressing["status"].as_str(),
                progressing["reason"].as_str()
            ),
            (Some("Unknown"), Some(REASON_PAUSED))
        );
    }

    #[test]
    fn scaling_in_the_middle_of_a_rollout_is_proportional() {
        // 10 replicas, surge 3: old 8, new 5 (13 = 10 + 3), sized for 10; now 20 replicas.
        let d = deployment(20, json!(3), json!(2), "busybox:1.9.1");
        let mut old = replica_set("nginx:1.14.2", 1, 8, 8, -1000);
        let mut new = replica_set("busybox:1.9.1", 2, 5, 0, -10);
        for rs in [&mut old, &mut new] {
            rs["metadata"]["annotations"][DESIRED_REPLICAS_ANNOTATION] = json!("10");
            rs["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION] = json!("13");
        }
        let plan = decide(&d, &arcs(&[old, new]), &[], at(0)).expect("a plan");
        let sizes: BTreeMap<String, i64> = updates(&plan)
            .iter()
            .map(|rs| {
                (
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    rs["spec"]["replicas"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        // 23 in all: 8 * 23/13 = 14.15 -> 14, 5 * 23/13 = 8.8 -> 9.
        assert_eq!(sizes.get("nginx:1.14.2"), Some(&14), "{plan:?}");
        assert_eq!(sizes.get("busybox:1.9.1"), Some(&9), "{plan:?}");
        for rs in updates(&plan) {
            assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), "20");
            assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), "23");
        }
    }

    #[test]
    fn a_rollback_makes_the_old_replica_set_new_again_with_the_next_revision() {
        // Revisions 1 (nginx) and 2 (busybox); the template goes back to nginx.
        let d = deployment(3, json!(1), json!(0), "nginx:1.14.2");
        let mut first = replica_set("nginx:1.14.2", 1, 0, 0, -1000);
        first["status"] = json!({"observedGeneration": 1});
        let second = replica_set("busybox:1.9.1", 2, 3, 3, -500);
        let plan = decide(&d, &arcs(&[first, second]), &[], at(0)).expect("a plan");
        assert!(creates(&plan).is_empty(), "{plan:?}");
        let revived = updates(&plan)
            .into_iter()
            .find(|rs| annotation(rs, REVISION_ANNOTATION) == "3")
            .expect("the old replica set at revision 3");
        assert_eq!(annotation(revived, REVISION_HISTORY_ANNOTATION), "1");
        assert_eq!(
            revived["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.14.2"
        );
    }

    #[test]
    fn the_revision_history_is_kept_to_its_limit() {
        let mut d = deployment(2, json!(1), json!(0), "img:4");
        d["spec"]["revisionHistoryLimit"] = json!(1);
        let mut rses = Vec::new();
        for (i, image) in ["img:1", "img:2", "img:3"].into_iter().enumerate() {
            let mut rs = replica_set(image, i as i64 + 1, 0, 0, -1000 + i as i64);
            rs["status"] = json!({"observedGeneration": 1});
            rses.push(rs);
        }
        rses.push(replica_set("img:4", 4, 2, 2, -10));
        // Complete already.
        let dep = Deployment::from_json(&d).expect("valid");
        let mut all: Vec<Rs> = rses.iter().cloned().map(|obj| Rs { obj }).collect();
        all.sort_by(by_creation);
        let new = all.last().cloned();
        let status = calculate_status(&dep, &dep.status, &all, new.as_ref(), at(0));
        d["status"] = status.to_json();
        let plan = decide(&d, &arcs(&rses), &[], at(0)).expect("a plan");
        let deleted: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteReplicaSet { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let name = |image: &str| format!("nginx-{}", compute_hash(&template(image), None));
        assert_eq!(deleted, vec![name("img:1"), name("img:2")], "{plan:?}");
    }

    #[test]
    fn a_name_taken_by_another_template_is_a_collision() {
        let d = deployment(3, json!(1), json!(0), "busybox:1.9.1");
        let hash = compute_hash(&template("busybox:1.9.1"), None);
        let squatter = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("nginx-{hash}"), "namespace": "default", "uid": "other",
                         "creationTimestamp": ts(-5), "labels": {"app": "other"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                     "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": []}}}});
        let plan = decide(&d, &arcs(&[squatter]), &[], at(0)).expect("a plan");
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        let status = status_of(&plan).expect("a status");
        assert_eq!(status["collisionCount"], 1);
        // With the count, the next name is another.
        let mut d = d;
        d["status"] = status.clone();
        let plan = decide(&d, &[], &[], at(1)).expect("a plan");
        let created = creates(&plan);
        let next = compute_hash(&template("busybox:1.9.1"), Some(1));
        assert_eq!(created[0]["metadata"]["name"], format!("nginx-{next}"));
    }

    #[test]
    fn orphans_are_adopted_and_strays_released() {
        let d = deployment(3, json!(1), json!(0), "nginx:1.14.2");
        let mut orphan = replica_set("nginx:1.14.2", 1, 3, 3, -100);
        orphan["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        let mut stray = replica_set("img:0", 0, 0, 0, -200);
        stray["metadata"]["labels"] = json!({"app": "elsewhere"});
        let mut foreign = replica_set("img:9", 0, 0, 0, -300);
        foreign["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
        let plan = decide(&d, &arcs(&[orphan, stray, foreign]), &[], at(0)).expect("a plan");
        let written = updates(&plan);
        assert_eq!(written.len(), 2, "{plan:?}");
        // The stray loses its owner reference; the orphan gains one (and is the new one).
        let released = written
            .iter()
            .find(|rs| rs["metadata"]["labels"]["app"] == "elsewhere")
            .expect("released");
        assert_eq!(released["metadata"]["ownerReferences"], json!([]));
        let adopted = written
            .iter()
            .find(|rs| rs["metadata"]["labels"]["app"] == "nginx")
            .expect("adopted");
        assert_eq!(adopted["metadata"]["ownerReferences"][0]["uid"], "d-uid");
        assert!(creates(&plan).is_empty());
    }

    #[test]
    fn a_deployment_being_deleted_only_updates_its_status() {
        let mut d = deployment(3, json!(1), json!(0), "busybox:1.9.1");
        d["metadata"]["deletionTimestamp"] = json!(ts(0));
        let old = replica_set("nginx:1.14.2", 1, 3, 3, -1000);
        let plan = decide(&d, &arcs(&[old]), &[], at(0)).expect("a plan");
        assert!(
            creates(&plan).is_empty() && updates(&plan).is_empty(),
            "{plan:?}"
        );
        let status = status_of(&plan).expect("a status");
        assert_eq!(status["replicas"], 3);
        assert_eq!(status["availableReplicas"], 3);
        assert!(status.get("updatedReplicas").is_none());
    }

    #[test]
    fn a_steady_deployment_writes_nothing() {
        let mut world = World {
            d: deployment(3, json!(1), json!(0), "nginx:1.14.2"),
            rses: vec![],
            clock: 0,
            next_uid: 0,
        };
        for _ in 0..6 {
            world.step();
            world.pods_step(3, false);
        }
        let plan = world.step();
        assert_eq!(plan.actions, vec![], "{plan:?}");
        assert_eq!(plan.requeue_at, None);
    }

    #[test]
    fn status_counts_come_from_the_replica_sets() {
        let mut d = deployment(3, json!(1), json!(1), "busybox:1.9.1");
        d["metadata"]["generation"] = json!(4);
        let dep = Deployment::from_json(&d).expect("valid");
        let old = Rs {
            obj: replica_set("nginx:1.14.2", 1, 2, 2, -1000),
        };
        let mut new = Rs {
            obj: replica_set("busybox:1.9.1", 2, 2, 0, -10),
        };
        new.obj["status"]["readyReplicas"] = json!(1);
        let status = calculate_status(&dep, &dep.status, &[old, new.clone()], Some(&new), at(0));
        assert_eq!(status.observed_generation, 4);
        assert_eq!(status.replicas, 4);
        assert_eq!(status.updated_replicas, 2);
        assert_eq!(status.ready_replicas, 3);
        assert_eq!(status.available_replicas, 2);
        assert_eq!(status.unavailable_replicas, 2);
        assert_eq!(
            condition_reason(&status.conditions, CONDITION_AVAILABLE),
            Some(REASON_MINIMUM_AVAILABLE)
        );
        let json = status.to_json();
        assert_eq!(json["updatedReplicas"], 2);
        assert_eq!(DeploymentStatus::from_json(Some(&json)), status);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            new_condition("Progressing", "True", "A", "a".into(), at(0)),
        );
        set_condition(
            &mut conds,
            new_condition("Progressing", "True", "A", "again".into(), at(5)),
        );
        assert_eq!(conds[0]["message"], "a");
        set_condition(
            &mut conds,
            new_condition("Progressing", "True", "B", "b".into(), at(10)),
        );
        assert_eq!(conds[0]["reason"], "B");
        assert_eq!(conds[0]["lastTransitionTime"], ts(0));
        assert_eq!(conds[0]["lastUpdateTime"], ts(10));
        set_condition(
            &mut conds,
            new_condition("Progressing", "False", "C", "c".into(), at(20)),
        );
        assert_eq!(conds[0]["lastTransitionTime"], ts(20));
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn claims_follow_controller_references_and_the_selector() {
        let selector =
            from_label_selector_json(&json!({"matchLabels": {"app": "a"}})).expect("a selector");
        let obj = |labels: Value, owner: Option<&str>| {
            let mut o = json!({"metadata": {"name": "x", "labels": labels}});
            if let Some(uid) = owner {
                o["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true}]);
            }
            o
        };
        let cases = [
            (obj(json!({"app": "a"}), Some("me")), false, Claim::Owned),
            (obj(json!({"app": "b"}), Some("me")), false, Claim::Release),
            (obj(json!({"app": "b"}), Some("me")), true, Claim::Ignore),
            (
                obj(json!({"app": "a"}), Some("other")),
                false,
                Claim::Ignore,
            ),
            (obj(json!({"app": "a"}), None), false, Claim::Adopt),
            (obj(json!({"app": "a"}), None), true, Claim::Ignore),
            (obj(json!({"app": "b"}), None), false, Claim::Ignore),
        ];
        for (o, deleting, want) in cases {
            assert_eq!(claim("me", deleting, &selector, &o), want, "{o} {deleting}");
        }
    }

    #[test]
    fn the_queue_hands_out_each_key_once_and_delays_the_rest() {
        let now = tokio::time::Instant::now();
        let mut q = Queue::default();
        q.add("a".into());
        q.add("a".into());
        q.add_at("b".into(), now + Duration::from_secs(10));
        q.add_at("b".into(), now + Duration::from_secs(5));
        assert_eq!(q.take_ready(now), vec!["a".to_string()]);
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
        assert!(q.take_ready(now).is_empty());
        assert_eq!(
            q.take_ready(now + Duration::from_secs(6)),
            vec!["b".to_string()]
        );
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}

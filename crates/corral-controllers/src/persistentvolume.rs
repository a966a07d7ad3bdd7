//! The PersistentVolume controller: Kubernetes' `persistentvolume-binder`
//! (`pkg/controller/volume/persistentvolume`) with the `pvc-protection` and `pv-protection`
//! controllers, run by the Raft leader.
//!
//! Keys are claims (`namespace/name`) and volumes (`name`). Event handlers only queue keys: a
//! claim's own changes (and its volume's), a volume's changes (and the claim its `claimRef`
//! names), a class's changes (its pending claims), a pod's changes (the claims it uses that are
//! being deleted), a helper pod's changes (its volume).
//!
//! **A claim** ([`decide_claim`], pure; Kubernetes' `syncUnboundClaim` / `syncBoundClaim`):
//! - unbound, no `spec.volumeName`: the smallest Available volume that fits it
//!   ([`storage::find_matching_volume`]) is bound to it. A WaitForFirstConsumer claim is left
//!   alone (event `WaitForFirstConsumer`: "waiting for first consumer to be created before
//!   binding") until the scheduler annotates it with `volume.kubernetes.io/selected-node`, and
//!   then only volumes allowing that node count. With no volume, a claim of a class is
//!   annotated `volume.kubernetes.io/storage-provisioner: <the class's provisioner>` for the
//!   provisioner to see (event `ExternalProvisioning`: "waiting for a volume to be created,
//!   either by external provisioner ... or manually created by system administrator"); a claim
//!   without class waits for an administrator (`FailedBinding`).
//! - pre-bound (`spec.volumeName`): bound to that volume when it fits (`VolumeMismatch`
//!   otherwise).
//! - bound: kept consistent; a claim whose volume is gone or bound elsewhere is `Lost`
//!   (`ClaimLost`, `ClaimMisbound`).
//!
//! Binding is Kubernetes' four writes, each with a resourceVersion precondition and only when
//! something changes: the volume's `claimRef` (annotated `pv.kubernetes.io/bound-by-controller`
//! when the controller made the link), its phase `Bound`, the claim's `spec.volumeName` with
//! `pv.kubernetes.io/bind-completed` (and bound-by-controller), the claim's status `Bound` with
//! the volume's access modes and capacity.
//!
//! **A volume** ([`decide_volume`], pure; Kubernetes' `syncVolume`): without `claimRef` (or
//! pre-bound by name only) it is `Available`; bound to a live claim it is `Bound`; when its
//! claim is gone (checked again against the API, not just the cache) it is `Released` and
//! reclaimed by its policy ([`reclaim_of`]): `Retain` keeps it Released with its data;
//! `Recycle` scrubs the directory with a helper pod on the volume's node ([`volume_helper`]),
//! then makes it Available again (`VolumeRecycled`); `Delete` of a provisioned volume is its
//! provisioner's (Corral's local-path provisioner removes the directory and the object), of an
//! administrator's hostPath volume under `/tmp/` a helper pod removes the directory and the
//! controller the object (Kubernetes' hostPath deleter only deletes `/tmp/.+`), anything else
//! turns `Failed` (`VolumeFailedDelete`). A failed helper makes the volume `Failed`; a Failed
//! volume is not reclaimed again until an administrator edits it.
//!
//! **Protection**: a claim being deleted keeps `kubernetes.io/pvc-protection` while a pod that is
//! scheduled and has not finished uses it (confirmed against the API before it goes); a volume
//! being deleted keeps `kubernetes.io/pv-protection` while it is `Bound`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::storage::{
    self, ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, CLAIM_BOUND, CLAIM_LOST,
    CLAIM_PENDING, PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER, VOLUME_AVAILABLE,
    VOLUME_BOUND, VOLUME_FAILED, VOLUME_RELEASED,
};
use corral_api::{ApiError, object};
use corral_client::events::EventRecorder;
use corral_client::informer::index_by_namespace;
use corral_client::{Change, Client, DeleteOptions, Informer, ListOptions};
use corral_scheduler::volumes::volume_fits_node;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Action, ControllerOptions, Source, run_controller};
use crate::volume_helper::{self, HELPER_LABEL, Op, Progress};

/// The events' source, as Kubernetes names it.
pub const COMPONENT: &str = "persistentvolume-controller";

/// Event reasons, as Kubernetes' PV controller writes them.
pub const EVENT_FAILED_BINDING: &str = "FailedBinding";
pub const EVENT_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
pub const EVENT_EXTERNAL_PROVISIONING: &str = "ExternalProvisioning";
pub const EVENT_PROVISIONING_FAILED: &str = "ProvisioningFailed";
pub const EVENT_VOLUME_MISMATCH: &str = "VolumeMismatch";
pub const EVENT_CLAIM_LOST: &str = "ClaimLost";
pub const EVENT_CLAIM_MISBOUND: &str = "ClaimMisbound";
pub const EVENT_VOLUME_RECYCLED: &str = "VolumeRecycled";
pub const EVENT_RECYCLER_POD: &str = "RecyclerPod";
pub const EVENT_VOLUME_FAILED_RECYCLE: &str = "VolumeFailedRecycle";
pub const EVENT_VOLUME_FAILED_DELETE: &str = "VolumeFailedDelete";

/// The message of a WaitForFirstConsumer claim's event.
pub const WAITING_FOR_FIRST_CONSUMER: &str =
    "waiting for first consumer to be created before binding";

const CLAIMS_BY_NODE_INDEX: &str = "pods-by-claim";
const CLAIM_REF_INDEX: &str = "claim-ref";
const NAMESPACE_INDEX: &str = "namespace";

/// How the controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentVolumeOptions {
    /// Keys synced at once.
    pub workers: usize,
    /// How often every claim and volume is synced even when nothing changed (Kubernetes'
    /// `--pvclaimbinder-sync-period`, 15 s).
    pub resync: Duration,
    /// The image of recycler and deleter helper pods.
    pub helper_image: String,
}

impl Default for PersistentVolumeOptions {
    fn default() -> Self {
        Self {
            workers: 5,
            resync: Duration::from_secs(15),
            helper_image: volume_helper::DEFAULT_HELPER_IMAGE.to_string(),
        }
    }
}

/// What a sync can fail with. Every variant is retried with back-off except `BadKey`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workqueue key {0:?} is not a claim or volume key")]
    BadKey(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<ApiError>,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> Error {
    let what = what.into();
    move |source| Error::Api {
        what,
        source: Box::new(source),
    }
}

/// A workqueue key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `namespace/name` of a PersistentVolumeClaim.
    Claim(String),
    /// The name of a PersistentVolume.
    Volume(String),
}

/// An event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: "Normal",
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_: "Warning",
            reason,
            message: message.into(),
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Pure decisions: claims
// ---------------------------------------------------------------------------------------------

/// A node as binding sees it: name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What a sync of a claim does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Bind it to the volume of this name (or finish and repair a binding).
    Bind(String),
    /// It stays `Pending`; annotate it with its provisioner, when given; record the event.
    Pending {
        provisioner: Option<String>,
        event: Option<Event>,
    },
    /// It lost its volume: phase `Lost`.
    Lost(Event),
}

fn pending(event: Option<Event>) -> ClaimDecision {
    ClaimDecision::Pending {
        provisioner: None,
        event,
    }
}

/// What the claim should become. `volumes` are all volumes; `class` the claim's StorageClass
/// (if it names one that exists); `selected_node` the node the scheduler chose for a
/// WaitForFirstConsumer claim (`None` when not chosen; a chosen node that is unknown is a node
/// no volume fits).
pub fn decide_claim(
    claim: &Value,
    volumes: &[&Value],
    class: Option<&Value>,
    selected_node: Option<Option<&NodeView>>,
) -> ClaimDecision {
    if storage::has_annotation(claim, ANN_BIND_COMPLETED) {
        return decide_bound_claim(claim, volumes);
    }
    let volume_name = storage::claim_volume_name(claim);
    if !volume_name.is_empty() {
        return decide_pre_bound_claim(claim, volumes, volume_name);
    }
    let delay = class.is_some_and(storage::is_wait_for_first_consumer);
    let fits = |pv: &Value| match selected_node {
        Some(Some(node)) => volume_fits_node(pv, &node.name, &node.labels),
        _ => false,
    };
    let fits_node: Option<&dyn Fn(&Value) -> bool> = match selected_node {
        Some(_) => Some(&fits),
        None => None,
    };
    match storage::find_matching_volume(claim, volumes, fits_node, delay) {
        Err(e) => pending(Some(Event::warning(EVENT_FAILED_BINDING, e))),
        Ok(Some(pv)) => ClaimDecision::Bind(object::name(pv).to_string()),
        Ok(None) => {
            let class_name = storage::claim_class(claim);
            if delay && selected_node.is_none() {
                return pending(Some(Event::normal(
                    EVENT_WAIT_FOR_FIRST_CONSUMER,
                    WAITING_FOR_FIRST_CONSUMER,
                )));
            }
            if class_name.is_empty() {
                return pending(Some(Event::normal(
                    EVENT_FAILED_BINDING,
                    "no persistent volumes available for this claim and no storage class is set",
                )));
            }
            let Some(class) = class else {
                return pending(Some(Event::warning(
                    EVENT_PROVISIONING_FAILED,
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                )));
            };
            let provisioner = str_at(class, "/provisioner");
            if provisioner == corral_scheduler::volumes::NO_PROVISIONER {
                return pending(Some(Event::warning(
                    EVENT_PROVISIONING_FAILED,
                    format!("no volume plugin matched name: {provisioner}"),
                )));
            }
            ClaimDecision::Pending {
                provisioner: Some(provisioner.to_string()),
                event: Some(Event::normal(
                    EVENT_EXTERNAL_PROVISIONING,
                    format!(
                        "waiting for a volume to be created, either by external provisioner \"{provisioner}\" or manually created by system administrator"
                    ),
                )),
            }
        }
    }
}

fn find<'a>(volumes: &[&'a Value], name: &str) -> Option<&'a Value> {
    volumes.iter().copied().find(|v| object::name(v) == name)
}

/// A claim naming its volume in `spec.volumeName` that is not bound yet.
fn decide_pre_bound_claim(claim: &Value, volumes: &[&Value], name: &str) -> ClaimDecision {
    let Some(pv) = find(volumes, name) else {
        // Kubernetes waits silently for the volume to appear.
        return pending(None);
    };
    if storage::claim_ref(pv).is_none() {
        return match storage::check_volume_satisfies_claim(pv, claim) {
            Ok(()) => ClaimDecision::Bind(name.to_string()),
            Err(why) => pending(Some(Event::warning(
                EVENT_VOLUME_MISMATCH,
                format!("Cannot bind to requested volume \"{name}\": {why}"),
            ))),
        };
    }
    if storage::is_volume_bound_to_claim(pv, claim) {
        return ClaimDecision::Bind(name.to_string());
    }
    pending(Some(Event::warning(
        EVENT_FAILED_BINDING,
        format!("volume \"{name}\" already bound to a different claim."),
    )))
}

/// Kubernetes' `syncBoundClaim`.
fn decide_bound_claim(claim: &Value, volumes: &[&Value]) -> ClaimDecision {
    let name = storage::claim_volume_name(claim);
    if name.is_empty() {
        return ClaimDecision::Lost(Event::warning(
            EVENT_CLAIM_LOST,
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(pv) = find(volumes, name) else {
        return ClaimDecision::Lost(Event::warning(
            EVENT_CLAIM_LOST,
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    let ours = storage::claim_ref(pv).is_none()
        || (storage::is_volume_bound_to_claim(pv, claim)
            && !str_at(pv, "/spec/claimRef/uid").is_empty());
    if ours {
        ClaimDecision::Bind(name.to_string())
    } else {
        ClaimDecision::Lost(Event::warning(
            EVENT_CLAIM_MISBOUND,
            "Two claims are bound to the same volume, this one is bound incorrectly",
        ))
    }
}

fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    if let Some(meta) = object::metadata_mut(obj) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[key] = json!(value);
    }
}

fn remove_annotation(obj: &mut Value, key: &str) {
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(key);
    }
}

/// The volume with its `claimRef` pointing at the claim (Kubernetes' `bindVolumeToClaim`),
/// annotated bound-by-controller when the controller makes the link. `None`: already so.
pub fn bound_volume(pv: &Value, claim: &Value) -> Option<Value> {
    let linked = storage::is_volume_bound_to_claim(pv, claim)
        && !str_at(pv, "/spec/claimRef/uid").is_empty();
    if linked {
        return None;
    }
    let mut next = pv.clone();
    if !storage::is_volume_bound_to_claim(pv, claim) {
        set_annotation(&mut next, ANN_BOUND_BY_CONTROLLER, "yes");
    }
    next["spec"]["claimRef"] = storage::claim_reference(claim);
    Some(next)
}

/// The claim naming the volume (Kubernetes' `bindClaimToVolume`): `spec.volumeName`, the
/// bind-completed annotation, bound-by-controller when the controller chose the volume. `None`:
/// already so.
pub fn bound_claim(claim: &Value, pv: &Value) -> Option<Value> {
    let name = object::name(pv);
    let named = storage::claim_volume_name(claim) == name;
    if named && storage::has_annotation(claim, ANN_BIND_COMPLETED) {
        return None;
    }
    let mut next = claim.clone();
    if !named {
        next["spec"]["volumeName"] = json!(name);
        set_annotation(&mut next, ANN_BOUND_BY_CONTROLLER, "yes");
    }
    set_annotation(&mut next, ANN_BIND_COMPLETED, "yes");
    Some(next)
}

/// The status of a claim: its phase and, when bound to `pv`, the volume's access modes and
/// capacity (cleared otherwise, as Kubernetes' `updateClaimStatus` does).
pub fn claim_status(claim: &Value, phase: &str, pv: Option<&Value>) -> Value {
    let mut status = claim
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    status.insert("phase".into(), json!(phase));
    match pv {
        Some(pv) => {
            if let Some(modes) = pv.pointer("/spec/accessModes") {
                status.insert("accessModes".into(), modes.clone());
            }
            if let Some(capacity) = pv.pointer("/spec/capacity") {
                status.insert("capacity".into(), capacity.clone());
            }
        }
        None => {
            status.remove("accessModes");
            status.remove("capacity");
        }
    }
    Value::Object(status)
}

/// The status of a volume in `phase` (with a message for `Failed`); the transition time moves
/// only when the phase changes.
pub fn volume_status(pv: &Value, phase: &str, message: Option<&str>, now: &str) -> Value {
    let mut status = pv
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if storage::phase(pv) != phase {
        status.insert("lastPhaseTransitionTime".into(), json!(now));
    }
    status.insert("phase".into(), json!(phase));
    match message {
        Some(m) => status.insert("message".into(), json!(m)),
        None => status.remove("message"),
    };
    Value::Object(status)
}

// ---------------------------------------------------------------------------------------------
// Pure decisions: volumes
// ---------------------------------------------------------------------------------------------

/// What happens to a volume whose claim is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Stays Released with its data.
    Retain,
    /// Its directory is scrubbed, then it is Available again.
    Recycle,
    /// Its directory and the object are removed by this controller.
    Delete,
    /// Its provisioner removes it.
    ByProvisioner(String),
    /// It cannot be reclaimed: Failed with this event.
    Fail(Event),
}

/// Kubernetes' `hostPath` deleter only removes directories below `/tmp/`.
fn deletable_host_path(path: &str) -> bool {
    path.strip_prefix("/tmp/")
        .is_some_and(|rest| !rest.trim_matches('/').is_empty())
}

/// How a released volume is reclaimed (Kubernetes' `reclaimVolume`).
pub fn reclaim_of(pv: &Value) -> Reclaim {
    match storage::reclaim_policy(pv) {
        "Recycle" => {
            if storage::volume_path(pv).is_some() {
                Reclaim::Recycle
            } else {
                Reclaim::Fail(Event::warning(
                    EVENT_VOLUME_FAILED_RECYCLE,
                    "No recycler plugin found for the volume!",
                ))
            }
        }
        "Delete" => {
            if let Some(p) = storage::annotation(pv, ANN_PROVISIONED_BY).filter(|p| !p.is_empty()) {
                return Reclaim::ByProvisioner(p.to_string());
            }
            match pv.pointer("/spec/hostPath/path").and_then(Value::as_str) {
                Some(path) if deletable_host_path(path) => Reclaim::Delete,
                Some(path) => Reclaim::Fail(Event::warning(
                    EVENT_VOLUME_FAILED_DELETE,
                    format!("host_path deleter only supports /tmp/.+ but received provided {path}"),
                )),
                None => Reclaim::Fail(Event::warning(
                    EVENT_VOLUME_FAILED_DELETE,
                    format!(
                        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                        object::name(pv)
                    ),
                )),
            }
        }
        _ => Reclaim::Retain,
    }
}

/// What a sync of a volume does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeDecision {
    /// Nothing to change.
    Nothing,
    /// Set the phase.
    Phase(&'static str),
    /// Its claim is gone (as far as the cache knows): Released, then reclaimed.
    Release(Reclaim),
    /// Its claim is bound elsewhere: drop the link (`keep_name`: keep the user's pre-binding by
    /// name, drop only the uid) and make it Available.
    Unbind { keep_name: bool },
}

fn phase_unless(pv: &Value, phase: &'static str) -> VolumeDecision {
    if storage::phase(pv) == phase {
        VolumeDecision::Nothing
    } else {
        VolumeDecision::Phase(phase)
    }
}

/// Kubernetes' `syncVolume`. `claim` is the cached claim the volume's `claimRef` names (by
/// namespace and name; any uid).
pub fn decide_volume(pv: &Value, claim: Option<&Value>) -> VolumeDecision {
    let Some(r) = storage::claim_ref(pv) else {
        return phase_unless(pv, VOLUME_AVAILABLE);
    };
    let ref_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if ref_uid.is_empty() {
        // Pre-bound by an administrator; waiting for its claim.
        return phase_unless(pv, VOLUME_AVAILABLE);
    }
    let claim = claim.filter(|c| object::uid(c) == ref_uid);
    let Some(claim) = claim else {
        return VolumeDecision::Release(reclaim_of(pv));
    };
    let claim_volume = storage::claim_volume_name(claim);
    if claim_volume.is_empty() {
        // Binding in progress: the claim's sync finishes it.
        return VolumeDecision::Nothing;
    }
    if claim_volume == object::name(pv) {
        return phase_unless(pv, VOLUME_BOUND);
    }
    if storage::has_annotation(pv, ANN_PROVISIONED_BY) && storage::reclaim_policy(pv) == "Delete" {
        // Provisioned for this claim, which got another volume: not needed.
        return VolumeDecision::Release(reclaim_of(pv));
    }
    VolumeDecision::Unbind {
        keep_name: !storage::has_annotation(pv, ANN_BOUND_BY_CONTROLLER),
    }
}

/// The volume without its link to a claim (Kubernetes' `unbindVolume`).
pub fn unbound_volume(pv: &Value, keep_name: bool) -> Value {
    let mut next = pv.clone();
    if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
        if keep_name {
            if let Some(r) = spec.get_mut("claimRef").and_then(Value::as_object_mut) {
                r.remove("uid");
                r.remove("resourceVersion");
            }
        } else {
            spec.remove("claimRef");
        }
    }
    remove_annotation(&mut next, ANN_BOUND_BY_CONTROLLER);
    next
}

/// Whether a pod keeps a claim from being removed: it is scheduled, has not finished and one of
/// its volumes names the claim (the pvc-protection controller's `podUsesPVC`).
pub fn pod_uses_claim(pod: &Value, namespace: &str, claim: &str) -> bool {
    object::namespace(pod) == namespace
        && !str_at(pod, "/spec/nodeName").is_empty()
        && storage::pod_is_active(pod)
        && storage::pod_claims(pod).iter().any(|(_, c, _)| c == claim)
}

/// The object without `finalizer`.
pub fn without_finalizer(obj: &Value, finalizer: &str) -> Value {
    let mut next = obj.clone();
    if let Some(list) = next
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f != finalizer);
    }
    next
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    object::finalizers(obj).iter().any(|f| f == finalizer)
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Pods filed under `namespace/claim` for every claim their volumes name.
fn index_pods_by_claim(pod: &Value) -> Vec<String> {
    storage::pod_claims(pod)
        .into_iter()
        .map(|(_, c, _)| format!("{}/{c}", object::namespace(pod)))
        .collect()
}

/// Volumes filed under the `namespace/name` their `claimRef` names.
fn index_volumes_by_claim_ref(pv: &Value) -> Vec<String> {
    storage::claim_ref_key(pv).into_iter().collect()
}

/// Runs the PV controller until `cancel` fires.
pub async fn run(client: Client, opts: PersistentVolumeOptions, cancel: CancellationToken) {
    let claims = Informer::builder(client.clone(), "PersistentVolumeClaim")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let volumes = Informer::builder(client.clone(), "PersistentVolume")
        .index(CLAIM_REF_INDEX, index_volumes_by_claim_ref)
        .start(cancel.clone());
    let classes = Informer::builder(client.clone(), "StorageClass").start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(CLAIMS_BY_NODE_INDEX, index_pods_by_claim)
        .start(cancel.clone());
    let nodes = Informer::builder(client.clone(), "Node").start(cancel.clone());
    let ctx = Arc::new(Ctx {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        claims: claims.clone(),
        volumes: volumes.clone(),
        classes: classes.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        helper_image: opts.helper_image.clone(),
    });
    let sources = vec![
        Source::informer(&claims, claim_keys),
        Source::informer(&volumes, volume_keys),
        Source::informer(&classes, {
            let claims = claims.clone();
            move |change: &Change| class_keys(&claims, change)
        }),
        Source::informer(&pods, {
            let claims = claims.clone();
            move |change: &Change| pod_keys(&claims, change)
        }),
        Source::informer(&nodes, |_: &Change| Vec::new()),
    ];
    let all_keys = move || {
        let mut keys: Vec<Key> = claims
            .list()
            .iter()
            .map(|c| Key::Claim(storage::key(c)))
            .collect();
        keys.extend(
            volumes
                .list()
                .iter()
                .map(|v| Key::Volume(object::name(v).to_string())),
        );
        keys
    };
    let reconcile = move |key: Key| {
        let ctx = Arc::clone(&ctx);
        async move { ctx.sync(&key).await }
    };
    let opts = ControllerOptions::new(COMPONENT, opts.workers, opts.resync);
    run_controller(sources, all_keys, reconcile, opts, cancel).await;
}

fn changed_objects(change: &Change) -> Vec<&Value> {
    match change {
        Change::Added(o) | Change::Deleted(o) => vec![o],
        Change::Modified { old, new } => vec![old, new],
        Change::Relisted => Vec::new(),
    }
}

/// A claim's own key, and its volume's.
fn claim_keys(change: &Change) -> Vec<Key> {
    let mut keys = Vec::new();
    for claim in changed_objects(change) {
        keys.push(Key::Claim(storage::key(claim)));
        let volume = storage::claim_volume_name(claim);
        if !volume.is_empty() {
            keys.push(Key::Volume(volume.to_string()));
        }
    }
    keys.dedup();
    keys
}

/// A volume's own key, and the claim its `claimRef` names.
fn volume_keys(change: &Change) -> Vec<Key> {
    let mut keys = Vec::new();
    for pv in changed_objects(change) {
        keys.push(Key::Volume(object::name(pv).to_string()));
        if let Some(claim) = storage::claim_ref_key(pv) {
            keys.push(Key::Claim(claim));
        }
    }
    keys.dedup();
    keys
}

/// The pending claims of a class that changed.
fn class_keys(claims: &Informer, change: &Change) -> Vec<Key> {
    let names: Vec<&str> = changed_objects(change)
        .into_iter()
        .map(object::name)
        .collect();
    claims
        .list()
        .iter()
        .filter(|c| {
            storage::claim_volume_name(c).is_empty() && names.contains(&storage::claim_class(c))
        })
        .map(|c| Key::Claim(storage::key(c)))
        .collect()
}

/// The claims being deleted that a changed pod uses, and the volume of a helper pod.
fn pod_keys(claims: &Informer, change: &Change) -> Vec<Key> {
    let mut keys = Vec::new();
    for pod in changed_objects(change) {
        if let Some(volume) = volume_helper::volume_of(pod)
            && storage::has_annotation(pod, volume_helper::VOLUME_ANNOTATION)
            && object::labels(pod).contains_key(HELPER_LABEL)
        {
            keys.push(Key::Volume(volume.to_string()));
        }
        for (_, name, _) in storage::pod_claims(pod) {
            let deleting = claims
                .get(object::namespace(pod), &name)
                .is_some_and(|c| object::deletion_timestamp(&c).is_some());
            if deleting {
                keys.push(Key::Claim(format!("{}/{name}", object::namespace(pod))));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

struct Ctx {
    client: Client,
    claims: Informer,
    volumes: Informer,
    classes: Informer,
    pods: Informer,
    nodes: Informer,
    events: EventRecorder,
    helper_image: String,
}

fn now() -> String {
    corral_api::meta::now_rfc3339()
}

impl Ctx {
    async fn sync(&self, key: &Key) -> Result<Action, Error> {
        match key {
            Key::Claim(k) => {
                let Some((ns, name)) = k.split_once('/') else {
                    tracing::warn!(error = %Error::BadKey(k.clone()), "persistentvolume: cannot sync");
                    return Ok(Action::await_change());
                };
                self.sync_claim(ns, name).await
            }
            Key::Volume(name) => self.sync_volume(name).await,
        }
    }

    fn event(&self, obj: &Value, e: &Event) {
        self.events.event(obj, e.type_, e.reason, e.message.clone());
    }

    // ---- claims ----------------------------------------------------------------------------

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(Action::await_change());
        };
        let mut claim = (*claim).clone();
        if object::deletion_timestamp(&claim).is_some()
            && has_finalizer(&claim, PVC_PROTECTION_FINALIZER)
        {
            match self.release_claim_protection(&claim).await? {
                None => return Ok(Action::await_change()),
                Some(c) => claim = c,
            }
        }
        let volumes = self.volumes.list();
        let refs: Vec<&Value> = volumes.iter().map(|v| &**v).collect();
        let class_name = storage::claim_class(&claim);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get("", class_name))
            .flatten();
        let selected = storage::annotation(&claim, ANN_SELECTED_NODE).map(|n| {
            self.nodes.get("", n).map(|node| NodeView {
                name: n.to_string(),
                labels: object::labels(&node),
            })
        });
        let unbound = !storage::has_annotation(&claim, ANN_BIND_COMPLETED);
        if unbound && object::deletion_timestamp(&claim).is_some() {
            // A claim on its way out is not bound to anything new.
            return Ok(Action::await_change());
        }
        let decision = decide_claim(
            &claim,
            &refs,
            class.as_deref(),
            selected.as_ref().map(Option::as_ref),
        );
        match decision {
            ClaimDecision::Bind(volume) => {
                let Some(pv) = self.volumes.get("", &volume) else {
                    return Ok(Action::await_change());
                };
                self.bind(&pv, &claim).await?;
            }
            ClaimDecision::Pending { provisioner, event } => {
                if let Some(p) = provisioner
                    && storage::annotation(&claim, ANN_STORAGE_PROVISIONER) != Some(p.as_str())
                {
                    let mut next = claim.clone();
                    set_annotation(&mut next, ANN_STORAGE_PROVISIONER, &p);
                    set_annotation(&mut next, ANN_BETA_STORAGE_PROVISIONER, &p);
                    claim = self.client.update(&next).await.map_err(api(format!(
                        "claim {ns}/{name}: annotating its provisioner"
                    )))?;
                }
                self.set_claim_phase(&claim, CLAIM_PENDING, None).await?;
                if let Some(e) = event {
                    self.event(&claim, &e);
                }
            }
            ClaimDecision::Lost(e) => {
                if storage::phase(&claim) != CLAIM_LOST {
                    self.event(&claim, &e);
                }
                self.set_claim_phase(&claim, CLAIM_LOST, None).await?;
            }
        }
        Ok(Action::await_change())
    }

    async fn set_claim_phase(
        &self,
        claim: &Value,
        phase: &str,
        pv: Option<&Value>,
    ) -> Result<Value, Error> {
        let status = claim_status(claim, phase, pv);
        if claim.get("status") == Some(&status) {
            return Ok(claim.clone());
        }
        let mut next = claim.clone();
        next["status"] = status;
        self.client.update_status(&next).await.map_err(api(format!(
            "claim {}: status {phase}",
            storage::key(claim)
        )))
    }

    async fn set_volume_phase(
        &self,
        pv: &Value,
        phase: &str,
        message: Option<&str>,
    ) -> Result<Value, Error> {
        let status = volume_status(pv, phase, message, &now());
        if storage::phase(pv) == phase && pv.get("status") == Some(&status) {
            return Ok(pv.clone());
        }
        let mut next = pv.clone();
        next["status"] = status;
        self.client
            .update_status(&next)
            .await
            .map_err(api(format!("volume {}: status {phase}", object::name(pv))))
    }

    /// Kubernetes' `bind`: volume → claim link, volume Bound, claim → volume link, claim Bound.
    async fn bind(&self, pv: &Value, claim: &Value) -> Result<(), Error> {
        let what = |step: &str| {
            format!(
                "binding volume {} to claim {}: {step}",
                object::name(pv),
                storage::key(claim)
            )
        };
        let pv = match bound_volume(pv, claim) {
            Some(next) => self
                .client
                .update(&next)
                .await
                .map_err(api(what("the volume's claimRef")))?,
            None => pv.clone(),
        };
        let pv = self.set_volume_phase(&pv, VOLUME_BOUND, None).await?;
        let claim = match bound_claim(claim, &pv) {
            Some(next) => self
                .client
                .update(&next)
                .await
                .map_err(api(what("the claim's volumeName")))?,
            None => claim.clone(),
        };
        self.set_claim_phase(&claim, CLAIM_BOUND, Some(&pv)).await?;
        Ok(())
    }

    /// The pvc-protection controller: drops the finalizer of a claim being deleted that no
    /// scheduled, unfinished pod uses (asking the API when the cache says none). Answers the
    /// claim as it stands after (`None` when it is gone).
    async fn release_claim_protection(&self, claim: &Value) -> Result<Option<Value>, Error> {
        let (ns, name) = (object::namespace(claim), object::name(claim));
        let key = storage::key(claim);
        let cached_users = self
            .pods
            .by_index(CLAIMS_BY_NODE_INDEX, &key)
            .iter()
            .any(|p| pod_uses_claim(p, ns, name));
        if cached_users {
            return Ok(Some(claim.clone()));
        }
        let live = self
            .client
            .list("Pod", Some(ns), &ListOptions::default())
            .await
            .map_err(api(format!(
                "claim {key}: listing the pods that may use it"
            )))?;
        if live.items.iter().any(|p| pod_uses_claim(p, ns, name)) {
            return Ok(Some(claim.clone()));
        }
        let next = without_finalizer(claim, PVC_PROTECTION_FINALIZER);
        match self.client.update(&next).await {
            Ok(v)
                if object::deletion_timestamp(&v).is_some()
                    && !object::finalizers(&v).is_empty() =>
            {
                Ok(Some(v))
            }
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(api(format!(
                "claim {key}: removing {PVC_PROTECTION_FINALIZER}"
            ))(e)),
        }
    }

    // ---- volumes ---------------------------------------------------------------------------

    async fn sync_volume(&self, name: &str) -> Result<Action, Error> {
        let Some(pv) = self.volumes.get("", name) else {
            return Ok(Action::await_change());
        };
        let mut pv = (*pv).clone();
        if object::deletion_timestamp(&pv).is_some()
            && has_finalizer(&pv, PV_PROTECTION_FINALIZER)
            && storage::phase(&pv) != VOLUME_BOUND
        {
            let next = without_finalizer(&pv, PV_PROTECTION_FINALIZER);
            match self.client.update(&next).await {
                Ok(v)
                    if object::deletion_timestamp(&v).is_some()
                        && !object::finalizers(&v).is_empty() =>
                {
                    pv = v
                }
                Ok(_) | Err(ApiError::NotFound { .. }) => return Ok(Action::await_change()),
                Err(e) => {
                    return Err(api(format!(
                        "volume {name}: removing {PV_PROTECTION_FINALIZER}"
                    ))(e));
                }
            }
        }
        let claim = storage::claim_ref_key(&pv).and_then(|k| {
            let (ns, n) = k.split_once('/')?;
            self.claims.get(ns, n)
        });
        // When the cache holds the very claim the volume names, a release means the claim is
        // bound elsewhere; otherwise the claim's absence is confirmed against the API first.
        let ref_uid = str_at(&pv, "/spec/claimRef/uid");
        let claim_cached = claim.as_ref().is_some_and(|c| object::uid(c) == ref_uid);
        match decide_volume(&pv, claim.as_deref()) {
            VolumeDecision::Nothing => {}
            VolumeDecision::Phase(phase) => {
                self.set_volume_phase(&pv, phase, None).await?;
            }
            VolumeDecision::Unbind { keep_name } => {
                let next = unbound_volume(&pv, keep_name);
                let pv = self
                    .client
                    .update(&next)
                    .await
                    .map_err(api(format!("volume {name}: unbinding it")))?;
                self.set_volume_phase(&pv, VOLUME_AVAILABLE, None).await?;
            }
            VolumeDecision::Release(reclaim) => {
                return self.release(pv, reclaim, !claim_cached).await;
            }
        }
        Ok(Action::await_change())
    }

    /// Whether the claim a volume's `claimRef` names is really gone (a quorum read, as
    /// Kubernetes re-checks before it releases a volume).
    async fn claim_gone(&self, pv: &Value) -> Result<bool, Error> {
        let Some(r) = storage::claim_ref(pv) else {
            return Ok(true);
        };
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        match self
            .client
            .get("PersistentVolumeClaim", get("namespace"), get("name"))
            .await
        {
            Ok(c) => Ok(object::uid(&c) != get("uid")),
            Err(ApiError::NotFound { .. }) => Ok(true),
            Err(e) => Err(api(format!(
                "volume {}: reading its claim",
                object::name(pv)
            ))(e)),
        }
    }

    async fn release(&self, pv: Value, reclaim: Reclaim, confirm: bool) -> Result<Action, Error> {
        let name = object::name(&pv).to_string();
        let phase = storage::phase(&pv);
        if phase != VOLUME_RELEASED && phase != VOLUME_FAILED {
            if confirm && !self.claim_gone(&pv).await? {
                // The cache lags: the claim's own events bring the volume back here.
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            // Reclaiming starts on the next sync, which this status change brings.
            self.set_volume_phase(&pv, VOLUME_RELEASED, None).await?;
            return Ok(Action::await_change());
        }
        if phase == VOLUME_FAILED {
            return Ok(Action::await_change());
        }
        match reclaim {
            Reclaim::Retain | Reclaim::ByProvisioner(_) => Ok(Action::await_change()),
            Reclaim::Fail(e) => {
                self.event(&pv, &e);
                self.set_volume_phase(&pv, VOLUME_FAILED, Some(&e.message))
                    .await?;
                Ok(Action::await_change())
            }
            Reclaim::Recycle => {
                let progress = self.helper(&pv, Op::Recycle).await?;
                match progress {
                    Progress::Started(message) => {
                        self.event(&pv, &Event::normal(EVENT_RECYCLER_POD, message));
                        Ok(Action::await_change())
                    }
                    Progress::Running => Ok(Action::await_change()),
                    Progress::Done => {
                        let keep_name = !storage::has_annotation(&pv, ANN_BOUND_BY_CONTROLLER);
                        let next = unbound_volume(&pv, keep_name);
                        let pv =
                            self.client.update(&next).await.map_err(api(format!(
                                "volume {name}: unbinding it after recycling"
                            )))?;
                        self.set_volume_phase(&pv, VOLUME_AVAILABLE, None).await?;
                        self.event(
                            &pv,
                            &Event::normal(EVENT_VOLUME_RECYCLED, "Volume recycled"),
                        );
                        Ok(Action::await_change())
                    }
                    Progress::Failed(why) => {
                        let e = Event::warning(
                            EVENT_VOLUME_FAILED_RECYCLE,
                            format!("Recycle failed: {why}"),
                        );
                        self.event(&pv, &e);
                        self.set_volume_phase(&pv, VOLUME_FAILED, Some(&e.message))
                            .await?;
                        Ok(Action::await_change())
                    }
                }
            }
            Reclaim::Delete => match self.helper(&pv, Op::Delete).await? {
                Progress::Started(_) | Progress::Running => Ok(Action::await_change()),
                Progress::Done => {
                    delete_volume(&self.client, &pv).await?;
                    Ok(Action::await_change())
                }
                Progress::Failed(why) => {
                    let e = Event::warning(EVENT_VOLUME_FAILED_DELETE, why);
                    self.event(&pv, &e);
                    self.set_volume_phase(&pv, VOLUME_FAILED, Some(&e.message))
                        .await?;
                    Ok(Action::await_change())
                }
            },
        }
    }

    async fn helper(&self, pv: &Value, op: Op) -> Result<Progress, Error> {
        volume_helper::drive(&self.client, &self.pods, pv, op, &self.helper_image)
            .await
            .map_err(api(format!(
                "volume {}: the {} helper pod",
                object::name(pv),
                op.as_str()
            )))
    }
}

/// Deletes a volume object whose data is gone (uid precondition; already gone is fine).
pub(crate) async fn delete_volume(client: &Client, pv: &Value) -> Result<(), Error> {
    let opts = DeleteOptions {
        uid: Some(object::uid(pv).to_string()),
        ..DeleteOptions::default()
    };
    match client
        .delete("PersistentVolume", "", object::name(pv), &opts)
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(api(format!("volume {}: deleting it", object::name(pv)))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, size: &str, class: &str) -> Value {
        json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": size}}, "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"},
        })
    }

    fn volume(name: &str, size: &str, class: &str) -> Value {
        json!({
            "kind": "PersistentVolume",
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": class, "hostPath": {"path": format!("/data/{name}")},
                     "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"},
            "status": {"phase": "Available"},
        })
    }

    fn class(name: &str, provisioner: &str, wffc: bool) -> Value {
        json!({"kind": "StorageClass", "metadata": {"name": name}, "provisioner": provisioner,
               "volumeBindingMode": if wffc { "WaitForFirstConsumer" } else { "Immediate" }})
    }

    fn pinned(mut pv: Value, node: &str) -> Value {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
        pv
    }

    fn bound_to(mut pv: Value, claim: &Value) -> Value {
        pv["spec"]["claimRef"] = storage::claim_reference(claim);
        pv
    }

    fn node(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
        }
    }

    #[test]
    fn an_unbound_claim_binds_the_smallest_fitting_volume() {
        let vols = [
            volume("big", "10Gi", ""),
            volume("small", "2Gi", ""),
            volume("tiny", "500Mi", ""),
        ];
        let refs: Vec<&Value> = vols.iter().collect();
        assert_eq!(
            decide_claim(&claim("c", "1Gi", ""), &refs, None, None),
            ClaimDecision::Bind("small".into())
        );
        assert_eq!(
            decide_claim(&claim("c", "20Gi", ""), &refs, None, None),
            pending(Some(Event::normal(
                EVENT_FAILED_BINDING,
                "no persistent volumes available for this claim and no storage class is set"
            )))
        );
    }

    #[test]
    fn a_claim_of_a_class_without_volumes_waits_for_its_provisioner() {
        let fast = class("fast", "corral.io/local-path", false);
        let d = decide_claim(&claim("c", "1Gi", "fast"), &[], Some(&fast), None);
        assert_eq!(
            d,
            ClaimDecision::Pending {
                provisioner: Some("corral.io/local-path".into()),
                event: Some(Event::normal(
                    EVENT_EXTERNAL_PROVISIONING,
                    "waiting for a volume to be created, either by external provisioner \"corral.io/local-path\" or manually created by system administrator"
                )),
            }
        );
        let d = decide_claim(&claim("c", "1Gi", "gone"), &[], None, None);
        assert_eq!(
            d,
            pending(Some(Event::warning(
                EVENT_PROVISIONING_FAILED,
                "storageclass.storage.k8s.io \"gone\" not found"
            )))
        );
        let manual = class("manual", "kubernetes.io/no-provisioner", false);
        assert!(matches!(
            decide_claim(&claim("c", "1Gi", "manual"), &[], Some(&manual), None),
            ClaimDecision::Pending {
                provisioner: None,
                event: Some(Event {
                    reason: EVENT_PROVISIONING_FAILED,
                    ..
                })
            }
        ));
    }

    #[test]
    fn wait_for_first_consumer_binds_only_on_the_selected_node() {
        let local = class("local", "kubernetes.io/no-provisioner", true);
        let vols = [
            pinned(volume("on-a", "1Gi", "local"), "a"),
            pinned(volume("on-b", "5Gi", "local"), "b"),
        ];
        let refs: Vec<&Value> = vols.iter().collect();
        let c = claim("c", "1Gi", "local");
        assert_eq!(
            decide_claim(&c, &refs, Some(&local), None),
            pending(Some(Event::normal(
                EVENT_WAIT_FOR_FIRST_CONSUMER,
                WAITING_FOR_FIRST_CONSUMER
            )))
        );
        let b = node("b");
        assert_eq!(
            decide_claim(&c, &refs, Some(&local), Some(Some(&b))),
            ClaimDecision::Bind("on-b".into())
        );
        // A selected node no volume allows: provisioning (which no-provisioner cannot do).
        let z = node("z");
        assert!(matches!(
            decide_claim(&c, &refs, Some(&local), Some(Some(&z))),
            ClaimDecision::Pending { .. }
        ));
        let lp = class("lp", "corral.io/local-path", true);
        let c = claim("c", "1Gi", "lp");
        assert!(matches!(
            decide_claim(&c, &[], Some(&lp), Some(Some(&z))),
            ClaimDecision::Pending {
                provisioner: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn pre_bound_claims_and_volumes_bind_to_each_other() {
        let mut c = claim("c", "1Gi", "");
        c["spec"]["volumeName"] = json!("admin");
        let admin = volume("admin", "10Gi", "");
        assert_eq!(
            decide_claim(&c, &[&admin], None, None),
            ClaimDecision::Bind("admin".into())
        );
        let small = volume("admin", "500Mi", "");
        assert_eq!(
            decide_claim(&c, &[&small], None, None),
            pending(Some(Event::warning(
                EVENT_VOLUME_MISMATCH,
                "Cannot bind to requested volume \"admin\": requested PV is too small"
            )))
        );
        assert_eq!(decide_claim(&c, &[], None, None), pending(None));
        let other = bound_to(volume("admin", "10Gi", ""), &claim("other", "1Gi", ""));
        assert!(matches!(
            decide_claim(&c, &[&other], None, None),
            ClaimDecision::Pending {
                event: Some(Event {
                    reason: EVENT_FAILED_BINDING,
                    ..
                }),
                ..
            }
        ));
        // A volume pre-bound by name to a claim wins over a smaller free one.
        let mut reserved = volume("reserved", "10Gi", "");
        reserved["spec"]["claimRef"] = json!({"namespace": "default", "name": "d"});
        let free = volume("free", "1Gi", "");
        assert_eq!(
            decide_claim(&claim("d", "1Gi", ""), &[&free, &reserved], None, None),
            ClaimDecision::Bind("reserved".into())
        );
    }

    #[test]
    fn bound_claims_lose_their_volume_or_keep_it() {
        let mut c = claim("c", "1Gi", "");
        c["metadata"]["annotations"] = json!({ANN_BIND_COMPLETED: "yes"});
        c["spec"]["volumeName"] = json!("v");
        let mine = bound_to(volume("v", "1Gi", ""), &c);
        assert_eq!(
            decide_claim(&c, &[&mine], None, None),
            ClaimDecision::Bind("v".into())
        );
        assert!(matches!(
            decide_claim(&c, &[], None, None),
            ClaimDecision::Lost(Event {
                reason: EVENT_CLAIM_LOST,
                ..
            })
        ));
        let theirs = bound_to(volume("v", "1Gi", ""), &claim("other", "1Gi", ""));
        assert!(matches!(
            decide_claim(&c, &[&theirs], None, None),
            ClaimDecision::Lost(Event {
                reason: EVENT_CLAIM_MISBOUND,
                ..
            })
        ));
    }

    #[test]
    fn binding_writes_both_links_and_the_claims_status() {
        let c = claim("c", "1Gi", "");
        let v = volume("v", "5Gi", "");
        let pv = bound_volume(&v, &c).expect("a change");
        assert_eq!(pv["spec"]["claimRef"]["uid"], "uid-c");
        assert_eq!(pv["spec"]["claimRef"]["name"], "c");
        assert_eq!(
            pv["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER],
            "yes"
        );
        assert_eq!(bound_volume(&pv, &c), None, "already linked");
        let claim_next = bound_claim(&c, &pv).expect("a change");
        assert_eq!(claim_next["spec"]["volumeName"], "v");
        assert_eq!(
            claim_next["metadata"]["annotations"][ANN_BIND_COMPLETED],
            "yes"
        );
        assert_eq!(
            claim_next["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER],
            "yes"
        );
        assert_eq!(bound_claim(&claim_next, &pv), None);
        let status = claim_status(&claim_next, CLAIM_BOUND, Some(&pv));
        assert_eq!(
            status,
            json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"}})
        );
        assert_eq!(
            claim_status(&json!({"status": status}), CLAIM_LOST, None),
            json!({"phase": "Lost"})
        );
        // A volume an administrator pre-bound by name is completed without bound-by-controller.
        let mut pre = volume("v", "5Gi", "");
        pre["spec"]["claimRef"] = json!({"namespace": "default", "name": "c"});
        let pre = bound_volume(&pre, &c).expect("uid filled in");
        assert_eq!(pre["spec"]["claimRef"]["uid"], "uid-c");
        assert!(pre["metadata"].get("annotations").is_none());
    }

    #[test]
    fn volumes_follow_their_claims() {
        let c = claim("c", "1Gi", "");
        let free = volume("v", "1Gi", "");
        assert_eq!(decide_volume(&free, None), VolumeDecision::Nothing);
        let pending_pv = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(
            decide_volume(&pending_pv, None),
            VolumeDecision::Phase(VOLUME_AVAILABLE)
        );
        let linked = bound_to(volume("v", "1Gi", ""), &c);
        // The claim has not named it yet: its own sync finishes the binding.
        assert_eq!(decide_volume(&linked, Some(&c)), VolumeDecision::Nothing);
        let mut named = c.clone();
        named["spec"]["volumeName"] = json!("v");
        assert_eq!(
            decide_volume(&linked, Some(&named)),
            VolumeDecision::Phase(VOLUME_BOUND)
        );
        assert_eq!(
            decide_volume(&linked, None),
            VolumeDecision::Release(Reclaim::Retain)
        );
        let mut recreated = named.clone();
        recreated["metadata"]["uid"] = json!("another");
        assert_eq!(
            decide_volume(&linked, Some(&recreated)),
            VolumeDecision::Release(Reclaim::Retain),
            "a claim of the same name with another uid is another claim"
        );
        let mut elsewhere = named.clone();
        elsewhere["spec"]["volumeName"] = json!("w");
        let mut by_controller = linked.clone();
        by_controller["metadata"]["annotations"] = json!({ANN_BOUND_BY_CONTROLLER: "yes"});
        assert_eq!(
            decide_volume(&by_controller, Some(&elsewhere)),
            VolumeDecision::Unbind { keep_name: false }
        );
        assert_eq!(
            decide_volume(&linked, Some(&elsewhere)),
            VolumeDecision::Unbind { keep_name: true }
        );
        let unbound = unbound_volume(&by_controller, false);
        assert!(unbound["spec"].get("claimRef").is_none());
        let kept = unbound_volume(&linked, true);
        assert_eq!(kept["spec"]["claimRef"]["name"], "c");
        assert!(kept["spec"]["claimRef"].get("uid").is_none());
    }

    #[test]
    fn each_reclaim_policy_has_its_action() {
        let with_policy = |p: &str| {
            let mut v = volume("v", "1Gi", "");
            v["spec"]["persistentVolumeReclaimPolicy"] = json!(p);
            v
        };
        assert_eq!(reclaim_of(&with_policy("Retain")), Reclaim::Retain);
        assert_eq!(reclaim_of(&with_policy("Recycle")), Reclaim::Recycle);
        // An administrator's hostPath outside /tmp is not deleted (Kubernetes' hostPath deleter).
        assert_eq!(
            reclaim_of(&with_policy("Delete")),
            Reclaim::Fail(Event::warning(
                EVENT_VOLUME_FAILED_DELETE,
                "host_path deleter only supports /tmp/.+ but received provided /data/v"
            ))
        );
        let mut tmp = with_policy("Delete");
        tmp["spec"]["hostPath"]["path"] = json!("/tmp/scratch/v");
        assert_eq!(reclaim_of(&tmp), Reclaim::Delete);
        tmp["spec"]["hostPath"]["path"] = json!("/tmp/");
        assert!(matches!(reclaim_of(&tmp), Reclaim::Fail(_)));
        let mut provisioned = with_policy("Delete");
        provisioned["metadata"]["annotations"] =
            json!({ANN_PROVISIONED_BY: "corral.io/local-path"});
        assert_eq!(
            reclaim_of(&provisioned),
            Reclaim::ByProvisioner("corral.io/local-path".into())
        );
        let mut local = with_policy("Delete");
        local["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("hostPath");
        local["spec"]["local"] = json!({"path": "/mnt/disk"});
        assert!(matches!(
            reclaim_of(&local),
            Reclaim::Fail(Event { reason: EVENT_VOLUME_FAILED_DELETE, ref message, .. })
                if message.contains("no deletable volume plugin matched")
        ));
        // A provisioned volume whose claim took another volume goes.
        let c = claim("c", "1Gi", "");
        let mut spare = bound_to(provisioned, &c);
        spare["metadata"]["annotations"][ANN_PROVISIONED_BY] = json!("corral.io/local-path");
        let mut elsewhere = c.clone();
        elsewhere["spec"]["volumeName"] = json!("w");
        assert_eq!(
            decide_volume(&spare, Some(&elsewhere)),
            VolumeDecision::Release(Reclaim::ByProvisioner("corral.io/local-path".into()))
        );
    }

    #[test]
    fn only_scheduled_unfinished_pods_protect_a_claim() {
        let pod = |node: &str, phase: &str| {
            json!({"metadata": {"namespace": "default", "name": "p"},
                   "spec": {"nodeName": node, "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]},
                   "status": {"phase": phase}})
        };
        assert!(pod_uses_claim(&pod("n1", "Running"), "default", "c"));
        assert!(pod_uses_claim(&pod("n1", "Pending"), "default", "c"));
        assert!(!pod_uses_claim(&pod("", "Pending"), "default", "c"));
        assert!(!pod_uses_claim(&pod("n1", "Succeeded"), "default", "c"));
        assert!(!pod_uses_claim(&pod("n1", "Running"), "default", "other"));
        assert!(!pod_uses_claim(&pod("n1", "Running"), "prod", "c"));
        let claim = json!({"metadata": {"finalizers": ["a", PVC_PROTECTION_FINALIZER]}});
        assert_eq!(
            without_finalizer(&claim, PVC_PROTECTION_FINALIZER)["metadata"]["finalizers"],
            json!(["a"])
        );
    }

    #[test]
    fn volume_status_keeps_its_transition_time_until_the_phase_changes() {
        let v = volume("v", "1Gi", "");
        let s = volume_status(&v, VOLUME_AVAILABLE, None, "t1");
        assert_eq!(s, json!({"phase": "Available"}));
        let s = volume_status(&v, VOLUME_FAILED, Some("boom"), "t2");
        assert_eq!(
            s,
            json!({"phase": "Failed", "message": "boom", "lastPhaseTransitionTime": "t2"})
        );
    }
}

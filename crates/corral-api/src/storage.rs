//! Persistent storage as Kubernetes models it: what a PersistentVolume, a PersistentVolumeClaim
//! and a StorageClass say, and the pure rules the PV controller, the scheduler and the agent share.
//!
//! - The names Kubernetes uses: annotations (`pv.kubernetes.io/bind-completed`, ...),
//!   protection finalizers, phases; and Corral's own: the built-in provisioner
//!   [`LOCAL_PATH_PROVISIONER`] and the Node annotation [`LOCAL_PATH_ROOT_ANNOTATION`] where an
//!   agent publishes the directory local-path volumes live under.
//! - Reading objects: a claim's class, request, access modes; a volume's capacity, source path.
//! - [`find_matching_volume`]: Kubernetes' `FindMatchingVolume`, the one binding choice (a volume
//!   pre-bound to the claim wins; otherwise the smallest Available volume of the claim's class
//!   that is large enough, offers the claim's access modes and volume mode, and matches the
//!   claim's selector and, when a node is given, that node).
//! - [`check_volume_satisfies_claim`]: why a volume a claim names in `spec.volumeName` cannot be
//!   bound to it.
//! - [`default_storage_class`]: the DefaultStorageClass admission's choice.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::object;
use crate::quantity::parse_quantity;
use crate::selector::from_label_selector_json;

/// Set on a claim (and on a volume the controller bound) once the PV controller has bound it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the PV controller made (rather than a user).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner that made a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner expected to provision a claim (set by the PV controller).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The older, beta name of [`ANN_STORAGE_PROVISIONER`], set alongside it as Kubernetes does.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The node the scheduler chose for the first pod of a WaitForFirstConsumer claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// A StorageClass with this annotation `"true"` is the cluster's default.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta name of [`ANN_DEFAULT_CLASS`], still honoured.
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Keeps a claim that pods use from being removed (StorageObjectInUseProtection).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Keeps a bound volume from being removed.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Corral's built-in provisioner: a directory on one node.
pub const LOCAL_PATH_PROVISIONER: &str = "corral.io/local-path";
/// The default StorageClass every cluster gets.
pub const DEFAULT_CLASS_NAME: &str = "local-path";
/// The Node annotation holding the directory (absolute, on that node) under which the
/// local-path provisioner makes volumes.
pub const LOCAL_PATH_ROOT_ANNOTATION: &str = "corral.io/local-path-root";
/// The node label local volumes are pinned with.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The access modes Kubernetes knows.
pub const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// Volume phases.
pub const VOLUME_PENDING: &str = "Pending";
pub const VOLUME_AVAILABLE: &str = "Available";
pub const VOLUME_BOUND: &str = "Bound";
pub const VOLUME_RELEASED: &str = "Released";
pub const VOLUME_FAILED: &str = "Failed";
/// Claim phases.
pub const CLAIM_PENDING: &str = "Pending";
pub const CLAIM_BOUND: &str = "Bound";
pub const CLAIM_LOST: &str = "Lost";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The claim's `spec.storageClassName` (`""` when unset).
pub fn claim_class(claim: &Value) -> &str {
    str_at(claim, "/spec/storageClassName")
}

/// Whether the claim names no class at all (absent or null, not `""`): the DefaultStorageClass
/// admission fills those in.
pub fn claim_class_unset(claim: &Value) -> bool {
    claim
        .pointer("/spec/storageClassName")
        .is_none_or(Value::is_null)
}

/// The volume's `spec.storageClassName` (`""` when unset).
pub fn volume_class(pv: &Value) -> &str {
    str_at(pv, "/spec/storageClassName")
}

/// `spec.volumeName` of a claim (`""` when unset).
pub fn claim_volume_name(claim: &Value) -> &str {
    str_at(claim, "/spec/volumeName")
}

/// `status.phase`.
pub fn phase(obj: &Value) -> &str {
    str_at(obj, "/status/phase")
}

/// `spec.persistentVolumeReclaimPolicy` (Kubernetes' default `Retain` when unset).
pub fn reclaim_policy(pv: &Value) -> &str {
    match str_at(pv, "/spec/persistentVolumeReclaimPolicy") {
        "" => "Retain",
        p => p,
    }
}

/// `spec.volumeMode` (`Filesystem` when unset) of a claim or volume.
pub fn volume_mode(obj: &Value) -> &str {
    match str_at(obj, "/spec/volumeMode") {
        "" => "Filesystem",
        m => m,
    }
}

/// `spec.accessModes` of a claim or volume.
pub fn access_modes(obj: &Value) -> Vec<&str> {
    obj.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a volume offering `offered` serves a claim asking for `wanted` (every mode asked for
/// is offered).
pub fn modes_satisfy(offered: &[&str], wanted: &[&str]) -> bool {
    wanted.iter().all(|m| offered.contains(m))
}

fn quantity_milli(v: Option<&Value>) -> Option<i128> {
    let text = match v? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    parse_quantity(&text).ok().map(|q| q.milli_value())
}

/// The claim's `spec.resources.requests.storage` in thousandths of a byte (`None`: unset or
/// unreadable).
pub fn requested_storage(claim: &Value) -> Option<i128> {
    quantity_milli(claim.pointer("/spec/resources/requests/storage"))
}

/// The volume's `spec.capacity.storage` in thousandths of a byte.
pub fn capacity(pv: &Value) -> Option<i128> {
    quantity_milli(pv.pointer("/spec/capacity/storage"))
}

/// The request as written (`1Gi`).
pub fn requested_storage_text(claim: &Value) -> Option<Value> {
    claim.pointer("/spec/resources/requests/storage").cloned()
}

/// The directory a volume's data is in on its node: `spec.hostPath.path` or `spec.local.path`.
pub fn volume_path(pv: &Value) -> Option<&str> {
    pv.pointer("/spec/hostPath/path")
        .or_else(|| pv.pointer("/spec/local/path"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
}

/// The node a volume is pinned to: the single value of a required `kubernetes.io/hostname In`
/// term, as local volumes (and Corral's local-path volumes) carry it.
pub fn volume_node(pv: &Value) -> Option<&str> {
    let terms = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)?;
    if terms.len() != 1 {
        return None;
    }
    let exprs = terms[0].get("matchExpressions").and_then(Value::as_array)?;
    exprs.iter().find_map(|e| {
        let values = e.get("values").and_then(Value::as_array)?;
        (e.get("key").and_then(Value::as_str) == Some(HOSTNAME_LABEL)
            && e.get("operator").and_then(Value::as_str) == Some("In")
            && values.len() == 1)
            .then(|| values[0].as_str())
            .flatten()
    })
}

/// `spec.claimRef` of a volume, when set.
pub fn claim_ref(pv: &Value) -> Option<&Value> {
    pv.pointer("/spec/claimRef").filter(|r| r.is_object())
}

/// `namespace/name` of the claim a volume's `claimRef` names.
pub fn claim_ref_key(pv: &Value) -> Option<String> {
    let r = claim_ref(pv)?;
    let name = r.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return None;
    }
    let ns = r.get("namespace").and_then(Value::as_str).unwrap_or("");
    Some(format!("{ns}/{name}"))
}

/// `namespace/name` of an object.
pub fn key(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

/// Kubernetes' `IsVolumeBoundToClaim`: the volume's `claimRef` names the claim, and its uid is
/// empty (pre-bound by name) or the claim's.
pub fn is_volume_bound_to_claim(pv: &Value, claim: &Value) -> bool {
    let Some(r) = claim_ref(pv) else {
        return false;
    };
    let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    get("name") == object::name(claim)
        && get("namespace") == object::namespace(claim)
        && (get("uid").is_empty() || get("uid") == object::uid(claim))
}

/// The `claimRef` a volume bound to `claim` carries.
pub fn claim_reference(claim: &Value) -> Value {
    serde_json::json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": object::namespace(claim),
        "name": object::name(claim),
        "uid": object::uid(claim),
        "resourceVersion": str_at(claim, "/metadata/resourceVersion"),
    })
}

/// The claims a pod's volumes name: `(volume name, claim name, readOnly)`.
pub fn pod_claims(pod: &Value) -> Vec<(String, String, bool)> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    let c = v.get("persistentVolumeClaim")?;
                    let claim = c.get("claimName").and_then(Value::as_str)?;
                    Some((
                        v.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        claim.to_string(),
                        c.get("readOnly").and_then(Value::as_bool) == Some(true),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a pod still uses its volumes: it has not finished (phase `Succeeded`/`Failed`).
pub fn pod_is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether an annotation is set (to anything).
pub fn has_annotation(obj: &Value, key: &str) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .is_some_and(|v| !v.is_null())
}

/// An annotation's value.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Whether the class delays binding until a pod uses the claim.
pub fn is_wait_for_first_consumer(class: &Value) -> bool {
    str_at(class, "/volumeBindingMode") == "WaitForFirstConsumer"
}

/// Kubernetes' `checkVolumeSatisfyClaim`: why `pv` cannot serve `claim` (size, class, volume
/// mode, access modes), or `Ok`.
pub fn check_volume_satisfies_claim(pv: &Value, claim: &Value) -> Result<(), String> {
    let request = requested_storage(claim).unwrap_or(0);
    if capacity(pv).unwrap_or(0) < request {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode(pv) != volume_mode(claim) {
        return Err("incompatible volumeMode".into());
    }
    if !modes_satisfy(&access_modes(pv), &access_modes(claim)) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// Kubernetes' `FindMatchingVolume`: the volume `claim` should bind to among `volumes`.
///
/// A volume pre-bound to the claim (its `claimRef` names it) is the answer whenever it is big
/// enough and of the right volume mode (and, with a node, fits the node; if not, there is no
/// answer). Otherwise the smallest volume that is `Available`, not bound to anything, not being
/// deleted, at least as large as the request, of the claim's class and volume mode, offering
/// every access mode the claim asks for, matching the claim's `selector` and (when
/// `fits_node` is given) the node. Without a node, a claim whose binding is delayed
/// (`delay_binding`, WaitForFirstConsumer) only takes a pre-bound volume. An unreadable selector
/// is an error.
pub fn find_matching_volume<'v>(
    claim: &Value,
    volumes: &[&'v Value],
    fits_node: Option<&dyn Fn(&Value) -> bool>,
    delay_binding: bool,
) -> Result<Option<&'v Value>, String> {
    let request = requested_storage(claim).unwrap_or(0);
    let class = claim_class(claim);
    let wanted_modes = access_modes(claim);
    let selector = match claim.pointer("/spec/selector") {
        None | Some(Value::Null) => None,
        Some(s) => Some(from_label_selector_json(s).map_err(|e| {
            format!(
                "error creating internal label selector for claim {}: {e}",
                key(claim)
            )
        })?),
    };
    let mut smallest: Option<(&'v Value, i128)> = None;
    for &pv in volumes {
        if claim_ref(pv).is_some() && !is_volume_bound_to_claim(pv, claim) {
            continue;
        }
        let size = capacity(pv).unwrap_or(0);
        if size < request || volume_mode(pv) != volume_mode(claim) {
            continue;
        }
        if object::deletion_timestamp(pv).is_some() {
            continue;
        }
        let node_ok = fits_node.is_none_or(|f| f(pv));
        if is_volume_bound_to_claim(pv, claim) {
            return Ok(node_ok.then_some(pv));
        }
        if fits_node.is_none() && delay_binding {
            continue;
        }
        if phase(pv) != VOLUME_AVAILABLE {
            continue;
        }
        if let Some(s) = &selector
            && !s.matches(&object::labels(pv))
        {
            continue;
        }
        if volume_class(pv) != class || !node_ok {
            continue;
        }
        if !modes_satisfy(&access_modes(pv), &wanted_modes) {
            continue;
        }
        // Of equal sizes the first name wins, so the choice is reproducible.
        let better = match smallest {
            None => true,
            Some((best, best_size)) => {
                size < best_size || (size == best_size && object::name(pv) < object::name(best))
            }
        };
        if better {
            smallest = Some((pv, size));
        }
    }
    Ok(smallest.map(|(pv, _)| pv))
}

/// The DefaultStorageClass admission's choice among `classes`: those annotated
/// [`ANN_DEFAULT_CLASS`] (or its beta name) `"true"`; of several, the newest (Kubernetes 1.28),
/// then the first by name. `None` when no class is the default.
pub fn default_storage_class(classes: &[Value]) -> Option<String> {
    let mut defaults: Vec<&Value> = classes
        .iter()
        .filter(|c| {
            [ANN_DEFAULT_CLASS, ANN_BETA_DEFAULT_CLASS]
                .iter()
                .any(|a| annotation(c, a) == Some("true"))
        })
        .collect();
    defaults.sort_by(|a, b| {
        let created = |c: &Value| str_at(c, "/metadata/creationTimestamp").to_string();
        created(b)
            .cmp(&created(a))
            .then_with(|| object::name(a).cmp(object::name(b)))
    });
    defaults.first().map(|c| object::name(c).to_string())
}

/// The StorageClass every cluster gets at bootstrap: `local-path`, the default, provisioned by
/// [`LOCAL_PATH_PROVISIONER`], binding when the first pod is scheduled, deleting its volumes when
/// their claims go.
pub fn default_storage_class_object() -> Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_CLASS_NAME,
            "annotations": {ANN_DEFAULT_CLASS: "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// Labels of an object as a map (for node-affinity checks of Nodes).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    object::labels(obj)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> Value {
        json!({
            "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"tier": "gold"}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": class, "hostPath": {"path": format!("/data/{name}")}},
            "status": {"phase": "Available"},
        })
    }

    fn claim(size: &str, modes: &[&str], class: &str) -> Value {
        json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": modes, "storageClassName": class,
                     "resources": {"requests": {"storage": size}}},
        })
    }

    /// Sets the value at a JSON pointer whose parent exists.
    fn set(mut v: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        v.pointer_mut(parent).expect("the parent exists")[key] = value;
        v
    }

    fn choose(claim: &Value, volumes: &[Value]) -> Option<String> {
        let refs: Vec<&Value> = volumes.iter().collect();
        find_matching_volume(claim, &refs, None, false)
            .expect("a readable claim")
            .map(|v| object::name(v).to_string())
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let volumes = [
            pv("big", "10Gi", &["ReadWriteOnce"], ""),
            pv("small", "1Gi", &["ReadWriteOnce"], ""),
            pv("tiny", "500Mi", &["ReadWriteOnce"], ""),
            pv("medium", "5Gi", &["ReadWriteOnce"], ""),
        ];
        let table = [
            ("1Gi", Some("small")),
            ("1G", Some("small")),
            ("2Gi", Some("medium")),
            ("10Gi", Some("big")),
            ("11Gi", None),
            ("100Mi", Some("tiny")),
        ];
        for (size, want) in table {
            assert_eq!(
                choose(&claim(size, &["ReadWriteOnce"], ""), &volumes).as_deref(),
                want,
                "request {size}"
            );
        }
    }

    #[test]
    fn access_modes_class_mode_phase_and_selector_must_match() {
        let rwo = pv("rwo", "1Gi", &["ReadWriteOnce"], "");
        let rwx = pv("rwx", "5Gi", &["ReadWriteOnce", "ReadWriteMany"], "");
        let fast = pv("fast", "1Gi", &["ReadWriteOnce"], "fast");
        let c = claim("1Gi", &["ReadWriteMany"], "");
        assert_eq!(
            choose(&c, &[rwo.clone(), rwx.clone()]).as_deref(),
            Some("rwx")
        );
        let c = claim("1Gi", &["ReadWriteOnce"], "fast");
        assert_eq!(
            choose(&c, &[rwo.clone(), rwx.clone(), fast.clone()]).as_deref(),
            Some("fast")
        );
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        assert_eq!(
            choose(&c, std::slice::from_ref(&fast)),
            None,
            "class must match"
        );
        let block = set(rwo.clone(), "/spec/volumeMode", json!("Block"));
        assert_eq!(choose(&c, &[block]), None, "volumeMode must match");
        let released = set(rwo.clone(), "/status/phase", json!("Released"));
        assert_eq!(choose(&c, &[released]), None, "only Available volumes");
        let taken = set(
            rwo.clone(),
            "/spec/claimRef",
            json!({"namespace": "default", "name": "other", "uid": "x"}),
        );
        assert_eq!(choose(&c, &[taken]), None, "bound elsewhere");
        let deleting = set(
            rwo.clone(),
            "/metadata/deletionTimestamp",
            json!("2026-01-01T00:00:00Z"),
        );
        assert_eq!(choose(&c, &[deleting]), None, "being deleted");

        let selective = set(
            c.clone(),
            "/spec/selector",
            json!({"matchLabels": {"tier": "silver"}}),
        );
        assert_eq!(choose(&selective, std::slice::from_ref(&rwo)), None);
        let selective = set(
            c.clone(),
            "/spec/selector",
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}),
        );
        assert_eq!(
            choose(&selective, std::slice::from_ref(&rwo)).as_deref(),
            Some("rwo")
        );
    }

    #[test]
    fn a_pre_bound_volume_wins_over_a_smaller_one() {
        let small = pv("small", "1Gi", &["ReadWriteOnce"], "");
        let mine = set(
            pv("mine", "10Gi", &["ReadWriteOnce"], "other-class"),
            "/spec/claimRef",
            json!({"namespace": "default", "name": "data"}),
        );
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        assert_eq!(
            choose(&c, &[small.clone(), mine.clone()]).as_deref(),
            Some("mine")
        );
        // A claimRef with another uid is another claim of the same name.
        let stale = set(mine, "/spec/claimRef/uid", json!("old"));
        assert_eq!(choose(&c, &[small, stale]).as_deref(), Some("small"));
    }

    #[test]
    fn delayed_binding_without_a_node_takes_only_pre_bound_volumes() {
        let v = pv("v", "1Gi", &["ReadWriteOnce"], "local");
        let c = claim("1Gi", &["ReadWriteOnce"], "local");
        let refs = [&v];
        assert_eq!(
            find_matching_volume(&c, &refs, None, true).expect("ok"),
            None
        );
        let yes = |_: &Value| true;
        let no = |_: &Value| false;
        assert!(
            find_matching_volume(&c, &refs, Some(&yes), true)
                .expect("ok")
                .is_some()
        );
        assert!(
            find_matching_volume(&c, &refs, Some(&no), true)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn pre_bound_volumes_are_checked_for_fit() {
        let v = pv("v", "1Gi", &["ReadWriteOnce"], "");
        let c = claim("2Gi", &["ReadWriteOnce"], "");
        assert_eq!(
            check_volume_satisfies_claim(&v, &c),
            Err("requested PV is too small".to_string())
        );
        let c = claim("1Gi", &["ReadWriteMany"], "");
        assert_eq!(
            check_volume_satisfies_claim(&v, &c),
            Err("incompatible accessMode".to_string())
        );
        let c = claim("1Gi", &["ReadWriteOnce"], "fast");
        assert_eq!(
            check_volume_satisfies_claim(&v, &c),
            Err("storageClassName does not match".to_string())
        );
        let c = claim("1Gi", &["ReadWriteOnce"], "");
        assert_eq!(check_volume_satisfies_claim(&v, &c), Ok(()));
    }

    #[test]
    fn the_newest_default_class_is_chosen() {
        let class = |name: &str, created: &str, default: Option<&str>| {
            let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
            if let Some(d) = default {
                c["metadata"]["annotations"] = json!({ANN_DEFAULT_CLASS: d});
            }
            c
        };
        assert_eq!(default_storage_class(&[]), None);
        assert_eq!(
            default_storage_class(&[class("a", "2026-01-01T00:00:00Z", None)]),
            None
        );
        assert_eq!(
            default_storage_class(&[class("a", "2026-01-01T00:00:00Z", Some("false"))]),
            None
        );
        let classes = [
            class("old", "2026-01-01T00:00:00Z", Some("true")),
            class("new", "2026-02-01T00:00:00Z", Some("true")),
            class("plain", "2026-03-01T00:00:00Z", None),
        ];
        assert_eq!(default_storage_class(&classes).as_deref(), Some("new"));
        let beta =
            json!({"metadata": {"name": "beta", "annotations": {ANN_BETA_DEFAULT_CLASS: "true"}}});
        assert_eq!(default_storage_class(&[beta]).as_deref(), Some("beta"));
    }

    #[test]
    fn a_local_volumes_node_is_read_from_its_affinity() {
        let v = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}
        ]}}}});
        assert_eq!(volume_node(&v), Some("n1"));
        let two = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1", "n2"]}]}
        ]}}}});
        assert_eq!(volume_node(&two), None);
        assert_eq!(volume_node(&json!({"spec": {}})), None);
    }

    #[test]
    fn the_storage_examples_are_valid_kubernetes_objects() {
        let examples = [
            include_str!("../../../examples/pv-volume.yaml"),
            include_str!("../../../examples/pv-claim.yaml"),
            include_str!("../../../examples/pv-pod.yaml"),
            include_str!("../../../examples/storageclass-fast-slow.yaml"),
        ];
        let mut kinds = Vec::new();
        for text in examples {
            for mut obj in crate::object::parse_manifests(text).expect("parses") {
                crate::defaults::apply_defaults(&mut obj);
                if let Err(e) = crate::validation::validate(&obj) {
                    panic!("{}: {e}", object::name(&obj));
                }
                kinds.push(object::kind(&obj).to_string());
            }
        }
        assert_eq!(
            kinds,
            [
                "PersistentVolume",
                "PersistentVolumeClaim",
                "Pod",
                "StorageClass",
                "StorageClass"
            ]
        );
        let volume = crate::object::parse_manifests(examples[0]).expect("parses");
        let claim = crate::object::parse_manifests(examples[1]).expect("parses");
        assert_eq!(check_volume_satisfies_claim(&volume[0], &claim[0]), Ok(()));
        assert!(default_storage_class(&[default_storage_class_object()]).is_some());
    }

    #[test]
    fn pods_name_their_claims() {
        let pod = json!({"spec": {"volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "c1"}},
            {"name": "b", "emptyDir": {}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "c2", "readOnly": true}},
        ]}});
        assert_eq!(
            pod_claims(&pod),
            vec![
                ("a".to_string(), "c1".to_string(), false),
                ("c".to_string(), "c2".to_string(), true)
            ]
        );
    }
}

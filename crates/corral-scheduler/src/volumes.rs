//! Volumes in placement: Kubernetes' `VolumeBinding` and `VolumeRestrictions` plugins over a
//! [`VolumeState`] (the claims, volumes and classes the driver's informers hold).
//!
//! For a pod with `persistentVolumeClaim` volumes:
//!
//! - **Pre-filter** ([`VolumeState::pre_filter`], once per pod): a claim that does not exist
//!   (`persistentvolumeclaim "data" not found`) or is being deleted, and an unbound claim whose
//!   class binds immediately (`pod has unbound immediate PersistentVolumeClaims`: the PV
//!   controller binds it first), make the pod unschedulable on every node with that message.
//! - **Filter** ([`filter`], per node): a bound claim's volume must allow the node
//!   (`node(s) had volume node affinity conflict`; a missing volume is `node(s) unavailable due
//!   to one or more pvc(s) bound to non-existent pv(s)`); an unbound WaitForFirstConsumer claim
//!   needs an Available volume that fits it on this node, or a class that can provision here
//!   (its `allowedTopologies` match the node; Corral's local-path provisioner needs the node's
//!   published local-path root or the class's `nodePath`; `kubernetes.io/no-provisioner` never
//!   provisions; any other provisioner is trusted, as Kubernetes trusts external ones), else
//!   `node(s) didn't find available persistent volumes to bind`. VolumeRestrictions: a
//!   `ReadWriteOncePod` claim used by any other pod keeps the pod off every node (`node has pod
//!   using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode`); a
//!   `ReadWriteOnce` claim used by pods on one node keeps it off the others (`node(s) had no
//!   available disk`, Kubernetes' wording for a volume in use elsewhere).
//! - **After placement** ([`VolumeState::assume`]): an Available volume the pod was placed for is
//!   taken out of the choice for the rest of the batch, and [`VolumeState::claims_to_select`]
//!   names the WaitForFirstConsumer claims that need the `volume.kubernetes.io/selected-node`
//!   annotation, which the driver writes before binding the pod; the PV controller then binds
//!   the claim on that node, or the provisioner makes a volume there.

use std::collections::{BTreeMap, HashMap};

use corral_api::storage::{self, LOCAL_PATH_PROVISIONER};
use serde_json::Value;

use crate::affinity::NodeSelector;
use crate::node::NodeInfo;
use crate::pod::PodInfo;

pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const REASON_RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
pub const REASON_DISK_CONFLICT: &str = "node(s) had no available disk";

/// The provisioner name of classes whose volumes an administrator makes by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Whether a volume's `spec.nodeAffinity` allows the node (a volume without one allows every
/// node; an unreadable one allows none).
pub fn volume_fits_node(pv: &Value, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    match pv
        .pointer("/spec/nodeAffinity/required")
        .filter(|r| !r.is_null())
    {
        None => true,
        Some(required) => NodeSelector::from_json(required, "spec.nodeAffinity.required")
            .is_ok_and(|s| s.matches(node_name, labels)),
    }
}

/// Whether a class's `allowedTopologies` admit a node with these labels (none: every node).
pub fn topology_allows(class: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(terms) = class
        .get("allowedTopologies")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    else {
        return true;
    };
    terms.iter().any(|term| {
        term.get("matchLabelExpressions")
            .and_then(Value::as_array)
            .is_some_and(|exprs| {
                exprs.iter().all(|e| {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                    let values = e.get("values").and_then(Value::as_array);
                    labels
                        .get(key)
                        .is_some_and(|v| values.is_some_and(|vs| vs.iter().any(|x| x == v)))
                })
            })
    })
}

/// Whether `class` can make a volume on the node: Kubernetes' `checkVolumeProvisions`, with
/// Corral's local-path provisioner needing a directory there.
pub fn can_provision_on(class: &Value, node: &NodeInfo) -> bool {
    let provisioner = class
        .get("provisioner")
        .and_then(Value::as_str)
        .unwrap_or("");
    if provisioner.is_empty() || provisioner == NO_PROVISIONER {
        return false;
    }
    if !topology_allows(class, node.labels()) {
        return false;
    }
    if provisioner == LOCAL_PATH_PROVISIONER {
        let node_path = class
            .pointer("/parameters/nodePath")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty());
        return node_path || node.local_path_root().is_some();
    }
    true
}

/// How exclusive a claim's access is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exclusive {
    /// `ReadWriteOncePod`: one pod in the cluster.
    Pod,
    /// Only `ReadWriteOnce`: the pods of one node.
    Node,
}

/// What a pod's claims ask of a node, from [`VolumeState::pre_filter`].
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Bound claims and their volumes (`None`: the volume does not exist).
    bound: Vec<(String, Option<Value>)>,
    /// Unbound WaitForFirstConsumer claims.
    delayed: Vec<Value>,
    /// Claims with exclusive access modes.
    exclusive: Vec<(String, Exclusive)>,
}

impl PodVolumes {
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty() && self.exclusive.is_empty()
    }
}

/// The claims, volumes and classes placement reads, plus the volumes assumed for pods placed
/// but not yet bound.
#[derive(Debug, Clone, Default)]
pub struct VolumeState {
    claims: HashMap<String, Value>,
    volumes: BTreeMap<String, Value>,
    classes: HashMap<String, Value>,
    /// Available volumes chosen for a placed pod's claim: volume name → claim key.
    assumed: HashMap<String, String>,
}

impl VolumeState {
    /// From the current claims, volumes and classes. Assumptions of `previous` carry over while
    /// their volume is still unbound and their claim still waits.
    pub fn new<'a>(
        claims: impl IntoIterator<Item = &'a Value>,
        volumes: impl IntoIterator<Item = &'a Value>,
        classes: impl IntoIterator<Item = &'a Value>,
        previous: Option<&VolumeState>,
    ) -> Self {
        let mut state = VolumeState {
            claims: claims
                .into_iter()
                .map(|c| (storage::key(c), c.clone()))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|v| (corral_api::object::name(v).to_string(), v.clone()))
                .collect(),
            classes: classes
                .into_iter()
                .map(|c| (corral_api::object::name(c).to_string(), c.clone()))
                .collect(),
            assumed: HashMap::new(),
        };
        if let Some(prev) = previous {
            for (pv, claim) in &prev.assumed {
                let pv_free = state
                    .volumes
                    .get(pv)
                    .is_some_and(|v| storage::claim_ref(v).is_none());
                let claim_waits = state
                    .claims
                    .get(claim)
                    .is_some_and(|c| storage::claim_volume_name(c).is_empty());
                if pv_free && claim_waits {
                    state.assumed.insert(pv.clone(), claim.clone());
                }
            }
        }
        state
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.volumes.is_empty()
    }

    fn class_of(&self, claim: &Value) -> Option<&Value> {
        self.classes.get(storage::claim_class(claim))
    }

    fn delays_binding(&self, claim: &Value) -> bool {
        self.class_of(claim)
            .is_some_and(storage::is_wait_for_first_consumer)
    }

    /// Kubernetes' VolumeBinding pre-filter: what the pod's claims need, or the message that
    /// makes it unschedulable everywhere.
    pub fn pre_filter(&self, pod: &PodInfo) -> Result<PodVolumes, String> {
        let mut out = PodVolumes::default();
        let mut unbound_immediate = false;
        for name in pod.claim_names() {
            let key = format!("{}/{name}", pod.namespace());
            let Some(claim) = self.claims.get(&key) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if corral_api::object::deletion_timestamp(claim).is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let modes = storage::access_modes(claim);
            if modes.contains(&"ReadWriteOncePod") {
                out.exclusive.push((key.clone(), Exclusive::Pod));
            } else if modes.contains(&"ReadWriteOnce")
                && !modes.contains(&"ReadWriteMany")
                && !modes.contains(&"ReadOnlyMany")
            {
                out.exclusive.push((key.clone(), Exclusive::Node));
            }
            let volume_name = storage::claim_volume_name(claim);
            if !volume_name.is_empty() {
                out.bound
                    .push((key, self.volumes.get(volume_name).cloned()));
            } else if self.delays_binding(claim) {
                out.delayed.push(claim.clone());
            } else {
                unbound_immediate = true;
            }
        }
        if unbound_immediate {
            return Err(REASON_UNBOUND_IMMEDIATE.to_string());
        }
        Ok(out)
    }

    /// The Available volume that would serve `claim` on `node`, not counting volumes assumed for
    /// other claims or in `taken`.
    fn match_on<'a>(&'a self, claim: &Value, node: &NodeInfo, taken: &[&str]) -> Option<&'a Value> {
        let claim_key = storage::key(claim);
        let candidates: Vec<&Value> = self
            .volumes
            .iter()
            .filter(|(name, _)| {
                !taken.contains(&name.as_str())
                    && self.assumed.get(*name).is_none_or(|c| *c == claim_key)
            })
            .map(|(_, v)| v)
            .collect();
        let fits = |pv: &Value| volume_fits_node(pv, node.name(), node.labels());
        storage::find_matching_volume(claim, &candidates, Some(&fits), true)
            .ok()
            .flatten()
    }

    /// Records the volumes the pod's delayed claims take on `node` (so the next pod of the batch
    /// does not count on them).
    pub fn assume(&mut self, pod: &PodInfo, node: &NodeInfo) {
        let Ok(vols) = self.pre_filter(pod) else {
            return;
        };
        let mut taken: Vec<String> = Vec::new();
        for claim in &vols.delayed {
            let taken_refs: Vec<&str> = taken.iter().map(String::as_str).collect();
            if let Some(pv) = self.match_on(claim, node, &taken_refs) {
                taken.push(corral_api::object::name(pv).to_string());
                let name = corral_api::object::name(pv).to_string();
                self.assumed.insert(name, storage::key(claim));
            }
        }
    }

    /// The pod's WaitForFirstConsumer claims that must be annotated with the chosen node
    /// (`namespace`, `name`): unbound and not already annotated with that node.
    pub fn claims_to_select(&self, pod: &PodInfo, node: &str) -> Vec<(String, String)> {
        pod.claim_names()
            .iter()
            .filter_map(|name| {
                let claim = self.claims.get(&format!("{}/{name}", pod.namespace()))?;
                let wanted = storage::claim_volume_name(claim).is_empty()
                    && self.delays_binding(claim)
                    && storage::annotation(claim, storage::ANN_SELECTED_NODE) != Some(node);
                wanted.then(|| (pod.namespace().to_string(), name.clone()))
            })
            .collect()
    }
}

/// Kubernetes' VolumeRestrictions and VolumeBinding filters for one node. `users(claim)` are the
/// indexes of the nodes where other pods use the claim; `node_index` is this node's.
pub fn filter(
    state: &VolumeState,
    vols: &PodVolumes,
    node_index: usize,
    node: &NodeInfo,
    users: &dyn Fn(&str) -> Vec<usize>,
) -> Result<(), &'static str> {
    for (claim, exclusive) in &vols.exclusive {
        let used_on = users(claim);
        match exclusive {
            Exclusive::Pod if !used_on.is_empty() => return Err(REASON_RWOP_CONFLICT),
            Exclusive::Node if used_on.iter().any(|&i| i != node_index) => {
                return Err(REASON_DISK_CONFLICT);
            }
            _ => {}
        }
    }
    for (_, pv) in &vols.bound {
        match pv {
            None => return Err(REASON_PV_NOT_EXIST),
            Some(pv) if !volume_fits_node(pv, node.name(), node.labels()) => {
                return Err(REASON_NODE_CONFLICT);
            }
            Some(_) => {}
        }
    }
    let mut taken: Vec<&str> = Vec::new();
    for claim in &vols.delayed {
        match state.match_on(claim, node, &taken) {
            Some(pv) => taken.push(corral_api::object::name(pv)),
            None => {
                let provisions = state
                    .class_of(claim)
                    .is_some_and(|class| can_provision_on(class, node));
                if !provisions {
                    return Err(REASON_BIND_CONFLICT);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{node, pod, set};

    fn claim(name: &str, class: &str, modes: &[&str]) -> Value {
        json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": modes, "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        })
    }

    fn bound(claim: Value, pv: &str) -> Value {
        let c = set(claim, "/spec/volumeName", json!(pv));
        set(c, "/status/phase", json!("Bound"))
    }

    fn volume(name: &str, class: &str, node: Option<&str>) -> Value {
        let mut v = json!({
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": class, "hostPath": {"path": format!("/data/{name}")}},
            "status": {"phase": "Available"},
        });
        if let Some(n) = node {
            v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
        }
        v
    }

    fn class(name: &str, provisioner: &str, wffc: bool) -> Value {
        json!({"kind": "StorageClass", "metadata": {"name": name}, "provisioner": provisioner,
               "volumeBindingMode": if wffc { "WaitForFirstConsumer" } else { "Immediate" }})
    }

    fn named_node(name: &str, root: bool) -> NodeInfo {
        let mut n = set(
            node(name, "4", "8Gi", "110"),
            "/metadata/labels",
            json!({"kubernetes.io/hostname": name}),
        );
        if root {
            n = set(
                n,
                "/metadata/annotations",
                json!({(storage::LOCAL_PATH_ROOT_ANNOTATION): format!("/var/lib/{name}")}),
            );
        }
        NodeInfo::from_node(&n).0
    }

    fn pod_with_claims(claims: &[&str]) -> PodInfo {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        PodInfo::from_pod(&set(pod("p"), "/spec/volumes", json!(volumes))).expect("readable")
    }

    fn state(claims: &[Value], volumes: &[Value], classes: &[Value]) -> VolumeState {
        VolumeState::new(claims, volumes, classes, None)
    }

    fn check(state: &VolumeState, pod: &PodInfo, node: &NodeInfo) -> Result<(), String> {
        let vols = state.pre_filter(pod)?;
        filter(state, &vols, 0, node, &|_| Vec::new()).map_err(str::to_string)
    }

    #[test]
    fn missing_deleted_and_unbound_immediate_claims_fail_before_any_node() {
        let s = state(
            &[
                claim("immediate", "", &["ReadWriteOnce"]),
                set(
                    claim("going", "", &["ReadWriteOnce"]),
                    "/metadata/deletionTimestamp",
                    json!("2026-01-01T00:00:00Z"),
                ),
            ],
            &[],
            &[],
        );
        let err = |claims: &[&str]| s.pre_filter(&pod_with_claims(claims)).expect_err("fails");
        assert_eq!(err(&["nope"]), "persistentvolumeclaim \"nope\" not found");
        assert_eq!(
            err(&["going"]),
            "persistentvolumeclaim \"going\" is being deleted"
        );
        assert_eq!(err(&["immediate"]), REASON_UNBOUND_IMMEDIATE);
        assert!(s.pre_filter(&pod_with_claims(&[])).expect("ok").is_empty());
    }

    #[test]
    fn a_bound_volume_keeps_the_pod_on_its_node() {
        let s = state(
            &[bound(claim("data", "", &["ReadWriteOnce"]), "pv1")],
            &[volume("pv1", "", Some("n1"))],
            &[],
        );
        let p = pod_with_claims(&["data"]);
        assert_eq!(check(&s, &p, &named_node("n1", false)), Ok(()));
        assert_eq!(
            check(&s, &p, &named_node("n2", false)),
            Err(REASON_NODE_CONFLICT.to_string())
        );
        let gone = state(
            &[bound(claim("data", "", &["ReadWriteOnce"]), "pv1")],
            &[],
            &[],
        );
        assert_eq!(
            check(&gone, &p, &named_node("n1", false)),
            Err(REASON_PV_NOT_EXIST.to_string())
        );
    }

    #[test]
    fn a_delayed_claim_needs_a_volume_or_a_provisioner_on_the_node() {
        let local = class("local", NO_PROVISIONER, true);
        let s = state(
            &[claim("data", "local", &["ReadWriteOnce"])],
            &[volume("pv1", "local", Some("n1"))],
            &[local],
        );
        let p = pod_with_claims(&["data"]);
        assert_eq!(check(&s, &p, &named_node("n1", false)), Ok(()));
        assert_eq!(
            check(&s, &p, &named_node("n2", false)),
            Err(REASON_BIND_CONFLICT.to_string())
        );

        let lp = class("local-path", LOCAL_PATH_PROVISIONER, true);
        let s = state(
            &[claim("data", "local-path", &["ReadWriteOnce"])],
            &[],
            std::slice::from_ref(&lp),
        );
        assert_eq!(check(&s, &p, &named_node("n1", true)), Ok(()));
        assert_eq!(
            check(&s, &p, &named_node("n2", false)),
            Err(REASON_BIND_CONFLICT.to_string()),
            "no local-path root published"
        );
        let with_path = set(lp, "/parameters", json!({"nodePath": "/mnt/fast"}));
        let s = state(
            &[claim("data", "local-path", &["ReadWriteOnce"])],
            &[],
            &[with_path],
        );
        assert_eq!(check(&s, &p, &named_node("n2", false)), Ok(()));

        let zoned = set(
            class("zoned", "example.com/csi", true),
            "/allowedTopologies",
            json!([{"matchLabelExpressions": [{"key": "kubernetes.io/hostname", "values": ["n2"]}]}]),
        );
        let s = state(&[claim("data", "zoned", &["ReadWriteOnce"])], &[], &[zoned]);
        assert_eq!(
            check(&s, &p, &named_node("n1", false)),
            Err(REASON_BIND_CONFLICT.to_string())
        );
        assert_eq!(check(&s, &p, &named_node("n2", false)), Ok(()));
    }

    #[test]
    fn exclusive_claims_keep_other_pods_away() {
        let s = state(
            &[
                bound(claim("rwo", "", &["ReadWriteOnce"]), "pv1"),
                bound(claim("rwop", "", &["ReadWriteOncePod"]), "pv2"),
                bound(claim("rwx", "", &["ReadWriteMany"]), "pv3"),
            ],
            &[
                volume("pv1", "", None),
                volume("pv2", "", None),
                volume("pv3", "", None),
            ],
            &[],
        );
        let n = named_node("n2", false);
        let used_on_0 = |_: &str| vec![0usize];
        let run = |claims: &[&str], idx: usize| {
            let vols = s.pre_filter(&pod_with_claims(claims)).expect("ok");
            filter(&s, &vols, idx, &n, &used_on_0)
        };
        assert_eq!(run(&["rwo"], 0), Ok(()), "same node");
        assert_eq!(run(&["rwo"], 1), Err(REASON_DISK_CONFLICT));
        assert_eq!(run(&["rwop"], 0), Err(REASON_RWOP_CONFLICT));
        assert_eq!(run(&["rwx"], 1), Ok(()));
    }

    #[test]
    fn an_assumed_volume_is_not_counted_on_twice_and_claims_get_the_node() {
        let local = class("local", NO_PROVISIONER, true);
        let mut s = state(
            &[
                claim("a", "local", &["ReadWriteOnce"]),
                claim("b", "local", &["ReadWriteOnce"]),
            ],
            &[volume("pv1", "local", Some("n1"))],
            &[local],
        );
        let n1 = named_node("n1", false);
        let pa = pod_with_claims(&["a"]);
        assert_eq!(check(&s, &pa, &n1), Ok(()));
        assert_eq!(
            s.claims_to_select(&pa, "n1"),
            vec![("default".to_string(), "a".to_string())]
        );
        s.assume(&pa, &n1);
        let pb = pod_with_claims(&["b"]);
        assert_eq!(check(&s, &pb, &n1), Err(REASON_BIND_CONFLICT.to_string()));
        // The assumption survives a rebuild while the volume is still free.
        let rebuilt = VolumeState::new(
            s.claims.values(),
            s.volumes.values(),
            s.classes.values(),
            Some(&s),
        );
        assert_eq!(
            check(&rebuilt, &pb, &n1),
            Err(REASON_BIND_CONFLICT.to_string())
        );
        assert_eq!(check(&rebuilt, &pa, &n1), Ok(()));
    }
}

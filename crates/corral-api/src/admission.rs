//! What Kubernetes' admission plugins add to a pod when it is created (never on update):
//!
//! - `DefaultTolerationSeconds`: tolerations of `node.kubernetes.io/not-ready:NoExecute` and
//!   `node.kubernetes.io/unreachable:NoExecute` for 300 seconds (the API server's
//!   `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`, see
//!   [`AdmissionConfig`]), unless the pod has its own; so a pod on a node that stops reporting is
//!   evicted after five minutes, and its owner replaces it.
//! - The pod strategy's create preparation: the status a client sent is dropped and the pod
//!   starts as `phase: Pending`.
//! - `ServiceAccount`: `serviceAccountName: default`, and, unless `automountServiceAccountToken`
//!   is false, a projected volume `kube-api-access-<random>` (token, `ca.crt`, namespace) mounted
//!   read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in every container.
//!
//! And to PersistentVolumes and PersistentVolumeClaims ([`admit_new_storage_object`]):
//!
//! - The strategies' create preparation: the status a client sent is dropped; the object starts
//!   `Pending` (the PV controller makes a volume `Available`).
//! - `StorageObjectInUseProtection`: the finalizer `kubernetes.io/pvc-protection` on every claim
//!   and `kubernetes.io/pv-protection` on every volume, so a claim a pod uses and a bound volume
//!   are not removed under it (the PV controller removes the finalizers once that is safe).
//! - `DefaultStorageClass` ([`set_default_storage_class`]): a claim naming no class (absent, not
//!   `""`) gets the default class, when there is one.

use serde_json::{Map, Value, json};

use crate::meta;
use crate::storage;

/// Seconds a pod tolerates a not-ready or unreachable node by default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Where the service-account volume is mounted in every container.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const NO_EXECUTE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Settings of pod admission (the API server's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// `tolerationSeconds` of the default `node.kubernetes.io/not-ready:NoExecute` toleration.
    pub not_ready_toleration_seconds: i64,
    /// `tolerationSeconds` of the default `node.kubernetes.io/unreachable:NoExecute` toleration.
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            not_ready_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            unreachable_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Applies the create-time admission of a Pod (anything else is left alone), with the default
/// settings.
pub fn admit_new_pod(obj: &mut Value) {
    admit_new_pod_with(obj, &AdmissionConfig::default());
}

/// Applies the create-time admission of a Pod with `config`.
pub fn admit_new_pod_with(obj: &mut Value, config: &AdmissionConfig) {
    if obj.get("kind").and_then(Value::as_str) != Some("Pod") {
        return;
    }
    if let Some(root) = obj.as_object_mut() {
        root.insert("status".into(), json!({"phase": "Pending"}));
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default_tolerations(spec, config);
    service_account(spec);
}

/// Create-time admission of a PersistentVolume or PersistentVolumeClaim (anything else is left
/// alone): status reset to `Pending`, the protection finalizer added.
pub fn admit_new_storage_object(obj: &mut Value) {
    let finalizer = match obj.get("kind").and_then(Value::as_str) {
        Some("PersistentVolume") => storage::PV_PROTECTION_FINALIZER,
        Some("PersistentVolumeClaim") => storage::PVC_PROTECTION_FINALIZER,
        _ => return,
    };
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    root.insert("status".into(), json!({"phase": "Pending"}));
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return; // left for validation to report
    };
    let finalizers = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    match finalizers {
        Value::Array(list) if !list.iter().any(|f| f == finalizer) => {
            list.push(json!(finalizer));
        }
        Value::Null => *finalizers = json!([finalizer]),
        _ => {} // present already, or left for validation to report
    }
}

/// The DefaultStorageClass admission: a claim whose `spec.storageClassName` is absent or null
/// gets `default_class` (from [`storage::default_storage_class`]); with no default it stays
/// unset. A claim that names a class, even `""`, is left alone.
pub fn set_default_storage_class(claim: &mut Value, default_class: Option<&str>) {
    if claim.get("kind").and_then(Value::as_str) != Some("PersistentVolumeClaim")
        || !storage::claim_class_unset(claim)
    {
        return;
    }
    let (Some(class), Some(spec)) = (
        default_class,
        claim.get_mut("spec").and_then(Value::as_object_mut),
    ) else {
        return;
    };
    spec.insert("storageClassName".into(), json!(class));
}

fn default_tolerations(spec: &mut Map<String, Value>, config: &AdmissionConfig) {
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    let seconds = [
        config.not_ready_toleration_seconds,
        config.unreachable_toleration_seconds,
    ];
    for (key, seconds) in NO_EXECUTE_TAINTS.into_iter().zip(seconds) {
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (tkey == key || (tkey.is_empty() && op == "Exists"))
        });
        if !covered {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

fn service_account(spec: &mut Map<String, Value>) {
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), Value::String(name.clone()));
    spec.insert("serviceAccount".into(), Value::String(name));
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let already_mounted = ["initContainers", "containers"].iter().any(|key| {
        containers(spec, key).any(|c| {
            c.get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m.get("mountPath").and_then(Value::as_str)
                            == Some(SERVICE_ACCOUNT_MOUNT_PATH)
                    })
                })
        })
    });
    if already_mounted {
        return;
    }
    let volume_name = meta::generate_name("kube-api-access-");
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(volumes) = volumes.as_array_mut() else {
        return;
    };
    volumes.push(json!({
        "name": volume_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}], "optional": true}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }));
    for key in ["initContainers", "containers"] {
        let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(mounts) = mounts.as_array_mut() {
                mounts.push(json!({
                    "name": volume_name,
                    "mountPath": SERVICE_ACCOUNT_MOUNT_PATH,
                    "readOnly": true,
                }));
            }
        }
    }
}

fn containers<'a>(
    spec: &'a Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    spec.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn adds_the_two_no_execute_tolerations_once() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        admit_new_pod(&mut p);
        assert_eq!(p["status"], json!({"phase": "Pending"}));
        let t = p["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        assert_eq!(t[1]["effect"], "NoExecute");
    }

    #[test]
    fn the_default_toleration_seconds_come_from_the_configuration() {
        let mut p = pod(json!({"containers": []}));
        admit_new_pod_with(
            &mut p,
            &AdmissionConfig {
                not_ready_toleration_seconds: 30,
                unreachable_toleration_seconds: 5,
            },
        );
        let t = p["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[0]["tolerationSeconds"], 30);
        assert_eq!(t[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(t[1]["tolerationSeconds"], 5);
    }

    #[test]
    fn keeps_a_pods_own_toleration() {
        let mut p = pod(json!({
            "containers": [{"name": "a", "image": "busybox"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}],
        }));
        admit_new_pod(&mut p);
        let t = p["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 2);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
    }

    #[test]
    fn an_exists_everything_toleration_covers_both() {
        let mut p = pod(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        admit_new_pod(&mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn mounts_the_service_account_volume_in_every_container() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
        }));
        admit_new_pod(&mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let vol = &p["spec"]["volumes"][0];
        let name = vol["name"].as_str().expect("name");
        assert!(name.starts_with("kube-api-access-"), "{name}");
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        for (key, i) in [("initContainers", 0), ("containers", 0), ("containers", 1)] {
            let m = &p["spec"][key][i]["volumeMounts"][0];
            assert_eq!(m["name"], name);
            assert_eq!(m["mountPath"], SERVICE_ACCOUNT_MOUNT_PATH);
            assert_eq!(m["readOnly"], true);
        }
    }

    #[test]
    fn storage_objects_start_pending_with_their_protection_finalizer() {
        let mut claim = json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c",
            "finalizers": ["example.com/keep"]}, "spec": {}, "status": {"phase": "Bound"}});
        admit_new_storage_object(&mut claim);
        assert_eq!(claim["status"], json!({"phase": "Pending"}));
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["example.com/keep", "kubernetes.io/pvc-protection"])
        );
        admit_new_storage_object(&mut claim);
        assert_eq!(
            claim["metadata"]["finalizers"].as_array().map(Vec::len),
            Some(2)
        );
        let mut pv = json!({"kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": {}});
        admit_new_storage_object(&mut pv);
        assert_eq!(
            pv["metadata"]["finalizers"],
            json!(["kubernetes.io/pv-protection"])
        );
        let mut cm = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        admit_new_storage_object(&mut cm);
        assert!(cm["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn only_claims_without_a_class_get_the_default() {
        let mut unset = json!({"kind": "PersistentVolumeClaim", "spec": {}});
        set_default_storage_class(&mut unset, Some("local-path"));
        assert_eq!(unset["spec"]["storageClassName"], "local-path");
        let mut null = json!({"kind": "PersistentVolumeClaim", "spec": {"storageClassName": null}});
        set_default_storage_class(&mut null, Some("local-path"));
        assert_eq!(null["spec"]["storageClassName"], "local-path");
        let mut empty = json!({"kind": "PersistentVolumeClaim", "spec": {"storageClassName": ""}});
        set_default_storage_class(&mut empty, Some("local-path"));
        assert_eq!(empty["spec"]["storageClassName"], "");
        let mut named =
            json!({"kind": "PersistentVolumeClaim", "spec": {"storageClassName": "fast"}});
        set_default_storage_class(&mut named, Some("local-path"));
        assert_eq!(named["spec"]["storageClassName"], "fast");
        let mut no_default = json!({"kind": "PersistentVolumeClaim", "spec": {}});
        set_default_storage_class(&mut no_default, None);
        assert!(no_default["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn automount_false_mounts_nothing() {
        let mut p = pod(json!({
            "automountServiceAccountToken": false,
            "serviceAccountName": "builder",
            "containers": [{"name": "a", "image": "busybox"}],
        }));
        admit_new_pod(&mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert!(p["spec"].get("volumes").is_none());
        assert!(p["spec"]["containers"][0].get("volumeMounts").is_none());
    }
}

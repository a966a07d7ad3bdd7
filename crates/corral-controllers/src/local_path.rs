//! Corral's built-in local-path provisioner (`corral.io/local-path`), run by the Raft leader:
//! a volume is a directory on one node, as rancher's local-path-provisioner makes them.
//!
//! It works like an external provisioner (sig-storage's `external-provisioner` library): the PV
//! controller annotates a claim that needs a volume with
//! `volume.kubernetes.io/storage-provisioner: corral.io/local-path`; this controller then
//! ([`plan_volume`], pure) picks the node, makes the PersistentVolume pre-bound to the claim
//! (`claimRef` with the claim's uid), and the PV controller binds the two.
//!
//! - **The node.** For a WaitForFirstConsumer class, the node the scheduler chose
//!   (`volume.kubernetes.io/selected-node` on the claim); nothing happens before. For an
//!   Immediate class, a Ready node the class's `allowedTopologies` admit, with the fewest
//!   local-path volumes (ties: the first name).
//! - **The directory**: `<root>/<volume>_<namespace>_<claim>`, where the root is the class's
//!   `nodePath` parameter or the directory the node's agent publishes as its
//!   `corral.io/local-path-root` annotation (`<agent data dir>/local-path` by default). The agent
//!   creates it, mode 0777, when a pod first mounts the volume.
//! - **The volume** `pvc-<claim uid>`: capacity = the claim's request, the claim's access modes and
//!   volume mode, the class's reclaim policy and mount options, `pv.kubernetes.io/provisioned-by:
//!   corral.io/local-path`, the source `hostPath` (type `DirectoryOrCreate`) or `local` (class
//!   parameter `volumeType`), and `nodeAffinity` requiring `kubernetes.io/hostname` = the node.
//!   Events on the claim: `Provisioning`, then `ProvisioningSucceeded` (or `ProvisioningFailed`
//!   with why: an unknown parameter, an access mode a single node cannot give, no node).
//! - **Deletion.** A volume it provisioned that is `Released` with reclaim policy `Delete` has its
//!   directory removed by a helper pod on its node ([`crate::volume_helper`]), then its object
//!   deleted. A helper that fails makes the volume `Failed` (`VolumeFailedDelete`).
//!
//! Class parameters: `nodePath` (an absolute directory on every node, instead of the node's
//! published root) and `volumeType` (`hostPath`, the default, or `local`). Any other parameter
//! fails provisioning, naming it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::storage::{
    self, ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, HOSTNAME_LABEL,
    LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT_ANNOTATION, VOLUME_FAILED, VOLUME_RELEASED,
};
use corral_api::{ApiError, object};
use corral_client::events::EventRecorder;
use corral_client::{Change, Client, Informer};
use corral_scheduler::volumes::topology_allows;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::persistentvolume::{Error, Key, delete_volume, volume_status};
use crate::runtime::{Action, ControllerOptions, Source, run_controller};
use crate::volume_helper::{self, HELPER_LABEL, Op, Progress};

/// The events' source.
pub const COMPONENT: &str = "corral.io/local-path";

pub const EVENT_PROVISIONING: &str = "Provisioning";
pub const EVENT_PROVISIONING_SUCCEEDED: &str = "ProvisioningSucceeded";
pub const EVENT_PROVISIONING_FAILED: &str = "ProvisioningFailed";
pub const EVENT_VOLUME_FAILED_DELETE: &str = "VolumeFailedDelete";

/// The class parameters the provisioner reads.
pub const PARAM_NODE_PATH: &str = "nodePath";
pub const PARAM_VOLUME_TYPE: &str = "volumeType";

/// How the provisioner runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPathOptions {
    pub workers: usize,
    /// How often every claim and volume is looked at again.
    pub resync: Duration,
    /// The image of the helper pods that remove volume directories.
    pub helper_image: String,
}

impl Default for LocalPathOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            resync: Duration::from_secs(30),
            helper_image: volume_helper::DEFAULT_HELPER_IMAGE.to_string(),
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// The name of the volume provisioned for a claim: `pvc-<claim uid>`, as Kubernetes names them.
pub fn volume_name(claim: &Value) -> String {
    format!("pvc-{}", object::uid(claim))
}

/// Whether the claim is this provisioner's to provision now (the external-provisioner
/// library's `shouldProvision`): unbound, not being deleted, annotated for this provisioner, of
/// a class of this provisioner, and for a WaitForFirstConsumer class with a selected node.
pub fn should_provision(claim: &Value, class: Option<&Value>) -> bool {
    let Some(class) = class else {
        return false;
    };
    storage::claim_volume_name(claim).is_empty()
        && object::deletion_timestamp(claim).is_none()
        && storage::annotation(claim, ANN_STORAGE_PROVISIONER) == Some(LOCAL_PATH_PROVISIONER)
        && str_at(class, "/provisioner") == LOCAL_PATH_PROVISIONER
        && (!storage::is_wait_for_first_consumer(class)
            || storage::has_annotation(claim, ANN_SELECTED_NODE))
}

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The volume to create for a claim of `class`, or why there can be none. `nodes` are all
/// Nodes; `volumes` all PersistentVolumes (to spread Immediate volumes over the nodes).
pub fn plan_volume(
    claim: &Value,
    class: &Value,
    nodes: &[&Value],
    volumes: &[&Value],
) -> Result<Value, String> {
    let params = class
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for key in params.keys() {
        if key != PARAM_NODE_PATH && key != PARAM_VOLUME_TYPE {
            return Err(format!(
                "unknown parameter \"{key}\" (the parameters of {LOCAL_PATH_PROVISIONER} are {PARAM_NODE_PATH} and {PARAM_VOLUME_TYPE})"
            ));
        }
    }
    let volume_type = params
        .get(PARAM_VOLUME_TYPE)
        .and_then(Value::as_str)
        .unwrap_or("hostPath");
    if volume_type != "hostPath" && volume_type != "local" {
        return Err(format!(
            "parameter {PARAM_VOLUME_TYPE} \"{volume_type}\" is not one of hostPath, local"
        ));
    }
    let node_path = params
        .get(PARAM_NODE_PATH)
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    if let Some(p) = node_path
        && (!p.starts_with('/') || p.split('/').any(|part| part == ".."))
    {
        return Err(format!(
            "parameter {PARAM_NODE_PATH} \"{p}\" must be an absolute path without '..'"
        ));
    }
    let modes = storage::access_modes(claim);
    if let Some(bad) = modes
        .iter()
        .find(|m| **m != "ReadWriteOnce" && **m != "ReadWriteOncePod")
    {
        return Err(format!(
            "access mode {bad} is not supported: a local-path volume is on one node (ReadWriteOnce or ReadWriteOncePod)"
        ));
    }
    let request = storage::requested_storage_text(claim)
        .ok_or_else(|| "the claim has no storage request".to_string())?;

    let node = match storage::annotation(claim, ANN_SELECTED_NODE).filter(|n| !n.is_empty()) {
        Some(selected) => nodes
            .iter()
            .copied()
            .find(|n| object::name(n) == selected)
            .ok_or_else(|| format!("the selected node \"{selected}\" does not exist"))?,
        None => pick_node(class, nodes, volumes, node_path.is_some()).ok_or_else(|| {
            "no Ready node can hold the volume (none publishes a local-path root, or the class's allowedTopologies admit none)".to_string()
        })?,
    };
    let root = match node_path {
        Some(p) => p.to_string(),
        None => storage::annotation(node, LOCAL_PATH_ROOT_ANNOTATION)
            .filter(|r| r.starts_with('/'))
            .ok_or_else(|| {
                format!(
                    "node \"{}\" publishes no {LOCAL_PATH_ROOT_ANNOTATION} (is its agent running?)",
                    object::name(node)
                )
            })?
            .to_string(),
    };
    let name = volume_name(claim);
    let path = format!(
        "{}/{name}_{}_{}",
        root.trim_end_matches('/'),
        object::namespace(claim),
        object::name(claim)
    );
    let hostname = object::labels(node)
        .get(HOSTNAME_LABEL)
        .cloned()
        .unwrap_or_else(|| object::name(node).to_string());
    let source = if volume_type == "local" {
        json!({"path": path})
    } else {
        json!({"path": path, "type": "DirectoryOrCreate"})
    };
    let mut spec = json!({
        "capacity": {"storage": request},
        "accessModes": modes,
        "volumeMode": storage::volume_mode(claim),
        "persistentVolumeReclaimPolicy": match str_at(class, "/reclaimPolicy") {
            "" => "Delete",
            p => p,
        },
        "storageClassName": object::name(class),
        "claimRef": storage::claim_reference(claim),
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}
        ]}]}},
    });
    spec[volume_type] = source;
    if let Some(options) = class.get("mountOptions").filter(|o| o.is_array()) {
        spec["mountOptions"] = options.clone();
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER},
        },
        "spec": spec,
    }))
}

/// For an Immediate class: the Ready node (admitted by the class's `allowedTopologies`, and
/// publishing a local-path root unless the class names its own `nodePath`) holding the fewest
/// local-path volumes; ties go to the first name.
fn pick_node<'a>(
    class: &Value,
    nodes: &[&'a Value],
    volumes: &[&Value],
    has_node_path: bool,
) -> Option<&'a Value> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for pv in volumes {
        if storage::annotation(pv, ANN_PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER)
            && let Some(n) = storage::volume_node(pv)
        {
            *counts.entry(n).or_default() += 1;
        }
    }
    let mut candidates: Vec<&Value> = nodes
        .iter()
        .copied()
        .filter(|n| {
            node_ready(n)
                && topology_allows(class, &object::labels(n))
                && (has_node_path || storage::has_annotation(n, LOCAL_PATH_ROOT_ANNOTATION))
        })
        .collect();
    candidates.sort_by_key(|n| {
        (
            counts.get(object::name(n)).copied().unwrap_or(0),
            object::name(n).to_string(),
        )
    });
    candidates.first().copied()
}

/// Whether a volume is this provisioner's to delete now (the library's `shouldDelete`).
pub fn should_delete(pv: &Value) -> bool {
    storage::annotation(pv, ANN_PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER)
        && storage::phase(pv) == VOLUME_RELEASED
        && storage::reclaim_policy(pv) == "Delete"
        && object::deletion_timestamp(pv).is_none()
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the provisioner until `cancel` fires.
pub async fn run(client: Client, opts: LocalPathOptions, cancel: CancellationToken) {
    let claims = Informer::builder(client.clone(), "PersistentVolumeClaim").start(cancel.clone());
    let volumes = Informer::builder(client.clone(), "PersistentVolume").start(cancel.clone());
    let classes = Informer::builder(client.clone(), "StorageClass").start(cancel.clone());
    let nodes = Informer::builder(client.clone(), "Node").start(cancel.clone());
    let helpers = Informer::builder(client.clone(), "Pod")
        .namespace(volume_helper::HELPER_NAMESPACE)
        .label_selector(HELPER_LABEL)
        .start(cancel.clone());
    let ctx = Arc::new(Ctx {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        claims: claims.clone(),
        volumes: volumes.clone(),
        classes: classes.clone(),
        nodes: nodes.clone(),
        helpers: helpers.clone(),
        helper_image: opts.helper_image.clone(),
    });
    let sources = vec![
        Source::informer(&claims, |change: &Change| match change {
            Change::Added(c) | Change::Modified { new: c, .. } => {
                vec![Key::Claim(storage::key(c))]
            }
            _ => Vec::new(),
        }),
        Source::informer(&volumes, |change: &Change| match change {
            Change::Added(v) | Change::Modified { new: v, .. } => {
                vec![Key::Volume(object::name(v).to_string())]
            }
            _ => Vec::new(),
        }),
        Source::informer(&classes, |_: &Change| Vec::new()),
        Source::informer(&nodes, |_: &Change| Vec::new()),
        Source::informer(&helpers, |change: &Change| match change {
            Change::Added(p) | Change::Modified { new: p, .. } | Change::Deleted(p) => {
                volume_helper::volume_of(p)
                    .map(|v| vec![Key::Volume(v.to_string())])
                    .unwrap_or_default()
            }
            Change::Relisted => Vec::new(),
        }),
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
    let opts = ControllerOptions::new("local-path-provisioner", opts.workers, opts.resync);
    run_controller(sources, all_keys, reconcile, opts, cancel).await;
}

struct Ctx {
    client: Client,
    claims: Informer,
    volumes: Informer,
    classes: Informer,
    nodes: Informer,
    helpers: Informer,
    events: EventRecorder,
    helper_image: String,
}

fn api(what: String) -> impl FnOnce(ApiError) -> Error {
    move |source| Error::Api {
        what,
        source: Box::new(source),
    }
}

impl Ctx {
    async fn sync(&self, key: &Key) -> Result<Action, Error> {
        match key {
            Key::Claim(k) => {
                let Some((ns, name)) = k.split_once('/') else {
                    return Ok(Action::await_change());
                };
                self.provision(ns, name).await
            }
            Key::Volume(name) => self.delete(name).await,
        }
    }

    async fn provision(&self, ns: &str, name: &str) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(ns, name) else {
            return Ok(Action::await_change());
        };
        let class = self.classes.get("", storage::claim_class(&claim));
        if !should_provision(&claim, class.as_deref()) {
            return Ok(Action::await_change());
        }
        let Some(class) = class else {
            return Ok(Action::await_change());
        };
        let pv_name = volume_name(&claim);
        if self.volumes.get("", &pv_name).is_some() {
            // Made already; the PV controller binds it.
            return Ok(Action::await_change());
        }
        let nodes = self.nodes.list();
        let node_refs: Vec<&Value> = nodes.iter().map(|n| &**n).collect();
        let volumes = self.volumes.list();
        let volume_refs: Vec<&Value> = volumes.iter().map(|v| &**v).collect();
        let pv = match plan_volume(&claim, &class, &node_refs, &volume_refs) {
            Ok(pv) => pv,
            Err(why) => {
                self.events.event(
                    &claim,
                    "Warning",
                    EVENT_PROVISIONING_FAILED,
                    format!(
                        "failed to provision volume with StorageClass \"{}\": {why}",
                        object::name(&class)
                    ),
                );
                // Nodes come and go: try again a little later.
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
        };
        self.events.event(
            &claim,
            "Normal",
            EVENT_PROVISIONING,
            format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        );
        match self.client.create(&pv).await {
            Ok(_) => {
                self.events.event(
                    &claim,
                    "Normal",
                    EVENT_PROVISIONING_SUCCEEDED,
                    format!("Successfully provisioned volume {pv_name}"),
                );
                Ok(Action::await_change())
            }
            Err(ApiError::AlreadyExists { .. }) => Ok(Action::await_change()),
            Err(e) => {
                self.events.event(
                    &claim,
                    "Warning",
                    EVENT_PROVISIONING_FAILED,
                    format!(
                        "failed to provision volume with StorageClass \"{}\": {e}",
                        object::name(&class)
                    ),
                );
                Err(api(format!("claim {ns}/{name}: creating volume {pv_name}"))(e))
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<Action, Error> {
        let Some(pv) = self.volumes.get("", name) else {
            return Ok(Action::await_change());
        };
        if !should_delete(&pv) {
            return Ok(Action::await_change());
        }
        let progress = volume_helper::drive(
            &self.client,
            &self.helpers,
            &pv,
            Op::Delete,
            &self.helper_image,
        )
        .await
        .map_err(api(format!("volume {name}: the delete helper pod")))?;
        match progress {
            Progress::Started(_) | Progress::Running => Ok(Action::await_change()),
            Progress::Done => {
                delete_volume(&self.client, &pv).await?;
                Ok(Action::await_change())
            }
            Progress::Failed(why) => {
                self.events
                    .event(&pv, "Warning", EVENT_VOLUME_FAILED_DELETE, why.clone());
                let mut next = (*pv).clone();
                next["status"] = volume_status(
                    &pv,
                    VOLUME_FAILED,
                    Some(&why),
                    &corral_api::meta::now_rfc3339(),
                );
                self.client
                    .update_status(&next)
                    .await
                    .map_err(api(format!("volume {name}: status Failed")))?;
                Ok(Action::await_change())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A Node, Ready or not, publishing a local-path root or not.
    fn node(name: &str, ready: bool, root: Option<&str>, labels: BTreeMap<&str, &str>) -> Value {
        let mut n = json!({
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(r) = root {
            n["metadata"]["annotations"] = json!({LOCAL_PATH_ROOT_ANNOTATION: r});
        }
        n
    }

    fn claim(annotations: Value) -> Value {
        json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "www", "namespace": "web", "uid": "1234", "resourceVersion": "9",
                         "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}},
        })
    }

    fn class(wffc: bool, params: Value) -> Value {
        json!({"kind": "StorageClass", "metadata": {"name": "local-path"},
               "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
               "volumeBindingMode": if wffc { "WaitForFirstConsumer" } else { "Immediate" },
               "parameters": params})
    }

    fn annotated(node: Option<&str>) -> Value {
        let mut a = json!({ANN_STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER});
        if let Some(n) = node {
            a[ANN_SELECTED_NODE] = json!(n);
        }
        claim(a)
    }

    #[test]
    fn only_annotated_claims_of_its_classes_are_provisioned_and_delayed_ones_need_a_node() {
        let wffc = class(true, json!({}));
        let now = class(false, json!({}));
        assert!(!should_provision(&claim(json!({})), Some(&now)));
        assert!(should_provision(&annotated(None), Some(&now)));
        assert!(!should_provision(&annotated(None), Some(&wffc)));
        assert!(should_provision(&annotated(Some("n1")), Some(&wffc)));
        assert!(!should_provision(&annotated(None), None));
        let mut other = now.clone();
        other["provisioner"] = json!("example.com/nfs");
        assert!(!should_provision(&annotated(None), Some(&other)));
        let mut bound = annotated(None);
        bound["spec"]["volumeName"] = json!("pv");
        assert!(!should_provision(&bound, Some(&now)));
    }

    #[test]
    fn a_volume_is_a_directory_on_the_selected_node() {
        let n1 = node(
            "n1",
            true,
            Some("/var/lib/a/local-path"),
            BTreeMap::from([(HOSTNAME_LABEL, "n1")]),
        );
        let n2 = node(
            "n2",
            true,
            Some("/var/lib/b/local-path"),
            BTreeMap::from([(HOSTNAME_LABEL, "n2")]),
        );
        let pv = plan_volume(
            &annotated(Some("n2")),
            &class(true, json!({})),
            &[&n1, &n2],
            &[],
        )
        .expect("a volume");
        assert_eq!(pv["metadata"]["name"], "pvc-1234");
        assert_eq!(
            pv["metadata"]["annotations"][ANN_PROVISIONED_BY],
            LOCAL_PATH_PROVISIONER
        );
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/var/lib/b/local-path/pvc-1234_web_www"
        );
        assert_eq!(pv["spec"]["hostPath"]["type"], "DirectoryOrCreate");
        assert_eq!(storage::volume_node(&pv), Some("n2"));
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(pv["spec"]["storageClassName"], "local-path");
        assert_eq!(pv["spec"]["claimRef"]["uid"], "1234");
        assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));

        let local = plan_volume(
            &annotated(Some("n1")),
            &class(
                true,
                json!({"volumeType": "local", "nodePath": "/mnt/fast/"}),
            ),
            &[&n1],
            &[],
        )
        .expect("a volume");
        assert_eq!(local["spec"]["local"]["path"], "/mnt/fast/pvc-1234_web_www");
        assert!(local["spec"].get("hostPath").is_none());
    }

    #[test]
    fn immediate_volumes_go_to_the_ready_node_with_the_fewest() {
        let ready = |name: &str| node(name, true, Some("/r"), BTreeMap::new());
        let (a, b) = (ready("a"), ready("b"));
        let down = node("0-down", false, Some("/r"), BTreeMap::new());
        let rootless = node("0-rootless", true, None, BTreeMap::new());
        let existing = json!({"metadata": {"name": "pvc-old", "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": ["a"]}]}]}}}});
        let pv = plan_volume(
            &annotated(None),
            &class(false, json!({})),
            &[&down, &rootless, &a, &b],
            &[&existing],
        )
        .expect("a volume");
        assert_eq!(storage::volume_node(&pv), Some("b"));
        let zoned = {
            let mut c = class(false, json!({}));
            c["allowedTopologies"] =
                json!([{"matchLabelExpressions": [{"key": "disk", "values": ["ssd"]}]}]);
            c
        };
        assert!(plan_volume(&annotated(None), &zoned, &[&a, &b], &[]).is_err());
    }

    #[test]
    fn bad_parameters_and_modes_fail_provisioning_with_why() {
        let n1 = node("n1", true, Some("/r"), BTreeMap::new());
        let err = plan_volume(
            &annotated(Some("n1")),
            &class(true, json!({"type": "pd-ssd"})),
            &[&n1],
            &[],
        )
        .expect_err("unknown parameter");
        assert!(err.contains("unknown parameter \"type\""), "{err}");
        let err = plan_volume(
            &annotated(Some("n1")),
            &class(true, json!({"volumeType": "nfs"})),
            &[&n1],
            &[],
        )
        .expect_err("bad type");
        assert!(err.contains("\"nfs\""), "{err}");
        let err = plan_volume(
            &annotated(Some("n1")),
            &class(true, json!({"nodePath": "data"})),
            &[&n1],
            &[],
        )
        .expect_err("relative path");
        assert!(err.contains("absolute"), "{err}");
        let mut rwx = annotated(Some("n1"));
        rwx["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(plan_volume(&rwx, &class(true, json!({})), &[&n1], &[]).is_err());
        let err = plan_volume(
            &annotated(Some("gone")),
            &class(true, json!({})),
            &[&n1],
            &[],
        )
        .expect_err("no node");
        assert!(err.contains("\"gone\" does not exist"), "{err}");
        let rootless = node("n9", true, None, BTreeMap::new());
        let err = plan_volume(
            &annotated(Some("n9")),
            &class(true, json!({})),
            &[&rootless],
            &[],
        )
        .expect_err("no root");
        assert!(err.contains(LOCAL_PATH_ROOT_ANNOTATION), "{err}");
    }

    #[test]
    fn released_delete_volumes_it_made_are_its_to_delete() {
        let pv = |phase: &str, policy: &str, by: &str| {
            json!({"metadata": {"name": "v", "annotations": {ANN_PROVISIONED_BY: by}},
                   "spec": {"persistentVolumeReclaimPolicy": policy}, "status": {"phase": phase}})
        };
        assert!(should_delete(&pv(
            "Released",
            "Delete",
            LOCAL_PATH_PROVISIONER
        )));
        assert!(!should_delete(&pv(
            "Bound",
            "Delete",
            LOCAL_PATH_PROVISIONER
        )));
        assert!(!should_delete(&pv(
            "Released",
            "Retain",
            LOCAL_PATH_PROVISIONER
        )));
        assert!(!should_delete(&pv("Released", "Delete", "example.com/nfs")));
    }
}

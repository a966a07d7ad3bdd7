//! Removing or scrubbing a volume's data on its node, with a helper pod: how Kubernetes' volume
//! recycler and rancher's local-path-provisioner do it.
//!
//! The data of a `hostPath` or `local` volume lives on one node, and only that node can touch it.
//! The controllers (on the Raft leader, possibly another machine) therefore create a pod pinned
//! to the volume's node (`spec.nodeName`, from the volume's `kubernetes.io/hostname` node
//! affinity; a volume without one gets its node affinity as the pod's required affinity, and
//! one with none at all is placed by the scheduler, as Kubernetes' recycler pod is). The pod
//! mounts the volume's parent directory **at the same path** and runs one shell command on
//! `$VOL_DIR`:
//!
//! - delete: `rm -rf "$VOL_DIR"`;
//! - recycle: every entry below `$VOL_DIR` removed (`find -mindepth 1 -delete`, Kubernetes'
//!   recycler script), the directory itself kept.
//!
//! Mounting at the same path makes the one command right under every runtime: the `process`
//! runtime as root bind-mounts the directory onto itself in the container's private mount
//! namespace, without root it runs the command in the node's own namespace where the path is
//! the same, and the `docker` runtime bind-mounts it into the container at that path.
//!
//! The pod (`<op>-for-<volume>` in `kube-system`, `restartPolicy: Never`, tolerating every
//! taint, no service-account token) is annotated with the volume's name and the uid of the
//! claim it was released from, so a helper left from an earlier release is never taken for
//! this one. [`state`] reads where it stands; the caller deletes it once it finished.

use corral_api::{ApiError, object, storage};
use corral_client::{Client, DeleteOptions, Informer};
use serde_json::{Value, json};

/// The namespace helper pods run in.
pub const HELPER_NAMESPACE: &str = "kube-system";
/// Label on every helper pod: the operation (`delete`, `recycle`).
pub const HELPER_LABEL: &str = "corral.io/volume-helper";
/// Annotations on a helper pod: the volume, and the uid of the claim it was released from.
pub const VOLUME_ANNOTATION: &str = "corral.io/volume";
pub const CLAIM_UID_ANNOTATION: &str = "corral.io/claim-uid";
/// The image helper pods run by default (on the process runtime, the command runs on the node).
pub const DEFAULT_HELPER_IMAGE: &str = "busybox";

/// Longest object name.
const MAX_NAME: usize = 253;

/// What a helper pod does to a volume's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Remove the directory and everything in it.
    Delete,
    /// Remove everything in the directory, keep it.
    Recycle,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Delete => "delete",
            Op::Recycle => "recycle",
        }
    }

    fn pod_prefix(self) -> &'static str {
        match self {
            Op::Delete => "deleter-for-",
            Op::Recycle => "recycler-for-",
        }
    }

    fn container(self) -> &'static str {
        match self {
            Op::Delete => "pv-deleter",
            Op::Recycle => "pv-recycler",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Op::Delete => r#"set -eu; rm -rf -- "$VOL_DIR"; test ! -e "$VOL_DIR""#,
            Op::Recycle => {
                r#"set -eu; if [ -e "$VOL_DIR" ]; then find "$VOL_DIR" -mindepth 1 -delete; test -z "$(ls -A "$VOL_DIR")"; fi"#
            }
        }
    }
}

/// The helper pod's name: `deleter-for-<volume>` / `recycler-for-<volume>`, cut to 253
/// characters.
pub fn pod_name(pv: &Value, op: Op) -> String {
    let mut name = format!("{}{}", op.pod_prefix(), object::name(pv));
    if name.len() > MAX_NAME {
        name.truncate(MAX_NAME);
        while name.ends_with(['-', '.']) {
            name.pop();
        }
    }
    name
}

/// The uid of the claim the volume was bound to (`""` when none).
fn released_claim_uid(pv: &Value) -> &str {
    storage::claim_ref(pv)
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The helper pod that carries out `op` on the volume's directory, or why there can be none (no
/// path, a path that is not absolute or is `/`).
pub fn helper_pod(pv: &Value, op: Op, image: &str) -> Result<Value, String> {
    let path = storage::volume_path(pv)
        .ok_or_else(|| format!("volume {} has no hostPath or local path", object::name(pv)))?;
    let trimmed = path.trim_end_matches('/');
    if !path.starts_with('/') || trimmed.is_empty() || path.split('/').any(|p| p == "..") {
        return Err(format!(
            "refusing to {} the volume directory {path:?}: it must be an absolute path below /",
            op.as_str()
        ));
    }
    let parent = match trimmed.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    };
    let mut spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 5,
        "tolerations": [{"operator": "Exists"}],
        "containers": [{
            "name": op.container(),
            "image": image,
            "command": ["sh", "-c", op.script()],
            "env": [{"name": "VOL_DIR", "value": trimmed}],
            "volumeMounts": [{"name": "data", "mountPath": parent}],
        }],
        "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
    });
    if let Some(node) = storage::volume_node(pv) {
        spec["nodeName"] = json!(node);
    } else if let Some(required) = pv
        .pointer("/spec/nodeAffinity/required")
        .filter(|r| r.is_object())
    {
        spec["affinity"] = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": required,
        }});
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(pv, op),
            "namespace": HELPER_NAMESPACE,
            "labels": {HELPER_LABEL: op.as_str()},
            "annotations": {
                VOLUME_ANNOTATION: object::name(pv),
                CLAIM_UID_ANNOTATION: released_claim_uid(pv),
            },
        },
        "spec": spec,
    }))
}

/// The volume a helper pod works on (from its annotation).
pub fn volume_of(pod: &Value) -> Option<&str> {
    storage::annotation(pod, VOLUME_ANNOTATION).filter(|v| !v.is_empty())
}

/// Where a volume's helper pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// No helper pod for this release of the volume: create one.
    Missing,
    /// A helper pod of another release (or another volume of the same name) is in the way:
    /// delete it first.
    Stale,
    /// It has not finished.
    Running,
    /// It finished with exit code 0.
    Succeeded,
    /// It failed; the message says how.
    Failed(String),
}

/// Reads the helper pod found under the volume's helper pod name (if any).
pub fn state(pv: &Value, pod: Option<&Value>) -> State {
    let Some(pod) = pod else {
        return State::Missing;
    };
    let ours = volume_of(pod) == Some(object::name(pv))
        && storage::annotation(pod, CLAIM_UID_ANNOTATION).unwrap_or("") == released_claim_uid(pv);
    if !ours {
        return State::Stale;
    }
    if object::deletion_timestamp(pod).is_some() {
        return State::Running;
    }
    match storage::phase(pod) {
        "Succeeded" => State::Succeeded,
        "Failed" => State::Failed(failure_message(pod)),
        _ => State::Running,
    }
}

/// How a failed helper pod failed: its status message, or its container's exit code and reason.
fn failure_message(pod: &Value) -> String {
    if let Some(m) = pod
        .pointer("/status/message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        return m.to_string();
    }
    let terminated = pod
        .pointer("/status/containerStatuses/0/state/terminated")
        .cloned()
        .unwrap_or(Value::Null);
    let code = terminated
        .get("exitCode")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let reason = terminated
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    format!(
        "pod {}/{} failed: exit code {code} ({reason})",
        object::namespace(pod),
        object::name(pod)
    )
}

/// How far a helper has got, as [`drive`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The helper pod was just created (the message says where).
    Started(String),
    /// It runs (or is being replaced).
    Running,
    /// It succeeded and was deleted: the directory is removed or scrubbed.
    Done,
    /// It could not run or failed (and was deleted); why.
    Failed(String),
}

/// One step of `op` on the volume: creates the helper pod, waits for it (the caller is synced
/// again when the pod changes), deletes it once it finished. Idempotent: a step after a lost
/// answer finds the pod, or creates it again (both operations can run twice).
pub async fn drive(
    client: &Client,
    pods: &Informer,
    pv: &Value,
    op: Op,
    image: &str,
) -> Result<Progress, ApiError> {
    let name = pod_name(pv, op);
    let cached = pods.get(HELPER_NAMESPACE, &name);
    let delete = |pod: &Value| {
        let opts = DeleteOptions {
            uid: Some(object::uid(pod).to_string()),
            grace_period_seconds: Some(0),
            ..DeleteOptions::default()
        };
        let pod_name = object::name(pod).to_string();
        async move {
            match client
                .delete("Pod", HELPER_NAMESPACE, &pod_name, &opts)
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
    };
    match state(pv, cached.as_deref()) {
        State::Missing => {
            let pod = match helper_pod(pv, op, image) {
                Ok(p) => p,
                Err(why) => return Ok(Progress::Failed(why)),
            };
            let place = match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(node) => format!("on node {node}"),
                None => "placed by the scheduler".to_string(),
            };
            match client.create(&pod).await {
                Ok(_) => Ok(Progress::Started(format!(
                    "created pod {HELPER_NAMESPACE}/{name} {place} to {} {}",
                    op.as_str(),
                    storage::volume_path(pv).unwrap_or_default()
                ))),
                Err(ApiError::AlreadyExists { .. }) => Ok(Progress::Running),
                Err(e) => Err(e),
            }
        }
        State::Stale => {
            if let Some(pod) = &cached {
                delete(pod).await?;
            }
            Ok(Progress::Running)
        }
        State::Running => Ok(Progress::Running),
        State::Succeeded => {
            if let Some(pod) = &cached {
                delete(pod).await?;
            }
            Ok(Progress::Done)
        }
        State::Failed(why) => {
            if let Some(pod) = &cached {
                delete(pod).await?;
            }
            Ok(Progress::Failed(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_volume(path: &str) -> Value {
        json!({
            "kind": "PersistentVolume",
            "metadata": {"name": "pvc-1234"},
            "spec": {
                "hostPath": {"path": path},
                "claimRef": {"namespace": "default", "name": "data", "uid": "c-1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}
                ]}]}},
            },
        })
    }

    #[test]
    fn a_helper_pod_is_pinned_to_the_volume_node_and_mounts_the_parent_at_its_own_path() {
        let pv = local_volume("/var/lib/corral/local-path/pvc-1234_default_data/");
        let pod = helper_pod(&pv, Op::Delete, "busybox").expect("a pod");
        assert_eq!(pod["metadata"]["name"], "deleter-for-pvc-1234");
        assert_eq!(pod["metadata"]["namespace"], HELPER_NAMESPACE);
        assert_eq!(pod["spec"]["nodeName"], "node-a");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["env"][0]["value"],
            "/var/lib/corral/local-path/pvc-1234_default_data"
        );
        assert_eq!(
            c["volumeMounts"][0]["mountPath"],
            "/var/lib/corral/local-path"
        );
        assert_eq!(
            pod["spec"]["volumes"][0]["hostPath"]["path"],
            "/var/lib/corral/local-path"
        );
        assert!(
            c["command"][2]
                .as_str()
                .is_some_and(|s| s.contains("rm -rf"))
        );
        let recycle = helper_pod(&pv, Op::Recycle, "busybox").expect("a pod");
        assert_eq!(recycle["metadata"]["name"], "recycler-for-pvc-1234");
        assert!(
            recycle["spec"]["containers"][0]["command"][2]
                .as_str()
                .is_some_and(|s| s.contains("-mindepth 1 -delete"))
        );
    }

    #[test]
    fn dangerous_paths_get_no_helper() {
        for path in ["/", "relative/dir", "/data/../etc"] {
            assert!(
                helper_pod(&local_volume(path), Op::Delete, "busybox").is_err(),
                "{path}"
            );
        }
        let mut no_path = local_volume("/x");
        no_path["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("hostPath");
        assert!(helper_pod(&no_path, Op::Recycle, "busybox").is_err());
        // A directory straight under the root mounts the root.
        let top = helper_pod(&local_volume("/scratch"), Op::Recycle, "busybox").expect("a pod");
        assert_eq!(
            top["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            "/"
        );
    }

    #[test]
    fn without_a_single_node_the_volume_affinity_places_the_pod() {
        let mut pv = local_volume("/data/v");
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] =
            json!(["a", "b"]);
        let pod = helper_pod(&pv, Op::Recycle, "busybox").expect("a pod");
        assert!(pod["spec"].get("nodeName").is_none());
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["a", "b"])
        );
    }

    #[test]
    fn the_state_of_a_helper_pod_belongs_to_one_release() {
        let pv = local_volume("/data/v");
        assert_eq!(state(&pv, None), State::Missing);
        let mut pod = helper_pod(&pv, Op::Recycle, "busybox").expect("a pod");
        assert_eq!(state(&pv, Some(&pod)), State::Running);
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(state(&pv, Some(&pod)), State::Succeeded);
        pod["status"] = json!({"phase": "Failed", "containerStatuses": [
            {"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
        assert_eq!(
            state(&pv, Some(&pod)),
            State::Failed(
                "pod kube-system/recycler-for-pvc-1234 failed: exit code 1 (Error)".into()
            )
        );
        let mut next_release = pv.clone();
        next_release["spec"]["claimRef"]["uid"] = json!("c-2");
        assert_eq!(state(&next_release, Some(&pod)), State::Stale);
    }
}

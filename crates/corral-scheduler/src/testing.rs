//! Test harness: small Kubernetes JSON builders for nodes and pods.

use serde_json::{Value, json};

use crate::node::NodeInfo;
use crate::pod::PodInfo;
use crate::snapshot::Snapshot;

/// A Ready node with this allocatable.
pub(crate) fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name },
        "status": {
            "capacity": { "cpu": cpu, "memory": memory, "pods": pods },
            "allocatable": { "cpu": cpu, "memory": memory, "pods": pods },
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

/// A pending pod in `default` with one container that requests nothing.
pub(crate) fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "containers": [{ "name": "app", "image": "busybox" }] },
        "status": { "phase": "Pending" },
    })
}

/// A pod requesting cpu and memory.
pub(crate) fn pod_requesting(name: &str, cpu: &str, memory: &str) -> Value {
    set(
        pod(name),
        "/spec/containers/0/resources/requests",
        json!({ "cpu": cpu, "memory": memory }),
    )
}

/// The pod, controlled by the owner with this uid.
pub(crate) fn owned_by(pod: Value, owner_uid: &str) -> Value {
    set(
        pod,
        "/metadata/ownerReferences",
        json!([{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner_uid, "controller": true }]),
    )
}

/// The pod, bound to a node.
pub(crate) fn bound_to(pod: Value, node: &str) -> Value {
    set(pod, "/spec/nodeName", json!(node))
}

/// Sets the value at a JSON pointer, creating the objects on the way.
pub(crate) fn set(mut obj: Value, pointer: &str, value: Value) -> Value {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let (last, parents) = segments.split_last().expect("a pointer names a field");
    let mut at = &mut obj;
    for segment in parents {
        at = match at {
            Value::Array(items) => {
                let i: usize = segment.parse().expect("an index into a list");
                items.get_mut(i).expect("the list is long enough")
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("made an object above")
                    .entry(segment.to_string())
                    .or_insert_with(|| json!({}))
            }
        };
    }
    match at {
        Value::Array(items) => {
            let i: usize = last.parse().expect("an index into a list");
            items[i] = value;
        }
        other => {
            if !other.is_object() {
                *other = json!({});
            }
            other
                .as_object_mut()
                .expect("made an object above")
                .insert(last.to_string(), value);
        }
    }
    obj
}

pub(crate) fn pod_info(pod: &Value) -> PodInfo {
    PodInfo::from_pod(pod).expect("the test pod is valid")
}

pub(crate) fn node_info(node: &Value) -> NodeInfo {
    let (info, problems) = NodeInfo::from_node(node);
    assert!(problems.is_empty(), "the test node is valid: {problems:?}");
    info
}

/// The node with these pods bound to it.
pub(crate) fn with_pods(node: &Value, pods: &[Value]) -> NodeInfo {
    let snapshot = Snapshot::new(std::slice::from_ref(node), pods);
    assert!(snapshot.warnings().is_empty(), "{:?}", snapshot.warnings());
    snapshot.nodes()[0].clone()
}

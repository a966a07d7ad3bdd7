//! [`NodeInfo`]: a node as scheduling sees it, with what the pods bound to it hold.

use std::collections::{BTreeMap, HashMap};

use corral_api::object;
use serde_json::Value;

use crate::error::InvalidField;
use crate::json::{array, boolean, field, string};
use crate::pod::HostPort;
use crate::resources::{PodRequests, Resources, parse_amount};

/// The taint a pod must tolerate to land on a cordoned (`spec.unschedulable`) node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint a pod must tolerate to land on a node that is not Ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";

/// One `spec.taints` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// Whether the taint keeps untolerating pods off the node (`NoSchedule`, `NoExecute`);
    /// `PreferNoSchedule` only matters to scoring.
    pub fn blocks_scheduling(&self) -> bool {
        matches!(self.effect.as_str(), "NoSchedule" | "NoExecute")
    }
}

/// What one pod holds on its node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) requests: PodRequests,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) owner_uid: Option<String>,
    /// The claims (`namespace/name`) its volumes use.
    pub(crate) claims: Vec<String>,
}

/// A node: its identity and constraints, its allocatable, and the sum of what the
/// (non-terminated) pods bound to it hold.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    ready: bool,
    unschedulable: bool,
    allocatable: Resources,
    allowed_pods: i64,
    requested: Resources,
    nonzero_requested: Resources,
    pod_count: i64,
    host_ports: Vec<HostPort>,
    owners: HashMap<String, usize>,
    /// The node's `corral.io/local-path-root` annotation: where the local-path provisioner can
    /// make volumes on it.
    local_path_root: Option<String>,
}

impl NodeInfo {
    /// Reads a Node object. A field that cannot be read is reported and taken as absent: an
    /// unreadable allocatable amount counts as 0 (nothing that needs it fits), an unreadable
    /// taint is kept out, an unreadable `unschedulable` counts as `true`.
    pub fn from_node(node: &Value) -> (Self, Vec<InvalidField>) {
        let mut problems = Vec::new();
        let empty = Value::Null;
        let spec = field(node, "spec").unwrap_or(&empty);
        let status = field(node, "status").unwrap_or(&empty);

        let unschedulable = boolean(spec, "unschedulable", "spec")
            .unwrap_or_else(|e| {
                problems.push(e);
                Some(true)
            })
            .unwrap_or(false);

        let mut taints = Vec::new();
        match array(spec, "taints", "spec") {
            Err(e) => problems.push(e),
            Ok(items) => {
                for (i, t) in items.iter().enumerate() {
                    let path = format!("spec.taints[{i}]");
                    let read =
                        |key: &str| string(t, key, &path).map(|s| s.unwrap_or("").to_string());
                    match (read("key"), read("value"), read("effect")) {
                        (Ok(key), Ok(value), Ok(effect)) if t.is_object() => {
                            taints.push(Taint { key, value, effect });
                        }
                        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => problems.push(e),
                        _ => problems.push(InvalidField::new(path, t, "must be an object")),
                    }
                }
            }
        }

        let ready = match array(status, "conditions", "status") {
            Err(e) => {
                problems.push(e);
                false
            }
            Ok(conditions) => conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            }),
        };

        // Kubernetes defaults a missing allocatable to the capacity.
        let list_key = if field(status, "allocatable").is_some() {
            "allocatable"
        } else {
            "capacity"
        };
        let mut amount = |name: &str, milli: bool| -> i64 {
            let path = format!("status.{list_key}.{name}");
            match field(status, list_key).and_then(|l| field(l, name)) {
                None => 0,
                Some(v) => parse_amount(v, &path, milli).unwrap_or_else(|e| {
                    problems.push(e);
                    0
                }),
            }
        };
        let allocatable = Resources::new(amount("cpu", true), amount("memory", false));
        let allowed_pods = amount("pods", false);

        let info = Self {
            name: object::name(node).to_string(),
            labels: object::labels(node),
            taints,
            ready,
            unschedulable,
            allocatable,
            allowed_pods,
            local_path_root: object::annotations(node)
                .get(corral_api::storage::LOCAL_PATH_ROOT_ANNOTATION)
                .filter(|r| !r.is_empty())
                .cloned(),
            ..Self::default()
        };
        (info, problems)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `spec.unschedulable` (cordoned).
    pub fn is_unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// `status.allocatable` cpu and memory (the capacity when allocatable is missing).
    pub fn allocatable(&self) -> Resources {
        self.allocatable
    }

    /// `status.allocatable.pods`: how many pods the node takes.
    pub fn allowed_pods(&self) -> i64 {
        self.allowed_pods
    }

    /// The sum of the effective requests of the pods on the node.
    pub fn requested(&self) -> Resources {
        self.requested
    }

    /// The same sum with unrequested resources at the scoring floor.
    pub fn nonzero_requested(&self) -> Resources {
        self.nonzero_requested
    }

    /// How many pods are on the node.
    pub fn pod_count(&self) -> i64 {
        self.pod_count
    }

    /// The host ports the pods on the node bind.
    pub fn host_ports(&self) -> &[HostPort] {
        &self.host_ports
    }

    /// Where the local-path provisioner makes volumes on this node (published by its agent).
    pub fn local_path_root(&self) -> Option<&str> {
        self.local_path_root.as_deref()
    }

    /// How many pods on the node have this controller owner uid.
    pub fn pods_of_owner(&self, owner_uid: &str) -> usize {
        self.owners.get(owner_uid).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, usage: &Usage) {
        self.requested = self.requested.plus(usage.requests.requests);
        self.nonzero_requested = self.nonzero_requested.plus(usage.requests.nonzero);
        self.pod_count += 1;
        self.host_ports.extend(usage.host_ports.iter().cloned());
        if let Some(owner) = &usage.owner_uid {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    pub(crate) fn remove(&mut self, usage: &Usage) {
        self.requested = self.requested.minus(usage.requests.requests);
        self.nonzero_requested = self.nonzero_requested.minus(usage.requests.nonzero);
        self.pod_count -= 1;
        for port in &usage.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &usage.owner_uid
            && let Some(count) = self.owners.get_mut(owner)
        {
            *count -= 1;
            if *count == 0 {
                self.owners.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_node_is_read_from_its_status_and_spec() {
        let node = json!({
            "metadata": { "name": "n1", "labels": { "zone": "a" } },
            "spec": {
                "unschedulable": true,
                "taints": [{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }],
            },
            "status": {
                "capacity": { "cpu": "8", "memory": "16Gi", "pods": "110" },
                "allocatable": { "cpu": "7500m", "memory": "15Gi", "pods": "100" },
                "conditions": [
                    { "type": "MemoryPressure", "status": "False" },
                    { "type": "Ready", "status": "True" },
                ],
            },
        });
        let (info, problems) = NodeInfo::from_node(&node);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(info.name(), "n1");
        assert_eq!(info.labels().get("zone").map(String::as_str), Some("a"));
        assert!(info.is_ready());
        assert!(info.is_unschedulable());
        assert_eq!(info.allocatable(), Resources::new(7500, 15 << 30));
        assert_eq!(info.allowed_pods(), 100);
        assert_eq!(
            info.taints(),
            [Taint {
                key: "dedicated".into(),
                value: "gpu".into(),
                effect: "NoSchedule".into()
            }]
        );
    }

    #[test]
    fn allocatable_defaults_to_capacity_and_readiness_to_false() {
        let node = json!({
            "metadata": { "name": "n1" },
            "status": {
                "capacity": { "cpu": "2", "memory": "1Gi", "pods": "10" },
                "conditions": [{ "type": "Ready", "status": "Unknown" }],
            },
        });
        let (info, problems) = NodeInfo::from_node(&node);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(info.allocatable(), Resources::new(2000, 1 << 30));
        assert_eq!(info.allowed_pods(), 10);
        assert!(!info.is_ready());
        assert!(!info.is_unschedulable());

        let (bare, _) = NodeInfo::from_node(&json!({ "metadata": { "name": "n2" } }));
        assert!(!bare.is_ready());
        assert_eq!(bare.allowed_pods(), 0);
    }

    #[test]
    fn unreadable_node_fields_are_reported_and_taken_as_absent() {
        let node = json!({
            "metadata": { "name": "n1" },
            "spec": { "taints": [{ "key": "a", "effect": 3 }, { "key": "b", "effect": "NoSchedule" }] },
            "status": { "allocatable": { "cpu": "four", "memory": "1Gi", "pods": "10" } },
        });
        let (info, problems) = NodeInfo::from_node(&node);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["spec.taints[0].effect", "status.allocatable.cpu"]);
        assert_eq!(info.allocatable(), Resources::new(0, 1 << 30));
        assert_eq!(info.taints().len(), 1);
    }
}

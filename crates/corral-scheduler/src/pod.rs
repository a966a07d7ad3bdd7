//! [`PodInfo`]: what scheduling reads from a pod, parsed once.

use std::collections::BTreeMap;

use corral_api::object;
use corral_api::selector::LabelSelector;
use serde_json::Value;

use crate::affinity::NodeSelector;
use crate::error::InvalidField;
use crate::json::{
    array, boolean, field, integer, join, object as json_object, string, string_map,
};
use crate::node::Taint;
use crate::resources::{PodRequests, pod_requests};

/// The address a host port binds when `hostIP` is empty.
pub const BIND_ALL_HOST_IP: &str = "0.0.0.0";

/// A `hostPort` a container binds on its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `hostIP`, [`BIND_ALL_HOST_IP`] when empty.
    pub ip: String,
    /// `protocol`, `TCP` when empty.
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    /// Two bindings collide when protocol and port are equal and either binds all addresses or
    /// both bind the same one (Kubernetes' `HostPortInfo.CheckConflict`).
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == BIND_ALL_HOST_IP || other.ip == BIND_ALL_HOST_IP)
    }
}

/// How a toleration compares the taint's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TolerationOperator {
    /// The values must be equal (the default).
    Equal,
    /// Any value; with an empty key, any taint.
    Exists,
}

/// One `spec.tolerations` entry (`tolerationSeconds` only matters for eviction, not placement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// Empty: every key (only with `Exists`).
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
}

impl Toleration {
    /// Kubernetes' `Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// What scheduling needs from a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    namespace: String,
    name: String,
    node_name: Option<String>,
    terminated: bool,
    requests: PodRequests,
    host_ports: Vec<HostPort>,
    tolerations: Vec<Toleration>,
    node_selector: LabelSelector,
    required_affinity: Option<NodeSelector>,
    owner_uid: Option<String>,
    /// The claims its volumes name (`spec.volumes[].persistentVolumeClaim.claimName`).
    claims: Vec<String>,
}

impl PodInfo {
    /// Parses the fields scheduling reads. Anything it cannot interpret is an error naming the
    /// field; fields it does not read are not looked at.
    pub fn from_pod(pod: &Value) -> Result<Self, InvalidField> {
        let empty = Value::Null;
        let spec = field(pod, "spec").unwrap_or(&empty);
        if !spec.is_null() && !spec.is_object() {
            return Err(InvalidField::new("spec", spec, "must be an object"));
        }
        let node_name = string(spec, "nodeName", "spec")?
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let phase = field(pod, "status")
            .map(|status| string(status, "phase", "status"))
            .transpose()?
            .flatten();
        let required_affinity = match field(spec, "affinity")
            .and_then(|a| field(a, "nodeAffinity"))
            .and_then(|a| field(a, "requiredDuringSchedulingIgnoredDuringExecution"))
        {
            None => None,
            Some(selector) => Some(NodeSelector::from_json(
                selector,
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
            )?),
        };
        Ok(Self {
            namespace: object::namespace(pod).to_string(),
            name: object::name(pod).to_string(),
            node_name,
            terminated: matches!(phase, Some("Succeeded" | "Failed")),
            requests: pod_requests(pod)?,
            host_ports: host_ports(spec)?,
            tolerations: tolerations(spec)?,
            node_selector: LabelSelector::from_match_labels(&string_map(
                spec,
                "nodeSelector",
                "spec",
            )?),
            required_affinity,
            owner_uid: controller_uid(pod)?,
            claims: claim_names(spec)?,
        })
    }

    /// `namespace/name`, the key the snapshot counts the pod under.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `spec.nodeName`, when set and not empty.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// Whether the pod has finished (`Succeeded` or `Failed`) and so holds nothing on its node.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// The effective request (see [`crate::resources`]).
    pub fn requests(&self) -> PodRequests {
        self.requests
    }

    /// The host ports the pod's containers (and sidecars) bind.
    pub fn host_ports(&self) -> &[HostPort] {
        &self.host_ports
    }

    pub fn tolerations(&self) -> &[Toleration] {
        &self.tolerations
    }

    /// Whether some toleration tolerates the taint.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| t.tolerates(taint))
    }

    /// The uid of the controller owner (`ownerReferences[].controller: true`), if any.
    pub fn owner_uid(&self) -> Option<&str> {
        self.owner_uid.as_deref()
    }

    /// The claims the pod's volumes use, as `namespace/name`.
    pub fn claim_keys(&self) -> Vec<String> {
        self.claims
            .iter()
            .map(|c| format!("{}/{c}", self.namespace))
            .collect()
    }

    /// The names of the claims the pod's volumes use.
    pub fn claim_names(&self) -> &[String] {
        &self.claims
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether a node with this name and labels satisfies `spec.nodeSelector` and the required
    /// node affinity.
    pub fn matches_node(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.matches(labels)
            && self
                .required_affinity
                .as_ref()
                .is_none_or(|a| a.matches(node_name, labels))
    }
}

/// `spec.volumes[].persistentVolumeClaim.claimName`, each once.
fn claim_names(spec: &Value) -> Result<Vec<String>, InvalidField> {
    let mut out: Vec<String> = Vec::new();
    for (i, volume) in array(spec, "volumes", "spec")?.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let Some(claim) = field(volume, "persistentVolumeClaim") else {
            continue;
        };
        let claim_path = format!("{path}.persistentVolumeClaim");
        let name = string(claim, "claimName", &claim_path)?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                InvalidField::new(
                    format!("{claim_path}.claimName"),
                    &Value::Null,
                    "Required value",
                )
            })?;
        if !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn host_ports(spec: &Value) -> Result<Vec<HostPort>, InvalidField> {
    let mut out = Vec::new();
    let app = array(spec, "containers", "spec")?
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c, true));
    // Sidecars hold their ports for the pod's whole life, like app containers.
    let sidecars = array(spec, "initContainers", "spec")?
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c, false));
    for (path, container, is_app) in app.chain(sidecars) {
        if !is_app && string(container, "restartPolicy", &path)? != Some("Always") {
            continue;
        }
        for (j, port) in array(container, "ports", &path)?.iter().enumerate() {
            let pp = format!("{path}.ports[{j}]");
            let Some(host_port) = integer(port, "hostPort", &pp)? else {
                continue;
            };
            if host_port <= 0 {
                continue;
            }
            let ip = string(port, "hostIP", &pp)?.unwrap_or("");
            let protocol = string(port, "protocol", &pp)?.unwrap_or("");
            out.push(HostPort {
                ip: if ip.is_empty() { BIND_ALL_HOST_IP } else { ip }.to_string(),
                protocol: if protocol.is_empty() { "TCP" } else { protocol }.to_string(),
                port: host_port,
            });
        }
    }
    Ok(out)
}

fn tolerations(spec: &Value) -> Result<Vec<Toleration>, InvalidField> {
    let mut out = Vec::new();
    for (i, t) in array(spec, "tolerations", "spec")?.iter().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        if !t.is_object() {
            return Err(InvalidField::new(path, t, "must be an object"));
        }
        let operator = match string(t, "operator", &path)?.unwrap_or("") {
            "" | "Equal" => TolerationOperator::Equal,
            "Exists" => TolerationOperator::Exists,
            other => {
                return Err(InvalidField::new(
                    join(&path, "operator"),
                    &Value::from(other),
                    "supported values: \"Equal\", \"Exists\"",
                ));
            }
        };
        out.push(Toleration {
            key: string(t, "key", &path)?.unwrap_or("").to_string(),
            operator,
            value: string(t, "value", &path)?.unwrap_or("").to_string(),
            effect: string(t, "effect", &path)?.unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

fn controller_uid(pod: &Value) -> Result<Option<String>, InvalidField> {
    if json_object(pod, "metadata", "")?.is_none() {
        return Ok(None);
    }
    let metadata = &pod["metadata"];
    for (i, owner) in array(metadata, "ownerReferences", "metadata")?
        .iter()
        .enumerate()
    {
        let path = format!("metadata.ownerReferences[{i}]");
        if boolean(owner, "controller", &path)? == Some(true) {
            return Ok(string(owner, "uid", &path)?.map(str::to_string));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::Resources;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    fn toleration(
        key: &str,
        operator: TolerationOperator,
        value: &str,
        effect: &str,
    ) -> Toleration {
        Toleration {
            key: key.into(),
            operator,
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn tolerations_tolerate_taints_like_kubernetes() {
        use TolerationOperator::{Equal, Exists};
        let dedicated = taint("dedicated", "gpu", "NoSchedule");
        let table = [
            (
                "Equal with the same key, value and effect",
                toleration("dedicated", Equal, "gpu", "NoSchedule"),
                true,
            ),
            (
                "Equal with another value",
                toleration("dedicated", Equal, "db", "NoSchedule"),
                false,
            ),
            (
                "Equal with an empty effect covers every effect",
                toleration("dedicated", Equal, "gpu", ""),
                true,
            ),
            (
                "another effect",
                toleration("dedicated", Equal, "gpu", "NoExecute"),
                false,
            ),
            (
                "Exists ignores the value",
                toleration("dedicated", Exists, "", "NoSchedule"),
                true,
            ),
            (
                "Exists with another key",
                toleration("other", Exists, "", ""),
                false,
            ),
            (
                "Exists with an empty key tolerates everything",
                toleration("", Exists, "", ""),
                true,
            ),
            (
                "an empty key with an effect tolerates that effect",
                toleration("", Exists, "", "NoSchedule"),
                true,
            ),
            (
                "an empty key with another effect",
                toleration("", Exists, "", "NoExecute"),
                false,
            ),
        ];
        for (case, t, want) in table {
            assert_eq!(t.tolerates(&dedicated), want, "{case}");
        }
    }

    #[test]
    fn host_ports_conflict_on_protocol_port_and_address() {
        let port = |ip: &str, protocol: &str, port: i64| HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port,
        };
        let table = [
            (port("0.0.0.0", "TCP", 80), port("0.0.0.0", "TCP", 80), true),
            (
                port("0.0.0.0", "TCP", 80),
                port("10.0.0.1", "TCP", 80),
                true,
            ),
            (
                port("10.0.0.1", "TCP", 80),
                port("0.0.0.0", "TCP", 80),
                true,
            ),
            (
                port("10.0.0.1", "TCP", 80),
                port("10.0.0.1", "TCP", 80),
                true,
            ),
            (
                port("10.0.0.1", "TCP", 80),
                port("10.0.0.2", "TCP", 80),
                false,
            ),
            (
                port("0.0.0.0", "TCP", 80),
                port("0.0.0.0", "UDP", 80),
                false,
            ),
            (
                port("0.0.0.0", "TCP", 80),
                port("0.0.0.0", "TCP", 81),
                false,
            ),
        ];
        for (a, b, want) in table {
            assert_eq!(a.conflicts_with(&b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn a_pod_is_read_with_defaults_filled_in() {
        let pod = json!({
            "metadata": {
                "name": "web-1", "namespace": "shop",
                "ownerReferences": [
                    { "uid": "not-the-controller", "controller": false },
                    { "uid": "rs-uid", "controller": true },
                ],
            },
            "spec": {
                "nodeSelector": { "disk": "ssd" },
                "tolerations": [{ "key": "k", "effect": "NoSchedule", "value": "v" }],
                "initContainers": [
                    { "name": "setup", "ports": [{ "hostPort": 9000 }] },
                    { "name": "proxy", "restartPolicy": "Always", "ports": [{ "hostPort": 15001 }] },
                ],
                "containers": [{
                    "name": "app",
                    "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } },
                    "ports": [
                        { "containerPort": 8080 },
                        { "containerPort": 80, "hostPort": 8080 },
                        { "containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1" },
                    ],
                }],
            },
            "status": { "phase": "Pending" },
        });
        let info = PodInfo::from_pod(&pod).expect("the pod is valid");
        assert_eq!(info.key(), "shop/web-1");
        assert_eq!(info.node_name(), None);
        assert!(!info.is_terminated());
        assert_eq!(info.owner_uid(), Some("rs-uid"));
        assert_eq!(
            info.requests().requests,
            Resources::new(250, 64 * 1024 * 1024)
        );
        assert_eq!(
            info.host_ports(),
            [
                HostPort {
                    ip: "0.0.0.0".into(),
                    protocol: "TCP".into(),
                    port: 8080
                },
                HostPort {
                    ip: "10.0.0.1".into(),
                    protocol: "UDP".into(),
                    port: 53
                },
                HostPort {
                    ip: "0.0.0.0".into(),
                    protocol: "TCP".into(),
                    port: 15001
                },
            ]
        );
        assert_eq!(
            info.tolerations(),
            [toleration(
                "k",
                TolerationOperator::Equal,
                "v",
                "NoSchedule"
            )]
        );
        let ssd: BTreeMap<String, String> = [("disk".to_string(), "ssd".to_string())].into();
        assert!(info.matches_node("n1", &ssd));
        assert!(!info.matches_node("n1", &BTreeMap::new()));
    }

    #[test]
    fn finished_and_bound_pods_are_recognised() {
        for (phase, terminated) in [("Succeeded", true), ("Failed", true), ("Running", false)] {
            let pod = json!({ "spec": { "nodeName": "n1" }, "status": { "phase": phase } });
            let info = PodInfo::from_pod(&pod).expect("valid");
            assert_eq!(info.is_terminated(), terminated, "{phase}");
            assert_eq!(info.node_name(), Some("n1"));
        }
        let empty_node_name = json!({ "spec": { "nodeName": "" } });
        assert_eq!(
            PodInfo::from_pod(&empty_node_name).map(|p| p.node_name().map(str::to_string)),
            Ok(None)
        );
    }

    #[test]
    fn unreadable_fields_are_errors_with_their_path() {
        let table = [
            (
                json!({ "spec": { "tolerations": [{ "key": "k", "operator": "Gt" }] } }),
                "spec.tolerations[0].operator",
            ),
            (
                json!({ "spec": { "tolerations": ["k"] } }),
                "spec.tolerations[0]",
            ),
            (
                json!({ "spec": { "nodeSelector": { "disk": 1 } } }),
                "spec.nodeSelector[disk]",
            ),
            (
                json!({ "spec": { "containers": [{ "ports": [{ "hostPort": "80" }] }] } }),
                "spec.containers[0].ports[0].hostPort",
            ),
            (
                json!({ "metadata": { "ownerReferences": [{ "uid": "u", "controller": "yes" }] } }),
                "metadata.ownerReferences[0].controller",
            ),
            (
                json!({ "spec": { "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "a", "operator": "Near" }] }] } } } } }),
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator",
            ),
            (json!({ "spec": "none" }), "spec"),
        ];
        for (pod, path) in table {
            let err = PodInfo::from_pod(&pod).expect_err(path);
            assert_eq!(err.path, path, "{err}");
        }
    }
}

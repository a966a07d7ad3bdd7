//! [`Snapshot`]: the nodes and what the pods bound to them hold, read once from a list of nodes
//! and pods. Scheduling reads it; [`Snapshot::assume`] adds a pod the driver has decided to bind,
//! so a whole batch of pending pods is placed against one snapshot without re-reading, and
//! [`Snapshot::forget`] takes it back out when the bind fails.

use std::collections::HashMap;
use std::fmt;

use corral_api::object;
use serde_json::Value;

use crate::error::InvalidField;
use crate::node::{NodeInfo, Usage};
use crate::pod::PodInfo;
use crate::volumes::VolumeState;

/// Something in the listed objects that could not be read. The snapshot is still built (see
/// [`NodeInfo::from_node`] for how an unreadable node field is taken; a bound pod that cannot be
/// read still takes its pod slot but no resources, ports or owner count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWarning {
    /// `node n1`, `pod default/web-0`.
    pub object: String,
    pub problem: InvalidField,
}

impl fmt::Display for SnapshotWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

/// Why [`Snapshot::assume`] or [`Snapshot::forget`] refused. None is retryable against the same
/// snapshot: the driver's view is out of date, or the pod cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("node \"{0}\" is not in the snapshot")]
    UnknownNode(String),
    #[error("pod {pod}: {problem}")]
    InvalidPod { pod: String, problem: InvalidField },
    #[error("pod {pod} is already counted on node \"{node}\"")]
    AlreadyCounted { pod: String, node: String },
    #[error("pod {0} is not counted on any node")]
    NotCounted(String),
}

/// The nodes, sorted by name, each with what its pods hold.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Every pod counted, by `namespace/name`: its node and what it holds there.
    pods: HashMap<String, (usize, Usage)>,
    warnings: Vec<SnapshotWarning>,
    /// For every claim a counted pod uses: how many such pods each node has.
    claim_users: HashMap<String, HashMap<usize, usize>>,
    /// The claims, volumes and classes (empty unless the driver sets them).
    volumes: VolumeState,
}

pub(crate) fn pod_key(pod: &Value) -> String {
    format!("{}/{}", object::namespace(pod), object::name(pod))
}

fn usage_of(info: &PodInfo) -> Usage {
    Usage {
        requests: info.requests(),
        host_ports: info.host_ports().to_vec(),
        owner_uid: info.owner_uid().map(str::to_string),
        claims: info.claim_keys(),
    }
}

impl Snapshot {
    /// Reads the nodes, then counts every pod bound (`spec.nodeName`) to one of them that has not
    /// finished (phase not `Succeeded`/`Failed`). Pods bound to nodes not in the list are left
    /// out. A node listed twice keeps its first entry.
    pub fn new(nodes: &[Value], pods: &[Value]) -> Self {
        let mut snapshot = Self::default();
        let mut infos = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (info, problems) = NodeInfo::from_node(node);
            let label = format!("node {}", info.name());
            snapshot
                .warnings
                .extend(problems.into_iter().map(|problem| SnapshotWarning {
                    object: label.clone(),
                    problem,
                }));
            if info.name().is_empty() {
                snapshot.warnings.push(SnapshotWarning {
                    object: "node".into(),
                    problem: InvalidField::new(
                        "metadata.name",
                        node.get("metadata")
                            .and_then(|m| m.get("name"))
                            .unwrap_or(&Value::Null),
                        "Required value",
                    ),
                });
                continue;
            }
            infos.push(info);
        }
        // Stable: of two nodes with one name, the first listed comes first and is kept.
        infos.sort_by(|a, b| a.name().cmp(b.name()));
        infos.dedup_by(|later, earlier| later.name() == earlier.name());
        snapshot.index = infos
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name().to_string(), i))
            .collect();
        snapshot.nodes = infos;

        for pod in pods {
            let key = pod_key(pod);
            let (node_name, usage) = match PodInfo::from_pod(pod) {
                Ok(info) if info.is_terminated() => continue,
                Ok(info) => match info.node_name() {
                    None => continue,
                    Some(n) => (n.to_string(), usage_of(&info)),
                },
                Err(problem) => {
                    let Some(n) = pod
                        .get("spec")
                        .and_then(|s| s.get("nodeName"))
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                    else {
                        continue;
                    };
                    snapshot.warnings.push(SnapshotWarning {
                        object: format!("pod {key}"),
                        problem,
                    });
                    (n.to_string(), Usage::default())
                }
            };
            let Some(&i) = snapshot.index.get(&node_name) else {
                continue;
            };
            if snapshot.pods.contains_key(&key) {
                continue;
            }
            snapshot.add_usage(key, i, usage);
        }
        snapshot
    }

    fn add_usage(&mut self, key: String, node: usize, usage: Usage) {
        self.nodes[node].add(&usage);
        for claim in &usage.claims {
            *self
                .claim_users
                .entry(claim.clone())
                .or_default()
                .entry(node)
                .or_default() += 1;
        }
        self.pods.insert(key, (node, usage));
    }

    fn remove_usage(&mut self, node: usize, usage: &Usage) {
        self.nodes[node].remove(usage);
        for claim in &usage.claims {
            if let Some(users) = self.claim_users.get_mut(claim) {
                if let Some(n) = users.get_mut(&node) {
                    *n -= 1;
                    if *n == 0 {
                        users.remove(&node);
                    }
                }
                if users.is_empty() {
                    self.claim_users.remove(claim);
                }
            }
        }
    }

    /// The indexes of the nodes where counted pods use the claim (`namespace/name`).
    pub fn nodes_using_claim(&self, claim: &str) -> Vec<usize> {
        self.claim_users
            .get(claim)
            .map(|users| users.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Sets the claims, volumes and classes placement checks pods' volumes against.
    pub fn set_volumes(&mut self, volumes: VolumeState) {
        self.volumes = volumes;
    }

    pub fn volumes(&self) -> &VolumeState {
        &self.volumes
    }

    /// Takes the volume state out (leaving an empty one), to move it into a rebuilt snapshot.
    pub fn take_volumes(&mut self) -> VolumeState {
        std::mem::take(&mut self.volumes)
    }

    /// The nodes, sorted by name.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// What could not be read while building the snapshot.
    pub fn warnings(&self) -> &[SnapshotWarning] {
        &self.warnings
    }

    /// The node a pod (`namespace/name`) is counted on, if any.
    pub fn node_of(&self, pod_key: &str) -> Option<&str> {
        self.pods.get(pod_key).map(|(i, _)| self.nodes[*i].name())
    }

    /// Counts the pod on the node as if it were bound there: its requests, host ports and
    /// controller owner. Refused when the pod is already counted somewhere.
    pub fn assume(&mut self, pod: &Value, node: &str) -> Result<(), SnapshotError> {
        let key = pod_key(pod);
        let info = PodInfo::from_pod(pod).map_err(|problem| SnapshotError::InvalidPod {
            pod: key.clone(),
            problem,
        })?;
        let &i = self
            .index
            .get(node)
            .ok_or_else(|| SnapshotError::UnknownNode(node.to_string()))?;
        if let Some((at, _)) = self.pods.get(&key) {
            return Err(SnapshotError::AlreadyCounted {
                pod: key,
                node: self.nodes[*at].name().to_string(),
            });
        }
        let usage = usage_of(&info);
        self.add_usage(key, i, usage);
        Ok(())
    }

    /// Counts a pod already read and placed by the scheduler, with the volumes it was placed
    /// for.
    pub(crate) fn count(&mut self, key: String, node: usize, info: &PodInfo) {
        let usage = usage_of(info);
        if !info.claim_names().is_empty() {
            let node_info = self.nodes[node].clone();
            self.volumes.assume(info, &node_info);
        }
        self.add_usage(key, node, usage);
    }

    /// Takes a counted pod (by `namespace/name`) back off its node, exactly undoing what was
    /// counted for it; returns the node's name.
    pub fn forget(&mut self, pod: &Value) -> Result<String, SnapshotError> {
        let key = pod_key(pod);
        let (i, usage) = self
            .pods
            .remove(&key)
            .ok_or(SnapshotError::NotCounted(key))?;
        self.remove_usage(i, &usage);
        Ok(self.nodes[i].name().to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::Resources;
    use crate::testing::{bound_to, node, owned_by, pod, pod_requesting, set};

    const MI: i64 = 1024 * 1024;

    #[test]
    fn bound_pods_that_have_not_finished_are_counted_on_their_node() {
        let nodes = [node("n2", "4", "8Gi", "110"), node("n1", "4", "8Gi", "110")];
        let pods = [
            owned_by(bound_to(pod_requesting("a", "500m", "100Mi"), "n1"), "rs1"),
            owned_by(bound_to(pod_requesting("b", "250m", "50Mi"), "n1"), "rs1"),
            bound_to(
                set(
                    pod_requesting("done", "1", "1Gi"),
                    "/status/phase",
                    json!("Succeeded"),
                ),
                "n1",
            ),
            bound_to(
                set(
                    pod_requesting("failed", "1", "1Gi"),
                    "/status/phase",
                    json!("Failed"),
                ),
                "n1",
            ),
            pod_requesting("pending", "1", "1Gi"),
            bound_to(pod_requesting("elsewhere", "1", "1Gi"), "gone"),
            set(
                bound_to(pod("ported"), "n2"),
                "/spec/containers/0/ports",
                json!([{ "hostPort": 80 }]),
            ),
        ];
        let snapshot = Snapshot::new(&nodes, &pods);
        assert!(snapshot.warnings().is_empty(), "{:?}", snapshot.warnings());
        let names: Vec<&str> = snapshot.nodes().iter().map(NodeInfo::name).collect();
        assert_eq!(names, ["n1", "n2"], "nodes are sorted by name");

        let n1 = snapshot.node("n1").expect("n1 is listed");
        assert_eq!(n1.pod_count(), 2);
        assert_eq!(n1.requested(), Resources::new(750, 150 * MI));
        assert_eq!(n1.pods_of_owner("rs1"), 2);
        assert_eq!(n1.pods_of_owner("rs2"), 0);
        assert!(n1.host_ports().is_empty());

        let n2 = snapshot.node("n2").expect("n2 is listed");
        assert_eq!(n2.pod_count(), 1);
        assert_eq!(n2.requested(), Resources::new(0, 0));
        assert_eq!(n2.nonzero_requested(), Resources::new(100, 200 * MI));
        assert_eq!(n2.host_ports().len(), 1);

        assert_eq!(snapshot.node_of("default/a"), Some("n1"));
        assert_eq!(snapshot.node_of("default/pending"), None);
        assert_eq!(snapshot.node_of("default/done"), None);
    }

    #[test]
    fn assume_counts_a_pod_and_forget_takes_it_back() {
        let mut snapshot = Snapshot::new(&[node("n1", "4", "8Gi", "110")], &[]);
        let p = set(
            owned_by(pod_requesting("p", "1", "1Gi"), "rs1"),
            "/spec/containers/0/ports",
            json!([{ "hostPort": 8080 }]),
        );
        snapshot
            .assume(&p, "n1")
            .expect("n1 exists and p is not counted");
        let n1 = snapshot.node("n1").expect("listed");
        assert_eq!(n1.pod_count(), 1);
        assert_eq!(n1.requested(), Resources::new(1000, 1024 * MI));
        assert_eq!(n1.pods_of_owner("rs1"), 1);
        assert_eq!(n1.host_ports().len(), 1);
        assert_eq!(snapshot.node_of("default/p"), Some("n1"));

        assert_eq!(
            snapshot.assume(&p, "n1"),
            Err(SnapshotError::AlreadyCounted {
                pod: "default/p".into(),
                node: "n1".into()
            })
        );
        assert_eq!(
            snapshot.assume(&pod("q"), "n9"),
            Err(SnapshotError::UnknownNode("n9".into()))
        );

        assert_eq!(snapshot.forget(&p), Ok("n1".to_string()));
        let n1 = snapshot.node("n1").expect("listed");
        assert_eq!(n1.pod_count(), 0);
        assert_eq!(n1.requested(), Resources::default());
        assert_eq!(n1.nonzero_requested(), Resources::default());
        assert_eq!(n1.pods_of_owner("rs1"), 0);
        assert!(n1.host_ports().is_empty());
        assert_eq!(
            snapshot.forget(&p),
            Err(SnapshotError::NotCounted("default/p".into()))
        );
    }

    #[test]
    fn an_unreadable_pod_is_refused_by_assume_and_reported_by_new() {
        let bad = set(
            pod("bad"),
            "/spec/containers/0/resources/requests/cpu",
            json!("a lot"),
        );
        let mut snapshot = Snapshot::new(
            &[node("n1", "4", "8Gi", "110")],
            &[bound_to(bad.clone(), "n1")],
        );
        assert_eq!(snapshot.warnings().len(), 1);
        assert_eq!(
            snapshot.warnings()[0].to_string(),
            "pod default/bad: spec.containers[0].resources.requests.cpu: Invalid value: \"a lot\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            snapshot.node("n1").map(NodeInfo::pod_count),
            Some(1),
            "it still takes its slot"
        );

        let other = set(bad, "/metadata/name", json!("bad2"));
        let err = snapshot
            .assume(&other, "n1")
            .expect_err("the pod cannot be read");
        assert!(
            matches!(err, SnapshotError::InvalidPod { ref pod, .. } if pod == "default/bad2"),
            "{err}"
        );
    }

    #[test]
    fn nodes_without_names_or_listed_twice_are_dropped() {
        let unnamed = json!({ "metadata": {}, "status": {} });
        let first = set(
            node("n1", "4", "8Gi", "110"),
            "/metadata/labels",
            json!({ "copy": "first" }),
        );
        let second = set(
            node("n1", "4", "8Gi", "110"),
            "/metadata/labels",
            json!({ "copy": "second" }),
        );
        let snapshot = Snapshot::new(&[unnamed, first, second], &[]);
        assert_eq!(snapshot.nodes().len(), 1);
        assert_eq!(
            snapshot.nodes()[0].labels().get("copy").map(String::as_str),
            Some("first")
        );
        assert_eq!(snapshot.warnings().len(), 1);
        assert_eq!(snapshot.warnings()[0].problem.path, "metadata.name");
    }
}

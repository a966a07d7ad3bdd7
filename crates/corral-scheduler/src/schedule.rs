//! Placing one pod: filter every node, score the feasible ones, take the best. The cost per pod
//! is one pass over the nodes (plus one over the feasible ones), whatever the batch size.
//!
//! Selection is deterministic: among the nodes with the highest total score the one whose name
//! sorts first wins (Kubernetes picks one of them at random; a fixed choice keeps plans
//! reproducible and tests exact, and spreading already moves the next replica elsewhere).
//!
//! When no node fits, [`Unschedulable`] carries Kubernetes' `FitError` text:
//! `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
//! affinity/selector.` Each node adds its reasons to a histogram; the entries are written as
//! `<count> <reason>` and sorted as strings, exactly as Kubernetes sorts them (so
//! `10 Insufficient cpu` comes before `2 Insufficient memory`). With no nodes at all the message
//! is Kubernetes' `no nodes available to schedule pods`. (Kubernetes then appends a preemption
//! summary; Corral does not preempt, so there is none.)

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::InvalidField;
use crate::filter::run_filters;
use crate::pod::PodInfo;
use crate::score;
use crate::snapshot::{Snapshot, pod_key};
use crate::volumes;

/// Kubernetes' message when the cluster has no nodes.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// Where the pod goes, and the winning node's total score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub score: i64,
}

/// No node can take the pod right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unschedulable {
    /// What `kubectl describe pod` shows in the `FailedScheduling` event and the `PodScheduled`
    /// condition.
    pub message: String,
    /// How many nodes failed for each reason.
    pub reasons: BTreeMap<String, usize>,
}

/// Why a pod got no placement. `Unschedulable` is retryable once the cluster changes (a node
/// joins or frees capacity); the others are not: the pod must change, or is not the
/// scheduler's to place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Unschedulable(#[from] Unschedulable),
    /// The pod already has `spec.nodeName`, or the snapshot already counts it on a node.
    #[error("pod {pod} is already assigned to node \"{node}\"")]
    AlreadyAssigned { pod: String, node: String },
    /// A field the scheduler reads cannot be interpreted.
    #[error("pod {pod}: {problem}")]
    InvalidPod { pod: String, problem: InvalidField },
}

/// Kubernetes' `FitError` message for `nodes` nodes that failed with these reasons.
pub fn fit_error_message(nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if nodes == 0 {
        return NO_NODES_AVAILABLE.to_string();
    }
    let mut message = format!("0/{nodes} nodes are available:");
    let mut histogram: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    histogram.sort();
    if !histogram.is_empty() {
        message.push(' ');
        message.push_str(&histogram.join(", "));
        message.push('.');
    }
    message
}

/// Kubernetes' message when a pre-filter plugin refuses the pod outright:
/// `0/3 nodes are available: persistentvolumeclaim "data" not found.`
fn pre_filter_failure(nodes: usize, message: String) -> Unschedulable {
    let text = if nodes == 0 {
        NO_NODES_AVAILABLE.to_string()
    } else {
        format!("0/{nodes} nodes are available: {message}.")
    };
    Unschedulable {
        message: text,
        reasons: BTreeMap::from([(message, nodes)]),
    }
}

/// Reads the pod and refuses pods that are not the scheduler's to place.
fn admit(snapshot: &Snapshot, pod: &Value) -> Result<(String, PodInfo), ScheduleError> {
    let key = pod_key(pod);
    let info = PodInfo::from_pod(pod).map_err(|problem| ScheduleError::InvalidPod {
        pod: key.clone(),
        problem,
    })?;
    let counted_on = info.node_name().or_else(|| snapshot.node_of(&key));
    if let Some(node) = counted_on {
        return Err(ScheduleError::AlreadyAssigned {
            node: node.to_string(),
            pod: key,
        });
    }
    Ok((key, info))
}

/// Filter → score → select over the snapshot; the index of the chosen node and its score.
fn place(snapshot: &Snapshot, pod: &PodInfo) -> Result<(usize, i64), Unschedulable> {
    let nodes = snapshot.nodes();
    let volumes = if pod.claim_names().is_empty() {
        None
    } else {
        match snapshot.volumes().pre_filter(pod) {
            Ok(v) => Some(v),
            Err(message) => return Err(pre_filter_failure(nodes.len(), message)),
        }
    };
    let users = |claim: &str| snapshot.nodes_using_claim(claim);
    let mut feasible = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let result = run_filters(pod, node).and_then(|()| match &volumes {
            None => Ok(()),
            Some(v) => volumes::filter(snapshot.volumes(), v, i, node, &users)
                .map_err(|r| vec![std::borrow::Cow::Borrowed(r)]),
        });
        match result {
            Ok(()) => feasible.push(i),
            Err(failed) => {
                for reason in failed {
                    *reasons.entry(reason.into_owned()).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        return Err(Unschedulable {
            message: fit_error_message(nodes.len(), &reasons),
            reasons,
        });
    }
    let owner = pod.owner_uid();
    let same_owner = |i: usize| owner.map_or(0, |o| nodes[i].pods_of_owner(o));
    let max_same_owner = feasible.iter().map(|&i| same_owner(i)).max().unwrap_or(0);
    let mut best: Option<(usize, i64)> = None;
    for &i in &feasible {
        let spread = if owner.is_some() {
            score::spread(same_owner(i), max_same_owner)
        } else {
            0
        };
        let total = score::total(score::least_allocated(pod, &nodes[i]), spread);
        // Nodes are in name order, so keeping the first maximum breaks ties by name.
        if best.is_none_or(|(_, top)| total > top) {
            best = Some((i, total));
        }
    }
    Ok(best.expect("at least one node is feasible"))
}

/// Picks a node for a pending pod. Does not change the snapshot: call [`Snapshot::assume`] with
/// the result before placing the next pod of a batch, or use [`schedule_batch`].
///
/// Which pods to hand over (the scheduler name, scheduling gates, pods being deleted, the queue
/// order) is the driver's decision; a pod that already has `spec.nodeName` is refused with
/// [`ScheduleError::AlreadyAssigned`].
pub fn schedule(snapshot: &Snapshot, pod: &Value) -> Result<Placement, ScheduleError> {
    let (_, info) = admit(snapshot, pod)?;
    let (i, score) = place(snapshot, &info)?;
    Ok(Placement {
        node: snapshot.nodes()[i].name().to_string(),
        score,
    })
}

/// Places the pods in order against one snapshot, counting each placed pod on its node before
/// the next is considered, so replicas spread and capacity is never given out twice. The
/// results are in the order of `pods`; the snapshot ends up holding every placed pod.
pub fn schedule_batch(
    snapshot: &mut Snapshot,
    pods: &[Value],
) -> Vec<Result<Placement, ScheduleError>> {
    pods.iter()
        .map(|pod| {
            let (key, info) = admit(snapshot, pod)?;
            let (i, score) = place(snapshot, &info)?;
            snapshot.count(key, i, &info);
            Ok(Placement {
                node: snapshot.nodes()[i].name().to_string(),
                score,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::filter::{REASON_INSUFFICIENT_CPU, REASON_NODE_AFFINITY};
    use crate::testing::{bound_to, node, owned_by, pod, pod_requesting, set};

    fn unschedulable(result: Result<Placement, ScheduleError>) -> Unschedulable {
        match result {
            Err(ScheduleError::Unschedulable(u)) => u,
            other => panic!("expected Unschedulable, got {other:?}"),
        }
    }

    fn placed_on(result: &Result<Placement, ScheduleError>) -> &str {
        match result {
            Ok(p) => &p.node,
            Err(e) => panic!("expected a placement, got {e}"),
        }
    }

    #[test]
    fn the_message_counts_and_sorts_mixed_reasons_like_kubernetes() {
        let ssd = json!({ "disk": "ssd" });
        let nodes = [
            set(
                node("n1", "500m", "8Gi", "110"),
                "/metadata/labels",
                ssd.clone(),
            ),
            set(
                node("n2", "8", "8Gi", "110"),
                "/metadata/labels",
                json!({ "disk": "hdd" }),
            ),
            node("n3", "8", "8Gi", "110"),
        ];
        let p = set(
            pod_requesting("p", "1", "1Gi"),
            "/spec/nodeSelector",
            ssd.clone(),
        );
        let err = unschedulable(schedule(&Snapshot::new(&nodes, &[]), &p));
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );

        let nodes = [
            set(
                node("n1", "500m", "8Gi", "110"),
                "/metadata/labels",
                ssd.clone(),
            ),
            set(
                node("n2", "8", "8Gi", "110"),
                "/metadata/labels",
                json!({ "disk": "hdd" }),
            ),
            node("n3", "8", "8Gi", "110"),
            // Tainted and too small: only the taint is reported (the first failing check).
            set(
                set(
                    node("n4", "100m", "100Mi", "110"),
                    "/metadata/labels",
                    ssd.clone(),
                ),
                "/spec/taints",
                json!([{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }]),
            ),
            set(
                node("n5", "8", "8Gi", "110"),
                "/spec/unschedulable",
                json!(true),
            ),
            set(
                node("n6", "8", "8Gi", "110"),
                "/status/conditions/0/status",
                json!("False"),
            ),
            // Short of both: it counts once for each.
            set(node("n7", "100m", "100Mi", "110"), "/metadata/labels", ssd),
        ];
        let err = unschedulable(schedule(&Snapshot::new(&nodes, &[]), &p));
        assert_eq!(
            err.message,
            "0/7 nodes are available: 1 Insufficient memory, \
             1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were not ready, \
             1 node(s) were unschedulable, 2 Insufficient cpu, \
             2 node(s) didn't match Pod's node affinity/selector."
        );
        assert_eq!(err.to_string(), err.message);
        let want: BTreeMap<String, usize> = [
            (REASON_INSUFFICIENT_CPU, 2),
            ("Insufficient memory", 1),
            ("node(s) had untolerated taint {dedicated: db}", 1),
            ("node(s) were not ready", 1),
            ("node(s) were unschedulable", 1),
            (REASON_NODE_AFFINITY, 2),
        ]
        .into_iter()
        .map(|(r, c)| (r.to_string(), c))
        .collect();
        assert_eq!(err.reasons, want);
    }

    #[test]
    fn histogram_entries_sort_as_strings_count_first() {
        let reasons: BTreeMap<String, usize> = [
            ("Insufficient cpu".to_string(), 2),
            ("Too many pods".to_string(), 10),
            ("node(s) were unschedulable".to_string(), 1),
        ]
        .into();
        assert_eq!(
            fit_error_message(13, &reasons),
            "0/13 nodes are available: 1 node(s) were unschedulable, 10 Too many pods, 2 Insufficient cpu."
        );
        assert_eq!(
            fit_error_message(0, &BTreeMap::new()),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn an_empty_cluster_has_no_nodes_available() {
        let err = unschedulable(schedule(&Snapshot::new(&[], &[]), &pod("p")));
        assert_eq!(err.message, "no nodes available to schedule pods");
        assert!(err.reasons.is_empty());
    }

    #[test]
    fn the_least_allocated_node_wins_and_ties_go_to_the_first_name() {
        let nodes = [
            node("b", "4", "8Gi", "110"),
            node("a", "4", "8Gi", "110"),
            node("c", "8", "8Gi", "110"),
        ];
        let snapshot = Snapshot::new(&nodes, &[]);
        let p = pod_requesting("p", "1", "1Gi");
        // c: cpu (8000-1000)/8000 → 87, memory 87 → 87; a and b: cpu 75, memory 87 → 81.
        assert_eq!(
            schedule(&snapshot, &p),
            Ok(Placement {
                node: "c".into(),
                score: 87
            })
        );

        let equal = Snapshot::new(&nodes[..2], &[]);
        assert_eq!(
            schedule(&equal, &p),
            Ok(Placement {
                node: "a".into(),
                score: 81
            })
        );

        let busy_a = Snapshot::new(
            &nodes[..2],
            &[bound_to(pod_requesting("x", "2", "1Gi"), "a")],
        );
        assert_eq!(placed_on(&schedule(&busy_a, &p)), "b");
    }

    #[test]
    fn replicas_of_one_owner_spread_before_filling_the_emptiest_node() {
        // n1 is emptier but already runs a replica; spreading outweighs the small resource gap.
        let nodes = [
            node("n1", "8", "16Gi", "110"),
            node("n2", "4", "8Gi", "110"),
        ];
        let running = owned_by(
            bound_to(pod_requesting("web-0", "100m", "64Mi"), "n1"),
            "rs1",
        );
        let snapshot = Snapshot::new(&nodes, &[running]);
        let replica = owned_by(pod_requesting("web-1", "100m", "64Mi"), "rs1");
        assert_eq!(placed_on(&schedule(&snapshot, &replica)), "n2");
        // A pod of another owner just goes to the emptiest node.
        let stranger = owned_by(pod_requesting("db-0", "100m", "64Mi"), "rs2");
        assert_eq!(placed_on(&schedule(&snapshot, &stranger)), "n1");
    }

    #[test]
    fn a_batch_of_six_replicas_spreads_two_per_node() {
        let nodes = [
            node("n3", "4", "8Gi", "110"),
            node("n1", "4", "8Gi", "110"),
            node("n2", "4", "8Gi", "110"),
        ];
        let mut snapshot = Snapshot::new(&nodes, &[]);
        let replicas: Vec<Value> = (0..6)
            .map(|i| owned_by(pod_requesting(&format!("web-{i}"), "100m", "128Mi"), "rs1"))
            .collect();
        let results = schedule_batch(&mut snapshot, &replicas);
        let placed: Vec<&str> = results.iter().map(placed_on).collect();
        assert_eq!(placed, ["n1", "n2", "n3", "n1", "n2", "n3"]);
        for n in snapshot.nodes() {
            assert_eq!(n.pods_of_owner("rs1"), 2, "{}", n.name());
            assert_eq!(n.pod_count(), 2, "{}", n.name());
        }
    }

    #[test]
    fn schedule_then_assume_gives_the_same_plan_as_a_batch() {
        let nodes = [node("n1", "2", "4Gi", "110"), node("n2", "2", "4Gi", "110")];
        let pods: Vec<Value> = (0..4)
            .map(|i| pod_requesting(&format!("p{i}"), "600m", "1Gi"))
            .collect();
        let mut by_hand = Snapshot::new(&nodes, &[]);
        let mut plan = Vec::new();
        for p in &pods {
            let placement = schedule(&by_hand, p);
            if let Ok(pl) = &placement {
                by_hand
                    .assume(p, &pl.node)
                    .expect("the node exists and p is new");
            }
            plan.push(placement);
        }
        let mut batch = Snapshot::new(&nodes, &[]);
        assert_eq!(schedule_batch(&mut batch, &pods), plan);
        let placed: Vec<&str> = plan.iter().map(placed_on).collect();
        assert_eq!(placed, ["n1", "n2", "n1", "n2"]);
    }

    #[test]
    fn a_batch_never_gives_out_capacity_twice() {
        let nodes = [node("n1", "1", "4Gi", "110"), node("n2", "1", "4Gi", "110")];
        let pods: Vec<Value> = (0..3)
            .map(|i| pod_requesting(&format!("p{i}"), "1", "1Gi"))
            .collect();
        let mut snapshot = Snapshot::new(&nodes, &[]);
        let results = schedule_batch(&mut snapshot, &pods);
        assert_eq!(placed_on(&results[0]), "n1");
        assert_eq!(placed_on(&results[1]), "n2");
        assert_eq!(
            results[2],
            Err(ScheduleError::Unschedulable(Unschedulable {
                message: "0/2 nodes are available: 2 Insufficient cpu.".into(),
                reasons: [(REASON_INSUFFICIENT_CPU.to_string(), 2)].into(),
            }))
        );
    }

    #[test]
    fn pods_already_placed_are_not_the_schedulers() {
        let snapshot = Snapshot::new(&[node("n1", "4", "8Gi", "110")], &[]);
        assert_eq!(
            schedule(&snapshot, &bound_to(pod("p"), "n1")),
            Err(ScheduleError::AlreadyAssigned {
                pod: "default/p".into(),
                node: "n1".into()
            })
        );
        let mut snapshot = snapshot;
        let pods = [pod("p"), pod("p")];
        let results = schedule_batch(&mut snapshot, &pods);
        assert_eq!(placed_on(&results[0]), "n1");
        assert_eq!(
            results[1],
            Err(ScheduleError::AlreadyAssigned {
                pod: "default/p".into(),
                node: "n1".into()
            }),
            "the same pod twice in a batch is placed once"
        );
    }

    #[test]
    fn an_unreadable_pod_is_an_error_naming_the_field() {
        let snapshot = Snapshot::new(&[node("n1", "4", "8Gi", "110")], &[]);
        let bad = set(
            pod("p"),
            "/spec/tolerations",
            json!([{ "key": "a", "operator": "Maybe" }]),
        );
        let err = schedule(&snapshot, &bad).expect_err("the toleration cannot be read");
        assert_eq!(
            err.to_string(),
            "pod default/p: spec.tolerations[0].operator: Invalid value: \"Maybe\": supported values: \"Equal\", \"Exists\""
        );
    }

    #[test]
    fn ten_thousand_pods_fit_on_a_thousand_nodes_in_one_batch() {
        let nodes: Vec<Value> = (0..1000)
            .map(|i| node(&format!("node-{i:04}"), "4", "8Gi", "110"))
            .collect();
        let pods: Vec<Value> = (0..10_000)
            .map(|i| {
                owned_by(
                    pod_requesting(&format!("p-{i:05}"), "100m", "128Mi"),
                    &format!("rs-{}", i % 50),
                )
            })
            .collect();
        let mut snapshot = Snapshot::new(&nodes, &[]);
        let results = schedule_batch(&mut snapshot, &pods);
        assert!(results.iter().all(Result::is_ok), "every pod is placed");
        let total: i64 = snapshot.nodes().iter().map(|n| n.pod_count()).sum();
        assert_eq!(total, 10_000);
        let busiest = snapshot
            .nodes()
            .iter()
            .map(|n| n.pod_count())
            .max()
            .unwrap_or(0);
        let idlest = snapshot
            .nodes()
            .iter()
            .map(|n| n.pod_count())
            .min()
            .unwrap_or(0);
        assert!(
            busiest - idlest <= 2,
            "balanced: {idlest}..={busiest} pods per node"
        );
    }
}

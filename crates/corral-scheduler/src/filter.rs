//! Feasibility: can this pod run on this node? Each check is a pure function returning the
//! reason Kubernetes prints when it fails. [`run_filters`] runs them in the order of the
//! Kubernetes default plugins (readiness first, then `NodeUnschedulable`, `TaintToleration`,
//! `NodeAffinity`, `NodePorts`, `NodeResourcesFit`) and, as Kubernetes does, stops at the first
//! check that fails: a node contributes the reasons of that one check (the resource check may
//! give several: "Too many pods", "Insufficient cpu", "Insufficient memory").

use std::borrow::Cow;

use crate::node::{NodeInfo, TAINT_NOT_READY, TAINT_UNSCHEDULABLE, Taint};
use crate::pod::PodInfo;

/// Why a node cannot take a pod, as Kubernetes words it.
pub type Reason = Cow<'static, str>;

pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_HOST_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_INSUFFICIENT_CPU: &str = "Insufficient cpu";
pub const REASON_INSUFFICIENT_MEMORY: &str = "Insufficient memory";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// `node(s) had untolerated taint {key: value}`, naming the first taint the pod does not
/// tolerate. (Kubernetes 1.33 and later print `node(s) had untolerated taint(s)` without the
/// taint; Corral keeps the older, more useful wording.)
pub fn untolerated_taint_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key, taint.value
    )
}

fn tolerates_no_schedule(pod: &PodInfo, key: &str) -> bool {
    pod.tolerates(&Taint {
        key: key.to_string(),
        value: String::new(),
        effect: "NoSchedule".to_string(),
    })
}

/// The node's `Ready` condition must be `True`, unless the pod tolerates the
/// `node.kubernetes.io/not-ready:NoSchedule` taint Kubernetes puts on such nodes.
pub fn node_ready(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    if node.is_ready() || tolerates_no_schedule(pod, TAINT_NOT_READY) {
        Ok(())
    } else {
        Err(Cow::Borrowed(REASON_NOT_READY))
    }
}

/// A cordoned node (`spec.unschedulable`) takes only pods that tolerate the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    if !node.is_unschedulable() || tolerates_no_schedule(pod, TAINT_UNSCHEDULABLE) {
        Ok(())
    } else {
        Err(Cow::Borrowed(REASON_UNSCHEDULABLE))
    }
}

/// Every `NoSchedule` and `NoExecute` taint must be tolerated.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    match node
        .taints()
        .iter()
        .find(|t| t.blocks_scheduling() && !pod.tolerates(t))
    {
        None => Ok(()),
        Some(taint) => Err(Cow::Owned(untolerated_taint_reason(taint))),
    }
}

/// `spec.nodeSelector` and the required node affinity must match the node.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    if pod.matches_node(node.name(), node.labels()) {
        Ok(())
    } else {
        Err(Cow::Borrowed(REASON_NODE_AFFINITY))
    }
}

/// No host port the pod wants may collide with one a pod on the node already binds.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    let taken = pod.host_ports().iter().any(|want| {
        node.host_ports()
            .iter()
            .any(|used| want.conflicts_with(used))
    });
    if taken {
        Err(Cow::Borrowed(REASON_HOST_PORTS))
    } else {
        Ok(())
    }
}

/// The node must have a pod slot left and, for each resource the pod requests, enough
/// allocatable not already requested. Every shortfall is a reason.
pub fn node_resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let mut reasons = Vec::new();
    if node.pod_count().saturating_add(1) > node.allowed_pods() {
        reasons.push(Cow::Borrowed(REASON_TOO_MANY_PODS));
    }
    let want = pod.requests().requests;
    let free = node.allocatable().minus(node.requested());
    if want.milli_cpu > 0 && want.milli_cpu > free.milli_cpu {
        reasons.push(Cow::Borrowed(REASON_INSUFFICIENT_CPU));
    }
    if want.memory > 0 && want.memory > free.memory {
        reasons.push(Cow::Borrowed(REASON_INSUFFICIENT_MEMORY));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Runs every check in order; `Err` carries the reasons of the first that fails.
pub fn run_filters(pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let single = |r: Reason| vec![r];
    node_ready(pod, node).map_err(single)?;
    node_unschedulable(pod, node).map_err(single)?;
    taint_toleration(pod, node).map_err(single)?;
    node_affinity(pod, node).map_err(single)?;
    node_ports(pod, node).map_err(single)?;
    node_resources_fit(pod, node)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{node, pod, pod_info, set, with_pods};

    type Filter = fn(&PodInfo, &NodeInfo) -> Result<(), Reason>;

    fn check(filter: Filter, table: Vec<(&str, Value, Value, Option<&str>)>) {
        for (case, pod, node, want) in table {
            let node = crate::testing::node_info(&node);
            let got = filter(&pod_info(&pod), &node);
            assert_eq!(got.err().as_deref(), want, "{case}");
        }
    }

    #[test]
    fn not_ready_nodes_are_filtered_unless_tolerated() {
        let not_ready = set(
            node("n1", "4", "8Gi", "110"),
            "/status/conditions",
            json!([{ "type": "Ready", "status": "False" }]),
        );
        let no_conditions = set(
            node("n1", "4", "8Gi", "110"),
            "/status/conditions",
            json!([]),
        );
        let tolerant = set(
            pod("p"),
            "/spec/tolerations",
            json!([{ "key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoSchedule" }]),
        );
        let tolerates_only_no_execute = set(
            pod("p"),
            "/spec/tolerations",
            json!([{ "key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }]),
        );
        check(
            node_ready,
            vec![
                (
                    "a Ready node",
                    pod("p"),
                    node("n1", "4", "8Gi", "110"),
                    None,
                ),
                (
                    "Ready=False",
                    pod("p"),
                    not_ready.clone(),
                    Some(REASON_NOT_READY),
                ),
                (
                    "no Ready condition yet",
                    pod("p"),
                    no_conditions,
                    Some(REASON_NOT_READY),
                ),
                (
                    "a pod tolerating not-ready:NoSchedule",
                    tolerant,
                    not_ready.clone(),
                    None,
                ),
                (
                    "the default not-ready:NoExecute toleration is not enough",
                    tolerates_only_no_execute,
                    not_ready,
                    Some(REASON_NOT_READY),
                ),
            ],
        );
    }

    #[test]
    fn cordoned_nodes_are_filtered_unless_tolerated() {
        let cordoned = set(
            node("n1", "4", "8Gi", "110"),
            "/spec/unschedulable",
            json!(true),
        );
        let tolerant = set(
            pod("p"),
            "/spec/tolerations",
            json!([{ "key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule" }]),
        );
        let tolerates_all = set(
            pod("p"),
            "/spec/tolerations",
            json!([{ "operator": "Exists" }]),
        );
        check(
            node_unschedulable,
            vec![
                (
                    "a schedulable node",
                    pod("p"),
                    node("n1", "4", "8Gi", "110"),
                    None,
                ),
                (
                    "a cordoned node",
                    pod("p"),
                    cordoned.clone(),
                    Some(REASON_UNSCHEDULABLE),
                ),
                (
                    "a pod tolerating unschedulable",
                    tolerant,
                    cordoned.clone(),
                    None,
                ),
                ("a pod tolerating everything", tolerates_all, cordoned, None),
            ],
        );
    }

    #[test]
    fn untolerated_no_schedule_and_no_execute_taints_filter_the_node() {
        let tainted = |taints: Value| set(node("n1", "4", "8Gi", "110"), "/spec/taints", taints);
        let tolerating = |tolerations: Value| set(pod("p"), "/spec/tolerations", tolerations);
        check(
            taint_toleration,
            vec![
                ("no taints", pod("p"), node("n1", "4", "8Gi", "110"), None),
                (
                    "NoSchedule names the taint",
                    pod("p"),
                    tainted(
                        json!([{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }]),
                    ),
                    Some("node(s) had untolerated taint {dedicated: gpu}"),
                ),
                (
                    "NoExecute with an empty value",
                    pod("p"),
                    tainted(
                        json!([{ "key": "node-role.kubernetes.io/control-plane", "effect": "NoExecute" }]),
                    ),
                    Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
                ),
                (
                    "PreferNoSchedule does not filter",
                    pod("p"),
                    tainted(json!([{ "key": "soft", "value": "x", "effect": "PreferNoSchedule" }])),
                    None,
                ),
                (
                    "Equal toleration",
                    tolerating(
                        json!([{ "key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule" }]),
                    ),
                    tainted(
                        json!([{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }]),
                    ),
                    None,
                ),
                (
                    "Equal toleration with another value",
                    tolerating(
                        json!([{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }]),
                    ),
                    tainted(
                        json!([{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }]),
                    ),
                    Some("node(s) had untolerated taint {dedicated: gpu}"),
                ),
                (
                    "Exists toleration with no effect",
                    tolerating(json!([{ "key": "dedicated", "operator": "Exists" }])),
                    tainted(json!([{ "key": "dedicated", "value": "gpu", "effect": "NoExecute" }])),
                    None,
                ),
                (
                    "the first untolerated taint is the one named",
                    tolerating(json!([{ "key": "a", "operator": "Exists" }])),
                    tainted(json!([
                        { "key": "a", "value": "1", "effect": "NoSchedule" },
                        { "key": "b", "value": "2", "effect": "NoSchedule" },
                        { "key": "c", "value": "3", "effect": "NoSchedule" },
                    ])),
                    Some("node(s) had untolerated taint {b: 2}"),
                ),
                (
                    "an empty key with Exists tolerates every taint",
                    tolerating(json!([{ "operator": "Exists" }])),
                    tainted(
                        json!([{ "key": "a", "value": "1", "effect": "NoSchedule" }, { "key": "b", "effect": "NoExecute" }]),
                    ),
                    None,
                ),
                (
                    "a toleration for another effect",
                    tolerating(
                        json!([{ "key": "a", "operator": "Exists", "effect": "NoExecute" }]),
                    ),
                    tainted(json!([{ "key": "a", "value": "1", "effect": "NoSchedule" }])),
                    Some("node(s) had untolerated taint {a: 1}"),
                ),
            ],
        );
    }

    #[test]
    fn node_selector_and_required_affinity_must_match() {
        let labelled = set(
            node("n1", "4", "8Gi", "110"),
            "/metadata/labels",
            json!({ "disk": "ssd", "zone": "a" }),
        );
        let affinity = |terms: Value| {
            set(
                pod("p"),
                "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                json!({ "nodeSelectorTerms": terms }),
            )
        };
        check(
            node_affinity,
            vec![
                ("no selector", pod("p"), labelled.clone(), None),
                (
                    "a matching nodeSelector",
                    set(pod("p"), "/spec/nodeSelector", json!({ "disk": "ssd" })),
                    labelled.clone(),
                    None,
                ),
                (
                    "a nodeSelector with a missing label",
                    set(
                        pod("p"),
                        "/spec/nodeSelector",
                        json!({ "disk": "ssd", "gpu": "yes" }),
                    ),
                    labelled.clone(),
                    Some(REASON_NODE_AFFINITY),
                ),
                (
                    "matching affinity",
                    affinity(
                        json!([{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a", "b"] }] }]),
                    ),
                    labelled.clone(),
                    None,
                ),
                (
                    "affinity that does not match",
                    affinity(
                        json!([{ "matchExpressions": [{ "key": "zone", "operator": "NotIn", "values": ["a"] }] }]),
                    ),
                    labelled.clone(),
                    Some(REASON_NODE_AFFINITY),
                ),
                (
                    "affinity on the node name",
                    affinity(
                        json!([{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n1"] }] }]),
                    ),
                    labelled.clone(),
                    None,
                ),
                (
                    "selector and affinity must both match",
                    set(
                        affinity(
                            json!([{ "matchExpressions": [{ "key": "zone", "operator": "Exists" }] }]),
                        ),
                        "/spec/nodeSelector",
                        json!({ "disk": "hdd" }),
                    ),
                    labelled,
                    Some(REASON_NODE_AFFINITY),
                ),
            ],
        );
    }

    #[test]
    fn host_ports_must_be_free_on_the_node() {
        let wants = |ports: Value| set(pod("p"), "/spec/containers/0/ports", ports);
        let used = |ports: Value| {
            with_pods(
                &node("n1", "4", "8Gi", "110"),
                &[set(
                    set(pod("old"), "/spec/containers/0/ports", ports),
                    "/spec/nodeName",
                    json!("n1"),
                )],
            )
        };
        let table: Vec<(&str, Value, NodeInfo, Option<&str>)> = vec![
            (
                "no host ports",
                pod("p"),
                used(json!([{ "hostPort": 80 }])),
                None,
            ),
            (
                "a free port",
                wants(json!([{ "hostPort": 81 }])),
                used(json!([{ "hostPort": 80 }])),
                None,
            ),
            (
                "the same port",
                wants(json!([{ "hostPort": 80 }])),
                used(json!([{ "hostPort": 80 }])),
                Some(REASON_HOST_PORTS),
            ),
            (
                "the same port over UDP",
                wants(json!([{ "hostPort": 80, "protocol": "UDP" }])),
                used(json!([{ "hostPort": 80 }])),
                None,
            ),
            (
                "the same port on different addresses",
                wants(json!([{ "hostPort": 80, "hostIP": "10.0.0.1" }])),
                used(json!([{ "hostPort": 80, "hostIP": "10.0.0.2" }])),
                None,
            ),
            (
                "a specific address against all addresses",
                wants(json!([{ "hostPort": 80, "hostIP": "10.0.0.1" }])),
                used(json!([{ "hostPort": 80 }])),
                Some(REASON_HOST_PORTS),
            ),
            (
                "only the containerPort is not a host port",
                wants(json!([{ "containerPort": 80 }])),
                used(json!([{ "hostPort": 80 }])),
                None,
            ),
        ];
        for (case, pod, node, want) in table {
            assert_eq!(
                node_ports(&pod_info(&pod), &node).err().as_deref(),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn resources_must_fit_and_every_shortfall_is_a_reason() {
        let requesting = |cpu: &str, memory: &str| {
            set(
                pod("p"),
                "/spec/containers/0/resources/requests",
                json!({ "cpu": cpu, "memory": memory }),
            )
        };
        let bound = |name: &str, cpu: &str, memory: &str| {
            set(
                set(
                    pod(name),
                    "/spec/containers/0/resources/requests",
                    json!({ "cpu": cpu, "memory": memory }),
                ),
                "/spec/nodeName",
                json!("n1"),
            )
        };
        let half_full = with_pods(&node("n1", "2", "4Gi", "3"), &[bound("a", "1", "2Gi")]);
        let full_of_pods = with_pods(
            &node("n1", "2", "4Gi", "2"),
            &[bound("a", "100m", "1Mi"), bound("b", "100m", "1Mi")],
        );
        let table: Vec<(&str, Value, &NodeInfo, Vec<&str>)> = vec![
            (
                "exactly the free amount fits",
                requesting("1", "2Gi"),
                &half_full,
                vec![],
            ),
            (
                "too much cpu",
                requesting("1001m", "1Gi"),
                &half_full,
                vec![REASON_INSUFFICIENT_CPU],
            ),
            (
                "too much memory",
                requesting("500m", "3Gi"),
                &half_full,
                vec![REASON_INSUFFICIENT_MEMORY],
            ),
            (
                "both",
                requesting("2", "4Gi"),
                &half_full,
                vec![REASON_INSUFFICIENT_CPU, REASON_INSUFFICIENT_MEMORY],
            ),
            (
                "no pod slot left",
                requesting("100m", "1Mi"),
                &full_of_pods,
                vec![REASON_TOO_MANY_PODS],
            ),
            (
                "no slot and no cpu",
                requesting("3", "1Mi"),
                &full_of_pods,
                vec![REASON_TOO_MANY_PODS, REASON_INSUFFICIENT_CPU],
            ),
            (
                "a pod requesting nothing only needs a slot",
                pod("p"),
                &half_full,
                vec![],
            ),
        ];
        for (case, pod, node, want) in table {
            let got = node_resources_fit(&pod_info(&pod), node)
                .err()
                .unwrap_or_default();
            let got: Vec<&str> = got.iter().map(|r| r.as_ref()).collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn a_node_reports_only_its_first_failing_check() {
        let cordoned_and_small = set(
            set(
                node("n1", "100m", "8Gi", "110"),
                "/spec/unschedulable",
                json!(true),
            ),
            "/spec/taints",
            json!([{ "key": "a", "value": "b", "effect": "NoSchedule" }]),
        );
        let big = set(
            pod("p"),
            "/spec/containers/0/resources/requests/cpu",
            json!("1"),
        );
        let got = run_filters(
            &pod_info(&big),
            &crate::testing::node_info(&cordoned_and_small),
        );
        assert_eq!(got, Err(vec![Cow::Borrowed(REASON_UNSCHEDULABLE)]));

        let small = node("n1", "100m", "100Mi", "110");
        let bigger = set(
            big,
            "/spec/containers/0/resources/requests/memory",
            json!("1Gi"),
        );
        let got = run_filters(&pod_info(&bigger), &crate::testing::node_info(&small));
        assert_eq!(
            got,
            Err(vec![
                Cow::Borrowed(REASON_INSUFFICIENT_CPU),
                Cow::Borrowed(REASON_INSUFFICIENT_MEMORY)
            ])
        );
    }
}

//! The node lifecycle controller against a real one-server store and API, in process: a node
//! that stops heartbeating turns Unknown and tainted, its pods are marked not ready and evicted
//! as their tolerations run out, a user's NoExecute taint evicts the pods that do not tolerate
//! it, and a node that heartbeats again loses the controller's taints (and keeps the user's).

use std::time::Duration;

use corral_api::ApiError;
use corral_client::Client;
use corral_controllers::node_lifecycle::{self, NodeLifecycleOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

fn now() -> String {
    node_lifecycle::format_time(jiff::Timestamp::now())
}

async fn make_node(client: &Client, name: &str, taints: Value) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"taints": taints},
    });
    let mut node = client.create(&node).await.expect("node created");
    node["status"] = json!({"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
    }]});
    client.update_status(&node).await.expect("node status");
    renew(client, name).await;
}

/// The agent's heartbeat: create or renew the node's Lease.
async fn renew(client: &Client, name: &str) {
    let renew_time = jiff::Timestamp::now().to_string();
    match client.get("Lease", "kube-node-lease", name).await {
        Ok(mut lease) => {
            lease["spec"]["renewTime"] = json!(renew_time);
            client.update(&lease).await.expect("lease renewed");
        }
        Err(ApiError::NotFound { .. }) => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew_time},
            });
            client.create(&lease).await.expect("lease created");
        }
        Err(e) => panic!("reading the lease: {e}"),
    }
}

async fn make_pod(client: &Client, name: &str, node: &str, tolerations: Value) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
                 "tolerations": tolerations},
    });
    let mut pod = client.create(&pod).await.expect("pod created");
    pod["status"] = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
    ]});
    client.update_status(&pod).await.expect("pod status");
}

async fn pod(client: &Client, name: &str) -> Result<Option<Value>, String> {
    match client.get("Pod", "default", name).await {
        Ok(p) => Ok(Some(p)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn taint_keys(node: &Value) -> Vec<String> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn ready(obj: &Value) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_its_pods_evicted_and_a_returning_one_untainted() {
    let s = server().await;
    let client = s.client.clone();
    let user_taint = json!({"key": "dedicated", "value": "x", "effect": "NoExecute"});
    make_node(&client, "dead", json!([])).await;
    make_node(&client, "alive", json!([user_taint])).await;
    let short = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 1}]);
    let for_ever = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                           "effect": "NoExecute"}]);
    make_pod(&client, "short", "dead", short).await;
    make_pod(&client, "default-tolerations", "dead", json!([])).await;
    make_pod(&client, "for-ever", "dead", for_ever).await;
    make_pod(&client, "untolerating", "alive", json!([])).await;
    let tolerating = json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]);
    make_pod(&client, "tolerating", "alive", tolerating).await;

    // The "alive" node heartbeats all along.
    let stop_alive = CancellationToken::new();
    let heartbeat = {
        let (client, stop) = (client.clone(), stop_alive.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                renew(&client, "alive").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    let cancel = CancellationToken::new();
    let opts = NodeLifecycleOptions {
        grace_period: Duration::from_secs(2),
        monitor_period: Duration::from_millis(500),
    };
    let controller = tokio::spawn(node_lifecycle::run(client.clone(), opts, cancel.clone()));

    // A NoExecute taint the pod does not tolerate: evicted at once, gracefully (the agent is
    // alive), with the DisruptionTarget condition.
    let evicted = eventually("the untolerating pod is marked for deletion", || async {
        match pod(&client, "untolerating").await? {
            Some(p) if p.pointer("/metadata/deletionTimestamp").is_some() => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let conds = evicted["status"]["conditions"].to_string();
    assert!(conds.contains("DeletionByTaintManager"), "{conds}");

    // The silent node: Unknown, tainted.
    let node = eventually("the silent node turns Unknown and tainted", || async {
        let n = client
            .get("Node", "", "dead")
            .await
            .map_err(|e| e.to_string())?;
        let keys = taint_keys(&n);
        if ready(&n) == "Unknown"
            && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
            && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
        {
            Ok(n)
        } else {
            Err(n.to_string())
        }
    })
    .await;
    let cond = node["status"]["conditions"][0].clone();
    assert_eq!(cond["reason"], "NodeStatusUnknown", "{cond}");
    assert_eq!(cond["message"], "Kubelet stopped posting node status.");

    // Its pods: the short toleration runs out and the pod is deleted outright; the others are
    // marked not ready and stay.
    eventually("the short-tolerating pod is deleted", || async {
        match pod(&client, "short").await? {
            None => Ok(()),
            Some(p) => Err(p.to_string()),
        }
    })
    .await;
    for name in ["default-tolerations", "for-ever"] {
        eventually("the tolerating pods are marked not ready", || async {
            match pod(&client, name).await? {
                Some(p) if ready(&p) == "False" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    // The healthy node keeps its user's taint, and the pod tolerating it stays.
    let alive = client.get("Node", "", "alive").await.expect("node");
    assert_eq!(taint_keys(&alive), vec!["dedicated:NoExecute".to_string()]);
    assert_eq!(ready(&alive), "True");
    let tolerating = pod(&client, "tolerating")
        .await
        .expect("read")
        .expect("still there");
    assert!(tolerating.pointer("/metadata/deletionTimestamp").is_none());

    // The silent node heartbeats again: the controller's taints go.
    renew(&client, "dead").await;
    eventually("the returning node is untainted", || async {
        let n = client
            .get("Node", "", "dead")
            .await
            .map_err(|e| e.to_string())?;
        let keys = taint_keys(&n);
        if keys.is_empty() {
            Ok(())
        } else {
            Err(format!("{keys:?}"))
        }
    })
    .await;
    assert!(
        pod(&client, "default-tolerations")
            .await
            .expect("read")
            .is_some()
    );

    // What happened is told in Events, as Kubernetes tells it.
    let wanted = [
        (
            "Node",
            "dead",
            "NodeNotReady",
            "Node dead status is now: NodeNotReady",
        ),
        ("Pod", "for-ever", "NodeNotReady", "Node is not ready"),
        (
            "Pod",
            "short",
            "TaintManagerEviction",
            "Marking for deletion Pod default/short",
        ),
        (
            "Pod",
            "untolerating",
            "TaintManagerEviction",
            "Marking for deletion Pod default/untolerating",
        ),
        (
            "Pod",
            "default-tolerations",
            "TaintManagerEviction",
            "Cancelling deletion of Pod default/default-tolerations",
        ),
    ];
    eventually("the events are written", || async {
        let events = client
            .list("Event", Some("default"), &Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let seen: Vec<(String, String, String, String)> = events
            .iter()
            .map(|e| {
                let s = |p: &str| {
                    e.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (
                    s("/involvedObject/kind"),
                    s("/involvedObject/name"),
                    s("/reason"),
                    s("/message"),
                )
            })
            .collect();
        for (kind, name, reason, message) in wanted {
            if !seen
                .iter()
                .any(|e| e == &(kind.into(), name.into(), reason.into(), message.into()))
            {
                return Err(format!(
                    "no {kind} {name} {reason} {message:?} among {seen:?}"
                ));
            }
        }
        Ok(())
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops when cancelled")
        .expect("the controller task");
    stop_alive.cancel();
    let _ = heartbeat.await;
    s.shutdown.cancel();
    s.store.shutdown().await;
}

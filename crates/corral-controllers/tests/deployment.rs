//! The Deployment and DaemonSet controllers against a real one-server store and API, in
//! process. No ReplicaSet controller, scheduler or agent runs: the test plays their part by
//! writing ReplicaSet status (and Node objects) itself.
//!
//! - A Deployment gets its first ReplicaSet at revision 1; a new image gets a second one at
//!   revision 2, and as the test marks the new ReplicaSet's replicas available the old one is
//!   scaled down, never beyond `replicas + maxSurge` in all nor below `replicas -
//!   maxUnavailable` available.
//! - A DaemonSet over two Nodes gets two pods; a third Node gets a third; a tainted Node none;
//!   a deleted Node loses its pod.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::{Client, DeleteOptions, ListOptions};
use corral_controllers::daemonset::{self, DaemonSetOptions};
use corral_controllers::deployment::{self, DeploymentOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn annotation<'a>(v: &'a Value, key: &str) -> &'a str {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn image(rs: &Value) -> &str {
    text(rs, "/spec/template/spec/containers/0/image")
}

async fn list(client: &Client, kind: &str, ns: &str) -> Result<Vec<Value>, String> {
    client
        .list(kind, Some(ns), &ListOptions::default())
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

async fn events(client: &Client, ns: &str) -> Vec<(String, String)> {
    list(client, "Event", ns)
        .await
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                text(e, "/reason").to_string(),
                text(e, "/message").to_string(),
            )
        })
        .collect()
}

/// Plays the ReplicaSet controller and the agents for one step: every ReplicaSet's pods exist
/// at once (`status.replicas = spec.replicas`); those of the ReplicaSet with `new_image` become
/// available one more per call, the others keep what they had (at most their size).
async fn pods_step(client: &Client, new_image: &str) -> Result<(), String> {
    for rs in list(client, "ReplicaSet", "default").await? {
        let replicas = int(&rs, "/spec/replicas");
        let available = int(&rs, "/status/availableReplicas");
        let available = if image(&rs) == new_image {
            (available + 1).min(replicas)
        } else {
            available.min(replicas)
        };
        let status = json!({"replicas": replicas, "fullyLabeledReplicas": replicas,
            "readyReplicas": available, "availableReplicas": available,
            "observedGeneration": int(&rs, "/metadata/generation")});
        if rs.get("status") == Some(&status) {
            continue;
        }
        let mut next = rs.clone();
        next["status"] = status;
        match client.update_status(&next).await {
            // The controller scaled it meanwhile: next round.
            Ok(_) | Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_a_new_image_within_its_surge_and_unavailability() {
    let s = server().await;
    let client = s.client.clone();
    let cancel = CancellationToken::new();
    let opts = DeploymentOptions {
        resync_period: Duration::from_secs(2),
        expectation_timeout: Duration::from_secs(5),
    };
    let controller = tokio::spawn(deployment::run(client.clone(), opts, cancel.clone()));

    // nginx-deployment, as in the workloads: 3 replicas, the default 25% / 25% (surge 1,
    // unavailable 0 of 3).
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "busybox:1.14.2",
                                         "ports": [{"containerPort": 80}]}]},
            },
        },
    });
    client.create(&manifest).await.expect("deployment created");

    let first = eventually("the first replica set", || async {
        let rses = list(&client, "ReplicaSet", "default").await?;
        match rses.as_slice() {
            [rs] if int(rs, "/spec/replicas") == 3 => Ok(rs.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let hash = text(&first, "/metadata/labels/pod-template-hash").to_string();
    assert!(!hash.is_empty(), "{first}");
    assert_eq!(
        text(&first, "/metadata/name"),
        format!("nginx-deployment-{hash}")
    );
    assert_eq!(annotation(&first, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/desired-replicas"),
        "3"
    );
    assert_eq!(
        annotation(&first, "deployment.kubernetes.io/max-replicas"),
        "4"
    );
    assert_eq!(
        first.pointer("/spec/selector/matchLabels"),
        Some(&json!({"app": "nginx", "pod-template-hash": hash}))
    );
    assert_eq!(
        text(&first, "/spec/template/metadata/labels/pod-template-hash"),
        hash
    );
    assert_eq!(
        text(&first, "/metadata/ownerReferences/0/kind"),
        "Deployment"
    );

    // Its pods come up: the Deployment is available and its rollout complete.
    for _ in 0..3 {
        pods_step(&client, "busybox:1.14.2")
            .await
            .expect("status written");
    }
    eventually("the first rollout completes", || async {
        let d = client
            .get("Deployment", "default", "nginx-deployment")
            .await
            .map_err(|e| e.to_string())?;
        let progressing = d
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
            .map(|c| text(c, "/reason").to_string());
        if int(&d, "/status/availableReplicas") == 3
            && int(&d, "/status/updatedReplicas") == 3
            && progressing.as_deref() == Some("NewReplicaSetAvailable")
            && annotation(&d, "deployment.kubernetes.io/revision") == "1"
        {
            Ok(())
        } else {
            Err(d["status"].to_string())
        }
    })
    .await;

    // `corralctl set image deployment/nginx-deployment nginx=busybox:1.9.1`.
    let mut d = client
        .get("Deployment", "default", "nginx-deployment")
        .await
        .expect("read");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.9.1");
    client.update(&d).await.expect("image set");

    // Play the pods; check the bounds at every look.
    let seen_two = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    eventually("the rollout to busybox:1.9.1 completes", || {
        let client = client.clone();
        let seen_two = seen_two.clone();
        async move {
            let rses = list(&client, "ReplicaSet", "default").await?;
            let total: i64 = rses.iter().map(|rs| int(rs, "/spec/replicas")).sum();
            let available: i64 = rses
                .iter()
                .map(|rs| int(rs, "/spec/replicas").min(int(rs, "/status/availableReplicas")))
                .sum();
            assert!(total <= 4, "more than replicas + maxSurge: {rses:?}");
            if rses.len() == 2 {
                seen_two.store(true, std::sync::atomic::Ordering::Relaxed);
                assert!(
                    available >= 3,
                    "fewer than replicas - maxUnavailable available: {rses:?}"
                );
            }
            pods_step(&client, "busybox:1.9.1").await?;
            let new = rses.iter().find(|rs| image(rs) == "busybox:1.9.1");
            let old = rses.iter().find(|rs| image(rs) == "busybox:1.14.2");
            let d = client
                .get("Deployment", "default", "nginx-deployment")
                .await
                .map_err(|e| e.to_string())?;
            match (new, old) {
                (Some(new), Some(old))
                    if int(new, "/spec/replicas") == 3
                        && int(new, "/status/availableReplicas") == 3
                        && int(old, "/spec/replicas") == 0
                        && int(&d, "/status/updatedReplicas") == 3
                        && int(&d, "/status/availableReplicas") == 3 =>
                {
                    Ok((new.clone(), old.clone(), d))
                }
                _ => Err(format!("{rses:?} / {}", d["status"])),
            }
        }
    })
    .await;
    assert!(
        seen_two.load(std::sync::atomic::Ordering::Relaxed),
        "the new replica set was never seen beside the old one"
    );
    let (new, old, d) = eventually("the revisions settle", || async {
        let rses = list(&client, "ReplicaSet", "default").await?;
        let d = client
            .get("Deployment", "default", "nginx-deployment")
            .await
            .map_err(|e| e.to_string())?;
        let new = rses.iter().find(|rs| image(rs) == "busybox:1.9.1").cloned();
        let old = rses
            .iter()
            .find(|rs| image(rs) == "busybox:1.14.2")
            .cloned();
        match (new, old) {
            (Some(new), Some(old))
                if annotation(&d, "deployment.kubernetes.io/revision") == "2" =>
            {
                Ok((new, old, d))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(annotation(&new, "deployment.kubernetes.io/revision"), "2");
    assert_eq!(annotation(&old, "deployment.kubernetes.io/revision"), "1");
    assert_ne!(
        text(&new, "/metadata/labels/pod-template-hash"),
        text(&old, "/metadata/labels/pod-template-hash")
    );
    assert_eq!(
        int(&d, "/status/observedGeneration"),
        int(&d, "/metadata/generation")
    );

    // What happened is told in ScalingReplicaSet events on the Deployment.
    let new_name = text(&new, "/metadata/name").to_string();
    let old_name = text(&old, "/metadata/name").to_string();
    let wanted = [
        format!("Scaled up replica set {old_name} to 3"),
        format!("Scaled up replica set {new_name} to 1"),
        format!("Scaled up replica set {new_name} to 3"),
        format!("Scaled down replica set {old_name} to 0"),
    ];
    eventually("the scaling events are written", || async {
        let seen = events(&client, "default").await;
        for message in &wanted {
            if !seen
                .iter()
                .any(|(r, m)| r == "ScalingReplicaSet" && m == message)
            {
                return Err(format!("no {message:?} among {seen:?}"));
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
    s.stop().await;
}

async fn make_node(client: &Client, name: &str, taints: Value) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
    });
    client.create(&node).await.expect("node created");
}

/// The DaemonSet's pods: node → pod.
async fn daemon_pods(client: &Client) -> Result<BTreeMap<String, Value>, String> {
    Ok(list(client, "Pod", "kube-system")
        .await?
        .into_iter()
        .filter(|p| text(p, "/metadata/ownerReferences/0/name") == "fluentd-elasticsearch")
        .map(|p| (text(&p, "/spec/nodeName").to_string(), p))
        .collect())
}

async fn pods_on(client: &Client, nodes: &[&str]) -> BTreeMap<String, Value> {
    let want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    eventually(&format!("one daemon pod on each of {nodes:?}"), || async {
        let pods = daemon_pods(client).await?;
        let on: Vec<String> = pods.keys().cloned().collect();
        if on == want && pods.len() == want.len() {
            Ok(pods)
        } else {
            Err(format!("{on:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_puts_one_pod_on_each_node_as_nodes_come_and_go() {
    let s = server().await;
    let client = s.client.clone();
    make_node(&client, "n1", json!([])).await;
    // A control-plane node the DaemonSet tolerates.
    make_node(
        &client,
        "n2",
        json!([{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}]),
    )
    .await;
    let cancel = CancellationToken::new();
    let opts = DaemonSetOptions {
        resync_period: Duration::from_secs(2),
        expectation_timeout: Duration::from_secs(5),
    };
    let controller = tokio::spawn(daemonset::run(client.clone(), opts, cancel.clone()));

    // The fluentd-style log agent of the workloads.
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "fluentd-elasticsearch", "namespace": "kube-system",
                     "labels": {"k8s-app": "fluentd-logging"}},
        "spec": {
            "selector": {"matchLabels": {"name": "fluentd-elasticsearch"}},
            "template": {
                "metadata": {"labels": {"name": "fluentd-elasticsearch"}},
                "spec": {
                    "tolerations": [{"key": "node-role.kubernetes.io/master", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "fluentd-elasticsearch", "image": "busybox",
                        "resources": {"limits": {"memory": "200Mi"},
                                      "requests": {"cpu": "100m", "memory": "200Mi"}},
                        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}],
                    }],
                    "terminationGracePeriodSeconds": 30,
                    "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}],
                },
            },
        },
    });
    let ds = client.create(&manifest).await.expect("daemon set created");

    let pods = pods_on(&client, &["n1", "n2"]).await;
    for (node, pod) in &pods {
        assert_eq!(text(pod, "/spec/nodeName"), node);
        assert!(
            text(pod, "/metadata/name").starts_with("fluentd-elasticsearch-"),
            "{pod}"
        );
        assert_eq!(text(pod, "/metadata/ownerReferences/0/kind"), "DaemonSet");
        assert_eq!(
            text(pod, "/metadata/ownerReferences/0/uid"),
            text(&ds, "/metadata/uid")
        );
        assert_eq!(text(pod, "/metadata/labels/pod-template-generation"), "1");
        assert!(!text(pod, "/metadata/labels/controller-revision-hash").is_empty());
        let tolerations = pod["spec"]["tolerations"].to_string();
        assert!(
            tolerations.contains("node.kubernetes.io/unschedulable"),
            "{tolerations}"
        );
    }

    // A node that joins gets its pod; one with a taint the pod does not tolerate does not.
    make_node(
        &client,
        "gpu",
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;
    make_node(&client, "n3", json!([])).await;
    pods_on(&client, &["n1", "n2", "n3"]).await;
    eventually("the status counts three nodes", || async {
        let ds = client
            .get("DaemonSet", "kube-system", "fluentd-elasticsearch")
            .await
            .map_err(|e| e.to_string())?;
        let counts = (
            int(&ds, "/status/desiredNumberScheduled"),
            int(&ds, "/status/currentNumberScheduled"),
            int(&ds, "/status/updatedNumberScheduled"),
            int(&ds, "/status/numberMisscheduled"),
            int(&ds, "/status/observedGeneration"),
        );
        if counts == (3, 3, 3, 0, 1) {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    })
    .await;
    assert!(
        !daemon_pods(&client)
            .await
            .expect("list")
            .contains_key("gpu")
    );

    // A node that leaves loses its pod.
    client
        .delete("Node", "", "n2", &DeleteOptions::default())
        .await
        .expect("node deleted");
    pods_on(&client, &["n1", "n3"]).await;

    eventually("the creations are told in events", || async {
        let seen = events(&client, "kube-system").await;
        let created = seen
            .iter()
            .filter(|(r, m)| {
                r == "SuccessfulCreate" && m.starts_with("Created pod: fluentd-elasticsearch-")
            })
            .count();
        let deleted = seen.iter().any(|(r, _)| r == "SuccessfulDelete");
        if created >= 3 && deleted {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops when cancelled")
        .expect("the controller task");
    s.stop().await;
}

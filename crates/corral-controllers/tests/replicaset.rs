//! The ReplicaSet controller against a real one-server store and API, in process: a ReplicaSet
//! gets its pods (with controller ownerReferences), a deleted pod is replaced, the status counts
//! ready and available pods (no agent runs here: the test marks pods Running and Ready itself),
//! scaling down deletes the surplus, a matching orphan is adopted (and, being surplus, deleted
//! first), and a pod relabeled out of the selector is released and replaced.

use std::time::Duration;

use corral_client::{Client, DeleteOptions, ListOptions};
use corral_controllers::replicaset::{self, ReplicaSetOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("now is in range")
        .to_string()
}

async fn pods(client: &Client, selector: &str) -> Result<Vec<Value>, String> {
    let options = ListOptions {
        label_selector: selector.into(),
        ..ListOptions::default()
    };
    client
        .list("Pod", Some("default"), &options)
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

fn name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string)
}

/// What an agent would report: the pod runs and is ready.
async fn mark_ready(client: &Client, pod: &Value) {
    let mut pod = pod.clone();
    pod["status"] = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
        "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "busybox",
                               "imageID": "", "state": {"running": {"startedAt": now()}}}],
    });
    client.update_status(&pod).await.expect("pod status");
}

async fn replica_set(client: &Client) -> Result<Value, String> {
    client
        .get("ReplicaSet", "default", "web")
        .await
        .map_err(|e| e.to_string())
}

/// Waits for exactly `n` pods labelled `app=web`, all controlled by the ReplicaSet `uid`.
async fn owned_pods(client: &Client, uid: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} pods owned by the ReplicaSet"), || async {
        let pods = pods(client, "app=web").await?;
        let owned = pods
            .iter()
            .filter(|p| controller_uid(p).as_deref() == Some(uid))
            .count();
        if pods.len() == n && owned == n {
            Ok(pods)
        } else {
            Err(format!(
                "{} pods, {owned} owned: {:?}",
                pods.len(),
                pods.iter().map(name).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

async fn status_is(client: &Client, wanted: Value) -> Value {
    eventually(&format!("the status is {wanted}"), || {
        let wanted = wanted.clone();
        async move {
            let rs = replica_set(client).await?;
            let status = &rs["status"];
            let all = wanted
                .as_object()
                .expect("an object")
                .iter()
                .all(|(k, v)| &status[k] == v);
            if all { Ok(rs) } else { Err(status.to_string()) }
        }
    })
    .await
}

async fn events(client: &Client) -> Result<Vec<(String, String)>, String> {
    let events = client
        .list("Event", Some("default"), &ListOptions::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(events
        .iter()
        .filter(|e| e["involvedObject"]["kind"] == "ReplicaSet")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_keeps_its_pods_counts_them_and_scales() {
    let s = server().await;
    let client = s.client.clone();
    let cancel = CancellationToken::new();
    let opts = ReplicaSetOptions {
        workers: 2,
        resync: Duration::from_secs(2),
    };
    let controller = tokio::spawn(replicaset::run(client.clone(), opts, cancel.clone()));

    let rs = client
        .create(&json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "busybox"}]},
                },
            },
        }))
        .await
        .expect("the ReplicaSet is created");
    let uid = rs["metadata"]["uid"].as_str().expect("a uid").to_string();

    // Three pods, each named after the ReplicaSet and controlled by it.
    let first = owned_pods(&client, &uid, 3).await;
    for pod in &first {
        assert!(name(pod).starts_with("web-"), "{}", name(pod));
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");
    }
    status_is(&client, json!({"replicas": 3, "fullyLabeledReplicas": 3})).await;

    // A deleted pod is replaced by a new one.
    let gone = name(&first[0]);
    client
        .delete("Pod", "default", &gone, &DeleteOptions::default())
        .await
        .expect("the pod is deleted");
    let second = eventually("the deleted pod is replaced", || async {
        let pods = owned_pods(&client, &uid, 3).await;
        if pods.iter().any(|p| name(p) == gone) {
            Err(format!("{gone} still listed"))
        } else {
            Ok(pods)
        }
    })
    .await;

    // Ready pods are counted ready and (minReadySeconds 0) available.
    for pod in &second {
        mark_ready(&client, pod).await;
    }
    let rs = status_is(
        &client,
        json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3,
               "availableReplicas": 3, "observedGeneration": 1}),
    )
    .await;
    assert_eq!(rs["metadata"]["generation"], 1);

    // Scaled to 1: two pods are deleted, one is kept.
    eventually("the ReplicaSet is scaled to 1", || async {
        let mut rs = replica_set(&client).await?;
        rs["spec"]["replicas"] = json!(1);
        client.update(&rs).await.map_err(|e| e.to_string())
    })
    .await;
    let kept = owned_pods(&client, &uid, 1).await;
    status_is(
        &client,
        json!({"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2}),
    )
    .await;

    // A matching orphan is adopted; as the surplus, not ready and Pending, it goes first.
    let orphan = client
        .create(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "busybox"}]},
        }))
        .await
        .expect("the orphan is created");
    eventually("the orphan is deleted and the ready pod kept", || async {
        let pods = pods(&client, "app=web").await?;
        let names: Vec<String> = pods.iter().map(name).collect();
        if names == vec![name(&kept[0])] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    assert_eq!(name(&orphan), "stray");

    // A pod relabeled out of the selector is released and replaced.
    let mut relabeled = client
        .get("Pod", "default", &name(&kept[0]))
        .await
        .expect("the kept pod");
    relabeled["metadata"]["labels"] = json!({"app": "retired"});
    client.update(&relabeled).await.expect("relabeled");
    eventually("the relabeled pod is released", || async {
        let p = client
            .get("Pod", "default", &name(&kept[0]))
            .await
            .map_err(|e| e.to_string())?;
        match p.pointer("/metadata/ownerReferences") {
            None => Ok(()),
            Some(refs) => Err(refs.to_string()),
        }
    })
    .await;
    let replacement = owned_pods(&client, &uid, 1).await;
    assert_ne!(name(&replacement[0]), name(&kept[0]));

    // What happened is told in Events on the ReplicaSet, as Kubernetes tells it: 3 + 1 + 1
    // creations, 2 + 1 deletions (the test's own deletion is not the controller's).
    eventually("the events are written", || async {
        let events = events(&client).await?;
        let count = |reason: &str| events.iter().filter(|(r, _)| r == reason).count();
        let deleted_stray = events
            .iter()
            .any(|(r, m)| r == "SuccessfulDelete" && m == "Deleted pod: stray");
        let created = events
            .iter()
            .filter(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: web-"))
            .count();
        if created == 5 && count("SuccessfulDelete") == 3 && deleted_stray {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops when cancelled")
        .expect("the controller task");
    s.shutdown.cancel();
    s.store.shutdown().await;
}

/// Expectations keep the controller from acting on a cache that lags its own creations: a
/// large ReplicaSet gets exactly its replicas, never a surplus it then has to delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_replica_set_is_created_exactly_once() {
    const N: usize = 300;
    let s = server().await;
    let client = s.client.clone();
    let cancel = CancellationToken::new();
    let opts = ReplicaSetOptions {
        workers: 2,
        resync: Duration::from_millis(200),
    };
    let controller = tokio::spawn(replicaset::run(client.clone(), opts, cancel.clone()));
    let rs = client
        .create(&json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": N,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "busybox"}]},
                },
            },
        }))
        .await
        .expect("the ReplicaSet is created");
    let uid = rs["metadata"]["uid"].as_str().expect("a uid").to_string();
    owned_pods(&client, &uid, N).await;
    status_is(&client, json!({"replicas": N})).await;
    eventually("every creation is told, and no deletion", || async {
        let events = events(&client).await?;
        let count = |reason: &str| events.iter().filter(|(r, _)| r == reason).count();
        if count("SuccessfulCreate") == N && count("SuccessfulDelete") == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} created, {} deleted",
                count("SuccessfulCreate"),
                count("SuccessfulDelete")
            ))
        }
    })
    .await;
    assert_eq!(pods(&client, "app=web").await.expect("pods").len(), N);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), controller)
        .await
        .expect("the controller stops when cancelled")
        .expect("the controller task");
    s.shutdown.cancel();
    s.store.shutdown().await;
}

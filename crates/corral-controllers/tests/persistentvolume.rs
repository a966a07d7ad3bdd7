//! The PV controller and the local-path provisioner against a real one-server store and API, in
//! process, without agents: static binding to the smallest fitting volume, dynamic provisioning
//! for Immediate and WaitForFirstConsumer classes (the scheduler's `selected-node` annotation
//! set by hand), the phases of each reclaim policy (the helper pods a node would run are marked
//! finished by hand, as their agent would report them), and the protection finalizers.

use std::time::Duration;

use corral_api::ApiError;
use corral_api::storage::{self, LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT_ANNOTATION};
use corral_client::{Client, DeleteOptions, ListOptions};
use corral_controllers::volume_helper::HELPER_NAMESPACE;
use corral_controllers::{local_path, persistentvolume};
use serde_json::{Value, json};

mod support;
use support::{Server, eventually, server};

/// A server with the PV controller and the local-path provisioner running.
async fn cluster() -> Server {
    let s = server().await;
    let opts = persistentvolume::PersistentVolumeOptions {
        resync: Duration::from_secs(2),
        ..Default::default()
    };
    tokio::spawn(persistentvolume::run(
        s.client.clone(),
        opts,
        s.shutdown.child_token(),
    ));
    let opts = local_path::LocalPathOptions {
        resync: Duration::from_secs(2),
        ..Default::default()
    };
    tokio::spawn(local_path::run(
        s.client.clone(),
        opts,
        s.shutdown.child_token(),
    ));
    s
}

async fn create(client: &Client, obj: Value) -> Value {
    client
        .create(&obj)
        .await
        .unwrap_or_else(|e| panic!("creating {obj}: {e}"))
}

fn host_volume(name: &str, size: &str, policy: &str, path: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": policy, "storageClassName": "",
                 "hostPath": {"path": path}},
    })
}

fn claim(name: &str, size: &str, class: Option<&str>) -> Value {
    let mut c = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    });
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

fn class(name: &str, provisioner: &str, mode: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": provisioner,
        "volumeBindingMode": mode, "reclaimPolicy": policy,
    })
}

/// A Ready Node publishing a local-path root, as its agent registers it.
async fn make_node(client: &Client, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                     "annotations": {LOCAL_PATH_ROOT_ANNOTATION: format!("/var/lib/{name}/local-path")}},
    });
    let mut node = create(client, node).await;
    node["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    client.update_status(&node).await.expect("node status");
}

async fn get(client: &Client, kind: &str, ns: &str, name: &str) -> Result<Value, String> {
    client.get(kind, ns, name).await.map_err(|e| e.to_string())
}

async fn gone(client: &Client, kind: &str, ns: &str, name: &str) -> Result<(), String> {
    match client.get(kind, ns, name).await {
        Err(ApiError::NotFound { .. }) => Ok(()),
        Ok(v) => Err(format!(
            "still there: phase {:?}, finalizers {:?}",
            storage::phase(&v),
            corral_api::object::finalizers(&v)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until the object's phase is `phase`; answers the object.
async fn phase(client: &Client, kind: &str, ns: &str, name: &str, want: &str) -> Value {
    eventually(&format!("{kind} {name} {want}"), || async {
        let v = get(client, kind, ns, name).await?;
        if storage::phase(&v) == want {
            Ok(v)
        } else {
            Err(format!("phase {:?}", storage::phase(&v)))
        }
    })
    .await
}

/// The events recorded about an object: `reason: message` lines.
async fn events(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let list = client
        .list(
            "Event",
            (!ns.is_empty()).then_some(ns),
            &ListOptions::default(),
        )
        .await
        .expect("events");
    list.items
        .iter()
        .filter(|e| e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name))
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn event_with(client: &Client, ns: &str, name: &str, text: &str) {
    eventually(
        &format!("an event about {name} saying {text:?}"),
        || async {
            let all = events(client, ns, name).await;
            if all.iter().any(|e| e.contains(text)) {
                Ok(())
            } else {
                Err(format!("{all:?}"))
            }
        },
    )
    .await
}

/// What the volume's node would do with its helper pod: run it to the end.
async fn finish_helper(client: &Client, pod: &str, succeeded: bool) -> Value {
    let mut p = eventually(&format!("helper pod {pod}"), || async {
        get(client, "Pod", HELPER_NAMESPACE, pod).await
    })
    .await;
    let (phase, code) = if succeeded {
        ("Succeeded", 0)
    } else {
        ("Failed", 1)
    };
    p["status"] = json!({"phase": phase, "containerStatuses": [{"name": "c",
        "state": {"terminated": {"exitCode": code, "reason": if succeeded { "Completed" } else { "Error" }}}}]});
    client.update_status(&p).await.expect("helper status");
    p
}

#[tokio::test]
async fn a_claim_binds_the_smallest_volume_that_fits_and_both_say_so() {
    let s = cluster().await;
    let c = &s.client;
    create(c, host_volume("big", "10Gi", "Retain", "/data/big")).await;
    create(c, host_volume("small", "2Gi", "Retain", "/data/small")).await;
    create(c, host_volume("tiny", "500Mi", "Retain", "/data/tiny")).await;
    // No default class exists: the claim stays without one.
    let made = create(c, claim("data", "1Gi", None)).await;
    assert!(made["spec"].get("storageClassName").is_none());
    assert_eq!(
        corral_api::object::finalizers(&made),
        vec!["kubernetes.io/pvc-protection".to_string()]
    );

    let bound = phase(c, "PersistentVolumeClaim", "default", "data", "Bound").await;
    assert_eq!(bound["spec"]["volumeName"], "small");
    assert_eq!(bound["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(bound["status"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(
        storage::annotation(&bound, storage::ANN_BIND_COMPLETED),
        Some("yes")
    );
    let pv = phase(c, "PersistentVolume", "", "small", "Bound").await;
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["claimRef"]["uid"], bound["metadata"]["uid"]);
    assert_eq!(
        storage::annotation(&pv, storage::ANN_BOUND_BY_CONTROLLER),
        Some("yes")
    );
    phase(c, "PersistentVolume", "", "big", "Available").await;
    phase(c, "PersistentVolume", "", "tiny", "Available").await;

    // A claim no volume fits waits, saying why.
    create(c, claim("huge", "100Gi", Some(""))).await;
    event_with(
        c,
        "default",
        "huge",
        "no persistent volumes available for this claim and no storage class is set",
    )
    .await;

    // A claim naming its volume gets exactly that one.
    let mut named = claim("named", "1Gi", Some(""));
    named["spec"]["volumeName"] = json!("big");
    create(c, named).await;
    let bound = phase(c, "PersistentVolumeClaim", "default", "named", "Bound").await;
    assert_eq!(bound["spec"]["volumeName"], "big");
    s.stop().await;
}

#[tokio::test]
async fn an_immediate_class_provisions_a_directory_on_a_ready_node() {
    let s = cluster().await;
    let c = &s.client;
    make_node(c, "node-a").await;
    create(
        c,
        class("fast", LOCAL_PATH_PROVISIONER, "Immediate", "Delete"),
    )
    .await;
    let made = create(c, claim("www", "1Gi", Some("fast"))).await;
    let bound = phase(c, "PersistentVolumeClaim", "default", "www", "Bound").await;
    let pv_name = format!("pvc-{}", made["metadata"]["uid"].as_str().expect("uid"));
    assert_eq!(bound["spec"]["volumeName"], pv_name.as_str());
    let pv = phase(c, "PersistentVolume", "", &pv_name, "Bound").await;
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        "/var/lib/node-a/local-path/".to_string() + &pv_name + "_default_www"
    );
    assert_eq!(storage::volume_node(&pv), Some("node-a"));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(
        storage::annotation(&pv, storage::ANN_PROVISIONED_BY),
        Some(LOCAL_PATH_PROVISIONER)
    );
    assert_eq!(
        storage::annotation(&bound, storage::ANN_STORAGE_PROVISIONER),
        Some(LOCAL_PATH_PROVISIONER)
    );
    event_with(c, "default", "www", "Successfully provisioned volume").await;
    s.stop().await;
}

#[tokio::test]
async fn wait_for_first_consumer_provisions_on_the_selected_node_only() {
    let s = cluster().await;
    let c = &s.client;
    make_node(c, "node-a").await;
    make_node(c, "node-b").await;
    // The default class, as a cluster's bootstrap makes it.
    create(c, storage::default_storage_class_object()).await;
    let made = create(c, claim("www", "1Gi", None)).await;
    assert_eq!(
        made["spec"]["storageClassName"], "local-path",
        "the DefaultStorageClass admission names the default class"
    );
    event_with(
        c,
        "default",
        "www",
        "waiting for first consumer to be created before binding",
    )
    .await;
    let pvs = c
        .list("PersistentVolume", None, &ListOptions::default())
        .await
        .expect("pvs");
    assert!(
        pvs.items.is_empty(),
        "nothing is provisioned before a pod is scheduled"
    );

    // The scheduler picked node-b for the claim's first pod.
    c.patch(
        "PersistentVolumeClaim",
        "default",
        "www",
        &json!({"metadata": {"annotations": {storage::ANN_SELECTED_NODE: "node-b"}}}),
        false,
    )
    .await
    .expect("annotated");
    let bound = phase(c, "PersistentVolumeClaim", "default", "www", "Bound").await;
    let pv = get(
        c,
        "PersistentVolume",
        "",
        bound["spec"]["volumeName"].as_str().expect("name"),
    )
    .await
    .expect("pv");
    assert_eq!(storage::volume_node(&pv), Some("node-b"));
    assert!(
        storage::volume_path(&pv).is_some_and(|p| p.starts_with("/var/lib/node-b/local-path/"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_class_of_an_unknown_provisioner_leaves_the_claim_pending_with_kubernetes_words() {
    let s = cluster().await;
    let c = &s.client;
    create(c, class("nfs", "example.com/nfs", "Immediate", "Delete")).await;
    create(c, claim("shared", "1Gi", Some("nfs"))).await;
    event_with(
        c,
        "default",
        "shared",
        "waiting for a volume to be created, either by external provisioner \"example.com/nfs\" or manually created by system administrator",
    )
    .await;
    let shared = get(c, "PersistentVolumeClaim", "default", "shared")
        .await
        .expect("claim");
    assert_eq!(storage::phase(&shared), "Pending");
    assert_eq!(
        storage::annotation(&shared, storage::ANN_STORAGE_PROVISIONER),
        Some("example.com/nfs")
    );
    // A default class that is not the newest default is not chosen.
    create(c, {
        let mut old = class("old-default", "example.com/nfs", "Immediate", "Delete");
        old["metadata"]["annotations"] = json!({storage::ANN_DEFAULT_CLASS: "true"});
        old
    })
    .await;
    let made = create(c, claim("defaulted", "1Gi", None)).await;
    assert_eq!(made["spec"]["storageClassName"], "old-default");
    let explicit_none = create(c, claim("none", "1Gi", Some(""))).await;
    assert_eq!(explicit_none["spec"]["storageClassName"], "");
    s.stop().await;
}

#[tokio::test]
async fn retain_keeps_a_released_volume_and_recycle_scrubs_it_for_the_next_claim() {
    let s = cluster().await;
    let c = &s.client;
    create(c, host_volume("kept", "1Gi", "Retain", "/data/kept")).await;
    create(c, claim("first", "1Gi", Some(""))).await;
    phase(c, "PersistentVolumeClaim", "default", "first", "Bound").await;
    c.delete(
        "PersistentVolumeClaim",
        "default",
        "first",
        &DeleteOptions::default(),
    )
    .await
    .expect("deleted");
    eventually("the claim is gone", || {
        gone(c, "PersistentVolumeClaim", "default", "first")
    })
    .await;
    let pv = phase(c, "PersistentVolume", "", "kept", "Released").await;
    assert_eq!(
        pv["spec"]["claimRef"]["name"], "first",
        "Released keeps its claimRef"
    );
    let helpers = c
        .list("Pod", Some(HELPER_NAMESPACE), &ListOptions::default())
        .await
        .expect("pods");
    assert!(helpers.items.is_empty(), "Retain runs nothing on the node");
    // A new claim does not get a Released volume.
    create(c, claim("second", "1Gi", Some(""))).await;
    event_with(c, "default", "second", "no persistent volumes available").await;

    // Recycle: scrubbed by a helper pod on the volume's node, then Available again.
    let mut recycled = host_volume("scrubbed", "1Gi", "Recycle", "/data/scrubbed");
    recycled["spec"]["storageClassName"] = json!("manual");
    recycled["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}});
    create(c, recycled).await;
    create(c, claim("third", "1Gi", Some("manual"))).await;
    phase(c, "PersistentVolumeClaim", "default", "third", "Bound").await;
    c.delete(
        "PersistentVolumeClaim",
        "default",
        "third",
        &DeleteOptions::default(),
    )
    .await
    .expect("deleted");
    let helper = finish_helper(c, "recycler-for-scrubbed", true).await;
    assert_eq!(helper["spec"]["nodeName"], "node-a");
    assert_eq!(
        helper["spec"]["containers"][0]["env"][0]["value"],
        "/data/scrubbed"
    );
    let pv = phase(c, "PersistentVolume", "", "scrubbed", "Available").await;
    assert!(pv["spec"].get("claimRef").is_none());
    event_with(c, "", "scrubbed", "Volume recycled").await;
    eventually("the helper pod is removed", || {
        gone(c, "Pod", HELPER_NAMESPACE, "recycler-for-scrubbed")
    })
    .await;
    // And it serves the next claim.
    create(c, claim("fourth", "1Gi", Some("manual"))).await;
    let bound = phase(c, "PersistentVolumeClaim", "default", "fourth", "Bound").await;
    assert_eq!(bound["spec"]["volumeName"], "scrubbed");
    s.stop().await;
}

#[tokio::test]
async fn delete_removes_a_provisioned_volume_and_a_failed_helper_fails_the_volume() {
    let s = cluster().await;
    let c = &s.client;
    make_node(c, "node-a").await;
    create(
        c,
        class("fast", LOCAL_PATH_PROVISIONER, "Immediate", "Delete"),
    )
    .await;
    let made = create(c, claim("www", "1Gi", Some("fast"))).await;
    let pv_name = format!("pvc-{}", made["metadata"]["uid"].as_str().expect("uid"));
    phase(c, "PersistentVolumeClaim", "default", "www", "Bound").await;
    c.delete(
        "PersistentVolumeClaim",
        "default",
        "www",
        &DeleteOptions::default(),
    )
    .await
    .expect("deleted");
    let helper = finish_helper(c, &format!("deleter-for-{pv_name}"), true).await;
    assert_eq!(helper["spec"]["nodeName"], "node-a");
    eventually("the volume is deleted", || {
        gone(c, "PersistentVolume", "", &pv_name)
    })
    .await;

    // A helper that fails leaves the volume Failed, saying why.
    let made = create(c, claim("www2", "1Gi", Some("fast"))).await;
    let pv_name = format!("pvc-{}", made["metadata"]["uid"].as_str().expect("uid"));
    phase(c, "PersistentVolumeClaim", "default", "www2", "Bound").await;
    c.delete(
        "PersistentVolumeClaim",
        "default",
        "www2",
        &DeleteOptions::default(),
    )
    .await
    .expect("deleted");
    finish_helper(c, &format!("deleter-for-{pv_name}"), false).await;
    let pv = phase(c, "PersistentVolume", "", &pv_name, "Failed").await;
    assert!(
        pv["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exit code 1")),
        "{pv}"
    );

    // An administrator's volume outside /tmp cannot be deleted: Failed, in Kubernetes' words.
    create(c, host_volume("admin", "1Gi", "Delete", "/srv/admin")).await;
    create(c, claim("admin-claim", "1Gi", Some(""))).await;
    phase(
        c,
        "PersistentVolumeClaim",
        "default",
        "admin-claim",
        "Bound",
    )
    .await;
    c.delete(
        "PersistentVolumeClaim",
        "default",
        "admin-claim",
        &DeleteOptions::default(),
    )
    .await
    .expect("deleted");
    phase(c, "PersistentVolume", "", "admin", "Failed").await;
    event_with(
        c,
        "",
        "admin",
        "host_path deleter only supports /tmp/.+ but received provided /srv/admin",
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn a_claim_in_use_and_a_bound_volume_are_not_removed_under_their_users() {
    let s = cluster().await;
    let c = &s.client;
    create(c, host_volume("vol", "1Gi", "Retain", "/data/vol")).await;
    create(c, claim("data", "1Gi", Some(""))).await;
    phase(c, "PersistentVolumeClaim", "default", "data", "Bound").await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "user", "namespace": "default"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
    });
    let mut pod = create(c, pod).await;
    pod["status"] = json!({"phase": "Running"});
    c.update_status(&pod).await.expect("pod status");

    // The bound volume is deleted first: it waits for its claim.
    let pv = c
        .delete("PersistentVolume", "", "vol", &DeleteOptions::default())
        .await
        .expect("delete accepted");
    assert!(corral_api::object::deletion_timestamp(&pv).is_some());
    let deleting = c
        .delete(
            "PersistentVolumeClaim",
            "default",
            "data",
            &DeleteOptions::default(),
        )
        .await
        .expect("delete accepted");
    assert!(corral_api::object::deletion_timestamp(&deleting).is_some());
    // Both stay while the pod runs.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(c, "PersistentVolumeClaim", "default", "data")
            .await
            .expect("the claim stays while a pod uses it");
        get(c, "PersistentVolume", "", "vol")
            .await
            .expect("the volume stays while bound");
    }
    // The pod goes: the claim goes, the volume is released and goes.
    c.delete(
        "Pod",
        "default",
        "user",
        &DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("pod deleted");
    eventually("the claim is gone", || {
        gone(c, "PersistentVolumeClaim", "default", "data")
    })
    .await;
    eventually("the volume is gone", || {
        gone(c, "PersistentVolume", "", "vol")
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn storage_objects_are_validated_and_a_claims_spec_is_immutable() {
    let s = server().await;
    let c = &s.client;
    let mut local = host_volume("local", "1Gi", "Retain", "/x");
    local["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("hostPath");
    local["spec"]["local"] = json!({"path": "/mnt/disks/ssd1"});
    let err = c
        .create(&local)
        .await
        .expect_err("local needs node affinity");
    assert!(
        err.to_string().contains("spec.nodeAffinity")
            && err
                .to_string()
                .contains("Local volume requires node affinity"),
        "{err}"
    );
    create(c, claim("data", "1Gi", Some(""))).await;
    let mut grown = get(c, "PersistentVolumeClaim", "default", "data")
        .await
        .expect("claim");
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let err = c
        .update(&grown)
        .await
        .expect_err("an unbound claim does not grow");
    assert!(
        err.to_string().contains("spec is immutable after creation"),
        "{err}"
    );
    let mut other_mode = get(c, "PersistentVolumeClaim", "default", "data")
        .await
        .expect("claim");
    other_mode["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert!(c.update(&other_mode).await.is_err());
    s.stop().await;
}

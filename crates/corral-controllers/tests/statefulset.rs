//! The StatefulSet controller against a real one-server store and API, in process. No agent runs
//! here: the tests play the node's part, marking pods Running and Ready with UpdateStatus, and
//! holding deleted pods in Terminating with a finalizer of their template (`example.com/node`)
//! until they let them go, as a node finishing a graceful deletion would.
//!
//! Every test records the watch events of Pods and PersistentVolumeClaims from its start (each
//! with its revision, the store's log index, so events of both kinds are totally ordered) and
//! checks the order of what happened against that log, not against samples: `web-1` is created
//! only after `web-0` turned Ready; a claim is created before its pod; a replacement pod appears
//! only after the old object is gone, and no two pod objects ever hold one ordinal; pods go
//! highest ordinal first, each only after the previous one is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_client::{
    Client, DeleteOptions, EventType, ListOptions, PropagationPolicy, WatchOptions,
};
use corral_controllers::statefulset::{self, SCALE_DOWN_FINALIZER, StatefulSetOptions};
use corral_controllers::{gc, namespace, persistentvolume};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

/// The finalizer the tests' "node" holds deleted pods with.
const NODE_FINALIZER: &str = "example.com/node";

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("now is in range")
        .to_string()
}

fn name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn uid(obj: &Value) -> String {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn label(obj: &Value, key: &str) -> String {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The reference StatefulSet `web` (serviceName `nginx`, claim template `www`), its pods held
/// by the node finalizer.
fn web(namespace: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "serviceName": "nginx",
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}, "finalizers": [NODE_FINALIZER]},
                "spec": {"containers": [{"name": "nginx", "image": "busybox",
                    "ports": [{"containerPort": 80, "name": "web"}],
                    "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    })
}

async fn list(client: &Client, kind: &str, namespace: &str) -> Result<Vec<Value>, String> {
    client
        .list(kind, Some(namespace), &ListOptions::default())
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

async fn pod_names(client: &Client, namespace: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = list(client, "Pod", namespace)
        .await?
        .iter()
        .map(name)
        .collect();
    names.sort();
    Ok(names)
}

/// Waits until the namespace holds exactly these pods (by name).
async fn pods_are(client: &Client, namespace: &str, wanted: &[&str]) -> Vec<Value> {
    eventually(&format!("the pods are {wanted:?}"), || async {
        let pods = list(client, "Pod", namespace).await?;
        let mut names: Vec<String> = pods.iter().map(name).collect();
        names.sort();
        if names == wanted {
            Ok(pods)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
}

async fn get(client: &Client, kind: &str, namespace: &str, name: &str) -> Result<Value, String> {
    client
        .get(kind, namespace, name)
        .await
        .map_err(|e| e.to_string())
}

/// What a node reports for a running pod that passed its readiness probe.
async fn mark_ready(client: &Client, namespace: &str, pod: &str) {
    eventually(&format!("{pod} is marked Running and Ready"), || async {
        let mut p = get(client, "Pod", namespace, pod).await?;
        p["status"] = json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
        });
        client
            .update_status(&p)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// The node lets a terminating pod go: without its finalizer, the object is deleted.
async fn release(client: &Client, namespace: &str, pod: &Value) {
    let patch = json!({"metadata": {
        "resourceVersion": pod["metadata"]["resourceVersion"],
        "finalizers": null,
    }});
    match client
        .patch("Pod", namespace, &name(pod), &patch, false)
        .await
    {
        Ok(_)
        | Err(corral_api::ApiError::NotFound { .. })
        | Err(corral_api::ApiError::Conflict { .. }) => {}
        Err(e) => panic!("releasing {}: {e}", name(pod)),
    }
}

/// Plays every node: pods that are Pending become Running and Ready, terminating pods are let
/// go. Runs until cancelled.
fn kubelet(client: Client, namespace: &str, cancel: CancellationToken) {
    let namespace = namespace.to_string();
    tokio::spawn(async move {
        while !cancel.is_cancelled() {
            if let Ok(pods) = list(&client, "Pod", &namespace).await {
                for pod in pods {
                    if pod.pointer("/metadata/deletionTimestamp").is_some() {
                        release(&client, &namespace, &pod).await;
                    } else if pod["status"]["phase"] == "Pending" {
                        let mut p = pod.clone();
                        p["status"] = json!({
                            "phase": "Running",
                            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
                        });
                        let _ = client.update_status(&p).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The log of changes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Ev {
    revision: u64,
    kind: &'static str,
    r#type: EventType,
    object: Value,
}

/// Every Pod and PersistentVolumeClaim change of a namespace from the moment it was started,
/// with its revision.
#[derive(Clone)]
struct Log {
    events: Arc<Mutex<Vec<Ev>>>,
}

impl Log {
    async fn start(client: &Client, namespace: &str, cancel: &CancellationToken) -> Log {
        let events = Arc::new(Mutex::new(Vec::new()));
        for kind in ["Pod", "PersistentVolumeClaim"] {
            let from = client
                .list(kind, Some(namespace), &ListOptions::default())
                .await
                .expect("list")
                .revision;
            let options = WatchOptions {
                from_revision: from,
                ..WatchOptions::default()
            };
            let mut stream = client.watch(kind, Some(namespace), &options);
            let (events, cancel) = (Arc::clone(&events), cancel.clone());
            tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => break,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(e)) if e.r#type != EventType::Bookmark => {
                            events.lock().expect("the log").push(Ev {
                                revision: e.revision,
                                kind,
                                r#type: e.r#type,
                                object: e.object,
                            });
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            });
        }
        Log { events }
    }

    /// The events so far, in revision order.
    fn events(&self) -> Vec<Ev> {
        let mut events = self.events.lock().expect("the log").clone();
        events.sort_by_key(|e| e.revision);
        events
    }

    /// Waits until the log holds an event `pick` finds, and answers its revision.
    async fn revision_of(&self, what: &str, pick: impl Fn(&Ev) -> bool) -> u64 {
        eventually(what, || async {
            self.events()
                .iter()
                .find(|e| pick(e))
                .map(|e| e.revision)
                .ok_or_else(|| format!("{} events so far", self.events().len()))
        })
        .await
    }

    async fn added(&self, kind: &str, object: &str) -> u64 {
        self.revision_of(&format!("{kind} {object} is created"), |e| {
            e.kind == kind && e.r#type == EventType::Added && name(&e.object) == object
        })
        .await
    }

    /// The revision at which pod `uid` was first seen Ready.
    async fn ready(&self, pod_uid: &str) -> u64 {
        self.revision_of(&format!("pod {pod_uid} turns Ready"), |e| {
            e.kind == "Pod" && uid(&e.object) == pod_uid && is_ready(&e.object)
        })
        .await
    }

    /// The revision at which pod `uid` started terminating.
    async fn terminating(&self, pod_uid: &str) -> u64 {
        self.revision_of(&format!("pod {pod_uid} starts terminating"), |e| {
            e.kind == "Pod"
                && uid(&e.object) == pod_uid
                && e.object.pointer("/metadata/deletionTimestamp").is_some()
        })
        .await
    }

    /// The revision at which pod `uid` was gone.
    async fn gone(&self, pod_uid: &str) -> u64 {
        self.revision_of(&format!("pod {pod_uid} is gone"), |e| {
            e.kind == "Pod" && uid(&e.object) == pod_uid && e.r#type == EventType::Deleted
        })
        .await
    }

    /// Replays the pod events: no pod is ever created while another object holds its name or
    /// its ordinal (`apps.kubernetes.io/pod-index`), terminating or not.
    fn assert_one_pod_per_identity(&self) {
        let mut live: BTreeMap<String, (String, String)> = BTreeMap::new(); // name → (uid, index)
        for e in self.events().iter().filter(|e| e.kind == "Pod") {
            let (n, u) = (name(&e.object), uid(&e.object));
            let index = label(&e.object, "apps.kubernetes.io/pod-index");
            match e.r#type {
                EventType::Added => {
                    assert!(
                        !live.contains_key(&n),
                        "revision {}: {n} created while {n} (uid {:?}) exists",
                        e.revision,
                        live.get(&n)
                    );
                    let holders: Vec<&String> = live
                        .iter()
                        .filter(|(_, (_, i))| *i == index)
                        .map(|(k, _)| k)
                        .collect();
                    assert!(
                        holders.is_empty(),
                        "revision {}: {n} takes ordinal {index} while {holders:?} holds it",
                        e.revision
                    );
                    live.insert(n, (u, index));
                }
                EventType::Deleted => {
                    live.remove(&n);
                }
                _ => {}
            }
        }
    }
}

struct Fixture {
    client: Client,
    cancel: CancellationToken,
    server: support::Server,
}

/// A server and the StatefulSet controller (and, with `collectors`, the garbage collector and
/// the namespace controller).
async fn start(collectors: bool) -> Fixture {
    let server = server().await;
    let client = server.client.clone();
    let cancel = CancellationToken::new();
    let opts = StatefulSetOptions {
        workers: 2,
        resync: Duration::from_secs(2),
    };
    tokio::spawn(statefulset::run(client.clone(), opts, cancel.clone()));
    if collectors {
        tokio::spawn(gc::run(client.clone(), Default::default(), cancel.clone()));
        tokio::spawn(namespace::run(
            client.clone(),
            Default::default(),
            cancel.clone(),
        ));
        // Claims carry `kubernetes.io/pvc-protection` (admission adds it); the PV controller
        // lifts it once no pod uses the claim, as in a real cluster.
        tokio::spawn(persistentvolume::run(
            client.clone(),
            Default::default(),
            cancel.clone(),
        ));
    }
    Fixture {
        client,
        cancel,
        server,
    }
}

impl Fixture {
    async fn stop(self) {
        self.cancel.cancel();
        self.server.stop().await;
    }
}

async fn status_of(client: &Client, namespace: &str) -> Result<Value, String> {
    Ok(get(client, "StatefulSet", namespace, "web").await?["status"].clone())
}

/// Waits until the StatefulSet's status has these fields.
async fn status_is(client: &Client, namespace: &str, wanted: Value) -> Value {
    eventually(&format!("the status has {wanted}"), || {
        let wanted = wanted.clone();
        async move {
            let status = status_of(client, namespace).await?;
            let all = wanted
                .as_object()
                .expect("an object")
                .iter()
                .all(|(k, v)| &status[k] == v);
            if all {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        }
    })
    .await
}

async fn scale(client: &Client, namespace: &str, replicas: i64) {
    client
        .patch(
            "StatefulSet",
            namespace,
            "web",
            &json!({"spec": {"replicas": replicas}}),
            false,
        )
        .await
        .expect("scaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_come_up_in_order_after_their_claims_and_scaling_keeps_the_claims() {
    let f = start(false).await;
    let client = f.client.clone();
    let log = Log::start(&client, "default", &f.cancel).await;
    let sts = client.create(&web("default", 2)).await.expect("created");

    // web-0, with its identity and its claim.
    let pods = pods_are(&client, "default", &["web-0"]).await;
    let web0 = &pods[0];
    assert_eq!(web0["spec"]["hostname"], "web-0");
    assert_eq!(web0["spec"]["subdomain"], "nginx");
    assert_eq!(label(web0, "statefulset.kubernetes.io/pod-name"), "web-0");
    assert_eq!(label(web0, "apps.kubernetes.io/pod-index"), "0");
    assert_eq!(
        web0["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": sts["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        web0["spec"]["volumes"][0],
        json!({"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}})
    );
    let claim0 = get(&client, "PersistentVolumeClaim", "default", "www-web-0")
        .await
        .expect("the claim of web-0");
    assert_eq!(claim0["metadata"]["labels"], json!({"app": "nginx"}));
    assert!(claim0["metadata"].get("ownerReferences").is_none());
    assert!(
        log.added("PersistentVolumeClaim", "www-web-0").await < log.added("Pod", "web-0").await,
        "the claim is created before its pod"
    );
    // The revision label names a ControllerRevision of the StatefulSet.
    let revision = label(web0, "controller-revision-hash");
    let rev = get(&client, "ControllerRevision", "default", &revision)
        .await
        .expect("the revision");
    assert_eq!(rev["revision"], 1);
    assert_eq!(
        rev["metadata"]["ownerReferences"][0]["uid"],
        sts["metadata"]["uid"]
    );
    status_is(
        &client,
        "default",
        json!({"replicas": 1, "readyReplicas": 0, "currentRevision": revision, "updateRevision": revision}),
    )
    .await;
    // The finalizer that makes a deletion scale down first.
    let stored = get(&client, "StatefulSet", "default", "web")
        .await
        .expect("the set");
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!([SCALE_DOWN_FINALIZER])
    );

    // web-1 only once web-0 is Ready.
    mark_ready(&client, "default", "web-0").await;
    let pods = pods_are(&client, "default", &["web-0", "web-1"]).await;
    let web0_ready = log.ready(&uid(web0)).await;
    assert!(
        log.added("Pod", "web-1").await > web0_ready,
        "web-1 is created after web-0 turned Ready"
    );
    assert!(
        log.added("PersistentVolumeClaim", "www-web-1").await < log.added("Pod", "web-1").await
    );
    let web1 = pods.iter().find(|p| name(p) == "web-1").expect("web-1");
    mark_ready(&client, "default", "web-1").await;
    status_is(
        &client,
        "default",
        json!({"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "currentReplicas": 2,
               "updatedReplicas": 2, "observedGeneration": 1}),
    )
    .await;
    let claim1 = get(&client, "PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("the claim of web-1");

    // 2 → 1: web-1 goes (held by its node until it lets it go), its claim stays.
    scale(&client, "default", 1).await;
    let terminating = eventually("web-1 is terminating", || async {
        let p = get(&client, "Pod", "default", "web-1").await?;
        if p.pointer("/metadata/deletionTimestamp").is_some() {
            Ok(p)
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    release(&client, "default", &terminating).await;
    pods_are(&client, "default", &["web-0"]).await;
    status_is(
        &client,
        "default",
        json!({"replicas": 1, "readyReplicas": 1}),
    )
    .await;
    let kept = get(&client, "PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("www-web-1 is kept");
    assert_eq!(uid(&kept), uid(&claim1));

    // 1 → 2: web-1 comes back to the same claim.
    scale(&client, "default", 2).await;
    let pods = pods_are(&client, "default", &["web-0", "web-1"]).await;
    let back = pods.iter().find(|p| name(p) == "web-1").expect("web-1");
    assert_ne!(uid(back), uid(web1), "a new pod");
    assert_eq!(
        back["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-1"
    );
    let again = get(&client, "PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("www-web-1");
    assert_eq!(uid(&again), uid(&claim1), "the same claim, not a new one");
    assert_eq!(
        list(&client, "PersistentVolumeClaim", "default")
            .await
            .expect("claims")
            .len(),
        2
    );
    log.assert_one_pod_per_identity();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_is_made_only_after_the_old_pod_object_is_gone() {
    let f = start(false).await;
    let client = f.client.clone();
    let log = Log::start(&client, "default", &f.cancel).await;
    client.create(&web("default", 2)).await.expect("created");
    pods_are(&client, "default", &["web-0"]).await;
    mark_ready(&client, "default", "web-0").await;
    pods_are(&client, "default", &["web-0", "web-1"]).await;
    mark_ready(&client, "default", "web-1").await;
    status_is(&client, "default", json!({"readyReplicas": 2})).await;

    // A user deletes web-0: it terminates (its node holds it); the controller sees it (the
    // status stops counting it as current) and makes no second web-0.
    let old = get(&client, "Pod", "default", "web-0")
        .await
        .expect("web-0");
    client
        .delete("Pod", "default", "web-0", &DeleteOptions::default())
        .await
        .expect("deleted");
    status_is(
        &client,
        "default",
        json!({"currentReplicas": 1, "readyReplicas": 2}),
    )
    .await;
    let still = get(&client, "Pod", "default", "web-0")
        .await
        .expect("web-0");
    assert_eq!(uid(&still), uid(&old), "the old object is still there");
    assert!(still.pointer("/metadata/deletionTimestamp").is_some());

    // The node lets it go: only then a new web-0.
    release(&client, "default", &still).await;
    let new = eventually("a new web-0", || async {
        let p = get(&client, "Pod", "default", "web-0").await?;
        if uid(&p) != uid(&old) {
            Ok(p)
        } else {
            Err("the old one".to_string())
        }
    })
    .await;
    let gone = log.gone(&uid(&old)).await;
    let created = log
        .revision_of("the new web-0 is created", |e| {
            e.r#type == EventType::Added && uid(&e.object) == uid(&new)
        })
        .await;
    assert!(
        created > gone,
        "created at {created}, the old one gone at {gone}"
    );
    assert_eq!(
        new["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-0"
    );

    // A failed pod is deleted by the controller, and replaced once it is gone.
    mark_ready(&client, "default", "web-0").await;
    let mut failed = get(&client, "Pod", "default", "web-1")
        .await
        .expect("web-1");
    failed["status"] = json!({"phase": "Failed"});
    client.update_status(&failed).await.expect("web-1 failed");
    let terminating = eventually("the failed web-1 is deleted", || async {
        let p = get(&client, "Pod", "default", "web-1").await?;
        if p.pointer("/metadata/deletionTimestamp").is_some() {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
    .await;
    release(&client, "default", &terminating).await;
    let replacement = eventually("a new web-1", || async {
        let p = get(&client, "Pod", "default", "web-1").await?;
        if uid(&p) != uid(&failed) {
            Ok(p)
        } else {
            Err("the failed one".to_string())
        }
    })
    .await;
    assert_eq!(replacement["status"]["phase"], "Pending");
    let gone = log.gone(&uid(&failed)).await;
    let created = log
        .revision_of("the new web-1 is created", |e| {
            e.r#type == EventType::Added && uid(&e.object) == uid(&replacement)
        })
        .await;
    assert!(created > gone);
    let events = list(&client, "Event", "default").await.expect("events");
    assert!(
        events.iter().any(|e| e["reason"] == "RecreatingFailedPod"),
        "{events:?}"
    );
    log.assert_one_pod_per_identity();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_honours_its_partition_highest_ordinal_first() {
    let f = start(false).await;
    let client = f.client.clone();
    let log = Log::start(&client, "default", &f.cancel).await;
    kubelet(client.clone(), "default", f.cancel.clone());
    client.create(&web("default", 3)).await.expect("created");
    let first = status_is(
        &client,
        "default",
        json!({"readyReplicas": 3, "updatedReplicas": 3}),
    )
    .await["updateRevision"]
        .as_str()
        .expect("a revision")
        .to_string();

    // partition 1: web-2 then web-1 are updated, web-0 keeps the old revision.
    client
        .patch(
            "StatefulSet",
            "default",
            "web",
            &json!({"spec": {
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "busybox:1.36",
                    "ports": [{"containerPort": 80, "name": "web"}],
                    "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
            }}),
            false,
        )
        .await
        .expect("updated");
    let status = status_is(
        &client,
        "default",
        json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2,
               "currentReplicas": 1, "currentRevision": first}),
    )
    .await;
    let second = status["updateRevision"]
        .as_str()
        .expect("a revision")
        .to_string();
    assert_ne!(second, first);
    let pods = pods_are(&client, "default", &["web-0", "web-1", "web-2"]).await;
    for pod in &pods {
        let (revision, image) = match name(pod).as_str() {
            "web-0" => (&first, "busybox"),
            _ => (&second, "busybox:1.36"),
        };
        assert_eq!(
            &label(pod, "controller-revision-hash"),
            revision,
            "{}",
            name(pod)
        );
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            image,
            "{}",
            name(pod)
        );
    }
    // Highest first, the next only after the previous replacement was Ready.
    let events = log.events();
    let old_uid = |pod: &str| -> String {
        events
            .iter()
            .find(|e| e.r#type == EventType::Added && name(&e.object) == pod)
            .map(|e| uid(&e.object))
            .expect("the first pod of that name")
    };
    let new_web2 = pods.iter().find(|p| name(p) == "web-2").expect("web-2");
    let web1_goes = log.terminating(&old_uid("web-1")).await;
    assert!(log.terminating(&old_uid("web-2")).await < web1_goes);
    assert!(
        log.ready(&uid(new_web2)).await < web1_goes,
        "web-1 is replaced only after the new web-2 is Ready"
    );

    // partition 0: the rest, and the update revision becomes the current one.
    client
        .patch(
            "StatefulSet",
            "default",
            "web",
            &json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
            false,
        )
        .await
        .expect("partition 0");
    status_is(
        &client,
        "default",
        json!({"observedGeneration": 3, "readyReplicas": 3, "updatedReplicas": 3,
               "currentReplicas": 3, "currentRevision": second, "updateRevision": second}),
    )
    .await;
    let revisions = list(&client, "ControllerRevision", "default")
        .await
        .expect("revisions");
    let numbers: BTreeSet<(String, i64)> = revisions
        .iter()
        .map(|r| (name(r), r["revision"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        numbers,
        BTreeSet::from([(first.clone(), 1), (second.clone(), 2)])
    );
    log.assert_one_pod_per_identity();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_statefulset_scales_it_down_highest_first_and_leaves_the_claims() {
    let f = start(true).await;
    let client = f.client.clone();
    let log = Log::start(&client, "default", &f.cancel).await;
    kubelet(client.clone(), "default", f.cancel.clone());
    client.create(&web("default", 3)).await.expect("created");
    status_is(&client, "default", json!({"readyReplicas": 3})).await;
    let pods = pods_are(&client, "default", &["web-0", "web-1", "web-2"]).await;
    let uid_of = |n: &str| uid(pods.iter().find(|p| name(p) == n).expect("the pod"));

    client
        .delete("StatefulSet", "default", "web", &DeleteOptions::default())
        .await
        .expect("deleted");
    eventually("the StatefulSet is gone", || async {
        match client.get("StatefulSet", "default", "web").await {
            Err(corral_api::ApiError::NotFound { .. }) => Ok(()),
            Ok(s) => Err(format!("still there: {}", s["metadata"])),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(
        pod_names(&client, "default")
            .await
            .expect("pods")
            .is_empty()
    );
    // Highest first; each one starts going only after the one above it is gone.
    let (gone2, gone1) = (
        log.gone(&uid_of("web-2")).await,
        log.gone(&uid_of("web-1")).await,
    );
    assert!(log.terminating(&uid_of("web-1")).await > gone2);
    assert!(log.terminating(&uid_of("web-0")).await > gone1);
    // The claims stay; the revisions go with the StatefulSet (garbage collector).
    let mut claims: Vec<String> = list(&client, "PersistentVolumeClaim", "default")
        .await
        .expect("claims")
        .iter()
        .map(name)
        .collect();
    claims.sort();
    assert_eq!(claims, vec!["www-web-0", "www-web-1", "www-web-2"]);
    eventually("the revisions are collected", || async {
        let left = list(&client, "ControllerRevision", "default").await?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.len()))
        }
    })
    .await;

    // A StatefulSet made again finds its claims.
    client
        .create(&web("default", 1))
        .await
        .expect("created again");
    let pods = pods_are(&client, "default", &["web-0"]).await;
    assert_eq!(
        pods[0]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "www-web-0"
    );
    assert_eq!(
        list(&client, "PersistentVolumeClaim", "default")
            .await
            .expect("claims")
            .len(),
        3
    );
    log.assert_one_pod_per_identity();

    // Orphan propagation: the StatefulSet goes at once, its pods stay without an owner.
    status_is(&client, "default", json!({"readyReplicas": 1})).await;
    client
        .delete(
            "StatefulSet",
            "default",
            "web",
            &DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..DeleteOptions::default()
            },
        )
        .await
        .expect("deleted");
    eventually("the pod is orphaned and the StatefulSet gone", || async {
        let pod = get(&client, "Pod", "default", "web-0").await?;
        let set = client.get("StatefulSet", "default", "web").await;
        let orphaned = pod["metadata"]
            .get("ownerReferences")
            .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty));
        if orphaned && set.is_err() {
            Ok(())
        } else {
            Err(format!("pod {}, set {set:?}", pod["metadata"]))
        }
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_a_statefulset_is_deleted_with_everything_in_it() {
    let f = start(true).await;
    let client = f.client.clone();
    client
        .create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .await
        .expect("namespace");
    kubelet(client.clone(), "shop", f.cancel.clone());
    client.create(&web("shop", 2)).await.expect("created");
    status_is(&client, "shop", json!({"readyReplicas": 2})).await;
    client
        .delete("Namespace", "", "shop", &DeleteOptions::default())
        .await
        .expect("deleted");
    eventually("the namespace is gone", || async {
        match client.get("Namespace", "", "shop").await {
            Err(corral_api::ApiError::NotFound { .. }) => Ok(()),
            Ok(ns) => Err(ns["status"].to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    f.stop().await;
}

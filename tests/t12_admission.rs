//! Admission and the API verbs as a Kubernetes user sees them: identity and timestamps, generation,
//! generateName, selectors, status, merge patch, finalizers and deletionTimestamp.

use std::time::Duration;

use corral_api::Reason;
use corral_client::{DeleteOptions, GetOptions, ListOptions, PropagationPolicy};
use corral_tests::TestCluster;
use serde_json::json;

/// These tests are about admission: no controller may write to the objects they examine.
const NO_CONTROLLERS: [&str; 2] = [
    "--disable-leader-components",
    "replicaset,deployment,daemonset,job,cronjob,garbage-collector,namespace,serviceaccount,endpoints,statefulset",
];

const T: Duration = Duration::from_secs(20);

fn deployment(name: &str, replicas: i64, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_sets_identity_defaults_and_bumps_generation_only_on_spec_changes() {
    let c = TestCluster::start(1, &NO_CONTROLLERS);
    c.leader(T).await;
    let client = c.client();
    let created = client
        .create(&deployment("web", 2, "web"))
        .await
        .expect("create");
    let meta = &created["metadata"];
    assert!(
        meta["uid"].as_str().is_some_and(|u| u.len() == 36),
        "{meta}"
    );
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{meta}"
    );
    assert_eq!(meta["generation"], 1);
    // Kubernetes' defaults.
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        created["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );

    // A label change is not a spec change.
    let labelled = client
        .patch(
            "Deployment",
            "default",
            "web",
            &json!({"metadata": {"labels": {"tier": "front"}}}),
            false,
        )
        .await
        .expect("patch labels");
    assert_eq!(labelled["metadata"]["generation"], 1);
    assert_eq!(labelled["metadata"]["labels"]["tier"], "front");
    assert_eq!(labelled["metadata"]["uid"], meta["uid"]);

    let scaled = client
        .patch(
            "Deployment",
            "default",
            "web",
            &json!({"spec": {"replicas": 5}}),
            false,
        )
        .await
        .expect("patch spec");
    assert_eq!(scaled["metadata"]["generation"], 2);

    // Status goes through UpdateStatus only, and does not bump generation.
    let mut with_status = scaled.clone();
    with_status["status"] = json!({"replicas": 5, "observedGeneration": 2});
    let ignored = client.update(&with_status).await.expect("update");
    assert!(
        ignored
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none()),
        "{ignored}"
    );
    let mut with_status = ignored.clone();
    with_status["status"] = json!({"replicas": 5, "observedGeneration": 2});
    let status = client
        .update_status(&with_status)
        .await
        .expect("update status");
    assert_eq!(status["status"]["replicas"], 5);
    assert_eq!(status["metadata"]["generation"], 2);

    // The selector is immutable.
    let mut changed = status.clone();
    changed["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let err = client
        .update(&changed)
        .await
        .expect_err("immutable selector");
    assert_eq!(err.reason(), Reason::Invalid, "{err}");
    assert!(err.to_string().contains("spec.selector"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_and_selectors_work_as_in_kubernetes() {
    let c = TestCluster::start(1, &NO_CONTROLLERS);
    c.leader(T).await;
    let client = c.client();
    let a = client
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "job-", "namespace": "default", "labels": {"tier": "a"}}}))
        .await
        .expect("generateName");
    let name = a["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");
    for (n, tier) in [("b1", "b"), ("b2", "b"), ("c1", "c")] {
        client
            .create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": n, "namespace": "default", "labels": {"tier": tier}}}))
            .await
            .expect("create");
    }
    let names = |l: corral_client::ObjectList| -> Vec<String> {
        l.items
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let opts = |labels: &str, fields: &str| ListOptions {
        label_selector: labels.into(),
        field_selector: fields.into(),
        stale_ok: false,
    };
    let b = client
        .list("ConfigMap", Some("default"), &opts("tier=b", ""))
        .await
        .expect("list");
    assert_eq!(names(b), ["b1", "b2"]);
    let not_b = client
        .list(
            "ConfigMap",
            Some("default"),
            &opts("tier notin (b)", corral_tests::NOT_CLUSTER_MADE),
        )
        .await
        .expect("list");
    assert_eq!(names(not_b).len(), 2);
    let one = client
        .list("ConfigMap", None, &opts("", "metadata.name=c1"))
        .await
        .expect("list");
    assert_eq!(names(one), ["c1"]);
    let bad = client
        .list("ConfigMap", None, &opts("tier in b", ""))
        .await
        .expect_err("bad selector");
    assert_eq!(bad.reason(), Reason::BadRequest, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let c = TestCluster::start(1, &NO_CONTROLLERS);
    c.leader(T).await;
    let client = c.client();
    client
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": "default", "finalizers": ["example.com/hold"]}}))
        .await
        .expect("create");
    let deleting = client
        .delete("ConfigMap", "default", "held", &DeleteOptions::default())
        .await
        .expect("delete");
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    let still = client
        .get("ConfigMap", "default", "held")
        .await
        .expect("still there");
    assert_eq!(still["metadata"]["finalizers"], json!(["example.com/hold"]));

    client
        .patch(
            "ConfigMap",
            "default",
            "held",
            &json!({"metadata": {"finalizers": null}}),
            false,
        )
        .await
        .expect("remove the finalizer");
    let gone = client
        .get_with(
            "ConfigMap",
            "default",
            "held",
            &GetOptions { stale_ok: false },
        )
        .await
        .expect_err("gone once the last finalizer is removed");
    assert_eq!(gone.reason(), Reason::NotFound, "{gone}");

    // Orphan propagation is recorded as Kubernetes records it: the orphan finalizer.
    client
        .create(&deployment("keep", 1, "keep"))
        .await
        .expect("create");
    let orphaning = client
        .delete(
            "Deployment",
            "default",
            "keep",
            &DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .expect("delete");
    assert_eq!(orphaning["metadata"]["finalizers"], json!(["orphan"]));
}

//! The store's contract through the API, on a real 3-server cluster of child processes.

use std::time::Duration;

use corral_api::{ApiError, Reason};
use corral_client::{EventType, ListOptions, WatchOptions};
use corral_tests::{TestCluster, config_map};
use futures::StreamExt;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_any_server_is_readable_through_every_other() {
    let c = TestCluster::start(3, &[]);
    c.leader(T).await;
    for (i, s) in c.servers.iter().enumerate() {
        let name = format!("via-{i}");
        c.client_of(i)
            .create(&config_map("default", &name, &s.api))
            .await
            .expect("create");
        for j in 0..c.servers.len() {
            let got = c
                .client_of(j)
                .get("ConfigMap", "default", &name)
                .await
                .expect("linearizable read");
            assert_eq!(
                got["data"]["value"],
                s.api.as_str(),
                "server {j} reads what server {i} wrote"
            );
        }
    }
    let list = c
        .client_of(2)
        .list("ConfigMap", Some("default"), &corral_tests::test_objects())
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3);
    assert!(list.revision > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_is_a_conflict_and_a_taken_name_already_exists() {
    let c = TestCluster::start(3, &[]);
    c.leader(T).await;
    let client = c.client();
    let first = client
        .create(&config_map("default", "cm", "1"))
        .await
        .expect("create");
    let again = client
        .create(&config_map("default", "cm", "1"))
        .await
        .expect_err("taken");
    assert_eq!(again.reason(), Reason::AlreadyExists, "{again}");

    let mut update = first.clone();
    update["data"]["value"] = json!("2");
    let second = client
        .update(&update)
        .await
        .expect("update with the current resourceVersion");
    assert_ne!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );

    // `update` still carries the first resourceVersion: now stale.
    update["data"]["value"] = json!("3");
    let stale = client.update(&update).await.expect_err("stale");
    match &stale {
        ApiError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(
                expected,
                first["metadata"]["resourceVersion"].as_str().expect("rv")
            );
            assert_eq!(
                actual,
                second["metadata"]["resourceVersion"].as_str().expect("rv")
            );
        }
        other => panic!("expected a Conflict, got {other}"),
    }
    let now = client.get("ConfigMap", "default", "cm").await.expect("get");
    assert_eq!(now["data"]["value"], "2", "the stale write changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_delivers_every_change_in_order_and_resumes_on_another_server() {
    let mut c = TestCluster::start(3, &[]);
    let leader = c.leader(T).await;
    let writer = c.client();
    let start = writer
        .list("ConfigMap", Some("default"), &ListOptions::default())
        .await
        .expect("list")
        .revision;

    // Watch through one follower only, then kill it: the watcher must move to another server.
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let others: Vec<String> = std::iter::once(c.servers[follower].api.clone())
        .chain(
            (0..3)
                .filter(|i| *i != follower)
                .map(|i| c.servers[i].api.clone()),
        )
        .collect();
    let watch_client = corral_client::Client::connect(&others).expect("client");
    let mut watch = watch_client.watch(
        "ConfigMap",
        Some("default"),
        &WatchOptions {
            from_revision: start,
            // Only this test's writes (the cluster makes kube-root-ca.crt by itself).
            field_selector: corral_tests::NOT_CLUSTER_MADE.into(),
            ..Default::default()
        },
    );

    let total = 40;
    let mut seen: Vec<(u64, String, EventType)> = Vec::new();
    for i in 0..total {
        let name = format!("w{i}");
        if i == total / 2 {
            c.servers[follower].kill();
        }
        writer
            .create(&config_map("default", &name, "v"))
            .await
            .expect("create");
    }
    while seen.len() < total {
        let ev = tokio::time::timeout(T, watch.next())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .expect("no watch error");
        if ev.r#type == EventType::Bookmark {
            continue;
        }
        let name = ev.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        seen.push((ev.revision, name, ev.r#type));
    }
    let names: Vec<String> = seen.iter().map(|s| s.1.clone()).collect();
    let expected: Vec<String> = (0..total).map(|i| format!("w{i}")).collect();
    assert_eq!(names, expected, "every change once, in order");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions increase strictly: {seen:?}"
    );
    assert!(seen.iter().all(|s| s.2 == EventType::Added));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_is_expired() {
    let c = TestCluster::start(1, &["--watch-history", "20"]);
    c.leader(T).await;
    let client = c.client();
    let first = client
        .create(&config_map("default", "x", "0"))
        .await
        .expect("create");
    let rv: u64 = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("number");
    let mut obj = first;
    for i in 1..60 {
        obj["data"]["value"] = json!(i.to_string());
        obj["metadata"]["resourceVersion"] = json!(null);
        obj = client.update(&obj).await.expect("update");
    }
    let mut watch = client.watch(
        "ConfigMap",
        Some("default"),
        &WatchOptions {
            from_revision: rv,
            ..Default::default()
        },
    );
    let err = match tokio::time::timeout(T, watch.next()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected the watch to fail, got {other:?}"),
    };
    assert_eq!(err.reason(), Reason::Expired, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_invalid_objects_are_refused_with_the_limit_or_the_fields() {
    let c = TestCluster::start(1, &[]);
    c.leader(T).await;
    let client = c.client();
    let big = config_map("default", "big", &"x".repeat(1_600_000));
    let err = client.create(&big).await.expect_err("too large");
    assert_eq!(err.reason(), Reason::TooLarge, "{err}");
    assert!(
        err.to_string().contains("1572864"),
        "names the limit: {err}"
    );

    let bad = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "Bad_Name", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c"}]}}
        }
    });
    let err = client.create(&bad).await.expect_err("invalid");
    let ApiError::Invalid { causes, .. } = &err else {
        panic!("expected Invalid, got {err}")
    };
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"metadata.name"), "{fields:?}");
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("spec.template.metadata.labels")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.contains("containers[0].image")),
        "{fields:?}"
    );
    let missing_ns = config_map("nowhere", "x", "y");
    let err = client
        .create(&missing_ns)
        .await
        .expect_err("namespace must exist");
    assert_eq!(err.reason(), Reason::NotFound, "{err}");
}

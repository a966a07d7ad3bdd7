//! The Endpoints controller against a real one-server store and API, in process. No agent runs:
//! the tests create pods bound to a node and report their IP and readiness themselves with
//! UpdateStatus, as an agent would. Addresses move between ready and not ready, a named
//! targetPort resolves per pod (pods serving it on different numbers land in different subsets),
//! hostname/subdomain names an address, a terminating pod leaves, a deleted Service takes its
//! Endpoints along, a Service without a selector keeps the Endpoints its user wrote, and
//! Endpoints deleted by hand come back.

use std::time::Duration;

use corral_api::ApiError;
use corral_client::{Client, DeleteOptions};
use corral_controllers::endpoints::{self, EndpointsOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("now is in range")
        .to_string()
}

fn start_controller(client: &Client, resync: Duration) -> CancellationToken {
    let cancel = CancellationToken::new();
    let opts = EndpointsOptions { workers: 2, resync };
    tokio::spawn(endpoints::run(client.clone(), opts, cancel.clone()));
    cancel
}

/// A pod bound to node `n1` serving `http` on `http_port`.
async fn create_pod(client: &Client, name: &str, app: &str, http_port: i64, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": http_port}]}]},
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    client.create(&pod).await.expect("pod created")
}

/// What an agent reports: running with `ip`, Ready as given.
async fn report(client: &Client, name: &str, ip: &str, ready: bool) {
    let mut pod = client.get("Pod", "default", name).await.expect("the pod");
    pod["status"] = json!({
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": now()}],
    });
    client.update_status(&pod).await.expect("pod status");
}

async fn create_service(client: &Client, svc: Value) -> Value {
    client.create(&svc).await.expect("service created")
}

fn web_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })
}

async fn get_endpoints(client: &Client, name: &str) -> Result<Value, String> {
    client
        .get("Endpoints", "default", name)
        .await
        .map_err(|e| e.to_string())
}

/// The subsets of the Endpoints as (ready IPs, not-ready IPs, port numbers), sorted.
fn summary(ep: &Value) -> Vec<(Vec<String>, Vec<String>, Vec<i64>)> {
    let ips = |s: &Value, key: &str| -> Vec<String> {
        s.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    let mut out: Vec<_> = ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let ports = s
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64())
                .collect();
            (ips(s, "addresses"), ips(s, "notReadyAddresses"), ports)
        })
        .collect();
    out.sort();
    out
}

type Subsets = Vec<(Vec<String>, Vec<String>, Vec<i64>)>;

fn s(ips: &[&str]) -> Vec<String> {
    ips.iter().map(|s| s.to_string()).collect()
}

/// Waits until the Endpoints `name` has exactly these subsets; answers it.
async fn endpoints_become(client: &Client, name: &str, want: Subsets) -> Value {
    eventually(&format!("Endpoints {name} = {want:?}"), || async {
        let ep = get_endpoints(client, name).await?;
        if summary(&ep) == want {
            Ok(ep)
        } else {
            Err(format!("{:?}", summary(&ep)))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_follow_readiness_ports_resolve_per_pod_and_terminating_pods_leave() {
    let srv = server().await;
    let client = srv.client.clone();
    let cancel = start_controller(&client, Duration::from_secs(30));
    create_service(&client, web_service()).await;
    create_pod(&client, "a", "web", 8080, json!({})).await;
    create_pod(&client, "b", "web", 8080, json!({})).await;
    create_pod(&client, "db", "db", 5432, json!({})).await;
    report(&client, "a", "10.1.0.1", true).await;
    report(&client, "b", "10.1.0.2", false).await;
    report(&client, "db", "10.1.0.9", true).await;

    let ep = endpoints_become(
        &client,
        "web",
        vec![(s(&["10.1.0.1"]), s(&["10.1.0.2"]), vec![8080])],
    )
    .await;
    assert_eq!(ep["metadata"]["labels"], json!({"tier": "front"}));
    let a = &ep["subsets"][0]["addresses"][0];
    assert_eq!(a["nodeName"], "n1");
    assert_eq!(a["targetRef"]["kind"], "Pod");
    assert_eq!(a["targetRef"]["name"], "a");
    assert_eq!(ep["subsets"][0]["ports"][0]["name"], "http");

    // b turns ready, a stops being ready.
    report(&client, "b", "10.1.0.2", true).await;
    endpoints_become(
        &client,
        "web",
        vec![(s(&["10.1.0.1", "10.1.0.2"]), vec![], vec![8080])],
    )
    .await;
    report(&client, "a", "10.1.0.1", false).await;
    endpoints_become(
        &client,
        "web",
        vec![(s(&["10.1.0.2"]), s(&["10.1.0.1"]), vec![8080])],
    )
    .await;

    // A pod serving the named port on another number gets a subset of its own.
    create_pod(&client, "c", "web", 9090, json!({})).await;
    report(&client, "c", "10.1.0.3", true).await;
    endpoints_become(
        &client,
        "web",
        vec![
            (s(&["10.1.0.2"]), s(&["10.1.0.1"]), vec![8080]),
            (s(&["10.1.0.3"]), vec![], vec![9090]),
        ],
    )
    .await;

    // Deleting a pod bound to a node makes it terminating first (its agent would stop it): it
    // leaves the Endpoints at once.
    let terminating = client
        .delete("Pod", "default", "b", &DeleteOptions::default())
        .await
        .expect("delete b");
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    endpoints_become(
        &client,
        "web",
        vec![
            (vec![], s(&["10.1.0.1"]), vec![8080]),
            (s(&["10.1.0.3"]), vec![], vec![9090]),
        ],
    )
    .await;

    // A relabelled pod leaves; the Service's own label change is carried over.
    client
        .patch(
            "Pod",
            "default",
            "c",
            &json!({"metadata": {"labels": {"app": "other"}}}),
            false,
        )
        .await
        .expect("relabel c");
    client
        .patch(
            "Service",
            "default",
            "web",
            &json!({"metadata": {"labels": {"tier": "back"}}}),
            false,
        )
        .await
        .expect("relabel the service");
    let ep = endpoints_become(&client, "web", vec![(vec![], s(&["10.1.0.1"]), vec![8080])]).await;
    eventually("the Endpoints carry the Service's labels", || async {
        let ep = get_endpoints(&client, "web").await?;
        if ep["metadata"]["labels"] == json!({"tier": "back"}) {
            Ok(())
        } else {
            Err(ep["metadata"]["labels"].to_string())
        }
    })
    .await;
    assert_eq!(ep["metadata"]["name"], "web");

    // The Service goes, and its Endpoints with it.
    client
        .delete("Service", "default", "web", &DeleteOptions::default())
        .await
        .expect("delete the service");
    eventually("the Endpoints are deleted", || async {
        match client.get("Endpoints", "default", "web").await {
            Err(ApiError::NotFound { .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    cancel.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_service_names_its_pods_by_hostname_and_unchanged_state_writes_nothing() {
    let srv = server().await;
    let client = srv.client.clone();
    // A short resync: the controller looks at every Service again and again while the test runs.
    let cancel = start_controller(&client, Duration::from_millis(20));
    create_service(
        &client,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "nginx"},
                     "ports": [{"name": "web", "port": 80}]},
        }),
    )
    .await;
    for (i, ip) in ["10.2.0.1", "10.2.0.2"].iter().enumerate() {
        let name = format!("web-{i}");
        let subdomain = if i == 0 { "nginx" } else { "elsewhere" };
        create_pod(
            &client,
            &name,
            "nginx",
            80,
            json!({"hostname": name, "subdomain": subdomain}),
        )
        .await;
        report(&client, &name, ip, true).await;
    }
    let ep = endpoints_become(
        &client,
        "nginx",
        vec![(s(&["10.2.0.1", "10.2.0.2"]), vec![], vec![80])],
    )
    .await;
    let addresses = ep["subsets"][0]["addresses"].as_array().expect("addresses");
    assert_eq!(
        addresses[0]["hostname"], "web-0",
        "subdomain names the Service"
    );
    assert!(addresses[1].get("hostname").is_none(), "{}", addresses[1]);
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let version = ep["metadata"]["resourceVersion"].clone();

    // A change endpoints do not depend on (an annotation), then a change to another Service's
    // pods that the controller must act on: once that shows, the first Service has been synced
    // many times over (resync every 20 ms) and its Endpoints were never rewritten.
    client
        .patch(
            "Pod",
            "default",
            "web-0",
            &json!({"metadata": {"annotations": {"note": "irrelevant"}}}),
            false,
        )
        .await
        .expect("annotate");
    create_service(&client, web_service()).await;
    create_pod(&client, "probe", "web", 8080, json!({})).await;
    report(&client, "probe", "10.2.0.9", false).await;
    endpoints_become(&client, "web", vec![(vec![], s(&["10.2.0.9"]), vec![8080])]).await;
    report(&client, "probe", "10.2.0.9", true).await;
    endpoints_become(&client, "web", vec![(s(&["10.2.0.9"]), vec![], vec![8080])]).await;
    let again = get_endpoints(&client, "nginx").await.expect("endpoints");
    assert_eq!(
        again["metadata"]["resourceVersion"], version,
        "unchanged state was written again"
    );
    cancel.cancel();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_endpoints_of_a_service_without_selector_stay_and_deleted_ones_come_back() {
    let srv = server().await;
    let client = srv.client.clone();
    let cancel = start_controller(&client, Duration::from_millis(50));
    create_service(
        &client,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "external-db", "namespace": "default"},
            "spec": {"ports": [{"port": 5432}]},
        }),
    )
    .await;
    let user = client
        .create(&json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "external-db", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
        }))
        .await
        .expect("user endpoints");

    create_service(&client, web_service()).await;
    create_pod(&client, "a", "web", 8080, json!({})).await;
    report(&client, "a", "10.3.0.1", true).await;
    endpoints_become(&client, "web", vec![(s(&["10.3.0.1"]), vec![], vec![8080])]).await;

    // Deleted by hand: the controller writes it again.
    client
        .delete("Endpoints", "default", "web", &DeleteOptions::default())
        .await
        .expect("delete endpoints");
    endpoints_become(&client, "web", vec![(s(&["10.3.0.1"]), vec![], vec![8080])]).await;
    // Meanwhile (many resyncs later) the user's Endpoints are as written.
    let now = get_endpoints(&client, "external-db").await.expect("user's");
    assert_eq!(
        now["metadata"]["resourceVersion"],
        user["metadata"]["resourceVersion"]
    );
    assert_eq!(
        summary(&now),
        vec![(s(&["192.0.2.10"]), vec![], vec![5432])]
    );
    cancel.cancel();
    srv.stop().await;
}

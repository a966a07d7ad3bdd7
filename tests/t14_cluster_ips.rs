//! Service ClusterIPs as a Kubernetes user sees them: many Services created at once through every
//! server of a cluster get distinct addresses of the configured range; an address taken or
//! outside the range is refused with Kubernetes' words; a full range says so; a deleted
//! Service's address is free again; the allocations survive a restart of every server; headless
//! and ExternalName Services get none; the address is kept on update, immutable, released when a
//! Service becomes ExternalName and allocated when it stops being one, and held while a finalizer
//! holds the Service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::{Client, DeleteOptions, ListOptions};
use corral_tests::TestCluster;
use serde_json::{Value, json};
use tokio::task::JoinSet;

const T: Duration = Duration::from_secs(30);

/// Only the API is under test: no leader-run component writes anything.
const NO_CONTROLLERS: [&str; 2] = [
    "--disable-leader-components",
    "scheduler,node-lifecycle,replicaset,deployment,daemonset,job,cronjob,garbage-collector,namespace,serviceaccount,endpoints",
];

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": 80}]},
    })
}

fn with_ip(name: &str, ip: &str) -> Value {
    let mut s = service(name);
    s["spec"]["clusterIP"] = json!(ip);
    s
}

fn ip_of(svc: &Value) -> String {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The ClusterIP of every Service in `default`, by name.
async fn cluster_ips(client: &Client) -> BTreeMap<String, String> {
    let list = client
        .list("Service", Some("default"), &ListOptions::default())
        .await
        .expect("list services");
    list.items
        .iter()
        .map(|s| {
            (
                s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ip_of(s),
            )
        })
        .collect()
}

/// The message of the one cause of an Invalid error at `spec.clusterIP`.
fn cluster_ip_cause(e: ApiError) -> String {
    match e {
        ApiError::Invalid { causes, .. } => {
            assert_eq!(causes.len(), 1, "{causes:?}");
            assert_eq!(causes[0].field, "spec.clusterIP", "{causes:?}");
            causes[0].message.clone()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Creates Services `prefix-0..n` at once, spread over `clients`; answers their addresses.
async fn create_many(clients: &[Client], prefix: &str, n: usize) -> Vec<Result<Value, ApiError>> {
    let mut creates = JoinSet::new();
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        let svc = service(&format!("{prefix}-{i}"));
        creates.spawn(async move { client.create(&svc).await });
    }
    let mut out = Vec::new();
    while let Some(r) = creates.join_next().await {
        out.push(r.expect("the create task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_services_get_distinct_addresses_until_the_range_is_full_and_keep_them_across_restarts()
 {
    // A /24: 254 usable addresses, the first kept for the `kubernetes` Service: 253 to give.
    let mut args = vec!["--service-cluster-ip-range", "10.200.0.0/24"];
    args.extend(NO_CONTROLLERS);
    let mut c = TestCluster::start(3, &args);
    c.leader(T).await;
    let clients: Vec<Client> = (0..3).map(|i| c.client_of(i)).collect();

    // 200 at once, through all three servers (two of them forward to the leader).
    let results = create_many(&clients, "svc", 200).await;
    let mut seen = BTreeSet::new();
    for r in results {
        let svc = r.expect("every create succeeds");
        let ip: Ipv4Addr = ip_of(&svc).parse().expect("an IPv4 ClusterIP");
        let [a, b, c3, d] = ip.octets();
        assert_eq!((a, b, c3), (10, 200, 0), "{ip} is outside 10.200.0.0/24");
        assert!(d != 0 && d != 1 && d != 255, "{ip} is reserved");
        assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert!(seen.insert(ip), "{ip} was given twice");
    }
    assert_eq!(seen.len(), 200);
    let before = cluster_ips(&clients[1]).await;
    assert_eq!(before.len(), 200);

    // Taken, outside the range, and the kubernetes Service's: refused with Kubernetes' words.
    let taken = before["svc-0"].clone();
    let e = clients[2]
        .create(&with_ip("taken", &taken))
        .await
        .expect_err("taken");
    assert_eq!(
        cluster_ip_cause(e),
        format!(
            "Invalid value: \"{taken}\": failed to allocate IP {taken}: provided IP is already allocated"
        )
    );
    let e = clients[0]
        .create(&with_ip("outside", "10.201.0.5"))
        .await
        .expect_err("outside");
    assert!(
        cluster_ip_cause(e).contains(
            "the provided IP (10.201.0.5) is not in the valid range. The range of valid IPs is 10.200.0.0/24"
        )
    );
    let e = clients[0]
        .create(&with_ip("broadcast", "10.200.0.255"))
        .await
        .expect_err("broadcast");
    assert!(cluster_ip_cause(e).contains("is not in the valid range"));
    let e = clients[0]
        .create(&with_ip("first", "10.200.0.1"))
        .await
        .expect_err("the kubernetes Service's");
    assert!(cluster_ip_cause(e).contains("reserved for the \"kubernetes\" Service"));

    // The other 53, then one too many.
    for r in create_many(&clients, "more", 53).await {
        r.expect("the range still has room");
    }
    let e = clients[1]
        .create(&service("one-too-many"))
        .await
        .expect_err("the range is full");
    assert!(
        e.to_string().contains("range is full"),
        "{e}: a full range says so"
    );

    // A deleted Service's address is free again: the only one, so the next Service gets it.
    let freed = before["svc-7"].clone();
    clients[2]
        .delete("Service", "default", "svc-7", &DeleteOptions::default())
        .await
        .expect("delete svc-7");
    let again = clients[0]
        .create(&service("again"))
        .await
        .expect("the freed address is given again");
    assert_eq!(ip_of(&again), freed);

    // Every server restarts: the Services keep their addresses, and the records of who holds
    // which are back too (the range is still full, a held address is still refused).
    let all = cluster_ips(&clients[0]).await;
    for s in &mut c.servers {
        s.kill();
    }
    for s in &mut c.servers {
        s.restart();
    }
    c.leader(T).await;
    let clients: Vec<Client> = (0..3).map(|i| c.client_of(i)).collect();
    assert_eq!(cluster_ips(&clients[2]).await, all);
    let e = clients[0]
        .create(&service("after-restart"))
        .await
        .expect_err("still full");
    assert!(e.to_string().contains("range is full"), "{e}");
    let e = clients[1]
        .create(&with_ip("after-restart", &freed))
        .await
        .expect_err("held by `again`");
    assert!(cluster_ip_cause(e).contains("provided IP is already allocated"));
    clients[1]
        .delete("Service", "default", "again", &DeleteOptions::default())
        .await
        .expect("delete again");
    let named = clients[2]
        .create(&with_ip("after-restart", &freed))
        .await
        .expect("a freed address may be asked for by name");
    assert_eq!(ip_of(&named), freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_external_name_and_updates_treat_the_address_as_kubernetes_does() {
    let c = TestCluster::start(1, &NO_CONTROLLERS);
    c.leader(T).await;
    let client = c.client();

    let web = client.create(&service("web")).await.expect("web");
    let ip: Ipv4Addr = ip_of(&web).parse().expect("an address");
    let range_start = u32::from(Ipv4Addr::new(10, 96, 0, 0));
    assert!(
        (range_start + 2..range_start + (1 << 20) - 1).contains(&u32::from(ip)),
        "{ip} is inside 10.96.0.0/12 and not reserved"
    );
    assert_eq!(web["spec"]["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(web["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(web["spec"]["ipFamilyPolicy"], "SingleStack");

    let mut headless = service("nginx");
    headless["spec"]["clusterIP"] = json!("None");
    headless["spec"]["selector"] = json!({"app": "nginx"});
    let headless = client.create(&headless).await.expect("headless");
    assert_eq!(ip_of(&headless), "None");
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

    let external = client
        .create(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        }))
        .await
        .expect("external name");
    assert_eq!(external["spec"].get("clusterIP"), None);
    assert_eq!(external["spec"].get("ipFamilies"), None);

    // Applying a manifest that names its address twice: the second apply is not a conflict
    // with the Service's own address.
    let named = with_ip("named", "10.96.100.100");
    client.apply(&named).await.expect("first apply");
    client.apply(&named).await.expect("second apply");

    // An update that leaves the address out keeps it; one that changes it is refused.
    let mut replaced = service("web");
    replaced["spec"]["ports"] = json!([{"port": 8080}]);
    replaced["metadata"]["resourceVersion"] = web["metadata"]["resourceVersion"].clone();
    let updated = client.update(&replaced).await.expect("update");
    assert_eq!(ip_of(&updated), ip.to_string());
    assert_eq!(updated["spec"]["ports"][0]["port"], 8080);
    let e = client
        .patch(
            "Service",
            "default",
            "web",
            &json!({"spec": {"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77"]}}),
            false,
        )
        .await
        .expect_err("immutable");
    assert!(e.to_string().contains("spec.clusterIP"), "{e}");
    assert!(e.to_string().contains("field is immutable"), "{e}");

    // Becoming ExternalName releases the address; another Service may then ask for it.
    let retyped = client
        .patch(
            "Service",
            "default",
            "web",
            &json!({"spec": {"type": "ExternalName", "externalName": "web.example.com"}}),
            false,
        )
        .await
        .expect("to ExternalName");
    assert_eq!(retyped["spec"].get("clusterIP"), None, "{retyped}");
    let taker = client
        .create(&with_ip("taker", &ip.to_string()))
        .await
        .expect("the released address is free");
    assert_eq!(ip_of(&taker), ip.to_string());

    // Back to ClusterIP: a new address.
    let back = client
        .patch(
            "Service",
            "default",
            "web",
            &json!({"spec": {"type": "ClusterIP", "externalName": null}}),
            false,
        )
        .await
        .expect("to ClusterIP");
    let new_ip = ip_of(&back);
    assert!(new_ip.parse::<Ipv4Addr>().is_ok(), "{back}");
    assert_ne!(new_ip, ip.to_string());
    let e = client
        .create(&with_ip("dup", &new_ip))
        .await
        .expect_err("the new address is held");
    assert!(cluster_ip_cause(e).contains("provided IP is already allocated"));

    // A Service held by a finalizer keeps its address until it is really gone.
    let mut held = service("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let held = client.create(&held).await.expect("held");
    let held_ip = ip_of(&held);
    let marked = client
        .delete("Service", "default", "held", &DeleteOptions::default())
        .await
        .expect("delete held");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let e = client
        .create(&with_ip("grab", &held_ip))
        .await
        .expect_err("still held while terminating");
    assert!(cluster_ip_cause(e).contains("provided IP is already allocated"));
    client
        .patch(
            "Service",
            "default",
            "held",
            &json!({"metadata": {"finalizers": null}}),
            false,
        )
        .await
        .expect("the last finalizer removed");
    let grabbed = client
        .create(&with_ip("grab", &held_ip))
        .await
        .expect("free once the Service is gone");
    assert_eq!(ip_of(&grabbed), held_ip);

    // A bad flag value stops the server with the rule it broke.
    let out = std::process::Command::new(corral_tests::bin("corral"))
        .args([
            "server",
            "--id",
            "1",
            "--data-dir",
            "unused",
            "--service-cluster-ip-range",
            "10.0.0.0/8",
        ])
        .output()
        .expect("run corral");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the mask must be >= 12"),
        "stderr: {stderr}"
    );
}

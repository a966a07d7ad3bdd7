//! The shared informer against real servers: list then watch with selectors and indexes,
//! subscribers seeing every change in order, surviving the loss of its server, and relisting
//! (with the differences, then `Relisted`) when its revision has been compacted. Then the
//! scheduler driver built on it, run in this process against a cluster whose own scheduler is
//! disabled: binds, `Scheduled` and `FailedScheduling` events, the PodScheduled=False condition,
//! and the retry when a node joins.

use std::time::Duration;

use corral_client::informer::Change;
use corral_client::{CancellationToken, Client, DeleteOptions, GetOptions, Informer};
use corral_tests::{TestCluster, config_map, eventually};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const T: Duration = Duration::from_secs(30);

fn labelled(name: &str, app: &str, tier: &str) -> Value {
    let mut cm = config_map("default", name, "v");
    cm["metadata"]["labels"] = json!({ "app": app, "tier": tier });
    cm
}

fn names(objs: &[std::sync::Arc<Value>]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn describe(c: &Change) -> String {
    let name = |o: &Value| {
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    match c {
        Change::Added(o) => format!("added {}", name(o)),
        Change::Modified { old, new } => format!(
            "modified {} {}->{}",
            name(new),
            old["data"]["value"].as_str().unwrap_or_default(),
            new["data"]["value"].as_str().unwrap_or_default()
        ),
        Change::Deleted(o) => format!("deleted {}", name(o)),
        Change::Relisted => "relisted".into(),
    }
}

/// Receives changes until `want` has been seen in order (other changes may come between).
async fn expect_changes(rx: &mut UnboundedReceiver<Change>, want: &[&str]) {
    let mut seen = Vec::new();
    let mut next = 0;
    let got = tokio::time::timeout(T, async {
        while next < want.len() {
            let Some(c) = rx.recv().await else { break };
            let d = describe(&c);
            if d == want[next] {
                next += 1;
            }
            seen.push(d);
        }
    })
    .await;
    assert!(
        got.is_ok() && next == want.len(),
        "expected {want:?} in order; saw {seen:?}"
    );
}

/// Receives changes until every one of `want` has been seen, in any order.
async fn expect_all(rx: &mut UnboundedReceiver<Change>, want: &[&str]) {
    let mut missing: Vec<&str> = want.to_vec();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(T, async {
        while !missing.is_empty() {
            let Some(c) = rx.recv().await else { break };
            let d = describe(&c);
            missing.retain(|w| *w != d);
            seen.push(d);
        }
    })
    .await;
    assert!(missing.is_empty(), "never saw {missing:?}; saw {seen:?}");
}

/// Waits until every server's own state holds the `default` namespace (the leader creates it;
/// a create checks its namespace in the answering server's state).
async fn wait_ready(c: &TestCluster) {
    for i in 0..c.servers.len() {
        let client = c.client_of(i);
        eventually("the default namespace on every server", T, || async {
            client
                .get_with("Namespace", "", "default", &GetOptions { stale_ok: true })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
    }
}

fn informer(client: Client, cancel: &CancellationToken) -> Informer {
    Informer::builder(client, "ConfigMap")
        .namespace("default")
        .label_selector("app=t40")
        .index("tier", |o| {
            o.pointer("/metadata/labels/tier")
                .and_then(Value::as_str)
                .map(|t| vec![t.to_string()])
                .unwrap_or_default()
        })
        .start(cancel.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_informer_lists_watches_indexes_and_survives_its_server() {
    let mut c = TestCluster::start(3, &[]);
    wait_ready(&c).await;
    let client = c.client();
    client
        .create(&labelled("before", "t40", "web"))
        .await
        .expect("create before the informer");
    let cancel = CancellationToken::new();
    let inf = informer(client.clone(), &cancel);
    let mut rx = inf.subscribe();
    tokio::time::timeout(T, inf.wait_synced())
        .await
        .expect("synced");
    assert!(inf.has_synced());
    assert_eq!(names(&inf.list()), ["before"]);
    expect_changes(&mut rx, &["added before", "relisted"]).await;

    client
        .create(&labelled("a", "t40", "web"))
        .await
        .expect("create a");
    client
        .create(&labelled("other", "not-t40", "web"))
        .await
        .expect("create other");
    client
        .create(&labelled("b", "t40", "db"))
        .await
        .expect("create b");
    expect_changes(&mut rx, &["added a", "added b"]).await;
    assert_eq!(names(&inf.list()), ["a", "b", "before"]);
    assert!(
        inf.get("default", "other").is_none(),
        "outside the selector"
    );
    assert_eq!(names(&inf.by_index("tier", "web")), ["a", "before"]);
    assert_eq!(names(&inf.by_index("tier", "db")), ["b"]);

    let mut a = client
        .get("ConfigMap", "default", "a")
        .await
        .expect("get a");
    a["data"]["value"] = json!("v2");
    client.update(&a).await.expect("update a");
    client
        .delete("ConfigMap", "default", "b", &DeleteOptions::default())
        .await
        .expect("delete b");
    expect_changes(&mut rx, &["modified a v->v2", "deleted b"]).await;
    assert!(inf.by_index("tier", "db").is_empty());
    let rev = inf.revision();
    assert!(rev > 0);

    // Kill every server but one, one after the other: the watch moves on.
    let leader = c.leader(T).await;
    c.servers[leader].kill();
    let survivors = c.client();
    eventually("a write after the leader's death", T, || async {
        survivors
            .create(&labelled("after-kill", "t40", "web"))
            .await
            .map(|_| ())
            .or_else(|e| match e {
                corral_client::ApiError::AlreadyExists { .. } => Ok(()),
                e => Err(e.to_string()),
            })
    })
    .await;
    expect_changes(&mut rx, &["added after-kill"]).await;
    assert!(inf.revision() > rev);

    cancel.cancel();
    let closed = tokio::time::timeout(T, async { while rx.recv().await.is_some() {} }).await;
    assert!(
        closed.is_ok(),
        "subscribers' channels close when the informer stops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_informer_behind_the_kept_history_relists_and_reports_the_differences() {
    // A short history, and snapshots that purge the log, so a server that was down catches
    // up by snapshot (which resets its history) and an old revision is compacted.
    let mut c = TestCluster::start(
        3,
        &[
            "--watch-history",
            "20",
            "--snapshot-every",
            "20",
            "--keep-logs",
            "5",
        ],
    );
    wait_ready(&c).await;
    let all = c.client();
    for name in ["keep", "change", "drop"] {
        all.create(&labelled(name, "t40", "web"))
            .await
            .expect("create");
    }
    // The informer reads from server 0 only, so stopping server 0 freezes its revision.
    let only_0 = c.client_of(0);
    let cancel = CancellationToken::new();
    let inf = informer(only_0, &cancel);
    let mut rx = inf.subscribe();
    tokio::time::timeout(T, inf.wait_synced())
        .await
        .expect("synced");
    expect_changes(
        &mut rx,
        &["added change", "added drop", "added keep", "relisted"],
    )
    .await;

    c.servers[0].kill();
    let others = c.client();
    eventually("writes without server 0", T, || async {
        let mut cm = others
            .get("ConfigMap", "default", "change")
            .await
            .map_err(|e| e.to_string())?;
        cm["data"]["value"] = json!("changed");
        others
            .update(&cm)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    others
        .delete("ConfigMap", "default", "drop", &DeleteOptions::default())
        .await
        .expect("delete drop");
    others
        .create(&labelled("new", "t40", "db"))
        .await
        .expect("create new");
    // Push the informer's revision out of the kept history.
    for i in 0..40 {
        others
            .create(&config_map("default", &format!("filler-{i}"), "x"))
            .await
            .expect("filler");
    }
    c.servers[0].restart();
    // Whether some of these came live before the stream was cut, the informer ends up
    // relisting and holding exactly what the servers hold.
    expect_all(
        &mut rx,
        &[
            "modified change v->changed",
            "added new",
            "deleted drop",
            "relisted",
        ],
    )
    .await;
    assert_eq!(names(&inf.list()), ["change", "keep", "new"]);
    assert_eq!(names(&inf.by_index("tier", "db")), ["new"]);
    cancel.cancel();
}

fn sched_node(name: &str, cpu: &str) -> Value {
    let r = json!({ "cpu": cpu, "memory": "8Gi", "pods": "110" });
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "status": {
            "capacity": r, "allocatable": r,
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

fn sched_pod(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "containers": [{
            "name": "app", "image": "busybox",
            "resources": { "requests": { "cpu": cpu, "memory": "64Mi" } },
        }] },
    })
}

async fn node_of(client: &Client, pod: &str) -> Result<String, String> {
    let p = client
        .get("Pod", "default", pod)
        .await
        .map_err(|e| e.to_string())?;
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("{pod} is not bound: {}", p["status"]))
}

/// The events about a pod, as (type, reason, message, count).
async fn events_of(client: &Client, pod: &str) -> Vec<(String, String, String, i64)> {
    let list = client
        .list(
            "Event",
            Some("default"),
            &corral_client::ListOptions {
                field_selector: format!("involvedObject.name={pod}"),
                ..Default::default()
            },
        )
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (
                s("type"),
                s("reason"),
                s("message"),
                e["count"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_binds_reports_unschedulable_pods_and_retries_when_a_node_joins() {
    let c = TestCluster::start(
        3,
        &["--disable-leader-components", "scheduler,node-lifecycle"],
    );
    wait_ready(&c).await;
    let client = c.client();
    for (n, cpu) in [("n1", "2"), ("n2", "2")] {
        client
            .create(&sched_node(n, cpu))
            .await
            .expect("create node");
    }
    let cancel = CancellationToken::new();
    let scheduler = tokio::spawn(corral_scheduler::driver::run(
        client.clone(),
        corral_scheduler::SchedulerOptions {
            host: "t40".into(),
            ..Default::default()
        },
        cancel.clone(),
    ));
    for p in ["p1", "p2", "p3"] {
        client.create(&sched_pod(p, "1")).await.expect("create pod");
    }
    let mut other = sched_pod("not-mine", "1");
    other["spec"]["schedulerName"] = json!("other-scheduler");
    client.create(&other).await.expect("create pod");

    let mut placed = Vec::new();
    for p in ["p1", "p2", "p3"] {
        placed.push(eventually("the pod bound", T, || node_of(&client, p)).await);
    }
    let on_n1 = placed.iter().filter(|n| *n == "n1").count();
    assert!(
        (1..=2).contains(&on_n1),
        "spread over both nodes: {placed:?}"
    );
    let p1 = client.get("Pod", "default", "p1").await.expect("p1");
    let scheduled = p1["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(scheduled["status"], "True", "{}", p1["status"]);
    let want = format!("Successfully assigned default/p1 to {}", placed[0]);
    eventually("the Scheduled event", T, || async {
        let evs = events_of(&client, "p1").await;
        evs.iter()
            .any(|(t, r, m, _)| t == "Normal" && r == "Scheduled" && *m == want)
            .then_some(())
            .ok_or(format!("{evs:?}"))
    })
    .await;

    // 3 of 4 cpus are taken: a pod asking for 3 fits nowhere.
    client
        .create(&sched_pod("big", "3"))
        .await
        .expect("create big");
    let message = "0/2 nodes are available: 2 Insufficient cpu.";
    eventually("PodScheduled=False on big", T, || async {
        let p = client
            .get("Pod", "default", "big")
            .await
            .map_err(|e| e.to_string())?;
        let cond = p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .ok_or(format!("no PodScheduled yet: {}", p["status"]))?;
        (cond["status"] == "False"
            && cond["reason"] == "Unschedulable"
            && cond["message"] == message)
            .then_some(())
            .ok_or(format!("{cond}"))
    })
    .await;
    eventually("the FailedScheduling event", T, || async {
        let evs = events_of(&client, "big").await;
        evs.iter()
            .any(|(t, r, m, _)| t == "Warning" && r == "FailedScheduling" && m == message)
            .then_some(())
            .ok_or(format!("{evs:?}"))
    })
    .await;

    // A node joins: big is retried at once (well before the 30 s retry period).
    let joined = std::time::Instant::now();
    client
        .create(&sched_node("n3", "4"))
        .await
        .expect("create n3");
    let n = eventually("big bound after n3 joined", Duration::from_secs(10), || {
        node_of(&client, "big")
    })
    .await;
    assert_eq!(n, "n3");
    assert!(joined.elapsed() < Duration::from_secs(10));
    assert!(
        node_of(&client, "not-mine").await.is_err(),
        "another scheduler's pod is left alone"
    );
    cancel.cancel();
    tokio::time::timeout(T, scheduler)
        .await
        .expect("the scheduler stops when cancelled")
        .expect("the scheduler task ends cleanly");
}

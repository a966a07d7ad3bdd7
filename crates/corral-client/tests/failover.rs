//! The client against tiny in-memory Corral servers on 127.0.0.1 (`support/fake.rs`): failover
//! between servers, the watch resuming through another server after its own is killed, Expired,
//! and apply.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::{
    Applied, Client, EventType, ListOptions, WatchEvent, WatchOptions, WatchStream,
};
use futures::StreamExt;
use serde_json::{Value, json};
use support::fake::{FakeServer, Store};

const DEADLINE: Duration = Duration::from_secs(10);

fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

async fn next(stream: &mut WatchStream) -> Result<WatchEvent, ApiError> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a watch event within the deadline")
        .expect("the watch stream is still open")
}

#[tokio::test]
async fn calls_skip_a_dead_server_and_stay_with_the_one_that_answers() {
    let store = Store::new();
    let a = FakeServer::start(&store);
    let client = Client::connect(&[dead_addr(), a.addr.clone()]).expect("client");

    let created = client
        .create(&pod("p1"))
        .await
        .expect("create through the live server");
    assert_eq!(created["metadata"]["resourceVersion"], "1");
    assert_eq!(client.current_server(), a.addr);
    let got = client.get("Pod", "default", "p1").await.expect("get");
    assert_eq!(got["metadata"]["name"], "p1");
    let err = client
        .get("Pod", "default", "nope")
        .await
        .expect_err("missing");
    assert_eq!(
        err,
        ApiError::NotFound {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "nope".into()
        }
    );
}

#[tokio::test]
async fn a_server_answering_unavailable_is_retried_until_it_serves() {
    let store = Store::new();
    let a = FakeServer::start(&store);
    store.unavailable_for.store(3, Ordering::SeqCst);
    let client = Client::connect(&[a.addr.as_str()]).expect("client");
    let list = client
        .list("Pod", None, &ListOptions::default())
        .await
        .expect("served once the election is over");
    assert!(list.items.is_empty());
    assert_eq!(store.unavailable_for.load(Ordering::SeqCst), 0);
}

/// Drives a watch in a task, so it runs (and opens its stream) before the test writes.
fn drive(
    mut watch: WatchStream,
) -> tokio::sync::mpsc::UnboundedReceiver<Result<WatchEvent, ApiError>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

async fn received(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<WatchEvent, ApiError>>,
) -> Result<WatchEvent, ApiError> {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a watch event within the deadline")
        .expect("the watch stream is still open")
}

/// Polls `done` until it holds, failing after the deadline.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn watches(store: &Store) -> Vec<u64> {
    store
        .watches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

#[tokio::test]
async fn a_watch_resumes_through_the_next_server_without_losing_or_repeating_events() {
    let store = Store::new();
    let mut a = FakeServer::start(&store);
    let b = FakeServer::start(&store);
    let writer = Client::connect(&[b.addr.as_str()]).expect("writer");
    writer
        .create(&pod("before"))
        .await
        .expect("create before the watch");

    let client = Client::connect(&[a.addr.clone(), b.addr.clone()]).expect("client");
    let mut rx = drive(client.watch("Pod", Some("default"), &WatchOptions::default()));
    // "From now" is asked as the number it stands for, so a resume cannot skip anything.
    wait_until("the watch is open", || watches(&store) == vec![1]).await;

    writer.create(&pod("p1")).await.expect("create p1");
    let first = received(&mut rx).await.expect("p1 added");
    assert_eq!((first.r#type, first.revision), (EventType::Added, 2));
    assert_eq!(first.object["metadata"]["name"], "p1");

    a.kill();
    writer.create(&pod("p2")).await.expect("create p2");
    writer
        .delete("Pod", "default", "p1", &Default::default())
        .await
        .expect("delete p1");
    writer.create(&pod("p3")).await.expect("create p3");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match received(&mut rx).await {
            Ok(e) => seen.push((e.r#type, e.revision, e.object["metadata"]["name"].clone())),
            // A round with no server reachable is reported; the watcher keeps going.
            Err(ApiError::Unavailable { .. }) => {}
            Err(e) => panic!("unexpected watch error: {e}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Added, 3, json!("p2")),
            (EventType::Deleted, 4, json!("p1")),
            (EventType::Added, 5, json!("p3")),
        ]
    );
    // Resumed from the last revision delivered, through the other server.
    assert_eq!(watches(&store).last(), Some(&2));
    assert_eq!(client.current_server(), b.addr);
    writer.create(&pod("p4")).await.expect("create p4");
    assert_eq!(received(&mut rx).await.expect("p4").revision, 6);
}

#[tokio::test]
async fn an_expired_revision_is_surfaced_and_ends_the_watch() {
    let store = Store::new();
    let a = FakeServer::start(&store);
    {
        let mut state = store.lock();
        state.revision = 50;
        state.oldest = 40;
    }
    let client = Client::connect(&[a.addr.as_str()]).expect("client");
    let mut watch = client.watch(
        "Pod",
        None,
        &WatchOptions {
            from_revision: 10,
            ..Default::default()
        },
    );
    assert_eq!(
        next(&mut watch).await,
        Err(ApiError::Expired {
            requested: 10,
            oldest: 40
        })
    );
    let end = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("ends promptly");
    assert!(end.is_none(), "the watch ends after Expired");
}

#[tokio::test]
async fn list_then_watch_sees_exactly_the_changes_after_the_list() {
    let store = Store::new();
    let a = FakeServer::start(&store);
    let client = Client::connect(&[a.addr.as_str()]).expect("client");
    client.create(&pod("old")).await.expect("create");
    let (list, mut watch) = client
        .list_then_watch("Pod", None, &ListOptions::default(), 0)
        .await
        .expect("list then watch");
    assert_eq!((list.items.len(), list.revision), (1, 1));
    client.create(&pod("new")).await.expect("create");
    let e = next(&mut watch).await.expect("new added");
    assert_eq!(
        (e.revision, e.object["metadata"]["name"].as_str()),
        (2, Some("new"))
    );
}

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configures() {
    let store = Store::new();
    let a = FakeServer::start(&store);
    let client = Client::connect(&[a.addr.as_str()]).expect("client");
    let manifest = pod("web");

    let (created, what) = client.apply(&manifest).await.expect("first apply");
    assert_eq!(what, Applied::Created);
    assert_eq!(created["metadata"]["namespace"], "default");

    let (_, what) = client.apply(&manifest).await.expect("second apply");
    assert_eq!(what, Applied::Unchanged);

    let mut changed = manifest.clone();
    changed["metadata"]["labels"] = json!({"app": "web"});
    let (updated, what) = client.apply(&changed).await.expect("third apply");
    assert_eq!(what, Applied::Configured);
    assert_eq!(updated["metadata"]["labels"]["app"], "web");
    let live = client.get("Pod", "default", "web").await.expect("get");
    assert_eq!(live["metadata"]["labels"]["app"], "web");

    let err = client
        .apply(&json!({"kind": "Pod", "metadata": {}}))
        .await
        .expect_err("no name");
    assert!(
        matches!(err, ApiError::BadRequest { ref message } if message.contains("metadata.name")),
        "{err}"
    );
}

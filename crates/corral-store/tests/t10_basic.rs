//! One in-process replica on a temp dir: writes, preconditions, watch, and restart from disk.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use corral_store::{Action, EventKind, Failure, Op, Pre, Store, StoreConfig, Txn, TxnResult};

fn put(key: &str, json: &str, pre: Vec<Pre>) -> Txn {
    Txn {
        independent: false,
        ops: vec![Op {
            key: key.into(),
            pre,
            action: Action::Put(json.into()),
        }],
    }
}

async fn open(dir: &std::path::Path) -> Store {
    let mut peers = BTreeMap::new();
    peers.insert(1, "127.0.0.1:1".to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    // A store just shut down in this process may take a moment to release its RocksDB lock.
    let store = loop {
        match Store::open(StoreConfig::new(
            1,
            dir.to_path_buf(),
            "127.0.0.1:1".into(),
            peers.clone(),
        ))
        .await
        {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    while !store.is_leader() {
        assert!(Instant::now() < deadline, "a single server elects itself");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
}

#[tokio::test]
async fn writes_survive_a_restart_and_revisions_are_log_indexes() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path()).await;
    let r = store
        .write(put(
            "/cm/a",
            r#"{"metadata":{"name":"a"}}"#,
            vec![Pre::Absent],
        ))
        .await
        .expect("write");
    let TxnResult::Committed { revision, results } = r else {
        panic!("committed")
    };
    assert!(
        results[0]
            .value
            .contains(&format!(r#""resourceVersion":"{revision}""#))
    );
    assert_eq!(store.reader().applied(), revision);

    let again = store
        .write(put("/cm/a", "{}", vec![Pre::Absent]))
        .await
        .expect("write");
    assert!(matches!(
        again,
        TxnResult::Failed {
            failure: Failure::Exists { .. },
            ..
        }
    ));
    store.shutdown().await;
    drop(store);

    let store = open(dir.path()).await;
    let got = store
        .reader()
        .get("/cm/a")
        .expect("read")
        .expect("still there");
    assert_eq!(got.revision, revision);
    store.shutdown().await;
}

#[tokio::test]
async fn a_watch_sees_history_then_live_changes_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path()).await;
    let start = store.reader().applied();
    for i in 0..5 {
        store
            .write(put(&format!("/cm/{i}"), "{}", vec![]))
            .await
            .expect("write");
    }
    store
        .write(put("/other/x", "{}", vec![]))
        .await
        .expect("write");
    let mut w = store.reader().watch("/cm/", start).expect("watch");
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(w.next().await.expect("event"));
    }
    store
        .write(Txn {
            independent: false,
            ops: vec![Op {
                key: "/cm/0".into(),
                pre: vec![Pre::Exists],
                action: Action::Delete,
            }],
        })
        .await
        .expect("delete");
    let del = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("live event")
        .expect("event");
    assert_eq!(del.kind, EventKind::Delete);
    assert_eq!(del.key, "/cm/0");
    let keys: Vec<&str> = seen.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["/cm/0", "/cm/1", "/cm/2", "/cm/3", "/cm/4"]);
    assert!(seen.windows(2).all(|p| p[0].revision < p[1].revision));
    store.shutdown().await;
}

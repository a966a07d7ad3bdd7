//! What the controller tests share: one real server (store and API) in process, and polling
//! with a deadline. Each test file uses what it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::Client;
use corral_store::{Store, StoreConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long a condition may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it answers Ok, or panics with the last answer after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("{what}: not within {WAIT:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub struct Server {
    pub client: Client,
    pub shutdown: CancellationToken,
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.store.shutdown().await;
    }
}

/// One server (a one-member Raft store and the API) with the built-in namespaces (`default`,
/// `kube-system`, `kube-public`, `kube-node-lease`), as a cluster's leader makes them.
pub async fn server() -> Server {
    let dir = tempfile::tempdir().expect("a temp dir");
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer_addr = peer.local_addr().expect("addr").to_string();
    drop(peer);
    let mut peers = BTreeMap::new();
    peers.insert(1, peer_addr.clone());
    let store = Store::open(StoreConfig::new(
        1,
        dir.path().to_path_buf(),
        peer_addr,
        peers,
    ))
    .await
    .expect("the store opens");
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = api.local_addr().expect("addr").to_string();
    let shutdown = CancellationToken::new();
    let metrics = corral_apiserver::Metrics::new();
    tokio::spawn(corral_apiserver::serve_grpc(
        api,
        store.clone(),
        metrics,
        shutdown.clone(),
    ));
    let client = Client::connect(&[addr]).expect("a client");
    for name in corral_apiserver::bootstrap::NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        eventually("the namespaces are created", || async {
            match client.create(&ns).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }
    Server {
        client,
        shutdown,
        store,
        _dir: dir,
    }
}

//! The agent: registers the Node, heartbeats, serves its logs endpoint, watches the pods bound to
//! it (only those: a field selector on `spec.nodeName`) and runs one worker per pod. Containers
//! found on the node that belong to no pod of the node are stopped and removed (orphans); those
//! that do belong to one are adopted by its worker, so an agent restart starts nothing twice.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::{Change, Client, EventRecorder, Informer};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::env::ConfigSource;
use crate::logs::LogService;
use crate::podip::PodIps;
use crate::runtime::Runtime;
use crate::worker::{self, Shared};
use crate::{node, volumes};

/// How often containers that belong to no pod are looked for.
const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: ApiError,
    },
    #[error("the agent's endpoint {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("finding this node's address: {0}")]
    Address(String),
}

/// ConfigMaps and Secrets from informers: containers are configured from the cache, and a
/// change is noticed at once.
struct Informed {
    config_maps: Informer,
    secrets: Informer,
    claims: Informer,
    volumes: Informer,
    allocatable: Value,
}

#[async_trait::async_trait]
impl ConfigSource for Informed {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
        Ok(self
            .config_maps
            .get(namespace, name)
            .map(|v| v.as_ref().clone()))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
        Ok(self
            .secrets
            .get(namespace, name)
            .map(|v| v.as_ref().clone()))
    }

    async fn secrets(&self, namespace: &str) -> Result<Vec<Value>, ApiError> {
        Ok(self
            .secrets
            .by_index("namespace", namespace)
            .into_iter()
            .map(|v| v.as_ref().clone())
            .collect())
    }

    async fn node_allocatable(&self) -> Option<Value> {
        Some(self.allocatable.clone())
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        Ok(self.claims.get(namespace, name).map(|v| v.as_ref().clone()))
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.volumes.get("", name).map(|v| v.as_ref().clone()))
    }
}

/// The address this machine uses to reach `server` (no packet is sent).
pub fn route_to(server: &str) -> Result<IpAddr, String> {
    let host = server
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.connect(addr).map_err(|e| e.to_string())?;
    Ok(sock.local_addr().map_err(|e| e.to_string())?.ip())
}

/// Runs the agent until `cancel` fires. Containers keep running when it stops.
pub async fn run(
    cfg: AgentConfig,
    client: Client,
    runtime: Arc<dyn Runtime>,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    for line in runtime.capabilities() {
        tracing::info!(runtime = runtime.name(), "{line}");
    }
    let ip = match cfg.node_ip {
        Some(ip) => ip,
        None => {
            let first = client.servers().into_iter().next().unwrap_or_default();
            route_to(&first).map_err(AgentError::Address)?
        }
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let mut cfg = cfg;
    if let Ok(actual) = listener.local_addr() {
        cfg.listen = actual;
    }
    let log_service = LogService::new(cfg.data_dir.clone(), runtime.clone()).server();
    let serve_cancel = cancel.clone();
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(log_service)
            .serve_with_incoming_shutdown(incoming, serve_cancel.cancelled())
            .await
        {
            tracing::error!(error = %e, "the agent's endpoint stopped");
        }
    });

    // Register, retrying while the servers come up.
    let node = loop {
        match node::register(&client, &cfg, ip, runtime.name()).await {
            Ok(n) => break n,
            Err(e) if e.reason() == corral_api::Reason::Unavailable => {
                tracing::warn!(error = %e, "registering the node; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Err(source) => {
                return Err(AgentError::Register {
                    node: cfg.name.clone(),
                    source,
                });
            }
        }
    };
    tracing::info!(node = %cfg.name, address = %ip, endpoint = %cfg.listen, "node registered");
    tokio::spawn(node::heartbeat(
        client.clone(),
        cfg.clone(),
        ip,
        runtime.name(),
        cancel.child_token(),
    ));

    let pods = Informer::builder(client.clone(), "Pod")
        .field_selector(format!("spec.nodeName={}", cfg.name))
        .start(cancel.child_token());
    let config_maps = Informer::builder(client.clone(), "ConfigMap").start(cancel.child_token());
    let secrets = Informer::builder(client.clone(), "Secret")
        .index("namespace", corral_client::informer::index_by_namespace)
        .start(cancel.child_token());
    // Pods wait on their claims being bound: claims and volumes wake them like ConfigMaps do.
    let claims =
        Informer::builder(client.clone(), "PersistentVolumeClaim").start(cancel.child_token());
    let volumes_informer =
        Informer::builder(client.clone(), "PersistentVolume").start(cancel.child_token());
    let (config_tx, config_rx) = watch::channel(0u64);
    for inf in [
        config_maps.clone(),
        secrets.clone(),
        claims.clone(),
        volumes_informer.clone(),
    ] {
        let tx = config_tx.clone();
        let mut changes = inf.subscribe();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    c = changes.recv() => match c {
                        Some(_) => { tx.send_modify(|n| *n += 1); }
                        None => return,
                    }
                }
            }
        });
    }
    let mut pod_changes = pods.subscribe();
    pods.wait_synced().await;
    config_maps.wait_synced().await;
    secrets.wait_synced().await;
    claims.wait_synced().await;
    volumes_informer.wait_synced().await;

    let shared = Shared {
        client: client.clone(),
        runtime: runtime.clone(),
        recorder: EventRecorder::new(client.clone(), "kubelet", &cfg.name),
        config: Arc::new(Informed {
            config_maps,
            secrets,
            claims,
            volumes: volumes_informer,
            allocatable: node
                .pointer("/status/allocatable")
                .cloned()
                .unwrap_or(Value::Null),
        }),
        root: cfg.data_dir.clone(),
        node_name: cfg.name.clone(),
        node_ip: ip,
        pod_ips: Arc::new(PodIps::new(ip, cfg.pod_ip_range)),
        dns: cfg.dns.clone(),
        backoff: cfg.backoff,
        resync: cfg.resync,
        config_changed: config_rx,
    };
    let mut workers = Workers {
        shared,
        running: HashMap::new(),
        cancel: cancel.clone(),
    };
    for p in pods.list() {
        workers.feed(p);
    }
    workers.sweep_orphans(&pods).await;
    let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
    sweep.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = sweep.tick() => {
                workers.reap();
                workers.sweep_orphans(&pods).await;
            }
            change = pod_changes.recv() => match change {
                Some(Change::Added(p)) => workers.feed(p),
                Some(Change::Modified { new, .. }) => workers.feed(new),
                Some(Change::Deleted(p)) => workers.gone(&p),
                Some(Change::Relisted) => {
                    let current: HashMap<String, Arc<Value>> = pods
                        .list()
                        .into_iter()
                        .map(|p| (uid_of(&p), p))
                        .collect();
                    let known: Vec<String> = workers.running.keys().cloned().collect();
                    for uid in known {
                        if !current.contains_key(&uid) {
                            workers.gone_uid(&uid);
                        }
                    }
                    for p in current.into_values() {
                        workers.feed(p);
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

fn uid_of(p: &Value) -> String {
    p.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A pod's worker: where its pod updates go, and its task.
type WorkerHandle = (watch::Sender<Option<Arc<Value>>>, JoinHandle<()>);

struct Workers {
    shared: Shared,
    running: HashMap<String, WorkerHandle>,
    cancel: CancellationToken,
}

impl Workers {
    fn feed(&mut self, pod: Arc<Value>) {
        let uid = uid_of(&pod);
        if uid.is_empty() {
            return;
        }
        if let Some((tx, handle)) = self.running.get(&uid)
            && !handle.is_finished()
        {
            tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let handle = tokio::spawn(worker::run(
            self.shared.clone(),
            rx,
            self.cancel.child_token(),
        ));
        self.running.insert(uid, (tx, handle));
    }

    fn gone(&mut self, pod: &Value) {
        self.gone_uid(&uid_of(pod));
    }

    fn gone_uid(&mut self, uid: &str) {
        if let Some((tx, _)) = self.running.get(uid) {
            tx.send_replace(None);
        }
    }

    /// Forgets workers that have finished.
    fn reap(&mut self) {
        self.running.retain(|_, (_, h)| !h.is_finished());
    }

    /// Stops and removes containers of pods this node no longer has.
    async fn sweep_orphans(&mut self, pods: &Informer) {
        let known: std::collections::HashSet<String> =
            pods.list().iter().map(|p| uid_of(p)).collect();
        let (runs, uids) = match (
            self.shared.runtime.list().await,
            self.shared.runtime.pod_uids().await,
        ) {
            (Ok(r), Ok(u)) => (r, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "listing containers for the orphan sweep");
                return;
            }
        };
        let orphan = |uid: &String| !known.contains(uid) && !self.running.contains_key(uid);
        // Every pod with anything on the node (a sandbox alone counts), with its runs.
        let mut orphans: HashMap<String, Vec<crate::runtime::ContainerInfo>> = uids
            .into_iter()
            .filter(|u| orphan(u))
            .map(|u| (u, Vec::new()))
            .collect();
        for r in runs {
            if orphan(&r.pod_uid) {
                orphans.entry(r.pod_uid.clone()).or_default().push(r);
            }
        }
        for (uid, runs) in orphans {
            tracing::info!(pod = %uid, containers = runs.len(), "removing the containers of a pod this node no longer has");
            for r in runs.iter().filter(|r| r.is_running()) {
                if let Err(e) = self
                    .shared
                    .runtime
                    .stop(&r.id, Duration::from_secs(2))
                    .await
                {
                    tracing::warn!(container = %r.id, error = %e, "stopping an orphan");
                }
            }
            if let Err(e) = self.shared.runtime.remove_pod(&uid).await {
                tracing::warn!(pod = %uid, error = %e, "removing an orphan's state");
            }
            if let Err(e) = volumes::remove_pod_volumes(&self.shared.root, &uid) {
                tracing::warn!(pod = %uid, error = %e, "removing an orphan's volumes");
            }
        }
    }
}

//! `corral server` and `corral up`: open the store, serve Raft on the peer port, the API on the
//! client port, health and metrics on the HTTP port, and run the leader-run components.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use corral_api::service_ip::ServiceIpRange;
use corral_apiserver::{Metrics, Objects};
use corral_store::{HistoryConfig, LeaderHost, Store, StoreConfig, component};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// This server's Raft id (non-zero, unique in the cluster).
    #[arg(long, env = "CORRAL_ID")]
    pub id: u64,
    /// Where the store (RocksDB) lives; restart with the same directory to rejoin.
    #[arg(long, env = "CORRAL_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Client gRPC address.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Raft (peer) gRPC address.
    #[arg(long, env = "CORRAL_PEER_LISTEN", default_value = "127.0.0.1:7071")]
    pub peer_listen: SocketAddr,
    /// Health and metrics HTTP address.
    #[arg(long, env = "CORRAL_HTTP", default_value = "127.0.0.1:7072")]
    pub http: SocketAddr,
    /// The initial members' Raft addresses: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, env = "CORRAL_PEERS", default_value = "")]
    pub peers: String,
    /// The Raft address the others reach this server at (default: its entry in --peers, else --peer-listen).
    #[arg(long, env = "CORRAL_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Start empty and wait to be added with `corralctl cluster add` instead of bootstrapping.
    #[arg(long, env = "CORRAL_JOIN")]
    pub join: bool,
    #[arg(long, env = "CORRAL_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    #[arg(long, env = "CORRAL_ELECTION_MIN_MS", default_value_t = 100)]
    pub election_min_ms: u64,
    #[arg(long, env = "CORRAL_ELECTION_MAX_MS", default_value_t = 200)]
    pub election_max_ms: u64,
    /// Snapshot after this many entries; the log is purged behind the snapshot.
    #[arg(long, env = "CORRAL_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot for followers that lag a little.
    #[arg(long, env = "CORRAL_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,
    /// Revisions of watch history kept; a watch from older answers Expired.
    #[arg(long, env = "CORRAL_WATCH_HISTORY", default_value_t = 100_000)]
    pub watch_history: u64,
    /// Test aid: run a leader-run probe component that records where it runs.
    #[arg(long, env = "CORRAL_LEADER_PROBE", hide = true)]
    pub leader_probe: bool,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Serve cluster DNS (UDP and TCP) on this address, e.g. 0.0.0.0:53.
    #[arg(long, env = "CORRAL_DNS")]
    pub dns: Option<SocketAddr>,
    #[command(flatten)]
    pub dns_args: crate::dns::DnsArgs,
}

/// The leader-run components' settings (and the API's, which `corral server` and `corral up`
/// share with them: the Service ClusterIP range, pod admission's default tolerations, which
/// decide how soon those components evict pods from a lost node).
#[derive(Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Leader-run components not to run here (comma-separated: scheduler, node-lifecycle,
    /// replicaset, deployment, daemonset, job, cronjob, garbage-collector, namespace,
    /// serviceaccount, endpoints, statefulset, persistentvolume-binder, local-path-provisioner).
    #[arg(long, env = "CORRAL_DISABLE_LEADER_COMPONENTS", value_delimiter = ',')]
    pub disable_leader_components: Vec<String>,
    /// Seconds without a heartbeat before a node turns Ready=Unknown (Kubernetes'
    /// --node-monitor-grace-period).
    #[arg(long, env = "CORRAL_NODE_GRACE_SECONDS", default_value_t = 40)]
    pub node_grace_seconds: u64,
    /// How often the node lifecycle controller looks at every node.
    #[arg(long, env = "CORRAL_NODE_MONITOR_SECONDS", default_value_t = 5)]
    pub node_monitor_seconds: u64,
    /// The IPv4 CIDR Service ClusterIPs are allocated from (/12 to /30; its first address is the
    /// `kubernetes` Service's). Every server of a cluster must be given the same range.
    #[arg(long, env = "CORRAL_SERVICE_CLUSTER_IP_RANGE", default_value_t = ServiceIpRange::default())]
    pub service_cluster_ip_range: ServiceIpRange,
    /// Pod admission: `tolerationSeconds` of the default toleration of
    /// `node.kubernetes.io/not-ready:NoExecute` given to every pod without one (Kubernetes' API
    /// server flag of the same name): how long a pod stays on a NotReady node before eviction.
    #[arg(
        long,
        env = "CORRAL_DEFAULT_NOT_READY_TOLERATION_SECONDS",
        default_value_t = 300
    )]
    pub default_not_ready_toleration_seconds: i64,
    /// Pod admission: `tolerationSeconds` of the default toleration of
    /// `node.kubernetes.io/unreachable:NoExecute`: how long a pod stays on a node that stopped
    /// reporting before it is evicted (and its owner replaces it).
    #[arg(
        long,
        env = "CORRAL_DEFAULT_UNREACHABLE_TOLERATION_SECONDS",
        default_value_t = 300
    )]
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for LeaderArgs {
    fn default() -> Self {
        LeaderArgs {
            disable_leader_components: Vec::new(),
            node_grace_seconds: 40,
            node_monitor_seconds: 5,
            service_cluster_ip_range: ServiceIpRange::default(),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

impl LeaderArgs {
    fn admission(&self) -> corral_api::admission::AdmissionConfig {
        corral_api::admission::AdmissionConfig {
            not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        for (flag, v) in [
            (
                "--default-not-ready-toleration-seconds",
                self.default_not_ready_toleration_seconds,
            ),
            (
                "--default-unreachable-toleration-seconds",
                self.default_unreachable_toleration_seconds,
            ),
        ] {
            if v < 0 {
                bail!("{flag} {v}: must be 0 or more seconds");
            }
        }
        for c in &self.disable_leader_components {
            if !LEADER_COMPONENTS.contains(&c.as_str()) {
                bail!(
                    "--disable-leader-components: {c:?} is not one of {}",
                    LEADER_COMPONENTS.join(", ")
                );
            }
        }
        Ok(())
    }

    fn enabled(&self, name: &str) -> bool {
        !self.disable_leader_components.iter().any(|c| c == name)
    }
}

/// The leader-run components a server can run.
pub const LEADER_COMPONENTS: [&str; 14] = [
    "scheduler",
    "node-lifecycle",
    "replicaset",
    "deployment",
    "daemonset",
    "job",
    "cronjob",
    "garbage-collector",
    "namespace",
    "serviceaccount",
    "endpoints",
    "statefulset",
    "persistentvolume-binder",
    "local-path-provisioner",
];

/// Registers the leader-run component `name` (unless disabled) running `f` with its own client.
fn register_with_client<F, Fut>(
    host: &mut LeaderHost,
    leader: &LeaderArgs,
    client: &corral_client::Client,
    name: &'static str,
    f: F,
) where
    F: Fn(corral_client::Client, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if leader.enabled(name) {
        let client = client.clone();
        host.register(name, component(move |t| f(client.clone(), t)));
    }
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the single node keeps its data.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "corral-data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[arg(long, env = "CORRAL_PEER_LISTEN", default_value = "127.0.0.1:7071")]
    pub peer_listen: SocketAddr,
    #[arg(long, env = "CORRAL_HTTP", default_value = "127.0.0.1:7072")]
    pub http: SocketAddr,
    /// Where the agent's endpoint (logs) listens.
    #[arg(long, env = "CORRAL_AGENT_LISTEN", default_value = "127.0.0.1:7073")]
    pub agent_listen: SocketAddr,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub agent: crate::agent::NodeArgs,
    /// Where cluster DNS listens (UDP and TCP).
    #[arg(long, env = "CORRAL_DNS", default_value = "127.0.0.1:10053")]
    pub dns: SocketAddr,
    #[command(flatten)]
    pub dns_args: crate::dns::DnsArgs,
}

pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            bail!("--peers entry {part:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers entry {part:?}: {id:?} is not a number"))?;
        if id == 0 {
            bail!("--peers entry {part:?}: ids start at 1");
        }
        if addr.trim().is_empty() || !addr.contains(':') {
            bail!("--peers entry {part:?}: {addr:?} is not HOST:PORT");
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            bail!("--peers lists id {id} twice");
        }
    }
    Ok(out)
}

pub async fn run_server(a: ServerArgs) -> anyhow::Result<()> {
    if a.id == 0 {
        bail!("--id must be a non-zero number");
    }
    let peers = parse_peers(&a.peers)?;
    let advertise = a
        .advertise_peer
        .clone()
        .or_else(|| peers.get(&a.id).cloned())
        .unwrap_or_else(|| a.peer_listen.to_string());
    let mut cfg = StoreConfig::new(a.id, a.data_dir.clone(), advertise, peers);
    cfg.join = a.join;
    cfg.heartbeat_ms = a.heartbeat_ms;
    cfg.election_min_ms = a.election_min_ms;
    cfg.election_max_ms = a.election_max_ms;
    cfg.snapshot_every = a.snapshot_every;
    cfg.keep_logs = a.keep_logs;
    cfg.history = HistoryConfig {
        keep_revisions: a.watch_history,
    };
    a.leader.check()?;
    let shutdown = CancellationToken::new();
    let node = start(
        cfg,
        a.listen,
        a.peer_listen,
        a.http,
        a.leader_probe,
        &a.leader,
        shutdown.clone(),
    )
    .await?;
    let dns = match a.dns {
        Some(listen) => {
            Some(crate::dns::start(listen, &a.dns_args, node.api, shutdown.clone()).await?)
        }
        None => None,
    };
    println!(
        "corral server {} listening: api {} | raft {} | http {}{}",
        a.id,
        node.api,
        node.peer,
        node.http,
        dns.as_ref()
            .map(|(d, _)| format!(" | dns {d}"))
            .unwrap_or_default()
    );
    wait_for_signal().await;
    shutdown.cancel();
    if let Some((_, task)) = dns {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    node.stop().await;
    Ok(())
}

/// Where `corral up` takes its pods' addresses unless `--pod-ip-range` says otherwise.
pub const UP_POD_IP_RANGE: &str = "127.1.0.0/16";

pub async fn run_up(a: UpArgs) -> anyhow::Result<()> {
    let mut peers = BTreeMap::new();
    peers.insert(1, a.peer_listen.to_string());
    let cfg = StoreConfig::new(1, a.data_dir.clone(), a.peer_listen.to_string(), peers);
    a.leader.check()?;
    let shutdown = CancellationToken::new();
    let node = start(
        cfg,
        a.listen,
        a.peer_listen,
        a.http,
        false,
        &a.leader,
        shutdown.clone(),
    )
    .await?;
    let (dns, dns_task) = crate::dns::start(a.dns, &a.dns_args, node.api, shutdown.clone()).await?;
    let api = loopback(node.api);
    let mut node_args = a.agent.clone();
    if node_args.pod_ip_range.is_none() {
        // One machine: each pod gets its own loopback address (see corral_agent::podip).
        node_args.pod_ip_range = Some(UP_POD_IP_RANGE.to_string());
    }
    let mut agent_cfg = node_args.config(a.data_dir.join("agent"), Some("127.0.0.1".parse()?))?;
    agent_cfg.listen = a.agent_listen;
    let agent_listen = agent_cfg.listen;
    let node_name = agent_cfg.name.clone();
    let client = corral_client::Client::connect(&[api.to_string()])?;
    let runtime = crate::agent::process_runtime(&agent_cfg)?;
    let capabilities = runtime.capabilities();
    let agent_shutdown = shutdown.clone();
    let agent = tokio::spawn(async move {
        if let Err(e) = corral_agent::run(agent_cfg, client, runtime, agent_shutdown).await {
            tracing::error!(error = %e, "the agent stopped");
        }
    });
    println!("corral up: one node, data in {}", a.data_dir.display());
    println!("  api (corralctl --server) {}", node.api);
    println!("  raft                     {}", node.peer);
    println!("  health and metrics       http://{}/metrics", node.http);
    println!(
        "  dns (udp, tcp)           {dns}, zone {} (dig @{} -p {} dns-version.{} TXT)",
        a.dns_args.cluster_domain,
        dns.ip(),
        dns.port(),
        a.dns_args.cluster_domain
    );
    println!(
        "  agent (node {node_name})  {agent_listen}, process runtime, pod IPs from {}",
        node_args.pod_ip_range.as_deref().unwrap_or(UP_POD_IP_RANGE)
    );
    for line in capabilities {
        println!("    {line}");
    }
    println!("try: corralctl get nodes");
    wait_for_signal().await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), dns_task).await;
    node.stop().await;
    Ok(())
}

pub async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub struct RunningServer {
    pub api: SocketAddr,
    pub peer: SocketAddr,
    pub http: SocketAddr,
    store: Store,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningServer {
    pub async fn stop(mut self) {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(5), self.tasks.join_next()).await
        {}
        self.store.shutdown().await;
    }
}

/// `addr` with an unspecified IP (0.0.0.0, ::) replaced by loopback: where this machine reaches
/// a listener bound to every address.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

pub async fn start(
    cfg: StoreConfig,
    listen: SocketAddr,
    peer_listen: SocketAddr,
    http: SocketAddr,
    leader_probe: bool,
    leader: &LeaderArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let id = cfg.id;
    // Listen first, so peers can reach this server as soon as Raft starts talking.
    let peer_l = bind(peer_listen, "--peer-listen").await?;
    let api_l = bind(listen, "--listen").await?;
    let http_l = bind(http, "--http").await?;
    let (api, peer, http) = (
        api_l.local_addr()?,
        peer_l.local_addr()?,
        http_l.local_addr()?,
    );
    let mut tasks = tokio::task::JoinSet::new();
    let raft_shutdown = shutdown.clone();
    let store = Store::open(cfg).await.context("opening the store")?;
    let svc = store.raft_service();
    tasks.spawn(async move {
        let r = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(svc)
            .serve_with_incoming_shutdown(
                corral_apiserver::incoming(peer_l),
                raft_shutdown.cancelled(),
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "raft gRPC server stopped");
        }
    });
    let metrics = Metrics::new();
    let objects = Objects::new(store.clone())
        .with_service_ip_range(leader.service_cluster_ip_range)
        .with_admission(leader.admission());
    {
        let (objects, metrics, shutdown) = (objects.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = corral_apiserver::serve_objects(api_l, objects, metrics, shutdown).await
            {
                tracing::error!(error = %e, "api gRPC server stopped");
            }
        });
    }
    {
        let (store, metrics, shutdown) = (store.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = corral_apiserver::http::serve(http_l, store, metrics, shutdown).await {
                tracing::error!(error = %e, "http server stopped");
            }
        });
    }
    let mut host = LeaderHost::new(store.clone());
    {
        let objects = objects.clone();
        host.register(
            "bootstrap-namespaces",
            component(move |t| corral_apiserver::bootstrap::ensure_namespaces(objects.clone(), t)),
        );
    }
    {
        let objects = objects.clone();
        host.register(
            "bootstrap-storage-class",
            component(move |t| {
                corral_apiserver::bootstrap::ensure_storage_class(objects.clone(), t)
            }),
        );
    }
    // The scheduler and controllers use the API like any client (through this server, which
    // forwards writes to the leader, i.e. to itself while they run).
    let client = corral_client::Client::connect(&[loopback(api).to_string()])?;
    use corral_controllers::{
        cronjob, daemonset, deployment, endpoints, gc, job, local_path, namespace, node_lifecycle,
        persistentvolume, replicaset, serviceaccount, statefulset,
    };
    register_with_client(&mut host, leader, &client, "scheduler", |c, t| {
        corral_scheduler::driver::run(c, corral_scheduler::driver::SchedulerOptions::default(), t)
    });
    let lifecycle = node_lifecycle::NodeLifecycleOptions {
        grace_period: Duration::from_secs(leader.node_grace_seconds),
        monitor_period: Duration::from_secs(leader.node_monitor_seconds.max(1)),
    };
    register_with_client(&mut host, leader, &client, "node-lifecycle", move |c, t| {
        node_lifecycle::run(c, lifecycle.clone(), t)
    });
    register_with_client(&mut host, leader, &client, "replicaset", |c, t| {
        replicaset::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "deployment", |c, t| {
        deployment::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "daemonset", |c, t| {
        daemonset::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "job", |c, t| {
        job::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "cronjob", |c, t| {
        cronjob::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "garbage-collector", |c, t| {
        gc::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "namespace", |c, t| {
        namespace::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "serviceaccount", |c, t| {
        serviceaccount::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "endpoints", |c, t| {
        endpoints::run(c, Default::default(), t)
    });
    register_with_client(&mut host, leader, &client, "statefulset", |c, t| {
        statefulset::run(c, Default::default(), t)
    });
    register_with_client(
        &mut host,
        leader,
        &client,
        "persistentvolume-binder",
        |c, t| persistentvolume::run(c, Default::default(), t),
    );
    register_with_client(
        &mut host,
        leader,
        &client,
        "local-path-provisioner",
        |c, t| local_path::run(c, Default::default(), t),
    );
    if leader_probe {
        let (objects, metrics) = (objects.clone(), metrics.clone());
        host.register(
            "leader-probe",
            component(move |t| leader_probe_loop(id, objects.clone(), metrics.clone(), t)),
        );
    }
    let host_shutdown = shutdown.clone();
    tasks.spawn(host.run(host_shutdown));
    Ok(RunningServer {
        api,
        peer,
        http,
        store,
        tasks,
    })
}

/// A leader-run component for tests: while it runs, the metric
/// `corral_leader_component_running{component="leader-probe"}` is 1 on this server.
async fn leader_probe_loop(
    id: u64,
    objects: Objects,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let gauge = metrics
        .leader_components
        .get_or_create(&corral_apiserver::metrics::ComponentLabels {
            component: "leader-probe".into(),
        })
        .clone();
    gauge.set(1);
    let _ = &objects;
    tracing::info!(server = id, "leader probe running");
    shutdown.cancelled().await;
    gauge.set(0);
}

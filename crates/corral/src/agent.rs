//! `corral agent`: the node agent against a list of servers. `corral up` runs the same agent
//! in-process with [`NodeArgs`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use corral_agent::AgentConfig;
use corral_agent::lifecycle::Backoff;
use corral_agent::pod_dns::ClusterDns;
use corral_agent::runtime::Runtime;
use corral_agent::runtime::docker::{DEFAULT_PAUSE_IMAGE, DockerOptions, DockerRuntime};
use corral_agent::runtime::process::{ProcessRuntime, ShimCommand};
use tokio_util::sync::CancellationToken;

/// What the Node looks like and how its agent paces itself (shared by `agent` and `up`).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The Node's name (default: this machine's host name).
    #[arg(long = "name", env = "CORRAL_NODE_NAME")]
    pub name: Option<String>,
    /// CPU capacity (a quantity: 4, 3500m); default: detected.
    #[arg(long, env = "CORRAL_NODE_CPU")]
    pub cpu: Option<String>,
    /// Memory capacity (a quantity: 8Gi); default: detected.
    #[arg(long, env = "CORRAL_NODE_MEMORY")]
    pub memory: Option<String>,
    /// Most pods this node runs.
    #[arg(long, env = "CORRAL_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,
    /// Node labels, key=value (repeat or comma-separate).
    #[arg(
        long = "node-labels",
        env = "CORRAL_NODE_LABELS",
        value_delimiter = ','
    )]
    pub node_labels: Vec<String>,
    /// Taints of a first registration, key[=value]:Effect (repeat or comma-separate).
    #[arg(
        long = "register-with-taints",
        env = "CORRAL_NODE_TAINTS",
        value_delimiter = ','
    )]
    pub taints: Vec<String>,
    /// Seconds between heartbeats (Lease renewal and Node status).
    #[arg(long, env = "CORRAL_HEARTBEAT_SECONDS", default_value_t = 10)]
    pub heartbeat_seconds: u64,
    /// First restart back-off of a crashing container, in seconds (doubling from the second
    /// restart on).
    #[arg(long, env = "CORRAL_BACKOFF_INITIAL_SECONDS", default_value_t = 10.0)]
    pub backoff_initial_seconds: f64,
    /// Longest restart back-off, in seconds.
    #[arg(long, env = "CORRAL_BACKOFF_MAX_SECONDS", default_value_t = 300.0)]
    pub backoff_max_seconds: f64,
    /// Process runtime: give each pod its own address from this range inside 127.0.0.0/8
    /// (e.g. 127.1.0.0/16) instead of the node's address, so pods can listen on the same port
    /// at their own `status.podIP`. `corral up` uses 127.1.0.0/16 unless told otherwise.
    #[arg(long, env = "CORRAL_POD_IP_RANGE")]
    pub pod_ip_range: Option<String>,
    /// Where the local-path provisioner makes this node's volumes (default:
    /// <data-dir>/local-path); published on the Node as `corral.io/local-path-root`.
    #[arg(long, env = "CORRAL_LOCAL_PATH_ROOT")]
    pub local_path_root: Option<PathBuf>,
}

impl NodeArgs {
    pub fn config(
        &self,
        data_dir: PathBuf,
        node_ip: Option<IpAddr>,
    ) -> anyhow::Result<AgentConfig> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => host_name()?,
        };
        corral_api::validation::check_dns1123_subdomain(&name)
            .map_err(|why| anyhow::anyhow!("--name {name:?}: {why}"))?;
        let mut cfg = AgentConfig::new(name);
        cfg.data_dir = data_dir;
        cfg.node_ip = node_ip;
        cfg.cpu = self.cpu.clone();
        cfg.memory = self.memory.clone();
        for (flag, value) in [("--cpu", &self.cpu), ("--memory", &self.memory)] {
            if let Some(v) = value {
                corral_api::quantity::parse_quantity(v)
                    .map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))?;
            }
        }
        cfg.max_pods = self.max_pods;
        if let Some(r) = &self.pod_ip_range {
            cfg.pod_ip_range = Some(
                corral_agent::podip::LoopbackRange::parse(r)
                    .map_err(|e| anyhow::anyhow!("--pod-ip-range: {e}"))?,
            );
        }
        cfg.local_path_root = self.local_path_root.clone();
        for l in &self.node_labels {
            let (k, v) = corral_agent::config::parse_label(l)
                .map_err(|e| anyhow::anyhow!("--node-labels: {e}"))?;
            cfg.labels.insert(k, v);
        }
        for t in &self.taints {
            cfg.taints.push(
                corral_agent::config::parse_taint(t)
                    .map_err(|e| anyhow::anyhow!("--register-with-taints: {e}"))?,
            );
        }
        if self.heartbeat_seconds == 0 {
            bail!("--heartbeat-seconds must be at least 1");
        }
        cfg.heartbeat = Duration::from_secs(self.heartbeat_seconds);
        cfg.lease_duration = Duration::from_secs(40.max(self.heartbeat_seconds * 4));
        let secs = |flag: &str, v: f64| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| anyhow::anyhow!("{flag} {v}: not a number of seconds"))
        };
        cfg.backoff = Backoff {
            initial: secs("--backoff-initial-seconds", self.backoff_initial_seconds)?,
            max: secs("--backoff-max-seconds", self.backoff_max_seconds)?,
        };
        Ok(cfg)
    }
}

fn host_name() -> anyhow::Result<String> {
    let raw = nix::unistd::gethostname().context("reading the host name (pass --name)")?;
    Ok(raw.to_string_lossy().to_lowercase())
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// API servers, comma-separated HOST:PORT (any of them; the agent fails over).
    #[arg(long, env = "CORRAL_SERVER", value_delimiter = ',', required = true)]
    pub server: Vec<String>,
    /// Where pods' volumes, logs and runtime state live.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "corral-agent-data")]
    pub data_dir: PathBuf,
    /// The container runtime.
    #[arg(long, env = "CORRAL_RUNTIME", default_value = "process")]
    pub runtime: String,
    /// Where the agent's endpoint (logs) listens; published in the Node's status.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "0.0.0.0:10250")]
    pub listen: SocketAddr,
    /// This node's address (pods' IP under the process runtime); default: the address that
    /// reaches the first server.
    #[arg(long, env = "CORRAL_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Docker runtime: the Docker network pods join (their IP is their address there); default:
    /// the engine's default bridge.
    #[arg(long, env = "CORRAL_DOCKER_NETWORK")]
    pub docker_network: Option<String>,
    /// Docker runtime: the image of each pod's infra container, which holds its namespaces.
    #[arg(long, env = "CORRAL_POD_INFRA_IMAGE", default_value = DEFAULT_PAUSE_IMAGE)]
    pub pod_infra_container_image: String,
    #[command(flatten)]
    pub dns: ClusterDnsArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The cluster DNS pods are given (the kubelet's flags).
#[derive(Args, Debug, Clone)]
pub struct ClusterDnsArgs {
    /// DNS server IPs pods with `dnsPolicy: ClusterFirst` resolve through (comma-separated);
    /// without it such pods use the node's resolver.
    #[arg(long, env = "CORRAL_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain: pods search `<ns>.svc.<domain> svc.<domain> <domain>`.
    #[arg(long, env = "CORRAL_CLUSTER_DOMAIN", default_value = corral_agent::pod_dns::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
}

impl ClusterDnsArgs {
    pub fn config(&self) -> anyhow::Result<ClusterDns> {
        let domain = self.cluster_domain.trim_end_matches('.');
        corral_api::validation::check_dns1123_subdomain(domain)
            .map_err(|why| anyhow::anyhow!("--cluster-domain {domain:?}: {why}"))?;
        Ok(ClusterDns {
            servers: self.cluster_dns.clone(),
            domain: domain.to_string(),
        })
    }
}

/// The process runtime for an agent's configuration.
pub fn process_runtime(cfg: &AgentConfig) -> anyhow::Result<Arc<dyn Runtime>> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "creating the agent's data directory {}",
            cfg.data_dir.display()
        )
    })?;
    let shim = ShimCommand::current_exe()?;
    Ok(Arc::new(ProcessRuntime::new(cfg.data_dir.clone(), shim)?))
}

/// The docker runtime for an agent's configuration: the local engine (`DOCKER_HOST` or its
/// socket), pods on `network`.
pub async fn docker_runtime(
    cfg: &AgentConfig,
    network: Option<String>,
    pause_image: String,
) -> anyhow::Result<Arc<dyn Runtime>> {
    // Bind-mount sources must be absolute paths the engine finds on its host.
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "creating the agent's data directory {}",
            cfg.data_dir.display()
        )
    })?;
    let root = std::fs::canonicalize(&cfg.data_dir)
        .with_context(|| format!("resolving {}", cfg.data_dir.display()))?;
    let opts = DockerOptions {
        network,
        pause_image,
        ..DockerOptions::new(cfg.name.clone(), root)
    };
    Ok(Arc::new(DockerRuntime::connect(opts).await?))
}

pub async fn run_agent(a: AgentArgs) -> anyhow::Result<()> {
    let mut cfg = a.node.config(a.data_dir.clone(), a.node_ip)?;
    cfg.listen = a.listen;
    cfg.dns = a.dns.config()?;
    let runtime = match a.runtime.as_str() {
        "process" => process_runtime(&cfg)?,
        "docker" => {
            let rt = docker_runtime(
                &cfg,
                a.docker_network.clone(),
                a.pod_infra_container_image.clone(),
            )
            .await?;
            // Volumes are mounted by the engine from the canonical path.
            cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)?;
            rt
        }
        other => bail!("--runtime {other:?} is not one of process, docker"),
    };
    let client = corral_client::Client::connect(&a.server)?;
    let shutdown = CancellationToken::new();
    println!(
        "corral agent: node {} | endpoint {} | runtime {} | servers {}",
        cfg.name,
        cfg.listen,
        runtime.name(),
        a.server.join(",")
    );
    for line in runtime.capabilities() {
        println!("  {line}");
    }
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::server::wait_for_signal().await;
        stop.cancel();
    });
    corral_agent::run(cfg, client, runtime, shutdown).await?;
    Ok(())
}

//! `corral bench chaos`: faults against a running docker-compose cluster (`cluster/up.sh`) while
//! clients write, then the accounting.
//!
//! Writers create ConfigMaps, each with a unique value, and record every write the cluster
//! acknowledged (a write whose answer was lost is retried with the same name and value until it
//! is acknowledged, or reported as AlreadyExists, which means an earlier attempt committed it).
//! Meanwhile faults go round: `docker kill` of the leader's container (then started again),
//! `docker pause` of a server, `docker network disconnect` of a server from the compose network,
//! and `docker restart` of an agent. Then everything is healed, and the bench checks that every
//! acknowledged write reads back with its value (linearizable reads) and measures how long the
//! cluster takes to converge: one leader all servers agree on, every node Ready, the workload
//! Deployment's replicas all Ready. It prints what it did and what it found, and fails when a
//! write was lost or nothing converged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use corral_api::ApiError;
use corral_client::{Client, ListOptions};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Args, Debug)]
pub struct ChaosBench {
    /// The compose project (`COMPOSE_PROJECT_NAME` of cluster/up.sh).
    #[arg(long, env = "COMPOSE_PROJECT_NAME", default_value = "corral")]
    pub project: String,
    /// The servers' published client addresses.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:17070,127.0.0.1:17080,127.0.0.1:17090"
    )]
    pub server: Vec<String>,
    /// Seconds of faults.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Seconds a fault lasts before it is healed (kill → start, pause → unpause, disconnect →
    /// connect), and between two faults.
    #[arg(long, default_value_t = 3)]
    pub fault_seconds: u64,
    /// Replicas of the workload Deployment that must converge.
    #[arg(long, default_value_t = 6)]
    pub replicas: u32,
    /// Longest wait for convergence after the last fault, in seconds.
    #[arg(long, default_value_t = 180)]
    pub converge_timeout: u64,
}

const DEPLOYMENT: &str = "chaos-hello";
const SERVERS: [&str; 3] = ["server1", "server2", "server3"];
const AGENTS: [&str; 3] = ["agent1", "agent2", "agent3"];

/// Runs a docker CLI command; its trimmed stdout.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The container of a compose service of the project.
async fn container(project: &str, service: &str) -> anyhow::Result<String> {
    let id = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
    .await?;
    match id.split_whitespace().next() {
        Some(id) => Ok(id.to_string()),
        None => bail!(
            "compose project {project} has no container for {service} (is the cluster up? cluster/up.sh)"
        ),
    }
}

/// The leader's id, as the first server that answers says.
async fn leader(servers: &[String]) -> Option<u64> {
    for s in servers {
        let Ok(c) = Client::connect(std::slice::from_ref(s)) else {
            continue;
        };
        if let Ok(Ok(st)) =
            tokio::time::timeout(Duration::from_millis(500), c.cluster_status()).await
            && st.leader_id != 0
        {
            return Some(st.leader_id);
        }
    }
    None
}

#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<(String, String)>>,
    errors: AtomicU64,
}

async fn writer(client: Client, run: String, w: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("chaos-{run}-{w}-{i}");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let value = format!("{run}/{w}/{i}/{nanos}");
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"corral-chaos": run}},
            "data": {"value": value}
        });
        // The same write again until the cluster says it has it.
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), client.create(&obj)).await;
            match r {
                Ok(Ok(_)) | Ok(Err(ApiError::AlreadyExists { .. })) => {
                    tally.acked.lock().await.push((name.clone(), value.clone()));
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        i += 1;
    }
}

fn workload(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "httpd",
                        "image": "corral-busybox:local",
                        "command": ["sh", "-c", "echo $(hostname) > /index.html && exec httpd -f -p 8080 -h /"],
                        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
                    }]
                }
            }
        }
    })
}

/// Whether the cluster has converged: one agreed leader, every node Ready, every replica Ready
/// and no pod terminating. `Err` says what is not there yet.
async fn converged(servers: &[String], client: &Client, replicas: u32) -> Result<(), String> {
    let mut leaders = Vec::new();
    for s in servers {
        let c = Client::connect(std::slice::from_ref(s)).map_err(|e| e.to_string())?;
        let st = c.cluster_status().await.map_err(|e| format!("{s}: {e}"))?;
        leaders.push(st.leader_id);
    }
    if leaders.iter().any(|l| *l == 0 || *l != leaders[0]) {
        return Err(format!("servers name leaders {leaders:?}"));
    }
    for n in AGENTS {
        let node = client.get("Node", "", n).await.map_err(|e| e.to_string())?;
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("")
            .to_string();
        if ready != "True" {
            return Err(format!("node {n} Ready={ready}"));
        }
    }
    let pods = client
        .list(
            "Pod",
            Some("default"),
            &ListOptions {
                label_selector: format!("app={DEPLOYMENT}"),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let ready = pods
        .items
        .iter()
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count();
    if pods.items.len() != replicas as usize || ready != replicas as usize {
        return Err(format!(
            "{ready} Ready of {} pods, want {replicas}",
            pods.items.len()
        ));
    }
    Ok(())
}

async fn wait_converged(
    servers: &[String],
    client: &Client,
    replicas: u32,
    within: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        match converged(servers, client, replicas).await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// One fault: what was done, and how to heal it.
enum Heal {
    Start(String),
    Unpause(String),
    Connect {
        network: String,
        container: String,
        ip: String,
    },
    Nothing,
}

async fn heal(h: &Heal) -> anyhow::Result<()> {
    match h {
        Heal::Start(c) => docker(&["start", c]).await.map(|_| ()),
        Heal::Unpause(c) => docker(&["unpause", c]).await.map(|_| ()),
        Heal::Connect {
            network,
            container,
            ip,
        } => docker(&["network", "connect", "--ip", ip, network, container])
            .await
            .map(|_| ()),
        Heal::Nothing => Ok(()),
    }
}

pub async fn run(b: ChaosBench) -> anyhow::Result<()> {
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .await
        .context("no Docker engine answers")?;
    let network = format!("{}_corral", b.project);
    let mut servers_c = BTreeMap::new();
    for (i, s) in SERVERS.iter().enumerate() {
        servers_c.insert(i as u64 + 1, container(&b.project, s).await?);
    }
    let mut agents_c = Vec::new();
    for a in AGENTS {
        agents_c.push((a, container(&b.project, a).await?));
    }
    let client = Client::connect(&b.server)?;
    let run_id = format!("{:x}", std::process::id());
    println!(
        "corral bench chaos: project {}, {} writers, {} s of faults",
        b.project, b.writers, b.duration
    );

    // The workload, converged before the faults.
    match client.create(&workload(b.replicas)).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => bail!("creating the workload Deployment: {e}"),
    }
    let ready_in = wait_converged(&b.server, &client, b.replicas, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("the cluster did not converge before the faults: {e}"))?;
    println!(
        "before: converged ({} replicas Ready) in {ready_in:.1?}",
        b.replicas
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..b.writers {
        writers.push(tokio::spawn(writer(
            client.clone(),
            run_id.clone(),
            w,
            tally.clone(),
            stop.clone(),
        )));
    }

    let started = Instant::now();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut round = 0usize;
    let pause = Duration::from_secs(b.fault_seconds.max(1));
    let mut last_heal = Instant::now();
    while started.elapsed() < Duration::from_secs(b.duration) {
        if round > 0 {
            // A quiet spell between two faults.
            tokio::time::sleep(pause).await;
        }
        let kind = [
            "kill-leader",
            "pause-server",
            "disconnect-server",
            "restart-agent",
        ][round % 4];
        let target_server = (round / 4) % 3 + 1;
        let at = started.elapsed();
        let healing = match kind {
            "kill-leader" => match leader(&b.server).await {
                Some(l) => {
                    let c = servers_c[&l].clone();
                    docker(&["kill", &c]).await?;
                    println!("{at:>8.1?}  docker kill server{l} (the leader)");
                    Heal::Start(c)
                }
                None => {
                    println!("{at:>8.1?}  no leader to kill right now; skipped");
                    Heal::Nothing
                }
            },
            "pause-server" => {
                let c = servers_c[&(target_server as u64)].clone();
                docker(&["pause", &c]).await?;
                println!("{at:>8.1?}  docker pause server{target_server}");
                Heal::Unpause(c)
            }
            "disconnect-server" => {
                let c = servers_c[&(target_server as u64)].clone();
                let ip = docker(&[
                    "inspect",
                    "-f",
                    &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
                    &c,
                ])
                .await?;
                docker(&["network", "disconnect", &network, &c]).await?;
                println!("{at:>8.1?}  docker network disconnect server{target_server} ({ip})");
                Heal::Connect {
                    network: network.clone(),
                    container: c,
                    ip,
                }
            }
            _ => {
                let (name, c) = &agents_c[round / 4 % 3];
                docker(&["restart", "-t", "2", c]).await?;
                println!("{at:>8.1?}  docker restart {name}");
                *faults.entry(kind).or_default() += 1;
                Heal::Nothing
            }
        };
        if !matches!(healing, Heal::Nothing) {
            *faults.entry(kind).or_default() += 1;
        }
        tokio::time::sleep(pause).await;
        heal(&healing).await?;
        last_heal = Instant::now();
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let written_for = started.elapsed();

    let converge = wait_converged(
        &b.server,
        &client,
        b.replicas,
        Duration::from_secs(b.converge_timeout),
    )
    .await;
    let converge_time = last_heal.elapsed();

    let acked = tally.acked.lock().await.clone();
    let mut lost = Vec::new();
    for (name, value) in &acked {
        let mut got = None;
        for _ in 0..20 {
            match client.get("ConfigMap", "default", name).await {
                Ok(v) => {
                    got = Some(Ok(v));
                    break;
                }
                Err(ApiError::NotFound { .. }) => {
                    got = Some(Err("missing".to_string()));
                    break;
                }
                Err(e) => {
                    got = Some(Err(e.to_string()));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        match got {
            Some(Ok(v)) if v["data"]["value"] == value.as_str() => {}
            Some(Ok(v)) => lost.push(format!(
                "{name}: value {} instead of {value}",
                v["data"]["value"]
            )),
            Some(Err(e)) => lost.push(format!("{name}: {e}")),
            None => lost.push(format!("{name}: unreadable")),
        }
    }

    println!();
    println!(
        "| seconds | faults injected | writes acknowledged | write attempts failed | writes lost | converged after the last fault healed |"
    );
    println!("|---:|---|---:|---:|---:|---|");
    let faults_text = faults
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "| {:.0} | {faults_text} | {} | {} | {} | {} |",
        written_for.as_secs_f64(),
        acked.len(),
        tally.errors.load(Ordering::Relaxed),
        lost.len(),
        match &converge {
            Ok(_) => format!("{converge_time:.1?}"),
            Err(e) => format!("NOT within {} s: {e}", b.converge_timeout),
        }
    );
    for l in lost.iter().take(20) {
        println!("LOST {l}");
    }
    // The workload goes; the written ConfigMaps (label corral-chaos=<run>) stay for inspection.
    let _ = client
        .delete("Deployment", "default", DEPLOYMENT, &Default::default())
        .await;
    if !lost.is_empty() {
        bail!("{} acknowledged writes were lost", lost.len());
    }
    if let Err(e) = converge {
        bail!("the cluster did not converge: {e}");
    }
    Ok(())
}

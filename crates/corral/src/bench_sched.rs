//! `corral bench sched`: how fast the scheduler binds a burst of pending pods.
//!
//! Starts a 3-server Corral cluster on loopback (child processes of this binary, with their own
//! scheduler disabled), registers simulated Nodes (Ready; cpu 32, memory 128Gi, pods 110; each
//! renewing its Lease in `kube-node-lease` every 10 s, as kubelets do), creates the pending pods
//! concurrently, then runs the scheduler driver in this process against the cluster and times
//! it from its start until a watch has seen every pod bound. With `--while-creating` the
//! scheduler starts first and the pods arrive while it runs.
//!
//! Prints a table: pods, nodes, seconds, pods bound per second, and the p50/p99 of each pod's
//! time from its create call's answer to the watch showing it bound.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use corral_client::{Client, EventType, ListOptions};

use crate::bench::Procs;
use corral_scheduler::driver::{self, SchedulerOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct SchedBench {
    /// Simulated nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Pending pods to bind.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// The scheduler's batch size.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Concurrent create calls (pods, nodes, leases).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Start the scheduler first and create the pods while it runs (default: create them all,
    /// then start it).
    #[arg(long)]
    pub while_creating: bool,
    /// Give up after this many seconds of scheduling.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Where the servers keep their data (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Extra `corral server` flags, space-separated (by default the servers' own scheduler is
    /// disabled, so the one measured here is the only one).
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "--disable-leader-components scheduler"
    )]
    pub server_flags: String,
}

/// Clients that start at different servers (each still fails over to the others).
fn clients(apis: &[String], n: usize) -> anyhow::Result<Vec<Client>> {
    (0..n)
        .map(|i| {
            let mut rotated = apis.to_vec();
            rotated.rotate_left(i % apis.len().max(1));
            Ok(Client::connect(&rotated)?)
        })
        .collect()
}

fn node_name(i: usize) -> String {
    format!("sim-{i:05}")
}

fn pod_name(i: usize) -> String {
    format!("bench-{i:06}")
}

fn node_object(name: &str, now: &str) -> Value {
    let resources = json!({ "cpu": "32", "memory": "128Gi", "pods": "110" });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated by corral bench sched",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
        },
    })
}

fn lease_object(name: &str, now: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": "kube-node-lease" },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now },
    })
}

fn pod_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": "sched-bench" } },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "busybox",
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
            }],
        },
    })
}

/// Runs `make(i)` for i in 0..n with `concurrency` workers; answers when each call finished
/// (by i) and stops at the first error.
async fn create_all(
    clients: &[Client],
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> Vec<Value> + Send + Sync + 'static,
) -> anyhow::Result<Vec<Instant>> {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency.clamp(1, n.max(1)) {
        let (next, make) = (next.clone(), make.clone());
        let client = clients[w % clients.len()].clone();
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                for obj in make(i) {
                    client.create(&obj).await.with_context(|| {
                        format!(
                            "creating {} {}",
                            obj["kind"].as_str().unwrap_or_default(),
                            obj["metadata"]["name"].as_str().unwrap_or_default()
                        )
                    })?;
                }
                done.push((i, Instant::now()));
            }
            anyhow::Ok(done)
        });
    }
    let mut at = vec![Instant::now(); n];
    while let Some(r) = tasks.join_next().await {
        for (i, t) in r.context("a create worker died")?? {
            at[i] = t;
        }
    }
    Ok(at)
}

/// Renews every node's Lease once per 10 s, spread evenly, until cancelled.
fn heartbeat(client: Client, nodes: usize, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(
            Duration::from_secs(10) / u32::try_from(nodes.max(1)).unwrap_or(1),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let client = client.clone();
            let name = node_name(i % nodes.max(1));
            i += 1;
            tokio::spawn(async move {
                let patch = json!({ "spec": { "renewTime": corral_api::meta::now_rfc3339() } });
                if let Err(e) = client
                    .patch("Lease", "kube-node-lease", &name, &patch, false)
                    .await
                {
                    tracing::debug!(node = %name, error = %e, "lease renewal failed");
                }
            });
        }
    })
}

/// Notes when a pod is first seen bound, and where.
fn note_bound(bound: &mut HashMap<String, (Instant, String)>, obj: &Value) {
    if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str)
        && !node.is_empty()
    {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        bound
            .entry(name)
            .or_insert_with(|| (Instant::now(), node.to_string()));
    }
}

/// Watches the bench's pods until `n` are bound; answers when each was first seen bound, and
/// on which node. `ready` fires once the watch is in place.
async fn watch_bound(
    client: Client,
    n: usize,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<HashMap<String, (Instant, String)>> {
    let options = ListOptions {
        label_selector: "app=sched-bench".into(),
        ..ListOptions::default()
    };
    let (list, mut stream) = client
        .list_then_watch("Pod", Some("default"), &options, 5)
        .await
        .context("starting the watch on the bench's pods")?;
    let mut bound = HashMap::new();
    for p in &list.items {
        note_bound(&mut bound, p);
    }
    let _ = ready.send(());
    while bound.len() < n {
        match stream.next().await {
            Some(Ok(ev)) if ev.r#type != EventType::Bookmark => note_bound(&mut bound, &ev.object),
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "bench watch"),
            None => bail!("the watch on the bench's pods ended"),
        }
    }
    Ok(bound)
}

pub async fn run(b: SchedBench) -> anyhow::Result<()> {
    if b.nodes == 0 || b.pods == 0 {
        bail!("--nodes and --pods must be at least 1");
    }
    let tmp;
    let dir = match &b.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut procs = Procs(Vec::new());
    eprintln!("starting 3 servers in {}", dir.display());
    let apis = crate::bench::start_corral(&dir, &b.server_flags, &mut procs).await?;
    let pool = clients(&apis, 12)?;
    let client = pool[0].clone();

    eprintln!("registering {} nodes", b.nodes);
    let now = corral_api::meta::now_rfc3339();
    create_all(&pool, b.nodes, b.concurrency, move |i| {
        let name = node_name(i);
        vec![node_object(&name, &now), lease_object(&name, &now)]
    })
    .await?;
    let stop = CancellationToken::new();
    let beats = heartbeat(client.clone(), b.nodes, stop.clone());

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_bound(client.clone(), b.pods, ready_tx));
    ready_rx
        .await
        .context("the watch on the bench's pods did not start")?;

    let scheduler = CancellationToken::new();
    let options = SchedulerOptions {
        batch_size: b.batch_size,
        host: "corral-bench".into(),
        ..SchedulerOptions::default()
    };
    let start_scheduler = |at: &mut Option<Instant>| {
        *at = Some(Instant::now());
        tokio::spawn(driver::run(
            client.clone(),
            options.clone(),
            scheduler.clone(),
        ))
    };
    let mut started = None;
    let mut driver_task = None;
    if b.while_creating {
        driver_task = Some(start_scheduler(&mut started));
    }
    eprintln!("creating {} pods ({} at a time)", b.pods, b.concurrency);
    let creating = Instant::now();
    let created = create_all(&pool, b.pods, b.concurrency, |i| {
        vec![pod_object(&pod_name(i))]
    })
    .await?;
    let create_secs = creating.elapsed().as_secs_f64();
    eprintln!(
        "created {} pods in {create_secs:.2} s ({:.0}/s)",
        b.pods,
        b.pods as f64 / create_secs.max(1e-9)
    );
    if driver_task.is_none() {
        eprintln!("starting the scheduler");
        driver_task = Some(start_scheduler(&mut started));
    }
    let started = started.unwrap_or(creating);
    let measured_from = if b.while_creating { creating } else { started };

    let bound = match tokio::time::timeout(Duration::from_secs(b.timeout), watcher).await {
        Ok(r) => r.context("the watch task died")??,
        Err(_) => bail!(
            "not every pod was bound within {} s (server logs in {})",
            b.timeout,
            dir.display()
        ),
    };
    scheduler.cancel();
    stop.cancel();
    if let Some(t) = driver_task {
        let _ = t.await;
    }
    let _ = beats.await;

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("histogram bounds")?;
    let mut last = measured_from;
    let mut first: Option<Instant> = None;
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (i, created_at) in created.iter().enumerate() {
        let Some((at, node)) = bound.get(&pod_name(i)) else {
            continue;
        };
        last = last.max(*at);
        first = Some(first.map_or(*at, |f: Instant| f.min(*at)));
        *per_node.entry(node.as_str()).or_default() += 1;
        let micros = at.saturating_duration_since(*created_at).as_micros().max(1);
        let _ = latency.record(u64::try_from(micros).unwrap_or(u64::MAX));
    }
    let secs = last.saturating_duration_since(measured_from).as_secs_f64();
    // From the first pod seen bound to the last: the binding itself, without the scheduler's
    // start (its informers listing every pending pod and node).
    let binding_secs = first
        .map(|f| last.saturating_duration_since(f).as_secs_f64())
        .unwrap_or(secs);
    let (fewest, most) = (
        (0..b.nodes)
            .map(|i| per_node.get(node_name(i).as_str()).copied().unwrap_or(0))
            .min()
            .unwrap_or(0),
        per_node.values().copied().max().unwrap_or(0),
    );
    println!(
        "\nscheduler benchmark: 3 servers on loopback, scheduler in-process, batches of {}, pods {} \
         (100m cpu, 128Mi each); seconds from the {} until the watch saw every pod bound\n",
        b.batch_size,
        if b.while_creating {
            "created while the scheduler runs"
        } else {
            "created before the scheduler starts"
        },
        if b.while_creating {
            "first create"
        } else {
            "scheduler's start"
        },
    );
    println!(
        "| pods | nodes | seconds | pods/s bound | pods/s while binding | p50 create→bound | p99 create→bound | pods per node |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {}–{} |",
        b.pods,
        b.nodes,
        secs,
        b.pods as f64 / secs.max(1e-9),
        b.pods as f64 / binding_secs.max(1e-9),
        latency.value_at_quantile(0.5) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        fewest,
        most,
    );
    drop(procs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run end to end: `cargo build -p corral --bin corral`, then
    /// `cargo test -p corral --bin corral bench_sched -- --ignored --nocapture`
    /// (`CORRAL_BENCH_NODES`, `CORRAL_BENCH_PODS`, `CORRAL_BENCH_SERVER_FLAGS` to change it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "starts a 3-server cluster; run by hand"]
    async fn a_small_scheduling_run_binds_every_pod() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .try_init();
        let var = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        run(SchedBench {
            nodes: var("CORRAL_BENCH_NODES", 20),
            pods: var("CORRAL_BENCH_PODS", 500),
            batch_size: 500,
            concurrency: 100,
            while_creating: std::env::var_os("CORRAL_BENCH_WHILE_CREATING").is_some(),
            timeout: 120,
            dir: None,
            server_flags: std::env::var("CORRAL_BENCH_SERVER_FLAGS").unwrap_or_default(),
        })
        .await
        .expect("every pod is bound");
    }

    #[test]
    fn simulated_objects_pass_validation() {
        let now = "2026-01-01T00:00:00Z";
        for obj in [
            node_object("sim-00001", now),
            lease_object("sim-00001", now),
            pod_object("bench-000001"),
        ] {
            let mut obj = obj;
            corral_api::defaults::apply_defaults(&mut obj);
            corral_api::validation::validate(&obj).expect("a valid object");
        }
    }
}

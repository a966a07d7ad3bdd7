//! `corral bench pods`: pod startup latency on `corral up`, as Kubernetes' pod startup SLO
//! measures it: from the create call to the pod observed Running through a watch, images
//! already present. Starts a fresh `corral up` (one server, one agent, process runtime) in a
//! temporary directory, creates N pods with a pool of concurrent clients, and prints p50 / p99 /
//! max per step: once as a burst (every creator as fast as it can, which measures the node's
//! throughput as much as its latency), once paced at `--rate` creations per second.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use corral_client::{Client, DeleteOptions, EventType, WatchOptions};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Args, Debug)]
pub struct PodsBench {
    /// Pods per step (each step starts from an empty node).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub pods: Vec<usize>,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Give up on a step after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Pod creations per second of the paced rows (each step runs once as a burst, with every
    /// creator going as fast as it can, then once paced at this rate); 0: bursts only.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"bench": "startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    })
}

pub async fn run(b: PodsBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let max = b.pods.iter().copied().max().unwrap_or(0);
    let free_port = crate::bench::free_port;
    let (api, peer, http, agent) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let exe = crate::bench::corral_exe()?;
    let log = std::fs::File::create(dir.path().join("up.log"))?;
    let child = Command::new(exe)
        .args(["up", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--agent-listen", &format!("127.0.0.1:{agent}")])
        .args(["--dns", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--max-pods", &(max + 10).to_string()])
        .args(["--name", "bench-node"])
        .env("CORRAL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting corral up")?;
    let _up = crate::bench::Procs(vec![child]);
    let addr = format!("127.0.0.1:{api}");
    let client = Client::connect(std::slice::from_ref(&addr))?;
    wait_node_ready(&client).await?;
    println!(
        "pod startup latency (create → Running, observed by watch) on corral up, process runtime, {} concurrent creators",
        b.clients
    );
    println!(
        "{:>6} {:>16} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "pods", "created", "p50 ms", "p90 ms", "p99 ms", "max ms", "Running/s"
    );
    let mut modes = vec![None];
    if b.rate > 0.0 {
        modes.push(Some(b.rate));
    }
    for rate in modes {
        for &n in &b.pods {
            let row = step(&addr, n, b.clients, rate, Duration::from_secs(b.timeout)).await?;
            let how = match rate {
                None => "burst".to_string(),
                Some(r) => format!("{r}/s"),
            };
            println!(
                "{:>6} {:>16} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>14.1}",
                n, how, row.p50, row.p90, row.p99, row.max, row.rate
            );
            clean(&client, Duration::from_secs(b.timeout)).await?;
        }
    }
    Ok(())
}

async fn wait_node_ready(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(n) = client.get("Node", "", "bench-node").await
            && n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node of corral up did not turn Ready within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Row {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    rate: f64,
}

async fn step(
    addr: &str,
    n: usize,
    clients: usize,
    rate: Option<f64>,
    timeout: Duration,
) -> anyhow::Result<Row> {
    let watcher = Client::connect(&[addr.to_string()])?;
    let (_, rev) = {
        let list = watcher
            .list("Pod", Some("default"), &Default::default())
            .await?;
        ((), list.revision)
    };
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut stream = watcher.watch(
        "Pod",
        Some("default"),
        &WatchOptions {
            label_selector: "bench=startup".into(),
            from_revision: rev,
            ..Default::default()
        },
    );
    let start = Instant::now();
    let mut creators = Vec::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Paced: creation i is due at start + i / rate.
    let due = move |i: usize| rate.map(|r| Duration::from_secs_f64(i as f64 / r));
    let t0 = tokio::time::Instant::now();
    for _ in 0..clients.max(1) {
        let client = Client::connect(&[addr.to_string()])?;
        let created = created.clone();
        let next = next.clone();
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                if let Some(after) = due(i) {
                    tokio::time::sleep_until(t0 + after).await;
                }
                let name = format!("startup-{i}");
                created.lock().await.insert(name.clone(), Instant::now());
                client.create(&pod(&name)).await?;
            }
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut running = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while running.len() < n {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .with_context(|| format!("only {} of {n} pods Running in time", running.len()))?;
        let Some(ev) = ev else {
            bail!("the watch ended");
        };
        let ev = ev?;
        if ev.r#type == EventType::Bookmark || ev.r#type == EventType::Deleted {
            continue;
        }
        let phase = ev.object.pointer("/status/phase").and_then(Value::as_str);
        let name = ev
            .object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if phase == Some("Running") && !running.contains(&name) {
            let now = Instant::now();
            if let Some(t) = created.lock().await.get(&name) {
                hist.record(u64::try_from(now.duration_since(*t).as_micros()).unwrap_or(u64::MAX))?;
            }
            running.insert(name);
        }
    }
    for c in creators {
        c.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        p50: ms(0.5),
        p90: ms(0.9),
        p99: ms(0.99),
        max: hist.max() as f64 / 1000.0,
        rate: n as f64 / elapsed,
    })
}

/// Deletes the step's pods and waits until the node has removed them all.
async fn clean(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let list = client
        .list(
            "Pod",
            Some("default"),
            &corral_client::ListOptions {
                label_selector: "bench=startup".into(),
                ..Default::default()
            },
        )
        .await?;
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let deletes = futures::stream::iter(names.into_iter().map(|name| {
        let client = client.clone();
        async move {
            client
                .delete("Pod", "default", &name, &DeleteOptions::default())
                .await
        }
    }))
    .buffer_unordered(50)
    .collect::<Vec<_>>()
    .await;
    for d in deletes {
        match d {
            Ok(_) | Err(corral_client::ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = client
            .list(
                "Pod",
                Some("default"),
                &corral_client::ListOptions {
                    label_selector: "bench=startup".into(),
                    ..Default::default()
                },
            )
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} pods still terminating");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

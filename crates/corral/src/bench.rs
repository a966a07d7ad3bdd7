//! `corral bench store`: a 3-server Corral cluster against a 3-member etcd cluster on loopback,
//! driven by the same load (values of one size, 1/100/1000 concurrent clients on distinct keys,
//! a fixed duration per step, then linearizable reads), printing a table with Corral/etcd ratios.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use corral_client::Client;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Corral's replicated store against etcd 3.4 (Debian's etcd-server) on loopback.
    Store(StoreBench),
    /// Pod startup latency (create → Running) on `corral up`.
    Pods(crate::bench_pods::PodsBench),
    /// Scheduling throughput: pods bound per second over simulated nodes, through the
    /// replicated API.
    Sched(crate::bench_sched::SchedBench),
    /// Cluster DNS throughput with dnsperf against one server, per core used, against CoreDNS.
    Dns(crate::bench_dns::DnsBench),
    /// Faults (leader kills, pauses, network cuts, agent restarts) against the running
    /// docker-compose cluster while clients write; then every acknowledged write is checked and
    /// the time to converge measured.
    Chaos(crate::bench_chaos::ChaosBench),
}

#[derive(Args, Debug)]
pub struct StoreBench {
    /// Seconds each load step runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent clients, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub clients: Vec<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Which targets to run: corral, etcd.
    #[arg(long, value_delimiter = ',', default_value = "corral,etcd")]
    pub targets: Vec<String>,
    /// Where the servers keep their data (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub async fn run(b: BenchCommand) -> anyhow::Result<()> {
    match b {
        BenchCommand::Store(s) => store(s).await,
        BenchCommand::Pods(p) => crate::bench_pods::run(p).await,
        BenchCommand::Sched(s) => crate::bench_sched::run(s).await,
        BenchCommand::Dns(d) => crate::bench_dns::run(d).await,
        BenchCommand::Chaos(c) => crate::bench_chaos::run(c).await,
    }
}

/// Child processes killed when dropped.
pub(crate) struct Procs(pub(crate) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Debug, Clone)]
struct Row {
    target: &'static str,
    op: &'static str,
    clients: usize,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// One kind of operation against one target, for `run_load`.
trait Target: Clone + Send + Sync + 'static {
    fn write(
        &self,
        step: usize,
        worker: usize,
        seq: u64,
        value: &str,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
    fn read(
        &self,
        step: usize,
        worker: usize,
        seq: u64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

#[derive(Clone)]
struct CorralTarget {
    clients: Arc<Vec<Client>>,
}

impl Target for CorralTarget {
    async fn write(&self, step: usize, worker: usize, seq: u64, value: &str) -> Result<(), String> {
        let c = &self.clients[worker % self.clients.len()];
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("s{step}-w{worker}-{seq}"), "namespace": "default"}, "data": {"v": value}});
        c.create(&obj).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn read(&self, step: usize, worker: usize, seq: u64) -> Result<(), String> {
        let c = &self.clients[worker % self.clients.len()];
        c.get("ConfigMap", "default", &format!("s{step}-w{worker}-{seq}"))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone)]
struct EtcdTarget {
    clients: Arc<Vec<etcd_client::KvClient>>,
}

impl Target for EtcdTarget {
    async fn write(&self, step: usize, worker: usize, seq: u64, value: &str) -> Result<(), String> {
        let mut c = self.clients[worker % self.clients.len()].clone();
        c.put(format!("/bench/s{step}-w{worker}-{seq}"), value, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn read(&self, step: usize, worker: usize, seq: u64) -> Result<(), String> {
        let mut c = self.clients[worker % self.clients.len()].clone();
        c.get(format!("/bench/s{step}-w{worker}-{seq}"), None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Runs `clients` workers for `duration`; each writes (or reads back) its own keys in sequence.
async fn run_load<T: Target>(
    target: &T,
    target_name: &'static str,
    op: &'static str,
    clients: usize,
    duration: Duration,
    value: Arc<String>,
    written: &[u64],
) -> (Row, Vec<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..clients {
        let (t, stop, value) = (target.clone(), stop.clone(), value.clone());
        let limit = written.get(w).copied().unwrap_or(0);
        tasks.spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let (mut seq, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let r = if op == "write" {
                    t.write(clients, w, seq, &value).await
                } else {
                    t.read(clients, w, if limit == 0 { 0 } else { seq % limit })
                        .await
                };
                match r {
                    Ok(()) => {
                        let _ = h.record(start.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{target_name} {op} error: {e}");
                        }
                    }
                }
                seq += 1;
            }
            (w, h, seq, errors)
        });
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut errors = 0;
    let mut per_worker = vec![0; clients];
    while let Some(r) = tasks.join_next().await {
        if let Ok((w, h, seq, e)) = r {
            let _ = all.add(&h);
            errors += e;
            per_worker[w] = seq;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let row = Row {
        target: target_name,
        op,
        clients,
        ops_per_sec: all.len() as f64 / elapsed,
        p50: Duration::from_micros(all.value_at_quantile(0.5)),
        p99: Duration::from_micros(all.value_at_quantile(0.99)),
        errors,
    };
    (row, per_worker)
}

/// The `corral` binary: this one, or (when this is a test executable in `target/*/deps`) the
/// one built beside it.
pub(crate) fn corral_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the corral binary")?;
    if exe.file_stem().is_some_and(|s| s == "corral") {
        return Ok(exe);
    }
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("corral"))
        .filter(|p| p.exists())
        .with_context(|| format!("no corral binary beside {}", exe.display()))
}

/// Three `corral server` children on loopback (with `server_flags`, space-separated, added to
/// each); answers their client addresses once the built-in namespaces exist.
pub(crate) async fn start_corral(
    dir: &Path,
    server_flags: &str,
    procs: &mut Procs,
) -> anyhow::Result<Vec<String>> {
    start_corral_with(dir, 3, server_flags, |_| Vec::new(), procs).await
}

/// [`start_corral`] with `servers` servers, each also given `per_server(id)` flags.
pub(crate) async fn start_corral_with(
    dir: &Path,
    servers: u64,
    server_flags: &str,
    per_server: impl Fn(u64) -> Vec<String>,
    procs: &mut Procs,
) -> anyhow::Result<Vec<String>> {
    let exe = corral_exe()?;
    let peers: Vec<(u64, u16)> = (1..=servers)
        .map(|i| Ok((i, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let peers_flag = peers
        .iter()
        .map(|(i, p)| format!("{i}=127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut apis = Vec::new();
    for (id, peer) in &peers {
        let api = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.join(format!("corral-{id}.log")))?;
        procs.0.push(
            Command::new(&exe)
                .args(["server", "--id", &id.to_string(), "--data-dir"])
                .arg(dir.join(format!("corral-{id}")))
                .args([
                    "--listen",
                    &api,
                    "--peer-listen",
                    &format!("127.0.0.1:{peer}"),
                    "--http",
                    &http,
                ])
                .args(["--peers", &peers_flag])
                .args(server_flags.split_whitespace())
                .args(per_server(*id))
                .env("CORRAL_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting corral server")?,
        );
        apis.push(api);
    }
    let client = Client::connect(&apis)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The leader creates the built-in namespaces in order; kube-node-lease is the last.
    loop {
        match client.get("Namespace", "", "kube-node-lease").await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => bail!(
                "the Corral cluster did not come up (logs in {}): {e}",
                dir.display()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(apis)
}

async fn start_etcd(dir: &Path, procs: &mut Procs) -> anyhow::Result<Vec<String>> {
    let members: Vec<(String, u16, u16)> = (1..=3)
        .map(|i| Ok((format!("e{i}"), free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial = members
        .iter()
        .map(|(n, _, p)| format!("{n}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut endpoints = Vec::new();
    for (name, client, peer) in &members {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        procs.0.push(
            Command::new("etcd")
                .args(["--name", name, "--data-dir"])
                .arg(dir.join(name))
                .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
                .args([
                    "--listen-peer-urls",
                    &p,
                    "--initial-advertise-peer-urls",
                    &p,
                ])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--logger",
                    "zap",
                    "--log-level",
                    "error",
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting etcd (install Debian's etcd-server: scripts/setup.sh)")?,
        );
        endpoints.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = async {
            let mut c = etcd_client::Client::connect(&endpoints, None).await?;
            c.put("/bench/ready", "1", None).await
        }
        .await;
        match r {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => bail!("the etcd cluster did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(endpoints)
}

/// Connections per target: a few per server, shared by the workers (HTTP/2 multiplexes).
const CONNECTIONS: usize = 12;

async fn store(b: StoreBench) -> anyhow::Result<()> {
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
    let duration = Duration::from_secs(b.duration);
    let value = Arc::new("x".repeat(b.value_size));
    let mut rows = Vec::new();
    if b.targets.iter().any(|t| t == "corral") {
        let mut procs = Procs(Vec::new());
        let apis = start_corral(&dir, "", &mut procs).await?;
        let clients: Vec<Client> = (0..CONNECTIONS)
            .map(|i| Client::connect(&[apis[i % apis.len()].clone()]))
            .collect::<Result<_, _>>()?;
        let t = CorralTarget {
            clients: Arc::new(clients),
        };
        for &n in &b.clients {
            eprintln!("corral: {n} clients writing for {duration:?}");
            let (w, written) =
                run_load(&t, "corral", "write", n, duration, value.clone(), &[]).await;
            rows.push(w);
            eprintln!("corral: {n} clients reading for {duration:?}");
            // Keys are named by step, worker and sequence, so each worker reads back its own.
            rows.push(
                run_load(&t, "corral", "read", n, duration, value.clone(), &written)
                    .await
                    .0,
            );
        }
        drop(procs);
    }
    if b.targets.iter().any(|t| t == "etcd") {
        let mut procs = Procs(Vec::new());
        let endpoints = start_etcd(&dir, &mut procs).await?;
        let mut kvs = Vec::new();
        for i in 0..CONNECTIONS {
            kvs.push(
                etcd_client::Client::connect([endpoints[i % endpoints.len()].clone()], None)
                    .await?
                    .kv_client(),
            );
        }
        let t = EtcdTarget {
            clients: Arc::new(kvs),
        };
        for &n in &b.clients {
            eprintln!("etcd: {n} clients writing for {duration:?}");
            let (w, written) = run_load(&t, "etcd", "write", n, duration, value.clone(), &[]).await;
            rows.push(w);
            eprintln!("etcd: {n} clients reading for {duration:?}");
            rows.push(
                run_load(&t, "etcd", "read", n, duration, value.clone(), &written)
                    .await
                    .0,
            );
        }
        drop(procs);
    }
    print_table(&rows, &b);
    Ok(())
}

fn print_table(rows: &[Row], b: &StoreBench) {
    println!(
        "\nstore benchmark: 3 servers each, loopback, {}-byte values, {} s per step (writes: creates of distinct keys; reads: linearizable gets)\n",
        b.value_size, b.duration
    );
    println!(
        "| target | op | clients | ops/s | p50 | p99 | errors | ops/s vs etcd | p99 vs etcd |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let peer = rows
            .iter()
            .find(|o| o.target == "etcd" && o.op == r.op && o.clients == r.clients);
        let (ratio, p99_ratio) = match (r.target, peer) {
            ("corral", Some(e)) if e.ops_per_sec > 0.0 => (
                format!("{:.2}×", r.ops_per_sec / e.ops_per_sec),
                format!(
                    "{:.2}×",
                    r.p99.as_secs_f64() / e.p99.as_secs_f64().max(1e-9)
                ),
            ),
            _ => ("".into(), "".into()),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} |",
            r.target,
            r.op,
            r.clients,
            r.ops_per_sec,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.errors,
            ratio,
            p99_ratio
        );
    }
}

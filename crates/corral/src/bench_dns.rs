//! `corral bench dns`: cluster DNS throughput. Starts one `corral server` serving DNS, creates
//! N Services (half with a cluster IP and two named ports, half headless with an Endpoints
//! object of three ready addresses), writes a dnsperf query file of cluster names (A of both
//! kinds, SRV, PTR, names that do not exist), runs `dnsperf` (Debian's package) against the
//! server for a while with a number of clients, and prints queries per second, per core the
//! server used (its CPU time from `/proc/<pid>/stat` over the run), average latency, lost
//! queries, and the ratio against CoreDNS's published figure.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use corral_client::Client;
use futures::StreamExt;
use serde_json::{Value, json};

/// CoreDNS's published throughput for the kubernetes plugin (queries/s).
const COREDNS_QPS: f64 = 17_000.0;
/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Args, Debug)]
pub struct DnsBench {
    /// Services to create (half with a cluster IP, half headless with three endpoints).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Seconds each dnsperf run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// dnsperf clients (sockets), one run each.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub clients: Vec<usize>,
    /// dnsperf's limit of queries in flight.
    #[arg(long, default_value_t = 100)]
    pub outstanding: usize,
}

fn service(i: usize) -> Vec<Value> {
    let name = format!("svc-{i}");
    if i.is_multiple_of(2) {
        vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip(i), "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"}]}})]
    } else {
        vec![
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": "default"},
                "subsets": [{
                    "addresses": (0..3).map(|k| json!({"ip": pod_ip(i, k), "hostname": format!("{name}-{k}")})).collect::<Vec<_>>(),
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
        ]
    }
}

fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", (i / 250) % 256, i % 250 + 1)
}

fn pod_ip(i: usize, k: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + (i / 62_500) % 100,
        (i / 250) % 250,
        (i % 250) + k
    )
}

/// The query mix: for every 20 queries, 8 A of cluster-IP services, 3 A of headless services,
/// 3 SRV, 3 PTR, 3 names that do not exist (NXDOMAIN).
fn query_file(services: usize) -> String {
    let mut out = String::new();
    let pairs = (services / 2).max(1);
    for j in 0..pairs * 4 {
        let c = (j % pairs) * 2; // a cluster-IP service
        let h = c + 1; // a headless one
        let ip = cluster_ip(c);
        let rev: Vec<&str> = ip.split('.').rev().collect();
        let lines = [
            format!("svc-{c}.default.svc.cluster.local A"),
            format!("svc-{h}.default.svc.cluster.local A"),
            format!("_http._tcp.svc-{c}.default.svc.cluster.local SRV"),
            format!("{}.in-addr.arpa PTR", rev.join(".")),
            format!("missing-{j}.default.svc.cluster.local A"),
        ];
        // 8/3/3/3/3 of 20.
        for (line, times) in lines.iter().zip([8, 3, 3, 3, 3]) {
            for _ in 0..times {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / TICKS_PER_SECOND)
}

#[derive(Debug, Default)]
struct Perf {
    sent: u64,
    completed: u64,
    lost: u64,
    qps: f64,
    avg_latency: f64,
    codes: String,
}

fn parse_dnsperf(text: &str) -> Perf {
    let mut p = Perf::default();
    let first_number = |s: &str| -> f64 {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Queries sent:") {
            p.sent = first_number(v) as u64;
        } else if let Some(v) = line.strip_prefix("Queries completed:") {
            p.completed = first_number(v) as u64;
        } else if let Some(v) = line.strip_prefix("Queries lost:") {
            p.lost = first_number(v) as u64;
        } else if let Some(v) = line.strip_prefix("Queries per second:") {
            p.qps = first_number(v);
        } else if let Some(v) = line.strip_prefix("Average Latency (s):") {
            p.avg_latency = first_number(v);
        } else if let Some(v) = line.strip_prefix("Response codes:") {
            p.codes = v.trim().to_string();
        }
    }
    p
}

async fn dig_a(port: u16, name: &str) -> String {
    let out = tokio::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+tries=1"])
        .args(["+time=1", name, "A"])
        .output()
        .await;
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub async fn run(b: DnsBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = crate::bench::free_port()?;
    let mut procs = crate::bench::Procs(Vec::new());
    let apis = crate::bench::start_corral_with(
        dir.path(),
        1,
        "",
        |_| vec!["--dns".into(), format!("127.0.0.1:{port}")],
        &mut procs,
    )
    .await?;
    let pid = procs.0.first().map(|c| c.id()).context("no server")?;
    let client = Client::connect(&apis)?;
    let started = Instant::now();
    let objects: Vec<Value> = (0..b.services).flat_map(service).collect();
    let count = objects.len();
    let results: Vec<Result<Value, corral_client::ApiError>> =
        futures::stream::iter(objects.into_iter().map(|o| {
            let c = client.clone();
            async move { c.create(&o).await }
        }))
        .buffer_unordered(32)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        bail!("creating the services: {e}");
    }
    eprintln!(
        "created {count} objects ({} services) in {:.1} s",
        b.services,
        started.elapsed().as_secs_f64()
    );
    // The zone holds every service once the last one answers.
    let last = (0..b.services)
        .rev()
        .find(|i| i.is_multiple_of(2))
        .context("--services must be at least 1")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = cluster_ip(last);
    while dig_a(port, &format!("svc-{last}.default.svc.cluster.local")).await != want {
        if Instant::now() > deadline {
            bail!(
                "DNS did not answer for svc-{last} within 60 s (logs in {})",
                dir.path().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let file = dir.path().join("queries.txt");
    std::fs::write(&file, query_file(b.services))?;
    let mut rows = Vec::new();
    for &clients in &b.clients {
        eprintln!("dnsperf: {clients} clients for {} s", b.duration);
        let cpu_before = cpu_seconds(pid)?;
        let out = Command::new("dnsperf")
            .args(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"])
            .arg(&file)
            .args(["-l", &b.duration.to_string()])
            .args(["-c", &clients.to_string()])
            .args(["-q", &b.outstanding.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("running dnsperf (Debian's dnsperf: scripts/setup.sh installs it)")?;
        let cpu = cpu_seconds(pid)? - cpu_before;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "dnsperf failed: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let perf = parse_dnsperf(&text);
        eprintln!("response codes: {}", perf.codes);
        rows.push((clients, perf, cpu));
    }
    println!(
        "\ncluster DNS, one corral server, {} services ({} with a cluster IP, {} headless with 3 endpoints), dnsperf {} s per run, {} queries in flight; query mix A 55%, SRV 15%, PTR 15%, NXDOMAIN 15%\n",
        b.services,
        b.services.div_ceil(2),
        b.services / 2,
        b.duration,
        b.outstanding
    );
    println!(
        "| clients | queries/s | server CPU (cores) | queries/s per core | avg latency | lost | queries/s per core vs CoreDNS 17,000 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let run = b.duration as f64;
    for (clients, p, cpu) in rows {
        let cores = cpu / run;
        let per_core = if cpu > 0.0 {
            p.completed as f64 / cpu
        } else {
            0.0
        };
        println!(
            "| {clients} | {:.0} | {:.2} | {:.0} | {:.3} ms | {} of {} | {:.2}× |",
            p.qps,
            cores,
            per_core,
            p.avg_latency * 1e3,
            p.lost,
            p.sent,
            per_core / COREDNS_QPS
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsperf_output_is_read() {
        let text = "Statistics:\n\n  Queries sent:         1000\n  Queries completed:    998 (99.80%)\n  Queries lost:         2 (0.20%)\n\n  Response codes:       NOERROR 850 (85.17%), NXDOMAIN 148 (14.83%)\n  Average packet size:  request 45, response 98\n  Run time (s):         1.000\n  Queries per second:   998.5\n\n  Average Latency (s):  0.000345 (min 0.000012, max 0.012345)\n";
        let p = parse_dnsperf(text);
        assert_eq!((p.sent, p.completed, p.lost), (1000, 998, 2));
        assert!((p.qps - 998.5).abs() < 1e-9);
        assert!((p.avg_latency - 0.000345).abs() < 1e-12);
        assert!(p.codes.starts_with("NOERROR 850"));
    }

    #[test]
    fn the_query_mix_names_existing_services() {
        let q = query_file(4);
        let lines: Vec<&str> = q.lines().collect();
        assert_eq!(lines.len(), 2 * 4 * 20);
        assert_eq!(lines.iter().filter(|l| l.ends_with(" SRV")).count(), 24);
        assert!(lines.contains(&"svc-0.default.svc.cluster.local A"));
        assert!(lines.contains(&"svc-3.default.svc.cluster.local A"));
        assert!(lines.contains(&"1.0.96.10.in-addr.arpa PTR"));
    }
}

//! The fixture Corral's integration tests share: real `corral server` child processes on
//! 127.0.0.1 ports with RocksDB in temporary directories, that a test can kill, restart and add
//! to; and `eventually`, which polls a condition with a deadline instead of sleeping.
//!
//! The binaries are found next to the test executable's target directory, so run
//! `cargo build --workspace --bins` before `cargo test` (the README's test command does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_client::Client;

/// The directory holding the built `corral` and `corralctl` binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/debug/deps/t10_store-xxxx → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A free loopback port for a server to listen on. Ports come from below Linux's ephemeral range
/// (32768 and up), so the local end of some outgoing connection can never take one between this
/// check and the server's bind; a per-process counter (seeded by the process id, as test binaries
/// may overlap) keeps the tests of one binary from picking the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = (std::process::id() % 60) * 200;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (seed + n) % SPAN).expect("below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
}

pub struct ServerProc {
    pub id: u64,
    pub api: String,
    pub peer: String,
    pub http: String,
    pub dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

impl ServerProc {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("server log file");
        let child = Command::new(bin("corral"))
            .arg("server")
            .args(&self.args)
            .env(
                "CORRAL_LOG",
                std::env::var("CORRAL_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning corral server");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.kill();
            a.kill_containers();
        }
        for s in &mut self.servers {
            s.kill();
        }
        if std::env::var_os("CORRAL_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.tmp, tempfile::tempdir().expect("temp dir"));
            let _ = dir.keep();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct TestCluster {
    pub servers: Vec<ServerProc>,
    pub agents: Vec<AgentProc>,
    pub tmp: tempfile::TempDir,
    extra: Vec<String>,
    /// Flags for one server only (by id), after `extra`.
    per_server: std::collections::HashMap<u64, Vec<String>>,
}

/// A `corral agent` child process (process runtime) with its own data directory.
pub struct AgentProc {
    pub name: String,
    pub dir: PathBuf,
    pub endpoint: String,
    child: Option<Child>,
    args: Vec<String>,
}

impl AgentProc {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("agent log file");
        let child = Command::new(bin("corral"))
            .arg("agent")
            .args(&self.args)
            .env(
                "CORRAL_LOG",
                std::env::var("CORRAL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning corral agent");
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL the agent alone: its containers (each under its own shim) keep running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Kills every container process and shim this agent's runtime recorded (test clean-up).
    pub fn kill_containers(&self) {
        for (shim, pid) in self.container_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("kill")
                .args(["-KILL", &shim.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// (shim pid, container pid) of every run recorded under this agent's data directory.
    pub fn container_pids(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let Ok(pods) = std::fs::read_dir(self.dir.join("pods")) else {
            return out;
        };
        for pod in pods.flatten() {
            let Ok(runs) = std::fs::read_dir(pod.path().join("containers")) else {
                continue;
            };
            for run in runs.flatten() {
                let Ok(text) = std::fs::read_to_string(run.path().join("pid.json")) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if let (Some(shim), Some(pid)) = (v["shim_pid"].as_i64(), v["pid"].as_i64()) {
                    out.push((shim, pid));
                }
            }
        }
        out
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestCluster {
    /// Starts `n` servers that bootstrap together, with extra `corral server` flags.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        Self::start_with(n, extra, |_| Vec::new())
    }

    /// Like [`TestCluster::start`], with flags of each server's own after `extra` (a DNS port,
    /// say): `per_server(id)`.
    pub fn start_with(n: usize, extra: &[&str], per_server: impl Fn(u64) -> Vec<String>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        if std::env::var_os("CORRAL_TEST_KEEP").is_some() {
            eprintln!("keeping test data in {}", tmp.path().display());
        }
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let peers: Vec<(u64, String)> = (1..=n as u64)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let peers_flag = peers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = TestCluster {
            servers: Vec::new(),
            agents: Vec::new(),
            tmp,
            extra,
            per_server: (1..=n as u64).map(|id| (id, per_server(id))).collect(),
        };
        for (id, peer) in &peers {
            c.launch(*id, peer.clone(), &peers_flag, false);
        }
        c
    }

    fn launch(&mut self, id: u64, peer: String, peers_flag: &str, join: bool) -> usize {
        let api = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let dir = self.tmp.path().join(format!("server-{id}"));
        let mut args = vec![
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            api.clone(),
            "--peer-listen".into(),
            peer.clone(),
            "--http".into(),
            http.clone(),
            "--peers".into(),
            peers_flag.to_string(),
        ];
        if join {
            args.push("--join".into());
            args.push("--advertise-peer".into());
            args.push(peer.clone());
        }
        args.extend(self.extra.iter().cloned());
        args.extend(self.per_server.get(&id).into_iter().flatten().cloned());
        let mut s = ServerProc {
            id,
            api,
            peer,
            http,
            dir,
            child: None,
            args,
        };
        s.spawn();
        self.servers.push(s);
        self.servers.len() - 1
    }

    /// Starts a new empty server that waits to be added (index into `servers`).
    pub fn launch_joiner(&mut self, id: u64) -> usize {
        let peer = format!("127.0.0.1:{}", free_port());
        self.launch(id, peer, "", true)
    }

    pub fn api_addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| s.is_running())
            .map(|s| s.api.clone())
            .collect()
    }

    /// A client over every running server.
    pub fn client(&self) -> Client {
        Client::connect(&self.api_addrs()).expect("client")
    }

    pub fn client_of(&self, i: usize) -> Client {
        Client::connect(&[self.servers[i].api.clone()]).expect("client")
    }

    /// Index of the server every running server agrees leads.
    pub async fn leader(&self, within: Duration) -> usize {
        eventually("a leader all running servers agree on", within, || async {
            let mut leader = None;
            for s in self.servers.iter().filter(|s| s.is_running()) {
                let st = self
                    .client_of_addr(&s.api)
                    .cluster_status()
                    .await
                    .map_err(|e| format!("{}: {e}", s.api))?;
                if st.leader_id == 0 {
                    return Err(format!("server {} knows no leader", s.id));
                }
                match leader {
                    None => leader = Some(st.leader_id),
                    Some(l) if l != st.leader_id => {
                        return Err(format!("servers disagree: {l} vs {}", st.leader_id));
                    }
                    _ => {}
                }
            }
            let l = leader.ok_or("no server is running")?;
            self.servers
                .iter()
                .position(|s| s.id == l && s.is_running())
                .ok_or(format!("leader {l} is not running"))
        })
        .await
    }

    fn client_of_addr(&self, addr: &str) -> Client {
        Client::connect(&[addr.to_string()]).expect("client")
    }

    pub fn logs(&self) -> String {
        let servers: String = self
            .servers
            .iter()
            .map(|s| format!("--- server {} ---\n{}", s.id, s.log()))
            .collect();
        let agents: String = self
            .agents
            .iter()
            .map(|a| format!("--- agent {} ---\n{}", a.name, a.log()))
            .collect();
        servers + &agents
    }

    /// Starts an agent named `name` against every server (heartbeat every second, restart
    /// back-off 1 s doubling to 4 s, unless `extra` says otherwise); index into `agents`.
    pub fn add_agent(&mut self, name: &str, extra: &[&str]) -> usize {
        let dir = self.tmp.path().join(format!("agent-{name}"));
        let endpoint = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "--server".into(),
            self.servers
                .iter()
                .map(|s| s.api.clone())
                .collect::<Vec<_>>()
                .join(","),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            endpoint.clone(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--heartbeat-seconds".into(),
            "1".into(),
            "--backoff-initial-seconds".into(),
            "1".into(),
            "--backoff-max-seconds".into(),
            "4".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut a = AgentProc {
            name: name.into(),
            dir,
            endpoint,
            child: None,
            args,
        };
        a.spawn();
        self.agents.push(a);
        self.agents.len() - 1
    }

    /// Waits until every agent's Node is registered and Ready.
    pub async fn nodes_ready(&self, within: Duration) {
        let client = self.client();
        let names: Vec<String> = self.agents.iter().map(|a| a.name.clone()).collect();
        eventually("every agent's node Ready", within, || {
            let client = client.clone();
            let names = names.clone();
            async move {
                for n in &names {
                    let node = client.get("Node", "", n).await.map_err(|e| e.to_string())?;
                    let ready = condition(&node, "Ready");
                    if ready != "True" {
                        return Err(format!("node {n} Ready={ready}"));
                    }
                }
                Ok(())
            }
        })
        .await
    }
}

/// Polls `check` until it answers Ok or `within` passes; then panics with the last answer.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(5);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {within:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// A field selector leaving out the objects the cluster makes by itself in every namespace (the
/// `kube-root-ca.crt` ConfigMap, as Kubernetes has): for tests that count their own objects.
pub const NOT_CLUSTER_MADE: &str = "metadata.name!=kube-root-ca.crt";

/// List options selecting only the objects a test made (see [`NOT_CLUSTER_MADE`]).
pub fn test_objects() -> corral_client::ListOptions {
    corral_client::ListOptions {
        field_selector: NOT_CLUSTER_MADE.into(),
        ..Default::default()
    }
}

/// The status of condition `kind` of an object ("" when absent).
pub fn condition(obj: &serde_json::Value, kind: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Parses one YAML manifest (a test's pod or config) into JSON.
pub fn yaml(text: &str) -> serde_json::Value {
    corral_api::object::parse_manifests(text)
        .expect("a valid manifest")
        .into_iter()
        .next()
        .expect("one object")
}

/// A ConfigMap manifest with one data entry.
pub fn config_map(ns: &str, name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"value": value}
    })
}

/// A plain HTTP/1.0 GET: the status code and the whole response.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let code = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {body:?}"))?;
    Ok((code, body))
}

/// Reads a server's `/metrics` and returns the value of the sample whose line starts with `name`.
pub async fn metric(http: &str, name: &str) -> Result<f64, String> {
    let (_, body) = http_get(http, "/metrics").await?;
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no sample {name} at {http}"))
}

/// `corralctl ARGS` against every running server of the cluster, as a user runs it; it must
/// succeed; answers its stdout.
pub async fn corralctl(c: &TestCluster, args: &[&str]) -> String {
    corralctl_at(&c.api_addrs(), args).await
}

/// `corralctl --server SERVERS ARGS`; it must succeed; answers its stdout.
pub async fn corralctl_at(servers: &[String], args: &[&str]) -> String {
    let out = tokio::process::Command::new(bin("corralctl"))
        .arg("--server")
        .arg(servers.join(","))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running corralctl");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "corralctl {} failed:\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" ")
    );
    stdout
}

/// The string at `pointer` in `v` ("" when absent or not a string).
pub fn text<'a>(v: &'a serde_json::Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// Whether a pod is Running with its Ready condition True.
pub fn pod_ready(pod: &serde_json::Value) -> bool {
    text(pod, "/status/phase") == "Running" && condition(pod, "Ready") == "True"
}

/// One change a [`WatchLog`] recorded: its revision, what happened and the object after it.
pub type Recorded = (u64, corral_client::EventType, serde_json::Value);

/// Every change of one kind in one namespace from the moment it starts, each with its revision,
/// recorded by a watch that resumes by itself across server failures: for tests that check the
/// order things happened in, not samples of it.
pub struct WatchLog(std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>);

impl WatchLog {
    pub async fn start(client: &Client, kind: &str, namespace: &str) -> WatchLog {
        use futures::StreamExt;
        let from = client
            .list(
                kind,
                Some(namespace),
                &corral_client::ListOptions::default(),
            )
            .await
            .expect("list before watching")
            .revision;
        let options = corral_client::WatchOptions {
            from_revision: from,
            ..Default::default()
        };
        let mut stream = client.watch(kind, Some(namespace), &options);
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&events);
        tokio::spawn(async move {
            while let Some(Ok(e)) = stream.next().await {
                if e.r#type != corral_client::EventType::Bookmark {
                    sink.lock()
                        .expect("the log")
                        .push((e.revision, e.r#type, e.object));
                }
            }
        });
        WatchLog(events)
    }

    /// What was recorded so far, in order.
    pub fn events(&self) -> Vec<Recorded> {
        self.0.lock().expect("the log").clone()
    }

    /// Waits (up to `within`) for the first change `pick` finds; answers its revision.
    pub async fn first(
        &self,
        what: &str,
        within: Duration,
        pick: impl Fn(corral_client::EventType, &serde_json::Value) -> bool,
    ) -> u64 {
        eventually(what, within, || async {
            let events = self.events();
            events
                .iter()
                .filter(|(_, t, o)| pick(*t, o))
                .map(|(r, _, _)| *r)
                .min()
                .ok_or_else(|| format!("{} events so far", events.len()))
        })
        .await
    }
}

/// `dig +short NAME A` against the DNS server on 127.0.0.1:`port` (dig from Debian's dnsutils):
/// the addresses, sorted; an error when dig got no answer.
pub async fn dig_a(port: u16, name: &str) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=2"])
        .args(["+short", name, "A"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("dig (dnsutils: scripts/setup.sh installs it): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout.contains(";;") {
        return Err(format!("dig {name} failed: {stdout}"));
    }
    let mut ips: Vec<String> = stdout.split_whitespace().map(str::to_string).collect();
    ips.sort();
    Ok(ips)
}

/// Waits (up to `within`) for pod `name` of `default` to be Ready and not terminating, with a
/// uid other than `not_uid` ("" for any): a replacement when `not_uid` names the pod it replaces.
pub async fn ready_pod(
    client: &Client,
    name: &str,
    not_uid: &str,
    within: Duration,
) -> serde_json::Value {
    eventually(
        &format!("{name} Ready (not {not_uid:?})"),
        within,
        || async {
            let pod = client
                .get("Pod", "default", name)
                .await
                .map_err(|e| e.to_string())?;
            if text(&pod, "/metadata/uid") != not_uid
                && pod_ready(&pod)
                && pod.pointer("/metadata/deletionTimestamp").is_none()
            {
                Ok(pod)
            } else {
                Err(format!(
                    "uid {} status {}",
                    pod["metadata"]["uid"], pod["status"]
                ))
            }
        },
    )
    .await
}

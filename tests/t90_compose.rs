//! The docker-compose cluster end to end: 3 servers and 3 agents (docker runtime) in containers
//! built from local files (cluster/up.sh), reached through their published ports.
//!
//! One cluster, in order: a Deployment of 6 busybox httpd replicas spreads over the 3 agents and
//! serves on its pods' compose-network IPs; the reference StatefulSet `web` (examples/web.yaml
//! with the cluster's busybox image) comes up and, from inside another pod
//! (examples/lookup.yaml), `nslookup web-0.nginx.default.svc.cluster.local` answers web-0's pod
//! IP and `wget -qO- http://web-1.nginx` returns web-1's page; killing the leader's container leaves a cluster that
//! elects a new leader within a second, has lost no acknowledged write and keeps scaling the
//! Deployment; the killed server, started again from its volume, catches up; stopping one agent's
//! container (and its pods' containers) gets its pods replaced on the other agents within the
//! configured grace; restarting an agent's container duplicates nothing; `cluster/down.sh` leaves
//! no container behind. Skips with a loud line where no Docker engine answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_client::{Client, GetOptions, ListOptions};
use corral_tests::{
    bin, condition, config_map, corralctl_at, dig_a, eventually, free_port, ready_pod, yaml,
};
use serde_json::{Value, json};

/// Deadline for anything that waits on containers starting (image start, bootstrap, election).
const T: Duration = Duration::from_secs(90);
const SERVERS: [u64; 3] = [1, 2, 3];
const AGENTS: [&str; 3] = ["agent1", "agent2", "agent3"];
/// Node grace (docker-compose.yml: CORRAL_NODE_GRACE_SECONDS) and the pods' toleration of a
/// lost node (CORRAL_POD_EVICTION_SECONDS, set here) in seconds.
const NODE_GRACE: u64 = 8;
const EVICTION: u64 = 10;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// Ids of the containers (all states) `docker ps` finds with these filters.
fn containers(filters: &[String]) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "-aq"]);
    for f in filters {
        cmd.arg("--filter").arg(f);
    }
    let mut ids: Vec<String> = run(&mut cmd)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// The first two octets of a /16 no Docker network uses yet (the compose network's).
fn free_net() -> String {
    let ids = docker(&["network", "ls", "-q"]);
    let mut used = String::new();
    for id in ids.split_whitespace() {
        used.push_str(&docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            id,
        ]));
        used.push(' ');
    }
    (20..32)
        .rev()
        .map(|n| format!("172.{n}"))
        .find(|net| !used.contains(&format!("{net}.")))
        .expect("a free 172.x.0.0/16 for the compose network")
}

/// One compose project (unique to this test process) on free host ports and its own network.
/// Dropping it runs cluster/down.sh, whatever happened; after a failure it prints the logs.
struct Compose {
    project: String,
    net: String,
    agent_data: tempfile::TempDir,
    /// Per server id: (client gRPC, HTTP, DNS) published host ports.
    ports: Vec<(u64, u16, u16, u16)>,
    down: bool,
}

impl Compose {
    fn new() -> Self {
        let project = format!("corral-e2e-{}", std::process::id());
        let ports = SERVERS
            .iter()
            .map(|id| (*id, free_port(), free_port(), free_port()))
            .collect();
        Compose {
            project,
            net: free_net(),
            agent_data: tempfile::tempdir().expect("temp dir"),
            ports,
            down: false,
        }
    }

    fn env(&self, cmd: &mut Command) {
        let data = std::fs::canonicalize(self.agent_data.path()).expect("a real path");
        cmd.current_dir(repo_root())
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("CORRAL_NET", &self.net)
            .env("CORRAL_AGENT_DATA", data)
            .env("CORRAL_POD_EVICTION_SECONDS", EVICTION.to_string());
        for (id, api, http, dns) in &self.ports {
            cmd.env(format!("CORRAL_SERVER{id}_API_PORT"), api.to_string());
            cmd.env(format!("CORRAL_SERVER{id}_HTTP_PORT"), http.to_string());
            cmd.env(format!("CORRAL_SERVER{id}_DNS_PORT"), dns.to_string());
        }
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        self.env(&mut cmd);
        cmd.arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(repo_root().join("docker-compose.yml"))
            .args(args);
        cmd
    }

    /// Builds the images (from the binary this workspace built) and starts the cluster.
    fn up(&self) -> String {
        let mut cmd = Command::new(repo_root().join("cluster/up.sh"));
        self.env(&mut cmd);
        cmd.env("CORRAL_BIN", bin("corral"));
        run(&mut cmd)
    }

    /// cluster/down.sh: everything of the project, its pods' containers included.
    fn down(&mut self) -> String {
        self.down = true;
        let mut cmd = Command::new(repo_root().join("cluster/down.sh"));
        self.env(&mut cmd);
        run(&mut cmd)
    }

    fn api(&self, id: u64) -> String {
        let (_, api, _, _) = self
            .ports
            .iter()
            .find(|(i, ..)| *i == id)
            .expect("a server of the cluster");
        format!("127.0.0.1:{api}")
    }

    /// The host port server `id`'s DNS is published on.
    fn dns_port(&self, id: u64) -> u16 {
        self.ports
            .iter()
            .find(|(i, ..)| *i == id)
            .map(|(_, _, _, dns)| *dns)
            .expect("a server of the cluster")
    }

    fn all_apis(&self) -> Vec<String> {
        SERVERS.iter().map(|id| self.api(*id)).collect()
    }

    fn container(&self, service: &str) -> String {
        let c = run(&mut self.compose(&["ps", "-q", service]));
        assert!(!c.is_empty(), "compose knows no container for {service}");
        c
    }

    fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "60"])
            .output()
            .map(|o| text(&o))
            .unwrap_or_default()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- logs of compose project {} ---\n{}",
                self.project,
                self.logs()
            );
        }
        if self.down {
            return;
        }
        let mut cmd = Command::new(repo_root().join("cluster/down.sh"));
        self.env(&mut cmd);
        match cmd.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("cluster/down.sh of {} failed:\n{}", self.project, text(&o)),
            Err(e) => eprintln!("cluster/down.sh of {}: {e}", self.project),
        }
    }
}

/// The leader every server in `ids` names, once each also lists `members` members.
async fn agreed_leader(c: &Compose, ids: &[u64], members: usize, within: Duration) -> u64 {
    eventually("a leader the servers agree on", within, || async {
        let mut leader = None;
        for id in ids {
            let st = Client::connect(&[c.api(*id)])
                .map_err(|e| e.to_string())?
                .cluster_status()
                .await
                .map_err(|e| format!("server{id}: {e}"))?;
            if st.leader_id == 0 {
                return Err(format!("server{id} knows no leader (term {})", st.term));
            }
            if st.members.len() != members {
                return Err(format!(
                    "server{id} lists {} members, not {members}",
                    st.members.len()
                ));
            }
            match leader {
                None => leader = Some(st.leader_id),
                Some(l) if l != st.leader_id => {
                    return Err(format!("servers disagree: {l} vs {}", st.leader_id));
                }
                _ => {}
            }
        }
        leader.ok_or_else(|| "no server asked".to_string())
    })
    .await
}

/// Creates a ConfigMap; a create retried after its answer was lost reports AlreadyExists, which
/// means the first attempt was committed.
async fn write(client: &Client, name: &str) -> Result<(), String> {
    match client.create(&config_map("default", name, name)).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

const HELLO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 6
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: corral-busybox:local
        command: ["sh", "-c", "echo hello from $(hostname) > /index.html && exec httpd -f -p 8080 -h /"]
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
"#;

/// Every pod of the Deployment, terminating ones included.
async fn hello_pods(client: &Client) -> Result<Vec<Value>, String> {
    let options = ListOptions {
        label_selector: "app=hello".into(),
        ..Default::default()
    };
    client
        .list("Pod", Some("default"), &options)
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// The Deployment's pods that are Ready and not terminating, by node.
async fn ready_by_node(client: &Client) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in hello_pods(client).await? {
        if p.pointer("/metadata/deletionTimestamp").is_some() || condition(&p, "Ready") != "True" {
            continue;
        }
        let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        out.entry(node).or_default().push(p);
    }
    Ok(out)
}

/// Waits for exactly `n` Ready pods of the Deployment on `nodes` only (none elsewhere).
async fn wait_ready(
    client: &Client,
    n: usize,
    nodes: &[&str],
    what: &str,
    within: Duration,
) -> BTreeMap<String, Vec<Value>> {
    eventually(what, within, || async {
        let by_node = ready_by_node(client).await?;
        let total: usize = by_node.values().map(Vec::len).sum();
        let counts: BTreeMap<&String, usize> = by_node.iter().map(|(k, v)| (k, v.len())).collect();
        if total != n {
            return Err(format!("{total} Ready pods, not {n}: {counts:?}"));
        }
        if let Some(other) = by_node.keys().find(|k| !nodes.contains(&k.as_str())) {
            return Err(format!("a pod on {other}: {counts:?}"));
        }
        Ok(by_node)
    })
    .await
}

fn counts(by_node: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, usize> {
    by_node.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

async fn scale(client: &Client, replicas: u64) {
    eventually(&format!("scaling hello to {replicas}"), T, || async {
        client
            .patch(
                "Deployment",
                "default",
                "hello",
                &json!({"spec": {"replicas": replicas}}),
                false,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// The uids of the pods the engine has containers of for `node` (app containers, any state).
fn app_containers_of(node: &str) -> Vec<String> {
    containers(&[
        format!("label=io.corral.node={node}"),
        "label=io.corral.type=container".into(),
        "status=running".into(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_runs_workloads_survives_losing_its_leader_and_an_agent_and_tears_down_clean()
 {
    if !docker_answers() {
        println!(
            "\n**********\nSKIPPED: no Docker engine answers (`docker info` failed); t90_compose did not run\n**********\n"
        );
        return;
    }
    let mut c = Compose::new();
    println!("{}", c.up());
    let up_at = Instant::now();
    let leader = agreed_leader(&c, &SERVERS, 3, T).await;
    println!(
        "project {} on {}.0.0/16: the servers agree on leader server{leader} {:?} after `up -d` returned",
        c.project,
        c.net,
        up_at.elapsed()
    );
    let client = Client::connect(&c.all_apis()).expect("client");
    eventually("the 3 agents' nodes Ready", T, || async {
        for n in AGENTS {
            let node = client.get("Node", "", n).await.map_err(|e| e.to_string())?;
            if condition(&node, "Ready") != "True" {
                return Err(format!("{n} is not Ready"));
            }
        }
        Ok(())
    })
    .await;

    // ---- A Deployment of 6 replicas spreads over the 3 agents -------------------------------
    client
        .create(&yaml(HELLO))
        .await
        .expect("create the Deployment");
    let by_node = wait_ready(&client, 6, &AGENTS, "6 Ready replicas of hello", T).await;
    println!("hello's 6 replicas by node: {:?}", counts(&by_node));
    assert_eq!(by_node.len(), 3, "the replicas spread over all 3 agents");
    let some_pod = &by_node["agent1"][0];
    let ip = some_pod["status"]["podIP"].as_str().expect("a pod IP");
    assert!(
        ip.starts_with(&format!("{}.", c.net)),
        "pod IPs come from the compose network: {ip}"
    );
    let (code, body) = corral_tests::http_get(&format!("{ip}:8080"), "/index.html")
        .await
        .expect("a pod serves on its compose-network IP");
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!(
            "hello from {}",
            some_pod["metadata"]["name"].as_str().unwrap_or("?")
        )),
        "{body}"
    );

    // ---- StatefulSet `web` with headless Service `nginx`, DNS from inside a pod ---------------
    // The reference `web` as shipped, with the compose cluster's workload image.
    let web = std::fs::read_to_string(repo_root().join("examples/web.yaml"))
        .expect("examples/web.yaml")
        .replace("image: busybox\n", "image: corral-busybox:local\n");
    assert!(
        web.contains("corral-busybox:local"),
        "web.yaml names its image"
    );
    let web_file = c.agent_data.path().join("web.yaml");
    std::fs::write(&web_file, web).expect("writing the manifest");
    corralctl_at(
        &c.all_apis(),
        &["apply", "-f", &web_file.display().to_string()],
    )
    .await;
    let web0 = ready_pod(&client, "web-0", "", T).await;
    let web1 = ready_pod(&client, "web-1", "", T).await;
    let (ip0, ip1) = (
        web0["status"]["podIP"].as_str().unwrap_or("").to_string(),
        web1["status"]["podIP"].as_str().unwrap_or("").to_string(),
    );
    println!(
        "web-0 at {ip0} on {}, web-1 at {ip1} on {}",
        web0["spec"]["nodeName"], web1["spec"]["nodeName"]
    );
    // The servers' DNS, published on the host, knows the names before a pod asks.
    for id in SERVERS {
        let port = c.dns_port(id);
        eventually(
            &format!("server{id}'s DNS answers web-0 and web-1"),
            T,
            || async {
                let a = dig_a(port, "web-0.nginx.default.svc.cluster.local").await?;
                let b = dig_a(port, "web-1.nginx.default.svc.cluster.local").await?;
                if a == [ip0.clone()] && b == [ip1.clone()] {
                    Ok(())
                } else {
                    Err(format!("{a:?} {b:?}"))
                }
            },
        )
        .await;
    }
    // From inside another pod: its resolv.conf names the servers and the search path.
    let lookup_file = repo_root().join("examples/lookup.yaml");
    corralctl_at(
        &c.all_apis(),
        &["apply", "-f", &lookup_file.display().to_string()],
    )
    .await;
    let lookup = eventually("the lookup pod to finish", T, || async {
        let p = client
            .get("Pod", "default", "lookup")
            .await
            .map_err(|e| e.to_string())?;
        match p["status"]["phase"].as_str() {
            Some("Succeeded") | Some("Failed") => Ok(p),
            other => Err(format!("phase {other:?}")),
        }
    })
    .await;
    let out = corralctl_at(&c.all_apis(), &["logs", "lookup"]).await;
    println!("the lookup pod printed:\n{out}");
    assert_eq!(lookup["status"]["phase"], "Succeeded", "{out}");
    let (nslookup, page) = out.split_once("---\n").expect("both parts ran");
    assert!(
        nslookup.contains("web-0.nginx.default.svc.cluster.local")
            && nslookup.contains(&format!("Address: {ip0}")),
        "nslookup answers web-0's pod IP {ip0}:\n{nslookup}"
    );
    assert_eq!(
        page, "web-1\n",
        "wget http://web-1.nginx returns web-1's page"
    );
    // The rest of the run is about the Deployment: the StatefulSet goes (its claims stay).
    for (kind, name) in [("Pod", "lookup"), ("StatefulSet", "web")] {
        client
            .delete(kind, "default", name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
    }

    // ---- Writes, then the leader's container killed ------------------------------------------
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        client
            .create(&config_map("default", &name, &name))
            .await
            .expect("a write before the kill");
        acked.push(name);
    }
    // Leadership may have moved since the start: kill whoever leads now.
    let leader = agreed_leader(&c, &SERVERS, 3, T).await;
    let killed = c.container(&format!("server{leader}"));
    // Counted from before the kill command: the engine answers `docker kill` only once the
    // container has stopped, and the election runs meanwhile.
    let killed_at = Instant::now();
    docker(&["kill", &killed]);
    let kill_took = killed_at.elapsed();
    let survivors: Vec<u64> = SERVERS.iter().copied().filter(|id| *id != leader).collect();
    let survivor_client =
        Client::connect(&survivors.iter().map(|id| c.api(*id)).collect::<Vec<_>>())
            .expect("client");
    let new_leader = eventually("a new leader among the survivors", T, || async {
        for id in &survivors {
            let st = Client::connect(&[c.api(*id)])
                .map_err(|e| e.to_string())?
                .cluster_status()
                .await
                .map_err(|e| format!("server{id}: {e}"))?;
            if st.leader_id != 0 && st.leader_id != leader {
                return Ok(st.leader_id);
            }
        }
        Err("no survivor names a new leader yet".to_string())
    })
    .await;
    let elected = killed_at.elapsed();
    eventually(
        "a write through the survivors after the leader's container was killed",
        T,
        || write(&survivor_client, "after-kill"),
    )
    .await;
    let first_write = killed_at.elapsed();
    acked.push("after-kill".to_string());
    println!(
        "killed server{leader}'s container (`docker kill` took {kill_took:?}); server{new_leader} leads {elected:?} after the kill began; first write acknowledged after {first_write:?}"
    );
    assert!(
        elected < Duration::from_secs(1),
        "a new leader within 1 second of the kill, not {elected:?}"
    );
    assert_eq!(agreed_leader(&c, &survivors, 3, T).await, new_leader);
    for name in &acked {
        let got = survivor_client.get("ConfigMap", "default", name).await;
        let got = got.unwrap_or_else(|e| {
            panic!("acknowledged write {name} is not readable after the kill: {e}")
        });
        assert_eq!(got["data"]["value"], name.as_str(), "{name} kept its data");
    }

    // The new leader's controllers and scheduler keep scaling the Deployment.
    scale(&survivor_client, 9).await;
    let by_node = wait_ready(
        &survivor_client,
        9,
        &AGENTS,
        "9 Ready replicas after scaling under the new leader",
        T,
    )
    .await;
    println!(
        "scaled to 9 under server{new_leader}: {:?}",
        counts(&by_node)
    );

    for i in 0..10 {
        let name = format!("while-down-{i}");
        write(&survivor_client, &name)
            .await
            .expect("a write while the old leader is down");
        acked.push(name);
    }

    // ---- The killed server comes back and catches up ------------------------------------------
    docker(&["start", &killed]);
    let restarted_at = Instant::now();
    let back = Client::connect(&[c.api(leader)]).expect("client");
    let last = acked.last().expect("writes were made").clone();
    eventually(
        "the restarted server to serve the last write from its own state",
        T,
        || async {
            back.get_with(
                "ConfigMap",
                "default",
                &last,
                &GetOptions { stale_ok: true },
            )
            .await
            .map_err(|e| e.to_string())
        },
    )
    .await;
    println!(
        "server{leader} started again and served {last} (stale read) after {:?}",
        restarted_at.elapsed()
    );
    for name in &acked {
        let got = back
            .get_with("ConfigMap", "default", name, &GetOptions { stale_ok: true })
            .await;
        got.unwrap_or_else(|e| panic!("the restarted server lacks {name}: {e}"));
    }
    agreed_leader(&c, &SERVERS, 3, T).await;

    // ---- An agent's container and its pods stop: its pods are replaced elsewhere -------------
    let lost = "agent3";
    let lost_pods: BTreeSet<String> = by_node
        .get(lost)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(!lost_pods.is_empty(), "{lost} ran some of hello's pods");
    let lost_container = c.container(lost);
    docker(&["stop", "-t", "2", &lost_container]);
    let stopped_at = Instant::now();
    let pods_of_lost = containers(&[format!("label=io.corral.node={lost}")]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(pods_of_lost.iter().map(String::as_str));
    docker(&rm);
    let survivors_nodes = ["agent1", "agent2"];
    // The configured grace: the node turns Unknown after NODE_GRACE, its pods are evicted
    // after EVICTION more; the slack covers the controllers' periods and the new pods' start.
    let grace = Duration::from_secs(NODE_GRACE + EVICTION + 45);
    let by_node = wait_ready(
        &client,
        9,
        &survivors_nodes,
        &format!("{lost}'s pods replaced on the other agents"),
        grace,
    )
    .await;
    println!(
        "stopped {lost} (and its {} pods' containers): all 9 replicas Ready on the other agents after {:?} (node grace {NODE_GRACE} s + toleration {EVICTION} s): {:?}",
        lost_pods.len(),
        stopped_at.elapsed(),
        counts(&by_node)
    );

    // ---- Restarting agents duplicates nothing -----------------------------------------------
    let kept = "agent1";
    let before = app_containers_of(kept);
    let kept_container = c.container(kept);
    docker(&["restart", "-t", "2", &kept_container]);
    docker(&["start", &lost_container]);
    eventually("the restarted agents to heartbeat again", T, || async {
        for n in [kept, lost] {
            let node = client.get("Node", "", n).await.map_err(|e| e.to_string())?;
            if condition(&node, "Ready") != "True" {
                return Err(format!("{n} is not Ready"));
            }
        }
        Ok(())
    })
    .await;
    // The lost agent finishes what was evicted from it; nothing of hello runs twice.
    let by_node = eventually(
        "the Deployment settled at 9 after the restarts",
        T,
        || async {
            let by_node = ready_by_node(&client).await?;
            let total: usize = by_node.values().map(Vec::len).sum();
            let all = hello_pods(&client).await?;
            if total == 9 && all.len() == 9 {
                Ok(by_node)
            } else {
                Err(format!(
                    "{total} Ready of {} pods: {:?}",
                    all.len(),
                    counts(&by_node)
                ))
            }
        },
    )
    .await;
    let after = app_containers_of(kept);
    assert_eq!(
        before, after,
        "{kept}'s restart adopted its running containers and started none again"
    );
    for pods in by_node.values() {
        for p in pods {
            let uid = p["metadata"]["uid"].as_str().expect("uid");
            let running = containers(&[
                format!("label=io.corral.pod-uid={uid}"),
                "label=io.corral.type=container".into(),
                "status=running".into(),
            ]);
            assert_eq!(running.len(), 1, "pod {uid} runs exactly one container");
        }
    }
    println!("after restarting {kept} and {lost}: {:?}", counts(&by_node));

    // ---- Teardown leaves nothing --------------------------------------------------------------
    let project_label = format!("label=com.docker.compose.project={}", c.project);
    let net = format!("{}_corral", c.project);
    println!("{}", c.down());
    assert_eq!(containers(&[project_label]), Vec::<String>::new());
    let left: Vec<String> = AGENTS
        .iter()
        .flat_map(|n| {
            containers(&[
                format!("label=io.corral.node={n}"),
                format!("network={net}"),
            ])
        })
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no pod container is left");
    for pods in by_node.values() {
        for p in pods {
            let uid = p["metadata"]["uid"].as_str().expect("uid");
            assert_eq!(
                containers(&[format!("label=io.corral.pod-uid={uid}")]),
                Vec::<String>::new(),
                "nothing of pod {uid} is left"
            );
        }
    }
}

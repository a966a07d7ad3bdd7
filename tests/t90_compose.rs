//! The docker-compose cluster end to end: 3 servers in containers built from local files
//! (cluster/build.sh), reached through their published ports. Killing the leader's container
//! leaves a cluster that keeps accepting writes and has lost none, and the killed server, started
//! again from its volume, catches up. Skips with a loud line where no Docker engine answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_client::{Client, GetOptions};
use corral_tests::{bin, config_map, eventually, free_port};

/// Deadline for anything that waits on containers starting (image start, bootstrap, election).
const T: Duration = Duration::from_secs(90);
const SERVERS: [u64; 3] = [1, 2, 3];

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

/// One compose project (unique to this test process) on free host ports. Dropping it takes the
/// project down with its volumes, whatever happened; after a failure it prints the servers' logs.
struct Compose {
    project: String,
    /// Per server id: (client gRPC, HTTP) published host ports.
    ports: Vec<(u64, u16, u16)>,
}

impl Compose {
    fn new() -> Self {
        let project = format!("corral-e2e-{}", std::process::id());
        let ports = SERVERS
            .iter()
            .map(|id| (*id, free_port(), free_port()))
            .collect();
        Compose { project, ports }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.current_dir(repo_root())
            .env("COMPOSE_PROJECT_NAME", &self.project);
        for (id, api, http) in &self.ports {
            cmd.env(format!("CORRAL_SERVER{id}_API_PORT"), api.to_string());
            cmd.env(format!("CORRAL_SERVER{id}_HTTP_PORT"), http.to_string());
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

    /// Builds the images (from the binary this workspace built) and starts the servers.
    fn up(&self) -> String {
        let mut cmd = Command::new(repo_root().join("cluster/up.sh"));
        self.env(&mut cmd);
        cmd.env("CORRAL_BIN", bin("corral"));
        run(&mut cmd)
    }

    fn api(&self, id: u64) -> String {
        let (_, api, _) = self
            .ports
            .iter()
            .find(|(i, _, _)| *i == id)
            .expect("a server of the cluster");
        format!("127.0.0.1:{api}")
    }

    fn container(&self, id: u64) -> String {
        let c = run(&mut self.compose(&["ps", "-q", &format!("server{id}")]));
        assert!(!c.is_empty(), "compose knows no container for server{id}");
        c
    }

    fn logs(&self) -> String {
        self.compose(&["logs", "--no-color", "--tail", "80"])
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
        match self
            .compose(&["down", "-v", "--remove-orphans", "-t", "2"])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "docker-compose down of {} failed:\n{}",
                self.project,
                text(&o)
            ),
            Err(e) => eprintln!("docker-compose down of {}: {e}", self.project),
        }
    }
}

/// The leader every server in `ids` names, once each also lists `members` members.
async fn agreed_leader(c: &Compose, ids: &[u64], members: usize) -> u64 {
    eventually("a leader the servers agree on", T, || async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leaders_container_keeps_the_compose_cluster_accepting_writes_and_it_catches_up()
 {
    if !docker_answers() {
        println!(
            "\n**********\nSKIPPED: no Docker engine answers (`docker info` failed); t90_compose did not run\n**********\n"
        );
        return;
    }
    let c = Compose::new();
    println!("{}", c.up());
    let up_at = Instant::now();
    let leader = agreed_leader(&c, &SERVERS, 3).await;
    println!(
        "project {}: the servers agree on leader server{leader} {:?} after `up -d` returned",
        c.project,
        up_at.elapsed()
    );

    let all: Vec<String> = SERVERS.iter().map(|id| c.api(*id)).collect();
    let client = Client::connect(&all).expect("client");
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        client
            .create(&config_map("default", &name, &name))
            .await
            .expect("a write before the kill");
        acked.push(name);
    }

    let container = c.container(leader);
    run(Command::new("docker").args(["kill", &container]));
    let killed_at = Instant::now();
    let survivors: Vec<u64> = SERVERS.iter().copied().filter(|id| *id != leader).collect();
    let survivor_client =
        Client::connect(&survivors.iter().map(|id| c.api(*id)).collect::<Vec<_>>())
            .expect("client");
    eventually(
        "a write through the survivors after the leader's container was killed",
        T,
        || write(&survivor_client, "after-kill"),
    )
    .await;
    let took = killed_at.elapsed();
    acked.push("after-kill".to_string());
    let new_leader = agreed_leader(&c, &survivors, 3).await;
    println!(
        "killed server{leader}'s container; new leader server{new_leader}; first write acknowledged after {took:?}"
    );
    assert_ne!(new_leader, leader, "the killed server cannot still lead");

    for name in &acked {
        let got = survivor_client.get("ConfigMap", "default", name).await;
        let got = got.unwrap_or_else(|e| {
            panic!("acknowledged write {name} is not readable after the kill: {e}")
        });
        assert_eq!(got["data"]["value"], name.as_str(), "{name} kept its data");
    }
    for i in 0..10 {
        let name = format!("while-down-{i}");
        write(&survivor_client, &name)
            .await
            .expect("a write while the old leader is down");
        acked.push(name);
    }

    run(Command::new("docker").args(["start", &container]));
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
    let leader_after = agreed_leader(&c, &SERVERS, 3).await;
    println!("all 3 servers agree again: leader server{leader_after}");
}

//! The docker runtime against the machine's real Docker Engine, with the workload and infra
//! images built from local files (`cluster/build.sh busybox pause`): the infra container and
//! the pod IP, Kubernetes' command/args over ENTRYPOINT/CMD, env and working dir, the cluster
//! DNS resolv.conf inside a container, exit codes and OOMKilled, exec, logs from the engine,
//! shared network namespace and bind-mounted volumes, adoption by a second runtime (nothing
//! started twice), a missing image failing at once, teardown by labels. Then a whole agent
//! (`corral agent --runtime docker`) running a pod with probes, `corralctl logs`, ErrImagePull,
//! and an agent restart that duplicates nothing; and an init container filling an emptyDir before
//! the app container, whose failing runs are restarted with the kubelet's back-off. Skips with a loud line where no Docker engine
//! answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use corral_agent::runtime::docker::{
    DockerOptions, DockerRuntime, LABEL_NODE, LABEL_POD_UID, LABEL_TYPE,
};
use corral_agent::runtime::{
    ContainerInfo, ContainerSpec, ContainerState, DnsConfig, Limits, LogQuery, Mount, Runtime,
    RuntimeError, SandboxSpec,
};
use corral_client::LogsOptions;
use corral_tests::{TestCluster, bin, condition, eventually};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(60);
const BUSYBOX: &str = "corral-busybox:local";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

/// Whether a Docker engine answers; prints the loud skip line when not.
fn engine_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!(
            "\n**********\nSKIPPED: no Docker engine answers (`docker info` failed); t36_docker_runtime::{test} did not run\n**********\n"
        );
    }
    ok
}

/// Builds the busybox and pause images once per test process.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(repo_root().join("cluster/build.sh"))
            .args(["busybox", "pause"])
            .output()
            .expect("running cluster/build.sh");
        assert!(
            out.status.success(),
            "cluster/build.sh busybox pause failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A node name of its own per test, and every container of it removed at the end.
struct Node {
    name: String,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(test: &str) -> Node {
        let name = format!("t36-{test}-{}", std::process::id());
        Node {
            name,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).expect("a real path")
    }

    async fn runtime(&self) -> DockerRuntime {
        DockerRuntime::connect(DockerOptions::new(self.name.clone(), self.root()))
            .await
            .expect("the docker runtime connects")
    }

    /// Containers of this node (all states), by label.
    fn containers(&self, extra_label: Option<&str>) -> Vec<String> {
        let mut cmd = Command::new("docker");
        cmd.args(["ps", "-aq", "--filter"])
            .arg(format!("label={LABEL_NODE}={}", self.name));
        if let Some(l) = extra_label {
            cmd.arg("--filter").arg(format!("label={l}"));
        }
        let out = cmd.output().expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let ids = self.containers(None);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

fn sandbox(uid: &str, name: &str) -> SandboxSpec {
    SandboxSpec {
        pod_uid: uid.into(),
        pod_namespace: "default".into(),
        pod_name: name.into(),
        hostname: name.into(),
        domain: String::new(),
        host_network: false,
        dns: Some(DnsConfig {
            nameservers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        }),
    }
}

fn container(uid: &str, pod: &str, name: &str, command: &[&str], args: &[&str]) -> ContainerSpec {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ContainerSpec {
        pod_uid: uid.into(),
        pod_namespace: "default".into(),
        pod_name: pod.into(),
        name: name.into(),
        restart_count: 0,
        image: BUSYBOX.into(),
        argv: command.iter().chain(args.iter()).cloned().collect(),
        command,
        args,
        image_pull_policy: "IfNotPresent".into(),
        env: vec![],
        working_dir: None,
        mounts: vec![],
        limits: Limits::default(),
        hosts_file: None,
    }
}

fn uid(tag: &str) -> String {
    format!("{tag}-{}-0000-4000-8000-000000000000", std::process::id())
}

/// Waits for the run to exit; answers (exit code, reason).
async fn exited(rt: &DockerRuntime, id: &str) -> (i32, String) {
    eventually(&format!("{id} to exit"), WAIT, || async {
        match rt.inspect(id).await.map_err(|e| e.to_string())? {
            Some(ContainerInfo {
                state:
                    ContainerState::Exited {
                        exit_code, reason, ..
                    },
                ..
            }) => Ok((exit_code, reason)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The whole log of a container run, from the engine.
async fn log_of(rt: &DockerRuntime, uid: &str, container: &str, previous: bool) -> String {
    let q = LogQuery {
        pod_uid: uid.into(),
        pod: "p".into(),
        container: container.into(),
        previous,
        follow: false,
        tail_lines: None,
    };
    let mut stream = rt
        .logs(&q)
        .await
        .expect("the docker runtime serves logs itself")
        .expect("a log");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk.expect("log bytes"));
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_follow_kubernetes_command_semantics_and_see_the_cluster_dns() {
    if !engine_or_skip("containers_follow_kubernetes_command_semantics_and_see_the_cluster_dns") {
        return;
    }
    images();
    let node = Node::new("cmd");
    let rt = node.runtime().await;
    let u = uid("a1");
    let ip = rt
        .ensure_sandbox(&sandbox(&u, "cmd"))
        .await
        .expect("the infra container starts")
        .expect("a pod IP on the default bridge");
    assert!(!ip.is_loopback(), "{ip}");

    // command replaces the image's CMD (and ENTRYPOINT); env, working dir; exit code 3.
    let mut a = container(
        &u,
        "cmd",
        "a",
        &["sh", "-c"],
        &["echo A=$A; pwd; hostname; cat /etc/resolv.conf; exit 3"],
    );
    a.env = vec![("A".into(), "hello world".into())];
    a.working_dir = Some("/tmp".into());
    let info = rt.start(&a).await.expect("start a");
    assert!(info.id.starts_with("docker://"), "{}", info.id);
    assert_eq!(exited(&rt, &info.id).await, (3, "Error".to_string()));
    let log = log_of(&rt, &u, "a", false).await;
    assert!(log.contains("A=hello world\n/tmp\ncmd\n"), "{log}");
    assert!(
        log.contains(
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        ),
        "resolv.conf as Kubernetes writes it: {log}"
    );

    // Only args: the image's CMD (/bin/sh) is replaced by them.
    let b = container(&u, "cmd", "b", &[], &["echo", "from", "args"]);
    let info = rt.start(&b).await.expect("start b");
    assert_eq!(exited(&rt, &info.id).await, (0, "Completed".to_string()));
    assert_eq!(log_of(&rt, &u, "b", false).await, "from args\n");

    // Neither: the image's CMD runs (/bin/sh with no stdin exits at once, 0).
    let c = container(&u, "cmd", "c", &[], &[]);
    let info = rt.start(&c).await.expect("start c");
    assert_eq!(exited(&rt, &info.id).await, (0, "Completed".to_string()));

    // A command the image does not have: a start error, and no container is left of it.
    let bad = container(&u, "cmd", "bad", &["/no/such/binary"], &[]);
    match rt.start(&bad).await {
        Err(RuntimeError::Start(m)) => assert!(m.contains("no/such/binary"), "{m}"),
        other => panic!("expected a start error, got {other:?}"),
    }
    assert!(
        rt.list_pod(&u)
            .await
            .expect("list")
            .iter()
            .all(|r| r.name != "bad")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_one_ip_and_its_volumes_and_serve_on_the_pod_ip() {
    if !engine_or_skip("a_pods_containers_share_one_ip_and_its_volumes_and_serve_on_the_pod_ip") {
        return;
    }
    images();
    let node = Node::new("net");
    let rt = node.runtime().await;
    let u = uid("b2");
    let ip = rt
        .ensure_sandbox(&sandbox(&u, "web"))
        .await
        .expect("sandbox")
        .expect("pod ip");
    let www = node
        .root()
        .join("pods")
        .join(&u)
        .join("volumes")
        .join("www");
    std::fs::create_dir_all(&www).expect("volume dir");
    std::fs::write(www.join("index.html"), "served from a bind mount\n").expect("index");
    let mut web = container(
        &u,
        "web",
        "web",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
        &[],
    );
    web.mounts = vec![Mount {
        host_path: www.clone(),
        container_path: "/www".into(),
        read_only: true,
    }];
    let web = rt.start(&web).await.expect("start web");
    assert!(web.is_running());

    // The sidecar reaches the web server on localhost: one network namespace.
    let mut side = container(
        &u,
        "web",
        "side",
        &["sh", "-c"],
        &["until wget -qO- http://127.0.0.1:8080/; do sleep 0.2; done; touch /www/x 2>&1 || true"],
    );
    side.mounts = web_mounts(&www);
    let s = rt.start(&side).await.expect("start side");
    exited(&rt, &s.id).await;
    let log = log_of(&rt, &u, "side", false).await;
    assert!(log.contains("served from a bind mount"), "{log}");
    assert!(
        log.contains("Read-only file system"),
        "read-only mount: {log}"
    );

    // And so does anyone on the node at the pod's IP.
    let body = eventually("the pod IP to serve", WAIT, || async {
        corral_tests::http_get(&format!("{ip}:8080"), "/").await
    })
    .await;
    assert_eq!(body.0, 200, "{body:?}");
    assert!(body.1.contains("served from a bind mount"), "{body:?}");

    // exec runs inside the container: its exit code and output; a slow one times out.
    let out = rt
        .exec(
            &web.id,
            &["sh".into(), "-c".into(), "echo in $(pwd); exit 4".into()],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 4);
    assert_eq!(out.output, "in /\n");
    let slow = rt
        .exec(
            &web.id,
            &["sleep".into(), "30".into()],
            Duration::from_millis(300),
        )
        .await
        .expect("exec");
    assert_eq!(slow.exit_code, -1);
    assert!(slow.output.contains("timed out"), "{}", slow.output);

    // A graceful stop: `sleep` as PID 1 ignores SIGTERM, so it is killed after the grace.
    let sleeper = rt
        .start(&container(&u, "web", "sleeper", &["sleep", "3600"], &[]))
        .await
        .expect("start sleeper");
    rt.stop(&sleeper.id, Duration::from_secs(1))
        .await
        .expect("stop");
    let (code, _) = exited(&rt, &sleeper.id).await;
    assert_eq!(code, 137, "SIGKILL after the grace period");

    // Teardown by labels: nothing of the pod is left, infra container included.
    assert!(
        !node
            .containers(Some(&format!("{LABEL_POD_UID}={u}")))
            .is_empty()
    );
    rt.remove_pod(&u).await.expect("remove pod");
    assert_eq!(
        node.containers(Some(&format!("{LABEL_POD_UID}={u}"))),
        Vec::<String>::new()
    );
}

fn web_mounts(www: &Path) -> Vec<Mount> {
    vec![Mount {
        host_path: www.to_path_buf(),
        container_path: "/www".into(),
        read_only: true,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_is_enforced_and_an_oom_kill_reported() {
    if !engine_or_skip("a_memory_limit_is_enforced_and_an_oom_kill_reported") {
        return;
    }
    images();
    let node = Node::new("oom");
    let rt = node.runtime().await;
    let u = uid("c3");
    rt.ensure_sandbox(&sandbox(&u, "oom"))
        .await
        .expect("sandbox");
    // `tail` of an endless line keeps all of it in memory.
    let mut hog = container(&u, "oom", "hog", &["tail", "/dev/zero"], &[]);
    hog.limits = Limits {
        memory_bytes: Some(24 * 1024 * 1024),
        cpu_millis: Some(500),
    };
    let info = rt.start(&hog).await.expect("start");
    let d = info.id.trim_start_matches("docker://").to_string();
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
            &d,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "25165824 50000 100000"
    );
    assert_eq!(exited(&rt, &info.id).await, (137, "OOMKilled".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runtime_adopts_what_runs_and_never_starts_a_run_twice() {
    if !engine_or_skip("a_second_runtime_adopts_what_runs_and_never_starts_a_run_twice") {
        return;
    }
    images();
    let node = Node::new("adopt");
    let first = node.runtime().await;
    let u = uid("d4");
    let ip = first
        .ensure_sandbox(&sandbox(&u, "adopt"))
        .await
        .expect("sandbox");
    let spec = container(&u, "adopt", "app", &["sleep", "3600"], &[]);
    let started = first.start(&spec).await.expect("start");
    drop(first);

    // A new runtime (an agent restart) finds the same run and the same sandbox.
    let second = node.runtime().await;
    let listed = second.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, started.id);
    assert!(listed[0].is_running());
    assert_eq!(
        second
            .ensure_sandbox(&sandbox(&u, "adopt"))
            .await
            .expect("sandbox"),
        ip
    );
    let again = second.start(&spec).await.expect("start again");
    assert_eq!(again.id, started.id, "the same run, not a second copy");
    assert_eq!(
        node.containers(Some(&format!("{LABEL_TYPE}=container")))
            .len(),
        1
    );
    assert_eq!(
        node.containers(Some(&format!("{LABEL_TYPE}=sandbox")))
            .len(),
        1
    );
    assert_eq!(second.pod_uids().await.expect("uids"), vec![u.clone()]);

    // The next run, and the previous one's log.
    let mut next = container(&u, "adopt", "app", &["sh", "-c", "echo second run"], &[]);
    next.restart_count = 1;
    second
        .stop(&started.id, Duration::ZERO)
        .await
        .expect("kill");
    let n = second.start(&next).await.expect("restart");
    exited(&second, &n.id).await;
    assert_eq!(log_of(&second, &u, "app", false).await, "second run\n");
    assert_eq!(log_of(&second, &u, "app", true).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_the_start_at_once_with_a_clear_message() {
    if !engine_or_skip("a_missing_image_fails_the_start_at_once_with_a_clear_message") {
        return;
    }
    images();
    let node = Node::new("noimg");
    let rt = node.runtime().await;
    let u = uid("e5");
    rt.ensure_sandbox(&sandbox(&u, "noimg"))
        .await
        .expect("sandbox");
    let mut spec = container(&u, "noimg", "app", &["true"], &[]);
    spec.image = "corral-no-such-image:1.0".into();
    match rt.start(&spec).await {
        Err(RuntimeError::Image(m)) => assert!(
            m.contains(
                "\"corral-no-such-image:1.0\" is not present locally and no registry is reachable"
            ),
            "{m}"
        ),
        other => panic!("expected an image error, got {other:?}"),
    }
    spec.image_pull_policy = "Never".into();
    match rt.start(&spec).await {
        Err(RuntimeError::Image(m)) => assert_eq!(
            m,
            "Container image \"corral-no-such-image:1.0\" is not present with pull policy of Never"
        ),
        other => panic!("expected an image error, got {other:?}"),
    }
}

// ---- a whole agent ---------------------------------------------------------------------------

fn corralctl(c: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("corralctl"))
        .arg("--server")
        .arg(c.api_addrs().join(","))
        .args(args)
        .output()
        .expect("running corralctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: httpd
    image: corral-busybox:local
    command: ["sh", "-c"]
    args:
    - mkdir -p /www && echo "hello from $(hostname) at $POD_IP" > /www/index.html &&
      echo started && exec httpd -f -v -p 8080 -h /www
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    ports:
    - {name: http, containerPort: 8080}
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["sh", "-c", "test -f /www/index.html"]}
      periodSeconds: 1
    resources:
      limits: {memory: 64Mi, cpu: 200m}
---
apiVersion: v1
kind: Pod
metadata:
  name: missing
spec:
  containers:
  - name: app
    image: registry.example/not-here:2.1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_docker_runs_a_pod_with_probes_logs_and_adopts_it_after_a_restart() {
    if !engine_or_skip(
        "an_agent_on_docker_runs_a_pod_with_probes_logs_and_adopts_it_after_a_restart",
    ) {
        return;
    }
    images();
    let mut c = TestCluster::start(1, &[]);
    let node = Node::new("agent");
    let a = c.add_agent(
        &node.name,
        &["--runtime", "docker", "--cluster-dns", "10.96.0.10"],
    );
    c.nodes_ready(WAIT).await;
    let client = c.client();
    for doc in corral_api::object::parse_manifests(WEB).expect("manifests") {
        client.create(&doc).await.expect("create pod");
    }

    // Running and Ready (readiness httpGet against the pod's IP), with the pod's own IP.
    let pod = eventually("pod web Ready", WAIT, || async {
        let p = client
            .get("Pod", "default", "web")
            .await
            .map_err(|e| e.to_string())?;
        if condition(&p, "Ready") == "True" {
            Ok(p)
        } else {
            Err(format!("{}", p["status"]))
        }
    })
    .await;
    let pod_ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    assert_ne!(pod_ip, "127.0.0.1", "the pod has its own address");
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    let cid = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("containerID")
        .to_string();
    assert!(cid.starts_with("docker://"), "{cid}");
    let (code, body) = corral_tests::http_get(&format!("{pod_ip}:8080"), "/")
        .await
        .expect("the pod serves on its IP");
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!("hello from web at {pod_ip}")),
        "hostname and the downward-API pod IP: {body}"
    );

    // The missing image: ErrImagePull at once, with a message saying why.
    let waiting = eventually("pod missing to say why it waits", WAIT, || async {
        let p = client
            .get("Pod", "default", "missing")
            .await
            .map_err(|e| e.to_string())?;
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        if w["reason"] == "ErrImagePull" {
            Ok(w.clone())
        } else {
            Err(format!("{}", p["status"]))
        }
    })
    .await;
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "\"registry.example/not-here:2.1\" is not present locally and no registry is reachable"
        ),
        "{waiting}"
    );

    // Logs come from the engine, through the API server and corralctl.
    let (ok, out, err) = corralctl(&c, &["logs", "web"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("started\n"), "{out}");
    let mut stream = client
        .logs(
            "default",
            "web",
            &LogsOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("logs");
    let mut tail = Vec::new();
    while let Some(chunk) = stream.next().await {
        tail.extend(chunk.expect("bytes"));
    }
    assert_eq!(
        String::from_utf8_lossy(&tail).lines().count(),
        1,
        "--tail 1"
    );

    // An agent restart adopts the running containers: the same container, nothing new.
    let before = node.containers(None);
    c.agents[a].restart();
    c.nodes_ready(WAIT).await;
    let again = eventually(
        "the restarted agent to report the pod Ready again",
        WAIT,
        || async {
            let p = client
                .get("Pod", "default", "web")
                .await
                .map_err(|e| e.to_string())?;
            let log = c.agents[a].log();
            if log.matches("node registered").count() < 2 {
                return Err("the agent has not registered again yet".into());
            }
            if condition(&p, "Ready") == "True" {
                Ok(p)
            } else {
                Err(format!("{}", p["status"]))
            }
        },
    )
    .await;
    assert_eq!(again["status"]["containerStatuses"][0]["containerID"], cid);
    assert_eq!(again["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(again["status"]["podIP"], pod_ip.as_str());
    let mut after = node.containers(None);
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "no container was started twice");

    // Deleting the pods removes their containers, infra containers included.
    delete_and_wait_gone(&client, &node, &["web", "missing"]).await;
    drop(c);
}

/// Deletes the pods and waits until the engine has no container of the node left.
async fn delete_and_wait_gone(client: &corral_client::Client, node: &Node, pods: &[&str]) {
    for p in pods {
        client
            .delete("Pod", "default", p, &Default::default())
            .await
            .expect("delete");
    }
    eventually("every container of the node to be gone", WAIT, || async {
        let left = node.containers(None);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

/// An init container prepares an emptyDir in the pod's network namespace; the app container
/// fails its first two runs and, with restartPolicy OnFailure, is started again each time: at
/// once after the first failure and after the back-off after the second, as the kubelet does.
const TWICE: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: twice
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: prepare
    image: corral-busybox:local
    command: ["sh", "-c", "echo prepared on $(hostname) > /work/init"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: corral-busybox:local
    command:
    - sh
    - -c
    - |
      cat /work/init
      echo run >> /work/runs
      n=$(wc -l < /work/runs)
      if [ "$n" -lt 3 ]; then echo "run $n fails"; exit 3; fi
      echo "run $n stays"; exec sleep 600
    volumeMounts: [{name: work, mountPath: /work}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_docker_runs_init_containers_first_and_restarts_a_failing_container_with_back_off()
 {
    if !engine_or_skip(
        "an_agent_on_docker_runs_init_containers_first_and_restarts_a_failing_container_with_back_off",
    ) {
        return;
    }
    images();
    let mut c = TestCluster::start(1, &[]);
    let node = Node::new("restarts");
    c.add_agent(&node.name, &["--runtime", "docker"]);
    c.nodes_ready(WAIT).await;
    let client = c.client();
    client
        .create(&corral_tests::yaml(TWICE))
        .await
        .expect("create pod");

    let pod = eventually(
        "pod twice Running again after two failed runs",
        WAIT,
        || async {
            let p = client
                .get("Pod", "default", "twice")
                .await
                .map_err(|e| e.to_string())?;
            let app = &p["status"]["containerStatuses"][0];
            if app["restartCount"] == 2 && app["state"]["running"].is_object() {
                Ok(p)
            } else {
                Err(format!("{}", p["status"]))
            }
        },
    )
    .await;
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    let app = &pod["status"]["containerStatuses"][0];
    let last = &app["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{app}");
    assert_eq!(last["reason"], "Error", "{app}");
    // The back-off (the fixture's agent starts it at 1 s) lies between the second failed run's
    // end and the third run's start; the timestamps have whole seconds.
    let seconds = |v: &serde_json::Value| {
        let t = v.as_str().unwrap_or_default();
        t.parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .unwrap_or_else(|e| panic!("{t:?}: {e}"))
    };
    assert!(
        seconds(&app["state"]["running"]["startedAt"]) > seconds(&last["finishedAt"]),
        "restarted only after the back-off: {app}"
    );

    // The init container ran in the pod (its host name) and filled the shared volume; the logs
    // of both runs come from the engine.
    let (ok, now, err) = corralctl(&c, &["logs", "twice"]);
    assert!(ok, "{err}");
    assert_eq!(now, "prepared on twice\nrun 3 stays\n");
    let (ok, before, err) = corralctl(&c, &["logs", "twice", "--previous"]);
    assert!(ok, "{err}");
    assert_eq!(before, "prepared on twice\nrun 2 fails\n");
    let (ok, init_log, err) = corralctl(&c, &["logs", "twice", "-c", "prepare"]);
    assert!(ok, "{err}");
    assert_eq!(init_log, "");

    delete_and_wait_gone(&client, &node, &["twice"]).await;
    drop(c);
}

//! Pods run: end to end on a real cluster (servers plus agents as child processes, the process
//! runtime, real processes), checked the way a user would see them through the API.

use std::time::Duration;

use corral_client::{Client, DeleteOptions};
use corral_tests::{TestCluster, condition, eventually, free_port, yaml};
use serde_json::{Value, json};

const SERVER_FLAGS: [&str; 4] = ["--node-grace-seconds", "3", "--node-monitor-seconds", "1"];
const LONG: Duration = Duration::from_secs(30);

async fn cluster(servers: usize, agents: &[(&str, &[&str])]) -> TestCluster {
    let mut c = TestCluster::start(servers, &SERVER_FLAGS);
    c.leader(LONG).await;
    for (name, extra) in agents {
        c.add_agent(name, extra);
    }
    c.nodes_ready(LONG).await;
    c
}

async fn pod(client: &Client, name: &str) -> Result<Value, String> {
    client
        .get("Pod", "default", name)
        .await
        .map_err(|e| e.to_string())
}

fn phase(p: &Value) -> String {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn container_status(p: &Value, name: &str) -> Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| p.pointer(&format!("/status/{k}")).and_then(Value::as_array))
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits for the pod to reach `want` and returns it.
async fn wait_phase(client: &Client, name: &str, want: &str) -> Value {
    eventually(&format!("pod {name} {want}"), LONG, || async {
        let p = pod(client, name).await?;
        if phase(&p) == want {
            Ok(p)
        } else {
            Err(format!("phase {:?}, status {}", phase(&p), p["status"]))
        }
    })
    .await
}

fn corralctl(c: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(corral_tests::bin("corralctl"))
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

#[tokio::test(flavor = "multi_thread")]
async fn javaweb_init_container_fills_an_emptydir_that_the_app_serves() {
    let c = cluster(1, &[("n1", &[]), ("n2", &[])]).await;
    let client = c.client();
    let port = free_port();
    // The javaweb-2 pattern: the init container copies the application into the shared
    // emptyDir and exits; only then the web container starts and serves it.
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: javaweb-2
spec:
  initContainers:
  - image: busybox
    name: war
    command: ["sh", "-c", "sleep 1; echo sample-war-v2 > /app/sample.war"]
    volumeMounts:
    - mountPath: /app
      name: app-volume
  containers:
  - image: busybox
    name: tomcat
    command: ["sh", "-c", "test -f /root/apache-tomcat/webapps/sample.war && exec busybox httpd -f -p 127.0.0.1:{port} -h /root/apache-tomcat/webapps"]
    volumeMounts:
    - mountPath: /root/apache-tomcat/webapps
      name: app-volume
    ports:
    - containerPort: {port}
  volumes:
  - name: app-volume
    emptyDir: {{}}
"#
    );
    client.create(&yaml(&manifest)).await.expect("create");
    let p = wait_phase(&client, "javaweb-2", "Running").await;
    let init = container_status(&p, "war");
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    assert_eq!(condition(&p, "Initialized"), "True");
    let body = eventually("the app serves the archive", LONG, || async {
        let (code, body) =
            corral_tests::http_get(&format!("127.0.0.1:{port}"), "/sample.war").await?;
        if code == 200 {
            Ok(body)
        } else {
            Err(format!("HTTP {code}"))
        }
    })
    .await;
    assert!(body.contains("sample-war-v2"), "{body}");
    let ready = eventually("Ready", LONG, || async {
        let p = pod(&client, "javaweb-2").await?;
        if condition(&p, "Ready") == "True" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
    .await;
    let started = container_status(&ready, "tomcat")["state"]["running"]["startedAt"].clone();
    let finished = init["state"]["terminated"]["finishedAt"].clone();
    assert!(
        started.as_str() >= finished.as_str(),
        "the app started {started} before the init container finished {finished}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_sidecar_reads_what_the_app_writes_and_logs_stream_through_any_server() {
    let c = cluster(3, &[("n1", &[])]).await;
    let client = c.client();
    client
        .create(&yaml(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  containers:
  - name: count
    image: busybox
    command: ["sh", "-c", "i=0; while true; do echo \"$i: line\" >> /var/log/1.log; i=$((i+1)); sleep 0.2; done"]
    volumeMounts:
    - name: varlog
      mountPath: /var/log
  - name: count-log-1
    image: busybox
    command: ["sh", "-c", "tail -n+1 -F /var/log/1.log"]
    volumeMounts:
    - name: varlog
      mountPath: /var/log
  volumes:
  - name: varlog
    emptyDir: {}
"#,
        ))
        .await
        .expect("create");
    wait_phase(&client, "counter", "Running").await;
    // Through each server in turn: the API proxies from the agent of the pod's node.
    for s in &c.servers {
        let addr = s.api.clone();
        eventually("the sidecar's log through the API", LONG, || async {
            let out = std::process::Command::new(corral_tests::bin("corralctl"))
                .args(["--server", &addr, "logs", "counter", "-c", "count-log-1"])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("0: line") && text.contains("3: line") {
                Ok(())
            } else {
                Err(format!(
                    "stdout {text:?} stderr {:?}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .await;
    }
    let (ok, _, err) = corralctl(&c, &["logs", "counter"]);
    assert!(!ok);
    assert!(err.contains("a container name must be specified"), "{err}");
    // The log lives on the node, beside the volume it was written to.
    let log = c.agents[0].dir.join("pods");
    assert!(log.exists(), "{}", log.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policies_restart_counts_and_back_off() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    let mk = |name: &str, policy: &str, script: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"restartPolicy": policy, "containers": [
                   {"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}})
    };
    for p in [
        mk("never-fails", "Never", "echo failing; exit 3"),
        mk("never-succeeds", "Never", "exit 0"),
        mk("onfailure", "OnFailure", "echo run; exit 1"),
        mk("always", "Always", "exit 0"),
    ] {
        client.create(&p).await.expect("create");
    }
    let failed = wait_phase(&client, "never-fails", "Failed").await;
    let st = container_status(&failed, "c");
    assert_eq!(st["state"]["terminated"]["exitCode"], 3, "{st}");
    assert_eq!(st["state"]["terminated"]["reason"], "Error");
    assert_eq!(st["restartCount"], 0);
    assert_eq!(condition(&failed, "Ready"), "False");
    let ok = wait_phase(&client, "never-succeeds", "Succeeded").await;
    assert_eq!(
        container_status(&ok, "c")["state"]["terminated"]["reason"],
        "Completed"
    );

    // OnFailure: restarted in place, on the same node, with growing back-off.
    let seen_backoff = eventually("OnFailure restarts into CrashLoopBackOff", LONG, || async {
        let p = pod(&client, "onfailure").await?;
        let st = container_status(&p, "c");
        let restarts = st["restartCount"].as_u64().unwrap_or(0);
        if restarts >= 2 && st["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            Ok(p)
        } else {
            Err(format!("{st}"))
        }
    })
    .await;
    assert_eq!(phase(&seen_backoff), "Running");
    assert_eq!(seen_backoff["spec"]["nodeName"], "n1");
    let st = container_status(&seen_backoff, "c");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 1, "{st}");
    assert!(
        st["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("back-off "),
        "{st}"
    );
    // Always: even a container that succeeds is restarted.
    eventually("Always restarts a succeeding container", LONG, || async {
        let p = pod(&client, "always").await?;
        let n = container_status(&p, "c")["restartCount"]
            .as_u64()
            .unwrap_or(0);
        if n >= 2 && phase(&p) == "Running" {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    })
    .await;
    // The previous run's log, and a BackOff event in describe.
    let (ok, out, err) = corralctl(&c, &["logs", "onfailure", "--previous"]);
    assert!(ok, "{err}");
    assert!(out.contains("run"), "{out}");
    let (ok, out, err) = corralctl(&c, &["describe", "pod", "onfailure"]);
    assert!(ok, "{err}");
    assert!(out.contains("BackOff"), "{out}");
    assert!(out.contains("Started"), "{out}");
    assert!(out.contains("Scheduled"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_and_readiness_gates_ready() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    let flag = c.tmp.path().join("ready-flag");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: probed
spec:
  containers:
  - name: liveness
    image: busybox
    command: ["sh", "-c", "touch /tmp/healthy-$(POD_UID); sleep 2; rm -f /tmp/healthy-$(POD_UID); sleep 600"]
    env:
    - name: POD_UID
      valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
    livenessProbe:
      exec:
        command: ["sh", "-c", "test -f /tmp/healthy-$POD_UID"]
      periodSeconds: 1
      failureThreshold: 2
  - name: gated
    image: busybox
    command: ["sleep", "600"]
    readinessProbe:
      exec:
        command: ["test", "-f", "{flag}"]
      periodSeconds: 1
"#,
        flag = flag.display()
    );
    client.create(&yaml(&manifest)).await.expect("create");
    let p = wait_phase(&client, "probed", "Running").await;
    assert_eq!(condition(&p, "Ready"), "False", "not ready before the flag");
    eventually(
        "the liveness failure restarts the container",
        LONG,
        || async {
            let p = pod(&client, "probed").await?;
            let st = container_status(&p, "liveness");
            if st["restartCount"].as_u64().unwrap_or(0) >= 1 {
                Ok(())
            } else {
                Err(st.to_string())
            }
        },
    )
    .await;
    let (_, out, _) = corralctl(&c, &["describe", "pod", "probed"]);
    assert!(out.contains("Unhealthy"), "{out}");
    assert!(out.contains("failed liveness probe"), "{out}");
    // Readiness: the gated container turns ready once the flag exists.
    std::fs::write(&flag, "ok").expect("flag");
    eventually("the gated container ready", LONG, || async {
        let p = pod(&client, "probed").await?;
        let st = container_status(&p, "gated");
        if st["ready"] == true {
            Ok(())
        } else {
            Err(st.to_string())
        }
    })
    .await;
    std::fs::remove_file(&flag).expect("unflag");
    eventually("the gated container unready again", LONG, || async {
        let p = pod(&client, "probed").await?;
        let st = container_status(&p, "gated");
        if st["ready"] == false && condition(&p, "Ready") == "False" {
            Ok(())
        } else {
            Err(st.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_config_map_holds_the_pod_until_it_exists() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    client
        .create(&yaml(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: configured
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo \"$GREETING from $(cat /etc/config/greeting)\"; sleep 600"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {name: app-config, key: greeting}
    volumeMounts:
    - name: config
      mountPath: /etc/config
  volumes:
  - name: config
    configMap: {name: app-config}
"#,
        ))
        .await
        .expect("create");
    let waiting = eventually("CreateContainerConfigError", LONG, || async {
        let p = pod(&client, "configured").await?;
        let st = container_status(&p, "app");
        if st["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            || st["state"]["waiting"]["reason"] == "ContainerCreating"
                && st["state"]["waiting"]["message"].is_string()
        {
            Ok(p)
        } else {
            Err(st.to_string())
        }
    })
    .await;
    assert_eq!(phase(&waiting), "Pending");
    let msg = container_status(&waiting, "app")["state"]["waiting"]["message"].to_string();
    assert!(msg.contains("app-config"), "{msg}");
    client
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "default"},
            "data": {"greeting": "hello"}}))
        .await
        .expect("configmap");
    wait_phase(&client, "configured", "Running").await;
    eventually("the app's log", LONG, || async {
        let (_, out, err) = corralctl(&c, &["logs", "configured"]);
        if out.contains("hello from hello") {
            Ok(())
        } else {
            Err(format!("{out:?} {err:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_no_node_fits_stays_pending_with_kubernetes_message() {
    let c = cluster(
        1,
        &[
            ("big", &["--cpu", "2", "--node-labels", "disktype=ssd"]),
            ("small", &["--cpu", "2"]),
        ],
    )
    .await;
    let client = c.client();
    client
        .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy"},
            "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c", "image": "busybox",
                "command": ["sleep", "600"], "resources": {"requests": {"cpu": "3"}}}]}}))
        .await
        .expect("create");
    let p = eventually("PodScheduled=False", LONG, || async {
        let p = pod(&client, "greedy").await?;
        if condition(&p, "PodScheduled") == "False" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    let cond = p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(
        cond["message"],
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."
    );
    let (_, out, _) = corralctl(&c, &["describe", "pod", "greedy"]);
    assert!(out.contains("FailedScheduling"), "{out}");
    // A pod that fits is placed on the labelled node.
    client
        .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fits"},
            "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c", "image": "busybox",
                "command": ["sleep", "600"], "resources": {"requests": {"cpu": "1"}}}]}}))
        .await
        .expect("create");
    let p = wait_phase(&client, "fits", "Running").await;
    assert_eq!(p["spec"]["nodeName"], "big");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_agents_node_turns_unknown_and_its_pods_are_evicted() {
    let mut c = cluster(1, &[("doomed", &[]), ("spare", &[])]).await;
    let client = c.client();
    client
        .create(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stranded"},
            "spec": {"nodeName": "doomed",
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 2}],
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"]}]}}),
        )
        .await
        .expect("create");
    wait_phase(&client, "stranded", "Running").await;
    c.agents[0].kill();
    let node = eventually("node doomed Unknown and tainted", LONG, || async {
        let n = client
            .get("Node", "", "doomed")
            .await
            .map_err(|e| e.to_string())?;
        let tainted = n["spec"]["taints"].as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        });
        if condition(&n, "Ready") == "Unknown" && tainted {
            Ok(n)
        } else {
            Err(n["status"]["conditions"].to_string())
        }
    })
    .await;
    assert_eq!(condition(&node, "Ready"), "Unknown");
    eventually("the stranded pod evicted", LONG, || async {
        match client.get("Pod", "default", "stranded").await {
            Err(corral_client::ApiError::NotFound { .. }) => Ok(()),
            Ok(p) => Err(format!(
                "still there: deletion {:?} ready {}",
                p["metadata"]["deletionTimestamp"],
                condition(&p, "Ready")
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    // The agent comes back: its node is Ready again, and the evicted pod's process is gone.
    c.agents[0].restart();
    eventually(
        "node doomed Ready again without the taint",
        LONG,
        || async {
            let n = client
                .get("Node", "", "doomed")
                .await
                .map_err(|e| e.to_string())?;
            let tainted = n["spec"]["taints"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["key"] == "node.kubernetes.io/unreachable")
            });
            if condition(&n, "Ready") == "True" && !tainted {
                Ok(())
            } else {
                Err(n.to_string())
            }
        },
    )
    .await;
    eventually("the evicted pod's processes are stopped", LONG, || async {
        let alive: Vec<i64> = c.agents[0]
            .container_pids()
            .into_iter()
            .filter(|(_, pid)| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .map(|(_, pid)| pid)
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {alive:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restart_adopts_its_running_containers() {
    let mut c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    let starts = c.tmp.path().join("starts");
    std::fs::create_dir_all(&starts).expect("dir");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: steady
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo started >> /starts/log; exec sleep 600"]
    volumeMounts:
    - name: starts
      mountPath: /starts
  volumes:
  - name: starts
    hostPath:
      path: {}
      type: Directory
"#,
        starts.display()
    );
    client.create(&yaml(&manifest)).await.expect("create");
    let before = wait_phase(&client, "steady", "Running").await;
    let pids_before = c.agents[0].container_pids();
    assert_eq!(pids_before.len(), 1, "{pids_before:?}");
    for _ in 0..2 {
        c.agents[0].restart();
        c.nodes_ready(LONG).await;
    }
    // The agent has re-read its pods and reported: same container, nothing started twice.
    let renew_time = || async {
        let lease = client
            .get("Lease", "kube-node-lease", "n1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(
            lease["spec"]["renewTime"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let (after, renewed) = eventually("the adopted pod reported again", LONG, || async {
        let p = pod(&client, "steady").await?;
        let renewed = renew_time().await?;
        if phase(&p) == "Running" && !renewed.is_empty() {
            Ok((p, renewed))
        } else {
            Err(p["status"].to_string())
        }
    })
    .await;
    // Two heartbeats of the restarted agent later the pod is still the same run.
    let mut last = renewed;
    for _ in 0..2 {
        let before_beat = last.clone();
        last = eventually("another heartbeat", LONG, || {
            let before_beat = before_beat.clone();
            async move {
                let now = renew_time().await?;
                if now > before_beat { Ok(now) } else { Err(now) }
            }
        })
        .await;
    }
    let after2 = pod(&client, "steady").await.expect("pod");
    for p in [&after, &after2] {
        let st = container_status(p, "app");
        assert_eq!(st["restartCount"], 0, "{st}");
        assert_eq!(
            st["containerID"],
            container_status(&before, "app")["containerID"]
        );
    }
    assert_eq!(c.agents[0].container_pids(), pids_before);
    let log = std::fs::read_to_string(starts.join("log")).expect("start log");
    assert_eq!(log.lines().count(), 1, "started more than once: {log:?}");
    // Graceful deletion still works on an adopted container.
    client
        .delete("Pod", "default", "steady", &DeleteOptions::default())
        .await
        .expect("delete");
    eventually("the pod removed by its node", LONG, || async {
        match client.get("Pod", "default", "steady").await {
            Err(corral_client::ApiError::NotFound { .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, pid) = pids_before[0];
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the container process {pid} outlived its pod"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_deletion_sends_sigterm_then_sigkill_after_the_grace_period() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    let mk = |name: &str, script: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"terminationGracePeriodSeconds": 3, "containers": [
                   {"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}})
    };
    client
        .create(&mk(
            "polite",
            "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done",
        ))
        .await
        .expect("create");
    client
        .create(&mk(
            "stubborn",
            "trap '' TERM; while true; do sleep 0.1; done",
        ))
        .await
        .expect("create");
    wait_phase(&client, "polite", "Running").await;
    wait_phase(&client, "stubborn", "Running").await;
    let start = std::time::Instant::now();
    for name in ["polite", "stubborn"] {
        let p = client
            .delete("Pod", "default", name, &DeleteOptions::default())
            .await
            .expect("delete");
        assert!(
            p["metadata"]["deletionTimestamp"].is_string(),
            "a bound pod is deleted gracefully: {p}"
        );
    }
    for name in ["polite", "stubborn"] {
        eventually(&format!("{name} removed"), LONG, || async {
            match client.get("Pod", "default", name).await {
                Err(corral_client::ApiError::NotFound { .. }) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        if name == "polite" {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "a container that exits on SIGTERM is not held for the grace period"
            );
        }
    }
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "the container ignoring SIGTERM was killed before its grace period ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_keeps_running_pods_when_its_server_dies() {
    let mut c = cluster(3, &[("n1", &[])]).await;
    let mk = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                   {"name": "c", "image": "busybox", "command": ["sleep", "600"]}]}})
    };
    c.client().create(&mk("before")).await.expect("create");
    wait_phase(&c.client(), "before", "Running").await;
    // The agent's first server (and, with it, whichever server its watch was on) dies; the agent
    // resumes its watch through the others and keeps reporting.
    c.servers[0].kill();
    c.leader(LONG).await;
    let client = c.client();
    client.create(&mk("after")).await.expect("create");
    wait_phase(&client, "after", "Running").await;
    client
        .delete("Pod", "default", "before", &DeleteOptions::default())
        .await
        .expect("delete");
    eventually("the first pod removed by its node", LONG, || async {
        match client.get("Pod", "default", "before").await {
            Err(corral_client::ApiError::NotFound { .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let p = pod(&client, "after").await.expect("pod");
    assert_eq!(container_status(&p, "c")["restartCount"], 0);
}

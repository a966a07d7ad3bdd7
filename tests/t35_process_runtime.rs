//! The process runtime with real processes: `corral shim` supervisors started from the built
//! `corral` binary, `sh -c` containers, real signals, mounts and cgroups (where the machine has
//! them; what is skipped says why).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use corral_agent::runtime::process::{ProcessRuntime, ShimCommand};
use corral_agent::runtime::{
    ContainerInfo, ContainerSpec, ContainerState, Limits, Mount, Runtime, RuntimeError, log_path,
    pod_dir,
};
use corral_agent::shim::{PidRecord, ShimConfig};
use corral_tests::eventually;

const WAIT: Duration = Duration::from_secs(20);

fn runtime(root: &Path) -> ProcessRuntime {
    ProcessRuntime::new(
        root.to_path_buf(),
        ShimCommand {
            program: corral_tests::bin("corral"),
            args: vec!["shim".to_string()],
        },
    )
    .expect("a process runtime")
}

/// A pod uid no other test (or test run) uses: cgroups are shared by the machine.
fn uid() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t35-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn sh(uid: &str, name: &str, restart: u32, script: &str) -> ContainerSpec {
    ContainerSpec {
        pod_uid: uid.to_string(),
        pod_namespace: "default".to_string(),
        pod_name: "t35".to_string(),
        name: name.to_string(),
        restart_count: restart,
        image: "busybox:stable".to_string(),
        argv: vec!["sh".to_string(), "-c".to_string(), script.to_string()],
        command: vec![],
        args: vec![],
        image_pull_policy: String::new(),
        env: vec![],
        working_dir: None,
        mounts: vec![],
        limits: Limits::default(),
        hosts_file: None,
    }
}

/// Waits for the run to end; answers (exit code, signal, reason).
async fn exited(rt: &ProcessRuntime, id: &str) -> (i32, Option<i32>, String) {
    eventually(&format!("{id} to exit"), WAIT, || async {
        match rt.inspect(id).await.map_err(|e| e.to_string())? {
            Some(ContainerInfo {
                state:
                    ContainerState::Exited {
                        exit_code,
                        signal,
                        reason,
                        ..
                    },
                ..
            }) => Ok((exit_code, signal, reason)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn log_contains(path: &Path, needle: &str) -> String {
    eventually(
        &format!("{needle:?} in {}", path.display()),
        WAIT,
        || async {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_say_what_is_in_effect() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let caps = rt.capabilities();
    for c in &caps {
        println!("capability: {c}");
    }
    assert_eq!(rt.name(), "process");
    let text = caps.join("\n");
    assert!(text.contains("mount namespaces:"), "{text}");
    assert!(text.contains("memory limits:"), "{text}");
    assert!(text.contains("cpu limits:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_reasons() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let ok = rt.start(&sh(&u, "ok", 0, "exit 0")).await.expect("start");
    let bad = rt.start(&sh(&u, "bad", 0, "exit 3")).await.expect("start");
    let killed = rt
        .start(&sh(&u, "killed", 0, "kill -KILL $$"))
        .await
        .expect("start");
    assert_eq!(ok.id, format!("process://{u}/ok/0"));
    assert_eq!(ok.image, "busybox:stable");
    assert_eq!(
        exited(&rt, &ok.id).await,
        (0, None, "Completed".to_string())
    );
    assert_eq!(exited(&rt, &bad.id).await, (3, None, "Error".to_string()));
    assert_eq!(
        exited(&rt, &killed.id).await,
        (137, Some(9), "Error".to_string())
    );
    let all = rt.list().await.expect("list");
    assert_eq!(all.iter().filter(|c| c.pod_uid == u).count(), 3);
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_move_when_a_container_exits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let go = tmp.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; exit 5",
        go.display()
    );
    let c = rt.start(&sh(&u, "c", 0, &script)).await.expect("start");
    assert!(c.is_running(), "{c:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let wait_exit = async {
        // Subscribed before looking, so an exit in between still wakes it.
        let mut changes = rt.changes();
        loop {
            changes.borrow_and_update();
            if let Some(ContainerInfo {
                state: ContainerState::Exited { exit_code, .. },
                ..
            }) = rt.inspect(&c.id).await.expect("inspect")
            {
                return exit_code;
            }
            tokio::time::timeout_at(deadline, changes.changed())
                .await
                .expect("changes() moved for the exit")
                .expect("the runtime lives");
        }
    };
    std::fs::write(&go, b"").expect("go");
    assert_eq!(wait_exit.await, 5);
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv_env_and_working_dir() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    let rt = runtime(&root);
    let u = uid();
    let wd = tmp.path().join("work/dir"); // missing: created as Docker does
    let script = r#"echo "argv:$0:$1"; echo "env:$GREETING:$LATER"; echo "pwd:$(pwd)"; echo "home:${HOME-unset}"; echo "path:$PATH""#;
    let mut spec = sh(&u, "c", 0, script);
    spec.argv
        .extend(["first".to_string(), "second".to_string()]);
    spec.env = vec![
        ("GREETING".to_string(), "hello world".to_string()),
        ("LATER".to_string(), "one".to_string()),
        ("LATER".to_string(), "two".to_string()),
    ];
    spec.working_dir = Some(wd.clone());
    let c = rt.start(&spec).await.expect("start");
    assert_eq!(exited(&rt, &c.id).await.0, 0);
    let log = std::fs::read_to_string(log_path(&root, &u, "c", 0)).expect("log");
    assert!(log.contains("argv:first:second"), "{log}");
    assert!(log.contains("env:hello world:two"), "{log}");
    assert!(log.contains(&format!("pwd:{}", wd.display())), "{log}");
    assert!(
        log.contains("home:unset"),
        "the environment is the spec's only: {log}"
    );
    assert!(
        log.contains("path:/usr/local/sbin:"),
        "a default PATH: {log}"
    );

    // No working directory: the run's own state directory.
    let d = rt
        .start(&sh(&u, "d", 0, "pwd; echo oops >&2"))
        .await
        .expect("start");
    assert_eq!(exited(&rt, &d.id).await.0, 0);
    let log = std::fs::read_to_string(log_path(&root, &u, "d", 0)).expect("log");
    let state = rt.state_dir(&d.id).expect("state dir");
    assert_eq!(log, format!("{}\noops\n", state.display()));
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_restart_has_its_own_log_and_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let first = rt
        .start(&sh(&u, "app", 0, "echo run zero; exit 1"))
        .await
        .expect("start");
    assert_eq!(exited(&rt, &first.id).await.0, 1);
    let second = rt
        .start(&sh(&u, "app", 1, "echo run one"))
        .await
        .expect("start");
    assert_eq!(second.id, format!("process://{u}/app/1"));
    assert_eq!(second.restart_count, 1);
    assert_eq!(exited(&rt, &second.id).await.0, 0);
    assert_eq!(
        std::fs::read_to_string(log_path(tmp.path(), &u, "app", 0)).expect("log 0"),
        "run zero\n"
    );
    assert_eq!(
        std::fs::read_to_string(log_path(tmp.path(), &u, "app", 1)).expect("log 1"),
        "run one\n"
    );
    // A run is never started twice.
    let again = rt.start(&sh(&u, "app", 1, "echo twice")).await;
    assert!(again.is_err(), "{again:?}");
    let mut ids: Vec<String> = rt
        .list()
        .await
        .expect("list")
        .into_iter()
        .filter(|c| c.pod_uid == u)
        .map(|c| c.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()]);

    // remove forgets a run but keeps its log.
    rt.remove(&first.id).await.expect("remove");
    assert_eq!(rt.inspect(&first.id).await.expect("inspect"), None);
    assert!(log_path(tmp.path(), &u, "app", 0).exists());
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_are_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let mut spec = sh(&u, "missing", 0, "");
    spec.argv = vec!["/nonexistent/command".to_string(), "x".to_string()];
    match rt.start(&spec).await {
        Err(RuntimeError::Start(msg)) => assert!(msg.contains("/nonexistent/command"), "{msg}"),
        other => panic!("expected a start error, got {other:?}"),
    }
    spec.argv.clear();
    assert!(matches!(rt.start(&spec).await, Err(RuntimeError::Start(_))));
    let mine: Vec<_> = rt
        .list()
        .await
        .expect("list")
        .into_iter()
        .filter(|c| c.pod_uid == u)
        .collect();
    assert!(mine.is_empty(), "{mine:?}");
    assert!(matches!(
        rt.stop("process://nope/x/0", Duration::ZERO).await,
        Err(RuntimeError::NotFound(_))
    ));
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();

    let polite = rt
        .start(&sh(
            &u,
            "polite",
            0,
            "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        ))
        .await
        .expect("start");
    log_contains(&log_path(tmp.path(), &u, "polite", 0), "ready").await;
    rt.stop(&polite.id, Duration::from_secs(30))
        .await
        .expect("stop");
    assert_eq!(
        exited(&rt, &polite.id).await,
        (0, None, "Completed".to_string())
    );
    log_contains(&log_path(tmp.path(), &u, "polite", 0), "got-term").await;

    let stubborn = rt
        .start(&sh(
            &u,
            "stubborn",
            0,
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ))
        .await
        .expect("start");
    log_contains(&log_path(tmp.path(), &u, "stubborn", 0), "ready").await;
    rt.stop(&stubborn.id, Duration::from_millis(300))
        .await
        .expect("stop");
    assert_eq!(
        exited(&rt, &stubborn.id).await,
        (137, Some(9), "Error".to_string())
    );
    // Stopping what has exited is a no-op.
    rt.stop(&stubborn.id, Duration::from_secs(1))
        .await
        .expect("stop again");
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_inside_with_exit_codes_output_and_timeouts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let wd = tmp.path().join("wd");
    let mut spec = sh(&u, "c", 0, "echo ready; exec sleep 1000");
    spec.env = vec![("FOO".to_string(), "bar".to_string())];
    spec.working_dir = Some(wd.clone());
    let c = rt.start(&spec).await.expect("start");
    log_contains(&log_path(tmp.path(), &u, "c", 0), "ready").await;
    let argv = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let t = Duration::from_secs(10);

    let out = rt
        .exec(&c.id, &argv("echo out; echo err >&2; exit 7"), t)
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 7);
    assert_eq!(out.output, "out\nerr\n");

    let out = rt
        .exec(&c.id, &argv("echo $FOO; pwd"), t)
        .await
        .expect("exec");
    assert_eq!(
        (out.exit_code, out.output),
        (0, format!("bar\n{}\n", wd.display()))
    );

    let out = rt
        .exec(&c.id, &argv("head -c 100000 /dev/zero | tr '\\0' a"), t)
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.output.len(), 4096, "output is truncated to 4 KiB");

    let out = rt
        .exec(
            &c.id,
            &argv("echo started; sleep 30"),
            Duration::from_millis(300),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, -1);
    assert!(out.output.contains("started"), "{}", out.output);
    assert!(out.output.contains("timed out"), "{}", out.output);

    let missing = rt.exec(&c.id, &["/nonexistent/probe".to_string()], t).await;
    assert!(missing.is_err(), "{missing:?}");

    rt.stop(&c.id, Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        exited(&rt, &c.id).await,
        (143, Some(15), "Error".to_string())
    );
    assert!(rt.exec(&c.id, &argv("true"), t).await.is_err());
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_are_visible_inside_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    if !rt.uses_mount_namespaces() {
        println!(
            "SKIPPED: no mount namespaces here ({}); mounts travel as CORRAL_MOUNT_* variables",
            rt.capabilities().join("; ")
        );
        return;
    }
    let u = uid();
    let ro_host = tmp.path().join("ro-volume");
    let rw_host = tmp.path().join("rw-volume");
    std::fs::create_dir_all(&ro_host).expect("mkdir");
    std::fs::create_dir_all(&rw_host).expect("mkdir");
    std::fs::write(ro_host.join("hello.txt"), "hello from the host\n").expect("write");
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.1.2.3 t35-alias\n").expect("hosts");
    // Mount points that do not exist yet: the shim creates them.
    let ro_at = tmp.path().join("inside/html");
    let rw_at = tmp.path().join("inside/data");
    let script = format!(
        "cat {ro}/hello.txt; \
         if (echo x > {ro}/new) 2>/dev/null; then echo ro:writable; else echo ro:read-only; fi; \
         echo written-inside > {rw}/out.txt; \
         grep t35-alias /etc/hosts; \
         echo ready; exec sleep 1000",
        ro = ro_at.display(),
        rw = rw_at.display()
    );
    let mut spec = sh(&u, "c", 0, &script);
    spec.mounts = vec![
        Mount {
            host_path: ro_host.clone(),
            container_path: ro_at.clone(),
            read_only: true,
        },
        Mount {
            host_path: rw_host.clone(),
            container_path: rw_at.clone(),
            read_only: false,
        },
    ];
    spec.hosts_file = Some(hosts);
    let c = rt.start(&spec).await.expect("start");
    let log = log_contains(&log_path(tmp.path(), &u, "c", 0), "ready").await;
    assert!(log.contains("hello from the host"), "{log}");
    assert!(log.contains("ro:read-only"), "{log}");
    assert!(log.contains("10.1.2.3 t35-alias"), "{log}");
    assert_eq!(
        std::fs::read_to_string(rw_host.join("out.txt")).expect("written through the mount"),
        "written-inside\n"
    );
    // Outside: the mount points exist, empty; the node's /etc/hosts is untouched.
    assert!(ro_at.is_dir());
    assert!(!ro_at.join("hello.txt").exists());
    assert!(!rw_at.join("out.txt").exists());
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!node_hosts.contains("t35-alias"));
    // exec joins the container's mount namespace.
    let out = rt
        .exec(
            &c.id,
            &[
                "cat".to_string(),
                ro_at.join("hello.txt").display().to_string(),
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(
        (out.exit_code, out.output.as_str()),
        (0, "hello from the host\n")
    );
    rt.stop(&c.id, Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        exited(&rt, &c.id).await,
        (143, Some(15), "Error".to_string())
    );
    rt.remove_pod(&u).await.expect("remove pod");
}

fn cgroup_config(rt: &ProcessRuntime, id: &str) -> ShimConfig {
    let dir = rt.state_dir(id).expect("state dir");
    serde_json::from_slice(&std::fs::read(dir.join("shim.json")).expect("shim.json"))
        .expect("valid shim.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_ends_in_oomkilled_and_cpu_limit_is_set() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    if !rt.enforces_memory_limits() {
        println!(
            "SKIPPED: memory limits are not enforced here: {}",
            rt.capabilities().join("; ")
        );
        return;
    }
    let u = uid();
    let mut spec = sh(&u, "hog", 0, "a=0123456789; while :; do a=\"$a$a\"; done");
    spec.limits = Limits {
        memory_bytes: Some(32 * 1024 * 1024),
        cpu_millis: Some(250),
    };
    let c = rt.start(&spec).await.expect("start");
    let config = cgroup_config(&rt, &c.id);
    if rt.enforces_cpu_limits() {
        let v2 = config
            .cgroups
            .v2
            .as_ref()
            .map(|g| g.join("cpu.max"))
            .filter(|p| p.exists());
        let quota = match v2 {
            Some(p) => std::fs::read_to_string(p).expect("cpu.max"),
            None => std::fs::read_to_string(
                config
                    .cgroups
                    .v1_cpu
                    .as_ref()
                    .expect("a cpu group")
                    .join("cpu.cfs_quota_us"),
            )
            .expect("cpu.cfs_quota_us"),
        };
        assert!(
            quota.trim() == "25000 100000" || quota.trim() == "25000",
            "{quota}"
        );
    }
    let (code, signal, reason) = exited(&rt, &c.id).await;
    assert_eq!((code, signal, reason.as_str()), (137, Some(9), "OOMKilled"));
    let groups: Vec<PathBuf> = [
        config.cgroups.v2.clone(),
        config.cgroups.v1_memory.clone(),
        config.cgroups.v1_cpu.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(!groups.is_empty());
    rt.remove_pod(&u).await.expect("remove pod");
    for g in &groups {
        assert!(!g.exists(), "{} is removed with the pod", g.display());
        assert!(
            !g.parent().expect("pod group").exists(),
            "the pod's group is removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_adopts_running_containers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let u = uid();
    let go = tmp.path().join("go");
    let (sleeper, waiter) = {
        let first = runtime(tmp.path());
        let sleeper = first
            .start(&sh(&u, "sleeper", 0, "echo ready; exec sleep 1000"))
            .await
            .expect("start");
        let waiter = first
            .start(&sh(
                &u,
                "waiter",
                0,
                &format!(
                    "while [ ! -e {} ]; do sleep 0.02; done; exit 4",
                    go.display()
                ),
            ))
            .await
            .expect("start");
        (sleeper, waiter)
        // `first` is dropped here: the agent "restarts".
    };
    let second = runtime(tmp.path());
    let listed = second.list().await.expect("list");
    let find = |id: &str| listed.iter().find(|c| c.id == id).cloned();
    let s = find(&sleeper.id).expect("the sleeper is listed");
    assert_eq!(s, sleeper, "same id, state and start time");
    assert!(find(&waiter.id).expect("the waiter is listed").is_running());

    // An adopted container's exit moves changes() (through the poll).
    let deadline = tokio::time::Instant::now() + WAIT;
    std::fs::write(&go, b"").expect("go");
    let mut changes = second.changes();
    loop {
        changes.borrow_and_update();
        if let Some(ContainerInfo {
            state: ContainerState::Exited { exit_code, .. },
            ..
        }) = second.inspect(&waiter.id).await.expect("inspect")
        {
            assert_eq!(exit_code, 4);
            break;
        }
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .expect("changes() moved for the adopted container's exit")
            .expect("the runtime lives");
    }

    second
        .stop(&sleeper.id, Duration::from_secs(10))
        .await
        .expect("stop the adopted container");
    assert_eq!(
        exited(&second, &sleeper.id).await,
        (143, Some(15), "Error".to_string())
    );
    second.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_shim_ends_its_container_with_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let c = rt
        .start(&sh(&u, "orphan", 0, "echo ready; exec sleep 1000"))
        .await
        .expect("start");
    let dir = rt.state_dir(&c.id).expect("state dir");
    let pids: PidRecord =
        serde_json::from_slice(&std::fs::read(dir.join("pid.json")).expect("pid.json"))
            .expect("valid pid.json");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pids.shim_pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, _, reason) = exited(&rt, &c.id).await;
    assert_eq!((code, reason.as_str()), (255, "Error"));
    eventually(
        "the orphaned container process to be killed",
        WAIT,
        || async {
            if corral_agent::shim::alive(pids.pid, pids.pid_start_ticks) {
                Err(format!("pid {} still runs", pids.pid))
            } else {
                Ok(())
            }
        },
    )
    .await;
    rt.remove_pod(&u).await.expect("remove pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_pod_keeps_volumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let c = rt.start(&sh(&u, "c", 0, "echo bye")).await.expect("start");
    assert_eq!(exited(&rt, &c.id).await.0, 0);
    let running = rt
        .start(&sh(&u, "r", 0, "exec sleep 1000"))
        .await
        .expect("start");
    assert!(matches!(
        rt.remove(&running.id).await,
        Err(RuntimeError::Other(_))
    ));
    rt.stop(&running.id, Duration::ZERO).await.expect("stop");
    let volume = pod_dir(tmp.path(), &u).join("volumes/empty-dir/data");
    std::fs::create_dir_all(&volume).expect("volume");
    std::fs::write(volume.join("keep.txt"), "kept").expect("volume file");
    rt.remove_pod(&u).await.expect("remove pod");
    let pod = pod_dir(tmp.path(), &u);
    assert!(!pod.join("containers").exists());
    assert!(!pod.join("logs").exists());
    assert!(volume.join("keep.txt").exists(), "volumes are the worker's");
    assert_eq!(rt.inspect(&c.id).await.expect("inspect"), None);
    assert!(
        rt.list()
            .await
            .expect("list")
            .iter()
            .all(|c| c.pod_uid != u)
    );
}

/// `setpriv`, when the machine has it (util-linux).
fn setpriv() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("setpriv"))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mount_namespaces_mounts_travel_as_variables() {
    let Some(setpriv) = setpriv() else {
        println!("SKIPPED: no setpriv to start the shim without CAP_SYS_ADMIN");
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    // The shim without CAP_SYS_ADMIN: what an unprivileged agent gets.
    let rt = ProcessRuntime::new(
        tmp.path().to_path_buf(),
        ShimCommand {
            program: setpriv,
            args: vec![
                "--bounding-set=-sys_admin".to_string(),
                corral_tests::bin("corral").display().to_string(),
                "shim".to_string(),
            ],
        },
    )
    .expect("a process runtime");
    assert!(!rt.uses_mount_namespaces());
    let caps = rt.capabilities().join("\n");
    assert!(caps.contains("mount namespaces: NO"), "{caps}");
    assert!(caps.contains("CORRAL_MOUNT_"), "{caps}");

    let u = uid();
    let host = tmp.path().join("html");
    std::fs::create_dir_all(&host).expect("mkdir");
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "10.1.2.3 t35-alias\n").expect("hosts");
    let mut spec = sh(
        &u,
        "web",
        0,
        "echo \"html=$CORRAL_MOUNT_USR_SHARE_NGINX_HTML\"; echo \"hosts=$CORRAL_MOUNT_ETC_HOSTS\"; \
         echo ready; exec sleep 1000",
    );
    spec.mounts = vec![Mount {
        host_path: host.clone(),
        container_path: PathBuf::from("/usr/share/nginx/html"),
        read_only: true,
    }];
    spec.hosts_file = Some(hosts.clone());
    let c = rt.start(&spec).await.expect("start");
    let log = log_contains(&log_path(tmp.path(), &u, "web", 0), "ready").await;
    assert!(log.contains(&format!("html={}", host.display())), "{log}");
    assert!(log.contains(&format!("hosts={}", hosts.display())), "{log}");
    let out = rt
        .exec(
            &c.id,
            &[
                "sh".to_string(),
                "-c".to_string(),
                "echo $CORRAL_MOUNT_USR_SHARE_NGINX_HTML".to_string(),
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(out.output, format!("{}\n", host.display()));
    rt.stop(&c.id, Duration::from_secs(5)).await.expect("stop");
    assert_eq!(
        exited(&rt, &c.id).await,
        (143, Some(15), "Error".to_string())
    );
    rt.remove_pod(&u).await.expect("remove pod");
}

/// Prints how long `start` takes (measured, not asserted: speed belongs to benchmarks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latency_is_printed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = runtime(tmp.path());
    let u = uid();
    let mut took = Vec::new();
    for i in 0..20 {
        let t = std::time::Instant::now();
        let c = rt
            .start(&sh(&u, "c", i, "exec sleep 1000"))
            .await
            .expect("start");
        took.push(t.elapsed());
        assert!(c.is_running(), "{c:?}");
        rt.stop(&c.id, Duration::ZERO).await.expect("stop");
    }
    took.sort();
    println!(
        "process runtime start(): min {:?}, median {:?}, max {:?} over {} runs",
        took[0],
        took[took.len() / 2],
        took[took.len() - 1],
        took.len()
    );
    rt.remove_pod(&u).await.expect("remove pod");
}

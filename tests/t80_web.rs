//! The reference StatefulSet `web` (`examples/web.yaml` as shipped: the headless Service `nginx`
//! and 2 replicas of busybox httpd, each on its own claim from the default `local-path` class)
//! on a real cluster: 3 servers, each serving the cluster DNS (`--dns`), and an agent giving
//! every pod its own loopback address (`--pod-ip-range`), applied with `corralctl` and looked up
//! with `dig` as a user would:
//!
//! - web-1 is created only after web-0 is Ready (from a watch of every pod change);
//! - `web-0.nginx.default.svc.cluster.local` answers web-0's address on every server, and the
//!   new address once web-0 has been deleted and has come back; that deletion happens right
//!   after the leader server was killed, and the restarted server answers the new address too;
//! - the new web-0 serves what the first web-0 wrote on its claim;
//! - scaling to 1 removes web-1 and keeps `www-web-1`; scaling back to 2 gives the new web-1
//!   the same claim with the first web-1's data on it;
//! - at no sampled moment do two pods hold one ordinal: the API never shows a second pod of an
//!   ordinal before the first is deleted, and on the node no two pods' processes of one ordinal
//!   run at once (processes sampled from /proc throughout, the leader kill included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral_api::ApiError;
use corral_client::{DeleteOptions, EventType};
use corral_tests::{
    TestCluster, WatchLog, corralctl, dig_a, eventually, free_port, http_get, pod_ready, ready_pod,
    text,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// The agent's pod addresses: a range no other test uses, so the sampler below sees this
/// test's pods only.
const POD_RANGE: &str = "127.80.0.0/16";
const POD_NET: &str = "127.80.";

fn web_yaml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/web.yaml")
        .canonicalize()
        .expect("examples/web.yaml")
}

/// Waits until every DNS port in `ports` answers `name` with exactly `want`.
async fn resolves(ports: &[u16], name: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    for port in ports {
        eventually(&format!("{name} → {want:?} on :{port}"), T, || async {
            let got = dig_a(*port, name).await?;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
    }
}

/// A file the pod serves from its claim (over HTTP at its own address, port 80).
async fn served(pod: &Value, file: &str) -> String {
    let addr = format!("{}:80", text(pod, "/status/podIP"));
    let path = format!("/{file}");
    let (code, body) = eventually(&format!("GET {addr}{path}"), T, || http_get(&addr, &path)).await;
    assert_eq!(code, 200, "{body}");
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The uids listed in a claim's `starts` file, in order.
async fn starts(pod: &Value) -> Vec<String> {
    served(pod, "starts")
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

fn uid(pod: &Value) -> String {
    text(pod, "/metadata/uid").to_string()
}

fn ip(pod: &Value) -> String {
    text(pod, "/status/podIP").to_string()
}

/// What the process sampler saw.
#[derive(Default, Debug)]
struct Sampled {
    samples: u64,
    /// (pod name, uid) of every pod process seen.
    seen: BTreeSet<(String, String)>,
    /// Samples in which one ordinal had processes of two pods: name → the uids.
    doubled: Vec<(String, BTreeSet<String>)>,
}

/// Samples /proc every few milliseconds for the processes of this test's pods (their
/// environment carries POD_NAME, POD_UID and a POD_IP in [`POD_RANGE`], from the downward API)
/// and records any moment when two pods' processes of one name run at once.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Sampled>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut out = Sampled::default();
            while !flag.load(Ordering::Relaxed) {
                let mut now: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for (name, uid) in pod_processes() {
                    out.seen.insert((name.clone(), uid.clone()));
                    now.entry(name).or_default().insert(uid);
                }
                out.doubled
                    .extend(now.into_iter().filter(|(_, uids)| uids.len() > 1));
                out.samples += 1;
                // A sampling period, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(10));
            }
            out
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler")
    }
}

/// (POD_NAME, POD_UID) of every live process whose POD_IP lies in [`POD_RANGE`].
fn pod_processes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        let mut name = None;
        let mut uid = None;
        let mut ours = false;
        for var in env.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(v) = var.strip_prefix("POD_NAME=") {
                name = Some(v.to_string());
            } else if let Some(v) = var.strip_prefix("POD_UID=") {
                uid = Some(v.to_string());
            } else if let Some(v) = var.strip_prefix("POD_IP=") {
                ours = v.starts_with(POD_NET);
            }
        }
        if let (true, Some(name), Some(uid)) = (ours, name, uid) {
            out.push((name, uid));
        }
    }
    out
}

/// From the watch log: every name whose new pod was added while an earlier pod of that name
/// had not yet been deleted.
fn added_before_deleted(events: &[corral_tests::Recorded]) -> Vec<String> {
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    let mut bad = Vec::new();
    for (rev, t, o) in events {
        let (name, uid) = (text(o, "/metadata/name"), text(o, "/metadata/uid"));
        match t {
            EventType::Added => {
                if let Some(old) = live.insert(name.to_string(), uid.to_string()) {
                    bad.push(format!("{name}: {uid} added at {rev} while {old} lived"));
                }
            }
            EventType::Deleted => {
                live.remove(name);
            }
            _ => {}
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_web_statefulset_keeps_names_addresses_and_data_through_replacement_scaling_and_a_leader_kill()
 {
    let dns: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let per_server = dns.clone();
    let mut c = TestCluster::start_with(3, &[], move |id| {
        vec!["--dns".into(), format!("127.0.0.1:{}", per_server[&id])]
    });
    c.leader(T).await;
    c.add_agent("n1", &["--pod-ip-range", POD_RANGE]);
    c.nodes_ready(T).await;
    let client = c.client();
    let all_dns: Vec<u16> = dns.values().copied().collect();
    let log = WatchLog::start(&client, "Pod", "default").await;
    let sampler = Sampler::start();

    // ---- web-0, then web-1 ----------------------------------------------------------------
    let manifest = web_yaml();
    corralctl(&c, &["apply", "-f", &manifest.display().to_string()]).await;
    let web0_ready = log
        .first("web-0 Ready", T, |_, o| {
            text(o, "/metadata/name") == "web-0" && pod_ready(o)
        })
        .await;
    let web1_added = log
        .first("web-1 created", T, |t, o| {
            t == EventType::Added && text(o, "/metadata/name") == "web-1"
        })
        .await;
    assert!(
        web1_added > web0_ready,
        "web-1 was created (revision {web1_added}) before web-0 was Ready ({web0_ready})"
    );
    let web0 = ready_pod(&client, "web-0", "", T).await;
    let web1 = ready_pod(&client, "web-1", "", T).await;
    for p in [&web0, &web1] {
        assert!(
            ip(p).starts_with(POD_NET),
            "a pod address from the range: {p}"
        );
        assert_eq!(text(p, "/spec/hostname"), text(p, "/metadata/name"));
        assert_eq!(text(p, "/spec/subdomain"), "nginx");
    }
    assert_ne!(ip(&web0), ip(&web1));
    let claim = |p: &Value| text(p, "/spec/volumes/0/persistentVolumeClaim/claimName").to_string();
    assert_eq!(claim(&web0), "www-web-0");
    assert_eq!(claim(&web1), "www-web-1");

    resolves(
        &all_dns,
        "web-0.nginx.default.svc.cluster.local",
        &[&ip(&web0)],
    )
    .await;
    resolves(
        &all_dns,
        "web-1.nginx.default.svc.cluster.local",
        &[&ip(&web1)],
    )
    .await;
    resolves(
        &all_dns,
        "nginx.default.svc.cluster.local",
        &[&ip(&web0), &ip(&web1)],
    )
    .await;
    assert_eq!(served(&web0, "index.html").await, "web-0\n");
    assert_eq!(starts(&web0).await, [uid(&web0)]);
    println!("web-0 at {}, web-1 at {}", ip(&web0), ip(&web1));

    // ---- The leader dies; web-0 is deleted and comes back at a new address ---------------
    let leader = c.leader(T).await;
    c.servers[leader].kill();
    let killed_dns = dns[&c.servers[leader].id];
    let survivors_dns: Vec<u16> = all_dns
        .iter()
        .copied()
        .filter(|p| *p != killed_dns)
        .collect();
    let survivors = c.client();
    let first = uid(&web0);
    eventually("deleting web-0 through the survivors", T, || async {
        let only_this_one = DeleteOptions {
            uid: Some(first.clone()),
            ..Default::default()
        };
        match survivors
            .delete("Pod", "default", "web-0", &only_this_one)
            .await
        {
            // Gone already, or replaced (the uid precondition fails): an earlier try went in.
            Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let new_web0 = ready_pod(&survivors, "web-0", &first, T).await;
    assert_ne!(ip(&new_web0), ip(&web0), "the new web-0 has a new address");
    assert_eq!(claim(&new_web0), "www-web-0");
    resolves(
        &survivors_dns,
        "web-0.nginx.default.svc.cluster.local",
        &[&ip(&new_web0)],
    )
    .await;
    assert_eq!(served(&new_web0, "index.html").await, "web-0\n");
    assert_eq!(
        starts(&new_web0).await,
        [first.clone(), uid(&new_web0)],
        "the new web-0 finds what the first one wrote on www-web-0"
    );
    c.servers[leader].restart();
    resolves(
        &[killed_dns],
        "web-0.nginx.default.svc.cluster.local",
        &[&ip(&new_web0)],
    )
    .await;
    println!("new web-0 at {}, on every server's DNS", ip(&new_web0));

    // ---- 2 → 1 keeps www-web-1; 1 → 2 reuses it ---------------------------------------------
    let client = c.client();
    let pvc_uid = |p: &Value| text(p, "/metadata/uid").to_string();
    let www1 = client
        .get("PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("www-web-1");
    corralctl(&c, &["scale", "statefulset/web", "--replicas", "1"]).await;
    eventually("web-1 gone", T, || async {
        match client.get("Pod", "default", "web-1").await {
            Err(ApiError::NotFound { .. }) => Ok(()),
            Ok(p) => Err(format!("web-1 still there: {}", p["status"])),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let kept = client
        .get("PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("www-web-1 is kept after scaling down");
    assert_eq!(pvc_uid(&kept), pvc_uid(&www1));
    assert_eq!(text(&kept, "/status/phase"), "Bound");
    assert!(kept.pointer("/metadata/deletionTimestamp").is_none());
    resolves(&all_dns, "web-1.nginx.default.svc.cluster.local", &[]).await;
    let still = ready_pod(&client, "web-0", "", T).await;
    assert_eq!(uid(&still), uid(&new_web0), "scaling down left web-0 alone");

    corralctl(&c, &["scale", "statefulset/web", "--replicas", "2"]).await;
    let new_web1 = ready_pod(&client, "web-1", &uid(&web1), T).await;
    assert_eq!(claim(&new_web1), "www-web-1");
    let reused = client
        .get("PersistentVolumeClaim", "default", "www-web-1")
        .await
        .expect("www-web-1");
    assert_eq!(
        pvc_uid(&reused),
        pvc_uid(&www1),
        "the same claim, not a new one"
    );
    assert_eq!(served(&new_web1, "index.html").await, "web-1\n");
    assert_eq!(starts(&new_web1).await, [uid(&web1), uid(&new_web1)]);
    resolves(
        &all_dns,
        "web-1.nginx.default.svc.cluster.local",
        &[&ip(&new_web1)],
    )
    .await;

    // ---- One pod per ordinal, all along ---------------------------------------------------
    let sampled = sampler.finish();
    println!(
        "{} samples of the node's processes; pods seen: {:?}",
        sampled.samples, sampled.seen
    );
    assert_eq!(
        sampled.doubled,
        Vec::<(String, BTreeSet<String>)>::new(),
        "two pods of one ordinal ran at once"
    );
    for p in [&web0, &web1, &new_web0, &new_web1] {
        let key = (text(p, "/metadata/name").to_string(), uid(p));
        assert!(
            sampled.seen.contains(&key),
            "the sampler saw {key:?}'s process (it looks at the right processes)"
        );
    }
    assert_eq!(added_before_deleted(&log.events()), Vec::<String>::new());
}

//! Losing servers: SIGKILL of the leader, restarts from the data dir, catching up through a
//! snapshot, and the leader-run components following leadership.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_client::{GetOptions, ListOptions};
use corral_tests::{TestCluster, config_map, eventually, metric};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_20_times_loses_no_acknowledged_write_and_each_failover_is_under_a_second()
 {
    let mut c = TestCluster::start(3, &[]);
    let mut acked = BTreeSet::new();
    let mut times = Vec::new();
    for round in 0..20 {
        let leader = c.leader(T).await;
        // Kill a leader of a healthy cluster: every server has caught up (a follower still
        // recovering from the last kill would make this a double fault).
        eventually("every server to apply the same revision", T, || async {
            let mut applied = Vec::new();
            for s in c.servers.iter() {
                let st = corral_client::Client::connect(std::slice::from_ref(&s.api))
                    .map_err(|e| e.to_string())?
                    .cluster_status()
                    .await
                    .map_err(|e| e.to_string())?;
                applied.push(st.applied_revision);
            }
            if applied.windows(2).all(|w| w[0] == w[1]) {
                Ok(())
            } else {
                Err(format!("applied: {applied:?}"))
            }
        })
        .await;
        let client = c.client();
        for i in 0..5 {
            let name = format!("r{round}-{i}");
            client
                .create(&config_map("default", &name, "v"))
                .await
                .expect("write before the kill");
            acked.insert(name);
        }
        let killed_id = c.servers[leader].id;
        c.servers[leader].kill();
        let killed_at = Instant::now();
        let survivors = c.client();
        let elected = {
            let survivors = survivors.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(st) = survivors.cluster_status().await
                        && st.leader_id != 0
                        && st.leader_id != killed_id
                    {
                        return killed_at.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let name = format!("r{round}-after");
        // The first write after the kill is acknowledged once a new leader has committed it.
        let resumed = eventually("a write after the leader was killed", T, || async {
            match survivors.create(&config_map("default", &name, "v")).await {
                // An earlier attempt whose answer was lost with the leader did commit.
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(Instant::now()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        acked.insert(name);
        let took = resumed - killed_at;
        let elected = elected.await.expect("election watcher");
        let new_leader = c.leader(T).await;
        assert_ne!(c.servers[new_leader].id, killed_id);
        println!(
            "kill {round:2}: leader {killed_id} killed, new leader {}, elected after {elected:?}, writes resumed after {took:?}",
            c.servers[new_leader].id
        );
        times.push(took);
        c.servers[leader].restart();
    }
    c.leader(T).await;
    let all = c
        .client()
        .list("ConfigMap", Some("default"), &ListOptions::default())
        .await
        .expect("list");
    let present: BTreeSet<String> = all
        .items
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let worst = times.iter().max().copied().unwrap_or_default();
    let mut sorted = times.clone();
    sorted.sort();
    println!(
        "failover over {} kills: median {:?}, worst {worst:?}",
        times.len(),
        sorted[sorted.len() / 2]
    );
    assert!(
        worst < Duration::from_secs(1),
        "worst failover {worst:?} (all: {times:?})\n{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_from_its_data_dir_and_catches_up() {
    let mut c = TestCluster::start(3, &[]);
    let leader = c.leader(T).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let client = c.client();
    client
        .create(&config_map("default", "before", "1"))
        .await
        .expect("create");
    c.servers[follower].kill();
    for i in 0..30 {
        client
            .create(&config_map("default", &format!("while-down-{i}"), "1"))
            .await
            .expect("create");
    }
    c.servers[follower].restart();
    let back = c.client_of(follower);
    eventually("the restarted server to have every write", T, || async {
        let l = back
            .list(
                "ConfigMap",
                Some("default"),
                &ListOptions {
                    stale_ok: true,
                    ..corral_tests::test_objects()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        if l.items.len() == 31 {
            Ok(())
        } else {
            Err(format!("{} of 31", l.items.len()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_while_the_log_was_purged_catches_up_through_a_snapshot() {
    let mut c = TestCluster::start(3, &["--snapshot-every", "40", "--keep-logs", "5"]);
    let leader = c.leader(T).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    c.servers[follower].kill();
    let client = c.client();
    for i in 0..150 {
        client
            .create(&config_map("default", &format!("k{i}"), "1"))
            .await
            .expect("create");
    }
    let purged = eventually(
        "the leader to purge its log behind a snapshot",
        T,
        || async {
            let p = metric(&c.servers[leader].http, "corral_raft_purged_index").await?;
            if p > 50.0 {
                Ok(p)
            } else {
                Err(format!("purged up to {p}"))
            }
        },
    )
    .await;
    println!("leader purged its log up to {purged}");
    c.servers[follower].restart();
    let back = c.client_of(follower);
    eventually("the restarted server to catch up", T, || async {
        let got = back
            .get_with(
                "ConfigMap",
                "default",
                "k149",
                &GetOptions { stale_ok: true },
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(got)
    })
    .await;
    let snap = metric(&c.servers[follower].http, "corral_raft_snapshot_index")
        .await
        .expect("metric");
    assert!(
        snap > 0.0,
        "the follower installed a snapshot (snapshot index {snap})"
    );
    let l = back
        .list(
            "ConfigMap",
            Some("default"),
            &ListOptions {
                stale_ok: true,
                ..corral_tests::test_objects()
            },
        )
        .await
        .expect("list");
    assert_eq!(l.items.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_run_component_runs_on_exactly_one_server_and_moves_within_a_second_of_a_kill() {
    let mut c = TestCluster::start(3, &["--leader-probe"]);
    const PROBE: &str = "corral_leader_component_running{component=\"leader-probe\"}";
    async fn running_on(c: &TestCluster) -> Vec<usize> {
        let mut on = Vec::new();
        for (i, s) in c.servers.iter().enumerate().filter(|(_, s)| s.is_running()) {
            if metric(&s.http, PROBE).await.unwrap_or(0.0) == 1.0 {
                on.push(i);
            }
        }
        on
    }
    for _ in 0..3 {
        let leader = c.leader(T).await;
        let on = eventually("the probe to run on the leader", T, || async {
            let on = running_on(&c).await;
            if on == vec![leader] {
                Ok(on)
            } else {
                Err(format!("running on {on:?}, leader {leader}"))
            }
        })
        .await;
        for _ in 0..20 {
            let on_now = running_on(&c).await;
            assert!(
                on_now.len() <= 1,
                "the probe runs on several servers at once: {on_now:?}"
            );
        }
        c.servers[on[0]].kill();
        let killed = Instant::now();
        let moved = eventually("the probe to start on another server", T, || async {
            let on = running_on(&c).await;
            if on.len() == 1 {
                Ok(on[0])
            } else {
                Err(format!("running on {on:?}"))
            }
        })
        .await;
        let took = killed.elapsed();
        println!(
            "probe moved from server {} to server {} in {took:?}",
            c.servers[on[0]].id, c.servers[moved].id
        );
        assert!(took < Duration::from_secs(1), "moved after {took:?}");
        c.servers[on[0]].restart();
    }
}

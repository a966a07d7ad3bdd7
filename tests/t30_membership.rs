//! Changing membership at runtime, under load.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_client::{GetOptions, ListOptions};
use corral_tests::{TestCluster, config_map, eventually};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_fourth_server_and_removing_one_works_under_load() {
    let mut c = TestCluster::start(3, &[]);
    c.leader(T).await;
    let client = c.client();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            let mut errors = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("load-{i}");
                match client.create(&config_map("default", &name, "v")).await {
                    Ok(_) => {
                        acked.lock().expect("lock").insert(name);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                i += 1;
            }
            errors
        })
    };
    let idx = c.launch_joiner(4);
    let peer = c.servers[idx].peer.clone();
    let status = client.add_server(4, &peer).await.expect("add server 4");
    assert!(
        status.members.iter().any(|m| m.id == 4 && m.voter),
        "{status:?}"
    );
    client.remove_server(1).await.expect("remove server 1");
    let four = c.client_of(idx);
    eventually("server 4 to see the members 2, 3, 4", T, || async {
        let status = four.cluster_status().await.map_err(|e| e.to_string())?;
        let ids: BTreeSet<u64> = status.members.iter().map(|m| m.id).collect();
        if ids == BTreeSet::from([2, 3, 4]) && status.leader_id != 0 {
            Ok(())
        } else {
            Err(format!("members {ids:?}, leader {}", status.leader_id))
        }
    })
    .await;
    // Server 1 is out; the cluster still takes writes without it.
    c.servers[0].kill();
    eventually("writes to continue after the removal", T, || async {
        let n = acked.lock().expect("lock").len();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = acked.lock().expect("lock").len();
        if m > n {
            Ok(())
        } else {
            Err(format!("{m} acknowledged, not growing"))
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors = writer.await.expect("writer");
    println!(
        "writes acknowledged: {}, failed during the changes: {}",
        acked.lock().expect("lock").len(),
        errors.len()
    );
    let acked = acked.lock().expect("lock").clone();
    let last = acked.iter().next_back().cloned().expect("some writes");
    eventually("server 4 to hold the writes", T, || async {
        four.get_with(
            "ConfigMap",
            "default",
            &last,
            &GetOptions { stale_ok: true },
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await;
    let list = four
        .list("ConfigMap", Some("default"), &ListOptions::default())
        .await
        .expect("list via server 4");
    let present: BTreeSet<String> = list
        .items
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
}

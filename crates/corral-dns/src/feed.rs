//! Keeps the served zone current: informers (Services, Endpoints, Namespaces) through the API,
//! and on any change a rebuild of the whole zone from their caches, swapped in at once. Changes
//! are batched: a rebuild waits a little for more (20 ms), and never follows the previous one
//! sooner than twice the time that one took, so a storm of endpoint updates costs at most about
//! a third of a core however large the cluster.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_client::{Client, Informer};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::handler::ZoneHandle;
use crate::model::{EndpointsInfo, ServiceInfo};
use crate::zone::{Zone, ZoneConfig};

const SETTLE: Duration = Duration::from_millis(20);

/// The informers the zone is built from.
pub struct Sources {
    services: Informer,
    endpoints: Informer,
    namespaces: Informer,
}

impl Sources {
    pub fn start(client: &Client, cancel: &CancellationToken) -> Sources {
        Sources {
            services: Informer::builder(client.clone(), "Service").start(cancel.child_token()),
            endpoints: Informer::builder(client.clone(), "Endpoints").start(cancel.child_token()),
            namespaces: Informer::builder(client.clone(), "Namespace").start(cancel.child_token()),
        }
    }

    /// The zone from the caches as they are now.
    pub fn build(&self, config: &ZoneConfig) -> Zone {
        let services: Vec<ServiceInfo> = self
            .services
            .list()
            .iter()
            .filter_map(|s| ServiceInfo::from_json(s))
            .collect();
        let endpoints: HashMap<(String, String), EndpointsInfo> = self
            .endpoints
            .list()
            .iter()
            .filter_map(|e| EndpointsInfo::from_json(e))
            .map(|e| ((e.namespace.clone(), e.name.clone()), e))
            .collect();
        let namespaces = self
            .namespaces
            .list()
            .iter()
            .map(|n| corral_api::object::name(n).to_string())
            .collect::<Vec<_>>();
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        Zone::build(config, &services, &endpoints, namespaces, serial)
    }
}

/// Waits for a change on any of the receivers; `false` when they are closed (the informers
/// stopped) or on shutdown.
async fn changed(
    rxs: &mut [UnboundedReceiver<corral_client::Change>; 3],
    shutdown: &CancellationToken,
) -> bool {
    let [a, b, c] = rxs;
    tokio::select! {
        _ = shutdown.cancelled() => false,
        r = a.recv() => r.is_some(),
        r = b.recv() => r.is_some(),
        r = c.recv() => r.is_some(),
    }
}

fn drain(rxs: &mut [UnboundedReceiver<corral_client::Change>; 3]) {
    for rx in rxs {
        while rx.try_recv().is_ok() {}
    }
}

/// Runs until `shutdown`: the first zone once every informer has listed, then a new one after
/// each batch of changes.
pub async fn run(
    client: Client,
    config: ZoneConfig,
    handle: ZoneHandle,
    shutdown: CancellationToken,
) {
    let sources = Sources::start(&client, &shutdown);
    let mut rxs = [
        sources.services.subscribe(),
        sources.endpoints.subscribe(),
        sources.namespaces.subscribe(),
    ];
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = async {
            sources.services.wait_synced().await;
            sources.endpoints.wait_synced().await;
            sources.namespaces.wait_synced().await;
        } => {}
    }
    let mut first = true;
    loop {
        drain(&mut rxs);
        let started = Instant::now();
        let zone = sources.build(&config);
        let took = started.elapsed();
        let (names, records) = zone.size();
        handle.set(zone);
        if first {
            tracing::info!(names, records, ?took, "DNS zone ready");
            first = false;
        } else {
            tracing::debug!(names, records, ?took, "DNS zone rebuilt");
        }
        if !changed(&mut rxs, &shutdown).await {
            return;
        }
        let wait = SETTLE.max(took * 2);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

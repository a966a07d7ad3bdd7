//! Prometheus metrics: API latency by method, and Raft's term, leader, commit and apply index.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

pub struct Metrics {
    registry: Registry,
    pub api_latency: Family<MethodLabels, Histogram>,
    pub raft_term: Gauge,
    pub raft_leader: Gauge,
    pub raft_is_leader: Gauge,
    pub raft_last_log_index: Gauge,
    pub raft_commit_index: Gauge,
    pub raft_applied_index: Gauge,
    pub raft_snapshot_index: Gauge,
    pub raft_purged_index: Gauge,
    pub leader_components: Family<ComponentLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("corral");
        let api_latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "api_request_duration_seconds",
            "API request latency by method and result",
            api_latency.clone(),
        );
        let g = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let raft_term = g(&mut registry, "raft_term", "Current Raft term");
        let raft_leader = g(
            &mut registry,
            "raft_leader_id",
            "Id of the current Raft leader (0: none known)",
        );
        let raft_is_leader = g(
            &mut registry,
            "raft_is_leader",
            "1 if this server is the Raft leader",
        );
        let raft_last_log_index = g(
            &mut registry,
            "raft_last_log_index",
            "Index of the last entry in this server's log",
        );
        let raft_commit_index = g(
            &mut registry,
            "raft_commit_index",
            "Index of the last entry known committed",
        );
        let raft_applied_index = g(
            &mut registry,
            "raft_applied_index",
            "Index of the last entry applied (the revision)",
        );
        let raft_snapshot_index = g(
            &mut registry,
            "raft_snapshot_index",
            "Last log index covered by this server's snapshot",
        );
        let raft_purged_index = g(
            &mut registry,
            "raft_purged_index",
            "Last log index purged from this server's log",
        );
        let leader_components = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "leader_component_running",
            "1 while a leader-run component runs on this server",
            leader_components.clone(),
        );
        Arc::new(Self {
            registry,
            api_latency,
            raft_term,
            raft_leader,
            raft_is_leader,
            raft_last_log_index,
            raft_commit_index,
            raft_applied_index,
            raft_snapshot_index,
            raft_purged_index,
            leader_components,
        })
    }

    pub fn observe(&self, method: &str, code: &str, took: Duration) {
        self.api_latency
            .get_or_create(&MethodLabels {
                method: method.to_string(),
                code: code.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}

//! The plain-HTTP side of a server (--http): `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use corral_store::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Arc<Metrics>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { store, metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Ready when a leader is known: this server can then take any call.
async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.store.leader() {
        Some((id, _)) => (StatusCode::OK, format!("ok: leader is {id}\n")),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no Raft leader known\n".into(),
        ),
    }
}

async fn metrics_text(
    State(s): State<AppState>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let m = s.store.metrics().borrow().clone();
    let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    s.metrics.raft_term.set(g(m.current_term));
    s.metrics.raft_leader.set(g(m.current_leader.unwrap_or(0)));
    s.metrics
        .raft_is_leader
        .set(i64::from(m.state == openraft::ServerState::Leader));
    s.metrics
        .raft_last_log_index
        .set(g(m.last_log_index.unwrap_or(0)));
    let applied = g(m.last_applied.map(|l| l.index).unwrap_or(0));
    s.metrics.raft_commit_index.set(applied);
    s.metrics
        .raft_applied_index
        .set(g(s.store.reader().applied()));
    s.metrics
        .raft_snapshot_index
        .set(g(m.snapshot.map(|l| l.index).unwrap_or(0)));
    s.metrics
        .raft_purged_index
        .set(g(m.purged.map(|l| l.index).unwrap_or(0)));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

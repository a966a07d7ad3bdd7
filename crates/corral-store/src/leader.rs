//! The host for leader-run components (scheduler, controllers): each registered component runs
//! while this server is the Raft leader and is cancelled the moment it stops being leader, as
//! Raft's own metrics report it, so a hand-over costs one election and no lease period.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::ServerState;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::node::Store;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Something that runs only on the leader: given a token cancelled at the loss of leadership.
pub type Component = Arc<dyn Fn(CancellationToken) -> BoxFut + Send + Sync>;

/// Wraps an async fn as a [`Component`].
pub fn component<F, Fut>(f: F) -> Component
where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |t| Box::pin(f(t)))
}

pub struct LeaderHost {
    store: Store,
    components: Vec<(String, Component)>,
}

impl LeaderHost {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            components: Vec::new(),
        }
    }

    pub fn register(&mut self, name: impl Into<String>, c: Component) {
        self.components.push((name.into(), c));
    }

    /// Starts and stops the components as leadership comes and goes, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut metrics = self.store.metrics();
        let mut running: Option<(CancellationToken, JoinSet<()>)> = None;
        loop {
            let leader = metrics.borrow_and_update().state == ServerState::Leader;
            match (leader, running.is_some()) {
                (true, false) => {
                    let token = shutdown.child_token();
                    let mut set = JoinSet::new();
                    for (name, c) in &self.components {
                        tracing::info!(component = %name, "leader: starting");
                        set.spawn(c(token.clone()));
                    }
                    running = Some((token, set));
                }
                (false, true) => {
                    if let Some((token, mut set)) = running.take() {
                        tracing::info!("leadership lost: stopping leader-run components");
                        token.cancel();
                        while set.join_next().await.is_some() {}
                    }
                }
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = metrics.changed() => if changed.is_err() { break },
            }
        }
        if let Some((token, mut set)) = running.take() {
            token.cancel();
            while set.join_next().await.is_some() {}
        }
    }
}

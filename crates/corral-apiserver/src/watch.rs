//! Watch: the store's ordered change feed for one kind, filtered by namespace and selectors, as
//! Kubernetes watch events (an object leaving a selector is a DELETED), with periodic bookmarks.

use std::time::Duration;

use corral_api::ApiError;
use corral_api::object::list_prefix;
use corral_api::selector::{parse_field_selector, parse_label_selector};
use corral_proto::v1::{WatchEvent, WatchRequest, watch_event::Type};
use corral_store::{EventKind, Store, WatchError};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::objects::{kind_of, selected};

fn from_watch_error(e: WatchError) -> ApiError {
    match e {
        WatchError::Expired { requested, oldest } => ApiError::Expired { requested, oldest },
        WatchError::Closed => ApiError::unavailable("the server is shutting down", None),
        WatchError::Storage(m) => ApiError::internal(m),
    }
}

/// Starts a watch; events go to `tx` until the client goes away or the watch fails.
pub fn start(
    store: &Store,
    req: WatchRequest,
) -> Result<mpsc::Receiver<Result<WatchEvent, ApiError>>, ApiError> {
    let info = kind_of(&req.kind)?;
    let labels = parse_label_selector(&req.label_selector)?;
    let fields = parse_field_selector(&req.field_selector)?;
    let everything = labels.is_empty() && fields.is_empty();
    let ns = if info.namespaced && !req.namespace.is_empty() {
        Some(req.namespace.as_str())
    } else {
        None
    };
    let prefix = list_prefix(info, ns);
    let reader = store.reader().clone();
    let from = if req.from_revision == 0 {
        reader.applied()
    } else {
        req.from_revision
    };
    let mut watcher = reader.watch(&prefix, from).map_err(from_watch_error)?;
    let (tx, rx) = mpsc::channel(256);
    let bookmark =
        (req.bookmark_seconds > 0).then(|| Duration::from_secs(u64::from(req.bookmark_seconds)));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(bookmark.unwrap_or(Duration::from_secs(3600)));
        ticker.tick().await;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmark.is_some() => {
                    let ev = WatchEvent { r#type: Type::Bookmark as i32, object: String::new(), revision: watcher.progress() };
                    if tx.send(Ok(ev)).await.is_err() { return }
                    continue;
                }
                e = watcher.next() => e,
            };
            let event = match next {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(from_watch_error(e))).await;
                    return;
                }
            };
            // Without selectors every object is in: no need to parse it.
            let in_selection = |s: &str| {
                everything
                    || serde_json::from_str::<Value>(s)
                        .ok()
                        .is_some_and(|v| selected(&v, &labels, &fields))
            };
            let now_in = in_selection(&event.value);
            let typ = match event.kind {
                EventKind::Delete => now_in.then_some(Type::Deleted),
                EventKind::Put => {
                    let was_in = event.prev.as_deref().is_some_and(in_selection);
                    match (was_in, now_in) {
                        (false, true) => Some(Type::Added),
                        (true, true) => Some(Type::Modified),
                        (true, false) => Some(Type::Deleted),
                        (false, false) => None,
                    }
                }
            };
            if let Some(t) = typ {
                let ev = WatchEvent {
                    r#type: t as i32,
                    object: event.value.clone(),
                    revision: event.revision,
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

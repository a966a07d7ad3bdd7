//! The resuming watcher: a stream of changes that survives the death of the server it reads from.
//!
//! It remembers the last revision it delivered. When its stream breaks (server killed, connection
//! reset, server closing the stream), it reopens the watch through the next server from that
//! revision, so no change is lost and none is delivered twice. While no server can be reached it
//! yields an [`ApiError::Unavailable`] item per failed round and keeps trying with a back-off; the
//! caller may drop the stream at any time. It ends after a final error: [`ApiError::Expired`] (the
//! revision was compacted: list again and watch from the list's revision) or a bad request.

use std::time::Duration;

use corral_api::ApiError;
use corral_proto::v1::{self as pb, watch_event};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tonic::Streaming;

use crate::client::{Client, ListOptions, ObjectList, api_client, decode_object};
use crate::status::{Target, classify};

/// The stream [`Client::watch`] returns.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, ApiError>>;

/// Options of [`Client::watch`]. Empty selectors select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    pub label_selector: String,
    pub field_selector: String,
    /// Deliver every change with a revision greater than this. 0: from the current revision on
    /// (the watcher asks a server for it first, so that a resume can never skip a change).
    pub from_revision: u64,
    /// Ask the server for a bookmark carrying the current revision this often (0: never).
    pub bookmark_seconds: u32,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    /// No change: the current revision, so a watcher can resume from there.
    Bookmark,
}

impl EventType {
    /// Kubernetes' spelling: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change: the object after it (before it, for `Deleted`; `Null` for `Bookmark`) and the
/// revision that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub r#type: EventType,
    pub object: Value,
    pub revision: u64,
}

impl WatchEvent {
    fn from_wire(event: pb::WatchEvent) -> Result<Self, ApiError> {
        let r#type = match watch_event::Type::try_from(event.r#type) {
            Ok(watch_event::Type::Added) => EventType::Added,
            Ok(watch_event::Type::Modified) => EventType::Modified,
            Ok(watch_event::Type::Deleted) => EventType::Deleted,
            Ok(watch_event::Type::Bookmark) => EventType::Bookmark,
            Err(_) => {
                return Err(ApiError::internal(format!(
                    "the server sent a watch event of unknown type {} at revision {}",
                    event.r#type, event.revision
                )));
            }
        };
        let object = if event.object.is_empty() {
            Value::Null
        } else {
            decode_object(&event.object)?
        };
        Ok(WatchEvent {
            r#type,
            object,
            revision: event.revision,
        })
    }
}

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

impl Client {
    /// Watches `kind` in `namespace` (`None`: every namespace): a resuming watcher, see the module
    /// doc. Nothing is sent until the stream is first polled.
    pub fn watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        options: &WatchOptions,
    ) -> WatchStream {
        let state = Watcher {
            client: self.clone(),
            kind: kind.to_string(),
            namespace: namespace.unwrap_or_default().to_string(),
            label_selector: options.label_selector.clone(),
            field_selector: options.field_selector.clone(),
            bookmark_seconds: options.bookmark_seconds,
            last: options.from_revision,
            started: options.from_revision != 0,
            open: None,
            pause: None,
            done: false,
        };
        futures::stream::unfold(state, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed()
    }

    /// Lists, then watches from the list's revision with the same selectors: the usual start of
    /// anything that keeps a cache (on `Expired`, call this again).
    pub async fn list_then_watch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        options: &ListOptions,
        bookmark_seconds: u32,
    ) -> Result<(ObjectList, WatchStream), ApiError> {
        let list = self.list(kind, namespace, options).await?;
        let watch = self.watch(
            kind,
            namespace,
            &WatchOptions {
                label_selector: options.label_selector.clone(),
                field_selector: options.field_selector.clone(),
                from_revision: list.revision,
                bookmark_seconds,
            },
        );
        Ok((list, watch))
    }
}

struct Watcher {
    client: Client,
    kind: String,
    namespace: String,
    label_selector: String,
    field_selector: String,
    bookmark_seconds: u32,
    /// The last revision delivered (or the one the watch started from).
    last: u64,
    /// Whether `last` is a real revision (the caller's, or one a server named).
    started: bool,
    open: Option<OpenStream>,
    /// Wait this long before the next attempt to open a stream.
    pause: Option<Duration>,
    done: bool,
}

struct OpenStream {
    stream: Streaming<pb::WatchEvent>,
    server: usize,
    from: u64,
    delivered: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent, ApiError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(open) = self.open.as_mut() else {
                if let Some(pause) = self.pause {
                    tokio::time::sleep(pause).await;
                }
                if let Err(e) = self.reopen().await {
                    if matches!(e, ApiError::Unavailable { .. }) {
                        self.pause = Some(
                            self.pause
                                .map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE)),
                        );
                    } else {
                        self.done = true;
                    }
                    return Some(Err(e));
                }
                continue;
            };
            match open.stream.message().await {
                Ok(Some(event)) => {
                    if event.revision <= open.from
                        && event.r#type != watch_event::Type::Bookmark as i32
                    {
                        // Not newer than what we asked for: a server bug; never deliver it twice.
                        tracing::warn!(
                            revision = event.revision,
                            from = open.from,
                            "dropping a watch event older than asked for"
                        );
                        continue;
                    }
                    open.delivered = true;
                    self.last = self.last.max(event.revision);
                    self.started = true;
                    return Some(WatchEvent::from_wire(event));
                }
                Ok(None) => {
                    tracing::debug!(kind = %self.kind, last = self.last, "watch stream closed by the server; resuming");
                    self.broken();
                }
                Err(status) => {
                    let failure = classify(&status, &Target::new(&self.kind, &self.namespace, ""));
                    if !failure.retryable() {
                        self.done = true;
                        return Some(Err(failure.error));
                    }
                    tracing::debug!(kind = %self.kind, last = self.last, error = %failure.error, "watch stream broke; resuming");
                    self.broken();
                }
            }
        }
    }

    /// Forgets the broken stream and moves the client past its server. A stream that broke before
    /// delivering anything makes the next attempt wait, so a misbehaving server is not hammered.
    fn broken(&mut self) {
        if let Some(open) = self.open.take() {
            self.client.advance_from(open.server);
            self.pause = if open.delivered {
                None
            } else {
                Some(
                    self.pause
                        .map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE)),
                )
            };
        }
    }

    async fn reopen(&mut self) -> Result<(), ApiError> {
        if !self.started {
            // "From now" must become a number before the first stream, or a break before the
            // first event would resume from a later "now" and skip what happened in between.
            match self.client.cluster_status().await {
                Ok(status) => self.last = status.applied_revision,
                Err(e @ ApiError::Unavailable { .. }) => return Err(e),
                // A server without the cluster service: "now" stays the server's to pick.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the current revision; watching from the server's now")
                }
            }
            self.started = true;
        }
        let request = pb::WatchRequest {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            from_revision: self.last,
            bookmark_seconds: self.bookmark_seconds,
        };
        let target = Target::new(&self.kind, &self.namespace, "");
        let (stream, server) = self
            .client
            .call(target, |channel| {
                let request = request.clone();
                async move {
                    api_client(channel)
                        .watch(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        self.open = Some(OpenStream {
            stream,
            server,
            from: self.last,
            delivered: false,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_events_decode_with_their_type_object_and_revision() {
        let ev = WatchEvent::from_wire(pb::WatchEvent {
            r#type: watch_event::Type::Deleted as i32,
            object: r#"{"kind":"Pod","metadata":{"name":"a"}}"#.into(),
            revision: 7,
        })
        .expect("valid event");
        assert_eq!(ev.r#type, EventType::Deleted);
        assert_eq!(ev.object["metadata"]["name"], "a");
        assert_eq!(ev.revision, 7);
    }

    #[test]
    fn a_bookmark_has_a_null_object() {
        let ev = WatchEvent::from_wire(pb::WatchEvent {
            r#type: watch_event::Type::Bookmark as i32,
            object: String::new(),
            revision: 9,
        })
        .expect("valid bookmark");
        assert_eq!(
            (ev.r#type, ev.object, ev.revision),
            (EventType::Bookmark, Value::Null, 9)
        );
    }

    #[test]
    fn unknown_types_and_bad_json_are_errors() {
        let bad_type = pb::WatchEvent {
            r#type: 42,
            object: "{}".into(),
            revision: 1,
        };
        assert!(matches!(
            WatchEvent::from_wire(bad_type),
            Err(ApiError::Internal { .. })
        ));
        let bad_json = pb::WatchEvent {
            r#type: 0,
            object: "{".into(),
            revision: 1,
        };
        assert!(matches!(
            WatchEvent::from_wire(bad_json),
            Err(ApiError::Internal { .. })
        ));
    }
}

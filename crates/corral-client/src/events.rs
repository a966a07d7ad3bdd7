//! [`EventRecorder`]: core/v1 Events about objects, written in the background the way
//! Kubernetes' event recorder writes them.
//!
//! [`EventRecorder::event`] never blocks and never fails: it puts the event in a bounded queue
//! that a background task drains, at most [`EventRecorderOptions::max_in_flight`] writes at a
//! time. When the queue is full the event is dropped (and the drop logged), as Kubernetes'
//! broadcaster drops events when its queue is full; write errors are logged, never returned.
//!
//! Repeats of the same event (same object, type, reason and message) within
//! [`EventRecorderOptions::aggregate_window`] of the previous one are not new objects: the
//! existing Event gets `count` + 1 and a new `lastTimestamp` through a merge patch, exactly as
//! `kubectl describe` shows `(x5 over 2m)`. The Event's name is `<object name>.<hex of the Unix
//! time in nanoseconds>`, its namespace the object's (`default` for cluster-scoped objects).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_api::ApiError;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::Client;

/// How the recorder queues, writes and aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecorderOptions {
    /// Events waiting to be written; beyond this new events are dropped (default 25,000).
    pub queue: usize,
    /// Event writes in flight at once, which bounds the load events put on the store
    /// (default 4).
    pub max_in_flight: usize,
    /// A repeat within this long of the previous occurrence bumps the existing Event's count
    /// (default 10 minutes, Kubernetes' aggregation interval).
    pub aggregate_window: Duration,
    /// Distinct events remembered for aggregation (default 4,096, Kubernetes' cache size).
    pub remembered: usize,
}

impl Default for EventRecorderOptions {
    fn default() -> Self {
        Self {
            queue: 25_000,
            max_in_flight: 4,
            aggregate_window: Duration::from_secs(600),
            remembered: 4096,
        }
    }
}

/// The object an event is about, as `involvedObject` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Reference {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
    resource_version: String,
}

impl Reference {
    fn of(object: &Value) -> Self {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Reference {
            kind: text("/kind"),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
            uid: text("/metadata/uid"),
            api_version: text("/apiVersion"),
            resource_version: text("/metadata/resourceVersion"),
        }
    }

    fn to_json(&self) -> Value {
        let mut r = json!({
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "apiVersion": self.api_version,
            "resourceVersion": self.resource_version,
        });
        if !self.namespace.is_empty() {
            r["namespace"] = json!(self.namespace);
        }
        r
    }

    /// Where the Event lives: the object's namespace, `default` for cluster-scoped objects.
    fn event_namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }
}

/// One call of [`EventRecorder::event`].
#[derive(Debug, Clone)]
struct Record {
    reference: Reference,
    type_: String,
    reason: String,
    message: String,
    at: jiff::Timestamp,
    seen: Instant,
}

/// What identifies a repeat: everything but the times and the object's resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AggregateKey {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    api_version: String,
    type_: String,
    reason: String,
    message: String,
}

impl AggregateKey {
    fn of(r: &Record) -> Self {
        AggregateKey {
            kind: r.reference.kind.clone(),
            namespace: r.reference.namespace.clone(),
            name: r.reference.name.clone(),
            uid: r.reference.uid.clone(),
            api_version: r.reference.api_version.clone(),
            type_: r.type_.clone(),
            reason: r.reason.clone(),
            message: r.message.clone(),
        }
    }
}

/// Writes Events in the background; cheap to clone (every clone feeds the same task).
#[derive(Clone)]
pub struct EventRecorder {
    tx: Option<mpsc::Sender<Record>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl EventRecorder {
    /// A recorder whose Events name `component` (`default-scheduler`) on `host` as their
    /// source, with the default options. Starts its task on the current Tokio runtime (outside
    /// one, every event is dropped and the log says so).
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        Self::with_options(client, component, host, EventRecorderOptions::default())
    }

    /// [`EventRecorder::new`] with explicit options.
    pub fn with_options(
        client: Client,
        component: &str,
        host: &str,
        options: EventRecorderOptions,
    ) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                component,
                "an event recorder must be made inside a Tokio runtime; its events are dropped"
            );
            return EventRecorder { tx: None, dropped };
        };
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let writer = Writer {
            client,
            source: Source {
                component: component.to_string(),
                host: host.to_string(),
            },
            aggregator: Aggregator::new(options.aggregate_window, options.remembered),
            max_in_flight: options.max_in_flight.max(1),
        };
        // The task ends when every clone of the recorder is dropped and the queue is drained.
        runtime.spawn(writer.run(rx));
        EventRecorder {
            tx: Some(tx),
            dropped,
        }
    }

    /// Records an event about `object` (`type_` is `Normal` or `Warning`): queued, written in
    /// the background, aggregated with its repeats. Never blocks.
    pub fn event(&self, object: &Value, type_: &str, reason: &str, message: String) {
        let record = Record {
            reference: Reference::of(object),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message,
            at: jiff::Timestamp::now(),
            seen: Instant::now(),
        };
        let sent = match &self.tx {
            Some(tx) => tx.try_send(record).is_ok(),
            None => false,
        };
        if !sent {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = n,
                    reason,
                    "event queue full or closed: dropping events"
                );
            }
        }
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
struct Source {
    component: String,
    host: String,
}

/// The write an aggregation decision calls for.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    /// Create this Event.
    Create { namespace: String, body: Value },
    /// Merge-patch the existing Event with this count and lastTimestamp.
    Bump {
        namespace: String,
        name: String,
        patch: Value,
    },
}

struct Entry {
    namespace: String,
    name: String,
    count: i64,
    first: String,
    last: String,
    last_seen: Instant,
    /// The Event exists in the store (its create succeeded).
    created: bool,
    /// A write for it is in flight; further repeats only update the entry.
    writing: bool,
    /// A repeat came while writing: patch once the write is done.
    stale: bool,
    /// What the create sends (kept to re-create an Event that disappeared).
    body: Value,
}

/// The aggregation state: pure, the writer task performs what it answers.
struct Aggregator {
    window: Duration,
    remembered: usize,
    entries: HashMap<AggregateKey, Entry>,
}

fn seconds(at: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(at.as_second())
        .unwrap_or(at)
        .to_string()
}

/// Kubernetes' MicroTime: RFC 3339 with exactly six fractional digits.
fn micros(at: jiff::Timestamp) -> String {
    let whole = seconds(at);
    let base = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{base}.{:06}Z", at.subsec_microsecond())
}

impl Aggregator {
    fn new(window: Duration, remembered: usize) -> Self {
        Self {
            window,
            remembered: remembered.max(1),
            entries: HashMap::new(),
        }
    }

    /// Takes a record; answers the write to start now (none while one for the same event is in
    /// flight: [`Aggregator::finished`] answers it then).
    fn record(&mut self, r: Record, source: &Source) -> Option<(AggregateKey, Write)> {
        let key = AggregateKey::of(&r);
        let last = seconds(r.at);
        if let Some(e) = self.entries.get_mut(&key)
            && r.seen.saturating_duration_since(e.last_seen) <= self.window
        {
            e.count += 1;
            e.last = last;
            e.last_seen = r.seen;
            if e.writing {
                e.stale = true;
                return None;
            }
            e.writing = true;
            let write = Self::bump(e);
            return Some((key, write));
        }
        if self.entries.len() >= self.remembered {
            self.evict(r.seen);
        }
        let namespace = r.reference.event_namespace().to_string();
        let name = format!("{}.{:x}", r.reference.name, r.at.as_nanosecond().max(0));
        let body = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": name, "namespace": namespace },
            "involvedObject": r.reference.to_json(),
            "reason": r.reason,
            "message": r.message,
            "type": r.type_,
            "source": { "component": source.component, "host": source.host },
            "firstTimestamp": last,
            "lastTimestamp": last,
            "eventTime": micros(r.at),
            "count": 1,
            "reportingComponent": source.component,
            "reportingInstance": source.host,
        });
        let write = Write::Create {
            namespace: namespace.clone(),
            body: body.clone(),
        };
        self.entries.insert(
            key.clone(),
            Entry {
                namespace,
                name,
                count: 1,
                first: last.clone(),
                last,
                last_seen: r.seen,
                created: false,
                writing: true,
                stale: false,
                body,
            },
        );
        Some((key, write))
    }

    fn bump(e: &Entry) -> Write {
        if !e.created {
            // The create failed earlier: create it now with what it counts.
            let mut body = e.body.clone();
            body["count"] = json!(e.count);
            body["firstTimestamp"] = json!(e.first);
            body["lastTimestamp"] = json!(e.last);
            return Write::Create {
                namespace: e.namespace.clone(),
                body,
            };
        }
        Write::Bump {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            patch: json!({ "count": e.count, "lastTimestamp": e.last }),
        }
    }

    /// A write finished; answers the follow-up write, if any (a repeat arrived meanwhile, or
    /// the patched Event had disappeared and must be made again).
    fn finished(
        &mut self,
        key: &AggregateKey,
        result: Result<(), ApiError>,
    ) -> Option<(AggregateKey, Write)> {
        let e = self.entries.get_mut(key)?;
        e.writing = false;
        match result {
            Ok(()) => e.created = true,
            Err(ApiError::NotFound { .. }) if e.created => {
                // Deleted (or expired) under us: the next write creates it again.
                e.created = false;
                e.stale = true;
            }
            Err(ApiError::AlreadyExists { .. }) => e.created = true,
            Err(_) => {}
        }
        if e.stale {
            e.stale = false;
            e.writing = true;
            return Some((key.clone(), Self::bump(e)));
        }
        None
    }

    /// Forgets events past the window, then, if still full, the older half of the rest (never
    /// one being written).
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, e| e.writing || now.saturating_duration_since(e.last_seen) <= window);
        if self.entries.len() < self.remembered {
            return;
        }
        let mut ages: Vec<Instant> = self
            .entries
            .values()
            .filter(|e| !e.writing)
            .map(|e| e.last_seen)
            .collect();
        ages.sort();
        if let Some(&cut) = ages.get(ages.len() / 2) {
            self.entries.retain(|_, e| e.writing || e.last_seen > cut);
        }
    }
}

struct Writer {
    client: Client,
    source: Source,
    aggregator: Aggregator,
    max_in_flight: usize,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        let mut writes: JoinSet<(AggregateKey, Result<(), ApiError>)> = JoinSet::new();
        let mut open = true;
        loop {
            tokio::select! {
                record = rx.recv(), if open && writes.len() < self.max_in_flight => {
                    match record {
                        Some(r) => {
                            if let Some((key, write)) = self.aggregator.record(r, &self.source) {
                                writes.spawn(perform(self.client.clone(), key, write));
                            }
                        }
                        None => open = false,
                    }
                }
                Some(done) = writes.join_next() => {
                    let Ok((key, result)) = done else { continue };
                    if let Some((key, write)) = self.aggregator.finished(&key, result) {
                        writes.spawn(perform(self.client.clone(), key, write));
                    }
                }
                else => break,
            }
            if !open && writes.is_empty() {
                break;
            }
        }
    }
}

async fn perform(
    client: Client,
    key: AggregateKey,
    write: Write,
) -> (AggregateKey, Result<(), ApiError>) {
    let result = match &write {
        Write::Create { body, .. } => client.create(body).await.map(|_| ()),
        Write::Bump {
            namespace,
            name,
            patch,
        } => client
            .patch("Event", namespace, name, patch, false)
            .await
            .map(|_| ()),
    };
    if let Err(e) = &result {
        match e {
            ApiError::NotFound { .. } | ApiError::AlreadyExists { .. } => {
                tracing::debug!(error = %e, reason = %key.reason, "event write")
            }
            _ => tracing::warn!(
                error = %e,
                object = %format!("{}/{}", key.namespace, key.name),
                reason = %key.reason,
                "could not write an event"
            ),
        }
    }
    (key, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            component: "default-scheduler".into(),
            host: "server-1".into(),
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-0", "namespace": "default", "uid": "u1", "resourceVersion": "42" },
        })
    }

    fn record(object: &Value, message: &str, at: jiff::Timestamp, seen: Instant) -> Record {
        Record {
            reference: Reference::of(object),
            type_: "Warning".into(),
            reason: "FailedScheduling".into(),
            message: message.into(),
            at,
            seen,
        }
    }

    fn ts(second: i64, micro: i32) -> jiff::Timestamp {
        jiff::Timestamp::new(second, micro * 1000).expect("valid timestamp")
    }

    #[test]
    fn a_new_event_is_a_full_core_v1_event() {
        let mut agg = Aggregator::new(Duration::from_secs(600), 16);
        let at = ts(1_700_000_000, 123_456);
        let (_, write) = agg
            .record(
                record(&pod(), "0/3 nodes are available", at, Instant::now()),
                &source(),
            )
            .expect("a new event is written at once");
        let Write::Create { namespace, body } = write else {
            panic!("expected a create, got {write:?}")
        };
        assert_eq!(namespace, "default");
        let name = format!("web-0.{:x}", at.as_nanosecond());
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": { "name": name, "namespace": "default" },
                "involvedObject": {
                    "kind": "Pod", "namespace": "default", "name": "web-0", "uid": "u1",
                    "apiVersion": "v1", "resourceVersion": "42",
                },
                "reason": "FailedScheduling",
                "message": "0/3 nodes are available",
                "type": "Warning",
                "source": { "component": "default-scheduler", "host": "server-1" },
                "firstTimestamp": "2023-11-14T22:13:20Z",
                "lastTimestamp": "2023-11-14T22:13:20Z",
                "eventTime": "2023-11-14T22:13:20.123456Z",
                "count": 1,
                "reportingComponent": "default-scheduler",
                "reportingInstance": "server-1",
            })
        );
        // Typed as Kubernetes reads it.
        let typed: k8s_openapi::api::core::v1::Event =
            serde_json::from_value(body).expect("a valid core/v1 Event");
        assert_eq!(typed.count, Some(1));
    }

    #[test]
    fn events_about_cluster_scoped_objects_live_in_default() {
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u"}});
        let mut agg = Aggregator::new(Duration::from_secs(600), 16);
        let (_, write) = agg
            .record(record(&node, "m", ts(1, 0), Instant::now()), &source())
            .expect("written");
        let Write::Create { namespace, body } = write else {
            panic!("expected a create")
        };
        assert_eq!(namespace, "default");
        assert!(body["involvedObject"].get("namespace").is_none());
    }

    #[test]
    fn repeats_bump_count_and_last_timestamp_and_wait_for_the_write_in_flight() {
        let mut agg = Aggregator::new(Duration::from_secs(600), 16);
        let t0 = Instant::now();
        let (key, first) = agg
            .record(record(&pod(), "m", ts(100, 0), t0), &source())
            .expect("created");
        let Write::Create { body, .. } = first else {
            panic!("expected a create")
        };
        let name = body["metadata"]["name"]
            .as_str()
            .expect("named")
            .to_string();
        // Two repeats while the create is in flight: nothing yet.
        assert_eq!(
            agg.record(
                record(&pod(), "m", ts(101, 0), t0 + Duration::from_secs(1)),
                &source()
            ),
            None
        );
        assert_eq!(
            agg.record(
                record(&pod(), "m", ts(102, 0), t0 + Duration::from_secs(2)),
                &source()
            ),
            None
        );
        // The create finishes: one patch with the count so far.
        let (_, next) = agg.finished(&key, Ok(())).expect("a patch follows");
        assert_eq!(
            next,
            Write::Bump {
                namespace: "default".into(),
                name: name.clone(),
                patch: json!({ "count": 3, "lastTimestamp": "1970-01-01T00:01:42Z" }),
            }
        );
        assert_eq!(agg.finished(&key, Ok(())), None, "nothing more to write");
        // A later repeat patches at once.
        let (_, later) = agg
            .record(
                record(&pod(), "m", ts(103, 0), t0 + Duration::from_secs(3)),
                &source(),
            )
            .expect("patched at once");
        assert!(matches!(later, Write::Bump { ref patch, .. } if patch["count"] == 4));
        // The patched Event was deleted meanwhile: it is created again with its count.
        let (_, recreate) = agg
            .finished(
                &key,
                Err(ApiError::NotFound {
                    kind: "Event".into(),
                    namespace: "default".into(),
                    name,
                }),
            )
            .expect("re-created");
        let Write::Create { body, .. } = recreate else {
            panic!("expected a create")
        };
        assert_eq!(body["count"], 4);
        assert_eq!(body["firstTimestamp"], "1970-01-01T00:01:40Z");
        assert_eq!(body["lastTimestamp"], "1970-01-01T00:01:43Z");
    }

    #[test]
    fn other_messages_objects_and_old_repeats_are_new_events() {
        let mut agg = Aggregator::new(Duration::from_secs(60), 16);
        let t0 = Instant::now();
        let (key, _) = agg
            .record(record(&pod(), "m", ts(100, 0), t0), &source())
            .expect("created");
        agg.finished(&key, Ok(()));
        let other_message = agg.record(record(&pod(), "other", ts(100, 1), t0), &source());
        assert!(matches!(other_message, Some((_, Write::Create { .. }))));
        let mut other_pod = pod();
        other_pod["metadata"]["uid"] = json!("u2");
        let recreated_pod = agg.record(record(&other_pod, "m", ts(100, 2), t0), &source());
        assert!(matches!(recreated_pod, Some((_, Write::Create { .. }))));
        // A new resourceVersion of the same object is still a repeat.
        let mut newer = pod();
        newer["metadata"]["resourceVersion"] = json!("43");
        let repeat = agg.record(record(&newer, "m", ts(101, 0), t0), &source());
        assert!(matches!(repeat, Some((_, Write::Bump { .. }))));
        let (key, _) = repeat.expect("checked above");
        agg.finished(&key, Ok(()));
        // Past the window: a new Event.
        let late = agg.record(
            record(&pod(), "m", ts(200, 0), t0 + Duration::from_secs(61)),
            &source(),
        );
        assert!(matches!(late, Some((_, Write::Create { .. }))));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut agg = Aggregator::new(Duration::from_secs(600), 8);
        let t0 = Instant::now();
        for i in 0..100 {
            let mut p = pod();
            p["metadata"]["name"] = json!(format!("p{i}"));
            let (key, _) = agg
                .record(
                    record(&p, "m", ts(100, i), t0 + Duration::from_millis(i as u64)),
                    &source(),
                )
                .expect("created");
            agg.finished(&key, Ok(()));
            assert!(agg.entries.len() <= 8, "{} entries", agg.entries.len());
        }
    }

    #[tokio::test]
    async fn recording_never_blocks_and_counts_what_it_drops() {
        // Nothing listens: writes fail in the background; the caller never waits.
        let client = Client::connect(&["127.0.0.1:1"]).expect("valid address");
        let recorder = EventRecorder::with_options(
            client,
            "default-scheduler",
            "h",
            EventRecorderOptions {
                queue: 2,
                max_in_flight: 1,
                ..EventRecorderOptions::default()
            },
        );
        let started = Instant::now();
        for i in 0..50 {
            recorder.event(&pod(), "Normal", "Scheduled", format!("message {i}"));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(recorder.dropped() > 0, "a queue of 2 cannot hold 50 events");
    }
}

//! The shared informer: one kind's objects kept in memory, fed by a list then a watch from the
//! list's revision, and shared by every part of a process that reads that kind.
//!
//! - **Cache**: `Arc<Value>` per object, keyed by (namespace, name) (namespace `""` for
//!   cluster-scoped kinds). Reads never touch the network.
//! - **Indexes**: named functions from an object to the values it is filed under (`spec.nodeName`,
//!   an owner's uid, the namespace...); [`Informer::by_index`] answers the objects filed under
//!   one value.
//! - **Subscribers**: every change applied to the cache is sent, in revision order, to each
//!   subscriber after the cache holds it, so a subscriber that reads the cache on a change sees
//!   at least that change.
//! - **Relist**: when the watch answers `Expired` (its revision was compacted) or ends with a
//!   final error, the informer lists again. The difference between the old cache and the new
//!   list goes to the subscribers as `Added`/`Modified`/`Deleted`, followed by
//!   [`Change::Relisted`], so a subscriber may also simply re-check everything. The first list
//!   is delivered the same way (every object `Added`, then `Relisted`).
//!
//! Usage: `subscribe()` first, then `wait_synced()`, then read `list()` and handle the changes
//! received from then on (a change already in the list may also arrive on the channel: handle
//! changes idempotently).
//!
//! While no server answers the informer keeps retrying (the watch resumes by itself, a failed
//! list is retried with a back-off); the cache keeps its last contents meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use corral_api::ApiError;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ListOptions};
use crate::watch::{EventType, WatchEvent};

/// How often the informer asks its watch for a bookmark (keeps [`Informer::revision`] current
/// on quiet kinds, and a resume close to now).
const BOOKMARK_SECONDS: u32 = 10;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// What an index files an object under.
pub type IndexFn = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// A change to the cache, as subscribers receive it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(Arc<Value>),
    Modified {
        old: Arc<Value>,
        new: Arc<Value>,
    },
    /// The object as last seen (the watch's final state of it).
    Deleted(Arc<Value>),
    /// The informer listed again (after the changes the new list made): re-check everything.
    Relisted,
}

/// The (namespace, name) an object is cached under.
pub type ObjectKey = (String, String);

fn key_of(obj: &Value) -> ObjectKey {
    (
        corral_api::object::namespace(obj).to_string(),
        corral_api::object::name(obj).to_string(),
    )
}

fn resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// The cache and its indexes: pure, no I/O. The informer's task feeds it lists and watch events
/// and forwards the changes it answers.
pub(crate) struct Cache {
    objects: HashMap<ObjectKey, Arc<Value>>,
    indexers: Vec<(String, IndexFn)>,
    /// index name → indexed value → keys filed under it.
    indexes: HashMap<String, HashMap<String, HashSet<ObjectKey>>>,
    revision: u64,
}

impl Cache {
    pub(crate) fn new(indexers: Vec<(String, IndexFn)>) -> Self {
        let indexes = indexers
            .iter()
            .map(|(name, _)| (name.clone(), HashMap::new()))
            .collect();
        Self {
            objects: HashMap::new(),
            indexers,
            indexes,
            revision: 0,
        }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object, sorted by (namespace, name).
    pub(crate) fn list(&self) -> Vec<Arc<Value>> {
        let mut keys: Vec<&ObjectKey> = self.objects.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// The objects an index files under `value`, sorted by (namespace, name). An unknown index
    /// answers nothing.
    pub(crate) fn by_index(&self, index: &str, value: &str) -> Vec<Arc<Value>> {
        let Some(keys) = self.indexes.get(index).and_then(|i| i.get(value)) else {
            return Vec::new();
        };
        let mut keys: Vec<&ObjectKey> = keys.iter().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }

    fn file(&mut self, key: &ObjectKey, obj: &Value) {
        for (name, f) in &self.indexers {
            let Some(index) = self.indexes.get_mut(name) else {
                continue;
            };
            for value in f(obj) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
    }

    fn unfile(&mut self, key: &ObjectKey, obj: &Value) {
        for (name, f) in &self.indexers {
            let Some(index) = self.indexes.get_mut(name) else {
                continue;
            };
            for value in f(obj) {
                if let Some(keys) = index.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }

    /// Stores the object; answers the one it replaced.
    fn insert(&mut self, obj: Arc<Value>) -> Option<Arc<Value>> {
        let key = key_of(&obj);
        let old = self.objects.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.unfile(&key, old);
        }
        self.file(&key, &obj);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        let old = self.objects.remove(key)?;
        self.unfile(key, &old);
        Some(old)
    }

    /// Replaces the contents with a fresh list read at `revision`; answers the differences
    /// (objects whose resourceVersion is unchanged are not reported), then `Relisted`.
    pub(crate) fn replace(&mut self, items: Vec<Value>, revision: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut seen = HashSet::with_capacity(items.len());
        for item in items {
            let key = key_of(&item);
            seen.insert(key.clone());
            match self.objects.get(&key) {
                Some(old)
                    if resource_version(old).is_some()
                        && resource_version(old) == resource_version(&item) =>
                {
                    continue;
                }
                _ => {}
            }
            let new = Arc::new(item);
            match self.insert(new.clone()) {
                Some(old) => changes.push(Change::Modified { old, new }),
                None => changes.push(Change::Added(new)),
            }
        }
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        let mut gone: Vec<Arc<Value>> = gone.iter().filter_map(|k| self.remove(k)).collect();
        gone.sort_by_key(|o| key_of(o));
        changes.extend(gone.into_iter().map(Change::Deleted));
        self.revision = revision;
        changes.push(Change::Relisted);
        changes
    }

    /// Applies one watch event; answers the change it made (none for a bookmark, a repeat of
    /// the version already held, or the deletion of an object not held).
    pub(crate) fn apply(&mut self, event: WatchEvent) -> Option<Change> {
        self.revision = self.revision.max(event.revision);
        match event.r#type {
            EventType::Bookmark => None,
            EventType::Added | EventType::Modified => {
                if !event.object.is_object() {
                    tracing::warn!(
                        revision = event.revision,
                        "ignoring a watch event without an object"
                    );
                    return None;
                }
                let key = key_of(&event.object);
                if let Some(old) = self.objects.get(&key)
                    && resource_version(old).is_some()
                    && resource_version(old) == resource_version(&event.object)
                {
                    return None;
                }
                let new = Arc::new(event.object);
                Some(match self.insert(new.clone()) {
                    Some(old) => Change::Modified { old, new },
                    None => Change::Added(new),
                })
            }
            EventType::Deleted => {
                let key = key_of(&event.object);
                let old = self.remove(&key)?;
                Some(Change::Deleted(if event.object.is_object() {
                    Arc::new(event.object)
                } else {
                    old
                }))
            }
        }
    }
}

/// Configures an [`Informer`]; [`InformerBuilder::start`] starts it.
pub struct InformerBuilder {
    client: Client,
    kind: String,
    namespace: Option<String>,
    options: ListOptions,
    indexers: Vec<(String, IndexFn)>,
}

impl InformerBuilder {
    /// Only objects of this namespace (default: every namespace).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects matching this label selector (`app=web,tier!=db`).
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.options.label_selector = selector.into();
        self
    }

    /// Only objects matching this field selector (`spec.nodeName=n1`).
    pub fn field_selector(mut self, selector: impl Into<String>) -> Self {
        self.options.field_selector = selector.into();
        self
    }

    /// Adds an index: `f` answers the values an object is filed under (none, one or several).
    /// A second index of the same name replaces the first.
    pub fn index<F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&Value) -> Vec<String> + Send + Sync + 'static,
    {
        let name = name.into();
        self.indexers.retain(|(n, _)| *n != name);
        self.indexers.push((name, Arc::new(f)));
        self
    }

    /// Starts listing and watching in a task of the current Tokio runtime; it stops when
    /// `cancel` is cancelled. Outside a runtime the informer stays empty and says so in the log.
    pub fn start(self, cancel: CancellationToken) -> Informer {
        let (synced, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            kind: self.kind.clone(),
            state: RwLock::new(State {
                cache: Cache::new(self.indexers),
                subscribers: Vec::new(),
            }),
            synced,
            cancel: cancel.clone(),
        });
        let informer = Informer {
            shared: shared.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = Task {
                    shared,
                    client: self.client,
                    namespace: self.namespace,
                    options: self.options,
                    cancel,
                };
                runtime.spawn(task.run());
            }
            Err(_) => {
                tracing::error!(kind = %self.kind, "an informer must be started inside a Tokio runtime; it stays empty");
                cancel.cancel();
            }
        }
        informer
    }
}

struct State {
    cache: Cache,
    subscribers: Vec<UnboundedSender<Change>>,
}

struct Shared {
    kind: String,
    state: RwLock<State>,
    synced: watch::Sender<bool>,
    cancel: CancellationToken,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends under the write lock, so subscribers get changes in the order the cache took them
    /// and a new subscriber never misses a change its first read of the cache did not include.
    fn publish(state: &mut State, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        state.subscribers.retain(|s| !s.is_closed());
        for change in changes {
            for s in &state.subscribers {
                let _ = s.send(change.clone());
            }
        }
    }
}

/// A shared, cached view of one kind. Cheap to clone; every clone reads the same cache.
#[derive(Clone)]
pub struct Informer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Informer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.read();
        f.debug_struct("Informer")
            .field("kind", &self.shared.kind)
            .field("objects", &state.cache.len())
            .field("revision", &state.cache.revision())
            .field("synced", &self.has_synced())
            .finish()
    }
}

impl Informer {
    /// An informer for `kind` (`Pod`, `Node`...) over `client`; configure, then `start`.
    pub fn builder(client: Client, kind: &str) -> InformerBuilder {
        InformerBuilder {
            client,
            kind: kind.to_string(),
            namespace: None,
            options: ListOptions::default(),
            indexers: Vec::new(),
        }
    }

    pub fn kind(&self) -> &str {
        &self.shared.kind
    }

    /// Whether the first list has been loaded.
    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Waits until the first list is loaded, or the informer is stopped.
    pub async fn wait_synced(&self) {
        let mut synced = self.shared.synced.subscribe();
        tokio::select! {
            _ = synced.wait_for(|s| *s) => {}
            _ = self.shared.cancel.cancelled() => {}
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.shared.read().cache.get(namespace, name)
    }

    /// Every cached object, sorted by (namespace, name).
    pub fn list(&self) -> Vec<Arc<Value>> {
        self.shared.read().cache.list()
    }

    /// The cached objects an index files under `value`, sorted by (namespace, name).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<Value>> {
        self.shared.read().cache.by_index(index, value)
    }

    /// The revision the cache reflects: the list's, then the last event's or bookmark's.
    pub fn revision(&self) -> u64 {
        self.shared.read().cache.revision()
    }

    /// Every change from now on, in order (see the module doc for the usual pattern). Dropping
    /// the receiver unsubscribes.
    pub fn subscribe(&self) -> UnboundedReceiver<Change> {
        let (tx, rx) = unbounded_channel();
        self.shared.write().subscribers.push(tx);
        rx
    }
}

struct Task {
    shared: Arc<Shared>,
    client: Client,
    namespace: Option<String>,
    options: ListOptions,
    cancel: CancellationToken,
}

impl Task {
    async fn run(self) {
        let cancel = self.cancel.clone();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.list_and_watch() => {}
        }
        // Subscribers see their channel close.
        self.shared.write().subscribers.clear();
    }

    async fn list_and_watch(&self) {
        let kind = self.shared.kind.as_str();
        let mut retry = FIRST_RETRY;
        loop {
            let (list, mut stream) = match self
                .client
                .list_then_watch(
                    kind,
                    self.namespace.as_deref(),
                    &self.options,
                    BOOKMARK_SECONDS,
                )
                .await
            {
                Ok(started) => started,
                Err(e) => {
                    tracing::warn!(kind, error = %e, "informer: list failed; retrying in {retry:?}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LONGEST_RETRY);
                    continue;
                }
            };
            tracing::debug!(
                kind,
                objects = list.items.len(),
                revision = list.revision,
                "informer: listed"
            );
            {
                let mut state = self.shared.write();
                let changes = state.cache.replace(list.items, list.revision);
                Shared::publish(&mut state, changes);
            }
            self.shared.synced.send_replace(true);
            loop {
                match stream.next().await {
                    Some(Ok(event)) => {
                        retry = FIRST_RETRY;
                        let mut state = self.shared.write();
                        if let Some(change) = state.cache.apply(event) {
                            Shared::publish(&mut state, vec![change]);
                        }
                    }
                    // The watcher reopens by itself through the next server.
                    Some(Err(ApiError::Unavailable { message, .. })) => {
                        tracing::debug!(kind, %message, "informer: watch interrupted; resuming");
                    }
                    Some(Err(e @ ApiError::Expired { .. })) => {
                        tracing::info!(kind, error = %e, "informer: relisting");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(kind, error = %e, "informer: watch failed; relisting in {retry:?}");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(LONGEST_RETRY);
                        break;
                    }
                    None => {
                        tracing::debug!(kind, "informer: watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }
}

/// An index function: the pod's `spec.nodeName`, when set.
pub fn index_by_node_name(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(|n| vec![n.to_string()])
        .unwrap_or_default()
}

/// An index function: the uid of every owner reference.
pub fn index_by_owner_uid(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// An index function: the namespace (nothing for cluster-scoped objects).
pub fn index_by_namespace(obj: &Value) -> Vec<String> {
    let ns = corral_api::object::namespace(obj);
    if ns.is_empty() {
        Vec::new()
    } else {
        vec![ns.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, name: &str, rv: u64, node: &str) -> Value {
        json!({
            "kind": "Pod",
            "metadata": {
                "namespace": ns, "name": name, "resourceVersion": rv.to_string(),
                "ownerReferences": [{ "uid": format!("rs-{}", name.split('-').next().unwrap_or_default()) }],
            },
            "spec": { "nodeName": node },
        })
    }

    fn event(r#type: EventType, object: Value, revision: u64) -> WatchEvent {
        WatchEvent {
            r#type,
            object,
            revision,
        }
    }

    fn cache() -> Cache {
        Cache::new(vec![
            ("node".to_string(), Arc::new(index_by_node_name) as IndexFn),
            ("owner".to_string(), Arc::new(index_by_owner_uid) as IndexFn),
            (
                "namespace".to_string(),
                Arc::new(index_by_namespace) as IndexFn,
            ),
        ])
    }

    fn names(objs: &[Arc<Value>]) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    corral_api::object::namespace(o),
                    corral_api::object::name(o)
                )
            })
            .collect()
    }

    fn describe(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Added(o) => format!("added {}", corral_api::object::name(o)),
                Change::Modified { old, new } => format!(
                    "modified {} {}->{}",
                    corral_api::object::name(new),
                    resource_version(old).unwrap_or_default(),
                    resource_version(new).unwrap_or_default()
                ),
                Change::Deleted(o) => format!("deleted {}", corral_api::object::name(o)),
                Change::Relisted => "relisted".to_string(),
            })
            .collect()
    }

    #[test]
    fn the_first_list_adds_everything_then_says_relisted() {
        let mut c = cache();
        let changes = c.replace(
            vec![pod("b", "web-1", 3, "n1"), pod("a", "web-0", 2, "")],
            10,
        );
        assert_eq!(
            describe(&changes),
            ["added web-1", "added web-0", "relisted"]
        );
        assert_eq!(c.revision(), 10);
        assert_eq!(names(&c.list()), ["a/web-0", "b/web-1"], "sorted");
        assert!(c.get("a", "web-0").is_some());
        assert!(c.get("b", "web-0").is_none());
    }

    #[test]
    fn watch_events_update_cache_indexes_and_revision() {
        let mut c = cache();
        c.replace(vec![pod("ns", "web-0", 2, "")], 5);
        assert!(c.by_index("node", "n1").is_empty());

        let added = c.apply(event(EventType::Added, pod("ns", "db-0", 6, "n2"), 6));
        assert_eq!(describe(&[added.expect("a change")]), ["added db-0"]);
        let bound = c.apply(event(EventType::Modified, pod("ns", "web-0", 7, "n1"), 7));
        assert_eq!(
            describe(&[bound.expect("a change")]),
            ["modified web-0 2->7"]
        );
        assert_eq!(names(&c.by_index("node", "n1")), ["ns/web-0"]);
        assert_eq!(names(&c.by_index("node", "n2")), ["ns/db-0"]);
        assert_eq!(names(&c.by_index("owner", "rs-web")), ["ns/web-0"]);
        assert_eq!(
            names(&c.by_index("namespace", "ns")),
            ["ns/db-0", "ns/web-0"]
        );

        // Moving to another node refiles it; the old value's entry disappears.
        c.apply(event(EventType::Modified, pod("ns", "web-0", 8, "n2"), 8));
        assert!(c.by_index("node", "n1").is_empty());
        assert_eq!(names(&c.by_index("node", "n2")), ["ns/db-0", "ns/web-0"]);

        let gone = c.apply(event(EventType::Deleted, pod("ns", "db-0", 9, "n2"), 9));
        assert_eq!(describe(&[gone.expect("a change")]), ["deleted db-0"]);
        assert_eq!(names(&c.by_index("node", "n2")), ["ns/web-0"]);
        assert!(c.by_index("owner", "rs-db").is_empty());
        assert!(c.by_index("no-such-index", "x").is_empty());

        assert_eq!(c.apply(event(EventType::Bookmark, Value::Null, 20)), None);
        assert_eq!(c.revision(), 20);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn repeats_and_unknown_deletions_change_nothing() {
        let mut c = cache();
        c.replace(vec![pod("ns", "a", 2, "")], 2);
        assert_eq!(
            c.apply(event(EventType::Modified, pod("ns", "a", 2, ""), 3)),
            None
        );
        assert_eq!(
            c.apply(event(EventType::Deleted, pod("ns", "zz", 4, ""), 4)),
            None
        );
        assert_eq!(
            c.apply(event(EventType::Added, json!("not an object"), 5)),
            None
        );
        assert_eq!(c.revision(), 5);
        // An Added for an object already held is a modification.
        let again = c.apply(event(EventType::Added, pod("ns", "a", 6, ""), 6));
        assert_eq!(describe(&[again.expect("a change")]), ["modified a 2->6"]);
    }

    #[test]
    fn a_relist_reports_only_the_differences() {
        let mut c = cache();
        c.replace(
            vec![
                pod("ns", "keep", 2, "n1"),
                pod("ns", "change", 3, "n1"),
                pod("ns", "drop", 4, "n1"),
            ],
            4,
        );
        let changes = c.replace(
            vec![
                pod("ns", "keep", 2, "n1"),
                pod("ns", "change", 9, "n2"),
                pod("ns", "new", 8, ""),
            ],
            10,
        );
        assert_eq!(
            describe(&changes),
            [
                "modified change 3->9",
                "added new",
                "deleted drop",
                "relisted"
            ]
        );
        assert_eq!(names(&c.list()), ["ns/change", "ns/keep", "ns/new"]);
        assert_eq!(names(&c.by_index("node", "n1")), ["ns/keep"]);
        assert_eq!(names(&c.by_index("node", "n2")), ["ns/change"]);
        assert_eq!(c.revision(), 10);
    }

    #[test]
    fn cluster_scoped_objects_are_keyed_by_name_alone() {
        let mut c = cache();
        c.replace(
            vec![json!({"kind": "Node", "metadata": {"name": "n1", "resourceVersion": "1"}})],
            1,
        );
        assert!(c.get("", "n1").is_some());
        assert!(c.by_index("namespace", "").is_empty());
    }

    #[tokio::test]
    async fn subscribers_get_changes_in_order_and_unsubscribe_by_dropping() {
        let client = Client::connect(&["127.0.0.1:1"]).expect("valid address");
        let cancel = CancellationToken::new();
        let informer = Informer::builder(client, "Pod")
            .index("node", index_by_node_name)
            .start(cancel.clone());
        let mut rx = informer.subscribe();
        let dropped = informer.subscribe();
        drop(dropped);
        {
            // Feed the cache directly, as the task does.
            let mut state = informer.shared.write();
            let changes = state.cache.replace(vec![pod("ns", "a", 2, "n1")], 2);
            Shared::publish(&mut state, changes);
            let change = state
                .cache
                .apply(event(EventType::Deleted, pod("ns", "a", 3, "n1"), 3));
            Shared::publish(&mut state, change.into_iter().collect());
            assert_eq!(state.subscribers.len(), 1, "the dropped receiver is gone");
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.expect("three changes"));
        }
        assert_eq!(describe(&got), ["added a", "relisted", "deleted a"]);
        assert!(informer.get("ns", "a").is_none());
        assert_eq!(informer.revision(), 3);

        // Stopping ends wait_synced (never synced: nothing listens at the address) and closes
        // the subscribers' channels.
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), informer.wait_synced())
            .await
            .expect("wait_synced returns once the informer stops");
        assert!(!informer.has_synced());
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(closed.is_ok(), "the channel closes when the informer stops");
    }
}

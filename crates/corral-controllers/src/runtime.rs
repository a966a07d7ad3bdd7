//! The control-loop runtime shared by the controllers, shaped like client-go's workqueue and
//! kube-runtime's controller:
//!
//! - [`WorkQueue`]: keys to reconcile. A key waiting is held once however often it is added; a
//!   key being processed is never handed out again before [`WorkQueue::done`] (a key added
//!   meanwhile is queued again then); [`WorkQueue::add_after`] delays a key;
//!   [`WorkQueue::requeue_rate_limited`] delays it with a per-key exponential back-off (5 ms
//!   doubling to 1000 s, client-go's default) that [`WorkQueue::forget`] resets.
//! - [`Expectations`]: per controller key, the creations and deletions a controller made and
//!   has not yet seen come back through its watch (Kubernetes' `ControllerExpectations`), so it
//!   does not act twice on a cache that lags its own writes. Expectations expire after 5
//!   minutes, so a lost event cannot stall a controller for ever.
//! - [`run_controller`]: the driver. Informer changes are mapped to keys ([`Source`]); after
//!   every informer has synced, N workers take keys from the queue and call `reconcile(key)`;
//!   an error requeues the key with back-off, [`Action::RequeueAfter`] requeues it after a
//!   delay, and every key is queued again periodically (the resync, 30 s by default) and after
//!   an informer relisted.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use corral_client::{Change, Informer};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first back-off of a key that failed (client-go's `DefaultControllerRateLimiter`).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(5);
/// The longest back-off of a key that keeps failing.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1000);
/// How long an expectation is waited for before the controller acts anyway (Kubernetes'
/// `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// WorkQueue
// ---------------------------------------------------------------------------------------------

/// A queue of keys to reconcile, shared by the event handlers that add keys and the workers
/// that take them. Cheap to clone: every clone is the same queue.
///
/// Keys are handed out in the order they became ready. Every key [`WorkQueue::next`] hands out
/// must be given back with [`WorkQueue::done`].
pub struct WorkQueue<K> {
    shared: Arc<QueueShared<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct QueueShared<K> {
    state: Mutex<QueueState<K>>,
    /// Woken on every change a waiting worker may care about (a key ready, an earlier delayed
    /// key, shutdown).
    changed: Notify,
    backoff_base: Duration,
    backoff_max: Duration,
}

struct QueueState<K> {
    /// Keys ready to hand out, in order.
    ready: VecDeque<K>,
    /// Keys that need processing: those in `ready`, and those being processed that were added
    /// again meanwhile (queued again by `done`).
    dirty: HashSet<K>,
    /// Keys handed out and not yet done.
    processing: HashSet<K>,
    /// Delayed keys by the time they become ready; `delayed_at` holds each key's time.
    delayed: BTreeSet<(Instant, K)>,
    delayed_at: HashMap<K, Instant>,
    /// Failures in a row per key, for the back-off.
    failures: HashMap<K, u32>,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Ord> QueueState<K> {
    /// Marks the key as needing processing; answers whether it went into `ready`.
    fn add(&mut self, key: K) -> bool {
        if self.shut_down || self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            return false;
        }
        self.ready.push_back(key);
        true
    }

    /// Moves the delayed keys whose time has come to `ready`.
    fn promote_due(&mut self, now: Instant) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.delayed.pop_first() {
                self.delayed_at.remove(&key);
                self.add(key);
            }
        }
    }

    fn pop(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// A queue with client-go's default back-off (5 ms doubling to 1000 s).
    pub fn new() -> Self {
        Self::with_backoff(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX)
    }

    /// A queue whose back-off starts at `base` and doubles up to `max`.
    pub fn with_backoff(base: Duration, max: Duration) -> Self {
        Self {
            shared: Arc::new(QueueShared {
                state: Mutex::new(QueueState {
                    ready: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: BTreeSet::new(),
                    delayed_at: HashMap::new(),
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                changed: Notify::new(),
                backoff_base: base,
                backoff_max: max.max(base),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState<K>> {
        lock(&self.shared.state)
    }

    /// Queues the key, unless it is waiting already. A key being processed is queued again when
    /// it is done. Ignored after [`WorkQueue::shutdown`].
    pub fn add(&self, key: K) {
        if self.state().add(key) {
            self.shared.changed.notify_waiters();
        }
    }

    /// Queues the key once `delay` has passed. A key already delayed keeps the earlier of its
    /// two times.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        {
            let mut st = self.state();
            if st.shut_down {
                return;
            }
            if let Some(&current) = st.delayed_at.get(&key) {
                if current <= at {
                    return;
                }
                st.delayed.remove(&(current, key.clone()));
            }
            st.delayed_at.insert(key.clone(), at);
            st.delayed.insert((at, key));
        }
        // Waiting workers recompute when to wake.
        self.shared.changed.notify_waiters();
    }

    /// Queues the key after its back-off: the base delay doubled for every failure in a row
    /// before this one, up to the maximum. Answers the delay chosen.
    pub fn requeue_rate_limited(&self, key: K) -> Duration {
        let delay = {
            let mut st = self.state();
            let failures = st.failures.entry(key.clone()).or_insert(0);
            let exp = *failures;
            *failures = failures.saturating_add(1);
            let factor = 2u32.saturating_pow(exp.min(31));
            self.shared
                .backoff_base
                .checked_mul(factor)
                .unwrap_or(self.shared.backoff_max)
                .min(self.shared.backoff_max)
        };
        self.add_after(key, delay);
        delay
    }

    /// Forgets the key's failures: its next back-off starts again at the base delay.
    pub fn forget(&self, key: &K) {
        self.state().failures.remove(key);
    }

    /// The key's failures in a row since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.state().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, as soon as one is ready; `None` once the queue is shut down.
    /// The caller owns the key until it calls [`WorkQueue::done`]: no one else gets it meanwhile.
    pub async fn next(&self) -> Option<K> {
        loop {
            // Registered before the state is read, so a change made after the read wakes us.
            let changed = self.shared.changed.notified();
            let wake_at = {
                let mut st = self.state();
                if st.shut_down {
                    return None;
                }
                st.promote_due(Instant::now());
                if let Some(key) = st.pop() {
                    return Some(key);
                }
                st.delayed.first().map(|(at, _)| *at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The next key if one is ready now (see [`WorkQueue::next`]).
    pub fn try_next(&self) -> Option<K> {
        let mut st = self.state();
        if st.shut_down {
            return None;
        }
        st.promote_due(Instant::now());
        st.pop()
    }

    /// Gives back a key [`WorkQueue::next`] handed out; when it was added again meanwhile it is
    /// queued again now.
    pub fn done(&self, key: &K) {
        let mut st = self.state();
        st.processing.remove(key);
        if st.dirty.contains(key) && !st.shut_down {
            st.ready.push_back(key.clone());
            drop(st);
            self.shared.changed.notify_waiters();
        }
    }

    /// Keys ready to hand out now (not counting delayed keys or keys being processed).
    pub fn len(&self) -> usize {
        self.state().ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the queue: [`WorkQueue::next`] answers `None` from now on (keys still waiting are
    /// dropped: a controller that stops, e.g. on losing leadership, must not act any more), and
    /// adds are ignored.
    pub fn shutdown(&self) {
        {
            let mut st = self.state();
            st.shut_down = true;
            st.ready.clear();
            st.dirty.clear();
            st.delayed.clear();
            st.delayed_at.clear();
        }
        self.shared.changed.notify_waiters();
    }

    pub fn is_shut_down(&self) -> bool {
        self.state().shut_down
    }
}

// ---------------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------------

/// Per controller key, the creations and deletions the controller is waiting to observe through
/// its watch (Kubernetes' `UIDTrackingControllerExpectations`). A controller sets them before
/// it writes, lowers them as its event handlers see the results, and acts on a key only when
/// [`Expectations::satisfied`]. Cheap to clone: every clone is the same record.
#[derive(Clone)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<String, Expectation>>>,
    timeout: Duration,
}

impl fmt::Debug for Expectations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expectations")
            .field("keys", &lock(&self.inner).len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Expectation {
    /// Creations still expected (may go below zero: more were seen than expected).
    add: i64,
    /// Deletions still expected.
    del: i64,
    /// The ids (pod uids) whose deletion is expected; each is counted once.
    deleting: HashSet<String>,
    set_at: Instant,
}

impl Expectation {
    fn fulfilled(&self) -> bool {
        self.add <= 0 && self.del <= 0
    }
}

impl Default for Expectations {
    fn default() -> Self {
        Self::new()
    }
}

impl Expectations {
    /// Expectations that expire after 5 minutes, as Kubernetes'.
    pub fn new() -> Self {
        Self::with_timeout(EXPECTATIONS_TIMEOUT)
    }

    /// Expectations that expire after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            timeout,
        }
    }

    fn set(&self, key: &str, add: i64, deleting: HashSet<String>) {
        let exp = Expectation {
            add,
            del: i64::try_from(deleting.len()).unwrap_or(i64::MAX),
            deleting,
            set_at: Instant::now(),
        };
        lock(&self.inner).insert(key.to_string(), exp);
    }

    /// The controller is about to create `n` objects for `key` (replaces what was expected).
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.set(key, i64::try_from(n).unwrap_or(i64::MAX), HashSet::new());
    }

    /// The controller is about to delete the objects with these ids for `key` (replaces what
    /// was expected).
    pub fn expect_deletions(&self, key: &str, ids: impl IntoIterator<Item = String>) {
        self.set(key, 0, ids.into_iter().collect());
    }

    /// A creation for `key` was seen (or will never come: a create that failed).
    pub fn creation_observed(&self, key: &str) {
        self.lower_creations(key, 1);
    }

    /// `n` creations expected for `key` will not come (creates skipped or failed).
    pub fn lower_creations(&self, key: &str, n: usize) {
        if let Some(exp) = lock(&self.inner).get_mut(key) {
            exp.add = exp.add.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The deletion of the object `id` for `key` was seen (or will never come). Counts only for
    /// an id that was expected, and only once.
    pub fn deletion_observed(&self, key: &str, id: &str) {
        if let Some(exp) = lock(&self.inner).get_mut(key)
            && exp.deleting.remove(id)
        {
            exp.del -= 1;
        }
    }

    /// Whether the controller may act on `key`: nothing is expected, everything expected was
    /// seen, or the expectations expired.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        match lock(&self.inner).get(key) {
            None => true,
            Some(exp) if exp.fulfilled() => true,
            Some(exp) if now.saturating_duration_since(exp.set_at) > self.timeout => {
                tracing::info!(
                    key,
                    creations = exp.add,
                    deletions = exp.del,
                    "expectations expired; acting anyway"
                );
                true
            }
            Some(_) => false,
        }
    }

    /// Creations and deletions still expected for `key` (`None`: no record).
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        lock(&self.inner).get(key).map(|e| (e.add, e.del))
    }

    /// Drops the record of `key` (its object is gone).
    pub fn delete(&self, key: &str) {
        lock(&self.inner).remove(key);
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// What a reconcile asks for next (kube-runtime's `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something changes (or the periodic resync).
    AwaitChange,
    /// Reconcile the key again after this long, even if nothing changes.
    RequeueAfter(Duration),
}

impl Action {
    pub fn await_change() -> Self {
        Action::AwaitChange
    }

    pub fn requeue(after: Duration) -> Self {
        Action::RequeueAfter(after)
    }
}

/// What maps one informer change to the keys it concerns (it may also note things, such as
/// expectations observed).
pub type KeyMapper<K> = Box<dyn FnMut(&Change) -> Vec<K> + Send>;

/// A stream of changes the controller reacts to, with the function that maps each change to
/// keys. [`Change::Relisted`] also queues every key (see [`run_controller`]).
pub struct Source<K> {
    changes: UnboundedReceiver<Change>,
    /// Waited on before any key is reconciled.
    informer: Option<Informer>,
    map: KeyMapper<K>,
}

impl<K> Source<K> {
    /// The changes of `informer` from now on (it subscribes at once, so nothing is missed
    /// between here and the controller's start).
    pub fn informer(
        informer: &Informer,
        map: impl FnMut(&Change) -> Vec<K> + Send + 'static,
    ) -> Self {
        Self {
            changes: informer.subscribe(),
            informer: Some(informer.clone()),
            map: Box::new(map),
        }
    }

    /// Changes from a channel (tests, or a source that is not an informer).
    pub fn channel(
        changes: UnboundedReceiver<Change>,
        map: impl FnMut(&Change) -> Vec<K> + Send + 'static,
    ) -> Self {
        Self {
            changes,
            informer: None,
            map: Box::new(map),
        }
    }
}

/// How [`run_controller`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerOptions {
    /// The controller's name, in the log.
    pub name: String,
    /// Keys reconciled at once (never two of the same key). Default 5, as Kubernetes'
    /// `--concurrent-*-syncs`.
    pub workers: usize,
    /// How often every key is queued again even when nothing changed. Default 30 s.
    pub resync: Duration,
    /// The back-off of a key whose reconcile failed: from `backoff_base` doubling to
    /// `backoff_max` (5 ms to 1000 s).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            name: "controller".into(),
            workers: 5,
            resync: Duration::from_secs(30),
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl ControllerOptions {
    /// A controller's name, workers and resync, with the default back-off.
    pub fn new(name: impl Into<String>, workers: usize, resync: Duration) -> Self {
        Self {
            name: name.into(),
            workers,
            resync,
            ..Self::default()
        }
    }
}

/// Runs a controller until `cancel` fires:
///
/// 1. waits until every source's informer has synced (no reconcile ever sees a cache that has
///    not been filled yet);
/// 2. queues every key of `all_keys()`, then keeps queueing the keys each source maps its
///    changes to, every key again after a source relisted, and every key each `resync`;
/// 3. runs `workers` workers: each takes a key, calls `reconcile(key)`, and on `Ok` forgets
///    the key's failures (requeueing it after the delay of [`Action::RequeueAfter`]); on `Err`
///    logs the error and requeues the key with back-off.
///
/// On cancellation the queue shuts down, a reconcile in progress is dropped at its next await
/// point, and the function returns once every task has stopped.
pub async fn run_controller<K, R, Fut, E>(
    sources: Vec<Source<K>>,
    all_keys: impl Fn() -> Vec<K> + Send + Sync + 'static,
    reconcile: R,
    opts: ControllerOptions,
    cancel: CancellationToken,
) where
    K: Clone + Eq + Hash + Ord + fmt::Debug + Send + 'static,
    R: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: fmt::Display,
{
    let name = opts.name.clone();
    let informers: Vec<Informer> = sources.iter().filter_map(|s| s.informer.clone()).collect();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { for i in &informers { i.wait_synced().await } } => {}
    }
    tracing::info!(controller = %name, workers = opts.workers, "caches synced; starting workers");

    let queue: WorkQueue<K> = WorkQueue::with_backoff(opts.backoff_base, opts.backoff_max);
    let all_keys = Arc::new(all_keys);
    let reconcile = Arc::new(reconcile);
    let mut tasks = JoinSet::new();

    for key in all_keys() {
        queue.add(key);
    }
    for mut source in sources {
        let (queue, all_keys, cancel) = (queue.clone(), Arc::clone(&all_keys), cancel.clone());
        tasks.spawn(async move {
            loop {
                let change = tokio::select! {
                    _ = cancel.cancelled() => break,
                    change = source.changes.recv() => match change {
                        Some(change) => change,
                        None => break,
                    },
                };
                for key in (source.map)(&change) {
                    queue.add(key);
                }
                if change == Change::Relisted {
                    for key in all_keys() {
                        queue.add(key);
                    }
                }
            }
        });
    }
    if !opts.resync.is_zero() {
        let (queue, all_keys, cancel) = (queue.clone(), Arc::clone(&all_keys), cancel.clone());
        let period = opts.resync;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        for key in all_keys() {
                            queue.add(key);
                        }
                    }
                }
            }
        });
    }
    for _ in 0..opts.workers.max(1) {
        let (queue, reconcile, cancel, name) = (
            queue.clone(),
            Arc::clone(&reconcile),
            cancel.clone(),
            name.clone(),
        );
        tasks.spawn(async move {
            while let Some(key) = queue.next().await {
                let result = tokio::select! {
                    _ = cancel.cancelled() => {
                        queue.done(&key);
                        break;
                    }
                    result = reconcile(key.clone()) => result,
                };
                match result {
                    Ok(action) => {
                        queue.forget(&key);
                        if let Action::RequeueAfter(delay) = action {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(e) => {
                        let delay = queue.requeue_rate_limited(key.clone());
                        tracing::warn!(controller = %name, ?key, error = %e, ?delay, "reconcile failed; requeued");
                    }
                }
                queue.done(&key);
            }
        });
    }

    cancel.cancelled().await;
    queue.shutdown();
    while tasks.join_next().await.is_some() {}
    tracing::info!(controller = %name, "stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn next_within<K: Clone + Eq + Hash + Ord>(q: &WorkQueue<K>) -> K {
        tokio::time::timeout(WAIT, q.next())
            .await
            .expect("a key within the deadline")
            .expect("the queue is running")
    }

    #[test]
    fn a_key_added_twice_while_waiting_is_handed_out_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_next(), Some("a"));
        assert_eq!(q.try_next(), Some("b"));
        assert_eq!(q.try_next(), None);
    }

    #[test]
    fn a_key_being_processed_is_not_handed_out_again_until_done() {
        let q = WorkQueue::new();
        q.add("a");
        let key = q.try_next().expect("a");
        q.add("a");
        q.add("a");
        assert_eq!(q.try_next(), None, "a is being processed");
        q.add("b");
        assert_eq!(q.try_next(), Some("b"), "other keys go on");
        q.done(&key);
        assert_eq!(
            q.try_next(),
            Some("a"),
            "re-added while processing: queued once on done"
        );
        q.done(&"a");
        q.done(&"b");
        assert_eq!(q.try_next(), None);
    }

    #[test]
    fn a_key_done_without_being_added_again_is_not_requeued() {
        let q = WorkQueue::new();
        q.add(1);
        let k = q.try_next().expect("1");
        q.done(&k);
        assert!(q.is_empty());
        assert_eq!(q.try_next(), None);
    }

    #[test]
    fn back_off_doubles_per_failure_up_to_the_maximum_and_forget_resets_it() {
        let q = WorkQueue::new();
        let delays: Vec<Duration> = (0..20).map(|_| q.requeue_rate_limited("k")).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert_eq!(delays[2], Duration::from_millis(20));
        assert_eq!(delays[10], Duration::from_millis(5 * 1024));
        assert_eq!(
            delays[18],
            Duration::from_secs(1000),
            "5 ms * 2^18 is capped"
        );
        assert_eq!(delays[19], Duration::from_secs(1000));
        assert_eq!(q.num_requeues(&"k"), 20);
        assert_eq!(
            q.requeue_rate_limited("other"),
            Duration::from_millis(5),
            "per key"
        );
        q.forget(&"k");
        assert_eq!(q.num_requeues(&"k"), 0);
        assert_eq!(q.requeue_rate_limited("k"), Duration::from_millis(5));
        // Many failures never overflow.
        for _ in 0..100 {
            q.requeue_rate_limited("k");
        }
        assert_eq!(q.requeue_rate_limited("k"), Duration::from_secs(1000));
    }

    #[tokio::test]
    async fn a_rate_limited_key_comes_back_after_its_back_off() {
        let q = WorkQueue::with_backoff(Duration::from_millis(20), Duration::from_secs(1));
        let started = Instant::now();
        q.requeue_rate_limited("k");
        assert_eq!(q.try_next(), None, "not before its back-off");
        assert_eq!(next_within(&q).await, "k");
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn add_after_delays_the_key_and_keeps_the_earlier_time() {
        let q = WorkQueue::new();
        let started = Instant::now();
        q.add_after("late", Duration::from_secs(3600));
        q.add_after("k", Duration::from_secs(3600));
        q.add_after("k", Duration::from_millis(30));
        q.add_after("k", Duration::from_secs(7200));
        assert_eq!(q.try_next(), None);
        assert_eq!(next_within(&q).await, "k");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(q.try_next(), None, "the other key is still an hour away");
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_a_key_added_later() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await })
        };
        tokio::task::yield_now().await;
        q.add(7);
        let got = tokio::time::timeout(WAIT, waiter)
            .await
            .expect("woken within the deadline")
            .expect("the task");
        assert_eq!(got, Some(7));
    }

    #[tokio::test]
    async fn shutdown_ends_every_waiting_worker_and_ignores_adds() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        q.shutdown();
        for w in waiters {
            let got = tokio::time::timeout(WAIT, w)
                .await
                .expect("ended within the deadline")
                .expect("the task");
            assert_eq!(got, None);
        }
        q.add(1);
        assert_eq!(q.try_next(), None);
        assert!(q.is_shut_down());
    }

    #[test]
    fn expectations_block_until_every_creation_and_deletion_is_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"), "no record: satisfied");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"), "more seen than expected is fine");

        e.expect_deletions("ns/rs", ["u1".to_string(), "u2".to_string()]);
        assert_eq!(e.pending("ns/rs"), Some((0, 2)));
        e.deletion_observed("ns/rs", "u1");
        e.deletion_observed("ns/rs", "u1");
        e.deletion_observed("ns/rs", "someone-else");
        assert!(
            !e.satisfied("ns/rs"),
            "a repeat or a stranger does not count"
        );
        assert_eq!(e.pending("ns/rs"), Some((0, 1)));
        e.deletion_observed("ns/rs", "u2");
        assert!(e.satisfied("ns/rs"));

        e.expect_creations("ns/other", 5);
        e.lower_creations("ns/other", 5);
        assert!(e.satisfied("ns/other"), "creations that will never come");
        e.expect_creations("ns/other", 1);
        e.delete("ns/other");
        assert!(e.satisfied("ns/other"));
        assert_eq!(e.pending("ns/other"), None);
    }

    #[test]
    fn expectations_expire_after_their_timeout() {
        let e = Expectations::new();
        e.expect_creations("k", 3);
        let now = Instant::now();
        assert!(!e.satisfied_at("k", now + Duration::from_secs(299)));
        assert!(e.satisfied_at("k", now + Duration::from_secs(301)));
    }

    /// A reconcile that records what it saw: per-key calls, and any overlap of one key.
    #[derive(Default)]
    struct Probe {
        in_flight: Mutex<HashSet<String>>,
        calls: Mutex<HashMap<String, usize>>,
        overlaps: AtomicUsize,
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !check() {
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_driver_retries_failures_honours_requeue_and_never_overlaps_a_key() {
        let probe = Arc::new(Probe::default());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let reconcile = {
            let probe = Arc::clone(&probe);
            move |key: String| {
                let probe = Arc::clone(&probe);
                async move {
                    if !lock(&probe.in_flight).insert(key.clone()) {
                        probe.overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let n = {
                        let mut calls = lock(&probe.calls);
                        let n = calls.entry(key.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    lock(&probe.in_flight).remove(&key);
                    match key.as_str() {
                        "flaky" if n <= 3 => Err(format!("failure {n}")),
                        "periodic" if n < 3 => Ok(Action::requeue(Duration::from_millis(10))),
                        _ => Ok(Action::await_change()),
                    }
                }
            }
        };
        let map = |change: &Change| match change {
            Change::Added(obj) => vec![obj["key"].as_str().unwrap_or_default().to_string()],
            _ => Vec::new(),
        };
        let opts = ControllerOptions {
            name: "test".into(),
            workers: 4,
            resync: Duration::ZERO,
            ..ControllerOptions::default()
        };
        let driver = tokio::spawn(run_controller(
            vec![Source::channel(rx, map)],
            || vec!["initial".to_string()],
            reconcile,
            opts,
            cancel.clone(),
        ));
        for key in ["flaky", "periodic", "busy"] {
            tx.send(Change::Added(Arc::new(serde_json::json!({"key": key}))))
                .expect("send");
        }
        for _ in 0..50 {
            tx.send(Change::Added(Arc::new(serde_json::json!({"key": "busy"}))))
                .expect("send");
        }
        let calls = |k: &str| lock(&probe.calls).get(k).copied().unwrap_or(0);
        eventually("every key is reconciled as asked", || {
            calls("initial") >= 1 && calls("flaky") == 4 && calls("periodic") == 3
        })
        .await;
        assert!(calls("busy") >= 1);
        assert_eq!(
            probe.overlaps.load(Ordering::SeqCst),
            0,
            "one key at a time"
        );

        // A relist queues every key again.
        tx.send(Change::Relisted).expect("send");
        eventually("the relist resyncs every key", || calls("initial") >= 2).await;

        cancel.cancel();
        tokio::time::timeout(WAIT, driver)
            .await
            .expect("the driver stops when cancelled")
            .expect("the driver task");
    }

    #[tokio::test]
    async fn the_driver_resyncs_every_key_periodically() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let reconcile = {
            let calls = Arc::clone(&calls);
            move |_key: u32| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(Action::await_change())
                }
            }
        };
        let opts = ControllerOptions {
            resync: Duration::from_millis(20),
            ..ControllerOptions::default()
        };
        let driver = tokio::spawn(run_controller(
            Vec::new(),
            || vec![1],
            reconcile,
            opts,
            cancel.clone(),
        ));
        eventually("three syncs of the one key", || {
            calls.load(Ordering::SeqCst) >= 3
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(WAIT, driver)
            .await
            .expect("the driver stops")
            .expect("the driver task");
    }
}

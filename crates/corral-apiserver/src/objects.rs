//! The API's verbs over the store, independent of gRPC: admission (defaults, validation, uid,
//! timestamps, generation, generateName, finalizers), optimistic concurrency, reads.
//!
//! Every write becomes one store transaction with a precondition on what admission read, so two
//! writers racing never overwrite each other: the loser sees a Conflict (or, for writes that did
//! not name a resourceVersion, admission runs again on the fresh object).

use std::time::Instant;

use corral_api::kinds::{KindInfo, kind_info};
use corral_api::object::{ObjectKey, key_of, list_prefix};
use corral_api::selector::{
    FieldSelector, LabelSelector, parse_field_selector, parse_label_selector,
};
use corral_api::service_ip::ServiceIpRange;
use corral_api::{ApiError, defaults, meta, storage, validation};
use corral_store::{Action, Failure, Op, Pre, Store, Txn, TxnResult};
use serde_json::{Value, json};

use crate::status::from_store;

mod bind;
mod cluster_ip;
pub use bind::MAX_BINDINGS;
use cluster_ip::{AfterFailure, IpChange};

/// How many times a write that named no resourceVersion is re-admitted after losing a race.
const MAX_RETRIES: usize = 16;

#[derive(Clone)]
pub struct Objects {
    store: Store,
    /// Where Service ClusterIPs come from (`--service-cluster-ip-range`).
    service_ip_range: ServiceIpRange,
    admission: corral_api::admission::AdmissionConfig,
}

/// Propagation of a delete to dependents (carried out by the garbage collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub grace_period_seconds: Option<i64>,
    pub resource_version: Option<u64>,
    pub uid: Option<String>,
}

/// Parses a request's object. An object over the store's limit is refused before anything else.
pub fn parse_json(text: &str) -> Result<Value, ApiError> {
    validation::check_size(text.len())?;
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the object is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    Ok(v)
}

pub fn kind_of(kind: &str) -> Result<&'static KindInfo, ApiError> {
    kind_info(kind).ok_or_else(|| ApiError::bad_request(format!("no kind {kind:?} is registered")))
}

fn key_for(info: &KindInfo, namespace: &str, name: &str) -> Result<ObjectKey, ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("a name is required"));
    }
    let namespace = if info.namespaced {
        if namespace.is_empty() {
            "default".to_string()
        } else {
            namespace.to_string()
        }
    } else {
        String::new()
    };
    Ok(ObjectKey {
        kind: info.kind.to_string(),
        namespace,
        name: name.to_string(),
    })
}

fn rv_of(obj: &Value) -> Result<Option<u64>, ApiError> {
    match obj.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| ApiError::Invalid {
            kind: str_at(obj, "/kind"),
            name: str_at(obj, "/metadata/name"),
            causes: vec![corral_api::Cause::new(
                "metadata.resourceVersion",
                format!("{s:?} is not a resource version"),
            )],
        }),
        Some(_) => Err(ApiError::bad_request(
            "metadata.resourceVersion must be a string",
        )),
    }
}

fn str_at(obj: &Value, ptr: &str) -> String {
    obj.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    let o = obj
        .as_object_mut()
        .expect("checked to be an object at parse time");
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("just made an object")
}

fn conflict(key: &ObjectKey, expected: u64, actual: u64) -> ApiError {
    ApiError::Conflict {
        kind: key.kind.clone(),
        name: key.name.clone(),
        field: "metadata.resourceVersion".into(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

fn not_found(key: &ObjectKey) -> ApiError {
    ApiError::NotFound {
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

/// Strips what the object must not carry into the store before comparing two versions.
fn without_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

impl Objects {
    /// The verbs over `store`, with Service ClusterIPs from the default range (10.96.0.0/12).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            service_ip_range: ServiceIpRange::default(),
            admission: Default::default(),
        }
    }

    /// The same, allocating Service ClusterIPs from `range`.
    pub fn with_service_ip_range(mut self, range: ServiceIpRange) -> Self {
        self.service_ip_range = range;
        self
    }

    /// The range Service ClusterIPs come from.
    pub fn service_ip_range(&self) -> ServiceIpRange {
        self.service_ip_range
    }

    /// The same API with these pod admission settings.
    pub fn with_admission(mut self, admission: corral_api::admission::AdmissionConfig) -> Self {
        self.admission = admission;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn commit(&self, txn: Txn) -> Result<TxnResult, ApiError> {
        self.store.write(txn).await.map_err(from_store)
    }

    fn stored(&self, key: &ObjectKey) -> Result<Option<(u64, Value)>, ApiError> {
        let s = self
            .store
            .reader()
            .get(&key.storage_key())
            .map_err(ApiError::internal)?;
        match s {
            None => Ok(None),
            Some(s) => Ok(Some((
                s.revision,
                serde_json::from_str(&s.value).map_err(ApiError::internal)?,
            ))),
        }
    }

    async fn barrier(&self, stale_ok: bool) -> Result<(), ApiError> {
        if !stale_ok {
            self.store
                .linearizable_barrier()
                .await
                .map_err(from_store)?;
        }
        Ok(())
    }

    pub async fn create(&self, mut obj: Value) -> Result<Value, ApiError> {
        let kind = str_at(&obj, "/kind");
        let info = kind_of(&kind)?;
        defaults::apply_defaults(&mut obj);
        corral_api::admission::admit_new_pod_with(&mut obj, &self.admission);
        corral_api::admission::admit_new_storage_object(&mut obj);
        if info.kind == "PersistentVolumeClaim" && storage::claim_class_unset(&obj) {
            let default = self.default_storage_class()?;
            corral_api::admission::set_default_storage_class(&mut obj, default.as_deref());
        }
        if info.kind == "Namespace" {
            add_namespace_finalizer(&mut obj);
        }
        let name = str_at(&obj, "/metadata/name");
        let generate = str_at(&obj, "/metadata/generateName");
        if name.is_empty() && !generate.is_empty() {
            meta_mut(&mut obj).insert("name".into(), Value::String(meta::generate_name(&generate)));
        }
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), Value::String(meta::new_uid()));
            m.insert(
                "creationTimestamp".into(),
                Value::String(meta::now_rfc3339()),
            );
            m.insert("generation".into(), json!(1));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = Value::String(info.api_version.to_string());
        }
        validation::validate(&obj)?;
        let key = key_of(&obj)?;
        if info.namespaced {
            self.wait_namespace_open(&key.namespace).await?;
        }
        for _ in 0..MAX_RETRIES {
            let mut obj = obj.clone();
            let ips = if info.kind == "Service" {
                self.plan_cluster_ip(None, &mut obj).await?
            } else {
                IpChange::default()
            };
            let text = serde_json::to_string(&obj).map_err(ApiError::internal)?;
            validation::check_size(text.len())?;
            let mut ops = vec![Op {
                key: key.storage_key(),
                pre: vec![Pre::Absent],
                action: Action::Put(text),
            }];
            ops.extend(ips.ops(&obj)?);
            match self.commit(Txn::all(ops)).await? {
                TxnResult::Committed { results, .. } => return first_value(results),
                TxnResult::Failed {
                    op: 0,
                    failure: Failure::Exists { .. },
                    ..
                } => {
                    return Err(ApiError::AlreadyExists {
                        kind: key.kind.clone(),
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                    });
                }
                TxnResult::Failed { op, failure, .. } if op > 0 => {
                    match ips.after_failure(&obj, op, &failure) {
                        AfterFailure::Fail(e) => return Err(e),
                        // This server's view of the allocations was behind: catch up first.
                        AfterFailure::Retry => self.barrier(false).await?,
                    }
                }
                TxnResult::Failed { failure, .. } => {
                    return Err(ApiError::internal(format!("{failure:?}")));
                }
                TxnResult::Each { .. } => {
                    return Err(ApiError::internal("a single write came back as a batch"));
                }
            }
        }
        Err(ApiError::unavailable(
            format!(
                "no free ClusterIP could be claimed in {MAX_RETRIES} attempts (others took each \
                 one first); try again"
            ),
            None,
        ))
    }

    /// The namespace must exist (and not be terminating). A miss is checked again after a
    /// linearizable barrier (this server may lag the leader), and, for the built-in namespaces,
    /// for a few seconds more: a new cluster's leader creates them just after its election.
    async fn wait_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let first = self.check_namespace_open(ns);
        if !matches!(first, Err(ApiError::NotFound { .. })) {
            return first;
        }
        let built_in = crate::bootstrap::NAMESPACES.contains(&ns);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        loop {
            self.barrier(false).await?;
            let again = self.check_namespace_open(ns);
            if !built_in
                || !matches!(again, Err(ApiError::NotFound { .. }))
                || Instant::now() >= deadline
            {
                return again;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The cluster's default StorageClass (DefaultStorageClass admission), read from this
    /// server's state.
    fn default_storage_class(&self) -> Result<Option<String>, ApiError> {
        let classes = self.stored_list("StorageClass")?;
        Ok(storage::default_storage_class(&classes))
    }

    /// Every object of a cluster-wide kind, from this server's state.
    fn stored_list(&self, kind: &str) -> Result<Vec<Value>, ApiError> {
        let info = kind_of(kind)?;
        let (items, _) = self
            .store
            .reader()
            .list(&list_prefix(info, None))
            .map_err(ApiError::internal)?;
        items
            .iter()
            .map(|s| serde_json::from_str(&s.value).map_err(ApiError::internal))
            .collect()
    }

    /// The PersistentVolumeClaimResize admission: a claim's storage request grows only when its
    /// StorageClass allows volume expansion.
    fn check_claim_resize(&self, old: &Value, next: &Value) -> Result<(), ApiError> {
        let size = |v: &Value| storage::requested_storage(v).unwrap_or(0);
        if str_at(old, "/kind") != "PersistentVolumeClaim" || size(next) <= size(old) {
            return Ok(());
        }
        let class = storage::claim_class(next);
        let allowed = !class.is_empty()
            && class == storage::claim_class(old)
            && self
                .stored(&ObjectKey {
                    kind: "StorageClass".into(),
                    namespace: String::new(),
                    name: class.to_string(),
                })?
                .is_some_and(|(_, c)| c.get("allowVolumeExpansion") == Some(&Value::Bool(true)));
        if allowed {
            return Ok(());
        }
        Err(ApiError::Invalid {
            kind: "PersistentVolumeClaim".into(),
            name: str_at(next, "/metadata/name"),
            causes: vec![corral_api::Cause::new(
                "spec.resources.requests.storage",
                "Forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            )],
        })
    }

    fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let key = ObjectKey {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: ns.to_string(),
        };
        match self.stored(&key)? {
            None => Err(ApiError::NotFound {
                kind: "Namespace".into(),
                namespace: String::new(),
                name: ns.to_string(),
            }),
            Some((_, v)) if v.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::bad_request(format!(
                    "namespace {ns:?} is being terminated: nothing new can be created in it"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        stale_ok: bool,
    ) -> Result<Value, ApiError> {
        let info = kind_of(kind)?;
        let key = key_for(info, namespace, name)?;
        self.barrier(stale_ok).await?;
        self.stored(&key)?
            .map(|(_, v)| v)
            .ok_or_else(|| not_found(&key))
    }

    /// Objects of a kind (in one namespace, or all when `namespace` is empty) matching the
    /// selectors, and the revision they were read at.
    pub async fn list(
        &self,
        kind: &str,
        namespace: &str,
        labels: &str,
        fields: &str,
        stale_ok: bool,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let info = kind_of(kind)?;
        let labels = parse_label_selector(labels)?;
        let fields = parse_field_selector(fields)?;
        self.barrier(stale_ok).await?;
        let ns = if info.namespaced && !namespace.is_empty() {
            Some(namespace)
        } else {
            None
        };
        let (items, revision) = self
            .store
            .reader()
            .list(&list_prefix(info, ns))
            .map_err(ApiError::internal)?;
        let mut out = Vec::with_capacity(items.len());
        for s in items {
            let v: Value = serde_json::from_str(&s.value).map_err(ApiError::internal)?;
            if selected(&v, &labels, &fields) {
                out.push(v);
            }
        }
        Ok((out, revision))
    }

    /// Replaces an object (or its status). Without a resourceVersion the update applies to
    /// whatever is current; with one, it must still be current or the answer is Conflict.
    pub async fn update(&self, obj: Value, status_only: bool) -> Result<Value, ApiError> {
        let info = kind_of(&str_at(&obj, "/kind"))?;
        let key = key_for(
            info,
            &str_at(&obj, "/metadata/namespace"),
            &str_at(&obj, "/metadata/name"),
        )?;
        let wanted_rv = rv_of(&obj)?;
        self.guaranteed_update(&key, wanted_rv, |_old| Ok(obj.clone()), status_only)
            .await
    }

    /// RFC 7386 merge patch of the current object (or its status).
    pub async fn patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let info = kind_of(kind)?;
        let key = key_for(info, namespace, name)?;
        if !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let wanted_rv = rv_of(patch)?;
        self.guaranteed_update(
            &key,
            wanted_rv,
            |old| {
                let mut next = old.clone();
                json_patch::merge(&mut next, patch);
                Ok(next)
            },
            status_only,
        )
        .await
    }

    /// Reads the current object, builds the next one with `mutate`, admits it and writes it with
    /// a precondition on the revision read; re-reads and tries again when another write won.
    async fn guaranteed_update(
        &self,
        key: &ObjectKey,
        wanted_rv: Option<u64>,
        mutate: impl Fn(&Value) -> Result<Value, ApiError>,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        for _ in 0..MAX_RETRIES {
            let (rev, old) = self.stored(key)?.ok_or_else(|| not_found(key))?;
            if let Some(w) = wanted_rv
                && w != rev
            {
                return Err(conflict(key, w, rev));
            }
            let next = mutate(&old)?;
            let mut next = admit_update(&old, next, status_only)?;
            if without_rv(&next) == without_rv(&old) {
                return Ok(old);
            }
            if !status_only {
                self.check_claim_resize(&old, &next)?;
            }
            let finalizing = next.pointer("/metadata/deletionTimestamp").is_some()
                && next
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(|f| f.is_empty())
                && !has_namespace_finalizers(&next);
            let ips = if finalizing {
                self.release_on_delete(&old)?
            } else if key.kind == "Service" && !status_only {
                self.plan_cluster_ip(Some(&old), &mut next).await?
            } else {
                IpChange::default()
            };
            let action = if finalizing {
                Action::Delete
            } else {
                let text = serde_json::to_string(&next).map_err(ApiError::internal)?;
                validation::check_size(text.len())?;
                Action::Put(text)
            };
            let subject = if finalizing { &old } else { &next };
            if let Some(v) = self
                .write_at(key, rev, action, wanted_rv, &ips, subject)
                .await?
            {
                return Ok(v);
            }
        }
        Err(ApiError::Conflict {
            kind: key.kind.clone(),
            name: key.name.clone(),
            field: "metadata.resourceVersion".into(),
            expected: "a stable object".into(),
            actual: format!("changed {MAX_RETRIES} times while the update was admitted"),
        })
    }

    /// Writes `action` to `key` if it is still at revision `rev`, with the allocation records
    /// `ips` claims or releases for the Service `subject`. `Ok(None)`: another write came first
    /// and the caller named no resourceVersion (or a chosen ClusterIP was taken meanwhile), so it
    /// should read again and retry.
    async fn write_at(
        &self,
        key: &ObjectKey,
        rev: u64,
        action: Action,
        wanted_rv: Option<u64>,
        ips: &IpChange,
        subject: &Value,
    ) -> Result<Option<Value>, ApiError> {
        let mut ops = vec![Op {
            key: key.storage_key(),
            pre: vec![Pre::Revision(rev)],
            action,
        }];
        ops.extend(ips.ops(subject)?);
        match self.commit(Txn::all(ops)).await? {
            TxnResult::Committed { results, .. } => first_value(results).map(Some),
            TxnResult::Failed { op, failure, .. } if op > 0 => {
                match ips.after_failure(subject, op, &failure) {
                    AfterFailure::Fail(e) => Err(e),
                    AfterFailure::Retry => {
                        self.barrier(false).await?;
                        Ok(None)
                    }
                }
            }
            TxnResult::Failed {
                failure: Failure::Revision { actual, .. },
                ..
            } => match wanted_rv {
                Some(w) => Err(conflict(key, w, actual)),
                None => Ok(None),
            },
            TxnResult::Failed {
                failure: Failure::Absent { .. },
                ..
            } => Err(not_found(key)),
            TxnResult::Failed { failure, .. } => Err(ApiError::internal(format!("{failure:?}"))),
            TxnResult::Each { .. } => {
                Err(ApiError::internal("a single write came back as a batch"))
            }
        }
    }

    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Value, ApiError> {
        let info = kind_of(kind)?;
        let key = key_for(info, namespace, name)?;
        for _ in 0..MAX_RETRIES {
            let (rev, old) = self.stored(&key)?.ok_or_else(|| not_found(&key))?;
            if let Some(w) = opts.resource_version
                && w != rev
            {
                return Err(conflict(&key, w, rev));
            }
            if let Some(uid) = &opts.uid {
                let actual = str_at(&old, "/metadata/uid");
                if &actual != uid {
                    return Err(ApiError::Conflict {
                        kind: key.kind.clone(),
                        name: key.name.clone(),
                        field: "metadata.uid".into(),
                        expected: uid.clone(),
                        actual,
                    });
                }
            }
            let mut next = old.clone();
            let mut finalizers: Vec<String> = next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            match opts.propagation {
                Some(Propagation::Orphan) if !finalizers.iter().any(|f| f == "orphan") => {
                    finalizers.push("orphan".into())
                }
                Some(Propagation::Foreground)
                    if !finalizers.iter().any(|f| f == "foregroundDeletion") =>
                {
                    finalizers.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let graceful = graceful_seconds(info, &old, opts.grace_period_seconds);
            let namespace_held = has_namespace_finalizers(&old);
            let mut ips = IpChange::default();
            let action = if finalizers.is_empty() && graceful.is_none() && !namespace_held {
                ips = self.release_on_delete(&old)?;
                Action::Delete
            } else {
                let m = meta_mut(&mut next);
                if !m.contains_key("deletionTimestamp") {
                    m.insert(
                        "deletionTimestamp".into(),
                        Value::String(meta::now_rfc3339()),
                    );
                }
                m.insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(graceful.unwrap_or(0)),
                );
                if !finalizers.is_empty() {
                    m.insert("finalizers".into(), json!(finalizers));
                }
                if info.kind == "Namespace" {
                    next["status"]["phase"] = Value::String("Terminating".into());
                }
                if without_rv(&next) == without_rv(&old) {
                    return Ok(old);
                }
                Action::Put(serde_json::to_string(&next).map_err(ApiError::internal)?)
            };
            if let Some(v) = self
                .write_at(&key, rev, action, opts.resource_version, &ips, &old)
                .await?
            {
                return Ok(v);
            }
        }
        Err(ApiError::unavailable(
            "the object kept changing while it was being deleted",
            None,
        ))
    }

    /// Creates `obj` unless an object of its name exists (bootstrap objects).
    pub async fn ensure(&self, obj: Value) -> Result<(), ApiError> {
        match self.create(obj).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Time the write path: used by the metrics layer.
    pub fn now() -> Instant {
        Instant::now()
    }
}

/// A pod bound to a node is deleted gracefully (its node stops it, then removes the object);
/// everything else, and a grace period of 0, goes at once.
fn graceful_seconds(info: &KindInfo, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if info.kind != "Pod" || str_at(obj, "/spec/nodeName").is_empty() {
        return None;
    }
    let phase = str_at(obj, "/status/phase");
    if phase == "Succeeded" || phase == "Failed" {
        return None;
    }
    let grace = requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    (grace > 0).then_some(grace)
}

/// The namespace finalizer of Kubernetes' namespace controller: while a namespace's
/// `spec.finalizers` holds it (or any other), deleting the namespace marks it `Terminating`; the
/// controller empties it, removes the finalizer, and that update deletes it.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// As Kubernetes' namespace strategy on create: `spec.finalizers` always holds `kubernetes`.
fn add_namespace_finalizer(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        return; // left for validation to report
    }
    let finalizers = &mut spec["finalizers"];
    match finalizers {
        Value::Array(list) if !list.iter().any(|f| f == NAMESPACE_FINALIZER) => {
            list.push(json!(NAMESPACE_FINALIZER));
        }
        Value::Null => *finalizers = json!([NAMESPACE_FINALIZER]),
        _ => {} // present already, or left for validation to report
    }
}

/// Whether the object is a Namespace whose `spec.finalizers` is not empty.
fn has_namespace_finalizers(obj: &Value) -> bool {
    str_at(obj, "/kind") == "Namespace"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// A namespace's `spec.finalizers` changes only through its finalization (Kubernetes' `finalize`
/// subresource): an update keeps them while the namespace is active, and may only remove some
/// once it is terminating.
fn keep_namespace_finalizers(old: &Value, next: &mut Value) {
    let old_list: Vec<Value> = old
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let kept: Vec<Value> = if old.pointer("/metadata/deletionTimestamp").is_some() {
        let wanted = next
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        old_list
            .into_iter()
            .filter(|f| wanted.contains(f))
            .collect()
    } else {
        old_list
    };
    if kept.is_empty() {
        if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("finalizers");
        }
    } else if let Some(root) = next.as_object_mut() {
        let spec = root.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("finalizers".into(), Value::Array(kept));
        }
    }
}

fn first_value(results: Vec<corral_store::OpResult>) -> Result<Value, ApiError> {
    let r = results
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("the store answered no result"))?;
    serde_json::from_str(&r.value).map_err(ApiError::internal)
}

pub fn selected(v: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    (labels.is_empty() || labels.matches(&corral_api::object::labels(v))) && fields.matches(v)
}

/// Builds the object to store from the current one and what the client sent.
fn admit_update(old: &Value, mut next: Value, status_only: bool) -> Result<Value, ApiError> {
    if !next.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    let info = kind_of(&str_at(old, "/kind"))?;
    if status_only {
        let status = next.get("status").cloned();
        next = old.clone();
        match status {
            Some(s) => next["status"] = s,
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return Ok(next);
    }
    defaults::carry_forward_on_update(old, &mut next);
    defaults::apply_defaults(&mut next);
    if info.kind == "Namespace" {
        keep_namespace_finalizers(old, &mut next);
    }
    // The status subresource is written only through UpdateStatus.
    if info.has_status {
        match old.get("status") {
            Some(s) => next["status"] = s.clone(),
            None => {
                if let Some(o) = next.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let m = meta_mut(&mut next);
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) => {
                m.insert(field.into(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = if meta::spec_changed(old, &next) {
        generation + 1
    } else {
        generation
    };
    meta_mut(&mut next).insert("generation".into(), json!(generation));
    meta_mut(&mut next).remove("resourceVersion");
    if next.get("apiVersion").is_none() {
        next["apiVersion"] = Value::String(info.api_version.to_string());
    }
    validation::validate_update(old, &next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_identity_and_bumps_generation_only_on_spec_change() {
        let old = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default","uid":"u1",
            "creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"resourceVersion":"5"},"data":{"k":"v"}});
        let mut next = old.clone();
        next["metadata"]["uid"] = json!("forged");
        next["metadata"]["labels"] = json!({"x":"y"});
        let admitted = admit_update(&old, next, false).expect("valid");
        assert_eq!(admitted["metadata"]["uid"], "u1");
        assert_eq!(admitted["metadata"]["generation"], 1);
        let mut next = old.clone();
        next["data"]["k"] = json!("w");
        assert_eq!(
            admit_update(&old, next, false).expect("valid")["metadata"]["generation"],
            2
        );
    }

    #[test]
    fn a_status_update_changes_only_status() {
        let old = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","uid":"u"},
            "spec":{"containers":[{"name":"c","image":"busybox"}]}});
        let mut next = old.clone();
        next["spec"]["nodeName"] = json!("n1");
        next["status"] = json!({"phase":"Running"});
        let admitted = admit_update(&old, next, true).expect("valid");
        assert_eq!(admitted["status"]["phase"], "Running");
        assert!(admitted["spec"].get("nodeName").is_none());
    }

    #[test]
    fn namespaces_keep_their_finalizer_until_they_are_finalized() {
        let mut ns = json!({"kind": "Namespace", "metadata": {"name": "prod"}});
        add_namespace_finalizer(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        add_namespace_finalizer(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert!(has_namespace_finalizers(&ns));
        // Active: an update cannot drop it.
        let mut next = json!({"kind": "Namespace", "metadata": {"name": "prod"}});
        keep_namespace_finalizers(&ns, &mut next);
        assert_eq!(next["spec"]["finalizers"], json!(["kubernetes"]));
        // Terminating: it can be removed, never added.
        ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut next = json!({"kind": "Namespace", "metadata": {"name": "prod"},
                              "spec": {"finalizers": ["other"]}});
        keep_namespace_finalizers(&ns, &mut next);
        assert_eq!(next["spec"].get("finalizers"), None);
        assert!(!has_namespace_finalizers(&next));
        let cm = json!({"kind": "ConfigMap", "spec": {"finalizers": ["x"]}});
        assert!(!has_namespace_finalizers(&cm));
    }

    #[test]
    fn propagation_policy_names_the_bad_value() {
        let e = Propagation::parse("Sideways").expect_err("bad");
        assert!(e.to_string().contains("Sideways"));
    }
}

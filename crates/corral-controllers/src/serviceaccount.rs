//! Service accounts: Kubernetes' `serviceaccount-controller` (a `default` ServiceAccount in
//! every namespace), its legacy `serviceaccount-token` controller (a token Secret for every
//! ServiceAccount) and the `root-ca-cert-publisher` (a `kube-root-ca.crt` ConfigMap in every
//! namespace), in one loop run by the Raft leader.
//!
//! Every pass (on any change of a namespace, a ServiceAccount, a token Secret or a
//! `kube-root-ca.crt` ConfigMap, and periodically) compares the caches with what should be
//! ([`plan`], pure) and makes the writes that are missing:
//!
//! - every namespace that is not terminating has a ServiceAccount `default` (recreated when
//!   deleted, never changed otherwise);
//! - every ServiceAccount has a Secret `<account>-token` of type
//!   `kubernetes.io/service-account-token`, annotated `kubernetes.io/service-account.name` and
//!   `kubernetes.io/service-account.uid`, with data `token`, `namespace` and `ca.crt`. This is
//!   the Secret the agent's projected service-account token volume reads
//!   (`corral-agent/src/volumes.rs`). Any other token Secret naming an account gets its missing
//!   data filled in, as Kubernetes' token controller did. A token Secret whose account is gone,
//!   or was deleted and created again (another uid), is deleted once a read of the account from
//!   the API confirms it; a recreated account then gets a new one.
//! - every namespace that is not terminating has a ConfigMap `kube-root-ca.crt` with the key
//!   `ca.crt` (the published CA bundle; a changed copy is put back).
//!
//! **Tokens.** Corral has no token issuer: it signs nothing, and its API does not authenticate
//! callers. The `token` is an opaque random value ([`new_token`]: 32 random bytes from the
//! operating system's generator, base64url without padding), unique per account and stable
//! while its Secret lives, so workloads that expect a token file find one. **The CA bundle** is
//! empty ([`ROOT_CA`]): Corral's API is served over plain gRPC, so there is no cluster CA to
//! publish; the ConfigMap exists because every pod's projected `kube-api-access-*` volume
//! references it (optionally).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use corral_api::{ApiError, object};
use corral_client::informer::Informer;
use corral_client::{Client, DeleteOptions};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The type of a service account's token Secret.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotations tying a token Secret to its account.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The ConfigMap holding the cluster's CA bundle in every namespace, and its key.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The CA bundle Corral publishes: none (its API is plain gRPC; see the module doc).
pub const ROOT_CA: &str = "";
/// Kubernetes' description of `kube-root-ca.crt`.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;
const TOKEN_SUFFIX: &str = "-token";
/// Changes arriving faster than this are folded into one pass.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(10);

/// Settings of the service account controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountOptions {
    /// How often everything is compared again even when nothing changed.
    pub resync_period: Duration,
}

impl Default for ServiceAccountOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(60),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What should be
// ---------------------------------------------------------------------------------------------

/// A fresh opaque token: 32 random bytes (the operating system's generator), base64url without
/// padding (43 characters). Not a JWT: Corral has no token issuer.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The name of the account's token Secret: `<account>-token` (the account's name shortened when
/// the result would be over 253 characters).
pub fn token_secret_name(account: &str) -> String {
    let keep = MAX_NAME - TOKEN_SUFFIX.len();
    let mut base: String = account.chars().take(keep).collect();
    if base.len() < account.len() {
        base = base.trim_end_matches(['-', '.']).to_string();
    }
    format!("{base}{TOKEN_SUFFIX}")
}

/// The data every token Secret of `namespace` carries besides its token (base64, as Secret data
/// is written).
fn fixed_token_data(namespace: &str) -> [(&'static str, String); 2] {
    [
        ("namespace", STANDARD.encode(namespace)),
        ("ca.crt", STANDARD.encode(ROOT_CA)),
    ]
}

/// The token Secret of the ServiceAccount `account`, holding `token`.
pub fn token_secret(account: &Value, token: &str) -> Value {
    let (namespace, name) = (object::namespace(account), object::name(account));
    let mut data = Map::new();
    data.insert("token".into(), json!(STANDARD.encode(token)));
    for (key, value) in fixed_token_data(namespace) {
        data.insert(key.into(), json!(value));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": token_secret_name(name),
            "namespace": namespace,
            "annotations": {
                SERVICE_ACCOUNT_NAME_ANNOTATION: name,
                SERVICE_ACCOUNT_UID_ANNOTATION: object::uid(account),
            },
        },
        "type": SERVICE_ACCOUNT_TOKEN_TYPE,
        "data": data,
    })
}

/// The namespace's `default` ServiceAccount.
pub fn default_service_account(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
    })
}

/// The namespace's `kube-root-ca.crt` ConfigMap.
pub fn root_ca_config_map(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CA_CONFIG_MAP,
            "namespace": namespace,
            "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION},
        },
        "data": {ROOT_CA_KEY: ROOT_CA},
    })
}

/// The merge patch that puts the published content back into a `kube-root-ca.crt` that differs
/// from it (other data keys removed, the description annotation set), or `None` when it is right.
pub fn root_ca_patch(config_map: &Value) -> Option<Value> {
    let data = config_map.get("data").and_then(Value::as_object);
    let data_right =
        data.is_some_and(|d| d.len() == 1 && d.get(ROOT_CA_KEY) == Some(&json!(ROOT_CA)));
    let binary_empty = config_map
        .get("binaryData")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let described = object::annotations(config_map)
        .get(DESCRIPTION_ANNOTATION)
        .is_some_and(|d| d == ROOT_CA_DESCRIPTION);
    if data_right && binary_empty && described {
        return None;
    }
    let mut patch_data = Map::new();
    for key in data.into_iter().flat_map(|d| d.keys()) {
        patch_data.insert(key.clone(), Value::Null);
    }
    patch_data.insert(ROOT_CA_KEY.into(), json!(ROOT_CA));
    Some(json!({
        "metadata": {
            "resourceVersion": resource_version(config_map),
            "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION},
        },
        "data": patch_data,
        "binaryData": null,
    }))
}

/// The merge patch completing a token Secret of `account` (a missing token generated, the
/// namespace and CA data and the uid annotation set), or `None` when it is complete.
pub fn token_completion_patch(secret: &Value, account: &Value, token: &str) -> Option<Value> {
    let data = secret.get("data").and_then(Value::as_object);
    let get = |key: &str| data.and_then(|d| d.get(key)).and_then(Value::as_str);
    let mut patch_data = Map::new();
    if get("token").is_none_or(str::is_empty) {
        patch_data.insert("token".into(), json!(STANDARD.encode(token)));
    }
    for (key, value) in fixed_token_data(object::namespace(secret)) {
        if get(key) != Some(value.as_str()) {
            patch_data.insert(key.into(), json!(value));
        }
    }
    let uid_annotated = object::annotations(secret)
        .get(SERVICE_ACCOUNT_UID_ANNOTATION)
        .is_some_and(|u| u == object::uid(account));
    if patch_data.is_empty() && uid_annotated {
        return None;
    }
    let mut patch = json!({"metadata": {"resourceVersion": resource_version(secret)}});
    if !uid_annotated {
        patch["metadata"]["annotations"] =
            json!({SERVICE_ACCOUNT_UID_ANNOTATION: object::uid(account)});
    }
    if !patch_data.is_empty() {
        patch["data"] = Value::Object(patch_data);
    }
    Some(patch)
}

fn resource_version(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn active(ns: &Value) -> bool {
    object::deletion_timestamp(ns).is_none()
        && ns.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
}

/// A write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the namespace's `default` ServiceAccount.
    CreateServiceAccount { namespace: String },
    /// Create the namespace's `kube-root-ca.crt`.
    CreateRootCa { namespace: String },
    /// Put the published content back into a changed `kube-root-ca.crt`.
    ResetRootCa { config_map: Arc<Value> },
    /// Create the account's `<account>-token` Secret.
    CreateToken { account: Arc<Value> },
    /// Fill in what the account's token Secret lacks.
    CompleteToken {
        secret: Arc<Value>,
        account: Arc<Value>,
    },
    /// Delete a token Secret whose account is gone, or is another account of that name (once a
    /// read from the API confirms it).
    DeleteToken { secret: Arc<Value> },
}

type Key = (String, String);

fn key(obj: &Value) -> Key {
    (
        object::namespace(obj).to_string(),
        object::name(obj).to_string(),
    )
}

fn annotation(obj: &Value, name: &str) -> String {
    object::annotations(obj)
        .get(name)
        .cloned()
        .unwrap_or_default()
}

/// The writes that make the caches what they should be: namespaces, ServiceAccounts, Secrets of
/// type `kubernetes.io/service-account-token`, `kube-root-ca.crt` ConfigMaps.
pub fn plan(
    namespaces: &[Arc<Value>],
    accounts: &[Arc<Value>],
    token_secrets: &[Arc<Value>],
    root_cas: &[Arc<Value>],
) -> Vec<Action> {
    let active: HashSet<&str> = namespaces
        .iter()
        .filter(|ns| active(ns))
        .map(|ns| object::name(ns))
        .collect();
    let accounts: BTreeMap<Key, &Arc<Value>> = accounts.iter().map(|a| (key(a), a)).collect();
    let secrets: BTreeMap<Key, &Arc<Value>> = token_secrets
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_TOKEN_TYPE))
        .map(|s| (key(s), s))
        .collect();
    let root_cas: BTreeMap<&str, &Arc<Value>> = root_cas
        .iter()
        .filter(|c| object::name(c) == ROOT_CA_CONFIG_MAP)
        .map(|c| (object::namespace(c), c))
        .collect();
    let mut actions = Vec::new();
    let mut namespaces: Vec<&str> = active.iter().copied().collect();
    namespaces.sort();
    for ns in namespaces {
        let default_key = (ns.to_string(), DEFAULT_SERVICE_ACCOUNT.to_string());
        if !accounts.contains_key(&default_key) {
            actions.push(Action::CreateServiceAccount {
                namespace: ns.to_string(),
            });
        }
        match root_cas.get(ns) {
            None => actions.push(Action::CreateRootCa {
                namespace: ns.to_string(),
            }),
            Some(cm) if root_ca_patch(cm).is_some() => actions.push(Action::ResetRootCa {
                config_map: Arc::clone(cm),
            }),
            Some(_) => {}
        }
    }
    for ((ns, name), account) in &accounts {
        if !active.contains(ns.as_str()) || object::deletion_timestamp(account).is_some() {
            continue;
        }
        if !secrets.contains_key(&(ns.clone(), token_secret_name(name))) {
            actions.push(Action::CreateToken {
                account: Arc::clone(account),
            });
        }
    }
    for ((ns, _), secret) in &secrets {
        if !active.contains(ns.as_str()) || object::deletion_timestamp(secret).is_some() {
            continue;
        }
        let account_name = annotation(secret, SERVICE_ACCOUNT_NAME_ANNOTATION);
        if account_name.is_empty() {
            continue;
        }
        let uid = annotation(secret, SERVICE_ACCOUNT_UID_ANNOTATION);
        match accounts.get(&(ns.clone(), account_name)) {
            None => actions.push(Action::DeleteToken {
                secret: Arc::clone(secret),
            }),
            Some(account) if !uid.is_empty() && uid != object::uid(account) => {
                actions.push(Action::DeleteToken {
                    secret: Arc::clone(secret),
                })
            }
            Some(account) if object::deletion_timestamp(account).is_some() => {}
            Some(account) => {
                if token_completion_patch(secret, account, "").is_some() {
                    actions.push(Action::CompleteToken {
                        secret: Arc::clone(secret),
                        account: Arc::clone(account),
                    });
                }
            }
        }
    }
    actions
}

// ---------------------------------------------------------------------------------------------
// Carrying it out
// ---------------------------------------------------------------------------------------------

fn is_conflict(e: &ApiError) -> bool {
    matches!(e, ApiError::Conflict { .. })
}

fn is_not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::NotFound { .. })
}

fn is_already_exists(e: &ApiError) -> bool {
    matches!(e, ApiError::AlreadyExists { .. })
}

/// A create refused because the namespace is being terminated (or was just deleted).
fn is_namespace_closed(e: &ApiError) -> bool {
    match e {
        ApiError::BadRequest { message } => message.contains("being terminated"),
        ApiError::NotFound { kind, .. } => kind == "Namespace",
        _ => false,
    }
}

struct Controller {
    client: Client,
}

impl Controller {
    /// Creates `obj`; `Ok` also when it exists already or its namespace is closing.
    async fn create(&mut self, obj: Value) -> Result<(), ApiError> {
        let what = format!(
            "{}/{}/{}",
            object::kind(&obj),
            object::namespace(&obj),
            object::name(&obj)
        );
        match self.client.create(&obj).await {
            Ok(_) => {
                tracing::info!(object = %what, "service account controller: created");
                Ok(())
            }
            // The cache lags, or something else holds the name.
            Err(e) if is_already_exists(&e) => {
                tracing::debug!(object = %what, "service account controller: exists already");
                Ok(())
            }
            Err(e) if is_namespace_closed(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn act(&mut self, action: Action) -> Result<(), ApiError> {
        match action {
            Action::CreateServiceAccount { namespace } => {
                self.create(default_service_account(&namespace)).await
            }
            Action::CreateRootCa { namespace } => self.create(root_ca_config_map(&namespace)).await,
            Action::ResetRootCa { config_map } => {
                let Some(patch) = root_ca_patch(&config_map) else {
                    return Ok(());
                };
                let (ns, name) = key(&config_map);
                match self
                    .client
                    .patch("ConfigMap", &ns, &name, &patch, false)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(namespace = %ns, "service account controller: kube-root-ca.crt put back");
                        Ok(())
                    }
                    Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Action::CreateToken { account } => {
                self.create(token_secret(&account, &new_token())).await
            }
            Action::CompleteToken { secret, account } => {
                let Some(patch) = token_completion_patch(&secret, &account, &new_token()) else {
                    return Ok(());
                };
                let (ns, name) = key(&secret);
                match self.client.patch("Secret", &ns, &name, &patch, false).await {
                    Ok(_) => {
                        tracing::info!(secret = %format!("{ns}/{name}"), "service account controller: token Secret completed");
                        Ok(())
                    }
                    Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Action::DeleteToken { secret } => self.delete_token(&secret).await,
        }
    }

    /// Deletes the token Secret if its account, read from the API, is gone or another one.
    async fn delete_token(&mut self, secret: &Value) -> Result<(), ApiError> {
        let (ns, name) = key(secret);
        let account = annotation(secret, SERVICE_ACCOUNT_NAME_ANNOTATION);
        let uid = annotation(secret, SERVICE_ACCOUNT_UID_ANNOTATION);
        match self.client.get("ServiceAccount", &ns, &account).await {
            Ok(live) if uid.is_empty() || object::uid(&live) == uid => return Ok(()),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let options = DeleteOptions {
            uid: Some(object::uid(secret).to_string()).filter(|u| !u.is_empty()),
            resource_version: Some(resource_version(secret)).filter(|r| !r.is_empty()),
            ..DeleteOptions::default()
        };
        match self.client.delete("Secret", &ns, &name, &options).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{ns}/{name}"), account = %account, "service account controller: token Secret of a deleted account removed");
                Ok(())
            }
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Runs the service account controller until `cancel` fires.
pub async fn run(client: Client, opts: ServiceAccountOptions, cancel: CancellationToken) {
    let namespaces = Informer::builder(client.clone(), "Namespace").start(cancel.clone());
    let accounts = Informer::builder(client.clone(), "ServiceAccount").start(cancel.clone());
    let secrets = Informer::builder(client.clone(), "Secret")
        .field_selector(format!("type={SERVICE_ACCOUNT_TOKEN_TYPE}"))
        .start(cancel.clone());
    let root_cas = Informer::builder(client.clone(), "ConfigMap")
        .field_selector(format!("metadata.name={ROOT_CA_CONFIG_MAP}"))
        .start(cancel.clone());
    let mut subscriptions = [
        namespaces.subscribe(),
        accounts.subscribe(),
        secrets.subscribe(),
        root_cas.subscribe(),
    ];
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            namespaces.wait_synced().await;
            accounts.wait_synced().await;
            secrets.wait_synced().await;
            root_cas.wait_synced().await;
        } => {}
    }
    tracing::info!("service account controller: caches synced");
    let mut controller = Controller { client };
    let mut retry: Option<Duration> = None;
    loop {
        let started = Instant::now();
        let actions = plan(
            &namespaces.list(),
            &accounts.list(),
            &secrets.list(),
            &root_cas.list(),
        );
        let mut failed = false;
        for action in actions {
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = controller.act(action) => r,
            };
            if let Err(e) = result {
                failed = true;
                tracing::warn!(error = %e, "service account controller: a write failed; will retry");
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        retry = if failed {
            Some(retry.map_or(FIRST_RETRY, |r| (r * 2).min(LONGEST_RETRY)))
        } else {
            None
        };
        let sleep_for = retry.unwrap_or(opts.resync_period);
        let [ns_rx, sa_rx, secret_rx, ca_rx] = &mut subscriptions;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(sleep_for) => {}
            Some(_) = ns_rx.recv() => {}
            Some(_) = sa_rx.recv() => {}
            Some(_) = secret_rx.recv() => {}
            Some(_) = ca_rx.recv() => {}
        }
        let since = started.elapsed();
        if since < MIN_PASS_INTERVAL {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(MIN_PASS_INTERVAL - since) => {}
            }
        }
        for rx in subscriptions.iter_mut() {
            while rx.try_recv().is_ok() {}
        }
    }
    tracing::info!("service account controller: stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(v: Value) -> Arc<Value> {
        Arc::new(v)
    }

    fn ns(name: &str, terminating: bool) -> Arc<Value> {
        let mut n = json!({"kind": "Namespace", "metadata": {"name": name, "uid": format!("ns-{name}")},
                           "status": {"phase": "Active"}});
        if terminating {
            n["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            n["status"]["phase"] = json!("Terminating");
        }
        arc(n)
    }

    fn sa(namespace: &str, name: &str, uid: &str) -> Arc<Value> {
        arc(json!({"kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "3"}}))
    }

    fn stored_token(account: &Value) -> Arc<Value> {
        let mut s = token_secret(account, "tok");
        s["metadata"]["uid"] = json!("secret-uid");
        s["metadata"]["resourceVersion"] = json!("9");
        arc(s)
    }

    fn ca(namespace: &str) -> Arc<Value> {
        let mut c = root_ca_config_map(namespace);
        c["metadata"]["resourceVersion"] = json!("5");
        arc(c)
    }

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        let bytes = URL_SAFE_NO_PAD.decode(&a).expect("base64url");
        assert_eq!(bytes.len(), 32);
    }

    #[test]
    fn token_secrets_carry_what_the_agent_reads() {
        let account = sa("prod", "builder", "sa-uid");
        let s = token_secret(&account, "opaque");
        assert_eq!(s["metadata"]["name"], "builder-token");
        assert_eq!(s["metadata"]["namespace"], "prod");
        assert_eq!(s["type"], SERVICE_ACCOUNT_TOKEN_TYPE);
        assert_eq!(
            s["metadata"]["annotations"][SERVICE_ACCOUNT_NAME_ANNOTATION],
            "builder"
        );
        assert_eq!(
            s["metadata"]["annotations"][SERVICE_ACCOUNT_UID_ANNOTATION],
            "sa-uid"
        );
        assert_eq!(s["data"]["token"], STANDARD.encode("opaque"));
        assert_eq!(s["data"]["namespace"], STANDARD.encode("prod"));
        assert_eq!(s["data"]["ca.crt"], "");
        // Long account names still give a valid name.
        let long = "a".repeat(250);
        let name = token_secret_name(&long);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-token"));
        let dashed = format!("{}-{}", "a".repeat(246), "b".repeat(10));
        assert!(!token_secret_name(&dashed).contains("--"));
    }

    #[test]
    fn the_root_ca_config_map_is_put_back_when_changed() {
        let right = ca("prod");
        assert_eq!(root_ca_patch(&right), None);
        let mut changed = (*right).clone();
        changed["data"] = json!({"ca.crt": "forged", "extra": "x"});
        assert_eq!(
            root_ca_patch(&changed),
            Some(json!({
                "metadata": {"resourceVersion": "5",
                             "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": "", "extra": null},
                "binaryData": null,
            }))
        );
        let mut undescribed = (*right).clone();
        undescribed["metadata"]["annotations"] = json!({});
        assert!(root_ca_patch(&undescribed).is_some());
    }

    #[test]
    fn incomplete_token_secrets_are_completed_without_losing_their_token() {
        let account = sa("prod", "builder", "sa-uid");
        let complete = stored_token(&account);
        assert_eq!(token_completion_patch(&complete, &account, "new"), None);
        let user_made = json!({"kind": "Secret", "type": SERVICE_ACCOUNT_TOKEN_TYPE,
            "metadata": {"name": "mine", "namespace": "prod", "resourceVersion": "4",
                         "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: "builder"}}});
        assert_eq!(
            token_completion_patch(&user_made, &account, "new"),
            Some(json!({
                "metadata": {"resourceVersion": "4",
                             "annotations": {SERVICE_ACCOUNT_UID_ANNOTATION: "sa-uid"}},
                "data": {"token": STANDARD.encode("new"), "namespace": STANDARD.encode("prod"), "ca.crt": ""},
            }))
        );
        let mut kept = (*complete).clone();
        kept["data"]["namespace"] = json!(STANDARD.encode("elsewhere"));
        let patch = token_completion_patch(&kept, &account, "new").expect("a fix");
        assert_eq!(patch["data"], json!({"namespace": STANDARD.encode("prod")}));
    }

    /// What, namespaces, accounts, token Secrets, CA ConfigMaps, the plan.
    type PlanCase = (
        &'static str,
        Vec<Arc<Value>>,
        Vec<Arc<Value>>,
        Vec<Arc<Value>>,
        Vec<Arc<Value>>,
        Vec<Action>,
    );

    #[test]
    fn plans_create_what_is_missing_and_remove_what_is_orphaned() {
        let default_prod = sa("prod", "default", "d1");
        let builder = sa("prod", "builder", "b1");
        let cases: Vec<PlanCase> = vec![
            (
                "a new namespace: account and CA",
                vec![ns("prod", false)],
                vec![],
                vec![],
                vec![],
                vec![
                    Action::CreateServiceAccount {
                        namespace: "prod".into(),
                    },
                    Action::CreateRootCa {
                        namespace: "prod".into(),
                    },
                ],
            ),
            (
                "a terminating namespace: nothing",
                vec![ns("prod", true)],
                vec![default_prod.clone()],
                vec![],
                vec![],
                vec![],
            ),
            (
                "accounts without tokens get theirs",
                vec![ns("prod", false)],
                vec![default_prod.clone(), builder.clone()],
                vec![stored_token(&default_prod)],
                vec![ca("prod")],
                vec![Action::CreateToken {
                    account: builder.clone(),
                }],
            ),
            (
                "all in place: nothing",
                vec![ns("prod", false)],
                vec![default_prod.clone()],
                vec![stored_token(&default_prod)],
                vec![ca("prod")],
                vec![],
            ),
            (
                "the account is gone: its token goes",
                vec![ns("prod", false)],
                vec![default_prod.clone()],
                vec![stored_token(&default_prod), stored_token(&builder)],
                vec![ca("prod")],
                vec![Action::DeleteToken {
                    secret: stored_token(&builder),
                }],
            ),
            (
                "the account was created again: the old token goes (a new one follows)",
                vec![ns("prod", false)],
                vec![default_prod.clone(), sa("prod", "builder", "b2")],
                vec![stored_token(&default_prod), stored_token(&builder)],
                vec![ca("prod")],
                vec![Action::DeleteToken {
                    secret: stored_token(&builder),
                }],
            ),
        ];
        for (what, namespaces, accounts, secrets, cas, want) in cases {
            assert_eq!(plan(&namespaces, &accounts, &secrets, &cas), want, "{what}");
        }
    }

    #[test]
    fn plans_complete_foreign_token_secrets_and_reset_the_ca() {
        let account = sa("prod", "default", "d1");
        let foreign = arc(json!({"kind": "Secret", "type": SERVICE_ACCOUNT_TOKEN_TYPE,
            "metadata": {"name": "mine", "namespace": "prod", "resourceVersion": "4",
                         "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: "default"}}}));
        let unlinked = arc(json!({"kind": "Secret", "type": SERVICE_ACCOUNT_TOKEN_TYPE,
            "metadata": {"name": "loose", "namespace": "prod"}}));
        let mut changed_ca = (*ca("prod")).clone();
        changed_ca["data"]["ca.crt"] = json!("x");
        let changed_ca = arc(changed_ca);
        let actions = plan(
            &[ns("prod", false)],
            std::slice::from_ref(&account),
            &[stored_token(&account), foreign.clone(), unlinked],
            std::slice::from_ref(&changed_ca),
        );
        assert_eq!(
            actions,
            vec![
                Action::ResetRootCa {
                    config_map: changed_ca
                },
                Action::CompleteToken {
                    secret: foreign,
                    account
                },
            ]
        );
    }

    #[test]
    fn closed_namespaces_are_recognised() {
        let terminating = ApiError::bad_request(
            "namespace \"prod\" is being terminated: nothing new can be created in it",
        );
        assert!(is_namespace_closed(&terminating));
        let gone = ApiError::NotFound {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "prod".into(),
        };
        assert!(is_namespace_closed(&gone));
        assert!(!is_namespace_closed(&ApiError::bad_request(
            "something else"
        )));
    }
}

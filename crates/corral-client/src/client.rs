//! [`Client`]: typed calls against a list of API servers, failing over between them.
//!
//! Every call starts at the server that last answered and, when a server is unavailable (refused,
//! reset, timed out, or answered `Unavailable` because it has no leader), moves to the next one in
//! the list. A pass in which at least one Corral server *answered* `Unavailable` (an election is in
//! progress) is repeated with a short back-off until [`ClientOptions::failover_window`] runs out; a
//! pass in which no server answered at all ends the call at once. The error then lists what each
//! server said.
//!
//! A write whose answer was lost (the server died after committing it) is sent again to the next
//! server, so it may report its own earlier success as `AlreadyExists` (create), `Conflict`
//! (update with a resourceVersion) or `NotFound` (delete), as with any etcd-style client.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral_api::ApiError;
use corral_proto::v1::{self as pb, api_client::ApiClient, cluster_client::ClusterClient};
use serde_json::Value;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::status::{Failure, Target, classify};

/// Largest response the client decodes (a big List), in bytes.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// How the client talks to its servers. The defaults suit a CLI and the cluster's own components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long to wait for a TCP connection to a server (default 1 s).
    pub connect_timeout: Duration,
    /// How long one unary call, or the opening of a watch, may take on one server (default 10 s).
    pub request_timeout: Duration,
    /// How long a call keeps going round the servers while they answer `Unavailable` (no leader
    /// yet), before giving up (default 5 s).
    pub failover_window: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            failover_window: Duration::from_secs(5),
        }
    }
}

/// Options of [`Client::get_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Serve from the answering server's state without a read-index round (possibly stale).
    pub stale_ok: bool,
}

/// Options of [`Client::list`]. Empty selectors select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    /// Serve from the answering server's state without a read-index round (possibly stale).
    pub stale_ok: bool,
}

/// What [`Client::list`] returns: the objects and the revision they were read at (start a watch
/// there to see every later change).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub revision: u64,
}

/// What happens to the dependents of a deleted object (Kubernetes `propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// Delete the object now; the garbage collector deletes its dependents afterwards.
    Background,
    /// Delete the dependents first; the object stays (with a deletionTimestamp) until they are gone.
    Foreground,
    /// Delete the object and leave its dependents, without owner reference.
    Orphan,
}

impl PropagationPolicy {
    /// The wire spelling: `Background`, `Foreground`, `Orphan`.
    pub fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
            PropagationPolicy::Orphan => "Orphan",
        }
    }
}

impl std::fmt::Display for PropagationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PropagationPolicy {
    type Err = ApiError;

    /// Accepts the wire spelling in any case, and kubectl's `--cascade` values
    /// (`background`, `foreground`, `orphan`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "background" => Ok(PropagationPolicy::Background),
            "foreground" => Ok(PropagationPolicy::Foreground),
            "orphan" => Ok(PropagationPolicy::Orphan),
            _ => Err(ApiError::bad_request(format!(
                "propagation policy {s:?} is not one of Background, Foreground, Orphan"
            ))),
        }
    }
}

/// Options of [`Client::delete`]. `None` leaves the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub propagation_policy: Option<PropagationPolicy>,
    pub grace_period_seconds: Option<i64>,
    /// Precondition: the stored object's resourceVersion must equal this.
    pub resource_version: Option<String>,
    /// Precondition: the stored object's uid must equal this.
    pub uid: Option<String>,
}

/// A typed client for a list of Corral API servers. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Vec<Server>,
    /// Index of the server the next call tries first: the last one that answered.
    current: AtomicUsize,
    options: ClientOptions,
}

struct Server {
    addr: String,
    channel: Channel,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers())
            .field("current", &self.current_server())
            .field("options", &self.inner.options)
            .finish()
    }
}

impl Client {
    /// A client for `addrs` (`host:port` each; an item may itself be a comma-separated list) with
    /// the default [`ClientOptions`]. Connections are made lazily, on first use, so this succeeds
    /// while servers are down. Must be called inside a Tokio runtime.
    pub fn connect(addrs: &[impl AsRef<str>]) -> Result<Client, ApiError> {
        Self::connect_with(addrs, ClientOptions::default())
    }

    /// [`Client::connect`] with explicit options.
    pub fn connect_with(
        addrs: &[impl AsRef<str>],
        options: ClientOptions,
    ) -> Result<Client, ApiError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ApiError::internal(
                "Client::connect must be called inside a Tokio runtime",
            ));
        }
        let mut servers = Vec::new();
        for addr in addrs
            .iter()
            .flat_map(|a| a.as_ref().split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let endpoint = endpoint(addr)?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
            servers.push(Server {
                addr: addr.to_string(),
                channel: endpoint.connect_lazy(),
            });
        }
        Self::from_servers(servers, options)
    }

    /// A client over channels made by the caller (an in-process transport, say), each named by
    /// the address shown in errors.
    pub fn from_channels(
        channels: Vec<(String, Channel)>,
        options: ClientOptions,
    ) -> Result<Client, ApiError> {
        let servers = channels
            .into_iter()
            .map(|(addr, channel)| Server { addr, channel })
            .collect();
        Self::from_servers(servers, options)
    }

    fn from_servers(servers: Vec<Server>, options: ClientOptions) -> Result<Client, ApiError> {
        if servers.is_empty() {
            return Err(ApiError::bad_request(
                "no API server address given (expected host:port[,host:port...])",
            ));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                servers,
                current: AtomicUsize::new(0),
                options,
            }),
        })
    }

    /// The server addresses, in the order given.
    pub fn servers(&self) -> Vec<String> {
        self.inner.servers.iter().map(|s| s.addr.clone()).collect()
    }

    /// The address the next call tries first (the last one that answered).
    pub fn current_server(&self) -> &str {
        &self.inner.servers[self.current_index()].addr
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Creates `object` (Kubernetes JSON); answers the stored object.
    pub async fn create(&self, object: &Value) -> Result<Value, ApiError> {
        let req = pb::CreateRequest {
            object: object.to_string(),
        };
        let resp = self
            .unary(target_of(object), req, |mut api, req| async move {
                api.create(req).await
            })
            .await?;
        decode_object(&resp.object)
    }

    /// Reads one object, linearizably. `namespace` is `""` for cluster-scoped kinds.
    pub async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get_with(kind, namespace, name, &GetOptions::default())
            .await
    }

    /// [`Client::get`] with options.
    pub async fn get_with(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        options: &GetOptions,
    ) -> Result<Value, ApiError> {
        let req = pb::GetRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            stale_ok: options.stale_ok,
        };
        let resp = self
            .unary(
                Target::new(kind, namespace, name),
                req,
                |mut api, req| async move { api.get(req).await },
            )
            .await?;
        decode_object(&resp.object)
    }

    /// Lists the objects of `kind` in `namespace` (`None`: every namespace).
    pub async fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ObjectList, ApiError> {
        let req = pb::ListRequest {
            kind: kind.into(),
            namespace: namespace.unwrap_or_default().into(),
            label_selector: options.label_selector.clone(),
            field_selector: options.field_selector.clone(),
            stale_ok: options.stale_ok,
        };
        let target = Target::new(kind, namespace.unwrap_or_default(), "");
        let resp = self
            .unary(
                target,
                req,
                |mut api, req| async move { api.list(req).await },
            )
            .await?;
        let items = resp
            .items
            .iter()
            .map(|s| decode_object(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ObjectList {
            items,
            revision: resp.revision,
        })
    }

    /// Replaces the object (spec and metadata). A non-empty `metadata.resourceVersion` must equal
    /// the stored one, else `Conflict`.
    pub async fn update(&self, object: &Value) -> Result<Value, ApiError> {
        let req = pb::UpdateRequest {
            object: object.to_string(),
        };
        let resp = self
            .unary(target_of(object), req, |mut api, req| async move {
                api.update(req).await
            })
            .await?;
        decode_object(&resp.object)
    }

    /// Replaces the object's status subresource.
    pub async fn update_status(&self, object: &Value) -> Result<Value, ApiError> {
        let req = pb::UpdateRequest {
            object: object.to_string(),
        };
        let resp = self
            .unary(target_of(object), req, |mut api, req| async move {
                api.update_status(req).await
            })
            .await?;
        decode_object(&resp.object)
    }

    /// Applies an RFC 7386 JSON merge patch to the object, or to its status when `status`.
    pub async fn patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        merge_patch: &Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let req = pb::PatchRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            merge_patch: merge_patch.to_string(),
            status,
        };
        let resp = self
            .unary(
                Target::new(kind, namespace, name),
                req,
                |mut api, req| async move { api.patch(req).await },
            )
            .await?;
        decode_object(&resp.object)
    }

    /// Deletes the object; answers it as deleted (or, when finalizers or foreground deletion hold
    /// it, as it now stands with its deletionTimestamp).
    pub async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let req = pb::DeleteRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            propagation_policy: options
                .propagation_policy
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            grace_period_seconds: options.grace_period_seconds,
            resource_version: options.resource_version.clone().unwrap_or_default(),
            uid: options.uid.clone().unwrap_or_default(),
        };
        let resp = self
            .unary(
                Target::new(kind, namespace, name),
                req,
                |mut api, req| async move { api.delete(req).await },
            )
            .await?;
        decode_object(&resp.object)
    }

    /// Binds pods to nodes in one call (one Raft entry for the whole batch). Each binding is
    /// checked on its own (the pod's uid and, when non-zero, resourceVersion; the pod must be
    /// unbound and not terminating); the answer holds one result per binding, in order: the
    /// bound pod, or why that binding failed. The outer error is for the call as a whole (no
    /// server could serve it, too many bindings).
    ///
    /// Like any write, a call whose answer was lost is sent again to the next server, so a
    /// binding may report its own earlier success as a `Conflict` on `spec.nodeName`.
    pub async fn bind(
        &self,
        bindings: &[pb::Binding],
    ) -> Result<Vec<Result<Value, ApiError>>, ApiError> {
        let req = pb::BindRequest {
            bindings: bindings.to_vec(),
        };
        let resp = self
            .unary(Target::new("Pod", "", ""), req, |mut api, req| async move {
                api.bind(req).await
            })
            .await?;
        decode_bind_results(bindings, resp.results)
    }

    /// The answering server's view of the cluster: members, leader, term, commit index, applied
    /// revision.
    pub async fn cluster_status(&self) -> Result<pb::ClusterStatus, ApiError> {
        self.cluster_call(pb::StatusRequest {}, |mut c, req| async move {
            c.status(req).await
        })
        .await
    }

    /// Adds server `id` (its Raft address `addr`) to the cluster; answers the new status.
    pub async fn add_server(&self, id: u64, addr: &str) -> Result<pb::ClusterStatus, ApiError> {
        let req = pb::AddServerRequest {
            id,
            addr: addr.into(),
        };
        self.cluster_call(req, |mut c, req| async move { c.add_server(req).await })
            .await
    }

    /// Removes server `id` from the cluster; answers the new status.
    pub async fn remove_server(&self, id: u64) -> Result<pb::ClusterStatus, ApiError> {
        let req = pb::RemoveServerRequest { id };
        self.cluster_call(req, |mut c, req| async move { c.remove_server(req).await })
            .await
    }

    async fn cluster_call<Req, Resp, F, Fut>(&self, req: Req, call: F) -> Result<Resp, ApiError>
    where
        Req: Clone,
        F: Fn(ClusterClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let timeout = self.inner.options.request_timeout;
        let target = Target::new("Cluster", "", "");
        self.call(target, |channel| {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(timeout);
            let fut = call(ClusterClient::new(channel), request);
            async move { fut.await.map(tonic::Response::into_inner) }
        })
        .await
        .map(|(resp, _)| resp)
    }

    /// One unary `Api` call with a deadline, failing over between servers.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        target: Target<'_>,
        req: Req,
        call: F,
    ) -> Result<Resp, ApiError>
    where
        Req: Clone,
        F: Fn(ApiClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let timeout = self.inner.options.request_timeout;
        self.call(target, |channel| {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(timeout);
            let fut = call(api_client(channel), request);
            async move { fut.await.map(tonic::Response::into_inner) }
        })
        .await
        .map(|(resp, _)| resp)
    }

    /// Runs `attempt` against the servers in turn (see the module doc); answers the result and the
    /// index of the server that gave it. Each attempt gets `request_timeout`.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        target: Target<'_>,
        mut attempt: F,
    ) -> Result<(T, usize), ApiError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let servers = &self.inner.servers;
        let options = &self.inner.options;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let first = self.current_index();
            let mut said = Vec::with_capacity(servers.len());
            let mut answered = false;
            let mut leader = None;
            for step in 0..servers.len() {
                let index = (first + step) % servers.len();
                let server = &servers[index];
                let failure = match tokio::time::timeout(
                    options.request_timeout,
                    attempt(server.channel.clone()),
                )
                .await
                {
                    Ok(Ok(value)) => {
                        self.inner.current.store(index, Ordering::Relaxed);
                        return Ok((value, index));
                    }
                    Ok(Err(status)) => classify(&status, &target),
                    Err(_) => Failure {
                        error: ApiError::unavailable(
                            format!("no answer within {:?}", options.request_timeout),
                            None,
                        ),
                        answered: false,
                    },
                };
                if !failure.retryable() {
                    // A final answer still shows the server is up: start there next time.
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Err(failure.error);
                }
                tracing::debug!(server = %server.addr, error = %failure.error, "server unavailable, trying the next");
                self.advance_from(index);
                answered |= failure.answered;
                if let ApiError::Unavailable {
                    message,
                    leader: hint,
                } = failure.error
                {
                    leader = hint.or(leader);
                    said.push(format!("{}: {message}", server.addr));
                }
            }
            if !answered || started.elapsed() + backoff > options.failover_window {
                return Err(ApiError::Unavailable {
                    message: format!(
                        "no Corral server could serve the request ({})",
                        said.join("; ")
                    ),
                    leader,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn current_index(&self) -> usize {
        self.inner.current.load(Ordering::Relaxed) % self.inner.servers.len()
    }

    /// Moves the starting server past `index` unless another call already moved it.
    pub(crate) fn advance_from(&self, index: usize) {
        let next = (index + 1) % self.inner.servers.len();
        let _ =
            self.inner
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

pub(crate) fn api_client(channel: Channel) -> ApiClient<Channel> {
    ApiClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

fn endpoint(addr: &str) -> Result<Endpoint, ApiError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(format!(
                "server address {addr:?} is not host:port (for example 127.0.0.1:7070)"
            )));
        }
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri).map_err(|e| {
        ApiError::bad_request(format!("server address {addr:?} is not host:port: {e}"))
    })
}

/// The kind, namespace and name an object names, for errors made up on the client side.
pub(crate) fn target_of(object: &Value) -> Target<'_> {
    Target::new(
        object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// One result per binding: the bound pod, or the error its JSON ErrorDetails names.
fn decode_bind_results(
    bindings: &[pb::Binding],
    results: Vec<pb::BindResult>,
) -> Result<Vec<Result<Value, ApiError>>, ApiError> {
    if results.len() != bindings.len() {
        return Err(ApiError::internal(format!(
            "the server answered {} bind results for {} bindings",
            results.len(),
            bindings.len()
        )));
    }
    Ok(results
        .into_iter()
        .zip(bindings)
        .map(|(r, b)| {
            if r.error.is_empty() {
                decode_object(&r.object)
            } else {
                Err(
                    ApiError::from_details(r.error.as_bytes()).unwrap_or_else(|| {
                        ApiError::internal(format!(
                            "binding pod {}/{} to {:?} failed with an unreadable error: {}",
                            b.namespace, b.name, b.node, r.error
                        ))
                    }),
                )
            }
        })
        .collect())
}

pub(crate) fn decode_object(text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::internal(format!(
            "the server answered with an object that is not JSON: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_and_watch_streams_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        fn sendable<T: Send + 'static>() {}
        shareable::<Client>();
        sendable::<crate::WatchStream>();
    }

    #[test]
    fn bind_results_decode_per_binding_in_order() {
        let binding = |name: &str| pb::Binding {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: 0,
            node: "n1".into(),
        };
        let bindings = [binding("a"), binding("b"), binding("c")];
        let conflict = ApiError::Conflict {
            kind: "Pod".into(),
            name: "b".into(),
            field: "spec.nodeName".into(),
            expected: String::new(),
            actual: "n2".into(),
        };
        let results = vec![
            pb::BindResult {
                error: String::new(),
                object: r#"{"kind":"Pod","metadata":{"name":"a"},"spec":{"nodeName":"n1"}}"#.into(),
            },
            pb::BindResult {
                error: String::from_utf8(conflict.to_details()).expect("JSON is UTF-8"),
                object: String::new(),
            },
            pb::BindResult {
                error: "not json".into(),
                object: String::new(),
            },
        ];
        let got = decode_bind_results(&bindings, results).expect("as many results as bindings");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().expect("bound")["spec"]["nodeName"], "n1");
        assert_eq!(got[1], Err(conflict));
        assert!(
            matches!(&got[2], Err(ApiError::Internal { message }) if message.contains("default/c") && message.contains("not json")),
            "{:?}",
            got[2]
        );
        let short = decode_bind_results(&bindings, Vec::new()).expect_err("count mismatch");
        assert!(matches!(short, ApiError::Internal { .. }));
    }

    #[test]
    fn addresses_need_a_port() {
        assert!(endpoint("127.0.0.1:7070").is_ok());
        assert!(endpoint("[::1]:7070").is_ok());
        assert!(endpoint("http://corral-1:7070").is_ok());
        for bad in ["127.0.0.1", "host:", "host:70x", "bad host:1"] {
            let err = endpoint(bad).expect_err(bad);
            assert!(
                matches!(err, ApiError::BadRequest { ref message } if message.contains(bad)),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_comma_separated_list_is_split_and_blanks_are_dropped() {
        let client = Client::connect(&["127.0.0.1:1, 127.0.0.1:2", ""]).expect("valid addresses");
        assert_eq!(client.servers(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(client.current_server(), "127.0.0.1:1");
    }

    #[tokio::test]
    async fn an_empty_server_list_is_a_bad_request() {
        let err = Client::connect(&[" , "]).expect_err("no addresses");
        assert!(matches!(err, ApiError::BadRequest { .. }));
    }

    #[test]
    fn connecting_outside_a_runtime_is_an_error_not_a_panic() {
        let err = Client::connect(&["127.0.0.1:7070"]).expect_err("no runtime");
        assert!(matches!(err, ApiError::Internal { .. }));
    }

    #[test]
    fn cascade_values_parse_in_any_case() {
        assert_eq!(
            "orphan".parse::<PropagationPolicy>(),
            Ok(PropagationPolicy::Orphan)
        );
        assert_eq!(
            "Foreground".parse::<PropagationPolicy>(),
            Ok(PropagationPolicy::Foreground)
        );
        assert!("sideways".parse::<PropagationPolicy>().is_err());
    }

    #[tokio::test]
    async fn every_server_refusing_gives_one_error_naming_each() {
        // Ports from listeners that are closed again: nothing listens there.
        let mut addrs = Vec::new();
        for _ in 0..2 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            addrs.push(l.local_addr().expect("addr").to_string());
        }
        let client = Client::connect(&addrs).expect("valid addresses");
        let err = client
            .get("Pod", "default", "x")
            .await
            .expect_err("nobody listens");
        let ApiError::Unavailable { message, .. } = &err else {
            panic!("expected Unavailable, got {err:?}")
        };
        for a in &addrs {
            assert!(message.contains(a.as_str()), "{message}");
        }
    }
}

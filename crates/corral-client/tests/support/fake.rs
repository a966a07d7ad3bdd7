//! A tiny in-memory Corral API server for tests, on 127.0.0.1: create, get, list, update,
//! merge patch, delete, watch (kind filter only; selectors are ignored) and cluster status.
//!
//! Each server runs in its own thread and Tokio runtime so that killing it drops every connection
//! at once, as a killed process would. Servers started on one `Store` behave like the members of one
//! cluster: same objects, same revisions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use corral_api::ApiError;
use corral_proto::v1 as pb;
use corral_proto::v1::api_server::{Api, ApiServer};
use corral_proto::v1::cluster_server::{Cluster, ClusterServer};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tonic::{Code, Request, Response, Status};

#[derive(Default)]
pub struct State {
    pub revision: u64,
    pub oldest: u64,
    pub objects: BTreeMap<(String, String, String), Value>,
    pub history: Vec<(String, pb::WatchEvent)>,
}

pub struct Store {
    pub state: Mutex<State>,
    pub changes: broadcast::Sender<(String, pb::WatchEvent)>,
    /// Answer this many more calls with `Unavailable` (an election in progress).
    pub unavailable_for: AtomicUsize,
    /// The `from_revision` of every watch opened, in order.
    pub watches: Mutex<Vec<u64>>,
}

impl Store {
    pub fn new() -> Arc<Store> {
        Arc::new(Store {
            state: Mutex::new(State::default()),
            changes: broadcast::channel(1024).0,
            unavailable_for: AtomicUsize::new(0),
            watches: Mutex::new(Vec::new()),
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_available(&self) -> Result<(), Status> {
        let left = self.unavailable_for.load(Ordering::SeqCst);
        if left > 0 {
            self.unavailable_for.store(left - 1, Ordering::SeqCst);
            return Err(status(ApiError::unavailable("no leader elected yet", None)));
        }
        Ok(())
    }

    fn write(&self, state: &mut State, r#type: pb::watch_event::Type, mut object: Value) -> Value {
        state.revision += 1;
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let event = pb::WatchEvent {
            r#type: r#type as i32,
            object: object.to_string(),
            revision: state.revision,
        };
        state.history.push((kind.clone(), event.clone()));
        let _ = self.changes.send((kind, event));
        object
    }
}

fn status(e: ApiError) -> Status {
    let code = match e {
        ApiError::NotFound { .. } => Code::NotFound,
        ApiError::AlreadyExists { .. } => Code::AlreadyExists,
        ApiError::Conflict { .. } => Code::FailedPrecondition,
        ApiError::Expired { .. } => Code::OutOfRange,
        ApiError::Unavailable { .. } => Code::Unavailable,
        _ => Code::InvalidArgument,
    };
    Status::with_details(code, e.to_string(), e.to_details().into())
}

fn key_of(object: &Value) -> Result<(String, String, String), Status> {
    let field = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let namespace = match field("/metadata/namespace") {
        ns if ns.is_empty() => "default".to_string(),
        ns => ns,
    };
    Ok((field("/kind"), namespace, field("/metadata/name")))
}

fn parse(text: &str) -> Result<Value, Status> {
    serde_json::from_str(text).map_err(|e| status(ApiError::bad_request(e.to_string())))
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (k, v) in fields {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[derive(Clone)]
struct Fake(Arc<Store>);

#[tonic::async_trait]
impl Api for Fake {
    async fn bind(
        &self,
        _req: Request<pb::BindRequest>,
    ) -> Result<Response<pb::BindResponse>, Status> {
        Err(Status::unimplemented("the fake server does not bind"))
    }

    type LogsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::LogChunk, Status>> + Send + 'static>,
    >;

    async fn logs(
        &self,
        _req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        Err(Status::unimplemented("the fake server keeps no logs"))
    }
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        self.0.check_available()?;
        let mut object = parse(&req.into_inner().object)?;
        let key = key_of(&object)?;
        object["metadata"]["namespace"] = json!(key.1);
        let mut state = self.0.lock();
        if state.objects.contains_key(&key) {
            let (kind, namespace, name) = key;
            return Err(status(ApiError::AlreadyExists {
                kind,
                namespace,
                name,
            }));
        }
        let stored = self
            .0
            .write(&mut state, pb::watch_event::Type::Added, object);
        state.objects.insert(key, stored.clone());
        Ok(Response::new(pb::ObjectResponse {
            object: stored.to_string(),
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        self.0.check_available()?;
        let r = req.into_inner();
        let key = (r.kind, r.namespace, r.name);
        match self.0.lock().objects.get(&key) {
            Some(o) => Ok(Response::new(pb::ObjectResponse {
                object: o.to_string(),
            })),
            None => Err(status(ApiError::NotFound {
                kind: key.0,
                namespace: key.1,
                name: key.2,
            })),
        }
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        self.0.check_available()?;
        let r = req.into_inner();
        let state = self.0.lock();
        let items = state
            .objects
            .iter()
            .filter(|((k, ns, _), _)| {
                *k == r.kind && (r.namespace.is_empty() || *ns == r.namespace)
            })
            .map(|(_, o)| o.to_string())
            .collect();
        Ok(Response::new(pb::ListResponse {
            items,
            revision: state.revision,
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        self.0.check_available()?;
        let object = parse(&req.into_inner().object)?;
        let key = key_of(&object)?;
        let mut state = self.0.lock();
        let Some(live) = state.objects.get(&key) else {
            return Err(status(ApiError::NotFound {
                kind: key.0,
                namespace: key.1,
                name: key.2,
            }));
        };
        let asked = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        let actual = live["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !asked.is_empty() && asked != actual {
            return Err(status(ApiError::Conflict {
                kind: key.0,
                name: key.2,
                field: "metadata.resourceVersion".into(),
                expected: asked.into(),
                actual,
            }));
        }
        let stored = self
            .0
            .write(&mut state, pb::watch_event::Type::Modified, object);
        state.objects.insert(key, stored.clone());
        Ok(Response::new(pb::ObjectResponse {
            object: stored.to_string(),
        }))
    }

    async fn update_status(
        &self,
        _: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn patch(
        &self,
        req: Request<pb::PatchRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        self.0.check_available()?;
        let r = req.into_inner();
        let patch = parse(&r.merge_patch)?;
        let key = (r.kind, r.namespace, r.name);
        let mut state = self.0.lock();
        let Some(mut object) = state.objects.get(&key).cloned() else {
            return Err(status(ApiError::NotFound {
                kind: key.0,
                namespace: key.1,
                name: key.2,
            }));
        };
        let asked = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let actual = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !asked.is_empty() && asked != actual {
            return Err(status(ApiError::Conflict {
                kind: key.0,
                name: key.2,
                field: "metadata.resourceVersion".into(),
                expected: asked.into(),
                actual,
            }));
        }
        merge_patch(&mut object, &patch);
        let stored = self
            .0
            .write(&mut state, pb::watch_event::Type::Modified, object);
        state.objects.insert(key, stored.clone());
        Ok(Response::new(pb::ObjectResponse {
            object: stored.to_string(),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::ObjectResponse>, Status> {
        self.0.check_available()?;
        let r = req.into_inner();
        let key = (r.kind, r.namespace, r.name);
        let mut state = self.0.lock();
        let Some(gone) = state.objects.remove(&key) else {
            return Err(status(ApiError::NotFound {
                kind: key.0,
                namespace: key.1,
                name: key.2,
            }));
        };
        let gone = self
            .0
            .write(&mut state, pb::watch_event::Type::Deleted, gone);
        Ok(Response::new(pb::ObjectResponse {
            object: gone.to_string(),
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.0.check_available()?;
        let r = req.into_inner();
        self.0
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.from_revision);
        let state = self.0.lock();
        let from = if r.from_revision == 0 {
            state.revision
        } else {
            r.from_revision
        };
        if from < state.oldest {
            return Err(status(ApiError::Expired {
                requested: from,
                oldest: state.oldest,
            }));
        }
        let kind = r.kind;
        let backlog: Vec<_> = state
            .history
            .iter()
            .filter(|(k, e)| *k == kind && e.revision > from)
            .map(|(_, e)| Ok(e.clone()))
            .collect();
        // Subscribed under the lock: nothing written between the backlog and the live changes.
        let live = tokio_stream::wrappers::BroadcastStream::new(self.0.changes.subscribe())
            .filter_map(move |c| {
                let keep = match c {
                    Ok((k, e)) if k == kind && e.revision > from => Some(Ok(e)),
                    _ => None,
                };
                async move { keep }
            });
        Ok(Response::new(Box::pin(
            futures::stream::iter(backlog).chain(live),
        )))
    }
}

#[tonic::async_trait]
impl Cluster for Fake {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        self.0.check_available()?;
        let revision = self.0.lock().revision;
        Ok(Response::new(pb::ClusterStatus {
            id: 1,
            leader_id: 1,
            applied_revision: revision,
            ..Default::default()
        }))
    }

    async fn add_server(
        &self,
        _: Request<pb::AddServerRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn remove_server(
        &self,
        _: Request<pb::RemoveServerRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A server on its own thread and runtime; dropping or killing it closes every connection.
pub struct FakeServer {
    pub addr: String,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(store: &Arc<Store>) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address").to_string();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let fake = Fake(store.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the fake server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(ApiServer::new(fake.clone()))
                        .add_service(ClusterServer::new(fake))
                        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                            listener,
                        )),
                );
                let _ = killed.await;
            });
            runtime.shutdown_background();
        });
        FakeServer {
            addr,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

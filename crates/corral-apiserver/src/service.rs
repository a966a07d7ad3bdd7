//! The gRPC services: `corral.v1.Api` (objects) and `corral.v1.Cluster` (members, leader,
//! AddServer/RemoveServer). Thin: parse, call [`Objects`], time, map errors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use corral_api::ApiError;
use corral_proto::v1::api_server::Api;
use corral_proto::v1::cluster_server::Cluster;
use corral_proto::v1::*;
use corral_store::MembershipChange;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::objects::{DeleteOptions, Objects, Propagation, parse_json};
use crate::status::{from_store, to_status};

#[derive(Clone)]
pub struct ApiService {
    pub(crate) objects: Objects,
    pub(crate) metrics: Arc<Metrics>,
}

impl ApiService {
    fn finish<T>(
        &self,
        method: &str,
        start: Instant,
        r: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let code = match &r {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}", e.reason()),
        };
        self.metrics.observe(method, &code, start.elapsed());
        r.map(Response::new).map_err(|e| to_status(&e))
    }
}

fn object_response(v: serde_json::Value) -> Result<ObjectResponse, ApiError> {
    Ok(ObjectResponse {
        object: serde_json::to_string(&v).map_err(ApiError::internal)?,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Api for ApiService {
    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let r = async {
            object_response(
                self.objects
                    .create(parse_json(&req.get_ref().object)?)
                    .await?,
            )
        }
        .await;
        self.finish("Create", start, r)
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let g = req.get_ref();
        let r = async {
            object_response(
                self.objects
                    .get(&g.kind, &g.namespace, &g.name, g.stale_ok)
                    .await?,
            )
        }
        .await;
        self.finish("Get", start, r)
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let start = Instant::now();
        let l = req.get_ref();
        let r = async {
            let (items, revision) = self
                .objects
                .list(
                    &l.kind,
                    &l.namespace,
                    &l.label_selector,
                    &l.field_selector,
                    l.stale_ok,
                )
                .await?;
            let items = items
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()
                .map_err(ApiError::internal)?;
            Ok(ListResponse { items, revision })
        }
        .await;
        self.finish("List", start, r)
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let r = async {
            object_response(
                self.objects
                    .update(parse_json(&req.get_ref().object)?, false)
                    .await?,
            )
        }
        .await;
        self.finish("Update", start, r)
    }

    async fn update_status(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let r = async {
            object_response(
                self.objects
                    .update(parse_json(&req.get_ref().object)?, true)
                    .await?,
            )
        }
        .await;
        self.finish("UpdateStatus", start, r)
    }

    async fn patch(&self, req: Request<PatchRequest>) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let p = req.get_ref();
        let r = async {
            let patch: serde_json::Value = serde_json::from_str(&p.merge_patch).map_err(|e| {
                ApiError::bad_request(format!("the merge patch is not valid JSON: {e}"))
            })?;
            object_response(
                self.objects
                    .patch(&p.kind, &p.namespace, &p.name, &patch, p.status)
                    .await?,
            )
        }
        .await;
        self.finish("Patch", start, r)
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<ObjectResponse>, Status> {
        let start = Instant::now();
        let d = req.get_ref();
        let r = async {
            let opts = DeleteOptions {
                propagation: if d.propagation_policy.is_empty() {
                    None
                } else {
                    Some(Propagation::parse(&d.propagation_policy)?)
                },
                grace_period_seconds: d.grace_period_seconds,
                resource_version: if d.resource_version.is_empty() {
                    None
                } else {
                    Some(d.resource_version.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "preconditions.resourceVersion {:?} is not a number",
                            d.resource_version
                        ))
                    })?)
                },
                uid: (!d.uid.is_empty()).then(|| d.uid.clone()),
            };
            object_response(
                self.objects
                    .delete(&d.kind, &d.namespace, &d.name, opts)
                    .await?,
            )
        }
        .await;
        self.finish("Delete", start, r)
    }

    async fn bind(&self, req: Request<BindRequest>) -> Result<Response<BindResponse>, Status> {
        let start = Instant::now();
        let r = self.objects.bind(&req.get_ref().bindings).await;
        self.finish("Bind", start, r)
    }

    type LogsStream = crate::logs::LogsStream;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let start = Instant::now();
        let r = crate::logs::open(&self.objects, req.into_inner()).await;
        self.finish("Logs", start, r)
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let start = Instant::now();
        let rx = crate::watch::start(self.objects.store(), req.into_inner());
        let rx = self.finish("Watch", start, rx)?.into_inner();
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, |r| r.map_err(|e| to_status(&e)));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[derive(Clone)]
pub struct ClusterService {
    pub(crate) objects: Objects,
}

impl ClusterService {
    fn status(&self) -> ClusterStatus {
        let store = self.objects.store();
        let m = store.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let leader_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()))
            .unwrap_or_default();
        ClusterStatus {
            id: m.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            commit_index: m
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0)
                .max(store.reader().applied()),
            applied_revision: store.reader().applied(),
            members,
            leader_addr,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(ClusterService::status(self)))
    }

    async fn add_server(
        &self,
        req: Request<AddServerRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let r = req.into_inner();
        if r.id == 0 || r.addr.is_empty() {
            return Err(to_status(&ApiError::bad_request(
                "AddServer needs a non-zero id and the server's peer address",
            )));
        }
        self.objects
            .store()
            .change_membership(MembershipChange::Add {
                id: r.id,
                addr: r.addr,
            })
            .await
            .map_err(|e| to_status(&from_store(e)))?;
        Ok(Response::new(ClusterService::status(self)))
    }

    async fn remove_server(
        &self,
        req: Request<RemoveServerRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let r = req.into_inner();
        self.objects
            .store()
            .change_membership(MembershipChange::Remove { id: r.id })
            .await
            .map_err(|e| to_status(&from_store(e)))?;
        Ok(Response::new(ClusterService::status(self)))
    }
}

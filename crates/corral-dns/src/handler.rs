//! The request handler hickory-server calls for every well-formed query: EDNS and opcode checks
//! as hickory's own `Catalog` makes them, then one lookup in the current zone (authoritative
//! answer, AA set) or, for names outside it, the upstream's answer relayed (REFUSED when no
//! upstream is configured). Packets hickory cannot parse never get here: it answers FORMERR
//! when it has a header to answer, and drops anything shorter.

use std::sync::{Arc, PoisonError, RwLock};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use crate::forward::Forwarder;
use crate::zone::{Lookup, Zone};

/// The zone being served, swapped whole when the feed rebuilds it. `None` until the informers
/// have first synced: cluster names answer SERVFAIL meanwhile (so no resolver caches a false
/// NXDOMAIN), other names are forwarded as usual.
#[derive(Debug, Clone, Default)]
pub struct ZoneHandle(Arc<RwLock<Option<Arc<Zone>>>>);

impl ZoneHandle {
    pub fn current(&self) -> Option<Arc<Zone>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, zone: Zone) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(zone));
    }
}

/// Answers queries from the zone and the upstreams.
pub struct Handler {
    zone: ZoneHandle,
    forwarder: Arc<Forwarder>,
    origin: hickory_server::proto::rr::LowerName,
}

impl Handler {
    pub fn new(
        zone: ZoneHandle,
        forwarder: Arc<Forwarder>,
        origin: hickory_server::proto::rr::LowerName,
    ) -> Handler {
        Handler {
            zone,
            forwarder,
            origin,
        }
    }
}

fn serve_failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send<'a, R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, src = %request.src(), "could not send a DNS response");
            serve_failed(request)
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    response_handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
    send(request, response_handle, response).await
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            e
        });
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return send_error(
                request,
                ResponseCode::BADVERS,
                edns.as_ref(),
                response_handle,
            )
            .await;
        }
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return send_error(
                request,
                ResponseCode::NotImp,
                edns.as_ref(),
                response_handle,
            )
            .await;
        }
        // Exactly one question (RFC 9619), else FORMERR.
        let Ok(info) = request.request_info() else {
            return send_error(
                request,
                ResponseCode::FormErr,
                edns.as_ref(),
                response_handle,
            )
            .await;
        };
        let query = info.query;
        if query.query_class() != DNSClass::IN {
            return send_error(
                request,
                ResponseCode::Refused,
                edns.as_ref(),
                response_handle,
            )
            .await;
        }
        let Some(zone) = self.zone.current() else {
            if self.origin.zone_of(query.name()) {
                return send_error(
                    request,
                    ResponseCode::ServFail,
                    edns.as_ref(),
                    response_handle,
                )
                .await;
            }
            return self.forward(request, edns.as_ref(), response_handle).await;
        };
        let mut answer = match zone.lookup(query.name(), query.query_type()) {
            Lookup::Elsewhere => {
                return self.forward(request, edns.as_ref(), response_handle).await;
            }
            Lookup::Answer(answer) => answer,
        };
        // An ExternalName pointing out of the zone: the target's records, as the spec's example
        // shows, when an upstream can resolve them (else the CNAME alone, for the client to
        // follow).
        let mut chased = Vec::new();
        if let Some(target) = answer.chase.take()
            && !self.forwarder.is_empty()
        {
            match self.forwarder.resolve(&target, query.query_type()).await {
                Ok(reply) => {
                    if reply.metadata.response_code == ResponseCode::NXDomain {
                        answer.rcode = ResponseCode::NXDomain;
                    }
                    chased = reply.answers;
                }
                Err(e) => tracing::debug!(error = %e, %target, "could not resolve a CNAME target"),
            }
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = !self.forwarder.is_empty();
        metadata.response_code = answer.rcode;
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answer
                .answers
                .iter()
                .copied()
                .chain(answer.synthesized.iter())
                .chain(chased.iter()),
            std::iter::empty(),
            answer.authority,
            answer.additionals.iter().copied(),
        );
        send(request, response_handle, response).await
    }
}

impl Handler {
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        response_handle: R,
    ) -> ResponseInfo {
        if self.forwarder.is_empty() {
            return send_error(request, ResponseCode::Refused, edns, response_handle).await;
        }
        match self.forwarder.exchange(request.as_slice()).await {
            Ok(reply) => {
                let mut metadata = reply.metadata;
                metadata.id = request.metadata.id;
                metadata.message_type = MessageType::Response;
                // The client asked for TC handling by its own transport; hickory sets TC again
                // if this answer does not fit the client's UDP size.
                metadata.truncation = false;
                // This server recursed for the client and is no authority for the name.
                metadata.recursion_available = true;
                metadata.authoritative = false;
                let response = MessageResponseBuilder::new(&request.queries, edns).build(
                    metadata,
                    reply.answers.iter(),
                    reply.authorities.iter(),
                    std::iter::empty(),
                    reply.additionals.iter(),
                );
                send(request, response_handle, response).await
            }
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                send_error(request, ResponseCode::ServFail, edns, response_handle).await
            }
        }
    }
}

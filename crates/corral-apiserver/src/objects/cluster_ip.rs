//! Service ClusterIPs in the write path: which address a Service's write claims or releases, as
//! extra operations of the same store transaction (see `corral_api::service_ip`).
//!
//! - Create: a Service that asks for no address gets a random free one, read from the allocation
//!   records this server holds; one that names an address must name one inside the range. The
//!   transaction puts the Service and the address's record, both on the precondition `Absent`.
//!   When the record exists already (another Service won the address, or this server's view was
//!   behind), a named address is refused as Kubernetes refuses it; a chosen one is chosen again
//!   after catching up with the leader.
//! - Update: the address is immutable, so an update claims one only when the Service starts
//!   needing one (from `ExternalName`) and releases one only when it stops (to `ExternalName`).
//! - Delete: the record goes in the transaction that deletes the Service, on the precondition
//!   that it still belongs to that Service (its uid).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use corral_api::service_ip::{
    self, ALLOCATION_PREFIX, AllocationError, Wanted, allocation_key, allocation_record,
};
use corral_api::{ApiError, Cause};
use corral_store::{Action, Failure, Op, Pre};
use serde_json::Value;

use super::{Objects, str_at};

/// What one Service write does to the allocation records, beside writing the Service.
#[derive(Debug, Default)]
pub(super) struct IpChange {
    /// The address this write takes, and whether the Service named it (else it was chosen).
    claim: Option<(Ipv4Addr, bool)>,
    /// The address this write gives back (only ever the Service's own record).
    release: Option<Ipv4Addr>,
}

/// What to do after a transaction with an [`IpChange`] failed on one of its operations.
pub(super) enum AfterFailure {
    /// The address was taken meanwhile, or this server's view was stale: read again and retry.
    Retry,
    /// The request cannot succeed as sent.
    Fail(ApiError),
}

fn invalid(svc: &Value, ip: Ipv4Addr, err: &AllocationError) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        name: str_at(svc, "/metadata/name"),
        causes: vec![Cause::new(
            "spec.clusterIP",
            format!("Invalid value: \"{ip}\": {err}"),
        )],
    }
}

fn service_key(svc: &Value) -> String {
    format!(
        "{}/{}",
        str_at(svc, "/metadata/namespace"),
        str_at(svc, "/metadata/name")
    )
}

fn random_seed() -> u64 {
    u64::try_from(uuid::Uuid::new_v4().as_u128() >> 64).unwrap_or(0)
}

impl IpChange {
    /// The operations to add to the Service's transaction (after the Service's own).
    pub(super) fn ops(&self, svc: &Value) -> Result<Vec<Op>, ApiError> {
        let mut ops = Vec::new();
        if let Some((ip, _)) = self.claim {
            let record =
                serde_json::to_string(&allocation_record(ip, svc)).map_err(ApiError::internal)?;
            ops.push(Op {
                key: allocation_key(ip),
                pre: vec![Pre::Absent],
                action: Action::Put(record),
            });
        }
        if let Some(ip) = self.release {
            ops.push(Op {
                key: allocation_key(ip),
                pre: vec![Pre::Uid(str_at(svc, "/metadata/uid"))],
                action: Action::Delete,
            });
        }
        Ok(ops)
    }

    /// What a failure of the transaction's operation `op` (the Service's own is 0) means.
    pub(super) fn after_failure(&self, svc: &Value, op: usize, failure: &Failure) -> AfterFailure {
        match (self.claim, failure) {
            (Some((ip, true)), Failure::Exists { .. }) if op == 1 => {
                AfterFailure::Fail(invalid(svc, ip, &AllocationError::Allocated(ip)))
            }
            _ => AfterFailure::Retry,
        }
    }
}

impl Objects {
    /// The addresses allocated, as this server's store holds them now.
    fn allocated_ips(&self) -> Result<HashSet<Ipv4Addr>, ApiError> {
        let (records, _) = self
            .store
            .reader()
            .list(ALLOCATION_PREFIX)
            .map_err(ApiError::internal)?;
        let mut out = HashSet::with_capacity(records.len());
        for record in records {
            let v: Value = serde_json::from_str(&record.value).map_err(ApiError::internal)?;
            if let Ok(ip) = str_at(&v, "/metadata/name").parse() {
                out.insert(ip);
            }
        }
        Ok(out)
    }

    /// Whether `ip`'s allocation record exists and belongs to the Service with this uid.
    fn holds_record(&self, ip: Ipv4Addr, uid: &str) -> Result<bool, ApiError> {
        let stored = self
            .store
            .reader()
            .get(&allocation_key(ip))
            .map_err(ApiError::internal)?;
        Ok(match stored {
            None => false,
            Some(s) => {
                let v: Value = serde_json::from_str(&s.value).map_err(ApiError::internal)?;
                str_at(&v, "/metadata/uid") == uid
            }
        })
    }

    /// Decides the allocation of a Service being created (`old` is `None`) or updated from
    /// `old`, and gives `svc` a chosen address. `svc` is defaulted and valid.
    pub(super) async fn plan_cluster_ip(
        &self,
        old: Option<&Value>,
        svc: &mut Value,
    ) -> Result<IpChange, ApiError> {
        let range = self.service_ip_range;
        let held = old.and_then(service_ip::held);
        let mut change = IpChange::default();
        match service_ip::wanted(svc) {
            Wanted::Exactly(ip) if Some(ip) == held => return Ok(change),
            Wanted::Exactly(ip) => {
                // Taken or not is the transaction's to say (its precondition is authoritative,
                // and a create of a Service that exists must answer AlreadyExists first).
                if let Err(e) = range.check_requested(ip, &service_key(svc), &HashSet::new()) {
                    return Err(invalid(svc, ip, &e));
                }
                change.claim = Some((ip, true));
            }
            Wanted::Any => {
                let ip = match range.choose(&self.allocated_ips()?, random_seed()) {
                    Ok(ip) => ip,
                    // Full as this server sees it: it may lag a release the leader has
                    // applied, so look again once caught up.
                    Err(_) => {
                        self.barrier(false).await?;
                        range
                            .choose(&self.allocated_ips()?, random_seed())
                            .map_err(|e| ApiError::internal(e.to_string()))?
                    }
                };
                service_ip::assign(svc, ip);
                change.claim = Some((ip, false));
            }
            Wanted::Nothing => {}
        }
        if let (Some(ip), Some(old)) = (held, old)
            && self.holds_record(ip, &str_at(old, "/metadata/uid"))?
        {
            change.release = Some(ip);
        }
        Ok(change)
    }

    /// The release of a Service's address when the Service is deleted.
    pub(super) fn release_on_delete(&self, svc: &Value) -> Result<IpChange, ApiError> {
        let mut change = IpChange::default();
        if str_at(svc, "/kind") == "Service"
            && let Some(ip) = service_ip::held(svc)
            && self.holds_record(ip, &str_at(svc, "/metadata/uid"))?
        {
            change.release = Some(ip);
        }
        Ok(change)
    }
}

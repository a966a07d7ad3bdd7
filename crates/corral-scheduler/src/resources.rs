//! Cpu and memory amounts, and a pod's effective request as Kubernetes computes it
//! (`k8s.io/component-helpers/resource.PodRequests`):
//!
//! - a container's request for a resource is `resources.requests[r]`, or `resources.limits[r]`
//!   when only the limit is set (Kubernetes' defaulting);
//! - the pod requests `max(sum of app containers + sum of sidecars, the largest init step)`, per
//!   resource, where a sidecar is an init container with `restartPolicy: Always` and an ordinary
//!   init container's step is its own request plus the sidecars started before it;
//! - plus `spec.overhead`.
//!
//! Scoring uses the same sum with a floor for containers that request nothing
//! ([`DEFAULT_MILLI_CPU_REQUEST`], [`DEFAULT_MEMORY_REQUEST`]), so best-effort pods still spread.

use corral_api::quantity::{QUANTITY_FORMAT, QuantityError, parse_quantity};
use serde_json::Value;

use crate::error::InvalidField;
use crate::json::{array, field, join, object, string};

/// Cpu a container that requests none is counted as using when scoring (Kubernetes'
/// `DefaultMilliCPURequest`: 0.1 core).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container that requests none is counted as using when scoring (Kubernetes'
/// `DefaultMemoryRequest`: 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of cpu (millicores) and memory (bytes). Arithmetic saturates instead of overflowing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    pub const fn new(milli_cpu: i64, memory: i64) -> Self {
        Self { milli_cpu, memory }
    }

    /// Field-wise sum.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
        }
    }

    /// Field-wise difference.
    #[must_use]
    pub fn minus(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory: self.memory.saturating_sub(other.memory),
        }
    }

    /// Field-wise maximum.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
        }
    }
}

/// What one container asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerRequest {
    /// The request (or the limit, when only the limit is set); 0 when neither is set.
    pub requests: Resources,
    /// The same, with the scoring floor for a resource that is not requested at all.
    pub nonzero: Resources,
    /// An init container with `restartPolicy: Always` (a sidecar).
    pub restartable: bool,
}

/// A pod's effective request, for fitting and for scoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// What must fit in a node's free allocatable.
    pub requests: Resources,
    /// What scoring counts (unrequested resources at their floor).
    pub nonzero: Resources,
}

fn quantity_rule(e: &QuantityError) -> String {
    match e {
        QuantityError::Format(_) => {
            format!("quantities must match the regular expression '{QUANTITY_FORMAT}'")
        }
        QuantityError::TooLarge(_) => "quantity is too large".to_string(),
    }
}

/// Reads a quantity: cpu in millicores (`milli`), anything else in whole units, rounded up as
/// Kubernetes rounds. Negative amounts are refused.
pub fn parse_amount(value: &Value, path: &str, milli: bool) -> Result<i64, InvalidField> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(InvalidField::new(path, other, "must be a quantity string")),
    };
    let q = parse_quantity(&text).map_err(|e| InvalidField::new(path, value, quantity_rule(&e)))?;
    if q.is_negative() {
        return Err(InvalidField::new(
            path,
            value,
            "must be greater than or equal to 0",
        ));
    }
    let amount = if milli { q.milli_value() } else { q.value() };
    Ok(i64::try_from(amount).unwrap_or(i64::MAX))
}

/// `cpu` and `memory` of a resource list (`allocatable`, `overhead`); others are ignored.
/// Returns `None` per resource that is not listed.
pub fn resource_list(
    obj: &Value,
    key: &str,
    path: &str,
) -> Result<(Option<i64>, Option<i64>), InvalidField> {
    let Some(map) = object(obj, key, path)? else {
        return Ok((None, None));
    };
    let path = join(path, key);
    let read = |name: &str, milli: bool| -> Result<Option<i64>, InvalidField> {
        match map.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => parse_amount(v, &join(&path, name), milli).map(Some),
        }
    };
    Ok((read("cpu", true)?, read("memory", false)?))
}

/// What a container asks for (`path` names the container, e.g. `spec.containers[0]`).
pub fn container_request(container: &Value, path: &str) -> Result<ContainerRequest, InvalidField> {
    if !container.is_object() {
        return Err(InvalidField::new(path, container, "must be an object"));
    }
    let restartable = string(container, "restartPolicy", path)? == Some("Always");
    let resources_path = join(path, "resources");
    let empty = Value::Null;
    let resources = field(container, "resources").unwrap_or(&empty);
    if !resources.is_null() && !resources.is_object() {
        return Err(InvalidField::new(
            resources_path,
            resources,
            "must be an object",
        ));
    }
    let (req_cpu, req_mem) = resource_list(resources, "requests", &resources_path)?;
    let (lim_cpu, lim_mem) = resource_list(resources, "limits", &resources_path)?;
    let cpu = req_cpu.or(lim_cpu);
    let memory = req_mem.or(lim_mem);
    Ok(ContainerRequest {
        requests: Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0)),
        nonzero: Resources::new(
            cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
        ),
        restartable,
    })
}

/// Kubernetes' effective request: app containers and sidecars run together; ordinary init
/// containers run one at a time next to the sidecars started before them.
pub fn effective_request(app: &[Resources], init: &[(Resources, bool)]) -> Resources {
    let mut total = app.iter().fold(Resources::default(), |acc, r| acc.plus(*r));
    let mut sidecars = Resources::default();
    let mut largest_init_step = Resources::default();
    for &(request, restartable) in init {
        let step = if restartable {
            total = total.plus(request);
            sidecars = sidecars.plus(request);
            sidecars
        } else {
            request.plus(sidecars)
        };
        largest_init_step = largest_init_step.max(step);
    }
    total.max(largest_init_step)
}

/// The effective request of a pod (its `spec`), with `spec.overhead` added.
pub fn pod_requests(pod: &Value) -> Result<PodRequests, InvalidField> {
    let empty = Value::Null;
    let spec = field(pod, "spec").unwrap_or(&empty);
    let mut app = (Vec::new(), Vec::new());
    for (i, c) in array(spec, "containers", "spec")?.iter().enumerate() {
        let r = container_request(c, &format!("spec.containers[{i}]"))?;
        app.0.push(r.requests);
        app.1.push(r.nonzero);
    }
    let mut init = (Vec::new(), Vec::new());
    for (i, c) in array(spec, "initContainers", "spec")?.iter().enumerate() {
        let r = container_request(c, &format!("spec.initContainers[{i}]"))?;
        init.0.push((r.requests, r.restartable));
        init.1.push((r.nonzero, r.restartable));
    }
    let (oh_cpu, oh_mem) = resource_list(spec, "overhead", "spec")?;
    let overhead = Resources::new(oh_cpu.unwrap_or(0), oh_mem.unwrap_or(0));
    Ok(PodRequests {
        requests: effective_request(&app.0, &init.0).plus(overhead),
        nonzero: effective_request(&app.1, &init.1).plus(overhead),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MI: i64 = 1024 * 1024;

    fn requests_of(spec: Value) -> PodRequests {
        pod_requests(&json!({ "spec": spec })).expect("the pod in the table is valid")
    }

    fn container(cpu: Option<&str>, memory: Option<&str>) -> Value {
        let mut requests = serde_json::Map::new();
        if let Some(c) = cpu {
            requests.insert("cpu".into(), json!(c));
        }
        if let Some(m) = memory {
            requests.insert("memory".into(), json!(m));
        }
        json!({ "name": "c", "resources": { "requests": requests } })
    }

    fn sidecar(cpu: &str, memory: &str) -> Value {
        let mut c = container(Some(cpu), Some(memory));
        c["restartPolicy"] = json!("Always");
        c
    }

    #[test]
    fn effective_requests_follow_the_kubernetes_rules() {
        let table: Vec<(&str, Value, Resources, Resources)> = vec![
            (
                "app containers add up",
                json!({ "containers": [container(Some("100m"), Some("64Mi")), container(Some("250m"), Some("128Mi"))] }),
                Resources::new(350, 192 * MI),
                Resources::new(350, 192 * MI),
            ),
            (
                "an init container larger than the app sum wins, per resource",
                json!({
                    "initContainers": [container(Some("2"), Some("10Mi")), container(Some("500m"), Some("1Gi"))],
                    "containers": [container(Some("1"), Some("256Mi")), container(Some("500m"), Some("256Mi"))],
                }),
                Resources::new(2000, 1024 * MI),
                Resources::new(2000, 1024 * MI),
            ),
            (
                "init containers smaller than the app sum change nothing",
                json!({
                    "initContainers": [container(Some("100m"), Some("16Mi"))],
                    "containers": [container(Some("1"), Some("256Mi"))],
                }),
                Resources::new(1000, 256 * MI),
                Resources::new(1000, 256 * MI),
            ),
            (
                "a limit without a request is the request",
                json!({ "containers": [{ "name": "c", "resources": {
                    "limits": { "cpu": "1500m", "memory": "1Gi" }, "requests": { "memory": "512Mi" } } }] }),
                Resources::new(1500, 512 * MI),
                Resources::new(1500, 512 * MI),
            ),
            (
                "nothing requested fits anywhere but scores at the floor",
                json!({ "containers": [{ "name": "c" }, container(Some("200m"), None)] }),
                Resources::new(200, 0),
                Resources::new(100 + 200, 2 * DEFAULT_MEMORY_REQUEST),
            ),
            (
                "an explicit zero is not floored",
                json!({ "containers": [container(Some("0"), Some("0"))] }),
                Resources::new(0, 0),
                Resources::new(0, 0),
            ),
            (
                "sidecars run beside the app and beside later init containers",
                json!({
                    "initContainers": [
                        sidecar("200m", "100Mi"),
                        container(Some("1"), Some("100Mi")),
                    ],
                    "containers": [container(Some("300m"), Some("50Mi"))],
                }),
                // app + sidecar = 500m/150Mi; the init step = 1 + 200m = 1200m / 200Mi.
                Resources::new(1200, 200 * MI),
                Resources::new(1200, 200 * MI),
            ),
            (
                "overhead is added on top",
                json!({
                    "containers": [container(Some("1"), Some("1Gi"))],
                    "overhead": { "cpu": "250m", "memory": "120Mi" },
                }),
                Resources::new(1250, 1144 * MI),
                Resources::new(1250, 1144 * MI),
            ),
            (
                "a pod without containers requests nothing",
                json!({}),
                Resources::new(0, 0),
                Resources::new(0, 0),
            ),
        ];
        for (case, spec, requests, nonzero) in table {
            let got = requests_of(spec);
            assert_eq!(got.requests, requests, "{case}: requests");
            assert_eq!(got.nonzero, nonzero, "{case}: nonzero");
        }
    }

    #[test]
    fn bad_quantities_name_the_field_the_value_and_the_rule() {
        let pod = json!({ "spec": { "containers": [
            container(Some("1"), None),
            { "name": "b", "resources": { "limits": { "memory": "lots" } } },
        ] } });
        let err = pod_requests(&pod).expect_err("`lots` is not a quantity");
        assert_eq!(err.path, "spec.containers[1].resources.limits.memory");
        assert_eq!(err.value, "\"lots\"");
        assert!(err.rule.contains("regular expression"), "{err}");
        assert!(
            err.to_string()
                .starts_with("spec.containers[1].resources.limits.memory: Invalid value: \"lots\": quantities must match"),
            "{err}"
        );

        let negative = json!({ "spec": { "initContainers": [container(Some("-1"), None)] } });
        let err = pod_requests(&negative).expect_err("negative requests are refused");
        assert_eq!(err.path, "spec.initContainers[0].resources.requests.cpu");
        assert_eq!(err.rule, "must be greater than or equal to 0");

        let not_a_container = json!({ "spec": { "containers": ["app"] } });
        let err = pod_requests(&not_a_container).expect_err("a container is an object");
        assert_eq!(err.path, "spec.containers[0]");

        let wrong_type = json!({ "spec": { "containers": { "name": "a" } } });
        let err = pod_requests(&wrong_type).expect_err("containers must be a list");
        assert_eq!(err.path, "spec.containers");
        assert_eq!(err.rule, "must be a list");
    }

    #[test]
    fn quantities_read_as_millicores_and_bytes() {
        assert_eq!(parse_amount(&json!("1.5"), "x", true), Ok(1500));
        assert_eq!(parse_amount(&json!(2), "x", true), Ok(2000));
        assert_eq!(parse_amount(&json!("1Gi"), "x", false), Ok(1024 * MI));
        assert_eq!(parse_amount(&json!("1k"), "x", false), Ok(1000));
    }
}

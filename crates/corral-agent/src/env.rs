//! A container's environment and command line, worked out the way the kubelet does it
//! (`makeEnvironmentVariables`, `ExpandContainerCommandAndArgs`).
//!
//! - `envFrom` first (ConfigMap `data` / Secret keys, each with the source's `prefix`), then `env`
//!   in order, so `env` overrides what `envFrom` set. Every name appears once in the result; a
//!   later definition replaces an earlier one's value.
//! - `env[].value` has `$(VAR)` references expanded against what is defined so far (`envFrom` and
//!   earlier `env` entries); `$$` is a literal `$`; an unknown `$(VAR)` stays as written.
//! - `valueFrom`: `configMapKeyRef`, `secretKeyRef` (with `optional`), `fieldRef`,
//!   `resourceFieldRef`. A missing non-optional ConfigMap, Secret or key is a
//!   [`ConfigError`] worded as the kubelet words it (`configmap "x" not found`,
//!   `couldn't find key k in ConfigMap default/x`); an optional one leaves the variable unset.
//! - Service links (`<SVC>_SERVICE_HOST`, `KUBERNETES_SERVICE_HOST`, ...) are **not** set: the
//!   kubelet adds them from the cluster's Services, and Corral has no Services yet.
//!
//! The helpers the volume plugins share (ConfigMap/Secret fetching, downward API values) live here
//! too.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use corral_api::ApiError;
use corral_api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use serde_json::Value;

/// The waiting reason of a container whose configuration cannot be worked out.
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// The waiting reason of a container whose pod's volumes cannot be set up yet (the kubelet keeps
/// such a pod in `ContainerCreating` and says why in a `FailedMount` event).
pub const CONTAINER_CREATING: &str = "ContainerCreating";

/// What the worker reads from the API to configure containers.
#[async_trait]
pub trait ConfigSource: Send + Sync {
    /// A ConfigMap's JSON, `None` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, ApiError>;
    /// A Secret's JSON, `None` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, ApiError>;
    /// Secrets of the namespace (to find a service account's token secret).
    async fn secrets(&self, namespace: &str) -> Result<Vec<Value>, ApiError>;
    /// The node's `status.allocatable` (`{"cpu": "4", "memory": "8Gi", ...}`): what the downward
    /// API reports as the limit of a container that sets none (as the kubelet does). The default
    /// answers `None`, and then the host's own figures are used: its CPU count, `MemTotal` of
    /// `/proc/meminfo`, and the size of the file system holding `/`.
    async fn node_allocatable(&self) -> Option<Value> {
        None
    }
    /// A PersistentVolumeClaim's JSON, `None` when it does not exist. The default knows none.
    async fn persistent_volume_claim(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> Result<Option<Value>, ApiError> {
        Ok(None)
    }
    /// A PersistentVolume's JSON, `None` when it does not exist. The default knows none.
    async fn persistent_volume(&self, _name: &str) -> Result<Option<Value>, ApiError> {
        Ok(None)
    }
}

/// Facts about the pod only the node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodContext {
    pub node_name: String,
    pub pod_ip: String,
    pub host_ip: String,
}

/// Why a container cannot be configured: the worker shows `reason` as the container's waiting
/// reason (CreateContainerConfigError) with `message`, e.g. `configmap "app-config" not found`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub reason: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A `CreateContainerConfigError`.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(CREATE_CONTAINER_CONFIG_ERROR, message)
    }
}

/// The whole environment of one container, in order, each name once.
///
/// Service-link variables are not included (no Services exist yet; see the module docs).
pub async fn container_env(
    pod: &Value,
    container: &Value,
    ctx: &PodContext,
    src: &dyn ConfigSource,
) -> Result<Vec<(String, String)>, ConfigError> {
    let pod = parse_pod(pod).map_err(ConfigError::config)?;
    let container = parse_container(container).map_err(ConfigError::config)?;
    let namespace = pod_namespace(&pod);
    let mut fetch = Fetcher::new(src, &namespace);
    let mut env = EnvList::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (what, name, entries): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &from.config_map_ref {
                let Some(cm) = fetch
                    .config_map(&r.name)
                    .await
                    .map_err(ConfigError::config)?
                else {
                    if r.optional == Some(true) {
                        continue;
                    }
                    return Err(ConfigError::config(not_found("configmap", &r.name)));
                };
                let data = cm.data.unwrap_or_default().into_iter().collect();
                ("configMap", &r.name, data)
            } else if let Some(r) = &from.secret_ref {
                let Some(secret) = fetch.secret(&r.name).await.map_err(ConfigError::config)? else {
                    if r.optional == Some(true) {
                        continue;
                    }
                    return Err(ConfigError::config(not_found("secret", &r.name)));
                };
                let data = secret
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                ("secret", &r.name, data)
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (key, value) in entries {
            let var = format!("{prefix}{key}");
            if is_env_var_name(&var) {
                env.set(var, value);
            } else {
                invalid.push(var);
            }
        }
        if !invalid.is_empty() {
            tracing::warn!(
                pod = %pod_name(&pod),
                "Keys [{}] from the EnvFrom {what} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            );
        }
    }

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            expand(literal, |name| env.get(name).map(str::to_string))
        } else if let Some(from) = &var.value_from {
            if let Some(fs) = &from.field_ref {
                field_ref_value(&pod, fs, ctx).map_err(ConfigError::config)?
            } else if let Some(fs) = &from.resource_field_ref {
                let alloc = fetch.allocatable().await;
                resource_field_value(&pod, &container, fs, &alloc).map_err(ConfigError::config)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = fetch
                    .config_map(&r.name)
                    .await
                    .map_err(ConfigError::config)?
                else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::config(not_found("configmap", &r.name)));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::config(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(secret) = fetch.secret(&r.name).await.map_err(ConfigError::config)? else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::config(not_found("secret", &r.name)));
                };
                match secret.get(&r.key) {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::config(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if from.file_key_ref.is_some() {
                return Err(ConfigError::config(format!(
                    "env var {}: fileKeyRef is not supported by Corral",
                    var.name
                )));
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.vars)
}

/// The argv of a container: `command` then `args`, each with `$(VAR)` expanded against `env`
/// (unknown references stay as written, `$$` is a literal `$`). Empty when the container sets
/// neither (the image's entrypoint would apply; the worker decides what that means).
pub fn expand_argv(container: &Value, env: &[(String, String)]) -> Vec<String> {
    let (mut argv, args) = expand_command_and_args(container, env);
    argv.extend(args);
    argv
}

/// `command` and `args` each with `$(VAR)` expanded, apart (a runtime that runs images keeps the
/// image's ENTRYPOINT when `command` is empty, and its CMD when both are).
pub fn expand_command_and_args(
    container: &Value,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|s| {
                        expand(s.as_str().unwrap_or_default(), |name| {
                            vars.get(name).map(|v| v.to_string())
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    (strings("command"), strings("args"))
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$(NAME)` becomes
/// `mapping(NAME)` or stays `$(NAME)` when the mapping knows no such name; `$$` becomes `$`;
/// an unterminated `$(` and any other `$x` are kept as written.
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = String::from_utf8_lossy(&rest[1..close]);
                        match mapping(&name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => {
                                out.extend_from_slice(b"$(");
                                out.extend_from_slice(name.as_bytes());
                                out.push(b')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `name` can be an environment variable name under Kubernetes 1.34's rule
/// (`RelaxedEnvironmentVariableValidation`, GA in 1.34): one or more printable ASCII characters
/// other than `=`. `envFrom` names that fail it (a prefix or key with `=` or a control
/// character) are skipped with a warning, as the kubelet skips invalid `envFrom` names; names
/// the older C-identifier rule refused (`1key`, `a.b`, `Logging:Level`) are kept, as the 1.34
/// kubelet keeps them.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (32..=126).contains(&b) && b != b'=')
}

/// An ordered environment with each name once.
#[derive(Default)]
struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

// ---- shared with the volume plugins ----

pub(crate) fn parse_pod(pod: &Value) -> Result<Pod, String> {
    serde_json::from_value(pod.clone()).map_err(|e| format!("the pod does not parse: {e}"))
}

pub(crate) fn parse_container(container: &Value) -> Result<Container, String> {
    serde_json::from_value(container.clone())
        .map_err(|e| format!("the container does not parse: {e}"))
}

pub(crate) fn pod_namespace(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod_namespace(pod),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The kubelet's words for an object that does not exist (`configmap "x" not found`).
pub(crate) fn not_found(kind: &str, name: &str) -> String {
    format!("{kind} \"{name}\" not found")
}

/// A Secret's keys and decoded values: `data` (base64) with `stringData` over it, as the API
/// server merges them on write.
pub(crate) type SecretData = BTreeMap<String, Vec<u8>>;

pub(crate) fn secret_data(secret: Secret) -> SecretData {
    let mut data: SecretData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

/// Node figures the downward API falls back on for a container without limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocatable {
    pub cpu_millis: i128,
    pub memory_bytes: i128,
    pub ephemeral_storage_bytes: i128,
}

impl Allocatable {
    /// From a Node's `status.allocatable`, with the host's own figures for what it lacks.
    pub(crate) fn from_node(allocatable: Option<&Value>) -> Allocatable {
        let quantity = |name: &str| {
            allocatable
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .and_then(|q| parse_quantity(q).ok())
        };
        Allocatable {
            cpu_millis: quantity("cpu")
                .map(|q| q.milli_value())
                .unwrap_or_else(host_cpu_millis),
            memory_bytes: quantity("memory")
                .map(|q| q.value())
                .unwrap_or_else(host_memory_bytes),
            ephemeral_storage_bytes: quantity("ephemeral-storage")
                .map(|q| q.value())
                .unwrap_or_else(host_disk_bytes),
        }
    }
}

fn host_cpu_millis() -> i128 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    i128::try_from(cpus).unwrap_or(1) * 1000
}

fn host_memory_bytes() -> i128 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i128>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

fn host_disk_bytes() -> i128 {
    nix::sys::statvfs::statvfs("/").map_or(0, |s| {
        i128::from(s.blocks()) * i128::from(s.fragment_size())
    })
}

/// Reads ConfigMaps and Secrets of one namespace through a [`ConfigSource`], each at most once per
/// use (as the kubelet caches them within one `makeEnvironmentVariables`).
pub(crate) struct Fetcher<'a> {
    src: &'a dyn ConfigSource,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<SecretData>>,
    allocatable: Option<Allocatable>,
}

impl<'a> Fetcher<'a> {
    pub(crate) fn new(src: &'a dyn ConfigSource, namespace: &str) -> Self {
        Self {
            src,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
            allocatable: None,
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn source(&self) -> &'a dyn ConfigSource {
        self.src
    }

    /// The ConfigMap, `None` when it does not exist; `Err` with a message when it cannot be read.
    pub(crate) async fn config_map(&mut self, name: &str) -> Result<Option<ConfigMap>, String> {
        if let Some(cached) = self.config_maps.get(name) {
            return Ok(cached.clone());
        }
        let got = match self.src.config_map(&self.namespace, name).await {
            Ok(v) => v,
            Err(ApiError::NotFound { .. }) => None,
            Err(e) => {
                return Err(format!(
                    "couldn't get configMap {}/{name}: {e}",
                    self.namespace
                ));
            }
        };
        let parsed =
            match got {
                None => None,
                Some(v) => Some(serde_json::from_value::<ConfigMap>(v).map_err(|e| {
                    format!("configmap {}/{name} does not parse: {e}", self.namespace)
                })?),
            };
        self.config_maps.insert(name.to_string(), parsed.clone());
        Ok(parsed)
    }

    /// The Secret's decoded data, `None` when it does not exist.
    pub(crate) async fn secret(&mut self, name: &str) -> Result<Option<SecretData>, String> {
        if let Some(cached) = self.secrets.get(name) {
            return Ok(cached.clone());
        }
        let got = match self.src.secret(&self.namespace, name).await {
            Ok(v) => v,
            Err(ApiError::NotFound { .. }) => None,
            Err(e) => {
                return Err(format!(
                    "couldn't get secret {}/{name}: {e}",
                    self.namespace
                ));
            }
        };
        let parsed = match got {
            None => None,
            Some(v) => Some(secret_data(serde_json::from_value::<Secret>(v).map_err(
                |e| format!("secret {}/{name} does not parse: {e}", self.namespace),
            )?)),
        };
        self.secrets.insert(name.to_string(), parsed.clone());
        Ok(parsed)
    }

    pub(crate) async fn allocatable(&mut self) -> Allocatable {
        if let Some(a) = self.allocatable {
            return a;
        }
        let node = self.src.node_allocatable().await;
        let a = Allocatable::from_node(node.as_ref());
        self.allocatable = Some(a);
        a
    }
}

/// The value of a downward API `fieldRef` (the kubelet's `podFieldSelectorRuntimeValue` and
/// `fieldpath.ExtractFieldPathAsString`).
pub(crate) fn field_ref_value(
    pod: &Pod,
    fs: &ObjectFieldSelector,
    ctx: &PodContext,
) -> Result<String, String> {
    if let Some(version) = fs.api_version.as_deref()
        && !version.is_empty()
        && version != "v1"
    {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = fs.field_path.as_str();
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let pod_ip = if ctx.pod_ip.is_empty() {
        status.and_then(|s| s.pod_ip.clone()).unwrap_or_default()
    } else {
        ctx.pod_ip.clone()
    };
    let host_ip = if ctx.host_ip.is_empty() {
        status.and_then(|s| s.host_ip.clone()).unwrap_or_default()
    } else {
        ctx.host_ip.clone()
    };
    match path {
        "spec.nodeName" => {
            let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
            return Ok(if node.is_empty() {
                ctx.node_name.clone()
            } else {
                node
            });
        }
        "spec.serviceAccountName" => {
            return Ok(spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default());
        }
        "status.hostIP" | "status.hostIPs" => return Ok(host_ip),
        "status.podIP" | "status.podIPs" => return Ok(pod_ip),
        _ => {}
    }
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => {
                corral_api::validation::check_qualified_name(&key.to_lowercase())
                    .map_err(|e| format!("invalid key subscript in {path}: {e}"))?;
                Ok(meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default())
            }
            "metadata.labels" => {
                corral_api::validation::check_qualified_name(key)
                    .map_err(|e| format!("invalid key subscript in {path}: {e}"))?;
                Ok(meta
                    .labels
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default())
            }
            _ => Err(format!("fieldPath {path:?} does not support subscript")),
        };
    }
    match path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(pod_namespace(pod)),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// The kubelet's `fieldpath.FormatMap`: `key="value"` lines in key order, values quoted as Go's
/// `%q` quotes them.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let n = u32::from(c);
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a downward API `resourceFieldRef` for `container` (the kubelet's
/// `ExtractContainerResourceValue` after `defaultPodLimitsForDownwardAPI`): a missing (or zero)
/// limit is the pod-level limit when the pod sets one, else the node's allocatable; cpu is
/// rounded up to whole divisors, as are memory and ephemeral storage.
pub(crate) fn resource_field_value(
    pod: &Pod,
    container: &Container,
    fs: &ResourceFieldSelector,
    alloc: &Allocatable,
) -> Result<String, String> {
    let divisor = match fs.divisor.as_ref().map(|d| d.0.as_str()) {
        None | Some("") => None,
        Some(text) => {
            let q = parse_quantity(text).map_err(|e| format!("divisor: {e}"))?;
            (q.milli_value() != 0).then_some(q)
        }
    };
    let (kind, resource) = fs
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", fs.resource))?;
    let resources = container.resources.as_ref();
    let own = |kind: &str| match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        _ => resources.and_then(|r| r.requests.as_ref()),
    };
    let quantity = |name: &str| -> Result<Option<corral_api::quantity::Quantity>, String> {
        match own(kind).and_then(|m| m.get(name)) {
            Some(q) => parse_quantity(&q.0)
                .map(Some)
                .map_err(|e| format!("{kind}.{name}: {e}")),
            None => Ok(None),
        }
    };
    let pod_limit = |name: &str| -> Option<corral_api::quantity::Quantity> {
        pod.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .and_then(|q| parse_quantity(&q.0).ok())
            .filter(|q| q.milli_value() != 0)
    };
    match (kind, resource) {
        ("limits" | "requests", "cpu") => {
            let milli =
                match quantity("cpu")?.filter(|q| kind == "requests" || q.milli_value() != 0) {
                    Some(q) => q.milli_value(),
                    None if kind == "limits" => {
                        pod_limit("cpu").map_or(alloc.cpu_millis, |q| q.milli_value())
                    }
                    None => 0,
                };
            let per = divisor.map_or(1000, |d| d.milli_value());
            Ok(div_ceil(milli, per).to_string())
        }
        ("limits" | "requests", "memory" | "ephemeral-storage") => {
            let fallback = if resource == "memory" {
                pod_limit("memory").map_or(alloc.memory_bytes, |q| q.value())
            } else {
                alloc.ephemeral_storage_bytes
            };
            let bytes = match quantity(resource)?.filter(|q| kind == "requests" || q.value() != 0) {
                Some(q) => q.value(),
                None if kind == "limits" => fallback,
                None => 0,
            };
            let per = divisor.map_or(1, |d| d.value());
            if per == 0 {
                return Err(format!("divisor of {} must not be zero", fs.resource));
            }
            Ok(div_ceil(bytes, per).to_string())
        }
        _ => Err(format!("unsupported container resource : {}", fs.resource)),
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// An in-memory ConfigSource: objects by (namespace, name).
    #[derive(Default)]
    pub(crate) struct MemSource {
        pub config_maps: Mutex<BTreeMap<(String, String), Value>>,
        pub secrets: Mutex<BTreeMap<(String, String), Value>>,
        pub allocatable: Option<Value>,
        pub calls: Mutex<u32>,
        /// PersistentVolumeClaims (by namespace and name) and PersistentVolumes (namespace `""`).
        pub storage: Mutex<BTreeMap<(String, String), Value>>,
    }

    impl MemSource {
        pub(crate) fn with_config_map(self, ns: &str, name: &str, data: Value) -> Self {
            self.put_config_map(ns, name, data);
            self
        }
        pub(crate) fn put_config_map(&self, ns: &str, name: &str, data: Value) {
            self.config_maps.lock().expect("lock").insert(
                (ns.into(), name.into()),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}),
            );
        }
        pub(crate) fn put_storage(&self, obj: Value) {
            let key = (
                corral_api::object::namespace(&obj).to_string(),
                corral_api::object::name(&obj).to_string(),
            );
            self.storage.lock().expect("lock").insert(key, obj);
        }
        pub(crate) fn with_object(self, ns: &str, name: &str, obj: Value) -> Self {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let map = if kind == "Secret" {
                &self.secrets
            } else {
                &self.config_maps
            };
            map.lock()
                .expect("lock")
                .insert((ns.into(), name.into()), obj);
            self
        }
        pub(crate) fn with_secret(self, ns: &str, name: &str, data: Value) -> Self {
            self.with_object(
                ns,
                name,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data}),
            )
        }
    }

    #[async_trait]
    impl ConfigSource for MemSource {
        async fn config_map(&self, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
            *self.calls.lock().expect("lock") += 1;
            Ok(self
                .config_maps
                .lock()
                .expect("lock")
                .get(&(ns.into(), name.into()))
                .cloned())
        }
        async fn secret(&self, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
            *self.calls.lock().expect("lock") += 1;
            Ok(self
                .secrets
                .lock()
                .expect("lock")
                .get(&(ns.into(), name.into()))
                .cloned())
        }
        async fn secrets(&self, ns: &str) -> Result<Vec<Value>, ApiError> {
            Ok(self
                .secrets
                .lock()
                .expect("lock")
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect())
        }
        async fn node_allocatable(&self) -> Option<Value> {
            self.allocatable.clone()
        }
        async fn persistent_volume_claim(
            &self,
            ns: &str,
            name: &str,
        ) -> Result<Option<Value>, ApiError> {
            Ok(self
                .storage
                .lock()
                .expect("lock")
                .get(&(ns.into(), name.into()))
                .cloned())
        }
        async fn persistent_volume(&self, name: &str) -> Result<Option<Value>, ApiError> {
            Ok(self
                .storage
                .lock()
                .expect("lock")
                .get(&(String::new(), name.into()))
                .cloned())
        }
    }

    pub(crate) fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    pub(crate) fn ctx() -> PodContext {
        PodContext {
            node_name: "node-1".into(),
            pod_ip: "10.0.0.7".into(),
            host_ip: "192.168.1.5".into(),
        }
    }

    fn pod_with(container: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": "say \"hi\"\n"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default", "containers": [container]},
        })
    }

    async fn env_of(
        container: Value,
        src: &MemSource,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let pod = pod_with(container.clone());
        container_env(&pod, &container, &ctx(), src).await
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn literal_values_expand_earlier_vars_in_order() {
        let c = json!({"name": "c", "image": "busybox", "env": [
            {"name": "A", "value": "one"},
            {"name": "B", "value": "$(A)-two"},
            {"name": "C", "value": "$(UNKNOWN) $$(A) $$ $x $(A"},
            {"name": "D", "value": "$(D_LATER)"},
            {"name": "D_LATER", "value": "late"},
            {"name": "E"},
            {"name": "A", "value": "again $(A)"},
        ]});
        let env = env_of(c, &MemSource::default()).await.expect("env");
        assert_eq!(
            env,
            vec![
                ("A".into(), "again one".into()),
                ("B".into(), "one-two".into()),
                ("C".into(), "$(UNKNOWN) $(A) $ $x $(A".into()),
                ("D".into(), "$(D_LATER)".into()),
                ("D_LATER".into(), "late".into()),
                ("E".into(), "".into()),
            ]
        );
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let m = |name: &str| (name == "V").then(|| "val".to_string());
        assert_eq!(expand("$(V)", m), "val");
        assert_eq!(expand("a$(V)b$(V)", m), "avalbval");
        assert_eq!(expand("$$(V)", m), "$(V)");
        assert_eq!(expand("$$$(V)", m), "$val");
        assert_eq!(expand("$", m), "$");
        assert_eq!(expand("x$", m), "x$");
        assert_eq!(expand("$(", m), "$(");
        assert_eq!(expand("$(V", m), "$(V");
        assert_eq!(expand("$()", m), "$()");
        assert_eq!(expand("$V", m), "$V");
        assert_eq!(expand("é$(V)ü", m), "évalü");
        assert_eq!(expand("$é", m), "$é");
    }

    #[test]
    fn argv_is_command_then_args_expanded() {
        let c =
            json!({"name": "c", "command": ["sh", "-c"], "args": ["echo $(MSG) $$(MSG) $(NOPE)"]});
        let env = vec![("MSG".to_string(), "hello".to_string())];
        assert_eq!(
            expand_argv(&c, &env),
            vec!["sh", "-c", "echo hello $(MSG) $(NOPE)"]
        );
        assert!(expand_argv(&json!({"name": "c"}), &env).is_empty());
        assert_eq!(
            expand_argv(&json!({"name": "c", "args": ["$(MSG)"]}), &env),
            vec!["hello"]
        );
    }

    #[tokio::test]
    async fn config_map_and_secret_key_refs() {
        let src = MemSource::default()
            .with_config_map("default", "app-config", json!({"mode": "fast"}))
            .with_secret("default", "creds", json!({"password": b64("s3cret")}))
            .with_object(
                "default",
                "strdata",
                json!({"kind": "Secret", "metadata": {"name": "strdata"}, "data": {"a": b64("from-data")}, "stringData": {"a": "from-stringData", "b": "plain"}}),
            );
        let c = json!({"name": "c", "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "SA", "valueFrom": {"secretKeyRef": {"name": "strdata", "key": "a"}}},
            {"name": "SB", "valueFrom": {"secretKeyRef": {"name": "strdata", "key": "b"}}},
            {"name": "OPT_KEY", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "nope", "optional": true}}},
            {"name": "OPT_CM", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": true}}},
            {"name": "OPT_S", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "x", "optional": true}}},
            {"name": "OPT_SKEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "x", "optional": true}}},
            {"name": "USE", "value": "$(MODE)/$(PASS)"},
        ]});
        let env = env_of(c, &src).await.expect("env");
        assert_eq!(get(&env, "MODE"), Some("fast"));
        assert_eq!(get(&env, "PASS"), Some("s3cret"));
        assert_eq!(get(&env, "SA"), Some("from-stringData"));
        assert_eq!(get(&env, "SB"), Some("plain"));
        assert_eq!(get(&env, "USE"), Some("fast/s3cret"));
        for unset in ["OPT_KEY", "OPT_CM", "OPT_S", "OPT_SKEY"] {
            assert_eq!(get(&env, unset), None, "{unset}");
        }
        // Each object (found or not) is read once per call.
        assert_eq!(*src.calls.lock().expect("lock"), 5);
    }

    #[tokio::test]
    async fn missing_sources_are_worded_as_the_kubelet_words_them() {
        let src = MemSource::default()
            .with_config_map("default", "app-config", json!({"mode": "fast"}))
            .with_secret("default", "creds", json!({"password": b64("x")}));
        let cases = [
            (
                json!({"configMapKeyRef": {"name": "nope", "key": "k"}}),
                "configmap \"nope\" not found",
            ),
            (
                json!({"configMapKeyRef": {"name": "app-config", "key": "k"}}),
                "couldn't find key k in ConfigMap default/app-config",
            ),
            (
                json!({"secretKeyRef": {"name": "nope", "key": "k"}}),
                "secret \"nope\" not found",
            ),
            (
                json!({"secretKeyRef": {"name": "creds", "key": "k"}}),
                "couldn't find key k in Secret default/creds",
            ),
            (
                json!({"fieldRef": {"fieldPath": "spec.nope"}}),
                "unsupported fieldPath: spec.nope",
            ),
            (
                json!({"resourceFieldRef": {"resource": "limits.gpu"}}),
                "unsupported container resource : limits.gpu",
            ),
        ];
        for (value_from, message) in cases {
            let c = json!({"name": "c", "env": [{"name": "X", "valueFrom": value_from}]});
            let err = env_of(c, &src).await.expect_err(message);
            assert_eq!(
                err,
                ConfigError {
                    reason: "CreateContainerConfigError".into(),
                    message: message.into()
                }
            );
        }
        for (from, message) in [
            (
                json!({"configMapRef": {"name": "nope"}}),
                "configmap \"nope\" not found",
            ),
            (
                json!({"secretRef": {"name": "nope"}}),
                "secret \"nope\" not found",
            ),
        ] {
            let c = json!({"name": "c", "envFrom": [from]});
            let err = env_of(c, &src).await.expect_err(message);
            assert_eq!(err.message, message);
            assert_eq!(err.reason, CREATE_CONTAINER_CONFIG_ERROR);
        }
    }

    #[tokio::test]
    async fn env_from_with_prefix_optional_and_override() {
        let src = MemSource::default()
            .with_config_map(
                "default",
                "cfg",
                json!({"LOG_LEVEL": "debug", "PORT": "80", "1starts-digit": "ok", "a.b": "dots"}),
            )
            .with_secret(
                "default",
                "sec",
                json!({"TOKEN": b64("tkn"), "PORT": b64("443")}),
            );
        let c = json!({"name": "c",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "sec"}, "prefix": "S_"},
                {"configMapRef": {"name": "gone", "optional": true}},
                {"secretRef": {"name": "gone", "optional": true}},
                {"prefix": "BAD=", "configMapRef": {"name": "cfg"}},
            ],
            "env": [{"name": "PORT", "value": "8080 after $(LOG_LEVEL)"}]});
        let env = env_of(c, &src).await.expect("env");
        assert_eq!(
            env,
            vec![
                ("1starts-digit".into(), "ok".into()),
                ("LOG_LEVEL".into(), "debug".into()),
                ("PORT".into(), "8080 after debug".into()),
                ("a.b".into(), "dots".into()),
                ("S_PORT".into(), "443".into()),
                ("S_TOKEN".into(), "tkn".into()),
            ]
        );
        assert!(is_env_var_name("Logging:LogLevel:Default"));
        assert!(!is_env_var_name("A=B"));
        assert!(!is_env_var_name(""));
        assert!(!is_env_var_name("tab\there"));
    }

    #[tokio::test]
    async fn field_refs() {
        let c = json!({"name": "c", "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOLABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
            {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations"}}},
            {"name": "URL", "value": "http://$(IP):80/$(NAME)"},
        ]});
        let env = env_of(c, &MemSource::default()).await.expect("env");
        let expect = [
            ("NAME", "web"),
            ("NS", "default"),
            ("UID", "uid-1"),
            ("APP", "web"),
            ("NOLABEL", ""),
            ("NOTE", "say \"hi\"\n"),
            ("NODE", "node-1"),
            ("SA", "default"),
            ("IP", "10.0.0.7"),
            ("IPS", "10.0.0.7"),
            ("HOST", "192.168.1.5"),
            ("LABELS", "app=\"web\"\ntier=\"front\""),
            ("ANN", "note=\"say \\\"hi\\\"\\n\""),
            ("URL", "http://10.0.0.7:80/web"),
        ];
        for (name, value) in expect {
            assert_eq!(get(&env, name), Some(value), "{name}");
        }
        let bad = json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}]});
        let err = env_of(bad, &MemSource::default()).await.expect_err("v2");
        assert_eq!(err.message, "unsupported pod version: v2");
        let bad = json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['-bad-']"}}}]});
        let err = env_of(bad, &MemSource::default())
            .await
            .expect_err("bad key");
        assert!(
            err.message
                .starts_with("invalid key subscript in metadata.labels['-bad-']: "),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn resource_field_refs_round_up_and_fall_back_to_allocatable() {
        let src = MemSource {
            allocatable: Some(json!({"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"})),
            ..Default::default()
        };
        let c = json!({"name": "c",
        "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "32Mi"}},
        "env": [
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_LIMIT_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1"}}},
            {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "MEM_LIMIT_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "MEM_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1M"}}},
            {"name": "EPH", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}}},
            {"name": "EPH_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.ephemeral-storage"}}},
        ]});
        let env = env_of(c, &src).await.expect("env");
        for (name, value) in [
            ("CPU_LIMIT", "1"),
            ("CPU_LIMIT_M", "250"),
            ("CPU_REQ", "1"),
            ("MEM_LIMIT", "67108864"),
            ("MEM_LIMIT_MI", "64"),
            ("MEM_REQ_M", "34"),
            ("EPH", "100"),
            ("EPH_REQ", "0"),
        ] {
            assert_eq!(get(&env, name), Some(value), "{name}");
        }

        // No limits: the node's allocatable (or the pod-level limit when set).
        let c = json!({"name": "c", "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
            {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
        ]});
        let env = env_of(c.clone(), &src).await.expect("env");
        assert_eq!(get(&env, "CPU"), Some("4000"));
        assert_eq!(get(&env, "MEM"), Some("8"));
        assert_eq!(get(&env, "REQ"), Some("0"));
        let mut pod = pod_with(c.clone());
        pod["spec"]["resources"] = json!({"limits": {"cpu": "2", "memory": "1Gi"}});
        let env = container_env(&pod, &c, &ctx(), &src).await.expect("env");
        assert_eq!(get(&env, "CPU"), Some("2000"));
        assert_eq!(get(&env, "MEM"), Some("1"));

        // Without node figures, the host's own.
        let env = env_of(c, &MemSource::default()).await.expect("env");
        let cpu: i128 = get(&env, "CPU").and_then(|v| v.parse().ok()).expect("cpu");
        assert!(cpu >= 1000 && cpu % 1000 == 0, "{cpu}");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c\td\u{1}"), "\"a\\\"b\\\\c\\td\\x01\"");
        assert_eq!(go_quote("ünï"), "\"ünï\"");
    }
}

//! A pod's volumes on the node, and the mounts of each container, the way the kubelet lays them
//! out.
//!
//! Every volume the agent makes lives under `<root>/pods/<uid>/volumes/<plugin>/<name>`, with the
//! kubelet's plugin names:
//!
//! | volume | directory | in the container |
//! |---|---|---|
//! | `emptyDir` | `kubernetes.io~empty-dir/<name>` (mode 0777) | read-write |
//! | `hostPath` | the host path itself, after its `type` check | read-write |
//! | `persistentVolumeClaim` | the bound volume's `hostPath`/`local` path | read-write |
//! | `configMap` | `kubernetes.io~configmap/<name>` | read-only |
//! | `secret` | `kubernetes.io~secret/<name>` | read-only |
//! | `downwardAPI` | `kubernetes.io~downward-api/<name>` | read-only |
//! | `projected` | `kubernetes.io~projected/<name>` | read-only |
//!
//! Deliberate differences from the kubelet, all of them about what backs a directory:
//! - `emptyDir` with `medium: Memory` (or `HugePages*`) is a plain directory on the node's disk,
//!   not a tmpfs, and `sizeLimit` is not enforced. Secrets are plain files too (the kubelet puts
//!   them on tmpfs); their files get the modes the pod asks for.
//! - `fsGroup` ownership is not applied.
//! - The `serviceAccountToken` projection writes the `token` of the service account's legacy token
//!   Secret (type `kubernetes.io/service-account-token`, annotation
//!   `kubernetes.io/service-account.name`), not a TokenRequest token: `audience` and
//!   `expirationSeconds` are not honoured. Until such a Secret exists in the namespace the file is
//!   empty; it fills in on a later [`prepare_volumes`] once the account's token Secret appears.
//! - Volume types other than those above and `persistentVolumeClaim` (nfs, csi, image, ...) get a
//!   `CreateContainerConfigError` saying they are not supported.
//!
//! A `persistentVolumeClaim` volume is its claim's bound PersistentVolume's directory on this
//! node (`spec.hostPath.path` or `spec.local.path`, the only sources Corral's volumes have),
//! mounted read-write unless the pod's volume says `readOnly`. The claim must exist, not be
//! being deleted and be Bound, and the volume must belong to this node (its
//! `kubernetes.io/hostname` node affinity); until then the pod stays `ContainerCreating` with a
//! `FailedMount` event naming why (`persistentvolumeclaim "data" is not bound`). A hostPath
//! volume gets the same type check as a hostPath pod volume; a volume made by the local-path
//! provisioner (`pv.kubernetes.io/provisioned-by: corral.io/local-path`) is created on first
//! use, mode 0777 as rancher's local-path-provisioner makes it, so any container user can write.
//! The agent never removes a persistent volume's data: its reclaim policy is the controllers'
//! business.
//!
//! ConfigMap, Secret, downward API and projected contents are written as the kubelet's
//! `AtomicWriter` writes them, so a reader in the container never sees half an update:
//! ```text
//! <volume>/..2025_01_02_15_04_05.123456789/<key>   the files of one version
//! <volume>/..data -> ..2025_01_02_15_04_05.123456789   swapped atomically by rename
//! <volume>/<key> -> ..data/<key>                   what the container sees
//! ```
//! [`prepare_volumes`] is idempotent: when every file already holds the right bytes and mode it
//! writes nothing, so the worker can call it periodically to carry ConfigMap and Secret updates
//! into running pods (a `subPath` mount of such a volume does not see updates, as in Kubernetes).
//!
//! Errors: a volume that cannot be set up now (a missing ConfigMap, a hostPath that fails its type
//! check) is a [`ConfigError`] with reason `ContainerCreating` and the kubelet's `FailedMount`
//! words, `MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found` (the
//! kubelet keeps such a pod in `ContainerCreating` and retries); an unsupported volume type and a
//! bad `volumeMount` are `CreateContainerConfigError`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume,
};
use serde_json::Value;

use crate::env::{
    Allocatable, CONTAINER_CREATING, ConfigError, ConfigSource, Fetcher, PodContext, SecretData,
    expand, field_ref_value, not_found, parse_container, parse_pod, pod_namespace,
    resource_field_value, secret_data,
};
use crate::runtime::{Mount, pod_dir};

pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP_PLUGIN: &str = "kubernetes.io~configmap";
pub const SECRET_PLUGIN: &str = "kubernetes.io~secret";
pub const DOWNWARD_API_PLUGIN: &str = "kubernetes.io~downward-api";
pub const PROJECTED_PLUGIN: &str = "kubernetes.io~projected";

/// The mode of a projected file when the pod sets none (Kubernetes' `defaultMode` 420).
pub const DEFAULT_MODE: u32 = 0o644;
/// The cluster domain of the names in a pod's hosts file.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_FILE_NAME_LEN: usize = 255;
const MAX_PATH_LEN: usize = 4096;
const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// One volume of a pod, ready on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The directory (or, for a hostPath, the file) on the node.
    pub host_path: PathBuf,
    /// Whether containers always get it read-only (configMap, secret, downwardAPI, projected).
    pub read_only: bool,
}

/// The volumes of a pod by name, ready on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedVolumes {
    volumes: BTreeMap<String, PreparedVolume>,
}

impl PreparedVolumes {
    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    /// The host path of the volume `name`.
    pub fn host_path(&self, name: &str) -> Option<&Path> {
        self.volumes.get(name).map(|v| v.host_path.as_path())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PreparedVolume)> {
        self.volumes.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.volumes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
    }
}

/// `<root>/pods/<uid>/volumes`.
pub fn volumes_dir(root: &Path, pod_uid: &str) -> PathBuf {
    pod_dir(root, pod_uid).join("volumes")
}

/// `<root>/pods/<uid>/volumes/<plugin>/<name>`.
pub fn volume_dir(root: &Path, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
    volumes_dir(root, pod_uid).join(plugin).join(name)
}

/// Sets up every volume of the pod (creating directories, checking hostPaths, writing ConfigMap,
/// Secret, downward API and projected files) and says where each is. Idempotent and cheap when
/// nothing changed; call it again to propagate ConfigMap and Secret updates. Every volume is
/// attempted; the first error is returned.
pub async fn prepare_volumes(
    root: &Path,
    pod: &Value,
    ctx: &PodContext,
    src: &dyn ConfigSource,
) -> Result<PreparedVolumes, ConfigError> {
    let typed = parse_pod(pod).map_err(ConfigError::config)?;
    let uid = pod_uid(&typed).map_err(ConfigError::config)?;
    let namespace = pod_namespace(&typed);
    let mut fetch = Fetcher::new(src, &namespace);
    let raw_volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut prepared = PreparedVolumes::default();
    let mut first_error = None;
    let volumes = typed
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for (i, volume) in volumes.iter().enumerate() {
        let result = prepare_one(
            root,
            &uid,
            &typed,
            volume,
            raw_volumes.get(i),
            ctx,
            &mut fetch,
        )
        .await;
        match result {
            Ok(v) => {
                prepared.volumes.insert(volume.name.clone(), v);
            }
            Err(e) => {
                tracing::debug!(pod_uid = %uid, volume = %volume.name, error = %e.message, "volume not ready");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(prepared),
    }
}

fn mount_failed(volume: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        CONTAINER_CREATING,
        format!("MountVolume.SetUp failed for volume \"{volume}\" : {message}"),
    )
}

async fn prepare_one(
    root: &Path,
    uid: &str,
    pod: &Pod,
    volume: &Volume,
    raw: Option<&Value>,
    ctx: &PodContext,
    fetch: &mut Fetcher<'_>,
) -> Result<PreparedVolume, ConfigError> {
    let name = volume.name.as_str();
    check_component(name, "volume name").map_err(ConfigError::config)?;
    let fail = |m: String| mount_failed(name, m);
    let projected_dir = |plugin: &str| volume_dir(root, uid, plugin, name);

    if let Some(source) = &volume.host_path {
        let path = PathBuf::from(&source.path);
        if !path.is_absolute() {
            return Err(fail(format!(
                "hostPath path {:?} must be an absolute path",
                source.path
            )));
        }
        check_host_path_type(&path, source.type_.as_deref().unwrap_or("")).map_err(fail)?;
        return Ok(PreparedVolume {
            host_path: path,
            read_only: false,
        });
    }
    if let Some(source) = &volume.config_map {
        let optional = source.optional == Some(true);
        let cm = fetch.config_map(&source.name).await.map_err(fail)?;
        let payload = config_map_payload(
            &source.name,
            cm.as_ref(),
            source.items.as_deref(),
            mode_or(source.default_mode, DEFAULT_MODE),
            optional,
        )
        .map_err(fail)?;
        return write_volume(projected_dir(CONFIG_MAP_PLUGIN), &payload).map_err(fail);
    }
    if let Some(source) = &volume.secret {
        let optional = source.optional == Some(true);
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let secret = fetch.secret(&secret_name).await.map_err(fail)?;
        let payload = secret_payload(
            &secret_name,
            secret.as_ref(),
            source.items.as_deref(),
            mode_or(source.default_mode, DEFAULT_MODE),
            optional,
        )
        .map_err(fail)?;
        return write_volume(projected_dir(SECRET_PLUGIN), &payload).map_err(fail);
    }
    if let Some(source) = &volume.downward_api {
        let items = source.items.as_deref().unwrap_or_default();
        let alloc = allocatable_for(items, fetch).await;
        let payload = downward_payload(
            items,
            pod,
            ctx,
            &alloc,
            mode_or(source.default_mode, DEFAULT_MODE),
        )
        .map_err(fail)?;
        return write_volume(projected_dir(DOWNWARD_API_PLUGIN), &payload).map_err(fail);
    }
    if let Some(source) = &volume.projected {
        let default_mode = mode_or(source.default_mode, DEFAULT_MODE);
        let mut payload = Payload::new();
        let mut errors = Vec::new();
        for projection in source.sources.iter().flatten() {
            let part = if let Some(s) = &projection.secret {
                match fetch.secret(&s.name).await {
                    Ok(secret) => secret_payload(
                        &s.name,
                        secret.as_ref(),
                        s.items.as_deref(),
                        default_mode,
                        s.optional == Some(true),
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(c) = &projection.config_map {
                match fetch.config_map(&c.name).await {
                    Ok(cm) => config_map_payload(
                        &c.name,
                        cm.as_ref(),
                        c.items.as_deref(),
                        default_mode,
                        c.optional == Some(true),
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(d) = &projection.downward_api {
                let items = d.items.as_deref().unwrap_or_default();
                let alloc = allocatable_for(items, fetch).await;
                downward_payload(items, pod, ctx, &alloc, default_mode)
            } else if let Some(t) = &projection.service_account_token {
                service_account_token(pod, fetch).await.map(|token| {
                    Payload::from([(
                        t.path.clone(),
                        FileProjection {
                            data: token,
                            mode: default_mode,
                        },
                    )])
                })
            } else if projection.cluster_trust_bundle.is_some() {
                Err("clusterTrustBundle projections are not supported by Corral".to_string())
            } else if projection.pod_certificate.is_some() {
                Err("podCertificate projections are not supported by Corral".to_string())
            } else {
                Ok(Payload::new())
            };
            match part {
                Ok(part) => payload.extend(part),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(fail(aggregate(errors)));
        }
        return write_volume(projected_dir(PROJECTED_PLUGIN), &payload).map_err(fail);
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let path = claimed_volume_dir(
            fetch.source(),
            fetch.namespace(),
            &source.claim_name,
            &ctx.node_name,
        )
        .await
        .map_err(fail)?;
        return Ok(PreparedVolume {
            host_path: path,
            read_only: source.read_only == Some(true),
        });
    }
    // A volume with no source is an emptyDir (as the API server defaults it).
    let other = raw
        .and_then(Value::as_object)
        .and_then(|o| o.keys().find(|k| *k != "name" && *k != "emptyDir").cloned());
    if let Some(kind) = other {
        return Err(ConfigError::config(format!(
            "volume \"{name}\": {kind} volumes are not supported by Corral"
        )));
    }
    let dir = volume_dir(root, uid, EMPTY_DIR_PLUGIN, name);
    ensure_dir(&dir, 0o777).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    Ok(PreparedVolume {
        host_path: dir,
        read_only: false,
    })
}

/// The directory of the volume bound to the claim `namespace/claim_name`, ready on this node
/// (`node`), or the kubelet-style reason it is not.
async fn claimed_volume_dir(
    src: &dyn ConfigSource,
    namespace: &str,
    claim_name: &str,
    node: &str,
) -> Result<PathBuf, String> {
    use corral_api::storage;
    let claim = src
        .persistent_volume_claim(namespace, claim_name)
        .await
        .map_err(|e| format!("couldn't get persistentvolumeclaim {namespace}/{claim_name}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim_name}\" not found"))?;
    if corral_api::object::deletion_timestamp(&claim).is_some() {
        return Err(format!(
            "can't start pod because PVC {namespace}/{claim_name} is being deleted"
        ));
    }
    let volume_name = storage::claim_volume_name(&claim);
    if volume_name.is_empty() || storage::phase(&claim) != storage::CLAIM_BOUND {
        return Err(format!(
            "persistentvolumeclaim \"{claim_name}\" is not bound"
        ));
    }
    let pv = src
        .persistent_volume(volume_name)
        .await
        .map_err(|e| format!("couldn't get persistentvolume {volume_name}: {e}"))?
        .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
    if !storage::is_volume_bound_to_claim(&pv, &claim) {
        return Err(format!(
            "persistentvolume \"{volume_name}\" is not bound to persistentvolumeclaim \"{claim_name}\""
        ));
    }
    if let Some(owner) = storage::volume_node(&pv)
        && owner != node
    {
        return Err(format!(
            "volume node affinity conflict: persistentvolume \"{volume_name}\" is on node \"{owner}\", not \"{node}\""
        ));
    }
    let path = storage::volume_path(&pv).ok_or_else(|| {
        format!("persistentvolume \"{volume_name}\" has no hostPath or local path: Corral cannot mount it")
    })?;
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!(
            "persistentvolume \"{volume_name}\": path {:?} must be an absolute path",
            path.display()
        ));
    }
    if storage::annotation(&pv, storage::ANN_PROVISIONED_BY)
        == Some(storage::LOCAL_PATH_PROVISIONER)
    {
        ensure_dir(&path, 0o777).map_err(|e| format!("creating {}: {e}", path.display()))?;
        return Ok(path);
    }
    match pv.pointer("/spec/hostPath") {
        Some(host) if host.is_object() => {
            let kind = host.get("type").and_then(Value::as_str).unwrap_or("");
            check_host_path_type(&path, kind)?;
        }
        _ => {
            // A local volume is a directory an administrator made.
            if !path.is_dir() {
                return Err(format!(
                    "local volume \"{volume_name}\": path {} does not exist or is not a directory",
                    path.display()
                ));
            }
        }
    }
    Ok(path)
}

fn write_volume(dir: PathBuf, payload: &Payload) -> Result<PreparedVolume, String> {
    atomic_write(&dir, payload)?;
    Ok(PreparedVolume {
        host_path: dir,
        read_only: true,
    })
}

/// The kubelet's `hostPath` type check (`checkTypeInternal`): `DirectoryOrCreate` makes a 0755
/// directory (and its parents), `FileOrCreate` an empty 0644 file (not its parent).
fn check_host_path_type(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).ok();
    let exists = meta.is_some();
    let file_type = meta.as_ref().map(fs::Metadata::file_type);
    let is = |f: fn(&fs::FileType) -> bool| file_type.as_ref().is_some_and(f);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if kind == "DirectoryOrCreate" && !exists {
                fs::create_dir_all(path).map_err(|e| format!("creating {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("chmod {shown}: {e}"))?;
                return Ok(());
            }
            if is(fs::FileType::is_dir) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        "FileOrCreate" | "File" => {
            if kind == "FileOrCreate" && !exists {
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|e| format!("creating file {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o644))
                    .map_err(|e| format!("chmod {shown}: {e}"))?;
                return Ok(());
            }
            if is(fs::FileType::is_file) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        "Socket" => {
            if is(FileTypeExt::is_socket) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a socket file"
                ))
            }
        }
        "CharDevice" => {
            if is(FileTypeExt::is_char_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a character device"
                ))
            }
        }
        "BlockDevice" => {
            if is(FileTypeExt::is_block_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a block device"
                ))
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

// ---- payloads ----

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileProjection {
    data: Vec<u8>,
    mode: u32,
}

/// Relative path → file.
type Payload = BTreeMap<String, FileProjection>;

fn mode_or(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o777)
}

/// The kubelet's `configmap.MakePayload`.
fn config_map_payload(
    name: &str,
    cm: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(not_found("configmap", name))
        };
    };
    let data = cm.data.clone().unwrap_or_default();
    let binary = cm.binary_data.clone().unwrap_or_default();
    let lookup = |key: &str| {
        data.get(key)
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| binary.get(key).map(|b| b.0.clone()))
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in &data {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: value.as_bytes().to_vec(),
                        mode: default_mode,
                    },
                );
            }
            for (key, value) in &binary {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: value.0.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(content) = lookup(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "configmap references non-existent config key: {}",
                        item.key
                    ));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: content,
                        mode: mode_or(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// The kubelet's `secret.MakePayload`.
fn secret_payload(
    name: &str,
    secret: Option<&SecretData>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = secret else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(not_found("secret", name))
        };
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in secret {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: value.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(content) = secret.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("references non-existent secret key: {}", item.key));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: content.clone(),
                        mode: mode_or(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// The kubelet's `downwardapi.CollectData`: `fieldRef` and `resourceFieldRef` items (the latter
/// naming its container, searched among containers then init containers).
fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    ctx: &PodContext,
    alloc: &Option<Allocatable>,
    default_mode: u32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(fs) = &item.field_ref {
            field_ref_value(pod, fs, ctx)
        } else if let Some(fs) = &item.resource_field_ref {
            let wanted = fs.container_name.as_deref().unwrap_or_default();
            match find_container(pod, wanted) {
                Some(container) => match alloc {
                    Some(alloc) => resource_field_value(pod, container, fs, alloc),
                    None => Err("node allocatable unknown".to_string()),
                },
                None => Err(format!("container {wanted} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.into_bytes(),
                        mode: mode_or(item.mode, default_mode),
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(aggregate(errors))
    }
}

/// The node's allocatable, asked for only when some item needs it (a `resourceFieldRef`).
async fn allocatable_for(
    items: &[DownwardAPIVolumeFile],
    fetch: &mut Fetcher<'_>,
) -> Option<Allocatable> {
    if items.iter().any(|i| i.resource_field_ref.is_some()) {
        Some(fetch.allocatable().await)
    } else {
        None
    }
}

fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Go's `utilerrors.NewAggregate` text: one error as it is, several as `[a, b]`.
fn aggregate(errors: Vec<String>) -> String {
    if errors.len() == 1 {
        errors.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// The token of the pod's service account: `token` of the account's token Secret (the first by
/// name when there are several), or empty while none exists.
async fn service_account_token(pod: &Pod, fetch: &mut Fetcher<'_>) -> Result<Vec<u8>, String> {
    let spec = pod.spec.as_ref();
    let account = spec
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let namespace = fetch.namespace().to_string();
    let secrets = fetch.source().secrets(&namespace).await.map_err(|e| {
        format!("couldn't list secrets of {namespace} for the service account token: {e}")
    })?;
    let mut candidates: Vec<(String, SecretData)> = secrets
        .into_iter()
        .filter_map(|v| serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(v).ok())
        .filter(|s| s.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE))
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
                == Some(&account)
        })
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), secret_data(s)))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(candidates
        .into_iter()
        .find_map(|(_, mut data)| data.remove("token"))
        .unwrap_or_default())
}

// ---- the atomic writer ----

/// The kubelet's `validatePath` for a payload path.
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LEN} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LEN {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LEN} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    if path.contains('\0') {
        return Err(format!("invalid path: must not contain NUL: {path:?}"));
    }
    Ok(())
}

/// `a//b/./c` → `a/b/c`.
fn clean_path(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes `payload` into `target` the kubelet's way (see the module docs). Returns whether a new
/// version was written (`false`: everything already matched).
fn atomic_write(target: &Path, payload: &Payload) -> Result<bool, String> {
    let shown = target.display();
    let mut files: BTreeMap<String, &FileProjection> = BTreeMap::new();
    for (path, file) in payload {
        validate_path(path)?;
        let clean = clean_path(path);
        if clean.is_empty() {
            return Err(format!("invalid path: {path:?} names no file"));
        }
        files.insert(clean, file);
    }
    ensure_dir(target, 0o755).map_err(|e| format!("creating {shown}: {e}"))?;

    let current = fs::read_link(target.join(DATA_DIR))
        .ok()
        .and_then(|t| t.to_str().map(str::to_string))
        .filter(|t| t.starts_with("..") && !t.contains('/') && target.join(t).is_dir());
    let must_write = match &current {
        None => true,
        Some(ts) => differs(&target.join(ts), &files),
    };
    let live = if must_write {
        let ts = new_version_dir(target)
            .map_err(|e| format!("creating a data directory in {shown}: {e}"))?;
        let ts_path = target.join(&ts);
        for (path, file) in &files {
            write_file(&ts_path, path, file)
                .map_err(|e| format!("writing {path} in {shown}: {e}"))?;
        }
        let tmp = target.join(DATA_DIR_TMP);
        remove_entry(&tmp).map_err(|e| format!("removing {}: {e}", tmp.display()))?;
        symlink(&ts, &tmp).map_err(|e| format!("linking {}: {e}", tmp.display()))?;
        fs::rename(&tmp, target.join(DATA_DIR))
            .map_err(|e| format!("swapping {}/{DATA_DIR}: {e}", shown))?;
        ts
    } else {
        current.unwrap_or_default()
    };

    // What the container sees: one symlink per top-level name, into ..data.
    let top: BTreeSet<&str> = files.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &top {
        let link = target.join(name);
        let want = Path::new(DATA_DIR).join(name);
        if fs::read_link(&link).ok().as_deref() == Some(want.as_path()) {
            continue;
        }
        remove_entry(&link).map_err(|e| format!("removing {}: {e}", link.display()))?;
        symlink(&want, &link).map_err(|e| format!("linking {}: {e}", link.display()))?;
    }
    // Old versions, a stale ..data_tmp and names no longer in the payload go.
    let entries = fs::read_dir(target).map_err(|e| format!("reading {shown}: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = if name.starts_with("..") {
            name != DATA_DIR && name != live
        } else {
            !top.contains(name)
        };
        if stale {
            remove_entry(&entry.path())
                .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
        }
    }
    Ok(must_write)
}

/// Whether the version in `dir` differs from `files` (any content, mode, missing or extra file).
fn differs(dir: &Path, files: &BTreeMap<String, &FileProjection>) -> bool {
    for (path, file) in files {
        let p = dir.join(path);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            return true;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != file.mode {
            return true;
        }
        if u64::try_from(file.data.len()).ok() != Some(meta.len()) {
            return true;
        }
        match fs::read(&p) {
            Ok(data) if data == file.data => {}
            _ => return true,
        }
    }
    let mut count = 0usize;
    if count_files(dir, &mut count).is_err() {
        return true;
    }
    count != files.len()
}

fn count_files(dir: &Path, count: &mut usize) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            count_files(&entry.path(), count)?;
        } else {
            *count += 1;
        }
    }
    Ok(())
}

static VERSION_SEQ: AtomicU64 = AtomicU64::new(0);

/// Creates `..<UTC timestamp>.<unique>` in `target` and returns its name.
fn new_version_dir(target: &Path) -> io::Result<String> {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S").to_string();
    loop {
        let seq = VERSION_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("..{stamp}.{:09}{seq}", now.subsec_nanosecond());
        let path = target.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn write_file(base: &Path, rel: &str, file: &FileProjection) -> io::Result<()> {
    let mut dir = base.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let (name, parents) = parts
        .split_last()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
    for part in parents {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    let path = dir.join(name);
    fs::write(&path, &file.data)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
}

/// Removes a file, symlink or directory tree; nothing there is fine.
fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Creates `dir` (and its parents) with `mode` when it does not exist yet; an existing directory
/// is left as it is (a container may have changed its mode, as it may in Kubernetes).
fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

fn check_component(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Err(format!("invalid {what} {name:?}"))
    } else {
        Ok(())
    }
}

fn pod_uid(pod: &Pod) -> Result<String, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Err("the pod has no metadata.uid".to_string());
    }
    check_component(&uid, "pod uid")?;
    Ok(uid)
}

// ---- mounts ----

/// The mounts of one container: each `volumeMount` as a [`Mount`], with `subPath` resolved
/// (created when missing, refused when it leaves the volume). `subPathExpr` is expanded against
/// the variables computable from the pod alone (literal `value`s and `fieldRef`s); pass the
/// container's full environment to [`container_mounts_with_env`] to expand it as the kubelet does.
pub fn container_mounts(
    pod: &Value,
    container: &Value,
    prepared: &PreparedVolumes,
) -> Result<Vec<Mount>, ConfigError> {
    let uses_expr = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter().any(|m| {
                m.get("subPathExpr")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
        });
    let env = if uses_expr {
        pod_only_env(pod, container)?
    } else {
        Vec::new()
    };
    container_mounts_with_env(pod, container, prepared, &env)
}

/// [`container_mounts`] with `subPathExpr` expanded against `env` (the container's environment
/// from [`crate::env::container_env`]); a reference to a variable that is unset or empty is an
/// error, as in the kubelet.
pub fn container_mounts_with_env(
    _pod: &Value,
    container: &Value,
    prepared: &PreparedVolumes,
    env: &[(String, String)],
) -> Result<Vec<Mount>, ConfigError> {
    let container = parse_container(container).map_err(ConfigError::config)?;
    let cname = container.name.as_str();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = prepared.get(&m.name) else {
            return Err(ConfigError::config(format!(
                "cannot find volume \"{}\" to mount into container \"{cname}\"",
                m.name
            )));
        };
        let sub_path = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            Some(expr) => expand_sub_path_expr(expr, env).map_err(ConfigError::config)?,
            None => m.sub_path.clone().unwrap_or_default(),
        };
        let mut host_path = volume.host_path.clone();
        if !sub_path.is_empty() {
            if sub_path.starts_with('/') {
                return Err(ConfigError::config(format!(
                    "error SubPath `{sub_path}` must not be an absolute path"
                )));
            }
            if sub_path.split('/').any(|p| p == "..") {
                return Err(ConfigError::config(format!(
                    "unable to provision SubPath `{sub_path}`: must not contain '..'"
                )));
            }
            host_path = safe_sub_path(&volume.host_path, &sub_path, &m.name, cname)?;
        }
        let container_path = if m.mount_path.starts_with('/') {
            PathBuf::from(&m.mount_path)
        } else {
            Path::new("/").join(&m.mount_path)
        };
        mounts.push(Mount {
            host_path,
            container_path,
            read_only: m.read_only == Some(true) || volume.read_only,
        });
    }
    Ok(mounts)
}

/// The kubelet's `ExpandContainerVolumeMounts`.
fn expand_sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let missing = std::cell::RefCell::new(BTreeSet::new());
    let expanded = expand(expr, |name| {
        let value = vars.get(name).copied().unwrap_or_default();
        if value.is_empty() {
            missing.borrow_mut().insert(name.to_string());
        }
        Some(value.to_string())
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The variables of a container that need nothing but the pod: literal values (expanded) and
/// `fieldRef`s.
fn pod_only_env(pod: &Value, container: &Value) -> Result<Vec<(String, String)>, ConfigError> {
    let typed = parse_pod(pod).map_err(ConfigError::config)?;
    let c = parse_container(container).map_err(ConfigError::config)?;
    let ctx = PodContext::default();
    let mut env: Vec<(String, String)> = Vec::new();
    for var in c.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        } else if let Some(fs) = var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) {
            match field_ref_value(&typed, fs, &ctx) {
                Ok(v) => v,
                Err(_) => continue,
            }
        } else {
            continue;
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// Resolves `<volume>/<sub_path>` the way the kubelet's `SafeMakeDir` and `PrepareSafeSubpath`
/// do: missing directories are created with the volume directory's mode, no step may leave the
/// volume (through a symlink), and the result is the resolved path (so a `subPath` of a
/// ConfigMap volume is pinned to the version it resolved to, as in Kubernetes).
fn safe_sub_path(
    volume: &Path,
    sub_path: &str,
    mount: &str,
    container: &str,
) -> Result<PathBuf, ConfigError> {
    let create_failed = |why: String| {
        ConfigError::config(format!(
            "failed to create subPath directory for volumeMount \"{mount}\" of container \"{container}\": {why}"
        ))
    };
    let prepare_failed = |why: String| {
        ConfigError::config(format!(
            "failed to prepare subPath for volumeMount \"{mount}\" of container \"{container}\": {why}"
        ))
    };
    let base = fs::canonicalize(volume)
        .map_err(|e| prepare_failed(format!("the volume directory is not there: {e}")))?;
    let target = volume.join(sub_path);
    if fs::metadata(&target).is_err() {
        let mode = fs::metadata(&base)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        let mut cur = base.clone();
        for comp in Path::new(sub_path).components() {
            let Component::Normal(part) = comp else {
                continue;
            };
            let next = cur.join(part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let resolved = fs::canonicalize(&next).map_err(|_| {
                        create_failed(format!("subPath `{sub_path}` has a dangling symlink"))
                    })?;
                    if !resolved.starts_with(&base) {
                        return Err(create_failed(format!(
                            "subPath `{sub_path}` leads out of the volume"
                        )));
                    }
                    if !resolved.is_dir() {
                        return Err(create_failed(format!(
                            "subPath `{sub_path}`: a part of it is not a directory"
                        )));
                    }
                    cur = resolved;
                }
                Ok(meta) if meta.is_dir() => cur = next,
                Ok(_) => {
                    return Err(create_failed(format!(
                        "subPath `{sub_path}`: a part of it is not a directory"
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&next)
                        .and_then(|()| fs::set_permissions(&next, fs::Permissions::from_mode(mode)))
                        .map_err(|e| create_failed(e.to_string()))?;
                    cur = next;
                }
                Err(e) => return Err(create_failed(e.to_string())),
            }
        }
    }
    let resolved = fs::canonicalize(&target).map_err(|e| prepare_failed(e.to_string()))?;
    if !resolved.starts_with(&base) {
        return Err(prepare_failed(format!(
            "subPath `{sub_path}` leads out of the volume"
        )));
    }
    Ok(resolved)
}

// ---- /etc/hosts ----

/// The pod's hosts file, when the pod has `hostAliases` (otherwise `None`: the runtime's own
/// /etc/hosts is kept). It is the kubelet's managed hosts file (localhost lines, the pod's IP
/// with its hostname, `<hostname>.<subdomain>.<ns>.svc.cluster.local` when it has a subdomain),
/// or for a `hostNetwork` pod the node's /etc/hosts, followed by the alias lines. Kept at
/// `<root>/pods/<uid>/etc-hosts`, rewritten only when its content changes.
pub fn hosts_file(root: &Path, pod: &Value, ctx: &PodContext) -> io::Result<Option<PathBuf>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let typed = parse_pod(pod).map_err(invalid)?;
    let spec = typed.spec.clone().unwrap_or_default();
    let aliases = spec.host_aliases.clone().unwrap_or_default();
    if aliases.is_empty() {
        return Ok(None);
    }
    let uid = pod_uid(&typed).map_err(invalid)?;
    let mut alias_lines = String::from("\n# Entries added by HostAliases.\n");
    for alias in &aliases {
        alias_lines.push_str(&format!(
            "{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    let content = if spec.host_network == Some(true) {
        let node_hosts = fs::read_to_string("/etc/hosts")?;
        format!("# Kubernetes-managed hosts file (host network).\n{node_hosts}{alias_lines}")
    } else {
        let (hostname, domain) = pod_hostname_and_domain(&typed);
        let mut ips: Vec<String> = Vec::new();
        if !ctx.pod_ip.is_empty() {
            ips.push(ctx.pod_ip.clone());
        } else if let Some(status) = &typed.status {
            ips.extend(status.pod_ips.iter().flatten().map(|p| p.ip.clone()));
            if ips.is_empty() {
                ips.extend(status.pod_ip.clone().filter(|ip| !ip.is_empty()));
            }
        }
        let mut text = String::from("# Kubernetes-managed hosts file.\n");
        text.push_str("127.0.0.1\tlocalhost\n");
        text.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        text.push_str("fe00::0\tip6-localnet\n");
        text.push_str("fe00::0\tip6-mcastprefix\n");
        text.push_str("fe00::1\tip6-allnodes\n");
        text.push_str("fe00::2\tip6-allrouters\n");
        for ip in &ips {
            if domain.is_empty() {
                text.push_str(&format!("{ip}\t{hostname}\n"));
            } else {
                text.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
            }
        }
        text.push_str(&alias_lines);
        text
    };
    let dir = pod_dir(root, &uid);
    fs::create_dir_all(&dir)?;
    let path = dir.join("etc-hosts");
    let same = fs::read(&path).is_ok_and(|old| old == content.as_bytes())
        && fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o644);
    if !same {
        let tmp = dir.join(".etc-hosts.tmp");
        fs::write(&tmp, content.as_bytes())?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(Some(path))
}

/// The kubelet's `GeneratePodHostNameAndDomain`: `spec.hostname` or the pod's name (cut to 63
/// characters), and `<subdomain>.<namespace>.svc.cluster.local` when `spec.subdomain` is set.
fn pod_hostname_and_domain(pod: &Pod) -> (String, String) {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if hostname.len() > 63 {
        let mut cut = 63;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        hostname.truncate(cut);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let domain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{sub}.{}.svc.{CLUSTER_DOMAIN}", pod_namespace(pod)))
        .unwrap_or_default();
    (hostname, domain)
}

// ---- removal ----

/// Removes every volume directory of a pod (`<root>/pods/<uid>/volumes`, never a hostPath) and its
/// hosts file. Nothing there is fine.
pub fn remove_pod_volumes(root: &Path, pod_uid: &str) -> io::Result<()> {
    check_component(pod_uid, "pod uid")
        .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    let dir = volumes_dir(root, pod_uid);
    if let Err(first) = remove_entry(&dir) {
        // A container may have left directories without write permission: open them up and
        // try again (never following symlinks).
        make_dirs_writable(&dir);
        remove_entry(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("removing {}: {e} (first attempt: {first})", dir.display()),
            )
        })?;
    }
    remove_entry(&pod_dir(root, pod_uid).join("etc-hosts"))
}

fn make_dirs_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::{MemSource, b64, ctx};
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;

    fn pod(volumes: Value, containers: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1",
                         "labels": {"app": "web"}, "annotations": {"a": "1"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                     "containers": containers, "volumes": volumes},
        })
    }

    fn app() -> Value {
        json!([{"name": "app", "image": "busybox",
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}])
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    fn data_target(dir: &Path) -> PathBuf {
        fs::read_link(dir.join("..data")).expect("..data link")
    }

    /// Names in the volume directory, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn empty_dir_and_host_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let host = tmp.path().join("host");
        fs::create_dir_all(host.join("existing")).expect("mkdir");
        let p = pod(
            json!([
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory"}},
                {"name": "nosource"},
                {"name": "data", "hostPath": {"path": host.join("existing")}},
            ]),
            app(),
        );
        let prepared = prepare_volumes(&root, &p, &ctx(), &MemSource::default())
            .await
            .expect("prepare");
        assert_eq!(prepared.len(), 4);
        let scratch = root.join("pods/uid-1/volumes/kubernetes.io~empty-dir/scratch");
        assert_eq!(prepared.host_path("scratch"), Some(scratch.as_path()));
        assert!(scratch.is_dir());
        assert_eq!(mode(&scratch), 0o777);
        assert!(prepared.host_path("mem").is_some_and(Path::is_dir));
        assert!(prepared.host_path("nosource").is_some_and(Path::is_dir));
        assert_eq!(
            prepared.host_path("data"),
            Some(host.join("existing").as_path())
        );
        assert!(!prepared.get("data").expect("data").read_only);
        // Idempotent; content survives.
        fs::write(scratch.join("f"), "kept").expect("write");
        prepare_volumes(&root, &p, &ctx(), &MemSource::default())
            .await
            .expect("again");
        assert_eq!(read(&scratch.join("f")), "kept");
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let dir = d.join("dir");
        let file = d.join("file");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(&file, "x").expect("write");
        let sock = d.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");

        assert_eq!(check_host_path_type(&d.join("nothing"), ""), Ok(()));
        assert_eq!(check_host_path_type(&dir, "Directory"), Ok(()));
        assert_eq!(
            check_host_path_type(&file, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            ))
        );
        assert_eq!(
            check_host_path_type(&d.join("missing"), "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                d.join("missing").display()
            ))
        );
        let made = d.join("made/deep");
        assert_eq!(check_host_path_type(&made, "DirectoryOrCreate"), Ok(()));
        assert!(made.is_dir());
        assert_eq!(mode(&made), 0o755);
        assert!(check_host_path_type(&file, "DirectoryOrCreate").is_err());

        assert_eq!(check_host_path_type(&file, "File"), Ok(()));
        assert_eq!(
            check_host_path_type(&dir, "File"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            ))
        );
        let new_file = d.join("new-file");
        assert_eq!(check_host_path_type(&new_file, "FileOrCreate"), Ok(()));
        assert!(new_file.is_file());
        assert_eq!(mode(&new_file), 0o644);
        assert_eq!(check_host_path_type(&file, "FileOrCreate"), Ok(()));
        assert_eq!(read(&file), "x", "an existing file is not truncated");
        assert!(
            check_host_path_type(&d.join("no-parent/f"), "FileOrCreate").is_err(),
            "FileOrCreate does not create the parent"
        );

        assert_eq!(check_host_path_type(&sock, "Socket"), Ok(()));
        assert_eq!(
            check_host_path_type(&file, "Socket"),
            Err(format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            ))
        );
        assert_eq!(
            check_host_path_type(Path::new("/dev/null"), "CharDevice"),
            Ok(())
        );
        assert_eq!(
            check_host_path_type(&file, "CharDevice"),
            Err(format!(
                "hostPath type check failed: {} is not a character device",
                file.display()
            ))
        );
        assert_eq!(
            check_host_path_type(Path::new("/dev/null"), "BlockDevice"),
            Err("hostPath type check failed: /dev/null is not a block device".to_string())
        );
        assert_eq!(
            check_host_path_type(&file, "Weird"),
            Err("Weird is an invalid volume type".to_string())
        );
    }

    #[tokio::test]
    async fn host_path_failure_is_a_failed_mount() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(
            json!([{"name": "h", "hostPath": {"path": "/definitely/not/here", "type": "Directory"}}]),
            app(),
        );
        let err = prepare_volumes(tmp.path(), &p, &ctx(), &MemSource::default())
            .await
            .expect_err("type check");
        assert_eq!(err.reason, "ContainerCreating");
        assert_eq!(
            err.message,
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: /definitely/not/here is not a directory"
        );
    }

    #[tokio::test]
    async fn config_map_volume_keys_items_modes_and_optional() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let src = MemSource::default().with_object(
            "default",
            "app-config",
            json!({"kind": "ConfigMap", "metadata": {"name": "app-config"},
                   "data": {"app.properties": "a=1\n", "mode": "fast"},
                   "binaryData": {"blob": b64("\u{1}\u{2}")}}),
        );
        let p = pod(
            json!([
                {"name": "all", "configMap": {"name": "app-config"}},
                {"name": "some", "configMap": {"name": "app-config", "defaultMode": 0o600,
                    "items": [{"key": "mode", "path": "conf/mode.txt", "mode": 0o400},
                              {"key": "app.properties", "path": "app.properties"},
                              {"key": "absent", "path": "absent"}],
                    "optional": true}},
                {"name": "gone", "configMap": {"name": "nope", "optional": true}},
            ]),
            app(),
        );
        let prepared = prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("prepare");
        let all = root.join("pods/uid-1/volumes/kubernetes.io~configmap/all");
        assert_eq!(prepared.host_path("all"), Some(all.as_path()));
        assert!(prepared.get("all").expect("all").read_only);
        assert_eq!(read(&all.join("app.properties")), "a=1\n");
        assert_eq!(read(&all.join("mode")), "fast");
        assert_eq!(fs::read(all.join("blob")).expect("blob"), vec![1u8, 2]);
        assert_eq!(mode(&all.join("mode")), 0o644);
        // The kubelet's layout: key -> ..data/key, ..data -> ..<timestamp>.
        assert_eq!(
            fs::read_link(all.join("mode")).expect("link"),
            PathBuf::from("..data/mode")
        );
        let ts = data_target(&all);
        assert!(ts.to_string_lossy().starts_with("..20"), "{}", ts.display());
        assert_eq!(
            listing(&all),
            vec![
                ts.to_string_lossy().into_owned(),
                "..data".into(),
                "app.properties".into(),
                "blob".into(),
                "mode".into()
            ]
        );

        let some = prepared.host_path("some").expect("some");
        assert_eq!(read(&some.join("conf/mode.txt")), "fast");
        assert_eq!(mode(&some.join("conf/mode.txt")), 0o400);
        assert_eq!(mode(&some.join("app.properties")), 0o600);
        assert!(!some.join("absent").exists());
        assert_eq!(
            fs::read_link(some.join("conf")).expect("link"),
            PathBuf::from("..data/conf")
        );
        let gone = prepared.host_path("gone").expect("gone");
        assert!(gone.join("..data").exists());
        assert_eq!(
            listing(gone).len(),
            2,
            "an optional missing ConfigMap is an empty volume"
        );
    }

    #[tokio::test]
    async fn config_map_volume_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = MemSource::default().with_config_map("default", "cfg", json!({"k": "v"}));
        let cases = [
            (
                json!({"name": "v", "configMap": {"name": "missing"}}),
                "MountVolume.SetUp failed for volume \"v\" : configmap \"missing\" not found",
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "x", "path": "x"}]}}),
                "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config key: x",
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "../escape"}]}}),
                "MountVolume.SetUp failed for volume \"v\" : invalid path: must not contain '..': ../escape",
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "/abs"}]}}),
                "MountVolume.SetUp failed for volume \"v\" : invalid path: must be relative path: /abs",
            ),
            (
                json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "..data"}]}}),
                "MountVolume.SetUp failed for volume \"v\" : invalid path: must not start with '..': ..data",
            ),
        ];
        for (volume, message) in cases {
            let p = pod(json!([volume]), app());
            let err = prepare_volumes(tmp.path(), &p, &ctx(), &src)
                .await
                .expect_err(message);
            assert_eq!(err.message, message);
            assert_eq!(err.reason, "ContainerCreating");
        }
    }

    #[tokio::test]
    async fn secret_volume_decodes_and_applies_modes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let src = MemSource::default().with_object(
            "default",
            "creds",
            json!({"kind": "Secret", "metadata": {"name": "creds"}, "type": "Opaque",
                   "data": {"username": b64("admin"), "password": b64("s3cret")},
                   "stringData": {"extra": "plain"}}),
        );
        let p = pod(
            json!([
                {"name": "s", "secret": {"secretName": "creds"}},
                {"name": "s2", "secret": {"secretName": "creds", "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "pw"}, {"key": "username", "path": "user", "mode": 0o440}]}},
                {"name": "s3", "secret": {"secretName": "creds", "items": [{"key": "nope", "path": "n"}]}},
            ]),
            app(),
        );
        let err = prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect_err("s3");
        assert_eq!(
            err.message,
            "MountVolume.SetUp failed for volume \"s3\" : references non-existent secret key: nope"
        );
        // The other volumes were still set up.
        let s = root.join("pods/uid-1/volumes/kubernetes.io~secret/s");
        assert_eq!(read(&s.join("username")), "admin");
        assert_eq!(read(&s.join("password")), "s3cret");
        assert_eq!(read(&s.join("extra")), "plain");
        assert_eq!(mode(&s.join("password")), 0o644);
        let s2 = root.join("pods/uid-1/volumes/kubernetes.io~secret/s2");
        assert_eq!(read(&s2.join("pw")), "s3cret");
        assert_eq!(mode(&s2.join("pw")), 0o400);
        assert_eq!(mode(&s2.join("user")), 0o440);
        assert!(!s2.join("username").exists());

        let missing = pod(
            json!([{"name": "m", "secret": {"secretName": "nope"}}]),
            app(),
        );
        let err = prepare_volumes(root, &missing, &ctx(), &src)
            .await
            .expect_err("missing");
        assert_eq!(
            err.message,
            "MountVolume.SetUp failed for volume \"m\" : secret \"nope\" not found"
        );
        let optional = pod(
            json!([{"name": "m", "secret": {"secretName": "nope", "optional": true}}]),
            app(),
        );
        prepare_volumes(root, &optional, &ctx(), &src)
            .await
            .expect("optional");
    }

    #[tokio::test]
    async fn downward_api_volume() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(
            json!([{"name": "info", "downwardAPI": {"defaultMode": 0o640, "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
                {"path": "sub/ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                {"path": "cpu_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
            ]}}]),
            app(),
        );
        let prepared = prepare_volumes(tmp.path(), &p, &ctx(), &MemSource::default())
            .await
            .expect("prepare");
        let dir = prepared.host_path("info").expect("info");
        assert!(dir.ends_with("kubernetes.io~downward-api/info"));
        assert_eq!(read(&dir.join("labels")), "app=\"web\"");
        assert_eq!(read(&dir.join("annotations")), "a=\"1\"");
        assert_eq!(read(&dir.join("name")), "web");
        assert_eq!(mode(&dir.join("name")), 0o600);
        assert_eq!(mode(&dir.join("labels")), 0o640);
        assert_eq!(read(&dir.join("sub/ns")), "default");
        assert_eq!(read(&dir.join("cpu_limit")), "500");
        assert_eq!(read(&dir.join("mem_limit")), "128");

        let bad = pod(
            json!([{"name": "info", "downwardAPI": {"items": [
                {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
                {"path": "y", "fieldRef": {"fieldPath": "metadata.nope"}},
            ]}}]),
            app(),
        );
        let err = prepare_volumes(tmp.path(), &bad, &ctx(), &MemSource::default())
            .await
            .expect_err("bad");
        assert_eq!(
            err.message,
            "MountVolume.SetUp failed for volume \"info\" : [container nope not found, unsupported fieldPath: metadata.nope]"
        );
    }

    fn kube_api_access() -> Value {
        json!({"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}], "optional": true}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}})
    }

    #[tokio::test]
    async fn projected_service_account_volume() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let p = pod(json!([kube_api_access()]), app());
        let src = MemSource::default();
        let prepared = prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("prepare");
        let dir = root.join("pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-abcde");
        assert_eq!(
            prepared.host_path("kube-api-access-abcde"),
            Some(dir.as_path())
        );
        assert!(prepared.get("kube-api-access-abcde").expect("v").read_only);
        assert_eq!(
            read(&dir.join("token")),
            "",
            "no token Secret yet: an empty token"
        );
        assert_eq!(read(&dir.join("namespace")), "default");
        assert!(!dir.join("ca.crt").exists(), "the CA ConfigMap is optional");
        assert_eq!(mode(&dir.join("token")), 0o644);

        // The account's token Secret and the CA appear: the next call writes them.
        let src = src
            .with_object(
                "default",
                "other-token",
                json!({"kind": "Secret", "metadata": {"name": "other-token",
                       "annotations": {"kubernetes.io/service-account.name": "builder"}},
                       "type": "kubernetes.io/service-account-token", "data": {"token": b64("wrong")}}),
            )
            .with_object(
                "default",
                "default-token-x",
                json!({"kind": "Secret", "metadata": {"name": "default-token-x",
                       "annotations": {"kubernetes.io/service-account.name": "default"}},
                       "type": "kubernetes.io/service-account-token", "data": {"token": b64("jwt.jwt.jwt")}}),
            )
            .with_config_map("default", "kube-root-ca.crt", json!({"ca.crt": "-----BEGIN CERTIFICATE-----\n"}));
        prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("again");
        assert_eq!(read(&dir.join("token")), "jwt.jwt.jwt");
        assert_eq!(read(&dir.join("ca.crt")), "-----BEGIN CERTIFICATE-----\n");

        let unsupported = pod(
            json!([{"name": "p", "projected": {"sources": [{"clusterTrustBundle": {"path": "b", "name": "x"}}]}}]),
            app(),
        );
        let err = prepare_volumes(root, &unsupported, &ctx(), &src)
            .await
            .expect_err("ctb");
        assert!(
            err.message
                .contains("clusterTrustBundle projections are not supported"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn updates_propagate_atomically_and_unchanged_content_is_not_rewritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let src =
            MemSource::default().with_config_map("default", "cfg", json!({"a": "1", "b": "2"}));
        let p = pod(json!([{"name": "c", "configMap": {"name": "cfg"}}]), app());
        let prepared = prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("first");
        let dir = prepared.host_path("c").expect("c").to_path_buf();
        let first = data_target(&dir);
        let inode = fs::metadata(dir.join("a")).expect("a").ino();

        // Nothing changed: the same version, the same files.
        for _ in 0..3 {
            prepare_volumes(root, &p, &ctx(), &src)
                .await
                .expect("again");
        }
        assert_eq!(data_target(&dir), first);
        assert_eq!(fs::metadata(dir.join("a")).expect("a").ino(), inode);

        // A holder of the old version keeps reading it until it reopens.
        let old_a = dir.join(&first).join("a");
        assert_eq!(read(&old_a), "1");

        // The ConfigMap changes: a key updated, one removed, one added.
        src.put_config_map("default", "cfg", json!({"a": "10", "c": "3"}));
        prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("update");
        let second = data_target(&dir);
        assert_ne!(second, first);
        assert_eq!(read(&dir.join("a")), "10");
        assert_eq!(read(&dir.join("c")), "3");
        assert!(
            fs::symlink_metadata(dir.join("b")).is_err(),
            "removed key is gone"
        );
        assert!(!dir.join(&first).exists(), "the old version is cleaned up");
        assert_eq!(
            listing(&dir),
            vec![
                second.to_string_lossy().into_owned(),
                "..data".into(),
                "a".into(),
                "c".into()
            ]
        );

        // Leftovers of an interrupted write are cleaned up, the live version kept.
        fs::create_dir(dir.join("..2000_01_01_00_00_00.1")).expect("stale");
        symlink("..nowhere", dir.join("..data_tmp")).expect("stale tmp");
        prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("clean");
        assert_eq!(data_target(&dir), second);
        assert_eq!(listing(&dir).len(), 4);

        // A file changed behind our back (or its mode) is rewritten.
        fs::set_permissions(
            dir.join(&second).join("a"),
            fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        prepare_volumes(root, &p, &ctx(), &src)
            .await
            .expect("repair");
        assert_ne!(data_target(&dir), second);
        assert_eq!(mode(&dir.join("a")), 0o644);
    }

    #[test]
    fn atomic_writer_reports_whether_it_wrote() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("v");
        let file = |s: &str| FileProjection {
            data: s.as_bytes().to_vec(),
            mode: 0o644,
        };
        let payload = Payload::from([("x".to_string(), file("1")), ("d/y".to_string(), file("2"))]);
        assert_eq!(atomic_write(&dir, &payload), Ok(true));
        assert_eq!(atomic_write(&dir, &payload), Ok(false));
        let extra = Payload::from([("x".to_string(), file("1"))]);
        assert_eq!(
            atomic_write(&dir, &extra),
            Ok(true),
            "a removed file is a change"
        );
        assert!(fs::symlink_metadata(dir.join("d")).is_err());
        let cleaned = Payload::from([("./x".to_string(), file("1"))]);
        assert_eq!(atomic_write(&dir, &cleaned), Ok(false), "paths are cleaned");
    }

    #[tokio::test]
    async fn unknown_volume_types_are_config_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = pod(
            json!([{"name": "n", "nfs": {"server": "s", "path": "/x"}}]),
            app(),
        );
        let err = prepare_volumes(tmp.path(), &p, &ctx(), &MemSource::default())
            .await
            .expect_err("nfs");
        assert_eq!(err.reason, "CreateContainerConfigError");
        assert_eq!(
            err.message,
            "volume \"n\": nfs volumes are not supported by Corral"
        );
    }

    fn claim(name: &str, volume: Option<&str>) -> Value {
        let mut c = json!({
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        if let Some(v) = volume {
            c["spec"]["volumeName"] = json!(v);
            c["status"]["phase"] = json!("Bound");
        }
        c
    }

    fn bound_volume(name: &str, claim: &str, source: Value, node: &str) -> Value {
        let mut v = json!({
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "claimRef": {"namespace": "default", "name": claim, "uid": format!("uid-{claim}")},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            },
            "status": {"phase": "Bound"},
        });
        let (key, value) = source
            .as_object()
            .and_then(|o| o.iter().next())
            .map(|(k, v)| (k.clone(), v.clone()))
            .expect("one source");
        v["spec"][key] = value;
        v
    }

    /// Why the pod's volumes cannot be set up yet (they must not be).
    async fn not_ready(root: &Path, pod: &Value, src: &MemSource) -> String {
        let e = prepare_volumes(root, pod, &ctx(), src)
            .await
            .expect_err("not ready");
        assert_eq!(e.reason, "ContainerCreating");
        e.message
    }

    #[tokio::test]
    async fn a_claim_mounts_its_bound_volume_once_it_is_bound_on_this_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("local-path/pvc-1_default_www");
        let src = MemSource::default();
        let p = pod(
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www"}},
                   {"name": "ro", "persistentVolumeClaim": {"claimName": "www", "readOnly": true}}]),
            app(),
        );
        assert_eq!(
            not_ready(tmp.path(), &p, &src).await,
            "MountVolume.SetUp failed for volume \"www\" : persistentvolumeclaim \"www\" not found"
        );
        src.put_storage(claim("www", None));
        assert_eq!(
            not_ready(tmp.path(), &p, &src).await,
            "MountVolume.SetUp failed for volume \"www\" : persistentvolumeclaim \"www\" is not bound"
        );
        src.put_storage(claim("www", Some("pvc-1")));
        assert_eq!(
            not_ready(tmp.path(), &p, &src).await,
            "MountVolume.SetUp failed for volume \"www\" : persistentvolume \"pvc-1\" not found"
        );
        let mut pv = bound_volume(
            "pvc-1",
            "www",
            json!({"hostPath": {"path": data, "type": "DirectoryOrCreate"}}),
            "other-node",
        );
        src.put_storage(pv.clone());
        assert!(
            not_ready(tmp.path(), &p, &src)
                .await
                .contains("volume node affinity conflict")
        );
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] =
            json!(["node-1"]);
        pv["metadata"]["annotations"] =
            json!({"pv.kubernetes.io/provisioned-by": "corral.io/local-path"});
        src.put_storage(pv);
        let prepared = prepare_volumes(tmp.path(), &p, &ctx(), &src)
            .await
            .expect("ready");
        assert_eq!(prepared.host_path("www"), Some(data.as_path()));
        assert!(data.is_dir(), "a local-path volume is made on first use");
        assert_eq!(mode(&data) & 0o777, 0o777);
        assert_eq!(prepared.get("www").map(|v| v.read_only), Some(false));
        assert_eq!(prepared.get("ro").map(|v| v.read_only), Some(true));
    }

    #[tokio::test]
    async fn an_administrators_volume_gets_the_host_path_checks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = MemSource::default();
        src.put_storage(claim("data", Some("pv-admin")));
        let missing = tmp.path().join("missing");
        src.put_storage(bound_volume(
            "pv-admin",
            "data",
            json!({"local": {"path": missing}}),
            "node-1",
        ));
        let p = pod(
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
            app(),
        );
        let err = prepare_volumes(tmp.path(), &p, &ctx(), &src)
            .await
            .expect_err("missing local path");
        assert!(err.message.contains("does not exist"), "{}", err.message);
        fs::create_dir(&missing).expect("mkdir");
        let prepared = prepare_volumes(tmp.path(), &p, &ctx(), &src)
            .await
            .expect("ready");
        assert_eq!(prepared.host_path("d"), Some(missing.as_path()));
        // Another claim's volume is refused.
        let mut stolen = claim("data", Some("pv-admin"));
        stolen["metadata"]["uid"] = json!("someone-else");
        src.put_storage(stolen);
        let err = prepare_volumes(tmp.path(), &p, &ctx(), &src)
            .await
            .expect_err("not ours");
        assert!(err.message.contains("is not bound to"), "{}", err.message);
    }

    #[tokio::test]
    async fn container_mounts_resolve_sub_paths_and_read_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let host = tmp.path().join("host");
        fs::create_dir_all(&host).expect("mkdir");
        let src = MemSource::default().with_config_map(
            "default",
            "cfg",
            json!({"nginx.conf": "events {}"}),
        );
        let containers = json!([{"name": "app", "image": "busybox",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "DIR", "value": "logs-$(POD_NAME)"}],
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "scratch", "mountPath": "/cache", "subPath": "a/b"},
            {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(DIR)"},
            {"name": "cfg", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "host", "mountPath": "host-rel", "readOnly": true},
        ]}]);
        let p = pod(
            json!([
                {"name": "scratch", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "host", "hostPath": {"path": host}},
            ]),
            containers.clone(),
        );
        let prepared = prepare_volumes(&root, &p, &ctx(), &src)
            .await
            .expect("prepare");
        let scratch =
            fs::canonicalize(prepared.host_path("scratch").expect("scratch")).expect("canon");
        let cfg = prepared.host_path("cfg").expect("cfg").to_path_buf();
        let mounts = container_mounts(&p, &containers[0], &prepared).expect("mounts");
        let expect = vec![
            Mount {
                host_path: prepared
                    .host_path("scratch")
                    .expect("scratch")
                    .to_path_buf(),
                container_path: "/scratch".into(),
                read_only: false,
            },
            Mount {
                host_path: scratch.join("a/b"),
                container_path: "/cache".into(),
                read_only: false,
            },
            Mount {
                host_path: scratch.join("logs-web"),
                container_path: "/logs".into(),
                read_only: false,
            },
            Mount {
                host_path: fs::canonicalize(cfg.join("..data/nginx.conf")).expect("canon"),
                container_path: "/etc/nginx/nginx.conf".into(),
                read_only: true,
            },
            Mount {
                host_path: cfg.clone(),
                container_path: "/etc/cfg".into(),
                read_only: true,
            },
            Mount {
                host_path: host.clone(),
                container_path: "/host-rel".into(),
                read_only: true,
            },
        ];
        assert_eq!(mounts, expect);
        assert!(scratch.join("a/b").is_dir());
        assert_eq!(
            mode(&scratch.join("a")),
            0o777,
            "created with the volume's mode"
        );
        assert!(scratch.join("logs-web").is_dir());

        // With the full environment.
        let env = vec![("DIR".to_string(), "other".to_string())];
        let mounts =
            container_mounts_with_env(&p, &containers[0], &prepared, &env).expect("mounts");
        assert_eq!(mounts[2].host_path, scratch.join("other"));
        let err =
            container_mounts_with_env(&p, &containers[0], &prepared, &[]).expect_err("no env");
        assert_eq!(err.message, "missing value for DIR");
    }

    #[tokio::test]
    async fn bad_mounts_are_config_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        let p = pod(json!([{"name": "scratch", "emptyDir": {}}]), app());
        let prepared = prepare_volumes(&root, &p, &ctx(), &MemSource::default())
            .await
            .expect("prepare");
        symlink(
            &outside,
            prepared.host_path("scratch").expect("s").join("escape"),
        )
        .expect("symlink");
        let cases = [
            (
                json!({"name": "nope", "mountPath": "/x"}),
                "cannot find volume \"nope\" to mount into container \"app\"".to_string(),
            ),
            (
                json!({"name": "scratch", "mountPath": "/x", "subPath": "/abs"}),
                "error SubPath `/abs` must not be an absolute path".to_string(),
            ),
            (
                json!({"name": "scratch", "mountPath": "/x", "subPath": "a/../../b"}),
                "unable to provision SubPath `a/../../b`: must not contain '..'".to_string(),
            ),
            (
                json!({"name": "scratch", "mountPath": "/x", "subPath": "escape"}),
                "failed to prepare subPath for volumeMount \"scratch\" of container \"app\": subPath `escape` leads out of the volume".to_string(),
            ),
            (
                json!({"name": "scratch", "mountPath": "/x", "subPath": "escape/new"}),
                "failed to create subPath directory for volumeMount \"scratch\" of container \"app\": subPath `escape/new` leads out of the volume".to_string(),
            ),
        ];
        for (mount, message) in cases {
            let c = json!({"name": "app", "image": "busybox", "volumeMounts": [mount]});
            let err = container_mounts(&p, &c, &prepared).expect_err(&message);
            assert_eq!(err.message, message);
            assert_eq!(err.reason, "CreateContainerConfigError");
        }
        assert!(!outside.join("new").exists());
    }

    #[test]
    fn hosts_file_only_with_aliases() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let plain = pod(json!([]), app());
        assert_eq!(hosts_file(root, &plain, &ctx()).expect("hosts"), None);

        let mut p = pod(json!([]), app());
        p["spec"]["hostAliases"] = json!([
            {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
            {"ip": "10.1.2.3", "hostnames": ["foo.remote"]},
        ]);
        let path = hosts_file(root, &p, &ctx())
            .expect("hosts")
            .expect("a file");
        assert_eq!(path, root.join("pods/uid-1/etc-hosts"));
        assert_eq!(
            read(&path),
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.0.0.7\tweb\n\
             \n\
             # Entries added by HostAliases.\n\
             127.0.0.1\tfoo.local\tbar.local\n\
             10.1.2.3\tfoo.remote\n"
        );
        assert_eq!(mode(&path), 0o644);
        let inode = fs::metadata(&path).expect("meta").ino();
        hosts_file(root, &p, &ctx()).expect("again");
        assert_eq!(
            fs::metadata(&path).expect("meta").ino(),
            inode,
            "unchanged: not rewritten"
        );

        p["spec"]["hostname"] = json!("web-0");
        p["spec"]["subdomain"] = json!("nginx");
        hosts_file(root, &p, &ctx()).expect("subdomain");
        assert!(
            read(&path).contains("10.0.0.7\tweb-0.nginx.default.svc.cluster.local\tweb-0\n"),
            "{}",
            read(&path)
        );

        p["spec"]["hostNetwork"] = json!(true);
        hosts_file(root, &p, &ctx()).expect("host network");
        let text = read(&path);
        assert!(
            text.starts_with("# Kubernetes-managed hosts file (host network).\n"),
            "{text}"
        );
        assert!(text.ends_with("# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"));
    }

    #[test]
    fn long_pod_names_are_cut_to_a_hostname() {
        let name = format!("{}-.x", "a".repeat(61));
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": []}}))
                .expect("pod");
        let (host, domain) = pod_hostname_and_domain(&p);
        assert_eq!(host, "a".repeat(61));
        assert_eq!(domain, "");
    }

    #[tokio::test]
    async fn remove_pod_volumes_removes_everything_but_host_paths() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let host = tmp.path().join("host");
        fs::create_dir_all(&host).expect("mkdir");
        fs::write(host.join("keep"), "k").expect("write");
        let src = MemSource::default().with_config_map("default", "cfg", json!({"k": "v"}));
        let mut p = pod(
            json!([
                {"name": "scratch", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "h", "hostPath": {"path": host}},
            ]),
            app(),
        );
        p["spec"]["hostAliases"] = json!([{"ip": "1.2.3.4", "hostnames": ["x"]}]);
        let prepared = prepare_volumes(&root, &p, &ctx(), &src)
            .await
            .expect("prepare");
        hosts_file(&root, &p, &ctx()).expect("hosts");
        // A container left a read-only directory and a link to the host path.
        let scratch = prepared.host_path("scratch").expect("s").to_path_buf();
        fs::create_dir_all(scratch.join("ro/inner")).expect("mkdir");
        fs::write(scratch.join("ro/inner/f"), "x").expect("write");
        fs::set_permissions(scratch.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
        symlink(&host, scratch.join("link")).expect("symlink");

        remove_pod_volumes(&root, "uid-1").expect("remove");
        assert!(!root.join("pods/uid-1/volumes").exists());
        assert!(!root.join("pods/uid-1/etc-hosts").exists());
        assert_eq!(
            read(&host.join("keep")),
            "k",
            "hostPath contents are untouched"
        );
        remove_pod_volumes(&root, "uid-1").expect("nothing there is fine");
        assert!(remove_pod_volumes(&root, "../x").is_err());
    }
}

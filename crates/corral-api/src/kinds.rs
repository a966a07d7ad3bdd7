//! The registry of kinds Corral serves: their API group/version, plural and short names, scope and
//! whether they carry a status subresource.

/// What Corral knows about one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// `Pod`, `Deployment`, ...
    pub kind: &'static str,
    /// `v1`, `apps/v1`, `batch/v1`, `storage.k8s.io/v1`, `coordination.k8s.io/v1`.
    pub api_version: &'static str,
    /// `pods`: the resource name, also the first segment of the storage key.
    pub plural: &'static str,
    /// `pod`.
    pub singular: &'static str,
    /// `po`, `svc`, ...
    pub short_names: &'static [&'static str],
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
    /// Whether the kind has a `status` written by controllers/agents.
    pub has_status: bool,
}

impl KindInfo {
    /// The API group: `""` for the core group, `apps`, `batch`, ...
    pub fn group(&self) -> &'static str {
        match self.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// The version without the group: `v1`.
    pub fn version(&self) -> &'static str {
        match self.api_version.split_once('/') {
            Some((_, version)) => version,
            None => self.api_version,
        }
    }
}

const fn k(
    kind: &'static str,
    api_version: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    has_status: bool,
) -> KindInfo {
    KindInfo {
        kind,
        api_version,
        plural,
        singular,
        short_names,
        namespaced,
        has_status,
    }
}

static KINDS: &[KindInfo] = &[
    k(
        "Namespace",
        "v1",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        true,
    ),
    k("Pod", "v1", "pods", "pod", &["po"], true, true),
    k("Node", "v1", "nodes", "node", &["no"], false, true),
    k("Service", "v1", "services", "service", &["svc"], true, true),
    k(
        "Endpoints",
        "v1",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        false,
    ),
    k(
        "ConfigMap",
        "v1",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        false,
    ),
    k("Secret", "v1", "secrets", "secret", &[], true, false),
    k(
        "ServiceAccount",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        false,
    ),
    k(
        "ReplicaSet",
        "apps/v1",
        "replicasets",
        "replicaset",
        &["rs"],
        true,
        true,
    ),
    k(
        "Deployment",
        "apps/v1",
        "deployments",
        "deployment",
        &["deploy"],
        true,
        true,
    ),
    k(
        "StatefulSet",
        "apps/v1",
        "statefulsets",
        "statefulset",
        &["sts"],
        true,
        true,
    ),
    k(
        "DaemonSet",
        "apps/v1",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        true,
    ),
    k(
        "ControllerRevision",
        "apps/v1",
        "controllerrevisions",
        "controllerrevision",
        &[],
        true,
        false,
    ),
    k("Job", "batch/v1", "jobs", "job", &[], true, true),
    k(
        "CronJob",
        "batch/v1",
        "cronjobs",
        "cronjob",
        &["cj"],
        true,
        true,
    ),
    k(
        "PersistentVolume",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        &["pv"],
        false,
        true,
    ),
    k(
        "PersistentVolumeClaim",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        true,
        true,
    ),
    k(
        "StorageClass",
        "storage.k8s.io/v1",
        "storageclasses",
        "storageclass",
        &["sc"],
        false,
        false,
    ),
    k("Event", "v1", "events", "event", &["ev"], true, false),
    k(
        "Lease",
        "coordination.k8s.io/v1",
        "leases",
        "lease",
        &[],
        true,
        false,
    ),
];

/// Every supported kind, in a stable order.
pub fn all() -> &'static [KindInfo] {
    KINDS
}

/// The kind with exactly this `kind` name (`Pod`, not `pod`).
pub fn kind_info(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|info| info.kind == kind)
}

/// The kind a command-line user means: a kind, plural, singular or short name, any case, optionally
/// qualified by its group (`deployments.apps`, `cronjobs.batch`, `pods.` is not accepted).
pub fn resolve(name: &str) -> Option<&'static KindInfo> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    let (resource, group) = match lower.split_once('.') {
        Some((resource, group)) => (resource, Some(group)),
        None => (lower.as_str(), None),
    };
    KINDS.iter().find(|info| {
        let names_match = info.kind.eq_ignore_ascii_case(resource)
            || info.plural == resource
            || info.singular == resource
            || info.short_names.contains(&resource);
        let group_matches = match group {
            None => true,
            Some(g) => g == info.group() || (info.group().is_empty() && g == "core"),
        };
        names_match && group_matches
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_a_user_types_resolves_to_its_kind() {
        let table = [
            ("pods", "Pod"),
            ("pod", "Pod"),
            ("po", "Pod"),
            ("Pod", "Pod"),
            ("PODS", "Pod"),
            ("svc", "Service"),
            ("deploy", "Deployment"),
            ("deployments.apps", "Deployment"),
            ("deployment.apps", "Deployment"),
            ("rs", "ReplicaSet"),
            ("sts", "StatefulSet"),
            ("ds", "DaemonSet"),
            ("controllerrevisions.apps", "ControllerRevision"),
            ("controllerrevision", "ControllerRevision"),
            ("cj", "CronJob"),
            ("jobs.batch", "Job"),
            ("pv", "PersistentVolume"),
            ("pvc", "PersistentVolumeClaim"),
            ("sc", "StorageClass"),
            ("storageclasses.storage.k8s.io", "StorageClass"),
            ("ns", "Namespace"),
            ("cm", "ConfigMap"),
            ("sa", "ServiceAccount"),
            ("ep", "Endpoints"),
            ("endpoints", "Endpoints"),
            ("ev", "Event"),
            ("no", "Node"),
            ("leases.coordination.k8s.io", "Lease"),
            ("secrets", "Secret"),
        ];
        for (input, kind) in table {
            assert_eq!(
                resolve(input).map(|i| i.kind),
                Some(kind),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn unknown_names_and_wrong_groups_do_not_resolve() {
        for input in ["", "widgets", "deployments.batch", "pods.apps", "x.y"] {
            assert_eq!(resolve(input), None, "input {input:?}");
        }
    }

    #[test]
    fn kind_info_is_exact_and_registry_is_consistent() {
        assert_eq!(
            kind_info("Deployment").map(|i| i.api_version),
            Some("apps/v1")
        );
        assert_eq!(kind_info("deployment"), None);
        assert_eq!(all().len(), 20);
        for info in all() {
            assert_eq!(kind_info(info.kind), Some(info));
            assert_eq!(resolve(info.plural), Some(info));
        }
        assert!(!kind_info("Node").map(|i| i.namespaced).unwrap_or(true));
        assert_eq!(
            kind_info("Lease").map(|i| i.group()),
            Some("coordination.k8s.io")
        );
        assert_eq!(
            kind_info("Pod").map(|i| (i.group(), i.version())),
            Some(("", "v1"))
        );
    }
}

//! The one parse error of this crate: a field of a pod or node that scheduling cannot read.

use serde_json::Value;

/// A field scheduling cannot interpret, worded like a Kubernetes field error:
/// `spec.containers[0].resources.requests.cpu: Invalid value: "lots": quantities must match ...`.
/// Never retryable: the object has to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: Invalid value: {value}: {rule}")]
pub struct InvalidField {
    /// Dotted path from the object's root, with list indexes: `spec.tolerations[1].operator`.
    pub path: String,
    /// The offending value as JSON (strings quoted).
    pub value: String,
    /// The rule it breaks.
    pub rule: String,
}

impl InvalidField {
    pub(crate) fn new(path: impl Into<String>, value: &Value, rule: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            value: value.to_string(),
            rule: rule.into(),
        }
    }
}

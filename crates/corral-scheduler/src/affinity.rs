//! Required node affinity: a `v1.NodeSelector` (`nodeSelectorTerms`), matched against a node's
//! name and labels as `k8s.io/component-helpers/scheduling/corev1/nodeaffinity` matches it.
//!
//! - The terms are ORed; inside a term, `matchExpressions` and `matchFields` are ANDed.
//! - A term with neither matches no node; a selector without terms matches no node.
//! - `In`/`NotIn`/`Exists`/`DoesNotExist` work as in label selectors (`NotIn` and
//!   `DoesNotExist` hold when the label is absent). `Gt`/`Lt` compare the label, read as an
//!   integer, with the one integer value; an absent or non-integer label does not match.
//! - `matchFields` supports the key `metadata.name` with `In`/`NotIn` and exactly one value.

use std::collections::BTreeMap;

use corral_api::selector::{Operator, Requirement};
use serde_json::Value;

use crate::error::InvalidField;
use crate::json::{array, join, string};

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSelectorRequirement {
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    Label(Requirement),
    /// The label, as an integer, is greater than `value`.
    Gt { key: String, value: i64 },
    /// The label, as an integer, is less than `value`.
    Lt { key: String, value: i64 },
}

impl NodeSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let as_int = |key: &str| labels.get(key).and_then(|v| v.parse::<i64>().ok());
        match self {
            Self::Label(r) => r.matches(labels),
            Self::Gt { key, value } => as_int(key).is_some_and(|v| v > *value),
            Self::Lt { key, value } => as_int(key).is_some_and(|v| v < *value),
        }
    }
}

/// One `matchFields` entry: `metadata.name` `In` (or, `negated`, `NotIn`) `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNameRequirement {
    pub values: Vec<String>,
    pub negated: bool,
}

impl NodeNameRequirement {
    pub fn matches(&self, node_name: &str) -> bool {
        self.values.iter().any(|v| v == node_name) != self.negated
    }
}

/// One `nodeSelectorTerms` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelectorTerm {
    pub match_expressions: Vec<NodeSelectorRequirement>,
    pub match_fields: Vec<NodeNameRequirement>,
}

impl NodeSelectorTerm {
    /// Whether the node satisfies every requirement; a term without any matches nothing.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self.match_fields.iter().all(|r| r.matches(node_name))
    }
}

/// `requiredDuringSchedulingIgnoredDuringExecution`: a node must match one of the terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelector {
    pub terms: Vec<NodeSelectorTerm>,
}

impl NodeSelector {
    /// Reads a `v1.NodeSelector` found at `path`.
    pub fn from_json(selector: &Value, path: &str) -> Result<Self, InvalidField> {
        if !selector.is_object() {
            return Err(InvalidField::new(path, selector, "must be an object"));
        }
        let mut terms = Vec::new();
        for (i, term) in array(selector, "nodeSelectorTerms", path)?
            .iter()
            .enumerate()
        {
            let term_path = format!("{}[{i}]", join(path, "nodeSelectorTerms"));
            if !term.is_object() {
                return Err(InvalidField::new(term_path, term, "must be an object"));
            }
            let mut parsed = NodeSelectorTerm::default();
            for (j, expr) in array(term, "matchExpressions", &term_path)?
                .iter()
                .enumerate()
            {
                let p = format!("{}[{j}]", join(&term_path, "matchExpressions"));
                parsed.match_expressions.push(expression(expr, &p)?);
            }
            for (j, expr) in array(term, "matchFields", &term_path)?.iter().enumerate() {
                let p = format!("{}[{j}]", join(&term_path, "matchFields"));
                parsed.match_fields.push(field_expression(expr, &p)?);
            }
            terms.push(parsed);
        }
        Ok(Self { terms })
    }

    /// Whether any term matches the node.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

const SUPPORTED_OPERATORS: &str =
    "supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\"";

fn key_operator_values<'a>(
    expr: &'a Value,
    path: &str,
) -> Result<(&'a str, &'a str, Vec<String>), InvalidField> {
    if !expr.is_object() {
        return Err(InvalidField::new(path, expr, "must be an object"));
    }
    let key = string(expr, "key", path)?
        .ok_or_else(|| InvalidField::new(join(path, "key"), &Value::Null, "Required value"))?;
    let operator = string(expr, "operator", path)?
        .ok_or_else(|| InvalidField::new(join(path, "operator"), &Value::Null, "Required value"))?;
    let values_path = join(path, "values");
    let values = array(expr, "values", path)?
        .iter()
        .enumerate()
        .map(|(k, v)| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                InvalidField::new(format!("{values_path}[{k}]"), v, "must be a string")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((key, operator, values))
}

fn expression(expr: &Value, path: &str) -> Result<NodeSelectorRequirement, InvalidField> {
    let (key, operator, values) = key_operator_values(expr, path)?;
    let values_path = join(path, "values");
    let values_json = Value::from(values.clone());
    let label = |operator: Operator| {
        NodeSelectorRequirement::Label(Requirement {
            key: key.to_string(),
            operator,
            values: values.clone(),
        })
    };
    let single_integer = || -> Result<i64, InvalidField> {
        match values.as_slice() {
            [one] => one.parse::<i64>().map_err(|_| {
                InvalidField::new(
                    format!("{values_path}[0]"),
                    &Value::from(one.as_str()),
                    "must be an integer",
                )
            }),
            _ => Err(InvalidField::new(
                &values_path,
                &values_json,
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
        }
    };
    match operator {
        "In" | "NotIn" if values.is_empty() => Err(InvalidField::new(
            &values_path,
            &values_json,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(InvalidField::new(
            &values_path,
            &values_json,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "In" => Ok(label(Operator::In)),
        "NotIn" => Ok(label(Operator::NotIn)),
        "Exists" => Ok(label(Operator::Exists)),
        "DoesNotExist" => Ok(label(Operator::DoesNotExist)),
        "Gt" => Ok(NodeSelectorRequirement::Gt {
            key: key.to_string(),
            value: single_integer()?,
        }),
        "Lt" => Ok(NodeSelectorRequirement::Lt {
            key: key.to_string(),
            value: single_integer()?,
        }),
        other => Err(InvalidField::new(
            join(path, "operator"),
            &Value::from(other),
            SUPPORTED_OPERATORS,
        )),
    }
}

fn field_expression(expr: &Value, path: &str) -> Result<NodeNameRequirement, InvalidField> {
    let (key, operator, values) = key_operator_values(expr, path)?;
    if key != "metadata.name" {
        return Err(InvalidField::new(
            join(path, "key"),
            &Value::from(key),
            "not a valid field selector key: supported values: \"metadata.name\"",
        ));
    }
    let negated = match operator {
        "In" => false,
        "NotIn" => true,
        other => {
            return Err(InvalidField::new(
                join(path, "operator"),
                &Value::from(other),
                "not a valid selector operator: supported values: \"In\", \"NotIn\"",
            ));
        }
    };
    if values.len() != 1 {
        return Err(InvalidField::new(
            join(path, "values"),
            &Value::from(values),
            "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
        ));
    }
    Ok(NodeNameRequirement { values, negated })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(terms: Value) -> NodeSelector {
        NodeSelector::from_json(&json!({ "nodeSelectorTerms": terms }), "affinity")
            .expect("the selector in the table is valid")
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> Value {
        json!({ "key": key, "operator": operator, "values": values })
    }

    #[test]
    fn node_selector_terms_match_like_kubernetes() {
        let node = labels(&[("zone", "a"), ("disk", "ssd"), ("cores", "8"), ("gen", "x")]);
        let table: Vec<(&str, Value, bool)> = vec![
            (
                "In with the value",
                json!([{ "matchExpressions": [expr("zone", "In", &["a", "b"])] }]),
                true,
            ),
            (
                "In without the value",
                json!([{ "matchExpressions": [expr("zone", "In", &["b"])] }]),
                false,
            ),
            (
                "In on an absent label",
                json!([{ "matchExpressions": [expr("rack", "In", &["1"])] }]),
                false,
            ),
            (
                "NotIn with the value",
                json!([{ "matchExpressions": [expr("zone", "NotIn", &["a"])] }]),
                false,
            ),
            (
                "NotIn without the value",
                json!([{ "matchExpressions": [expr("zone", "NotIn", &["b"])] }]),
                true,
            ),
            (
                "NotIn on an absent label",
                json!([{ "matchExpressions": [expr("rack", "NotIn", &["1"])] }]),
                true,
            ),
            (
                "Exists",
                json!([{ "matchExpressions": [{ "key": "disk", "operator": "Exists" }] }]),
                true,
            ),
            (
                "Exists on an absent label",
                json!([{ "matchExpressions": [{ "key": "gpu", "operator": "Exists" }] }]),
                false,
            ),
            (
                "DoesNotExist",
                json!([{ "matchExpressions": [{ "key": "gpu", "operator": "DoesNotExist" }] }]),
                true,
            ),
            (
                "DoesNotExist on a present label",
                json!([{ "matchExpressions": [{ "key": "disk", "operator": "DoesNotExist" }] }]),
                false,
            ),
            (
                "Gt below",
                json!([{ "matchExpressions": [expr("cores", "Gt", &["4"])] }]),
                true,
            ),
            (
                "Gt equal",
                json!([{ "matchExpressions": [expr("cores", "Gt", &["8"])] }]),
                false,
            ),
            (
                "Lt above",
                json!([{ "matchExpressions": [expr("cores", "Lt", &["16"])] }]),
                true,
            ),
            (
                "Lt equal",
                json!([{ "matchExpressions": [expr("cores", "Lt", &["8"])] }]),
                false,
            ),
            (
                "Gt on a label that is not a number",
                json!([{ "matchExpressions": [expr("gen", "Gt", &["1"])] }]),
                false,
            ),
            (
                "Lt on an absent label",
                json!([{ "matchExpressions": [expr("rack", "Lt", &["100"])] }]),
                false,
            ),
            (
                "matchFields In the node name",
                json!([{ "matchFields": [expr("metadata.name", "In", &["n1"])] }]),
                true,
            ),
            (
                "matchFields In another name",
                json!([{ "matchFields": [expr("metadata.name", "In", &["n2"])] }]),
                false,
            ),
            (
                "matchFields NotIn another name",
                json!([{ "matchFields": [expr("metadata.name", "NotIn", &["n2"])] }]),
                true,
            ),
            (
                "expressions of one term are ANDed",
                json!([{ "matchExpressions": [expr("zone", "In", &["a"]), expr("disk", "In", &["hdd"])] }]),
                false,
            ),
            (
                "expressions and fields of one term are ANDed",
                json!([{ "matchExpressions": [expr("zone", "In", &["a"])], "matchFields": [expr("metadata.name", "In", &["n2"])] }]),
                false,
            ),
            (
                "terms are ORed",
                json!([
                    { "matchExpressions": [expr("zone", "In", &["b"])] },
                    { "matchExpressions": [expr("disk", "In", &["ssd"])] },
                ]),
                true,
            ),
            ("an empty term matches nothing", json!([{}]), false),
            (
                "an empty term does not stop another term matching",
                json!([{}, { "matchExpressions": [expr("zone", "In", &["a"])] }]),
                true,
            ),
            ("no terms match nothing", json!([]), false),
        ];
        for (case, terms, want) in table {
            assert_eq!(selector(terms).matches("n1", &node), want, "{case}");
        }
    }

    #[test]
    fn malformed_requirements_name_the_field() {
        let table: Vec<(Value, &str, &str)> = vec![
            (
                json!([{ "matchExpressions": [expr("zone", "Like", &["a"])] }]),
                "affinity.nodeSelectorTerms[0].matchExpressions[0].operator",
                "supported values",
            ),
            (
                json!([{ "matchExpressions": [expr("zone", "In", &[])] }]),
                "affinity.nodeSelectorTerms[0].matchExpressions[0].values",
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            (
                json!([{}, { "matchExpressions": [expr("zone", "Exists", &["a"])] }]),
                "affinity.nodeSelectorTerms[1].matchExpressions[0].values",
                "may not be specified",
            ),
            (
                json!([{ "matchExpressions": [expr("cores", "Gt", &["1", "2"])] }]),
                "affinity.nodeSelectorTerms[0].matchExpressions[0].values",
                "single value",
            ),
            (
                json!([{ "matchExpressions": [expr("cores", "Lt", &["ten"])] }]),
                "affinity.nodeSelectorTerms[0].matchExpressions[0].values[0]",
                "must be an integer",
            ),
            (
                json!([{ "matchFields": [expr("metadata.uid", "In", &["x"])] }]),
                "affinity.nodeSelectorTerms[0].matchFields[0].key",
                "metadata.name",
            ),
            (
                json!([{ "matchFields": [expr("metadata.name", "In", &["a", "b"])] }]),
                "affinity.nodeSelectorTerms[0].matchFields[0].values",
                "only one value",
            ),
            (
                json!([{ "matchExpressions": [{ "operator": "Exists" }] }]),
                "affinity.nodeSelectorTerms[0].matchExpressions[0].key",
                "Required value",
            ),
            (
                json!("zone=a"),
                "affinity.nodeSelectorTerms",
                "must be a list",
            ),
        ];
        for (terms, path, rule) in table {
            let err = NodeSelector::from_json(&json!({ "nodeSelectorTerms": terms }), "affinity")
                .expect_err(path);
            assert_eq!(err.path, path, "{err}");
            assert!(err.rule.contains(rule), "{err}");
        }
    }
}

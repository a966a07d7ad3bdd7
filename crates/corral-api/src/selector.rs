//! Label selectors (`app=web,tier!=db,env in (a,b),!canary`) and field selectors
//! (`spec.nodeName=n1,status.phase!=Running`), parsed the way Kubernetes parses them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::error::ApiError;
use crate::validation::{check_label_value, check_qualified_name};

/// How a requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// One value for `=`/`!=`, one or more for `in`/`notin`, none for exists/does-not-exist.
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

/// A set of requirements that must all hold. The empty selector matches every object; the
/// selector built from a null `metav1.LabelSelector` matches none (as in Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Matches every set of labels.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Matches no set of labels.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// `key=value` for each entry (a Service's `spec.selector`, a `matchLabels`).
    pub fn from_match_labels(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// No requirement (so it matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector matches no labels at all because it was built from a null selector.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }
}

impl fmt::Display for LabelSelector {
    /// The string form [`parse_label_selector`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&terms.join(","))
    }
}

fn bad_term(term: &str, why: impl fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "invalid label selector term \"{}\": {why}",
        term.trim()
    ))
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, ApiError> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| bad_term(&text[start..=i], "unbalanced ')'"))?;
            }
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad_term(&text[start..], "missing ')'"));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

/// Parses the string form of a label selector: comma-separated terms `k=v`, `k==v`, `k!=v`,
/// `k in (v1,v2)`, `k notin (v1)`, `k` (exists) and `!k` (does not exist). The empty string selects
/// everything. A malformed term is a BadRequest that quotes it.
pub fn parse_label_selector(text: &str) -> Result<LabelSelector, ApiError> {
    let mut requirements = Vec::new();
    if text.trim().is_empty() {
        return Ok(LabelSelector::everything());
    }
    for raw in split_terms(text)? {
        let term = raw.trim();
        if term.is_empty() {
            return Err(bad_term(raw, "empty term (a stray ',')"));
        }
        requirements.push(parse_term(term)?);
    }
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

fn parse_term(term: &str) -> Result<Requirement, ApiError> {
    let check_key =
        |key: &str| check_qualified_name(key).map_err(|why| bad_term(term, format!("key {why}")));
    if let Some(rest) = term.strip_prefix('!') {
        let key = rest.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_string(),
            operator: Operator::DoesNotExist,
            values: vec![],
        });
    }
    let key_end = term
        .find(|c: char| c.is_whitespace() || "=!()".contains(c))
        .unwrap_or(term.len());
    let (key, rest) = term.split_at(key_end);
    if key.is_empty() {
        return Err(bad_term(term, "missing the label key"));
    }
    check_key(key)?;
    let rest = rest.trim_start();
    let single = |op: Operator, value: &str| -> Result<Requirement, ApiError> {
        let value = value.trim();
        if value.contains(|c: char| c.is_whitespace() || "=!()".contains(c)) {
            return Err(bad_term(
                term,
                format!("unexpected characters in value \"{value}\""),
            ));
        }
        check_label_value(value).map_err(|why| bad_term(term, format!("value {why}")))?;
        Ok(Requirement {
            key: key.to_string(),
            operator: op,
            values: vec![value.to_string()],
        })
    };
    if rest.is_empty() {
        return Ok(Requirement {
            key: key.to_string(),
            operator: Operator::Exists,
            values: vec![],
        });
    }
    if let Some(v) = rest.strip_prefix("==") {
        return single(Operator::Equals, v);
    }
    if let Some(v) = rest.strip_prefix("!=") {
        return single(Operator::NotEquals, v);
    }
    if let Some(v) = rest.strip_prefix('=') {
        return single(Operator::Equals, v);
    }
    let (operator, set) = if let Some(set) = rest.strip_prefix("notin") {
        (Operator::NotIn, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (Operator::In, set)
    } else {
        return Err(bad_term(
            term,
            "expected one of =, ==, !=, in, notin after the key",
        ));
    };
    let set = set.trim();
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad_term(term, "the values of in/notin must be in parentheses: (a,b)"))?;
    let mut values = Vec::new();
    for value in inner.split(',') {
        let value = value.trim();
        if value.contains(|c: char| c.is_whitespace() || "()".contains(c)) {
            return Err(bad_term(
                term,
                format!("unexpected characters in value \"{value}\""),
            ));
        }
        check_label_value(value).map_err(|why| bad_term(term, format!("value {why}")))?;
        values.push(value.to_string());
    }
    if values.iter().all(String::is_empty) {
        return Err(bad_term(
            term,
            "for 'in', 'notin' operators, values set can't be empty",
        ));
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// Reads a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`). A null selector matches
/// nothing, an empty one (`{}`) everything. Errors are BadRequests naming the bad part.
pub fn from_label_selector_json(selector: &Value) -> Result<LabelSelector, ApiError> {
    let map = match selector {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(map) => map,
        other => {
            return Err(ApiError::bad_request(format!(
                "a label selector must be an object, got {other}"
            )));
        }
    };
    let mut requirements = Vec::new();
    match map.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let value = value.as_str().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "matchLabels[{key}] must be a string, got {value}"
                    ))
                })?;
                check_qualified_name(key)
                    .map_err(|why| ApiError::bad_request(format!("matchLabels key {why}")))?;
                check_label_value(value)
                    .map_err(|why| ApiError::bad_request(format!("matchLabels[{key}] {why}")))?;
                requirements.push(Requirement {
                    key: key.clone(),
                    operator: Operator::Equals,
                    values: vec![value.to_string()],
                });
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "matchLabels must be an object, got {other}"
            )));
        }
    }
    match map.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(exprs)) => {
            for (i, expr) in exprs.iter().enumerate() {
                requirements.push(expression(expr).map_err(|why| {
                    ApiError::bad_request(format!("matchExpressions[{i}]: {why}"))
                })?);
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "matchExpressions must be a list, got {other}"
            )));
        }
    }
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

fn expression(expr: &Value) -> Result<Requirement, String> {
    let key = expr
        .get("key")
        .and_then(Value::as_str)
        .ok_or("key: Required value")?;
    check_qualified_name(key).map_err(|why| format!("key: Invalid value: \"{key}\": {why}"))?;
    let op = expr
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("operator: Required value")?;
    let values: Vec<String> = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(format!("values: every value must be a string, got {v}"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("values: must be a list, got {other}")),
    };
    let operator = match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(format!(
                "operator: Unsupported value: \"{other}\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
            ));
        }
    };
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(
                "values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
                    .into(),
            );
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err("values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into());
        }
        _ => {}
    }
    for v in &values {
        check_label_value(v).map_err(|why| format!("values: Invalid value: \"{v}\": {why}"))?;
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// One term of a field selector: `path=value` or `path!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// A dotted JSON path: `metadata.name`, `spec.nodeName`, `involvedObject.name`.
    pub path: String,
    pub value: String,
    pub negated: bool,
}

/// A conjunction of field terms. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Whether every term holds for the object. A missing field (or a null) compares as `""`;
    /// numbers and booleans compare by their JSON text.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_text(obj, &r.path) == r.value) != r.negated)
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an equality term pins for `path` (`spec.nodeName=n1` → `Some("n1")`).
    pub fn equals(&self, path: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.path == path && !r.negated)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.path,
                    if r.negated { "!=" } else { "=" },
                    r.value
                )
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

fn field_text(obj: &Value, path: &str) -> String {
    let mut current = obj;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a field selector: comma-separated `path=value`, `path==value` or `path!=value`.
pub fn parse_field_selector(text: &str) -> Result<FieldSelector, ApiError> {
    let mut requirements = Vec::new();
    if text.trim().is_empty() {
        return Ok(FieldSelector::default());
    }
    for raw in text.split(',') {
        let term = raw.trim();
        let bad = |why: &str| {
            ApiError::bad_request(format!("invalid field selector term \"{term}\": {why}"))
        };
        let (path, value, negated) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, true)
        } else if let Some((p, v)) = term.split_once("==") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v, false)
        } else {
            return Err(bad("expected path=value, path==value or path!=value"));
        };
        let (path, value) = (path.trim(), value.trim());
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(bad(
                "the field path must be dotted names like metadata.name",
            ));
        }
        if value.contains(['=', '!']) {
            return Err(bad("the value may not contain '=' or '!'"));
        }
        requirements.push(FieldRequirement {
            path: path.to_string(),
            value: value.to_string(),
            negated,
        });
    }
    Ok(FieldSelector { requirements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_strings_match_like_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
        let table: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("env in (prod,staging)", true),
            ("env in (staging)", false),
            ("env notin (staging, dev)", true),
            ("env notin (prod)", false),
            ("missing notin (x)", true),
            ("missing in (x)", false),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("! tier", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app=web, env in (prod), !canary", true),
            ("example.com/role=x", false),
        ];
        for &(text, want) in table {
            let sel =
                parse_label_selector(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
            assert_eq!(sel.matches(&web), want, "{text:?}");
        }
    }

    #[test]
    fn bad_label_selector_terms_are_named() {
        let table: &[(&str, &str)] = &[
            ("app=web,", "\"\""),
            ("app=web,=x", "\"=x\""),
            ("app in (a", "\"app in (a\""),
            ("app in ()", "values set can't be empty"),
            ("app in a,b", "parentheses"),
            ("app ~ x", "\"app ~ x\""),
            ("bad key!=x", "\"bad key!=x\""),
            ("app=bad value", "\"app=bad value\""),
            ("app=-x", "\"app=-x\""),
            ("-app=x", "\"-app=x\""),
            ("a)=x", "unbalanced"),
        ];
        for &(text, want) in table {
            let err = parse_label_selector(text).expect_err(text);
            assert_eq!(err.reason(), crate::Reason::BadRequest);
            assert!(
                err.to_string().contains(want),
                "{text:?}: {err} should mention {want}"
            );
        }
    }

    #[test]
    fn selector_string_form_round_trips() {
        let text = "app=web,tier!=db,env in (a,b),x notin (c),y,!z";
        let sel = parse_label_selector(text).expect("valid");
        assert_eq!(sel.to_string(), text);
        assert_eq!(parse_label_selector(&sel.to_string()).expect("valid"), sel);
        assert!(!sel.is_empty());
        assert!(parse_label_selector(" ").expect("empty").is_empty());
    }

    #[test]
    fn json_label_selectors_combine_match_labels_and_expressions() {
        let sel = from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .expect("valid");
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "prod"), ("canary", "1")])));

        let everything = from_label_selector_json(&json!({})).expect("valid");
        assert!(everything.is_empty() && everything.matches(&labels(&[])));
        let nothing = from_label_selector_json(&Value::Null).expect("valid");
        assert!(!nothing.is_empty() && !nothing.matches(&labels(&[])));
    }

    #[test]
    fn bad_json_label_selectors_say_what_is_wrong() {
        let table = [
            (
                json!({"matchLabels": {"app": 1}}),
                "matchLabels[app] must be a string",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "Unsupported value: \"Gt\"",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "matchExpressions[0]: values: Required",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "Forbidden",
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "key: Required",
            ),
            (json!("app=web"), "must be an object"),
        ];
        for (value, want) in table {
            let err = from_label_selector_json(&value).expect_err("invalid");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "n1", "priority": 5},
            "status": {"phase": "Running"}
        });
        let table: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web-0", true),
            ("metadata.name==web-0", true),
            ("metadata.name!=web-0", false),
            ("metadata.namespace=default,spec.nodeName=n1", true),
            ("spec.nodeName=n2", false),
            ("status.phase!=Succeeded", true),
            ("spec.priority=5", true),
            ("involvedObject.name=", true),
            ("involvedObject.name=x", false),
            ("spec.missing!=", false),
        ];
        for &(text, want) in table {
            let sel =
                parse_field_selector(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
            assert_eq!(sel.matches(&pod), want, "{text:?}");
        }
        let sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed").expect("valid");
        assert_eq!(sel.equals("spec.nodeName"), Some("n1"));
        assert_eq!(sel.equals("status.phase"), None);
        assert_eq!(sel.to_string(), "spec.nodeName=n1,status.phase!=Failed");
    }

    #[test]
    fn bad_field_selector_terms_are_named() {
        for (text, want) in [
            ("spec.nodeName", "\"spec.nodeName\""),
            ("=x", "\"=x\""),
            ("a..b=x", "dotted"),
            ("a=b,", "\"\""),
        ] {
            let err = parse_field_selector(text).expect_err(text);
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
    }
}

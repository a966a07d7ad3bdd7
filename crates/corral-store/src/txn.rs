//! Transactions: what one Raft entry asks of the object store, and the pure function that applies
//! one against the current state.
//!
//! A transaction is a list of operations on keys, each with preconditions. Either every
//! precondition holds and every operation is written at the entry's log index (the revision), or
//! nothing is written and the result names the first precondition that failed.

use serde::{Deserialize, Serialize};

/// A condition on the current value of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pre {
    /// The key must not exist.
    Absent,
    /// The key must exist.
    Exists,
    /// The key's last-modified revision must equal this.
    Revision(u64),
    /// The stored object's `metadata.uid` must equal this.
    Uid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Store this object (Kubernetes JSON); `metadata.resourceVersion` is set to the revision.
    Put(String),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<Pre>,
    pub action: Action,
}

/// The application data of one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Txn {
    pub ops: Vec<Op>,
    /// Each operation stands alone: its preconditions gate only itself, and the result is
    /// [`TxnResult::Each`]. Many independent writes (a batch of pod bindings) then cost one
    /// Raft entry instead of one each.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub independent: bool,
}

impl Txn {
    /// An all-or-nothing transaction.
    pub fn all(ops: Vec<Op>) -> Txn {
        Txn {
            ops,
            independent: false,
        }
    }

    /// A batch of independent operations.
    pub fn each(ops: Vec<Op>) -> Txn {
        Txn {
            ops,
            independent: true,
        }
    }
}

impl std::fmt::Display for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "txn[")?;
        for (i, op) in self.ops.iter().enumerate() {
            let verb = match op.action {
                Action::Put(_) => "put",
                Action::Delete => "delete",
            };
            write!(f, "{}{verb} {}", if i > 0 { ", " } else { "" }, op.key)?;
        }
        write!(f, "]")
    }
}

/// Why a transaction wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    Exists {
        key: String,
    },
    Absent {
        key: String,
    },
    Revision {
        key: String,
        expected: u64,
        actual: u64,
    },
    Uid {
        key: String,
        expected: String,
        actual: String,
    },
    /// The stored bytes of the key are not a JSON object (never written by Corral).
    Corrupt {
        key: String,
        message: String,
    },
}

/// What one operation did: the value now stored (put) or the value removed (delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    pub key: String,
    pub value: String,
}

/// The result of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Committed {
        revision: u64,
        results: Vec<OpResult>,
    },
    Failed {
        revision: u64,
        op: usize,
        failure: Failure,
    },
    /// The outcome of each operation of an independent transaction, in order.
    Each {
        revision: u64,
        results: Vec<Result<OpResult, Failure>>,
    },
}

impl Default for TxnResult {
    fn default() -> Self {
        TxnResult::Committed {
            revision: 0,
            results: Vec::new(),
        }
    }
}

/// A value as the store keeps it: the revision that last wrote it and the object JSON (which
/// carries that revision as `metadata.resourceVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub revision: u64,
    pub value: String,
}

impl Stored {
    /// Bytes on disk: 8-byte big-endian revision, then the JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.value.len());
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(self.value.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Stored> {
        let (rev, json) = bytes.split_at_checked(8)?;
        let revision = u64::from_be_bytes(rev.try_into().ok()?);
        let value = String::from_utf8(json.to_vec()).ok()?;
        Some(Stored { revision, value })
    }
}

/// One change a transaction makes, ready to be written and published to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: String,
        value: String,
        prev: Option<String>,
    },
    Delete {
        key: String,
        prev: String,
    },
}

/// Decides a transaction against the current values (`current(key)`), writing nothing.
///
/// Later operations see the effect of earlier ones in the same transaction.
pub fn decide(
    txn: &Txn,
    revision: u64,
    mut current: impl FnMut(&str) -> Option<Stored>,
) -> Result<Vec<Change>, (usize, Failure)> {
    let mut overlay: std::collections::HashMap<&str, Option<Stored>> =
        std::collections::HashMap::new();
    let mut changes = Vec::with_capacity(txn.ops.len());
    for (i, op) in txn.ops.iter().enumerate() {
        let now = match overlay.get(op.key.as_str()) {
            Some(v) => v.clone(),
            None => current(&op.key),
        };
        let (change, after) = decide_op(op, revision, now).map_err(|f| (i, f))?;
        overlay.insert(&op.key, after);
        changes.push(change);
    }
    Ok(changes)
}

/// Decides each operation of an independent transaction on its own: a failed one writes
/// nothing and the others still apply (later ones see the effect of earlier successes).
pub fn decide_each(
    txn: &Txn,
    revision: u64,
    mut current: impl FnMut(&str) -> Option<Stored>,
) -> Vec<Result<Change, Failure>> {
    let mut overlay: std::collections::HashMap<&str, Option<Stored>> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(txn.ops.len());
    for op in &txn.ops {
        let now = match overlay.get(op.key.as_str()) {
            Some(v) => v.clone(),
            None => current(&op.key),
        };
        out.push(decide_op(op, revision, now).map(|(change, after)| {
            overlay.insert(&op.key, after);
            change
        }));
    }
    out
}

/// One operation against the key's current value: the change and the key's value after it.
fn decide_op(
    op: &Op,
    revision: u64,
    now: Option<Stored>,
) -> Result<(Change, Option<Stored>), Failure> {
    for pre in &op.pre {
        check(pre, &op.key, now.as_ref())?;
    }
    match &op.action {
        Action::Put(json) => {
            let value =
                with_resource_version(json, revision).map_err(|message| Failure::Corrupt {
                    key: op.key.clone(),
                    message,
                })?;
            let after = Stored {
                revision,
                value: value.clone(),
            };
            Ok((
                Change::Put {
                    key: op.key.clone(),
                    value,
                    prev: now.map(|s| s.value),
                },
                Some(after),
            ))
        }
        Action::Delete => match now {
            Some(prev) => Ok((
                Change::Delete {
                    key: op.key.clone(),
                    prev: prev.value,
                },
                None,
            )),
            None => Err(Failure::Absent {
                key: op.key.clone(),
            }),
        },
    }
}

fn check(pre: &Pre, key: &str, now: Option<&Stored>) -> Result<(), Failure> {
    let absent = || Failure::Absent {
        key: key.to_string(),
    };
    match pre {
        Pre::Absent => match now {
            None => Ok(()),
            Some(_) => Err(Failure::Exists {
                key: key.to_string(),
            }),
        },
        Pre::Exists => now.map(|_| ()).ok_or_else(absent),
        Pre::Revision(expected) => {
            let now = now.ok_or_else(absent)?;
            if now.revision == *expected {
                Ok(())
            } else {
                Err(Failure::Revision {
                    key: key.to_string(),
                    expected: *expected,
                    actual: now.revision,
                })
            }
        }
        Pre::Uid(expected) => {
            let now = now.ok_or_else(absent)?;
            let actual = serde_json::from_str::<serde_json::Value>(&now.value)
                .ok()
                .and_then(|v| {
                    v.pointer("/metadata/uid")
                        .and_then(|u| u.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            if &actual == expected {
                Ok(())
            } else {
                Err(Failure::Uid {
                    key: key.to_string(),
                    expected: expected.clone(),
                    actual,
                })
            }
        }
    }
}

/// Sets `metadata.resourceVersion` of a JSON object to `revision`.
pub fn with_resource_version(json: &str, revision: u64) -> Result<String, String> {
    // Only `metadata` is parsed into a tree; the rest of the object (spec, status: the bulk)
    // is carried through as raw JSON text.
    let mut top: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut meta: serde_json::Map<String, serde_json::Value> = match top.get("metadata") {
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| "metadata is not an object".to_string())?
        }
        None => serde_json::Map::new(),
    };
    meta.insert(
        "resourceVersion".into(),
        serde_json::Value::String(revision.to_string()),
    );
    let meta = serde_json::value::to_raw_value(&meta).map_err(|e| e.to_string())?;
    top.insert("metadata".into(), meta);
    serde_json::to_string(&top).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {

    #[test]
    fn stamping_the_revision_keeps_everything_else_as_it_was() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b\u00e9"},"resourceVersion":"3"},"spec":{"containers":[{"name":"c","args":["x\"y"]}]},"status":{"phase":"Pending"}}"#;
        let stamped = with_resource_version(json, 42).expect("stamped");
        let mut want: serde_json::Value = serde_json::from_str(json).expect("json");
        want["metadata"]["resourceVersion"] = serde_json::json!("42");
        let got: serde_json::Value = serde_json::from_str(&stamped).expect("json out");
        assert_eq!(got, want);
        // Untouched parts keep their text as it came (here: `name` before `args`).
        assert!(
            stamped.contains(r#"{"name":"c","args":["x\"y"]}"#),
            "{stamped}"
        );
        assert!(with_resource_version("[1]", 1).is_err());
        assert!(with_resource_version(r#"{"metadata": 3}"#, 1).is_err());
        let bare = with_resource_version(r#"{"kind":"X"}"#, 7).expect("no metadata");
        assert_eq!(bare, r#"{"kind":"X","metadata":{"resourceVersion":"7"}}"#);
    }
    use super::*;

    fn put(key: &str, json: &str, pre: Vec<Pre>) -> Op {
        Op {
            key: key.into(),
            pre,
            action: Action::Put(json.into()),
        }
    }

    #[test]
    fn put_sets_resource_version_to_the_revision() {
        let txn = Txn {
            independent: false,
            ops: vec![put("/a", r#"{"metadata":{"name":"a"}}"#, vec![Pre::Absent])],
        };
        let changes = decide(&txn, 42, |_| None).expect("commits");
        match &changes[0] {
            Change::Put {
                value, prev: None, ..
            } => assert!(value.contains(r#""resourceVersion":"42""#)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stale_revision_is_a_failure_naming_both_revisions() {
        let txn = Txn {
            independent: false,
            ops: vec![put("/a", "{}", vec![Pre::Revision(3)])],
        };
        let now = Stored {
            revision: 5,
            value: "{}".into(),
        };
        let err = decide(&txn, 6, |_| Some(now.clone())).expect_err("stale");
        assert_eq!(
            err,
            (
                0,
                Failure::Revision {
                    key: "/a".into(),
                    expected: 3,
                    actual: 5
                }
            )
        );
    }

    #[test]
    fn creating_an_existing_key_fails_and_later_ops_see_earlier_ones() {
        let txn = Txn {
            independent: false,
            ops: vec![
                put("/a", "{}", vec![Pre::Absent]),
                put("/a", "{}", vec![Pre::Absent]),
            ],
        };
        let err = decide(&txn, 1, |_| None).expect_err("second sees the first");
        assert_eq!(err, (1, Failure::Exists { key: "/a".into() }));
    }

    #[test]
    fn uid_precondition_compares_metadata_uid() {
        let txn = Txn {
            independent: false,
            ops: vec![Op {
                key: "/a".into(),
                pre: vec![Pre::Uid("u1".into())],
                action: Action::Delete,
            }],
        };
        let now = Stored {
            revision: 2,
            value: r#"{"metadata":{"uid":"u2"}}"#.into(),
        };
        let err = decide(&txn, 3, |_| Some(now.clone())).expect_err("uid differs");
        assert_eq!(
            err.1,
            Failure::Uid {
                key: "/a".into(),
                expected: "u1".into(),
                actual: "u2".into()
            }
        );
    }

    #[test]
    fn deleting_a_missing_key_is_absent() {
        let txn = Txn {
            independent: false,
            ops: vec![Op {
                key: "/a".into(),
                pre: vec![],
                action: Action::Delete,
            }],
        };
        assert_eq!(
            decide(&txn, 1, |_| None).expect_err("absent").1,
            Failure::Absent { key: "/a".into() }
        );
    }

    #[test]
    fn stored_values_round_trip_and_short_bytes_are_rejected() {
        let s = Stored {
            revision: 9,
            value: "{}".into(),
        };
        assert_eq!(Stored::decode(&s.encode()), Some(s));
        assert_eq!(Stored::decode(&[1, 2]), None);
    }
}

//! Reading `-f` arguments: files, directories (every `.yaml`, `.yml` and `.json` in name order, not
//! recursive) and `-` for standard input; and fitting each object to the namespace flags.

use std::io::Read;
use std::path::{Path, PathBuf};

use corral_api::kinds::{self, KindInfo};
use serde_json::Value;

/// One file's worth of objects, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The file as the user named it (`STDIN` for `-`).
    pub label: String,
    pub objects: Result<Vec<Value>, String>,
}

/// Reads every `-f` argument in order. Unreadable files and bad documents become `Err` sources so
/// the caller can go on with the rest.
pub fn read_sources(paths: &[PathBuf], stdin: &mut dyn Read) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stdin_used = false;
    for path in paths {
        if path.as_os_str() == "-" {
            let label = "STDIN".to_string();
            if stdin_used {
                out.push(Source {
                    label,
                    objects: Err("standard input (-) can be given only once".into()),
                });
                continue;
            }
            stdin_used = true;
            let mut text = String::new();
            let objects = match stdin.read_to_string(&mut text) {
                Ok(_) => parse(&text, &label),
                Err(e) => Err(format!("cannot read standard input: {e}")),
            };
            out.push(Source { label, objects });
        } else if path.is_dir() {
            match manifest_files(path) {
                Ok(files) if files.is_empty() => out.push(Source {
                    label: path.display().to_string(),
                    objects: Err(format!(
                        "{}: the directory holds no .yaml, .yml or .json file",
                        path.display()
                    )),
                }),
                Ok(files) => out.extend(files.iter().map(|f| read_file(f))),
                Err(e) => out.push(Source {
                    label: path.display().to_string(),
                    objects: Err(format!("cannot read directory {}: {e}", path.display())),
                }),
            }
        } else {
            out.push(read_file(path));
        }
    }
    out
}

/// The manifest files directly in `dir`, sorted by name.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn read_file(path: &Path) -> Source {
    let label = path.display().to_string();
    let objects = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &label),
        Err(e) => Err(format!("cannot read {label}: {e}")),
    };
    Source { label, objects }
}

fn parse(text: &str, label: &str) -> Result<Vec<Value>, String> {
    corral_api::object::parse_manifests(text).map_err(|e| format!("{label}: {e}"))
}

/// Checks a manifest's kind and sets its namespace the way kubectl does: a namespaced object
/// without one gets `namespace` (the `-n` flag or `default`); one whose namespace differs from an
/// explicit `-n` is refused. Answers the kind and the object.
pub fn fit(
    mut obj: Value,
    namespace: &str,
    explicit: bool,
) -> Result<(&'static KindInfo, Value), String> {
    let kind = corral_api::object::kind(&obj).to_string();
    let info =
        kinds::kind_info(&kind).ok_or_else(|| format!("no kind \"{kind}\" is served by Corral"))?;
    let name = corral_api::object::name(&obj).to_string();
    if name.is_empty() {
        return Err(format!("metadata.name: required, the {kind} has none"));
    }
    if info.namespaced {
        let own = corral_api::object::namespace(&obj).to_string();
        if own.is_empty() {
            if let Some(metadata) = corral_api::object::metadata_mut(&mut obj) {
                metadata.insert("namespace".into(), Value::String(namespace.to_string()));
            }
        } else if explicit && own != namespace {
            return Err(format!(
                "the namespace from the provided object \"{own}\" does not match the namespace \"{namespace}\": pass --namespace={own}"
            ));
        }
    }
    Ok((info, obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_directory_is_read_in_name_order_and_other_files_are_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("b.yaml"),
            "kind: Pod\nmetadata: {name: b}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"kind": "Pod", "metadata": {"name": "a"}}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("c.yml"),
            "kind: Pod\nmetadata: {name: c1}\n---\nkind: Pod\nmetadata: {name: c2}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").expect("write");
        let sources = read_sources(&[dir.path().to_path_buf()], &mut std::io::empty());
        let names: Vec<Vec<String>> = sources
            .iter()
            .map(|s| {
                s.objects
                    .as_ref()
                    .expect("parsed")
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap_or("").into())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["a"], vec!["b"], vec!["c1", "c2"]]);
    }

    #[test]
    fn standard_input_is_read_for_a_dash() {
        let mut stdin = "kind: ConfigMap\nmetadata:\n  name: cfg\n".as_bytes();
        let sources = read_sources(&[PathBuf::from("-")], &mut stdin);
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].label, "STDIN");
        assert_eq!(sources[0].objects.as_ref().map(Vec::len), Ok(1));
    }

    #[test]
    fn unreadable_and_invalid_files_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "kind: Pod\nmetadata: [unclosed\n").expect("write");
        let missing = dir.path().join("missing.yaml");
        let sources = read_sources(&[bad.clone(), missing.clone()], &mut std::io::empty());
        let errors: Vec<String> = sources
            .into_iter()
            .map(|s| s.objects.expect_err("fails"))
            .collect();
        assert!(errors[0].contains("bad.yaml"), "{}", errors[0]);
        assert!(errors[1].contains("missing.yaml"), "{}", errors[1]);
    }

    #[test]
    fn namespaced_objects_get_the_flag_namespace_and_conflicts_are_refused() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let (info, fitted) = fit(pod, "team-a", true).expect("fits");
        assert_eq!(
            (info.kind, fitted["metadata"]["namespace"].as_str()),
            ("Pod", Some("team-a"))
        );

        let elsewhere = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "prod"}});
        assert!(fit(elsewhere.clone(), "default", false).is_ok());
        let err = fit(elsewhere, "team-a", true).expect_err("conflict");
        assert!(err.contains("--namespace=prod"), "{err}");

        let node = json!({"kind": "Node", "metadata": {"name": "n1"}});
        let (_, fitted) = fit(node, "team-a", true).expect("fits");
        assert!(fitted["metadata"].get("namespace").is_none());
    }

    #[test]
    fn unknown_kinds_and_nameless_objects_are_refused() {
        assert!(
            fit(
                json!({"kind": "Widget", "metadata": {"name": "w"}}),
                "default",
                false
            )
            .is_err()
        );
        assert!(
            fit(json!({"kind": "Pod", "metadata": {}}), "default", false)
                .expect_err("no name")
                .contains("metadata.name")
        );
    }
}

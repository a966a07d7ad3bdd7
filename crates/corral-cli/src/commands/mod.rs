//! One module per verb. Each takes the [`Ctx`] and its clap arguments, writes what it shows to
//! `ctx.out`, per-object failures to `ctx.err`, and returns an error for the rest.

pub mod apply;
pub mod cluster;
pub mod delete;
pub mod describe;
pub mod describe_pod;
pub mod get;
pub mod logs;

use std::io::{Read, Write};

use corral_api::kinds::{self, KindInfo};
use corral_client::Client;

use crate::error::CliError;

/// What every command works with.
pub struct Ctx<'a> {
    pub client: Client,
    /// The namespace to use (`-n`, else `default`).
    pub namespace: String,
    /// Whether `-n` was given (a manifest naming another namespace is then refused).
    pub explicit_namespace: bool,
    pub all_namespaces: bool,
    pub out: &'a mut (dyn Write + Send + Sync),
    pub err: &'a mut (dyn Write + Send + Sync),
    pub stdin: &'a mut (dyn Read + Send + Sync),
}

impl Ctx<'_> {
    /// The namespace to list in for `info`: `None` (all) for cluster-scoped kinds and with `-A`.
    pub fn list_namespace(&self, info: &KindInfo) -> Option<String> {
        (info.namespaced && !self.all_namespaces).then(|| self.namespace.clone())
    }

    /// The namespace of a named object of `info`: `""` for cluster-scoped kinds.
    pub fn object_namespace(&self, info: &KindInfo) -> String {
        if info.namespaced {
            self.namespace.clone()
        } else {
            String::new()
        }
    }

    /// Writes one line to standard output.
    pub fn say(&mut self, line: &str) -> Result<(), CliError> {
        writeln!(self.out, "{line}").map_err(CliError::Output)
    }

    /// Writes one line to standard error.
    pub fn warn(&mut self, line: &str) -> Result<(), CliError> {
        writeln!(self.err, "{line}").map_err(CliError::Output)
    }
}

/// The kind a user typed (`po`, `deployments.apps`, `Service`), or kubectl's error for it.
pub fn resolve_kind(name: &str) -> Result<&'static KindInfo, CliError> {
    kinds::resolve(name).ok_or_else(|| {
        CliError::Usage(format!(
            "the server doesn't have a resource type \"{name}\""
        ))
    })
}

/// Splits `KIND NAME...` or `KIND/NAME...` into one kind and its names.
pub fn targets(first: &str, rest: &[String]) -> Result<(&'static KindInfo, Vec<String>), CliError> {
    if !first.contains('/') {
        let info = resolve_kind(first)?;
        if let Some(bad) = rest.iter().find(|n| n.contains('/')) {
            return Err(CliError::Usage(format!(
                "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (\"{bad}\")"
            )));
        }
        return Ok((info, rest.to_vec()));
    }
    let mut kind: Option<&'static KindInfo> = None;
    let mut names = Vec::new();
    for arg in std::iter::once(first).chain(rest.iter().map(String::as_str)) {
        let Some((k, name)) = arg
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty())
        else {
            return Err(CliError::Usage(format!(
                "arguments in resource/name form must have a single resource and name (\"{arg}\")"
            )));
        };
        let info = resolve_kind(k)?;
        if kind.is_some_and(|seen| seen.kind != info.kind) {
            return Err(CliError::Usage("give objects of one kind at a time".into()));
        }
        kind = Some(info);
        names.push(name.to_string());
    }
    let kind = kind.ok_or_else(|| CliError::Usage("no resource given".into()))?;
    Ok((kind, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kind_then_names_and_kind_slash_name_both_work() {
        let (info, names) = targets("po", &strings(&["a", "b"])).expect("valid");
        assert_eq!((info.kind, names), ("Pod", strings(&["a", "b"])));
        let (info, names) =
            targets("deploy/web", &strings(&["deployments.apps/api"])).expect("valid");
        assert_eq!((info.kind, names), ("Deployment", strings(&["web", "api"])));
    }

    #[test]
    fn mixed_or_malformed_targets_are_usage_errors() {
        assert!(matches!(
            targets("pod/a", &strings(&["svc/b"])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            targets("pod", &strings(&["svc/b"])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(targets("pod/", &[]), Err(CliError::Usage(_))));
        let err = targets("widgets", &[]).expect_err("unknown kind");
        assert_eq!(
            err.to_string(),
            "error: the server doesn't have a resource type \"widgets\""
        );
    }
}

//! One module per verb. Each takes the [`Ctx`] and its clap arguments, writes what it shows to
//! `ctx.out`, per-object failures to `ctx.err`, and returns an error for the rest.

pub mod apply;
pub mod cluster;
pub mod delete;
pub mod describe;
pub mod describe_pod;
pub mod get;
pub mod logs;
pub mod rollout;
pub mod scale;
pub mod set_image;

use std::io::{Read, Write};

use corral_api::ApiError;
use corral_api::kinds::{self, KindInfo};
use corral_client::{Client, ListOptions};
use serde_json::Value;

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

/// The objects a command acts on, read from the server.
pub struct Fetched {
    pub info: &'static KindInfo,
    pub objects: Vec<Value>,
    /// Names that could not be read (each already reported on stderr).
    pub failed: usize,
}

/// Reads the objects `KIND NAME...` or `KIND/NAME...` name, in the order given. A kind alone
/// means every object of the kind in the namespace when `all_when_unnamed`, else it is kubectl's
/// usage error. A name that cannot be read is reported on stderr and counted; no server answering
/// ends the command.
pub async fn fetch_named(
    ctx: &mut Ctx<'_>,
    args: &[String],
    all_when_unnamed: bool,
) -> Result<Fetched, CliError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CliError::Usage("required resource not specified".into()));
    };
    let (info, names) = targets(first, rest)?;
    let namespace = ctx.object_namespace(info);
    if names.is_empty() {
        if !all_when_unnamed {
            return Err(CliError::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        let list = ctx
            .client
            .list(
                info.kind,
                ctx.list_namespace(info).as_deref(),
                &ListOptions::default(),
            )
            .await?;
        let mut objects = list.items;
        objects.sort_by(|a, b| corral_api::object::name(a).cmp(corral_api::object::name(b)));
        if objects.is_empty() {
            ctx.warn(&format!("No resources found in {namespace} namespace."))?;
        }
        return Ok(Fetched {
            info,
            objects,
            failed: 0,
        });
    }
    let mut objects = Vec::new();
    let mut failed = 0;
    for name in &names {
        match ctx.client.get(info.kind, &namespace, name).await {
            Ok(o) => objects.push(o),
            Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
            Err(e) => {
                failed += 1;
                ctx.warn(&crate::output::api_error_line(&e))?;
            }
        }
    }
    Ok(Fetched {
        info,
        objects,
        failed,
    })
}

/// `deployments.apps`: the plural resource, qualified by its group unless core (as kubectl names
/// an object in per-object errors: `deployments.apps "web" is already paused`).
pub fn group_resource(info: &KindInfo) -> String {
    match info.group() {
        "" => info.plural.to_string(),
        group => format!("{}.{group}", info.plural),
    }
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

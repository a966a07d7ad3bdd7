//! `corralctl delete KIND NAME... | KIND/NAME... | KIND -l SEL | KIND --all | -f FILE`
//! `[--cascade=background|foreground|orphan] [--grace-period N] [--ignore-not-found]`: prints
//! kubectl's `pod "x" deleted` per object; a failure is reported and the rest still deleted.

use corral_api::ApiError;
use corral_api::kinds::KindInfo;
use corral_client::{DeleteOptions, ListOptions, PropagationPolicy};

use crate::args::{Cascade, DeleteArgs};
use crate::commands::{Ctx, targets};
use crate::error::CliError;
use crate::manifest::{fit, read_sources};
use crate::output::{api_error_line, resource_ref};

/// One object to delete.
struct Target {
    info: &'static KindInfo,
    namespace: String,
    name: String,
}

pub async fn run(ctx: &mut Ctx<'_>, args: &DeleteArgs) -> Result<(), CliError> {
    let mut failed = 0;
    let mut list: Vec<Target> = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() || args.selector.is_some() || args.all {
            return Err(CliError::Usage(
                "give either -f or a kind with names, -l or --all, not both".into(),
            ));
        }
        for source in read_sources(&args.files, ctx.stdin) {
            match source.objects {
                Ok(objects) => {
                    for object in objects {
                        match fit(object, &ctx.namespace, ctx.explicit_namespace) {
                            Ok((info, object)) => list.push(Target {
                                info,
                                namespace: corral_api::object::namespace(&object).to_string(),
                                name: corral_api::object::name(&object).to_string(),
                            }),
                            Err(message) => {
                                failed += 1;
                                ctx.warn(&format!("error: {message} (in \"{}\")", source.label))?;
                            }
                        }
                    }
                }
                Err(message) => {
                    failed += 1;
                    ctx.warn(&format!("error: {message}"))?;
                }
            }
        }
    } else {
        let Some((first, rest)) = args.args.split_first() else {
            return Err(CliError::Usage(
                "give a kind and names, a kind with -l or --all, or -f FILE".into(),
            ));
        };
        let (info, names) = targets(first, rest)?;
        let by_query = args.selector.is_some() || args.all;
        match (names.is_empty(), by_query) {
            (true, false) => {
                return Err(CliError::Usage(format!(
                    "name the {} to delete, or select them with -l SELECTOR or --all",
                    info.plural
                )));
            }
            (false, true) => {
                return Err(CliError::Usage(
                    "give names or a selector (-l, --all), not both".into(),
                ));
            }
            (false, false) => {
                let namespace = ctx.object_namespace(info);
                list.extend(names.into_iter().map(|name| Target {
                    info,
                    namespace: namespace.clone(),
                    name,
                }));
            }
            (true, true) => {
                let options = ListOptions {
                    label_selector: args.selector.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let found = ctx
                    .client
                    .list(info.kind, ctx.list_namespace(info).as_deref(), &options)
                    .await?;
                if found.items.is_empty() {
                    ctx.warn("No resources found")?;
                }
                list.extend(found.items.iter().map(|o| Target {
                    info,
                    namespace: corral_api::object::namespace(o).to_string(),
                    name: corral_api::object::name(o).to_string(),
                }));
            }
        }
    }

    let options = DeleteOptions {
        propagation_policy: Some(match args.cascade {
            Cascade::Background => PropagationPolicy::Background,
            Cascade::Foreground => PropagationPolicy::Foreground,
            Cascade::Orphan => PropagationPolicy::Orphan,
        }),
        grace_period_seconds: args.grace_period.filter(|g| *g >= 0),
        ..Default::default()
    };
    let total = list.len() + failed;
    for target in &list {
        match ctx
            .client
            .delete(target.info.kind, &target.namespace, &target.name, &options)
            .await
        {
            Ok(_) => ctx.say(&format!(
                "{} \"{}\" deleted",
                resource_ref(target.info),
                target.name
            ))?,
            Err(ApiError::NotFound { .. }) if args.ignore_not_found => {}
            Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
            Err(e) => {
                failed += 1;
                ctx.warn(&api_error_line(&e))?;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

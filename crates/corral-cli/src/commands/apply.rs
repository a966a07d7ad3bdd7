//! `corralctl apply -f FILE|DIR|-`: create or update every object, printing kubectl's
//! `deployment.apps/web created|configured|unchanged`. A bad file or object is reported and skipped;
//! the exit code is non-zero at the end if anything failed. With no server reachable it stops at
//! the first object.

use corral_api::ApiError;

use crate::args::ApplyArgs;
use crate::commands::Ctx;
use crate::error::CliError;
use crate::manifest::{fit, read_sources};
use crate::output::{api_error_line_in, resource_ref};

pub async fn run(ctx: &mut Ctx<'_>, args: &ApplyArgs) -> Result<(), CliError> {
    let sources = read_sources(&args.files, ctx.stdin);
    let (mut total, mut failed) = (0, 0);
    for source in sources {
        let objects = match source.objects {
            Ok(objects) => objects,
            Err(message) => {
                total += 1;
                failed += 1;
                ctx.warn(&format!("error: {message}"))?;
                continue;
            }
        };
        for object in objects {
            total += 1;
            let (info, object) = match fit(object, &ctx.namespace, ctx.explicit_namespace) {
                Ok(fitted) => fitted,
                Err(message) => {
                    failed += 1;
                    ctx.warn(&format!("error: {message} (in \"{}\")", source.label))?;
                    continue;
                }
            };
            let name = corral_api::object::name(&object).to_string();
            match ctx.client.apply(&object).await {
                Ok((_, applied)) => ctx.say(&format!("{}/{name} {applied}", resource_ref(info)))?,
                Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
                Err(e) => {
                    failed += 1;
                    ctx.warn(&api_error_line_in(&e, Some(&source.label)))?;
                }
            }
        }
    }
    if total == 0 {
        return Err(CliError::Usage("no objects passed to apply".into()));
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

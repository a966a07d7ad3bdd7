//! `corralctl get KIND [NAME...] [-l SEL] [--field-selector SEL] [-o wide|yaml|json|name] [-w]`.
//!
//! Tables as kubectl prints them; `-o json|yaml` prints the object, or a `List` for a collection;
//! `-w` prints what is there, then every change as it happens (through the resuming watcher, so a
//! server dying underneath does not lose a change; if the watch expires it lists again).

use corral_api::ApiError;
use corral_api::kinds::KindInfo;
use corral_client::{EventType, ListOptions, ObjectList, WatchOptions};
use futures::StreamExt;
use jiff::Timestamp;
use serde_json::Value;

use crate::args::{GetArgs, OutputFormat};
use crate::commands::{Ctx, targets};
use crate::error::CliError;
use crate::output::{
    api_error_line, json_text, list_object, object_row, objects_table, resource_ref, yaml_text,
};
use crate::table::render_row;

pub async fn run(ctx: &mut Ctx<'_>, args: &GetArgs) -> Result<(), CliError> {
    let (info, names) = targets(&args.kind, &args.names)?;
    if ctx.all_namespaces && info.namespaced && !names.is_empty() {
        return Err(CliError::Usage(
            "a resource cannot be retrieved by name across all namespaces".into(),
        ));
    }
    let options = ListOptions {
        label_selector: args.selector.clone().unwrap_or_default(),
        field_selector: args.field_selector.clone().unwrap_or_default(),
        stale_ok: false,
    };
    let mut failed = 0;
    let (items, revision) = if names.is_empty() || args.watch {
        let list = list_sorted(ctx, info, &options).await?;
        let items = if names.is_empty() {
            list.items
        } else {
            // Keep the order the names were given in; report the missing ones.
            let mut found = Vec::new();
            for name in &names {
                match list
                    .items
                    .iter()
                    .find(|o| corral_api::object::name(o) == name)
                {
                    Some(o) => found.push(o.clone()),
                    None => {
                        failed += 1;
                        ctx.warn(&api_error_line(&not_found(
                            info,
                            &ctx.object_namespace(info),
                            name,
                        )))?;
                    }
                }
            }
            found
        };
        (items, list.revision)
    } else {
        let mut found = Vec::new();
        for name in &names {
            match ctx
                .client
                .get(info.kind, &ctx.object_namespace(info), name)
                .await
            {
                Ok(o) => found.push(o),
                Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
                Err(e) => {
                    failed += 1;
                    ctx.warn(&api_error_line(&e))?;
                }
            }
        }
        (found, 0)
    };

    let mut printer = Printer::new(info, args, ctx.all_namespaces && info.namespaced);
    if args.watch {
        for item in &items {
            printer.print_one(ctx, item)?;
        }
        watch(ctx, info, &options, &names, revision, &mut printer).await?;
    } else if items.is_empty() && names.is_empty() {
        let scope = match ctx.list_namespace(info) {
            Some(ns) => format!(" in {ns} namespace"),
            None => String::new(),
        };
        ctx.warn(&format!("No resources found{scope}."))?;
    } else if !items.is_empty() {
        let single = names.len() == 1;
        let text = printer.render_all(&items, revision, single, Timestamp::now());
        ctx.out
            .write_all(text.as_bytes())
            .map_err(CliError::Output)?;
    }
    if failed > 0 {
        return Err(CliError::Reported {
            failed,
            total: names.len(),
        });
    }
    Ok(())
}

async fn list_sorted(
    ctx: &Ctx<'_>,
    info: &KindInfo,
    options: &ListOptions,
) -> Result<ObjectList, CliError> {
    let mut list = ctx
        .client
        .list(info.kind, ctx.list_namespace(info).as_deref(), options)
        .await?;
    list.items.sort_by(|a, b| {
        let key = |o: &Value| {
            (
                corral_api::object::namespace(o).to_string(),
                corral_api::object::name(o).to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(list)
}

fn not_found(info: &KindInfo, namespace: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        kind: info.kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// Streams changes from `revision` on, printing each; lists again when the revision expires.
async fn watch(
    ctx: &mut Ctx<'_>,
    info: &'static KindInfo,
    options: &ListOptions,
    names: &[String],
    mut revision: u64,
    printer: &mut Printer,
) -> Result<(), CliError> {
    let namespace = ctx.list_namespace(info);
    let watch_options = |from_revision| WatchOptions {
        label_selector: options.label_selector.clone(),
        field_selector: options.field_selector.clone(),
        from_revision,
        bookmark_seconds: 0,
    };
    let wanted =
        |o: &Value| names.is_empty() || names.iter().any(|n| n == corral_api::object::name(o));
    let mut stream = ctx
        .client
        .watch(info.kind, namespace.as_deref(), &watch_options(revision));
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                revision = revision.max(event.revision);
                if event.r#type != EventType::Bookmark && wanted(&event.object) {
                    printer.print_one(ctx, &event.object)?;
                }
            }
            Err(ApiError::Expired { .. }) => {
                let list = list_sorted(ctx, info, options).await?;
                for item in list.items.iter().filter(|o| wanted(o)) {
                    if corral_api::object::resource_version(item).is_ok_and(|rv| rv > revision) {
                        printer.print_one(ctx, item)?;
                    }
                }
                revision = list.revision;
                stream =
                    ctx.client
                        .watch(info.kind, namespace.as_deref(), &watch_options(revision));
            }
            Err(e @ ApiError::Unavailable { .. }) => {
                ctx.warn(&format!("warning: {}; still trying", api_error_line(&e)))?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Prints objects in the chosen format; keeps the table's column widths across watch events.
struct Printer {
    info: &'static KindInfo,
    format: Option<OutputFormat>,
    namespace_column: bool,
    no_headers: bool,
    widths: Vec<usize>,
    header_printed: bool,
}

impl Printer {
    fn new(info: &'static KindInfo, args: &GetArgs, namespace_column: bool) -> Self {
        Self {
            info,
            format: args.output,
            namespace_column,
            no_headers: args.no_headers,
            widths: Vec::new(),
            header_printed: false,
        }
    }

    fn wide(&self) -> bool {
        self.format == Some(OutputFormat::Wide)
    }

    /// Everything at once: one table, one object, or one `List`.
    fn render_all(&self, items: &[Value], revision: u64, single: bool, now: Timestamp) -> String {
        let one_or_list = || {
            if single && items.len() == 1 {
                items[0].clone()
            } else {
                list_object(items.to_vec(), revision)
            }
        };
        match self.format {
            Some(OutputFormat::Json) => json_text(&one_or_list()),
            Some(OutputFormat::Yaml) => yaml_text(&one_or_list()),
            Some(OutputFormat::Name) => items
                .iter()
                .map(|o| format!("{}\n", self.name_of(o)))
                .collect(),
            Some(OutputFormat::Wide) | None => {
                objects_table(self.info, items, self.wide(), self.namespace_column, now)
                    .render(self.no_headers)
            }
        }
    }

    fn name_of(&self, obj: &Value) -> String {
        format!(
            "{}/{}",
            resource_ref(self.info),
            corral_api::object::name(obj)
        )
    }

    /// One object as a watch prints it: a table row aligned with the rows before, or the object.
    fn print_one(&mut self, ctx: &mut Ctx<'_>, obj: &Value) -> Result<(), CliError> {
        let text = match self.format {
            Some(OutputFormat::Json) => json_text(obj),
            Some(OutputFormat::Yaml) => format!("---\n{}", yaml_text(obj)),
            Some(OutputFormat::Name) => format!("{}\n", self.name_of(obj)),
            Some(OutputFormat::Wide) | None => {
                let row = object_row(
                    self.info,
                    obj,
                    self.wide(),
                    self.namespace_column,
                    Timestamp::now(),
                );
                let mut text = String::new();
                if !self.header_printed {
                    let header = objects_table(
                        self.info,
                        &[],
                        self.wide(),
                        self.namespace_column,
                        Timestamp::now(),
                    );
                    let mut table = header.clone();
                    table.push(row.clone());
                    self.widths = table.widths();
                    if !self.no_headers {
                        text.push_str(&render_row(&header.headers, &self.widths));
                        text.push('\n');
                    }
                    self.header_printed = true;
                }
                for (w, cell) in self.widths.iter_mut().zip(&row) {
                    *w = (*w).max(cell.chars().count() + 3);
                }
                text.push_str(&render_row(&row, &self.widths));
                text.push('\n');
                text
            }
        };
        ctx.out
            .write_all(text.as_bytes())
            .map_err(CliError::Output)?;
        ctx.out.flush().map_err(CliError::Output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;
    use serde_json::json;

    fn printer(args: &[&str]) -> Printer {
        let cli =
            Cli::try_parse_from(["corralctl", "get"].iter().chain(args)).expect("valid arguments");
        let Command::Get(get) = cli.command else {
            panic!("get")
        };
        let info = corral_api::kinds::resolve(&get.kind).expect("known kind");
        Printer::new(info, &get, cli.all_namespaces && info.namespaced)
    }

    fn pods() -> Vec<Value> {
        vec![
            json!({"kind": "Pod", "metadata": {"name": "a", "namespace": "default"}, "status": {"phase": "Running"}}),
            json!({"kind": "Pod", "metadata": {"name": "b", "namespace": "default"}}),
        ]
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn one_named_object_prints_as_itself_and_many_as_a_list() {
        let p = printer(&["pods", "a", "-o", "json"]);
        let one: Value =
            serde_json::from_str(&p.render_all(&pods()[..1], 7, true, now())).expect("json");
        assert_eq!(one["metadata"]["name"], "a");
        let all: Value =
            serde_json::from_str(&p.render_all(&pods(), 7, false, now())).expect("json");
        assert_eq!(
            (all["kind"].as_str(), all["items"].as_array().map(Vec::len)),
            (Some("List"), Some(2))
        );
    }

    #[test]
    fn name_output_uses_kubectls_resource_names() {
        assert_eq!(
            printer(&["po", "-o", "name"]).render_all(&pods(), 0, false, now()),
            "pod/a\npod/b\n"
        );
    }

    #[test]
    fn tables_have_the_kinds_columns() {
        let text = printer(&["pods"]).render_all(&pods(), 0, false, now());
        assert_eq!(
            text,
            "NAME   READY   STATUS    RESTARTS   AGE\n\
             a      0/0     Running   0          <unknown>\n\
             b      0/0     Pending   0          <unknown>\n"
        );
        let text = printer(&["pods", "-A", "-o", "wide", "--no-headers"]).render_all(
            &pods(),
            0,
            false,
            now(),
        );
        assert!(
            text.starts_with("default   a     0/0   Running   0     <unknown>   <none>   <none>\n"),
            "{text}"
        );
    }
}

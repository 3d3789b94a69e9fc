//! `evhub hubs`: hub metadata, and creating hubs.

use evhub::config::Config;
use std::sync::Arc;

use evhub::{Backend, HubOptions};
use serde_json::{json, Value};

use crate::cli::{Cli, HubsAction, HubsArgs};
use crate::error::CliResult;
use crate::output::{rfc3339, table};
use crate::target;

pub async fn run(cli: &Cli, config: &Config, hub: &Arc<dyn Backend>, args: &HubsArgs) -> CliResult {
    if let Some(HubsAction::Create { name, partitions }) = &args.action {
        hub.create_hub(name, HubOptions::with_partitions(*partitions))
            .await?;
        eprintln!("created hub `{name}` with {partitions} partitions");
        return Ok(());
    }
    let names = if args.names.is_empty() {
        vec![target::hub_name(cli, config)?]
    } else {
        args.names.clone()
    };
    let mut described = Vec::with_capacity(names.len());
    for name in &names {
        described.push(describe(hub, name).await?);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&Value::Array(described))
            .unwrap_or_else(|_| "[]".to_owned());
        println!("{text}");
        return Ok(());
    }
    for (i, hub) in described.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", render(hub));
    }
    Ok(())
}

async fn describe(hub: &Arc<dyn Backend>, name: &str) -> evhub::Result<Value> {
    let properties = hub.hub_properties(name).await?;
    let mut partitions = Vec::with_capacity(properties.partitions.len());
    for &p in &properties.partitions {
        let pp = hub.partition_properties(name, p).await?;
        partitions.push(json!({
            "partition": pp.partition,
            "begin_offset": pp.begin_offset,
            "end_offset": pp.end_offset,
            "events": pp.len(),
            "last_enqueued_at": pp.last_enqueued_at.map(rfc3339),
        }));
    }
    Ok(json!({
        "name": properties.name,
        "backend": hub.id(),
        "created_at": properties.created_at.map(rfc3339),
        "partition_count": properties.partitions.len(),
        "partitions": partitions,
    }))
}

fn render(hub: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!(
        "hub {} ({}): {} partitions, created {}\n",
        text(&hub["name"]),
        text(&hub["backend"]),
        text(&hub["partition_count"]),
        text(&hub["created_at"]),
    );
    let rows: Vec<Vec<String>> = hub["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    [
                        "partition",
                        "begin_offset",
                        "end_offset",
                        "events",
                        "last_enqueued_at",
                    ]
                    .iter()
                    .map(|k| text(&p[*k]))
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(
        &["partition", "begin", "end", "events", "last enqueued"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_every_partition() {
        let v = json!({
            "name": "orders", "backend": "memory", "created_at": null, "partition_count": 2,
            "partitions": [
                {"partition": 0, "begin_offset": 0, "end_offset": 3, "events": 3,
                 "last_enqueued_at": "2026-01-01T00:00:00Z"},
                {"partition": 1, "begin_offset": 0, "end_offset": 0, "events": 0,
                 "last_enqueued_at": null},
            ]
        });
        let text = render(&v);
        assert!(
            text.starts_with("hub orders (memory): 2 partitions, created -\n"),
            "{text}"
        );
        assert!(
            text.contains("0          0      3    3       2026-01-01T00:00:00Z"),
            "{text}"
        );
        assert!(text.contains("1          0      0    0       -"), "{text}");
    }
}

//! `infra/README.md` documents the environment contract; its table must match
//! `infra/live-env.tsv` row for row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use evhub_live::vars;

#[test]
fn the_readme_table_lists_the_contract_in_order() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let documented: Vec<Vec<String>> = readme
        .lines()
        .filter(|line| line.starts_with("| `EVHUB_LIVE_"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = vars()
        .iter()
        .map(|var| {
            let needed_by = if var.required_by().is_empty() {
                "optional".to_owned()
            } else {
                let ids: Vec<String> = var.required_by().iter().map(|t| t.to_string()).collect();
                ids.join(", ")
            };
            vec![
                var.name().to_owned(),
                var.module().to_owned(),
                var.output().to_owned(),
                if var.is_secret() { "yes" } else { "no" }.to_owned(),
                needed_by,
            ]
        })
        .collect();
    assert_eq!(
        documented, expected,
        "infra/README.md's table drifted from infra/live-env.tsv"
    );
}

//! `evhub check`: the conformance suite against the configured backend.

use std::sync::Arc;
use std::time::Duration;

use evhub::config::Config;
use evhub::Backend;
use evhub_conformance::{CaseReport, Harness, Outcome};
use serde_json::json;

use crate::cli::CheckArgs;
use crate::error::{CliError, CliResult};
use crate::output::table;
use crate::progress;

/// Connects the suite with the CLI's configuration.
struct CliHarness {
    config: Config,
    /// The memory hub lives in this process: every "connection" must share it.
    shared: Option<Arc<dyn Backend>>,
    backend_id: &'static str,
    skip: Option<String>,
    timeout: Duration,
}

#[evhub::async_trait]
impl Harness for CliHarness {
    fn name(&self) -> String {
        self.backend_id.to_owned()
    }

    fn skip_reason(&self) -> Option<String> {
        self.skip.clone()
    }

    async fn connect(&self) -> evhub::Result<Arc<dyn Backend>> {
        match &self.shared {
            Some(backend) => Ok(backend.clone()),
            None => crate::target::connect(&self.config).await,
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

pub async fn run(config: &Config, hub: &Arc<dyn Backend>, args: &CheckArgs) -> CliResult {
    let all: Vec<&str> = evhub_conformance::CASES.iter().map(|(n, _)| *n).collect();
    for case in &args.cases {
        if !all.contains(&case.as_str()) {
            return Err(CliError::usage(format!(
                "no conformance case `{case}` (see `evhub check --list`)"
            )));
        }
    }
    let selected: Vec<&str> = if args.cases.is_empty() {
        all
    } else {
        all.into_iter()
            .filter(|c| args.cases.iter().any(|a| a == c))
            .collect()
    };
    let skip = (!hub.capabilities().create_hub).then(|| {
        format!(
            "backend `{}` cannot create hubs through evhub (create_hub capability), and every case needs fresh hubs",
            hub.id()
        )
    });
    let harness = CliHarness {
        config: config.clone(),
        shared: matches!(config, Config::Memory(_)).then(|| hub.clone()),
        backend_id: hub.id(),
        skip,
        timeout: args.case_timeout,
    };
    let bar = progress::bar(selected.len() as u64, "checking");
    let mut reports = Vec::with_capacity(selected.len());
    for case in selected {
        bar.set_message(case.to_owned());
        reports.push(evhub_conformance::run_case(case, &harness).await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let failed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if args.json {
        println!("{}", to_json(hub.id(), &reports));
    } else {
        print!("{}", render(&reports));
        println!("{}", summary(hub.id(), &reports));
    }
    if failed > 0 {
        return Err(CliError::CheckFailed {
            failed,
            total: reports.len(),
        });
    }
    Ok(())
}

fn outcome_parts(outcome: &Outcome) -> (&'static str, &str) {
    match outcome {
        Outcome::Passed => ("passed", ""),
        Outcome::Skipped(reason) => ("skipped", reason),
        Outcome::Failed(message) => ("FAILED", message),
    }
}

fn render(reports: &[CaseReport]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let (result, detail) = outcome_parts(&r.outcome);
            vec![
                r.case.clone(),
                result.to_owned(),
                format!("{:.2}s", r.duration.as_secs_f64()),
                detail.replace('\n', " "),
            ]
        })
        .collect();
    table(&["case", "result", "time", "skip reason / failure"], &rows)
}

fn summary(backend: &str, reports: &[CaseReport]) -> String {
    let count = |f: fn(&Outcome) -> bool| reports.iter().filter(|r| f(&r.outcome)).count();
    format!(
        "{} cases on `{backend}`: {} passed, {} skipped, {} failed",
        reports.len(),
        count(|o| matches!(o, Outcome::Passed)),
        count(|o| matches!(o, Outcome::Skipped(_))),
        count(|o| matches!(o, Outcome::Failed(_))),
    )
}

fn to_json(backend: &str, reports: &[CaseReport]) -> String {
    let cases: Vec<_> = reports
        .iter()
        .map(|r| {
            let (result, detail) = outcome_parts(&r.outcome);
            json!({
                "case": r.case,
                "result": result.to_ascii_lowercase(),
                "seconds": r.duration.as_secs_f64(),
                "detail": (!detail.is_empty()).then_some(detail),
            })
        })
        .collect();
    json!({ "backend": backend, "cases": cases }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(case: &str, outcome: Outcome) -> CaseReport {
        CaseReport {
            case: case.into(),
            backend: "memory".into(),
            outcome,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn table_and_summary_show_every_outcome() {
        let reports = vec![
            report("round_trip", Outcome::Passed),
            report("batch_send", Outcome::Skipped("no hubs".into())),
            report("hub_isolation", Outcome::Failed("saw 2\nexpected 1".into())),
        ];
        let text = render(&reports);
        assert!(text.contains("round_trip     passed   1.50s"), "{text}");
        assert!(
            text.contains("batch_send     skipped  1.50s  no hubs"),
            "{text}"
        );
        assert!(text.contains("FAILED   1.50s  saw 2 expected 1"), "{text}");
        assert_eq!(
            summary("memory", &reports),
            "3 cases on `memory`: 1 passed, 1 skipped, 1 failed"
        );
        let v: serde_json::Value =
            serde_json::from_str(&to_json("memory", &reports)).unwrap_or_default();
        assert_eq!(v["cases"][2]["result"], "failed");
        assert_eq!(v["cases"][1]["detail"], "no hubs");
        assert_eq!(v["cases"][0]["detail"], serde_json::Value::Null);
    }
}

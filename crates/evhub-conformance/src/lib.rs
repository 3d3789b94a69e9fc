//! The evhub conformance suite.
//!
//! Every backend must behave the same. This crate holds the cases as plain `pub async fn`s over
//! a [`Harness`] (how to connect to the backend under test and create hubs), a [`run_all`] that
//! returns a report per case (used by `evhub check`), and [`conformance_tests!`] that turns every
//! case into a `#[tokio::test]`:
//!
//! ```text
//! // in tests/conformance.rs of a backend crate:
//! evhub_conformance::conformance_tests!(my_backend_tests::harness());
//! ```
//!
//! Cases use a unique hub and group name each, so they can run in parallel against one server.
//! A case whose backend lacks a capability is reported as skipped with the reason, never passed
//! silently; `cargo test` prints `SKIPPED <case>: <reason>` to stderr.

mod cases;
mod harness;
mod support;

pub use cases::*;
pub use harness::{CaseReport, Harness, Outcome};
pub use support::{unique_name, CaseResult, Failure};

use std::io::Write;
use std::time::Instant;

use futures::future::BoxFuture;

/// A case: takes the harness, returns passed, skipped (with reason) or a failure.
pub type CaseFn = for<'a> fn(&'a dyn Harness) -> BoxFuture<'a, CaseResult>;

/// Calls `$callback! { $($prefix)* <every case name>, }`: the one list of cases, shared by
/// [`CASES`] and [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __with_case_names {
    ($($callback:ident)::+ { $($prefix:tt)* }) => {
        $($callback)::+! { $($prefix)*
            round_trip,
            batch_send,
            key_routes_to_one_partition_in_order,
            headers_and_key_byte_exact,
            hub_and_partition_metadata,
            reader_start_positions,
            commit_then_new_member_resumes,
            uncommitted_events_redelivered_after_leave,
            members_split_partitions,
            groups_fan_out,
            too_large_rejected_and_producer_survives,
            unknown_hub_not_found,
            use_after_close_is_closed,
            concurrent_producers_totals,
            hub_isolation,
            restart_resumes_after_last_commit,
            new_group_starts_at_configured_position,
            commit_tracker_never_skips_failed_event,
            traceparent_crosses_the_hub,
            batch_preserves_partition_order,
            batch_never_returns_revoked_partition,
            batch_recv_is_cancel_safe,
            enqueued_batches_keep_order,
            commit_after_rebalance_keeps_loop_running,
            slow_member_does_not_stall_group,
        }
    };
}

macro_rules! case_list {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name, in a stable order.
        pub const CASES: &[(&str, CaseFn)] = &[
            $((stringify!($name), |h| Box::pin(cases::$name(h)))),*
        ];
    };
}

__with_case_names!(case_list {});

/// Names of every `pub async fn` case defined in the suite's case files, read from their
/// source text (so a case that was written but never registered in the list is noticed).
pub fn defined_case_names() -> Vec<&'static str> {
    cases::SOURCES
        .iter()
        .flat_map(|source| source.lines())
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split('(').next())
        .collect()
}

/// Runs one case by name and measures it.
pub async fn run_case(name: &str, harness: &dyn Harness) -> CaseReport {
    let started = Instant::now();
    let outcome = match CASES.iter().find(|(n, _)| *n == name) {
        None => Outcome::Failed(format!("no conformance case named `{name}`")),
        Some((_, case)) => match harness.skip_reason() {
            Some(reason) => Outcome::Skipped(reason),
            None => match case(harness).await {
                Ok(outcome) => outcome,
                Err(failure) => Outcome::Failed(failure.to_string()),
            },
        },
    };
    CaseReport {
        case: name.to_owned(),
        backend: harness.name(),
        outcome,
        duration: started.elapsed(),
    }
}

/// Runs every case one after another and reports each.
pub async fn run_all(harness: &dyn Harness) -> Vec<CaseReport> {
    let mut reports = Vec::with_capacity(CASES.len());
    for (name, _) in CASES {
        reports.push(run_case(name, harness).await);
    }
    reports
}

/// Runs a case for `cargo test`: panics on failure, prints skips to stderr (bypassing the test
/// harness's output capture so skips are always visible).
pub async fn assert_case(name: &str, harness: &dyn Harness) {
    let report = run_case(name, harness).await;
    match &report.outcome {
        Outcome::Passed => {}
        Outcome::Skipped(reason) => {
            // One write: formatted pieces written one by one interleave with the harness's
            // output of parallel tests, and the tally in scripts/test.sh counts these lines.
            let line = format!("SKIPPED {} [{}]: {reason}\n", report.case, report.backend);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        Outcome::Failed(message) => panic!(
            "conformance case `{}` failed on `{}` after {:.1?}: {message}",
            report.case, report.backend, report.duration
        ),
    }
}

/// Instantiates every conformance case as a `#[tokio::test]` for a harness.
///
/// `$harness` is an expression evaluated once per test that yields a value implementing
/// [`Harness`]. The generated `conformance_case_list_is_complete` test fails when the suite
/// gains a case this macro does not instantiate.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__with_case_names!($crate::conformance_tests { @cases $harness; });
    };
    (@cases $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::assert_case(stringify!($name), &harness).await;
            }
        )*

        #[test]
        fn conformance_case_list_is_complete() {
            // Derived from the case files' source, not from the list itself.
            let instantiated: &[&str] = &[$(stringify!($name)),*];
            let mut defined = $crate::defined_case_names();
            let mut listed = instantiated.to_vec();
            defined.sort_unstable();
            listed.sort_unstable();
            assert_eq!(listed, defined, "conformance cases defined but not registered, or the reverse");
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_case_is_registered() {
        let mut defined = defined_case_names();
        let mut listed: Vec<&str> = CASES.iter().map(|(n, _)| *n).collect();
        defined.sort_unstable();
        listed.sort_unstable();
        assert!(defined.len() >= 23, "parsed only {defined:?}");
        assert_eq!(listed, defined);
    }

    #[test]
    fn the_check_notices_an_unregistered_case() {
        let source =
            "pub async fn registered(h: &dyn Harness)\npub async fn forgotten(h: &dyn Harness)";
        let names: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|r| r.split('(').next())
            .collect();
        assert_eq!(names, ["registered", "forgotten"]);
    }
}

//! The `EVHUB_LIVE_*` environment contract between `scripts/live-test.sh` and the live
//! conformance tests.
//!
//! `scripts/live-test.sh <azure|kafka>` provisions cloud resources with Terraform and exports
//! each Terraform output as the environment variable named for it in `infra/live-env.tsv`.
//! This crate compiles that same file in (with `include_str!`), so the script and the tests
//! read one list and cannot drift apart.
//!
//! A live test asks for its target's configuration and skips, saying why, when it is absent:
//!
//! ```
//! use evhub_live::{LiveConfig, Target};
//!
//! match LiveConfig::from_env(Target::EventHubs) {
//!     Ok(live) => {
//!         let hub = live.require("EVHUB_LIVE_EVENTHUBS_HUB");
//!         assert!(!hub.is_empty());
//!         // ... connect with live.require("EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING") ...
//!     }
//!     // e.g. "skipped: live eventhubs tests need EVHUB_LIVE_EVENTHUBS_FQDN, ... (run scripts/live-test.sh azure)"
//!     Err(skip) => eprintln!("{skip}"),
//! }
//! ```
//!
//! Secrets (connection strings, SASL passwords) are redacted in `Debug`.

mod config;
mod table;
mod target;

pub use config::{InvalidValue, LiveConfig, SkipReason};
pub use table::{parse_env_table, vars, EnvTableError, LiveVar, ENV_TABLE};
pub use target::{Target, UnknownTarget};

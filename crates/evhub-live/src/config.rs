//! The configuration of one live target, read from the `EVHUB_LIVE_*` environment.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{vars, LiveVar, Target};

/// The `EVHUB_LIVE_*` values a live test of one [`Target`] runs with.
///
/// Holds every variable of the target's Terraform module that is set: all the ones the target
/// requires, and any optional ones. `Debug` shows secret values as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct LiveConfig {
    target: Target,
    values: BTreeMap<&'static str, String>,
}

impl LiveConfig {
    /// Reads `target`'s variables from the process environment.
    ///
    /// Returns [`SkipReason`] naming every required variable that is unset or empty, so the
    /// caller can report the test as skipped instead of silently passing.
    pub fn from_env(target: Target) -> Result<LiveConfig, SkipReason> {
        Self::from_lookup(target, |name| std::env::var(name).ok())
    }

    /// [`LiveConfig::from_env`] for the top of a live test: `None` after printing the
    /// [`SkipReason`] line to stderr, so the test can return early and still say why.
    ///
    /// ```
    /// use evhub_live::{LiveConfig, Target};
    ///
    /// fn live_kafka_round_trip() {
    ///     let Some(live) = LiveConfig::from_env_or_skip(Target::Kafka) else {
    ///         return;
    ///     };
    ///     let _topic = live.require("EVHUB_LIVE_KAFKA_TOPIC");
    /// }
    /// live_kafka_round_trip();
    /// ```
    pub fn from_env_or_skip(target: Target) -> Option<LiveConfig> {
        match Self::from_env(target) {
            Ok(config) => Some(config),
            Err(skip) => {
                eprintln!("{skip}");
                None
            }
        }
    }

    /// Like [`LiveConfig::from_env`], with values from `lookup` instead of the environment.
    pub fn from_lookup<F>(target: Target, mut lookup: F) -> Result<LiveConfig, SkipReason>
    where
        F: FnMut(&str) -> Option<String>,
    {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for var in vars().iter().filter(|var| var.module() == target.module()) {
            match lookup(var.name()).filter(|value| !value.is_empty()) {
                Some(value) => {
                    values.insert(var.name(), value);
                }
                None if var.is_required_by(target) => missing.push(var.name().to_owned()),
                None => {}
            }
        }
        if missing.is_empty() {
            Ok(LiveConfig { target, values })
        } else {
            Err(SkipReason { target, missing })
        }
    }

    /// The target this configuration is for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The value of a variable, if it is set and belongs to this target's module.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a variable the target requires.
    ///
    /// # Panics
    ///
    /// If `name` is not required by this target in `infra/live-env.tsv`: the test asks for
    /// something the contract does not promise, which is a bug in the test.
    pub fn require(&self, name: &str) -> &str {
        let promised = lookup_var(name).is_some_and(|var| var.is_required_by(self.target));
        match self.get(name) {
            Some(value) if promised => value,
            _ => panic!(
                "{name} is not required by the {} target in infra/live-env.tsv; add it there or use LiveConfig::get",
                self.target
            ),
        }
    }

    /// A required comma-separated list variable (e.g. `EVHUB_LIVE_EVENTHUBS_HUBS`), split
    /// into its non-empty, trimmed items.
    ///
    /// # Panics
    ///
    /// As [`LiveConfig::require`].
    pub fn require_list(&self, name: &str) -> Vec<&str> {
        self.require(name)
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// A required variable parsed as `T` (e.g. a partition count).
    ///
    /// # Panics
    ///
    /// As [`LiveConfig::require`].
    pub fn require_parsed<T: FromStr>(&self, name: &str) -> Result<T, InvalidValue> {
        let raw = self.require(name);
        raw.trim().parse().map_err(|_| InvalidValue {
            name: name.to_owned(),
            shown: if is_secret(name) {
                "<redacted>".to_owned()
            } else {
                raw.to_owned()
            },
            expected: std::any::type_name::<T>(),
        })
    }

    /// The names of the variables that are set, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.keys().copied()
    }
}

fn lookup_var(name: &str) -> Option<&'static LiveVar> {
    vars().iter().find(|var| var.name() == name)
}

fn is_secret(name: &str) -> bool {
    lookup_var(name).is_some_and(LiveVar::is_secret)
}

impl fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Values<'a>(&'a BTreeMap<&'static str, String>);
        impl fmt::Debug for Values<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (name, value) in self.0 {
                    if is_secret(name) {
                        map.entry(name, &format_args!("<redacted>"));
                    } else {
                        map.entry(name, value);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("LiveConfig")
            .field("target", &self.target)
            .field("values", &Values(&self.values))
            .finish()
    }
}

/// Why a live test of a target cannot run: required `EVHUB_LIVE_*` variables are missing.
///
/// `Display` is the line a skipped test prints, e.g. `skipped: live eventhubs tests need
/// EVHUB_LIVE_EVENTHUBS_FQDN, EVHUB_LIVE_EVENTHUBS_HUB (run scripts/live-test.sh azure)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReason {
    target: Target,
    missing: Vec<String>,
}

impl SkipReason {
    /// The target that cannot be tested.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The required variables that are unset or empty, in table order.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped: live {} tests need {} (run scripts/live-test.sh {})",
            self.target,
            self.missing.join(", "),
            self.target.stack()
        )
    }
}

impl std::error::Error for SkipReason {}

/// A required variable whose value does not parse as the type a test asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    name: String,
    shown: String,
    expected: &'static str,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = '{}' is not a valid {}",
            self.name, self.shown, self.expected
        )
    }
}

impl std::error::Error for InvalidValue {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A full environment for `target`'s module: every variable set to "value-of-<NAME>",
    /// with numbers and lists where the contract has them.
    fn full_env(target: Target) -> HashMap<String, String> {
        vars()
            .iter()
            .filter(|var| var.module() == target.module())
            .map(|var| {
                let value = match var.name() {
                    n if n.ends_with("_PARTITIONS") => "4".to_owned(),
                    n if n.ends_with("_HUBS") || n.ends_with("_TOPICS") => "a, b,,c".to_owned(),
                    n => format!("value-of-{n}"),
                };
                (var.name().to_owned(), value)
            })
            .collect()
    }

    fn config(target: Target, env: &HashMap<String, String>) -> Result<LiveConfig, SkipReason> {
        LiveConfig::from_lookup(target, |name| env.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_skips_every_target_naming_all_required_variables() {
        for target in Target::ALL {
            let skip = config(target, &HashMap::new()).unwrap_err();
            let required: Vec<&str> = vars()
                .iter()
                .filter(|var| var.is_required_by(target))
                .map(LiveVar::name)
                .collect();
            assert_eq!(skip.missing(), required.as_slice());
            assert_eq!(skip.target(), target);
            let line = skip.to_string();
            assert!(
                line.starts_with(&format!("skipped: live {target} tests need ")),
                "{line}"
            );
            assert!(line.ends_with(&format!("(run scripts/live-test.sh {})", target.stack())));
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn one_missing_or_empty_variable_is_named_alone() {
        let mut env = full_env(Target::EventHubs);
        env.insert(
            "EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING".to_owned(),
            String::new(),
        );
        let skip = config(Target::EventHubs, &env).unwrap_err();
        assert_eq!(skip.missing(), ["EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING"]);
        assert_eq!(
            skip.to_string(),
            "skipped: live eventhubs tests need EVHUB_LIVE_EVENTHUBS_CONNECTION_STRING (run scripts/live-test.sh azure)"
        );
    }

    #[test]
    fn a_full_environment_gives_every_value_and_optional_ones_may_be_absent() {
        let mut env = full_env(Target::EventHubsKafka);
        env.remove("EVHUB_LIVE_EVENTHUBS_AAD");
        let live = config(Target::EventHubsKafka, &env).unwrap();
        assert_eq!(live.target(), Target::EventHubsKafka);
        assert_eq!(
            live.require("EVHUB_LIVE_EVENTHUBS_KAFKA_BOOTSTRAP"),
            "value-of-EVHUB_LIVE_EVENTHUBS_KAFKA_BOOTSTRAP"
        );
        assert_eq!(live.get("EVHUB_LIVE_EVENTHUBS_AAD"), None);
        assert_eq!(
            live.require_list("EVHUB_LIVE_EVENTHUBS_HUBS"),
            ["a", "b", "c"]
        );
        assert_eq!(
            live.require_parsed::<u32>("EVHUB_LIVE_EVENTHUBS_PARTITIONS"),
            Ok(4)
        );
        assert_eq!(live.names().count(), env.len());
        // Variables of the other stack never leak into a target's configuration.
        assert_eq!(live.get("EVHUB_LIVE_KAFKA_TOPIC"), None);
    }

    #[test]
    fn debug_redacts_every_secret_and_shows_the_rest() {
        for target in Target::ALL {
            let env = full_env(target);
            let live = config(target, &env).unwrap();
            let debug = format!("{live:?}");
            for var in vars().iter().filter(|var| var.module() == target.module()) {
                let value = &env[var.name()];
                if var.is_secret() {
                    assert!(
                        !debug.contains(value.as_str()),
                        "{} leaked: {debug}",
                        var.name()
                    );
                } else {
                    assert!(
                        debug.contains(value.as_str()),
                        "{} hidden: {debug}",
                        var.name()
                    );
                }
            }
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }

    #[test]
    fn parse_errors_name_the_variable_and_hide_secret_values() {
        let live = config(Target::Kafka, &full_env(Target::Kafka)).unwrap();
        let err = live
            .require_parsed::<u32>("EVHUB_LIVE_KAFKA_SASL_PASSWORD")
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("EVHUB_LIVE_KAFKA_SASL_PASSWORD = '<redacted>'"));
        assert!(!err.to_string().contains("value-of"));
        let err = live
            .require_parsed::<u32>("EVHUB_LIVE_KAFKA_TOPIC")
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("'value-of-EVHUB_LIVE_KAFKA_TOPIC' is not a valid u32"));
    }

    #[test]
    #[should_panic(expected = "is not required by the kafka target")]
    fn requiring_a_variable_outside_the_targets_contract_panics() {
        let live = config(Target::Kafka, &full_env(Target::Kafka)).unwrap();
        let _ = live.require("EVHUB_LIVE_EVENTHUBS_HUB");
    }
}

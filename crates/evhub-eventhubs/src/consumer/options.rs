//! Processor options from configuration, with Microsoft's names and defaults (see
//! [`EventHubsConfig`]): load-balancing interval, ownership expiry, strategy, prefetch and a
//! start position per partition.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use azure_messaging_eventhubs::{ProcessorStrategy, StartLocation, StartPosition};
use evhub_core::config::{EventHubsConfig, LoadBalancingStrategy};
use evhub_core::{Error, InitialPosition, Result};

/// How a member's processor balances and reads; validated once when the backend is built.
#[derive(Debug, Clone)]
pub(crate) struct ProcessorOptions {
    pub load_balancing_interval: Duration,
    pub ownership_expiration: Duration,
    pub strategy: LoadBalancingStrategy,
    pub prefetch: u32,
    /// Per-partition start positions for partitions without a checkpoint.
    pub start_positions: HashMap<String, StartPosition>,
    /// Namespace in record names, when not the connection's.
    pub checkpoint_namespace: Option<String>,
}

impl ProcessorOptions {
    pub fn from_config(config: &EventHubsConfig) -> Result<Self> {
        let interval = config.load_balancing_interval_ms;
        let expiry = config.partition_ownership_expiration_interval_ms;
        if interval == 0 {
            return Err(Error::config(
                "`load_balancing_interval_ms` must be positive",
            ));
        }
        if expiry <= interval {
            return Err(Error::config(format!(
                "`partition_ownership_expiration_interval_ms` ({expiry}) must be longer than \
                 `load_balancing_interval_ms` ({interval}), or claims expire between renewals"
            )));
        }
        if config.prefetch_count == 0 {
            return Err(Error::config("`prefetch_count` must be positive"));
        }
        let start_positions = config
            .start_positions
            .iter()
            .map(|(partition, text)| {
                if partition.parse::<u32>().is_err() {
                    return Err(Error::config(format!(
                        "start_positions: `{partition}` is not a partition id"
                    )));
                }
                Ok((partition.clone(), parse_start(partition, text)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            load_balancing_interval: Duration::from_millis(interval),
            ownership_expiration: Duration::from_millis(expiry),
            strategy: config.load_balancing_strategy,
            prefetch: config.prefetch_count,
            start_positions,
            checkpoint_namespace: config
                .checkpoint_namespace
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        })
    }

    pub fn sdk_strategy(&self) -> ProcessorStrategy {
        match self.strategy {
            LoadBalancingStrategy::Greedy => ProcessorStrategy::Greedy,
            LoadBalancingStrategy::Balanced => ProcessorStrategy::Balanced,
        }
    }
}

/// Where partitions without a checkpoint start when `start_positions` does not name them.
pub(crate) fn default_start(initial: InitialPosition) -> StartPosition {
    StartPosition {
        location: match initial {
            InitialPosition::Earliest => StartLocation::Earliest,
            InitialPosition::Latest => StartLocation::Latest,
        },
        // Also applies to checkpoints: resume *after* the committed event.
        inclusive: false,
    }
}

/// `earliest`, `latest`, `sequence:<n>`, `offset:<service offset>` or `time:<RFC 3339>`.
fn parse_start(partition: &str, text: &str) -> Result<StartPosition> {
    let bad = |why: String| {
        Error::config(format!(
            "start_positions.{partition} = `{text}`: {why} (expected earliest, latest, \
             sequence:<n>, offset:<offset> or time:<RFC 3339>)"
        ))
    };
    let text = text.trim();
    let (location, inclusive) = match text.split_once(':') {
        None if text.eq_ignore_ascii_case("earliest") => (StartLocation::Earliest, false),
        None if text.eq_ignore_ascii_case("latest") => (StartLocation::Latest, false),
        Some(("sequence", n)) => {
            let n = n.trim().parse::<i64>().map_err(|e| bad(e.to_string()))?;
            (StartLocation::SequenceNumber(n), true)
        }
        Some(("offset", offset)) if !offset.trim().is_empty() => {
            (StartLocation::Offset(offset.trim().to_owned()), false)
        }
        Some(("time", t)) => {
            let parsed = time::OffsetDateTime::parse(
                t.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|e| bad(e.to_string()))?;
            (StartLocation::EnqueuedTime(SystemTime::from(parsed)), true)
        }
        _ => return Err(bad("unknown position".into())),
    };
    Ok(StartPosition {
        location,
        inclusive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EventHubsConfig {
        let cs =
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5";
        EventHubsConfig::from_connection_string(cs.parse().unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn microsoft_defaults() {
        let o = ProcessorOptions::from_config(&config()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.load_balancing_interval, Duration::from_secs(10));
        assert_eq!(o.ownership_expiration, Duration::from_secs(60));
        assert_eq!(o.prefetch, 300);
        assert!(matches!(o.sdk_strategy(), ProcessorStrategy::Greedy));
    }

    #[test]
    fn start_positions_parse_and_bad_ones_are_named() {
        let mut c = config();
        for (p, v) in [
            ("0", "earliest"),
            ("1", "sequence:42"),
            ("2", "offset:1024"),
            ("3", "time:2026-01-01T00:00:00Z"),
        ] {
            c.start_positions.insert(p.into(), v.into());
        }
        let o = ProcessorOptions::from_config(&c).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            o.start_positions["1"].location,
            StartLocation::SequenceNumber(42)
        ));
        assert!(
            matches!(&o.start_positions["2"].location, StartLocation::Offset(s) if s == "1024")
        );
        for (p, v) in [("x", "earliest"), ("0", "sequence:x"), ("0", "middle")] {
            let mut c = config();
            c.start_positions.insert(p.into(), v.into());
            let e = ProcessorOptions::from_config(&c).unwrap_err();
            assert_eq!(e.kind(), evhub_core::ErrorKind::Config);
            assert!(e.to_string().contains("start_positions"), "{e}");
        }
        let mut c = config();
        c.partition_ownership_expiration_interval_ms = c.load_balancing_interval_ms;
        assert!(ProcessorOptions::from_config(&c).is_err());
    }

    #[test]
    fn processor_keys_from_toml_and_environment() {
        use evhub_core::config::Config;
        let cs =
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5";
        let toml = format!(
            "backend = \"eventhubs\"\nconnection_string = \"{cs}\"\n\
             load_balancing_interval_ms = 5000\n\
             partition_ownership_expiration_interval_ms = 30000\n\
             load_balancing_strategy = \"balanced\"\nprefetch_count = 50\n\
             checkpoint_namespace = \"127.0.0.1:5672\"\n\
             [start_positions]\n\"0\" = \"latest\"\n\"3\" = \"sequence:7\"\n"
        );
        let from_env = Config::from_env_vars([
            ("EVHUB_BACKEND".to_owned(), "eventhubs".to_owned()),
            (
                "EVHUB_EVENTHUBS_CONNECTION_STRING".to_owned(),
                cs.to_owned(),
            ),
            (
                "EVHUB_EVENTHUBS_LOAD_BALANCING_INTERVAL_MS".to_owned(),
                "5000".to_owned(),
            ),
            (
                "EVHUB_EVENTHUBS_PARTITION_OWNERSHIP_EXPIRATION_INTERVAL_MS".to_owned(),
                "30000".to_owned(),
            ),
            (
                "EVHUB_EVENTHUBS_LOAD_BALANCING_STRATEGY".to_owned(),
                "balanced".to_owned(),
            ),
            ("EVHUB_EVENTHUBS_PREFETCH_COUNT".to_owned(), "50".to_owned()),
            (
                "EVHUB_EVENTHUBS_CHECKPOINT_NAMESPACE".to_owned(),
                "127.0.0.1:5672".to_owned(),
            ),
            (
                "EVHUB_EVENTHUBS_START_POSITIONS.0".to_owned(),
                "latest".to_owned(),
            ),
            (
                "EVHUB_EVENTHUBS_START_POSITIONS.3".to_owned(),
                "sequence:7".to_owned(),
            ),
        ]);
        for config in [Config::from_toml_str(&toml), from_env] {
            let Ok(Config::EventHubs(c)) = config else {
                panic!("not an eventhubs config: {config:?}");
            };
            let o = ProcessorOptions::from_config(&c).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(o.load_balancing_interval, Duration::from_secs(5));
            assert_eq!(o.ownership_expiration, Duration::from_secs(30));
            assert!(matches!(o.sdk_strategy(), ProcessorStrategy::Balanced));
            assert_eq!(o.prefetch, 50);
            assert_eq!(o.checkpoint_namespace.as_deref(), Some("127.0.0.1:5672"));
            assert!(matches!(
                o.start_positions["0"].location,
                StartLocation::Latest
            ));
            assert!(matches!(
                o.start_positions["3"].location,
                StartLocation::SequenceNumber(7)
            ));
        }
    }
}

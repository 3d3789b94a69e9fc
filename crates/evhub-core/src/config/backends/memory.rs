//! `backend = "memory"`: the embedded hub.

#[allow(unused_imports)]
use super::*;

/// A hub to create at start-up: `"orders"` or `"orders:8"` (name and partition count), or a
/// table `{ name = "orders", partitions = 8 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpec {
    /// Hub name.
    pub name: String,
    /// Partition count; `None` uses the backend default.
    pub partitions: Option<u32>,
}

impl std::str::FromStr for HubSpec {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, partitions) = match s.split_once(':') {
            Some((name, n)) => {
                let n = n
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        crate::Error::config(format!(
                            "hub `{name}`: partition count must be a positive integer, got `{n}`"
                        ))
                    })?;
                (name, Some(n))
            }
            None => (s, None),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(crate::Error::config("hub name is empty"));
        }
        Ok(Self {
            name: name.to_owned(),
            partitions,
        })
    }
}

impl<'de> Deserialize<'de> for HubSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            partitions: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Table(Table),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Repr::Table(t) => Ok(HubSpec {
                name: t.name,
                partitions: t.partitions,
            }),
        }
    }
}

/// What the memory backend does when a partition is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Producers wait until every consumer group committed past the oldest event (backpressure;
    /// nothing is lost). A send that waits longer than `send_timeout_ms` fails with `Timeout`.
    #[default]
    Block,
    /// The oldest event is dropped (retention by count, like a log with a size limit).
    DropOldest,
}

/// `backend = "memory"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Default hub for tools and examples.
    #[serde(default)]
    pub hub: Option<String>,
    /// Hubs created at start-up.
    #[serde(default)]
    pub hubs: Vec<HubSpec>,
    /// Partition count of hubs created without one. Default 4.
    #[serde(default = "MemoryConfig::default_partitions")]
    pub default_partitions: u32,
    /// Create a hub on first use instead of failing with `NotFound`. Default false.
    #[serde(default)]
    pub auto_create_hubs: bool,
    /// Largest event (key + payload + headers). Default 1 MiB, like Event Hubs Standard.
    #[serde(default = "MemoryConfig::default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Events kept per partition. Default 100 000.
    #[serde(default = "MemoryConfig::default_partition_capacity")]
    pub partition_capacity: usize,
    /// What happens when a partition is full. Default `block`.
    #[serde(default)]
    pub overflow: OverflowPolicy,
    /// How long a blocked send waits for room. Default 30 000 ms.
    #[serde(default = "MemoryConfig::default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// Where new consumer groups start. Default `earliest`.
    #[serde(default)]
    pub initial_position: InitialPosition,
}

impl MemoryConfig {
    fn default_partitions() -> u32 {
        4
    }
    fn default_max_event_bytes() -> usize {
        MIB
    }
    fn default_partition_capacity() -> usize {
        100_000
    }
    fn default_send_timeout_ms() -> u64 {
        30_000
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            hub: None,
            hubs: Vec::new(),
            default_partitions: Self::default_partitions(),
            auto_create_hubs: false,
            max_event_bytes: Self::default_max_event_bytes(),
            partition_capacity: Self::default_partition_capacity(),
            overflow: OverflowPolicy::default(),
            send_timeout_ms: Self::default_send_timeout_ms(),
            initial_position: InitialPosition::default(),
        }
    }
}

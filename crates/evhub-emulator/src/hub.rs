//! Hubs, their partitions and consumer groups, and the registry that holds
//! them (with optional creation on first reference).

use crate::{
    clock::now_millis,
    config::{validate_entity_name, validate_hub, HubConfig, DEFAULT_CONSUMER_GROUP},
    error::{EmulatorError, Result},
    partition_key::partition_for_key,
    storage::{PartitionLog, StorageOptions},
};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

/// One Event Hub.
#[derive(Debug)]
pub(crate) struct Hub {
    pub name: String,
    pub created_ms: i64,
    pub partitions: Vec<Arc<PartitionLog>>,
    consumer_groups: RwLock<Vec<String>>,
    round_robin: AtomicUsize,
    meta_path: Option<PathBuf>,
}

/// What `hub.json` stores so a restart restores auto-created hubs too.
#[derive(Debug, Serialize, Deserialize)]
struct HubMeta {
    name: String,
    partitions: u32,
    consumer_groups: Vec<String>,
    created_ms: i64,
}

impl Hub {
    pub(crate) fn partition(&self, id: &str) -> Option<&Arc<PartitionLog>> {
        let index: usize = id.parse().ok()?;
        // "01" is not a partition id even though it parses as 1.
        if index.to_string() != id {
            return None;
        }
        self.partitions.get(index)
    }

    pub(crate) fn partition_ids(&self) -> Vec<String> {
        (0..self.partitions.len()).map(|i| i.to_string()).collect()
    }

    pub(crate) fn has_consumer_group(&self, group: &str) -> bool {
        self.groups().iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    pub(crate) fn groups(&self) -> Vec<String> {
        self.consumer_groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Partition index for an event without an explicit partition.
    pub(crate) fn choose_partition(&self, key: Option<&str>) -> usize {
        match key {
            Some(key) => partition_for_key(key, self.partitions.len()),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions.len(),
        }
    }

    fn add_consumer_group(&self, group: &str) -> Result<bool> {
        validate_entity_name("consumer group", group)?;
        let added = {
            let mut groups = self
                .consumer_groups
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                false
            } else {
                groups.push(group.to_string());
                true
            }
        };
        if added {
            self.save_meta()?;
        }
        Ok(added)
    }

    fn save_meta(&self) -> Result<()> {
        let Some(path) = &self.meta_path else {
            return Ok(());
        };
        let meta = HubMeta {
            name: self.name.clone(),
            partitions: self.partitions.len() as u32,
            consumer_groups: self.groups(),
            created_ms: self.created_ms,
        };
        let text =
            serde_json::to_string_pretty(&meta).map_err(|e| EmulatorError::CorruptStore {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| EmulatorError::Storage {
                path: path.clone(),
                source,
            })
    }
}

/// All hubs, keyed by lower-cased name (hub names are case-insensitive).
#[derive(Debug)]
pub(crate) struct HubRegistry {
    hubs: RwLock<HashMap<String, Arc<Hub>>>,
    data_dir: Option<PathBuf>,
    storage: StorageOptions,
    auto_create: Option<u32>,
    /// Most hubs auto-creation may add, and how many it added.
    max_auto_created: usize,
    auto_created: AtomicUsize,
}

impl HubRegistry {
    /// Loads stored hubs (if any), then creates the configured ones.
    pub(crate) fn open(
        configured: &[HubConfig],
        data_dir: Option<PathBuf>,
        storage: StorageOptions,
        auto_create: Option<u32>,
        max_auto_created: usize,
    ) -> Result<Self> {
        let registry = Self {
            hubs: RwLock::new(HashMap::new()),
            data_dir,
            storage,
            auto_create,
            max_auto_created,
            auto_created: AtomicUsize::new(0),
        };
        if let Some(dir) = &registry.data_dir {
            std::fs::create_dir_all(dir).map_err(|source| EmulatorError::Storage {
                path: dir.clone(),
                source,
            })?;
            registry.load_stored(dir)?;
        }
        for hub in configured {
            match registry.get(&hub.name) {
                Some(existing) if existing.partitions.len() != hub.partitions as usize => {
                    return Err(EmulatorError::Config(format!(
                        "hub {:?} is stored with {} partitions but configured with {}",
                        hub.name,
                        existing.partitions.len(),
                        hub.partitions
                    )));
                }
                Some(existing) => {
                    for group in &hub.consumer_groups {
                        existing.add_consumer_group(group)?;
                    }
                }
                None => {
                    registry.create(hub)?;
                }
            }
        }
        Ok(registry)
    }

    fn load_stored(&self, dir: &Path) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|source| EmulatorError::Storage {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let meta_path = entry.path().join("hub.json");
            if !meta_path.is_file() {
                continue;
            }
            let text =
                std::fs::read_to_string(&meta_path).map_err(|source| EmulatorError::Storage {
                    path: meta_path.clone(),
                    source,
                })?;
            let meta: HubMeta =
                serde_json::from_str(&text).map_err(|e| EmulatorError::CorruptStore {
                    path: meta_path.clone(),
                    message: e.to_string(),
                })?;
            validate_hub(&meta.name, meta.partitions)?;
            let hub = self.build_hub(
                &HubConfig {
                    name: meta.name.clone(),
                    partitions: meta.partitions,
                    consumer_groups: meta.consumer_groups,
                },
                meta.created_ms,
            )?;
            self.insert(hub)?;
        }
        Ok(())
    }

    fn build_hub(&self, config: &HubConfig, created_ms: i64) -> Result<Arc<Hub>> {
        validate_hub(&config.name, config.partitions)?;
        let hub_dir = match &self.data_dir {
            Some(dir) => {
                let hub_dir = dir.join(config.name.to_ascii_lowercase());
                std::fs::create_dir_all(&hub_dir).map_err(|source| EmulatorError::Storage {
                    path: hub_dir.clone(),
                    source,
                })?;
                Some(hub_dir)
            }
            None => None,
        };
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for index in 0..config.partitions {
            if let Some(hub_dir) = &hub_dir {
                let legacy = hub_dir.join(format!("{index}.log"));
                if legacy.exists() {
                    return Err(EmulatorError::CorruptStore {
                        path: legacy,
                        message: "a single-file store from an older emulator version; it is \
                                  not read any more (move it away to start)"
                            .into(),
                    });
                }
            }
            let dir = hub_dir.as_ref().map(|d| d.join(index.to_string()));
            partitions.push(Arc::new(PartitionLog::open(dir, self.storage.clone())?));
        }
        let mut groups = vec![DEFAULT_CONSUMER_GROUP.to_string()];
        for group in &config.consumer_groups {
            validate_entity_name("consumer group", group)?;
            if !groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                groups.push(group.clone());
            }
        }
        let hub = Arc::new(Hub {
            name: config.name.clone(),
            created_ms,
            partitions,
            consumer_groups: RwLock::new(groups),
            round_robin: AtomicUsize::new(0),
            meta_path: hub_dir.map(|d| d.join("hub.json")),
        });
        hub.save_meta()?;
        Ok(hub)
    }

    fn insert(&self, hub: Arc<Hub>) -> Result<Arc<Hub>> {
        let mut hubs = self.hubs.write().unwrap_or_else(|e| e.into_inner());
        let key = hub.name.to_ascii_lowercase();
        if hubs.contains_key(&key) {
            return Err(EmulatorError::HubExists(hub.name.clone()));
        }
        hubs.insert(key, hub.clone());
        Ok(hub)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Hub>> {
        self.hubs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    /// The hub, creating it first when auto-creation is on.
    pub(crate) fn resolve(&self, name: &str) -> Option<Arc<Hub>> {
        if let Some(hub) = self.get(name) {
            return Some(hub);
        }
        let partitions = self.auto_create?;
        // Count first, so concurrent creations cannot overshoot the limit.
        let created = self.auto_created.fetch_add(1, Ordering::SeqCst);
        if created >= self.max_auto_created {
            self.auto_created.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                hub = name,
                limit = self.max_auto_created,
                "auto-create limit reached; hub not created"
            );
            return None;
        }
        let result = self.create(&HubConfig::new(name, partitions));
        if result.is_err() {
            self.auto_created.fetch_sub(1, Ordering::SeqCst);
        }
        match result {
            Ok(hub) => {
                tracing::info!(hub = name, partitions, "auto-created event hub");
                Some(hub)
            }
            // Another connection created it at the same moment.
            Err(EmulatorError::HubExists(_)) => self.get(name),
            Err(error) => {
                tracing::warn!(hub = name, %error, "could not auto-create event hub");
                None
            }
        }
    }

    pub(crate) fn create(&self, config: &HubConfig) -> Result<Arc<Hub>> {
        validate_hub(&config.name, config.partitions)?;
        if self.get(&config.name).is_some() {
            return Err(EmulatorError::HubExists(config.name.clone()));
        }
        let hub = self.build_hub(config, now_millis())?;
        self.insert(hub)
    }

    pub(crate) fn add_consumer_group(&self, hub: &str, group: &str) -> Result<bool> {
        let hub = self
            .get(hub)
            .ok_or_else(|| EmulatorError::UnknownHub(hub.to_string()))?;
        hub.add_consumer_group(group)
    }

    /// Flushes logs whose fsync interval has passed.
    pub(crate) fn sync_due(&self) {
        let hubs: Vec<Arc<Hub>> = self
            .hubs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for hub in hubs {
            for log in &hub.partitions {
                log.sync_if_due();
            }
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .hubs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|h| h.name.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> StorageOptions {
        StorageOptions::in_memory(1 << 20)
    }

    #[test]
    fn auto_create_stops_at_its_limit() {
        let registry = HubRegistry::open(&[], None, memory(), Some(1), 2).unwrap();
        assert!(registry.resolve("a").is_some());
        assert!(registry.resolve("b").is_some());
        assert!(registry.resolve("c").is_none());
        assert!(
            registry.resolve("a").is_some(),
            "existing hubs still resolve"
        );
        assert_eq!(registry.names(), ["a", "b"]);
    }

    #[test]
    fn create_lookup_and_groups() {
        let registry =
            HubRegistry::open(&[HubConfig::new("Orders", 2)], None, memory(), None, 8).unwrap();
        let hub = registry.get("orders").unwrap();
        assert_eq!(hub.partition_ids(), ["0", "1"]);
        assert!(hub.partition("1").is_some());
        assert!(hub.partition("2").is_none() && hub.partition("01").is_none());
        assert!(hub.has_consumer_group("$default"));
        assert!(!hub.has_consumer_group("cg"));
        assert!(registry.add_consumer_group("orders", "cg").unwrap());
        assert!(!registry.add_consumer_group("orders", "CG").unwrap());
        assert!(hub.has_consumer_group("cg"));
        assert!(matches!(
            registry.create(&HubConfig::new("ORDERS", 1)),
            Err(EmulatorError::HubExists(_))
        ));
        assert!(registry.resolve("missing").is_none());
    }

    #[test]
    fn auto_create_and_reload_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = Some(dir.path().to_path_buf());
        let registry = HubRegistry::open(&[], data.clone(), memory(), Some(3), 8).unwrap();
        let hub = registry.resolve("fresh").unwrap();
        assert_eq!(hub.partitions.len(), 3);
        registry.add_consumer_group("fresh", "readers").unwrap();
        drop(registry);
        let registry = HubRegistry::open(&[], data.clone(), memory(), None, 8).unwrap();
        let hub = registry.get("fresh").unwrap();
        assert_eq!(hub.partitions.len(), 3);
        assert!(hub.has_consumer_group("readers"));
        assert!(HubRegistry::open(&[HubConfig::new("fresh", 2)], data, memory(), None, 8).is_err());
    }
}

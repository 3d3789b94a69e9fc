//! Per-backend configuration structs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::connection_string::EventHubsConnectionString;
use super::secret::{RedactedMap, Secret};
use crate::position::InitialPosition;

mod eventhubs;
mod kafka;
mod memory;

pub use eventhubs::*;
pub use kafka::*;
pub use memory::*;

const MIB: usize = 1024 * 1024;

fn default_true() -> bool {
    true
}

//! The conformance suite against the embedded memory backend.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use evhub::{memory::MemoryBackend, Backend, Result};
use evhub_conformance::Harness;

struct MemoryHarness {
    backend: MemoryBackend,
}

#[evhub::async_trait]
impl Harness for MemoryHarness {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn connect(&self) -> Result<Arc<dyn Backend>> {
        // Every connection of one process shares the embedded hub.
        Ok(Arc::new(self.backend.clone()))
    }
}

fn harness() -> MemoryHarness {
    MemoryHarness {
        backend: MemoryBackend::try_new(Default::default())
            .expect("default memory config is valid"),
    }
}

evhub_conformance::conformance_tests!(harness());

#[tokio::test]
async fn no_memory_case_is_skipped() {
    let reports = evhub_conformance::run_all(&harness()).await;
    let not_passed: Vec<_> = reports
        .iter()
        .filter(|r| r.outcome != evhub_conformance::Outcome::Passed)
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
}

//! Test support shared by evhub's test crates (the checkpoint-store tests, the fault drills).

pub mod azurite;

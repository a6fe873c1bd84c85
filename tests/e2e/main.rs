//! End-to-end tests: the `sluice` binary against real SQLite files and the real
//! PostgreSQL and MariaDB servers that `scripts/test` starts.
// A failed expectation in a test should stop it with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod crash;
mod demo;
mod incremental;
mod roundtrip;
mod validate;

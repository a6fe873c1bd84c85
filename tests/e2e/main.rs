//! End-to-end tests: the `sluice` binary against real SQLite files and the real
//! PostgreSQL, MariaDB and moto (local AWS) servers that `scripts/test` starts.
// A failed expectation in a test should stop it with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod api;
mod aws;
mod catalog;
mod changes;
mod changes_mariadb;
mod cloud;
mod common;
mod contract;
mod crash;
mod delta;
mod delta_values;
mod demo;
mod files;
mod incremental;
mod memory;
mod quality;
mod queue;
mod roundtrip;
mod split;
mod validate;

//! What a run tells the outside: run metrics (CloudWatch or EMF) and, on a terminal, a
//! progress line that log lines pass above. Logs themselves are `tracing` events, set up
//! in `main.rs`.

pub mod metrics;
pub mod progress;

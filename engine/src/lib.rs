//! sluice: a Glue-style ETL job engine. Job rows → extract from a relational database →
//! DataFusion transform → partitioned Parquet in a lake → watermark. See DESIGN.md.

pub mod aws;
pub mod budget;
pub mod catalog;
pub mod cli;
pub mod collect;
pub mod console;
pub mod contract;
pub mod demo;
pub mod error;
pub mod failpoint;
pub mod infer;
pub mod interrupt;
pub mod job;
pub mod jsonpath;
pub mod keyfile;
pub mod lake_type;
pub mod lineage;
pub mod pipeline;
pub mod quality;
pub mod query;
pub mod runs_table;
pub mod serve;
pub mod sink;
pub mod source;
pub mod spec;
pub mod stdout;
pub mod stepfn;
pub mod store;
pub mod summary;
pub mod table;
pub mod telemetry;
pub mod transform;

//! The lake's page: its tables with partitions, files, bytes and Delta versions, and a
//! query box answered by `serve`'s engine (its read-only guard, its limits, its query
//! threads). Both are plain HTML: a GET form, an HTML table of at most a page of rows.

use std::fmt::Write as _;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::super::html::{escape, table};
use crate::serve::engine::{Rows, TableInfo};
use crate::summary::human_bytes;

/// Rows the query box shows at most.
pub const QUERY_ROWS: usize = 200;

/// The tables, each with its Delta version when it is a Delta table.
pub fn tables(list: &[(TableInfo, Option<String>)]) -> String {
    table(
        "Tables",
        &[
            "Table",
            "Partition columns",
            "Partitions",
            "Files",
            "Bytes",
            "Delta version",
            "Quarantine of",
        ],
        list.iter().map(|(t, version)| {
            let n = |v: Option<usize>| v.map_or("—".to_string(), |v| v.to_string());
            vec![
                escape(&t.name),
                escape(&t.partition_columns.join(", ")),
                n(t.partitions),
                n(t.files),
                t.bytes.map_or("—".to_string(), human_bytes),
                escape(version.as_deref().unwrap_or("—")),
                escape(t.quarantine_of.as_deref().unwrap_or("")),
            ]
        }),
    )
}

/// The query box, with the statement asked (if any).
pub fn query_box(sql: &str) -> String {
    format!(
        "<h2>Query</h2><form method=\"get\" action=\"/lake\"><label for=\"sql\">SQL (read-only; at most {QUERY_ROWS} rows are shown)</label>\
         <textarea id=\"sql\" name=\"sql\" required>{}</textarea><p><button type=\"submit\" id=\"run-query\">Run query</button></p></form>",
        escape(sql)
    )
}

/// An answer's rows as an HTML table, every value escaped.
pub fn rows(rows: &Rows) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let head: Vec<String> = rows
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut body: Vec<Vec<String>> = Vec::new();
    for batch in &rows.batches {
        let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for i in 0..batch.num_rows() {
            body.push(
                formatters
                    .iter()
                    .map(|f| match f {
                        Some(f) => escape(&f.value(i).to_string()),
                        None => "?".to_string(),
                    })
                    .collect(),
            );
        }
    }
    let mut out = String::new();
    let shown = body.len();
    out.push_str(&table(&format!("{shown} rows"), &head_refs, body));
    if rows.next.is_some() {
        let _ = write!(
            out,
            "<p class=\"note\">Only the first {shown} rows are shown.</p>"
        );
    }
    out
}

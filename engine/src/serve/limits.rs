//! Everything a client controls has a limit, named in its refusal and in `--help`. The
//! defaults keep a 2-core, 1 GiB task alive under the worst query: four queries of
//! 128 MiB each (two of one key at most), an answer page of at most 16 MiB, statements of at most 256 KiB nesting
//! at most 200 deep, and no query past 30 s.

use std::time::Duration;

/// What one query may take, and how many may run (the defaults are `sluice serve`'s).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows in a page when the request names none.
    pub page: usize,
    /// The most rows a page may have.
    pub max_page: usize,
    /// The most bytes a page may hold (its rows as Arrow holds them; they also count
    /// against the query's memory while the page is made).
    pub page_bytes: usize,
    /// The most rows a streamed answer (NDJSON without a limit, Flight SQL) may have.
    pub max_rows: usize,
    /// The most bytes a streamed answer may carry (its rows as Arrow holds them).
    pub answer_bytes: usize,
    /// How long a query may take from its admission, planning included: its answer (or
    /// the last row of its stream) comes within it or the client gets `time_limit`.
    pub time: Duration,
    /// The most bytes a statement's text may have.
    pub statement_bytes: usize,
    /// How deep a statement may nest: expressions in expressions (`a AND b AND …` is one
    /// level per operator), subqueries, UNION branches.
    pub sql_depth: usize,
    /// Queries running at once; more wait up to `queue_wait`, then get 503.
    pub concurrent: usize,
    /// Queries of one key running at once; more wait up to `queue_wait`, then get 429.
    pub concurrent_per_key: usize,
    pub queue_wait: Duration,
    /// Threads that run the queries (apart from those that answer requests, so that
    /// `/health` and every other request are answered while queries run).
    pub query_threads: usize,
    /// How long a stop waits for requests in flight before the server exits.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            page: 1000,
            max_page: 100_000,
            page_bytes: 16 << 20,
            max_rows: 10_000_000,
            answer_bytes: 1 << 30,
            time: Duration::from_secs(30),
            statement_bytes: 256 << 10,
            sql_depth: 200,
            concurrent: 4,
            concurrent_per_key: 2,
            queue_wait: Duration::from_secs(1),
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            drain: Duration::from_secs(10),
        }
    }
}

//! The file feed's part of a job row (`source.files`), as users write it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// File feeds (a connection of kind `sftp`, `s3` or `folder`): which files a run loads
/// and how they are read. Each complete file's records land exactly once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    /// The files, relative to the connection's `path`: a folder, then a name pattern
    /// with `*`, `?` and `[…]`, e.g. `incoming/bank_*.json` (the folder itself has no
    /// wildcards; its subfolders are not read).
    pub pattern: String,
    /// How a file's records are written: `json` (one object, an array of objects, or
    /// the objects at `records`), `ndjson` (one object a line), `csv` (a header line,
    /// then one record a line), or `auto` (the default: by the first bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// `json`: where the array of records is, such as `$.transactions` (object keys
    /// only). Default: the file is the record or the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// `auto` (the default): gzip for names ending `.gz`, zstd for `.zst`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<FileCompression>,
    /// `csv`: the field delimiter, one character (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// A file whose modification time is more recent than this is still being written
    /// and waits for a later run: `60s` (the default); `0s` takes every file listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_for: Option<String>,
    /// A file waits until a marker file of its name plus this suffix exists, such as
    /// `.done` (`bank_0501.json.done`). The marker is never loaded; `after_load` treats
    /// it as the file does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_marker: Option<String>,
    /// What happens to a file once its rows are committed: `keep` (the default),
    /// `delete`, or `{move: <folder>}` (relative to the connection's `path`). Never done
    /// before the commit; an action a crash cut short is finished by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_load: Option<AfterLoad>,
    /// A loaded file that is listed again with another size, time and content: `fail`
    /// (the default: the run stops and names it), `skip` (its new content is ignored),
    /// or `reload` (the rows of the run that loaded it are replaced by a fresh load of
    /// that run's files, this one's new content included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_changed_file: Option<OnChangedFile>,
    /// A file that cannot be read as its format (not JSON, a broken gzip stream, a
    /// truncated array): `fail` (the default: the run stops, commits nothing, and names
    /// the file and the byte), or `quarantine` (the file is recorded in the quarantine
    /// table, none of its rows are loaded, and the run goes on). With `quarantine` each
    /// file is checked whole before its records are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_bad_file: Option<OnBadFile>,
    /// A run loads at most this many files (default 1000), in path order; the rest
    /// wait for the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
    /// How long a committed run's files are remembered once none of them is in the
    /// folder any more: `30d` (the default). A file put back within it is not loaded
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// By the first bytes: `{` or `[` is JSON (NDJSON when several objects follow one
    /// another on lines), anything else CSV.
    Auto,
    /// One JSON object, an array of objects, or the objects under `records`.
    Json,
    /// One JSON object a line (JSON Lines).
    Ndjson,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileCompression {
    /// By the name: `.gz` is gzip, `.zst` is zstd, else none.
    Auto,
    None,
    Gzip,
    Zstd,
}

/// What happens to a file after its rows are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AfterLoad {
    /// The file stays where it is (it is remembered, and not loaded again).
    Keep,
    /// The file (and its marker) is deleted.
    Delete,
    /// The file (and its marker) is moved into this folder, relative to the
    /// connection's `path`, e.g. `processed/`.
    Move(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnChangedFile {
    /// The run stops before it reads anything and names the file (exit 2).
    Fail,
    /// The file's new content is ignored.
    Skip,
    /// The rows of the run that loaded the file are replaced by a fresh load of that
    /// run's files, in the same commit.
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnBadFile {
    /// The run stops, commits nothing and names the file and the byte (exit 2).
    Fail,
    /// The file is recorded in the quarantine table and the run goes on.
    Quarantine,
}

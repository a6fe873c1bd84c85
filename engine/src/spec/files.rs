//! The file feed's part of a job row (`source.files`), as users write it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// File feeds (a connection of kind `sftp`, `s3` or `folder`): which files a run loads
/// and how they are read. Each complete file's records land exactly once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    /// The files, relative to the connection's `path`: folders and a name, matched
    /// against the whole path. `*` is any run of characters within one folder or name,
    /// `?` one character, `[…]` one of a class (`[!…]` one not in it), and `**` as a
    /// folder of its own any number of folders (none included). E.g.
    /// `incoming/bank_*.json`, `statements/2026/*/*.ndjson.gz` (each month's folder),
    /// `statements/**/*.json` (at any depth). Only the folder before the first wildcard
    /// is listed, and only the subfolders that can hold a match are descended into (on
    /// S3: one listing by that prefix). A folder that does not exist yet holds nothing
    /// new. Give `pattern` or `patterns`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Several patterns loaded by this one job into its one table, each with its own
    /// `format`, `records`, `compression` and `delimiter` (those given here beside
    /// `patterns` are the default of every entry they are for: `records` of the JSON
    /// ones, `delimiter` of the CSV ones), e.g. `[{pattern: "statements/**/*.json"},
    /// {pattern: "statements/**/*.ndjson*", format: ndjson}]`. No file may match two
    /// of them: `jobs validate` names the two and a path both match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<PatternSpec>>,
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
    /// `delete`, or `{move: <folder>}` (relative to the connection's `path`; a file keeps
    /// its path below its pattern's folder, so `statements/**/*.json` moves
    /// `statements/2026/11/a.json` to `<folder>/2026/11/a.json`; the folder may not be
    /// one a pattern lists). Never done before the commit; an action a crash cut short
    /// is finished by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_load: Option<AfterLoad>,
    /// A loaded file that is listed again with other content: `fail` (the default: the
    /// run stops and names it), `skip` (its new content is ignored), or `reload` (the
    /// rows of the run that loaded it are replaced by a fresh load of that run's files,
    /// this one's new content included). Which files are looked at is `identity`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_changed_file: Option<OnChangedFile>,
    /// How a loaded file that is listed again is told from a changed one: `listing`
    /// (the default) hashes it only when its size or modification time differs from
    /// when it was loaded, so a file rewritten in place with the same size and the same
    /// time is taken as unchanged; `content` hashes every listed file that a remembered
    /// run loaded, every run, so any rewrite is caught. Its cost: each run reads every
    /// loaded file still in scope once more (streamed through SHA-256 at disk or network
    /// speed, nothing kept; from SFTP or S3 that is a download of those files each run),
    /// on top of reading the new ones; `bench/files` measures it (a second run over an
    /// unchanged file, against the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
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
    /// How long a committed run's files are remembered once none of them is listed
    /// (at its path, whatever its size, time or content) any more: `30d` (the default).
    /// A file put back within it is not loaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember: Option<String>,
}

/// One of `patterns`: which files, and how they are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// The files, as `pattern` writes them (`statements/**/*.ndjson.gz`).
    pub pattern: String,
    /// As `format`; default: the one given beside `patterns`, else `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// As `records`; default: the one given beside `patterns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// As `compression`; default: the one given beside `patterns`, else `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<FileCompression>,
    /// As `delimiter`; default: the one given beside `patterns`, else `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
}

/// How a loaded file listed again is told from a changed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// By its size and modification time; hashed only when one of them differs.
    #[default]
    Listing,
    /// By its content: hashed every run (each loaded file still listed is read again).
    Content,
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
    /// connection's `path`, e.g. `processed/`, keeping its path below its pattern's
    /// folder.
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

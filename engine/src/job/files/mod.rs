//! File feeds, compiled: the store a connection names (an SFTP server, an S3 bucket, a
//! local folder) and a job row's `source.files`. Pure, like the rest of compilation.

use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use crate::contract::Column;
use crate::spec::files::{
    AfterLoad, FileCompression, FileFormat, FilesSpec, Identity, OnBadFile, OnChangedFile,
    PatternSpec,
};
use crate::spec::units::parse_duration;
use crate::spec::{ConnectionKind, ConnectionSpec, JobSpec, MessageColumn};

use super::feed::{self, Records};
use super::pattern::FilePattern;

/// Where a file feed's files are.
#[derive(Debug, Clone, PartialEq)]
pub enum FileStore {
    Sftp(SftpConnection),
    /// A bucket (may hold `${VAR}`) and a key prefix (no leading or trailing `/`).
    S3 {
        bucket: String,
        prefix: String,
    },
    /// A local folder.
    Folder(PathBuf),
}

/// An SFTP server. Text fields may still hold `${VAR}` placeholders, filled from the
/// connection's secret, then the environment, when the job connects.
#[derive(Debug, Clone, PartialEq)]
pub struct SftpConnection {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub private_key: Option<String>,
    /// `SHA256:` and the unpadded Base64 of the key's digest.
    pub host_key: String,
    /// The folder patterns are relative to (empty: the login folder).
    pub path: String,
    pub secret: Option<String>,
}

/// A file feed, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct FilesFeed {
    pub records: Records,
    /// Which files, and how each is read; no path matches two of them.
    pub patterns: Vec<Pattern>,
    pub stable_for: Duration,
    pub done_marker: Option<String>,
    pub after_load: AfterLoad,
    pub on_changed: OnChangedFile,
    pub identity: Identity,
    pub on_bad: OnBadFile,
    pub max_files: usize,
    pub remember: Duration,
}

impl FilesFeed {
    /// The pattern `path` matches, if any (at most one does).
    pub fn pattern_of(&self, path: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.glob.matches(path))
    }
}

/// One of a file feed's patterns: which files, and how they are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub glob: FilePattern,
    pub format: FileFormat,
    /// `json`: the object keys leading to the records' array.
    pub records_at: Vec<String>,
    pub compression: FileCompression,
    pub delimiter: u8,
}

pub const DEFAULT_STABLE_FOR: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_FILES: usize = 1000;
pub const DEFAULT_REMEMBER: Duration = Duration::from_secs(30 * 86_400);

/// The connection fields only file stores take, and whether the row gives each.
fn file_fields(spec: &ConnectionSpec) -> [(&'static str, bool); 8] {
    [
        ("host", spec.host.is_some()),
        ("port", spec.port.is_some()),
        ("user", spec.user.is_some()),
        ("password", spec.password.is_some()),
        ("private_key", spec.private_key.is_some()),
        ("host_key", spec.host_key.is_some()),
        ("path", spec.path.is_some()),
        ("bucket", spec.bucket.is_some()),
    ]
}

/// A database, queue or API connection must not carry a file store's fields.
pub fn refuse_file_fields(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) {
    for (field, given) in file_fields(spec) {
        if given {
            problem(
                field,
                format!(
                    "is for file stores (kind `sftp`, `s3` or `folder`); a {} connection does not take it",
                    spec.kind.name()
                ),
            );
        }
    }
}

/// Compiles a file store's connection, with every problem at once.
pub fn compile_connection(
    spec: &ConnectionSpec,
    base_dir: Option<&FsPath>,
    problem: &mut impl FnMut(&str, String),
) -> FileStore {
    let takes: &[&str] = match spec.kind {
        ConnectionKind::Sftp => &[
            "host",
            "port",
            "user",
            "password",
            "private_key",
            "host_key",
            "path",
        ],
        ConnectionKind::S3 => &["bucket", "path"],
        _ => &["path"],
    };
    for (field, given) in file_fields(spec) {
        if given && !takes.contains(&field) {
            problem(
                field,
                format!(
                    "a {} connection does not take it (it takes {})",
                    spec.kind.name(),
                    list(takes)
                ),
            );
        }
    }
    let others = [
        ("url", spec.url.is_some()),
        ("queue_url", spec.queue_url.is_some()),
    ];
    for (field, given) in others.into_iter().chain(super::http::api_fields(spec)) {
        if given {
            problem(
                field,
                format!(
                    "is not for a file store; a {} connection gives {}",
                    spec.kind.name(),
                    list(takes)
                ),
            );
        }
    }
    if spec.secret.is_some() && spec.kind != ConnectionKind::Sftp {
        problem(
            "secret",
            format!(
                "a {} connection has no credentials of its own (the task role's, or the local user's)",
                spec.kind.name()
            ),
        );
    }
    let path = spec.path.clone().unwrap_or_default();
    let trimmed = path.trim_matches('/').to_string();
    match spec.kind {
        ConnectionKind::Sftp => FileStore::Sftp(sftp(spec, path.trim_end_matches('/'), problem)),
        ConnectionKind::S3 => {
            let bucket = spec.bucket.clone().unwrap_or_else(|| {
                problem(
                    "bucket",
                    "missing: give the bucket's name (`${VAR}` placeholders work)".into(),
                );
                String::new()
            });
            if let Err(p) = super::check::check_placeholders(&bucket) {
                problem("bucket", p);
            } else if bucket.contains('/') || bucket.starts_with("s3:") {
                problem(
                    "bucket",
                    format!(
                        "{bucket:?} is not a bucket name: give the name alone, and the key prefix as `path`"
                    ),
                );
            }
            FileStore::S3 {
                bucket,
                prefix: trimmed,
            }
        }
        _ => {
            if spec.path.is_none() {
                problem(
                    "path",
                    "missing: give the folder (relative to this file's folder, or absolute)".into(),
                );
            }
            let folder = PathBuf::from(&path);
            let folder = match base_dir {
                Some(base) if folder.is_relative() => base.join(folder),
                _ => folder,
            };
            FileStore::Folder(folder)
        }
    }
}

fn sftp(
    spec: &ConnectionSpec,
    path: &str,
    problem: &mut impl FnMut(&str, String),
) -> SftpConnection {
    let mut text = |field: &str, value: &Option<String>, example: &str| match value {
        None => {
            problem(field, format!("missing: give {example}"));
            String::new()
        }
        Some(v) => {
            if let Err(p) = super::check::check_placeholders(v) {
                problem(field, p);
            }
            v.clone()
        }
    };
    let host = text("host", &spec.host, "the server's host name or address");
    let user = text("user", &spec.user, "the user to log in as");
    let mut credential = |field: &str, value: &Option<String>| {
        let v = value.as_ref()?;
        if !(v.starts_with("${") && v.ends_with('}') && v.matches("${").count() == 1) {
            problem(
                field,
                format!(
                    "is written in the file: give it as one `${{VAR}}` placeholder, filled from the connection's `secret` or the environment, e.g. `${{BANK_SFTP_{}}}`",
                    field.to_ascii_uppercase()
                ),
            );
        } else if let Err(p) = super::check::check_placeholders(v) {
            problem(field, p);
        }
        Some(v.clone())
    };
    let password = credential("password", &spec.password);
    let private_key = credential("private_key", &spec.private_key);
    if password.is_some() == private_key.is_some() {
        problem(
            if password.is_some() {
                "private_key"
            } else {
                "password"
            },
            "give exactly one of `password` and `private_key`".into(),
        );
    }
    let host_key = match &spec.host_key {
        None => {
            problem(
                "host_key",
                "missing: pin the server's host key, `SHA256:…` as `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` prints it".into(),
            );
            String::new()
        }
        Some(k) => {
            if !is_fingerprint(k) {
                problem(
                    "host_key",
                    format!(
                        "{k:?} is not a host key fingerprint: give `SHA256:` and 43 Base64 characters, as `ssh-keygen -lf` prints"
                    ),
                );
            }
            k.clone()
        }
    };
    if spec.port == Some(0) {
        problem("port", "0 is not a port (1 to 65535)".into());
    }
    SftpConnection {
        host,
        port: spec.port.unwrap_or(22),
        user,
        password,
        private_key,
        host_key,
        path: path.to_string(),
        secret: spec.secret.clone(),
    }
}

/// `SHA256:` and the 43 unpadded Base64 characters of a 32-byte digest.
fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A file job's source: `source.files`, the record and the file columns.
pub fn compile_feed(
    spec: &JobSpec,
    schema: Option<&[Column]>,
    bad: &mut impl FnMut(&str, String),
) -> Option<FilesFeed> {
    let source = &spec.source;
    check_source_fields(spec, bad);
    feed::check_feed_mode(spec, "a file job", bad);
    let message_columns = source.message_columns.clone().unwrap_or_default();
    for (i, column) in message_columns.iter().enumerate() {
        if !matches!(
            column,
            MessageColumn::File | MessageColumn::Line | MessageColumn::Record
        ) {
            bad(
                &format!("source.message_columns[{i}]"),
                format!(
                    "`{}` is a queue message's column; a file job's are `file`, `line` and `record`",
                    column.column().trim_start_matches('_')
                ),
            );
        }
    }
    let mut message_columns = message_columns;
    message_columns.sort();
    message_columns.dedup();
    if source.collect.is_some() && source.files.is_some() {
        bad(
            "source.files",
            "is set by `collect` (the collector's spool segments): give one of the two".into(),
        );
    }
    let collected = source.collect.map(collector_files);
    let Some(files) = source.files.as_ref().or(collected.as_ref()) else {
        bad(
            "source.files",
            format!(
                "missing: connection `{}` is a file store; give `files: {{pattern: incoming/bank_*.json}}` (and the format, …)",
                source.connection
            ),
        );
        return None;
    };
    let patterns = compile_patterns(files, bad);
    let records = feed::record(spec, schema, message_columns, "a file job", bad)?;
    if source.fields.is_some() && patterns.iter().any(|p| p.format == FileFormat::Csv) {
        bad(
            "source.fields",
            "maps fields to JSONPaths in JSON records; a CSV file's fields are its columns, in order".into(),
        );
    }
    let mut duration = |field: &str, text: Option<&String>, default: Duration| match text {
        None => default,
        Some(t) => parse_duration(t).unwrap_or_else(|m| {
            bad(&format!("source.files.{field}"), m);
            default
        }),
    };
    let stable_for = duration("stable_for", files.stable_for.as_ref(), DEFAULT_STABLE_FOR);
    let remember = duration("remember", files.remember.as_ref(), DEFAULT_REMEMBER);
    if let Some(marker) = &files.done_marker
        && (marker.is_empty() || marker.contains('/'))
    {
        bad(
            "source.files.done_marker",
            format!("{marker:?} is not a suffix of a file name, such as `.done`"),
        );
    }
    let after_load = files.after_load.clone().unwrap_or(AfterLoad::Keep);
    if let AfterLoad::Move(to) = &after_load {
        let to = to.trim_matches('/');
        let lists_it = patterns.iter().any(|p| p.glob.may_hold(to));
        if to.is_empty()
            || lists_it
            || to.contains(['*', '?', '['])
            || to.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        {
            bad(
                "source.files.after_load.move",
                format!(
                    "{to:?} is not a folder to move loaded files into: give another folder than the pattern's, such as `processed` (not one a pattern lists, or what is moved there would be listed again)"
                ),
            );
        }
    }
    let max_files = files.max_files.map_or(DEFAULT_MAX_FILES, |n| n as usize);
    if max_files == 0 {
        bad("source.files.max_files", "must be at least 1".into());
    }
    Some(FilesFeed {
        records,
        patterns,
        stable_for,
        done_marker: files.done_marker.clone(),
        after_load: match after_load {
            AfterLoad::Move(to) => AfterLoad::Move(to.trim_matches('/').to_string()),
            other => other,
        },
        on_changed: files.on_changed_file.unwrap_or(OnChangedFile::Fail),
        identity: files.identity.unwrap_or_default(),
        on_bad: files.on_bad_file.unwrap_or(OnBadFile::Fail),
        max_files,
        remember,
    })
}

/// `pattern` with the format beside it, or each of `patterns` with the defaults beside
/// it; no path may match two.
fn compile_patterns(files: &FilesSpec, bad: &mut impl FnMut(&str, String)) -> Vec<Pattern> {
    let entries: Vec<(String, PatternSpec)> = match (&files.pattern, &files.patterns) {
        (Some(_), Some(_)) => {
            bad(
                "source.files.patterns",
                "is given beside `pattern`: give `pattern` (one kind of file) or `patterns` (several, each with its format), not both".into(),
            );
            return Vec::new();
        }
        (None, None) => {
            bad(
                "source.files.pattern",
                "missing: give `pattern: incoming/bank_*.json`, or `patterns: [{pattern: …, format: …}, …]` for several kinds of file".into(),
            );
            return Vec::new();
        }
        (Some(pattern), None) => vec![(
            "source.files".to_string(),
            PatternSpec {
                pattern: pattern.clone(),
                format: files.format,
                records: files.records.clone(),
                compression: files.compression,
                delimiter: files.delimiter.clone(),
            },
        )],
        (None, Some(list)) => {
            if list.is_empty() {
                bad(
                    "source.files.patterns",
                    "is empty: give at least one `{pattern: …}`".into(),
                );
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| (format!("source.files.patterns[{i}]"), p.clone()))
                .collect()
        }
    };
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut at: Vec<String> = Vec::new();
    for (field, entry) in entries {
        let Some(pattern) = compile_pattern(files, &field, &entry, bad) else {
            continue;
        };
        for (other, where_) in patterns.iter().zip(&at) {
            if let Some(path) = other.glob.overlap(&pattern.glob) {
                bad(
                    &format!("{field}.pattern"),
                    format!(
                        "{:?} and {where_}'s {:?} both match {path:?}: a file must match one pattern, so that how it is read is certain; make them apart (`*.json` and `*.json.gz` are, `*.json*` and `*.json.gz` are not)",
                        pattern.glob.text(),
                        other.glob.text(),
                    ),
                );
            }
        }
        patterns.push(pattern);
        at.push(field);
    }
    patterns
}

/// One pattern; a field the entry does not give is taken from beside `patterns`.
fn compile_pattern(
    files: &FilesSpec,
    field: &str,
    entry: &PatternSpec,
    bad: &mut impl FnMut(&str, String),
) -> Option<Pattern> {
    // Where a setting came from: the entry's own, else the one beside `patterns`.
    let from = |own: bool, name: &str| {
        if own {
            format!("{field}.{name}")
        } else {
            format!("source.files.{name}")
        }
    };
    let glob = FilePattern::new(&entry.pattern)
        .map_err(|m| bad(&format!("{field}.pattern"), m))
        .ok();
    let format = entry.format.or(files.format).unwrap_or(FileFormat::Auto);
    // A setting beside `patterns` is the default of the entries it is for: `records`
    // of the JSON ones, `delimiter` of the CSV ones.
    let json = matches!(format, FileFormat::Json | FileFormat::Auto);
    let csv = matches!(format, FileFormat::Csv | FileFormat::Auto);
    let records = entry
        .records
        .as_ref()
        .or(files.records.as_ref().filter(|_| json));
    let records_at = match records {
        None => Vec::new(),
        Some(path) => {
            let at = from(entry.records.is_some(), "records");
            if !json {
                bad(
                    &at,
                    "is for format `json`: an NDJSON or CSV file's records are its lines".into(),
                );
            }
            keys(path).unwrap_or_else(|m| {
                bad(&at, m);
                Vec::new()
            })
        }
    };
    let delimiter_text = entry
        .delimiter
        .as_deref()
        .or(files.delimiter.as_deref().filter(|_| csv));
    let delimiter_at = from(entry.delimiter.is_some(), "delimiter");
    let delimiter = match delimiter_text {
        None => b',',
        Some(d) if d.len() == 1 && d != "\n" && d != "\"" => d.as_bytes()[0],
        Some(d) => {
            bad(
                &delimiter_at,
                format!("{d:?} is not one ASCII character (other than a quote or a newline)"),
            );
            b','
        }
    };
    if delimiter_text.is_some() && !csv {
        bad(&delimiter_at, "is for format `csv`".into());
    }
    Some(Pattern {
        glob: glob?,
        format,
        records_at,
        compression: entry
            .compression
            .or(files.compression)
            .unwrap_or(FileCompression::Auto),
        delimiter,
    })
}

/// `$.a.b` (or `a.b`) as its keys.
fn keys(path: &str) -> Result<Vec<String>, String> {
    let rest = path.strip_prefix('$').unwrap_or(path);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = rest.split('.').map(str::to_string).collect();
    if keys
        .iter()
        .any(|k| k.is_empty() || k.contains(['[', ']', '*', '\'', '"']))
    {
        return Err(format!(
            "{path:?} is not a path of object keys: write `$.transactions` or `$.data.items`"
        ));
    }
    Ok(keys)
}

/// A file job takes `files`, `record` and `message_columns` of the source's fields.
/// The files of the event collector's spool that hold `table`'s events: its sealed
/// segments, NDJSON, each complete when it appears (it is renamed into `ready/`), moved
/// to `loaded/` once committed (the collector keeps them there for its deduplication
/// window), a broken one quarantined; two a run (a run decodes its files at once: two 16 MiB
/// segments stay within a 112 MiB budget, four do not), the collector running the job
/// again while segments wait.
fn collector_files(table: crate::spec::CollectTable) -> FilesSpec {
    FilesSpec {
        max_files: Some(2),
        pattern: Some(format!("ready/{}-*.ndjson", table.name())),
        format: Some(FileFormat::Ndjson),
        stable_for: Some("0s".into()),
        after_load: Some(AfterLoad::Move("loaded".into())),
        on_bad_file: Some(OnBadFile::Quarantine),
        ..FilesSpec::default()
    }
}

fn check_source_fields(spec: &JobSpec, bad: &mut impl FnMut(&str, String)) {
    let source = &spec.source;
    for field in feed::foreign_to_feed(
        spec,
        &[
            "record",
            "message_columns",
            "files",
            "collect",
            "fields",
            "coerce",
            "dedup",
        ],
    ) {
        bad(
            &format!("source.{field}"),
            format!(
                "connection `{}` is a file store: a file job gives `files` (which files and how they are read), `record` and `message_columns` (and `primary_key` and `cursor` in mode `merge`); its progress is the files each run loaded",
                source.connection
            ),
        );
    }
}

#[cfg(test)]
mod tests;

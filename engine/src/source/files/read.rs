//! Reading one file's records, streamed: gzip or zstd off, then JSON (one object, an
//! array, or the array under a path, read element by element), NDJSON (a line at a
//! time) or CSV (a header, then a record a line). Memory holds one record at a time,
//! whatever the file's size.
//!
//! Two kinds of failure are told apart. A *bad record* (a line that is not JSON, an
//! element that is not an object, a value that does not fit its field) is the
//! record's: the caller quarantines it and reads on. A *bad file* (not its format at
//! all, a broken gzip stream, an array cut short) is the file's: [`Broken`] says where.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::source::records::folded;
use crate::spec::files::{FileCompression, FileFormat};

/// Where a file stopped being readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Broken {
    pub message: String,
}

impl Broken {
    fn at(offset: u64, line: u64, what: impl std::fmt::Display) -> Self {
        Broken {
            message: format!("at byte {offset} (line {line}): {what}"),
        }
    }
}

/// What reading a file met: a bad file, or an I/O failure of the local disk.
#[derive(Debug)]
pub enum Failure {
    Broken(Broken),
    Io(io::Error),
    /// The record callback stopped the read (the run ended).
    Stopped(crate::error::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        // A decoder's complaints are the file's; anything else is the disk's.
        match e.kind() {
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof => Failure::Broken(Broken {
                message: format!("cannot be decompressed: {e}"),
            }),
            _ => Failure::Io(e),
        }
    }
}

/// One record as the file holds it.
pub enum Record<'a> {
    /// A JSON value's text (an element, an object, an NDJSON line).
    Json(&'a [u8]),
    /// A CSV record's fields, by the header's names (already matched to the fields).
    Csv(&'a [Option<&'a str>]),
    /// A record that cannot be taken apart (a CSV line of the wrong shape), and why.
    Misfit(&'a str),
}

/// A record and where it is.
pub struct Located<'a> {
    pub record: Record<'a>,
    /// The line it starts on, from 1.
    pub line: u64,
    /// Its position among the file's records, from 0.
    pub index: u64,
}

/// How one file is read.
pub struct Format<'a> {
    pub format: FileFormat,
    pub compression: FileCompression,
    /// `json`: the keys leading to the records.
    pub records_at: &'a [String],
    pub delimiter: u8,
    /// The record's fields, to match CSV headers to.
    pub fields: Vec<String>,
}

/// Counts and hashes the bytes read through it: the file's identity is the hash of
/// what it holds, compressed as it is.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    pub bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads what is left (a format may stop before the end) and returns the hex SHA-256
    /// and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let digest = self.hasher.finalize();
        Ok((hex(&digest), self.bytes))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const BUFFER: usize = 256 << 10;

/// Reads `raw` (a file's bytes) as `format`, calling `each` for every record in order.
pub fn records(
    raw: &mut dyn Read,
    name: &str,
    format: &Format<'_>,
    each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
) -> Result<(), Failure> {
    let compression = match format.compression {
        FileCompression::Auto if name.ends_with(".gz") || name.ends_with(".gzip") => {
            FileCompression::Gzip
        }
        FileCompression::Auto if name.ends_with(".zst") || name.ends_with(".zstd") => {
            FileCompression::Zstd
        }
        FileCompression::Auto => FileCompression::None,
        other => other,
    };
    let plain: Box<dyn Read + '_> = match compression {
        FileCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            BufReader::with_capacity(BUFFER, raw),
        )),
        FileCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
        _ => Box::new(raw),
    };
    let mut input = BufReader::with_capacity(BUFFER, plain);
    // A UTF-8 byte order mark is not content.
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    let format_of = match format.format {
        FileFormat::Auto => sniff(&mut input)?,
        f => f,
    };
    match format_of {
        FileFormat::Csv => csv(input, format, each),
        FileFormat::Ndjson => ndjson(input, each),
        _ => Scanner::new(input).document(format.records_at, each),
    }
}

/// `auto`: JSON when the first character is `{` or `[` (NDJSON when the first line is a
/// whole object), CSV otherwise.
fn sniff(input: &mut BufReader<Box<dyn Read + '_>>) -> Result<FileFormat, Failure> {
    let head = input.fill_buf()?;
    let start = head.iter().position(|b| !b.is_ascii_whitespace());
    Ok(match start.map(|i| head[i]) {
        Some(b'[') => FileFormat::Json,
        Some(b'{') => {
            let line_end = head[start.unwrap_or(0)..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + start.unwrap_or(0));
            match line_end {
                Some(end)
                    if serde_json::from_slice::<serde::de::IgnoredAny>(&head[..end]).is_ok() =>
                {
                    FileFormat::Ndjson
                }
                _ => FileFormat::Json,
            }
        }
        None => FileFormat::Json,
        _ => FileFormat::Csv,
    })
}

fn ndjson(
    mut input: impl BufRead,
    each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
) -> Result<(), Failure> {
    let mut line = Vec::with_capacity(4096);
    let (mut number, mut index) = (0u64, 0u64);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        each(Located {
            record: Record::Json(text),
            line: number,
            index,
        })
        .map_err(Failure::Stopped)?;
        index += 1;
    }
}

fn csv(
    input: impl BufRead,
    format: &Format<'_>,
    each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
) -> Result<(), Failure> {
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let broken = |e: ::csv::Error| {
        let (offset, line) = e.position().map_or((0, 0), |p| (p.byte(), p.line()));
        match e.into_kind() {
            ::csv::ErrorKind::Io(io) => Failure::from(io),
            kind => Failure::Broken(Broken::at(offset, line, format!("{kind:?}"))),
        }
    };
    let headers = reader.byte_headers().map_err(broken)?.clone();
    let headers: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(Failure::Broken(Broken::at(
            0,
            1,
            "the CSV file has no header line (its first line names the columns)",
        )));
    }
    // Each field's column, matched as JSON keys are (`TruckId` finds `truck_id`).
    let columns: Vec<Option<usize>> = format
        .fields
        .iter()
        .map(|f| {
            headers.iter().position(|h| h == f).or_else(|| {
                let want = folded(f);
                headers.iter().position(|h| folded(h) == want)
            })
        })
        .collect();
    let mut record = ::csv::ByteRecord::new();
    let mut index = 0u64;
    while reader.read_byte_record(&mut record).map_err(broken)? {
        let line = record.position().map_or(0, |p| p.line());
        let mut values: Vec<Option<&str>> = Vec::with_capacity(columns.len());
        let mut bad = None;
        for column in &columns {
            let text = match column.and_then(|c| record.get(c)) {
                None => None,
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        bad = Some("a field is not UTF-8 text");
                        None
                    }
                },
            };
            values.push(text);
        }
        if record.len() != headers.len() && bad.is_none() {
            bad = Some("the line has another number of fields than the header");
        }
        let located = Located {
            record: Record::Csv(&values),
            line,
            index,
        };
        match bad {
            Some(reason) => each(Located {
                record: Record::Misfit(reason),
                ..located
            }),
            None => each(located),
        }
        .map_err(Failure::Stopped)?;
        index += 1;
    }
    Ok(())
}

/// A streaming JSON reader that finds the records and hands each one's text on.
struct Scanner<R> {
    input: R,
    offset: u64,
    line: u64,
    raw: Vec<u8>,
    index: u64,
}

impl<R: BufRead> Scanner<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            offset: 0,
            line: 1,
            raw: Vec::with_capacity(4096),
            index: 0,
        }
    }

    fn broken(&self, what: impl std::fmt::Display) -> Failure {
        Failure::Broken(Broken::at(self.offset, self.line, what))
    }

    fn bump(&mut self) {
        if let Ok([b, ..]) = self.input.fill_buf() {
            if *b == b'\n' {
                self.line += 1;
            }
            self.input.consume(1);
            self.offset += 1;
        }
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, Failure> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            let next = buf.get(n).copied();
            self.input.consume(n);
            self.offset += n as u64;
            self.line += lines;
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), Failure> {
        match self.skip_ws()? {
            Some(b) if b == want => {
                self.bump();
                Ok(())
            }
            Some(b) => Err(self.broken(format!("expected {what}, found `{}`", b as char))),
            None => Err(self.broken(format!(
                "the file ends where {what} was expected (is it cut short?)"
            ))),
        }
    }

    /// The top level: one value after another (a document, or objects in a row), each
    /// an object holding records at `path`, a record, or an array of records.
    fn document(
        &mut self,
        path: &[String],
        each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
    ) -> Result<(), Failure> {
        let mut any = false;
        while self.skip_ws()?.is_some() {
            self.records_at(path, each)?;
            any = true;
        }
        if !any {
            return Err(self.broken("the file is empty (a JSON file holds at least `[]`)"));
        }
        Ok(())
    }

    fn records_at(
        &mut self,
        path: &[String],
        each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
    ) -> Result<(), Failure> {
        let Some((key, rest)) = path.split_first() else {
            return match self.skip_ws()? {
                Some(b'[') => {
                    self.bump();
                    if self.skip_ws()? == Some(b']') {
                        self.bump();
                        return Ok(());
                    }
                    loop {
                        self.record(each)?;
                        match self.skip_ws()? {
                            Some(b',') => self.bump(),
                            Some(b']') => {
                                self.bump();
                                return Ok(());
                            }
                            Some(b) => {
                                return Err(self.broken(format!(
                                    "expected `,` or `]` after a record, found `{}`",
                                    b as char
                                )));
                            }
                            None => {
                                return Err(self.broken(
                                    "the file ends inside the array of records (is it cut short?)",
                                ));
                            }
                        }
                    }
                }
                Some(b'{') => self.record(each),
                Some(b) => Err(self.broken(format!(
                    "expected a JSON object or an array of them, found `{}`",
                    b as char
                ))),
                None => Err(self.broken("the file ends where records were expected")),
            };
        };
        self.expect(b'{', &format!("an object holding `{key}`"))?;
        let mut found = false;
        if self.skip_ws()? == Some(b'}') {
            self.bump();
        } else {
            loop {
                let name = self.key()?;
                self.expect(b':', "`:` after a key")?;
                if name == *key {
                    self.records_at(rest, each)?;
                    found = true;
                } else {
                    self.value(false)?;
                }
                match self.skip_ws()? {
                    Some(b',') => self.bump(),
                    Some(b'}') => {
                        self.bump();
                        break;
                    }
                    Some(b) => {
                        return Err(self.broken(format!(
                            "expected `,` or `}}` in an object, found `{}`",
                            b as char
                        )));
                    }
                    None => return Err(self.broken("the file ends inside an object")),
                }
            }
        }
        if !found {
            return Err(self.broken(format!(
                "the object has no key `{key}` (source.files.records names where the records are)"
            )));
        }
        Ok(())
    }

    /// An object key.
    fn key(&mut self) -> Result<String, Failure> {
        if self.skip_ws()? != Some(b'"') {
            return Err(self.broken("expected an object key (a string)"));
        }
        self.raw.clear();
        self.value(true)?;
        serde_json::from_slice::<String>(&self.raw)
            .map_err(|e| self.broken(format!("a key is not valid: {e}")))
    }

    /// One record: its text, handed to `each`.
    fn record(
        &mut self,
        each: &mut dyn FnMut(Located<'_>) -> Result<(), crate::error::Error>,
    ) -> Result<(), Failure> {
        self.skip_ws()?;
        let line = self.line;
        self.raw.clear();
        self.value(true)?;
        let index = self.index;
        self.index += 1;
        each(Located {
            record: Record::Json(&self.raw),
            line,
            index,
        })
        .map_err(Failure::Stopped)
    }

    /// Passes over one value (keeping its text in `raw` when `keep`): strings with
    /// their escapes, nested objects and arrays, or a scalar up to its delimiter.
    fn value(&mut self, keep: bool) -> Result<(), Failure> {
        self.skip_ws()?;
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut started = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Err(self.broken("the file ends inside a value (is it cut short?)"));
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    b if b.is_ascii_whitespace() && depth == 0 && started => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
                started = true;
            }
            let n = end.unwrap_or(buf.len());
            if keep {
                self.raw.extend_from_slice(&buf[..n]);
            }
            self.line += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            self.input.consume(n);
            self.offset += n as u64;
            if end.is_some() {
                if n == 0 && !started {
                    return Err(self.broken("expected a value"));
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        text: &[u8],
        format: FileFormat,
        path: &[&str],
        name: &str,
    ) -> Result<Vec<(String, u64, u64)>, String> {
        let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        let format = Format {
            format,
            compression: FileCompression::Auto,
            records_at: &path,
            delimiter: b',',
            fields: vec!["id".into(), "amount".into()],
        };
        let mut out = Vec::new();
        let mut raw = text;
        records(&mut raw, name, &format, &mut |r| {
            let text = match r.record {
                Record::Json(t) => String::from_utf8_lossy(t).to_string(),
                Record::Csv(values) => values
                    .iter()
                    .map(|v| v.unwrap_or("∅"))
                    .collect::<Vec<_>>()
                    .join("|"),
                Record::Misfit(why) => why.to_string(),
            };
            out.push((text, r.line, r.index));
            Ok(())
        })
        .map_err(|e| match e {
            Failure::Broken(b) => b.message,
            other => format!("{other:?}"),
        })?;
        Ok(out)
    }

    fn texts(r: Result<Vec<(String, u64, u64)>, String>) -> Vec<String> {
        r.unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(t, _, _)| t)
            .collect()
    }

    #[test]
    fn json_in_every_shape() {
        let one = texts(read(b"{\"id\": 1}", FileFormat::Json, &[], "a.json"));
        assert_eq!(one, ["{\"id\": 1}"]);
        let array = read(
            b"[\n {\"id\": 1, \"s\": \"a,]}\\\"\"},\n {\"id\": [2]}\n]",
            FileFormat::Auto,
            &[],
            "a.json",
        );
        assert_eq!(
            array.unwrap_or_else(|e| panic!("{e}")),
            [
                ("{\"id\": 1, \"s\": \"a,]}\\\"\"}".to_string(), 2, 0),
                ("{\"id\": [2]}".to_string(), 3, 1)
            ]
        );
        let nested = texts(read(
            b"{\"bank\": {\"x\": [1, {\"a\": 2}]}, \"transactions\": [{\"id\": 1}, 7], \"n\": 2}",
            FileFormat::Auto,
            &["transactions"],
            "a.json",
        ));
        assert_eq!(nested, ["{\"id\": 1}", "7"]);
        assert_eq!(
            texts(read(b"[]", FileFormat::Json, &[], "a.json")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn ndjson_is_a_line_at_a_time_and_a_bad_line_is_the_records() {
        let lines = read(
            b"{\"id\": 1}\n\n{\"id\": 2, oops\n{\"id\": 3}\n",
            FileFormat::Auto,
            &[],
            "a.ndjson",
        );
        assert_eq!(
            lines.unwrap_or_else(|e| panic!("{e}")),
            [
                ("{\"id\": 1}".to_string(), 1, 0),
                ("{\"id\": 2, oops".to_string(), 3, 1),
                ("{\"id\": 3}".to_string(), 4, 2)
            ]
        );
    }

    #[test]
    fn csv_by_header_names() {
        let rows = texts(read(
            b"Amount,ID\n1.5,7\n,8\n\"2,5\",9,extra\n",
            FileFormat::Auto,
            &[],
            "a.csv",
        ));
        assert_eq!(
            rows,
            [
                "7|1.5",
                "8|",
                "the line has another number of fields than the header"
            ]
        );
    }

    #[test]
    fn broken_files_say_where() {
        let cut = read(b"[{\"id\": 1}, {\"id\": 2", FileFormat::Json, &[], "a.json");
        assert!(
            cut.as_ref().is_err_and(|e| e.contains("cut short")),
            "{cut:?}"
        );
        let html = read(b"<html>", FileFormat::Json, &[], "a.json");
        assert!(
            html.as_ref().is_err_and(|e| e.contains("byte 0")),
            "{html:?}"
        );
        let missing = read(
            b"{\"other\": []}",
            FileFormat::Json,
            &["transactions"],
            "a.json",
        );
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.contains("no key `transactions`")),
            "{missing:?}"
        );
        let gz = read(
            b"\x1f\x8b\x08\x00garbage",
            FileFormat::Json,
            &[],
            "a.json.gz",
        );
        assert!(
            gz.as_ref().is_err_and(|e| e.contains("decompressed")),
            "{gz:?}"
        );
    }

    #[test]
    fn compressed_files_are_read_through() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"[{\"id\": 1}]").unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        assert_eq!(
            texts(read(&gz, FileFormat::Auto, &[], "b.json.gz")),
            ["{\"id\": 1}"]
        );
        let zst = zstd::encode_all(&b"{\"id\": 2}\n"[..], 1).unwrap_or_default();
        assert_eq!(
            texts(read(&zst, FileFormat::Auto, &[], "b.ndjson.zst")),
            ["{\"id\": 2}"]
        );
    }
}

use super::*;

#[test]
fn record_paths_are_object_keys() {
    assert_eq!(keys("$.transactions"), Ok(vec!["transactions".to_string()]));
    assert_eq!(
        keys("$.data.items"),
        Ok(vec!["data".to_string(), "items".to_string()])
    );
    assert_eq!(keys("$"), Ok(Vec::new()));
    assert!(keys("$.data[*]").is_err());
    assert!(keys("$..x").is_err());
}

/// Compiles a job whose `source.files` is `files`; the feed and every problem.
fn compile(files: &str) -> (Option<FilesFeed>, Vec<String>) {
    // Read as the job loader reads a row: YAML to JSON, then the spec.
    let text = format!(
        "job: bank\nsource:\n  connection: bank\n  files: {files}\ntarget:\n  table: bank\n  schema: [{{name: id, type: bigint}}]\n"
    );
    let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let spec: JobSpec = serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"));
    let schema = crate::contract::compile(spec.target.schema.as_deref().unwrap_or_default())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let feed = compile_feed(&spec, Some(&schema), &mut |p, m| {
        problems.push(format!("{p}: {m}"))
    });
    (feed, problems)
}

#[test]
fn one_pattern_as_before_or_several_each_with_its_format() {
    let (feed, problems) = compile("{pattern: 'in/*.json', format: ndjson}");
    assert_eq!(problems, Vec::<String>::new());
    let feed = feed.unwrap_or_else(|| panic!("no feed"));
    assert_eq!(feed.patterns.len(), 1);
    assert_eq!(feed.patterns[0].format, FileFormat::Ndjson);
    assert_eq!(feed.identity, Identity::Listing);

    let (feed, problems) = compile(
        "{records: $.transactions, identity: content, patterns: [{pattern: 'st/**/*.json'}, {pattern: 'st/**/*.json.gz', compression: gzip}, {pattern: 'st/*/*.ndjson*', format: ndjson}]}",
    );
    let feed = feed.unwrap_or_else(|| panic!("{problems:?}"));
    assert_eq!(feed.identity, Identity::Content);
    let json = feed
        .pattern_of("st/2026/11/a.json")
        .unwrap_or_else(|| panic!("unmatched"));
    assert_eq!(json.records_at, ["transactions"]);
    assert_eq!(json.format, FileFormat::Auto);
    let gz = feed
        .pattern_of("st/a.json.gz")
        .unwrap_or_else(|| panic!("unmatched"));
    assert_eq!(gz.compression, FileCompression::Gzip);
    let lines = feed
        .pattern_of("st/11/a.ndjson.gz")
        .unwrap_or_else(|| panic!("unmatched"));
    assert_eq!(lines.format, FileFormat::Ndjson);
    assert!(lines.records_at.is_empty());
    assert!(feed.pattern_of("st/11/x/a.ndjson").is_none());
}

#[test]
fn overlapping_or_doubled_patterns_are_refused_by_name() {
    let (_, problems) = compile("{patterns: [{pattern: 'in/*.json*'}, {pattern: 'in/*.json.gz'}]}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("source.files.patterns[1].pattern: ")
                && p.contains("source.files.patterns[0]")
                && p.contains("both match \"in/.json.gz\"")),
        "{problems:?}"
    );
    let (_, problems) = compile("{pattern: 'a/*', patterns: [{pattern: 'b/*'}]}");
    assert!(
        problems[0].starts_with("source.files.patterns: is given beside `pattern`"),
        "{problems:?}"
    );
    let (_, problems) = compile(
        "{records: $.x, patterns: [{pattern: 'a/*.json'}, {pattern: 'a/*.csv', format: csv, records: $.y}]}",
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("source.files.patterns[1].records: is for format `json`")),
        "{problems:?}"
    );
    let (_, problems) = compile("{pattern: 'st/**/*.json', after_load: {move: st/processed}}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("source.files.after_load.move: ")),
        "{problems:?}"
    );
}

#[test]
fn fingerprints_are_openssh_sha256() {
    assert!(is_fingerprint(
        "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
    ));
    assert!(!is_fingerprint("SHA256:short"));
    assert!(!is_fingerprint(
        "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"
    ));
}

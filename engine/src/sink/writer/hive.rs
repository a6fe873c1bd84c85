//! Hive's partition folders: a value's escaping in a path, and back.

/// The folder name of a NULL (or empty) partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Hive's escaping of partition values: characters that mean something in a path or to
/// Hive become `%XX`.
pub fn escape_partition_value(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str(HIVE_NULL);
        return;
    }
    for c in value.chars() {
        if c.is_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// Undoes Hive's `%XX` escaping of a partition value.
pub fn unescape_partition_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

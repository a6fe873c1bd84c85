//! `${VAR}` placeholders in connection settings, filled from a connection's secret or the
//! environment, and which of the values put in are secrets that messages must not show.
//!
//! Only a secret is scrubbed: a value placed in a secret field (a password, a token, a
//! client secret, an API key; [`resolve_secret`]) or in a URL's secret parts (its
//! user-info or its query; [`resolve_url`]). A host, a port or a path from a variable is
//! shown, so that an error still says which server failed.

use crate::error::{Error, Result};

/// One placeholder's value and where it landed in the filled text (byte offsets).
struct Filled {
    value: String,
    start: usize,
    end: usize,
}

/// Fills `${VAR}` placeholders of a connection URL. Returns the URL and the values to
/// scrub from any message: a value in the URL's user-info (`user:${PW}@host`) or query
/// (`?key=${KEY}`), and, of a value that is a whole URL (`${DATABASE_URL}`), its password
/// and its query. A host, port or path from a variable is not a secret: it is shown.
pub fn resolve_url(
    template: &str,
    connection: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>)> {
    let (out, filled) = fill(template, connection, env)?;
    let parts = UrlParts::of(&out);
    let mut secrets = Vec::new();
    for f in filled {
        if f.value.contains("://") {
            secrets.extend(whole_url_secrets(&f.value));
        } else if parts.is_secret(f.start, f.end) {
            secrets.push(f.value);
        }
    }
    Ok((out, secrets))
}

/// Fills `${VAR}` placeholders of a secret field (a password, a token, a client secret,
/// an API key, a private key): every value put in is returned to be scrubbed.
pub fn resolve_secret(
    template: &str,
    connection: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>)> {
    let (out, filled) = fill(template, connection, env)?;
    Ok((out, filled.into_iter().map(|f| f.value).collect()))
}

/// Fills the placeholders; returns the text and where each non-empty value went.
fn fill(
    template: &str,
    connection: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Filled>)> {
    let mut out = String::with_capacity(template.len());
    let mut filled = Vec::new();
    let mut missing = Vec::new();
    // Values that land in the user-info (`user:${PW}@host`) are percent-escaped so that a
    // password may hold `@` or `/`; elsewhere (a host, or the whole URL in one variable)
    // they are taken as they are.
    let user_info_end = template
        .find("://")
        .and_then(|scheme| template[scheme + 3..].find('@').map(|at| scheme + 3 + at));
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let in_user_info =
            user_info_end.is_some_and(|end| template.len() - rest.len() + start < end);
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(Error::user(format!(
                "connection `{connection}`: unclosed `${{` in url"
            )));
        };
        let name = &rest[start + 2..start + len];
        match env(name) {
            Some(value) => {
                let at = out.len();
                if in_user_info {
                    out.push_str(&url_escape(&value));
                } else {
                    out.push_str(&value);
                }
                if !value.is_empty() {
                    filled.push(Filled {
                        value,
                        start: at,
                        end: out.len(),
                    });
                }
            }
            None => missing.push(name.to_string()),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Error::user(format!(
            "connection `{connection}` needs the environment variable{} {} (its url has ${{…}} placeholders)",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    Ok((out, filled))
}

/// The secret parts of a URL's text, as byte ranges: its user-info and its query (with
/// the fragment). Text that is not a URL has none.
struct UrlParts {
    user_info: Option<(usize, usize)>,
    query: Option<usize>,
}

impl UrlParts {
    fn of(text: &str) -> Self {
        let Some(scheme) = text.find("://") else {
            return Self {
                user_info: None,
                query: None,
            };
        };
        let authority = scheme + 3;
        let authority_end = text[authority..]
            .find(['/', '?', '#'])
            .map_or(text.len(), |i| authority + i);
        let user_info = text[authority..authority_end]
            .rfind('@')
            .map(|at| (authority, authority + at));
        let query = text[authority..].find(['?', '#']).map(|i| authority + i);
        Self { user_info, query }
    }

    /// Whether `start..end` touches the user-info or the query.
    fn is_secret(&self, start: usize, end: usize) -> bool {
        let in_user_info = self.user_info.is_some_and(|(a, b)| start < b && end > a);
        let in_query = self.query.is_some_and(|q| end > q);
        in_user_info || in_query
    }
}

/// The secrets of a whole URL held in one variable: its password (as written and
/// percent-decoded) and its query.
fn whole_url_secrets(url: &str) -> Vec<String> {
    let parts = UrlParts::of(url);
    let mut out = Vec::new();
    if let Some((a, b)) = parts.user_info
        && let Some((_, password)) = url[a..b].split_once(':')
        && !password.is_empty()
    {
        out.push(password.to_string());
        let decoded = percent_decode(password);
        if decoded != password {
            out.push(decoded);
        }
    }
    if let Some(q) = parts.query
        && url.len() > q + 1
    {
        out.push(url[q + 1..].to_string());
    }
    out
}

/// `%XX` escapes decoded (a malformed one is kept as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-escapes the characters that would break a URL's user-info or path, so that a
/// password such as `p@ss/word` works as a placeholder value.
pub fn url_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '@' | '/' | ':' | '?' | '#' | '%' | ' ' | '[' | ']' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Removes secret values from an error message.
pub fn redact(mut err: Error, secrets: &[String]) -> Error {
    for s in secrets {
        err.message = err
            .message
            .replace(s.as_str(), "***")
            .replace(&url_escape(s), "***");
    }
    if !secrets.is_empty() {
        // The driver error's own text may hold the URL: keep only our scrubbed message.
        err.source = None;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(template: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
        resolve_url(template, "sales", env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn placeholders_resolve_and_redact() {
        let env = |k: &str| (k == "PW").then(|| "s3cr@t".to_string());
        let (url, secrets) = resolved("postgres://u:${PW}@h/db", &env);
        assert_eq!(url, "postgres://u:s3cr%40t@h/db");
        let err = redact(Error::external(format!("cannot reach {url}")), &secrets);
        assert!(!err.message.contains("s3cr"), "{}", err.message);
        let whole = |k: &str| (k == "URL").then(|| "postgres://u:p@h:5432/db".to_string());
        let (url, _) = resolved("${URL}", &whole);
        assert_eq!(
            url, "postgres://u:p@h:5432/db",
            "a whole URL is taken as it is"
        );
        let host = |k: &str| (k == "HOST").then(|| "10.0.0.5:5432".to_string());
        let (url, _) = resolved("postgres://u@${HOST}/db", &host);
        assert_eq!(url, "postgres://u@10.0.0.5:5432/db");
        let missing = resolve_url("postgres://u:${NOPE}@h/db", "sales", &env);
        assert!(missing.is_err_and(|e| e.message.contains("NOPE")));
    }

    #[test]
    fn only_a_urls_secret_parts_are_secrets() {
        let env = |k: &str| match k {
            "HOST" => Some("db.internal:5432".to_string()),
            "USER" => Some("etl-user".to_string()),
            "PW" => Some("pw-value".to_string()),
            "KEY" => Some("key-value".to_string()),
            "API" => Some("https://api.partner.example/v2".to_string()),
            "DSN" => Some("postgres://etl:p%40ss-word@db.internal/sales?sslmode=require".into()),
            _ => None,
        };
        let (_, secrets) = resolved("postgres://${USER}:${PW}@${HOST}/db", &env);
        assert_eq!(secrets, ["etl-user", "pw-value"], "the host is shown");
        let (_, secrets) = resolved("${API}", &env);
        assert!(secrets.is_empty(), "a base URL is shown: {secrets:?}");
        let (_, secrets) = resolved("https://${HOST}/x?api_key=${KEY}", &env);
        assert_eq!(secrets, ["key-value"]);
        let (url, secrets) = resolved("${DSN}", &env);
        assert_eq!(secrets, ["p%40ss-word", "p@ss-word", "sslmode=require"]);
        let err = redact(Error::external(format!("cannot reach {url}")), &secrets);
        assert!(err.message.contains("db.internal"), "{}", err.message);
        assert!(!err.message.contains("ss-word"), "{}", err.message);
        let (_, secrets) = resolve_secret("${PW}", "sales", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secrets, ["pw-value"], "a secret field's value is a secret");
    }
}

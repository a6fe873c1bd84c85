//! REST requests (path, parameters, body, records, paginator) and SOAP operations,
//! compiled, and the `{name}` placeholders their templates hold.

use std::collections::BTreeMap;

use super::{
    BEFORE, CursorFrom, DEFAULT_MAX_PAGES, Next, PAGE_TOKEN, Paginate, Request, SINCE, Soap, UNTIL,
};
use crate::jsonpath::Path;
use crate::spec::http::{
    HttpMethod, PaginateKind, PaginateSpec, RequestSpec, SoapSpec, SoapVersion,
};

/// Compiles one REST request; `known` are the placeholders it may use.
pub(super) fn request(
    spec: &RequestSpec,
    at: &str,
    known: &[&str],
    bad: &mut impl FnMut(&str, String),
) -> Option<Request> {
    let post = spec.method == Some(HttpMethod::Post);
    if spec.body.is_some() && !post {
        bad(
            &format!("{at}.body"),
            "a body is sent with `method: POST`".into(),
        );
    }
    let mut texts = vec![(format!("{at}.path"), spec.path.clone())];
    for (k, v) in spec.params.iter().flatten() {
        texts.push((format!("{at}.params.{k}"), v.clone()));
    }
    if let Some(body) = &spec.body {
        texts.push((format!("{at}.body"), body.to_string()));
    }
    for (path, text) in &texts {
        for name in placeholders(text) {
            if !known.contains(&name) {
                bad(
                    path,
                    format!(
                        "placeholder `{{{name}}}` is not known here (known: {})",
                        known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    let records = match spec.records.as_deref() {
        None => Some(Path::root()),
        Some(text) => Path::parse(text)
            .map_err(|m| bad(&format!("{at}.records"), m))
            .ok(),
    };
    let paginate = match &spec.paginate {
        None => Some(Paginate {
            next: Next::Single,
            has_more: None,
            total: None,
            max_pages: DEFAULT_MAX_PAGES,
        }),
        Some(p) => paginate(p, &format!("{at}.paginate"), bad),
    };
    Some(Request {
        post,
        path: spec.path.clone(),
        params: spec
            .params
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        headers: spec
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        body: spec.body.clone(),
        records: records?,
        paginate: paginate?,
    })
}

fn paginate(spec: &PaginateSpec, at: &str, bad: &mut impl FnMut(&str, String)) -> Option<Paginate> {
    let kind = spec.kind;
    let given: [(&str, bool); 9] = [
        ("param", spec.param.is_some()),
        ("limit_param", spec.limit_param.is_some()),
        ("limit", spec.limit.is_some()),
        ("size_param", spec.size_param.is_some()),
        ("size", spec.size.is_some()),
        ("start", spec.start.is_some()),
        ("from", spec.from.is_some()),
        ("header", spec.header.is_some()),
        ("total", spec.total.is_some()),
    ];
    let takes: &[&str] = match kind {
        PaginateKind::Offset => &["param", "limit_param", "limit", "start", "total"],
        PaginateKind::Page => &["param", "size_param", "size", "start", "total"],
        PaginateKind::Cursor => &["param", "from", "header"],
        PaginateKind::NextUrl => &["from"],
        PaginateKind::Link => &[],
    };
    for (field, is_given) in given {
        if is_given && !takes.contains(&field) {
            bad(
                &format!("{at}.{field}"),
                format!(
                    "is not a field of paginator `{}`{}",
                    kind.name(),
                    if takes.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it takes {})",
                            takes
                                .iter()
                                .map(|f| format!("`{f}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            );
        }
    }
    let mut path = |field: &str, text: &Option<String>| {
        text.as_ref().and_then(|t| {
            Path::parse(t)
                .map_err(|m| bad(&format!("{at}.{field}"), m))
                .ok()
        })
    };
    let has_more = path("has_more", &spec.has_more);
    let total = path("total", &spec.total);
    let from = path("from", &spec.from);
    let mut param = || {
        spec.param.clone().or_else(|| {
            bad(
                &format!("{at}.param"),
                format!(
                    "missing: paginator `{}` needs the parameter that carries the {}",
                    kind.name(),
                    match kind {
                        PaginateKind::Offset => "offset (e.g. `offset`)",
                        PaginateKind::Page => "page number (e.g. `page`)",
                        _ => "cursor (e.g. `cursor`)",
                    }
                ),
            );
            None
        })
    };
    let next = match kind {
        PaginateKind::Offset => {
            let param = param()?;
            if spec.limit.is_some() != spec.limit_param.is_some() {
                bad(
                    &format!("{at}.limit"),
                    "`limit` and `limit_param` go together: the page size and the parameter that asks for it".into(),
                );
            }
            Next::Offset {
                param,
                limit_param: spec.limit_param.clone(),
                limit: spec.limit,
                start: spec.start.unwrap_or(0),
            }
        }
        PaginateKind::Page => {
            let param = param()?;
            if spec.size_param.is_some() && spec.size.is_none() {
                bad(
                    &format!("{at}.size"),
                    "missing: `size_param` asks for a page size; give it as `size`".into(),
                );
            }
            Next::Page {
                param,
                start: spec.start.unwrap_or(1),
                size_param: spec.size_param.clone(),
                size: spec.size,
            }
        }
        PaginateKind::Cursor => {
            let param = param()?;
            let from = match (from, &spec.header) {
                (Some(p), None) => CursorFrom::Body(p),
                (None, Some(h)) => CursorFrom::Header(h.clone()),
                _ => {
                    bad(
                        &format!("{at}.from"),
                        "paginator `cursor` takes the next cursor `from` a JSONPath in the body or from a `header` (one of them)".into(),
                    );
                    return None;
                }
            };
            Next::Cursor { param, from }
        }
        PaginateKind::NextUrl => Next::NextUrl {
            from: from.or_else(|| {
                bad(
                    &format!("{at}.from"),
                    "missing: paginator `next_url` needs the JSONPath of the next page's URL, e.g. `$.links.next`".into(),
                );
                None
            })?,
        },
        PaginateKind::Link => Next::Link,
    };
    let max_pages = spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
    if max_pages == 0 {
        bad(&format!("{at}.max_pages"), "must be at least 1".into());
    }
    Some(Paginate {
        next,
        has_more,
        total,
        max_pages,
    })
}

pub(super) fn soap(spec: &SoapSpec, bad: &mut impl FnMut(&str, String)) -> Option<Soap> {
    let envelope = spec.envelope.trim();
    if !envelope.contains("Envelope") || !envelope.contains("Body") {
        bad(
            "source.soap.envelope",
            "is not a SOAP envelope: it needs an `Envelope` element with a `Body`".into(),
        );
    }
    for name in placeholders(envelope) {
        if ![SINCE, UNTIL, BEFORE, PAGE_TOKEN].contains(&name) {
            bad(
                "source.soap.envelope",
                format!(
                    "placeholder `{{{name}}}` is not known (known: {{since}}, {{until}}, {{before}}, {{page_token}})"
                ),
            );
        }
    }
    let element_path = |field: &str, text: &str, bad: &mut dyn FnMut(&str, String)| {
        let parts: Vec<String> = text
            .trim_matches('/')
            .split('/')
            .map(|p| p.rsplit(':').next().unwrap_or(p).trim().to_string())
            .collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            bad(
                &format!("source.soap.{field}"),
                format!(
                    "{text:?} is not an element path: local names from the Body, separated by `/`, e.g. `GetTransactionsResponse/Transaction`"
                ),
            );
        }
        // A path may start at the Envelope or its Body; the search starts in the Body.
        let skip = parts
            .iter()
            .take_while(|p| p.as_str() == "Envelope" || p.as_str() == "Body")
            .count();
        parts[skip..].to_vec()
    };
    let records = element_path("records", &spec.records, bad);
    let next_token = spec
        .next_token
        .as_ref()
        .map(|t| element_path("next_token", t, bad));
    if next_token.is_some() && !envelope.contains("{page_token}") {
        bad(
            "source.soap.envelope",
            "has no `{page_token}` placeholder, but `next_token` pages the response: put it where the request takes the token".into(),
        );
    }
    if records.is_empty() {
        bad(
            "source.soap.records",
            "is empty: give the path of the record elements from the Body".into(),
        );
    }
    Some(Soap {
        v12: spec.version == Some(SoapVersion::V12),
        action: spec.action.clone(),
        path: spec.path.clone(),
        envelope: envelope.to_string(),
        records,
        next_token,
        max_pages: spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
    })
}

/// The `{name}` placeholders of a template (names of letters, digits and `_`).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len > 0
            && after[len..].starts_with('}')
            && open.checked_sub(1).is_none_or(|i| &rest[i..open] != "$")
        {
            out.push(&after[..len]);
        }
        rest = after;
    }
    out
}

/// Fills `{name}` placeholders from `values`, passing each through `escape`.
pub fn fill(
    text: &str,
    values: &BTreeMap<String, String>,
    escape: impl Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match values.get(&after[..len]) {
            Some(value) if len > 0 && after[len..].starts_with('}') => {
                out.push_str(&escape(value));
                rest = &after[len + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        assert_eq!(
            placeholders("/tags/{tag_id}/tx?from={since}&x=${ENV}&j={\"a\":1}"),
            ["tag_id", "since"]
        );
        let values = BTreeMap::from([("since".to_string(), "a&b".to_string())]);
        assert_eq!(
            fill("q={since}&{other}", &values, |v| v.replace('&', "%26")),
            "q=a%26b&{other}"
        );
    }
}

//! REST requests: one request followed through its pages, and parent/child listings.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use url::Url;

use super::client::{Body, Call, Client, excerpt, rest_verdict};
use super::{Page, Pages, Values};
use crate::error::{Error, Result};
use crate::job::http::{CursorFrom, Next, Parent, Request, fill};
use crate::source::records::ExactNumbers;

/// Where the next page is.
enum Step {
    /// The same request with this parameter (the offset, page number or cursor).
    Param(String, String),
    /// This URL, as it is.
    Url(Url),
    Done,
}

/// Follows one request through its pages, handing each to `pages`.
pub async fn walk(
    client: &Client,
    request: &Request,
    values: &Values,
    params: &[(String, String)],
    parent: Option<Arc<Map<String, Value>>>,
    pages: &Pages,
) -> Result<()> {
    let mut collect = |page: Page| {
        let pages = pages.clone();
        async move {
            pages
                .send(Ok(page))
                .await
                .map_err(|_| Error::internal("the decoder stopped"))
        }
    };
    follow(client, request, values, params, parent, &mut collect).await
}

async fn follow<F, Fut>(
    client: &Client,
    request: &Request,
    values: &Values,
    params: &[(String, String)],
    parent: Option<Arc<Map<String, Value>>>,
    each: &mut F,
) -> Result<()>
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let path = fill(&request.path, values, escape_path);
    let mut base = client.url(&path)?;
    {
        let mut query = base.query_pairs_mut();
        for (k, v) in &request.params {
            query.append_pair(k, &fill(v, values, str::to_string));
        }
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    if base.query() == Some("") {
        base.set_query(None);
    }
    let body = request.body.as_ref().map(|b| fill_json(b, values));
    let paginate = &request.paginate;
    let mut step = match &paginate.next {
        Next::Offset {
            param,
            limit_param,
            limit,
            start,
        } => {
            if let (Some(lp), Some(l)) = (limit_param, limit) {
                base.query_pairs_mut().append_pair(lp, &l.to_string());
            }
            Step::Param(param.clone(), start.to_string())
        }
        Next::Page {
            param,
            start,
            size_param,
            size,
        } => {
            if let (Some(sp), Some(s)) = (size_param, size) {
                base.query_pairs_mut().append_pair(sp, &s.to_string());
            }
            Step::Param(param.clone(), start.to_string())
        }
        _ => Step::Url(base.clone()),
    };
    let mut read: u64 = 0;
    let mut seen: HashSet<String> = HashSet::new();
    for number in 1.. {
        let (url, body) = match &step {
            Step::Done => break,
            Step::Url(url) => (url.clone(), body.clone()),
            Step::Param(name, value) => paged(&base, body.as_ref(), request.post, name, value),
        };
        if number > paginate.max_pages {
            return Err(Error::user(format!(
                "{} still has pages after paginate.max_pages ({}): raise it, or check the paginator",
                url, paginate.max_pages
            )));
        }
        if !seen.insert(format!("{url} {body:?}")) {
            return Err(Error::user(format!(
                "the paginator asked for {url} twice: the API returned the same next page again (check paginate.from / header)"
            )));
        }
        let call = Call {
            post: request.post,
            url: url.clone(),
            headers: request.headers.clone(),
            body: body.map(Body::Json),
        };
        let reply = client.send(&call, rest_verdict).await?;
        let value: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            client.redact(Error::user(format!(
                "{} answered what is not JSON ({e}): {}",
                call.url,
                excerpt(&reply.body)
            )))
        })?;
        let count = request.records.records(&value).len() as u64;
        read += count;
        let next = next_step(
            request,
            &step,
            &value,
            &reply.headers,
            &reply.url,
            count,
            read,
        );
        let exact = ExactNumbers::of(&reply.body, &value);
        each(Page {
            value,
            exact,
            records: request.records.clone(),
            parent: parent.clone(),
            origin: format!("{} {}", if request.post { "POST" } else { "GET" }, call.url),
        })
        .await?;
        step = next?;
    }
    Ok(())
}

/// The base request with the paging parameter: in the query, or for a POST with a body,
/// in the body.
fn paged(
    base: &Url,
    body: Option<&Value>,
    post: bool,
    name: &str,
    value: &str,
) -> (Url, Option<Value>) {
    match body {
        Some(Value::Object(fields)) if post => {
            let mut fields = fields.clone();
            let v = value
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(value));
            fields.insert(name.to_string(), v);
            (base.clone(), Some(Value::Object(fields)))
        }
        _ => {
            let mut url = base.clone();
            url.query_pairs_mut().append_pair(name, value);
            (url, body.cloned())
        }
    }
}

/// Decides the next page from this one.
fn next_step(
    request: &Request,
    step: &Step,
    page: &Value,
    headers: &reqwest::header::HeaderMap,
    url: &Url,
    count: u64,
    read: u64,
) -> Result<Step> {
    let paginate = &request.paginate;
    if count == 0 && !matches!(paginate.next, Next::Single) {
        return Ok(Step::Done);
    }
    if let Some(path) = &paginate.has_more
        && path.first(page) == Some(&Value::Bool(false))
    {
        return Ok(Step::Done);
    }
    if let Some(path) = &paginate.total {
        let total = path.first(page).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        match total {
            Some(total) if read >= total => return Ok(Step::Done),
            Some(_) => {}
            None => {
                return Err(Error::user(format!(
                    "{url}: paginate.total {path} finds no number in the response"
                )));
            }
        }
    }
    let current = |name: &str| match step {
        Step::Param(n, v) if n == name => v.parse::<u64>().ok(),
        _ => None,
    };
    Ok(match &paginate.next {
        Next::Single => Step::Done,
        Next::Offset { param, limit, .. } => {
            if limit.is_some_and(|l| count < u64::from(l)) {
                Step::Done
            } else {
                Step::Param(
                    param.clone(),
                    (current(param).unwrap_or(0) + count).to_string(),
                )
            }
        }
        Next::Page { param, size, .. } => {
            if size.is_some_and(|s| count < u64::from(s)) {
                Step::Done
            } else {
                Step::Param(param.clone(), (current(param).unwrap_or(0) + 1).to_string())
            }
        }
        Next::Cursor { param, from } => {
            let cursor = match from {
                CursorFrom::Body(path) => path.first(page).and_then(text),
                CursorFrom::Header(name) => headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            };
            match cursor.filter(|c| !c.is_empty()) {
                Some(c) => Step::Param(param.clone(), c),
                None => Step::Done,
            }
        }
        Next::NextUrl { from } => match from.first(page).and_then(text).filter(|u| !u.is_empty()) {
            Some(next) => Step::Url(url.join(&next).map_err(|e| {
                Error::user(format!(
                    "{url}: the next page's URL {next:?} is not a URL: {e}"
                ))
            })?),
            None => Step::Done,
        },
        Next::Link => match link_next(headers) {
            Some(next) => Step::Url(url.join(&next).map_err(|e| {
                Error::user(format!(
                    "{url}: the Link header's next {next:?} is not a URL: {e}"
                ))
            })?),
            None => Step::Done,
        },
    })
}

/// A placeholder's value in a path: one segment, percent-escaped.
fn escape_path(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `rel="next"` target of RFC 8288 `Link` headers.
fn link_next(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\""
                    || p == "rel=next"
                    || p.strip_prefix("rel=\"")
                        .is_some_and(|r| r.trim_end_matches('"').split(' ').any(|r| r == "next"))
            });
            is_next.then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
}

/// Fills `{name}` placeholders in a JSON body's strings; a string that is one
/// placeholder of a number-looking value stays text (the API's type is unknown).
fn fill_json(value: &Value, values: &Values) -> Value {
    match value {
        Value::String(s) => Value::String(fill(s, values, str::to_string)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_json(v, values)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill_json(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Lists the parents, then runs the child request for each, `concurrency` at once; the
/// children's pages are handed on in the parents' order.
pub async fn children(
    client: &Arc<Client>,
    parent: &Parent,
    child: &Request,
    values: &Values,
    params: &[(String, String)],
    pages: &Pages,
) -> Result<()> {
    let mut parents: Vec<Map<String, Value>> = Vec::new();
    let mut list = |page: Page| {
        let found: Vec<Map<String, Value>> = page
            .records
            .records(&page.value)
            .into_iter()
            .map(|record| {
                parent
                    .fields
                    .iter()
                    .map(|(name, path)| {
                        (
                            name.clone(),
                            path.first(record).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect()
            })
            .collect();
        parents.extend(found);
        async { Ok(()) }
    };
    follow(client, &parent.request, values, &[], None, &mut list).await?;
    tracing::info!(parents = parents.len(), "listed the parents");
    let mut listings = futures::stream::iter(parents.into_iter().map(|fields| {
        let client = client.clone();
        let child = child.clone();
        let mut values = values.clone();
        let params = params.to_vec();
        async move {
            for (name, value) in &fields {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => {
                        return Err(Error::user(format!(
                            "a parent record has no `{name}` (source.parent.fields): {}",
                            Value::Object(fields.clone())
                        )));
                    }
                    other => other.to_string(),
                };
                values.insert(name.clone(), text);
            }
            let parent = Arc::new(fields);
            let mut got = Vec::new();
            let mut keep = |page: Page| {
                got.push(page);
                async { Ok(()) }
            };
            follow(&client, &child, &values, &params, Some(parent), &mut keep).await?;
            Ok::<_, Error>(got)
        }
    }))
    .buffered(client.concurrency)
    .into_stream();
    while let Some(listing) = listings.try_next().await? {
        for page in listing {
            pages
                .send(Ok(page))
                .await
                .map_err(|_| Error::internal("the decoder stopped"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static(
                "<https://api/x?page=1>; rel=\"first\", <https://api/x?page=3>; rel=\"next\"",
            ),
        );
        assert_eq!(link_next(&h).as_deref(), Some("https://api/x?page=3"));
        h.remove(reqwest::header::LINK);
        assert_eq!(link_next(&h), None);
    }
}

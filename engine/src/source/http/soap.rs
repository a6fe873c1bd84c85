//! SOAP 1.1 and 1.2: the job's envelope filled with the window and the page token (and
//! a WS-Security UsernameToken), posted; the response's records found by their element
//! path from the Body, each element's children becoming the record's fields; a `Fault`
//! classified — the client's (`Client` / `Sender`) is the job's error, the server's
//! (`Server` / `Receiver`) is retried and then retryable. The UsernameToken is signed for
//! each attempt (a new nonce and `Created`): a retry after `Server.Busy` is not a
//! replay, which WS-Security services refuse.

use serde_json::{Map, Value};

use super::client::{Body, Call, Client, Reply, Verdict, excerpt, rest_verdict};
use super::{Page, Pages, Values};
use crate::error::{Error, Result};
use crate::job::http::{Auth, PAGE_TOKEN, Soap, fill};
use crate::source::records::ExactNumbers;

/// Walks the operation's pages.
pub async fn walk(client: &Client, operation: &Soap, values: &Values, pages: &Pages) -> Result<()> {
    let url = match &operation.path {
        Some(path) => client.url(path)?,
        None => client.base.clone(),
    };
    let mut values = values.clone();
    values.insert(PAGE_TOKEN.to_string(), String::new());
    let mut seen = std::collections::HashSet::new();
    for number in 1.. {
        if number > operation.max_pages {
            return Err(Error::user(format!(
                "{url} still has pages after soap.max_pages ({})",
                operation.max_pages
            )));
        }
        let envelope = fill(&operation.envelope, &values, |v| {
            quick_xml::escape::escape(v).into_owned()
        });
        let (content_type, headers) = match (operation.v12, &operation.action) {
            (false, action) => (
                "text/xml; charset=utf-8".to_string(),
                vec![(
                    "SOAPAction".to_string(),
                    format!("\"{}\"", action.as_deref().unwrap_or_default()),
                )],
            ),
            (true, Some(action)) => (
                format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
                Vec::new(),
            ),
            (true, None) => (
                "application/soap+xml; charset=utf-8".to_string(),
                Vec::new(),
            ),
        };
        let body = match &client.auth {
            Some(Auth::WsSecurity {
                username,
                password,
                digest,
            }) => {
                let (username, password, digest) = (username.clone(), password.clone(), *digest);
                Body::PerAttempt {
                    content_type,
                    make: Box::new(move || with_security(&envelope, &username, &password, digest)),
                }
            }
            _ => Body::Text {
                content_type,
                text: envelope,
            },
        };
        let call = Call {
            post: true,
            url: url.clone(),
            headers,
            body: Some(body),
        };
        let reply = client.send(&call, verdict).await?;
        let document = parse(&reply.body).map_err(|m| {
            Error::user(format!(
                "{url} answered what is not a SOAP envelope ({m}): {}",
                excerpt(&reply.body)
            ))
        })?;
        let body = document
            .child("Body")
            .ok_or_else(|| Error::user(format!("{url}: the response has no SOAP Body")))?;
        let records: Vec<Value> = body
            .find(&operation.records)
            .iter()
            .map(|e| e.to_value())
            .collect();
        let token = operation
            .next_token
            .as_ref()
            .and_then(|path| body.find(path).first().map(|e| e.text.trim().to_string()))
            .filter(|t| !t.is_empty());
        let count = records.len();
        pages
            .send(Ok(Page {
                // XML is text: its values are read from their text, exactly.
                exact: ExactNumbers::default(),
                value: Value::Array(records),
                records: crate::jsonpath::Path::root(),
                parent: None,
                origin: format!("SOAP {url} page {number}"),
            }))
            .await
            .map_err(|_| Error::internal("the decoder stopped"))?;
        match token {
            Some(token) if count > 0 => {
                if !seen.insert(token.clone()) {
                    return Err(Error::user(format!(
                        "{url} returned the page token {token:?} twice: the pages would never end"
                    )));
                }
                values.insert(PAGE_TOKEN.to_string(), token);
            }
            _ => break,
        }
    }
    Ok(())
}

/// A SOAP response's verdict: a Fault says whose it is, whatever the status.
fn verdict(status: u16, reply: &Reply) -> Verdict {
    if let Ok(document) = parse(&reply.body)
        && let Some(fault) = document.child("Body").and_then(|b| b.child("Fault"))
    {
        // 1.1: faultcode / faultstring; 1.2: Code/Value / Reason/Text.
        let code = fault
            .child("faultcode")
            .map(|c| c.text.trim().to_string())
            .or_else(|| {
                fault
                    .child("Code")
                    .and_then(|c| c.child("Value"))
                    .map(|v| v.text.trim().to_string())
            })
            .unwrap_or_default();
        let text = fault
            .child("faultstring")
            .map(|s| s.text.trim().to_string())
            .or_else(|| {
                fault
                    .child("Reason")
                    .and_then(|r| r.child("Text"))
                    .map(|t| t.text.trim().to_string())
            })
            .unwrap_or_default();
        let local = code.rsplit(':').next().unwrap_or(&code);
        let local = local.split('.').next().unwrap_or(local);
        return match local {
            "Server" | "Receiver" => Verdict::Retry(format!("SOAP server fault {code}: {text}")),
            _ => Verdict::Fail(Error::user(format!(
                "SOAP fault {code} (the request's): {text}"
            ))),
        };
    }
    rest_verdict(status, reply)
}

/// Adds a WS-Security UsernameToken header (OASIS WSS 1.0) to the envelope.
fn with_security(envelope: &str, username: &str, password: &str, digest: bool) -> Result<String> {
    use base64::Engine;
    use sha1::Digest;
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce = uuid::Uuid::new_v4().into_bytes();
    let created = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    let (kind, value) = if digest {
        let mut h = sha1::Sha1::new();
        h.update(nonce);
        h.update(created.as_bytes());
        h.update(password.as_bytes());
        ("PasswordDigest", b64.encode(h.finalize()))
    } else {
        ("PasswordText", password.to_string())
    };
    const WSSE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    const WSU: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
    const PROFILE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0";
    let security = format!(
        r#"<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password Type="{PROFILE}#{kind}">{}</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"#,
        esc(username),
        esc(&value),
        b64.encode(nonce),
    );
    // Into the Header (made when the envelope has none), before the Body.
    let tag = |name: &str| {
        find_tag(envelope, name).ok_or_else(|| {
            Error::user(format!(
                "source.soap.envelope has no `{name}` element to put the WS-Security header in"
            ))
        })
    };
    if let Some((start, end, prefix, empty)) = find_tag(envelope, "Header") {
        return Ok(if empty {
            format!(
                "{}<{prefix}Header>{security}</{prefix}Header>{}",
                &envelope[..start],
                &envelope[end..]
            )
        } else {
            format!("{}{security}{}", &envelope[..end], &envelope[end..])
        });
    }
    let (start, _, prefix, _) = tag("Body")?;
    Ok(format!(
        "{}<{prefix}Header>{security}</{prefix}Header>{}",
        &envelope[..start],
        &envelope[start..]
    ))
}

/// The first opening tag of a local name: (start, end of the tag, prefix with `:`,
/// self-closing).
fn find_tag(text: &str, local: &str) -> Option<(usize, usize, String, bool)> {
    let mut from = 0;
    while let Some(at) = text[from..].find('<') {
        let start = from + at;
        let rest = &text[start + 1..];
        let name_len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.rsplit(':').next() == Some(local) && !name.starts_with('/') {
            let end = start + 1 + rest.find('>')? + 1;
            let prefix = name.strip_suffix(local).unwrap_or("").to_string();
            let empty = text[..end].ends_with("/>");
            return Some((start, end, prefix, empty));
        }
        from = start + 1;
    }
    None
}

/// An element: its local name, its children, its text, and whether it is `xsi:nil`.
#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
    nil: bool,
}

impl Element {
    fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == local)
    }

    /// The elements at `path` (local names) below this one.
    fn find(&self, path: &[String]) -> Vec<&Element> {
        let mut level = vec![self];
        for name in path {
            level = level
                .into_iter()
                .flat_map(|e| e.children.iter().filter(|c| &c.name == name))
                .collect();
        }
        level
    }

    /// As a JSON value: text (or null when nil) for a leaf, an object of the children
    /// for the rest (a name repeated becomes an array).
    fn to_value(&self) -> Value {
        if self.nil {
            return Value::Null;
        }
        if self.children.is_empty() {
            return Value::String(self.text.clone());
        }
        let mut object = Map::new();
        for child in &self.children {
            let value = child.to_value();
            match object.get_mut(&child.name) {
                Some(Value::Array(items)) => items.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    object.insert(child.name.clone(), value);
                }
            }
        }
        Value::Object(object)
    }
}

/// Parses a document into its root element (the Envelope).
fn parse(bytes: &[u8]) -> std::result::Result<Element, String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = vec![Element::default()];
    let open = |e: &quick_xml::events::BytesStart<'_>| Element {
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        nil: e
            .attributes()
            .flatten()
            .any(|a| a.key.local_name().as_ref() == b"nil" && matches!(&*a.value, b"true" | b"1")),
        ..Element::default()
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => {
                let element = open(&e);
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("an end tag without its start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Err("an end tag without its start".into()),
                }
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| e.to_string())?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_string(),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().ok_or("no document")?;
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    let root = document.children.pop().ok_or("there is no element")?;
    if root.name != "Envelope" {
        return Err(format!("its root is `{}`, not a SOAP Envelope", root.name));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &str = r#"<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <soap:Body><t:GetResponse xmlns:t="urn:tags"><t:Result>
    <t:Transaction><t:id>1</t:id><t:plaza>A &amp; B</t:plaza><t:note xsi:nil="true"/></t:Transaction>
    <t:Transaction><t:id>2</t:id><t:plaza><![CDATA[<C>]]></t:plaza><t:tags><t:tag>x</t:tag><t:tag>y</t:tag></t:tags></t:Transaction>
    <t:next>abc</t:next>
  </t:Result></t:GetResponse></soap:Body></soap:Envelope>"#;

    #[test]
    fn records_are_found_by_local_names() -> std::result::Result<(), String> {
        let doc = parse(RESPONSE.as_bytes())?;
        let body = doc.child("Body").ok_or("no body")?;
        let path: Vec<String> = ["GetResponse", "Result", "Transaction"]
            .map(String::from)
            .to_vec();
        let records: Vec<Value> = body.find(&path).iter().map(|e| e.to_value()).collect();
        assert_eq!(
            records,
            [
                serde_json::json!({"id": "1", "plaza": "A & B", "note": null}),
                serde_json::json!({"id": "2", "plaza": "<C>", "tags": {"tag": ["x", "y"]}}),
            ]
        );
        Ok(())
    }

    #[test]
    fn faults_say_whose_they_are() {
        let fault = |code: &str| {
            Reply {
            url: url::Url::parse("http://x/").unwrap_or_else(|_| unreachable!()),
            headers: Default::default(),
            body: format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>{code}</faultcode><faultstring>no such tag</faultstring></s:Fault></s:Body></s:Envelope>"#
            )
            .into(),
        }
        };
        assert!(
            matches!(verdict(500, &fault("s:Client")), Verdict::Fail(e) if e.message.contains("no such tag"))
        );
        assert!(matches!(
            verdict(500, &fault("s:Server")),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn the_security_header_goes_into_the_header() -> Result<()> {
        let env = r#"<s:Envelope xmlns:s="x"><s:Header/><s:Body><Op/></s:Body></s:Envelope>"#;
        let out = with_security(env, "u", "p", true)?;
        assert!(out.contains("<s:Header><wsse:Security"), "{out}");
        assert!(out.contains("#PasswordDigest"), "{out}");
        assert!(!out.contains(">p<"), "the password is not sent: {out}");
        let bare = r#"<s:Envelope xmlns:s="x"><s:Body><Op/></s:Body></s:Envelope>"#;
        let out = with_security(bare, "u", "p", false)?;
        assert!(out.contains("<s:Header><wsse:Security"), "{out}");
        assert!(out.contains(">p</wsse:Password>"), "{out}");
        Ok(())
    }

    #[test]
    fn each_attempt_is_signed_anew() -> Result<()> {
        let env = r#"<s:Envelope xmlns:s="x"><s:Body><Op/></s:Body></s:Envelope>"#;
        let nonce = |text: &str| {
            text.split("<wsse:Nonce")
                .nth(1)
                .and_then(|rest| rest.split("</wsse:Nonce>").next())
                .map(str::to_string)
                .unwrap_or_default()
        };
        let first = with_security(env, "u", "p", true)?;
        let retry = with_security(env, "u", "p", true)?;
        assert!(!nonce(&first).is_empty(), "{first}");
        assert_ne!(nonce(&first), nonce(&retry), "a retry is not a replay");
        Ok(())
    }
}

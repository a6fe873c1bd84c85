//! HTML, written by hand: one `escape` for every value that reaches a page (text and
//! attribute values alike), and the page's frame. Nothing from a job row, a run record,
//! a query's answer or a request is written without it.

use std::fmt::Write as _;

use super::assets;
use super::keys::Operator;

/// `text` safe inside an element and inside a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (other than tab and newline) have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A path segment of a link (`/jobs/{id}`), percent-encoded, then escaped.
pub fn path_segment(text: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
    escape(&encoded)
}

/// A health or status colour as a class name and the word that says it (never colour
/// alone).
pub fn badge(class: &str, word: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        escape(class),
        escape(word)
    )
}

/// A whole page: the frame (title, navigation, who is signed in), the stylesheet and the
/// script library from the binary, and `body` (already HTML).
pub fn page(title: &str, who: Option<&Operator>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"htmx-config\" content='{{\"includeIndicatorStyles\":false,\"allowEval\":false,\"allowScriptTags\":false}}'>\
         <title>{} · sluice console</title>\
         <link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"{}\" integrity=\"{}\">\
         <script src=\"{}\" integrity=\"{}\" defer></script></head><body>\
         <header><nav aria-label=\"main\"><a class=\"brand\" href=\"/\">sluice console</a> \
         <a href=\"/\">Jobs</a> <a href=\"/lake\">Lake</a></nav>",
        escape(title),
        assets::CSS.path(),
        assets::CSS.integrity(),
        assets::HTMX.path(),
        assets::HTMX.integrity(),
    );
    if let Some(who) = who {
        let _ = write!(
            out,
            "<form class=\"who\" method=\"post\" action=\"/logout\"><span>{} ({})</span> \
             <button type=\"submit\">Sign out</button></form>",
            escape(&who.name),
            who.role.name()
        );
    }
    let _ = write!(
        out,
        "</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>",
        escape(title)
    );
    out
}

/// An HTML table: `head` (column names) and rows of cells that are already HTML.
pub fn table(caption: &str, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<table><caption>{}</caption><thead><tr>",
        escape(caption)
    );
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str("<td>");
            out.push_str(&cell);
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A duration for people: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_that_could_open_markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(
            escape("plain text, ünïcode 日本"),
            "plain text, ünïcode 日本"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\nd"), "a\u{fffd}b\u{fffd}c\nd");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn links_encode_their_segments() {
        assert_eq!(path_segment("orders"), "orders");
        assert_eq!(path_segment("a b/\"c"), "a+b%2F%22c");
    }

    #[test]
    fn the_frame_escapes_the_title_and_the_operator() {
        let who = Operator {
            name: "<b>eve</b>".into(),
            role: super::super::keys::Role::Reader,
        };
        let html = page("<i>t</i>", Some(&who), "<p>body</p>");
        assert!(html.contains("&lt;i&gt;t&lt;/i&gt;"));
        assert!(html.contains("&lt;b&gt;eve&lt;/b&gt;"));
        assert!(!html.contains("<b>eve"));
        assert!(html.contains("<p>body</p>"));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600 + 300), "3h 5m");
        assert_eq!(age(2 * 86_400 + 4 * 3600), "2d 4h");
    }
}

//! The pages, one file each; each renders HTML from what `view` read, escaping every
//! value (`html::escape`).

pub mod home;
pub mod job;
pub mod lake;

use std::fmt::Write as _;

use super::html::{escape, page};

/// The sign-in page (a key, once; the browser keeps a session cookie).
pub fn login(problem: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(problem) = problem {
        let _ = write!(
            body,
            "<p class=\"problem\" role=\"alert\">{}</p>",
            escape(problem)
        );
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\"><label for=\"key\">Console key</label>\
         <input type=\"password\" id=\"key\" name=\"key\" autocomplete=\"current-password\" required> \
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
         <p>A key from the console's keys file (its SHA-256 is in the file, never the key).</p>",
    );
    page("Sign in", None, &body)
}

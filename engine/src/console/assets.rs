//! The page's stylesheet and script library, built into the binary: no CDN and no build
//! step, so the console works inside a VPC without internet. Each is served at a path
//! that holds its content's hash (`/assets/htmx-2.0.11-1a2b3c4d.min.js`), cached for a
//! year as immutable, and named in the page with its Subresource Integrity hash.

use std::sync::LazyLock;

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384};

/// One built-in file.
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    hashed: LazyLock<(String, String)>,
}

impl Asset {
    /// The path the page links to.
    pub fn path(&self) -> &str {
        &self.hashed.0
    }

    /// The `integrity` attribute's value (`sha384-…`).
    pub fn integrity(&self) -> &str {
        &self.hashed.1
    }
}

/// The path and integrity of `bytes`.
fn hashed(stem: &str, extension: &str, bytes: &[u8]) -> (String, String) {
    let short: String = Sha256::digest(bytes)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let integrity = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    );
    (format!("/assets/{stem}-{short}{extension}"), integrity)
}

macro_rules! asset {
    ($stem:literal, $ext:literal, $type:literal, $file:literal) => {
        Asset {
            content_type: $type,
            bytes: include_bytes!($file),
            hashed: LazyLock::new(|| hashed($stem, $ext, include_bytes!($file))),
        }
    };
}

/// htmx (<https://htmx.org>, BSD-0 licence: engine/assets/htmx-LICENSE), vendored from the
/// `htmx.org` npm package's `dist/htmx.min.js`.
pub static HTMX: Asset = asset!(
    "htmx-2.0.11",
    ".min.js",
    "text/javascript; charset=utf-8",
    "../../assets/htmx-2.0.11.min.js"
);

/// The console's stylesheet.
pub static CSS: Asset = asset!(
    "console",
    ".css",
    "text/css; charset=utf-8",
    "../../assets/console.css"
);

/// The asset a request's path names.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&HTMX, &CSS].into_iter().find(|a| a.path() == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_named_by_their_content() {
        assert!(HTMX.path().starts_with("/assets/htmx-2.0.11-"));
        assert!(HTMX.path().ends_with(".min.js"));
        assert!(HTMX.integrity().starts_with("sha384-"));
        assert!(find(CSS.path()).is_some_and(|a| a.content_type.starts_with("text/css")));
        assert!(find("/assets/other.js").is_none());
        assert!(CSS.path().starts_with("/assets/console-") && CSS.path().ends_with(".css"));
    }
}

//! Listing what a feed's patterns can match, and no more: each pattern is listed from
//! its folder (the part before its first wildcard); a pattern with a wildcard folder or
//! `**` descends only into the subfolders where a match can lie (on S3 its prefix is
//! listed whole, in pages, instead: one request per 1000 keys beats one per folder). A
//! folder that does not exist holds nothing.

use std::collections::{BTreeMap, VecDeque};

use super::store::{Entry, Listing, Store};
use crate::error::Result;
use crate::job::files::Pattern;

/// Every file in the folders listed for `patterns`, each once, in path order: the
/// files a pattern matches, and their neighbours (done markers are among them).
pub async fn list(store: &dyn Store, patterns: &[Pattern]) -> Result<Vec<Entry>> {
    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    // Folders already listed, for patterns that share them.
    let mut seen: BTreeMap<String, Listing> = BTreeMap::new();
    let mut trees: Vec<String> = Vec::new();
    for pattern in patterns {
        let root = pattern.glob.folder();
        if pattern.glob.is_deep() {
            if trees.contains(&root) {
                continue;
            }
            if let Some(tree) = store.list_tree(&root).await? {
                files.extend(tree.into_iter().map(|e| (e.path.clone(), e)));
                trees.push(root);
                continue;
            }
        }
        let mut queue = VecDeque::from([root]);
        while let Some(folder) = queue.pop_front() {
            let listing = match seen.get(&folder) {
                Some(listing) => listing.clone(),
                None => {
                    let listing = store.list(&folder).await?;
                    seen.insert(folder.clone(), listing.clone());
                    listing
                }
            };
            if pattern.glob.is_deep() {
                queue.extend(
                    listing
                        .folders
                        .into_iter()
                        .filter(|sub| pattern.glob.may_hold(sub)),
                );
            }
            files.extend(listing.files.into_iter().map(|e| (e.path.clone(), e)));
        }
    }
    Ok(files.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::pattern::FilePattern;
    use crate::spec::files::{FileCompression, FileFormat};

    fn pattern(text: &str) -> Pattern {
        Pattern {
            glob: FilePattern::new(text).unwrap_or_else(|e| panic!("{e}")),
            format: FileFormat::Auto,
            records_at: Vec::new(),
            compression: FileCompression::Auto,
            delimiter: b',',
        }
    }

    #[tokio::test]
    async fn lists_only_where_a_match_can_lie_and_a_missing_folder_is_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for path in [
            "st/2026/11/a.json",
            "st/2026/11/b.ndjson.gz",
            "st/2026/12/été/c.json",
            "st/2025/01/d.json",
            "st/top.json",
            "other/e.json",
        ] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&path, "{}").unwrap_or_else(|e| panic!("{e}"));
        }
        let store =
            super::super::store::Objects::folder(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let paths =
            |entries: Vec<Entry>| -> Vec<String> { entries.into_iter().map(|e| e.path).collect() };

        let month = list(&store, &[pattern("st/2026/*/*.json")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The month folders' files (b too: a neighbour), not 2025's, not deeper ones.
        assert_eq!(
            paths(month),
            ["st/2026/11/a.json", "st/2026/11/b.ndjson.gz"]
        );

        let deep = list(&store, &[pattern("st/**/*.json"), pattern("st/*.json")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            paths(deep),
            [
                "st/2025/01/d.json",
                "st/2026/11/a.json",
                "st/2026/11/b.ndjson.gz",
                "st/2026/12/été/c.json",
                "st/top.json",
            ]
        );

        let missing = list(
            &store,
            &[pattern("st/2027/*/*.json"), pattern("none/*.json")],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(missing.is_empty());
    }
}

//! File patterns, as a file job's `source.files` writes them: `incoming/bank_*.json`,
//! `statements/2026/*/*.ndjson.gz`, `statements/**/*.json`.
//!
//! A pattern is matched against a whole path, relative to the connection's `path`,
//! `/`-separated. `*` is any run of characters within one folder or name (never a `/`),
//! `?` one such character, `[…]` one of a class (`[!…]` one not in it), and `**` as a
//! whole segment any number of folders (none included): `statements/**/*.json` matches
//! `statements/a.json` and `statements/2026/11/a.json`. A trailing `/**` is everything
//! below. These are the `glob` crate's rules with `require_literal_separator` (the unit
//! tests check the two agree), written here as a small automaton so that the same code
//! also answers what listing needs: the folder before the first wildcard (the only one
//! listed from), whether a subfolder can hold a match (the only ones descended into),
//! and whether two patterns can match one path, with an example of such a path.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A compiled file pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePattern {
    text: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    ranges: Vec<(char, char)>,
    negated: bool,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        c != '/' && (self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Exactly this character (`/` included).
    Char(char),
    /// `?`: any one character but `/`.
    Any,
    /// `[…]`: one character of the class, never `/`.
    Class(Class),
    /// `*`: any run of characters but `/`.
    Star,
    /// `**/`: any number of whole folders, none included.
    Folders,
    /// A trailing `/**`'s `**` (or a pattern that is only `**`): anything at all.
    Rest,
}

/// A state of the automaton: before step `.0`; `.1` inside a folder name that `Folders`
/// is consuming.
type State = (usize, bool);
/// A state of each of two patterns, walked together.
type Pair = (State, State);

/// What one transition reads.
#[derive(Debug, Clone)]
enum Label<'a> {
    Char(char),
    NotSlash,
    Class(&'a Class),
    Anything,
}

impl Label<'_> {
    fn admits(&self, c: char) -> bool {
        match self {
            Label::Char(x) => *x == c,
            Label::NotSlash => c != '/',
            Label::Class(k) => k.contains(c),
            Label::Anything => true,
        }
    }

    /// Characters worth trying when looking for one both labels admit: enough to find
    /// one whenever there is one (the bounds of every range, and just past them).
    fn candidates(&self, out: &mut Vec<char>) {
        match self {
            Label::Char(c) => out.push(*c),
            Label::Class(k) => {
                for &(lo, hi) in &k.ranges {
                    out.push(lo);
                    out.push(hi);
                    out.extend(char::from_u32(hi as u32 + 1));
                    out.extend((lo as u32).checked_sub(1).and_then(char::from_u32));
                }
            }
            Label::NotSlash | Label::Anything => {}
        }
    }
}

impl FilePattern {
    /// Compiles `text` (a leading `/` is ignored); the error says what is wrong.
    pub fn new(text: &str) -> Result<FilePattern, String> {
        let text = text.trim_start_matches('/');
        if text.is_empty() {
            return Err(
                "is empty: give a folder and a name pattern, such as `incoming/bank_*.json`".into(),
            );
        }
        if text.ends_with('/') {
            return Err(format!(
                "{text:?} ends with `/`: give a name pattern after the folder, such as `*.json`"
            ));
        }
        let segments: Vec<&str> = text.split('/').collect();
        let mut steps = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if segment.is_empty() || *segment == "." || *segment == ".." {
                return Err(format!(
                    "{text:?} has an empty, `.` or `..` folder: write each folder by its name"
                ));
            }
            if *segment == "**" {
                steps.push(if last { Step::Rest } else { Step::Folders });
                continue;
            }
            if segment.contains("**") {
                return Err(format!(
                    "{text:?}: `**` stands for any number of folders and must be a whole folder of its own, as in `statements/**/*.json` (use `*` within a name)"
                ));
            }
            parse_segment(segment, &mut steps).map_err(|m| format!("{text:?}: {m}"))?;
            if !last {
                steps.push(Step::Char('/'));
            }
        }
        Ok(FilePattern {
            text: text.to_string(),
            steps,
        })
    }

    /// The pattern as written (without a leading `/`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The folders before the first wildcard, `/`-separated (empty: the root): nothing
    /// outside it can match.
    pub fn folder(&self) -> String {
        let mut literal = String::new();
        for step in &self.steps {
            match step {
                Step::Char(c) => literal.push(*c),
                _ => break,
            }
        }
        literal
            .rfind('/')
            .map_or_else(String::new, |at| literal[..at].to_string())
    }

    /// Whether matches may lie in subfolders of [`Self::folder`] (a wildcard folder or
    /// `**`), so listing must descend; else only that folder's own files can match.
    pub fn is_deep(&self) -> bool {
        let folder = self.folder();
        let skip = if folder.is_empty() {
            0
        } else {
            folder.chars().count() + 1
        };
        self.steps
            .iter()
            .skip(skip)
            .any(|s| matches!(s, Step::Char('/') | Step::Folders | Step::Rest))
    }

    /// Whether the pattern matches `path` (relative, `/`-separated) whole.
    pub fn matches(&self, path: &str) -> bool {
        self.run(path).contains(&(self.steps.len(), false))
    }

    /// Whether a file under `folder` (relative, no trailing `/`) can match: listing
    /// descends only into such folders.
    pub fn may_hold(&self, folder: &str) -> bool {
        if folder.is_empty() {
            return true;
        }
        !self.run(&format!("{folder}/")).is_empty()
    }

    /// A path both patterns match, if there is one (the shortest).
    pub fn overlap(&self, other: &FilePattern) -> Option<String> {
        let start: Vec<(State, State)> =
            pairs(&self.closure((0, false)), &other.closure((0, false)));
        let accept = ((self.steps.len(), false), (other.steps.len(), false));
        let mut came: BTreeMap<Pair, Option<(Pair, char)>> = BTreeMap::new();
        let mut queue = VecDeque::new();
        for pair in start {
            if came.insert(pair, None).is_none() {
                queue.push_back(pair);
            }
        }
        while let Some(pair) = queue.pop_front() {
            if pair == accept {
                let mut text = Vec::new();
                let mut at = pair;
                while let Some(Some((before, c))) = came.get(&at) {
                    text.push(*c);
                    at = *before;
                }
                return Some(text.into_iter().rev().collect());
            }
            for (la, ta) in self.moves(pair.0) {
                for (lb, tb) in other.moves(pair.1) {
                    let Some(c) = shared(&la, &lb) else { continue };
                    for next in pairs(&self.closure(ta), &other.closure(tb)) {
                        if let std::collections::btree_map::Entry::Vacant(v) = came.entry(next) {
                            v.insert(Some((pair, c)));
                            queue.push_back(next);
                        }
                    }
                }
            }
        }
        None
    }

    /// The states after reading `text` (none: no match can start with it).
    fn run(&self, text: &str) -> BTreeSet<State> {
        let mut states = self.closure((0, false));
        for c in text.chars() {
            let mut next = BTreeSet::new();
            for &state in &states {
                for (label, to) in self.moves(state) {
                    if label.admits(c) {
                        next.extend(self.closure(to));
                    }
                }
            }
            if next.is_empty() {
                return next;
            }
            states = next;
        }
        states
    }

    /// `state` and the states reachable from it without reading.
    fn closure(&self, state: State) -> BTreeSet<State> {
        let mut out = BTreeSet::from([state]);
        let mut at = state;
        while !at.1
            && matches!(
                self.steps.get(at.0),
                Some(Step::Star | Step::Folders | Step::Rest)
            )
        {
            at = (at.0 + 1, false);
            out.insert(at);
        }
        out
    }

    /// The transitions that read one character from `state`.
    fn moves(&self, (i, inside): State) -> Vec<(Label<'_>, State)> {
        if inside {
            return vec![(Label::NotSlash, (i, true)), (Label::Char('/'), (i, false))];
        }
        match self.steps.get(i) {
            None => Vec::new(),
            Some(Step::Char(c)) => vec![(Label::Char(*c), (i + 1, false))],
            Some(Step::Any) => vec![(Label::NotSlash, (i + 1, false))],
            Some(Step::Class(k)) => vec![(Label::Class(k), (i + 1, false))],
            Some(Step::Star) => vec![(Label::NotSlash, (i, false))],
            Some(Step::Folders) => vec![(Label::NotSlash, (i, true))],
            Some(Step::Rest) => vec![(Label::Anything, (i, false))],
        }
    }
}

impl std::fmt::Display for FilePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn pairs(a: &BTreeSet<State>, b: &BTreeSet<State>) -> Vec<(State, State)> {
    a.iter()
        .flat_map(|&x| b.iter().map(move |&y| (x, y)))
        .collect()
}

/// A character both labels admit, if any.
fn shared(a: &Label<'_>, b: &Label<'_>) -> Option<char> {
    let mut candidates = Vec::new();
    a.candidates(&mut candidates);
    b.candidates(&mut candidates);
    candidates.extend(['x', 'a', '0', '_', '-', '.', 'Z', '~', 'é']);
    candidates.into_iter().find(|&c| a.admits(c) && b.admits(c))
}

/// One folder's or name's wildcards and characters.
fn parse_segment(segment: &str, steps: &mut Vec<Step>) -> Result<(), String> {
    let mut chars = segment.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => steps.push(Step::Star),
            '?' => steps.push(Step::Any),
            '[' => {
                let negated = chars.next_if(|&c| c == '!').is_some();
                let mut members = Vec::new();
                // A `]` right after the opening is one of the class.
                if let Some(c) = chars.next_if(|&c| c == ']') {
                    members.push(c);
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    members.push(c);
                }
                if !closed || members.is_empty() {
                    return Err("a `[` opens a class of characters that is not closed by `]` (`[0-9]`; `[[]` matches a `[` itself)".into());
                }
                let mut ranges = Vec::new();
                let mut i = 0;
                while i < members.len() {
                    if i + 2 < members.len() && members[i + 1] == '-' {
                        let (lo, hi) = (members[i], members[i + 2]);
                        if lo > hi {
                            return Err(format!("the range `{lo}-{hi}` runs backwards"));
                        }
                        ranges.push((lo, hi));
                        i += 3;
                    } else {
                        ranges.push((members[i], members[i]));
                        i += 1;
                    }
                }
                let class = Class { ranges, negated };
                if shared(&Label::Class(&class), &Label::NotSlash).is_none() {
                    return Err("a class that matches no character of a name".into());
                }
                steps.push(Step::Class(class));
            }
            c => steps.push(Step::Char(c)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(text: &str) -> FilePattern {
        FilePattern::new(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn names_folders_and_any_depth() {
        let p = pattern("statements/**/*.json");
        assert!(p.matches("statements/a.json"));
        assert!(p.matches("statements/2026/11/a.json"));
        assert!(!p.matches("statements/2026/11/a.json.gz"));
        assert!(!p.matches("other/a.json"));
        assert_eq!(p.folder(), "statements");
        assert!(p.is_deep());

        let p = pattern("statements/2026/*/*.ndjson.gz");
        assert!(p.matches("statements/2026/11/a.ndjson.gz"));
        assert!(!p.matches("statements/2026/11/x/a.ndjson.gz"));
        assert!(!p.matches("statements/2026/a.ndjson.gz"));
        assert_eq!(p.folder(), "statements/2026");
        assert!(p.is_deep());
        assert!(p.may_hold("statements/2026/11"));
        assert!(!p.may_hold("statements/2026/11/x"));
        assert!(!p.may_hold("statements/2025"));
        assert!(p.may_hold("statements"));

        let p = pattern("/incoming/bank_*.json");
        assert_eq!(p.text(), "incoming/bank_*.json");
        assert_eq!(p.folder(), "incoming");
        assert!(!p.is_deep());
        assert!(p.matches("incoming/bank_01.json"));
        assert!(!p.matches("incoming/sub/bank_01.json"));
        assert!(!p.may_hold("incoming/sub"));

        let p = pattern("bank_?.json");
        assert_eq!(p.folder(), "");
        assert!(!p.is_deep());
        assert!(p.matches("bank_1.json") && !p.matches("bank_12.json"));

        let p = pattern("relevés/été 2026/*.json");
        assert_eq!(p.folder(), "relevés/été 2026");
        assert!(p.matches("relevés/été 2026/août.json"));

        let p = pattern("in/**");
        assert!(p.matches("in/a") && p.matches("in/a/b.json") && !p.matches("out/a"));
        assert!(p.is_deep());

        let p = pattern("in/[0-9][!a]*.csv");
        assert!(p.matches("in/1b.csv") && !p.matches("in/1a.csv") && !p.matches("in/x1.csv"));
        assert!(pattern("[]]x").matches("]x"));
    }

    #[test]
    fn broken_patterns_say_what_is_wrong() {
        for (text, says) in [
            ("", "is empty"),
            ("in/", "ends with `/`"),
            ("in//x.json", "empty, `.` or `..`"),
            ("in/../x.json", "empty, `.` or `..`"),
            ("in/a**/x.json", "must be a whole folder"),
            ("in/[a-", "not closed"),
            ("in/[z-a].json", "runs backwards"),
        ] {
            match FilePattern::new(text) {
                Ok(_) => panic!("{text:?} compiled"),
                Err(e) => assert!(e.contains(says), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn overlaps_come_with_a_path_both_match() {
        let witness = pattern("statements/**/*.json").overlap(&pattern("statements/2026/*/*"));
        let path = witness.unwrap_or_else(|| panic!("no overlap found"));
        assert!(pattern("statements/**/*.json").matches(&path), "{path}");
        assert!(pattern("statements/2026/*/*").matches(&path), "{path}");

        assert_eq!(pattern("a/*.json").overlap(&pattern("a/*.json.gz")), None);
        assert_eq!(pattern("a/*.json").overlap(&pattern("b/*.json")), None);
        assert_eq!(
            pattern("**/*.ndjson").overlap(&pattern("**/*.ndjson.gz")),
            None
        );
        assert_eq!(
            pattern("a/*.json").overlap(&pattern("a/x*")),
            Some("a/x.json".into())
        );
        assert!(pattern("a/[!b]*").overlap(&pattern("a/[b]*")).is_none());
    }

    /// Paths of one to four folders and names of `a`, `b` and `.`.
    fn paths() -> impl Strategy<Value = String> {
        prop::collection::vec("[ab.]{1,3}", 1..5).prop_map(|s| s.join("/"))
    }

    /// Patterns of the same letters and every kind of wildcard.
    fn patterns() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "a", "b", "*", "?", "**", "a*", "*b", "*.a", "[ab]", "[!a]", "a?b", "*a*",
        ]);
        prop::collection::vec(segment, 1..5).prop_map(|s| s.join("/"))
    }

    proptest! {
        /// The automaton agrees with the `glob` crate's matching.
        #[test]
        fn matches_as_glob_does(text in patterns(), path in paths()) {
            let ours = FilePattern::new(&text);
            let theirs = glob::Pattern::new(&text);
            prop_assume!(ours.is_ok() && theirs.is_ok());
            let (Ok(ours), Ok(theirs)) = (ours, theirs) else { return Ok(()) };
            let options = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            };
            prop_assert_eq!(ours.matches(&path), theirs.matches_with(&path, options), "{} on {}", text, path);
        }

        /// A folder a match lies in is always descended into, and nothing outside
        /// the pattern's folder matches.
        #[test]
        fn listing_never_misses_a_match(text in patterns(), path in paths()) {
            let Ok(p) = FilePattern::new(&text) else { return Ok(()) };
            if p.matches(&path) {
                let parts: Vec<&str> = path.split('/').collect();
                for n in 1..parts.len() {
                    let folder = parts[..n].join("/");
                    prop_assert!(p.may_hold(&folder), "{} in {}", text, folder);
                }
                let root = p.folder();
                prop_assert!(root.is_empty() || path.starts_with(&format!("{root}/")), "{} under {}", path, root);
                if !p.is_deep() {
                    prop_assert_eq!(path.rsplit_once('/').map_or("", |(f, _)| f), root.as_str());
                }
            }
        }

        /// An overlap is found exactly when some path matches both, and it is one.
        #[test]
        fn overlap_is_a_path_both_match(a in patterns(), b in patterns(), path in paths()) {
            let (Ok(pa), Ok(pb)) = (FilePattern::new(&a), FilePattern::new(&b)) else { return Ok(()) };
            match pa.overlap(&pb) {
                Some(both) => {
                    prop_assert!(pa.matches(&both) && pb.matches(&both), "{} and {}: {}", a, b, both);
                }
                None => prop_assert!(!(pa.matches(&path) && pb.matches(&path)), "{} and {} both match {}", a, b, path),
            }
        }
    }
}

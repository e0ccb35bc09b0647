//! Regex rules from `scores/regex.toml`, compiled into ONE multi-pattern
//! database behind the [`MultiMatcher`] trait: Intel Hyperscan when the
//! `hyperscan` feature is on (the default), else the pure-Rust
//! [`regex::RegexSet`] (regex-automata's multi-pattern engine). Both answer
//! the same question — which patterns match somewhere in the haystack — and
//! a test over the corpus proves they agree. Evidence (the matched words) is
//! then taken with the single pattern, so it is identical whichever engine
//! found the match.
//!
//! The haystack is the normalised subject, a line break, the normalised body,
//! a line break, and the message's URLs in lower case one per line. Patterns
//! are therefore written in lower case; `.` does not cross lines.
//!
//! `\b`, `\w`, `\d`, `\s` and their negations have ASCII meaning in both
//! engines (Hyperscan has no Unicode word boundary); [`ascii_classes`]
//! rewrites them for the regex crate, whose classes are Unicode by default.

use std::fmt;

use super::{Context, Hits, Place};

/// One rule as read from `scores/regex.toml`.
#[derive(Debug, Clone)]
pub struct RegexRule {
    pub symbol: String,
    pub pattern: String,
    /// Line in regex.toml, for errors.
    pub line: usize,
}

/// A multi-pattern engine: reports the ids of the patterns that match.
pub trait MultiMatcher: Send + Sync {
    /// Engine name for logs and metrics (`hyperscan`, `regex-set`).
    fn engine(&self) -> &'static str;
    /// Ids of the patterns matching somewhere in `haystack`, ascending.
    fn matching(&self, haystack: &str) -> Vec<usize>;
}

/// Which engine to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatcherKind {
    Hyperscan,
    RegexSet,
}

impl MatcherKind {
    /// Hyperscan when compiled in, else the pure-Rust engine.
    pub fn preferred() -> MatcherKind {
        if cfg!(feature = "hyperscan") {
            MatcherKind::Hyperscan
        } else {
            MatcherKind::RegexSet
        }
    }
}

/// The pure-Rust engine.
pub struct RegexSetMatcher(regex::RegexSet);

impl MultiMatcher for RegexSetMatcher {
    fn engine(&self) -> &'static str {
        "regex-set"
    }
    fn matching(&self, haystack: &str) -> Vec<usize> {
        self.0.matches(haystack).into_iter().collect()
    }
}

#[cfg(feature = "hyperscan")]
mod hs {
    use std::sync::Mutex;

    use hyperscan::prelude::*;
    use hyperscan::Block;

    use super::MultiMatcher;

    /// Hyperscan block-mode database; scratch spaces are pooled so threads
    /// can scan concurrently.
    pub struct HyperscanMatcher {
        db: BlockDatabase,
        scratch: Mutex<Vec<Scratch>>,
    }

    fn pattern(id: usize, expr: &str) -> Result<Pattern, String> {
        let mut p = Pattern::with_flags(expr, CompileFlags::UTF8 | CompileFlags::SINGLEMATCH)
            .map_err(|e| e.to_string())?;
        p.id = Some(id);
        Ok(p)
    }

    impl HyperscanMatcher {
        pub fn new(patterns: &[String]) -> Result<HyperscanMatcher, Vec<(usize, String)>> {
            let all: Result<Vec<Pattern>, _> = patterns
                .iter()
                .enumerate()
                .map(|(i, p)| pattern(i, p))
                .collect();
            let built = all.map_err(|e| vec![(0, e)]).and_then(|ps| {
                Patterns(ps)
                    .build::<Block>()
                    .map_err(|e| vec![(usize::MAX, e.to_string())])
            });
            let db = match built {
                Ok(db) => db,
                Err(_) => {
                    // Find the culprits one by one, for file:line errors.
                    let errors: Vec<(usize, String)> = patterns
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| {
                            let single = pattern(i, p).and_then(|pat| {
                                pat.build::<Block>().map(|_| ()).map_err(|e| e.to_string())
                            });
                            single.err().map(|e| (i, format!("hyperscan: {e}")))
                        })
                        .collect();
                    return Err(if errors.is_empty() {
                        vec![(0, "hyperscan could not build the database".into())]
                    } else {
                        errors
                    });
                }
            };
            Ok(HyperscanMatcher {
                db,
                scratch: Mutex::new(Vec::new()),
            })
        }
    }

    impl MultiMatcher for HyperscanMatcher {
        fn engine(&self) -> &'static str {
            "hyperscan"
        }
        fn matching(&self, haystack: &str) -> Vec<usize> {
            let pooled = self.scratch.lock().map(|mut p| p.pop()).unwrap_or(None);
            let scratch = match pooled {
                Some(s) => s,
                None => match self.db.alloc_scratch() {
                    Ok(s) => s,
                    Err(_) => return Vec::new(),
                },
            };
            let mut ids = Vec::new();
            let _ = self.db.scan(haystack, &scratch, |id, _, _, _| {
                ids.push(id as usize);
                Matching::Continue
            });
            if let Ok(mut pool) = self.scratch.lock() {
                pool.push(scratch);
            }
            ids.sort_unstable();
            ids.dedup();
            ids
        }
    }
}

#[cfg(feature = "hyperscan")]
pub use hs::HyperscanMatcher;

/// Compiled regex rules.
pub struct RegexRules {
    rules: Vec<RegexRule>,
    singles: Vec<regex::Regex>,
    matcher: Box<dyn MultiMatcher>,
}

impl fmt::Debug for RegexRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegexRules")
            .field("rules", &self.rules.len())
            .field("engine", &self.matcher.engine())
            .finish()
    }
}

/// A pattern that does not compile, by rule index.
pub type RuleError = (usize, String);

impl RegexRules {
    /// Compile with the preferred engine; when Hyperscan refuses the set
    /// (old CPU, unsupported construct) the pure-Rust engine takes over.
    pub fn new(rules: Vec<RegexRule>) -> Result<RegexRules, Vec<RuleError>> {
        RegexRules::with_kind(rules, MatcherKind::preferred())
    }

    /// Compile with a given engine (tests and benches compare them).
    pub fn with_kind(
        rules: Vec<RegexRule>,
        kind: MatcherKind,
    ) -> Result<RegexRules, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut singles = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match regex::Regex::new(&ascii_classes(&r.pattern)) {
                Ok(re) if re.is_match("") => {
                    errors.push((i, "pattern matches the empty string".into()))
                }
                Ok(re) => singles.push(re),
                Err(e) => errors.push((i, format!("bad pattern: {}", last_line(&e.to_string())))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let patterns: Vec<String> = rules.iter().map(|r| r.pattern.clone()).collect();
        let matcher: Box<dyn MultiMatcher> = match kind {
            #[cfg(feature = "hyperscan")]
            MatcherKind::Hyperscan => Box::new(HyperscanMatcher::new(&patterns)?),
            _ => Box::new(RegexSetMatcher(
                regex::RegexSet::new(patterns.iter().map(|p| ascii_classes(p)))
                    .map_err(|e| vec![(0, e.to_string())])?,
            )),
        };
        Ok(RegexRules {
            rules,
            singles,
            matcher,
        })
    }

    pub fn engine(&self) -> &'static str {
        self.matcher.engine()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.symbol.as_str())
    }

    /// The text the rules run over (see the module documentation).
    pub fn haystack(ctx: &Context<'_>) -> String {
        let mut hay = String::with_capacity(ctx.subject.text.len() + ctx.body.text.len() + 256);
        hay.push_str(&ctx.subject.text);
        hay.push('\n');
        hay.push_str(&ctx.body.text);
        hay.push('\n');
        for u in &ctx.msg.urls {
            hay.push_str(&u.url.to_lowercase());
            hay.push('\n');
        }
        hay
    }

    /// Ids of the rules matching `haystack`, from the multi-pattern engine.
    pub fn matching(&self, haystack: &str) -> Vec<usize> {
        self.matcher.matching(haystack)
    }

    pub fn check(&self, ctx: &Context<'_>, hits: &mut Hits) {
        if self.rules.is_empty() {
            return;
        }
        let hay = RegexRules::haystack(ctx);
        let subject_end = ctx.subject.text.len();
        let body_end = subject_end + 1 + ctx.body.text.len();
        for id in self.matching(&hay) {
            let rule = &self.rules[id];
            let Some(m) = self.singles[id].find(&hay) else {
                continue;
            };
            let (place, quote) = if m.start() < subject_end {
                let r = m.start()..m.end().min(subject_end);
                (
                    Place::Subject,
                    ctx.subject
                        .original(ctx.source(Place::Subject), r)
                        .to_string(),
                )
            } else if m.start() <= body_end {
                let r = m.start() - subject_end - 1
                    ..(m.end() - subject_end - 1).min(ctx.body.text.len());
                (
                    Place::Body,
                    ctx.body.original(ctx.source(Place::Body), r).to_string(),
                )
            } else {
                (Place::Url, m.as_str().to_string())
            };
            let quote: String = quote.chars().take(80).collect();
            hits.add(
                &rule.symbol,
                1.0,
                format!(
                    "\"{quote}\" in {} (regex.toml line {})",
                    place.as_str(),
                    rule.line
                ),
            );
        }
    }
}

/// Rewrite the Perl classes `\b \B \w \W \d \D \s \S` to their ASCII
/// forms, so the regex crate means what Hyperscan (without UCP) means.
pub fn ascii_classes(pattern: &str) -> String {
    const WORD: &str = "0-9A-Za-z_";
    const DIGIT: &str = "0-9";
    const SPACE: &str = "\\t\\n\\x0B\\x0C\\r ";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let inside = class_depth > 0;
                let rewrite = match (n, inside) {
                    ('b', false) => Some("(?-u:\\b)".to_string()),
                    ('B', false) => Some("(?-u:\\B)".to_string()),
                    ('w', false) => Some(format!("[{WORD}]")),
                    ('w', true) => Some(WORD.to_string()),
                    ('W', _) => Some(format!("[^{WORD}]")),
                    ('d', false) => Some(format!("[{DIGIT}]")),
                    ('d', true) => Some(DIGIT.to_string()),
                    ('D', _) => Some(format!("[^{DIGIT}]")),
                    ('s', false) => Some(format!("[{SPACE}]")),
                    ('s', true) => Some(SPACE.to_string()),
                    ('S', _) => Some(format!("[^{SPACE}]")),
                    _ => None,
                };
                match rewrite {
                    Some(r) => out.push_str(&r),
                    None => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '[' => {
                class_depth += 1;
                out.push(c);
                // A ']' or '^]' right after '[' is a literal.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().unwrap_or(']'));
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The regex crate's errors end with the line that says what is wrong
/// (after a copy of the pattern and a caret line).
fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<RegexRule> {
        [
            "\\$\\s?\\d{1,3}(,\\d{3})+",
            "v[i1!]agr[a@]",
            "https?://\\d+\\.\\d+\\.\\d+\\.\\d+",
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| RegexRule {
            symbol: format!("R{i}"),
            pattern: p.to_string(),
            line: i + 1,
        })
        .collect()
    }

    #[test]
    fn both_engines_find_the_same_rules() {
        let hay = "win $ 1,000,000 now\nbuy v1agra\nhttp://10.0.0.1/x\n";
        for kind in [MatcherKind::Hyperscan, MatcherKind::RegexSet] {
            let r = RegexRules::with_kind(rules(), kind).unwrap();
            assert_eq!(r.matching(hay), vec![0, 1, 2], "{}", r.engine());
            assert_eq!(r.matching("nothing here"), Vec::<usize>::new());
        }
    }

    #[test]
    fn classes_become_ascii() {
        assert_eq!(
            ascii_classes(r"\bv[\W_]\d+\s"),
            r"(?-u:\b)v[[^0-9A-Za-z_]_][0-9]+[\t\n\x0B\x0C\r ]"
        );
        assert_eq!(ascii_classes(r"[\]\w]\\b"), r"[\]0-9A-Za-z_]\\b");
        let re = regex::Regex::new(&ascii_classes(r"\bpill\b")).unwrap();
        assert!(re.is_match("a pill."));
        assert!(!re.is_match("spill"));
    }

    #[test]
    fn bad_patterns_are_reported_by_rule() {
        let mut bad = rules();
        bad.push(RegexRule {
            symbol: "X".into(),
            pattern: "(unclosed".into(),
            line: 9,
        });
        bad.push(RegexRule {
            symbol: "Y".into(),
            pattern: "a*".into(),
            line: 10,
        });
        let errs = RegexRules::new(bad).unwrap_err();
        assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4]);
    }
}

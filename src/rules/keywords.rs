//! Keyword lists compiled into one Aho-Corasick automaton: every list from
//! `scores/keywords/` shares the automaton and each pattern remembers which
//! lists it belongs to, so a message's text is scanned once whatever the
//! number of lists. Matches in space-separated scripts must sit on word
//! boundaries (`pill` does not fire inside `spillover`); in Chinese and
//! Japanese text any occurrence counts.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use super::{Context, Hits, Place};
use crate::message::normalize::{is_word_char, normalize};

/// One keyword list, as read from `scores/keywords/<category>.<lang>.txt`.
#[derive(Debug, Clone)]
pub struct KeywordList {
    /// File name, for evidence and errors.
    pub file: String,
    pub symbol: String,
    /// Distinct-hit strength at which the symbol reaches its full weight.
    pub saturate: f64,
    /// Factor ceiling: past `saturate`, more distinct keywords keep adding
    /// until the factor reaches this (1.0: the weight is the maximum).
    pub max_factor: f64,
    /// (keyword as written, strength, line).
    pub terms: Vec<(String, u32, usize)>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Index into `symbols`.
    symbol: usize,
    strength: u32,
    /// The keyword as written in its list.
    written: String,
}

/// All keyword lists, compiled.
#[derive(Debug, Clone)]
pub struct KeywordSet {
    automaton: Option<AhoCorasick>,
    /// Per pattern: the lists it belongs to.
    entries: Vec<Vec<Entry>>,
    /// Per pattern: needs word boundaries at its start / end.
    bounded: Vec<(bool, bool)>,
    /// (symbol name, saturate, max_factor).
    symbols: Vec<(String, f64, f64)>,
    pub pattern_count: usize,
}

/// A keyword that normalises to nothing, or a duplicate in the same list.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl KeywordSet {
    pub fn new(lists: &[KeywordList]) -> Result<KeywordSet, Vec<KeywordError>> {
        let mut errors = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut entries: Vec<Vec<Entry>> = Vec::new();
        let mut symbols: Vec<(String, f64, f64)> = Vec::new();
        for list in lists {
            let sym = match symbols.iter().position(|(s, _, _)| *s == list.symbol) {
                Some(i) => {
                    symbols[i].1 = symbols[i].1.max(list.saturate);
                    symbols[i].2 = symbols[i].2.max(list.max_factor);
                    i
                }
                None => {
                    symbols.push((list.symbol.clone(), list.saturate, list.max_factor));
                    symbols.len() - 1
                }
            };
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (written, strength, line) in &list.terms {
                let norm = normalize(written);
                if norm.is_empty() {
                    errors.push(KeywordError {
                        file: list.file.clone(),
                        line: *line,
                        message: format!("keyword {written:?} is empty once normalised"),
                    });
                    continue;
                }
                if let Some(first) = seen.insert(norm.clone(), *line) {
                    errors.push(KeywordError {
                        file: list.file.clone(),
                        line: *line,
                        message: format!(
                            "keyword {written:?} repeats line {first} (same once normalised)"
                        ),
                    });
                    continue;
                }
                let id = *index.entry(norm.clone()).or_insert_with(|| {
                    patterns.push(norm.clone());
                    entries.push(Vec::new());
                    patterns.len() - 1
                });
                entries[id].push(Entry {
                    symbol: sym,
                    strength: *strength,
                    written: written.clone(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let bounded = patterns
            .iter()
            .map(|p| {
                (
                    p.chars().next().is_some_and(is_word_char),
                    p.chars().next_back().is_some_and(is_word_char),
                )
            })
            .collect();
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    // A full DFA: a few MB for every list together, and the
                    // fastest overlapping search.
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .expect("keyword automaton within size limits"),
            )
        };
        Ok(KeywordSet {
            automaton,
            entries,
            bounded,
            symbols,
            pattern_count: patterns.len(),
        })
    }

    /// Heap bytes of the automaton.
    pub fn memory_usage(&self) -> usize {
        self.automaton.as_ref().map_or(0, AhoCorasick::memory_usage)
    }

    /// Symbol names the lists emit.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.symbols.iter().map(|(s, _, _)| s.as_str())
    }

    /// Every keyword occurrence in `text` on proper boundaries:
    /// (pattern id, byte range).
    pub fn find(&self, text: &str, mut on_match: impl FnMut(usize, std::ops::Range<usize>)) {
        let Some(ac) = &self.automaton else { return };
        for m in ac.find_overlapping_iter(text) {
            let id = m.pattern().as_usize();
            let (need_start, need_end) = self.bounded[id];
            if need_start
                && text[..m.start()]
                    .chars()
                    .next_back()
                    .is_some_and(is_word_char)
            {
                continue;
            }
            if need_end && text[m.end()..].chars().next().is_some_and(is_word_char) {
                continue;
            }
            on_match(id, m.range());
        }
    }

    /// Scan subject, body and attachment names; one hit per symbol whose
    /// factor grows with the strength of the distinct keywords found.
    pub fn check(&self, ctx: &Context<'_>, hits: &mut Hits) {
        // symbol → keyword (normalised pattern id) → (strength, place, quote)
        let mut found: BTreeMap<usize, BTreeMap<usize, (u32, Place, String)>> = BTreeMap::new();
        let mut scan = |place: Place, norm: &crate::message::Normalized, source: &str| {
            self.find(&norm.text, |id, range| {
                for e in &self.entries[id] {
                    let per_symbol = found.entry(e.symbol).or_default();
                    if per_symbol.len() >= 64 {
                        continue;
                    }
                    per_symbol.entry(id).or_insert_with(|| {
                        let quote = norm.original(source, range.clone());
                        let quote = if quote.is_empty() {
                            e.written.clone()
                        } else {
                            quote.to_string()
                        };
                        // A keyword in the subject weighs one more.
                        let bonus = u32::from(place == Place::Subject);
                        (e.strength + bonus, place, quote)
                    });
                }
            });
        };
        scan(Place::Subject, &ctx.subject, ctx.source(Place::Subject));
        scan(Place::Body, &ctx.body, ctx.source(Place::Body));
        for (name, norm) in &ctx.names {
            scan(Place::AttachmentName, norm, name);
        }
        for (sym, kws) in found {
            let (name, saturate, max_factor) = &self.symbols[sym];
            let strength: u32 = kws.values().map(|(s, _, _)| *s).sum();
            let factor = (f64::from(strength) / saturate).min(*max_factor);
            for (id, (_, place, quote)) in &kws {
                let written = &self.entries[*id][0].written;
                let evidence = if quote == written {
                    format!("keyword \"{written}\" in {}", place.as_str())
                } else {
                    format!("keyword \"{written}\" in {} as \"{quote}\"", place.as_str())
                };
                hits.add(name, factor, evidence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ParsedMessage;

    fn set() -> KeywordSet {
        KeywordSet::new(&[
            KeywordList {
                file: "pharma.en.txt".into(),
                symbol: "KW_PHARMA".into(),
                saturate: 4.0,
                max_factor: 1.0,
                terms: vec![("pill".into(), 1, 3), ("viagra".into(), 3, 4)],
            },
            KeywordList {
                file: "adult.zh-Hans.txt".into(),
                symbol: "KW_ADULT".into(),
                saturate: 4.0,
                max_factor: 1.0,
                terms: vec![("无码".into(), 2, 3), ("成人".into(), 1, 4)],
            },
        ])
        .unwrap()
    }

    fn run(subject: &str, text: &str) -> Hits {
        let msg = ParsedMessage {
            subject: Some(subject.into()),
            text: text.into(),
            ..Default::default()
        };
        let ctx = Context::new(&msg);
        let mut hits = Hits::default();
        set().check(&ctx, &mut hits);
        hits
    }

    #[test]
    fn word_boundaries_in_latin_not_in_chinese() {
        assert!(run("", "a spillover pillow").0.is_empty());
        let h = run("", "one PILL a day");
        assert_eq!(h.get("KW_PHARMA").unwrap().factor, 0.25);
        assert_eq!(
            h.get("KW_PHARMA").unwrap().evidence,
            vec!["keyword \"pill\" in body as \"PILL\""]
        );
        let h = run("国产无码成人网站", "");
        // 无码 (2) + 成人 (1) + two subject bonuses = 5 ≥ 4.
        assert_eq!(h.get("KW_ADULT").unwrap().factor, 1.0);
    }

    #[test]
    fn zero_width_split_words_still_match() {
        let h = run("", "cheap vi\u{200b}agra");
        assert_eq!(h.get("KW_PHARMA").unwrap().factor, 0.75);
    }

    #[test]
    fn duplicate_and_empty_keywords_are_errors() {
        let err = KeywordSet::new(&[KeywordList {
            file: "x.en.txt".into(),
            symbol: "KW_X".into(),
            saturate: 4.0,
            max_factor: 1.0,
            terms: vec![
                ("Pill".into(), 1, 2),
                ("pill".into(), 1, 3),
                ("\u{200b}".into(), 1, 4),
            ],
        }])
        .unwrap_err();
        assert_eq!(err.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3, 4]);
    }
}

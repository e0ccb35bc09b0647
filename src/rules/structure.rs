//! Structure and header checks that matter for outbound mail: GTUBE,
//! malformed MIME, missing or malformed Message-ID/Date/From, subject
//! shouting, HTML-only bodies with hidden text, links whose text shows one
//! domain while the href goes to another, many links to one host, IP-literal
//! URLs, Reply-To to a free-mail domain different from From.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::Hits;
use crate::message::{host_of, ParsedMessage};

/// The GTUBE test string: a message containing it is certain spam, so that
/// operators can test their set-up end to end.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Lists the structure rules read from `scores/`.
#[derive(Debug, Clone, Default)]
pub struct StructurePolicy {
    /// Free-mail provider domains (`scores/freemail.txt`).
    pub freemail: HashSet<String>,
}

/// The registrable domain of a host (`mail.bank.co.uk` → `bank.co.uk`).
pub fn registrable(host: &str) -> String {
    psl::domain_str(host).unwrap_or(host).to_string()
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl StructurePolicy {
    pub fn check(&self, raw: &[u8], msg: &ParsedMessage, hits: &mut Hits) {
        if memchr::memmem::find(raw, GTUBE).is_some() {
            hits.add("GTUBE", 1.0, "GTUBE test string in the message");
        }
        for m in msg.malformed.iter().take(4) {
            hits.add("MIME_MALFORMED", 1.0, m.clone());
        }
        for l in &msg.limits_hit {
            hits.add("MIME_LIMITS_EXCEEDED", 1.0, l.clone());
        }
        self.headers(msg, hits);
        self.subject(msg, hits);
        self.body(msg, hits);
        self.urls(msg, hits);
    }

    fn headers(&self, msg: &ParsedMessage, hits: &mut Hits) {
        match (&msg.message_id_raw, &msg.message_id) {
            (None, _) => hits.add("MISSING_MESSAGE_ID", 1.0, "no Message-ID header"),
            (Some(raw), Some(id)) if id.contains('@') && !id.contains(' ') => {
                let _ = raw;
            }
            (Some(raw), _) => hits.add(
                "INVALID_MESSAGE_ID",
                1.0,
                format!("Message-ID: {}", clip(raw)),
            ),
        }
        match (&msg.date_raw, &msg.date) {
            (None, _) => hits.add("MISSING_DATE", 1.0, "no Date header"),
            (Some(raw), None) => hits.add("INVALID_DATE", 1.0, format!("Date: {}", clip(raw))),
            (Some(raw), Some(_)) if !raw.chars().any(|c| c.is_ascii_digit()) => {
                hits.add("INVALID_DATE", 1.0, format!("Date: {}", clip(raw)))
            }
            _ => {}
        }
        match &msg.from {
            None => hits.add("MISSING_FROM", 1.0, "no From header"),
            Some(f) if f.address.is_none() => hits.add("MISSING_FROM", 1.0, "From has no address"),
            Some(f) => {
                if msg.from_count > 1 {
                    hits.add(
                        "MULTIPLE_FROM",
                        1.0,
                        format!("{} addresses in From", msg.from_count),
                    );
                }
                // "service@bank.example" <x@elsewhere.example>
                if let (Some(name), Some(addr)) = (&f.name, &f.address) {
                    if let Some(shown) = name
                        .split_whitespace()
                        .find(|w| w.contains('@') && w.contains('.'))
                    {
                        let shown = shown.trim_matches(|c: char| !c.is_alphanumeric());
                        if crate::envelope::domain_of(shown) != crate::envelope::domain_of(addr) {
                            hits.add(
                                "FROM_NAME_HAS_ADDRESS",
                                1.0,
                                format!(
                                    "From name shows {} but the address is {}",
                                    clip(shown),
                                    clip(addr)
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let (Some(rt), Some(from)) = (&msg.reply_to, &msg.from) {
            if let (Some(rt_dom), Some(rt_addr)) = (rt.domain(), rt.address.as_deref()) {
                let from_dom = from.domain().unwrap_or_default();
                let same_addr = from
                    .address
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(rt_addr));
                if self.freemail.contains(&rt_dom) && rt_dom != from_dom && !same_addr {
                    hits.add(
                        "REPLYTO_FREEMAIL_DIFFERS",
                        1.0,
                        format!(
                            "Reply-To {} (free mail) while From is @{}",
                            clip(rt_addr),
                            from_dom
                        ),
                    );
                }
            }
        }
    }

    fn subject(&self, msg: &ParsedMessage, hits: &mut Hits) {
        let subject = msg.subject.as_deref().unwrap_or("").trim();
        if subject.is_empty() {
            hits.add("EMPTY_SUBJECT", 1.0, "subject missing or empty");
            return;
        }
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        let upper = letters.iter().filter(|c| c.is_uppercase()).count();
        let lower = letters.iter().filter(|c| c.is_lowercase()).count();
        if upper >= 12 && lower == 0 && subject.split_whitespace().count() >= 3 {
            hits.add(
                "SUBJECT_ALL_CAPS",
                1.0,
                format!("subject \"{}\"", clip(subject)),
            );
        }
        let bangs = subject.chars().filter(|&c| c == '!' || c == '！').count();
        if subject.contains("!!!") || bangs >= 4 {
            hits.add(
                "SUBJECT_EXCLAIM",
                1.0,
                format!("subject \"{}\"", clip(subject)),
            );
        }
        if subject.contains("$$") || subject.contains("€€") || subject.contains("££") {
            hits.add(
                "SUBJECT_DOLLARS",
                1.0,
                format!("subject \"{}\"", clip(subject)),
            );
        }
    }

    fn body(&self, msg: &ParsedMessage, hits: &mut Hits) {
        if msg.has_html_part && !msg.has_text_part {
            hits.add(
                "HTML_ONLY",
                1.0,
                "HTML body without a plain-text alternative",
            );
        }
        if msg.html_hidden_chars >= 40 {
            let factor = (msg.html_hidden_chars as f64 / 400.0).min(1.0);
            hits.add(
                "HTML_HIDDEN_TEXT",
                factor,
                format!(
                    "{} hidden characters, e.g. \"{}\"",
                    msg.html_hidden_chars,
                    clip(&msg.html_hidden_sample)
                ),
            );
        }
        if msg.text.trim().is_empty() && msg.attachments.is_empty() {
            hits.add("NO_TEXT_BODY", 1.0, "no visible text and no attachment");
        }
    }

    fn urls(&self, msg: &ParsedMessage, hits: &mut Hits) {
        for link in &msg.links {
            let text = link.text.trim().trim_end_matches('/');
            if !looks_like_domain(text) {
                continue;
            }
            let shown = host_of(text);
            let target = host_of(&link.href);
            if shown.is_empty() || target.is_empty() || !link.href.starts_with("http") {
                continue;
            }
            if registrable(&shown) != registrable(&target) {
                hits.add(
                    "LINK_TEXT_DOMAIN_MISMATCH",
                    1.0,
                    format!("link shows {} but goes to {}", clip(&shown), clip(&target)),
                );
            }
        }
        let mut per_host: HashMap<&str, usize> = HashMap::new();
        for u in &msg.urls {
            if u.host.parse::<IpAddr>().is_ok() {
                hits.add("URL_IP_LITERAL", 1.0, format!("URL {}", clip(&u.url)));
            }
            let authority = u
                .url
                .split("://")
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            if authority.contains('@') {
                hits.add("URL_USERINFO", 1.0, format!("URL {}", clip(&u.url)));
            }
            if !u.host.is_empty() {
                *per_host.entry(u.host.as_str()).or_default() += 1;
            }
        }
        if let Some((host, n)) = per_host.iter().max_by_key(|(h, n)| (**n, *h)) {
            if *n >= 12 && *n * 10 >= msg.urls.len() * 8 {
                hits.add(
                    "MANY_LINKS_ONE_HOST",
                    1.0,
                    format!("{n} of {} URLs go to {host}", msg.urls.len()),
                );
            }
        }
    }
}

/// Link text that a reader takes for an address: `www.bank.example`,
/// `https://bank.example/login`, `bank.example`.
fn looks_like_domain(text: &str) -> bool {
    if text.is_empty() || text.len() > 200 || text.contains(char::is_whitespace) {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.") {
        return true;
    }
    let host = lower.split('/').next().unwrap_or("");
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
        && psl::suffix_str(host).is_some_and(|s| s.len() < host.len())
        && !host.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    fn run(raw: &str) -> Hits {
        let policy = StructurePolicy {
            freemail: ["gmail.com".to_string()].into_iter().collect(),
        };
        let mut hits = Hits::default();
        policy.check(raw.as_bytes(), &parse(raw.as_bytes()), &mut hits);
        hits
    }

    #[test]
    fn well_formed_mail_is_quiet() {
        let h = run("From: a@shop.example\r\nTo: b@c.example\r\nSubject: Your order\r\nMessage-ID: <1@shop.example>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\nThanks, it ships tomorrow.\r\n");
        assert!(h.0.is_empty(), "{:?}", h.0);
    }

    #[test]
    fn header_problems() {
        let h = run("From: \"service@bank.example\" <x@evil.example>\r\nReply-To: y@gmail.com\r\nSubject: ACT NOW TO CLAIM YOUR PRIZE!!!\r\nMessage-ID: nonsense\r\nDate: yesterday\r\n\r\nbody\r\n");
        for s in [
            "INVALID_MESSAGE_ID",
            "INVALID_DATE",
            "FROM_NAME_HAS_ADDRESS",
            "REPLYTO_FREEMAIL_DIFFERS",
            "SUBJECT_ALL_CAPS",
            "SUBJECT_EXCLAIM",
        ] {
            assert!(h.get(s).is_some(), "{s} missing from {:?}", h.0);
        }
        let h = run("To: b@c.example\r\n\r\nbody\r\n");
        for s in [
            "MISSING_MESSAGE_ID",
            "MISSING_DATE",
            "MISSING_FROM",
            "EMPTY_SUBJECT",
        ] {
            assert!(h.get(s).is_some(), "{s} missing from {:?}", h.0);
        }
    }

    #[test]
    fn deceptive_links() {
        let h = run("From: a@b.example\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n<a href=\"http://198.51.100.7/paypal/\">https://www.paypal.com/signin</a><a href=\"https://www.shop.example/x\">shop.example</a>\r\n");
        let ev = &h.get("LINK_TEXT_DOMAIN_MISMATCH").unwrap().evidence;
        assert_eq!(
            ev,
            &vec!["link shows www.paypal.com but goes to 198.51.100.7".to_string()]
        );
        assert!(h.get("URL_IP_LITERAL").is_some());
        assert!(h.get("HTML_ONLY").is_some());
    }

    #[test]
    fn gtube() {
        let raw = format!(
            "Subject: t\r\n\r\n{}\r\n",
            std::str::from_utf8(GTUBE).unwrap()
        );
        assert!(run(&raw).get("GTUBE").is_some());
    }
}

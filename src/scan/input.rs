//! Finding the messages of a corpus: `.eml` files, directories (recursive,
//! maildir `cur/` and `new/`), mbox files and manifests (`path<TAB>label`),
//! with their labels and envelope facts. Reads files; scores nothing.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::envelope::{Client, Envelope, Family};

use super::ScanError;

/// What a corpus says a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Spam,
    Ham,
}

impl Label {
    pub fn parse(text: &str) -> Option<Label> {
        match text.trim().to_ascii_lowercase().as_str() {
            "spam" => Some(Label::Spam),
            "ham" => Some(Label::Ham),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Spam => "spam",
            Label::Ham => "ham",
        }
    }
}

/// Envelope facts a corpus may carry for a message (manifest columns or a
/// `<message>.env` sidecar); anything missing is taken from the headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeFacts {
    pub login: Option<String>,
    pub mail_from: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub rcpts: Vec<String>,
    /// Submitted through sendmail(1) rather than SMTP.
    pub local: Option<bool>,
}

impl EnvelopeFacts {
    /// Set one fact by its manifest column / sidecar key. Unknown keys are
    /// ignored so that manifests can carry other columns.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        if value.is_empty() || value == "-" {
            return Ok(());
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "login" | "auth_login" => self.login = Some(value.to_string()),
            "mail_from" => self.mail_from = Some(value.to_string()),
            "client_ip" => {
                self.client_ip = Some(
                    value
                        .parse()
                        .map_err(|_| format!("client_ip {value:?} is not an IP address"))?,
                )
            }
            "helo" => self.helo = Some(value.to_string()),
            "rcpt" | "rcpts" => self.rcpts.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from),
            ),
            "local" => {
                self.local = Some(matches!(
                    value.to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes"
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn merge(&mut self, other: EnvelopeFacts) {
        self.login = other.login.or(self.login.take());
        self.mail_from = other.mail_from.or(self.mail_from.take());
        self.client_ip = other.client_ip.or(self.client_ip);
        self.helo = other.helo.or(self.helo.take());
        if !other.rcpts.is_empty() {
            self.rcpts = other.rcpts;
        }
        self.local = other.local.or(self.local);
    }

    /// The envelope the daemon would have seen: these facts, completed from
    /// the message headers (MAIL FROM from `From:`, recipients from `To:`/`Cc:`).
    pub fn envelope(&self, raw: &[u8]) -> Envelope {
        let parsed = mail_parser::MessageParser::default().parse_headers(raw);
        let header_from = parsed
            .as_ref()
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(String::from);
        let header_rcpts: Vec<String> = parsed
            .as_ref()
            .map(|m| {
                [m.to(), m.cc()]
                    .into_iter()
                    .flatten()
                    .flat_map(|a| a.iter())
                    .filter_map(|a| a.address().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let local = self.local.unwrap_or(false);
        let mut macros = std::collections::BTreeMap::new();
        if let Some(login) = &self.login {
            macros.insert("{auth_authen}".to_string(), login.clone());
        }
        Envelope {
            client: Client {
                hostname: self
                    .client_ip
                    .map_or_else(|| "localhost".to_string(), |ip| format!("[{ip}]")),
                family: match (local, self.client_ip) {
                    (true, _) => Family::Unix,
                    (false, Some(IpAddr::V4(_))) => Family::Inet,
                    (false, Some(IpAddr::V6(_))) => Family::Inet6,
                    (false, None) => Family::Unknown,
                },
                addr: self.client_ip,
                port: 0,
                helo: self.helo.clone(),
            },
            auth_login: self.login.clone(),
            auth_type: self.login.as_ref().map(|_| "PLAIN".to_string()),
            mail_from: self.mail_from.clone().or(header_from).unwrap_or_default(),
            mail_args: vec![format!("SIZE={}", raw.len())],
            rcpts: if self.rcpts.is_empty() {
                header_rcpts
            } else {
                self.rcpts.clone()
            },
            queue_id: None,
            mta_host: None,
            local_submission: local,
            macros,
        }
    }
}

/// Where a message's bytes are.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file holding one message, read when it is scored.
    File(PathBuf),
    /// One message cut out of an mbox.
    Bytes(Arc<[u8]>),
}

/// One message to score.
#[derive(Debug, Clone)]
pub struct Item {
    /// Stable name, relative to the input it came from (`spam/x.eml`,
    /// `box.mbox#3`); the key of baselines.
    pub id: String,
    /// Where it lives on disk (with `#n` for mbox messages).
    pub path: String,
    pub label: Option<Label>,
    pub facts: EnvelopeFacts,
    pub source: Source,
}

impl Item {
    pub fn bytes(&self) -> Result<Arc<[u8]>, ScanError> {
        match &self.source {
            Source::Bytes(b) => Ok(b.clone()),
            Source::File(p) => fs::read(p)
                .map(|raw| Arc::from(strip_from_line(&raw)))
                .map_err(|e| ScanError::io(p, e)),
        }
    }
}

/// One manifest row.
#[derive(Debug, Clone)]
struct ManifestRow {
    label: Option<Label>,
    facts: EnvelopeFacts,
}

/// Parse a manifest: `path<TAB>label[<TAB>…]`, optionally with a header row
/// (first field `path`) naming further columns (`login`, `mail_from`,
/// `client_ip`, `helo`, `rcpts`, `local`). Lines starting with `#` and blank
/// lines are skipped. Every bad line is reported.
fn parse_manifest(file: &Path) -> Result<Vec<(String, ManifestRow)>, ScanError> {
    let text = fs::read_to_string(file).map_err(|e| ScanError::io(file, e))?;
    let mut columns: Vec<String> = vec!["path".into(), "label".into()];
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if rows.is_empty() && fields[0].trim().eq_ignore_ascii_case("path") {
            columns = fields
                .iter()
                .map(|f| f.trim().to_ascii_lowercase())
                .collect();
            continue;
        }
        let mut path = None;
        let mut row = ManifestRow {
            label: None,
            facts: EnvelopeFacts::default(),
        };
        for (column, value) in columns.iter().zip(&fields) {
            match column.as_str() {
                "path" => path = Some(value.trim().to_string()),
                "label" => match value.trim() {
                    "" | "-" => {}
                    v => match Label::parse(v) {
                        Some(l) => row.label = Some(l),
                        None => problems.push(format!(
                            "{}:{line_no}: label {v:?} is neither spam nor ham",
                            file.display()
                        )),
                    },
                },
                other => {
                    if let Err(e) = row.facts.set(other, value) {
                        problems.push(format!("{}:{line_no}: {e}", file.display()));
                    }
                }
            }
        }
        match path {
            Some(p) if !p.is_empty() => rows.push((p, row)),
            _ => problems.push(format!("{}:{line_no}: no path", file.display())),
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(ScanError::Input(problems))
    }
}

/// Parse a `<message>.env` sidecar: `key: value` or `key=value` lines.
fn read_sidecar(message: &Path) -> Result<Option<EnvelopeFacts>, ScanError> {
    let mut name = message.as_os_str().to_owned();
    name.push(".env");
    let sidecar = PathBuf::from(name);
    let text = match fs::read_to_string(&sidecar) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ScanError::io(&sidecar, e)),
    };
    let mut facts = EnvelopeFacts::default();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once([':', '=']) else {
            problems.push(format!(
                "{}:{}: expected `key: value`",
                sidecar.display(),
                n + 1
            ));
            continue;
        };
        if let Err(e) = facts.set(key, value) {
            problems.push(format!("{}:{}: {e}", sidecar.display(), n + 1));
        }
    }
    if problems.is_empty() {
        Ok(Some(facts))
    } else {
        Err(ScanError::Input(problems))
    }
}

/// The label a folder name gives: the nearest `spam`/`ham` path component.
fn label_from_path(path: &Path) -> Option<Label> {
    path.components().rev().find_map(|c| match c {
        Component::Normal(name) => name.to_str().and_then(Label::parse),
        _ => None,
    })
}

/// Split an mbox into its messages. A message starts at a `From ` line at the
/// top of the file or after a blank line; `>From ` quoting is undone.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut previous_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if previous_blank && is_separator(line) {
            if let Some(mut m) = current.take() {
                trim_separator(&mut m);
                messages.push(m);
            }
            current = Some(Vec::new());
            previous_blank = false;
            continue;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        previous_blank = body.is_empty();
        if let Some(m) = current.as_mut() {
            let unquoted = match line.iter().position(|&b| b != b'>') {
                Some(n) if n > 0 && line[n..].starts_with(b"From ") => &line[1..],
                _ => line,
            };
            m.extend_from_slice(unquoted);
        }
    }
    if let Some(mut m) = current {
        trim_separator(&mut m);
        messages.push(m);
    }
    messages
}

/// A `From sender date` line: `From ` followed by a sender and a date that
/// has an `hh:mm` time, so that unquoted body lines starting with "From " are
/// not mistaken for one.
fn is_separator(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    let mut words = text.split_whitespace();
    words.next().is_some()
        && words.any(|w| {
            let b = w.as_bytes();
            b.len() >= 5
                && b[0].is_ascii_digit()
                && b[1].is_ascii_digit()
                && b[2] == b':'
                && b[3].is_ascii_digit()
                && b[4].is_ascii_digit()
        })
}

/// Drop the blank line that separates a message from the next `From ` line.
fn trim_separator(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n\n") {
        message.truncate(message.len() - 1);
    }
}

/// A single message saved with an mbox `From ` line on top (as many public
/// corpora are): the relay never sees that line, so drop it.
fn strip_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(end) => &raw[end + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// Does this file hold an mbox (rather than one message)? `.eml`/`.msg`
/// files never do; `.mbox`/`.mbx` always; others when they open with `From `.
fn is_mbox(path: &Path) -> Result<bool, ScanError> {
    match ext(path).as_deref() {
        Some("mbox" | "mbx") => return Ok(true),
        Some("eml" | "msg") => return Ok(false),
        _ => {}
    }
    use std::io::Read;
    let mut head = [0u8; 5];
    let mut f = fs::File::open(path).map_err(|e| ScanError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| ScanError::io(path, e))?;
    Ok(&head[..n] == b"From ")
}

/// Does the file open with `From ` or a header line (`Name: value`)?
fn looks_like_mail(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 128];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"From ") {
        return true;
    }
    let name_len = head
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-')
        .count();
    name_len > 0 && head.get(name_len) == Some(&b':')
}

fn ext(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// Is this file, met while walking a directory, a message or an mbox?
fn is_message_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        return false;
    }
    let in_maildir = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "cur" || n == "new");
    match ext(path).as_deref() {
        Some("eml" | "msg" | "mbox" | "mbx") => true,
        _ if in_maildir => true,
        // Extension-less files (MH folders, mbox files) when they look like mail.
        None => looks_like_mail(path),
        _ => false,
    }
}

/// Everything to scan, in a stable order.
pub fn collect(inputs: &[PathBuf]) -> Result<Vec<Item>, ScanError> {
    let mut items = Vec::new();
    for input in inputs {
        let meta = fs::metadata(input).map_err(|e| ScanError::io(input, e))?;
        if meta.is_dir() {
            collect_dir(input, &mut items)?;
        } else if ext(input).as_deref() == Some("tsv") {
            collect_manifest(input, &mut items)?;
        } else {
            let (id, label, mut facts) = match enclosing_manifest_row(input)? {
                Some((rel, row)) => (rel, row.label.or_else(|| label_from_path(input)), row.facts),
                None => (
                    input
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| input.display().to_string()),
                    label_from_path(input),
                    EnvelopeFacts::default(),
                ),
            };
            if let Some(f) = read_sidecar(input)? {
                facts.merge(f);
            }
            push_file(input, id, label, facts, &mut items)?;
        }
    }
    Ok(items)
}

/// For a message named on its own: the `MANIFEST.tsv` of an enclosing
/// corpus that lists it, so that one message scores as it does in its corpus.
fn enclosing_manifest_row(file: &Path) -> Result<Option<(String, ManifestRow)>, ScanError> {
    let Ok(absolute) = fs::canonicalize(file) else {
        return Ok(None);
    };
    for dir in absolute.ancestors().skip(1) {
        let manifest = dir.join("MANIFEST.tsv");
        if !manifest.is_file() {
            continue;
        }
        let rel = normalise(
            &absolute
                .strip_prefix(dir)
                .unwrap_or(&absolute)
                .to_string_lossy(),
        );
        let row = parse_manifest(&manifest)?
            .into_iter()
            .find(|(path, _)| normalise(path) == rel);
        if let Some((_, row)) = row {
            return Ok(Some((rel, row)));
        }
    }
    Ok(None)
}

fn push_file(
    path: &Path,
    id: String,
    label: Option<Label>,
    facts: EnvelopeFacts,
    items: &mut Vec<Item>,
) -> Result<(), ScanError> {
    if is_mbox(path)? {
        let data = fs::read(path).map_err(|e| ScanError::io(path, e))?;
        for (n, message) in split_mbox(&data).into_iter().enumerate() {
            items.push(Item {
                id: format!("{id}#{}", n + 1),
                path: format!("{}#{}", path.display(), n + 1),
                label,
                facts: facts.clone(),
                source: Source::Bytes(Arc::from(message)),
            });
        }
    } else {
        items.push(Item {
            id,
            path: path.display().to_string(),
            label,
            facts,
            source: Source::File(path.to_path_buf()),
        });
    }
    Ok(())
}

fn collect_manifest(manifest: &Path, items: &mut Vec<Item>) -> Result<(), ScanError> {
    let base = manifest.parent().unwrap_or(Path::new("."));
    let rows = parse_manifest(manifest)?;
    let mut missing = Vec::new();
    for (rel, row) in rows {
        let path = base.join(&rel);
        if !path.is_file() {
            missing.push(format!(
                "{}: listed message {} does not exist",
                manifest.display(),
                path.display()
            ));
            continue;
        }
        let mut facts = row.facts;
        if let Some(f) = read_sidecar(&path)? {
            facts.merge(f);
        }
        let label = row.label.or_else(|| label_from_path(Path::new(&rel)));
        push_file(&path, rel, label, facts, items)?;
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ScanError::Input(missing))
    }
}

/// The corpus a directory without its own `MANIFEST.tsv` is part of: the
/// nearest enclosing directory with one, and the directory's path in it
/// (`ham/` of `corpus/`).
fn enclosing_corpus(dir: &Path) -> Option<(PathBuf, String)> {
    let absolute = fs::canonicalize(dir).ok()?;
    absolute.ancestors().skip(1).find_map(|base| {
        let manifest = base.join("MANIFEST.tsv");
        manifest.is_file().then(|| {
            let rel = absolute.strip_prefix(base).unwrap_or(&absolute);
            (manifest, normalise(&rel.to_string_lossy()))
        })
    })
}

/// Walk a directory. A `MANIFEST.tsv` at its top gives labels and envelope
/// facts for the files it lists; other files are labelled by their folders.
/// A folder of a corpus (`corpus/ham`) is scanned as part of it: its ids and
/// envelopes are the corpus's, so it compares with the corpus's baseline.
fn collect_dir(root: &Path, items: &mut Vec<Item>) -> Result<(), ScanError> {
    let manifest_path = root.join("MANIFEST.tsv");
    let mut manifest: HashMap<String, ManifestRow> = HashMap::new();
    let mut prefix = String::new();
    if !manifest_path.is_file() {
        if let Some((enclosing, rel)) = enclosing_corpus(root) {
            manifest = parse_manifest(&enclosing)?
                .into_iter()
                .map(|(path, row)| (normalise(&path), row))
                .collect();
            prefix = format!("{rel}/");
        }
    } else {
        let mut missing = Vec::new();
        for (rel, row) in parse_manifest(&manifest_path)? {
            if !root.join(&rel).is_file() {
                missing.push(format!(
                    "{}: listed message {rel} does not exist",
                    manifest_path.display()
                ));
            }
            manifest.insert(normalise(&rel), row);
        }
        if !missing.is_empty() {
            return Err(ScanError::Input(missing));
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    for path in files {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let id = format!("{prefix}{}", normalise(&rel.to_string_lossy()));
        let (label, mut facts) = match manifest.get(&id) {
            Some(row) => (
                row.label.or_else(|| label_from_path(&path)),
                row.facts.clone(),
            ),
            None => (label_from_path(&path), EnvelopeFacts::default()),
        };
        if let Some(f) = read_sidecar(&path)? {
            facts.merge(f);
        }
        push_file(&path, id, label, facts, items)?;
    }
    Ok(())
}

fn normalise(rel: &str) -> String {
    rel.trim_start_matches("./").replace('\\', "/")
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ScanError> {
    let entries = fs::read_dir(dir).map_err(|e| ScanError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ScanError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ScanError::io(&path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            // Maildir's tmp/ holds messages still being written.
            if !name.starts_with('.') && name != "tmp" {
                walk(&path, files)?;
            }
        } else if kind.is_file() && is_message_file(&path) {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_on_from_lines_and_unquotes() {
        let mbox = b"From a@b Mon Nov 16 10:00:00 2026\nSubject: one\n\n>From the start\nbody\n\nFrom c@d Mon Nov 16 10:01:00 2026\nSubject: two\n\nFrom inside a paragraph is not a separator\n";
        let messages = split_mbox(mbox);
        assert_eq!(messages.len(), 2);
        assert!(messages[1].ends_with(b"not a separator\n"));
        assert_eq!(
            messages[0],
            b"Subject: one\n\nFrom the start\nbody\n".to_vec()
        );
        assert!(messages[1].starts_with(b"Subject: two"));
    }

    #[test]
    fn a_leading_from_line_is_not_part_of_the_message() {
        assert_eq!(
            strip_from_line(b"From a@b Mon Nov 16 10:00:00 2026\nSubject: x\n\nhi\n"),
            b"Subject: x\n\nhi\n"
        );
        assert_eq!(strip_from_line(b"From: a@b\n\nhi\n"), b"From: a@b\n\nhi\n");
    }

    #[test]
    fn labels_come_from_the_nearest_folder() {
        assert_eq!(
            label_from_path(Path::new("c/ham/x/spam/a.eml")),
            Some(Label::Spam)
        );
        assert_eq!(label_from_path(Path::new("c/other/a.eml")), None);
    }

    #[test]
    fn envelope_is_completed_from_headers() {
        let facts = EnvelopeFacts {
            login: Some("info@shop.example".into()),
            ..Default::default()
        };
        let env = facts.envelope(b"From: Shop <sales@shop.example>\r\nTo: a@x.example, b@y.example\r\nCc: c@z.example\r\n\r\nhi\r\n");
        assert_eq!(env.mail_from, "sales@shop.example");
        assert_eq!(env.rcpts, ["a@x.example", "b@y.example", "c@z.example"]);
        assert_eq!(env.auth_login.as_deref(), Some("info@shop.example"));
    }
}

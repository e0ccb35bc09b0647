//! Attachment checks: dangerous extensions (from `scores/attachments.toml`),
//! double extensions, bidi tricks in names, declared type or extension vs
//! the type sniffed from magic bytes, dangerous files inside zip archives,
//! encrypted archives. Names and types only; nothing is ever opened or run.

use std::collections::HashSet;

use super::Hits;
use crate::message::normalize::is_invisible;
use crate::message::{sniff, Attachment};

/// Extension lists from `scores/attachments.toml`, lower case, no dot.
#[derive(Debug, Clone, Default)]
pub struct AttachmentPolicy {
    /// Run code when opened.
    pub dangerous: HashSet<String>,
    /// Look harmless; used as the decoy in `invoice.pdf.exe`.
    pub decoy: HashSet<String>,
    /// Archive formats whose members are listed.
    pub archives: HashSet<String>,
}

/// The extension of a file name, lower case, as Windows sees it (trailing
/// dots and spaces ignored).
pub fn extension(name: &str) -> Option<String> {
    let name = name.trim_end_matches(['.', ' ']);
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 8 {
        return None;
    }
    Some(ext.to_lowercase())
}

/// A file the providers' attachment rule blocks whatever the text says: a
/// dangerous extension, an executable whatever its name, or such a file
/// inside an archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DangerousFile {
    /// The attachment's name as sent (`(no name)` when it has none).
    pub name: String,
    /// The archive member that is dangerous, when the attachment is an
    /// archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The extension that is not allowed (`exe`), or the sniffed type of an
    /// executable whose name hides it (`pe`).
    pub ext: String,
    /// `true` when the content is an executable whatever the name says.
    #[serde(default)]
    pub sniffed: bool,
}

impl AttachmentPolicy {
    /// Every dangerous file in `attachments`, in order.
    pub fn dangerous_files(&self, attachments: &[Attachment]) -> Vec<DangerousFile> {
        let mut out = Vec::new();
        for att in attachments {
            let name = att.name.as_deref().unwrap_or("");
            let clean: String = name.chars().filter(|c| !is_invisible(*c)).collect();
            let shown = if name.is_empty() {
                "(no name)".to_string()
            } else {
                name.to_string()
            };
            if let Some(ext) = self.is_dangerous(&clean) {
                out.push(DangerousFile {
                    name: shown.clone(),
                    member: None,
                    ext,
                    sniffed: false,
                });
            } else if let Some(kind) = att.sniffed_type.filter(|k| sniff::is_executable(k)) {
                out.push(DangerousFile {
                    name: shown.clone(),
                    member: None,
                    ext: kind.to_string(),
                    sniffed: true,
                });
            }
            for member in &att.archive_members {
                let m: String = member.chars().filter(|c| !is_invisible(*c)).collect();
                let file = m.rsplit('/').next().unwrap_or(&m);
                if let Some(ext) = self.is_dangerous(file) {
                    out.push(DangerousFile {
                        name: shown.clone(),
                        member: Some(member.clone()),
                        ext,
                        sniffed: false,
                    });
                }
            }
        }
        out
    }

    fn is_dangerous(&self, name: &str) -> Option<String> {
        extension(name).filter(|e| self.dangerous.contains(e))
    }

    /// `invoice.pdf.exe`, `photo.jpg      .scr`.
    fn double_extension(&self, name: &str) -> Option<String> {
        let last = self.is_dangerous(name)?;
        let trimmed = name.trim_end_matches(['.', ' ']);
        let stem = &trimmed[..trimmed.len() - last.len() - 1];
        let padded = stem.ends_with("  ") || stem.ends_with('_');
        let inner = extension(stem.trim_end());
        match inner {
            Some(inner) if self.decoy.contains(&inner) => Some(format!(".{inner}.{last}")),
            _ if padded => Some(format!("padding before .{last}")),
            _ => None,
        }
    }

    pub fn check(&self, attachments: &[Attachment], hits: &mut Hits) {
        for att in attachments {
            let name = att.name.as_deref().unwrap_or("");
            let shown = if name.is_empty() {
                "(no name)".to_string()
            } else {
                format!("\"{}\"", name.escape_debug())
            };
            let clean: String = name.chars().filter(|c| !is_invisible(*c)).collect();
            if clean.len() != name.len() {
                hits.add(
                    "ATTACH_BIDI_NAME",
                    1.0,
                    format!("{shown} hides direction or zero-width characters"),
                );
            }
            if let Some(ext) = self.is_dangerous(&clean) {
                hits.add("ATTACH_DANGEROUS_EXT", 1.0, format!("{shown}: .{ext}"));
            }
            if let Some(what) = self.double_extension(&clean) {
                hits.add("ATTACH_DOUBLE_EXT", 1.0, format!("{shown}: {what}"));
            }
            let ext = extension(&clean);
            if let Some(kind) = att.sniffed_type {
                let runs = sniff::is_executable(kind) || sniff::is_container(kind);
                if runs {
                    hits.add(
                        "ATTACH_EXECUTABLE",
                        1.0,
                        format!("{shown} is a {kind} file"),
                    );
                }
                let ext_ok = ext.as_deref().is_some_and(|e| self.dangerous.contains(e));
                let declared = att.declared_type.as_deref().unwrap_or("");
                let declared_doc = declared.starts_with("image/")
                    || declared.starts_with("text/")
                    || declared.contains("pdf")
                    || declared.contains("word")
                    || declared.contains("excel")
                    || declared.contains("officedocument");
                if runs && (!ext_ok || declared_doc) {
                    hits.add(
                        "ATTACH_TYPE_MISMATCH",
                        1.0,
                        format!(
                            "{shown} declared {} but is a {kind} file",
                            if declared.is_empty() {
                                "nothing"
                            } else {
                                declared
                            }
                        ),
                    );
                }
            }
            let is_html = ext
                .as_deref()
                .is_some_and(|e| matches!(e, "htm" | "html" | "shtml" | "xhtml" | "svg"))
                || att.sniffed_type == Some("html");
            if is_html {
                hits.add("ATTACH_HTML", 1.0, format!("{shown} is an HTML page"));
            }
            for member in &att.archive_members {
                let m: String = member.chars().filter(|c| !is_invisible(*c)).collect();
                let file = m.rsplit('/').next().unwrap_or(&m);
                if let Some(e) = self.is_dangerous(file) {
                    hits.add(
                        "ATTACH_ARCHIVE_DANGEROUS",
                        1.0,
                        format!("{shown} contains \"{}\" (.{e})", member.escape_debug()),
                    );
                } else if extension(file).is_some_and(|e| self.archives.contains(&e)) {
                    hits.add(
                        "ATTACH_ARCHIVE_DANGEROUS",
                        0.5,
                        format!("{shown} contains the archive \"{}\"", member.escape_debug()),
                    );
                }
            }
            if att.encrypted {
                hits.add(
                    "ATTACH_ENCRYPTED_ARCHIVE",
                    1.0,
                    format!("{shown} is password-protected"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AttachmentPolicy {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        AttachmentPolicy {
            dangerous: set(&["exe", "scr", "js", "iso"]),
            decoy: set(&["pdf", "jpg", "doc"]),
            archives: set(&["zip", "rar"]),
        }
    }

    fn run(att: Attachment) -> Hits {
        let mut hits = Hits::default();
        policy().check(&[att], &mut hits);
        hits
    }

    #[test]
    fn double_extension_and_bidi() {
        let h = run(Attachment {
            name: Some("invoice.pdf.exe".into()),
            ..Default::default()
        });
        assert!(h.get("ATTACH_DANGEROUS_EXT").is_some());
        assert_eq!(
            h.get("ATTACH_DOUBLE_EXT").unwrap().evidence,
            vec!["\"invoice.pdf.exe\": .pdf.exe"]
        );
        let h = run(Attachment {
            name: Some("report\u{202E}fdp.exe".into()),
            ..Default::default()
        });
        assert!(h.get("ATTACH_BIDI_NAME").is_some());
        assert!(h.get("ATTACH_DANGEROUS_EXT").is_some());
        let h = run(Attachment {
            name: Some("notes.txt".into()),
            ..Default::default()
        });
        assert!(h.0.is_empty());
    }

    #[test]
    fn executable_dressed_as_pdf() {
        let h = run(Attachment {
            name: Some("scan.pdf".into()),
            declared_type: Some("application/pdf".into()),
            sniffed_type: Some("pe"),
            ..Default::default()
        });
        assert!(h.get("ATTACH_TYPE_MISMATCH").is_some());
        assert!(h.get("ATTACH_EXECUTABLE").is_some());
    }

    #[test]
    fn zip_contents_and_encryption() {
        let h = run(Attachment {
            name: Some("docs.zip".into()),
            sniffed_type: Some("zip"),
            archive_members: vec!["a/readme.txt".into(), "a/setup.js".into()],
            encrypted: true,
            ..Default::default()
        });
        assert!(h.get("ATTACH_ARCHIVE_DANGEROUS").unwrap().evidence[0].contains("setup.js"));
        assert!(h.get("ATTACH_ENCRYPTED_ARCHIVE").is_some());
    }
}

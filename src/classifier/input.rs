//! Training inputs: `.eml` files, directories (recursive), mbox files and
//! labelled manifests (`path<TAB>label…`), turned into labelled raw messages.
//! Knows nothing of the model.

use std::path::{Path, PathBuf};

/// A labelled training source that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: label {label:?} is neither spam nor ham")]
    Label {
        path: PathBuf,
        line: usize,
        label: String,
    },
}

/// Expands paths into message files: directories are walked recursively in
/// name order (hidden entries skipped).
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let io = |e| InputError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(p).map_err(io)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| {
                !e.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Splits a file into messages: an mbox (two or more `From ` separator
/// lines) gives one message per separator; anything else is one message.
pub fn split_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    if data.starts_with(b"From ") {
        starts.push(0);
    }
    let mut i = 0;
    while let Some(off) = find(&data[i..], b"\nFrom ") {
        starts.push(i + off + 1);
        i += off + 1;
    }
    if starts.len() < 2 || starts[0] != 0 {
        return vec![data];
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let e = starts.get(n + 1).copied().unwrap_or(data.len());
        out.push(&data[s..e]);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One labelled row of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub path: PathBuf,
    pub is_spam: bool,
    /// Remaining columns, as written (source, sha256, lang… in the corpus).
    pub extra: Vec<String>,
}

/// Reads a `path<TAB>label[<TAB>…]` manifest; a header row (label column
/// `label`) and `#` comments are skipped; relative paths are taken from the
/// manifest's directory.
pub fn manifest(path: &Path) -> Result<Vec<ManifestRow>, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| InputError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t');
        let p = cols.next().unwrap_or("");
        let label = cols.next().unwrap_or("").trim();
        let is_spam = match label {
            "spam" => true,
            "ham" => false,
            "label" if n == 0 => continue,
            other => {
                return Err(InputError::Label {
                    path: path.to_path_buf(),
                    line: n + 1,
                    label: other.to_string(),
                })
            }
        };
        rows.push(ManifestRow {
            path: base.join(p),
            is_spam,
            extra: cols.map(str::to_string).collect(),
        });
    }
    Ok(rows)
}

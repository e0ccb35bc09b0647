//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared labelled corpus (`MANIFEST.tsv` + messages): `$OUTSCORE_SHARED_CORPUS`,
/// else `../shared/corpus` beside the repository. It is not part of the
/// repository: on a machine without it the calling test says plainly that it
/// did not run, except under CI (`CI=true`), where its absence is a failure.
pub fn shared_corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("OUTSCORE_SHARED_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    if dir.join("MANIFEST.tsv").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the shared corpus is missing at {} (CI must have it)",
            dir.display()
        );
    }
    eprintln!(
        "NOT RUN: the shared corpus is not at {} (set OUTSCORE_SHARED_CORPUS)",
        dir.display()
    );
    None
}

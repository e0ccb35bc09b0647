//! `outscore report list|show|export` and `outscore purge` against a real
//! SQLite store in a data dir.

use std::process::{Command, Output};

use crate::support::store::*;
use outscore::store::{now_ms, ReportStore, Store};

fn outscore(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OUTSCORE_CONFIG")
        .output()
        .expect("run outscore")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn report_commands_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("outscore.db").display());
    let store = Store::connect(&url, options()).await.unwrap();
    let fresh = report(1, "ivy@example.com", now_ms(), 12.5, Some("L-SPAM20"));
    let other = report(2, "jack@example.com", now_ms(), 0.5, None);
    let old = report(
        3,
        "ivy@example.com",
        now_ms() - chrono::Duration::hours(80),
        9.0,
        None,
    );
    store
        .insert_reports(&[fresh.clone(), other.clone(), old.clone()])
        .await
        .unwrap();
    store.close().await;

    let list = outscore(
        dir.path(),
        &["report", "list", "--account", "ivy@example.com"],
    );
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert!(text.contains(fresh.id.as_str()), "{text}");
    assert!(text.contains("L-SPAM20"), "{text}");
    assert!(
        !text.contains(other.id.as_str()),
        "filtered by account: {text}"
    );
    assert!(!text.contains(old.id.as_str()), "expired: {text}");

    let json = outscore(
        dir.path(),
        &["report", "list", "--min-score", "10", "--json"],
    );
    let lines: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], fresh.id.as_str());

    let show = outscore(dir.path(), &["report", "show", fresh.id.as_str()]);
    assert!(show.status.success(), "{show:?}");
    let text = stdout(&show);
    assert!(text.contains("KEYWORD_SPAM"), "{text}");
    assert!(
        text.contains("keyword 'viagra' in Subject (report 1)"),
        "{text}"
    );
    assert!(text.contains("Q000001"), "{text}");

    let export = outscore(dir.path(), &["report", "export", fresh.id.as_str()]);
    assert!(export.status.success());
    assert_eq!(export.stdout, fresh.content, "raw message, byte for byte");

    let expired = outscore(dir.path(), &["report", "export", old.id.as_str()]);
    assert!(!expired.status.success());
    assert!(String::from_utf8_lossy(&expired.stderr).contains("expired"));

    let bad = outscore(dir.path(), &["report", "show", "nope"]);
    assert!(!bad.status.success());

    let purge = outscore(dir.path(), &["purge"]);
    assert!(purge.status.success(), "{purge:?}");
    assert!(
        stdout(&purge).contains("purged 1 report"),
        "{}",
        stdout(&purge)
    );
    let gone = outscore(dir.path(), &["report", "export", old.id.as_str()]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not found"));
}

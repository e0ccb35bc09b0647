//! `outscore account …` against a real SQLite store in a temporary data
//! dir: suspend, list, show, self-service unblock once, the 90-day refusal
//! (exit 3), the abuse team's unblock with a reason, reset-done, import.

use std::path::Path;
use std::process::{Command, Output};

fn outscore(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outscore"))
        .arg("account")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OUTSCORE_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn account_commands_follow_the_90_day_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let login = "victim@hosted.example";

    let o = outscore(
        data,
        &[
            "suspend",
            login,
            "--by",
            "maria",
            "--reason",
            "phishing run",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("active -> suspended"), "{}", text(&o));

    let o = outscore(data, &["list"]);
    assert!(
        text(&o).contains(login) && text(&o).contains("phishing run"),
        "{}",
        text(&o)
    );

    let o = outscore(data, &["show", login]);
    assert!(text(&o).contains("status:    suspended"), "{}", text(&o));
    assert!(text(&o).contains("abuse:maria suspend"), "{}", text(&o));

    // A hand-made suspension is for the abuse team to lift.
    let o = outscore(data, &["unblock", login]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = outscore(data, &["unblock", login, "--by", "maria"]);
    assert_eq!(o.status.code(), Some(3), "reason required: {}", text(&o));
    let o = outscore(
        data,
        &["unblock", login, "--by", "maria", "--reason", "cleaned"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("suspended -> active"), "{}", text(&o));

    // Not blocked any more: nothing to lift.
    let o = outscore(data, &["reset-done", login]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    let o = outscore(data, &["show", login, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["facts"]["status"]["status"], "active");
    assert_eq!(json["facts"]["history"]["suspensions_90d"], 1);
    assert_eq!(json["unblocks"].as_array().unwrap().len(), 1);
}

#[test]
fn import_validates_and_installs_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "login,contact,sensitivity\nbad@x.example,nobody,extreme\n",
    )
    .unwrap();
    let o = outscore(dir.path(), &["import", csv.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains(":2:"), "{}", text(&o));
    std::fs::write(
        &csv,
        "login,contact,sensitivity\nshop@hosted.example,owner@contact.example,high\n",
    )
    .unwrap();
    let o = outscore(dir.path(), &["import", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.path().join("accounts.csv").exists());
}

#[test]
fn suspension_under_a_tier_is_for_the_abuse_team_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let login = "mass@hosted.example";
    let suspend = |tier: &str| {
        outscore(
            data,
            &[
                "suspend", login, "--by", "maria", "--reason", "10k spam", "--tier", tier,
            ],
        )
    };
    // Not a suspension tier, or not a tier at all: refused, nothing stored.
    let o = suspend("L-SPAM10");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not a suspension tier"), "{}", text(&o));
    let o = suspend("L-SPAM99");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown tier"), "{}", text(&o));
    let o = outscore(data, &["show", login, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["facts"]["status"]["status"], "active");

    let o = suspend("L-SPAM40");
    assert!(o.status.success(), "{}", text(&o));
    let o = outscore(data, &["show", login, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["facts"]["status"]["tier"], "L-SPAM40", "{json}");
    // L-SPAM40 is never self-service.
    let o = outscore(data, &["unblock", login]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("mass abuse"), "{}", text(&o));
}

/// `outscore account show X | head`: the reader is gone before the command
/// writes; it ends quietly, as Unix tools do, instead of panicking.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["account", "show", "x@hosted.example", "--data-dir"])
        .arg(dir.path())
        .env_remove("OUTSCORE_CONFIG")
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The daemon's log written to a file or pipe carries no colour codes.
#[test]
fn the_log_has_no_colour_codes_off_a_terminal() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outscore.toml");
    std::fs::write(
        &config,
        "[milter]\nlisten = [\"inet:127.0.0.1:0\"]\n[http]\nenabled = false\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .take(40)
    {
        let line = line.unwrap();
        let started = line.contains("outscore started");
        lines.push(line);
        if started {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(log.contains("outscore started"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

//! `outscore check` end to end: the real binary on a configuration and rule
//! files with errors in every stage, all reported in one run.

use std::fs;
use std::process::Command;

#[test]
fn check_lists_every_error_of_every_stage_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores");
    fs::create_dir(&scores).unwrap();
    // One duplicate table in symbols.toml: one error, not one per symbol.
    fs::write(
        scores.join("symbols.toml"),
        "[GTUBE]\ngroup = \"test\"\nweight = 1000.0\ndescription = \"GTUBE\"\n\
         [GTUBE]\ngroup = \"test\"\nweight = 1.0\ndescription = \"again\"\n",
    )
    .unwrap();
    fs::write(scores.join("groups.toml"), "[x]\nmax_score = -1\n").unwrap();
    let d = dir.path().display();
    let config = dir.path().join("outscore.toml");
    fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n\
             colour = \"blue\"\n\
             [milter]\n\
             listen_on = [\"inet:127.0.0.1:1\"]\n\
             max_connections = \"many\"\n\
             max_frame_bytes = 1024\n\
             [scoring]\n\
             scores_dir = \"{d}/scores\"\n\
             [accounts]\n\
             directory_csv = \"{d}/missing.csv\"\n\
             [identity]\n\
             accounts_file = \"{d}/missing-identities.toml\"\n\
             [notify]\n\
             email_template = \"{d}/missing-template.txt\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{said}");
    let at = |line: usize, what: &str| {
        let prefix = format!("outscore.toml:{line}: ");
        assert!(
            said.lines()
                .any(|l| l.contains(&prefix) && l.contains(what)),
            "no error at line {line} about {what}:\n{said}"
        );
    };
    at(2, "colour");
    at(4, "milter.listen_on");
    at(5, "milter.max_connections");
    at(6, "milter.max_frame_bytes");
    for file in [
        "groups.toml",
        "missing.csv",
        "missing-identities.toml",
        "missing-template.txt",
    ] {
        assert!(said.contains(file), "{file} not reported:\n{said}");
    }
    let symbols: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("symbols.toml"))
        .collect();
    assert_eq!(symbols.len(), 1, "{said}");
    assert!(symbols[0].contains("symbols.toml:5:"), "{said}");
}

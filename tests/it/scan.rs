//! `outscore scan` end to end: the real binary on small corpora written here
//! (folders, maildir, mbox, manifests, sidecars), its JSON lines, its summary,
//! its baseline comparison and its exit codes; and the shape of the
//! repository's own corpus.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn outscore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outscore"))
        .arg("scan")
        .args(args)
        .output()
        .expect("run outscore")
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Sender <sender@shop.example>\r\nTo: a@customer.example, b@customer.example\r\n\
         Subject: {subject}\r\nMessage-ID: <{}@shop.example>\r\nDate: Mon, 16 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn by_id<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no line for {id} in {lines:#?}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// spam/ and ham/ folders: two spam (one GTUBE), two ham.
fn folder_corpus(root: &Path) {
    write(&root.join("spam/gtube.eml"), &message("test", GTUBE));
    write(
        &root.join("spam/nested/plain.eml"),
        &message("offer", "cheap offer"),
    );
    write(
        &root.join("ham/one.eml"),
        &message("lunch", "see you at noon"),
    );
    write(
        &root.join("ham/two.eml"),
        &message("notes", "minutes attached"),
    );
    write(&root.join("README.md"), "not a message\n");
}

#[test]
fn jsonl_lines_carry_labels_scores_actions_and_symbols() {
    let dir = tempfile::tempdir().unwrap();
    folder_corpus(dir.path());
    let out = outscore(&[dir.path().to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), 4, "README.md is not a message: {lines:#?}");
    for line in &lines {
        for key in ["path", "label", "score", "tier", "action", "symbols"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        assert!(line["score"].is_number());
        assert!(Path::new(line["path"].as_str().unwrap()).is_file());
    }
    let gtube = by_id(&lines, "spam/gtube.eml");
    assert_eq!(gtube["label"], "spam");
    assert_eq!(gtube["action"], "reject");
    assert!(gtube["score"].as_f64().unwrap() >= 15.0);
    let symbol = gtube["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "GTUBE")
        .expect("GTUBE symbol");
    assert!(symbol["score"].as_f64().unwrap() > 0.0);
    assert!(!symbol["evidence"].as_array().unwrap().is_empty());
    assert_eq!(by_id(&lines, "spam/nested/plain.eml")["label"], "spam");
    assert_eq!(by_id(&lines, "ham/one.eml")["label"], "ham");
    assert_eq!(by_id(&lines, "ham/one.eml")["action"], "accept");
    // Without a sidecar the envelope comes from the headers.
    let env = &by_id(&lines, "ham/two.eml")["envelope"];
    assert_eq!(env["mail_from"], "sender@shop.example");
    assert_eq!(
        env["rcpts"],
        serde_json::json!(["a@customer.example", "b@customer.example"])
    );
    // The summary goes to stderr with jsonl, so stdout stays pure JSON.
    let summary = stderr(&out);
    assert!(summary.contains("detection rate:      50.00%"), "{summary}");
    assert!(summary.contains("false-positive rate: 0.00%"), "{summary}");
    assert!(summary.contains("GTUBE"), "{summary}");
    assert!(summary.contains("messages/s"), "{summary}");
}

#[test]
fn table_format_marks_misses_and_ends_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    folder_corpus(dir.path());
    let summary_json = dir.path().join("summary.json");
    let out = outscore(&[
        dir.path().to_str().unwrap(),
        "--summary-json",
        summary_json.to_str().unwrap(),
        "--threads",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("LABEL"), "{text}");
    let plain = text.lines().find(|l| l.contains("plain.eml")).unwrap();
    assert!(plain.ends_with("MISS"), "{plain}");
    assert!(text.contains("== summary =="), "{text}");
    let summary: Value = serde_json::from_str(&fs::read_to_string(summary_json).unwrap()).unwrap();
    assert_eq!(summary["messages"], 4);
    assert_eq!(summary["labels"]["spam"]["messages"], 2);
    assert_eq!(summary["labels"]["spam"]["flagged"], 1);
    assert_eq!(summary["detection_rate"], 0.5);
    assert_eq!(summary["false_positive_rate"], 0.0);
    assert_eq!(summary["symbols"]["GTUBE"]["spam"], 1);
    assert_eq!(summary["symbols"]["GTUBE"]["ham"], 0);
    assert_eq!(summary["threads"], 3);
    assert_eq!(summary["slowest"].as_array().unwrap().len(), 4);
}

#[test]
fn mbox_files_are_split_into_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = format!(
        "From sender@shop.example Mon Nov 16 10:00:00 2026\n{}\n\
         From sender@shop.example Mon Nov 16 10:01:00 2026\n{}\n\
         From sender@shop.example Mon Nov 16 10:02:00 2026\n{}",
        message("one", "first"),
        message("two", GTUBE),
        message("three", ">From the quoted line\r\nthird")
    );
    write(&dir.path().join("spam/box"), &mbox);
    let out = outscore(&[
        dir.path().join("spam/box").to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines(&out);
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["box#1", "box#2", "box#3"]);
    assert!(lines.iter().all(|l| l["label"] == "spam"));
    assert_eq!(lines[0]["action"], "accept");
    assert_eq!(lines[1]["action"], "reject");
    assert_eq!(lines[2]["action"], "accept");
    assert!(lines[2]["path"].as_str().unwrap().ends_with("box#3"));
    // The same mbox found while walking a directory (no extension, sniffed).
    let out = outscore(&[dir.path().to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(lines_of(&out), 3);

    // An .eml saved with an mbox `From ` line on top is one message.
    let eml = format!(
        "From sender@shop.example Mon Nov 16 10:00:00 2026\n{}",
        message("one", GTUBE)
    );
    write(&dir.path().join("ham/saved.eml"), &eml);
    let out = outscore(&[
        dir.path().join("ham").to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    let lines = self::lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "saved.eml");
    assert_eq!(lines[0]["action"], "reject");
    assert_eq!(lines[0]["size"], message("one", GTUBE).len());
}

fn lines_of(out: &Output) -> usize {
    assert!(out.status.success(), "{}", stderr(out));
    lines(out).len()
}

#[test]
fn maildir_cur_and_new_are_scanned_and_tmp_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("ham/Maildir");
    write(
        &md.join("cur/1763287200.M1P1.host:2,S"),
        &message("a", "read"),
    );
    write(
        &md.join("new/1763287260.M2P1.host"),
        &message("b", "unread"),
    );
    write(&md.join("tmp/1763287320.M3P1.host"), &message("c", GTUBE));
    let out = outscore(&[dir.path().to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines
        .iter()
        .all(|l| l["label"] == "ham" && l["action"] == "accept"));
    assert!(lines
        .iter()
        .any(|l| l["id"] == "ham/Maildir/cur/1763287200.M1P1.host:2,S"));
}

#[test]
fn manifests_give_labels_and_envelopes_relative_to_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("deep/corpus");
    write(&corpus.join("m/1.eml"), &message("x", GTUBE));
    write(&corpus.join("m/2.eml"), &message("y", "hello"));
    write(&corpus.join("m/3.eml"), &message("z", "bye"));
    write(
        &corpus.join("m/3.eml.env"),
        "# sidecar\nlogin: web@site.example\nclient_ip = 198.51.100.7\nrcpt: r1@x.example, r2@x.example\n",
    );
    write(
        &corpus.join("MANIFEST.tsv"),
        "path\tlabel\tlogin\tmail_from\tclient_ip\textra\n\
         m/1.eml\tspam\tinfo@shop.example\tbounce@shop.example\t203.0.113.5\tignored\n\
         m/2.eml\tham\t-\t-\t-\t-\n\
         m/3.eml\tham\n",
    );
    // As a manifest file, from another working directory.
    let out = outscore(&[
        corpus.join("MANIFEST.tsv").to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), 3);
    let one = by_id(&lines, "m/1.eml");
    assert_eq!(one["label"], "spam");
    assert_eq!(one["envelope"]["login"], "info@shop.example");
    assert_eq!(one["envelope"]["mail_from"], "bounce@shop.example");
    assert_eq!(one["envelope"]["client_ip"], "203.0.113.5");
    assert_eq!(by_id(&lines, "m/2.eml")["label"], "ham");
    assert!(by_id(&lines, "m/2.eml")["envelope"]["login"].is_null());
    let three = &by_id(&lines, "m/3.eml")["envelope"];
    assert_eq!(three["login"], "web@site.example");
    assert_eq!(three["client_ip"], "198.51.100.7");
    assert_eq!(
        three["rcpts"],
        serde_json::json!(["r1@x.example", "r2@x.example"])
    );
    // One message named on its own still gets its corpus's manifest line.
    let out = outscore(&[
        corpus.join("m/1.eml").to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    let single = self::lines(&out);
    assert_eq!(single.len(), 1);
    assert_eq!(single[0]["id"], "m/1.eml");
    assert_eq!(single[0]["label"], "spam");
    assert_eq!(single[0]["envelope"]["login"], "info@shop.example");
    // As a directory holding the manifest: same labels, same ids.
    let out = outscore(&[corpus.to_str().unwrap(), "--format", "jsonl"]);
    let again = self::lines(&out);
    assert_eq!(again.len(), 3);
    assert_eq!(by_id(&again, "m/1.eml")["label"], "spam");
    assert_eq!(
        by_id(&again, "m/1.eml")["envelope"]["login"],
        "info@shop.example"
    );
}

#[test]
fn bad_inputs_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = outscore(&[dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    write(&dir.path().join("a.eml"), &message("a", "b"));
    write(
        &dir.path().join("list.tsv"),
        "a.eml\tmaybe\nmissing.eml\tham\n",
    );
    let out = outscore(&[dir.path().join("list.tsv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("list.tsv:1: label \"maybe\""), "{err}");

    write(&dir.path().join("list.tsv"), "missing.eml\tham\n");
    let out = outscore(&[dir.path().join("list.tsv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.eml"), "{}", stderr(&out));

    let out = outscore(&[
        dir.path().join("a.eml").to_str().unwrap(),
        "--baseline",
        dir.path().join("a.eml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "a message is not a baseline");

    let out = outscore(&[]);
    assert_eq!(out.status.code(), Some(2), "no inputs is a usage error");
}

#[test]
fn baseline_comparison_fails_on_a_forced_regression() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    folder_corpus(&corpus);
    let baseline = dir.path().join("baseline.json");
    let base = baseline.to_str().unwrap();
    let c = corpus.to_str().unwrap();

    let out = outscore(&[c, "--format", "summary", "--write-baseline", base]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: Value = serde_json::from_str(&fs::read_to_string(&baseline).unwrap()).unwrap();
    assert_eq!(saved["verdicts"]["spam/gtube.eml"]["flagged"], true);
    assert_eq!(saved["detection_rate"], 0.5);

    let out = outscore(&[c, "--format", "summary", "--baseline", base]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("no regression"));

    // The rules "stop" catching the spam: detection drops from 50% to 0%.
    write(
        &corpus.join("spam/gtube.eml"),
        &message("test", "no test string"),
    );
    let out = outscore(&[c, "--format", "summary", "--baseline", base]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("REGRESSION: detection rate dropped from 50.00% to 0.00%"),
        "{text}"
    );
    assert!(
        text.contains("spam/gtube.eml: reject"),
        "the changed verdict is listed: {text}"
    );
    // Within tolerance it passes, still listing the change.
    let out = outscore(&[
        c,
        "--format",
        "summary",
        "--baseline",
        base,
        "--tolerance",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("spam/gtube.eml"));

    // A ham that starts being flagged is a false-positive regression.
    write(&corpus.join("spam/gtube.eml"), &message("test", GTUBE));
    write(&corpus.join("ham/one.eml"), &message("lunch", GTUBE));
    let out = outscore(&[c, "--format", "jsonl", "--baseline", base]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("REGRESSION: false-positive rate rose"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lines(&out).len(),
        4,
        "jsonl stdout stays one object per message"
    );
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml") {
            out.push(path);
        }
    }
}

#[test]
fn the_repository_corpus_is_labelled_consistently() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let manifest = fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let mut files = Vec::new();
    files_under(&root, &mut files);
    assert!(files.len() >= 60, "only {} messages", files.len());
    assert_eq!(rows.len(), files.len(), "every message has a manifest line");
    for row in &rows {
        let folder = row[0].split('/').next().unwrap();
        assert_eq!(folder, row[1], "{} is in the wrong folder", row[0]);
        assert!(root.join(row[0]).is_file(), "{} listed but missing", row[0]);
    }
    for lang in ["en-", "it-", "el-", "zh-"] {
        for label in ["spam", "ham"] {
            assert!(
                rows.iter()
                    .any(|r| r[1] == label && r[0].starts_with(&format!("{label}/{lang}"))),
                "no {label} message in {lang}"
            );
        }
    }
    let out = outscore(&[root.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&out).len(),
        files.len(),
        "every message scores without error"
    );
}

#[test]
fn progress_lines_are_written_when_stderr_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    // Long messages, so that the run lasts long enough (about a second in
    // a debug build) for lines in between.
    let body = "See you at noon at the usual place, bring the budget review. ".repeat(4000);
    for i in 0..20 {
        write(
            &corpus.join(format!("ham/{i:03}.eml")),
            &message(&format!("lunch {i}"), &body),
        );
    }
    let log = dir.path().join("stderr.log");
    let status = Command::new(env!("CARGO_BIN_EXE_outscore"))
        .args(["scan", corpus.to_str().unwrap(), "--format", "summary"])
        .args(["--threads", "1", "--progress-interval", "1ms"])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(!text.contains('\r'), "no bar in a file: {text:?}");
    let progress: Vec<&str> = text.lines().filter(|l| l.starts_with("scan: ")).collect();
    let running: Vec<&&str> = progress
        .iter()
        .filter(|l| !l.starts_with("scan: 0/") && l.contains("/20 (") && l.contains(" msg/s, ETA "))
        .collect();
    assert!(
        !running.is_empty(),
        "no progress line before the end: {text}"
    );
    assert!(
        progress
            .last()
            .is_some_and(|l| l.starts_with("scan: 20/20 (100%) in ")),
        "{text}"
    );
    // --no-progress: none.
    let out = outscore(&[
        corpus.to_str().unwrap(),
        "--format",
        "summary",
        "--no-progress",
    ]);
    assert!(!stderr(&out).contains("scan: "), "{}", stderr(&out));
}

#[test]
fn a_message_missing_from_the_baseline_run_is_a_regression_unless_a_subset_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    folder_corpus(&corpus);
    let baseline = dir.path().join("baseline.json");
    let (c, base) = (corpus.to_str().unwrap(), baseline.to_str().unwrap());
    let out = outscore(&[c, "--format", "summary", "--write-baseline", base]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One message gone, one new: the run no longer covers the baseline.
    fs::remove_file(corpus.join("ham/one.eml")).unwrap();
    write(
        &corpus.join("ham/new.eml"),
        &message("minutes", "Minutes attached."),
    );
    let out = outscore(&[c, "--format", "summary", "--baseline", base]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("missing from this run (1): ham/one.eml"),
        "{text}"
    );
    assert!(
        text.contains("new, not in the baseline (1): ham/new.eml"),
        "{text}"
    );
    assert!(
        text.contains("REGRESSION: 1 message(s) of the baseline are missing"),
        "{text}"
    );

    let out = outscore(&[
        c,
        "--format",
        "summary",
        "--baseline",
        base,
        "--allow-subset",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("missing from this run (1): ham/one.eml"),
        "{text}"
    );
    assert!(text.contains("no regression"), "{text}");
}

#[test]
fn a_folder_of_the_repository_corpus_compares_with_its_baseline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let ham = root.join("ham");
    let baseline = root.join("baseline.json");
    let args = [
        ham.to_str().unwrap(),
        "--format",
        "summary",
        "--baseline",
        baseline.to_str().unwrap(),
    ];
    // The ids and envelopes are the corpus's: nothing is "new".
    let out = outscore(&args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "the spam is missing: {text}");
    assert!(!text.contains("new, not in the baseline"), "{text}");
    assert!(text.contains("missing from this run"), "{text}");
    let mut subset = args.to_vec();
    subset.push("--allow-subset");
    let out = outscore(&subset);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no regression"), "{text}");
}

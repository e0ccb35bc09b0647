//! The Grafana dashboard in `contrib/` only charts metrics the daemon
//! exports, so it never shows an empty panel after a rename.

use std::collections::BTreeSet;

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("outscore_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(text[start..end].to_string());
        i = end;
    }
    names
}

#[test]
fn the_dashboard_charts_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = std::fs::read_to_string(root.join("contrib/grafana/outscore.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 8);
    let exported: BTreeSet<String> = ["src/telemetry.rs", "src/http/metrics.rs"]
        .iter()
        .flat_map(|f| metric_names(&std::fs::read_to_string(root.join(f)).unwrap()))
        .collect();
    let charted = metric_names(&dashboard);
    assert!(charted.len() >= 10, "{charted:?}");
    for name in charted {
        let base = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(exported.contains(base), "{name} is not exported");
    }
}

//! The module boundaries `lib.rs` promises, enforced by reading the source:
//! no cycle between top-level modules, the milter layer knows nothing of
//! rules, scoring, policy, store or HTTP, the pure modules do no I/O, and
//! the leaf modules import nothing else of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → (module it names → files that name it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The text of a file without its `#[cfg(test)]` modules and comments.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item that follows: up to its closing brace (or the
            // end of a one-line item).
            let mut depth = 0i32;
            let mut opened = false;
            for next in lines.by_ref() {
                depth += next.matches('{').count() as i32 - next.matches('}').count() as i32;
                opened |= next.contains('{');
                if (opened && depth <= 0) || (!opened && next.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Top-level modules named through `crate::NAME` in `code`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a::x, b}`
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's graph of top-level modules, with the code of each module.
fn crate_graph() -> (Graph, BTreeMap<String, Vec<(String, String)>>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    let mut code = BTreeMap::<String, Vec<(String, String)>>::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "main.rs" || rel == "lib.rs" || rel.starts_with("bin/") {
            continue;
        }
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let text = production_code(&std::fs::read_to_string(&file).unwrap());
        let edges = graph.entry(top.clone()).or_default();
        for name in named_modules(&text) {
            if name != top {
                edges.entry(name).or_default().insert(rel.clone());
            }
        }
        code.entry(top).or_default().push((rel, text));
    }
    (graph, code)
}

/// A cycle of the graph, as a list of modules, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn describe_cycle(graph: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|w| {
            let files: Vec<&str> = graph[&w[0]][&w[1]].iter().map(String::as_str).collect();
            format!("{} -> {} (in {})", w[0], w[1], files.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_cycle_between_top_level_modules() {
    let (graph, _) = crate_graph();
    assert!(graph.len() > 10, "the source tree was read: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules:\n{}",
            describe_cycle(&graph, &cycle)
        );
    }
}

#[test]
fn the_milter_layer_knows_nothing_of_what_decides() {
    let (graph, _) = crate_graph();
    let forbidden = [
        "rules", "scoring", "policy", "store", "http", "pipeline", "ruleset",
    ];
    let bad: Vec<String> = graph["milter"]
        .iter()
        .filter(|(to, _)| forbidden.contains(&to.as_str()))
        .map(|(to, files)| format!("milter -> {to} (in {files:?})"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn leaf_modules_import_nothing_of_the_crate() {
    let (graph, _) = crate_graph();
    for leaf in ["smtp", "diag", "envelope"] {
        let edges = graph.get(leaf).expect("leaf module exists");
        assert!(edges.is_empty(), "{leaf} imports {edges:?}");
    }
}

#[test]
fn pure_modules_do_no_io() {
    let (_, code) = crate_graph();
    for module in ["message", "rules", "scoring", "classifier"] {
        for (file, text) in &code[module] {
            for io in ["tokio::net", "sqlx", "axum"] {
                assert!(!text.contains(io), "{file} ({module}) uses {io}");
            }
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_and_passes_a_clean_graph() {
    let edge = |from: &str, to: &str| (from.to_string(), to.to_string());
    let build = |edges: &[(String, String)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.clone())
                .or_default()
                .entry(b.clone())
                .or_default()
                .insert(format!("{a}.rs"));
            g.entry(b.clone()).or_default();
        }
        g
    };
    let clean = build(&[edge("a", "b"), edge("b", "c"), edge("a", "c")]);
    assert_eq!(find_cycle(&clean), None);
    let cyclic = build(&[edge("a", "b"), edge("b", "c"), edge("c", "a")]);
    let cycle = find_cycle(&cyclic).expect("cycle found");
    assert_eq!(cycle.first(), cycle.last());
    assert!(describe_cycle(&cyclic, &cycle).contains("c -> a (in c.rs)"));
}

#[test]
fn imports_are_read_from_code_only() {
    let text = "use crate::milter::Decision;\n// crate::store in a comment\nfn f() { crate::telemetry::X.incr(); }\nuse crate::{scoring::Engine, policy};\n#[cfg(test)]\nmod tests {\n    use crate::http;\n}\n";
    let names = named_modules(&production_code(text));
    let expected: BTreeSet<String> = ["milter", "telemetry", "scoring", "policy"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

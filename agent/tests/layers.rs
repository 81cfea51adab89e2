//! The agent's modules form layers: no import loop between its top-level modules, and
//! nothing imports `node` (start-up and wiring only) or `dev`. Read from the sources,
//! so a new `use crate::...` that closes a loop fails here, naming the loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules only the binaries may use.
const TOP: [&str; 2] = ["node", "dev"];

/// Test-only modules, which may reach anywhere.
const TEST_ONLY: [&str; 1] = ["golden"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None`: `lib.rs`, the binaries).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if first == "bin" || first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// The top-level modules `text` names as `crate::<module>`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` groups are not used in this crate (rustfmt keeps one root).
        assert!(!tail.starts_with('{'), "grouped crate import: {tail:.40}");
        if !name.is_empty() {
            found.insert(name);
        }
        rest = tail;
    }
    found
}

/// module → the modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in all {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let used: Vec<String> = uses(&text).into_iter().filter(|m| *m != module).collect();
        graph.entry(module).or_default().extend(used);
    }
    graph
}

/// A loop through `start`, if any: the modules on it, `start` first.
fn find_loop(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|m| m == at) {
        return Some(path[i..].to_vec());
    }
    path.push(at.to_string());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(cycle) = find_loop(graph, next, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn the_agent_modules_have_no_import_loop() {
    let graph = graph();
    assert!(graph.contains_key("seam") && graph.contains_key("meta"));
    for module in graph.keys() {
        if let Some(cycle) = find_loop(&graph, module, &mut Vec::new()) {
            panic!("import loop: {} -> {}", cycle.join(" -> "), cycle[0]);
        }
    }
}

#[test]
fn nothing_imports_the_wiring() {
    for (module, used) in graph() {
        if TOP.contains(&module.as_str()) || TEST_ONLY.contains(&module.as_str()) {
            continue;
        }
        for top in TOP {
            assert!(!used.contains(top), "{module} imports {top}");
        }
    }
}

#[test]
fn the_seams_import_nothing_but_metrics() {
    let graph = graph();
    let used: Vec<&String> = graph["seam"].iter().filter(|m| *m != "metrics").collect();
    assert!(used.is_empty(), "seam imports {used:?}");
}

#[test]
fn the_check_sees_a_loop() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        find_loop(&graph, "a", &mut Vec::new()),
        Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(uses("use crate::seam::Clock; crate::meta::x"), {
        BTreeSet::from(["meta".to_string(), "seam".to_string()])
    });
}

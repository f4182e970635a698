//! A test runs only if its name is in the `on_both_backends!` list at the end
//! of its file; this fails when one was written and not listed. A test is an
//! `async fn name(backend: Backend)` that returns nothing (helpers that take a
//! backend return what they set up).

use std::path::Path;

/// The names of the `async fn x(backend: Backend) {` in `source`.
fn tests_in(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices("async fn ") {
        let rest = &source[at + "async fn ".len()..];
        let Some(open) = rest.find('(') else { continue };
        let name = rest[..open].trim();
        let Some(close) = rest[open..].find(')') else {
            continue;
        };
        let params: String = rest[open + 1..open + close]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let after = rest[open + close + 1..].trim_start();
        if matches!(params.as_str(), "backend: Backend" | "backend: Backend,")
            && after.starts_with('{')
        {
            found.push(name.to_string());
        }
    }
    found
}

/// The names in the file's `on_both_backends!(…)`.
fn listed_in(source: &str) -> Vec<String> {
    let Some(at) = source.rfind("on_both_backends!(") else {
        return Vec::new();
    };
    let rest = &source[at + "on_both_backends!(".len()..];
    let end = rest.find(')').unwrap_or(rest.len());
    rest[..end]
        .split(',')
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_test_is_listed_to_run_on_both_backends() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let mut unlisted = Vec::new();
    let mut tests = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // This file's own examples are not tests.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("listing.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let listed = listed_in(&source);
        for name in tests_in(&source) {
            tests += 1;
            if !listed.contains(&name) {
                unlisted.push(format!("{}: {name}", path.display()));
            }
        }
    }
    assert!(tests > 100, "found only {tests} tests in {}", dir.display());
    assert!(
        unlisted.is_empty(),
        "written but not in on_both_backends!, so never run: {unlisted:#?}"
    );
}

#[test]
fn the_check_tells_a_test_from_a_helper() {
    let source = "async fn a_test(\n    backend: Backend,\n) {\n}\n\
                  async fn helper(backend: Backend) -> App {\n}\n\
                  async fn other(backend: Backend) {}\n\
                  on_both_backends!(a_test);\n";
    assert_eq!(tests_in(source), ["a_test", "other"]);
    assert_eq!(listed_in(source), ["a_test"]);
}

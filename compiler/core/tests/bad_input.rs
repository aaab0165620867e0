//! Hostile and broken input (issue: "Bad input"): every case gets a located error
//! diagnostic — never a panic, a hang or unbounded memory — and the CLI's exit code 1
//! follows from `error_count() > 0`.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_compiler::{CheckOptions, CheckedSet, SourceInput, check_set};

fn check(bytes: impl Into<Vec<u8>>) -> CheckedSet {
    check_set(
        &[SourceInput {
            name: "input.yaml".to_string(),
            bytes: bytes.into(),
        }],
        &CheckOptions::default(),
    )
}

fn assert_located_error(set: &CheckedSet, code: &str) {
    assert!(set.error_count() > 0, "expected an error, got none");
    let diagnostic = set
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == code)
        .unwrap_or_else(|| {
            panic!(
                "expected {code}, got {:?}",
                set.diagnostics
                    .iter()
                    .map(|d| d.code.as_str())
                    .collect::<Vec<_>>()
            )
        });
    let span = diagnostic.primary_span().expect("a primary span");
    assert!(
        span.end <= set.texts[0].len(),
        "the span lies inside the file"
    );
    // Rendering must work for every diagnostic too.
    let rendered = set.view().render_text(&set.diagnostics);
    assert!(rendered.contains(code));
}

const AGENT: &str =
    "kind: openagentspec:v1/agent\nname: hr_agent\ndescription: d\nintent: i\nowner: o\n";

#[test]
fn empty_and_blank_files_are_located_errors() {
    assert_located_error(&check(""), "E0005");
    assert_located_error(&check("   \n\n  "), "E0005");
    assert_located_error(&check("---\n"), "E0005");
}

#[test]
fn binary_junk_is_an_error() {
    // A deterministic pseudo-random blob, including NUL and control bytes.
    let mut state = 0x1234_5678_u32;
    let junk: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    let set = check(junk);
    assert!(set.error_count() > 0);
}

#[test]
fn invalid_utf8_points_at_the_first_bad_byte() {
    let set = check(b"kind: openagentspec:v1/agent\nname: caf\xe9\n".to_vec());
    assert_located_error(&set, "E0001");
    assert_eq!(set.diagnostics[0].primary_span().map(|s| s.start), Some(38));
}

#[test]
fn tabs_and_duplicate_keys_are_located() {
    assert_located_error(
        &check(format!("{AGENT}capabilities:\n\tfoo: {{}}\n")),
        "E0002",
    );
    assert_located_error(&check(format!("{AGENT}name: again\n")), "E0004");
}

#[test]
fn alias_bombs_stop_at_the_node_budget() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..20 {
        let previous = level - 1;
        let row = vec![format!("*a{previous}"); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{row}]\n"));
    }
    assert_located_error(&check(text), "E0003");
}

#[test]
fn twenty_thousand_deep_yaml_is_a_budget_error() {
    assert_located_error(
        &check(format!("{AGENT}exposes: {}", "[".repeat(20_000))),
        "E0003",
    );
    assert_located_error(
        &check(format!("{AGENT}exposes: {}", "{a: ".repeat(20_000))),
        "E0003",
    );
    let block: String = (0..20_000)
        .map(|depth| format!("{}-\n", " ".repeat(depth % 200)))
        .collect();
    let set = check(format!("{AGENT}exposes:\n{block}"));
    assert!(set.error_count() > 0);
}

#[test]
fn twenty_thousand_deep_cel_is_a_located_cel_error() {
    let tool = "---\nkind: openagentspec:v1/tool\nname: kb\ndescription: d\ninput: {type: object}\noutput: {type: object}\nbinding: {native: {function: f}}\n";
    for expression in [
        "(".repeat(20_000) + "true" + &")".repeat(20_000),
        "!".repeat(20_000) + "true",
        "-".repeat(20_000) + "1 > 0",
    ] {
        let text = format!(
            "{AGENT}capabilities:\n  kb:\n    input_restriction:\n      assertion: '{expression}'\n{tool}"
        );
        let set = check(text);
        assert_located_error(&set, "E0502");
        let span = set
            .diagnostics
            .iter()
            .find(|d| d.code.as_str() == "E0502")
            .and_then(|d| d.primary_span())
            .expect("span");
        let line_start = set.texts[0][..span.start]
            .rfind('\n')
            .map_or(0, |at| at + 1);
        assert!(
            set.texts[0][line_start..].starts_with("      assertion:"),
            "the error points inside the assertion"
        );
    }
}

#[test]
fn multi_megabyte_scalars_are_refused_quickly() {
    let huge = "x".repeat(3 * 1024 * 1024);
    assert_located_error(
        &check(format!("{AGENT}exposes:\n  big: \"{huge}\"\n")),
        "E0003",
    );
    assert_located_error(
        &check(format!("kind: openagentspec:v1/agent\nname: {huge}\n")),
        "E0003",
    );
}

#[test]
fn a_scalar_or_a_list_where_a_mapping_belongs() {
    assert_located_error(
        &check(format!("{AGENT}capabilities: just a string\n")),
        "E0103",
    );
    assert_located_error(&check(format!("{AGENT}capabilities: [a, b]\n")), "E0103");
    assert_located_error(&check("just a scalar document\n"), "E0005");
    assert_located_error(&check("[1, 2, 3]\n"), "E0005");
}

#[test]
fn the_wrong_kind_names_the_right_one() {
    let set = check("kind: openagentspec:v1/Agent\nname: a\ndescription: d\nintent: i\nowner: o\n");
    assert_located_error(&set, "E0006");
    let rendered = set.view().render_text(&set.diagnostics);
    assert!(rendered.contains("openagentspec:v1/agent"), "{rendered}");
    let set = check("kind: agent\nname: a\n");
    assert!(
        set.view()
            .render_text(&set.diagnostics)
            .contains("openagentspec:v1/agent")
    );
}

#[test]
fn json_documents_are_read_too() {
    let set = check(
        r#"{"kind": "openagentspec:v1/agent", "name": "a", "description": "d", "intent": "i", "owner": "o"}"#,
    );
    assert_eq!(set.error_count(), 0, "{:?}", set.diagnostics);
    assert_eq!(set.documents.len(), 1);
}

#[test]
fn all_errors_of_a_run_are_reported_not_the_first_only() {
    let set = check(format!(
        "{AGENT}capabilites: {{}}\nlifespan:\n  short_circuit: 0\n  retain_memory: yes\nguardrails: 5\n"
    ));
    let codes: Vec<&str> = set.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert!(
        codes.contains(&"E0101") && codes.contains(&"E0104") && codes.contains(&"E0103"),
        "{codes:?}"
    );
    assert!(set.error_count() >= 4);
}

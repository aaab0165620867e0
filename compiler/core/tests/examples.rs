//! The bundled examples check clean, and every example document is also valid against
//! the JSON Schema generated for its kind — so an editor using those schemas never
//! flags a spec that `agentc check` accepts.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_compiler::documents::lower_document;
use agentc_compiler::lower::LowerContext;
use agentc_compiler::span::FileId;
use agentc_compiler::syntax::{SyntaxLimits, parse_yaml};
use agentc_compiler::{CheckOptions, SourceInput, check_set};
use std::path::{Path, PathBuf};

fn example_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec-examples");
    let mut pending = vec![root];
    let mut files = Vec::new();
    while let Some(directory) = pending.pop() {
        if directory.join(".agentcignore").exists() {
            continue;
        }
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_examples_check_without_errors_and_cover_every_document_kind() {
    let inputs: Vec<SourceInput> = example_files()
        .iter()
        .map(|path| SourceInput {
            name: path.display().to_string(),
            bytes: std::fs::read(path).unwrap(),
        })
        .collect();
    let set = check_set(&inputs, &CheckOptions::default());
    assert_eq!(
        set.error_count(),
        0,
        "{}",
        set.view().render_text(&set.diagnostics)
    );
    for kind in agentc_compiler::documents::DocumentKind::ALL {
        assert!(
            set.documents
                .iter()
                .any(|loaded| loaded.document.kind() == kind),
            "no example of {kind:?}"
        );
    }
}

#[test]
fn every_example_document_validates_against_its_generated_schema() {
    let mut validated = 0;
    for path in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (documents, diagnostics) = parse_yaml(FileId(0), &text, &SyntaxLimits::default());
        assert!(diagnostics.is_empty());
        for document in documents {
            let mut context = LowerContext::default();
            let kind = lower_document(&document.root, &mut context)
                .expect("lowers")
                .kind();
            let schema = kind.json_schema();
            let validator =
                jsonschema::validator_for(&schema).expect("the generated schema compiles");
            let instance = document.root.to_json();
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|error| error.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            validated += 1;
        }
    }
    assert!(validated >= 10);
}

#[test]
fn the_generated_schema_rejects_an_unknown_key() {
    let schema = agentc_compiler::documents::DocumentKind::Agent.json_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let instance = serde_json::json!({
        "kind": "openagentspec:v1/agent", "name": "a", "description": "d", "intent": "i", "owner": "o",
        "capabilites": {}
    });
    assert!(!validator.is_valid(&instance));
    let wrong_kind = serde_json::json!({"kind": "openagentspec:v1/tool", "name": "a", "description": "d", "intent": "i", "owner": "o"});
    assert!(!validator.is_valid(&wrong_kind));
}

/// Every explain page's "Erroneous example" produces the page's code, and its
/// "Corrected" example does not — so the pages cannot drift from the checker.
#[test]
fn explain_page_examples_show_their_code_and_its_fix() {
    use agentc_compiler::diagnostics::FrontEndCode;
    // E0001 needs invalid bytes, which a Markdown page cannot hold; E0003's alias bomb is
    // abbreviated on the page. Both have ui cases instead.
    const SKIP: &[&str] = &["E0001", "E0003"];
    for code in FrontEndCode::ALL {
        let name = code.as_str();
        if SKIP.contains(&name) {
            continue;
        }
        let page = code.explain();
        let blocks: Vec<&str> = page
            .split("```yaml\n")
            .skip(1)
            .map(|block| block.split("```").next().unwrap_or_default())
            .collect();
        assert!(
            blocks.len() >= 2,
            "{name}: the page needs an erroneous and a corrected example"
        );
        // W0606 is about the build that checks: its page's examples are checked as a
        // build without the `mcp` feature would check them.
        let options = CheckOptions {
            mcp_unavailable: (name == "W0606")
                .then(|| "this agentc was built without the `mcp` feature".to_string()),
            ..CheckOptions::default()
        };
        let codes_of = |text: &str| -> Vec<&'static str> {
            check_set(
                &[SourceInput {
                    name: format!("{name}.yaml"),
                    bytes: text.as_bytes().to_vec(),
                }],
                &options,
            )
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect()
        };
        let wrong = codes_of(blocks[0]);
        assert!(
            wrong.contains(&name),
            "{name}: the erroneous example gives {wrong:?}"
        );
        let right = codes_of(blocks[1]);
        assert!(
            !right.contains(&name),
            "{name}: the corrected example still gives {name}"
        );
    }
}

//! `cargo xtask layers`: the crates' layering, checked (run by `cargo xtask ci`).
//!
//! Two rules, read from cargo itself (`cargo metadata` for what each crate declares,
//! `cargo tree` for what a crate links):
//!
//! 1. A workspace crate's normal and build dependencies on other workspace crates point
//!    strictly down the layers of [`LAYERS`] (dev-dependencies may point anywhere: tests
//!    and benchmarks sit above everything). A crate missing from the table fails too, so
//!    a new crate is placed deliberately.
//! 2. What runs policies — the runtime, the generated crates' support and the generated
//!    crates themselves — links none of the code generator: no syn, quote, proc-macro2 or
//!    prettyplease (other than inside third-party derive macros, which run at build time),
//!    no terminal renderer of diagnostics, no agentc-cel-compile or agentc-codegen.

use std::collections::BTreeMap;
use std::path::Path;

/// The workspace crates, bottom layer first. A crate may depend only on crates of lower
/// layers.
const LAYERS: &[&[&str]] = &[
    // Run-time support of compiled CEL: errors, arithmetic, time, budgets.
    &["agentc-cel-support"],
    // CEL: parse, check, interpret.
    &["agentc-cel"],
    // The spec model and its checker; the CEL-to-Rust compiler (used only by codegen).
    &["agentc-compiler", "agentc-cel-compile"],
    // The runtime: enforcement, engagements, tools, models, audit.
    &["agentc-runtime"],
    // What generated crates need besides the runtime; code generation; the local-model
    // backend (mistral.rs), an adapter on the runtime's `Model` trait.
    &[
        "agentc-generated-support",
        "agentc-codegen",
        "agentc-local-model",
    ],
    // The attribute macros (a front end of codegen).
    &["agentc-macros"],
    // The one dependency of users and of generated code: the runtime, the macros and
    // what generated code needs, re-exported.
    &["agentc"],
    // The generated example crates, the server, the conformance suite, the differential
    // tests of the CEL compiler.
    &[
        "hr",
        "meeting-scheduler",
        "web-browser",
        "multi-agent",
        "agentc-server",
        "agentc-conformance",
        "agentc-cel-differential",
    ],
    // The command line, the repository's tasks, the generated crates' tests.
    &["agentc-cli", "xtask", "agentc-generated-tests"],
];

/// Crates whose linked dependencies must not include [`GENERATOR_CRATES`].
const POLICY_RUNNERS: &[&str] = &[
    "agentc-cel-support",
    "agentc-cel",
    "agentc-runtime",
    "agentc-generated-support",
    "agentc",
    "hr",
    "meeting-scheduler",
    "web-browser",
    "multi-agent",
];

/// The code generator and the diagnostics renderer.
const GENERATOR_CRATES: &[&str] = &[
    "syn",
    "quote",
    "proc-macro2",
    "prettyplease",
    "codespan-reporting",
    "agentc-cel-compile",
    "agentc-codegen",
];

pub fn run(root: &Path) -> Result<(), String> {
    let mut problems = declared_dependencies_point_down(root)?;
    for crate_name in POLICY_RUNNERS {
        for linked in linked_crates(root, crate_name)? {
            if GENERATOR_CRATES.contains(&linked.as_str()) {
                problems.push(format!(
                    "`{crate_name}` links `{linked}`: what runs policies must not carry the code generator or the diagnostics renderer"
                ));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask layers: the layering holds");
        Ok(())
    } else {
        Err(format!(
            "the layering is broken:\n- {}",
            problems.join("\n- ")
        ))
    }
}

fn layer_of(crate_name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&crate_name))
}

/// Rule 1, from `cargo metadata --no-deps`.
fn declared_dependencies_point_down(root: &Path) -> Result<Vec<String>, String> {
    let output = crate::cargo_command()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .output()
        .map_err(|error| format!("cannot run cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("cargo metadata gave no JSON: {error}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata lists no packages")?;
    let workspace: BTreeMap<&str, &serde_json::Value> = packages
        .iter()
        .filter_map(|package| Some((package["name"].as_str()?, package)))
        .collect();
    let mut problems = Vec::new();
    for (name, package) in &workspace {
        let Some(layer) = layer_of(name) else {
            problems.push(format!(
                "`{name}` has no layer: add it to LAYERS in xtask/src/layers.rs"
            ));
            continue;
        };
        let dependencies = package["dependencies"].as_array().into_iter().flatten();
        for dependency in dependencies {
            let Some(dependency_name) = dependency["name"].as_str() else {
                continue;
            };
            if dependency["kind"].as_str() == Some("dev")
                || !workspace.contains_key(dependency_name)
            {
                continue;
            }
            match layer_of(dependency_name) {
                Some(below) if below < layer => {}
                _ => problems.push(format!(
                    "`{name}` (layer {layer}) depends on `{dependency_name}`, which is not below it"
                )),
            }
        }
    }
    Ok(problems)
}

/// The crates `crate_name` links (normal dependencies, without what proc macros use at
/// build time), from `cargo tree`, resolved for that crate alone.
fn linked_crates(root: &Path, crate_name: &str) -> Result<Vec<String>, String> {
    let output = crate::cargo_command()
        .args([
            "tree",
            "-p",
            crate_name,
            "-e",
            "normal,no-proc-macro",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root)
        .output()
        .map_err(|error| format!("cannot run cargo tree: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree -p {crate_name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_is_distinct() {
        let mut seen = Vec::new();
        for crate_name in LAYERS.iter().flat_map(|layer| layer.iter()) {
            assert!(!seen.contains(crate_name), "{crate_name} twice");
            seen.push(crate_name);
        }
        assert_eq!(layer_of("agentc-cel"), Some(1));
        assert!(layer_of("agentc-runtime") < layer_of("agentc-codegen"));
    }
}

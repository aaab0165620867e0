//! `cargo xtask layers`: the crates' layering, checked (run by `cargo xtask ci`).
//!
//! Two rules, read from cargo itself (`cargo metadata` for what each crate declares,
//! `cargo tree` for what a crate links):
//!
//! 1. A workspace crate's normal and build dependencies on other workspace crates point
//!    strictly down the layers of [`LAYERS`] (dev-dependencies may point anywhere: tests
//!    and benchmarks sit above everything). A crate missing from the table fails too, so
//!    a new crate is placed deliberately.
//! 2. Inside the runtime crate, a module refers (`crate::<module>` outside comments and
//!    its `mod tests`) only to modules of lower layers of [`RUNTIME_MODULE_LAYERS`]: no
//!    cycle between modules, and the per-call order in `enforce` does not reach into the
//!    engagement loop that calls it.
//! 3. What runs policies — the runtime, the generated crates' support and the generated
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
    // backend (mistral.rs), an adapter on the runtime's `Model` trait; MCP (rmcp), an
    // adapter on its `ToolBackend` trait and a server in front of its enforcement.
    &[
        "agentc-generated-support",
        "agentc-codegen",
        "agentc-local-model",
        "agentc-mcp",
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

/// The runtime crate's modules, bottom layer first. A module may refer only to modules
/// of lower layers (`lib.rs`, the façade, may refer to all).
const RUNTIME_MODULE_LAYERS: &[&[&str]] = &[
    // Leaves: the audit trail, credentials, a call's data, the model interface,
    // provenance labels of outputs, repetition detection, schema validation.
    &[
        "audit",
        "credentials",
        "invocation",
        "model",
        "provenance",
        "repetition",
        "schema",
    ],
    // Checks over an engagement's variables.
    &["check"],
    // The engagement; the runtime's form of the spec.
    &["engagement", "spec"],
    // Reviewers; tool backends and the registry.
    &["review", "tools"],
    // The services an engagement runs with, snapshots and wait points.
    &["context"],
    // The HTTP client and HTTP tools.
    &["http"],
    // Adapters on HTTP: OpenAI-compatible models, remote agents.
    &["openai", "remote"],
    // The per-call enforcement order.
    &["enforce"],
    // The engagement loop; replaying recorded calls through enforcement.
    &["driver", "replay"],
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
    problems.extend(runtime_modules_point_down(&root.join("runtime/src"))?);
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
/// The problems with the runtime's module references (rule 2).
fn runtime_modules_point_down(source: &Path) -> Result<Vec<String>, String> {
    let layer_of = |module: &str| {
        RUNTIME_MODULE_LAYERS
            .iter()
            .position(|layer| layer.contains(&module))
    };
    let mut problems = Vec::new();
    let entries = std::fs::read_dir(source)
        .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .collect();
    files.sort();
    for path in files {
        let Some(module) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".rs"))
        else {
            problems.push(format!(
                "runtime/src/{}: only modules of one file are expected",
                path.display()
            ));
            continue;
        };
        if module == "lib" {
            continue;
        }
        let Some(layer) = layer_of(module) else {
            problems.push(format!(
                "runtime module `{module}` has no layer in RUNTIME_MODULE_LAYERS"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        for referenced in module_references(&text) {
            if referenced == module {
                continue;
            }
            match layer_of(&referenced) {
                Some(lower) if lower < layer => {}
                _ => problems.push(format!(
                    "runtime module `{module}` refers to `crate::{referenced}`, which is not in a lower layer"
                )),
            }
        }
    }
    Ok(problems)
}

/// The modules a runtime source file refers to as `crate::<module>`, outside comments
/// and its `mod tests` (tests may reach anywhere).
fn module_references(text: &str) -> std::collections::BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => text.get(..tests).unwrap_or(text),
        None => text,
    };
    let mut modules = std::collections::BTreeSet::new();
    for line in code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
    {
        for (start, _) in line.match_indices("crate::") {
            let name: String = line
                .get(start + "crate::".len()..)
                .unwrap_or("")
                .chars()
                .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
                .collect();
            if !name.is_empty() {
                modules.insert(name);
            }
        }
    }
    modules
}

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
    let mut command = crate::cargo_command();
    command.current_dir(root);
    let mut names = tree_packages(command, &["-p", crate_name, "-e", "normal,no-proc-macro"])?;
    names.sort();
    names.dedup();
    Ok(names)
}

/// The package names `cargo tree --prefix none --format {p}` lists with `arguments`, in
/// its order (the root crate first), run by `command` (which says where, and with which
/// target directory).
pub(crate) fn tree_packages(
    mut command: std::process::Command,
    arguments: &[&str],
) -> Result<Vec<String>, String> {
    let output = command
        .args(["tree", "--prefix", "none", "--format", "{p}"])
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run cargo tree: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
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

    #[test]
    fn runtime_module_references_skip_comments_and_tests() {
        let text = "//! [`crate::driver`]\nuse crate::check::Check;\nfn f() { crate::audit::x(); }\n\
                    #[cfg(test)]\nmod tests { use crate::driver::X; }\n";
        let found: Vec<String> = module_references(text).into_iter().collect();
        assert_eq!(found, ["audit", "check"]);
    }

    #[test]
    fn a_runtime_module_referring_up_is_reported() {
        let directory = std::env::temp_dir().join(format!("agentc-layers-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(
            directory.join("check.rs"),
            "use crate::invocation::Invocation;\n",
        )
        .unwrap();
        std::fs::write(
            directory.join("enforce.rs"),
            "use crate::driver::Runtime;\n",
        )
        .unwrap();
        std::fs::write(directory.join("surprise.rs"), "\n").unwrap();
        let problems = runtime_modules_point_down(&directory).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`enforce` refers to `crate::driver`"));
        assert!(problems[1].contains("`surprise` has no layer"));
    }
}

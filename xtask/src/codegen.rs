//! Generated files that are committed: the JSON Schema of every document kind, so that
//! editors with a YAML language server complete and check specs as they are typed, and
//! the crates `agentc build` generates for the examples (`spec-examples/generated/`),
//! which are workspace members, so that they are compiled and linted in CI.

use agentc_compiler::documents::DocumentKind;
use std::path::Path;

pub fn run(root: &Path, check_only: bool) -> Result<(), String> {
    let directory = root.join("spec-examples").join("schema");
    let mut stale = Vec::new();
    for kind in DocumentKind::ALL {
        let path = directory.join(format!("{}.schema.json", kind.short_name()));
        let text = serde_json::to_string_pretty(&kind.json_schema())
            .map_err(|error| error.to_string())?
            + "\n";
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if check_only {
            stale.push(path.display().to_string());
        } else {
            std::fs::create_dir_all(&directory).map_err(|error| error.to_string())?;
            std::fs::write(&path, text)
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    generated_crates(root, check_only, &mut stale)?;
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "generated files are stale: {}; run `cargo xtask codegen`",
            stale.join(", ")
        ))
    }
}

/// The examples whose generated crates are committed under `spec-examples/generated/`.
pub const GENERATED_EXAMPLES: [&str; 4] = ["hr", "meeting-scheduler", "web-browser", "multi-agent"];

/// The spec files of one example directory, sorted as `agentc build DIR` sorts them, and
/// named relative to the repository root, as the generated header shows them.
fn example_inputs(root: &Path, example: &str) -> Result<Vec<agentc_compiler::SourceInput>, String> {
    let directory = root.join("spec-examples").join(example);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&directory)
        .map_err(|error| format!("cannot read {}: {error}", directory.display()))?
    {
        let entry = entry.map_err(|error| error.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.')
            && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
        {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(directory.join(&name)).map_err(|error| error.to_string())?;
            Ok(agentc_compiler::SourceInput {
                name: format!("spec-examples/{example}/{name}"),
                bytes,
            })
        })
        .collect()
}

fn generated_crates(root: &Path, check_only: bool, stale: &mut Vec<String>) -> Result<(), String> {
    for example in GENERATED_EXAMPLES {
        let inputs = example_inputs(root, example)?;
        let set = agentc_compiler::check_set(&inputs, &agentc_compiler::CheckOptions::default());
        let options = agentc_codegen::BuildOptions {
            crate_name: agentc_codegen::crate_name_from(example),
            agentc: agentc_codegen::AgentcDependency::Path("../../../agentc".to_string()),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let files = agentc_codegen::generate_crate(&set, &options)
            .map_err(|error| format!("spec-examples/{example}: {error}"))?;
        let directory = root.join("spec-examples").join("generated").join(example);
        for file in files {
            let path = directory.join(&file.path);
            if std::fs::read(&path).ok().as_deref() == Some(file.contents.as_bytes()) {
                continue;
            }
            if check_only {
                stale.push(path.display().to_string());
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
                }
                std::fs::write(&path, &file.contents)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

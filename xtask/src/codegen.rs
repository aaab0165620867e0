//! Generated files that are committed: the JSON Schema of every document kind, so that
//! editors with a YAML language server complete and check specs as they are typed.

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
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "generated files are stale: {}; run `cargo xtask codegen`",
            stale.join(", ")
        ))
    }
}

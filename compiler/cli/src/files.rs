//! Finding and reading the files to check.

use agentc_compiler::SourceInput;
use std::path::{Path, PathBuf};

/// A directory holding this file is skipped when a parent directory is walked; its files
/// are still checked when named explicitly. `spec-examples/ui` (deliberately wrong
/// documents) and `spec-examples/schema` (JSON Schemas, not specs) carry it.
pub const IGNORE_MARKER: &str = ".agentcignore";

/// Expands the paths into input files, sorted so that output is deterministic.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<SourceInput>, String> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.dedup();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)
                .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
            Ok(SourceInput {
                name: path.display().to_string(),
                bytes,
            })
        })
        .collect()
}

fn walk(directory: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut pending = vec![directory.to_path_buf()];
    let mut found = Vec::new();
    while let Some(directory) = pending.pop() {
        if directory.join(IGNORE_MARKER).exists() {
            continue;
        }
        let entries = std::fs::read_dir(&directory)
            .map_err(|error| format!("cannot read `{}`: {error}", directory.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|error| format!("cannot read `{}`: {error}", directory.display()))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            let file_type = entry
                .file_type()
                .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    files.extend(found);
    Ok(())
}

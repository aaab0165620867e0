//! `agentc build`: the IO around the pure generator in `agentc-codegen` — reading the
//! specs, choosing how the crate gets agentc, and writing (or, with `--check`, comparing) the crate.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use agentc_codegen::{AgentcDependency, BuildError, BuildOptions, crate_name_from, generate_crate};
use agentc_compiler::{CheckOptions, check_set};

use crate::files;

/// What to build.
pub struct BuildRequest<'a> {
    pub paths: &'a [PathBuf],
    pub output: &'a Path,
    pub check: bool,
    pub crate_name: Option<&'a str>,
    /// A local `agentc` crate to depend on by path, instead of the released version of
    /// this binary.
    pub agentc_path: Option<&'a Path>,
}

/// An absolute, normalised form of a path that may not exist yet: the longest existing
/// ancestor is canonicalised and the rest appended.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|error| format!("cannot read the current directory: {error}"))?
            .join(path)
    };
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut result = canonical;
            for part in rest.iter().rev() {
                result.push(part);
            }
            return Ok(result);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(joined),
        }
    }
}

/// The path from `from` to `to`, both absolute, with `/` separators.
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to)
        .take_while(|(left, right)| left == right)
        .count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..from.len() {
        parts.push("..".to_string());
    }
    for component in &to[common..] {
        parts.push(component.as_os_str().to_string_lossy().into_owned());
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// The spec names recorded in an existing crate's header, for `--check` without paths.
fn recorded_specs(output: &Path) -> Result<Vec<PathBuf>, String> {
    let lib = output.join("src").join("lib.rs");
    let text = std::fs::read_to_string(&lib)
        .map_err(|error| format!("cannot read `{}`: {error}", lib.display()))?;
    let specs: Vec<PathBuf> = text
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .filter_map(|line| line.strip_prefix("//! - `")?.strip_suffix('`'))
        .map(PathBuf::from)
        .collect();
    if specs.is_empty() {
        return Err(format!(
            "`{}` names no spec files; give them on the command line",
            lib.display()
        ));
    }
    Ok(specs)
}

/// Runs `agentc build`. Exit codes: 0 written or up to date, 1 invalid specs or stale
/// output, 2 usage or IO error.
pub fn build(request: &BuildRequest<'_>) -> ExitCode {
    match build_inner(request) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn build_inner(request: &BuildRequest<'_>) -> Result<ExitCode, String> {
    let paths = if request.paths.is_empty() {
        if !request.check {
            return Err("give the spec files or directories to build".to_string());
        }
        recorded_specs(request.output)?
    } else {
        request.paths.to_vec()
    };
    let inputs = files::collect_inputs(&paths)?;
    if inputs.is_empty() {
        return Err("no .yaml, .yml or .json files found in the given paths".to_string());
    }
    let set = check_set(&inputs, &CheckOptions::default());
    let output = absolute(request.output)?;
    let agentc = match request.agentc_path {
        Some(path) => AgentcDependency::Path(relative(&output, &absolute(path)?)),
        None => AgentcDependency::Version(env!("CARGO_PKG_VERSION").to_string()),
    };
    let crate_name = match request.crate_name {
        Some(name) => name.to_string(),
        None => crate_name_from(
            &output
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let options = BuildOptions {
        crate_name,
        agentc,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let generated = match generate_crate(&set, &options) {
        Ok(files) => files,
        Err(BuildError::Check { errors, rendered }) => {
            eprint!("{rendered}");
            eprintln!("error: the specs have {errors} error(s); nothing was generated");
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.to_string()),
    };
    if request.check {
        let mut stale = Vec::new();
        for file in &generated {
            let path = output.join(&file.path);
            if std::fs::read(&path).ok().as_deref() != Some(file.contents.as_bytes()) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            eprintln!("{} is up to date", request.output.display());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: generated files are stale: {}; run `agentc build` again",
            stale.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    for file in &generated {
        let path = output.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
        }
        if std::fs::read(&path).ok().as_deref() == Some(file.contents.as_bytes()) {
            continue;
        }
        std::fs::write(&path, &file.contents)
            .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/x")),
            "../../x".to_string()
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), ".".to_string());
    }
}

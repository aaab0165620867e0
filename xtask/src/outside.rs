//! `cargo xtask outside` (part of `cargo xtask ci`): agentc used as a user outside this
//! workspace uses it, with one agentc dependency each.
//!
//! 1. A crate with `agentc` (and tokio, its async runtime) as its only dependencies runs
//!    `#[agentc::agent]` on the HR example and an engagement in which the compiled
//!    restriction refuses one call and allows another (`xtask/outside/user`).
//! 2. `agentc build` output, built on its own: its one dependency is `agentc` without the
//!    macros, and it links none of the code generator or diagnostics renderer, not even
//!    at build time (serde's derive aside, which is a proc macro: the linked graph has no
//!    syn, quote or proc-macro2 at all).
//!
//! Both crates live in a temporary directory (no workspace above them) and build into
//! the shared target directory, with this workspace's `Cargo.lock` (so the versions CI
//! tested) and its dependency profile (so registry dependencies are not built twice).

use std::path::Path;

/// Never in the build graph of `agentc build` output, even as a proc macro.
const NEVER_BUILT: &[&str] = &[
    "agentc-macros",
    "agentc-codegen",
    "agentc-cel-compile",
    "prettyplease",
    "codespan-reporting",
];

/// Never linked into `agentc build` output.
const NEVER_LINKED: &[&str] = &["syn", "quote", "proc-macro2"];

/// The workspace's profile for dependencies, repeated so that artifacts are shared.
const DEPENDENCY_PROFILE: &str = "
[profile.dev.package.\"*\"]
opt-level = 1
debug = false
";

pub fn run(root: &Path) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("agentc-outside-{}", std::process::id()));
    let result = run_in(root, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_in(root: &Path, work: &Path) -> Result<(), String> {
    let agentc = root.join("agentc");
    let agentc_path = agentc.to_string_lossy().replace('\\', "/");

    // 1. The attribute macro, from a user's crate.
    let user = work.join("user");
    copy(
        &root.join("xtask/outside/user/src/main.rs"),
        &user.join("src/main.rs"),
    )?;
    for spec in ["hr_agent.yaml", "tools.yaml"] {
        copy(
            &root.join("spec-examples/hr").join(spec),
            &user.join("specs").join(spec),
        )?;
    }
    write(
        &user.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"outside-user\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nagentc = {{ path = \"{agentc_path}\" }}\n\
             tokio = {{ version = \"1\", features = [\"rt\", \"macros\"] }}\n\n[workspace]\n{DEPENDENCY_PROFILE}"
        ),
    )?;
    copy(&root.join("Cargo.lock"), &user.join("Cargo.lock"))?;
    expect_direct_dependencies(root, &user, &["agentc", "tokio"])?;
    cargo_in(root, &user, &["run", "--quiet"])?;

    // 2. `agentc build` output, on its own.
    let generated = work.join("generated");
    crate::cargo(&["build", "-q", "-p", "agentc-cli"])?;
    let binary = crate::target_directory(root).join("debug").join("agentc");
    let status = std::process::Command::new(&binary)
        .arg("build")
        .arg(root.join("spec-examples/hr"))
        .arg("-o")
        .arg(&generated)
        .arg("--agentc-path")
        .arg(&agentc)
        .status()
        .map_err(|error| format!("cannot run {}: {error}", binary.display()))?;
    if !status.success() {
        return Err(format!("agentc build failed ({status})"));
    }
    let manifest = generated.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|error| format!("cannot read {}: {error}", manifest.display()))?;
    write(
        &manifest,
        &format!("{text}\n[workspace]\n{DEPENDENCY_PROFILE}"),
    )?;
    copy(&root.join("Cargo.lock"), &generated.join("Cargo.lock"))?;
    expect_direct_dependencies(root, &generated, &["agentc"])?;
    cargo_in(root, &generated, &["build", "--quiet"])?;
    let mut problems = Vec::new();
    for (edges, forbidden) in [
        ("normal", NEVER_BUILT),
        ("normal,no-proc-macro", NEVER_LINKED),
    ] {
        let packages = tree(root, &generated, &["-e", edges])?;
        // A listing without the runtime would be no listing at all.
        if !packages.iter().any(|package| package == "agentc-runtime") {
            problems.push(format!(
                "cargo tree -e {edges} does not list agentc-runtime"
            ));
        }
        for package in packages {
            if forbidden.contains(&package.as_str()) {
                problems.push(format!(
                    "`agentc build` output depends on {package} ({edges})"
                ));
            }
        }
    }
    if problems.is_empty() {
        eprintln!(
            "outside: the macro user and the generated crate build with one agentc dependency"
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Fails unless the crate in `directory` depends on exactly `expected` (its normal
/// dependencies, as cargo resolves them).
fn expect_direct_dependencies(
    root: &Path,
    directory: &Path,
    expected: &[&str],
) -> Result<(), String> {
    let mut found = tree(root, directory, &["-e", "normal", "--depth", "1"])?;
    // The first line is the crate itself.
    if !found.is_empty() {
        found.remove(0);
    }
    found.sort();
    if found == expected {
        Ok(())
    } else {
        Err(format!(
            "{} depends on {found:?}, expected {expected:?}",
            directory.display()
        ))
    }
}

/// The package names `cargo tree` lists for the crate in `directory`, in order.
fn tree(root: &Path, directory: &Path, arguments: &[&str]) -> Result<Vec<String>, String> {
    let mut names = crate::layers::tree_packages(command_in(root, directory), arguments)?;
    names.dedup();
    Ok(names)
}

fn cargo_in(root: &Path, directory: &Path, arguments: &[&str]) -> Result<(), String> {
    eprintln!(
        "$ (in {}) cargo {}",
        directory.display(),
        arguments.join(" ")
    );
    let status = command_in(root, directory)
        .args(arguments)
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo {}` in {} failed ({status})",
            arguments.join(" "),
            directory.display()
        ))
    }
}

/// A cargo command run in `directory`, building into the workspace's target directory.
fn command_in(root: &Path, directory: &Path) -> std::process::Command {
    let mut command = crate::cargo_command();
    command
        .current_dir(directory)
        .env("CARGO_TARGET_DIR", crate::target_directory(root));
    command
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    create_parent(to)?;
    std::fs::copy(from, to).map(|_| ()).map_err(|error| {
        format!(
            "cannot copy {} to {}: {error}",
            from.display(),
            to.display()
        )
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    create_parent(path)?;
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display())),
        None => Ok(()),
    }
}

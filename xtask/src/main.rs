//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `ci`: everything CI checks — formatting, clippy with `-D warnings`, all tests,
//!   generated files fresh, the fuzz smoke run.
//! - `codegen [--check]`: writes (or checks) the committed JSON Schemas of every document
//!   kind under `spec-examples/schema/`.
//! - `fuzz-smoke [--iterations N]`: feeds mutated spec files and CEL to the checker and
//!   fails on any panic; bounded, deterministic, stable toolchain.
//! - `bench`: the spec-validation throughput benchmark, against PyYAML + pydantic.
//! - `cel-conformance`: per-file pass/fail counts of the official CEL conformance tests.

#![forbid(unsafe_code)]

mod codegen;
mod fuzz_smoke;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let task = arguments.first().map(String::as_str).unwrap_or("help");
    let rest = arguments.get(1..).unwrap_or_default();
    let result = match task {
        "ci" => ci(),
        "codegen" => codegen::run(&workspace_root(), rest.iter().any(|a| a == "--check")),
        "fuzz-smoke" => fuzz_smoke::run(&workspace_root(), iterations(rest)),
        "bench" => bench(),
        "cel-conformance" => cel_conformance(),
        _ => {
            eprintln!("usage: cargo xtask <ci | codegen [--check] | fuzz-smoke [--iterations N] | bench | cel-conformance>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn iterations(arguments: &[String]) -> usize {
    arguments
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|at| arguments.get(at + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(arguments: &[&str]) -> Result<(), String> {
    eprintln!("$ cargo {}", arguments.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
        .args(arguments)
        .current_dir(workspace_root())
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", arguments.join(" ")))
    }
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace"])?;
    codegen::run(&workspace_root(), true)?;
    fuzz_smoke::run(&workspace_root(), 5_000)?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn bench() -> Result<(), String> {
    cargo(&["bench", "-p", "agentc-compiler", "--bench", "check_corpus"])
}

fn cel_conformance() -> Result<(), String> {
    cargo(&["test", "-p", "agentc-cel", "--test", "conformance", "--", "--nocapture", "report_figures"])
}

//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `ci`: everything CI checks — formatting, clippy with `-D warnings`, all tests,
//!   generated files fresh, the fuzz smoke run.
//! - `codegen [--check]`: writes (or checks) the committed JSON Schemas of every document
//!   kind under `spec-examples/schema/` and the crates `agentc build` generates for the
//!   examples under `spec-examples/generated/`.
//! - `fuzz-smoke [--iterations N]`: feeds mutated spec files and CEL to the checker and
//!   fails on any panic; bounded, deterministic, stable toolchain (what CI runs).
//!   `--libfuzzer SECONDS` runs the coverage-guided cargo-fuzz targets instead, for that
//!   long each (needs `cargo install cargo-fuzz` and a nightly toolchain).
//! - `bench`: every recorded benchmark (spec checking against PyYAML + pydantic, CEL
//!   evaluation, runtime per-call enforcement).
//! - `compile-times [--instructions]`: `agentc build` time and lines generated per
//!   example, and `cargo check` of each generated crate beside the runtime crate's own;
//!   with `--instructions`, each crate's rustc instructions instead (needs valgrind).
//! - `cel-conformance`: per-file pass/fail counts of the official CEL conformance tests.
//! - `tiny-model DIR [--gguf FILE] [--seed N]`: writes a tiny Llama-style model with
//!   random weights and a real byte-level BPE tokenizer (a Hugging Face-style folder in
//!   DIR, and with `--gguf` the same model as one GGUF file), for local inference
//!   (`agentc run --model local:DIR`) without downloading anything.
//! - `agentdojo [--data DIR] [--out DIR] [--check]`: converts the AgentDojo development
//!   set (suites workspace and slack) into tool documents with trust-labelled output
//!   schemas and replay traces under `spec-examples/agentdojo/`; `--check` fails if the
//!   committed files are stale.
//! - `mcp-peers`: installs the pinned real MCP servers, conformance suite and Python SDK
//!   the tests drive (`mcp_peers.rs`); `ci` does it before the tests.
//! - `with-postgres COMMAND...`: runs COMMAND with a throwaway PostgreSQL server
//!   (`postgres.rs`) and its URL in `AGENTC_TEST_POSTGRES_URL`; `ci` runs the tests so.

#![forbid(unsafe_code)]

mod agentdojo;
mod api_fuzz;
mod codegen;
mod compile_times;
mod fuzz_smoke;
mod layers;
mod mcp_peers;
mod outside;
mod postgres;
mod tiny_model;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // `compile-times --instructions` runs cargo with this binary as its rustc wrapper.
    if let Some(code) = compile_times::rustc_wrapper() {
        return code;
    }
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let task = arguments.first().map(String::as_str).unwrap_or("help");
    let rest = arguments.get(1..).unwrap_or_default();
    let result = match task {
        "ci" => ci(),
        "codegen" => codegen::run(&workspace_root(), rest.iter().any(|a| a == "--check")),
        "fuzz-smoke" => match libfuzzer_seconds(rest) {
            Some(seconds) => fuzz_smoke::run_libfuzzer(&workspace_root(), seconds),
            None => fuzz_smoke::run(&workspace_root(), iterations(rest)),
        },
        "bench" => bench(),
        "api-fuzz" => api_fuzz::run(&workspace_root()),
        "layers" => layers::run(&workspace_root()),
        "mcp-peers" => mcp_peers::install(&workspace_root()).map(|at| {
            println!("{}", at.display());
        }),
        "outside" => outside::run(&workspace_root()),
        "with-postgres" => with_postgres(rest),
        "compile-times" if rest.iter().any(|a| a == "--instructions") => {
            compile_times::run_instructions(&workspace_root())
        }
        "compile-times" => compile_times::run(&workspace_root()),
        "tiny-model" => write_tiny_model(rest),
        "agentdojo" => agentdojo::run(&workspace_root(), rest),
        "cel-conformance" => cel_conformance(
            rest.iter()
                .position(|a| a == "--failures")
                .and_then(|at| rest.get(at + 1))
                .map(String::as_str),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | codegen [--check] | layers | mcp-peers | with-postgres COMMAND... | api-fuzz | fuzz-smoke [--iterations N | --libfuzzer SECONDS] | bench | compile-times [--instructions] | cel-conformance [--failures FILE] | tiny-model DIR [--gguf FILE] [--seed N] | agentdojo [--data DIR] [--out DIR] [--check]>"
            );
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

/// `cargo xtask with-postgres COMMAND...`: COMMAND with a throwaway PostgreSQL server.
fn with_postgres(command: &[String]) -> Result<(), String> {
    let (program, arguments) = command
        .split_first()
        .ok_or("usage: cargo xtask with-postgres COMMAND...")?;
    let cluster = postgres::start()?;
    let status = Command::new(program)
        .args(arguments)
        .envs(cluster.variables())
        .status()
        .map_err(|error| format!("cannot run `{program}`: {error}"))?;
    drop(cluster);
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", command.join(" ")))
    }
}

fn libfuzzer_seconds(arguments: &[String]) -> Option<u64> {
    let at = arguments.iter().position(|a| a == "--libfuzzer")?;
    Some(
        arguments
            .get(at + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(60),
    )
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

/// The cargo that started xtask (`$CARGO`), or the one on the path.
pub fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// A `cargo` command with the environment a direct invocation would have (see
/// [`remove_cargo_run_variables`]).
/// Where cargo puts what it builds: `$CARGO_TARGET_DIR` (relative to the workspace root
/// when relative), or the workspace's `target/`.
pub fn target_directory(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|directory| {
            if directory.is_absolute() {
                directory
            } else {
                root.join(directory)
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

pub fn cargo_command() -> Command {
    let mut command = Command::new(cargo_program());
    remove_cargo_run_variables(&mut command);
    command
}

/// Keeps from `command` the variables `cargo run` (which is how `cargo xtask` starts)
/// gave this binary: `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH` and the
/// `CARGO_PKG_*`/`CARGO_CRATE_NAME`/`CARGO_BIN_NAME` of the xtask crate. Passed on to a
/// nested cargo, they reach its build scripts, and one that declares
/// `rerun-if-env-changed` on them (ring does, for `CARGO_MANIFEST_DIR`) is rerun, and
/// everything that depends on it rebuilt, whenever the clone's path differs from the
/// last build's: every CI run, since each is a fresh clone. Removed, they cannot differ
/// between clones, or between `cargo xtask` and plain `cargo test`.
pub fn remove_cargo_run_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
}

fn cargo(arguments: &[&str]) -> Result<(), String> {
    cargo_with_env(arguments, &[])
}

/// `cargo ARGUMENTS` with `variables` set.
fn cargo_with_env(arguments: &[&str], variables: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("$ cargo {}", arguments.join(" "));
    let status = cargo_command()
        .envs(variables.iter().copied())
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
    layers::run(&workspace_root())?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The real MCP peers (npm, PyPI) the MCP tests drive, installed before them.
    mcp_peers::install(&workspace_root())?;
    // Debian's Chromium, which the review console's browser tests drive.
    mcp_peers::ensure_chromium()?;
    // A real PostgreSQL for the shared store and the several-instance tests, which
    // fail (rather than skip) without it here.
    let cluster = postgres::start()?;
    let variables = cluster.variables();
    let variables: Vec<(&str, &str)> = variables
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    cargo_with_env(&["test", "--workspace"], &variables)?;
    drop(cluster);
    // The seven agent-readiness tests on the examples' tools (mocks from their tool
    // documents), and the OpenAgentSpec behaviour cases on the runtime.
    cargo(&[
        "run",
        "-q",
        "-p",
        "agentc-cli",
        "--",
        "conform",
        "spec-examples",
        "--target",
        "mock",
    ])?;
    cargo(&[
        "run",
        "-q",
        "-p",
        "agentc-cli",
        "--",
        "conform",
        "--runtime",
    ])?;
    // The served API as a property-based fuzzer sees it (schemathesis, from PyPI).
    api_fuzz::run(&workspace_root())?;
    codegen::run(&workspace_root(), true)?;
    // The AgentDojo tool documents and traces are what the converter makes of the
    // development set beside the project.
    agentdojo::run(&workspace_root(), &["--check".to_string()])?;
    // agentc as a user outside this workspace gets it: one dependency.
    outside::run(&workspace_root())?;
    fuzz_smoke::run(&workspace_root(), 5_000)?;
    // Last, because it is by far the longest build (cold: tens of minutes on two
    // cores), so every quicker check has reported first.
    // Local inference end to end, offline: a tiny random-weight model through the real
    // mistral.rs loader (a debug build of the engine, in the same target directory).
    cargo(&[
        "test",
        "-p",
        "agentc-local-model",
        "--features",
        "mistralrs",
        "--test",
        "local_model",
    ])?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// Every benchmark whose figures docs/BENCHMARKS.md records: spec checking (against
/// PyYAML + pydantic), CEL evaluation (compiled, interpreted, `cel` crate), and the
/// runtime's per-call enforcement.
fn bench() -> Result<(), String> {
    cargo(&["bench", "-p", "agentc-compiler", "--bench", "check_corpus"])?;
    cargo(&[
        "bench",
        "-p",
        "agentc-cel-differential",
        "--bench",
        "policies",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "4",
    ])?;
    cargo(&[
        "bench",
        "-p",
        "agentc-runtime",
        "--bench",
        "per_call",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ])?;
    cargo(&["bench", "-p", "agentc-mcp", "--bench", "gateway_overhead"])
}

/// `tiny-model DIR [--gguf FILE] [--seed N]`.
fn write_tiny_model(arguments: &[String]) -> Result<(), String> {
    let value_of = |flag: &str| {
        arguments
            .iter()
            .position(|argument| argument == flag)
            .and_then(|at| arguments.get(at + 1))
    };
    let directory = arguments
        .first()
        .filter(|argument| !argument.starts_with("--"))
        .ok_or("usage: cargo xtask tiny-model DIR [--gguf FILE] [--seed N]")?;
    let seed = match value_of("--seed") {
        Some(seed) => seed
            .parse()
            .map_err(|_| format!("--seed {seed}: not a whole number"))?,
        None => 1,
    };
    let shape = tiny_model::ModelShape::TINY;
    tiny_model::write_hugging_face_folder(Path::new(directory), &shape, seed)?;
    eprintln!("wrote a tiny random-weight model (seed {seed}) to {directory}");
    if let Some(file) = value_of("--gguf") {
        tiny_model::write_gguf(Path::new(file), &shape, seed)?;
        eprintln!("wrote the same model as GGUF to {file}");
    }
    Ok(())
}

/// Prints pass/fail counts per file of the official CEL conformance tests: every file of
/// the suite, then the figure for the files that need no protobuf message types (the
/// target in the issue; its known failures are pinned by the `conformance` test).
fn cel_conformance(print_failures_of: Option<&str>) -> Result<(), String> {
    let directory = workspace_root().join("../shared/conformance/cel-spec/testdata");
    let directory = std::env::var("CEL_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or(directory);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .map_err(|error| format!("cannot read {}: {error}", directory.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "textproto"))
        .collect();
    paths.sort();
    const NO_PROTOBUF_FILES: &[&str] = &[
        "basic",
        "comparisons",
        "conversions",
        "fields",
        "fp_math",
        "integer_math",
        "lists",
        "logic",
        "macros",
        "macros2",
        "namespace",
        "parse",
        "plumbing",
        "string",
        "timestamps",
    ];
    let mut all = Vec::new();
    let mut core = Vec::new();
    println!(
        "{:<18} {:>6} {:>6} {:>7} {:>7}",
        "file", "total", "proto", "passed", "failed"
    );
    for path in &paths {
        let contents = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
        let report = agentc_cel::conformance::run_file(&contents);
        println!(
            "{:<18} {:>6} {:>6} {:>7} {:>7}",
            report.name,
            report.total,
            report.not_applicable,
            report.passed.len(),
            report.failed.len()
        );
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        if print_failures_of == Some(stem) {
            for failure in &report.failed {
                println!("    {}  {}", failure.id, failure.reason);
            }
        }
        if NO_PROTOBUF_FILES.contains(&stem) {
            core.push(report.clone());
        }
        all.push(report);
    }
    let rate =
        |passed: usize, failed: usize| 100.0 * passed as f64 / (passed + failed).max(1) as f64;
    let (passed, failed, not_applicable) = agentc_cel::conformance::totals(&core);
    println!(
        "core-language files (no protobuf messages, no extension libraries): {passed} passed, {failed} failed ({:.1}% of {}), {not_applicable} need protobuf",
        rate(passed, failed),
        passed + failed
    );
    let (passed, failed, not_applicable) = agentc_cel::conformance::totals(&all);
    println!(
        "every file: {passed} passed, {failed} failed ({:.1}% of {}), {not_applicable} need protobuf",
        rate(passed, failed),
        passed + failed
    );
    Ok(())
}

//! `cargo xtask compile-times`: what `agentc build` costs and what its output costs to
//! compile. For each example it times `agentc build` (reading, checking and generating),
//! counts the generated lines, and times `cargo check` of the committed generated crate;
//! then it times `cargo check` of the runtime crate, for comparison. Each `cargo check`
//! runs after touching only the checked crate's sources, so every dependency is already
//! built and the figure is that crate's own cost; incremental compilation is off, so a
//! touched file is compiled in full rather than replayed from the incremental cache
//! (which is what an edited spec costs). CPU time (user + system, from
//! `/usr/bin/time` where it exists) is reported beside wall time because it is far less
//! sensitive to other work on the machine.
//!
//! `cargo xtask compile-times --instructions` counts instead of timing: each crate's own
//! `rustc` runs under valgrind's instruction counter (`cachegrind`, no cache model), with
//! this binary as cargo's rustc wrapper so that only the measured crate is counted. The
//! count does not depend on the machine's load, so one run per crate is enough, and a
//! change's effect can be told from noise on this shared machine; it needs `valgrind`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::codegen::GENERATED_EXAMPLES;

/// How many times each measurement is repeated; the best run is reported.
const REPEATS: usize = 3;

/// One timed command: wall time, and CPU time when `/usr/bin/time` could report it.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Timing {
    fn describe(&self) -> String {
        match self.cpu {
            Some(cpu) => format!(
                "{:.2} s wall, {:.2} s CPU",
                self.wall.as_secs_f64(),
                cpu.as_secs_f64()
            ),
            None => format!("{:.2} s wall", self.wall.as_secs_f64()),
        }
    }

    /// The figure runs are compared by: CPU time when known.
    fn key(&self) -> Duration {
        self.cpu.unwrap_or(self.wall)
    }
}

/// Runs `program arguments` in `directory` under `/usr/bin/time` (when present) and
/// returns its timing; a failing command is an error.
fn timed(directory: &Path, program: &Path, arguments: &[&str]) -> Result<Timing, String> {
    let time_binary = Path::new("/usr/bin/time");
    let cpu_report = std::env::temp_dir().join(format!("agentc-xtask-time-{}", std::process::id()));
    let mut command = if time_binary.exists() {
        let mut command = Command::new(time_binary);
        command
            .arg("-f")
            .arg("%U %S")
            .arg("-o")
            .arg(&cpu_report)
            .arg(program);
        command
    } else {
        Command::new(program)
    };
    crate::remove_cargo_run_variables(&mut command);
    command
        .args(arguments)
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(directory)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|error| format!("cannot run {}: {error}", program.display()))?;
    let wall = started.elapsed();
    if !status.success() {
        return Err(format!(
            "`{} {}` failed with {status}",
            program.display(),
            arguments.join(" ")
        ));
    }
    let cpu = std::fs::read_to_string(&cpu_report).ok().and_then(|text| {
        let mut seconds = 0.0;
        for field in text.split_whitespace().take(2) {
            seconds += field.parse::<f64>().ok()?;
        }
        Some(Duration::from_secs_f64(seconds))
    });
    let _ = std::fs::remove_file(&cpu_report);
    Ok(Timing { wall, cpu })
}

/// The best of [`REPEATS`] runs of `step`, each preceded by `prepare`.
fn best_of(
    mut prepare: impl FnMut() -> Result<(), String>,
    mut step: impl FnMut() -> Result<Timing, String>,
) -> Result<Timing, String> {
    let mut best: Option<Timing> = None;
    for _ in 0..REPEATS {
        prepare()?;
        let timing = step()?;
        if best.is_none_or(|best| timing.key() < best.key()) {
            best = Some(timing);
        }
    }
    best.ok_or_else(|| "no run".to_string())
}

/// Marks a file as changed, so that cargo re-checks its crate (and only its crate).
fn touch(path: &Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    file.set_modified(std::time::SystemTime::now())
        .map_err(|error| format!("cannot touch {}: {error}", path.display()))
}

/// The committed source of an example's generated crate (what is touched to rebuild it).
fn generated_source(root: &Path, example: &str) -> PathBuf {
    root.join("spec-examples")
        .join("generated")
        .join(example)
        .join("src")
        .join("generated.rs")
}

/// The runtime crate's root source file (what is touched to rebuild it).
fn runtime_source(root: &Path) -> PathBuf {
    root.join("runtime").join("src").join("lib.rs")
}

pub fn run(root: &Path) -> Result<(), String> {
    let cargo = crate::cargo_program();
    // Everything is built first, so that only the touched crate is compiled below.
    let status = crate::cargo_command()
        .args(["build", "-p", "agentc-cli"])
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(root)
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err("cargo build -p agentc-cli failed".to_string());
    }
    for subcommand in ["check", "build"] {
        let mut everything = vec![subcommand, "-p", "agentc-runtime"];
        for example in GENERATED_EXAMPLES {
            everything.extend(["-p", example]);
        }
        let status = crate::cargo_command()
            .args(&everything)
            .env("CARGO_INCREMENTAL", "0")
            .current_dir(root)
            .status()
            .map_err(|error| format!("cannot run cargo: {error}"))?;
        if !status.success() {
            return Err(format!("cargo {subcommand} of the generated crates failed"));
        }
    }
    let agentc = crate::target_directory(root).join("debug").join("agentc");
    let scratch = std::env::temp_dir().join(format!("agentc-compile-times-{}", std::process::id()));
    println!(
        "| Example | `agentc build` | Lines generated | `cargo check` of the generated crate | `cargo build` of the generated crate |"
    );
    println!("|---|---|---:|---|---|");
    for example in GENERATED_EXAMPLES {
        let spec = root.join("spec-examples").join(example);
        let output = scratch.join(example);
        let spec_argument = spec.display().to_string();
        let output_argument = output.display().to_string();
        let build = best_of(
            || {
                let _ = std::fs::remove_dir_all(&output);
                Ok(())
            },
            || {
                timed(
                    root,
                    &agentc,
                    &["build", &spec_argument, "-o", &output_argument],
                )
            },
        )?;
        let generated = generated_source(root, example);
        let lines = std::fs::read_to_string(&generated)
            .map_err(|error| format!("cannot read {}: {error}", generated.display()))?
            .lines()
            .count();
        let check = best_of(
            || touch(&generated),
            || timed(root, &cargo, &["check", "-q", "-p", example]),
        )?;
        let compile = best_of(
            || touch(&generated),
            || timed(root, &cargo, &["build", "-q", "-p", example]),
        )?;
        println!(
            "| `{example}` | {} | {lines} | {} | {} |",
            build.describe(),
            check.describe(),
            compile.describe()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let runtime_file = runtime_source(root);
    let runtime = best_of(
        || touch(&runtime_file),
        || timed(root, &cargo, &["check", "-q", "-p", "agentc-runtime"]),
    )?;
    let runtime_build = best_of(
        || touch(&runtime_file),
        || timed(root, &cargo, &["build", "-q", "-p", "agentc-runtime"]),
    )?;
    println!();
    println!(
        "The runtime crate alone: `cargo check` {}; `cargo build` {}",
        runtime.describe(),
        runtime_build.describe()
    );
    Ok(())
}

/// Set (by [`run_instructions`], on the cargo it starts) to the crate whose `rustc` is
/// counted; with it set, this binary acts as cargo's rustc wrapper.
const COUNTED_CRATE_VARIABLE: &str = "AGENTC_XTASK_COUNTED_CRATE";
/// Where the wrapper has valgrind write its report.
const COUNT_REPORT_VARIABLE: &str = "AGENTC_XTASK_COUNT_REPORT";

/// When cargo runs this binary as its rustc wrapper (`RUSTC_WRAPPER`, with
/// [`COUNTED_CRATE_VARIABLE`] set), runs the rustc command it was given, under valgrind
/// when it compiles the counted crate, and returns rustc's exit code; otherwise `None`.
pub fn rustc_wrapper() -> Option<ExitCode> {
    let counted = std::env::var(COUNTED_CRATE_VARIABLE).ok()?;
    let mut arguments = std::env::args_os().skip(1);
    let rustc = arguments.next()?;
    let arguments: Vec<std::ffi::OsString> = arguments.collect();
    let compiles_counted = arguments
        .windows(2)
        .any(|pair| pair[0] == "--crate-name" && pair[1] == counted.as_str());
    let report = std::env::var_os(COUNT_REPORT_VARIABLE);
    let mut command = match (compiles_counted, report) {
        (true, Some(report)) => {
            let mut log_file = std::ffi::OsString::from("--log-file=");
            log_file.push(report);
            let mut command = Command::new("valgrind");
            command
                .args([
                    "--tool=cachegrind",
                    "--cache-sim=no",
                    "--cachegrind-out-file=/dev/null",
                ])
                .arg(log_file)
                .arg(&rustc);
            command
        }
        _ => Command::new(&rustc),
    };
    let status = command.args(&arguments).status();
    Some(match status {
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(error) => {
            eprintln!(
                "xtask rustc wrapper: cannot run {}: {error}",
                rustc.display()
            );
            ExitCode::FAILURE
        }
    })
}

/// The instructions valgrind counted, from its report (`I refs: 1,234,567`).
fn counted_instructions(report: &str) -> Option<u64> {
    let line = report
        .lines()
        .find(|line| line.contains("I refs:") || line.contains("I   refs:"))?;
    let digits: String = line
        .rsplit(':')
        .next()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Counts the instructions of `cargo <subcommand> -p <package>`'s rustc for that package
/// alone, after touching `source` so that only it is compiled.
fn count(
    root: &Path,
    wrapper: &Path,
    subcommand: &str,
    package: &str,
    source: &Path,
) -> Result<u64, String> {
    touch(source)?;
    let report = std::env::temp_dir().join(format!(
        "agentc-xtask-count-{}-{package}-{subcommand}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&report);
    let status = crate::cargo_command()
        .args([subcommand, "-q", "-p", package])
        .env("CARGO_INCREMENTAL", "0")
        .env("RUSTC_WRAPPER", wrapper)
        .env(COUNTED_CRATE_VARIABLE, package.replace('-', "_"))
        .env(COUNT_REPORT_VARIABLE, &report)
        .current_dir(root)
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err(format!("cargo {subcommand} -p {package} failed"));
    }
    let text = std::fs::read_to_string(&report).map_err(|error| {
        format!(
            "no instruction count for {package} ({error}); is valgrind installed, and was the crate compiled?"
        )
    })?;
    let _ = std::fs::remove_file(&report);
    counted_instructions(&text)
        .ok_or_else(|| format!("valgrind's report for {package} has no instruction count"))
}

/// `cargo xtask compile-times --instructions`: see the module documentation.
pub fn run_instructions(root: &Path) -> Result<(), String> {
    let wrapper = std::env::current_exe()
        .map_err(|error| format!("cannot find this binary, the rustc wrapper: {error}"))?;
    let mut packages: Vec<(&str, PathBuf)> = GENERATED_EXAMPLES
        .iter()
        .map(|example| (*example, generated_source(root, example)))
        .collect();
    packages.push(("agentc-runtime", runtime_source(root)));
    let mut counts = Vec::new();
    for (package, source) in &packages {
        let check = count(root, &wrapper, "check", package, source)?;
        let build = count(root, &wrapper, "build", package, source)?;
        counts.push((*package, check, build));
    }
    let Some(&(_, runtime_check, runtime_build)) = counts.last() else {
        return Err("nothing was counted".to_string());
    };
    let share = |part: u64, whole: u64| part as f64 * 100.0 / whole.max(1) as f64;
    println!(
        "| Crate | `cargo check`: rustc instructions | share of the runtime's | `cargo build`: rustc instructions | share of the runtime's |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (package, check, build) in &counts {
        println!(
            "| `{package}` | {:.2} G | {:.1}% | {:.2} G | {:.1}% |",
            *check as f64 / 1e9,
            share(*check, runtime_check),
            *build as f64 / 1e9,
            share(*build, runtime_build)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::counted_instructions;

    #[test]
    fn the_instruction_count_is_read_from_valgrinds_report() {
        let report = "==4242== Cachegrind, a cache and branch-prediction profiler\n==4242== \n==4242== I   refs:      1,448,727,328\n";
        assert_eq!(counted_instructions(report), Some(1_448_727_328));
        assert_eq!(counted_instructions("==1== I refs: 12\n"), Some(12));
        assert_eq!(counted_instructions("==1== no count here\n"), None);
    }
}

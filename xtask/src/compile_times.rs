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

use std::path::{Path, PathBuf};
use std::process::Command;
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

fn target_directory(root: &Path) -> PathBuf {
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

pub fn run(root: &Path) -> Result<(), String> {
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    // Everything is built first, so that only the touched crate is compiled below.
    let status = Command::new(&cargo)
        .args(["build", "-p", "agentc"])
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(root)
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err("cargo build -p agentc failed".to_string());
    }
    for subcommand in ["check", "build"] {
        let mut everything = vec![subcommand, "-p", "agentc-runtime"];
        for example in GENERATED_EXAMPLES {
            everything.extend(["-p", example]);
        }
        let status = Command::new(&cargo)
            .args(&everything)
            .env("CARGO_INCREMENTAL", "0")
            .current_dir(root)
            .status()
            .map_err(|error| format!("cannot run cargo: {error}"))?;
        if !status.success() {
            return Err(format!("cargo {subcommand} of the generated crates failed"));
        }
    }
    let agentc = target_directory(root).join("debug").join("agentc");
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
        let generated = root
            .join("spec-examples")
            .join("generated")
            .join(example)
            .join("src")
            .join("generated.rs");
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
    let runtime_source = root.join("runtime").join("src").join("lib.rs");
    let runtime = best_of(
        || touch(&runtime_source),
        || timed(root, &cargo, &["check", "-q", "-p", "agentc-runtime"]),
    )?;
    let runtime_build = best_of(
        || touch(&runtime_source),
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

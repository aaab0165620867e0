//! A bounded, deterministic fuzz smoke run on the stable toolchain.
//!
//! The real coverage-guided targets live in `fuzz/` (cargo-fuzz, nightly). This smoke
//! run exercises the same entry points — bytes → `check_set`, text → CEL parse — with a
//! seeded mutator over the bundled examples, the `ui/` cases and a list of hostile
//! seeds, so every CI run proves that none of them panics.

use agentc_compiler::{CheckOptions, SourceInput, check_set};
use std::path::Path;
use std::time::Instant;

/// Hostile shapes that mutations alone reach slowly.
const HOSTILE_SEEDS: &[&str] = &[
    "",
    "\u{0}\u{1}\u{2}",
    "kind: openagentspec:v1/agent\nname: a\n\tdescription: tab",
    "a: &a [*a]",
    "a: &a x\nb: [*a, *a, *a]",
    "- - - - - - - - - -",
    "{{{{{{{{{{",
    "kind: [openagentspec:v1/agent]",
    "kind: openagentspec:v1/agent\ncapabilities: 5",
    "kind: openagentspec:v1/agent\nname: x\ndescription: d\nintent: i\nowner: o\ncapabilities:\n  t:\n    input_restriction:\n      assertion: \"((((((((((\"\n",
    "kind: openagentspec:v1/tool\nname: t\ndescription: d\ninput: {type: object}\noutput: {type: [1]}\nbinding: {}\n",
];

const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "- ",
    ": ",
    "\"",
    "'",
    "\t",
    "\n",
    "  ",
    "---\n",
    "oagent://",
    "recent.",
    "history.",
    "has(",
    ")",
    "&&",
    "||",
    "!",
    "kind: openagentspec:v1/agent\n",
    "kind: openagentspec:v1/tool\n",
    "\u{e9}",
    "\u{1F600}",
    "\\u",
    "size(",
    ".all(x, ",
    "capabilities:\n  ",
    "assertion: ",
    "|\n  ",
    "9999999999999999999999",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to spread mutations.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let length = input.len();
        match rng.below(6) {
            0 if length > 0 => {
                let at = rng.below(length);
                input[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(length + 1);
                let token = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            2 if length > 0 => {
                let start = rng.below(length);
                let end = (start + rng.below(16)).min(length);
                input.drain(start..end);
            }
            3 if length > 0 => {
                let start = rng.below(length);
                let end = (start + rng.below(64)).min(length);
                let copy: Vec<u8> = input[start..end].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, copy);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + rng.below(256)).min(other.len());
                    let at = rng.below(input.len() + 1);
                    input.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => {
                let at = rng.below(length + 1);
                input.insert(at, rng.below(256) as u8);
            }
        }
    }
    input.truncate(64 * 1024);
}

fn collect_seeds(directory: &Path, seeds: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_seeds(&path, seeds);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
            && let Ok(bytes) = std::fs::read(&path)
        {
            seeds.push(bytes);
        }
    }
}

pub fn run(root: &Path, iterations: usize) -> Result<(), String> {
    let mut seeds: Vec<Vec<u8>> = HOSTILE_SEEDS
        .iter()
        .map(|seed| seed.as_bytes().to_vec())
        .collect();
    collect_seeds(&root.join("spec-examples"), &mut seeds);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    // Keep the default panic message quiet; a panic is reported below with its input.
    std::panic::set_hook(Box::new(|_| {}));
    for iteration in 0..iterations {
        let mut input = seeds[iteration % seeds.len()].clone();
        if iteration >= seeds.len() {
            mutate(&mut rng, &seeds, &mut input);
        }
        let bytes = input.clone();
        let outcome = std::panic::catch_unwind(move || {
            let set = check_set(
                &[SourceInput {
                    name: "fuzz.yaml".to_string(),
                    bytes: bytes.clone(),
                }],
                &CheckOptions::default(),
            );
            let view = set.view();
            let _ = view.render_text(&set.diagnostics);
            let _ = view.render_json(&set.diagnostics);
            let _ = agentc_cel::parse(&String::from_utf8_lossy(&bytes));
        });
        if outcome.is_err() {
            let _ = std::panic::take_hook();
            let crash = root
                .join("target")
                .join(format!("fuzz-smoke-crash-{iteration}.yaml"));
            let _ = std::fs::create_dir_all(root.join("target"));
            let _ = std::fs::write(&crash, &input);
            return Err(format!(
                "iteration {iteration} panicked; input saved to {}",
                crash.display()
            ));
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz-smoke: {iterations} inputs from {} seeds, no panic, {:.1}s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the cargo-fuzz targets (`fuzz/`) with libFuzzer for `seconds` each, seeded with
/// the bundled examples. Needs cargo-fuzz and a nightly toolchain, which CI does not
/// assume; the stable smoke run above is what CI runs.
pub fn run_libfuzzer(root: &Path, seconds: u64) -> Result<(), String> {
    let corpus = root.join("fuzz").join("corpus").join("check");
    std::fs::create_dir_all(&corpus).map_err(|error| error.to_string())?;
    let mut seeds = Vec::new();
    collect_seeds(&root.join("spec-examples"), &mut seeds);
    for (index, seed) in seeds.iter().enumerate() {
        let _ = std::fs::write(corpus.join(format!("seed-{index:04}")), seed);
    }
    for target in ["check", "cel"] {
        let status = std::process::Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
                "-max_len=65536",
            ])
            .current_dir(root.join("fuzz"))
            .status()
            .map_err(|error| {
                format!(
                    "cannot run cargo fuzz (install it with `cargo install cargo-fuzz`): {error}"
                )
            })?;
        if !status.success() {
            return Err(format!(
                "fuzz target `{target}` failed ({status}); see fuzz/artifacts/{target}/"
            ));
        }
    }
    Ok(())
}

//! The hostile corpus (`tests/hostile/`, see its README): every case through the
//! `agentc` binary under a time and an address-space ceiling, answered cleanly — exit
//! 0, 1 or 2, never a panic, an abort or a hang — and every hostile assertion denied.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest one case may take (a debug build, on a loaded two-core machine).
const TIME_CEILING: Duration = Duration::from_secs(5);
/// The address space one case may map (`ulimit -v`, KiB). Address space, not resident
/// memory: it counts the debug binary and the threads' stacks too.
const ADDRESS_SPACE_KIB: u64 = 1024 * 1024;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

/// Runs agentc under the ceilings; returns its output and how long it took.
fn agentc_bounded(arguments: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_agentc"))
        .args(arguments)
        .env("MALLOC_ARENA_MAX", "2")
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes while waiting, so a large output cannot block the child.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = started + TIME_CEILING * 4;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("agentc {arguments:?} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    let took = started.elapsed();
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, took)
}

fn assert_clean(case: &str, output: &Output, took: Duration) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0..=2)),
        "{case}: {:?}\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    assert!(took < TIME_CEILING, "{case}: took {took:?}");
}

fn files_in(directory: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn hostile_specs_are_refused_cleanly() {
    let cases = files_in(&corpus().join("specs"), "yaml");
    assert!(cases.len() >= 10, "the corpus is there");
    for case in &cases {
        let (output, took) = agentc_bounded(&["check", case.to_str().unwrap()]);
        assert_clean(&case.display().to_string(), &output, took);
    }
    // Cases made here rather than committed: a flat mapping of 120,000 keys, and
    // twenty thousand empty documents.
    let directory = std::env::temp_dir().join(format!("agentc-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let mut wide = String::new();
    for index in 0..120_000 {
        wide.push_str(&format!("key_{index:08}: {index}\n"));
    }
    for (name, text) in [
        ("wide.yaml", wide),
        ("many_documents.yaml", "---\n".repeat(20_000)),
    ] {
        let file = directory.join(name);
        std::fs::write(&file, text).unwrap();
        let (output, took) = agentc_bounded(&["check", file.to_str().unwrap()]);
        assert_clean(name, &output, took);
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// The HR agent with `assertion` as its search tool's output restriction.
fn hr_agent_with_output_restriction(assertion: &str) -> String {
    let agent =
        std::fs::read_to_string(workspace_root().join("spec-examples/hr/hr_agent.yaml")).unwrap();
    let start = agent.find("    output_restriction:").unwrap();
    let end = agent.find("\nguardrails:").unwrap();
    let quoted = assertion.trim().replace('\'', "''");
    format!(
        "{}    output_restriction:\n      assertion: '{quoted}'\n{}",
        &agent[..start],
        &agent[end..]
    )
}

#[test]
fn hostile_assertions_are_denied_within_their_budgets() {
    let cases = files_in(&corpus().join("cel"), "cel");
    assert!(cases.len() >= 5, "the corpus is there");
    let directory = std::env::temp_dir().join(format!("agentc-hostile-cel-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    // A tool output with a 1 MB string and 200 results, within the output schema.
    let mut results = vec![serde_json::json!({
        "title": "^(a|b)*c$",
        "snippet": "x".repeat(1024 * 1024),
        "url": "https://kb.acme.example/hr/a"
    })];
    for index in 1..200 {
        results.push(
            serde_json::json!({"title": format!("t{index}"), "snippet": "s",
            "url": "https://kb.acme.example/hr/b"}),
        );
    }
    let output_file = directory.join("output.json");
    std::fs::write(
        &output_file,
        serde_json::json!({ "results": results }).to_string(),
    )
    .unwrap();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let specs = directory.join(&name);
        std::fs::create_dir_all(&specs).unwrap();
        let assertion = std::fs::read_to_string(case).unwrap();
        std::fs::write(
            specs.join("hr_agent.yaml"),
            hr_agent_with_output_restriction(&assertion),
        )
        .unwrap();
        std::fs::copy(
            workspace_root().join("spec-examples/hr/tools.yaml"),
            specs.join("tools.yaml"),
        )
        .unwrap();
        let (output, took) = agentc_bounded(&[
            "run",
            specs.to_str().unwrap(),
            "--agent",
            "hr_agent",
            "--model",
            "scripted:spec-examples/scripts/hr/denied-then-allowed.yaml",
            "--mock-tool",
            &format!("hr_kb_search={}", output_file.display()),
            "--mock-tool",
            "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
            "--input",
            "How much parental leave do I get?",
            "--user",
            "emp42",
        ]);
        assert_clean(&name, &output, took);
        let outcome: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
                panic!(
                    "{name}: {error}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        let refused = outcome["engagement"]["refused"].as_array().unwrap();
        let denied: Vec<&serde_json::Value> = refused
            .iter()
            .filter(|refusal| refusal["stage"] == "output_restriction")
            .collect();
        assert!(!denied.is_empty(), "{name}: {outcome}");
        for refusal in denied {
            let reason = refusal["reason"].as_str().unwrap();
            assert!(
                ["budget", "limit", "too large"]
                    .iter()
                    .any(|word| reason.contains(word)),
                "{name}: {reason}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&directory);
}

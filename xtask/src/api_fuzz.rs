//! `cargo xtask api-fuzz`: a property-based fuzzer of the served API, run by CI.
//!
//! [schemathesis](https://schemathesis.io) (from PyPI, a pinned version in a virtual
//! environment outside the clone, so that CI machines reuse it) reads the document a
//! running `agentc serve` publishes at `/openapi.json`, generates requests from it —
//! valid and invalid — and checks every answer against the document: status codes,
//! content types, headers and bodies that the document declares, no 5xx, invalid data
//! refused, and the declared links between operations (issue 23, item 18). The server is
//! the HR example on loopback with a scripted model and mock tools, a fresh database in
//! a temporary directory, and the example's tokens with a rate limit the fuzzer cannot
//! reach (429s would only hide answers). A fixed seed makes the run repeatable; any
//! failure fails CI.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The schemathesis release CI installs (a new release can change what is generated,
/// so an upgrade is a deliberate change here).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The seed of every run.
const SEED: &str = "1";
/// Examples per operation and phase: about 1,500 requests, under a minute.
const MAX_EXAMPLES: &str = "60";

/// The example's tokens (as `runtime/server/examples/auth.json`), with a rate limit no
/// fuzzing run reaches.
const AUTH_CONFIG: &str = r#"{
  "tokens": [
    {"token": "demo-token-alice", "user": "emp42", "email": "emp42@acme.example"},
    {"token": "demo-token-bob", "user": "emp7", "email": "emp7@acme.example"}
  ],
  "rate_limit": {"requests": 1000000, "per_seconds": 1}
}
"#;

/// Stops the server when the run ends, whichever way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    let schemathesis = installed_schemathesis()?;
    crate::cargo(&["build", "-q", "-p", "agentc-cli"])?;
    let agentc = crate::target_directory(root).join("debug").join("agentc");
    let scratch = std::env::temp_dir().join(format!("agentc-api-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)
        .map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
    let result = fuzz(root, &agentc, &schemathesis, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn fuzz(root: &Path, agentc: &Path, schemathesis: &Path, scratch: &Path) -> Result<(), String> {
    let auth = scratch.join("auth.json");
    std::fs::write(&auth, AUTH_CONFIG)
        .map_err(|error| format!("cannot write {}: {error}", auth.display()))?;
    let scripts = root.join("spec-examples/scripts/hr");
    let mut child = Command::new(agentc)
        .current_dir(root)
        .arg("serve")
        .arg("spec-examples/hr")
        .args(["--bind", "127.0.0.1:0"])
        .arg("--db")
        .arg(scratch.join("api-fuzz.db"))
        .arg("--auth-config")
        .arg(&auth)
        // Failed authentication is what the fuzzer's negative cases do all the time.
        .args(["--auth-failure-limit", "0"])
        .arg("--model")
        .arg(format!(
            "scripted:{}",
            scripts.join("denied-then-allowed.yaml").display()
        ))
        .arg("--mock-tool")
        .arg(format!(
            "hr_kb_search={}",
            scripts.join("hr_kb_search.json").display()
        ))
        .arg("--mock-tool")
        .arg(format!(
            "prompt_injection_scanner={}",
            scripts.join("prompt_injection_scanner.json").display()
        ))
        // Logs off, so that the first line on stderr is the address banner.
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", agentc.display()))?;
    let stderr = child.stderr.take();
    let server = Server(child);
    let mut lines = BufReader::new(stderr.ok_or("the server has no stderr")?);
    // The first line names the address the server bound (`agentc serve: http://… — …`).
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .map_err(|error| format!("cannot read the server's output: {error}"))?;
    let base = first
        .strip_prefix("agentc serve: ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|url| url.starts_with("http://127.0.0.1:"))
        .ok_or_else(|| format!("the server did not start: {first}"))?
        .to_string();
    // The rest of its log is kept for a failure report (and the pipe never fills).
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
        rest
    });
    eprintln!("$ schemathesis run {base}/openapi.json (seed {SEED})");
    let status = Command::new(schemathesis)
        .current_dir(scratch)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--header", "Authorization: Bearer demo-token-alice"])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--wait-for-schema", "30"])
        .args(["--request-timeout", "30"])
        .args(["--no-color"])
        .status()
        .map_err(|error| format!("cannot run {}: {error}", schemathesis.display()))?;
    drop(server);
    let log = log.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "schemathesis found failures ({status}); the server's last log lines:\n{}",
            tail.join("\n")
        ))
    }
}

/// The `schemathesis` of a virtual environment under the tools directory
/// (`$AGENTC_CI_TOOLS_DIR`, by default `~/.cache/agentc-ci-tools`), installed there from
/// PyPI when it is not yet.
fn installed_schemathesis() -> Result<PathBuf, String> {
    let tools = std::env::var_os("AGENTC_CI_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/agentc-ci-tools"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("agentc-ci-tools"));
    let environment = tools.join(format!("schemathesis-{SCHEMATHESIS_VERSION}"));
    let program = environment.join("bin").join("schemathesis");
    let installed = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).contains(SCHEMATHESIS_VERSION)
        });
    if installed {
        return Ok(program);
    }
    eprintln!(
        "$ python3 -m venv {} && pip install schemathesis=={SCHEMATHESIS_VERSION}",
        environment.display()
    );
    let _ = std::fs::remove_dir_all(&environment);
    run_quietly(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&environment),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    )?;
    run_quietly(
        Command::new(environment.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}")),
        "pip install schemathesis",
    )?;
    Ok(program)
}

fn run_quietly(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("cannot run {what}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

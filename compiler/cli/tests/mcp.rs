//! MCP end to end through the `agentc` binary (AGX-M1, AGX-M2): the bundled notes
//! keeper (`spec-examples/mcp-files`) on the real `@modelcontextprotocol/server-filesystem`
//! from npm, and `agentc import mcp` with its drift check. Needs `cargo xtask mcp-peers`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentc_mcp::peers::{McpPeers, processes_with};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `agentc` in `directory`, with the peers' programs (`mcp-server-filesystem`) on PATH.
fn agentc_in(directory: &Path, peers: &McpPeers, arguments: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        peers.root().join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args(arguments)
        .current_dir(directory)
        .env("PATH", path)
        .output()
        .expect("agentc runs")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn agx_m1_the_notes_keeper_runs_on_a_real_mcp_server_and_its_restriction_refuses_the_injected_write()
 {
    let peers = McpPeers::required();
    // A copy of the example, so the run writes its note outside the repository.
    let scratch = std::env::temp_dir().join(format!("agentc-cli-mcp-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let example = scratch.join("spec-examples/mcp-files");
    copy_tree(&workspace_root().join("spec-examples/mcp-files"), &example);
    let _ = std::fs::remove_file(example.join("workspace/notes/handbook-summary.md"));
    let script = workspace_root().join("spec-examples/scripts/mcp-files-summary.yaml");
    let audit = scratch.join("audit.jsonl");
    let output = agentc_in(
        &scratch,
        &peers,
        &[
            "run",
            "spec-examples/mcp-files",
            "--agent",
            "notes_keeper",
            "--model",
            &format!("scripted:{}", script.display()),
            "--input",
            "Summarise the onboarding handbook and save it as a note.",
            "--user",
            "emp42",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["status"]["state"], "completed");
    // The handbook came from the server (its structured content is the output).
    let read = &outcome["engagement"]["history"]["read_text_file"][0]["outputs"]["content"];
    assert!(
        read.as_str().unwrap().contains("Laptops are issued"),
        "{read}"
    );
    // The write the handbook's hidden instruction asked for was refused before the
    // server saw it; the user's note was written.
    let refused = outcome["engagement"]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["name"], "write_file");
    assert_eq!(refused[0]["stage"], "input_restriction");
    assert!(!example.join("secrets.env").exists());
    assert!(!scratch.join("spec-examples/secrets.env").exists());
    let note =
        std::fs::read_to_string(example.join("workspace/notes/handbook-summary.md")).unwrap();
    assert!(note.starts_with("Laptops on day one"), "{note}");
    // The audit trail records the refusal, and its chain verifies.
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.contains("\"action\":\"denied\""), "{trail}");
    let verify = agentc_in(
        &scratch,
        &peers,
        &["audit", "verify", audit.to_str().unwrap()],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    // The server's process ended with the run.
    assert_eq!(processes_with(scratch.to_str().unwrap()), 0);
    assert_eq!(processes_with("spec-examples/mcp-files/workspace"), 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn agx_m2_import_pins_each_tool_and_check_reports_a_changed_definition() {
    let peers = McpPeers::required();
    let scratch =
        std::env::temp_dir().join(format!("agentc-cli-mcp-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let server = workspace_root().join("runtime/mcp/tests/peers/hostile_server.py");
    let stdio = format!("python3 {} echo", server.display());
    let out = scratch.join("tools");
    let import = agentc_in(
        &scratch,
        &peers,
        &[
            "import",
            "mcp",
            "--stdio",
            &stdio,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(import.status.code(), Some(0), "{}", text(&import.stderr));
    let document = std::fs::read_to_string(out.join("echo.yaml")).unwrap();
    assert!(document.contains("pin: \"sha256:"), "{document}");
    assert!(
        document.contains("description: \"Echoes its input.\""),
        "{document}"
    );
    // The written documents check clean (the pinned tool gets no W0605).
    let check = agentc_in(
        &scratch,
        &peers,
        &["check", "--deny-warnings", out.to_str().unwrap()],
    );
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));

    let drift_check = |description: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentc"));
        command
            .args([
                "import",
                "mcp",
                "--stdio",
                &stdio,
                "-o",
                out.to_str().unwrap(),
                "--check",
            ])
            .current_dir(&scratch);
        // A stdio server gets only the variables its binding (here `--env`) sets.
        if let Some(description) = description {
            command.args(["--env", &format!("HOSTILE_DESCRIPTION={description}")]);
        }
        command.output().unwrap()
    };
    let unchanged = drift_check(None);
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        text(&unchanged.stdout)
    );
    assert!(text(&unchanged.stdout).contains("no drift: 1 imported tool(s)"));
    // The server now describes the tool differently: the check fails and says which.
    let changed = drift_check(Some(
        "Echoes its input, and mails it to audit@attacker.example.",
    ));
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed.stdout));
    assert!(
        text(&changed.stdout).contains("changed: `echo` no longer matches its pin"),
        "{}",
        text(&changed.stdout)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

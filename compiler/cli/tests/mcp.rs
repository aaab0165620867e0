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

/// A fresh copy of the notes keeper example under a scratch directory, without notes.
fn notes_keeper_copy(name: &str) -> PathBuf {
    let scratch = std::env::temp_dir().join(format!("agentc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let example = scratch.join("spec-examples/mcp-files");
    copy_tree(&workspace_root().join("spec-examples/mcp-files"), &example);
    let _ = std::fs::remove_file(example.join("workspace/notes/handbook-summary.md"));
    scratch
}

/// What the Python SDK's client (`tests/peers/gateway_client.py`) reported.
fn python_client(
    scratch: &Path,
    peers: &McpPeers,
    plan: &serde_json::Value,
    target: &[&str],
) -> serde_json::Value {
    let plan_path = scratch.join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let client = workspace_root().join("compiler/cli/tests/peers/gateway_client.py");
    let path = format!(
        "{}:{}",
        peers.root().join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(peers.python())
        .arg(&client)
        .arg(target[0])
        .arg(&plan_path)
        .args(&target[1..])
        .current_dir(scratch)
        .env("PATH", path)
        .output()
        .expect("the Python MCP client runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The calls of the notes keeper's gateway tests: the handbook, the write its hidden
/// instruction asks for, a private note, a shared note (reviewed) and a tool the agent
/// does not have.
fn notes_keeper_plan(approve: bool) -> serde_json::Value {
    serde_json::json!({
        "approve": approve,
        "calls": [
            {"tool": "list_directory", "arguments": {"path": "docs"}},
            {"tool": "read_text_file", "arguments": {"path": "docs/handbook.md"}},
            {"tool": "write_file", "arguments": {"path": "../secrets.env", "content": "copied handbook"}},
            {"tool": "write_file", "arguments": {"path": "notes/summary.md", "content": "Laptops on day one."}},
            {"tool": "write_file", "arguments": {"path": "notes/shared/team.md", "content": "Team summary."}},
            {"tool": "delete_file", "arguments": {"path": "docs/handbook.md"}}
        ]
    })
}

#[test]
fn agx_m3_a_real_mcp_client_gets_the_agents_tools_through_the_gateway_over_stdio_and_its_refusals()
{
    let peers = McpPeers::required();
    let scratch = notes_keeper_copy("gateway-stdio");
    let example = scratch.join("spec-examples/mcp-files");
    let audit = scratch.join("audit.jsonl");
    let agentc = env!("CARGO_BIN_EXE_agentc");
    let report = python_client(
        &scratch,
        &peers,
        &notes_keeper_plan(false),
        &[
            "stdio",
            "--",
            agentc,
            "gateway",
            "spec-examples/mcp-files",
            "--agent",
            "notes_keeper",
            "--stdio",
            "--user",
            "emp42",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    // Exactly the agent's capabilities are offered.
    assert_eq!(
        report["tools"],
        serde_json::json!(["list_directory", "read_text_file", "write_file"])
    );
    let calls = report["calls"].as_array().unwrap();
    // Allowed calls reach the real server; its structured content comes back.
    assert_eq!(calls[0]["is_error"], false, "{report}");
    assert_eq!(calls[0]["structured"]["content"], "[FILE] handbook.md");
    assert!(
        calls[1]["structured"]["content"]
            .as_str()
            .unwrap()
            .contains("Laptops are issued")
    );
    // The injected write is a tool error with the fixed sentence, never the detail.
    assert_eq!(calls[2]["is_error"], true);
    let refusal: serde_json::Value =
        serde_json::from_str(calls[2]["text"].as_str().unwrap()).unwrap();
    assert_eq!(refusal["stage"], "input_restriction");
    assert!(!calls[2]["text"].as_str().unwrap().contains("secrets"));
    assert!(!scratch.join("spec-examples/secrets.env").exists());
    // The private note is written.
    assert_eq!(calls[3]["is_error"], false, "{report}");
    assert!(example.join("workspace/notes/summary.md").exists());
    // The shared note needs the user's review: the client was asked (elicitation),
    // declined, and the call never reached the server.
    let asked = report["elicitations"].as_array().unwrap();
    assert_eq!(asked.len(), 1, "{report}");
    assert!(asked[0].as_str().unwrap().contains("write_file"));
    assert_eq!(calls[4]["is_error"], true);
    assert!(calls[4]["text"].as_str().unwrap().contains("input_review"));
    assert!(!example.join("workspace/notes/shared/team.md").exists());
    // A tool the agent does not have is a JSON-RPC error (invalid params).
    assert_eq!(calls[5]["error"], -32602, "{report}");
    assert!(example.join("workspace/docs/handbook.md").exists());

    // The audit trail records every call for the session's user, the refusals with
    // their stage, and verifies.
    let trail = std::fs::read_to_string(&audit).unwrap();
    let entries: Vec<serde_json::Value> = trail
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(entries.iter().all(|entry| entry["user"] == "emp42"));
    let denied: Vec<&str> = entries
        .iter()
        .filter(|entry| entry["action"] == "denied")
        .map(|entry| entry["detail"]["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        denied,
        ["input_restriction", "input_review", "undeclared_tool"],
        "{trail}"
    );
    let verify = agentc_in(
        &scratch,
        &peers,
        &["audit", "verify", audit.to_str().unwrap()],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));
    // The gateway and the server it started ended with the client.
    assert_eq!(processes_with(scratch.to_str().unwrap()), 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `agentc gateway --bind 127.0.0.1:0` in `scratch`, stopped when dropped.
struct HttpGateway {
    child: std::process::Child,
    address: String,
}

impl HttpGateway {
    /// The notes keeper's gateway, callers alice and bob, with `extra` arguments.
    fn notes_keeper(scratch: &Path, peers: &McpPeers, extra: &[&str]) -> Self {
        std::fs::write(
            scratch.join("auth.json"),
            r#"{"tokens": [{"token": "alice-token-1", "user": "alice"}, {"token": "bob-token-22", "user": "bob"}]}"#,
        )
        .unwrap();
        let mut arguments = vec![
            "gateway",
            "spec-examples/mcp-files",
            "--agent",
            "notes_keeper",
            "--auth-config",
            "auth.json",
            "--audit",
            "audit.jsonl",
        ];
        arguments.extend_from_slice(extra);
        Self::start(scratch, peers, &arguments)
    }

    /// `agentc ARGUMENTS... --bind 127.0.0.1:0` in `scratch`.
    fn start(scratch: &Path, peers: &McpPeers, arguments: &[&str]) -> Self {
        use std::io::BufRead;
        let path = format!(
            "{}:{}",
            peers.root().join("node_modules/.bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentc"))
            .args(arguments)
            .args(["--bind", "127.0.0.1:0"])
            .current_dir(scratch)
            .env("PATH", path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        HttpGateway { child, address }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    /// One raw HTTP/1.1 POST to `/mcp`: the status and the whole answer.
    fn post(&self, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {}\r\n", self.address));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let _ = stream.write_all(body.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    /// Initializes a session as the user of `token`: its `Mcp-Session-Id`.
    fn initialize(&self, token: &str) -> Option<String> {
        let bearer = format!("Bearer {token}");
        let (status, answer) = self.post(
            &[("Authorization", &bearer)],
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
        );
        if status != 200 {
            return None;
        }
        answer.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_string())
        })
    }
}

impl Drop for HttpGateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn agx_m3_over_http_the_user_comes_from_the_token_and_an_approved_review_lets_the_shared_note_through()
 {
    let peers = McpPeers::required();
    let scratch = notes_keeper_copy("gateway-http");
    let example = scratch.join("spec-examples/mcp-files");
    let gateway = HttpGateway::notes_keeper(&scratch, &peers, &[]);
    let report = python_client(
        &scratch,
        &peers,
        &notes_keeper_plan(true),
        &["http", &gateway.url(), "alice-token-1"],
    );
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls[2]["is_error"], true, "{report}");
    assert_eq!(calls[3]["is_error"], false, "{report}");
    // Approved through elicitation: the shared note is written.
    assert_eq!(report["elicitations"].as_array().unwrap().len(), 1);
    assert_eq!(calls[4]["is_error"], false, "{report}");
    assert_eq!(
        std::fs::read_to_string(example.join("workspace/notes/shared/team.md")).unwrap(),
        "Team summary."
    );
    drop(gateway);
    let trail = std::fs::read_to_string(scratch.join("audit.jsonl")).unwrap();
    assert!(
        trail.lines().all(|line| line.contains("\"user\":\"alice\"")
            || line.contains("\"action\":\"checkpoint\"")),
        "{trail}"
    );
    assert!(trail.contains("\"action\":\"approved\""), "{trail}");
    assert_eq!(processes_with(scratch.to_str().unwrap()), 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn agx_m3_hostile_http_clients_are_refused_without_reaching_a_tool() {
    let peers = McpPeers::required();
    let scratch = notes_keeper_copy("gateway-hostile");
    let gateway = HttpGateway::notes_keeper(&scratch, &peers, &["--max-sessions", "2"]);
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    // No credential, an unknown one: 401 before MCP is read.
    assert_eq!(gateway.post(&[], initialize).0, 401);
    assert_eq!(
        gateway
            .post(&[("Authorization", "Bearer not-a-token")], initialize)
            .0,
        401
    );
    // A Host that is not loopback (DNS rebinding): refused.
    let (status, _) = gateway.post(
        &[
            ("Authorization", "Bearer alice-token-1"),
            ("Host", "attacker.example"),
        ],
        initialize,
    );
    assert_eq!(status, 403);
    // An oversized request: 413.
    let oversized = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    assert_eq!(
        gateway
            .post(&[("Authorization", "Bearer alice-token-1")], &oversized)
            .0,
        413
    );
    // Another user's session: bob cannot call a tool in alice's engagement.
    let session = gateway
        .initialize("alice-token-1")
        .expect("alice gets a session");
    let (_, answer) = gateway.post(
        &[
            ("Authorization", "Bearer bob-token-22"),
            ("Mcp-Session-Id", &session),
            ("MCP-Protocol-Version", "2025-06-18"),
        ],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"notes/bob.md","content":"x"}}}"#,
    );
    assert!(
        answer.contains("this session belongs to another user"),
        "{answer}"
    );
    assert!(
        !scratch
            .join("spec-examples/mcp-files/workspace/notes/bob.md")
            .exists()
    );
    // Past `--max-sessions`, no new session is opened.
    let second = gateway.initialize("bob-token-22");
    assert!(second.is_some());
    assert_eq!(gateway.initialize("bob-token-22"), None);
    drop(gateway);
    let trail = std::fs::read_to_string(scratch.join("audit.jsonl")).unwrap_or_default();
    assert!(!trail.contains("notes/bob.md"), "{trail}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn agx_m3_the_official_mcp_conformance_suite_passes_against_the_gateway_but_for_its_listed_failures()
 {
    let peers = McpPeers::required();
    let scratch =
        std::env::temp_dir().join(format!("agentc-cli-mcp-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let here = workspace_root().join("compiler/cli/tests/peers");
    // The upstream server's tools, imported and pinned as a user would.
    let upstream = format!(
        "{} {}",
        peers.python().display(),
        here.join("conformance_upstream.py").display()
    );
    let import = agentc_in(
        &scratch,
        &peers,
        &["import", "mcp", "--stdio", &upstream, "-o", "tools"],
    );
    assert_eq!(import.status.code(), Some(0), "{}", text(&import.stderr));
    std::fs::copy(
        here.join("conformance_probe.yaml"),
        scratch.join("conformance_probe.yaml"),
    )
    .unwrap();
    // The suite sends no credential: a loopback gateway takes such callers as one user.
    let gateway = HttpGateway::start(
        &scratch,
        &peers,
        &[
            "gateway",
            ".",
            "--agent",
            "conformance_probe",
            "--anonymous-user",
            "conformance",
            "--audit",
            "audit.jsonl",
        ],
    );
    let suite = Command::new("node")
        .arg(peers.conformance_suite())
        .args(["server", "--url", &gateway.url(), "--suite", "all"])
        .arg("--expected-failures")
        .arg(here.join("conformance-baseline.yml"))
        .current_dir(&scratch)
        .output()
        .expect("node runs the conformance suite");
    let report = text(&suite.stdout);
    let summary = report.split("=== SUMMARY ===").nth(1).unwrap_or(&report);
    // Exit 0: every scenario not in the baseline passed, and every one in it failed
    // (a baseline entry that starts passing fails the run, so the list stays true).
    assert_eq!(
        suite.status.code(),
        Some(0),
        "{summary}\n{}",
        text(&suite.stderr)
    );
    for scenario in [
        "server-initialize",
        "tools-list",
        "tools-call-simple-text",
        "tools-call-error",
        "dns-rebinding-protection",
        "json-schema-2020-12",
    ] {
        assert!(
            summary.contains(&format!("✓ {scenario}:")),
            "{scenario}: {summary}"
        );
    }
    drop(gateway);
    // Every call the suite made is in the trail, as the anonymous user's.
    let trail = std::fs::read_to_string(scratch.join("audit.jsonl")).unwrap();
    assert!(
        trail.contains("\"subject\":\"test_simple_text\""),
        "{trail}"
    );
    assert!(trail.contains("\"user\":\"conformance\""));
    assert_eq!(processes_with("conformance_upstream.py"), 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn agx_m5_the_notes_keepers_mcp_tools_pass_conformance_on_the_real_server_and_on_mocks() {
    let peers = McpPeers::required();
    let marker = "mcp-server-filesystem";
    let before = processes_with(marker);
    for target in ["live", "mock"] {
        let output = agentc_in(
            &workspace_root(),
            &peers,
            &[
                "conform",
                "spec-examples/mcp-files",
                "--target",
                target,
                "--report",
                "json",
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{target}: {}",
            text(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let outcome = |tool: &str, test: &str| {
            report["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["tool"] == tool)
                .and_then(|entry| {
                    entry["tests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|entry| entry["test"] == test)
                })
                .map(|entry| entry["outcome"].as_str().unwrap().to_string())
                .unwrap()
        };
        // The pins match, bad arguments are errors, the paths outside the allowed
        // directory are refused, and the examples answer in the output schema.
        for tool in ["read_text_file", "list_directory"] {
            for test in ["discovery", "error", "pitfall", "skill"] {
                assert_eq!(outcome(tool, test), "pass", "{target} {tool} {test}");
            }
            assert_eq!(outcome(tool, "crud"), "skip");
        }
        // `write_file` may change the workspace: a live run without `--allow-writes`
        // does not call it (its error test is skipped), a mock may be called.
        let expected = if target == "live" { "skip" } else { "pass" };
        assert_eq!(outcome("write_file", "error"), expected, "{target}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_with(marker) > before {
        assert!(
            std::time::Instant::now() < deadline,
            "a filesystem server outlived the run"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

//! The `agentc` binary end to end: exit codes (0 valid, 1 invalid, 2 usage or IO),
//! output formats, `explain` and `schema`.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn agentc(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args(arguments)
        .current_dir(workspace_root())
        .output()
        .expect("agentc runs")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_bundled_examples_are_valid() {
    let output = agentc(&["check", "spec-examples"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("valid:"));
}

#[test]
fn a_wrong_document_exits_1_with_its_diagnostic() {
    let output = agentc(&[
        "check",
        "--color",
        "never",
        "spec-examples/ui/E0203_unresolved_capability.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("error[E0203]"), "{stderr}");
    assert!(stderr.contains("did you mean `hr_kb_search`?"), "{stderr}");
    assert!(text(&output.stdout).starts_with("invalid:"));
}

#[test]
fn warnings_pass_unless_denied() {
    let file = "spec-examples/ui/W0601_remote_reference.yaml";
    assert_eq!(agentc(&["check", file]).status.code(), Some(0));
    assert_eq!(
        agentc(&["check", "--deny-warnings", file]).status.code(),
        Some(1)
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(
        agentc(&["check", "no/such/file.yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(agentc(&["check"]).status.code(), Some(2));
    assert_eq!(agentc(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(agentc(&["explain", "E9999"]).status.code(), Some(2));
    assert_eq!(agentc(&["schema", "widget"]).status.code(), Some(2));
}

#[test]
fn json_format_locates_every_label() {
    let output = agentc(&[
        "check",
        "--format",
        "json",
        "spec-examples/ui/E0507_cel_misspelt_capability.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["valid"], false);
    let diagnostic = &report["diagnostics"][0];
    assert_eq!(diagnostic["code"], "E0507");
    assert_eq!(diagnostic["severity"], "error");
    let primary = diagnostic["labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|label| label["primary"] == true)
        .unwrap();
    assert_eq!(primary["line"], 9);
    assert!(
        primary["column"].as_u64().unwrap() > 18,
        "the column is inside the CEL string"
    );
    assert!(
        primary["file"]
            .as_str()
            .unwrap()
            .ends_with("E0507_cel_misspelt_capability.yaml")
    );
}

#[test]
fn explain_prints_the_page_of_every_code() {
    let list = agentc(&["explain", "--list"]);
    assert_eq!(list.status.code(), Some(0));
    let listing = text(&list.stdout);
    for code in ["E0001", "E0101", "E0203", "E0501", "E0513", "W0601"] {
        assert!(listing.contains(code), "{code} missing from the list");
        let page = agentc(&["explain", &code.to_lowercase()]);
        assert_eq!(page.status.code(), Some(0));
        assert!(text(&page.stdout).starts_with(&format!("# {code}")));
    }
}

#[test]
fn schema_prints_the_committed_json_schema() {
    for kind in [
        "agent",
        "tool",
        "handoff",
        "handoff-request",
        "handoff-response",
        "capability-manifest",
    ] {
        let output = agentc(&["schema", kind]);
        assert_eq!(output.status.code(), Some(0));
        let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let committed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                workspace_root().join(format!("spec-examples/schema/{kind}.schema.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(printed, committed, "{kind}");
    }
}

/// Serves one agent document over HTTP on loopback, `count` times, from a thread.
fn serve_agent_document(document: &'static str, count: usize) -> u16 {
    serve_body(document, "application/yaml", count)
}

/// Serves a fixed body over HTTP on loopback, `count` times, from a thread.
fn serve_body(document: &'static str, content_type: &'static str, count: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{document}",
                document.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

const REMOTE_AGENT: &str = "kind: openagentspec:v1/agent
name: vendor_support
description: Answers questions about vendor orders.
intent: You answer questions about vendor orders.
owner: support@vendor.example
capabilities:
  order_lookup: {}
exposes:
  ticket_id: '\"T-1\"'
";

fn caller_spec(port: u16, field: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("agentc-remote-{port}-{field}"));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("liaison.yaml");
    std::fs::write(
        &path,
        format!(
            "kind: openagentspec:v1/agent
name: vendor_liaison
description: Talks to vendors.
intent: You talk to vendors.
owner: procurement@acme.example
capabilities:
  oagent://127.0.0.1:{port}/agents/vendor_support:
    user_identity: false
    static_identity: vendor_portal
    output_restriction:
      assertion: recent.vendor_support.outputs.{field} != \"\"
"
        ),
    )
    .unwrap();
    path
}

#[test]
fn remote_agents_are_fetched_only_when_asked_and_then_type_the_assertions() {
    let port = serve_agent_document(REMOTE_AGENT, 2);
    // Without the flag: a warning, and the remote output is untyped (accepted).
    let good = caller_spec(port, "ticket_id");
    let output = agentc(&["check", "--color", "never", good.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("warning[W0601]"));
    // With the flag: fetched over loopback, no warning, and the exposes type the output.
    let output = agentc(&[
        "check",
        "--fetch-remote",
        "--color",
        "never",
        good.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        !text(&output.stderr).contains("W0601"),
        "{}",
        text(&output.stderr)
    );
    let misspelt = caller_spec(port, "ticket_idd");
    let output = agentc(&[
        "check",
        "--fetch-remote",
        "--color",
        "never",
        misspelt.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("error[E0507]"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn an_unreachable_remote_agent_is_an_io_error() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = caller_spec(port, "ticket_id");
    let output = agentc(&["check", "--fetch-remote", spec.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot fetch remote agent document"));
}

fn run_hr(scanner_file: &str, audit: &Path) -> Output {
    agentc(&[
        "run",
        "spec-examples/hr",
        "--agent",
        "hr_agent",
        "--model",
        "scripted:spec-examples/scripts/hr/denied-then-allowed.yaml",
        "--mock-tool",
        "hr_kb_search=spec-examples/scripts/hr/hr_kb_search.json",
        "--mock-tool",
        &format!("prompt_injection_scanner={scanner_file}"),
        "--input",
        "How much parental leave do I get?",
        "--user",
        "emp42",
        "--audit",
        audit.to_str().unwrap(),
    ])
}

#[test]
fn run_enforces_the_hr_restriction_and_writes_a_verifiable_audit_trail() {
    let audit = std::env::temp_dir().join(format!("agentc-audit-{}.jsonl", std::process::id()));
    let output = run_hr(
        "spec-examples/scripts/hr/prompt_injection_scanner.json",
        &audit,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["status"]["state"], "completed");
    // The call outside acme/hr/ was refused by the input restriction and never recorded.
    assert_eq!(
        outcome["engagement"]["refused"][0]["stage"],
        "input_restriction"
    );
    assert_eq!(
        outcome["engagement"]["refused"][0]["inputs"]["knowledge_base_id"],
        "acme/legal/contracts"
    );
    assert_eq!(outcome["engagement"]["history"]["_total"], 1);
    assert_eq!(outcome["exposes"]["last_kb"], "acme/hr/handbook");

    let verified = agentc(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stdout)
    );
    // Any edit breaks the chain.
    let log = std::fs::read_to_string(&audit).unwrap();
    std::fs::write(
        &audit,
        log.replacen("acme/legal/contracts", "acme/hr/contracts", 1),
    )
    .unwrap();
    let tampered = agentc(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(
        tampered.status.code(),
        Some(1),
        "{}",
        text(&tampered.stdout)
    );
    let _ = std::fs::remove_file(&audit);
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "agentc-cli-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

#[test]
fn audit_keygen_writes_a_key_pair_that_signs_and_verifies_a_run() {
    let directory = scratch("keygen");
    let key = directory.join("audit.key");
    let generated = agentc(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(
        generated.status.code(),
        Some(0),
        "{}",
        text(&generated.stderr)
    );
    let public = text(&generated.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    let secret = std::fs::read_to_string(&key).unwrap();
    assert_eq!(secret.trim().len(), 64);
    assert_ne!(secret.trim(), public);
    assert!(!text(&generated.stderr).contains(secret.trim()));
    let public_file = directory.join("audit.key.pub");
    assert_eq!(
        std::fs::read_to_string(&public_file).unwrap().trim(),
        public
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    // An existing key is never overwritten.
    let again = agentc(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);

    // A run signs its trail; it verifies with the public key, given or in a file.
    let audit = directory.join("trail.jsonl");
    let mut arguments = vec![
        "run",
        "spec-examples/hr",
        "--agent",
        "hr_agent",
        "--model",
        "scripted:spec-examples/scripts/hr/denied-then-allowed.yaml",
        "--mock-tool",
        "hr_kb_search=spec-examples/scripts/hr/hr_kb_search.json",
        "--mock-tool",
        "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
        "--input",
        "How much parental leave do I get?",
        "--audit",
        audit.to_str().unwrap(),
        "--audit-key",
        key.to_str().unwrap(),
    ];
    arguments.extend(["--user", "emp42", "--audit-checkpoint-every", "3"]);
    let run = agentc(&arguments);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(!text(&run.stderr).contains(secret.trim()));
    assert!(
        !text(&run.stderr).contains("warning"),
        "{}",
        text(&run.stderr)
    );
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(
        trail.lines().all(|line| line.starts_with("{\"v\":2,")),
        "{trail}"
    );
    assert!(
        trail.lines().last().unwrap().contains("\"checkpoint\":"),
        "{trail}"
    );
    let path = audit.to_str().unwrap();
    for given in [public.as_str(), public_file.to_str().unwrap()] {
        let verified = agentc(&["audit", "verify", path, "--key", given]);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{}",
            text(&verified.stdout)
        );
        assert!(
            text(&verified.stdout).starts_with("intact and signed:"),
            "{}",
            text(&verified.stdout)
        );
    }
    // The head it reports is what `--head` checks.
    let verified = agentc(&["audit", "verify", path]);
    assert_eq!(verified.status.code(), Some(0));
    let head = text(&verified.stdout)
        .split("head ")
        .nth(1)
        .unwrap()
        .chars()
        .take(64)
        .collect::<String>();
    let with_head = agentc(&["audit", "verify", path, "--key", &public, "--head", &head]);
    assert_eq!(
        with_head.status.code(),
        Some(0),
        "{}",
        text(&with_head.stdout)
    );

    // Another key does not verify it.
    let other = directory.join("other.key");
    let other_public = text(&agentc(&["audit", "keygen", "--out", other.to_str().unwrap()]).stdout)
        .trim()
        .to_string();
    let wrong = agentc(&["audit", "verify", path, "--key", &other_public]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stdout));
    assert!(text(&wrong.stdout).starts_with("tampered:"));

    // Dropping the last lines: the entries after the last checkpoint are reported as
    // unsigned; cut back to a checkpoint, only `--head` sees it.
    let lines: Vec<&str> = trail.lines().collect();
    let checkpoints: Vec<usize> = (0..lines.len())
        .filter(|index| lines[*index].contains("\"checkpoint\":"))
        .collect();
    assert!(checkpoints.len() >= 2, "{trail}");
    let cut = directory.join("cut.jsonl");
    std::fs::write(&cut, lines[..lines.len() - 2].join("\n")).unwrap();
    let report = agentc(&["audit", "verify", cut.to_str().unwrap(), "--key", &public]);
    assert_eq!(report.status.code(), Some(1), "{}", text(&report.stdout));
    assert!(
        text(&report.stdout).contains("unsigned: the last"),
        "{}",
        text(&report.stdout)
    );
    let at_checkpoint = checkpoints[checkpoints.len() - 2];
    std::fs::write(&cut, lines[..=at_checkpoint].join("\n")).unwrap();
    let cut_path = cut.to_str().unwrap();
    let signed = agentc(&["audit", "verify", cut_path, "--key", &public]);
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stdout));
    assert!(text(&signed.stdout).contains("compare the head with --head"));
    let truncated = agentc(&[
        "audit", "verify", cut_path, "--key", &public, "--head", &head,
    ]);
    assert_eq!(
        truncated.status.code(),
        Some(1),
        "{}",
        text(&truncated.stdout)
    );
    assert!(text(&truncated.stdout).starts_with("truncated or extended:"));

    // A key file others can read is used, with a warning that never quotes it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let run = agentc(&arguments);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
        assert!(
            text(&run.stderr).contains("can be read by other users"),
            "{}",
            text(&run.stderr)
        );
        assert!(!text(&run.stderr).contains(secret.trim()));
    }
    // A key file that is not a key is refused, without quoting it.
    std::fs::write(&key, "not a key\n").unwrap();
    let run = agentc(&arguments);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("is not an audit signing key"),
        "{}",
        text(&run.stderr)
    );
    assert!(!text(&run.stderr).contains("not a key\n"));
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn audit_verify_with_a_key_refuses_an_unsigned_trail() {
    let directory = scratch("unsigned");
    let key = directory.join("audit.key");
    let public = text(&agentc(&["audit", "keygen", "--out", key.to_str().unwrap()]).stdout)
        .trim()
        .to_string();
    let audit = directory.join("trail.jsonl");
    let output = run_hr(
        "spec-examples/scripts/hr/prompt_injection_scanner.json",
        &audit,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let path = audit.to_str().unwrap();
    // Without a key the chain alone verifies, and the report says what that is worth.
    let chain_only = agentc(&["audit", "verify", path]);
    assert_eq!(chain_only.status.code(), Some(0));
    assert!(text(&chain_only.stdout).contains("hash chain only"));
    // With a key, nothing is signed, so nothing is proven.
    let signed = agentc(&["audit", "verify", path, "--key", &public]);
    assert_eq!(signed.status.code(), Some(1), "{}", text(&signed.stdout));
    assert!(text(&signed.stdout).contains("no checkpoint signed by"));
    // Bad arguments are usage errors.
    for arguments in [
        ["audit", "verify", path, "--key", "not-a-key"],
        ["audit", "verify", path, "--head", "abc"],
    ] {
        assert_eq!(agentc(&arguments).status.code(), Some(2));
    }
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn audit_export_writes_a_server_databases_trail_for_verify() {
    use agentc_runtime::audit::{AuditAction, AuditDetail, AuditLog, AuditRecord};
    let directory = scratch("export");
    let database = directory.join("agentc.db");
    let key = agentc_runtime::AuditSigningKey::generate().unwrap();
    {
        let store: std::sync::Arc<dyn agentc_server::Store> =
            std::sync::Arc::new(agentc_server::SqliteStore::open(&database).unwrap());
        let log = AuditLog::new(Box::new(agentc_server::store::StoreAuditWriter::new(
            store, "main",
        )))
        .with_checkpoints(key.clone(), 2);
        for action in [
            AuditAction::Intended,
            AuditAction::Denied,
            AuditAction::Intended,
        ] {
            log.append(AuditRecord {
                engagement: "e_1",
                parent: None,
                user: Some("alice"),
                agent: "a",
                action,
                subject: "t",
                detail: AuditDetail::default(),
            })
            .unwrap();
        }
        log.checkpoint().unwrap();
    }
    let exported = directory.join("trail.jsonl");
    let output = agentc(&[
        "audit",
        "export",
        "--db",
        database.to_str().unwrap(),
        "-o",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let public = key.public_key().to_hex();
    let verified = agentc(&[
        "audit",
        "verify",
        exported.to_str().unwrap(),
        "--key",
        &public,
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stdout)
    );
    assert!(
        text(&verified.stdout).contains("5 entries"),
        "{}",
        text(&verified.stdout)
    );
    // To stdout, the same lines.
    let to_stdout = agentc(&["audit", "export", "--db", database.to_str().unwrap()]);
    assert_eq!(to_stdout.stdout, std::fs::read(&exported).unwrap());
    // A database that does not exist is an error, and is not created.
    let missing = directory.join("missing.db");
    let output = agentc(&["audit", "export", "--db", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn run_stops_when_the_input_guardrail_flags_the_input() {
    let flagged = std::env::temp_dir().join(format!("agentc-flagged-{}.json", std::process::id()));
    std::fs::write(&flagged, r#"{"flagged": true, "score": 0.99}"#).unwrap();
    let audit =
        std::env::temp_dir().join(format!("agentc-audit-flagged-{}.jsonl", std::process::id()));
    let output = run_hr(flagged.to_str().unwrap(), &audit);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["status"]["state"], "failed");
    assert_eq!(
        outcome["engagement"]["history"]["_total"], 0,
        "no tool ran (OAS-G5)"
    );
    let _ = std::fs::remove_file(&flagged);
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn run_calls_http_tools_bound_by_their_documents() {
    let port = serve_body(r#"{"forecast": "sunny"}"#, "application/json", 1);
    let directory = std::env::temp_dir().join(format!("agentc-http-run-{port}"));
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(
        directory.join("weather.yaml"),
        format!(
            "kind: openagentspec:v1/agent
name: weather_agent
description: Tells the weather.
intent: You tell the weather.
owner: ops@acme.example
capabilities:
  weather:
    input_restriction:
      assertion: recent.weather.inputs.city in [\"Paris\", \"Oslo\"]
exposes:
  forecast: 'has(recent.weather) ? recent.weather.outputs.forecast : \"\"'
---
kind: openagentspec:v1/tool
name: weather
description: Returns the forecast for a city.
input: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
output: {{type: object, properties: {{forecast: {{type: string}}}}, required: [forecast]}}
binding:
  http: {{method: POST, url: \"http://127.0.0.1:{port}/forecast\", timeout_ms: 5000}}
"
        ),
    )
    .unwrap();
    std::fs::write(
        directory.join("script.yaml"),
        "turns:\n  - tool_calls:\n      - name: weather\n        arguments: {city: Berlin}\n  - tool_calls:\n      - name: weather\n        arguments: {city: Oslo}\n  - text: Sunny in Oslo.\n",
    )
    .unwrap();
    let output = agentc(&[
        "run",
        directory.join("weather.yaml").to_str().unwrap(),
        "--agent",
        "weather_agent",
        "--model",
        &format!("scripted:{}", directory.join("script.yaml").display()),
        "--input",
        "Weather?",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Berlin was refused before the request; the one request the server answers is Oslo's.
    assert_eq!(
        outcome["engagement"]["refused"][0]["inputs"]["city"],
        "Berlin"
    );
    assert_eq!(outcome["exposes"]["forecast"], "sunny");
}

fn run_hr_locally(model: &str, extra: &[&str]) -> Output {
    let mut arguments = vec![
        "run",
        "spec-examples/hr",
        "--agent",
        "hr_agent",
        "--model",
        model,
        "--mock-tool",
        "hr_kb_search=spec-examples/scripts/hr/hr_kb_search.json",
        "--mock-tool",
        "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
        "--input",
        "How much parental leave do I get?",
    ];
    arguments.extend_from_slice(extra);
    agentc(&arguments)
}

#[test]
fn local_models_that_do_not_exist_or_are_not_models_are_clear_usage_errors() {
    let root = std::env::temp_dir().join(format!("agentc-cli-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();

    let missing = format!("local:{}", root.join("absent").display());
    let output = run_hr_locally(&missing, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("the path does not exist"), "{stderr}");
    assert!(stderr.contains("never downloaded"), "{stderr}");

    // A folder with only a config is not a model; the message says what is missing.
    let folder = root.join("partial");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.json"), "{}").unwrap();
    let output = run_hr_locally(&format!("local:{}", folder.display()), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("is not a model"), "{stderr}");
    assert!(stderr.contains("tokenizer.json"), "{stderr}");

    // A file that is not GGUF is not a model either.
    let file = root.join("weights.bin");
    std::fs::write(&file, "not a model").unwrap();
    let output = run_hr_locally(&format!("local:{}", file.display()), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("GGUF"));

    // Settings out of range are refused before anything is loaded.
    let output = run_hr_locally(&missing, &["--temperature=-1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("temperature -1 is not between"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Without the feature, a path that holds a model's files gets an error that names the
/// feature and the command that builds it.
#[cfg(not(feature = "mistralrs"))]
#[test]
fn local_models_without_the_feature_say_how_to_rebuild() {
    let folder = std::env::temp_dir().join(format!("agentc-cli-local-nf-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::write(folder.join(file), "{}").unwrap();
    }
    std::fs::write(folder.join("model.safetensors"), "").unwrap();
    let output = run_hr_locally(&format!("local:{}", folder.display()), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`mistralrs` cargo feature"), "{stderr}");
    assert!(
        stderr.contains("cargo build --release -p agentc-cli --features mistralrs"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&folder).unwrap();
}

/// A loopback stand-in for an OpenAI-compatible chat-completions server: it answers the
/// `answers` in order, one per connection, and hands back every request it read.
fn serve_model_answers(
    answers: Vec<serde_json::Value>,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            requests.push(format!("{head}{}", text(&body)));
            let body = answer.to_string();
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
        requests
    });
    (base_url, server)
}

/// OAS-C8 end to end: a tool output that breaks its schema carries a planted marker,
/// and the marker appears in nothing the run produces: not in the model's requests,
/// stdout (the engagement, its refused calls), stderr (logs at every level) or the
/// audit trail. The model is told of the refusal, in a fixed form.
#[test]
fn refused_output_marker_appears_in_nothing_a_run_produces() {
    let marker = "MARKER-c0ffee-refused";
    let directory = std::env::temp_dir().join(format!("agentc-marker-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let records: Vec<serde_json::Value> = (0..2_000)
        .map(|index| serde_json::json!({"title": format!("{marker} {index}"), "snippet": 1}))
        .collect();
    let refused_output = directory.join("hr_kb_search.json");
    std::fs::write(
        &refused_output,
        serde_json::json!({"results": records, "note": marker}).to_string(),
    )
    .unwrap();
    let audit = directory.join("audit.jsonl");
    let call = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "hr_kb_search",
            "arguments": "{\"knowledge_base_id\": \"acme/hr/handbook\", \"query\": \"leave\"}"}}]}}]});
    let answer = serde_json::json!({"choices": [{"message": {"role": "assistant",
        "content": "I could not read the handbook."}}]});
    let (base_url, server) = serve_model_answers(vec![call, answer]);
    let output = Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args([
            "run",
            "spec-examples/hr",
            "--agent",
            "hr_agent",
            "--model",
            "openai:test-model",
            "--mock-tool",
            &format!("hr_kb_search={}", refused_output.display()),
            "--mock-tool",
            "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
            "--input",
            "How much parental leave do I get?",
            "--user",
            "emp42",
            "--audit",
            audit.to_str().unwrap(),
        ])
        .env("AGENTC_OPENAI_BASE_URL", &base_url)
        .env("RUST_LOG", "trace")
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let requests = server.join().unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // The output was refused, and the model was told so.
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        outcome["engagement"]["refused"][0]["stage"],
        "output_schema"
    );
    assert!(
        outcome["engagement"]["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("fails the schema's"),
        "{stdout}"
    );
    assert_eq!(requests.len(), 2);
    assert!(requests[1].contains("call refused"), "{}", requests[1]);
    assert!(
        requests[1].len() < 8_000,
        "a short refusal: {}",
        requests[1]
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(audit_text.contains("output_schema"));
    for (place, produced) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("the audit trail", &audit_text),
        ("the first model request", &requests[0]),
        ("the second model request", &requests[1]),
    ] {
        assert!(!produced.contains("c0ffee"), "{place}: {produced}");
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// Runs agentc with a deadline: a hang is a failure, not a stuck test run.
fn agentc_within(arguments: &[&str], seconds: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args(arguments)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("agentc {arguments:?} did not finish within {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Issue 23, item 8: spec files are read with a bound, only regular files are read,
/// and symbolic links out of a walked directory are followed only when asked. Each
/// refusal is an IO error (exit 2) that names the path.
#[cfg(unix)]
#[test]
fn spec_files_are_read_bounded_regular_and_inside_the_directory() {
    let root = std::env::temp_dir().join(format!("agentc-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let hr = workspace_root().join("spec-examples/hr");

    // A link to /dev/zero: refused as outside the directory, and as not a regular file
    // when links are followed (it used to be read until 2.1 GB).
    let zero = root.join("zero");
    std::fs::create_dir_all(&zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("evil.yaml")).unwrap();
    let output = agentc_within(&["check", zero.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("evil.yaml"));
    assert!(text(&output.stderr).contains("--follow-symlinks"));
    let output = agentc_within(&["check", "--follow-symlinks", zero.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("not a regular file"));

    // A FIFO with a spec file's name: refused at once (it used to hang for ever).
    let fifo = root.join("fifo");
    std::fs::create_dir_all(&fifo).unwrap();
    let made = Command::new("mkfifo")
        .arg(fifo.join("pipe.yaml"))
        .status()
        .unwrap();
    assert!(made.success());
    let output = agentc_within(&["check", fifo.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("pipe.yaml"));
    assert!(text(&output.stderr).contains("not a regular file"));
    let named = fifo.join("pipe.yaml");
    let output = agentc_within(&["check", named.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));

    // A file over the limit is refused without being read whole.
    let large = root.join("large");
    std::fs::create_dir_all(&large).unwrap();
    let file = std::fs::File::create(large.join("big.yaml")).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    let output = agentc_within(&["check", large.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("larger than"));

    // A link that stays inside the directory is followed, and so is one outside when
    // asked: the set checks clean either way.
    let inside = root.join("inside");
    std::fs::create_dir_all(inside.join("real")).unwrap();
    for name in ["hr_agent.yaml", "tools.yaml"] {
        std::fs::copy(hr.join(name), inside.join("real").join(name)).unwrap();
    }
    std::os::unix::fs::symlink(inside.join("real"), inside.join("linked")).unwrap();
    let output = agentc_within(&["check", inside.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for name in ["hr_agent.yaml", "tools.yaml"] {
        std::os::unix::fs::symlink(hr.join(name), outside.join(name)).unwrap();
    }
    let output = agentc_within(&["check", outside.to_str().unwrap()], 20);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let output = agentc_within(
        &["check", "--follow-symlinks", outside.to_str().unwrap()],
        20,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let _ = std::fs::remove_dir_all(&root);
}

/// Issue 23, item 11: a timeout too large for the clock is a usage error (exit 2)
/// that names the allowed range, not a panic mid-call; so is zero.
#[test]
fn tool_timeout_overflow_is_a_usage_error() {
    for flag in ["--tool-timeout", "--agent-timeout"] {
        for value in ["18446744073709551615", "0", "604801"] {
            let output = agentc(&[
                "serve",
                "spec-examples/hr",
                "--auth-config",
                "no-such-file.json",
                "--model",
                "scripted:none.yaml",
                flag,
                value,
            ]);
            assert_eq!(output.status.code(), Some(2), "{flag} {value}");
            assert!(
                text(&output.stderr).contains("604800"),
                "{}",
                text(&output.stderr)
            );
        }
    }
}

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

/// Hostile tool outputs (`tests/hostile/tool_outputs/`), each the answer of the HR
/// example's search tool in `agentc run`: a clean answer within the ceilings, and never
/// the tool's answer passed on when it breaks the output schema.
#[test]
fn hostile_tool_outputs_are_refused_cleanly() {
    let mut cases = files_in(&corpus().join("tool_outputs"), "json");
    assert!(cases.len() >= 8, "the corpus is there");
    // Made here rather than committed: nesting past the JSON parser's depth limit, and
    // 20,000 results with a 4 MB string among them.
    let directory =
        std::env::temp_dir().join(format!("agentc-hostile-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let deep = directory.join("nested_past_the_parser.json");
    std::fs::write(
        &deep,
        format!(
            "{{\"results\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    )
    .unwrap();
    let mut results = vec![serde_json::json!({
        "title": "big", "snippet": "x".repeat(4 << 20), "url": "https://kb.acme.example/hr/a"
    })];
    results.extend((0..20_000).map(|index| {
        serde_json::json!({"title": format!("t{index}"), "snippet": "s",
            "url": "https://kb.acme.example/hr/b"})
    }));
    let many = directory.join("many_results.json");
    std::fs::write(&many, serde_json::json!({ "results": results }).to_string()).unwrap();
    cases.extend([deep, many]);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (output, took) = agentc_bounded(&[
            "run",
            "spec-examples/hr",
            "--agent",
            "hr_agent",
            "--model",
            "scripted:spec-examples/scripts/hr/denied-then-allowed.yaml",
            "--mock-tool",
            &format!("hr_kb_search={}", case.display()),
            "--mock-tool",
            "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
            "--input",
            "How much parental leave do I get?",
            "--user",
            "emp42",
        ]);
        assert_clean(&name, &output, took);
        // A run that started (the mock loaded) must not have passed on an output that
        // breaks the schema: every search's output was either valid or refused.
        let Ok(outcome) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
            assert_ne!(
                output.status.code(),
                Some(0),
                "{name}: exit 0 without an outcome"
            );
            continue;
        };
        // Valid: odd but schema-conforming text; a number past f64 where the schema
        // allows any extra field; a repeated key (the last one wins, and what is checked
        // is the very value passed on); many results.
        let valid = [
            "unicode_tricks.json",
            "numbers_past_f64.json",
            "duplicate_keys.json",
            "many_results.json",
        ]
        .contains(&name.as_str());
        let refused_outputs = outcome["engagement"]["refused"]
            .as_array()
            .map_or(0, |refused| {
                refused
                    .iter()
                    .filter(|refusal| refusal["stage"] == "output_schema")
                    .count()
            });
        if valid {
            assert_eq!(refused_outputs, 0, "{name}: {outcome}");
        } else {
            assert!(refused_outputs > 0, "{name}: {outcome}");
        }
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// `agentc serve` of the HR example on a free loopback port, under the ceilings; its
/// base URL.
fn serve_bounded() -> (std::process::Child, String) {
    use std::io::BufRead;
    let database =
        std::env::temp_dir().join(format!("agentc-hostile-http-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&database);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_agentc"))
        .args([
            "serve",
            "spec-examples/hr",
            "--bind",
            "127.0.0.1:0",
            "--db",
            database.to_str().unwrap(),
            "--auth-config",
            "runtime/server/examples/auth.json",
            "--body-timeout",
            "2",
            "--header-timeout",
            "2",
            "--model",
            "scripted:spec-examples/scripts/hr/denied-then-allowed.yaml",
            "--mock-tool",
            "hr_kb_search=spec-examples/scripts/hr/hr_kb_search.json",
            "--mock-tool",
            "prompt_injection_scanner=spec-examples/scripts/hr/prompt_injection_scanner.json",
        ])
        .env("MALLOC_ARENA_MAX", "2")
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let base = first
        .strip_prefix("agentc serve: http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the server did not start: {first}"))
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    (child, base)
}

/// Sends raw bytes and reads the answer's status code (`None`: closed without one),
/// within the time ceiling.
fn raw_exchange(address: &str, request: &[u8]) -> (Option<u16>, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(TIME_CEILING)).unwrap();
    // A server may answer (and close) before it has read everything: a failed write
    // is then not the case's failure; the answer is.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                    break;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no answer within {TIME_CEILING:?}");
            }
            Err(_) => break,
        }
    }
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|text| text.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, started.elapsed())
}

/// Hostile HTTP requests (`tests/hostile/http/`, raw bytes: the first line says which
/// answers are right, `{LENGTH}` stands for the body's length, lines end in CRLF) to
/// `agentc serve` under the ceilings: each answered as its first line says (or the
/// connection closed, where that line allows it) within the time ceiling, never a 5xx,
/// and the server still healthy afterwards.
#[test]
fn hostile_http_requests_are_answered_cleanly() {
    let cases = files_in(&corpus().join("http"), "http");
    assert!(cases.len() >= 12, "the corpus is there");
    let (mut server, address) = serve_bounded();
    let mut requests: Vec<(String, String, Vec<u8>)> = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(case).unwrap();
        let newline = bytes.iter().position(|byte| *byte == b'\n').unwrap();
        let expect = String::from_utf8_lossy(&bytes[..newline])
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{name}: no `# expect:` line"))
            .to_string();
        let raw = &bytes[newline + 1..];
        let split = raw
            .windows(2)
            .position(|window| window == b"\n\n")
            .map_or(raw.len(), |at| at + 2);
        let (head, body) = raw.split_at(split);
        let head = String::from_utf8_lossy(head)
            .replace('\n', "\r\n")
            .replace("{LENGTH}", &body.len().to_string());
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        requests.push((name, expect, request));
    }
    // Made here rather than committed: a 1 MB header, and a JSON body nested 30,000
    // deep within the body limit.
    requests.push((
        "huge_header".into(),
        "431".into(),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        )
        .into_bytes(),
    ));
    let deep = format!("{{\"text\": {}{}}}", "[".repeat(30_000), "]".repeat(30_000));
    requests.push((
        "deep_json_body".into(),
        "400".into(),
        format!(
            "POST /agents/hr_agent HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-token-alice\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{deep}",
            deep.len()
        )
        .into_bytes(),
    ));
    for (name, expect, request) in &requests {
        let (status, took) = raw_exchange(&address, request);
        let allowed: Vec<&str> = expect.split(',').map(str::trim).collect();
        let answered = match status {
            Some(code) => allowed.contains(&code.to_string().as_str()),
            None => allowed.contains(&"closed"),
        };
        assert!(answered, "{name}: answered {status:?}, expected {expect}");
        assert!(
            status.is_none_or(|code| code < 500),
            "{name}: a server error"
        );
        assert!(took < TIME_CEILING, "{name}: took {took:?}");
        assert!(
            server.try_wait().unwrap().is_none(),
            "{name}: the server exited"
        );
    }
    let (status, took) = raw_exchange(
        &address,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, Some(200), "the server is healthy afterwards");
    assert!(took < Duration::from_secs(1), "healthz took {took:?}");
    server.kill().unwrap();
    server.wait().unwrap();
}

//! Live runs of the MCP reading of the seven tests (AGX-M5) against real MCP servers:
//! `@modelcontextprotocol/server-everything` from npm over stdio, and a ticket server on
//! the Python `mcp` SDK from PyPI over streamable HTTP with bearer auth and a rate limit
//! (`tests/peers/ticket_server.py`). Each tool document is what `agentc import mcp`
//! makes of the server's `tools/list` (pinned), with a `conformance:` section added, as
//! a user would write it. The peers are installed by `cargo xtask mcp-peers`; without
//! them these tests fail with that instruction, they are not skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use agentc_compiler::SourceInput;
use agentc_conformance::{
    Outcome, SuiteOptions, SuiteReport, Target, TestKind, load_tools, run_suite,
};
use agentc_mcp::peers::{McpPeers, processes_with};
use agentc_runtime::{AuthScheme, McpTransport, Secret};

const TOKEN: &str = "live-mcp-token-5c1e";

/// The tool documents `agentc import mcp` writes for `transport`, by server tool name.
async fn imported(
    transport: &McpTransport,
    auth: &AuthScheme,
    credential: Option<&Secret>,
) -> BTreeMap<String, String> {
    let servers = agentc_mcp::McpServers::default();
    let tools = servers.list(transport, auth, credential).await.unwrap();
    agentc_mcp::import::import(&tools, transport, auth)
        .tools
        .into_iter()
        .map(|tool| (tool.server_name, tool.document))
        .collect()
}

fn load(documents: &[(&str, String)]) -> Vec<agentc_conformance::ToolUnderTest> {
    let inputs: Vec<SourceInput> = documents
        .iter()
        .map(|(name, text)| SourceInput {
            name: (*name).into(),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    load_tools(&inputs).unwrap_or_else(|error| panic!("{error}"))
}

fn outcome<'r>(report: &'r SuiteReport, tool: &str, test: TestKind) -> &'r Outcome {
    report.outcome(tool, test).unwrap()
}

fn assert_pass(report: &SuiteReport, tool: &str, tests: &[TestKind]) {
    for test in tests {
        assert!(
            matches!(outcome(report, tool, *test), Outcome::Pass { .. }),
            "{tool} {test:?}\n{}",
            report.to_text()
        );
    }
}

fn assert_skip(report: &SuiteReport, tool: &str, tests: &[TestKind]) {
    for test in tests {
        assert!(
            matches!(outcome(report, tool, *test), Outcome::Skip { .. }),
            "{tool} {test:?}\n{}",
            report.to_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_npm_server_over_stdio_passes_the_mcp_tests_live() {
    let peers = McpPeers::required();
    let entry = peers.everything_server();
    let marker = entry.to_string_lossy().to_string();
    let before = processes_with(&marker);
    let transport = McpTransport::Stdio {
        command: "node".into(),
        args: vec![marker.clone(), "stdio".into()],
        env: Vec::new(),
    };
    let documents = imported(&transport, &AuthScheme::None, None).await;
    let echo = documents["echo"].clone()
        + r#"conformance:
  read_only: true
  examples:
    - name: hello
      input: {message: hello}
  pitfalls:
    - name: markup_is_echoed_verbatim
      description: Markup in the message is echoed as text, not interpreted or dropped.
      call: {arguments: {message: "<b>hi</b>"}}
      expect: {is_error: false, body: {text: "Echo: <b>hi</b>"}}
"#;
    let weather = documents["get-structured-content"].clone()
        + r#"conformance:
  read_only: true
  examples:
    - name: chicago
      input: {location: Chicago}
  pitfalls:
    - name: unknown_location
      description: A location outside the enum is refused, not answered with made-up weather.
      call: {arguments: {location: Atlantis}}
      expect: {is_error: true, body_excludes: ["temperature"]}
"#;
    let tools = load(&[("echo.yaml", echo), ("weather.yaml", weather)]);
    let report = run_suite(&tools, &Target::live(None), &SuiteOptions::default()).await;
    for tool in ["echo", "get_structured_content"] {
        assert_pass(
            &report,
            tool,
            &[
                TestKind::Discovery,
                TestKind::Error,
                TestKind::Pitfall,
                TestKind::Skill,
            ],
        );
        // A stdio server has no caller credential; no rate limit is declared; CRUD
        // has no MCP reading.
        assert_skip(
            &report,
            tool,
            &[TestKind::Auth, TestKind::RateLimit, TestKind::Crud],
        );
    }
    assert!(!report.failed());
    // Every server process the tests started has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&marker) > before {
        assert!(
            Instant::now() < deadline,
            "a server process outlived its test"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Python ticket server on a free loopback port, killed when dropped.
struct TicketServer {
    child: std::process::Child,
    url: String,
}

impl TicketServer {
    fn start(peers: &McpPeers, mode: &str) -> TicketServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ticket_server.py");
        let child = std::process::Command::new(peers.python())
            .arg(script)
            .arg(port.to_string())
            .arg(TOKEN)
            .arg(mode)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Python ticket server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        TicketServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for TicketServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run_on_ticket_server(mode: &str) -> SuiteReport {
    let peers = McpPeers::required();
    let server = TicketServer::start(&peers, mode);
    let transport = McpTransport::Http {
        url: server.url.clone(),
    };
    let token = Secret::new(TOKEN.to_string());
    let documents = imported(&transport, &AuthScheme::Bearer, Some(&token)).await;
    let tickets = documents["search_tickets"].clone()
        + r#"conformance:
  read_only: true
  rate_limit: {requests: 5, per_seconds: 1}
  examples:
    - name: printer
      input: {query: printer, limit: 5}
  pitfalls:
    - name: empty_query
      description: An empty query is refused instead of answering with every ticket.
      call: {arguments: {query: ""}}
      expect: {is_error: true, body_excludes: ["T-2"]}
"#;
    let tools = load(&[("tickets.yaml", tickets)]);
    let target = Target::live(None)
        .with_credentials(BTreeMap::from([("search_tickets".to_string(), token)]));
    let report = run_suite(&tools, &target, &SuiteOptions::default()).await;
    drop(server);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_http_server_with_auth_and_a_rate_limit_passes_live() {
    let report = run_on_ticket_server("correct").await;
    assert_pass(
        &report,
        "search_tickets",
        &[
            TestKind::Discovery,
            TestKind::Auth,
            TestKind::Error,
            TestKind::RateLimit,
            TestKind::Pitfall,
            TestKind::Skill,
        ],
    );
    assert_skip(&report, "search_tickets", &[TestKind::Crud]);
    let text = report.to_text();
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_whose_pitfall_regressed_fails_the_pitfall_test_live() {
    let report = run_on_ticket_server("regressed").await;
    let Outcome::Fail { evidence, .. } = outcome(&report, "search_tickets", TestKind::Pitfall)
    else {
        panic!("the pitfall test should fail\n{}", report.to_text());
    };
    assert_eq!(evidence.len(), 1);
    assert!(
        evidence[0].detail.contains("expected an error")
            && evidence[0].detail.contains("the answer contains `T-2`"),
        "{evidence:?}"
    );
    assert_pass(
        &report,
        "search_tickets",
        &[
            TestKind::Discovery,
            TestKind::Auth,
            TestKind::Error,
            TestKind::Skill,
        ],
    );
}

//! The truth table (issue 27): `agentc conform --target live` against a fixture service
//! written for the tests in another stack (`tests/fixture/facts_service.py`, Python on
//! Starlette and uvicorn), correct and with each of its flaws. Every verdict, and every
//! failing check with its evidence, must be what `tests/fixture/truth.yaml` says. A run
//! with default flags sends no write (the fixture's request log says so), and a run
//! with `--allow-writes` leaves nothing behind. Needs `cargo xtask mcp-peers`, whose
//! Python environment has Starlette and uvicorn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentc_compiler::SourceInput;
use agentc_conformance::{
    Outcome, SuiteOptions, SuiteReport, Target, TestKind, ToolUnderTest, load_tools, run_suite,
};
use agentc_mcp::peers::McpPeers;
use agentc_runtime::Secret;
use serde_json::Value;

const TOKEN: &str = "fixture-token-6d0f";
/// The stored token the `leaks_token` flaw hands out; no report may hold it.
const ADMIN_TOKEN: &str = "sk-fixture-admin-0123456789abcdef";
const TOOLS: [&str; 5] = [
    "search_facts",
    "facts_about",
    "fact_details",
    "remember_note",
    "service_health",
];
/// The tools that authenticate (the health check is public: no credential is given).
const CREDENTIALED: [&str; 4] = [
    "search_facts",
    "facts_about",
    "fact_details",
    "remember_note",
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let (documents, diagnostics) = agentc_compiler::syntax::parse_yaml(
        agentc_compiler::span::FileId(0),
        &text,
        &agentc_compiler::syntax::SyntaxLimits::default(),
    );
    assert!(diagnostics.is_empty(), "{} does not parse", path.display());
    documents.first().unwrap().root.to_json()
}

fn tools() -> Vec<ToolUnderTest> {
    tools_rewritten(None)
}

/// The fixture's tools, with one text replaced in their documents (a row that tests a
/// document's mistake, not the service's).
fn tools_rewritten(rewrite: Option<(&str, &str)>) -> Vec<ToolUnderTest> {
    let path = fixture_dir().join("tools.yaml");
    let mut text = std::fs::read_to_string(path).unwrap();
    if let Some((from, to)) = rewrite {
        assert!(text.contains(from), "`{from}` is not in tools.yaml");
        text = text.replace(from, to);
    }
    load_tools(&[SourceInput {
        name: "tools.yaml".into(),
        bytes: text.into_bytes(),
    }])
    .unwrap_or_else(|error| panic!("{error}"))
}

/// The fixture on a free loopback port, killed when dropped.
struct Fixture {
    child: std::process::Child,
    base: String,
    log: PathBuf,
}

impl Fixture {
    fn start(peers: &McpPeers, flaws: &[String]) -> Fixture {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!(
            "agentc-facts-fixture-{}-{port}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&log);
        let child = std::process::Command::new(peers.python())
            .arg(fixture_dir().join("facts_service.py"))
            .arg(port.to_string())
            .arg(TOKEN)
            .arg(&log)
            .args(flaws)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the fixture did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Fixture {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// What the run sent, as `METHOD PATH` lines.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn run(fixture: &Fixture, allow_writes: bool) -> SuiteReport {
    run_tools(fixture, allow_writes, tools()).await
}

async fn run_tools(
    fixture: &Fixture,
    allow_writes: bool,
    tools: Vec<ToolUnderTest>,
) -> SuiteReport {
    let credentials = CREDENTIALED
        .iter()
        .map(|tool| (tool.to_string(), Secret::new(TOKEN)))
        .collect::<BTreeMap<_, _>>();
    let target = Target::live(Some(fixture.base.clone())).with_credentials(credentials);
    let options = SuiteOptions {
        allow_writes,
        ..SuiteOptions::default()
    };
    run_suite(&tools, &target, &options).await
}

fn test_kind(name: &str) -> TestKind {
    *TestKind::ALL
        .iter()
        .find(|test| test.as_str() == name)
        .unwrap_or_else(|| panic!("no test `{name}`"))
}

/// Every difference between `report` and the table's row (the `correct` verdicts,
/// overridden by the row's failures), as readable lines.
fn differences(report: &SuiteReport, correct: &Value, failures: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for tool in TOOLS {
        for (test_name, verdict) in correct[tool].as_object().unwrap() {
            let test = test_kind(test_name);
            let outcome = report.outcome(tool, test).unwrap();
            let expected_failures = failures[tool][test_name].as_array();
            let expected = if expected_failures.is_some() {
                "fail"
            } else {
                verdict.as_str().unwrap()
            };
            if outcome.as_str() != expected {
                found.push(format!(
                    "{tool} {test_name}: expected {expected}, got {outcome:?}"
                ));
                continue;
            }
            let (Some(expected_failures), Outcome::Fail { evidence, .. }) =
                (expected_failures, outcome)
            else {
                continue;
            };
            if evidence.len() != expected_failures.len() {
                found.push(format!(
                    "{tool} {test_name}: expected {} failing check(s), got {evidence:?}",
                    expected_failures.len()
                ));
            }
            for pair in expected_failures {
                let check = pair[0].as_str().unwrap();
                let detail = pair[1].as_str().unwrap();
                let named = evidence
                    .iter()
                    .any(|item| item.check.starts_with(check) && item.detail.contains(detail));
                if !named {
                    found.push(format!(
                        "{tool} {test_name}: no failing check `{check}…` with `{detail}` in {evidence:?}"
                    ));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verdict_and_its_evidence_matches_the_truth_table() {
    let peers = Arc::new(McpPeers::required());
    let truth = yaml(&fixture_dir().join("truth.yaml"));
    let correct = truth["correct"].clone();
    let mut rows = vec![(Vec::new(), None, Value::Null)];
    for row in truth["flawed"].as_array().unwrap() {
        let flaws = row["flaws"]
            .as_array()
            .map(|flaws| {
                flaws
                    .iter()
                    .map(|flaw| flaw.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let rewrite = row["rewrite"].as_array().map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().to_string(),
            )
        });
        rows.push((flaws, rewrite, row["fail"].clone()));
    }
    // Three fixtures at a time: each run bursts against its own fixture's rate limit,
    // and the machine has two cores.
    let slots = Arc::new(tokio::sync::Semaphore::new(3));
    let mut runs = tokio::task::JoinSet::new();
    for (flaws, rewrite, failures) in rows {
        let peers = Arc::clone(&peers);
        let slots = Arc::clone(&slots);
        let correct = correct.clone();
        runs.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let fixture = Fixture::start(&peers, &flaws);
            let tools = tools_rewritten(
                rewrite
                    .as_ref()
                    .map(|(from, to)| (from.as_str(), to.as_str())),
            );
            let report = run_tools(&fixture, true, tools).await;
            let mut problems = differences(&report, &correct, &failures);
            for rendered in [report.to_text(), report.to_json()] {
                for secret in [TOKEN, ADMIN_TOKEN] {
                    if rendered.contains(secret) {
                        problems.push(format!("the report holds `{secret}`"));
                    }
                }
            }
            (
                format!(
                    "{flaws:?}{}",
                    rewrite
                        .map(|(from, to)| format!(" {from} -> {to}"))
                        .unwrap_or_default()
                ),
                problems,
                report.to_text(),
            )
        });
    }
    let mut all = Vec::new();
    while let Some(done) = runs.join_next().await {
        let (flaws, problems, text) = done.unwrap();
        if !problems.is_empty() {
            all.push(format!(
                "flaws {flaws:?}:\n  {}\n{text}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_live_run_writes_nothing_and_allow_writes_leaves_nothing_behind() {
    let peers = McpPeers::required();
    let fixture = Fixture::start(&peers, &[]);
    let report = run(&fixture, false).await;
    // Only GETs, and the searches the document declares read-only.
    let requests = fixture.requests();
    assert!(
        requests
            .iter()
            .all(|line| line.starts_with("GET ") || line == "POST /v1/search"),
        "{requests:?}"
    );
    // CRUD waits for `--allow-writes`; everything else is as with writes allowed.
    match report.outcome("facts_about", TestKind::Crud).unwrap() {
        Outcome::Skip { reason } => assert!(reason.contains("--allow-writes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!report.failed(), "{}", report.to_text());

    let report = run(&fixture, true).await;
    assert!(!report.failed(), "{}", report.to_text());
    let requests = fixture.requests();
    assert!(requests.iter().any(|line| line == "POST /v1/facts"));
    // The fact the CRUD test created is gone.
    let left = reqwest::Client::new()
        .get(format!("{}/v1/facts?entity=agentc-conform", fixture.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(left["facts"], serde_json::json!([]), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_tools_pass_on_their_mocks() {
    // The mocks started from the same documents, path templates included.
    let report = run_suite(&tools(), &Target::mock(), &SuiteOptions::default()).await;
    assert!(!report.failed(), "{}", report.to_text());
    let Outcome::Pass { checks } = report.outcome("fact_details", TestKind::Skill).unwrap() else {
        panic!("{}", report.to_text());
    };
    assert!(
        checks
            .iter()
            .any(|check| check.contains("/v1/facts/{fact_id}")),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_resource_read_by_key_without_delete_is_tested_as_declared() {
    let peers = McpPeers::required();
    let fixture = Fixture::start(&peers, &[]);
    let report = run(&fixture, true).await;
    let Outcome::Pass { checks } = report.outcome("remember_note", TestKind::Crud).unwrap() else {
        panic!("{}", report.to_text());
    };
    // Each step is its own check: create, read by key, upsert, read by key, and the
    // delete that is not offered, said with what stays.
    assert_eq!(checks.len(), 5, "{checks:?}");
    assert!(checks[1].starts_with("GET /v1/notes?key=… after create finds the `note` once"));
    assert!(checks[2].starts_with("`note` is updated with POST /v1/notes"));
    assert!(
        checks[4].starts_with("delete is not offered (`delete: false`)"),
        "{checks:?}"
    );
    // The notes the tool's own calls wrote cannot be deleted: the report says so. The
    // read-only search and the GET tools left nothing.
    for tool in &report.tools {
        if tool.tool == "remember_note" {
            assert!(
                tool.left_behind.len() == 1
                    && tool.left_behind[0].contains("successful `POST /v1/notes` call(s)"),
                "{:?}",
                tool.left_behind
            );
        } else {
            assert!(
                tool.left_behind.is_empty(),
                "{}: {:?}",
                tool.tool,
                tool.left_behind
            );
        }
    }
    assert!(report.to_text().contains("  left behind: "));
}

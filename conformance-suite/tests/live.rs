//! A live run against a small real HTTP service written here with hyper (not a mock),
//! on 127.0.0.1: the service implements the ticket tool as its document says, and the
//! suite passes on it; with defects switched on, exactly the tests that should fail do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentc_conformance::{Outcome, SuiteOptions, SuiteReport, Target, TestKind, run_suite};
use agentc_runtime::Secret;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "live-service-token-2b91";
const BODY_LIMIT: usize = 4096;

/// Defects the service can be started with.
#[derive(Clone, Copy, Default)]
struct Defects {
    /// The 401 repeats the credential it was sent.
    echoes_credential: bool,
    /// A body that is not JSON crashes the handler (500).
    crashes_on_malformed_json: bool,
    /// DELETE answers 204 and keeps the ticket.
    delete_keeps_the_ticket: bool,
    /// No llms.txt is served.
    no_llms_txt: bool,
    /// The crash of `crashes_on_malformed_json` dumps the service's secrets in its body.
    crash_dumps_secrets: bool,
    /// Bodies up to 10 MiB are read: a valid body over the declared limit is served.
    no_size_limit: bool,
    /// An invalid input's 400 echoes it with 1.5 MiB of context: a valid JSON error,
    /// larger than the suite reads.
    huge_json_errors: bool,
    /// The OpenAPI document lists `GET /tickets/export`, which the service does not serve.
    documents_a_dead_route: bool,
}

/// The secrets a crashing service dumps: each must be redacted from the report.
const PLANTED: [&str; 4] = [
    "planted-db-password-31",
    "tok_planted_stored_4e5f6a",
    "planted-bearer-7788",
    "AKIAPLANTEDEXAMPLE00",
];

struct Service {
    defects: Defects,
    /// Every request's method and path, in order: what the run sent.
    requests: Mutex<Vec<(String, String)>>,
    accepted: Mutex<VecDeque<Instant>>,
    tickets: Mutex<BTreeMap<String, Value>>,
    next: Mutex<u64>,
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": {"code": code}}))
}

fn valid_search(input: &Value) -> bool {
    let Some(object) = input.as_object() else {
        return false;
    };
    object.keys().all(|key| key == "query" || key == "limit")
        && object.get("query").is_some_and(Value::is_string)
        && object
            .get("limit")
            .is_none_or(|limit| limit.as_u64().is_some_and(|n| n >= 1))
}

impl Service {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = request.method().as_str().to_string();
        let path = request.uri().path().to_string();
        self.requests
            .lock()
            .unwrap()
            .push((method.clone(), path.clone()));
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let limit = if self.defects.no_size_limit {
            10 * 1024 * 1024
        } else {
            BODY_LIMIT
        };
        let body = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(error(413, "too_large")),
        };
        match (method.as_str(), path.as_str()) {
            ("GET", "/openapi.json") => {
                let mut document = json!({
                    "openapi": "3.0.3",
                    "info": {"title": "tickets", "version": "1"},
                    "paths": {
                        "/tickets/search": {"post": {}},
                        "/tickets": {"post": {}},
                        "/tickets/{ticket_id}": {"get": {}, "put": {}, "delete": {}},
                        "/health": {"get": {}}
                    }
                });
                if self.defects.documents_a_dead_route {
                    document["paths"]["/tickets/export"] = json!({"get": {}});
                }
                return Ok(reply(200, document));
            }
            ("GET", "/health") => return Ok(reply(200, json!({"ok": true}))),
            ("GET", "/llms.txt") if !self.defects.no_llms_txt => {
                let text = "# Tickets\n\n> Support tickets.\n\n- POST /tickets/search\n- POST /tickets\n- GET /tickets/{id}\n";
                return Ok(Response::new(Full::new(Bytes::from(text))));
            }
            _ => {}
        }
        {
            let mut accepted = self.accepted.lock().unwrap();
            let now = Instant::now();
            while accepted
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
            {
                accepted.pop_front();
            }
            if accepted.len() >= 40 {
                let mut response = error(429, "rate_limited");
                response
                    .headers_mut()
                    .insert("retry-after", "1".parse().unwrap());
                return Ok(response);
            }
            accepted.push_back(now);
        }
        if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            let body = if self.defects.echoes_credential {
                json!({"error": {"code": "unauthorized", "received": authorization}})
            } else {
                json!({"error": {"code": "unauthorized"}})
            };
            return Ok(reply(401, body));
        }
        let input: Option<Value> = serde_json::from_slice(&body).ok();
        if input.is_none() && !body.is_empty() && self.defects.crashes_on_malformed_json {
            let body = if self.defects.crash_dumps_secrets {
                json!({
                    "error": "panic",
                    "env": {"DATABASE_PASSWORD": PLANTED[0], "aws": PLANTED[3]},
                    "session": {"access_token": PLANTED[1]},
                    "trace": format!("while calling billing with Authorization: Bearer {}", PLANTED[2]),
                })
                .to_string()
            } else {
                "panic".to_string()
            };
            return Ok(Response::builder()
                .status(500)
                .body(Full::new(Bytes::from(body)))
                .unwrap());
        }
        match (method.as_str(), path.as_str()) {
            ("POST", "/tickets/search") => {
                let Some(input) = input.filter(valid_search) else {
                    if self.defects.huge_json_errors {
                        let context = "x".repeat(1536 * 1024);
                        return Ok(reply(
                            400,
                            json!({"error": {"code": "invalid_input", "context": context}}),
                        ));
                    }
                    return Ok(error(400, "invalid_input"));
                };
                if input["query"] == "*" {
                    return Ok(error(400, "query_too_broad"));
                }
                Ok(reply(
                    200,
                    json!({"tickets": [{"id": "T-9", "title": "Printer on fire"}]}),
                ))
            }
            ("POST", "/tickets") => {
                let Some(Value::Object(mut fields)) = input else {
                    return Ok(error(400, "invalid_input"));
                };
                let id = {
                    let mut next = self.next.lock().unwrap();
                    *next += 1;
                    format!("tk{next}")
                };
                fields.insert("id".into(), json!(id));
                fields.entry("priority").or_insert(json!("low"));
                let ticket = Value::Object(fields);
                self.tickets.lock().unwrap().insert(id, ticket.clone());
                Ok(reply(201, ticket))
            }
            (_, item) if item.starts_with("/tickets/") => {
                let id = item.trim_start_matches("/tickets/").to_string();
                let mut tickets = self.tickets.lock().unwrap();
                match method.as_str() {
                    "GET" => Ok(tickets.get(&id).map_or_else(
                        || error(404, "not_found"),
                        |ticket| reply(200, ticket.clone()),
                    )),
                    "PUT" => {
                        let Some(Value::Object(update)) = input else {
                            return Ok(error(400, "invalid_input"));
                        };
                        let Some(Value::Object(ticket)) = tickets.get_mut(&id) else {
                            return Ok(error(404, "not_found"));
                        };
                        ticket.extend(update);
                        Ok(reply(200, Value::Object(ticket.clone())))
                    }
                    "DELETE" => {
                        let found = if self.defects.delete_keeps_the_ticket {
                            tickets.contains_key(&id)
                        } else {
                            tickets.remove(&id).is_some()
                        };
                        Ok(if found {
                            Response::builder()
                                .status(204)
                                .body(Full::new(Bytes::new()))
                                .unwrap()
                        } else {
                            error(404, "not_found")
                        })
                    }
                    _ => Ok(error(405, "method_not_allowed")),
                }
            }
            _ => Ok(error(404, "not_found")),
        }
    }
}

/// Starts the service on 127.0.0.1 (port 0) and returns its base URL.
async fn start(defects: Defects) -> (String, Arc<Service>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = Arc::new(Service {
        defects,
        requests: Mutex::new(Vec::new()),
        accepted: Mutex::new(VecDeque::new()),
        tickets: Mutex::new(BTreeMap::new()),
        next: Mutex::new(0),
    });
    let serving = service.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = serving.clone();
            tokio::spawn(async move {
                let handler =
                    hyper::service::service_fn(move |request| service.clone().handle(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    (format!("http://{address}"), service)
}

async fn run_live(defects: Defects, credential: Option<&str>, yaml: &str) -> SuiteReport {
    let options = SuiteOptions {
        allow_writes: true,
        ..SuiteOptions::default()
    };
    run_live_with(defects, credential, yaml, &options).await.0
}

/// A live run with `options`, and the service it ran against.
async fn run_live_with(
    defects: Defects,
    credential: Option<&str>,
    yaml: &str,
    options: &SuiteOptions,
) -> (SuiteReport, Arc<Service>) {
    let (base, service) = start(defects).await;
    let tool = common::load_one(yaml);
    let mut credentials = BTreeMap::new();
    if let Some(credential) = credential {
        credentials.insert("ticket_search".to_string(), Secret::new(credential));
    }
    let target = Target::live(Some(base)).with_credentials(credentials);
    (run_suite(&[tool], &target, options).await, service)
}

fn ticket_yaml() -> String {
    // The document names the real host; the base URL replaces its origin for the run.
    common::ticket_tool_yaml("https://tickets.example.com/tickets/search")
}

fn outcomes(report: &SuiteReport) -> BTreeMap<&'static str, &'static str> {
    TestKind::ALL
        .iter()
        .map(|test| {
            (
                test.as_str(),
                report.outcome("ticket_search", *test).unwrap().as_str(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_live_service_passes_all_seven() {
    let report = run_live(Defects::default(), Some(TOKEN), &ticket_yaml()).await;
    assert!(!report.failed(), "{}", report.to_text());
    assert!(
        outcomes(&report).values().all(|outcome| *outcome == "pass"),
        "{}",
        report.to_text()
    );
    assert!(report.tools[0].target.starts_with("http://127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_defective_live_service_fails_exactly_where_it_is_defective() {
    let defects = Defects {
        echoes_credential: true,
        crashes_on_malformed_json: true,
        delete_keeps_the_ticket: true,
        no_llms_txt: true,
        ..Defects::default()
    };
    let report = run_live(defects, Some(TOKEN), &ticket_yaml()).await;
    let outcomes = outcomes(&report);
    for failing in ["discovery", "auth", "crud", "error"] {
        assert_eq!(outcomes[failing], "fail", "{failing}: {}", report.to_text());
    }
    for passing in ["rate_limit", "pitfall", "skill"] {
        assert_eq!(outcomes[passing], "pass", "{passing}: {}", report.to_text());
    }
    let evidence = |test| match report.outcome("ticket_search", test).unwrap() {
        Outcome::Fail { evidence, .. } => evidence.clone(),
        other => panic!("{other:?}"),
    };
    // Discovery: the OpenAPI document was fine; llms.txt was missing.
    let discovery = evidence(TestKind::Discovery);
    assert_eq!(discovery.len(), 1);
    assert_eq!(
        discovery[0].request.as_deref(),
        Some("GET /llms.txt (no credential)")
    );
    // Auth: the wrong credential came back in the 401 body.
    let auth = evidence(TestKind::Auth);
    assert!(
        auth.iter()
            .any(|item| item.check == "no credential is echoed back"),
        "{auth:?}"
    );
    // Error: malformed JSON crashed the service.
    let error = evidence(TestKind::Error);
    assert_eq!(error.len(), 1, "{error:?}");
    assert!(error[0].check.starts_with("malformed JSON"));
    assert_eq!(error[0].status, Some(500));
    // CRUD: the ticket survived its delete.
    let crud = evidence(TestKind::Crud);
    assert_eq!(crud[0].check, "GET /tickets/{id} after delete gives 404");
    // The real token never appears in the report.
    assert!(!report.to_json().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_credential_fails_closed() {
    // The service refuses the suite's "valid" credential: auth and everything that
    // needs a credential fail; nothing passes unauthenticated.
    let report = run_live(Defects::default(), Some("not-the-token"), &ticket_yaml()).await;
    let outcomes = outcomes(&report);
    for test in ["auth", "crud", "error", "rate_limit", "pitfall", "skill"] {
        assert_eq!(outcomes[test], "fail", "{test}: {}", report.to_text());
    }
    assert_eq!(outcomes["discovery"], "pass");
    // No credential at all: the report says which variable to set.
    let report = run_live(Defects::default(), None, &ticket_yaml()).await;
    match report.outcome("ticket_search", TestKind::Auth).unwrap() {
        Outcome::Fail { evidence, .. } => {
            assert!(evidence[0].detail.contains("no valid credential was given"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_non_loopback_host_fails_every_test() {
    let tool = common::load_one(&ticket_yaml());
    let target =
        Target::live(Some("http://tickets.example.com".into())).with_credentials(BTreeMap::from([
            ("ticket_search".to_string(), Secret::new(TOKEN)),
        ]));
    let report = run_suite(&[tool], &target, &SuiteOptions::default()).await;
    // A run that could test nothing must not pass.
    assert!(report.failed());
    for test in TestKind::ALL {
        match report.outcome("ticket_search", test).unwrap() {
            Outcome::Fail { evidence, .. } => {
                assert!(
                    evidence[0].detail.contains("plain http on loopback only"),
                    "{evidence:?}"
                );
            }
            other => panic!("{test:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_service_hands_out_are_reported_but_redacted() {
    let defects = Defects {
        crashes_on_malformed_json: true,
        crash_dumps_secrets: true,
        ..Defects::default()
    };
    let report = run_live(defects, Some(TOKEN), &ticket_yaml()).await;
    // The crash is still a finding, and its evidence says what was in the answer.
    let Outcome::Fail { evidence, .. } = report.outcome("ticket_search", TestKind::Error).unwrap()
    else {
        panic!("{}", report.to_text());
    };
    assert_eq!(evidence[0].status, Some(500));
    assert!(
        evidence[0].detail.contains("redacted from this report")
            && evidence[0]
                .detail
                .contains("a JSON value named as a secret")
            && evidence[0].detail.contains("an authorization value"),
        "{evidence:?}"
    );
    // None of the planted secrets, nor the run's own token, is in any report format.
    for rendered in [
        report.to_text(),
        report.to_json(),
        report.to_junit("2026-12-05T00:00:00Z"),
    ] {
        for secret in PLANTED.iter().chain([&TOKEN]) {
            assert!(!rendered.contains(secret), "{secret} in {rendered}");
        }
    }
}

fn error_evidence(report: &SuiteReport) -> Vec<agentc_conformance::Evidence> {
    match report.outcome("ticket_search", TestKind::Error).unwrap() {
        Outcome::Fail { evidence, .. } => evidence.clone(),
        other => panic!(
            "the error test should fail: {other:?}\n{}",
            report.to_text()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_body_over_the_declared_limit_must_be_refused() {
    let defects = Defects {
        no_size_limit: true,
        ..Defects::default()
    };
    let report = run_live(defects, Some(TOKEN), &ticket_yaml()).await;
    // The probe is the valid example with its query padded: only its size is wrong,
    // so a service that checks fields but not size is caught.
    let evidence = error_evidence(&report);
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert!(
        evidence[0]
            .check
            .starts_with("a valid body over the declared limit (4096 bytes)"),
        "{evidence:?}"
    );
    assert_eq!(evidence[0].status, Some(200));
    // The failure is reported beside what held, in the text report too.
    let Outcome::Fail { passed, .. } = report.outcome("ticket_search", TestKind::Error).unwrap()
    else {
        unreachable!()
    };
    assert!(
        passed
            .iter()
            .any(|check| check.starts_with("a wrong type (`query` is not a string)")),
        "{passed:?}"
    );
    let text = report.to_text();
    assert!(
        text.contains("1 problem(s), 4 check(s) held")
            && text.contains("        + malformed JSON gets a structured 4xx"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_error_larger_than_the_read_limit_is_not_misread_as_unstructured() {
    let defects = Defects {
        huge_json_errors: true,
        ..Defects::default()
    };
    let report = run_live(defects, Some(TOKEN), &ticket_yaml()).await;
    let Outcome::Pass { checks } = report.outcome("ticket_search", TestKind::Error).unwrap() else {
        panic!("{}", report.to_text());
    };
    assert!(
        checks
            .iter()
            .any(|check| check.contains("judged by its content type")),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_binding_route_fails_the_error_test_instead_of_passing_on_404s() {
    let yaml = common::ticket_tool_yaml("https://tickets.example.com/tickets/serach");
    let report = run_live(Defects::default(), Some(TOKEN), &yaml).await;
    let evidence = error_evidence(&report);
    // The service reads `/tickets/serach` as a ticket, which cannot be POSTed: the
    // wrong type, the missing field and the malformed JSON all got 405 (the oversized
    // body is refused before routing, 413, rightly).
    assert_eq!(evidence.len(), 3, "{evidence:?}");
    assert!(
        evidence
            .iter()
            .all(|item| matches!(item.status, Some(404 | 405))
                && item.detail.contains("as if it did not exist")),
        "{evidence:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_writes_nothing_without_allow_writes() {
    let (report, service) = run_live_with(
        Defects::default(),
        Some(TOKEN),
        &ticket_yaml(),
        &SuiteOptions::default(),
    )
    .await;
    // Only GETs reached the service: the docs.
    let requests = service.requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|(method, _)| method == "GET"),
        "{requests:?}"
    );
    // Discovery ran; every test that would have POSTed says why it did not.
    assert!(matches!(
        report
            .outcome("ticket_search", TestKind::Discovery)
            .unwrap(),
        Outcome::Pass { .. }
    ));
    for test in [
        TestKind::Auth,
        TestKind::Crud,
        TestKind::Error,
        TestKind::RateLimit,
        TestKind::Pitfall,
        TestKind::Skill,
    ] {
        match report.outcome("ticket_search", test).unwrap() {
            Outcome::Skip { reason } => assert!(reason.contains("--allow-writes"), "{reason}"),
            other => panic!("{test:?}: {other:?}"),
        }
    }
    // A tool marked read-only is called: its searches change nothing.
    let read_only = ticket_yaml().replace("conformance:\n", "conformance:\n  read_only: true\n");
    let (report, service) = run_live_with(
        Defects::default(),
        Some(TOKEN),
        &read_only,
        &SuiteOptions::default(),
    )
    .await;
    for test in [
        TestKind::Auth,
        TestKind::Error,
        TestKind::Pitfall,
        TestKind::Skill,
    ] {
        assert!(
            matches!(
                report.outcome("ticket_search", test).unwrap(),
                Outcome::Pass { .. }
            ),
            "{test:?}: {}",
            report.to_text()
        );
    }
    // The CRUD test still writes, so it still waits for `--allow-writes`.
    assert!(matches!(
        report.outcome("ticket_search", TestKind::Crud).unwrap(),
        Outcome::Skip { .. }
    ));
    let requests = service.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|(method, path)| method == "GET" || path == "/tickets/search"),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_writes_nothing_is_left_behind_or_the_report_says_what_is() {
    let options = SuiteOptions {
        allow_writes: true,
        ..SuiteOptions::default()
    };
    let (report, service) =
        run_live_with(Defects::default(), Some(TOKEN), &ticket_yaml(), &options).await;
    assert!(!report.failed(), "{}", report.to_text());
    assert!(service.tickets.lock().unwrap().is_empty());
    // A service whose DELETE keeps the ticket: the run tries once more, and the report
    // names what it left behind.
    let defects = Defects {
        delete_keeps_the_ticket: true,
        ..Defects::default()
    };
    let (report, service) = run_live_with(defects, Some(TOKEN), &ticket_yaml(), &options).await;
    let left = service
        .tickets
        .lock()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(left.len(), 1);
    let Outcome::Fail { evidence, .. } = report.outcome("ticket_search", TestKind::Crud).unwrap()
    else {
        panic!("{}", report.to_text());
    };
    let left_behind = evidence
        .iter()
        .find(|item| item.check == "nothing the run created is left behind")
        .unwrap();
    assert!(
        left_behind
            .detail
            .contains(&format!("/tickets/{}", left[0]))
            && left_behind.detail.contains("remove it by hand"),
        "{left_behind:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documented_operation_the_service_does_not_serve_fails_discovery() {
    let defects = Defects {
        documents_a_dead_route: true,
        ..Defects::default()
    };
    let report = run_live(defects, Some(TOKEN), &ticket_yaml()).await;
    let Outcome::Fail { evidence, .. } = report
        .outcome("ticket_search", TestKind::Discovery)
        .unwrap()
    else {
        panic!("{}", report.to_text());
    };
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert_eq!(
        evidence[0].check,
        "the documented operation `GET /tickets/export` is served"
    );
    assert_eq!(evidence[0].status, Some(404));
    // The correct service documents only what it serves.
    let report = run_live(Defects::default(), Some(TOKEN), &ticket_yaml()).await;
    let Outcome::Pass { checks } = report
        .outcome("ticket_search", TestKind::Discovery)
        .unwrap()
    else {
        panic!("{}", report.to_text());
    };
    assert!(
        checks
            .iter()
            .any(|check| check.contains("documented operation(s) without path parameters")),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_of_one_service_share_its_rate_limit_without_spurious_failures() {
    // Two tools on one live service whose limit (40 requests a second) is per service,
    // as real limits usually are: their tests must not see each other's bursts.
    let (base, service) = start(Defects::default()).await;
    let first = common::load_one(&ticket_yaml());
    let second = common::load_one(
        &ticket_yaml().replace("name: ticket_search", "name: ticket_search_again"),
    );
    let target = Target::live(Some(base)).with_credentials(BTreeMap::from([
        ("ticket_search".to_string(), Secret::new(TOKEN)),
        ("ticket_search_again".to_string(), Secret::new(TOKEN)),
    ]));
    let options = SuiteOptions {
        allow_writes: true,
        ..SuiteOptions::default()
    };
    let report = run_suite(&[first, second], &target, &options).await;
    assert!(!report.failed(), "{}", report.to_text());
    assert_eq!(report.summary.passed, 14);
    assert!(service.tickets.lock().unwrap().is_empty());
}

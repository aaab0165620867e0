//! Runs the seven tests on every tool, tools concurrently (each has its own service or
//! mock, so they cannot disturb one another) and each tool's tests in turn, the
//! rate-limit test last so that its burst cannot make another test see a 429.

use std::sync::Arc;
use std::time::Duration;

use agentc_runtime::{McpTransport, Secret, ToolBinding, ToolBindingSpec};
use tokio::time::Instant;

use crate::checks::{self, Context};
use crate::http::{Probe, ProbeSettings};
use crate::mcp_checks::{self, McpContext};
use crate::mcp_mock::McpToolMock;
use crate::mock::{Faults, ToolMock};
use crate::redact::redact_tool_report;
use crate::report::{Outcome, SuiteReport, TestKind, TestReport, ToolReport};
use crate::target::{CredentialSource, Target, TargetKind, plain_http_allowed};
use crate::tool::{ToolUnderTest, method_text};

/// Options of a run.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// The longest `Retry-After` the rate-limit test waits (default 60 s).
    pub max_retry_after: Duration,
    /// Behaviours a mock target breaks on purpose (the suite's own tests).
    pub mock_faults: Faults,
    /// Whether a live run may send requests that can change the service (`--allow-writes`):
    /// the operation of a tool that is not GET or `read_only`, any MCP call, the CRUD
    /// test. Without it those tests are skipped, with the reason. A mock may always be
    /// written to.
    pub allow_writes: bool,
    /// A dry run of a live target: nothing is sent to the service. Each tool's tests run
    /// against its mock under the live run's write policy, and each report's `planned`
    /// lists what the live run would send to a service that answers as its document
    /// says.
    pub dry_run: bool,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            max_retry_after: Duration::from_secs(60),
            mock_faults: Faults::default(),
            allow_writes: false,
            dry_run: false,
        }
    }
}

/// One finished test, for a progress display.
#[derive(Clone, Debug)]
pub struct ProgressEvent {
    pub tool: String,
    pub test: TestKind,
    /// `pass`, `fail` or `skip`.
    pub outcome: &'static str,
}

/// Runs the suite on `tools` against `target`.
pub async fn run_suite(
    tools: &[ToolUnderTest],
    target: &Target,
    options: &SuiteOptions,
) -> SuiteReport {
    run_suite_with_progress(tools, target, options, Arc::new(|_| {})).await
}

/// Runs the suite, calling `progress` after each test (from any task).
pub async fn run_suite_with_progress(
    tools: &[ToolUnderTest],
    target: &Target,
    options: &SuiteOptions,
    progress: Arc<dyn Fn(ProgressEvent) + Send + Sync>,
) -> SuiteReport {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // A dry run tests each tool on its mock, and sends nothing to the live service.
    let dry_run = options.dry_run && target.kind != TargetKind::Mock;
    let live_base = match &target.kind {
        TargetKind::Live { base_url } => base_url.clone(),
        TargetKind::Mock => None,
    };
    let run_target = if dry_run {
        Target {
            kind: TargetKind::Mock,
            ..target.clone()
        }
    } else {
        target.clone()
    };
    for group in service_groups(tools, target) {
        let target = run_target.clone();
        let live_base = live_base.clone();
        let options = options.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut reports = Vec::with_capacity(group.len());
            let shared_limit = strictest_limit(&group);
            for (position, (index, tool)) in group.iter().enumerate() {
                if position > 0 {
                    cool_down(shared_limit).await;
                }
                let mut report =
                    run_tool(tool, &target, &options, progress.clone(), shared_limit).await;
                if dry_run {
                    report.target = service_key(tool, live_base.as_deref())
                        .trim_start_matches("stdio ")
                        .to_string();
                }
                reports.push((*index, report));
            }
            reports
        });
    }
    let mut reports: Vec<(usize, ToolReport)> = Vec::with_capacity(tools.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(group) => reports.extend(group),
            Err(error) => tracing::error!(%error, "a tool's conformance run panicked"),
        }
    }
    // Tools ran concurrently; the report lists them in document order.
    reports.sort_by_key(|(index, _)| *index);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    SuiteReport::new(
        target.label(),
        reports.into_iter().map(|(_, report)| report).collect(),
        duration_ms,
    )
}

/// The tools, by the service they test, each group in document order. Tools of one
/// live service run one after another: a real service's rate limit is usually per
/// credential across its API, so one tool's burst would make another tool's tests see
/// spurious 429s. Different services, and mocks (one per tool), run concurrently.
fn service_groups(tools: &[ToolUnderTest], target: &Target) -> Vec<Vec<(usize, ToolUnderTest)>> {
    let mut groups: Vec<(String, Vec<(usize, ToolUnderTest)>)> = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let key = match &target.kind {
            TargetKind::Mock => format!("mock {index}"),
            TargetKind::Live { base_url } => service_key(tool, base_url.as_deref()),
        };
        match groups.iter_mut().find(|(existing, _)| *existing == key) {
            Some((_, group)) => group.push((index, tool.clone())),
            None => groups.push((key, vec![(index, tool.clone())])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// The service a live run of `tool` talks to: the origin of its URL (or of the base
/// URL that replaces it), or a stdio server's command line.
fn service_key(tool: &ToolUnderTest, base_url: Option<&str>) -> String {
    let origin = |url: &str| {
        url::Url::parse(url).map_or_else(
            |_| url.to_string(),
            |url| url.origin().ascii_serialization(),
        )
    };
    if let Some(base) = base_url {
        return origin(base);
    }
    match ToolBindingSpec::from_document(&tool.document).binding {
        ToolBinding::Http(http) => origin(&http.url),
        ToolBinding::Mcp(mcp) => match mcp.transport {
            McpTransport::Http { url } => origin(&url),
            McpTransport::Stdio { command, args, .. } => {
                format!("stdio {command} {}", args.join(" "))
            }
        },
        _ => format!("tool {}", tool.name()),
    }
}

/// The strictest rate limit any tool of a service declares, as (requests, seconds):
/// a real limit is usually per credential across the service's API, so every tool of
/// the service is paced by it, not only the one that declares it.
fn strictest_limit(group: &[(usize, ToolUnderTest)]) -> Option<(u64, u64)> {
    group
        .iter()
        .filter_map(|(_, tool)| tool.conformance()?.rate_limit.as_ref())
        .map(|limit| (limit.requests.value, limit.per_seconds.value.max(1)))
        .min_by(|(a_requests, a_seconds), (b_requests, b_seconds)| {
            // Compare requests per second without division: a/as < b/bs.
            (u128::from(*a_requests) * u128::from(*b_seconds))
                .cmp(&(u128::from(*b_requests) * u128::from(*a_seconds)))
        })
}

/// Before the next tool of a service with a rate limit: the tool before may have spent
/// the window (its rate-limit test bursts), so the next one waits it out.
async fn cool_down(shared_limit: Option<(u64, u64)>) {
    if let Some((_, seconds)) = shared_limit {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

/// Where to send a tool's requests, and with which credential.
struct Prepared {
    base: String,
    secret: Option<Secret>,
    missing_secret: Option<String>,
    shown_target: String,
    _mock: Option<ToolMock>,
}

/// Why a tool could not be prepared: the tests do not apply to it (skipped), or the
/// target cannot be used (every test fails: a run that tested nothing must not pass).
enum Unprepared {
    NotApplicable(String),
    Unusable(String),
}

async fn prepare(
    tool: &ToolUnderTest,
    target: &Target,
    options: &SuiteOptions,
) -> Result<Prepared, Unprepared> {
    let endpoint = tool.endpoint().map_err(Unprepared::NotApplicable)?;
    prepare_target(tool, target, options, endpoint)
        .await
        .map_err(Unprepared::Unusable)
}

async fn prepare_target(
    tool: &ToolUnderTest,
    target: &Target,
    options: &SuiteOptions,
    endpoint: crate::tool::Endpoint,
) -> Result<Prepared, String> {
    match &target.kind {
        TargetKind::Mock => {
            let mock = ToolMock::start_with(tool, options.mock_faults, options.dry_run).await?;
            Ok(Prepared {
                base: mock.base_url(),
                secret: mock.credential(),
                missing_secret: None,
                shown_target: "mock".to_string(),
                _mock: Some(mock),
            })
        }
        TargetKind::Live { base_url } => {
            let base = base_url.clone().unwrap_or(endpoint.origin);
            let parsed = url::Url::parse(&base)
                .map_err(|error| format!("the base URL `{base}` is invalid: {error}"))?;
            match parsed.scheme() {
                "https" => {}
                "http" if plain_http_allowed(&parsed) => {}
                _ => {
                    return Err(format!(
                        "`{base}`: live runs use https, or plain http on loopback only, so a credential never crosses a network in clear text"
                    ));
                }
            }
            let (secret, missing_secret) = live_credential(tool, target);
            Ok(Prepared {
                shown_target: base.trim_end_matches('/').to_string(),
                base,
                secret,
                missing_secret,
                _mock: None,
            })
        }
    }
}

/// Whether requests that can change the service may be sent: always to a mock, to a
/// live service only with `--allow-writes`.
fn writes_allowed(target: &Target, options: &SuiteOptions) -> bool {
    options.allow_writes || (target.kind == TargetKind::Mock && !options.dry_run)
}

/// A live run's valid credential for `tool`, or why there is none.
fn live_credential(tool: &ToolUnderTest, target: &Target) -> (Option<Secret>, Option<String>) {
    match &target.credentials {
        CredentialSource::Environment => {
            let variable = tool.credential_variable();
            match std::env::var(&variable) {
                Ok(value) if !value.is_empty() => (Some(Secret::new(value)), None),
                _ => (None, Some(format!("no valid credential: set `{variable}`"))),
            }
        }
        CredentialSource::Fixed(map) => match map.get(tool.name()) {
            Some(secret) => (Some(secret.clone()), None),
            None => (
                None,
                Some(format!(
                    "no valid credential was given for `{}`",
                    tool.name()
                )),
            ),
        },
    }
}

/// Where an MCP tool's tests go (AGX-M5): its mock, or its server (live).
struct PreparedMcp {
    transport: McpTransport,
    secret: Option<Secret>,
    missing_secret: Option<String>,
    shown_target: String,
    _mock: Option<McpToolMock>,
}

async fn prepare_mcp(
    tool: &ToolUnderTest,
    target: &Target,
    options: &SuiteOptions,
) -> Result<PreparedMcp, String> {
    match &target.kind {
        TargetKind::Mock => {
            let mock = McpToolMock::start_with(tool, options.mock_faults, options.dry_run).await?;
            Ok(PreparedMcp {
                transport: McpTransport::Http {
                    url: mock.url().to_string(),
                },
                secret: mock.credential(),
                missing_secret: None,
                shown_target: "mock".to_string(),
                _mock: Some(mock),
            })
        }
        TargetKind::Live { base_url } => {
            let ToolBinding::Mcp(binding) = ToolBindingSpec::from_document(&tool.document).binding
            else {
                return Err("the tool has no `mcp` binding".to_string());
            };
            let transport = match (binding.transport, base_url) {
                (McpTransport::Http { url }, Some(base)) => McpTransport::Http {
                    url: rebased(&url, base)?,
                },
                (transport, _) => transport,
            };
            if let McpTransport::Http { url } = &transport {
                let parsed = url::Url::parse(url)
                    .map_err(|error| format!("the server URL `{url}` is invalid: {error}"))?;
                match parsed.scheme() {
                    "https" => {}
                    "http" if plain_http_allowed(&parsed) => {}
                    _ => {
                        return Err(format!(
                            "`{url}`: live runs use https, or plain http on loopback only, so a credential never crosses a network in clear text"
                        ));
                    }
                }
            }
            let (secret, missing_secret) = live_credential(tool, target);
            Ok(PreparedMcp {
                shown_target: agentc_mcp::server_label(&transport)
                    .trim_matches('`')
                    .to_string(),
                transport,
                secret,
                missing_secret,
                _mock: None,
            })
        }
    }
}

/// `url` with its origin replaced by `base` (and `base`'s path put before its path).
fn rebased(url: &str, base: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url)
        .map_err(|error| format!("the server URL `{url}` is invalid: {error}"))?;
    let base = base.trim_end_matches('/');
    let mut rebased = format!("{base}{}", parsed.path());
    if let Some(query) = parsed.query() {
        rebased.push('?');
        rebased.push_str(query);
    }
    Ok(rebased)
}

/// The seven tests of an MCP tool.
async fn run_mcp_tool(
    tool: &ToolUnderTest,
    target: &Target,
    options: &SuiteOptions,
    progress: &Arc<dyn Fn(ProgressEvent) + Send + Sync>,
) -> ToolReport {
    let prepared = match prepare_mcp(tool, target, options).await {
        Ok(prepared) => prepared,
        Err(reason) => return unusable(tool, target.label().to_string(), &reason, progress),
    };
    let specification = ToolBindingSpec::from_document(&tool.document);
    let (server_tool, pin) = match &specification.binding {
        ToolBinding::Mcp(binding) => (binding.tool.clone(), binding.pin.clone()),
        _ => (tool.name().to_string(), None),
    };
    let context = McpContext {
        tool,
        transport: prepared.transport.clone(),
        auth: specification.auth,
        secret: prepared.secret.clone(),
        missing_secret: prepared.missing_secret.clone(),
        server_tool,
        pin,
        timeout: target.request_timeout,
        max_retry_after: options.max_retry_after,
        writes_allowed: writes_allowed(target, options),
        writes: std::sync::atomic::AtomicUsize::new(0),
    };
    let tests = run_in_order(tool, progress, |test| {
        let context = &context;
        async move {
            match test {
                TestKind::Discovery => mcp_checks::discovery(context).await,
                TestKind::Auth => mcp_checks::auth(context).await,
                TestKind::Crud => mcp_checks::crud(),
                TestKind::Error => mcp_checks::error(context).await,
                TestKind::RateLimit => mcp_checks::rate_limit(context).await,
                TestKind::Pitfall => mcp_checks::pitfall(context).await,
                TestKind::Skill => mcp_checks::skill(context).await,
            }
        }
    })
    .await;
    let mut report = ToolReport {
        tool: tool.name().to_string(),
        source: tool.source_name().to_string(),
        target: prepared.shown_target,
        tests,
        planned: match &prepared._mock {
            Some(mock) if options.dry_run => mock.requests(),
            _ => Vec::new(),
        },
        left_behind: if target.kind == TargetKind::Mock {
            Vec::new()
        } else {
            left_behind(
                context.writes.load(std::sync::atomic::Ordering::SeqCst),
                &format!("`tools/call` of `{}`", context.server_tool),
            )
        },
    };
    redact_tool_report(&mut report, prepared.secret.as_ref());
    report
}

/// The report's note of what `writes` successful writing calls of `operation` left.
fn left_behind(writes: usize, operation: &str) -> Vec<String> {
    if writes == 0 {
        return Vec::new();
    }
    vec![format!(
        "{writes} successful {operation} call(s) may have changed the service, and no declared delete undoes them"
    )]
}

/// Runs the seven tests in turn, the rate-limit test last so that its burst cannot
/// make another test see a limit; the reports in the order of [`TestKind`].
async fn run_in_order<F, Fut>(
    tool: &ToolUnderTest,
    progress: &Arc<dyn Fn(ProgressEvent) + Send + Sync>,
    run: F,
) -> Vec<TestReport>
where
    F: Fn(TestKind) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let order = [
        TestKind::Discovery,
        TestKind::Auth,
        TestKind::Crud,
        TestKind::Error,
        TestKind::Pitfall,
        TestKind::Skill,
        TestKind::RateLimit,
    ];
    let mut tests = Vec::with_capacity(order.len());
    for test in order {
        let started = Instant::now();
        let outcome = run(test).await;
        progress(ProgressEvent {
            tool: tool.name().to_string(),
            test,
            outcome: outcome.as_str(),
        });
        tests.push(TestReport {
            test,
            outcome,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    tests.sort_by_key(|report| report.test);
    tests
}

async fn run_tool(
    tool: &ToolUnderTest,
    target: &Target,
    options: &SuiteOptions,
    progress: Arc<dyn Fn(ProgressEvent) + Send + Sync>,
    shared_limit: Option<(u64, u64)>,
) -> ToolReport {
    if tool.document.binding.mcp.is_some() {
        return run_mcp_tool(tool, target, options, &progress).await;
    }
    let prepared = prepare(tool, target, options).await;
    let (probe, endpoint, shown_target, own_secret, _mock) = match prepared {
        Ok(prepared) => {
            // Paced by its own declared limit, else by the service's (another tool's).
            let rate_limit = tool
                .conformance()
                .and_then(|c| c.rate_limit.as_ref())
                .map(|limit| (limit.requests.value, limit.per_seconds.value))
                .or(shared_limit);
            let probe = Probe::new(ProbeSettings {
                base: prepared.base.clone(),
                scheme: tool.auth_scheme(),
                api_key_header: tool.api_key_header(),
                secret: prepared.secret.clone(),
                missing_secret: prepared.missing_secret.clone(),
                rate_limit,
                timeout: target.request_timeout,
            });
            match probe {
                Ok(probe) => (
                    Some(probe),
                    tool.endpoint(),
                    prepared.shown_target,
                    prepared.secret,
                    prepared._mock,
                ),
                Err(reason) => {
                    return unusable(tool, prepared.shown_target, &reason, &progress);
                }
            }
        }
        Err(Unprepared::NotApplicable(reason)) => {
            (None, Err(reason), target.label().to_string(), None, None)
        }
        Err(Unprepared::Unusable(reason)) => {
            return unusable(tool, target.label().to_string(), &reason, &progress);
        }
    };
    let context = Context {
        tool,
        endpoint,
        probe,
        max_retry_after: options.max_retry_after,
        writes_allowed: writes_allowed(target, options),
        writes: std::sync::atomic::AtomicUsize::new(0),
    };
    let tests = run_in_order(tool, &progress, |test| {
        let context = &context;
        async move {
            match test {
                TestKind::Discovery => checks::discovery(context).await,
                TestKind::Auth => checks::auth(context).await,
                TestKind::Crud => checks::crud(context).await,
                TestKind::Error => checks::error(context).await,
                TestKind::RateLimit => checks::rate_limit(context).await,
                TestKind::Pitfall => checks::pitfall(context).await,
                TestKind::Skill => checks::skill(context).await,
            }
        }
    })
    .await;
    let mut report = ToolReport {
        tool: tool.name().to_string(),
        source: tool.source_name().to_string(),
        target: shown_target,
        tests,
        planned: match &_mock {
            Some(mock) if options.dry_run => mock.requests().await,
            _ => Vec::new(),
        },
        left_behind: match &context.endpoint {
            _ if target.kind == TargetKind::Mock => Vec::new(),
            Ok(endpoint) => left_behind(
                context.writes.load(std::sync::atomic::Ordering::SeqCst),
                &format!("`{} {}`", method_text(endpoint.method), endpoint.route()),
            ),
            Err(_) => Vec::new(),
        },
    };
    redact_tool_report(&mut report, own_secret.as_ref());
    report
}

/// The report of a tool whose target cannot be used: every test fails with the reason.
fn unusable(
    tool: &ToolUnderTest,
    shown_target: String,
    reason: &str,
    progress: &Arc<dyn Fn(ProgressEvent) + Send + Sync>,
) -> ToolReport {
    let tests = TestKind::ALL
        .iter()
        .map(|test| {
            progress(ProgressEvent {
                tool: tool.name().to_string(),
                test: *test,
                outcome: "fail",
            });
            TestReport {
                test: *test,
                outcome: Outcome::Fail {
                    evidence: vec![crate::report::Evidence {
                        check: "the target can be reached".to_string(),
                        request: None,
                        status: None,
                        detail: reason.to_string(),
                        schema_location: None,
                    }],
                    passed: Vec::new(),
                },
                duration_ms: 0,
            }
        })
        .collect();
    let mut report = ToolReport {
        tool: tool.name().to_string(),
        source: tool.source_name().to_string(),
        target: shown_target,
        tests,
        left_behind: Vec::new(),
        planned: Vec::new(),
    };
    redact_tool_report(&mut report, None);
    report
}

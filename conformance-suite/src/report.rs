//! The suite's report: per tool, per test, pass / fail with evidence / skip with the
//! reason; rendered as readable text, as JSON, and as JUnit XML for CI systems.
//!
//! Reports are deterministic for the same input apart from timings: a mock's random port
//! never appears (requests are shown as method and path), and no secret ever does (the
//! probe redacts the credential from every excerpt it records).

use serde::Serialize;
use std::fmt::Write as _;

/// The seven tests, in the order the shared spec lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Discovery,
    Auth,
    Crud,
    Error,
    RateLimit,
    Pitfall,
    Skill,
}

impl TestKind {
    /// All seven, in the spec's order.
    pub const ALL: [TestKind; 7] = [
        TestKind::Discovery,
        TestKind::Auth,
        TestKind::Crud,
        TestKind::Error,
        TestKind::RateLimit,
        TestKind::Pitfall,
        TestKind::Skill,
    ];

    /// The test's name, as reports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Discovery => "discovery",
            TestKind::Auth => "auth",
            TestKind::Crud => "crud",
            TestKind::Error => "error",
            TestKind::RateLimit => "rate_limit",
            TestKind::Pitfall => "pitfall",
            TestKind::Skill => "skill",
        }
    }

    /// What the test establishes, from the shared spec's definition.
    pub fn summary(self) -> &'static str {
        match self {
            TestKind::Discovery => {
                "machine-readable docs are served, parse, and match the declared operations"
            }
            TestKind::Auth => {
                "missing, malformed and wrong credentials are refused; valid ones accepted; no secret echoed"
            }
            TestKind::Crud => {
                "create, read, update, read, delete, read-gives-404, bodies in the declared schema"
            }
            TestKind::Error => "bad input gets a structured 4xx, never a 5xx or a hang",
            TestKind::RateLimit => {
                "a burst past the declared limit gets 429 with Retry-After, then succeeds after waiting"
            }
            TestKind::Pitfall => "every known pitfall is replayed and the correct behaviour holds",
            TestKind::Skill => {
                "every declared operation answers a valid example in its declared output schema"
            }
        }
    }
}

/// One piece of evidence of a failure: what was checked, the request, the response
/// status, what went wrong, and, for a schema mismatch, the line of the schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What was expected.
    pub check: String,
    /// The request, as `METHOD /path` and how it was authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The response status; absent when there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong.
    pub detail: String,
    /// `file:line (/schema/pointer)` of the schema keyword that rejected a body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_location: Option<String>,
}

/// The result of one test on one tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every check held; `checks` says what was verified.
    Pass { checks: Vec<String> },
    /// At least one check failed; `passed` says what held beside the failures, so
    /// that a failure is read against what was verified.
    Fail {
        evidence: Vec<Evidence>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        passed: Vec<String>,
    },
    /// The test cannot apply to this tool; never counted as a pass.
    Skip { reason: String },
}

impl Outcome {
    /// The outcome's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass { .. } => "pass",
            Outcome::Fail { .. } => "fail",
            Outcome::Skip { .. } => "skip",
        }
    }
}

/// One test's report.
#[derive(Clone, Debug, Serialize)]
pub struct TestReport {
    pub test: TestKind,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time of the test, in milliseconds (the only non-deterministic field).
    pub duration_ms: u64,
}

/// One tool's report.
#[derive(Clone, Debug, Serialize)]
pub struct ToolReport {
    pub tool: String,
    /// The file of its tool document.
    pub source: String,
    /// Where it was tested: `mock`, or the live base URL.
    pub target: String,
    pub tests: Vec<TestReport>,
    /// What the run changed on a live service and could not undo (`--allow-writes`):
    /// successful calls of an operation that writes, which no declared delete covers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<String>,
    /// A dry run's plan: the requests the live run would send, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
}

/// How many tests passed, failed and were skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// `mock` or `live`.
    pub target: String,
    pub summary: Summary,
    pub tools: Vec<ToolReport>,
    /// Wall time of the run, in milliseconds.
    pub duration_ms: u64,
}

impl SuiteReport {
    /// Builds the report and its summary.
    pub fn new(target: &str, tools: Vec<ToolReport>, duration_ms: u64) -> Self {
        let mut summary = Summary::default();
        for test in tools.iter().flat_map(|tool| &tool.tests) {
            match test.outcome {
                Outcome::Pass { .. } => summary.passed += 1,
                Outcome::Fail { .. } => summary.failed += 1,
                Outcome::Skip { .. } => summary.skipped += 1,
            }
        }
        SuiteReport {
            target: target.to_string(),
            summary,
            tools,
            duration_ms,
        }
    }

    /// Whether any test failed (the CLI then exits 1).
    pub fn failed(&self) -> bool {
        self.summary.failed > 0
    }

    /// The outcome of one test of one tool.
    pub fn outcome(&self, tool: &str, test: TestKind) -> Option<&Outcome> {
        self.tools
            .iter()
            .find(|report| report.tool == tool)?
            .tests
            .iter()
            .find(|report| report.test == test)
            .map(|report| &report.outcome)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The readable summary: one line per test, evidence under each failure, the
    /// reason beside each skip.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for tool in &self.tools {
            let _ = writeln!(text, "{} ({}, {})", tool.tool, tool.source, tool.target);
            for left in &tool.left_behind {
                let _ = writeln!(text, "  left behind: {left}");
            }
            for test in &tool.tests {
                let mark = match test.outcome {
                    Outcome::Pass { .. } => "pass",
                    Outcome::Fail { .. } => "FAIL",
                    Outcome::Skip { .. } => "skip",
                };
                let _ = write!(text, "  {mark}  {:<10}", test.test.as_str());
                match &test.outcome {
                    Outcome::Pass { checks } => {
                        let _ = writeln!(text, " {} check(s)", checks.len());
                    }
                    Outcome::Skip { reason } => {
                        let _ = writeln!(text, " {reason}");
                    }
                    Outcome::Fail { evidence, passed } => {
                        let _ = writeln!(
                            text,
                            " {} problem(s), {} check(s) held",
                            evidence.len(),
                            passed.len()
                        );
                        text.push_str(&evidence_text(evidence, "        "));
                        for check in passed {
                            let _ = writeln!(text, "        + {check}");
                        }
                    }
                }
            }
        }
        let _ = writeln!(
            text,
            "{}: {} passed, {} failed, {} skipped ({} target, {} tool(s))",
            if self.failed() { "FAILED" } else { "ok" },
            self.summary.passed,
            self.summary.failed,
            self.summary.skipped,
            self.target,
            self.tools.len()
        );
        text
    }

    /// A dry run's plan: for each tool, the requests the live run would send, and the
    /// tests it would not run (with why).
    pub fn to_plan_text(&self) -> String {
        let mut text = String::new();
        for tool in &self.tools {
            let _ = writeln!(
                text,
                "{} ({}): the live run would send {} request(s) to {}",
                tool.tool,
                tool.source,
                tool.planned.len(),
                tool.target
            );
            for line in &tool.planned {
                let _ = writeln!(text, "  {line}");
            }
            for test in &tool.tests {
                if let Outcome::Skip { reason } = &test.outcome {
                    let _ = writeln!(text, "  not run: {} ({reason})", test.test.as_str());
                }
            }
        }
        let _ = writeln!(
            text,
            "dry run: nothing was sent ({} tool(s))",
            self.tools.len()
        );
        text
    }

    /// The report as JUnit XML: `<testsuites>` with one `<testsuite>` per tool and one
    /// `<testcase>` per test; a failure is `<failure>`, a skip `<skipped>`. See
    /// [`junit_xml`] for the schema it follows.
    pub fn to_junit(&self, timestamp: &str) -> String {
        let suites: Vec<JunitSuite> = self
            .tools
            .iter()
            .map(|tool| JunitSuite {
                name: tool.tool.clone(),
                properties: vec![
                    ("source".to_string(), tool.source.clone()),
                    ("target".to_string(), tool.target.clone()),
                ],
                cases: tool
                    .tests
                    .iter()
                    .map(|test| JunitCase {
                        name: test.test.as_str().to_string(),
                        classname: format!("agentc.conform.{}", tool.tool),
                        time_ms: test.duration_ms,
                        outcome: match &test.outcome {
                            Outcome::Pass { .. } => JunitOutcome::Pass,
                            Outcome::Skip { reason } => JunitOutcome::Skip(reason.clone()),
                            Outcome::Fail { evidence, .. } => JunitOutcome::Fail {
                                message: evidence
                                    .first()
                                    .map_or_else(String::new, |first| first.check.clone()),
                                kind: test.test.as_str().to_string(),
                                body: evidence_text(evidence, ""),
                            },
                        },
                    })
                    .collect(),
            })
            .collect();
        junit_xml("agentc conform", &suites, self.duration_ms, timestamp)
    }
}

/// Evidence as indented text, one block per item.
fn evidence_text(evidence: &[Evidence], indent: &str) -> String {
    let mut text = String::new();
    for item in evidence {
        let _ = writeln!(text, "{indent}- {}", item.check);
        // An HTTP exchange shows its status; a `tools/call` (AGX-M5) has none, and what
        // came back is in the detail, as is the reason an HTTP request got no answer.
        match (&item.request, item.status) {
            (Some(request), Some(status)) => {
                let _ = writeln!(text, "{indent}  request: {request} -> {status}");
            }
            (Some(request), None) => {
                let _ = writeln!(text, "{indent}  request: {request}");
            }
            (None, _) => {}
        }
        let _ = writeln!(text, "{indent}  {}", item.detail);
        if let Some(location) = &item.schema_location {
            let _ = writeln!(text, "{indent}  schema: {location}");
        }
    }
    text
}

/// One `<testsuite>` of a JUnit report.
pub struct JunitSuite {
    pub name: String,
    pub properties: Vec<(String, String)>,
    pub cases: Vec<JunitCase>,
}

/// One `<testcase>`.
pub struct JunitCase {
    pub name: String,
    pub classname: String,
    pub time_ms: u64,
    pub outcome: JunitOutcome,
}

pub enum JunitOutcome {
    Pass,
    Skip(String),
    Fail {
        message: String,
        kind: String,
        body: String,
    },
}

/// JUnit XML in the common schema: Jenkins' `junit-10.xsd`, with what the stricter Ant
/// schema (`JUnit.xsd`) also requires — on `<testsuite>`: `name`, `package`, `id`,
/// `tests`, `failures`, `errors`, `skipped`, `time` (decimal), `timestamp` and
/// `hostname`, and the children `properties`, `testcase*`, `system-out`, `system-err` in
/// that order; on `<testcase>`: `name`, `classname`, `time`; on `<failure>`: `message`
/// and `type`. `timestamp` is the caller's (reports are otherwise deterministic).
pub fn junit_xml(name: &str, suites: &[JunitSuite], total_ms: u64, timestamp: &str) -> String {
    let count = |suite: &JunitSuite, wanted: fn(&JunitOutcome) -> bool| {
        suite
            .cases
            .iter()
            .filter(|case| wanted(&case.outcome))
            .count()
    };
    let is_fail = |outcome: &JunitOutcome| matches!(outcome, JunitOutcome::Fail { .. });
    let is_skip = |outcome: &JunitOutcome| matches!(outcome, JunitOutcome::Skip(_));
    let tests: usize = suites.iter().map(|suite| suite.cases.len()).sum();
    let failures: usize = suites.iter().map(|suite| count(suite, is_fail)).sum();
    let skipped: usize = suites.iter().map(|suite| count(suite, is_skip)).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">",
        escape(name),
        seconds(total_ms)
    );
    for (index, suite) in suites.iter().enumerate() {
        let time: u64 = suite.cases.iter().map(|case| case.time_ms).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" package=\"agentc.conform\" id=\"{index}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\" hostname=\"localhost\">",
            escape(&suite.name),
            suite.cases.len(),
            count(suite, is_fail),
            count(suite, is_skip),
            seconds(time),
            escape(timestamp)
        );
        let _ = writeln!(xml, "    <properties>");
        for (key, value) in &suite.properties {
            let _ = writeln!(
                xml,
                "      <property name=\"{}\" value=\"{}\"/>",
                escape(key),
                escape(value)
            );
        }
        let _ = writeln!(xml, "    </properties>");
        for case in &suite.cases {
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                escape(&case.name),
                escape(&case.classname),
                seconds(case.time_ms)
            );
            match &case.outcome {
                JunitOutcome::Pass => {
                    let _ = writeln!(xml, "/>");
                }
                JunitOutcome::Skip(reason) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(reason)
                    );
                }
                JunitOutcome::Fail {
                    message,
                    kind,
                    body,
                } => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        escape(message),
                        escape(kind),
                        escape(body).replace("&#10;", "\n")
                    );
                }
            }
        }
        let _ = writeln!(xml, "    <system-out></system-out>");
        let _ = writeln!(xml, "    <system-err></system-err>");
        let _ = writeln!(xml, "  </testsuite>");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Milliseconds as decimal seconds (`xs:decimal`).
fn seconds(milliseconds: u64) -> String {
    format!("{}.{:03}", milliseconds / 1000, milliseconds % 1000)
}

/// Escapes text for an XML attribute or element; control characters that XML 1.0
/// cannot carry are replaced, so the document always parses.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\n' => escaped.push_str("&#10;"),
            '\t' => escaped.push_str("&#9;"),
            '\r' => escaped.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                escaped.push('\u{FFFD}');
            }
            c => escaped.push(c),
        }
    }
    escaped
}

//! `agentc replay`: recorded engagements through the current policies, with no model
//! and no tool (AGX-R1), so a team can see what a policy change would decide about
//! last week's traffic before deploying it.
//!
//! The trace file has one JSON object per line (`agentc_runtime::replay::Trace`); a line
//! that cannot be read or replayed is reported with its number, and the others still
//! replay. Reports are deterministic (no times in them); the speed goes to stderr.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use agentc_compiler::SourceInput;
use agentc_conformance::report::{JunitCase, JunitOutcome, JunitSuite, junit_xml};
use agentc_runtime::SpecSet;
use agentc_runtime::replay::{CallDecision, Decision, Replayer, Trace};
use serde::Serialize;

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// One line per call and a summary.
    Text,
    /// Every decision and the summary as one JSON document.
    Json,
    /// One test case per trace; a trace fails when a decision differs from its
    /// expectation or the trace could not be replayed.
    Junit,
}

/// What `agentc replay` was asked to do.
pub struct ReplayRequest<'a> {
    pub inputs: Vec<SourceInput>,
    pub traces: &'a Path,
    pub expect: bool,
    pub format: ReplayFormat,
}

/// One line of the trace file, replayed or not.
#[derive(Debug, Serialize)]
struct TraceReport {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    calls: Vec<CallDecision>,
}

/// The counts of a replay.
#[derive(Debug, Default, Serialize)]
struct Summary {
    traces: usize,
    unreadable: usize,
    calls: usize,
    allowed: usize,
    refused: usize,
    review: usize,
    tool_errors: usize,
    unexpected: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    traces: Vec<TraceReport>,
    summary: Summary,
}

/// Replays and prints the report. Exit 0 when every line replayed (and, with
/// `--expect`, every decision was the expected one), 1 otherwise, 2 on usage or IO
/// errors (specs with errors, an unreadable trace file).
pub fn replay(request: ReplayRequest<'_>) -> ExitCode {
    match replay_and_report(&request) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn replay_and_report(request: &ReplayRequest<'_>) -> Result<bool, String> {
    let set = crate::files::valid_set(
        &request.inputs,
        "the specs",
        "a policy with errors is never replayed",
    )?;
    let specs = SpecSet::from_checked_set(&set).map_err(|error| error.to_string())?;
    let replayer = Replayer::new(&specs).map_err(|error| error.to_string())?;
    let text = std::fs::read_to_string(request.traces)
        .map_err(|error| format!("cannot read `{}`: {error}", request.traces.display()))?;
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let report = match serde_json::from_str::<Trace>(line) {
            Err(error) => TraceReport {
                line: line_number,
                id: None,
                error: Some(format!("not a trace: {error}")),
                calls: Vec::new(),
            },
            Ok(trace) => match tokio_runtime.block_on(replayer.replay(&trace)) {
                Ok(calls) => TraceReport {
                    line: line_number,
                    id: Some(trace.id),
                    error: None,
                    calls,
                },
                Err(error) => TraceReport {
                    line: line_number,
                    id: Some(trace.id),
                    error: Some(error.to_string()),
                    calls: Vec::new(),
                },
            },
        };
        reports.push(report);
    }
    let elapsed = started.elapsed();
    let summary = summarise(&reports);
    let succeeded = summary.unreadable == 0 && (!request.expect || summary.unexpected == 0);
    let calls = summary.calls;
    let rendered = match request.format {
        ReplayFormat::Text => render_text(&reports, &summary, request.expect),
        ReplayFormat::Json => {
            let report = Report {
                traces: reports,
                summary,
            };
            let mut json =
                serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
            json.push('\n');
            json
        }
        ReplayFormat::Junit => render_junit(&reports, request.expect),
    };
    std::io::stdout()
        .write_all(rendered.as_bytes())
        .map_err(|error| error.to_string())?;
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        eprintln!(
            "replayed {calls} call(s) in {:.3} s ({:.0} calls/s)",
            seconds,
            calls as f64 / seconds
        );
    }
    Ok(succeeded)
}

fn summarise(reports: &[TraceReport]) -> Summary {
    let mut summary = Summary::default();
    for report in reports {
        if report.error.is_some() {
            summary.unreadable += 1;
            continue;
        }
        summary.traces += 1;
        for call in &report.calls {
            summary.calls += 1;
            match call.decision {
                Decision::Allowed => summary.allowed += 1,
                Decision::Refused => summary.refused += 1,
                Decision::Review => summary.review += 1,
            }
            summary.tool_errors += usize::from(call.tool_error);
            summary.unexpected += usize::from(call.differs());
        }
    }
    summary
}

fn describe(call: &CallDecision) -> String {
    let mut text = call.decision.as_str().to_string();
    if let Some(stage) = call.stage {
        let _ = write!(
            text,
            " {} {stage}",
            if call.decision == Decision::Refused {
                "at"
            } else {
                "by"
            }
        );
    }
    if let Some(reason) = &call.reason {
        let _ = write!(text, ": {reason}");
    }
    if call.tool_error {
        text.push_str(" (the recorded tool failed)");
    }
    text
}

fn render_text(reports: &[TraceReport], summary: &Summary, expect: bool) -> String {
    let mut text = String::new();
    for report in reports {
        match (&report.id, &report.error) {
            (id, Some(error)) => {
                let _ = writeln!(
                    text,
                    "line {}{}: error: {error}",
                    report.line,
                    id.as_deref()
                        .map(|id| format!(" ({id})"))
                        .unwrap_or_default()
                );
            }
            (id, None) => {
                let _ = writeln!(text, "{}", id.as_deref().unwrap_or_default());
                for call in &report.calls {
                    let mark = match call.expected {
                        Some(expected) if expect && call.differs() => {
                            format!("  [expected {}]", expected.as_str())
                        }
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        text,
                        "  #{} {}: {}{mark}",
                        call.index,
                        call.name,
                        describe(call)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        text,
        "\n{} trace(s), {} call(s): {} allowed, {} refused, {} sent to review ({} recorded tool error(s)); {} unreadable line(s){}",
        summary.traces,
        summary.calls,
        summary.allowed,
        summary.refused,
        summary.review,
        summary.tool_errors,
        summary.unreadable,
        if expect {
            format!("; {} decision(s) not as expected", summary.unexpected)
        } else {
            String::new()
        }
    );
    text
}

fn render_junit(reports: &[TraceReport], expect: bool) -> String {
    let cases = reports
        .iter()
        .map(|report| {
            let name = report
                .id
                .clone()
                .unwrap_or_else(|| format!("line {}", report.line));
            let outcome = match &report.error {
                Some(error) => JunitOutcome::Fail {
                    message: error.clone(),
                    kind: "unreadable".to_string(),
                    body: format!("line {}: {error}", report.line),
                },
                None => {
                    let differing: Vec<String> = report
                        .calls
                        .iter()
                        .filter(|call| expect && call.differs())
                        .map(|call| {
                            format!(
                                "#{} {}: {} (expected {})",
                                call.index,
                                call.name,
                                describe(call),
                                call.expected.map_or("", Decision::as_str)
                            )
                        })
                        .collect();
                    if differing.is_empty() {
                        JunitOutcome::Pass
                    } else {
                        JunitOutcome::Fail {
                            message: format!("{} decision(s) not as expected", differing.len()),
                            kind: "decision".to_string(),
                            body: differing.join("\n"),
                        }
                    }
                }
            };
            JunitCase {
                name,
                classname: "agentc.replay".to_string(),
                time_ms: 0,
                outcome,
            }
        })
        .collect();
    let suites = [JunitSuite {
        name: "agentc replay".to_string(),
        properties: Vec::new(),
        cases,
    }];
    junit_xml("agentc replay", &suites, 0, "1970-01-01T00:00:00")
}

//! `agentc conform`: the seven agent-readiness tests (discovery, auth, CRUD, error, rate
//! limit, pitfall, skill) on the tools of a set of specs, against mocks started from the
//! tool documents (`--target mock`) or the live services (`--target live`); and, with
//! `--runtime`, the OpenAgentSpec behaviour cases run on the runtime.
//!
//! Output: a progress bar on stderr while it runs (only on a terminal), then the
//! readable summary. `--report json|junit` writes a machine report to `--report-file`
//! (the summary still goes to stdout) or, without it, to stdout (the summary then goes
//! to stderr). Exit 0 when nothing failed, 1 when any test failed, 2 on usage or IO
//! errors.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentc_conformance::behaviour::{load_case_files, run_case_files};
use agentc_conformance::{ProgressEvent, SuiteOptions, Target, load_tools};
use clap::ValueEnum;

/// Where the tests run.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TargetChoice {
    /// A mock per tool, started from its tool document.
    Mock,
    /// The real service (the declared URL, or `--base-url`), credentials from the environment.
    Live,
}

/// The machine-readable report.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Json,
    Junit,
}

/// What `agentc conform` was asked to do.
pub struct ConformRequest<'a> {
    pub paths: &'a [PathBuf],
    pub target: TargetChoice,
    pub base_url: Option<&'a str>,
    pub report: Option<ReportFormat>,
    pub report_file: Option<&'a Path>,
    pub runtime: bool,
    pub max_retry_after: u64,
    /// `--allow-writes`: a live run may send requests that can change the service.
    pub allow_writes: bool,
    /// `--dry-run`: print what a live run would send, send nothing.
    pub dry_run: bool,
}

pub fn conform(request: &ConformRequest<'_>) -> ExitCode {
    match conform_inner(request) {
        Ok(failed) => {
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The bundled behaviour cases of the checkout this binary was built from.
fn bundled_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance-suite/cases")
}

/// When the report is generated: RFC 3339, UTC, to the second.
fn timestamp() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

fn conform_inner(request: &ConformRequest<'_>) -> Result<bool, String> {
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let (summary, report, failed) = if request.runtime {
        let paths = if request.paths.is_empty() {
            vec![bundled_cases()]
        } else {
            request.paths.to_vec()
        };
        let files = load_case_files(&paths).map_err(|error| error.to_string())?;
        if files.is_empty() {
            return Err("no case files (.yaml) found in the given paths".to_string());
        }
        let total: usize = files.iter().map(|file| file.file.cases.len()).sum();
        let bar = progress_bar(u64::try_from(total).unwrap_or(0));
        bar.set_message("OpenAgentSpec behaviour cases");
        let report = tokio_runtime.block_on(run_case_files(&files));
        bar.finish_and_clear();
        let machine = request.report.map(|format| match format {
            ReportFormat::Json => report.to_json(),
            ReportFormat::Junit => report.to_junit(&timestamp()),
        });
        (report.to_text(), machine, report.failed())
    } else {
        if request.paths.is_empty() {
            return Err("name the spec files or directories whose tools to test".to_string());
        }
        let inputs = crate::files::collect_inputs(request.paths)?;
        if inputs.is_empty() {
            return Err("no .yaml, .yml or .json files found in the given paths".to_string());
        }
        let tools = load_tools(&inputs).map_err(|error| error.to_string())?;
        if tools.is_empty() {
            return Err("the specs hold no tool documents".to_string());
        }
        let target = match request.target {
            TargetChoice::Mock => {
                if request.base_url.is_some() {
                    return Err("`--base-url` is for `--target live`".to_string());
                }
                if request.allow_writes {
                    return Err(
                        "`--allow-writes` is for `--target live`: a mock may always be written to"
                            .to_string(),
                    );
                }
                if request.dry_run {
                    return Err("`--dry-run` is for `--target live`".to_string());
                }
                Target::mock()
            }
            TargetChoice::Live => Target::live(request.base_url.map(str::to_string)),
        };
        let options = SuiteOptions {
            max_retry_after: Duration::from_secs(request.max_retry_after),
            allow_writes: request.allow_writes,
            dry_run: request.dry_run,
            ..SuiteOptions::default()
        };
        let bar = progress_bar(u64::try_from(tools.len() * 7).unwrap_or(0));
        let shown = bar.clone();
        let progress = Arc::new(move |event: ProgressEvent| {
            shown.set_message(format!("{} {}", event.tool, event.test.as_str()));
            shown.inc(1);
        });
        let report = tokio_runtime.block_on(agentc_conformance::run_suite_with_progress(
            &tools, &target, &options, progress,
        ));
        bar.finish_and_clear();
        if request.dry_run {
            // A plan, not a verdict: the mocks' outcomes say nothing about the service.
            return print_text(&report.to_plan_text(), false).map(|()| false);
        }
        let machine = request.report.map(|format| match format {
            ReportFormat::Json => report.to_json(),
            ReportFormat::Junit => report.to_junit(&timestamp()),
        });
        (report.to_text(), machine, report.failed())
    };
    match (report, request.report_file) {
        (Some(report), Some(path)) => {
            std::fs::write(path, report)
                .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
            print_text(&summary, false)?;
        }
        (Some(report), None) => {
            // stdout holds the machine report; stderr gets the one-line verdict only.
            let verdict = summary.lines().last().unwrap_or_default();
            print_text(&format!("{verdict}\n"), true)?;
            print_text(&report, false)?;
        }
        (None, _) => print_text(&summary, false)?,
    }
    Ok(failed)
}

fn print_text(text: &str, to_stderr: bool) -> Result<(), String> {
    let written = if to_stderr {
        write!(std::io::stderr(), "{text}")
    } else {
        write!(std::io::stdout(), "{text}")
    };
    match written {
        Ok(()) => Ok(()),
        // A closed pipe (`agentc conform ... | head`) is not a failure of the run.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(format!("cannot print: {error}")),
    }
}

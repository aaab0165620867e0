//! `agentc traces --db FILE`: the engagements a server kept (`agentc serve --db`),
//! written as replayable traces (AGX-R1), so that a team can replay last week's real
//! traffic against a policy change before deploying it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use agentc_runtime::replay::Trace;
use agentc_server::{SqliteStore, Store};

/// Every state an engagement can be stored in.
const STATES: &[&str] = &[
    "created",
    "awaiting_model",
    "awaiting_tool",
    "awaiting_review",
    "awaiting_user_input",
    "completed",
    "failed",
];

/// Writes one trace line per stored engagement to stdout, oldest first (then by id, so
/// the output is the same for the same database), only those of `agent` when given.
/// Exit 0, or 2 when the database cannot be read.
pub fn export(db: &Path, agent: Option<&str>) -> ExitCode {
    match write_traces(db, agent) {
        Ok((written, without_state)) => {
            eprintln!("{written} trace(s) written");
            if without_state > 0 {
                eprintln!(
                    "{without_state} engagement(s) skipped: the database keeps no state for them"
                );
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn write_traces(db: &Path, agent: Option<&str>) -> Result<(usize, usize), String> {
    // Opening creates a missing database; exporting from one that is not there is a
    // mistake in the path, not an empty export.
    if !db.is_file() {
        return Err(format!("no database at `{}`", db.display()));
    }
    let store = SqliteStore::open(db).map_err(|error| error.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| error.to_string())?;
    let mut records = runtime
        .block_on(store.engagements_in_states(STATES))
        .map_err(|error| error.to_string())?;
    records.retain(|record| agent.is_none_or(|agent| record.agent == agent));
    records.sort_by(|left, right| {
        (left.created_at_ms, &left.id).cmp(&(right.created_at_ms, &right.id))
    });
    let mut stdout = std::io::stdout().lock();
    let (mut written, mut without_state) = (0, 0);
    for record in &records {
        let Some(snapshot) = &record.snapshot else {
            without_state += 1;
            continue;
        };
        let line = serde_json::to_string(&Trace::from_state(&snapshot.engagement))
            .map_err(|error| error.to_string())?;
        writeln!(stdout, "{line}").map_err(|error| error.to_string())?;
        written += 1;
    }
    Ok((written, without_state))
}

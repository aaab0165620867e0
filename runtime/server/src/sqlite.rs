//! The embedded store: one SQLite file, created on first start (WAL journal, so reads
//! do not wait for writes). Values the runtime defines (status, snapshot, exposes) are
//! kept as JSON text; what is looked up (identifiers, state, reviewer) has a column.
//!
//! Writes go through one connection with group commit ([`group_commit`]): the writes
//! that queue up while one transaction runs are committed together in the next.
//! Reads use connections of their own, so they neither wait for a commit nor hold up
//! the writes.

mod group_commit;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use group_commit::GroupCommit;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{
    EngagementRecord, ReviewRecord, SETTLED_STATES, Store, StoreError, StoreNotification,
    StoredDecision, decided_review, fenced, from_json, state_of, to_json,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS engagements (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    user_json TEXT NOT NULL,
    state TEXT NOT NULL,
    status_json TEXT NOT NULL,
    text TEXT,
    exposes_json TEXT NOT NULL,
    snapshot_json TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    fence INTEGER NOT NULL DEFAULT 0,
    pending_input TEXT
);
CREATE INDEX IF NOT EXISTS engagements_state ON engagements(state);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    heartbeat_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY,
    engagement TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    call_hash TEXT NOT NULL,
    stage TEXT NOT NULL,
    decided INTEGER NOT NULL DEFAULT 0,
    consumed INTEGER NOT NULL DEFAULT 0,
    record_json TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_engagement ON reviews(engagement);
CREATE INDEX IF NOT EXISTS reviews_reviewer ON reviews(reviewer, decided);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    engagement TEXT NOT NULL,
    line TEXT NOT NULL
);
"#;

/// The SQLite store.
pub struct SqliteStore {
    writer: GroupCommit,
    readers: Readers,
    /// Fault injection for crash tests: the next `take_decision` fails between its two
    /// statements, inside its transaction.
    fail_take_midway: Arc<AtomicBool>,
}

/// Where reads run.
enum Readers {
    /// Read-only connections to the file, opened when needed and kept for reuse (WAL
    /// lets them read the last commit while a transaction writes).
    File {
        path: PathBuf,
        idle: Mutex<Vec<Connection>>,
    },
    /// The write connection: a database in memory is seen by no other.
    WriteConnection,
}

/// At most this many idle read connections are kept.
const MOST_IDLE_READERS: usize = 8;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SqliteStore")
    }
}

fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

/// A text value for a statement.
fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Runs one statement, prepared once per connection; says how many rows it changed.
fn execute(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute(parameters))
        .map_err(database)
}

/// A read-only connection to the database at `path`.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(database)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(database)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(connection)
}

/// Statements kept prepared per connection: more than the store has (about twenty on
/// the write connection), so none is prepared twice (rusqlite keeps 16 by default).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Columns added after the first release, with their definitions: a database made
/// before them gets them at open.
const ADDED_ENGAGEMENT_COLUMNS: &[(&str, &str)] = &[
    ("owner", "TEXT NOT NULL DEFAULT ''"),
    ("fence", "INTEGER NOT NULL DEFAULT 0"),
    ("pending_input", "TEXT"),
];

/// An engagement's row as read, before its JSON is parsed.
struct EngagementRow {
    id: String,
    agent: String,
    user: String,
    status: String,
    text: Option<String>,
    exposes: String,
    snapshot: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    owner: String,
    fence: i64,
    pending_input: Option<String>,
}

const ENGAGEMENT_COLUMNS: &str = "id, agent, user_json, status_json, text, exposes_json, snapshot_json, created_at_ms, updated_at_ms, owner, fence, pending_input";

/// The same columns with no snapshot in its place.
const SUMMARY_COLUMNS: &str = "id, agent, user_json, status_json, text, exposes_json, NULL, created_at_ms, updated_at_ms, owner, fence, pending_input";

fn engagement_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EngagementRow> {
    Ok(EngagementRow {
        id: row.get(0)?,
        agent: row.get(1)?,
        user: row.get(2)?,
        status: row.get(3)?,
        text: row.get(4)?,
        exposes: row.get(5)?,
        snapshot: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
        owner: row.get(9)?,
        fence: row.get(10)?,
        pending_input: row.get(11)?,
    })
}

fn engagement_from_row(row: EngagementRow) -> Result<EngagementRecord, StoreError> {
    Ok(EngagementRecord {
        id: row.id,
        agent: row.agent,
        user: from_json(&row.user)?,
        status: from_json(&row.status)?,
        text: row.text,
        exposes: from_json(&row.exposes)?,
        snapshot: row.snapshot.as_deref().map(from_json).transpose()?,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        owner: row.owner,
        fence: row.fence,
        pending_input: row.pending_input,
    })
}

/// `?N, ?N+1, …` for `count` parameters from `first`.
fn placeholders(first: usize, count: usize) -> String {
    (0..count)
        .map(|index| format!("?{}", first + index))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the audit trail of the database at `path` to `out` as JSON lines, in order,
/// as `agentc audit verify` reads them; says how many. The database is opened read-only
/// and must exist: nothing is created or changed.
pub fn export_audit(path: &Path, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
    let connection = open_reader(path)?;
    let mut statement = connection
        .prepare("SELECT line FROM audit ORDER BY seq")
        .map_err(database)?;
    let mut rows = statement.query([]).map_err(database)?;
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(database)? {
        let line: String = row.get(0).map_err(database)?;
        // One entry per line: a stored line with a line break in it would be read
        // as two, so it is refused rather than exported.
        if line.contains(['\n', '\r']) {
            return Err(StoreError::Corrupt(format!(
                "audit entry {count} spans several lines"
            )));
        }
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(database)?;
        count += 1;
    }
    out.flush().map_err(database)?;
    Ok(count)
}

/// Adds the columns a database made by an earlier version lacks.
fn add_missing_columns(connection: &Connection) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare("SELECT name FROM pragma_table_info('engagements')")
        .map_err(database)?;
    let present = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(database)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(database)?;
    let upgrading = !present.iter().any(|name| name == "fence");
    for (column, definition) in ADDED_ENGAGEMENT_COLUMNS {
        if !present.iter().any(|name| name == column) {
            connection
                .execute_batch(&format!(
                    "ALTER TABLE engagements ADD COLUMN {column} {definition}"
                ))
                .map_err(database)?;
        }
    }
    // A database of the version before the call journal (AGX-T2): what it has as
    // running was not journaled, so it cannot be resumed faithfully. It fails as
    // interrupted, as that version would have at its next start.
    if upgrading {
        let status = to_json(&serde_json::json!({
            "state": "failed",
            "reason": {
                "kind": "interrupted",
                "detail": "the server stopped before the engagement reached a safe point",
            },
        }))?;
        connection
            .execute(
                "UPDATE engagements SET state = 'failed', status_json = ?1 WHERE state IN ('running', 'created')",
                params![status],
            )
            .map_err(database)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating on first start) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::from_connection(
            Connection::open(path).map_err(database)?,
            Readers::File {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            },
        )
    }

    /// A database in memory (tests that need no restart).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(
            Connection::open_in_memory().map_err(database)?,
            Readers::WriteConnection,
        )
    }

    fn from_connection(connection: Connection, readers: Readers) -> Result<Self, StoreError> {
        // WAL keeps readers off the writer's back; NORMAL syncs at checkpoints, which
        // in WAL mode still never corrupts the database on a crash. A file that cannot
        // be put in WAL mode (some network file systems) is refused: its readers and
        // commits would wait for each other.
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(database)?;
        if matches!(readers, Readers::File { .. }) && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "the database cannot be put in WAL mode (its journal mode stays `{mode}`)"
            )));
        }
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(database)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(database)?;
        connection.execute_batch(SCHEMA).map_err(database)?;
        add_missing_columns(&connection)?;
        Ok(SqliteStore {
            writer: GroupCommit::new(connection),
            readers,
            fail_take_midway: Arc::new(AtomicBool::new(false)),
        })
    }

    /// For crash tests: makes the next [`Store::take_decision`] fail after its first
    /// statement, inside its transaction, as a crash at that point would.
    #[doc(hidden)]
    pub fn fail_next_take_decision_midway(&self) {
        self.fail_take_midway.store(true, Ordering::SeqCst);
    }

    /// Runs one statement with `values` in the next transaction; says how many rows
    /// it changed.
    async fn write_statement(
        &self,
        sql: &'static str,
        values: Vec<Value>,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |connection| execute(connection, sql, rusqlite::params_from_iter(values)))
            .await
    }

    /// Runs `work` on a connection that reads the last commit.
    fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (path, idle) = match &self.readers {
            Readers::WriteConnection => return self.writer.with_connection(work),
            Readers::File { path, idle } => (path, idle),
        };
        let reused = idle
            .lock()
            .map_err(|_| StoreError::Database("the reader lock is poisoned".into()))?
            .pop();
        let connection = match reused {
            Some(connection) => connection,
            None => open_reader(path)?,
        };
        let result = work(&connection);
        if let Ok(mut idle) = idle.lock()
            && idle.len() < MOST_IDLE_READERS
        {
            idle.push(connection);
        }
        result
    }

    /// One engagement, read with `columns` (with or without its snapshot).
    fn engagement_with(
        &self,
        columns: &str,
        id: &str,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        let row = self.read(|connection| {
            connection
                .prepare_cached(&format!("SELECT {columns} FROM engagements WHERE id = ?1"))
                .and_then(|mut statement| {
                    statement.query_row(params![id], engagement_row).optional()
                })
                .map_err(database)
        })?;
        row.map(engagement_from_row).transpose()
    }

    fn reviews_where(
        &self,
        clause: &str,
        parameters: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT record_json, decided, consumed FROM reviews WHERE {clause} ORDER BY created_at_ms, rowid"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(parameters, |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .map_err(database)?;
            let mut reviews = Vec::new();
            for row in rows {
                let (json, _, consumed) = row.map_err(database)?;
                let mut review: ReviewRecord = from_json(&json)?;
                review.consumed = consumed != 0;
                reviews.push(review);
            }
            Ok(reviews)
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn is_shared(&self) -> bool {
        false
    }

    async fn heartbeat(&self, instance: &str, now_ms: i64) -> Result<(), StoreError> {
        self.write_statement(
            "INSERT INTO instances (id, heartbeat_ms) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
            vec![text(instance), now_ms.into()],
        )
        .await
        .map(drop)
    }

    async fn retire_instance(&self, instance: &str) -> Result<(), StoreError> {
        self.write_statement("DELETE FROM instances WHERE id = ?1", vec![text(instance)])
            .await
            .map(drop)
    }

    async fn live_instances(&self, alive_since_ms: i64) -> Result<usize, StoreError> {
        let count: i64 = self.read(|connection| {
            connection
                .query_row(
                    "SELECT COUNT(*) FROM instances WHERE heartbeat_ms >= ?1",
                    params![alive_since_ms],
                    |row| row.get(0),
                )
                .map_err(database)
        })?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn orphaned_engagements(
        &self,
        instance: &str,
        expired_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let settled = placeholders(4, SETTLED_STATES.len());
        let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&instance, &expired_before_ms, &limit];
        for state in SETTLED_STATES {
            parameters.push(state);
        }
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT e.id, e.fence FROM engagements e LEFT JOIN instances i ON i.id = e.owner \
                     WHERE e.owner <> ?1 AND e.state NOT IN ({settled}) \
                     AND (i.id IS NULL OR i.heartbeat_ms < ?2) \
                     ORDER BY e.created_at_ms, e.id LIMIT ?3"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(parameters.as_slice(), |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(database)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database)?;
            Ok(rows)
        })
    }

    async fn claim_engagement(
        &self,
        id: &str,
        instance: &str,
        seen_fence: i64,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        // The update and the read in one statement, so that no other claim comes
        // between them and the claimer reads back the fence it took.
        let (id, instance) = (id.to_string(), instance.to_string());
        let row = self
            .writer
            .write(move |connection| {
                connection
                    .prepare_cached(&format!(
                        "UPDATE engagements SET owner = ?2, fence = fence + 1 WHERE id = ?1 AND fence = ?3 RETURNING {ENGAGEMENT_COLUMNS}"
                    ))
                    .and_then(|mut statement| {
                        statement
                            .query_row(params![id, instance, seen_fence], engagement_row)
                            .optional()
                    })
                    .map_err(database)
            })
            .await?;
        row.map(engagement_from_row).transpose()
    }

    async fn owned_engagements(&self, instance: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let settled = placeholders(2, SETTLED_STATES.len());
        let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&instance];
        for state in SETTLED_STATES {
            parameters.push(state);
        }
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT id, fence FROM engagements WHERE owner = ?1 AND state NOT IN ({settled})"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(parameters.as_slice(), |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(database)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database)?;
            Ok(rows)
        })
    }

    async fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let values = (
            to_json(&record.user)?,
            to_json(&record.status)?,
            to_json(&record.exposes)?,
        );
        self.write_statement(
            "INSERT INTO engagements (id, agent, user_json, state, status_json, text, exposes_json, snapshot_json, created_at_ms, updated_at_ms, owner, fence, pending_input) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            vec![
                text(&record.id),
                text(&record.agent),
                values.0.into(),
                text(record.state()),
                values.1.into(),
                record.text.clone().into(),
                values.2.into(),
                snapshot.into(),
                record.created_at_ms.into(),
                record.updated_at_ms.into(),
                text(&record.owner),
                record.fence.into(),
                record.pending_input.clone().into(),
            ],
        )
        .await
        .map(drop)
    }

    async fn update_engagement(
        &self,
        record: &EngagementRecord,
        fence: i64,
    ) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let status = to_json(&record.status)?;
        let exposes = to_json(&record.exposes)?;
        let changed = self
            .write_statement(
                "UPDATE engagements SET state = ?2, status_json = ?3, text = ?4, exposes_json = ?5, snapshot_json = COALESCE(?6, snapshot_json), updated_at_ms = ?7, pending_input = NULL WHERE id = ?1 AND fence = ?8",
                vec![
                    text(&record.id),
                    text(record.state()),
                    status.into(),
                    record.text.clone().into(),
                    exposes.into(),
                    snapshot.into(),
                    record.updated_at_ms.into(),
                    fence.into(),
                ],
            )
            .await?;
        fenced(changed as u64, &record.id)
    }

    async fn set_status(
        &self,
        id: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        let changed = self
            .write_statement(
                "UPDATE engagements SET state = ?2, status_json = ?3, updated_at_ms = ?4 WHERE id = ?1 AND fence = ?5",
                vec![
                    text(id),
                    Value::Text(state_of(status)),
                    to_json(status)?.into(),
                    crate::store::now_ms().into(),
                    fence.into(),
                ],
            )
            .await?;
        fenced(changed as u64, id)
    }

    async fn set_pending_input(
        &self,
        id: &str,
        status: &serde_json::Value,
        input: &str,
        fence: i64,
    ) -> Result<(), StoreError> {
        let changed = self
            .write_statement(
                "UPDATE engagements SET state = ?2, status_json = ?3, pending_input = ?4, updated_at_ms = ?5 WHERE id = ?1 AND fence = ?6",
                vec![
                    text(id),
                    Value::Text(state_of(status)),
                    to_json(status)?.into(),
                    text(input),
                    crate::store::now_ms().into(),
                    fence.into(),
                ],
            )
            .await?;
        fenced(changed as u64, id)
    }

    async fn save_snapshot(
        &self,
        id: &str,
        snapshot: &agentc_runtime::EngagementSnapshot,
        fence: i64,
    ) -> Result<(), StoreError> {
        let changed = self
            .write_statement(
                "UPDATE engagements SET snapshot_json = ?2, pending_input = NULL, updated_at_ms = ?3 WHERE id = ?1 AND fence = ?4",
                vec![
                    text(id),
                    to_json(snapshot)?.into(),
                    crate::store::now_ms().into(),
                    fence.into(),
                ],
            )
            .await?;
        fenced(changed as u64, id)
    }

    async fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.engagement_with(ENGAGEMENT_COLUMNS, id)
    }

    async fn engagement_summary(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.engagement_with(SUMMARY_COLUMNS, id)
    }

    async fn engagements_in_states(
        &self,
        states: &[&str],
    ) -> Result<Vec<EngagementRecord>, StoreError> {
        let mut records = Vec::new();
        for state in states {
            let rows = self.read(|connection| {
                let mut statement = connection
                    .prepare_cached(&format!(
                        "SELECT {ENGAGEMENT_COLUMNS} FROM engagements WHERE state = ?1 ORDER BY created_at_ms, id"
                    ))
                    .map_err(database)?;
                let rows = statement
                    .query_map(params![state], engagement_row)
                    .map_err(database)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(database)?;
                Ok(rows)
            })?;
            for row in rows {
                records.push(engagement_from_row(row)?);
            }
        }
        Ok(records)
    }

    async fn insert_review(&self, review: &ReviewRecord) -> Result<(), StoreError> {
        self.write_statement(
            "INSERT INTO reviews (id, engagement, reviewer, call_hash, stage, decided, consumed, record_json, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            vec![
                text(&review.id),
                text(&review.engagement),
                text(&review.reviewer),
                text(&review.call_hash),
                text(&review.stage),
                i64::from(review.decision.is_some()).into(),
                i64::from(review.consumed).into(),
                to_json(review)?.into(),
                review.created_at_ms.into(),
            ],
        )
        .await
        .map(drop)
    }

    async fn review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(self.reviews_where("id = ?1", &[&id])?.into_iter().next())
    }

    async fn open_review(
        &self,
        engagement: &str,
        call_hash: &str,
        stage: &str,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(self
            .reviews_where(
                "engagement = ?1 AND call_hash = ?2 AND stage = ?3 AND consumed = 0",
                &[&engagement, &call_hash, &stage],
            )?
            .into_iter()
            .last())
    }

    async fn decide_review(&self, id: &str, decision: &StoredDecision) -> Result<bool, StoreError> {
        let Some((json, _)) = decided_review(self.review(id).await?, decision)? else {
            return Ok(false);
        };
        // `decided = 0` in the condition makes the decision once-only even if two
        // reviewers answer at the same moment.
        let changed = self
            .write_statement(
                "UPDATE reviews SET decided = 1, record_json = ?2 WHERE id = ?1 AND decided = 0",
                vec![text(id), json.into()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn consume_review(&self, id: &str) -> Result<(), StoreError> {
        self.write_statement(
            "UPDATE reviews SET consumed = 1 WHERE id = ?1",
            vec![text(id)],
        )
        .await
        .map(drop)
    }

    async fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        let state = state_of(status).to_string();
        let status = to_json(status)?;
        let (review, engagement) = (review.to_string(), engagement.to_string());
        let fail_midway = Arc::clone(&self.fail_take_midway);
        self.writer
            .write(move |connection| {
                // One job, so one savepoint: any error rolls both statements back.
                let consumed = execute(
                    connection,
                    "UPDATE reviews SET consumed = 1 WHERE id = ?1 AND decided = 1 AND consumed = 0",
                    params![review],
                )?;
                if consumed != 1 {
                    return Err(StoreError::Database(format!(
                        "review `{review}` is not decided, or its decision was taken already"
                    )));
                }
                if fail_midway.swap(false, Ordering::SeqCst) {
                    return Err(StoreError::Database("injected fault".into()));
                }
                let updated = execute(
                    connection,
                    "UPDATE engagements SET state = ?2, status_json = ?3, updated_at_ms = ?4 WHERE id = ?1 AND fence = ?5",
                    params![engagement, state, status, crate::store::now_ms(), fence],
                )?;
                fenced(updated as u64, &engagement)
            })
            .await
    }

    async fn reviews_of(&self, engagement: &str) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where("engagement = ?1", &[&engagement])
    }

    async fn pending_reviews_for(
        &self,
        reviewers: &[&str],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let mut reviews = Vec::new();
        for reviewer in reviewers {
            reviews.extend(self.reviews_where("reviewer = ?1 AND decided = 0", &[reviewer])?);
        }
        reviews.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        reviews.dedup_by(|a, b| a.id == b.id);
        Ok(reviews)
    }

    async fn pending_reviews_page(
        &self,
        reviewers: &[&str],
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        if reviewers.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let placeholders = placeholders(4, reviewers.len());
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, ""));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&after_ms, &after_id, &limit];
        for reviewer in reviewers {
            parameters.push(reviewer);
        }
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT record_json, consumed FROM reviews \
                     WHERE reviewer IN ({placeholders}) AND decided = 0 \
                     AND json_extract(record_json, '$.reviewer_is_agent') = 0 \
                     AND (created_at_ms > ?1 OR (created_at_ms = ?1 AND id > ?2)) \
                     ORDER BY created_at_ms, id LIMIT ?3"
                ))
                .map_err(database)?;
            let rows = statement
                .query_map(parameters.as_slice(), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(database)?;
            let mut reviews = Vec::new();
            for row in rows {
                let (json, consumed) = row.map_err(database)?;
                let mut review: ReviewRecord = from_json(&json)?;
                review.consumed = consumed != 0;
                reviews.push(review);
            }
            Ok(reviews)
        })
    }

    async fn decided_reviews_owned_by(
        &self,
        instance: &str,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where(
            "decided = 1 AND consumed = 0 AND engagement IN (SELECT id FROM engagements WHERE owner = ?1 AND state = 'awaiting_review')",
            &[&instance],
        )
    }

    async fn notifications(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<StoreNotification>>, StoreError> {
        // One process uses this store: its waiters hear of decisions directly.
        Ok(None)
    }

    fn append_audit(
        &self,
        _chain: &str,
        seq: u64,
        engagement: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        // One process writes this store, so it has one chain, continued across restarts.
        let seq = i64::try_from(seq).map_err(database)?;
        let (engagement, line) = (engagement.to_string(), line.to_string());
        self.writer.write_blocking(move |connection| {
            execute(
                connection,
                "INSERT INTO audit (seq, engagement, line) VALUES (?1, ?2, ?3)",
                params![seq, engagement, line],
            )?;
            Ok(())
        })
    }

    async fn audit_head(&self, _chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        let line: Option<String> = self.read(|connection| {
            connection
                .query_row(
                    "SELECT line FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database)
        })?;
        line.as_deref().map(crate::store::chain_head).transpose()
    }

    async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        let any: Option<i64> = self.read(|connection| {
            connection
                .query_row("SELECT seq FROM audit LIMIT 1", [], |row| row.get(0))
                .optional()
                .map_err(database)
        })?;
        Ok(any
            .map(|_| vec![crate::store::SINGLE_CHAIN.to_string()])
            .unwrap_or_default())
    }

    async fn audit_lines(&self, _chain: &str) -> Result<Vec<String>, StoreError> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT line FROM audit ORDER BY seq")
                .map_err(database)?;
            let lines = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(database)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(database)?;
            Ok(lines)
        })
    }
}

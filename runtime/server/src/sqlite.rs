//! The embedded store: one SQLite file, created on first start (WAL journal, so reads
//! do not wait for writes). Values the runtime defines (status, snapshot, exposes) are
//! kept as JSON text; what is looked up (identifiers, state, reviewer) has a column.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{EngagementRecord, ReviewRecord, Store, StoreError, StoredDecision};

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
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS engagements_state ON engagements(state);
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
    connection: Mutex<Connection>,
    /// Fault injection for crash tests: the next `take_decision` fails between its two
    /// statements, inside its transaction.
    fail_take_midway: AtomicBool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SqliteStore")
    }
}

fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

type EngagementRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    i64,
);

const ENGAGEMENT_COLUMNS: &str = "id, agent, user_json, status_json, text, exposes_json, snapshot_json, created_at_ms, updated_at_ms";

fn engagement_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EngagementRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn engagement_from_row(row: EngagementRow) -> Result<EngagementRecord, StoreError> {
    let (id, agent, user, status, text, exposes, snapshot, created_at_ms, updated_at_ms) = row;
    Ok(EngagementRecord {
        id,
        agent,
        user: from_json(&user)?,
        status: from_json(&status)?,
        text,
        exposes: from_json(&exposes)?,
        snapshot: snapshot.as_deref().map(from_json).transpose()?,
        created_at_ms,
        updated_at_ms,
    })
}

/// Writes the audit trail of the database at `path` to `out` as JSON lines, in order,
/// as `agentc audit verify` reads them; says how many. The database is opened read-only
/// and must exist: nothing is created or changed.
pub fn export_audit(path: &Path, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
    use rusqlite::OpenFlags;
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(database)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(database)?;
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

impl SqliteStore {
    /// Opens (creating on first start) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::from_connection(Connection::open(path).map_err(database)?)
    }

    /// A database in memory (tests that need no restart).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory().map_err(database)?)
    }

    fn from_connection(connection: Connection) -> Result<Self, StoreError> {
        // WAL keeps readers off the writer's back; NORMAL syncs at checkpoints, which
        // in WAL mode still never corrupts the database on a crash.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(database)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(database)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(database)?;
        connection.execute_batch(SCHEMA).map_err(database)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            fail_take_midway: AtomicBool::new(false),
        })
    }

    /// For crash tests: makes the next [`Store::take_decision`] fail after its first
    /// statement, inside its transaction, as a crash at that point would.
    #[doc(hidden)]
    pub fn fail_next_take_decision_midway(&self) {
        self.fail_take_midway.store(true, Ordering::SeqCst);
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self
            .connection
            .lock()
            .map_err(|_| StoreError::Database("the connection lock is poisoned".into()))?;
        work(&connection)
    }

    fn reviews_where(
        &self,
        clause: &str,
        parameters: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        self.with(|connection| {
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

impl Store for SqliteStore {
    fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let values = (
            to_json(&record.user)?,
            to_json(&record.status)?,
            to_json(&record.exposes)?,
        );
        self.with(|connection| {
            connection
                .execute(
                    "INSERT INTO engagements (id, agent, user_json, state, status_json, text, exposes_json, snapshot_json, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        record.id,
                        record.agent,
                        values.0,
                        record.state(),
                        values.1,
                        record.text,
                        values.2,
                        snapshot,
                        record.created_at_ms,
                        record.updated_at_ms
                    ],
                )
                .map_err(database)?;
            Ok(())
        })
    }

    fn update_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let status = to_json(&record.status)?;
        let exposes = to_json(&record.exposes)?;
        self.with(|connection| {
            connection
                .execute(
                    "UPDATE engagements SET state = ?2, status_json = ?3, text = ?4, exposes_json = ?5, snapshot_json = COALESCE(?6, snapshot_json), updated_at_ms = ?7 WHERE id = ?1",
                    params![
                        record.id,
                        record.state(),
                        status,
                        record.text,
                        exposes,
                        snapshot,
                        record.updated_at_ms
                    ],
                )
                .map_err(database)?;
            Ok(())
        })
    }

    fn set_status(&self, id: &str, status: &serde_json::Value) -> Result<(), StoreError> {
        let state = state_of(status);
        let status = to_json(status)?;
        self.with(|connection| {
            connection
                .execute(
                    "UPDATE engagements SET state = ?2, status_json = ?3, updated_at_ms = ?4 WHERE id = ?1",
                    params![id, state, status, crate::store::now_ms()],
                )
                .map_err(database)?;
            Ok(())
        })
    }

    fn save_snapshot(
        &self,
        id: &str,
        snapshot: &agentc_runtime::EngagementSnapshot,
    ) -> Result<(), StoreError> {
        let snapshot = to_json(snapshot)?;
        self.with(|connection| {
            let changed = connection
                .execute(
                    "UPDATE engagements SET snapshot_json = ?2, updated_at_ms = ?3 WHERE id = ?1",
                    params![id, snapshot, crate::store::now_ms()],
                )
                .map_err(database)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Database(format!("no engagement `{id}`")))
            }
        })
    }

    fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        let row = self.with(|connection| {
            connection
                .query_row(
                    &format!("SELECT {ENGAGEMENT_COLUMNS} FROM engagements WHERE id = ?1"),
                    params![id],
                    engagement_row,
                )
                .optional()
                .map_err(database)
        })?;
        row.map(engagement_from_row).transpose()
    }

    fn engagements_in_states(&self, states: &[&str]) -> Result<Vec<EngagementRecord>, StoreError> {
        let mut records = Vec::new();
        for state in states {
            let rows = self.with(|connection| {
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

    fn insert_review(&self, review: &ReviewRecord) -> Result<(), StoreError> {
        let json = to_json(review)?;
        self.with(|connection| {
            connection
                .execute(
                    "INSERT INTO reviews (id, engagement, reviewer, call_hash, stage, decided, consumed, record_json, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        review.id,
                        review.engagement,
                        review.reviewer,
                        review.call_hash,
                        review.stage,
                        i64::from(review.decision.is_some()),
                        i64::from(review.consumed),
                        json,
                        review.created_at_ms
                    ],
                )
                .map_err(database)?;
            Ok(())
        })
    }

    fn review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(self.reviews_where("id = ?1", &[&id])?.into_iter().next())
    }

    fn open_review(
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

    fn decide_review(&self, id: &str, decision: &StoredDecision) -> Result<bool, StoreError> {
        let Some(mut review) = self.review(id)? else {
            return Ok(false);
        };
        if review.decision.is_some() {
            return Ok(false);
        }
        review.decision = Some(decision.clone());
        let json = to_json(&review)?;
        self.with(|connection| {
            // `decided = 0` in the condition makes the decision once-only even if two
            // reviewers answer at the same moment.
            let changed = connection
                .execute(
                    "UPDATE reviews SET decided = 1, record_json = ?2 WHERE id = ?1 AND decided = 0",
                    params![id, json],
                )
                .map_err(database)?;
            Ok(changed == 1)
        })
    }

    fn consume_review(&self, id: &str) -> Result<(), StoreError> {
        self.with(|connection| {
            connection
                .execute("UPDATE reviews SET consumed = 1 WHERE id = ?1", params![id])
                .map_err(database)?;
            Ok(())
        })
    }

    fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let state = state_of(status);
        let status = to_json(status)?;
        self.with(|connection| {
            // Dropped without `commit` on any error, which rolls both statements back.
            let transaction = connection.unchecked_transaction().map_err(database)?;
            let consumed = transaction
                .execute(
                    "UPDATE reviews SET consumed = 1 WHERE id = ?1 AND decided = 1",
                    params![review],
                )
                .map_err(database)?;
            if consumed != 1 {
                return Err(StoreError::Database(format!(
                    "review `{review}` is not decided"
                )));
            }
            if self.fail_take_midway.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Database("injected fault".into()));
            }
            let updated = transaction
                .execute(
                    "UPDATE engagements SET state = ?2, status_json = ?3, updated_at_ms = ?4 WHERE id = ?1",
                    params![engagement, state, status, crate::store::now_ms()],
                )
                .map_err(database)?;
            if updated != 1 {
                return Err(StoreError::Database(format!(
                    "no engagement `{engagement}`"
                )));
            }
            transaction.commit().map_err(database)
        })
    }

    fn reviews_of(&self, engagement: &str) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where("engagement = ?1", &[&engagement])
    }

    fn pending_reviews_for(&self, reviewers: &[&str]) -> Result<Vec<ReviewRecord>, StoreError> {
        let mut reviews = Vec::new();
        for reviewer in reviewers {
            reviews.extend(self.reviews_where("reviewer = ?1 AND decided = 0", &[reviewer])?);
        }
        reviews.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        reviews.dedup_by(|a, b| a.id == b.id);
        Ok(reviews)
    }

    fn pending_reviews_page(
        &self,
        reviewers: &[&str],
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        if reviewers.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let placeholders = (0..reviewers.len())
            .map(|index| format!("?{}", index + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, ""));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut parameters: Vec<&dyn rusqlite::ToSql> = vec![&after_ms, &after_id, &limit];
        for reviewer in reviewers {
            parameters.push(reviewer);
        }
        self.with(|connection| {
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

    fn append_audit(&self, seq: u64, engagement: &str, line: &str) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).map_err(database)?;
        self.with(|connection| {
            connection
                .execute(
                    "INSERT INTO audit (seq, engagement, line) VALUES (?1, ?2, ?3)",
                    params![seq, engagement, line],
                )
                .map_err(database)?;
            Ok(())
        })
    }

    fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let line: Option<String> = self.with(|connection| {
            connection
                .query_row(
                    "SELECT line FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(database)
        })?;
        let Some(line) = line else {
            return Ok(None);
        };
        // An entry or a signed checkpoint: both have these two fields.
        #[derive(serde::Deserialize)]
        struct Head {
            seq: u64,
            hash: String,
        }
        let head: Head = from_json(&line)?;
        Ok(Some((head.seq, head.hash)))
    }

    fn audit_lines(&self) -> Result<Vec<String>, StoreError> {
        self.with(|connection| {
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

/// The `state` column of a status: its `state` tag, or `unknown`.
fn state_of(status: &serde_json::Value) -> String {
    status
        .get("state")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

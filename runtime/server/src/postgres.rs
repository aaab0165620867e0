//! The shared store: PostgreSQL, for several server instances on one database
//! (ARCHITECTURE.md, "Coordination"). A pool of connections serves the asynchronous
//! operations; one more connection, on a thread of its own, takes the audit trail's
//! lines, which the runtime writes synchronously (`std::io::Write`) and which must be
//! stored before the action they record goes ahead; one more listens for review
//! decisions (`LISTEN agentc_decisions`), which every instance hears of.
//!
//! The schema is created and migrated at start, in one transaction under an advisory
//! lock, so that instances starting together migrate once. Values the runtime defines
//! (status, snapshot, exposes, a review) are kept as JSON text, as in SQLite; what is
//! looked up has a column. TLS: the connection string's `sslmode` (`disable`, `prefer`,
//! the default, or `require`), with the web's root certificates or the one given.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as blocking;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{
    EngagementRecord, RUNNING_STATES, ReviewRecord, SETTLED_STATES, Store, StoreError,
    StoreNotification, StoredDecision, chain_head, decided_review, fenced, from_json, now_ms,
    state_of, to_json,
};

/// The channel on which decisions are announced; the payload is the engagement's id.
const DECISIONS_CHANNEL: &str = "agentc_decisions";

/// The channel on which an engagement that stopped running is announced (its id).
const CHANGES_CHANNEL: &str = "agentc_changes";

/// The advisory lock key under which the schema is migrated ("agentc" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6167_656e_7463;

/// The schema, one migration per entry, applied in order and recorded by number.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE engagements (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    user_json TEXT NOT NULL,
    state TEXT NOT NULL,
    status_json TEXT NOT NULL,
    text_json TEXT,
    exposes_json TEXT NOT NULL,
    snapshot_json TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    owner TEXT NOT NULL,
    fence BIGINT NOT NULL,
    pending_input_json TEXT
);
CREATE INDEX engagements_state ON engagements(state);
CREATE INDEX engagements_owner ON engagements(owner);
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    engagement TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewer_is_agent BOOLEAN NOT NULL,
    call_hash TEXT NOT NULL,
    stage TEXT NOT NULL,
    decided BOOLEAN NOT NULL DEFAULT FALSE,
    consumed BOOLEAN NOT NULL DEFAULT FALSE,
    record_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX reviews_engagement ON reviews(engagement);
CREATE INDEX reviews_reviewer ON reviews(reviewer, decided);
CREATE TABLE audit (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    engagement TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TABLE audit_chains (
    chain TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    heartbeat_ms BIGINT NOT NULL
);
"#];

/// How many pooled connections one instance keeps at most.
const POOL_SIZE: usize = 16;

fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

/// A PostgreSQL error with its detail (the bare `Display` says only "db error").
fn postgres(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(error.to_string()),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => postgres(error),
        other => database(other),
    }
}

// The answer and the pending input are kept as JSON strings, like every other value:
// PostgreSQL's TEXT takes no NUL character, and a user or a model may send one.
const ENGAGEMENT_COLUMNS: &str = "id, agent, user_json, status_json, text_json, exposes_json, snapshot_json, created_at_ms, updated_at_ms, owner, fence, pending_input_json";

/// The same columns with no snapshot in its place.
const SUMMARY_COLUMNS: &str = "id, agent, user_json, status_json, text_json, exposes_json, NULL::TEXT, created_at_ms, updated_at_ms, owner, fence, pending_input_json";

fn engagement_from_row(row: &Row) -> Result<EngagementRecord, StoreError> {
    let get = |index: usize| -> Result<String, StoreError> { row.try_get(index).map_err(postgres) };
    let snapshot: Option<String> = row.try_get(6).map_err(postgres)?;
    Ok(EngagementRecord {
        id: get(0)?,
        agent: get(1)?,
        user: from_json(&get(2)?)?,
        status: from_json(&get(3)?)?,
        text: optional_json(row.try_get(4).map_err(postgres)?)?,
        exposes: from_json(&get(5)?)?,
        snapshot: snapshot.as_deref().map(from_json).transpose()?,
        created_at_ms: row.try_get(7).map_err(postgres)?,
        updated_at_ms: row.try_get(8).map_err(postgres)?,
        owner: get(9)?,
        fence: row.try_get(10).map_err(postgres)?,
        pending_input: optional_json(row.try_get(11).map_err(postgres)?)?,
    })
}

/// A JSON-string column, read back.
fn optional_json(text: Option<String>) -> Result<Option<String>, StoreError> {
    text.as_deref().map(from_json).transpose()
}

fn review_from_row(row: &Row) -> Result<ReviewRecord, StoreError> {
    let json: String = row.try_get(0).map_err(postgres)?;
    let consumed: bool = row.try_get(1).map_err(postgres)?;
    let mut review: ReviewRecord = from_json(&json)?;
    review.consumed = consumed;
    Ok(review)
}

/// The TLS connector of every connection: rustls, with the web's roots or `ca_file`.
fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for certificate in CertificateDer::pem_file_iter(path)
                .map_err(|error| database(format!("cannot read `{}`: {error}", path.display())))?
            {
                let certificate = certificate.map_err(|error| {
                    database(format!("`{}` is not PEM: {error}", path.display()))
                })?;
                roots.add(certificate).map_err(database)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(database)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// One audit line to store, and where to say it is stored.
struct AuditRequest {
    chain: String,
    seq: i64,
    engagement: String,
    line: String,
    done: blocking::SyncSender<Result<(), StoreError>>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    audit: std::sync::Mutex<blocking::Sender<AuditRequest>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PostgresStore")
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// with `?sslmode=require` for TLS; `ca_file` is the PEM file of the certificate
    /// authority to trust instead of the web's), then creates or migrates its schema.
    /// The URL (it may hold a password) is never part of an error.
    pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| database("the database URL is not a PostgreSQL connection string"))?;
        let tls = tls_connector(ca_file)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            // A pooled connection is checked before use: after the database restarted
            // or dropped its connections, an idle one would otherwise fail its next
            // statement (which, for a journal, ends an engagement).
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(database)?;
        let store = PostgresStore {
            pool,
            audit: std::sync::Mutex::new(spawn_audit_writer(config.clone(), tls.clone())?),
            config,
            tls,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(postgres)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(postgres)?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS agentc_schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
            )
            .await
            .map_err(postgres)?;
        let applied: i32 = transaction
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM agentc_schema_migrations",
                &[],
            )
            .await
            .map_err(postgres)?
            .try_get(0)
            .map_err(postgres)?;
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let version = i32::try_from(index + 1).map_err(database)?;
            if version <= applied {
                continue;
            }
            transaction
                .batch_execute(migration)
                .await
                .map_err(postgres)?;
            transaction
                .execute(
                    "INSERT INTO agentc_schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
                    &[&version, &now_ms()],
                )
                .await
                .map_err(postgres)?;
        }
        transaction.commit().await.map_err(postgres)
    }

    /// One engagement, read with `columns` (with or without its snapshot).
    async fn engagement_with(
        &self,
        columns: &str,
        id: &str,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt_prepared(
                &format!("SELECT {columns} FROM engagements WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(postgres)?;
        row.as_ref().map(engagement_from_row).transpose()
    }

    async fn reviews_where(
        &self,
        clause: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query_prepared(
                &format!(
                    "SELECT record_json, consumed FROM reviews WHERE {clause} ORDER BY created_at_ms, id"
                ),
                parameters,
            )
            .await
            .map_err(postgres)?;
        rows.iter().map(review_from_row).collect()
    }
}

/// The thread that stores audit lines, on a connection of its own: the runtime's
/// audit log writes synchronously, from any thread (a runtime's worker included), so
/// the line goes to this thread and the writer waits for its answer. Lines that arrive
/// while one is being stored are stored together, in one statement (group commit):
/// each writer still waits until its own line is stored.
fn spawn_audit_writer(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<blocking::Sender<AuditRequest>, StoreError> {
    let (sender, receiver) = blocking::channel::<AuditRequest>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(database)?;
    std::thread::Builder::new()
        .name("agentc-audit-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < AUDIT_BATCH {
                        match receiver.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    let deadline = std::time::Instant::now() + AUDIT_RETRY_FOR;
                    let stored = append_lines(&config, &tls, &mut client, &batch, deadline).await;
                    match stored {
                        Ok(()) => {
                            for request in batch {
                                let _ = request.done.send(Ok(()));
                            }
                        }
                        // One by one, so that each writer learns of its own line.
                        Err(_) => {
                            for request in batch {
                                let result = append_lines(
                                    &config,
                                    &tls,
                                    &mut client,
                                    std::slice::from_ref(&request),
                                    deadline,
                                )
                                .await;
                                let _ = request.done.send(result);
                            }
                        }
                    }
                }
            });
        })
        .map_err(database)?;
    Ok(sender)
}

/// How many audit lines one statement stores at most.
const AUDIT_BATCH: usize = 256;

/// How long lines are sent again while the database cannot be reached (a restart, a
/// failover), before their writers are told they could not be stored.
const AUDIT_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The pause between two attempts that failed.
const AUDIT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Stores lines in one statement, connecting first when needed. A connection that
/// broke is made again and the lines sent once more, until `deadline` (one attempt at
/// least); if an attempt had in fact been stored although its answer was lost, the
/// next finds the same lines at their places, which is the same success. Retrying for
/// a while matters beyond the lost line: a line stored whose writer was told it failed
/// would hold its place in the chain, and every line after it would be refused as a
/// different entry at the same place (fail closed, but until the server restarts).
async fn append_lines(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    client: &mut Option<tokio_postgres::Client>,
    requests: &[AuditRequest],
    deadline: std::time::Instant,
) -> Result<(), StoreError> {
    let mut last_error = None;
    for attempt in 0.. {
        let now = std::time::Instant::now();
        if attempt > 0 {
            if now + AUDIT_RETRY_PAUSE >= deadline {
                break;
            }
            tokio::time::sleep(AUDIT_RETRY_PAUSE).await;
        }
        // Each attempt is bounded too: a connection to a server that stopped answering
        // (no reset, no reply) would otherwise hold every audited action.
        let remaining = deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(AUDIT_RETRY_PAUSE);
        match tokio::time::timeout(remaining, append_lines_once(config, tls, client, requests))
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(AuditAttempt::Refused(error))) => return Err(error),
            Ok(Err(AuditAttempt::Broken(error))) => {
                last_error = Some(error);
                *client = None;
            }
            Err(_) => {
                last_error = Some(database("the database did not answer in time"));
                *client = None;
            }
        }
    }
    Err(last_error.unwrap_or_else(|| database("the audit line could not be stored")))
}

/// Why one attempt to store audit lines failed.
enum AuditAttempt {
    /// The database refused them for good: a different entry holds one of the places.
    Refused(StoreError),
    /// The connection failed: another attempt, on a new one, may succeed.
    Broken(StoreError),
}

/// One attempt of [`append_lines`]: connects if needed, then stores the lines, or
/// finds them stored already.
async fn append_lines_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    client: &mut Option<tokio_postgres::Client>,
    requests: &[AuditRequest],
) -> Result<(), AuditAttempt> {
    if client
        .as_ref()
        .is_none_or(tokio_postgres::Client::is_closed)
    {
        let (connected, connection) = config
            .connect(tls.clone())
            .await
            .map_err(|error| AuditAttempt::Broken(postgres(error)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *client = Some(connected);
    }
    let Some(connected) = client.as_ref() else {
        return Err(AuditAttempt::Broken(database("no connection")));
    };
    let chains: Vec<&str> = requests
        .iter()
        .map(|request| request.chain.as_str())
        .collect();
    let seqs: Vec<i64> = requests.iter().map(|request| request.seq).collect();
    let engagements: Vec<&str> = requests
        .iter()
        .map(|request| request.engagement.as_str())
        .collect();
    let lines: Vec<&str> = requests
        .iter()
        .map(|request| request.line.as_str())
        .collect();
    let inserted = connected
        .execute(
            "INSERT INTO audit (chain, seq, engagement, line) SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            &[&chains, &seqs, &engagements, &lines],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            // Stored already (a retry after a lost answer) only if every line is there
            // as it is here. A connection that breaks while this is read is one more
            // attempt, not a refusal.
            for request in requests {
                let stored = connected
                    .query_opt(
                        "SELECT line FROM audit WHERE chain = $1 AND seq = $2",
                        &[&request.chain, &request.seq],
                    )
                    .await
                    .map_err(|error| AuditAttempt::Broken(postgres(error)))?;
                if stored
                    .and_then(|row| row.try_get::<_, String>(0).ok())
                    .as_deref()
                    != Some(request.line.as_str())
                {
                    return Err(AuditAttempt::Refused(database(format!(
                        "audit chain `{}` already has an entry {}",
                        request.chain, request.seq
                    ))));
                }
            }
            Ok(())
        }
        Err(error) => Err(AuditAttempt::Broken(postgres(error))),
    }
}

/// Statements prepared once per pooled connection (deadpool keeps them) rather than
/// parsed and planned by the server on every call, which also saves a round trip.
trait PreparedOnce {
    async fn execute_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>;
    async fn query_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;
    async fn query_one_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error>;
    async fn query_opt_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error>;
}

impl<Client: deadpool_postgres::GenericClient> PreparedOnce for Client {
    async fn execute_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, parameters).await
    }

    async fn query_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, parameters).await
    }

    async fn query_one_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, parameters).await
    }

    async fn query_opt_prepared(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, parameters).await
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn is_shared(&self) -> bool {
        true
    }

    async fn heartbeat(&self, instance: &str, now_ms: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute_prepared(
                "INSERT INTO instances (id, heartbeat_ms) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET heartbeat_ms = EXCLUDED.heartbeat_ms",
                &[&instance, &now_ms],
            )
            .await
            .map_err(postgres)?;
        Ok(())
    }

    async fn retire_instance(&self, instance: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute_prepared("DELETE FROM instances WHERE id = $1", &[&instance])
            .await
            .map_err(postgres)?;
        Ok(())
    }

    async fn live_instances(&self, alive_since_ms: i64) -> Result<usize, StoreError> {
        let count: i64 = self
            .client()
            .await?
            .query_one_prepared(
                "SELECT COUNT(*) FROM instances WHERE heartbeat_ms >= $1",
                &[&alive_since_ms],
            )
            .await
            .map_err(postgres)?
            .try_get(0)
            .map_err(postgres)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn orphaned_engagements(
        &self,
        instance: &str,
        expired_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query_prepared(
                "SELECT e.id, e.fence FROM engagements e LEFT JOIN instances i ON i.id = e.owner \
                 WHERE e.owner <> $1 AND NOT (e.state = ANY($4)) \
                 AND (i.id IS NULL OR i.heartbeat_ms < $2) \
                 ORDER BY e.created_at_ms, e.id LIMIT $3",
                &[&instance, &expired_before_ms, &limit, &SETTLED_STATES],
            )
            .await
            .map_err(postgres)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(postgres)?,
                    row.try_get(1).map_err(postgres)?,
                ))
            })
            .collect()
    }

    async fn claim_engagement(
        &self,
        id: &str,
        instance: &str,
        seen_fence: i64,
    ) -> Result<Option<EngagementRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt_prepared(
                &format!(
                    "UPDATE engagements SET owner = $2, fence = fence + 1 WHERE id = $1 AND fence = $3 RETURNING {ENGAGEMENT_COLUMNS}"
                ),
                &[&id, &instance, &seen_fence],
            )
            .await
            .map_err(postgres)?;
        row.as_ref().map(engagement_from_row).transpose()
    }

    async fn owned_engagements(&self, instance: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query_prepared(
                "SELECT id, fence FROM engagements WHERE owner = $1 AND NOT (state = ANY($2))",
                &[&instance, &SETTLED_STATES],
            )
            .await
            .map_err(postgres)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(postgres)?,
                    row.try_get(1).map_err(postgres)?,
                ))
            })
            .collect()
    }

    async fn insert_engagement(&self, record: &EngagementRecord) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let user = to_json(&record.user)?;
        let status = to_json(&record.status)?;
        let exposes = to_json(&record.exposes)?;
        let state = record.state().to_string();
        let text = record.text.as_ref().map(to_json).transpose()?;
        let pending_input = record.pending_input.as_ref().map(to_json).transpose()?;
        self.client()
            .await?
            .execute_prepared(
                "INSERT INTO engagements (id, agent, user_json, state, status_json, text_json, exposes_json, snapshot_json, created_at_ms, updated_at_ms, owner, fence, pending_input_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &record.id,
                    &record.agent,
                    &user,
                    &state,
                    &status,
                    &text,
                    &exposes,
                    &snapshot,
                    &record.created_at_ms,
                    &record.updated_at_ms,
                    &record.owner,
                    &record.fence,
                    &pending_input,
                ],
            )
            .await
            .map_err(postgres)?;
        Ok(())
    }

    async fn update_engagement(
        &self,
        record: &EngagementRecord,
        fence: i64,
    ) -> Result<(), StoreError> {
        let snapshot = record.snapshot.as_ref().map(to_json).transpose()?;
        let status = to_json(&record.status)?;
        let exposes = to_json(&record.exposes)?;
        let state = record.state().to_string();
        let text = record.text.as_ref().map(to_json).transpose()?;
        // The update and its announcement are one statement, so one transaction: the
        // announcement leaves when the update is committed, never before.
        let changed = self
            .client()
            .await?
            .execute_prepared(
                "WITH updated AS (UPDATE engagements SET state = $2, status_json = $3, text_json = $4, exposes_json = $5, snapshot_json = COALESCE($6, snapshot_json), updated_at_ms = $7, pending_input_json = NULL WHERE id = $1 AND fence = $8 RETURNING id) SELECT pg_notify('agentc_changes', id) FROM updated",
                &[
                    &record.id,
                    &state,
                    &status,
                    &text,
                    &exposes,
                    &snapshot,
                    &record.updated_at_ms,
                    &fence,
                ],
            )
            .await
            .map_err(postgres)?;
        fenced(changed, &record.id)
    }

    async fn set_status(
        &self,
        id: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        let state = state_of(status);
        let status = to_json(status)?;
        // Announced when the engagement stops running (a wait for a reviewer), in the
        // update's own transaction.
        let statement = if RUNNING_STATES.contains(&state.as_str()) {
            "UPDATE engagements SET state = $2, status_json = $3, updated_at_ms = $4 WHERE id = $1 AND fence = $5"
        } else {
            "WITH updated AS (UPDATE engagements SET state = $2, status_json = $3, updated_at_ms = $4 WHERE id = $1 AND fence = $5 RETURNING id) SELECT pg_notify('agentc_changes', id) FROM updated"
        };
        let changed = self
            .client()
            .await?
            .execute_prepared(statement, &[&id, &state, &status, &now_ms(), &fence])
            .await
            .map_err(postgres)?;
        fenced(changed, id)
    }

    async fn set_pending_input(
        &self,
        id: &str,
        status: &serde_json::Value,
        input: &str,
        fence: i64,
    ) -> Result<(), StoreError> {
        let state = state_of(status);
        let status = to_json(status)?;
        let changed = self
            .client()
            .await?
            .execute_prepared(
                "UPDATE engagements SET state = $2, status_json = $3, pending_input_json = $4, updated_at_ms = $5 WHERE id = $1 AND fence = $6",
                &[&id, &state, &status, &to_json(&input)?, &now_ms(), &fence],
            )
            .await
            .map_err(postgres)?;
        fenced(changed, id)
    }

    async fn save_snapshot(
        &self,
        id: &str,
        snapshot: &agentc_runtime::EngagementSnapshot,
        fence: i64,
    ) -> Result<(), StoreError> {
        let snapshot = to_json(snapshot)?;
        let changed = self
            .client()
            .await?
            .execute_prepared(
                "UPDATE engagements SET snapshot_json = $2, pending_input_json = NULL, updated_at_ms = $3 WHERE id = $1 AND fence = $4",
                &[&id, &snapshot, &now_ms(), &fence],
            )
            .await
            .map_err(postgres)?;
        fenced(changed, id)
    }

    async fn engagement(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.engagement_with(ENGAGEMENT_COLUMNS, id).await
    }

    async fn engagement_summary(&self, id: &str) -> Result<Option<EngagementRecord>, StoreError> {
        self.engagement_with(SUMMARY_COLUMNS, id).await
    }

    async fn engagements_in_states(
        &self,
        states: &[&str],
    ) -> Result<Vec<EngagementRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query_prepared(
                &format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements WHERE state = ANY($1) ORDER BY created_at_ms, id"
                ),
                &[&states],
            )
            .await
            .map_err(postgres)?;
        rows.iter().map(engagement_from_row).collect()
    }

    async fn insert_review(&self, review: &ReviewRecord) -> Result<(), StoreError> {
        let json = to_json(review)?;
        self.client()
            .await?
            .execute_prepared(
                "INSERT INTO reviews (id, engagement, reviewer, reviewer_is_agent, call_hash, stage, decided, consumed, record_json, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &review.id,
                    &review.engagement,
                    &review.reviewer,
                    &review.reviewer_is_agent,
                    &review.call_hash,
                    &review.stage,
                    &review.decision.is_some(),
                    &review.consumed,
                    &json,
                    &review.created_at_ms,
                ],
            )
            .await
            .map_err(postgres)?;
        Ok(())
    }

    async fn review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(self
            .reviews_where("id = $1", &[&id])
            .await?
            .into_iter()
            .next())
    }

    async fn open_review(
        &self,
        engagement: &str,
        call_hash: &str,
        stage: &str,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        Ok(self
            .reviews_where(
                "engagement = $1 AND call_hash = $2 AND stage = $3 AND NOT consumed",
                &[&engagement, &call_hash, &stage],
            )
            .await?
            .into_iter()
            .last())
    }

    async fn decide_review(&self, id: &str, decision: &StoredDecision) -> Result<bool, StoreError> {
        let Some((json, engagement)) = decided_review(self.review(id).await?, decision)? else {
            return Ok(false);
        };
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(postgres)?;
        // `NOT decided` makes the decision once-only, even when two instances take a
        // decision on it at the same moment; the notification leaves with the commit.
        let changed = transaction
            .execute_prepared(
                "UPDATE reviews SET decided = TRUE, record_json = $2 WHERE id = $1 AND NOT decided",
                &[&id, &json],
            )
            .await
            .map_err(postgres)?;
        if changed != 1 {
            return Ok(false);
        }
        transaction
            .execute_prepared(
                "SELECT pg_notify($1, $2)",
                &[&DECISIONS_CHANNEL, &engagement],
            )
            .await
            .map_err(postgres)?;
        transaction.commit().await.map_err(postgres)?;
        Ok(true)
    }

    async fn consume_review(&self, id: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute_prepared("UPDATE reviews SET consumed = TRUE WHERE id = $1", &[&id])
            .await
            .map_err(postgres)?;
        Ok(())
    }

    async fn take_decision(
        &self,
        review: &str,
        engagement: &str,
        status: &serde_json::Value,
        fence: i64,
    ) -> Result<(), StoreError> {
        let state = state_of(status);
        let status = to_json(status)?;
        let mut client = self.client().await?;
        // Dropped without `commit` on any error, which rolls both statements back.
        let transaction = client.transaction().await.map_err(postgres)?;
        let consumed = transaction
            .execute_prepared(
                "UPDATE reviews SET consumed = TRUE WHERE id = $1 AND decided AND NOT consumed",
                &[&review],
            )
            .await
            .map_err(postgres)?;
        if consumed != 1 {
            return Err(StoreError::Database(format!(
                "review `{review}` is not decided, or its decision was taken already"
            )));
        }
        let updated = transaction
            .execute_prepared(
                "UPDATE engagements SET state = $2, status_json = $3, updated_at_ms = $4 WHERE id = $1 AND fence = $5",
                &[&engagement, &state, &status, &now_ms(), &fence],
            )
            .await
            .map_err(postgres)?;
        fenced(updated, engagement)?;
        transaction.commit().await.map_err(postgres)
    }

    async fn reviews_of(&self, engagement: &str) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where("engagement = $1", &[&engagement]).await
    }

    async fn pending_reviews_for(
        &self,
        reviewers: &[&str],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where("reviewer = ANY($1) AND NOT decided", &[&reviewers])
            .await
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
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, ""));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query_prepared(
                "SELECT record_json, consumed FROM reviews \
                 WHERE reviewer = ANY($1) AND NOT decided AND NOT reviewer_is_agent \
                 AND (created_at_ms > $2 OR (created_at_ms = $2 AND id > $3)) \
                 ORDER BY created_at_ms, id LIMIT $4",
                &[&reviewers, &after_ms, &after_id, &limit],
            )
            .await
            .map_err(postgres)?;
        rows.iter().map(review_from_row).collect()
    }

    async fn decided_reviews_owned_by(
        &self,
        instance: &str,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        self.reviews_where(
            "decided AND NOT consumed AND engagement IN (SELECT id FROM engagements WHERE owner = $1 AND state = 'awaiting_review')",
            &[&instance],
        )
        .await
    }

    async fn notifications(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<StoreNotification>>, StoreError> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let config = self.config.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            // Listens until the receiver is gone; a lost connection is made again after
            // a pause (what was announced meanwhile is found by the owner's poll).
            while !sender.is_closed() {
                if let Err(error) = listen(&config, &tls, &sender).await {
                    tracing::warn!(%error, "the decision listener lost its connection");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        Ok(Some(receiver))
    }

    fn append_audit(
        &self,
        chain: &str,
        seq: u64,
        engagement: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        let (done, answer) = blocking::sync_channel(1);
        let request = AuditRequest {
            chain: chain.to_string(),
            seq: i64::try_from(seq).map_err(database)?,
            engagement: engagement.to_string(),
            line: line.to_string(),
            done,
        };
        self.audit
            .lock()
            .map_err(|_| database("the audit writer's lock is poisoned"))?
            .send(request)
            .map_err(|_| database("the audit writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| database("the audit writer has stopped"))?
    }

    async fn audit_head(&self, chain: &str) -> Result<Option<(u64, String)>, StoreError> {
        let client = self.client().await?;
        client
            .execute_prepared(
                "INSERT INTO audit_chains (chain, created_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&chain, &now_ms()],
            )
            .await
            .map_err(postgres)?;
        let row = client
            .query_opt_prepared(
                "SELECT line FROM audit WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
                &[&chain],
            )
            .await
            .map_err(postgres)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let line: String = row.try_get(0).map_err(postgres)?;
                chain_head(&line).map(Some)
            }
        }
    }

    async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query_prepared(
                "SELECT c.chain FROM audit_chains c WHERE EXISTS (SELECT 1 FROM audit a WHERE a.chain = c.chain) ORDER BY c.created_at_ms, c.chain",
                &[],
            )
            .await
            .map_err(postgres)?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(postgres))
            .collect()
    }

    async fn audit_lines(&self, chain: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query_prepared(
                "SELECT line FROM audit WHERE chain = $1 ORDER BY seq",
                &[&chain],
            )
            .await
            .map_err(postgres)?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(postgres))
            .collect()
    }
}

/// One `LISTEN` session: forwards each announcement until the connection ends.
async fn listen(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    sender: &tokio::sync::mpsc::UnboundedSender<StoreNotification>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(tls.clone()).await.map_err(postgres)?;
    let (notifications, mut received) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|context| connection.poll_message(context)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                    let engagement = notification.payload().to_string();
                    let _ = notifications.send(match notification.channel() {
                        DECISIONS_CHANNEL => StoreNotification::Decided(engagement),
                        _ => StoreNotification::Changed(engagement),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {DECISIONS_CHANNEL}; LISTEN {CHANGES_CHANNEL}"
        ))
        .await
        .map_err(postgres)?;
    while let Some(notification) = received.recv().await {
        if sender.send(notification).is_err() {
            break;
        }
    }
    pump.abort();
    drop(client);
    Ok(())
}

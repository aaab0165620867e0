//! Group commit for the SQLite store's one write connection.
//!
//! Every write is a job queued here. Whoever finds the connection free leads: it runs
//! every queued job in one transaction (each in a savepoint of its own, so one job's
//! failure undoes only that job), commits once, and only then tells each job's writer
//! how it went. The writes that queue up while one transaction runs share the next
//! commit (one WAL append, one round of file locks); with no load a write is led by its
//! own writer, at the cost it had before, with no thread to hand over to.
//!
//! An asynchronous writer that finds a leader at work does not block its thread: it
//! awaits its answer, and the leader runs its job. A blocking writer (the audit log's,
//! which writes through `std::io::Write` and must know its line is stored before the
//! action it records goes ahead) waits for the connection and leads. A leader drains the
//! queue until it is empty before it lets the connection go, and checks it once more
//! after, so a job queued in that moment is never left behind.
//!
//! (A writer thread that leads every asynchronous write batches more, but was measured
//! slower: the audit log's blocking writes then wait behind its transactions, with
//! the runtime's threads blocked.)

use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use crate::store::StoreError;

/// Tells a job's writer the outcome once the transaction that carried it ended:
/// `Ok` when it committed, the commit's failure otherwise.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A queued write: runs on the connection inside the leader's transaction (or, given
/// why no transaction could begin, does not run), and gives back how to deliver its
/// result.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Deliver + Send>;

/// At most this many jobs in one transaction, so that one commit stays short.
const MOST_JOBS_PER_TRANSACTION: usize = 512;

/// The write connection and the writes waiting for it.
pub(super) struct GroupCommit {
    connection: Mutex<Connection>,
    queue: Mutex<Vec<Job>>,
}

impl GroupCommit {
    pub(super) fn new(connection: Connection) -> Self {
        GroupCommit {
            connection: Mutex::new(connection),
            queue: Mutex::new(Vec::new()),
        }
    }

    /// The connection itself, held while `work` runs: for reads of a database in
    /// memory, which only this connection can see. What it reads is committed (a
    /// leader holds the connection from its `BEGIN` to its `COMMIT`).
    pub(super) fn with_connection<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.connection.lock().map_err(|_| poisoned())?;
        work(&connection)
    }

    /// Runs `work` in the next transaction, without blocking this thread unless it
    /// finds the connection free (it then leads).
    pub(super) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.enqueue(job(work, move |result| {
            let _ = sender.send(result);
        }))?;
        if let Ok(connection) = self.connection.try_lock() {
            self.lead(connection);
        }
        receiver.await.unwrap_or_else(|_| Err(lost()))
    }

    /// Runs `work` in the next transaction and waits for it on this thread: it leads
    /// as soon as the connection is free, unless another leader ran its job first.
    pub(super) fn write_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.enqueue(job(work, move |result| {
            let _ = sender.send(result);
        }))?;
        let connection = self.connection.lock().map_err(|_| poisoned())?;
        self.lead(connection);
        receiver.recv().unwrap_or_else(|_| Err(lost()))
    }

    fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        self.queue.lock().map_err(|_| poisoned())?.push(job);
        Ok(())
    }

    /// Runs the queued jobs until none is left, then lets the connection go, and
    /// leads again if a job came in meanwhile and nobody else took the connection.
    fn lead<'lock>(&'lock self, mut connection: MutexGuard<'lock, Connection>) {
        loop {
            loop {
                let jobs = match self.queue.lock() {
                    Ok(mut queue) => {
                        let count = queue.len().min(MOST_JOBS_PER_TRANSACTION);
                        queue.drain(..count).collect::<Vec<_>>()
                    }
                    // A poisoned queue: its jobs' writers learn of it when their
                    // answers are dropped.
                    Err(_) => Vec::new(),
                };
                if jobs.is_empty() {
                    break;
                }
                run_in_transactions(&connection, jobs);
            }
            drop(connection);
            let waiting = self.queue.lock().map(|queue| !queue.is_empty());
            if !matches!(waiting, Ok(true)) {
                return;
            }
            match self.connection.try_lock() {
                Ok(again) => connection = again,
                // Another leader holds it and drains the queue before letting go.
                Err(_) => return,
            }
        }
    }
}

/// Wraps `work` as a job that runs in a savepoint and delivers its result, or the
/// failure of the transaction that carried it, through `answer`.
fn job<T: Send + 'static>(
    work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    answer: impl FnOnce(Result<T, StoreError>) + Send + 'static,
) -> Job {
    Box::new(move |connection: Result<&Connection, &str>| {
        let result = match connection {
            Ok(connection) => in_savepoint(connection, work),
            Err(failure) => Err(StoreError::Database(failure.to_string())),
        };
        Box::new(move |committed: Result<(), String>| {
            answer(match committed {
                Ok(()) => result,
                Err(failure) => Err(StoreError::Database(failure)),
            });
        })
    })
}

/// Runs `work` in a savepoint: released when it succeeds, rolled back (only its own
/// changes) when it fails.
fn in_savepoint<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    execute(connection, "SAVEPOINT job").map_err(StoreError::Database)?;
    let result = work(connection);
    let ended = match &result {
        Ok(_) => execute(connection, "RELEASE job"),
        Err(_) => {
            execute(connection, "ROLLBACK TO job").and_then(|()| execute(connection, "RELEASE job"))
        }
    };
    match ended {
        Ok(()) => result,
        // The work may have succeeded, but its savepoint could not be closed: the
        // transaction is in doubt, and the job is reported failed (the commit check
        // below fails the whole transaction in that case).
        Err(failure) => result.and(Err(StoreError::Database(failure))),
    }
}

fn execute(connection: &Connection, sql: &str) -> Result<(), String> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Runs `jobs` in as few transactions as it can: one, unless SQLite rolls a
/// transaction back by itself (it does on some I/O errors and when memory runs out),
/// in which case what ran in it is reported failed and the rest go on in a new one.
/// Nothing is reported committed that did not commit.
fn run_in_transactions(connection: &Connection, jobs: Vec<Job>) {
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        if let Err(failure) = execute(connection, "BEGIN IMMEDIATE") {
            // None of them runs: each is told why.
            for job in jobs {
                job(Err(&failure))(Ok(()));
            }
            return;
        }
        let mut delivers = Vec::new();
        let mut ended_early = false;
        for job in jobs.by_ref() {
            delivers.push(job(Ok(connection)));
            if connection.is_autocommit() {
                ended_early = true;
                break;
            }
        }
        let committed = if ended_early || connection.is_autocommit() {
            Err("the database rolled the transaction back".to_string())
        } else {
            execute(connection, "COMMIT").inspect_err(|_| {
                let _ = execute(connection, "ROLLBACK");
            })
        };
        for deliver in delivers {
            deliver(committed.clone());
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Database("the connection lock is poisoned".into())
}

fn lost() -> StoreError {
    StoreError::Database("the write was not carried out".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Arc;

    fn table() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE rows (id INTEGER PRIMARY KEY,
                     parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        connection
    }

    fn stored(connection: &Connection) -> Vec<i64> {
        let mut statement = connection
            .prepare("SELECT id FROM rows ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    type Outcomes = Arc<Mutex<Vec<(i64, Result<(), String>)>>>;

    /// A job that inserts `id` (with `parent`), then runs `then`, its outcome kept.
    fn insert(outcomes: &Outcomes, id: i64, parent: Option<i64>, then: &'static str) -> Job {
        let outcomes = Arc::clone(outcomes);
        job(
            move |connection: &Connection| {
                connection
                    .execute(
                        "INSERT INTO rows (id, parent) VALUES (?1, ?2)",
                        rusqlite::params![id, parent],
                    )
                    .map_err(|error| StoreError::Database(error.to_string()))?;
                match then {
                    "" => Ok(()),
                    "fail" => Err(StoreError::Database("this job fails".into())),
                    sql => connection
                        .execute_batch(sql)
                        .map_err(|error| StoreError::Database(error.to_string())),
                }
            },
            move |result: Result<(), StoreError>| {
                outcomes
                    .lock()
                    .unwrap()
                    .push((id, result.map_err(|error| error.to_string())));
            },
        )
    }

    fn outcomes_of(outcomes: &Outcomes) -> Vec<(i64, bool)> {
        let mut outcomes: Vec<(i64, bool)> = outcomes
            .lock()
            .unwrap()
            .iter()
            .map(|(id, result)| (*id, result.is_ok()))
            .collect();
        outcomes.sort();
        outcomes
    }

    #[test]
    fn a_failing_job_is_undone_alone_and_the_others_commit_together() {
        let connection = table();
        let outcomes = Outcomes::default();
        run_in_transactions(
            &connection,
            vec![
                insert(&outcomes, 1, None, ""),
                insert(&outcomes, 2, None, "fail"),
                insert(&outcomes, 3, None, ""),
            ],
        );
        assert_eq!(stored(&connection), vec![1, 3]);
        assert_eq!(
            outcomes_of(&outcomes),
            vec![(1, true), (2, false), (3, true)]
        );
        assert!(connection.is_autocommit(), "no transaction is left open");
    }

    #[test]
    fn a_failed_commit_fails_every_job_of_its_transaction_and_stores_nothing() {
        let connection = table();
        let outcomes = Outcomes::default();
        // Job 2's row points at a parent that does not exist; the deferred check fails
        // the COMMIT, not the job.
        run_in_transactions(
            &connection,
            vec![
                insert(&outcomes, 1, None, ""),
                insert(&outcomes, 2, Some(99), ""),
                insert(&outcomes, 3, None, ""),
            ],
        );
        assert_eq!(stored(&connection), Vec::<i64>::new());
        assert_eq!(
            outcomes_of(&outcomes),
            vec![(1, false), (2, false), (3, false)]
        );
        assert!(
            connection.is_autocommit(),
            "the failed transaction was rolled back"
        );
    }

    #[test]
    fn a_transaction_the_database_rolled_back_fails_what_ran_in_it_and_the_rest_go_on() {
        let connection = table();
        let outcomes = Outcomes::default();
        // Job 2 ends the transaction as SQLite does by itself on some I/O errors.
        run_in_transactions(
            &connection,
            vec![
                insert(&outcomes, 1, None, ""),
                insert(&outcomes, 2, None, "ROLLBACK"),
                insert(&outcomes, 3, None, ""),
            ],
        );
        assert_eq!(stored(&connection), vec![3]);
        assert_eq!(
            outcomes_of(&outcomes),
            vec![(1, false), (2, false), (3, true)]
        );
    }

    #[test]
    fn writes_from_tasks_and_threads_at_once_each_land_once_and_are_read_back() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let writer = Arc::new(GroupCommit::new(table()));
        let tasks: Vec<_> = (0..400)
            .map(|id| {
                let writer = Arc::clone(&writer);
                runtime.spawn(async move {
                    writer
                        .write(move |connection| {
                            connection
                                .execute("INSERT INTO rows (id) VALUES (?1)", [id])
                                .map_err(|error| StoreError::Database(error.to_string()))
                        })
                        .await
                })
            })
            .collect();
        let threads: Vec<_> = (400..440)
            .map(|id| {
                let writer = Arc::clone(&writer);
                std::thread::spawn(move || {
                    writer.write_blocking(move |connection| {
                        connection
                            .execute("INSERT INTO rows (id) VALUES (?1)", [id])
                            .map_err(|error| StoreError::Database(error.to_string()))
                    })
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(runtime.block_on(task).unwrap().unwrap(), 1);
        }
        for thread in threads {
            assert_eq!(thread.join().unwrap().unwrap(), 1);
        }
        // A write that conflicts is refused, and said so, without touching the rest.
        let duplicate = runtime.block_on(writer.write(|connection| {
            connection
                .execute("INSERT INTO rows (id) VALUES (7)", [])
                .map_err(|error| StoreError::Database(error.to_string()))
        }));
        assert!(duplicate.is_err());
        let ids = writer
            .with_connection(|connection| Ok(stored(connection)))
            .unwrap();
        assert_eq!(ids, (0..440).collect::<Vec<i64>>());
    }
}

//! Group commit for the SQLite store's one write connection.
//!
//! Every write is a job queued here. Whoever finds the connection free leads: it runs
//! every queued job in one transaction (each in a savepoint of its own, so one job's
//! failure undoes only that job), commits once, and only then tells each job's writer
//! how it went. The writes that queue up while one transaction runs share the next
//! commit (one WAL append, one round of file locks); with no load a write is led by its
//! own writer, at the cost it had before, with no thread to hand over to.
//!
//! A writer that finds the connection taken does not wait for it: it waits for its
//! answer, which the holder gives. The rule that makes this safe: **whoever lets the
//! connection go (a leader, or a read of a database in memory) looks at the queue once
//! it has, and leads if a job is there and nobody else took the connection.** So a job
//! queued while the connection is held is always run, and a writer whose job was run
//! by another is answered right after that commit, not when the leader is done.
//!
//! A leader drains the queue until it is empty. That cannot go on for ever: the
//! writers wait for their answers before they write again.
//!
//! A write whose future is dropped after it was queued (its request cancelled) is still
//! carried out, or refused, as a whole; nothing is left half done.
//!
//! (A writer thread that leads every asynchronous write batches more, but was measured
//! slower: the audit log's blocking writes then wait behind its transactions, with
//! the runtime's threads blocked.)

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::Connection;

use crate::store::StoreError;

/// Tells a job's writer the outcome once the transaction that carried it ended:
/// `Ok` when it committed, the commit's failure otherwise.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A queued write: runs on the connection inside the leader's transaction (or, given
/// why no transaction could begin, does not run).
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Ran + Send>;

/// What running a job left behind.
struct Ran {
    /// How to deliver its result once the transaction ended.
    deliver: Deliver,
    /// Its savepoint could not be closed: what the transaction holds is not known, so
    /// it is rolled back whole rather than committed.
    in_doubt: bool,
}

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
    /// leader holds the connection from its `BEGIN` to its `COMMIT`). It then leads,
    /// for the writes queued while it read.
    pub(super) fn with_connection<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.take_connection();
        let result = work(&connection);
        self.lead(connection);
        result
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
        }));
        if let Some(connection) = self.try_take_connection() {
            self.lead(connection);
        }
        receiver.await.unwrap_or_else(|_| Err(lost()))
    }

    /// Runs `work` in the next transaction and waits for it on this thread (for the
    /// audit log, which writes through `std::io::Write`): it leads if it finds the
    /// connection free, and otherwise waits for the holder to run its job.
    pub(super) fn write_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.enqueue(job(work, move |result| {
            let _ = sender.send(result);
        }));
        if let Some(connection) = self.try_take_connection() {
            self.lead(connection);
        }
        receiver.recv().unwrap_or_else(|_| Err(lost()))
    }

    fn enqueue(&self, job: Job) {
        self.queue().push(job);
    }

    /// The queue. A panic while it was held cannot leave it half changed (a push or a
    /// drain), so a poisoned lock is taken as it is.
    fn queue(&self) -> MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, waiting for it. A panic while it was held may have left a
    /// transaction open; the next leader rolls it back before it begins its own.
    fn take_connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn try_take_connection(&self) -> Option<MutexGuard<'_, Connection>> {
        match self.connection.try_lock() {
            Ok(connection) => Some(connection),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Runs the queued jobs until none is left, then lets the connection go, and
    /// leads again if a job came in meanwhile and nobody else took the connection.
    fn lead<'lock>(&'lock self, mut connection: MutexGuard<'lock, Connection>) {
        loop {
            loop {
                let jobs = {
                    let mut queue = self.queue();
                    let count = queue.len().min(MOST_JOBS_PER_TRANSACTION);
                    queue.drain(..count).collect::<Vec<_>>()
                };
                if jobs.is_empty() {
                    break;
                }
                run_in_transactions(&connection, jobs);
            }
            drop(connection);
            if self.queue().is_empty() {
                return;
            }
            match self.try_take_connection() {
                Some(again) => connection = again,
                // Its holder looks at the queue when it lets go.
                None => return,
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
        let (result, in_doubt) = match connection {
            Ok(connection) => in_savepoint(connection, work),
            Err(failure) => (Err(StoreError::Database(failure.to_string())), false),
        };
        Ran {
            deliver: Box::new(move |committed: Result<(), String>| {
                answer(match committed {
                    Ok(()) => result,
                    Err(failure) => Err(StoreError::Database(failure)),
                });
            }),
            in_doubt,
        }
    })
}

/// Runs `work` in a savepoint: released when it succeeds, rolled back (only its own
/// changes) when it fails. Also says whether the savepoint could not be opened or
/// closed, which leaves the transaction in doubt.
fn in_savepoint<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> (Result<T, StoreError>, bool) {
    if let Err(failure) = execute(connection, "SAVEPOINT job") {
        return (Err(StoreError::Database(failure)), true);
    }
    let result = work(connection);
    let ended = match &result {
        Ok(_) => execute(connection, "RELEASE job"),
        Err(_) => {
            execute(connection, "ROLLBACK TO job").and_then(|()| execute(connection, "RELEASE job"))
        }
    };
    match ended {
        Ok(()) => (result, false),
        Err(failure) => (result.and(Err(StoreError::Database(failure))), true),
    }
}

fn execute(connection: &Connection, sql: &str) -> Result<(), String> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Runs `jobs` in as few transactions as it can: one, unless a transaction cannot be
/// trusted (SQLite rolled it back by itself, as it does on some I/O errors and when
/// memory runs out, or a job's savepoint could not be closed). Then what ran in it is
/// rolled back and reported failed, and the rest go on in a new one. Nothing is
/// reported committed that did not commit, and nothing is committed that was reported
/// failed.
fn run_in_transactions(connection: &Connection, jobs: Vec<Job>) {
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        // A transaction left open (by a leader that panicked, or a ROLLBACK that
        // failed) would make every BEGIN fail: it is ended first.
        if !connection.is_autocommit() {
            let _ = execute(connection, "ROLLBACK");
        }
        if let Err(failure) = execute(connection, "BEGIN IMMEDIATE") {
            // None of them runs: each is told why.
            for job in jobs {
                (job(Err(&failure)).deliver)(Ok(()));
            }
            return;
        }
        let mut delivers = Vec::new();
        let mut sound = true;
        for job in jobs.by_ref() {
            let ran = job(Ok(connection));
            delivers.push(ran.deliver);
            if ran.in_doubt || connection.is_autocommit() {
                sound = false;
                break;
            }
        }
        let committed = if sound {
            execute(connection, "COMMIT").inspect_err(|_| {
                let _ = execute(connection, "ROLLBACK");
            })
        } else {
            if !connection.is_autocommit() {
                let _ = execute(connection, "ROLLBACK");
            }
            Err("the transaction was rolled back".to_string())
        };
        for deliver in delivers {
            deliver(committed.clone());
        }
    }
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
    fn a_transaction_that_cannot_be_trusted_fails_what_ran_in_it_and_the_rest_go_on() {
        // Job 2 ends the transaction, as SQLite does by itself on some I/O errors, or
        // closes its own savepoint, so that closing it fails and the transaction holds
        // something nobody can vouch for: either way what ran in it is rolled back and
        // reported failed, and job 3 commits in a new one.
        for then in ["ROLLBACK", "RELEASE job"] {
            let connection = table();
            let outcomes = Outcomes::default();
            run_in_transactions(
                &connection,
                vec![
                    insert(&outcomes, 1, None, ""),
                    insert(&outcomes, 2, None, then),
                    insert(&outcomes, 3, None, ""),
                ],
            );
            assert_eq!(stored(&connection), vec![3], "{then}");
            assert_eq!(
                outcomes_of(&outcomes),
                vec![(1, false), (2, false), (3, true)],
                "{then}"
            );
            assert!(connection.is_autocommit(), "{then}");
        }
    }

    #[test]
    fn a_transaction_left_open_is_rolled_back_before_the_next_begins() {
        let connection = table();
        connection
            .execute_batch("BEGIN; INSERT INTO rows (id) VALUES (9);")
            .unwrap();
        let outcomes = Outcomes::default();
        run_in_transactions(&connection, vec![insert(&outcomes, 1, None, "")]);
        assert_eq!(stored(&connection), vec![1]);
        assert_eq!(outcomes_of(&outcomes), vec![(1, true)]);
    }

    #[test]
    fn a_write_queued_while_a_read_holds_the_connection_is_run_when_the_read_ends() {
        let writer = Arc::new(GroupCommit::new(table()));
        let (reading, read_started) = std::sync::mpsc::channel();
        let (finish, finish_read) = std::sync::mpsc::channel::<()>();
        let reader = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                writer.with_connection(|_| {
                    reading.send(()).unwrap();
                    finish_read.recv().unwrap();
                    Ok(())
                })
            })
        };
        read_started.recv().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let write = runtime.spawn({
            let writer = Arc::clone(&writer);
            async move {
                writer
                    .write(|connection| {
                        connection
                            .execute("INSERT INTO rows (id) VALUES (1)", [])
                            .map_err(|error| StoreError::Database(error.to_string()))
                    })
                    .await
            }
        });
        while writer.queue().is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        finish.send(()).unwrap();
        reader.join().unwrap().unwrap();
        // No other write comes: the read's end alone must run the queued one.
        let written = runtime
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(5), write).await
            })
            .expect("the queued write was left behind")
            .unwrap();
        assert_eq!(written.unwrap(), 1);
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

//! The audit trail: an append-only JSON-lines log in which every entry carries the
//! SHA-256 hash of the entry before it, so any edit, deletion or reordering breaks the
//! chain and [`verify`] finds it.

use std::io::{BufRead, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::review::{canonical_json, sha256_hex};

/// The hash the first entry links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An action is about to be attempted.
    Intended,
    /// A check refused it.
    Denied,
    /// A reviewer approved it.
    Approved,
    /// It completed.
    Completed,
    /// It failed.
    Failed,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The engagement.
    pub engagement: String,
    /// The engaging user, if any.
    pub user: Option<String>,
    /// The agent.
    pub agent: String,
    /// What happened.
    pub action: AuditAction,
    /// The tool, guardrail or step concerned.
    pub subject: String,
    /// Details: inputs, reasons. Never a secret.
    pub detail: serde_json::Value,
    /// The hash of the previous entry ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// The hash of this entry, over all the fields above.
    pub hash: String,
}

/// What the caller supplies for one entry.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// The engagement.
    pub engagement: &'a str,
    /// The engaging user, if any.
    pub user: Option<&'a str>,
    /// The agent.
    pub agent: &'a str,
    /// What happened.
    pub action: AuditAction,
    /// The tool, guardrail or step concerned.
    pub subject: &'a str,
    /// Details; never a secret.
    pub detail: serde_json::Value,
}

/// Why the log could not be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Writing or reading failed.
    #[error("audit IO failed: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not an entry.
    #[error("line {line}: not an audit entry: {detail}")]
    Malformed { line: usize, detail: String },
    /// An entry's content does not match its hash: it was edited.
    #[error("line {line}: entry was modified (hash mismatch)")]
    Modified { line: usize },
    /// An entry does not link to the one before: something was deleted or reordered.
    #[error("line {line}: chain broken (an entry was deleted, inserted or reordered)")]
    Broken { line: usize },
}

fn entry_hash(entry: &AuditEntry) -> String {
    let body = serde_json::json!({
        "seq": entry.seq,
        "engagement": entry.engagement,
        "user": entry.user,
        "agent": entry.agent,
        "action": entry.action,
        "subject": entry.subject,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    });
    sha256_hex(canonical_json(&body).as_bytes())
}

struct Chain {
    writer: Box<dyn Write + Send>,
    seq: u64,
    prev_hash: String,
}

/// An append-only, hash-chained log over any writer (a buffered file, a socket).
pub struct AuditLog {
    chain: Mutex<Chain>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Starts a new chain on `writer`.
    pub fn new(writer: Box<dyn Write + Send>) -> Self {
        Self::resume(writer, 0, GENESIS_HASH.to_string())
    }

    /// Continues an existing chain whose last entry had `seq - 1` and `prev_hash`, as
    /// [`verify`] reports them.
    pub fn resume(writer: Box<dyn Write + Send>, seq: u64, prev_hash: String) -> Self {
        AuditLog {
            chain: Mutex::new(Chain {
                writer,
                seq,
                prev_hash,
            }),
        }
    }

    /// A log that discards entries while still computing the chain (benchmarks).
    pub fn sink() -> Self {
        Self::new(Box::new(std::io::sink()))
    }

    /// Appends one entry. An error means the action must not go ahead.
    pub fn append(&self, record: AuditRecord<'_>) -> Result<AuditEntry, AuditError> {
        let mut chain = self
            .chain
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let mut entry = AuditEntry {
            seq: chain.seq,
            engagement: record.engagement.to_string(),
            user: record.user.map(str::to_string),
            agent: record.agent.to_string(),
            action: record.action,
            subject: record.subject.to_string(),
            detail: record.detail,
            prev_hash: chain.prev_hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        let line = serde_json::to_string(&entry)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        chain.writer.write_all(line.as_bytes())?;
        chain.writer.write_all(b"\n")?;
        chain.seq += 1;
        chain.prev_hash = entry.hash.clone();
        Ok(entry)
    }

    /// Flushes the writer.
    pub fn flush(&self) -> Result<(), AuditError> {
        let mut chain = self
            .chain
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        chain.writer.flush()?;
        Ok(())
    }
}

/// What a verified log ends with, so that a caller can compare the head hash with one
/// kept elsewhere (the only way to detect that entries were cut off the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// How many entries there are.
    pub entries: u64,
    /// The last entry's hash ([`GENESIS_HASH`] when empty).
    pub head: String,
}

/// Checks every entry's hash and link.
pub fn verify(reader: impl BufRead) -> Result<VerifiedChain, AuditError> {
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut expected_seq = 0u64;
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry =
            serde_json::from_str(&line).map_err(|error| AuditError::Malformed {
                line: line_number,
                detail: error.to_string(),
            })?;
        if entry_hash(&entry) != entry.hash {
            return Err(AuditError::Modified { line: line_number });
        }
        if entry.prev_hash != prev_hash || entry.seq != expected_seq {
            return Err(AuditError::Broken { line: line_number });
        }
        prev_hash = entry.hash;
        expected_seq += 1;
    }
    Ok(VerifiedChain {
        entries: expected_seq,
        head: prev_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_lines() -> Vec<String> {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone()));
        for (action, subject) in [
            (AuditAction::Intended, "t1"),
            (AuditAction::Approved, "t1"),
            (AuditAction::Completed, "t1"),
            (AuditAction::Denied, "t2"),
        ] {
            log.append(AuditRecord {
                engagement: "e1",
                user: Some("u1"),
                agent: "a",
                action,
                subject,
                detail: serde_json::json!({"n": 1}),
            })
            .unwrap();
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn check(lines: &[String]) -> Result<VerifiedChain, AuditError> {
        verify(lines.join("\n").as_bytes())
    }

    #[test]
    fn intact_log_verifies() {
        let lines = log_lines();
        let chain = check(&lines).unwrap();
        assert_eq!(chain.entries, 4);
    }

    #[test]
    fn edit_is_detected() {
        let mut lines = log_lines();
        lines[1] = lines[1].replace("\"approved\"", "\"denied\"");
        assert!(matches!(
            check(&lines),
            Err(AuditError::Modified { line: 2 })
        ));
    }

    #[test]
    fn deletion_is_detected() {
        let mut lines = log_lines();
        lines.remove(1);
        assert!(matches!(check(&lines), Err(AuditError::Broken { line: 2 })));
        let mut first_removed = log_lines();
        first_removed.remove(0);
        assert!(matches!(
            check(&first_removed),
            Err(AuditError::Broken { line: 1 })
        ));
    }

    #[test]
    fn reordering_is_detected() {
        let mut lines = log_lines();
        lines.swap(1, 2);
        assert!(matches!(check(&lines), Err(AuditError::Broken { line: 2 })));
    }

    #[test]
    fn truncation_changes_the_head() {
        let lines = log_lines();
        let full = check(&lines).unwrap();
        let cut = check(&lines[..3]).unwrap();
        assert_ne!(full.head, cut.head);
    }
}

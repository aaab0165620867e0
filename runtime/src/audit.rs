//! The audit trail: an append-only JSON-lines log in which every entry carries the
//! SHA-256 hash of the entry before it, so any edit, deletion or reordering breaks the
//! chain and [`verify`] finds it.
//!
//! A chain alone does not stop someone who can write the file: they can delete or
//! forge entries and recompute every hash after them. So a log given a signing key
//! ([`AuditLog::with_checkpoints`]) writes signed checkpoints into the trail, as
//! entries of their own: every [`DEFAULT_CHECKPOINT_INTERVAL`] entries (configurable),
//! at the end of every engagement and whenever [`AuditLog::checkpoint`] is called. A
//! checkpoint is an ed25519 signature over the chain's head (the last entry's `seq`
//! and hash), so it covers every entry before it; [`verify_signed`] checks each with
//! the public key alone. Entries after the last checkpoint are not covered, and cutting
//! whole checkpoints off the end is seen only by comparing the head with one kept
//! elsewhere ([`VerifiedChain::head`]).
//!
//! In order: the keys and the checkpoint message they sign; the entry and record types;
//! the line format (fixed-length hash tail, hex helpers, `entry_hash`, bodies in field
//! order); the private `Chain` behind [`AuditLog`]; then [`verify`] and
//! [`verify_signed`]. One file because writer and verifier must agree byte for byte on
//! the tail, the hash and the signed message, and with both beside those private
//! definitions one reading shows that what is written is what is verified.

use std::io::{BufRead, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The hash the first entry links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The version of the entry format written here, in every entry's `v` field. [`verify`]
/// refuses any other version, and an entry without `v` (version 1, written before
/// versions and checkpoints existed) after an entry with one.
pub const FORMAT_VERSION: u64 = 2;

/// How many entries a signing log writes between two checkpoints by default.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;

/// What a checkpoint's signature covers, before the head's `seq` (8 bytes, big endian)
/// and hash (32 bytes): a domain separator, so that the signature cannot be taken for
/// one over anything else the key might sign.
const CHECKPOINT_DOMAIN: &[u8] = b"agentc audit checkpoint v2\0";

/// The secret key that signs a log's checkpoints. Its `Debug` shows only the public
/// key, and its bytes are zeroized when it is dropped.
#[derive(Clone)]
pub struct AuditSigningKey(SigningKey);

impl std::fmt::Debug for AuditSigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuditSigningKey")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    /// The text is not 64 hexadecimal digits (the key's 32 bytes).
    #[error("an audit key must be 64 hexadecimal digits (32 bytes)")]
    NotHex,
    /// The bytes are not an ed25519 public key.
    #[error("not an ed25519 public key")]
    NotAPublicKey,
    /// The OS random source failed, so no key was made.
    #[error("the OS random source failed: {0}")]
    Random(String),
}

impl AuditSigningKey {
    /// A new key from the OS CSPRNG; none is made if it fails.
    pub fn generate() -> Result<Self, AuditKeyError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut_slice())
            .map_err(|error| AuditKeyError::Random(error.to_string()))?;
        Ok(AuditSigningKey(SigningKey::from_bytes(&secret)))
    }

    /// The key written as 64 hexadecimal digits (surrounding whitespace allowed), as
    /// [`AuditSigningKey::to_hex`] writes it.
    pub fn from_hex(text: &str) -> Result<Self, AuditKeyError> {
        let secret = Zeroizing::new(from_hex(text.trim().as_bytes()).ok_or(AuditKeyError::NotHex)?);
        Ok(AuditSigningKey(SigningKey::from_bytes(&secret)))
    }

    /// The secret key as 64 lowercase hexadecimal digits, for the key file only.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(self.0.to_bytes());
        let digits = Zeroizing::new(hex(&secret));
        Zeroizing::new(String::from_utf8_lossy(digits.as_slice()).into_owned())
    }

    /// The public key, which is all a verifier needs.
    pub fn public_key(&self) -> AuditPublicKey {
        AuditPublicKey(self.0.verifying_key())
    }
}

/// The public key that checks a log's checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuditPublicKey(VerifyingKey);

impl std::fmt::Debug for AuditPublicKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "AuditPublicKey({})", self.to_hex())
    }
}

impl AuditPublicKey {
    /// The key written as 64 hexadecimal digits (surrounding whitespace allowed).
    pub fn from_hex(text: &str) -> Result<Self, AuditKeyError> {
        let bytes = from_hex(text.trim().as_bytes()).ok_or(AuditKeyError::NotHex)?;
        VerifyingKey::from_bytes(&bytes)
            .map(AuditPublicKey)
            .map_err(|_| AuditKeyError::NotAPublicKey)
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        String::from_utf8_lossy(&hex(self.0.as_bytes())).into_owned()
    }
}

/// The message a checkpoint signs: the domain, then the head's `seq` and hash.
fn checkpoint_message(head_seq: u64, head: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&head_seq.to_be_bytes());
    message.extend_from_slice(head);
    message
}

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
    /// A shadow restriction's would-be decision (AGX-S1, `decision`: `allowed`,
    /// `refused` with its `reason`, or `review`); nothing was enforced by it.
    Shadow,
    /// A stage whose restriction only observes (AGX-S1): enforcement is off there for
    /// this engagement. Written when the engagement starts, once per such stage.
    ObserveOnly,
}

/// One entry of the log (a checkpoint is a [`CheckpointEntry`] instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The format version ([`FORMAT_VERSION`]; 1 when absent, as in trails written
    /// before versions existed).
    #[serde(default = "legacy_version")]
    pub v: u64,
    /// Position in the log, from 0.
    pub seq: u64,
    /// The engagement.
    pub engagement: String,
    /// The engagement that engaged this one, for an agent called as a tool; following
    /// the parents leads to the engagement the user started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
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
    /// The hash of this entry: the SHA-256 of the previous hash (its 32 bytes) and of
    /// the entry's text up to and including `detail`.
    pub hash: String,
}

fn legacy_version() -> u64 {
    1
}

/// A signed checkpoint, an entry of its own in the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEntry {
    /// The format version.
    pub v: u64,
    /// Position in the log.
    pub seq: u64,
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// The hash of the previous entry: the head the checkpoint signs.
    pub prev_hash: String,
    /// The hash of this entry, as for any entry.
    pub hash: String,
}

/// What a checkpoint says: the chain's head when it was written, signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The `seq` of the last entry covered (the one just before the checkpoint).
    pub head_seq: u64,
    /// That entry's hash.
    pub head: String,
    /// The public key that signed, in hexadecimal (informative: a verifier uses the key
    /// it was given, never this one).
    pub key: String,
    /// The ed25519 signature, in hexadecimal, of the domain `agentc audit checkpoint
    /// v2` and a zero byte, `head_seq` as 8 big-endian bytes and the head's 32 bytes.
    pub signature: String,
}

/// What the caller supplies for one entry.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// The engagement.
    pub engagement: &'a str,
    /// The engagement that engaged this one, if any.
    pub parent: Option<&'a str>,
    /// The engaging user, if any.
    pub user: Option<&'a str>,
    /// The agent.
    pub agent: &'a str,
    /// What happened.
    pub action: AuditAction,
    /// The tool, guardrail or step concerned.
    pub subject: &'a str,
    /// Details; never a secret.
    pub detail: AuditDetail<'a>,
}

/// The details of one entry, borrowed from the caller so that appending copies nothing
/// but the bytes it writes. Absent fields are left out of the entry's `detail` object.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AuditDetail<'a> {
    /// The input of an intended call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<&'a serde_json::Value>,
    /// Whether the action is a guardrail's (OAS-G2..G5).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub guardrail: bool,
    /// The enforcement step that denied or approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'a str>,
    /// Why a call was denied or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The hash of the exact call a reviewer approved (OAS-C7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_hash: Option<&'a str>,
    /// A shadow restriction's would-be decision (AGX-S1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a str>,
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
    /// An entry is of a format version this verifier does not know.
    #[error("line {line}: unsupported entry format version {version}")]
    Version { line: usize, version: String },
    /// A checkpoint does not name the entry before it as its head, or its signature
    /// does not verify with the key: the trail before it was rewritten, or the
    /// checkpoint forged.
    #[error("line {line}: checkpoint does not verify: {detail}")]
    Checkpoint { line: usize, detail: String },
}

/// How an entry ends: `,"prev_hash":"PREV","hash":"HASH"}`, where both are 64
/// lowercase hexadecimal digits. Everything before this tail is the entry's body: its
/// JSON object up to and including `detail`, unclosed. `HASH` is the SHA-256 of the
/// previous entry's hash as its 32 raw bytes followed by exactly the body's bytes.
///
/// Hashing the bytes as written (rather than a re-serialised, canonical form) lets an
/// append hash what it has just encoded, once, and lets [`verify`] check a line without
/// trusting any JSON library to reproduce the writer's formatting. The previous hash
/// enters the hash as 32 raw bytes rather than as the 78 bytes of its text field, which
/// is one 64-byte SHA-256 block fewer for most entries; the chain is as strong, as
/// every hash still covers the hash before it. The tail has a fixed length, so
/// [`verify`] splits a line at a fixed offset, whatever its values contain.
const PREV_HASH_FIELD: &[u8] = b",\"prev_hash\":\"";
/// What separates the two hashes of the tail.
const HASH_FIELD: &[u8] = b"\",\"hash\":\"";
/// What closes the tail, and the entry.
const TAIL_END: &[u8] = b"\"}";
/// The length of the tail: both fields, their 64-digit values and the closing `"}`.
const TAIL_LENGTH: usize = PREV_HASH_FIELD.len() + 64 + HASH_FIELD.len() + 64 + TAIL_END.len();

/// 32 bytes as 64 lowercase hexadecimal digits.
fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    let digit = |nibble: u8| nibble + if nibble < 10 { b'0' } else { b'a' - 10 };
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&[digit(byte >> 4), digit(byte & 0x0f)]);
    }
    text
}

/// Any bytes as lowercase hexadecimal digits.
fn hex_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Hexadecimal digits as the bytes they spell; `None` unless exactly `N` bytes.
fn from_hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let &[high, low] = pair else {
            return None;
        };
        *byte = u8::try_from(digit(high)? * 16 + digit(low)?).ok()?;
    }
    Some(bytes)
}

/// The SHA-256 of `bytes` as 64 lowercase hexadecimal digits.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&hex(&Sha256::digest(bytes).into())).into_owned()
}

/// The hash of an entry: the SHA-256 of the previous entry's hash, raw, and the body.
fn entry_hash(previous: &[u8; 32], body: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(previous)
        .chain_update(body)
        .finalize()
        .into()
}

/// 64 hexadecimal digits (either case) as the 32 bytes they spell.
fn from_hex(text: &[u8]) -> Option<[u8; 32]> {
    from_hex_array(text)
}

/// An entry's body as it is written: these fields, in this order, as `serde_json`
/// writes them, without the closing brace (the tail closes the entry).
#[derive(Serialize)]
struct EntryBody<'a> {
    v: u64,
    seq: u64,
    engagement: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    user: Option<&'a str>,
    agent: &'a str,
    action: AuditAction,
    subject: &'a str,
    detail: &'a AuditDetail<'a>,
}

/// A checkpoint's body, as [`EntryBody`] for an entry.
#[derive(Serialize)]
struct CheckpointBody<'a> {
    v: u64,
    seq: u64,
    checkpoint: &'a Checkpoint,
}

/// The JSON text of `body` without its closing brace: what an entry's hash covers
/// after the previous hash.
fn open_body(body: &impl Serialize) -> Result<Vec<u8>, AuditError> {
    let mut text = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    match text.pop() {
        Some(b'}') => Ok(text),
        _ => Err(std::io::Error::other("an entry body is not a JSON object").into()),
    }
}

struct Chain {
    writer: Box<dyn Write + Send>,
    seq: u64,
    /// The last entry's hash, which the next entry's hash covers and its `prev_hash`
    /// field names.
    prev_hash: [u8; 32],
    /// The key and interval of signed checkpoints; `None` writes none.
    signing: Option<Signing>,
}

struct Signing {
    key: AuditSigningKey,
    /// The key's public half in hexadecimal, as each checkpoint names it.
    public_key: String,
    /// How many entries between two checkpoints at most.
    every: u64,
    /// How many entries were written since the last checkpoint (or since the log was
    /// started or resumed).
    since_checkpoint: u64,
}

impl Chain {
    /// Hashes `body`, closes the line with its tail and writes it; the chain moves on
    /// only if the write did.
    fn seal(&mut self, body: Vec<u8>) -> Result<(), AuditError> {
        let hash = entry_hash(&self.prev_hash, &body);
        let mut line = body;
        line.extend_from_slice(PREV_HASH_FIELD);
        line.extend_from_slice(&hex(&self.prev_hash));
        line.extend_from_slice(HASH_FIELD);
        line.extend_from_slice(&hex(&hash));
        line.extend_from_slice(TAIL_END);
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.seq += 1;
        self.prev_hash = hash;
        Ok(())
    }

    /// Writes a checkpoint over the current head, if the log signs and an entry was
    /// written since the last one; says whether it wrote one.
    fn checkpoint(&mut self) -> Result<bool, AuditError> {
        let Some(signing) = &self.signing else {
            return Ok(false);
        };
        if signing.since_checkpoint == 0 {
            return Ok(false);
        }
        let Some(head_seq) = self.seq.checked_sub(1) else {
            return Ok(false);
        };
        let signature = signing
            .key
            .0
            .sign(&checkpoint_message(head_seq, &self.prev_hash));
        let checkpoint = Checkpoint {
            head_seq,
            head: String::from_utf8_lossy(&hex(&self.prev_hash)).into_owned(),
            key: signing.public_key.clone(),
            signature: hex_text(&signature.to_bytes()),
        };
        let body = open_body(&CheckpointBody {
            v: FORMAT_VERSION,
            seq: self.seq,
            checkpoint: &checkpoint,
        })?;
        self.seal(body)?;
        if let Some(signing) = &mut self.signing {
            signing.since_checkpoint = 0;
        }
        tracing::info!(
            seq = head_seq,
            head = %checkpoint.head,
            "audit checkpoint signed"
        );
        Ok(true)
    }
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
    /// [`verify`] reports them. A `prev_hash` that is not 64 hexadecimal digits cannot
    /// be linked to, so the chain continues from a hash no entry has, which [`verify`]
    /// reports as a broken chain rather than letting the log look intact.
    pub fn resume(writer: Box<dyn Write + Send>, seq: u64, prev_hash: String) -> Self {
        // An all-ones hash is no entry's (SHA-256 is not known to give it), so what
        // follows an unreadable `prev_hash` does not link.
        let prev_hash = from_hex(prev_hash.as_bytes()).unwrap_or([0xff; 32]);
        AuditLog {
            chain: Mutex::new(Chain {
                writer,
                seq,
                prev_hash,
                signing: None,
            }),
        }
    }

    /// Makes the log sign checkpoints with `key`: after every `every` entries (at
    /// least 1), and whenever [`AuditLog::checkpoint`] is called after an entry.
    pub fn with_checkpoints(self, key: AuditSigningKey, every: u64) -> Self {
        let mut chain = match self.chain.into_inner() {
            Ok(chain) => chain,
            Err(poisoned) => poisoned.into_inner(),
        };
        chain.signing = Some(Signing {
            public_key: key.public_key().to_hex(),
            key,
            every: every.max(1),
            since_checkpoint: 0,
        });
        AuditLog {
            chain: Mutex::new(chain),
        }
    }

    /// Signs a checkpoint over the chain's head now (the end of an engagement, a
    /// shutdown), if the log signs and an entry was written since the last one. Says
    /// whether one was written.
    pub fn checkpoint(&self) -> Result<bool, AuditError> {
        let mut chain = self
            .chain
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        chain.checkpoint()
    }

    /// A log that writes nowhere (it still computes the chain): for tests and
    /// benchmarks, and for a runtime whose owner decided to keep no trail — named so
    /// that it is never chosen by accident.
    pub fn discard() -> Self {
        Self::new(Box::new(std::io::sink()))
    }

    /// Appends one entry. An error means the action must not go ahead.
    pub fn append(&self, record: AuditRecord<'_>) -> Result<(), AuditError> {
        let mut guard = self
            .chain
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let chain = &mut *guard;
        let body = open_body(&EntryBody {
            v: FORMAT_VERSION,
            seq: chain.seq,
            engagement: record.engagement,
            parent: record.parent,
            user: record.user,
            agent: record.agent,
            action: record.action,
            subject: record.subject,
            detail: &record.detail,
        })?;
        chain.seal(body)?;
        // The checkpoint due after this entry; if it cannot be written the entry
        // stands, but the action does not go ahead, and the next entry tries again.
        if let Some(signing) = &mut chain.signing {
            signing.since_checkpoint += 1;
            if signing.since_checkpoint >= signing.every {
                chain.checkpoint()?;
            }
        }
        Ok(())
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
/// kept elsewhere (the only way to detect that whole checkpoints were cut off the end),
/// and how much of it the checkpoints cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// How many entries there are, checkpoints included.
    pub entries: u64,
    /// The last entry's hash ([`GENESIS_HASH`] when empty).
    pub head: String,
    /// How many checkpoints there are.
    pub checkpoints: u64,
    /// How many entries, from the first, the last checkpoint covers (itself included);
    /// 0 when there is none.
    pub signed_entries: u64,
    /// Whether each checkpoint's signature was checked ([`verify_signed`]) or only its
    /// place in the chain ([`verify`]).
    pub signatures_checked: bool,
}

impl VerifiedChain {
    /// How many entries at the end no checkpoint covers: written after the last one
    /// (an engagement still running), or written, edited or cut by someone else.
    pub fn unsigned_entries(&self) -> u64 {
        self.entries.saturating_sub(self.signed_entries)
    }
}

/// The body, previous hash and hash of an entry's line, split at its fixed-length tail;
/// `None` when the line does not end with the tail.
fn split_entry(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (body, tail) = line.split_at_checked(line.len().checked_sub(TAIL_LENGTH)?)?;
    let rest = tail.strip_prefix(PREV_HASH_FIELD)?;
    let (prev_hash, rest) = rest.split_at_checked(64)?;
    let rest = rest.strip_prefix(HASH_FIELD)?;
    let (hash, rest) = rest.split_at_checked(64)?;
    (rest == TAIL_END).then_some((body, prev_hash, hash))
}

/// The fields that say what kind of line an entry is, read before the rest.
#[derive(Deserialize)]
struct LineKind {
    /// `None` only when absent: a `null` is a version, and not one that is known.
    #[serde(default, deserialize_with = "present")]
    v: Option<serde_json::Value>,
    #[serde(default)]
    checkpoint: Option<serde::de::IgnoredAny>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// Checks every entry's hash and link, and that each checkpoint names the entry before
/// it as its head; it does not check signatures (see [`verify_signed`]), so it proves
/// nothing against someone who recomputes the chain.
pub fn verify(reader: impl BufRead) -> Result<VerifiedChain, AuditError> {
    verify_with(reader, None)
}

/// [`verify`], and also every checkpoint's signature with `key`. What it proves is that
/// the holder of the secret key signed each checkpoint's head, so every entry up to
/// the last checkpoint ([`VerifiedChain::signed_entries`]) is as it was then; entries
/// after it are not proven ([`VerifiedChain::unsigned_entries`]), and a trail cut back
/// to a checkpoint is seen only by comparing [`VerifiedChain::head`] with a head kept
/// elsewhere.
pub fn verify_signed(
    reader: impl BufRead,
    key: &AuditPublicKey,
) -> Result<VerifiedChain, AuditError> {
    verify_with(reader, Some(key))
}

fn verify_with(
    reader: impl BufRead,
    key: Option<&AuditPublicKey>,
) -> Result<VerifiedChain, AuditError> {
    let mut prev_hash = [0u8; 32];
    let mut prev_hash_text = hex(&prev_hash);
    let mut expected_seq = 0u64;
    let mut versioned = false;
    let mut checkpoints = 0u64;
    let mut signed_entries = 0u64;
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |detail: String| AuditError::Malformed {
            line: line_number,
            detail,
        };
        let kind: LineKind =
            serde_json::from_str(&line).map_err(|error| malformed(error.to_string()))?;
        // Version 1 entries (no `v`) may only begin a trail that later entries
        // continue in version 2, never follow one.
        match &kind.v {
            None if !versioned && kind.checkpoint.is_none() => {}
            Some(serde_json::Value::Number(number)) if number.as_u64() == Some(FORMAT_VERSION) => {
                versioned = true;
            }
            other => {
                return Err(AuditError::Version {
                    line: line_number,
                    version: match other {
                        Some(value) => value.to_string(),
                        None if kind.checkpoint.is_some() => {
                            "1 (no `v`), which has no checkpoints".into()
                        }
                        None => "1 (no `v`) after a version 2 entry".into(),
                    },
                });
            }
        }
        let (seq, written_prev, written, checkpoint) = if kind.checkpoint.is_some() {
            let entry: CheckpointEntry =
                serde_json::from_str(&line).map_err(|error| malformed(error.to_string()))?;
            (
                entry.seq,
                entry.prev_hash,
                entry.hash,
                Some(entry.checkpoint),
            )
        } else {
            let entry: AuditEntry =
                serde_json::from_str(&line).map_err(|error| malformed(error.to_string()))?;
            (entry.seq, entry.prev_hash, entry.hash, None)
        };
        let (body, written_prev_hash, written_hash) = split_entry(line.trim_end().as_bytes())
            .ok_or_else(|| {
                malformed("the entry does not end with its `prev_hash` and `hash` fields".into())
            })?;
        // A line that names another previous entry, or stands at another position, is
        // out of place: something before it was deleted, inserted or reordered.
        if written_prev_hash != prev_hash_text
            || written_prev.as_bytes() != written_prev_hash
            || seq != expected_seq
        {
            return Err(AuditError::Broken { line: line_number });
        }
        let hash = entry_hash(&prev_hash, body);
        let hash_text = hex(&hash);
        if hash_text != written_hash || written.as_bytes() != written_hash {
            return Err(AuditError::Modified { line: line_number });
        }
        if let Some(checkpoint) = checkpoint {
            check_checkpoint(&checkpoint, seq, &prev_hash, &prev_hash_text, key).map_err(
                |detail| AuditError::Checkpoint {
                    line: line_number,
                    detail,
                },
            )?;
            checkpoints += 1;
            signed_entries = seq.saturating_add(1);
        }
        prev_hash = hash;
        prev_hash_text = hash_text;
        expected_seq += 1;
    }
    Ok(VerifiedChain {
        entries: expected_seq,
        head: String::from_utf8_lossy(&prev_hash_text).into_owned(),
        checkpoints,
        signed_entries,
        signatures_checked: key.is_some(),
    })
}

/// Whether a checkpoint at `seq` names the entry before it (`head`) and, with a key,
/// carries that key's signature over it.
fn check_checkpoint(
    checkpoint: &Checkpoint,
    seq: u64,
    head: &[u8; 32],
    head_text: &[u8; 64],
    key: Option<&AuditPublicKey>,
) -> Result<(), String> {
    if seq.checked_sub(1) != Some(checkpoint.head_seq) || checkpoint.head.as_bytes() != head_text {
        return Err("it does not name the entry before it as its head".into());
    }
    let Some(key) = key else {
        return Ok(());
    };
    let signature = from_hex_array::<64>(checkpoint.signature.as_bytes())
        .ok_or_else(|| "its signature is not 128 hexadecimal digits".to_string())?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    if key
        .0
        .verify_strict(&checkpoint_message(checkpoint.head_seq, head), &signature)
        .is_err()
    {
        let expected = key.to_hex();
        return Err(if checkpoint.key.eq_ignore_ascii_case(&expected) {
            "the signature does not verify with the given key".into()
        } else {
            format!(
                "the signature does not verify with the given key (the checkpoint names key {:?})",
                checkpoint.key
            )
        });
    }
    Ok(())
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
                parent: None,
                user: Some("u1"),
                agent: "a",
                action,
                subject,
                detail: AuditDetail {
                    stage: Some("n"),
                    ..AuditDetail::default()
                },
            })
            .unwrap();
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn check(lines: &[String]) -> Result<VerifiedChain, AuditError> {
        verify(lines.join("\n").as_bytes())
    }

    /// The entry format, pinned: fields in order, absent ones left out of `detail`,
    /// text escaped as JSON, the tail's two hashes last. Trails are verified from the
    /// bytes written, so an old trail verifies whatever encoder wrote it; this keeps new
    /// ones in the format `docs/SECURITY.md` and the verifier describe.
    #[test]
    fn an_entry_is_written_in_the_documented_format() {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone()));
        let inputs = serde_json::json!({"q": "a \"b\"\n", "n": [1, 2.5, null, true]});
        log.append(AuditRecord {
            engagement: "e-1",
            parent: Some("e-0"),
            user: None,
            agent: "hr",
            action: AuditAction::Denied,
            subject: "kb_search",
            detail: AuditDetail {
                inputs: Some(&inputs),
                guardrail: true,
                stage: Some("input_restriction"),
                reason: Some("denied: \\ \u{1}"),
                call_hash: None,
                decision: None,
            },
        })
        .unwrap();
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().next().unwrap();
        let expected_body = r#"{"v":2,"seq":0,"engagement":"e-1","parent":"e-0","user":null,"agent":"hr","action":"denied","subject":"kb_search","detail":{"inputs":{"q":"a \"b\"\n","n":[1,2.5,null,true]},"guardrail":true,"stage":"input_restriction","reason":"denied: \\ \u0001"}"#;
        let hash = hex(&entry_hash(&[0; 32], expected_body.as_bytes()));
        assert_eq!(
            line,
            format!(
                "{expected_body},\"prev_hash\":\"{GENESIS_HASH}\",\"hash\":\"{}\"}}",
                String::from_utf8_lossy(&hash)
            )
        );
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
    fn a_hash_marker_inside_a_value_does_not_confuse_verification() {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone()));
        let inputs = serde_json::json!({"q": ",\"hash\":\"00\"}"});
        log.append(AuditRecord {
            engagement: "e1",
            parent: None,
            user: None,
            agent: "a",
            action: AuditAction::Intended,
            subject: ",\"hash\":\"",
            detail: AuditDetail {
                inputs: Some(&inputs),
                ..AuditDetail::default()
            },
        })
        .unwrap();
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().entries, 1);
        // Changing the embedded text is still an edit.
        let edited = text.replace("\\\"00", "\\\"01");
        assert_ne!(edited, text);
        assert!(matches!(
            verify(edited.as_bytes()),
            Err(AuditError::Modified { line: 1 })
        ));
    }

    #[test]
    fn each_entry_is_one_json_object_with_every_field() {
        let lines = log_lines();
        let entry: AuditEntry = serde_json::from_str(&lines[3]).unwrap();
        assert_eq!(entry.seq, 3);
        assert_eq!(entry.action, AuditAction::Denied);
        assert_eq!(entry.detail, serde_json::json!({"stage": "n"}));
        let previous: AuditEntry = serde_json::from_str(&lines[2]).unwrap();
        assert_eq!(entry.prev_hash, previous.hash);
    }

    /// The names kept from one entry to the next are never written into an entry for
    /// other names: engagements, users (present, absent, present), agents and subjects
    /// that alternate, as on a log that several engagements share, are each written
    /// as given.
    #[test]
    fn each_entry_names_its_own_engagement_user_agent_and_subject() {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone()));
        let records = [
            ("e1", Some("u1"), "a", "t1"),
            ("e1", Some("u1"), "a", "t1"),
            ("e2", None, "a", "t1"),
            ("e2", Some("u\"2"), "a", "t2"),
            ("e2", Some("u3"), "b", "t2"),
            ("e1", Some("u1"), "a", "t1"),
            ("e1", Some("u1"), "a", ""),
        ];
        for (engagement, user, agent, subject) in records {
            log.append(AuditRecord {
                engagement,
                parent: None,
                user,
                agent,
                action: AuditAction::Completed,
                subject,
                detail: AuditDetail::default(),
            })
            .unwrap();
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().entries, 7);
        for (line, (engagement, user, agent, subject)) in text.lines().zip(records) {
            let entry: AuditEntry = serde_json::from_str(line).unwrap();
            assert_eq!(entry.engagement, engagement);
            assert_eq!(entry.user.as_deref(), user);
            assert_eq!(entry.agent, agent);
            assert_eq!(entry.subject, subject);
            assert_eq!(entry.detail, serde_json::json!({}));
        }
    }

    #[test]
    fn hashes_are_sha256_in_lowercase_hexadecimal() {
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Each hash covers the one before it: an entry whose body is exactly that of the
    /// entry it replaces, taken from a log with another predecessor and with its
    /// `prev_hash` text rewritten to match, does not verify; and an entry whose
    /// `prev_hash` text alone was changed is out of place.
    #[test]
    fn each_hash_covers_the_previous_hash() {
        let two_entries = |first_subject: &str| {
            let buffer = Shared::default();
            let log = AuditLog::new(Box::new(buffer.clone()));
            for subject in [first_subject, "t"] {
                log.append(AuditRecord {
                    engagement: "e1",
                    parent: None,
                    user: None,
                    agent: "a",
                    action: AuditAction::Completed,
                    subject,
                    detail: AuditDetail::default(),
                })
                .unwrap();
            }
            let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        let (original, other) = (two_entries("x"), two_entries("y"));
        let hash_of = |line: &str| serde_json::from_str::<AuditEntry>(line).unwrap().hash;
        assert_eq!(check(&original).unwrap().entries, 2);
        let spliced = vec![
            original[0].clone(),
            other[1].replace(&hash_of(&other[0]), &hash_of(&original[0])),
        ];
        // Everything but the hash is now what the original second line says.
        assert_eq!(
            spliced[1].replace(&hash_of(&spliced[1]), ""),
            original[1].replace(&hash_of(&original[1]), "")
        );
        assert!(matches!(
            check(&spliced),
            Err(AuditError::Modified { line: 2 })
        ));
        let mut relinked = original.clone();
        relinked[1] = relinked[1].replace(&hash_of(&original[0]), GENESIS_HASH);
        assert!(matches!(
            check(&relinked),
            Err(AuditError::Broken { line: 2 })
        ));
    }

    /// A log resumed from what [`verify`] reports continues the same chain, and a
    /// resumed head that is not a hash breaks it rather than starting a new one.
    #[test]
    fn a_resumed_log_continues_the_chain() {
        let lines = log_lines();
        let head = check(&lines).unwrap();
        let append_one = |prev_hash: String| {
            let buffer = Shared::default();
            let log = AuditLog::resume(Box::new(buffer.clone()), head.entries, prev_hash);
            log.append(AuditRecord {
                engagement: "e1",
                parent: None,
                user: None,
                agent: "a",
                action: AuditAction::Completed,
                subject: "t3",
                detail: AuditDetail::default(),
            })
            .unwrap();
            let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            let mut all = lines.clone();
            all.push(text.trim_end().to_string());
            all
        };
        assert_eq!(check(&append_one(head.head.clone())).unwrap().entries, 5);
        assert!(matches!(
            check(&append_one("not a hash".into())),
            Err(AuditError::Broken { line: 5 })
        ));
    }

    #[test]
    fn a_line_without_its_hash_fields_is_malformed() {
        let mut lines = log_lines();
        lines[0] = serde_json::to_string(&serde_json::from_str::<AuditEntry>(&lines[0]).unwrap())
            .unwrap()
            .replace(",\"hash\"", ", \"hash\"");
        assert!(matches!(
            check(&lines),
            Err(AuditError::Malformed { line: 1, .. })
        ));
    }

    /// The entry hash is SHA-256 over the previous hash and the body, at every length
    /// around the block and padding boundaries, and with a buffer left from a longer
    /// message.
    #[test]
    fn entry_hashes_are_sha256_of_the_previous_hash_and_the_body() {
        let previous = [0xa5u8; 32];
        let body = b"{\"v\":2";
        let mut expected = Sha256::new();
        expected.update(previous);
        expected.update(body);
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(entry_hash(&previous, body), expected);
    }

    #[test]
    fn truncation_changes_the_head() {
        let lines = log_lines();
        let full = check(&lines).unwrap();
        let cut = check(&lines[..3]).unwrap();
        assert_ne!(full.head, cut.head);
    }

    /// A fixed key for tests (never used outside them).
    fn test_key() -> AuditSigningKey {
        AuditSigningKey::from_hex(&"7".repeat(64)).unwrap()
    }

    /// A signing log's lines: for each `(action, subject)`, an entry of engagement
    /// `e1`; `end` calls for a checkpoint as an engagement's end does.
    fn signed_lines(entries: &[(AuditAction, &str)], every: u64, end: bool) -> Vec<String> {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone())).with_checkpoints(test_key(), every);
        for &(action, subject) in entries {
            log.append(AuditRecord {
                engagement: "e1",
                parent: None,
                user: Some("u1"),
                agent: "a",
                action,
                subject,
                detail: AuditDetail::default(),
            })
            .unwrap();
        }
        if end {
            log.checkpoint().unwrap();
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    const CALLS: [(AuditAction, &str); 6] = [
        (AuditAction::Intended, "t1"),
        (AuditAction::Completed, "t1"),
        (AuditAction::Intended, "t2"),
        (AuditAction::Denied, "t2"),
        (AuditAction::Intended, "t3"),
        (AuditAction::Completed, "t3"),
    ];

    fn check_signed(lines: &[String]) -> Result<VerifiedChain, AuditError> {
        verify_signed(lines.join("\n").as_bytes(), &test_key().public_key())
    }

    /// What someone with write access does to hide an edit: renumber every line and
    /// recompute every hash after the first line that changed. With `rehead`, each
    /// checkpoint is also made to name its new head (its signature cannot follow).
    fn rechain(lines: &[String], rehead: bool) -> Vec<String> {
        let mut previous = [0u8; 32];
        let mut out = Vec::new();
        for (seq, line) in lines.iter().enumerate() {
            let (body, _, _) = split_entry(line.as_bytes()).unwrap();
            let mut value: serde_json::Value =
                serde_json::from_slice(&[body, b"}"].concat()).unwrap();
            value["seq"] = serde_json::json!(seq);
            if rehead && let Some(checkpoint) = value.get_mut("checkpoint") {
                checkpoint["head_seq"] = serde_json::json!(seq - 1);
                checkpoint["head"] = serde_json::json!(String::from_utf8_lossy(&hex(&previous)));
            }
            let text = serde_json::to_string(&value).unwrap();
            let body = &text.as_bytes()[..text.len() - 1];
            let hash = entry_hash(&previous, body);
            out.push(format!(
                "{},\"prev_hash\":\"{}\",\"hash\":\"{}\"}}",
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&hex(&previous)),
                String::from_utf8_lossy(&hex(&hash))
            ));
            previous = hash;
        }
        out
    }

    #[test]
    fn a_signed_trail_verifies_with_a_checkpoint_every_n_entries_and_at_the_end() {
        let lines = signed_lines(&CALLS, 4, true);
        // Six entries, a checkpoint after the fourth and one at the end.
        assert_eq!(lines.len(), 8);
        for index in [4, 7] {
            let checkpoint: CheckpointEntry = serde_json::from_str(&lines[index]).unwrap();
            assert_eq!(checkpoint.v, FORMAT_VERSION);
            assert_eq!(checkpoint.checkpoint.head_seq, index as u64 - 1);
            assert_eq!(checkpoint.checkpoint.key, test_key().public_key().to_hex());
        }
        let chain = check_signed(&lines).unwrap();
        assert_eq!(chain.entries, 8);
        assert_eq!(chain.checkpoints, 2);
        assert_eq!(chain.signed_entries, 8);
        assert_eq!(chain.unsigned_entries(), 0);
        assert!(chain.signatures_checked);
        assert_eq!(
            chain,
            VerifiedChain {
                signatures_checked: true,
                ..check(&lines).unwrap()
            }
        );
        // No checkpoint over a head that already has one, and none over an empty log.
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone())).with_checkpoints(test_key(), 4);
        assert!(!log.checkpoint().unwrap());
        let lines = signed_lines(&CALLS[..4], 4, true);
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn deleting_denied_entries_and_recomputing_the_chain_fails_signed_verification() {
        let lines = signed_lines(&CALLS, 100, true);
        let without_denied: Vec<String> = lines
            .iter()
            .filter(|line| !line.contains("\"denied\""))
            .cloned()
            .collect();
        assert_eq!(without_denied.len(), lines.len() - 1);
        // The chain alone is fooled; the checkpoint is not, whether it still names the
        // old head or is made to name the new one.
        let recomputed = rechain(&without_denied, false);
        assert!(matches!(
            check(&recomputed),
            Err(AuditError::Checkpoint { line: 6, .. })
        ));
        let reheaded = rechain(&without_denied, true);
        assert_eq!(check(&reheaded).unwrap().entries, 6);
        assert!(matches!(
            check_signed(&reheaded),
            Err(AuditError::Checkpoint { line: 6, .. })
        ));
        // Dropping the checkpoints too leaves nothing signed.
        let unsigned = rechain(
            &without_denied
                .iter()
                .filter(|line| !line.contains("\"checkpoint\""))
                .cloned()
                .collect::<Vec<_>>(),
            false,
        );
        let chain = check_signed(&unsigned).unwrap();
        assert_eq!((chain.checkpoints, chain.signed_entries), (0, 0));
        assert_eq!(chain.unsigned_entries(), 5);
    }

    #[test]
    fn a_forged_approved_entry_fails_signed_verification() {
        let lines = signed_lines(&CALLS, 100, true);
        let mut forged = lines.clone();
        forged.insert(3, lines[2].replace("\"intended\"", "\"approved\""));
        assert!(matches!(
            check_signed(&rechain(&forged, true)),
            Err(AuditError::Checkpoint { line: 8, .. })
        ));
        // Turning the denial into an approval, likewise.
        let mut edited = lines.clone();
        edited[3] = edited[3].replace("\"denied\"", "\"approved\"");
        assert!(matches!(
            check_signed(&rechain(&edited, true)),
            Err(AuditError::Checkpoint { line: 7, .. })
        ));
        // A checkpoint signed with another key, or forged, does not verify.
        let other = AuditSigningKey::from_hex(&"8".repeat(64)).unwrap();
        let result = verify_signed(lines.join("\n").as_bytes(), &other.public_key());
        assert!(
            matches!(&result, Err(AuditError::Checkpoint { line: 7, detail }) if detail.contains("names key")),
            "{result:?}"
        );
        let mut bad_signature = lines.clone();
        let signature: CheckpointEntry = serde_json::from_str(&lines[6]).unwrap();
        let flipped = format!("0{}", &signature.checkpoint.signature[1..]);
        let flipped = if flipped == signature.checkpoint.signature {
            format!("1{}", &signature.checkpoint.signature[1..])
        } else {
            flipped
        };
        bad_signature[6] = lines[6].replace(&signature.checkpoint.signature, &flipped);
        assert!(matches!(
            check_signed(&rechain(&bad_signature, false)),
            Err(AuditError::Checkpoint { line: 7, .. })
        ));
    }

    #[test]
    fn dropped_last_lines_are_reported_as_unsigned_or_by_the_head() {
        let lines = signed_lines(&CALLS, 4, true);
        let full = check_signed(&lines).unwrap();
        // Cut inside the last stretch: the entries after the last checkpoint are
        // reported as not covered.
        let cut = check_signed(&lines[..6]).unwrap();
        assert_eq!(cut.signed_entries, 5);
        assert_eq!(cut.unsigned_entries(), 1);
        // Cut back to a checkpoint: everything left is signed, and only the head
        // kept elsewhere shows what is missing.
        let cut = check_signed(&lines[..5]).unwrap();
        assert_eq!(cut.unsigned_entries(), 0);
        assert_ne!(cut.head, full.head);
    }

    #[test]
    fn unknown_format_versions_are_refused() {
        let lines = log_lines();
        assert!(lines[0].starts_with("{\"v\":2,\"seq\":0,"));
        for version in ["3", "\"2\"", "1", "null"] {
            let mut edited = lines.clone();
            edited[0] = edited[0].replacen("\"v\":2", &format!("\"v\":{version}"), 1);
            assert!(
                matches!(
                    check(&rechain(&edited, false)),
                    Err(AuditError::Version { line: 1, .. })
                ),
                "{version}"
            );
        }
        // Version 1 lines (no `v`) may begin a trail, never follow a version 2 line.
        let legacy: Vec<String> = lines
            .iter()
            .map(|line| line.replacen("{\"v\":2,", "{", 1))
            .collect();
        assert_eq!(check(&rechain(&legacy, false)).unwrap().entries, 4);
        let mut mixed = lines.clone();
        mixed[3] = legacy[3].clone();
        assert!(matches!(
            check(&rechain(&mixed, false)),
            Err(AuditError::Version { line: 4, .. })
        ));
        let mut upgraded = legacy.clone();
        upgraded[3] = lines[3].clone();
        assert_eq!(check(&rechain(&upgraded, false)).unwrap().entries, 4);
    }

    #[test]
    fn the_signing_key_is_never_printed() {
        let key = test_key();
        let secret = key.to_hex();
        let debug = format!("{key:?}");
        assert!(!debug.contains(secret.as_str()), "{debug}");
        assert!(debug.contains(&key.public_key().to_hex()));
        assert_eq!(
            AuditSigningKey::from_hex(&format!(" {}\n", *secret))
                .unwrap()
                .public_key(),
            key.public_key()
        );
        assert!(matches!(
            AuditSigningKey::from_hex("abc"),
            Err(AuditKeyError::NotHex)
        ));
        let generated = AuditSigningKey::generate().unwrap();
        assert_ne!(
            generated.public_key(),
            AuditSigningKey::generate().unwrap().public_key()
        );
        assert_eq!(
            AuditPublicKey::from_hex(&generated.public_key().to_hex()).unwrap(),
            generated.public_key()
        );
    }

    #[test]
    fn a_nested_entry_names_its_parent() {
        let buffer = Shared::default();
        let log = AuditLog::new(Box::new(buffer.clone()));
        for parent in [Some("root-1"), Some("root-1"), None, Some("root-\"2")] {
            log.append(AuditRecord {
                engagement: "inner-1",
                parent,
                user: None,
                agent: "a",
                action: AuditAction::Completed,
                subject: "t",
                detail: AuditDetail::default(),
            })
            .unwrap();
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().entries, 4);
        let parents: Vec<Option<String>> = text
            .lines()
            .map(|line| serde_json::from_str::<AuditEntry>(line).unwrap().parent)
            .collect();
        assert_eq!(
            parents,
            [
                Some("root-1".into()),
                Some("root-1".into()),
                None,
                Some("root-\"2".into())
            ]
        );
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains(",\"engagement\":\"inner-1\",\"parent\":\"root-1\",\"user\":null,")
        );
    }
}

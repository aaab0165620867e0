//! `agentc audit`: `verify` (the hash chain, and with `--key` every signed checkpoint),
//! `keygen` (a checkpoint signing key pair) and `export` (a server database's trail as
//! the JSON lines `verify` reads); and reading the signing key that `run` and `serve`
//! take with `--audit-key`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentc_runtime::{AuditPublicKey, AuditSigningKey, VerifiedChain};

/// The largest key file read: a key is 64 digits and a line break.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Reads a file of at most [`MAX_KEY_FILE_BYTES`]; the text is zeroized when dropped.
fn read_small(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!("`{}` is too large for a key file", path.display()));
    }
    Ok(text)
}

/// The checkpoint signing key in `path` (`--audit-key`): 64 hexadecimal digits, as
/// `agentc audit keygen` writes them. Errors never quote the file's content.
pub fn read_signing_key(path: &Path) -> Result<AuditSigningKey, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: the audit key `{}` can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
    let text = read_small(path)?;
    AuditSigningKey::from_hex(&text)
        .map_err(|error| format!("`{}` is not an audit signing key: {error}", path.display()))
}

/// The review console's session key in `path` (`agentc serve --console-key`): 64
/// hexadecimal digits (`openssl rand -hex 32`), the same file for every instance behind
/// one address. Errors never quote the file's content.
pub fn read_console_key(path: &Path) -> Result<[u8; 32], String> {
    let text = read_small(path)?;
    let digits = text.trim();
    let invalid = || {
        format!(
            "`{}` is not a console key: write 64 hexadecimal digits (`openssl rand -hex 32`)",
            path.display()
        )
    };
    if digits.len() != 64 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let mut key = [0_u8; 32];
    for (index, byte) in key.iter_mut().enumerate() {
        let pair = digits.get(index * 2..index * 2 + 2).ok_or_else(invalid)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(key)
}

/// A public key given as its 64 hexadecimal digits, or as a file holding them (the
/// `.pub` file `keygen` writes).
fn read_public_key(given: &str) -> Result<AuditPublicKey, String> {
    if let Ok(key) = AuditPublicKey::from_hex(given) {
        return Ok(key);
    }
    let path = Path::new(given);
    if !path.is_file() {
        return Err(format!(
            "`--key {given}` is neither 64 hexadecimal digits nor a readable file"
        ));
    }
    let text = read_small(path)?;
    AuditPublicKey::from_hex(&text)
        .map_err(|error| format!("`{}` is not an audit public key: {error}", path.display()))
}

/// `agentc audit verify FILE [--key PUB] [--head HASH]`: exit 0 when the trail is
/// intact and (with a key) every entry is covered by a signed checkpoint or by the
/// given head; 1 when it was altered or is not proven; 2 on usage or IO errors.
pub fn verify(path: &PathBuf, key: Option<&str>, head: Option<&str>) -> ExitCode {
    let key = match key.map(read_public_key).transpose() {
        Ok(key) => key,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(head) = head
        && (head.len() != 64 || !head.bytes().all(|byte| byte.is_ascii_hexdigit()))
    {
        eprintln!("error: `--head {head}` is not a hash (64 hexadecimal digits)");
        return ExitCode::from(2);
    }
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: cannot read `{}`: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let reader = std::io::BufReader::new(file);
    let verified = match &key {
        Some(key) => agentc_runtime::verify_signed(reader, key),
        None => agentc_runtime::verify(reader),
    };
    let chain = match verified {
        Ok(chain) => chain,
        Err(error) => {
            println!("tampered: {error}");
            return ExitCode::from(1);
        }
    };
    let (lines, proven) = report(&chain, key.as_ref(), head);
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        if writeln!(stdout, "{line}").is_err() {
            return ExitCode::from(2);
        }
    }
    if proven {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What a verified chain proves, in words, and whether that is all of it.
fn report(
    chain: &VerifiedChain,
    key: Option<&AuditPublicKey>,
    head: Option<&str>,
) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let head_matches = head.map(|head| head.eq_ignore_ascii_case(&chain.head));
    if head_matches == Some(false) {
        lines.push(format!(
            "truncated or extended: the trail ends at {} ({} entries), not at the expected head {}",
            chain.head,
            chain.entries,
            head.unwrap_or_default()
        ));
        return (lines, false);
    }
    let Some(key) = key else {
        lines.push(format!(
            "intact: {} entries, head {}",
            chain.entries, chain.head
        ));
        lines.push(match head_matches {
            Some(_) => "the trail ends at the expected head; checkpoint signatures were not checked (no --key)".to_string(),
            None => format!(
                "hash chain only: {} checkpoint(s) present but their signatures were not checked, and anyone who can write the file can recompute the chain; verify with --key PUB, and --head HASH to detect truncation",
                chain.checkpoints
            ),
        });
        return (lines, true);
    };
    let unsigned = chain.unsigned_entries();
    if unsigned == 0 && chain.checkpoints > 0 {
        lines.push(format!(
            "intact and signed: {} entries, head {}; {} checkpoint(s) signed by {} cover every entry",
            chain.entries,
            chain.head,
            chain.checkpoints,
            key.to_hex()
        ));
    } else if chain.entries == 0 {
        lines.push("empty: the trail has no entries, so nothing is proven".to_string());
        return (lines, head_matches == Some(true));
    } else {
        let covered = match chain.signed_entries.checked_sub(1) {
            Some(last) => format!(
                "{} checkpoint(s) signed by {} cover entries 0 to {last}",
                chain.checkpoints,
                key.to_hex()
            ),
            None => format!("no checkpoint signed by {}", key.to_hex()),
        };
        lines.push(format!(
            "intact chain: {} entries, head {}; {covered}",
            chain.entries, chain.head
        ));
        lines.push(format!(
            "unsigned: the last {unsigned} entries (from seq {}) are covered by no signed checkpoint: they may belong to an engagement still running, or have been written, edited or cut off by anyone who can write the trail",
            chain.signed_entries
        ));
    }
    match head_matches {
        Some(_) => {
            lines.push(
                "the trail ends at the expected head, so nothing was cut off its end".to_string(),
            );
            (lines, true)
        }
        None => {
            lines.push("not checked: entries cut off the end back to a checkpoint leave a trail that verifies; compare the head with --head HASH".to_string());
            (lines, unsigned == 0 && chain.checkpoints > 0)
        }
    }
}

/// `agentc audit keygen --out FILE`: writes a new secret key to FILE (created, never
/// overwritten, readable by its owner only) and its public key to FILE.pub, and prints
/// the public key.
pub fn keygen(out: &Path) -> ExitCode {
    match write_key_pair(out) {
        Ok(public) => {
            println!("{public}");
            eprintln!(
                "wrote the secret key to `{}` (keep it private; pass it to --audit-key) and the public key to `{}`",
                out.display(),
                public_path(out).display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn public_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

fn write_key_pair(out: &Path) -> Result<String, String> {
    let key = AuditSigningKey::generate().map_err(|error| error.to_string())?;
    let public = key.public_key().to_hex();
    let public_file = public_path(out);
    if public_file.exists() {
        return Err(format!("`{}` already exists", public_file.display()));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .map_err(|error| format!("cannot create `{}`: {error}", out.display()))?;
    let secret = key.to_hex();
    file.write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write `{}`: {error}", out.display()))?;
    std::fs::write(&public_file, format!("{public}\n"))
        .map_err(|error| format!("cannot write `{}`: {error}", public_file.display()))?;
    Ok(public)
}

/// What `agentc audit export` was asked.
pub struct ExportRequest<'a> {
    /// An SQLite file, or a PostgreSQL URL.
    pub db: &'a str,
    /// The chain to write (PostgreSQL: an instance id).
    pub chain: Option<&'a str>,
    /// The certificate authority of PostgreSQL's TLS.
    pub db_ca_cert: Option<&'a Path>,
    /// Where to write; stdout when `None`.
    pub output: Option<&'a Path>,
}

/// `agentc audit export --db DB [--chain ID] [-o FILE]`: a server's trail as JSON lines,
/// to FILE or stdout. An SQLite file has one chain; a PostgreSQL database has one per
/// server instance that wrote to it, and `--chain` picks it (required when there are
/// several; the error lists them). The URL, which may hold a password, is never
/// printed.
pub fn export(request: &ExportRequest<'_>) -> ExitCode {
    let postgres = request.db.starts_with("postgres://") || request.db.starts_with("postgresql://");
    let shown = if postgres {
        "the PostgreSQL database".to_string()
    } else {
        format!("`{}`", request.db)
    };
    if !postgres && !Path::new(request.db).is_file() {
        eprintln!("error: `{}` is not a database file", request.db);
        return ExitCode::from(2);
    }
    let mut writer: Box<dyn std::io::Write> = match request.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(error) => {
                eprintln!("error: cannot create `{}`: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let exported = if postgres {
        export_postgres(request, &mut writer)
    } else {
        agentc_server::sqlite::export_audit(Path::new(request.db), &mut writer)
            .map_err(|error| error.to_string())
    };
    match exported {
        Ok(count) => {
            eprintln!("exported {count} audit entries from {shown}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: cannot export the audit trail of {shown}: {message}");
            ExitCode::from(2)
        }
    }
}

/// One chain of a PostgreSQL database, written as `export_audit` writes SQLite's.
fn export_postgres(
    request: &ExportRequest<'_>,
    out: &mut dyn std::io::Write,
) -> Result<u64, String> {
    use agentc_server::Store;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let store = agentc_server::PostgresStore::connect(request.db, request.db_ca_cert)
            .await
            .map_err(|error| error.to_string())?;
        let chains = store.audit_chains().await.map_err(|error| error.to_string())?;
        let chain = match (request.chain, chains.as_slice()) {
            (Some(chain), _) if chains.iter().any(|known| known == chain) => chain.to_string(),
            (Some(chain), _) => {
                return Err(format!(
                    "no chain `{chain}`; the database has: {}",
                    chains.join(", ")
                ));
            }
            (None, []) => return Ok(0),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(format!(
                    "the database has {} chains, one per server instance; pick one with --chain: {}",
                    chains.len(),
                    chains.join(", ")
                ));
            }
        };
        let lines = store
            .audit_lines(&chain)
            .await
            .map_err(|error| error.to_string())?;
        let mut count = 0u64;
        for line in lines {
            // One entry per line, as SQLite's export: a stored line with a line break
            // would be read as two, so it is refused.
            if line.contains(['\n', '\r']) {
                return Err(format!("audit entry {count} spans several lines"));
            }
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|error| error.to_string())?;
            count += 1;
        }
        out.flush().map_err(|error| error.to_string())?;
        Ok(count)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_console_key_is_64_hex_digits_and_an_error_never_quotes_the_file() {
        let directory =
            std::env::temp_dir().join(format!("agentc-console-key-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let good = directory.join("good.key");
        std::fs::write(&good, format!("{}\n", "0a".repeat(32))).unwrap();
        assert_eq!(read_console_key(&good).unwrap(), [0x0a; 32]);
        for (name, content) in [
            ("short", "0a0b"),
            ("not-hex", &*"zz".repeat(32)),
            ("long", &*"0a".repeat(33)),
        ] {
            let path = directory.join(name);
            std::fs::write(&path, content).unwrap();
            let error = read_console_key(&path).unwrap_err();
            assert!(error.contains("64 hexadecimal digits"), "{error}");
            assert!(!error.contains(content), "{error}");
        }
        let _ = std::fs::remove_dir_all(&directory);
    }
}

//! Finding and reading the files to check.
//!
//! File names and file contents are untrusted (a spec directory may come from a pull
//! request), so reading them is bounded:
//! - only regular files are read: a FIFO would block for ever and a device (a link to
//!   `/dev/zero`) would never end, so either is refused with its path, without being
//!   opened for reading in a way that could block;
//! - at most [`MAX_SPEC_FILE_BYTES`] (the checker's own file limit) are read from one
//!   file, and a longer file is refused before the rest of it is read;
//! - a symbolic link found while walking a directory is followed only when its target
//!   lies inside the directory named on the command line, unless the user asked for
//!   every link to be followed (`--follow-symlinks`). A path named on the command line
//!   is the user's choice and is followed.

use agentc_compiler::{CheckedSet, SourceInput, check_set};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A directory holding this file is skipped when a parent directory is walked; its files
/// are still checked when named explicitly. `spec-examples/ui` (deliberately wrong
/// documents) and `spec-examples/schema` (JSON Schemas, not specs) carry it.
pub const IGNORE_MARKER: &str = ".agentcignore";

/// The most bytes read from one spec file: the checker's limit, so a file the checker
/// would refuse anyway is not read whole first.
pub const MAX_SPEC_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Whether symbolic links that lead out of a walked directory are followed
/// (`--follow-symlinks`); set once, by `main`, before any file is read.
static FOLLOW_EVERY_SYMLINK: AtomicBool = AtomicBool::new(false);

/// Follow symbolic links out of walked directories too.
pub fn follow_every_symlink(follow: bool) {
    FOLLOW_EVERY_SYMLINK.store(follow, Ordering::Relaxed);
}

/// Expands the paths into input files, sorted so that output is deterministic.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<SourceInput>, String> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.dedup();
    files
        .into_iter()
        .map(|path| {
            Ok(SourceInput {
                name: path.display().to_string(),
                bytes: read_spec_file(&path)?,
            })
        })
        .collect()
}

/// Reads one spec file: a regular file of at most [`MAX_SPEC_FILE_BYTES`].
pub fn read_spec_file(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |error: std::io::Error| format!("cannot read `{}`: {error}", path.display());
    // Checked before opening, since opening a FIFO for reading waits for a writer.
    refuse_unless_regular(path, &std::fs::metadata(path).map_err(cannot)?)?;
    let file = open_without_blocking(path).map_err(cannot)?;
    // Checked again on the opened file, which a rename in between cannot change.
    refuse_unless_regular(path, &file.metadata().map_err(cannot)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_SPEC_FILE_BYTES {
        return Err(format!(
            "`{}` is larger than {MAX_SPEC_FILE_BYTES} bytes, the most a spec file may be",
            path.display()
        ));
    }
    Ok(bytes)
}

fn refuse_unless_regular(path: &Path, metadata: &std::fs::Metadata) -> Result<(), String> {
    if metadata.is_file() {
        return Ok(());
    }
    Err(format!(
        "`{}` is not a regular file (a directory, FIFO, socket or device); spec files must be regular files",
        path.display()
    ))
}

#[cfg(unix)]
fn open_without_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: should the path become a FIFO after the check, opening it does not
    // wait for a writer (the file is then refused as not regular).
    const O_NONBLOCK: i32 = 0o4000;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

fn is_spec_file_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
}

fn walk(root: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let cannot =
        |path: &Path, error: std::io::Error| format!("cannot read `{}`: {error}", path.display());
    let canonical_root = std::fs::canonicalize(root).map_err(|error| cannot(root, error))?;
    let follow_every_symlink = FOLLOW_EVERY_SYMLINK.load(Ordering::Relaxed);
    // Directories already walked, by their canonical path, so that a link back up the
    // tree cannot make the walk loop.
    let mut walked = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    let mut found = Vec::new();
    while let Some(directory) = pending.pop() {
        let canonical = std::fs::canonicalize(&directory).map_err(|e| cannot(&directory, e))?;
        if !walked.insert(canonical) || directory.join(IGNORE_MARKER).exists() {
            continue;
        }
        let entries = std::fs::read_dir(&directory).map_err(|e| cannot(&directory, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| cannot(&directory, e))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            let mut file_type = entry.file_type().map_err(|e| cannot(&path, e))?;
            if file_type.is_symlink() {
                let target = std::fs::canonicalize(&path).map_err(|e| cannot(&path, e))?;
                if !follow_every_symlink && !target.starts_with(&canonical_root) {
                    return Err(format!(
                        "`{}` is a symbolic link to `{}`, outside `{}`; pass --follow-symlinks to read it",
                        path.display(),
                        target.display(),
                        root.display()
                    ));
                }
                file_type = std::fs::metadata(&target)
                    .map_err(|e| cannot(&path, e))?
                    .file_type();
            }
            if file_type.is_dir() {
                pending.push(path);
            } else if is_spec_file_name(&path) {
                // A FIFO, socket or device with a spec file's name is refused when it
                // is read, with its path.
                found.push(path);
            }
        }
    }
    found.sort();
    files.extend(found);
    Ok(())
}

/// The checked set, for a command that only works on a valid one: with errors, they
/// are printed to stderr and the error says `{subject} has N error(s); {consequence}`.
pub fn valid_set(
    inputs: &[SourceInput],
    subject: &str,
    consequence: &str,
) -> Result<CheckedSet, String> {
    let set = check_set(inputs, &crate::mcp::check_options());
    if set.error_count() > 0 {
        eprint!("{}", set.view().render_text(&set.diagnostics));
        return Err(format!(
            "{subject} has {} error(s); {consequence}",
            set.error_count()
        ));
    }
    Ok(set)
}

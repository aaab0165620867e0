//! Regenerates `src/generated.rs` from the corpus.

use std::process::ExitCode;

fn main() -> ExitCode {
    let text = match agentc_cel_differential::generate() {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(agentc_cel_differential::GENERATED_PATH);
    if let Err(error) = std::fs::write(&path, text) {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    ExitCode::SUCCESS
}

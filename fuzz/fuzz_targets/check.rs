//! bytes → `agentc check`: must never panic, whatever the bytes.
#![no_main]

use agentc_compiler::{CheckOptions, SourceInput, check_set};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let set = check_set(
        &[SourceInput { name: "fuzz.yaml".to_string(), bytes: data.to_vec() }],
        &CheckOptions::default(),
    );
    let view = set.view();
    let _ = view.render_text(&set.diagnostics);
});

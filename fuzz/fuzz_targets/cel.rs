//! text → CEL parse and check: must never panic or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(expression) = agentc_cel::parse(text) {
            let _ = agentc_cel::check(&expression, &agentc_cel::TypeEnv::new());
        }
    }
});

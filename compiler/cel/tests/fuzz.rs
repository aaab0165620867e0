//! Property tests: no input makes the parser, checker or interpreter panic.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel::engagement::{AssertionSite, engagement_env};
use agentc_cel::{Activation, TypeEnv, check, evaluate, parse};
use proptest::prelude::*;

fn run_everything(source: &str) {
    if let Ok(expr) = parse(source) {
        let _ = check(&expr, &TypeEnv::new());
        let _ = check(&expr, &engagement_env(&[], &AssertionSite::Exposes));
        let _ = evaluate(&expr, &Activation::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        run_everything(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn cel_like_text_never_panics(source in "[a-z0-9_ .,:?!&|<>=+*/%()\\[\\]{}'\"\\\\-]{0,80}") {
        run_everything(&source);
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(prop::sample::select(vec![
        "1", "1u", "1.5", "-", "+", "*", "/", "%", "(", ")", "[", "]", "{", "}", ":", ",",
        "?", "!", "&&", "||", "==", "<", "in", "x", ".y", "has", "all", "map", "filter",
        "'s'", "b'b'", "null", "true", "size", "int", "timestamp", "duration", "'1h'",
        "'2020-01-01T00:00:00Z'", "9223372036854775807", "0u",
    ]), 0..40)) {
        run_everything(&tokens.join(" "));
    }
}

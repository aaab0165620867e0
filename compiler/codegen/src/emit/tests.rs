//! Unit tests of the emitter's helpers.

use super::names::raw_string;

/// The literal's value, as the Rust lexer reads it.
fn value_of(literal: &proc_macro2::Literal) -> String {
    match syn::parse_str::<syn::LitStr>(&literal.to_string()) {
        Ok(text) => text.value(),
        Err(error) => panic!("not a string literal: {literal} ({error})"),
    }
}

#[test]
fn raw_strings_hold_any_json_text_unchanged() {
    for text in [
        r#"{"a":"b"}"#,
        // A string that itself ends a one-`#` raw string needs two.
        r##"{"pattern":"x"#y"}"##,
        r###"{"p":"\"##","q":"\"#"}"###,
        r#"{"escaped":"line\nbreak \u0000"}"#,
    ] {
        let literal = raw_string(text);
        assert!(literal.to_string().starts_with("r#"), "{literal}");
        assert_eq!(value_of(&literal), text);
    }
    assert_eq!(raw_string(r##"a"#b"##).to_string(), r###"r##"a"#b"##"###);
}

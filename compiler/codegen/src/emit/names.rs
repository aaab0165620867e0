//! Rust names for spec names, and the small token helpers the other files share (doc
//! attributes, raw string literals).

use std::str::FromStr;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// A snake-case identifier for an OAS-N1 name (which may start with a digit or be a
/// keyword).
pub fn snake_ident(name: &str) -> Ident {
    let mut text = name.to_string();
    if text.starts_with(|character: char| character.is_ascii_digit()) {
        text.insert_str(0, "n_");
    }
    if RUST_KEYWORDS.contains(&text.as_str()) {
        text.push('_');
    }
    Ident::new(&text, Span::call_site())
}

/// A CamelCase type name for an OAS-N1 name.
pub fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for character in name.chars() {
        if character.is_ascii_alphanumeric() {
            if upper {
                out.push(character.to_ascii_uppercase());
            } else {
                out.push(character);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() || out.starts_with(|character: char| character.is_ascii_digit()) {
        out.insert(0, 'N');
    }
    out
}

/// One `#[doc]` attribute per line, so that prettyplease prints `///` comments.
pub(super) fn docs(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| format!(" {line}"));
    quote!(#(#[doc = #lines])*)
}

/// `text` as a raw string literal (`r#"…"#`, with as many `#`s as it needs), so that
/// embedded JSON reads as JSON in the generated code.
pub(super) fn raw_string(text: &str) -> Literal {
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    // With more `#`s than any `"#…` run in the text, the literal ends where it should;
    // should the lexer still refuse it, the escaped form means the same.
    Literal::from_str(&format!("r{hashes}\"{text}\"{hashes}"))
        .unwrap_or_else(|_| Literal::string(text))
}

pub(super) fn ident(text: &str) -> Ident {
    Ident::new(text, Span::call_site())
}

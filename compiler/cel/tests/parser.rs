//! Parser tests: the grammar, literals, diagnostics and hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel::ast::{BinaryOp, ComprehensionKind, ExprKind, Literal};
use agentc_cel::{CelErrorKind, ParseLimits, parse, parse_with_limits};

fn literal(source: &str) -> Literal {
    match parse(source).unwrap().kind {
        ExprKind::Literal(literal) => literal,
        other => panic!("expected a literal for {source}, got {other:?}"),
    }
}

fn first_error(source: &str) -> agentc_cel::CelDiagnostic {
    parse(source).unwrap_err().into_iter().next().unwrap()
}

#[test]
fn parses_number_literals() {
    assert_eq!(literal("42"), Literal::Int(42));
    assert_eq!(literal("0x1F"), Literal::Int(31));
    assert_eq!(literal("42u"), Literal::Uint(42));
    assert_eq!(literal("0xFFU"), Literal::Uint(255));
    assert_eq!(literal("1.5"), Literal::Double(1.5));
    assert_eq!(literal("1e3"), Literal::Double(1000.0));
    assert_eq!(literal(".5"), Literal::Double(0.5));
    assert_eq!(literal("-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(literal("18446744073709551615u"), Literal::Uint(u64::MAX));
    assert_eq!(
        first_error("9223372036854775808").kind,
        CelErrorKind::InvalidLiteral
    );
    assert_eq!(
        first_error("99999999999999999999999999999").kind,
        CelErrorKind::InvalidLiteral
    );
    assert_eq!(first_error("1e400").kind, CelErrorKind::InvalidLiteral);
}

#[test]
fn parses_string_and_bytes_literals() {
    assert_eq!(literal(r#""a\nb""#), Literal::String("a\nb".into()));
    assert_eq!(
        literal(r#"'\u00e9\U0001F600\x41\101'"#),
        Literal::String("é😀AA".into())
    );
    assert_eq!(literal(r#"r"a\nb""#), Literal::String("a\\nb".into()));
    assert_eq!(
        literal("'''multi\nline'''"),
        Literal::String("multi\nline".into())
    );
    assert_eq!(literal(r#""""x"y""""#), Literal::String("x\"y".into()));
    assert_eq!(literal(r#"b"\xff\000""#), Literal::Bytes(vec![0xff, 0]));
    assert_eq!(literal("b'é'"), Literal::Bytes("é".as_bytes().to_vec()));
    assert_eq!(literal(r#"rb"\x""#), Literal::Bytes(b"\\x".to_vec()));
}

#[test]
fn rejects_bad_escapes_and_surrogates() {
    assert_eq!(first_error(r#""\q""#).kind, CelErrorKind::InvalidLiteral);
    assert_eq!(
        first_error(r#""\ud800""#).kind,
        CelErrorKind::InvalidLiteral
    );
    assert_eq!(
        first_error(r#""\U00110000""#).kind,
        CelErrorKind::InvalidLiteral
    );
    assert_eq!(first_error(r#""\x4""#).kind, CelErrorKind::InvalidLiteral);
    assert_eq!(first_error("\"unterminated").kind, CelErrorKind::Syntax);
    assert_eq!(first_error("'a\nb'").kind, CelErrorKind::Syntax);
}

#[test]
fn handles_nul_bytes_in_source() {
    assert_eq!(first_error("a \0 b").kind, CelErrorKind::Syntax);
    assert_eq!(literal("'a\0b'"), Literal::String("a\0b".into()));
}

#[test]
fn parses_operators_with_precedence() {
    let expr = parse("a || b && c == 1 + 2 * 3").unwrap();
    let ExprKind::Binary { op, right, .. } = &expr.kind else {
        panic!("expected ||");
    };
    assert_eq!(*op, BinaryOp::Or);
    let ExprKind::Binary { op, .. } = &right.kind else {
        panic!("expected &&");
    };
    assert_eq!(*op, BinaryOp::And);
    assert!(parse("a ? b : c ? d : e").is_ok());
    assert!(parse("x in [1, 2, 3]").is_ok());
    assert!(parse("!!a").is_ok());
    assert!(parse("--1").is_ok());
    assert!(parse(".a.b").is_ok());
    assert!(parse("a.b[0].c(1, 2)").is_ok());
    assert!(parse("{'a': 1, 'b': [1, 2,],}").is_ok());
    assert!(parse("Foo{a: 1, b: 2}").is_ok());
    assert!(parse("a.b.Foo{}").is_ok());
    assert!(parse("a.`b-c`").is_ok());
    assert!(parse("size(x) // a comment\n > 1").is_ok());
}

#[test]
fn expands_macros() {
    assert!(matches!(
        parse("has(a.b)").unwrap().kind,
        ExprKind::Has { .. }
    ));
    for (source, kind) in [
        ("l.all(x, x > 0)", ComprehensionKind::All),
        ("l.exists(x, x > 0)", ComprehensionKind::Exists),
        ("l.exists_one(x, x > 0)", ComprehensionKind::ExistsOne),
        ("l.map(x, x * 2)", ComprehensionKind::Map),
        ("l.map(x, x > 0, x * 2)", ComprehensionKind::Map),
        ("l.filter(x, x > 0)", ComprehensionKind::Filter),
        ("l.all(i, v, i < v)", ComprehensionKind::All),
    ] {
        match parse(source).unwrap().kind {
            ExprKind::Comprehension(comprehension) => assert_eq!(comprehension.kind, kind),
            other => panic!("{source}: {other:?}"),
        }
    }
    assert_eq!(first_error("has(a)").kind, CelErrorKind::InvalidMacro);
    assert_eq!(
        first_error("l.all(x)").kind,
        CelErrorKind::WrongArgumentCount
    );
    assert_eq!(
        first_error("l.all(x.y, true)").kind,
        CelErrorKind::InvalidMacro
    );
}

#[test]
fn rejects_reserved_words() {
    let diagnostic = first_error("if == 1");
    assert_eq!(diagnostic.kind, CelErrorKind::ReservedWord);
    assert_eq!(diagnostic.kind.code(), "E0505");
    assert!(
        parse("a.if").is_ok(),
        "reserved words are fine as field names"
    );
}

#[test]
fn locates_syntax_errors() {
    let diagnostic = first_error("(a + b");
    assert_eq!(diagnostic.kind, CelErrorKind::Syntax);
    assert!(
        diagnostic.message.contains("expected `)`"),
        "{}",
        diagnostic.message
    );
    assert_eq!(diagnostic.span.start, 6);

    let diagnostic = first_error("a + ");
    assert!(
        diagnostic.message.contains("expected an expression"),
        "{}",
        diagnostic.message
    );

    let diagnostic = first_error("a * -");
    assert!(
        diagnostic.message.contains("unexpected `-`") || diagnostic.message.contains("expected")
    );

    let diagnostic = first_error("a = b");
    assert_eq!(diagnostic.span.start, 2);
    assert!(diagnostic.help.unwrap().contains("=="));
}

#[test]
fn explains_hyphenated_names_on_syntax_errors() {
    let diagnostic = first_error("recent.hr-kb.inputs.id == 'x' &&");
    let help = diagnostic.help.unwrap();
    assert!(
        help.contains("in CEL `hr-kb` is `hr` minus `kb`") && help.contains("write `hr_kb`"),
        "{help}"
    );
}

fn in_small_stack<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(body)
        .unwrap()
        .join()
        .unwrap()
}

fn deep_inputs(depth: usize) -> Vec<String> {
    vec![
        format!("{}x{}", "(".repeat(depth), ")".repeat(depth)),
        format!("{}x", "!".repeat(depth)),
        format!("{}x", "-".repeat(depth)),
        format!("a{}", ".b".repeat(depth)),
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
        format!("{}1{}", "{1:".repeat(depth), "}".repeat(depth)),
        format!("{}", "f(".repeat(depth)),
        format!("a{}", "[0]".repeat(depth)),
        format!("1{}", " + 1".repeat(depth)),
        format!("{}1", "true ? 1 : ".repeat(depth)),
        format!("a{}", ".f()".repeat(depth)),
    ]
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_stack_overflow() {
    in_small_stack(|| {
        let generous = ParseLimits {
            max_source_bytes: usize::MAX,
            max_nodes: usize::MAX,
            ..ParseLimits::default()
        };
        for depth in [20_000, 1_000_000] {
            for source in deep_inputs(depth) {
                let diagnostics = parse_with_limits(&source, &generous).unwrap_err();
                let kind = diagnostics[0].kind;
                assert!(
                    matches!(kind, CelErrorKind::NestingTooDeep | CelErrorKind::Syntax),
                    "{kind:?} for {}",
                    &source[..20]
                );
                // With default limits, the same input is rejected as too large or too deep.
                let diagnostics = parse(&source).unwrap_err();
                assert!(matches!(
                    diagnostics[0].kind,
                    CelErrorKind::NestingTooDeep
                        | CelErrorKind::ExpressionTooLarge
                        | CelErrorKind::Syntax
                ));
            }
        }
    });
}

#[test]
fn moderate_nesting_is_accepted() {
    in_small_stack(|| {
        assert!(parse(&format!("{}x{}", "(".repeat(100), ")".repeat(100))).is_ok());
        assert!(parse(&format!("a{}", ".b".repeat(100))).is_ok());
        // Long chains of `&&` are balanced, so a thousand conditions are fine.
        let chain = vec!["x > 1"; 1000].join(" && ");
        assert!(parse(&chain).is_ok());
    });
}

#[test]
fn node_and_size_limits_apply() {
    let big_list = format!("[{}]", vec!["1"; 20_000].join(","));
    assert_eq!(
        parse(&big_list).unwrap_err()[0].kind,
        CelErrorKind::ExpressionTooLarge
    );
    let huge_string = format!("'{}'", "a".repeat(1_000_000));
    assert_eq!(
        parse(&huge_string).unwrap_err()[0].kind,
        CelErrorKind::ExpressionTooLarge
    );
    let generous = ParseLimits {
        max_source_bytes: 2_000_000,
        ..ParseLimits::default()
    };
    assert!(parse_with_limits(&huge_string, &generous).is_ok());
}

#[test]
fn comprehension_nesting_is_limited() {
    let mut source = "true".to_string();
    for _ in 0..9 {
        source = format!("l.all(x, {source})");
    }
    assert_eq!(
        parse(&source).unwrap_err()[0].kind,
        CelErrorKind::ComprehensionNestingTooDeep
    );
    let mut source = "true".to_string();
    for _ in 0..8 {
        source = format!("l.all(x, {source})");
    }
    assert!(parse(&source).is_ok());
}

#[test]
fn every_node_has_a_span_inside_the_source() {
    let source = "has(a.b) && a.b.exists(x, x in [1, 2u, 3.0]) ? {'k': b'v'}['k'] : null";
    let expr = parse(source).unwrap();
    let mut stack = vec![&expr];
    while let Some(node) = stack.pop() {
        assert!(node.span.start <= node.span.end && node.span.end <= source.len());
        stack.extend(node.children());
    }
}

#[test]
fn error_codes_are_unique_and_explained() {
    let kinds = agentc_cel::all_error_kinds();
    let mut codes: Vec<&str> = kinds.iter().map(|kind| kind.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), kinds.len());
    for kind in kinds {
        assert!(kind.code().starts_with("E05"));
        let explanation = kind.explain();
        assert!(
            explanation.contains("Wrong:") && explanation.contains("Right:"),
            "{kind:?}"
        );
    }
}

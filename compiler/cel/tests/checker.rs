//! Type checker tests, including the OpenAgentSpec engagement environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel::engagement::{AssertionSite, CapabilityTypes, engagement_env};
use agentc_cel::{
    Activation, CelDiagnostic, CelErrorKind, Type, TypeEnv, check, check_assertion, evaluate,
    parse, type_from_json_schema,
};
use serde_json::json;

fn capabilities() -> Vec<CapabilityTypes> {
    vec![
        CapabilityTypes {
            name: "hr_kb".to_string(),
            input: type_from_json_schema(&json!({
                "type": "object",
                "properties": {
                    "knowledge_base_id": {"type": "string"},
                    "limit": {"type": "integer"}
                },
                "required": ["knowledge_base_id"]
            })),
            output: type_from_json_schema(&json!({
                "type": "object",
                "properties": {"documents": {"type": "array", "items": {"type": "string"}}},
                "required": ["documents"]
            })),
            collects_results: true,
        },
        CapabilityTypes {
            name: "search".to_string(),
            input: type_from_json_schema(&json!({
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"]
            })),
            output: type_from_json_schema(&json!({
                "type": "object",
                "properties": {"count": {"type": "integer"}, "score": {"type": "number"}},
                "required": ["count"]
            })),
            collects_results: true,
        },
    ]
}

fn errors(source: &str, site: &AssertionSite) -> Vec<CelDiagnostic> {
    let env = engagement_env(&capabilities(), site);
    let expr = parse(source).unwrap();
    check_assertion(&expr, &env).err().unwrap_or_default()
}

fn exposes_errors(source: &str) -> Vec<CelDiagnostic> {
    errors(source, &AssertionSite::Exposes)
}

#[test]
fn accepts_well_formed_assertions() {
    let input_site = AssertionSite::InputRestriction {
        capability: "hr_kb".to_string(),
    };
    for source in [
        "recent.hr_kb.inputs.knowledge_base_id == 'hr'",
        "history._total < 10 && 'search' in history._list",
        "history.search.all(call, size(call.inputs.query) < 100)",
        "user.id.startsWith('emp-') && (has(user.email) ? user.email.endsWith('@corp.com') : true)",
        "started_at < timestamp('2030-01-01T00:00:00Z')",
        "!has(recent.search) || recent.search.inputs.query != ''",
        "has(recent.search) && has(recent.search.outputs) && recent.search.outputs.count < 3",
        "size(history._list) == history._total",
    ] {
        let found = errors(source, &input_site);
        assert!(found.is_empty(), "{source}: {found:?}");
    }
}

#[test]
fn optional_fields_need_a_has_guard() {
    let found = exposes_errors("recent.search.inputs.query == 'x'");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, CelErrorKind::OptionalFieldWithoutHas);
    assert_eq!(found[0].kind.code(), "E0513");
    let help = found[0].help.clone().unwrap();
    assert!(help.contains("has(recent.search) && ..."), "{help}");

    let found = exposes_errors("user.email == 'a@b.c'");
    assert_eq!(found[0].kind, CelErrorKind::OptionalFieldWithoutHas);
    assert!(exposes_errors("has(user.email) && user.email == 'a@b.c'").is_empty());
    assert!(exposes_errors("has(user.email) ? user.email == 'a' : false").is_empty());
    assert!(exposes_errors("!has(user.email) ? false : user.email == 'a'").is_empty());
    // The guard of one branch does not leak into the other.
    assert_eq!(
        exposes_errors("has(user.email) ? false : user.email == 'a'")[0].kind,
        CelErrorKind::OptionalFieldWithoutHas
    );
    // A guard on the right of `&&` does not protect the left.
    assert!(!exposes_errors("user.email == 'a' && has(user.email)").is_empty());
}

#[test]
fn restriction_sites_decide_what_is_present() {
    let input_site = AssertionSite::InputRestriction {
        capability: "search".to_string(),
    };
    assert!(errors("recent.search.inputs.query == 'x'", &input_site).is_empty());
    let found = errors("recent.search.outputs.count > 1", &input_site);
    assert_eq!(found[0].kind, CelErrorKind::OptionalFieldWithoutHas);

    let output_site = AssertionSite::OutputRestriction {
        capability: "search".to_string(),
    };
    assert!(
        errors(
            "recent.search.outputs.count > 1 && recent.search.inputs.query != ''",
            &output_site
        )
        .is_empty()
    );
    // Other capabilities stay optional.
    let found = errors("recent.hr_kb.inputs.knowledge_base_id == 'x'", &output_site);
    assert_eq!(found[0].kind, CelErrorKind::OptionalFieldWithoutHas);
}

#[test]
fn unknown_capabilities_get_did_you_mean() {
    let found = exposes_errors("history.hr_kbb.size() > 0");
    assert_eq!(found[0].kind, CelErrorKind::UnknownField);
    let help = found[0].help.clone().unwrap();
    assert!(help.contains("did you mean `hr_kb`?"), "{help}");
    assert!(help.contains("`search`"), "{help}");
    let found = exposes_errors("recent.serch.inputs.query == 'x'");
    assert_eq!(found[0].kind, CelErrorKind::UnknownField);
    assert!(found[0].help.clone().unwrap().contains("`search`"));
}

#[test]
fn hyphenated_names_get_the_underscore_help() {
    let source = "recent.hr-kb.inputs.knowledge_base_id == 'x'";
    let found = exposes_errors(source);
    assert!(!found.is_empty());
    assert!(
        found.iter().any(|diagnostic| diagnostic
            .help
            .as_deref()
            .is_some_and(|help| help.contains(
                "in CEL `hr-kb` is `hr` minus `kb`; OpenAgentSpec names use `_`: write `hr_kb`"
            ))),
        "{found:?}"
    );
}

#[test]
fn unknown_names_and_functions_are_reported_with_suggestions() {
    let found = exposes_errors("histroy._total > 1");
    assert_eq!(found[0].kind, CelErrorKind::UnknownName);
    assert!(found[0].help.clone().unwrap().contains("`history`"));
    assert_eq!(found[0].span.start, 0);
    assert_eq!(found[0].span.end, 7);

    let found = exposes_errors("user.id.startswith('a')");
    assert_eq!(found[0].kind, CelErrorKind::UnknownFunction);
    assert!(found[0].help.clone().unwrap().contains("startsWith"));
}

#[test]
fn all_errors_are_collected() {
    let found = exposes_errors("histroy._total > 1 && user.nme == 'x' && 1 + 'a' == 2");
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn assertions_must_be_boolean() {
    let found = exposes_errors("history._total");
    assert_eq!(found[0].kind, CelErrorKind::NotBoolean);
    assert!(exposes_errors("dyn(history._total)").is_empty());
}

#[test]
fn type_errors_are_located() {
    let env = TypeEnv::new();
    let source = "1 + 'a'";
    let found = check(&parse(source).unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::NoMatchingOverload);
    assert_eq!((found[0].span.start, found[0].span.end), (0, 7));

    let found = check(&parse("true ? 1 : 'a'").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::TypeMismatch);

    let found = check(&parse("'abc'.matches('(')").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::InvalidRegex);

    let found = check(&parse("Foo{a: 1}").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::MessageConstructionUnsupported);

    let found = check(&parse("size(1)").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::NoMatchingOverload);
    let found = check(&parse("size('a', 'b')").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::WrongArgumentCount);
}

#[test]
fn infers_standard_types() {
    let env = TypeEnv::new();
    let type_of = |source: &str| check(&parse(source).unwrap(), &env).unwrap();
    assert_eq!(type_of("1 + 2"), Type::Int);
    assert_eq!(type_of("1u < 2.0"), Type::Bool);
    assert_eq!(type_of("'a' + 'b'"), Type::String);
    assert_eq!(
        type_of("[1, 2].map(x, x * 2)"),
        Type::List(Box::new(Type::Int))
    );
    assert_eq!(type_of("{'a': 1}['a']"), Type::Int);
    assert_eq!(type_of("'abc'.size()"), Type::Int);
    assert_eq!(
        type_of("timestamp('2020-01-01T00:00:00Z') - duration('1h')"),
        Type::Timestamp
    );
    assert_eq!(
        type_of("timestamp('2020-01-01T00:00:00Z').getHours('+01:00')"),
        Type::Int
    );
    assert_eq!(
        type_of("'a,b'.split(',')"),
        Type::List(Box::new(Type::String))
    );
    assert_eq!(type_of("type(1) == int"), Type::Bool);
    assert_eq!(type_of("dyn(1) + 1"), Type::Int);
}

#[test]
fn json_schema_translation() {
    let ty = type_from_json_schema(&json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "link": {"$ref": "#/definitions/x"},
            "score": {"type": "number"},
            "flag": {"type": "boolean"}
        },
        "required": ["name"],
        "additionalProperties": false
    }));
    let Type::Object(object) = ty else {
        panic!("expected an object");
    };
    assert!(!object.open);
    assert!(object.fields["name"].always_present);
    assert!(!object.fields["tags"].always_present);
    assert_eq!(object.fields["tags"].ty, Type::List(Box::new(Type::String)));
    assert_eq!(object.fields["kind"].ty, Type::String);
    assert_eq!(object.fields["any"].ty, Type::Dyn);
    assert_eq!(object.fields["link"].ty, Type::Dyn);
    assert_eq!(object.fields["score"].ty, Type::Double);
    assert_eq!(object.fields["flag"].ty, Type::Bool);
    assert_eq!(type_from_json_schema(&json!(true)), Type::Dyn);
    assert_eq!(
        type_from_json_schema(&json!({"type": "integer"})),
        Type::Int
    );
}

#[test]
fn deeply_nested_schemas_are_capped() {
    let mut schema = json!({"type": "string"});
    for _ in 0..500 {
        schema = json!({"type": "array", "items": schema});
    }
    let mut ty = type_from_json_schema(&schema);
    let mut depth = 0;
    while let Type::List(inner) = ty {
        ty = *inner;
        depth += 1;
    }
    assert!(depth < 100);
    assert_eq!(ty, Type::Dyn);
}

#[test]
fn objects_with_declared_properties_are_closed_unless_more_are_allowed() {
    let mut env = TypeEnv::new();
    // Declared properties, no `additionalProperties`: a misspelt field is an error.
    env.declare(
        "x",
        type_from_json_schema(&json!({"type": "object", "properties": {"a": {"type": "string"}}})),
    );
    let found = check(&parse("x.b == 1").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::UnknownField);
    assert!(check(&parse("has(x.a) && x.a == 'q'").unwrap(), &env).is_ok());
    // `additionalProperties: true` (or a schema) opens it: unknown fields are `dyn`.
    env.declare(
        "y",
        type_from_json_schema(&json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true})),
    );
    assert!(check(&parse("y.b == 1").unwrap(), &env).is_ok());
    env.declare(
        "z",
        type_from_json_schema(&json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false})),
    );
    let found = check(&parse("z.b == 1").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::UnknownField);
}

/// One regex size limit: a constant pattern that the run time would refuse on every
/// call (its compiled form is over `REGEX_SIZE_LIMIT`, though under the regex crate's
/// default 10 MiB) is a check error, and one under the limit checks clean.
#[test]
fn regex_limit_is_one_limit_enforced_at_check_time() {
    let env = TypeEnv::new();
    let too_large = r"'abc'.matches('\\w{200}')";
    assert!(
        regex::Regex::new(r"\w{200}").is_ok(),
        "the default limit takes it"
    );
    assert!(agentc_cel::build_regex(r"\w{200}").is_err());
    let found = check(&parse(too_large).unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::InvalidRegex);
    assert!(check(&parse(r"'abc'.matches('\\w{3}')").unwrap(), &env).is_ok());
    // The interpreter refuses it with the same limit, without quoting the pattern.
    let error = evaluate(
        &parse(r"'abc'.matches('\\w{200}')").unwrap(),
        &Activation::new(),
    )
    .unwrap_err();
    assert_eq!(error.message, "regular expression is too large");
}

/// AGX-E1: `request` is a list of strings every assertion can read.
#[test]
fn agx_e1_request_is_a_list_of_strings() {
    assert!(exposes_errors("request.exists(text, text.contains('leave'))").is_empty());
    assert!(exposes_errors("size(request) > 0 && request[0].startsWith('x')").is_empty());
    let found = exposes_errors("request.exists(text, text > 1)");
    assert_eq!(found[0].kind, CelErrorKind::NoMatchingOverload, "{found:?}");
}

/// AGX-P1: provenance questions are string methods returning `bool`; `fromTool`'s
/// constant capability and field are checked against the agent's capabilities and the
/// output schema, and none can be asked without an engagement (E0518).
#[test]
fn agx_p1_provenance_questions_are_type_checked() {
    let site = AssertionSite::InputRestriction {
        capability: "search".to_string(),
    };
    for allowed in [
        "recent.search.inputs.query.fromUser()",
        "recent.search.inputs.query.fromTrusted() || !recent.search.inputs.query.fromUntrusted()",
        "recent.search.inputs.query.fromTool('hr_kb')",
        "recent.search.inputs.query.fromTool('hr_kb', 'documents')",
        "recent.search.inputs.query.fromUntrusted('hr_kb')",
        "recent.search.inputs.query.fromUntrusted('hr_kb', 'documents')",
    ] {
        assert!(
            errors(allowed, &site).is_empty(),
            "{allowed}: {:?}",
            errors(allowed, &site)
        );
    }
    let found = errors("recent.search.inputs.query.fromTool('hr_kbb')", &site);
    assert_eq!(found[0].kind, CelErrorKind::UnknownSource);
    assert!(
        found[0].help.clone().unwrap().contains("hr_kb"),
        "{found:?}"
    );
    let found = errors(
        "recent.search.inputs.query.fromTool('hr_kb', 'document')",
        &site,
    );
    assert_eq!(found[0].kind, CelErrorKind::UnknownSource);
    assert!(
        found[0].help.clone().unwrap().contains("documents"),
        "{found:?}"
    );
    let found = errors("recent.search.inputs.query.fromUntrusted('hr_kbb')", &site);
    assert_eq!(found[0].kind, CelErrorKind::UnknownSource);
    let found = errors(
        "recent.search.inputs.query.fromUntrusted('hr_kb', 'document')",
        &site,
    );
    assert_eq!(found[0].kind, CelErrorKind::UnknownSource);
    // Not a string, or the wrong count of arguments.
    let found = errors("history._total.fromUser()", &site);
    assert_eq!(found[0].kind, CelErrorKind::NoMatchingOverload);
    let found = errors("recent.search.inputs.query.fromUser('x')", &site);
    assert_eq!(found[0].kind, CelErrorKind::WrongArgumentCount);
    // Without an engagement (a guardrail's assertion sees its tool's output only).
    let mut env = TypeEnv::new();
    env.declare("flagged", agentc_cel::Type::String);
    let found = check_assertion(&parse("flagged.fromUser()").unwrap(), &env).unwrap_err();
    assert_eq!(found[0].kind, CelErrorKind::UnknownSource);
}

/// Issue 25, item 7: a method that does not exist is one error naming it, with the CEL
/// name for what other languages call it; its arguments are not reported one by one.
#[test]
fn an_unknown_method_is_one_error_with_the_cel_name() {
    let found = exposes_errors("history._list.any(x, x == 'a' && x.size() > 0 && x != 'b')");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, CelErrorKind::UnknownFunction);
    assert!(found[0].message.contains("`any`"), "{found:?}");
    assert!(
        found[0].help.clone().unwrap().contains("`exists`"),
        "{found:?}"
    );
    let found = exposes_errors("history._list.every(x, x == 'a')");
    assert!(
        found[0].help.clone().unwrap().contains("`all`"),
        "{found:?}"
    );
    // A real macro with the same body checks clean.
    assert!(exposes_errors("history._list.exists(x, x == 'a')").is_empty());
}

/// How most tool schemas write an optional field (`anyOf: [T, null]`, `oneOf`, or
/// `type: [T, "null"]`): typed as `T` marked nullable, so that a misspelt field or
/// method under it is found at check time, while a comparison with `null` still checks.
#[test]
fn nullable_properties_type_as_their_non_null_schema() {
    let schema = json!({
        "type": "object",
        "properties": {
            "cc": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
            "meta": {"oneOf": [
                {"type": "null"},
                {"type": "object", "properties": {"owner": {"type": "string"}}, "required": ["owner"]}
            ]},
            "limit": {"type": ["integer", "null"], "minimum": 0},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "three": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "referenced": {"anyOf": [{"$ref": "#/$defs/x"}, {"type": "null"}]},
            "items": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}}
        },
        "required": ["cc"]
    });
    let Type::Object(object) = type_from_json_schema(&schema) else {
        panic!("expected an object");
    };
    let cc = &object.fields["cc"];
    assert_eq!(
        (cc.ty.clone(), cc.always_present, cc.nullable),
        (Type::String, true, true)
    );
    let Type::Object(meta) = &object.fields["meta"].ty else {
        panic!(
            "expected `meta` to be an object, got {:?}",
            object.fields["meta"].ty
        );
    };
    assert!(object.fields["meta"].nullable && meta.fields["owner"].always_present);
    assert_eq!(object.fields["limit"].ty, Type::Int);
    assert!(object.fields["limit"].nullable);
    for dynamic in ["either", "three", "referenced"] {
        assert_eq!(object.fields[dynamic].ty, Type::Dyn, "{dynamic}");
    }
    // Only properties are narrowed; a nullable list item stays dynamic.
    assert_eq!(object.fields["items"].ty, Type::List(Box::new(Type::Dyn)));

    let mut env = TypeEnv::new();
    env.declare("x", Type::Object(object));
    for accepted in [
        "x.cc == null || x.cc.endsWith('@acme.example')",
        "has(x.meta) && x.meta != null && x.meta.owner == 'me'",
        "!has(x.limit) || x.limit == null || x.limit < 10",
    ] {
        assert!(check(&parse(accepted).unwrap(), &env).is_ok(), "{accepted}");
    }
    for (rejected, because) in [
        ("x.meta.ownr == 'me'", "ownr"),
        ("x.cc.endWith('@acme.example')", "endWith"),
        ("x.limit + 'a' == 'b'", "+"),
    ] {
        let found = check(&parse(rejected).unwrap(), &env).unwrap_err();
        assert!(
            found
                .iter()
                .any(|diagnostic| diagnostic.message.contains(because)),
            "{rejected}: {found:?}"
        );
    }
}

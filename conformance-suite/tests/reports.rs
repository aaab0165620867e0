//! The reports: the JSON report's shape, determinism (identical apart from timings), and
//! the JUnit report validated against the common JUnit XML schema.
//!
//! There is no xmllint here, so the schema's rules are encoded below over a roxmltree
//! parse: Jenkins' `junit-10.xsd` (the schema CI systems read: element hierarchy,
//! allowed and required attributes, `xs:int`/`xs:decimal` types) together with what the
//! stricter Ant `JUnit.xsd` adds (required `package`, `id`, `timestamp` in its ISO 8601
//! form, `hostname`, `failures`, `errors`, `time` on `<testsuite>`; `properties`,
//! `system-out` and `system-err` present and in order; `classname` and `time` on
//! `<testcase>`; `message` and `type` on `<failure>`), plus the counts agreeing with the
//! elements, which CI systems rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use agentc_conformance::mock::Faults;
use agentc_conformance::{SuiteOptions, SuiteReport, Target, run_suite};
use serde_json::Value;

async fn mixed_report() -> SuiteReport {
    // One tool with a failure (no docs), one with skips (no conformance section).
    let full = common::ticket_tool_yaml("https://support.example.com/tickets/search");
    let bare = full
        .split("conformance:")
        .next()
        .unwrap()
        .replace("name: ticket_search", "name: ticket_lookup");
    let tools = agentc_conformance::load_tools(&[
        agentc_compiler::SourceInput {
            name: "tickets.yaml".into(),
            bytes: full.into_bytes(),
        },
        agentc_compiler::SourceInput {
            name: "lookup.yaml".into(),
            bytes: bare.into_bytes(),
        },
    ])
    .unwrap();
    let options = SuiteOptions {
        mock_faults: Faults {
            no_docs: true,
            ..Faults::default()
        },
        ..SuiteOptions::default()
    };
    run_suite(&tools, &Target::mock(), &options).await
}

fn without_timings(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("duration_ms");
            object.values_mut().for_each(without_timings);
        }
        Value::Array(items) => items.iter_mut().for_each(without_timings),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_has_its_documented_shape_and_is_deterministic() {
    let report = mixed_report().await;
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["target"], "mock");
    assert_eq!(
        json["summary"],
        serde_json::json!({"passed": 8, "failed": 1, "skipped": 5})
    );
    assert!(json["duration_ms"].is_u64());
    let tools = json["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["tool"], "ticket_search");
    assert_eq!(tools[0]["source"], "tickets.yaml");
    assert_eq!(tools[0]["target"], "mock");
    let tests = tools[0]["tests"].as_array().unwrap();
    let names: Vec<&str> = tests
        .iter()
        .map(|test| test["test"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "discovery",
            "auth",
            "crud",
            "error",
            "rate_limit",
            "pitfall",
            "skill"
        ]
    );
    for test in tests.iter().chain(tools[1]["tests"].as_array().unwrap()) {
        assert!(test["duration_ms"].is_u64());
        match test["outcome"].as_str().unwrap() {
            "pass" => assert!(
                test["checks"]
                    .as_array()
                    .is_some_and(|checks| !checks.is_empty())
            ),
            "skip" => assert!(
                test["reason"]
                    .as_str()
                    .is_some_and(|reason| !reason.is_empty())
            ),
            "fail" => {
                for evidence in test["evidence"].as_array().unwrap() {
                    assert!(evidence["check"].is_string() && evidence["detail"].is_string());
                    assert!(evidence["status"].is_u64());
                    assert!(evidence["request"].as_str().unwrap().starts_with("GET /"));
                }
            }
            other => panic!("unknown outcome {other}"),
        }
    }
    // The same input gives the same report, timings aside (the mock's port never shows).
    let mut first = json;
    let mut second: Value = serde_json::from_str(&mixed_report().await.to_json()).unwrap();
    without_timings(&mut first);
    without_timings(&mut second);
    assert_eq!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_junit_report_validates_against_the_common_junit_schema() {
    let report = mixed_report().await;
    let xml = report.to_junit("2030-01-01T00:00:00");
    validate_junit(&xml).unwrap_or_else(|problem| panic!("{problem}\n{xml}"));
    let document = roxmltree::Document::parse(&xml).unwrap();
    let failures: Vec<_> = document
        .descendants()
        .filter(|node| node.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].attribute("type"), Some("discovery"));
    assert!(
        failures[0]
            .text()
            .unwrap()
            .contains("request: GET /openapi.json (no credential) -> 404")
    );
    assert_eq!(
        document
            .descendants()
            .filter(|node| node.has_tag_name("skipped"))
            .count(),
        5
    );
}

#[test]
fn the_validator_rejects_what_the_schema_rejects() {
    let good = r#"<testsuites><testsuite name="a" package="p" id="0" tests="1" failures="0" errors="0" skipped="0" time="0.1" timestamp="2030-01-01T00:00:00" hostname="h"><properties/><testcase name="t" classname="c" time="0.1"/><system-out/><system-err/></testsuite></testsuites>"#;
    validate_junit(good).unwrap();
    for (bad, why) in [
        (good.replace(" tests=\"1\"", ""), "missing tests"),
        (
            good.replace("tests=\"1\"", "tests=\"one\""),
            "tests not an int",
        ),
        (
            good.replace("time=\"0.1\" timestamp", "time=\"fast\" timestamp"),
            "time not a decimal",
        ),
        (
            good.replace("<testcase name=\"t\"", "<testcase"),
            "testcase without name",
        ),
        (good.replace("<properties/>", ""), "properties missing"),
        (
            good.replace(
                "<properties/><testcase name=\"t\" classname=\"c\" time=\"0.1\"/>",
                "<testcase name=\"t\" classname=\"c\" time=\"0.1\"/><properties/>",
            ),
            "wrong order",
        ),
        (
            good.replace(
                "time=\"0.1\"/>",
                "time=\"0.1\"><failure>x</failure></testcase>",
            ),
            "failure without message",
        ),
        (
            good.replace("<system-out/>", "<stdout/>"),
            "unknown element",
        ),
        (
            good.replace("hostname=\"h\"", "hostname=\"h\" colour=\"red\""),
            "unknown attribute",
        ),
        (
            good.replace("2030-01-01T00:00:00", "yesterday"),
            "timestamp form",
        ),
        (good.replace("tests=\"1\"", "tests=\"2\""), "count mismatch"),
    ] {
        assert!(validate_junit(&bad).is_err(), "accepted: {why}");
    }
}

fn is_int(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Ant's ISO8601_DATETIME_PATTERN: `YYYY-MM-DDThh:mm:ss`, no zone.
fn is_ant_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            _ => byte.is_ascii_digit(),
        })
}

type Rule = (&'static str, bool, fn(&str) -> bool);

fn any_text(_: &str) -> bool {
    true
}

/// Checks an element's attributes: each rule is (name, required, type check); any
/// attribute not in the rules is an error, as in the XSD.
fn check_attributes(node: roxmltree::Node<'_, '_>, rules: &[Rule]) -> Result<(), String> {
    let tag = node.tag_name().name();
    for attribute in node.attributes() {
        if !rules.iter().any(|(name, _, _)| *name == attribute.name()) {
            return Err(format!(
                "<{tag}> has an attribute the schema does not allow: {}",
                attribute.name()
            ));
        }
    }
    for (name, required, valid) in rules {
        match node.attribute(*name) {
            None if *required => {
                return Err(format!("<{tag}> lacks the required attribute `{name}`"));
            }
            Some(value) if !valid(value) => {
                return Err(format!("<{tag}> `{name}=\"{value}\"` has the wrong type"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn elements<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> Result<Vec<roxmltree::Node<'a, 'input>>, String> {
    let mut children = Vec::new();
    for child in node.children() {
        if child.is_element() {
            children.push(child);
        } else if child.is_text() && !child.text().unwrap_or_default().trim().is_empty() {
            return Err(format!(
                "<{}> holds text where the schema allows only elements",
                node.tag_name().name()
            ));
        }
    }
    Ok(children)
}

fn count_attribute(node: roxmltree::Node<'_, '_>, name: &str) -> usize {
    node.attribute(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn validate_junit(xml: &str) -> Result<(), String> {
    let document =
        roxmltree::Document::parse(xml).map_err(|error| format!("not well-formed XML: {error}"))?;
    let root = document.root_element();
    if root.tag_name().name() != "testsuites" {
        return Err(format!(
            "the root is <{}>, not <testsuites>",
            root.tag_name().name()
        ));
    }
    check_attributes(
        root,
        &[
            ("name", false, any_text),
            ("time", false, is_decimal),
            ("tests", false, is_int),
            ("failures", false, is_int),
            ("errors", false, is_int),
            ("skipped", false, is_int),
            ("disabled", false, is_int),
        ],
    )?;
    let (mut total_tests, mut total_failures, mut total_skipped) = (0, 0, 0);
    for suite in elements(root)? {
        if suite.tag_name().name() != "testsuite" {
            return Err(format!("<testsuites> holds <{}>", suite.tag_name().name()));
        }
        check_attributes(
            suite,
            &[
                ("name", true, |name| !name.is_empty()),
                ("package", true, any_text),
                ("id", true, any_text),
                ("tests", true, is_int),
                ("failures", true, is_int),
                ("errors", true, is_int),
                ("skipped", false, is_int),
                ("disabled", false, is_int),
                ("time", true, is_decimal),
                ("timestamp", true, is_ant_timestamp),
                ("hostname", true, |host| !host.is_empty()),
                ("file", false, any_text),
                ("log", false, any_text),
                ("url", false, any_text),
                ("version", false, any_text),
            ],
        )?;
        let children = elements(suite)?;
        let names: Vec<&str> = children
            .iter()
            .map(|child| child.tag_name().name())
            .collect();
        // properties, testcase*, system-out, system-err — in this order.
        let cases = names.iter().filter(|name| **name == "testcase").count();
        let mut expected = vec!["properties"];
        expected.extend(std::iter::repeat_n("testcase", cases));
        expected.extend(["system-out", "system-err"]);
        if names != expected {
            return Err(format!(
                "<testsuite> children are {names:?}; the schema wants properties, testcase*, system-out, system-err"
            ));
        }
        let (mut failures, mut errors, mut skipped) = (0, 0, 0);
        for child in children {
            match child.tag_name().name() {
                "properties" => {
                    for property in elements(child)? {
                        if property.tag_name().name() != "property" {
                            return Err("<properties> holds something other than <property>".into());
                        }
                        check_attributes(
                            property,
                            &[("name", true, |n| !n.is_empty()), ("value", true, any_text)],
                        )?;
                    }
                }
                "testcase" => {
                    check_attributes(
                        child,
                        &[
                            ("name", true, |n| !n.is_empty()),
                            ("classname", true, |n| !n.is_empty()),
                            ("time", true, is_decimal),
                            ("assertions", false, any_text),
                            ("status", false, any_text),
                        ],
                    )?;
                    for outcome in elements(child)? {
                        match outcome.tag_name().name() {
                            "failure" | "error" => {
                                check_attributes(
                                    outcome,
                                    &[("message", true, any_text), ("type", true, any_text)],
                                )?;
                                if outcome.tag_name().name() == "failure" {
                                    failures += 1
                                } else {
                                    errors += 1
                                }
                            }
                            "skipped" => {
                                check_attributes(outcome, &[("message", false, any_text)])?;
                                skipped += 1;
                            }
                            "system-out" | "system-err" => {}
                            other => return Err(format!("<testcase> holds <{other}>")),
                        }
                    }
                }
                "system-out" | "system-err" => {
                    if !elements(child)?.is_empty() {
                        return Err("<system-out>/<system-err> hold text only".into());
                    }
                }
                _ => unreachable!("checked by the order above"),
            }
        }
        if count_attribute(suite, "tests") != cases
            || count_attribute(suite, "failures") != failures
            || count_attribute(suite, "errors") != errors
            || count_attribute(suite, "skipped") != skipped
        {
            return Err(format!(
                "<testsuite name=\"{}\"> counts disagree with its test cases",
                suite.attribute("name").unwrap_or_default()
            ));
        }
        total_tests += cases;
        total_failures += failures;
        total_skipped += skipped;
    }
    if root.attribute("tests").is_some()
        && (count_attribute(root, "tests") != total_tests
            || count_attribute(root, "failures") != total_failures
            || count_attribute(root, "skipped") != total_skipped)
    {
        return Err("<testsuites> counts disagree with its suites".into());
    }
    Ok(())
}

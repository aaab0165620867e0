//! Each compiled check of a generated crate converts only the fields it reads
//! (`cel_roots::Reads`): the HR agent's output restriction does not look at the call's
//! inputs, nor its input restriction at the outputs. A field that a check does not read
//! cannot make it fail, and a field that it reads still decides it: on every
//! engagement here, the compiled checks answer as the interpreter does over the same
//! spec loaded at run time (an error, which denies, where it errs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agentc_cel::{MapKey, Value, ValueMap};
use agentc_runtime::{Check, FieldLookup, Invocation, SpecSet, VariableSource};
use serde_json::json;

/// `recent.hr_kb_search` is the call being checked, given as the engagement gives it.
struct PendingCall(Invocation);

impl VariableSource for PendingCall {
    fn variable(&self, name: &str) -> Option<Value> {
        let mut recent = ValueMap::new();
        recent.insert(
            MapKey::String(Arc::from("hr_kb_search")),
            self.0.cel_value().clone(),
        );
        (name == "recent").then(|| Value::Map(Arc::new(recent)))
    }

    fn field(&self, variable: &str, field: &str) -> FieldLookup<'_> {
        match (variable, field) {
            ("recent", "hr_kb_search") => FieldLookup::Invocation(&self.0),
            ("recent", _) => FieldLookup::Absent,
            _ => FieldLookup::WholeVariableOnly,
        }
    }
}

/// The HR agent's input and output restrictions: compiled (from the generated crate)
/// and interpreted (from the spec's YAML).
struct Restrictions {
    compiled: [Arc<dyn Check>; 2],
    interpreted: [Arc<dyn Check>; 2],
}

fn restrictions() -> Restrictions {
    use hr::policies::hr_agent;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../hr/");
    let sources: Vec<agentc_compiler::SourceInput> = ["hr_agent.yaml", "tools.yaml"]
        .iter()
        .map(|file| agentc_compiler::SourceInput {
            name: (*file).to_string(),
            bytes: std::fs::read(format!("{root}{file}")).unwrap(),
        })
        .collect();
    let set = SpecSet::from_sources(&sources).unwrap();
    let capability = &set.agent("hr_agent").unwrap().capabilities[0];
    let assertion = |restriction: &Option<agentc_runtime::RestrictionSpec>| {
        restriction.as_ref().unwrap().assertion.clone().unwrap()
    };
    Restrictions {
        compiled: [
            hr_agent::input_hr_kb_search_check().unwrap(),
            hr_agent::output_hr_kb_search_check().unwrap(),
        ],
        interpreted: [
            assertion(&capability.input_restriction),
            assertion(&capability.output_restriction),
        ],
    }
}

/// The verdicts of the input and output restrictions on a call, compiled and
/// interpreted alike: `Some(verdict)`, or `None` for an error (a denial).
fn verdicts(inputs: serde_json::Value, outputs: serde_json::Value) -> [Option<bool>; 2] {
    let restrictions = restrictions();
    let call = PendingCall(Invocation::new(Arc::new(inputs)).with_outputs(Arc::new(outputs)));
    let mut verdicts = [None; 2];
    for (index, verdict) in verdicts.iter_mut().enumerate() {
        let compiled = restrictions.compiled[index].holds(&call).ok();
        let interpreted = restrictions.interpreted[index].holds(&call).ok();
        assert_eq!(compiled, interpreted, "restriction {index}");
        *verdict = compiled;
    }
    verdicts
}

fn good_inputs() -> serde_json::Value {
    json!({"knowledge_base_id": "acme/hr/handbook", "query": "leave"})
}

fn outputs_at(url: &str) -> serde_json::Value {
    json!({"results": [{"title": "t", "snippet": "s", "url": url}]})
}

#[test]
fn the_output_restriction_does_not_read_the_inputs() {
    let unreadable_inputs = json!({"query": 7});
    let [input, output] = verdicts(
        unreadable_inputs,
        outputs_at("https://kb.acme.example/hr/leave"),
    );
    // The input restriction reads the missing `knowledge_base_id`: denied.
    assert_eq!(input, None);
    // The output restriction reads only the outputs, which it allows.
    assert_eq!(output, Some(true));
}

#[test]
fn the_output_restriction_still_reads_every_output_field_it_names() {
    let [input, output] = verdicts(good_inputs(), outputs_at("https://evil.example/"));
    assert_eq!((input, output), (Some(true), Some(false)));
    let without_url = json!({"results": [{"title": "t"}]});
    let [input, output] = verdicts(good_inputs(), without_url);
    assert_eq!((input, output), (Some(true), None));
}

#[test]
fn the_input_restriction_does_not_read_the_outputs() {
    let [input, output] = verdicts(good_inputs(), json!({"results": "not a list"}));
    assert_eq!((input, output), (Some(true), None));
    let outside = json!({"knowledge_base_id": "acme/it/wiki", "query": "vpn"});
    let [input, _] = verdicts(outside, json!({"results": "not a list"}));
    assert_eq!(input, Some(false));
}

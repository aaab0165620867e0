//! A layout pruned to the fields an expression reads (`prune_layout`) must serve that
//! expression exactly: for every corpus expression, the code compiled over the pruned
//! layout is the code compiled over the whole one, token for token, and the pruned
//! layout holds nothing the expression does not read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel::{ObjectType, Type};
use agentc_cel_compile::{FieldReads, compile_function, prune_layout};
use agentc_cel_differential::{corpus, layout};

/// Every (object name, field) pair of a layout, at any depth.
fn fields_of(object: &ObjectType, into: &mut Vec<(String, String)>) {
    for (name, field) in &object.fields {
        into.push((object.name.clone(), name.clone()));
        let mut ty = &field.ty;
        loop {
            match ty {
                Type::List(element) => ty = element,
                Type::Map(_, value) => ty = value,
                _ => break,
            }
        }
        if let Type::Object(inner) = ty {
            fields_of(inner, into);
        }
    }
}

#[test]
fn every_corpus_expression_compiles_the_same_over_its_pruned_layout() {
    let full = layout();
    let mut all_fields = Vec::new();
    fields_of(&full, &mut all_fields);
    for (name, source) in corpus::CORPUS {
        let expr = agentc_cel::parse(source).unwrap();
        let over_full = compile_function(name, &expr, "Engagement", &full).unwrap();
        let pruned = prune_layout(&full, &over_full.reads);
        let over_pruned = compile_function(name, &expr, "Engagement", &pruned)
            .unwrap_or_else(|error| panic!("`{source}` over its pruned layout: {error}"));
        assert_eq!(
            over_pruned.tokens.to_string(),
            over_full.tokens.to_string(),
            "`{source}`"
        );
        assert_eq!(over_pruned.reads, over_full.reads, "`{source}`");
        let mut kept = Vec::new();
        fields_of(&pruned, &mut kept);
        for (object, field) in &kept {
            assert!(
                over_full.reads.contains(object, field),
                "`{source}`: `{object}.{field}` is kept but not read"
            );
        }
        assert!(
            kept.len() < all_fields.len(),
            "`{source}`: pruning kept every field"
        );
    }
}

#[test]
fn selections_tests_and_comprehension_items_are_reads() {
    let full = layout();
    let expr = agentc_cel::parse(
        "has(recent.hr_kb_search) && recent.hr_kb_search.outputs.results.all(r, r.score > 0.5) \
         && size(history.create_event) < 3",
    )
    .unwrap();
    let reads = compile_function("f", &expr, "Engagement", &full)
        .unwrap()
        .reads;
    let mut expected = FieldReads::default();
    for (object, field) in [
        ("Engagement", "recent"),
        ("Recent", "hr_kb_search"),
        ("HrKbSearchInvocation", "outputs"),
        ("HrKbSearchOutputs", "results"),
        ("HrKbSearchOutputsResultsItem", "score"),
        ("Engagement", "history"),
        ("History", "create_event"),
    ] {
        expected.insert(object, field);
    }
    assert_eq!(reads, expected);
    assert_eq!(
        reads.fields_of("Engagement").collect::<Vec<_>>(),
        ["history", "recent"]
    );
    let pruned = prune_layout(&full, &reads);
    assert_eq!(
        pruned.fields.keys().collect::<Vec<_>>(),
        ["history", "recent"]
    );
    // The items of `history.create_event` are kept as empty objects: `size` counts them
    // and reads nothing inside.
    let Type::Object(history) = &pruned.fields["history"].ty else {
        panic!("history is an object");
    };
    let Type::List(item) = &history.fields["create_event"].ty else {
        panic!("create_event is a list");
    };
    let Type::Object(item) = &**item else {
        panic!("its items are objects");
    };
    assert!(item.fields.is_empty() && !item.open);
}

#[test]
fn a_field_only_tested_with_has_is_kept() {
    let full = layout();
    let expr = agentc_cel::parse("has(recent.create_event) || has(user.email)").unwrap();
    let compiled = compile_function("f", &expr, "Engagement", &full).unwrap();
    let pruned = prune_layout(&full, &compiled.reads);
    let over_pruned = compile_function("f", &expr, "Engagement", &pruned).unwrap();
    assert_eq!(over_pruned.tokens.to_string(), compiled.tokens.to_string());
    let Type::Object(user) = &pruned.fields["user"].ty else {
        panic!("user is an object");
    };
    assert_eq!(user.fields.keys().collect::<Vec<_>>(), ["email"]);
}

#[test]
fn a_comprehension_variable_that_shadows_a_root_is_not_a_read_of_the_root() {
    let expr = agentc_cel::parse("history.hr_kb_search.exists(user, has(user.outputs))").unwrap();
    let reads = compile_function("f", &expr, "Engagement", &layout())
        .unwrap()
        .reads;
    assert_eq!(
        reads.fields_of("Engagement").collect::<Vec<_>>(),
        ["history"]
    );
    assert!(reads.contains("HrKbSearchInvocation", "outputs"));
}

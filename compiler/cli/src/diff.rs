//! `agentc diff OLD NEW [--traces FILE]`: the security-posture difference between two
//! versions of a set (AGX-R2), so that a reviewer of a policy change sees what it
//! loosens before it is deployed, and CI can refuse a loosening (`--fail-on loosened`).
//!
//! Each difference is one [`Change`]: which agent, where in it (`capabilities.send_email.
//! input_restriction.assertion`), whether it was added, removed or changed, and its
//! effect on what the agent may do — `loosened`, `tightened`, or `changed` where the
//! effect cannot be told from the text (a rewritten assertion; the traces tell). With
//! traces, each recorded call is replayed under both versions and every decision that
//! flips is listed, with its effect. Reports are deterministic: agents, capabilities
//! and keys in name order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use agentc_compiler::documents::Document;
use agentc_compiler::documents::agent::{
    AgentDocument, Capability, Lifespan, Restriction, ShadowRestriction,
};
use agentc_compiler::documents::tool::ToolDocument;
use agentc_compiler::{CheckedSet, SourceInput};
use agentc_runtime::SpecSet;
use agentc_runtime::replay::{Decision, Replayer, Trace};
use serde::Serialize;
use serde_json::Value;

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// One line per change and per flipped decision.
    Text,
    /// The changes, the flips and a summary as one JSON document.
    Json,
}

/// What makes `agentc diff` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A change or a flipped decision that loosens.
    Loosened,
    /// Any change or flipped decision.
    Any,
}

/// What `agentc diff` was asked to do.
pub struct DiffRequest<'a> {
    pub old: Vec<SourceInput>,
    pub new: Vec<SourceInput>,
    pub traces: Option<&'a Path>,
    pub format: DiffFormat,
    pub fail_on: Option<FailOn>,
}

/// A difference's effect on what an agent may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// It may do more, or with less oversight.
    Loosened,
    /// It may do less, or with more oversight.
    Tightened,
    /// It differs in a way the text does not settle.
    Changed,
}

/// What happened to the thing at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One difference between the two versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// The agent, or `tool:<name>` for a tool document.
    pub subject: String,
    /// Where in it, keys joined by `.`; empty for the whole agent or tool.
    pub path: String,
    pub change: ChangeKind,
    pub effect: Effect,
    /// The old value (CEL text, a reviewer, a number), when there is one to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The new value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// A recorded call whose decision differs between the versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    pub trace: String,
    pub index: usize,
    pub name: String,
    pub old: Decision,
    pub new: Decision,
    pub effect: Effect,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    changes: usize,
    loosened: usize,
    tightened: usize,
    changed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    flips: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loosening_flips: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    changes: &'a [Change],
    #[serde(skip_serializing_if = "Option::is_none")]
    flips: Option<&'a [Flip]>,
    summary: Summary,
}

/// Compares and prints the report. Exit 0, or 1 when `--fail-on` finds what it names,
/// 2 on usage or IO errors (a version with errors, an unreadable trace file).
pub fn diff(request: DiffRequest<'_>) -> ExitCode {
    match diff_and_report(&request) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn diff_and_report(request: &DiffRequest<'_>) -> Result<bool, String> {
    let refusal = "only valid sets are compared";
    let old = crate::files::valid_set(&request.old, "the old version", refusal)?;
    let new = crate::files::valid_set(&request.new, "the new version", refusal)?;
    let changes = compare_sets(&old, &new);
    let flips = match request.traces {
        Some(path) => Some(flips(&old, &new, path)?),
        None => None,
    };
    let count = |effect: Effect| changes.iter().filter(|c| c.effect == effect).count();
    let summary = Summary {
        changes: changes.len(),
        loosened: count(Effect::Loosened),
        tightened: count(Effect::Tightened),
        changed: count(Effect::Changed),
        flips: flips.as_ref().map(Vec::len),
        loosening_flips: flips.as_ref().map(|flips| {
            flips
                .iter()
                .filter(|flip| flip.effect == Effect::Loosened)
                .count()
        }),
    };
    let failed = match request.fail_on {
        None => false,
        Some(FailOn::Loosened) => {
            summary.loosened > 0 || summary.loosening_flips.is_some_and(|count| count > 0)
        }
        Some(FailOn::Any) => summary.changes > 0 || summary.flips.is_some_and(|count| count > 0),
    };
    let rendered = match request.format {
        DiffFormat::Text => render_text(&changes, flips.as_deref(), &summary),
        DiffFormat::Json => {
            let report = Report {
                changes: &changes,
                flips: flips.as_deref(),
                summary,
            };
            let mut json =
                serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
            json.push('\n');
            json
        }
    };
    std::io::stdout()
        .write_all(rendered.as_bytes())
        .map_err(|error| error.to_string())?;
    Ok(!failed)
}

fn render_text(changes: &[Change], flips: Option<&[Flip]>, summary: &Summary) -> String {
    let mut text = String::new();
    for change in changes {
        let place = if change.path.is_empty() {
            change.subject.clone()
        } else {
            format!("{} {}", change.subject, change.path)
        };
        let effect = match change.effect {
            Effect::Loosened => "loosened",
            Effect::Tightened => "tightened",
            Effect::Changed => "changed",
        };
        let kind = match change.change {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        };
        let _ = write!(text, "{effect:<9}  {place}: {kind}");
        match (&change.old, &change.new) {
            (Some(old), Some(new)) => {
                let _ = write!(text, " (`{old}` → `{new}`)");
            }
            (Some(old), None) => {
                let _ = write!(text, " (was `{old}`)");
            }
            (None, Some(new)) => {
                let _ = write!(text, " (`{new}`)");
            }
            (None, None) => {}
        }
        text.push('\n');
    }
    if let Some(flips) = flips {
        for flip in flips {
            let _ = writeln!(
                text,
                "flip       {} #{} {}: {} → {}{}",
                flip.trace,
                flip.index,
                flip.name,
                flip.old.as_str(),
                flip.new.as_str(),
                if flip.effect == Effect::Loosened {
                    " (loosened)"
                } else {
                    ""
                }
            );
        }
    }
    let _ = write!(
        text,
        "{} change(s): {} loosened, {} tightened, {} changed",
        summary.changes, summary.loosened, summary.tightened, summary.changed
    );
    if let (Some(flips), Some(loosening)) = (summary.flips, summary.loosening_flips) {
        let _ = write!(
            text,
            "; {flips} recorded decision(s) flip, {loosening} of them loosening"
        );
    }
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------
// Comparing documents

fn agents(set: &CheckedSet) -> BTreeMap<String, &AgentDocument> {
    set.documents
        .iter()
        .filter_map(|loaded| match &loaded.document {
            Document::Agent(agent) => Some((agent.name.value.clone(), agent)),
            _ => None,
        })
        .collect()
}

fn tools(set: &CheckedSet) -> BTreeMap<String, &ToolDocument> {
    set.documents
        .iter()
        .filter_map(|loaded| match &loaded.document {
            Document::Tool(tool) => Some((tool.name.value.clone(), tool)),
            _ => None,
        })
        .collect()
}

/// Every difference between two valid sets, in order.
pub fn compare_sets(old: &CheckedSet, new: &CheckedSet) -> Vec<Change> {
    let mut changes = Vec::new();
    let (old_agents, new_agents) = (agents(old), agents(new));
    for name in keys(&old_agents, &new_agents) {
        let mut out = Out {
            subject: name.clone(),
            changes: &mut changes,
        };
        match (old_agents.get(&name), new_agents.get(&name)) {
            (Some(_), None) => out.push("", ChangeKind::Removed, Effect::Tightened, None, None),
            (None, Some(_)) => out.push("", ChangeKind::Added, Effect::Loosened, None, None),
            (Some(old), Some(new)) => compare_agents(&mut out, old, new),
            (None, None) => {}
        }
    }
    let (old_tools, new_tools) = (tools(old), tools(new));
    for name in keys(&old_tools, &new_tools) {
        let mut out = Out {
            subject: format!("tool:{name}"),
            changes: &mut changes,
        };
        match (old_tools.get(&name), new_tools.get(&name)) {
            (Some(_), None) => out.push("", ChangeKind::Removed, Effect::Changed, None, None),
            (None, Some(_)) => out.push("", ChangeKind::Added, Effect::Changed, None, None),
            (Some(old), Some(new)) => compare_tools(&mut out, old, new),
            (None, None) => {}
        }
    }
    changes.sort();
    changes
}

fn keys<V>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> BTreeSet<String> {
    old.keys().chain(new.keys()).cloned().collect()
}

struct Out<'a> {
    subject: String,
    changes: &'a mut Vec<Change>,
}

impl Out<'_> {
    fn push(
        &mut self,
        path: &str,
        change: ChangeKind,
        effect: Effect,
        old: Option<String>,
        new: Option<String>,
    ) {
        self.changes.push(Change {
            subject: self.subject.clone(),
            path: path.to_string(),
            change,
            effect,
            old,
            new,
        });
    }

    /// An optional value whose presence has a known effect: `when_added` when it
    /// appears (the opposite when it goes), `changed` when its text differs.
    fn optional(
        &mut self,
        path: &str,
        old: Option<String>,
        new: Option<String>,
        when_added: Effect,
    ) {
        let opposite = match when_added {
            Effect::Loosened => Effect::Tightened,
            Effect::Tightened => Effect::Loosened,
            Effect::Changed => Effect::Changed,
        };
        match (old, new) {
            (None, Some(new)) => self.push(path, ChangeKind::Added, when_added, None, Some(new)),
            (Some(old), None) => self.push(path, ChangeKind::Removed, opposite, Some(old), None),
            (Some(old), Some(new)) if normalised(&old) != normalised(&new) => {
                self.push(
                    path,
                    ChangeKind::Changed,
                    Effect::Changed,
                    Some(old),
                    Some(new),
                );
            }
            _ => {}
        }
    }
}

/// CEL or text compared without its layout: a re-indented assertion is the same rule.
fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compare_agents(out: &mut Out<'_>, old: &AgentDocument, new: &AgentDocument) {
    // Definitions: what a changed one does is only known through the expressions that
    // use it, so any difference is `changed`.
    let texts = |agent: &AgentDocument| -> BTreeMap<String, String> {
        agent
            .definitions
            .iter()
            .flat_map(|map| map.iter())
            .map(|(key, cel)| (key.value.clone(), cel.text.clone()))
            .collect()
    };
    let (old_definitions, new_definitions) = (texts(old), texts(new));
    for key in keys(&old_definitions, &new_definitions) {
        out.optional(
            &format!("definitions.{key}"),
            old_definitions.get(&key).cloned(),
            new_definitions.get(&key).cloned(),
            Effect::Changed,
        );
    }
    fn capabilities(agent: &AgentDocument) -> BTreeMap<String, &Capability> {
        agent
            .capabilities
            .iter()
            .flat_map(|map| map.iter())
            .map(|(key, capability)| (key.value.clone(), capability))
            .collect()
    }
    let (old_capabilities, new_capabilities) = (capabilities(old), capabilities(new));
    for key in keys(&old_capabilities, &new_capabilities) {
        let path = format!("capabilities.{key}");
        let (Some(old), Some(new)) = (old_capabilities.get(&key), new_capabilities.get(&key))
        else {
            let added = new_capabilities.contains_key(&key);
            out.push(
                &path,
                if added {
                    ChangeKind::Added
                } else {
                    ChangeKind::Removed
                },
                if added {
                    Effect::Loosened
                } else {
                    Effect::Tightened
                },
                None,
                None,
            );
            continue;
        };
        let flag = |value: &Option<agentc_compiler::span::Spanned<bool>>| {
            value.as_ref().is_none_or(|flag| flag.value)
        };
        if flag(&old.collect_results) != flag(&new.collect_results) {
            out.push(
                &format!("{path}.collect_results"),
                ChangeKind::Changed,
                Effect::Changed,
                Some(flag(&old.collect_results).to_string()),
                Some(flag(&new.collect_results).to_string()),
            );
        }
        // The identity a tool is called with: any change is reported, its effect is
        // the credential sets' to judge.
        if flag(&old.user_identity) != flag(&new.user_identity) {
            out.push(
                &format!("{path}.user_identity"),
                ChangeKind::Changed,
                Effect::Changed,
                Some(flag(&old.user_identity).to_string()),
                Some(flag(&new.user_identity).to_string()),
            );
        }
        let identity = |value: &Option<agentc_compiler::span::Spanned<String>>| {
            value.as_ref().map(|identity| identity.value.clone())
        };
        out.optional(
            &format!("{path}.static_identity"),
            identity(&old.static_identity),
            identity(&new.static_identity),
            Effect::Changed,
        );
        for (which, old_restriction, new_restriction) in [
            (
                "input_restriction",
                &old.input_restriction,
                &new.input_restriction,
            ),
            (
                "output_restriction",
                &old.output_restriction,
                &new.output_restriction,
            ),
        ] {
            compare_restrictions(
                out,
                &format!("{path}.{which}"),
                old_restriction.as_ref(),
                new_restriction.as_ref(),
            );
        }
    }
    let guardrails = |agent: &AgentDocument, input: bool| {
        agent
            .guardrails
            .as_ref()
            .and_then(|guardrails| {
                if input {
                    guardrails.input.as_ref()
                } else {
                    guardrails.output.as_ref()
                }
            })
            .map(|guardrail| {
                format!(
                    "{}: {}",
                    guardrail.tool_name.value,
                    normalised(&guardrail.assertion.text)
                )
            })
    };
    for (which, input) in [("input", true), ("output", false)] {
        out.optional(
            &format!("guardrails.{which}"),
            guardrails(old, input),
            guardrails(new, input),
            Effect::Tightened,
        );
    }
    let exposes = |agent: &AgentDocument| -> BTreeMap<String, String> {
        agent
            .exposes
            .iter()
            .flat_map(|map| map.iter())
            .map(|(key, cel)| (key.value.clone(), cel.text.clone()))
            .collect()
    };
    let (old_exposes, new_exposes) = (exposes(old), exposes(new));
    for key in keys(&old_exposes, &new_exposes) {
        // More exposed to the caller is a loosening.
        out.optional(
            &format!("exposes.{key}"),
            old_exposes.get(&key).cloned(),
            new_exposes.get(&key).cloned(),
            Effect::Loosened,
        );
    }
    compare_lifespans(out, old.lifespan.as_ref(), new.lifespan.as_ref());
}

/// One part of a shadow restriction, as text to compare.
type ShadowField = fn(&ShadowRestriction) -> Option<String>;

fn compare_restrictions(
    out: &mut Out<'_>,
    path: &str,
    old: Option<&Restriction>,
    new: Option<&Restriction>,
) {
    let text = |restriction: Option<&Restriction>, field: fn(&Restriction) -> Option<String>| {
        restriction.and_then(field)
    };
    let assertion = |restriction: &Restriction| {
        restriction
            .assertion
            .as_ref()
            .map(|cel| normalised(&cel.text))
    };
    let reviewer = |restriction: &Restriction| {
        restriction
            .require_review
            .as_ref()
            .map(|reviewer| reviewer.value.clone())
    };
    let condition = |restriction: &Restriction| {
        restriction
            .review_when
            .as_ref()
            .map(|cel| normalised(&cel.text))
    };
    out.optional(
        &format!("{path}.assertion"),
        text(old, assertion),
        text(new, assertion),
        Effect::Tightened,
    );
    out.optional(
        &format!("{path}.require_review"),
        text(old, reviewer),
        text(new, reviewer),
        Effect::Tightened,
    );
    // A condition on a review asks the reviewer less often than none (AGX-V1).
    out.optional(
        &format!("{path}.review_when"),
        text(old, condition),
        text(new, condition),
        Effect::Loosened,
    );
    // AGX-S1: a shadow decides nothing, so adding, removing or changing one neither
    // loosens nor tightens; moving a rule from the restriction into its shadow shows as
    // the enforced rule removed (a loosening) and the shadow added.
    let shadow_text = |restriction: Option<&Restriction>, field: ShadowField| {
        restriction
            .and_then(|restriction| restriction.shadow.as_ref())
            .and_then(field)
    };
    let shadow_fields: [(&str, ShadowField); 3] = [
        ("assertion", |shadow| {
            shadow.assertion.as_ref().map(|cel| normalised(&cel.text))
        }),
        ("require_review", |shadow| {
            shadow
                .require_review
                .as_ref()
                .map(|reviewer| reviewer.value.clone())
        }),
        ("review_when", |shadow| {
            shadow.review_when.as_ref().map(|cel| normalised(&cel.text))
        }),
    ];
    for (name, field) in shadow_fields {
        out.optional(
            &format!("{path}.shadow.{name}"),
            shadow_text(old, field),
            shadow_text(new, field),
            Effect::Changed,
        );
    }
}

fn compare_lifespans(out: &mut Out<'_>, old: Option<&Lifespan>, new: Option<&Lifespan>) {
    let flag = |lifespan: Option<&Lifespan>,
                field: fn(&Lifespan) -> Option<bool>,
                default: bool| { lifespan.and_then(field).unwrap_or(default) };
    // Memory kept across engagements is more a model can be steered by.
    let retain = |lifespan: &Lifespan| lifespan.retain_memory.as_ref().map(|flag| flag.value);
    let (old_retain, new_retain) = (flag(old, retain, true), flag(new, retain, true));
    if old_retain != new_retain {
        out.push(
            "lifespan.retain_memory",
            ChangeKind::Changed,
            if new_retain {
                Effect::Loosened
            } else {
                Effect::Tightened
            },
            Some(old_retain.to_string()),
            Some(new_retain.to_string()),
        );
    }
    let stop = |lifespan: &Lifespan| lifespan.stop_on_refusal.as_ref().map(|flag| flag.value);
    let (old_stop, new_stop) = (flag(old, stop, false), flag(new, stop, false));
    if old_stop != new_stop {
        out.push(
            "lifespan.stop_on_refusal",
            ChangeKind::Changed,
            if new_stop {
                Effect::Tightened
            } else {
                Effect::Loosened
            },
            Some(old_stop.to_string()),
            Some(new_stop.to_string()),
        );
    }
    // Limits: a higher one, or none, lets more through. `None` for `short_circuit` is
    // no limit; the call limits have their defaults (AGX-L1/L2).
    /// A limit's path, how to read it, and its default.
    type Limit = (&'static str, fn(&Lifespan) -> Option<u64>, Option<u64>);
    let limits: [Limit; 3] = [
        (
            "lifespan.short_circuit",
            |lifespan| lifespan.short_circuit.as_ref().map(|limit| limit.value),
            None,
        ),
        (
            "lifespan.max_calls_per_turn",
            |lifespan| {
                lifespan
                    .max_calls_per_turn
                    .as_ref()
                    .map(|limit| limit.value)
            },
            Some(64),
        ),
        (
            "lifespan.max_calls",
            |lifespan| lifespan.max_calls.as_ref().map(|limit| limit.value),
            Some(1_000),
        ),
    ];
    for (path, field, default) in limits {
        let old_limit = old.and_then(field).or(default);
        let new_limit = new.and_then(field).or(default);
        if old_limit == new_limit {
            continue;
        }
        let effect = match (old_limit, new_limit) {
            (_, None) => Effect::Loosened,
            (None, Some(_)) => Effect::Tightened,
            (Some(old), Some(new)) if new > old => Effect::Loosened,
            _ => Effect::Tightened,
        };
        let show = |limit: Option<u64>| Some(limit.map_or("none".to_string(), |l| l.to_string()));
        out.push(
            path,
            ChangeKind::Changed,
            effect,
            show(old_limit),
            show(new_limit),
        );
    }
}

fn compare_tools(out: &mut Out<'_>, old: &ToolDocument, new: &ToolDocument) {
    if old.input.value != new.input.value {
        out.push("input", ChangeKind::Changed, Effect::Changed, None, None);
    }
    // Trust (AGX-P1) first, as the runtime reads it — a label holds below it, and
    // removing an `untrusted` under a trusted parent trusts the field: a part of the
    // output that becomes trusted lets more values through every provenance rule.
    // Only the highest part that flips is reported, not each part below it.
    let (old_trust, new_trust) = (
        effective_trust(&old.output.value),
        effective_trust(&new.output.value),
    );
    for (pointer, (was, parent)) in &old_trust {
        let Some((is, _)) = new_trust.get(pointer) else {
            continue;
        };
        let parent_flipped = parent.as_ref().is_some_and(|parent| {
            matches!(
                (old_trust.get(parent), new_trust.get(parent)),
                (Some((parent_was, _)), Some((parent_is, _))) if parent_was != parent_is
            )
        });
        if was != is && !parent_flipped {
            let label =
                |trusted: bool| Some(if trusted { "trusted" } else { "untrusted" }.to_string());
            out.push(
                &format!("output{pointer}.x-agentc-trust"),
                ChangeKind::Changed,
                if *is {
                    Effect::Loosened
                } else {
                    Effect::Tightened
                },
                label(*was),
                label(*is),
            );
        }
    }
    if without_labels(&old.output.value) != without_labels(&new.output.value) {
        out.push("output", ChangeKind::Changed, Effect::Changed, None, None);
    }
    let binding = |tool: &ToolDocument| serde_json::to_value(&tool.binding).ok();
    if binding(old) != binding(new) {
        out.push("binding", ChangeKind::Changed, Effect::Changed, None, None);
    }
}

/// Whether each part of an output schema is trusted as the runtime reads it (a label
/// holds below it; unlabelled at the top is untrusted), by the JSON Pointer of the
/// schema node, with the pointer of the schema node above it.
fn effective_trust(schema: &Value) -> BTreeMap<String, (bool, Option<String>)> {
    let mut trust = BTreeMap::new();
    let mut stack = vec![(String::new(), schema, false, None::<String>)];
    while let Some((pointer, node, inherited, parent)) = stack.pop() {
        let Value::Object(map) = node else { continue };
        let trusted = match map.get(agentc_runtime::provenance::TRUST_KEYWORD) {
            Some(Value::String(label)) => label == "trusted",
            Some(_) => false,
            None => inherited,
        };
        trust.insert(pointer.clone(), (trusted, parent));
        let mut children: Vec<(String, &Value)> = Vec::new();
        if let Some(Value::Object(properties)) = map.get("properties") {
            for (name, child) in properties {
                let escaped = name.replace('~', "~0").replace('/', "~1");
                children.push((format!("{pointer}/properties/{escaped}"), child));
            }
        }
        for keyword in ["items", "additionalProperties"] {
            if let Some(child) = map.get(keyword) {
                children.push((format!("{pointer}/{keyword}"), child));
            }
        }
        for keyword in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(branches)) = map.get(keyword) {
                for (index, child) in branches.iter().enumerate() {
                    children.push((format!("{pointer}/{keyword}/{index}"), child));
                }
            }
        }
        for (child_pointer, child) in children {
            stack.push((child_pointer, child, trusted, Some(pointer.clone())));
        }
    }
    trust
}

fn without_labels(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != agentc_runtime::provenance::TRUST_KEYWORD)
                .map(|(key, value)| (key.clone(), without_labels(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_labels).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Recorded decisions under both versions

fn strictness(decision: Decision) -> u8 {
    match decision {
        Decision::Allowed => 0,
        Decision::Review => 1,
        Decision::Refused => 2,
    }
}

fn flips(old: &CheckedSet, new: &CheckedSet, path: &Path) -> Result<Vec<Flip>, String> {
    let load = |set: &CheckedSet| -> Result<SpecSet, String> {
        SpecSet::from_checked_set(set).map_err(|error| error.to_string())
    };
    let (old_specs, new_specs) = (load(old)?, load(new)?);
    let old_replayer = Replayer::new(&old_specs).map_err(|error| error.to_string())?;
    let new_replayer = Replayer::new(&new_specs).map_err(|error| error.to_string())?;
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let mut flips = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let trace: Trace = serde_json::from_str(line)
            .map_err(|error| format!("line {}: not a trace: {error}", index + 1))?;
        let replay = |replayer: &Replayer| {
            tokio_runtime
                .block_on(replayer.replay(&trace))
                .map_err(|error| format!("line {}: {error}", index + 1))
        };
        let (before, after) = (replay(&old_replayer)?, replay(&new_replayer)?);
        // A call present under one version only (the trace ended earlier under the
        // other) is not a flip of a decision; the calls both decided are compared.
        for (old_call, new_call) in before.iter().zip(after.iter()) {
            if old_call.decision == new_call.decision {
                continue;
            }
            let effect = if strictness(new_call.decision) < strictness(old_call.decision) {
                Effect::Loosened
            } else {
                Effect::Tightened
            };
            flips.push(Flip {
                trace: trace.id.clone(),
                index: old_call.index,
                name: old_call.name.clone(),
                old: old_call.decision,
                new: new_call.decision,
                effect,
            });
        }
    }
    Ok(flips)
}

//! The semantic pass over the whole set of documents: names, references, identities,
//! reviewers, tool schemas and bindings, handoff and manifest rules, and the CEL of
//! every assertion and `exposes` value. Every problem is collected; nothing stops early.
//!
//! In order: [`Resolution`]; `check_documents`, which fixes the pass's order (handoffs
//! and manifests, tools, names, each agent's references and fields, cycles, then CEL);
//! the private `Checker`'s rule per document part; the CEL step (exposes in dependency
//! order, then assertions and guardrails); free helpers (types, CEL diagnostics, RFC
//! 3339). One file because every rule reports through that one `Checker` and the CEL
//! step reads the references resolved before it, so the order is seen in one place.

use crate::diagnostics::{Code, Diagnostic, FrontEndCode, Severity, did_you_mean};
use crate::documents::agent::{AgentDocument, Capability, Restriction, ShadowRestriction};
use crate::documents::handoff::{
    GateStatus, HandoffDocument, HandoffResponse, HandoffResponseStatus, HandoffStatus,
};
use crate::documents::manifest::CapabilityManifest;
use crate::documents::tool::{AuthScheme, ToolDocument};
use crate::documents::{Document, LoadedDocument};
use crate::lower::CelText;
use crate::names::{Reference, name_problem, parse_reference, suggested_name};
use crate::span::{Span, Spanned};
use agentc_cel::engagement::{AssertionSite, CapabilityTypes, engagement_env};
use agentc_cel::{FieldType, ObjectType, Type, TypeEnv};
use std::collections::{BTreeMap, HashMap};

/// What a capability key resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapabilityTarget {
    /// Index into the set's tools.
    Tool(usize),
    /// Index into the set's agents.
    Agent(usize),
    /// An agent on another server, at this HTTPS URL.
    Remote { url: String },
}

/// The checked view of the set that later stages (IR, build, runtime) start from.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// Per agent (by index among agents), per capability key: its parsed reference and target.
    pub capability_targets: Vec<Vec<Option<(Reference, CapabilityTarget)>>>,
    /// Remote agents whose documents were fetched into the set (`agentc check
    /// --fetch-remote`): URL → index among agents. Their `exposes` type the callers'
    /// assertions; they are never hosted by this set.
    pub remote_documents: BTreeMap<String, usize>,
}

/// Whether a source was fetched from a remote server rather than read locally. The CLI
/// names fetched documents by their URL; such documents describe agents hosted
/// elsewhere, so their names do not clash with local ones and their own capabilities
/// (tools we cannot see) are not checked here.
pub fn is_remote_source_name(name: &str) -> bool {
    name.starts_with("https://") || name.starts_with("http://")
}

pub(crate) struct Checker<'a> {
    names: &'a [String],
    sources: &'a [String],
    /// False while typing a fetched remote agent: its problems are its owner's to fix.
    reporting: bool,
    agents: Vec<&'a AgentDocument>,
    tools: Vec<&'a ToolDocument>,
    diagnostics: Vec<Diagnostic>,
    /// Each agent's definitions (AGX-D1), checked once when first needed.
    definitions: Vec<Option<std::rc::Rc<AgentDefinitions>>>,
}

/// An agent's definitions (AGX-D1) as checked: those that check, inlined into the
/// agent's expressions, and the names of those that do not, whose uses are not checked
/// again (one mistake, one diagnostic).
#[derive(Debug, Default)]
struct AgentDefinitions {
    usable: agentc_cel::Definitions,
    broken: Vec<String>,
}

impl AgentDefinitions {
    /// Whether `expr` uses a definition that did not check.
    fn uses_broken(&self, expr: &agentc_cel::Expr) -> bool {
        use agentc_cel::ast::ExprKind;
        if self.broken.is_empty() {
            return false;
        }
        let mut stack = vec![expr];
        while let Some(node) = stack.pop() {
            let name = match &node.kind {
                ExprKind::Ident(name) => Some(name),
                ExprKind::Call {
                    target: None,
                    function,
                    ..
                } => Some(function),
                _ => None,
            };
            if name.is_some_and(|name| self.broken.contains(name)) {
                return true;
            }
            stack.extend(node.children());
        }
        false
    }
}

pub(crate) fn check_documents(
    names: &[String],
    sources: &[String],
    documents: &[LoadedDocument],
) -> (Resolution, Vec<Diagnostic>) {
    let mut checker = Checker {
        names,
        sources,
        reporting: true,
        agents: Vec::new(),
        tools: Vec::new(),
        diagnostics: Vec::new(),
        definitions: Vec::new(),
    };
    for loaded in documents {
        match &loaded.document {
            Document::Agent(agent) => checker.agents.push(agent),
            Document::Tool(tool) => checker.tools.push(tool),
            Document::Handoff(handoff) => checker.check_handoff(handoff),
            Document::HandoffRequest(request) => {
                if let Some(deadline) = request
                    .context
                    .constraints
                    .as_ref()
                    .and_then(|constraints| constraints.deadline.as_ref())
                {
                    checker.check_datetime(deadline);
                }
            }
            Document::HandoffResponse(response) => checker.check_handoff_response(response),
            Document::CapabilityManifest(manifest) => checker.check_manifest(manifest),
        }
    }
    let tools = checker.tools.clone();
    for tool in &tools {
        checker.check_tool(tool);
    }
    checker.check_unique_names();
    let agents = checker.agents.clone();
    let mut resolution = Resolution::default();
    for agent in &agents {
        if checker.is_remote(agent.span) {
            // A fetched remote agent's capabilities name tools on its own server.
            let count = agent.capabilities.as_ref().map_or(0, |caps| caps.len());
            resolution.capability_targets.push(vec![None; count]);
            continue;
        }
        checker.check_name(&agent.name, "agent");
        let targets = checker.resolve_capabilities(agent, &mut resolution);
        checker.check_agent_fields(agent);
        resolution.capability_targets.push(targets);
    }
    checker.check_cycles(&resolution);
    checker.check_cel(&resolution);
    (resolution, checker.diagnostics)
}

impl<'a> Checker<'a> {
    fn report(&mut self, diagnostic: Diagnostic) {
        if self.reporting {
            self.diagnostics.push(diagnostic);
        }
    }

    fn is_remote(&self, span: Span) -> bool {
        self.names
            .get(span.file.0 as usize)
            .is_some_and(|name| is_remote_source_name(name))
    }

    fn check_name(&mut self, name: &Spanned<String>, what: &str) {
        if let Some(problem) = name_problem(name) {
            let mut diagnostic = Diagnostic::new(
                FrontEndCode::InvalidName,
                name.span,
                format!("invalid {what} name `{}`", name.value),
            )
            .with_primary_label(problem)
            .with_help(format!("write `{}`", suggested_name(name)));
            if name.contains('-') {
                diagnostic = diagnostic.with_note(
                    "inside a CEL expression `a-b` parses as `a` minus `b`, which is why OAS-N1 allows `_` but not `-`",
                );
            }
            self.report(diagnostic);
        }
    }

    fn check_unique_names(&mut self) {
        let mut seen: HashMap<(&str, &str), Span> = HashMap::new();
        let names: Vec<(&str, Spanned<String>)> = self
            .agents
            .iter()
            .map(|agent| ("agent", agent.name.clone()))
            .chain(self.tools.iter().map(|tool| ("tool", tool.name.clone())))
            .filter(|(_, name)| !self.is_remote(name.span))
            .collect();
        for (what, name) in &names {
            match seen.get(&(*what, name.value.as_str())) {
                Some(first) => {
                    let diagnostic = Diagnostic::new(
                        FrontEndCode::DuplicateName,
                        name.span,
                        format!("two {what}s are named `{}`", name.value),
                    )
                    .with_primary_label("second definition")
                    .with_secondary(*first, "first defined here")
                    .with_help(format!(
                        "rename one of them: {what} names are unique in a set (OAS-A2)"
                    ));
                    self.report(diagnostic);
                }
                None => {
                    seen.insert((what, name.value.as_str()), name.span);
                }
            }
        }
    }

    fn tool_index(&self, name: &str) -> Option<usize> {
        self.tools
            .iter()
            .position(|tool| tool.name.value == name && !self.is_remote(tool.span))
    }

    fn agent_index(&self, name: &str) -> Option<usize> {
        self.agents
            .iter()
            .position(|agent| agent.name.value == name && !self.is_remote(agent.span))
    }

    fn resolve_capabilities(
        &mut self,
        agent: &AgentDocument,
        resolution: &mut Resolution,
    ) -> Vec<Option<(Reference, CapabilityTarget)>> {
        let Some(capabilities) = &agent.capabilities else {
            return Vec::new();
        };
        let mut targets = Vec::with_capacity(capabilities.len());
        for (key, _) in capabilities.iter() {
            targets.push(self.resolve_reference(agent, key, resolution));
        }
        targets
    }

    fn resolve_reference(
        &mut self,
        agent: &AgentDocument,
        key: &Spanned<String>,
        resolution: &mut Resolution,
    ) -> Option<(Reference, CapabilityTarget)> {
        let reference = match parse_reference(key) {
            Ok(reference) => reference,
            Err(problem) => {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::InvalidAgentReference,
                        key.span,
                        format!("`{}` is not a valid capability reference", key.value),
                    )
                    .with_primary_label(problem)
                    .with_note("a capability is `tool_name`, `agent_name`, `oagent://agent_name` or `oagent://host/path/agent_name` (OAS-N3)"),
                );
                return None;
            }
        };
        if let Some(problem) = name_problem(reference.name()) {
            let mut diagnostic = Diagnostic::new(
                FrontEndCode::InvalidName,
                key.span,
                format!("capability `{}` names an invalid tool or agent", key.value),
            )
            .with_primary_label(problem)
            .with_help(format!(
                "write `{}`",
                key.value
                    .replace(reference.name(), &suggested_name(reference.name()))
            ));
            if reference.name().contains('-') {
                diagnostic = diagnostic.with_note(
                    "inside a CEL expression `a-b` parses as `a` minus `b`: `recent.hr-kb` would subtract `kb` from `recent.hr`",
                );
            }
            self.report(diagnostic);
            return None;
        }
        let name = reference.name().to_string();
        if name == agent.name.value
            && !matches!(reference, Reference::RemoteAgent { .. })
            && self.tool_index(&name).is_none()
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::SelfReference,
                    key.span,
                    format!("agent `{name}` lists itself as a capability"),
                )
                .with_primary_label("the agent would call itself")
                .with_secondary(agent.name.span, "the agent is named here"),
            );
            return None;
        }
        let target = match &reference {
            Reference::Bare(_) => match (self.tool_index(&name), self.agent_index(&name)) {
                (Some(tool), agent_with_same_name) => {
                    if let Some(other) =
                        agent_with_same_name.and_then(|other| self.agents.get(other))
                    {
                        let agent_span = other.name.span;
                        self.report(
                            Diagnostic::new(
                                FrontEndCode::AmbiguousBareReference,
                                key.span,
                                format!("`{name}` names both a tool and an agent; this means the tool (OAS-N4)"),
                            )
                            .with_primary_label("resolves to the tool")
                            .with_secondary(agent_span, "an agent of the same name")
                            .with_help(format!("write `oagent://{name}` to mean the agent, or rename one of them")),
                        );
                    }
                    CapabilityTarget::Tool(tool)
                }
                (None, Some(agent_index)) => CapabilityTarget::Agent(agent_index),
                (None, None) => {
                    self.report_unresolved(key, &name, true);
                    return None;
                }
            },
            Reference::LocalAgent(_) => match self.agent_index(&name) {
                Some(agent_index) => CapabilityTarget::Agent(agent_index),
                None => {
                    self.report_unresolved(key, &name, false);
                    return None;
                }
            },
            Reference::RemoteAgent { .. } => {
                let url = reference.remote_url().unwrap_or_default();
                let fetched =
                    self.agents.iter().position(|candidate| {
                        self.is_remote(candidate.span)
                            && candidate.name.value == name
                            && self.names.get(candidate.span.file.0 as usize).is_some_and(
                                |source| source == &url || source == &loopback_http_url(&url),
                            )
                    });
                match fetched {
                    Some(index) => {
                        resolution.remote_documents.insert(url.clone(), index);
                    }
                    None => self.report(
                        Diagnostic::new(
                            FrontEndCode::RemoteReferenceNotVerified,
                            key.span,
                            format!(
                                "remote agent `{}` was not fetched, so its document was not checked",
                                key.value
                            ),
                        )
                        .with_primary_label(format!("would be fetched from {url}"))
                        .with_help("run `agentc check --fetch-remote` to fetch the remote agent's document and type the assertions that use it"),
                    ),
                }
                CapabilityTarget::Remote { url }
            }
        };
        Some((reference, target))
    }

    fn report_unresolved(&mut self, key: &Spanned<String>, name: &str, tools_too: bool) {
        let mut candidates: Vec<String> = self
            .agents
            .iter()
            .map(|agent| agent.name.value.clone())
            .collect();
        if tools_too {
            candidates.extend(self.tools.iter().map(|tool| tool.name.value.clone()));
        }
        let what = if tools_too { "tool or agent" } else { "agent" };
        let mut diagnostic = Diagnostic::new(
            FrontEndCode::UnresolvedCapability,
            key.span,
            format!("no {what} named `{name}` in the checked set"),
        );
        match did_you_mean(name, candidates.iter().map(String::as_str)) {
            Some(suggestion) => {
                let suggestion = suggestion.to_string();
                let span = self
                    .tools
                    .iter()
                    .map(|t| &t.name)
                    .chain(self.agents.iter().map(|a| &a.name))
                    .find(|n| n.value == suggestion)
                    .map(|n| n.span);
                diagnostic = diagnostic.with_primary_label(format!("did you mean `{suggestion}`?"));
                if let Some(span) = span {
                    diagnostic =
                        diagnostic.with_secondary(span, format!("`{suggestion}` is defined here"));
                }
            }
            None => {
                diagnostic = diagnostic
                    .with_primary_label(format!("unknown {what}"))
                    .with_help(format!(
                        "add the {what}'s document to the files you check, or fix the name"
                    ));
            }
        }
        self.report(diagnostic);
    }

    fn check_agent_fields(&mut self, agent: &AgentDocument) {
        if let Some(capabilities) = &agent.capabilities {
            for (key, capability) in capabilities.iter() {
                self.check_identity(key, capability);
                for restriction in [
                    &capability.input_restriction,
                    &capability.output_restriction,
                ]
                .into_iter()
                .flatten()
                {
                    self.check_reviewer(restriction);
                    if let Some(shadow) = &restriction.shadow {
                        self.check_shadow(restriction, shadow);
                    }
                }
            }
        }
        if let Some(guardrails) = &agent.guardrails {
            for guardrail in [&guardrails.input, &guardrails.output]
                .into_iter()
                .flatten()
            {
                let name = &guardrail.tool_name;
                if self.tool_index(name).is_none() {
                    let mut diagnostic = Diagnostic::new(
                        FrontEndCode::UnresolvedGuardrailTool,
                        name.span,
                        format!(
                            "guardrail tool `{}` is not a tool in the checked set",
                            name.value
                        ),
                    );
                    diagnostic = if self.agent_index(name).is_some() {
                        diagnostic.with_primary_label(
                            "this is an agent; a guardrail runs a tool (OAS-G1)",
                        )
                    } else {
                        match did_you_mean(
                            name,
                            self.tools.iter().map(|tool| tool.name.value.as_str()),
                        ) {
                            Some(suggestion) => diagnostic
                                .with_primary_label(format!("did you mean `{suggestion}`?")),
                            None => diagnostic
                                .with_primary_label("unknown tool")
                                .with_help("add the tool's document to the files you check"),
                        }
                    };
                    self.report(diagnostic);
                }
            }
        }
        if let Some(lifespan) = &agent.lifespan
            && let Some(short_circuit) = &lifespan.short_circuit
            && short_circuit.value == 0
        {
            self.report(
                Diagnostic::new(FrontEndCode::OutOfRange, short_circuit.span, "`short_circuit` must be at least 1")
                    .with_primary_label("0 would refuse every call")
                    .with_help("remove `short_circuit` for no limit, or give the number of back-to-back repetitions to stop at (OAS-L2)"),
            );
        }
        if let Some(lifespan) = &agent.lifespan {
            for (key, limit) in [
                ("max_calls_per_turn", &lifespan.max_calls_per_turn),
                ("max_calls", &lifespan.max_calls),
            ] {
                if let Some(limit) = limit
                    && limit.value == 0
                {
                    self.report(
                        Diagnostic::new(FrontEndCode::OutOfRange, limit.span, format!("`{key}` must be at least 1"))
                            .with_primary_label("0 would end every engagement at its first call")
                            .with_help("remove it for the default limit, or give the most tool calls to allow (agentc extension AGX-L1/L2)"),
                    );
                }
            }
        }
    }

    fn check_identity(&mut self, key: &Spanned<String>, capability: &Capability) {
        if let Some(user_identity) = &capability.user_identity
            && !user_identity.value
            && capability.static_identity.is_none()
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::MissingStaticIdentity,
                    user_identity.span,
                    format!("capability `{}` is called without the user's identity, but names no static identity", key.value),
                )
                .with_primary_label("`user_identity: false` needs a `static_identity`")
                .with_secondary(key.span, "in this capability")
                .with_help("add `static_identity: <credential set name>` (OAS-C4), or remove `user_identity: false`"),
            );
        }
    }

    /// AGX-S1: a shadow's reviewer is checked as an enforced one's; a restriction that
    /// only observes (a `shadow` and neither an assertion nor a reviewer) is enforcement
    /// turned off at that stage, which is never silent (W0604).
    fn check_shadow(&mut self, restriction: &Restriction, shadow: &ShadowRestriction) {
        self.check_reviewer_parts(shadow.require_review.as_ref(), shadow.review_when.as_ref());
        if restriction.assertion.is_none() && restriction.require_review.is_none() {
            // The shadow's own span runs on to the next key or document; its first
            // part is a tighter place to point at.
            let span = shadow
                .assertion
                .as_ref()
                .map(|cel| cel.span)
                .or(shadow.require_review.as_ref().map(|reviewer| reviewer.span))
                .or(shadow.review_when.as_ref().map(|cel| cel.span))
                .unwrap_or(shadow.span);
            self.report(
                Diagnostic::new(
                    FrontEndCode::EnforcementOff,
                    span,
                    "this restriction only observes: nothing at this stage is enforced",
                )
                .with_primary_label(
                    "only observed: no assertion and no reviewer beside this shadow",
                )
                .with_help(
                    "keep the enforced `assertion` (or `require_review`) beside the `shadow` \
                     until the candidate is ready to replace it (AGX-S1)",
                ),
            );
        }
    }

    fn check_reviewer(&mut self, restriction: &Restriction) {
        self.check_reviewer_parts(
            restriction.require_review.as_ref(),
            restriction.review_when.as_ref(),
        );
    }

    fn check_reviewer_parts(
        &mut self,
        require_review: Option<&Spanned<String>>,
        review_when: Option<&CelText>,
    ) {
        let Some(reviewer) = require_review else {
            if let Some(condition) = review_when {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::ReviewConditionWithoutReviewer,
                        condition.span,
                        "`review_when` says when to ask a reviewer, but the restriction names none",
                    )
                    .with_primary_label("no `require_review` beside this condition")
                    .with_help("add `require_review: <reviewer>` to the restriction, or remove `review_when` (AGX-V1)"),
                );
            }
            return;
        };
        let text = reviewer.value.as_str();
        let problem = if text == "user" || text == "owner" {
            None
        } else if text.starts_with("oagent://") {
            match parse_reference(text) {
                Ok(Reference::LocalAgent(name)) if self.agent_index(&name).is_none() => {
                    Some(format!("no agent named `{name}` in the checked set"))
                }
                Ok(_) => None,
                Err(problem) => Some(problem),
            }
        } else if text.trim().is_empty() {
            Some("the reviewer is empty".to_string())
        } else if text.chars().any(char::is_whitespace) {
            Some("a user identifier cannot contain spaces".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.report(
                Diagnostic::new(FrontEndCode::InvalidReviewer, reviewer.span, format!("`{text}` is not a valid reviewer"))
                    .with_primary_label(problem)
                    .with_note("`require_review` is `user`, `owner`, a user identifier, or `oagent://agent_name` (OAS-C7)"),
            );
        }
    }

    /// Reports agent-reference cycles (`a` uses `b` uses `a`): an engagement would recurse forever.
    fn check_cycles(&mut self, resolution: &Resolution) {
        let edges: Vec<Vec<(usize, Span)>> = self
            .agents
            .iter()
            .enumerate()
            .map(|(index, agent)| {
                let keys: Vec<Span> = agent
                    .capabilities
                    .as_ref()
                    .map(|caps| caps.iter().map(|(key, _)| key.span).collect())
                    .unwrap_or_default();
                resolution
                    .capability_targets
                    .get(index)
                    .map(|targets| {
                        targets
                            .iter()
                            .zip(keys)
                            .filter_map(|(target, span)| match target {
                                Some((_, CapabilityTarget::Agent(callee))) => Some((*callee, span)),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        // Iterative depth-first search with colours; each cycle is reported once, at the
        // edge that closes it.
        // Unvisited agents are absent; 1: on the current path; 2: done.
        let mut colour: BTreeMap<usize, u8> = BTreeMap::new();
        for start in 0..self.agents.len() {
            if colour.contains_key(&start) {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            let mut path: Vec<usize> = vec![start];
            colour.insert(start, 1);
            while let Some((node, next_edge)) = stack.pop() {
                let edge = edges.get(node).and_then(|edges| edges.get(next_edge));
                if let Some(&(callee, span)) = edge {
                    stack.push((node, next_edge + 1));
                    match colour.get(&callee) {
                        None => {
                            colour.insert(callee, 1);
                            path.push(callee);
                            stack.push((callee, 0));
                        }
                        Some(1) => {
                            let cycle_start =
                                path.iter().position(|&agent| agent == callee).unwrap_or(0);
                            let names: Vec<&str> = path
                                .get(cycle_start..)
                                .unwrap_or_default()
                                .iter()
                                .chain(std::iter::once(&callee))
                                .filter_map(|&agent| self.agents.get(agent))
                                .map(|agent| agent.name.value.as_str())
                                .collect();
                            let Some(cycle_agent) = self.agents.get(callee) else {
                                continue;
                            };
                            let diagnostic = Diagnostic::new(
                                FrontEndCode::AgentReferenceCycle,
                                span,
                                format!("agents call each other in a cycle: {}", names.join(" → ")),
                            )
                            .with_primary_label("this capability closes the cycle")
                            .with_secondary(cycle_agent.name.span, "the cycle starts at this agent")
                            .with_help("remove one of the capabilities in the cycle; an engagement could otherwise recurse without end");
                            self.report(diagnostic);
                        }
                        _ => {}
                    }
                } else {
                    colour.insert(node, 2);
                    path.pop();
                }
            }
        }
    }

    fn check_tool(&mut self, tool: &ToolDocument) {
        self.check_name(&tool.name, "tool");
        for (schema, what) in [(&tool.input, "input"), (&tool.output, "output")] {
            self.check_json_schema(schema, what);
        }
        self.check_trust_labels(&tool.output);
        if let Some(conformance) = &tool.conformance {
            self.check_conformance(conformance, tool.binding.mcp.is_some());
            self.check_examples(tool, conformance);
        }
        self.check_ignored_keys(tool);
        let input_type = tool.input.value.get("type");
        if input_type != Some(&serde_json::Value::String("object".to_string())) {
            self.report(
                Diagnostic::new(
                    FrontEndCode::ToolInputNotObject,
                    tool.input.span,
                    "a tool's input schema must describe an object",
                )
                .with_primary_label("expected `type: object`")
                .with_help(
                    "tool inputs are named arguments: write `type: object` with `properties`",
                ),
            );
        }
        let binding = &tool.binding;
        // Count the keys written, not the ones that lowered: an invalid `http` value has
        // its own diagnostic and must not also read as "no binding".
        let kinds = binding.present_keys.len();
        if kinds != 1 {
            self.report(
                Diagnostic::new(
                    FrontEndCode::BindingCount,
                    binding.span,
                    if kinds == 0 {
                        "the binding names no way to call the tool".to_string()
                    } else {
                        format!("the binding names {kinds} ways to call the tool")
                    },
                )
                .with_primary_label("exactly one of `http`, `mcp`, `native` is required"),
            );
        }
        if let Some(http) = &binding.http {
            self.check_url(&http.url);
            self.check_credential_transport(tool, &http.url);
            self.check_path_template(tool, &http.url);
        }
        if let Some(mcp) = &binding.mcp {
            self.check_mcp_binding(tool, mcp);
        }
    }

    /// AGX-H1: each `{name}` of a binding URL's path is filled from the input, so it must
    /// name a property the input always has (required) and that fits in a path (a string,
    /// number or boolean).
    fn check_path_template(&mut self, tool: &ToolDocument, url: &Spanned<String>) {
        let names = match crate::path_template::parameters(&url.value) {
            Ok(names) => names,
            Err(error) => {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::InvalidPathTemplate,
                        url.span,
                        format!("`{}` is not a path template: {error}", url.value),
                    )
                    .with_primary_label("write path parameters as `{name}` segments of the path")
                    .with_help("`https://api.example.com/skills/{name}` fills `{name}` from the input's `name`"),
                );
                return;
            }
        };
        let input = &tool.input.value;
        let required: Vec<&str> = input
            .get("required")
            .and_then(serde_json::Value::as_array)
            .map(|names| names.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        for name in names {
            let property = input
                .get("properties")
                .and_then(|properties| properties.get(&name));
            let fits = property
                .and_then(|property| property.get("type"))
                .and_then(serde_json::Value::as_str)
                .is_some_and(|kind| matches!(kind, "string" | "integer" | "number" | "boolean"));
            let problem = if property.is_none() {
                Some("the input has no such property")
            } else if !required.contains(&name.as_str()) {
                Some("the property is not `required`, so a call could leave the path incomplete")
            } else if !fits {
                Some("the property's `type` is not a string, integer, number or boolean")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::InvalidPathTemplate,
                        url.span,
                        format!("path parameter `{{{name}}}` cannot be filled from the input: {problem}"),
                    )
                    .with_primary_label(format!("`{{{name}}}` is in this URL's path"))
                    .with_help(format!(
                        "declare `{name}` in the input's `properties` with `type: string` (or a number), and list it in `required`"
                    )),
                );
            }
        }
    }

    /// AGX-M1/M2: one transport, a URL that is one, and a pin of the one form
    /// `agentc import mcp` writes; an unpinned tool is allowed but warned about.
    fn check_mcp_binding(&mut self, tool: &ToolDocument, mcp: &crate::documents::tool::McpBinding) {
        match (&mcp.server, &mcp.command) {
            (Some(server), None) => {
                self.check_url(server);
                self.check_credential_transport(tool, server);
            }
            (None, Some(_)) => {}
            (server, command) => {
                let both = server.is_some();
                self.report(
                    Diagnostic::new(
                        FrontEndCode::McpTransportCount,
                        command.as_ref().map_or(mcp.span, |command| command.span),
                        if both {
                            "the MCP binding names both `server` and `command`".to_string()
                        } else {
                            "the MCP binding names neither `server` nor `command`".to_string()
                        },
                    )
                    .with_primary_label("exactly one of `server` and `command` is required")
                    .with_help(
                        "`server: https://host/mcp` reaches a streamable-HTTP server; `command: NAME` with `args` starts a stdio server",
                    ),
                );
            }
        }
        if mcp.command.is_none() && (mcp.args.is_some() || mcp.env.is_some()) {
            let span = mcp
                .env
                .as_ref()
                .map(|env| env.span)
                .or_else(|| {
                    mcp.args
                        .as_ref()
                        .and_then(|args| args.first().map(|arg| arg.span))
                })
                .unwrap_or(mcp.span);
            self.report(
                Diagnostic::new(
                    FrontEndCode::McpTransportCount,
                    span,
                    "`args` and `env` are for a stdio server, and the binding has no `command`",
                )
                .with_primary_label("no `command` to pass these to"),
            );
        }
        match &mcp.pin {
            Some(pin) if !is_mcp_pin(&pin.value) => self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidMcpPin,
                    pin.span,
                    format!("`{}` is not a pin", pin.value),
                )
                .with_primary_label("expected `sha256:` and 64 lowercase hex digits")
                .with_help("`agentc import mcp` writes the pin of each tool it imports"),
            ),
            Some(_) => {}
            None => self.report(
                Diagnostic::new(
                    FrontEndCode::McpToolNotPinned,
                    mcp.tool.span,
                    format!(
                        "MCP tool `{}` is not pinned: a change to its description or schemas on the server would go unnoticed",
                        mcp.tool.value
                    ),
                )
                .with_primary_label("no `pin` for this tool")
                .with_help(
                    "write the tool document with `agentc import mcp`, which pins each tool, or add the `pin` it prints",
                ),
            ),
        }
    }

    /// AGX-P1: a trust label other than exactly `trusted` or `untrusted` is read as
    /// untrusted (fail closed), which is safe but surely not what its author meant.
    fn check_trust_labels(&mut self, output: &crate::lower::SpannedJson) {
        const LABELS: [&str; 2] = ["trusted", "untrusted"];
        let mut stack = vec![(String::new(), &output.value)];
        while let Some((pointer, node)) = stack.pop() {
            match node {
                serde_json::Value::Object(map) => {
                    for (key, child) in map {
                        let child_pointer =
                            format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                        if key == "x-agentc-trust" {
                            let written = child.as_str();
                            if written.is_some_and(|label| LABELS.contains(&label)) {
                                continue;
                            }
                            let shown = written.map_or_else(|| child.to_string(), str::to_string);
                            let mut diagnostic = Diagnostic::new(
                                FrontEndCode::UnknownTrustLabel,
                                output.span_at(&child_pointer),
                                format!("`{shown}` is not a trust label; this part of the output is read as untrusted"),
                            )
                            .with_primary_label("expected `trusted` or `untrusted`");
                            if let Some(best) = written.and_then(|label| {
                                did_you_mean(label.trim(), LABELS.iter().copied())
                            }) {
                                diagnostic =
                                    diagnostic.with_help(format!("did you mean `{best}`?"));
                            }
                            self.report(diagnostic);
                        } else {
                            stack.push((child_pointer, child));
                        }
                    }
                }
                serde_json::Value::Array(items) => {
                    for (index, child) in items.iter().enumerate() {
                        stack.push((format!("{pointer}/{index}"), child));
                    }
                }
                _ => {}
            }
        }
    }

    fn check_json_schema(&mut self, schema: &crate::lower::SpannedJson, what: &str) {
        if let Err(error) = jsonschema::meta::validate(&schema.value) {
            let pointer = error.instance_path().as_str().to_string();
            let mut diagnostic = Diagnostic::new(
                FrontEndCode::InvalidJsonSchema,
                schema.span_at(&pointer),
                format!("the tool's `{what}` is not a valid JSON Schema"),
            )
            .with_primary_label(truncate(&error.to_string(), 160));
            if !pointer.is_empty() {
                diagnostic = diagnostic
                    .with_secondary(schema.span, format!("in this schema, at `{pointer}`"));
            }
            self.report(diagnostic);
        }
    }

    /// The conformance section (what `agentc conform` runs): its schemas must be JSON
    /// Schemas, its paths must be paths, and its numbers must be usable.
    fn check_conformance(
        &mut self,
        conformance: &crate::documents::tool::ConformanceSpec,
        mcp_bound: bool,
    ) {
        if let Some(docs) = &conformance.docs {
            for location in [&docs.openapi, &docs.llms_txt].into_iter().flatten() {
                if !location.value.starts_with('/') {
                    self.check_url(location);
                }
            }
        }
        if let Some(limit) = &conformance.rate_limit {
            for number in [&limit.requests, &limit.per_seconds] {
                self.check_at_least_one(number);
            }
        }
        if let Some(bytes) = &conformance.max_request_bytes {
            self.check_at_least_one(bytes);
        }
        if let Some(crud) = &conformance.crud {
            self.check_json_schema(&crud.schema, "conformance.crud.schema");
            self.check_path(&crud.path);
        }
        for pitfall in conformance.pitfalls.iter().flatten() {
            self.check_pitfall(pitfall, mcp_bound);
        }
    }

    /// A conformance example is a *valid* call: the skill test sends it and expects an
    /// answer, and a mock answers with its `output`. One that breaks the tool's own
    /// schemas would fail every run for the document's fault, not the service's.
    fn check_examples(
        &mut self,
        tool: &ToolDocument,
        conformance: &crate::documents::tool::ConformanceSpec,
    ) {
        let (Ok(input), Ok(output)) = (
            jsonschema::validator_for(&tool.input.value),
            jsonschema::validator_for(&tool.output.value),
        ) else {
            // An invalid schema has its own diagnostic (E0301).
            return;
        };
        for example in conformance.examples.iter().flatten() {
            let name = example.name.as_ref().map_or_else(
                || "an example".to_string(),
                |name| format!("example `{}`", name.value),
            );
            let mut parts = vec![(&example.input, &input, "input")];
            if let Some(answer) = &example.output {
                parts.push((answer, &output, "output"));
            }
            for (value, validator, what) in parts {
                if let Some(error) = validator.iter_errors(&value.value).next() {
                    let pointer = error.instance_path().as_str().to_string();
                    self.report(
                        Diagnostic::new(
                            FrontEndCode::ExampleBreaksSchema,
                            value.span_at(&pointer),
                            format!("{name}'s {what} breaks the tool's {what} schema"),
                        )
                        .with_primary_label(truncate(&error.to_string(), 160))
                        .with_help(format!(
                            "an example is a valid call, sent as is by `agentc conform`; fix the example or the tool's `{what}` schema"
                        )),
                    );
                }
            }
        }
    }

    /// W0607: keys that nothing reads in this document, because of another choice
    /// made in it; each would silently do nothing.
    fn check_ignored_keys(&mut self, tool: &ToolDocument) {
        let scheme = tool.auth.as_ref().map(|auth| auth.scheme);
        if let Some(auth) = &tool.auth
            && let Some(header) = &auth.header
            && auth.scheme != AuthScheme::ApiKey
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::IgnoredKey,
                    header.span,
                    format!(
                        "`header` is read only for `scheme: api_key`; this `{}` credential is sent in `Authorization`",
                        auth.scheme.as_str()
                    ),
                )
                .with_primary_label("ignored")
                .with_help("for a key in its own header, write `scheme: api_key` with this `header`"),
            );
        }
        let Some(conformance) = &tool.conformance else {
            return;
        };
        if let Some(variable) = &conformance.credential_env
            && matches!(scheme, None | Some(AuthScheme::None))
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::IgnoredKey,
                    variable.span,
                    "`credential_env` is read only for a tool with an auth scheme, and this tool declares none",
                )
                .with_primary_label("ignored")
                .with_help("declare the tool's `auth` scheme, or remove `credential_env`"),
            );
        }
        if tool.binding.mcp.is_some() {
            let http_only = [
                conformance.docs.as_ref().map(|docs| (docs.span, "docs")),
                conformance
                    .crud
                    .as_ref()
                    .map(|crud| (crud.name.span, "crud")),
                conformance
                    .max_request_bytes
                    .as_ref()
                    .map(|bytes| (bytes.span, "max_request_bytes")),
            ];
            for (span, key) in http_only.into_iter().flatten() {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::IgnoredKey,
                        span,
                        format!("`conformance.{key}` is read only for an `http` tool, and this tool is bound to an MCP server"),
                    )
                    .with_primary_label("ignored")
                    .with_help("the MCP reading of the conformance tests (AGX-M5) finds the tool with `tools/list`, and has no CRUD or body-size test"),
                );
            }
        }
    }

    /// AGX-M5: a pitfall replays what the tool's binding speaks. An HTTP request and
    /// its status for an `http` tool; a `tools/call` and whether it errs for an `mcp`
    /// tool. A pitfall of the other kind could never be replayed, so it is an error
    /// rather than a test that silently never runs.
    fn check_pitfall(&mut self, pitfall: &crate::documents::tool::Pitfall, mcp_bound: bool) {
        if let Some(request) = &pitfall.request {
            self.check_path(&request.path);
        }
        if let Some(call) = &pitfall.call
            && !call.arguments.value.is_object()
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::PitfallDoesNotFitBinding,
                    call.arguments.span,
                    "a `tools/call`'s arguments are an object",
                )
                .with_primary_label("expected an object of named arguments"),
            );
        }
        let expect = &pitfall.expect;
        if let Some(schema) = &expect.body_schema {
            self.check_json_schema(schema, "pitfall's body_schema");
        }
        if let Some(status) = &expect.status
            && !(100..=599).contains(&status.value)
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::OutOfRange,
                    status.span,
                    format!("`{}` is not an HTTP status", status.value),
                )
                .with_primary_label("expected a status from 100 to 599"),
            );
        }
        let name = &pitfall.name.value;
        let misfit = |span: crate::span::Span, message: String, label: &str, help: &str| {
            Diagnostic::new(FrontEndCode::PitfallDoesNotFitBinding, span, message)
                .with_primary_label(label.to_string())
                .with_help(help.to_string())
        };
        const MCP_HELP: &str = "an MCP tool's pitfall is a recorded `tools/call`: `call: {arguments: {...}}` with `expect: {is_error: true}` (or `false`)";
        const HTTP_HELP: &str = "an HTTP tool's pitfall is a recorded request: `request: {method: POST, path: /...}` with `expect: {status: 400}`";
        if mcp_bound {
            if let Some(request) = &pitfall.request {
                self.report(misfit(
                    request.path.span,
                    format!("pitfall `{name}` records an HTTP request, and its tool is bound to an MCP server"),
                    "an HTTP request cannot be replayed on an MCP tool",
                    MCP_HELP,
                ));
            } else if pitfall.call.is_none() {
                self.report(misfit(
                    pitfall.name.span,
                    format!("pitfall `{name}` records no `tools/call`"),
                    "expected `call: {arguments: {...}}`",
                    MCP_HELP,
                ));
            }
            if let Some(status) = &expect.status {
                self.report(misfit(
                    status.span,
                    format!("pitfall `{name}` expects an HTTP status of an MCP tool's call"),
                    "a `tools/call` has no status",
                    MCP_HELP,
                ));
            } else if expect.is_error.is_none() && pitfall.request.is_none() {
                self.report(misfit(
                    pitfall.name.span,
                    format!("pitfall `{name}` does not say whether its call's result is an error"),
                    "expected `expect: {is_error: true}` or `false`",
                    MCP_HELP,
                ));
            }
        } else {
            if let Some(call) = &pitfall.call {
                self.report(misfit(
                    call.arguments.span,
                    format!("pitfall `{name}` records a `tools/call`, and its tool is not bound to an MCP server"),
                    "a `tools/call` can only be replayed on an MCP tool",
                    HTTP_HELP,
                ));
            } else if pitfall.request.is_none() {
                self.report(misfit(
                    pitfall.name.span,
                    format!("pitfall `{name}` records no request"),
                    "expected `request: {method: ..., path: ...}`",
                    HTTP_HELP,
                ));
            }
            if let Some(is_error) = &expect.is_error {
                self.report(misfit(
                    is_error.span,
                    format!(
                        "pitfall `{name}` expects `is_error`, which only an MCP tool's call has"
                    ),
                    "an HTTP answer is judged by its status",
                    HTTP_HELP,
                ));
            } else if expect.status.is_none() && pitfall.call.is_none() {
                self.report(misfit(
                    pitfall.name.span,
                    format!("pitfall `{name}` does not say which status is correct"),
                    "expected `expect: {status: ...}`",
                    HTTP_HELP,
                ));
            }
        }
    }

    fn check_at_least_one(&mut self, number: &Spanned<u64>) {
        if number.value == 0 {
            self.report(
                Diagnostic::new(
                    FrontEndCode::OutOfRange,
                    number.span,
                    "this must be at least 1",
                )
                .with_primary_label("expected 1 or more"),
            );
        }
    }

    /// A request path of the conformance section: relative to the binding's origin.
    fn check_path(&mut self, path: &Spanned<String>) {
        if !path.value.starts_with('/') || path.value.chars().any(char::is_whitespace) {
            self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidUrl,
                    path.span,
                    format!("`{}` is not a path starting with `/`", path.value),
                )
                .with_primary_label("expected a path such as `/calendar/events`")
                .with_help("paths are relative to the origin of the tool's binding URL"),
            );
        }
    }

    /// A tool that authenticates its callers sends a credential on every call: never in
    /// clear text, so plain `http://` only on loopback (the one policy of
    /// [`crate::urls`], which the runtime enforces too).
    fn check_credential_transport(&mut self, tool: &ToolDocument, url: &Spanned<String>) {
        let credentialed = tool
            .auth
            .as_ref()
            .is_some_and(|auth| !matches!(auth.scheme, AuthScheme::None));
        let in_clear = crate::urls::Url::parse(&url.value)
            .is_ok_and(|parsed| parsed.scheme() == "http" && !crate::urls::is_loopback(&parsed));
        if credentialed && in_clear {
            self.report(
                Diagnostic::new(
                    FrontEndCode::CredentialInClearText,
                    url.span,
                    format!(
                        "`{}` would carry the tool's credential in clear text",
                        url.value
                    ),
                )
                .with_primary_label("a plain `http://` URL off this machine")
                .with_help(
                    "use `https://`; plain `http://` is allowed for a tool with a credential only on loopback (`localhost`, 127.0.0.0/8, `::1`)",
                ),
            );
        }
    }

    fn check_url(&mut self, url: &Spanned<String>) {
        let valid = ["http://", "https://"].iter().any(|scheme| {
            url.value.strip_prefix(scheme).is_some_and(|rest| {
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                !host.is_empty() && !rest.chars().any(char::is_whitespace)
            })
        });
        if !valid {
            self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidUrl,
                    url.span,
                    format!("`{}` is not an absolute http(s) URL", url.value),
                )
                .with_primary_label("expected `https://host/path`"),
            );
        }
    }

    fn check_handoff(&mut self, handoff: &HandoffDocument) {
        let regulated = [
            ("data_classification", handoff.data_classification.is_some()),
            ("regulation_refs", handoff.regulation_refs.is_some()),
            ("audit_trail", handoff.audit_trail.is_some()),
            ("sign_off_gates", handoff.sign_off_gates.is_some()),
        ];
        if regulated.iter().any(|(_, present)| *present) {
            for (key, present) in regulated {
                if !present {
                    self.report(
                        Diagnostic::new(FrontEndCode::MissingKey, handoff.span, format!("a regulated handoff needs `{key}`"))
                            .with_primary_label("this handoff has some regulated fields but not all")
                            .with_help("a regulated handoff has all of `data_classification`, `regulation_refs`, `audit_trail` and `sign_off_gates`"),
                    );
                }
            }
        }
        for text in [&handoff.handoff_version] {
            if !matches!(text.value.as_str(), "1.0" | "1.1") {
                self.report(
                    Diagnostic::new(
                        FrontEndCode::InvalidEnumValue,
                        text.span,
                        format!("unknown handoff version `{}`", text.value),
                    )
                    .with_primary_label("expected \"1.0\" or \"1.1\""),
                );
            }
        }
        if let Some(trail) = &handoff.audit_trail {
            let mut previous: Option<&Spanned<String>> = None;
            for entry in trail {
                self.check_datetime(&entry.timestamp);
                self.check_hash(&entry.hash);
                match (previous, &entry.previous_hash) {
                    (None, Some(link)) => self.report(Diagnostic::new(FrontEndCode::AuditChainBroken, link.span, "the first audit entry cannot link to a previous one").with_primary_label("expected null or no `previous_hash`")),
                    (Some(earlier), None) => self.report(Diagnostic::new(FrontEndCode::AuditChainBroken, entry.span, "this audit entry does not link to the one before it").with_primary_label("`previous_hash` is missing").with_secondary(earlier.span, "the previous entry's hash")),
                    (Some(earlier), Some(link)) if earlier.value != link.value => self.report(
                        Diagnostic::new(FrontEndCode::AuditChainBroken, link.span, "the audit chain is broken: `previous_hash` is not the previous entry's `hash`")
                            .with_primary_label("does not match")
                            .with_secondary(earlier.span, "the previous entry's hash"),
                    ),
                    _ => {}
                }
                previous = Some(&entry.hash);
            }
        }
        if let Some(gates) = &handoff.sign_off_gates {
            for gate in gates {
                let signed = matches!(
                    gate.status,
                    GateStatus::Approved | GateStatus::Rejected | GateStatus::Waived
                );
                if signed && gate.signed_by.is_none() {
                    self.report(
                        Diagnostic::new(
                            FrontEndCode::InconsistentDocument,
                            gate.span,
                            format!(
                                "gate `{}` is {} but names no `signed_by`",
                                gate.gate.value,
                                gate.status.as_str()
                            ),
                        )
                        .with_primary_label("add who signed it off"),
                    );
                }
                if let Some(at) = &gate.signed_at {
                    self.check_datetime(at);
                }
                if handoff.status == HandoffStatus::Completed
                    && matches!(gate.status, GateStatus::Pending | GateStatus::Rejected)
                {
                    self.report(
                        Diagnostic::new(
                            FrontEndCode::InconsistentDocument,
                            gate.span,
                            format!(
                                "the handoff is completed but gate `{}` is {}",
                                gate.gate.value,
                                gate.status.as_str()
                            ),
                        )
                        .with_primary_label(
                            "a completed regulated handoff needs every gate approved or waived",
                        ),
                    );
                }
            }
        }
    }

    fn check_handoff_response(&mut self, response: &HandoffResponse) {
        if response.status == HandoffResponseStatus::Rejected && response.reason.is_none() {
            self.report(
                Diagnostic::new(
                    FrontEndCode::MissingKey,
                    response.span,
                    "a rejected handoff response needs a `reason`",
                )
                .with_primary_label("add `reason:` (e.g. `missing_tools`, `context_overflow`)"),
            );
        }
        if response.status == HandoffResponseStatus::Accepted && response.receiver.is_none() {
            self.report(
                Diagnostic::new(
                    FrontEndCode::MissingKey,
                    response.span,
                    "an accepted handoff response needs a `receiver`",
                )
                .with_primary_label("add `receiver:` with the receiving agent's `agent_id`"),
            );
        }
        if let Some(at) = &response.estimated_completion {
            self.check_datetime(at);
        }
    }

    fn check_manifest(&mut self, manifest: &CapabilityManifest) {
        if !matches!(
            manifest.manifest_version.value.as_str(),
            "1.0.0" | "1.0.0-draft"
        ) {
            self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidEnumValue,
                    manifest.manifest_version.span,
                    format!(
                        "unknown manifest version `{}`",
                        manifest.manifest_version.value
                    ),
                )
                .with_primary_label("expected \"1.0.0\" or \"1.0.0-draft\""),
            );
        }
        if manifest.capabilities.is_empty() {
            self.report(
                Diagnostic::new(
                    FrontEndCode::OutOfRange,
                    manifest.span,
                    "a capability manifest must list at least one capability",
                )
                .with_primary_label("`capabilities` is empty"),
            );
        }
        for capability in &manifest.capabilities {
            self.check_fraction(capability.success_rate.as_ref(), "success_rate", 0.0, 1.0);
        }
        if let Some(status) = &manifest.status {
            self.check_fraction(status.load.as_ref(), "load", 0.0, 1.0);
            self.check_fraction(status.trust_score.as_ref(), "trust_score", 0.0, 1.0);
            if let Some(at) = &status.last_heartbeat {
                self.check_datetime(at);
            }
        }
        if let Some(metrics) = &manifest.metrics {
            self.check_fraction(metrics.peer_rating.as_ref(), "peer_rating", 1.0, 5.0);
        }
    }

    fn check_fraction(&mut self, value: Option<&Spanned<f64>>, what: &str, low: f64, high: f64) {
        if let Some(value) = value
            && !(low..=high).contains(&value.value)
        {
            self.report(
                Diagnostic::new(
                    FrontEndCode::OutOfRange,
                    value.span,
                    format!(
                        "`{what}` must be between {low} and {high}, found {}",
                        value.value
                    ),
                )
                .with_primary_label(format!("outside [{low}, {high}]")),
            );
        }
    }

    fn check_datetime(&mut self, text: &Spanned<String>) {
        if !is_rfc3339(&text.value) {
            self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidDateTime,
                    text.span,
                    format!("`{}` is not an RFC 3339 date-time", text.value),
                )
                .with_primary_label("expected e.g. `2026-05-07T17:00:00Z`"),
            );
        }
    }

    fn check_hash(&mut self, text: &Spanned<String>) {
        let valid = text
            .value
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            self.report(
                Diagnostic::new(
                    FrontEndCode::InvalidEnumValue,
                    text.span,
                    "an audit hash is `sha256:` followed by 64 hex digits",
                )
                .with_primary_label("malformed hash"),
            );
        }
    }

    /// Parses and type-checks every CEL expression against the engagement shape (OAS-E3).
    fn check_cel(&mut self, resolution: &Resolution) {
        // Exposes first, in dependency order, because an agent used as a capability is
        // typed by its exposes (Reading: an agent as a tool).
        let mut exposes_types: Vec<Option<ObjectType>> = vec![None; self.agents.len()];
        let mut state = vec![0u8; self.agents.len()];
        for index in 0..self.agents.len() {
            self.exposes_type(index, resolution, &mut exposes_types, &mut state);
        }
        for (index, agent) in self.agents.clone().into_iter().enumerate() {
            if self.is_remote(agent.span) {
                continue;
            }
            let capability_types = self.capability_types(index, resolution, &exposes_types);
            let definitions = self.agent_definitions(index, &capability_types);
            let Some(capabilities) = &agent.capabilities else {
                continue;
            };
            let targets = resolution.capability_targets.get(index);
            for (position, (_, capability)) in capabilities.iter().enumerate() {
                let Some(Some((reference, _))) = targets.and_then(|targets| targets.get(position))
                else {
                    continue;
                };
                let name = reference.name().to_string();
                for (restriction, site) in [
                    (
                        &capability.input_restriction,
                        AssertionSite::InputRestriction {
                            capability: name.clone(),
                        },
                    ),
                    (
                        &capability.output_restriction,
                        AssertionSite::OutputRestriction {
                            capability: name.clone(),
                        },
                    ),
                ] {
                    let Some(restriction) = restriction.as_ref() else {
                        continue;
                    };
                    let env = engagement_env(&capability_types, &site);
                    let shadow = restriction.shadow.as_ref();
                    for expression in [
                        restriction.assertion.as_ref(),
                        restriction.review_when.as_ref(),
                        shadow.and_then(|shadow| shadow.assertion.as_ref()),
                        shadow.and_then(|shadow| shadow.review_when.as_ref()),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        self.check_expression_with(
                            expression,
                            &env,
                            true,
                            capabilities,
                            Some(&definitions),
                        );
                    }
                }
            }
            if let Some(guardrails) = &agent.guardrails {
                for guardrail in [&guardrails.input, &guardrails.output]
                    .into_iter()
                    .flatten()
                {
                    let mut env = TypeEnv::new();
                    if let Some(tool) = self
                        .tool_index(&guardrail.tool_name)
                        .and_then(|tool| self.tools.get(tool))
                    {
                        if let Type::Object(object) =
                            agentc_cel::type_from_json_schema(&tool.output.value)
                        {
                            for (field, field_type) in object.fields {
                                env.declare(&field, field_type.ty);
                            }
                        }
                    } else {
                        continue;
                    }
                    self.check_expression(&guardrail.assertion, &env, true, capabilities);
                }
            }
        }
    }

    fn capability_types(
        &self,
        index: usize,
        resolution: &Resolution,
        exposes_types: &[Option<ObjectType>],
    ) -> Vec<CapabilityTypes> {
        let (Some(targets), Some(agent)) = (
            resolution.capability_targets.get(index),
            self.agents.get(index),
        ) else {
            return Vec::new();
        };
        targets
            .iter()
            .zip(
                agent
                    .capabilities
                    .iter()
                    .flat_map(|caps| caps.iter().map(|(_, capability)| capability)),
            )
            .filter_map(|(target, capability)| target.as_ref().map(|target| (target, capability)))
            .map(|((reference, target), capability)| {
                let (input, output) = match target {
                    CapabilityTarget::Tool(tool) => match self.tools.get(*tool) {
                        Some(tool) => (
                            agentc_cel::type_from_json_schema(&tool.input.value),
                            agentc_cel::type_from_json_schema(&tool.output.value),
                        ),
                        None => (Type::Dyn, Type::Dyn),
                    },
                    CapabilityTarget::Agent(callee) => (
                        agent_input_type(),
                        agent_output_type(exposes_types.get(*callee).cloned().flatten(), false),
                    ),
                    CapabilityTarget::Remote { url } => {
                        match resolution.remote_documents.get(url) {
                            // A fetched remote agent is typed by its exposes, as a local one.
                            Some(fetched) => (
                                agent_input_type(),
                                agent_output_type(
                                    exposes_types.get(*fetched).cloned().flatten(),
                                    false,
                                ),
                            ),
                            None => (agent_input_type(), agent_output_type(None, true)),
                        }
                    }
                };
                CapabilityTypes {
                    name: reference.name().to_string(),
                    input,
                    output,
                    collects_results: capability
                        .collect_results
                        .as_ref()
                        .is_none_or(|collect| collect.value),
                }
            })
            .collect()
    }

    fn exposes_type(
        &mut self,
        index: usize,
        resolution: &Resolution,
        types: &mut Vec<Option<ObjectType>>,
        state: &mut Vec<u8>,
    ) {
        match state.get_mut(index) {
            Some(visit @ 0) => *visit = 1,
            _ => return,
        }
        // Callees first; a cycle (already reported) leaves the callee untyped (open).
        if let Some(targets) = resolution.capability_targets.get(index) {
            for (_, target) in targets.iter().flatten() {
                let callee = match target {
                    CapabilityTarget::Agent(callee) => Some(*callee),
                    CapabilityTarget::Remote { url } => {
                        resolution.remote_documents.get(url).copied()
                    }
                    CapabilityTarget::Tool(_) => None,
                };
                if let Some(callee) = callee {
                    self.exposes_type(callee, resolution, types, state);
                }
            }
        }
        let Some(&agent) = self.agents.get(index) else {
            return;
        };
        let remote = self.is_remote(agent.span);
        let capability_types = if remote {
            // We cannot see a remote agent's tools: type its exposes over `dyn` ones and
            // keep its diagnostics to itself.
            agent
                .capabilities
                .iter()
                .flat_map(|caps| caps.iter())
                .filter_map(|(key, _)| parse_reference(key).ok())
                .map(|reference| CapabilityTypes {
                    name: reference.name().to_string(),
                    input: Type::Dyn,
                    output: Type::Dyn,
                    collects_results: true,
                })
                .collect()
        } else {
            self.capability_types(index, resolution, types)
        };
        let previously_reporting = self.reporting;
        self.reporting = !remote;
        let definitions = self.agent_definitions(index, &capability_types);
        let mut fields = BTreeMap::new();
        if let Some(exposes) = &agent.exposes {
            let env = engagement_env(&capability_types, &AssertionSite::Exposes);
            for (key, expression) in exposes.iter() {
                let ty = self
                    .check_expression_with(
                        expression,
                        &env,
                        false,
                        agent.capabilities.as_ref().unwrap_or(&Default::default()),
                        Some(&definitions),
                    )
                    .unwrap_or(Type::Dyn);
                fields.insert(key.value.clone(), FieldType::new(ty, true));
            }
        }
        self.reporting = previously_reporting;
        if let Some(slot) = types.get_mut(index) {
            *slot = Some(ObjectType {
                name: format!("{}.exposes", agent.name.value),
                fields,
                open: false,
            });
        }
        if let Some(visit) = state.get_mut(index) {
            *visit = 2;
        }
    }

    /// An agent's definitions (AGX-D1), checked the first time they are asked for: each
    /// key is read, each body parsed and checked once where `exposes` are (parameters
    /// are `dyn`), and each that checks is added for the ones below it to use.
    fn agent_definitions(
        &mut self,
        index: usize,
        capability_types: &[CapabilityTypes],
    ) -> std::rc::Rc<AgentDefinitions> {
        if let Some(Some(done)) = self.definitions.get(index) {
            return std::rc::Rc::clone(done);
        }
        let mut checked = AgentDefinitions::default();
        // The document outlives the checker's borrow of itself: no copy is needed.
        let agent: Option<&'a AgentDocument> = self.agents.get(index).copied();
        let entries = agent.and_then(|agent| agent.definitions.as_ref());
        let no_capabilities = crate::lower::SpannedMap::default();
        let capabilities = agent
            .and_then(|agent| agent.capabilities.as_ref())
            .unwrap_or(&no_capabilities);
        for (key, body) in entries.into_iter().flat_map(|map| map.iter()) {
            let parsed_key = match agentc_cel::parse_definition_key(&key.value) {
                Ok(parsed_key) => parsed_key,
                Err(problem) => {
                    self.report(Diagnostic {
                        code: Code::Cel(agentc_cel::CelErrorKind::InvalidDefinition),
                        severity: Severity::Error,
                        message: format!("`{}` is not a usable definition name", key.value),
                        labels: vec![crate::diagnostics::Label {
                            span: key.span,
                            message: problem,
                            primary: true,
                        }],
                        notes: Vec::new(),
                        help: vec![
                            "a definition is `name: <CEL>` or `name(param, …): <CEL>` (AGX-D1)"
                                .to_string(),
                        ],
                    });
                    checked.broken.push(key.value.clone());
                    continue;
                }
            };
            let mut env = engagement_env(capability_types, &AssertionSite::Exposes);
            for param in &parsed_key.params {
                env.declare(param, Type::Dyn);
            }
            // Checked with the definitions above it, so a use of one of those is typed
            // by its body.
            let added = match self.parse_and_check(body, &env, false, capabilities, Some(&checked))
            {
                None => false,
                Some((_, parsed)) => match checked.usable.add(&parsed_key, &parsed) {
                    Ok(()) => true,
                    Err(errors) => {
                        let source = self
                            .sources
                            .get(body.span.file.0 as usize)
                            .cloned()
                            .unwrap_or_default();
                        for error in errors {
                            self.report(cel_diagnostic(body, &source, error, capabilities));
                        }
                        false
                    }
                },
            };
            if !added {
                checked.broken.push(parsed_key.name.clone());
            }
        }
        let checked = std::rc::Rc::new(checked);
        if self.definitions.len() <= index {
            self.definitions.resize(index + 1, None);
        }
        if let Some(slot) = self.definitions.get_mut(index) {
            *slot = Some(std::rc::Rc::clone(&checked));
        }
        checked
    }

    /// Parses and checks one expression; returns its type when it checks.
    fn check_expression(
        &mut self,
        expression: &CelText,
        env: &TypeEnv,
        must_be_boolean: bool,
        capabilities: &crate::lower::SpannedMap<Capability>,
    ) -> Option<Type> {
        self.check_expression_with(expression, env, must_be_boolean, capabilities, None)
    }

    /// Checks one expression with an agent's definitions inlined (AGX-D1).
    fn check_expression_with(
        &mut self,
        expression: &CelText,
        env: &TypeEnv,
        must_be_boolean: bool,
        capabilities: &crate::lower::SpannedMap<Capability>,
        definitions: Option<&AgentDefinitions>,
    ) -> Option<Type> {
        self.parse_and_check(expression, env, must_be_boolean, capabilities, definitions)
            .map(|(ty, _)| ty)
    }

    /// Parses and checks one expression, reporting its problems; when it checks, its
    /// type and the expression as parsed (before definitions are inlined).
    fn parse_and_check(
        &mut self,
        expression: &CelText,
        env: &TypeEnv,
        must_be_boolean: bool,
        capabilities: &crate::lower::SpannedMap<Capability>,
        definitions: Option<&AgentDefinitions>,
    ) -> Option<(Type, agentc_cel::Expr)> {
        let source = self
            .sources
            .get(expression.span.file.0 as usize)
            .map(String::as_str)
            .unwrap_or_default();
        // `recent.hr-kb` is the most common slip in specs written from older examples; in
        // CEL it parses as a subtraction and type-checks into several confusing errors.
        // Say once, precisely, what happened.
        if let Some((start, end)) = find_hyphenated_engagement_path(&expression.text) {
            let written = &expression.text[start..end];
            let fixed = written.replace('-', "_");
            let mut diagnostic = Diagnostic {
                code: Code::Cel(agentc_cel::CelErrorKind::UnknownField),
                severity: Severity::Error,
                message: format!("`{written}` is a subtraction in CEL, not a name"),
                labels: vec![crate::diagnostics::Label { span: expression.span_of(source, start, end), message: format!("did you mean `{fixed}`?"), primary: true }],
                notes: vec!["in CEL `a-b` is `a` minus `b`; OpenAgentSpec names use `_` for that reason (OAS-N1)".to_string()],
                help: vec![format!("write `{fixed}`")],
            };
            let capability_name = fixed.split('.').nth(1).unwrap_or_default();
            if let Some((key, _)) = capabilities.iter().find(|(key, _)| {
                parse_reference(key).is_ok_and(|reference| reference.name() == capability_name)
            }) {
                diagnostic = diagnostic.with_secondary(
                    key.span,
                    format!("capability `{capability_name}` is declared here"),
                );
            }
            self.report(diagnostic);
            return None;
        }
        let parsed = match agentc_cel::parse(&expression.text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in errors {
                    self.report(cel_diagnostic(expression, source, error, capabilities));
                }
                return None;
            }
        };
        let expanded = match definitions {
            Some(definitions) if definitions.uses_broken(&parsed) => return None,
            Some(definitions) => match definitions.usable.expand(&parsed) {
                Ok(expanded) => std::borrow::Cow::Owned(expanded),
                Err(errors) => {
                    for error in errors {
                        self.report(cel_diagnostic(expression, source, error, capabilities));
                    }
                    return None;
                }
            },
            None => std::borrow::Cow::Borrowed(&parsed),
        };
        let result = if must_be_boolean {
            agentc_cel::check_assertion(&expanded, env).map(|()| Type::Bool)
        } else {
            agentc_cel::check(&expanded, env)
        };
        match result {
            Ok(ty) => Some((ty, parsed)),
            Err(errors) => {
                for error in errors {
                    self.report(cel_diagnostic(expression, source, error, capabilities));
                }
                None
            }
        }
    }
}

pub use crate::urls::loopback_http_url;

fn agent_input_type() -> Type {
    let mut fields = BTreeMap::new();
    fields.insert("text".to_string(), FieldType::new(Type::String, true));
    Type::Object(ObjectType {
        name: "agent.input".to_string(),
        fields,
        open: false,
    })
}

fn agent_output_type(exposes: Option<ObjectType>, open: bool) -> Type {
    let mut object = exposes.unwrap_or_else(|| ObjectType {
        name: "agent.output".to_string(),
        fields: BTreeMap::new(),
        open,
    });
    object
        .fields
        .insert("text".to_string(), FieldType::new(Type::String, true));
    object.open = open;
    Type::Object(object)
}

/// Converts a CEL diagnostic into a located front-end diagnostic: positions inside the
/// expression become positions in the YAML file, and a misspelt capability name gets a
/// secondary label on the capability it probably meant.
fn cel_diagnostic(
    expression: &CelText,
    source: &str,
    error: agentc_cel::CelDiagnostic,
    capabilities: &crate::lower::SpannedMap<Capability>,
) -> Diagnostic {
    let span = expression.span_of(source, error.span.start, error.span.end);
    let mut diagnostic = Diagnostic {
        code: Code::Cel(error.kind),
        severity: Severity::Error,
        message: error.message.clone(),
        labels: vec![crate::diagnostics::Label {
            span,
            // A suggestion reads best under the caret, as rustc shows it.
            message: error
                .help
                .as_deref()
                .and_then(|help| help.strip_prefix("did you mean "))
                .and_then(|rest| rest.split_once('?'))
                .map(|(suggestion, _)| format!("did you mean {suggestion}?"))
                .unwrap_or_default(),
            primary: true,
        }],
        notes: Vec::new(),
        help: error.help.clone().into_iter().collect(),
    };
    for (secondary_span, label) in &error.secondary {
        diagnostic = diagnostic.with_secondary(
            expression.span_of(source, secondary_span.start, secondary_span.end),
            label.clone(),
        );
    }
    // A suggestion in backticks that names a declared capability: point at its key.
    if let Some(help) = &error.help {
        for (key, _) in capabilities.iter() {
            let name = parse_reference(key)
                .map(|reference| reference.name().to_string())
                .unwrap_or_default();
            if !name.is_empty() && help.contains(&format!("`{name}`")) {
                diagnostic = diagnostic
                    .with_secondary(key.span, format!("capability `{name}` is declared here"));
                break;
            }
        }
    }
    diagnostic
}

/// Finds `recent.a-b` or `history.a-b` (a hyphen inside the name, no spaces) and
/// returns its byte range.
fn find_hyphenated_engagement_path(text: &str) -> Option<(usize, usize)> {
    for root in ["recent.", "history."] {
        let mut search_from = 0;
        while let Some(found) = text.get(search_from..).and_then(|rest| rest.find(root)) {
            let start = search_from + found;
            search_from = start + root.len();
            let preceded_by_identifier = text[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if preceded_by_identifier {
                continue;
            }
            let name_start = start + root.len();
            let name_length = text[name_start..]
                .char_indices()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .last()
                .map_or(0, |(offset, c)| offset + c.len_utf8());
            let name = text[name_start..name_start + name_length].trim_end_matches('-');
            let is_hyphenated_name = name.split('-').count() > 1
                && name
                    .split('-')
                    .all(|part| part.starts_with(|c: char| c.is_ascii_alphabetic()));
            if is_hyphenated_name {
                return Some((start, name_start + name.len()));
            }
        }
    }
    None
}

fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(limit).collect::<String>())
    }
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with field ranges checked.
pub fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(_year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    let byte = |at: usize| bytes.get(at).copied();
    if byte(4) != Some(b'-')
        || byte(7) != Some(b'-')
        || !matches!(byte(10), Some(b'T' | b't' | b' '))
        || byte(13) != Some(b':')
        || byte(16) != Some(b':')
    {
        return false;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let Some(mut rest) = text.get(19..) else {
        return false;
    };
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits_len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        match fraction.get(digits_len..) {
            Some(after) if digits_len > 0 => rest = after,
            _ => return false,
        }
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            // The offset is the end of `text`; its digits are read as the others are.
            let at = text.len().saturating_sub(offset.len());
            offset.len() == 6
                && matches!(offset.as_bytes().first(), Some(b'+' | b'-'))
                && offset.as_bytes().get(3) == Some(&b':')
                && digits(at + 1..at + 3).is_some_and(|hours| hours < 24)
                && digits(at + 4..at + 6).is_some_and(|minutes| minutes < 60)
        }
    }
}

/// `sha256:` and 64 lowercase hex digits: the one form of an MCP tool's pin (AGX-M2).
pub fn is_mcp_pin(pin: &str) -> bool {
    pin.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod rfc3339_tests {
    use super::is_rfc3339;

    #[test]
    fn rfc3339_offsets_are_two_digits_each() {
        assert!(is_rfc3339("2026-12-05T10:00:00+01:00"));
        assert!(is_rfc3339("2026-12-05T10:00:00.5Z"));
        for wrong in [
            "2026-12-05T10:00:00++1:00",
            "2026-12-05T10:00:00+01:+5",
            "2026-12-05T10:00:00+1:000",
            "2026-12-05T10:00:00+é:00",
        ] {
            assert!(!is_rfc3339(wrong), "{wrong}");
        }
    }
}

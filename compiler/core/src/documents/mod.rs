//! One Rust type per document kind, and the pass that recognises which kind a YAML
//! document is and lowers it.

pub mod agent;
pub mod handoff;
pub mod manifest;
pub mod tool;

use crate::diagnostics::{Diagnostic, FrontEndCode, did_you_mean};
use crate::lower::{FromNode, LowerContext};
use crate::span::{FileId, Span};
use crate::syntax::{Node, NodeValue};

pub use agent::AgentDocument;
pub use handoff::{HandoffDocument, HandoffRequest, HandoffResponse};
pub use manifest::CapabilityManifest;
pub use tool::ToolDocument;

/// The document kinds `agentc check` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Agent,
    Tool,
    Handoff,
    HandoffRequest,
    HandoffResponse,
    CapabilityManifest,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 6] = [
        DocumentKind::Agent,
        DocumentKind::Tool,
        DocumentKind::Handoff,
        DocumentKind::HandoffRequest,
        DocumentKind::HandoffResponse,
        DocumentKind::CapabilityManifest,
    ];

    /// The value of the document's `kind` key.
    pub fn kind_value(self) -> &'static str {
        match self {
            DocumentKind::Agent => "openagentspec:v1/agent",
            DocumentKind::Tool => "openagentspec:v1/tool",
            DocumentKind::Handoff => "agentosi:v1/handoff",
            DocumentKind::HandoffRequest => "agentosi:v1/handoff-request",
            DocumentKind::HandoffResponse => "agentosi:v1/handoff-response",
            DocumentKind::CapabilityManifest => "agentosi:v1/capability-manifest",
        }
    }

    /// The short name used by `agentc schema NAME`.
    pub fn short_name(self) -> &'static str {
        match self {
            DocumentKind::Agent => "agent",
            DocumentKind::Tool => "tool",
            DocumentKind::Handoff => "handoff",
            DocumentKind::HandoffRequest => "handoff-request",
            DocumentKind::HandoffResponse => "handoff-response",
            DocumentKind::CapabilityManifest => "capability-manifest",
        }
    }

    pub fn from_short_name(name: &str) -> Option<DocumentKind> {
        DocumentKind::ALL
            .into_iter()
            .find(|kind| kind.short_name() == name)
    }

    /// The keys a document of this kind may have.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            DocumentKind::Agent => AgentDocument::KEYS,
            DocumentKind::Tool => ToolDocument::KEYS,
            DocumentKind::Handoff => HandoffDocument::KEYS,
            DocumentKind::HandoffRequest => HandoffRequest::KEYS,
            DocumentKind::HandoffResponse => HandoffResponse::KEYS,
            DocumentKind::CapabilityManifest => CapabilityManifest::KEYS,
        }
    }

    /// Whether the published form of this kind has a `kind` key. The Agent OSI documents
    /// were published without one, so for them it is optional and their keys identify them.
    pub fn kind_key_required(self) -> bool {
        matches!(self, DocumentKind::Agent | DocumentKind::Tool)
    }

    /// The JSON Schema of this document kind, generated from its Rust type.
    pub fn json_schema(self) -> serde_json::Value {
        let schema = match self {
            DocumentKind::Agent => schemars::schema_for!(AgentDocument),
            DocumentKind::Tool => schemars::schema_for!(ToolDocument),
            DocumentKind::Handoff => schemars::schema_for!(HandoffDocument),
            DocumentKind::HandoffRequest => schemars::schema_for!(HandoffRequest),
            DocumentKind::HandoffResponse => schemars::schema_for!(HandoffResponse),
            DocumentKind::CapabilityManifest => schemars::schema_for!(CapabilityManifest),
        };
        let mut value = schema.to_value();
        // Pin `kind` to its one value, so editors complete it and flag a wrong one.
        if let Some(kind) = value.pointer_mut("/properties/kind") {
            *kind = serde_json::json!({ "const": self.kind_value(), "type": "string" });
        }
        value
    }
}

/// A lowered document of any kind. The variants differ in size, but a set holds few
/// documents and boxing them would only add indirection to every later pass.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Document {
    Agent(AgentDocument),
    Tool(ToolDocument),
    Handoff(HandoffDocument),
    HandoffRequest(HandoffRequest),
    HandoffResponse(HandoffResponse),
    CapabilityManifest(CapabilityManifest),
}

impl Document {
    pub fn kind(&self) -> DocumentKind {
        match self {
            Document::Agent(_) => DocumentKind::Agent,
            Document::Tool(_) => DocumentKind::Tool,
            Document::Handoff(_) => DocumentKind::Handoff,
            Document::HandoffRequest(_) => DocumentKind::HandoffRequest,
            Document::HandoffResponse(_) => DocumentKind::HandoffResponse,
            Document::CapabilityManifest(_) => DocumentKind::CapabilityManifest,
        }
    }
}

/// A document with the file it came from.
#[derive(Clone, Debug)]
pub struct LoadedDocument {
    pub file: FileId,
    pub document: Document,
}

/// Recognises the kind of one YAML document and lowers it. Problems are reported into
/// `context`; `None` when the document could not be read as any kind.
pub fn lower_document(root: &Node, context: &mut LowerContext) -> Option<Document> {
    let NodeValue::Mapping(entries) = &root.value else {
        let message = match &root.value {
            NodeValue::Null => "this document is empty".to_string(),
            _ => format!(
                "a spec document must be a mapping, found {}",
                root.describe()
            ),
        };
        context.report(
            Diagnostic::new(FrontEndCode::NotADocument, root.span, message)
                .with_primary_label("expected a mapping with a `kind` key")
                .with_help("start the document with `kind: openagentspec:v1/agent` (or `/tool`) and its keys"),
        );
        return None;
    };
    let keys: Vec<&str> = entries
        .iter()
        .filter_map(|(key, _)| key.scalar_text())
        .collect();
    let kind = match root.get("kind") {
        Some((kind_key, kind_node)) => declared_kind(kind_key, kind_node, &keys, context)?,
        None => inferred_kind(root, &keys, context)?,
    };
    match kind {
        DocumentKind::Agent => AgentDocument::from_node(root, context).map(Document::Agent),
        DocumentKind::Tool => ToolDocument::from_node(root, context).map(Document::Tool),
        DocumentKind::Handoff => HandoffDocument::from_node(root, context).map(Document::Handoff),
        DocumentKind::HandoffRequest => {
            HandoffRequest::from_node(root, context).map(Document::HandoffRequest)
        }
        DocumentKind::HandoffResponse => {
            HandoffResponse::from_node(root, context).map(Document::HandoffResponse)
        }
        DocumentKind::CapabilityManifest => {
            CapabilityManifest::from_node(root, context).map(Document::CapabilityManifest)
        }
    }
}

/// How well a document's keys fit a kind: (keys it knows, keys it does not know).
fn key_fit(kind: DocumentKind, keys: &[&str]) -> (usize, usize) {
    let known = keys.iter().filter(|key| kind.keys().contains(key)).count();
    (known, keys.len() - known)
}

/// The kind whose keys fit the document best, when one fits clearly.
fn best_fitting_kind(keys: &[&str]) -> Option<DocumentKind> {
    DocumentKind::ALL
        .into_iter()
        .map(|kind| (kind, key_fit(kind, keys)))
        .filter(|(_, (known, _))| *known >= 2)
        .max_by_key(|(_, (known, unknown))| (*known as isize) - 2 * (*unknown as isize))
        .map(|(kind, _)| kind)
}

fn declared_kind(
    kind_key: &Node,
    kind_node: &Node,
    keys: &[&str],
    context: &mut LowerContext,
) -> Option<DocumentKind> {
    let NodeValue::String(text) = &kind_node.value else {
        context.wrong_type(kind_node, "a string such as `openagentspec:v1/agent`");
        return None;
    };
    let declared = DocumentKind::ALL
        .into_iter()
        .find(|kind| kind.kind_value() == text);
    let best_fit = best_fitting_kind(keys);
    match declared {
        Some(kind) => {
            // The kind is valid, but if the keys plainly belong to another kind the user
            // most likely copied the wrong header: say so instead of listing every key.
            if let Some(fit) = best_fit
                && fit != kind
            {
                let (declared_known, declared_unknown) = key_fit(kind, keys);
                let (fit_known, fit_unknown) = key_fit(fit, keys);
                if fit_unknown == 0 && declared_unknown >= 2 && fit_known > declared_known {
                    context.report(
                        Diagnostic::new(
                            FrontEndCode::UnknownKind,
                            kind_node.span,
                            format!(
                                "this document says `kind: {text}`, but its keys are those of {}",
                                describe_kind(fit)
                            ),
                        )
                        .with_primary_label(format!("should this be `{}`?", fit.kind_value()))
                        .with_help(format!("write `kind: {}`", fit.kind_value())),
                    );
                    return None;
                }
            }
            Some(kind)
        }
        None => {
            let values = DocumentKind::ALL.map(DocumentKind::kind_value);
            let suggestion = did_you_mean(text, values)
                .or_else(|| {
                    // `agent`, `v1/tool` and similar shorthands name the kind's last part.
                    let last = text
                        .rsplit(['/', ':'])
                        .next()
                        .unwrap_or(text)
                        .to_ascii_lowercase();
                    values
                        .into_iter()
                        .find(|value| value.ends_with(&format!("/{last}")))
                })
                .or_else(|| best_fit.map(DocumentKind::kind_value));
            let mut diagnostic = Diagnostic::new(
                FrontEndCode::UnknownKind,
                kind_node.span,
                format!("unknown document kind `{text}`"),
            )
            .with_secondary(kind_key.span, "the document kind is declared here")
            .with_note(format!("the kinds agentc reads are: {}", values.join(", ")));
            diagnostic = match suggestion {
                Some(suggestion) => diagnostic
                    .with_primary_label(format!("did you mean `{suggestion}`?"))
                    .with_help(format!("write `kind: {suggestion}`")),
                None => diagnostic.with_primary_label("not a known kind"),
            };
            context.report(diagnostic);
            None
        }
    }
}

fn inferred_kind(root: &Node, keys: &[&str], context: &mut LowerContext) -> Option<DocumentKind> {
    // The Agent OSI documents are published without `kind`; their leading keys identify them.
    let has = |key: &str| keys.contains(&key);
    let inferred = if has("handoff_version") {
        Some(DocumentKind::Handoff)
    } else if has("handoff_id") && has("sender") {
        Some(DocumentKind::HandoffRequest)
    } else if has("handoff_id") {
        Some(DocumentKind::HandoffResponse)
    } else if has("manifest_version") || (has("agent_id") && has("capabilities")) {
        Some(DocumentKind::CapabilityManifest)
    } else {
        None
    };
    if inferred.is_some() {
        return inferred;
    }
    let guess = best_fitting_kind(keys);
    let anchor = root
        .as_mapping()
        .and_then(|entries| entries.first())
        .map_or(root.span, |(key, _)| key.span);
    let mut diagnostic = Diagnostic::new(
        FrontEndCode::UnknownKind,
        Span::new(anchor.file, anchor.start, anchor.start),
        "this document has no `kind`",
    );
    diagnostic = match guess {
        Some(kind) if kind.kind_key_required() => diagnostic
            .with_primary_label(format!("its keys are those of {}", describe_kind(kind)))
            .with_help(format!(
                "add `kind: {}` as the first line of the document",
                kind.kind_value()
            )),
        _ => diagnostic
            .with_primary_label("cannot tell what kind of document this is")
            .with_help("add `kind: openagentspec:v1/agent` or `kind: openagentspec:v1/tool`"),
    };
    context.report(diagnostic);
    None
}

fn describe_kind(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Agent => "an agent document",
        DocumentKind::Tool => "a tool document",
        DocumentKind::Handoff => "a handoff document",
        DocumentKind::HandoffRequest => "a handoff request",
        DocumentKind::HandoffResponse => "a handoff response",
        DocumentKind::CapabilityManifest => "a capability manifest",
    }
}

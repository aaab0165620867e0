//! The pure core of agentc: spanned YAML, the OpenAgentSpec document model, the checks
//! of `agentc check`, and diagnostics as data.
//!
//! Nothing here does IO: callers hand in bytes and get back documents and diagnostics.
//! The CLI reads files and prints; the proc macro reads one spec file and emits tokens;
//! both call [`check_set`] and render with `render::SourceView` (the `render` feature).

#![forbid(unsafe_code)]
// The trusted path never panics on data: no unwrap, expect, panic or unchecked
// indexing outside tests (clippy.toml allows them in tests).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod check;
pub mod diagnostics;
pub mod documents;
pub mod lower;
pub mod names;
pub mod path_template;
#[cfg(feature = "render")]
pub mod render;
pub mod span;
pub mod syntax;
pub mod urls;

use diagnostics::{Diagnostic, FrontEndCode, Severity};
use documents::{LoadedDocument, lower_document};
use lower::LowerContext;
use span::{FileId, Span};
use syntax::{SyntaxLimits, parse_yaml};

/// One input file: the name shown in diagnostics, and its raw bytes. A name that is an
/// `https://` (or loopback `http://`) URL marks a document fetched from a remote server
/// (see [`check::is_remote_source_name`]).
#[derive(Clone, Debug)]
pub struct SourceInput {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub limits: SyntaxLimits,
    /// Why the tool calling `check` cannot call MCP-bound tools (an `agentc` built
    /// without its `mcp` feature), so that each such tool is warned about (W0606)
    /// instead of being refused at its first call; `None` when it can.
    pub mcp_unavailable: Option<String>,
}

/// The outcome of checking a set of files.
#[derive(Clone, Debug)]
pub struct CheckedSet {
    /// File names, indexed by [`FileId`].
    pub names: Vec<String>,
    /// File texts (invalid UTF-8 replaced), indexed by [`FileId`].
    pub texts: Vec<String>,
    pub documents: Vec<LoadedDocument>,
    pub resolution: check::Resolution,
    /// Sorted by file, position and code, so output is deterministic.
    pub diagnostics: Vec<Diagnostic>,
}

/// Where an expression is written: its file's name as the set was given it, and the
/// line and column of its first character (from 1; columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecPlace<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
}

impl SpecPlace<'_> {
    /// `file:line:column` with the file's base name only, as generated code writes a
    /// place: the same crate whichever directory it was generated from.
    pub fn with_base_name(&self) -> String {
        let base = self.file.rsplit(['/', '\\']).next().unwrap_or(self.file);
        format!("{base}:{}:{}", self.line, self.column)
    }
}

impl std::fmt::Display for SpecPlace<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl CheckedSet {
    /// Where `span` starts, for a refusal reason to name a rule's place (AGX-L3);
    /// `None` for a span outside the set's files.
    pub fn place(&self, span: Span) -> Option<SpecPlace<'_>> {
        let file = usize::try_from(span.file.0).ok()?;
        let name = self.names.get(file)?;
        let before = self.texts.get(file)?.get(..span.start)?;
        Some(SpecPlace {
            file: name,
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
        })
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    /// The set's sources, to render its diagnostics (the `render` feature).
    #[cfg(feature = "render")]
    pub fn view(&self) -> render::SourceView<'_> {
        render::SourceView::new(&self.names, &self.texts)
    }
}

/// W0606 for each MCP-bound tool, when the caller cannot call MCP tools.
fn unserved_mcp_bindings(documents: &[LoadedDocument], why: &str) -> Vec<Diagnostic> {
    documents
        .iter()
        .filter_map(|loaded| match &loaded.document {
            documents::Document::Tool(tool) => tool.binding.mcp.as_ref(),
            _ => None,
        })
        .map(|mcp| {
            Diagnostic::new(
                FrontEndCode::BindingNotServed,
                mcp.tool.span,
                format!(
                    "calls to MCP tool `{}` would be refused: {why}",
                    mcp.tool.value
                ),
            )
            .with_primary_label("this binding cannot be called by this build")
            .with_help("build agentc with its default features (`mcp` among them)")
        })
        .collect()
}

/// Reads, lowers and checks a set of files as one set: capability references resolve
/// across all of them.
pub fn check_set(inputs: &[SourceInput], options: &CheckOptions) -> CheckedSet {
    let mut names = Vec::with_capacity(inputs.len());
    let mut texts = Vec::with_capacity(inputs.len());
    let mut documents = Vec::new();
    let mut diagnostics = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let file = FileId(u32::try_from(index).unwrap_or(u32::MAX));
        names.push(input.name.clone());
        let text = match std::str::from_utf8(&input.bytes) {
            Ok(text) => text.to_string(),
            Err(error) => {
                let at = error.valid_up_to();
                diagnostics.push(
                    Diagnostic::new(
                        FrontEndCode::InvalidUtf8,
                        Span::new(file, at, at + 1),
                        format!("the file is not valid UTF-8 (invalid byte at offset {at})"),
                    )
                    .with_primary_label("invalid UTF-8 starts here")
                    .with_help("save the file as UTF-8; specs are text"),
                );
                // The valid prefix is identical in the lossy text, so the span above
                // still points at the right place when rendered.
                texts.push(String::from_utf8_lossy(&input.bytes).into_owned());
                continue;
            }
        };
        if text.trim().is_empty() {
            diagnostics.push(
                Diagnostic::new(
                    FrontEndCode::NotADocument,
                    Span::new(file, 0, 0),
                    "the file is empty",
                )
                .with_primary_label("no document here")
                .with_help(
                    "a spec file holds one or more YAML documents, each starting with `kind:`",
                ),
            );
            texts.push(text);
            continue;
        }
        let (yaml_documents, syntax_diagnostics) = parse_yaml(file, &text, &options.limits);
        diagnostics.extend(syntax_diagnostics);
        let mut context = LowerContext::default();
        for yaml_document in &yaml_documents {
            if let Some(document) = lower_document(&yaml_document.root, &mut context) {
                documents.push(LoadedDocument { file, document });
            }
        }
        diagnostics.extend(context.diagnostics);
        texts.push(text);
    }
    let (resolution, check_diagnostics) = check::check_documents(&names, &texts, &documents);
    diagnostics.extend(check_diagnostics);
    if let Some(why) = &options.mcp_unavailable {
        diagnostics.extend(unserved_mcp_bindings(&documents, why));
    }
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| (d.primary_span().unwrap_or_default(), d.code.as_str());
        key(a).cmp(&key(b))
    });
    diagnostics.dedup();
    CheckedSet {
        names,
        texts,
        documents,
        resolution,
        diagnostics,
    }
}

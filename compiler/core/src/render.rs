//! Rendering diagnostics for people (rustc-style, with source snippets) and machines
//! (JSON). Pure: both return strings, so the CLI, the proc macro and snapshot tests
//! show exactly the same text.

use crate::diagnostics::{Diagnostic, Severity};
use codespan_reporting::diagnostic::{Diagnostic as CodespanDiagnostic, Label as CodespanLabel};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, Config};
use serde::Serialize;

/// The sources diagnostics point into: names (as shown to the user) and texts.
pub struct SourceView<'a> {
    files: SimpleFiles<&'a str, &'a str>,
}

impl<'a> SourceView<'a> {
    pub fn new(names: &'a [String], texts: &'a [String]) -> Self {
        let mut files = SimpleFiles::new();
        for (name, text) in names.iter().zip(texts) {
            files.add(name.as_str(), text.as_str());
        }
        SourceView { files }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, file: usize, offset: usize) -> Option<(usize, usize)> {
        let location = self.files.location(file, offset).ok()?;
        Some((location.line_number, location.column_number))
    }

    fn to_codespan(&self, diagnostic: &Diagnostic) -> CodespanDiagnostic<usize> {
        let base = match diagnostic.severity {
            Severity::Error => CodespanDiagnostic::error(),
            Severity::Warning => CodespanDiagnostic::warning(),
        };
        let labels = diagnostic
            .labels
            .iter()
            .map(|label| {
                let file = label.span.file.0 as usize;
                // Clamp to the source so a stale span can never make rendering fail.
                let length = self.files.get(file).map_or(0, |f| f.source().len());
                let range = label.span.start.min(length)..label.span.end.min(length);
                let codespan_label = if label.primary {
                    CodespanLabel::primary(file, range)
                } else {
                    CodespanLabel::secondary(file, range)
                };
                codespan_label.with_message(label.message.clone())
            })
            .collect();
        let mut notes: Vec<String> = diagnostic
            .notes
            .iter()
            .map(|note| format!("note: {note}"))
            .collect();
        notes.extend(diagnostic.help.iter().map(|help| format!("help: {help}")));
        notes.push(format!(
            "for more about this error, run `agentc explain {}`",
            diagnostic.code.as_str()
        ));
        base.with_code(diagnostic.code.as_str())
            .with_message(diagnostic.message.clone())
            .with_labels(labels)
            .with_notes(notes)
    }

    /// Renders diagnostics as rustc-style text, without colour.
    pub fn render_text(&self, diagnostics: &[Diagnostic]) -> String {
        let config = Config::default();
        let mut output = String::new();
        for diagnostic in diagnostics {
            match term::emit_into_string(&config, &self.files, &self.to_codespan(diagnostic)) {
                Ok(text) => output.push_str(&text),
                // Only a span outside its file can fail here; show the message regardless.
                Err(_) => output.push_str(&format!(
                    "{}[{}]: {}\n",
                    severity_word(diagnostic.severity),
                    diagnostic.code.as_str(),
                    diagnostic.message
                )),
            }
        }
        output
    }

    /// Renders diagnostics with ANSI colours, for a terminal.
    pub fn render_coloured(&self, diagnostics: &[Diagnostic]) -> String {
        let config = Config::default();
        let styles = term::Styles::default();
        let mut buffer = term::termcolor::Buffer::ansi();
        for diagnostic in diagnostics {
            let mut writer = term::StylesWriter::new(&mut buffer, &styles);
            if term::emit_to_write_style(
                &mut writer,
                &config,
                &self.files,
                &self.to_codespan(diagnostic),
            )
            .is_err()
            {
                return self.render_text(diagnostics);
            }
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }

    /// Renders diagnostics as JSON values with file, line and column for every label.
    pub fn render_json(&self, diagnostics: &[Diagnostic]) -> Vec<JsonDiagnostic> {
        diagnostics
            .iter()
            .map(|diagnostic| JsonDiagnostic {
                code: diagnostic.code.as_str(),
                severity: severity_word(diagnostic.severity),
                message: diagnostic.message.clone(),
                labels: diagnostic
                    .labels
                    .iter()
                    .map(|label| {
                        let file = label.span.file.0 as usize;
                        let (line, column) =
                            self.line_column(file, label.span.start).unwrap_or((0, 0));
                        let (end_line, end_column) = self
                            .line_column(file, label.span.end)
                            .unwrap_or((line, column));
                        JsonLabel {
                            file: self
                                .files
                                .get(file)
                                .map(|f| f.name().to_string())
                                .unwrap_or_default(),
                            byte_start: label.span.start,
                            byte_end: label.span.end,
                            line,
                            column,
                            end_line,
                            end_column,
                            primary: label.primary,
                            message: label.message.clone(),
                        }
                    })
                    .collect(),
                notes: diagnostic.notes.clone(),
                help: diagnostic.help.clone(),
            })
            .collect()
    }
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A diagnostic in `--format json` output.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    pub code: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub labels: Vec<JsonLabel>,
    pub notes: Vec<String>,
    pub help: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct JsonLabel {
    pub file: String,
    pub byte_start: usize,
    pub byte_end: usize,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub primary: bool,
    pub message: String,
}

//! Diagnostics as plain data, and the one catalogue of their codes.
//!
//! The core never prints. It returns [`Diagnostic`] values; the CLI and the proc macro
//! render them with [`render`](crate::render), so both show the same text for the same
//! mistake. Every code has a long explanation, shown by `agentc explain CODE`.

use crate::span::Span;
use serde::Serialize;

/// How serious a diagnostic is. Errors make `agentc check` fail; warnings only do so
/// under `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

macro_rules! catalogue {
    ($( $code:ident $variant:ident $severity:ident $title:literal; )*) => {
        /// Every diagnostic code the front end can emit, apart from the CEL codes,
        /// which the CEL engine owns and [`Code::Cel`] wraps.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum FrontEndCode { $( $variant, )* }

        impl FrontEndCode {
            pub const ALL: &'static [FrontEndCode] = &[ $( FrontEndCode::$variant, )* ];

            pub fn as_str(self) -> &'static str {
                match self { $( FrontEndCode::$variant => stringify!($code), )* }
            }

            /// A one-line summary, used in `agentc explain --list`.
            pub fn title(self) -> &'static str {
                match self { $( FrontEndCode::$variant => $title, )* }
            }

            pub fn default_severity(self) -> Severity {
                match self { $( FrontEndCode::$variant => Severity::$severity, )* }
            }

            /// The long explanation, written in `compiler/core/explain/CODE.md`.
            pub fn explain(self) -> &'static str {
                match self { $( FrontEndCode::$variant => include_str!(concat!("../explain/", stringify!($code), ".md")), )* }
            }
        }
    };
}

catalogue! {
    E0001 InvalidUtf8 Error "the file is not valid UTF-8";
    E0002 YamlSyntax Error "the file is not well-formed YAML or JSON";
    E0003 InputBudgetExceeded Error "the file is too large, too deep or expands too much";
    E0004 DuplicateKey Error "a mapping has the same key twice";
    E0005 NotADocument Error "a document is empty or is not a mapping";
    E0006 UnknownKind Error "a document has a missing or unknown `kind`";
    E0007 UnsupportedYaml Error "the YAML uses a feature specs may not use";
    E0101 UnknownKey Error "a mapping has a key its document kind does not define";
    E0102 MissingKey Error "a required key is missing";
    E0103 WrongType Error "a value has the wrong type";
    E0104 OutOfRange Error "a number is outside its allowed range";
    E0105 InvalidEnumValue Error "a value is not one of the allowed choices";
    E0201 InvalidName Error "a tool or agent name breaks the naming rule (OAS-N1)";
    E0202 DuplicateName Error "two documents of the same kind have the same name (OAS-A2)";
    E0203 UnresolvedCapability Error "a capability references no tool or agent in the set (OAS-C1)";
    E0204 InvalidAgentReference Error "a reference is not of a valid form (OAS-N3)";
    E0205 AgentReferenceCycle Error "agents reference each other in a cycle";
    E0206 UnresolvedGuardrailTool Error "a guardrail's `tool_name` is not a tool in the set (OAS-G1)";
    E0207 InvalidReviewer Error "`require_review` names no valid reviewer (OAS-C7)";
    E0208 MissingStaticIdentity Error "`user_identity: false` without a `static_identity` (OAS-C3, OAS-C4)";
    E0209 SelfReference Error "an agent lists itself as a capability";
    E0210 ReviewConditionWithoutReviewer Error "`review_when` without `require_review` (AGX-V1)";
    E0301 InvalidJsonSchema Error "a tool's `input` or `output` is not a valid JSON Schema";
    E0302 BindingCount Error "a tool has no binding, or more than one (it must have exactly one)";
    E0303 ToolInputNotObject Error "a tool's `input` schema does not describe an object";
    E0304 InvalidUrl Error "a URL is not a valid absolute http(s) URL";
    E0305 CredentialInClearText Error "a tool with a credential is bound to a plain http:// URL off loopback";
    E0306 McpTransportCount Error "an MCP binding needs exactly one of `server` (streamable HTTP) and `command` (stdio) (AGX-M1)";
    E0307 InvalidMcpPin Error "an MCP binding's `pin` is not `sha256:` and 64 hex digits (AGX-M2)";
    E0308 PitfallDoesNotFitBinding Error "a pitfall records what its tool's binding does not speak: `request` and `status` for HTTP, `call` and `is_error` for MCP (AGX-M5)";
    E0309 ExampleBreaksSchema Error "a conformance example's input or output breaks the tool's own input or output schema";
    E0310 InvalidPathTemplate Error "a binding URL's path template is malformed, or names no required string, number or boolean input property (AGX-H1)";
    E0401 InvalidDateTime Error "a date-time is not in RFC 3339 form";
    E0402 AuditChainBroken Error "a regulated handoff's audit entries do not chain by hash";
    E0403 InconsistentDocument Error "a handoff's fields contradict each other";
    W0601 RemoteReferenceNotVerified Warning "a remote agent reference was recognised but not fetched";
    W0602 AmbiguousBareReference Warning "a bare reference names both a tool and an agent (OAS-N4)";
    W0603 UnknownTrustLabel Warning "an `x-agentc-trust` label is neither `trusted` nor `untrusted` (AGX-P1)";
    W0604 EnforcementOff Warning "a restriction only observes: it has a `shadow` but nothing enforced (AGX-S1)";
    W0605 McpToolNotPinned Warning "an MCP tool has no `pin`, so a change to its definition on the server goes unnoticed (AGX-M2)";
    W0606 BindingNotServed Warning "this build of agentc cannot call a tool's binding (AGX-M1)";
    W0607 IgnoredKey Warning "a key is written where nothing reads it, so it has no effect";
}

/// A diagnostic code: one from the front end, or one from the CEL engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    FrontEnd(FrontEndCode),
    Cel(agentc_cel::CelErrorKind),
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::FrontEnd(code) => code.as_str(),
            Code::Cel(kind) => kind.code(),
        }
    }

    /// The long explanation, as Markdown starting with `# CODE: title`.
    pub fn explain(self) -> std::borrow::Cow<'static, str> {
        match self {
            Code::FrontEnd(code) => code.explain().into(),
            Code::Cel(kind) => {
                // The CEL engine's pages are plain paragraphs; give them the same heading.
                let text = kind.explain();
                let title = text
                    .split(". ")
                    .next()
                    .unwrap_or(text)
                    .trim_end_matches('.');
                format!("# {}: {title}\n\n{text}\n", kind.code()).into()
            }
        }
    }

    /// Every code in the catalogue, front end and CEL, in code order.
    pub fn all() -> Vec<Code> {
        let mut codes: Vec<Code> = FrontEndCode::ALL
            .iter()
            .copied()
            .map(Code::FrontEnd)
            .collect();
        codes.extend(agentc_cel::all_error_kinds().iter().copied().map(Code::Cel));
        codes.sort_by_key(|code| code.as_str());
        codes
    }

    /// Looks a code up by its text, case-insensitively (`e0101` finds `E0101`).
    pub fn parse(text: &str) -> Option<Code> {
        Code::all()
            .into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A labelled place in a source: the primary label says what is wrong there, secondary
/// labels point at related places (the capability key an assertion misspells, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// One finding about the user's documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity and one primary label.
    pub fn new(code: FrontEndCode, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code: Code::FrontEnd(code),
            severity: code.default_severity(),
            message: message.into(),
            labels: vec![Label {
                span,
                message: String::new(),
                primary: true,
            }],
            notes: Vec::new(),
            help: Vec::new(),
        }
    }

    /// Sets the text shown under the primary label's caret.
    pub fn with_primary_label(mut self, message: impl Into<String>) -> Self {
        if let Some(label) = self.labels.iter_mut().find(|label| label.primary) {
            label.message = message.into();
        }
        self
    }

    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|label| label.primary)
            .map(|label| label.span)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest candidate to `unknown`, for "did you mean" help. Case differences and
/// `-`/`_` swaps count as near misses, since they are the usual slips in spec names.
pub fn did_you_mean<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let normalized_unknown = unknown.to_ascii_lowercase().replace('-', "_");
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = if candidate == normalized_unknown {
            0
        } else {
            agentc_cel::edit_distance(&normalized_unknown, candidate)
        };
        let allowed = (candidate.chars().count().max(3)) / 3;
        if distance <= allowed.max(1)
            && best.is_none_or(|(best_distance, _)| distance < best_distance)
        {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_unique_name_and_an_explanation_that_names_it() {
        let codes = Code::all();
        let mut names: Vec<&str> = codes.iter().map(|code| code.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), codes.len(), "duplicate codes in the catalogue");
        for code in FrontEndCode::ALL {
            let page = code.explain();
            assert!(
                page.starts_with(&format!("# {}", code.as_str())),
                "explain page of {} must start with its code",
                code.as_str()
            );
            assert!(
                page.len() > 200,
                "explain page of {} is too thin",
                code.as_str()
            );
        }
    }

    #[test]
    fn did_you_mean_finds_near_misses_and_rejects_far_ones() {
        let keys = ["capabilities", "guardrails", "exposes", "lifespan"];
        assert_eq!(did_you_mean("capabilites", keys), Some("capabilities"));
        assert_eq!(did_you_mean("Exposes", keys), Some("exposes"));
        assert_eq!(did_you_mean("banana", keys), None);
        assert_eq!(did_you_mean("hr-kb", ["hr_kb"]), Some("hr_kb"));
    }

    #[test]
    fn parse_finds_codes_case_insensitively() {
        assert_eq!(
            Code::parse("e0101"),
            Some(Code::FrontEnd(FrontEndCode::UnknownKey))
        );
        assert_eq!(Code::parse("E9999"), None);
    }
}

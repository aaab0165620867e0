//! Diagnostics produced by the parser and the type checker.
//!
//! Every diagnostic carries a stable error code so that users can run
//! `agentc explain E05xx` and so that tests can match on codes rather than on wording.

use std::fmt;

/// A half-open range of byte offsets into the CEL source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// The offset of the first byte covered by the span.
    pub start: usize,
    /// The offset one past the last byte covered by the span.
    pub end: usize,
}

impl Span {
    /// Creates a span from its two offsets.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// Returns the smallest span that covers both spans.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// The category of a CEL diagnostic; each category has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CelErrorKind {
    /// The text is not valid CEL syntax.
    Syntax,
    /// The expression nests deeper than the configured limit.
    NestingTooDeep,
    /// The expression is longer or has more nodes than the configured limit.
    ExpressionTooLarge,
    /// A literal (number, string, bytes) is malformed or out of range.
    InvalidLiteral,
    /// A reserved word was used as an identifier.
    ReservedWord,
    /// A variable name is not declared.
    UnknownName,
    /// A field is selected that the object's type does not declare.
    UnknownField,
    /// A function or method name is not known.
    UnknownFunction,
    /// A function is called with the wrong number of arguments.
    WrongArgumentCount,
    /// No overload of a function or operator accepts the argument types.
    NoMatchingOverload,
    /// Two parts of an expression that must agree in type do not.
    TypeMismatch,
    /// An assertion does not produce a boolean.
    NotBoolean,
    /// An optional field is selected without a `has()` guard.
    OptionalFieldWithoutHas,
    /// A macro such as `has`, `all` or `map` is used in a malformed way.
    InvalidMacro,
    /// Comprehension macros are nested deeper than the configured limit.
    ComprehensionNestingTooDeep,
    /// Message construction such as `Foo{a: 1}` is not supported by OpenAgentSpec policies.
    MessageConstructionUnsupported,
    /// A constant regular expression does not compile.
    InvalidRegex,
    /// A provenance question (`fromTool`, `fromUser`, …) names a tool or field the
    /// engagement cannot have, or is asked where there is no engagement (AGX-P1).
    UnknownSource,
    /// An agent's definition (AGX-D1) has a bad key, is defined twice, or cannot be
    /// inlined where it is used.
    InvalidDefinition,
}

const ALL_ERROR_KINDS: &[CelErrorKind] = &[
    CelErrorKind::Syntax,
    CelErrorKind::NestingTooDeep,
    CelErrorKind::ExpressionTooLarge,
    CelErrorKind::InvalidLiteral,
    CelErrorKind::ReservedWord,
    CelErrorKind::UnknownName,
    CelErrorKind::UnknownField,
    CelErrorKind::UnknownFunction,
    CelErrorKind::WrongArgumentCount,
    CelErrorKind::NoMatchingOverload,
    CelErrorKind::TypeMismatch,
    CelErrorKind::NotBoolean,
    CelErrorKind::OptionalFieldWithoutHas,
    CelErrorKind::InvalidMacro,
    CelErrorKind::ComprehensionNestingTooDeep,
    CelErrorKind::MessageConstructionUnsupported,
    CelErrorKind::InvalidRegex,
    CelErrorKind::UnknownSource,
    CelErrorKind::InvalidDefinition,
];

/// Returns every error kind, in code order, so that tools can list and explain them all.
pub fn all_error_kinds() -> &'static [CelErrorKind] {
    ALL_ERROR_KINDS
}

impl CelErrorKind {
    /// Returns the stable code of this kind, in the range `E0501`..`E0599`.
    pub fn code(&self) -> &'static str {
        match self {
            CelErrorKind::Syntax => "E0501",
            CelErrorKind::NestingTooDeep => "E0502",
            CelErrorKind::ExpressionTooLarge => "E0503",
            CelErrorKind::InvalidLiteral => "E0504",
            CelErrorKind::ReservedWord => "E0505",
            CelErrorKind::UnknownName => "E0506",
            CelErrorKind::UnknownField => "E0507",
            CelErrorKind::UnknownFunction => "E0508",
            CelErrorKind::WrongArgumentCount => "E0509",
            CelErrorKind::NoMatchingOverload => "E0510",
            CelErrorKind::TypeMismatch => "E0511",
            CelErrorKind::NotBoolean => "E0512",
            CelErrorKind::OptionalFieldWithoutHas => "E0513",
            CelErrorKind::InvalidMacro => "E0514",
            CelErrorKind::ComprehensionNestingTooDeep => "E0515",
            CelErrorKind::MessageConstructionUnsupported => "E0516",
            CelErrorKind::InvalidRegex => "E0517",
            CelErrorKind::UnknownSource => "E0518",
            CelErrorKind::InvalidDefinition => "E0519",
        }
    }

    /// Returns a paragraph explaining the error, with a wrong and a right example.
    pub fn explain(&self) -> &'static str {
        match self {
            CelErrorKind::Syntax => {
                "The assertion is not valid CEL syntax. CEL looks like a C-family expression: \
                 operators `&&`, `||`, `!`, comparisons, arithmetic, `cond ? a : b`, field \
                 selection with `.`, and function calls. Names in OpenAgentSpec use `_`, \
                 because `-` is subtraction.\n\nWrong:  recent.hr-kb.inputs.id == 'x'\n\
                 Right:  recent.hr_kb.inputs.id == 'x'"
            }
            CelErrorKind::NestingTooDeep => {
                "The expression nests parentheses, lists, operators or field selections more \
                 deeply than the compiler allows (128 levels by default). The limit keeps the \
                 compiler and the server from exhausting their stacks. Split the condition \
                 into simpler parts.\n\nWrong:  ((((((...(x)...))))))  nested 200 deep\n\
                 Right:  x"
            }
            CelErrorKind::ExpressionTooLarge => {
                "The expression is longer than the allowed number of bytes or nodes \
                 (100,000 bytes and 10,000 nodes by default). Assertions are meant to be \
                 short policy checks; move large data into the tools themselves.\n\n\
                 Wrong:  x in [1, 2, 3, ... 50,000 items]\n\
                 Right:  x in [1, 2, 3]"
            }
            CelErrorKind::InvalidLiteral => {
                "A number, string or bytes literal is malformed: an integer does not fit in \
                 64 bits, an escape sequence is unknown, or a `\\u` escape names a surrogate. \
                 Use a value in range and the escapes CEL defines (`\\n`, `\\t`, `\\\\`, \
                 `\\\"`, `\\xHH`, `\\uHHHH`, `\\UHHHHHHHH`, octal `\\ooo`).\n\n\
                 Wrong:  size(x) < 99999999999999999999\n\
                 Right:  size(x) < 9999999999"
            }
            CelErrorKind::ReservedWord => {
                "CEL reserves some words (such as `if`, `else`, `for`, `let`, `var`, \
                 `return`, `package`) and they cannot be used as variable names. Field names \
                 that collide with them can still be reached with an index: `x['if']`.\n\n\
                 Wrong:  if == 1\n\
                 Right:  x['if'] == 1"
            }
            CelErrorKind::UnknownName => {
                "The expression uses a variable that is not declared where it runs. \
                 Restriction assertions see only the engagement: `started_at`, `user`, \
                 `recent` and `history`.\n\n\
                 Wrong:  input.knowledge_base_id == 'hr'\n\
                 Right:  recent.hr_kb.inputs.knowledge_base_id == 'hr'"
            }
            CelErrorKind::UnknownField => {
                "The expression selects a field that the type of the object does not \
                 declare: a misspelt capability name under `recent.` or `history.`, or a \
                 parameter the tool does not have. The message lists the names that exist.\n\n\
                 Wrong:  recent.hr_kbb.inputs.id == 'x'\n\
                 Right:  recent.hr_kb.inputs.id == 'x'"
            }
            CelErrorKind::UnknownFunction => {
                "The expression calls a function or method that CEL does not define. Check \
                 the spelling; CEL names are camelCase, such as `startsWith`, `endsWith`, \
                 `contains`, `matches`, `size`, `lowerAscii`.\n\n\
                 Wrong:  user.email.starts_with('admin')\n\
                 Right:  user.email.startsWith('admin')"
            }
            CelErrorKind::WrongArgumentCount => {
                "A function, method or macro is called with the wrong number of arguments. \
                 Macros such as `all` and `exists` take a variable name and a predicate.\n\n\
                 Wrong:  history._list.exists(n == 'hr_kb')\n\
                 Right:  history._list.exists(n, n == 'hr_kb')"
            }
            CelErrorKind::NoMatchingOverload => {
                "No version of the function or operator accepts arguments of these types, \
                 for example adding a string to a number or calling `size` on an integer. \
                 Convert one side explicitly with `string()`, `int()` or `double()`.\n\n\
                 Wrong:  'count: ' + history._total\n\
                 Right:  'count: ' + string(history._total)"
            }
            CelErrorKind::TypeMismatch => {
                "Two parts of the expression that must have the same type do not, such as \
                 the two branches of `c ? a : b`, or a comparison between a string and a \
                 number.\n\n\
                 Wrong:  user.id == 42\n\
                 Right:  user.id == '42'"
            }
            CelErrorKind::NotBoolean => {
                "An assertion must evaluate to `true` or `false`, but this expression has \
                 another type. Compare the value with something to make a condition.\n\n\
                 Wrong:  history._total\n\
                 Right:  history._total < 10"
            }
            CelErrorKind::OptionalFieldWithoutHas => {
                "The expression selects a field that may be absent, such as `recent.<name>` \
                 for a capability that may not have run yet, or `user.email`. Selecting an \
                 absent field is an evaluation error, and the assertion then fails closed. \
                 Guard the selection with `has()`.\n\n\
                 Wrong:  recent.search.outputs.count < 10\n\
                 Right:  has(recent.search) && recent.search.outputs.count < 10"
            }
            CelErrorKind::InvalidMacro => {
                "A macro is used in a malformed way: `has()` needs a field selection such as \
                 `has(a.b)`, and `all`, `exists`, `exists_one`, `map` and `filter` need a \
                 simple variable name as their first argument.\n\n\
                 Wrong:  has(user)\n\
                 Right:  has(user.email)"
            }
            CelErrorKind::ComprehensionNestingTooDeep => {
                "Comprehension macros (`all`, `exists`, `map`, `filter`...) are nested more \
                 deeply than allowed (8 by default). Each level multiplies the work done at \
                 evaluation time.\n\n\
                 Wrong:  a.all(x, b.all(y, c.all(z, ... nested ten deep)))\n\
                 Right:  a.all(x, b.all(y, x != y))"
            }
            CelErrorKind::MessageConstructionUnsupported => {
                "The expression constructs a protocol buffer message such as `Foo{a: 1}`. \
                 OpenAgentSpec assertions have no message types; use a map literal instead.\n\n\
                 Wrong:  Foo{a: 1}.a == 1\n\
                 Right:  {'a': 1}.a == 1"
            }
            CelErrorKind::InvalidRegex => {
                "The regular expression given to `matches` does not compile. CEL uses RE2 \
                 syntax: no look-around and no back-references.\n\n\
                 Wrong:  user.email.matches('(?<=@)example')\n\
                 Right:  user.email.matches('@example[.]com$')"
            }
            CelErrorKind::UnknownSource => {
                "A provenance question asks where a string came from: the user's request \
                 (`fromUser()`), a trusted field of a capability's output (`fromTool(name)`, \
                 `fromTool(name, field)`), any trusted source (`fromTrusted()`) or untrusted \
                 content (`fromUntrusted()`, or one capability's: `fromUntrusted(name)`, \
                 `fromUntrusted(name, field)`). The capability must be one the agent declares, \
                 the field a path (keys joined by `.`, list positions left out) of its output \
                 schema, and the question must be asked where there is an engagement \
                 (restrictions and exposes, not a guardrail's assertion).\n\n\
                 Wrong:  inputs.to.fromTool('contacts', 'mail')\n\
                 Right:  recent.send_email.inputs.to.fromTool('search_contacts', 'contacts.email')"
            }
            CelErrorKind::InvalidDefinition => {
                "An agent's `definitions` (AGX-D1) name constants and predicates its \
                 expressions share: a key is `name` or `name(param, ...)`, and the value is \
                 the CEL it stands for, which may use the definitions above it. A name \
                 cannot be one CEL or the engagement already has (`size`, `recent`, ...), \
                 nor be defined twice; a predicate is called with its parameters; and a \
                 comprehension variable cannot hide an engagement name a definition it \
                 uses reads.\n\n\
                 Wrong:  recent.send_email.inputs.to.all(user, internal(user))\n\
                 Right:  recent.send_email.inputs.to.all(r, internal(r))"
            }
        }
    }
}

impl fmt::Display for CelErrorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

/// One problem found in a CEL expression, located in its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelDiagnostic {
    /// The category of the problem, which gives its stable code.
    pub kind: CelErrorKind,
    /// A one-line description of the problem.
    pub message: String,
    /// Where the problem is in the source text.
    pub span: Span,
    /// A suggestion of how to fix the problem, when one is known.
    pub help: Option<String>,
    /// Other locations that explain the problem, each with a label.
    pub secondary: Vec<(Span, String)>,
}

impl CelDiagnostic {
    /// Creates a diagnostic with no help and no secondary labels.
    pub fn new(kind: CelErrorKind, message: impl Into<String>, span: Span) -> Self {
        CelDiagnostic {
            kind,
            message: message.into(),
            span,
            help: None,
            secondary: Vec::new(),
        }
    }

    /// Attaches a help text to the diagnostic.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attaches a secondary labelled location to the diagnostic.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }
}

impl fmt::Display for CelDiagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "error[{}]: {} (at {}..{})",
            self.kind.code(),
            self.message,
            self.span.start,
            self.span.end
        )?;
        if let Some(help) = &self.help {
            write!(formatter, "; help: {help}")?;
        }
        Ok(())
    }
}

/// The longest name, in characters, [`edit_distance`] compares: no declared name is
/// that long, and the bound keeps the quadratic comparison cheap on hostile input.
const LONGEST_COMPARED_NAME: usize = 256;

/// The Levenshtein edit distance between two names, by characters; `usize::MAX` when
/// either is longer than 256 characters. The one implementation of the did-you-mean
/// suggestions of CEL and of the spec checker.
pub fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    if right.len() > LONGEST_COMPARED_NAME || left.chars().count() > LONGEST_COMPARED_NAME {
        return usize::MAX;
    }
    // One row of the distance matrix at a time: `previous[j]` is the distance between
    // the prefix of `left` read so far and the first `j` characters of `right`.
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (left_index, left_char) in left.chars().enumerate() {
        let mut current = Vec::with_capacity(right.len() + 1);
        current.push(left_index + 1);
        for ((right_char, diagonal), above) in
            right.iter().zip(&previous).zip(previous.iter().skip(1))
        {
            let substitution = diagonal + usize::from(left_char != *right_char);
            let beside = current.last().map_or(usize::MAX, |cell| cell + 1);
            current.push(substitution.min(above + 1).min(beside));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// Returns the candidates close enough to `name` to be suggested, best first.
///
/// A candidate is close when its edit distance is at most 2 or at most a third of the
/// name's length, whichever is larger; this catches typos without suggesting unrelated names.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let threshold = 2.max(name.chars().count() / 3);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= threshold)
        .collect();
    scored.sort();
    scored
        .into_iter()
        .map(|(_, candidate)| candidate.to_string())
        .collect()
}

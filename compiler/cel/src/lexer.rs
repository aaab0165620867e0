//! A hand-written lexer for CEL source text.
//!
//! The lexer works on bytes and never indexes past the end of the input; every literal
//! problem (bad escape, surrogate, out-of-range number) becomes an `InvalidLiteral`
//! diagnostic instead of a panic.

use crate::diagnostic::{CelDiagnostic, CelErrorKind, Span};

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// An identifier or keyword-like name (`true`, `false`, `null` and `in` included).
    Identifier(String),
    /// A back-quoted identifier such as `` `a-b` ``, allowed as a field name.
    QuotedIdentifier(String),
    /// An integer literal without sign; its magnitude may exceed `i64::MAX`.
    Int(u64),
    /// An unsigned integer literal (`1u`).
    Uint(u64),
    /// A floating-point literal.
    Double(f64),
    /// A string literal after escapes are processed.
    String(String),
    /// A bytes literal after escapes are processed.
    Bytes(Vec<u8>),
    /// Punctuation or an operator, such as `(` or `&&`.
    Symbol(&'static str),
    /// The end of the input.
    End,
}

/// A token with its location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) span: Span,
}

/// Symbols, longest first so that `&&` is preferred over a lone `&`.
const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", "{", "}", ".", ",", ":", "?", "+", "-",
    "*", "/", "%", "<", ">", "!",
];

/// Splits the source into tokens, or returns the first lexical error.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, CelDiagnostic> {
    let mut lexer = Lexer {
        source,
        bytes: source.as_bytes(),
        position: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    source: &'a str,
    bytes: &'a [u8],
    position: usize,
    tokens: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.position + offset).copied()
    }

    fn run(&mut self) -> Result<(), CelDiagnostic> {
        loop {
            self.skip_whitespace_and_comments();
            let start = self.position;
            let Some(byte) = self.peek_byte(0) else {
                self.tokens.push(Token {
                    kind: TokenKind::End,
                    span: Span::new(start, start),
                });
                return Ok(());
            };
            let kind = if byte.is_ascii_digit()
                || (byte == b'.' && self.peek_byte(1).is_some_and(|next| next.is_ascii_digit()))
            {
                self.lex_number()?
            } else if byte == b'"' || byte == b'\'' {
                self.lex_string(false, false)?
            } else if byte == b'`' {
                self.lex_quoted_identifier()?
            } else if byte.is_ascii_alphabetic() || byte == b'_' {
                if let Some(kind) = self.try_lex_prefixed_string()? {
                    kind
                } else {
                    self.lex_identifier()
                }
            } else if let Some(symbol) = SYMBOLS.iter().find(|symbol| {
                self.bytes
                    .get(self.position..)
                    .is_some_and(|rest| rest.starts_with(symbol.as_bytes()))
            }) {
                self.position += symbol.len();
                TokenKind::Symbol(symbol)
            } else {
                let character = self.source[self.position..].chars().next().unwrap_or('?');
                let end = self.position + character.len_utf8();
                let mut diagnostic = CelDiagnostic::new(
                    CelErrorKind::Syntax,
                    format!("unexpected character `{}`", character.escape_debug()),
                    Span::new(start, end),
                );
                if character == '=' {
                    diagnostic = diagnostic.with_help("use `==` to compare values");
                } else if character == '&' || character == '|' {
                    diagnostic = diagnostic.with_help(format!(
                        "use `{character}{character}` for logical operators"
                    ));
                }
                return Err(diagnostic);
            };
            self.tokens.push(Token {
                kind,
                span: Span::new(start, self.position),
            });
        }
    }

    fn skip_whitespace_and_comments(&mut self) {
        while let Some(byte) = self.peek_byte(0) {
            if matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
                self.position += 1;
            } else if byte == b'/' && self.peek_byte(1) == Some(b'/') {
                while let Some(comment_byte) = self.peek_byte(0) {
                    if comment_byte == b'\n' {
                        break;
                    }
                    self.position += 1;
                }
            } else {
                break;
            }
        }
    }

    fn lex_identifier(&mut self) -> TokenKind {
        let start = self.position;
        while self
            .peek_byte(0)
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            self.position += 1;
        }
        TokenKind::Identifier(self.source[start..self.position].to_string())
    }

    fn lex_quoted_identifier(&mut self) -> Result<TokenKind, CelDiagnostic> {
        let start = self.position;
        self.position += 1;
        let content_start = self.position;
        while let Some(byte) = self.peek_byte(0) {
            if byte == b'`' {
                let name = self.source[content_start..self.position].to_string();
                self.position += 1;
                let valid = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b' ')
                    });
                if !valid {
                    return Err(CelDiagnostic::new(
                        CelErrorKind::Syntax,
                        "invalid back-quoted identifier",
                        Span::new(start, self.position),
                    ));
                }
                return Ok(TokenKind::QuotedIdentifier(name));
            }
            if byte == b'\n' {
                break;
            }
            self.position += 1;
        }
        Err(CelDiagnostic::new(
            CelErrorKind::Syntax,
            "unterminated back-quoted identifier",
            Span::new(start, self.position),
        ))
    }

    /// Recognises `r"..."`, `b'...'`, `rb"..."` and similar prefixed literals.
    fn try_lex_prefixed_string(&mut self) -> Result<Option<TokenKind>, CelDiagnostic> {
        let first = self.peek_byte(0).map(|b| b.to_ascii_lowercase());
        let second = self.peek_byte(1).map(|b| b.to_ascii_lowercase());
        let third = self.peek_byte(2);
        let is_quote = |byte: Option<u8>| matches!(byte, Some(b'"') | Some(b'\''));
        let (prefix_length, raw, bytes) = match (first, second) {
            (Some(b'r'), Some(b'b')) | (Some(b'b'), Some(b'r')) if is_quote(third) => {
                (2, true, true)
            }
            (Some(b'r'), _) if is_quote(self.peek_byte(1)) => (1, true, false),
            (Some(b'b'), _) if is_quote(self.peek_byte(1)) => (1, false, true),
            _ => return Ok(None),
        };
        let start = self.position;
        self.position += prefix_length;
        let kind = self.lex_string(raw, bytes);
        match kind {
            Ok(kind) => Ok(Some(kind)),
            Err(mut diagnostic) => {
                diagnostic.span.start = diagnostic.span.start.min(start);
                Err(diagnostic)
            }
        }
    }

    fn lex_number(&mut self) -> Result<TokenKind, CelDiagnostic> {
        let start = self.position;
        // Hexadecimal integers are only integers, never doubles.
        if self.peek_byte(0) == Some(b'0') && matches!(self.peek_byte(1), Some(b'x' | b'X')) {
            self.position += 2;
            let digits_start = self.position;
            while self.peek_byte(0).is_some_and(|b| b.is_ascii_hexdigit()) {
                self.position += 1;
            }
            let digits = &self.source[digits_start..self.position];
            if digits.is_empty() {
                return Err(CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "hexadecimal literal has no digits",
                    Span::new(start, self.position),
                ));
            }
            let magnitude = u64::from_str_radix(digits, 16).map_err(|_| {
                CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "integer literal does not fit in 64 bits",
                    Span::new(start, self.position),
                )
            })?;
            return self.finish_integer(start, magnitude);
        }
        let mut is_double = false;
        while self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
            self.position += 1;
        }
        if self.peek_byte(0) == Some(b'.') && self.peek_byte(1).is_some_and(|b| b.is_ascii_digit())
        {
            is_double = true;
            self.position += 1;
            while self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
                self.position += 1;
            }
        }
        if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
            let sign_length = usize::from(matches!(self.peek_byte(1), Some(b'+' | b'-')));
            if self
                .peek_byte(1 + sign_length)
                .is_some_and(|b| b.is_ascii_digit())
            {
                is_double = true;
                self.position += 1 + sign_length;
                while self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
                    self.position += 1;
                }
            } else {
                return Err(CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "exponent has no digits",
                    Span::new(start, self.position + 1),
                ));
            }
        }
        let text = &self.source[start..self.position];
        if is_double {
            let value: f64 = text.parse().map_err(|_| {
                CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "malformed floating-point literal",
                    Span::new(start, self.position),
                )
            })?;
            if !value.is_finite() {
                return Err(CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "floating-point literal is out of range",
                    Span::new(start, self.position),
                ));
            }
            return Ok(TokenKind::Double(value));
        }
        let magnitude: u64 = text.parse().map_err(|_| {
            CelDiagnostic::new(
                CelErrorKind::InvalidLiteral,
                "integer literal does not fit in 64 bits",
                Span::new(start, self.position),
            )
        })?;
        self.finish_integer(start, magnitude)
    }

    fn finish_integer(&mut self, start: usize, magnitude: u64) -> Result<TokenKind, CelDiagnostic> {
        if matches!(self.peek_byte(0), Some(b'u' | b'U')) {
            self.position += 1;
            return Ok(TokenKind::Uint(magnitude));
        }
        if self
            .peek_byte(0)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(CelDiagnostic::new(
                CelErrorKind::InvalidLiteral,
                "unexpected character after a number",
                Span::new(start, self.position + 1),
            ));
        }
        Ok(TokenKind::Int(magnitude))
    }

    fn lex_string(&mut self, raw: bool, bytes: bool) -> Result<TokenKind, CelDiagnostic> {
        let literal_start = self.position;
        let Some(quote) = self.peek_byte(0) else {
            return Err(CelDiagnostic::new(
                CelErrorKind::Syntax,
                "expected a quote",
                Span::new(literal_start, literal_start),
            ));
        };
        let triple = self.peek_byte(1) == Some(quote) && self.peek_byte(2) == Some(quote);
        self.position += if triple { 3 } else { 1 };
        let mut output: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek_byte(0) else {
                return Err(CelDiagnostic::new(
                    CelErrorKind::Syntax,
                    "unterminated string literal",
                    Span::new(literal_start, self.position),
                ));
            };
            if byte == quote {
                if !triple {
                    self.position += 1;
                    break;
                }
                if self.peek_byte(1) == Some(quote) && self.peek_byte(2) == Some(quote) {
                    self.position += 3;
                    break;
                }
            }
            if !triple && (byte == b'\n' || byte == b'\r') {
                return Err(CelDiagnostic::new(
                    CelErrorKind::Syntax,
                    "unterminated string literal (a newline needs a triple-quoted string)",
                    Span::new(literal_start, self.position),
                ));
            }
            if byte == b'\\' && !raw {
                self.lex_escape(bytes, &mut output)?;
                continue;
            }
            output.push(byte);
            self.position += 1;
        }
        if bytes {
            return Ok(TokenKind::Bytes(output));
        }
        // The source is valid UTF-8 and escapes only ever push whole characters, so this
        // conversion succeeds; the error branch keeps the lexer panic-free regardless.
        String::from_utf8(output)
            .map(TokenKind::String)
            .map_err(|_| {
                CelDiagnostic::new(
                    CelErrorKind::InvalidLiteral,
                    "string literal is not valid UTF-8",
                    Span::new(literal_start, self.position),
                )
            })
    }

    fn lex_escape(&mut self, bytes: bool, output: &mut Vec<u8>) -> Result<(), CelDiagnostic> {
        let escape_start = self.position;
        self.position += 1;
        let Some(letter) = self.peek_byte(0) else {
            return Err(CelDiagnostic::new(
                CelErrorKind::Syntax,
                "unterminated escape sequence",
                Span::new(escape_start, self.position),
            ));
        };
        self.position += 1;
        let simple = match letter {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            b'`' => Some(b'`'),
            b'?' => Some(b'?'),
            _ => None,
        };
        if let Some(value) = simple {
            output.push(value);
            return Ok(());
        }
        let invalid = |lexer: &Self, message: &str| {
            CelDiagnostic::new(
                CelErrorKind::InvalidLiteral,
                message.to_string(),
                Span::new(escape_start, lexer.position.min(lexer.bytes.len())),
            )
        };
        let code_point: u32 = match letter {
            b'x' | b'X' => self
                .read_digits(2, 16)
                .ok_or_else(|| invalid(self, "`\\x` needs exactly two hexadecimal digits"))?,
            b'u' => self
                .read_digits(4, 16)
                .ok_or_else(|| invalid(self, "`\\u` needs exactly four hexadecimal digits"))?,
            b'U' => self
                .read_digits(8, 16)
                .ok_or_else(|| invalid(self, "`\\U` needs exactly eight hexadecimal digits"))?,
            b'0'..=b'3' => {
                self.position -= 1;
                self.read_digits(3, 8)
                    .ok_or_else(|| invalid(self, "octal escape needs exactly three octal digits"))?
            }
            _ => {
                let character = self.source[escape_start + 1..]
                    .chars()
                    .next()
                    .unwrap_or('?');
                self.position = escape_start + 1 + character.len_utf8();
                return Err(invalid(
                    self,
                    &format!("unknown escape sequence `\\{}`", character.escape_debug()),
                ));
            }
        };
        let is_byte_escape = matches!(letter, b'x' | b'X' | b'0'..=b'3');
        if bytes && is_byte_escape {
            // In bytes literals, hexadecimal and octal escapes denote single raw bytes.
            output.push(u8::try_from(code_point).unwrap_or(0));
            return Ok(());
        }
        let Some(character) = char::from_u32(code_point) else {
            return Err(invalid(
                self,
                "escape names a surrogate or a value beyond U+10FFFF, which is not a character",
            ));
        };
        let mut buffer = [0u8; 4];
        output.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
        Ok(())
    }

    fn read_digits(&mut self, count: usize, radix: u32) -> Option<u32> {
        let mut value: u32 = 0;
        for _ in 0..count {
            let digit = char::from(self.peek_byte(0)?).to_digit(radix)?;
            value = value.checked_mul(radix)?.checked_add(digit)?;
            self.position += 1;
        }
        Some(value)
    }
}

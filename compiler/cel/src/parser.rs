//! A recursive-descent parser for CEL with explicit limits.
//!
//! Recursion only happens for constructs that nest in the source (parentheses, lists,
//! maps, call arguments, the ternary's last operand); each such entry is counted, and the
//! height of every tree node is checked when it is built, so hostile input such as
//! 20,000 nested parentheses or a 50,000-long `a.b.c...` chain yields a `NestingTooDeep`
//! diagnostic long before the native stack is at risk. Chains of unary and binary
//! operators are parsed with loops, not recursion.
//!
//! In order: [`ParseLimits`] and the entry points (size and bracket pre-checks); the
//! private `Parser`'s token helpers and `enter`/`leave`/`node` limit checks; the grammar
//! from the ternary down to primaries, calls, structs and macros; the stack guard. One
//! file because every rule counts against the same private `Parser` state (depth,
//! comprehension nesting, node heights): one reading shows no recursive path skips a
//! limit, and that state stays private.

use crate::ast::{
    BinaryOp, Comprehension, ComprehensionKind, Expr, ExprKind, Literal, MapEntry, StructField,
    UnaryOp,
};
use crate::diagnostic::{CelDiagnostic, CelErrorKind, Span};
use crate::lexer::{Token, TokenKind, tokenize};

/// Limits that bound the work and the stack the parser (and later phases) may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// The deepest nesting allowed, counted in tree levels and in recursive parser entries.
    pub max_depth: usize,
    /// The most tree nodes allowed.
    pub max_nodes: usize,
    /// The longest source text allowed, in bytes.
    pub max_source_bytes: usize,
    /// The deepest nesting of comprehension macros allowed.
    pub max_comprehension_nesting: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_depth: 128,
            max_nodes: 10_000,
            max_source_bytes: 100_000,
            max_comprehension_nesting: 8,
        }
    }
}

/// Words CEL reserves; they may not be used as identifiers.
const RESERVED_WORDS: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Parses a CEL expression with the default limits.
pub fn parse(source: &str) -> Result<Expr, Vec<CelDiagnostic>> {
    parse_with_limits(source, &ParseLimits::default())
}

/// Parses a CEL expression with the given limits.
pub fn parse_with_limits(source: &str, limits: &ParseLimits) -> Result<Expr, Vec<CelDiagnostic>> {
    if source.len() > limits.max_source_bytes {
        return Err(vec![
            CelDiagnostic::new(
                CelErrorKind::ExpressionTooLarge,
                format!(
                    "the expression is {} bytes long; the limit is {} bytes",
                    source.len(),
                    limits.max_source_bytes
                ),
                Span::new(0, source.len()),
            )
            .with_help("keep assertions short; move large data into the tools themselves"),
        ]);
    }
    let tokens = match tokenize(source) {
        Ok(tokens) => tokens,
        Err(diagnostic) => return Err(vec![diagnostic]),
    };
    if let Some(span) = find_excessive_bracket_nesting(&tokens, limits.max_depth) {
        return Err(vec![nesting_too_deep(span, limits.max_depth)]);
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
        comprehension_nesting: 0,
        limits: limits.clone(),
        heights: Vec::new(),
    };
    let result = parser.parse_expr().and_then(|expr| {
        let token = parser.current();
        if token.kind == TokenKind::End {
            Ok(expr)
        } else {
            Err(parser.unexpected("the end of the expression"))
        }
    });
    result.map_err(|diagnostic| vec![parser.add_hyphen_help(*diagnostic)])
}

type ParseResult<T> = Result<T, Box<CelDiagnostic>>;

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    depth: usize,
    comprehension_nesting: usize,
    limits: ParseLimits,
    heights: Vec<usize>,
}

fn describe(kind: &TokenKind) -> String {
    match kind {
        TokenKind::Identifier(name) => format!("`{name}`"),
        TokenKind::QuotedIdentifier(name) => format!("`` `{name}` ``"),
        TokenKind::Int(value) => format!("number `{value}`"),
        TokenKind::Uint(value) => format!("number `{value}u`"),
        TokenKind::Double(value) => format!("number `{value}`"),
        TokenKind::String(_) => "a string".to_string(),
        TokenKind::Bytes(_) => "a bytes literal".to_string(),
        TokenKind::Symbol(symbol) => format!("`{symbol}`"),
        TokenKind::End => "the end of the expression".to_string(),
    }
}

impl Parser {
    fn current(&self) -> Token {
        self.tokens
            .get(self.position)
            .or_else(|| self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                kind: TokenKind::End,
                span: Span::default(),
            })
    }

    fn peek_kind(&self, offset: usize) -> Option<&TokenKind> {
        self.tokens
            .get(self.position + offset)
            .map(|token| &token.kind)
    }

    fn advance(&mut self) -> Token {
        let token = self.current();
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn at_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek_kind(0), Some(TokenKind::Symbol(found)) if *found == symbol)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if self.at_symbol(symbol) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> ParseResult<Span> {
        if self.at_symbol(symbol) {
            Ok(self.advance().span)
        } else {
            Err(self.unexpected(&format!("`{symbol}`")))
        }
    }

    fn unexpected(&self, expected: &str) -> Box<CelDiagnostic> {
        let token = self.current();
        let message = format!("expected {expected}, found {}", describe(&token.kind));
        Box::new(CelDiagnostic::new(
            CelErrorKind::Syntax,
            message,
            token.span,
        ))
    }

    /// Adds the `hr-kb` help when the source joins two identifiers with `-` and no spaces,
    /// since that is the usual cause of errors in names copied from older examples.
    fn add_hyphen_help(&self, mut diagnostic: CelDiagnostic) -> CelDiagnostic {
        if diagnostic.help.is_some() {
            return diagnostic;
        }
        for window in self.tokens.windows(3) {
            if let [left, middle, right] = window
                && let TokenKind::Identifier(left_name) = &left.kind
                && middle.kind == TokenKind::Symbol("-")
                && let TokenKind::Identifier(right_name) = &right.kind
                && left.span.end == middle.span.start
                && middle.span.end == right.span.start
            {
                diagnostic.help = Some(hyphen_help(left_name, right_name));
                diagnostic.secondary.push((
                    left.span.to(right.span),
                    "this is a subtraction".to_string(),
                ));
                return diagnostic;
            }
        }
        diagnostic
    }

    fn enter(&mut self) -> ParseResult<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            let span = self.current().span;
            return Err(Box::new(nesting_too_deep(span, self.limits.max_depth)));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Builds a node, enforcing the node-count and tree-height limits.
    fn node(&mut self, kind: ExprKind, span: Span) -> ParseResult<Expr> {
        let id = self.heights.len();
        if id >= self.limits.max_nodes {
            return Err(Box::new(CelDiagnostic::new(
                CelErrorKind::ExpressionTooLarge,
                format!(
                    "the expression has more than {} nodes",
                    self.limits.max_nodes
                ),
                span,
            )));
        }
        let provisional = Expr {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            kind,
            span,
        };
        let height = 1 + provisional
            .children()
            .iter()
            .map(|child| {
                usize::try_from(child.id)
                    .ok()
                    .and_then(|index| self.heights.get(index).copied())
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        if height > self.limits.max_depth {
            return Err(Box::new(nesting_too_deep(span, self.limits.max_depth)));
        }
        self.heights.push(height);
        Ok(provisional)
    }

    fn parse_expr(&mut self) -> ParseResult<Expr> {
        self.enter()?;
        let result = with_enough_stack(|| self.parse_conditional());
        self.leave();
        result
    }

    fn parse_conditional(&mut self) -> ParseResult<Expr> {
        let condition = self.parse_binary_level(0)?;
        if !self.eat_symbol("?") {
            return Ok(condition);
        }
        let if_true = self.parse_binary_level(0)?;
        self.expect_symbol(":")?;
        let if_false = self.parse_expr()?;
        let span = condition.span.to(if_false.span);
        self.node(
            ExprKind::Conditional {
                condition: Box::new(condition),
                if_true: Box::new(if_true),
                if_false: Box::new(if_false),
            },
            span,
        )
    }

    fn binary_operator_at(&self, level: usize) -> Option<BinaryOp> {
        let kind = self.peek_kind(0)?;
        let op = match kind {
            TokenKind::Symbol("||") => BinaryOp::Or,
            TokenKind::Symbol("&&") => BinaryOp::And,
            TokenKind::Symbol("==") => BinaryOp::Equal,
            TokenKind::Symbol("!=") => BinaryOp::NotEqual,
            TokenKind::Symbol("<") => BinaryOp::Less,
            TokenKind::Symbol("<=") => BinaryOp::LessEqual,
            TokenKind::Symbol(">") => BinaryOp::Greater,
            TokenKind::Symbol(">=") => BinaryOp::GreaterEqual,
            TokenKind::Identifier(name) if name == "in" => BinaryOp::In,
            TokenKind::Symbol("+") => BinaryOp::Add,
            TokenKind::Symbol("-") => BinaryOp::Subtract,
            TokenKind::Symbol("*") => BinaryOp::Multiply,
            TokenKind::Symbol("/") => BinaryOp::Divide,
            TokenKind::Symbol("%") => BinaryOp::Remainder,
            _ => return None,
        };
        let op_level = match op {
            BinaryOp::Or => 0,
            BinaryOp::And => 1,
            BinaryOp::Equal
            | BinaryOp::NotEqual
            | BinaryOp::Less
            | BinaryOp::LessEqual
            | BinaryOp::Greater
            | BinaryOp::GreaterEqual
            | BinaryOp::In => 2,
            BinaryOp::Add | BinaryOp::Subtract => 3,
            BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Remainder => 4,
        };
        (op_level == level).then_some(op)
    }

    /// Parses one precedence level of left-associative binary operators.
    ///
    /// The five levels are a fixed, small recursion; chains within a level are a loop.
    /// Chains of `&&` and `||` are built as balanced trees, because those operators are
    /// associative and long conjunctions are common in policies; a left-leaning tree
    /// would otherwise hit the depth limit after 128 conditions.
    fn parse_binary_level(&mut self, level: usize) -> ParseResult<Expr> {
        if level > 4 {
            return self.parse_unary();
        }
        let first = self.parse_binary_level(level + 1)?;
        if level <= 1 {
            let mut operands = vec![first];
            let mut operator_spans = Vec::new();
            while let Some(_op) = self.binary_operator_at(level) {
                operator_spans.push(self.advance().span);
                operands.push(self.parse_binary_level(level + 1)?);
            }
            let op = if level == 0 {
                BinaryOp::Or
            } else {
                BinaryOp::And
            };
            return self.build_balanced(op, operands, &operator_spans);
        }
        let mut left = first;
        while let Some(op) = self.binary_operator_at(level) {
            let op_span = self.advance().span;
            let right = self.parse_binary_level(level + 1)?;
            let span = left.span.to(right.span);
            left = self.node(
                ExprKind::Binary {
                    op,
                    op_span,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                span,
            )?;
        }
        Ok(left)
    }

    fn build_balanced(
        &mut self,
        op: BinaryOp,
        mut operands: Vec<Expr>,
        operator_spans: &[Span],
    ) -> ParseResult<Expr> {
        // Pairs are combined level by level, which yields a tree of logarithmic height
        // while keeping the left-to-right order of the operands.
        let mut span_index = 0;
        while operands.len() > 1 {
            let mut next_level = Vec::with_capacity(operands.len() / 2 + 1);
            let mut iterator = operands.into_iter();
            while let Some(left) = iterator.next() {
                match iterator.next() {
                    Some(right) => {
                        let op_span = operator_spans
                            .get(span_index)
                            .copied()
                            .unwrap_or(Span::new(left.span.end, right.span.start));
                        span_index += 1;
                        let span = left.span.to(right.span);
                        next_level.push(self.node(
                            ExprKind::Binary {
                                op,
                                op_span,
                                left: Box::new(left),
                                right: Box::new(right),
                            },
                            span,
                        )?);
                    }
                    None => next_level.push(left),
                }
            }
            operands = next_level;
        }
        operands
            .pop()
            .ok_or_else(|| self.unexpected("an expression"))
    }

    fn parse_unary(&mut self) -> ParseResult<Expr> {
        let mut operators: Vec<(UnaryOp, Span)> = Vec::new();
        loop {
            if self.at_symbol("!") {
                operators.push((UnaryOp::Not, self.advance().span));
            } else if self.at_symbol("-") {
                operators.push((UnaryOp::Negate, self.advance().span));
            } else {
                break;
            }
            if operators.len() > self.limits.max_depth {
                let span = self.current().span;
                return Err(Box::new(nesting_too_deep(span, self.limits.max_depth)));
            }
        }
        // A minus directly before a number literal belongs to the literal, so that
        // `-9223372036854775808` is the smallest int rather than an overflow.
        let negative_literal = matches!(operators.last(), Some((UnaryOp::Negate, _)))
            && matches!(
                self.peek_kind(0),
                Some(TokenKind::Int(_) | TokenKind::Double(_))
            );
        let mut operand = if negative_literal {
            let (_, minus_span) = operators
                .pop()
                .unwrap_or((UnaryOp::Negate, Span::default()));
            let primary = self.parse_number(Some(minus_span))?;
            self.parse_member_suffixes(primary)?
        } else {
            self.parse_member()?
        };
        while let Some((op, op_span)) = operators.pop() {
            let span = op_span.to(operand.span);
            operand = self.node(
                ExprKind::Unary {
                    op,
                    operand: Box::new(operand),
                },
                span,
            )?;
        }
        Ok(operand)
    }

    fn parse_number(&mut self, minus: Option<Span>) -> ParseResult<Expr> {
        let token = self.advance();
        let span = match minus {
            Some(minus_span) => minus_span.to(token.span),
            None => token.span,
        };
        let literal = match token.kind {
            TokenKind::Int(magnitude) => {
                let signed = if minus.is_some() {
                    0i128 - i128::from(magnitude)
                } else {
                    i128::from(magnitude)
                };
                match i64::try_from(signed) {
                    Ok(value) => Literal::Int(value),
                    Err(_) => {
                        return Err(Box::new(
                            CelDiagnostic::new(
                                CelErrorKind::InvalidLiteral,
                                "integer literal does not fit in a 64-bit signed int",
                                span,
                            )
                            .with_help("add a `u` suffix for an unsigned int, or use a double"),
                        ));
                    }
                }
            }
            TokenKind::Double(value) => {
                Literal::Double(if minus.is_some() { -value } else { value })
            }
            TokenKind::Uint(value) => Literal::Uint(value),
            _ => return Err(self.unexpected("a number")),
        };
        self.node(ExprKind::Literal(literal), span)
    }

    fn parse_member(&mut self) -> ParseResult<Expr> {
        let primary = self.parse_primary()?;
        self.parse_member_suffixes(primary)
    }

    fn parse_member_suffixes(&mut self, mut expr: Expr) -> ParseResult<Expr> {
        loop {
            if self.at_symbol(".") {
                self.advance();
                let name_token = self.advance();
                let field = match name_token.kind {
                    TokenKind::Identifier(name) | TokenKind::QuotedIdentifier(name) => name,
                    other => {
                        return Err(Box::new(CelDiagnostic::new(
                            CelErrorKind::Syntax,
                            format!(
                                "expected a field name after `.`, found {}",
                                describe(&other)
                            ),
                            name_token.span,
                        )));
                    }
                };
                if self.at_symbol("(") {
                    expr = self.parse_call(Some(expr), field, name_token.span)?;
                } else {
                    let span = expr.span.to(name_token.span);
                    expr = self.node(
                        ExprKind::Select {
                            operand: Box::new(expr),
                            field,
                            field_span: name_token.span,
                        },
                        span,
                    )?;
                }
            } else if self.at_symbol("[") {
                self.advance();
                let index = self.parse_expr()?;
                let close = self.expect_symbol("]")?;
                let span = expr.span.to(close);
                expr = self.node(
                    ExprKind::Index {
                        operand: Box::new(expr),
                        index: Box::new(index),
                    },
                    span,
                )?;
            } else if self.at_symbol("{") && expr.qualified_name().is_some() {
                let type_name = expr.qualified_name().unwrap_or_default();
                expr = self.parse_struct(type_name, expr.span)?;
            } else {
                return Ok(expr);
            }
        }
    }

    fn parse_primary(&mut self) -> ParseResult<Expr> {
        let token = self.current();
        match &token.kind {
            TokenKind::Int(_) | TokenKind::Uint(_) | TokenKind::Double(_) => {
                self.parse_number(None)
            }
            TokenKind::String(value) => {
                let value = value.clone();
                self.advance();
                self.node(ExprKind::Literal(Literal::String(value)), token.span)
            }
            TokenKind::Bytes(value) => {
                let value = value.clone();
                self.advance();
                self.node(ExprKind::Literal(Literal::Bytes(value)), token.span)
            }
            TokenKind::Identifier(name) => {
                let name = name.clone();
                self.advance();
                self.parse_identifier_primary(name, token.span, false)
            }
            TokenKind::Symbol(".") => {
                self.advance();
                let name_token = self.advance();
                match name_token.kind {
                    TokenKind::Identifier(name) => {
                        self.parse_identifier_primary(name, token.span.to(name_token.span), true)
                    }
                    other => Err(Box::new(CelDiagnostic::new(
                        CelErrorKind::Syntax,
                        format!(
                            "expected a name after a leading `.`, found {}",
                            describe(&other)
                        ),
                        name_token.span,
                    ))),
                }
            }
            TokenKind::Symbol("(") => {
                self.advance();
                let inner = self.parse_expr()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            TokenKind::Symbol("[") => {
                self.advance();
                self.enter()?;
                let elements = self.parse_list_elements("]");
                self.leave();
                let elements = elements?;
                let close = self.expect_symbol("]")?;
                self.node(ExprKind::List(elements), token.span.to(close))
            }
            TokenKind::Symbol("{") => {
                self.advance();
                self.enter()?;
                let entries = self.parse_map_entries();
                self.leave();
                let entries = entries?;
                let close = self.expect_symbol("}")?;
                self.node(ExprKind::Map(entries), token.span.to(close))
            }
            TokenKind::Symbol(symbol) => {
                let mut diagnostic = CelDiagnostic::new(
                    CelErrorKind::Syntax,
                    format!("unexpected `{symbol}`; expected an expression"),
                    token.span,
                );
                if *symbol == "-" || *symbol == "+" {
                    diagnostic = diagnostic.with_help("an operator needs an operand on each side");
                }
                Err(Box::new(diagnostic))
            }
            TokenKind::QuotedIdentifier(_) => Err(Box::new(CelDiagnostic::new(
                CelErrorKind::Syntax,
                "a back-quoted name may only follow `.` as a field name",
                token.span,
            ))),
            TokenKind::End => Err(Box::new(CelDiagnostic::new(
                CelErrorKind::Syntax,
                "expected an expression, found the end of the expression",
                token.span,
            ))),
        }
    }

    fn parse_identifier_primary(
        &mut self,
        name: String,
        span: Span,
        leading_dot: bool,
    ) -> ParseResult<Expr> {
        match name.as_str() {
            "true" if !leading_dot => {
                return self.node(ExprKind::Literal(Literal::Bool(true)), span);
            }
            "false" if !leading_dot => {
                return self.node(ExprKind::Literal(Literal::Bool(false)), span);
            }
            "null" if !leading_dot => return self.node(ExprKind::Literal(Literal::Null), span),
            "in" | "true" | "false" | "null" => {
                return Err(Box::new(CelDiagnostic::new(
                    CelErrorKind::Syntax,
                    format!("`{name}` cannot be used as a name"),
                    span,
                )));
            }
            _ => {}
        }
        if RESERVED_WORDS.contains(&name.as_str()) {
            return Err(Box::new(
                CelDiagnostic::new(
                    CelErrorKind::ReservedWord,
                    format!("`{name}` is a reserved word in CEL and cannot be used as a name"),
                    span,
                )
                .with_help(format!(
                    "to reach a field called `{name}`, write `x['{name}']`"
                )),
            ));
        }
        let full_name = if leading_dot {
            format!(".{name}")
        } else {
            name
        };
        if self.at_symbol("(") {
            return self.parse_call(None, full_name, span);
        }
        self.node(ExprKind::Ident(full_name), span)
    }

    fn parse_list_elements(&mut self, close: &str) -> ParseResult<Vec<Expr>> {
        let mut elements = Vec::new();
        while !self.at_symbol(close) {
            elements.push(self.parse_expr()?);
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(elements)
    }

    fn parse_map_entries(&mut self) -> ParseResult<Vec<MapEntry>> {
        let mut entries = Vec::new();
        while !self.at_symbol("}") {
            let key = self.parse_expr()?;
            self.expect_symbol(":")?;
            let value = self.parse_expr()?;
            entries.push(MapEntry { key, value });
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(entries)
    }

    fn parse_struct(&mut self, type_name: String, name_span: Span) -> ParseResult<Expr> {
        self.expect_symbol("{")?;
        self.enter()?;
        let fields = self.parse_struct_fields();
        self.leave();
        let fields = fields?;
        let close = self.expect_symbol("}")?;
        self.node(ExprKind::Struct { type_name, fields }, name_span.to(close))
    }

    fn parse_struct_fields(&mut self) -> ParseResult<Vec<StructField>> {
        let mut fields = Vec::new();
        while !self.at_symbol("}") {
            let name_token = self.advance();
            let name = match name_token.kind {
                TokenKind::Identifier(name) | TokenKind::QuotedIdentifier(name) => name,
                other => {
                    return Err(Box::new(CelDiagnostic::new(
                        CelErrorKind::Syntax,
                        format!("expected a field name, found {}", describe(&other)),
                        name_token.span,
                    )));
                }
            };
            self.expect_symbol(":")?;
            let value = self.parse_expr()?;
            fields.push(StructField {
                name,
                name_span: name_token.span,
                value,
            });
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(fields)
    }

    fn parse_call(
        &mut self,
        target: Option<Expr>,
        function: String,
        function_span: Span,
    ) -> ParseResult<Expr> {
        let open = self.expect_symbol("(")?;
        let macro_kind = if target.is_some() {
            match function.as_str() {
                "all" => Some(ComprehensionKind::All),
                "exists" => Some(ComprehensionKind::Exists),
                "exists_one" | "existsOne" => Some(ComprehensionKind::ExistsOne),
                "transformList" => Some(ComprehensionKind::TransformList),
                "transformMap" => Some(ComprehensionKind::TransformMap),
                "map" => Some(ComprehensionKind::Map),
                "filter" => Some(ComprehensionKind::Filter),
                _ => None,
            }
        } else {
            None
        };
        if macro_kind.is_some() {
            self.comprehension_nesting += 1;
            if self.comprehension_nesting > self.limits.max_comprehension_nesting {
                return Err(Box::new(CelDiagnostic::new(
                    CelErrorKind::ComprehensionNestingTooDeep,
                    format!(
                        "comprehension macros are nested more than {} deep",
                        self.limits.max_comprehension_nesting
                    ),
                    function_span,
                )));
            }
        }
        self.enter()?;
        let args = self.parse_list_elements(")");
        self.leave();
        if macro_kind.is_some() {
            self.comprehension_nesting = self.comprehension_nesting.saturating_sub(1);
        }
        let args = args?;
        let close = self.expect_symbol(")")?;
        let start_span = target.as_ref().map_or(function_span, |target| target.span);
        let span = start_span.to(close);
        if target.is_none() && function == "has" {
            return self.build_has(args, span, open);
        }
        if let Some(kind) = macro_kind {
            return self.build_comprehension(kind, target, args, span, function_span.to(close));
        }
        self.node(
            ExprKind::Call {
                target: target.map(Box::new),
                function,
                function_span,
                args,
            },
            span,
        )
    }

    /// Builds a comprehension macro node after checking its argument shape.
    fn build_comprehension(
        &mut self,
        kind: ComprehensionKind,
        target: Option<Expr>,
        mut args: Vec<Expr>,
        span: Span,
        call_span: Span,
    ) -> ParseResult<Expr> {
        use ComprehensionKind as K;
        // The number of iteration variables follows from the macro and its arity.
        let (variable_count, expected) = match (kind, args.len()) {
            (K::All | K::Exists | K::ExistsOne, 2) => (1, ""),
            (K::All | K::Exists | K::ExistsOne, 3) => (2, ""),
            (K::All | K::Exists | K::ExistsOne, _) => (0, "2 or 3"),
            (K::Map, 2 | 3) => (1, ""),
            (K::Map, _) => (0, "2 or 3"),
            (K::Filter, 2) => (1, ""),
            (K::Filter, _) => (0, "2"),
            (K::TransformList | K::TransformMap, 3 | 4) => (2, ""),
            (K::TransformList | K::TransformMap, _) => (0, "3 or 4"),
        };
        if variable_count == 0 {
            return Err(Box::new(
                CelDiagnostic::new(
                    CelErrorKind::WrongArgumentCount,
                    format!(
                        "the `{}` macro takes {expected} arguments, but {} were given",
                        kind.name(),
                        args.len()
                    ),
                    call_span,
                )
                .with_help(format!("write `{}(x, <condition on x>)`", kind.name())),
            ));
        }
        let mut variables: Vec<(String, Span)> = Vec::new();
        for variable_expr in args.drain(..variable_count.min(args.len())) {
            match &variable_expr.kind {
                ExprKind::Ident(name) if !name.starts_with('.') => {
                    variables.push((name.clone(), variable_expr.span));
                }
                _ => {
                    return Err(Box::new(
                        CelDiagnostic::new(
                            CelErrorKind::InvalidMacro,
                            format!(
                                "the first argument of `{}` must be a simple variable name",
                                kind.name()
                            ),
                            variable_expr.span,
                        )
                        .with_help(format!("write `{}(x, <condition on x>)`", kind.name())),
                    ));
                }
            }
        }
        let body = args.pop();
        let filter = args.pop();
        let mut variables = variables.into_iter();
        let (Some(body), Some(range), Some((variable, variable_span))) =
            (body, target, variables.next())
        else {
            return Err(self.unexpected("macro arguments"));
        };
        self.node(
            ExprKind::Comprehension(Box::new(Comprehension {
                kind,
                range,
                variable,
                variable_span,
                second_variable: variables.next(),
                filter,
                body,
            })),
            span,
        )
    }

    fn build_has(&mut self, mut args: Vec<Expr>, span: Span, open: Span) -> ParseResult<Expr> {
        if args.len() != 1 {
            return Err(Box::new(
                CelDiagnostic::new(
                    CelErrorKind::WrongArgumentCount,
                    format!(
                        "`has` takes exactly one argument, but {} were given",
                        args.len()
                    ),
                    span,
                )
                .with_help("write `has(a.b)` to test whether field `b` of `a` is present"),
            ));
        }
        let argument = args.remove(0);
        match argument.kind {
            ExprKind::Select {
                operand,
                field,
                field_span,
            } => self.node(
                ExprKind::Has {
                    operand,
                    field,
                    field_span,
                },
                span,
            ),
            _ => Err(Box::new(
                CelDiagnostic::new(
                    CelErrorKind::InvalidMacro,
                    "the argument of `has` must be a field selection such as `a.b`",
                    argument.span,
                )
                .with_help("write `has(a.b)` to test whether field `b` of `a` is present")
                .with_secondary(open, "`has` macro called here"),
            )),
        }
    }
}

/// The stack that must remain before a recursive step; below it, a new segment is used.
const STACK_RED_ZONE: usize = 128 * 1024;
/// The size of each additional stack segment.
const STACK_SEGMENT: usize = 4 * 1024 * 1024;

/// Runs a recursive step, first moving to a fresh stack segment when little remains.
///
/// Recursion depth is already bounded by `ParseLimits::max_depth`; this guards the
/// bounded recursion itself against small thread stacks in unoptimised builds.
pub fn with_enough_stack<T>(step: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, step)
}

/// Finds the first place where brackets nest deeper than the limit, before any
/// recursive parsing, so that extremely deep input is rejected in linear time.
fn find_excessive_bracket_nesting(tokens: &[Token], max_depth: usize) -> Option<Span> {
    let mut depth: usize = 0;
    for token in tokens {
        match token.kind {
            TokenKind::Symbol("(" | "[" | "{") => {
                depth += 1;
                if depth > max_depth {
                    return Some(token.span);
                }
            }
            TokenKind::Symbol(")" | "]" | "}") => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn nesting_too_deep(span: Span, max_depth: usize) -> CelDiagnostic {
    CelDiagnostic::new(
        CelErrorKind::NestingTooDeep,
        format!("the expression nests more than {max_depth} levels deep"),
        span,
    )
    .with_help("split the condition into simpler parts")
}

/// The help text for an identifier joined to another by `-` with no spaces.
pub(crate) fn hyphen_help(left: &str, right: &str) -> String {
    format!(
        "in CEL `{left}-{right}` is `{left}` minus `{right}`; OpenAgentSpec names use `_`: write `{left}_{right}`"
    )
}

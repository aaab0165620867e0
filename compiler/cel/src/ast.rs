//! The abstract syntax tree of a parsed CEL expression.
//!
//! Operators get their own node kinds rather than CEL's internal `_+_` call names,
//! because the checker and the interpreter both match on them and typed variants make
//! those matches exhaustive. Macros are kept as dedicated nodes instead of being expanded
//! into general comprehensions, so diagnostics can talk about `all`/`exists` by name.

use crate::diagnostic::Span;

/// One node of a CEL expression with its location in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// A number unique within one parsed expression, assigned in creation order.
    pub id: u32,
    /// What the node is.
    pub kind: ExprKind,
    /// Where the node is in the source text.
    pub span: Span,
}

/// A literal constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed 64-bit integer such as `42` or `-7`.
    Int(i64),
    /// An unsigned 64-bit integer such as `42u`.
    Uint(u64),
    /// A double such as `1.5` or `1e3`.
    Double(f64),
    /// A string literal after escape processing.
    String(String),
    /// A bytes literal after escape processing.
    Bytes(Vec<u8>),
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// Logical negation `!`.
    Not,
    /// Arithmetic negation `-`.
    Negate,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `||`.
    Or,
    /// `&&`.
    And,
    /// `==`.
    Equal,
    /// `!=`.
    NotEqual,
    /// `<`.
    Less,
    /// `<=`.
    LessEqual,
    /// `>`.
    Greater,
    /// `>=`.
    GreaterEqual,
    /// `in`.
    In,
    /// `+`.
    Add,
    /// `-`.
    Subtract,
    /// `*`.
    Multiply,
    /// `/`.
    Divide,
    /// `%`.
    Remainder,
}

impl BinaryOp {
    /// Whether the operator is a comparison or `in`, whose result is a boolean.
    pub fn is_relation(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::NotEqual
                | BinaryOp::Less
                | BinaryOp::LessEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterEqual
                | BinaryOp::In
        )
    }

    /// Returns the operator as it is written in CEL source.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Equal => "==",
            BinaryOp::NotEqual => "!=",
            BinaryOp::Less => "<",
            BinaryOp::LessEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterEqual => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Remainder => "%",
        }
    }
}

/// Which comprehension macro a [`Comprehension`] node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComprehensionKind {
    /// `range.all(x, predicate)`.
    All,
    /// `range.exists(x, predicate)`.
    Exists,
    /// `range.exists_one(x, predicate)`.
    ExistsOne,
    /// `range.map(x, transform)` or `range.map(x, filter, transform)`.
    Map,
    /// `range.filter(x, predicate)`.
    Filter,
    /// `range.transformList(i, v, [filter,] transform)`: a list of transformed entries.
    TransformList,
    /// `range.transformMap(k, v, [filter,] transform)`: a map from each key to its
    /// transformed value.
    TransformMap,
}

impl ComprehensionKind {
    /// Returns the macro's name as written in CEL source.
    pub fn name(self) -> &'static str {
        match self {
            ComprehensionKind::All => "all",
            ComprehensionKind::Exists => "exists",
            ComprehensionKind::ExistsOne => "exists_one",
            ComprehensionKind::Map => "map",
            ComprehensionKind::Filter => "filter",
            ComprehensionKind::TransformList => "transformList",
            ComprehensionKind::TransformMap => "transformMap",
        }
    }
}

/// A comprehension macro such as `list.all(x, x > 0)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comprehension {
    /// Which macro this is.
    pub kind: ComprehensionKind,
    /// The list or map iterated over.
    pub range: Expr,
    /// The name bound to each element (or each key of a map); in the two-variable forms
    /// (`all(i, v, p)`), the name bound to each index (or key).
    pub variable: String,
    /// Where the variable name is written.
    pub variable_span: Span,
    /// In the two-variable forms, the name bound to each element (or value) and where it
    /// is written.
    pub second_variable: Option<(String, Span)>,
    /// For the three-argument `map`, the filter applied before the transform.
    pub filter: Option<Expr>,
    /// The predicate (all, exists, exists_one, filter) or the transform (map).
    pub body: Expr,
}

/// One `key: value` entry of a map literal.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The key expression.
    pub key: Expr,
    /// The value expression.
    pub value: Expr,
}

/// One `field: value` initializer of a message construction.
#[derive(Debug, Clone, PartialEq)]
pub struct StructField {
    /// The field name.
    pub name: String,
    /// Where the field name is written.
    pub name_span: Span,
    /// The value expression.
    pub value: Expr,
}

/// The kinds of expression node.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A constant.
    Literal(Literal),
    /// A variable name; a name written with a leading dot keeps the dot (`.a`).
    Ident(String),
    /// Field selection `operand.field`.
    Select {
        /// The object selected from.
        operand: Box<Expr>,
        /// The field name.
        field: String,
        /// Where the field name is written.
        field_span: Span,
    },
    /// The `has(operand.field)` macro: whether the field is present.
    Has {
        /// The object tested.
        operand: Box<Expr>,
        /// The field tested.
        field: String,
        /// Where the field name is written.
        field_span: Span,
    },
    /// A global call `f(args)` or a member call `target.f(args)`.
    Call {
        /// The receiver of a member call.
        target: Option<Box<Expr>>,
        /// The function name, qualified with dots for namespaced global functions.
        function: String,
        /// Where the function name is written.
        function_span: Span,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// A unary operator.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Where the operator is written.
        op_span: Span,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// `condition ? if_true : if_false`.
    Conditional {
        /// The condition.
        condition: Box<Expr>,
        /// The value when the condition is true.
        if_true: Box<Expr>,
        /// The value when the condition is false.
        if_false: Box<Expr>,
    },
    /// Indexing `operand[index]`.
    Index {
        /// The list or map indexed.
        operand: Box<Expr>,
        /// The index or key.
        index: Box<Expr>,
    },
    /// A list literal `[a, b]`.
    List(Vec<Expr>),
    /// A map literal `{k: v}`.
    Map(Vec<MapEntry>),
    /// A message construction `Name{field: value}`.
    Struct {
        /// The message type name, possibly qualified.
        type_name: String,
        /// The field initializers.
        fields: Vec<StructField>,
    },
    /// A comprehension macro.
    Comprehension(Box<Comprehension>),
}

impl Expr {
    /// Returns the direct children of this node, in source order.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Ident(_) => Vec::new(),
            ExprKind::Select { operand, .. } | ExprKind::Has { operand, .. } => {
                vec![operand.as_ref()]
            }
            ExprKind::Call { target, args, .. } => {
                let mut children: Vec<&Expr> = Vec::with_capacity(args.len() + 1);
                if let Some(target) = target {
                    children.push(target);
                }
                children.extend(args.iter());
                children
            }
            ExprKind::Unary { operand, .. } => vec![operand.as_ref()],
            ExprKind::Binary { left, right, .. } => vec![left.as_ref(), right.as_ref()],
            ExprKind::Conditional {
                condition,
                if_true,
                if_false,
            } => vec![condition.as_ref(), if_true.as_ref(), if_false.as_ref()],
            ExprKind::Index { operand, index } => vec![operand.as_ref(), index.as_ref()],
            ExprKind::List(elements) => elements.iter().collect(),
            ExprKind::Map(entries) => entries
                .iter()
                .flat_map(|entry| [&entry.key, &entry.value])
                .collect(),
            ExprKind::Struct { fields, .. } => fields.iter().map(|field| &field.value).collect(),
            ExprKind::Comprehension(comprehension) => {
                let mut children = vec![&comprehension.range];
                if let Some(filter) = &comprehension.filter {
                    children.push(filter);
                }
                children.push(&comprehension.body);
                children
            }
        }
    }

    /// Returns the dotted name this expression spells when it is a chain of plain
    /// identifiers and field selections (`a.b.c`), which may name a qualified variable.
    pub fn qualified_name(&self) -> Option<String> {
        match &self.kind {
            ExprKind::Ident(name) => Some(name.clone()),
            ExprKind::Select { operand, field, .. } => {
                let mut prefix = operand.qualified_name()?;
                prefix.push('.');
                prefix.push_str(field);
                Some(prefix)
            }
            _ => None,
        }
    }
}

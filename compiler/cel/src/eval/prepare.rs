//! Preparing an expression for evaluation: the prepared node tree of a [`Program`], and
//! the pass that builds it from an [`Expr`].
//!
//! [`Program`]: super::Program

use std::sync::Arc;

use crate::ast::{BinaryOp, ComprehensionKind, Expr, ExprKind, Literal, UnaryOp};
use crate::checker::type_name_identifier;
use crate::parser::with_enough_stack;
use crate::value::Value;

use super::{EvalError, compile_regex};

/// One field of a [`Node::Path`], with an inline cache of where the field was found
/// last time. Objects of one shape (the entries of a history list, say) keep their keys
/// at the same positions, so after the first lookup each step is one comparison.
#[derive(Debug)]
pub(super) struct PathField {
    pub(super) name: Box<str>,
    pub(super) hint: std::sync::atomic::AtomicU32,
}

impl Clone for PathField {
    fn clone(&self) -> Self {
        PathField {
            name: self.name.clone(),
            hint: std::sync::atomic::AtomicU32::new(
                self.hint.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

/// One node of a prepared expression.
#[derive(Debug, Clone)]
pub(super) enum Node {
    /// A value known in advance: a literal, or a list literal of constants; `steps` is
    /// the number of expression nodes it stands for.
    Const { value: Value, steps: u64 },
    /// A comprehension variable: how many bindings out from the innermost one.
    Local(usize),
    /// A chain of field selections from a comprehension variable (`x.a.b`), walked
    /// without copying; it stands for `fields.len() + 1` expression nodes.
    Path {
        position: usize,
        fields: Box<[PathField]>,
    },
    /// A name that is not a comprehension variable, resolved in the activation.
    Global(Box<GlobalName>),
    /// Field selection; `qualified` is set when the selection chain is rooted at a name
    /// that is not a comprehension variable, so that it may spell a qualified variable.
    Select {
        operand: Box<Node>,
        field: Box<str>,
        qualified: Option<Box<QualifiedName>>,
    },
    /// `has(operand.field)`.
    Has { operand: Box<Node>, field: Box<str> },
    /// A function call.
    Call(Box<Call>),
    /// A unary operator.
    Unary { op: UnaryOp, operand: Box<Node> },
    /// `&&` or `||`.
    Logical {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// Any other binary operator.
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `condition ? if_true : if_false`.
    Conditional(Box<[Node; 3]>),
    /// `operand[index]`.
    Index {
        operand: Box<Node>,
        index: Box<Node>,
    },
    /// A list literal with some non-constant element.
    List(Box<[Node]>),
    /// A map literal.
    Map(Box<[(Node, Node)]>),
    /// A message construction, which is not supported.
    Struct(Box<str>),
    /// A comprehension macro.
    Comprehension(Box<PreparedComprehension>),
}

#[derive(Debug, Clone)]
pub(super) struct GlobalName {
    /// The name as written (a leading dot kept).
    pub(super) name: Box<str>,
    /// The name without its leading dot.
    pub(super) bare: Box<str>,
    /// The type value the name stands for when it names no variable, if it is a type.
    pub(super) type_value: Option<Value>,
}

#[derive(Debug, Clone)]
pub(super) struct QualifiedName {
    /// The identifier at the root of the chain.
    pub(super) root: Box<str>,
    /// The whole chain as a dotted name.
    pub(super) qualified: Box<str>,
    /// The dotted name's first segment.
    pub(super) first_segment: Box<str>,
    /// Whether that first segment is a comprehension variable in scope.
    pub(super) first_segment_scoped: bool,
    /// The type value the dotted name stands for, if it names a type.
    pub(super) type_value: Option<Value>,
}

/// A function dispatch chosen when the program is prepared; anything else goes through
/// the general lookup by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dispatch {
    General,
    Size,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) function: Box<str>,
    pub(super) dispatch: Dispatch,
    pub(super) has_target: bool,
    /// The target (for a member call) followed by the arguments.
    pub(super) args: Box<[Node]>,
    /// For `matches` with a literal pattern: the pattern compiled once.
    pub(super) regex: Option<Result<regex::Regex, EvalError>>,
}

#[derive(Debug, Clone)]
pub(super) struct PreparedComprehension {
    pub(super) kind: ComprehensionKind,
    pub(super) range: Node,
    pub(super) two_variables: bool,
    pub(super) filter: Option<Node>,
    pub(super) body: Node,
}

fn boxed(expr: &Expr, scopes: &mut Vec<String>) -> Box<Node> {
    Box::new(prepare(expr, scopes))
}

/// Whether `name` is a comprehension variable in scope, and how far out.
fn scope_position(scopes: &[String], name: &str) -> Option<usize> {
    scopes.iter().rev().position(|scoped| scoped == name)
}

/// Prepares one expression node; `scopes` holds the comprehension variables in scope,
/// innermost last.
pub(super) fn prepare(expr: &Expr, scopes: &mut Vec<String>) -> Node {
    with_enough_stack(|| prepare_kind(expr, scopes))
}

fn prepare_kind(expr: &Expr, scopes: &mut Vec<String>) -> Node {
    match &expr.kind {
        ExprKind::Literal(literal) => Node::Const {
            value: match literal {
                Literal::Null => Value::Null,
                Literal::Bool(flag) => Value::Bool(*flag),
                Literal::Int(number) => Value::Int(*number),
                Literal::Uint(number) => Value::Uint(*number),
                Literal::Double(number) => Value::Double(*number),
                Literal::String(text) => Value::String(Arc::from(text.as_str())),
                Literal::Bytes(bytes) => Value::Bytes(Arc::from(bytes.as_slice())),
            },
            steps: 1,
        },
        ExprKind::Ident(name) => match scope_position(scopes, name) {
            Some(position) => Node::Local(position),
            None => {
                let bare = name.trim_start_matches('.');
                Node::Global(Box::new(GlobalName {
                    name: name.as_str().into(),
                    bare: bare.into(),
                    type_value: type_name_identifier(bare).then(|| Value::Type(Arc::from(bare))),
                }))
            }
        },
        ExprKind::Select { operand, field, .. } => {
            if let Some(path) = local_path(expr, scopes) {
                return path;
            }
            let qualified = qualified_name(expr, scopes).map(Box::new);
            Node::Select {
                operand: boxed(operand, scopes),
                field: field.as_str().into(),
                qualified,
            }
        }
        ExprKind::Has { operand, field, .. } => Node::Has {
            operand: boxed(operand, scopes),
            field: field.as_str().into(),
        },
        ExprKind::Call {
            target,
            function,
            args,
            ..
        } => {
            let mut nodes = Vec::with_capacity(args.len() + 1);
            if let Some(target) = target {
                nodes.push(prepare(target, scopes));
            }
            for argument in args {
                nodes.push(prepare(argument, scopes));
            }
            let dispatch = match (function.as_str(), nodes.len()) {
                ("size", 1) => Dispatch::Size,
                ("contains", 2) => Dispatch::Contains,
                ("startsWith", 2) => Dispatch::StartsWith,
                ("endsWith", 2) => Dispatch::EndsWith,
                ("matches", 2) => Dispatch::Matches,
                _ => Dispatch::General,
            };
            let regex = match (dispatch, nodes.last()) {
                (
                    Dispatch::Matches,
                    Some(Node::Const {
                        value: Value::String(pattern),
                        ..
                    }),
                ) => Some(compile_regex(pattern)),
                _ => None,
            };
            Node::Call(Box::new(Call {
                function: function.as_str().into(),
                dispatch,
                has_target: target.is_some(),
                args: nodes.into_boxed_slice(),
                regex,
            }))
        }
        ExprKind::Unary { op, operand } => Node::Unary {
            op: *op,
            operand: boxed(operand, scopes),
        },
        ExprKind::Binary {
            op, left, right, ..
        } => {
            let left = boxed(left, scopes);
            let right = boxed(right, scopes);
            if matches!(op, BinaryOp::And | BinaryOp::Or) {
                Node::Logical {
                    op: *op,
                    left,
                    right,
                }
            } else {
                Node::Binary {
                    op: *op,
                    left,
                    right,
                }
            }
        }
        ExprKind::Conditional {
            condition,
            if_true,
            if_false,
        } => Node::Conditional(Box::new([
            prepare(condition, scopes),
            prepare(if_true, scopes),
            prepare(if_false, scopes),
        ])),
        ExprKind::Index { operand, index } => Node::Index {
            operand: boxed(operand, scopes),
            index: boxed(index, scopes),
        },
        ExprKind::List(elements) => {
            let nodes: Vec<Node> = elements
                .iter()
                .map(|element| prepare(element, scopes))
                .collect();
            // A list of constants is built once; it still counts the steps of its nodes.
            let mut steps: u64 = 1;
            let mut values = Vec::with_capacity(nodes.len());
            for node in &nodes {
                match node {
                    Node::Const {
                        value,
                        steps: element_steps,
                    } => {
                        steps = steps.saturating_add(*element_steps);
                        values.push(value.clone());
                    }
                    _ => return Node::List(nodes.into_boxed_slice()),
                }
            }
            Node::Const {
                value: Value::List(Arc::from(values)),
                steps,
            }
        }
        ExprKind::Map(entries) => Node::Map(
            entries
                .iter()
                .map(|entry| (prepare(&entry.key, scopes), prepare(&entry.value, scopes)))
                .collect(),
        ),
        ExprKind::Struct { type_name, .. } => Node::Struct(type_name.as_str().into()),
        ExprKind::Comprehension(comprehension) => {
            let range = prepare(&comprehension.range, scopes);
            let scope_length = scopes.len();
            scopes.push(comprehension.variable.clone());
            if let Some((second, _)) = &comprehension.second_variable {
                scopes.push(second.clone());
            }
            let filter = comprehension
                .filter
                .as_ref()
                .map(|filter| prepare(filter, scopes));
            let body = prepare(&comprehension.body, scopes);
            scopes.truncate(scope_length);
            Node::Comprehension(Box::new(PreparedComprehension {
                kind: comprehension.kind,
                range,
                two_variables: comprehension.second_variable.is_some(),
                filter,
                body,
            }))
        }
    }
}

/// A selection chain `x.a.b` rooted at a comprehension variable, as one node.
fn local_path(expr: &Expr, scopes: &[String]) -> Option<Node> {
    let mut fields = Vec::new();
    let mut current = expr;
    let root = loop {
        match &current.kind {
            ExprKind::Select { operand, field, .. } => {
                fields.push(Box::<str>::from(field.as_str()));
                current = operand;
            }
            ExprKind::Ident(name) => break name.as_str(),
            _ => return None,
        }
    };
    let position = scope_position(scopes, root)?;
    fields.reverse();
    Some(Node::Path {
        position,
        fields: fields
            .into_iter()
            .map(|name| PathField {
                name,
                hint: std::sync::atomic::AtomicU32::new(0),
            })
            .collect(),
    })
}

/// For a selection chain `a.b.c` rooted at a name that is not a comprehension variable:
/// the names it is tried as before it is evaluated as field selections.
fn qualified_name(expr: &Expr, scopes: &[String]) -> Option<QualifiedName> {
    let mut current = expr;
    let root = loop {
        match &current.kind {
            ExprKind::Select { operand, .. } => current = operand,
            ExprKind::Ident(name) => break name.as_str(),
            _ => return None,
        }
    };
    if scope_position(scopes, root).is_some() {
        return None;
    }
    let qualified = expr.qualified_name()?;
    let first_segment = qualified.split('.').next().unwrap_or("");
    let bare = qualified.trim_start_matches('.');
    Some(QualifiedName {
        root: root.into(),
        first_segment: first_segment.into(),
        first_segment_scoped: scope_position(scopes, first_segment).is_some(),
        type_value: type_name_identifier(bare).then(|| Value::Type(Arc::from(bare))),
        qualified: qualified.as_str().into(),
    })
}

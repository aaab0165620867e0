//! Compiles CEL expressions to Rust over typed structs: the code generator behind
//! `agentc build` and the `#[agent]` macro, in a crate of its own so that nothing that
//! runs policies (the runtime, generated crates) carries syn, quote or prettyplease.
//!
//! Two halves that must agree:
//!
//! - [`struct_definitions`] turns an object type (the *layout*: the variables an
//!   expression sees, as fields of one root object) into Rust struct definitions with serde
//!   derives: `always_present: false` fields become `Option<T>`, lists `Vec<T>`, strings
//!   `String`, ints `i64`, doubles `f64`, timestamps and durations the types of
//!   `agentc-cel-support`; `dyn`, maps with non-string keys, bytes and null become
//!   `serde_json::Value`. Field names become snake case ([`rust_field_names`]) with serde
//!   renames.
//! - [`compile_function`] turns an expression into a Rust function over a reference to the
//!   root struct, returning `Result<T, CelError>`; an `Err` must be treated as a denied
//!   check (fail closed, OAS-C8). Field selection is plain field access; strings are
//!   borrowed `&str`; lists are slices iterated in place; constant regexes are compiled once
//!   in a `LazyLock`. Errors follow the interpreter exactly: integer overflow, division by
//!   zero, an absent optional field, an index out of range, a bad regex; `&&`, `||` and
//!   the `all`/`exists` macros absorb errors as CEL says.
//!
//! What the compiler cannot do statically (values typed `dyn`, maps, bytes, `null`,
//! two-variable comprehensions, most string functions beyond the common ones) is reported
//! as a [`CompileError`], so that the caller can fall back to the interpreter.
//!
//! [`engagement_layout`] gives the layout of the OAS-E3 engagement for a set of
//! capabilities: one layout serves every assertion site, since absent parts are `Option`s.
//! Every compiled function also reports the fields it reads ([`FieldReads`]), and
//! [`prune_layout`] keeps only those: compiled code reaches into an object only by
//! selecting a field or testing one with `has()` (it never compares, returns or copies an
//! object whole), so a layout pruned to the fields its functions read serves them exactly,
//! and the structs, conversions and copies of everything else need not exist.
//!
//! Sections, in order: the public types and [`prune_layout`]; *Names* (case, keywords,
//! [`rust_field_names`]); *Struct definitions* (the private `StructNamer`,
//! [`struct_definitions`], [`engagement_layout`]); *Expressions* (`Form`, the private
//! `Compiler`, [`compile_function`]). One file because the two halves agree through
//! private helpers they share: the same names, and each field's stored type (`Option`
//! when not always present) matched by how compiled code reads it (`stored_form`).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Ident, Literal as TokenLiteral, Span as TokenSpan, TokenStream};
use quote::{format_ident, quote};

use agentc_cel::Span;
use agentc_cel::ast::{
    BinaryOp, Comprehension, ComprehensionKind, Expr, ExprKind, Literal, UnaryOp,
};
use agentc_cel::engagement::{CapabilityTypes, ObjectRole, Presence, engagement_shape};
use agentc_cel::{FieldType, ObjectType, Type};
use agentc_cel_support::budget::{BYTES_PER_STEP, STEPS_PER_NODE};

/// Why an expression (or a type) could not be compiled to Rust; the caller should use the
/// interpreter instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot compile to Rust: {message}")]
pub struct CompileError {
    /// What is not supported.
    pub message: String,
    /// Where, in the expression's source.
    pub span: Span,
}

fn unsupported<T>(message: impl Into<String>, span: Span) -> Result<T, CompileError> {
    Err(CompileError {
        message: message.into(),
        span,
    })
}

/// A compiled function and what it returns.
#[derive(Debug, Clone)]
pub struct CompiledFunction {
    /// The function's definition.
    pub tokens: TokenStream,
    /// The CEL type of the value it returns.
    pub result: Type,
    /// The object fields it reads.
    pub reads: FieldReads,
}

/// The object fields compiled code reads: pairs of an object type's name (as the layout
/// names it) and one of its fields' CEL names. A selection `a.b` and a test `has(a.b)`
/// both read `b` of `a`'s type; a root variable is a field of the root object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldReads {
    /// Per object type name, the fields read of it.
    reads: BTreeMap<String, BTreeSet<String>>,
}

impl FieldReads {
    /// Records that `field` of the object type named `object` is read.
    pub fn insert(&mut self, object: &str, field: &str) {
        self.reads
            .entry(object.to_string())
            .or_default()
            .insert(field.to_string());
    }

    /// Adds every read of `other`.
    pub fn extend(&mut self, other: &FieldReads) {
        for (object, fields) in &other.reads {
            self.reads
                .entry(object.clone())
                .or_default()
                .extend(fields.iter().cloned());
        }
    }

    /// Whether `field` of the object type named `object` is read.
    pub fn contains(&self, object: &str, field: &str) -> bool {
        self.reads
            .get(object)
            .is_some_and(|fields| fields.contains(field))
    }

    /// Every read, as (object type name, field name) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reads.iter().flat_map(|(object, fields)| {
            fields
                .iter()
                .map(move |field| (object.as_str(), field.as_str()))
        })
    }

    /// The fields read of the object type named `object`, in order: for the layout's
    /// root, the root variables the code reads (a comprehension variable that shadows
    /// one is not a read of it).
    pub fn fields_of<'a>(&'a self, object: &str) -> impl Iterator<Item = &'a str> {
        self.reads
            .get(object)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// The layout `root` with only the fields in `reads`, in every object type at any depth
/// (inside lists and map values too), each object closed (`open: false`: compiled code
/// cannot select an undeclared field, so the undeclared ones are never read either).
///
/// Objects are matched by name, as [`FieldReads`] records them; two object types that
/// share a name keep the union of their reads, which keeps more than needed, never less.
/// An expression that compiled against `root` compiles against the pruned layout to the
/// same code over fewer fields: every field it selects or tests is still there, with the
/// same type and presence.
pub fn prune_layout(root: &ObjectType, reads: &FieldReads) -> ObjectType {
    ObjectType {
        name: root.name.clone(),
        fields: root
            .fields
            .iter()
            .filter(|(field_name, _)| reads.contains(&root.name, field_name))
            .map(|(field_name, field)| {
                (
                    field_name.clone(),
                    FieldType {
                        ty: prune_type(&field.ty, reads),
                        ..field.clone()
                    },
                )
            })
            .collect(),
        open: false,
    }
}

fn prune_type(ty: &Type, reads: &FieldReads) -> Type {
    match ty {
        Type::Object(object) => Type::Object(prune_layout(object, reads)),
        Type::List(element) => Type::List(Box::new(prune_type(element, reads))),
        Type::Map(key, value) => Type::Map(key.clone(), Box::new(prune_type(value, reads))),
        other => other.clone(),
    }
}

/// Where compiled code finds its run-time support: through the `agentc` façade, the one
/// dependency of the crates (and macro expansions) it is compiled into.
fn support() -> TokenStream {
    quote!(::agentc::__private::agentc_cel_support)
}

// ---------------------------------------------------------------------------------------
// Names

const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The Rust field name for the flattened map of an open object's undeclared fields.
const EXTRA_FIELDS: &str = "extra_fields";

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for character in name.trim_start_matches('_').chars() {
        if character.is_ascii_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.push(character.to_ascii_lowercase());
            previous_lower = false;
        } else if character.is_ascii_alphanumeric() {
            out.push(character);
            previous_lower = character.is_ascii_lowercase() || character.is_ascii_digit();
        } else {
            if !out.ends_with('_') {
                out.push('_');
            }
            previous_lower = false;
        }
    }
    let mut out = out.trim_end_matches('_').to_string();
    if out.is_empty() {
        out = "field".to_string();
    }
    if out.starts_with(|character: char| character.is_ascii_digit()) {
        out.insert_str(0, "f_");
    }
    if RUST_KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for character in name.chars() {
        if character.is_ascii_alphanumeric() {
            if upper {
                out.push(character.to_ascii_uppercase());
            } else {
                out.push(character);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() || out.starts_with(|character: char| character.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    if RUST_KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// The Rust field name of each field of an object (CEL name to Rust name), the same in
/// the struct definitions and in compiled expressions: snake case, without leading
/// underscores (`_list` is `list`), distinct, never a keyword.
pub fn rust_field_names(object: &ObjectType) -> BTreeMap<String, String> {
    let mut taken: Vec<String> = Vec::new();
    if object.open {
        taken.push(EXTRA_FIELDS.to_string());
    }
    let mut names = BTreeMap::new();
    for cel_name in object.fields.keys() {
        let base = snake_case(cel_name);
        let mut candidate = base.clone();
        let mut counter = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}_{counter}");
            counter += 1;
        }
        taken.push(candidate.clone());
        names.insert(cel_name.clone(), candidate);
    }
    names
}

fn ident(name: &str) -> Ident {
    Ident::new(name, TokenSpan::call_site())
}

// ---------------------------------------------------------------------------------------
// Struct definitions

/// Returns whether a display name is usable as a Rust type name as it stands.
fn is_type_name(name: &str) -> bool {
    name.starts_with(|character: char| character.is_ascii_uppercase())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric())
        && !RUST_KEYWORDS.contains(&name)
}

struct StructNamer {
    definitions: Vec<(String, ObjectType)>,
}

impl StructNamer {
    fn name_for(&mut self, suggested: &str, object: &ObjectType) -> String {
        let base = if is_type_name(&object.name) {
            object.name.clone()
        } else {
            camel_case(suggested)
        };
        let mut counter = 1;
        let mut candidate = base.clone();
        loop {
            match self.definitions.iter().find(|(name, _)| *name == candidate) {
                Some((_, existing)) if existing == object => return candidate,
                Some(_) => {
                    counter += 1;
                    candidate = format!("{base}{counter}");
                }
                None => {
                    self.definitions.push((candidate.clone(), object.clone()));
                    return candidate;
                }
            }
        }
    }

    fn rust_type(&mut self, ty: &Type, suggested: &str) -> TokenStream {
        let support = support();
        match ty {
            Type::Bool => quote!(bool),
            Type::Int => quote!(i64),
            Type::Uint => quote!(u64),
            Type::Double => quote!(f64),
            Type::String => quote!(#support::Text),
            Type::Timestamp => quote!(#support::Timestamp),
            Type::Duration => quote!(#support::Duration),
            Type::List(element) => {
                let element = self.rust_type(element, &format!("{suggested}Item"));
                quote!(::std::vec::Vec<#element>)
            }
            Type::Map(key, value) if **key == Type::String => {
                let value = self.rust_type(value, &format!("{suggested}Value"));
                quote!(::std::collections::BTreeMap<::std::string::String, #value>)
            }
            Type::Object(object) => {
                let name = ident(&self.name_for(suggested, object));
                quote!(#name)
            }
            _ => quote!(::agentc::__private::serde_json::Value),
        }
    }

    fn definition(&mut self, name: &str, object: &ObjectType) -> TokenStream {
        let names = rust_field_names(object);
        let mut fields = Vec::new();
        for (cel_name, field) in &object.fields {
            let rust_name = names.get(cel_name).cloned().unwrap_or_default();
            let field_ident = ident(&rust_name);
            let ty = self.rust_type(&field.ty, &format!("{name}{}", camel_case(cel_name)));
            let rename = if rust_name == *cel_name {
                quote!()
            } else {
                quote!(#[serde(rename = #cel_name)])
            };
            if field.always_present {
                fields.push(quote! { #rename pub #field_ident: #ty, });
            } else {
                fields.push(quote! {
                    #rename
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    pub #field_ident: ::std::option::Option<#ty>,
                });
            }
        }
        if object.open {
            let extra = ident(EXTRA_FIELDS);
            fields.push(quote! {
                #[serde(flatten)]
                pub #extra: ::std::collections::BTreeMap<::std::string::String, ::agentc::__private::serde_json::Value>,
            });
        }
        let struct_ident = ident(name);
        let doc = format!(" The CEL object `{}`.", object.name);
        quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, ::agentc::__private::serde::Serialize, ::agentc::__private::serde::Deserialize)]
            #[serde(crate = "::agentc::__private::serde")]
            pub struct #struct_ident {
                #(#fields)*
            }
        }
    }
}

/// Emits the Rust struct definitions for an object type and every object type inside
/// it, the root named `root_name`. Nested objects are named after their display name
/// when it is already a Rust type name, else after their path (`RootFieldItem`);
/// structurally equal objects with the same name share one definition.
pub fn struct_definitions(root_name: &str, root: &ObjectType) -> TokenStream {
    named_struct_definitions(root_name, root).0
}

/// The name of the object type each struct of [`struct_definitions`] holds (what
/// [`FieldReads`] are keyed by), by the struct's Rust name. Structs of object types
/// that share a name also share its reads.
pub fn struct_object_names(root_name: &str, root: &ObjectType) -> BTreeMap<String, String> {
    named_struct_definitions(root_name, root)
        .1
        .into_iter()
        .map(|(struct_name, object)| (struct_name, object.name))
        .collect()
}

/// The struct definitions, and each struct's Rust name with the object type it holds.
fn named_struct_definitions(
    root_name: &str,
    root: &ObjectType,
) -> (TokenStream, Vec<(String, ObjectType)>) {
    let mut namer = StructNamer {
        definitions: Vec::new(),
    };
    let mut root = root.clone();
    root.name = camel_case(root_name);
    namer.name_for(root_name, &root);
    let mut output = TokenStream::new();
    let mut index = 0;
    while let Some((name, object)) = namer.definitions.get(index).cloned() {
        output.extend(namer.definition(&name, &object));
        index += 1;
    }
    (output, namer.definitions)
}

fn with_names(ty: &Type, name: &str) -> Type {
    match ty {
        Type::Object(object) => {
            let fields = object
                .fields
                .iter()
                .map(|(field_name, field)| {
                    (
                        field_name.clone(),
                        FieldType {
                            // A field that may be `null` is stored as a dynamic value,
                            // so an expression that reads it is interpreted rather than
                            // compiled: compiled code over a typed `Option<T>` would
                            // treat `null` unlike the interpreter (`has()` of a `null`
                            // field is true).
                            ty: if field.nullable {
                                Type::Dyn
                            } else {
                                with_names(&field.ty, &format!("{name}{}", camel_case(field_name)))
                            },
                            always_present: field.always_present,
                            nullable: false,
                        },
                    )
                })
                .collect();
            Type::Object(ObjectType {
                name: name.to_string(),
                fields,
                open: object.open,
            })
        }
        Type::List(element) => Type::List(Box::new(with_names(element, &format!("{name}Item")))),
        Type::Map(key, value) => Type::Map(
            key.clone(),
            Box::new(with_names(value, &format!("{name}Value"))),
        ),
        other => other.clone(),
    }
}

/// The layout of the engagement (OAS-E3) for the given capabilities, as
/// [`engagement_shape`] declares it with the presence every site guarantees: one root
/// struct `Engagement` whose objects are named `User`, `Recent`, `History` and
/// `<Capability>Invocation`, and whose tool types are named from their capability
/// (`<Capability>Inputs`, `<Capability>Outputs`). It serves every assertion site: what a
/// site guarantees present is simply `Some` at run time.
pub fn engagement_layout(capabilities: &[CapabilityTypes]) -> ObjectType {
    let named: Vec<CapabilityTypes> = capabilities
        .iter()
        .map(|capability| {
            let base = camel_case(&capability.name);
            CapabilityTypes {
                input: with_names(&capability.input, &format!("{base}Inputs")),
                output: with_names(&capability.output, &format!("{base}Outputs")),
                ..capability.clone()
            }
        })
        .collect();
    engagement_shape(&named, Presence::EverySite, |role| match role {
        ObjectRole::Engagement => "Engagement".to_string(),
        ObjectRole::User => "User".to_string(),
        ObjectRole::Recent => "Recent".to_string(),
        ObjectRole::History => "History".to_string(),
        ObjectRole::Refusal => "Refusal".to_string(),
        ObjectRole::Invocation { capability } => format!("{}Invocation", camel_case(capability)),
    })
}

/// The struct definitions of [`engagement_layout`], the root named `Engagement`.
pub fn engagement_structs(capabilities: &[CapabilityTypes]) -> TokenStream {
    struct_definitions("Engagement", &engagement_layout(capabilities))
}

/// Formats generated items as a Rust source file (deterministic for the same tokens).
pub fn format_tokens(tokens: TokenStream) -> Result<String, CompileError> {
    let file: syn::File = syn::parse2(tokens).map_err(|error| CompileError {
        message: format!("generated code does not parse: {error}"),
        span: Span { start: 0, end: 0 },
    })?;
    Ok(prettyplease::unparse(&file))
}

// ---------------------------------------------------------------------------------------
// Expressions

/// How a compiled Rust expression represents a CEL value.
#[derive(Debug, Clone, PartialEq)]
enum Form {
    Bool,
    Int,
    Uint,
    Double,
    Timestamp,
    Duration,
    /// A borrowed `&str` (from the input or a literal).
    Str,
    /// An owned `String` (computed).
    OwnedStr,
    /// A `&Struct`.
    Object(ObjectType),
    /// A list of elements of form `element`.
    List(Box<Form>, ListKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    /// A `&[Stored]` slice of the input, whose items are the struct field types.
    Slice,
    /// A `Vec<Form>` computed by `map` or `filter`.
    Vec,
    /// A `[Form; N]` literal.
    Array,
}

impl Form {
    fn cel_type(&self) -> Type {
        match self {
            Form::Bool => Type::Bool,
            Form::Int => Type::Int,
            Form::Uint => Type::Uint,
            Form::Double => Type::Double,
            Form::Timestamp => Type::Timestamp,
            Form::Duration => Type::Duration,
            Form::Str | Form::OwnedStr => Type::String,
            Form::Object(object) => Type::Object(object.clone()),
            Form::List(element, _) => Type::List(Box::new(element.cel_type())),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Form::Int | Form::Uint | Form::Double)
    }

    fn is_string(&self) -> bool {
        matches!(self, Form::Str | Form::OwnedStr)
    }

    fn is_copy_scalar(&self) -> bool {
        matches!(
            self,
            Form::Bool | Form::Int | Form::Uint | Form::Double | Form::Timestamp | Form::Duration
        )
    }
}

/// The form of a value stored in a struct field (or a slice item) of the given type.
fn stored_form(ty: &Type) -> Option<Form> {
    Some(match ty {
        Type::Bool => Form::Bool,
        Type::Int => Form::Int,
        Type::Uint => Form::Uint,
        Type::Double => Form::Double,
        Type::Timestamp => Form::Timestamp,
        Type::Duration => Form::Duration,
        Type::String => Form::Str,
        Type::Object(object) => Form::Object(object.clone()),
        Type::List(element) => Form::List(Box::new(stored_form(element)?), ListKind::Slice),
        _ => return None,
    })
}

/// Converts a reference to a stored value (`&String`, `&i64`, `&Struct`, `&Vec<T>`) into
/// its form.
fn from_stored_ref(reference: TokenStream, form: &Form) -> TokenStream {
    match form {
        Form::Str => quote!((#reference).as_str()),
        Form::Object(_) => reference,
        Form::List(..) => quote!((#reference).as_slice()),
        _ => quote!((*#reference)),
    }
}

struct Code {
    tokens: TokenStream,
    form: Form,
    /// Whether the code may fail (contains `?` or `return`).
    fallible: bool,
}

impl Code {
    fn new(tokens: TokenStream, form: Form, fallible: bool) -> Code {
        Code {
            tokens,
            form,
            fallible,
        }
    }

    /// The code as a `&str` expression, valid until the end of the enclosing statement.
    fn as_str(&self) -> TokenStream {
        let tokens = &self.tokens;
        match self.form {
            Form::OwnedStr => quote!((#tokens).as_str()),
            _ => quote!((#tokens)),
        }
    }

    /// The code wrapped so that its errors become a `CelResult` value.
    fn as_result(&self) -> TokenStream {
        let tokens = &self.tokens;
        let support = support();
        if self.fallible {
            quote!((|| -> #support::CelResult<_> { Ok(#tokens) })())
        } else {
            quote!(#support::CelResult::Ok(#tokens))
        }
    }
}

struct Compiler<'a> {
    root: &'a ObjectType,
    scopes: Vec<(String, Form)>,
    statics: usize,
    reads: FieldReads,
}

/// Compiles an expression into `pub fn <function_name>(root: &<root_name>) ->
/// Result<T, agentc_cel_support::CelError>`, where `<root_name>` is the struct that
/// [`struct_definitions`] emits for `root` and the expression's variables are the root's
/// fields. The expression should have passed the checker; the compiler types it again
/// from the layout and reports what it cannot compile statically.
///
/// `T` is `bool` for assertions; for other results (`exposes`): `i64`, `u64`, `f64`,
/// `String`, the support crate's `Timestamp`/`Duration`, or a `Vec` of those.
pub fn compile_function(
    function_name: &str,
    expr: &Expr,
    root_name: &str,
    root: &ObjectType,
) -> Result<CompiledFunction, CompileError> {
    if !is_identifier(function_name) {
        return unsupported(
            format!("`{function_name}` is not a Rust function name"),
            expr.span,
        );
    }
    let mut compiler = Compiler {
        root,
        scopes: Vec::new(),
        statics: 0,
        reads: FieldReads::default(),
    };
    let code = compiler.compile(expr)?;
    let (result_type, value) = result_conversion(&code, expr.span)?;
    let steps = TokenLiteral::u64_suffixed(node_steps(expr));
    let function = ident(function_name);
    let root_ident = ident(&camel_case(root_name));
    let support = support();
    let cel_type = code.form.cel_type();
    let doc = format!(" Compiled from a CEL expression of type `{cel_type}`; an `Err` denies.");
    let tokens = quote! {
        #[doc = #doc]
        #[allow(clippy::all, unused_parens, unused_braces, unreachable_code, non_snake_case)]
        pub fn #function(root: &#root_ident, __meter: &#support::Meter) -> ::std::result::Result<#result_type, #support::CelError> {
            __meter.steps(#steps);
            Ok(#value)
        }
    };
    Ok(CompiledFunction {
        tokens,
        result: cel_type,
        reads: compiler.reads,
    })
}

/// Like [`compile_function`], for an assertion: the expression must be a `bool`, and the
/// function returns `Result<bool, CelError>`.
pub fn compile_assertion(
    function_name: &str,
    expr: &Expr,
    root_name: &str,
    root: &ObjectType,
) -> Result<CompiledFunction, CompileError> {
    let function = compile_function(function_name, expr, root_name, root)?;
    if function.result != Type::Bool {
        return unsupported(
            format!("an assertion must be a `bool`, not `{}`", function.result),
            expr.span,
        );
    }
    Ok(function)
}

/// The steps compiled code counts for the nodes of `expr` that run at most once each time
/// `expr` does: every node but those of a comprehension's body and filter, which count
/// once per iteration (see [`Compiler::compile_comprehension`]). Counted whether or not
/// they run, at [`STEPS_PER_NODE`] each, so never less than the interpreter counts for
/// them (see `agentc_cel_support::budget`).
fn node_steps(expr: &Expr) -> u64 {
    let mut nodes: u64 = 0;
    let mut pending = vec![expr];
    while let Some(node) = pending.pop() {
        nodes = nodes.saturating_add(1);
        match &node.kind {
            ExprKind::Comprehension(comprehension) => pending.push(&comprehension.range),
            _ => pending.extend(node.children()),
        }
    }
    nodes.saturating_mul(STEPS_PER_NODE)
}

/// Whether a name is a plain Rust identifier (not a keyword), usable with `Ident::new`.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|character: char| character.is_ascii_alphabetic() || character == '_')
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
        && name != "_"
        && !RUST_KEYWORDS.contains(&name)
}

/// The Rust return type and the value expression for a compiled result.
fn result_conversion(code: &Code, span: Span) -> Result<(TokenStream, TokenStream), CompileError> {
    let tokens = &code.tokens;
    let support = support();
    Ok(match &code.form {
        Form::Bool => (quote!(bool), tokens.clone()),
        Form::Int => (quote!(i64), tokens.clone()),
        Form::Uint => (quote!(u64), tokens.clone()),
        Form::Double => (quote!(f64), tokens.clone()),
        Form::Timestamp => (quote!(#support::Timestamp), tokens.clone()),
        Form::Duration => (quote!(#support::Duration), tokens.clone()),
        Form::Str => (quote!(::std::string::String), quote!((#tokens).to_owned())),
        Form::OwnedStr => (quote!(::std::string::String), tokens.clone()),
        Form::List(element, kind) => {
            let item = quote!(__item);
            let (converted, element_form) = list_item(&item, element, *kind, span)?;
            let counted = converted.clone();
            let (element_type, element_value) = match element_form {
                Form::Str => (
                    quote!(::std::string::String),
                    quote!((#converted).to_owned()),
                ),
                Form::Bool => (quote!(bool), converted),
                Form::Int => (quote!(i64), converted),
                Form::Uint => (quote!(u64), converted),
                Form::Double => (quote!(f64), converted),
                Form::Timestamp => (quote!(#support::Timestamp), converted),
                Form::Duration => (quote!(#support::Duration), converted),
                _ => return unsupported("a list of this element type as a result", span),
            };
            // A list of borrowed strings is copied out: the copies are counted first, and
            // nothing is copied once the meter has run out (the result is then thrown
            // away), so a list naming one long string many times costs no more than the
            // budget allows.
            let copy = quote!((__list).iter().map(|__item| #element_value).collect::<::std::vec::Vec<_>>());
            let value = if element_form == Form::Str {
                quote!({
                    let __list = #tokens;
                    for __item in (__list).iter() {
                        __meter.built_str(#counted);
                    }
                    if __meter.exhausted() {
                        ::std::vec::Vec::new()
                    } else {
                        #copy
                    }
                })
            } else {
                quote!({
                    let __list = #tokens;
                    #copy
                })
            };
            (quote!(::std::vec::Vec<#element_type>), value)
        }
        Form::Object(_) => return unsupported("an object as a result", span),
    })
}

/// The expression converting a reference to a list item into the item's form, and that
/// form.
fn list_item(
    item: &TokenStream,
    element: &Form,
    kind: ListKind,
    span: Span,
) -> Result<(TokenStream, Form), CompileError> {
    match kind {
        ListKind::Slice => Ok((from_stored_ref(item.clone(), element), element.clone())),
        ListKind::Vec | ListKind::Array => match element {
            Form::OwnedStr => Ok((quote!((#item).as_str()), Form::Str)),
            Form::List(_, ListKind::Slice) => Ok((quote!((*#item)), element.clone())),
            Form::List(..) => unsupported("a computed list of computed lists", span),
            other => Ok((quote!((*#item)), other.clone())),
        },
    }
}

fn literal_int(value: i64) -> TokenStream {
    let literal = TokenLiteral::i64_suffixed(value);
    quote!((#literal))
}

fn literal_string(value: &str) -> TokenStream {
    let literal = TokenLiteral::string(value);
    quote!(#literal)
}

/// Whether an expression is a constant string literal.
fn constant_string(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Literal(Literal::String(text)) => Some(text),
        _ => None,
    }
}

impl Compiler<'_> {
    fn compile(&mut self, expr: &Expr) -> Result<Code, CompileError> {
        agentc_cel::with_enough_stack(|| self.compile_kind(expr))
    }

    fn compile_kind(&mut self, expr: &Expr) -> Result<Code, CompileError> {
        let span = expr.span;
        let support = support();
        match &expr.kind {
            ExprKind::Literal(literal) => Ok(match literal {
                Literal::Bool(flag) => Code::new(quote!(#flag), Form::Bool, false),
                Literal::Int(number) => Code::new(literal_int(*number), Form::Int, false),
                Literal::Uint(number) => {
                    let literal = TokenLiteral::u64_suffixed(*number);
                    Code::new(quote!(#literal), Form::Uint, false)
                }
                Literal::Double(number) => {
                    let tokens = if number.is_nan() {
                        quote!(f64::NAN)
                    } else if number.is_infinite() && *number > 0.0 {
                        quote!(f64::INFINITY)
                    } else if number.is_infinite() {
                        quote!(f64::NEG_INFINITY)
                    } else {
                        let literal = TokenLiteral::f64_suffixed(*number);
                        quote!((#literal))
                    };
                    Code::new(tokens, Form::Double, false)
                }
                Literal::String(text) => Code::new(literal_string(text), Form::Str, false),
                Literal::Null | Literal::Bytes(_) => {
                    return unsupported("`null` and bytes values", span);
                }
            }),
            ExprKind::Ident(name) => {
                if let Some((_, form)) = self.scopes.iter().rev().find(|(scoped, _)| scoped == name)
                {
                    let variable = format_ident!("v_{}", name);
                    return Ok(Code::new(quote!(#variable), form.clone(), false));
                }
                let root_name = name.trim_start_matches('.');
                let root = self.root;
                self.select_field(quote!(root), root, root_name, span)
            }
            ExprKind::Select { operand, field, .. } => {
                let object = self.compile(operand)?;
                let Form::Object(object_type) = &object.form else {
                    return unsupported(
                        format!("selecting `{field}` from a non-object value"),
                        span,
                    );
                };
                let object_type = object_type.clone();
                let mut code = self.select_field(object.tokens, &object_type, field, span)?;
                code.fallible |= object.fallible;
                Ok(code)
            }
            ExprKind::Has { operand, field, .. } => {
                let object = self.compile(operand)?;
                let Form::Object(object_type) = &object.form else {
                    return unsupported("`has()` on a non-object value", span);
                };
                let Some(field_type) = object_type.fields.get(field) else {
                    return unsupported(format!("`has()` on the undeclared field `{field}`"), span);
                };
                self.reads.insert(&object_type.name, field);
                let tokens = &object.tokens;
                let code = if field_type.always_present {
                    quote!({ let _ = #tokens; true })
                } else {
                    let names = rust_field_names(object_type);
                    let rust_name = ident(names.get(field).map(String::as_str).unwrap_or("field"));
                    quote!((#tokens).#rust_name.is_some())
                };
                Ok(Code::new(code, Form::Bool, object.fallible))
            }
            ExprKind::Call {
                target,
                function,
                args,
                ..
            } => self.compile_call(target.as_deref(), function, args, span),
            ExprKind::Unary { op, operand } => {
                let value = self.compile(operand)?;
                let tokens = &value.tokens;
                match (op, &value.form) {
                    (UnaryOp::Not, Form::Bool) => {
                        Ok(Code::new(quote!((!#tokens)), Form::Bool, value.fallible))
                    }
                    (UnaryOp::Negate, Form::Int) => Ok(Code::new(
                        quote!(#support::neg_int(#tokens)?),
                        Form::Int,
                        true,
                    )),
                    (UnaryOp::Negate, Form::Double) => {
                        Ok(Code::new(quote!((-#tokens)), Form::Double, value.fallible))
                    }
                    _ => unsupported("this unary operator on this type", span),
                }
            }
            ExprKind::Binary {
                op, left, right, ..
            } => self.compile_binary(*op, left, right, span),
            ExprKind::Conditional {
                condition,
                if_true,
                if_false,
            } => {
                let condition = self.compile(condition)?;
                if condition.form != Form::Bool {
                    return unsupported("a non-bool condition", span);
                }
                let mut if_true = self.compile(if_true)?;
                let mut if_false = self.compile(if_false)?;
                // Two borrowed strings stay borrowed. A borrowed one beside a computed
                // one is copied, and the copy counted (the interpreter copies nothing
                // here, so without the count a long string copied once per iteration
                // would be work no budget sees).
                if !(if_true.form == Form::Str && if_false.form == Form::Str) {
                    for branch in [&mut if_true, &mut if_false] {
                        if branch.form == Form::Str {
                            let tokens = &branch.tokens;
                            branch.tokens =
                                quote!(__meter.built_string(__meter.str(#tokens).to_owned()));
                            branch.form = Form::OwnedStr;
                        }
                    }
                }
                if if_true.form != if_false.form {
                    return unsupported("`?:` branches of different representations", span);
                }
                let (c, t, f) = (&condition.tokens, &if_true.tokens, &if_false.tokens);
                Ok(Code::new(
                    quote!((if #c { #t } else { #f })),
                    if_true.form.clone(),
                    condition.fallible || if_true.fallible || if_false.fallible,
                ))
            }
            ExprKind::Index { operand, index } => {
                let list = self.compile(operand)?;
                let position = self.compile(index)?;
                let Form::List(element, kind) = &list.form else {
                    return unsupported("indexing a non-list value", span);
                };
                if position.form != Form::Int {
                    return unsupported("a list index that is not an int", span);
                }
                let (l, p) = (&list.tokens, &position.tokens);
                let reference = match kind {
                    ListKind::Slice => quote!(#support::index(#l, #p)?),
                    _ => quote!(#support::index(&(#l), #p)?),
                };
                let (mut tokens, mut form) = list_item(&reference, element, *kind, span)?;
                if *kind != ListKind::Slice && form == Form::Str && **element == Form::OwnedStr {
                    tokens = quote!((#tokens).to_owned());
                    form = Form::OwnedStr;
                }
                if *kind != ListKind::Slice
                    && !matches!(form, Form::OwnedStr)
                    && !form.is_copy_scalar()
                {
                    // A borrowed item of a temporary list would not outlive the statement.
                    if !matches!(
                        form,
                        Form::Str | Form::Object(_) | Form::List(_, ListKind::Slice)
                    ) {
                        return unsupported("indexing this computed list", span);
                    }
                }
                Ok(Code::new(tokens, form, true))
            }
            ExprKind::List(elements) => {
                let mut codes = Vec::new();
                for element in elements {
                    codes.push(self.compile(element)?);
                }
                let Some(first) = codes.first() else {
                    return unsupported("an empty list literal", span);
                };
                let form = first.form.clone();
                if codes.iter().any(|code| code.form != form) {
                    return unsupported("a list literal of mixed representations", span);
                }
                if matches!(form, Form::List(..)) {
                    return unsupported("a list literal of lists", span);
                }
                let fallible = codes.iter().any(|code| code.fallible);
                let items = codes.iter().map(|code| &code.tokens);
                Ok(Code::new(
                    quote!([#(#items),*]),
                    Form::List(Box::new(form), ListKind::Array),
                    fallible,
                ))
            }
            ExprKind::Map(_) => unsupported("map values", span),
            ExprKind::Struct { .. } => unsupported("message construction", span),
            ExprKind::Comprehension(comprehension) => {
                self.compile_comprehension(comprehension, span)
            }
        }
    }

    fn select_field(
        &mut self,
        object_tokens: TokenStream,
        object: &ObjectType,
        field: &str,
        span: Span,
    ) -> Result<Code, CompileError> {
        let Some(field_type) = object.fields.get(field) else {
            return unsupported(
                format!(
                    "`{field}` is not a declared field of `{}` (a dynamic value)",
                    object.name
                ),
                span,
            );
        };
        let Some(form) = stored_form(&field_type.ty) else {
            return unsupported(
                format!(
                    "field `{field}` of type `{}` (dynamic values)",
                    field_type.ty
                ),
                span,
            );
        };
        self.reads.insert(&object.name, field);
        let names = rust_field_names(object);
        let rust_name = ident(names.get(field).map(String::as_str).unwrap_or("field"));
        let support = support();
        let place = quote!((#object_tokens).#rust_name);
        if field_type.always_present {
            let tokens = match &form {
                Form::Str => quote!(#place.as_str()),
                Form::Object(_) => quote!((&#place)),
                Form::List(..) => quote!(#place.as_slice()),
                _ => place,
            };
            Ok(Code::new(tokens, form, false))
        } else {
            let missing = quote!(#support::CelError::no_such_key(#field));
            // A `match` rather than `.ok_or(..)?`: those are generic functions, and
            // would be instantiated once per field type in every generated crate.
            let present = match &form {
                Form::Str | Form::List(..) => quote!(#place.as_deref()),
                Form::Object(_) => quote!(&#place),
                _ => place,
            };
            let tokens = quote!(match #present {
                ::std::option::Option::Some(value) => value,
                ::std::option::Option::None => return ::std::result::Result::Err(#missing),
            });
            Ok(Code::new(tokens, form, true))
        }
    }

    fn compile_binary(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        span: Span,
    ) -> Result<Code, CompileError> {
        let support = support();
        let left = self.compile(left)?;
        let right = self.compile(right)?;
        let fallible = left.fallible || right.fallible;
        let (l, r) = (&left.tokens, &right.tokens);
        match op {
            BinaryOp::And | BinaryOp::Or => {
                if left.form != Form::Bool || right.form != Form::Bool {
                    return unsupported("`&&`/`||` on non-bool values", span);
                }
                // With an infallible left operand, Rust's short circuit is CEL's: a
                // decisive left wins, otherwise the right operand's value or error is the
                // result.
                if !left.fallible {
                    let tokens = if op == BinaryOp::And {
                        quote!((#l && #r))
                    } else {
                        quote!((#l || #r))
                    };
                    return Ok(Code::new(tokens, Form::Bool, right.fallible));
                }
                // Commutative over errors: a decisive operand wins even if the other failed.
                let decisive = op == BinaryOp::Or;
                let (left_result, right_result) = (left.as_result(), right.as_result());
                let tokens = quote! {
                    (match #left_result {
                        Ok(#decisive) => #decisive,
                        __left => match #right_result {
                            Ok(#decisive) => #decisive,
                            Ok(_) => __left?,
                            Err(__error) => {
                                __left?;
                                return Err(__error);
                            }
                        },
                    })
                };
                Ok(Code::new(tokens, Form::Bool, true))
            }
            BinaryOp::Equal | BinaryOp::NotEqual => {
                let equal = equality(&left, &right, span)?;
                let tokens = if op == BinaryOp::Equal {
                    equal
                } else {
                    quote!((!#equal))
                };
                Ok(Code::new(tokens, Form::Bool, fallible))
            }
            BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => {
                let operator = match op {
                    BinaryOp::Less => quote!(<),
                    BinaryOp::LessEqual => quote!(<=),
                    BinaryOp::Greater => quote!(>),
                    _ => quote!(>=),
                };
                let tokens = match (&left.form, &right.form) {
                    (a, b) if a.is_string() && b.is_string() => {
                        let (ls, rs) = (left.as_str(), right.as_str());
                        quote!((__meter.str(#ls) #operator __meter.str(#rs)))
                    }
                    (a, b) if a == b && a.is_copy_scalar() => quote!((#l #operator #r)),
                    (Form::Int, Form::Uint) => {
                        quote!((i128::from(#l) #operator i128::from(#r)))
                    }
                    (Form::Uint, Form::Int) => {
                        quote!((i128::from(#l) #operator i128::from(#r)))
                    }
                    (Form::Int | Form::Uint, Form::Double) => quote!(((#l as f64) #operator #r)),
                    (Form::Double, Form::Int | Form::Uint) => quote!((#l #operator (#r as f64))),
                    _ => return unsupported("ordering values of these types", span),
                };
                Ok(Code::new(tokens, Form::Bool, fallible))
            }
            BinaryOp::In => self.compile_in(&left, &right, span),
            BinaryOp::Add
            | BinaryOp::Subtract
            | BinaryOp::Multiply
            | BinaryOp::Divide
            | BinaryOp::Remainder => {
                let (function, form) = match (op, &left.form, &right.form) {
                    (BinaryOp::Add, Form::Int, Form::Int) => (quote!(add_int), Form::Int),
                    (BinaryOp::Subtract, Form::Int, Form::Int) => (quote!(sub_int), Form::Int),
                    (BinaryOp::Multiply, Form::Int, Form::Int) => (quote!(mul_int), Form::Int),
                    (BinaryOp::Divide, Form::Int, Form::Int) => (quote!(div_int), Form::Int),
                    (BinaryOp::Remainder, Form::Int, Form::Int) => (quote!(rem_int), Form::Int),
                    (BinaryOp::Add, Form::Uint, Form::Uint) => (quote!(add_uint), Form::Uint),
                    (BinaryOp::Subtract, Form::Uint, Form::Uint) => (quote!(sub_uint), Form::Uint),
                    (BinaryOp::Multiply, Form::Uint, Form::Uint) => (quote!(mul_uint), Form::Uint),
                    (BinaryOp::Divide, Form::Uint, Form::Uint) => (quote!(div_uint), Form::Uint),
                    (BinaryOp::Remainder, Form::Uint, Form::Uint) => (quote!(rem_uint), Form::Uint),
                    (BinaryOp::Add, Form::Timestamp, Form::Duration) => {
                        (quote!(add_timestamp), Form::Timestamp)
                    }
                    (BinaryOp::Add, Form::Duration, Form::Timestamp) => {
                        return Ok(Code::new(
                            quote!(#support::add_timestamp(#r, #l)?),
                            Form::Timestamp,
                            true,
                        ));
                    }
                    (BinaryOp::Subtract, Form::Timestamp, Form::Duration) => {
                        (quote!(sub_timestamp_duration), Form::Timestamp)
                    }
                    (BinaryOp::Subtract, Form::Timestamp, Form::Timestamp) => {
                        (quote!(sub_timestamps), Form::Duration)
                    }
                    (BinaryOp::Add, Form::Duration, Form::Duration) => {
                        (quote!(add_durations), Form::Duration)
                    }
                    (BinaryOp::Subtract, Form::Duration, Form::Duration) => {
                        (quote!(sub_durations), Form::Duration)
                    }
                    (_, Form::Double, Form::Double) if op != BinaryOp::Remainder => {
                        let operator = match op {
                            BinaryOp::Add => quote!(+),
                            BinaryOp::Subtract => quote!(-),
                            BinaryOp::Multiply => quote!(*),
                            _ => quote!(/),
                        };
                        return Ok(Code::new(quote!((#l #operator #r)), Form::Double, fallible));
                    }
                    (BinaryOp::Add, a, b) if a.is_string() && b.is_string() => {
                        let (ls, rs) = (left.as_str(), right.as_str());
                        return Ok(Code::new(
                            quote!(__meter.built_string({
                                let mut __text = ::std::string::String::from(__meter.str(#ls));
                                __text.push_str(__meter.str(#rs));
                                __text
                            })),
                            Form::OwnedStr,
                            fallible,
                        ));
                    }
                    _ => return unsupported("arithmetic on these types", span),
                };
                Ok(Code::new(quote!(#support::#function(#l, #r)?), form, true))
            }
        }
    }

    fn compile_in(&mut self, left: &Code, right: &Code, span: Span) -> Result<Code, CompileError> {
        let Form::List(element, kind) = &right.form else {
            return unsupported("`in` on a non-list value", span);
        };
        let fallible = left.fallible || right.fallible;
        let r = &right.tokens;
        let item = quote!(__item);
        let (converted, element_form) = list_item(&item, element, *kind, span)?;
        let element_code = Code::new(converted, element_form, false);
        let needle = Code::new(quote!(__needle), left.form.clone(), false);
        let equal = equality(&needle, &element_code, span)?;
        let l = &left.tokens;
        // The interpreter counts the needle's bytes and the list's length (the string
        // comparisons below count each item's bytes as well: more, never less).
        let count_needle = if left.form.is_string() {
            quote!(__meter.str(&__needle);)
        } else {
            quote!()
        };
        Ok(Code::new(
            quote!({
                let __needle = #l;
                #count_needle
                __meter.list(&(#r)[..]).iter().any(|__item| #equal)
            }),
            Form::Bool,
            fallible,
        ))
    }

    fn compile_call(
        &mut self,
        target: Option<&Expr>,
        function: &str,
        args: &[Expr],
        span: Span,
    ) -> Result<Code, CompileError> {
        let support = support();
        let target_code = match target {
            Some(target) => Some(self.compile(target)?),
            None => None,
        };
        let mut arg_codes = Vec::new();
        for argument in args {
            arg_codes.push(self.compile(argument)?);
        }
        let mut all: Vec<&Code> = Vec::new();
        if let Some(target) = &target_code {
            all.push(target);
        }
        all.extend(arg_codes.iter());
        let fallible = all.iter().any(|code| code.fallible);
        let forms: Vec<&Form> = all.iter().map(|code| &code.form).collect();
        let is_member = target.is_some();
        let ok = |tokens: TokenStream, form: Form| Ok(Code::new(tokens, form, fallible));
        let failing = |tokens: TokenStream, form: Form| Ok(Code::new(tokens, form, true));
        match (function, all.as_slice()) {
            ("size", [value]) => {
                let tokens = &value.tokens;
                match forms.first() {
                    Some(Form::Str | Form::OwnedStr) => {
                        let text = value.as_str();
                        ok(quote!(#support::size_str(__meter.str(#text))), Form::Int)
                    }
                    Some(Form::List(..)) => ok(
                        quote!(#support::size_len(__meter.list(&(#tokens)[..]).len())),
                        Form::Int,
                    ),
                    _ => unsupported("`size` of this type", span),
                }
            }
            ("startsWith" | "endsWith" | "contains", [text, part])
                if is_member && text.form.is_string() && part.form.is_string() =>
            {
                let method = match function {
                    "startsWith" => quote!(starts_with),
                    "endsWith" => quote!(ends_with),
                    _ => quote!(contains),
                };
                let (t, p) = (text.as_str(), part.as_str());
                ok(quote!(__meter.str(#t).#method(__meter.str(#p))), Form::Bool)
            }
            ("matches", [text, pattern]) if text.form.is_string() && pattern.form.is_string() => {
                let text_str = text.as_str();
                let t = quote!(__meter.str(#text_str));
                let pattern_expr = if is_member { args.first() } else { args.get(1) };
                // The generated code spells the interpreter's limits (checked below at
                // compile time), so the two back ends refuse the same patterns.
                const _: () = assert!(
                    agentc_cel::REGEX_SIZE_LIMIT == 1 << 20
                        && agentc_cel::REGEX_DFA_SIZE_LIMIT == 1 << 22
                );
                let build = |pattern: TokenStream| {
                    quote!(::agentc::__private::regex::RegexBuilder::new(#pattern)
                        .size_limit(1 << 20)
                        .dfa_size_limit(1 << 22)
                        .build())
                };
                if let Some(constant) = pattern_expr.and_then(constant_string) {
                    self.statics += 1;
                    let name = format_ident!("PATTERN_{}", self.statics);
                    let built = build(literal_string(constant));
                    let pattern_steps =
                        TokenLiteral::u64_suffixed(constant.len() as u64 / BYTES_PER_STEP);
                    failing(
                        quote!({
                            __meter.steps(#pattern_steps);
                            static #name: ::std::sync::LazyLock<::std::result::Result<::agentc::__private::regex::Regex, ::agentc::__private::regex::Error>> =
                                ::std::sync::LazyLock::new(|| #built);
                            // The text first, as the interpreter reads (and counts) it
                            // even when the pattern is invalid.
                            match (#t, &*#name) {
                                (__text, Ok(__regex)) => __regex.is_match(__text),
                                (_, Err(_)) => return Err(#support::CelError::new("invalid regular expression")),
                            }
                        }),
                        Form::Bool,
                    )
                } else {
                    let pattern_str = pattern.as_str();
                    let built = build(quote!(__meter.str(#pattern_str)));
                    failing(
                        quote!(match (#t, {
                            __meter.steps(#support::budget::REGEX_COMPILE_STEPS);
                            #built
                        }) {
                            (__text, Ok(__regex)) => __regex.is_match(__text),
                            (_, Err(_)) => return Err(#support::CelError::new("invalid regular expression")),
                        }),
                        Form::Bool,
                    )
                }
            }
            ("lowerAscii" | "upperAscii", [text]) if is_member && text.form.is_string() => {
                let t = text.as_str();
                let method = if function == "lowerAscii" {
                    quote!(to_ascii_lowercase)
                } else {
                    quote!(to_ascii_uppercase)
                };
                ok(
                    quote!(__meter.built_string(__meter.str(#t).#method())),
                    Form::OwnedStr,
                )
            }
            ("trim", [text]) if is_member && text.form.is_string() => {
                let t = text.as_str();
                if text.form == Form::Str {
                    ok(quote!(__meter.built_str(__meter.str(#t).trim())), Form::Str)
                } else {
                    ok(
                        quote!(__meter.built_string(__meter.str(#t).trim().to_owned())),
                        Form::OwnedStr,
                    )
                }
            }
            ("int", [value]) if !is_member => {
                let v = &value.tokens;
                match &value.form {
                    Form::Int => ok(v.clone(), Form::Int),
                    Form::Double => failing(quote!(#support::int_from_double(#v)?), Form::Int),
                    Form::Uint => failing(
                        quote!(i64::try_from(#v).map_err(|_| #support::CelError::new("integer overflow in int(uint)"))?),
                        Form::Int,
                    ),
                    Form::Str | Form::OwnedStr => {
                        let t = value.as_str();
                        failing(
                            quote!(__meter.str(#t).parse::<i64>().map_err(|_| #support::CelError::new("cannot convert to int"))?),
                            Form::Int,
                        )
                    }
                    _ => unsupported("`int` of this type", span),
                }
            }
            ("double", [value]) if !is_member => {
                let v = &value.tokens;
                match &value.form {
                    Form::Double => ok(v.clone(), Form::Double),
                    Form::Int | Form::Uint => ok(quote!((#v as f64)), Form::Double),
                    Form::Str | Form::OwnedStr => {
                        let t = value.as_str();
                        failing(
                            quote!(__meter.str(#t).parse::<f64>().map_err(|_| #support::CelError::new("cannot convert to double"))?),
                            Form::Double,
                        )
                    }
                    _ => unsupported("`double` of this type", span),
                }
            }
            ("string", [value]) if !is_member => {
                let v = &value.tokens;
                match &value.form {
                    Form::Str => ok(
                        quote!(__meter.built_string(__meter.str(#v).to_owned())),
                        Form::OwnedStr,
                    ),
                    Form::OwnedStr => ok(
                        quote!({
                            let __text = #v;
                            __meter.str(&__text);
                            __meter.built_string(__text)
                        }),
                        Form::OwnedStr,
                    ),
                    Form::Int | Form::Uint | Form::Bool => ok(
                        quote!(__meter.built_string((#v).to_string())),
                        Form::OwnedStr,
                    ),
                    _ => unsupported("`string` of this type", span),
                }
            }
            ("timestamp", [value]) if !is_member && value.form.is_string() => {
                let t = value.as_str();
                failing(
                    quote!(#support::parse_timestamp(__meter.str(#t))?),
                    Form::Timestamp,
                )
            }
            ("duration", [value]) if !is_member && value.form.is_string() => {
                let t = value.as_str();
                failing(
                    quote!(#support::parse_duration(__meter.str(#t))?),
                    Form::Duration,
                )
            }
            (
                "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
                | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
                [value, rest @ ..],
            ) if is_member => {
                let field = match function {
                    "getFullYear" => quote!(FullYear),
                    "getMonth" => quote!(Month),
                    "getDate" => quote!(Date),
                    "getDayOfMonth" => quote!(DayOfMonth),
                    "getDayOfWeek" => quote!(DayOfWeek),
                    "getDayOfYear" => quote!(DayOfYear),
                    "getHours" => quote!(Hours),
                    "getMinutes" => quote!(Minutes),
                    "getSeconds" => quote!(Seconds),
                    _ => quote!(Milliseconds),
                };
                let v = &value.tokens;
                match (&value.form, rest) {
                    (Form::Timestamp, []) => failing(
                        quote!(#support::timestamp_field(#v, #support::TimestampField::#field, None)?),
                        Form::Int,
                    ),
                    (Form::Timestamp, [zone]) if zone.form.is_string() => {
                        let zone_str = zone.as_str();
                        let z = quote!(__meter.str(#zone_str));
                        failing(
                            quote!(#support::timestamp_field(#v, #support::TimestampField::#field, Some(#z))?),
                            Form::Int,
                        )
                    }
                    (Form::Duration, []) => failing(
                        quote!(#support::duration_field(#v, #support::TimestampField::#field)?),
                        Form::Int,
                    ),
                    _ => unsupported(format!("`{function}` on these types"), span),
                }
            }
            _ => unsupported(
                format!("the function `{function}` with these argument types"),
                span,
            ),
        }
    }

    fn compile_comprehension(
        &mut self,
        comprehension: &Comprehension,
        span: Span,
    ) -> Result<Code, CompileError> {
        if comprehension.second_variable.is_some() {
            return unsupported("two-variable comprehensions", span);
        }
        if !is_identifier(&format!("v_{}", comprehension.variable)) {
            return unsupported("this comprehension variable name", span);
        }
        let range = self.compile(&comprehension.range)?;
        let Form::List(element, kind) = &range.form else {
            return unsupported("a comprehension over a non-list value", span);
        };
        let item = quote!(__item);
        let (converted, variable_form) = list_item(&item, element, *kind, span)?;
        let borrows_temporary = *kind != ListKind::Slice && **element == Form::OwnedStr;
        let variable = format_ident!("v_{}", comprehension.variable);
        self.scopes
            .push((comprehension.variable.clone(), variable_form.clone()));
        let filter = comprehension
            .filter
            .as_ref()
            .map(|filter| self.compile(filter));
        let body = self.compile(&comprehension.body);
        self.scopes.pop();
        let filter = filter.transpose()?;
        let body = body?;
        let r = &range.tokens;
        let b = &body.tokens;
        let support = support();
        let kind_name = comprehension.kind;
        // Each iteration counts its body's and filter's nodes (see `node_steps`); once the
        // meter has run out, the loop stops, its result to be thrown away.
        let body_steps = TokenLiteral::u64_suffixed(
            node_steps(&comprehension.body)
                .saturating_add(comprehension.filter.as_ref().map_or(0, node_steps)),
        );
        let next = quote!(if !__meter.iteration(#body_steps) { break; });
        if matches!(
            kind_name,
            ComprehensionKind::All
                | ComprehensionKind::Exists
                | ComprehensionKind::ExistsOne
                | ComprehensionKind::Filter
        ) && body.form != Form::Bool
        {
            return unsupported("a non-bool predicate", span);
        }
        let tokens = match kind_name {
            ComprehensionKind::All | ComprehensionKind::Exists => {
                let is_all = kind_name == ComprehensionKind::All;
                if !body.fallible {
                    let method = if is_all { quote!(all) } else { quote!(any) };
                    // Out of budget: the answer that stops the iteration.
                    let stop = !is_all;
                    quote!((#r).iter().#method(|__item| {
                        if !__meter.iteration(#body_steps) {
                            return #stop;
                        }
                        let #variable = #converted;
                        #b
                    }))
                } else {
                    let decisive = !is_all;
                    let body_result = body.as_result();
                    quote!({
                        let mut __decided = false;
                        let mut __error: ::std::option::Option<#support::CelError> = None;
                        for __item in (#r).iter() {
                            #next
                            let #variable = #converted;
                            match #body_result {
                                Ok(#decisive) => {
                                    __decided = true;
                                    break;
                                }
                                Ok(_) => {}
                                Err(__failure) => {
                                    if __error.is_none() {
                                        __error = Some(__failure);
                                    }
                                }
                            }
                        }
                        if __decided {
                            #decisive
                        } else if let Some(__failure) = __error {
                            return Err(__failure);
                        } else {
                            !#decisive
                        }
                    })
                }
            }
            ComprehensionKind::ExistsOne => quote!({
                let mut __count: usize = 0;
                for __item in (#r).iter() {
                    #next
                    let #variable = #converted;
                    if #b {
                        __count += 1;
                    }
                }
                __count == 1
            }),
            ComprehensionKind::Filter => {
                if borrows_temporary {
                    return unsupported("`filter` over a computed list of strings", span);
                }
                quote!({
                    let mut __out = ::std::vec::Vec::new();
                    for __item in (#r).iter() {
                        #next
                        let #variable = #converted;
                        if #b {
                            __out.push(#variable);
                        }
                    }
                    __meter.built_list(__out)
                })
            }
            ComprehensionKind::Map => {
                if borrows_temporary {
                    return unsupported("`map` over a computed list of strings", span);
                }
                if matches!(body.form, Form::List(..)) {
                    return unsupported("`map` producing lists", span);
                }
                let push = match &filter {
                    Some(filter) => {
                        if filter.form != Form::Bool {
                            return unsupported("a non-bool filter", span);
                        }
                        let f = &filter.tokens;
                        quote!(if #f { __out.push(#b); })
                    }
                    None => quote!(__out.push(#b);),
                };
                quote!({
                    let mut __out = ::std::vec::Vec::new();
                    for __item in (#r).iter() {
                        #next
                        let #variable = #converted;
                        #push
                    }
                    __meter.built_list(__out)
                })
            }
            ComprehensionKind::TransformList | ComprehensionKind::TransformMap => {
                return unsupported("`transformList` and `transformMap`", span);
            }
        };
        let form = match kind_name {
            ComprehensionKind::Filter => Form::List(Box::new(variable_form), ListKind::Vec),
            ComprehensionKind::Map => Form::List(Box::new(body.form.clone()), ListKind::Vec),
            _ => Form::Bool,
        };
        let fallible = range.fallible
            || match kind_name {
                ComprehensionKind::All | ComprehensionKind::Exists => body.fallible,
                _ => body.fallible || filter.as_ref().is_some_and(|filter| filter.fallible),
            };
        Ok(Code::new(tokens, form, fallible))
    }
}

/// CEL equality between two compiled values, as a `bool` expression.
fn equality(left: &Code, right: &Code, span: Span) -> Result<TokenStream, CompileError> {
    let (l, r) = (&left.tokens, &right.tokens);
    let support = support();
    Ok(match (&left.form, &right.form) {
        (a, b) if a.is_string() && b.is_string() => {
            let (ls, rs) = (left.as_str(), right.as_str());
            quote!((__meter.str(#ls) == __meter.str(#rs)))
        }
        (a, b) if a == b && a.is_copy_scalar() => quote!((#l == #r)),
        (Form::Int, Form::Double) => quote!(#support::int_eq_double(#l, #r)),
        (Form::Double, Form::Int) => quote!(#support::int_eq_double(#r, #l)),
        (Form::Uint, Form::Double) => quote!(((#l as f64) == #r)),
        (Form::Double, Form::Uint) => quote!((#l == (#r as f64))),
        (Form::Int, Form::Uint) | (Form::Uint, Form::Int) => {
            quote!((i128::from(#l) == i128::from(#r)))
        }
        (a, b) if a.is_numeric() && b.is_numeric() => {
            return unsupported("comparing these numbers", span);
        }
        (a, b) if a.cel_type().is_compatible_with(&b.cel_type()) => {
            return unsupported("equality of lists or objects", span);
        }
        // Values of different types are never equal.
        _ => quote!({
            let _ = (#l, #r);
            false
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn layout() -> ObjectType {
        let input = agentc_cel::type_from_json_schema(&serde_json::json!({
            "type": "object",
            "properties": {
                "knowledge_base_id": {"type": "string"},
                "query": {"type": "string"},
                "owner": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["knowledge_base_id", "query"]
        }));
        engagement_layout(&[CapabilityTypes {
            name: "hr_kb_search".to_string(),
            input,
            output: Type::Dyn,
            collects_results: true,
        }])
    }

    fn compile_text(source: &str) -> Result<String, CompileError> {
        let expr = agentc_cel::parse(source).unwrap();
        let function = compile_function("check", &expr, "Engagement", &layout())?;
        format_tokens(function.tokens)
    }

    #[test]
    fn compiles_a_prefix_check_to_field_access() {
        let text =
            compile_text("recent.hr_kb_search.inputs.knowledge_base_id.startsWith('acme/hr/')")
                .unwrap();
        assert!(text.contains(".as_str()"), "{text}");
        assert!(text.contains("starts_with"), "{text}");
        assert_eq!(
            text,
            compile_text("recent.hr_kb_search.inputs.knowledge_base_id.startsWith('acme/hr/')")
                .unwrap()
        );
    }

    #[test]
    fn dynamic_values_are_reported_not_compiled() {
        let error = compile_text("recent.hr_kb_search.outputs.x == 1").unwrap_err();
        assert!(error.message.contains("dynamic"), "{error}");
        assert!(compile_text("{'a': 1}.size() == 1").is_err());
    }

    #[test]
    fn a_field_that_may_be_null_is_left_to_the_interpreter() {
        // The checker types `owner` as a string; compiled code would store it as an
        // `Option<String>`, where `null` and absent are one, while `has()` tells them
        // apart in the interpreter. So it stays dynamic and is not compiled.
        let error = compile_text("recent.hr_kb_search.inputs.owner == 'me'").unwrap_err();
        assert!(error.message.contains("dynamic"), "{error}");
        assert!(compile_text("recent.hr_kb_search.inputs.query == 'me'").is_ok());
    }

    #[test]
    fn struct_names_follow_the_layout() {
        let text = format_tokens(struct_definitions("Engagement", &layout())).unwrap();
        assert!(text.contains("pub struct Engagement"), "{text}");
        assert!(text.contains("pub struct HrKbSearchInvocation"), "{text}");
        assert!(text.contains("#[serde(rename = \"_list\")]"), "{text}");
        assert!(
            text.contains(
                "pub email: ::std::option::Option<::agentc::__private::agentc_cel_support::Text>"
            ),
            "{text}"
        );
    }
}

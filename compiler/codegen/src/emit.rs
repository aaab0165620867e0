//! IR → Rust tokens. Everything emitted refers to its own items by relative paths (and
//! to dependencies by absolute ones), so the same tokens serve as a crate's `lib.rs`
//! and as the body of a module that the proc macro expands.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use agentc_cel::{ObjectType, Type};
use agentc_cel_compile::{
    CompiledFunction, FieldReads, compile_assertion, compile_function, engagement_layout,
    prune_layout, rust_field_names, struct_definitions, struct_object_names,
};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

use crate::ir::{AgentIr, CapabilityIr, GuardrailIr, RestrictionIr, SetIr, TargetIr, ToolIr};
use crate::schemas;

const PRELUDE: &str = include_str!("prelude.rs.in");

const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// A snake-case identifier for an OAS-N1 name (which may start with a digit or be a
/// keyword).
pub fn snake_ident(name: &str) -> Ident {
    let mut text = name.to_string();
    if text.starts_with(|character: char| character.is_ascii_digit()) {
        text.insert_str(0, "n_");
    }
    if RUST_KEYWORDS.contains(&text.as_str()) {
        text.push('_');
    }
    Ident::new(&text, Span::call_site())
}

/// A CamelCase type name for an OAS-N1 name.
pub fn camel(name: &str) -> String {
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
        out.insert(0, 'N');
    }
    out
}

/// One `#[doc]` attribute per line, so that prettyplease prints `///` comments.
fn docs(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| format!(" {line}"));
    quote!(#(#[doc = #lines])*)
}

/// `text` as a raw string literal (`r#"…"#`, with as many `#`s as it needs), so that
/// embedded JSON reads as JSON in the generated code.
fn raw_string(text: &str) -> Literal {
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    // With more `#`s than any `"#…` run in the text, the literal ends where it should;
    // should the lexer still refuse it, the escaped form means the same.
    Literal::from_str(&format!("r{hashes}\"{text}\"{hashes}"))
        .unwrap_or_else(|_| Literal::string(text))
}

fn ident(text: &str) -> Ident {
    Ident::new(text, Span::call_site())
}

/// Generates named Rust types for CEL types: serde derives, and a `JsonSchema` impl that
/// reports the schema the type came from (see [`crate::schemas`]).
#[derive(Default)]
struct TypeGen {
    items: Vec<TokenStream>,
    taken: BTreeSet<String>,
}

impl TypeGen {
    /// The Rust type for `ty`, declaring the structs it needs. `schema` is the part of a
    /// tool document's JSON Schema that `ty` was translated from, when there is one.
    fn rust_type(
        &mut self,
        ty: &Type,
        schema: Option<&serde_json::Value>,
        hint: &str,
        doc: Option<&str>,
    ) -> TokenStream {
        match ty {
            Type::Bool => quote!(bool),
            Type::Int => quote!(i64),
            Type::Uint => quote!(u64),
            Type::Double => quote!(f64),
            // Timestamps and durations travel as their JSON text forms.
            Type::String | Type::Timestamp | Type::Duration => quote!(::std::string::String),
            Type::List(element) => {
                let element = self.rust_type(
                    element,
                    schemas::items(schema),
                    &format!("{hint}Item"),
                    None,
                );
                quote!(::std::vec::Vec<#element>)
            }
            Type::Map(key, value) if **key == Type::String => {
                let value = self.rust_type(
                    value,
                    schemas::additional_properties(schema),
                    &format!("{hint}Value"),
                    None,
                );
                quote!(::std::collections::BTreeMap<::std::string::String, #value>)
            }
            Type::Object(object) => {
                let name = self.object(hint, object, schema, doc);
                quote!(#name)
            }
            _ => quote!(::agentc::__private::serde_json::Value),
        }
    }

    fn fresh(&mut self, hint: &str) -> Ident {
        let mut candidate = hint.to_string();
        let mut counter = 2;
        while self.taken.contains(&candidate) {
            candidate = format!("{hint}{counter}");
            counter += 1;
        }
        self.taken.insert(candidate.clone());
        ident(&candidate)
    }

    fn object(
        &mut self,
        hint: &str,
        object: &ObjectType,
        schema: Option<&serde_json::Value>,
        doc: Option<&str>,
    ) -> Ident {
        let name = self.fresh(hint);
        let names = rust_field_names(object);
        let mut fields = Vec::new();
        for (cel_name, field) in &object.fields {
            let rust_name = names
                .get(cel_name)
                .cloned()
                .unwrap_or_else(|| cel_name.clone());
            let field_ident = ident(&rust_name);
            let ty = self.rust_type(
                &field.ty,
                schemas::property(schema, cel_name),
                &format!("{hint}{}", camel(cel_name)),
                None,
            );
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
            fields.push(quote! {
                #[serde(flatten)]
                pub extra_fields: ::std::collections::BTreeMap<::std::string::String, ::agentc::__private::serde_json::Value>,
            });
        }
        let schema_text = raw_string(&schemas::struct_schema(object, schema, doc).to_string());
        let name_text = name.to_string();
        let doc = doc.map_or_else(
            || format!(" The object `{}`.", object.name),
            |doc| format!(" {doc}"),
        );
        self.items.push(quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, ::agentc::__private::serde::Serialize, ::agentc::__private::serde::Deserialize)]
            #[serde(crate = "::agentc::__private::serde")]
            pub struct #name {
                #(#fields)*
            }
            impl ::agentc::__private::schemars::JsonSchema for #name {
                fn schema_name() -> ::std::borrow::Cow<'static, str> {
                    ::std::borrow::Cow::Borrowed(#name_text)
                }
                fn schema_id() -> ::std::borrow::Cow<'static, str> {
                    ::std::borrow::Cow::Borrowed(::std::concat!(::std::module_path!(), "::", #name_text))
                }
                fn json_schema(_: &mut ::agentc::__private::schemars::SchemaGenerator) -> ::agentc::__private::schemars::Schema {
                    support::json_schema(#schema_text)
                }
            }
        });
        name
    }
}

/// Where a compiled check's typed root comes from.
#[derive(Clone, Copy)]
enum CheckRoot {
    /// The agent's engagement: the roots the check reads converted from their
    /// variables (an unbound root denies), the others left at their defaults, which the
    /// check never reads.
    Engagement,
    /// A guardrail tool's output fields, each read from its variable (OAS-G4).
    GuardrailFields,
}

/// What kind of CEL item a check is, for its compiled function.
#[derive(Clone, Copy)]
enum CheckKind {
    Assertion,
    Selection,
}

/// One CEL expression turned into a `fn <name>_check() -> Result<Arc<dyn Check>,
/// SetupError>`: compiled over the typed root when the compiler can, interpreted
/// otherwise, as its doc comment says. `depth` is how many modules deep the function
/// sits below the generated root.
#[derive(Clone, Copy)]
struct CheckSite<'a> {
    function: &'a str,
    text: &'a str,
    root_name: &'a str,
    layout: &'a ObjectType,
    root: CheckRoot,
    kind: CheckKind,
    depth: usize,
}

fn up(depth: usize) -> TokenStream {
    let supers = (0..depth).map(|_| quote!(super::));
    quote!(#(#supers)*)
}

/// A site's expression, parsed and compiled over its layout; the error is why it must be
/// interpreted instead.
fn compile_site(site: &CheckSite<'_>) -> Result<CompiledFunction, String> {
    let expr = agentc_cel::parse(site.text).map_err(|_| "it does not parse".to_string())?;
    match site.kind {
        CheckKind::Assertion => {
            compile_assertion(site.function, &expr, site.root_name, site.layout)
        }
        CheckKind::Selection => compile_function(site.function, &expr, site.root_name, site.layout),
    }
    .map_err(|error| error.message)
}

/// `layout` pruned to the fields that the sites which compile over it read (see
/// [`prune_layout`]): the checks are then emitted over the pruned layout, so that a
/// generated crate has structs, conversions and copies only for what its compiled
/// checks look at. A site that does not compile reads nothing here; it is interpreted
/// over the runtime's whole engagement.
fn pruned_for(sites: &[CheckSite<'_>], layout: &ObjectType) -> ObjectType {
    let mut reads = FieldReads::default();
    for site in sites {
        if let Ok(compiled) = compile_site(&CheckSite { layout, ..*site }) {
            reads.extend(&compiled.reads);
        }
    }
    prune_layout(layout, &reads)
}

/// The fields of a layout's structs, numbered for `cel_roots::Reads` in the order
/// [`cel_structs`] writes their conversions: each field's object type and CEL name.
#[derive(Default)]
struct FieldNumbers {
    fields: Vec<(String, String)>,
}

impl FieldNumbers {
    /// The bits of the fields that `reads` holds.
    fn bits(&self, reads: &FieldReads) -> Vec<u64> {
        self.bits_where(|object, field| reads.contains(object, field))
    }

    /// Whether every field in `reads` has a number.
    fn numbers_all_of(&self, reads: &FieldReads) -> bool {
        reads.iter().all(|(object, field)| {
            self.fields.iter().any(|(numbered_object, numbered_field)| {
                numbered_object == object && numbered_field == field
            })
        })
    }

    /// The bits of every field.
    fn every_field(&self) -> Vec<u64> {
        self.bits_where(|_, _| true)
    }

    fn bits_where(&self, read: impl Fn(&str, &str) -> bool) -> Vec<u64> {
        let mut words = vec![0u64; self.fields.len().div_ceil(64)];
        for (number, (object, field)) in self.fields.iter().enumerate() {
            if read(object, field)
                && let Some(word) = words.get_mut(number / 64)
            {
                *word |= 1 << (number % 64);
            }
        }
        words
    }
}

/// The `Reads` of a compiled check: the fields its code reads, as the compiler recorded
/// them. They are trusted only once the check compiles again over a layout that holds
/// those fields and nothing else (code that reached any other field would not compile
/// there), and only when each of them has a number (a read the numbering missed would
/// otherwise be left at its default); a check that fails either test is given every
/// field, which is never wrong, only slower.
fn check_reads(
    site: &CheckSite<'_>,
    compiled: &CompiledFunction,
    numbers: &FieldNumbers,
) -> TokenStream {
    let alone = prune_layout(site.layout, &compiled.reads);
    let proven = compile_site(&CheckSite {
        layout: &alone,
        ..*site
    })
    .is_ok();
    let words = if proven && numbers.numbers_all_of(&compiled.reads) {
        numbers.bits(&compiled.reads)
    } else {
        numbers.every_field()
    };
    let words = words.into_iter().map(|word| {
        Literal::from_str(&format!("{word:#x}")).unwrap_or_else(|_| Literal::u64_unsuffixed(word))
    });
    quote!(::agentc::__private::agentc_generated_support::cel_roots::Reads::new(&[#(#words),*]))
}

fn emit_check(site: &CheckSite<'_>, numbers: &FieldNumbers) -> TokenStream {
    let up = up(site.depth);
    let check_name = ident(&format!("{}_check", site.function));
    let text = site.text;
    let interpreted = |reason: String| {
        let doc = docs(&format!(
            "`{}`\n\nInterpreted by the runtime: the CEL compiler cannot compile this expression ({reason}).",
            site.text.replace('`', "'")
        ));
        quote! {
            #doc
            pub fn #check_name() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, #up SetupError> {
                #up support::interpreted(#text)
            }
        }
    };
    let compiled = match compile_site(site) {
        Ok(compiled) => compiled,
        Err(reason) => return interpreted(reason),
    };
    // The roots the compiled function reads, as the compiler recorded them.
    let roots: Vec<&str> = compiled.reads.fields_of(&site.layout.name).collect();
    let root_ident = ident(site.root_name);
    let function = ident(site.function);
    // `match`es rather than `?`, `map` and `map_err`, which would each be one more
    // generic function instantiated per check (see `from_cel_impl`).
    // The meter counts the compiled code's work; once it has run out, `settle` turns
    // the result into the error that hands the check to the interpreter (see
    // `agentc_cel_support::budget`).
    let to_value = match site.kind {
        CheckKind::Assertion => quote! {
            let meter = ::agentc::__private::agentc_cel_support::Meter::new();
            let result = #function(&root, &meter);
            match meter.settle(result) {
                Ok(verdict) => Ok(::agentc::__private::agentc_cel::Value::Bool(verdict)),
                Err(error) => Err(#up support::denial(error)),
            }
        },
        CheckKind::Selection => quote! {
            let meter = ::agentc::__private::agentc_cel_support::Meter::new();
            let result = #function(&root, &meter);
            match meter.settle(result) {
                Ok(selected) => #up support::cel_value(selected),
                Err(error) => Err(#up support::denial(error)),
            }
        },
    };
    // An engagement check converts only the roots it reads, each from the runtime's
    // value; the other roots of the agent's layout are never looked at, so they are
    // their cheap defaults. So are the fields of the structs below them that the check
    // does not read (see `check_reads`). A guardrail's root is its tool's output
    // fields, all of them read from the variables.
    let reads = check_reads(site, &compiled, numbers);
    let build_root = if let CheckRoot::Engagement = site.root {
        let assignments = roots.iter().map(|root| {
            let field = ident(root);
            // `recent` is read field by field (see `from_root_fields_impl`).
            let read = if *root == "recent" {
                quote!(::agentc::__private::agentc_generated_support::cel_roots::root_by_fields(variables, #root, reads))
            } else {
                quote!(::agentc::__private::agentc_generated_support::cel_roots::root(variables, #root, reads))
            };
            quote! {
                #field: match #read {
                    Ok(value) => value,
                    Err(error) => return Err(error),
                },
            }
        });
        let rest = if roots.len() < site.layout.fields.len() {
            quote!(..::std::default::Default::default())
        } else {
            quote!()
        };
        quote! {
            let reads = #reads;
            let root = #root_ident { #(#assignments)* #rest };
        }
    } else {
        quote! {
            let reads = #reads;
            let root: #root_ident = match ::agentc::__private::agentc_generated_support::cel_roots::fields(variables, &[#(#roots),*], reads) {
                Ok(root) => root,
                Err(error) => return Err(error),
            };
        }
    };
    let tokens = compiled.tokens;
    let evaluate_name = ident(&format!("{}_evaluate", site.function));
    let evaluate_doc = format!(
        " Evaluates [`{}`] over the engagement's variables.",
        site.function
    );
    let doc = docs(&format!(
        "`{}`\n\nCompiled to Rust: [`{}`].",
        site.text.replace('`', "'"),
        site.function
    ));
    quote! {
        #tokens

        #[doc = #evaluate_doc]
        fn #evaluate_name(variables: &dyn ::agentc::__private::agentc_runtime::VariableSource) -> ::std::result::Result<::agentc::__private::agentc_cel::Value, ::agentc::__private::agentc_runtime::CheckError> {
            #build_root
            #to_value
        }

        #doc
        pub fn #check_name() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, #up SetupError> {
            Ok(::agentc::__private::agentc_generated_support::cel_roots::compiled(
                &[#(#roots),*],
                #evaluate_name,
                #up support::interpreter(#text)?,
            ))
        }
    }
}

/// What a set of layout structs is for, which decides which of them convert whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CelStructsFor {
    /// An agent's engagement: the root `Engagement` gets no `FromCel`, since a check
    /// builds it from the roots it reads and defaults for the others.
    Engagement,
    /// A guardrail's output fields, converted whole.
    GuardrailFields,
}

/// The structs of a layout, with their conversions, and their fields numbered for the
/// checks' `Reads` (see [`cel_structs`]).
fn layout_structs(
    root_name: &str,
    layout: &ObjectType,
    purpose: CelStructsFor,
) -> (TokenStream, FieldNumbers) {
    cel_structs(
        struct_definitions(root_name, layout),
        &struct_object_names(root_name, layout),
        purpose,
    )
}

/// The structs a compiled check reads, made cheap to compile: each gets a small
/// non-generic `FromCel` impl (the typed root is built straight from the runtime's CEL
/// values by `agentc_generated_support::cel_roots`) and derives only `Default`, the
/// value of a field that a check does not read. Compiled CEL reaches into objects only
/// by field access: it never copies, compares or returns one (the CEL compiler refuses
/// object equality and object results, which are interpreted instead). So `Clone`,
/// `PartialEq`, `Debug` and serde's derives (with their field attributes) are dropped:
/// their impls were most of what a generated crate cost to compile, and nothing reads
/// them.
///
/// Each field a conversion reads by name is numbered, struct after struct in the order
/// they are written, and converted only when the check's `Reads` has its bit; the
/// numbers are returned with the object type (`object_names`, by struct name) and CEL
/// name of each field.
fn cel_structs(
    structs: TokenStream,
    object_names: &BTreeMap<String, String>,
    purpose: CelStructsFor,
) -> (TokenStream, FieldNumbers) {
    let mut numbers = FieldNumbers::default();
    let Ok(mut file) = syn::parse2::<syn::File>(structs.clone()) else {
        return (structs, numbers);
    };
    let engagement = purpose == CelStructsFor::Engagement;
    let recent = recent_struct_name(&file);
    let mut impls = Vec::new();
    for item in &mut file.items {
        let syn::Item::Struct(item) = item else {
            continue;
        };
        // The serde derives and their container attribute go: these structs are read by
        // `FromCel` conversions, not deserialized.
        item.attrs.retain(|attribute| {
            !attribute.path().is_ident("derive") && !attribute.path().is_ident("serde")
        });
        item.attrs
            .push(syn::parse_quote!(#[derive(::std::default::Default)]));
        let first_number = numbers.fields.len();
        let object_name = object_names
            .get(&item.ident.to_string())
            .cloned()
            .unwrap_or_else(|| item.ident.to_string());
        for (_, cel_name, flatten) in cel_fields(item) {
            if !flatten {
                numbers.fields.push((object_name.clone(), cel_name));
            }
        }
        // The conversion reads the field attributes, so it is written before they go.
        // `recent`'s struct is read field by field, and whole only when it has a
        // flattened field (see `from_root_fields_impl`).
        let is_recent = recent.as_ref() == Some(&item.ident);
        let is_root = engagement && item.ident == "Engagement";
        let read_by_fields_only = is_recent && !has_flattened_field(item);
        if !is_root && !read_by_fields_only {
            impls.push(from_cel_impl(item, first_number));
        }
        if is_recent {
            impls.push(from_root_fields_impl(item, first_number));
        }
        for field in &mut item.fields {
            field
                .attrs
                .retain(|attribute| !attribute.path().is_ident("serde"));
        }
    }
    (
        quote! {
            #file
            #(#impls)*
        },
        numbers,
    )
}

/// The fields of one struct of a check's layout: the Rust name, the CEL name (the
/// `serde(rename)`, else the field's name), and whether it is flattened (it then takes
/// the keys the struct does not declare).
fn cel_fields(item: &syn::ItemStruct) -> Vec<(syn::Ident, String, bool)> {
    let mut fields = Vec::new();
    for field in &item.fields {
        let Some(field_ident) = &field.ident else {
            continue;
        };
        let mut cel_name = field_ident.to_string();
        let mut flatten = false;
        for attribute in field
            .attrs
            .iter()
            .filter(|attribute| attribute.path().is_ident("serde"))
        {
            let _ = attribute.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let text: syn::LitStr = meta.value()?.parse()?;
                    cel_name = text.value();
                } else if meta.path.is_ident("flatten") {
                    flatten = true;
                } else if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
        }
        fields.push((field_ident.clone(), cel_name, flatten));
    }
    fields
}

/// One field's value in a conversion: converted by `read` when the check's `reads` has
/// the field's bit, its default otherwise.
fn read_when_numbered(number: usize, read: TokenStream) -> TokenStream {
    let number = Literal::usize_unsuffixed(number);
    // A `match` rather than `?`: `?` calls `Try::branch` for `Result<T, _>`, one more
    // function instantiated per field type in every generated crate.
    quote! {
        if reads.field(#number) {
            match #read {
                Ok(value) => value,
                Err(error) => return Err(error),
            }
        } else {
            ::std::default::Default::default()
        }
    }
}

/// The name of a conversion's `reads` parameter: `_reads` where no field reads it.
fn reads_parameter(fields: &[TokenStream]) -> Ident {
    ident(if fields.is_empty() { "_reads" } else { "reads" })
}

/// `impl FromCel` for one struct of a check's layout: each field read by its CEL name
/// when the check reads it (its number is `first_number` plus its place among the
/// fields read by name); a flattened field takes the keys the struct does not declare.
fn from_cel_impl(item: &syn::ItemStruct, first_number: usize) -> TokenStream {
    let name = &item.ident;
    let mut declared = Vec::new();
    let mut fields = Vec::new();
    let mut flattened = Vec::new();
    for (field_ident, cel_name, flatten) in cel_fields(item) {
        if flatten {
            flattened.push(field_ident);
        } else {
            let value = read_when_numbered(
                first_number + fields.len(),
                quote!(::agentc::__private::agentc_generated_support::cel_roots::field(map, #cel_name, reads)),
            );
            fields.push(quote!(#field_ident: #value,));
            declared.push(cel_name);
        }
    }
    let extra = flattened.iter().map(|field_ident| {
        quote! {
            #field_ident: ::agentc::__private::agentc_generated_support::cel_roots::extra_fields(map, &[#(#declared),*])?,
        }
    });
    let body = if fields.is_empty() && flattened.is_empty() {
        quote! {
            ::agentc::__private::agentc_generated_support::cel_roots::object(value)?;
            Ok(#name {})
        }
    } else {
        quote! {
            let map = ::agentc::__private::agentc_generated_support::cel_roots::object(value)?;
            Ok(#name { #(#fields)* #(#extra)* })
        }
    };
    let reads = reads_parameter(&fields);
    quote! {
        impl ::agentc::__private::agentc_generated_support::cel_roots::FromCel for #name {
            fn from_cel(
                value: ::agentc::__private::agentc_generated_support::cel_roots::Source<'_>,
                #reads: ::agentc::__private::agentc_generated_support::cel_roots::Reads,
            ) -> ::std::result::Result<Self, ::agentc::__private::agentc_runtime::CheckError> {
                #body
            }
        }
    }
}

/// `impl FromRootFields` for the struct of the engagement's `recent`: each field the
/// check reads is read on its own from the variables (numbered from `first_number`, as
/// in [`from_cel_impl`]), so that a check does not make the runtime copy the `recent`
/// map to put the pending call in it, nor convert the calls of capabilities it does not
/// look at. A struct with a flattened field (not one the engagement layout writes for
/// `recent`) is read whole.
fn from_root_fields_impl(item: &syn::ItemStruct, first_number: usize) -> TokenStream {
    let name = &item.ident;
    let (body, reads) = if has_flattened_field(item) {
        (
            quote!(
                ::agentc::__private::agentc_generated_support::cel_roots::root(
                    variables, root, reads
                )
            ),
            ident("reads"),
        )
    } else {
        let fields: Vec<TokenStream> = cel_fields(item)
            .into_iter()
            .enumerate()
            .map(|(place, (field_ident, cel_name, _))| {
                let value = read_when_numbered(
                    first_number + place,
                    quote!(::agentc::__private::agentc_generated_support::cel_roots::root_field(variables, root, #cel_name, reads)),
                );
                quote!(#field_ident: #value,)
            })
            .collect();
        (quote!(Ok(#name { #(#fields)* })), reads_parameter(&fields))
    };
    quote! {
        impl ::agentc::__private::agentc_generated_support::cel_roots::FromRootFields for #name {
            fn from_root_fields(
                variables: &dyn ::agentc::__private::agentc_runtime::VariableSource,
                root: &str,
                #reads: ::agentc::__private::agentc_generated_support::cel_roots::Reads,
            ) -> ::std::result::Result<Self, ::agentc::__private::agentc_runtime::CheckError> {
                #body
            }
        }
    }
}

/// Whether a layout struct has a flattened field (an open object's `extra_fields`).
fn has_flattened_field(item: &syn::ItemStruct) -> bool {
    cel_fields(item).iter().any(|(_, _, flatten)| *flatten)
}

/// The name of the struct the engagement layout's `recent` field has, when `file` holds
/// an engagement layout (a struct `Engagement` with a field `recent`).
fn recent_struct_name(file: &syn::File) -> Option<syn::Ident> {
    file.items.iter().find_map(|item| {
        let syn::Item::Struct(item) = item else {
            return None;
        };
        if item.ident != "Engagement" {
            return None;
        }
        let field = item
            .fields
            .iter()
            .find(|field| field.ident.as_ref().is_some_and(|ident| ident == "recent"))?;
        let syn::Type::Path(path) = &field.ty else {
            return None;
        };
        Some(path.path.segments.last()?.ident.clone())
    })
}

struct Emitter<'a> {
    set: &'a SetIr,
    types: TypeGen,
    tool_types: Vec<(TokenStream, TokenStream)>,
    exposes_types: BTreeMap<String, Ident>,
}

/// The Rust items for a set (module-safe: no `crate::` paths, no inner attributes).
pub fn emit(set: &SetIr) -> Result<TokenStream, String> {
    let mut emitter = Emitter {
        set,
        types: TypeGen::default(),
        tool_types: Vec::new(),
        exposes_types: BTreeMap::new(),
    };
    emitter.check_names()?;
    let prelude = TokenStream::from_str(PRELUDE).map_err(|error| format!("prelude: {error}"))?;
    for tool in &set.tools {
        let base = camel(&tool.name);
        let input = emitter.types.rust_type(
            &tool.input,
            Some(&tool.input_schema),
            &format!("{base}Input"),
            Some(&format!(
                "The input of tool `{}`: {}",
                tool.name, tool.description
            )),
        );
        let output = emitter.types.rust_type(
            &tool.output,
            Some(&tool.output_schema),
            &format!("{base}Output"),
            Some(&format!("The output of tool `{}`.", tool.name)),
        );
        emitter.tool_types.push((input, output));
    }
    for agent in set.hosted() {
        let exposes = emitter.types.object(
            &format!("{}Exposes", camel(&agent.name)),
            &agent.exposes_type,
            None,
            Some(&format!(
                "What agent `{}` gives its caller beside its text (OAS-X1): these fields and nothing else.",
                agent.name
            )),
        );
        emitter.exposes_types.insert(agent.name.clone(), exposes);
    }
    let markers = emitter.markers();
    let mut agents = TokenStream::new();
    let mut policies = TokenStream::new();
    for agent in set.hosted() {
        agents.extend(emitter.agent(agent));
        policies.extend(emitter.policies(agent));
    }
    let types = &emitter.types.items;
    Ok(quote! {
        #prelude
        #(#types)*
        #markers
        #agents
        /// The agents' restrictions, guardrail assertions and exposes, compiled from CEL
        /// to Rust functions over typed engagements.
        // Errors are passed on with `match` rather than `?`, which costs one generic
        // instantiation per type to compile (see `from_cel_impl` in agentc-codegen).
        #[allow(clippy::question_mark)]
        pub mod policies {
            #policies
        }
    })
}

impl Emitter<'_> {
    /// Refuses sets whose names would collide in the generated code.
    fn check_names(&self) -> Result<(), String> {
        let mut capability_kinds: BTreeMap<&str, &str> = BTreeMap::new();
        for tool in &self.set.tools {
            capability_kinds.insert(&tool.name, "tool");
        }
        for agent in self.set.hosted() {
            for capability in &agent.capabilities {
                let kind = match capability.target {
                    TargetIr::Tool(_) => "tool",
                    TargetIr::Agent(_) => "agent",
                    TargetIr::Remote { .. } => "remote agent",
                };
                if let Some(existing) = capability_kinds.insert(&capability.name, kind)
                    && existing != kind
                {
                    return Err(format!(
                        "`{}` names both a {existing} and a {kind}; rename one to generate code",
                        capability.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The Rust types of a capability's input and output.
    fn capability_types(&self, capability: &CapabilityIr) -> (TokenStream, TokenStream) {
        match &capability.target {
            TargetIr::Tool(tool) => match self.tool_types.get(*tool) {
                Some((input, output)) => (input.clone(), output.clone()),
                None => (
                    quote!(::agentc::__private::serde_json::Value),
                    quote!(::agentc::__private::serde_json::Value),
                ),
            },
            TargetIr::Agent(callee) => {
                let exposes = self
                    .set
                    .agents
                    .get(*callee)
                    .and_then(|callee| self.exposes_types.get(&callee.name));
                match exposes {
                    Some(exposes) => (quote!(AgentRequest), quote!(AgentReply<#exposes>)),
                    None => (quote!(AgentRequest), quote!(AgentReply<RemoteExposes>)),
                }
            }
            TargetIr::Remote { .. } => (quote!(AgentRequest), quote!(AgentReply<RemoteExposes>)),
        }
    }

    /// The agent and capability marker types, `Capability` for each, and `AllowedFor`
    /// for each (capability, agent) pair of the spec — the only such impls anywhere.
    fn markers(&self) -> TokenStream {
        let mut agent_markers = Vec::new();
        let mut capability_markers = Vec::new();
        let mut impls = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (tool, (input, output)) in self.set.tools.iter().zip(&self.tool_types) {
            seen.insert(tool.name.clone());
            capability_markers.push(self.capability_marker(
                &tool.name,
                &format!("Tool `{}`: {}", tool.name, tool.description),
                input.clone(),
                output.clone(),
            ));
        }
        for agent in self.set.hosted() {
            let marker = snake_ident(&agent.name);
            let doc = format!(" Agent `{}`: {}", agent.name, agent.description);
            agent_markers.push(quote! {
                #[doc = #doc]
                #[allow(non_camel_case_types)]
                #[derive(Debug, Clone, Copy, PartialEq, Eq)]
                pub struct #marker;
            });
            // A trait of the agent's own, so that a call of an undeclared capability is
            // reported with the agent's name as the spec spells it: a diagnostic can
            // print a generic parameter only as a full path.
            let declared_trait = ident(&format!("{}Capability", camel(&agent.name)));
            let message = format!(
                "agent `{}` does not declare capability `{{Self}}`",
                agent.name
            );
            let label = format!("`{{Self}}` is not a capability of agent `{}`", agent.name);
            let trait_doc = format!(
                " A capability that agent `{}` declares; implemented only here, once per \
                 declared capability.",
                agent.name
            );
            let session_doc = format!(
                " Calls capability `C`, which agent `{}` must declare (checked at compile \
                 time), through every check of the runtime.",
                agent.name
            );
            impls.push(quote! {
                #[doc = #trait_doc]
                #[diagnostic::on_unimplemented(
                    message = #message,
                    label = #label,
                    note = "declare it under `capabilities:` in the agent's spec and run `agentc build` again"
                )]
                pub trait #declared_trait: AllowedFor<agents::#marker> {}

                impl Session<'_, agents::#marker> {
                    #[doc = #session_doc]
                    pub async fn call<C: #declared_trait>(
                        &mut self,
                        input: C::Input,
                    ) -> ::std::result::Result<C::Output, CallError> {
                        self.call_declared::<C>(input).await
                    }
                }
            });
            for capability in &agent.capabilities {
                let capability_marker = snake_ident(&capability.name);
                impls.push(quote! {
                    impl #declared_trait for capabilities::#capability_marker {}
                });
            }
            for capability in &agent.capabilities {
                let capability_marker = snake_ident(&capability.name);
                if seen.insert(capability.name.clone()) {
                    let (input, output) = self.capability_types(capability);
                    let doc = match &capability.target {
                        TargetIr::Remote { url } => {
                            format!("Remote agent `{}` at {url}.", capability.name)
                        }
                        _ => format!("Agent `{}`, called as a capability.", capability.name),
                    };
                    capability_markers.push(self.capability_marker(
                        &capability.name,
                        &doc,
                        input,
                        output,
                    ));
                }
                impls.push(quote! {
                    impl AllowedFor<agents::#marker> for capabilities::#capability_marker {}
                });
            }
        }
        quote! {
            /// The agents of this set, as types.
            pub mod agents {
                #(#agent_markers)*
            }
            /// The tools of this set and the agents used as capabilities, as types. Which
            /// agent may use which is said by the `AllowedFor` impls, generated from the spec.
            pub mod capabilities {
                #[allow(unused_imports)]
                use super::*;
                #(#capability_markers)*
            }
            #(#impls)*
        }
    }

    fn capability_marker(
        &self,
        name: &str,
        doc: &str,
        input: TokenStream,
        output: TokenStream,
    ) -> TokenStream {
        let marker = snake_ident(name);
        let doc = format!(" {doc}");
        quote! {
            #[doc = #doc]
            #[allow(non_camel_case_types)]
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct #marker;

            impl super::sealed::Sealed for #marker {}

            impl super::Capability for #marker {
                const NAME: &'static str = #name;
                type Input = #input;
                type Output = #output;
            }
        }
    }

    fn agent(&self, agent: &AgentIr) -> TokenStream {
        let name = &agent.name;
        let base = camel(name);
        let marker = snake_ident(name);
        let hosted_alias = ident(&base);
        let tools_trait = ident(&format!("{base}Tools"));
        let call_enum = ident(&format!("{base}Call"));
        let backend = ident(&format!("{base}Backend"));
        let guardrail_backend = ident(&format!("{base}GuardrailBackend"));
        let exposes = self
            .exposes_types
            .get(name)
            .cloned()
            .unwrap_or_else(|| ident("RemoteExposes"));
        let document = &agent.document;

        // The closed enum of the model's calls, and the trait the host implements.
        let mut variants = Vec::new();
        let mut parse_arms = Vec::new();
        let mut name_arms = Vec::new();
        let mut dispatch_arms = Vec::new();
        let mut methods = Vec::new();
        let mut tool_capabilities: Vec<String> = Vec::new();
        for capability in &agent.capabilities {
            let variant = ident(&camel(&capability.name));
            let method = snake_ident(&capability.name);
            let capability_name = &capability.name;
            let (input, output) = self.capability_types(capability);
            let (call_type, identity_doc) = if capability.user_identity {
                (
                    quote!(UserIdentityCall),
                    "Called with the engaging user's identity (OAS-C3), or the static identity when there is no user (OAS-C4).",
                )
            } else {
                (
                    quote!(StaticIdentityCall),
                    "Called with the static identity only, never the user's (OAS-C3, OAS-C4).",
                )
            };
            let variant_doc = format!(" A call of `{capability_name}`.");
            variants.push(quote! { #[doc = #variant_doc] #variant(#input), });
            parse_arms.push(quote! {
                #capability_name => ::agentc::__private::serde_json::from_value(arguments.clone())
                    .map(Self::#variant)
                    .map_err(|error| ParseCallError::BadArguments {
                        capability: #capability_name,
                        detail: error.to_string(),
                    }),
            });
            name_arms.push(quote! { Self::#variant(_) => #capability_name, });
            let TargetIr::Tool(tool) = &capability.target else {
                // An agent (local or remote) used as a capability is run by the runtime
                // (a nested engagement, or the remote agent's server), never by a
                // method of the host; the agent's backend is bound to its tools only,
                // so this arm is never reached, and it refuses if it ever is.
                dispatch_arms.push(quote! {
                    Self::#variant(_) => Err(::agentc::__private::agentc_runtime::ToolError::NoBackend(#capability_name.to_string())),
                });
                continue;
            };
            tool_capabilities.push(capability_name.clone());
            let what = format!(
                "Tool `{capability_name}`: {}",
                self.set
                    .tools
                    .get(*tool)
                    .map(|tool| tool.description.as_str())
                    .unwrap_or_default()
            );
            let method_doc = docs(&format!("{what}\n\n{identity_doc}"));
            dispatch_arms.push(quote! {
                Self::#variant(input) => support::output_json(tools.#method(input, #call_type::new(context)).await?),
            });
            methods.push(quote! {
                #method_doc
                async fn #method(&self, input: #input, call: #call_type<'_>) -> ::std::result::Result<#output, ::agentc::__private::agentc_runtime::ToolError>;
            });
        }
        // Guardrail tools get their own methods, unless the tool is also a capability,
        // whose method then serves both.
        let mut guardrail_tools: Vec<&ToolIr> = Vec::new();
        for guardrail in [&agent.input_guardrail, &agent.output_guardrail]
            .into_iter()
            .flatten()
        {
            if let Some(tool) = self.set.tools.get(guardrail.tool) {
                let is_capability = agent
                    .capabilities
                    .iter()
                    .any(|capability| capability.name == tool.name);
                if !is_capability && !guardrail_tools.iter().any(|seen| seen.name == tool.name) {
                    guardrail_tools.push(tool);
                }
            }
        }
        let mut guardrail_arms = Vec::new();
        for tool in &guardrail_tools {
            let method = snake_ident(&tool.name);
            let tool_name = &tool.name;
            let index = self
                .set
                .tools
                .iter()
                .position(|candidate| candidate.name == tool.name)
                .unwrap_or_default();
            let Some((input, output)) = self.tool_types.get(index) else {
                continue;
            };
            let doc = format!(
                " Guardrail tool `{tool_name}`: {} It is given the text being checked (OAS-G2, OAS-G3).",
                tool.description
            );
            methods.push(quote! {
                #[doc = #doc]
                async fn #method(&self, input: #input) -> ::std::result::Result<#output, ::agentc::__private::agentc_runtime::ToolError>;
            });
            guardrail_arms.push(quote! {
                #tool_name => {
                    let input: #input = ::agentc::__private::serde_json::from_value(input.clone()).map_err(|error| {
                        ::agentc::__private::agentc_runtime::ToolError::InvalidInput { tool: #tool_name.to_string(), detail: error.to_string() }
                    })?;
                    support::output_json(self.tools.#method(input).await?)
                }
            });
        }

        let enum_doc = format!(
            " The calls the model may make as agent `{name}`: the closed set of its capabilities. Parsing the model's untrusted (name, arguments) into this enum is the only place a capability is named by a string."
        );
        let trait_doc = format!(
            " The tools of agent `{name}`, implemented by the host: one method per declared tool capability (and guardrail tool), so a tool added to the spec does not compile until it is handled. Agents it uses as capabilities have no method: the runtime runs them (a nested engagement, or the remote agent's server)."
        );
        let hosted_doc = format!(
            " Agent `{name}` with its tools bound: {}",
            agent.description
        );
        let spec = self.agent_spec(agent);
        let registry = self.registry(agent, &backend, &guardrail_backend, &guardrail_tools);

        let guardrail_backend_items = if guardrail_tools.is_empty() {
            quote!()
        } else {
            quote! {
                /// Runs the guardrail tools of the agent through the host's methods.
                struct #guardrail_backend<T> {
                    tools: ::std::sync::Arc<T>,
                    tool: &'static str,
                }

                #[::agentc::__private::async_trait::async_trait]
                impl<T: #tools_trait> ::agentc::__private::agentc_runtime::ToolBackend for #guardrail_backend<T> {
                    async fn invoke(
                        &self,
                        input: &::agentc::__private::serde_json::Value,
                        _context: &::agentc::__private::agentc_runtime::ToolContext,
                    ) -> ::std::result::Result<::agentc::__private::serde_json::Value, ::agentc::__private::agentc_runtime::ToolError> {
                        match self.tool {
                            #(#guardrail_arms)*
                            other => Err(::agentc::__private::agentc_runtime::ToolError::NoBackend(other.to_string())),
                        }
                    }
                }
            }
        };
        let has_tools = !tool_capabilities.is_empty();
        // The backend and its dispatch exist only for an agent with tools of the host:
        // agents and remote agents used as capabilities are run by the runtime.
        let dispatch = if has_tools {
            quote! {
                async fn dispatch<T: #tools_trait + ?Sized>(
                    self,
                    tools: &T,
                    context: &::agentc::__private::agentc_runtime::ToolContext,
                ) -> ::std::result::Result<::agentc::__private::serde_json::Value, ::agentc::__private::agentc_runtime::ToolError> {
                    match self {
                        #(#dispatch_arms)*
                    }
                }
            }
        } else {
            quote!()
        };
        let backend_items = if has_tools {
            quote! {
                /// Runs the agent's tools through the host's methods, parsing each input
                /// into the agent's closed set of calls first.
                struct #backend<T> {
                    tools: ::std::sync::Arc<T>,
                    capability: &'static str,
                }

                #[::agentc::__private::async_trait::async_trait]
                impl<T: #tools_trait> ::agentc::__private::agentc_runtime::ToolBackend for #backend<T> {
                    async fn invoke(
                        &self,
                        input: &::agentc::__private::serde_json::Value,
                        context: &::agentc::__private::agentc_runtime::ToolContext,
                    ) -> ::std::result::Result<::agentc::__private::serde_json::Value, ::agentc::__private::agentc_runtime::ToolError> {
                        let call = #call_enum::parse(self.capability, input).map_err(|error| {
                            ::agentc::__private::agentc_runtime::ToolError::InvalidInput { tool: self.capability.to_string(), detail: error.to_string() }
                        })?;
                        call.dispatch(self.tools.as_ref(), context).await
                    }
                }
            }
        } else {
            quote!()
        };
        let name_fn = if agent.capabilities.is_empty() {
            quote! {
                /// The capability's name.
                pub fn name(&self) -> &'static str {
                    match *self {}
                }
            }
        } else {
            quote! {
                /// The capability's name.
                pub fn name(&self) -> &'static str {
                    match self {
                        #(#name_arms)*
                    }
                }
            }
        };
        // Every agent this one reaches through agent capabilities runs on the same
        // runtime, with its tools from the host, so `new` needs the host to implement
        // the tools trait of each of them.
        let reached = self.reached_agents(agent);
        let host_bounds: Vec<TokenStream> = reached
            .iter()
            .map(|reached| {
                let tools_trait = ident(&format!("{}Tools", camel(&reached.name)));
                quote!(#tools_trait)
            })
            .collect();
        let parts: Vec<TokenStream> = reached
            .iter()
            .map(|reached| {
                let marker = snake_ident(&reached.name);
                quote!(Hosted::<agents::#marker>::parts(&tools)?)
            })
            .collect();
        let called: Vec<String> = reached
            .iter()
            .skip(1)
            .map(|reached| format!("`{}`", reached.name))
            .collect();
        let new_doc = if called.is_empty() {
            docs(&format!(
                "Sets up agent `{name}` with the host's tools, writing its audit trail to `audit` (there is no default: `AuditLog::discard()` is the explicit choice of none); every check is built once here. Remote agents it uses are reached over HTTPS at the URLs of their references (see [`Hosted::with_remote_agents`])."
            ))
        } else {
            docs(&format!(
                "Sets up agent `{name}` with the host's tools, writing its audit trail to `audit` (there is no default: `AuditLog::discard()` is the explicit choice of none); every check is built once here. The agents it calls ({}) run as nested engagements on the same runtime, with their tools from the same host, so the host implements their tools traits too. Remote agents it uses are reached over HTTPS at the URLs of their references (see [`Hosted::with_remote_agents`]).",
                called.join(", ")
            ))
        };
        let remote_doc = format!(
            " Like [`Hosted::new`], with the limits and endpoints of the remote agents that agent `{name}` (or an agent it calls) uses."
        );
        quote! {
            impl sealed::Sealed for agents::#marker {}

            impl Agent for agents::#marker {
                const NAME: &'static str = #name;
                const DOCUMENT: &'static str = #document;
                type Exposes = #exposes;
            }

            #[doc = #hosted_doc]
            pub type #hosted_alias = Hosted<agents::#marker>;

            #[doc = #enum_doc]
            #[derive(Debug, Clone, PartialEq)]
            pub enum #call_enum {
                #(#variants)*
            }

            impl #call_enum {
                /// Parses the model's tool call; an undeclared name or arguments that do not
                /// fit the input type are typed errors.
                pub fn parse(name: &str, arguments: &::agentc::__private::serde_json::Value) -> ::std::result::Result<Self, ParseCallError> {
                    match name {
                        #(#parse_arms)*
                        other => Err(ParseCallError::Undeclared { agent: #name, name: other.to_string() }),
                    }
                }

                #name_fn

                #dispatch
            }

            #[doc = #trait_doc]
            #[::agentc::__private::async_trait::async_trait]
            pub trait #tools_trait: Send + Sync + 'static {
                #(#methods)*
            }

            #backend_items

            #guardrail_backend_items

            impl Hosted<agents::#marker> {
                /// The agent's share of a runtime: its spec, its tools' schemas and the
                /// host's backends for them.
                fn parts<T: #tools_trait>(
                    tools: &::std::sync::Arc<T>,
                ) -> ::std::result::Result<::agentc::__private::agentc_generated_support::hosting::AgentParts, SetupError> {
                    let spec = #spec;
                    #registry
                }

                #new_doc
                pub fn new<T>(
                    tools: T,
                    audit: ::std::sync::Arc<::agentc::__private::agentc_runtime::AuditLog>,
                ) -> ::std::result::Result<Self, SetupError>
                where
                    T: #(#host_bounds)+*,
                {
                    Self::with_remote_agents(tools, audit, &RemoteAgents::new())
                }

                #[doc = #remote_doc]
                pub fn with_remote_agents<T>(
                    tools: T,
                    audit: ::std::sync::Arc<::agentc::__private::agentc_runtime::AuditLog>,
                    remote: &RemoteAgents,
                ) -> ::std::result::Result<Self, SetupError>
                where
                    T: #(#host_bounds)+*,
                {
                    let tools = ::std::sync::Arc::new(tools);
                    Self::assemble(::std::vec::Vec::from([#(#parts),*]), audit, remote)
                }
            }
        }
    }

    /// The agent itself, then every agent of the set it reaches through agent
    /// capabilities, breadth first in document order (so the output is deterministic).
    fn reached_agents<'a>(&'a self, agent: &'a AgentIr) -> Vec<&'a AgentIr> {
        let mut reached: Vec<&AgentIr> = vec![agent];
        let mut next = 0;
        while let Some(current) = reached.get(next).copied() {
            next += 1;
            for capability in &current.capabilities {
                let TargetIr::Agent(callee) = capability.target else {
                    continue;
                };
                let Some(callee) = self.set.agents.get(callee) else {
                    continue;
                };
                if !callee.remote && !reached.iter().any(|known| known.name == callee.name) {
                    reached.push(callee);
                }
            }
        }
        reached
    }

    fn restriction(
        &self,
        agent: &AgentIr,
        restriction: Option<&RestrictionIr>,
        function: &str,
    ) -> TokenStream {
        let Some(restriction) = restriction else {
            return quote!(None);
        };
        let review = match &restriction.require_review {
            Some(reviewer) => {
                quote!(Some(::agentc::__private::agentc_runtime::ReviewerRef::parse(#reviewer)))
            }
            None => quote!(None),
        };
        let assertion = if restriction.assertion.is_some() {
            let module = snake_ident(&agent.name);
            let check = ident(&format!("{function}_check"));
            quote!(Some(policies::#module::#check()?))
        } else {
            quote!(None)
        };
        quote! {
            Some(::agentc::__private::agentc_runtime::RestrictionSpec { require_review: #review, assertion: #assertion })
        }
    }

    fn agent_spec(&self, agent: &AgentIr) -> TokenStream {
        let module = snake_ident(&agent.name);
        let capabilities: Vec<TokenStream> = agent
            .capabilities
            .iter()
            .map(|capability| {
                let name = &capability.name;
                let method = snake_ident(name).to_string();
                let kind = match &capability.target {
                    TargetIr::Tool(_) => quote!(::agentc::__private::agentc_runtime::spec::CapabilityKind::Tool),
                    TargetIr::Agent(_) => quote!(::agentc::__private::agentc_runtime::spec::CapabilityKind::Agent),
                    TargetIr::Remote { url } => quote!(::agentc::__private::agentc_runtime::spec::CapabilityKind::RemoteAgent { url: #url.to_string() }),
                };
                let collect = capability.collect_results;
                let user_identity = capability.user_identity;
                let static_identity = match &capability.static_identity {
                    Some(identity) => quote!(Some(::std::sync::Arc::from(#identity))),
                    None => quote!(None),
                };
                let input = self.restriction(agent, capability.input_restriction.as_ref(), &format!("input_{method}"));
                let output = self.restriction(agent, capability.output_restriction.as_ref(), &format!("output_{method}"));
                quote! {
                    ::agentc::__private::agentc_runtime::CapabilitySpec {
                        name: #name.to_string(),
                        kind: #kind,
                        collect_results: #collect,
                        user_identity: #user_identity,
                        static_identity: #static_identity,
                        input_restriction: #input,
                        output_restriction: #output,
                    }
                }
            })
            .collect();
        let guardrail = |guardrail: &Option<GuardrailIr>, which: &str| match guardrail {
            Some(guardrail) => {
                let tool = self
                    .set
                    .tools
                    .get(guardrail.tool)
                    .map(|tool| tool.name.clone())
                    .unwrap_or_default();
                let check = ident(&format!("{which}_guardrail_check"));
                quote!(Some(::agentc::__private::agentc_runtime::GuardrailSpec { tool_name: #tool.to_string(), assertion: policies::#module::#check()? }))
            }
            None => quote!(None),
        };
        let input_guardrail = guardrail(&agent.input_guardrail, "input");
        let output_guardrail = guardrail(&agent.output_guardrail, "output");
        let exposes: Vec<TokenStream> = agent
            .exposes
            .iter()
            .map(|(key, _)| {
                let check = ident(&format!("exposes_{}_check", snake_ident(key)));
                quote!((#key.to_string(), policies::#module::#check()?))
            })
            .collect();
        let name = &agent.name;
        let description = &agent.description;
        let intent = &agent.intent;
        let owner = &agent.owner;
        let retain = agent.retain_memory;
        let optional = |limit: Option<u64>| match limit {
            Some(limit) => quote!(Some(#limit)),
            None => quote!(None),
        };
        let short_circuit = optional(agent.short_circuit);
        let max_calls_per_turn = optional(agent.max_calls_per_turn);
        let max_calls = optional(agent.max_calls);
        quote! {
            ::agentc::__private::agentc_runtime::AgentSpec {
                name: #name.to_string(),
                description: #description.to_string(),
                intent: #intent.to_string(),
                owner: #owner.to_string(),
                capabilities: ::std::vec::Vec::from([#(#capabilities),*]),
                input_guardrail: #input_guardrail,
                output_guardrail: #output_guardrail,
                exposes: ::std::vec::Vec::from([#(#exposes),*]),
                retain_memory: #retain,
                short_circuit: #short_circuit,
                call_limits: ::agentc::__private::agentc_runtime::CallLimits::new(#max_calls_per_turn, #max_calls),
            }
        }
    }

    /// The body of an agent's `parts`: the schemas of its capabilities and guardrail
    /// tools, and a backend for each of its tools. Agents used as capabilities get a
    /// schema (`{text}` in and out) and no backend, so that the runtime runs them.
    fn registry(
        &self,
        agent: &AgentIr,
        backend: &Ident,
        guardrail_backend: &Ident,
        guardrail_tools: &[&ToolIr],
    ) -> TokenStream {
        let mut specs = Vec::new();
        let mut binds = Vec::new();
        let mut push_tool = |name: &str, description: &str, input: String, output: String| {
            specs.push(quote! {
                ::agentc::__private::agentc_runtime::ToolSpec {
                    name: #name.to_string(),
                    description: #description.to_string(),
                    input_schema: support::schema(#name, #input)?,
                    output_schema: support::schema(#name, #output)?,
                }
            });
        };
        let agent_schema = serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"]
        })
        .to_string();
        for capability in &agent.capabilities {
            let name = &capability.name;
            match &capability.target {
                TargetIr::Tool(tool) => {
                    if let Some(tool) = self.set.tools.get(*tool) {
                        push_tool(
                            name,
                            &tool.description,
                            tool.input_schema.to_string(),
                            tool.output_schema.to_string(),
                        );
                    }
                    binds.push(quote! {
                        (#name, ::std::sync::Arc::new(#backend { tools: ::std::sync::Arc::clone(tools), capability: #name }) as ::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::ToolBackend>)
                    });
                }
                TargetIr::Agent(callee) => {
                    let description = self
                        .set
                        .agents
                        .get(*callee)
                        .map(|callee| callee.description.clone())
                        .unwrap_or_default();
                    push_tool(
                        name,
                        &description,
                        agent_schema.clone(),
                        agent_schema.clone(),
                    );
                }
                TargetIr::Remote { url } => {
                    push_tool(
                        name,
                        &format!("The remote agent at {url}."),
                        agent_schema.clone(),
                        agent_schema.clone(),
                    );
                }
            }
        }
        for tool in guardrail_tools {
            let name = &tool.name;
            push_tool(
                name,
                &tool.description,
                tool.input_schema.to_string(),
                tool.output_schema.to_string(),
            );
            binds.push(quote! {
                (#name, ::std::sync::Arc::new(#guardrail_backend { tools: ::std::sync::Arc::clone(tools), tool: #name }) as ::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::ToolBackend>)
            });
        }
        let unused = if binds.is_empty() {
            quote!(let _ = tools;)
        } else {
            quote!()
        };
        quote! {
            #unused
            Ok(::agentc::__private::agentc_generated_support::hosting::AgentParts {
                spec,
                tools: ::std::vec::Vec::from([#(#specs),*]),
                backends: ::std::vec::Vec::from([#(#binds),*]),
            })
        }
    }

    /// The compiled policies of one agent, in `policies::<agent>`.
    fn policies(&self, agent: &AgentIr) -> TokenStream {
        let module = snake_ident(&agent.name);
        let full_layout = engagement_layout(&agent.capability_types);
        let mut sites: Vec<(String, &str, CheckKind)> = Vec::new();
        for capability in &agent.capabilities {
            let method = snake_ident(&capability.name).to_string();
            for (restriction, which) in [
                (&capability.input_restriction, "input"),
                (&capability.output_restriction, "output"),
            ] {
                if let Some(RestrictionIr {
                    assertion: Some(text),
                    ..
                }) = restriction
                {
                    sites.push((format!("{which}_{method}"), text, CheckKind::Assertion));
                }
            }
        }
        for (key, text) in &agent.exposes {
            sites.push((
                format!("exposes_{}", snake_ident(key)),
                text,
                CheckKind::Selection,
            ));
        }
        fn engagement_site<'s>(
            (function, text, kind): &'s (String, &str, CheckKind),
            layout: &'s ObjectType,
        ) -> CheckSite<'s> {
            CheckSite {
                function: function.as_str(),
                text,
                root_name: "Engagement",
                layout,
                root: CheckRoot::Engagement,
                kind: *kind,
                depth: 2,
            }
        }
        let full_sites: Vec<CheckSite<'_>> = sites
            .iter()
            .map(|site| engagement_site(site, &full_layout))
            .collect();
        let layout = pruned_for(&full_sites, &full_layout);
        let (structs, numbers) = layout_structs("Engagement", &layout, CelStructsFor::Engagement);
        let items: Vec<TokenStream> = sites
            .iter()
            .map(|site| emit_check(&engagement_site(site, &layout), &numbers))
            .collect();
        let mut guardrail_modules = Vec::new();
        for (guardrail, which) in [
            (&agent.input_guardrail, "input"),
            (&agent.output_guardrail, "output"),
        ] {
            let Some(guardrail) = guardrail else { continue };
            let Some(tool) = self.set.tools.get(guardrail.tool) else {
                continue;
            };
            let Type::Object(fields) = &tool.output else {
                continue;
            };
            let mut fields = fields.clone();
            fields.name = "Fields".to_string();
            let site = CheckSite {
                function: "assertion",
                text: &guardrail.assertion,
                root_name: "Fields",
                layout: &fields,
                root: CheckRoot::GuardrailFields,
                kind: CheckKind::Assertion,
                depth: 3,
            };
            let fields = pruned_for(std::slice::from_ref(&site), &fields);
            let (guard_structs, numbers) =
                layout_structs("Fields", &fields, CelStructsFor::GuardrailFields);
            let check = emit_check(
                &CheckSite {
                    layout: &fields,
                    ..site
                },
                &numbers,
            );
            let guard_module = ident(&format!("{which}_guardrail"));
            let check_fn = ident(&format!("{which}_guardrail_check"));
            let doc = format!(
                " The {which} guardrail: its assertion over the fields of `{}`'s output (OAS-G4).",
                tool.name
            );
            guardrail_modules.push(quote! {
                #[doc = #doc]
                pub mod #guard_module {
                    #guard_structs
                    #check
                }

                /// The guardrail's check.
                pub fn #check_fn() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, super::super::SetupError> {
                    #guard_module::assertion_check()
                }
            });
        }
        let doc = format!(
            " The compiled policies of agent `{}`, over its typed engagement (OAS-E3).",
            agent.name
        );
        quote! {
            #[doc = #doc]
            pub mod #module {
                #structs

                #(#items)*
                #(#guardrail_modules)*
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::raw_string;

    /// The literal's value, as the Rust lexer reads it.
    fn value_of(literal: &proc_macro2::Literal) -> String {
        match syn::parse_str::<syn::LitStr>(&literal.to_string()) {
            Ok(text) => text.value(),
            Err(error) => panic!("not a string literal: {literal} ({error})"),
        }
    }

    #[test]
    fn raw_strings_hold_any_json_text_unchanged() {
        for text in [
            r#"{"a":"b"}"#,
            // A string that itself ends a one-`#` raw string needs two.
            r##"{"pattern":"x"#y"}"##,
            r###"{"p":"\"##","q":"\"#"}"###,
            r#"{"escaped":"line\nbreak \u0000"}"#,
        ] {
            let literal = raw_string(text);
            assert!(literal.to_string().starts_with("r#"), "{literal}");
            assert_eq!(value_of(&literal), text);
        }
        assert_eq!(raw_string(r##"a"#b"##).to_string(), r###"r##"a"#b"##"###);
    }
}

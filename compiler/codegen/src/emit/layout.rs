//! The typed layout structs a compiled check reads: their definitions, their
//! conversions from the runtime's CEL values, and the numbering of their fields for the
//! checks' `Reads`.

use std::collections::BTreeMap;

use agentc_cel::ObjectType;
use agentc_cel::engagement::field;
use agentc_cel_compile::{FieldReads, struct_definitions, struct_object_names};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use super::names::ident;

/// The fields of a layout's structs, numbered for `cel_roots::Reads` in the order
/// [`cel_structs`] writes their conversions: each field's object type and CEL name.
#[derive(Default)]
pub(super) struct FieldNumbers {
    fields: Vec<(String, String)>,
}

impl FieldNumbers {
    /// The bits of the fields that `reads` holds.
    pub(super) fn bits(&self, reads: &FieldReads) -> Vec<u64> {
        self.bits_where(|object, field| reads.contains(object, field))
    }

    /// Whether every field in `reads` has a number.
    pub(super) fn numbers_all_of(&self, reads: &FieldReads) -> bool {
        reads.iter().all(|(object, field)| {
            self.fields.iter().any(|(numbered_object, numbered_field)| {
                numbered_object == object && numbered_field == field
            })
        })
    }

    /// The bits of every field.
    pub(super) fn every_field(&self) -> Vec<u64> {
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

/// What a set of layout structs is for, which decides which of them convert whole.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CelStructsFor {
    /// An agent's engagement: the root `Engagement` gets no `FromCel`, since a check
    /// builds it from the roots it reads and defaults for the others.
    Engagement,
    /// A guardrail's output fields, converted whole.
    GuardrailFields,
}

/// The structs of a layout, with their conversions, and their fields numbered for the
/// checks' `Reads` (see [`cel_structs`]).
pub(super) fn layout_structs(
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
        let field = item.fields.iter().find(|field| {
            field
                .ident
                .as_ref()
                .is_some_and(|ident| ident == field::RECENT)
        })?;
        let syn::Type::Path(path) = &field.ty else {
            return None;
        };
        Some(path.path.segments.last()?.ident.clone())
    })
}

//! The Rust types generated for CEL types: tool inputs and outputs, and agents' exposes.

use std::collections::BTreeSet;

use agentc_cel::{ObjectType, Type};
use agentc_cel_compile::rust_field_names;
use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::schemas;

use super::names::{camel, ident, raw_string};

/// Generates named Rust types for CEL types: serde derives, and a `JsonSchema` impl that
/// reports the schema the type came from (see [`crate::schemas`]).
#[derive(Default)]
pub(super) struct TypeGen {
    pub(super) items: Vec<TokenStream>,
    taken: BTreeSet<String>,
}

impl TypeGen {
    /// The Rust type for `ty`, declaring the structs it needs. `schema` is the part of a
    /// tool document's JSON Schema that `ty` was translated from, when there is one.
    pub(super) fn rust_type(
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

    pub(super) fn object(
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
            if field.nullable && field.always_present {
                // Present but possibly `null`: `None` is written back as `null`.
                fields.push(quote! {
                    #rename
                    pub #field_ident: ::std::option::Option<#ty>,
                });
            } else if field.always_present {
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

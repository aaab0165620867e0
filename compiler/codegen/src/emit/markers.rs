//! The agent and capability marker types, their `Capability` impls, and the
//! `AllowedFor` impls that say which agent may use which capability.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ir::{CapabilityIr, TargetIr};

use super::Emitter;
use super::names::{camel, ident, snake_ident};

impl Emitter<'_> {
    /// The Rust types of a capability's input and output.
    pub(super) fn capability_types(&self, capability: &CapabilityIr) -> (TokenStream, TokenStream) {
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
    pub(super) fn markers(&self) -> TokenStream {
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
}

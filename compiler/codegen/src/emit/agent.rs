//! Each agent's items: its hosted type, tools trait, backends, session and spec.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::ir::{AgentIr, CelIr, GuardrailIr, RestrictionIr, TargetIr, ToolIr};

use super::Emitter;
use super::names::{camel, docs, ident, snake_ident};
use super::policies::optional_str;

impl Emitter<'_> {
    pub(super) fn agent(&self, agent: &AgentIr) -> TokenStream {
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
        let review = reviewer_tokens(restriction.require_review.as_deref());
        let module = snake_ident(&agent.name);
        let assertion = if restriction.assertion.is_some() {
            let check = ident(&format!("{function}_check"));
            quote!(Some(policies::#module::#check()?))
        } else {
            quote!(None)
        };
        let review_when = if restriction.review_when.is_some() {
            let check = ident(&format!("review_when_{function}_check"));
            quote!(Some(policies::#module::#check()?))
        } else {
            quote!(None)
        };
        let shadow = match &restriction.shadow {
            Some(shadow) => {
                let shadow = self.shadow_restriction(agent, shadow);
                quote!(Some(::std::boxed::Box::new(#shadow)))
            }
            None => quote!(None),
        };
        quote! {
            Some(::agentc::__private::agentc_runtime::RestrictionSpec { require_review: #review, assertion: #assertion, review_when: #review_when, shadow: #shadow })
        }
    }

    /// AGX-S1: a shadow restriction, interpreted (it decides nothing, so it is not
    /// compiled), with the agent's definitions inlined as for its compiled checks.
    fn shadow_restriction(&self, agent: &AgentIr, shadow: &RestrictionIr) -> TokenStream {
        let module = snake_ident(&agent.name);
        let review = reviewer_tokens(shadow.require_review.as_deref());
        let interpreted = |cel: &Option<CelIr>| match cel {
            Some(cel) => {
                let text = &cel.text;
                let at = optional_str(cel.at.as_deref());
                if agent.definitions.is_empty() {
                    quote!(Some(support::interpreted(#text, #at)?))
                } else {
                    quote!(Some(support::interpreted_with(#text, #at, policies::#module::DEFINITIONS)?))
                }
            }
            None => quote!(None),
        };
        let assertion = interpreted(&shadow.assertion);
        let review_when = interpreted(&shadow.review_when);
        quote! {
            ::agentc::__private::agentc_runtime::RestrictionSpec { require_review: #review, assertion: #assertion, review_when: #review_when, shadow: None }
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
        let stop_on_refusal = agent.stop_on_refusal;
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
                stop_on_refusal: #stop_on_refusal,
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
}

/// A restriction's `require_review` as the runtime's `ReviewerRef`, or `None`.
fn reviewer_tokens(reviewer: Option<&str>) -> TokenStream {
    match reviewer {
        Some(reviewer) => {
            quote!(Some(::agentc::__private::agentc_runtime::ReviewerRef::parse(#reviewer)))
        }
        None => quote!(None),
    }
}

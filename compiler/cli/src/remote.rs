//! `agentc check --fetch-remote`: fetches the documents of remote agents that capabilities
//! reference (`oagent://host/path/name`, OAS-N3), so that assertions over their outputs
//! are typed by their `exposes`. Off by default: checking a spec should not make network
//! requests unless asked, least of all in CI.

use agentc_compiler::check::CapabilityTarget;
use agentc_compiler::urls::{is_loopback_http, loopback_http_url};
use agentc_compiler::{CheckOptions, SourceInput, check_set};
use std::io::Read;
use std::time::Duration;

/// The most remote documents one run fetches, and the largest one it accepts.
const MAX_REMOTE_DOCUMENTS: usize = 32;
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// Adds the documents of every remote agent referenced by the set to `inputs`, named by
/// the URL they came from (which marks them as remote to the checker).
pub fn fetch_remote_documents(
    inputs: &mut Vec<SourceInput>,
    options: &CheckOptions,
) -> Result<usize, String> {
    let set = check_set(inputs, options);
    let mut wanted: Vec<String> = set
        .resolution
        .capability_targets
        .iter()
        .flatten()
        .flatten()
        .filter_map(|(_, target)| match target {
            CapabilityTarget::Remote { url } => Some(loopback_http_url(url)),
            _ => None,
        })
        .filter(|url| !inputs.iter().any(|input| &input.name == url))
        .collect();
    wanted.sort();
    wanted.dedup();
    if wanted.len() > MAX_REMOTE_DOCUMENTS {
        return Err(format!(
            "the set references {} remote agents; --fetch-remote fetches at most {MAX_REMOTE_DOCUMENTS}",
            wanted.len()
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0)
        .https_only(false)
        .build()
        .into();
    for url in &wanted {
        if !url.starts_with("https://") && !is_loopback_http(url) {
            return Err(format!(
                "refusing to fetch `{url}`: remote agents are fetched over HTTPS only"
            ));
        }
        let bytes = fetch(&agent, url)?;
        inputs.push(SourceInput {
            name: url.clone(),
            bytes,
        });
    }
    Ok(wanted.len())
}

fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut response = agent
        .get(url)
        .header("Accept", "application/yaml, application/json;q=0.9")
        .call()
        .map_err(|error| format!("cannot fetch remote agent document {url}: {error}"))?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read remote agent document {url}: {error}"))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "remote agent document {url} is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

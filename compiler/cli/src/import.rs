//! `agentc import mcp` (AGX-M2): tool documents from an MCP server's `tools/list`, each
//! pinned; `--check` reports drift between a directory of them and the server now (a CI
//! gate: exit 1 on any).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use agentc_compiler::documents::Document;
use agentc_compiler::{SourceInput, check_set};
use agentc_mcp::McpServers;
use agentc_mcp::import::{ListedTool, drift, import};
use agentc_runtime::credentials::Secret;
use agentc_runtime::{AuthScheme, McpTransport};

/// What `agentc import mcp` was asked.
pub struct ImportRequest<'a> {
    pub stdio: Option<&'a str>,
    pub url: Option<&'a str>,
    pub env: &'a [String],
    /// The variable holding a bearer token for an HTTP server (never the token itself
    /// on the command line, where other users can read it).
    pub bearer_env: Option<&'a str>,
    pub out: &'a Path,
    pub check: bool,
}

pub fn import_mcp(request: ImportRequest<'_>) -> ExitCode {
    match run(request) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(request: ImportRequest<'_>) -> Result<ExitCode, String> {
    let transport = match (request.stdio, request.url) {
        (Some(command_line), None) => {
            let mut words = split_command_line(command_line)?.into_iter();
            let command = words
                .next()
                .ok_or_else(|| "`--stdio` names no command".to_string())?;
            let mut env = Vec::new();
            for pair in request.env {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`--env {pair}` is not NAME=VALUE"))?;
                env.push((key.to_string(), value.to_string()));
            }
            McpTransport::Stdio {
                command,
                args: words.collect(),
                env,
            }
        }
        (None, Some(url)) => McpTransport::Http {
            url: url.to_string(),
        },
        _ => return Err("give exactly one of `--stdio \"CMD ARGS\"` and `--url URL`".to_string()),
    };
    let (auth, credential) = match request.bearer_env {
        Some(variable) => {
            let token = std::env::var(variable)
                .map_err(|_| format!("the variable `{variable}` holds no bearer token"))?;
            (AuthScheme::Bearer, Some(Secret::new(token)))
        }
        None => (AuthScheme::None, None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    let servers = McpServers::default();
    let listed = runtime
        .block_on(servers.list(&transport, &auth, credential.as_ref()))
        .map_err(|error| {
            format!(
                "cannot list the tools of MCP server {}: {error}",
                agentc_mcp::server_label(&transport)
            )
        })?;
    if request.check {
        return check_drift(request.out, &transport, &listed);
    }
    let imported = import(&listed, &transport, &auth);
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    std::fs::create_dir_all(request.out)
        .map_err(|error| format!("cannot create `{}`: {error}", request.out.display()))?;
    let mut written = 0;
    let mut refused = 0;
    for tool in &imported.tools {
        // A tool whose schemas are not valid JSON Schema (or that breaks any other
        // rule) is reported with the checker's diagnostics and not written.
        let file = format!("{}.yaml", tool.name);
        let set = check_set(
            &[SourceInput {
                name: file.clone(),
                bytes: tool.document.clone().into_bytes(),
            }],
            &crate::mcp::check_options(),
        );
        if set.error_count() > 0 {
            eprint!("{}", set.view().render_text(&set.diagnostics));
            eprintln!(
                "error: tool `{}` is not imported: its definition on the server is not a valid tool document",
                tool.server_name
            );
            refused += 1;
            continue;
        }
        let path = request.out.join(&file);
        std::fs::write(&path, &tool.document)
            .map_err(|error| format!("cannot write `{}`: {error}", path.display()))?;
        written += 1;
    }
    eprintln!(
        "imported {written} tool(s) from MCP server {} into {}",
        agentc_mcp::server_label(&transport),
        request.out.display()
    );
    Ok(if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--check`: the pins of the directory's tools bound to this server, against the
/// server's listing now.
fn check_drift(
    directory: &Path,
    transport: &McpTransport,
    listed: &[ListedTool],
) -> Result<ExitCode, String> {
    let inputs = crate::files::collect_inputs(&[directory.to_path_buf()])?;
    let set = check_set(&inputs, &crate::mcp::check_options());
    let mut pinned = BTreeMap::new();
    let mut unpinned = Vec::new();
    for loaded in &set.documents {
        let Document::Tool(tool) = &loaded.document else {
            continue;
        };
        let Some(mcp) = &tool.binding.mcp else {
            continue;
        };
        let same_server = match (transport, &mcp.server, &mcp.command) {
            (McpTransport::Http { url }, Some(server), _) => server.value == *url,
            (McpTransport::Stdio { command, .. }, None, Some(written)) => written.value == *command,
            _ => false,
        };
        if !same_server {
            continue;
        }
        match &mcp.pin {
            Some(pin) => {
                pinned.insert(mcp.tool.value.clone(), pin.value.clone());
            }
            None => unpinned.push(mcp.tool.value.clone()),
        }
    }
    let found = drift(&pinned, listed);
    for line in &found {
        println!("{line}");
    }
    for tool in &unpinned {
        println!("unpinned: `{tool}` has no pin, so its drift cannot be seen (W0605)");
    }
    // A tool the server added changes nothing the agents use; a changed or removed
    // one, or one that cannot be compared, fails the check.
    let failing = found
        .iter()
        .filter(|drift| !matches!(drift, agentc_mcp::import::Drift::Added { .. }))
        .count();
    if failing == 0 && unpinned.is_empty() {
        println!(
            "no drift: {} imported tool(s) match MCP server {}",
            pinned.len(),
            agentc_mcp::server_label(transport)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// Splits a command line into words: whitespace separates, single and double quotes
/// group, a backslash escapes the next character (outside single quotes).
pub fn split_command_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match (quote, character) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), other) => word.push(other),
            (_, '\\') => {
                let escaped = characters
                    .next()
                    .ok_or_else(|| "the command line ends with a backslash".to_string())?;
                word.push(escaped);
                in_word = true;
            }
            (Some(_), other) => word.push(other),
            (None, '\'' | '"') => {
                quote = Some(character);
                in_word = true;
            }
            (None, other) if other.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, other) => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("the command line has an unclosed quote".to_string());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_command_line;

    #[test]
    fn command_lines_split_like_a_shell_would() {
        assert_eq!(
            split_command_line(r#"node "/srv/my dir/index.js" 'a b' c\ d"#).unwrap(),
            ["node", "/srv/my dir/index.js", "a b", "c d"]
        );
        assert_eq!(split_command_line(r#"x """#).unwrap(), ["x", ""]);
        assert!(split_command_line("x 'open").is_err());
    }
}

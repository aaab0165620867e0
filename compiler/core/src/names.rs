//! Names and references (OAS-N1..N4).

/// Why a name breaks OAS-N1, or `None` when it is valid.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a name cannot be empty".to_string());
    }
    if name.len() > 253 {
        return Some(format!(
            "the name is {} characters long; the limit is 253",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        let what = match bad {
            '-' => "`-` is not allowed".to_string(),
            c if c.is_ascii_uppercase() => "uppercase letters are not allowed".to_string(),
            c => format!("`{}` is not allowed", c.escape_default()),
        };
        return Some(format!(
            "{what}: names use only lowercase ASCII letters, digits and `_`"
        ));
    }
    if name.starts_with('_') || name.ends_with('_') {
        return Some("a name must start and end with a letter or digit".to_string());
    }
    None
}

/// The OAS-N1 spelling closest to `name`: lowercase, with `_` for every other character.
pub fn suggested_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('_');
    if trimmed.is_empty() {
        "tool_1".to_string()
    } else {
        trimmed.chars().take(253).collect()
    }
}

/// A parsed capability key or agent reference (OAS-N3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `name`: a tool, or else an agent, of the set (OAS-N4: the tool wins).
    Bare(String),
    /// `oagent://name`: always an agent of the set.
    LocalAgent(String),
    /// `oagent://host[/path]/name`: an agent on another server (OAS-N5: `https://host/path/name`).
    RemoteAgent {
        host: String,
        path: String,
        name: String,
    },
}

impl Reference {
    /// The name the engagement uses for it: `recent.<name>`, `history.<name>`.
    pub fn name(&self) -> &str {
        match self {
            Reference::Bare(name) | Reference::LocalAgent(name) => name,
            Reference::RemoteAgent { name, .. } => name,
        }
    }

    /// The HTTPS URL of a remote agent document (OAS-N5).
    pub fn remote_url(&self) -> Option<String> {
        match self {
            Reference::RemoteAgent { host, path, name } => Some(if path.is_empty() {
                format!("https://{host}/{name}")
            } else {
                format!("https://{host}/{path}/{name}")
            }),
            _ => None,
        }
    }
}

/// Parses a reference; the error says what is wrong with its form.
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    let Some(rest) = text.strip_prefix("oagent://") else {
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "`{scheme}://` is not a reference scheme; agent references use `oagent://`"
            ));
        }
        return Ok(Reference::Bare(text.to_string()));
    };
    let Some((host, tail)) = rest.split_once('/') else {
        return Ok(Reference::LocalAgent(rest.to_string()));
    };
    if host.is_empty() {
        return Err(
            "the host is empty: write `oagent://name` for a local agent, or `oagent://host/name`"
                .to_string(),
        );
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(format!("`{host}` is not a valid host name"));
    }
    let tail = tail.trim_end_matches('/');
    let (path, name) = match tail.rsplit_once('/') {
        Some((path, name)) => (path, name),
        None => ("", tail),
    };
    if name.is_empty() {
        return Err("the reference ends without an agent name".to_string());
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() && !path.is_empty())
    {
        return Err("the path has an empty segment (`//`)".to_string());
    }
    Ok(Reference::RemoteAgent {
        host: host.to_string(),
        path: path.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oas_n1_accepts_lowercase_digits_and_underscores_only() {
        assert_eq!(name_problem("hr_agent_2"), None);
        assert!(name_problem("hr-agent").unwrap().contains("`-`"));
        assert!(name_problem("HrAgent").unwrap().contains("uppercase"));
        assert!(name_problem("_hr").unwrap().contains("start and end"));
        assert!(name_problem("").is_some());
        assert!(name_problem(&"a".repeat(254)).is_some());
        assert_eq!(name_problem(&"a".repeat(253)), None);
        assert_eq!(suggested_name("HR-Agent"), "hr_agent");
    }

    #[test]
    fn oas_n3_reference_forms() {
        assert_eq!(
            parse_reference("hr_kb"),
            Ok(Reference::Bare("hr_kb".into()))
        );
        assert_eq!(
            parse_reference("oagent://scheduler"),
            Ok(Reference::LocalAgent("scheduler".into()))
        );
        let remote = parse_reference("oagent://support.example.net/agents/vendor_support").unwrap();
        assert_eq!(remote.name(), "vendor_support");
        assert_eq!(
            remote.remote_url().unwrap(),
            "https://support.example.net/agents/vendor_support"
        );
        assert!(parse_reference("https://x.y/a").is_err());
        assert!(parse_reference("oagent:///a").is_err());
        assert!(parse_reference("oagent://host/").is_err());
    }
}

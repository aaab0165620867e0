//! Path templates in HTTP binding URLs (AGX-H1): `https://api.example.com/skills/{name}`
//! takes the path parameter `name` from the call's input, so a REST API whose items
//! live at their own paths can be a tool without a proxy in front of it.
//!
//! Only the path may be templated (never the scheme, host, port or query), and a value
//! fills exactly one place inside one segment: it is percent-encoded, so that `/`, `?`,
//! `#` and `%` in a value stay data, and a value that would be a dot segment (`.`,
//! `..`) or empty is refused rather than sent (it would change which route is called).
//! The checker (E0310), the runtime's HTTP tools and the conformance suite all use this
//! one module.

/// Why a binding URL's template is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`, or a `}` without its `{`.
    #[error("a `{{` or `}}` in the URL is not part of a `{{name}}`")]
    Unbalanced,
    /// A parameter name that is empty or not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "`{{{0}}}` is not a parameter name (letters, digits and `_`, not starting with a digit)"
    )]
    BadName(String),
    /// A template outside the path.
    #[error("only the URL's path may hold `{{name}}`, not its scheme, host or query")]
    OutsidePath,
}

/// Why a template could not be filled from an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The input has no value for a parameter.
    #[error("the input has no `{0}` for the URL's path")]
    Missing(String),
    /// A value that is not a string, number or boolean.
    #[error("`{0}` must be a string, number or boolean to go in the URL's path")]
    NotScalar(String),
    /// A value that is empty, holds `..`, `/` or `\`, or would make a dot segment: it
    /// could change which route is called (a server or proxy that decodes `%2F` or
    /// resolves `..` before routing would move the call elsewhere), so it is refused.
    #[error("`{0}` is empty or holds `..`, `/` or `\\`, which could change the URL's path")]
    ChangesThePath(String),
    /// The values together make a `.` or `..` segment (`{a}{b}` with `.` and `.`).
    #[error("the filled path has a `.` or `..` segment, which would change the route")]
    DotSegment,
}

/// Where the path starts in `url`: after `scheme://authority`, or 0 for a bare path.
fn path_start(url: &str) -> usize {
    match url.find("://") {
        Some(scheme_end) => {
            let authority = scheme_end + 3;
            url.get(authority..)
                .and_then(|rest| rest.find(['/', '?', '#']))
                .map_or(url.len(), |offset| authority + offset)
        }
        None => 0,
    }
}

/// Where the path ends in `url` (the query or fragment starts).
fn path_end(url: &str, start: usize) -> usize {
    url.get(start..)
        .and_then(|rest| rest.find(['?', '#']))
        .map_or(url.len(), |offset| start + offset)
}

/// The parts of `url` between templates, and the parameter names, in order.
fn pieces(url: &str) -> Result<(Vec<&str>, Vec<&str>), TemplateError> {
    let start = path_start(url);
    let end = path_end(url, start);
    let outside = |range: Option<&str>| range.is_some_and(|text| text.contains(['{', '}']));
    if outside(url.get(..start)) || outside(url.get(end..)) {
        return Err(TemplateError::OutsidePath);
    }
    let mut literals = Vec::new();
    let mut names = Vec::new();
    let mut rest = url;
    loop {
        match (rest.find('{'), rest.find('}')) {
            (None, None) => {
                literals.push(rest);
                return Ok((literals, names));
            }
            (Some(open), Some(close)) if open < close => {
                let (literal, name) = (rest.get(..open), rest.get(open + 1..close));
                let (Some(literal), Some(name)) = (literal, name) else {
                    return Err(TemplateError::Unbalanced);
                };
                if name.contains('{') {
                    return Err(TemplateError::Unbalanced);
                }
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(TemplateError::BadName(name.to_string()));
                }
                literals.push(literal);
                names.push(name);
                rest = rest.get(close + 1..).unwrap_or_default();
            }
            _ => return Err(TemplateError::Unbalanced),
        }
    }
}

/// The path (with any query) of `url` as written, templates kept: `/skills/{name}?x=1`.
pub fn path_as_written(url: &str) -> &str {
    url.get(path_start(url)..).unwrap_or_default()
}

/// The path parameters of `url`, in order (empty when it has none).
pub fn parameters(url: &str) -> Result<Vec<String>, TemplateError> {
    let (_, names) = pieces(url)?;
    Ok(names.into_iter().map(str::to_string).collect())
}

/// `url` with every `{name}` replaced by its value from `input`, percent-encoded.
pub fn fill(
    url: &str,
    input: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, FillError> {
    // A URL that is not a template is returned as is; the checker reports a bad one.
    let Ok((literals, names)) = pieces(url) else {
        return Ok(url.to_string());
    };
    let mut filled = String::with_capacity(url.len());
    for (index, literal) in literals.iter().enumerate() {
        filled.push_str(literal);
        let Some(name) = names.get(index) else {
            continue;
        };
        let text = match input.get(*name) {
            None | Some(serde_json::Value::Null) => {
                return Err(FillError::Missing(name.to_string()));
            }
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Number(number)) => number.to_string(),
            Some(serde_json::Value::Bool(flag)) => flag.to_string(),
            Some(_) => return Err(FillError::NotScalar(name.to_string())),
        };
        // Fail closed: whatever a server might decode into a path change is refused,
        // not only what this encoding would let through.
        if text.is_empty() || text == "." || text.contains("..") || text.contains(['/', '\\']) {
            return Err(FillError::ChangesThePath(name.to_string()));
        }
        encode_into(&text, &mut filled);
    }
    // Values next to each other or to a literal `.` can still make a dot segment.
    let start = path_start(&filled);
    let end = path_end(&filled, start);
    let dot_segment = filled
        .get(start..end)
        .unwrap_or_default()
        .split('/')
        .any(|segment| matches!(segment, "." | ".."));
    if dot_segment && !names.is_empty() {
        return Err(FillError::DotSegment);
    }
    Ok(filled)
}

/// `input` without the path parameters of `url`: what is left for the body or query.
pub fn without_parameters(
    url: &str,
    input: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let names = parameters(url).unwrap_or_default();
    input
        .iter()
        .filter(|(key, _)| !names.contains(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986: letters, digits,
/// `-`, `.`, `_`, `~`).
fn encode_into(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn parameters_are_read_from_the_path_only() {
        assert_eq!(
            parameters("https://api.example.com/skills/{name}/versions/{v}?x=1").unwrap(),
            vec!["name", "v"]
        );
        assert_eq!(
            parameters("https://api.example.com/skills").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parameters("https://{tenant}.example.com/x"),
            Err(TemplateError::OutsidePath)
        );
        assert_eq!(
            parameters("https://api.example.com/x?id={id}"),
            Err(TemplateError::OutsidePath)
        );
        assert_eq!(
            parameters("https://a.example/x/{id"),
            Err(TemplateError::Unbalanced)
        );
        assert_eq!(
            parameters("https://a.example/x/id}"),
            Err(TemplateError::Unbalanced)
        );
        assert_eq!(
            parameters("https://a.example/x/{1d}"),
            Err(TemplateError::BadName("1d".into()))
        );
        assert_eq!(
            parameters("https://a.example/x/{}"),
            Err(TemplateError::BadName(String::new()))
        );
    }

    #[test]
    fn values_stay_inside_their_segment() {
        let url = "https://api.example.com/skills/{name}?format=json";
        assert_eq!(
            fill(url, &object(json!({"name": "a b?d#e%é"}))).unwrap(),
            "https://api.example.com/skills/a%20b%3Fd%23e%25%C3%A9?format=json"
        );
        for escapes in ["a/b", "a\\b", "../x", "x..y", "/"] {
            assert_eq!(
                fill(url, &object(json!({"name": escapes}))),
                Err(FillError::ChangesThePath("name".into())),
                "{escapes}"
            );
        }
        // Values that would make a dot segment together, or with a literal dot, are
        // each refused; a template whose own path has a dot segment fills to nothing.
        assert_eq!(
            fill(
                "https://a.example/x/{a}{b}/y",
                &object(json!({"a": ".", "b": "."}))
            ),
            Err(FillError::ChangesThePath("a".into()))
        );
        assert_eq!(
            fill("https://a.example/x/.{a}/y", &object(json!({"a": "."}))),
            Err(FillError::ChangesThePath("a".into()))
        );
        assert_eq!(
            fill("https://a.example/x/../{a}", &object(json!({"a": "v"}))),
            Err(FillError::DotSegment)
        );
        assert_eq!(
            fill(
                "https://a.example/x/{a}.{b}",
                &object(json!({"a": "v1", "b": "json"}))
            )
            .unwrap(),
            "https://a.example/x/v1.json"
        );
        assert_eq!(
            fill(url, &object(json!({"name": 42}))).unwrap(),
            "https://api.example.com/skills/42?format=json"
        );
        for changes in ["", ".", ".."] {
            assert_eq!(
                fill(url, &object(json!({"name": changes}))),
                Err(FillError::ChangesThePath("name".into()))
            );
        }
        assert_eq!(
            fill(url, &object(json!({}))),
            Err(FillError::Missing("name".into()))
        );
        assert_eq!(
            fill(url, &object(json!({"name": ["a"]}))),
            Err(FillError::NotScalar("name".into()))
        );
        assert_eq!(
            without_parameters(url, &object(json!({"name": "a", "limit": 3}))),
            object(json!({"limit": 3}))
        );
    }
}

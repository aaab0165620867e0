//! Credential-like values never reach a report. Reports go to CI logs, and a service
//! under test may hand out a secret (a stored token given to an unauthenticated
//! request is a real finding). The finding must be reported, and the secret must not be
//! copied 14 times into the log.
//!
//! Every report passes through [`redact_tool_report`] once, after the tests ran, so no
//! test can forget it. Each piece of evidence that had something redacted says so, and
//! names what kind of value it was. The evidence locates it (check, request, status).
//!
//! What is recognised: the run's own credential (and its base64 form for basic auth);
//! PEM private keys; `Bearer`/`Basic` authorization values; JSON string values and
//! `key=value` pairs whose key names a secret (`access_token`, `api_key`, `password`,
//! `client_secret`, …); and the shapes of well-known tokens (JWTs, `sk-…`, GitHub,
//! Slack, GitLab and AWS access keys). Recognition is by pattern, so it errs on the side
//! of redacting: a `token_type: bearer` loses its value too.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use agentc_runtime::Secret;
use base64::Engine as _;
use regex::Regex;

use crate::report::{Outcome, ToolReport};

/// What replaces a redacted value.
const MARK: &str = "[redacted]";

/// A pattern, what it recognises (for the note), and its replacement.
struct Rule {
    pattern: Regex,
    kind: &'static str,
    replacement: &'static str,
}

fn rule(pattern: &str, kind: &'static str, replacement: &'static str) -> Option<Rule> {
    match Regex::new(pattern) {
        Ok(pattern) => Some(Rule {
            pattern,
            kind,
            replacement,
        }),
        Err(error) => {
            // The patterns are constants, tested below; this cannot happen at run time.
            tracing::error!(%error, "a redaction pattern does not compile");
            None
        }
    }
}

/// The key names that hold secrets (matched inside longer names: `x_api_key`,
/// `stripe_secret`, `refreshToken`).
const SECRET_KEY: &str = r"[A-Za-z0-9_.\-]*(?i:token|secret|passw(?:or)?d|passphrase|pwd|api[_\-]?key|apikey|private[_\-]?key|authorization|credential|session[_\-]?id|cookie|signature|jwt)[A-Za-z0-9_.\-]*";

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    [
        rule(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
            "a private key",
            "[redacted private key]",
        ),
        rule(
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{4,}=*",
            "an authorization value",
            "$1 [redacted]",
        ),
        rule(
            &format!(r#"("{SECRET_KEY}"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)"#),
            "a JSON value named as a secret",
            "$1\"[redacted]\"",
        ),
        rule(
            // An escaped quote inside the value (`\\\"`) is tried first, so the value
            // is not cut short at it.
            &format!(r#"(\\"{SECRET_KEY}\\"\s*:\s*)\\"(?:\\\\\\"|[^"\\]|\\[^"])*(?:\\"|$)"#),
            "a JSON value named as a secret",
            "$1\\\"[redacted]\\\"",
        ),
        rule(
            &format!(r#"("{SECRET_KEY}"\s*:\s*)-?[0-9]{{4,}}"#),
            "a JSON value named as a secret",
            "$1\"[redacted]\"",
        ),
        rule(
            &format!(r#"(\b{SECRET_KEY}=)[^&\s"'<>]+"#),
            "a query or form value named as a secret",
            "$1[redacted]",
        ),
        rule(
            // A header or YAML line: `X-Api-Key: k-123`, `password: hunter2`,
            // `Authorization: Token abc` (the JSON forms are handled above).
            // Only at the start of a line, as headers and YAML are written, so that prose
            // ("no valid credential: set `X`") is left alone.
            &format!(r#"(?m)^([ \t]*{SECRET_KEY})([ \t]*:[ \t]*)([^\s"',;&][^\r\n"',;&]*)"#),
            "a header or field value named as a secret",
            "$1$2[redacted]",
        ),
        rule(
            r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
            "a JWT",
            MARK,
        ),
        rule(
            r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}|\b[srp]k_(?:live|test)_[A-Za-z0-9]{10,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bxox[abeprs]-[A-Za-z0-9\-]{10,}|\bxapp-[A-Za-z0-9\-]{10,}|\bglpat-[A-Za-z0-9_\-]{20,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{35}|\bnpm_[A-Za-z0-9]{36}|\bhf_[A-Za-z0-9]{30,}",
            "an API token",
            MARK,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
});

/// `text` with credential-like values replaced, and the kinds that were found.
pub(crate) fn redact(text: &str, own: Option<&Secret>) -> (String, BTreeSet<&'static str>) {
    let mut kinds = BTreeSet::new();
    let mut text = text.to_string();
    if let Some(secret) = own {
        let value = secret.expose();
        // The credential as it may come back: as sent, in base64 (basic auth; padded or
        // not, standard or URL-safe), percent-encoded, or escaped inside JSON.
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let mut forms = vec![
            value.to_string(),
            STANDARD.encode(value),
            STANDARD_NO_PAD.encode(value),
            URL_SAFE.encode(value),
            URL_SAFE_NO_PAD.encode(value),
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>(),
        ];
        if let Ok(json) = serde_json::to_string(value) {
            forms.push(json.trim_matches('"').to_string());
        }
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        forms.dedup();
        for form in forms {
            if form.len() >= 4 && text.contains(&form) {
                text = text.replace(&form, MARK);
                kinds.insert("the credential this run used");
            }
        }
    }
    for rule in RULES.iter() {
        let replaced = rule.pattern.replace_all(&text, rule.replacement);
        if replaced != text {
            kinds.insert(rule.kind);
            text = replaced.into_owned();
        }
    }
    (text, kinds)
}

/// At most `limit` characters of a service's `text` for evidence, redacted *before*
/// it is cut (a cut can split a secret from the key that names it), with a note of
/// what was redacted.
pub(crate) fn excerpt(text: &str, own: Option<&Secret>, limit: usize) -> String {
    let (redacted, kinds) = redact(text, own);
    // One line: a body's line breaks and indentation would break the report's layout.
    let flat = redacted.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut excerpt = crate::schema::truncate(&flat, limit);
    if !kinds.is_empty() {
        let kinds: Vec<&str> = kinds.into_iter().collect();
        excerpt.push_str(&format!(
            " (the answer held {}; redacted from this report)",
            kinds.join(", ")
        ));
    }
    excerpt
}

/// Redacts every piece of evidence and every passed check of a tool's report. The
/// evidence keeps saying that something was there.
pub(crate) fn redact_tool_report(report: &mut ToolReport, own: Option<&Secret>) {
    for line in report
        .planned
        .iter_mut()
        .chain(report.left_behind.iter_mut())
    {
        *line = redact(line, own).0;
    }
    for test in &mut report.tests {
        match &mut test.outcome {
            Outcome::Fail { evidence, passed } => {
                for check in passed {
                    *check = redact(check, own).0;
                }
                for item in evidence {
                    let mut found = BTreeSet::new();
                    for text in [&mut item.check, &mut item.detail]
                        .into_iter()
                        .chain(item.request.as_mut())
                    {
                        let (redacted, kinds) = redact(text, own);
                        *text = redacted;
                        found.extend(kinds);
                    }
                    if !found.is_empty() {
                        let kinds: Vec<&str> = found.into_iter().collect();
                        item.detail.push_str(&format!(
                            " (the answer held {}; redacted from this report)",
                            kinds.join(", ")
                        ));
                    }
                }
            }
            Outcome::Pass { checks } => {
                for check in checks {
                    *check = redact(check, own).0;
                }
            }
            Outcome::Skip { reason } => *reason = redact(reason, own).0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(RULES.len(), 9);
    }

    #[test]
    fn planted_secrets_are_redacted_and_named() {
        let planted = [
            (
                r#"{"access_token":"tok_live_9f8e7d6c5b4a","user":"ann"}"#,
                "tok_live_9f8e7d6c5b4a",
            ),
            (
                r#"{"credentials": {"clientSecret": "cs-1234567890"}}"#,
                "cs-1234567890",
            ),
            (r#"{"password":"hunter2 with \"quotes\""}"#, "hunter2"),
            (r#"body: {\"api_key\":\"k-998877\"}"#, "k-998877"),
            ("Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
            ("GET /export?format=csv&api_key=AKQ77x9&x=1", "AKQ77x9"),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here",
                "eyJhbGciOiJIUzI1NiJ9",
            ),
            (
                "key sk-proj-abcdefghijklmnopqrstuv",
                "sk-proj-abcdefghijklmnopqrstuv",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
            (
                "gh ghp_abcdefghijklmnopqrstuvwxyz0123",
                "ghp_abcdefghijklmnopqrstuvwxyz0123",
            ),
            ("X-Api-Key: k-1234567\nother: fine", "k-1234567"),
            ("password: hunter2", "hunter2"),
            ("Authorization: Token abc123xyz", "abc123xyz"),
            (r#"{"api_key": 98765432}"#, "98765432"),
            ("stripe sk_live_abcdefghij1234", "sk_live_abcdefghij1234"),
            (r#"{\"password\":\"a\\\"secret\"}"#, "secret"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
                "MIIEowIBAAKCAQEA",
            ),
        ];
        for (text, secret) in planted {
            let (redacted, kinds) = redact(text, None);
            assert!(!redacted.contains(secret), "{text} -> {redacted}");
            assert!(!kinds.is_empty(), "{text}");
        }
    }

    #[test]
    fn a_secret_cut_by_an_excerpt_is_redacted_before_the_cut() {
        let body = format!(
            r#"{{"padding":"{}","access_token":"tok_live_abcdef123456"}}"#,
            "x".repeat(30)
        );
        let excerpt = excerpt(&body, None, 60);
        assert!(!excerpt.contains("tok_live"), "{excerpt}");
        assert!(excerpt.contains("redacted from this report"), "{excerpt}");
        // An excerpt already cut inside a secret's value loses the rest of it.
        let (redacted, _) = redact(r#"{"password":"hunter2-and-then-cu…"#, None);
        assert!(!redacted.contains("hunter2"), "{redacted}");
    }

    #[test]
    fn an_excerpt_is_one_line() {
        let html = "<html>\n  <head>\n    <title>Error</title>\n  </head>\n</html>";
        assert_eq!(
            excerpt(html, None, 200),
            "<html> <head> <title>Error</title> </head> </html>"
        );
    }

    #[test]
    fn the_runs_own_credential_is_redacted_in_plain_and_base64() {
        let own = Secret::new("agentc:s3cr3t-value".to_string());
        let encoded = base64::engine::general_purpose::STANDARD.encode("agentc:s3cr3t-value");
        let (redacted, kinds) = redact(
            &format!("got agentc:s3cr3t-value and {encoded}"),
            Some(&own),
        );
        assert!(
            !redacted.contains("s3cr3t") && !redacted.contains(&encoded),
            "{redacted}"
        );
        assert!(kinds.contains("the credential this run used"));
        // Percent-encoded and unpadded URL-safe forms too.
        let (redacted, _) = redact("echo agentc%3As3cr3t-value", Some(&own));
        assert!(!redacted.contains("s3cr3t"), "{redacted}");
        let unpadded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("agentc:s3cr3t-value");
        let (redacted, _) = redact(&format!("echo {unpadded}"), Some(&own));
        assert!(!redacted.contains(&unpadded), "{redacted}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            r#"{"tickets":[{"id":"T-1","title":"Printer jams"}],"max_tokens":100}"#,
            "POST /tickets/search (valid credential) -> 200",
            "no valid credential: set `TICKETS_TOKEN`",
            "the body breaks its schema: `/tickets/0`: \"id\" is a required property",
        ] {
            let (redacted, kinds) = redact(text, None);
            assert_eq!(redacted, text);
            assert!(kinds.is_empty(), "{text}: {kinds:?}");
        }
    }
}

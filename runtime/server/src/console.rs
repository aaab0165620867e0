//! The review console (issue 29): `/console`, the web page where people approve or refuse
//! agents' calls and read what happened, served by `agentc serve` with the API's own
//! identities.
//!
//! - **Sign-in.** A bearer token or API key of the server, entered once, becomes a
//!   session cookie: `HttpOnly`, `SameSite=Strict`, `Secure` when the server's public
//!   URL is `https`, scoped to `/console`, valid 8 hours. The cookie holds the user and a
//!   CSRF token, signed with HMAC-SHA256 under a key drawn when the process starts (or
//!   the configured one that several instances share, `ServerConfig::console_key`), so
//!   nothing is stored; a cookie from a restarted server (a new key) fails its signature
//!   and leads back to sign-in, cleanly.
//! - **What a user sees** is what the API would show them: the pending reviews whose
//!   reviewer they are, and the engagements they may read. Everything else is "not
//!   found", as in the API.
//! - **Decisions** are forms carrying the CSRF token and, for an approval, the hash of
//!   the exact call shown; the engine's own rules decide them (a stale page — a call
//!   decided elsewhere, or changed — gets a clear message, never a wrong approval).
//! - **Pages** are server-rendered with `maud`, which escapes every value. No script
//!   runs: the Content Security Policy allows only the console's own style sheet and
//!   forms. Long values are folded, very long ones cut, and Unicode bidi controls are
//!   shown as visible marks so that an argument cannot disguise itself.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use maud::{DOCTYPE, Markup, html};
use sha2::Sha256;

use agentc_runtime::UserIdentity;

use crate::engine::{DecideError, Engine};
use crate::routes::Peer;
use crate::store::{ReviewRecord, StoredDecision};

/// How long a console session lasts.
const SESSION_SECONDS: u64 = 8 * 60 * 60;
/// The session cookie's name.
const COOKIE: &str = "agentc_console";
/// The most characters of one value a page shows (the rest is said, not shown).
const SHOWN_CHARACTERS: usize = 64 * 1024;
/// Values longer than this are folded under a summary.
const FOLDED_CHARACTERS: usize = 300;
/// Pending reviews on one page.
const PAGE: usize = 20;

/// The console's state: the engine, and the key sessions are signed with.
pub(crate) struct Console {
    engine: Arc<Engine>,
    key: [u8; 32],
    secure_cookie: bool,
}

/// The console's routes, under `/console`.
pub(crate) fn console_router(engine: Arc<Engine>) -> Result<Router, String> {
    let key = match engine.config().console_key {
        Some(key) => key,
        None => {
            let mut key = [0_u8; 32];
            getrandom::fill(&mut key)
                .map_err(|error| format!("no randomness for the console key: {error}"))?;
            key
        }
    };
    let secure_cookie = engine.public_url().starts_with("https://");
    let console = Arc::new(Console {
        engine,
        key,
        secure_cookie,
    });
    Ok(Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/reviews") }),
        )
        .route("/console/style.css", get(style))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/reviews", get(reviews_page))
        .route("/console/reviews/{id}", post(decide))
        .route("/console/engagements/{id}", get(engagement_page))
        .with_state(console))
}

/// A signed-in user and the session's CSRF token.
struct Session {
    user: UserIdentity,
    csrf: String,
}

impl Console {
    /// The session MAC under this process's key. HMAC takes keys of any length, so
    /// this is always `Some`; were it not, no session would be made or accepted.
    fn mac(&self) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(&self.key).ok()
    }

    /// The cookie value for `user`: payload and signature, both base64url.
    fn seal(&self, user: &UserIdentity, csrf: &str) -> Option<String> {
        let expires = now_seconds().saturating_add(SESSION_SECONDS);
        let payload = serde_json::json!({"u": user.id, "m": user.email, "x": expires, "c": csrf});
        let payload = payload.to_string();
        let mut mac = self.mac()?;
        mac.update(payload.as_bytes());
        let signature = mac.finalize().into_bytes();
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Some(format!(
            "{}.{}",
            encode(payload.as_bytes()),
            encode(&signature)
        ))
    }

    /// The session a request's cookie carries, if it is signed by this process and not
    /// expired.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        let (payload, signature) = value.split_once('.')?;
        let decode = |text: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok()
        };
        let (payload, signature) = (decode(payload)?, decode(signature)?);
        let mut mac = self.mac()?;
        mac.update(&payload);
        mac.verify_slice(&signature).ok()?;
        let payload: serde_json::Value = serde_json::from_slice(&payload).ok()?;
        if payload.get("x")?.as_u64()? <= now_seconds() {
            return None;
        }
        Some(Session {
            user: UserIdentity {
                id: payload.get("u")?.as_str()?.to_string(),
                email: payload
                    .get("m")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
            },
            csrf: payload.get("c")?.as_str()?.to_string(),
        })
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// A fresh CSRF token; `None` when the system has no randomness to give.
fn random_token() -> Option<String> {
    let mut bytes = [0_u8; 24];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A page with the console's security headers: no script, no framing, no caching.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it a browser sends `Origin: null` with the console's
        // own forms, and the origin check below needs the real one.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agentc console" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    nav {
                        a href="/console/reviews" { "Reviews" }
                        @if let Some(session) = session {
                            span class="who" { "Signed in as " strong { (session.user.id) } }
                            form method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn message_page(
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    text: &str,
) -> Response {
    page(
        status,
        layout(
            title,
            session,
            html! {
                p class="message" { (text) }
                p { a href="/console/reviews" { "Back to the reviews" } }
            },
        ),
    )
}

fn to_sign_in() -> Response {
    Redirect::to("/console/sign-in?expired=1").into_response()
}

/// The request's session, within the user's rate limit (the API's limiter: a page costs
/// what an API request costs); otherwise the answer to give.
fn signed_in(console: &Console, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    let session = console
        .session(headers)
        .ok_or_else(|| Box::new(to_sign_in()))?;
    if let Some(limiter) = console.engine.limiter()
        && limiter.check(&session.user.id).is_err()
    {
        return Err(Box::new(message_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            Some(&session),
            "Slow down, then reload the page.",
        )));
    }
    Ok(session)
}

/// Whether a form was posted from the console's own pages: a browser says so in
/// `Sec-Fetch-Site`, and an `Origin` header must name the host the form was posted to.
/// A cross-site post (a login form on another site signing the victim in as the
/// attacker, a forged decision) is refused before the CSRF token is even looked at.
fn from_this_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let fetch_site_ok =
        text("sec-fetch-site").is_none_or(|site| matches!(site, "same-origin" | "none"));
    let same_origin_fetch = text("sec-fetch-site") == Some("same-origin");
    let origin_ok = match (text("origin"), text("host")) {
        (None, _) => true,
        // An opaque origin is trusted only when the browser also says same-origin.
        (Some("null"), _) => same_origin_fetch,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    };
    fetch_site_ok && origin_ok
}

fn cross_site(session: Option<&Session>) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Refused",
        session,
        "The form was not sent from this console; nothing was done.",
    )
}

/// Unicode controls that reorder text, and characters that are invisible (zero-width,
/// word joiners, the byte order mark, tag characters), shown as visible marks.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            | '\u{e0000}'..='\u{e007f}' => {
                format!("⟦U+{:04X}⟧", u32::from(c))
            }
            other => other.to_string(),
        })
        .collect()
}

/// The timeline's entries, with the values of every call that was not carried out left
/// out. An `intended` entry is followed, for the same engagement and subject, by the
/// call's outcome; entries that are not outcomes (`approved`, a shadow rule's verdict)
/// may come between. The intended call's details stay only when that outcome is
/// `completed`: a call that was refused or failed, or whose outcome is not (yet) in the
/// trail, shows a note instead (fail closed). The API shows no refused value to anyone;
/// neither does the console.
fn without_refused_values(mut entries: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    const OUTCOMES: [&str; 3] = ["completed", "denied", "failed"];
    let text = |entry: &serde_json::Value, key: &str| {
        entry
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for index in 0..entries.len() {
        let Some(entry) = entries.get(index) else {
            continue;
        };
        if text(entry, "action") != "intended" {
            continue;
        }
        let (engagement, subject) = (text(entry, "engagement"), text(entry, "subject"));
        let completed = entries
            .iter()
            .skip(index + 1)
            .find(|later| {
                text(later, "engagement") == engagement
                    && text(later, "subject") == subject
                    && (OUTCOMES.contains(&text(later, "action").as_str())
                        || text(later, "action") == "intended")
            })
            .is_some_and(|outcome| text(outcome, "action") == "completed");
        if !completed && let Some(entry) = entries.get_mut(index) {
            entry["detail"] = serde_json::Value::String(
                "(the call was not carried out: its values are not shown)".to_string(),
            );
        }
    }
    entries
}

/// A value as the reviewer reads it: text as is, anything else as pretty JSON; bidi
/// controls made visible; long values folded, very long ones cut.
fn shown_value(value: &serde_json::Value) -> Markup {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let total = text.chars().count();
    let mut shown: String = visible(&text.chars().take(SHOWN_CHARACTERS).collect::<String>());
    if total > SHOWN_CHARACTERS {
        shown.push_str(&format!(
            "\n… ({} more characters not shown)",
            total - SHOWN_CHARACTERS
        ));
    }
    if total <= FOLDED_CHARACTERS {
        return html! { pre { (shown) } };
    }
    let summary: String = visible(&text.chars().take(120).collect::<String>());
    html! {
        details {
            summary { (summary) "… (" (total) " characters)" }
            pre { (shown) }
        }
    }
}

/// Where each string argument of a call came from (AGX-P1), from what the engagement
/// had seen when the call was made: the user's request, a tool's trusted field, a
/// tool's untrusted content, or none of them (the model wrote it). Answered by the same
/// rules as `fromUser()` and `fromTool(…)`, so the reviewer reads what a rule would.
fn provenance_of(
    state: Option<&agentc_runtime::EngagementState>,
    value: &serde_json::Value,
) -> Option<String> {
    use agentc_cel::provenance::{Origin, Sources};
    let text = value.as_str()?;
    let state = state?;
    let mut sources = Sources::new();
    for request in &state.request {
        sources.add_request(request);
    }
    let mut tools: Vec<&str> = Vec::new();
    for leaf in &state.observed {
        sources.add_leaf(&leaf.tool, &leaf.path, &leaf.text, leaf.trusted);
        if !tools.contains(&leaf.tool.as_str()) {
            tools.push(&leaf.tool);
        }
    }
    let mut found = Vec::new();
    if sources.holds(text, Origin::User) {
        found.push("the user's request".to_string());
    }
    for tool in tools {
        if sources.holds(
            text,
            Origin::Tool {
                name: tool,
                field: None,
            },
        ) {
            found.push(format!("a trusted field of `{tool}`'s output"));
        }
        if sources.holds(
            text,
            Origin::UntrustedFrom {
                name: tool,
                field: None,
            },
        ) {
            found.push(format!("untrusted content of `{tool}`'s output"));
        }
    }
    Some(if found.is_empty() {
        "nowhere the engagement saw: the model wrote it".to_string()
    } else {
        format!("from {}", found.join(", and "))
    })
}

/// A call's arguments, one row each, with where each string came from.
fn arguments_table(
    value: &serde_json::Value,
    state: Option<&agentc_runtime::EngagementState>,
) -> Markup {
    match value.as_object() {
        Some(fields) => html! {
            table class="fields" {
                @for (name, field) in fields {
                    tr {
                        th scope="row" { (visible(name)) }
                        td {
                            (shown_value(field))
                            @if let Some(origin) = provenance_of(state, field) {
                                p class="origin" { "Came " (origin) "." }
                            }
                        }
                    }
                }
            }
        },
        None => shown_value(value),
    }
}

/// The fields of a call's input or output, one row each.
fn fields_table(value: &serde_json::Value) -> Markup {
    match value.as_object() {
        Some(fields) => html! {
            table class="fields" {
                @for (name, field) in fields {
                    tr { th scope="row" { (visible(name)) } td { (shown_value(field)) } }
                }
            }
        },
        None => shown_value(value),
    }
}

async fn style() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[derive(serde::Deserialize)]
struct SignInQuery {
    expired: Option<String>,
}

async fn sign_in_page(Query(query): Query<SignInQuery>) -> Response {
    page(
        StatusCode::OK,
        sign_in_form(
            query
                .expired
                .is_some()
                .then_some("Your session has ended. Sign in again."),
        ),
    )
}

fn sign_in_form(notice: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(notice) = notice { p class="message" { (notice) } }
            form method="post" action="/console/sign-in" class="sign-in" {
                label for="credential" { "Your token or API key for this server" }
                input id="credential" name="credential" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(serde::Deserialize)]
struct SignInForm {
    credential: String,
}

async fn sign_in(
    State(console): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !from_this_site(&headers) {
        return cross_site(None);
    }
    let engine = &console.engine;
    if let Err(refused) = crate::routes::check_auth_failures(engine, peer) {
        return refused.into_response();
    }
    let credential = form.credential.trim();
    // The same identities as the API: a token, else an API key.
    let bearer = format!("Bearer {credential}");
    let user = engine
        .authenticator()
        .authenticate(Some(&bearer), None)
        .or_else(|_| engine.authenticator().authenticate(None, Some(credential)));
    let Ok(user) = user else {
        crate::routes::record_auth_failure(engine, peer);
        return page(
            StatusCode::UNAUTHORIZED,
            sign_in_form(Some("That is not a token or key of this server.")),
        );
    };
    let Some(sealed) = random_token().and_then(|csrf| console.seal(&user, &csrf)) else {
        return message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            None,
            "No session can be made right now.",
        );
    };
    let cookie = console.set_cookie(&sealed, SESSION_SECONDS);
    let mut response = Redirect::to("/console/reviews").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    if !from_this_site(&headers) || !same_token(&session.csrf, &form.csrf) {
        return cross_site(Some(&session));
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Ok(value) = HeaderValue::from_str(&console.set_cookie("", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Compares tokens without an early exit on the first differing byte.
fn same_token(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[derive(serde::Deserialize)]
struct ReviewsQuery {
    after: Option<String>,
    done: Option<String>,
}

async fn reviews_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ReviewsQuery>,
) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let engine = &console.engine;
    let mut names = vec![session.user.id.as_str()];
    if let Some(email) = &session.user.email {
        names.push(email);
    }
    let after = query
        .after
        .as_deref()
        .and_then(crate::routes::parse_review_cursor_text);
    let reviews = match engine
        .store()
        .pending_reviews_page(&names, after, PAGE + 1)
        .await
    {
        Ok(reviews) => reviews,
        Err(_) => {
            return message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                Some(&session),
                "The reviews cannot be read right now.",
            );
        }
    };
    let more = reviews.len() > PAGE;
    let reviews: Vec<&ReviewRecord> = reviews
        .iter()
        .filter(|review| !review.reviewer_is_agent)
        .take(PAGE)
        .collect();
    let next = more
        .then(|| {
            reviews
                .last()
                .map(|last| crate::routes::review_cursor(last))
        })
        .flatten();
    let done = query.done.as_deref().map(|done| match done {
        "approved" => "Approved. The engagement goes on with the call you saw.",
        _ => "Refused. The engagement is told, without the call's values.",
    });
    let mut states = std::collections::HashMap::new();
    for review in &reviews {
        states.insert(review.id.as_str(), snapshot_state(engine, review).await);
    }
    let body = html! {
        @if let Some(done) = done { p class="message" { (done) } }
        @if reviews.is_empty() {
            p { "Nothing is waiting for your review." }
        }
        @for review in &reviews {
            (review_card(review, &session, states.get(review.id.as_str()).and_then(Option::as_ref)))
        }
        @if let Some(next) = next {
            p { a href={ "/console/reviews?after=" (next) } { "Older reviews" } }
        }
    };
    page(StatusCode::OK, layout("Reviews", Some(&session), body))
}

/// What the engagement that made the reviewed call had seen, from the saved snapshot:
/// the root engagement's, or a nested one's for a call made by an agent called as a
/// capability. `None` (no provenance shown) when no saved engagement is the one the
/// review names.
async fn snapshot_state(
    engine: &Engine,
    review: &ReviewRecord,
) -> Option<agentc_runtime::EngagementState> {
    let calling = review.engagement_state.get("id")?.as_str()?;
    let mut snapshot = engine
        .store()
        .engagement(&review.engagement)
        .await
        .ok()
        .flatten()?
        .snapshot?;
    loop {
        if snapshot.engagement.id == calling {
            return Some(snapshot.engagement);
        }
        snapshot = *snapshot.nested?;
    }
}

fn review_card(
    review: &ReviewRecord,
    session: &Session,
    state: Option<&agentc_runtime::EngagementState>,
) -> Markup {
    let shown = &review.engagement_state;
    let user = shown
        .get("user")
        .and_then(|user| user.get("id"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown");
    let calls = shown
        .get("history")
        .and_then(|history| history.get("_list"))
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    html! {
        article class="review" {
            h2 { code { (visible(&review.tool)) } " asked by agent " code { (visible(&review.agent)) } }
            dl {
                dt { "For user" } dd { (visible(user)) }
                dt { "Engagement" } dd { a href={ "/console/engagements/" (review.engagement) } { (review.engagement) } }
                dt { "Why you are asked" } dd {
                    @if review.stage == "output" {
                        "The agent's rules ask for a review of this call's output before the agent sees it."
                    } @else {
                        "The agent's rules (" code { "require_review" } ") ask for a review of this call before it runs."
                    }
                }
            }
            h3 { "Exact arguments" }
            (arguments_table(&review.inputs, state))
            @if let Some(outputs) = &review.outputs {
                h3 { "The tool's answer" }
                (fields_table(outputs))
            }
            @if !calls.is_empty() {
                details {
                    summary { "Earlier calls in this engagement (" (calls.len()) ")" }
                    ol { @for call in calls { li { (shown_value(call)) } } }
                }
            }
            div class="decide" {
                form method="post" action={ "/console/reviews/" (review.id) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="decision" value="approve";
                    input type="hidden" name="call_hash" value=(review.call_hash);
                    button type="submit" class="approve" { "Approve this call" }
                }
                form method="post" action={ "/console/reviews/" (review.id) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="decision" value="refuse";
                    label { "Reason " input type="text" name="reason" maxlength="500" placeholder="why not"; }
                    button type="submit" class="refuse" { "Refuse" }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct DecisionForm {
    csrf: String,
    decision: String,
    call_hash: Option<String>,
    reason: Option<String>,
}

async fn decide(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    if !from_this_site(&headers) || !same_token(&session.csrf, &form.csrf) {
        return cross_site(Some(&session));
    }
    let decision = match (form.decision.as_str(), form.call_hash) {
        ("approve", Some(call_hash)) => StoredDecision::Approve { call_hash },
        ("refuse", _) => StoredDecision::Refuse {
            reason: form
                .reason
                .map(|reason| reason.trim().chars().take(500).collect::<String>())
                .filter(|reason| !reason.is_empty())
                .unwrap_or_else(|| "refused by the reviewer".to_string()),
        },
        _ => {
            return message_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not decided",
                Some(&session),
                "The form was incomplete; nothing was decided.",
            );
        }
    };
    let approved = matches!(decision, StoredDecision::Approve { .. });
    match console.engine.decide(&session.user, &id, decision).await {
        Ok(_) => Redirect::to(if approved {
            "/console/reviews?done=approved"
        } else {
            "/console/reviews?done=refused"
        })
        .into_response(),
        Err(DecideError::NotFound) => message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            Some(&session),
            "There is no such review for you.",
        ),
        Err(DecideError::AlreadyDecided) => message_page(
            StatusCode::CONFLICT,
            "Already decided",
            Some(&session),
            "This review was decided already, here or elsewhere. Nothing changed.",
        ),
        Err(DecideError::WrongCall) => message_page(
            StatusCode::CONFLICT,
            "The call changed",
            Some(&session),
            "The call waiting for review is not the one this page showed. Nothing was approved: reload the reviews and look again.",
        ),
        Err(DecideError::Store(_)) => message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            Some(&session),
            "The decision could not be saved; try again.",
        ),
    }
}

async fn engagement_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match signed_in(&console, &headers) {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let record = match crate::routes::visible_engagement(&console.engine, &session.user, &id).await
    {
        Ok(record) => record,
        Err(_) => {
            return message_page(
                StatusCode::NOT_FOUND,
                "Not found",
                Some(&session),
                "There is no such engagement for you.",
            );
        }
    };
    let view = crate::routes::engagement_view(&record);
    let status = view.get("status").cloned().unwrap_or_default();
    // The reviews and the timeline are the engagement's user's to read. A reviewer of
    // one of its calls may read the engagement, as through the API, and sees what the
    // API shows: its status, answer and exposes.
    let own = record.user.id == session.user.id;
    let store = console.engine.store();
    let reviews = if own {
        store.reviews_of(&record.id).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    // The audit trail: this engagement's entries, and whether the chains that hold
    // them verify whole (one chain per instance that ran it, in a shared store).
    let mut lines = Vec::new();
    let mut verdict = Ok(agentc_runtime::VerifiedChain {
        entries: 0,
        head: String::new(),
        checkpoints: 0,
        signed_entries: 0,
        signatures_checked: false,
    });
    if own {
        for chain in store.audit_chains().await.unwrap_or_default() {
            let chain_lines = store.audit_lines(&chain).await.unwrap_or_default();
            if !chain_lines
                .iter()
                .any(|line| line.contains(record.id.as_str()))
            {
                continue;
            }
            let checked = agentc_runtime::verify(std::io::Cursor::new(chain_lines.join("\n")));
            verdict = match (verdict, checked) {
                (Ok(total), Ok(chain)) => Ok(agentc_runtime::VerifiedChain {
                    entries: total.entries + chain.entries,
                    head: chain.head,
                    checkpoints: total.checkpoints + chain.checkpoints,
                    signed_entries: total.signed_entries + chain.signed_entries,
                    signatures_checked: false,
                }),
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
            lines.extend(chain_lines);
        }
    }
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| {
            entry.get("engagement").and_then(serde_json::Value::as_str) == Some(record.id.as_str())
                || entry.get("parent").and_then(serde_json::Value::as_str)
                    == Some(record.id.as_str())
        })
        .collect();
    let entries = without_refused_values(entries);
    let body = html! {
        dl {
            dt { "Agent" } dd { code { (visible(&record.agent)) } }
            dt { "User" } dd { (visible(&record.user.id)) }
            dt { "Status" } dd { (fields_table(&status)) }
        }
        @if let Some(text) = view.get("text").and_then(serde_json::Value::as_str) {
            h2 { "The agent's answer" }
            (shown_value(&serde_json::Value::String(text.to_string())))
        }
        @if let Some(exposes) = view.get("exposes").filter(|exposes| exposes.as_object().is_some_and(|map| !map.is_empty())) {
            h2 { "What the agent exposes" }
            (fields_table(exposes))
        }
        @if !reviews.is_empty() {
            h2 { "Reviews" }
            ul class="reviews" {
                @for review in &reviews {
                    li {
                        (review.stage) " review of " code { (visible(&review.tool)) } " by " (visible(&review.reviewer)) ": "
                        @match &review.decision {
                            Some(StoredDecision::Approve { .. }) => strong { "approved" },
                            Some(StoredDecision::Refuse { reason }) => { strong { "refused" } ", “" (visible(reason)) "”" },
                            None => em { "waiting" },
                        }
                    }
                }
            }
        }
        @if !own {
            p class="message" { "The engagement's reviews and timeline are shown to its user only." }
        } @else {
        h2 { "Timeline" }
        p class="message" {
            @match &verdict {
                Ok(chain) => {
                    "The audit trail verifies: " (chain.entries) " entries, "
                    (chain.checkpoints) " signed checkpoint(s)"
                    @if chain.checkpoints > 0 { ", covering the first " (chain.signed_entries) " entries" }
                    "."
                }
                Err(error) => { "The audit trail does not verify: " (error.to_string()) "." }
            }
        }
        @if entries.is_empty() {
            p { "No audit entries for this engagement." }
        } @else {
            table class="fields timeline" {
                @for entry in &entries {
                    tr {
                        th scope="row" {
                            (entry.get("action").and_then(serde_json::Value::as_str).unwrap_or("?")) " "
                            code { (visible(entry.get("subject").and_then(serde_json::Value::as_str).unwrap_or(""))) }
                        }
                        td { (shown_value(entry.get("detail").unwrap_or(&serde_json::Value::Null))) }
                    }
                }
            }
        }
        }
    };
    page(
        StatusCode::OK,
        layout(&format!("Engagement {}", record.id), Some(&session), body),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(engagement: &str, action: &str, subject: &str) -> serde_json::Value {
        serde_json::json!({"engagement": engagement, "action": action, "subject": subject, "detail": {"inputs": {"to": "secret@evil.example"}}})
    }

    #[test]
    fn only_a_completed_calls_values_are_shown() {
        let shown = |entries: Vec<serde_json::Value>| {
            without_refused_values(entries)
                .first()
                .is_some_and(|first| first["detail"].is_object())
        };
        // Completed: shown, whatever came between.
        assert!(shown(vec![
            entry("e1", "intended", "send"),
            entry("e1", "approved", "send"),
            entry("e1", "completed", "send")
        ]));
        // Refused after a shadow verdict or an approval, failed, or no outcome yet:
        // hidden.
        for outcome in [
            vec![
                entry("e1", "intended", "send"),
                entry("e1", "shadow", "send"),
                entry("e1", "denied", "send"),
            ],
            vec![
                entry("e1", "intended", "send"),
                entry("e1", "approved", "send"),
                entry("e1", "denied", "send"),
            ],
            vec![
                entry("e1", "intended", "send"),
                entry("e1", "failed", "send"),
            ],
            vec![entry("e1", "intended", "send")],
            // Another engagement's completion of a same-named call says nothing.
            vec![
                entry("e1", "intended", "send"),
                entry("e2", "completed", "send"),
                entry("e1", "denied", "send"),
            ],
        ] {
            assert!(!shown(outcome));
        }
    }

    #[test]
    fn a_cross_site_post_is_not_from_this_site() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(from_this_site(&headers(&[])));
        assert!(from_this_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        assert!(!from_this_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        // An opaque origin only with the browser's own word that it is same-origin.
        assert!(from_this_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ])));
        assert!(!from_this_site(&headers(&[("origin", "null")])));
    }

    #[test]
    fn a_ten_megabyte_value_is_cut_folded_and_inert() {
        let hostile = format!(
            "<script>alert(1)</script>\u{202e}{}",
            "x".repeat(10 * 1024 * 1024)
        );
        let html = shown_value(&serde_json::Value::String(hostile)).into_string();
        assert!(html.len() < 200 * 1024, "{} bytes", html.len());
        assert!(
            html.starts_with("<details><summary>&lt;script&gt;alert(1)&lt;/script&gt;⟦U+202E⟧")
        );
        assert!(html.contains("more characters not shown"));
        assert!(!html.contains("<script>") && !html.contains('\u{202e}'));
    }
}

//! The policy corpus: realistic restriction and `exposes` expressions over an HR
//! knowledge-base search tool and a calendar tool, including expressions that fail at run
//! time (overflow, division by zero, absent optional fields, indexes out of range, bad
//! regexes), so that compiled and interpreted errors are compared too.

/// `(name, expression)`: the name becomes the compiled function's name.
pub const CORPUS: &[(&str, &str)] = &[
    (
        "kb_prefix",
        r#"recent.hr_kb_search.inputs.knowledge_base_id.startsWith("acme/hr/")"#,
    ),
    (
        "history_rule",
        r#"size(history._list) <= 200 && !("delete_record" in history._list) && history.hr_kb_search.all(h, h.inputs.knowledge_base_id.startsWith("acme/") && h.outputs.results.all(r, r.score >= 0.0))"#,
    ),
    (
        "kb_in_list",
        r#"recent.hr_kb_search.inputs.knowledge_base_id in ["acme/hr/policies", "acme/hr/benefits"]"#,
    ),
    (
        "query_size",
        r#"size(recent.hr_kb_search.inputs.query) <= 12"#,
    ),
    (
        "query_regex",
        r#"recent.hr_kb_search.inputs.query.matches("^[a-zA-Z0-9 ?]*$")"#,
    ),
    (
        "query_no_password",
        r#"!recent.hr_kb_search.inputs.query.contains("password")"#,
    ),
    (
        "kb_public",
        r#"recent.hr_kb_search.inputs.knowledge_base_id.endsWith("/public")"#,
    ),
    (
        "results_all_scored",
        r#"recent.hr_kb_search.outputs.results.all(r, r.score > 0.5)"#,
    ),
    (
        "results_exists_policy",
        r#"recent.hr_kb_search.outputs.results.exists(r, r.title.startsWith("Policy"))"#,
    ),
    (
        "results_exists_one_perfect",
        r#"recent.hr_kb_search.outputs.results.exists_one(r, r.score == 1.0)"#,
    ),
    (
        "results_filter_size",
        r#"size(recent.hr_kb_search.outputs.results.filter(r, r.score >= 0.5)) >= 1"#,
    ),
    (
        "results_titles",
        r#"recent.hr_kb_search.outputs.results.map(r, r.title)"#,
    ),
    (
        "results_size",
        r#"size(recent.hr_kb_search.outputs.results) <= 10"#,
    ),
    (
        "first_result_score",
        r#"recent.hr_kb_search.outputs.results[0].score > 0.9"#,
    ),
    (
        "guarded_query",
        r#"has(recent.hr_kb_search) && recent.hr_kb_search.inputs.query != """#,
    ),
    (
        "guarded_priority",
        r#"!has(recent.create_event) || recent.create_event.inputs.priority <= 3"#,
    ),
    (
        "priority_mul_overflow",
        r#"recent.create_event.inputs.priority * 1000000000000 > 0"#,
    ),
    (
        "priority_add_overflow",
        r#"recent.create_event.inputs.priority + history._total > 10"#,
    ),
    (
        "total_div_priority",
        r#"history._total / recent.create_event.inputs.priority >= 1"#,
    ),
    (
        "total_mod_priority",
        r#"history._total % (recent.create_event.inputs.priority - 1) == 0"#,
    ),
    (
        "negate_priority",
        r#"-recent.create_event.inputs.priority < 0"#,
    ),
    (
        "attendees_size",
        r#"size(recent.create_event.inputs.attendees) <= 20"#,
    ),
    (
        "attendees_internal",
        r#"recent.create_event.inputs.attendees.all(a, a.endsWith("@acme.com"))"#,
    ),
    (
        "attendees_include_email",
        r#"recent.create_event.inputs.attendees.exists(a, a == user.email)"#,
    ),
    (
        "email_domain_unguarded",
        r#"user.email.endsWith("@acme.com")"#,
    ),
    (
        "email_domain",
        r#"has(user.email) && user.email.endsWith("@acme.com")"#,
    ),
    (
        "user_attends",
        r#"user.id in recent.create_event.inputs.attendees"#,
    ),
    (
        "duration_unguarded",
        r#"recent.create_event.inputs.duration_minutes <= 120"#,
    ),
    (
        "duration_guarded",
        r#"!has(recent.create_event.inputs.duration_minutes) || recent.create_event.inputs.duration_minutes <= 120"#,
    ),
    (
        "organizer_is_user",
        r#"recent.create_event.inputs.organizer.email == user.id"#,
    ),
    (
        "organizer_named",
        r#"has(recent.create_event.inputs.organizer) && has(recent.create_event.inputs.organizer.name) && size(recent.create_event.inputs.organizer.name) > 0"#,
    ),
    (
        "attendee_at_priority",
        r#"recent.create_event.inputs.attendees[recent.create_event.inputs.priority] != """#,
    ),
    (
        "priority_in_list",
        r#"recent.create_event.inputs.priority in [1, 2, 3]"#,
    ),
    (
        "event_confirmed",
        r#"recent.create_event.outputs.confirmed"#,
    ),
    (
        "event_id_prefix",
        r#"recent.create_event.outputs.event_id.startsWith("evt_")"#,
    ),
    (
        "history_priorities",
        r#"history.create_event.all(e, e.inputs.priority < 5)"#,
    ),
    (
        "history_confirmed",
        r#"history.create_event.exists(e, e.outputs.confirmed)"#,
    ),
    (
        "history_urgent_count",
        r#"size(history.create_event.filter(e, e.inputs.priority >= 3)) < 3"#,
    ),
    (
        "history_priority_list",
        r#"history.create_event.map(e, e.inputs.priority)"#,
    ),
    (
        "history_priority_doubled",
        r#"history.create_event.map(e, e.inputs.priority * 2)"#,
    ),
    (
        "one_create_event",
        r#"history._list.exists_one(n, n == "create_event")"#,
    ),
    (
        "searches_in_list",
        r#"history._list.filter(n, n == "hr_kb_search")"#,
    ),
    (
        "list_matches_total",
        r#"size(history._list) == history._total"#,
    ),
    ("total_plus_one", r#"history._total + 1"#),
    (
        "last_is_recent",
        r#"history._list[history._total - 1] == recent._name"#,
    ),
    (
        "recent_name_known",
        r#"!has(recent._name) || recent._name in history._list"#,
    ),
    (
        "before_2030",
        r#"started_at < timestamp("2030-01-01T00:00:00Z")"#,
    ),
    (
        "office_hours",
        r#"started_at.getHours() >= 8 && started_at.getHours() < 18"#,
    ),
    ("not_sunday", r#"started_at.getDayOfWeek() != 0"#),
    (
        "started_plus_hour",
        r#"started_at + duration("1h") > timestamp("2024-01-01T00:00:00Z")"#,
    ),
    (
        "year_in_zone",
        r#"started_at.getFullYear("+02:00") >= 2024"#,
    ),
    (
        "within_thirty_days",
        r#"timestamp("2024-01-01T00:00:00Z") - started_at < duration("720h")"#,
    ),
    ("user_id_shape", r#"user.id.matches("^[a-z]+\\.[a-z]+$")"#),
    ("user_id_lowercase", r#"user.id.lowerAscii() == user.id"#),
    ("email_from_id", r#"user.id + "@acme.com" == user.email"#),
    (
        "concat_size",
        r#"size(user.id + recent.hr_kb_search.inputs.query) < 30"#,
    ),
    (
        "dynamic_regex",
        r#"user.id.matches(recent.hr_kb_search.inputs.query)"#,
    ),
    (
        "score_percent",
        r#"int(recent.hr_kb_search.outputs.results[0].score * 100.0) >= 50"#,
    ),
    ("total_halved", r#"double(history._total) / 2.0 > 1.5"#),
    (
        "score_label",
        r#"recent.hr_kb_search.outputs.results.all(r, r.score >= 0.5) ? "ok" : "low""#,
    ),
    (
        "or_absorbs_error",
        r#"recent.hr_kb_search.outputs.results.exists(r, r.score > 0.9) || user.email.endsWith("@acme.com")"#,
    ),
    (
        "and_absorbs_error",
        r#"user.email.endsWith("@acme.com") && history._total > 1000000"#,
    ),
    (
        "all_absorbs_error",
        r#"history.hr_kb_search.all(h, h.outputs.results.size() > 0)"#,
    ),
    (
        "same_kb_as_before",
        r#"history.hr_kb_search.exists(h, h.inputs.knowledge_base_id == recent.hr_kb_search.inputs.knowledge_base_id)"#,
    ),
    (
        "priority_square",
        r#"recent.create_event.inputs.priority > 2 ? recent.create_event.inputs.priority * recent.create_event.inputs.priority < 100 : true"#,
    ),
    (
        "title_as_int",
        r#"int(recent.create_event.inputs.title) > 0"#,
    ),
    (
        "title_not_blank",
        r#"recent.create_event.inputs.title.trim().size() > 0"#,
    ),
    (
        "literal_list_exists",
        r#"[recent.create_event.inputs.priority, history._total].exists(x, x > 5)"#,
    ),
    (
        "scores_exist",
        r#"recent.hr_kb_search.outputs.results.map(r, r.score).exists(s, s > 0.5)"#,
    ),
    ("total_equals_double", r#"history._total == 3.0"#),
    (
        "priority_underflow",
        r#"recent.create_event.inputs.priority - 9223372036854775807 < 0"#,
    ),
    ("total_as_string", r#"string(history._total) + "x" == "3x""#),
    (
        "upper_attendees",
        r#"recent.create_event.inputs.attendees.map(a, a.upperAscii()).exists(a, a.startsWith("BOB"))"#,
    ),
    (
        "long_titles",
        r#"history.create_event.map(e, e.inputs.title).filter(t, t.size() > 3)"#,
    ),
    ("bad_constant_regex", r#"user.id.matches("(unclosed")"#),
    (
        "nested_filter_map",
        r#"history.hr_kb_search.map(h, size(h.outputs.results.filter(r, r.score > 0.5))).all(n, n < 3)"#,
    ),
    (
        "exists_one_errors",
        r#"history.create_event.exists_one(e, e.outputs.confirmed)"#,
    ),
    (
        "ternary_error_branch",
        r#"history._total > 5 ? history._total * history._total > 0 : true"#,
    ),
    // Quadratic and byte-hungry policies, which run out of budget on a long history
    // (see the differential test's budget cases).
    (
        "pairwise_queries",
        r#"history.hr_kb_search.all(a, history.hr_kb_search.exists(b, b.inputs.query == a.inputs.query))"#,
    ),
    (
        "pairwise_query_sizes",
        r#"history.hr_kb_search.all(a, history.hr_kb_search.all(b, size(b.inputs.query) >= size(a.inputs.knowledge_base_id) - 100))"#,
    ),
    (
        "doubled_queries",
        r#"history.hr_kb_search.all(h, size(h.inputs.query + h.inputs.query) >= 0)"#,
    ),
    (
        "queries_as_patterns",
        r#"history.hr_kb_search.exists(h, h.inputs.query.matches(h.inputs.knowledge_base_id))"#,
    ),
    (
        "conditional_copies",
        r#"size(history.hr_kb_search.map(h, h.inputs.query != "" ? recent.hr_kb_search.inputs.query : "q" + "")) >= 0"#,
    ),
    (
        "lowered_titles",
        r#"size(history.create_event.map(e, e.inputs.title.lowerAscii().trim())) >= 0"#,
    ),
    // AGX-E2: the refused calls, by name and stage.
    (
        "refused_lockdown",
        r#"!refused.exists(r, r.name == "create_event" && r.stage == "input_restriction")"#,
    ),
    ("refused_count", r#"size(refused) < 3"#),
    // AGX-T1: when calls started and ended, and when the check runs.
    (
        "window_count",
        r#"size(history.hr_kb_search.filter(c, c.started_at > now - duration("1h"))) < 3"#,
    ),
    (
        "pending_times",
        r#"has(recent.hr_kb_search.ended_at) && recent.hr_kb_search.ended_at >= recent.hr_kb_search.started_at"#,
    ),
    ("now_after_start", r#"now >= started_at"#),
];

/// Expressions that the compiler must refuse (so that the caller falls back to the
/// interpreter), each with why.
pub const FALLBACK: &[(&str, &str)] = &[
    ("a map literal", r#"{"a": 1}.size() == 1"#),
    (
        "a two-variable comprehension",
        r#"history._list.all(i, n, i >= 0)"#,
    ),
    ("bytes", r#"b"abc".size() == 3"#),
    ("null", r#"recent._name == null"#),
    ("an undeclared field (dynamic)", r#"user.phone == "1""#),
    (
        "a sum (AGX-T1)",
        r#"history.create_event.map(e, e.inputs.priority).sum() < 10"#,
    ),
    (
        "a provenance question (AGX-P1)",
        r#"recent.create_event.inputs.title.fromUser()"#,
    ),
];

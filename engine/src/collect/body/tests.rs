use super::*;

fn received() -> Received {
    Received {
        at: DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
        source: "web".into(),
        ip: Some("203.0.113.0".into()),
        user_agent: None,
    }
}

fn line(event: &Event) -> Map<String, Value> {
    match serde_json::from_slice(&event.line) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

fn parse_one(body: &str, kind: Option<Kind>) -> Result<Vec<Event>, Invalid> {
    let extras = Extras {
        events: vec!["total".into()],
        profiles: vec!["plan".into()],
    };
    parse(body.as_bytes(), kind, &received(), &extras)
}

#[test]
fn a_track_becomes_a_line_with_its_clock_corrected() -> Result<(), Invalid> {
    // The device's clock runs an hour ahead: it says it sent at 13:00:05 an event
    // of 13:00:00; received at 12:00:00, the event happened at 11:59:55.
    let events = parse_one(
        r#"{"messageId": "m1", "userId": 42, "event": "Order Completed",
            "properties": {"total": 12.5, "items": [1, 2]},
            "timestamp": "2024-05-01T13:00:00Z", "sentAt": "2024-05-01T13:00:05Z"}"#,
        Some(Kind::Track),
    )?;
    let line = line(&events[0]);
    assert_eq!(line["timestamp"], "2024-05-01T11:59:55.000000Z");
    assert_eq!(line["original_timestamp"], "2024-05-01T13:00:00.000000Z");
    assert_eq!(line["received_at"], "2024-05-01T12:00:00.000000Z");
    assert_eq!(line["user_id"], "42");
    assert_eq!(line["total"], 12.5);
    assert_eq!(line["properties"], r#"{"items":[1,2],"total":12.5}"#);
    assert_eq!(line["source"], "web");
    assert_eq!(line["anonymous_id"], Value::Null);
    assert_eq!(events[0].key, dedup_key("web", "m1"));
    assert_ne!(events[0].key, dedup_key("app", "m1"));
    Ok(())
}

#[test]
fn a_batch_mixes_kinds_and_lends_its_sent_at_and_context() -> Result<(), Invalid> {
    let events = parse_one(
        r#"{"sentAt": "2024-05-01T12:00:10Z", "context": {"app": "ios"}, "batch": [
            {"type": "track", "anonymousId": "a", "event": "Open", "timestamp": "2024-05-01T12:00:00Z"},
            {"type": "alias", "previousId": "a", "userId": "u"},
            {"type": "profile", "userId": "u", "traits": {"plan": "pro"}, "context": {"app": "web"}}]}"#,
        None,
    )?;
    let kinds: Vec<Kind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Track, Kind::Alias, Kind::Profile]);
    let track = line(&events[0]);
    assert_eq!(track["timestamp"], "2024-05-01T11:59:50.000000Z");
    assert_eq!(track["context"], r#"{"app":"ios"}"#);
    let profile = line(&events[2]);
    assert_eq!(profile["plan"], "pro");
    assert_eq!(profile["context"], r#"{"app":"web"}"#);
    // Without a messageId each event gets its own.
    assert_ne!(events[0].key, events[1].key);
    Ok(())
}

#[test]
fn a_bad_body_names_the_field_and_what_is_valid() {
    let invalid = |body: &str, kind: Option<Kind>| match parse_one(body, kind) {
        Ok(_) => Invalid::new("(valid)", ""),
        Err(e) => e,
    };
    let e = invalid(r#"{"userId": "u"}"#, Some(Kind::Track));
    assert_eq!(e.path, "$.event");
    let e = invalid(r#"{"event": "x"}"#, Some(Kind::Track));
    assert!(e.message.contains("anonymousId"), "{e}");
    let e = invalid(
        r#"{"event": "x", "userId": "u", "when": 1}"#,
        Some(Kind::Track),
    );
    assert_eq!(e.path, "$.when");
    assert!(e.message.contains("its fields are"), "{e}");
    let e = invalid(
        r#"{"event": "x", "userId": "u", "timestamp": "yesterday"}"#,
        Some(Kind::Track),
    );
    assert_eq!(e.path, "$.timestamp");
    let e = invalid(r#"{"batch": [{"type": "page"}]}"#, None);
    assert_eq!(e.path, "$.batch[0].type");
    let e = invalid(r#"{"batch": []}"#, None);
    assert_eq!(e.path, "$.batch");
    let e = invalid("[1]", Some(Kind::Profile));
    assert!(e.message.contains("an array"), "{e}");
    let e = invalid("{", Some(Kind::Alias));
    assert!(e.message.contains("not JSON"), "{e}");
    let e = invalid(r#"{"userId": "u"}"#, Some(Kind::Alias));
    assert_eq!(e.path, "$.previousId");
    let big = format!(
        r#"{{"event": "x", "userId": "u", "properties": {{"t": "{}"}}}}"#,
        "a".repeat(MAX_EVENT_BYTES)
    );
    assert!(invalid(&big, Some(Kind::Track)).too_large);
}

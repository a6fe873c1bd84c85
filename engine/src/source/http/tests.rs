use super::*;

#[test]
fn bounds_are_written_in_the_formats_apis_take() {
    let at = CursorValue::TimestampUtc(
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
    );
    assert_eq!(
        format_bound(&at, &BoundFormat::Rfc3339),
        "2024-05-01T12:00:00Z"
    );
    assert_eq!(format_bound(&at, &BoundFormat::Unix), "1714564800");
    assert_eq!(format_bound(&at, &BoundFormat::UnixMs), "1714564800000");
    assert_eq!(format_bound(&at, &BoundFormat::Date), "2024-05-01");
    assert_eq!(
        format_bound(&at, &BoundFormat::Pattern("%Y%m%d%H".into())),
        "2024050112"
    );
    assert_eq!(
        format_bound(&CursorValue::Int(42), &BoundFormat::Rfc3339),
        "42"
    );
}

#[test]
fn an_exclusive_bound_is_the_next_value_the_format_writes() {
    let at = |text: &str| {
        CursorValue::TimestampUtc(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        )
    };
    let hi = at("2024-05-01T12:34:56Z");
    assert_eq!(
        format_after(&hi, &BoundFormat::Rfc3339),
        "2024-05-01T12:34:57Z"
    );
    assert_eq!(format_after(&hi, &BoundFormat::Unix), "1714566897");
    assert_eq!(format_after(&hi, &BoundFormat::UnixMs), "1714566896001");
    assert_eq!(format_after(&hi, &BoundFormat::Date), "2024-05-02");
    assert_eq!(
        format_after(&hi, &BoundFormat::Pattern("%Y%m%d%H".into())),
        "2024050113"
    );
    let day = CursorValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap_or_default());
    assert_eq!(format_after(&day, &BoundFormat::Rfc3339), "2024-03-01");
    assert_eq!(
        format_after(&CursorValue::Int(7), &BoundFormat::Rfc3339),
        "7"
    );
}

#[test]
fn a_lookback_reads_the_recent_part_of_the_window_again() {
    let at = |text: &str| {
        CursorValue::TimestampUtc(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        )
    };
    let api = ApiWindow {
        cursor: "at".into(),
        lake: LakeType::TimestampUtc,
        since: Some("from".into()),
        until: None,
        before: None,
        format: BoundFormat::Rfc3339,
        start: None,
        step: None,
        lookback: Some(std::time::Duration::from_secs(7200)),
    };
    let window = Window {
        cursor: Some("at".into()),
        lo: Some(at("2024-05-01T12:00:00Z")),
        hi: Some(at("2024-05-01T13:00:00Z")),
    };
    let read = reread(Some(&api), &window);
    assert_eq!(read.lo, Some(at("2024-05-01T10:00:00Z")));
    assert_eq!(read.hi, window.hi, "the upper bound stays");
    let first = Window { lo: None, ..window };
    assert_eq!(reread(Some(&api), &first).lo, None, "a first run reads all");
}

#[test]
fn a_long_window_is_cut_into_steps() {
    let day = |d: u32| {
        CursorValue::TimestampUtc(
            NaiveDate::from_ymd_opt(2024, 5, d)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or_default(),
        )
    };
    let api = ApiWindow {
        cursor: "at".into(),
        lake: LakeType::TimestampUtc,
        since: Some("from".into()),
        until: None,
        before: None,
        format: BoundFormat::Rfc3339,
        start: None,
        step: Some(std::time::Duration::from_secs(86_400)),
        lookback: None,
    };
    let window = Window {
        cursor: Some("at".into()),
        lo: Some(day(1)),
        hi: Some(day(3)),
    };
    assert_eq!(
        steps(Some(&api), &window),
        [(Some(day(1)), Some(day(2))), (Some(day(2)), Some(day(3)))]
    );
}

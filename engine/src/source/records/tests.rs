//! The record decoders against the one typing rule, bit for bit.

use super::*;

use crate::error::Error;
use datafusion::arrow::array::{Array, Decimal128Array, Float64Array, Int32Array};
use datafusion::arrow::util::pretty::pretty_format_batches;
use proptest::prelude::*;

fn gps() -> Records {
    let field = |name: &str, lake, nullable| Column {
        name: name.into(),
        lake,
        nullable,
    };
    Records {
        fields: vec![
            field("truck_id", LakeType::String, false),
            field("at", LakeType::TimestampUtc, false),
            field("lat", LakeType::Float64, true),
            field(
                "fuel",
                LakeType::Decimal {
                    precision: 5,
                    scale: 1,
                },
                true,
            ),
        ],
        message_columns: vec![MessageColumn::MessageId],
        coerce: vec![false; 4],
        paths: Vec::new(),
        key: None,
    }
}

fn facts() -> MessageFacts<'static> {
    MessageFacts {
        key: "m-1",
        sent_at: None,
        received_at: Utc::now(),
    }
}

#[test]
fn objects_and_arrays_become_rows() -> Result<()> {
    let mut b = RecordBuilder::new(&gps(), super::super::BatchSize::rows(16));
    let one = b.append_json(
        r#"{"truck_id":"T1","at":"2024-05-01T12:00:00+02:00","lat":52.5,"fuel":12.5}"#,
        &facts(),
    );
    assert_eq!(one, Ok(1));
    let two = b.append_json(
        r#"[{"TruckId":"T2","at":1714564800,"lat":null},{"truck_id":"T3","at":"2024-05-01 10:00:00","fuel":7}]"#,
        &facts(),
    );
    assert_eq!(two, Ok(2));
    let batch = b.finish()?;
    let text = pretty_format_batches(&[batch])
        .map_err(|e| Error::internal(e.to_string()))?
        .to_string();
    assert!(
        text.contains("| T1       | 2024-05-01T10:00:00Z | 52.5 | 12.5 | m-1"),
        "{text}"
    );
    assert!(
        text.contains("| T2       | 2024-05-01T12:00:00Z |      |      | m-1"),
        "{text}"
    );
    assert!(
        text.contains("| T3       | 2024-05-01T10:00:00Z |      | 7.0  | m-1"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_body_that_does_not_fit_is_refused_whole() -> Result<()> {
    let mut b = RecordBuilder::new(&gps(), super::super::BatchSize::rows(16));
    let cases = [
        ("not json", "not JSON"),
        ("42", "a number; expected a JSON object"),
        (
            r#"[{"truck_id":"T","at":1}, 3]"#,
            "item 1 of the body's array is a number",
        ),
        (r#"{"at":1}"#, "field `truck_id` is missing"),
        (r#"{"truck_id":"T","at":"yesterday"}"#, "is not a timestamp"),
        (
            r#"{"truck_id":"T","at":1,"fuel":12.25}"#,
            "more than 1 decimals",
        ),
        (
            r#"{"truck_id":"T","at":1,"fuel":123456}"#,
            "more than 5 digits",
        ),
        (
            r#"[{"truck_id":"T","at":1},{"truck_id":null,"at":1}]"#,
            "record 1: field `truck_id` is null",
        ),
    ];
    for (body, expected) in cases {
        match b.append_json(body, &facts()) {
            Ok(n) => panic!("{body} was accepted ({n} records)"),
            Err(m) => assert!(m.contains(expected), "{body}: {m}"),
        }
    }
    assert_eq!(b.rows(), 0, "nothing of a refused body is appended");
    assert_eq!(b.finish()?.num_rows(), 0);
    Ok(())
}

/// A batch's first column, as decimal texts.
fn decimals(batch: &RecordBatch) -> Vec<String> {
    let d = batch.column(0).as_any().downcast_ref::<Decimal128Array>();
    (0..batch.num_rows())
        .filter_map(|i| d.map(|d| d.value_as_string(i)))
        .collect()
}

fn typed(lake: LakeType, coerce: bool) -> Records {
    Records {
        fields: vec![Column {
            name: "v".into(),
            lake,
            nullable: true,
        }],
        message_columns: Vec::new(),
        coerce: vec![coerce],
        paths: Vec::new(),
        key: None,
    }
}

fn facts_at() -> FileFacts<'static> {
    FileFacts {
        path: "f",
        line: 1,
        record: 0,
    }
}

#[test]
fn text_where_a_number_belongs_fits_only_where_the_job_coerces() -> Result<()> {
    let decimal = LakeType::Decimal {
        precision: 9,
        scale: 2,
    };
    for (lake, text) in [
        (LakeType::Int32, "\"090\""),
        (LakeType::Float64, "\"1.5\""),
        (decimal, "\"12.50\""),
        (LakeType::Boolean, "\"true\""),
    ] {
        let body = format!("{{\"v\":{text}}}");
        let mut strict = RecordBuilder::new(&typed(lake, false), super::super::BatchSize::rows(4));
        let refused = strict.append_json(&body, &facts());
        assert!(
            refused
                .as_ref()
                .is_err_and(|m| m.contains("field `v`: a string") && m.contains("source.coerce")),
            "{body}: {refused:?}"
        );
        let refused = strict.append_json_object(body.as_bytes(), &facts_at());
        assert!(refused.is_err(), "{body}: {refused:?}");
        let mut coercing = RecordBuilder::new(&typed(lake, true), super::super::BatchSize::rows(4));
        assert_eq!(coercing.append_json(&body, &facts()), Ok(1), "{body}");
    }
    let mut coercing = RecordBuilder::new(
        &typed(LakeType::Int32, true),
        super::super::BatchSize::rows(4),
    );
    coercing
        .append_json(r#"{"v":"090"}"#, &facts())
        .map_err(Error::internal)?;
    let batch = coercing.finish()?;
    let ints = batch.column(0).as_any().downcast_ref::<Int32Array>();
    assert_eq!(ints.map(|a| a.value(0)), Some(90));
    // A number where an integer belongs must be one.
    let mut strict = RecordBuilder::new(
        &typed(LakeType::Int32, false),
        super::super::BatchSize::rows(4),
    );
    assert!(strict.append_json(r#"{"v":90.5}"#, &facts()).is_err());
    assert!(strict.append_json(r#"{"v":true}"#, &facts()).is_err());
    Ok(())
}

/// The doubles a body carries, through the queue's and the files' decoders, read back
/// from the batch.
fn doubles_through(texts: &[String]) -> Result<Vec<(u64, u64)>> {
    let records = typed(LakeType::Float64, false);
    let mut queue = RecordBuilder::new(&records, super::super::BatchSize::rows(texts.len() + 1));
    let mut files = RecordBuilder::new(&records, super::super::BatchSize::rows(texts.len() + 1));
    let body = format!(
        "[{}]",
        texts
            .iter()
            .map(|t| format!("{{\"v\":{t}}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    queue
        .append_json(&body, &facts())
        .map_err(Error::internal)?;
    for t in texts {
        files
            .append_json_object(format!("{{\"v\":{t}}}").as_bytes(), &facts_at())
            .map_err(Error::internal)?;
    }
    let (q, f) = (queue.finish()?, files.finish()?);
    let bits = |b: &RecordBatch| -> Vec<u64> {
        b.column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|a| a.values().iter().map(|v| v.to_bits()).collect())
            .unwrap_or_default()
    };
    Ok(bits(&q).into_iter().zip(bits(&f)).collect())
}

proptest! {
    #[test]
    fn doubles_land_bit_for_bit(bits in proptest::collection::vec(any::<u64>(), 1..64)) {
        let values: Vec<f64> = bits
            .iter()
            .map(|b| f64::from_bits(*b))
            .filter(|v| v.is_finite())
            .collect();
        prop_assume!(!values.is_empty());
        // The shortest form (JavaScript's, Python's repr) and 17 significant digits.
        let texts: Vec<String> = values
            .iter()
            .flat_map(|v| [format!("{v:?}"), format!("{v:.16e}")])
            .collect();
        let got = doubles_through(&texts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), texts.len());
        for (i, (q, f)) in got.into_iter().enumerate() {
            let sent = values[i / 2].to_bits();
            prop_assert_eq!(q, sent, "queue: {}", texts[i]);
            prop_assert_eq!(f, sent, "files: {}", texts[i]);
        }
    }
}

#[test]
fn edge_numbers_land_exactly() -> Result<()> {
    let texts: Vec<String> = [
        "-0.0",
        "-0",
        "0",
        "5e-324",
        "2.2250738585072009e-308",
        "1.7976931348623157e308",
        "0.1",
        "0.30000000000000004",
        "9007199254740993",
        "-4.9406564584124654e-324",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    for ((q, f), t) in doubles_through(&texts)?.into_iter().zip(&texts) {
        let sent = t.parse::<f64>().map(f64::to_bits).ok();
        assert_eq!(Some(q), sent, "queue {t}");
        assert_eq!(Some(f), sent, "files {t}");
    }
    // Decimals beyond a double's precision, and integers to the ends of 64 bits.
    let decimal = LakeType::Decimal {
        precision: 38,
        scale: 10,
    };
    let mut b = RecordBuilder::new(&typed(decimal, false), super::super::BatchSize::rows(8));
    let digits = "1234567890123456789012345678.0123456789";
    b.append_json(
        &format!(r#"[{{"v":{digits}}},{{"v":-{digits}}}]"#),
        &facts(),
    )
    .map_err(Error::internal)?;
    b.append_json_object(format!(r#"{{"v":{digits}}}"#).as_bytes(), &facts_at())
        .map_err(Error::internal)?;
    let text = decimals(&b.finish()?);
    assert_eq!(
        text,
        [digits.to_string(), format!("-{digits}"), digits.to_string()]
    );
    let mut b = RecordBuilder::new(
        &typed(LakeType::Int64, false),
        super::super::BatchSize::rows(8),
    );
    b.append_json(
        r#"[{"v":9223372036854775807},{"v":-9223372036854775808}]"#,
        &facts(),
    )
    .map_err(Error::internal)?;
    assert!(
        b.append_json(r#"{"v":9223372036854775808}"#, &facts())
            .is_err()
    );
    let batch = b.finish()?;
    assert_eq!(batch.num_rows(), 2);
    assert!(batch.column(0).is_valid(1));
    Ok(())
}

#[test]
fn a_mapped_decimal_keeps_its_digits() -> Result<()> {
    let mut records = typed(
        LakeType::Decimal {
            precision: 38,
            scale: 10,
        },
        false,
    );
    records.paths = vec![(
        "v".into(),
        Path::parse("$.a.b[1]").map_err(Error::internal)?,
    )];
    let mut b = RecordBuilder::new(&records, super::super::BatchSize::rows(8));
    let digits = "-1234567890123456789012345678.0123456789";
    let body = format!(r#"{{"a": {{"b": [1, {digits}]}}, "c": "12345678901234567890"}}"#);
    b.append_json(&format!("[{body}, {body}]"), &facts())
        .map_err(Error::internal)?;
    b.append_json_object(body.as_bytes(), &facts_at())
        .map_err(Error::internal)?;
    let text = decimals(&b.finish()?);
    assert_eq!(text, [digits; 3]);
    Ok(())
}

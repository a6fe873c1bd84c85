//! PostgreSQL's binary wire format, decoded straight into Arrow builders: no per-value
//! allocation and no detour through `BigDecimal` or chrono. The same format is what
//! `COPY … (FORMAT binary)` sends, so this decoder serves both paths.
//!
//! Formats (PostgreSQL's `*send` functions): integers and floats big-endian; `date` is
//! days and `timestamp[tz]` microseconds since 2000-01-01; `numeric` is
//! `ndigits, weight, sign, dscale` (u16/i16) followed by base-10000 digits.

use super::batch::{ColumnBuilder, Misfit};
use super::types::Read;

/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

type Fit = Result<(), Misfit>;

/// Appends one non-NULL value in binary format.
pub fn append(bytes: &[u8], read: Read, b: &mut ColumnBuilder) -> Fit {
    match read {
        Read::Bool => b.bool(first(bytes)? != 0),
        Read::I16 => b.int(i64::from(i16::from_be_bytes(array(bytes)?))),
        Read::I32 => b.int(i64::from(i32::from_be_bytes(array(bytes)?))),
        Read::I64 => b.int(i64::from_be_bytes(array(bytes)?)),
        Read::F32 => b.float(f64::from(f32::from_be_bytes(array(bytes)?))),
        Read::F64 => b.float(f64::from_be_bytes(array(bytes)?)),
        Read::Text => b.text(
            std::str::from_utf8(bytes).map_err(|e| Misfit(format!("text is not UTF-8: {e}")))?,
        ),
        Read::Bytes => b.bytes(bytes),
        Read::Date => match i32::from_be_bytes(array(bytes)?) {
            i32::MAX | i32::MIN => Err(infinity("date")),
            days => b.days(
                days.checked_add(PG_EPOCH_DAYS)
                    .ok_or_else(|| Misfit(format!("date {days} is out of range")))?,
            ),
        },
        Read::DateTime | Read::DateTimeUtc => match i64::from_be_bytes(array(bytes)?) {
            i64::MAX | i64::MIN => Err(infinity("timestamp")),
            micros => b.micros(
                micros
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or_else(|| Misfit(format!("timestamp {micros} is out of range")))?,
            ),
        },
        Read::Decimal => {
            let scale = b
                .decimal_scale()
                .ok_or_else(|| Misfit("a NUMERIC value for a non-decimal column".into()))?;
            b.decimal_unscaled(numeric_unscaled(bytes, scale)?)
        }
        Read::I8 | Read::U8 | Read::U16 | Read::U32 | Read::U64 => {
            Err(Misfit(format!("PostgreSQL has no {read:?} values")))
        }
    }
}

fn infinity(what: &str) -> Misfit {
    Misfit(format!(
        "{what} 'infinity' has no value in the lake; map it in `query:` (for example CASE WHEN isfinite(col) THEN col END)"
    ))
}

fn first(bytes: &[u8]) -> Result<u8, Misfit> {
    bytes
        .first()
        .copied()
        .ok_or_else(|| Misfit("an empty value".into()))
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Misfit> {
    bytes
        .try_into()
        .map_err(|_| Misfit(format!("expected {N} bytes, got {}", bytes.len())))
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, Misfit> {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_be_bytes)
        .ok_or_else(|| Misfit("a truncated NUMERIC value".into()))
}

/// A NUMERIC value as an integer scaled by `10^scale`, refusing any value that would
/// lose a digit.
pub fn numeric_unscaled(bytes: &[u8], scale: i8) -> Result<i128, Misfit> {
    let ndigits = usize::from(u16_at(bytes, 0)?);
    let weight = i32::from(u16_at(bytes, 2)? as i16);
    let sign = u16_at(bytes, 4)?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            return Err(Misfit(
                "NUMERIC 'NaN' has no value in the lake; map it in `query:`".into(),
            ));
        }
        _ => return Err(infinity("NUMERIC")),
    }
    let overflow = || Misfit("NUMERIC value has more than 38 digits".into());
    let too_precise = || Misfit(format!("NUMERIC value has more than {scale} decimals"));
    // Digit k is worth 10^exp(k) in the scaled value; consecutive digits differ by 10^4.
    let exp = |k: usize| 4 * (weight - k as i32) + i32::from(scale);
    let mut n: i128 = 0;
    let mut last_whole: Option<i32> = None;
    for k in 0..ndigits {
        let digit = i128::from(u16_at(bytes, 8 + 2 * k)?);
        let e = exp(k);
        if e >= 0 {
            // Horner over the digits that land on whole units of the scaled value.
            n = n
                .checked_mul(10_000)
                .and_then(|n| n.checked_add(digit))
                .ok_or_else(overflow)?;
            last_whole = Some(e);
        } else {
            if let Some(e) = last_whole.take() {
                n = n
                    .checked_mul(10i128.checked_pow(e as u32).ok_or_else(overflow)?)
                    .ok_or_else(overflow)?;
            }
            match 10i128.checked_pow((-e) as u32) {
                Some(div) if digit % div == 0 => {
                    n = n.checked_add(digit / div).ok_or_else(overflow)?
                }
                _ if digit == 0 => {}
                _ => return Err(too_precise()),
            }
        }
    }
    if let Some(e) = last_whole {
        n = n
            .checked_mul(10i128.checked_pow(e as u32).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    }
    Ok(if sign == 0x4000 { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, negative: bool, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((digits.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numeric_values() {
        // 1234.567 = 1234 . 5670 → weight 0, digits [1234, 5670]
        assert_eq!(
            numeric_unscaled(&numeric(0, false, 3, &[1234, 5670]), 3).ok(),
            Some(1_234_567)
        );
        assert_eq!(
            numeric_unscaled(&numeric(0, true, 3, &[1234, 5670]), 3).ok(),
            Some(-1_234_567)
        );
        // 0 has no digits.
        assert_eq!(
            numeric_unscaled(&numeric(0, false, 2, &[]), 2).ok(),
            Some(0)
        );
        // 120000 = 12 * 10000^1 → weight 1, digits [12]
        assert_eq!(
            numeric_unscaled(&numeric(1, false, 0, &[12]), 2).ok(),
            Some(12_000_000)
        );
        // 0.0005 → weight -1, digits [5]
        assert_eq!(
            numeric_unscaled(&numeric(-1, false, 4, &[5]), 4).ok(),
            Some(5)
        );
        assert!(
            numeric_unscaled(&numeric(-1, false, 4, &[5]), 3).is_err(),
            "would lose a decimal"
        );
        // 38 digits, 10 of them decimals: 9999999999999999999999999999.9999999999
        let wide = numeric(
            6,
            false,
            10,
            &[9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9900],
        );
        assert_eq!(numeric_unscaled(&wide, 10).ok(), Some(10i128.pow(38) - 1));
        // 39 nines do not fit in 38 digits
        let nines = [9999u16; 10];
        assert!(numeric_unscaled(&numeric(9, false, 0, &nines), 0).is_err());
    }

    #[test]
    fn special_values_are_refused() {
        let nan = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(numeric_unscaled(&nan, 0).is_err_and(|m| m.0.contains("NaN")));
        let mut b = ColumnBuilder::new(super::super::types::LakeType::Timestamp, 1, 0);
        assert!(
            append(&i64::MAX.to_be_bytes(), Read::DateTime, &mut b)
                .is_err_and(|m| m.0.contains("infinity"))
        );
    }
}

//! Where a change capture job is in its database's log: kept in the job's state and
//! moved only by the compare-and-set (or Delta commit) that commits the changes before
//! it, so that the lake holds a change if and only if the position is past it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a change capture job has committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeState {
    /// The log position up to which the lake holds the table's changes.
    pub position: Position,
    /// The last `_sluice_seq` committed: the next change is numbered after it.
    pub seq: i64,
    /// The table's columns (name, source type) when the last run read them: a column that
    /// leaves or changes type since is refused (the log's older changes would no longer
    /// fit), and one that is added is followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<(String, String)>,
}

/// A position in a database's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "database", rename_all = "snake_case")]
pub enum Position {
    /// PostgreSQL: the slot's confirmed position (an LSN such as `0/16B3748`), on the
    /// server whose `system_identifier` it was read from.
    Postgres {
        slot: String,
        lsn: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_id: Option<String>,
    },
    /// MySQL/MariaDB: the binlog file and offset after the last transaction read, the
    /// GTID state there, and the server it was read from.
    Mysql {
        file: String,
        pos: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        gtid: String,
        server_id: u64,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Postgres { lsn, .. } => f.write_str(lsn),
            Position::Mysql {
                file, pos, gtid, ..
            } if gtid.is_empty() => write!(f, "{file}:{pos}"),
            Position::Mysql {
                file, pos, gtid, ..
            } => write!(f, "{file}:{pos} ({gtid})"),
        }
    }
}

/// A PostgreSQL log sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Reads PostgreSQL's text form, `X/Y` (two hexadecimal halves).
    pub fn parse(text: &str) -> Result<Lsn> {
        let bad = || Error::internal(format!("{text:?} is not a PostgreSQL LSN"));
        let (hi, lo) = text.trim().split_once('/').ok_or_else(bad)?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return Err(bad());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_through_their_text() -> Result<()> {
        for text in ["0/0", "0/16B3748", "1/0", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(Lsn::parse(text)?.to_string(), text);
        }
        assert!(Lsn::parse("0/16B3748")? < Lsn::parse("1/0")?);
        assert!(Lsn::parse("16B3748").is_err());
        assert!(Lsn::parse("1/G").is_err());
        Ok(())
    }

    #[test]
    fn a_position_is_kept_as_json() -> Result<()> {
        let state = ChangeState {
            position: Position::Postgres {
                slot: "sluice_orders".into(),
                lsn: "0/16B3748".into(),
                system_id: Some("7301".into()),
            },
            seq: 42,
            columns: vec![("id".into(), "INT4".into())],
        };
        let json = serde_json::to_string(&state).map_err(|e| Error::internal(e.to_string()))?;
        let back: ChangeState =
            serde_json::from_str(&json).map_err(|e| Error::internal(e.to_string()))?;
        assert_eq!(back, state);
        Ok(())
    }
}

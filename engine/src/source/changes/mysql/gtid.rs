//! MariaDB's global transaction ids and where a reader is in the binlog. mysql_common
//! parses MySQL's GTID events but hands MariaDB's back raw (`read_data()` is `None` for
//! them), so the two we need are parsed here: MARIADB_GTID_EVENT (0xA2), which opens
//! every transaction, and MARIADB_GTID_LIST_EVENT (0xA3), the binlog state at the start
//! of each file.

use std::collections::BTreeMap;
use std::fmt;

/// MARIADB_GTID_EVENT: a transaction's GTID; the transaction follows.
pub const GTID_EVENT: u8 = 0xA2;
/// MARIADB_GTID_LIST_EVENT: the last GTID of each domain before this binlog file.
pub const GTID_LIST_EVENT: u8 = 0xA3;
/// MariaDB's compressed events (`log_bin_compress`): query and rows, 0xA5 to 0xAB.
pub const COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 0xA5..=0xAB;

/// A GTID event's flags: the group is one statement (DDL) with no COMMIT/XID after it.
const FL_STANDALONE: u8 = 0x01;
/// The group is an XA PREPARE, or the XA COMMIT/ROLLBACK of one.
const FL_PREPARED_XA: u8 = 0x40;
const FL_COMPLETED_XA: u8 = 0x80;

/// One transaction's id: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// The last transaction of each replication domain: the form of `@@gtid_binlog_pos`,
/// `BINLOG_GTID_POS()` and `@slave_connect_state` (which resumes a replica after it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidState(BTreeMap<u32, Gtid>);

impl GtidState {
    /// Reads `0-1-5,1-2-7` (the empty text is the empty state).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut state = GtidState::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("{part:?} is not a MariaDB GTID (domain-server-sequence)");
            let mut numbers = part.split('-');
            let (Some(d), Some(s), Some(n), None) = (
                numbers.next(),
                numbers.next(),
                numbers.next(),
                numbers.next(),
            ) else {
                return Err(bad());
            };
            let gtid = Gtid {
                domain: d.parse().map_err(|_| bad())?,
                server: s.parse().map_err(|_| bad())?,
                seq: n.parse().map_err(|_| bad())?,
            };
            state.0.insert(gtid.domain, gtid);
        }
        Ok(state)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A transaction committed: its domain's last GTID.
    pub fn apply(&mut self, gtid: Gtid) {
        self.0.insert(gtid.domain, gtid);
    }

    /// A GTID the binlog says was before here (a GTID list): kept when it is newer than
    /// what the state knows of its domain (sequence numbers grow within a domain).
    pub fn merge(&mut self, gtid: Gtid) {
        if self
            .0
            .get(&gtid.domain)
            .is_none_or(|known| known.seq < gtid.seq)
        {
            self.0.insert(gtid.domain, gtid);
        }
    }

    /// Whether every transaction `other` holds is in this state too (this one is at or
    /// after `other` in every domain `other` has).
    pub fn covers(&self, other: &GtidState) -> bool {
        other
            .0
            .values()
            .all(|g| self.0.get(&g.domain).is_some_and(|mine| mine.seq >= g.seq))
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.values().map(Gtid::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// A place in the binlog: a file and an offset in it, and the GTID state there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
    pub gtid: GtidState,
}

impl BinlogPos {
    /// Whether this place is at or after `other`, by the files' numbers (`binlog.000012`)
    /// and the offsets; files of other names compare by name.
    pub fn at_or_after(&self, other: &BinlogPos) -> bool {
        (file_number(&self.file), self.file.as_str(), self.pos)
            >= (file_number(&other.file), other.file.as_str(), other.pos)
    }
}

/// The number a binlog file's name ends with (`binlog.000012` → 12).
fn file_number(file: &str) -> Option<u64> {
    file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
}

/// What a MARIADB_GTID_EVENT says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEvent {
    pub gtid: Gtid,
    /// A single statement (DDL) without a COMMIT or XID after it.
    pub standalone: bool,
    /// An XA transaction's PREPARE, COMMIT or ROLLBACK.
    pub xa: bool,
}

/// Parses a MARIADB_GTID_EVENT's body (after the common header, without the checksum):
/// sequence number (8 bytes), domain (4), flags (1), then what the flags announce. The
/// server id is the event header's.
pub fn gtid_event(server: u32, body: &[u8]) -> Result<GtidEvent, String> {
    let (Some(seq), Some(domain), Some(&flags)) = (body.get(0..8), body.get(8..12), body.get(12))
    else {
        return Err(format!("a MariaDB GTID event of {} bytes", body.len()));
    };
    Ok(GtidEvent {
        gtid: Gtid {
            domain: u32::from_le_bytes(four(domain)),
            server,
            seq: u64::from_le_bytes(eight(seq)),
        },
        standalone: flags & FL_STANDALONE != 0,
        xa: flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0,
    })
}

/// Parses a MARIADB_GTID_LIST_EVENT's body: a count (4 bytes, its top 4 bits flags),
/// then per GTID its domain (4), server (4) and sequence number (8).
pub fn gtid_list(body: &[u8]) -> Result<Vec<Gtid>, String> {
    let count = body
        .get(0..4)
        .map(|c| u32::from_le_bytes(four(c)) & 0x0FFF_FFFF)
        .ok_or("a MariaDB GTID list event without its count")?;
    let entries = body.get(4..).unwrap_or_default();
    let count = usize::try_from(count).map_err(|_| "a GTID list too long")?;
    if entries.len() < count.saturating_mul(16) {
        return Err(format!(
            "a MariaDB GTID list of {count} GTIDs in {} bytes",
            entries.len()
        ));
    }
    Ok(entries
        .chunks_exact(16)
        .take(count)
        .map(|e| Gtid {
            domain: u32::from_le_bytes(four(&e[0..4])),
            server: u32::from_le_bytes(four(&e[4..8])),
            seq: u64::from_le_bytes(eight(&e[8..16])),
        })
        .collect())
}

fn four(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

fn eight(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text() -> Result<(), String> {
        let state = GtidState::parse("1-2-7, 0-1-5")?;
        assert_eq!(state.to_string(), "0-1-5,1-2-7");
        assert!(GtidState::parse("")?.is_empty());
        assert!(GtidState::parse("0-1").is_err());
        assert!(GtidState::parse("0-1-x").is_err());
        assert!(GtidState::parse("0-1-2-3").is_err());
        Ok(())
    }

    #[test]
    fn a_state_covers_what_it_is_at_or_after() -> Result<(), String> {
        let now = GtidState::parse("0-1-9,1-2-3")?;
        assert!(now.covers(&GtidState::parse("0-1-5")?));
        assert!(now.covers(&GtidState::default()));
        assert!(!now.covers(&GtidState::parse("0-1-10")?));
        assert!(!now.covers(&GtidState::parse("2-1-1")?));
        let mut merged = now.clone();
        merged.merge(Gtid {
            domain: 0,
            server: 3,
            seq: 4,
        });
        assert_eq!(merged, now);
        merged.merge(Gtid {
            domain: 2,
            server: 3,
            seq: 4,
        });
        assert_eq!(merged.to_string(), "0-1-9,1-2-3,2-3-4");
        Ok(())
    }

    #[test]
    fn gtid_events_and_lists_parse() -> Result<(), String> {
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend(3u32.to_le_bytes());
        body.push(FL_STANDALONE);
        let event = gtid_event(7, &body)?;
        assert_eq!(event.gtid.to_string(), "3-7-42");
        assert!(event.standalone && !event.xa);
        assert!(gtid_event(7, &body[..12]).is_err());

        let mut list = (2u32 | 0x1000_0000).to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 5u64), (1, 2, 7)] {
            list.extend(d.to_le_bytes());
            list.extend(s.to_le_bytes());
            list.extend(n.to_le_bytes());
        }
        let gtids = gtid_list(&list)?;
        assert_eq!(gtids.len(), 2);
        assert_eq!(gtids[1].to_string(), "1-2-7");
        assert!(gtid_list(&list[..20]).is_err());
        Ok(())
    }

    #[test]
    fn binlog_places_order_by_file_number_then_offset() {
        let at = |file: &str, pos| BinlogPos {
            file: file.into(),
            pos,
            gtid: GtidState::default(),
        };
        assert!(at("binlog.000010", 4).at_or_after(&at("binlog.000009", 900)));
        assert!(at("binlog.000009", 900).at_or_after(&at("binlog.000009", 900)));
        assert!(!at("binlog.000009", 899).at_or_after(&at("binlog.000009", 900)));
    }
}

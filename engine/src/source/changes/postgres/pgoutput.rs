//! The pgoutput protocol, version 1: the messages a logical replication slot yields,
//! parsed from their bytes (the `data` of `pg_logical_slot_peek_binary_changes`; the
//! same bytes `START_REPLICATION` streams). Only what change capture reads: Begin,
//! Commit, Relation, Insert, Update, Delete, Truncate; Origin, Type and Message are
//! skipped. See PostgreSQL's "Logical Replication Message Formats".

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        /// The LSN of the transaction's commit record.
        final_lsn: u64,
        /// The commit time, in microseconds since the Unix epoch.
        commit_micros: i64,
    },
    Commit {
        /// The end of the commit record: where the next transaction starts.
        end_lsn: u64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// The old row: its key (`K`, replica identity DEFAULT or INDEX, only when the
        /// key changed) or all of it (`O`, REPLICA IDENTITY FULL).
        old: Option<Tuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: Tuple,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Origin, Type, logical decoding messages: nothing to capture.
    Other,
}

/// A table as the stream describes it, before its first change after a (re)connect or
/// a DDL: the changes that follow are positional against these columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    pub name: String,
    /// Part of the replica identity (the key).
    pub key: bool,
    pub type_oid: u32,
}

/// One row's values, positional.
pub type Tuple = Vec<Value>;

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// An out-of-line (TOASTed) value the change did not touch: not sent.
    Unchanged,
    /// The value's text output.
    Text(Vec<u8>),
}

/// Parses one message.
pub fn parse(data: &[u8]) -> Result<Message, String> {
    let mut r = Reader { data, at: 0 };
    let tag = r.u8()?;
    let message = match tag {
        b'B' => {
            let final_lsn = r.u64()?;
            let commit = r.i64()?;
            let _xid = r.u32()?;
            Message::Begin {
                final_lsn,
                commit_micros: commit.saturating_add(PG_EPOCH_MICROS),
            }
        }
        b'C' => {
            let _flags = r.u8()?;
            let _commit_lsn = r.u64()?;
            let end_lsn = r.u64()?;
            let _commit_time = r.i64()?;
            Message::Commit { end_lsn }
        }
        b'R' => {
            let id = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.u16()?;
            let mut columns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(RelationColumn {
                    name,
                    key: flags & 1 == 1,
                    type_oid,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut kind = r.u8()?;
            let old = if kind == b'K' || kind == b'O' {
                let old = r.tuple()?;
                kind = r.u8()?;
                Some(old)
            } else {
                None
            };
            if kind != b'N' {
                return Err(format!("an Update without its new row (tag {kind:#x})"));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(format!("a Delete without its old row (tag {kind:#x})"));
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32()?;
            let _options = r.u8()?;
            let relations = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
            Message::Truncate { relations }
        }
        b'O' | b'Y' | b'M' => Message::Other,
        other => {
            return Err(format!(
                "an unknown pgoutput message {:?} (protocol version 1 was asked for)",
                other as char
            ));
        }
    };
    Ok(message)
}

/// Reads big-endian fields off a message.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let Some(end) = end else {
            return Err(format!(
                "a pgoutput message ends early ({} bytes, {} more wanted at {})",
                self.data.len(),
                n,
                self.at
            ));
        };
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn expect(&mut self, tag: u8) -> Result<(), String> {
        match self.u8()? {
            t if t == tag => Ok(()),
            t => Err(format!(
                "expected {:?} in a pgoutput message, found {:?}",
                tag as char, t as char
            )),
        }
    }

    /// A NUL-terminated string.
    fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.data[self.at.min(self.data.len())..];
        let Some(len) = rest.iter().position(|b| *b == 0) else {
            return Err("a pgoutput string without its end".into());
        };
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }

    /// TupleData: a count, then each value's kind and (for text) its length and bytes.
    fn tuple(&mut self) -> Result<Tuple, String> {
        let n = self.u16()?;
        let mut values = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            values.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' | b'b' => {
                    let len = self.u32()?;
                    let len = usize::try_from(len).map_err(|_| "a value too long".to_string())?;
                    Value::Text(self.take(len)?.to_vec())
                }
                other => return Err(format!("an unknown value kind {:?}", other as char)),
            });
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut out = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => out.push(b'n'),
                Some(t) => {
                    out.push(b't');
                    out.extend((t.len() as u32).to_be_bytes());
                    out.extend(t.as_bytes());
                }
            }
        }
        out
    }

    #[test]
    fn messages_parse() -> Result<(), String> {
        let mut begin = vec![b'B'];
        begin.extend(0x0100_0000_2000u64.to_be_bytes());
        begin.extend(1_000_000i64.to_be_bytes());
        begin.extend(7u32.to_be_bytes());
        assert_eq!(
            parse(&begin)?,
            Message::Begin {
                final_lsn: 0x0100_0000_2000,
                commit_micros: PG_EPOCH_MICROS + 1_000_000
            }
        );

        let mut relation = vec![b'R'];
        relation.extend(16384u32.to_be_bytes());
        relation.extend(b"public\0orders\0d");
        relation.extend(2u16.to_be_bytes());
        relation.extend(b"\x01id\0");
        relation.extend(23u32.to_be_bytes());
        relation.extend((-1i32).to_be_bytes());
        relation.extend(b"\x00note\0");
        relation.extend(25u32.to_be_bytes());
        relation.extend((-1i32).to_be_bytes());
        let Message::Relation(r) = parse(&relation)? else {
            return Err("not a relation".into());
        };
        assert_eq!(
            (r.id, r.name.as_str(), r.columns.len()),
            (16384, "orders", 2)
        );
        assert!(r.columns[0].key && !r.columns[1].key);

        let mut update = vec![b'U'];
        update.extend(16384u32.to_be_bytes());
        update.push(b'O');
        update.extend(tuple(&[Some("1"), Some("old")]));
        update.push(b'N');
        let mut new = tuple(&[Some("1"), None]);
        let last = new.len() - 1;
        new[last] = b'u';
        update.extend(new);
        assert_eq!(
            parse(&update)?,
            Message::Update {
                relation: 16384,
                old: Some(vec![
                    Value::Text(b"1".to_vec()),
                    Value::Text(b"old".to_vec())
                ]),
                new: vec![Value::Text(b"1".to_vec()), Value::Unchanged],
            }
        );

        let mut truncate = vec![b'T'];
        truncate.extend(2u32.to_be_bytes());
        truncate.push(0);
        truncate.extend(1u32.to_be_bytes());
        truncate.extend(16384u32.to_be_bytes());
        assert_eq!(
            parse(&truncate)?,
            Message::Truncate {
                relations: vec![1, 16384]
            }
        );
        assert!(parse(&[b'I', 0, 0]).is_err());
        Ok(())
    }
}

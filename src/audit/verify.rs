//! Offline verification of a JSON Lines export: needs only the file and the instance's public
//! key. Reads the file once, in constant memory, and stops at the first problem, naming its
//! line and seq.

use std::io::BufRead;

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::Row;
use super::{chain, export, key_id, parse_public_key};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Not an export, or a line that does not parse.
    Malformed,
    /// A record's content no longer matches its hash or commitment.
    Modified,
    /// Records are missing from the sequence.
    Deleted,
    /// A record that was never part of the chain.
    Inserted,
    /// Records out of order.
    Reordered,
    /// The file ends before its signed trailer.
    Truncated,
    /// A checkpoint or the trailer carries a bad signature, or the wrong key signed it.
    BadSignature,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    /// 1-based line in the file.
    pub line: u64,
    pub seq: Option<i64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub stubs: u64,
    pub checkpoints: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub key_id: String,
    /// True when the signatures were checked against a key given by the caller rather than the
    /// one written in the file.
    pub pinned: bool,
}

/// A record's content against its own hash and its personal-data commitment.
pub(super) fn check_record(row: &Row, line: u64) -> Result<(), Problem> {
    let seq = Some(row.seq);
    if export::recompute(row).map(hex::encode).as_deref() != Some(row.hash.as_str()) {
        return Err(problem(Kind::Modified, line, seq, "the record does not match its hash: it was modified"));
    }
    if let Some(salt) = &row.personal_salt {
        let c = chain::personal_commitment(salt, row.actor_id.as_deref(), row.ip.as_deref(), row.user_agent.as_deref());
        if c != row.personal {
            return Err(problem(Kind::Modified, line, seq, "the actor, address or user agent was modified"));
        }
    }
    Ok(())
}

impl Report {
    pub(super) fn new(key: &VerifyingKey, pinned: bool) -> Report {
        Report { records: 0, stubs: 0, checkpoints: 0, first_seq: None, last_seq: None, key_id: key_id(key), pinned }
    }
}

pub(super) fn problem(kind: Kind, line: u64, seq: Option<i64>, message: impl Into<String>) -> Problem {
    Problem { kind, line, seq, message: message.into() }
}

/// One logical entry of an export: a JSON line, or a CSV record (which may span lines).
struct Entry {
    /// The physical line it starts on (1-based).
    line: u64,
    /// Its exact bytes, for the digest.
    raw: Vec<u8>,
    /// The entry in the JSON Lines shape, whatever the file's format.
    value: Result<Value, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Jsonl,
    Csv,
}

struct Entries<R> {
    reader: R,
    format: FileFormat,
    line: u64,
    peeked: Option<Entry>,
}

impl<R: BufRead> Entries<R> {
    /// Detect the format; for CSV, consume the column row (returned, for the digest).
    fn open(mut reader: R) -> std::io::Result<(Self, Vec<u8>)> {
        let csv = reader.fill_buf()?.starts_with(b"record_type,");
        let mut entries =
            Entries { reader, format: if csv { FileFormat::Csv } else { FileFormat::Jsonl }, line: 0, peeked: None };
        let mut preamble = Vec::new();
        if csv {
            preamble = entries.physical_lines()?.map(|(_, raw)| raw).unwrap_or_default();
        }
        Ok((entries, preamble))
    }

    /// One JSON line, or the lines of one CSV record (quotes balanced).
    fn physical_lines(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        let mut raw = Vec::new();
        let start = self.line + 1;
        loop {
            if self.reader.read_until(b'\n', &mut raw)? == 0 {
                return Ok((!raw.is_empty()).then_some((start, raw)));
            }
            self.line += 1;
            if self.format == FileFormat::Jsonl || raw.iter().filter(|b| **b == b'"').count() % 2 == 0 {
                return Ok(Some((start, raw)));
            }
        }
    }

    fn read(&mut self) -> std::io::Result<Option<Entry>> {
        let Some((line, raw)) = self.physical_lines()? else { return Ok(None) };
        let value = match self.format {
            FileFormat::Jsonl => serde_json::from_slice(&raw).map_err(|e| format!("not JSON: {e}")),
            FileFormat::Csv => csv_entry(&raw),
        };
        Ok(Some(Entry { line, raw, value }))
    }

    fn next(&mut self) -> std::io::Result<Option<Entry>> {
        match self.peeked.take() {
            Some(e) => Ok(Some(e)),
            None => self.read(),
        }
    }

    fn peek(&mut self) -> std::io::Result<Option<&Entry>> {
        if self.peeked.is_none() {
            self.peeked = self.read()?;
        }
        Ok(self.peeked.as_ref())
    }
}

/// Split one CSV record (RFC 4180) and undo the export's formula guard (one leading `'`).
fn csv_fields(raw: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields.into_iter().map(|f| f.strip_prefix('\'').map(str::to_owned).unwrap_or(f)).collect())
}

/// A CSV record in the JSON Lines shape the checks expect.
fn csv_entry(raw: &[u8]) -> Result<Value, String> {
    let f = csv_fields(raw)?;
    if f.len() != export::CSV_COLUMNS.len() {
        return Err(format!("expected {} fields, found {}", export::CSV_COLUMNS.len(), f.len()));
    }
    let opt = |i: usize| if f[i].is_empty() { Value::Null } else { Value::from(f[i].clone()) };
    let seq = || f[1].parse::<i64>().map_err(|_| "seq is not a number".to_owned());
    Ok(match f[0].as_str() {
        "header" | "checkpoint" | "trailer" => serde_json::from_str(&f[15]).map_err(|e| format!("not JSON: {e}"))?,
        "stub" => serde_json::json!({"type": "stub", "seq": seq()?, "prev_hash": f[18], "hash": f[19]}),
        "record" => serde_json::json!({
            "type": "record", "seq": seq()?, "id": f[2], "time": f[3],
            "actor": {"kind": f[4], "id": opt(5)}, "personal": f[6], "personal_salt": opt(7),
            "ip": opt(8), "user_agent": opt(9), "action": f[10], "outcome": f[11], "project_id": opt(12),
            "target": {"type": opt(13), "id": opt(14)}, "intent": f[15], "request_id": opt(16),
            "trace_id": opt(17), "prev_hash": f[18], "hash": f[19],
        }),
        other => return Err(format!("unknown record type `{other}`")),
    })
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn ms_of(time: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(time).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A record line back into the stored row shape.
fn row_of(v: &Value) -> Option<Row> {
    Some(Row {
        seq: v.get("seq")?.as_i64()?,
        id: s(v, "id")?,
        occurred_at: ms_of(v.get("time")?.as_str()?)?,
        actor_kind: s(v.get("actor")?, "kind")?,
        actor_id: s(v.get("actor")?, "id"),
        personal: s(v, "personal")?,
        personal_salt: s(v, "personal_salt"),
        ip: s(v, "ip"),
        user_agent: s(v, "user_agent"),
        action: s(v, "action")?,
        outcome: s(v, "outcome")?,
        project_id: s(v, "project_id"),
        target_type: v.get("target").and_then(|t| s(t, "type")),
        target_id: v.get("target").and_then(|t| s(t, "id")),
        intent: s(v, "intent")?,
        request_id: s(v, "request_id"),
        trace_id: s(v, "trace_id"),
        prev_hash: s(v, "prev_hash")?,
        hash: s(v, "hash")?,
    })
}

/// Check a base64 Ed25519 signature.
pub(super) fn signature_ok(key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
    verify_sig(key, message, signature_b64)
}

fn verify_sig(key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
    use base64::Engine as _;
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else { return false };
    let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else { return false };
    key.verify_strict(message, &Signature::from_bytes(&bytes)).is_ok()
}

/// Verify an export of any format: JSON Lines and CSV (self-describing), OCSF and CEF (which
/// need the instance's key, as they carry none).
pub fn verify_any(mut reader: impl BufRead, pinned: Option<&VerifyingKey>) -> Result<Report, Problem> {
    let head = reader.fill_buf().map_err(|e| problem(Kind::Malformed, 1, None, format!("cannot read: {e}")))?;
    let siem = if head.starts_with(b"CEF:") {
        Some(true)
    } else if head.starts_with(b"{\"") && !head.starts_with(b"{\"anchor\"") && !is_header(head) {
        Some(false)
    } else {
        None
    };
    match (siem, pinned) {
        (None, _) => verify(reader, pinned),
        (Some(cef), Some(key)) => super::verify_siem::verify(reader, key, cef),
        (Some(_), None) => Err(problem(
            Kind::BadSignature,
            1,
            None,
            "OCSF and CEF exports carry no key: pass the instance's public key (arno audit public-key)",
        )),
    }
}

/// Does the buffered start of a JSON Lines file hold Arno's export header?
fn is_header(head: &[u8]) -> bool {
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<Value>(first).map(|v| v.get("type").and_then(Value::as_str) == Some("header")).unwrap_or(
        // A first line longer than the buffer: look for the marker in what we have.
        first.windows(15).any(|w| w == b"\"type\":\"header\""),
    )
}

/// Check a checkpoint's signature; returns its (seq, hash).
fn signed_checkpoint(v: &Value, key: &VerifyingKey) -> Result<(i64, String), (Kind, String)> {
    let (Some(seq), Some(prev_seq)) = (v.get("seq").and_then(Value::as_i64), v.get("prev_seq").and_then(Value::as_i64))
    else {
        return Err((Kind::Malformed, "incomplete checkpoint".into()));
    };
    let (hash, prev_hash) = (s(v, "hash").unwrap_or_default(), s(v, "prev_hash").unwrap_or_default());
    let (Some(h), Some(ph)) = (chain::parse_hash(&hash), chain::parse_hash(&prev_hash)) else {
        return Err((Kind::Malformed, "checkpoint with a malformed hash".into()));
    };
    let message = chain::checkpoint_message(seq, &h, prev_seq, &ph);
    if !verify_sig(key, &message, &s(v, "signature").unwrap_or_default()) {
        return Err((Kind::BadSignature, "the checkpoint's signature is not valid: it was forged or altered".into()));
    }
    Ok((seq, hash))
}

/// Verify an export read from `reader`. `pinned`: the instance's public key from a trusted
/// source; without it the key written in the file is used (which proves integrity of the file
/// only against accidental damage, not against whoever wrote it).
pub fn verify(reader: impl BufRead, pinned: Option<&VerifyingKey>) -> Result<Report, Problem> {
    let io = |line: u64| move |e: std::io::Error| problem(Kind::Malformed, line, None, format!("cannot read: {e}"));
    let (mut lines, preamble) = Entries::open(reader).map_err(io(1))?;
    let mut digest = Sha256::new();
    digest.update(&preamble);

    let Some(first) = lines.next().map_err(io(1))? else {
        return Err(problem(Kind::Truncated, 1, None, "the file is empty"));
    };
    digest.update(&first.raw);
    let header: Value = first
        .value
        .ok()
        .filter(|h: &Value| h.get("type").and_then(Value::as_str) == Some("header"))
        .ok_or_else(|| problem(Kind::Malformed, first.line, None, "not an Arno audit export (no header)"))?;
    let embedded = s(&header, "public_key")
        .and_then(|k| parse_public_key(&k))
        .ok_or_else(|| problem(Kind::Malformed, 1, None, "the header has no valid public key"))?;
    let key = match pinned {
        Some(p) if p != &embedded => {
            return Err(problem(
                Kind::BadSignature,
                1,
                None,
                format!("the export was signed by key {}, not by the given key {}", key_id(&embedded), key_id(p)),
            ));
        }
        Some(p) => *p,
        None => embedded,
    };
    let header_first = header.get("first_seq").and_then(Value::as_i64);
    // After a retention purge: the signed checkpoint the first record must link to.
    let anchor = match header.get("anchor").filter(|a| !a.is_null()) {
        Some(a) => {
            let (seq, hash) = signed_checkpoint(a, &key)
                .map_err(|(kind, m)| problem(kind, 1, a.get("seq").and_then(Value::as_i64), format!("anchor: {m}")))?;
            Some((seq, hash))
        }
        None => None,
    };

    let mut report = Report::new(&key, pinned.is_some());
    // The last chain entry seen: (line, seq, hash).
    let mut prev: Option<(u64, i64, String)> = None;
    // Checkpoints chain to one another, the first to the anchor when there is one.
    let mut last_checkpoint: Option<(i64, String)> = anchor.clone();

    loop {
        let Some(entry) = lines.next().map_err(io(lines.line + 1))? else {
            let seq = prev.as_ref().map(|p| p.1);
            return Err(problem(
                Kind::Truncated,
                lines.line,
                seq,
                "the export ends without its signed trailer: records after this point may be missing",
            ));
        };
        let (line, bytes) = (entry.line, entry.raw);
        if !bytes.ends_with(b"\n") {
            return Err(problem(Kind::Truncated, line, None, "the last line is cut off"));
        }
        let v: Value = entry.value.map_err(|e| problem(Kind::Malformed, line, None, e))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "record" | "stub" => {
                let seq = v
                    .get("seq")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| problem(Kind::Malformed, line, None, "entry without a seq"))?;
                let prev_hash = s(&v, "prev_hash").unwrap_or_default();
                let hash = s(&v, "hash").unwrap_or_default();
                match &prev {
                    None => {
                        if let Some(expected) = header_first.filter(|f| *f != seq) {
                            return Err(problem(
                                Kind::Deleted,
                                line,
                                Some(seq),
                                format!(
                                    "the export should start at seq {expected}: records are missing before this line"
                                ),
                            ));
                        }
                        if let Some((a_seq, a_hash)) = anchor.as_ref().filter(|(a_seq, _)| *a_seq == seq - 1) {
                            if &prev_hash != a_hash {
                                return Err(problem(
                                    Kind::Inserted,
                                    line,
                                    Some(seq),
                                    format!("does not link to the signed anchor checkpoint at seq {a_seq}"),
                                ));
                            }
                        }
                        report.first_seq = Some(seq);
                    }
                    Some((_, p_seq, p_hash)) => {
                        let expected = p_seq + 1;
                        if seq == *p_seq {
                            return Err(problem(
                                Kind::Inserted,
                                line,
                                Some(seq),
                                "a second entry with the same seq was inserted",
                            ));
                        }
                        if seq < *p_seq {
                            return Err(problem(
                                Kind::Reordered,
                                line,
                                Some(seq),
                                format!("out of order: comes after seq {p_seq}"),
                            ));
                        }
                        if seq > expected {
                            let next_is_expected = lines
                                .peek()
                                .ok()
                                .flatten()
                                .and_then(|n| n.value.as_ref().ok())
                                .and_then(|n| n.get("seq").and_then(Value::as_i64))
                                == Some(expected);
                            return Err(if next_is_expected {
                                problem(
                                    Kind::Reordered,
                                    line,
                                    Some(seq),
                                    format!("out of order: seq {expected} follows it"),
                                )
                            } else {
                                problem(
                                    Kind::Deleted,
                                    line,
                                    Some(seq),
                                    format!("records {expected}..{} are missing before this line", seq - 1),
                                )
                            });
                        }
                        if &prev_hash != p_hash {
                            return Err(problem(
                                Kind::Inserted,
                                line,
                                Some(seq),
                                "does not link to the entry before it: a record was inserted or replaced here",
                            ));
                        }
                    }
                }
                if kind == "record" {
                    let row =
                        row_of(&v).ok_or_else(|| problem(Kind::Malformed, line, Some(seq), "incomplete record"))?;
                    check_record(&row, line)?;
                    report.records += 1;
                } else {
                    report.stubs += 1;
                }
                prev = Some((line, seq, hash));
                report.last_seq = Some(seq);
            }
            "checkpoint" => {
                let seq = v.get("seq").and_then(Value::as_i64);
                let (seq, hash) = signed_checkpoint(&v, &key).map_err(|(kind, m)| problem(kind, line, seq, m))?;
                let prev_seq = v.get("prev_seq").and_then(Value::as_i64).unwrap_or_default();
                let prev_hash = s(&v, "prev_hash").unwrap_or_default();
                if prev.as_ref().map(|p| (p.1, p.2.as_str())) != Some((seq, hash.as_str())) {
                    return Err(problem(
                        Kind::Modified,
                        line,
                        Some(seq),
                        "the signed checkpoint does not match the chain: records up to it were rewritten",
                    ));
                }
                if let Some((c_seq, c_hash)) = &last_checkpoint {
                    if (prev_seq, &prev_hash) != (*c_seq, c_hash) {
                        return Err(problem(
                            Kind::Deleted,
                            line,
                            Some(seq),
                            "a checkpoint between the previous one and this is missing",
                        ));
                    }
                }
                last_checkpoint = Some((seq, hash));
                report.checkpoints += 1;
            }
            "trailer" => {
                let computed = digest.clone().finalize();
                if s(&v, "digest").as_deref() != Some(hex::encode(computed).as_str()) {
                    return Err(problem(
                        Kind::Modified,
                        line,
                        None,
                        "the file's content does not match the signed digest",
                    ));
                }
                if !verify_sig(&key, &export::trailer_message(&computed), &s(&v, "signature").unwrap_or_default()) {
                    return Err(problem(Kind::BadSignature, line, None, "the export's signature is not valid"));
                }
                let n = |k: &str| v.get(k).and_then(Value::as_u64);
                if n("records") != Some(report.records) || n("stubs") != Some(report.stubs) {
                    return Err(problem(
                        Kind::Deleted,
                        line,
                        None,
                        "the trailer counts differ from the entries in the file",
                    ));
                }
                if lines.next().map_err(io(line + 1))?.is_some() {
                    return Err(problem(Kind::Inserted, line + 1, None, "content after the signed trailer"));
                }
                return Ok(report);
            }
            "header" => return Err(problem(Kind::Inserted, line, None, "a second header")),
            other => return Err(problem(Kind::Malformed, line, None, format!("unknown line type `{other}`"))),
        }
        digest.update(&bytes);
    }
}

//! Streaming exports of a time range, in constant memory whatever its size.
//!
//! JSON Lines (native) is a `header`, then one line per record in seq order — records outside
//! the filter appear as `stub`s carrying only their chain data, so a filtered export still
//! proves nothing between its records is missing — with each signed `checkpoint` after the record
//! it covers, and a `trailer` that signs the SHA-256 digest of every line before it. CSV carries
//! the same rows and chain columns for spreadsheets. See `docs/audit.md`.

use std::io;

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::store::{self, Checkpoint, Row};
use super::{Signer, chain};
use crate::db::{Db, rfc3339};
use crate::error::{AppError, AppResult};

const BATCH: i64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
    /// OCSF 1.1 JSON Lines: Authentication (3002) and API Activity (6003) events.
    Ocsf,
    /// ArcSight Common Event Format, one event per line.
    Cef,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "ocsf" => Some(Format::Ocsf),
            "cef" => Some(Format::Cef),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl | Format::Ocsf => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Cef => "text/plain; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf.jsonl",
            Format::Cef => "cef",
        }
    }
}

/// Which records an export shows in full. All fields are exact matches.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A target id, or `type:id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &Row) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        let target_ok = self.target.as_deref().is_none_or(|t| match t.split_once(':') {
            Some((ty, id)) => r.target_type.as_deref() == Some(ty) && r.target_id.as_deref() == Some(id),
            None => r.target_id.as_deref() == Some(t),
        });
        eq(&self.actor, r.actor_id.as_deref())
            && eq(&self.action, Some(&r.action))
            && eq(&self.project, r.project_id.as_deref())
            && eq(&self.outcome, Some(&r.outcome))
            && target_ok
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    /// Inclusive, ms since the epoch.
    pub from: i64,
    /// Exclusive; `None`: up to the moment the export starts.
    pub to: Option<i64>,
    pub filter: Filter,
    pub format: Format,
}

/// Where export bytes go: a file, or an HTTP response body through a bounded channel.
pub trait Sink {
    fn write(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
}

impl Sink for tokio::sync::mpsc::Sender<Result<Bytes, io::Error>> {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.send(Ok(data)).await.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl<W: tokio::io::AsyncWrite + Unpin + Send> Sink for tokio::io::BufWriter<W> {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, &data).await
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub stubs: u64,
    pub checkpoints: u64,
}

/// Write the export; the trailer is the last line, so a cut-off transfer is detectable.
pub async fn run(db: &Db, signer: &Signer, req: &Request, sink: &mut impl Sink) -> AppResult<Summary> {
    let mut conn = db.pool().acquire().await?;
    let to = req.to.unwrap_or_else(|| crate::db::now_ms() + 1);
    let range = store::seq_range(&mut conn, req.from, to).await?;
    // After a retention purge, the signed checkpoint the first remaining record links to.
    let anchor = match range {
        Some((first, _)) => super::retention::anchor_for(&mut conn, first).await?,
        None => None,
    };
    let mut out = Writer { format: req.format, digest: Sha256::new(), sink };
    out.header(req, to, signer, range, anchor.as_ref()).await?;
    let mut summary = Summary::default();
    let mut last: Option<(i64, String)> = None;
    if let Some((first, last_seq)) = range {
        let mut checkpoints = store::checkpoints_between(&mut conn, first, last_seq).await?.into_iter().peekable();
        let mut after = first - 1;
        loop {
            let rows = store::rows_between(&mut conn, after, last_seq, BATCH).await?;
            let Some(tail) = rows.last() else { break };
            after = tail.seq;
            for row in &rows {
                if req.filter.matches(row) {
                    out.record(row).await?;
                    summary.records += 1;
                } else {
                    out.stub(row).await?;
                    summary.stubs += 1;
                }
                while let Some(c) = checkpoints.next_if(|c| c.seq <= row.seq) {
                    out.checkpoint(&c).await?;
                    summary.checkpoints += 1;
                }
                last = Some((row.seq, row.hash.clone()));
            }
        }
    }
    out.trailer(signer, &summary, last).await?;
    Ok(summary)
}

/// The message an export trailer signs.
pub fn trailer_message(digest: &[u8]) -> Vec<u8> {
    let mut m = b"arno-audit-export-v1\0".to_vec();
    m.extend_from_slice(digest);
    m
}

pub const CSV_COLUMNS: [&str; 21] = [
    "record_type",
    "seq",
    "id",
    "time",
    "actor_kind",
    "actor_id",
    "personal",
    "personal_salt",
    "ip",
    "user_agent",
    "action",
    "outcome",
    "project_id",
    "target_type",
    "target_id",
    "intent",
    "request_id",
    "trace_id",
    "prev_hash",
    "hash",
    "signature",
];

/// One CSV field (RFC 4180). Fields a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
/// tab, CR) get a leading `'` (OWASP CSV injection), as do fields already starting with `'`,
/// so exactly one leading `'` is removed when reading back.
pub fn csv_field(s: &str) -> String {
    let guarded = match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'') => format!("'{s}"),
        _ => s.to_owned(),
    };
    if guarded.contains([',', '"', '\n', '\r']) { format!("\"{}\"", guarded.replace('"', "\"\"")) } else { guarded }
}

struct Writer<'a, S: Sink> {
    format: Format,
    digest: Sha256,
    sink: &'a mut S,
}

impl<S: Sink> Writer<'_, S> {
    async fn line(&mut self, mut line: String) -> AppResult<()> {
        line.push('\n');
        self.digest.update(line.as_bytes());
        self.sink.write(Bytes::from(line)).await.map_err(|e| AppError::Internal(e.into()))
    }

    async fn json(&mut self, v: serde_json::Value) -> AppResult<()> {
        self.line(v.to_string()).await
    }

    async fn csv(&mut self, fields: &[&str]) -> AppResult<()> {
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        self.line(line.join(",")).await
    }

    /// A CSV row that is not a record: its type and seq, details as JSON in the `intent` column,
    /// and the chain columns (`prev_hash`, `hash`, `signature`).
    async fn csv_meta(&mut self, kind: &str, seq: &str, details: &str, chain: [&str; 3]) -> AppResult<()> {
        let mut row = [""; CSV_COLUMNS.len()];
        row[0] = kind;
        row[1] = seq;
        row[15] = details;
        row[18..21].copy_from_slice(&chain);
        self.csv(&row).await
    }

    async fn header(
        &mut self,
        req: &Request,
        to: i64,
        signer: &Signer,
        range: Option<(i64, i64)>,
        anchor: Option<&Checkpoint>,
    ) -> AppResult<()> {
        let (first, last) = range.unzip();
        let header = json!({
            "type": "header",
            "format": "arno-audit-export",
            "version": 1,
            "public_key": signer.public_key_text(),
            "key_id": signer.key_id(),
            "from": rfc3339(req.from),
            "to": rfc3339(to),
            "filter": req.filter,
            "first_seq": first,
            "last_seq": last,
            "anchor": anchor.map(checkpoint_json),
            "exported_at": rfc3339(crate::db::now_ms()),
        });
        match self.format {
            Format::Jsonl => self.json(header).await,
            Format::Csv => {
                let cols: Vec<&str> = CSV_COLUMNS.to_vec();
                self.csv(&cols).await?;
                self.csv_meta("header", "", &header.to_string(), ["", "", ""]).await
            }
            Format::Ocsf | Format::Cef => Ok(()),
        }
    }

    async fn record(&mut self, r: &Row) -> AppResult<()> {
        match self.format {
            Format::Jsonl => self.json(jsonl_record(r)).await,
            Format::Csv => {
                let fields = csv_record(r);
                let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
                self.csv(&refs).await
            }
            Format::Ocsf => self.line(super::siem::ocsf_record(r).to_string()).await,
            Format::Cef => self.line(super::siem::cef_record(r)).await,
        }
    }

    async fn stub(&mut self, r: &Row) -> AppResult<()> {
        match self.format {
            Format::Jsonl => {
                self.json(json!({"type": "stub", "seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash})).await
            }
            Format::Csv => self.csv_meta("stub", &r.seq.to_string(), "", [&r.prev_hash, &r.hash, ""]).await,
            // SIEM formats carry whole events only; their chain fields and the signed trailer
            // make them verifiable.
            Format::Ocsf | Format::Cef => Ok(()),
        }
    }

    async fn checkpoint(&mut self, c: &Checkpoint) -> AppResult<()> {
        let v = checkpoint_json(c);
        match self.format {
            Format::Jsonl => self.json(v).await,
            Format::Csv => {
                let chain = [c.prev_hash.as_str(), &c.hash, &c.signature];
                self.csv_meta("checkpoint", &c.seq.to_string(), &v.to_string(), chain).await
            }
            Format::Ocsf | Format::Cef => Ok(()),
        }
    }

    async fn trailer(&mut self, signer: &Signer, s: &Summary, last: Option<(i64, String)>) -> AppResult<()> {
        let digest = self.digest.clone().finalize();
        let signature = signer.sign(&trailer_message(&digest));
        let (last_seq, last_hash) = last.unzip();
        let v = json!({
            "type": "trailer",
            "records": s.records,
            "stubs": s.stubs,
            "checkpoints": s.checkpoints,
            "last_seq": last_seq,
            "last_hash": last_hash,
            "digest": hex::encode(digest),
            "key_id": signer.key_id(),
            "signature": signature,
        });
        match self.format {
            Format::Jsonl => self.json(v).await,
            Format::Csv => self.csv_meta("trailer", "", &v.to_string(), ["", "", &signature]).await,
            Format::Ocsf => self.line(json!({"arno_export_trailer": v}).to_string()).await,
            Format::Cef => self.line(super::siem::cef_trailer(&v)).await,
        }
    }
}

fn checkpoint_json(c: &Checkpoint) -> serde_json::Value {
    json!({
        "type": "checkpoint",
        "seq": c.seq,
        "hash": c.hash,
        "prev_seq": c.prev_seq,
        "prev_hash": c.prev_hash,
        "signed_at": rfc3339(c.signed_at),
        "key_id": c.key_id,
        "signature": c.signature,
    })
}

/// A record as a JSON Lines export shows it.
pub fn jsonl_record(r: &Row) -> serde_json::Value {
    json!({
        "type": "record",
        "seq": r.seq,
        "id": r.id,
        "time": rfc3339(r.occurred_at),
        "actor": {"kind": r.actor_kind, "id": r.actor_id},
        "personal": r.personal,
        "personal_salt": r.personal_salt,
        "ip": r.ip,
        "user_agent": r.user_agent,
        "action": r.action,
        "outcome": r.outcome,
        "project_id": r.project_id,
        "target": {"type": r.target_type, "id": r.target_id},
        "intent": r.intent,
        "request_id": r.request_id,
        "trace_id": r.trace_id,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

/// A record's CSV fields, in [`CSV_COLUMNS`] order (unquoted).
pub fn csv_record(r: &Row) -> Vec<String> {
    let o = |v: &Option<String>| v.as_deref().unwrap_or("").to_owned();
    vec![
        "record".to_owned(),
        r.seq.to_string(),
        r.id.clone(),
        rfc3339(r.occurred_at),
        r.actor_kind.clone(),
        o(&r.actor_id),
        r.personal.clone(),
        o(&r.personal_salt),
        o(&r.ip),
        o(&r.user_agent),
        r.action.clone(),
        r.outcome.clone(),
        o(&r.project_id),
        o(&r.target_type),
        o(&r.target_id),
        r.intent.clone(),
        o(&r.request_id),
        o(&r.trace_id),
        r.prev_hash.clone(),
        r.hash.clone(),
        String::new(),
    ]
}

/// The hash a verifier recomputes for an exported record.
pub fn recompute(r: &Row) -> Option<[u8; 32]> {
    let prev = chain::parse_hash(&r.prev_hash)?;
    Some(chain::record_hash(
        &chain::Hashed {
            seq: r.seq,
            id: &r.id,
            occurred_at: r.occurred_at,
            actor_kind: &r.actor_kind,
            personal: &r.personal,
            action: &r.action,
            outcome: &r.outcome,
            project_id: r.project_id.as_deref(),
            target_type: r.target_type.as_deref(),
            target_id: r.target_id.as_deref(),
            intent: &r.intent,
            request_id: r.request_id.as_deref(),
            trace_id: r.trace_id.as_deref(),
        },
        &prev,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("'quoted"), "''quoted");
        assert_eq!(csv_field("a|b=c ünï"), "a|b=c ünï");
    }
}

//! Offline verification of OCSF and CEF exports. They carry whole events only (no header,
//! stubs or checkpoints, so SIEMs can ingest them as they are): each record is checked against
//! its hash and personal-data commitment, consecutive seqs must link, and the signed trailer's
//! digest covers every byte before it — so a removed, added or altered line is detected. The
//! files hold no key: the instance's public key must be given.

use std::io::BufRead;

use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::export;
use super::store::Row;
use super::verify::{Kind, Problem, Report, check_record, problem};

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_owned)
}

/// An OCSF event back into the row it was made from.
fn ocsf_row(v: &Value) -> Option<Row> {
    let a = v.get("unmapped")?.get("arno")?;
    let s = |k: &str| text(a, &[k]);
    Some(Row {
        seq: a.get("seq")?.as_i64()?,
        id: text(v, &["metadata", "uid"])?,
        occurred_at: v.get("time")?.as_i64()?,
        actor_kind: s("actor_kind")?,
        actor_id: s("actor_id"),
        personal: s("personal")?,
        personal_salt: s("personal_salt"),
        ip: text(v, &["src_endpoint", "ip"]),
        user_agent: text(v, &["http_request", "user_agent"]),
        action: text(v, &["metadata", "event_code"])?,
        outcome: if v.get("status_id")?.as_u64()? == 1 { "allowed".into() } else { "denied".into() },
        project_id: s("project_id"),
        target_type: s("target_type"),
        target_id: s("target_id"),
        intent: s("intent")?,
        request_id: s("request_id"),
        trace_id: s("trace_id"),
        prev_hash: s("prev_hash")?,
        hash: s("hash")?,
    })
}

/// CEF extensions: `key=value` pairs; values escape `\`, `=` and line breaks, and run until
/// the next unescaped ` key=`.
fn cef_extensions(line: &str) -> Option<std::collections::HashMap<String, String>> {
    // Skip the seven header fields (which escape `|`).
    let mut pipes = 0;
    let mut escaped = false;
    let mut start = None;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            pipes += 1;
            if pipes == 7 {
                start = Some(i + 1);
                break;
            }
        }
    }
    let ext = &line[start?..];
    let mut out = std::collections::HashMap::new();
    let (mut key, mut value, mut in_key, mut escaped) = (String::new(), String::new(), true, false);
    let chars: Vec<char> = ext.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_key {
            if c == '=' {
                in_key = false;
            } else {
                key.push(c);
            }
        } else if escaped {
            value.push(match c {
                'n' => '\n',
                'r' => '\r',
                other => other,
            });
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ' ' && next_is_key(&chars[i + 1..]) {
            out.insert(std::mem::take(&mut key), std::mem::take(&mut value));
            in_key = true;
        } else {
            value.push(c);
        }
        i += 1;
    }
    if !key.is_empty() {
        out.insert(key, value);
    }
    Some(out)
}

/// Does `rest` start with `word=` (a CEF key: letters and digits)?
fn next_is_key(rest: &[char]) -> bool {
    let n = rest.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    n > 0 && rest.get(n) == Some(&'=')
}

fn cef_row(e: &std::collections::HashMap<String, String>) -> Option<Row> {
    let g = |k: &str| e.get(k).cloned();
    Some(Row {
        seq: g("arnoSeq")?.parse().ok()?,
        id: g("externalId")?,
        occurred_at: g("rt")?.parse().ok()?,
        actor_kind: g("arnoActorKind")?,
        actor_id: g("suid"),
        personal: g("arnoPersonal")?,
        personal_salt: g("arnoPersonalSalt"),
        ip: g("src"),
        user_agent: g("requestClientApplication"),
        action: g("act")?,
        outcome: if g("outcome")? == "success" { "allowed".into() } else { "denied".into() },
        project_id: g("arnoProject"),
        target_type: g("arnoTargetType"),
        target_id: g("arnoTargetId"),
        intent: g("arnoIntent")?,
        request_id: g("arnoRequestId"),
        trace_id: g("arnoTraceId"),
        prev_hash: g("arnoPrevHash")?,
        hash: g("arnoHash")?,
    })
}

enum Line {
    Record(Box<Row>),
    /// (digest hex, signature base64, records)
    Trailer(String, String, Option<u64>),
}

fn parse(line: &str, cef: bool) -> Result<Line, String> {
    if cef {
        let e = cef_extensions(line).ok_or("not a CEF event")?;
        if line.split('|').nth(4) == Some("arno.export.trailer") {
            let records = e.get("arnoRecords").and_then(|r| r.parse().ok());
            return Ok(Line::Trailer(
                e.get("arnoDigest").cloned().unwrap_or_default(),
                e.get("arnoSignature").cloned().unwrap_or_default(),
                records,
            ));
        }
        return cef_row(&e).map(|r| Line::Record(Box::new(r))).ok_or_else(|| "incomplete CEF event".into());
    }
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(t) = v.get("arno_export_trailer") {
        let s = |k: &str| text(t, &[k]).unwrap_or_default();
        return Ok(Line::Trailer(s("digest"), s("signature"), t.get("records").and_then(Value::as_u64)));
    }
    ocsf_row(&v).map(|r| Line::Record(Box::new(r))).ok_or_else(|| "incomplete OCSF event".into())
}

/// Verify an OCSF (JSON Lines) or CEF export against the instance's key.
pub fn verify(reader: impl BufRead, key: &VerifyingKey, cef: bool) -> Result<Report, Problem> {
    let mut digest = Sha256::new();
    let mut report = Report::new(key, true);
    let mut prev: Option<(i64, String)> = None;
    let mut lines = reader.split(b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line_no = i as u64 + 1;
        let raw = raw.map_err(|e| problem(Kind::Malformed, line_no, None, format!("cannot read: {e}")))?;
        let text = String::from_utf8(raw).map_err(|_| problem(Kind::Malformed, line_no, None, "not UTF-8"))?;
        if text.is_empty() && lines.peek().is_none() {
            break;
        }
        match parse(&text, cef).map_err(|m| problem(Kind::Malformed, line_no, None, m))? {
            Line::Record(row) => {
                let seq = Some(row.seq);
                check_record(&row, line_no)?;
                if let Some((p_seq, p_hash)) = &prev {
                    if row.seq <= *p_seq {
                        return Err(problem(
                            Kind::Reordered,
                            line_no,
                            seq,
                            format!("out of order: comes after seq {p_seq}"),
                        ));
                    }
                    if row.seq == p_seq + 1 && &row.prev_hash != p_hash {
                        return Err(problem(Kind::Inserted, line_no, seq, "does not link to the record before it"));
                    }
                }
                report.first_seq.get_or_insert(row.seq);
                report.last_seq = Some(row.seq);
                report.records += 1;
                prev = Some((row.seq, row.hash));
                digest.update(text.as_bytes());
                digest.update(b"\n");
            }
            Line::Trailer(digest_hex, signature, records) => {
                let computed = digest.clone().finalize();
                if digest_hex != hex::encode(computed) {
                    return Err(problem(
                        Kind::Modified,
                        line_no,
                        None,
                        "the file's content does not match the signed digest: lines were changed, removed or added",
                    ));
                }
                if !super::verify::signature_ok(key, &export::trailer_message(&computed), &signature) {
                    return Err(problem(Kind::BadSignature, line_no, None, "the export's signature is not valid"));
                }
                if records != Some(report.records) {
                    return Err(problem(
                        Kind::Deleted,
                        line_no,
                        None,
                        "the trailer counts differ from the events in the file",
                    ));
                }
                if lines.any(|(_, l)| l.map(|l| !l.is_empty()).unwrap_or(true)) {
                    return Err(problem(Kind::Inserted, line_no + 1, None, "content after the signed trailer"));
                }
                return Ok(report);
            }
        }
    }
    Err(problem(Kind::Truncated, report.records, report.last_seq, "the export ends without its signed trailer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cef_extensions_round_trip_hostile_values() {
        let row = crate::audit::siem::tests::sample();
        let line = crate::audit::siem::cef_record(&row);
        let back = cef_row(&cef_extensions(&line).unwrap()).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn ocsf_events_round_trip() {
        let row = crate::audit::siem::tests::sample();
        assert_eq!(ocsf_row(&crate::audit::siem::ocsf_record(&row)).unwrap(), row);
    }
}

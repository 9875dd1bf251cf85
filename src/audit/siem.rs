//! SIEM formats for audit exports: OCSF 1.1 (JSON) and ArcSight CEF.
//!
//! Sign-in events map to OCSF Authentication (class 3002), everything else to API Activity
//! (class 6003). Each event also carries Arno's chain data — `unmapped.arno` in OCSF, `arno*`
//! extension keys in CEF — with every field the record's hash covers, so a record can be checked
//! against the chain; the file ends with a signed trailer event over the digest of all lines.

use serde_json::{Value, json};

use super::store::Row;
use crate::db::rfc3339;

const OCSF_VERSION: &str = "1.1.0";

fn product() -> Value {
    json!({"name": "Arno", "vendor_name": "Arno", "version": env!("CARGO_PKG_VERSION")})
}

/// Chain data: everything needed to recompute the record's hash and commitment.
fn chain(r: &Row) -> Value {
    json!({
        "seq": r.seq,
        "actor_kind": r.actor_kind,
        "actor_id": r.actor_id,
        "personal": r.personal,
        "personal_salt": r.personal_salt,
        "project_id": r.project_id,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "intent": r.intent,
        "request_id": r.request_id,
        "trace_id": r.trace_id,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

/// OCSF activity for API Activity, from the action's verb.
fn api_activity(action: &str) -> (u8, &'static str) {
    match action.rsplit('.').next().unwrap_or_default() {
        "create" | "complete" => (1, "Create"),
        "read" | "export" | "verify" => (2, "Read"),
        "update" => (3, "Update"),
        "revoke" | "erase" | "purge" | "delete" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

pub fn ocsf_record(r: &Row) -> Value {
    let allowed = r.outcome == "allowed";
    let (status_id, status) = if allowed { (1, "Success") } else { (2, "Failure") };
    let severity_id = if allowed { 1 } else { 3 };
    let metadata = json!({
        "version": OCSF_VERSION,
        "product": product(),
        "uid": r.id,
        "correlation_uid": r.trace_id,
        "event_code": r.action,
    });
    let src = json!({"ip": r.ip});
    let http = json!({"user_agent": r.user_agent, "uid": r.request_id});
    let unmapped = json!({"arno": chain(r)});
    let auth_activity = match r.action.as_str() {
        "auth.login" => Some((1, "Logon")),
        "auth.logout" => Some((2, "Logoff")),
        "auth.token" => Some((99, "Other")),
        _ => None,
    };
    match auth_activity {
        Some((activity_id, activity_name)) => {
            let user = r.target_id.as_ref().or(r.actor_id.as_ref());
            json!({
                "class_uid": 3002,
                "class_name": "Authentication",
                "category_uid": 3,
                "category_name": "Identity & Access Management",
                "activity_id": activity_id,
                "activity_name": activity_name,
                "type_uid": 300200 + activity_id,
                "time": r.occurred_at,
                "time_dt": rfc3339(r.occurred_at),
                "severity_id": severity_id,
                "status_id": status_id,
                "status": status,
                "user": {"uid": user},
                "src_endpoint": src,
                "http_request": http,
                "metadata": metadata,
                "unmapped": unmapped,
            })
        }
        None => {
            let (activity_id, activity_name) = api_activity(&r.action);
            json!({
                "class_uid": 6003,
                "class_name": "API Activity",
                "category_uid": 6,
                "category_name": "Application Activity",
                "activity_id": activity_id,
                "activity_name": activity_name,
                "type_uid": 600300 + u32::from(activity_id),
                "time": r.occurred_at,
                "time_dt": rfc3339(r.occurred_at),
                "severity_id": severity_id,
                "status_id": status_id,
                "status": status,
                "actor": {"user": {"uid": r.actor_id, "type": r.actor_kind}},
                "api": {"operation": r.action, "request": {"uid": r.request_id}},
                "resources": r.target_id.as_ref().map(|id| json!([{"type": r.target_type, "uid": id}])).unwrap_or(json!([])),
                "src_endpoint": src,
                "http_request": http,
                "metadata": metadata,
                "unmapped": unmapped,
            })
        }
    }
}

/// CEF header fields escape `\` and `|`.
pub fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// CEF extension values escape `\`, `=` and line breaks.
pub fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('=', "\\=").replace('\n', "\\n").replace('\r', "\\r")
}

fn cef_line(signature_id: &str, name: &str, severity: u8, ext: &[(&str, Option<String>)]) -> String {
    let mut line = format!(
        "CEF:0|Arno|Arno|{}|{}|{}|{}|",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(signature_id),
        cef_header(name),
        severity
    );
    let parts: Vec<String> =
        ext.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", cef_value(v)))).collect();
    line.push_str(&parts.join(" "));
    line
}

pub fn cef_record(r: &Row) -> String {
    let allowed = r.outcome == "allowed";
    let o = |v: &Option<String>| v.clone();
    cef_line(
        &r.action,
        &format!("{} {}", r.action, r.outcome),
        if allowed { 3 } else { 6 },
        &[
            ("rt", Some(r.occurred_at.to_string())),
            ("externalId", Some(r.id.clone())),
            ("act", Some(r.action.clone())),
            ("outcome", Some(if allowed { "success".into() } else { "failure".into() })),
            ("suid", o(&r.actor_id)),
            ("src", o(&r.ip)),
            ("requestClientApplication", o(&r.user_agent)),
            ("arnoSeq", Some(r.seq.to_string())),
            ("arnoActorKind", Some(r.actor_kind.clone())),
            ("arnoPersonal", Some(r.personal.clone())),
            ("arnoPersonalSalt", o(&r.personal_salt)),
            ("arnoProject", o(&r.project_id)),
            ("arnoTargetType", o(&r.target_type)),
            ("arnoTargetId", o(&r.target_id)),
            ("arnoIntent", Some(r.intent.clone())),
            ("arnoRequestId", o(&r.request_id)),
            ("arnoTraceId", o(&r.trace_id)),
            ("arnoPrevHash", Some(r.prev_hash.clone())),
            ("arnoHash", Some(r.hash.clone())),
        ],
    )
}

/// The signed trailer as a CEF event.
pub fn cef_trailer(v: &Value) -> String {
    let s = |k: &str| v.get(k).map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()));
    cef_line(
        "arno.export.trailer",
        "Arno audit export trailer",
        1,
        &[
            ("arnoRecords", s("records")),
            ("arnoLastSeq", s("last_seq")),
            ("arnoLastHash", s("last_hash")),
            ("arnoDigest", s("digest")),
            ("arnoKeyId", s("key_id")),
            ("arnoSignature", s("signature")),
        ],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed record with hostile strings in every free-text field.
    pub(crate) fn sample() -> Row {
        Row {
            seq: 42,
            id: "01937c2e-7d3a-7000-8000-00000000002a".into(),
            occurred_at: 1_763_780_000_123,
            actor_kind: "token".into(),
            actor_id: Some("01937c2e-0000-7000-8000-000000000001".into()),
            personal: "9f2c".repeat(16),
            personal_salt: Some("c2FsdA".into()),
            ip: Some("203.0.113.7".into()),
            user_agent: Some("=cmd|' /C calc'!A0, \"quoted\"\nnext line \\ ünïcödé key=value".into()),
            action: "token.revoke".into(),
            outcome: "denied".into(),
            project_id: None,
            target_type: Some("api_token".into()),
            target_id: Some("a|b=c,d".into()),
            intent: "{\"reason\":\"not the caller's live token\"}".into(),
            request_id: Some("req-1".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            prev_hash: "00".repeat(32),
            hash: "ab".repeat(32),
        }
    }

    fn golden(name: &str, actual: &str) {
        // The version changes with every release; the format does not.
        let actual = actual.replace(env!("CARGO_PKG_VERSION"), "{version}");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create)", path.display()));
        assert_eq!(actual, expected, "{name} differs from its golden file");
    }

    #[test]
    fn export_formats_match_their_golden_files() {
        let r = sample();
        golden("audit-record.jsonl", &format!("{}\n", super::super::export::jsonl_record(&r)));
        let csv: Vec<String> =
            super::super::export::csv_record(&r).iter().map(|f| super::super::export::csv_field(f)).collect();
        golden("audit-record.csv", &format!("{}\n", csv.join(",")));
        golden("audit-record.ocsf.json", &format!("{}\n", serde_json::to_string_pretty(&ocsf_record(&r)).unwrap()));
        golden("audit-record.cef", &format!("{}\n", cef_record(&r)));
        let login = Row { action: "auth.login".into(), outcome: "allowed".into(), ..sample() };
        golden("audit-login.ocsf.json", &format!("{}\n", serde_json::to_string_pretty(&ocsf_record(&login)).unwrap()));
    }

    #[test]
    fn cef_escapes_hostile_strings() {
        let line = cef_record(&sample());
        // Pipes are escaped in the header only; extension values escape `=`, `\` and line breaks.
        let header = format!("CEF:0|Arno|Arno|{}|token.revoke|token.revoke denied|6|", env!("CARGO_PKG_VERSION"));
        assert!(line.starts_with(&header), "{line}");
        assert_eq!(cef_record(&Row { action: "a|b".into(), ..sample() }).split("|").nth(4), Some("a\\"));
        assert!(!line.contains('\n'));
        assert!(line.contains("arnoTargetId=a|b\\=c,d"), "{line}");
        assert!(line.contains("\\nnext line \\\\ ünïcödé key\\=value"), "{line}");
        assert_eq!(cef_header("a|b\\c"), "a\\|b\\\\c");
    }

    #[test]
    fn ocsf_classes_follow_the_action() {
        let r = sample();
        let api = ocsf_record(&r);
        assert_eq!(api["class_uid"], 6003);
        assert_eq!(api["activity_id"], 4);
        assert_eq!(api["type_uid"], 600304);
        assert_eq!(api["status_id"], 2);
        assert_eq!(api["unmapped"]["arno"]["hash"], r.hash);
        let login = ocsf_record(&Row { action: "auth.login".into(), ..sample() });
        assert_eq!(login["class_uid"], 3002);
        assert_eq!(login["type_uid"], 300201);
    }
}

//! The tamper-evident chain, independent of storage so the server and the offline verifier
//! share one definition (specified in `docs/audit.md`).
//!
//! Each record's `hash = SHA-256("arno-audit-v1\0" ‖ enc(fields) ‖ prev_hash)`, where `enc`
//! writes each field as a 4-byte big-endian length and its UTF-8 bytes (absent: `FFFFFFFF`),
//! integers as 8-byte big-endian. Personal data (actor id, IP address, user agent) is not hashed
//! directly: the chain covers `personal = SHA-256("arno-audit-personal-v1\0" ‖ salt ‖ enc(…))`
//! with a random per-record salt, so erasing a person (replacing the id with a pseudonym and
//! dropping salt, IP and user agent) leaves every hash verifiable, while an untouched record's
//! personal fields can still be checked against its commitment.

use sha2::{Digest, Sha256};

pub const GENESIS: [u8; 32] = [0u8; 32];

/// The fields covered by a record's hash, in hashing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashed<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub occurred_at: i64,
    pub actor_kind: &'a str,
    pub personal: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub project_id: Option<&'a str>,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub intent: &'a str,
    pub request_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
}

fn put_str(h: &mut Sha256, s: Option<&str>) {
    match s {
        Some(s) => {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        }
        None => h.update(u32::MAX.to_be_bytes()),
    }
}

pub fn record_hash(f: &Hashed<'_>, prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arno-audit-v1\0");
    h.update(f.seq.to_be_bytes());
    put_str(&mut h, Some(f.id));
    h.update(f.occurred_at.to_be_bytes());
    for s in [Some(f.actor_kind), Some(f.personal), Some(f.action), Some(f.outcome)] {
        put_str(&mut h, s);
    }
    for s in [f.project_id, f.target_type, f.target_id, Some(f.intent), f.request_id, f.trace_id] {
        put_str(&mut h, s);
    }
    h.update(prev_hash);
    h.finalize().into()
}

/// The commitment to a record's personal fields.
pub fn personal_commitment(salt: &str, actor_id: Option<&str>, ip: Option<&str>, user_agent: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"arno-audit-personal-v1\0");
    put_str(&mut h, Some(salt));
    put_str(&mut h, actor_id);
    put_str(&mut h, ip);
    put_str(&mut h, user_agent);
    hex::encode(h.finalize())
}

pub fn parse_hash(hex_str: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_str).ok()?;
    v.try_into().ok()
}

/// The message a checkpoint signs: the chain head at `seq`, chained to the previous checkpoint.
pub fn checkpoint_message(
    seq: i64,
    hash: &[u8; 32],
    prev_checkpoint_seq: i64,
    prev_checkpoint_hash: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(b"arno-audit-checkpoint-v1\0");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&prev_checkpoint_seq.to_be_bytes());
    m.extend_from_slice(prev_checkpoint_hash);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> Hashed<'a> {
        Hashed {
            seq: 1,
            id: "0193a1b2-0000-7000-8000-000000000001",
            occurred_at: 1_763_780_000_000,
            actor_kind: "user",
            personal: "c0ffee",
            action: "auth.login",
            outcome: "allowed",
            project_id: None,
            target_type: Some("user"),
            target_id: Some("u1"),
            intent: "{}",
            request_id: Some("r1"),
            trace_id: None,
        }
    }

    #[test]
    fn every_field_and_the_link_change_the_hash() {
        let base = record_hash(&sample(), &GENESIS);
        let variants: Vec<Hashed<'_>> = vec![
            Hashed { seq: 2, ..sample() },
            Hashed { occurred_at: 1, ..sample() },
            Hashed { action: "auth.logout", ..sample() },
            Hashed { outcome: "denied", ..sample() },
            Hashed { project_id: Some(""), ..sample() },
            Hashed { target_id: None, ..sample() },
            Hashed { intent: "{ }", ..sample() },
            Hashed { personal: "c0ffef", ..sample() },
        ];
        for v in variants {
            assert_ne!(record_hash(&v, &GENESIS), base, "{v:?}");
        }
        assert_ne!(record_hash(&sample(), &[1u8; 32]), base);
        // Length prefixes make field boundaries unambiguous.
        let a = Hashed { target_type: Some("ab"), target_id: Some("c"), ..sample() };
        let b = Hashed { target_type: Some("a"), target_id: Some("bc"), ..sample() };
        assert_ne!(record_hash(&a, &GENESIS), record_hash(&b, &GENESIS));
    }

    #[test]
    fn commitments_bind_personal_fields() {
        let c = personal_commitment("salt", Some("u1"), Some("10.0.0.1"), None);
        assert_ne!(c, personal_commitment("salt", Some("u2"), Some("10.0.0.1"), None));
        assert_ne!(c, personal_commitment("salt", Some("u1"), None, Some("10.0.0.1")));
        assert_ne!(c, personal_commitment("tlas", Some("u1"), Some("10.0.0.1"), None));
    }
}

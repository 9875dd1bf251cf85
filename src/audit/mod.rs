//! The audit log: every permission decision and every state change, appended in the same
//! transaction as the change, hash-chained in one total order, with Ed25519-signed checkpoints,
//! exportable and verifiable offline. The chain is specified in `docs/audit.md`.

pub mod chain;
pub mod console;
pub mod damper;
pub mod export;
pub mod retention;
pub mod routes;
pub mod siem;
pub mod store;
pub mod stream;
pub mod verify;
pub mod verify_siem;

use std::sync::LazyLock;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prometheus::IntCounterVec;
use serde::Serialize;
use sqlx::AnyConnection;

use crate::db::{Db, now_ms};
use crate::error::{AppError, AppResult};
use crate::http::RequestContext;

/// Longest `intent` we store: a short structured description, never content.
const MAX_INTENT_BYTES: usize = 2048;

/// `audit_refusals_folded_total{action}`: refusals counted into a later record instead of written.
pub static DAMPED_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        prometheus::Opts::new("audit_refusals_folded_total", "Repeated refusals counted into one audit record"),
        &["action"],
    )
    .expect("valid metric")
});

/// `audit_records_total{action,outcome}`: records appended (counted when written; a rolled-back
/// transaction's record is counted too, which is rare and errs on the side of visibility).
pub static RECORDS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        prometheus::Opts::new("audit_records_total", "Audit records appended, by action and outcome"),
        &["action", "outcome"],
    )
    .expect("valid metric")
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor<'a> {
    /// A signed-in user (browser session).
    User(&'a str),
    /// A user acting through a personal API token.
    Token(&'a str),
    /// Arno itself, or an operator on the appliance's shell.
    System,
    /// Not authenticated (failed sign-ins, refused requests).
    Anonymous,
}

impl Actor<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Token(_) => "token",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
        }
    }

    fn id(&self) -> Option<&str> {
        match self {
            Actor::User(id) | Actor::Token(id) => Some(id),
            Actor::System | Actor::Anonymous => None,
        }
    }

    /// The actor behind an authenticated request.
    pub fn of(auth: &crate::auth::Authenticated) -> Actor<'_> {
        match auth.method {
            crate::auth::AuthMethod::Session => Actor::User(&auth.user.id),
            crate::auth::AuthMethod::Token => Actor::Token(&auth.user.id),
        }
    }
}

/// Where a request came from.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

impl Origin {
    /// The shell or a background job.
    pub fn system() -> Origin {
        Origin::default()
    }
}

impl From<&RequestContext> for Origin {
    fn from(ctx: &RequestContext) -> Origin {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Origin {
            ip: ctx.client_ip.map(|i| i.to_string()),
            user_agent: ctx.user_agent.clone(),
            request_id: nonempty(&ctx.request_id),
            trace_id: nonempty(&ctx.trace_id),
        }
    }
}

/// One auditable decision or change.
pub struct Event<'a> {
    /// `domain.verb`, e.g. `auth.login`, `token.create`.
    pub action: &'a str,
    pub outcome: Outcome,
    pub actor: Actor<'a>,
    pub project_id: Option<&'a str>,
    /// (type, id) of what was acted on.
    pub target: Option<(&'a str, &'a str)>,
    /// Why, in a few structured fields (`{"reason":"bad_credentials"}`). Never secrets or content.
    pub intent: serde_json::Value,
    pub origin: &'a Origin,
}

impl<'a> Event<'a> {
    /// An event with no project, no target and an empty intent; add those with the setters.
    pub fn new(action: &'a str, outcome: Outcome, actor: Actor<'a>, origin: &'a Origin) -> Event<'a> {
        Event { action, outcome, actor, project_id: None, target: None, intent: serde_json::json!({}), origin }
    }

    pub fn target(mut self, kind: &'a str, id: &'a str) -> Event<'a> {
        self.target = Some((kind, id));
        self
    }

    pub fn intent(mut self, intent: serde_json::Value) -> Event<'a> {
        self.intent = intent;
        self
    }

    pub fn project(mut self, project_id: &'a str) -> Event<'a> {
        self.project_id = Some(project_id);
        self
    }
}

/// Append `event` inside the caller's transaction (or connection, for a decision that changes
/// nothing else). Returns the record's `seq`.
pub async fn record(conn: &mut AnyConnection, event: Event<'_>) -> AppResult<i64> {
    let intent = intent_text(&event.intent)?;
    // Empty optional values are stored as absent: every export format (CSV included) then
    // round-trips them exactly, which verification depends on.
    let origin = event.origin;
    let (ip, user_agent) = (some(origin.ip.as_deref()), some(origin.user_agent.as_deref()));
    let (request_id, trace_id) = (some(origin.request_id.as_deref()), some(origin.trace_id.as_deref()));
    let project_id = some(event.project_id);
    let salt = crate::keys::random_token(16);
    let actor_id = some(event.actor.id());
    let personal = chain::personal_commitment(&salt, actor_id, ip, user_agent);
    let id = uuid::Uuid::now_v7().to_string();

    // Taking the head row serialises appenders: this is the total order.
    let (seq, prev_hash, last_at): (i64, String, i64) =
        sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, occurred_at")
            .fetch_one(&mut *conn)
            .await?;
    // Never earlier than the previous record, so a time range is a contiguous run of seqs even
    // when replicas' clocks differ slightly.
    let occurred_at = now_ms().max(last_at);
    let prev = chain::parse_hash(&prev_hash)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("audit head holds a malformed hash")))?;
    let (target_type, target_id) = event.target.unzip();
    let (target_type, target_id) = (some(target_type), some(target_id));
    let hashed = chain::Hashed {
        seq,
        id: &id,
        occurred_at,
        actor_kind: event.actor.kind(),
        personal: &personal,
        action: event.action,
        outcome: event.outcome.as_str(),
        project_id,
        target_type,
        target_id,
        intent: &intent,
        request_id,
        trace_id,
    };
    let hash = hex::encode(chain::record_hash(&hashed, &prev));
    sqlx::query("UPDATE audit_head SET hash = $1, occurred_at = $2 WHERE id = 1")
        .bind(&hash)
        .bind(occurred_at)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO audit_events (seq, id, occurred_at, actor_kind, actor_id, personal, personal_salt, ip, \
         user_agent, action, outcome, project_id, target_type, target_id, intent, request_id, trace_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(seq)
    .bind(&id)
    .bind(occurred_at)
    .bind(event.actor.kind())
    .bind(actor_id)
    .bind(&personal)
    .bind(&salt)
    .bind(ip)
    .bind(user_agent)
    .bind(event.action)
    .bind(event.outcome.as_str())
    .bind(project_id)
    .bind(target_type)
    .bind(target_id)
    .bind(&intent)
    .bind(request_id)
    .bind(trace_id)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    RECORDS_TOTAL.with_label_values(&[event.action, event.outcome.as_str()]).inc();
    Ok(seq)
}

/// The stored intent: at most [`MAX_INTENT_BYTES`]. A longer one (a refusal quoting a long
/// reason, say) is still recorded, with each string cut short and `"truncated": true`; if that
/// is not enough, only the first 200 characters of its `reason` are kept.
fn intent_text(intent: &serde_json::Value) -> AppResult<String> {
    let text = |v: &serde_json::Value| serde_json::to_string(v).map_err(|e| AppError::Internal(e.into()));
    let full = text(intent)?;
    if full.len() <= MAX_INTENT_BYTES {
        return Ok(full);
    }
    fn shorten(v: &serde_json::Value, max: usize) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) if s.chars().count() > max => {
                serde_json::Value::String(format!("{}…", s.chars().take(max).collect::<String>()))
            }
            serde_json::Value::Array(items) => items.iter().take(16).map(|i| shorten(i, max)).collect(),
            serde_json::Value::Object(map) => {
                map.iter().take(32).map(|(k, v)| (k.chars().take(64).collect::<String>(), shorten(v, max))).collect()
            }
            other => other.clone(),
        }
    }
    let mut short = shorten(intent, 200);
    if let serde_json::Value::Object(map) = &mut short {
        map.insert("truncated".into(), serde_json::Value::Bool(true));
    }
    let short_text = text(&short)?;
    if short_text.len() <= MAX_INTENT_BYTES {
        return Ok(short_text);
    }
    let reason = intent.get("reason").map(|r| shorten(r, 200)).unwrap_or(serde_json::Value::Null);
    text(&serde_json::json!({"reason": reason, "truncated": true}))
}

/// An empty optional value is stored as absent.
fn some(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// Record a decision that changes nothing else (a denial, a failed sign-in) in its own
/// transaction. A refusal repeated from the same source within a minute is counted rather than
/// written again, and the count is recorded when the minute ends (see [`damper`]); the result is
/// then `None`. Otherwise it is the record's `seq`.
pub async fn record_alone(db: &Db, event: Event<'_>) -> AppResult<Option<i64>> {
    let admission = db.denials().admit(&event, now_ms());
    write_aggregates(db, &admission.aggregates).await?;
    if !admission.record {
        DAMPED_TOTAL.with_label_values(&[event.action]).inc();
        return Ok(None);
    }
    let mut tx = db.begin().await?;
    let seq = record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(Some(seq))
}

async fn write_aggregates(db: &Db, aggregates: &[damper::Aggregate]) -> AppResult<()> {
    if aggregates.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    for aggregate in aggregates {
        let origin = aggregate.origin();
        record(&mut tx, aggregate.event(&origin)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Write the counts of refusals whose window has ended (every count when `all`, at shutdown).
/// Returns how many records were written.
pub async fn flush_denials(db: &Db, all: bool) -> AppResult<usize> {
    let aggregates = db.denials().drain(all);
    write_aggregates(db, &aggregates).await?;
    Ok(aggregates.len())
}

/// Flush folded refusals every few seconds until `stop`, then everything left.
pub async fn run_damper(db: Db, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Err(e) = flush_denials(&db, false).await {
            tracing::warn!(event_type = "audit_failed", error = %e, "could not record repeated refusals");
        }
    }
    if let Err(e) = flush_denials(&db, true).await {
        tracing::warn!(event_type = "audit_failed", error = %e, "could not record repeated refusals at shutdown");
    }
}

/// The pseudonym that replaces an erased user's id: `deleted_user_<HMAC-SHA-256(user_id, pepper)>`.
/// Stable (the same user always maps to the same pseudonym) and not reversible without the pepper.
pub fn pseudonym(pepper: &[u8; 32], user_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(pepper).expect("any key length");
    mac.update(user_id.as_bytes());
    format!("deleted_user_{}", hex::encode(mac.finalize().into_bytes()))
}

/// GDPR erasure inside the caller's transaction: the user's records keep their place and hashes,
/// but the actor becomes `pseudonym` and the salt, IP address and user agent are dropped. The
/// hashes cover only the commitment to those fields, so the chain still verifies. Returns the
/// number of records pseudonymized.
pub async fn pseudonymize_actor(
    tx: &mut crate::db::Tx,
    backend: crate::db::Backend,
    user_id: &str,
    pseudonym: &str,
) -> AppResult<u64> {
    retention::open_gate(tx, backend).await?;
    let r = sqlx::query(
        "UPDATE audit_events SET actor_id = $1, personal_salt = NULL, ip = NULL, user_agent = NULL WHERE actor_id = $2",
    )
    .bind(pseudonym)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    retention::close_gate(tx, backend).await?;
    Ok(r.rows_affected())
}

/// A user's own audit records (as actor), oldest first, for their data export.
pub async fn records_of_actor(conn: &mut AnyConnection, user_id: &str) -> AppResult<Vec<store::Row>> {
    store::rows_of_actor(conn, user_id).await
}

/// Verify the whole live log: export it (to a temporary file under the data directory, so memory
/// stays constant) and check the file exactly as `arno audit verify` would, against our key.
pub async fn verify_live(
    db: &Db,
    signer: &Signer,
    data_dir: &std::path::Path,
) -> AppResult<Result<verify::Report, verify::Problem>> {
    checkpoint(db, signer).await?;
    let dir = data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| AppError::Internal(e.into()))?;
    let path = dir.join(format!("audit-verify-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let file = tokio::fs::File::create(&path).await.map_err(|e| AppError::Internal(e.into()))?;
    let mut sink = tokio::io::BufWriter::new(file);
    let req = export::Request { from: 0, to: None, filter: export::Filter::default(), format: export::Format::Jsonl };
    let written = export::run(db, signer, &req, &mut sink).await;
    let flushed = tokio::io::AsyncWriteExt::flush(&mut sink).await;
    let key = signer.public_key();
    let checked = match (written, flushed) {
        (Ok(_), Ok(())) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let reader = std::io::BufReader::new(std::fs::File::open(&p)?);
                Ok(verify::verify(reader, Some(&key)))
            })
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(e.into()))
        }
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(AppError::Internal(e.into())),
    };
    let _ = tokio::fs::remove_file(&path).await;
    checked
}

/// The instance's audit signing key, derived from the instance secret.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(key_id={})", self.key_id())
    }
}

impl Signer {
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer { key: SigningKey::from_bytes(&seed) }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as operators copy it: `ed25519:` + base64url.
    pub fn public_key_text(&self) -> String {
        public_key_text(&self.public_key())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }

    pub fn sign(&self, message: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.key.sign(message).to_bytes())
    }
}

pub fn public_key_text(key: &VerifyingKey) -> String {
    use base64::Engine as _;
    format!("ed25519:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes()))
}

pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim().strip_prefix("ed25519:")?).ok()?;
    VerifyingKey::from_bytes(&raw.try_into().ok()?).ok()
}

/// First 8 bytes of SHA-256 of the public key, hex: names the key in records and exports.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8])
}

/// Sign the current chain head if it moved since the last checkpoint. Returns the new
/// checkpoint's seq, if one was made.
pub async fn checkpoint(db: &Db, signer: &Signer) -> AppResult<Option<i64>> {
    let mut tx = db.begin().await?;
    // Lock the head so the signed (seq, hash) is the chain's, not a racing append's.
    let (seq, hash): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash").fetch_one(&mut *tx).await?;
    let last = store::last_checkpoint(&mut tx).await?;
    let (prev_seq, prev_hash) = last.map(|c| (c.seq, c.hash)).unwrap_or((0, hex::encode(chain::GENESIS)));
    if seq == 0 || seq == prev_seq {
        // Release the write lock now rather than when the pool next touches the connection.
        tx.rollback().await?;
        return Ok(None);
    }
    let parse = |h: &str| chain::parse_hash(h).ok_or_else(|| AppError::Internal(anyhow::anyhow!("malformed hash")));
    let message = chain::checkpoint_message(seq, &parse(&hash)?, prev_seq, &parse(&prev_hash)?);
    let checkpoint = store::Checkpoint {
        seq,
        hash,
        prev_seq,
        prev_hash,
        signed_at: now_ms(),
        key_id: signer.key_id(),
        signature: signer.sign(&message),
    };
    store::insert_checkpoint(&mut tx, &checkpoint).await?;
    tx.commit().await?;
    Ok(Some(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_intent_is_cut_short_not_refused() {
        let small = serde_json::json!({"reason": "bad_credentials"});
        assert_eq!(intent_text(&small).unwrap(), r#"{"reason":"bad_credentials"}"#);

        let long = serde_json::json!({"reason": "r".repeat(5000), "provider": "corp"});
        let text = intent_text(&long).unwrap();
        assert!(text.len() <= MAX_INTENT_BYTES);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["truncated"], true);
        assert_eq!(back["provider"], "corp");
        assert!(back["reason"].as_str().unwrap().starts_with("rrrr"));

        let wide: serde_json::Map<String, serde_json::Value> =
            (0..500).map(|i| (format!("k{i}"), serde_json::Value::String("v".repeat(100)))).collect();
        let mut wide = serde_json::Value::Object(wide);
        wide["reason"] = serde_json::Value::String("why".into());
        let text = intent_text(&wide).unwrap();
        assert!(text.len() <= MAX_INTENT_BYTES, "{}", text.len());
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["truncated"], true);
    }
}

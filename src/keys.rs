//! The instance secret and the purpose-bound keys derived from it.
//!
//! `ARNO_SECRET_KEY` (or a key generated into `{data}/secret.key` on first start) is never used
//! directly: each purpose gets its own key, HMAC-SHA-256(secret, label), so a key leaked from
//! one use cannot forge another.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Config, Secret};

pub struct Keys {
    /// CSRF tokens.
    pub csrf: [u8; 32],
    /// Pseudonymous keys for rate limiting (so the throttle table holds no e-mail addresses).
    pub throttle: [u8; 32],
    /// Signs audit checkpoints and exports (Ed25519).
    pub audit: crate::audit::Signer,
    /// Pepper for the pseudonyms that replace erased users in audit records.
    pub erasure_pepper: [u8; 32],
    /// Encrypts secrets Arno stores (the SCIM token; later git tokens and IdP secrets entered in
    /// the console).
    pub secrets: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    pub fn derive(secret: &Secret) -> Keys {
        Keys {
            csrf: derive(secret, "csrf"),
            throttle: derive(secret, "login-throttle"),
            audit: crate::audit::Signer::from_seed(derive(secret, "audit-signing")),
            erasure_pepper: derive(secret, "erasure-pepper"),
            secrets: derive(secret, "stored-secrets"),
        }
    }

    /// Encrypt a secret for storage: XChaCha20-Poly1305 with a random nonce, `v1:` + base64url
    /// of nonce ‖ ciphertext. `purpose` is bound as associated data, so a value sealed for one
    /// use cannot be replayed as another.
    pub fn seal(&self, purpose: &str, plaintext: &str) -> String {
        use base64::Engine as _;
        use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new((&self.secrets).into());
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut chacha20poly1305::aead::OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: purpose.as_bytes() })
            .expect("encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypt what [`Keys::seal`] produced; `None` if it was altered, sealed for another
    /// purpose, or under another instance key.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<String> {
        use base64::Engine as _;
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed.strip_prefix("v1:")?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let cipher = chacha20poly1305::XChaCha20Poly1305::new((&self.secrets).into());
        let plain = cipher.decrypt(nonce.into(), Payload { msg: ciphertext, aad: purpose.as_bytes() }).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Equal strings, compared in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A public fingerprint of the secret: lets replicas check they share one without revealing it.
pub fn fingerprint(secret: &Secret) -> String {
    hex::encode(&derive(secret, "fingerprint")[..16])
}

/// Record the secret's fingerprint on first start; afterwards refuse a different secret, which
/// would break every replica's CSRF tokens (and, later, decryption of stored secrets).
/// Proof that this process holds the instance secret the database was set up with, which only
/// the host's operator (or the server they run) has: made by [`check_fingerprint`] alone. CLI
/// commands that change the instance without an Admin's session take it.
#[derive(Debug)]
pub struct HostOperator {
    _proof: (),
}

pub async fn check_fingerprint(db: &crate::db::Db, secret: &Secret) -> anyhow::Result<HostOperator> {
    let ours = fingerprint(secret);
    sqlx::query(
        "INSERT INTO instance_settings (key, value, updated_at) VALUES ('secret_key_fingerprint', $1, $2) \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&ours)
    .bind(crate::db::now_ms())
    .execute(db.pool())
    .await?;
    let (recorded,): (String,) =
        sqlx::query_as("SELECT value FROM instance_settings WHERE key = 'secret_key_fingerprint'")
            .fetch_one(db.pool())
            .await?;
    anyhow::ensure!(
        recorded == ours,
        "the secret key differs from the one this database was set up with (fingerprint {recorded}, \
         this process has {ours}); give every replica the same ARNO_SECRET_KEY, or restore the original \
         {{data_dir}}/secret.key"
    );
    Ok(HostOperator { _proof: () })
}

fn derive(secret: &Secret, label: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(b"arno-key-v1:");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The configured secret, or the one in `{data}/secret.key`, created (0600) if missing.
pub fn load_or_create(config: &Config) -> anyhow::Result<Secret> {
    if let Some(s) = &config.secret_key {
        return Ok(s.clone());
    }
    let path = config.data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_owned();
            anyhow::ensure!(key.len() >= 32, "{} is too short; it must hold at least 32 characters", path.display());
            Ok(Secret::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
            let key = URL_SAFE_NO_PAD.encode(raw);
            write_private(&path, key.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            Ok(Secret::new(key))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write a file readable only by its owner, durably, without ever exposing a partial file.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut raw = vec![0u8; n];
    getrandom::fill(&mut raw).expect("system randomness");
    URL_SAFE_NO_PAD.encode(raw)
}

/// Hex SHA-256, for storing bearer secrets (sessions, tokens) that are high-entropy already.
pub fn sha256_hex(data: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(data.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose_and_secret() {
        let a = Keys::derive(&Secret::new("a".repeat(32)));
        let b = Keys::derive(&Secret::new("b".repeat(32)));
        assert_ne!(a.csrf, a.throttle);
        assert_ne!(a.csrf, b.csrf);
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_purpose() {
        let a = Keys::derive(&Secret::new("a".repeat(32)));
        let b = Keys::derive(&Secret::new("b".repeat(32)));
        let sealed = a.seal("scim", "token-value");
        assert!(!sealed.contains("token-value"));
        assert_ne!(sealed, a.seal("scim", "token-value"), "a fresh nonce each time");
        assert_eq!(a.open("scim", &sealed).as_deref(), Some("token-value"));
        assert_eq!(a.open("git", &sealed), None, "bound to its purpose");
        assert_eq!(b.open("scim", &sealed), None, "bound to the instance key");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(a.open("scim", &tampered), None);
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd") && !constant_time_eq("abc", "ab"));
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_data_dir(dir.path());
        let first = load_or_create(&config).unwrap();
        let second = load_or_create(&config).unwrap();
        assert_eq!(first, second);
        let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

//! Argon2id password hashing (RFC 9106; OWASP parameters m=19 MiB, t=2, p=1 — the `argon2`
//! crate's defaults). Hashing is CPU-bound, so it runs on the blocking pool, never on the
//! async runtime.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::LazyLock;

use crate::error::{AppError, AppResult};

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 1024;

/// Verified against when the account does not exist, so a wrong e-mail address costs the same
/// time as a wrong password and timing does not reveal which accounts exist.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking("arno-dummy-password-for-timing").expect("hashing works"));

pub fn check_policy(password: &str, email: &str) -> AppResult<()> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(AppError::field("password", format!("must be at least {MIN_LEN} characters")));
    }
    if password.len() > MAX_LEN {
        return Err(AppError::field("password", format!("must be at most {MAX_LEN} bytes")));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(AppError::field("password", "must not be your e-mail address"));
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

pub async fn hash(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing password: {e}")))
}

/// Verify `password` against a stored PHC hash; with `None`, burn the same time and fail.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&phc) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(h)).await);
        assert!(!verify("arno-dummy-password-for-timing".into(), None).await);
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.c").is_err());
        assert!(check_policy("a@example.com", "a@example.com").is_err());
        assert!(check_policy(&"x".repeat(2000), "a@b.c").is_err());
        assert!(check_policy("long enough pass", "a@b.c").is_ok());
    }
}

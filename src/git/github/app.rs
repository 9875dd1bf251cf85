//! The GitHub App's JWT (GitHub: "Generating a JSON Web Token for a GitHub App"): RS256 over the
//! App's private key, issued 60 seconds in the past against clock drift, valid for 9 minutes
//! (GitHub refuses more than 10), its issuer the App's client id (or, without one, its App id).
//! It is only ever exchanged for installation tokens; it is never logged or stored. With it, the
//! App's own resources: its installations (and the repositories each reaches) and its recent
//! webhook deliveries.

use base64::Engine as _;
use reqwest::Method;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Deserialize;
use sha2::Sha256;

use super::client::{Auth, Client};
use super::provider::failure;
use crate::git::GitResult;

/// Seconds before "now" the token says it was issued.
pub const BACKDATE_SECS: i64 = 60;
/// Seconds after "now" it expires (GitHub's limit is 600).
pub const LIFETIME_SECS: i64 = 540;

/// The App's JWT at `now` (Unix seconds), signed with `key`, issued by `issuer`.
pub fn jwt(issuer: &str, key: &RsaPrivateKey, now: i64) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"iat": now - BACKDATE_SECS, "exp": now + LIFETIME_SECS, "iss": issuer});
    let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", b64(&signature))
}

/// An installation of the App as the console and the New project form show it.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: u64,
    pub account: String,
    pub suspended: bool,
    /// `owner/name`, at most [`LISTED_REPOSITORIES`].
    pub repositories: Vec<String>,
    /// More than were listed.
    pub truncated: bool,
}

/// Repositories listed per installation.
pub const LISTED_REPOSITORIES: usize = 500;

/// The App's installations and the repositories each reaches.
pub async fn installations(client: &Client) -> GitResult<Vec<Installation>> {
    #[derive(Deserialize)]
    struct Account {
        login: String,
    }
    #[derive(Deserialize)]
    struct Item {
        id: u64,
        account: Option<Account>,
        suspended_at: Option<String>,
    }
    #[derive(Deserialize)]
    struct Repo {
        full_name: String,
    }
    #[derive(Deserialize)]
    struct Repos {
        repositories: Vec<Repo>,
    }
    let response = client.call(Auth::App, Method::GET, &["app", "installations"], &[("per_page", "100")], None).await?;
    if response.status != 200 {
        return Err(failure(&response, "the App's installations"));
    }
    let items: Vec<Item> = response.json()?;
    let mut out = vec![];
    for item in items {
        let suspended = item.suspended_at.is_some();
        let mut repositories = vec![];
        let mut truncated = false;
        if !suspended {
            let mut url = client.url(&["installation", "repositories"], &[("per_page", "100")]);
            loop {
                let page = client.send(Auth::Installation(item.id), Method::GET, url, None, false).await?;
                if page.status != 200 {
                    return Err(failure(&page, "an installation's repositories"));
                }
                let listed: Repos = page.json()?;
                repositories.extend(listed.repositories.into_iter().map(|r| r.full_name));
                match page.next_page() {
                    Some(_) if repositories.len() >= LISTED_REPOSITORIES => {
                        truncated = true;
                        break;
                    }
                    Some(next) => url = client.same_host(&next)?,
                    None => break,
                }
            }
        }
        repositories.sort_by_key(|r| r.to_ascii_lowercase());
        out.push(Installation {
            id: item.id,
            account: item.account.map(|a| a.login).unwrap_or_default(),
            suspended,
            repositories,
            truncated,
        });
    }
    Ok(out)
}

/// The App's most recent webhook deliveries (at most 100, failed ones included): their ids and
/// when GitHub made them (ms since the epoch; 0 when unreadable).
pub async fn recent_deliveries(client: &Client) -> GitResult<Vec<(String, i64)>> {
    let query = [("per_page", "100")];
    let response = client.call(Auth::App, Method::GET, &["app", "hook", "deliveries"], &query, None).await?;
    if response.status != 200 {
        return Err(failure(&response, "the App's webhook deliveries"));
    }
    #[derive(Deserialize)]
    struct Item {
        guid: String,
        delivered_at: String,
    }
    let items: Vec<Item> = response.json()?;
    Ok(items
        .into_iter()
        .map(|i| {
            let at = chrono::DateTime::parse_from_rfc3339(&i.delivered_at).map_or(0, |d| d.timestamp_millis());
            (i.guid, at)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier as _;

    use super::*;
    use crate::git::connections::parse_private_key;

    #[test]
    fn a_jwt_github_accepts() {
        let pem = include_str!("../../../tests/fixtures/github-app-key.pem");
        let key = parse_private_key(pem).unwrap();
        let token = jwt("Iv23liExample", &key, 1_800_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(claims, serde_json::json!({"iat": 1_799_999_940, "exp": 1_800_000_540, "iss": "Iv23liExample"}));
        let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
        assert!(exp - iat <= 600, "GitHub refuses a lifetime over ten minutes");
        // The signature verifies with the App's public key, over exactly header.claims.
        let verifier = VerifyingKey::<Sha256>::new(key.to_public_key());
        let signature = Signature::try_from(decode(parts[2]).as_slice()).unwrap();
        verifier.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).unwrap();
        assert!(verifier.verify(b"something else", &signature).is_err());
    }

    #[test]
    fn keys_github_hands_out_and_keys_too_weak() {
        assert!(parse_private_key(include_str!("../../../tests/fixtures/github-app-key.pem")).is_ok(), "PKCS#1");
        assert!(parse_private_key(include_str!("../../../tests/fixtures/oidc-key-1.pem")).is_ok(), "PKCS#8");
        let short = parse_private_key(include_str!("../../../tests/fixtures/rsa-1024-too-short.pem"));
        assert!(short.unwrap_err().contains("2,048"));
        assert!(parse_private_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n").is_err());
        assert!(parse_private_key("").is_err());
    }
}

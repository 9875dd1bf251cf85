//! Sign-in throttling, in the database so every replica sees the same counts.
//!
//! A failed password sign-in counts against three keys, each with its own limit of failures
//! within a 15-minute window:
//!
//! - the **(account, address) pair** (`login.max_failures_per_account`, 5): one guesser against
//!   one account;
//! - the **address** (`login.max_failures_per_ip`, 30): one guesser spraying many accounts;
//! - the **account from every address** (`login.max_failures_account_wide`, 10× the pair limit):
//!   only a backstop against guessing spread over many addresses.
//!
//! Past a key's limit, attempts under that key wait: 30 s, doubling with each further failure,
//! capped at 15 min — a delay, never a lockout. A waiting attempt is refused before the password
//! is checked and is not counted, so it writes nothing here.
//!
//! Why not per account, as before: then anyone who knows an e-mail address could keep its owner
//! out with a few guesses every 15 minutes (CWE-645, "overly restrictive account lockout",
//! <https://cwe.mitre.org/data/definitions/645.html>). Counting per (account, address) pair slows
//! the guesser without touching the owner at their own address — the approach of OWASP's
//! "Slow Down Online Guessing Attacks with Device Cookies", with the address standing in for the
//! device (<https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies>).
//! Only guessing spread over many addresses reaches the account-wide backstop.
//!
//! Keys hold no e-mail addresses: accounts and pairs are HMACs under the instance's throttle key.
//! IPv6 clients are counted per /64, the block one subscriber usually gets, so rotating through
//! one's own addresses does not buy fresh limits.

use std::net::{IpAddr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::db::{Db, now_ms};
use crate::error::AppResult;

const WINDOW_MS: i64 = 15 * 60 * 1000;
const BASE_DELAY_MS: i64 = 30_000;
const MAX_DELAY_MS: i64 = 15 * 60 * 1000;

/// One counter: its row key and how many failures it tolerates per window.
pub struct Key {
    pub key: String,
    pub max_failures: u32,
}

/// The sign-in limits, from `login.*` in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInLimits {
    pub per_account_address: u32,
    pub per_address: u32,
    pub account_wide: u32,
}

impl SignInLimits {
    pub fn from_config(config: &Config) -> Self {
        SignInLimits {
            per_account_address: config.login_max_failures_per_account,
            per_address: config.login_max_failures_per_ip,
            account_wide: config.login_max_failures_account_wide,
        }
    }
}

/// Which limit refused a sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    AccountAddress,
    Address,
    Account,
}

impl Scope {
    /// In the order of [`SignInKeys::keys`].
    const ALL: [Scope; 3] = [Scope::AccountAddress, Scope::Address, Scope::Account];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AccountAddress => "account_address",
            Scope::Address => "address",
            Scope::Account => "account",
        }
    }
}

/// A refusal: which limit, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub scope: Scope,
    pub retry_after_ms: u64,
}

/// The keys one password sign-in is counted against. Built the same way whether or not the
/// account exists, so throttling says nothing about which accounts do.
pub struct SignInKeys {
    keys: [Key; 3],
}

impl SignInKeys {
    pub fn new(secret: &[u8; 32], email_normalized: &str, client: Option<IpAddr>, limits: SignInLimits) -> Self {
        let address = client.map(address_bucket).unwrap_or_else(|| "unknown".to_owned());
        SignInKeys {
            keys: [
                pair_key(secret, email_normalized, &address, limits.per_account_address),
                ip_key(&address, limits.per_address),
                account_key(secret, email_normalized, limits.account_wide),
            ],
        }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The (account, address) pair, which a successful sign-in clears.
    pub fn pair(&self) -> &Key {
        &self.keys[0]
    }
}

/// What a client address is counted as: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
pub fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A client address (already a [`address_bucket`]), across all accounts.
pub fn ip_key(address: &str, max_failures: u32) -> Key {
    Key { key: format!("ip:{address}"), max_failures }
}

/// An account, across all addresses.
pub fn account_key(secret: &[u8; 32], email_normalized: &str, max_failures: u32) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(email_normalized.as_bytes());
    Key { key: format!("account:{}", hex::encode(mac.finalize().into_bytes())), max_failures }
}

/// An account from one address (a [`address_bucket`]). Length-prefixed, so no two different
/// pairs share an input.
pub fn pair_key(secret: &[u8; 32], email_normalized: &str, address: &str, max_failures: u32) -> Key {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"pair\0");
    mac.update(&(email_normalized.len() as u64).to_be_bytes());
    mac.update(email_normalized.as_bytes());
    mac.update(address.as_bytes());
    Key { key: format!("pair:{}", hex::encode(mac.finalize().into_bytes())), max_failures }
}

/// How long a key that has counted `failures` in its window blocks, if at all.
fn block_delay_ms(failures: i64, max_failures: u32) -> Option<i64> {
    let over = failures - i64::from(max_failures);
    (over >= 0).then(|| (BASE_DELAY_MS << over.min(10)).min(MAX_DELAY_MS))
}

/// The longest block among `keys`: its index and milliseconds left.
async fn longest_block(db: &Db, keys: &[Key]) -> AppResult<Option<(usize, u64)>> {
    let now = now_ms();
    let mut longest: Option<(usize, i64)> = None;
    for (i, k) in keys.iter().enumerate() {
        let row: Option<(i64,)> = sqlx::query_as("SELECT blocked_until FROM login_throttle WHERE key = $1")
            .bind(&k.key)
            .fetch_optional(db.pool())
            .await?;
        if let Some((until,)) = row
            && until > now
            && longest.is_none_or(|(_, ms)| until - now > ms)
        {
            longest = Some((i, until - now));
        }
    }
    Ok(longest.map(|(i, ms)| (i, ms as u64)))
}

/// Milliseconds until the longest-blocked key may try again, if any is blocked.
pub async fn blocked_for(db: &Db, keys: &[Key]) -> AppResult<Option<u64>> {
    Ok(longest_block(db, keys).await?.map(|(_, ms)| ms))
}

/// Whether a sign-in must wait, and because of which limit. Reads only.
pub async fn sign_in_blocked(db: &Db, keys: &SignInKeys) -> AppResult<Option<Blocked>> {
    Ok(longest_block(db, keys.keys())
        .await?
        .map(|(i, retry_after_ms)| Blocked { scope: Scope::ALL[i], retry_after_ms }))
}

/// Count a failure against every key, blocking those over their limit. One row per key: a
/// key's count restarts when its window has passed and it is not blocked.
pub async fn record_failure(db: &Db, keys: &[Key]) -> AppResult<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    for k in keys {
        let (failures,): (i64,) = sqlx::query_as(
            "INSERT INTO login_throttle (key, failures, window_start, blocked_until) VALUES ($1, 1, $2, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start < $3 AND login_throttle.blocked_until <= $2 \
                               THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start < $3 AND login_throttle.blocked_until <= $2 \
                               THEN $2 ELSE login_throttle.window_start END \
             RETURNING failures",
        )
        .bind(&k.key)
        .bind(now)
        .bind(now - WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(delay) = block_delay_ms(failures, k.max_failures) {
            sqlx::query("UPDATE login_throttle SET blocked_until = $1 WHERE key = $2")
                .bind(now + delay)
                .bind(&k.key)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A successful sign-in clears its own key — for a password sign-in, the (account, address)
/// pair. The address's and the account-wide counts decay on their own: the right password from
/// one place says nothing about the guesses from others.
pub async fn record_success(db: &Db, key: &Key) -> AppResult<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1").bind(&key.key).execute(db.pool()).await?;
    Ok(())
}

/// Sign-in flows that begin without credentials (an SSO redirect, a device code) and store a
/// row each, per client address per window: generous for a person, a wall for a script.
pub const MAX_STARTS_PER_ADDRESS: u32 = 60;

/// Count one start of `flow` (`oidc`, `device`) from `client`; refused with the milliseconds to
/// wait once the address has started more than [`MAX_STARTS_PER_ADDRESS`] in a window. A
/// refused start is not counted, so a blocked script writes nothing.
pub async fn start_allowed(db: &Db, flow: &str, client: Option<IpAddr>) -> AppResult<Result<(), u64>> {
    let address = client.map(address_bucket).unwrap_or_else(|| "unknown".to_owned());
    let keys = [Key { key: format!("start:{flow}:{address}"), max_failures: MAX_STARTS_PER_ADDRESS }];
    if let Some(ms) = blocked_for(db, &keys).await? {
        return Ok(Err(ms));
    }
    record_failure(db, &keys).await?;
    Ok(Ok(()))
}

/// Forget counts that no longer matter.
pub async fn sweep(db: &Db) -> AppResult<()> {
    let now = now_ms();
    sqlx::query("DELETE FROM login_throttle WHERE window_start < $1 AND blocked_until < $2")
        .bind(now - WINDOW_MS)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const LIMITS: SignInLimits = SignInLimits { per_account_address: 5, per_address: 30, account_wide: 50 };

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn keys(email: &str, from: &str) -> Vec<(String, u32)> {
        SignInKeys::new(&SECRET, email, ip(from), LIMITS)
            .keys()
            .iter()
            .map(|k| (k.key.clone(), k.max_failures))
            .collect()
    }

    #[test]
    fn addresses_are_bucketed_ipv4_as_is_and_ipv6_per_64() {
        let b = |s: &str| address_bucket(s.parse().unwrap());
        assert_eq!(b("203.0.113.9"), "203.0.113.9");
        assert_eq!(b("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(b("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(b("2001:db8:1:2::1"), b("2001:db8:1:2:ffff::9"));
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
    }

    #[test]
    fn a_sign_in_counts_against_its_pair_its_address_and_its_account() {
        let k = keys("ada@example.com", "203.0.113.9");
        assert_eq!(k.len(), 3);
        assert!(k[0].0.starts_with("pair:") && k[0].1 == 5, "{k:?}");
        assert_eq!(k[1], ("ip:203.0.113.9".to_owned(), 30));
        assert!(k[2].0.starts_with("account:") && k[2].1 == 50, "{k:?}");
        assert_eq!(k[2].0, account_key(&SECRET, "ada@example.com", 50).key);
        // No e-mail address in any key, and the pair does not show the address either.
        assert!(k.iter().all(|(key, _)| !key.contains("ada") && !key.contains('@')));
        assert!(!k[0].0.contains("203.0.113.9"));
    }

    #[test]
    fn pairs_separate_addresses_and_accounts_but_the_account_key_spans_addresses() {
        let a = keys("ada@example.com", "203.0.113.9");
        let other_address = keys("ada@example.com", "198.51.100.7");
        let other_account = keys("bob@example.com", "203.0.113.9");
        assert_ne!(a[0], other_address[0], "the attacker's pair is not the victim's");
        assert_ne!(a[0], other_account[0]);
        assert_ne!(a[1], other_address[1]);
        assert_eq!(a[1], other_account[1], "one address across accounts");
        assert_eq!(a[2], other_address[2], "one account across addresses");
        assert_ne!(a[2], other_account[2]);
        // The same /64 is the same pair.
        assert_eq!(keys("ada@example.com", "2001:db8::1")[0], keys("ada@example.com", "2001:db8::2")[0]);
        // Length prefixes: shifting characters between e-mail and address gives another pair.
        assert_ne!(pair_key(&SECRET, "a@b", "c1", 5).key, pair_key(&SECRET, "a@bc", "1", 5).key);
        // A different instance secret gives different keys.
        assert_ne!(pair_key(&[8; 32], "a@b", "c", 5).key, pair_key(&SECRET, "a@b", "c", 5).key);
    }

    #[test]
    fn an_unknown_client_address_still_counts_per_address() {
        let k = SignInKeys::new(&SECRET, "ada@example.com", None, LIMITS);
        assert_eq!(k.keys()[1].key, "ip:unknown");
        assert_eq!(k.pair().key, k.keys()[0].key);
    }

    #[test]
    fn blocks_start_at_the_limit_double_and_are_capped() {
        assert_eq!(block_delay_ms(4, 5), None);
        assert_eq!(block_delay_ms(5, 5), Some(30_000));
        assert_eq!(block_delay_ms(6, 5), Some(60_000));
        assert_eq!(block_delay_ms(7, 5), Some(120_000));
        assert_eq!(block_delay_ms(10, 5), Some(MAX_DELAY_MS), "30 s × 32 is past the cap");
        assert_eq!(block_delay_ms(1_000, 5), Some(MAX_DELAY_MS));
        assert_eq!(block_delay_ms(49, 50), None);
    }

    #[test]
    fn scopes_follow_the_key_order() {
        assert_eq!(Scope::ALL.map(Scope::as_str), ["account_address", "address", "account"]);
    }
}

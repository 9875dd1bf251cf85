//! Hole 4: anyone could lock a password account out. Five wrong passwords for an account, from
//! anywhere, made even the right password wait, so a few guesses every 15 minutes kept the victim
//! (say, the bootstrap admin) out for as long as the attacker liked. Failures now count per
//! (account, address) pair and per address; the account-wide count is only a backstop far above.

use reqwest::{Method, StatusCode};

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, Page, TestApp};

const ATTACKER: &str = "203.0.113.66";
const VICTIM: &str = "198.51.100.7";
/// The documented defaults: failures per (account, address) pair, and the account-wide backstop.
const PER_PAIR: u32 = 5;
const BACKSTOP: u32 = 50;

/// The app behind a "load balancer" on 127.0.0.1, so each request's `X-Forwarded-For` is its
/// client address: the tests' way of speaking from two (or many) addresses.
async fn start() -> TestApp {
    TestApp::start_with(&[("ARNO_TRUSTED_PROXIES", "127.0.0.1")]).await
}

/// One sign-in through the form from `from`; `accept` picks the JSON error contract.
async fn sign_in(app: &TestApp, from: &str, password: &str, accept: &str) -> Page {
    let mut b = Browser::new(&app.base);
    let form = b.request(Method::GET, "/login", &[("x-forwarded-for", from)], None, None).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    let csrf = form.csrf();
    b.post_form_with(
        "/login",
        &[("csrf_token", &csrf), ("email", ADMIN_EMAIL), ("password", password)],
        &[("x-forwarded-for", from), ("accept", accept)],
    )
    .await
}

/// Let `ms` pass for the throttle: every time it holds moves that far into the past.
async fn elapse(app: &TestApp, ms: i64) {
    app.exec(&format!(
        "UPDATE login_throttle SET window_start = window_start - {ms}, blocked_until = blocked_until - {ms}"
    ))
    .await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.state.db.pool()).await.unwrap();
    n
}

#[tokio::test]
async fn an_attacker_guessing_from_one_address_cannot_keep_the_admin_out() {
    let app = start().await;
    app.create_admin().await;
    let (mut attempts, mut throttled) = (0, 0);
    // An hour of guessing (simulated), far beyond the old limit of 5 per account in 15 minutes.
    for round in 0..12 {
        for i in 0..8 {
            let json = i % 2 == 0;
            let r =
                sign_in(&app, ATTACKER, "a wrong password!", if json { "application/json" } else { "text/html" }).await;
            attempts += 1;
            match r.status {
                StatusCode::UNAUTHORIZED => {}
                StatusCode::TOO_MANY_REQUESTS => {
                    throttled += 1;
                    assert!(r.header("retry-after").is_some());
                    if json {
                        let body = r.json();
                        assert_eq!(body["code"], "rate_limited", "{body}");
                        assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
                    }
                }
                other => panic!("attacker got {other}: {}", r.text),
            }
        }
        // While the attack runs, the admin signs in from their own address at once.
        let victim = sign_in(&app, VICTIM, ADMIN_PASSWORD, "text/html").await;
        assert_eq!(victim.status, StatusCode::SEE_OTHER, "round {round}: {}", victim.text);
        elapse(&app, 5 * 60 * 1000).await;
    }
    // The attacker was slowed down: per 15 minutes, the pair's 5 guesses and then a doubling
    // wait (30 s, 1 min, 2 min …) that lets only a few more through …
    let guesses = attempts - throttled;
    assert!(guesses <= 4 * (i64::from(PER_PAIR) + 3), "{guesses} of {attempts} attempts were guesses");
    // … and throttled attempts wrote nothing: the table holds the attacker's pair and address,
    // the account's backstop count, and no row per attempt.
    let rows = count(&app, "SELECT COUNT(*) FROM login_throttle").await;
    assert!(rows <= 3, "{rows} throttle rows after {attempts} attempts");
    // Every refusal is audited once, no more.
    let denied =
        count(&app, "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login' AND outcome = 'denied'").await;
    assert!(denied > 0 && denied <= attempts, "{denied} denied records for {attempts} attempts");
}

#[tokio::test]
async fn the_account_wide_backstop_engages_only_far_beyond_the_pair_limit() {
    let app = start().await;
    app.create_admin().await;
    let (per_pair, backstop) = (PER_PAIR, BACKSTOP);
    // A distributed attack: each address stays at the pair limit, so none of them is throttled,
    // and together they approach the backstop. The admin still gets in from home.
    let mut failures = 0;
    for n in 0.. {
        let from = format!("192.0.2.{}", n + 1);
        for _ in 0..per_pair {
            if failures + 1 == backstop {
                break;
            }
            let r = sign_in(&app, &from, "a wrong password!", "application/json").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "failure {failures} from {from}");
            failures += 1;
        }
        if failures + 1 == backstop {
            break;
        }
    }
    let victim = sign_in(&app, VICTIM, ADMIN_PASSWORD, "text/html").await;
    assert_eq!(victim.status, StatusCode::SEE_OTHER, "{} failures: {}", failures, victim.text);
    // The victim's success cleared only their own pair: one more failure reaches the backstop,
    // and now the account waits from every address, the victim's too.
    assert_eq!(
        sign_in(&app, "192.0.2.250", "a wrong password!", "application/json").await.status,
        StatusCode::UNAUTHORIZED
    );
    let blocked = sign_in(&app, VICTIM, ADMIN_PASSWORD, "application/json").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS, "{}", blocked.text);
    assert_eq!(blocked.json()["code"], "rate_limited");
    let ms = blocked.json()["retry_after_ms"].as_u64().unwrap();
    assert!(ms > 0 && ms <= 30_000, "the backstop starts with a short wait: {ms}");
    // A delay, not a lockout: once it has passed, the right password works again.
    elapse(&app, 31_000).await;
    assert_eq!(sign_in(&app, VICTIM, ADMIN_PASSWORD, "text/html").await.status, StatusCode::SEE_OTHER);
}

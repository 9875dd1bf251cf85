//! Hole 5: unauthenticated audit floods. OIDC callbacks with `?error=`, junk back-channel logout
//! tokens, bad SCIM bearers, forged posts (`POST /logout` without a cookie fails the CSRF check)
//! and throttled sign-ins each wrote one audit record under the chain's head lock, so anyone
//! could make Arno write as fast as it could be asked. Now the first refusal of each kind from a
//! source is recorded in full, repeats are counted into one record when the minute ends, and
//! sign-in flows that store a row per start (SSO, device codes) are rate-limited per address.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::oidc::{TestOp, arno_with};
use crate::support::{ADMIN_EMAIL, Browser, TestApp, client, read};

const FLOOD: usize = 40;

async fn denied(app: &TestApp, action: &str) -> Vec<Value> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT intent FROM audit_events WHERE action = $1 AND outcome = 'denied' ORDER BY seq")
            .bind(action)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    rows.into_iter().map(|(i,)| serde_json::from_str(&i).unwrap()).collect()
}

async fn records(app: &TestApp) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_events").fetch_one(app.state.db.pool()).await.unwrap();
    n
}

/// Each refusal counts once: as a record of its own, or in a later record's `repeated`.
fn refusals(intents: &[Value], pick: impl Fn(&Value) -> bool) -> u64 {
    intents.iter().filter(|i| pick(i)).map(|i| i["repeated"].as_u64().unwrap_or(1)).sum()
}

#[tokio::test]
async fn a_flood_of_unauthenticated_refusals_writes_a_few_records_and_counts_every_one() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[("ARNO_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let scim_token = app.scim_token().await.unwrap();
    assert!(!scim_token.is_empty());
    let before = records(&app).await;
    let from = |ip: &'static str| move |r: reqwest::RequestBuilder| r.header("x-forwarded-for", ip);
    let attacker = from("203.0.113.9");

    let mut floods = Vec::new();
    for i in 0..FLOOD {
        // An IdP "error" anyone can link to, with a different description each time.
        let url = app.url(&format!("/auth/oidc/corp/callback?error=access_denied&error_description=nope-{i}"));
        floods.push(attacker(client().get(url)).send());
        // Junk back-channel logout tokens.
        let url = app.url("/auth/oidc/corp/backchannel-logout");
        floods.push(attacker(client().post(url)).form(&[("logout_token", format!("junk.{i}.token"))]).send());
        // Bad SCIM bearers.
        floods.push(attacker(client().get(app.url("/scim/v2/Users"))).bearer_auth(format!("scim_guess_{i}")).send());
        // A cross-site post with no cookie and no token.
        floods.push(attacker(client().post(app.url("/logout"))).send());
    }
    let answers = join_all(floods).await;
    for a in answers {
        let status = a.unwrap().status();
        assert!(status.is_client_error(), "{status}");
    }
    let written = records(&app).await - before;
    assert!(written <= 8, "{} refusals wrote {written} records", FLOOD * 4);

    // The minute ends (here: the server flushes now): one record per kind says how many more.
    let flushed = arno::audit::flush_denials(&app.state.db, true).await.unwrap();
    assert!(flushed >= 4, "{flushed}");
    let logins = denied(&app, "auth.login").await;
    assert_eq!(refusals(&logins, |i| i["method"] == "oidc" || i.get("repeated").is_some()), FLOOD as u64, "{logins:?}");
    let first = logins.iter().find(|i| i.get("repeated").is_none()).unwrap();
    assert_eq!(first["provider"], "corp", "the first record keeps every detail: {first}");
    let logouts = denied(&app, "auth.logout").await;
    assert_eq!(refusals(&logouts, |_| true), FLOOD as u64, "{logouts:?}");
    let scim = denied(&app, "scim.request").await;
    assert_eq!(refusals(&scim, |_| true), FLOOD as u64, "{scim:?}");
    let csrf = denied(&app, "http.write").await;
    assert_eq!(refusals(&csrf, |_| true), FLOOD as u64, "{csrf:?}");
    let aggregate = scim.iter().find(|i| i.get("repeated").is_some()).expect("an aggregate record");
    assert_eq!(aggregate["repeated"], FLOOD as u64 - 1);
    assert!(aggregate["first_at_ms"].as_i64() <= aggregate["last_at_ms"].as_i64());
    let (ip,): (Option<String>,) =
        sqlx::query_as("SELECT ip FROM audit_events WHERE action = 'scim.request' ORDER BY seq DESC LIMIT 1")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(ip.as_deref(), Some("203.0.113.9"), "the count names its source");

    // Another source's first refusal is recorded in full, at once.
    let other = from("198.51.100.20");
    let r = other(client().get(app.url("/scim/v2/Users"))).bearer_auth("scim_other").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(denied(&app, "scim.request").await.len(), scim.len() + 1);
    // The chain still verifies with the aggregates in it.
    let report = arno::audit::verify_live(&app.state.db, &app.state.keys.audit, &app.state.config.data_dir)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert!(report.records > 0);
}

#[tokio::test]
async fn throttled_sign_ins_are_counted_not_written_one_by_one() {
    let app = TestApp::start_with(&[("ARNO_TRUSTED_PROXIES", "127.0.0.1")]).await;
    app.create_admin().await;
    let mut b = Browser::new(&app.base);
    let headers = [("x-forwarded-for", "203.0.113.10"), ("accept", "application/json")];
    let form = b.request(Method::GET, "/login", &headers, None, None).await;
    let csrf = form.csrf();
    let (mut throttled, attempts) = (0, 60);
    for _ in 0..attempts {
        let fields = [("csrf_token", csrf.as_str()), ("email", ADMIN_EMAIL), ("password", "wrong password!")];
        let r = b.post_form_with("/login", &fields, &headers).await;
        throttled += usize::from(r.status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(throttled > 40, "{throttled}");
    let logins = denied(&app, "auth.login").await;
    let throttled_records = logins.iter().filter(|i| i["reason"] == "throttled").count();
    assert_eq!(throttled_records, 1, "{logins:?}");
    arno::audit::flush_denials(&app.state.db, true).await.unwrap();
    let logins = denied(&app, "auth.login").await;
    assert_eq!(refusals(&logins, |i| i["reason"] == "throttled"), throttled as u64);
    assert_eq!(refusals(&logins, |_| true), attempts as u64, "every attempt is in the log: {logins:?}");
}

#[tokio::test]
async fn device_code_starts_are_limited_per_address() {
    let app = TestApp::start_with(&[("ARNO_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let start = |ip: &'static str| {
        let url = app.url("/api/v1/auth/device/code");
        async move {
            let r = client().post(url).header("x-forwarded-for", ip).form(&[("client_id", "arno-cli")]).send();
            read(r.await.unwrap()).await
        }
    };
    let limit = arno::auth::throttle::MAX_STARTS_PER_ADDRESS as usize;
    for i in 0..limit {
        assert_eq!(start("203.0.113.11").await.status, StatusCode::OK, "start {i}");
    }
    for _ in 0..20 {
        let r = start("203.0.113.11").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert_eq!(r.json()["error"], "slow_down");
        assert!(r.header("retry-after").is_some());
    }
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM device_grants").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(rows, limit as i64, "a refused start stores nothing");
    assert_eq!(denied(&app, "auth.device").await.len(), 1, "one record for the refusals so far");
    // Someone else, elsewhere, is not affected.
    assert_eq!(start("198.51.100.21").await.status, StatusCode::OK);
}

#[tokio::test]
async fn sso_starts_are_limited_per_address() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[("ARNO_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let start = |ip: &'static str| {
        let url = app.url("/auth/oidc/corp/login?next=/");
        async move { read(client().get(url).header("x-forwarded-for", ip).send().await.unwrap()).await }
    };
    let limit = arno::auth::throttle::MAX_STARTS_PER_ADDRESS as usize;
    for i in 0..limit {
        assert_eq!(start("203.0.113.12").await.status, StatusCode::SEE_OTHER, "start {i}");
    }
    let r = start("203.0.113.12").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.text.contains("Too many sign-in attempts"));
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM oidc_logins").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(rows, limit as i64);
    assert_eq!(start("198.51.100.22").await.status, StatusCode::SEE_OTHER);
}

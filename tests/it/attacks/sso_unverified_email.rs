//! Hole 11: the first SSO sign-in through the provisioning IdP was linked to the SCIM-provisioned
//! account with the same e-mail address whether or not the IdP had verified that address. Anyone
//! who could set an unverified address at the IdP (self-service profiles, a guest account, an
//! Entra `mail` attribute — "nOAuth") took over the account IT had provisioned for someone else.
//! Linking now needs `email_verified: true` (ID token or userinfo) or the provider's
//! `assume_email_verified = true`; otherwise the sign-in is refused, audited, and nothing is
//! linked or created.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::oidc::{Agent, TestOp, arno_with, denied_logins, free_port, me, node_op, through_the_op};
use crate::scim::scim;
use crate::support::TestApp;

/// An Arno whose only provider is the real OpenID provider on `port` (client `arno`).
async fn arno_for_real_op(port: u16, extra: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[oidc]]\nid = \"corp\"\nname = \"Corp\"\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"arno\"\n\
         client_secret = \"arno-secret\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n{extra}\n"
    );
    let file = dir.path().join("arno.toml");
    std::fs::write(&file, toml).unwrap();
    let app = TestApp::start_with(&[("ARNO_CONFIG", file.to_str().unwrap())]).await;
    (app, dir)
}

async fn provision(app: &TestApp, token: &str, email: &str) -> String {
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": email,
                      "emails": [{"value": email, "type": "work", "primary": true}], "displayName": "Provisioned"});
    let r = scim(app, token, Method::POST, "/Users", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_owned()
}

/// Sign in at the real OP as `account`; the agent and Arno's answer at the callback.
async fn sign_in_as(app: &TestApp, issuer: &str, account: &str) -> (Agent, crate::support::Page) {
    let op_client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut agent = Agent::new();
    let start = agent.get(&app.url("/auth/oidc/corp/login")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.text);
    let callback = through_the_op(&op_client, issuer, start.header("location").unwrap(), account).await;
    let done = agent.get(&callback).await;
    (agent, done)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.state.db.pool()).await.unwrap();
    n
}

#[tokio::test]
async fn an_unverified_idp_address_does_not_claim_a_provisioned_account() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (app, _dir) = arno_for_real_op(port, "").await;
    let callback = app.url("/auth/oidc/corp/callback");
    let Some(_op) = node_op(port, &[callback.clone(), callback]) else { return };
    let token = app.scim_token().await.unwrap();
    // IT provisioned Ann; someone at the IdP holds her address without having proven it.
    let ann = provision(&app, &token, "unverified-ann@corp.example").await;

    let (_agent, r) = sign_in_as(&app, &issuer, "unverified-ann").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("has not verified"), "{}", r.text);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM user_identities").await, 0, "nothing was linked");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1, "no second account either");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 0);
    assert!(denied_logins(&app).await.iter().any(|i| i.contains("has not verified")), "the refusal is audited");
    assert!(
        !denied_logins(&app).await.iter().any(|i| i.contains("unverified-ann@")),
        "the audit record does not hold the address"
    );

    // A verified address still links to the account provisioned for it.
    let carol = provision(&app, &token, "carol@corp.example").await;
    let (agent, r) = sign_in_as(&app, &issuer, "carol").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(me(&app, &agent).await["id"], carol);
    assert_ne!(carol, ann);

    // An operator who knows the IdP's addresses are all checked says so; then Ann is linked.
    let port2 = free_port();
    let issuer2 = format!("http://127.0.0.1:{port2}");
    let (app2, _dir2) = arno_for_real_op(port2, "assume_email_verified = true").await;
    let callback2 = app2.url("/auth/oidc/corp/callback");
    let Some(_op2) = node_op(port2, &[callback2.clone(), callback2]) else { return };
    let token2 = app2.scim_token().await.unwrap();
    let ann2 = provision(&app2, &token2, "unverified-ann@corp.example").await;
    let (agent, r) = sign_in_as(&app2, &issuer2, "unverified-ann").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(me(&app2, &agent).await["id"], ann2);
}

#[tokio::test]
async fn an_id_token_without_email_verified_does_not_claim_a_provisioned_account() {
    // Microsoft Entra ID sends no `email_verified` at all: that is not a yes.
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let token = app.scim_token().await.unwrap();
    provision(&app, &token, "ann@corp.example").await;
    op.set(|s| {
        s.sub = "ann-sub".into();
        s.email = "ann@corp.example".into();
        s.email_verified = None;
        s.groups = vec![];
    });
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM user_identities").await, 0);
    op.set(|s| s.email_verified = Some(false));
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM user_identities").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
}

//! Single sign-on against an OpenID provider the tests control: it mints ID tokens on demand, so
//! every validation rule can be broken on purpose, keys can rotate, and logout tokens can be sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use reqwest::StatusCode;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, sha2::Sha256};
use serde_json::{Value, json};

use crate::support::{TestApp, client, read};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key(n: u8) -> RsaPrivateKey {
    let pem =
        std::fs::read_to_string(format!("{}/tests/fixtures/oidc-key-{n}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
    RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
}

/// How the next ID token is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mint {
    Good,
    WrongIssuer,
    WrongAudience,
    NoSub,
    NoIat,
    Expired,
    OldIat,
    AlgNone,
    BadSignature,
    WrongNonce,
    /// Signed with key 2 (kid `k2`), whether or not it is published.
    SecondKey,
    /// Signed with key 2 under a kid nobody publishes.
    UnknownKid,
    /// No groups in the ID token: Arno must ask userinfo.
    GroupsOnlyInUserinfo,
}

pub struct OpState {
    pub issuer: String,
    /// What the discovery document claims the issuer is (to test the exact-match rule).
    pub discovery_issuer: Option<String>,
    pub mint: Mint,
    pub publish_second_key: bool,
    pub jwks_fetches: usize,
    pub sub: String,
    pub email: String,
    /// The ID token's `email_verified` claim (`None`: the claim is left out, as Entra does).
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
    pub userinfo_sub: Option<String>,
    codes: HashMap<String, (String, String)>,
    keys: [RsaPrivateKey; 2],
}

#[derive(Clone)]
pub struct TestOp {
    pub base: String,
    pub state: Arc<Mutex<OpState>>,
}

impl TestOp {
    pub async fn start() -> TestOp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(OpState {
            issuer: base.clone(),
            discovery_issuer: None,
            mint: Mint::Good,
            publish_second_key: false,
            jwks_fetches: 0,
            sub: "user-123".into(),
            email: "grace@corp.example".into(),
            email_verified: Some(true),
            groups: vec!["arno-admins".into(), "design-team".into()],
            userinfo_sub: None,
            codes: HashMap::new(),
            keys: [key(1), key(2)],
        }));
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestOp { base, state }
    }

    pub fn set(&self, f: impl FnOnce(&mut OpState)) {
        f(&mut self.state.lock().unwrap());
    }

    /// A signed JWT with these claims (key 1, kid `k1`).
    pub fn sign(&self, claims: &Value) -> String {
        let st = self.state.lock().unwrap();
        jwt(&st.keys[0], "k1", claims)
    }
}

fn jwt(key: &RsaPrivateKey, kid: &str, claims: &Value) -> String {
    let header = b64(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string().as_bytes());
    let body = b64(claims.to_string().as_bytes());
    let message = format!("{header}.{body}");
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(message.as_bytes()).to_vec();
    format!("{message}.{}", b64(&signature))
}

fn jwk(key: &RsaPrivateKey, kid: &str) -> Value {
    let public = key.to_public_key();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())})
}

async fn discovery(State(st): State<Arc<Mutex<OpState>>>) -> axum::Json<Value> {
    let st = st.lock().unwrap();
    let base = &st.issuer;
    axum::Json(json!({
        "issuer": st.discovery_issuer.clone().unwrap_or_else(|| base.clone()),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "backchannel_logout_supported": true,
    }))
}

async fn jwks(State(st): State<Arc<Mutex<OpState>>>) -> axum::Json<Value> {
    let mut st = st.lock().unwrap();
    st.jwks_fetches += 1;
    let mut keys = vec![jwk(&st.keys[0], "k1")];
    if st.publish_second_key {
        keys.push(jwk(&st.keys[1], "k2"));
    }
    axum::Json(json!({"keys": keys}))
}

async fn authorize(State(st): State<Arc<Mutex<OpState>>>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "PKCE S256 is used");
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    let code = uuid::Uuid::new_v4().to_string();
    let mut st = st.lock().unwrap();
    st.codes.insert(code.clone(), (q["nonce"].clone(), q["code_challenge"].clone()));
    let url = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    Redirect::to(&url).into_response()
}

async fn token(State(st): State<Arc<Mutex<OpState>>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut st = st.lock().unwrap();
    let Some((nonce, challenge)) = st.codes.remove(&f["code"]) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    };
    use rsa::sha2::Digest as _;
    let expected = b64(&Sha256::digest(f["code_verifier"].as_bytes()));
    assert_eq!(expected, challenge, "the PKCE verifier matches the challenge");
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": st.issuer, "sub": st.sub, "aud": "arno", "exp": now + 300, "iat": now, "nonce": nonce,
        "email": st.email, "email_verified": st.email_verified, "name": "Grace Hopper", "preferred_username": "grace",
        "groups": st.groups,
    });
    if st.email_verified.is_none() {
        claims.as_object_mut().unwrap().remove("email_verified");
    }
    let mut kid = "k1";
    let mut key_index = 0;
    match st.mint {
        Mint::Good => {}
        Mint::WrongIssuer => claims["iss"] = json!("https://evil.example"),
        Mint::WrongAudience => claims["aud"] = json!("someone-else"),
        Mint::NoSub => drop(claims.as_object_mut().unwrap().remove("sub")),
        Mint::NoIat => drop(claims.as_object_mut().unwrap().remove("iat")),
        Mint::Expired => {
            claims["exp"] = json!(now - 600);
            claims["iat"] = json!(now - 900);
        }
        Mint::OldIat => claims["iat"] = json!(now - 3600),
        Mint::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
        Mint::SecondKey => {
            kid = "k2";
            key_index = 1;
        }
        Mint::UnknownKid => {
            kid = "k9";
            key_index = 1;
        }
        Mint::GroupsOnlyInUserinfo => drop(claims.as_object_mut().unwrap().remove("groups")),
        Mint::AlgNone | Mint::BadSignature => {}
    }
    let mut id_token = jwt(&st.keys[key_index], kid, &claims);
    if st.mint == Mint::AlgNone {
        let header = b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes());
        let body = id_token.split('.').nth(1).unwrap().to_owned();
        id_token = format!("{header}.{body}.");
    }
    if st.mint == Mint::BadSignature {
        // A valid signature by key 2 presented as key 1's.
        let other = jwt(&st.keys[1], "k1", &claims);
        let parts: Vec<&str> = id_token.split('.').collect();
        id_token = format!("{}.{}.{}", parts[0], parts[1], other.split('.').nth(2).unwrap());
    }
    axum::Json(json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}

async fn userinfo(State(st): State<Arc<Mutex<OpState>>>) -> axum::Json<Value> {
    let st = st.lock().unwrap();
    axum::Json(json!({"sub": st.userinfo_sub.clone().unwrap_or_else(|| st.sub.clone()), "groups": st.groups}))
}

/// An Arno configured with `providers` (id, issuer, extra TOML lines).
pub async fn arno_with(providers: &[(&str, &str, &str)], extra_env: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (id, issuer, extra) in providers {
        toml.push_str(&format!(
            "[[oidc]]\nid = \"{id}\"\nname = \"Corp {id}\"\nissuer = \"{issuer}\"\nclient_id = \"arno\"\nclient_secret = \"secret-{id}\"\n{extra}\n\
             [oidc.org_roles]\n\"arno-admins\" = \"admin\"\n\"arno-auditors\" = \"auditor\"\n\
             [oidc.project_roles]\n\"design-team\" = [\"checkout:maker\"]\n\n"
        ));
    }
    let file = dir.path().join("arno.toml");
    std::fs::write(&file, toml).unwrap();
    let mut env: Vec<(&str, &str)> = vec![("ARNO_CONFIG", file.to_str().unwrap())];
    env.extend_from_slice(extra_env);
    let app = TestApp::start_with(&env).await;
    (app, dir)
}

/// A browser-less user agent: follows Arno's and the OP's redirects by hand, keeping Arno's cookies.
pub struct Agent {
    pub cookies: HashMap<String, String>,
}

impl Agent {
    pub fn new() -> Agent {
        Agent { cookies: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn get(&mut self, url: &str) -> crate::support::Page {
        let r = client().get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        for value in r.headers().get_all("set-cookie") {
            let (pair, _) = value.to_str().unwrap().split_once(';').unwrap_or((value.to_str().unwrap(), ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k)
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned())
            };
        }
        read(r).await
    }

    /// Start at Arno's login for `provider`, through the OP, back to the callback; returns the
    /// callback's answer.
    pub async fn sign_in(&mut self, app: &TestApp, provider: &str) -> crate::support::Page {
        let start = self.get(&app.url(&format!("/auth/oidc/{provider}/login?next=/projects"))).await;
        if start.status != StatusCode::SEE_OTHER {
            return start;
        }
        let at_op = self.get(&start.header("location").unwrap()).await;
        assert_eq!(at_op.status, StatusCode::SEE_OTHER, "{}", at_op.text);
        self.get(&at_op.header("location").unwrap()).await
    }
}

pub async fn me(app: &TestApp, agent: &Agent) -> Value {
    let r = client().get(app.url("/api/v1/me")).header("cookie", agent.cookie_header()).send().await.unwrap();
    read(r).await.json()
}

pub async fn denied_logins(app: &TestApp) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'auth.login' AND outcome = 'denied' ORDER BY seq",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(i,)| i).collect()
}

#[tokio::test]
async fn sign_in_creates_the_user_and_maps_groups_on_every_login() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "groups_claim = \"groups\"")], &[]).await;
    let admin = app.create_admin().await;
    // A project the design-team group grants.
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let token = arno::auth::tokens::create(&mut conn, &admin.id, "t", None).await.unwrap().1;
    drop(conn);
    let r = crate::support::api(
        reqwest::Method::POST,
        &app.url("/api/v1/projects"),
        Some(&token),
        Some(json!({"name": "Checkout"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // The login page offers the provider.
    let page = Agent::new().get(&app.url("/login")).await;
    assert_eq!(page.select_attr("ul.sso a", "href").as_deref(), Some("/auth/oidc/corp/login?next=%2F"));

    let mut agent = Agent::new();
    let done = agent.sign_in(&app, "corp").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.header("location").as_deref(), Some("/projects"));
    let me1 = me(&app, &agent).await;
    assert_eq!(me1["email"], "grace@corp.example");
    assert_eq!(me1["handle"], "grace");
    assert_eq!(me1["org_role"], "admin");
    let members =
        crate::support::api(reqwest::Method::GET, &app.url("/api/v1/projects/checkout/members"), Some(&token), None)
            .await
            .json();
    assert!(
        members.as_array().unwrap().iter().any(|m| m["email"] == "grace@corp.example" && m["role"] == "maker"),
        "{members}"
    );

    // Groups change at the IdP: the next sign-in applies them; same user (issuer + sub), even with a new e-mail.
    op.set(|s| {
        s.groups = vec!["arno-auditors".into()];
        s.email = "grace.hopper@corp.example".into();
    });
    let mut again = Agent::new();
    assert_eq!(again.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    let me2 = me(&app, &again).await;
    assert_eq!((me2["id"].clone(), me2["org_role"].clone()), (me1["id"].clone(), json!("auditor")));
    let members =
        crate::support::api(reqwest::Method::GET, &app.url("/api/v1/projects/checkout/members"), Some(&token), None)
            .await
            .json();
    assert!(
        !members.as_array().unwrap().iter().any(|m| m["email"] == "grace@corp.example"),
        "IdP grant withdrawn: {members}"
    );
    let (roles,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'user.role'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(roles, 2, "member → admin, then admin → auditor");

    // A different subject with the same e-mail as an existing (local) account is not merged.
    op.set(|s| {
        s.sub = "someone-else".into();
        s.email = "ada@example.com".into();
    });
    let mut intruder = Agent::new();
    let r = intruder.sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("already exists"));
}

#[tokio::test]
async fn every_invalid_id_token_is_rejected() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    for mint in [
        Mint::WrongIssuer,
        Mint::WrongAudience,
        Mint::NoSub,
        Mint::NoIat,
        Mint::Expired,
        Mint::OldIat,
        Mint::AlgNone,
        Mint::BadSignature,
        Mint::WrongNonce,
        Mint::SecondKey,
    ] {
        op.set(|s| s.mint = mint);
        let mut agent = Agent::new();
        let r = agent.sign_in(&app, "corp").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{mint:?} was accepted: {}", r.text);
        assert!(r.text.contains("could not be trusted"), "{mint:?}: {}", r.text);
        assert!(!agent.cookies.contains_key("arno_session"), "{mint:?}");
    }
    assert_eq!(app.refusals("action = 'auth.login'").await, 10, "every rejection is audited");

    // userinfo answering for another subject.
    op.set(|s| {
        s.mint = Mint::GroupsOnlyInUserinfo;
        s.userinfo_sub = Some("not-user-123".into());
    });
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // …and the same request with a matching subject reads the groups from userinfo.
    op.set(|s| s.userinfo_sub = None);
    let mut agent = Agent::new();
    assert_eq!(agent.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &agent).await["org_role"], "admin");
}

#[tokio::test]
async fn key_rotation_is_picked_up_once_and_rate_limited() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let mut agent = Agent::new();
    assert_eq!(agent.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    let fetches = op.state.lock().unwrap().jwks_fetches;
    assert_eq!(fetches, 1, "keys come with discovery");

    // The IdP rotates to key 2: the unknown kid triggers one re-fetch, and sign-in works.
    op.set(|s| {
        s.publish_second_key = true;
        s.mint = Mint::SecondKey;
    });
    let mut rotated = Agent::new();
    let r = rotated.sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(op.state.lock().unwrap().jwks_fetches, 2);
    assert_eq!(me(&app, &rotated).await["email"], "grace@corp.example");

    // Another unknown kid right after: no second re-fetch within the interval, so it is refused.
    op.set(|s| s.mint = Mint::UnknownKid);
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(op.state.lock().unwrap().jwks_fetches, 2, "rate-limited");
}

#[tokio::test]
async fn mix_up_replay_other_browser_and_unavailable_idp() {
    let op = TestOp::start().await;
    let other = TestOp::start().await;
    let (app, _dir) =
        arno_with(&[("corp", &op.base, ""), ("partner", &other.base, ""), ("down", "http://127.0.0.1:9", "")], &[])
            .await;

    // A response for `corp` delivered to `partner`'s callback.
    let mut agent = Agent::new();
    let start = agent.get(&app.url("/auth/oidc/corp/login")).await;
    let at_op = agent.get(&start.header("location").unwrap()).await;
    let callback = at_op.header("location").unwrap().replace("/auth/oidc/corp/", "/auth/oidc/partner/");
    let r = agent.get(&callback).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Replaying the genuine callback afterwards: the state was used up.
    let r = agent.get(&at_op.header("location").unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("expired or was already used"), "{}", r.text);

    // A callback from another browser (no pre-auth cookie).
    let mut victim = Agent::new();
    let start = victim.get(&app.url("/auth/oidc/corp/login")).await;
    let at_op = victim.get(&start.header("location").unwrap()).await;
    let r = Agent::new().get(&at_op.header("location").unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.text.contains("arno_session"));

    // The IdP refuses (user cancelled).
    let r = Agent::new()
        .get(&app.url("/auth/oidc/corp/callback?error=access_denied&error_description=User+cancelled"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("User cancelled"));

    // An IdP that is down: a page that says so, not a 500.
    let r = Agent::new().get(&app.url("/auth/oidc/down/login")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("Corp down is unavailable"), "{}", r.text);

    // Discovery that names another issuer is refused.
    op.set(|s| s.discovery_issuer = Some("https://impostor.example".into()));
    let (app2, _dir2) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let r = Agent::new().get(&app2.url("/auth/oidc/corp/login")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    // Unknown provider.
    assert_eq!(Agent::new().get(&app.url("/auth/oidc/nope/login")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strict_mapping_and_disabled_password_login() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "strict = true")], &[("ARNO_AUTH_LOCAL_LOGIN", "false")]).await;
    op.set(|s| s.groups = vec!["nothing-useful".into()]);
    let r = Agent::new().sign_in(&app, "corp").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("not in any group"));
    let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(users, 0, "nothing is created for a refused sign-in");

    // No password form; posting one anyway is refused and audited.
    let page = Agent::new().get(&app.url("/login")).await;
    assert!(
        page.select_text("#password").is_none()
            && page.html().select(&scraper::Selector::parse("input[name=password]").unwrap()).next().is_none()
    );
    let mut b = crate::support::Browser::new(&app.base);
    b.get("/login").await;
    let csrf = arno::http::csrf::token_for(&app.state.keys.csrf, &b.cookies["arno_csrf"]);
    let r = b
        .post_form("/login", &[("csrf_token", &csrf), ("email", "x@example.com"), ("password", "whatever whatever")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(denied_logins(&app).await.iter().any(|i| i.contains("local_login_disabled")));
}

#[tokio::test]
async fn logout_ends_the_idp_session_and_backchannel_logout_kills_sessions() {
    let op = TestOp::start().await;
    let (app, _dir) = arno_with(&[("corp", &op.base, "")], &[]).await;
    let mut agent = Agent::new();
    assert_eq!(agent.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);
    let mut second = Agent::new();
    assert_eq!(second.sign_in(&app, "corp").await.status, StatusCode::SEE_OTHER);

    // RP-initiated logout: Arno's session ends, then the browser goes to the IdP's end-session endpoint.
    let csrf = {
        let home = agent.get(&app.url("/")).await;
        home.csrf()
    };
    let r = client()
        .post(app.url("/logout"))
        .header("cookie", agent.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
        .header("origin", app.base.clone())
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let r = read(r).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let location = r.header("location").unwrap();
    assert!(location.starts_with(&format!("{}/logout?id_token_hint=", op.base)), "{location}");
    assert!(location.contains("post_logout_redirect_uri="));
    assert_eq!(me(&app, &agent).await["code"], "unauthorized");

    // Back-channel logout: bad tokens are refused, a good one ends every session of the subject.
    let now = chrono::Utc::now().timestamp();
    let good = json!({"iss": op.base, "aud": "arno", "iat": now, "jti": "j1", "sub": "user-123",
                      "events": {"http://schemas.openid.net/event/backchannel-logout": {}}});
    let url = app.url("/auth/oidc/corp/backchannel-logout");
    let post = |token: String| {
        let url = url.clone();
        async move { read(client().post(url).form(&[("logout_token", token)]).send().await.unwrap()).await }
    };
    let mut bad = vec![];
    for (field, value) in [
        ("aud", json!("other")),
        ("iss", json!("https://evil.example")),
        ("iat", json!(now - 3600)),
        ("nonce", json!("n")),
        ("events", json!({})),
        ("sub", Value::Null),
    ] {
        let mut claims = good.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value;
        }
        bad.push((field, op.sign(&claims)));
    }
    let forged = {
        let token = op.sign(&good);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[2] = b64(b"not a signature");
        parts.join(".")
    };
    bad.push(("signature", forged));
    for (what, token) in bad {
        let r = post(token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    }
    assert_eq!(me(&app, &second).await["email"], "grace@corp.example", "still signed in");
    let r = post(op.sign(&good)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(me(&app, &second).await["code"], "unauthorized", "the other session ended too");
}

// ---------------------------------------------------------------------------------------------
// A real OpenID provider: panva/oidc-provider (npm), two clients, dev login and consent pages.

pub struct NodeOp {
    child: std::process::Child,
    issuer: String,
}

impl Drop for NodeOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn node_op(port: u16, redirects: &[String]) -> Option<NodeOp> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
    if !dir.join("node_modules/oidc-provider").exists() {
        assert!(
            std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "tests/oidc-provider has no node_modules (run npm ci there)"
        );
        eprintln!("skipping: tests/oidc-provider/node_modules is missing");
        return None;
    }
    let mut child = std::process::Command::new("node")
        .arg(dir.join("op.mjs"))
        .env("PORT", port.to_string())
        .env("REDIRECTS", redirects.join(","))
        .env("NODE_ENV", "test")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    use std::io::BufRead as _;
    let stdout = child.stdout.take()?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines.next()?.ok()?;
    let issuer = ready.strip_prefix("READY ")?.to_owned();
    // Keep draining its output: a closed pipe would kill it at its next log line.
    std::thread::spawn(move || for _ in lines {});
    Some(NodeOp { child, issuer })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Log in at the OP's dev pages as `account` and consent; returns Arno's callback URL.
pub async fn through_the_op(op_client: &reqwest::Client, issuer: &str, mut url: String, account: &str) -> String {
    for _ in 0..12 {
        if !url.starts_with(issuer) {
            return url;
        }
        let r = op_client.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            let next = r.headers()["location"].to_str().unwrap().to_owned();
            url = if next.starts_with('/') { format!("{issuer}{next}") } else { next };
            continue;
        }
        let html = r.text().await.unwrap();
        let doc = scraper::Html::parse_document(&html);
        let form =
            doc.select(&scraper::Selector::parse("form").unwrap()).next().unwrap_or_else(|| panic!("no form: {html}"));
        let action = form.value().attr("action").unwrap();
        let action = if action.starts_with('/') { format!("{issuer}{action}") } else { action.to_owned() };
        let mut fields: Vec<(String, String)> = form
            .select(&scraper::Selector::parse("input[type=hidden]").unwrap())
            .filter_map(|i| {
                Some((i.value().attr("name")?.to_owned(), i.value().attr("value").unwrap_or("").to_owned()))
            })
            .collect();
        if html.contains("name=\"login\"") {
            fields.push(("login".into(), account.into()));
            fields.push(("password".into(), "any password".into()));
        }
        let r = op_client.post(&action).form(&fields).send().await.unwrap();
        assert!(r.status().is_redirection(), "{} at {action}", r.status());
        let next = r.headers()["location"].to_str().unwrap().to_owned();
        url = if next.starts_with('/') { format!("{issuer}{next}") } else { next };
    }
    panic!("the OP never sent the browser back");
}

#[tokio::test]
async fn a_real_openid_provider_signs_users_in_with_mapped_roles() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[oidc]]\nid = \"corp\"\nname = \"Corp\"\nissuer = \"{issuer}\"\nclient_id = \"arno\"\nclient_secret = \"arno-secret\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n\
         [oidc.org_roles]\n\"arno-admins\" = \"admin\"\n[oidc.project_roles]\n\"design-team\" = [\"checkout:editor\"]\n\n\
         [[oidc]]\nid = \"second\"\nname = \"Second\"\nissuer = \"{issuer}\"\nclient_id = \"arno-second\"\nclient_secret = \"second-secret\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n"
    );
    let file = dir.path().join("arno.toml");
    std::fs::write(&file, toml).unwrap();
    let app = TestApp::start_with(&[("ARNO_CONFIG", file.to_str().unwrap())]).await;
    let redirects = [app.url("/auth/oidc/corp/callback"), app.url("/auth/oidc/second/callback")];
    let Some(op) = node_op(port, &redirects) else { return };
    assert_eq!(op.issuer, issuer);

    let op_client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut agent = Agent::new();
    let start = agent.get(&app.url("/auth/oidc/corp/login?next=/projects")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.text);
    let callback = through_the_op(&op_client, &issuer, start.header("location").unwrap(), "alice").await;
    let done = agent.get(&callback).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let alice = me(&app, &agent).await;
    assert_eq!(
        (alice["email"].as_str(), alice["org_role"].as_str(), alice["handle"].as_str()),
        (Some("alice@corp.example"), Some("admin"), Some("alice"))
    );

    // The second client of the same issuer: the same person, the same Arno user.
    let mut agent2 = Agent::new();
    let start = agent2.get(&app.url("/auth/oidc/second/login")).await;
    let callback = through_the_op(&op_client, &issuer, start.header("location").unwrap(), "alice").await;
    assert_eq!(agent2.get(&callback).await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &agent2).await["id"], alice["id"]);

    // Another account: not in the admin group.
    let other_client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut bob = Agent::new();
    let start = bob.get(&app.url("/auth/oidc/corp/login")).await;
    let callback = through_the_op(&other_client, &issuer, start.header("location").unwrap(), "bob").await;
    assert_eq!(bob.get(&callback).await.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &bob).await["org_role"], "member");
}

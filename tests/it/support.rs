//! Test harness: a fresh app (own data dir, own database) per test, and a small browser that
//! keeps cookies and reads CSRF tokens from pages.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use arno::app::{self, AppState};
use arno::config::Config;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use scraper::{Html, Selector};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "ada@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

fn require_services() -> bool {
    std::env::var("TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub fn is_postgres() -> bool {
    std::env::var("TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A database URL for a brand-new, empty database on the backend under test.
pub async fn fresh_database_url(dir: &Path) -> String {
    if !is_postgres() {
        return format!("sqlite://{}", dir.join("arno.db").display());
    }
    let admin = std::env::var("TEST_PG_URL").expect("TEST_DATABASE=postgres needs TEST_PG_URL");
    sqlx::any::install_default_drivers();
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
    let name = format!("arno_t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The S3 endpoint and bucket of the test S3 server, or `None` to skip.
pub fn s3_endpoint() -> Option<(String, String)> {
    match (std::env::var("TEST_S3_ENDPOINT"), std::env::var("TEST_S3_BUCKET")) {
        (Ok(e), Ok(b)) => Some((e, b)),
        _ => {
            assert!(!require_services(), "TEST_REQUIRE_SERVICES=1 but TEST_S3_ENDPOINT/TEST_S3_BUCKET are unset");
            eprintln!("skipping: no S3 server (set TEST_S3_ENDPOINT and TEST_S3_BUCKET)");
            None
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub metrics_base: String,
    pub state: AppState,
    pub setup_token: Option<String>,
    pub env: BTreeMap<String, String>,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(&[]).await
    }

    /// A new SCIM token, as `arno admin scim-token` on the host makes one.
    pub async fn scim_token(&self) -> Result<String, arno::error::AppError> {
        let secret = arno::keys::load_or_create(&self.state.config).expect("the instance secret");
        let operator = arno::keys::check_fingerprint(&self.state.db, &secret).await.expect("the same secret");
        let by = arno::auth::scim::TokenRotation::HostOperator(&operator);
        arno::auth::scim::rotate_token(&self.state.db, &self.state.keys, by, &arno::audit::Origin::default()).await
    }

    /// Start with extra `ARNO_*` settings (applied on top of the per-test defaults).
    pub async fn start_with(extra: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let maddr = metrics_listener.local_addr().unwrap();
        let mut env = BTreeMap::new();
        env.insert("ARNO_CONFIG".to_owned(), String::new());
        env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
        env.insert("ARNO_LISTEN".to_owned(), addr.to_string());
        env.insert("ARNO_METRICS_LISTEN".to_owned(), maddr.to_string());
        env.insert("ARNO_DATABASE_URL".to_owned(), fresh_database_url(dir.path()).await);
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::load(&env).expect("test config is valid").config;
        let app = app::build(config).await.expect("app builds");
        let state = app.state.clone();
        let setup_token = app.setup_token.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(app, listener, metrics_listener, async {
            let _ = stopped.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            metrics_base: format!("http://{maddr}"),
            state,
            setup_token,
            env,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stop serving but keep the data directory and database (for another process to use).
    pub async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stop the server and start it again on the same data directory and database (new ports):
    /// what a restart of the process does.
    pub async fn restart(&mut self) {
        self.halt().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, maddr) = (listener.local_addr().unwrap(), metrics_listener.local_addr().unwrap());
        self.env.insert("ARNO_LISTEN".to_owned(), addr.to_string());
        self.env.insert("ARNO_METRICS_LISTEN".to_owned(), maddr.to_string());
        let config = Config::load(&self.env).expect("test config is valid").config;
        let app = app::build(config).await.expect("app builds");
        self.state = app.state.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(app::serve(app, listener, metrics_listener, async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
        self.base = format!("http://{addr}");
        self.metrics_base = format!("http://{maddr}");
    }

    /// Stop serving and wait for the graceful shutdown to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub async fn create_user(&self, email: &str, password: &str, role: arno::auth::OrgRole) -> arno::auth::User {
        arno::auth::create_local_user(
            &self.state.db,
            arno::auth::NewLocalUser { email, name: "Ada Lovelace", password: password.to_owned(), org_role: role },
            arno::audit::Actor::System,
            &arno::audit::Origin::system(),
        )
        .await
        .expect("create user")
    }

    pub async fn create_admin(&self) -> arno::auth::User {
        self.create_user(ADMIN_EMAIL, ADMIN_PASSWORD, arno::auth::OrgRole::Admin).await
    }

    /// A browser signed in as the admin.
    pub async fn admin_browser(&self) -> Browser {
        self.create_admin().await;
        let mut b = Browser::new(&self.base);
        let r = b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        b
    }

    /// A user with a personal API token.
    pub async fn user_with_token(&self, email: &str, role: arno::auth::OrgRole) -> (arno::auth::User, String) {
        let user = self.create_user(email, "a long enough password", role).await;
        let mut conn = self.state.db.pool().acquire().await.unwrap();
        let token = arno::auth::tokens::create(&mut conn, &user.id, "test", None).await.unwrap().1;
        (user, token)
    }

    /// How many refusals the audit log holds where `condition` (SQL over `audit_events`) holds,
    /// counting the repeats folded into one record (flushed first).
    pub async fn refusals(&self, condition: &str) -> i64 {
        arno::audit::flush_denials(&self.state.db, true).await.unwrap();
        let sql = format!("SELECT intent FROM audit_events WHERE outcome = 'denied' AND ({condition})");
        let rows: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(self.state.db.pool()).await.unwrap();
        rows.iter()
            .map(|(intent,)| {
                let intent: serde_json::Value = serde_json::from_str(intent).unwrap();
                intent["repeated"].as_i64().unwrap_or(1)
            })
            .sum()
    }

    pub async fn exec(&self, sql: &str) -> u64 {
        sqlx::query(sql).execute(self.state.db.pool()).await.unwrap().rows_affected()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response, read to the end.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn html(&self) -> Html {
        Html::parse_document(&self.text)
    }

    /// Text of the first element matching `selector`.
    pub fn select_text(&self, selector: &str) -> Option<String> {
        let sel = Selector::parse(selector).unwrap();
        self.html().select(&sel).next().map(|e| e.text().collect::<String>().trim().to_owned())
    }

    pub fn select_attr(&self, selector: &str, attr: &str) -> Option<String> {
        let sel = Selector::parse(selector).unwrap();
        self.html().select(&sel).next().and_then(|e| e.value().attr(attr)).map(str::to_owned)
    }

    /// What a browser would submit from the form `form` (text fields, checked boxes, selected
    /// options, textareas; no buttons), in document order.
    pub fn form_fields(&self, form: &str) -> Vec<(String, String)> {
        let html = self.html();
        let form = html.select(&Selector::parse(form).unwrap()).next().expect("form on the page");
        let mut out = vec![];
        for e in form.select(&Selector::parse("input[name], select[name], textarea[name]").unwrap()) {
            let v = e.value();
            let name = v.attr("name").unwrap().to_owned();
            match v.name() {
                "input" if matches!(v.attr("type"), Some("checkbox" | "radio")) => {
                    if v.attr("checked").is_some() {
                        out.push((name, v.attr("value").unwrap_or("on").to_owned()));
                    }
                }
                "input" => out.push((name, v.attr("value").unwrap_or_default().to_owned())),
                "select" => {
                    let option = Selector::parse("option").unwrap();
                    let options: Vec<_> = e.select(&option).collect();
                    let chosen = options.iter().find(|o| o.value().attr("selected").is_some()).or(options.first());
                    out.push((name, chosen.and_then(|o| o.value().attr("value")).unwrap_or_default().to_owned()));
                }
                _ => out.push((
                    name,
                    e.text()
                        .collect::<String>()
                        .strip_prefix('\n')
                        .map(str::to_owned)
                        .unwrap_or_else(|| e.text().collect()),
                )),
            }
        }
        out
    }

    pub fn csrf(&self) -> String {
        self.select_attr("input[name=csrf_token]", "value").expect("page has a CSRF field")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }
}

pub async fn read(r: reqwest::Response) -> Page {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Page { status, headers, text }
}

/// A cookie-keeping client that behaves like a same-origin browser.
pub struct Browser {
    base: String,
    pub cookies: HashMap<String, String>,
    client: reqwest::Client,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser { base: base.to_owned(), cookies: HashMap::new(), client: client() }
    }

    fn cookie_header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let s: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(HeaderValue::from_str(&s.join("; ")).unwrap())
    }

    fn absorb(&mut self, page: &Page) {
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Page {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let page = read(req.send().await.unwrap()).await;
        self.absorb(&page);
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.request(Method::GET, path, &[], None, None).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_form_with(path, fields, &[]).await
    }

    pub async fn post_form_with(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        self.request(Method::POST, path, headers, Some(body.into()), Some("application/x-www-form-urlencoded")).await
    }

    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Page {
        self.request(method, path, headers, Some(body.to_string().into()), Some("application/json")).await
    }

    /// Sign in through the login form, like a person would.
    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text);
        let csrf = form.csrf();
        self.post_form("/login", &[("csrf_token", &csrf), ("email", email), ("password", password)]).await
    }

    /// The CSRF token of the signed-in session, as pages embed it.
    pub async fn session_csrf(&mut self) -> String {
        let home = self.get("/").await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.text);
        home.csrf()
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies.get("arno_session").cloned()
    }
}

/// A plain API call with an optional bearer token.
pub async fn api(method: Method, url: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Page {
    let mut req = client().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.unwrap()).await
}

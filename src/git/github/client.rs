//! One connection's HTTP client: TLS with the system roots plus the connection's own CA bundle,
//! calls only to the connection's host (no redirects followed), the App's JWT and cached
//! installation tokens, and a rate governor that keeps Arno inside GitHub's primary and
//! secondary limits (docs/github.md, "Rate limits").
//!
//! GitHub's rules, from its REST documentation: a rate-limited answer is a 403 or a 429; honour
//! `retry-after` when present, else wait for `x-ratelimit-reset` when `x-ratelimit-remaining` is
//! 0, else back off exponentially from one minute. Content-creating requests are serialised
//! and kept under 80 a minute; no more than [`MAX_CONCURRENT`] requests run at once per
//! installation. A wait longer than [`MAX_WAIT`] is not slept through: the call fails with
//! [`GitError::RateLimited`], which the job queue retries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, USER_AGENT};
use rsa::RsaPrivateKey;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use crate::git::{GitError, GitResult};

/// `git_api_requests_total{provider,class,status}`: calls to hosted git providers, by class
/// (`read`, `write`, `graphql`, `token`) and HTTP status (`error` when no answer came).
pub static REQUESTS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("git_api_requests_total", "Requests to hosted git providers, by class and status"),
        &["provider", "class", "status"],
    )
    .expect("valid metric")
});
/// `git_rate_limit_remaining{connection}`: what the provider last said is left of the hour.
pub static RATE_LIMIT_REMAINING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new("git_rate_limit_remaining", "Requests left in the provider's rate-limit window, as last reported"),
        &["connection"],
    )
    .expect("valid metric")
});

/// Requests in flight per installation (GitHub's secondary limit is 100).
pub const MAX_CONCURRENT: usize = 8;
/// Content-creating requests per minute per installation (GitHub's secondary limit is 80).
pub const WRITES_PER_MINUTE: usize = 80;
/// The longest wait for a rate limit a call sleeps through before failing as rate-limited.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// An installation token is renewed this long before GitHub says it expires.
pub const TOKEN_MARGIN_SECS: i64 = 300;
/// The longest answer read (GitHub's blobs go to 100 MB; Arno reads specs and configuration).
pub const MAX_BODY: usize = 128 << 20;
pub(super) const API_VERSION: &str = "2022-11-28";

/// Who a request speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The App itself (its JWT): installations, their tokens, webhook deliveries.
    App,
    /// An installation's token: everything in the installation's repositories.
    Installation(u64),
}

/// An answer, whatever its status: callers give statuses their meaning.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> GitResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| GitError::Upstream(format!("an answer Arno cannot read: {e}")))
    }

    /// GitHub's `message` in an error answer (never logged with secrets: it is GitHub's text).
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    /// The URL of the next page, from the `link` header, if there is one.
    pub fn next_page(&self) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, rel) = part.split_once(';')?;
            rel.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
        })
    }
}

struct Token {
    value: String,
    expires_at: i64,
}

/// One installation's (or the App's) lane through the governor.
struct Lane {
    concurrent: Semaphore,
    writes: Semaphore,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    blocked_until: Option<Instant>,
    /// Consecutive limits without a hint how long to wait: the exponent of the back-off.
    strikes: u32,
    recent_writes: VecDeque<Instant>,
    remaining: Option<i64>,
    reset_at: Option<i64>,
}

/// What the console shows of one lane.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaneReport {
    /// `None` for the App's own calls.
    pub installation: Option<u64>,
    pub remaining: Option<i64>,
    /// Unix seconds.
    pub reset_at: Option<i64>,
    /// Seconds until calls resume, when GitHub asked Arno to wait.
    pub blocked_for_secs: Option<u64>,
}

pub struct Client {
    connection: String,
    pub(super) rest: Url,
    graphql: Url,
    issuer: String,
    /// The App's client id, when the connection has one (the device flow needs it).
    pub(super) client_id: Option<String>,
    key: RsaPrivateKey,
    pub(super) http: reqwest::Client,
    tokens: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("connection", &self.connection).field("rest", &self.rest.as_str()).finish()
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn class_of(auth: Auth, method: &Method, graphql: bool) -> &'static str {
    match (auth, graphql) {
        (_, true) => "graphql",
        (Auth::App, _) => "token",
        _ if *method == Method::GET => "read",
        _ => "write",
    }
}

impl Client {
    /// A client for one connection (`rest` and `graphql` as [`crate::git::connections::api_urls`]
    /// gives them; `ca_bundle` PEM certificates trusted besides the system's).
    pub fn new(
        connection: &str,
        rest: &str,
        graphql: &str,
        issuer: &str,
        key: RsaPrivateKey,
        ca_bundle: Option<&str>,
    ) -> Result<Client, String> {
        let rest = Url::parse(rest).map_err(|e| format!("api_url: {e}"))?;
        let graphql = Url::parse(graphql).map_err(|e| format!("graphql url: {e}"))?;
        if rest.origin() != graphql.origin() {
            return Err("the REST and GraphQL endpoints must be on one host".into());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("arno/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_bundle.filter(|p| !p.trim().is_empty()) {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| format!("ca_bundle: {e}"))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            connection: connection.to_owned(),
            rest,
            graphql,
            issuer: issuer.to_owned(),
            client_id: None,
            key,
            http,
            tokens: Mutex::default(),
            lanes: Mutex::default(),
        })
    }

    /// With the App's client id (for signing users in through the App).
    pub fn with_client_id(mut self, client_id: Option<String>) -> Client {
        self.client_id = client_id;
        self
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// `rest` base plus path segments (each percent-encoded) — the only way a URL is built, so
    /// every call stays on the connection's host.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.rest.clone();
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty();
            for segment in segments {
                path.push(segment);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A URL GitHub handed back (a next page): only followed on the connection's own host.
    pub fn same_host(&self, raw: &str) -> GitResult<Url> {
        let url = Url::parse(raw).map_err(|_| GitError::Upstream("a next-page link Arno cannot read".into()))?;
        if url.origin() != self.rest.origin() || !url.path().starts_with(self.rest.path().trim_end_matches('/')) {
            return Err(GitError::Upstream("a next-page link to another host was not followed".into()));
        }
        Ok(url)
    }

    fn lane(&self, auth: Auth) -> Arc<Lane> {
        let key = match auth {
            Auth::App => 0,
            Auth::Installation(id) => id,
        };
        let mut lanes = self.lanes.lock().expect("lanes lock");
        lanes
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Lane {
                    concurrent: Semaphore::new(MAX_CONCURRENT),
                    writes: Semaphore::new(1),
                    state: Mutex::default(),
                })
            })
            .clone()
    }

    /// The governor's state, lane by lane, for the console.
    pub fn lanes(&self) -> Vec<LaneReport> {
        let lanes = self.lanes.lock().expect("lanes lock");
        let mut out: Vec<LaneReport> = lanes
            .iter()
            .map(|(key, lane)| {
                let s = lane.state.lock().expect("lane lock");
                LaneReport {
                    installation: (*key != 0).then_some(*key),
                    remaining: s.remaining,
                    reset_at: s.reset_at,
                    blocked_for_secs: s
                        .blocked_until
                        .and_then(|t| t.checked_duration_since(Instant::now()))
                        .map(|d| d.as_secs().max(1)),
                }
            })
            .collect();
        out.sort_by_key(|l| l.installation);
        out
    }

    /// How long to wait before this lane may send (a content-creating request also waits for
    /// its per-minute budget).
    fn wait_needed(lane: &Lane, write: bool) -> Option<Duration> {
        let mut s = lane.state.lock().expect("lane lock");
        let now = Instant::now();
        let mut wait = s.blocked_until.and_then(|t| t.checked_duration_since(now));
        if write {
            while s.recent_writes.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                s.recent_writes.pop_front();
            }
            if s.recent_writes.len() >= WRITES_PER_MINUTE {
                let free = *s.recent_writes.front().expect("non-empty") + Duration::from_secs(60) - now;
                wait = Some(wait.map_or(free, |w| w.max(free)));
            }
        }
        wait
    }

    /// Learn from an answer's headers; returns how long to wait when it is a rate limit.
    fn observe(&self, lane: &Lane, response: &Response) -> Option<Duration> {
        let header = |name: &str| response.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<i64>().ok());
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
        let mut s = lane.state.lock().expect("lane lock");
        if let Some(r) = remaining {
            s.remaining = Some(r);
            RATE_LIMIT_REMAINING.with_label_values(&[self.connection.as_str()]).set(r);
        }
        if reset.is_some() {
            s.reset_at = reset;
        }
        let limited = matches!(response.status, 403 | 429)
            && (header("retry-after").is_some()
                || remaining == Some(0)
                || response.message().to_ascii_lowercase().contains("rate limit"));
        if !limited {
            if response.status < 400 {
                s.strikes = 0;
            }
            return None;
        }
        let wait = if let Some(secs) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
            Duration::from_secs(secs)
        } else if let (Some(0), Some(reset)) = (remaining, reset) {
            Duration::from_secs((reset - now_secs()).clamp(0, 3600) as u64 + 1)
        } else {
            let wait = Duration::from_secs(60 << s.strikes.min(4));
            s.strikes += 1;
            wait
        };
        let until = Instant::now() + wait;
        s.blocked_until = Some(s.blocked_until.map_or(until, |t| t.max(until)));
        Some(wait)
    }

    /// The App's JWT, fresh for each call (signing is cheap; it is never stored).
    fn app_jwt(&self) -> String {
        super::app::jwt(&self.issuer, &self.key, now_secs())
    }

    /// An installation's token: cached until [`TOKEN_MARGIN_SECS`] before it expires, renewed
    /// by one caller at a time (the others wait for it).
    async fn installation_token(&self, installation: u64, renew: bool) -> GitResult<String> {
        let slot = {
            let mut tokens = self.tokens.lock().expect("tokens lock");
            tokens.entry(installation).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if renew {
            *slot = None;
        }
        if let Some(token) = slot.as_ref().filter(|t| t.expires_at - TOKEN_MARGIN_SECS > now_secs()) {
            return Ok(token.value.clone());
        }
        #[derive(serde::Deserialize)]
        struct Issued {
            token: String,
            expires_at: String,
        }
        let id = installation.to_string();
        let url = self.url(&["app", "installations", &id, "access_tokens"], &[]);
        let response = self.send(Auth::App, Method::POST, url, Some(Vec::new()), false).await?;
        match response.status {
            201 => {}
            401 => return Err(GitError::Unauthorized(format!("GitHub refused the App's key: {}", response.message()))),
            403 | 404 => {
                return Err(GitError::Unauthorized(format!(
                    "the App is not installed there any more, or the installation is suspended: {}",
                    response.message()
                )));
            }
            _ => return Err(GitError::Upstream(format!("installation token: {}", response.message()))),
        }
        let issued: Issued = response.json()?;
        let expires_at = chrono::DateTime::parse_from_rfc3339(&issued.expires_at)
            .map_err(|_| GitError::Upstream("an installation token without a readable expiry".into()))?
            .timestamp();
        *slot = Some(Token { value: issued.token.clone(), expires_at });
        Ok(issued.token)
    }

    /// One call through the governor: waits its turn, retries what GitHub asks to be retried
    /// soon, renews a token GitHub no longer accepts once. The answer is returned whatever its
    /// status, except a rate limit that would take longer than [`MAX_WAIT`].
    pub async fn send(
        &self,
        auth: Auth,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        graphql: bool,
    ) -> GitResult<Response> {
        if url.origin() != self.rest.origin() {
            return Err(GitError::Invalid("a call outside the connection's host".into()));
        }
        let class = class_of(auth, &method, graphql);
        let write = class == "write";
        let lane = self.lane(auth);
        let (mut renew, mut renewed) = (false, false);
        for attempt in 0..4 {
            if let Some(wait) = Self::wait_needed(&lane, write) {
                if wait > MAX_WAIT || attempt == 3 {
                    return Err(GitError::RateLimited { retry_after_ms: wait.as_millis() as u64 });
                }
                tokio::time::sleep(wait).await;
            }
            let _in_flight = lane.concurrent.acquire().await.expect("semaphore never closed");
            let _write_turn =
                if write { Some(lane.writes.acquire().await.expect("semaphore never closed")) } else { None };
            let credential = match auth {
                Auth::App => self.app_jwt(),
                Auth::Installation(id) => Box::pin(self.installation_token(id, std::mem::take(&mut renew))).await?,
            };
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/vnd.github+json")
                .header("x-github-api-version", API_VERSION)
                .header(USER_AGENT, concat!("arno/", env!("CARGO_PKG_VERSION")))
                .header(AUTHORIZATION, format!("Bearer {credential}"));
            if let Some(body) = &body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            if write {
                lane.state.lock().expect("lane lock").recent_writes.push_back(Instant::now());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    REQUESTS_TOTAL.with_label_values(&["github", class, "error"]).inc();
                    return Err(GitError::Upstream(format!("GitHub did not answer: {}", without_url(&e))));
                }
            };
            let status = response.status().as_u16();
            REQUESTS_TOTAL.with_label_values(&["github", class, &status.to_string()]).inc();
            let headers = response.headers().clone();
            let body = read_limited(response).await?;
            let response = Response { status, headers, body };
            if let Some(wait) = self.observe(&lane, &response) {
                tracing::warn!(connection = %self.connection, status, wait_secs = wait.as_secs(), "GitHub rate limit");
                continue;
            }
            if status == 401 && matches!(auth, Auth::Installation(_)) && !renewed {
                (renew, renewed) = (true, true);
                continue;
            }
            return Ok(response);
        }
        Err(GitError::RateLimited { retry_after_ms: MAX_WAIT.as_millis() as u64 })
    }

    /// A REST call with a JSON body (or none).
    pub async fn call(
        &self,
        auth: Auth,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> GitResult<Response> {
        let url = self.url(segments, query);
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values serialise"));
        self.send(auth, method, url, body, false).await
    }

    /// A GraphQL query as an installation; GraphQL errors are failures.
    pub async fn graphql(
        &self,
        installation: u64,
        query: &str,
        variables: serde_json::Value,
    ) -> GitResult<serde_json::Value> {
        let body = serde_json::to_vec(&serde_json::json!({"query": query, "variables": variables}))
            .expect("JSON values serialise");
        let response =
            self.send(Auth::Installation(installation), Method::POST, self.graphql.clone(), Some(body), true).await?;
        if response.status == 401 {
            return Err(GitError::Unauthorized(response.message()));
        }
        if response.status != 200 {
            return Err(GitError::Upstream(format!("GraphQL: {}", response.message())));
        }
        let mut value: serde_json::Value = response.json()?;
        if let Some(errors) = value.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) {
            let first = errors[0].get("message").and_then(|m| m.as_str()).unwrap_or("an error");
            return Err(GitError::Upstream(format!("GraphQL: {first}")));
        }
        Ok(value.get_mut("data").map(serde_json::Value::take).unwrap_or_default())
    }
}

/// A transport error's text without the URL (which carries nothing secret, but keeps logs short).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind} ({detail})") }
}

pub(super) async fn read_limited(mut response: reqwest::Response) -> GitResult<bytes::Bytes> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GitError::Upstream(format!("GitHub's answer broke off: {}", without_url(&e))))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(GitError::Limit(format!("an answer from GitHub over {} MiB", MAX_BODY >> 20)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_on_the_connection_host_and_encode_segments() {
        let key =
            crate::git::connections::parse_private_key(include_str!("../../../tests/fixtures/github-app-key.pem"))
                .unwrap();
        let c =
            Client::new("c", "https://ghe.example.com/api/v3", "https://ghe.example.com/api/graphql", "1", key, None)
                .unwrap();
        let url = c.url(&["repos", "acme", "ds", "git", "ref", "heads", "arno", "a#b?c"], &[("recursive", "1")]);
        assert_eq!(
            url.as_str(),
            "https://ghe.example.com/api/v3/repos/acme/ds/git/ref/heads/arno/a%23b%3Fc?recursive=1"
        );
        assert!(c.same_host("https://ghe.example.com/api/v3/installation/repositories?page=2").is_ok());
        assert!(c.same_host("https://evil.example.com/api/v3/installation/repositories?page=2").is_err());
        assert!(c.same_host("https://ghe.example.com/other").is_err());
    }
}

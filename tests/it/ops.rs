//! Liveness, readiness and metrics.

use reqwest::{Method, StatusCode};

use crate::support::{TestApp, api};

#[tokio::test]
async fn health_and_ready_report_ok() {
    let app = TestApp::start().await;
    let h = api(Method::GET, &app.url("/health"), None, None).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json(), serde_json::json!({"status": "ok"}));
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["status"], "ready");
    for check in ["database", "storage"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
        assert_eq!(body["checks"][check]["hard"], true, "{body}");
    }
}

#[tokio::test]
async fn ready_is_unavailable_when_local_storage_is_gone() {
    let app = TestApp::start().await;
    let objects = app.state.config.data_dir.join("objects");
    std::fs::remove_dir_all(&objects).unwrap();
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["storage"]["ok"], false);
    assert_eq!(body["checks"]["database"]["ok"], true);
    // Liveness is unaffected: the process still serves.
    assert_eq!(api(Method::GET, &app.url("/health"), None, None).await.status, StatusCode::OK);
    std::fs::create_dir_all(&objects).unwrap();
    assert_eq!(api(Method::GET, &app.url("/ready"), None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ready_is_unavailable_when_s3_is_unreachable() {
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = TestApp::start_with(&[
        ("ARNO_STORAGE_URL", "s3://arno/prefix"),
        ("ARNO_S3_ENDPOINT", &endpoint),
        ("ARNO_S3_ACCESS_KEY_ID", "test"),
        ("ARNO_S3_SECRET_ACCESS_KEY", "test-secret"),
    ])
    .await;
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["checks"]["storage"]["ok"], false);
    assert!(!r.text.contains("test-secret"));
}

#[tokio::test]
async fn metrics_are_served_only_on_the_metrics_listener() {
    let app = TestApp::start().await;
    api(Method::GET, &app.url("/health"), None, None).await;
    api(Method::GET, &app.url("/api/v1/tokens/123e4567"), None, None).await;
    api(Method::GET, &app.url("/definitely/not/a/route"), None, None).await;

    let main = api(Method::GET, &app.url("/metrics"), None, None).await;
    assert_eq!(main.status, StatusCode::NOT_FOUND);

    let m = api(Method::GET, &format!("{}/metrics", app.metrics_base), None, None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text;
    assert!(text.contains(r#"http_requests_total{method="GET",route="/health",status="2xx"} 1"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\""), "{text}");
    // Route templates, never raw paths.
    assert!(text.contains(r#"route="/api/v1/tokens/{id}""#), "{text}");
    assert!(!text.contains("123e4567"));
    assert!(!text.contains("definitely"));
    assert!(text.contains(r#"route="unmatched""#));
    // The metrics listener serves nothing else.
    let other = api(Method::GET, &format!("{}/health", app.metrics_base), None, None).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn graceful_stop_finishes_and_releases_the_port() {
    let app = TestApp::start().await;
    let addr = app.state.config.listen;
    app.stop().await;
    // Nothing serves there any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A request whose body is still arriving when shutdown starts is finished, not cut off; a
/// request that never completes does not hold shutdown past `ARNO_SHUTDOWN_TIMEOUT`.
#[tokio::test]
async fn shutdown_finishes_in_flight_requests_within_the_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start_with(&[("ARNO_SHUTDOWN_TIMEOUT", "2s")]).await;
    let addr = app.state.config.listen;
    let head = "POST /login HTTP/1.1\r\nHost: x\r\nCookie: arno_csrf=abc\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\n";
    // In flight: the server is reading this body when shutdown begins.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(format!("{head}email=a%40b").as_bytes()).await.unwrap();
    // Stuck: this one never sends the rest.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    stuck.write_all(format!("{head}email").as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "shutdown waits for in-flight requests");
    slow.write_all(b".example&").await.unwrap(); // 11 + 9 = Content-Length 20
    let mut response = Vec::new();
    slow.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    // The request was answered in full (CSRF refuses this anonymous form post).
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    // The stuck request is abandoned when the bound passes.
    tokio::time::timeout(std::time::Duration::from_secs(15), stopping).await.expect("shutdown is bounded").unwrap();
    drop(stuck);
}

#[tokio::test]
async fn a_replica_with_a_different_secret_key_refuses_to_start() {
    let app = TestApp::start_with(&[("ARNO_SECRET_KEY", "first-secret-key-first-secret-key-1234")]).await;
    let mut env = app.env.clone();
    env.insert("ARNO_DATA_DIR".into(), app.dir.path().join("replica-2").display().to_string());
    env.insert("ARNO_SECRET_KEY".into(), "other-secret-key-other-secret-key-5678".into());
    let config = arno::config::Config::load(&env).unwrap().config;
    let err = arno::app::build(config).await.err().expect("a mismatched secret must not start");
    let msg = format!("{err:#}");
    assert!(msg.contains("same ARNO_SECRET_KEY"), "{msg}");
    assert!(!msg.contains("first-secret") && !msg.contains("other-secret"), "the message must not show secrets: {msg}");
    // The same secret starts fine.
    env.insert("ARNO_SECRET_KEY".into(), "first-secret-key-first-secret-key-1234".into());
    let config = arno::config::Config::load(&env).unwrap().config;
    assert!(arno::app::build(config).await.is_ok());
}

/// A port nobody listens on: bind, learn the port, close.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn ready_lists_the_soft_checks_and_degrades_when_an_identity_provider_is_down() {
    let issuer = format!("http://127.0.0.1:{}", dead_port());
    let (app, _dir) = crate::oidc::arno_with(&[("corp", &issuer, "")], &[]).await;
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "a soft failure still serves: {}", r.text);
    let body = r.json();
    assert_eq!(body["status"], "degraded", "{body}");
    let idp = &body["checks"]["identity_providers"];
    assert_eq!((idp["ok"].as_bool(), idp["hard"].as_bool()), (Some(false), Some(false)), "{body}");
    assert!(idp["detail"].as_str().unwrap().starts_with("corp:"), "{body}");
    assert!(!r.text.contains(&issuer), "the detail names the provider, not its address: {body}");
    for check in ["database", "storage", "data_directory", "jobs"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    assert_eq!(body["checks"]["data_directory"]["hard"], true);
    assert_eq!(body["checks"]["jobs"]["hard"], false);
}

#[tokio::test]
async fn ready_degrades_on_a_stopped_worker_and_a_job_backlog() {
    // An app that is built but not served: no worker runs, as when its task has died.
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::BTreeMap::new();
    env.insert("ARNO_CONFIG".to_owned(), String::new());
    env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
    env.insert("ARNO_DATABASE_URL".to_owned(), crate::support::fresh_database_url(dir.path()).await);
    let config = arno::config::Config::load(&env).unwrap().config;
    let state = arno::app::build(config).await.unwrap().state;
    let readiness = arno::telemetry::readiness(&state).await;
    assert_eq!(readiness.status, "degraded");
    assert_eq!(readiness.checks["jobs"].detail.as_deref(), Some("the job worker is not running"));
    assert!(readiness.checks["database"].ok && readiness.checks["storage"].ok);

    // A worker beats, but a job has been due for 11 minutes: the workers do not keep up.
    state.worker.started();
    assert_eq!(arno::telemetry::readiness(&state).await.status, "ready");
    let old = arno::db::now_ms() - 11 * 60_000;
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at, updated_at) \
         VALUES ('stuck', 'writeback', '{}', 'pending', 0, 3, $1, $1, $1)",
    )
    .bind(old)
    .execute(state.db.pool())
    .await
    .unwrap();
    let readiness = arno::telemetry::readiness(&state).await;
    assert_eq!(readiness.status, "degraded");
    let detail = readiness.checks["jobs"].detail.clone().unwrap();
    assert!(detail.starts_with("1 job(s) waiting; the oldest has been due for 11 min"), "{detail}");
    state.db.close().await;
}

#[tokio::test]
async fn ready_degrades_when_a_siem_stream_falls_behind() {
    let url = format!("http://127.0.0.1:{}/ingest", dead_port());
    let app = TestApp::start_with(&[
        ("ARNO_AUDIT_STREAM_URLS", &url),
        ("ARNO_AUDIT_STREAM_TOKEN", "siem-token"),
        ("ARNO_AUDIT_STREAM_MAX_LAG", "3s"),
    ])
    .await;
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(r.json()["checks"]["audit_stream"]["ok"], true, "{}", r.text);
    // A record the stream cannot deliver (nobody listens), older than the allowed lag.
    app.create_admin().await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let r = api(Method::GET, &app.url("/ready"), None, None).await;
    let body = r.json();
    assert_eq!((r.status, body["status"].as_str()), (StatusCode::OK, Some("degraded")), "{body}");
    let detail = body["checks"]["audit_stream"]["detail"].as_str().unwrap();
    assert!(detail.contains("behind"), "{detail}");
    assert!(!r.text.contains("siem-token") && !r.text.contains("/ingest"), "{body}");
}

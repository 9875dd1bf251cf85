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

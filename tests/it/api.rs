//! The JSON API's contracts: malformed input, unknown routes, headers, OpenAPI completeness.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, api, client, read};

async fn token_for_admin(app: &TestApp) -> String {
    let admin = app.create_admin().await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    arno::auth::tokens::create(&mut conn, &admin.id, "test", None).await.unwrap().1
}

#[tokio::test]
async fn malformed_input_gets_the_error_contract() {
    let app = TestApp::start_with(&[("ARNO_MAX_BODY_BYTES", "2048")]).await;
    let token = token_for_admin(&app).await;
    let url = app.url("/api/v1/tokens");
    let post = |body: String, ct: &'static str| {
        let req = client().post(&url).bearer_auth(&token).header("content-type", ct).body(body);
        async move { read(req.send().await.unwrap()).await }
    };

    let huge = post(json!({"name": "x".repeat(4096)}).to_string(), "application/json").await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.json()["code"], "too_large");

    let bad_json = post("{\"name\": ".into(), "application/json").await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_json.json()["code"], "validation");

    let not_utf8 = client()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x7b])
        .send()
        .await
        .unwrap();
    assert_eq!(not_utf8.status(), StatusCode::BAD_REQUEST);

    let wrong_type = post("name=x".into(), "text/plain").await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.json()["code"], "validation");

    let unknown_field = post(json!({"name": "x", "admin": true}).to_string(), "application/json").await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);

    // Nothing was created by any of that.
    let list = api(Method::GET, &url, Some(&token), None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Oversized form posts to pages are refused too, as a page.
    let page = client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", "arno_csrf=abc")
        .body("email=".to_owned() + &"a".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_are_404_json_under_the_api_and_html_elsewhere() {
    let app = TestApp::start().await;
    let r = api(Method::GET, &app.url("/api/v1/no-such-thing"), None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let body = r.json();
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].is_string());
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32);

    let r = api(Method::GET, &app.url("/no-such-page"), None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.select_text("h1").as_deref(), Some("404 · Not Found"));
    assert_eq!(r.select_attr("html", "lang").as_deref(), Some("en"));

    let r = api(Method::PUT, &app.url("/api/v1/me"), None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["code"], "method_not_allowed");
}

#[tokio::test]
async fn request_and_trace_ids_are_honoured() {
    let app = TestApp::start().await;
    let r = read(
        client()
            .get(app.url("/api/v1/me"))
            .header("x-request-id", "req-123")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-123"));
    assert_eq!(r.json()["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let generated = api(Method::GET, &app.url("/health"), None, None).await;
    assert_eq!(generated.header("x-request-id").unwrap().len(), 32);
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = TestApp::start().await;
    let login = api(Method::GET, &app.url("/login"), None, None).await;
    let css = login.select_attr("link[rel=stylesheet]", "href").unwrap();
    assert!(css.starts_with("/static/app.") && css.ends_with(".css"), "{css}");
    for path in ["/login", "/api/v1/me", "/nope", "/health", css.as_str()] {
        let r = api(Method::GET, &app.url(path), None, None).await;
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert!(r.header("referrer-policy").is_some(), "{path}");
        assert!(r.header("strict-transport-security").is_none(), "no HSTS on plain http");
    }
    // Hashed static files are cached forever; pages are not cached.
    let r = api(Method::GET, &app.url(&css), None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("cache-control").unwrap().contains("immutable"));
    assert!(r.header("content-type").unwrap().starts_with("text/css"));
    assert_eq!(login.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(api(Method::GET, &app.url("/static/app.0000.css"), None, None).await.status, StatusCode::NOT_FOUND);
    // No page loads anything from elsewhere and no page has inline script.
    assert!(!login.text.contains("http://") && !login.text.contains("https://"));
    assert!(!login.text.contains("<script"));
}

#[tokio::test]
async fn https_deployments_get_hsts_and_host_prefixed_secure_cookies() {
    let app = TestApp::start_with(&[("ARNO_PUBLIC_URL", "https://arno.example.com")]).await;
    let r = api(Method::GET, &app.url("/login"), None, None).await;
    assert!(r.header("strict-transport-security").unwrap().contains("max-age="));
    let cookie = r.set_cookies().join("\n");
    assert!(cookie.contains("__Host-arno_csrf=") && cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn openapi_document_covers_every_api_route() {
    let app = TestApp::start().await;
    let doc = api(Method::GET, &app.url("/api/v1/openapi.json"), None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, _) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            // Every documented operation is served by a handler: unauthenticated calls get a
            // 2xx or 401, never the router's 404/405.
            let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api(m, &app.url(&concrete), None, None).await;
            // The device flow's OAuth endpoints are public: an empty request is an OAuth error.
            let oauth = path.starts_with("/api/v1/auth/device/")
                && r.status == StatusCode::BAD_REQUEST
                && r.json()["error"] == "invalid_request";
            assert!(
                r.status.is_success() || r.status == StatusCode::UNAUTHORIZED || oauth,
                "{method} {path} -> {} {}",
                r.status,
                r.text
            );
        }
    }
    // And every handler is in the document: the API router only accepts `routes!()` of
    // `#[utoipa::path]` handlers, and every such annotation must be registered.
    let mut annotated = 0;
    let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                annotated += std::fs::read_to_string(&p).unwrap().matches("#[utoipa::path(").count();
            }
        }
    }
    assert_eq!(annotated, operations, "a #[utoipa::path] handler is not registered in app::api()");
    for expected in ["/api/v1/me", "/api/v1/tokens", "/api/v1/tokens/{id}", "/api/v1/openapi.json"] {
        assert!(paths.contains_key(expected), "{expected} missing from OpenAPI");
    }
}

#[tokio::test]
async fn server_faults_answer_generically_with_a_trace_id() {
    let app = TestApp::start().await;
    let token = token_for_admin(&app).await;
    let mut b = crate::support::Browser::new(&app.base);
    assert_eq!(
        b.login(crate::support::ADMIN_EMAIL, crate::support::ADMIN_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    // The database goes away under a running server.
    app.state.db.close().await;

    let r = api(Method::GET, &app.url("/api/v1/me"), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.json();
    assert_eq!(body["code"], "internal");
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32);
    let lower = r.text.to_lowercase();
    assert!(!lower.contains("pool") && !lower.contains("closed") && !lower.contains("sqlx"), "{}", r.text);

    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(page.select_text("code").map(|t| t.len()), Some(32), "trace id shown");
    assert!(!page.text.to_lowercase().contains("pool"));

    let ready = api(Method::GET, &app.url("/ready"), None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["checks"]["database"]["ok"], false);
}

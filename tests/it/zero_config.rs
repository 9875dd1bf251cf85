//! The README's promise: `arno serve` with no configuration at all, then a clean SIGTERM.
//! Uses the real default ports (127.0.0.1:8080 and :9464).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::{Browser, api};

#[tokio::test]
async fn zero_config_start_setup_and_clean_shutdown() {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arno"));
    cmd.arg("serve").current_dir(cwd.path()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ARNO_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let recv = |lines: &mut Vec<String>, until: &dyn Fn(&str) -> bool| -> String {
        loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("server log line");
            lines.push(line.clone());
            if until(&line) {
                return line;
            }
        }
    };

    let setup_line = recv(&mut lines, &|l| l.contains("\"setup_required\""));
    let parsed: serde_json::Value = serde_json::from_str(&setup_line).unwrap();
    let message = parsed["message"].as_str().unwrap();
    let url_start = message.find("http://127.0.0.1:8080/setup?token=").expect("setup URL in the log");
    let url: String = message[url_start..].split_whitespace().next().unwrap().to_owned();
    let token = url.rsplit('=').next().unwrap().to_owned();

    // Everything lives under ./arno-data, created private.
    let data = cwd.path().join("arno-data");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(data.join("arno.db").is_file());
    assert!(data.join("objects").is_dir());
    assert!(data.join("secret.key").is_file());
    assert_eq!(std::fs::read_to_string(data.join("setup-token")).unwrap().trim(), token);

    let base = "http://127.0.0.1:8080";
    assert_eq!(api(Method::GET, &format!("{base}/health"), None, None).await.status, StatusCode::OK);
    assert_eq!(api(Method::GET, &format!("{base}/ready"), None, None).await.json()["status"], "ready");
    assert_eq!(api(Method::GET, &format!("{base}/metrics"), None, None).await.status, StatusCode::NOT_FOUND);
    let metrics = api(Method::GET, "http://127.0.0.1:9464/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.text.contains("http_requests_total"));

    // Complete setup with the logged link.
    let mut b = Browser::new(base);
    let form = b.get(&url["http://127.0.0.1:8080".len()..]).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.csrf();
    let password = "zero config password";
    let done = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("email", "zero@example.com"),
                ("name", "Zero"),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let me = b.get("/api/v1/me").await.json();
    assert_eq!(me["org_role"], "admin");
    let user_id = me["id"].as_str().unwrap().to_owned();

    // SIGTERM: a clean exit 0.
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(exit.code(), Some(0));
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    let log = lines.join("\n");
    assert!(log.contains("\"stopped\""), "{log}");

    // The log is JSON lines with request context, and never has e-mail addresses or secrets.
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for key in ["timestamp", "level", "service", "event_type"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let me_line = lines
        .iter()
        .find(|l| l.contains("\"http_request\"") && l.contains("\"/api/v1/me\""))
        .expect("request log line");
    let v: serde_json::Value = serde_json::from_str(me_line).unwrap();
    for key in ["request_id", "trace_id", "duration_ms"] {
        assert!(v.get(key).is_some(), "{key} missing: {me_line}");
    }
    assert_eq!(v["user_id"], user_id.as_str());
    assert!(!log.contains("zero@example.com"), "e-mail in the log");
    assert!(!log.contains(password), "password in the log");
    assert!(!log.contains(&csrf), "CSRF token in the log");
}

//! The `arno` binary's configuration and admin commands.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};

use crate::support::{TestApp, api};

pub fn arno(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arno"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ARNO_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    cmd.output().unwrap()
}

/// `arno` from an async test: off the runtime thread, so the in-process server keeps serving
/// (and finishing its transactions) while the command runs.
pub async fn arno_async(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let (env, args): (BTreeMap<String, String>, Vec<String>) =
        (env.clone(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || arno(&env, &args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    m.entry("ARNO_CONFIG".into()).or_default();
    m
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("arno.toml");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-xyz\n").unwrap();
    std::fs::write(
        &toml,
        format!(
        "listen = \"127.0.0.1:7100\"\nmetrics_listen = \"127.0.0.1:7101\"\nbogus = 1\n\
         [[oidc]]\nid = \"corp\"\nissuer = \"https://idp.example\"\nclient_id = \"arno\"\nclient_secret = \"oidc-s3cr3t\"\n\
         [[git.connections]]\nname = \"github-corp\"\napi_url = \"https://ghe.corp.example/api/v3\"\napp_id = \"42\"\n\
         client_id = \"Iv23liCorp\"\nwebhook_secret = \"hook-s3cr3t-long-enough\"\nprivate_key = \"\"\"\n{}\"\"\"\n",
        include_str!("../fixtures/github-app-key.pem")
        ),
    )
    .unwrap();
    let out = arno(
        &env(&[
            ("ARNO_CONFIG", toml.to_str().unwrap()),
            ("ARNO_METRICS_LISTEN", "127.0.0.1:7102"),
            ("ARNO_SECRET_KEY_FILE", secret_file.to_str().unwrap()),
            ("ARNO_DATABASE_URL", "postgres://arno:pw-in-url@db.internal/arno"),
            ("ARNO_TYPO", "x"),
        ]),
        &["config", "check"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ARNO_LISTEN") && l.contains("127.0.0.1:7100") && l.contains("config file")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ARNO_METRICS_LISTEN") && l.contains("7102") && l.contains("environment")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("ARNO_SECRET_KEY ") && l.contains("[redacted]")), "{stdout}");
    assert!(!stdout.contains("s3cr3t") && !stdout.contains("pw-in-url"), "{stdout}");
    assert!(stdout.contains("# [[oidc]] corp \"corp\": issuer https://idp.example/, client arno"), "{stdout}");
    assert!(
        stdout.contains(
            "# [[git.connections]] github-corp (github): https://ghe.corp.example/api/v3, App 42, client Iv23liCorp, \
             private key and webhook secret set (not shown)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("hook-s3cr3t") && !stdout.contains("BEGIN"), "{stdout}");
    assert!(stderr.contains("ARNO_TYPO"), "{stderr}");
    assert!(stderr.contains("`bogus`"), "{stderr}");
}

#[test]
fn config_check_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let cases = [
        (env(&[("ARNO_LISTEN", "localhost")]), "ARNO_LISTEN"),
        (env(&[("ARNO_DATABASE_URL", "mysql://x/y")]), "ARNO_DATABASE_URL"),
        (env(&[("ARNO_STORAGE_URL", "not a url")]), "ARNO_STORAGE_URL"),
        (env(&[("ARNO_S3_SECRET_ACCESS_KEY_FILE", missing.to_str().unwrap())]), "ARNO_S3_SECRET_ACCESS_KEY_FILE"),
    ];
    for (e, key) in cases {
        let out = arno(&e, &["config", "check"]);
        assert_eq!(out.status.code(), Some(78), "{key}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(key), "{key}: {}", text(&out.stderr));
    }
    // `serve` refuses the same way, before touching anything.
    let out =
        arno(&env(&[("ARNO_LISTEN", "nope"), ("ARNO_DATA_DIR", dir.path().join("d").to_str().unwrap())]), &["serve"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(!dir.path().join("d").exists());
}

#[tokio::test]
async fn admin_commands_create_users_and_tokens() {
    let app = TestApp::start().await;
    let pw = app.dir.path().join("pw");
    std::fs::write(&pw, "a very long password\n").unwrap();
    let e = app.env.clone();
    let out = arno_async(
        &e,
        &[
            "admin",
            "create-user",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--password-file",
            pw.to_str().unwrap(),
            "--admin",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("@ops"));
    // Creating an admin from the shell ends the setup window.
    assert!(!app.state.config.data_dir.join("setup-token").exists());
    let setup =
        api(Method::GET, &app.url(&format!("/setup?token={}", app.setup_token.as_deref().unwrap())), None, None).await;
    assert_eq!(setup.status, StatusCode::FORBIDDEN);

    let dup = arno_async(
        &e,
        &[
            "admin",
            "create-user",
            "--email",
            "OPS@example.com",
            "--name",
            "Ops",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup.stderr).contains("already exists"), "{}", text(&dup.stderr));
    let short = app.dir.path().join("short");
    std::fs::write(&short, "short").unwrap();
    let weak = arno_async(
        &e,
        &[
            "admin",
            "create-user",
            "--email",
            "w@example.com",
            "--name",
            "W",
            "--password-file",
            short.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(weak.status.code(), Some(1));
    assert!(text(&weak.stderr).contains("password"));

    let out = arno_async(
        &e,
        &["admin", "create-token", "--email", "ops@example.com", "--name", "cli", "--expires-days", "7"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let me = api(Method::GET, &app.url("/api/v1/me"), Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["org_role"], "admin");

    let nobody = arno_async(&e, &["admin", "create-token", "--email", "nobody@example.com", "--name", "x"]).await;
    assert_eq!(nobody.status.code(), Some(1));

    // The user signs in with the password from the file (trailing newline ignored).
    let mut b = crate::support::Browser::new(&app.base);
    assert_eq!(b.login("ops@example.com", "a very long password").await.status, StatusCode::SEE_OTHER);
}

#[test]
fn migrate_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("ARNO_DATA_DIR", dir.path().to_str().unwrap())]);
    if crate::support::is_postgres() {
        return; // `migrate` on PostgreSQL is exercised by every app start.
    }
    let first = arno(&e, &["migrate"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("applied migration 1"));
    let second = arno(&e, &["migrate"]);
    assert!(text(&second.stdout).contains("up to date"));
    let v = arno(&e, &["version"]);
    assert_eq!(text(&v.stdout).trim(), format!("arno {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn serve_stops_cleanly_on_sigint_and_reports_busy_ports() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().to_string();
    let (a, b) =
        (std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let (listen, metrics) = (port(&a), port(&b));
    drop(b);
    let data = dir.path().join("d");
    // The main port is taken: a clear error and exit 1.
    let busy = arno(
        &env(&[("ARNO_DATA_DIR", data.to_str().unwrap()), ("ARNO_LISTEN", &listen), ("ARNO_METRICS_LISTEN", &metrics)]),
        &["serve"],
    );
    assert_eq!(busy.status.code(), Some(1));
    assert!(text(&busy.stderr).contains("ARNO_LISTEN"), "{}", text(&busy.stderr));
    drop(a);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arno"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ARNO_") {
            cmd.env_remove(k);
        }
    }
    let e =
        env(&[("ARNO_DATA_DIR", data.to_str().unwrap()), ("ARNO_LISTEN", &listen), ("ARNO_METRICS_LISTEN", &metrics)]);
    let mut child = cmd.envs(&e).arg("serve").stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("\"started\"")));
    assert!(Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(lines.map_while(Result::ok).any(|l| l.contains("\"stopped\"")));
}

//! `arno login --server URL`: sign the command line in with the OAuth 2.0 device flow
//! (RFC 8628) and keep the resulting API token in `$XDG_CONFIG_HOME/arno/credentials.json`
//! (mode 0600).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where credentials live: `$XDG_CONFIG_HOME/arno`, else `~/.config/arno`.
pub fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("arno").join("credentials.json"))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

pub fn login(server: &str) -> ExitCode {
    let server = server.trim_end_matches('/').to_owned();
    if url::Url::parse(&server).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
        return fail(format!("{server:?} is not an http(s) URL"));
    }
    let Some(path) = credentials_path() else {
        return fail("cannot find a config directory (set XDG_CONFIG_HOME or HOME)");
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match runtime.block_on(run(&server)) {
        Ok(token) => match save(&path, &server, &token) {
            Ok(()) => {
                println!("Signed in to {server}. The token is stored in {}.", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", path.display())),
        },
        Err(message) => fail(message),
    }
}

async fn run(server: &str) -> Result<String, String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let unreachable = |e: reqwest::Error| format!("cannot reach {server}: {e}");
    let r = http
        .post(format!("{server}/api/v1/auth/device/code"))
        .form(&[("client_id", "arno-cli")])
        .send()
        .await
        .map_err(unreachable)?;
    let status = r.status();
    let body = json_of(r).await.map_err(|e| format!("unexpected answer from {server}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{server} refused: {}", body["error_description"].as_str().unwrap_or("unknown error")));
    }
    let device_code = body["device_code"].as_str().ok_or("no device_code in the answer")?.to_owned();
    let mut interval = Duration::from_secs(body["interval"].as_u64().unwrap_or(5).max(1));
    let deadline = Instant::now() + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600));
    println!(
        "To sign in, open {} and enter the code {}",
        body["verification_uri"].as_str().unwrap_or_default(),
        body["user_code"].as_str().unwrap_or_default()
    );
    println!("(or open {})", body["verification_uri_complete"].as_str().unwrap_or_default());
    let _ = std::io::stdout().flush();
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err("the code expired before it was approved; run `arno login` again".into());
        }
        let r = http
            .post(format!("{server}/api/v1/auth/device/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", "arno-cli"),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        let ok = r.status().is_success();
        let body = json_of(r).await.map_err(|e| format!("unexpected answer from {server}: {e}"))?;
        if ok {
            return body["access_token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "no access_token in the answer".into());
        }
        match body["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some("expired_token") => {
                return Err("the code expired before it was approved; run `arno login` again".into());
            }
            Some("access_denied") => return Err("the sign-in was denied in the browser".into()),
            _ => {
                return Err(format!(
                    "{server} refused: {}",
                    body["error_description"].as_str().unwrap_or("unknown error")
                ));
            }
        }
    }
}

async fn json_of(r: reqwest::Response) -> Result<Value, String> {
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Merge the token into the credentials file, written atomically with mode 0600.
fn save(path: &std::path::Path, server: &str, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path.parent().expect("credentials path has a parent");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut doc: Value =
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| serde_json::json!({}));
    if !doc["servers"].is_object() {
        doc["servers"] = serde_json::json!({});
    }
    doc["servers"][server] = serde_json::json!({"token": token, "created_at": chrono::Utc::now().to_rfc3339()});
    let temp = dir.join(".credentials.json.tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
    file.write_all(serde_json::to_string_pretty(&doc).unwrap_or_default().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

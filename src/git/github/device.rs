//! Signing a user in to GitHub through the connection's App with the device flow (GitHub:
//! "Generating a user access token for a GitHub App", device flow), only to learn which GitHub
//! account is theirs: Arno asks GitHub for a code, the user enters it on GitHub and approves,
//! Arno exchanges the device code for a user access token, reads `GET /user` with it once, and
//! drops it — it is never stored or logged. The App needs *Enable Device Flow* and a client id;
//! no client secret is involved.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use serde::Deserialize;
use url::Url;

use super::client::{API_VERSION, Client, read_limited, without_url};
use crate::git::{GitError, GitResult};

/// What the user is shown: the code to enter and where (and the device code Arno polls with,
/// which `Debug` does not show).
#[derive(Clone, Deserialize)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: u64,
    pub interval: u64,
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode").field("user_code", &self.user_code).field("expires_in", &self.expires_in).finish()
    }
}

/// A GitHub account as `GET /user` names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitHubUser {
    pub login: String,
    pub id: i64,
}

/// Where a device flow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// The user has not approved yet.
    Pending,
    /// Polled too often: wait this many seconds between polls from now on.
    SlowDown(u64),
    /// The user declined on GitHub.
    Denied,
    /// The code expired (or GitHub no longer knows it): start again.
    Expired,
    /// Approved: the user's account.
    Approved(GitHubUser),
}

impl Client {
    /// The web host's URL of `path` (`https://github.com/…` for github.com, the Enterprise
    /// Server's own host otherwise).
    pub fn web_url(&self, path: &str) -> Url {
        let mut url = self.rest.clone();
        if url.host_str() == Some("api.github.com") {
            let _ = url.set_host(Some("github.com"));
        }
        url.set_path(path);
        url.set_query(None);
        url
    }

    fn client_id_or_refuse(&self) -> GitResult<&str> {
        self.client_id.as_deref().ok_or_else(|| {
            GitError::Invalid("the connection has no client id: add the App's client id to link GitHub accounts".into())
        })
    }

    /// A form POST to the web host, its JSON answer.
    async fn web_form(&self, path: &str, form: &[(&str, &str)]) -> GitResult<serde_json::Value> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = self
            .http
            .post(self.web_url(path))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("arno/", env!("CARGO_PKG_VERSION")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| GitError::Upstream(format!("GitHub did not answer: {}", without_url(&e))))?;
        let status = response.status().as_u16();
        let bytes = read_limited(response).await?;
        match status {
            200 => serde_json::from_slice(&bytes)
                .map_err(|_| GitError::Upstream("GitHub's answer to the device flow was not JSON".into())),
            404 => Err(GitError::Invalid("GitHub refused the device flow: enable it in the App's settings".into())),
            429 => Err(GitError::RateLimited { retry_after_ms: 60_000 }),
            _ => Err(GitError::Upstream(format!("GitHub answered the device flow with {status}"))),
        }
    }

    /// Start a device flow for the App.
    pub async fn device_code(&self) -> GitResult<DeviceCode> {
        let client_id = self.client_id_or_refuse()?;
        let answer = self.web_form("/login/device/code", &[("client_id", client_id)]).await?;
        if let Some(error) = answer["error"].as_str() {
            return Err(device_error(error));
        }
        serde_json::from_value(answer).map_err(|_| GitError::Upstream("GitHub's device code was not readable".into()))
    }

    /// Ask once whether the user approved `device_code`; when they did, whose account it is.
    pub async fn device_poll(&self, device_code: &str) -> GitResult<DevicePoll> {
        let client_id = self.client_id_or_refuse()?;
        let form = [
            ("client_id", client_id),
            ("device_code", device_code),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ];
        let answer = self.web_form("/login/oauth/access_token", &form).await?;
        match answer["error"].as_str() {
            Some("authorization_pending") => return Ok(DevicePoll::Pending),
            Some("slow_down") => return Ok(DevicePoll::SlowDown(answer["interval"].as_u64().unwrap_or(10))),
            Some("access_denied") => return Ok(DevicePoll::Denied),
            Some("expired_token" | "incorrect_device_code" | "token_expired") => return Ok(DevicePoll::Expired),
            Some(other) => return Err(device_error(other)),
            None => {}
        }
        let token = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GitError::Upstream("GitHub approved the device flow without a token".into()))?;
        Ok(DevicePoll::Approved(self.user_of(token).await?))
    }

    /// `GET /user` with a user access token.
    async fn user_of(&self, token: &str) -> GitResult<GitHubUser> {
        let response = self
            .http
            .request(Method::GET, self.url(&["user"], &[]))
            .header(ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header(USER_AGENT, concat!("arno/", env!("CARGO_PKG_VERSION")))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .map_err(|e| GitError::Upstream(format!("GitHub did not answer: {}", without_url(&e))))?;
        let status = response.status().as_u16();
        let bytes = read_limited(response).await?;
        if status != 200 {
            return Err(GitError::Upstream(format!("GitHub answered GET /user with {status}")));
        }
        serde_json::from_slice(&bytes).map_err(|_| GitError::Upstream("GitHub's user was not readable".into()))
    }
}

fn device_error(error: &str) -> GitError {
    match error {
        "device_flow_disabled" => {
            GitError::Invalid("the App does not allow the device flow: enable it in its settings".into())
        }
        "incorrect_client_credentials" => GitError::Invalid("GitHub does not know the connection's client id".into()),
        "unsupported_grant_type" => GitError::Upstream("GitHub refused the device flow's grant type".into()),
        _ => GitError::Upstream("GitHub refused the device flow".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(api: &str) -> Client {
        let key =
            crate::git::connections::parse_private_key(include_str!("../../../tests/fixtures/github-app-key.pem"))
                .unwrap();
        let graphql = api.replace("/api/v3", "/api/graphql");
        let graphql = if api.contains("api.github.com") { format!("{api}/graphql") } else { graphql };
        Client::new("corp", api, &graphql, "1", key, None).unwrap()
    }

    #[test]
    fn the_web_host_of_github_and_of_an_enterprise_server() {
        assert_eq!(
            client("https://api.github.com").web_url("/login/device/code").as_str(),
            "https://github.com/login/device/code"
        );
        assert_eq!(
            client("https://ghe.corp.example/api/v3").web_url("/login/oauth/access_token").as_str(),
            "https://ghe.corp.example/login/oauth/access_token"
        );
    }
}

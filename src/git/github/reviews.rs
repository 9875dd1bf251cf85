//! Pull requests on GitHub for one repository: [`Reviews`] for [`GitHubProvider`] — finding,
//! opening and describing them, their state, and the checks on their head commit.

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::provider::{GitHubProvider, failure};
use crate::git::{GitError, GitResult, NewPull, PullRequest, PullState, Reviews};

#[derive(Deserialize)]
struct RawPullHead {
    sha: String,
}

#[derive(Deserialize)]
struct RawPull {
    number: u64,
    html_url: String,
    state: String,
    #[serde(default)]
    merged_at: Option<String>,
    title: String,
    head: RawPullHead,
}

impl RawPull {
    fn view(self) -> PullRequest {
        let state = match (self.state.as_str(), self.merged_at.is_some()) {
            (_, true) => PullState::Merged,
            ("open", _) => PullState::Open,
            _ => PullState::Closed,
        };
        PullRequest { number: self.number, url: self.html_url, state, head_sha: self.head.sha, title: self.title }
    }
}

impl Reviews for GitHubProvider {
    fn open_pull_for<'a>(&'a self, branch: &'a str) -> BoxFuture<'a, GitResult<Option<PullRequest>>> {
        async move {
            let head = format!("{}:{branch}", self.owner);
            let response = self.get(&["pulls"], &[("head", &head), ("state", "open"), ("per_page", "1")]).await?;
            if response.status != 200 {
                return Err(failure(&response, &format!("pull requests of {branch}")));
            }
            let mut pulls: Vec<RawPull> = response.json()?;
            Ok(if pulls.is_empty() { None } else { Some(pulls.swap_remove(0).view()) })
        }
        .boxed()
    }

    fn open_pull(&self, new: NewPull) -> BoxFuture<'_, GitResult<PullRequest>> {
        async move {
            let body = json!({"title": new.title, "head": new.branch, "base": new.base, "body": new.body});
            let response = self.send(Method::POST, &["pulls"], body).await?;
            match response.status {
                201 => Ok(response.json::<RawPull>()?.view()),
                // "A pull request already exists for owner:branch": that one.
                422 if String::from_utf8_lossy(&response.body).contains("already exists") => {
                    self.open_pull_for(&new.branch).await?.ok_or_else(|| {
                        GitError::Conflict(format!("a pull request for {} exists but is not open", new.branch))
                    })
                }
                _ => Err(failure(&response, &format!("pull request for {}", new.branch))),
            }
        }
        .boxed()
    }

    fn update_pull<'a>(&'a self, number: u64, title: &'a str, body: &'a str) -> BoxFuture<'a, GitResult<PullRequest>> {
        async move {
            let n = number.to_string();
            let response = self.send(Method::PATCH, &["pulls", &n], json!({"title": title, "body": body})).await?;
            if response.status != 200 {
                return Err(failure(&response, &format!("pull request #{number}")));
            }
            Ok(response.json::<RawPull>()?.view())
        }
        .boxed()
    }

    fn pull(&self, number: u64) -> BoxFuture<'_, GitResult<PullRequest>> {
        async move {
            let n = number.to_string();
            let response = self.get(&["pulls", &n], &[]).await?;
            if response.status != 200 {
                return Err(failure(&response, &format!("pull request #{number}")));
            }
            Ok(response.json::<RawPull>()?.view())
        }
        .boxed()
    }
}

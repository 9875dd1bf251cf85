//! Pull requests on GitHub for one repository: [`Reviews`] for [`GitHubProvider`] — finding,
//! opening and describing them, their state, and the checks on their head commit — and
//! [`Permissions`]: who may review and write.

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::provider::{GitHubProvider, failure};
use crate::git::{
    Checks, ChecksState, Collaborator, GitError, GitResult, MAX_COLLABORATORS, NewPull, Permissions, PullRequest,
    PullState, RepoPermission, Reviews,
};

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

    fn checks<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, GitResult<Checks>> {
        async move {
            if !super::provider::is_commit_id(sha) {
                return Err(GitError::Invalid(format!("{sha:?} is not a commit id")));
            }
            let mut checks = Checks {
                state: ChecksState::None,
                sha: sha.to_owned(),
                total: 0,
                failed: 0,
                pending: 0,
                failing: vec![],
                unreadable: vec![],
            };
            self.check_runs(sha, &mut checks).await?;
            self.commit_statuses(sha, &mut checks).await?;
            Ok(checks)
        }
        .boxed()
    }
}

/// Pages of check runs read per commit (100 each).
const CHECK_RUN_PAGES: usize = 3;

/// A check run's outcome (GitHub: `status` until `completed`, then `conclusion`).
fn run_outcome(status: &str, conclusion: Option<&str>) -> ChecksState {
    match (status, conclusion) {
        ("completed", Some("success" | "neutral" | "skipped")) => ChecksState::Success,
        ("completed", Some("failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure")) => {
            ChecksState::Failure
        }
        // `stale`: GitHub gave up on a run that never finished; it blocks nothing.
        ("completed", _) => ChecksState::None,
        _ => ChecksState::Pending,
    }
}

/// A commit status's outcome (`error`, `failure`, `pending`, `success`).
fn status_outcome(state: &str) -> ChecksState {
    match state {
        "success" => ChecksState::Success,
        "pending" => ChecksState::Pending,
        _ => ChecksState::Failure,
    }
}

impl GitHubProvider {
    /// The check runs on `sha` (GitHub Actions and other Apps), counted into `checks`.
    async fn check_runs(&self, sha: &str, checks: &mut Checks) -> GitResult<()> {
        #[derive(Deserialize)]
        struct Run {
            name: String,
            status: String,
            conclusion: Option<String>,
        }
        #[derive(Deserialize)]
        struct Runs {
            check_runs: Vec<Run>,
        }
        let mut response = self.get(&["commits", sha, "check-runs"], &[("per_page", "100")]).await?;
        for page in 0.. {
            match response.status {
                200 => {}
                // The App has no Checks permission.
                403 if page == 0 => {
                    checks.unreadable.push("check runs (Checks: read)".into());
                    return Ok(());
                }
                _ => return Err(failure(&response, &format!("the check runs of {sha}"))),
            }
            let runs: Runs = response.json()?;
            for run in runs.check_runs {
                checks.count(&run.name, run_outcome(&run.status, run.conclusion.as_deref()));
            }
            match response.next_page() {
                Some(next) if page + 1 < CHECK_RUN_PAGES => {
                    let url = self.client.same_host(&next)?;
                    response = self.client.send(self.auth(), Method::GET, url, None, false).await?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// The commit statuses on `sha` (the latest per context: older CI systems), counted in.
    async fn commit_statuses(&self, sha: &str, checks: &mut Checks) -> GitResult<()> {
        #[derive(Deserialize)]
        struct Status {
            context: String,
            state: String,
        }
        #[derive(Deserialize)]
        struct Combined {
            statuses: Vec<Status>,
        }
        let response = self.get(&["commits", sha, "status"], &[("per_page", "100")]).await?;
        match response.status {
            200 => {}
            403 => {
                checks.unreadable.push("commit statuses (Commit statuses: read)".into());
                return Ok(());
            }
            _ => return Err(failure(&response, &format!("the statuses of {sha}"))),
        }
        // With no statuses GitHub's combined state is "pending"; only the statuses count.
        let combined: Combined = response.json()?;
        for status in combined.statuses {
            checks.count(&status.context, status_outcome(&status.state));
        }
        Ok(())
    }
}

/// A collaborator's highest permission: GitHub's `role_name` when it is a base role, else (a
/// custom role) the base permissions it carries.
fn permission_of(role_name: Option<&str>, admin: bool, maintain: bool, push: bool, triage: bool) -> RepoPermission {
    match role_name {
        Some("admin") => RepoPermission::Admin,
        Some("maintain") => RepoPermission::Maintain,
        Some("write") => RepoPermission::Write,
        Some("triage") => RepoPermission::Triage,
        Some("read") => RepoPermission::Read,
        _ if admin => RepoPermission::Admin,
        _ if maintain => RepoPermission::Maintain,
        _ if push => RepoPermission::Write,
        _ if triage => RepoPermission::Triage,
        _ => RepoPermission::Read,
    }
}

impl Permissions for GitHubProvider {
    fn collaborators(&self) -> BoxFuture<'_, GitResult<Vec<Collaborator>>> {
        async move {
            #[derive(Deserialize)]
            struct Perms {
                admin: bool,
                #[serde(default)]
                maintain: bool,
                push: bool,
                #[serde(default)]
                triage: bool,
            }
            #[derive(Deserialize)]
            struct Raw {
                login: String,
                id: i64,
                role_name: Option<String>,
                permissions: Option<Perms>,
            }
            let mut out = vec![];
            let mut response = self.get(&["collaborators"], &[("affiliation", "all"), ("per_page", "100")]).await?;
            loop {
                if response.status != 200 {
                    return Err(failure(&response, "the repository's collaborators"));
                }
                let page: Vec<Raw> = response.json()?;
                for c in page {
                    let p =
                        c.permissions.unwrap_or(Perms { admin: false, maintain: false, push: false, triage: false });
                    let permission = permission_of(c.role_name.as_deref(), p.admin, p.maintain, p.push, p.triage);
                    out.push(Collaborator { login: c.login, id: c.id, permission });
                }
                match response.next_page() {
                    // A partial list would read as "everyone else lost access": refuse instead.
                    Some(_) if out.len() >= MAX_COLLABORATORS => {
                        return Err(GitError::Limit(format!(
                            "the repository has more than {MAX_COLLABORATORS} collaborators; Arno takes roles from GitHub \
                             only up to that"
                        )));
                    }
                    Some(next) => {
                        let url = self.client.same_host(&next)?;
                        response = self.client.send(self.auth(), Method::GET, url, None, false).await?;
                    }
                    None => break,
                }
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_roles_and_custom_roles() {
        assert_eq!(permission_of(Some("maintain"), false, true, true, true), RepoPermission::Maintain);
        assert_eq!(permission_of(Some("read"), false, false, false, false), RepoPermission::Read);
        // A custom role named by the organisation: its base permissions decide.
        assert_eq!(permission_of(Some("design-reviewer"), false, false, true, true), RepoPermission::Write);
        assert_eq!(permission_of(Some("auditor"), false, false, false, false), RepoPermission::Read);
        assert_eq!(permission_of(None, true, true, true, true), RepoPermission::Admin);
    }
}

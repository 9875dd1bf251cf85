//! Pull requests for Makers' session branches on hosted repositories (GitHub): the first
//! write-back of `arno/{handle}` opens one into the default branch, later write-backs update its
//! description (what the branch changes, a link back to Arno). Merging stays on the provider,
//! with its reviews, CODEOWNERS and branch protection; webhooks and reconciliation bring its
//! state back. This runs as its own job after the commit, so a provider that is slow or limits
//! Arno delays the pull request, never the commit, and a failure is retried.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::Project;
use super::onboarding::{self, PullRecord};
use super::{Repos, store};
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::{Db, now_ms};
use crate::error::AppResult;
use crate::git::{DiffStatus, GitError, GitProvider, NewPull, PullState};
use crate::jobs::{self, Job, JobError, NewJob};

pub const JOB_KIND: &str = "pull_request";
pub const KIND: &str = "session";
/// Paths a description lists before it says "and N more".
const LISTED: usize = 50;

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    project_id: String,
    user_id: String,
    branch: String,
}

/// Schedule the pull request of `branch` (one pending job per branch).
pub async fn schedule(conn: &mut sqlx::AnyConnection, project_id: &str, user_id: &str, branch: &str) -> AppResult<()> {
    let key = format!("pr:{project_id}:{branch}");
    let payload = json!(Payload { project_id: project_id.into(), user_id: user_id.into(), branch: branch.into() });
    jobs::enqueue(conn, &NewJob { kind: JOB_KIND, dedup_key: Some(&key), payload, run_at: now_ms(), max_attempts: 8 })
        .await
}

/// What the description says: the changed specs, the workflow and the rest, and where in Arno.
pub fn describe(
    project: &Project,
    public_url: &str,
    user_name: &str,
    handle: &str,
    branch: &str,
    changed: &[(String, DiffStatus)],
) -> (String, String) {
    let config = project.repo_config();
    let (mut specs, mut workflow, mut other) = (vec![], vec![], vec![]);
    for (path, status) in changed {
        let verb = match status {
            DiffStatus::Added => "added",
            DiffStatus::Modified => "changed",
            DiffStatus::Deleted => "deleted",
        };
        let line = format!("- `{path}` ({verb})");
        if config.is_spec_path(path) {
            specs.push(line);
        } else if path.starts_with(".arno/") {
            workflow.push(line);
        } else {
            other.push(line);
        }
    }
    let title = match specs.len() {
        0 => format!("Arno: changes by {user_name}"),
        1 => format!(
            "Arno: {} by {user_name}",
            changed.iter().find(|(p, _)| config.is_spec_path(p)).map_or("", |(p, _)| p.rsplit('/').next().unwrap_or(p))
        ),
        n => format!("Arno: {n} specs by {user_name}"),
    };
    let base = public_url.trim_end_matches('/');
    let mut body = format!(
        "Changes {user_name} saved in Arno, written back to `{branch}` as commits authored by them.\n\n\
         Review them in Arno: {base}/projects/{}/changes/{handle}\n",
        project.slug
    );
    for (heading, lines) in [("Specs", specs), ("Workflow", workflow), ("Other files", other)] {
        if lines.is_empty() {
            continue;
        }
        body.push_str(&format!("\n### {heading}\n\n"));
        let more = lines.len().saturating_sub(LISTED);
        for line in lines.into_iter().take(LISTED) {
            body.push_str(&line);
            body.push('\n');
        }
        if more > 0 {
            body.push_str(&format!("- and {more} more\n"));
        }
    }
    body.push_str("\nMerge here as usual: reviews, CODEOWNERS and branch protection apply. Arno keeps writing to this branch until it is merged.\n");
    (title, body)
}

/// Open or update the pull request of `branch`.
pub async fn sync(
    db: &Db,
    repos: &Repos,
    public_url: &str,
    project: &Project,
    user: &crate::auth::model::User,
    branch: &str,
) -> Result<Option<PullRecord>, GitError> {
    let database = |e: crate::error::AppError| GitError::Upstream(format!("database: {e}"));
    let provider = repos.get(project).await.map_err(|e| GitError::Upstream(e.to_string()))?;
    let Some(reviews) = provider.reviews() else { return Ok(None) };
    let head = provider.default_branch().await?;
    let mut changed = vec![];
    let mut cursor = None;
    loop {
        let page = provider.diff(&head.name, branch, cursor.as_deref(), 1_000).await?;
        changed.extend(page.items.into_iter().map(|d| (d.path, d.status)));
        match page.next {
            Some(next) if changed.len() < 10_000 => cursor = Some(next),
            _ => break,
        }
    }
    if changed.is_empty() {
        // Nothing the default branch lacks (merged already): no pull request to open.
        return Ok(None);
    }
    let (title, body) = describe(project, public_url, &user.name, &user.handle, branch, &changed);
    let known = {
        let mut conn = db.pool().acquire().await.map_err(|e| database(e.into()))?;
        onboarding::pull_for_branch(&mut conn, &project.id, branch).await.map_err(database)?
    };
    let (pull, action) = match known.filter(|k| k.state == "open") {
        Some(k) => {
            let number = u64::try_from(k.number).unwrap_or_default();
            match reviews.update_pull(number, &title, &body).await {
                Ok(p) if p.state == PullState::Open => (p, "pull_request.update"),
                // Merged or closed on GitHub meanwhile: the branch's new commits need a new one.
                Ok(_) | Err(GitError::NotFound(_)) => {
                    (open(reviews, branch, &head.name, title, body).await?, "pull_request.open")
                }
                Err(e) => return Err(e),
            }
        }
        None => (open(reviews, branch, &head.name, title, body).await?, "pull_request.open"),
    };
    let now = now_ms();
    let record = PullRecord {
        branch: branch.to_owned(),
        kind: KIND.into(),
        number: i64::try_from(pull.number).unwrap_or(i64::MAX),
        url: pull.url.clone(),
        state: pull.state.as_str().into(),
        head_sha: Some(pull.head_sha.clone()),
        checks: Default::default(),
        opened_at: now,
        updated_at: now,
    };
    let write = async {
        let mut tx = db.begin().await?;
        let opened_at = onboarding::pull_for_branch(&mut tx, &project.id, branch)
            .await?
            .filter(|k| k.number == record.number)
            .map_or(now, |k| k.opened_at);
        onboarding::save_pull(&mut tx, &project.id, &PullRecord { opened_at, ..record.clone() }).await?;
        let (origin, number) = (Origin::system(), pull.number.to_string());
        let event = Event::new(action, Outcome::Allowed, Actor::System, &origin)
            .project(&project.id)
            .target("pull_request", &number)
            .intent(json!({"branch": branch, "number": pull.number, "on_behalf_of": user.id, "files": changed.len()}));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
        AppResult::Ok(())
    };
    write.await.map_err(database)?;
    Ok(Some(record))
}

async fn open(
    reviews: &dyn crate::git::Reviews,
    branch: &str,
    base: &str,
    title: String,
    body: String,
) -> Result<crate::git::PullRequest, GitError> {
    reviews.open_pull(NewPull { branch: branch.to_owned(), base: base.to_owned(), title, body }).await
}

/// Run one pull-request job.
pub async fn run(db: &Db, repos: &Repos, public_url: &str, job: &Job) -> Result<(), JobError> {
    let payload: Payload =
        serde_json::from_str(&job.payload).map_err(|e| JobError::Fatal(format!("bad pull-request job: {e}")))?;
    let retry = |e: crate::error::AppError| JobError::retry(e);
    let mut conn = db.pool().acquire().await.map_err(|e| retry(e.into()))?;
    let Some(project) = store::find(&mut conn, &payload.project_id).await.map_err(retry)? else {
        return Err(JobError::Fatal("the project no longer exists".into()));
    };
    let Some((user, _)) = crate::auth::users::find_any(&mut conn, &payload.user_id).await.map_err(retry)? else {
        return Err(JobError::Fatal("the author no longer exists".into()));
    };
    drop(conn);
    match sync(db, repos, public_url, &project, &user, &payload.branch).await {
        Ok(_) => Ok(()),
        Err(GitError::RateLimited { retry_after_ms }) => Err(JobError::Retry {
            error: "the git provider asked us to slow down".into(),
            after: Some(std::time::Duration::from_millis(retry_after_ms)),
        }),
        Err(GitError::Invalid(m)) => Err(JobError::Fatal(m)),
        Err(e) => Err(JobError::retry(e)),
    }
}

/// Whether a provider opens pull requests for session branches.
pub fn wanted(provider: &dyn GitProvider) -> bool {
    provider.reviews().is_some()
}

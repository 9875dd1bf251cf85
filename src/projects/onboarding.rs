//! Onboarding a GitHub repository: a project on a repository without `.arno/config.json` stays
//! *pending setup*; a Maker confirms the paths (detected from the tree) and Arno opens a pull
//! request that adds the config and `.github/workflows/arno-check.yml` (running `arno lint` on
//! every pull request). The default branch is never written directly: merging stays with the
//! repository's reviewers. When the pull request is merged (seen by webhook, reconciliation or a
//! scan) the next scan finds the config and the project is *active*. One still unmerged after
//! `git.onboarding_archive_after` (30 days) is archived.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::model::{Project, ProjectState};
use super::{Repos, git_error, store};
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::Authenticated;
use crate::auth::access::{Grant, Setup};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{AppError, AppResult};
use crate::git::{Change, CommitRequest, NewPull, Person, PullState};
use crate::specs::RepoConfig;

/// Where the onboarding commit goes (a number is added when an older one is in the way).
pub const BRANCH: &str = "arno/setup";
pub const WORKFLOW_PATH: &str = ".github/workflows/arno-check.yml";
pub const KIND: &str = "onboarding";

/// A pull request Arno opened, as it last saw it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PullRecord {
    pub branch: String,
    /// `onboarding` or `session`.
    pub kind: String,
    pub number: i64,
    /// Where reviewers see it on GitHub.
    pub url: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    pub head_sha: Option<String>,
    /// The checks on `head_sha` when Arno last looked (`null` before it has).
    #[sqlx(try_from = "Option<String>")]
    #[schema(value_type = Option<crate::git::Checks>)]
    pub checks: StoredChecks,
    #[serde(skip)]
    pub opened_at: i64,
    #[serde(skip)]
    pub updated_at: i64,
}

/// [`crate::git::Checks`] as stored (JSON); unreadable JSON is "not looked yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StoredChecks(pub Option<crate::git::Checks>);

impl From<Option<String>> for StoredChecks {
    fn from(json: Option<String>) -> Self {
        StoredChecks(json.and_then(|j| serde_json::from_str(&j).ok()))
    }
}

impl PullRecord {
    /// The checks Arno last read, if they are about the head it knows.
    pub fn current_checks(&self) -> Option<&crate::git::Checks> {
        self.checks.0.as_ref().filter(|c| self.head_sha.as_deref() == Some(c.sha.as_str()))
    }

    pub fn opened_text(&self) -> String {
        rfc3339(self.opened_at)
    }
}

/// The paths of the config the onboarding pull request adds.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SetupPaths {
    /// Folder of the spec files, ending with `/` (default: detected, else `Design_system/`).
    pub components_md: Option<String>,
    /// Folder of the component code, ending with `/` (default: detected, else `src/components/`).
    pub components_code: Option<String>,
}

/// What `GET …/onboarding` shows: the detected paths and the pull request, if one is open.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Onboarding {
    pub state: ProjectState,
    pub components_md: String,
    pub components_code: String,
    pub pull_request: Option<PullRecord>,
}

fn pascal(stem: &str) -> bool {
    stem.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && stem.chars().all(|c| c.is_ascii_alphanumeric())
        && !matches!(stem, "README" | "CHANGELOG" | "LICENSE" | "CONTRIBUTING" | "SECURITY" | "CODEOWNERS")
}

/// The folder holding the most files that look like components: `Name.md` specs, `Name.tsx`
/// code (tests and stories aside). Ties go to the shallower folder, then the first by name.
fn busiest_folder<'a>(paths: impl Iterator<Item = &'a str>, extension: &str) -> Option<String> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for path in paths {
        let (folder, file) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(stem) = file.strip_suffix(extension) else { continue };
        if folder.is_empty() || folder.split('/').any(|p| p.starts_with('.') || p == "node_modules") || !pascal(stem) {
            continue;
        }
        *counts.entry(folder).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| b.0.matches('/').count().cmp(&a.0.matches('/').count()))
                .then_with(|| b.0.cmp(a.0))
        })
        .map(|(folder, _)| format!("{folder}/"))
}

/// Sensible paths for a repository's files.
pub fn detect(paths: &[String]) -> (String, String) {
    let defaults = RepoConfig::default();
    let md = busiest_folder(paths.iter().map(String::as_str), ".md").unwrap_or(defaults.components_md);
    let code = busiest_folder(paths.iter().map(String::as_str), ".tsx").unwrap_or(defaults.components_code);
    (md, code)
}

/// The workflow the pull request adds: `arno lint` on every pull request touching specs or the
/// config, with the `arno` binary fetched from this Arno (`/downloads/arno`, no internet needed).
pub fn workflow(public_url: &str, components_md: &str) -> String {
    let base = public_url.trim_end_matches('/');
    format!(
        "# Added by Arno: checks the component specs on every pull request that changes them.\n\
         # The arno binary comes from {base} (an air-gapped runner needs no internet).\n\
         name: Arno check\n\
         on:\n  \
           pull_request:\n    \
             paths:\n      \
               - \"{components_md}**\"\n      \
               - \".arno/**\"\n\
         permissions:\n  \
           contents: read\n\
         jobs:\n  \
           lint:\n    \
             runs-on: ${{{{ vars.ARNO_RUNNER || 'ubuntu-latest' }}}}\n    \
             steps:\n      \
               - uses: actions/checkout@v4\n      \
               - name: Get arno\n        \
                 run: curl -fsS --retry 3 -o \"$RUNNER_TEMP/arno\" \"{base}/downloads/arno\" && chmod +x \"$RUNNER_TEMP/arno\"\n      \
               - name: arno lint\n        \
                 run: '\"$RUNNER_TEMP/arno\" lint .'\n"
    )
}

/// A folder setting as the config takes it.
fn folder(field: &str, raw: &str) -> AppResult<String> {
    let trimmed = raw.trim().trim_start_matches("./");
    let with_slash = if trimmed.ends_with('/') { trimmed.to_owned() } else { format!("{trimmed}/") };
    if trimmed.is_empty() || trimmed.len() > 200 || !crate::git::valid_path(with_slash.trim_end_matches('/')) {
        return Err(AppError::field(field, "is a folder of the repository, such as Design_system/"));
    }
    Ok(with_slash)
}

pub async fn pull_of(conn: &mut AnyConnection, project_id: &str, kind: &str) -> AppResult<Option<PullRecord>> {
    Ok(sqlx::query_as(
        "SELECT branch, kind, number, url, state, head_sha, checks, opened_at, updated_at FROM pull_requests \
         WHERE project_id = $1 AND kind = $2 ORDER BY opened_at DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(kind)
    .fetch_optional(conn)
    .await?)
}

/// The project's pull requests Arno last saw open.
pub async fn open_pulls(conn: &mut AnyConnection, project_id: &str) -> AppResult<Vec<PullRecord>> {
    Ok(sqlx::query_as(
        "SELECT branch, kind, number, url, state, head_sha, checks, opened_at, updated_at FROM pull_requests \
         WHERE project_id = $1 AND state = 'open' ORDER BY opened_at",
    )
    .bind(project_id)
    .fetch_all(conn)
    .await?)
}

pub async fn pull_for_branch(
    conn: &mut AnyConnection,
    project_id: &str,
    branch: &str,
) -> AppResult<Option<PullRecord>> {
    Ok(sqlx::query_as(
        "SELECT branch, kind, number, url, state, head_sha, checks, opened_at, updated_at FROM pull_requests \
         WHERE project_id = $1 AND branch = $2",
    )
    .bind(project_id)
    .bind(branch)
    .fetch_optional(conn)
    .await?)
}

/// Record what Arno saw of a pull request (a new one replaces an older one of the branch).
pub async fn save_pull(conn: &mut AnyConnection, project_id: &str, record: &PullRecord) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO pull_requests (project_id, branch, kind, number, url, state, head_sha, opened_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (project_id, branch) DO UPDATE SET \
         kind = excluded.kind, number = excluded.number, url = excluded.url, state = excluded.state, \
         head_sha = excluded.head_sha, opened_at = excluded.opened_at, updated_at = excluded.updated_at",
    )
    .bind(project_id)
    .bind(&record.branch)
    .bind(&record.kind)
    .bind(record.number)
    .bind(&record.url)
    .bind(&record.state)
    .bind(&record.head_sha)
    .bind(record.opened_at)
    .bind(record.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the checks on a pull request's head said.
pub async fn set_pull_checks(
    conn: &mut AnyConnection,
    project_id: &str,
    branch: &str,
    checks: &crate::git::Checks,
) -> AppResult<()> {
    let json = serde_json::to_string(checks).map_err(|e| AppError::Internal(e.into()))?;
    sqlx::query("UPDATE pull_requests SET checks = $3, updated_at = $4 WHERE project_id = $1 AND branch = $2")
        .bind(project_id)
        .bind(branch)
        .bind(json)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_pull_state(
    conn: &mut AnyConnection,
    project_id: &str,
    branch: &str,
    state: PullState,
    head_sha: Option<&str>,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE pull_requests SET state = $3, head_sha = COALESCE($4, head_sha), updated_at = $5 \
         WHERE project_id = $1 AND branch = $2",
    )
    .bind(project_id)
    .bind(branch)
    .bind(state.as_str())
    .bind(head_sha)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

fn hosted_only(project: &Project) -> AppResult<()> {
    if project.provider != "github" {
        return Err(AppError::Conflict(
            "onboarding pull requests are for GitHub repositories; set this project up with …/setup".into(),
        ));
    }
    Ok(())
}

/// The detected paths and the onboarding pull request of a project.
pub async fn status(db: &Db, repos: &Repos, project: &Project) -> AppResult<Onboarding> {
    hosted_only(project)?;
    let pull_request = {
        let mut conn = db.pool().acquire().await?;
        pull_of(&mut conn, &project.id, KIND).await?
    };
    let (components_md, components_code) = if project.config_present {
        let c = project.repo_config();
        (c.components_md, c.components_code)
    } else {
        detected(repos, project).await?
    };
    Ok(Onboarding { state: project.state, components_md, components_code, pull_request })
}

async fn detected(repos: &Repos, project: &Project) -> AppResult<(String, String)> {
    let provider = repos.get(project).await?;
    let head = provider.default_branch().await.map_err(git_error)?;
    let Some(commit) = head.commit else { return Ok(detect(&[])) };
    let mut paths = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = provider.list_files(&commit, "", cursor.as_deref(), 10_000).await.map_err(git_error)?;
        paths.extend(page.items.into_iter().map(|f| f.path));
        match page.next {
            Some(next) if paths.len() < 200_000 => cursor = Some(next),
            _ => break,
        }
    }
    Ok(detect(&paths))
}

/// Open the onboarding pull request (config + check workflow on a branch of its own).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    db: &Db,
    public_url: &str,
    repos: &Repos,
    auth: &Authenticated,
    origin: &Origin,
    project: &Project,
    _grant: &Grant<Setup>,
    paths: SetupPaths,
) -> AppResult<PullRecord> {
    hosted_only(project)?;
    if project.state != ProjectState::PendingSetup || project.config_present {
        return Err(AppError::Conflict("the project is already set up".into()));
    }
    {
        let mut conn = db.pool().acquire().await?;
        if let Some(open) = pull_of(&mut conn, &project.id, KIND).await?.filter(|p| p.state == "open") {
            return Err(AppError::Conflict(format!(
                "the onboarding pull request is open already: {} (merge it on GitHub)",
                open.url
            )));
        }
    }
    let (detected_md, detected_code) = match (&paths.components_md, &paths.components_code) {
        (Some(md), Some(code)) => (md.clone(), code.clone()),
        _ => detected(repos, project).await?,
    };
    let components_md = folder("components_md", paths.components_md.as_deref().unwrap_or(&detected_md))?;
    let components_code = folder("components_code", paths.components_code.as_deref().unwrap_or(&detected_code))?;
    let config = RepoConfig { components_md: components_md.clone(), components_code, ..RepoConfig::default() };
    let config_file = config.to_file();
    RepoConfig::parse(config_file.as_bytes()).map_err(|e| AppError::field(&e.field, &e.message))?;

    let provider = repos.get(project).await?;
    let reviews = provider.reviews().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no reviews on github")))?;
    let head = provider.default_branch().await.map_err(git_error)?;
    let Some(base) = head.commit.clone() else {
        return Err(AppError::Conflict("the repository has no commits yet: push a first commit to it".into()));
    };
    // A branch of its own; an older one (a closed pull request) is left alone.
    let mut branch = BRANCH.to_owned();
    for n in 2..=20 {
        match provider.create_branch(&branch, &base).await {
            Ok(()) => break,
            Err(crate::git::GitError::Conflict(_)) if n < 20 => branch = format!("{BRANCH}-{n}"),
            Err(e) => return Err(git_error(e)),
        }
    }
    let message = "Set up Arno\n\nAdds .arno/config.json (where the component specs and code are) and a check that \
                   runs `arno lint` on pull requests."
        .to_owned();
    let commit = provider
        .commit(CommitRequest {
            branch: branch.clone(),
            parent: base,
            message,
            author: Person { name: auth.user.name.clone(), email: auth.user.email.clone() },
            changes: vec![
                Change::Upsert { path: crate::specs::config::PATH.into(), content: config_file.into_bytes() },
                Change::Upsert {
                    path: WORKFLOW_PATH.into(),
                    content: workflow(public_url, &components_md).into_bytes(),
                },
            ],
        })
        .await
        .map_err(git_error)?;
    let link = format!("{}/projects/{}", public_url.trim_end_matches('/'), project.slug);
    let body = format!(
        "This pull request connects the repository to Arno ({link}).\n\n\
         - `.arno/config.json`: component specs in `{components_md}`, code in `{}`.\n\
         - `{WORKFLOW_PATH}`: runs `arno lint` on pull requests that change specs.\n\n\
         Once it is merged, the project **{}** becomes active in Arno. Change the paths here before merging if \
         they are not right; Arno reads the file as merged.",
        config.components_code, project.name
    );
    let pull = reviews
        .open_pull(NewPull { branch: branch.clone(), base: head.name.clone(), title: "Set up Arno".into(), body })
        .await
        .map_err(git_error)?;
    let now = now_ms();
    let record = PullRecord {
        branch: branch.clone(),
        kind: KIND.into(),
        number: i64::try_from(pull.number).unwrap_or(i64::MAX),
        url: pull.url.clone(),
        state: pull.state.as_str().into(),
        head_sha: Some(commit.id.clone()),
        checks: Default::default(),
        opened_at: now,
        updated_at: now,
    };
    let mut tx = db.begin().await?;
    save_pull(&mut tx, &project.id, &record).await?;
    let event = Event::new("project.onboarding", Outcome::Allowed, Actor::of(auth), origin)
        .project(&project.id)
        .target("project", &project.id)
        .intent(json!({"branch": branch, "pull_request": pull.number, "commit": commit.id}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(record)
}

/// Archive GitHub projects whose onboarding pull request stayed unmerged for `after` (run by
/// the maintenance loop).
pub async fn archive_stale(db: &Db, now: i64, after: std::time::Duration) -> AppResult<usize> {
    let cutoff = now - crate::db::ms(after);
    let ids: Vec<(String,)> = {
        let mut conn = db.pool().acquire().await?;
        sqlx::query_as(
            "SELECT p.id FROM projects p JOIN pull_requests r ON r.project_id = p.id AND r.kind = 'onboarding' \
             WHERE p.state = 'pending_setup' AND r.state <> 'merged' AND r.opened_at < $1",
        )
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await?
    };
    let origin = Origin::system();
    let days = after.as_secs() / 86_400;
    for (id,) in &ids {
        let mut tx = db.begin().await?;
        store::set_state(&mut tx, id, ProjectState::Archived).await?;
        let event = Event::new("project.archive", Outcome::Allowed, Actor::System, &origin)
            .project(id)
            .target("project", id)
            .intent(json!({"reason": format!("the onboarding pull request stayed unmerged for {days} days")}));
        audit::record(&mut tx, event).await?;
        tx.commit().await?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_detected_from_the_tree() {
        let paths: Vec<String> = [
            "README.md",
            "docs/Intro.md",
            "packages/ui/specs/Button.md",
            "packages/ui/specs/Card.md",
            "packages/ui/specs/README.md",
            "packages/ui/src/Button.tsx",
            "packages/ui/src/Card.tsx",
            "packages/ui/src/Card.test.tsx",
            "packages/ui/src/index.tsx",
            "node_modules/x/Thing.tsx",
            ".github/Template.md",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(detect(&paths), ("packages/ui/specs/".to_owned(), "packages/ui/src/".to_owned()));
        assert_eq!(detect(&[]), ("Design_system/".to_owned(), "src/components/".to_owned()));
    }

    #[test]
    fn folders_are_checked() {
        assert_eq!(folder("f", "specs").unwrap(), "specs/");
        assert_eq!(folder("f", "./a/b/").unwrap(), "a/b/");
        for bad in ["", "/", "../x", "a//b", ".git/", "a/../b"] {
            assert!(folder("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_workflow_is_yaml_that_runs_lint() {
        let text = workflow("https://arno.corp.example/", "Design_system/");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
        let doc = &docs[0];
        assert_eq!(doc["name"].as_str(), Some("Arno check"));
        assert_eq!(doc["on"]["pull_request"]["paths"][0].as_str(), Some("Design_system/**"));
        let steps = doc["jobs"]["lint"]["steps"].as_vec().unwrap();
        assert!(steps[1]["run"].as_str().unwrap().contains("https://arno.corp.example/downloads/arno"));
        assert_eq!(steps[2]["run"].as_str(), Some("\"$RUNNER_TEMP/arno\" lint ."));
        assert_eq!(doc["jobs"]["lint"]["runs-on"].as_str(), Some("${{ vars.ARNO_RUNNER || 'ubuntu-latest' }}"));
    }
}

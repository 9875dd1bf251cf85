//! Git providers: where a project's repository lives.
//!
//! [`GitProvider`] is the one interface the rest of Arno uses: the **local** provider
//! ([`local::LocalProvider`], gix, a repository on the appliance's disk) and **GitHub**
//! ([`github::provider::GitHubProvider`], REST and GraphQL through a GitHub App) implement it,
//! GitLab will, which is why the trait speaks in provider ids, cursors and typed errors
//! (`rate_limited` with a retry time, `conflict` when a branch moved) rather than in gix types.
//! One trait-level test suite (tests/it/provider_suite.rs) runs against every provider.

pub mod codeowners;
pub mod connections;
pub mod connections_api;
pub mod connections_config;
pub mod github;
pub mod hosted;
pub mod local;
pub mod logins;
pub mod webhooks;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A commit or blob id as the provider spells it (hex SHA-1 for git).
pub type ObjectId = String;

/// One file in a tree listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Path from the repository root, `/`-separated.
    pub path: String,
    /// The blob id: equal ids mean equal content, so callers can skip unchanged files.
    pub blob_id: ObjectId,
    pub size: u64,
}

/// How many folders a file may sit in (`a/b/c.md` sits in 2). Arno does not read deeper.
///
/// Git itself limits nothing here: a chain of 30,000 folders is a few hundred kilobytes of tree
/// objects, and walking it recursively overflows any thread's stack (Git 2.44 added
/// `core.maxTreeDepth`, default 4096, for the same reason). Arno walks trees with an explicit
/// stack, and stops much earlier: a design system nests specs a handful of folders deep, 64
/// leaves ample room, and it bounds what one lookup or one listing costs.
pub const MAX_TREE_DEPTH: usize = 64;

/// The longest repository path Arno reads or writes, in bytes: Linux's `PATH_MAX`, so no
/// developer could have checked such a file out anyway.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why `path` lies beyond [`MAX_TREE_DEPTH`] or [`MAX_PATH_BYTES`], or `None` when it is within
/// both (said as the end of a sentence about the path).
pub fn path_limit_problem(path: &str) -> Option<String> {
    let folders = path.trim_matches('/').matches('/').count();
    if folders > MAX_TREE_DEPTH {
        return Some(format!("is {folders} folders deep; Arno accepts at most {MAX_TREE_DEPTH} folders"));
    }
    (path.len() > MAX_PATH_BYTES)
        .then(|| format!("is {} bytes long; Arno accepts paths of at most {MAX_PATH_BYTES} bytes", path.len()))
}

/// What a listing or a diff left out because it lies beyond [`MAX_TREE_DEPTH`] or
/// [`MAX_PATH_BYTES`]. A folder left out counts once, whatever it holds: it is never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    pub count: usize,
    /// The first such path in path order, cut to [`Skipped::EXAMPLE_BYTES`], for people to find it.
    pub first: Option<String>,
}

impl Skipped {
    pub const EXAMPLE_BYTES: usize = 200;

    /// Count `prefix/name`, without building a path that may be huge.
    pub fn note(&mut self, prefix: &str, name: &str) {
        self.count += 1;
        let separator = if prefix.is_empty() { "" } else { "/" };
        let mut example = String::with_capacity(Self::EXAMPLE_BYTES + 4);
        for part in [prefix, separator, name] {
            let room = Self::EXAMPLE_BYTES.saturating_sub(example.len());
            let mut end = part.len().min(room);
            while !part.is_char_boundary(end) {
                end -= 1;
            }
            example.push_str(&part[..end]);
        }
        if prefix.len() + separator.len() + name.len() > Self::EXAMPLE_BYTES {
            example.push('…');
        }
        if self.first.as_ref().is_none_or(|first| example < *first) {
            self.first = Some(example);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A page of results and the cursor for the next one (`None` when this is the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
    /// What the whole listing (every page alike) left out because it lies beyond the limits.
    pub skipped: Skipped,
}

/// The head of a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchHead {
    pub name: String,
    /// `None` while the branch is unborn (a repository without commits).
    pub commit: Option<ObjectId>,
}

/// Who made a commit, as git records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    pub id: ObjectId,
    pub message: String,
    pub author: Person,
    /// Author time, UTC epoch milliseconds.
    pub time_ms: i64,
}

/// One change in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert { path: String, content: Vec<u8> },
    Delete { path: String },
}

/// Commit `changes` on `branch`, whose head must still be `parent` (compare-and-swap: a branch
/// that moved is a [`GitError::Conflict`], never an overwrite).
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub branch: String,
    pub parent: ObjectId,
    pub message: String,
    pub author: Person,
    pub changes: Vec<Change>,
}

/// How a merge lands on the target branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// Move the target to the source commit; refused when the target has commits the source lacks.
    FastForward,
    /// A commit with two parents (target, source) holding the three-way merge of their trees.
    MergeCommit,
}

/// Merge `source` into `branch`, whose head must still be `expected` (compare-and-swap).
#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub branch: String,
    pub expected: ObjectId,
    pub source: ObjectId,
    pub mode: MergeMode,
    /// For a merge commit.
    pub message: String,
    pub author: Person,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    Added,
    Modified,
    Deleted,
}

/// A path that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffEntry {
    pub path: String,
    pub status: DiffStatus,
    pub old_blob: Option<ObjectId>,
    pub new_blob: Option<ObjectId>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A ref, commit or path that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The branch moved, or already exists: re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bad branch name, path or request.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Both sides changed these paths in ways a three-way merge cannot reconcile.
    #[error("the branches conflict in {}", .0.join(", "))]
    MergeConflict(Vec<String>),
    /// The operation would have to go beyond [`MAX_TREE_DEPTH`] or [`MAX_PATH_BYTES`].
    #[error("beyond Arno's limits: {0}")]
    Limit(String),
    /// The provider asks us to slow down (hosted providers); retry after the given time.
    #[error("rate limited by the git provider")]
    RateLimited { retry_after_ms: u64 },
    /// The provider refused our credentials.
    #[error("the git provider refused access: {0}")]
    Unauthorized(String),
    /// The repository or provider failed.
    #[error("git provider failed: {0}")]
    Upstream(String),
}

pub type GitResult<T> = Result<T, GitError>;

/// A pull (or merge) request's state on the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Open,
    Merged,
    Closed,
}

impl PullState {
    pub fn as_str(self) -> &'static str {
        match self {
            PullState::Open => "open",
            PullState::Merged => "merged",
            PullState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<PullState> {
        Some(match s {
            "open" => PullState::Open,
            "merged" => PullState::Merged,
            "closed" => PullState::Closed,
            _ => return None,
        })
    }
}

/// A pull request as the provider has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    /// Where people review it (the provider's web page).
    pub url: String,
    pub state: PullState,
    /// The head branch's commit the pull request shows.
    pub head_sha: String,
    pub title: String,
}

/// What the checks on a commit say, summed up the way the provider's pull request page does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChecksState {
    /// No check has reported on the commit.
    None,
    /// Some have not finished, none has failed.
    Pending,
    Success,
    /// At least one failed (or timed out, was cancelled, or needs action).
    Failure,
}

/// The checks on a pull request's head commit (GitHub: check runs and commit statuses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checks {
    pub state: ChecksState,
    /// The commit they are about.
    pub sha: String,
    pub total: u32,
    pub failed: u32,
    pub pending: u32,
    /// The first failing checks' names (at most [`CHECKS_NAMED`]).
    pub failing: Vec<String>,
    /// Kinds of checks the provider would not show Arno (e.g. the App lacks a permission), so
    /// the summary may be missing some.
    pub unreadable: Vec<String>,
}

/// Failing checks named per pull request.
pub const CHECKS_NAMED: usize = 5;

impl Checks {
    /// One check's outcome counted in.
    pub fn count(&mut self, name: &str, outcome: ChecksState) {
        self.total += 1;
        match outcome {
            ChecksState::Failure => {
                self.failed += 1;
                if self.failing.len() < CHECKS_NAMED {
                    self.failing.push(name.to_owned());
                }
            }
            ChecksState::Pending => self.pending += 1,
            ChecksState::Success | ChecksState::None => {}
        }
        self.state = if self.failed > 0 {
            ChecksState::Failure
        } else if self.pending > 0 {
            ChecksState::Pending
        } else {
            ChecksState::Success
        };
    }

    /// The state as the API spells it (for CSS classes).
    pub fn state_key(&self) -> &'static str {
        match self.state {
            ChecksState::None => "none",
            ChecksState::Pending => "pending",
            ChecksState::Success => "success",
            ChecksState::Failure => "failure",
        }
    }

    /// One word for the badge.
    pub fn state_label(&self) -> &'static str {
        match self.state {
            ChecksState::None => "no checks",
            ChecksState::Pending => "running",
            ChecksState::Success => "passing",
            ChecksState::Failure => "failing",
        }
    }

    /// What the Changes page and the editor say.
    pub fn summary(&self) -> String {
        let mut text = match self.state {
            ChecksState::None => "no checks have reported".to_owned(),
            ChecksState::Success => format!("all {} check(s) passed", self.total),
            ChecksState::Pending => format!("{} of {} check(s) still running", self.pending, self.total),
            ChecksState::Failure => {
                format!("{} of {} check(s) failed: {}", self.failed, self.total, self.failing.join(", "))
            }
        };
        if self.state == ChecksState::Failure && self.failed as usize > self.failing.len() {
            text.push_str(", …");
        }
        if !self.unreadable.is_empty() {
            text.push_str(&format!(" (Arno may not read {}: see docs/github.md)", self.unreadable.join(" or ")));
        }
        text
    }
}

/// Open a pull request from `branch` into `base`.
#[derive(Debug, Clone)]
pub struct NewPull {
    pub branch: String,
    pub base: String,
    pub title: String,
    pub body: String,
}

/// Review on the provider: what hosted providers add to a repository (GitHub pull requests,
/// GitLab merge requests). Merging stays on the provider, with its reviews and protections.
pub trait Reviews: Send + Sync {
    /// The open pull request from `branch`, if there is one.
    fn open_pull_for<'a>(&'a self, branch: &'a str) -> BoxFuture<'a, GitResult<Option<PullRequest>>>;
    /// Open one; when the provider says one is open for the branch already, that one.
    fn open_pull(&self, new: NewPull) -> BoxFuture<'_, GitResult<PullRequest>>;
    /// A new title and description.
    fn update_pull<'a>(&'a self, number: u64, title: &'a str, body: &'a str) -> BoxFuture<'a, GitResult<PullRequest>>;
    fn pull(&self, number: u64) -> BoxFuture<'_, GitResult<PullRequest>>;
    /// The checks on commit `sha` (a pull request's head). Kinds of checks the provider refuses
    /// to show are listed in [`Checks::unreadable`], not an error.
    fn checks<'a>(&'a self, sha: &'a str) -> BoxFuture<'a, GitResult<Checks>>;
}

/// A person's permission on a repository, highest first (GitHub's base roles; GitLab's access
/// levels map onto them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepoPermission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
}

impl RepoPermission {
    pub const ALL: [RepoPermission; 5] = [
        RepoPermission::Admin,
        RepoPermission::Maintain,
        RepoPermission::Write,
        RepoPermission::Triage,
        RepoPermission::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RepoPermission::Admin => "admin",
            RepoPermission::Maintain => "maintain",
            RepoPermission::Write => "write",
            RepoPermission::Triage => "triage",
            RepoPermission::Read => "read",
        }
    }
}

/// Someone with access to a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collaborator {
    pub login: String,
    /// The provider's numeric id of the account.
    pub id: i64,
    pub permission: RepoPermission,
}

/// Who may do what in the repository, as the provider has it (GitHub collaborators, through
/// teams, the organisation and the enterprise included).
pub trait Permissions: Send + Sync {
    /// Everyone with access and their highest permission (at most [`MAX_COLLABORATORS`]).
    fn collaborators(&self) -> BoxFuture<'_, GitResult<Vec<Collaborator>>>;
}

/// Collaborators read per repository.
pub const MAX_COLLABORATORS: usize = 10_000;

/// The operations Arno needs from a repository. All methods are cheap to call concurrently;
/// blocking implementations run off the async runtime.
pub trait GitProvider: Send + Sync {
    /// `local`, `github`, `gitlab`.
    fn kind(&self) -> &'static str;

    /// The default branch and its head commit (`commit: None` in a repository without commits).
    fn default_branch(&self) -> BoxFuture<'_, GitResult<BranchHead>>;

    /// The commit a branch name, full ref name or commit id points at.
    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, GitResult<ObjectId>>;

    /// Files (blobs and symlinks, not trees) under `prefix` at `commit`, in path order, `limit`
    /// per page; pass the returned cursor to continue. Files beyond [`MAX_TREE_DEPTH`] or
    /// [`MAX_PATH_BYTES`] are left out and counted in [`Page::skipped`].
    fn list_files<'a>(
        &'a self,
        commit: &'a str,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<FileEntry>>>;

    /// A file's bytes at `commit`; `NotFound` if there is no such file (or it lies beyond the limits).
    fn read_file<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Vec<u8>>>;

    /// Many files' bytes at `commit`, in the order asked; `NotFound` if one is missing. Hosted
    /// providers override it to read in batches (GitHub: GraphQL, a hundred-odd blobs a query).
    fn read_files<'a>(&'a self, commit: &'a str, paths: &'a [String]) -> BoxFuture<'a, GitResult<Vec<Vec<u8>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(paths.len());
            for path in paths {
                out.push(self.read_file(commit, path).await?);
            }
            Ok(out)
        })
    }

    /// Create `name` at `from` (a commit id); `Conflict` if it exists.
    fn create_branch<'a>(&'a self, name: &'a str, from: &'a str) -> BoxFuture<'a, GitResult<()>>;

    /// Commit a set of changes on a branch (see [`CommitRequest`]). An empty `parent` starts the
    /// branch with a commit of its own (a new repository's first commit). Weaker on GitHub: a
    /// repository without any commit takes none through the API (`Invalid`); and the branch is
    /// moved with `force: false` after its head was read again, so only a rewind in the
    /// milliseconds between that read and the move goes unseen.
    fn commit(&self, request: CommitRequest) -> BoxFuture<'_, GitResult<CommitInfo>>;

    /// Paths that differ between two commits, in path order, `limit` per page; as with
    /// [`GitProvider::list_files`], what lies beyond the limits is left out and counted.
    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<DiffEntry>>>;

    /// The best common ancestor of two commits (`None` for unrelated histories).
    fn merge_base<'a>(&'a self, a: &'a str, b: &'a str) -> BoxFuture<'a, GitResult<Option<ObjectId>>>;

    /// Move `branch` from `expected` to `to`, which must descend from `expected` (never a force).
    fn fast_forward<'a>(&'a self, branch: &'a str, expected: &'a str, to: &'a str) -> BoxFuture<'a, GitResult<()>>;

    /// Merge a commit into a branch (see [`MergeRequest`]); returns the branch's new head.
    /// Nothing to merge is `Invalid`, irreconcilable changes are `MergeConflict`, a moved branch
    /// is `Conflict`, a merge commit that would have to merge paths beyond the limits is `Limit`.
    ///
    /// Weaker on GitHub: the merge commit is GitHub's (its author is the App, not
    /// `request.author`), GitHub checks the branch head only as Arno read it just before (a push
    /// in between is merged into, not refused), and a conflict names the paths both sides
    /// changed, since GitHub does not say which of them conflict.
    fn merge(&self, request: MergeRequest) -> BoxFuture<'_, GitResult<CommitInfo>>;

    /// The newest commit reachable from `commit` that changed `path`.
    fn last_commit<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Option<CommitInfo>>>;

    /// Repository permissions, where the provider has them (not the local provider).
    fn permissions(&self) -> Option<&dyn Permissions> {
        None
    }

    /// Pull requests, where the provider has them (not the local provider: Arno's own change
    /// requests serve there).
    fn reviews(&self) -> Option<&dyn Reviews> {
        None
    }
}

/// A git branch name Arno accepts (`git check-ref-format --branch` rules, conservatively).
pub fn valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.contains("/.")
        && name != "HEAD"
        && name.chars().all(|c| !c.is_control() && !" ~^:?*[\\".contains(c))
}

/// A repository path Arno accepts in a commit: relative, `/`-separated, no `.`/`..`/`.git` parts,
/// within [`MAX_TREE_DEPTH`] and [`MAX_PATH_BYTES`].
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path_limit_problem(path).is_none()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.eq_ignore_ascii_case(".git")
                && !part.contains('\0')
        })
        && !path.contains('\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_and_paths() {
        for ok in ["main", "arno/alice", "feature/x-1", "release-2.0"] {
            assert!(valid_branch_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a..b", "a b", "a~1", "x.lock", "a/", "HEAD", "a/.b", "a:b", "a@{1}"] {
            assert!(!valid_branch_name(bad), "{bad}");
        }
        for ok in ["a.md", "Design_system/Button.md", ".arno/config.json"] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", ".git/config", "x/.GIT/y", "a\\b"] {
            assert!(!valid_path(bad), "{bad}");
        }
    }

    #[test]
    fn paths_beyond_the_limits_are_not_valid() {
        let deep = |folders: usize| format!("{}x.md", "d/".repeat(folders));
        assert!(valid_path(&deep(MAX_TREE_DEPTH)) && path_limit_problem(&deep(MAX_TREE_DEPTH)).is_none());
        assert!(!valid_path(&deep(MAX_TREE_DEPTH + 1)));
        assert_eq!(
            path_limit_problem(&deep(30_000)).unwrap(),
            "is 30000 folders deep; Arno accepts at most 64 folders",
            "depth is named first, whatever the length"
        );
        let long = |bytes: usize| format!("{}/x.md", "a".repeat(bytes - 5));
        assert!(valid_path(&long(MAX_PATH_BYTES)));
        assert!(!valid_path(&long(MAX_PATH_BYTES + 1)));
        assert!(path_limit_problem(&long(5000)).unwrap().contains("5000 bytes long"));
    }

    #[test]
    fn skipped_keeps_the_first_path_in_order_and_cuts_it() {
        let mut s = Skipped::default();
        assert!(s.is_empty());
        s.note("b", "c");
        s.note("", "a");
        s.note("b", "d");
        assert_eq!((s.count, s.first.as_deref()), (3, Some("a")));
        let mut long = Skipped::default();
        long.note(&"é".repeat(150), "x");
        let first = long.first.unwrap();
        assert!(first.ends_with('…') && first.len() <= Skipped::EXAMPLE_BYTES + '…'.len_utf8(), "{first}");
    }
}

//! The local provider: a git repository on the appliance's disk, read and written with gix.
//!
//! Every gix call runs on the blocking pool. Writes build objects directly (blobs, trees through
//! gix's tree editor, a commit) and move the branch with a compare-and-swap reference edit, so
//! there is no working tree or index to keep in step, and a branch that moved under us (another
//! process, a developer's push) is a conflict rather than lost work. A repository with a working
//! tree is never committed to on its checked-out branch, as `git push` refuses by default
//! (`receive.denyCurrentBranch`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod trees;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use gix::ObjectId as GixId;
use gix::refs::transaction::PreviousValue;
use trees::{diff_trees, entry_at, log_skipped, walk};

use super::{
    BranchHead, Change, CommitInfo, CommitRequest, DiffEntry, FileEntry, GitError, GitProvider, GitResult,
    MAX_PATH_BYTES, MAX_TREE_DEPTH, MergeMode, MergeRequest, ObjectId, Page, Person, Skipped,
};

/// Arno commits on behalf of a user: the user is the author, Arno the committer.
const COMMITTER_NAME: &str = "Arno";
const COMMITTER_EMAIL: &str = "arno@localhost";
/// How far back `last_commit` looks before giving up.
const HISTORY_LIMIT: usize = 100_000;

#[derive(Clone)]
pub struct LocalProvider {
    repo: Arc<gix::ThreadSafeRepository>,
    path: PathBuf,
    /// Serialises this process's commits to one repository; other writers are caught by the
    /// reference compare-and-swap.
    write_lock: Arc<std::sync::Mutex<()>>,
}

fn upstream(e: impl std::fmt::Display) -> GitError {
    GitError::Upstream(e.to_string())
}

impl LocalProvider {
    /// Open an existing repository (bare or with a working tree). Blocking.
    pub fn open(path: &Path) -> GitResult<LocalProvider> {
        // Isolated: the server's environment and the machine's global git config must not change
        // what Arno reads or writes.
        let repo = gix::open_opts(path, gix::open::Options::isolated())
            .map_err(|e| GitError::NotFound(format!("{} is not a git repository ({e})", path.display())))?;
        Ok(LocalProvider {
            repo: Arc::new(repo.into_sync()),
            path: path.to_owned(),
            write_lock: Arc::new(std::sync::Mutex::new(())),
        })
    }

    /// Create a new bare repository whose HEAD names `default_branch`. Blocking.
    pub fn init(path: &Path, default_branch: &str) -> GitResult<LocalProvider> {
        if !super::valid_branch_name(default_branch) {
            return Err(GitError::Invalid(format!("{default_branch:?} is not a valid branch name")));
        }
        if path.exists() {
            return Err(GitError::Conflict(format!("{} already exists", path.display())));
        }
        let repo = gix::init_bare(path).map_err(upstream)?;
        // HEAD is a symbolic ref to the (unborn) default branch.
        std::fs::write(repo.git_dir().join("HEAD"), format!("ref: refs/heads/{default_branch}\n")).map_err(upstream)?;
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&gix::Repository) -> GitResult<T> + Send + 'static,
    ) -> GitResult<T> {
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || f(&repo.to_thread_local()))
            .await
            .map_err(|e| GitError::Upstream(format!("git task failed: {e}")))?
    }
}

fn arno_signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: COMMITTER_NAME.into(),
        email: COMMITTER_EMAIL.into(),
        time: gix::date::Time::now_utc(),
    }
}

fn parse_id(id: &str) -> GitResult<GixId> {
    GixId::from_hex(id.as_bytes()).map_err(|_| GitError::Invalid(format!("{id:?} is not a commit id")))
}

/// A branch name, `refs/…` name or hex commit id → the commit id.
fn resolve_in(repo: &gix::Repository, reference: &str) -> GitResult<GixId> {
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        let id = parse_id(reference)?;
        repo.find_commit(id).map_err(|_| GitError::NotFound(format!("commit {reference}")))?;
        return Ok(id);
    }
    let full = if reference.starts_with("refs/") { reference.to_owned() } else { format!("refs/heads/{reference}") };
    let mut found = repo
        .try_find_reference(full.as_str())
        .map_err(|_| GitError::Invalid(format!("{reference:?} is not a valid reference name")))?
        .ok_or_else(|| GitError::NotFound(format!("branch {reference}")))?;
    let id = found.peel_to_id().map_err(upstream)?;
    Ok(id.detach())
}

fn tree_of(repo: &gix::Repository, commit: GixId) -> GitResult<GixId> {
    let commit = repo.find_commit(commit).map_err(|_| GitError::NotFound(format!("commit {commit}")))?;
    Ok(commit.tree_id().map_err(upstream)?.detach())
}

/// `refs/heads/{branch}` for a branch Arno may move: a valid name, and not the branch checked out
/// in a working tree.
fn movable_branch(repo: &gix::Repository, branch: &str) -> GitResult<String> {
    if !super::valid_branch_name(branch) {
        return Err(GitError::Invalid(format!("{branch:?} is not a valid branch name")));
    }
    let full = format!("refs/heads/{branch}");
    if !repo.is_bare() && repo.head_name().map_err(upstream)?.is_some_and(|h| h.as_bstr() == full.as_str()) {
        return Err(GitError::Conflict(format!(
            "branch {branch} is checked out in the repository's working tree; Arno does not move it"
        )));
    }
    Ok(full)
}

fn branch_head(repo: &gix::Repository, full: &str) -> GitResult<Option<GixId>> {
    Ok(match repo.try_find_reference(full).map_err(upstream)? {
        Some(mut r) => Some(r.peel_to_id().map_err(upstream)?.detach()),
        None => None,
    })
}

fn merge_base_of(repo: &gix::Repository, a: GixId, b: GixId) -> GitResult<Option<GixId>> {
    if a == b {
        return Ok(Some(a));
    }
    Ok(repo.merge_base(a, b).map_err(upstream)?.map(|id| id.detach()))
}

/// Compare-and-swap `full` from `expected` to `to`.
fn move_branch(
    repo: &gix::Repository,
    branch: &str,
    full: &str,
    expected: GixId,
    to: GixId,
    why: &str,
) -> GitResult<()> {
    let full_name: gix::refs::FullName =
        full.try_into().map_err(|_| GitError::Invalid(format!("{branch:?} is not a valid branch name")))?;
    let edit = gix::refs::transaction::RefEdit::update(
        full_name,
        to,
        PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
        why.to_owned(),
    );
    let mut buf = gix::date::parse::TimeBuf::default();
    let committer = arno_signature();
    repo.edit_references_as([edit], Some(committer.to_ref(&mut buf)))
        .map_err(|e| GitError::Conflict(format!("branch {branch} could not be moved ({e}); re-read it and retry")))?;
    Ok(())
}

/// Write a commit of `tree` with `parents` (the first is the branch's current head) and move the
/// branch to it; the author is the user, the committer Arno.
fn commit_on(
    repo: &gix::Repository,
    branch: &str,
    full: &str,
    author: &Person,
    message: &str,
    tree: GixId,
    parents: Vec<GixId>,
) -> GitResult<GixId> {
    let expected = parents.first().copied();
    let committer = arno_signature();
    let author_sig = gix::actor::Signature {
        name: author.name.as_str().into(),
        email: author.email.as_str().into(),
        time: committer.time,
    };
    let (mut b1, mut b2) = (gix::date::parse::TimeBuf::default(), gix::date::parse::TimeBuf::default());
    let id = repo
        .commit_as(committer.to_ref(&mut b1), author_sig.to_ref(&mut b2), full, message, tree, parents)
        .map_err(|e| {
            // Another writer between our check and the locked update is a conflict; anything else is a failure.
            let now = repo.try_find_reference(full).ok().flatten().and_then(|mut r| r.peel_to_id().ok());
            if now.map(|id| id.detach()) != expected {
                GitError::Conflict(format!("branch {branch} moved; re-read it and retry"))
            } else {
                GitError::Upstream(format!("branch {branch} could not be moved: {e}"))
            }
        })?
        .detach();
    Ok(id)
}

fn commit_info(repo: &gix::Repository, id: GixId) -> GitResult<CommitInfo> {
    let commit = repo.find_commit(id).map_err(upstream)?;
    let author = commit.author().map_err(upstream)?;
    let time = author.time().map_err(upstream)?;
    Ok(CommitInfo {
        id: id.to_string(),
        message: commit.message_raw_sloppy().to_string(),
        author: Person { name: author.name.to_string(), email: author.email.to_string() },
        time_ms: time.seconds.saturating_mul(1000),
    })
}

fn paginate<T>(mut items: Vec<T>, key: impl Fn(&T) -> &str, cursor: Option<&str>, limit: usize) -> Page<T> {
    if let Some(after) = cursor {
        items.retain(|item| key(item) > after);
    }
    let limit = limit.clamp(1, 10_000);
    let next = (items.len() > limit).then(|| key(&items[limit - 1]).to_owned());
    items.truncate(limit);
    Page { items, next, skipped: Skipped::default() }
}

impl GitProvider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn default_branch(&self) -> BoxFuture<'_, GitResult<BranchHead>> {
        self.run(|repo| {
            let name = repo.head_name().map_err(upstream)?;
            let Some(name) = name else { return Err(GitError::Upstream("HEAD is detached".into())) };
            let short = name.shorten().to_string();
            let commit = match repo.try_find_reference(name.as_bstr()).map_err(upstream)? {
                None => None,
                Some(mut r) => Some(r.peel_to_id().map_err(upstream)?.to_string()),
            };
            Ok(BranchHead { name: short, commit })
        })
        .boxed()
    }

    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, GitResult<ObjectId>> {
        let reference = reference.to_owned();
        self.run(move |repo| Ok(resolve_in(repo, &reference)?.to_string())).boxed()
    }

    fn list_files<'a>(
        &'a self,
        commit: &'a str,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<FileEntry>>> {
        let (commit, prefix, cursor) =
            (commit.to_owned(), prefix.trim_matches('/').to_owned(), cursor.map(str::to_owned));
        self.run(move |repo| {
            let root = tree_of(repo, parse_id(&commit)?)?;
            let start = if prefix.is_empty() {
                Some(root)
            } else {
                entry_at(repo, root, &prefix)?.filter(|(_, is_tree)| *is_tree).map(|(id, _)| id)
            };
            let (mut found, skipped) = match start {
                // `entry_at` found it, so the prefix is within the limits.
                Some(tree) => walk(repo, tree, &prefix, if prefix.is_empty() { 0 } else { prefix.split('/').count() })?,
                None => (vec![], Skipped::default()),
            };
            log_skipped("list_files", &skipped);
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let page = paginate(found, |(path, _)| path.as_str(), cursor.as_deref(), limit);
            let items = page
                .items
                .into_iter()
                .map(|(path, id)| {
                    let size = repo.find_header(id).map_err(upstream)?.size();
                    Ok(FileEntry { path, blob_id: id.to_string(), size })
                })
                .collect::<GitResult<Vec<_>>>()?;
            Ok(Page { items, next: page.next, skipped })
        })
        .boxed()
    }

    fn read_file<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Vec<u8>>> {
        let (commit, path) = (commit.to_owned(), path.to_owned());
        self.run(move |repo| {
            let tree = tree_of(repo, parse_id(&commit)?)?;
            match entry_at(repo, tree, &path)? {
                Some((id, false)) => Ok(repo.find_object(id).map_err(upstream)?.detach().data),
                _ => Err(GitError::NotFound(format!("file {path}"))),
            }
        })
        .boxed()
    }

    fn create_branch<'a>(&'a self, name: &'a str, from: &'a str) -> BoxFuture<'a, GitResult<()>> {
        let (name, from) = (name.to_owned(), from.to_owned());
        self.run(move |repo| {
            if !super::valid_branch_name(&name) {
                return Err(GitError::Invalid(format!("{name:?} is not a valid branch name")));
            }
            let target = resolve_in(repo, &from)?;
            let full = format!("refs/heads/{name}");
            if repo.try_find_reference(full.as_str()).map_err(upstream)?.is_some() {
                return Err(GitError::Conflict(format!("branch {name} already exists")));
            }
            let full_name: gix::refs::FullName = full
                .as_str()
                .try_into()
                .map_err(|_| GitError::Invalid(format!("{name:?} is not a valid branch name")))?;
            let edit = gix::refs::transaction::RefEdit::update(
                full_name,
                target,
                PreviousValue::MustNotExist,
                format!("branch: Created from {from}"),
            );
            // Reflog entries need a committer; the server has no git identity of its own config.
            let mut buf = gix::date::parse::TimeBuf::default();
            let committer = arno_signature();
            repo.edit_references_as([edit], Some(committer.to_ref(&mut buf)))
                .map_err(|e| GitError::Conflict(format!("cannot create branch {name}: {e}")))?;
            Ok(())
        })
        .boxed()
    }

    fn commit(&self, request: CommitRequest) -> BoxFuture<'_, GitResult<CommitInfo>> {
        let lock = self.write_lock.clone();
        self.run(move |repo| {
            let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let CommitRequest { branch, parent, message, author, changes } = request;
            if changes.is_empty() {
                return Err(GitError::Invalid("a commit needs at least one change".into()));
            }
            let full = movable_branch(repo, &branch)?;
            // An empty parent means "create the branch" (first commit of a new repository).
            let parent_id = if parent.is_empty() { None } else { Some(parse_id(&parent)?) };
            if branch_head(repo, &full)? != parent_id {
                return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
            }
            let base_tree = match parent_id {
                Some(id) => tree_of(repo, id)?,
                None => GixId::empty_tree(repo.object_hash()),
            };
            let mut editor = repo.edit_tree(base_tree).map_err(upstream)?;
            for change in &changes {
                match change {
                    Change::Upsert { path, content } => {
                        if !super::valid_path(path) {
                            return Err(GitError::Invalid(format!("{path:?} is not a valid file path")));
                        }
                        let blob = repo.write_blob(content).map_err(upstream)?.detach();
                        editor.upsert(path.as_str(), gix::object::tree::EntryKind::Blob, blob).map_err(upstream)?;
                    }
                    Change::Delete { path } => {
                        if !matches!(entry_at(repo, base_tree, path)?, Some((_, false))) {
                            return Err(GitError::NotFound(format!("file {path}")));
                        }
                        editor.remove(path.as_str()).map_err(upstream)?;
                    }
                }
            }
            let tree = editor.write().map_err(upstream)?.detach();
            if tree == base_tree && parent_id.is_some() {
                return Err(GitError::Invalid("the changes leave every file as it was".into()));
            }
            let id = commit_on(repo, &branch, &full, &author, &message, tree, parent_id.into_iter().collect())?;
            commit_info(repo, id)
        })
        .boxed()
    }

    fn merge_base<'a>(&'a self, a: &'a str, b: &'a str) -> BoxFuture<'a, GitResult<Option<ObjectId>>> {
        let (a, b) = (a.to_owned(), b.to_owned());
        self.run(move |repo| {
            let (a, b) = (resolve_in(repo, &a)?, resolve_in(repo, &b)?);
            Ok(merge_base_of(repo, a, b)?.map(|id| id.to_string()))
        })
        .boxed()
    }

    fn fast_forward<'a>(&'a self, branch: &'a str, expected: &'a str, to: &'a str) -> BoxFuture<'a, GitResult<()>> {
        let lock = self.write_lock.clone();
        let (branch, expected, to) = (branch.to_owned(), expected.to_owned(), to.to_owned());
        self.run(move |repo| {
            let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let full = movable_branch(repo, &branch)?;
            let (expected, to) = (parse_id(&expected)?, resolve_in(repo, &to)?);
            if branch_head(repo, &full)? != Some(expected) {
                return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
            }
            if merge_base_of(repo, expected, to)? != Some(expected) {
                return Err(GitError::Conflict(format!("{to} does not descend from the head of {branch}")));
            }
            move_branch(repo, &branch, &full, expected, to, "fast-forward")
        })
        .boxed()
    }

    fn merge(&self, request: MergeRequest) -> BoxFuture<'_, GitResult<CommitInfo>> {
        let lock = self.write_lock.clone();
        self.run(move |repo| {
            let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let MergeRequest { branch, expected, source, mode, message, author } = request;
            let full = movable_branch(repo, &branch)?;
            let (expected, source) = (parse_id(&expected)?, resolve_in(repo, &source)?);
            if branch_head(repo, &full)? != Some(expected) {
                return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
            }
            let base = merge_base_of(repo, expected, source)?;
            if base == Some(source) {
                return Err(GitError::Invalid(format!("{branch} already contains every commit to merge")));
            }
            match mode {
                MergeMode::FastForward if base == Some(expected) => {
                    move_branch(repo, &branch, &full, expected, source, "merge (fast-forward)")?;
                    commit_info(repo, source)
                }
                MergeMode::FastForward => Err(GitError::Conflict(format!(
                    "{branch} has commits the other branch lacks; a fast-forward is impossible (use a merge commit)"
                ))),
                MergeMode::MergeCommit => {
                    let Some(base) = base else {
                        return Err(GitError::Invalid("the branches share no history".into()));
                    };
                    // gix's tree merge is iterative, but it records every changed entry with its
                    // full path: a chain of added folders would cost the square of its depth in
                    // memory. Our bounded diff of each side finds that first, and cheaply.
                    let base_tree = tree_of(repo, base)?;
                    for side in [expected, source] {
                        let (_, skipped) = diff_trees(repo, Some(base_tree), Some(tree_of(repo, side)?))?;
                        if let Some(first) = &skipped.first {
                            log_skipped("merge", &skipped);
                            return Err(GitError::Limit(format!(
                                "the branches change paths deeper than {MAX_TREE_DEPTH} folders or longer than \
                                 {MAX_PATH_BYTES} bytes (such as {first}), which Arno does not merge; merge them in git"
                            )));
                        }
                    }
                    let labels = gix::merge::blob::builtin_driver::text::Labels {
                        ancestor: None,
                        current: Some(branch.as_str().into()),
                        other: Some("source".into()),
                    };
                    let options = repo.tree_merge_options().map_err(upstream)?;
                    let mut outcome = repo.merge_commits(expected, source, labels, options.into()).map_err(upstream)?;
                    let how = gix::merge::tree::TreatAsUnresolved::default();
                    if outcome.tree_merge.has_unresolved_conflicts(how) {
                        let mut paths: Vec<String> = outcome
                            .tree_merge
                            .conflicts
                            .iter()
                            .filter(|c| c.is_unresolved(how))
                            .map(|c| c.ours.location().to_string())
                            .collect();
                        paths.sort();
                        paths.dedup();
                        return Err(GitError::MergeConflict(paths));
                    }
                    let tree = outcome.tree_merge.tree.write().map_err(upstream)?.detach();
                    let id = commit_on(repo, &branch, &full, &author, &message, tree, vec![expected, source])?;
                    commit_info(repo, id)
                }
            }
        })
        .boxed()
    }

    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<DiffEntry>>> {
        let (from, to, cursor) = (from.to_owned(), to.to_owned(), cursor.map(str::to_owned));
        self.run(move |repo| {
            let old = tree_of(repo, resolve_in(repo, &from)?)?;
            let new = tree_of(repo, resolve_in(repo, &to)?)?;
            let (mut out, skipped) = diff_trees(repo, Some(old), Some(new))?;
            log_skipped("diff", &skipped);
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(Page { skipped, ..paginate(out, |d| d.path.as_str(), cursor.as_deref(), limit) })
        })
        .boxed()
    }

    fn last_commit<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Option<CommitInfo>>> {
        let (commit, path) = (commit.to_owned(), path.to_owned());
        self.run(move |repo| {
            // First-parent history, like `git log --first-parent -1 -- PATH`.
            let mut current = resolve_in(repo, &commit)?;
            let mut entry = entry_at(repo, tree_of(repo, current)?, &path)?.map(|e| e.0);
            if entry.is_none() {
                return Ok(None);
            }
            for _ in 0..HISTORY_LIMIT {
                let parent = repo.find_commit(current).map_err(upstream)?.parent_ids().next().map(|p| p.detach());
                let Some(parent) = parent else { return commit_info(repo, current).map(Some) };
                let before = entry_at(repo, tree_of(repo, parent)?, &path)?.map(|e| e.0);
                if before != entry {
                    return commit_info(repo, current).map(Some);
                }
                (current, entry) = (parent, before);
            }
            Ok(None)
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use gix::objs::tree::EntryKind;

    use super::trees::tests::chain;
    use super::*;

    fn alice() -> Person {
        Person { name: "Alice".into(), email: "alice@example.com".into() }
    }

    #[tokio::test]
    async fn the_provider_lists_around_deep_trees_and_does_not_merge_them_with_a_merge_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.git");
        let provider = LocalProvider::init(&path, "main").unwrap();
        let request = |parent: &str, path: &str| CommitRequest {
            branch: "main".into(),
            parent: parent.into(),
            message: "m".into(),
            author: alice(),
            changes: vec![Change::Upsert { path: path.into(), content: b"x".to_vec() }],
        };
        let first = provider.commit(request("", "a.md")).await.unwrap();
        // Arno itself never writes beyond the limits.
        let too_deep = format!("{}x.md", "d/".repeat(MAX_TREE_DEPTH + 1));
        assert!(matches!(provider.commit(request(&first.id, &too_deep)).await, Err(GitError::Invalid(_))));
        // Someone else does: a branch with a chain 100 folders deep.
        let deep_commit = {
            let repo = gix::open_opts(&path, gix::open::Options::isolated()).unwrap();
            let base = tree_of(&repo, parse_id(&first.id).unwrap()).unwrap();
            let deep = chain(&repo, 100);
            let mut editor = repo.edit_tree(base).unwrap();
            editor.upsert("deep", EntryKind::Tree, deep).unwrap();
            let tree = editor.write().unwrap().detach();
            let full = "refs/heads/deep";
            let id = repo
                .commit_as(
                    arno_signature().to_ref(&mut Default::default()),
                    arno_signature().to_ref(&mut Default::default()),
                    full,
                    "deep",
                    tree,
                    [parse_id(&first.id).unwrap()],
                )
                .unwrap();
            id.to_string()
        };
        let page = provider.list_files(&deep_commit, "", None, 10).await.unwrap();
        assert_eq!(page.items.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a.md"]);
        assert_eq!(page.skipped.count, 1);
        let diff = provider.diff(&first.id, &deep_commit, None, 10).await.unwrap();
        assert!(diff.items.is_empty() && diff.skipped.count == 1, "{diff:?}");
        let deep_file = format!("deep/{}leaf.md", "d/".repeat(99));
        assert!(matches!(provider.read_file(&deep_commit, &deep_file).await, Err(GitError::NotFound(_))));
        assert_eq!(provider.last_commit(&deep_commit, &deep_file).await.unwrap(), None);

        // main moves on, so only a merge commit could bring the chain in: refused.
        let second = provider.commit(request(&first.id, "b.md")).await.unwrap();
        let merge = |mode| MergeRequest {
            branch: "main".into(),
            expected: second.id.clone(),
            source: deep_commit.clone(),
            mode,
            message: "merge".into(),
            author: alice(),
        };
        match provider.merge(merge(MergeMode::MergeCommit)).await {
            Err(GitError::Limit(m)) => assert!(m.contains("64 folders") && m.contains("merge them in git"), "{m}"),
            other => panic!("expected a limit error, got {other:?}"),
        }
        assert_eq!(provider.resolve("main").await.unwrap(), second.id, "nothing moved");
    }
}

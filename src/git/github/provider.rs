//! [`GitProvider`] over GitHub's REST and GraphQL APIs, for one repository an installation of
//! the App can reach.
//!
//! Reads list a commit's whole tree once (one recursive listing, cached by commit id, since a
//! commit never changes) and fetch blobs by id, in GraphQL batches for many at once. Writes go
//! through the Git Data API: blobs (binary content only; text rides inline in the tree) → a tree
//! on `base_tree` with deletions as `sha: null` → a commit whose author is the user and whose
//! committer is Arno → the branch moved with `force: false`. `force: false` only refuses a move
//! that is not a fast-forward, so the branch head is read first, and again just before the
//! move: a branch someone rewound is a conflict, never overwritten.
//!
//! Where GitHub gives weaker guarantees than git on disk, this says so (see the trait's notes):
//! a merge commit is made by GitHub (author: the App), and GitHub merges into whatever the head
//! is when the request lands — Arno checks the head just before.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::{Auth, Client, Response};
use crate::git::{
    BranchHead, Change, CommitInfo, CommitRequest, DiffEntry, DiffStatus, FileEntry, GitError, GitProvider, GitResult,
    MAX_TREE_DEPTH, MergeMode, MergeRequest, ObjectId, Page, Person, Reviews, Skipped,
};

/// Arno commits on behalf of a user: the user is the author, Arno the committer.
pub const COMMITTER_NAME: &str = "Arno";
pub const COMMITTER_EMAIL: &str = "arno@localhost";
/// Blobs per GraphQL query (GitHub allows 500,000 nodes; a query's size is what bounds it):
/// a first scan of 2,000 specs is 8 queries.
pub const GRAPHQL_BATCH: usize = 250;
/// Text per GraphQL answer, about (sizes from the tree listing).
pub const GRAPHQL_BATCH_BYTES: u64 = 4 << 20;
/// Tree listings kept per repository.
const LISTINGS_KEPT: usize = 8;

/// One file of a listing.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    sha: String,
    size: u64,
}

/// A commit's files in path order, what the limits left out, and its root tree.
#[derive(Debug)]
struct Listing {
    tree: String,
    files: Vec<Entry>,
    skipped: Skipped,
}

/// Listings by commit id, and the order they came in (the oldest goes first).
type Listings = (HashMap<String, Arc<Listing>>, VecDeque<String>);

pub struct GitHubProvider {
    pub(super) client: Arc<Client>,
    pub(super) owner: String,
    name: String,
    installation: u64,
    listings: Mutex<Listings>,
    /// Serialises this process's writes to the repository; others are caught by the head checks.
    write_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GitHubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitHubProvider({}/{} via {})", self.owner, self.name, self.client.connection())
    }
}

#[derive(Deserialize)]
struct RawPerson {
    name: String,
    email: String,
    date: String,
}

#[derive(Deserialize)]
struct RawTreeEntry {
    path: String,
    mode: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct RawTree {
    sha: String,
    tree: Vec<RawTreeEntry>,
    truncated: bool,
}

pub(super) fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn commit_id(s: &str) -> GitResult<&str> {
    if is_commit_id(s) { Ok(s) } else { Err(GitError::Invalid(format!("{s:?} is not a commit id"))) }
}

fn time_ms(date: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(date).map(|d| d.timestamp_millis()).unwrap_or(0)
}

/// What an unexpected answer means.
pub(super) fn failure(response: &Response, what: &str) -> GitError {
    let message = response.message();
    match response.status {
        401 => GitError::Unauthorized(message),
        403 => GitError::Unauthorized(format!("the App may not do this ({message}); check its permissions")),
        404 => GitError::NotFound(what.to_owned()),
        409 => GitError::Conflict(message),
        422 => GitError::Invalid(message),
        _ => GitError::Upstream(format!("{what}: {message}")),
    }
}

impl GitHubProvider {
    /// The provider for `owner/name` through `installation`.
    pub fn new(client: Arc<Client>, owner: &str, name: &str, installation: u64) -> GitHubProvider {
        GitHubProvider {
            client,
            owner: owner.to_owned(),
            name: name.to_owned(),
            installation,
            listings: Mutex::default(),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The provider for `owner/name` (`repository`), finding the installation that reaches it.
    pub async fn connect(client: Arc<Client>, repository: &str) -> GitResult<GitHubProvider> {
        let (owner, name) = split_repository(repository)?;
        let response = client.call(Auth::App, Method::GET, &["repos", owner, name, "installation"], &[], None).await?;
        if response.status != 200 {
            return Err(match response.status {
                404 => GitError::NotFound(format!(
                    "the App is not installed on {repository} (or the repository does not exist)"
                )),
                _ => failure(&response, repository),
            });
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let installation: Installation = response.json()?;
        Ok(GitHubProvider::new(client, owner, name, installation.id))
    }

    pub fn installation(&self) -> u64 {
        self.installation
    }

    pub(super) fn auth(&self) -> Auth {
        Auth::Installation(self.installation)
    }

    pub(super) async fn get(&self, rest: &[&str], query: &[(&str, &str)]) -> GitResult<Response> {
        let mut segments = vec!["repos", self.owner.as_str(), self.name.as_str()];
        segments.extend_from_slice(rest);
        self.client.call(self.auth(), Method::GET, &segments, query, None).await
    }

    pub(super) async fn send(&self, method: Method, rest: &[&str], body: serde_json::Value) -> GitResult<Response> {
        let mut segments = vec!["repos", self.owner.as_str(), self.name.as_str()];
        segments.extend_from_slice(rest);
        self.client.call(self.auth(), method, &segments, &[], Some(&body)).await
    }

    /// A branch's head (`None` when there is no such branch, or the repository is empty).
    async fn head(&self, branch: &str) -> GitResult<Option<String>> {
        let mut rest = vec!["git", "ref", "heads"];
        rest.extend(branch.split('/'));
        let response = self.get(&rest, &[]).await?;
        match response.status {
            200 => {
                #[derive(Deserialize)]
                struct Object {
                    sha: String,
                    #[serde(rename = "type")]
                    kind: String,
                }
                #[derive(Deserialize)]
                struct Ref {
                    object: Object,
                }
                let r: Ref = response.json()?;
                if r.object.kind != "commit" {
                    return Err(GitError::Invalid(format!("branch {branch} does not point at a commit")));
                }
                Ok(Some(r.object.sha))
            }
            404 | 409 => Ok(None),
            _ => Err(failure(&response, &format!("branch {branch}"))),
        }
    }

    /// One recursive tree listing, walking subtrees separately where GitHub cut it short.
    async fn listing(&self, commit: &str) -> GitResult<Arc<Listing>> {
        if let Some(hit) = self.listings.lock().expect("listings lock").0.get(commit) {
            return Ok(hit.clone());
        }
        let mut files = Vec::new();
        let mut units = HashSet::new();
        let mut skipped = Skipped::default();
        let mut root = None;
        // (tree-ish, prefix, recursive?)
        let mut pending = vec![(commit.to_owned(), String::new(), true)];
        while let Some((ish, prefix, recursive)) = pending.pop() {
            let query: &[(&str, &str)] = if recursive { &[("recursive", "1")] } else { &[] };
            let response = self.get(&["git", "trees", &ish], query).await?;
            if response.status != 200 {
                return Err(match response.status {
                    404 | 409 => GitError::NotFound(format!("commit {commit}")),
                    _ => failure(&response, &format!("commit {commit}")),
                });
            }
            let tree: RawTree = response.json()?;
            root.get_or_insert_with(|| tree.sha.clone());
            if tree.truncated && recursive {
                // Too big for one answer: this level alone, then each folder on its own.
                pending.push((tree.sha, prefix, false));
                continue;
            }
            for e in tree.tree {
                let path = if prefix.is_empty() { e.path } else { format!("{prefix}/{}", e.path) };
                if e.kind == "tree" {
                    if !recursive {
                        pending.push((e.sha, path, true));
                    }
                    continue;
                }
                // Files only: blobs and symlinks (submodules are commits, not files).
                if e.kind != "blob" || e.mode == "160000" {
                    continue;
                }
                if crate::git::path_limit_problem(&path).is_some() {
                    // A folder beyond the depth counts once, as in the local provider.
                    let parts: Vec<&str> = path.split('/').collect();
                    let unit = if parts.len() > MAX_TREE_DEPTH + 1 { parts[..=MAX_TREE_DEPTH].join("/") } else { path };
                    if units.insert(unit.clone()) {
                        let (dir, name) = unit.rsplit_once('/').unwrap_or(("", unit.as_str()));
                        skipped.note(dir, name);
                    }
                    continue;
                }
                files.push(Entry { path, sha: e.sha, size: e.size.unwrap_or(0) });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let listing = Arc::new(Listing { tree: root.unwrap_or_default(), files, skipped });
        let mut cache = self.listings.lock().expect("listings lock");
        if cache.0.insert(commit.to_owned(), listing.clone()).is_none() {
            cache.1.push_back(commit.to_owned());
            if cache.1.len() > LISTINGS_KEPT {
                let old = cache.1.pop_front().expect("non-empty");
                cache.0.remove(&old);
            }
        }
        Ok(listing)
    }

    /// A commit id for a branch name, `refs/…` name or commit id.
    async fn resolve_ref(&self, reference: &str) -> GitResult<String> {
        if is_commit_id(reference) {
            let response = self.get(&["git", "commits", reference], &[]).await?;
            return match response.status {
                200 => Ok(reference.to_ascii_lowercase()),
                404 | 409 | 422 => Err(GitError::NotFound(format!("commit {reference}"))),
                _ => Err(failure(&response, reference)),
            };
        }
        let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
        if branch.starts_with("refs/") || !crate::git::valid_branch_name(branch) {
            return Err(GitError::NotFound(format!("reference {reference}")));
        }
        self.head(branch).await?.ok_or_else(|| GitError::NotFound(format!("reference {reference}")))
    }

    async fn blob(&self, sha: &str) -> GitResult<Vec<u8>> {
        let response = self.get(&["git", "blobs", sha], &[]).await?;
        if response.status != 200 {
            return Err(failure(&response, &format!("blob {sha}")));
        }
        #[derive(Deserialize)]
        struct Blob {
            content: String,
            encoding: String,
        }
        let blob: Blob = response.json()?;
        if blob.encoding != "base64" {
            return Ok(blob.content.into_bytes());
        }
        let compact: String = blob.content.split_ascii_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| GitError::Upstream(format!("blob {sha}: content Arno cannot decode")))
    }

    /// Many blobs by id: GraphQL batches of [`GRAPHQL_BATCH`] (text blobs), the REST blob
    /// endpoint for what GraphQL does not give whole (binary or truncated). Unknown ids are
    /// left out of the answer.
    pub async fn read_blobs(&self, ids: &[ObjectId]) -> GitResult<HashMap<ObjectId, Vec<u8>>> {
        let sized: Vec<(ObjectId, u64)> = ids.iter().map(|id| (id.clone(), 0)).collect();
        self.read_blobs_sized(&sized).await
    }

    /// [`Self::read_blobs`] with the sizes a listing gave: a batch holds at most
    /// [`GRAPHQL_BATCH`] blobs and about [`GRAPHQL_BATCH_BYTES`] of text.
    async fn read_blobs_sized(&self, ids: &[(ObjectId, u64)]) -> GitResult<HashMap<ObjectId, Vec<u8>>> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut wanted: Vec<(&str, u64)> =
            ids.iter().map(|(id, size)| (id.as_str(), *size)).filter(|(id, _)| is_commit_id(id)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut batches: Vec<Vec<&str>> = vec![];
        let mut bytes = 0;
        for (id, size) in wanted {
            match batches.last_mut() {
                Some(batch) if batch.len() < GRAPHQL_BATCH && bytes + size <= GRAPHQL_BATCH_BYTES => {
                    batch.push(id);
                    bytes += size;
                }
                _ => {
                    batches.push(vec![id]);
                    bytes = size;
                }
            }
        }
        let mut whole_by_rest = Vec::new();
        for batch in &batches {
            let mut query =
                String::from("query($owner: String!, $name: String!) { repository(owner: $owner, name: $name) {");
            for (i, id) in batch.iter().enumerate() {
                query.push_str(&format!(
                    " b{i}: object(oid: \"{id}\") {{ ... on Blob {{ oid byteSize isBinary isTruncated text }} }}"
                ));
            }
            query.push_str(" } }");
            let data =
                self.client.graphql(self.installation, &query, json!({"owner": self.owner, "name": self.name})).await?;
            let repo = data.get("repository").ok_or_else(|| GitError::NotFound("repository".into()))?;
            for (i, id) in batch.iter().enumerate() {
                let Some(blob) = repo.get(format!("b{i}")).filter(|b| !b.is_null()) else { continue };
                let text = blob.get("text").and_then(|t| t.as_str());
                let whole = blob.get("isTruncated").and_then(|t| t.as_bool()) == Some(false)
                    && blob.get("isBinary").and_then(|t| t.as_bool()) == Some(false);
                match text {
                    Some(text) if whole => {
                        out.insert((*id).to_owned(), text.as_bytes().to_vec());
                    }
                    _ => whole_by_rest.push(*id),
                }
            }
        }
        for id in whole_by_rest {
            match self.blob(id).await {
                Ok(bytes) => {
                    out.insert(id.to_owned(), bytes);
                }
                Err(GitError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn commit_info(sha: String, message: String, author: RawPerson) -> CommitInfo {
        CommitInfo {
            id: sha,
            message: message.trim_end_matches('\n').to_owned(),
            time_ms: time_ms(&author.date),
            author: Person { name: author.name, email: author.email },
        }
    }

    async fn git_commit(&self, sha: &str) -> GitResult<CommitInfo> {
        let response = self.get(&["git", "commits", sha], &[]).await?;
        if response.status != 200 {
            return Err(failure(&response, &format!("commit {sha}")));
        }
        #[derive(Deserialize)]
        struct GitCommit {
            sha: String,
            message: String,
            author: RawPerson,
        }
        let c: GitCommit = response.json()?;
        Ok(Self::commit_info(c.sha, c.message, c.author))
    }

    /// Move `branch` from `expected` to `to` with `force: false`, the head read again first.
    async fn move_branch(&self, branch: &str, expected: &str, to: &str) -> GitResult<()> {
        if self.head(branch).await?.as_deref() != Some(expected) {
            return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
        }
        let mut rest = vec!["git", "refs", "heads"];
        rest.extend(branch.split('/'));
        let response = self.send(Method::PATCH, &rest, json!({"sha": to, "force": false})).await?;
        match response.status {
            200 => Ok(()),
            422 | 409 => Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry"))),
            _ => Err(failure(&response, &format!("branch {branch}"))),
        }
    }

    async fn merge_base_of(&self, a: &str, b: &str) -> GitResult<Option<String>> {
        if a == b {
            return Ok(Some(a.to_owned()));
        }
        let basehead = format!("{a}...{b}");
        let response = self.get(&["compare", &basehead], &[("per_page", "1")]).await?;
        match response.status {
            200 => {
                #[derive(Deserialize)]
                struct Sha {
                    sha: String,
                }
                #[derive(Deserialize)]
                struct Comparison {
                    merge_base_commit: Sha,
                }
                Ok(Some(response.json::<Comparison>()?.merge_base_commit.sha))
            }
            404 if response.message().contains("No common ancestor") => Ok(None),
            _ => Err(failure(&response, &format!("compare {basehead}"))),
        }
    }

    async fn changed(&self, from: &str, to: &str) -> GitResult<(Vec<DiffEntry>, Skipped)> {
        let (old, new) = (self.listing(from).await?, self.listing(to).await?);
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.files.len() || j < new.files.len() {
            let (a, b) = (old.files.get(i), new.files.get(j));
            match (a, b) {
                (Some(a), Some(b)) if a.path == b.path => {
                    if a.sha != b.sha {
                        out.push(DiffEntry {
                            path: a.path.clone(),
                            status: DiffStatus::Modified,
                            old_blob: Some(a.sha.clone()),
                            new_blob: Some(b.sha.clone()),
                        });
                    }
                    (i, j) = (i + 1, j + 1);
                }
                (Some(a), b) if b.is_none_or(|b| a.path < b.path) => {
                    out.push(DiffEntry {
                        path: a.path.clone(),
                        status: DiffStatus::Deleted,
                        old_blob: Some(a.sha.clone()),
                        new_blob: None,
                    });
                    i += 1;
                }
                (_, Some(b)) => {
                    out.push(DiffEntry {
                        path: b.path.clone(),
                        status: DiffStatus::Added,
                        old_blob: None,
                        new_blob: Some(b.sha.clone()),
                    });
                    j += 1;
                }
                (_, None) => break,
            }
        }
        let mut skipped = new.skipped.clone();
        skipped.count += old.skipped.count;
        if let Some(first) = &old.skipped.first
            && skipped.first.as_ref().is_none_or(|f| first < f)
        {
            skipped.first = Some(first.clone());
        }
        Ok((out, skipped))
    }

    async fn write_commit(&self, request: CommitRequest) -> GitResult<CommitInfo> {
        let CommitRequest { branch, parent, message, author, changes } = request;
        if changes.is_empty() {
            return Err(GitError::Invalid("a commit needs at least one change".into()));
        }
        if !crate::git::valid_branch_name(&branch) {
            return Err(GitError::Invalid(format!("{branch:?} is not a valid branch name")));
        }
        for change in &changes {
            let (Change::Upsert { path, .. } | Change::Delete { path }) = change;
            if !crate::git::valid_path(path) {
                return Err(GitError::Invalid(format!("{path:?} is not a valid file path")));
            }
        }
        let parent_id = if parent.is_empty() { None } else { Some(commit_id(&parent)?.to_ascii_lowercase()) };
        let head = self.head(&branch).await?;
        if head != parent_id {
            return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
        }
        let base = match &parent_id {
            Some(id) => Some(self.listing(id).await?),
            None => None,
        };
        let mut entries = Vec::with_capacity(changes.len());
        for change in &changes {
            match change {
                Change::Upsert { path, content } => match std::str::from_utf8(content) {
                    Ok(text) => entries.push(json!({"path": path, "mode": "100644", "type": "blob", "content": text})),
                    Err(_) => {
                        let body = json!({
                            "content": base64::engine::general_purpose::STANDARD.encode(content),
                            "encoding": "base64",
                        });
                        let response = self.send(Method::POST, &["git", "blobs"], body).await?;
                        if response.status != 201 {
                            return Err(self.write_failure(&response, "blob"));
                        }
                        #[derive(Deserialize)]
                        struct Created {
                            sha: String,
                        }
                        let sha = response.json::<Created>()?.sha;
                        entries.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": sha}));
                    }
                },
                Change::Delete { path } => {
                    let exists =
                        base.as_ref().is_some_and(|b| b.files.binary_search_by(|e| e.path.as_str().cmp(path)).is_ok());
                    if !exists {
                        return Err(GitError::NotFound(format!("file {path}")));
                    }
                    entries.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": null}));
                }
            }
        }
        let mut tree_body = json!({"tree": entries});
        if let Some(base) = &base {
            tree_body["base_tree"] = json!(base.tree);
        }
        let response = self.send(Method::POST, &["git", "trees"], tree_body).await?;
        if response.status != 201 {
            return Err(self.write_failure(&response, "tree"));
        }
        #[derive(Deserialize)]
        struct Created {
            sha: String,
        }
        let tree = response.json::<Created>()?.sha;
        if base.as_ref().is_some_and(|b| b.tree == tree) {
            return Err(GitError::Invalid("the changes leave every file as it was".into()));
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = json!({
            "message": message,
            "tree": tree,
            "parents": parent_id.iter().collect::<Vec<_>>(),
            "author": {"name": author.name, "email": author.email, "date": now},
            "committer": {"name": COMMITTER_NAME, "email": COMMITTER_EMAIL, "date": now},
        });
        let response = self.send(Method::POST, &["git", "commits"], body).await?;
        if response.status != 201 {
            return Err(self.write_failure(&response, "commit"));
        }
        #[derive(Deserialize)]
        struct GitCommit {
            sha: String,
            message: String,
            author: RawPerson,
        }
        let created: GitCommit = response.json()?;
        match &parent_id {
            Some(parent) => self.move_branch(&branch, parent, &created.sha).await?,
            None => self.create_ref(&branch, &created.sha).await?,
        }
        Ok(Self::commit_info(created.sha, created.message, created.author))
    }

    fn write_failure(&self, response: &Response, what: &str) -> GitError {
        match response.status {
            409 => GitError::Invalid(format!(
                "GitHub writes no {what} to a repository without commits; push a first commit to {}/{}",
                self.owner, self.name
            )),
            _ => failure(response, what),
        }
    }

    async fn create_ref(&self, branch: &str, sha: &str) -> GitResult<()> {
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let response = self.send(Method::POST, &["git", "refs"], body).await?;
        match response.status {
            201 => Ok(()),
            422 if response.message().contains("already exists") => {
                Err(GitError::Conflict(format!("branch {branch} already exists")))
            }
            422 => Err(GitError::NotFound(format!("commit {sha}"))),
            _ => Err(self.write_failure(&response, "branch")),
        }
    }
}

/// `owner/name` → its two parts, as GitHub allows them.
pub fn split_repository(repository: &str) -> GitResult<(&str, &str)> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repository.split_once('/') {
        Some((owner, name)) if ok(owner) && ok(name) => Ok((owner, name)),
        _ => Err(GitError::Invalid(format!("{repository:?} is not an owner/name repository"))),
    }
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

impl GitProvider for GitHubProvider {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn default_branch(&self) -> BoxFuture<'_, GitResult<BranchHead>> {
        async move {
            let response = self.get(&[], &[]).await?;
            if response.status != 200 {
                return Err(failure(&response, &format!("repository {}/{}", self.owner, self.name)));
            }
            #[derive(Deserialize)]
            struct Repository {
                default_branch: String,
            }
            let name = response.json::<Repository>()?.default_branch;
            let commit = self.head(&name).await?;
            Ok(BranchHead { name, commit })
        }
        .boxed()
    }

    fn resolve<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, GitResult<ObjectId>> {
        self.resolve_ref(reference).boxed()
    }

    fn list_files<'a>(
        &'a self,
        commit: &'a str,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<FileEntry>>> {
        async move {
            let listing = self.listing(commit_id(commit)?).await?;
            let prefix = prefix.trim_matches('/');
            let under: Vec<FileEntry> = listing
                .files
                .iter()
                .filter(|e| prefix.is_empty() || e.path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
                .map(|e| FileEntry { path: e.path.clone(), blob_id: e.sha.clone(), size: e.size })
                .collect();
            let mut page = paginate(under, |f| f.path.as_str(), cursor, limit);
            page.skipped = if prefix.is_empty() {
                listing.skipped.clone()
            } else {
                // Only what lies under the prefix (the examples say which).
                let mut s = Skipped::default();
                if listing.skipped.first.as_deref().is_some_and(|f| f.starts_with(&format!("{prefix}/"))) {
                    s = listing.skipped.clone();
                }
                s
            };
            Ok(page)
        }
        .boxed()
    }

    fn read_file<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Vec<u8>>> {
        async move {
            let listing = self.listing(commit_id(commit)?).await?;
            let Ok(at) = listing.files.binary_search_by(|e| e.path.as_str().cmp(path)) else {
                return Err(GitError::NotFound(format!("file {path}")));
            };
            self.blob(&listing.files[at].sha).await
        }
        .boxed()
    }

    fn read_files<'a>(&'a self, commit: &'a str, paths: &'a [String]) -> BoxFuture<'a, GitResult<Vec<Vec<u8>>>> {
        async move {
            let listing = self.listing(commit_id(commit)?).await?;
            let mut ids = Vec::with_capacity(paths.len());
            for path in paths {
                let Ok(at) = listing.files.binary_search_by(|e| e.path.as_str().cmp(path)) else {
                    return Err(GitError::NotFound(format!("file {path}")));
                };
                ids.push((listing.files[at].sha.clone(), listing.files[at].size));
            }
            let blobs = self.read_blobs_sized(&ids).await?;
            ids.iter()
                .zip(paths)
                .map(|((id, _), path)| blobs.get(id).cloned().ok_or_else(|| GitError::NotFound(format!("file {path}"))))
                .collect()
        }
        .boxed()
    }

    fn create_branch<'a>(&'a self, name: &'a str, from: &'a str) -> BoxFuture<'a, GitResult<()>> {
        async move {
            if !crate::git::valid_branch_name(name) {
                return Err(GitError::Invalid(format!("{name:?} is not a valid branch name")));
            }
            let target = self.resolve_ref(from).await?;
            self.create_ref(name, &target).await
        }
        .boxed()
    }

    fn commit(&self, request: CommitRequest) -> BoxFuture<'_, GitResult<CommitInfo>> {
        async move {
            let _guard = self.write_lock.lock().await;
            self.write_commit(request).await
        }
        .boxed()
    }

    fn diff<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, GitResult<Page<DiffEntry>>> {
        async move {
            let (from, to) = (self.resolve_ref(from).await?, self.resolve_ref(to).await?);
            let (entries, skipped) = self.changed(&from, &to).await?;
            let mut page = paginate(entries, |d| d.path.as_str(), cursor, limit);
            page.skipped = skipped;
            Ok(page)
        }
        .boxed()
    }

    fn merge_base<'a>(&'a self, a: &'a str, b: &'a str) -> BoxFuture<'a, GitResult<Option<ObjectId>>> {
        async move {
            let (a, b) = (self.resolve_ref(a).await?, self.resolve_ref(b).await?);
            self.merge_base_of(&a, &b).await
        }
        .boxed()
    }

    fn fast_forward<'a>(&'a self, branch: &'a str, expected: &'a str, to: &'a str) -> BoxFuture<'a, GitResult<()>> {
        async move {
            let _guard = self.write_lock.lock().await;
            if !crate::git::valid_branch_name(branch) {
                return Err(GitError::Invalid(format!("{branch:?} is not a valid branch name")));
            }
            let (expected, to) = (commit_id(expected)?.to_ascii_lowercase(), self.resolve_ref(to).await?);
            if self.head(branch).await?.as_deref() != Some(expected.as_str()) {
                return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
            }
            if self.merge_base_of(&expected, &to).await?.as_deref() != Some(expected.as_str()) {
                return Err(GitError::Conflict(format!("{to} does not descend from the head of {branch}")));
            }
            self.move_branch(branch, &expected, &to).await
        }
        .boxed()
    }

    fn merge(&self, request: MergeRequest) -> BoxFuture<'_, GitResult<CommitInfo>> {
        async move {
            let _guard = self.write_lock.lock().await;
            let MergeRequest { branch, expected, source, mode, message, author: _ } = request;
            if !crate::git::valid_branch_name(&branch) {
                return Err(GitError::Invalid(format!("{branch:?} is not a valid branch name")));
            }
            let (expected, source) = (commit_id(&expected)?.to_ascii_lowercase(), self.resolve_ref(&source).await?);
            if self.head(&branch).await?.as_deref() != Some(expected.as_str()) {
                return Err(GitError::Conflict(format!("branch {branch} moved; re-read it and retry")));
            }
            let base = self.merge_base_of(&expected, &source).await?;
            if base.as_deref() == Some(source.as_str()) {
                return Err(GitError::Invalid(format!("{branch} already contains every commit to merge")));
            }
            match mode {
                MergeMode::FastForward if base.as_deref() == Some(expected.as_str()) => {
                    self.move_branch(&branch, &expected, &source).await?;
                    self.git_commit(&source).await
                }
                MergeMode::FastForward => Err(GitError::Conflict(format!(
                    "{branch} has commits the other branch lacks; a fast-forward is impossible (use a merge commit)"
                ))),
                MergeMode::MergeCommit => {
                    let Some(base) = base else {
                        return Err(GitError::Invalid("the branches share no history".into()));
                    };
                    let body = json!({"base": branch, "head": source, "commit_message": message});
                    let response = self.send(Method::POST, &["merges"], body).await?;
                    match response.status {
                        201 => {}
                        204 => {
                            return Err(GitError::Invalid(format!("{branch} already contains every commit to merge")));
                        }
                        409 => {
                            // GitHub does not say where; the paths both sides changed are where to look.
                            let (ours, _) = self.changed(&base, &expected).await?;
                            let (theirs, _) = self.changed(&base, &source).await?;
                            let theirs: HashSet<&str> = theirs.iter().map(|d| d.path.as_str()).collect();
                            let both =
                                ours.iter().map(|d| d.path.clone()).filter(|p| theirs.contains(p.as_str())).collect();
                            return Err(GitError::MergeConflict(both));
                        }
                        _ => return Err(failure(&response, &format!("merge into {branch}"))),
                    }
                    #[derive(Deserialize)]
                    struct Inner {
                        message: String,
                        author: RawPerson,
                    }
                    #[derive(Deserialize)]
                    struct Merged {
                        sha: String,
                        commit: Inner,
                    }
                    let merged: Merged = response.json()?;
                    Ok(Self::commit_info(merged.sha, merged.commit.message, merged.commit.author))
                }
            }
        }
        .boxed()
    }

    fn reviews(&self) -> Option<&dyn Reviews> {
        Some(self)
    }

    fn permissions(&self) -> Option<&dyn crate::git::Permissions> {
        Some(self)
    }

    fn last_commit<'a>(&'a self, commit: &'a str, path: &'a str) -> BoxFuture<'a, GitResult<Option<CommitInfo>>> {
        async move {
            let commit = self.resolve_ref(commit).await?;
            let response = self.get(&["commits"], &[("sha", &commit), ("path", path), ("per_page", "1")]).await?;
            if response.status != 200 {
                return Err(failure(&response, &format!("history of {path}")));
            }
            #[derive(Deserialize)]
            struct Inner {
                message: String,
                author: RawPerson,
            }
            #[derive(Deserialize)]
            struct Item {
                sha: String,
                commit: Inner,
            }
            let mut items: Vec<Item> = response.json()?;
            if items.is_empty() {
                return Ok(None);
            }
            let item = items.swap_remove(0);
            Ok(Some(Self::commit_info(item.sha, item.commit.message, item.commit.author)))
        }
        .boxed()
    }
}

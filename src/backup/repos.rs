//! The git repositories Arno manages — `{data}/repos/{id}.git`, the only copy of a local
//! project's specs and of every unmerged `arno/{handle}` session branch — into a backup and back.
//!
//! In a backup each is a bare repository that `git clone` reads as it is:
//!
//! ```text
//! repos/{id}.git/HEAD               HEAD as it was (a symbolic ref, or a commit id)
//! repos/{id}.git/config             a plain bare repository's configuration
//! repos/{id}.git/packed-refs        every reference as of the backup (also in the manifest)
//! repos/{id}.git/objects/xx/…       every loose object
//! repos/{id}.git/objects/pack/…     every pack, with its index
//! ```
//!
//! **Consistent with the database.** Arno writes to git before it records the write in the
//! database (a write-back commits, then records the branch's new head in the same transaction
//! that drops the saved text it wrote; a merge moves the branch, then records it). The references
//! are read right after the database snapshot, so every commit the database names is in the
//! backup. A write that landed in between is in the repository but not in the snapshot: that is
//! the state of a server stopped right after a git write, which Arno recovers from — and for a
//! session branch the backup does better and sets the branch back to the commit the snapshot
//! recorded (the text of the newer commit is still pending in the snapshot and is written again
//! after a restore; otherwise the restored branch would look changed outside Arno). Objects are
//! only ever added, so the objects copied after the references were read include every object
//! they need; the copy is checked as a restore checks it before the backup is complete.
//!
//! **Checked with gix in-process** (the appliance has no git binary to rely on): every reference
//! matches the manifest, and every object reachable from them is present, parses and hashes to its
//! id — what `git fsck` checks of reachable objects.
//!
//! Repositories outside the data directory (an administrator connected an existing path) are not
//! Arno's to copy: the manifest names them, and the restored projects keep their absolute path.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{FileEntry, Manifest, TableEntry};

/// A managed repository in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoEntry {
    /// The project's URL name when it was backed up (for messages).
    pub project: String,
    /// Its folder in the backup: `repos/{project id}.git`.
    pub dir: String,
    /// `HEAD`: the branch it names (`refs/heads/main`), or a commit id.
    pub head: String,
    /// Every reference and the object it names, as of the backup.
    pub refs: BTreeMap<String, String>,
    /// Session branches set back to the commit the database recorded (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewound: Vec<String>,
}

/// A project whose repository is outside the data directory: not in the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExternalEntry {
    pub project: String,
    pub path: String,
}

/// What the database snapshot says about repositories.
#[derive(Debug, Default)]
pub(super) struct Rows {
    projects: Vec<ProjectRow>,
    sessions: Vec<SessionRow>,
}

#[derive(Debug, sqlx::FromRow)]
struct ProjectRow {
    id: String,
    slug: String,
    provider: String,
    repo_path: String,
    repo_managed: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct SessionRow {
    project_id: String,
    branch: String,
    last_commit: Option<String>,
}

const PROJECTS: &str = "SELECT id, slug, provider, repo_path, repo_managed FROM projects ORDER BY id";
const SESSIONS: &str = "SELECT project_id, branch, last_commit FROM session_branches";

impl Rows {
    /// From the SQLite copy.
    pub(super) async fn read_sqlite(
        conn: &mut sqlx::SqliteConnection,
        tables: &BTreeMap<String, TableEntry>,
    ) -> anyhow::Result<Rows> {
        let mut rows = Rows::default();
        if tables.contains_key("projects") {
            rows.projects = sqlx::query_as(PROJECTS).fetch_all(&mut *conn).await?;
        }
        if tables.contains_key("session_branches") {
            rows.sessions = sqlx::query_as(SESSIONS).fetch_all(&mut *conn).await?;
        }
        Ok(rows)
    }

    /// Inside the PostgreSQL snapshot's transaction.
    pub(super) async fn read_pg(
        conn: &mut sqlx::PgConnection,
        tables: &BTreeMap<String, TableEntry>,
    ) -> anyhow::Result<Rows> {
        let mut rows = Rows::default();
        if tables.contains_key("projects") {
            rows.projects = sqlx::query_as(PROJECTS).fetch_all(&mut *conn).await?;
        }
        if tables.contains_key("session_branches") {
            rows.sessions = sqlx::query_as(SESSIONS).fetch_all(&mut *conn).await?;
        }
        Ok(rows)
    }
}

/// The repositories part of a backup, once written.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub repositories: BTreeMap<String, RepoEntry>,
    pub external: BTreeMap<String, ExternalEntry>,
    /// Managed repositories that could not be backed up, and why (the backup goes on without them).
    pub warnings: Vec<String>,
    pub files: BTreeMap<String, FileEntry>,
}

/// Where a repository goes in a backup, and in a data directory.
fn dir_for(project_id: &str) -> anyhow::Result<String> {
    if project_id.is_empty() || !project_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("unexpected project id {project_id:?}");
    }
    Ok(crate::projects::managed_repo_path(project_id))
}

/// The configuration of a bare repository, as Arno writes it (never copied from elsewhere: a
/// configuration can name programs for git to run).
const CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n\tbare = true\n";

/// Copy every managed repository the snapshot names into `root` (the backup being written).
/// Blocking: run it on the blocking pool.
pub(super) fn back_up(data_dir: &Path, rows: &Rows, root: &Path) -> anyhow::Result<Captured> {
    let data_dir = std::path::absolute(data_dir)?;
    let mut captured = Captured::default();
    // Every repository's references first, as close to the snapshot as can be; then the objects.
    let mut read = vec![];
    for p in rows.projects.iter().filter(|p| p.provider == "local") {
        let path = Path::new(&p.repo_path);
        let source = if path.is_absolute() { path.to_owned() } else { data_dir.join(path) };
        if p.repo_managed == 0 {
            captured
                .external
                .insert(p.id.clone(), ExternalEntry { project: p.slug.clone(), path: source.display().to_string() });
            continue;
        }
        if !source.join("HEAD").is_file() {
            captured.warnings.push(format!(
                "the repository of project {} is missing ({}); it is not in the backup",
                p.slug,
                source.display()
            ));
            continue;
        }
        let sessions: Vec<&SessionRow> = rows.sessions.iter().filter(|s| s.project_id == p.id).collect();
        let context = || format!("backing up the repository of project {} ({})", p.slug, source.display());
        let entry = read_refs(&source, &dir_for(&p.id)?, &p.slug, &sessions).with_context(context)?;
        read.push((p.id.clone(), source.clone(), entry, context()));
    }
    for (id, source, entry, context) in read {
        copy_objects(&source, root, &entry, &mut captured.files).context(context)?;
        captured.repositories.insert(id, entry);
    }
    Ok(captured)
}

/// A repository's HEAD and references, with session branches set back to the snapshot's record.
fn read_refs(source: &Path, dir: &str, slug: &str, sessions: &[&SessionRow]) -> anyhow::Result<RepoEntry> {
    let repo = gix::open_opts(source, gix::open::Options::isolated()).context("opening it")?;
    if source.join("objects/info/alternates").exists() {
        bail!("it borrows objects from another repository (objects/info/alternates), which a backup cannot follow");
    }
    let head = read_head(&std::fs::read_to_string(source.join("HEAD")).context("reading HEAD")?)?;
    let mut refs = BTreeMap::new();
    for r in repo.references()?.all()? {
        let r = r.map_err(|e| anyhow::anyhow!("reading its references: {e}"))?;
        let name = r.name().as_bstr().to_string();
        if let (true, Some(id)) = (name.starts_with("refs/"), r.target().try_id()) {
            refs.insert(name, id.to_hex().to_string());
        }
        // Symbolic references other than HEAD (Arno writes none) have no place in packed-refs.
    }
    let mut rewound = vec![];
    for s in sessions {
        let name = format!("refs/heads/{}", s.branch);
        let (Some(found), Some(recorded)) = (refs.get(&name), &s.last_commit) else { continue };
        if found == recorded {
            continue;
        }
        let (found_id, recorded_id) = (parse_id(found)?, parse_id(recorded)?);
        // Only Arno's own write the snapshot does not know yet: the recorded commit is an
        // ancestor of what is there. Anything else is left as it is (and shows as diverged).
        if repo.merge_base(recorded_id, found_id).ok().flatten().map(|id| id.detach()) == Some(recorded_id) {
            refs.insert(name.clone(), recorded.clone());
            rewound.push(name);
        }
    }
    Ok(RepoEntry { project: slug.to_owned(), dir: dir.to_owned(), head, refs, rewound })
}

/// Write the repository into the backup: HEAD, config and packed-refs from `entry`, then a copy
/// of every object file; then check the copy.
fn copy_objects(
    source: &Path,
    root: &Path,
    entry: &RepoEntry,
    files: &mut BTreeMap<String, FileEntry>,
) -> anyhow::Result<()> {
    let dir = &entry.dir;
    let target = root.join(dir);
    let mut write = |rel: &str, data: &[u8]| -> anyhow::Result<()> {
        let written = write_file(&target.join(rel), data)?;
        files.insert(format!("{dir}/{rel}"), written);
        Ok(())
    };
    let head = &entry.head;
    let head_file = if head.starts_with("refs/") { format!("ref: {head}\n") } else { format!("{head}\n") };
    write("HEAD", head_file.as_bytes())?;
    write("config", CONFIG.as_bytes())?;
    write("packed-refs", packed_refs(&entry.refs).as_bytes())?;
    // git (and gix) want a refs folder to call it a repository; empty folders have no checksum.
    private_dirs(&target.join("refs/heads"))?;
    for rel in object_files(source)? {
        match copy_file(&source.join(&rel), &target.join(&rel)) {
            Ok(copied) => {
                files.insert(format!("{dir}/{rel}"), copied);
            }
            // Gone since it was listed (a `git gc` packed it): the check below tells whether the
            // copy still has everything.
            Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    check(&target, entry).context("the copy fails its check")
}

fn parse_id(hex: &str) -> anyhow::Result<gix::ObjectId> {
    gix::ObjectId::from_hex(hex.as_bytes()).with_context(|| format!("{hex:?} is not an object id"))
}

/// HEAD's content → the reference it names, or the commit id it holds.
fn read_head(text: &str) -> anyhow::Result<String> {
    let text = text.trim_end_matches('\n');
    let head = text.strip_prefix("ref: ").unwrap_or(text);
    let valid_ref = head.starts_with("refs/") && gix::refs::FullName::try_from(head).is_ok();
    if valid_ref || parse_id(head).is_ok() {
        Ok(head.to_owned())
    } else {
        bail!("HEAD holds {text:?}, neither a reference nor a commit id")
    }
}

/// A `packed-refs` file: sorted, no peeled tags (readers peel them).
fn packed_refs(refs: &BTreeMap<String, String>) -> String {
    let mut text = String::from("# pack-refs with: sorted \n");
    for (name, id) in refs {
        text.push_str(&format!("{id} {name}\n"));
    }
    text
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `rel` (inside a repository) is a file a backup may hold.
fn allowed(rel: &str) -> bool {
    match rel.split('/').collect::<Vec<_>>().as_slice() {
        ["HEAD" | "config" | "packed-refs"] => true,
        ["objects", "pack", name] => name
            .strip_prefix("pack-")
            .and_then(|n| n.strip_suffix(".pack").or_else(|| n.strip_suffix(".idx")))
            .is_some_and(|hash| is_hex(hash, 40)),
        ["objects", fan, rest] => is_hex(fan, 2) && is_hex(rest, 38),
        _ => false,
    }
}

/// The object files of a repository, relative to it: loose objects, and packs with their index
/// (a pack without one is still being written, and holds nothing a reference names yet).
fn object_files(repo: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = vec![];
    let objects = repo.join("objects");
    for entry in std::fs::read_dir(&objects).with_context(|| format!("listing {}", objects.display()))? {
        let entry = entry?;
        let fan = entry.file_name().to_string_lossy().into_owned();
        if !is_hex(&fan, 2) || !entry.file_type()?.is_dir() {
            continue;
        }
        for object in std::fs::read_dir(entry.path())? {
            let object = object?;
            let name = object.file_name().to_string_lossy().into_owned();
            if is_hex(&name, 38) && object.file_type()?.is_file() {
                out.push(format!("objects/{fan}/{name}"));
            }
        }
    }
    let packs = objects.join("pack");
    if packs.is_dir() {
        for entry in std::fs::read_dir(&packs)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".pack")
                && allowed(&format!("objects/pack/{name}"))
                && packs.join(format!("{stem}.idx")).is_file()
            {
                out.push(format!("objects/pack/{name}"));
                out.push(format!("objects/pack/{stem}.idx"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn private_dirs(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(parent) = path.parent() {
        private_dirs(parent)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<FileEntry> {
    let mut file = create_private(path)?;
    file.write_all(data).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()?;
    Ok(FileEntry { size: data.len() as u64, sha256: hex::encode(Sha256::digest(data)) })
}

/// Copy a file (owner only, fsynced), hashing what was written.
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<FileEntry> {
    let mut input = std::fs::File::open(from)?;
    let mut output = create_private(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).with_context(|| format!("reading {}", from.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).with_context(|| format!("writing {}", to.display()))?;
        size += n as u64;
    }
    output.sync_all()?;
    Ok(FileEntry { size, sha256: hex::encode(hasher.finalize()) })
}

/// `git fsck` for what Arno needs of a repository: its references and HEAD are the manifest's,
/// and every object reachable from them is present, parses, and hashes to its id. Blocking.
fn check(dir: &Path, entry: &RepoEntry) -> anyhow::Result<()> {
    let repo = gix::open_opts(dir, gix::open::Options::isolated()).context("it is not a git repository")?;
    let head = read_head(&std::fs::read_to_string(dir.join("HEAD")).context("reading HEAD")?)?;
    if head != entry.head {
        bail!("HEAD names {head}, the manifest {}", entry.head);
    }
    let mut refs = BTreeMap::new();
    for r in repo.references()?.all()? {
        let r = r.map_err(|e| anyhow::anyhow!("reading its references: {e}"))?;
        let id = r.target().try_id().map(|id| id.to_hex().to_string());
        refs.insert(r.name().as_bstr().to_string(), id.unwrap_or_default());
    }
    if refs != entry.refs {
        bail!("its references are not the ones the manifest lists");
    }
    let hash = repo.object_hash();
    let mut pending: Vec<(gix::ObjectId, String)> = vec![];
    for (name, id) in &entry.refs {
        pending.push((parse_id(id)?, name.clone()));
    }
    if !head.starts_with("refs/") {
        pending.push((parse_id(&head)?, "HEAD".into()));
    }
    let mut seen = HashSet::new();
    while let Some((id, from)) = pending.pop() {
        if !seen.insert(id) {
            continue;
        }
        let object = match repo.try_find_object(id) {
            Ok(Some(object)) => object,
            Ok(None) => bail!("object {id} is missing (reachable from {from})"),
            Err(e) => bail!("object {id} cannot be read (reachable from {from}): {e}"),
        };
        let found = gix::objs::compute_hash(hash, object.kind, &object.data)?;
        if found != id {
            bail!("object {id} is damaged: its content hashes to {found}");
        }
        match object.kind {
            gix::objs::Kind::Commit => {
                let commit = gix::objs::CommitRef::from_bytes(&object.data, hash).map_err(unparsable(id))?;
                pending.push((commit.tree(), format!("commit {id}")));
                pending.extend(commit.parents().map(|p| (p, format!("commit {id}"))));
            }
            gix::objs::Kind::Tree => {
                let tree = gix::objs::TreeRef::from_bytes(&object.data, hash).map_err(unparsable(id))?;
                // Submodule entries name commits of other repositories.
                for e in tree.entries.iter().filter(|e| !e.mode.is_commit()) {
                    pending.push((e.oid.to_owned(), format!("tree {id}")));
                }
            }
            gix::objs::Kind::Tag => {
                let tag = gix::objs::TagRef::from_bytes(&object.data, hash).map_err(unparsable(id))?;
                pending.push((tag.target(), format!("tag {id}")));
            }
            gix::objs::Kind::Blob => {}
        }
    }
    Ok(())
}

fn unparsable<E: std::fmt::Display>(id: gix::ObjectId) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow::anyhow!("object {id} does not parse: {e}")
}

/// Part of `verify`: the repositories part of a manifest is well-formed — every repository in
/// its own folder, and nothing under `repos/` but the files a repository is made of.
pub(super) fn verify(manifest: &Manifest) -> anyhow::Result<()> {
    for (id, entry) in &manifest.repositories {
        if entry.dir != dir_for(id)? {
            bail!("the manifest puts the repository of project {id} in {:?}", entry.dir);
        }
        if !manifest.files.contains_key(&format!("{}/HEAD", entry.dir)) {
            bail!("{}/HEAD is missing from the backup", entry.dir);
        }
    }
    for rel in manifest.files.keys().filter(|r| r.starts_with("repos/")) {
        let owner = manifest.repositories.values().find_map(|e| rel.strip_prefix(&format!("{}/", e.dir)));
        match owner {
            Some(inside) if allowed(inside) => {}
            _ => bail!("the backup holds {rel}, which is not part of a repository it lists"),
        }
    }
    Ok(())
}

/// Before a restore writes anything: no repository of the backup may exist already.
pub(super) async fn ensure_targets_empty(data_dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for (id, entry) in &manifest.repositories {
        let target = data_dir.join(&entry.dir);
        if tokio::fs::symlink_metadata(&target).await.is_ok() {
            bail!(
                "the data directory is not empty: {} (the repository of project {id}) exists; restore into an empty one",
                target.display()
            );
        }
    }
    Ok(())
}

/// What a restore wrote of the repositories, to take it back when it fails.
#[derive(Debug, Default)]
pub(super) struct RepoUndo {
    /// Folders the restore created (the data directory, `repos`), removed when empty again.
    created: Vec<PathBuf>,
    /// Where the repositories are written and checked before they move into place.
    staging: Option<PathBuf>,
    /// (staged, final) for each repository.
    moves: Vec<(PathBuf, PathBuf)>,
    /// Repositories already moved into place.
    placed: Vec<PathBuf>,
}

/// Write every repository of the backup beside its place in the data directory and check it.
/// Nothing is in place until [`place`] moves them.
pub(super) async fn stage(src: &Path, data_dir: &Path, manifest: &Manifest, undo: &mut RepoUndo) -> anyhow::Result<()> {
    if manifest.repositories.is_empty() {
        return Ok(());
    }
    let data_dir = std::path::absolute(data_dir)?;
    let repos = data_dir.join("repos");
    for dir in [&data_dir, &repos] {
        if tokio::fs::symlink_metadata(dir).await.is_err() {
            super::private_dir(dir, true).await?;
            undo.created.push(dir.clone());
        }
    }
    let staging = repos.join(format!(".restoring-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&staging).await;
    super::private_dir(&staging, false).await?;
    undo.staging = Some(staging.clone());
    for (id, entry) in &manifest.repositories {
        let staged = staging.join(format!("{id}.git"));
        let prefix = format!("{}/", entry.dir);
        let files: Vec<(PathBuf, PathBuf)> = manifest
            .files
            .keys()
            .filter_map(|rel| rel.strip_prefix(&prefix).map(|inside| (src.join(rel), staged.join(inside))))
            .collect();
        let (checked, staged_dir) = (entry.clone(), staged.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for (from, to) in &files {
                // The configuration is Arno's own, whatever the backup says (see CONFIG).
                if to.file_name().is_some_and(|n| n == "config") && to.parent() == Some(staged_dir.as_path()) {
                    continue;
                }
                copy_file(from, to)?;
            }
            write_file(&staged_dir.join("config"), CONFIG.as_bytes())?;
            private_dirs(&staged_dir.join("refs/heads"))?;
            check(&staged_dir, &checked)
        })
        .await?
        .with_context(|| {
            format!("the repository of project {} in the backup ({}) fails its check", entry.project, entry.dir)
        })?;
        undo.moves.push((staged, data_dir.join(&entry.dir)));
    }
    Ok(())
}

/// Store the restored repositories' paths relative to the data directory (the restored database
/// names the backed-up machine's folders). Returns the projects whose managed repository is not
/// in the backup.
pub(super) async fn record_paths(db: &crate::db::Db, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let mut tx = db.begin().await?;
    let mut missing = vec![];
    for (id, path) in crate::projects::store::managed_paths(&mut tx).await? {
        match manifest.repositories.get(&id) {
            Some(entry) => crate::projects::store::set_repo_path(&mut tx, &id, &entry.dir).await?,
            None => missing.push(format!("project {id}: its repository ({path}) is not in the backup")),
        }
    }
    tx.commit().await?;
    Ok(missing)
}

/// Move the checked repositories into place (the last step of a restore).
pub(super) async fn place(undo: &mut RepoUndo) -> anyhow::Result<()> {
    for (staged, target) in std::mem::take(&mut undo.moves) {
        tokio::fs::rename(&staged, &target)
            .await
            .with_context(|| format!("moving the restored repository to {}", target.display()))?;
        undo.placed.push(target);
    }
    if let Some(staging) = undo.staging.take() {
        tokio::fs::remove_dir(&staging).await?;
    }
    if let Some(parent) = undo.placed.first().and_then(|p| p.parent())
        && let Ok(dir) = tokio::fs::File::open(parent).await
    {
        let _ = dir.sync_all().await;
    }
    Ok(())
}

impl RepoUndo {
    pub(super) async fn run(&self) -> anyhow::Result<()> {
        for dir in self.placed.iter().chain(&self.staging) {
            match tokio::fs::remove_dir_all(dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::from(e).context(format!("removing {}", dir.display())));
                }
                _ => {}
            }
        }
        // Folders it created, innermost first, if nothing else is in them now.
        for dir in self.created.iter().rev() {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repository_files_are_allowed() {
        for ok in [
            "HEAD",
            "config",
            "packed-refs",
            "objects/ab/0123456789abcdef0123456789abcdef012345",
            "objects/pack/pack-0123456789abcdef0123456789abcdef01234567.pack",
            "objects/pack/pack-0123456789abcdef0123456789abcdef01234567.idx",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for bad in [
            "hooks/post-update",
            "objects/info/alternates",
            "objects/ab/../../../etc",
            "objects/AB/0123456789abcdef0123456789abcdef012345",
            "objects/pack/tmp_pack_1",
            "refs/heads/main",
            "config/x",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
    }

    #[test]
    fn head_is_a_reference_or_a_commit() {
        assert_eq!(read_head("ref: refs/heads/main\n").unwrap(), "refs/heads/main");
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(read_head(&format!("{id}\n")).unwrap(), id);
        assert!(read_head("ref: ../../etc\n").is_err());
        assert!(read_head("ref: refs/heads/a..b\n").is_err());
    }

    /// A write-back the snapshot does not know yet is set back; a branch changed otherwise is not.
    #[tokio::test]
    async fn session_branches_follow_the_snapshot() {
        use crate::git::{Change, CommitRequest, GitProvider as _, Person};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.git");
        let provider = crate::git::local::LocalProvider::init(&path, "main").unwrap();
        let commit = |branch: &str, parent: String, n: u8| CommitRequest {
            branch: branch.into(),
            parent,
            message: format!("commit {n}"),
            author: Person { name: "Ada".into(), email: "ada@example.com".into() },
            changes: vec![Change::Upsert { path: "a.md".into(), content: vec![b'a' + n] }],
        };
        let base = provider.commit(commit("main", String::new(), 0)).await.unwrap().id;
        for branch in ["arno/ada", "arno/bob"] {
            provider.create_branch(branch, &base).await.unwrap();
        }
        let recorded = provider.commit(commit("arno/ada", base.clone(), 1)).await.unwrap().id;
        let newer = provider.commit(commit("arno/ada", recorded.clone(), 2)).await.unwrap().id;
        // Bob's branch was rewritten: what the database recorded is not an ancestor of it.
        let elsewhere = provider.commit(commit("arno/bob", base.clone(), 3)).await.unwrap().id;
        let unrelated = provider.commit(commit("main", base.clone(), 4)).await.unwrap().id;
        let sessions = [
            SessionRow { project_id: "p".into(), branch: "arno/ada".into(), last_commit: Some(recorded.clone()) },
            SessionRow { project_id: "p".into(), branch: "arno/bob".into(), last_commit: Some(unrelated) },
        ];
        let sessions: Vec<&SessionRow> = sessions.iter().collect();
        let entry = read_refs(&path, "repos/p.git", "p", &sessions).unwrap();
        assert_eq!(entry.refs["refs/heads/arno/ada"], recorded, "set back from {newer}");
        assert_eq!(entry.refs["refs/heads/arno/bob"], elsewhere);
        assert_eq!(entry.rewound, ["refs/heads/arno/ada"]);
        assert_eq!(entry.head, "refs/heads/main");

        // The copy has what the references need, and checks; without an object it does not.
        let root = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        copy_objects(&path, root.path(), &entry, &mut files).unwrap();
        assert!(files.contains_key("repos/p.git/packed-refs"));
        let loose = format!("repos/p.git/objects/{}/{}", &base[..2], &base[2..]);
        assert!(files.contains_key(&loose), "{files:?}");
        std::fs::remove_file(root.path().join(loose)).unwrap();
        let err = check(&root.path().join("repos/p.git"), &entry).unwrap_err();
        assert!(format!("{err:#}").contains("is missing"), "{err:#}");
    }

    #[test]
    fn packed_refs_are_sorted_and_plain() {
        let refs = BTreeMap::from([
            ("refs/heads/main".to_owned(), "b".repeat(40)),
            ("refs/heads/arno/ada".to_owned(), "a".repeat(40)),
        ]);
        assert_eq!(
            packed_refs(&refs),
            format!(
                "# pack-refs with: sorted \n{} refs/heads/arno/ada\n{} refs/heads/main\n",
                "a".repeat(40),
                "b".repeat(40)
            )
        );
    }
}

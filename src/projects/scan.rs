//! Scanning: read the default branch into Arno's cache of component specs.
//!
//! A scan lists the files on the default branch (their total is the project's size), then reads
//! and parses only specs whose git blob id differs from the cached one, so re-scanning after a
//! push costs what changed. A spec that does not parse is cached with its error (file and line)
//! and never stops the scan. Component ids must be unique in a project: the first file (in path
//! order) that declares an id gets it, later ones are shown as duplicates.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::model::{ComponentRow, Project, ProjectState};
use super::{git_error, store};
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::db::{Db, now_ms};
use crate::error::AppResult;
use crate::git::{FileEntry, GitError, GitProvider, MAX_PATH_BYTES, MAX_TREE_DEPTH, Skipped};
use crate::specs::{Component, RepoConfig, SpecFile, config, versions};

/// Specs larger than this are not parsed (a design-system spec is a few KiB).
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
const PAGE: usize = 5_000;

/// What a scan did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScanReport {
    /// The commit the cache now reflects (`null` for an empty repository).
    pub commit: Option<String>,
    pub state: ProjectState,
    /// Specs in the cache after the scan.
    pub components: usize,
    /// Specs read and parsed in this scan (new or changed).
    pub parsed: usize,
    pub removed: usize,
    /// Specs that have errors.
    pub with_errors: usize,
    pub size_bytes: i64,
    /// Files and folders on the branch left out because they lie deeper than
    /// [`MAX_TREE_DEPTH`](crate::git::MAX_TREE_DEPTH) folders or have paths longer than
    /// [`MAX_PATH_BYTES`](crate::git::MAX_PATH_BYTES) (a folder counts once). They are not read,
    /// not counted in the size, and a spec among them is not in the project.
    pub skipped_paths: usize,
    /// Why the scan stopped without touching the cache (an invalid `.arno/config.json`).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Specs whose text changed on the default branch since the previous scan, with the new Arno
    /// version when Arno took the new text over (see [`versions::sync_from_git`]).
    #[serde(skip)]
    pub changed_specs: Vec<(String, Option<(i64, String)>)>,
}

/// Scan the project's default branch for a caller who holds `Scan` on it, audited as done by
/// `actor`.
pub async fn scan(
    db: &Db,
    provider: &dyn GitProvider,
    on: &super::Granted<crate::auth::access::Scan>,
    actor: Actor<'_>,
    origin: &Origin,
) -> AppResult<ScanReport> {
    let project = on.project();
    let report = refresh(db, provider, project).await?;
    let event = Event::new("project.scan", Outcome::Allowed, actor, origin)
        .project(&project.id)
        .target("project", &project.id)
        .intent(json!({
            "commit": report.commit,
            "parsed": report.parsed,
            "removed": report.removed,
            "error": report.error.is_some(),
        }));
    audit::record_alone(db, event).await?;
    if provider.reviews().is_some() {
        // "Refresh now" on a hosted project also brings its pull requests' state back.
        let mut conn = db.pool().acquire().await?;
        super::sync::schedule(&mut conn, &project.id, true).await?;
    }
    Ok(report)
}

/// Scan without an audit record of its own: for actions whose record covers it (creating a
/// project, setting one up).
pub async fn refresh(db: &Db, provider: &dyn GitProvider, project: &Project) -> AppResult<ScanReport> {
    let started = std::time::Instant::now();
    let outcome = read_repository(db, provider, project).await;
    let mut report = match outcome {
        Ok(report) => report,
        Err(e) => {
            let message = e.to_string();
            let mut conn = db.pool().acquire().await?;
            store::record_scan_error(&mut conn, &project.id, &message).await?;
            return Err(git_error(e));
        }
    };
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        event_type = "project_scanned",
        project_id = %project.id,
        parsed = report.parsed,
        removed = report.removed,
        skipped_paths = report.skipped_paths,
        duration_ms = report.duration_ms,
        "project scanned"
    );
    Ok(report)
}

fn state_after(project: &Project, config_present: bool) -> ProjectState {
    match project.state {
        ProjectState::Archived => ProjectState::Archived,
        _ if config_present => ProjectState::Active,
        _ => ProjectState::PendingSetup,
    }
}

async fn read_repository(db: &Db, provider: &dyn GitProvider, project: &Project) -> Result<ScanReport, GitError> {
    let internal = |e: crate::error::AppError| GitError::Upstream(format!("database: {e}"));
    let head = provider.default_branch().await?;
    let mut report = ScanReport {
        commit: head.commit.clone(),
        state: project.state,
        components: 0,
        parsed: 0,
        removed: 0,
        with_errors: 0,
        size_bytes: 0,
        skipped_paths: 0,
        error: None,
        duration_ms: 0,
        changed_specs: vec![],
    };
    // The repository's declaration of itself; missing means defaults and "pending setup".
    let (repo_config, config_present) = match &head.commit {
        None => (RepoConfig::default(), false),
        Some(commit) => match provider.read_file(commit, config::PATH).await {
            Ok(bytes) => match RepoConfig::parse(&bytes) {
                Ok(c) => (c, true),
                Err(e) => {
                    report.error = Some(e.to_string());
                    let mut conn = db.pool().acquire().await.map_err(|e| internal(e.into()))?;
                    store::record_scan_error(&mut conn, &project.id, &e.to_string()).await.map_err(internal)?;
                    return Ok(report);
                }
            },
            Err(GitError::NotFound(_)) => (RepoConfig::default(), false),
            Err(e) => return Err(e),
        },
    };
    let config_json = serde_json::to_string(&repo_config).unwrap_or_default();

    // Every file on the branch: the size, and the specs with their blob ids. What lies beyond the
    // limits is left out rather than refusing the repository, as GitHub truncates a tree listing
    // too large to answer: the rest of the repository is the developers' business, and the specs
    // within the limits must keep working. The project's activity says what was left out.
    let mut specs: Vec<FileEntry> = vec![];
    let mut skipped = Skipped::default();
    if let Some(commit) = &head.commit {
        let mut cursor: Option<String> = None;
        loop {
            let page = provider.list_files(commit, "", cursor.as_deref(), PAGE).await?;
            if cursor.is_none() {
                // Every page counts the whole listing.
                skipped = page.skipped.clone();
            }
            for file in page.items {
                report.size_bytes = report.size_bytes.saturating_add(i64::try_from(file.size).unwrap_or(i64::MAX));
                if repo_config.is_spec_path(&file.path) {
                    specs.push(file);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }

    let cached: HashMap<String, String> = {
        let mut conn = db.pool().acquire().await.map_err(|e| internal(e.into()))?;
        store::component_blobs(&mut conn, &project.id).await.map_err(internal)?.into_iter().collect()
    };
    let present: HashSet<&str> = specs.iter().map(|f| f.path.as_str()).collect();
    let removed: Vec<String> = cached.keys().filter(|p| !present.contains(p.as_str())).cloned().collect();
    let changed: Vec<&FileEntry> = specs.iter().filter(|f| cached.get(&f.path) != Some(&f.blob_id)).collect();

    let mut rows = Vec::with_capacity(changed.len());
    if let Some(commit) = &head.commit {
        // One batch read (a hosted provider reads in a few requests what changed).
        let wanted: Vec<String> = changed.iter().filter(|f| f.size <= MAX_SPEC_BYTES).map(|f| f.path.clone()).collect();
        let mut read = provider.read_files(commit, &wanted).await?.into_iter();
        for file in &changed {
            let bytes = if file.size > MAX_SPEC_BYTES { None } else { read.next() };
            rows.push((file.path.clone(), file.blob_id.clone(), file.size, bytes));
        }
    }
    // Parsing is CPU work: off the async runtime, in one batch.
    let parsed: Vec<ComponentRow> = tokio::task::spawn_blocking(move || {
        rows.into_iter().map(|(path, blob, size, bytes)| cache_row(path, blob, size, bytes)).collect()
    })
    .await
    .map_err(|e| GitError::Upstream(format!("parse task failed: {e}")))?;

    let state = state_after(project, config_present);
    let changed_anything = !parsed.is_empty() || !removed.is_empty() || project.state != state;
    let write = async {
        let mut tx = db.begin().await?;
        // One scan writes a project's cache at a time (SQLite's BEGIN IMMEDIATE already serialises).
        store::find_for_update(&mut tx, db.backend(), &project.id).await?;
        let mut synced = Vec::with_capacity(parsed.len());
        // A file new on the default branch is synced only when Arno holds it deleted: it came
        // back after a merged deletion (a revert), which Arno then follows.
        let deleted = versions::deleted_paths(&mut tx, &project.id).await?;
        for row in &parsed {
            let previous = store::component_raw(&mut tx, &project.id, &row.file_path).await?;
            if previous.is_none() && !deleted.contains(&row.file_path) {
                store::upsert_component(&mut tx, &project.id, row).await?;
                continue;
            }
            let version = versions::sync_from_git(
                &mut tx,
                db.backend(),
                &project.id,
                &row.file_path,
                previous.as_deref(),
                &row.raw_text,
            )
            .await?;
            synced.push((row.file_path.clone(), version));
            store::upsert_component(&mut tx, &project.id, row).await?;
        }
        for path in &removed {
            store::delete_component(&mut tx, &project.id, path).await?;
        }
        assign_ids(&mut tx, &project.id).await?;
        // Once per commit, not on every "Scan now" of the same one.
        if let Some(first) = skipped.first.as_deref().filter(|_| head.commit != project.scanned_commit) {
            let summary = format!(
                "{} path(s) on {} were not read: deeper than {MAX_TREE_DEPTH} folders or longer than \
                 {MAX_PATH_BYTES} bytes (such as {first})",
                skipped.count, head.name
            );
            super::writeback::activity(
                &mut tx,
                &project.id,
                None,
                "scan.skipped",
                &summary,
                Some(&head.name),
                head.commit.as_deref(),
            )
            .await?;
        }
        store::record_scan(
            &mut tx,
            &project.id,
            &store::ScanUpdate {
                state,
                size_bytes: report.size_bytes,
                default_branch: Some(&head.name),
                scanned_commit: head.commit.as_deref(),
                config_json: Some(&config_json),
                config_present,
                scan_error: None,
                changed: changed_anything,
            },
        )
        .await?;
        let all = store::components(&mut tx, &project.id).await?;
        tx.commit().await?;
        AppResult::Ok((all, synced))
    };
    let (all, synced) = write.await.map_err(internal)?;
    report.changed_specs = synced;
    report.skipped_paths = skipped.count;
    report.state = state;
    report.parsed = parsed.len();
    report.removed = removed.len();
    report.components = all.len();
    report.with_errors = all.iter().filter(|c| c.error_message.is_some() || c.component_id.is_none()).count();
    Ok(report)
}

/// Parse one spec into its cache row.
fn cache_row(file_path: String, blob_id: String, size: u64, bytes: Option<Vec<u8>>) -> ComponentRow {
    let now = now_ms();
    let stem = file_path.rsplit('/').next().unwrap_or(&file_path).trim_end_matches(".md").to_owned();
    let (raw, problem) = match bytes {
        None => {
            (String::new(), Some((1, format!("the file is larger than {} KiB and is not read", MAX_SPEC_BYTES / 1024))))
        }
        Some(bytes) => match String::from_utf8(bytes) {
            Ok(text) => (text, None),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let line = 1 + bytes[..valid].iter().filter(|&&b| b == b'\n').count();
                (String::from_utf8_lossy(&bytes).into_owned(), Some((line, "the file is not UTF-8".to_owned())))
            }
        },
    };
    let content_sha = hex::encode(Sha256::digest(raw.as_bytes()));
    let spec = SpecFile::parse(raw.as_str());
    let mut component = Component::from_spec(&spec, &file_path);
    if let Some((line, message)) = problem {
        component.errors.insert(0, crate::specs::ParseError { line, message });
        component.name = stem;
    }
    let first = component.errors.first().cloned();
    ComponentRow {
        file_path,
        declared_id: component.id.clone(),
        component_id: None,
        name: component.name.clone(),
        blob_id,
        content_sha,
        raw_text: raw,
        model_json: serde_json::to_string(&component).unwrap_or_default(),
        error_line: first.as_ref().map(|e| e.line as i64),
        error_message: first.map(|e| e.message),
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        scanned_at: now,
    }
}

/// Give each declared id to the first file (in path order) that declares it.
async fn assign_ids(conn: &mut sqlx::AnyConnection, project_id: &str) -> AppResult<()> {
    let rows = store::component_ids(conn, project_id).await?;
    let mut taken: HashSet<String> = HashSet::new();
    let mut wanted: Vec<(String, Option<String>, Option<String>)> = vec![];
    for (path, declared, current) in rows {
        let assigned = declared.filter(|id| taken.insert(id.clone()));
        if assigned != current {
            wanted.push((path, current, assigned));
        }
    }
    // Clear first, then set: no moment where two rows hold the same id.
    for (path, current, _) in &wanted {
        if current.is_some() {
            store::assign_component_id(conn, project_id, path, None).await?;
        }
    }
    for (path, _, assigned) in &wanted {
        if assigned.is_some() {
            store::assign_component_id(conn, project_id, path, assigned.as_deref()).await?;
        }
    }
    Ok(())
}

//! `arno backup DEST` and `arno restore SRC`: a consistent online copy of the database, of every
//! stored object and of every git repository Arno manages, with a manifest and checksums; restored
//! only into an empty database, object store and data directory, only by a binary that knows the
//! backup's schema, and only after every checksum matched and every repository passed its check.
//!
//! Layout of a backup (a directory; `tar` it to move it):
//!
//! ```text
//! manifest.json          what is in it: versions, schema, tables and row counts, every file's SHA-256
//! SHA256SUMS             the same checksums for `sha256sum -c` (and the manifest's own)
//! database.sqlite3       SQLite: the database as of one moment (VACUUM INTO)
//! database/{table}.copy  PostgreSQL: each table in COPY text format, all from one snapshot
//! objects/{key}          every object in storage, under its key
//! repos/{project}.git/   every repository Arno manages (`{data}/repos`), a bare repository (repos.rs)
//! secret.key             the generated instance key, when the instance uses one (0600)
//! ```
//!
//! The database is copied first, as of one moment, then the repositories' references, then the
//! objects: objects are immutable or only ever added, so every object the database refers to is
//! there (an object deleted by retention in between is the one exception, and is named in the
//! output); how the repositories stay consistent with the database is in repos.rs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Connection as _;
use tokio::io::AsyncWriteExt as _;

use crate::config::Config;
use crate::db::{Backend, Db};
use crate::storage::Storage;

mod repos;
pub use repos::{ExternalEntry, RepoEntry};

/// The layout version this binary writes. 2: with the managed repositories (`repos/`).
pub const FORMAT: u32 = 2;
/// The layout versions this binary reads (1: before repositories were backed up).
const READS: std::ops::RangeInclusive<u32> = 1..=FORMAT;
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    pub rows: u64,
    /// Column names in order (PostgreSQL: the COPY column list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub arno_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The highest migration applied to the backed-up database.
    pub schema_version: i64,
    pub migrations: Vec<i64>,
    pub tables: BTreeMap<String, TableEntry>,
    pub objects: u64,
    /// `included` (secret.key is in the backup) or `configured` (the instance key comes from the
    /// configuration: restore with the same `secret_key`).
    pub secret_key: String,
    /// The instance key's public fingerprint as recorded in the database (a restore refuses a
    /// different key: stored secrets, signatures and sessions depend on it).
    #[serde(default)]
    pub secret_fingerprint: Option<String>,
    /// The repositories Arno manages, by project id (format 2).
    #[serde(default)]
    pub repositories: BTreeMap<String, RepoEntry>,
    /// Projects whose repository is outside the data directory, by project id: not in the backup.
    #[serde(default)]
    pub external_repositories: BTreeMap<String, ExternalEntry>,
    /// Every file but the manifest and SHA256SUMS, by relative path.
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug)]
pub struct BackupReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Objects listed but gone before they could be copied (deleted meanwhile).
    pub vanished: Vec<String>,
    /// Managed repositories that are not in the backup, and why.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    /// Migrations applied after the restore (the backup was older than this binary).
    pub migrated: Vec<i64>,
    /// Projects whose managed repository the backup does not hold.
    pub warnings: Vec<String>,
}

/// Files written into a directory, each hashed while written and fsynced.
struct Out {
    root: PathBuf,
    files: BTreeMap<String, FileEntry>,
}

impl Out {
    async fn create(&mut self, rel: &str) -> anyhow::Result<(tokio::fs::File, PathBuf)> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            private_dir(parent, true).await?;
        }
        // Personal data and possibly the instance key: owner only, whatever the umask.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((file, path))
    }

    async fn write(&mut self, rel: &str, data: &[u8]) -> anyhow::Result<()> {
        let (mut file, path) = self.create(rel).await?;
        file.write_all(data).await.with_context(|| format!("writing {}", path.display()))?;
        file.sync_all().await?;
        self.files
            .insert(rel.to_owned(), FileEntry { size: data.len() as u64, sha256: hex::encode(Sha256::digest(data)) });
        Ok(())
    }

    /// Record a file something else wrote (hashing it).
    async fn adopt(&mut self, rel: &str) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        set_private(&path).await?;
        let entry = hash_file(&path).await?;
        tokio::fs::File::open(&path).await?.sync_all().await?;
        self.files.insert(rel.to_owned(), entry);
        Ok(())
    }
}

/// Create a directory (and, with `recursive`, its parents) with mode 0700.
async fn private_dir(path: &Path, recursive: bool) -> anyhow::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(recursive)
        .mode(0o700)
        .create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))
}

async fn hash_file(path: &Path) -> anyhow::Result<FileEntry> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path).await.with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await.with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileEntry { size, sha256: hex::encode(hasher.finalize()) })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Table files are named by table; refuse names that are not plain identifiers.
fn table_file(table: &str) -> anyhow::Result<String> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("unexpected table name {table:?}");
    }
    Ok(format!("database/{table}.copy"))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The instance was never started with this configuration: no database, or one without
/// Arno's schema. Not a failure for callers that back up "whatever there is" (the Debian
/// package's pre-upgrade backup): `arno backup` exits with status 3.
#[derive(Debug, thiserror::Error)]
#[error("nothing to back up: {0}")]
pub struct NothingToBackUp(String);

/// `arno backup DEST`: DEST must not exist; it appears only once the backup is complete.
pub async fn backup(config: &Config, dest: &Path) -> anyhow::Result<BackupReport> {
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        bail!("{} already exists; name a new directory for the backup", dest.display());
    }
    // Connecting would create an empty SQLite file: look first.
    if let Some(path) = crate::db::sqlite_path(config.database_url.expose())
        && tokio::fs::metadata(&path).await.is_err()
    {
        return Err(NothingToBackUp(format!(
            "there is no database at {} (Arno has not been started with this configuration)",
            path.display()
        ))
        .into());
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent).await.with_context(|| format!("creating {}", parent.display()))?;
    let name = dest.file_name().context("the backup destination needs a directory name")?.to_string_lossy();
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&staging).await;
    private_dir(&staging, false).await?;
    let result = write_backup(config, &staging).await;
    match result {
        Ok((manifest, vanished, warnings)) => {
            tokio::fs::rename(&staging, dest)
                .await
                .with_context(|| format!("moving the finished backup to {}", dest.display()))?;
            if let Ok(dir) = tokio::fs::File::open(parent).await {
                let _ = dir.sync_all().await;
            }
            Ok(BackupReport { path: dest.to_owned(), manifest, vanished, warnings })
        }
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            Err(e)
        }
    }
}

async fn write_backup(config: &Config, root: &Path) -> anyhow::Result<(Manifest, Vec<String>, Vec<String>)> {
    let db = Db::connect(&config.database_url, 2).await?;
    db.check_schema_known().await?;
    if db.applied_versions().await?.is_empty() {
        db.close().await;
        return Err(NothingToBackUp(
            "the database has no Arno schema yet (Arno has not been started with this configuration)".into(),
        )
        .into());
    }
    let mut out = Out { root: root.to_owned(), files: BTreeMap::new() };
    let (tables, migrations, secret_fingerprint, rows) = match db.backend() {
        Backend::Sqlite => backup_sqlite(&db, &mut out).await?,
        Backend::Postgres => backup_postgres(config, &mut out).await?,
    };
    db.close().await;
    let schema_version = migrations.iter().copied().max().unwrap_or(0);

    // The repositories, right after the database (see repos.rs).
    let captured = {
        let (data_dir, root) = (config.data_dir.clone(), root.to_owned());
        tokio::task::spawn_blocking(move || repos::back_up(&data_dir, &rows, &root)).await??
    };
    out.files.extend(captured.files);

    // Objects, after the database (see the module documentation).
    let storage = Storage::from_config(config).await?;
    let mut objects = 0u64;
    let mut vanished = vec![];
    for info in storage.list("").await.context("listing stored objects")? {
        match storage.get(&info.key).await.with_context(|| format!("reading object {}", info.key))? {
            Some(bytes) => {
                out.write(&format!("objects/{}", info.key), &bytes).await?;
                objects += 1;
            }
            None => vanished.push(info.key),
        }
    }

    let secret_key = if config.secret_key.is_none() {
        let path = config.data_dir.join("secret.key");
        let data =
            tokio::fs::read(&path).await.with_context(|| format!("reading the instance key {}", path.display()))?;
        out.write("secret.key", &data).await?;
        set_private(&root.join("secret.key")).await?;
        "included"
    } else {
        "configured"
    };

    let manifest = Manifest {
        format: FORMAT,
        arno_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: now_rfc3339(),
        backend: db.backend().name().to_owned(),
        schema_version,
        migrations,
        tables,
        objects,
        secret_key: secret_key.to_owned(),
        secret_fingerprint,
        repositories: captured.repositories,
        external_repositories: captured.external,
        files: out.files.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    let mut sums = String::new();
    let mut all = out.files.clone();
    all.insert(
        "manifest.json".into(),
        FileEntry { size: json.len() as u64, sha256: hex::encode(Sha256::digest(&json)) },
    );
    for (path, entry) in &all {
        sums.push_str(&format!("{}  {path}\n", entry.sha256));
    }
    out.write("manifest.json", &json).await?;
    out.write("SHA256SUMS", sums.as_bytes()).await?;
    set_private(root).await?;
    Ok((manifest, vanished, captured.warnings))
}

/// A backup holds personal data and possibly the instance key: owner only.
async fn set_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if tokio::fs::metadata(path).await?.is_dir() { 0o700 } else { 0o600 };
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await?;
    Ok(())
}

/// What a database copy holds: tables with row counts, applied migrations, the key fingerprint,
/// and what it says about repositories.
type Described = (BTreeMap<String, TableEntry>, Vec<i64>, Option<String>, repos::Rows);

async fn backup_sqlite(db: &Db, out: &mut Out) -> anyhow::Result<Described> {
    let target = out.root.join("database.sqlite3");
    // One consistent copy as of a single read transaction, while Arno keeps serving.
    sqlx::query("VACUUM INTO $1")
        .bind(target.to_string_lossy().into_owned())
        .execute(db.pool())
        .await
        .context("copying the SQLite database (VACUUM INTO)")?;
    out.adopt("database.sqlite3").await?;
    let mut copy = open_sqlite(&target, true).await?;
    let described = describe_sqlite(&mut copy).await?;
    let fingerprint = if described.0.contains_key("instance_settings") {
        sqlx::query_as::<_, (String,)>("SELECT value FROM instance_settings WHERE key = 'secret_key_fingerprint'")
            .fetch_optional(&mut copy)
            .await?
            .map(|r| r.0)
    } else {
        None
    };
    let rows = repos::Rows::read_sqlite(&mut copy, &described.0).await?;
    copy.close().await.ok();
    Ok((described.0, described.1, fingerprint, rows))
}

async fn open_sqlite(path: &Path, read_only: bool) -> anyhow::Result<sqlx::SqliteConnection> {
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(read_only).create_if_missing(false);
    sqlx::SqliteConnection::connect_with(&options).await.with_context(|| format!("opening {}", path.display()))
}

async fn describe_sqlite(
    conn: &mut sqlx::SqliteConnection,
) -> anyhow::Result<(BTreeMap<String, TableEntry>, Vec<i64>)> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = BTreeMap::new();
    for (name,) in names {
        let (rows,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM {}", quote_ident(&name))).fetch_one(&mut *conn).await?;
        tables.insert(name, TableEntry { rows: rows as u64, columns: vec![] });
    }
    let migrations = if tables.contains_key(MIGRATIONS_TABLE) {
        sqlx::query_as::<_, (i64,)>("SELECT version FROM _sqlx_migrations WHERE success = 1 ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    } else {
        vec![]
    };
    Ok((tables, migrations))
}

async fn connect_pg(config: &Config) -> anyhow::Result<sqlx::PgConnection> {
    use std::str::FromStr as _;
    let options =
        sqlx::postgres::PgConnectOptions::from_str(config.database_url.expose()).context("parsing the database URL")?;
    sqlx::PgConnection::connect_with(&options).await.context("connecting to PostgreSQL")
}

async fn pg_columns(conn: &mut sqlx::PgConnection, table: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_as::<_, (String,)>(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| r.0)
    .collect())
}

async fn backup_postgres(config: &Config, out: &mut Out) -> anyhow::Result<Described> {
    use futures_util::TryStreamExt as _;
    let mut conn = connect_pg(config).await?;
    // Every table as of one snapshot, while Arno keeps serving.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut conn).await?;
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
            .fetch_all(&mut conn)
            .await?;
    let mut tables = BTreeMap::new();
    for (name,) in names {
        let rel = table_file(&name)?;
        let columns = pg_columns(&mut conn, &name).await?;
        let (rows,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM {}", quote_ident(&name))).fetch_one(&mut conn).await?;
        let list = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let (mut file, path) = out.create(&rel).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        {
            let mut stream = conn.copy_out_raw(&format!("COPY {} ({list}) TO STDOUT", quote_ident(&name))).await?;
            while let Some(chunk) = stream.try_next().await? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.with_context(|| format!("writing {}", path.display()))?;
            }
        }
        file.sync_all().await?;
        out.files.insert(rel, FileEntry { size, sha256: hex::encode(hasher.finalize()) });
        tables.insert(name, TableEntry { rows: rows as u64, columns });
    }
    let migrations = if tables.contains_key(MIGRATIONS_TABLE) {
        sqlx::query_as::<_, (i64,)>("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    } else {
        vec![]
    };
    let fingerprint = if tables.contains_key("instance_settings") {
        sqlx::query_as::<_, (String,)>("SELECT value FROM instance_settings WHERE key = 'secret_key_fingerprint'")
            .fetch_optional(&mut conn)
            .await?
            .map(|r| r.0)
    } else {
        None
    };
    let rows = repos::Rows::read_pg(&mut conn, &tables).await?;
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await.ok();
    Ok((tables, migrations, fingerprint, rows))
}

/// Read a backup's manifest and prove every file intact (sizes, SHA-256, nothing missing, the
/// manifest itself matching SHA256SUMS). Touches nothing.
pub async fn verify(src: &Path) -> anyhow::Result<Manifest> {
    let manifest_bytes = tokio::fs::read(src.join("manifest.json"))
        .await
        .with_context(|| format!("{} is not an Arno backup (no manifest.json)", src.display()))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).context("manifest.json is not valid")?;
    if !READS.contains(&manifest.format) {
        bail!(
            "this backup has layout version {}; this Arno reads versions {} to {}",
            manifest.format,
            READS.start(),
            READS.end()
        );
    }
    let sums = tokio::fs::read_to_string(src.join("SHA256SUMS")).await.context("SHA256SUMS is missing")?;
    let listed: HashMap<&str, &str> = sums.lines().filter_map(|l| l.split_once("  ")).map(|(h, p)| (p, h)).collect();
    let manifest_sum = hex::encode(Sha256::digest(&manifest_bytes));
    if listed.get("manifest.json") != Some(&manifest_sum.as_str()) {
        bail!("manifest.json does not match SHA256SUMS: the backup was altered or is damaged");
    }
    for (rel, entry) in &manifest.files {
        if rel.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") || rel.starts_with('/') {
            bail!("the manifest names an unsafe path {rel:?}");
        }
        if listed.get(rel.as_str()) != Some(&entry.sha256.as_str()) {
            bail!("{rel}: the manifest and SHA256SUMS disagree");
        }
        let found = hash_file(&src.join(rel)).await.with_context(|| format!("{rel} is missing from the backup"))?;
        if found != *entry {
            bail!(
                "{rel} is damaged: expected {} bytes with SHA-256 {}, found {} bytes with {}",
                entry.size,
                entry.sha256,
                found.size,
                found.sha256
            );
        }
    }
    if listed.len() != manifest.files.len() + 1 {
        bail!("SHA256SUMS lists files the manifest does not");
    }
    repos::verify(&manifest)?;
    Ok(manifest)
}

/// `arno restore SRC`: into an empty database, object store and instance key.
pub async fn restore(config: &Config, src: &Path) -> anyhow::Result<RestoreReport> {
    let manifest = verify(src).await?;
    let known =
        crate::db::known_versions(if manifest.backend == "sqlite" { Backend::Sqlite } else { Backend::Postgres });
    let newest_known = known.iter().copied().max().unwrap_or(0);
    if manifest.schema_version > newest_known || manifest.migrations.iter().any(|v| !known.contains(v)) {
        bail!(
            "this backup was made by Arno {} with database schema {}, newer than this binary ({}, schema {}); \
             restore it with Arno {} or later",
            manifest.arno_version,
            manifest.schema_version,
            env!("CARGO_PKG_VERSION"),
            newest_known,
            manifest.arno_version
        );
    }
    let backend = if config.database_url.expose().starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
    if backend.name() != manifest.backend {
        bail!(
            "this is a backup of a {} database, and the configured database is {}; restore into the same kind",
            manifest.backend,
            backend.name()
        );
    }

    // Everything must be empty before anything is written.
    let storage = Storage::from_config(config).await?;
    if !storage.list("").await.context("listing stored objects")?.is_empty() {
        bail!("the object store ({}) is not empty; restore into an empty one", storage.describe());
    }
    // The instance key the restored instance will use must be the backed-up instance's.
    let key_path = config.data_dir.join("secret.key");
    let included = manifest.secret_key == "included" && config.secret_key.is_none();
    let key = match (&config.secret_key, manifest.secret_key.as_str()) {
        (Some(configured), _) => configured.clone(),
        (None, "included") => {
            let text = tokio::fs::read_to_string(src.join("secret.key")).await.context("reading secret.key")?;
            crate::config::Secret::new(text.trim().to_owned())
        }
        (None, _) => bail!(
            "the backed-up instance took its key from its configuration (secret_key); configure the same \
             ARNO_SECRET_KEY before restoring"
        ),
    };
    if let Some(recorded) = &manifest.secret_fingerprint
        && *recorded != crate::keys::fingerprint(&key)
    {
        bail!(
            "the instance key is not the backed-up instance's (fingerprint {recorded}, configured {}); \
             configure the original ARNO_SECRET_KEY, or leave secret_key unset to use the backup's secret.key",
            crate::keys::fingerprint(&key)
        );
    }
    if included
        && let Ok(existing) = tokio::fs::read(&key_path).await
        && existing != tokio::fs::read(src.join("secret.key")).await?
    {
        bail!("{} holds a different instance key; restore into an empty data directory", key_path.display());
    }
    repos::ensure_targets_empty(&config.data_dir, &manifest).await?;
    let mut undo = ensure_database_empty(config, backend).await?;
    undo.key = (included && tokio::fs::metadata(&key_path).await.is_err()).then(|| key_path.clone());

    // Everything is checked. From here a failure takes back what this restore wrote, so the
    // targets are as empty as they were and the restore can simply be run again.
    let mut stored = vec![];
    let result = async {
        // The repositories first, beside their place: checked before the database is written.
        repos::stage(src, &config.data_dir, &manifest, &mut undo.repos).await?;
        match backend {
            Backend::Sqlite => restore_sqlite(config, src, &manifest).await?,
            Backend::Postgres => restore_postgres(config, src, &manifest).await?,
        }
        for rel in manifest.files.keys() {
            if let Some(key) = rel.strip_prefix("objects/") {
                let data = tokio::fs::read(src.join(rel)).await?;
                storage.put(key, data.into()).await.with_context(|| format!("storing object {key}"))?;
                stored.push(key.to_owned());
            }
        }
        let found = storage.list("").await?.len() as u64;
        if found != manifest.objects {
            bail!("restored {found} objects where the backup holds {}", manifest.objects);
        }
        if included {
            let data = tokio::fs::read(src.join("secret.key")).await?;
            crate::keys::write_private(&key_path, &data).with_context(|| format!("writing {}", key_path.display()))?;
        }
        // The backup may be older than this binary: bring it forward; the restored repositories
        // are where this data directory is.
        let db = Db::connect(&config.database_url, 2).await?;
        let done =
            async { Ok::<_, anyhow::Error>((db.migrate().await?, repos::record_paths(&db, &manifest).await?)) }.await;
        db.close().await;
        let done = done?;
        repos::place(&mut undo.repos).await?;
        Ok(done)
    }
    .await;
    match result {
        Ok((migrated, warnings)) => Ok(RestoreReport { manifest, migrated, warnings }),
        Err(e) => {
            let mut left = vec![];
            for key in &stored {
                if storage.delete(key).await.is_err() {
                    left.push(format!("object {key}"));
                }
            }
            if let Err(u) = undo.run(config).await {
                left.push(format!("the database ({u:#})"));
            }
            if let Err(u) = undo.repos.run().await {
                left.push(format!("the restored repositories ({u:#})"));
            }
            if left.is_empty() {
                Err(e.context("the restore failed and what it had written was removed: the targets are empty again"))
            } else {
                Err(e.context(format!(
                    "the restore failed, and removing what it had written failed too ({}); empty the database, \
                     the object store, the instance key and the restored repositories by hand before restoring again",
                    left.join(", ")
                )))
            }
        }
    }
}

/// What a restore writes besides objects, to take it back when the restore fails.
struct Undo {
    database: DatabaseUndo,
    /// The instance key file, when the restore creates it.
    key: Option<PathBuf>,
    repos: repos::RepoUndo,
}

enum DatabaseUndo {
    /// The SQLite file (empty or absent before).
    Sqlite(PathBuf),
    /// Every table in the schema (there were none before) and the functions that were not there.
    Postgres { functions_before: BTreeSet<String> },
}

/// Refuse a database that holds anything, and note how to empty it again.
async fn ensure_database_empty(config: &Config, backend: Backend) -> anyhow::Result<Undo> {
    let database = match backend {
        Backend::Sqlite => {
            let path = crate::db::sqlite_path(config.database_url.expose())
                .context("the SQLite database URL names no file")?;
            if let Ok(meta) = tokio::fs::metadata(&path).await
                && meta.len() > 0
            {
                let mut existing = open_sqlite(&path, true).await?;
                let (tables, _) = describe_sqlite(&mut existing).await?;
                existing.close().await.ok();
                if !tables.is_empty() {
                    bail!("the database {} is not empty; restore into an empty one", path.display());
                }
            }
            DatabaseUndo::Sqlite(path)
        }
        Backend::Postgres => {
            let mut conn = connect_pg(config).await?;
            let (existing,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
                    .fetch_one(&mut conn)
                    .await?;
            if existing > 0 {
                bail!("the database is not empty ({existing} tables); restore into an empty one");
            }
            let functions_before = pg_functions(&mut conn).await?;
            conn.close().await.ok();
            DatabaseUndo::Postgres { functions_before }
        }
    };
    Ok(Undo { database, key: None, repos: repos::RepoUndo::default() })
}

/// The functions of the current schema, by signature (`name(argtypes)`).
async fn pg_functions(conn: &mut sqlx::PgConnection) -> anyhow::Result<BTreeSet<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

impl Undo {
    async fn run(&self, config: &Config) -> anyhow::Result<()> {
        if let Some(key) = &self.key {
            match tokio::fs::remove_file(key).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        match &self.database {
            DatabaseUndo::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    match tokio::fs::remove_file(format!("{}{suffix}", path.display())).await {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
            }
            DatabaseUndo::Postgres { functions_before } => {
                let mut conn = connect_pg(config).await?;
                let tables: Vec<(String,)> =
                    sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
                        .fetch_all(&mut conn)
                        .await?;
                if !tables.is_empty() {
                    let list = tables.iter().map(|t| quote_ident(&t.0)).collect::<Vec<_>>().join(", ");
                    sqlx::query(&format!("DROP TABLE IF EXISTS {list} CASCADE")).execute(&mut conn).await?;
                }
                for function in pg_functions(&mut conn).await?.difference(functions_before) {
                    // A regprocedure's text is a quoted, schema-resolved signature.
                    sqlx::query(&format!("DROP FUNCTION IF EXISTS {function} CASCADE")).execute(&mut conn).await?;
                }
                conn.close().await.ok();
            }
        }
        Ok(())
    }
}

/// Compare restored row counts with the manifest's.
fn check_counts(found: &BTreeMap<String, TableEntry>, manifest: &Manifest) -> anyhow::Result<()> {
    for (name, entry) in &manifest.tables {
        let rows = found.get(name).map(|t| t.rows);
        if rows != Some(entry.rows) {
            bail!("table {name}: restored {} rows where the backup holds {}", rows.unwrap_or(0), entry.rows);
        }
    }
    Ok(())
}

async fn restore_sqlite(config: &Config, src: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    // Checked empty by ensure_database_empty.
    let path = crate::db::sqlite_path(config.database_url.expose()).context("the SQLite database URL names no file")?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = tokio::fs::remove_file(format!("{}{suffix}", path.display())).await;
    }
    let staging = path.with_extension("restoring");
    let checked = async {
        tokio::fs::copy(src.join("database.sqlite3"), &staging).await.context("copying the database")?;
        tokio::fs::File::open(&staging).await?.sync_all().await?;
        let mut conn = open_sqlite(&staging, false).await?;
        let (ok,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&mut conn).await?;
        if ok != "ok" {
            bail!("the restored database fails SQLite's integrity check: {ok}");
        }
        let (tables, _) = describe_sqlite(&mut conn).await?;
        conn.close().await.ok();
        check_counts(&tables, manifest)
    }
    .await;
    if let Err(e) = checked {
        let _ = tokio::fs::remove_file(&staging).await;
        return Err(e);
    }
    tokio::fs::rename(&staging, &path).await?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = tokio::fs::File::open(parent).await
    {
        let _ = dir.sync_all().await;
    }
    Ok(())
}

async fn restore_postgres(config: &Config, src: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    // Checked empty by ensure_database_empty.
    let mut conn = connect_pg(config).await?;
    // The schema the backup was taken with, then its rows, in one transaction.
    {
        let db = Db::connect(&config.database_url, 2).await?;
        db.migrate_to(manifest.schema_version).await?;
        db.close().await;
    }
    let order = pg_insert_order(&mut conn, manifest).await?;
    sqlx::query("BEGIN").execute(&mut conn).await?;
    // Rows the migrations themselves inserted (seed rows) are in the backup too.
    for name in order.iter().rev() {
        sqlx::query(&format!("DELETE FROM {}", quote_ident(name))).execute(&mut conn).await?;
    }
    for name in &order {
        let entry = &manifest.tables[name];
        let list = entry.columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let file = tokio::fs::File::open(src.join(table_file(name)?)).await?;
        let mut copy = conn.copy_in_raw(&format!("COPY {} ({list}) FROM STDIN", quote_ident(name))).await?;
        copy.read_from(file).await?;
        copy.finish().await.with_context(|| format!("restoring table {name}"))?;
    }
    // Sequences continue after the restored ids.
    let sequences: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, pg_get_serial_sequence(quote_ident(table_name), column_name)::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await?;
    for (table, column, sequence) in sequences {
        sqlx::query(&format!(
            "SELECT setval($1, COALESCE((SELECT max({}) FROM {}), 0) + 1, false)",
            quote_ident(&column),
            quote_ident(&table)
        ))
        .bind(sequence)
        .execute(&mut conn)
        .await?;
    }
    let mut found = BTreeMap::new();
    for name in manifest.tables.keys() {
        let (rows,): (i64,) =
            sqlx::query_as(&format!("SELECT count(*) FROM {}", quote_ident(name))).fetch_one(&mut conn).await?;
        found.insert(name.clone(), TableEntry { rows: rows as u64, columns: vec![] });
    }
    if let Err(e) = check_counts(&found, manifest) {
        sqlx::query("ROLLBACK").execute(&mut conn).await.ok();
        return Err(e);
    }
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await.ok();
    Ok(())
}

/// The backup's tables (but the migrations table, which the migrator filled) in an order where
/// every table comes after the tables its foreign keys point to.
async fn pg_insert_order(conn: &mut sqlx::PgConnection, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await?;
    let tables: BTreeSet<&String> = manifest.tables.keys().filter(|t| t.as_str() != MIGRATIONS_TABLE).collect();
    let mut needs: BTreeMap<&String, BTreeSet<&String>> = tables.iter().map(|t| (*t, BTreeSet::new())).collect();
    for (child, parent) in &edges {
        if child != parent
            && let (Some(deps), Some(p)) = (needs.get_mut(child), tables.get(parent))
        {
            deps.insert(*p);
        }
    }
    let mut order = vec![];
    let mut done: BTreeSet<&String> = BTreeSet::new();
    while done.len() < needs.len() {
        let ready: Vec<&String> = needs
            .iter()
            .filter(|(t, deps)| !done.contains(*t) && deps.iter().all(|d| done.contains(d)))
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            bail!("the tables' foreign keys form a cycle; cannot order the restore");
        }
        for t in ready {
            done.insert(t);
            order.push(t.clone());
        }
    }
    Ok(order)
}

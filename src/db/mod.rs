//! The database: one pool type over SQLite (default) and PostgreSQL.
//!
//! We use `sqlx::Any` so every store function is written once. The price is a narrow type
//! vocabulary, which we keep on purpose: ids are UUID text, times are UTC milliseconds since
//! the Unix epoch in `BIGINT` columns, flags are integers. Where the two backends genuinely
//! differ (transaction start, later `SKIP LOCKED` and `LISTEN/NOTIFY`), the variants live here
//! side by side.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};

use crate::config::Secret;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Folds repeated refusals into one audit record (see [`crate::audit::damper`]).
    denials: std::sync::Arc<crate::audit::damper::Damper>,
}

pub type Tx = Transaction<'static, Any>;

/// The current time as stored in the database.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Db {
    /// Connect (creating the SQLite file if needed). Does not migrate.
    pub async fn connect(url: &Secret, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let raw = url.expose();
        let backend = if raw.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let url = match backend {
            Backend::Sqlite if !raw.contains('?') => format!("{raw}?mode=rwc"),
            _ => raw.to_owned(),
        };
        if backend == Backend::Sqlite {
            let path = raw.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(parent)
                    .await
                    .with_context(|| format!("creating database directory {}", parent.display()))?;
            }
        }
        // Never log statements: they may carry personal data in bind-less literals.
        let options =
            AnyConnectOptions::from_str(&url).context("parsing the database URL")?.disable_statement_logging();
        let mut pool = AnyPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // WAL for concurrent readers; synchronous=FULL so a committed transaction survives
            // power loss (we acknowledge writes to users only after commit).
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        // One direct connection first: the pool retries until its timeout and then reports
        // only "timed out", while the operator needs the real reason (refused, auth, TLS, DNS).
        {
            use sqlx::Connection as _;
            let conn = sqlx::AnyConnection::connect_with(&options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to the {} database: {}", backend.name(), describe(&e)))?;
            conn.close().await.ok();
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the {} database: {}", backend.name(), describe(&e)))?;
        Ok(Db { pool, backend, denials: Default::default() })
    }

    /// Apply the embedded migrations for this backend; returns the versions applied now. On
    /// PostgreSQL the migrator holds an advisory lock, so replicas starting together apply each
    /// migration once; a database migrated by a newer Arno is refused (see [`Db::check_schema_known`]).
    pub async fn migrate(&self) -> anyhow::Result<Vec<i64>> {
        self.check_schema_known().await?;
        let before = self.applied_versions().await.unwrap_or_default();
        migrator(self.backend).run(&self.pool).await.context("applying database migrations")?;
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Apply the embedded migrations up to and including `version` only (restoring a backup
    /// taken with that schema).
    pub async fn migrate_to(&self, version: i64) -> anyhow::Result<()> {
        let all = migrator(self.backend);
        let partial = Migrator {
            migrations: std::borrow::Cow::Owned(all.iter().filter(|m| m.version <= version).cloned().collect()),
            ignore_missing: false,
            locking: all.locking,
            no_tx: all.no_tx,
        };
        partial.run(&self.pool).await.context("creating the backup's schema")?;
        Ok(())
    }

    /// The migrations applied to this database (empty when it has none yet).
    pub async fn applied_versions(&self) -> anyhow::Result<Vec<i64>> {
        let exists: (i64,) = match self.backend {
            Backend::Sqlite => {
                sqlx::query_as("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                    .fetch_one(&self.pool)
                    .await?
            }
            Backend::Postgres => sqlx::query_as(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
            )
            .fetch_one(&self.pool)
            .await?,
        };
        if exists.0 == 0 {
            return Ok(vec![]);
        }
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The embedded migrations not yet applied: `(version, description)`.
    pub async fn pending(&self) -> anyhow::Result<Vec<(i64, String)>> {
        self.check_schema_known().await?;
        let applied = self.applied_versions().await?;
        Ok(migrator(self.backend)
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| (m.version, m.description.to_string()))
            .collect())
    }

    /// Refuse a database that a newer Arno migrated: this binary does not know its schema, and
    /// running against it could corrupt data.
    pub async fn check_schema_known(&self) -> anyhow::Result<()> {
        let known = known_versions(self.backend);
        let applied = self.applied_versions().await?;
        if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
            anyhow::bail!(
                "the database schema is newer than this Arno {} knows: migration {unknown} was applied by a newer                  version (this binary knows up to {}). Run the newer Arno, or restore a backup taken before the                  upgrade (see docs/upgrade.md)",
                env!("CARGO_PKG_VERSION"),
                known.iter().max().copied().unwrap_or(0)
            );
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The refusal damper shared by every handle on this pool.
    pub fn denials(&self) -> &crate::audit::damper::Damper {
        &self.denials
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue on `busy_timeout` instead of failing with
    /// `SQLITE_BUSY` when a read transaction tries to upgrade.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A cheap round trip for `/ready`.
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

/// The migration versions this binary carries for a backend.
pub fn known_versions(backend: Backend) -> Vec<i64> {
    migrator(backend).iter().map(|m| m.version).collect()
}

/// The file of a `sqlite:` database URL.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Describe a connection error without echoing the URL (it may contain a password).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out".to_owned(),
        other => other.to_string(),
    }
}

/// True when the error is a unique-constraint violation (both backends).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || d.code().is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

/// Whether `e` is a foreign-key violation (PostgreSQL 23503, SQLite 787).
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation)
                || d.code().is_some_and(|c| c == "23503" || c == "787")
        }
        _ => false,
    }
}

/// A stored time as RFC 3339 UTC with milliseconds, e.g. `2026-11-22T02:27:50.123Z`.
pub fn rfc3339(ms: i64) -> String {
    // Clamp to 1970..=9999 so formatting can never panic, whatever a caller passes.
    const MAX_MS: i64 = 253_402_300_799_999;
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

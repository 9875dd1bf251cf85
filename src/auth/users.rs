//! The `users` and `local_credentials` tables.

use sqlx::{AnyConnection, FromRow};

use super::model::{OrgRole, User};
use crate::db::{self, now_ms};
use crate::error::{AppError, AppResult};

#[derive(FromRow)]
pub(super) struct UserRow {
    id: String,
    email: String,
    name: String,
    handle: String,
    org_role: String,
    created_at: i64,
}

impl UserRow {
    pub(super) fn into_user(self) -> AppResult<User> {
        let org_role = OrgRole::parse(&self.org_role)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown org role in users row")))?;
        Ok(User {
            id: self.id,
            email: self.email,
            name: self.name,
            handle: self.handle,
            org_role,
            created_at: self.created_at,
        })
    }
}

const COLUMNS: &str = "id, email, name, handle, org_role, created_at";

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub org_role: OrgRole,
    /// What the handle is derived from (an IdP's `preferred_username`); the e-mail's local part
    /// when `None`.
    pub handle_source: Option<&'a str>,
}

/// Trim and lower-case an address; reject what cannot be one.
pub fn normalize_email(raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.chars().all(|c| !c.is_whitespace() && !c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'));
    if valid { Ok(email) } else { Err(AppError::field("email", "is not a valid e-mail address")) }
}

pub fn validate_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AppError::field("name", "must be 1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}

/// A handle usable in a git branch name (`arno/{handle}`), per `git check-ref-format`: lower-case
/// ASCII letters, digits, `.`, `_` and `-`; no leading/trailing punctuation, no `..`, no `.lock`.
pub fn handle_base(source: &str) -> String {
    let mut out = String::new();
    for c in source.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '-' };
        let last = out.chars().last();
        // Collapse runs of punctuation, which also rules out `..`.
        if !c.is_ascii_alphanumeric() && last.is_some_and(|l| !l.is_ascii_alphanumeric()) {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(32).collect();
    out = out.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
    if let Some(stripped) = out.strip_suffix(".lock") {
        out = stripped.to_owned();
    }
    if out.is_empty() { "user".to_owned() } else { out }
}

async fn unique_handle(conn: &mut AnyConnection, base: &str) -> AppResult<String> {
    for n in 1..10_000u32 {
        let candidate = if n == 1 { base.to_owned() } else { format!("{base}-{n}") };
        let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE handle = $1")
            .bind(&candidate)
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_none() {
            return Ok(candidate);
        }
    }
    Err(AppError::Internal(anyhow::anyhow!("no free handle")))
}

/// Insert a user. The caller owns the transaction.
pub async fn create(conn: &mut AnyConnection, new: NewUser<'_>) -> AppResult<User> {
    let email = normalize_email(new.email)?;
    let name = validate_name(new.name)?;
    let local_part = email.split('@').next().unwrap_or_default();
    let handle = unique_handle(conn, &handle_base(new.handle_source.unwrap_or(local_part))).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, handle, org_role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(&email)
    .bind(&name)
    .bind(&handle)
    .bind(new.org_role.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => {
            let on_email = match &e {
                sqlx::Error::Database(d) => d.constraint().unwrap_or(d.message()).contains("email"),
                _ => false,
            };
            return Err(AppError::Conflict(if on_email {
                "a user with this e-mail address already exists".into()
            } else {
                "another user was created with the same handle at the same moment; try again".into()
            }));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(User { id, email, name, handle, org_role: new.org_role, created_at: now })
}

pub async fn set_password_hash(conn: &mut AnyConnection, user_id: &str, phc: &str) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO local_credentials (user_id, password_hash, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(phc)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_id(conn: &mut AnyConnection, id: &str) -> AppResult<Option<User>> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND disabled_at IS NULL"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(UserRow::into_user).transpose()
}

pub async fn find_by_email(conn: &mut AnyConnection, email: &str) -> AppResult<Option<User>> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1 AND disabled_at IS NULL"))
            .bind(&email)
            .fetch_optional(conn)
            .await?;
    row.map(UserRow::into_user).transpose()
}

/// The user and their password hash, for sign-in.
pub async fn find_credentials(conn: &mut AnyConnection, email: &str) -> AppResult<Option<(User, String)>> {
    let Some(user) = find_by_email(conn, email).await? else { return Ok(None) };
    let hash: Option<(String,)> = sqlx::query_as("SELECT password_hash FROM local_credentials WHERE user_id = $1")
        .bind(&user.id)
        .fetch_optional(conn)
        .await?;
    Ok(hash.map(|(h,)| (user, h)))
}

/// A user by id whether active or not, and whether they are deactivated.
pub async fn find_any(conn: &mut AnyConnection, id: &str) -> AppResult<Option<(User, bool)>> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        disabled_at: Option<i64>,
    }
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS}, disabled_at FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.user.into_user()?, r.disabled_at.is_some()))).transpose()
}

/// A user SCIM provisioned with this e-mail address who has never signed in through an IdP.
pub async fn find_scim_unlinked(conn: &mut AnyConnection, email: &str) -> AppResult<Option<User>> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users u WHERE email = $1 AND scim_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.id)"
    ))
    .bind(&email)
    .fetch_optional(conn)
    .await?;
    row.map(UserRow::into_user).transpose()
}

/// Change the org role; `source` names who decides it from now on (`oidc:<id>`), `None` for Arno.
pub async fn set_org_role(
    conn: &mut AnyConnection,
    user_id: &str,
    role: OrgRole,
    source: Option<&str>,
) -> AppResult<()> {
    sqlx::query("UPDATE users SET org_role = $2, role_source = $3, updated_at = $4 WHERE id = $1")
        .bind(user_id)
        .bind(role.as_str())
        .bind(source)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// Deactivate (ending every session and API token in the same transaction) or reactivate.
pub async fn set_active(tx: &mut crate::db::Tx, user_id: &str, active: bool) -> Result<(u64, u64), AppError> {
    let now = now_ms();
    if active {
        sqlx::query("UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        return Ok((0, 0));
    }
    sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 WHERE id = $1")
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let ended = super::sessions::delete_for_user(tx, user_id).await?;
    let revoked = super::tokens::delete_for_user(tx, user_id).await?;
    Ok((ended, revoked))
}

pub async fn touch_login(conn: &mut AnyConnection, user_id: &str) -> AppResult<()> {
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1").bind(user_id).bind(now_ms()).execute(conn).await?;
    Ok(())
}

pub async fn count(conn: &mut AnyConnection) -> AppResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(conn).await?;
    Ok(n)
}

pub async fn admin_exists(conn: &mut AnyConnection) -> AppResult<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM users WHERE org_role = 'admin' AND disabled_at IS NULL LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

/// Whether `user_id` is the only active Admin, so that taking their role or their account away
/// would leave nobody who can administer Arno. The one guard for every path that can do that: the
/// console, erasure, SCIM (groups and deactivation) and the IdP's role mapping at sign-in.
///
/// On PostgreSQL the active Admins' rows stay locked until the caller's transaction ends, so two
/// concurrent demotions of the last two Admins cannot both see "there is another one" (the second
/// re-reads after the first commits). SQLite's `BEGIN IMMEDIATE` already serialises writers.
pub async fn is_last_admin(conn: &mut AnyConnection, backend: db::Backend, user_id: &str) -> AppResult<bool> {
    let lock = if backend == db::Backend::Postgres { " FOR UPDATE" } else { "" };
    let admins: Vec<(String,)> =
        sqlx::query_as(&format!("SELECT id FROM users WHERE org_role = 'admin' AND disabled_at IS NULL{lock}"))
            .fetch_all(conn)
            .await?;
    Ok(admins.len() == 1 && admins[0].0 == user_id)
}

/// The user columns, `u.`-prefixed, for joins that map to [`UserRow`].
pub(super) fn joined_columns() -> &'static str {
    "u.id, u.email, u.name, u.handle, u.org_role, u.created_at"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_safe_branch_names() {
        assert_eq!(handle_base("Jane.Doe"), "jane.doe");
        assert_eq!(handle_base("a..b"), "a.b");
        assert_eq!(handle_base("-x_y-"), "x_y");
        assert_eq!(handle_base("ünï cödé"), "n-c-d");
        assert_eq!(handle_base("foo.lock"), "foo");
        assert_eq!(handle_base("@@@"), "user");
        assert_eq!(handle_base("~^:?*[\\"), "user");
        assert!(handle_base(&"a".repeat(100)).len() <= 32);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Jane@Example.COM ").unwrap(), "jane@example.com");
        for bad in ["", "jane", "@x", "x@", "a@b@c", "a b@c", "a@.c"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}

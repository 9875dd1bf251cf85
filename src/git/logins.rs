//! Users' accounts on a connection's GitHub, linked to their Arno account so that a project can
//! take their roles from their repository permissions (see
//! [`crate::projects::github_roles`]). A link is only ever made from GitHub's own word: the
//! device flow of the connection's App ([`super::github::device`]) — the user enters a code on
//! GitHub, approves, and Arno reads who they are. One GitHub account links to one Arno user per
//! connection; the device code waits sealed in the database between the two steps (any replica
//! may answer the next one) and GitHub is asked no more often than it allows.

use serde::Serialize;
use serde_json::json;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::GitError;
use super::github::device::DevicePoll;
use super::hosted::HostedClients;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::model::Authenticated;
use crate::db::{Db, now_ms, rfc3339};
use crate::error::AppError;
use crate::keys::Keys;

/// A linked account.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct GitLogin {
    pub connection: String,
    /// As GitHub spells it.
    pub login: String,
    /// GitHub's numeric id of the account (a login can be renamed; the id cannot).
    pub provider_user_id: i64,
    /// RFC 3339.
    pub linked_at: String,
}

/// A device flow waiting for the user.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct PendingLink {
    pub connection: String,
    /// What the user enters on GitHub.
    pub user_code: String,
    /// Where.
    pub verification_uri: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Seconds to wait between checks.
    pub interval_secs: i64,
}

/// What checking a flow found.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LinkOutcome {
    Linked {
        login: GitLogin,
    },
    /// Not approved on GitHub yet: check again after `interval_secs`.
    Pending {
        pending: PendingLink,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no such connection")]
    NoConnection,
    #[error("no linking was started for this connection (start again)")]
    NotStarted,
    #[error("the code expired before it was approved on GitHub: start again")]
    Expired,
    #[error("the request was declined on GitHub")]
    Denied,
    #[error("GitHub account {0} is linked to another Arno user; they must unlink it first")]
    Taken(String),
    #[error(transparent)]
    Git(GitError),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        LoginError::App(e.into())
    }
}

impl From<LoginError> for AppError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::NoConnection => AppError::NotFound,
            LoginError::NotStarted | LoginError::Expired | LoginError::Denied | LoginError::Taken(_) => {
                AppError::Conflict(e.to_string())
            }
            LoginError::Git(g) => crate::projects::git_error(g),
            LoginError::App(a) => a,
        }
    }
}

type Result<T> = std::result::Result<T, LoginError>;

/// The longest wait between two polls of a flow.
const MAX_INTERVAL_SECS: i64 = 120;
/// A flow with more time left than this is shown again instead of asking GitHub for a new code.
const REUSE_WHILE_MS: i64 = 60_000;

fn purpose(user_id: &str, connection: &str) -> String {
    format!("git_login_flow:{user_id}:{connection}")
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    connection: String,
    login: String,
    provider_user_id: i64,
    linked_at: i64,
}

impl From<LoginRow> for GitLogin {
    fn from(r: LoginRow) -> Self {
        GitLogin {
            connection: r.connection,
            login: r.login,
            provider_user_id: r.provider_user_id,
            linked_at: rfc3339(r.linked_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct FlowRow {
    connection: String,
    device_code_sealed: String,
    user_code: String,
    verification_uri: String,
    expires_at: i64,
    interval_secs: i64,
    next_poll_at: i64,
}

impl FlowRow {
    fn view(&self) -> PendingLink {
        PendingLink {
            connection: self.connection.clone(),
            user_code: self.user_code.clone(),
            verification_uri: self.verification_uri.clone(),
            expires_at: rfc3339(self.expires_at),
            interval_secs: self.interval_secs,
        }
    }
}

/// The user's linked accounts.
pub async fn list(conn: &mut AnyConnection, user_id: &str) -> std::result::Result<Vec<GitLogin>, AppError> {
    let rows: Vec<LoginRow> = sqlx::query_as(
        "SELECT connection, login, provider_user_id, linked_at FROM user_git_logins WHERE user_id = $1 ORDER BY connection",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(GitLogin::from).collect())
}

/// The user's flows still waiting.
pub async fn pending(conn: &mut AnyConnection, user_id: &str) -> std::result::Result<Vec<PendingLink>, AppError> {
    let rows: Vec<FlowRow> = sqlx::query_as(
        "SELECT connection, device_code_sealed, user_code, verification_uri, expires_at, interval_secs, next_poll_at \
         FROM git_login_flows WHERE user_id = $1 AND expires_at > $2 ORDER BY connection",
    )
    .bind(user_id)
    .bind(now_ms())
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(FlowRow::view).collect())
}

/// `(user id, login in lower case, GitHub id)` of every account linked on `connection` by a user
/// who is not deactivated.
pub async fn linked_on(
    conn: &mut AnyConnection,
    connection: &str,
) -> std::result::Result<Vec<(String, String, i64)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT l.user_id, l.login_lower, l.provider_user_id FROM user_git_logins l JOIN users u ON u.id = l.user_id \
         WHERE l.connection = $1 AND u.disabled_at IS NULL ORDER BY l.user_id",
    )
    .bind(connection)
    .fetch_all(conn)
    .await?)
}

async fn flow(conn: &mut AnyConnection, user_id: &str, connection: &str) -> Result<Option<FlowRow>> {
    Ok(sqlx::query_as(
        "SELECT connection, device_code_sealed, user_code, verification_uri, expires_at, interval_secs, next_poll_at \
         FROM git_login_flows WHERE user_id = $1 AND connection = $2",
    )
    .bind(user_id)
    .bind(connection)
    .fetch_optional(conn)
    .await?)
}

/// Start linking the caller's account on `connection`: the code to enter on GitHub. A flow with
/// more than a minute left is shown again rather than asking GitHub for another.
pub async fn start(
    db: &Db,
    keys: &Keys,
    hosted: &HostedClients,
    auth: &Authenticated,
    origin: &Origin,
    connection: &str,
) -> Result<PendingLink> {
    let user_id = auth.user.id.as_str();
    let client = match hosted.get(connection).await {
        Ok(c) => c,
        Err(GitError::NotFound(_)) => return Err(LoginError::NoConnection),
        Err(e) => return Err(LoginError::Git(e)),
    };
    let now = now_ms();
    {
        let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
        if let Some(f) = flow(&mut conn, user_id, connection).await?
            && f.expires_at - now > REUSE_WHILE_MS
        {
            return Ok(f.view());
        }
    }
    let code = client.device_code().await.map_err(LoginError::Git)?;
    // Users are sent where this says: only to the connection's own GitHub.
    let web = client.web_url("/");
    let uri_ok = url::Url::parse(&code.verification_uri).is_ok_and(|u| u.origin() == web.origin());
    if !uri_ok {
        return Err(LoginError::Git(GitError::Upstream(
            "GitHub's device flow named a verification address on another host".into(),
        )));
    }
    let expires_at = now + i64::try_from(code.expires_in.min(3_600)).unwrap_or(900) * 1000;
    let interval = i64::try_from(code.interval).unwrap_or(5).clamp(1, MAX_INTERVAL_SECS);
    let row = FlowRow {
        connection: connection.to_owned(),
        device_code_sealed: keys.seal(&purpose(user_id, connection), &code.device_code),
        user_code: code.user_code,
        verification_uri: code.verification_uri,
        expires_at,
        interval_secs: interval,
        next_poll_at: now + interval * 1000,
    };
    let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
    sqlx::query(
        "INSERT INTO git_login_flows (user_id, connection, device_code_sealed, user_code, verification_uri, expires_at, \
         interval_secs, next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, connection) DO UPDATE \
         SET device_code_sealed = excluded.device_code_sealed, user_code = excluded.user_code, \
         verification_uri = excluded.verification_uri, expires_at = excluded.expires_at, \
         interval_secs = excluded.interval_secs, next_poll_at = excluded.next_poll_at",
    )
    .bind(user_id)
    .bind(connection)
    .bind(&row.device_code_sealed)
    .bind(&row.user_code)
    .bind(&row.verification_uri)
    .bind(row.expires_at)
    .bind(row.interval_secs)
    .bind(row.next_poll_at)
    .execute(&mut *conn)
    .await?;
    drop(conn);
    let event = Event::new("user.git_login.start", Outcome::Allowed, Actor::of(auth), origin)
        .target("git_connection", connection);
    audit::record_alone(db, event).await?;
    Ok(row.view())
}

/// Check whether the caller approved on GitHub; link the account when they did. Checks sooner
/// than GitHub allows are answered "pending" without asking it.
pub async fn check(
    db: &Db,
    keys: &Keys,
    hosted: &HostedClients,
    auth: &Authenticated,
    origin: &Origin,
    connection: &str,
) -> Result<LinkOutcome> {
    let user_id = auth.user.id.as_str();
    let now = now_ms();
    let row = {
        let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
        flow(&mut conn, user_id, connection).await?.ok_or(LoginError::NotStarted)?
    };
    if row.expires_at <= now {
        forget_flow(db, user_id, connection).await?;
        return Err(LoginError::Expired);
    }
    if now < row.next_poll_at {
        return Ok(LinkOutcome::Pending { pending: row.view() });
    }
    // Claim this poll: of checks that arrive together (tabs, replicas, a script), one asks
    // GitHub; the others are answered "pending" without asking.
    let claimed = {
        let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
        sqlx::query(
            "UPDATE git_login_flows SET next_poll_at = $3 WHERE user_id = $1 AND connection = $2 AND next_poll_at <= $4",
        )
        .bind(user_id)
        .bind(connection)
        .bind(now + row.interval_secs * 1000)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1
    };
    if !claimed {
        return Ok(LinkOutcome::Pending { pending: row.view() });
    }
    let device_code = keys
        .open(&purpose(user_id, connection), &row.device_code_sealed)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a device code cannot be opened with this instance key")))?;
    let client = match hosted.get(connection).await {
        Ok(c) => c,
        Err(GitError::NotFound(_)) => return Err(LoginError::NoConnection),
        Err(e) => return Err(LoginError::Git(e)),
    };
    let answer = client.device_poll(&device_code).await;
    // The next poll waits the interval from now (after the answer), longer when GitHub says so.
    let (interval, wait_ms) = match &answer {
        Ok(DevicePoll::SlowDown(secs)) => {
            let asked = i64::try_from(*secs).unwrap_or(MAX_INTERVAL_SECS);
            let interval = asked.max(row.interval_secs + 5).min(MAX_INTERVAL_SECS);
            (interval, interval * 1000)
        }
        Err(GitError::RateLimited { retry_after_ms }) => {
            (row.interval_secs, i64::try_from(*retry_after_ms).unwrap_or(60_000).max(row.interval_secs * 1000))
        }
        _ => (row.interval_secs, row.interval_secs * 1000),
    };
    let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
    sqlx::query(
        "UPDATE git_login_flows SET next_poll_at = $3, interval_secs = $4 WHERE user_id = $1 AND connection = $2",
    )
    .bind(user_id)
    .bind(connection)
    .bind(now_ms() + wait_ms)
    .bind(interval)
    .execute(&mut *conn)
    .await?;
    drop(conn);
    match answer.map_err(LoginError::Git)? {
        DevicePoll::Pending | DevicePoll::SlowDown(_) => {
            Ok(LinkOutcome::Pending { pending: PendingLink { interval_secs: interval, ..row.view() } })
        }
        DevicePoll::Denied => {
            forget_flow(db, user_id, connection).await?;
            Err(LoginError::Denied)
        }
        DevicePoll::Expired => {
            forget_flow(db, user_id, connection).await?;
            Err(LoginError::Expired)
        }
        DevicePoll::Approved(account) => link(db, auth, origin, connection, &account.login, account.id).await,
    }
}

async fn forget_flow(db: &Db, user_id: &str, connection: &str) -> Result<()> {
    let mut conn = db.pool().acquire().await.map_err(AppError::from)?;
    delete_flow(&mut conn, user_id, connection).await
}

async fn delete_flow(conn: &mut AnyConnection, user_id: &str, connection: &str) -> Result<()> {
    sqlx::query("DELETE FROM git_login_flows WHERE user_id = $1 AND connection = $2")
        .bind(user_id)
        .bind(connection)
        .execute(conn)
        .await?;
    Ok(())
}

async fn link(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    connection: &str,
    login: &str,
    provider_user_id: i64,
) -> Result<LinkOutcome> {
    let user_id = auth.user.id.as_str();
    let now = now_ms();
    let mut tx = db.begin().await?;
    let holder: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM user_git_logins WHERE connection = $1 AND provider_user_id = $2")
            .bind(connection)
            .bind(provider_user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if holder.as_ref().is_some_and(|(u,)| u != user_id) {
        drop(tx);
        return refuse_taken(db, auth, origin, connection, login).await;
    }
    let inserted = sqlx::query(
        "INSERT INTO user_git_logins (user_id, connection, login, login_lower, provider_user_id, linked_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, connection) DO UPDATE SET login = excluded.login, \
         login_lower = excluded.login_lower, provider_user_id = excluded.provider_user_id, linked_at = excluded.linked_at",
    )
    .bind(user_id)
    .bind(connection)
    .bind(login)
    .bind(login.to_ascii_lowercase())
    .bind(provider_user_id)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        // Someone else linked the account between the look above and this write.
        Err(e) if crate::db::is_unique_violation(&e) => {
            drop(tx);
            return refuse_taken(db, auth, origin, connection, login).await;
        }
        other => other?,
    };
    delete_flow(&mut tx, user_id, connection).await?;
    // A login is a name, not a secret; the audit record carries it so an Auditor can tell whose
    // account was linked.
    let event = Event::new("user.git_login.link", Outcome::Allowed, Actor::of(auth), origin)
        .target("git_connection", connection)
        .intent(json!({"login": login, "provider_user_id": provider_user_id}));
    audit::record(&mut tx, event).await?;
    tx.commit().await?;
    let login = GitLogin {
        connection: connection.to_owned(),
        login: login.to_owned(),
        provider_user_id,
        linked_at: rfc3339(now),
    };
    Ok(LinkOutcome::Linked { login })
}

async fn refuse_taken(
    db: &Db,
    auth: &Authenticated,
    origin: &Origin,
    connection: &str,
    login: &str,
) -> Result<LinkOutcome> {
    forget_flow(db, &auth.user.id, connection).await?;
    let event = Event::new("user.git_login.link", Outcome::Denied, Actor::of(auth), origin)
        .target("git_connection", connection)
        .intent(json!({"reason": "linked_to_another_user"}));
    audit::record_alone(db, event).await?;
    Err(LoginError::Taken(login.to_owned()))
}

/// Unlink the caller's account on `connection`; whether there was one. Memberships it granted go at the next sync.
pub async fn unlink(db: &Db, auth: &Authenticated, origin: &Origin, connection: &str) -> Result<bool> {
    let user_id = auth.user.id.as_str();
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM user_git_logins WHERE user_id = $1 AND connection = $2")
        .bind(user_id)
        .bind(connection)
        .execute(&mut *tx)
        .await?;
    // A waiting flow stays (it expires by itself): deleting it would let a loop of start and
    // unlink ask GitHub for code after code.
    let removed = done.rows_affected() > 0;
    if removed {
        let event = Event::new("user.git_login.unlink", Outcome::Allowed, Actor::of(auth), origin)
            .target("git_connection", connection);
        audit::record(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(removed)
}

/// Forget every account linked on `connection` and every flow waiting there (the connection is
/// gone, or now points at another GitHub, where the ids mean other people).
pub async fn forget_connection(conn: &mut AnyConnection, connection: &str) -> sqlx::Result<()> {
    for table in ["user_git_logins", "git_login_flows"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE connection = $1")).bind(connection).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Forget a user's linked accounts and waiting flows (their erasure).
pub async fn forget_user(conn: &mut AnyConnection, user_id: &str) -> std::result::Result<(), AppError> {
    for table in ["user_git_logins", "git_login_flows"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(user_id).execute(&mut *conn).await?;
    }
    Ok(())
}

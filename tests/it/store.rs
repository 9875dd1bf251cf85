//! Database behaviour, run on whichever backend `TEST_DATABASE` selects (CI runs both).

use arno::audit::{Actor, Origin};
use arno::auth::{OrgRole, users};
use arno::config::Secret;
use arno::db::{Backend, Db};
use arno::error::AppError;

use crate::support::{fresh_database_url, is_postgres};

async fn fresh_db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let db = Db::connect(&Secret::new(url), 5).await.unwrap();
    let applied = db.migrate().await.unwrap();
    assert!(!applied.is_empty(), "a fresh database gets every migration");
    (db, dir)
}

#[tokio::test]
async fn runs_on_the_backend_under_test_and_migrates_idempotently() {
    let (db, _dir) = fresh_db().await;
    let expected = if is_postgres() { Backend::Postgres } else { Backend::Sqlite };
    assert_eq!(db.backend(), expected);
    assert!(db.migrate().await.unwrap().is_empty(), "second run applies nothing");
    db.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_is_durable_wal() {
    if is_postgres() {
        return;
    }
    let (db, _dir) = fresh_db().await;
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(db.pool()).await.unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(db.pool()).await.unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys").fetch_one(db.pool()).await.unwrap();
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn users_have_unique_emails_and_handles() {
    let (db, _dir) = fresh_db().await;
    let mut tx = db.begin().await.unwrap();
    let a = users::create(
        &mut tx,
        users::NewUser { email: "Jane@A.example", name: "Jane A", org_role: OrgRole::Member, handle_source: None },
    )
    .await
    .unwrap();
    let b = users::create(
        &mut tx,
        users::NewUser { email: "jane@b.example", name: "Jane B", org_role: OrgRole::Auditor, handle_source: None },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(a.handle, "jane");
    assert_eq!(b.handle, "jane-2");
    assert_eq!(a.email, "jane@a.example");

    let mut tx = db.begin().await.unwrap();
    let dup = users::create(
        &mut tx,
        users::NewUser { email: "JANE@a.example", name: "Again", org_role: OrgRole::Member, handle_source: None },
    )
    .await;
    assert!(matches!(dup, Err(AppError::Conflict(_))), "{dup:?}");
    drop(tx);

    let mut conn = db.pool().acquire().await.unwrap();
    let found = users::find_by_email(&mut conn, " jane@B.example ").await.unwrap().unwrap();
    assert_eq!(found.id, b.id);
    assert_eq!(found.org_role, OrgRole::Auditor);
    assert_eq!(users::count(&mut conn).await.unwrap(), 2);
    assert!(!users::admin_exists(&mut conn).await.unwrap());
}

#[tokio::test]
async fn an_uncommitted_transaction_leaves_nothing_behind() {
    let (db, _dir) = fresh_db().await;
    {
        let mut tx = db.begin().await.unwrap();
        users::create(
            &mut tx,
            users::NewUser { email: "ghost@example.com", name: "Ghost", org_role: OrgRole::Admin, handle_source: None },
        )
        .await
        .unwrap();
        // Dropped without commit: rolled back.
    }
    let mut conn = db.pool().acquire().await.unwrap();
    assert_eq!(users::count(&mut conn).await.unwrap(), 0);
}

#[tokio::test]
async fn local_users_are_created_atomically_with_their_password() {
    let (db, _dir) = fresh_db().await;
    let new = |password: &str| arno::auth::NewLocalUser {
        email: "ada@example.com",
        name: "Ada",
        password: password.to_owned(),
        org_role: OrgRole::Admin,
    };
    // A rejected password creates no half user.
    assert!(matches!(
        arno::auth::create_local_user(&db, new("short"), Actor::System, &Origin::system()).await,
        Err(AppError::Validation { .. })
    ));
    let mut conn = db.pool().acquire().await.unwrap();
    assert_eq!(users::count(&mut conn).await.unwrap(), 0);
    arno::auth::create_local_user(&db, new("a long enough password"), Actor::System, &Origin::system()).await.unwrap();
    let (user, hash) = users::find_credentials(&mut conn, "ada@example.com").await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert_eq!(user.org_role, OrgRole::Admin);
}

#[tokio::test]
async fn throttle_counts_failures_and_blocks_with_backoff() {
    use arno::auth::throttle;
    let (db, _dir) = fresh_db().await;
    let key = [1u8; 32];
    let keys = [throttle::account_key(&key, "ada@example.com", 2)];
    assert_eq!(throttle::blocked_for(&db, &keys).await.unwrap(), None);
    throttle::record_failure(&db, &keys).await.unwrap();
    assert_eq!(throttle::blocked_for(&db, &keys).await.unwrap(), None);
    throttle::record_failure(&db, &keys).await.unwrap();
    let first = throttle::blocked_for(&db, &keys).await.unwrap().unwrap();
    assert!(first > 25_000 && first <= 30_000, "{first}");
    throttle::record_failure(&db, &keys).await.unwrap();
    let second = throttle::blocked_for(&db, &keys).await.unwrap().unwrap();
    assert!(second > 55_000 && second <= 60_000, "backoff doubles: {second}");
    throttle::record_success(&db, &keys[0]).await.unwrap();
    assert_eq!(throttle::blocked_for(&db, &keys).await.unwrap(), None);
}

#[tokio::test]
async fn sign_in_throttle_blocks_the_guessers_pair_only_and_forgets() {
    use arno::auth::throttle::{self, Scope, SignInKeys, SignInLimits};
    let (db, _dir) = fresh_db().await;
    let secret = [1u8; 32];
    let limits = SignInLimits { per_account_address: 2, per_address: 4, account_wide: 6 };
    let from = |ip: &str| SignInKeys::new(&secret, "ada@example.com", Some(ip.parse().unwrap()), limits);
    let (attacker, victim) = (from("203.0.113.66"), from("198.51.100.7"));
    let rows = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM login_throttle").fetch_one(db.pool()).await.unwrap();
        n
    };
    throttle::record_failure(&db, attacker.keys()).await.unwrap();
    assert_eq!(throttle::sign_in_blocked(&db, &attacker).await.unwrap(), None);
    throttle::record_failure(&db, attacker.keys()).await.unwrap();
    let blocked = throttle::sign_in_blocked(&db, &attacker).await.unwrap().unwrap();
    assert_eq!(blocked.scope, Scope::AccountAddress);
    assert!(blocked.retry_after_ms > 25_000 && blocked.retry_after_ms <= 30_000, "{blocked:?}");
    // The same account from another address is not blocked, and checking writes nothing.
    assert_eq!(throttle::sign_in_blocked(&db, &victim).await.unwrap(), None);
    assert_eq!(rows().await, 3, "pair, address and account");
    // The victim's success clears only the victim's pair.
    throttle::record_success(&db, victim.pair()).await.unwrap();
    assert_eq!(throttle::sign_in_blocked(&db, &attacker).await.unwrap().map(|b| b.scope), Some(Scope::AccountAddress));
    // Spread over addresses, the failures reach the account-wide backstop, which holds everywhere.
    for ip in ["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"] {
        throttle::record_failure(&db, from(ip).keys()).await.unwrap();
    }
    assert_eq!(throttle::sign_in_blocked(&db, &victim).await.unwrap().map(|b| b.scope), Some(Scope::Account));
    // Time passes (every time held moves an hour back): the sweep forgets everything.
    db_exec(
        &db,
        "UPDATE login_throttle SET window_start = window_start - 3600000, blocked_until = blocked_until - 3600000",
    )
    .await;
    assert_eq!(throttle::sign_in_blocked(&db, &attacker).await.unwrap(), None);
    throttle::sweep(&db).await.unwrap();
    assert_eq!(rows().await, 0);
}

async fn db_exec(db: &Db, sql: &str) {
    sqlx::query(sql).execute(db.pool()).await.unwrap();
}

#[tokio::test]
async fn api_tokens_store_only_hashes() {
    use arno::auth::tokens;
    let (db, _dir) = fresh_db().await;
    let mut tx = db.begin().await.unwrap();
    let u = users::create(
        &mut tx,
        users::NewUser { email: "t@example.com", name: "T", org_role: OrgRole::Member, handle_source: None },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let (info, secret) = tokens::create(&mut conn, &u.id, "ci", Some(1)).await.unwrap();
    let (hash,): (String,) = sqlx::query_as("SELECT token_hash FROM api_tokens").fetch_one(&mut *conn).await.unwrap();
    assert_ne!(hash, secret);
    assert_eq!(hash.len(), 64);
    assert_eq!(tokens::authenticate(&mut conn, &secret).await.unwrap().unwrap().id, u.id);
    assert!(tokens::authenticate(&mut conn, "arno_wrong").await.unwrap().is_none());
    assert!(tokens::revoke(&mut conn, &u.id, &info.id).await.unwrap());
    assert!(tokens::authenticate(&mut conn, &secret).await.unwrap().is_none());
    assert!(tokens::list(&mut conn, &u.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn housekeeping_removes_expired_sessions_only() {
    use arno::auth::sessions;
    let (db, _dir) = fresh_db().await;
    let mut tx = db.begin().await.unwrap();
    let u = users::create(
        &mut tx,
        users::NewUser { email: "s@example.com", name: "S", org_role: OrgRole::Member, handle_source: None },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let new = || sessions::NewSession {
        oidc: None,
        user_id: &u.id,
        ip: None,
        user_agent: None,
        absolute_timeout: std::time::Duration::from_secs(3600),
    };
    let live = sessions::create(&mut conn, new()).await.unwrap();
    let idle = sessions::create(&mut conn, new()).await.unwrap();
    let old = sessions::create(&mut conn, new()).await.unwrap();
    let hash = |c: &str| arno::keys::sha256_hex(c);
    sqlx::query("UPDATE sessions SET last_seen_at = 0 WHERE id_hash = $1")
        .bind(hash(&idle))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET expires_at = 1 WHERE id_hash = $1")
        .bind(hash(&old))
        .execute(&mut *conn)
        .await
        .unwrap();
    let remaining = sessions::sweep(&mut conn, std::time::Duration::from_secs(8 * 3600)).await.unwrap();
    assert_eq!(remaining, 1);
    let idle_timeout = std::time::Duration::from_secs(8 * 3600);
    assert!(sessions::lookup(&mut conn, &live, idle_timeout).await.unwrap().is_some());
    assert!(sessions::lookup(&mut conn, &idle, idle_timeout).await.unwrap().is_none());
}

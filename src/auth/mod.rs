//! Identity and access: local accounts, browser sessions, API tokens, first-run setup,
//! sign-in throttling, and the extractors that authenticate requests.

pub mod access;
pub mod device;
pub mod extract;
pub mod gdpr;
pub mod model;
pub mod oidc;
pub mod password;
pub mod profile;
pub mod routes;
pub mod scim;
pub mod sessions;
pub mod setup;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use extract::{ApiUser, MaybeUser, PageUser};
pub use model::{AuthMethod, Authenticated, OrgRole, User};

use crate::db::Db;
use crate::error::AppResult;

pub struct NewLocalUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password: String,
    pub org_role: OrgRole,
}

/// Create a user who signs in with a password (the CLI's `admin create-user`), audited as
/// done by `actor`.
pub async fn create_local_user(
    db: &Db,
    new: NewLocalUser<'_>,
    actor: crate::audit::Actor<'_>,
    origin: &crate::audit::Origin,
) -> AppResult<User> {
    let email = users::normalize_email(new.email)?;
    users::validate_name(new.name)?;
    password::check_policy(&new.password, &email)?;
    let phc = password::hash(new.password).await?;
    let mut tx = db.begin().await?;
    let user = users::create(
        &mut tx,
        users::NewUser { email: &email, name: new.name, org_role: new.org_role, handle_source: None },
    )
    .await?;
    users::set_password_hash(&mut tx, &user.id, &phc).await?;
    let event = crate::audit::Event::new("user.create", crate::audit::Outcome::Allowed, actor, origin)
        .target("user", &user.id)
        .intent(serde_json::json!({"org_role": user.org_role.as_str(), "auth": "password"}));
    crate::audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(user)
}

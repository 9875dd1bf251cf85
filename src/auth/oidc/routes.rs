//! `/auth/oidc/{id}/login` and `/auth/oidc/{id}/callback`, and what happens at the callback:
//! the user is found by issuer + `sub` (or created), their roles are re-derived from the IdP's
//! groups, and a session starts — all in one transaction with its audit records.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Identity, OidcError, Provider};
use crate::app::AppState;
use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::auth::model::{OrgRole, User};
use crate::auth::routes::{open_session, safe_next, session_cookies, with_cookies};
use crate::auth::users;
use crate::db::{Tx, now_ms};
use crate::error::{AppError, AppResult};
use crate::http::{RequestContext, cookies};
use crate::ui::{PageContext, render};

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

#[derive(Template)]
#[template(path = "sso_error.html")]
struct SsoErrorPage {
    page: PageContext,
    title: String,
    message: String,
    provider_id: String,
}

fn failure_page(status: StatusCode, provider: &Provider, title: &str, message: String) -> AppResult<Response> {
    let html = render(&SsoErrorPage {
        page: PageContext::anonymous(),
        title: title.to_owned(),
        message,
        provider_id: provider.config.id.clone(),
    })?;
    Ok((status, html).into_response())
}

/// `GET /auth/oidc/{id}/login`
pub async fn login(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ctx: RequestContext,
    Query(q): Query<LoginQuery>,
) -> AppResult<Response> {
    let provider = state.oidc.provider(&id).ok_or(AppError::NotFound)?.clone();
    if let Err(retry_after_ms) = crate::auth::throttle::start_allowed(&state.db, "oidc", ctx.client_ip).await? {
        tracing::warn!(event_type = "sso_start_throttled", provider = %id, "too many SSO sign-ins started");
        let origin = Origin::from(&ctx);
        let event = Event::new("auth.login", Outcome::Denied, Actor::Anonymous, &origin)
            .intent(json!({"method": "oidc", "provider": id, "reason": "throttled", "limit": "starts_per_address"}));
        audit::record_alone(&state.db, event).await?;
        let mut response = failure_page(
            StatusCode::TOO_MANY_REQUESTS,
            &provider,
            "Too many sign-in attempts",
            "Too many sign-ins were started from your network in the last few minutes. Wait a little and \
             try again."
                .to_owned(),
        )?;
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, crate::error::retry_after(retry_after_ms));
        return Ok(response);
    }
    let binding = crate::keys::random_token(16);
    let next = safe_next(&q.next).to_owned();
    match state.oidc.start(&state.db, &provider, &state.config.public_base(), &binding, &next).await {
        Ok(url) => {
            let cookie = cookies::set(&state.config, cookies::OIDC, &binding, Some(super::LOGIN_TTL.as_secs()));
            Ok(with_cookies(Redirect::to(&url).into_response(), [cookie]))
        }
        Err(e) => {
            tracing::warn!(event_type = "sso_unavailable", provider = %id, error = %e, "cannot start SSO sign-in");
            failure_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &provider,
                &format!("{} is unavailable", provider.config.name),
                format!(
                    "Arno cannot reach {} right now, so signing in with it is not possible. Try again in a few \
                     minutes; if it keeps happening, tell your administrator.",
                    provider.config.name
                ),
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/{id}/callback`
pub async fn callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ctx: RequestContext,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> AppResult<Response> {
    let provider = state.oidc.provider(&id).ok_or(AppError::NotFound)?.clone();
    let origin = Origin::from(&ctx);
    let binding = cookies::get(&headers, &cookies::name(&state.config, cookies::OIDC));
    let result = match (&q.error, &q.code, &q.state) {
        (Some(error), _, _) => {
            let detail = q.error_description.as_deref().unwrap_or(error);
            Err(OidcError::Refused(detail.chars().take(200).collect()))
        }
        (None, Some(code), Some(st)) => {
            state.oidc.finish(&state.db, &provider, &state.config.public_base(), binding.as_deref(), st, code).await
        }
        _ => Err(OidcError::Rejected("the callback has no code or state".into())),
    };
    let clear = cookies::clear(&state.config, cookies::OIDC);
    let outcome = match result {
        Ok((identity, next)) => sign_in(&state, &ctx, &headers, &provider, &identity).await.map(|c| (c, next)),
        Err(e) => Err(e),
    };
    match outcome {
        Ok((cookie, next)) => {
            let response = Redirect::to(safe_next(&next)).into_response();
            let mut set = session_cookies(&state, &cookie).to_vec();
            set.push(clear);
            Ok(with_cookies(response, set))
        }
        Err(OidcError::Internal(e)) => Err(e),
        Err(e) => {
            let reason = e.to_string();
            state.metrics.login_failures_total.with_label_values(&["sso"]).inc();
            tracing::warn!(event_type = "sso_login_failed", provider = %id, reason = %reason, "SSO sign-in failed");
            // What the IdP's redirect says is anyone's to choose: it is detail, not the reason,
            // so repeats fold into one record whatever text they carry.
            let intent = match &e {
                OidcError::Refused(detail) => json!({"method": "oidc", "provider": id,
                    "reason": "the identity provider refused the sign-in", "detail": detail}),
                _ => json!({"method": "oidc", "provider": id, "reason": reason}),
            };
            let event = Event::new("auth.login", Outcome::Denied, Actor::Anonymous, &origin).intent(intent);
            audit::record_alone(&state.db, event).await?;
            let (status, title) = match &e {
                OidcError::Unavailable(_) => {
                    (StatusCode::BAD_GATEWAY, format!("{} is unavailable", provider.config.name))
                }
                OidcError::Denied(_) => (StatusCode::FORBIDDEN, "Access denied".to_owned()),
                _ => (StatusCode::UNAUTHORIZED, "Sign-in failed".to_owned()),
            };
            let message = match &e {
                OidcError::Unavailable(_) => format!(
                    "Arno could not complete the sign-in because {} did not answer properly. Try again in a few minutes.",
                    provider.config.name
                ),
                OidcError::Stale => e.to_string(),
                OidcError::Denied(m) => m.clone(),
                OidcError::Refused(m) => format!("{} did not sign you in: {m}", provider.config.name),
                _ => "The answer from the identity provider could not be trusted, so you were not signed in. \
                      Start again; if it keeps happening, tell your administrator."
                    .to_owned(),
            };
            let mut response = failure_page(status, &provider, &title, message)?;
            response.headers_mut().append(axum::http::header::SET_COOKIE, clear);
            Ok(response)
        }
    }
}

/// The roles an identity's groups map to under a provider's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedRoles {
    /// `None`: this provider does not manage org roles.
    pub org_role: Option<OrgRole>,
    pub projects: Vec<(String, crate::auth::access::ProjectRole)>,
}

pub fn map_roles(config: &super::OidcProviderConfig, groups: &[String]) -> Result<MappedRoles, OidcError> {
    let rank = |r: OrgRole| match r {
        OrgRole::Admin => 3,
        OrgRole::Auditor => 2,
        OrgRole::Member => 1,
    };
    let mapped_org = groups.iter().filter_map(|g| config.org_roles.get(g).copied()).max_by_key(|r| rank(*r));
    let mut projects: Vec<(String, crate::auth::access::ProjectRole)> = vec![];
    for grants in groups.iter().filter_map(|g| config.project_roles.get(g)) {
        for (slug, role) in grants {
            // Several groups may grant the same project: the strongest role wins (Maker first).
            let strength = |r: &crate::auth::access::ProjectRole| {
                crate::auth::access::ProjectRole::ALL.iter().position(|x| x == r).unwrap_or(9)
            };
            match projects.iter_mut().find(|(s, _)| s == slug) {
                Some(existing) if strength(role) < strength(&existing.1) => existing.1 = *role,
                Some(_) => {}
                None => projects.push((slug.clone(), *role)),
            }
        }
    }
    if config.strict && mapped_org.is_none() && projects.is_empty() {
        return Err(OidcError::Denied(
            "Your account at the identity provider is not in any group that has access to Arno. Ask your \
             administrator for access."
                .into(),
        ));
    }
    let org_role = if config.org_roles.is_empty() { None } else { Some(mapped_org.unwrap_or(OrgRole::Member)) };
    Ok(MappedRoles { org_role, projects })
}

async fn sign_in(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    provider: &Provider,
    identity: &Identity,
) -> Result<String, OidcError> {
    let roles = map_roles(&provider.config, &identity.groups)?;
    let origin = Origin::from(ctx);
    let mut tx = state.db.begin().await?;
    // Only the provider that provisions by SCIM (the `[scim] provider`, or the only one) may claim
    // a provisioned account by its e-mail address: another IdP (a partner's) could assert any address.
    let scim_provider = state.config.scim_provider.as_deref().or(match state.config.oidc.as_slice() {
        [only] => Some(only.id.as_str()),
        _ => None,
    });
    // …and only with an address the IdP vouches for: whoever could set an unverified address at
    // the IdP would take over the account IT provisioned for someone else.
    let link = if scim_provider != Some(provider.config.id.as_str()) {
        Link::Never
    } else if identity.email_verified || provider.config.assume_email_verified {
        Link::Verified
    } else {
        Link::Unverified
    };
    let user = find_or_create(&mut tx, provider, identity, link).await?;
    if user.disabled {
        return Err(OidcError::Denied("Your Arno account is deactivated. Ask your administrator.".into()));
    }
    let source = format!("oidc:{}", provider.config.id);
    let mut access_changed = false;
    if let Some(role) = roles.org_role
        && role != user.user.org_role
    {
        let mut intent = json!({"role": role.as_str(), "previous_role": user.user.org_role.as_str(), "source": source});
        // The last active Admin keeps the role and signs in: the IdP's groups must not leave
        // nobody who can administer Arno (users::is_last_admin, as for the console and SCIM).
        if role != OrgRole::Admin && users::is_last_admin(&mut tx, state.db.backend(), &user.user.id).await? {
            tracing::warn!(event_type = "role_mapping_refused", reason = "last_admin", provider = %provider.config.id,
                "the IdP's groups would demote the last admin; the role is kept");
            intent["reason"] = json!("last_admin");
            let event = Event::new("user.role", Outcome::Denied, Actor::System, &origin)
                .target("user", &user.user.id)
                .intent(intent);
            audit::record(&mut tx, event).await?;
        } else {
            access_changed = true;
            users::set_org_role(&mut tx, &user.user.id, role, Some(&source)).await?;
            let event = Event::new("user.role", Outcome::Allowed, Actor::System, &origin)
                .target("user", &user.user.id)
                .intent(intent);
            audit::record(&mut tx, event).await?;
        }
    }
    access_changed |=
        crate::projects::apply_idp_grants(&mut tx, &user.user.id, &source, &roles.projects, &origin).await? > 0;
    users::touch_login(&mut tx, &user.user.id).await?;
    let intent = json!({
        "method": "oidc",
        "provider": provider.config.id,
        "new_user": user.created,
        "groups": identity.groups.len(),
    });
    let cookie = open_session(
        &mut tx,
        state,
        ctx,
        headers,
        &user.user.id,
        intent,
        Some((&provider.config.id, &identity.id_token)),
    )
    .await?;
    tx.commit().await?;
    if access_changed {
        state.rooms.access_changed("*").await;
    }
    tracing::info!(event_type = "login_succeeded", method = "oidc", provider = %provider.config.id, "signed in");
    Ok(cookie)
}

struct Found {
    user: User,
    created: bool,
    disabled: bool,
}

/// Whether a first sign-in may be linked to a SCIM-provisioned account with its e-mail address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not through this provider (it does not provision).
    Never,
    /// The provisioning IdP, with an address it verified (or is trusted to have verified).
    Verified,
    /// The provisioning IdP, but the address is not verified: such an account is refused.
    Unverified,
}

/// The user behind an identity: by issuer + `sub`; else a SCIM-provisioned account with the same
/// e-mail that has no identity yet (IT created it for this person), when `link` allows; else a
/// new user.
async fn find_or_create(tx: &mut Tx, provider: &Provider, identity: &Identity, link: Link) -> Result<Found, OidcError> {
    let now = now_ms();
    let linked: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2")
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((user_id,)) = linked {
        sqlx::query(
            "UPDATE user_identities SET last_login_at = $3, provider_id = $4 WHERE issuer = $1 AND subject = $2",
        )
        .bind(&identity.issuer)
        .bind(&identity.subject)
        .bind(now)
        .bind(&identity.provider_id)
        .execute(&mut **tx)
        .await?;
        let (user, disabled) = users::find_any(tx, &user_id).await?.ok_or(OidcError::Internal(AppError::NotFound))?;
        return Ok(Found { user, created: false, disabled });
    }
    let mut created = false;
    let user = match identity.email.as_deref() {
        Some(email) => match users::find_scim_unlinked(tx, email).await?.filter(|_| link != Link::Never) {
            Some(user) if link == Link::Verified => user,
            // Neither linked nor created beside it: GitLab, too, links only verified addresses.
            Some(_) => {
                return Err(OidcError::Denied(format!(
                    "{} has not verified your e-mail address, so Arno cannot link this sign-in to the account \
                     your administrator set up for that address. Verify the address at {0}, or ask your \
                     administrator.",
                    provider.config.name
                )));
            }
            None => {
                created = true;
                new_user(tx, identity, email).await?
            }
        },
        None => {
            return Err(OidcError::Rejected(
                "the identity provider sent no e-mail address (add the `email` scope and claim)".into(),
            ));
        }
    };
    sqlx::query(
        "INSERT INTO user_identities (issuer, subject, provider_id, user_id, created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(&identity.provider_id)
    .bind(&user.id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let (user, disabled) = users::find_any(tx, &user.id).await?.ok_or(OidcError::Internal(AppError::NotFound))?;
    Ok(Found { user, created, disabled })
}

async fn new_user(tx: &mut Tx, identity: &Identity, email: &str) -> Result<User, OidcError> {
    let name = identity
        .name
        .clone()
        .or_else(|| identity.preferred_username.clone())
        .unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_owned());
    let handle_source = identity.preferred_username.as_deref().map(|u| u.split('@').next().unwrap_or(u).to_owned());
    match users::create(
        tx,
        users::NewUser { email, name: &name, org_role: OrgRole::Member, handle_source: handle_source.as_deref() },
    )
    .await
    {
        Ok(user) => Ok(user),
        Err(AppError::Conflict(_)) => Err(OidcError::Denied(
            "An Arno account with your e-mail address already exists and is not linked to this identity provider. \
             Ask your administrator to link it."
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::ProjectRole;

    fn provider(strict: bool) -> super::super::OidcProviderConfig {
        let table: toml::Table = format!(
            "[[oidc]]\nid = \"corp\"\nissuer = \"https://idp.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\nstrict = {strict}\n\
             [oidc.org_roles]\n\"admins\" = \"admin\"\n\"auditors\" = \"auditor\"\n\
             [oidc.project_roles]\n\"design\" = [\"checkout:maker\", \"web:viewer\"]\n\"web-editors\" = \"web:editor\"\n"
        )
        .parse()
        .unwrap();
        super::super::config::parse(&table["oidc"], "t").unwrap().remove(0)
    }

    #[test]
    fn groups_map_to_the_strongest_roles() {
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = map_roles(&provider(false), &groups(&["auditors", "admins", "design", "web-editors"])).unwrap();
        assert_eq!(m.org_role, Some(OrgRole::Admin));
        assert_eq!(m.projects, [("checkout".to_owned(), ProjectRole::Maker), ("web".to_owned(), ProjectRole::Editor)]);
        let m = map_roles(&provider(false), &groups(&["unrelated"])).unwrap();
        assert_eq!((m.org_role, m.projects.len()), (Some(OrgRole::Member), 0));
        assert!(matches!(map_roles(&provider(true), &groups(&["unrelated"])), Err(OidcError::Denied(_))));
        assert!(map_roles(&provider(true), &groups(&["design"])).is_ok());
    }
}

//! Plain types of the auth domain.

use serde::Serialize;
use utoipa::ToSchema;

/// Organisation-wide role. Project roles (Maker, Frontend, Editor, Viewer) live in `projects`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Admin,
    Auditor,
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Admin => "admin",
            OrgRole::Auditor => "auditor",
            OrgRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<OrgRole> {
        match s {
            "admin" => Some(OrgRole::Admin),
            "auditor" => Some(OrgRole::Auditor),
            "member" => Some(OrgRole::Member),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub handle: String,
    pub org_role: OrgRole,
    pub created_at: i64,
}

/// How a request proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    Token,
}

/// A request's authenticated principal. Handlers get one only by passing an auth extractor.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub user: User,
    pub method: AuthMethod,
    /// The session cookie value (browser requests), used to derive the page's CSRF token.
    pub session_cookie: Option<String>,
}

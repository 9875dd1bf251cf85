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
    /// What was presented, so a long-lived connection can check it is still good. Private to
    /// `auth`: nothing else can make an `Authenticated`.
    pub(in crate::auth) credential: Credential,
}

/// The credential behind an [`Authenticated`]: a session (by the hash of its cookie) or an API
/// token (by id). A workflow ticket carries the credential it was issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Session { id_hash: String },
    Token { id: String },
}

impl Credential {
    /// A compact form for storage (`s:` / `t:` and the hash or id).
    pub fn encode(&self) -> String {
        match self {
            Credential::Session { id_hash } => format!("s:{id_hash}"),
            Credential::Token { id } => format!("t:{id}"),
        }
    }

    pub fn decode(s: &str) -> Option<Credential> {
        match s.split_once(':')? {
            ("s", h) if !h.is_empty() => Some(Credential::Session { id_hash: h.to_owned() }),
            ("t", id) if !id.is_empty() => Some(Credential::Token { id: id.to_owned() }),
            _ => None,
        }
    }
}

impl Authenticated {
    pub fn credential(&self) -> &Credential {
        &self.credential
    }
}

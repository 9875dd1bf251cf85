//! Plain types of the projects domain.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::auth::access::{ProjectRole, Visibility};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectState {
    /// Connected, but `.arno/config.json` is not on the default branch yet.
    PendingSetup,
    Active,
    /// Read-only; restored by a Maker or an Admin.
    Archived,
}

impl ProjectState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectState::PendingSetup => "pending_setup",
            ProjectState::Active => "active",
            ProjectState::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<ProjectState> {
        [ProjectState::PendingSetup, ProjectState::Active, ProjectState::Archived].into_iter().find(|v| v.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            ProjectState::PendingSetup => "Pending setup",
            ProjectState::Active => "Active",
            ProjectState::Archived => "Archived",
        }
    }
}

/// A project as stored.
#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub owner_id: Option<String>,
    pub visibility: Visibility,
    pub state: ProjectState,
    pub size_bytes: i64,
    /// The project's own limit; `None` uses the instance default.
    pub quota_bytes: Option<i64>,
    /// Audit records of this project are kept this long (ms) when longer than the instance's.
    pub audit_retention_ms: Option<i64>,
    pub provider: String,
    /// A repository Arno manages: relative to the data directory (`repos/{id}.git`), so the data
    /// directory can move (a restore on another machine). One an admin connected: absolute.
    /// Read it through [`Project::repo_dir`].
    pub repo_path: String,
    pub repo_managed: bool,
    /// The hosted-provider connection (`git_connections.name`) of a GitHub project, whose
    /// `repo_path` is then `owner/name`.
    pub git_connection: Option<String>,
    pub default_branch: Option<String>,
    pub scanned_commit: Option<String>,
    pub config_json: Option<String>,
    pub config_present: bool,
    pub scan_error: Option<String>,
    pub scanned_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_activity_at: i64,
}

impl Project {
    /// What a permission decision needs to know about this project, for a caller with `role`.
    pub fn facts(&self, role: Option<ProjectRole>) -> crate::auth::access::ProjectFacts {
        crate::auth::access::ProjectFacts {
            project_id: self.id.clone(),
            visibility: self.visibility,
            archived: self.state == ProjectState::Archived,
            role,
        }
    }

    /// Where the repository is: a relative `repo_path` is under `data_dir` (give it absolute).
    pub fn repo_dir(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        let path = std::path::Path::new(&self.repo_path);
        if path.is_absolute() { path.to_owned() } else { data_dir.join(path) }
    }

    /// The repository configuration at the last scan (defaults when there was none).
    pub fn repo_config(&self) -> crate::specs::RepoConfig {
        self.config_json.as_deref().and_then(|c| crate::specs::RepoConfig::parse(c.as_bytes()).ok()).unwrap_or_default()
    }
}

/// How full a project is against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaState {
    Ok,
    /// At or above 80 %: still writable, shown as a warning.
    Warning,
    /// At or above 100 %: writes are refused with `413 too_large`.
    Full,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Quota {
    pub used_bytes: i64,
    pub limit_bytes: i64,
    pub state: QuotaState,
}

impl Quota {
    pub fn new(used_bytes: i64, limit_bytes: i64) -> Quota {
        let state = if used_bytes >= limit_bytes {
            QuotaState::Full
        } else if used_bytes.saturating_mul(5) >= limit_bytes.saturating_mul(4) {
            QuotaState::Warning
        } else {
            QuotaState::Ok
        };
        Quota { used_bytes, limit_bytes, state }
    }

    /// Used share in whole percent (for the page's meter).
    pub fn percent(&self) -> i64 {
        if self.limit_bytes <= 0 { 100 } else { (self.used_bytes.saturating_mul(100) / self.limit_bytes).min(100) }
    }
}

/// A member as listed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: String,
    pub name: String,
    pub handle: String,
    pub email: String,
    pub role: ProjectRole,
    /// Where the membership comes from: `manual` (given by hand), `oidc:<provider>` (the
    /// identity provider's groups), `github:<connection>` (repository permissions).
    pub source: String,
}

impl Member {
    /// What the members page says about `source`.
    pub fn source_label(&self) -> &'static str {
        if self.source.starts_with("github:") {
            "from GitHub"
        } else if self.source.starts_with("oidc:") {
            "from sign-in groups"
        } else {
            "by hand"
        }
    }
}

/// A cached spec as stored.
#[derive(Clone, Debug)]
pub struct ComponentRow {
    pub file_path: String,
    pub declared_id: Option<String>,
    pub component_id: Option<String>,
    pub name: String,
    pub blob_id: String,
    pub content_sha: String,
    pub raw_text: String,
    pub model_json: String,
    pub error_line: Option<i64>,
    pub error_message: Option<String>,
    pub size_bytes: i64,
    pub scanned_at: i64,
}

/// Bytes in human form for pages: `1.5 MiB`.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_thresholds() {
        assert_eq!(Quota::new(79, 100).state, QuotaState::Ok);
        assert_eq!(Quota::new(80, 100).state, QuotaState::Warning);
        assert_eq!(Quota::new(100, 100).state, QuotaState::Full);
        assert_eq!(Quota::new(150, 100).percent(), 100);
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}

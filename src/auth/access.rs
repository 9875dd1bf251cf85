//! Project permissions, decided in one place.
//!
//! A handler that wants to act on a project asks [`decide`] for a capability (`Grant<Scan>`,
//! `Grant<ManageMembers>`, …) with the facts the projects domain loaded (visibility, state, the
//! caller's role). Domain functions that change a project take the matching `&Grant<C>` and act
//! on the grant's project id, so a write without the check does not compile, and a check for one
//! project cannot be used on another.
//!
//! | capability       | Admin | Auditor | Maker | Frontend | Editor | Viewer | other signed-in user |
//! |------------------|-------|---------|-------|----------|--------|--------|----------------------|
//! | View             | ✓     | ✓       | ✓     | ✓        | ✓      | ✓      | public/unlisted only |
//! | Scan             | ✓     |         | ✓     | ✓        |        |        |                      |
//! | ManageMembers    | ✓     |         | ✓     |          |        |        |                      |
//! | ManageSettings   | ✓     |         | ✓     |          |        |        |                      |
//! | Setup            | ✓     |         | ✓     |          |        |        |                      |
//! | EditSpecs        | ✓     |         | ✓     |          |        |        |                      |
//! | Comment          | ✓     |         | ✓     | ✓        | ✓      |        |                      |
//! | MergeChanges     | ✓     |         | ✓     |          |        |        |                      |
//! | EditWorkflow     | ✓     |         | ✓     |          |        |        |                      |
//! | EditWorkflowText | ✓     |         | ✓     |          | ✓      |        |                      |
//! | SetQuota         | ✓     |         |       |          |        |        |                      |
//! | SetAuditRetention| ✓     |         |       |          |        |        |                      |
//!
//! An org Auditor holds no capability that writes, whatever project role they were given.
//!
//! Callers who may not even see a project get "not found", not "forbidden", so private project
//! names and ids do not leak. An archived project is read-only: only ManageSettings (to restore
//! it) is granted.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{OrgRole, User};

/// A member's role in one project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Edits everything: specs, workflow, members, settings.
    Maker,
    /// Reads everything and comments; code lives in their IDE.
    Frontend,
    /// Changes only prop values marked `textEditable`.
    Editor,
    /// Read-only.
    Viewer,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 4] =
        [ProjectRole::Maker, ProjectRole::Frontend, ProjectRole::Editor, ProjectRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Maker => "maker",
            ProjectRole::Frontend => "frontend",
            ProjectRole::Editor => "editor",
            ProjectRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<ProjectRole> {
        ProjectRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            ProjectRole::Maker => "Maker",
            ProjectRole::Frontend => "Frontend",
            ProjectRole::Editor => "Editor",
            ProjectRole::Viewer => "Viewer",
        }
    }
}

/// Who can find a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Members (and Admins, Auditors) only.
    Private,
    /// Every signed-in user who has the link; not listed for non-members.
    Unlisted,
    /// Every signed-in user; listed for everyone.
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Unlisted => "unlisted",
            Visibility::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        [Visibility::Private, Visibility::Unlisted, Visibility::Public].into_iter().find(|v| v.as_str() == s)
    }
}

/// What the projects domain knows when a decision is asked for.
#[derive(Clone, Debug)]
pub struct ProjectFacts {
    pub project_id: String,
    pub visibility: Visibility,
    pub archived: bool,
    /// The caller's membership role, if any.
    pub role: Option<ProjectRole>,
}

/// One capability: its name (for audit records and messages) and who holds it.
pub trait Capability {
    const NAME: &'static str;
    /// Whether a caller who can see the project holds this capability.
    fn allowed(org: OrgRole, role: Option<ProjectRole>) -> bool;
    /// Granted on archived projects too.
    const ON_ARCHIVED: bool = false;
    /// Changes something (an org Auditor never holds it, whatever their project role).
    const WRITES: bool = true;
}

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $label:literal, |$org:ident, $role:ident| $rule:expr $(, archived = $arch:literal)? $(, writes = $writes:literal)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl Capability for $name {
            const NAME: &'static str = $label;
            fn allowed($org: OrgRole, $role: Option<ProjectRole>) -> bool {
                $rule
            }
            $(const ON_ARCHIVED: bool = $arch;)?
            $(const WRITES: bool = $writes;)?
        }
    };
}

capability!(/// Read the project, its members and its components.
    View, "view", |_org, _role| true, archived = true, writes = false);
capability!(/// Re-read the repository into Arno's cache.
    Scan, "scan", |org, role| org == OrgRole::Admin || matches!(role, Some(ProjectRole::Maker | ProjectRole::Frontend)));
capability!(/// Add, change and remove members.
    ManageMembers, "manage_members", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker));
capability!(/// Rename, change visibility, archive and restore.
    ManageSettings, "manage_settings", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker), archived = true);
capability!(/// Write `.arno/config.json` to the repository.
    Setup, "setup", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker));
capability!(/// Edit specs: save, keep backups, restore versions.
    EditSpecs, "edit_specs", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker));
capability!(/// Comment on specs: start threads, reply, resolve and reopen.
    Comment, "comment", |org, role| org == OrgRole::Admin
        || matches!(role, Some(ProjectRole::Maker | ProjectRole::Frontend | ProjectRole::Editor)));
capability!(/// Merge or close change requests (session branches into the default branch).
    MergeChanges, "merge_changes", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker));
capability!(/// Change anything in the workflow document (screens, instances, edges); take and
    /// restore its snapshots.
    EditWorkflow, "edit_workflow", |org, role| org == OrgRole::Admin || role == Some(ProjectRole::Maker));
capability!(/// Change the text of `textEditable` props in the workflow document (Editors).
    EditWorkflowText, "edit_workflow_text", |org, role| org == OrgRole::Admin
        || matches!(role, Some(ProjectRole::Maker | ProjectRole::Editor)));
capability!(/// Change the project's size limit.
    SetQuota, "set_quota", |org, _role| org == OrgRole::Admin, archived = true);
capability!(/// Keep the project's audit records longer than the instance does.
    SetAuditRetention, "set_audit_retention", |org, _role| org == OrgRole::Admin, archived = true);

/// Proof that the caller holds capability `C` on one project. Only [`decide`] makes one.
#[derive(Debug)]
pub struct Grant<C> {
    project_id: String,
    role: Option<ProjectRole>,
    user_id: String,
    _capability: PhantomData<C>,
}

impl<C: Capability> Grant<C> {
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The caller's role in the project (None for Admins, Auditors and visitors of public projects).
    pub fn role(&self) -> Option<ProjectRole> {
        self.role
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// Why a capability was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not know the project exists: answer 404.
    Hidden,
    /// The caller sees the project but may not do this: answer 403 with the reason.
    Forbidden(String),
}

/// Decide whether `user` holds capability `C` on the project described by `facts`.
pub fn decide<C: Capability>(user: &User, facts: &ProjectFacts) -> Result<Grant<C>, Refusal> {
    let sees = matches!(user.org_role, OrgRole::Admin | OrgRole::Auditor)
        || facts.role.is_some()
        || facts.visibility != Visibility::Private;
    if !sees {
        return Err(Refusal::Hidden);
    }
    // Auditors read and export; a project role given to one does not make them a writer.
    if user.org_role == OrgRole::Auditor && C::WRITES {
        return Err(Refusal::Forbidden(format!(
            "an Auditor reads and exports but may not {} (whatever their project role)",
            C::NAME.replace('_', " ")
        )));
    }
    if !C::allowed(user.org_role, facts.role) {
        let who = facts.role.map_or("a visitor".to_owned(), |r| format!("the {} role", r.label()));
        return Err(Refusal::Forbidden(format!("{who} may not {} in this project", C::NAME.replace('_', " "))));
    }
    if facts.archived && !C::ON_ARCHIVED {
        return Err(Refusal::Forbidden("the project is archived; restore it first".into()));
    }
    Ok(Grant {
        project_id: facts.project_id.clone(),
        role: facts.role,
        user_id: user.id.clone(),
        _capability: PhantomData,
    })
}

/// Whether `user` holds `C` (for what a page offers; the action itself asks [`decide`]).
pub fn holds<C: Capability>(user: &User, facts: &ProjectFacts) -> bool {
    decide::<C>(user, facts).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Instance-wide capabilities: decided by the org role alone.
//
// | org capability      | Admin | Auditor | Member |
// |---------------------|-------|---------|--------|
// | Administer          | ✓     |         |        |
// | ReadAudit           | ✓     | ✓       |        |
// | SeeAllProjects      | ✓     | ✓       |        |
// | CreateProject       | ✓     |         | ✓      |
//
// Every check of the caller's org role goes through [`decide_org`] or [`holds_org`]; nothing
// else compares `org_role` to decide what a caller may do.

/// One instance-wide capability.
pub trait OrgCapability {
    const NAME: &'static str;
    fn allowed(org: OrgRole) -> bool;
}

macro_rules! org_capability {
    ($(#[$doc:meta])* $name:ident, $label:literal, |$org:ident| $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl OrgCapability for $name {
            const NAME: &'static str = $label;
            fn allowed($org: OrgRole) -> bool {
                $rule
            }
        }
    };
}

org_capability!(/// The admin console: identity providers, SCIM, users, their roles, sessions and tokens;
    /// erasure; connecting repositories already on the appliance; seeing server paths.
    Administer, "administer", |org| org == OrgRole::Admin);
org_capability!(/// Read and export the audit log and verify its chain.
    ReadAudit, "read_audit", |org| matches!(org, OrgRole::Admin | OrgRole::Auditor));
org_capability!(/// See every project, private ones included, without being a member.
    SeeAllProjects, "see_all_projects", |org| matches!(org, OrgRole::Admin | OrgRole::Auditor));
org_capability!(/// Create projects (everyone but Auditors, a read-only role).
    CreateProject, "create_project", |org| org != OrgRole::Auditor);

/// Proof that the caller holds the instance-wide capability `C`. Only [`decide_org`] makes one;
/// admin-only domain functions take `&OrgGrant<Administer>`.
#[derive(Debug)]
pub struct OrgGrant<C> {
    user_id: String,
    _capability: PhantomData<C>,
}

impl<C: OrgCapability> OrgGrant<C> {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// Decide whether `user` holds the instance-wide capability `C`; a refusal says why.
pub fn decide_org<C: OrgCapability>(user: &User) -> Result<OrgGrant<C>, String> {
    if C::allowed(user.org_role) {
        Ok(OrgGrant { user_id: user.id.clone(), _capability: PhantomData })
    } else {
        Err(format!("the {} role may not {}", user.org_role.as_str(), C::NAME.replace('_', " ")))
    }
}

/// Whether `user` holds `C` (for what a page offers; the action itself asks [`decide_org`]).
pub fn holds_org<C: OrgCapability>(user: &User) -> bool {
    C::allowed(user.org_role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(org: OrgRole) -> User {
        User { id: "u".into(), email: "u@x".into(), name: "U".into(), handle: "u".into(), org_role: org, created_at: 0 }
    }

    fn facts(visibility: Visibility, role: Option<ProjectRole>, archived: bool) -> ProjectFacts {
        ProjectFacts { project_id: "p".into(), visibility, archived, role }
    }

    #[test]
    fn the_matrix() {
        use ProjectRole::*;
        let member = user(OrgRole::Member);
        // (role, view, scan, members, settings, setup, quota)
        let rows = [
            (Some(Maker), [true, true, true, true, true, false]),
            (Some(Frontend), [true, true, false, false, false, false]),
            (Some(Editor), [true, false, false, false, false, false]),
            (Some(Viewer), [true, false, false, false, false, false]),
            (None, [true, false, false, false, false, false]),
        ];
        for (role, expected) in rows {
            let f = facts(Visibility::Public, role, false);
            let got = [
                decide::<View>(&member, &f).is_ok(),
                decide::<Scan>(&member, &f).is_ok(),
                decide::<ManageMembers>(&member, &f).is_ok(),
                decide::<ManageSettings>(&member, &f).is_ok(),
                decide::<Setup>(&member, &f).is_ok(),
                decide::<SetQuota>(&member, &f).is_ok(),
            ];
            assert_eq!(got, expected, "{role:?}");
        }
        let private = facts(Visibility::Private, None, false);
        assert_eq!(decide::<View>(&member, &private).unwrap_err(), Refusal::Hidden);
        assert!(decide::<View>(&user(OrgRole::Auditor), &private).is_ok());
        assert!(decide::<Scan>(&user(OrgRole::Auditor), &private).is_err());
        assert!(decide::<SetQuota>(&user(OrgRole::Admin), &private).is_ok());
        // An Auditor given the Maker role still only reads.
        let auditor = user(OrgRole::Auditor);
        let as_maker = facts(Visibility::Private, Some(Maker), false);
        assert!(decide::<View>(&auditor, &as_maker).is_ok());
        assert!(decide::<EditSpecs>(&auditor, &as_maker).is_err());
        assert!(decide::<EditWorkflow>(&auditor, &as_maker).is_err());
        assert!(decide::<MergeChanges>(&auditor, &as_maker).is_err());
        assert!(decide::<Comment>(&auditor, &as_maker).is_err());
        let archived = facts(Visibility::Private, Some(Maker), true);
        assert!(matches!(decide::<Setup>(&member, &archived), Err(Refusal::Forbidden(m)) if m.contains("archived")));
        assert!(decide::<ManageSettings>(&member, &archived).is_ok());
    }

    #[test]
    fn the_org_matrix() {
        for (org, expected) in [
            (OrgRole::Admin, [true, true, true, true]),
            (OrgRole::Auditor, [false, true, true, false]),
            (OrgRole::Member, [false, false, false, true]),
        ] {
            let u = user(org);
            let got = [
                decide_org::<Administer>(&u).is_ok(),
                decide_org::<ReadAudit>(&u).is_ok(),
                decide_org::<SeeAllProjects>(&u).is_ok(),
                decide_org::<CreateProject>(&u).is_ok(),
            ];
            assert_eq!(got, expected, "{org:?}");
            assert_eq!(holds_org::<Administer>(&u), expected[0]);
        }
        assert!(decide_org::<Administer>(&user(OrgRole::Member)).unwrap_err().contains("administer"));
    }
}

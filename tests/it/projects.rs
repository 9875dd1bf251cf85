//! Projects end to end: creation (new and existing local repositories), scanning specs from git,
//! the components API and pages, members and the role matrix, quotas, setup and bad input.

use std::path::{Path, PathBuf};

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::support::{Browser, TestApp, api};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\nstatus: stable\n---\n# Button\n\n\
Use it for the **main** action. <script>alert(1)</script>\n\n<!-- arno:props v1 -->\n\
| id | name | type | default | textEditable |\n|---|---|---|---|---|\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"Buy\" | true |\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | size | 'sm' \\| 'md' | 'md' | false |\n<!-- /arno:props -->\n\n\
<!-- arno:events v1 -->\n| id | name | payload |\n|---|---|---|\n| 7a000000-0000-4000-8000-000000000001 | onClick | MouseEvent |\n<!-- /arno:events -->\n";

const CARD: &str = "---\nid: 1c000000-0000-4000-8000-000000000001\n---\n# Card\n";

/// A repository under `root` with a config, two good specs and a broken one.
fn design_repo(root: &Path, name: &str, with_config: bool) -> PathBuf {
    let path = root.join(name);
    std::fs::create_dir_all(path.join("Design_system/forms")).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    if with_config {
        std::fs::create_dir_all(path.join(".arno")).unwrap();
        std::fs::write(path.join(".arno/config.json"), r#"{"version": 1}"#).unwrap();
    }
    std::fs::write(path.join("Design_system/Button.md"), BUTTON).unwrap();
    std::fs::write(path.join("Design_system/Card.md"), CARD).unwrap();
    std::fs::write(
        path.join("Design_system/forms/Broken.md"),
        "---\nname: Broken\n---\n<!-- arno:props v1 -->\n| id |\n",
    )
    .unwrap();
    std::fs::create_dir_all(path.join("src/components")).unwrap();
    std::fs::write(path.join("src/components/Button.tsx"), "export const Button = () => null;\n").unwrap();
    std::fs::write(path.join("README.md"), "# Design system\n").unwrap();
    git(&path, &["add", "."]);
    git(&path, &["commit", "-q", "-m", "Initial design system"]);
    path
}

struct Setup {
    app: TestApp,
    roots: tempfile::TempDir,
    admin_token: String,
}

async fn start() -> Setup {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let app = TestApp::start_with(&[("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap())]).await;
    let (_, admin_token) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    Setup { app, roots, admin_token }
}

async fn create(s: &Setup, token: &str, body: Value) -> crate::support::Page {
    api(Method::POST, &s.app.url("/api/v1/projects"), Some(token), Some(body)).await
}

async fn audit_actions(app: &TestApp, action: &str, outcome: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = $1 AND outcome = $2")
        .bind(action)
        .bind(outcome)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn existing_repository_is_scanned_into_components() {
    let s = start().await;
    let repo = design_repo(&s.roots.path().canonicalize().unwrap(), "web", true);
    let r = create(
        &s,
        &s.admin_token,
        json!({"name": "Web design system", "repository": {"provider": "local", "path": repo}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let project = r.json();
    assert_eq!(project["slug"], "web-design-system");
    assert_eq!(project["state"], "active");
    assert_eq!(project["my_role"], "maker");
    assert_eq!(project["repository"]["default_branch"], "main");
    assert_eq!(project["config"]["componentsMd"], "Design_system/");
    let id = project["id"].as_str().unwrap().to_owned();
    let size = project["quota"]["used_bytes"].as_i64().unwrap();
    assert!(size > BUTTON.len() as i64, "size counts every file: {size}");

    let components =
        api(Method::GET, &s.app.url(&format!("/api/v1/projects/{id}/components")), Some(&s.admin_token), None).await;
    assert_eq!(components.status, StatusCode::OK);
    let list = components.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Button", "Card", "Broken"], "path order");
    let button = &list[0];
    assert_eq!(button["id"], "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01");
    assert_eq!(button["file_path"], "Design_system/Button.md");
    assert_eq!(button["content_sha"].as_str().unwrap().len(), 64);
    assert_eq!(
        button["props"][0],
        json!({"id": "6f1c7d2e-1111-4a2b-8c3d-000000000001", "name": "label", "type": "string", "default": "\"Buy\"", "text_editable": true, "description": null})
    );
    assert_eq!(button["props"][1]["type"], "'sm' | 'md'");
    assert_eq!(button["events"][0]["name"], "onClick");
    assert_eq!(button["error"], Value::Null);
    let broken = &list[2];
    assert_eq!(broken["id"], Value::Null);
    assert_eq!(broken["error"]["line"], 1);
    assert!(broken["error"]["message"].as_str().unwrap().contains("no `id`"));

    // The slug works wherever the id does.
    let detail = api(
        Method::GET,
        &s.app.url("/api/v1/projects/web-design-system/components/0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01"),
        Some(&s.admin_token),
        None,
    )
    .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let d = detail.json();
    assert_eq!(d["status"], "stable");
    assert_eq!(d["paired_code"], json!({"path": "src/components/Button.tsx", "exists": true}));
    assert_eq!(d["last_commit"]["summary"], "Initial design system");
    assert_eq!(d["last_commit"]["author_name"], "Dev");
    let html = d["description_html"].as_str().unwrap();
    assert!(html.contains("<strong>main</strong>") && !html.contains("<script"), "{html}");
    assert!(!html.contains("arno:props"), "blocks are not prose");
    let missing = api(
        Method::GET,
        &s.app.url(&format!("/api/v1/projects/{id}/components/{}", uuid::Uuid::new_v4())),
        Some(&s.admin_token),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A developer pushes: change one spec, delete one, add one with a duplicate id.
    std::fs::write(repo.join("Design_system/Card.md"), CARD.replace("# Card", "# Card v2")).unwrap();
    std::fs::remove_file(repo.join("Design_system/forms/Broken.md")).unwrap();
    std::fs::write(repo.join("Design_system/Copy.md"), BUTTON.replace("name: Button", "name: Copy")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "Rework"]);
    let scan = api(Method::POST, &s.app.url(&format!("/api/v1/projects/{id}/scan")), Some(&s.admin_token), None).await;
    assert_eq!(scan.status, StatusCode::OK, "{}", scan.text);
    let report = scan.json();
    assert_eq!(
        (report["parsed"].as_i64(), report["removed"].as_i64(), report["components"].as_i64()),
        (Some(2), Some(1), Some(3))
    );
    assert_eq!(report["commit"], git(&repo, &["rev-parse", "HEAD"]));
    // Nothing moved: nothing parsed.
    let again =
        api(Method::POST, &s.app.url(&format!("/api/v1/projects/{id}/scan")), Some(&s.admin_token), None).await.json();
    assert_eq!((again["parsed"].as_i64(), again["removed"].as_i64()), (Some(0), Some(0)));

    let list = api(Method::GET, &s.app.url(&format!("/api/v1/projects/{id}/components")), Some(&s.admin_token), None)
        .await
        .json();
    let by_path = |p: &str| list.as_array().unwrap().iter().find(|c| c["file_path"] == p).unwrap().clone();
    assert_eq!(
        by_path("Design_system/Button.md")["id"],
        "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01",
        "the first file keeps the id"
    );
    let copy = by_path("Design_system/Copy.md");
    assert_eq!(copy["id"], Value::Null);
    assert!(copy["error"]["message"].as_str().unwrap().contains("Design_system/Button.md declares it first"), "{copy}");

    // Pages: list, project, component — rendered and linked.
    let mut b = Browser::new(&s.app.base);
    s.app.create_user("page@example.com", "a long enough password", OrgRole::Admin).await;
    b.login("page@example.com", "a long enough password").await;
    let page = b.get("/projects").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.select_attr("table.data tbody a", "href").as_deref(), Some("/projects/web-design-system"));
    let page = b.get("/projects/web-design-system").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.select_text("#components caption").as_deref(), Some("3 component spec(s)"));
    assert!(page.text.contains("declares it first"));
    let page = b.get("/projects/web-design-system/components/0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.select_text("#props tbody th").as_deref(), Some("label"));
    assert_eq!(page.select_text("#description strong").as_deref(), Some("main"));
    assert_eq!(page.select_text("#last-commit").as_deref(), Some("Initial design system"));
    assert!(!page.text.contains("<script>alert"));
}

#[tokio::test]
async fn a_new_local_repository_is_created_and_active() {
    let s = start().await;
    let (member, token) = s.app.user_with_token("maker@example.com", OrgRole::Member).await;
    let r = create(&s, &token, json!({"name": "Mobile", "visibility": "public"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = r.json();
    assert_eq!(
        (p["state"].as_str(), p["config_present"].as_bool(), p["visibility"].as_str()),
        (Some("active"), Some(true), Some("public"))
    );
    assert!(p["repository"].get("path").is_none(), "paths are for admins");
    let repo = s.app.state.config.data_dir.join("repos").join(format!("{}.git", p["id"].as_str().unwrap()));
    assert_eq!(git(&repo, &["log", "-1", "--format=%an|%s"]), format!("{}|Set up Arno", member.name));
    assert!(git(&repo, &["show", "main:.arno/config.json"]).contains("\"componentsMd\": \"Design_system/\""));
    let setup = api(Method::POST, &s.app.url("/api/v1/projects/mobile/setup"), Some(&token), None).await;
    assert_eq!(setup.status, StatusCode::CONFLICT, "{}", setup.text);

    // Bad input: clear errors, nothing created.
    for (body, status, needle) in [
        (json!({"name": "Mobile"}), StatusCode::CONFLICT, "taken"),
        (json!({"name": "X", "slug": "Bad Slug"}), StatusCode::BAD_REQUEST, "slug"),
        (json!({"name": ""}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "Y", "colour": "red"}), StatusCode::BAD_REQUEST, "colour"),
        (json!({"name": "Y", "visibility": "secret"}), StatusCode::BAD_REQUEST, "visibility"),
        (json!({"name": "Y", "repository": {"provider": "github"}}), StatusCode::BAD_REQUEST, "repository.connection"),
        (json!({"name": "Y", "repository": {"provider": "svn"}}), StatusCode::BAD_REQUEST, "repository.provider"),
        (
            json!({"name": "Y", "repository": {"provider": "local", "path": "/etc"}}),
            StatusCode::FORBIDDEN,
            "administrators",
        ),
    ] {
        let r = create(&s, &token, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.text.contains(needle), "{body}: {}", r.text);
    }
    for (path, needle) in
        [("/etc", "ARNO_GIT_LOCAL_ROOTS"), ("relative/path", "absolute"), ("/does/not/exist", "does not exist")]
    {
        let r =
            create(&s, &s.admin_token, json!({"name": "Z", "repository": {"provider": "local", "path": path}})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert_eq!(r.json()["details"]["field"], "repository.path");
        assert!(r.text.contains(needle), "{path}: {}", r.text);
    }
    let not_a_repo = s.roots.path().join("plain");
    std::fs::create_dir_all(&not_a_repo).unwrap();
    let r =
        create(&s, &s.admin_token, json!({"name": "Z", "repository": {"provider": "local", "path": not_a_repo}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let (_, auditor) = s.app.user_with_token("auditor@example.com", OrgRole::Auditor).await;
    assert_eq!(create(&s, &auditor, json!({"name": "Nope"})).await.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_actions(&s.app, "project.create", "denied").await, 2);

    let list = api(Method::GET, &s.app.url("/api/v1/projects"), Some(&token), None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let entries = std::fs::read_dir(s.app.state.config.data_dir.join("repos")).unwrap().count();
    assert_eq!(entries, 1, "failed creations leave no repository behind");
}

#[tokio::test]
async fn pending_setup_quota_and_invalid_config() {
    let s = start().await;
    let root = s.roots.path().canonicalize().unwrap();
    // A bare repository without .arno/config.json and with a 1.5 MiB asset.
    let work = design_repo(&root, "work", false);
    std::fs::write(work.join("logo.bin"), vec![7_u8; 1_572_864]).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "Add logo"]);
    let bare = root.join("bare.git");
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);

    let r =
        create(&s, &s.admin_token, json!({"name": "Brand", "repository": {"provider": "local", "path": bare}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = r.json();
    assert_eq!(p["state"], "pending_setup");
    assert_eq!(p["config_present"], false);
    let components =
        api(Method::GET, &s.app.url("/api/v1/projects/brand/components"), Some(&s.admin_token), None).await.json();
    assert_eq!(components.as_array().unwrap().len(), 3, "read with the default paths meanwhile");

    // 1 MiB limit: 100 % used, writes refused with 413, the page says so.
    let r = api(
        Method::PATCH,
        &s.app.url("/api/v1/projects/brand"),
        Some(&s.admin_token),
        Some(json!({"quota_bytes": 1_048_576})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["quota"]["state"], "full");
    let r = api(Method::POST, &s.app.url("/api/v1/projects/brand/setup"), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.json()["code"], "too_large");
    let mut b = Browser::new(&s.app.base);
    s.app.create_user("page@example.com", "a long enough password", OrgRole::Admin).await;
    b.login("page@example.com", "a long enough password").await;
    let page = b.get("/projects/brand").await;
    assert!(page.select_text("#quota-full").is_some(), "{}", page.text);
    assert!(page.select_text("#pending").is_some());

    // 80 %: a warning; then the setup commit lands and the project becomes active.
    let r = api(
        Method::PATCH,
        &s.app.url("/api/v1/projects/brand"),
        Some(&s.admin_token),
        Some(json!({"quota_bytes": 1_900_000})),
    )
    .await;
    assert_eq!(r.json()["quota"]["state"], "warning");
    let r = api(Method::POST, &s.app.url("/api/v1/projects/brand/setup"), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "active");
    assert!(git(&bare, &["show", "main:.arno/config.json"]).contains("\"version\": 1"));
    assert_eq!(git(&bare, &["log", "-1", "--format=%cn"]), "Arno");
    let r = api(
        Method::PATCH,
        &s.app.url("/api/v1/projects/brand"),
        Some(&s.admin_token),
        Some(json!({"quota_bytes": null})),
    )
    .await;
    assert_eq!(r.json()["quota"]["state"], "ok");
    let r =
        api(Method::PATCH, &s.app.url("/api/v1/projects/brand"), Some(&s.admin_token), Some(json!({"quota_bytes": 5})))
            .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A broken config: the scan stops with an error naming the field; the cache stays.
    std::fs::create_dir_all(work.join(".arno")).unwrap();
    std::fs::write(work.join(".arno/config.json"), r#"{"version": 1, "componentsMd": 42}"#).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "Broken config"]);
    let _ = git(&work, &["push", "-q", "--force", bare.to_str().unwrap(), "main"]);
    let r = api(Method::POST, &s.app.url("/api/v1/projects/brand/scan"), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("componentsMd"), "{}", r.text);
    let p = api(Method::GET, &s.app.url("/api/v1/projects/brand"), Some(&s.admin_token), None).await.json();
    assert!(p["scan_error"].as_str().unwrap().contains("componentsMd"));
    let components =
        api(Method::GET, &s.app.url("/api/v1/projects/brand/components"), Some(&s.admin_token), None).await.json();
    assert_eq!(components.as_array().unwrap().len(), 3);
    let page = b.get("/projects/brand").await;
    assert!(page.select_text("#scan-error").unwrap().contains("componentsMd"));

    // Archive and restore.
    let r =
        api(Method::PATCH, &s.app.url("/api/v1/projects/brand"), Some(&s.admin_token), Some(json!({"archived": true})))
            .await;
    assert_eq!(r.json()["state"], "archived");
    let r = api(Method::POST, &s.app.url("/api/v1/projects/brand/scan"), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "archived projects are read-only");
    let r = api(
        Method::PATCH,
        &s.app.url("/api/v1/projects/brand"),
        Some(&s.admin_token),
        Some(json!({"archived": false})),
    )
    .await;
    assert_eq!(r.json()["state"], "active");
}

#[tokio::test]
async fn idle_projects_are_archived_by_housekeeping() {
    let s = start().await;
    let r = create(&s, &s.admin_token, json!({"name": "Old"})).await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(arno::projects::archive_idle(&s.app.state.db, arno::db::now_ms()).await.unwrap(), 0);
    let later = arno::db::now_ms() + arno::projects::ARCHIVE_AFTER_MS + 1;
    assert_eq!(arno::projects::archive_idle(&s.app.state.db, later).await.unwrap(), 1);
    let p = api(Method::GET, &s.app.url(&format!("/api/v1/projects/{id}")), Some(&s.admin_token), None).await.json();
    assert_eq!(p["state"], "archived");
    assert_eq!(audit_actions(&s.app, "project.archive", "allowed").await, 1);
}

#[tokio::test]
async fn members_last_maker_and_gdpr() {
    let s = start().await;
    let (maker, maker_token) = s.app.user_with_token("maker@example.com", OrgRole::Member).await;
    let (other, other_token) = s.app.user_with_token("other@example.com", OrgRole::Member).await;
    let id = create(&s, &maker_token, json!({"name": "Team"})).await.json()["id"].as_str().unwrap().to_owned();
    let member_url = |u: &str| s.app.url(&format!("/api/v1/projects/{id}/members/{u}"));

    let r = api(Method::PUT, &member_url(&other.id), Some(&maker_token), Some(json!({"role": "editor"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["role"], "editor");
    let r = api(Method::PUT, &member_url(&other.id), Some(&maker_token), Some(json!({"role": "frontend"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api(Method::PUT, &member_url(&other.id), Some(&maker_token), Some(json!({"role": "owner"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api(Method::PUT, &member_url("no-such-user"), Some(&maker_token), Some(json!({"role": "viewer"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The last Maker cannot leave or be demoted.
    let r = api(Method::PUT, &member_url(&maker.id), Some(&maker_token), Some(json!({"role": "viewer"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = api(Method::DELETE, &member_url(&maker.id), Some(&maker_token), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let members =
        api(Method::GET, &s.app.url(&format!("/api/v1/projects/{id}/members")), Some(&other_token), None).await.json();
    let roles: Vec<(&str, &str)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["handle"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&("maker", "maker")) && roles.contains(&("other", "frontend")), "{roles:?}");

    // The member's data export lists the membership; erasure ends it.
    let export = api(Method::GET, &s.app.url("/api/v1/me/export"), Some(&other_token), None).await.json();
    assert_eq!(export["memberships"], json!([{"project_id": id, "slug": "team", "name": "Team", "role": "frontend"}]));
    let r = api(Method::DELETE, &s.app.url(&format!("/api/v1/users/{}", other.id)), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let members =
        api(Method::GET, &s.app.url(&format!("/api/v1/projects/{id}/members")), Some(&maker_token), None).await.json();
    assert_eq!(members.as_array().unwrap().len(), 1);

    // Pages: add by e-mail, unknown e-mail, remove.
    let mut b = Browser::new(&s.app.base);
    s.app.create_user("third@example.com", "a long enough password", OrgRole::Member).await;
    b.login("maker@example.com", "a long enough password").await;
    let csrf = b.session_csrf().await;
    let page = b
        .post_form(
            "/projects/team/members",
            &[("csrf_token", &csrf), ("email", "third@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.select_text("#members-message").unwrap().contains("added as Viewer"));
    let page = b
        .post_form(
            "/projects/team/members",
            &[("csrf_token", &csrf), ("email", "nobody@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.select_text("#members-error").unwrap().contains("No user has that e-mail"));
    assert_eq!(page.html().select(&scraper::Selector::parse("#members tbody tr").unwrap()).count(), 2);
}

/// For each role × each endpoint: allowed, or refused (403; 404 for callers who may not see the
/// project), and every refusal is audited.
#[tokio::test]
async fn role_matrix() {
    let s = start().await;
    let root = s.roots.path().canonicalize().unwrap();
    let work = design_repo(&root, "work", false);
    let bare = root.join("matrix.git");
    git(&root, &["clone", "-q", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    let r =
        create(&s, &s.admin_token, json!({"name": "Matrix", "repository": {"provider": "local", "path": bare}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let target = s.app.create_user("target@example.com", "a long enough password", OrgRole::Member).await;

    let mut actors: Vec<(&str, String)> = vec![("admin", s.admin_token.clone())];
    for (label, role) in [("maker", "maker"), ("frontend", "frontend"), ("editor", "editor"), ("viewer", "viewer")] {
        let (user, token) = s.app.user_with_token(&format!("{label}@example.com"), OrgRole::Member).await;
        let r = api(
            Method::PUT,
            &s.app.url(&format!("/api/v1/projects/{id}/members/{}", user.id)),
            Some(&s.admin_token),
            Some(json!({"role": role})),
        )
        .await;
        assert!(r.status.is_success(), "{}", r.text);
        actors.push((label, token));
    }
    actors.push(("auditor", s.app.user_with_token("aud@example.com", OrgRole::Auditor).await.1));
    actors.push(("stranger", s.app.user_with_token("stranger@example.com", OrgRole::Member).await.1));

    let component = "/components/0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01";
    let endpoints: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("get", Method::GET, String::new(), None),
        ("members", Method::GET, "/members".into(), None),
        ("components", Method::GET, "/components".into(), None),
        ("component", Method::GET, component.into(), None),
        ("put_member", Method::PUT, format!("/members/{}", target.id), Some(json!({"role": "viewer"}))),
        ("delete_member", Method::DELETE, format!("/members/{}", target.id), None),
        ("scan", Method::POST, "/scan".into(), None),
        ("setup", Method::POST, "/setup".into(), None),
        ("rename", Method::PATCH, String::new(), Some(json!({"name": "Matrix"}))),
        ("quota", Method::PATCH, String::new(), Some(json!({"quota_bytes": null}))),
    ];
    // Expected: A = allowed, F = 403, H = 404 (hidden).
    let expected: &[(&str, &str)] = &[
        //            get members components component put del scan setup rename quota
        ("admin", "AAAAAAAAAA"),
        ("maker", "AAAAAAAAAF"),
        ("frontend", "AAAAFFAFFF"),
        ("editor", "AAAAFFFFFF"),
        ("viewer", "AAAAFFFFFF"),
        ("auditor", "AAAAFFFFFF"),
        ("stranger", "HHHHHHHHHH"),
    ];
    let mut denials = 0;
    for (label, token) in &actors {
        let row = expected.iter().find(|(l, _)| l == label).unwrap().1.as_bytes();
        for (i, (name, method, suffix, body)) in endpoints.iter().enumerate() {
            // The target is a member before each call, so deletes and role changes can succeed.
            api(
                Method::PUT,
                &s.app.url(&format!("/api/v1/projects/{id}/members/{}", target.id)),
                Some(&s.admin_token),
                Some(json!({"role": "viewer"})),
            )
            .await;
            let r =
                api(method.clone(), &s.app.url(&format!("/api/v1/projects/{id}{suffix}")), Some(token), body.clone())
                    .await;
            let verdict = match r.status {
                StatusCode::FORBIDDEN => 'F',
                StatusCode::NOT_FOUND => 'H',
                s if s.is_success() || s == StatusCode::CONFLICT => 'A',
                other => panic!("{label} {name}: unexpected {other}: {}", r.text),
            };
            assert_eq!(verdict, row[i] as char, "{label} × {name}: {} {}", r.status, r.text);
            if verdict != 'A' {
                denials += 1;
                assert_eq!(r.json()["code"], if verdict == 'F' { "forbidden" } else { "not_found" });
            }
        }
    }
    let audited = s.app.refusals(&format!("action LIKE 'project.%' AND project_id = '{id}'")).await;
    assert_eq!(audited, denials, "every refusal is audited");
}

//! The audit log: completeness, total order, append-only storage, export and offline
//! verification, including every kind of tampering.

use arno::audit::verify::{Kind, verify};
use arno::audit::{self, Actor, Event, Origin, Outcome};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, TestApp, api};

async fn count(app: &TestApp) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_events").fetch_one(app.state.db.pool()).await.unwrap();
    n
}

async fn last(app: &TestApp) -> (String, String, Option<String>) {
    sqlx::query_as("SELECT action, outcome, actor_id FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn admin_token(app: &TestApp) -> String {
    let admin = app.create_admin().await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    arno::auth::tokens::create(&mut conn, &admin.id, "audit", None).await.unwrap().1
}

async fn export_text(app: &TestApp, token: &str, query: &str) -> String {
    let r = api(Method::GET, &app.url(&format!("/api/v1/audit/export{query}")), Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.text
}

fn check(text: &str, app: &TestApp) -> Result<arno::audit::verify::Report, arno::audit::verify::Problem> {
    verify(std::io::Cursor::new(text.as_bytes()), Some(&app.state.keys.audit.public_key()))
}

/// Some history: sign-ins good and bad, tokens, a sign-out.
async fn some_history(app: &TestApp) {
    let mut b = Browser::new(&app.base);
    assert_eq!(b.login(ADMIN_EMAIL, "wrong password!!").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    let csrf = b.session_csrf().await;
    for name in ["a", "b", "c"] {
        let r = b.json(Method::POST, "/api/v1/tokens", &json!({"name": name}), &[("x-csrf-token", &csrf)]).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    assert_eq!(b.post_form("/logout", &[("csrf_token", &csrf)]).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_mutating_route_writes_exactly_one_record() {
    let app = TestApp::start().await;
    let token_for_setup = app.setup_token.clone().unwrap();
    let mut b = Browser::new(&app.base);

    // (method, route) → what exercising it must record. Adding a mutating route without a line
    // here fails the coverage check below.
    let mut covered: Vec<(&str, &str)> = Vec::new();
    let expect =
        |covered: &mut Vec<(&'static str, &'static str)>, route: (&'static str, &'static str)| covered.push(route);

    // POST /setup: refused, then done.
    let form = b.get(&format!("/setup?token={token_for_setup}")).await;
    let csrf = form.csrf();
    let before = count(&app).await;
    let r = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", "wrong"),
                ("email", "a@b.c"),
                ("name", "A"),
                ("password", "long enough password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&app).await, before + 1);
    assert_eq!(last(&app).await.0, "setup.complete");
    assert_eq!(last(&app).await.1, "denied");
    let r = b
        .post_form(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token_for_setup),
                ("email", ADMIN_EMAIL),
                ("name", "Ada"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // The admin's creation and their first session: one record each, same transactions.
    assert_eq!(count(&app).await, before + 3);
    expect(&mut covered, ("POST", "/setup"));

    // POST /logout
    let csrf = b.session_csrf().await;
    let before = count(&app).await;
    b.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(count(&app).await, before + 1);
    assert_eq!(last(&app).await.0, "auth.logout");
    expect(&mut covered, ("POST", "/logout"));

    // POST /login: denied, then allowed.
    let before = count(&app).await;
    b.login(ADMIN_EMAIL, "not the password").await;
    assert_eq!(count(&app).await, before + 1);
    let (action, outcome, actor) = last(&app).await;
    assert_eq!((action.as_str(), outcome.as_str(), actor), ("auth.login", "denied", None));
    b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(count(&app).await, before + 2);
    assert_eq!(last(&app).await.1, "allowed");
    expect(&mut covered, ("POST", "/login"));

    // POST /api/v1/tokens
    let csrf = b.session_csrf().await;
    let before = count(&app).await;
    let created =
        b.json(Method::POST, "/api/v1/tokens", &json!({"name": "t"}), &[("x-csrf-token", &csrf)]).await.json();
    assert_eq!(count(&app).await, before + 1);
    assert_eq!(last(&app).await.0, "token.create");
    expect(&mut covered, ("POST", "/api/v1/tokens"));

    // DELETE /api/v1/tokens/{id}: allowed, then denied (already revoked).
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/tokens/{id}");
    b.request(Method::DELETE, &path, &[("x-csrf-token", &csrf)], None, None).await;
    b.request(Method::DELETE, &path, &[("x-csrf-token", &csrf)], None, None).await;
    assert_eq!(count(&app).await, before + 3);
    assert_eq!(last(&app).await.1, "denied");
    expect(&mut covered, ("DELETE", "/api/v1/tokens/{id}"));

    // DELETE /api/v1/users/{id} and DELETE /api/v1/me: erasure, denied then allowed.
    let bob = app.create_user("bob@example.com", "bobs long password", arno::auth::OrgRole::Member).await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let bob_token = arno::auth::tokens::create(&mut conn, &bob.id, "b", None).await.unwrap().1;
    drop(conn);
    let before = count(&app).await;
    let r = api(Method::DELETE, &app.url(&format!("/api/v1/users/{}", bob.id)), Some(&bob_token), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(last(&app).await.1, "denied");
    let r = api(
        Method::DELETE,
        &app.url("/api/v1/me"),
        Some(&bob_token),
        Some(json!({"confirm_email": "bob@example.com"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(last(&app).await.0, "user.erase");
    let carol = app.create_user("carol@example.com", "carols long password", arno::auth::OrgRole::Member).await;
    let before_admin_erase = count(&app).await;
    let r =
        b.request(Method::DELETE, &format!("/api/v1/users/{}", carol.id), &[("x-csrf-token", &csrf)], None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(count(&app).await, before_admin_erase + 1);
    assert!(count(&app).await >= before + 4);
    expect(&mut covered, ("DELETE", "/api/v1/users/{id}"));
    expect(&mut covered, ("DELETE", "/api/v1/me"));

    // Projects: create, settings, members, scan; setup refused to a stranger (404, audited).
    let dave = app.create_user("dave@example.com", "daves long password", arno::auth::OrgRole::Member).await;
    let before = count(&app).await;
    let project =
        b.json(Method::POST, "/api/v1/projects", &json!({"name": "Audited"}), &[("x-csrf-token", &csrf)]).await.json();
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 1, "project.create"));
    expect(&mut covered, ("POST", "/api/v1/projects"));
    let pid = project["id"].as_str().unwrap().to_owned();
    let r = b
        .json(
            Method::PATCH,
            &format!("/api/v1/projects/{pid}"),
            &json!({"visibility": "public"}),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 2, "project.update"));
    expect(&mut covered, ("PATCH", "/api/v1/projects/{id}"));
    let member = format!("/api/v1/projects/{pid}/members/{}", dave.id);
    b.json(Method::PUT, &member, &json!({"role": "viewer"}), &[("x-csrf-token", &csrf)]).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 3, "project.member.set"));
    expect(&mut covered, ("PUT", "/api/v1/projects/{id}/members/{user_id}"));
    b.request(Method::DELETE, &member, &[("x-csrf-token", &csrf)], None, None).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 4, "project.member.remove"));
    expect(&mut covered, ("DELETE", "/api/v1/projects/{id}/members/{user_id}"));
    b.request(Method::POST, &format!("/api/v1/projects/{pid}/scan"), &[("x-csrf-token", &csrf)], None, None).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 5, "project.scan"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/scan"));
    // Specs: a save and a backup.
    let spec = format!("/api/v1/projects/{pid}/specs/Design_system/A.md");
    let r = b
        .json(
            Method::PUT,
            &spec,
            &json!({"content": "---\nid: x\n---\n", "base_version": 0, "session_id": "s"}),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 6, "spec.save"));
    expect(&mut covered, ("PUT", "/api/v1/projects/{id}/specs/{*path}"));
    let r = b
        .json(
            Method::POST,
            &format!("{spec}/backups"),
            &json!({"content": "kept", "session_id": "s"}),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 7, "spec.backup"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/specs/{*path}"));
    // Comments: a thread, a reply, resolve, reopen.
    let comments = format!("/api/v1/projects/{pid}/comments");
    let h = [("x-csrf-token", csrf.as_str())];
    let t = b.json(Method::POST, &comments, &json!({"path": "Design_system/A.md", "body": "Why?"}), &h).await.json();
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 8, "comment.create"));
    let tid = t["id"].as_str().unwrap().to_owned();
    b.json(Method::POST, &format!("{comments}/{tid}/replies"), &json!({"body": "Because."}), &h).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 9, "comment.reply"));
    b.request(Method::POST, &format!("{comments}/{tid}/resolve"), &h, None, None).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 10, "comment.resolve"));
    b.request(Method::POST, &format!("{comments}/{tid}/reopen"), &h, None, None).await;
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 11, "comment.reopen"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/comments"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/comments/{comment_id}/replies"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/comments/{comment_id}/resolve"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/comments/{comment_id}/reopen"));
    // Change requests: deciding for someone else's session branch is refused, and recorded.
    let r = b.request(Method::POST, &format!("/api/v1/projects/{pid}/changes/dave/take-theirs"), &h, None, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 12, "writeback.take_theirs"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/changes/{handle}/{action}"));
    // Workflow: a connect ticket is recorded (a secret was issued).
    let r = b.request(Method::POST, &format!("/api/v1/projects/{pid}/workflow/ticket"), &h, None, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 13, "workflow.ticket"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/workflow/ticket"));
    let snaps = format!("/api/v1/projects/{pid}/workflow/snapshots");
    let snap = b.json(Method::POST, &snaps, &json!({"label": "v1"}), &h).await;
    assert_eq!(snap.status, StatusCode::CREATED, "{}", snap.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 14, "workflow.snapshot"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/workflow/snapshots"));
    let sid = snap.json()["id"].as_str().unwrap().to_owned();
    let r = b.request(Method::POST, &format!("{snaps}/{sid}/restore"), &h, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 15, "workflow.restore"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/workflow/snapshots/{snapshot_id}/restore"));
    // A new component is one save of a new file.
    let r = b.json(Method::POST, &format!("/api/v1/projects/{pid}/components"), &json!({"name": "Toast"}), &h).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 16, "spec.save"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/components"));
    // Deleting it is one record too.
    let toast = format!("/api/v1/projects/{pid}/specs/Design_system/Toast.md");
    let r = b.json(Method::DELETE, &toast, &json!({"base_version": 1, "session_id": "s"}), &h).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 17, "spec.delete"));
    expect(&mut covered, ("DELETE", "/api/v1/projects/{id}/specs/{*path}"));
    // Git connections: create, change, delete, one record each.
    let conns = "/api/v1/admin/git/connections";
    let body = crate::git_connections::new_connection("ghes");
    let r = b.json(Method::POST, conns, &body, &h).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 18, "git.connection.create"));
    expect(&mut covered, ("POST", "/api/v1/admin/git/connections"));
    let r = b.json(Method::PATCH, &format!("{conns}/ghes"), &json!({"app_id": "42"}), &h).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 19, "git.connection.update"));
    expect(&mut covered, ("PATCH", "/api/v1/admin/git/connections/{name}"));
    let r = b.request(Method::DELETE, &format!("{conns}/ghes"), &h, None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 20, "git.connection.delete"));
    expect(&mut covered, ("DELETE", "/api/v1/admin/git/connections/{name}"));
    // Roles from GitHub on a project (made a GitHub one here): set, sync now, stop — one each.
    let r = b.json(Method::POST, conns, &crate::git_connections::new_connection("roles"), &h).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.exec(&format!("UPDATE projects SET provider = 'github', git_connection = 'roles' WHERE id = '{pid}'")).await;
    let before = count(&app).await;
    let roles = format!("/api/v1/projects/{pid}/github-roles");
    let r = b.json(Method::PUT, &roles, &json!({}), &h).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 1, "project.role_sync.set"));
    expect(&mut covered, ("PUT", "/api/v1/projects/{id}/github-roles"));
    let r = b.request(Method::POST, &format!("{roles}/sync"), &h, None, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 2, "project.role_sync.run"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/github-roles/sync"));
    let r = b.request(Method::DELETE, &roles, &h, None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 3, "project.role_sync.remove"));
    expect(&mut covered, ("DELETE", "/api/v1/projects/{id}/github-roles"));
    app.exec(&format!("UPDATE projects SET provider = 'local', git_connection = NULL WHERE id = '{pid}'")).await;
    // A linked GitHub account, unlinked: one record. Linking needs GitHub's word, so starting
    // (`user.git_login.start`) and checking (`user.git_login.link`) are counted in
    // tests/it/github_roles.rs against the fake GitHub.
    app.exec(
        "INSERT INTO user_git_logins (user_id, connection, login, login_lower, provider_user_id, linked_at) \
         SELECT id, 'roles', 'Octo', 'octo', 9, 0 FROM users WHERE org_role = 'admin' ORDER BY created_at LIMIT 1",
    )
    .await;
    let r = b.request(Method::DELETE, "/api/v1/me/git-logins/roles", &h, None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!((count(&app).await, last(&app).await.0.as_str()), (before + 4, "user.git_login.unlink"));
    expect(&mut covered, ("DELETE", "/api/v1/me/git-logins/{connection}"));
    expect(&mut covered, ("POST", "/api/v1/me/git-logins/{connection}"));
    expect(&mut covered, ("POST", "/api/v1/me/git-logins/{connection}/check"));
    let before = count(&app).await;

    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let dave_token = arno::auth::tokens::create(&mut conn, &dave.id, "d", None).await.unwrap().1;
    drop(conn);
    app.exec(&format!("UPDATE projects SET visibility = 'private' WHERE id = '{pid}'")).await;
    let r = api(Method::POST, &app.url(&format!("/api/v1/projects/{pid}/setup")), Some(&dave_token), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&app).await, before + 1);
    let (action, outcome, actor) = last(&app).await;
    assert_eq!(
        (action.as_str(), outcome.as_str(), actor.as_deref()),
        ("project.setup", "denied", Some(dave.id.as_str()))
    );
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/setup"));
    // The onboarding pull request (a GitHub project's setup): refused to a stranger, audited
    // once; opening one is audited in tests/it/github_projects.rs against the fake GitHub.
    let before = count(&app).await;
    let r = api(Method::POST, &app.url(&format!("/api/v1/projects/{pid}/onboarding")), Some(&dave_token), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&app).await, before + 1);
    let (action, outcome, _) = last(&app).await;
    assert_eq!((action.as_str(), outcome.as_str()), ("project.onboarding", "denied"));
    expect(&mut covered, ("POST", "/api/v1/projects/{id}/onboarding"));

    // Refused writes are recorded too: CSRF, unknown bearer tokens.
    let before = count(&app).await;
    assert_eq!(b.post_form("/logout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(last(&app).await.0, "http.write");
    assert_eq!(
        api(Method::GET, &app.url("/api/v1/me"), Some("arno_forged"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(last(&app).await.0, "auth.token");
    assert_eq!(count(&app).await, before + 2);

    // The device flow's two OAuth endpoints are unauthenticated: issuing a code and polling change
    // nothing anyone can use, so they write no record (anonymous requests must not be able to grow
    // the log); the approval (`auth.device`) and the token it yields (`token.create`) are recorded,
    // which tests/it/device.rs checks.
    expect(&mut covered, ("POST", "/api/v1/auth/device/code"));
    expect(&mut covered, ("POST", "/api/v1/auth/device/token"));

    // Coverage: every mutating API operation, and every page form route, is exercised above.
    let doc = api(Method::GET, &app.url("/api/v1/openapi.json"), None, None).await.json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                let m = method.to_uppercase();
                assert!(
                    covered.iter().any(|(cm, cp)| *cm == m && cp == path),
                    "{m} {path} is not audited by this test"
                );
            }
        }
    }
}

#[tokio::test]
async fn exports_verify_and_every_tampering_is_located() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    some_history(&app).await;
    let text = export_text(&app, &token, "").await;
    let report = check(&text, &app).expect("an untouched export verifies");
    assert_eq!(report.records as i64, count(&app).await);
    assert!(report.checkpoints >= 1, "the export ends on a signed checkpoint");
    assert!(report.pinned);

    let lines: Vec<&str> = text.lines().collect();
    let record_lines: Vec<usize> =
        lines.iter().enumerate().filter(|(_, l)| l.contains("\"type\":\"record\"")).map(|(i, _)| i).collect();
    assert!(record_lines.len() >= 8, "{}", record_lines.len());
    let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let target = record_lines[3]; // 0-based index; the file's line number is target + 1
    let target_seq = serde_json::from_str::<Value>(lines[target]).unwrap()["seq"].as_i64().unwrap();

    // Modify one field.
    let mut t = owned.clone();
    t[target] = t[target]
        .replace("\"outcome\":\"allowed\"", "\"outcome\":\"denied\"")
        .replace("\"outcome\":\"denied\"", "\"outcome\":\"allowed\"");
    let mut v: Value = serde_json::from_str(&owned[target]).unwrap();
    v["action"] = json!("auth.tampered");
    t[target] = v.to_string();
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line, p.seq), (Kind::Modified, target as u64 + 1, Some(target_seq)), "{p}");

    // Modify a personal field (the IP address) without touching the hashed ones.
    let mut t = owned.clone();
    let mut v: Value = serde_json::from_str(&owned[target]).unwrap();
    v["ip"] = json!("203.0.113.66");
    t[target] = v.to_string();
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line), (Kind::Modified, target as u64 + 1), "{p}");

    // Delete a record: the next line reports the gap.
    let mut t = owned.clone();
    t.remove(target);
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line, p.seq), (Kind::Deleted, target as u64 + 1, Some(target_seq + 1)), "{p}");

    // Insert a copy of a record.
    let mut t = owned.clone();
    t.insert(target + 1, owned[target].clone());
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line), (Kind::Inserted, target as u64 + 2), "{p}");

    // Swap two records.
    let mut t = owned.clone();
    let next = record_lines[4];
    assert_eq!(next, target + 1, "adjacent records");
    t.swap(target, next);
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line, p.seq), (Kind::Reordered, target as u64 + 1, Some(target_seq + 1)), "{p}");

    // Truncate: drop the trailer, or cut the file mid-line.
    let t = owned[..owned.len() - 1].to_vec();
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!(p.kind, Kind::Truncated, "{p}");
    let cut = &text[..text.len() - 40];
    assert_eq!(check(cut, &app).unwrap_err().kind, Kind::Truncated);
    let t = owned[..target].to_vec();
    assert_eq!(check(&join(&t), &app).unwrap_err().kind, Kind::Truncated);

    // Forge a checkpoint: a new hash with the old signature, or a made-up signature.
    let cp = lines.iter().position(|l| l.contains("\"type\":\"checkpoint\"")).unwrap();
    let mut t = owned.clone();
    let mut v: Value = serde_json::from_str(&owned[cp]).unwrap();
    v["hash"] = json!("ab".repeat(32));
    t[cp] = v.to_string();
    let p = check(&join(&t), &app).unwrap_err();
    assert_eq!((p.kind.clone(), p.line), (Kind::BadSignature, cp as u64 + 1), "{p}");
    let mut v: Value = serde_json::from_str(&owned[cp]).unwrap();
    v["signature"] = json!(base64_of(&[7u8; 64]));
    let mut t = owned.clone();
    t[cp] = v.to_string();
    assert_eq!(check(&join(&t), &app).unwrap_err().kind, Kind::BadSignature);

    // Rewriting history consistently (recomputing every hash) still contradicts the checkpoint.
    // Simulated by editing the trailer's digest: the signature no longer covers it.
    let mut t = owned.clone();
    let last_line = t.len() - 1;
    let mut v: Value = serde_json::from_str(&owned[last_line]).unwrap();
    v["records"] = json!(1);
    t[last_line] = v.to_string();
    assert!(check(&join(&t), &app).is_err());

    // A different instance's key is refused.
    let other = arno::audit::Signer::from_seed([9u8; 32]);
    let p = verify(std::io::Cursor::new(text.as_bytes()), Some(&other.public_key())).unwrap_err();
    assert_eq!(p.kind, Kind::BadSignature);
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn a_rewritten_database_contradicts_earlier_checkpoints() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    some_history(&app).await;
    audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap();
    // An attacker with database access rewrites a record and recomputes the rest of the chain
    // (bypassing the append-only guard as a database owner could).
    let rows: Vec<arno::audit::store::Row> = {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        arno::audit::store::rows_between(&mut conn, 0, i64::MAX, 10_000).await.unwrap()
    };
    let mut prev = rows[0].prev_hash.clone();
    let mut rewritten = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let mut r = r.clone();
        if i == 2 {
            r.action = "auth.nothing_happened".into();
        }
        r.prev_hash = prev.clone();
        r.hash = hex::encode(arno::audit::export::recompute(&r).unwrap());
        prev = r.hash.clone();
        rewritten.push(r);
    }
    open_gate(&app).await;
    for r in &rewritten {
        sqlx::query("UPDATE audit_events SET action = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&r.action)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(r.seq)
            .execute(app.state.db.pool())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_head SET hash = $1").bind(&prev).execute(app.state.db.pool()).await.unwrap();
    close_gate(&app).await;
    let text = export_text(&app, &token, "").await;
    let p = check(&text, &app).unwrap_err();
    assert_eq!(p.kind, Kind::Modified, "{p}");
    assert!(p.message.contains("checkpoint"), "{p}");
}

async fn open_gate(app: &TestApp) {
    if crate::support::is_postgres() {
        // A database owner can drop the trigger; this is what the checkpoints defend against.
        app.exec("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only").await;
    } else {
        app.exec("UPDATE audit_gate SET open = 1").await;
    }
}

async fn close_gate(app: &TestApp) {
    if crate::support::is_postgres() {
        app.exec("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only").await;
    } else {
        app.exec("UPDATE audit_gate SET open = 0").await;
    }
}

#[tokio::test]
async fn audit_rows_cannot_be_updated_or_deleted() {
    let app = TestApp::start().await;
    app.create_admin().await;
    assert!(count(&app).await >= 1);
    audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap().expect("a checkpoint to protect");
    for sql in
        ["UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events", "UPDATE audit_checkpoints SET hash = 'x'"]
    {
        let r = sqlx::query(sql).execute(app.state.db.pool()).await;
        assert!(r.is_err(), "{sql} must be refused");
    }
    assert!(sqlx::query("DELETE FROM audit_checkpoints").execute(app.state.db.pool()).await.is_err());
    if crate::support::is_postgres() {
        assert!(sqlx::query("TRUNCATE audit_events").execute(app.state.db.pool()).await.is_err());
    }
    assert!(count(&app).await >= 1);
}

#[tokio::test]
async fn concurrent_writers_share_one_total_order() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = app.state.db.clone();
        tasks.push(tokio::spawn(async move {
            let origin = Origin { request_id: Some(format!("r{i}")), ..Origin::system() };
            let event = Event::new("test.concurrent", Outcome::Allowed, Actor::System, &origin).intent(json!({"i": i}));
            audit::record_alone(&db, event).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 40, "every writer got its own seq");
    let (min, max): (i64, i64) =
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_events").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(max - min + 1, count(&app).await, "no gaps");
    let text = export_text(&app, &token, "").await;
    check(&text, &app).expect("the chain is intact after concurrent appends");
    let times: Vec<i64> = sqlx::query_as::<_, (i64,)>("SELECT occurred_at FROM audit_events ORDER BY seq")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times never go backwards along the chain");
}

#[tokio::test]
async fn filtered_exports_keep_the_chain_with_stubs() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    some_history(&app).await;
    let text = export_text(&app, &token, "?action=token.create&outcome=allowed").await;
    let report = check(&text, &app).expect("filtered export verifies");
    assert_eq!(report.records, 3, "{text}");
    assert!(report.stubs > 0);
    for line in text.lines().filter(|l| l.contains("\"type\":\"record\"")) {
        assert!(line.contains("\"action\":\"token.create\""));
    }
    // Stubs carry no content.
    for line in text.lines().filter(|l| l.contains("\"type\":\"stub\"")) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4, "{line}");
    }
    // A time range that holds nothing is still a valid, signed export.
    let empty = export_text(&app, &token, "?from=2001-01-01&to=2001-01-02").await;
    let report = check(&empty, &app).unwrap();
    assert_eq!((report.records, report.stubs), (0, 0));
    // Bad parameters are validation errors.
    for q in ["?format=xml", "?from=yesterday", "?from=2026-01-02&to=2026-01-01", "?outcome=maybe"] {
        let r = api(Method::GET, &app.url(&format!("/api/v1/audit/export{q}")), Some(&token), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json()["code"], "validation");
    }
}

#[tokio::test]
async fn only_auditors_and_admins_export_and_refusals_are_audited() {
    let app = TestApp::start().await;
    let member = app.create_user("mel@example.com", "members password", arno::auth::OrgRole::Member).await;
    let auditor = app.create_user("aud@example.com", "auditors password", arno::auth::OrgRole::Auditor).await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let member_token = arno::auth::tokens::create(&mut conn, &member.id, "m", None).await.unwrap().1;
    let auditor_token = arno::auth::tokens::create(&mut conn, &auditor.id, "a", None).await.unwrap().1;
    drop(conn);
    let r = api(Method::GET, &app.url("/api/v1/audit/export"), Some(&member_token), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (action, outcome, actor) = last(&app).await;
    assert_eq!(
        (action.as_str(), outcome.as_str(), actor.as_deref()),
        ("audit.export", "denied", Some(member.id.as_str()))
    );
    let text = export_text(&app, &auditor_token, "?format=csv").await;
    assert!(text.starts_with("record_type,seq,id,time,"));
    let (action, outcome, _) = last(&app).await;
    assert_eq!((action.as_str(), outcome.as_str()), ("audit.export", "allowed"));
    let pk = api(Method::GET, &app.url("/api/v1/audit/public-key"), Some(&member_token), None).await.json();
    assert_eq!(pk["public_key"], app.state.keys.audit.public_key_text());
}

#[tokio::test]
async fn csv_exports_escape_hostile_strings() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    let hostile = "=cmd|' /C calc'!A0, \"quoted\"; ünïcödé |=|";
    let r = crate::support::client()
        .get(app.url("/api/v1/me"))
        .bearer_auth("arno_not_a_real_token")
        .header("user-agent", hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = export_text(&app, &token, "?format=csv&action=auth.token").await;
    let line = text.lines().find(|l| l.starts_with("record,")).expect("the denied token record");
    // Quoted (it has commas and quotes), quotes doubled, formula defused with a leading '.
    assert!(line.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"; ünïcödé |=|\""), "{line}");
    assert_eq!(text.lines().last().unwrap().split(',').next(), Some("trailer"));

    // CSV exports verify like JSON Lines — filtered ones with their stub rows too — hostile
    // strings and all, and tampering is located.
    let filtered = check(&text, &app).expect("the filtered CSV export verifies");
    assert!(filtered.stubs > 0 && filtered.records == 1, "{filtered:?}");
    let full = export_text(&app, &token, "?format=csv").await;
    let report = check(&full, &app).expect("the CSV export verifies");
    assert_eq!(report.records as i64, count(&app).await);
    let tampered = full.replacen("ünïcödé", "unicode", 1);
    let p = check(&tampered, &app).unwrap_err();
    assert_eq!(p.kind, Kind::Modified, "{p}");
    let cut: String = full.lines().take(full.lines().count() - 1).map(|l| format!("{l}\n")).collect();
    assert_eq!(check(&cut, &app).unwrap_err().kind, Kind::Truncated);
}

#[tokio::test]
async fn cli_exports_and_verifies_offline() {
    let app = TestApp::start().await;
    app.create_admin().await;
    some_history(&app).await;
    let out = app.dir.path().join("audit.jsonl");
    // Off the runtime thread: the in-process server must keep running while the CLI works.
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_arno"));
        for (k, _) in std::env::vars() {
            if k.starts_with("ARNO_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&app.env).args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let key = run(&["audit", "public-key"]).await.unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    assert_eq!(key, app.state.keys.audit.public_key_text());
    let e = run(&["audit", "export", "--out", out.to_str().unwrap()]).await.unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    assert!(!app.dir.path().join("audit.partial").exists());

    // Verification needs no configuration at all.
    let verify_cmd = |file: &std::path::Path, key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_arno"))
            .env_clear()
            .args(["audit", "verify", file.to_str().unwrap(), "--public-key", key])
            .output()
            .unwrap()
    };
    let ok = verify_cmd(&out, &key);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: "));

    let text = std::fs::read_to_string(&out).unwrap();
    let tampered = app.dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"outcome\":\"denied\"", "\"outcome\":\"allowed\"", 1)).unwrap();
    let bad = verify_cmd(&tampered, &key);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.starts_with("FAILED (Modified): line "), "{stderr}");
    // The export itself was audited, as the system acting from the shell.
    let (action, _, _) = sqlx::query_as::<_, (String, String, Option<String>)>(
        "SELECT action, outcome, actor_id FROM audit_events WHERE action = 'audit.export'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(action, "audit.export");
}

#[tokio::test]
async fn retention_purges_at_a_checkpoint_and_the_rest_still_verifies() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    some_history(&app).await;
    let anchor = audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cutoff = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    some_history(&app).await;
    audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap();
    let before = count(&app).await;

    // Keep what is younger than the cutoff: everything up to the first checkpoint goes.
    let retention = cutoff.elapsed();
    let purged = audit::retention::purge(&app.state.db, retention, &[], &Origin::system()).await.unwrap().unwrap();
    assert_eq!(purged.through_seq, anchor);
    assert_eq!(purged.records as i64, anchor);
    assert_eq!(count(&app).await, before - anchor + 1, "the purge itself is recorded");
    let (action, _, _) = last(&app).await;
    assert_eq!(action, "audit.purge");
    // The gate is closed again.
    assert!(sqlx::query("DELETE FROM audit_events").execute(app.state.db.pool()).await.is_err());

    let text = export_text(&app, &token, "").await;
    let report = check(&text, &app).expect("what remains verifies against the anchor");
    assert_eq!(report.first_seq, Some(anchor + 1));
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["anchor"]["seq"], anchor);

    // Deleting the first remaining record is still detected at the start.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let first = lines.iter().position(|l| l.contains("\"type\":\"record\"")).unwrap();
    lines.remove(first);
    let joined: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let p = check(&joined, &app).unwrap_err();
    assert_eq!(p.kind, Kind::Deleted, "{p}");

    // Nothing older than the anchor remains to purge.
    let again = audit::retention::purge(&app.state.db, retention, &[], &Origin::system()).await.unwrap();
    assert!(again.is_none_or(|p| p.through_seq > anchor));
}

#[tokio::test]
async fn the_console_searches_pages_and_verifies_for_auditors_only() {
    let app = TestApp::start().await;
    let mut b = app.admin_browser().await;
    // 60 denied sign-ins for one account and a few other records.
    for i in 0..60 {
        let origin = Origin { ip: Some(format!("198.51.100.{i}")), ..Origin::system() };
        let event = Event::new("auth.login", Outcome::Denied, Actor::Anonymous, &origin)
            .target("user", "victim")
            .intent(json!({"reason": "bad_credentials", "i": i}));
        audit::record_alone(&app.state.db, event).await.unwrap();
    }
    let page = b.get("/audit?outcome=denied&target=user%3Avictim").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let rows = page.html().select(&scraper::Selector::parse("table.audit tbody tr").unwrap()).count();
    assert_eq!(rows, 50, "one page");
    assert!(page.text.contains("198.51.100.59"), "newest first");
    let next = page.select_attr("a[rel=next]", "href").expect("a next page");
    assert!(next.contains("outcome=denied") && next.contains("before="), "{next}");
    let second = b.get(&next).await;
    let rows = second.html().select(&scraper::Selector::parse("table.audit tbody tr").unwrap()).count();
    assert_eq!(rows, 10);
    assert!(second.select_attr("a[rel=next]", "href").is_none());
    assert!(second.text.contains("198.51.100.0"));
    // The public key is shown for offline verification.
    assert!(page.text.contains(&app.state.keys.audit.public_key_text()));

    // Verify the live log from the console.
    let csrf = b.session_csrf().await;
    let ok = b.post_form("/audit/verify", &[("csrf_token", &csrf)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.select_text("#verification").unwrap().starts_with("The audit log is intact"), "{}", ok.text);
    // Tamper with the live log directly in the database: the console says so.
    open_gate(&app).await;
    app.exec("UPDATE audit_events SET intent = '{}' WHERE seq = 5").await;
    close_gate(&app).await;
    let bad = b.post_form("/audit/verify", &[("csrf_token", &csrf)]).await;
    let message = bad.select_text("#verification").unwrap();
    assert!(message.contains("FAILED (Modified)") && message.contains("(seq 5)"), "{message}");

    // Members may not read the audit log; the refusal is audited.
    app.create_user("mel@example.com", "members password", arno::auth::OrgRole::Member).await;
    let mut m = Browser::new(&app.base);
    m.login("mel@example.com", "members password").await;
    assert_eq!(m.get("/audit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(last(&app).await.0, "audit.read");
    assert_eq!(last(&app).await.1, "denied");
    let home = m.get("/").await;
    assert!(home.select_attr("a[href='/audit']", "href").is_none(), "no Audit link for members");
    let admin_home = b.get("/").await;
    assert!(admin_home.select_attr("a[href='/audit']", "href").is_some());
}

#[tokio::test]
async fn siem_formats_stream_events_with_a_signed_trailer() {
    use sha2::Digest as _;
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    some_history(&app).await;
    for format in ["ocsf", "cef"] {
        let text = export_text(&app, &token, &format!("?format={format}")).await;
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() as i64 >= count(&app).await - 1, "{format}: every record is an event");
        let body_len = text.len() - lines.last().unwrap().len() - 1;
        let digest = sha2::Sha256::digest(&text.as_bytes()[..body_len]);
        let (digest_hex, signature) = if format == "ocsf" {
            for l in &lines[..lines.len() - 1] {
                let v: Value = serde_json::from_str(l).unwrap();
                assert!(matches!(v["class_uid"].as_u64(), Some(3002 | 6003)), "{l}");
                assert!(v["unmapped"]["arno"]["hash"].is_string());
            }
            let t: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
            let t = &t["arno_export_trailer"];
            (t["digest"].as_str().unwrap().to_owned(), t["signature"].as_str().unwrap().to_owned())
        } else {
            assert!(lines.iter().all(|l| l.starts_with("CEF:0|Arno|Arno|")));
            let last = lines.last().unwrap();
            let field = |k: &str| last.split(' ').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap().to_owned();
            (field("arnoDigest"), field("arnoSignature"))
        };
        assert_eq!(digest_hex, hex::encode(digest), "{format}");
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD.decode(signature.replace("\\=", "=")).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap());
        let message = arno::audit::export::trailer_message(&digest);
        assert!(app.state.keys.audit.public_key().verify_strict(&message, &sig).is_ok(), "{format}");

        // Offline verification with the instance key; tampering is located.
        let key = app.state.keys.audit.public_key();
        let verify = |t: &str| arno::audit::verify::verify_any(std::io::Cursor::new(t.as_bytes()), Some(&key));
        let report = verify(&text).unwrap_or_else(|p| panic!("{format}: {p}"));
        assert_eq!(report.records as usize, lines.len() - 1, "{format}");
        assert!(
            arno::audit::verify::verify_any(std::io::Cursor::new(text.as_bytes()), None).is_err(),
            "a key is required"
        );
        let mut t: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        // Change the (hashed) action of the third event.
        t[2] = t[2].replacen("act=", "act=x", 1).replacen("\"event_code\":\"", "\"event_code\":\"x", 1);
        let p = verify(&t.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap_err();
        assert_eq!((p.kind.clone(), p.line), (Kind::Modified, 3), "{format}: {p}");
        let mut t: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        t.remove(3);
        let p = verify(&t.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap_err();
        assert!(matches!(p.kind, Kind::Inserted | Kind::Modified), "{format}: {p}");
        let cut: String = lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(verify(&cut).unwrap_err().kind, Kind::Truncated, "{format}");
    }
}

#[tokio::test]
async fn records_stream_to_a_siem_at_least_once_after_failures() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    // A SIEM endpoint that fails its first delivery, then accepts.
    type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;
    let received: Received = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, c) = (received.clone(), calls.clone());
    let siem = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (r, c) = (r.clone(), c.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let token = headers.get("x-arno-verification-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
                r.lock().unwrap().push((token, serde_json::from_str(&body).unwrap()));
                StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, siem).await.unwrap() });

    let app = TestApp::start_with(&[
        ("ARNO_AUDIT_STREAM_URLS", &url),
        ("ARNO_AUDIT_STREAM_TOKEN", "siem-verification-token-1234"),
    ])
    .await;
    app.create_admin().await;
    some_history(&app).await;
    let expected: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM audit_events ORDER BY seq").fetch_all(app.state.db.pool()).await.unwrap();
    assert!(expected.len() >= 5, "{}", expected.len());

    // Delivery resumes after the back-off (2 s) and catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got: std::collections::BTreeSet<String> =
            received.lock().unwrap().iter().map(|(_, v)| v["id"].as_str().unwrap().to_owned()).collect();
        if expected.iter().all(|(id,)| got.contains(id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {} of {}", got.len(), expected.len());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(calls.load(Ordering::SeqCst) > expected.len(), "the failed delivery was retried");
    let received = received.lock().unwrap().clone();
    assert!(received.iter().all(|(t, _)| t.as_deref() == Some("siem-verification-token-1234")));
    let seqs: Vec<i64> = received.iter().map(|(_, v)| v["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(received.iter().all(|(_, v)| v["hash"].is_string() && v["action"].is_string()));

    let metrics = api(Method::GET, &format!("{}/metrics", app.metrics_base), None, None).await.text;
    assert!(metrics.contains("audit_stream_lag_seconds{stream="), "{metrics}");
    assert!(metrics.contains(r#"audit_records_total{action="token.create",outcome="allowed"}"#), "{metrics}");
    let (failures, last_error): (i64, Option<String>) =
        sqlx::query_as("SELECT failures, last_error FROM audit_streams").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!((failures, last_error), (0, None), "recovered");
}

#[tokio::test]
async fn a_project_with_longer_retention_holds_back_the_purge() {
    let app = TestApp::start().await;
    let token = admin_token(&app).await;
    let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&token), Some(json!({"name": "Regulated"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let url = app.url("/api/v1/projects/regulated");
    let patch = |body: Value| api(Method::PATCH, &url, Some(&token), Some(body));
    let r = patch(json!({"audit_retention_days": 3650})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["audit_retention_days"], 3650);
    let r = patch(json!({"audit_retention_days": 30})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "shorter than the instance's 180 days");
    assert_eq!(r.json()["details"]["field"], "audit_retention_days");
    let (_, member) = app.user_with_token("m@example.com", arno::auth::OrgRole::Member).await;
    let r = api(
        Method::PATCH,
        &app.url("/api/v1/projects/regulated"),
        Some(&member),
        Some(json!({"audit_retention_days": 4000})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a private project of others");

    audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap();
    some_history(&app).await;
    let second = audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let cutoff = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    some_history(&app).await;
    audit::checkpoint(&app.state.db, &app.state.keys.audit).await.unwrap();
    let retention = cutoff.elapsed();

    // The project's records are within its ten years: nothing from its first record on may go.
    let holds = arno::projects::audit_holds(&app.state.db, retention).await.unwrap();
    assert_eq!(holds.len(), 1);
    let before = count(&app).await;
    assert_eq!(audit::retention::purge(&app.state.db, retention, &holds, &Origin::system()).await.unwrap(), None);
    assert_eq!(count(&app).await, before);

    // Back to the instance's retention: the purge cuts at the newest checkpoint before the cutoff.
    assert_eq!(patch(json!({"audit_retention_days": null})).await.json()["audit_retention_days"], Value::Null);
    let holds = arno::projects::audit_holds(&app.state.db, retention).await.unwrap();
    assert!(holds.is_empty());
    let purged = audit::retention::purge(&app.state.db, retention, &holds, &Origin::system()).await.unwrap().unwrap();
    assert_eq!(purged.through_seq, second);
    let text = export_text(&app, &token, "").await;
    check(&text, &app).expect("what remains verifies");
}

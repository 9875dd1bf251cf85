//! Every route that changes something × every kind of caller, checked against the one table in
//! docs/security.md ("Who may call what"): the table must list every changing route the router
//! has (the API's OpenAPI document and the page routes of `src/app.rs`), and each route answers
//! each caller as the table says. Every refusal must be in the audit log.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Browser, TestApp, api};
use arno::auth::{OrgRole, User};

const SECURITY_MD: &str = include_str!("../../docs/security.md");
const APP_RS: &str = include_str!("../../src/app.rs");
const PASSWORD: &str = "a long enough password";
const SPEC: &str = "Design_system/A.md";

/// The table's columns: (header, organisation role, project role).
const COLUMNS: [(&str, OrgRole, Option<&str>); 8] = [
    ("Admin", OrgRole::Admin, None),
    ("Auditor", OrgRole::Auditor, None),
    ("Auditor + Maker", OrgRole::Auditor, Some("maker")),
    ("Maker", OrgRole::Member, Some("maker")),
    ("Frontend", OrgRole::Member, Some("frontend")),
    ("Editor", OrgRole::Member, Some("editor")),
    ("Viewer", OrgRole::Member, Some("viewer")),
    ("Outsider", OrgRole::Member, None),
];

struct Actor {
    label: &'static str,
    user: User,
    token: String,
    browser: Browser,
    csrf: String,
    project_role: Option<&'static str>,
}

/// The rows of the Markdown table between `<!-- {name}:start -->` and `<!-- {name}:end -->`,
/// header first, cells trimmed.
fn table(name: &str) -> Vec<Vec<String>> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let body = SECURITY_MD
        .split_once(&start)
        .and_then(|(_, rest)| rest.split_once(&end))
        .unwrap_or_else(|| panic!("docs/security.md has no {start} … {end} table"))
        .0;
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

/// "`POST /a/{b}`" → ("POST", "/a/{b}").
fn route_of(cell: &str) -> (String, String) {
    let (method, path) = cell.trim_matches('`').split_once(' ').unwrap_or_else(|| panic!("not a route: {cell}"));
    (method.to_owned(), path.to_owned())
}

/// The changing page routes of `src/app.rs`: each `.route("path", …post(…)…)`.
fn page_routes() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut rest = APP_RS;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route".len()..];
        let mut depth = 0;
        let mut end = call.len();
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &call[..end];
        let path = call.split('"').nth(1).expect("a route path literal");
        for method in ["post", "put", "patch", "delete"] {
            if call.contains(&format!("{method}(")) {
                found.insert((method.to_uppercase(), path.to_owned()));
            }
        }
        rest = &rest[at + 1..];
    }
    found
}

/// What one project route needs that exists before the calls.
struct Fixture {
    id: String,
    slug: String,
    comment: String,
    snapshot: String,
}

async fn project(app: &TestApp, admin: &Actor, actors: &[Actor], n: usize) -> Fixture {
    let r = api(
        Method::POST,
        &app.url("/api/v1/projects"),
        Some(&admin.token),
        Some(json!({"name": format!("Matrix {n}")})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (id, slug) = (r.json()["id"].as_str().unwrap().to_owned(), r.json()["slug"].as_str().unwrap().to_owned());
    for a in actors {
        if let Some(role) = a.project_role {
            let url = app.url(&format!("/api/v1/projects/{id}/members/{}", a.user.id));
            let r = api(Method::PUT, &url, Some(&admin.token), Some(json!({"role": role}))).await;
            assert!(r.status.is_success(), "{}: {}", a.label, r.text);
        }
    }
    let base = format!("/api/v1/projects/{id}");
    let save = json!({"content": "---\nid: x\n---\n", "base_version": 0, "session_id": "s"});
    let r = api(Method::PUT, &app.url(&format!("{base}/specs/{SPEC}")), Some(&admin.token), Some(save)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let thread = json!({"path": SPEC, "body": "Why?"});
    let r = api(Method::POST, &app.url(&format!("{base}/comments")), Some(&admin.token), Some(thread)).await;
    assert!(r.status.is_success(), "{}", r.text);
    let comment = r.json()["id"].as_str().unwrap().to_owned();
    let r = api(
        Method::POST,
        &app.url(&format!("{base}/workflow/snapshots")),
        Some(&admin.token),
        Some(json!({"label": "v1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let snapshot = r.json()["id"].as_str().unwrap().to_owned();
    Fixture { id, slug, comment, snapshot }
}

/// A fresh account to act on (a member of the fixture's project when there is one), and one of
/// its API token ids.
async fn someone(app: &TestApp, admin: &Actor, fixture: Option<&Fixture>, n: &mut usize) -> (User, String) {
    *n += 1;
    let user = app.create_user(&format!("target{n}@example.com"), PASSWORD, OrgRole::Member).await;
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let token = arno::auth::tokens::create(&mut conn, &user.id, "t", None).await.unwrap().0.id;
    drop(conn);
    if let Some(f) = fixture {
        let url = app.url(&format!("/api/v1/projects/{}/members/{}", f.id, user.id));
        let r = api(Method::PUT, &url, Some(&admin.token), Some(json!({"role": "viewer"}))).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    (user, token)
}

/// The concrete call for a route: (path, JSON body for the API or form fields for a page).
fn call_for(
    method: &str,
    path: &str,
    f: Option<&Fixture>,
    target: &(User, String),
    maker_handle: &str,
    n: usize,
) -> (String, Option<Value>, Vec<(String, String)>) {
    let mut p = path.to_owned();
    if let Some(f) = f {
        p = p.replace("{slug}", &f.slug).replace("{comment_id}", &f.comment).replace("{snapshot_id}", &f.snapshot);
        if p.starts_with("/api/v1/projects/{id}") {
            p = p.replacen("{id}", &f.id, 1);
        }
    }
    p = p
        .replace("{user_id}", &target.0.id)
        .replace("{token_id}", &target.1)
        .replace("{id}", &target.0.id)
        .replace("{handle}/{action}", &format!("{maker_handle}/close"))
        .replace("{name}", "matrix");
    let name = format!("Created {n}");
    let (body, form): (Option<Value>, Vec<(&str, String)>) = match path {
        "/api/v1/projects" => (Some(json!({"name": name})), vec![]),
        "/projects" => (None, vec![("name", name), ("visibility", "private".into())]),
        "/api/v1/projects/{id}" => (Some(json!({"name": "Renamed"})), vec![]),
        "/api/v1/projects/{id}/members/{user_id}" => (Some(json!({"role": "editor"})), vec![]),
        "/api/v1/projects/{id}/components" => (Some(json!({"name": name})), vec![]),
        "/projects/{slug}/components" => (None, vec![("name", name)]),
        "/projects/{slug}/members" => (None, vec![("email", target.0.email.clone()), ("role", "editor".into())]),
        "/api/v1/projects/{id}/specs/{*path}" if method == "PUT" => {
            (Some(json!({"content": "---\nid: x\n---\nmore\n", "base_version": 1, "session_id": "m"})), vec![])
        }
        "/api/v1/projects/{id}/specs/{*path}" if method == "DELETE" => {
            (Some(json!({"base_version": 1, "session_id": "m"})), vec![])
        }
        "/api/v1/projects/{id}/specs/{*path}" => (Some(json!({"content": "kept", "session_id": "m"})), vec![]),
        "/projects/{slug}/delete/{*path}" => {
            (None, vec![("action", "delete".into()), ("base_version", "1".into()), ("session_id", "m".into())])
        }
        "/projects/{slug}/edit/{*path}" => (
            None,
            vec![
                ("content", "---\nid: x\n---\nmore\n".into()),
                ("base_version", "1".into()),
                ("session_id", "m".into()),
            ],
        ),
        "/api/v1/admin/git/connections" => {
            (Some(crate::git_connections::new_connection(&format!("matrix-{n}"))), vec![])
        }
        "/api/v1/admin/git/connections/{name}" if method == "PATCH" => (Some(json!({"app_id": "7"})), vec![]),
        "/api/v1/projects/{id}/github-roles" if method == "PUT" => (Some(json!({})), vec![]),
        "/projects/{slug}/members/github" => (None, vec![("action", "sync".into())]),
        "/api/v1/projects/{id}/comments" => (Some(json!({"path": SPEC, "body": "And?"})), vec![]),
        "/api/v1/projects/{id}/comments/{comment_id}/replies" => (Some(json!({"body": "Because."})), vec![]),
        "/api/v1/projects/{id}/workflow/snapshots" => (Some(json!({"label": "v2"})), vec![]),
        "/admin/users/{id}/role" => (None, vec![("org_role", "member".into())]),
        _ => (None, vec![]),
    };
    // A spec route names the spec (PUT, the edit page) or its backups (POST).
    if path == "/api/v1/projects/{id}/specs/{*path}" && method == "POST" {
        p = p.replace("{*path}", &format!("{SPEC}/backups"));
    }
    p = p.replace("{*path}", SPEC);
    (p, body, form.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[tokio::test]
async fn every_changing_route_answers_every_caller_as_the_table_says() {
    let app = TestApp::start().await;
    let matrix = table("role-matrix");
    let other = table("role-matrix-other");
    let header: Vec<&str> = matrix[0][1..].iter().map(String::as_str).collect();
    assert_eq!(header, COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>(), "the table's columns");

    // Completeness: every changing route of the router is in one table, once; nothing else is.
    let mut routes = page_routes();
    let doc = api(Method::GET, &app.url("/api/v1/openapi.json"), None, None).await.json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut listed = BTreeSet::new();
    for row in matrix[1..].iter().chain(&other[1..]) {
        assert!(listed.insert(route_of(&row[0])), "{} is listed twice", row[0]);
    }
    let missing: Vec<_> = routes.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&routes).collect();
    assert!(missing.is_empty(), "changing routes docs/security.md does not list: {missing:?}");
    assert!(stale.is_empty(), "docs/security.md lists routes the router does not have: {stale:?}");

    // The callers, each with an API token and a signed-in browser.
    let mut actors = Vec::new();
    for (i, (label, org, project_role)) in COLUMNS.into_iter().enumerate() {
        let email = format!("actor{i}@example.com");
        let user = app.create_user(&email, PASSWORD, org).await;
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let token = arno::auth::tokens::create(&mut conn, &user.id, "matrix", None).await.unwrap().1;
        drop(conn);
        let mut browser = Browser::new(&app.url(""));
        let r = browser.login(&email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{label}: {}", r.text);
        let csrf = browser.session_csrf().await;
        actors.push(Actor { label, user, token, browser, csrf, project_role });
    }
    let admin_index = 0;
    let maker_handle = actors[3].user.handle.clone();

    let mut n = 0;
    let mut checked = 0;
    for (row_index, row) in matrix[1..].iter().enumerate() {
        let (method, path) = route_of(&row[0]);
        let in_project = path.contains("{id}/") || path.ends_with("projects/{id}") || path.contains("{slug}");
        let in_project = in_project && !path.starts_with("/api/v1/users") && !path.starts_with("/admin");
        let fixture =
            if in_project { Some(project(&app, &actors[admin_index], &actors, row_index).await) } else { None };
        // Refusals first (they change nothing), then the callers who may: one caller's action
        // cannot make another's decision.
        let mut order: Vec<usize> = (0..actors.len()).collect();
        order.sort_by_key(|&i| (row[i + 1] == "✓", i == admin_index));
        for i in order {
            let expected = row[i + 1].as_str();
            let target = someone(&app, &actors[admin_index], fixture.as_ref(), &mut n).await;
            let (url, body, form) = call_for(&method, &path, fixture.as_ref(), &target, &maker_handle, n);
            let actor = &mut actors[i];
            let before = app.refusals(&format!("actor_id = '{}'", actor.user.id)).await;
            let response = if url.starts_with("/api/") {
                let m = Method::from_bytes(method.as_bytes()).unwrap();
                api(m, &app.url(&url), Some(&actor.token), body).await
            } else {
                let mut fields: Vec<(&str, &str)> = vec![("csrf_token", actor.csrf.as_str())];
                fields.extend(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                actor.browser.post_form(&url, &fields).await
            };
            let refused = app.refusals(&format!("actor_id = '{}'", actor.user.id)).await > before;
            let got = match response.status {
                StatusCode::FORBIDDEN => "403",
                StatusCode::NOT_FOUND if refused => "404",
                StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => panic!(
                    "{} {url} as {}: {} (the test's call is wrong): {}",
                    method, actor.label, response.status, response.text
                ),
                s if s.is_success()
                    || s.is_redirection()
                    || s == StatusCode::CONFLICT
                    || s == StatusCode::NOT_FOUND =>
                {
                    "✓"
                }
                other => panic!("{method} {url} as {}: unexpected {other}: {}", actor.label, response.text),
            };
            assert_eq!(
                got, expected,
                "{method} {path} as {}: the table says {expected}, the server answered {} {}",
                actor.label, response.status, response.text
            );
            if got != "✓" {
                assert!(refused, "{method} {path} as {}: refused without an audit record", actor.label);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, (matrix.len() - 1) * COLUMNS.len());
}

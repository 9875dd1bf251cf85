//! The spec editor's save contract: versions, same-session fast-forward, conflicts, backups,
//! restore, purge to 20, racing saves, permissions.

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::support::{TestApp, api};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n";

struct Editor {
    app: TestApp,
    admin: String,
    _roots: tempfile::TempDir,
    maker: String,
    maker2: String,
    viewer: String,
    stranger: String,
}

async fn setup() -> Editor {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let repo = root.join("ds");
    std::fs::create_dir_all(repo.join("Design_system")).unwrap();
    std::fs::write(repo.join("Design_system/Button.md"), BUTTON).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    // A long shutdown timeout: a stream that kept the server from stopping would show.
    let app =
        TestApp::start_with(&[("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap()), ("ARNO_SHUTDOWN_TIMEOUT", "120s")])
            .await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let r = api(
        Method::POST,
        &app.url("/api/v1/projects"),
        Some(&admin),
        Some(json!({"name": "DS", "repository": {"provider": "local", "path": repo}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut tokens = vec![];
    for (email, role) in [
        ("m1@example.com", Some("maker")),
        ("m2@example.com", Some("maker")),
        ("v@example.com", Some("viewer")),
        ("s@example.com", None),
    ] {
        let (user, token) = app.user_with_token(email, OrgRole::Member).await;
        if let Some(role) = role {
            let r = api(
                Method::PUT,
                &app.url(&format!("/api/v1/projects/ds/members/{}", user.id)),
                Some(&admin),
                Some(json!({"role": role})),
            )
            .await;
            assert!(r.status.is_success());
        }
        tokens.push(token);
    }
    let [maker, maker2, viewer, stranger]: [String; 4] = tokens.try_into().unwrap();
    Editor { app, admin, _roots: roots, maker, maker2, viewer, stranger }
}

const FILE: &str = "/api/v1/projects/ds/specs/Design_system/Button.md";

async fn save(e: &Editor, token: &str, content: &str, base: i64, session: &str) -> crate::support::Page {
    api(
        Method::PUT,
        &e.app.url(FILE),
        Some(token),
        Some(json!({"content": content, "base_version": base, "session_id": session})),
    )
    .await
}

#[tokio::test]
async fn the_save_contract() {
    let e = setup().await;
    let r = api(Method::GET, &e.app.url(FILE), Some(&e.viewer), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.json()["version"].as_i64(), r.json()["content"].as_str()), (Some(1), Some(BUTTON)));

    let v2 = format!("{BUTTON}\nFirst edit.\n");
    let r = save(&e, &e.maker, &v2, 1, "tab-a").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.json()["version"].as_i64(), r.json()["fast_forward"].as_bool()), (Some(2), Some(false)));
    // The same tab saves again from its old base: fast-forwarded.
    let v3 = format!("{v2}Second edit.\n");
    let r = save(&e, &e.maker, &v3, 1, "tab-a").await;
    assert_eq!(
        (r.status, r.json()["version"].as_i64(), r.json()["fast_forward"].as_bool()),
        (StatusCode::OK, Some(3), Some(true))
    );

    // Another tab of the same user, and another user: conflicts, with both texts.
    let mine = format!("{BUTTON}\nOther tab.\n");
    let r = save(&e, &e.maker, &mine, 2, "tab-b").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let details = &r.json()["details"];
    assert_eq!(
        (details["current_version"].as_i64(), details["current_content"].as_str(), details["yours"].as_str()),
        (Some(3), Some(v3.as_str()), Some(mine.as_str()))
    );
    assert_eq!(r.json()["code"], "conflict");
    let r = save(&e, &e.maker2, "x", 1, "tab-a").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "same session id, different user");

    // "Discard mine": kept as a backup, not current.
    let r = api(
        Method::POST,
        &e.app.url(&format!("{FILE}/backups")),
        Some(&e.maker),
        Some(json!({"content": mine, "session_id": "tab-b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let backup = r.json()["version"].as_i64().unwrap();
    // "Save mine": explicit overwrite on the new base.
    let r = save(&e, &e.maker, &mine, 3, "tab-b").await;
    assert_eq!(r.json()["version"].as_i64(), Some(backup + 1));

    let list = api(Method::GET, &e.app.url(&format!("{FILE}/versions")), Some(&e.viewer), None).await.json();
    let kinds: Vec<(i64, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [(5, "save"), (4, "backup"), (3, "save"), (2, "save"), (1, "git")]);
    assert_eq!(list[1]["label"], "kept from a conflict");
    let old = api(Method::GET, &e.app.url(&format!("{FILE}/versions/2")), Some(&e.viewer), None).await.json();
    assert_eq!(old["content"], v2);

    // Restore version 2: a new version with its text.
    let r = api(
        Method::POST,
        &e.app.url(&format!("{FILE}/versions/2/restore")),
        Some(&e.maker),
        Some(json!({"session_id": "tab-a"})),
    )
    .await;
    assert_eq!((r.status, r.json()["version"].as_i64()), (StatusCode::CREATED, Some(6)));
    let now = api(Method::GET, &e.app.url(FILE), Some(&e.viewer), None).await.json();
    assert_eq!((now["version"].as_i64(), now["content"].as_str()), (Some(6), Some(v2.as_str())));

    // A broken spec is saved as a draft, with its problems.
    let r = save(&e, &e.maker, "# no frontmatter\n<!-- arno:props v1 -->\n", 6, "tab-a").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["problems"].as_array().unwrap().len() >= 2, "{}", r.text);

    // A full project refuses saves (413), and nothing is written.
    let r =
        api(Method::PATCH, &e.app.url("/api/v1/projects/ds"), Some(&e.admin), Some(json!({"quota_bytes": 1_048_576})))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let big = "x".repeat(1_100_000);
    let r = save(&e, &e.maker, &big, 7, "tab-a").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));
    assert_eq!(api(Method::GET, &e.app.url(FILE), Some(&e.viewer), None).await.json()["version"], 7);

    // Permissions and bad paths.
    assert_eq!(save(&e, &e.viewer, "x", 7, "t").await.status, StatusCode::FORBIDDEN);
    assert_eq!(save(&e, &e.stranger, "x", 7, "t").await.status, StatusCode::NOT_FOUND);
    let r = api(
        Method::PUT,
        &e.app.url("/api/v1/projects/ds/specs/README.md"),
        Some(&e.maker),
        Some(json!({"content": "x", "base_version": 0, "session_id": "t"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api(
        Method::PUT,
        &e.app.url("/api/v1/projects/ds/specs/Design_system/New.md"),
        Some(&e.maker),
        Some(json!({"content": BUTTON, "base_version": 0, "session_id": "t"})),
    )
    .await;
    assert_eq!((r.status, r.json()["version"].as_i64()), (StatusCode::OK, Some(1)), "{}", r.text);

    let (saves, conflicts): ((i64,), (i64,)) = (
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'spec.save' AND outcome = 'allowed'").fetch_one(e.app.state.db.pool()).await.unwrap(),
        sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'spec.save' AND outcome = 'denied' AND intent LIKE '%conflict%'").fetch_one(e.app.state.db.pool()).await.unwrap(),
    );
    assert_eq!((saves.0, conflicts.0), (5, 2));
}

#[tokio::test]
async fn history_keeps_twenty_versions_and_every_backup() {
    let e = setup().await;
    let mut base = 1;
    for i in 0..25 {
        if i % 5 == 0 {
            let r = api(
                Method::POST,
                &e.app.url(&format!("{FILE}/backups")),
                Some(&e.maker),
                Some(json!({"content": format!("backup {i}"), "session_id": "s"})),
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED);
        }
        let r = save(&e, &e.maker, &format!("{BUTTON}edit {i}\n"), base, "s").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        base = r.json()["version"].as_i64().unwrap();
    }
    let list = api(Method::GET, &e.app.url(&format!("{FILE}/versions")), Some(&e.maker), None).await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.iter().filter(|v| v["kind"] != "backup").count(), 20);
    assert_eq!(list.iter().filter(|v| v["kind"] == "backup").count(), 5);
    assert_eq!(list[0]["version"].as_i64(), Some(base));
}

#[tokio::test]
async fn racing_saves_on_one_base_exactly_one_wins() {
    let e = setup().await;
    // Two people creating the same new spec at once.
    let url = e.app.url("/api/v1/projects/ds/specs/Design_system/Fresh.md");
    let body = |who: &str| Some(json!({"content": format!("{BUTTON}{who}\n"), "base_version": 0, "session_id": who}));
    let (a, b) = tokio::join!(
        api(Method::PUT, &url, Some(&e.maker), body("a")),
        api(Method::PUT, &url, Some(&e.maker2), body("b"))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", a.text, b.text);

    for round in 0..5 {
        let current =
            api(Method::GET, &e.app.url(FILE), Some(&e.maker), None).await.json()["version"].as_i64().unwrap();
        let (text_a, text_b) = (format!("{BUTTON}A{round}\n"), format!("{BUTTON}B{round}\n"));
        let (session_a, session_b) = (format!("a{round}"), format!("b{round}"));
        let (a, b) = tokio::join!(
            save(&e, &e.maker, &text_a, current, &session_a),
            save(&e, &e.maker2, &text_b, current, &session_b),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "round {round}: {} / {}", a.text, b.text);
        let winner: &Value = &if a.status == StatusCode::OK { a.json() } else { b.json() };
        let now = api(Method::GET, &e.app.url(FILE), Some(&e.maker), None).await.json();
        assert_eq!(now["version"], winner["version"]);
    }
}

#[tokio::test]
async fn comment_threads_replies_resolution_and_gdpr() {
    let e = setup().await;
    let url = |p: &str| e.app.url(&format!("/api/v1/projects/ds/comments{p}"));
    let r = api(
        Method::POST,
        &url(""),
        Some(&e.maker),
        Some(json!({"path": "Design_system/Button.md", "body": "Should `size` default to md?", "version": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let thread = r.json();
    let tid = thread["id"].as_str().unwrap().to_owned();
    assert_eq!((thread["resolved"].as_bool(), thread["version"].as_i64()), (Some(false), Some(1)));
    let r = api(Method::POST, &url(&format!("/{tid}/replies")), Some(&e.maker2), Some(json!({"body": "Yes."}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["replies"][0]["body"], "Yes.");
    let reply_id = r.json()["replies"][0]["id"].as_str().unwrap().to_owned();
    // Resolving through a reply resolves the thread; reopening too.
    let r = api(Method::POST, &url(&format!("/{reply_id}/resolve")), Some(&e.maker2), None).await;
    assert_eq!((r.status, r.json()["resolved"].as_bool()), (StatusCode::OK, Some(true)));
    let r = api(Method::POST, &url(&format!("/{tid}/reopen")), Some(&e.maker), None).await;
    assert_eq!(r.json()["resolved"], false);

    // Viewers read but do not write; others do not see the project; bad input is refused.
    let list = api(Method::GET, &url("?path=Design_system/Button.md"), Some(&e.viewer), None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["replies"].as_array().unwrap().len(), 1);
    assert_eq!(api(Method::GET, &url("?path=Design_system/Other.md"), Some(&e.viewer), None).await.json(), json!([]));
    let r =
        api(Method::POST, &url(""), Some(&e.viewer), Some(json!({"path": "Design_system/Button.md", "body": "hi"})))
            .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(api(Method::GET, &url(""), Some(&e.stranger), None).await.status, StatusCode::NOT_FOUND);
    let r =
        api(Method::POST, &url(""), Some(&e.maker), Some(json!({"path": "Design_system/Button.md", "body": "   "})))
            .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api(Method::POST, &url("/nope/replies"), Some(&e.maker), Some(json!({"body": "x"}))).await.status,
        StatusCode::NOT_FOUND
    );

    // GDPR: the export lists comments and saved versions; erasure removes the comment text.
    save(&e, &e.maker2, &format!("{BUTTON}edit\n"), 1, "t").await;
    let export = api(Method::GET, &e.app.url("/api/v1/me/export"), Some(&e.maker2), None).await.json();
    assert_eq!(export["comments"][0]["body"], "Yes.");
    assert_eq!(export["spec_versions"][0]["version"], 2);
    let me = api(Method::GET, &e.app.url("/api/v1/me"), Some(&e.maker2), None).await.json();
    let r =
        api(Method::DELETE, &e.app.url(&format!("/api/v1/users/{}", me["id"].as_str().unwrap())), Some(&e.admin), None)
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let list = api(Method::GET, &url(""), Some(&e.viewer), None).await.json();
    assert_eq!(list[0]["replies"][0]["body"], "(removed)");
    assert_eq!(list[0]["replies"][0]["author"]["name"], "Deleted user");
    let versions = api(Method::GET, &e.app.url(&format!("{FILE}/versions")), Some(&e.viewer), None).await.json();
    assert_eq!(versions[0]["saved_by"], Value::Null, "versions stay, without who saved them");
}

/// Read server-sent events until one with `event: {kind}` arrives or `wait` passes.
pub(crate) async fn next_event(
    r: &mut reqwest::Response,
    buffer: &mut String,
    kind: &str,
    wait: std::time::Duration,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let event = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_default().to_owned();
            if event == kind {
                return serde_json::from_str(&data).ok();
            }
            continue;
        }
        let chunk = tokio::time::timeout_at(deadline, r.chunk()).await.ok()?.ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn open_pages_learn_of_saves_within_a_second() {
    let e = setup().await;
    let mut stream = crate::support::client()
        .get(e.app.url("/api/v1/projects/ds/events?path=Design_system/Button.md"))
        .bearer_auth(&e.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut buffer = String::new();
    // (On PostgreSQL the listener connects in the background: save until it is there.)
    let mut base = 1;
    let mut seen = None;
    for i in 0..10 {
        let other = api(
            Method::PUT,
            &e.app.url("/api/v1/projects/ds/specs/Design_system/Other.md"),
            Some(&e.maker),
            Some(json!({"content": "x", "base_version": if i == 0 { 0 } else { i }, "session_id": "o"})),
        )
        .await;
        assert!(other.status.is_success(), "{}", other.text);
        let r = save(&e, &e.maker, &format!("{BUTTON}{i}\n"), base, "live").await;
        base = r.json()["version"].as_i64().unwrap();
        if let Some(ev) = next_event(&mut stream, &mut buffer, "spec_saved", std::time::Duration::from_secs(1)).await {
            seen = Some((ev, base));
            break;
        }
    }
    let (event, version) = seen.expect("a save is announced to open pages");
    assert_eq!(event["path"], "Design_system/Button.md", "filtered to the page's spec");
    assert_eq!(event["version"].as_i64(), Some(version));
    assert_eq!(event["by_handle"], "m1");
    // Restores are announced too.
    api(
        Method::POST,
        &e.app.url(&format!("{FILE}/versions/1/restore")),
        Some(&e.maker),
        Some(json!({"session_id": "live"})),
    )
    .await;
    let ev = next_event(&mut stream, &mut buffer, "spec_saved", std::time::Duration::from_secs(2))
        .await
        .expect("restore announced");
    assert_eq!(ev["version"].as_i64(), Some(version + 1));
    let r = crate::support::client()
        .get(e.app.url("/api/v1/projects/ds/events"))
        .bearer_auth(&e.stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_editor_page_keeps_both_texts_in_a_conflict() {
    let e = setup().await;
    let mut b = crate::support::Browser::new(&e.app.base);
    e.app.create_user("page@example.com", "a long enough password", OrgRole::Member).await;
    let (user,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email = 'page@example.com'")
        .fetch_one(e.app.state.db.pool())
        .await
        .unwrap();
    api(
        Method::PUT,
        &e.app.url(&format!("/api/v1/projects/ds/members/{user}")),
        Some(&e.admin),
        Some(json!({"role": "maker"})),
    )
    .await;
    b.login("page@example.com", "a long enough password").await;
    let edit = "/projects/ds/edit/Design_system/Button.md?view=source";
    let tab_a = b.get(edit).await;
    let tab_b = b.get(edit).await;
    assert_eq!(tab_a.status, StatusCode::OK, "{}", tab_a.text);
    let field = |p: &crate::support::Page, name: &str| p.select_attr(&format!("input[name={name}]"), "value").unwrap();
    assert_ne!(field(&tab_a, "session_id"), field(&tab_b, "session_id"), "each tab is its own session");
    assert_eq!(tab_a.select_text("textarea#content").as_deref(), Some(BUTTON.trim()));

    let csrf = tab_a.csrf();
    let a_text = format!("{BUTTON}Line from A.\n");
    let r = b
        .post_form(
            edit,
            &[
                ("csrf_token", &csrf),
                ("content", &a_text),
                ("base_version", "1"),
                ("session_id", &field(&tab_a, "session_id")),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.select_text("#editor-message").as_deref(), Some("Saved as version 2."));

    let b_text = format!("{BUTTON}Line from B.\n");
    let r = b
        .post_form(
            edit,
            &[
                ("csrf_token", &csrf),
                ("content", &b_text),
                ("base_version", "1"),
                ("session_id", &field(&tab_b, "session_id")),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.select_text("#conflict-title").unwrap().contains("version 2"));
    assert_eq!(r.select_text("textarea#content").as_deref(), Some(b_text.trim()), "B's text is still there");
    assert_eq!(r.select_text("textarea#theirs").as_deref(), Some(a_text.trim()));
    assert!(r.text.contains("Line from A.") && r.select_text("#diff").unwrap().contains("Line from B."));
    assert_eq!(field(&r, "base_version"), "2", "the form now bases on their version");

    // Merge by hand: both lines, saved on the new base.
    let merged = format!("{BUTTON}Line from A.\nLine from B.\n");
    let r = b
        .post_form(
            edit,
            &[
                ("csrf_token", &csrf),
                ("content", &merged.replace('\n', "\r\n")),
                ("base_version", "2"),
                ("session_id", &field(&tab_b, "session_id")),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let now = api(Method::GET, &e.app.url(FILE), Some(&e.viewer), None).await.json();
    assert_eq!(
        (now["version"].as_i64(), now["content"].as_str()),
        (Some(3), Some(merged.as_str())),
        "textarea CRLF folded back to the file's LF"
    );

    // "Keep mine as a backup": the text goes to the history, the editor shows theirs.
    let stale = b
        .post_form(
            edit,
            &[
                ("csrf_token", &csrf),
                ("content", "my stale text"),
                ("base_version", "1"),
                ("session_id", "tab-c"),
                ("action", "discard_mine"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert!(stale.select_text("#editor-message").unwrap().contains("kept as backup version 4"));
    assert_eq!(stale.select_text("textarea#content").as_deref(), Some(merged.trim()));
    let list = api(Method::GET, &e.app.url(&format!("{FILE}/versions")), Some(&e.viewer), None).await.json();
    assert_eq!(list[0]["kind"], "backup");

    // The component page links to the editor for Makers only.
    let (cid,): (String,) =
        sqlx::query_as("SELECT component_id FROM components WHERE file_path = 'Design_system/Button.md'")
            .fetch_one(e.app.state.db.pool())
            .await
            .unwrap();
    let page = b.get(&format!("/projects/ds/components/{cid}")).await;
    assert_eq!(page.select_attr("#edit-link", "href").as_deref(), edit.strip_suffix("?view=source"));
}

#[tokio::test]
async fn open_event_streams_end_at_shutdown() {
    let e = setup().await;
    let mut stream = crate::support::client()
        .get(e.app.url("/api/v1/projects/ds/events"))
        .bearer_auth(&e.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let Editor { app, .. } = e;
    // The graceful stop completes even with a stream open, and the stream ends cleanly.
    tokio::time::timeout(std::time::Duration::from_secs(30), app.stop()).await.expect("the server stops");
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stream ends");
    assert!(end.is_ok(), "{end:?}");
}

#[tokio::test]
async fn a_version_preview_is_sanitized_html_with_its_problems() {
    let e = setup().await;
    let text = format!("{BUTTON}\nSome **bold** text.<script>alert(1)</script>\n\n<!-- arno:props v1 -->\n| nope |\n");
    let saved = save(&e, &e.maker, &text, 1, "s").await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let v = saved.json()["version"].as_i64().unwrap();
    let r = api(Method::GET, &e.app.url(&format!("{FILE}/versions/{v}/preview")), Some(&e.viewer), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    let html = body["html"].as_str().unwrap();
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(!html.contains("<script") && !html.contains("alert(1)</script>"), "{html}");
    assert!(!body["problems"].as_array().unwrap().is_empty(), "{body}");
    let r = api(Method::GET, &e.app.url(&format!("{FILE}/versions/999/preview")), Some(&e.viewer), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api(Method::GET, &e.app.url(&format!("{FILE}/versions/1/preview")), Some(&e.stranger), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

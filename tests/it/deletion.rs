//! Deleting a component (docs/projects.md): refused to weaker roles and malformed requests, a
//! deletion that leaves instances without a component lists them and needs a confirmation
//! (recorded in the audit), it is a version like a save (conflicts, history, undo), its author
//! sees it as deleted and others the default branch; written back, the file leaves the session
//! branch, and after the merge the component is gone for everybody and its name free again.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::git::git;
use crate::impact::{button, seed};
use crate::support::{Browser, api};
use crate::workflow::workflow;
use crate::writeback::{wait_for, world};

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|c| c["name"] == name)
}

#[tokio::test]
async fn deleting_a_placed_component_is_confirmed_audited_and_undoable() {
    let w = workflow(&[]).await;
    seed(&w).await;
    let spec = |p: &str| w.app.url(&format!("/api/v1/projects/flows/specs/{p}"));
    let url = spec("Design_system/Button.md");
    let version = api(Method::GET, &url, Some(&w.maker), None).await.json()["version"].as_i64().unwrap();
    let body = |base: i64| json!({"base_version": base, "session_id": "d1"});

    // Who may not, and what is malformed: nothing is written.
    for token in [&w.viewer, &w.editor] {
        let r = api(Method::DELETE, &url, Some(token), Some(body(version))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert!(w.app.refusals("action = 'spec.delete'").await >= 2, "refusals are audited");
    let (_, stranger) = w.app.user_with_token("stranger@example.com", arno::auth::OrgRole::Member).await;
    assert_eq!(api(Method::DELETE, &url, Some(&stranger), Some(body(version))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api(Method::DELETE, &url, None, Some(body(version))).await.status, StatusCode::UNAUTHORIZED);
    let bad = [
        (url.clone(), json!({"base_version": version, "session_id": "d1", "evil": true})),
        (url.clone(), json!({"session_id": "d1"})),
        (url.clone(), json!({"base_version": version, "session_id": ""})),
        (url.clone(), json!({"base_version": version, "session_id": "x".repeat(101)})),
        (spec("Design_system/Button.md/versions"), body(version)),
        (spec(".git/x.md"), body(version)),
        (spec("Design_system/Button.txt"), body(version)),
    ];
    for (u, b) in bad {
        let r = api(Method::DELETE, &u, Some(&w.maker), Some(b.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{u} {b}: {}", r.text);
    }
    let r = api(Method::DELETE, &spec("Design_system/Nope.md"), Some(&w.maker), Some(body(1))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The fields in the query (for clients that send no body with DELETE): malformed or doubled.
    for q in ["", "?session_id=d1", "?base_version=x&session_id=d1", "?base_version=1&confirmed_impact=yes"] {
        let r = api(Method::DELETE, &format!("{url}{q}"), Some(&w.maker), None).await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("validation")),
            "{q}: {}",
            r.text
        );
    }
    let r = api(Method::DELETE, &format!("{url}?base_version={version}"), Some(&w.maker), Some(body(version))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "both a body and a query: {}", r.text);

    // Placed on four screens: refused until confirmed, listing every instance and edge.
    let r = api(Method::DELETE, &url, Some(&w.maker), Some(body(version))).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("impact")), "{}", r.text);
    let impact = &r.json()["details"]["impact"];
    assert_eq!(impact["counts"], json!({"screens": 4, "instances": 4, "values": 4, "edges": 2}));
    let removed: Vec<&str> = impact["changes"][0]["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["screen_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        (impact["changes"][0]["kind"].as_str(), removed),
        (Some("component_removed"), vec!["Cart", "Done", "Home", "Pay"])
    );
    let now = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!((now["version"].as_i64(), &now["deleted"]), (Some(version), &json!(false)), "nothing written");

    // The same answer with the fields in the query.
    let r = api(Method::DELETE, &format!("{url}?base_version={version}&session_id=d1"), Some(&w.maker), None).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("impact")), "{}", r.text);
    assert_eq!(r.json()["details"]["impact"], *impact);

    // A stale base is a conflict; then the confirmed deletion, audited with its counts.
    let stale = json!({"base_version": version - 1, "session_id": "other", "confirmed_impact": true});
    let r = api(Method::DELETE, &url, Some(&w.maker), Some(stale)).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{}", r.text);
    let confirmed = json!({"base_version": version, "session_id": "d1", "confirmed_impact": true});
    let r = api(Method::DELETE, &url, Some(&w.maker), Some(confirmed.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.json()["deleted"].as_bool(), r.json()["version"].as_i64()), (Some(true), Some(version + 1)));
    let (intent,): (String,) = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'spec.delete' AND outcome = 'allowed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    let intent: Value = serde_json::from_str(&intent).unwrap();
    assert_eq!(intent["impact"], json!({"confirmed": true, "screens": 4, "instances": 4, "values": 4, "edges": 2}));
    let now = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!((&now["deleted"], now["content"].as_str()), (&json!(true), Some("")));
    let history = api(Method::GET, &spec("Design_system/Button.md/versions"), Some(&w.maker), None).await.json();
    assert_eq!((&history[0]["deleted"], history[0]["label"].as_str()), (&json!(true), Some("deleted")));
    // The deleter's personal-data export says which of their versions are deletions.
    let export = api(Method::GET, &w.app.url("/api/v1/me/export"), Some(&w.maker), None).await.json();
    let mine: Vec<(i64, bool)> = export["spec_versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["path"] == "Design_system/Button.md")
        .map(|v| (v["version"].as_i64().unwrap(), v["deleted"].as_bool().unwrap()))
        .collect();
    assert!(mine.contains(&(version + 1, true)), "{mine:?}");
    assert!(mine.iter().all(|&(v, d)| d == (v == version + 1)), "{mine:?}");
    // Deleting again: a conflict with the deletion.
    let again = json!({"base_version": version + 1, "session_id": "d1", "confirmed_impact": true});
    assert_eq!(api(Method::DELETE, &url, Some(&w.maker), Some(again)).await.status, StatusCode::CONFLICT);
    // Restoring the deletion itself is refused (restore a version with text).
    let r = api(
        Method::POST,
        &spec(&format!("Design_system/Button.md/versions/{}/restore", version + 1)),
        Some(&w.maker),
        Some(json!({"session_id": "d1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // Its author sees it deleted (not offered to place); others the default branch, marked.
    let list = |token: &str| {
        let u = w.app.url("/api/v1/projects/flows/components");
        let token = token.to_owned();
        async move { api(Method::GET, &u, Some(&token), None).await.json() }
    };
    let mine = list(&w.maker).await;
    let b = named(&mine, "Button").unwrap_or_else(|| panic!("{mine}"));
    assert_eq!((b["source"].as_str(), b["mark"].as_str()), (Some("yours"), Some("deleted")));
    let flow = api(Method::GET, &w.app.url("/api/v1/projects/flows/workflow/components"), Some(&w.maker), None).await;
    assert_eq!(named(&flow.json(), "Button").unwrap()["placeable"], false);
    let theirs = list(&w.viewer).await;
    let b = named(&theirs, "Button").unwrap();
    assert_eq!((b["source"].as_str(), b["unmerged_by"][0]["handle"].as_str()), (Some("default_branch"), Some("m1")));
    let flow = api(Method::GET, &w.app.url("/api/v1/projects/flows/workflow/components"), Some(&w.maker2), None).await;
    assert_eq!(named(&flow.json(), "Button").unwrap()["placeable"], true);

    // The project page marks it and undoes it.
    let mut m1 = Browser::new(&w.app.base);
    m1.login("m1@example.com", "a long enough password").await;
    let page = m1.get("/projects/flows").await;
    assert!(page.select_text("#components del").is_some_and(|t| t.contains("Button")), "{}", page.text);
    assert!(page.select_text("#components").unwrap().contains("deleted by you"));
    let editor = m1.get("/projects/flows/edit/Design_system/Button.md").await;
    assert!(editor.select_text("#deleted").is_some() && editor.select_text("#editor").is_none());
    let csrf = page.csrf();
    let r = m1
        .post_form(
            "/projects/flows/delete/Design_system/Button.md",
            &[("csrf_token", csrf.as_str()), ("action", "undo")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let back = r.header("location").unwrap();
    assert_eq!(back, "/projects/flows?restored=Design_system%2FButton.md");
    let r = m1.get(&back).await;
    assert!(r.select_text("#scan-report").is_some_and(|t| t.contains("is in the list again")), "{}", r.text);
    let now = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!(
        (&now["deleted"], now["content"].as_str()),
        (&json!(false), Some(button("string", true, true).as_str()))
    );
    let r = m1
        .post_form(
            "/projects/flows/delete/Design_system/Button.md",
            &[("csrf_token", csrf.as_str()), ("action", "undo")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "nothing to undo now");
    // Without the CSRF token, or as a Viewer: refused.
    let r = m1.post_form("/projects/flows/delete/Design_system/Button.md", &[("action", "undo")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut viewer = Browser::new(&w.app.base);
    viewer.login("v@example.com", "a long enough password").await;
    assert_eq!(viewer.get("/projects/flows/delete/Design_system/Button.md").await.status, StatusCode::FORBIDDEN);
    let vcsrf = viewer.session_csrf().await;
    let fields =
        [("csrf_token", vcsrf.as_str()), ("action", "delete"), ("base_version", "1"), ("confirm_impact", "true")];
    assert_eq!(
        viewer.post_form("/projects/flows/delete/Design_system/Button.md", &fields).await.status,
        StatusCode::FORBIDDEN
    );

    // The page asks first: the list, then "Delete anyway".
    let ask = m1.get("/projects/flows/delete/Design_system/Button.md").await;
    assert_eq!(ask.status, StatusCode::OK);
    let items = ask.select_text("#impact-list").unwrap();
    for screen in ["Home", "Cart", "Pay", "Done"] {
        assert!(items.contains(screen), "{items}");
    }
    assert!(items.contains("onClick"), "the edges from its events: {items}");
    assert_eq!(ask.select_text("#delete").as_deref().map(str::trim), Some("Delete anyway"));
    let base = ask.select_attr("input[name=base_version]", "value").unwrap();
    let session = ask.select_attr("input[name=session_id]", "value").unwrap();
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("action", "delete"),
        ("base_version", base.as_str()),
        ("session_id", session.as_str()),
        ("confirm_impact", "true"),
    ];
    // A link that says it was deleted while it is not reports nothing.
    let forged = m1.get("/projects/flows?deleted=Design_system%2FButton.md").await;
    assert!(!forged.text.contains("Deleted Design_system"), "{}", forged.text);
    let r = m1.post_form("/projects/flows/delete/Design_system/Button.md", &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "a reload does not post again: {}", r.text);
    let r = m1.get(&r.header("location").unwrap()).await;
    assert!(r.select_text("#components").unwrap().contains("deleted by you"));
    assert!(r.text.contains("Deleted Design_system/Button.md."), "{}", r.text);
    let forged = m1.get("/projects/flows?restored=Design_system%2FButton.md").await;
    assert!(!forged.text.contains("in the list again"), "{}", forged.text);
    // The same form again (a double submit): deleted already, nothing new written.
    let before = api(Method::GET, &spec("Design_system/Button.md/versions"), Some(&w.maker), None).await.json();
    let r = m1.post_form("/projects/flows/delete/Design_system/Button.md", &fields).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let after = api(Method::GET, &spec("Design_system/Button.md/versions"), Some(&w.maker), None).await.json();
    assert_eq!(before, after);

    // Another Maker's editor: the deletion is someone else's (no Undo for them; versions stay).
    let mut m2 = Browser::new(&w.app.base);
    m2.login("m2@example.com", "a long enough password").await;
    let theirs = m2.get("/projects/flows/edit/Design_system/Button.md").await;
    assert!(theirs.select_text("#deleted").unwrap().contains("Someone else deleted it"), "{}", theirs.text);
    assert!(theirs.select_text("#undo-delete").is_none());
    // Saving over the deletion from an older version: the conflict view, with what was typed.
    let deletion = after[0]["version"].as_i64().unwrap();
    let m2csrf = theirs.csrf();
    let stale = (deletion - 1).to_string();
    let fields = [
        ("csrf_token", m2csrf.as_str()),
        ("content", "typed while it was deleted"),
        ("base_version", stale.as_str()),
        ("session_id", "m2-tab"),
        ("action", "save"),
    ];
    let r = m2.post_form("/projects/flows/edit/Design_system/Button.md", &fields).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.select_text("#conflict-title").unwrap().contains("deleted this spec"), "{}", r.text);
    assert!(r.select_text("#content").unwrap().contains("typed while it was deleted"), "nothing typed is lost");
}

#[tokio::test]
async fn a_deletion_leaves_the_branch_and_after_merge_the_name_is_free() {
    let w = world(&[]).await;
    let url = w.app.url("/api/v1/projects/ds/specs/Design_system/Card.md");
    let r = api(Method::DELETE, &url, Some(&w.maker), Some(json!({"base_version": 1, "session_id": "d"}))).await;
    assert_eq!(r.status, StatusCode::OK, "no screen uses it: no confirmation needed: {}", r.text);
    wait_for(&w, "m1", "committed").await;
    let tree = |rev: &str| git(&w.bare, &["ls-tree", "--name-only", rev, "Design_system/"]);
    assert!(!tree("arno/m1").contains("Card.md") && tree("main").contains("Card.md"), "{}", tree("arno/m1"));
    let subject = git(&w.bare, &["log", "-1", "--format=%s", "arno/m1"]);
    assert_eq!(subject.trim(), "Arno: delete Design_system/Card.md");

    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/changes/m1/merge"),
        Some(&w.admin),
        Some(json!({"mode": "fast_forward"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!tree("main").contains("Card.md"));
    for token in [&w.maker, &w.maker2, &w.viewer] {
        let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/components"), Some(token), None).await.json();
        assert!(named(&list, "Card").is_none(), "{list}");
        assert!(
            list.as_array().unwrap().iter().all(|c| c["mark"].is_null() && c["unmerged_by"] == json!([])),
            "{list}"
        );
    }
    // A spec only read is not deleted by a push elsewhere; a file that comes back on the default
    // branch (a revert) is followed: no longer deleted, with git's text, for everybody.
    git(&w.clone, &["checkout", "-q", "main"]);
    git(&w.clone, &["pull", "-q", "origin", "main"]);
    let back = "---\nid: 1c6f2d2f-7d2b-4a55-8e8f-1d2e1e7e2b02\nname: Card\n---\n# Card\n\nReverted.\n";
    std::fs::write(w.clone.join("Design_system/Card.md"), back).unwrap();
    git(&w.clone, &["add", "."]);
    git(&w.clone, &["commit", "-q", "-m", "bring Card back"]);
    git(&w.clone, &["push", "-q", "origin", "main"]);
    arno::projects::changes::watch_default_branches(&w.app.state).await;
    let card = api(Method::GET, &url, Some(&w.maker), None).await.json();
    assert_eq!((&card["deleted"], card["content"].as_str()), (&json!(false), Some(back)), "{card}");
    for token in [&w.maker, &w.viewer] {
        let list = api(Method::GET, &w.app.url("/api/v1/projects/ds/components"), Some(token), None).await.json();
        let c = named(&list, "Card").unwrap_or_else(|| panic!("{list}"));
        assert_eq!(
            (c["source"].as_str(), &c["mark"], &c["unmerged_by"]),
            (Some("default_branch"), &Value::Null, &json!([]))
        );
    }
    // Deleted again and merged: gone again.
    let v = card["version"].as_i64().unwrap();
    let r = api(Method::DELETE, &url, Some(&w.maker), Some(json!({"base_version": v, "session_id": "d2"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for(&w, "m1", "committed").await;
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/changes/m1/merge"),
        Some(&w.admin),
        Some(json!({"mode": "merge_commit"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!tree("main").contains("Card.md"));

    // The name and the path can be used again: the next version of the file.
    let r =
        api(Method::POST, &w.app.url("/api/v1/projects/ds/components"), Some(&w.maker2), Some(json!({"name": "Card"})))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created = r.json();
    assert_eq!(created["path"], "Design_system/Card.md");
    assert!(created["version"].as_i64().unwrap() > v + 1, "{created}");
}

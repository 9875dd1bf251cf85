//! Pre-edit impact analysis: a prop used on three screens and an event with two edges; retyping,
//! removing and the API's answer, who may ask, and the counts in the save's audit intent.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yrs::{Array, ArrayPrelim, Map, MapPrelim, ReadTxn, Transact};

use crate::support::api;
use crate::workflow::{Workflow, workflow};

pub const COMPONENT: &str = "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01";
pub const LABEL: &str = "6f1c7d2e-1111-4a2b-8c3d-000000000001";
pub const SIZE: &str = "6f1c7d2e-1111-4a2b-8c3d-000000000002";
pub const CLICK: &str = "7a000000-0000-4000-8000-000000000001";

/// The Button spec with `size` typed `size_type`, and with or without its `onClick` event.
pub fn button(size_type: &str, label: bool, click: bool) -> String {
    let mut text = format!(
        "---\nid: {COMPONENT}\nname: Button\n---\n# Button\n\n<!-- arno:props v1 -->\n| id | name | type | default | textEditable |\n|---|---|---|---|---|\n"
    );
    if label {
        text.push_str(&format!("| {LABEL} | label | string | \"Buy\" | true |\n"));
    }
    text.push_str(&format!("| {SIZE} | size | {} |  | false |\n<!-- /arno:props -->\n", size_type.replace('|', "\\|")));
    if click {
        text.push_str(&format!(
            "\n<!-- arno:events v1 -->\n| id | name |\n|---|---|\n| {CLICK} | onClick |\n<!-- /arno:events -->\n"
        ));
    }
    text
}

/// Four screens: Home (size sm, label set, onClick → Cart), Cart (size lg, onClick → Pay),
/// Pay (size huge, nested in a card), Done (a button with nothing set).
pub async fn seed(w: &Workflow) {
    let path = "Design_system/Button.md";
    let r = api(Method::GET, &w.app.url(&format!("/api/v1/projects/flows/specs/{path}")), Some(&w.maker), None).await;
    let version = r.json()["version"].as_i64().unwrap();
    let body = json!({"content": button("string", true, true), "base_version": version, "session_id": "seed"});
    let r =
        api(Method::PUT, &w.app.url(&format!("/api/v1/projects/flows/specs/{path}")), Some(&w.maker), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let doc = arno::workflow::filter::new_doc();
    let screens = doc.get_or_insert_map("screens");
    let edges = doc.get_or_insert_array("edges");
    {
        let mut txn = doc.transact_mut();
        let button = |txn: &mut yrs::TransactionMut, map: &yrs::MapRef, id: &str, values: &[(&str, &str)]| {
            map.insert(txn, "id", id);
            map.insert(txn, "component_id", COMPONENT);
            let props = map.insert(txn, "props", MapPrelim::default());
            for (k, v) in values {
                props.insert(txn, *k, *v);
            }
            map.insert(txn, "children", ArrayPrelim::default());
        };
        for (id, name, x) in
            [("home", "Home", 0.0), ("cart", "Cart", 300.0), ("pay", "Pay", 600.0), ("done", "Done", 900.0)]
        {
            let screen = screens.insert(&mut txn, id, MapPrelim::default());
            screen.insert(&mut txn, "id", id);
            screen.insert(&mut txn, "name", name);
            screen.insert(&mut txn, "x", x);
            screen.insert(&mut txn, "y", 0.0);
            let root = screen.insert(&mut txn, "root", MapPrelim::default());
            match id {
                "home" => button(&mut txn, &root, "i-home", &[(SIZE, "sm"), (LABEL, "Start")]),
                "cart" => button(&mut txn, &root, "i-cart", &[(SIZE, "lg")]),
                "pay" => {
                    root.insert(&mut txn, "id", "i-card");
                    root.insert(&mut txn, "component_id", "some-card");
                    root.insert(&mut txn, "props", MapPrelim::default());
                    let children = root.insert(&mut txn, "children", ArrayPrelim::default());
                    let child = children.push_back(&mut txn, MapPrelim::default());
                    button(&mut txn, &child, "i-pay", &[(SIZE, "huge")]);
                }
                _ => button(&mut txn, &root, "i-done", &[]),
            }
        }
        for (id, from_screen, from, to) in [("e1", "home", "i-home", "cart"), ("e2", "cart", "i-cart", "pay")] {
            let edge = edges.push_back(&mut txn, MapPrelim::default());
            edge.insert(&mut txn, "id", id);
            let f = edge.insert(&mut txn, "from", MapPrelim::default());
            f.insert(&mut txn, "screen_id", from_screen);
            f.insert(&mut txn, "instance_id", from);
            f.insert(&mut txn, "event_id", CLICK);
            let t = edge.insert(&mut txn, "to", MapPrelim::default());
            t.insert(&mut txn, "screen_id", to);
            edge.insert(&mut txn, "action", "navigate");
        }
    }
    let update = doc.transact().encode_state_as_update_v1(&yrs::StateVector::default());
    let room = w.app.state.rooms.open(&w.project).await.unwrap();
    let mut conn = w.app.state.db.pool().acquire().await.unwrap();
    let maker = arno::auth::users::find_by_email(&mut conn, "m1@example.com").await.unwrap().unwrap();
    w.app.state.rooms.submit_server_update(&room, update, &maker.id).await.unwrap();
}

pub async fn impact(w: &Workflow, token: &str, content: &str) -> crate::support::Page {
    let url = w.app.url("/api/v1/projects/flows/specs/Design_system/Button.md/impact");
    api(Method::POST, &url, Some(token), Some(json!({"content": content}))).await
}

fn affected(change: &Value) -> Vec<(String, String)> {
    change["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let what = a.get("value").or(a.get("edge_id")).and_then(Value::as_str).unwrap_or_default();
            (a["screen_name"].as_str().unwrap().to_owned(), what.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn retyping_and_removing_list_exactly_what_breaks() {
    let w = workflow(&[]).await;
    seed(&w).await;

    // Unchanged: usage of each prop and event, nothing to confirm.
    let r = impact(&w, &w.maker, &button("string", true, true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let same = r.json();
    assert_eq!(same["instances"], 4);
    assert_eq!(same["needs_confirmation"], false);
    let usage: Vec<(String, u64, u64, u64)> = same["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().into(),
                u["instances"].as_u64().unwrap(),
                u["screens"].as_u64().unwrap(),
                u["edges"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(usage, [("label".into(), 1, 1, 0), ("size".into(), 3, 3, 0), ("onClick".into(), 2, 2, 2)]);

    // Retype size to 'sm' | 'md' and remove onClick: lg and huge no longer fit; both edges go.
    let r = impact(&w, &w.maker, &button("'sm' | 'md'", true, false)).await;
    let i = r.json();
    let changes = i["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{i:#}");
    assert_eq!((changes[0]["kind"].as_str(), changes[0]["name"].as_str()), (Some("prop_retyped"), Some("size")));
    assert_eq!(affected(&changes[0]), [("Cart".into(), "lg".into()), ("Pay".into(), "huge".into())]);
    assert_eq!(changes[1]["kind"], "event_removed");
    assert_eq!(affected(&changes[1]), [("Home".into(), "e1".into()), ("Cart".into(), "e2".into())]);
    assert_eq!(changes[1]["affected"][0]["to_screen_name"], "Cart");
    assert_eq!(i["counts"], json!({"screens": 3, "instances": 3, "values": 2, "edges": 2}));
    assert_eq!(i["needs_confirmation"], true);

    // Removing label lists the one instance that sets it.
    let i = impact(&w, &w.maker, &button("string", false, true)).await.json();
    assert_eq!(i["changes"][0]["kind"], "prop_removed");
    assert_eq!(affected(&i["changes"][0]), [("Home".into(), "Start".into())]);

    // Saving it anyway, confirmed: the audit intent has the counts.
    let path = "/api/v1/projects/flows/specs/Design_system/Button.md";
    let current = api(Method::GET, &w.app.url(path), Some(&w.maker), None).await.json();
    let body = json!({"content": button("'sm' | 'md'", true, false), "base_version": current["version"],
        "session_id": "s", "confirmed_impact": true});
    let r = api(Method::PUT, &w.app.url(path), Some(&w.maker), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (intent,): (String,) = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'spec.save' AND outcome = 'allowed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    let intent: Value = serde_json::from_str(&intent).unwrap();
    assert_eq!(
        intent["impact"],
        json!({"confirmed": true, "changes": 2, "screens": 3, "instances": 3, "values": 2, "edges": 2}),
        "{intent}"
    );
    // A save that breaks nothing records no impact.
    let body = json!({"content": button("'sm' | 'md'", true, false) + "\nMore prose.\n",
        "base_version": r.json()["version"], "session_id": "s"});
    assert_eq!(api(Method::PUT, &w.app.url(path), Some(&w.maker), Some(body)).await.status, StatusCode::OK);
    let (intent,): (String,) = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'spec.save' AND outcome = 'allowed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert!(!intent.contains("impact"), "{intent}");
}

#[tokio::test]
async fn who_may_ask_and_what_is_refused() {
    let w = workflow(&[]).await;
    seed(&w).await;
    // Reading: anyone who may view the project (nothing is saved).
    for token in [&w.viewer, &w.editor, &w.maker] {
        assert_eq!(impact(&w, token, &button("string", true, true)).await.status, StatusCode::OK);
    }
    let (_, stranger) = w.app.user_with_token("stranger@example.com", arno::auth::OrgRole::Member).await;
    assert_eq!(impact(&w, &stranger, "x").await.status, StatusCode::NOT_FOUND);
    assert!(w.app.refusals("action = 'project.view'").await >= 1, "the refusal is audited");
    let url = |p: &str| w.app.url(&format!("/api/v1/projects/flows/specs/{p}"));
    // A spec that does not exist, a path outside the spec folder, missing or extra fields.
    let r =
        api(Method::POST, &url("Design_system/Nope.md/impact"), Some(&w.maker), Some(json!({"content": "x"}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api(Method::POST, &url(".git/x.md/impact"), Some(&w.maker), Some(json!({"content": "x"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api(Method::POST, &url("Design_system/Button.md/impact"), Some(&w.maker), Some(json!({}))).await;
    assert_eq!(
        (r.status, r.json()["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("content")),
        "{}",
        r.text
    );
    let r = api(
        Method::POST,
        &url("Design_system/Button.md/impact"),
        Some(&w.maker),
        Some(json!({"content": "x", "session_id": "s"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api(
        Method::POST,
        &url("Design_system/Button.md/impact"),
        Some(&w.maker),
        Some(json!({"content": "x", "evil": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Garbage text is a spec without props: everything it had is "removed", nothing panics.
    let r = impact(&w, &w.maker, "\u{feff}---\n\0<!-- arno:props v1 -->\n|").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["changes"].as_array().unwrap().len(), 3);
    // Backups and restores still need their session.
    let r =
        api(Method::POST, &url("Design_system/Button.md/backups"), Some(&w.maker), Some(json!({"content": "x"}))).await;
    assert_eq!((r.status, r.json()["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("session_id")));
}

/// Set `name` in a form's fields (added when absent).
fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some(f) => f.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

async fn post(b: &mut crate::support::Browser, fields: &[(String, String)], action: &str) -> crate::support::Page {
    let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("action", action));
    b.post_form("/projects/flows/edit/Design_system/Button.md", &all).await
}

async fn saved_text(w: &Workflow) -> (i64, String) {
    let r = api(Method::GET, &w.app.url("/api/v1/projects/flows/specs/Design_system/Button.md"), Some(&w.maker), None)
        .await;
    (r.json()["version"].as_i64().unwrap(), r.json()["content"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_structured_editor_edits_rows_warns_before_breaking_screens_and_keeps_history() {
    let w = workflow(&[]).await;
    seed(&w).await;
    let mut b = crate::support::Browser::new(&w.app.base);
    b.login("m2@example.com", "a long enough password").await;
    let page = b.get("/projects/flows/edit/Design_system/Button.md").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.select_attr("#prop-1-name", "value").as_deref(), Some("size"));
    assert_eq!(page.select_text("#prop-1-usage").as_deref(), Some("Set on 3 instances on 3 screens"));
    assert_eq!(page.select_text("#event-0-usage").as_deref(), Some("2 edges start on 2 screens"));
    assert_eq!(page.select_attr("#prop-0-editable", "checked").as_deref(), Some(""), "label is text-editable");
    let (v0, before) = saved_text(&w).await;

    // Add a row: nothing is saved, the new row's name has the focus.
    let mut fields = page.form_fields("#editor");
    let added = post(&mut b, &fields, "add_prop").await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert!(added.select_attr("#prop-2-name", "autofocus").is_some());
    assert_eq!(saved_text(&w).await.0, v0);

    // Inline validation: an empty and a duplicate name, named per field; nothing saved.
    fields = added.form_fields("#editor");
    set(&mut fields, "prop.2.name", "size");
    let bad = post(&mut b, &fields, "save").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.select_attr("#prop-2-name", "aria-invalid").as_deref(), Some("true"));
    assert!(bad.select_text("#field-problems").unwrap().contains("another prop is named size"));
    assert_eq!(saved_text(&w).await.0, v0);

    // Save a new yes/no prop: only the props block changes; the events block keeps its bytes.
    fields = bad.form_fields("#editor");
    set(&mut fields, "prop.2.name", "disabled");
    set(&mut fields, "prop.2.kind", "yesno");
    set(&mut fields, "prop.2.default", "false");
    let ok = post(&mut b, &fields, "save").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let (v1, text) = saved_text(&w).await;
    assert_eq!(v1, v0 + 1);
    let events = |t: &str| t[t.find("<!-- arno:events").unwrap()..].to_owned();
    assert_eq!(events(&text), events(&before));
    assert!(text.contains("| disabled | boolean | false | false |"), "{text}");
    assert!(ok.select_text("#editor-message").unwrap().contains("Saved as version"));

    // Retyping size to sm/md breaks Cart (lg) and Pay (huge): listed, not saved until confirmed.
    fields = ok.form_fields("#editor");
    set(&mut fields, "prop.1.kind", "oneof");
    set(&mut fields, "prop.1.options", "sm, md");
    let warned = post(&mut b, &fields, "save").await;
    assert_eq!(warned.status, StatusCode::CONFLICT, "{}", warned.text);
    let list = warned.select_text("#impact-list").unwrap();
    assert!(list.contains("Cart: stores lg") && list.contains("Pay: stores huge") && !list.contains("Home"), "{list}");
    assert_eq!(saved_text(&w).await.0, v1);
    // The same analysis as the API's.
    let proposed = {
        let spec = arno::specs::SpecFile::parse(text.as_str());
        let mut draft = arno::specs::structured::view(&spec);
        draft.props[1].kind = "oneof".into();
        draft.props[1].options = "sm, md".into();
        arno::specs::structured::apply(&spec, &draft).unwrap()
    };
    let api_view = impact(&w, &w.maker, &proposed).await.json();
    assert_eq!(api_view["counts"], json!({"screens": 2, "instances": 2, "values": 2, "edges": 0}));
    let confirmed = post(&mut b, &warned.form_fields("#editor"), "save_confirmed").await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    let (v2, text) = saved_text(&w).await;
    assert_eq!((v2, text), (v1 + 1, proposed));
    let (intent,): (String,) =
        sqlx::query_as("SELECT intent FROM audit_events WHERE action = 'spec.save' ORDER BY id DESC LIMIT 1")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert!(intent.contains("\"confirmed\":true") && intent.contains("\"values\":2"), "{intent}");

    // Switching to Source carries an unsaved edit; nothing is saved.
    fields = confirmed.form_fields("#editor");
    set(&mut fields, "prop.0.description", "Visible text");
    let source = post(&mut b, &fields, "view_source").await;
    assert!(source.select_text("textarea#content").unwrap().contains("Visible text"));
    assert_eq!(saved_text(&w).await.0, v2);

    // Versions: compare an earlier one, restore it.
    let page = b.get(&format!("/projects/flows/edit/Design_system/Button.md?compare={v0}")).await;
    assert!(page.select_text("#compare-diff").unwrap().contains("disabled"), "the line only in the current text");
    let csrf = page.csrf();
    let restore = format!("restore:{v0}");
    let r = b
        .post_form(
            "/projects/flows/edit/Design_system/Button.md",
            &[("csrf_token", csrf.as_str()), ("session_id", "x"), ("base_version", "0"), ("action", restore.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(saved_text(&w).await.1, before);

    // A Viewer gets no editor at all.
    let mut viewer = crate::support::Browser::new(&w.app.base);
    viewer.login("v@example.com", "a long enough password").await;
    assert_eq!(viewer.get("/projects/flows/edit/Design_system/Button.md").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn autosave_checks_like_save_and_never_saves_what_breaks_screens() {
    let w = workflow(&[]).await;
    seed(&w).await;
    let mut b = crate::support::Browser::new(&w.app.base);
    b.login("m2@example.com", "a long enough password").await;
    let page = b.get("/projects/flows/edit/Design_system/Button.md").await;
    let fields = page.form_fields("#editor");
    let (v0, _) = saved_text(&w).await;

    // Retyping size breaks Cart and Pay: not saved, said why.
    let mut f = fields.clone();
    set(&mut f, "prop.1.kind", "number");
    let r = post(&mut b, &f, "autosave").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::CONFLICT, Some("impact")), "{}", r.text);
    assert_eq!(r.json()["counts"]["screens"], 3, "sm, lg and huge are not numbers");
    // A forged row, bytes that are not the page's JSON, an unknown field: refused, nothing saved.
    let mut f = fields.clone();
    set(&mut f, "prop.1.src", "0");
    let r = post(&mut b, &f, "autosave").await;
    assert_eq!((r.status, r.json()["problems"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("prop-1")));
    let mut f = fields.clone();
    set(&mut f, "content_json", "{not json");
    assert_eq!(post(&mut b, &f, "autosave").await.status, StatusCode::BAD_REQUEST);
    let mut f = fields.clone();
    set(&mut f, "prop.0.evil", "1");
    assert_eq!(post(&mut b, &f, "autosave").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(saved_text(&w).await.0, v0);

    // A harmless edit saves and reports the rows' ids; the new row keeps its id on the next save.
    let mut f = fields.clone();
    set(&mut f, "prop.2.name", "tone");
    set(&mut f, "prop.2.kind", "text");
    let r = post(&mut b, &f, "autosave").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let saved = r.json();
    let new_id = saved["rows"]["props"][2]["id"].as_str().unwrap().to_owned();
    assert_eq!(saved["rows"]["props"][2]["src"], 2);
    set(&mut f, "prop.2.src", "2");
    set(&mut f, "prop.2.id", &new_id);
    set(&mut f, "prop.2.description", "Colour");
    set(&mut f, "base_version", &saved["version"].to_string());
    set(&mut f, "content_json", &serde_json::to_string(saved["content"].as_str().unwrap()).unwrap());
    let r = post(&mut b, &f, "autosave").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let text = r.json()["content"].as_str().unwrap().to_owned();
    assert_eq!(text.matches("| tone |").count(), 1);
    assert!(text.contains(&format!("| {new_id} | tone | string |  | false | Colour |")), "{text}");

    // Renaming: only the frontmatter's name line changes; another component's name is refused.
    std::fs::write(
        w.repo.join("Design_system/Card.md"),
        "---\nid: 1b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a02\nname: Card\n---\n# Card\n",
    )
    .unwrap();
    crate::git::git(&w.repo, &["add", "."]);
    crate::git::git(&w.repo, &["commit", "-q", "-m", "card"]);
    let scan = api(Method::POST, &w.app.url("/api/v1/projects/flows/scan"), Some(&w.maker), None).await;
    assert!(scan.status.is_success(), "{}", scan.text);
    let page = b.get("/projects/flows/edit/Design_system/Button.md").await;
    assert_eq!(page.select_attr("#component-name", "value").as_deref(), Some("Button"));
    let mut f = page.form_fields("#editor");
    let (version, before) = saved_text(&w).await;
    set(&mut f, "component.name", "Primary button");
    let r = post(&mut b, &f, "autosave").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["content"].as_str().unwrap(), before.replace("name: Button\n", "name: \"Primary button\"\n"));
    let page = b.get("/projects/flows/edit/Design_system/Button.md").await;
    let mut f = page.form_fields("#editor");
    set(&mut f, "component.name", "card");
    let r = post(&mut b, &f, "save").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.select_text("#component-name-error").unwrap().contains("exists already"), "{}", r.text);
    assert_eq!(saved_text(&w).await.0, version + 1);

    // A Viewer cannot autosave (nor open the editor).
    let mut viewer = crate::support::Browser::new(&w.app.base);
    viewer.login("v@example.com", "a long enough password").await;
    let csrf = viewer.session_csrf().await;
    let mut f = fields.clone();
    set(&mut f, "csrf_token", &csrf);
    assert_eq!(post(&mut viewer, &f, "autosave").await.status, StatusCode::FORBIDDEN);
    assert!(w.app.refusals("action = 'spec.save'").await >= 1);
}

//! The branch-aware view (docs/projects.md): a Maker's saved, unmerged text is what they are
//! served everywhere — the component list and page, the workflow's components — and others keep
//! the default branch's, with a marker naming who has unmerged changes; after the merge
//! everybody is served the same.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Browser, api};
use crate::writeback::{BUTTON, World, save, wait_for, world};

async fn get(w: &World, token: &str, path: &str) -> (StatusCode, Value) {
    let r = api(Method::GET, &w.app.url(path), Some(token), None).await;
    let body = if r.status.is_success() { r.json() } else { Value::Null };
    (r.status, body)
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|c| c["name"] == name)
}

#[tokio::test]
async fn unmerged_texts_are_served_to_their_author_and_the_default_branch_to_others() {
    let w = world(&[]).await;
    let r = api(
        Method::POST,
        &w.app.url("/api/v1/projects/ds/components"),
        Some(&w.maker),
        Some(json!({"name": "Toast", "description": "Says something briefly."})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let toast_id = r.json()["id"].as_str().unwrap().to_owned();
    save(&w, &w.maker, "Button.md", &BUTTON.replace("name: Button", "name: Big button"), "s1").await;

    // The author: their new component and their changed one, marked.
    let (_, mine) = get(&w, &w.maker, "/api/v1/projects/ds/components").await;
    let toast = named(&mine, "Toast").unwrap_or_else(|| panic!("{mine}"));
    assert_eq!((toast["source"].as_str(), toast["mark"].as_str()), (Some("yours"), Some("new")));
    assert_eq!(toast["id"], toast_id.as_str());
    let button = named(&mine, "Big button").unwrap_or_else(|| panic!("{mine}"));
    assert_eq!((button["source"].as_str(), button["mark"].as_str()), (Some("yours"), Some("changed")));
    assert_eq!(button["unmerged_by"], json!([]));
    let card = named(&mine, "Card").unwrap();
    assert_eq!((card["source"].as_str(), &card["mark"]), (Some("default_branch"), &Value::Null));
    let (status, page) = get(&w, &w.maker, &format!("/api/v1/projects/ds/components/{toast_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["source"], "yours");
    let (_, flow) = get(&w, &w.maker, "/api/v1/projects/ds/workflow/components").await;
    let toast = named(&flow, "Toast").unwrap();
    assert_eq!((toast["source"].as_str(), toast["placeable"].as_bool()), (Some("yours"), Some(true)));

    // Others (a Viewer, another Maker): the default branch, and who has unmerged changes.
    for token in [&w.viewer, &w.maker2] {
        let (_, theirs) = get(&w, token, "/api/v1/projects/ds/components").await;
        assert!(named(&theirs, "Toast").is_none(), "not on the default branch: {theirs}");
        assert!(named(&theirs, "Big button").is_none());
        let button = named(&theirs, "Button").unwrap_or_else(|| panic!("{theirs}"));
        assert_eq!(button["source"], "default_branch");
        assert_eq!(button["unmerged_by"][0]["handle"], "m1", "{button}");
        let (status, _) = get(&w, token, &format!("/api/v1/projects/ds/components/{toast_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The shared workflow still draws an instance of it where the author placed it, but does
        // not offer it to place.
        let (_, flow) = get(&w, token, "/api/v1/projects/ds/workflow/components").await;
        let toast = named(&flow, "Toast").unwrap_or_else(|| panic!("{flow}"));
        assert_eq!((toast["source"].as_str(), toast["placeable"].as_bool()), (Some("unmerged"), Some(false)));
        assert_eq!(named(&flow, "Button").unwrap()["source"], "default_branch");
    }

    // The pages say the same: the author's component page marks their version, another's
    // names the author with a link to the change request.
    let button_id = named(&mine, "Big button").unwrap()["id"].as_str().unwrap().to_owned();
    let mut m1 = Browser::new(&w.app.url(""));
    assert_eq!(m1.login("m1@example.com", "a long enough password").await.status, StatusCode::SEE_OTHER);
    let page = m1.get(&format!("/projects/ds/components/{toast_id}")).await;
    assert!(page.select_text("#branch-mark").unwrap().contains("new"), "{}", page.text);
    let page = m1.get(&format!("/projects/ds/components/{button_id}")).await;
    assert!(page.select_text("#branch-mark").unwrap().contains("changed by you"));
    assert_eq!(page.select_text("h1").as_deref().map(str::trim), Some("Big button"));
    let mut v = Browser::new(&w.app.url(""));
    assert_eq!(v.login("v@example.com", "a long enough password").await.status, StatusCode::SEE_OTHER);
    let page = v.get(&format!("/projects/ds/components/{button_id}")).await;
    assert!(page.select_text("#branch-mark").is_none());
    assert_eq!(page.select_text("h1").as_deref().map(str::trim), Some("Button"));
    assert_eq!(page.select_attr("#branch-others a", "href").as_deref(), Some("/projects/ds/changes/m1"));

    // A second author of the same file: both are served it, each naming the other.
    let edited = BUTTON.replace("name: Button", "name: Big button").replace("A button.", "A big button.");
    save(&w, &w.maker2, "Button.md", &edited, "s2").await;
    let (_, two) = get(&w, &w.maker2, "/api/v1/projects/ds/components").await;
    let button = named(&two, "Big button").unwrap_or_else(|| panic!("{two}"));
    assert_eq!((button["source"].as_str(), button["unmerged_by"][0]["handle"].as_str()), (Some("yours"), Some("m1")));
    let (_, viewer) = get(&w, &w.viewer, "/api/v1/projects/ds/components").await;
    let handles: Vec<&str> = named(&viewer, "Button").unwrap()["unmerged_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["handle"].as_str())
        .collect();
    assert_eq!(handles, ["m1", "m2"]);

    // m2's branch is merged first, then m1's (its commit came first, Button is the same text):
    // everybody is served the default branch again, without markers.
    wait_for(&w, "m1", "committed").await;
    wait_for(&w, "m2", "committed").await;
    for who in ["m2", "m1"] {
        let url = w.app.url(&format!("/api/v1/projects/ds/changes/{who}/merge"));
        let r = api(Method::POST, &url, Some(&w.admin), Some(json!({"mode": "merge_commit"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.text);
    }
    for token in [&w.maker, &w.maker2, &w.viewer] {
        let (_, list) = get(&w, token, "/api/v1/projects/ds/components").await;
        for c in list.as_array().unwrap() {
            assert_eq!((c["source"].as_str(), &c["unmerged_by"]), (Some("default_branch"), &json!([])), "{list}");
        }
        assert!(named(&list, "Toast").is_some() && named(&list, "Big button").is_some(), "{list}");
    }
}

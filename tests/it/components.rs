//! New components, by the API and by the project page's form: the spec Arno writes, where, who
//! may, and what is refused (names, folders, duplicates, other projects, readers).

use arno::auth::OrgRole;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::git::git;
use crate::support::{Browser, TestApp, api};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\n---\n# Button\n";
const PASSWORD: &str = "correct horse battery staple";

struct Fixture {
    app: TestApp,
    _roots: tempfile::TempDir,
    maker: String,
    viewer: String,
    stranger: String,
}

async fn setup() -> Fixture {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let repo = root.join("ds");
    std::fs::create_dir_all(repo.join("Design_system")).unwrap();
    std::fs::write(repo.join("Design_system/Button.md"), BUTTON).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let app = TestApp::start_with(&[("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap())]).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    for (name, path) in [("DS", Some(&repo)), ("Other", None)] {
        let mut body = json!({"name": name});
        if let Some(path) = path {
            body["repository"] = json!({"provider": "local", "path": path});
        }
        let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&admin), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let mut tokens = vec![];
    for (email, role) in [("m@example.com", Some("maker")), ("v@example.com", Some("viewer")), ("s@example.com", None)]
    {
        let user = app.create_user(email, PASSWORD, OrgRole::Member).await;
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        let token = arno::auth::tokens::create(&mut conn, &user.id, "t", None).await.unwrap().1;
        drop(conn);
        if let Some(role) = role {
            let url = app.url(&format!("/api/v1/projects/ds/members/{}", user.id));
            let r = api(Method::PUT, &url, Some(&admin), Some(json!({"role": role}))).await;
            assert!(r.status.is_success(), "{}", r.text);
        }
        tokens.push(token);
    }
    let [maker, viewer, stranger]: [String; 3] = tokens.try_into().unwrap();
    Fixture { app, _roots: roots, maker, viewer, stranger }
}

async fn create(f: &Fixture, token: &str, project: &str, body: serde_json::Value) -> crate::support::Page {
    api(Method::POST, &f.app.url(&format!("/api/v1/projects/{project}/components")), Some(token), Some(body)).await
}

#[tokio::test]
async fn a_maker_creates_a_component_and_reads_it_back() {
    let f = setup().await;
    let r = create(
        &f,
        &f.maker,
        "ds",
        json!({"name": "Date picker", "folder": "forms", "description": "Pick a **date**."}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created = r.json();
    assert_eq!(created["path"], "Design_system/forms/DatePicker.md");
    assert_eq!(created["version"], 1);
    assert_eq!(created["edit_url"], "/projects/ds/edit/Design_system/forms/DatePicker.md");
    let location = r.header("location").unwrap();
    assert!(location.ends_with("/specs/Design_system/forms/DatePicker.md"), "{location}");

    let spec = api(Method::GET, &f.app.url(&location), Some(&f.maker), None).await;
    assert_eq!(spec.status, StatusCode::OK, "{}", spec.text);
    let content = spec.json()["content"].as_str().unwrap().to_owned();
    let parsed = arno::specs::SpecFile::parse(content.as_str());
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.id().unwrap().to_string(), created["id"].as_str().unwrap());
    let component = arno::specs::Component::from_spec(&parsed, "Design_system/forms/DatePicker.md");
    assert_eq!(component.name, "Date picker");
    assert!(content.contains("Pick a **date**."));
    assert!(content.contains("<!-- arno:props v1 -->") && content.contains("<!-- arno:events v1 -->"));

    // Audited as the save it is, on the Maker.
    let mut conn = f.app.state.db.pool().acquire().await.unwrap();
    let (intent,): (String,) = sqlx::query_as(
        "SELECT intent FROM audit_events WHERE action = 'spec.save' AND outcome = 'allowed' AND target_id = $1",
    )
    .bind("Design_system/forms/DatePicker.md")
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(intent.contains("\"base_version\":0"), "{intent}");
}

#[tokio::test]
async fn what_is_refused_and_why() {
    let f = setup().await;
    assert_eq!(create(&f, &f.maker, "ds", json!({"name": "Card"})).await.status, StatusCode::CREATED);
    let cases = [
        // The same file again, by name or by another spelling of it; a name git already has.
        (json!({"name": "Card"}), StatusCode::CONFLICT, "exists"),
        (json!({"name": "card"}), StatusCode::CONFLICT, "exists"),
        (json!({"name": "button"}), StatusCode::CONFLICT, "Button"),
        (json!({"name": ""}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "   "}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "!!!"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "x".repeat(81)}), StatusCode::BAD_REQUEST, "80"),
        (json!({"name": "Two\nlines"}), StatusCode::BAD_REQUEST, "control"),
        (json!({"name": "Evil", "folder": "../../etc"}), StatusCode::BAD_REQUEST, "folder"),
        (json!({"name": "Evil", "folder": ".git"}), StatusCode::BAD_REQUEST, "folder"),
        (json!({"name": "Evil", "folder": "a\\b"}), StatusCode::BAD_REQUEST, "folder"),
        (json!({"name": "Evil", "folder": "a/".repeat(9)}), StatusCode::BAD_REQUEST, "folder"),
        (json!({"name": "Evil", "description": "x".repeat(20_001)}), StatusCode::BAD_REQUEST, "description"),
        (json!({"name": "Evil", "path": "Design_system/../x.md"}), StatusCode::BAD_REQUEST, "path"),
        (json!({"name": 7}), StatusCode::BAD_REQUEST, ""),
    ];
    for (body, status, says) in cases {
        let r = create(&f, &f.maker, "ds", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.text.contains(says), "{body}: {}", r.text);
        assert!(r.json()["code"].as_str().is_some(), "the error contract: {}", r.text);
    }
    // A body over the request limit (10 MiB) is refused before it is read.
    let huge = json!({"name": "Huge", "description": "x".repeat(11 << 20)});
    assert_eq!(create(&f, &f.maker, "ds", huge).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Readers may not; outsiders do not learn the project exists; a Maker of one project cannot
    // create in another.
    let before = f.app.refusals("action = 'component.create'").await;
    assert_eq!(create(&f, &f.viewer, "ds", json!({"name": "Sneaky"})).await.status, StatusCode::FORBIDDEN);
    assert_eq!(create(&f, &f.stranger, "ds", json!({"name": "Sneaky"})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(create(&f, &f.maker, "other", json!({"name": "Sneaky"})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(create(&f, &f.maker, "no-such", json!({"name": "Sneaky"})).await.status, StatusCode::NOT_FOUND);
    // Each refusal on a project that exists is audited (a project that does not is a plain 404).
    assert_eq!(f.app.refusals("action = 'component.create'").await - before, 3, "every refusal is audited");
    let r = api(Method::POST, &f.app.url("/api/v1/projects/ds/components"), None, Some(json!({"name": "Anon"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Nothing of the refused ones was saved.
    let (saved,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT path) FROM spec_versions")
        .fetch_one(f.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(saved, 1, "only Card");
}

#[tokio::test]
async fn two_makers_racing_for_one_name_get_one_spec() {
    let f = setup().await;
    let (a, b) = tokio::join!(
        create(&f, &f.maker, "ds", json!({"name": "Race"})),
        create(&f, &f.maker, "ds", json!({"name": "Race"}))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{} / {}", a.text, b.text);
    let (versions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM spec_versions WHERE path = 'Design_system/Race.md'")
        .fetch_one(f.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn the_project_page_form_opens_the_new_spec_in_the_editor() {
    let f = setup().await;
    let mut maker = Browser::new(&f.app.url(""));
    assert_eq!(maker.login("m@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let page = maker.get("/projects/ds").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.select_text("#new-component").is_some(), "a Maker is offered the form");
    let csrf = page.csrf();

    let fields = [("csrf_token", csrf.as_str()), ("name", "Nav bar"), ("folder", "My menus"), ("description", "")];
    let r = maker.post_form("/projects/ds/components", &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let to = r.header("location").unwrap();
    assert_eq!(to, "/projects/ds/edit/Design_system/My%20menus/NavBar.md");
    let editor = maker.get(&to).await;
    assert_eq!(editor.status, StatusCode::OK, "{}", editor.text);
    // It opens in the structured view: the description, no props or events yet.
    assert!(editor.text.contains("data-view=\"structured\""), "{}", editor.text);
    assert_eq!(editor.select_text("#prose-0").as_deref().map(str::trim), Some("# Nav bar"));
    assert!(editor.select_text("#props-editor").unwrap().contains("No props yet."));
    let editor = maker.get(&format!("{to}?view=source")).await;
    assert!(
        editor.text.contains("name: &quot;Nav bar&quot;") || editor.text.contains("name: &#34;Nav bar&#34;"),
        "{}",
        editor.text
    );

    // The project page lists it at once for its author, marked new, with its own page.
    let page = maker.get("/projects/ds").await;
    let row = page.select_text("#components").unwrap();
    assert!(row.contains("Nav bar") && row.contains("new") && row.contains("not merged yet"), "{row}");
    // In path order: Button (on the default branch), then the new Nav bar.
    let own = page.select_attr("#components tbody tr:nth-child(2) a[href*='/components/']", "href").unwrap();
    assert_eq!(maker.get(&own).await.status, StatusCode::OK, "{own}");
    assert_eq!(
        page.select_attr("#components a[href$='NavBar.md']", "href").as_deref(),
        Some("/projects/ds/edit/Design_system/My%20menus/NavBar.md")
    );

    // Again: refused, the form shown with what was typed and the field marked.
    let r = maker.post_form("/projects/ds/components", &fields).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.select_text("#new-component-error").unwrap().contains("exists"));
    assert_eq!(r.select_attr("#component-name", "aria-invalid").as_deref(), Some("true"));
    assert_eq!(r.select_attr("#component-name", "value").as_deref(), Some("Nav bar"));
    let r = maker
        .post_form("/projects/ds/components", &[("csrf_token", csrf.as_str()), ("name", "X"), ("folder", "../up")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.select_attr("#component-folder", "aria-invalid").as_deref(), Some("true"));
    // Without the CSRF token: refused.
    let r = maker.post_form("/projects/ds/components", &[("name", "Forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A Viewer is not offered the form and cannot post it.
    let mut viewer = Browser::new(&f.app.url(""));
    assert_eq!(viewer.login("v@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let page = viewer.get("/projects/ds").await;
    assert!(page.select_text("#new-component").is_none());
    let listed = page.select_text("#components").unwrap_or_default();
    assert!(!listed.contains("Nav bar"), "not on the default branch yet: {listed}");
    let others = page.select_text("#others-new").unwrap();
    assert!(others.contains("Nav bar") && others.contains("by"), "a Viewer sees someone is creating it: {others}");
    assert!(page.select_attr("#others-new a[href$='NavBar.md']", "href").is_none(), "but is not offered the editor");
    assert_eq!(viewer.get(&own).await.status, StatusCode::NOT_FOUND, "nor its page before the merge");
    let csrf = viewer.session_csrf().await;
    let r = viewer.post_form("/projects/ds/components", &[("csrf_token", csrf.as_str()), ("name", "Nope")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_large_component_list_is_searched_filtered_and_paged() {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let repo = root.join("big");
    std::fs::create_dir_all(repo.join("Design_system")).unwrap();
    for i in 0..230 {
        // Every 50th spec is broken (no frontmatter): listed, with its problem.
        let text = if i % 50 == 0 {
            format!("# Widget {i:03}\n")
        } else {
            format!("---\nid: 00000000-0000-4000-8000-{i:012}\nname: Widget {i:03}\n---\n# Widget {i:03}\n")
        };
        std::fs::write(repo.join(format!("Design_system/W{i:03}.md")), text).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let app = TestApp::start_with(&[("ARNO_GIT_LOCAL_ROOTS", root.to_str().unwrap())]).await;
    let (_, admin) = app.user_with_token("root@example.com", OrgRole::Admin).await;
    let body = json!({"name": "Big", "repository": {"provider": "local", "path": repo}});
    let r = api(Method::POST, &app.url("/api/v1/projects"), Some(&admin), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut browsers = vec![];
    for (email, role) in [("m@example.com", "maker"), ("v@example.com", "viewer")] {
        let user = app.create_user(email, PASSWORD, OrgRole::Member).await;
        let url = app.url(&format!("/api/v1/projects/big/members/{}", user.id));
        assert!(api(Method::PUT, &url, Some(&admin), Some(json!({"role": role}))).await.status.is_success());
        let mut b = Browser::new(&app.url(""));
        assert_eq!(b.login(email, PASSWORD).await.status, StatusCode::SEE_OTHER);
        browsers.push(b);
    }
    let [mut maker, mut viewer]: [Browser; 2] = browsers.try_into().ok().unwrap();
    let page = maker.get("/projects/big").await;
    let fields = [("csrf_token", page.csrf()), ("name", "Zebra".into())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(maker.post_form("/projects/big/components", &fields).await.status, StatusCode::SEE_OTHER);
    let rows =
        |p: &crate::support::Page| p.html().select(&scraper::Selector::parse("#components tbody tr").unwrap()).count();

    // The first page: 100 rows, where it is, a way on; the problems counted over all pages.
    let page = viewer.get("/projects/big").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(rows(&page), 100);
    assert_eq!(page.select_text("#components caption").as_deref(), Some("230 component spec(s), showing 1–100"));
    assert_eq!(page.select_text(".pager [aria-current=page]").as_deref(), Some("Page 1 of 3"));
    assert_eq!(
        page.select_attr(".pager a[rel=next]", "href").as_deref(),
        Some("/projects/big?page=2#components-title")
    );
    assert!(page.select_attr(".pager a[rel=prev]", "href").is_none());
    assert_eq!(page.select_text("#broken-count").as_deref().map(|t| t.starts_with("5 spec(s)")), Some(true));
    assert!(page.select_attr("#component-q", "name").is_some(), "a search for a list this long");

    // The last page, and page numbers past it or malformed: the nearest real page.
    let last = viewer.get("/projects/big?page=3").await;
    assert_eq!(rows(&last), 30);
    assert!(last.select_text("#components tbody").unwrap().contains("Widget 229"));
    for odd in ["?page=99", "?page=-4", "?page=x", "?page=99999999999999999999999"] {
        let p = viewer.get(&format!("/projects/big{odd}")).await;
        assert_eq!(p.status, StatusCode::OK, "{odd}");
        assert!(rows(&p) > 0, "{odd}");
    }

    // A search (ignoring case, name or file) and the filters; links keep them.
    let found = viewer.get("/projects/big?q=WIDGET+01").await;
    assert_eq!(rows(&found), 10, "Widget 010–019");
    assert_eq!(found.select_text("#components caption").as_deref(), Some("10 of 230 component spec(s)"));
    assert_eq!(found.select_attr("#component-q", "value").as_deref(), Some("WIDGET 01"));
    let by_file = viewer.get("/projects/big?q=W22").await;
    assert_eq!(rows(&by_file), 10);
    let broken = viewer.get("/projects/big?show=problems").await;
    assert_eq!(rows(&broken), 5);
    let none = viewer.get("/projects/big?q=%3Cscript%3Enothing").await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.select_text("#no-match").unwrap().contains("<script>nothing"), "{}", none.text);
    assert!(!none.text.contains("<script>nothing"), "the search is escaped");
    let paged = viewer.get("/projects/big?q=widget&page=2").await;
    assert_eq!(
        paged.select_attr(".pager a[rel=prev]", "href").as_deref(),
        Some("/projects/big?q=widget#components-title")
    );

    // "Your unmerged changes": the author's new component; nothing for the Viewer.
    let yours = maker.get("/projects/big?show=yours").await;
    assert_eq!(rows(&yours), 1);
    assert!(yours.select_text("#components tbody").unwrap().contains("Zebra"));
    assert_eq!(yours.select_text("#components caption").as_deref(), Some("1 of 231 component spec(s)"));
    assert!(viewer.get("/projects/big?show=yours").await.select_text("#no-match").is_some());
    // A short list has no search form.
    let f = setup().await;
    let mut small = Browser::new(&f.app.url(""));
    assert_eq!(small.login("m@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let page = small.get("/projects/ds").await;
    assert!(page.select_attr("#component-q", "name").is_none());
    assert!(page.select_text(".pager").is_none());
}

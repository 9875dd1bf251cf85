//! The console's git page and the New project form's GitHub choice, as an Admin and a Maker use
//! them: what a connection reaches, adding, rotating and deleting connections by form, and
//! creating a project from a repository picked in a list.

use reqwest::StatusCode;

use crate::fake_github::{APP_ID, KEY_PEM};
use crate::github_projects::github_world;
use crate::support::Browser;

const PASSWORD: &str = "a long enough password";

async fn audit(w: &crate::github_projects::GitHubWorld, action: &str, outcome: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT intent FROM audit_events WHERE action = $1 AND outcome = $2")
        .bind(action)
        .bind(outcome)
        .fetch_all(w.app.state.db.pool())
        .await
        .unwrap();
    rows.into_iter().map(|(i,)| i).collect()
}

#[tokio::test]
async fn admins_see_what_a_connection_reaches_and_manage_connections_by_form() {
    let Some(w) = github_world(true).await else { return };
    // Not for Members: refused and audited.
    let mut member = Browser::new(&w.app.base);
    member.login("m1@example.com", PASSWORD).await;
    assert_eq!(member.get("/admin/git").await.status, StatusCode::FORBIDDEN);
    let csrf = member.session_csrf().await;
    let r = member.post_form("/admin/git/connections/corp/delete", &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(audit(&w, "git.connection.delete", "denied").await.len(), 1);

    let mut admin = Browser::new(&w.app.base);
    admin.login("root@example.com", PASSWORD).await;
    let page = admin.get("/admin/git").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let card = page.select_text("#conn-corp").expect("the connection's card");
    assert!(card.contains("acme/design-system"), "its installation's repositories: {card}");
    assert!(card.contains("installation 7"), "{card}");
    assert!(card.contains("/api/v1/webhooks/github/corp"), "the webhook URL to give GitHub: {card}");
    assert!(page.select_text("#conn-corp-delivery").unwrap().contains("none yet"));
    assert!(!page.text.contains("BEGIN"), "no key material in the page");

    // Adding one: a mistake is shown by the form, the secrets are not sent back.
    let csrf = page.csrf();
    let r = admin
        .post_form(
            "/admin/git/connections",
            &[
                ("csrf_token", &csrf),
                ("name", "Bad Name"),
                ("api_url", &format!("{}/api/v3", w.fake.origin)),
                ("app_id", APP_ID),
                ("private_key", KEY_PEM),
                ("webhook_secret", "a webhook secret long enough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.select_text("#new-error").unwrap().contains("name"), "{}", r.text);
    assert!(!r.text.contains("a webhook secret long enough") && !r.text.contains("BEGIN"));
    let r = admin
        .post_form(
            "/admin/git/connections",
            &[
                ("csrf_token", &csrf),
                ("name", "second"),
                ("api_url", &format!("{}/api/v3", w.fake.origin)),
                ("app_id", APP_ID),
                ("private_key", KEY_PEM),
                ("webhook_secret", "a webhook secret long enough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = admin.get("/admin/git?added=second").await;
    assert!(page.select_text("#git-notice").unwrap().contains("second added"));
    assert!(page.select_text("#conn-second").is_some());
    assert_eq!(audit(&w, "git.connection.create", "allowed").await.len(), 2, "the API's and the form's");

    // Rotating the webhook secret: audited as a rotation, nothing else changes.
    let r = admin
        .post_form(
            "/admin/git/connections/second",
            &[("csrf_token", &csrf), ("webhook_secret", "another long secret!")],
        )
        .await;
    assert!(r.select_text("#git-notice").unwrap().contains("webhook_secret"), "{}", r.text);
    let rotations = audit(&w, "git.connection.update", "allowed").await;
    assert!(rotations.iter().any(|i| i.contains("\"rotated\":[\"webhook_secret\"]")), "{rotations:?}");

    // A client id added later (so members can link GitHub accounts), a CA bundle added (with the
    // key again: it only goes where it was given for) and removed.
    let ca = include_str!("../fixtures/internal-ca.pem");
    let r = admin
        .post_form(
            "/admin/git/connections/second",
            &[("csrf_token", &csrf), ("client_id", "Iv23liSecond"), ("ca_bundle", ca), ("private_key", KEY_PEM)],
        )
        .await;
    let notice = r.select_text("#git-notice").unwrap_or_else(|| panic!("{:?}", r.select_text("#git-error")));
    assert!(notice.contains("client_id") && notice.contains("ca_bundle"), "{}", r.text);
    assert!(r.select_text("#conn-second").unwrap().contains("Iv23liSecond"), "{}", r.text);
    let r = admin
        .post_form(
            "/admin/git/connections/second",
            &[("csrf_token", &csrf), ("remove_ca_bundle", "1"), ("private_key", KEY_PEM)],
        )
        .await;
    assert!(r.select_text("#git-notice").unwrap().contains("ca_bundle"), "{}", r.text);
    assert!(!r.text.contains("Remove the CA bundle"), "nothing left to remove: {}", r.text);

    // Deleting: refused while a project uses it, naming it; done otherwise.
    let created = crate::support::api(
        reqwest::Method::POST,
        &w.app.url("/api/v1/projects"),
        Some(&w.maker),
        Some(crate::github_projects::github_project("acme/design-system")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let r = admin.post_form("/admin/git/connections/corp/delete", &[("csrf_token", &csrf)]).await;
    assert!(r.select_text("#git-error").unwrap().contains("ds"), "{}", r.text);
    assert!(r.select_text("#conn-corp").is_some(), "still there");
    let r = admin.post_form("/admin/git/connections/second/delete", &[("csrf_token", &csrf)]).await;
    assert!(r.select_text("#git-notice").unwrap().contains("second deleted"), "{}", r.text);
    assert!(r.select_text("#conn-second").is_none());
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn a_maker_picks_a_github_repository_in_the_new_project_form() {
    let Some(w) = github_world(true).await else { return };
    let mut maker = Browser::new(&w.app.base);
    maker.login("m1@example.com", PASSWORD).await;
    let page = maker.get("/projects").await;
    assert_eq!(page.status, StatusCode::OK);
    let options = page.select_text("#github_repository").expect("a list of GitHub repositories");
    assert!(options.contains("acme/design-system"), "{options}");
    assert_eq!(
        page.select_attr("#github_repository option[value='corp/acme/design-system']", "value").as_deref(),
        Some("corp/acme/design-system")
    );
    assert!(page.select_text("#repository_path").is_none(), "paths on the server are for Admins");
    let csrf = page.csrf();
    // Chosen GitHub without a repository: said so, nothing created.
    let r = maker
        .post_form(
            "/projects",
            &[
                ("csrf_token", &csrf),
                ("name", "DS"),
                ("visibility", "private"),
                ("source", "github"),
                ("github_repository", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.select_text("#create-error").unwrap().contains("GitHub repository"));
    let r = maker
        .post_form(
            "/projects",
            &[
                ("csrf_token", &csrf),
                ("name", "Design system"),
                ("slug", "ds"),
                ("visibility", "private"),
                ("source", "github"),
                ("github_repository", "corp/acme/design-system"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let project = maker.get("/projects/ds").await;
    assert_eq!(project.status, StatusCode::OK);
    assert!(project.text.contains("Button"), "scanned from GitHub: {}", project.text);
    w.fake.assert_clean().await;
}

#[tokio::test]
async fn a_github_project_without_config_is_set_up_from_its_page() {
    let Some(w) = github_world(false).await else { return };
    let created = crate::support::api(
        reqwest::Method::POST,
        &w.app.url("/api/v1/projects"),
        Some(&w.maker),
        Some(crate::github_projects::github_project("acme/design-system")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let mut maker = Browser::new(&w.app.base);
    maker.login("m1@example.com", PASSWORD).await;
    let page = maker.get("/projects/ds").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.select_text("#onboarding").is_some(), "{}", page.text);
    assert_eq!(page.select_attr("#components_md", "value").as_deref(), Some("Design_system/"), "detected");
    assert!(!page.text.contains("Add .arno/config.json"), "the default branch is not written on GitHub");
    let csrf = page.csrf();
    let r = maker
        .post_form(
            "/projects/ds/onboarding",
            &[("csrf_token", &csrf), ("components_md", "Design_system/"), ("components_code", "src/components/")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.select_text("#scan-report").unwrap().contains("#1"), "{}", r.text);
    let card = r.select_text("#onboarding").unwrap();
    assert!(card.contains("is open on GitHub"), "{card}");
    assert!(r.select_text("#components_md").is_none(), "no second pull request offered");
    assert!(git_show(&w, "arno/setup:.arno/config.json").contains("src/components/"));
    w.fake.assert_clean().await;
}

fn git_show(w: &crate::github_projects::GitHubWorld, what: &str) -> String {
    crate::git::git(&w.bare, &["show", what])
}

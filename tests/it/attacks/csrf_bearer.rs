//! Hole 10: any `Authorization: Bearer` header switched the CSRF checks off, also for a request
//! authenticated by the browser's session cookie. A request that presents the header is now
//! never cookie-authenticated, so the exemption cannot cover a forged form post.

use reqwest::StatusCode;

use crate::support::TestApp;

#[tokio::test]
async fn a_junk_bearer_header_does_not_turn_csrf_off_for_a_session() {
    let app = TestApp::start().await;
    let mut browser = app.admin_browser().await;
    // A forged sign-out: the session cookie, no CSRF token, any bearer header.
    let sessions = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM sessions").fetch_one(app.state.db.pool()).await.unwrap();
        n
    };
    assert_eq!(sessions().await, 1);
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    browser.post_form_with("/logout", &[], &[("authorization", "Bearer whatever")]).await;
    assert_eq!(sessions().await, 1, "a forged, bearer-labelled sign-out ended the session");
}

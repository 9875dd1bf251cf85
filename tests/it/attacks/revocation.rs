//! Hole 2: revocation must end live access at once. A signed-out session, a revoked API token
//! or a workflow ticket issued against either must close open WebSocket and event streams.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use yrs::StateVector;
use yrs::sync::protocol::{Message, SyncMessage};

use crate::support::{Browser, api};
use crate::workflow::{raw, workflow};

/// Read the socket until the server closes it; its close code.
async fn closed(s: &mut raw::Socket) -> u16 {
    raw::until(s, |_| false).await.unwrap_err()
}

#[tokio::test]
async fn a_revoked_token_ends_its_socket_its_ticket_socket_and_its_event_stream() {
    let w = workflow(&[]).await;
    // A second token of the Editor, to revoke.
    let token =
        api(Method::POST, &w.app.url("/api/v1/tokens"), Some(&w.editor), Some(serde_json::json!({"name": "cli"})))
            .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.text);
    let (secret, id) =
        (token.json()["token"].as_str().unwrap().to_owned(), token.json()["id"].as_str().unwrap().to_owned());

    let mut socket = raw::connect(&w.app.base, &w.project, &secret).await;
    raw::send(&mut socket, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    raw::until(&mut socket, raw::is_step2).await.unwrap();
    // A ticket issued to that token, used to open another socket.
    let t =
        api(Method::POST, &w.app.url(&format!("/api/v1/projects/{}/workflow/ticket", w.project)), Some(&secret), None)
            .await;
    let url = format!(
        "{}/api/v1/workflow/{}?ticket={}",
        w.app.base.replace("http://", "ws://"),
        w.project,
        t.json()["ticket"].as_str().unwrap()
    );
    let mut by_ticket = tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await.unwrap().0;
    raw::send(&mut by_ticket, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    raw::until(&mut by_ticket, raw::is_step2).await.unwrap();
    // The event stream.
    let events = reqwest::Client::new()
        .get(w.app.url(&format!("/api/v1/projects/{}/events", w.project)))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut body = events.bytes_stream();

    let r = api(Method::DELETE, &w.app.url(&format!("/api/v1/tokens/{id}")), Some(&secret), None).await;
    assert!(r.status.is_success(), "{}", r.text);
    assert_eq!(closed(&mut socket).await, 1008, "the token's socket stays open after revocation");
    assert_eq!(closed(&mut by_ticket).await, 1008, "the ticket's socket stays open after revocation");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream stays open after revocation");
    // And the token no longer opens anything.
    let r = api(Method::GET, &w.app.url("/api/v1/me"), Some(&secret), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_ends_the_sessions_socket() {
    let w = workflow(&[]).await;
    let mut browser = Browser::new(&w.app.base);
    // The Viewer signs in with a password (tokens were made for the harness).
    let page = browser.login("v@example.com", "a long enough password").await;
    assert!(page.status.is_success() || page.status.is_redirection(), "{}", page.text);
    let cookie = browser.session_cookie().expect("a session cookie");
    let url = format!("{}/api/v1/workflow/{}", w.app.base.replace("http://", "ws://"), w.project);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("cookie", format!("arno_session={cookie}").parse().unwrap());
    let own = w.app.state.config.public_url.origin().ascii_serialization();
    request.headers_mut().insert("origin", own.parse().unwrap());
    let mut socket = tokio_tungstenite::connect_async(request).await.unwrap().0;
    raw::send(&mut socket, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    raw::until(&mut socket, raw::is_step2).await.unwrap();

    let csrf = browser.session_csrf().await;
    let out = browser.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert!(out.status.is_success() || out.status.is_redirection(), "{}", out.text);
    assert_eq!(closed(&mut socket).await, 1008, "the session's socket stays open after signing out");
}

//! Hole 6: presence spoofing and style injection. A connection may publish only its own
//! clients' presence; the name others see is the server's record of the user; colours are
//! plain `#rrggbb`.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::protocol::Message;
use yrs::updates::encoder::Encode;

use crate::workflow::{raw, workflow};

async fn publish(s: &mut raw::Socket, client: u64, clock: u32, json: &str) {
    let update = AwarenessUpdate {
        clients: [(yrs::ClientID::new(client), AwarenessUpdateEntry { clock, json: json.into() })].into(),
    };
    s.send(Ws::Binary(Message::Awareness(update).encode_v1().into())).await.unwrap();
}

/// The next presence state another connection sees for `client`.
async fn seen(s: &mut raw::Socket, client: u64) -> serde_json::Value {
    let mut found = None;
    raw::until(s, |m| {
        if let Message::Awareness(u) = m
            && let Some(e) = u.clients.get(&yrs::ClientID::new(client))
        {
            found = Some(serde_json::from_str(&e.json).unwrap());
            return true;
        }
        false
    })
    .await
    .unwrap();
    found.unwrap()
}

#[tokio::test]
async fn presence_is_the_servers_record_and_only_ones_own() {
    let w = workflow(&[]).await;
    let mut observer = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let mut maker = raw::connect(&w.app.base, &w.project, &w.maker2).await;
    publish(&mut maker, 100, 1, r##"{"user":{"name":"Maker Two","color":"#1f5fbf"}}"##).await;
    assert_eq!(seen(&mut observer, 100).await["user"]["color"], "#1f5fbf");

    // The Viewer claims to be someone else, with a colour that would inject style.
    let mut viewer = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    publish(&mut viewer, 200, 1, r#"{"user":{"name":"The Admin","color":"red;background:url(//evil)"},"screen":"s1"}"#)
        .await;
    let state = seen(&mut observer, 200).await;
    let (v_name, v_handle): (String, String) =
        sqlx::query_as("SELECT name, handle FROM users WHERE email = 'v@example.com'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(state["user"]["name"], v_name.as_str(), "the claimed name reached others");
    assert_eq!(state["user"]["handle"], v_handle.as_str());
    let color = state["user"]["color"].as_str().unwrap();
    assert!(color.len() == 7 && color.starts_with('#'), "{color}");
    assert_eq!(state["screen"], "s1", "the rest of the state passes");

    // And it speaks for the Maker's client: dropped (nobody sees it), the Maker's presence is
    // still the Maker's.
    publish(&mut viewer, 100, 2, r#"{"user":{"name":"Maker Two"},"screen":"elsewhere"}"#).await;
    publish(&mut maker, 100, 3, r#"{"user":{"name":"x"},"screen":"here"}"#).await;
    assert_eq!(seen(&mut observer, 100).await["screen"], "here", "a Viewer moved the Maker's presence");
}

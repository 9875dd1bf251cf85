//! Hole 1: the workflow filter. A reader's update must never be stored; an Editor's is decided
//! against exactly the state it is applied to, so a forbidden change cannot ride on an
//! invisible or pending one.

use serde_json::Value;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact, Update};

use crate::workflow::{raw, synced_content, workflow};

const COMPONENT: &str = "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01";
const LABEL: &str = "6f1c7d2e-1111-4a2b-8c3d-000000000001";

/// Several y-protocols messages in one WebSocket frame (handled one after the other at once).
async fn send_together(s: &mut raw::Socket, updates: &[&[u8]]) {
    let mut frame = vec![];
    for u in updates {
        frame.extend(yrs::updates::encoder::Encode::encode_v1(&Message::Sync(SyncMessage::Update(u.to_vec()))));
    }
    futures_util::SinkExt::send(s, tokio_tungstenite::tungstenite::Message::Binary(frame.into())).await.unwrap();
}

/// A local copy of the server's document, as client `id`.
async fn synced_doc(s: &mut raw::Socket, id: u64) -> Doc {
    raw::send(s, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    let Ok(Message::Sync(SyncMessage::SyncStep2(state))) = raw::until(s, raw::is_step2).await else {
        panic!("no sync step 2")
    };
    let doc = Doc::with_client_id(id);
    doc.get_or_insert_map("screens");
    doc.get_or_insert_array("edges");
    doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    doc
}

fn screen(doc: &Doc) -> MapRef {
    let screens = doc.get_or_insert_map("screens");
    let txn = doc.transact();
    match screens.get(&txn, "home") {
        Some(Out::YMap(m)) => m,
        _ => panic!("no screen"),
    }
}

fn props(doc: &Doc) -> MapRef {
    let s = screen(doc);
    let txn = doc.transact();
    let Some(Out::YMap(root)) = s.get(&txn, "root") else { panic!() };
    let Some(Out::YMap(p)) = root.get(&txn, "props") else { panic!() };
    p
}

/// The change `f` makes on `doc`, as an update.
fn change(doc: &Doc, f: impl FnOnce(&Doc)) -> Vec<u8> {
    let sv = doc.transact().state_vector();
    f(doc);
    doc.transact().encode_state_as_update_v1(&sv)
}

/// Two updates where the second depends on the first; the first changes nothing visible.
fn ride_along(doc: &Doc, name: &str) -> (Vec<u8>, Vec<u8>) {
    let invisible = change(doc, |d| {
        let s = screen(d);
        let mut txn = d.transact_mut();
        s.insert(&mut txn, "ghost", "boo");
        s.remove(&mut txn, "ghost");
    });
    let rename = change(doc, |d| {
        screen(d).insert(&mut d.transact_mut(), "name", name);
    });
    (invisible, rename)
}

async fn rows_by(w: &crate::workflow::Workflow, email: &str) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM workflow_updates u JOIN users s ON s.id = u.user_id WHERE s.email = $1")
            .bind(email)
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    n
}

/// A Maker makes a screen with one instance of the component; returns once it is stored.
async fn seed(w: &crate::workflow::Workflow) -> Value {
    let mut s = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let doc = synced_doc(&mut s, 1).await;
    let update = change(&doc, |d| {
        let screens = d.get_or_insert_map("screens");
        let mut txn = d.transact_mut();
        let home = screens.insert(&mut txn, "home", MapPrelim::default());
        home.insert(&mut txn, "name", "Home");
        let root = home.insert(&mut txn, "root", MapPrelim::default());
        root.insert(&mut txn, "component_id", COMPONENT);
        let props = root.insert(&mut txn, "props", MapPrelim::default());
        props.insert(&mut txn, LABEL, "Buy");
    });
    raw::send(&mut s, Message::Sync(SyncMessage::Update(update))).await;
    for _ in 0..100 {
        let c = synced_content(&w.app.base, &w.project, &w.viewer).await;
        if c["screens"]["home"]["name"] == "Home" {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the Maker's screen was not stored");
}

#[tokio::test]
async fn a_viewer_stores_nothing_whatever_it_sends() {
    let w = workflow(&[]).await;
    let before = seed(&w).await;
    let mut s = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    let doc = synced_doc(&mut s, 7).await;
    // The ride-along: the second is checked before the first reached the document.
    let (invisible, rename) = ride_along(&doc, "Pwned");
    send_together(&mut s, &[&invisible, &rename]).await;
    let refused = raw::until(&mut s, |m| matches!(m, Message::Auth(_))).await;
    assert!(matches!(refused, Ok(Message::Auth(Some(ref r))) if r.contains("read")), "{refused:?}");
    // And out of order: the dependent one first (it waits as pending), then what it needs.
    let (invisible, rename) = ride_along(&doc, "Pwned later");
    send_together(&mut s, &[&rename]).await;
    send_together(&mut s, &[&invisible]).await;
    // Re-sending the whole state (what a reconnecting client does) 50 times.
    let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
    for _ in 0..50 {
        let _ = futures_util::SinkExt::send(
            &mut s,
            tokio_tungstenite::tungstenite::Message::Binary(
                yrs::updates::encoder::Encode::encode_v1(&Message::Sync(SyncMessage::SyncStep2(state.clone()))).into(),
            ),
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = synced_content(&w.app.base, &w.project, &w.maker).await;
    assert_eq!(after, before, "a Viewer changed the document");
    assert_eq!(rows_by(&w, "v@example.com").await, 0, "a Viewer's update reached the log");
}

#[tokio::test]
async fn an_editor_cannot_ride_a_forbidden_change_on_an_invisible_one() {
    let w = workflow(&[]).await;
    seed(&w).await;
    let mut s = raw::connect(&w.app.base, &w.project, &w.editor).await;
    let doc = synced_doc(&mut s, 8).await;
    let (invisible, rename) = ride_along(&doc, "Pwned");
    // Back to back in one frame, so the second arrives before the first is stored.
    send_together(&mut s, &[&invisible, &rename]).await;
    let refused = raw::until(&mut s, |m| matches!(m, Message::Auth(_))).await;
    assert!(matches!(refused, Ok(Message::Auth(Some(_)))), "{refused:?}");
    // Out of order, from a fresh copy: the dependent one first, then what it needs.
    let mut s = raw::connect(&w.app.base, &w.project, &w.editor).await;
    let doc = synced_doc(&mut s, 11).await;
    let (invisible, rename) = ride_along(&doc, "Pwned later");
    send_together(&mut s, &[&rename]).await;
    send_together(&mut s, &[&invisible]).await;
    raw::until(&mut s, |m| matches!(m, Message::Auth(_))).await.unwrap();
    // In one frame (a merged update), from a fresh copy: refused too.
    let mut s = raw::connect(&w.app.base, &w.project, &w.editor).await;
    let doc = synced_doc(&mut s, 10).await;
    let (invisible, rename) = ride_along(&doc, "Pwned again");
    let merged = yrs::merge_updates_v1([invisible.as_slice(), rename.as_slice()]).unwrap();
    raw::send(&mut s, Message::Sync(SyncMessage::Update(merged))).await;
    raw::until(&mut s, |m| matches!(m, Message::Auth(_))).await.unwrap();
    // What Editors may do still works, from a fresh copy.
    let mut s = raw::connect(&w.app.base, &w.project, &w.editor).await;
    let doc = synced_doc(&mut s, 9).await;
    let label = change(&doc, |d| {
        props(d).insert(&mut d.transact_mut(), LABEL, "Pay now");
    });
    raw::send(&mut s, Message::Sync(SyncMessage::Update(label))).await;
    let mut content = Value::Null;
    for _ in 0..100 {
        content = synced_content(&w.app.base, &w.project, &w.maker).await;
        if content["screens"]["home"]["root"]["props"][LABEL] == "Pay now" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(content["screens"]["home"]["root"]["props"][LABEL], "Pay now");
    assert_eq!(content["screens"]["home"]["name"], "Home", "the Editor renamed a screen");
    assert!(content["screens"]["home"].get("ghost").is_none());
}

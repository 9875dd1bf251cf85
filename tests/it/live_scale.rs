//! The live workflow under load: merged broadcasts against stock Yjs clients, and a reader that
//! stops reading (it holds up nobody and is resynchronised when it reads again).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::protocol::{Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::{Map, ReadTxn, Transact};

use super::workflow::{node_clients, raw, synced_content, workflow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_yjs_writers_at_full_speed_converge_through_merged_updates() {
    let w = workflow(&[]).await;
    let clients = w.clients();
    let Some(result) = tokio::task::block_in_place(|| {
        node_clients(&clients, "burst", &[("WRITERS", "4"), ("EDITS", "400"), ("SEED", "20261207")])
    }) else {
        return;
    };
    assert_eq!(result["converged"], true, "{result}");
    assert_eq!(result["screens_match"], true, "no screen lost or revived: {result}");
    let edits = result["edits"].as_u64().unwrap();
    assert_eq!(edits, 1600);
    // The server passed the updates on merged: observers got fewer messages than there were edits.
    for n in result["observer_messages"].as_array().unwrap() {
        let n = n.as_u64().unwrap();
        assert!(n > 0 && n < edits, "an observer received {n} messages for {edits} edits");
    }
    // What the server stored is what the clients converged on.
    let stored = synced_content(&w.app.base, &w.project, &w.maker).await;
    assert_eq!(stored["screens"], result["content"]["screens"]);
    assert_eq!(stored["edges"], result["content"]["edges"]);
}

/// Updates as a fast reader decodes them, until `want` holds for its document.
async fn read_until(socket: &mut raw::Socket, doc: &yrs::Doc, want: impl Fn(&yrs::Doc) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want(doc) {
        let next = tokio::time::timeout_at(deadline, socket.next()).await.expect("the fast reader keeps up");
        let Some(Ok(Ws::Binary(data))) = next else { panic!("the fast reader's connection ended: {next:?}") };
        let mut decoder = DecoderV1::from(data.as_ref());
        for m in MessageReader::new(&mut decoder) {
            if let Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) = m.unwrap() {
                doc.transact_mut().apply_update(yrs::Update::decode_v1(&u).unwrap()).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_delays_nobody_and_is_resynchronised() {
    let w = workflow(&[]).await;
    // The slow reader connects, then reads nothing while the writer sends 25 MiB.
    let mut slow = raw::connect(&w.app.base, &w.project, &w.viewer).await;
    let mut fast = raw::connect(&w.app.base, &w.project, &w.maker2).await;
    let mut writer = raw::connect(&w.app.base, &w.project, &w.maker).await;
    let connections = arno::workflow::CONNECTIONS.get();
    let doc = arno::workflow::filter::new_doc();
    let blobs = doc.get_or_insert_map("blobs");
    let rounds = 200;
    let fast_doc = arno::workflow::filter::new_doc();
    let fast_blobs = fast_doc.get_or_insert_map("blobs");
    for i in 0..rounds {
        let before = doc.transact().state_vector();
        blobs.insert(&mut doc.transact_mut(), format!("b{}", i % 16), format!("{i:06}").repeat(128 * 1024 / 6));
        raw::send(&mut writer, Message::Sync(SyncMessage::Update(doc.transact().encode_state_as_update_v1(&before))))
            .await;
        // The fast reader keeps up as it goes: nothing waits for the slow one.
        let mark = format!("{i:06}");
        let key = format!("b{}", i % 16);
        read_until(&mut fast, &fast_doc, |d| {
            let t = d.transact();
            fast_blobs.get(&t, &key).is_some_and(|v| v.to_string(&t).starts_with(&mark))
        })
        .await;
    }
    // The server did not give up on the slow reader for being slow: it still counts it ...
    assert_eq!(arno::workflow::CONNECTIONS.get(), connections);
    // ... and once it reads, it ends up with the whole document.
    let mine = arno::workflow::filter::new_doc();
    let my_blobs = mine.get_or_insert_map("blobs");
    // Every blob holds what the writer last put in it.
    let caught_up = |d: &yrs::Doc| {
        let t = d.transact();
        (rounds - 16..rounds).all(|i| {
            my_blobs.get(&t, &format!("b{}", i % 16)).is_some_and(|v| v.to_string(&t).starts_with(&format!("{i:06}")))
        })
    };
    let mut received = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !caught_up(&mine) {
        let next = tokio::time::timeout_at(deadline, slow.next()).await.expect("the slow reader catches up");
        let Some(Ok(Ws::Binary(data))) = next else { panic!("the slow reader's connection ended: {next:?}") };
        received += data.len();
        let mut decoder = DecoderV1::from(data.as_ref());
        for m in MessageReader::new(&mut decoder) {
            if let Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) = m.unwrap() {
                mine.transact_mut().apply_update(yrs::Update::decode_v1(&u).unwrap()).unwrap();
            }
        }
    }
    let sent = rounds * 128 * 1024;
    assert!(received < sent, "the slow reader received {received} bytes of {sent} sent");
}

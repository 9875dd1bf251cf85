//! Fuzz target for what a workflow socket receives: y-protocols frames (sync steps, updates,
//! presence) as a hostile client would send them (engine and how to run: `src/fuzz.rs`; the
//! randomized test of the filter's decisions is `filter_sim.rs`).
//!
//! Every frame goes the server's way: the frame reader, Arno's own struct reader, then yrs —
//! decoding, answering a sync step 1, the Editor's filter against a real document, integration
//! into the room's document, presence as the server rewrites it. Nothing may panic (a panic in
//! the room's writer would stop the room), and an update the filter lets an Editor apply changes
//! nothing but text-editable props.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, MapPrelim, ReadTxn, StateVector, Text, TextPrelim, Transact, Update};

use super::filter::{self, Verdict};
use super::structs;
use super::ws::{End, presence_as_recorded, read_frame};
use crate::fuzz::{self, Rng, Target};

/// The room's document every input is tried against (the filter test's: two screens, nested
/// instances, an edge).
fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(super::filter_sim::base_doc)
}

fn room() -> Doc {
    let doc = filter::new_doc();
    doc.transact_mut().apply_update(Update::decode_v1(base()).expect("the base decodes")).expect("the base applies");
    doc
}

fn sync(m: SyncMessage) -> Vec<u8> {
    Message::Sync(m).encode_v1()
}

/// Frames a real client sends: its sync steps, edits of every kind, presence.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = vec![sync(SyncMessage::SyncStep1(StateVector::default())), Message::AwarenessQuery.encode_v1()];
    let client = Doc::with_client_id(7);
    client.get_or_insert_map("screens");
    client.get_or_insert_array("edges");
    client.transact_mut().apply_update(Update::decode_v1(base()).unwrap()).unwrap();
    out.push(sync(SyncMessage::SyncStep1(client.transact().state_vector())));
    out.push(sync(SyncMessage::SyncStep2(client.transact().encode_state_as_update_v1(&StateVector::default()))));
    let screens = client.get_or_insert_map("screens");
    type Edit<'a> = Box<dyn Fn(&mut yrs::TransactionMut) + 'a>;
    let edits: Vec<Edit> = vec![
        // The Editor's allowed edit: a label's text.
        Box::new(|txn| {
            if let Some(yrs::Out::YMap(s)) = screens.get(txn, "home")
                && let Some(yrs::Out::YMap(r)) = s.get(txn, "root")
                && let Some(yrs::Out::YMap(p)) = r.get(txn, "props")
            {
                p.insert(txn, "label", "Pay now");
            }
        }),
        Box::new(|txn| {
            let s = screens.insert(txn, "new", MapPrelim::default());
            s.insert(txn, "name", "New");
            let t = s.insert(txn, "notes", TextPrelim::new("hello"));
            t.insert(txn, 2, "XY");
            t.remove_range(txn, 0, 1);
        }),
        Box::new(|txn| {
            screens.insert(txn, "ghost", "boo");
            screens.remove(txn, "ghost");
        }),
        Box::new(|txn| {
            screens.remove(txn, "cart");
        }),
    ];
    for edit in edits {
        let before = client.transact().state_vector();
        edit(&mut client.transact_mut());
        let update = client.transact().encode_state_as_update_v1(&before);
        out.push(sync(SyncMessage::Update(update.clone())));
        // Two messages in one frame, as a client flushing its queue sends them.
        let mut both = sync(SyncMessage::Update(update.clone()));
        both.extend(Message::AwarenessQuery.encode_v1());
        out.push(both);
        out.push(update);
    }
    let mut presence = Awareness::new(Doc::with_client_id(7));
    presence
        .set_local_state(r##"{"user":{"name":"Mallory","color":"#ff0000\" onload=\"x"},"cursor":{"x":1,"y":2}}"##)
        .ok();
    if let Ok(update) = presence.update() {
        out.push(Message::Awareness(update).encode_v1());
    }
    out
}

/// The paths where an Editor's accepted update may differ from the room: `…/props/label`.
fn only_labels_differ(before: &Value, after: &Value, path: &mut Vec<String>) -> Result<(), String> {
    if before == after {
        return Ok(());
    }
    let at_label = path.len() >= 2 && path[path.len() - 1] == "label" && path[path.len() - 2] == "props";
    if at_label && before.is_string() && after.is_string() {
        return Ok(());
    }
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: HashSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                path.push(k.clone());
                only_labels_differ(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), path)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                path.push(i.to_string());
                only_labels_differ(x, y, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Err(format!("{}: {before} became {after}", path.join("/"))),
    }
}

fn user() -> crate::auth::User {
    crate::auth::User {
        id: "u1".into(),
        email: "e@example.org".into(),
        name: "Erin Editor".into(),
        handle: "erin".into(),
        org_role: crate::auth::OrgRole::Member,
        created_at: 0,
    }
}

fn run_update(data: &[u8], shape: &mut Vec<String>) {
    // Arno's own reader first, as the socket does: what it refuses never reaches yrs.
    if let Err(e) = structs::decode(data) {
        shape.push(format!("structs:{}", e.split([' ', ':']).take(3).collect::<Vec<_>>().join(" ")));
        return;
    }
    let Ok(update) = Update::decode_v1(data) else {
        shape.push("yrs-decode".into());
        return;
    };
    let doc = room();
    shape.push(format!("adds={}", filter::adds_anything(&doc, &update)));
    // An Editor's update, decided against the document it would be applied to.
    let editable: filter::Editable = HashMap::from([("button".to_owned(), HashSet::from(["label".to_owned()]))]);
    let scratch = room();
    let before = filter::content(&scratch);
    let (verdict, _) = filter::decide(&scratch, data, &editable);
    match verdict {
        Verdict::Apply(stored) => {
            let after = filter::content(&scratch);
            if let Err(e) = only_labels_differ(&before, &after, &mut vec![]) {
                panic!("the filter let an Editor change more than a text prop: {e}");
            }
            // What is stored (and sent to everyone) makes the room what the filter saw.
            let fresh = room();
            fresh.transact_mut().apply_update(Update::decode_v1(&stored).expect("stored bytes decode")).expect("apply");
            assert_eq!(filter::content(&fresh), after, "the stored update is the one that was checked");
            let _ = doc.transact_mut().apply_update(Update::decode_v1(&stored).expect("stored bytes decode"));
            shape.push("editor:apply".into());
        }
        Verdict::Nothing => shape.push("editor:nothing".into()),
        Verdict::Refuse(r) => shape.push(format!("editor:{}", r.split(' ').take(4).collect::<Vec<_>>().join(" "))),
    }
    // A Maker's update: integrated as it is, and the room reads afterwards.
    let mut txn = doc.transact_mut();
    let applied = txn.apply_update(update).is_ok();
    drop(txn);
    let _ = filter::content(&doc);
    let _ = doc.transact().encode_state_as_update_v1(&StateVector::default());
    shape.push(format!("maker={applied}"));
}

fn run_awareness(update: AwarenessUpdate, shape: &mut Vec<String>) {
    let who = user();
    let mut update = update;
    for entry in update.clients.values_mut() {
        let recorded = presence_as_recorded(&entry.json, &who);
        let claimed_object = serde_json::from_str::<Value>(&entry.json).is_ok_and(|v| v.is_object());
        match serde_json::from_str::<Value>(&recorded) {
            Ok(Value::Object(state)) if !claimed_object => {
                assert!(state.is_empty(), "a state that is not an object carries nothing: {recorded}");
            }
            Ok(Value::Object(state)) => {
                // Whatever the client claimed (or left out), `user` is the server's record.
                {
                    let u = state.get("user").unwrap_or_else(|| panic!("a presence state has a user: {recorded}"));
                    assert_eq!(u["name"], "Erin Editor", "the name shown is the server's record: {recorded}");
                    assert_eq!(u["handle"], "erin", "{recorded}");
                    let color = u["color"].as_str().unwrap_or_default();
                    assert!(
                        color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit()),
                        "a colour is #rrggbb: {recorded}"
                    );
                }
            }
            Ok(Value::Null) => {}
            other => panic!("presence as recorded is an object or null: {other:?}"),
        }
        entry.json = recorded.into();
    }
    let mut awareness = Awareness::new(Doc::new());
    shape.push(format!("presence:{}", awareness.apply_update(update).is_ok()));
}

fn run_frame(input: &[u8]) -> String {
    let mut shape = vec![];
    match read_frame(input) {
        Err(End::Error(code, reason)) => {
            return format!("frame {code} {}", reason.split(':').nth(1).unwrap_or(&reason).trim());
        }
        Err(End::Closed) => return "closed".into(),
        Ok(messages) => {
            for m in messages {
                match m {
                    Message::Sync(SyncMessage::SyncStep1(sv)) => {
                        let _ = room().transact().encode_state_as_update_v1(&sv);
                        shape.push("step1".into());
                    }
                    Message::Sync(SyncMessage::SyncStep2(data)) | Message::Sync(SyncMessage::Update(data)) => {
                        run_update(&data, &mut shape);
                    }
                    Message::Awareness(update) => run_awareness(update, &mut shape),
                    Message::AwarenessQuery => shape.push("query".into()),
                    Message::Auth(_) | Message::Custom(..) => shape.push("other".into()),
                }
            }
        }
    }
    // A bare update (as it sits in the durable log) goes the same way.
    run_update(input, &mut shape);
    shape.join(",")
}

/// Mutate the update inside a sync message and frame it again (the byte mutator mostly breaks
/// the frame's length prefix, which the reader refuses first).
fn mutate_update(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let Ok(messages) = read_frame(input) else { return input.to_vec() };
    let mut out = vec![];
    for m in messages {
        let m = match m {
            Message::Sync(SyncMessage::Update(mut data)) | Message::Sync(SyncMessage::SyncStep2(mut data)) => {
                for _ in 0..1 + rng.below(4) {
                    let tokens: &[&[u8]] = &[b"\x00", b"\x01", b"\x08", b"\x28", b"\x77", b"\x7d"];
                    fuzz::mutate_bytes(rng, &mut data, base(), tokens, 16 * 1024);
                }
                Message::Sync(SyncMessage::Update(data))
            }
            other => other,
        };
        out.extend(m.encode_v1());
    }
    out
}

#[test]
fn fuzz_yjs() {
    fuzz::run(&Target {
        name: "yjs",
        seeds,
        // lib0 pieces: message types, struct info bytes, content refs, `Any` tags, type refs.
        dictionary: &[
            b"\x00\x00",
            b"\x00\x01",
            b"\x00\x02",
            b"\x01",
            b"\x03",
            b"\x00",
            b"\x01\x00",
            b"\x07",
            b"\x08",
            b"\x09",
            b"\x0a",
            b"\x24",
            b"\x27",
            b"\x28",
            b"\x84",
            b"\x87",
            b"\xa8",
            b"\xc4",
            b"\xc7",
            b"\x74",
            b"\x77",
            b"\x76",
            b"\x7d",
            b"\x7e",
            b"\x7f",
            b"\x78",
            b"\x79",
            b"\x7b",
            b"\x7c",
            b"\x07screens",
            b"\x05edges",
            b"\x05label",
            b"\x05props",
            b"\x04root",
            b"\x0ccomponent_id",
            b"\x06button",
            b"\x04home",
        ],
        mutate: Some(mutate_update),
        max_len: 16 * 1024,
        run: run_frame,
    });
}

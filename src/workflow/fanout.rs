//! Fan-out: what a room sends its connections, encoded once and shared, and merged.
//!
//! The updates the room's writer stored in one transaction are passed on as one merged update
//! (a valid v1 update that stock Yjs clients apply; applying it equals applying each in turn),
//! and a connection that finds several messages queued for it merges the updates among them, so
//! the number of frames follows the number of commits and of reads, not of updates. Merged
//! updates stay below [`MAX_MERGE_BYTES`] (a larger update goes alone), so no message outgrows
//! what one connection may buffer.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use yrs::Update;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::Outgoing;

/// Updates are merged into one up to this many bytes (the sum of their sizes).
pub const MAX_MERGE_BYTES: usize = 256 * 1024;

/// Updates merged into one. `None` if one does not decode, or if two of them hold structs of
/// the same client at the same clock (a client's resent update, its sync reply after a
/// reconnect): merging is only trusted on disjoint updates, which is what live editing makes.
pub fn merge_updates<B: AsRef<[u8]>>(updates: &[B]) -> Option<Vec<u8>> {
    match updates {
        [] => None,
        [one] => Some(one.as_ref().to_vec()),
        many => {
            let decoded: Vec<Update> =
                many.iter().map(|u| Update::decode_v1(u.as_ref())).collect::<Result<_, _>>().ok()?;
            if !disjoint(&decoded) {
                return None;
            }
            // Guarded anyway: a failure inside the merge means "send them one by one".
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Update::merge_updates(decoded).encode_v1())).ok()
        }
    }
}

/// No two updates hold structs of the same client at the same clock.
fn disjoint(updates: &[Update]) -> bool {
    let mut ranges: HashMap<yrs::ClientID, Vec<(u32, u32)>> = HashMap::new();
    for u in updates {
        let lower = u.state_vector_lower();
        for (client, upper) in u.state_vector().iter() {
            let from = lower.get(client);
            if from < *upper {
                ranges.entry(*client).or_default().push((from, *upper));
            }
        }
    }
    ranges.values_mut().all(|r| {
        r.sort_unstable();
        r.windows(2).all(|w| w[0].1 <= w[1].0)
    })
}

/// The y-protocols message carrying one document update (sync, update, the bytes).
pub fn update_message(update: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(update.len() + 12);
    out.extend_from_slice(&[0, 2]);
    let mut n = update.len() as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(update);
    out
}

/// Consecutive updates grouped up to [`MAX_MERGE_BYTES`] (an update larger than that alone).
fn groups<B: AsRef<[u8]>>(updates: &[B]) -> Vec<&[B]> {
    let mut out = vec![];
    let (mut start, mut size) = (0, 0);
    for (i, u) in updates.iter().enumerate() {
        let len = u.as_ref().len();
        if i > start && size + len > MAX_MERGE_BYTES {
            out.push(&updates[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < updates.len() {
        out.push(&updates[start..]);
    }
    out
}

/// Updates as few merged updates as [`MAX_MERGE_BYTES`] allows, each with its message
/// (`(update, message)`), in order; a group that does not merge goes one update at a time.
pub fn merged<B: AsRef<[u8]>>(updates: &[B]) -> Vec<(Bytes, Bytes)> {
    let with_message = |u: Vec<u8>| {
        let message = Bytes::from(update_message(&u));
        (Bytes::from(u), message)
    };
    let mut out = Vec::with_capacity(1);
    for group in groups(updates) {
        match merge_updates(group) {
            Some(m) => out.push(with_message(m)),
            None => out.extend(group.iter().map(|u| with_message(u.as_ref().to_vec()))),
        }
    }
    out
}

/// The frames for room messages queued for one connection, in order: each run of document
/// updates merged (see [`merged`]; a lone one is sent as the bytes every connection shares),
/// presence as it is.
pub fn coalesce(queued: &[Arc<Outgoing>]) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(1);
    let mut run: Vec<&Arc<Outgoing>> = vec![];
    let flush = |run: &mut Vec<&Arc<Outgoing>>, frames: &mut Vec<Bytes>| {
        match run.as_slice() {
            [] => {}
            [one] => frames.push(one.bytes.clone()),
            many => {
                let updates: Vec<&[u8]> = many.iter().filter_map(|m| m.update.as_deref()).collect();
                frames.extend(merged(&updates).into_iter().map(|(_, message)| message));
            }
        }
        run.clear();
    };
    for m in queued {
        if m.update.is_some() {
            run.push(m);
        } else {
            flush(&mut run, &mut frames);
            frames.push(m.bytes.clone());
        }
    }
    flush(&mut run, &mut frames);
    frames
}

#[cfg(test)]
mod tests {
    use yrs::sync::protocol::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{Array, Doc, Map, ReadTxn, Transact, Update};

    use super::*;

    fn apply(doc: &Doc, update: &[u8]) {
        doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
    }

    fn state(doc: &Doc) -> String {
        format!("{:?}", doc.transact().snapshot()) + &crate::workflow::filter::content(doc).to_string()
    }

    /// Three writers editing concurrently (sets, nested maps, array inserts and deletes), each
    /// seeing the others only now and then: every update, in the order a room would store them.
    fn concurrent_updates(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let docs: Vec<Doc> = (1..=3).map(Doc::with_client_id).collect();
        let mut out = vec![];
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..n {
            let w = (next() % 3) as usize;
            let doc = &docs[w];
            let before = doc.transact().state_vector();
            {
                let screens = doc.get_or_insert_map("screens");
                let edges = doc.get_or_insert_array("edges");
                let mut txn = doc.transact_mut();
                match next() % 5 {
                    0 => {
                        screens.insert(&mut txn, format!("s{}", next() % 20), i as i64);
                    }
                    1 => {
                        let inner = screens.insert(&mut txn, format!("m{}", next() % 5), yrs::MapPrelim::default());
                        inner.insert(&mut txn, "name", format!("Screen {i}"));
                    }
                    2 => {
                        edges.push_back(&mut txn, format!("e{i}"));
                    }
                    3 if edges.len(&txn) > 0 => {
                        let at = (next() % u64::from(edges.len(&txn))) as u32;
                        edges.remove(&mut txn, at);
                    }
                    _ => {
                        screens.remove(&mut txn, &format!("s{}", next() % 20));
                    }
                }
            }
            let update = doc.transact().encode_state_as_update_v1(&before);
            out.push(update.clone());
            // Now and then the others hear of it (so later edits depend on earlier ones).
            for (j, other) in docs.iter().enumerate() {
                if j != w && next() % 3 == 0 {
                    for u in &out {
                        apply(other, u);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn merged_updates_equal_the_updates_one_by_one() {
        for seed in 1..=20u64 {
            let updates = concurrent_updates(seed * 7919, 120);
            let one_by_one = crate::workflow::filter::new_doc();
            for u in &updates {
                apply(&one_by_one, u);
            }
            // In batches of every size a room or a lagging connection would merge.
            for size in [2, 3, 7, 50, 120] {
                let merged_doc = crate::workflow::filter::new_doc();
                for chunk in updates.chunks(size) {
                    for (update, message) in merged(chunk) {
                        assert_eq!(message.as_ref(), Message::Sync(SyncMessage::Update(update.to_vec())).encode_v1());
                        apply(&merged_doc, &update);
                    }
                }
                assert_eq!(state(&merged_doc), state(&one_by_one), "seed {seed}, batches of {size}");
            }
        }
    }

    #[test]
    fn overlapping_updates_are_not_merged_but_go_one_by_one() {
        let updates = concurrent_updates(99, 30);
        // A client's update sent twice, and a sync reply holding everything it had.
        let doc = Doc::with_client_id(77);
        let screens = doc.get_or_insert_map("screens");
        let mut own = vec![];
        for i in 0..3 {
            let before = doc.transact().state_vector();
            screens.insert(&mut doc.transact_mut(), format!("o{i}"), i);
            own.push(doc.transact().encode_state_as_update_v1(&before));
        }
        let everything = doc.transact().encode_state_as_update_v1(&yrs::StateVector::default());
        let batch =
            vec![own[0].clone(), updates[0].clone(), own[0].clone(), own[1].clone(), everything, own[2].clone()];
        assert!(merge_updates(&batch).is_none(), "overlapping updates are not merged");
        let out = merged(&batch);
        assert_eq!(out.len(), batch.len(), "they go one by one");
        let want = crate::workflow::filter::new_doc();
        for u in &batch {
            apply(&want, u);
        }
        let got = crate::workflow::filter::new_doc();
        for (u, _) in &out {
            apply(&got, u);
        }
        assert_eq!(state(&got), state(&want));
        // Disjoint ones still merge.
        assert!(merge_updates(&own).is_some());
        assert!(merge_updates(&updates).is_some());
    }

    #[test]
    fn large_updates_are_not_merged_past_the_limit_and_bad_ones_go_alone() {
        let doc = Doc::new();
        let blob = doc.get_or_insert_map("blob");
        let mut updates = vec![];
        for i in 0..6 {
            let before = doc.transact().state_vector();
            blob.insert(&mut doc.transact_mut(), format!("k{i}"), "x".repeat(100 * 1024));
            updates.push(doc.transact().encode_state_as_update_v1(&before));
        }
        let out = merged(&updates);
        assert_eq!(out.len(), 3, "two 100 KiB updates per merged message");
        assert!(out.iter().all(|(u, _)| u.len() <= MAX_MERGE_BYTES));
        let garbage = vec![updates[0].clone(), vec![0xff, 0xff, 0xff], updates[1].clone()];
        let out = merged(&garbage);
        assert_eq!(out.len(), 3, "a group that does not merge goes one by one");
        assert_eq!(out[1].0.as_ref(), &[0xff, 0xff, 0xff]);
    }

    #[test]
    fn a_connection_merges_runs_of_updates_and_keeps_presence_in_place() {
        let updates = concurrent_updates(42, 6);
        let msg = |u: &Vec<u8>| {
            Arc::new(Outgoing { origin: 1, bytes: update_message(u).into(), update: Some(Bytes::from(u.clone())) })
        };
        let presence = Arc::new(Outgoing { origin: 0, bytes: Bytes::from_static(&[1, 0]), update: None });
        let queued = vec![
            msg(&updates[0]),
            msg(&updates[1]),
            presence.clone(),
            msg(&updates[2]),
            msg(&updates[3]),
            msg(&updates[4]),
        ];
        let frames = coalesce(&queued);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1], presence.bytes);
        let lone = coalesce(&queued[..1]);
        assert_eq!(lone[0].as_ptr(), queued[0].bytes.as_ptr(), "a lone update is the shared bytes, not a copy");
        // What the frames carry equals the five updates.
        let want = crate::workflow::filter::new_doc();
        for u in &updates[..5] {
            apply(&want, u);
        }
        let got = crate::workflow::filter::new_doc();
        for f in [&frames[0], &frames[2]] {
            let Message::Sync(SyncMessage::Update(u)) = Message::decode_v1(f).unwrap() else { panic!("not an update") };
            apply(&got, &u);
        }
        assert_eq!(state(&got), state(&want));
    }
}

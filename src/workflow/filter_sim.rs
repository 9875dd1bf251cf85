//! Randomized test of the workflow filter: Makers, an Editor and a Viewer make random Yjs
//! changes on their own copies; the Editor's and the Viewer's updates reach the server split,
//! merged, repeated, out of order and resent after "reconnects", as a hostile client would send
//! them. After the server has accepted what it accepts, the document may differ from the
//! Makers-only reference only in `textEditable` text values, holds nothing of the Viewer, and
//! every struct of the Editor is a text value of such a prop.
//!
//! `ARNO_FILTER_CASES` sets the number of cases (default 1,500 per test run), `ARNO_FILTER_SEED`
//! the first seed; `scripts/fuzz filter <seconds>` runs as many as fit in that time. A failure
//! names its seed.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::{
    Array, ArrayPrelim, ArrayRef, ClientID, Doc, GetString, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Text,
    TextPrelim, Transact, Update,
};

use super::filter::{self, Editable, Verdict};
use super::structs::{self, Content, Struct};

const MAKER: u64 = 11;
const EDITOR: u64 = 22;
const VIEWER: u64 = 33;
const SERVER: u64 = 99;

/// A small deterministic generator (xorshift64*), so a seed reproduces a case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A client: its document and the updates it produced, not yet sent.
struct Client {
    doc: Doc,
    outbox: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Client {
    fn new(id: u64, base: &[u8]) -> Client {
        let doc = Doc::with_client_id(id);
        doc.get_or_insert_map("screens");
        doc.get_or_insert_array("edges");
        doc.transact_mut().apply_update(Update::decode_v1(base).unwrap()).unwrap();
        let outbox: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = outbox.clone();
        doc.observe_update_v1("outbox", move |txn, e| {
            // Only the client's own changes (not what it received).
            if txn.origin().is_none_or(|o| o.as_ref() != b"remote") {
                sink.lock().unwrap().push(e.update.clone());
            }
        })
        .unwrap();
        Client { doc, outbox }
    }

    fn receive(&self, update: &[u8]) {
        let mut txn = self.doc.transact_mut_with("remote");
        let _ = txn.apply_update(Update::decode_v1(update).unwrap());
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.outbox.lock().unwrap())
    }
}

/// The document both this test and the socket fuzz target (`fuzz.rs`) start from: two screens,
/// nested instances of two components, an edge.
pub(super) fn base_doc() -> Vec<u8> {
    let doc = Doc::with_client_id(1);
    let screens = doc.get_or_insert_map("screens");
    let edges = doc.get_or_insert_array("edges");
    let mut txn = doc.transact_mut();
    for s in ["home", "cart"] {
        let screen = screens.insert(&mut txn, s, MapPrelim::default());
        screen.insert(&mut txn, "name", s);
        let root = screen.insert(&mut txn, "root", MapPrelim::default());
        instance(&mut txn, &root, "button");
        let children = root.insert(&mut txn, "children", ArrayPrelim::default());
        for c in ["button", "card"] {
            let child = children.push_back(&mut txn, MapPrelim::default());
            instance(&mut txn, &child, c);
        }
    }
    edges.push_back(&mut txn, MapPrelim::from([("from".to_owned(), yrs::In::from("home"))]));
    drop(txn);
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

fn instance(txn: &mut yrs::TransactionMut, map: &MapRef, component: &str) {
    map.insert(txn, "component_id", component);
    let props = map.insert(txn, "props", MapPrelim::default());
    props.insert(txn, "label", "L");
    props.insert(txn, "size", "m");
}

/// Every instance map of a document (screen roots and their children, recursively).
fn instances(doc: &Doc) -> Vec<MapRef> {
    let screens = doc.get_or_insert_map("screens");
    let txn = doc.transact();
    let mut out = vec![];
    let mut stack: Vec<MapRef> = screens
        .iter(&txn)
        .filter_map(|(_, v)| match v {
            Out::YMap(s) => match s.get(&txn, "root") {
                Some(Out::YMap(r)) => Some(r),
                _ => None,
            },
            _ => None,
        })
        .collect();
    while let Some(m) = stack.pop() {
        if let Some(Out::YArray(children)) = m.get(&txn, "children") {
            for c in children.iter(&txn) {
                if let Out::YMap(c) = c {
                    stack.push(c);
                }
            }
        }
        out.push(m);
    }
    out
}

fn props_of(doc: &Doc, m: &MapRef) -> Option<MapRef> {
    match m.get(&doc.transact(), "props") {
        Some(Out::YMap(p)) => Some(p),
        _ => None,
    }
}

fn screen_maps(doc: &Doc) -> Vec<MapRef> {
    let screens = doc.get_or_insert_map("screens");
    let txn = doc.transact();
    screens
        .iter(&txn)
        .filter_map(|(_, v)| match v {
            Out::YMap(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// One random change, of any kind a client can make.
fn random_change(doc: &Doc, rng: &mut Rng, maker: bool) {
    let inst = instances(doc);
    let pick = |rng: &mut Rng| inst.get(rng.below(inst.len())).cloned();
    let word = |rng: &mut Rng| format!("w{}", rng.below(1000));
    match rng.below(16) {
        0..=3 => {
            // The allowed change: a text-editable prop's text.
            if let Some(p) = pick(rng).and_then(|m| props_of(doc, &m)) {
                let w = word(rng);
                p.insert(&mut doc.transact_mut(), "label", w);
            }
        }
        4 => {
            if let Some(p) = pick(rng).and_then(|m| props_of(doc, &m)) {
                let w = word(rng);
                p.insert(&mut doc.transact_mut(), "size", w);
            }
        }
        5 => {
            if let Some(p) = pick(rng).and_then(|m| props_of(doc, &m)) {
                let mut txn = doc.transact_mut();
                match rng.below(4) {
                    0 => {
                        p.insert(&mut txn, "label", 42);
                    }
                    1 => {
                        p.remove(&mut txn, "label");
                    }
                    2 => {
                        let nested = p.insert(&mut txn, "label", MapPrelim::default());
                        nested.insert(&mut txn, "x", "y");
                    }
                    _ => {
                        let t = p.insert(&mut txn, "label", TextPrelim::new("t"));
                        t.push(&mut txn, "ext");
                    }
                }
            }
        }
        6 => {
            // Invisible: set and delete in one transaction, anywhere.
            let screens = screen_maps(doc);
            if let Some(s) = screens.get(rng.below(screens.len())) {
                let mut txn = doc.transact_mut();
                s.insert(&mut txn, "ghost", "boo");
                s.remove(&mut txn, "ghost");
            }
        }
        7 => {
            let screens = screen_maps(doc);
            if let Some(s) = screens.get(rng.below(screens.len())) {
                let w = word(rng);
                s.insert(&mut doc.transact_mut(), "name", w);
            }
        }
        8 => {
            let screens = doc.get_or_insert_map("screens");
            let mut txn = doc.transact_mut();
            let id = format!("s{}", rng.below(50));
            let s = screens.insert(&mut txn, id, MapPrelim::default());
            s.insert(&mut txn, "name", "new");
        }
        9 => {
            let edges: ArrayRef = doc.get_or_insert_array("edges");
            let mut txn = doc.transact_mut();
            if rng.chance(50) || edges.len(&txn) == 0 {
                edges.push_back(&mut txn, MapPrelim::from([("from".to_owned(), yrs::In::from("x"))]));
            } else {
                edges.remove(&mut txn, 0);
            }
        }
        10 => {
            let other = doc.get_or_insert_map("elsewhere");
            let w = word(rng);
            other.insert(&mut doc.transact_mut(), w, "hidden");
        }
        11 => {
            let text = doc.get_or_insert_text("notes");
            let mut txn = doc.transact_mut();
            text.push(&mut txn, "note");
            let len = text.len(&txn);
            text.format(&mut txn, 0, len, std::collections::HashMap::from([("b".into(), true.into())]));
        }
        12 => {
            // (Makers keep components, so the check below can tell text-editable props.)
            if let Some(m) = pick(rng).filter(|_| !maker) {
                m.insert(&mut doc.transact_mut(), "component_id", "card");
            }
        }
        13 => {
            if let Some(m) = pick(rng) {
                let mut txn = doc.transact_mut();
                let children = match m.get(&txn, "children") {
                    Some(Out::YArray(a)) => a,
                    _ => m.insert(&mut txn, "children", ArrayPrelim::default()),
                };
                let child = children.push_back(&mut txn, MapPrelim::default());
                instance(&mut txn, &child, "button");
            }
        }
        14 => {
            let screens = doc.get_or_insert_map("screens");
            let keys: Vec<String> = screens.keys(&doc.transact()).map(str::to_owned).collect();
            if let Some(k) = keys.get(rng.below(keys.len())) {
                screens.remove(&mut doc.transact_mut(), k);
            }
        }
        _ => {
            // Several changes in one transaction: an allowed one hiding a forbidden one.
            if let Some(m) = pick(rng) {
                let mut txn = doc.transact_mut();
                if let Some(Out::YMap(p)) = m.get(&txn, "props") {
                    p.insert(&mut txn, "label", "ok");
                }
                m.insert(&mut txn, "extra", "sneaky");
                m.remove(&mut txn, "extra");
            }
        }
    }
}

/// How a hostile client's pending updates reach the server this step.
fn deliver(client: &Client, queue: &mut Vec<Vec<u8>>, server_sv: &StateVector, rng: &mut Rng) -> Vec<Vec<u8>> {
    queue.extend(client.take());
    if queue.is_empty() {
        return vec![];
    }
    match rng.below(6) {
        0 => vec![queue.remove(0)],
        1 => {
            // Two merged into one message.
            let a = queue.remove(0);
            let b = if queue.is_empty() { Update::EMPTY_V1.to_vec() } else { queue.remove(0) };
            vec![yrs::merge_updates_v1([a.as_slice(), b.as_slice()]).unwrap()]
        }
        2 => {
            // Out of order.
            let i = rng.below(queue.len());
            vec![queue.remove(i)]
        }
        3 => {
            // Repeated.
            let u = queue[0].clone();
            vec![u.clone(), queue.remove(0), u]
        }
        4 => {
            // A "reconnect": sync step 2 against the server's state vector.
            queue.clear();
            vec![client.doc.transact().encode_state_as_update_v1(server_sv)]
        }
        _ => std::mem::take(queue),
    }
}

fn editable() -> Editable {
    Editable::from([("button".to_owned(), std::collections::HashSet::from(["label".to_owned()]))])
}

/// The leaves where two JSON values differ.
fn diff(a: &Value, b: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                path.push(k.clone());
                diff(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), path, out);
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                path.push(i.to_string());
                diff(v, w, path, out);
                path.pop();
            }
        }
        (v, w) if v != w => out.push((path.clone(), v.clone(), w.clone())),
        _ => {}
    }
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let base = base_doc();
    let server = Client::new(SERVER, &base);
    let reference = Client::new(SERVER + 1, &base);
    let maker = Client::new(MAKER, &base);
    let editor = Client::new(EDITOR + rng.below(3) as u64, &base);
    let viewer = Client::new(VIEWER, &base);
    let (mut to_editor, mut to_viewer): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (vec![], vec![]);
    let (mut editor_queue, mut viewer_queue) = (vec![], vec![]);
    let editable = editable();
    let steps = 10 + rng.below(30);
    for _ in 0..steps {
        match rng.below(5) {
            0 => {
                random_change(&maker.doc, &mut rng, true);
                for u in maker.take() {
                    // Makers' updates apply directly, in order, on the server and the reference.
                    server.receive(&u);
                    reference.receive(&u);
                    to_editor.push(u.clone());
                    to_viewer.push(u);
                }
            }
            1 => random_change(&editor.doc, &mut rng, false),
            2 => random_change(&viewer.doc, &mut rng, false),
            _ => {
                // Peers hear the Makers late and out of order.
                if !to_editor.is_empty() {
                    let i = rng.below(to_editor.len());
                    editor.receive(&to_editor.remove(i));
                }
                if !to_viewer.is_empty() {
                    viewer.receive(&to_viewer.remove(0));
                }
            }
        }
        let sv = server.doc.transact().state_vector();
        for u in deliver(&editor, &mut editor_queue, &sv, &mut rng) {
            let (verdict, spoiled) = filter::decide(&server.doc, &u, &editable);
            if spoiled {
                return Err(format!("seed {seed}: the filter left the server document spoiled ({verdict:?})"));
            }
            if let Verdict::Apply(stored) = verdict {
                // What is stored must integrate fully on a fresh copy of the log.
                let check = Update::decode_v1(&stored).map_err(|e| format!("seed {seed}: stored bytes: {e}"))?;
                let _ = check;
            }
        }
        for u in deliver(&viewer, &mut viewer_queue, &sv, &mut rng) {
            let update = Update::decode_v1(&u).unwrap();
            // A reader's update is never stored; the server only tells "adds nothing" apart.
            let _ = filter::adds_anything(&server.doc, &update);
        }
    }
    let txn = server.doc.transact();
    if txn.has_missing_updates() {
        // Only Makers' updates may leave something pending (they arrive in order: never).
        return Err(format!("seed {seed}: the server holds pending structs"));
    }
    let state = txn.encode_state_as_update_v1(&StateVector::default());
    drop(txn);
    let decoded = structs::decode(&state).map_err(|e| format!("seed {seed}: {e}"))?;
    if decoded.structs.contains_key(&ClientID::new(VIEWER)) {
        return Err(format!("seed {seed}: the Viewer's structs reached the document"));
    }
    for (client, list) in &decoded.structs {
        if !(EDITOR..EDITOR + 3).contains(&client.get()) {
            continue;
        }
        for s in list {
            match s {
                Struct::Item(i)
                    if matches!(&i.content, Content::Any(v) if matches!(v.as_slice(), [yrs::Any::String(_)]))
                        || i.content == Content::Deleted => {}
                // A text value collected after a Maker deleted what held it.
                Struct::Gc { .. } => {}
                other => return Err(format!("seed {seed}: an Editor struct that is not a text value: {other:?}")),
            }
        }
    }
    let (got, want) = (filter::content(&server.doc), filter::content(&reference.doc));
    let mut changes = vec![];
    diff(&want, &got, &mut vec![], &mut changes);
    for (path, old, new) in changes {
        let _ = &old;
        let n = path.len();
        let allowed = n >= 5
            && path[0] == "screens"
            && path[2] == "root"
            && path[n - 2] == "props"
            && path[n - 1] == "label"
            // (Whatever the Makers have there: an Editor's text set concurrently with a Maker's
            // change of the same prop may win, as in any Yjs document.)
            && new.is_string()
            && path[..n - 2].iter().try_fold(&got, |v, k| v.get(k.as_str()).or_else(|| k.parse::<usize>().ok().and_then(|i| v.get(i))))
                .and_then(|inst| inst.get("component_id"))
                == Some(&Value::from("button"));
        if !allowed {
            return Err(format!(
                "seed {seed}: the document differs from the Makers' at {}: {old} → {new}",
                path.join("/")
            ));
        }
    }
    // The reference's other roots and texts are the Makers' own (the server's must match).
    let notes = |d: &Doc| d.get_or_insert_text("notes").get_string(&d.transact());
    if notes(&server.doc) != notes(&reference.doc) {
        return Err(format!("seed {seed}: a text root differs from the Makers'"));
    }
    Ok(())
}

#[test]
fn random_hostile_updates_change_only_text_props() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("ARNO_FILTER_CASES").unwrap_or(1500);
    let first = env("ARNO_FILTER_SEED").unwrap_or(1);
    // `scripts/fuzz filter <seconds>`: as many cases as fit, from a seed of the clock.
    let deadline = env("ARNO_FUZZ_SECONDS").map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    let first = match (deadline, env("ARNO_FILTER_SEED")) {
        (Some(_), None) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() << 20)
        }
        _ => first,
    };
    let started = std::time::Instant::now();
    let mut seed = first;
    loop {
        match deadline {
            Some(d) if std::time::Instant::now() >= d => break,
            None if seed >= first + cases => break,
            _ => {}
        }
        if let Err(e) = run_case(seed) {
            panic!("{e}");
        }
        seed += 1;
    }
    eprintln!("filter: seeds {first}..{seed} ({} cases) in {:.1} s", seed - first, started.elapsed().as_secs_f64());
}

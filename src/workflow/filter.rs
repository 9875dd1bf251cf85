//! Who may change what in a workflow document, decided by the server on every incoming update.
//!
//! - **Makers** (and Admins) change anything.
//! - **Editors** change only the values of props whose spec marks them `textEditable`, and only
//!   to text: `screens/{id}/root(/children/{i})*/props/{prop_id}`.
//! - **Frontends, Viewers, Auditors** and everyone on an archived project read: their updates
//!   are never stored, whatever they contain ([`adds_anything`] tells a harmless sync reply from
//!   an attempted change, which is refused).
//!
//! An Editor's update is decided by the room's single writer, in arrival order, against exactly
//! the state it will be applied to (the document plus every update accepted before it), by
//! reading its structs ([`decide`]); what is stored and sent on is the update as the server
//! integrated it. The check costs a pass over the document per Editor update; Makers' updates,
//! the common case, skip it.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use serde_json::Value;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Any, ClientID, Doc, ID, ReadTxn, StateVector, Transact, Update};

use super::structs::{self, Content, Parent, Struct, type_ref};

/// Component id → its `textEditable` prop ids.
pub type Editable = HashMap<String, HashSet<String>>;

/// What a connection may write.
#[derive(Debug, Clone)]
pub enum Writer {
    /// Anything.
    Full,
    /// Text props only.
    TextProps(Arc<Editable>),
    /// Nothing.
    ReadOnly,
    /// Nothing, whatever the role: the project is archived.
    Archived,
}

/// A document with the workflow's root types defined (`screens` map, `edges` array): Yjs only
/// reads a root's content once the reader says what type it is.
pub fn new_doc() -> Doc {
    let doc = Doc::new();
    doc.get_or_insert_map("screens");
    doc.get_or_insert_array("edges");
    doc
}

/// The document's content as JSON: root name → value (roots of unknown type are `null`).
pub fn content(doc: &Doc) -> Value {
    let txn = doc.transact();
    let mut roots = serde_json::Map::new();
    for (name, out) in txn.root_refs() {
        let any = out.to_json(&txn);
        roots.insert(name.to_owned(), serde_json::to_value(&any).unwrap_or(Value::Null));
    }
    Value::Object(roots)
}

/// What happens to one incoming update.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Store and apply these bytes (for a restricted writer: the update as the server
    /// integrated it, without anything it did not need).
    Apply(Vec<u8>),
    /// The update adds nothing the document does not have: drop it quietly.
    Nothing,
    /// Refused, with the reason for the user.
    Refuse(String),
}

/// For a reader: whether `update` would add anything to `doc` (new structs, or deletions of
/// items that are not deleted yet). A reader's update is never stored; one that adds nothing
/// (a y-websocket client's sync step 2 after connecting) is dropped quietly, any other refused.
pub fn adds_anything(doc: &Doc, update: &Update) -> bool {
    let txn = doc.transact();
    if has_new_structs(update, &txn.state_vector()) {
        return true;
    }
    if update.delete_set().is_empty() {
        return false;
    }
    !update.delete_set().diff(&txn.snapshot().delete_set).is_empty()
}

/// Whether `update` holds structs beyond `sv`: ones that follow on (`Update::extends`) or that
/// lie further ahead (they would wait as pending; the document a connection looks at may lag
/// behind updates still queued for the log).
pub fn has_new_structs(update: &Update, sv: &StateVector) -> bool {
    update.extends(sv) || update.state_vector_lower().iter().any(|(client, clock)| *clock >= sv.get(client))
}

/// For a writer who may change only `textEditable` props (Editors): decide against exactly
/// `scratch`, the state the update will be applied to, and apply it there if allowed.
///
/// The update's structs are read one by one (see [`super::structs`]); it passes only if every
/// struct it adds is a text value (one lib0 string) set on a `textEditable` prop of an existing
/// instance — `screens/{id}/root(/children/{i})*/props/{prop}` — and every id it deletes is an
/// earlier value of such a prop that it replaces. Anything else is refused: other roots or
/// keys, nested types, text and XML types, keyless map items, garbage-collected ranges,
/// references to structs or deletions the server does not have (which Yjs would keep pending
/// and integrate later, unchecked), and structs overlapping what the server already has.
///
/// Returns the verdict and whether `scratch` may have been left in a state other than
/// "before, or before plus the accepted update" (then the caller rebuilds it).
pub fn decide(scratch: &Doc, data: &[u8], editable: &Editable) -> (Verdict, bool) {
    let refuse = |reason: String| (Verdict::Refuse(reason), false);
    let update = match structs::decode(data) {
        Ok(u) => u,
        Err(e) => return refuse(e),
    };
    let state = scratch.transact().encode_state_as_update_v1(&StateVector::default());
    let mut index = match structs::decode(&state).and_then(|d| Index::build(d, false)) {
        Ok(i) => i,
        Err(e) => {
            return refuse(format!("the document holds content this role's changes cannot be checked against ({e})"));
        }
    };
    let checked = match index.check_text_props(update, editable) {
        Ok(Some(checked)) => checked,
        Ok(None) => return (Verdict::Nothing, false),
        Err(reason) => return refuse(reason),
    };
    let parsed = match Update::decode_v1(data) {
        Ok(u) => u,
        Err(e) => return refuse(format!("malformed update: {e}")),
    };
    let mut txn = scratch.transact_mut();
    if let Err(e) = txn.apply_update(parsed) {
        return (Verdict::Refuse(format!("the update could not be applied: {e}")), true);
    }
    if txn.has_missing_updates() {
        // The checks above make this unreachable; never keep a pending struct.
        return (Verdict::Refuse("the update depends on changes the server does not have; reload".into()), true);
    }
    txn.commit();
    let stored = txn.encode_update_v1();
    drop(txn);
    // What yrs integrated must be exactly what was checked: the same new clocks per client.
    let integrated = structs::decode(&stored).map(|d| {
        d.structs
            .iter()
            .map(|(c, l)| (*c, l.iter().map(Struct::clocks).sum::<u32>()))
            .filter(|(_, n)| *n > 0)
            .collect::<HashMap<ClientID, u32>>()
    });
    if integrated.as_ref() != Ok(&checked) {
        return (Verdict::Refuse("the update could not be checked; reload the page".into()), true);
    }
    (Verdict::Apply(stored), false)
}

/// Where a struct lives, once resolved.
#[derive(Debug, Clone)]
enum Place {
    Root(Arc<str>),
    /// Inside the type held by this item, under this key (None: sequence content).
    In(ID, Option<Arc<str>>),
    /// Unknown (garbage-collected neighbours, or references to structs nobody has).
    Lost,
}

#[derive(Debug)]
struct Entry {
    clock: u32,
    len: u32,
    origin: Option<ID>,
    right_origin: Option<ID>,
    /// Written in the update, or resolved from a neighbour.
    place: Option<Place>,
    content: Content,
    /// Added by the update under check.
    new: bool,
}

/// Every struct of a document (and of one candidate update), by id.
struct Index {
    clients: HashMap<ClientID, Vec<Entry>>,
    /// Deleted ranges of the document, per client, sorted and merged.
    deleted: HashMap<ClientID, Vec<(u32, u32)>>,
    /// Values of map keys: (map item, key) → entries.
    keyed: HashMap<(ID, Arc<str>), Vec<ID>>,
}

/// The longest text an Editor may set on a prop.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Ancestors looked at, at most (instances nest through `children`).
const MAX_DEPTH: usize = 512;

fn merge_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (clock, len) in ranges {
        match out.last_mut() {
            Some((c, l)) if *c + *l >= clock => *l = (*l).max(clock + len - *c),
            _ => out.push((clock, len)),
        }
    }
    out
}

fn place_of(parent: &Parent, sub: &Option<Arc<str>>) -> Option<Place> {
    match parent {
        Parent::Root(name) => Some(Place::Root(name.clone())),
        Parent::Item(id) => Some(Place::In(*id, sub.clone())),
        Parent::Inherited => None,
    }
}

impl Index {
    fn build(doc: structs::Decoded, new: bool) -> Result<Index, String> {
        let mut index = Index { clients: HashMap::new(), deleted: HashMap::new(), keyed: HashMap::new() };
        for (client, list) in doc.structs {
            let entries = index.clients.entry(client).or_default();
            for s in list {
                entries.push(Self::entry(s, new));
            }
        }
        for (client, ranges) in doc.deletes {
            index.deleted.insert(client, merge_ranges(ranges));
        }
        index.resolve_all();
        Ok(index)
    }

    fn entry(s: Struct, new: bool) -> Entry {
        match s {
            Struct::Gc { id, len } => Entry {
                clock: id.clock,
                len,
                origin: None,
                right_origin: None,
                place: Some(Place::Lost),
                content: Content::Deleted,
                new,
            },
            Struct::Item(i) => Entry {
                clock: i.id.clock,
                len: i.len,
                origin: i.origin,
                right_origin: i.right_origin,
                place: place_of(&i.parent, &i.parent_sub),
                content: i.content,
                new,
            },
        }
    }

    fn locate(&self, id: &ID) -> Option<(ClientID, usize)> {
        let list = self.clients.get(&id.client)?;
        let i = list.partition_point(|e| e.clock + e.len <= id.clock);
        (i < list.len() && list[i].clock <= id.clock).then_some((id.client, i))
    }

    fn get(&self, id: &ID) -> Option<&Entry> {
        self.locate(id).map(|(c, i)| &self.clients[&c][i])
    }

    /// The clock after the last struct of `client`.
    fn end(&self, client: ClientID) -> u32 {
        self.clients.get(&client).and_then(|l| l.last()).map_or(0, |e| e.clock + e.len)
    }

    fn is_deleted(&self, id: &ID) -> bool {
        self.deleted.get(&id.client).is_some_and(|r| {
            let i = r.partition_point(|(c, l)| c + l <= id.clock);
            i < r.len() && r[i].0 <= id.clock
        })
    }

    /// Resolve every inherited place (Yjs: an item without a written parent takes its left
    /// neighbour's, else its right neighbour's; a garbage-collected neighbour leaves it lost).
    fn resolve_all(&mut self) {
        let ids: Vec<ID> = self
            .clients
            .iter()
            .flat_map(|(c, l)| l.iter().filter(|e| e.place.is_none()).map(|e| ID::new(*c, e.clock)))
            .collect();
        for id in ids {
            let mut chain = vec![];
            let mut cur = id;
            let found = loop {
                let Some((c, i)) = self.locate(&cur) else { break Place::Lost };
                let e = &self.clients[&c][i];
                if let Some(p) = &e.place {
                    break p.clone();
                }
                if chain.len() > MAX_DEPTH * 64 {
                    break Place::Lost;
                }
                chain.push((c, i));
                let next = match (e.origin, e.right_origin) {
                    (Some(o), _) if self.get(&o).is_some_and(|n| !matches!(n.place, Some(Place::Lost))) => o,
                    (_, Some(r)) => r,
                    (Some(o), None) => o,
                    (None, None) => break Place::Lost,
                };
                cur = next;
            };
            for (c, i) in chain {
                if let Some(list) = self.clients.get_mut(&c) {
                    list[i].place = Some(found.clone());
                }
            }
        }
        self.keyed.clear();
        for (c, list) in &self.clients {
            for e in list {
                if let Some(Place::In(parent, Some(key))) = &e.place {
                    self.keyed.entry((*parent, key.clone())).or_default().push(ID::new(*c, e.clock));
                }
            }
        }
    }

    /// A live map type held by item `id` (not deleted, not new).
    fn live_type(&self, id: &ID, type_ref: u8) -> Option<&Entry> {
        self.get(id).filter(|e| !e.new && e.content == Content::Type(type_ref) && !self.is_deleted(id))
    }

    /// If `map` is the `props` map of a live instance in a live screen, that instance's
    /// component id.
    fn props_owner(&self, map: &ID) -> Option<String> {
        let props = self.live_type(map, type_ref::MAP)?;
        let Some(Place::In(instance, Some(key))) = &props.place else { return None };
        if key.as_ref() != "props" {
            return None;
        }
        let component = self.text_value(instance, "component_id")?;
        // Up to the screen: root of a screen, or an element of an instance's `children`.
        let mut node = *instance;
        for _ in 0..MAX_DEPTH {
            let entry = self.live_type(&node, type_ref::MAP)?;
            match &entry.place {
                Some(Place::In(screen, Some(k))) if k.as_ref() == "root" => {
                    let screen = self.live_type(screen, type_ref::MAP)?;
                    return matches!(&screen.place, Some(Place::Root(r)) if r.as_ref() == "screens")
                        .then_some(component);
                }
                Some(Place::In(children, None)) => {
                    let array = self.live_type(children, type_ref::ARRAY)?;
                    match &array.place {
                        Some(Place::In(parent, Some(k))) if k.as_ref() == "children" => node = *parent,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        None
    }

    /// The current text value of `key` in the map held by `map`.
    fn text_value(&self, map: &ID, key: &str) -> Option<String> {
        let ids = self.keyed.get(&(*map, Arc::from(key)))?;
        let mut live = ids.iter().filter(|id| !self.is_deleted(id)).filter_map(|id| self.get(id));
        let first = live.next()?;
        if live.next().is_some() {
            return None;
        }
        match &first.content {
            Content::Any(v) => match v.as_slice() {
                [Any::String(s)] => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The checks of [`decide`] for one decoded update: the new clocks per client it adds, or
    /// `None` when it adds nothing.
    fn check_text_props(
        &mut self,
        update: structs::Decoded,
        editable: &Editable,
    ) -> Result<Option<HashMap<ClientID, u32>>, String> {
        let refuse =
            |what: &str| Err(format!("your role may only change the text of props marked textEditable ({what})"));
        let resync = || {
            Err("the update depends on changes the server does not have (or overlaps them); reload the page".to_owned())
        };
        // 1. Its structs, after what the document has; they must follow on without a gap.
        let mut added = 0usize;
        let mut checked: HashMap<ClientID, u32> = HashMap::new();
        for (client, list) in update.structs {
            let mut expected = self.end(client);
            let known = expected;
            for s in list {
                let (start, len) = (s.id().clock, s.clocks());
                if start + len <= known {
                    continue; // already integrated
                }
                if start != expected {
                    return resync();
                }
                expected = start + len;
                if matches!(s, Struct::Gc { .. }) {
                    return refuse("garbage-collected structure");
                }
                added += 1;
                *checked.entry(client).or_default() += len;
                self.clients.entry(client).or_default().push(Self::entry(s, true));
            }
        }
        // Entries it deletes that are not deleted yet (by their first id).
        let mut deletes: Vec<ID> = vec![];
        for (client, ranges) in update.deletes {
            for (clock, len) in merge_ranges(ranges) {
                let mut c = clock;
                while c < clock + len {
                    let id = ID::new(client, c);
                    let Some(e) = self.get(&id) else {
                        return Err("the update deletes something the server does not have; reload the page".into());
                    };
                    let next = e.clock + e.len;
                    if e.new || !self.is_deleted(&id) {
                        deletes.push(ID::new(client, e.clock));
                    }
                    c = next;
                }
            }
        }
        if added == 0 && deletes.is_empty() {
            return Ok(None);
        }
        self.resolve_all();
        // 2. Every new struct: a text value of a text-editable prop.
        let mut touched: HashMap<(ID, Arc<str>), bool> = HashMap::new();
        type Link = (ID, u32, Option<ID>, bool);
        let mut chains: HashMap<(ID, Arc<str>), Vec<Link>> = HashMap::new();
        let new_ids: Vec<ID> =
            self.clients.iter().flat_map(|(c, l)| l.iter().filter(|e| e.new).map(|e| ID::new(*c, e.clock))).collect();
        let deleted_by_update: HashSet<ID> = deletes.iter().copied().collect();
        for id in &new_ids {
            let Some(e) = self.get(id) else { return resync() };
            for neighbour in [e.origin, e.right_origin].into_iter().flatten() {
                if self.get(&neighbour).is_none() {
                    return Err("the update depends on changes the server does not have; reload the page".into());
                }
            }
            let (map, key) = match &e.place {
                Some(Place::In(map, Some(key))) => (*map, key.clone()),
                Some(Place::Root(_)) => return refuse("a root"),
                Some(Place::In(_, None)) => return refuse("a list or text"),
                _ => return Err("the update depends on changes the server does not have; reload the page".into()),
            };
            // A map value is set with its key's current value as left origin and nothing to
            // its right (Yjs' `map.set`); anything else could land elsewhere where the left
            // origin is gone, or leave the key empty.
            if e.right_origin.is_some() {
                return refuse("a value placed before another");
            }
            let value = match &e.content {
                Content::Any(v) => match v.as_slice() {
                    [Any::String(s)] if s.chars().count() <= MAX_TEXT_CHARS => true,
                    [Any::String(_)] => return refuse(&format!("a text over {MAX_TEXT_CHARS} characters")),
                    _ => return refuse("a value that is not text"),
                },
                // An earlier value overwritten before it was sent (allowed unless it ends up the
                // key's value: see step 4).
                Content::Deleted => false,
                _ => return refuse("structure"),
            };
            self.editable_prop(&map, &key, editable)?;
            let visible = value && !self.is_deleted(id) && !deleted_by_update.contains(id);
            let slot = touched.entry((map, key.clone())).or_default();
            *slot |= visible;
            chains.entry((map, key)).or_default().push((*id, e.len, e.origin, visible));
        }
        // The last new value of each key (no other new value follows it) must be a text that
        // stays: a deleted one there would leave the key empty.
        for list in chains.values() {
            for (id, len, _, visible) in list {
                let last = ID::new(id.client, id.clock + len - 1);
                let followed = list.iter().any(|(_, _, origin, _)| *origin == Some(last));
                if !followed && !visible {
                    return refuse("removing a value");
                }
            }
        }
        // 3. Every deletion: an earlier value of such a prop.
        for id in &deletes {
            let Some(e) = self.get(id) else { return resync() };
            let Some(Place::In(map, Some(key))) = e.place.clone() else { return refuse("a deletion") };
            if !e.new
                && !matches!(&e.content, Content::Any(v) if v.iter().all(|a| matches!(a, Any::String(_) | Any::Null)))
                && e.content != Content::Deleted
            {
                return refuse("a deletion of a value that is not text");
            }
            self.editable_prop(&map, &key, editable)?;
            touched.entry((map, key)).or_default();
        }
        // 4. A prop it touches keeps a text value (changing is allowed, removing is not).
        if let Some(((_, key), _)) = touched.iter().find(|(_, visible)| !**visible) {
            return refuse(&format!("removing the value of {key}"));
        }
        Ok(Some(checked))
    }

    fn editable_prop(&self, map: &ID, key: &str, editable: &Editable) -> Result<(), String> {
        let Some(component) = self.props_owner(map) else {
            return Err(format!(
                "your role may only change the text of props marked textEditable (not {key} outside an instance's props)"
            ));
        };
        if editable.get(&component).is_some_and(|props| props.contains(key)) {
            Ok(())
        } else {
            Err(format!("your role may only change the text of props marked textEditable (not {key})"))
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Array, ArrayPrelim, Map, MapPrelim, MapRef, Out};

    fn doc_with_screen() -> Doc {
        let doc = Doc::with_client_id(1);
        let screens = doc.get_or_insert_map("screens");
        doc.get_or_insert_array("edges");
        let mut txn = doc.transact_mut();
        let screen = screens.insert(&mut txn, "s1", MapPrelim::default());
        screen.insert(&mut txn, "name", "Home");
        let root = screen.insert(&mut txn, "root", MapPrelim::default());
        root.insert(&mut txn, "component_id", "button");
        let props = root.insert(&mut txn, "props", MapPrelim::default());
        props.insert(&mut txn, "label", "Buy");
        props.insert(&mut txn, "size", "large");
        let children = root.insert(&mut txn, "children", ArrayPrelim::default());
        let child = children.push_back(&mut txn, MapPrelim::default());
        child.insert(&mut txn, "component_id", "button");
        let cprops = child.insert(&mut txn, "props", MapPrelim::default());
        cprops.insert(&mut txn, "label", "Child");
        drop(txn);
        doc
    }

    fn copy(doc: &Doc, client: u64) -> Doc {
        let c = Doc::with_client_id(client);
        c.get_or_insert_map("screens");
        c.get_or_insert_array("edges");
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        c.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        c
    }

    /// Make a change on a copy of `doc` (as client 2) and return it as update bytes relative to `doc`.
    fn change(doc: &Doc, f: impl FnOnce(&Doc)) -> Vec<u8> {
        let c = copy(doc, 2);
        let sv = doc.transact().state_vector();
        f(&c);
        c.transact().encode_state_as_update_v1(&sv)
    }

    fn map_at(doc: &Doc, path: &[&str]) -> MapRef {
        let mut map = doc.get_or_insert_map("screens");
        let txn = doc.transact();
        for key in path {
            map = match map.get(&txn, key) {
                Some(Out::YMap(m)) => m,
                Some(Out::YArray(a)) => match a.get(&txn, 0) {
                    Some(Out::YMap(m)) => m,
                    _ => panic!(),
                },
                _ => panic!("{key}"),
            };
        }
        map
    }

    fn editor() -> HashMap<String, HashSet<String>> {
        HashMap::from([("button".into(), HashSet::from(["label".to_owned()]))])
    }

    fn verdict(doc: &Doc, update: &[u8]) -> Verdict {
        let scratch = copy(doc, 9);
        decide(&scratch, update, &editor()).0
    }

    #[test]
    fn editors_change_text_props_only() {
        let doc = doc_with_screen();
        let label = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "label", "Pay");
        });
        assert!(matches!(verdict(&doc, &label), Verdict::Apply(_)));
        let nested = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "children", "props"]);
            p.insert(&mut d.transact_mut(), "label", "Kid");
        });
        assert!(matches!(verdict(&doc, &nested), Verdict::Apply(_)));

        let refused = |f: &dyn Fn(&Doc)| {
            let u = change(&doc, |d| f(d));
            assert!(matches!(verdict(&doc, &u), Verdict::Refuse(_)), "{:?}", verdict(&doc, &u));
        };
        refused(&|d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "size", "small");
        });
        refused(&|d| {
            let s = map_at(d, &["s1"]);
            s.insert(&mut d.transact_mut(), "name", "Start");
        });
        refused(&|d| {
            let edges = d.get_or_insert_array("edges");
            edges.push_back(&mut d.transact_mut(), MapPrelim::from([("id".to_owned(), yrs::In::from("e1"))]));
        });
        // A number into a text prop, removing it, or a nested type in its place.
        refused(&|d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "label", 3);
        });
        refused(&|d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.remove(&mut d.transact_mut(), "label");
        });
        refused(&|d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "label", MapPrelim::default());
        });
        // Another root, created and filled; a key set and deleted again (invisible in JSON).
        refused(&|d| {
            let other = d.get_or_insert_map("elsewhere");
            other.insert(&mut d.transact_mut(), "x", "y");
        });
        refused(&|d| {
            let s = map_at(d, &["s1"]);
            let mut txn = d.transact_mut();
            s.insert(&mut txn, "ghost", "boo");
            s.remove(&mut txn, "ghost");
        });
        // Changing the component an instance is.
        refused(&|d| {
            let r = map_at(d, &["s1", "root"]);
            r.insert(&mut d.transact_mut(), "component_id", "link");
        });
        // Nothing new: nothing to store.
        assert_eq!(verdict(&doc, &change(&doc, |_| {})), Verdict::Nothing);
    }

    /// The bypass: two updates from one client where the second depends on the first. Each is
    /// decided against the state it is applied to, so the second cannot ride on the first.
    #[test]
    fn dependent_updates_are_decided_in_order() {
        let doc = doc_with_screen();
        let c = copy(&doc, 2);
        let sv0 = c.transact().state_vector();
        {
            // An invisible first update: set and delete a key in one transaction.
            let s = map_at(&c, &["s1"]);
            let mut txn = c.transact_mut();
            s.insert(&mut txn, "ghost", "boo");
            s.remove(&mut txn, "ghost");
        }
        let first = c.transact().encode_state_as_update_v1(&sv0);
        let sv1 = c.transact().state_vector();
        {
            let s = map_at(&c, &["s1"]);
            s.insert(&mut c.transact_mut(), "name", "Pwned");
        }
        let second = c.transact().encode_state_as_update_v1(&sv1);
        let scratch = copy(&doc, 9);
        assert!(matches!(decide(&scratch, &first, &editor()).0, Verdict::Refuse(_)));
        // Against the state without the first, the second depends on structs the server lacks.
        let (v, _) = decide(&scratch, &second, &editor());
        assert!(matches!(v, Verdict::Refuse(ref r) if r.contains("does not have")), "{v:?}");
        assert_eq!(scratch.transact().state_vector(), doc.transact().state_vector());
    }

    #[test]
    fn what_is_stored_is_what_the_server_integrated() {
        let doc = doc_with_screen();
        let label = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "props"]);
            let mut txn = d.transact_mut();
            p.insert(&mut txn, "label", "P");
            p.insert(&mut txn, "label", "Pa");
            p.insert(&mut txn, "label", "Pay");
        });
        let scratch = copy(&doc, 9);
        let Verdict::Apply(stored) = decide(&scratch, &label, &editor()).0 else { panic!() };
        let other = copy(&doc, 5);
        other.transact_mut().apply_update(Update::decode_v1(&stored).unwrap()).unwrap();
        assert_eq!(content(&other), content(&scratch));
        assert_eq!(content(&other)["screens"]["s1"]["root"]["props"]["label"], "Pay");
        assert!(!other.transact().has_missing_updates());
    }

    #[test]
    fn readers_adding_nothing_is_told_apart() {
        let doc = doc_with_screen();
        {
            let p = map_at(&doc, &["s1", "root", "props"]);
            p.remove(&mut doc.transact_mut(), "size");
        }
        // A y-websocket client's sync step 2: nothing new, but the whole delete set.
        let c = copy(&doc, 2);
        let reply = c.transact().encode_state_as_update_v1(&doc.transact().state_vector());
        assert!(!adds_anything(&doc, &Update::decode_v1(&reply).unwrap()));
        let write = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "label", "x");
        });
        assert!(adds_anything(&doc, &Update::decode_v1(&write).unwrap()));
        let delete = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.remove(&mut d.transact_mut(), "label");
        });
        assert!(adds_anything(&doc, &Update::decode_v1(&delete).unwrap()));
        assert!(!adds_anything(&doc, &Update::new()));
        let _ = Update::new().encode_v1();
    }

    // Hand-written updates, as a hostile client would craft them (found by review).
    fn var(o: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            o.push(n as u8 | 0x80);
            n >>= 7
        }
        o.push(n as u8)
    }
    fn st(o: &mut Vec<u8>, s: &[u8]) {
        var(o, s.len() as u64);
        o.extend_from_slice(s)
    }
    /// (server clock of client 1, id of label "Buy", id of screens.s1, id of name "Home")
    fn ids(doc: &Doc) -> (u32, ID, ID, ID) {
        let d = structs::decode(&doc.transact().encode_state_as_update_v1(&StateVector::default())).unwrap();
        let c1 = ClientID::new(1);
        let f = |p: &dyn Fn(&structs::Item) -> bool| {
            d.structs[&c1]
                .iter()
                .find_map(|s| match s {
                    Struct::Item(i) if p(i) => Some(i.id),
                    _ => None,
                })
                .unwrap()
        };
        (
            doc.transact().state_vector().get(&c1),
            f(&|i| i.content == Content::Any(vec![Any::from("Buy")])),
            f(&|i| i.parent_sub.as_deref() == Some("s1")),
            f(&|i| i.content == Content::Any(vec![Any::from("Home")])),
        )
    }
    /// A value with origin `label` (client 1), Any[text].
    fn label_value(u: &mut Vec<u8>, label: ID, text: &[u8]) {
        u.push(0x88);
        var(u, 1);
        var(u, label.clock as u64);
        var(u, 1);
        u.push(119);
        st(u, text);
    }

    #[test]
    fn crafted_updates_that_yrs_would_integrate_differently_are_refused() {
        let doc = doc_with_screen();
        let (k, label, s1, home) = ids(&doc);
        // An XML hook in the known range: Yjs and yrs read its name differently, so a struct
        // could hide in it.
        let mut u = vec![];
        var(&mut u, 1);
        var(&mut u, 2);
        var(&mut u, 1);
        var(&mut u, (k - 1) as u64);
        u.push(7);
        var(&mut u, 1);
        st(&mut u, b"x");
        u.push(5);
        u.extend_from_slice(&[0x88, 0x01]);
        let mut hidden = vec![s1.clock as u8, 1, 119];
        st(&mut hidden, b"pwned");
        hidden.push(0);
        hidden.resize(136, b' ');
        u.extend_from_slice(&hidden);
        label_value(&mut u, label, b"Pay");
        var(&mut u, 0);
        assert!(matches!(verdict(&doc, &u), Verdict::Refuse(_)));
        // A second, earlier section for the same client (yrs would overwrite a known block).
        let mut u = vec![];
        var(&mut u, 2);
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, k as u64);
        label_value(&mut u, label, b"Pay");
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, home.clock as u64);
        u.push(1);
        var(&mut u, 1);
        st(&mut u, b"x");
        var(&mut u, 1);
        var(&mut u, 0);
        assert!(matches!(verdict(&doc, &u), Verdict::Refuse(_)));
        // A text value followed by a deleted value on the same key (it would empty the key).
        let mut u = vec![];
        var(&mut u, 1);
        var(&mut u, 2);
        var(&mut u, 2);
        var(&mut u, 0);
        label_value(&mut u, label, b"Pay");
        u.push(0x81);
        var(&mut u, 2);
        var(&mut u, 0);
        var(&mut u, 1);
        var(&mut u, 0);
        assert!(matches!(verdict(&doc, &u), Verdict::Refuse(_)));
        // A value placed before the current one (right origin only).
        let mut u = vec![];
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, 2);
        var(&mut u, 0);
        u.push(0x48);
        var(&mut u, 1);
        var(&mut u, label.clock as u64);
        var(&mut u, 1);
        u.push(119);
        st(&mut u, b"Pay");
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, 1);
        var(&mut u, label.clock as u64);
        var(&mut u, 1);
        assert!(matches!(verdict(&doc, &u), Verdict::Refuse(_)));
        // A text over the limit.
        let long = change(&doc, |d| {
            let p = map_at(d, &["s1", "root", "props"]);
            p.insert(&mut d.transact_mut(), "label", "x".repeat(MAX_TEXT_CHARS + 1));
        });
        assert!(matches!(verdict(&doc, &long), Verdict::Refuse(_)));
    }
}

//! A reader of Yjs v1 updates down to their structs: which item each update inserts, where
//! (parent type, map key, neighbours) and with what content, and which ids it deletes.
//!
//! yrs integrates updates but does not expose their items, so the permission filter reads the
//! bytes itself. The format is Yjs' update encoding v1 (lib0 varints; `Item.write` /
//! `readClientsStructRefs` in yjs `src/structs/Item.js`, `src/utils/encoding.js`): per client a
//! run of structs (GC, Skip or Item: info byte, origins, parent, parent key, content), then the
//! delete set. Every read is bounds-checked; malformed bytes are an `Err`, never a panic.
//!
//! It is also the gate in front of yrs for every connection (`ws.rs`): an update is handed to
//! yrs only if it reads here, which bounds what yrs would otherwise do with hostile bytes — lib0
//! `Any` values nest at most [`MAX_ANY_DEPTH`] deep (yrs decodes them recursively), counts are at
//! most the message's length (yrs reserves memory from them), and each client appears once in
//! the structs and once in the delete set (yrs would integrate a second, earlier section of a
//! client over blocks it already has). Content kinds yrs reads differently from Yjs (legacy JSON
//! content, XML hooks) and yrs' moves are refused: the workflow document uses none of them.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::Any;
use yrs::encoding::read::Read;
use yrs::updates::decoder::{Decoder, DecoderV1};
use yrs::{ClientID, ID};

/// Type refs (yjs `YArrayRefID` …) of shared types an item may hold.
pub mod type_ref {
    pub const ARRAY: u8 = 0;
    pub const MAP: u8 = 1;
}

/// Where an item says it lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Parent {
    /// A root type, by name.
    Root(Arc<str>),
    /// The type held by the item with this id.
    Item(ID),
    /// Not written: the same as its left (origin) or right neighbour's.
    Inherited,
}

/// What an item holds (the parts the filter looks at).
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A tombstone of `len` units.
    Deleted,
    /// Values set through `map.set` / `array.insert` (lib0 `Any`).
    Any(Vec<Any>),
    /// A nested shared type (`type_ref`).
    Type(u8),
    /// Characters of a text type.
    String,
    /// Anything else: legacy JSON, binary, embeds, formatting, sub-documents, moves.
    Other(u8),
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: ID,
    pub len: u32,
    pub origin: Option<ID>,
    pub right_origin: Option<ID>,
    pub parent: Parent,
    pub parent_sub: Option<Arc<str>>,
    pub content: Content,
}

/// One struct of an update.
#[derive(Debug, Clone)]
pub enum Struct {
    Item(Item),
    /// Garbage-collected range (content and position forgotten).
    Gc {
        id: ID,
        len: u32,
    },
}

impl Struct {
    pub fn id(&self) -> ID {
        match self {
            Struct::Item(i) => i.id,
            Struct::Gc { id, .. } => *id,
        }
    }

    pub fn clocks(&self) -> u32 {
        match self {
            Struct::Item(i) => i.len,
            Struct::Gc { len, .. } => *len,
        }
    }
}

/// A decoded update.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Structs by client, in clock order (skips left out).
    pub structs: HashMap<ClientID, Vec<Struct>>,
    /// Deleted ranges: client → (clock, len).
    pub deletes: HashMap<ClientID, Vec<(u32, u32)>>,
}

/// How deep lib0 `Any` values may nest.
pub const MAX_ANY_DEPTH: usize = 32;

fn err(what: &str) -> String {
    format!("malformed update: {what}")
}

/// Yjs client ids are 53-bit (JavaScript numbers). yrs asserts that in debug builds and, in
/// release, folds a larger id onto a smaller one; Yjs would read it as yet another number.
pub const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

/// Clocks (a client's count of units) end at most here. yrs 0.28 panics integrating structs
/// near `u32::MAX` (found by fuzzing, src/fuzz/); a real document stays far below 2^31 units.
pub const MAX_CLOCK: u32 = 1 << 31;

fn read_client(d: &mut DecoderV1<'_>, what: &str) -> Result<ClientID, String> {
    let raw: u64 = d.read_var().map_err(|_| err(what))?;
    if raw > MAX_CLIENT_ID {
        return Err(err(&format!("{what} beyond 53 bits")));
    }
    Ok(ClientID::new(raw))
}

/// An id as v1 writes it (origins and parents): client, clock.
fn read_id(d: &mut DecoderV1<'_>, what: &str) -> Result<ID, String> {
    let client = read_client(d, what)?;
    let clock: u32 = d.read_var().map_err(|_| err(what))?;
    Ok(ID::new(client, clock))
}

/// Read a v1 update.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    // Every counted thing takes at least a byte: no count may exceed the message.
    let limit = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let count = |n: u32, what: &str| if n > limit { Err(err(what)) } else { Ok(n) };
    let mut d = DecoderV1::from(bytes);
    let mut out = Decoded::default();
    let clients: u32 = d.read_var().map_err(|_| err("client count"))?;
    for _ in 0..count(clients, "client count")? {
        let n: u32 = d.read_var().map_err(|_| err("struct count"))?;
        let client = read_client(&mut d, "client id")?;
        let mut clock: u32 = d.read_var().map_err(|_| err("clock"))?;
        if out.structs.contains_key(&client) {
            return Err(err("a client's structs appear twice"));
        }
        let list = out.structs.entry(client).or_default();
        for _ in 0..count(n, "struct count")? {
            let info = d.read_info().map_err(|_| err("struct info"))?;
            let id = ID::new(client, clock);
            let len = match info {
                0 => {
                    let len = d.read_len().map_err(|_| err("gc length"))?;
                    list.push(Struct::Gc { id, len });
                    len
                }
                10 => d.read_var::<u32>().map_err(|_| err("skip length"))?,
                _ => {
                    let item = read_item(&mut d, id, info, limit)?;
                    let len = item.len;
                    list.push(Struct::Item(item));
                    len
                }
            };
            if len == 0 {
                return Err(err("empty struct"));
            }
            clock = clock.checked_add(len).filter(|c| *c <= MAX_CLOCK).ok_or_else(|| err("clock beyond 2^31"))?;
        }
    }
    let ds_clients: u32 = d.read_var().map_err(|_| err("delete set"))?;
    for _ in 0..count(ds_clients, "delete set")? {
        let client = read_client(&mut d, "delete set client")?;
        let ranges: u32 = d.read_var().map_err(|_| err("delete set ranges"))?;
        if out.deletes.contains_key(&client) {
            return Err(err("a client's deletions appear twice"));
        }
        let list = out.deletes.entry(client).or_default();
        for _ in 0..count(ranges, "delete set ranges")? {
            let clock = d.read_ds_clock().map_err(|_| err("delete set clock"))?;
            let len = d.read_ds_len().map_err(|_| err("delete set length"))?;
            clock.checked_add(len).filter(|c| *c <= MAX_CLOCK).ok_or_else(|| err("delete set beyond 2^31"))?;
            if len > 0 {
                list.push((clock, len));
            }
        }
    }
    if !d.read_to_end().map_err(|_| err("trailing bytes"))?.is_empty() {
        return Err(err("trailing bytes"));
    }
    Ok(out)
}

/// A lib0 `Any`, at most [`MAX_ANY_DEPTH`] deep (tags as in lib0 `encoding.writeAny`).
fn read_any(d: &mut DecoderV1<'_>, depth: usize, limit: u32) -> Result<Any, String> {
    if depth > MAX_ANY_DEPTH {
        return Err(err("a value nested too deep"));
    }
    let bad = |_| err("any value");
    Ok(match d.read_u8().map_err(bad)? {
        127 => Any::Undefined,
        126 => Any::Null,
        125 => Any::from(d.read_var::<i64>().map_err(bad)? as f64),
        124 => Any::from(f64::from(d.read_f32().map_err(bad)?)),
        123 => Any::from(d.read_f64().map_err(bad)?),
        122 => Any::from(d.read_i64().map_err(bad)? as f64),
        121 => Any::Bool(false),
        120 => Any::Bool(true),
        119 => Any::from(d.read_string().map_err(bad)?),
        118 => {
            let n: u32 = d.read_var().map_err(bad)?;
            if n > limit {
                return Err(err("any map length"));
            }
            for _ in 0..n {
                d.read_string().map_err(bad)?;
                read_any(d, depth + 1, limit)?;
            }
            Any::Null
        }
        117 => {
            let n: u32 = d.read_var().map_err(bad)?;
            if n > limit {
                return Err(err("any array length"));
            }
            for _ in 0..n {
                read_any(d, depth + 1, limit)?;
            }
            Any::Null
        }
        116 => {
            d.read_buf().map_err(bad)?;
            Any::Null
        }
        _ => return Err(err("any tag")),
    })
}

fn read_item(d: &mut DecoderV1<'_>, id: ID, info: u8, limit: u32) -> Result<Item, String> {
    let count = |n: u32, what: &str| if n > limit { Err(err(what)) } else { Ok(n) };
    const HAS_ORIGIN: u8 = 0x80;
    const HAS_RIGHT_ORIGIN: u8 = 0x40;
    const HAS_PARENT_SUB: u8 = 0x20;
    let origin = if info & HAS_ORIGIN != 0 { Some(read_id(d, "origin")?) } else { None };
    let right_origin = if info & HAS_RIGHT_ORIGIN != 0 { Some(read_id(d, "right origin")?) } else { None };
    let explicit_parent = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0;
    let mut parent = Parent::Inherited;
    let mut parent_sub = None;
    if explicit_parent {
        let named = d.read_parent_info().map_err(|_| err("parent"))?;
        parent = if named {
            Parent::Root(Arc::from(d.read_string().map_err(|_| err("root name"))?))
        } else {
            Parent::Item(read_id(d, "parent id")?)
        };
        if info & HAS_PARENT_SUB != 0 {
            parent_sub = Some(Arc::from(d.read_string().map_err(|_| err("parent key"))?));
        }
    }
    let (content, len) = match info & 0x1f {
        1 => (Content::Deleted, d.read_len().map_err(|_| err("deleted length"))?),
        // Legacy JSON content: yrs reads one string more than Yjs writes.
        2 => return Err("unsupported content: legacy JSON".into()),
        3 => {
            d.read_buf().map_err(|_| err("binary"))?;
            (Content::Other(3), 1)
        }
        4 => {
            let s = d.read_string().map_err(|_| err("string"))?;
            (Content::String, s.encode_utf16().count() as u32)
        }
        5 => {
            d.read_json().map_err(|_| err("embed"))?;
            (Content::Other(5), 1)
        }
        6 => {
            d.read_key().map_err(|_| err("format key"))?;
            d.read_json().map_err(|_| err("format value"))?;
            (Content::Other(6), 1)
        }
        7 => {
            let type_ref = d.read_type_ref().map_err(|_| err("type"))?;
            // XmlElement carries a name; an XmlHook does in Yjs but not in yrs.
            if type_ref == 5 {
                return Err("unsupported content: XML hook".into());
            }
            if type_ref == 3 {
                d.read_key().map_err(|_| err("type name"))?;
            }
            (Content::Type(type_ref), 1)
        }
        8 => {
            let n = count(d.read_len().map_err(|_| err("any length"))?, "any length")?;
            let mut values = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                values.push(read_any(d, 0, limit)?);
            }
            (Content::Any(values), n)
        }
        9 => {
            d.read_string().map_err(|_| err("doc guid"))?;
            read_any(d, 0, limit)?;
            (Content::Other(9), 1)
        }
        // Moves (yrs) and anything newer: their encoding is not something a restricted writer
        // needs, so the reader stops here and the caller refuses the update.
        other => return Err(format!("unsupported content type {other}")),
    };
    Ok(Item { id, len, origin, right_origin, parent, parent_sub, content })
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Array, ArrayPrelim, Doc, Map, MapPrelim, ReadTxn, StateVector, Text, Transact};

    #[test]
    fn reads_what_yrs_writes() {
        let doc = Doc::with_client_id(7);
        let screens = doc.get_or_insert_map("screens");
        let edges = doc.get_or_insert_array("edges");
        let text = doc.get_or_insert_text("notes");
        {
            let mut txn = doc.transact_mut();
            let s = screens.insert(&mut txn, "s1", MapPrelim::default());
            s.insert(&mut txn, "name", "Home");
            s.insert(&mut txn, "name", "Start");
            let children = s.insert(&mut txn, "children", ArrayPrelim::default());
            children.push_back(&mut txn, "x");
            edges.push_back(&mut txn, 1);
            text.insert(&mut txn, 0, "héllo");
        }
        let bytes = doc.transact().encode_state_as_update_v1(&StateVector::default());
        let d = decode(&bytes).unwrap();
        let items: Vec<&Item> = d.structs[&ClientID::new(7)]
            .iter()
            .filter_map(|s| match s {
                Struct::Item(i) => Some(i),
                _ => None,
            })
            .collect();
        assert!(items.iter().any(|i| i.parent == Parent::Root("screens".into())
            && i.parent_sub.as_deref() == Some("s1")
            && i.content == Content::Type(type_ref::MAP)));
        assert!(items.iter().any(|i| i.content == Content::String && i.len == 5));
        assert!(items.iter().any(|i| i.content == Content::Any(vec![Any::from("Start")])));
        // "Home" was overwritten: its id is in the delete set.
        assert!(!d.deletes[&ClientID::new(7)].is_empty());
        // Whole-state clocks add up to the state vector.
        let total: u32 = d.structs[&ClientID::new(7)].iter().map(Struct::clocks).sum();
        assert_eq!(total, doc.transact().state_vector().get(&ClientID::new(7)));
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let doc = Doc::with_client_id(3);
        let m = doc.get_or_insert_map("screens");
        m.insert(&mut doc.transact_mut(), "a", "b");
        let bytes = doc.transact().encode_state_as_update_v1(&StateVector::default());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        assert!(decode(&[0xff; 12]).is_err());
    }

    #[test]
    fn what_yrs_would_mishandle_is_refused() {
        // One client, one struct: Any content with a value nested a million arrays deep.
        let mut deep = vec![1, 1, 1, 0, 8, 1, 1, b'x', 1];
        for _ in 0..1_000_000 {
            deep.extend_from_slice(&[117, 1]);
        }
        deep.extend_from_slice(&[126, 0]);
        assert!(decode(&deep).unwrap_err().contains("deep"));
        // A count far beyond the message (yrs would reserve memory for it).
        assert!(decode(&[0xff, 0xff, 0xff, 0x0f]).is_err());
        // The same client's structs twice (an earlier section over known blocks).
        let doc = Doc::with_client_id(3);
        let m = doc.get_or_insert_map("screens");
        m.insert(&mut doc.transact_mut(), "a", "b");
        let one = doc.transact().encode_state_as_update_v1(&StateVector::default());
        // [clients=1][n][client][clock][struct…][ds]: repeat the section, count two clients.
        let section = &one[1..one.len() - 1];
        let mut twice = vec![2];
        twice.extend_from_slice(section);
        twice.extend_from_slice(section);
        twice.push(0);
        assert!(decode(&twice).unwrap_err().contains("twice"));
        // Legacy JSON content and XML hooks (read differently by yrs and Yjs).
        assert!(decode(&[1, 1, 5, 0, 2, 1, 1, b'x', 1, 1, b'1', 0]).is_err());
        assert!(decode(&[1, 1, 5, 0, 7, 1, 1, b'x', 5, 1, b'h', 0]).is_err());
    }

    #[test]
    fn clocks_beyond_2_31_are_refused() {
        // Found by the fuzzer (src/fuzz/): yrs 0.28 panics in BlockStore::push integrating an
        // item at clock 2^32 - 16 of a client the document knows (a Maker's update: stored, then
        // applied, so every reload of the room would panic again).
        let item = |clock: u32| {
            let mut u = vec![1, 1, 11];
            let mut c = clock;
            while c >= 0x80 {
                u.push((c as u8) | 0x80);
                c >>= 7;
            }
            u.push(c as u8);
            u.extend_from_slice(&[8, 1, 1, b'x', 1, 126, 0]);
            u
        };
        assert!(decode(&item(u32::MAX - 15)).unwrap_err().contains("2^31"));
        assert!(decode(&item(MAX_CLOCK)).unwrap_err().contains("2^31"));
        assert!(decode(&item(MAX_CLOCK - 1)).is_ok());
        // A skip up to there, and deletions, likewise.
        assert!(decode(&[1, 2, 11, 0, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 8, 1, 1, b'x', 1, 126, 0]).is_err());
        assert!(decode(&[0, 1, 11, 1, 0xf0, 0xff, 0xff, 0xff, 0x0f, 1]).unwrap_err().contains("2^31"));
    }

    #[test]
    fn client_ids_beyond_53_bits_are_refused() {
        // Found by the fuzzer (src/fuzz/): yrs asserts 53-bit client ids in debug builds and
        // folds larger ones onto smaller ids in release. One Any struct of client 2^53 + 11.
        let mut big = vec![1, 1];
        big.extend_from_slice(&[0x8b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
        big.extend_from_slice(&[0, 8, 1, 1, b'x', 1, 126, 0]);
        assert!(decode(&big).unwrap_err().contains("53 bits"));
        // The same struct from client 11 reads; and as an origin, a large id is refused too.
        assert!(decode(&[1, 1, 11, 0, 8, 1, 1, b'x', 1, 126, 0]).is_ok());
        let mut origin = vec![1, 1, 11, 0, 0x88];
        origin.extend_from_slice(&[0x8b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0]);
        origin.extend_from_slice(&[1, 126, 0]);
        assert!(decode(&origin).unwrap_err().contains("53 bits"));
    }
}

//! Who may change what in a workflow document, decided by the server on every incoming update.
//!
//! - **Makers** (and Admins) change anything.
//! - **Editors** change only the values of props whose spec marks them `textEditable`, and only
//!   to text: `screens/{id}/root(/children/{i})*/props/{prop_id}`.
//! - **Frontends, Viewers** (and Auditors) read.
//!
//! An update from a restricted writer is applied to a throwaway copy of the document and the
//! document's content before and after is compared; the update passes only when every difference
//! is one the role allows. (The copy costs a document's size per restricted update; Makers' updates,
//! the common case, skip it.)

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// What a connection may write.
#[derive(Debug, Clone)]
pub enum Writer {
    /// Anything.
    Full,
    /// Text props only: component id → its `textEditable` prop ids.
    TextProps(HashMap<String, HashSet<String>>),
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

/// Decide whether `update` may be applied for `writer`. `Err` says why not, for the user.
pub fn check(doc: &Doc, update: &Update, writer: &Writer) -> Result<(), String> {
    if matches!(writer, Writer::Full) || update.is_empty() {
        return Ok(());
    }
    // A throwaway copy: the current state, then the candidate update.
    let copy = new_doc();
    {
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        let state = Update::decode_v1(&state).map_err(|e| format!("the document could not be copied: {e}"))?;
        copy.transact_mut().apply_update(state).map_err(|e| format!("the document could not be copied: {e}"))?;
    }
    let before = content(&copy);
    let candidate = Update::decode_v1(&update.encode_v1()).map_err(|e| format!("the update could not be read: {e}"))?;
    copy.transact_mut().apply_update(candidate).map_err(|e| format!("the update could not be applied: {e}"))?;
    let after = content(&copy);
    let mut changes = vec![];
    diff(&before, &after, &mut vec![], &mut changes);
    if changes.is_empty() {
        return Ok(());
    }
    match writer {
        Writer::Full => Ok(()),
        Writer::ReadOnly => Err("your role can read this workflow but not change it".into()),
        Writer::Archived => Err("the project is archived, so its workflow is read-only until it is restored".into()),
        Writer::TextProps(editable) => {
            for (path, old, new) in &changes {
                allowed_text_change(&after, path, old.as_ref(), new.as_ref(), editable)?;
            }
            Ok(())
        }
    }
}

type Change = (Vec<String>, Option<Value>, Option<Value>);

/// Every leaf that differs, with its path.
fn diff(a: &Value, b: &Value, path: &mut Vec<String>, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                path.push(k.clone());
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(v, w, path, out),
                    (v, w) => out.push((path.clone(), v.cloned(), w.cloned())),
                }
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
        (v, w) if v != w => out.push((path.clone(), Some(v.clone()), Some(w.clone()))),
        _ => {}
    }
}

/// `screens/{sid}/root(/children/{i})*/props/{prop}`, text to text, on a text-editable prop.
fn allowed_text_change(
    doc: &Value,
    path: &[String],
    old: Option<&Value>,
    new: Option<&Value>,
    editable: &HashMap<String, HashSet<String>>,
) -> Result<(), String> {
    let refuse = || {
        Err(format!(
            "your role may only change the text of props marked textEditable (not {})",
            if path.is_empty() { "the document".to_owned() } else { path.join("/") }
        ))
    };
    let n = path.len();
    let shape_ok = n >= 5
        && path[0] == "screens"
        && path[2] == "root"
        && path[n - 2] == "props"
        && path[3..n - 2].chunks(2).all(|c| c.len() == 2 && c[0] == "children" && c[1].parse::<usize>().is_ok());
    if !shape_ok {
        return refuse();
    }
    let is_text = |v: Option<&Value>| v.is_none_or(|v| v.is_string() || v.is_null());
    if !is_text(old) || !matches!(new, Some(Value::String(_))) {
        return refuse();
    }
    // The instance that owns the props map, and its component.
    let mut instance = doc;
    for segment in &path[..n - 2] {
        instance = match instance {
            Value::Object(m) => m.get(segment.as_str()).unwrap_or(&Value::Null),
            Value::Array(a) => segment.parse::<usize>().ok().and_then(|i| a.get(i)).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    let component = instance.get("component_id").and_then(Value::as_str).unwrap_or_default();
    let prop = &path[n - 1];
    if editable.get(component).is_some_and(|props| props.contains(prop)) { Ok(()) } else { refuse() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Map, MapPrelim, Out};

    fn doc_with_screen() -> Doc {
        let doc = new_doc();
        let screens = doc.get_or_insert_map("screens");
        let mut txn = doc.transact_mut();
        let screen = screens.insert(&mut txn, "s1", MapPrelim::default());
        screen.insert(&mut txn, "name", "Home");
        let root = screen.insert(&mut txn, "root", MapPrelim::default());
        root.insert(&mut txn, "component_id", "button");
        let props = root.insert(&mut txn, "props", MapPrelim::default());
        props.insert(&mut txn, "label", "Buy");
        props.insert(&mut txn, "size", "large");
        drop(txn);
        doc
    }

    /// Make a change on a copy of `doc` and return it as an update relative to `doc`.
    fn change(doc: &Doc, f: impl FnOnce(&Doc)) -> Update {
        let copy = new_doc();
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        copy.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        let sv = doc.transact().state_vector();
        f(&copy);
        Update::decode_v1(&copy.transact().encode_state_as_update_v1(&sv)).unwrap()
    }

    fn props(doc: &Doc) -> yrs::MapRef {
        let screens = doc.get_or_insert_map("screens");
        let txn = doc.transact();
        let Some(Out::YMap(screen)) = screens.get(&txn, "s1") else { panic!() };
        let Some(Out::YMap(root)) = screen.get(&txn, "root") else { panic!() };
        let Some(Out::YMap(props)) = root.get(&txn, "props") else { panic!() };
        props
    }

    #[test]
    fn roles_decide_what_an_update_may_change() {
        let doc = doc_with_screen();
        let editor = Writer::TextProps(HashMap::from([("button".into(), HashSet::from(["label".to_owned()]))]));
        let label = change(&doc, |d| {
            let p = props(d);
            p.insert(&mut d.transact_mut(), "label", "Pay");
        });
        assert!(check(&doc, &label, &Writer::Full).is_ok());
        assert!(check(&doc, &label, &editor).is_ok());
        assert!(check(&doc, &label, &Writer::ReadOnly).is_err());

        let size = change(&doc, |d| {
            let p = props(d);
            p.insert(&mut d.transact_mut(), "size", "small");
        });
        assert!(check(&doc, &size, &editor).unwrap_err().contains("props/size"));

        let rename = change(&doc, |d| {
            let screens = d.get_or_insert_map("screens");
            let mut txn = d.transact_mut();
            let Some(Out::YMap(screen)) = screens.get(&txn, "s1") else { panic!() };
            screen.insert(&mut txn, "name", "Start");
        });
        assert!(check(&doc, &rename, &editor).is_err());

        let edge = change(&doc, |d| {
            let edges = d.get_or_insert_array("edges");
            let mut txn = d.transact_mut();
            use yrs::Array;
            edges.push_back(&mut txn, MapPrelim::from([("id".to_owned(), yrs::In::from("e1"))]));
        });
        assert!(check(&doc, &edge, &editor).is_err());
        assert!(check(&doc, &edge, &Writer::Full).is_ok());

        // A number into a text prop, or removing it, is not a text edit.
        let number = change(&doc, |d| {
            let p = props(d);
            p.insert(&mut d.transact_mut(), "label", 3);
        });
        assert!(check(&doc, &number, &editor).is_err());
        let removed = change(&doc, |d| {
            let p = props(d);
            p.remove(&mut d.transact_mut(), "label");
        });
        assert!(check(&doc, &removed, &editor).is_err());
        // An update that changes nothing passes for everyone.
        assert!(check(&doc, &Update::new(), &Writer::ReadOnly).is_ok());
    }
}

//! The structured editor's form: its fields read into a [`Draft`], and the row actions (add,
//! remove, move) that change the draft before anything is saved. Field names: `prose.{index}`,
//! `prop.{n}.{field}`, `event.{n}.{field}`, `n` being the row's position on the page.

use std::collections::BTreeMap;

use crate::error::{AppError, AppResult};
use crate::specs::structured::{Draft, EventDraft, PropDraft, ProsePiece};

/// More rows than this in one form is not an edit a person makes.
const MAX_ROWS: usize = 1_000;

/// The editor form as posted, whichever view it came from.
#[derive(Debug, Default)]
pub struct Posted {
    /// `structured` or `source` (a form without the field is the Source view's).
    pub view: String,
    pub content: String,
    /// The content came byte-exact (`content_json`, the structured view's), not from a textarea.
    pub exact: bool,
    pub base_version: i64,
    pub session_id: String,
    pub action: String,
    pub draft: Draft,
}

fn index_of(key: &str) -> Option<(usize, &str)> {
    let (n, field) = key.split_once('.')?;
    Some((n.parse().ok().filter(|n| *n < MAX_ROWS)?, field))
}

fn src(value: &str) -> Option<usize> {
    value.parse().ok()
}

/// Read the posted fields. Unknown fields are ignored (the CSRF token among them).
pub fn parse(pairs: Vec<(String, String)>) -> AppResult<Posted> {
    let mut posted = Posted::default();
    let mut prose: BTreeMap<usize, String> = BTreeMap::new();
    let mut props: BTreeMap<usize, PropDraft> = BTreeMap::new();
    let mut events: BTreeMap<usize, EventDraft> = BTreeMap::new();
    for (key, value) in pairs {
        if let Some(rest) = key.strip_prefix("prose.") {
            let index =
                rest.parse().ok().filter(|n| *n < MAX_ROWS).ok_or_else(|| AppError::field(&key, "unknown field"))?;
            prose.insert(index, value);
        } else if let Some(rest) = key.strip_prefix("prop.") {
            let (n, field) = index_of(rest).ok_or_else(|| AppError::field(&key, "unknown field"))?;
            let p = props.entry(n).or_default();
            match field {
                "src" => p.src = src(&value),
                "id" => p.id = value,
                "name" => p.name = value,
                "kind" => p.kind = value,
                "options" => p.options = value,
                "custom" => p.custom = value,
                "default" => p.default = value,
                "editable" => p.text_editable = value == "true",
                "description" => p.description = value,
                _ => return Err(AppError::field(&key, "unknown field")),
            }
        } else if let Some(rest) = key.strip_prefix("event.") {
            let (n, field) = index_of(rest).ok_or_else(|| AppError::field(&key, "unknown field"))?;
            let e = events.entry(n).or_default();
            match field {
                "src" => e.src = src(&value),
                "id" => e.id = value,
                "name" => e.name = value,
                "payload" => e.payload = value,
                "description" => e.description = value,
                _ => return Err(AppError::field(&key, "unknown field")),
            }
        } else {
            match key.as_str() {
                "view" => posted.view = value,
                "content" => posted.content = value,
                "content_json" => {
                    posted.content = serde_json::from_str(&value)
                        .map_err(|_| AppError::field("content_json", "must be the JSON string the page sent"))?;
                    posted.exact = true;
                }
                "base_version" => {
                    posted.base_version =
                        value.parse().map_err(|_| AppError::field("base_version", "must be a number"))?
                }
                "session_id" => posted.session_id = value,
                "action" => posted.action = value,
                "component.name" => posted.draft.name = Some(value),
                _ => {}
            }
        }
    }
    posted.draft = Draft {
        name: posted.draft.name.take(),
        prose: prose.into_iter().map(|(index, text)| ProsePiece { index, label: String::new(), text }).collect(),
        props: props.into_values().collect(),
        events: events.into_values().collect(),
    };
    Ok(posted)
}

/// A row action on the draft; returns the field to focus afterwards, or `None` when `action` is
/// not a row action.
pub fn row_action(draft: &mut Draft, action: &str) -> Option<String> {
    if action == "add_prop" {
        draft.props.push(PropDraft { kind: "text".into(), ..Default::default() });
        return Some(format!("prop-{}-name", draft.props.len() - 1));
    }
    if action == "add_event" {
        draft.events.push(EventDraft::default());
        return Some(format!("event-{}-name", draft.events.len() - 1));
    }
    let (what, n) = action.rsplit_once(':')?;
    let n: usize = n.parse().ok()?;
    fn act<T>(rows: &mut Vec<T>, op: &str, n: usize, kind: &str) -> Option<String> {
        if n >= rows.len() {
            return None;
        }
        match op {
            "up" if n > 0 => {
                rows.swap(n, n - 1);
                Some(format!("{kind}-{}-up", n - 1))
            }
            "down" if n + 1 < rows.len() => {
                rows.swap(n, n + 1);
                Some(format!("{kind}-{}-down", n + 1))
            }
            "remove" => {
                rows.remove(n);
                Some(if rows.is_empty() {
                    format!("add-{kind}")
                } else {
                    format!("{kind}-{}-name", n.min(rows.len() - 1))
                })
            }
            _ => Some(format!("{kind}-{n}-name")),
        }
    }
    match what {
        "prop_up" => act(&mut draft.props, "up", n, "prop"),
        "prop_down" => act(&mut draft.props, "down", n, "prop"),
        "prop_remove" => act(&mut draft.props, "remove", n, "prop"),
        "event_up" => act(&mut draft.events, "up", n, "event"),
        "event_down" => act(&mut draft.events, "down", n, "event"),
        "event_remove" => act(&mut draft.events, "remove", n, "event"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn reads_rows_in_page_order() {
        let posted = parse(pairs(&[
            ("csrf_token", "x"),
            ("view", "structured"),
            ("base_version", "3"),
            ("prop.1.name", "b"),
            ("prop.0.name", "a"),
            ("prop.0.src", "1"),
            ("prop.0.editable", "true"),
            ("prop.10.name", "c"),
            ("event.0.name", "onClick"),
            ("prose.2", "Text"),
        ]))
        .unwrap();
        let names: Vec<_> = posted.draft.props.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!((posted.draft.props[0].src, posted.draft.props[1].src), (Some(1), None));
        assert!(posted.draft.props[0].text_editable && !posted.draft.props[1].text_editable);
        assert_eq!(posted.draft.prose[0].index, 2);
        for bad in ["prop.x.name", "prop.0.evil", "prop.100000.name", "event.0", "prose.z"] {
            assert!(parse(pairs(&[(bad, "v")])).is_err(), "{bad}");
        }
        assert!(parse(pairs(&[("base_version", "NaN")])).is_err());
    }

    #[test]
    fn row_actions_move_and_focus() {
        let mut d = Draft {
            props: ["a", "b", "c"].iter().map(|n| PropDraft { name: (*n).into(), ..Default::default() }).collect(),
            ..Default::default()
        };
        assert_eq!(row_action(&mut d, "prop_up:2").as_deref(), Some("prop-1-up"));
        assert_eq!(row_action(&mut d, "prop_down:0").as_deref(), Some("prop-1-down"));
        let names: Vec<_> = d.props.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(row_action(&mut d, "prop_up:0").as_deref(), Some("prop-0-name"), "nothing above the first");
        assert_eq!(row_action(&mut d, "prop_remove:2").as_deref(), Some("prop-1-name"));
        assert_eq!(row_action(&mut d, "prop_remove:9"), None);
        assert_eq!(row_action(&mut d, "add_event").as_deref(), Some("event-0-name"));
        assert_eq!(row_action(&mut d, "event_remove:0").as_deref(), Some("add-event"));
        assert_eq!(row_action(&mut d, "save"), None);
    }
}

//! The structured editor's engine: a spec shown as its parts — the prose pieces (Markdown), the
//! props and the events — and an edit of those parts written back into the file.
//!
//! The law is the parser's: an edit rewrites only what it touches. A prose piece that was not
//! changed keeps its bytes (line endings, blank lines around it); a table none of whose rows
//! changed is not re-rendered; a changed row keeps every cell it did not change (unknown columns
//! included). Rows are identified by their position in the text the edit was made on (`src`),
//! new rows get a new UUID — ids are generated, never typed.

use uuid::Uuid;

use super::document::{EVENTS, PROPS};
use super::table::{Table, normalize_cell};
use super::types::{self, Kind};
use super::{Severity, SpecFile};

/// One prose piece of the view: the text between the frontmatter and blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProsePiece {
    /// Index in [`super::document::Model::prose`].
    pub index: usize,
    /// "Description", "Text after the props table" …
    pub label: String,
    /// The piece without its surrounding blank lines (those are kept as they are).
    pub text: String,
}

/// A prop as the structured editor shows and takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropDraft {
    /// Its row in the text the edit is made on; `None` for a new prop.
    pub src: Option<usize>,
    pub id: String,
    pub name: String,
    /// `text`, `number`, `yesno`, `oneof` or `custom`.
    pub kind: String,
    /// For `oneof`: the values, comma-separated.
    pub options: String,
    /// For `custom`: the type as written.
    pub custom: String,
    pub default: String,
    pub text_editable: bool,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventDraft {
    pub src: Option<usize>,
    pub id: String,
    pub name: String,
    pub payload: String,
    pub description: String,
}

/// The whole structured view of a spec, or an edit of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    /// The component's name (frontmatter `name`); `None` leaves it as it is.
    pub name: Option<String>,
    pub prose: Vec<ProsePiece>,
    pub props: Vec<PropDraft>,
    pub events: Vec<EventDraft>,
}

/// A problem with one field of the view (`prop.2.name`, `event.0.name`, `prose.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: message.into() }
}

/// Why a spec cannot be edited in the structured view (it can still be in Source).
pub fn unavailable(spec: &SpecFile) -> Option<String> {
    if spec.frontmatter.is_none() && spec.source().trim_start_matches('\u{feff}').starts_with("---") {
        return Some("its frontmatter is not closed".into());
    }
    for kind in [PROPS, EVENTS] {
        let blocks: Vec<_> = spec.blocks.iter().filter(|b| b.kind == kind).collect();
        if blocks.iter().any(|b| b.parsed.is_none() && b.version == 1) || blocks.len() > 1 {
            let line = blocks.iter().map(|b| b.line).next().unwrap_or(1);
            let why = spec
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error && d.line >= line)
                .map(|d| format!("line {}: {}", d.line, d.message))
                .next()
                .unwrap_or_else(|| format!("its {kind} block cannot be read"));
            return Some(why);
        }
        if blocks.iter().any(|b| b.version != 1) {
            return Some(format!("its {kind} block is of a version this Arno does not read"));
        }
    }
    None
}

/// Split a piece into (leading blank lines, body, trailing whitespace).
fn trim_piece(piece: &str) -> (&str, &str, &str) {
    // A byte-order mark (a file without frontmatter) stays where it is, outside what is edited.
    let bom = if piece.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let body_start = piece.len() - piece.trim_start_matches(['\u{feff}', '\n', '\r', ' ', '\t']).len();
    // Leading whitespace is kept up to the last line break, so an indented first line keeps its indent.
    let lead_end = piece[..body_start].rfind('\n').map_or(bom, |i| i + 1);
    let body = &piece[lead_end..];
    // The last line keeps its trailing spaces (a Markdown line break); only what follows its end is trailing.
    let trimmed = body.trim_end().len();
    let end = trimmed + body[trimmed..].find(['\r', '\n']).unwrap_or(body.len() - trimmed);
    (&piece[..lead_end], &body[..end], &body[end..])
}

fn label_for(spec: &SpecFile, index: usize) -> String {
    if index == 0 {
        return "Description".into();
    }
    match spec.blocks[index - 1].kind.as_str() {
        PROPS => "Text after the props".into(),
        EVENTS => "Text after the events".into(),
        other => format!("Text after the {other} block"),
    }
}

/// The structured view of a spec (call [`unavailable`] first).
pub fn view(spec: &SpecFile) -> Draft {
    let model = spec.model();
    let prose = model
        .prose
        .iter()
        .enumerate()
        .filter(|(i, piece)| *i == 0 || !piece.trim().is_empty())
        .map(|(index, piece)| ProsePiece {
            index,
            label: label_for(spec, index),
            text: trim_piece(piece).1.replace("\r\n", "\n"),
        })
        .collect();
    let props = spec.table(PROPS).map_or(vec![], |t| {
        (0..t.rows.len())
            .map(|row| {
                let type_ = t.get(row, "type").unwrap_or_default();
                let kind = types::classify(type_);
                PropDraft {
                    src: Some(row),
                    id: t.get(row, "id").unwrap_or_default().into(),
                    name: t.get(row, "name").unwrap_or_default().into(),
                    options: match &kind {
                        Kind::OneOf(o) => o.join(", "),
                        _ => String::new(),
                    },
                    custom: if kind == Kind::Custom { type_.into() } else { String::new() },
                    kind: kind.key().into(),
                    default: t.get(row, "default").unwrap_or_default().into(),
                    text_editable: t.get(row, "textEditable") == Some("true"),
                    description: t.get(row, "description").unwrap_or_default().into(),
                }
            })
            .collect()
    });
    let events = spec.table(EVENTS).map_or(vec![], |t| {
        (0..t.rows.len())
            .map(|row| EventDraft {
                src: Some(row),
                id: t.get(row, "id").unwrap_or_default().into(),
                name: t.get(row, "name").unwrap_or_default().into(),
                payload: t.get(row, "payload").unwrap_or_default().into(),
                description: t.get(row, "description").unwrap_or_default().into(),
            })
            .collect()
    });
    let name = spec.frontmatter.as_ref().map(|f| f.name.clone().unwrap_or_default());
    Draft { name, prose, props, events }
}

/// Longest component name (as on the New component form).
pub const MAX_NAME_CHARS: usize = 80;

/// A YAML double-quoted string.
pub fn yaml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` with its frontmatter `name` set: the `name:` line replaced (or added after `id:`).
fn with_name(text: &str, name: &str) -> Result<String, String> {
    let spec = SpecFile::parse(text);
    let Some(fm) = spec.frontmatter.as_ref().filter(|f| f.readable) else {
        return Err("the spec has no readable frontmatter to hold its name; edit it in Source".into());
    };
    let newline = spec.newline();
    let body = &text[fm.body_start..fm.span.end];
    let mut at = fm.body_start;
    let mut lines = body.split_inclusive('\n').peekable();
    let mut id_end = None;
    while let Some(line) = lines.next() {
        let start = at;
        at += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        if content.starts_with("id:") {
            id_end = Some(at);
        }
        if let Some(value) = content.strip_prefix("name:") {
            let value = value.trim();
            let continued = lines.peek().is_some_and(|next| next.starts_with([' ', '\t']));
            if continued || value.starts_with(['|', '>']) {
                return Err("the name is written over several lines; edit it in Source".into());
            }
            let end = start + content.len();
            return Ok(format!("{}name: {}{}", &text[..start], yaml_string(name), &text[end..]));
        }
    }
    let insert = id_end.unwrap_or(fm.body_start);
    Ok(format!("{}name: {}{newline}{}", &text[..insert], yaml_string(name), &text[insert..]))
}

/// The type a prop draft asks for; the original text when the helper fields say the same as it.
fn resolve_type(draft: &PropDraft, original: Option<&str>) -> Result<String, String> {
    let wanted = match draft.kind.as_str() {
        "text" => Kind::Text,
        "number" => Kind::Number,
        "yesno" => Kind::YesNo,
        "oneof" => {
            let options = types::split_options(&draft.options);
            if options.is_empty() {
                return Err("list at least one value, separated by commas".into());
            }
            let mut seen = vec![];
            for o in &options {
                if seen.contains(&o) {
                    return Err(format!("the value {o:?} is listed twice"));
                }
                seen.push(o);
            }
            Kind::OneOf(options)
        }
        "custom" | "" => {
            let text = normalize_cell(&draft.custom);
            if original.is_some_and(|o| o == text) {
                return Ok(text);
            }
            return match types::parse(&text) {
                Ok(_) => Ok(text),
                Err(e) if text.is_empty() => Err(e.message),
                Err(e) => Err(format!("not a type Arno can read: {e}")),
            };
        }
        other => return Err(format!("unknown kind of type {other:?}")),
    };
    if let Some(o) = original
        && types::classify(o) == wanted
    {
        return Ok(o.to_owned());
    }
    Ok(match wanted {
        Kind::Text => "string".into(),
        Kind::Number => "number".into(),
        Kind::YesNo => "boolean".into(),
        Kind::OneOf(options) => types::options_type(&options),
        Kind::Custom => unreachable!("custom returned above"),
    })
}

/// A prop or event name: what code can call it (`onClick`, `aria-label`, `size`).
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("give it a name"),
        Some(c) if !(c.is_alphabetic() || c == '_' || c == '$') => Some("a name starts with a letter, _ or $"),
        _ if !chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '-')) => {
            Some("a name has only letters, digits, _, $ and -")
        }
        _ if name.len() > 200 => Some("at most 200 characters"),
        _ => None,
    }
}

/// A row of an edit: its source row, and its cells by column name.
type DraftRow<'a> = (Option<usize>, Vec<(&'a str, String)>);

/// The rows of one block after an edit. `existing` is the table as parsed from the text the edit
/// was made on; each draft row is (src, cells by column name).
fn rebuild(
    existing: Option<&Table>,
    default_columns: &[&str],
    rows: Vec<DraftRow<'_>>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Table {
    let mut table = existing
        .cloned()
        .unwrap_or_else(|| Table { columns: default_columns.iter().map(|c| (*c).into()).collect(), rows: vec![] });
    let original = table.rows.clone();
    let mut used = vec![false; original.len()];
    let mut out = Vec::with_capacity(rows.len());
    for (position, (src, cells)) in rows.into_iter().enumerate() {
        let mut row = match src {
            Some(i) if i < original.len() && !used[i] => {
                used[i] = true;
                original[i].clone()
            }
            Some(_) => {
                problems
                    .push(problem(format!("{field}.{position}"), "this row is not in the text being edited; reload"));
                continue;
            }
            None => {
                let mut row = vec![String::new(); table.columns.len()];
                let id = table.column("id").expect("id column is required");
                row[id] = Uuid::new_v4().to_string();
                row
            }
        };
        for (column, value) in cells {
            let value = normalize_cell(&value);
            let index = match table.column(column) {
                Some(index) => index,
                // Only add a column for a value someone gave.
                None if value.is_empty() => continue,
                None => {
                    table.columns.push(column.into());
                    table.columns.len() - 1
                }
            };
            row.resize(row.len().max(table.columns.len()), String::new());
            row[index] = value;
        }
        out.push(row);
    }
    // Columns added by a later row widen the earlier ones and the untouched originals alike.
    for row in &mut out {
        row.resize(table.columns.len(), String::new());
    }
    table.rows = out;
    table
}

/// Apply an edit made on `spec`'s text; returns the new text, or every problem found.
pub fn apply(spec: &SpecFile, draft: &Draft) -> Result<String, Vec<Problem>> {
    if let Some(why) = unavailable(spec) {
        return Err(vec![problem("source", format!("edit this spec in Source: {why}"))]);
    }
    let mut problems = vec![];
    let props_table = spec.table(PROPS);
    let events_table = spec.table(EVENTS);

    let mut names: Vec<&str> = vec![];
    let mut prop_rows = vec![];
    for (i, p) in draft.props.iter().enumerate() {
        let name = p.name.trim();
        if let Some(why) = name_problem(name) {
            problems.push(problem(format!("prop.{i}.name"), why));
        } else if names.contains(&name) {
            problems.push(problem(format!("prop.{i}.name"), format!("another prop is named {name}")));
        }
        names.push(name);
        let original = p.src.and_then(|s| props_table.and_then(|t| t.get(s, "type")));
        let type_ = match resolve_type(p, original) {
            Ok(t) => t,
            Err(why) => {
                let field = if p.kind == "oneof" { "options" } else { "custom" };
                problems.push(problem(format!("prop.{i}.{field}"), why));
                String::new()
            }
        };
        let original_editable = p.src.and_then(|s| props_table.and_then(|t| t.get(s, "textEditable")));
        // `""` and `false` mean the same: keep what the file says unless the meaning changed.
        let has_column = props_table.is_none_or(|t| t.column("textEditable").is_some());
        let editable = match (original_editable, p.text_editable) {
            (Some(v), wanted) if (v == "true") == wanted => v.to_owned(),
            (_, true) => "true".into(),
            // A table without the column gets none for a `false`.
            (_, false) if has_column => "false".into(),
            (_, false) => String::new(),
        };
        let default = normalize_cell(&p.default);
        if !default.is_empty()
            && let Ok(ty) = types::parse(&type_)
            && ty.fits(&default) == types::Fit::No
        {
            problems.push(problem(format!("prop.{i}.default"), format!("{default} is not a value of {type_}")));
        }
        prop_rows.push((
            p.src,
            vec![
                ("name", name.to_owned()),
                ("type", type_),
                ("default", default),
                ("textEditable", editable),
                ("description", p.description.clone()),
            ],
        ));
    }
    let mut names: Vec<&str> = vec![];
    let mut event_rows = vec![];
    for (i, e) in draft.events.iter().enumerate() {
        let name = e.name.trim();
        if let Some(why) = name_problem(name) {
            problems.push(problem(format!("event.{i}.name"), why));
        } else if names.contains(&name) {
            problems.push(problem(format!("event.{i}.name"), format!("another event is named {name}")));
        }
        names.push(name);
        event_rows.push((
            e.src,
            vec![("name", name.to_owned()), ("payload", e.payload.clone()), ("description", e.description.clone())],
        ));
    }
    let props = rebuild(
        props_table,
        &["id", "name", "type", "default", "textEditable", "description"],
        prop_rows,
        "prop",
        &mut problems,
    );
    let events = rebuild(events_table, &["id", "name", "payload", "description"], event_rows, "event", &mut problems);

    // Prose pieces, by index; a piece followed by a block must end its last line.
    let model = spec.model();
    let mut prose: Vec<Option<String>> = vec![None; model.prose.len()];
    for piece in &draft.prose {
        let Some(old) = model.prose.get(piece.index) else {
            problems
                .push(problem(format!("prose.{}", piece.index), "this text is not in the spec being edited; reload"));
            continue;
        };
        let (lead, body, trail) = trim_piece(old);
        let newline = spec.newline();
        let typed = piece.text.replace("\r\n", "\n");
        let typed = typed.trim_end();
        if typed == body.replace("\r\n", "\n").trim_end() {
            continue;
        }
        let mut text = format!("{lead}{}", typed.replace('\n', newline));
        // A piece before a block must end its line (the marker is alone on its own); so does a
        // file's only text.
        let ends_line = (piece.index < spec.blocks.len() && !typed.is_empty()) || spec.blocks.is_empty();
        let trail = if trail.is_empty() && ends_line { newline.to_owned() } else { trail.to_owned() };
        text.push_str(&trail);
        prose[piece.index] = Some(text);
    }
    let renamed = match (&draft.name, spec.frontmatter.as_ref()) {
        (Some(wanted), Some(fm)) => {
            let wanted = wanted.trim();
            let current = fm.name.as_deref().unwrap_or_default();
            if wanted == current {
                None
            } else if wanted.is_empty() {
                problems.push(problem("component.name", "give the component a name"));
                None
            } else if wanted.chars().count() > MAX_NAME_CHARS {
                problems.push(problem("component.name", format!("at most {MAX_NAME_CHARS} characters")));
                None
            } else if wanted.chars().any(char::is_control) {
                problems.push(problem("component.name", "one line of text, without control characters"));
                None
            } else {
                Some(wanted.to_owned())
            }
        }
        _ => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut edited = spec.clone();
    let mut append = String::new();
    let newline = spec.newline();
    for (kind, table) in [(PROPS, props), (EVENTS, events)] {
        match edited.table_mut(kind) {
            Some(t) => *t = table,
            None if table.rows.is_empty() => {}
            None => {
                append.push_str(newline);
                append.push_str(&format!("<!-- arno:{kind} v1 -->{newline}"));
                append.push_str(&table.render(newline));
                append.push_str(&format!("<!-- /arno:{kind} -->{newline}"));
            }
        }
    }
    let mut text = edited.serialize_with_prose(&prose);
    if !append.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(newline);
        }
        text.push_str(&append);
    }
    // What was typed as prose must stay prose: a marker or an unclosed fence there would change
    // which blocks the file has.
    let after = SpecFile::parse(text.as_str());
    let kinds = |s: &SpecFile| s.blocks.iter().map(|b| (b.kind.clone(), b.parsed.is_some())).collect::<Vec<_>>();
    let mut expected = kinds(spec);
    for kind in [PROPS, EVENTS] {
        if spec.block_index(kind).is_none() && after.block_index(kind).is_some() {
            expected.push((kind.to_owned(), true));
        }
    }
    if kinds(&after) != expected {
        let field = draft
            .prose
            .iter()
            .find(|p| prose.get(p.index).is_some_and(Option::is_some))
            .map_or("source".to_owned(), |p| format!("prose.{}", p.index));
        return Err(vec![problem(
            field,
            "this text would start or end a props or events block (an `<!-- arno:… -->` line or a code fence \
             that is not closed); write it differently, or edit the spec in Source",
        )]);
    }
    match renamed {
        Some(name) => {
            let text = with_name(&text, &name).map_err(|why| vec![problem("component.name", why)])?;
            let read = SpecFile::parse(text.as_str());
            if read.frontmatter.as_ref().and_then(|f| f.name.as_deref()) != Some(name.as_str())
                || kinds(&read) != expected
            {
                return Err(vec![problem("component.name", "the name could not be written; edit it in Source")]);
            }
            Ok(text)
        }
        None => Ok(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUTTON: &str = "---\r\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\r\nname: Button\r\n---\r\n\
# Button\r\n\r\nA button.  \r\n\r\n<!-- arno:props v1 -->\r\n| id | name | type | default | textEditable | owner |\r\n|:--|--|--|--|--|--|\r\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"Buy\" | true | ux |\r\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | size | \"sm\" \\| \"md\" |  |  | ds |\r\n<!-- /arno:props -->\r\n\r\n\
Between ünïcode.\r\n\r\n<!-- arno:events v1 -->\r\n|name|id|\r\n|-|-|\r\n| onClick | 7a000000-0000-4000-8000-000000000001 |\r\n<!-- /arno:events -->\r\n";

    #[test]
    fn an_unchanged_view_writes_the_same_bytes() {
        let spec = SpecFile::parse(BUTTON);
        let draft = view(&spec);
        assert_eq!(draft.prose.len(), 2, "{:?}", draft.prose);
        assert_eq!(draft.prose[0].text, "# Button\n\nA button.  ", "a line break stays");
        assert_eq!(draft.props[1].kind, "oneof");
        assert_eq!(draft.props[1].options, "sm, md");
        assert_eq!(apply(&spec, &draft).unwrap(), BUTTON);
    }

    #[test]
    fn one_edit_rewrites_one_block() {
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        draft.props[0].default = "\"Pay\"".into();
        let out = apply(&spec, &draft).unwrap();
        let (before, after) = (spec.model(), SpecFile::parse(out.as_str()).model());
        assert_eq!(before.prose, after.prose, "prose byte-identical");
        assert_eq!(before.blocks[1], after.blocks[1], "events untouched");
        assert!(out.contains("| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | size | \"sm\" \\| \"md\" |  |  | ds |\r\n"));
        assert!(out.contains("| \"Pay\" | true | ux |\r\n"), "{out}");
        assert!(out.ends_with(
            "|name|id|\r\n|-|-|\r\n| onClick | 7a000000-0000-4000-8000-000000000001 |\r\n<!-- /arno:events -->\r\n"
        ));
    }

    #[test]
    fn add_remove_reorder_with_generated_ids() {
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        draft.props.swap(0, 1);
        draft.props.remove(1); // label
        draft.props.push(PropDraft {
            name: "disabled".into(),
            kind: "yesno".into(),
            default: "false".into(),
            ..Default::default()
        });
        draft.events.push(EventDraft { name: "onHover".into(), payload: "MouseEvent".into(), ..Default::default() });
        let out = apply(&spec, &draft).unwrap();
        let after = SpecFile::parse(out.as_str());
        assert!(!after.has_errors(), "{:?}", after.diagnostics);
        let c = super::super::Component::from_spec(&after, "x.md");
        let names: Vec<_> = c.props.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["size", "disabled"]);
        assert_eq!(c.props[1].type_, "boolean");
        assert!(Uuid::try_parse(&c.props[1].id).is_ok());
        assert_eq!(c.events[1].payload.as_deref(), Some("MouseEvent"));
        assert!(after.table(EVENTS).unwrap().column("payload").is_some(), "a column for a value given");
        assert_eq!(after.model().prose, spec.model().prose);
    }

    #[test]
    fn validation_names_each_field() {
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        draft.props[1].name = "label".into();
        draft.props.push(PropDraft {
            name: "".into(),
            kind: "custom".into(),
            custom: "Array<".into(),
            ..Default::default()
        });
        draft.props.push(PropDraft {
            name: "tone".into(),
            kind: "oneof".into(),
            options: " , ".into(),
            ..Default::default()
        });
        draft.props.push(PropDraft {
            name: "count".into(),
            kind: "number".into(),
            default: "many".into(),
            ..Default::default()
        });
        draft.events.push(EventDraft { name: "1st".into(), ..Default::default() });
        let problems = apply(&spec, &draft).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["prop.1.name", "prop.2.name", "prop.2.custom", "prop.3.options", "prop.4.default", "event.1.name"]
        );
        assert!(problems[2].message.contains("at character 7"), "{:?}", problems[2]);
    }

    #[test]
    fn prose_edits_keep_layout_and_stay_prose() {
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        draft.prose[0].text = "# Button\n\nThe main action.\n".into();
        let out = apply(&spec, &draft).unwrap();
        assert!(out.contains("---\r\n# Button\r\n\r\nThe main action.\r\n\r\n<!-- arno:props v1 -->"), "{out:?}");
        draft.prose[0].text = "```\nunclosed".into();
        assert_eq!(apply(&spec, &draft).unwrap_err()[0].field, "prose.0");
        draft.prose[0].text = "<!-- arno:props v1 -->".into();
        assert!(apply(&spec, &draft).is_err());
    }

    #[test]
    fn a_spec_without_blocks_gets_them_at_the_end() {
        let spec = SpecFile::parse("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n# Card");
        let mut draft = view(&spec);
        assert_eq!(draft.prose[0].text, "# Card");
        apply(&spec, &draft).map(|t| assert_eq!(t, spec.source())).unwrap();
        draft.props.push(PropDraft {
            name: "title".into(),
            kind: "text".into(),
            text_editable: true,
            ..Default::default()
        });
        let out = apply(&spec, &draft).unwrap();
        assert!(
            out.starts_with("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n# Card\n\n<!-- arno:props v1 -->\n"),
            "{out}"
        );
        let c = super::super::Component::from_spec(&SpecFile::parse(out.as_str()), "Card.md");
        assert!(c.props[0].text_editable && c.errors.is_empty());
    }

    #[test]
    fn renaming_rewrites_only_the_name_line() {
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        assert_eq!(draft.name.as_deref(), Some("Button"));
        draft.name = Some("Primary \"button\"".into());
        let out = apply(&spec, &draft).unwrap();
        assert_eq!(out, BUTTON.replace("name: Button\r\n", "name: \"Primary \\\"button\\\"\"\r\n"));
        let c = super::super::Component::from_spec(&SpecFile::parse(out.as_str()), "x.md");
        assert_eq!(c.name, "Primary \"button\"");
        // No name yet: added after the id; a name over several lines is left to Source.
        let spec = SpecFile::parse("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nstatus: x\n---\n# Card\n");
        let mut draft = view(&spec);
        draft.name = Some("Card".into());
        assert_eq!(
            apply(&spec, &draft).unwrap(),
            "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: \"Card\"\nstatus: x\n---\n# Card\n"
        );
        let spec = SpecFile::parse("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: >\n  Long\n---\n");
        let mut draft = view(&spec);
        draft.name = Some("Short".into());
        assert_eq!(apply(&spec, &draft).unwrap_err()[0].field, "component.name");
        for bad in ["", "a\u{7}b", &"x".repeat(81)] {
            let spec = SpecFile::parse(BUTTON);
            let mut draft = view(&spec);
            draft.name = Some(bad.to_owned());
            assert_eq!(apply(&spec, &draft).unwrap_err()[0].field, "component.name", "{bad:?}");
        }
    }

    #[test]
    fn broken_blocks_send_to_source_and_forged_rows_are_refused() {
        let broken = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:props v1 -->\n| id |\n<!-- /arno:props -->\n";
        let spec = SpecFile::parse(broken);
        assert!(unavailable(&spec).is_some());
        assert_eq!(apply(&spec, &Draft::default()).unwrap_err()[0].field, "source");
        let spec = SpecFile::parse(BUTTON);
        let mut draft = view(&spec);
        draft.props[1].src = Some(0); // the same row twice
        assert_eq!(apply(&spec, &draft).unwrap_err()[0].field, "prop.1");
        draft.props[1].src = Some(99);
        assert!(apply(&spec, &draft).is_err());
    }
}

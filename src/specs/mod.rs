//! Component specs: one Markdown file per component in the repository (`Design_system/*.md`).
//!
//! - [`SpecFile`] parses a file without losing a byte and serializes it back (only changed blocks
//!   are rewritten); the format is in `docs/spec-format.md`.
//! - [`Component`] is the typed view the UI and API show (props, events, description).
//! - [`lint`] and [`backfill`] are the `arno lint` / `arno backfill-ids` commands' engines.
//! - [`RepoConfig`] reads `.arno/config.json`.

pub mod backfill;
pub mod config;
pub mod document;
#[cfg(test)]
mod fuzz;
pub mod lint;
pub mod render;
pub mod structured;
pub mod table;
pub mod types;
pub mod versions;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use config::RepoConfig;
pub use document::{Diagnostic, Severity, SpecFile};

/// A prop as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Prop {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub default: Option<String>,
    pub text_editable: bool,
    pub description: Option<String>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub payload: Option<String>,
}

/// Where a spec could not be read: a 1-based line and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// The typed view of one spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub id: Option<String>,
    pub name: String,
    pub status: Option<String>,
    pub props: Vec<Prop>,
    pub events: Vec<Event>,
    /// Every error in the file; empty for a clean spec.
    pub errors: Vec<ParseError>,
}

impl Component {
    /// Read a spec. `file_name` names the component when the frontmatter has no `name`.
    pub fn from_spec(spec: &SpecFile, file_name: &str) -> Component {
        let fm = spec.frontmatter.as_ref();
        let stem = file_name.rsplit('/').next().unwrap_or(file_name);
        let stem = stem.strip_suffix(".md").unwrap_or(stem);
        let optional = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(str::to_owned);
        let props = spec.table(document::PROPS).map_or(vec![], |t| {
            (0..t.rows.len())
                .map(|row| Prop {
                    id: t.get(row, "id").unwrap_or_default().to_owned(),
                    name: t.get(row, "name").unwrap_or_default().to_owned(),
                    type_: t.get(row, "type").unwrap_or_default().to_owned(),
                    default: optional(t.get(row, "default")),
                    text_editable: t.get(row, "textEditable") == Some("true"),
                    description: optional(t.get(row, "description")),
                })
                .collect()
        });
        let events = spec.table(document::EVENTS).map_or(vec![], |t| {
            (0..t.rows.len())
                .map(|row| Event {
                    id: t.get(row, "id").unwrap_or_default().to_owned(),
                    name: t.get(row, "name").unwrap_or_default().to_owned(),
                    description: optional(t.get(row, "description")),
                    payload: optional(t.get(row, "payload")),
                })
                .collect()
        });
        Component {
            id: spec.id().map(|id| id.to_string()),
            name: fm.and_then(|f| f.name.clone()).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| stem.to_owned()),
            status: fm.and_then(|f| f.status.clone()),
            props,
            events,
            errors: spec
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| ParseError { line: d.line, message: d.message.clone() })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\nstatus: stable\n---\n\
# Button\n\nA button.\n\n<!-- arno:props v1 -->\n| id | name | type | default | textEditable |\n|----|------|------|---------|--------------|\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"Buy\" | true |\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | size | 'sm' \\| 'md' |  | false |\n<!-- /arno:props -->\n\n\
<!-- arno:events v1 -->\n| name | id | payload |\n|---|---|---|\n| onClick | 7a000000-0000-4000-8000-000000000001 | MouseEvent |\n<!-- /arno:events -->\n";

    #[test]
    fn reads_a_component() {
        let spec = SpecFile::parse(BUTTON);
        assert!(spec.diagnostics.is_empty(), "{:?}", spec.diagnostics);
        let c = Component::from_spec(&spec, "Design_system/Button.md");
        assert_eq!(c.id.as_deref(), Some("0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01"));
        assert_eq!((c.name.as_str(), c.status.as_deref()), ("Button", Some("stable")));
        assert_eq!(c.props.len(), 2);
        assert_eq!(c.props[0].default.as_deref(), Some("\"Buy\""));
        assert!(c.props[0].text_editable && !c.props[1].text_editable);
        assert_eq!(c.props[1].type_, "'sm' | 'md'");
        assert_eq!(c.events[0].name, "onClick");
        assert_eq!(c.events[0].payload.as_deref(), Some("MouseEvent"));
        assert_eq!(spec.serialize(), BUTTON);
    }

    #[test]
    fn an_edit_rewrites_only_its_block() {
        let mut spec = SpecFile::parse(BUTTON);
        let table = spec.table_mut(document::PROPS).unwrap();
        let col = table.column("default").unwrap();
        table.set(0, col, "\"Pay\"");
        let out = spec.serialize();
        assert!(out.contains("| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"Pay\" | true |\n"));
        assert!(out.contains("| --- | --- | --- | --- | --- |\n"), "props block is canonical now");
        assert!(out.contains("| name | id | payload |\n|---|---|---|\n"), "events block untouched");
        let reparsed = SpecFile::parse(out.clone());
        assert_eq!(reparsed.model(), spec.model());
        assert_eq!(reparsed.serialize(), out);
    }

    #[test]
    fn broken_specs_say_where() {
        let cases: &[(&str, usize, &str)] = &[
            ("# no frontmatter\n", 1, "missing frontmatter"),
            ("---\nname: X\n---\n", 1, "no `id`"),
            ("---\nname: X\nid: nope\n---\n", 3, "not a UUID"),
            ("---\nid: [1\n---\n", 3, "malformed frontmatter"),
            ("---\nid: x\n", 1, "not closed"),
            (
                "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n\n<!-- arno:props v1 -->\n| id |\n",
                5,
                "never closed",
            ),
            (
                "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:props v2 -->\n<!-- /arno:props -->\n",
                4,
                "unknown block version",
            ),
            (
                "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:props -->\n<!-- /arno:props -->\n",
                4,
                "no version",
            ),
            ("---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- /arno:props -->\n", 4, "never opened"),
            (
                "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:props v1 -->\n| id | name |\n|-|-|\n| a | b |\n<!-- /arno:props -->\n",
                4,
                "no `type` column",
            ),
            (
                "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:events v1 -->\n| id | name |\n|-|-|\n|  | b |\n<!-- /arno:events -->\n",
                7,
                "no id",
            ),
        ];
        for (text, line, message) in cases {
            let spec = SpecFile::parse(*text);
            let first = spec.first_error().unwrap_or_else(|| panic!("no error for {text:?}"));
            assert_eq!(first.line, *line, "{text:?}: {first:?}");
            assert!(first.message.contains(message), "{text:?}: {first:?}");
            assert_eq!(spec.serialize(), *text, "a broken file still round-trips");
        }
    }

    #[test]
    fn many_unclosed_markers_read_in_one_pass() {
        // Found by the fuzzer (src/fuzz/): each unclosed marker searched the rest of the file, so
        // a 1 MiB spec (the scan's limit) of them took minutes. Each is reported, once.
        let mut text = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n".to_owned();
        let n = (1 << 20) / "<!-- arno:props v1 -->\n| id |\n".len();
        for _ in 0..n {
            text.push_str("<!-- arno:props v1 -->\n| id |\n");
        }
        let spec = SpecFile::parse(text.as_str());
        assert!(spec.blocks.is_empty());
        assert_eq!(spec.diagnostics.len(), n);
        assert!(spec.diagnostics.iter().all(|d| d.message.contains("never closed")));
        assert_eq!(spec.diagnostics[1].line, 6);
        // An unclosed marker before a closed block: the later block still reads.
        let text = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- /arno:events -->\n<!-- arno:events v1 -->\n| id | name |\n|-|-|\n<!-- /arno:events -->\n<!-- arno:props v1 -->\n";
        let spec = SpecFile::parse(text);
        assert_eq!(spec.blocks.len(), 1);
        assert_eq!(spec.first_error().map(|d| d.line), Some(4));
        assert!(spec.diagnostics.iter().any(|d| d.line == 9 && d.message.contains("never closed")));
    }

    #[test]
    fn blocks_inside_code_fences_are_prose() {
        let text = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n````md\n<!-- arno:props v1 -->\n```\n<!-- /arno:props -->\n````\n~~~\n<!-- arno:bogus -->\n~~~\n";
        let spec = SpecFile::parse(text);
        assert!(spec.blocks.is_empty());
        assert!(spec.diagnostics.is_empty(), "{:?}", spec.diagnostics);
    }
}

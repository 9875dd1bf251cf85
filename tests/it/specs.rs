//! Spec files: the round-trip law (property tests), golden files of tricky real-world Markdown,
//! and the `arno lint` / `arno backfill-ids` commands.

use std::path::Path;
use std::process::Command;

use arno::specs::document::{EVENTS, PROPS};
use arno::specs::table::Table;
use arno::specs::{Component, SpecFile, lint};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Property tests

/// Prose pieces chosen to stress the parser: things that look like blocks, fences, tables,
/// frontmatter delimiters, HTML, unicode and whitespace at line ends. Fences are always closed
/// (a generated block after an unclosed fence is, correctly, code).
fn prose_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,.*_#>\\-]{0,30}",
        "[^\r\n`~<|]{0,20}",
        Just("# Heading  ".to_owned()),
        Just("trailing spaces   ".to_owned()),
        Just("| not | a block |".to_owned()),
        Just("|---|---|".to_owned()),
        Just("---".to_owned()),
        Just("<!-- just a comment -->".to_owned()),
        Just("<div class=\"x\">html</div>".to_owned()),
        Just("unicode: Кнопка ✓ 漢字 🎨 é".to_owned()),
        Just("\t\ttabs".to_owned()),
        Just("```md\n<!-- arno:props v1 -->\n| id |\n<!-- /arno:props -->\n```".to_owned()),
        Just("~~~~\n<!-- arno:events v1 -->\n~~~~".to_owned()),
        Just("    <!-- arno:props v1 --> indented code".to_owned()),
    ]
}

fn cell() -> impl Strategy<Value = String> {
    prop_oneof!["[^\r\n]{0,16}", "[a-z|\\\\ `'\"]{0,10}", Just(String::new())]
        .prop_map(|s| arno::specs::table::normalize_cell(&s))
}

fn table(kind: &'static str) -> impl Strategy<Value = Table> {
    let extra = prop::sample::subsequence(
        if kind == PROPS { vec!["default", "textEditable", "description", "Owner"] } else { vec!["payload", "Notes"] },
        0..=2,
    );
    let required: Vec<&str> = if kind == PROPS { vec!["id", "name", "type"] } else { vec!["id", "name"] };
    (extra, Just(required)).prop_flat_map(|(extra, required)| {
        let columns: Vec<String> = required.iter().chain(extra.iter()).map(|c| c.to_string()).collect();
        let width = columns.len();
        (Just(columns), prop::collection::vec(prop::collection::vec(cell(), width), 0..5))
            .prop_map(|(columns, rows)| Table { columns, rows })
    })
}

/// A generated spec: its pieces and the file text built from them.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    props: Option<Table>,
    events: Option<Table>,
}

fn spec() -> impl Strategy<Value = Generated> {
    (
        prop::bool::ANY,
        prop::collection::vec(prose_piece(), 0..6),
        prop::option::of(table(PROPS)),
        prop::collection::vec(prose_piece(), 0..4),
        prop::option::of(table(EVENTS)),
        prop::collection::vec(prose_piece(), 0..4),
        prop::bool::ANY,
    )
        .prop_map(|(crlf, p1, props, p2, events, p3, final_newline)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("---{nl}id: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01{nl}name: Gen{nl}---{nl}");
            let prose =
                |pieces: &[String]| pieces.iter().map(|p| format!("{}{nl}", p.replace('\n', nl))).collect::<String>();
            text.push_str(&prose(&p1));
            if let Some(t) = &props {
                text.push_str(&format!("<!-- arno:props v1 -->{nl}{}<!-- /arno:props -->{nl}", t.render(nl)));
            }
            text.push_str(&prose(&p2));
            if let Some(t) = &events {
                text.push_str(&format!("<!-- arno:events v1 -->{nl}{}<!-- /arno:events -->{nl}", t.render(nl)));
            }
            text.push_str(&prose(&p3));
            if !final_newline && text.ends_with(nl) && !p3.is_empty() {
                text.truncate(text.len() - nl.len());
            }
            Generated { text, props, events }
        })
}

/// Line soup from block markers, fences, rows and prose: whatever it is, parsing must not panic
/// and serializing an untouched parse must give the bytes back.
fn soup() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("---"),
        Just("id: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01"),
        Just("id: [broken"),
        Just("<!-- arno:props v1 -->"),
        Just("<!-- arno:events v1 -->"),
        Just("<!-- arno:props v9 -->"),
        Just("<!-- arno:props -->"),
        Just("<!-- /arno:props -->"),
        Just("<!-- /arno:events -->"),
        Just("| id | name | type |"),
        Just("|---|---|---|"),
        Just("| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | a | string |"),
        Just("|  | b |"),
        Just("```"),
        Just("~~~"),
        Just(""),
        Just("text ✓  "),
    ];
    (prop::collection::vec(line, 0..24), prop::bool::ANY, "[^\r\n]{0,8}").prop_map(|(lines, crlf, tail)| {
        let nl = if crlf { "\r\n" } else { "\n" };
        lines.join(nl) + nl + &tail
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Unchanged → byte-identical, and the generated tables are read back exactly.
    #[test]
    fn untouched_specs_round_trip(generated in spec()) {
        let parsed = SpecFile::parse(generated.text.as_str());
        prop_assert_eq!(parsed.serialize(), generated.text.clone());
        prop_assert_eq!(parsed.table(PROPS), generated.props.as_ref());
        prop_assert_eq!(parsed.table(EVENTS), generated.events.as_ref());
        prop_assert_eq!(SpecFile::parse(parsed.serialize()).model(), parsed.model());
    }

    /// After an edit only the changed block differs, and parse(serialize(x)) == x.
    #[test]
    fn edited_specs_round_trip(generated in spec(), row in any::<prop::sample::Index>(), col in any::<prop::sample::Index>(), value in cell()) {
        let mut parsed = SpecFile::parse(generated.text.as_str());
        let before = parsed.model();
        let kind = if generated.props.as_ref().is_some_and(|t| !t.rows.is_empty()) { PROPS } else { EVENTS };
        if let Some(table) = parsed.table_mut(kind).filter(|t| !t.rows.is_empty()) {
            let (r, c) = (row.index(table.rows.len()), col.index(table.columns.len()));
            table.set(r, c, &value);
        }
        let edited = parsed.model();
        let text = parsed.serialize();
        let reparsed = SpecFile::parse(text.as_str());
        prop_assert_eq!(reparsed.model(), edited.clone());
        // Prose, frontmatter and the other block are untouched.
        prop_assert_eq!(&edited.prose, &before.prose);
        prop_assert_eq!(reparsed.serialize(), text);
    }

    #[test]
    fn any_text_parses_and_round_trips(text in soup()) {
        let parsed = SpecFile::parse(text.as_str());
        prop_assert_eq!(parsed.serialize(), text);
    }

    #[test]
    fn arbitrary_unicode_round_trips(text in "\\PC*") {
        prop_assert_eq!(SpecFile::parse(text.as_str()).serialize(), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files: tricky real-world Markdown, byte-identical round trip, and what Arno reads.

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/specs")
}

#[test]
fn golden_specs_round_trip_and_read_as_recorded() {
    let mut seen = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let spec = SpecFile::parse(text.as_str());
        assert_eq!(spec.serialize().as_bytes(), bytes.as_slice(), "{} is not byte-identical", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let component = Component::from_spec(&spec, &name);
        let warnings: Vec<String> = spec
            .diagnostics
            .iter()
            .filter(|d| d.severity == arno::specs::Severity::Warning)
            .map(|d| format!("{}: {}", d.line, d.message))
            .collect();
        let actual = serde_json::to_string_pretty(&serde_json::json!({
            "component": component,
            "warnings": warnings,
            "description_html": arno::specs::render::prose_to_html(&spec.prose()),
        }))
        .unwrap()
            + "\n";
        let expected_path = path.with_extension("json");
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create)", expected_path.display()));
        assert_eq!(actual, expected, "{name} reads differently from its golden file");
    }
    assert!(seen >= 4, "golden specs missing");
}

/// The structured editor on the golden files: showing a spec and saving the view unchanged gives
/// the same bytes; editing one prop (or adding one to a spec without props) changes only the
/// props block — every prose piece, the frontmatter and every other block stay byte-identical.
#[test]
fn golden_specs_survive_structured_edits() {
    use arno::specs::structured::{self, PropDraft};
    let mut edited = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = SpecFile::parse(text.as_str());
        if structured::unavailable(&spec).is_some() {
            assert!(name.ends_with("broken.md"), "{name}: {:?}", structured::unavailable(&spec));
            continue;
        }
        let mut draft = structured::view(&spec);
        assert_eq!(structured::apply(&spec, &draft).unwrap(), text, "{name}: an unchanged view rewrote the file");
        let added = match draft.props.first_mut() {
            Some(p) => {
                p.description = format!("{} — edited ✓", p.description);
                false
            }
            None => {
                draft.props.push(PropDraft { name: "added".into(), kind: "text".into(), ..Default::default() });
                true
            }
        };
        let out = structured::apply(&spec, &draft).unwrap();
        let after = SpecFile::parse(out.as_str());
        let (before_model, after_model) = (spec.model(), after.model());
        if added {
            assert!(out.starts_with(text.as_str()), "{name}: a new block goes after every existing byte");
            assert_eq!(after.blocks.last().map(|b| b.kind.as_str()), Some(PROPS));
        } else {
            assert_eq!(after_model.prose, before_model.prose, "{name}: prose changed");
        }
        assert_eq!((&after_model.id, &after_model.name), (&before_model.id, &before_model.name));
        let fm = |s: &SpecFile, t: &str| s.frontmatter.as_ref().map(|f| t[f.span.clone()].to_owned());
        assert_eq!(fm(&after, &out), fm(&spec, &text), "{name}: frontmatter bytes");
        for (b, a) in spec.blocks.iter().zip(&after.blocks) {
            if b.kind != PROPS {
                assert_eq!(&out[a.outer.clone()], &text[b.outer.clone()], "{name}: {} block bytes", b.kind);
            }
        }
        let (old, new) = (Component::from_spec(&spec, &name), Component::from_spec(&after, &name));
        assert_eq!(new.events, old.events);
        assert!(new.errors.len() <= old.errors.len(), "{name}: {:?}", new.errors);
        if let Some(first) = old.props.first() {
            let described = new.props[0].description.as_deref().unwrap_or_default();
            assert_eq!(described, format!("{} — edited ✓", first.description.as_deref().unwrap_or_default()).trim());
            assert_eq!(new.props[1..], old.props[1..]);
        }
        edited += 1;
    }
    assert!(edited >= 3, "golden specs missing");
}

// ---------------------------------------------------------------------------------------------
// `arno lint` and `arno backfill-ids`

fn arno(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arno")).args(args).env("ARNO_CONFIG", "").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const GOOD: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n# Button\n\n<!-- arno:props v1 -->\n| id | name | type |\n|---|---|---|\n| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string |\n<!-- /arno:props -->\n";

#[test]
fn lint_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Design_system/Button.md", GOOD);
    let (code, out, err) = arno(&["lint", root.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("1 spec file(s): 0 error(s)"), "{err}");

    // A copy with the same ids, a broken one and a missing id.
    write(root, "Design_system/Copy.md", GOOD);
    write(
        root,
        "Design_system/forms/Broken.md",
        "---\nname: B\n---\n<!-- arno:props v2 -->\n<!-- /arno:props -->\n<!-- arno:events v1 -->\n",
    );
    write(root, "README.md", "not a spec\n");
    let (code, out, _) = arno(&["lint", root.to_str().unwrap()]);
    let r = root.to_str().unwrap();
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "{r}/Design_system/Copy.md:2: duplicate component id 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01 (also in Design_system/Button.md:2)\n\
             {r}/Design_system/Copy.md:9: duplicate id 6f1c7d2e-1111-4a2b-8c3d-000000000001 (also in Design_system/Button.md:9)\n\
             {r}/Design_system/forms/Broken.md:1: frontmatter has no `id` (run `arno backfill-ids` to add one)\n\
             {r}/Design_system/forms/Broken.md:4: unknown block version `arno:props v2` (this Arno reads v1)\n\
             {r}/Design_system/forms/Broken.md:6: `<!-- arno:events -->` is never closed\n"
        )
    );

    // The config decides the folder; a bad config is an error naming the field.
    write(root, ".arno/config.json", r#"{"version": 1, "componentsMd": "specs/"}"#);
    write(root, "specs/A.md", GOOD);
    let (code, out, _) = arno(&["lint", r]);
    assert_eq!((code, out.as_str()), (0, ""));
    write(root, ".arno/config.json", r#"{"version": 3}"#);
    let (code, out, _) = arno(&["lint", r]);
    assert_eq!(code, 1);
    assert!(out.starts_with(&format!("{r}/.arno/config.json:1: version: version 3 is not supported")), "{out}");

    // One file; a path that does not exist.
    let (code, out, _) = arno(&["lint", &format!("{r}/Design_system/forms/Broken.md")]);
    assert_eq!((code, out.lines().count()), (1, 3), "{out}");
    let (code, _, err) = arno(&["lint", &format!("{r}/nope")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn backfill_ids_adds_only_missing_ids_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let untouched = GOOD.replace("0b5e1c1e", "1b5e1c1e").replace("6f1c7d2e-1111", "7f1c7d2e-1111");
    write(root, "Design_system/Good.md", &untouched);
    let missing = "---\r\nname: Card  \r\n---\r\nProse *kept*  \r\n<!-- arno:events v1 -->\r\n| id | name |\r\n|:--|:--|\r\n|    | onOpen |\r\n<!-- /arno:events -->\r\n";
    write(root, "Design_system/Card.md", missing);
    let r = root.to_str().unwrap();

    let (code, out, _) = arno(&["backfill-ids", "--dry-run", r]);
    assert_eq!((code, out.trim()), (0, format!("{r}/Design_system/Card.md: would add 2 id(s)").as_str()));
    assert_eq!(std::fs::read_to_string(root.join("Design_system/Card.md")).unwrap(), missing);

    let (code, out, _) = arno(&["backfill-ids", r]);
    assert_eq!((code, out.trim()), (0, format!("{r}/Design_system/Card.md: added 2 id(s)").as_str()));
    let card = std::fs::read_to_string(root.join("Design_system/Card.md")).unwrap();
    let lines: Vec<&str> = card.split("\r\n").collect();
    assert!(uuid::Uuid::try_parse(lines[1].strip_prefix("id: ").unwrap()).is_ok(), "{card:?}");
    let event_id = lines[8].trim_matches(|c| c == '|' || c == ' ').split(" | ").next().unwrap();
    assert!(uuid::Uuid::try_parse(event_id).is_ok(), "{card:?}");
    // Everything else is byte-identical.
    let restored =
        card.replace(&format!("id: {}\r\n", &lines[1][4..]), "").replacen(&format!(" {event_id} "), "    ", 1);
    assert_eq!(restored, missing);
    assert_eq!(std::fs::read_to_string(root.join("Design_system/Good.md")).unwrap(), untouched);
    let (code, out, _) = arno(&["lint", r]);
    assert_eq!((code, out.as_str()), (0, ""));

    // Nothing left to do; a bad config refuses rather than guess the folder.
    let (code, out, _) = arno(&["backfill-ids", r]);
    assert_eq!((code, out.as_str()), (0, ""));
    write(root, ".arno/config.json", "{\"version\": 1, \"componentsMd\": 5}");
    let (code, _, err) = arno(&["backfill-ids", r]);
    assert_eq!(code, 1);
    assert!(err.contains("componentsMd"), "{err}");
}

#[test]
fn lint_and_backfill_agree_on_what_is_missing() {
    let files = vec![("A.md".to_owned(), "# no id\n".to_owned())];
    assert_eq!(lint::lint_files(&files).len(), 1);
    let fixed = arno::specs::backfill::backfill(&files[0].1);
    assert!(lint::lint_files(&[("A.md".into(), fixed.text)]).is_empty());
}

//! Fuzz targets for what a repository hands Arno: spec Markdown and `.arno/config.json`
//! (engine and how to run: `src/fuzz.rs`).

use super::{Component, RepoConfig, SpecFile, backfill, document, render};
use crate::fuzz::{self, Rng, Target};

const BUTTON: &str = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\nname: Button\nstatus: stable\n---\n\n# Button\n\n\
<!-- arno:props v1 -->\n| id | name | type | default | textEditable |\n|---|---|---|---|---|\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | label | string | \"Buy\" | true |\n\
| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | size | 'sm' \\| 'md' | | false |\n<!-- /arno:props -->\n\n\
<!-- arno:events v1 -->\n| name | id | payload |\n|---|---|---|\n| onClick | 6f1c7d2e-1111-4a2b-8c3d-000000000003 | MouseEvent |\n\
<!-- /arno:events -->\n";

fn spec_seeds() -> Vec<Vec<u8>> {
    let golden = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/specs");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(golden)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "md")).collect())
        .unwrap_or_else(|_| vec![])
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    seeds.push(BUTTON.as_bytes().to_vec());
    seeds.push(BUTTON.replace('\n', "\r\n").into_bytes());
    seeds.push(format!("\u{feff}{BUTTON}").into_bytes());
    seeds
}

/// Prose HTML is shown on Arno's pages: no script, no event handler, no script URL, whatever the
/// Markdown held.
fn assert_inert(html: &str) {
    let fragment = scraper::Html::parse_fragment(html);
    for node in fragment.tree.nodes() {
        let Some(el) = node.value().as_element() else { continue };
        let name = el.name();
        assert!(!matches!(name, "script" | "style" | "iframe" | "object" | "embed" | "form"), "<{name}> in {html}");
        for (attr, value) in el.attrs() {
            assert!(!attr.to_ascii_lowercase().starts_with("on"), "{attr}= in {html}");
            let v: String = value.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
            let v = v.to_ascii_lowercase();
            assert!(
                !v.starts_with("javascript:") && !v.starts_with("vbscript:") && !v.starts_with("data:text/html"),
                "{attr}={value} in {html}"
            );
        }
    }
}

/// Values a Maker can type into a cell (the editor sets them through `Table::set`).
const CELLS: &[&str] =
    &["Pay", "a | b", "a \\| b", "\\", "x\\", " padded ", "line\nbreak", "", "`code`", "<b>é</b>", "|"];

/// Parsing never panics and never loses a byte; an edited cell reads back as set, with the rest
/// of the file unchanged; derived views (component, prose HTML, backfill) hold their promises.
fn run_spec(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input).into_owned();
    let spec = SpecFile::parse(text.clone());
    assert_eq!(spec.serialize(), text, "an unedited spec serializes to its own bytes");
    let model = spec.model();
    let component = Component::from_spec(&spec, "Design_system/Fuzz.md");
    let html = render::prose_to_html(&spec.prose());
    assert_inert(&html);

    // A Maker's edit of the first cell the table has.
    let mut edited = spec.clone();
    let mut shape_edit = "none";
    if let Some(table) = edited.table_mut(document::PROPS).filter(|t| !t.rows.is_empty() && !t.columns.is_empty()) {
        let value = CELLS[input.len() % CELLS.len()];
        let (row, column) = (input.len() % table.rows.len(), input.len() % table.columns.len());
        table.set(row, column, value);
        let out = edited.serialize();
        let reparsed = SpecFile::parse(out.clone());
        assert_eq!(reparsed.model(), edited.model(), "an edited spec reads back as edited");
        assert_eq!(reparsed.serialize(), out);
        assert_eq!(reparsed.model().prose, model.prose, "an edit leaves the prose alone");
        shape_edit = "edited";
    }

    // backfill-ids: gives every prop and event an id, changes nothing else, and is idempotent.
    let filled = backfill::backfill_with(&text, &mut {
        let mut n = 0u32;
        move || {
            n += 1;
            format!("00000000-0000-4000-8000-{n:012}")
        }
    });
    let again = backfill::backfill_with(&filled.text, &mut || "not-used".into());
    assert_eq!(again.text, filled.text, "backfill-ids is idempotent");
    let after = SpecFile::parse(filled.text.clone());
    for kind in [document::PROPS, document::EVENTS] {
        if let Some(t) = after.table(kind) {
            for row in 0..t.rows.len() {
                assert!(
                    !t.get(row, "id").unwrap_or_default().is_empty(),
                    "backfill-ids left a {kind} row without an id"
                );
            }
        }
    }
    if spec.frontmatter.as_ref().is_some_and(|f| f.readable) {
        assert_eq!(after.model().prose, model.prose, "backfill-ids changes no prose");
    }

    let first_error = spec.first_error().map(|d| d.message.split([':', '`', '"']).next().unwrap_or("").to_owned());
    format!(
        "{first_error:?} blocks={} parsed={} props={} events={} errors={} fm={} {shape_edit}",
        spec.blocks.len().min(4),
        spec.blocks.iter().filter(|b| b.parsed.is_some()).count().min(4),
        component.props.len().min(3),
        component.events.len().min(3),
        component.errors.len().min(3),
        spec.frontmatter.is_some(),
    )
}

const SPEC_TOKENS: &[&[u8]] = &[
    "---\n".as_bytes(),
    "---\r\n".as_bytes(),
    "id: ".as_bytes(),
    "name: ".as_bytes(),
    "status: ".as_bytes(),
    "0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01".as_bytes(),
    "<!-- arno:props v1 -->\n".as_bytes(),
    "<!-- /arno:props -->\n".as_bytes(),
    "<!-- arno:events v1 -->\n".as_bytes(),
    "<!-- /arno:events -->\n".as_bytes(),
    "<!-- arno:props v2 -->".as_bytes(),
    "<!--".as_bytes(),
    "-->".as_bytes(),
    "| id | name | type | default | textEditable |\n".as_bytes(),
    "|---|---|---|---|---|\n".as_bytes(),
    "| --- |".as_bytes(),
    "|".as_bytes(),
    "\\|".as_bytes(),
    "\\".as_bytes(),
    "```\n".as_bytes(),
    "~~~\n".as_bytes(),
    "    ".as_bytes(),
    "\r\n".as_bytes(),
    "\r".as_bytes(),
    "\u{feff}".as_bytes(),
    "é".as_bytes(),
    "\u{2028}".as_bytes(),
    "[x](javascript:alert(1))".as_bytes(),
    "<script>".as_bytes(),
    "<img src=x onerror=alert(1)>".as_bytes(),
    "{{".as_bytes(),
    ": [".as_bytes(),
    "&amp;".as_bytes(),
    "*".as_bytes(),
    "# ".as_bytes(),
];

#[test]
fn fuzz_spec() {
    fuzz::run(&Target {
        name: "spec",
        seeds: spec_seeds,
        dictionary: SPEC_TOKENS,
        mutate: None,
        max_len: 64 * 1024,
        run: run_spec,
    });
}

fn config_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"version":1}"#.to_vec(),
        RepoConfig::default().to_file().into_bytes(),
        br#"{ "version": 1, "componentsMd": "Design_system/", "componentsCode": "src/components/",
  "pairing": { "default": "[Name].md <-> [Name].tsx", "overrides": { "Button.md": "src/ui/Btn.tsx#Button" } },
  "bundleHosting": { "type": "gh-pages", "config": {"branch": "gh-pages", "depth": 1.5} },
  "arnoChanges": { "backfillPolicy": "require-review" } }"#
            .to_vec(),
        br#"{"version":1,"pairing":"docs/[Name].md \xe2\x86\x94 lib/[Name]/index.vue"}"#.to_vec(),
    ]
}

const CONFIG_KEYS: &[&str] = &[
    "version",
    "componentsMd",
    "componentsCode",
    "pairing",
    "default",
    "overrides",
    "bundleHosting",
    "type",
    "config",
    "arnoChanges",
    "backfillPolicy",
    "componentMd",
];
const CONFIG_STRINGS: &[&str] = &[
    "Design_system/",
    "src/components/",
    "[Name].md ↔ [Name].tsx",
    "[Name].md <-> [Name]/[Name].tsx",
    "../[Name].md ↔ [Name].tsx",
    "/abs/",
    "a\\b",
    "Button.md",
    "src/ui/Btn.tsx#Button",
    "#Only",
    "gh-pages",
    "s3",
    "require-review",
    "auto",
    "",
    ".",
];

fn mutate_config(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    fuzz::mutate_json(rng, input, CONFIG_KEYS, CONFIG_STRINGS)
}

/// A config reads or is refused with a named field; what Arno writes back reads as the same
/// config; paths it pairs stay inside the repository.
fn run_config(input: &[u8]) -> String {
    match RepoConfig::parse(input) {
        Err(e) => {
            assert!(!e.field.is_empty(), "an error names its field: {e}");
            // The outcome is the field's kind, not its text (keys are anything the input says).
            let first = e.field.split(['.', '[']).next().unwrap_or("");
            let known = CONFIG_KEYS.contains(&first) || first == "(file)";
            format!(
                "err {} {}",
                if known { first } else { "other" },
                e.message.split(' ').take(2).collect::<Vec<_>>().join(" ")
            )
        }
        Ok(config) => {
            let written = config.to_file();
            let again = RepoConfig::parse(written.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{written}"));
            assert_eq!(again, config, "what Arno writes reads back the same");
            let mut shape = format!("ok overrides={}", config.pairing.overrides.len().min(3));
            for spec in ["Button.md", "forms/Input.md", "x.md"] {
                let path = format!("{}{spec}", config.components_md);
                assert!(config.is_spec_path(&path));
                if let Some(code) = config.paired_code(&path) {
                    let file = code.split('#').next().unwrap_or_default();
                    assert!(!file.starts_with('/') && !file.split('/').any(|p| p == ".."), "{code}");
                    shape.push_str(" paired");
                }
            }
            shape
        }
    }
}

const CONFIG_TOKENS: &[&[u8]] = &[
    "\"version\":".as_bytes(),
    "1".as_bytes(),
    "2".as_bytes(),
    "4294967296".as_bytes(),
    "1e400".as_bytes(),
    "-0".as_bytes(),
    "\"componentsMd\":".as_bytes(),
    "\"pairing\":".as_bytes(),
    "\"overrides\":".as_bytes(),
    "\"bundleHosting\":".as_bytes(),
    "\"arnoChanges\":".as_bytes(),
    "[Name]".as_bytes(),
    "↔".as_bytes(),
    "<->".as_bytes(),
    "..".as_bytes(),
    "\\u0000".as_bytes(),
    "\\ud800".as_bytes(),
    "null".as_bytes(),
    "{".as_bytes(),
    "}".as_bytes(),
    "[".as_bytes(),
    "]".as_bytes(),
    ",".as_bytes(),
    "\"".as_bytes(),
];

#[test]
fn fuzz_config() {
    fuzz::run(&Target {
        name: "config",
        seeds: config_seeds,
        dictionary: CONFIG_TOKENS,
        mutate: Some(mutate_config),
        max_len: 16 * 1024,
        run: run_config,
    });
}

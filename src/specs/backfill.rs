//! `arno backfill-ids`: give every component, prop and event that lacks one a fresh UUID, touching
//! nothing else in the file.
//!
//! Edits are surgical: an `id: <uuid>` line after the opening `---` (or a new frontmatter at the
//! top), and the UUID written into the empty id cell of a row with the row's other bytes intact.
//! Only a table that has no `id` column at all is rewritten (canonically, with `id` first), since
//! adding a column changes every line of it anyway. Ids that are present but invalid are left for
//! a human: `arno lint` reports them.

use uuid::Uuid;

use super::document::{EVENTS, PROPS, SpecFile};

/// The new text and how many ids were added (0 means the text is unchanged).
pub struct Backfilled {
    pub text: String,
    pub added: usize,
}

pub fn backfill(source: &str) -> Backfilled {
    backfill_with(source, &mut || Uuid::new_v4().to_string())
}

/// [`backfill`] with an id generator, for deterministic tests.
pub fn backfill_with(source: &str, new_id: &mut dyn FnMut() -> String) -> Backfilled {
    let mut added = 0;
    // Pass 1: tables with no id column get one, rewritten canonically.
    let mut spec = SpecFile::parse(source);
    for kind in [PROPS, EVENTS] {
        if let Some(table) = spec.table_mut(kind)
            && table.column("id").is_none()
        {
            table.columns.insert(0, "id".into());
            for row in &mut table.rows {
                row.insert(0, new_id());
                added += 1;
            }
        }
    }
    let text = spec.serialize();
    // Pass 2: surgical insertions, applied from the end so earlier offsets stay valid.
    let spec = SpecFile::parse(text.as_str());
    let nl = spec.newline();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = vec![];
    match &spec.frontmatter {
        None if !text.trim_start_matches('\u{feff}').starts_with("---") => {
            let at = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
            edits.push((at..at, format!("---{nl}id: {}{nl}---{nl}", new_id())));
        }
        Some(fm) if fm.id.is_none() && fm.readable && !fm.id_other => {
            let line = fm.id_line.filter(|_| fm.id_empty).and_then(|n| line_range(&text, n));
            match line {
                // `id:` with no value: replace that line's text.
                Some(range) => edits.push((range, format!("id: {}", new_id()))),
                None if !fm.id_empty => edits.push((fm.body_start..fm.body_start, format!("id: {}{nl}", new_id()))),
                None => {}
            }
        }
        _ => {}
    }
    for kind in [PROPS, EVENTS] {
        let Some(index) = spec.block_index(kind) else { continue };
        let Some(parsed) = &spec.blocks[index].parsed else { continue };
        let Some(column) = parsed.table.column("id") else { continue };
        for (row, cells) in parsed.table.rows.iter().enumerate() {
            if cells[column].is_empty() {
                edits.push((parsed.cell_spans[row][column].clone(), format!(" {} ", new_id())));
            }
        }
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut text = text;
    for (range, replacement) in &edits {
        text.replace_range(range.clone(), replacement);
    }
    Backfilled { text, added: added + edits.len() }
}

/// The byte range of a 1-based line's text (without its line ending).
fn line_range(text: &str, number: usize) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        if i + 1 == number {
            let body = raw.trim_end_matches(['\n', '\r']);
            return Some(offset..offset + body.len());
        }
        offset += raw.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("00000000-0000-4000-8000-{n:012}")
        }
    }

    #[test]
    fn fills_only_what_is_missing() {
        let source = "---\r\nname: Card\r\n---\r\nProse  \r\n<!-- arno:props v1 -->\r\n| id   | name | type |\r\n|------|------|------|\r\n|      | a    | string |\r\n| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | b | string |\r\n<!-- /arno:props -->\r\n";
        let out = backfill_with(source, &mut ids());
        assert_eq!(out.added, 2);
        assert_eq!(
            out.text,
            "---\r\nid: 00000000-0000-4000-8000-000000000001\r\nname: Card\r\n---\r\nProse  \r\n<!-- arno:props v1 -->\r\n| id   | name | type |\r\n|------|------|------|\r\n| 00000000-0000-4000-8000-000000000002 | a    | string |\r\n| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | b | string |\r\n<!-- /arno:props -->\r\n"
        );
        let spec = SpecFile::parse(out.text.as_str());
        assert!(spec.diagnostics.is_empty(), "{:?}", spec.diagnostics);
        // A second run changes nothing.
        let again = backfill_with(&out.text, &mut ids());
        assert_eq!((again.added, again.text), (0, out.text));
    }

    #[test]
    fn adds_frontmatter_empty_ids_and_id_columns() {
        let out = backfill_with("# Plain\n", &mut ids());
        assert_eq!(out.text, "---\nid: 00000000-0000-4000-8000-000000000001\n---\n# Plain\n");
        let out = backfill_with("---\nid:\nname: X\n---\n", &mut ids());
        assert_eq!(out.text, "---\nid: 00000000-0000-4000-8000-000000000001\nname: X\n---\n");
        let source = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:events v1 -->\n|name|\n|-|\n|onClick|\n<!-- /arno:events -->\n";
        let out = backfill_with(source, &mut ids());
        assert_eq!(
            out.text,
            "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:events v1 -->\n| id | name |\n| --- | --- |\n| 00000000-0000-4000-8000-000000000001 | onClick |\n<!-- /arno:events -->\n"
        );
    }

    #[test]
    fn leaves_invalid_and_unreadable_ids_alone() {
        // `id: []` and `id: 7` found by the fuzzer (src/fuzz/): a second `id` line made the
        // frontmatter a YAML error instead of leaving the reported one for a human.
        for source in [
            "---\nid: not-a-uuid\n---\n",
            "---\nid: [1\n---\n",
            "---\nunclosed\n",
            "---\nid: []\n:\n---",
            "---\nid: 7\nname: X\n---\n",
            "---\nid: {a: b}\n---\n",
        ] {
            let out = backfill_with(source, &mut ids());
            assert_eq!((out.added, out.text.as_str()), (0, source));
        }
    }
}

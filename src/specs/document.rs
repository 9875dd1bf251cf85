//! A component spec file, parsed without losing a byte.
//!
//! The parser keeps the original text and records where the frontmatter and each structural block
//! sit in it. Serializing copies the original bytes and re-renders only the blocks whose table was
//! changed, so an untouched file comes back byte-identical (CRLF, trailing spaces, odd tables and
//! all) and an edit rewrites one block canonically. The format is described in
//! `docs/spec-format.md`.

use std::ops::Range;

use uuid::Uuid;

use super::table::{self, Line, ParsedTable, Table};

/// Block kinds this version of Arno understands, and the versions of each it reads.
pub const PROPS: &str = "props";
pub const EVENTS: &str = "events";
const SUPPORTED: &[(&str, u32)] = &[(PROPS, 1), (EVENTS, 1)];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in a file, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

/// The YAML frontmatter: where it is and the fields Arno reads.
#[derive(Debug, Clone)]
pub struct Frontmatter {
    /// The opening `---` line and everything up to and including the closing line.
    pub span: Range<usize>,
    /// Byte offset just after the opening `---` line (where `backfill-ids` inserts an `id`).
    pub body_start: usize,
    /// The raw `id` value when it is a string scalar, and its line.
    pub id: Option<String>,
    pub id_line: Option<usize>,
    /// The `id:` key is present but empty (null).
    pub id_empty: bool,
    /// The `id:` key holds something other than a string (a list, a number…): an error that
    /// `backfill-ids` leaves for a human (adding a second `id` would make the YAML invalid).
    pub id_other: bool,
    /// The YAML parsed (a mapping or empty); when false, only the YAML error is reported.
    pub readable: bool,
    pub name: Option<String>,
    pub status: Option<String>,
}

/// A structural block `<!-- arno:KIND vN -->` … `<!-- /arno:KIND -->`.
#[derive(Debug, Clone)]
pub struct Block {
    pub kind: String,
    pub version: u32,
    /// 1-based line of the opening marker.
    pub line: usize,
    /// The bytes between the opening marker's line and the closing marker's line.
    pub inner: Range<usize>,
    /// The whole block, markers included.
    pub outer: Range<usize>,
    /// The table, when the block is of a supported kind and version and reads cleanly.
    pub parsed: Option<ParsedTable>,
}

/// A parsed spec file. Compare models with [`SpecFile::model`]; edit through the table setters.
#[derive(Debug, Clone)]
pub struct SpecFile {
    source: String,
    newline: &'static str,
    pub frontmatter: Option<Frontmatter>,
    pub blocks: Vec<Block>,
    /// The tables as they are now (edits land here); compared with the parsed ones on serialize.
    tables: Vec<Option<Table>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Everything a spec means, for equality: parse(serialize(x)) == x is stated on this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    /// The text outside frontmatter and blocks, in order (one more piece than there are blocks).
    pub prose: Vec<String>,
    pub blocks: Vec<(String, u32, Option<Table>)>,
}

impl SpecFile {
    pub fn parse(source: impl Into<String>) -> SpecFile {
        let source = source.into();
        let newline = dominant_newline(&source);
        let lines = split_lines(&source);
        let mut diagnostics = vec![];
        let (frontmatter, first_body_line) = parse_frontmatter(&source, &lines, &mut diagnostics);
        let blocks = find_blocks(&source, &lines[first_body_line..], &mut diagnostics);
        let tables = blocks.iter().map(|b| b.parsed.as_ref().map(|p| p.table.clone())).collect();
        let mut file = SpecFile { source, newline, frontmatter, blocks, tables, diagnostics };
        file.check_ids();
        file.diagnostics.sort_by_key(|d| d.line);
        file
    }

    /// The original text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The line ending new lines get: the file's dominant one.
    pub fn newline(&self) -> &'static str {
        self.newline
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// The first error, for showing a broken spec.
    pub fn first_error(&self) -> Option<&Diagnostic> {
        self.diagnostics.iter().find(|d| d.severity == Severity::Error)
    }

    /// The component id when it is a valid UUID.
    pub fn id(&self) -> Option<Uuid> {
        self.frontmatter.as_ref()?.id.as_deref().and_then(|id| Uuid::try_parse(id).ok())
    }

    /// The index of the first block of a kind that Arno reads.
    pub fn block_index(&self, kind: &str) -> Option<usize> {
        self.blocks.iter().position(|b| b.kind == kind && b.parsed.is_some())
    }

    /// The current table of a block kind (edited or as parsed).
    pub fn table(&self, kind: &str) -> Option<&Table> {
        self.tables[self.block_index(kind)?].as_ref()
    }

    /// Edit the table of a block kind; the block is re-rendered on serialize if it changed.
    pub fn table_mut(&mut self, kind: &str) -> Option<&mut Table> {
        let index = self.block_index(kind)?;
        self.tables[index].as_mut()
    }

    pub fn model(&self) -> Model {
        let fm = self.frontmatter.as_ref();
        let mut prose = vec![];
        let mut at = fm.map_or(0, |f| f.span.end);
        for block in &self.blocks {
            prose.push(self.source[at..block.outer.start].to_owned());
            at = block.outer.end;
        }
        prose.push(self.source[at..].to_owned());
        Model {
            id: fm.and_then(|f| f.id.clone()),
            name: fm.and_then(|f| f.name.clone()),
            status: fm.and_then(|f| f.status.clone()),
            prose,
            blocks: self.blocks.iter().zip(&self.tables).map(|(b, t)| (b.kind.clone(), b.version, t.clone())).collect(),
        }
    }

    /// The file's text: the original bytes, with each changed block rewritten canonically.
    pub fn serialize(&self) -> String {
        let mut out = String::with_capacity(self.source.len());
        let mut at = 0;
        for (block, table) in self.blocks.iter().zip(&self.tables) {
            let (Some(parsed), Some(table)) = (&block.parsed, table) else { continue };
            if &parsed.table == table {
                continue;
            }
            out.push_str(&self.source[at..block.inner.start]);
            out.push_str(&table.render(self.newline));
            at = block.inner.end;
        }
        out.push_str(&self.source[at..]);
        out
    }

    /// [`Self::serialize`], with some prose pieces (indexed as in [`Model::prose`]) replaced.
    pub fn serialize_with_prose(&self, prose: &[Option<String>]) -> String {
        let mut out = String::with_capacity(self.source.len());
        let mut at = self.frontmatter.as_ref().map_or(0, |f| f.span.end);
        out.push_str(&self.source[..at]);
        for (index, (block, table)) in self.blocks.iter().zip(&self.tables).enumerate() {
            match prose.get(index).and_then(Option::as_ref) {
                Some(piece) => out.push_str(piece),
                None => out.push_str(&self.source[at..block.outer.start]),
            }
            match (&block.parsed, table) {
                (Some(parsed), Some(table)) if &parsed.table != table => {
                    out.push_str(&self.source[block.outer.start..block.inner.start]);
                    out.push_str(&table.render(self.newline));
                    out.push_str(&self.source[block.inner.end..block.outer.end]);
                }
                _ => out.push_str(&self.source[block.outer.clone()]),
            }
            at = block.outer.end;
        }
        match prose.get(self.blocks.len()).and_then(Option::as_ref) {
            Some(piece) => out.push_str(piece),
            None => out.push_str(&self.source[at..]),
        }
        out
    }

    /// The prose only (no frontmatter, no blocks): what the description renders from.
    pub fn prose(&self) -> String {
        self.model().prose.concat()
    }

    /// Ids must be UUIDs; prop and event ids must be unique within the file (across files is lint's job).
    fn check_ids(&mut self) {
        let mut found = vec![];
        match &self.frontmatter {
            None => found.push(err(1, "missing frontmatter: the file must start with `---`, `id: <uuid>`, `---`")),
            Some(fm) if !fm.readable => {}
            Some(fm) => match (&fm.id, fm.id_line) {
                (Some(id), Some(line)) if Uuid::try_parse(id).is_err() => {
                    found.push(err(line, format!("frontmatter `id` is not a UUID: {id:?}")))
                }
                (None, _) => found
                    .push(err(fm.id_line.unwrap_or(1), "frontmatter has no `id` (run `arno backfill-ids` to add one)")),
                _ => {}
            },
        }
        for (index, block) in self.blocks.iter().enumerate() {
            let Some(parsed) = &block.parsed else { continue };
            let required: &[&str] = if block.kind == PROPS { &["id", "name", "type"] } else { &["id", "name"] };
            for column in required {
                if parsed.table.column(column).is_none() {
                    found.push(err(block.line, format!("arno:{} table has no `{column}` column", block.kind)));
                }
            }
            if self.blocks[..index].iter().any(|b| b.kind == block.kind && b.parsed.is_some()) {
                found.push(err(block.line, format!("second arno:{} block; a spec has at most one", block.kind)));
            }
            let mut seen: Vec<&str> = vec![];
            for (row, line) in parsed.row_lines.iter().enumerate() {
                if let Some(id) = parsed.table.get(row, "id") {
                    if id.is_empty() {
                        found.push(err(*line, "row has no id (run `arno backfill-ids` to add one)"));
                    } else if Uuid::try_parse(id).is_err() {
                        found.push(err(*line, format!("id is not a UUID: {id:?}")));
                    } else if seen.contains(&id) {
                        found.push(err(*line, format!("duplicate {} id {id} in this file", singular(&block.kind))));
                    }
                    seen.push(id);
                }
                if parsed.table.get(row, "name").is_some_and(str::is_empty) {
                    found.push(err(*line, "row has no name"));
                }
                if let Some(value) = parsed.table.get(row, "textEditable")
                    && !matches!(value, "" | "true" | "false")
                {
                    found.push(err(*line, format!("textEditable must be `true` or `false`, not {value:?}")));
                }
            }
        }
        self.diagnostics.extend(found);
    }
}

fn singular(kind: &str) -> &str {
    match kind {
        PROPS => "prop",
        EVENTS => "event",
        other => other,
    }
}

fn err(line: usize, message: impl Into<String>) -> Diagnostic {
    Diagnostic { line, severity: Severity::Error, message: message.into() }
}

fn dominant_newline(source: &str) -> &'static str {
    let crlf = source.matches("\r\n").count();
    let lf = source.matches('\n').count() - crlf;
    if crlf > lf { "\r\n" } else { "\n" }
}

/// The lines of a file. A byte-order mark is not part of the first line's text, so that a marker
/// there reads as on any other line (found by fuzzing: once `backfill-ids` put frontmatter above
/// such a line, it became a block, and the file read differently).
fn split_lines(source: &str) -> Vec<Line<'_>> {
    let mut offset = 0;
    source
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, raw)| {
            let bom = if i == 0 && raw.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
            let text = raw[bom..].strip_suffix('\n').unwrap_or(&raw[bom..]);
            let line = Line { text: text.strip_suffix('\r').unwrap_or(text), number: i + 1, offset: offset + bom };
            offset += raw.len();
            line
        })
        .collect()
}

fn line_end(source: &str, line: &Line<'_>) -> usize {
    let end = line.offset + line.text.len();
    let rest = &source[end..];
    end + if rest.starts_with("\r\n") { 2 } else { usize::from(rest.starts_with('\n')) }
}

/// Frontmatter starts on the first line (after an optional BOM) with `---` and ends with `---` or
/// `...`. Returns it and the index of the first line after it.
fn parse_frontmatter(source: &str, lines: &[Line<'_>], out: &mut Vec<Diagnostic>) -> (Option<Frontmatter>, usize) {
    let Some(first) = lines.first() else { return (None, 0) };
    if first.text.trim_start_matches('\u{feff}').trim_end() != "---" {
        return (None, 0);
    }
    let Some(close) = lines[1..].iter().position(|l| matches!(l.text.trim_end(), "---" | "...")).map(|i| i + 1) else {
        out.push(err(1, "frontmatter is not closed: add a `---` line after it"));
        return (None, 0);
    };
    let body_start = line_end(source, first);
    let body = &source[body_start..lines[close].offset];
    let mut fm = Frontmatter {
        span: 0..line_end(source, &lines[close]),
        body_start,
        id: None,
        id_line: None,
        id_empty: false,
        id_other: false,
        readable: false,
        name: None,
        status: None,
    };
    // Where the `id` key sits, for messages and for backfill.
    fm.id_line = lines[1..close].iter().find(|l| key_of(l.text) == Some("id")).map(|l| l.number);
    match yaml_rust2::YamlLoader::load_from_str(body) {
        Err(e) => {
            let line = 1 + e.marker().line();
            out.push(err(line.min(close + 1), format!("malformed frontmatter: {}", e.info())));
        }
        Ok(docs) => {
            use yaml_rust2::Yaml;
            match docs.first() {
                None | Some(Yaml::Null) => fm.readable = true,
                Some(Yaml::Hash(map)) => {
                    fm.readable = true;
                    let field = |key: &str| map.get(&Yaml::String(key.into()));
                    match field("id") {
                        None => {}
                        Some(Yaml::Null) => fm.id_empty = true,
                        Some(Yaml::String(s)) if s.is_empty() => fm.id_empty = true,
                        Some(Yaml::String(s)) => fm.id = Some(s.clone()),
                        Some(_) => {
                            fm.id_other = true;
                            out.push(err(fm.id_line.unwrap_or(1), "frontmatter `id` must be a UUID string"));
                        }
                    }
                    fm.name = field("name").and_then(scalar);
                    fm.status = field("status").and_then(scalar);
                }
                Some(_) => out.push(err(1, "frontmatter must be a YAML mapping (`key: value` lines)")),
            }
        }
    }
    (Some(fm), close + 1)
}

fn scalar(value: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The top-level key of a `key: value` YAML line.
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    Some(key.trim().trim_matches(['"', '\'']))
}

enum Marker<'a> {
    Open { kind: &'a str, version: Option<u32> },
    Close { kind: &'a str },
}

/// `<!-- arno:KIND vN -->` or `<!-- /arno:KIND -->`, alone on its line, indented at most 3 spaces.
fn marker(text: &str) -> Option<Marker<'_>> {
    let lead = text.len() - text.trim_start_matches(' ').len();
    if lead > 3 {
        return None;
    }
    let inner = text.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    if let Some(kind) = inner.strip_prefix("/arno:") {
        return Some(Marker::Close { kind: kind.trim() });
    }
    let rest = inner.strip_prefix("arno:")?;
    let mut words = rest.split_whitespace();
    let kind = words.next()?;
    let version = words.next().and_then(|v| v.strip_prefix('v')).and_then(|v| v.parse().ok());
    Some(Marker::Open { kind, version })
}

/// A code fence opener or closer: up to 3 spaces, then 3+ backticks or tildes.
fn fence(text: &str) -> Option<(u8, usize)> {
    let lead = text.len() - text.trim_start_matches(' ').len();
    if lead > 3 {
        return None;
    }
    let rest = &text[lead..];
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let run = rest.bytes().take_while(|&b| b == ch).count();
    // A backtick fence's info string may not contain backticks (CommonMark §4.5).
    (run >= 3 && !(ch == b'`' && rest[run..].contains('`'))).then_some((ch, run))
}

fn find_blocks(source: &str, lines: &[Line<'_>], out: &mut Vec<Diagnostic>) -> Vec<Block> {
    let mut blocks = vec![];
    // For each line, the index of the next closing and the next opening marker at or after it,
    // computed once: searching from every opening marker made a file of unclosed markers
    // quadratic (a 1 MiB spec took minutes; found by fuzzing, src/fuzz/).
    let (mut next_close, mut next_open) = (vec![lines.len(); lines.len() + 1], vec![lines.len(); lines.len() + 1]);
    for (index, line) in lines.iter().enumerate().rev() {
        next_close[index] = next_close[index + 1];
        next_open[index] = next_open[index + 1];
        match marker(line.text) {
            Some(Marker::Close { .. }) => next_close[index] = index,
            Some(Marker::Open { .. }) => next_open[index] = index,
            None => {}
        }
    }
    // The open code fence: its character, length and line.
    let mut open_fence: Option<(u8, usize, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        i += 1;
        if let Some((ch, run, _)) = open_fence {
            // Closing fence: same character, at least as long, nothing else on the line.
            if let Some((c, r)) = fence(line.text)
                && c == ch
                && r >= run
                && line.text.trim().bytes().all(|b| b == ch)
            {
                open_fence = None;
            }
            continue;
        }
        if let Some((ch, run)) = fence(line.text) {
            open_fence = Some((ch, run, line.number));
            continue;
        }
        match marker(line.text) {
            None => {}
            Some(Marker::Close { kind }) => {
                out.push(err(line.number, format!("`<!-- /arno:{kind} -->` closes a block that was never opened")))
            }
            Some(Marker::Open { kind, version }) => {
                let close = Some(next_close[i]).filter(|c| *c < lines.len());
                let nested = Some(next_open[i]).filter(|o| *o < close.unwrap_or(lines.len())).map(|o| &lines[o]);
                let Some(close) = close else {
                    out.push(err(line.number, format!("`<!-- arno:{kind} -->` is never closed")));
                    continue;
                };
                if let Some(nested) = nested {
                    out.push(err(nested.number, "a block opens inside another block"));
                }
                let closer = &lines[close];
                if let Some(Marker::Close { kind: closing }) = marker(closer.text)
                    && closing != kind
                {
                    out.push(err(closer.number, format!("`arno:{kind}` block is closed by `/arno:{closing}`")));
                }
                let mut block = Block {
                    kind: kind.to_owned(),
                    version: version.unwrap_or(0),
                    line: line.number,
                    inner: line_end(source, line)..closer.offset,
                    outer: line.offset..line_end(source, closer),
                    parsed: None,
                };
                let known = SUPPORTED.iter().filter(|(k, _)| *k == kind).map(|(_, v)| *v).collect::<Vec<_>>();
                match version {
                    None => out.push(err(line.number, format!("`arno:{kind}` marker has no version (`v1`)"))),
                    Some(_) if known.is_empty() => out.push(Diagnostic {
                        line: line.number,
                        severity: Severity::Warning,
                        message: format!("unknown block kind `arno:{kind}`; it is kept as it is"),
                    }),
                    Some(v) if !known.contains(&v) => out.push(err(
                        line.number,
                        format!("unknown block version `arno:{kind} v{v}` (this Arno reads v{})", known[0]),
                    )),
                    Some(_) if nested.is_none() => match table::parse(&lines[i..close]) {
                        Ok(parsed) => block.parsed = Some(parsed),
                        Err(e) => out.push(err(e.line, format!("arno:{kind} block: {}", e.message))),
                    },
                    Some(_) => {}
                }
                blocks.push(block);
                i = close + 1;
            }
        }
    }
    if let Some((_, _, opener)) = open_fence {
        // An unclosed fence runs to the end of the file in CommonMark; say so, since blocks after it are prose.
        out.push(Diagnostic {
            line: opener,
            severity: Severity::Warning,
            message: "code fence is never closed; everything after it is code".into(),
        });
    }
    blocks
}

//! The GitHub-flavoured Markdown table inside a structural block: parsed cell by cell with byte
//! positions (so `backfill-ids` can fill one cell without touching its neighbours) and rendered
//! canonically when a block changes.
//!
//! Cell rules (a strict subset of GFM, <https://github.github.com/gfm/#tables-extension->): a row
//! is split on `|`; a `|` directly after a backslash belongs to the cell and reads as `|`; cells
//! are trimmed. The canonical form escapes every `|` in a value as `\|`, so parse(render(t)) == t
//! for every value without a line break or surrounding whitespace.

use std::ops::Range;

/// One table: the header names (as written) and the rows' cell values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A parsed table plus where each piece sits in the source (for surgical edits and messages).
#[derive(Debug, Clone)]
pub struct ParsedTable {
    pub table: Table,
    /// 1-based line of each row.
    pub row_lines: Vec<usize>,
    /// Byte range in the file of each row's cells (trimmed content, or the gap of an empty cell).
    pub cell_spans: Vec<Vec<Range<usize>>>,
}

/// A problem found while reading a block's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub line: usize,
    pub message: String,
}

impl Table {
    /// The index of a column by its name, ignoring ASCII case.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The value of a named column in one row, if the column exists.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.column(column)?;
        self.rows.get(row).and_then(|r| r.get(index)).map(String::as_str)
    }

    /// Set a cell, normalising the value to the table's single-line, trimmed form.
    pub fn set(&mut self, row: usize, column: usize, value: &str) {
        self.rows[row][column] = normalize_cell(value);
    }

    /// The canonical Markdown for this table, every line ending with `newline`.
    pub fn render(&self, newline: &str) -> String {
        let mut out = String::new();
        render_row(&mut out, &self.columns, newline);
        out.push('|');
        for _ in &self.columns {
            out.push_str(" --- |");
        }
        out.push_str(newline);
        for row in &self.rows {
            render_row(&mut out, row, newline);
        }
        out
    }
}

/// Values are single-line and trimmed: what a table cell can hold.
pub fn normalize_cell(value: &str) -> String {
    value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

fn render_row(out: &mut String, cells: &[String], newline: &str) {
    out.push('|');
    for cell in cells {
        out.push(' ');
        out.push_str(&cell.replace('|', "\\|"));
        out.push_str(" |");
    }
    out.push_str(newline);
}

/// One line of the block: its text without line ending, its 1-based number, its byte offset.
pub struct Line<'a> {
    pub text: &'a str,
    pub number: usize,
    pub offset: usize,
}

/// Parse the lines between a block's markers as exactly one table (blank lines around it allowed).
pub fn parse(lines: &[Line<'_>]) -> Result<ParsedTable, TableError> {
    let mut content = lines.iter().filter(|l| !l.text.trim().is_empty()).peekable();
    let Some(header) = content.next() else {
        let line = lines.first().map_or(0, |l| l.number);
        return Err(TableError { line, message: "block is empty: expected a Markdown table".into() });
    };
    let (columns, _) = split_row(header).ok_or_else(|| not_a_row(header))?;
    let delimiter = content.next().ok_or_else(|| TableError {
        line: header.number,
        message: "table has no delimiter row (`| --- | --- |`) under its header".into(),
    })?;
    let (delims, _) = split_row(delimiter).ok_or_else(|| not_a_row(delimiter))?;
    if !delims.iter().all(|d| is_delimiter_cell(d)) {
        return Err(TableError {
            line: delimiter.number,
            message: "second table row must be the delimiter row (`| --- | --- |`)".into(),
        });
    }
    if delims.len() != columns.len() {
        return Err(TableError {
            line: delimiter.number,
            message: format!("delimiter row has {} cells, header has {}", delims.len(), columns.len()),
        });
    }
    if let Some(empty) = columns.iter().position(String::is_empty) {
        return Err(TableError { line: header.number, message: format!("header column {} has no name", empty + 1) });
    }
    let mut parsed = ParsedTable { table: Table { columns, rows: vec![] }, row_lines: vec![], cell_spans: vec![] };
    // Blank lines end a GFM table; anything after must be blank too.
    let mut ended = false;
    let start = lines.iter().position(|l| l.number == delimiter.number).unwrap_or(0) + 1;
    for line in &lines[start..] {
        if line.text.trim().is_empty() {
            ended = true;
            continue;
        }
        if ended {
            return Err(TableError { line: line.number, message: "text after the table inside the block".into() });
        }
        let (cells, spans) = split_row(line).ok_or_else(|| not_a_row(line))?;
        if cells.len() != parsed.table.columns.len() {
            return Err(TableError {
                line: line.number,
                message: format!("row has {} cells, header has {}", cells.len(), parsed.table.columns.len()),
            });
        }
        parsed.table.rows.push(cells);
        parsed.row_lines.push(line.number);
        parsed.cell_spans.push(spans);
    }
    Ok(parsed)
}

fn not_a_row(line: &Line<'_>) -> TableError {
    TableError { line: line.number, message: "expected a table row starting with `|`".into() }
}

fn is_delimiter_cell(cell: &str) -> bool {
    let inner = cell.strip_prefix(':').unwrap_or(cell);
    let inner = inner.strip_suffix(':').unwrap_or(inner);
    !inner.is_empty() && inner.bytes().all(|b| b == b'-')
}

/// Split a row into unescaped, trimmed cells and their byte spans in the file. The row must start
/// with `|` (after indentation) so that prose can never be mistaken for a table.
fn split_row(line: &Line<'_>) -> Option<(Vec<String>, Vec<Range<usize>>)> {
    let text = line.text;
    let lead = text.len() - text.trim_start().len();
    let body = text.trim_end();
    if !body[lead..].starts_with('|') {
        return None;
    }
    // Byte offsets (within `text`) of the unescaped pipes.
    let bytes = body.as_bytes();
    let mut pipes = vec![];
    for i in lead..bytes.len() {
        if bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            pipes.push(i);
        }
    }
    // A trailing pipe closes the last cell; without one, the rest of the line is the last cell.
    if *pipes.last()? != bytes.len() - 1 {
        pipes.push(bytes.len());
    }
    let mut cells = vec![];
    let mut spans = vec![];
    for pair in pipes.windows(2) {
        let (from, to) = (pair[0] + 1, pair[1]);
        let raw = &body[from..to];
        let trimmed_start = from + (raw.len() - raw.trim_start().len());
        let trimmed = raw.trim();
        let span = if trimmed.is_empty() {
            line.offset + from..line.offset + to
        } else {
            line.offset + trimmed_start..line.offset + trimmed_start + trimmed.len()
        };
        cells.push(trimmed.replace("\\|", "|"));
        spans.push(span);
    }
    Some((cells, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Line<'_>> {
        let mut offset = 0;
        text.split_inclusive('\n')
            .enumerate()
            .map(|(i, raw)| {
                let line = Line { text: raw.trim_end_matches(['\n', '\r']), number: i + 1, offset };
                offset += raw.len();
                line
            })
            .collect()
    }

    #[test]
    fn parses_cells_with_escapes_and_spans() {
        let text = "\n| id | Name |\n|:--|--:|\n| a\\|b |  |\n";
        let parsed = parse(&lines(text)).unwrap();
        assert_eq!(parsed.table.columns, ["id", "Name"]);
        assert_eq!(parsed.table.rows, [["a|b", ""]]);
        assert_eq!(parsed.row_lines, [4]);
        let spans = &parsed.cell_spans[0];
        assert_eq!(&text[spans[0].clone()], "a\\|b");
        assert_eq!(&text[spans[1].clone()], "  ");
        assert_eq!(parsed.table.get(0, "name"), Some(""));
    }

    #[test]
    fn rejects_malformed_tables_with_their_line() {
        let err = parse(&lines("| a | b |\n| x | y |\n")).unwrap_err();
        assert_eq!((err.line, err.message.contains("delimiter")), (2, true));
        let err = parse(&lines("| a | b |\n|---|---|\n| 1 |\n")).unwrap_err();
        assert_eq!(err, TableError { line: 3, message: "row has 1 cells, header has 2".into() });
        let err = parse(&lines("| a |\n|---|\n| 1 |\n\nprose\n")).unwrap_err();
        assert_eq!(err.line, 5);
        assert_eq!(parse(&lines("\n\n")).unwrap_err().message, "block is empty: expected a Markdown table");
        assert_eq!(parse(&lines("a | b\n|--|--|\n")).unwrap_err().line, 1);
    }

    #[test]
    fn canonical_render_parses_back() {
        let table = Table {
            columns: vec!["id".into(), "default".into()],
            rows: vec![vec!["x".into(), "a|b\\".into()], vec!["".into(), "\"Buy\"".into()]],
        };
        let text = table.render("\r\n");
        assert_eq!(text, "| id | default |\r\n| --- | --- |\r\n| x | a\\|b\\ |\r\n|  | \"Buy\" |\r\n");
        assert_eq!(parse(&lines(&text)).unwrap().table, table);
    }
}

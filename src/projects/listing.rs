//! The project page's component list at any size: a search (name or file, ignoring case), a
//! filter (all, with problems, your unmerged changes) and pages of [`PAGE_SIZE`], so a design
//! system of thousands of components opens as fast as one of ten (docs/performance.md).

use serde::Deserialize;

/// Rows per page of the component list.
pub const PAGE_SIZE: usize = 100;

/// The longest search kept (longer input is cut, never refused).
const MAX_QUERY_CHARS: usize = 200;

/// `?q=&show=&page=` of the project page. Anything malformed falls back to the default (a
/// bookmark with a stale page number still opens the list).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub show: String,
    #[serde(default)]
    pub page: String,
    /// After a deletion or its undo (the page the form redirects to): the file, whose state the
    /// page then reports — as it is, whatever the link says.
    #[serde(default)]
    pub deleted: String,
    #[serde(default)]
    pub restored: String,
}

/// Which rows the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    All,
    Problems,
    Yours,
}

impl Show {
    pub fn parse(s: &str) -> Show {
        match s {
            "problems" => Show::Problems,
            "yours" => Show::Yours,
            _ => Show::All,
        }
    }

    pub fn value(self) -> &'static str {
        match self {
            Show::All => "all",
            Show::Problems => "problems",
            Show::Yours => "yours",
        }
    }
}

/// What a row needs for the search and the filter.
pub trait Listed {
    fn name(&self) -> &str;
    fn file_path(&self) -> &str;
    fn has_problem(&self) -> bool;
    /// Saved by the reader and not merged yet (new, changed or deleted by them).
    fn is_yours(&self) -> bool;
}

/// One page of a filtered list, and what the page needs to say about it.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// Rows matching the search and filter, over all pages.
    pub matching: usize,
    /// Rows before any search or filter.
    pub total: usize,
    /// 1-based, within `1..=pages`.
    pub page: usize,
    pub pages: usize,
    pub q: String,
    pub show: Show,
}

impl<T> Page<T> {
    /// 1-based position of the first row shown (0 when nothing is).
    pub fn first(&self) -> usize {
        if self.rows.is_empty() { 0 } else { (self.page - 1) * PAGE_SIZE + 1 }
    }

    pub fn last(&self) -> usize {
        (self.page - 1) * PAGE_SIZE + self.rows.len()
    }

    pub fn filtered(&self) -> bool {
        !self.q.is_empty() || self.show != Show::All
    }

    /// Links to the first and previous pages (none on the first page).
    pub fn before(&self, slug: &str) -> Option<(String, String)> {
        (self.page > 1).then(|| (self.href(slug, 1), self.href(slug, self.page - 1)))
    }

    /// Links to the next and last pages (none on the last page).
    pub fn after(&self, slug: &str) -> Option<(String, String)> {
        (self.page < self.pages).then(|| (self.href(slug, self.page + 1), self.href(slug, self.pages)))
    }

    /// The link to page `n` with the same search and filter.
    pub fn href(&self, slug: &str, n: usize) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            query.append_pair("q", &self.q);
        }
        if self.show != Show::All {
            query.append_pair("show", self.show.value());
        }
        if n > 1 {
            query.append_pair("page", &n.to_string());
        }
        let query = query.finish();
        let query = if query.is_empty() { query } else { format!("?{query}") };
        format!("/projects/{slug}{query}#components-title")
    }
}

/// Filter `rows` by the query and cut out the asked page (clamped to the last one).
pub fn page<T: Listed>(rows: Vec<T>, query: &ListQuery) -> Page<T> {
    let total = rows.len();
    let q: String = query.q.trim().chars().take(MAX_QUERY_CHARS).collect();
    let needle = q.to_lowercase();
    let show = Show::parse(&query.show);
    let matching: Vec<T> = rows
        .into_iter()
        .filter(|r| match show {
            Show::All => true,
            Show::Problems => r.has_problem(),
            Show::Yours => r.is_yours(),
        })
        .filter(|r| {
            needle.is_empty()
                || r.name().to_lowercase().contains(&needle)
                || r.file_path().to_lowercase().contains(&needle)
        })
        .collect();
    let count = matching.len();
    let pages = count.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.trim().parse::<usize>().unwrap_or(1).clamp(1, pages);
    let rows = matching.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    Page { rows, matching: count, total, page, pages, q, show }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(String, bool, bool);
    impl Listed for Row {
        fn name(&self) -> &str {
            &self.0
        }
        fn file_path(&self) -> &str {
            "Design_system/X.md"
        }
        fn has_problem(&self) -> bool {
            self.1
        }
        fn is_yours(&self) -> bool {
            self.2
        }
    }

    fn rows(n: usize) -> Vec<Row> {
        (0..n).map(|i| Row(format!("Widget {i}"), i % 10 == 0, i % 7 == 0)).collect()
    }

    fn q(q: &str, show: &str, page: &str) -> ListQuery {
        ListQuery { q: q.into(), show: show.into(), page: page.into(), ..ListQuery::default() }
    }

    #[test]
    fn pages_are_cut_and_clamped() {
        let p = page(rows(2000), &q("", "", "3"));
        assert_eq!((p.page, p.pages, p.matching, p.total, p.rows.len()), (3, 20, 2000, 2000, 100));
        assert_eq!((p.first(), p.last()), (201, 300));
        assert_eq!(p.rows[0].0, "Widget 200");
        // Past the end, zero, garbage: the nearest real page.
        assert_eq!(page(rows(2000), &q("", "", "99")).page, 20);
        assert_eq!(page(rows(2000), &q("", "", "0")).page, 1);
        assert_eq!(page(rows(2000), &q("", "", "-1")).page, 1);
        assert_eq!(page(rows(2000), &q("", "", "x")).page, 1);
        let empty = page(rows(0), &q("", "", "2"));
        assert_eq!((empty.page, empty.pages, empty.first(), empty.last()), (1, 1, 0, 0));
    }

    #[test]
    fn search_and_filters_combine() {
        let p = page(rows(2000), &q("  WIDGET 19 ", "", ""));
        // "widget 19", "widget 190".."199", "widget 1900".."1999"
        assert_eq!(p.matching, 1 + 10 + 100);
        assert_eq!(p.q, "WIDGET 19");
        assert_eq!(page(rows(2000), &q("", "problems", "")).matching, 200);
        assert_eq!(page(rows(2000), &q("", "yours", "")).matching, 286);
        assert_eq!(page(rows(2000), &q("widget 7", "yours", "")).matching, 1 + 2 + 15);
        assert_eq!(page(rows(2000), &q("", "nonsense", "")).show, Show::All);
    }

    #[test]
    fn links_keep_the_search() {
        let p = page(rows(300), &q("a&b c", "problems", "1"));
        assert_eq!(p.href("ds", 2), "/projects/ds?q=a%26b+c&show=problems&page=2#components-title");
        let plain = page(rows(300), &q("", "", ""));
        assert_eq!(plain.href("ds", 1), "/projects/ds#components-title");
        let long = page(rows(1), &q(&"x".repeat(5000), "", ""));
        assert_eq!(long.q.chars().count(), MAX_QUERY_CHARS);
    }
}

//! The branch-aware view of a project's components (seed 000 §I.3.9): what a reader is served.
//!
//! The default branch (the last scan) is what everybody sees — except the texts a reader saved
//! in Arno that are not on the default branch yet: those are *theirs* everywhere (the component
//! list, the component page, the canvas' and screen page's choices), marked *new* or *changed by
//! you*. Everybody else keeps the default branch's version, with a marker naming who has
//! unmerged changes. A text is unmerged while Arno's current text of the file differs from the
//! default branch's; its authors are those who saved a version of it since it last equalled the
//! default branch's text (or ever, for a file the default branch lacks).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::model::ComponentRow;
use super::routes::summarize;
use super::store;
use crate::error::AppResult;
use crate::specs::{Component, SpecFile};

/// Which text of a component a reader is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The last scan of the default branch.
    DefaultBranch,
    /// The reader's own saved text, not merged yet.
    Yours,
}

/// How the reader's own unmerged text differs from the default branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// The default branch has no such file yet.
    New,
    /// The default branch has an older text.
    Changed,
    /// The reader deleted it; the default branch still has it.
    Deleted,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::New => "new",
            Mark::Changed => "changed by you",
            Mark::Deleted => "deleted by you",
        }
    }
}

/// Someone with unmerged changes of a component, and where to see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Author {
    pub name: String,
    pub handle: String,
    #[serde(skip)]
    pub user_id: String,
}

impl Author {
    /// The author's change request page in this project.
    pub fn change_href(&self, slug: &str) -> String {
        format!("/projects/{slug}/changes/{}", self.handle)
    }
}

/// One component as a given reader sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file_path: String,
    /// The component id (the frontmatter UUID), `None` when missing or claimed by another file.
    pub component_id: Option<String>,
    pub source: Source,
    /// Set exactly when `source` is `Yours`.
    pub mark: Option<Mark>,
    /// The parsed text served (with a duplicate id reported as an error).
    pub component: Component,
    pub text: String,
    pub content_sha: String,
    /// Others (not the reader) who have unmerged changes of this file.
    pub others: Vec<Author>,
}

/// A component someone else is creating: not on the default branch, not the reader's.
#[derive(Debug, Clone)]
pub struct Pending {
    pub file_path: String,
    pub component_id: Option<String>,
    pub component: Component,
    pub by: Vec<Author>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// In path order.
    pub entries: Vec<Entry>,
    /// Others' new components, in path order.
    pub others_new: Vec<Pending>,
}

impl Catalog {
    pub fn by_id(&self, component_id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.component_id.as_deref() == Some(component_id))
    }

    /// Another component (than the file `except`) with this name, ignoring case — among what the
    /// reader sees (but has deleted) and what others are creating.
    pub fn named(&self, name: &str, except: Option<&str>) -> Option<(&str, &str)> {
        let wanted = name.to_lowercase();
        let seen = self
            .entries
            .iter()
            .filter(|e| e.mark != Some(Mark::Deleted))
            .map(|e| (e.component.name.as_str(), e.file_path.as_str()));
        let pending = self.others_new.iter().map(|p| (p.component.name.as_str(), p.file_path.as_str()));
        seen.chain(pending).find(|(n, path)| n.to_lowercase() == wanted && Some(*path) != except)
    }
}

/// An unmerged text with its authors.
struct Unmerged {
    content: String,
    content_sha: String,
    authors: Vec<Author>,
    /// The current version deletes the file: who deleted it (the saver of that version).
    deleted_by: Option<Option<String>>,
}

/// Arno's current texts that differ from the default branch, by path, with who wrote them.
async fn unmerged(conn: &mut AnyConnection, project_id: &str) -> AppResult<HashMap<String, Unmerged>> {
    // Authors: who saved (or restored) a version after the last version equal to the default
    // branch's text — every saver, for a file the default branch lacks.
    // A deleted file the default branch no longer has is merged (or never was there).
    type Row = (String, String, String, i64, Option<String>, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT f.path, f.content, f.content_sha, f.deleted, f.updated_by, v.saved_by, u.name, u.handle \
         FROM spec_files f \
         LEFT JOIN components c ON c.project_id = f.project_id AND c.file_path = f.path \
         LEFT JOIN spec_versions v ON v.project_id = f.project_id AND v.path = f.path \
           AND v.kind IN ('save', 'restore') AND v.version > COALESCE((SELECT MAX(w.version) FROM spec_versions w \
             WHERE w.project_id = f.project_id AND w.path = f.path AND w.content_sha = c.content_sha), 0) \
         LEFT JOIN users u ON u.id = v.saved_by \
         WHERE f.project_id = $1 AND (c.content_sha IS NULL OR c.content_sha <> f.content_sha OR f.deleted <> 0) \
           AND NOT (f.deleted <> 0 AND c.content_sha IS NULL) \
         ORDER BY f.path, v.version",
    )
    .bind(project_id)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Unmerged> = HashMap::new();
    for (path, content, content_sha, deleted, deleter, user_id, name, handle) in rows {
        let deleted_by = (deleted != 0).then_some(deleter);
        let entry = out.entry(path).or_insert_with(|| Unmerged { content, content_sha, authors: vec![], deleted_by });
        if let (Some(user_id), Some(name), Some(handle)) = (user_id, name, handle)
            && !entry.authors.iter().any(|a| a.user_id == user_id)
        {
            entry.authors.push(Author { name, handle, user_id });
        }
    }
    Ok(out)
}

fn parse(text: &str, path: &str) -> Component {
    Component::from_spec(&SpecFile::parse(text), path)
}

/// The frontmatter id of a text, when it is a UUID.
fn declared(component: &Component) -> Option<String> {
    component.id.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok()).map(|u| u.to_string())
}

/// Every component of a project as `reader` (a user id) sees it.
pub async fn catalog(conn: &mut AnyConnection, project_id: &str, reader: &str) -> AppResult<Catalog> {
    let rows = store::components(conn, project_id).await?;
    let mut unmerged = unmerged(conn, project_id).await?;
    Ok(assemble(&rows, &mut unmerged, reader))
}

fn assemble(rows: &[ComponentRow], unmerged: &mut HashMap<String, Unmerged>, reader: &str) -> Catalog {
    let mut used: HashSet<String> = rows.iter().filter_map(|r| r.component_id.clone()).collect();
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let (mine, others, deleted) = match unmerged.remove(&row.file_path) {
            // Deleted: by the reader (their view is the deletion), or by someone else — then the
            // reader sees the default branch, whoever else saved on the way.
            Some(Unmerged { deleted_by: Some(by), authors, .. }) => {
                let mine = by.as_deref() == Some(reader);
                let others = authors.into_iter().filter(|a| a.user_id != reader).collect();
                (None, others, mine)
            }
            Some(u) => {
                let (me, others): (Vec<Author>, Vec<Author>) = u.authors.into_iter().partition(|a| a.user_id == reader);
                ((!me.is_empty()).then_some((u.content, u.content_sha)), others, false)
            }
            None => (None, vec![], false),
        };
        if deleted {
            entries.push(Entry {
                file_path: row.file_path.clone(),
                component_id: row.component_id.clone(),
                source: Source::Yours,
                mark: Some(Mark::Deleted),
                component: summarize(row, rows).1,
                text: row.raw_text.clone(),
                content_sha: row.content_sha.clone(),
                others,
            });
            continue;
        }
        entries.push(match mine {
            Some((text, content_sha)) => Entry {
                file_path: row.file_path.clone(),
                component_id: row.component_id.clone(),
                source: Source::Yours,
                mark: Some(Mark::Changed),
                component: parse(&text, &row.file_path),
                text,
                content_sha,
                others,
            },
            None => Entry {
                file_path: row.file_path.clone(),
                component_id: row.component_id.clone(),
                source: Source::DefaultBranch,
                mark: None,
                component: summarize(row, rows).1,
                text: row.raw_text.clone(),
                content_sha: row.content_sha.clone(),
                others,
            },
        });
    }
    // Files the default branch lacks, in path order.
    let mut new: Vec<(String, Unmerged)> = unmerged.drain().collect();
    new.sort_by(|a, b| a.0.cmp(&b.0));
    let mut others_new = vec![];
    for (path, u) in new {
        let mut component = parse(&u.content, &path);
        let component_id = declared(&component).filter(|id| used.insert(id.clone()));
        if let (Some(id), None) = (declared(&component), &component_id) {
            let message = format!("duplicate component id {id}: another file declares it first");
            component.errors.insert(0, crate::specs::ParseError { line: 2, message });
        }
        let (me, others): (Vec<Author>, Vec<Author>) = u.authors.into_iter().partition(|a| a.user_id == reader);
        if me.is_empty() {
            others_new.push(Pending { file_path: path, component_id, component, by: others });
        } else {
            entries.push(Entry {
                file_path: path,
                component_id,
                source: Source::Yours,
                mark: Some(Mark::New),
                component,
                text: u.content,
                content_sha: u.content_sha,
                others,
            });
        }
    }
    entries.sort_by(|a, b| a.file_path.cmp(&b.file_path));
    Catalog { entries, others_new }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, id: &str, text: &str) -> ComponentRow {
        let c = parse(text, path);
        ComponentRow {
            file_path: path.into(),
            declared_id: Some(id.into()),
            component_id: Some(id.into()),
            name: c.name.clone(),
            blob_id: "b".into(),
            content_sha: crate::specs::versions::sha256_hex(text),
            raw_text: text.into(),
            model_json: serde_json::to_string(&c).unwrap(),
            error_line: None,
            error_message: None,
            size_bytes: text.len() as i64,
            scanned_at: 0,
        }
    }

    fn author(id: &str) -> Author {
        Author { name: id.to_uppercase(), handle: id.into(), user_id: id.into() }
    }

    fn unmerged_text(text: &str, authors: &[&str]) -> Unmerged {
        Unmerged {
            content: text.into(),
            content_sha: crate::specs::versions::sha256_hex(text),
            authors: authors.iter().map(|a| author(a)).collect(),
            deleted_by: None,
        }
    }

    const ID_A: &str = "0b0e9c1e-3f4a-4c1a-9d52-6a1f2b3c4d5e";
    const ID_B: &str = "1c1f0d2f-4a5b-4d2b-8e63-7b2a3c4d5e6f";

    fn spec(id: &str, name: &str) -> String {
        format!("---\nid: {id}\nname: {name}\n---\n\nProse.\n")
    }

    #[test]
    fn the_author_sees_their_text_and_the_others_the_default_branch_with_a_marker() {
        let rows = vec![row("A.md", ID_A, &spec(ID_A, "Button"))];
        let make = || {
            let mut u = HashMap::new();
            u.insert("A.md".to_owned(), unmerged_text(&spec(ID_A, "Big button"), &["ann"]));
            u.insert("B.md".to_owned(), unmerged_text(&spec(ID_B, "Card"), &["ann", "bob"]));
            u
        };
        let ann = assemble(&rows, &mut make(), "ann");
        assert_eq!(ann.entries.len(), 2);
        assert_eq!((ann.entries[0].source, ann.entries[0].mark), (Source::Yours, Some(Mark::Changed)));
        assert_eq!(ann.entries[0].component.name, "Big button");
        assert!(ann.entries[0].others.is_empty());
        assert_eq!((ann.entries[1].mark, ann.entries[1].component_id.as_deref()), (Some(Mark::New), Some(ID_B)));
        assert_eq!(ann.entries[1].others, vec![author("bob")]);
        assert!(ann.others_new.is_empty());

        let eve = assemble(&rows, &mut make(), "eve");
        assert_eq!(eve.entries.len(), 1);
        assert_eq!((eve.entries[0].source, eve.entries[0].mark), (Source::DefaultBranch, None));
        assert_eq!(eve.entries[0].component.name, "Button");
        assert_eq!(eve.entries[0].others, vec![author("ann")]);
        assert_eq!(eve.others_new.len(), 1);
        assert_eq!(eve.others_new[0].by, vec![author("ann"), author("bob")]);
        assert!(eve.named("card", None).is_some(), "names being created by others are taken too");
        assert!(eve.named("Button", Some("A.md")).is_none());
    }

    #[test]
    fn a_deletion_is_the_deleters_view_and_a_marker_for_others() {
        let rows = vec![row("A.md", ID_A, &spec(ID_A, "Button"))];
        let make = || {
            let mut u = HashMap::new();
            let mut gone = unmerged_text("", &["bob", "ann"]);
            gone.deleted_by = Some(Some("ann".into()));
            u.insert("A.md".to_owned(), gone);
            u
        };
        let ann = assemble(&rows, &mut make(), "ann");
        assert_eq!((ann.entries[0].source, ann.entries[0].mark), (Source::Yours, Some(Mark::Deleted)));
        assert_eq!(ann.entries[0].component.name, "Button", "shown as it was, to undo");
        assert_eq!(ann.entries[0].others, vec![author("bob")]);
        assert!(ann.named("Button", None).is_none(), "the deleter may reuse the name");
        for reader in ["bob", "eve"] {
            let c = assemble(&rows, &mut make(), reader);
            assert_eq!((c.entries[0].source, c.entries[0].mark), (Source::DefaultBranch, None), "{reader}");
            assert!(c.entries[0].others.iter().any(|a| a.handle == "ann"));
            assert!(c.named("Button", None).is_some());
        }
    }

    #[test]
    fn a_new_text_claiming_a_used_id_gets_none() {
        let rows = vec![row("A.md", ID_A, &spec(ID_A, "Button"))];
        let mut u = HashMap::new();
        u.insert("Copy.md".to_owned(), unmerged_text(&spec(ID_A, "Copy"), &["ann"]));
        let ann = assemble(&rows, &mut u, "ann");
        assert_eq!(ann.entries[1].file_path, "Copy.md");
        assert_eq!(ann.entries[1].component_id, None);
    }
}

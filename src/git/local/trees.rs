//! Reading trees within limits: the local provider's listings, diffs and lookups.
//!
//! Git puts no bound on how deep a tree nests, and a chain of 30,000 folders is a few hundred
//! kilobytes of tree objects; a recursive walk of it overflows the stack and aborts the process.
//! Everything here iterates over an explicit stack and stops at [`MAX_TREE_DEPTH`] folders and
//! [`MAX_PATH_BYTES`] bytes, counting what it left out in a [`Skipped`].

use std::collections::BTreeMap;

use gix::ObjectId as GixId;

use super::upstream;
use crate::git::{DiffEntry, DiffStatus, GitResult, MAX_PATH_BYTES, MAX_TREE_DEPTH, Skipped};

/// The entry id at `path` in `tree`, if any. A path beyond the limits has none: Arno neither
/// lists nor reads what lies there, so it must not find it either.
pub(super) fn entry_at(repo: &gix::Repository, tree: GixId, path: &str) -> GitResult<Option<(GixId, bool)>> {
    if crate::git::path_limit_problem(path).is_some() {
        return Ok(None);
    }
    // Iterative in gix: one tree read per path component, at most `MAX_TREE_DEPTH + 1`.
    let tree = repo.find_tree(tree).map_err(upstream)?;
    let entry = tree.lookup_entry_by_path(path).map_err(upstream)?;
    Ok(entry.map(|e| (e.object_id(), e.mode().is_tree())))
}

/// `prefix/name` if it is within [`MAX_PATH_BYTES`]; otherwise `None`, without building it (a
/// tree entry's name may be as long as the tree object).
fn child_path(prefix: &str, name: &str) -> Option<String> {
    if prefix.len() + 1 + name.len() > MAX_PATH_BYTES {
        return None;
    }
    Some(if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") })
}

/// Tell the operator what a walk or diff left out: once per call, with the first path (cut
/// short) and never any file content.
pub(super) fn log_skipped(what: &str, skipped: &Skipped) {
    if let Some(first) = &skipped.first {
        tracing::warn!(
            event_type = "git_paths_skipped",
            operation = what,
            skipped = skipped.count,
            first = %first,
            max_tree_depth = MAX_TREE_DEPTH,
            max_path_bytes = MAX_PATH_BYTES,
            "left out paths beyond Arno's limits"
        );
    }
}

/// Every non-tree entry under `tree` with its full path, and what lies beyond the limits.
/// `prefix` is `tree`'s own path (`""` for the root) and `depth` the number of folders in it.
///
/// An explicit stack instead of recursion: a tree nests as deep as its author likes, a thread's
/// stack does not. Folders deeper than [`MAX_TREE_DEPTH`] and entries whose path would pass
/// [`MAX_PATH_BYTES`] are counted, not read. The order is unspecified; callers sort.
pub(super) fn walk(
    repo: &gix::Repository,
    tree: GixId,
    prefix: &str,
    depth: usize,
) -> GitResult<(Vec<(String, GixId)>, Skipped)> {
    let mut out = vec![];
    let mut skipped = Skipped::default();
    let mut stack = vec![(tree, prefix.to_owned(), depth)];
    while let Some((tree, prefix, depth)) = stack.pop() {
        let tree = repo.find_tree(tree).map_err(upstream)?;
        for entry in tree.iter() {
            let entry = entry.map_err(upstream)?;
            let name = entry.filename().to_string();
            let mode = entry.mode();
            if !(mode.is_tree() || mode.is_blob() || mode.is_link()) {
                continue; // Submodule entries (commits) have no content here.
            }
            let Some(path) = child_path(&prefix, &name) else {
                skipped.note(&prefix, &name);
                continue;
            };
            if !mode.is_tree() {
                out.push((path, entry.object_id()));
            } else if depth < MAX_TREE_DEPTH {
                stack.push((entry.object_id(), path, depth + 1));
            } else {
                skipped.note(&prefix, &name);
            }
        }
    }
    Ok((out, skipped))
}

/// Map of the direct entries of a tree: name → (id, is_tree).
fn entries(repo: &gix::Repository, tree: Option<GixId>) -> GitResult<BTreeMap<String, (GixId, bool)>> {
    let mut map = BTreeMap::new();
    if let Some(tree) = tree {
        for entry in repo.find_tree(tree).map_err(upstream)?.iter() {
            let entry = entry.map_err(upstream)?;
            let mode = entry.mode();
            if mode.is_tree() || mode.is_blob() || mode.is_link() {
                map.insert(entry.filename().to_string(), (entry.object_id(), mode.is_tree()));
            }
        }
    }
    Ok(map)
}

/// Compare two trees, descending only into subtrees whose ids differ (so a diff costs what
/// changed, not the size of the repository). Iterative and bounded like [`walk`]: differing
/// folders deeper than [`MAX_TREE_DEPTH`] and paths past [`MAX_PATH_BYTES`] are counted in the
/// [`Skipped`], not compared. The order is unspecified; callers sort.
pub(super) fn diff_trees(
    repo: &gix::Repository,
    old: Option<GixId>,
    new: Option<GixId>,
) -> GitResult<(Vec<DiffEntry>, Skipped)> {
    let mut out = vec![];
    let mut skipped = Skipped::default();
    // (old tree, new tree, their path, folders in that path)
    let mut stack = vec![(old, new, String::new(), 0usize)];
    while let Some((old, new, prefix, depth)) = stack.pop() {
        let (a, b) = (entries(repo, old)?, entries(repo, new)?);
        let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (before, after) = (a.get(name).copied(), b.get(name).copied());
            if before.map(|e| e.0) == after.map(|e| e.0) {
                continue;
            }
            let Some(path) = child_path(&prefix, name) else {
                skipped.note(&prefix, name);
                continue;
            };
            let old_tree = before.filter(|e| e.1).map(|e| e.0);
            let new_tree = after.filter(|e| e.1).map(|e| e.0);
            if old_tree.is_some() || new_tree.is_some() {
                if depth < MAX_TREE_DEPTH {
                    stack.push((old_tree, new_tree, path.clone(), depth + 1));
                } else {
                    skipped.note(&prefix, name);
                }
            }
            let old_blob = before.filter(|e| !e.1).map(|e| e.0.to_string());
            let new_blob = after.filter(|e| !e.1).map(|e| e.0.to_string());
            let status = match (&old_blob, &new_blob) {
                (None, None) => continue,
                (None, Some(_)) => DiffStatus::Added,
                (Some(_), None) => DiffStatus::Deleted,
                (Some(_), Some(_)) => DiffStatus::Modified,
            };
            out.push(DiffEntry { path, status, old_blob, new_blob });
        }
    }
    Ok((out, skipped))
}

#[cfg(test)]
pub(crate) mod tests {
    use gix::objs::tree::EntryKind;

    use std::path::Path;

    use super::*;

    /// A bare repository whose new objects stay in memory (nothing is written per object).
    fn memory_repo(dir: &Path) -> gix::Repository {
        gix::init_bare(dir.join("r.git")).unwrap().with_object_memory()
    }

    fn tree_with(repo: &gix::Repository, files: &[(&str, &str)]) -> GixId {
        let mut editor = repo.edit_tree(GixId::empty_tree(repo.object_hash())).unwrap();
        for (path, content) in files {
            let blob = repo.write_blob(content.as_bytes()).unwrap().detach();
            editor.upsert(*path, EntryKind::Blob, blob).unwrap();
        }
        editor.write().unwrap().detach()
    }

    /// `d/d/…/leaf.md`, `folders` folders deep, one small tree object per level.
    pub(crate) fn chain(repo: &gix::Repository, folders: usize) -> GixId {
        let leaf = |filename: &str, mode: EntryKind, oid| gix::objs::Tree {
            entries: vec![gix::objs::tree::Entry { mode: mode.into(), filename: filename.into(), oid }],
        };
        let blob = repo.write_blob(b"# Leaf\n").unwrap().detach();
        let mut id = repo.write_object(leaf("leaf.md", EntryKind::Blob, blob)).unwrap().detach();
        for _ in 0..folders {
            id = repo.write_object(leaf("d", EntryKind::Tree, id)).unwrap().detach();
        }
        id
    }

    const NESTED: &[(&str, &str)] = &[
        ("README.md", "readme"),
        (".arno/config.json", "{}"),
        ("Design_system/Button.md", "button"),
        ("Design_system/forms/Input.md", "input"),
        ("Design_system/forms/deep/er/Select.md", "select"),
        ("src/components/Button.tsx", "tsx"),
    ];

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn the_walk_lists_what_gix_traversal_lists() {
        let dir = tempfile::tempdir().unwrap();
        let repo = memory_repo(dir.path());
        let root = tree_with(&repo, NESTED);
        let (found, skipped) = walk(&repo, root, "", 0).unwrap();
        assert!(skipped.is_empty());
        let found = sorted(found);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, sorted(NESTED.iter().map(|(p, _)| *p).collect::<Vec<_>>()));
        // An independent oracle: gix's own breadth-first traversal.
        let tree = repo.find_tree(root).unwrap();
        let oracle: Vec<(String, GixId)> = tree
            .traverse()
            .breadthfirst
            .files()
            .unwrap()
            .into_iter()
            .filter(|e| !e.mode.is_tree())
            .map(|e| (e.filepath.to_string(), e.oid))
            .collect();
        assert_eq!(found, sorted(oracle));

        // From a folder: its files, with their full paths.
        let (forms, _) = entry_at(&repo, root, "Design_system/forms").unwrap().unwrap();
        let (under, _) = walk(&repo, forms, "Design_system/forms", 2).unwrap();
        let under: Vec<String> = sorted(under.into_iter().map(|(p, _)| p).collect());
        assert_eq!(under, ["Design_system/forms/Input.md", "Design_system/forms/deep/er/Select.md"]);
    }

    #[test]
    fn the_diff_finds_what_gix_diff_finds() {
        let dir = tempfile::tempdir().unwrap();
        let repo = memory_repo(dir.path());
        let old = tree_with(&repo, NESTED);
        let mut changed: Vec<(&str, &str)> =
            NESTED.iter().copied().filter(|(p, _)| !p.starts_with("src/") && *p != "README.md").collect();
        changed.retain(|(p, _)| *p != "Design_system/Button.md");
        changed.push(("Design_system/Button.md", "button, edited"));
        changed.push(("Design_system/forms/deep/New.md", "new"));
        changed.push(("docs/a/b/c.md", "new folder"));
        let new = tree_with(&repo, &changed);

        let (out, skipped) = diff_trees(&repo, Some(old), Some(new)).unwrap();
        assert!(skipped.is_empty());
        let out = sorted(out.into_iter().map(|d| (d.path, d.status as u8, d.old_blob, d.new_blob)).collect());
        let ours: Vec<(&str, u8)> = out.iter().map(|(p, s, _, _)| (p.as_str(), *s)).collect();
        let (added, modified, deleted) =
            (DiffStatus::Added as u8, DiffStatus::Modified as u8, DiffStatus::Deleted as u8);
        assert_eq!(
            ours,
            [
                ("Design_system/Button.md", modified),
                ("Design_system/forms/deep/New.md", added),
                ("README.md", deleted),
                ("docs/a/b/c.md", added),
                ("src/components/Button.tsx", deleted),
            ]
        );
        // An independent oracle: gix's tree diff (without rename tracking), files only.
        let (a, b) = (repo.find_tree(old).unwrap(), repo.find_tree(new).unwrap());
        let changes = repo.diff_tree_to_tree(&a, &b, gix::diff::Options::default()).unwrap();
        use gix::object::tree::diff::ChangeDetached as C;
        let oracle: Vec<_> = changes
            .into_iter()
            .filter(|c| !c.entry_mode().is_tree())
            .map(|c| match c {
                C::Addition { location, id, .. } => (location.to_string(), added, None, Some(id.to_string())),
                C::Deletion { location, id, .. } => (location.to_string(), deleted, Some(id.to_string()), None),
                C::Modification { location, previous_id, id, .. } => {
                    (location.to_string(), modified, Some(previous_id.to_string()), Some(id.to_string()))
                }
                C::Rewrite { .. } => unreachable!("rename tracking is off"),
            })
            .collect();
        assert_eq!(out, sorted(oracle));

        // Against nothing: every file is added, as the walk lists them.
        let (all, _) = diff_trees(&repo, None, Some(old)).unwrap();
        let all: Vec<String> = sorted(all.into_iter().map(|d| d.path).collect());
        let (walked, _) = walk(&repo, old, "", 0).unwrap();
        assert_eq!(all, sorted(walked.into_iter().map(|(p, _)| p).collect::<Vec<_>>()));
    }

    #[test]
    fn walks_and_diffs_stop_at_the_limits_on_a_small_stack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        // A thread with a stack far smaller than any recursion over 30,000 levels would need
        // (the object memory lives in this thread's repository handle, so all of it runs there).
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let repo = memory_repo(&path);
                // 30,000 folders, and a name that makes its path too long one folder down.
                let deep = chain(&repo, 30_000);
                let within = chain(&repo, MAX_TREE_DEPTH - 1);
                let long_name = "x".repeat(MAX_PATH_BYTES);
                let base = tree_with(&repo, &[("ok.md", "ok"), (&format!("long/{long_name}"), "long")]);
                let mut editor = repo.edit_tree(base).unwrap();
                editor.upsert("deep", EntryKind::Tree, deep).unwrap();
                editor.upsert("within", EntryKind::Tree, within).unwrap();
                let root = editor.write().unwrap().detach();

                let (found, skipped) = walk(&repo, root, "", 0).unwrap();
                let paths: Vec<String> = sorted(found.into_iter().map(|(p, _)| p).collect());
                let at_limit = format!("within/{}leaf.md", "d/".repeat(MAX_TREE_DEPTH - 1));
                assert_eq!(at_limit.matches('/').count(), MAX_TREE_DEPTH, "the deepest file Arno reads");
                assert_eq!(paths, ["ok.md".to_owned(), at_limit]);
                // The chain counts once (where it crosses the limit), the long name once.
                assert_eq!(skipped.count, 2);
                let crossing = format!("deep/{}d", "d/".repeat(MAX_TREE_DEPTH - 1));
                assert_eq!(skipped.first.as_deref(), Some(crossing.as_str()));

                let (diff, diff_skipped) = diff_trees(&repo, None, Some(root)).unwrap();
                assert_eq!(sorted(diff.into_iter().map(|d| d.path).collect::<Vec<_>>()), paths);
                assert_eq!(diff_skipped, skipped);
                // Nor can a lookup reach past the limits.
                let leaf = format!("deep/{}leaf.md", "d/".repeat(29_999));
                assert_eq!(entry_at(&repo, root, &leaf).unwrap(), None);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

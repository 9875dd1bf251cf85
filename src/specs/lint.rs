//! `arno lint PATH`: every problem in a checkout's specs, for CI and for developers.
//!
//! Reads `.arno/config.json` (defaults when missing) to find the spec folder, parses every spec,
//! and adds the checks that need all files at once: component, prop and event ids must be unique
//! across the design system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::{self, RepoConfig};
use super::document::{EVENTS, PROPS, Severity, SpecFile};
use crate::git::{MAX_PATH_BYTES, MAX_TREE_DEPTH};

/// One problem, printed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path relative to the checkout (forward slashes).
    pub file: String,
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.severity == Severity::Warning { "warning: " } else { "" };
        write!(f, "{}:{}: {level}{}", self.file, self.line, self.message)
    }
}

/// A checkout's spec files: the config and each spec's relative path and text.
pub struct Checkout {
    pub root: PathBuf,
    pub config: RepoConfig,
    pub files: Vec<(String, String)>,
    /// Problems found while reading (the config, unreadable or non-UTF-8 files).
    pub problems: Vec<Problem>,
}

/// Read the config and every spec under `componentsMd` (sorted by path). I/O failures on the
/// root itself are errors; problems with single files are reported as problems.
pub fn read_checkout(root: &Path) -> std::io::Result<Checkout> {
    let mut problems = vec![];
    let config = match std::fs::read(root.join(config::PATH)) {
        Ok(bytes) => RepoConfig::parse(&bytes).unwrap_or_else(|e| {
            problems.push(problem(config::PATH, 1, Severity::Error, format!("{}: {}", e.field, e.message)));
            RepoConfig::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RepoConfig::default(),
        Err(e) => return Err(e),
    };
    let dir = root.join(&config.components_md);
    let mut files = vec![];
    if !root.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"));
    }
    if dir.is_dir() {
        walk(root, &dir, &mut files, &mut problems)?;
    } else {
        problems.push(problem(
            &config.components_md,
            0,
            Severity::Warning,
            "spec folder does not exist (componentsMd in .arno/config.json)".into(),
        ));
    }
    files.sort();
    Ok(Checkout { root: root.to_owned(), config, files, problems })
}

/// Every `.md` file under `dir`. An explicit stack rather than recursion, bounded like Arno's
/// reading of git trees: folders deeper than [`MAX_TREE_DEPTH`] (counted from the checkout) and
/// paths longer than [`MAX_PATH_BYTES`] are reported as warnings and not read, since Arno would
/// not read them from git either. Symbolic links are not followed (`file_type` does not).
fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, String)>,
    problems: &mut Vec<Problem>,
) -> std::io::Result<()> {
    let folders = |path: &Path| path.strip_prefix(root).map_or(0, |p| p.components().count());
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            let relative = relative_path(root, &path);
            if kind.is_dir() {
                if folders(&path) > MAX_TREE_DEPTH || relative.len() > MAX_PATH_BYTES {
                    problems.push(problem(&relative, 0, Severity::Warning, beyond_limits()));
                } else {
                    stack.push(path);
                }
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "md") {
                if let Some(why) = crate::git::path_limit_problem(&relative) {
                    problems.push(problem(&relative, 0, Severity::Warning, format!("not read: the path {why}")));
                    continue;
                }
                match std::fs::read(&path) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => files.push((relative, text)),
                        Err(e) => problems.push(problem(
                            &relative,
                            0,
                            Severity::Error,
                            format!("not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
                        )),
                    },
                    Err(e) => problems.push(problem(&relative, 0, Severity::Error, format!("cannot read: {e}"))),
                }
            }
        }
    }
    Ok(())
}

fn beyond_limits() -> String {
    format!(
        "folder not read: Arno reads at most {MAX_TREE_DEPTH} folders deep and paths of at most {MAX_PATH_BYTES} bytes"
    )
}

fn relative_path(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn problem(file: &str, line: usize, severity: Severity, message: String) -> Problem {
    Problem { file: file.to_owned(), line, severity, message }
}

/// Lint parsed files: each file's own diagnostics plus cross-file duplicate ids.
pub fn lint_files(files: &[(String, String)]) -> Vec<Problem> {
    let mut problems = vec![];
    // id → where it was first seen (file, line), per kind of id.
    let mut components: HashMap<String, (String, usize)> = HashMap::new();
    let mut members: HashMap<String, (String, usize)> = HashMap::new();
    for (path, text) in files {
        let spec = SpecFile::parse(text.as_str());
        for d in &spec.diagnostics {
            problems.push(problem(path, d.line, d.severity, d.message.clone()));
        }
        if let (Some(id), Some(fm)) = (spec.id(), &spec.frontmatter) {
            let line = fm.id_line.unwrap_or(1);
            match components.get(&id.to_string()) {
                Some((file, at)) => problems.push(problem(
                    path,
                    line,
                    Severity::Error,
                    format!("duplicate component id {id} (also in {file}:{at})"),
                )),
                None => {
                    components.insert(id.to_string(), (path.clone(), line));
                }
            }
        }
        for kind in [PROPS, EVENTS] {
            let Some(index) = spec.block_index(kind) else { continue };
            let Some(parsed) = &spec.blocks[index].parsed else { continue };
            for (row, line) in parsed.row_lines.iter().enumerate() {
                let Some(id) = parsed.table.get(row, "id").filter(|id| uuid::Uuid::try_parse(id).is_ok()) else {
                    continue;
                };
                match members.get(id) {
                    // Same-file duplicates are already reported by the parser.
                    Some((file, _)) if file == path => {}
                    Some((file, at)) => problems.push(problem(
                        path,
                        *line,
                        Severity::Error,
                        format!("duplicate id {id} (also in {file}:{at})"),
                    )),
                    None => {
                        members.insert(id.to_owned(), (path.clone(), *line));
                    }
                }
            }
        }
    }
    problems
}

/// Lint a checkout: config problems, unreadable files, then every spec's problems, in file order.
pub fn lint(root: &Path) -> std::io::Result<Vec<Problem>> {
    let checkout = read_checkout(root)?;
    let mut problems = checkout.problems;
    problems.extend(lint_files(&checkout.files));
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_beyond_the_limits_are_warned_about_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // `Design_system` is the first folder; the chain adds MAX_TREE_DEPTH more.
        let mut deepest = root.join("Design_system");
        for _ in 0..MAX_TREE_DEPTH {
            deepest.push("d");
        }
        std::fs::create_dir_all(&deepest).unwrap();
        std::fs::write(deepest.join("TooDeep.md"), "# Too deep\n").unwrap();
        std::fs::write(deepest.parent().unwrap().join("AtLimit.md"), "# At the limit\n").unwrap();
        let checkout = read_checkout(root).unwrap();
        let files: Vec<&str> = checkout.files.iter().map(|(f, _)| f.as_str()).collect();
        let at_limit = format!("Design_system/{}AtLimit.md", "d/".repeat(MAX_TREE_DEPTH - 1));
        assert_eq!(files, [at_limit.as_str()]);
        let warned = format!("Design_system/{}d", "d/".repeat(MAX_TREE_DEPTH - 1));
        assert_eq!(checkout.problems.len(), 1, "{:?}", checkout.problems);
        assert_eq!(checkout.problems[0].file, warned);
        assert_eq!(checkout.problems[0].severity, Severity::Warning);
        assert!(checkout.problems[0].message.contains("64 folders"), "{}", checkout.problems[0].message);
    }

    #[test]
    fn duplicates_across_files_point_at_the_first() {
        let a = "---\nid: 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01\n---\n<!-- arno:props v1 -->\n| id | name | type |\n|-|-|-|\n| 6f1c7d2e-1111-4a2b-8c3d-000000000001 | a | string |\n<!-- /arno:props -->\n";
        let b = a.replace(
            "name | type |\n|-|-|-|",
            "name | type |\n|-|-|-|\n| 6f1c7d2e-1111-4a2b-8c3d-000000000002 | b | string |",
        );
        let problems = lint_files(&[("A.md".into(), a.into()), ("B.md".into(), b)]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "B.md:2: duplicate component id 0b5e1c1e-6c1a-4f44-9d7e-0c1f0d6d1a01 (also in A.md:2)",
                "B.md:8: duplicate id 6f1c7d2e-1111-4a2b-8c3d-000000000001 (also in A.md:7)",
            ]
        );
    }
}

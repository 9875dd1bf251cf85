//! CODEOWNERS: who must review a change to a path, as the provider will ask them when the pull
//! request is opened. Arno shows the owners beside each changed spec so a Maker knows before
//! anyone is asked.
//!
//! GitHub's rules (docs "About code owners"): the first file of `.github/CODEOWNERS`,
//! `CODEOWNERS` and `docs/CODEOWNERS` on the pull request's base branch; a line is a pattern and
//! its owners (`@user`, `@org/team`, an e-mail address); patterns follow `.gitignore` except
//! that `!` negation and `[ ]` ranges do not exist (such lines are skipped, as GitHub skips any
//! line it cannot read); `\#` starts a pattern with `#`; the last matching line wins, and a
//! matching line without owners means nobody owns the path; a file over 3 MB is ignored.

use super::{GitError, GitProvider, GitResult};

/// Where GitHub looks, in order.
pub const GITHUB_LOCATIONS: [&str; 3] = [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];
/// Segments a pattern may have (deeper ones are skipped as unreadable).
const MAX_SEGMENTS: usize = 64;
/// GitHub ignores a larger file.
pub const MAX_BYTES: usize = 3 << 20;

/// The CODEOWNERS file of `commit` and where it was found; `None` when there is none.
pub async fn read(provider: &dyn GitProvider, commit: &str) -> GitResult<Option<(String, CodeOwners)>> {
    for path in GITHUB_LOCATIONS {
        match provider.read_file(commit, path).await {
            // The first one found counts, even when it is too large to be read.
            Ok(bytes) => return Ok(Some((path.to_owned(), CodeOwners::parse(&String::from_utf8_lossy(&bytes))))),
            Err(GitError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// One readable line: the pattern's parts and the owners.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Path segments to match (`**` for any number of folders); unanchored patterns start with `**`.
    segments: Vec<String>,
    /// The pattern ended in `/`: only what lies inside a folder matches.
    folder_only: bool,
    owners: Vec<String>,
}

/// A parsed CODEOWNERS file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeOwners {
    rules: Vec<Rule>,
    /// Line numbers (1-based) that were skipped as unreadable.
    pub skipped_lines: Vec<usize>,
}

impl CodeOwners {
    /// Parse `text` (any bytes; lines that are not readable are skipped and counted).
    pub fn parse(text: &str) -> CodeOwners {
        let mut out = CodeOwners::default();
        if text.len() > MAX_BYTES {
            return out;
        }
        for (i, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            match parse_line(raw) {
                Line::Blank => {}
                Line::Rule(rule) => out.rules.push(rule),
                Line::Unreadable => out.skipped_lines.push(i + 1),
            }
        }
        out
    }

    /// The owners of `path` (a repository path, no leading slash); empty when nobody owns it.
    pub fn owners_of(&self, path: &str) -> &[String] {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        self.rules.iter().rev().find(|r| r.matches(&parts)).map_or(&[], |r| r.owners.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

enum Line {
    Blank,
    Rule(Rule),
    Unreadable,
}

fn parse_line(raw: &str) -> Line {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Line::Blank;
    }
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else { return Line::Blank };
    let pattern = first.strip_prefix('\\').filter(|p| p.starts_with('#')).unwrap_or(first);
    let mut owners = vec![];
    for word in words {
        if word.starts_with('#') {
            break; // a comment after the owners
        }
        if !valid_owner(word) {
            return Line::Unreadable;
        }
        owners.push(word.to_owned());
    }
    if pattern.starts_with('!') || pattern.contains('[') || pattern.contains(']') {
        return Line::Unreadable;
    }
    let mut folder_only = pattern.ends_with('/');
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.starts_with('/') || trimmed.contains('/');
    let mut segments: Vec<String> =
        trimmed.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    segments.dedup_by(|a, b| a == "**" && b == "**");
    if segments.len() > MAX_SEGMENTS {
        return Line::Unreadable;
    }
    if segments.is_empty() {
        // `/` alone owns everything.
        segments.push("**".into());
        folder_only = false;
    } else if !anchored {
        segments.insert(0, "**".into());
    }
    Line::Rule(Rule { segments, folder_only, owners })
}

/// `@user`, `@org/team` or an e-mail address.
fn valid_owner(word: &str) -> bool {
    let name_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    match word.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((org, team)) => name_ok(org) && name_ok(team),
            None => name_ok(rest),
        },
        None => word.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')),
    }
}

impl Rule {
    /// Whether the pattern matches `path` or one of the folders it lies in (a folder's owners own
    /// everything inside it).
    fn matches(&self, path: &[&str]) -> bool {
        // A pattern ending in `/` matches inside folders only; one ending in `/*` the folder's
        // own files only (GitHub: `docs/*` does not own docs/build-app/troubleshooting.md);
        // otherwise the file itself or any folder above it.
        if self.segments.last().is_some_and(|s| s == "*") && self.segments.len() > 1 {
            return glob_segments(&self.segments, path);
        }
        let ends = if self.folder_only { path.len().saturating_sub(1) } else { path.len() };
        (1..=ends).any(|n| glob_segments(&self.segments, &path[..n]))
    }
}

/// Segments against segments, `**` standing for zero or more of them (a trailing `**` for one
/// or more). Dynamic programming, so patterns with many `**` cost `patterns × path`, not more.
fn glob_segments(pattern: &[String], path: &[&str]) -> bool {
    let (p, n) = (pattern.len(), path.len());
    // at[j]: the pattern's first i segments match the path's first j.
    let mut at = vec![false; n + 1];
    at[0] = true;
    for (i, seg) in pattern.iter().enumerate() {
        let mut next = vec![false; n + 1];
        if seg == "**" {
            let last = i + 1 == p;
            let mut reached = false;
            for j in 0..=n {
                // Zero or more segments (one or more when it ends the pattern).
                if last {
                    next[j] = reached;
                    reached |= at[j];
                } else {
                    reached |= at[j];
                    next[j] = reached;
                }
            }
        } else {
            for j in 1..=n {
                next[j] = at[j - 1] && glob(seg.as_bytes(), path[j - 1].as_bytes());
            }
        }
        at = next;
    }
    at[n]
}

/// One segment: `*` any run of characters, `?` one; everything else itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's example file (docs "About code owners", "Example of a CODEOWNERS file"), with its
    /// examples' expectations.
    const GITHUB_EXAMPLE: &str = "\
# These owners will be the default owners for everything in the repo.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most precedence.
*.js    @js-owner #This is an inline comment.

*.go docs@example.com

*.txt @octo-org/octocats

/build/logs/ @doctocat

docs/*  docs@example.com

apps/ @octocat

/docs/ @doctocat

/scripts/ @doctocat @octocat

**/logs @octocat

/apps/ @octocat
/apps/github
";

    fn owners(file: &CodeOwners, path: &str) -> Vec<String> {
        file.owners_of(path).to_vec()
    }

    #[test]
    fn githubs_example_owns_what_its_comments_say() {
        let f = CodeOwners::parse(GITHUB_EXAMPLE);
        assert!(f.skipped_lines.is_empty(), "{:?}", f.skipped_lines);
        assert_eq!(owners(&f, "README.md"), ["@global-owner1", "@global-owner2"]);
        assert_eq!(owners(&f, "src/app.js"), ["@js-owner"]);
        assert_eq!(owners(&f, "main.go"), ["docs@example.com"]);
        assert_eq!(owners(&f, "notes/a.txt"), ["@octo-org/octocats"]);
        assert_eq!(owners(&f, "build/logs/today.log"), ["@octocat"], "**/logs comes later and matches too");
        // `docs/*` owns docs/getting-started.md but not docs/build-app/troubleshooting.md, which
        // `/docs/` (later) owns.
        assert_eq!(owners(&f, "docs/getting-started.md"), ["@doctocat"]);
        assert_eq!(owners(&f, "docs/build-app/troubleshooting.md"), ["@doctocat"]);
        assert_eq!(owners(&f, "src/docs/x.md"), ["@global-owner1", "@global-owner2"], "docs/* is anchored at the root");
        assert_eq!(owners(&f, "scripts/deploy.sh"), ["@doctocat", "@octocat"]);
        assert_eq!(owners(&f, "deep/in/logs/x"), ["@octocat"]);
        // `apps/` anywhere, but `/apps/github` has no owners: nobody owns it.
        assert_eq!(owners(&f, "web/apps/x.rb"), ["@octocat"]);
        assert!(owners(&f, "apps/github/x.rb").is_empty());
        assert_eq!(owners(&f, "apps/other.rb"), ["@octocat"]);
    }

    #[test]
    fn patterns_as_gitignore_reads_them() {
        let f = CodeOwners::parse(
            "Design_system/ @design\n/Design_system/Button.md @buttons\n*.spec.md @qa\nDesign_system/**/tokens/ @tokens\n\
             flat/* @flat\n",
        );
        assert_eq!(owners(&f, "flat/a.md"), ["@flat"]);
        assert!(owners(&f, "flat/deeper/a.md").is_empty(), "`flat/*` owns flat/'s own files only");
        assert_eq!(owners(&f, "Design_system/Card.md"), ["@design"]);
        assert_eq!(owners(&f, "Design_system/Button.md"), ["@buttons"]);
        assert_eq!(owners(&f, "x/Design_system/Card.md"), ["@design"], "no inner slash: any depth");
        assert_eq!(owners(&f, "Design_system/a/b/tokens/c.json"), ["@tokens"]);
        assert_eq!(owners(&f, "Design_system/tokens/c.json"), ["@tokens"], "** is zero folders too");
        assert_eq!(owners(&f, "a/b.spec.md"), ["@qa"]);
        assert!(owners(&f, "Design_system").is_empty(), "a folder pattern does not own a file of that name");
        assert!(owners(&f, "README.md").is_empty());
    }

    #[test]
    fn lines_github_cannot_read_are_skipped_not_guessed() {
        let f = CodeOwners::parse("* @all\n!secret.md @nobody\n[ab].md @range\n*.md not-an-owner\n\\#notes.md @hash\n");
        assert_eq!(f.skipped_lines, [2, 3, 4]);
        assert_eq!(owners(&f, "secret.md"), ["@all"]);
        assert_eq!(owners(&f, "#notes.md"), ["@hash"]);
        let too_big = "* @a\n".repeat(MAX_BYTES / 5 + 1);
        assert!(CodeOwners::parse(&too_big).is_empty(), "GitHub ignores a file over 3 MB");
        // Malformed bytes and odd whitespace do not panic.
        let odd = CodeOwners::parse("\u{feff}*\t@a\r\n  \n/\t@root\n***/x @x\n");
        assert_eq!(owners(&odd, "anything"), ["@root"]);
        assert_eq!(owners(&odd, "a/x"), ["@x"]);
    }

    #[test]
    fn patterns_full_of_stars_cost_little() {
        let hostile = format!("{}x @x\n{}y @y\n", "**/a/".repeat(30), "*/".repeat(70));
        let f = CodeOwners::parse(&hostile);
        assert_eq!(f.skipped_lines, [2], "too deep a pattern is skipped");
        let path = ["a"; 200].join("/");
        let started = std::time::Instant::now();
        assert!(f.owners_of(&path).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn globs() {
        assert!(glob(b"*.md", b"Button.md"));
        assert!(!glob(b"*.md", b"Button.mdx"));
        assert!(glob(b"B?tton*", b"Button.md"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
    }
}

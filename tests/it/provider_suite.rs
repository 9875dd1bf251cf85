//! One trait-level suite for every git provider: the same cases run against the local provider
//! (gix, a bare repository on disk) and the GitHub adapter (the fake GitHub over a bare
//! repository), so behaviour is identical wherever the providers can make it so. Each case
//! starts from the same repository, made with the `git` command line as a developer would.

use std::path::{Path, PathBuf};

use arno::git::github::provider::GitHubProvider;
use arno::git::local::LocalProvider;
use arno::git::{Change, CommitRequest, DiffStatus, GitError, GitProvider, MergeMode, MergeRequest, Person};

use crate::fake_github::FakeGitHub;
use crate::git::git;

pub struct Harness {
    pub provider: Box<dyn GitProvider>,
    /// The bare repository behind the provider (what `git` sees).
    pub dir: PathBuf,
    pub fake: Option<FakeGitHub>,
    /// The first commit on `main`.
    pub first: String,
    _tmp: tempfile::TempDir,
}

#[derive(Clone, Copy)]
pub enum Side {
    Local,
    GitHub,
}

pub const BINARY: &[u8] = &[0, 1, 2, 0xff, b'\n', 0];

/// A working copy with the seed files, pushed to `bare`; returns the commit.
pub fn seed(bare: &Path, work: &Path) -> String {
    git(work.parent().unwrap(), &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("Design_system/forms")).unwrap();
    std::fs::create_dir_all(work.join(".arno")).unwrap();
    std::fs::write(work.join(".arno/config.json"), "{\"version\":1}\n").unwrap();
    std::fs::write(work.join("Design_system/Button.md"), "# Button\n").unwrap();
    std::fs::write(work.join("Design_system/forms/Input.md"), "# Input\n").unwrap();
    std::fs::write(work.join("logo.bin"), BINARY).unwrap();
    git(work, &["add", "."]);
    git(work, &["commit", "-q", "-m", "Seed the design system"]);
    git(work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(work, &["rev-parse", "HEAD"])
}

pub async fn harness(side: Side) -> Option<Harness> {
    let tmp = tempfile::tempdir().unwrap();
    match side {
        Side::Local => {
            let dir = tmp.path().join("repo.git");
            git(tmp.path(), &["init", "-q", "--bare", "-b", "main", dir.to_str().unwrap()]);
            let first = seed(&dir, &tmp.path().join("work"));
            let path = dir.clone();
            let provider = tokio::task::spawn_blocking(move || LocalProvider::open(&path)).await.unwrap().unwrap();
            Some(Harness { provider: Box::new(provider), dir, fake: None, first, _tmp: tmp })
        }
        Side::GitHub => {
            let fake = FakeGitHub::start()?;
            let dir = fake.repo("acme", "design-system", 7).await;
            let first = seed(&dir, &tmp.path().join("work"));
            let provider = GitHubProvider::connect(fake.client(), "acme/design-system").await.unwrap();
            assert_eq!(provider.installation(), 7);
            Some(Harness { provider: Box::new(provider), dir, fake: Some(fake), first, _tmp: tmp })
        }
    }
}

impl Harness {
    pub async fn done(self) {
        if let Some(fake) = &self.fake {
            fake.assert_clean().await;
        }
        git(&self.dir, &["fsck", "--strict", "--no-progress"]);
    }
}

pub fn alice() -> Person {
    Person { name: "Alice Maker".into(), email: "alice@example.com".into() }
}

pub fn upsert(path: &str, content: &[u8]) -> Change {
    Change::Upsert { path: path.into(), content: content.to_vec() }
}

pub fn request(branch: &str, parent: &str, changes: Vec<Change>) -> CommitRequest {
    CommitRequest {
        branch: branch.into(),
        parent: parent.into(),
        message: "Edit specs".into(),
        author: alice(),
        changes,
    }
}

macro_rules! on_every_provider {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test]
            async fn $name() {
                let h = super::harness(super::Side::Local).await.unwrap();
                super::$name(&h).await;
                h.done().await;
            })*
        }
        mod github {
            $(#[tokio::test]
            async fn $name() {
                let Some(h) = super::harness(super::Side::GitHub).await else { return };
                super::$name(&h).await;
                h.done().await;
            })*
        }
    };
}

on_every_provider!(
    reads_lists_and_resolves,
    commits_compare_and_swap,
    branches_diff_and_merge,
    a_rewound_branch_is_never_written
);

async fn reads_lists_and_resolves(h: &Harness) {
    let repo = &h.provider;
    let head = repo.default_branch().await.unwrap();
    assert_eq!((head.name.as_str(), head.commit.as_deref()), ("main", Some(h.first.as_str())));
    assert_eq!(repo.resolve("main").await.unwrap(), h.first);
    assert_eq!(repo.resolve("refs/heads/main").await.unwrap(), h.first);
    assert_eq!(repo.resolve(&h.first).await.unwrap(), h.first);
    assert!(matches!(repo.resolve("nope").await, Err(GitError::NotFound(_))));
    assert!(matches!(repo.resolve(&"0".repeat(40)).await, Err(GitError::NotFound(_))));

    assert_eq!(repo.read_file(&h.first, "Design_system/Button.md").await.unwrap(), b"# Button\n");
    assert_eq!(repo.read_file(&h.first, "logo.bin").await.unwrap(), BINARY, "binary content, byte for byte");
    assert!(matches!(repo.read_file(&h.first, "Design_system").await, Err(GitError::NotFound(_))));
    assert!(matches!(repo.read_file(&h.first, "nope.md").await, Err(GitError::NotFound(_))));

    let all = repo.list_files(&h.first, "", None, 100).await.unwrap();
    let paths: Vec<&str> = all.items.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [".arno/config.json", "Design_system/Button.md", "Design_system/forms/Input.md", "logo.bin"]);
    assert_eq!(all.items[1].size, 9);
    assert_eq!(all.items[1].blob_id, git(&h.dir, &["rev-parse", "main:Design_system/Button.md"]));
    let page = repo.list_files(&h.first, "Design_system", None, 1).await.unwrap();
    assert_eq!(page.items.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["Design_system/Button.md"]);
    let rest = repo.list_files(&h.first, "Design_system/", page.next.as_deref(), 10).await.unwrap();
    assert_eq!(rest.items.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["Design_system/forms/Input.md"]);
    assert_eq!(rest.next, None);
    assert!(repo.list_files(&h.first, "missing/", None, 10).await.unwrap().items.is_empty());
    assert!(repo.list_files(&h.first, "Design", None, 10).await.unwrap().items.is_empty(), "a prefix is a folder");

    let last = repo.last_commit(&h.first, "Design_system/Button.md").await.unwrap().unwrap();
    assert_eq!(
        (last.id.as_str(), last.message.trim(), last.author.name.as_str()),
        (h.first.as_str(), "Seed the design system", "Dev")
    );
    assert!(last.time_ms > 1_700_000_000_000);
    assert_eq!(repo.last_commit(&h.first, "nope").await.unwrap(), None);
}

async fn commits_compare_and_swap(h: &Harness) {
    let repo = &h.provider;
    let second = repo
        .commit(request(
            "main",
            &h.first,
            vec![
                upsert("Design_system/Card.md", b"# Card\n"),
                upsert("assets/icon.bin", BINARY),
                Change::Delete { path: "Design_system/Button.md".into() },
            ],
        ))
        .await
        .unwrap();
    assert_eq!(second.author, alice());
    assert_eq!(repo.resolve("main").await.unwrap(), second.id);
    assert_eq!(repo.read_file(&second.id, "assets/icon.bin").await.unwrap(), BINARY);
    assert!(matches!(repo.read_file(&second.id, "Design_system/Button.md").await, Err(GitError::NotFound(_))));
    assert_eq!(
        git(&h.dir, &["log", "-1", "--format=%an <%ae>|%cn|%P|%s", "main"]),
        format!("Alice Maker <alice@example.com>|Arno|{}|Edit specs", h.first)
    );

    // A stale parent is a conflict, and nothing moves.
    let stale = repo.commit(request("main", &h.first, vec![upsert("x.md", b"x")])).await;
    assert!(matches!(stale, Err(GitError::Conflict(_))), "{stale:?}");
    for (changes, not_found) in [
        (vec![upsert("../escape.md", b"x")], false),
        (vec![upsert(".git/config", b"x")], false),
        (vec![upsert("a//b.md", b"x")], false),
        (vec![Change::Delete { path: "missing.md".into() }], true),
        (vec![upsert("Design_system/Card.md", b"# Card\n")], false),
        (vec![], false),
    ] {
        match repo.commit(request("main", &second.id, changes.clone())).await {
            Err(GitError::NotFound(_)) if not_found => {}
            Err(GitError::Invalid(_)) if !not_found => {}
            other => panic!("{changes:?}: {other:?}"),
        }
    }
    assert!(matches!(repo.commit(request("main", "zz", vec![upsert("b.md", b"b")])).await, Err(GitError::Invalid(_))));
    assert!(matches!(
        repo.commit(request("bad name", &second.id, vec![upsert("b.md", b"b")])).await,
        Err(GitError::Invalid(_))
    ));
    assert_eq!(repo.resolve("main").await.unwrap(), second.id, "no refusal moved the branch");
}

async fn branches_diff_and_merge(h: &Harness) {
    let repo = &h.provider;
    let text = b"line 1\nline 2\nline 3\nline 4\nline 5\n";
    let replace = |pairs: &[(&str, &str)]| {
        let mut s = String::from_utf8(text.to_vec()).unwrap();
        for (a, b) in pairs {
            s = s.replace(a, b);
        }
        s.into_bytes()
    };
    let base =
        repo.commit(request("main", &h.first, vec![upsert("A.md", text), upsert("B.md", b"b\n")])).await.unwrap();
    repo.create_branch("arno/alice", &base.id).await.unwrap();
    assert!(matches!(repo.create_branch("arno/alice", &base.id).await, Err(GitError::Conflict(_))));
    assert!(matches!(repo.create_branch("bad name", &base.id).await, Err(GitError::Invalid(_))));
    let ours = repo
        .commit(request(
            "arno/alice",
            &base.id,
            vec![upsert("A.md", &replace(&[("line 1", "ONE")])), upsert("forms/New.md", b"n\n")],
        ))
        .await
        .unwrap();
    assert_eq!(repo.resolve("main").await.unwrap(), base.id, "main did not move");

    let diff = repo.diff("main", "arno/alice", None, 100).await.unwrap();
    let summary: Vec<(&str, DiffStatus)> = diff.items.iter().map(|d| (d.path.as_str(), d.status)).collect();
    assert_eq!(summary, [("A.md", DiffStatus::Modified), ("forms/New.md", DiffStatus::Added)]);
    let back = repo.diff(&ours.id, &h.first, None, 1).await.unwrap();
    assert_eq!((back.items[0].path.as_str(), back.items[0].status), ("A.md", DiffStatus::Deleted));
    assert!(back.next.is_some(), "one per page");
    assert_eq!(repo.merge_base(&base.id, &ours.id).await.unwrap().as_deref(), Some(base.id.as_str()));
    assert_eq!(repo.merge_base("main", "main").await.unwrap().as_deref(), Some(base.id.as_str()));

    let merge = |mode, expected: &str, source: &str| MergeRequest {
        branch: "main".into(),
        expected: expected.into(),
        source: source.into(),
        mode,
        message: "Merge arno/alice".into(),
        author: alice(),
    };
    assert!(matches!(repo.merge(merge(MergeMode::FastForward, &ours.id, &ours.id)).await, Err(GitError::Conflict(_))));
    let ff = repo.merge(merge(MergeMode::FastForward, &base.id, &ours.id)).await.unwrap();
    assert_eq!((ff.id.as_str(), repo.resolve("main").await.unwrap()), (ours.id.as_str(), ours.id.clone()));
    assert!(matches!(repo.merge(merge(MergeMode::MergeCommit, &ours.id, &ours.id)).await, Err(GitError::Invalid(_))));

    // Both sides move: different lines of one file merge (a real three-way merge).
    let main2 = repo
        .commit(request("main", &ours.id, vec![upsert("A.md", &replace(&[("line 1", "ONE"), ("line 5", "FIVE")]))]))
        .await
        .unwrap();
    let side = repo
        .commit(request(
            "arno/alice",
            &ours.id,
            vec![upsert("A.md", &replace(&[("line 1", "ONE"), ("line 2", "TWO")])), upsert("C.md", b"c\n")],
        ))
        .await
        .unwrap();
    assert!(matches!(repo.merge(merge(MergeMode::FastForward, &main2.id, &side.id)).await, Err(GitError::Conflict(_))));
    let merged = repo.merge(merge(MergeMode::MergeCommit, &main2.id, &side.id)).await.unwrap();
    assert_eq!(
        String::from_utf8(repo.read_file(&merged.id, "A.md").await.unwrap()).unwrap(),
        "ONE\nTWO\nline 3\nline 4\nFIVE\n"
    );
    assert_eq!(git(&h.dir, &["log", "-1", "--format=%P", "main"]), format!("{} {}", main2.id, side.id));

    // The same line on both sides: refused, naming the file; nothing moves.
    let main3 = repo.commit(request("main", &merged.id, vec![upsert("B.md", b"main's b\n")])).await.unwrap();
    let side2 = repo.commit(request("arno/alice", &side.id, vec![upsert("B.md", b"alice's b\n")])).await.unwrap();
    match repo.merge(merge(MergeMode::MergeCommit, &main3.id, &side2.id)).await {
        Err(GitError::MergeConflict(paths)) => assert_eq!(paths, ["B.md"]),
        other => panic!("expected a merge conflict, got {other:?}"),
    }
    assert_eq!(repo.resolve("main").await.unwrap(), main3.id);

    // Fast-forwarding a branch: only to a descendant, only from the expected head.
    repo.create_branch("arno/bob", &base.id).await.unwrap();
    assert!(matches!(repo.fast_forward("arno/bob", &main3.id, &main3.id).await, Err(GitError::Conflict(_))));
    repo.fast_forward("arno/bob", &base.id, &side2.id).await.unwrap();
    assert!(
        matches!(repo.fast_forward("arno/bob", &side2.id, &main3.id).await, Err(GitError::Conflict(_))),
        "not a descendant"
    );
    assert_eq!(repo.resolve("arno/bob").await.unwrap(), side2.id);
}

async fn a_rewound_branch_is_never_written(h: &Harness) {
    let repo = &h.provider;
    repo.create_branch("arno/alice", &h.first).await.unwrap();
    let one = repo.commit(request("arno/alice", &h.first, vec![upsert("One.md", b"1\n")])).await.unwrap();
    let two = repo.commit(request("arno/alice", &one.id, vec![upsert("Two.md", b"2\n")])).await.unwrap();
    // Someone rewinds the session branch (a force-push from a developer's machine).
    git(&h.dir, &["update-ref", "refs/heads/arno/alice", &one.id, &two.id]);
    // A write based on the old head would fast-forward from the rewound one: Arno refuses it.
    let refused = repo.commit(request("arno/alice", &two.id, vec![upsert("Three.md", b"3\n")])).await;
    assert!(matches!(refused, Err(GitError::Conflict(_))), "{refused:?}");
    assert_eq!(git(&h.dir, &["rev-parse", "arno/alice"]), one.id, "the rewound branch stays where its owner put it");
    assert!(matches!(repo.fast_forward("arno/alice", &two.id, &two.id).await, Err(GitError::Conflict(_))));
}

//! The local git provider against real repositories in temp dirs, cross-checked with the `git`
//! command line (what a developer would see).

use std::path::Path;
use std::process::Command;

use arno::git::local::LocalProvider;
use arno::git::{Change, CommitRequest, DiffStatus, GitError, GitProvider, MergeMode, MergeRequest, Person};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn alice() -> Person {
    Person { name: "Alice Maker".into(), email: "alice@example.com".into() }
}

fn upsert(path: &str, content: &str) -> Change {
    Change::Upsert { path: path.into(), content: content.as_bytes().to_vec() }
}

fn request(branch: &str, parent: &str, changes: Vec<Change>) -> CommitRequest {
    CommitRequest {
        branch: branch.into(),
        parent: parent.into(),
        message: "Edit specs".into(),
        author: alice(),
        changes,
    }
}

async fn open(path: &Path) -> LocalProvider {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || LocalProvider::open(&path)).await.unwrap().unwrap()
}

#[tokio::test]
async fn new_repository_commits_branches_and_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("project.git");
    let repo = LocalProvider::init(&path, "main").unwrap();
    let unborn = repo.default_branch().await.unwrap();
    assert_eq!((unborn.name.as_str(), unborn.commit), ("main", None), "a new repository has no commits");

    let first = repo
        .commit(request(
            "main",
            "",
            vec![upsert(".arno/config.json", "{\"version\":1}\n"), upsert("Design_system/Button.md", "# Button\n")],
        ))
        .await
        .unwrap();
    assert_eq!(first.author, alice());
    let head = repo.default_branch().await.unwrap();
    assert_eq!((head.name.as_str(), head.commit.as_deref()), ("main", Some(first.id.as_str())));
    assert_eq!(repo.resolve("main").await.unwrap(), first.id);
    assert_eq!(repo.resolve("refs/heads/main").await.unwrap(), first.id);
    assert_eq!(repo.read_file(&first.id, "Design_system/Button.md").await.unwrap(), b"# Button\n");
    assert!(matches!(repo.read_file(&first.id, "Design_system").await, Err(GitError::NotFound(_))));
    assert!(matches!(repo.read_file(&first.id, "nope.md").await, Err(GitError::NotFound(_))));
    assert!(matches!(repo.resolve("nope").await, Err(GitError::NotFound(_))));

    // Compare-and-swap: a stale parent is a conflict, and nothing moves.
    let second = repo
        .commit(request(
            "main",
            &first.id,
            vec![
                upsert("Design_system/Card.md", "# Card\n"),
                Change::Delete { path: "Design_system/Button.md".into() },
            ],
        ))
        .await
        .unwrap();
    let stale = repo.commit(request("main", &first.id, vec![upsert("x.md", "x")])).await;
    assert!(matches!(stale, Err(GitError::Conflict(_))), "{stale:?}");
    assert_eq!(repo.resolve("main").await.unwrap(), second.id);

    // Branches.
    repo.create_branch("arno/alice", &second.id).await.unwrap();
    assert!(matches!(repo.create_branch("arno/alice", &second.id).await, Err(GitError::Conflict(_))));
    assert!(matches!(repo.create_branch("bad name", &second.id).await, Err(GitError::Invalid(_))));
    let on_branch = repo
        .commit(request(
            "arno/alice",
            &second.id,
            vec![upsert("Design_system/Card.md", "# Card v2\n"), upsert("Design_system/forms/Input.md", "# Input\n")],
        ))
        .await
        .unwrap();
    assert_eq!(repo.resolve("main").await.unwrap(), second.id, "main did not move");

    let diff = repo.diff("main", "arno/alice", None, 100).await.unwrap();
    let summary: Vec<(&str, DiffStatus)> = diff.items.iter().map(|d| (d.path.as_str(), d.status)).collect();
    assert_eq!(
        summary,
        [("Design_system/Card.md", DiffStatus::Modified), ("Design_system/forms/Input.md", DiffStatus::Added)]
    );
    assert_eq!(diff.next, None);
    let back = repo.diff(&on_branch.id, &first.id, None, 100).await.unwrap();
    let summary: Vec<(&str, DiffStatus)> = back.items.iter().map(|d| (d.path.as_str(), d.status)).collect();
    assert_eq!(
        summary,
        [
            ("Design_system/Button.md", DiffStatus::Added),
            ("Design_system/Card.md", DiffStatus::Deleted),
            ("Design_system/forms/Input.md", DiffStatus::Deleted),
        ]
    );

    // Listing with pagination.
    let page = repo.list_files(&on_branch.id, "Design_system", None, 1).await.unwrap();
    assert_eq!(page.items.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["Design_system/Card.md"]);
    assert_eq!(page.items[0].size, 10);
    let rest = repo.list_files(&on_branch.id, "Design_system/", page.next.as_deref(), 10).await.unwrap();
    assert_eq!(rest.items.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["Design_system/forms/Input.md"]);
    assert_eq!(rest.next, None);
    assert_eq!(repo.list_files(&on_branch.id, "", None, 10).await.unwrap().items.len(), 3);
    assert!(repo.list_files(&on_branch.id, "missing/", None, 10).await.unwrap().items.is_empty());

    // The file's last commit.
    let last = repo.last_commit(&on_branch.id, "Design_system/Card.md").await.unwrap().unwrap();
    assert_eq!(last.id, on_branch.id);
    let last = repo.last_commit(&on_branch.id, ".arno/config.json").await.unwrap().unwrap();
    assert_eq!((last.id.as_str(), last.message.as_str()), (first.id.as_str(), "Edit specs"));
    assert_eq!(repo.last_commit(&on_branch.id, "nope").await.unwrap(), None);

    // git itself agrees: a valid repository, the author is the user and Arno the committer.
    git(&path, &["fsck", "--strict"]);
    assert_eq!(
        git(&path, &["log", "-1", "--format=%an <%ae>|%cn", "arno/alice"]),
        "Alice Maker <alice@example.com>|Arno"
    );
    assert_eq!(git(&path, &["show", "arno/alice:Design_system/Card.md"]), "# Card v2");
    assert_eq!(git(&path, &["rev-list", "--count", "main"]), "2");
}

#[tokio::test]
async fn bad_changes_are_refused_without_moving_the_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = LocalProvider::init(&dir.path().join("r.git"), "main").unwrap();
    let first = repo.commit(request("main", "", vec![upsert("a.md", "a")])).await.unwrap();
    for (changes, expect_not_found) in [
        (vec![upsert("../escape.md", "x")], false),
        (vec![upsert(".git/config", "x")], false),
        (vec![upsert("a//b.md", "x")], false),
        (vec![Change::Delete { path: "missing.md".into() }], true),
        (vec![upsert("a.md", "a")], false),
        (vec![], false),
    ] {
        let result = repo.commit(request("main", &first.id, changes.clone())).await;
        match result {
            Err(GitError::NotFound(_)) if expect_not_found => {}
            Err(GitError::Invalid(_)) if !expect_not_found => {}
            other => panic!("{changes:?}: {other:?}"),
        }
    }
    assert_eq!(repo.resolve("main").await.unwrap(), first.id);
    assert!(matches!(repo.commit(request("main", "zz", vec![upsert("b.md", "b")])).await, Err(GitError::Invalid(_))));
    assert!(matches!(LocalProvider::init(&dir.path().join("r.git"), "main"), Err(GitError::Conflict(_))));
}

#[tokio::test]
async fn existing_repository_with_a_working_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    git(path, &["init", "-q", "-b", "trunk"]);
    std::fs::create_dir_all(path.join("Design_system")).unwrap();
    std::fs::write(path.join("Design_system/Button.md"), "# Button\n").unwrap();
    git(path, &["add", "."]);
    git(path, &["commit", "-q", "-m", "Add button"]);
    let dev_head = git(path, &["rev-parse", "HEAD"]);

    let repo = open(path).await;
    let head = repo.default_branch().await.unwrap();
    assert_eq!((head.name.as_str(), head.commit.as_deref()), ("trunk", Some(dev_head.as_str())));
    let head_commit = head.commit.unwrap();
    let last = repo.last_commit(&head_commit, "Design_system/Button.md").await.unwrap().unwrap();
    assert_eq!((last.author.name.as_str(), last.message.trim()), ("Dev", "Add button"));

    // The checked-out branch is the developer's: Arno writes to its own branch instead.
    let refused =
        repo.commit(request("trunk", &head_commit, vec![upsert("Design_system/Button.md", "# Button!\n")])).await;
    assert!(matches!(refused, Err(GitError::Conflict(ref m)) if m.contains("checked out")), "{refused:?}");
    repo.create_branch("arno/alice", "trunk").await.unwrap();
    let c = repo
        .commit(request("arno/alice", &head_commit, vec![upsert("Design_system/Button.md", "# Button!\n")]))
        .await
        .unwrap();
    assert_eq!(git(path, &["show", &format!("{}:Design_system/Button.md", c.id)]), "# Button!");
    assert_eq!(git(path, &["status", "--porcelain"]), "", "the working tree is untouched");
    git(path, &["fsck", "--strict"]);

    // A commit git makes afterwards is seen at once (packed refs too).
    std::fs::write(path.join("Design_system/Card.md"), "# Card\n").unwrap();
    git(path, &["add", "."]);
    git(path, &["commit", "-q", "-m", "Add card"]);
    git(path, &["pack-refs", "--all"]);
    let moved = git(path, &["rev-parse", "HEAD"]);
    assert_eq!(repo.default_branch().await.unwrap().commit, Some(moved.clone()));
    assert_eq!(repo.read_file(&moved, "Design_system/Card.md").await.unwrap(), b"# Card\n");

    let missing = dir.path().join("nothing-here");
    let result = tokio::task::spawn_blocking(move || LocalProvider::open(&missing).map(|_| ())).await.unwrap();
    assert!(matches!(result, Err(GitError::NotFound(_))));
}

#[tokio::test]
async fn merges_fast_forward_or_three_way_and_refuse_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merge.git");
    let repo = LocalProvider::init(&path, "main").unwrap();
    let text = "line 1\nline 2\nline 3\nline 4\nline 5\n";
    let base = repo.commit(request("main", "", vec![upsert("A.md", text), upsert("B.md", "b\n")])).await.unwrap();
    repo.create_branch("arno/alice", &base.id).await.unwrap();
    let ours = repo
        .commit(request("arno/alice", &base.id, vec![upsert("A.md", &text.replace("line 1", "ONE"))]))
        .await
        .unwrap();
    assert_eq!(repo.merge_base(&base.id, &ours.id).await.unwrap().as_deref(), Some(base.id.as_str()));

    let merge = |mode, expected: &str, source: &str| MergeRequest {
        branch: "main".into(),
        expected: expected.into(),
        source: source.into(),
        mode,
        message: "Merge arno/alice".into(),
        author: alice(),
    };
    // Fast-forward while main has nothing new; a stale expectation is a conflict.
    assert!(matches!(repo.merge(merge(MergeMode::FastForward, &ours.id, &ours.id)).await, Err(GitError::Conflict(_))));
    let ff = repo.merge(merge(MergeMode::FastForward, &base.id, &ours.id)).await.unwrap();
    assert_eq!((ff.id.as_str(), repo.resolve("main").await.unwrap()), (ours.id.as_str(), ours.id.clone()));
    // Nothing left to merge.
    assert!(matches!(repo.merge(merge(MergeMode::MergeCommit, &ours.id, &ours.id)).await, Err(GitError::Invalid(_))));

    // Both sides move: the same file in different lines merges cleanly (a real three-way merge).
    let main2 = repo
        .commit(request(
            "main",
            &ours.id,
            vec![upsert("A.md", &text.replace("line 1", "ONE").replace("line 5", "FIVE"))],
        ))
        .await
        .unwrap();
    let side = repo
        .commit(request(
            "arno/alice",
            &ours.id,
            vec![upsert("A.md", &text.replace("line 1", "ONE").replace("line 2", "TWO")), upsert("C.md", "c\n")],
        ))
        .await
        .unwrap();
    assert!(matches!(repo.merge(merge(MergeMode::FastForward, &main2.id, &side.id)).await, Err(GitError::Conflict(_))));
    let merged = repo.merge(merge(MergeMode::MergeCommit, &main2.id, &side.id)).await.unwrap();
    assert_eq!(
        String::from_utf8(repo.read_file(&merged.id, "A.md").await.unwrap()).unwrap(),
        "ONE\nTWO\nline 3\nline 4\nFIVE\n"
    );
    assert_eq!(repo.read_file(&merged.id, "C.md").await.unwrap(), b"c\n");
    assert_eq!(git(&path, &["log", "-1", "--format=%P", "main"]), format!("{} {}", main2.id, side.id));
    assert_eq!(git(&path, &["log", "-1", "--format=%an|%cn", "main"]), "Alice Maker|Arno");

    // The same line changed on both sides: refused, naming the file; nothing moves.
    let main3 = repo.commit(request("main", &merged.id, vec![upsert("B.md", "main's b\n")])).await.unwrap();
    let side2 = repo.commit(request("arno/alice", &side.id, vec![upsert("B.md", "alice's b\n")])).await.unwrap();
    match repo.merge(merge(MergeMode::MergeCommit, &main3.id, &side2.id)).await {
        Err(GitError::MergeConflict(paths)) => assert_eq!(paths, ["B.md"]),
        other => panic!("expected a merge conflict, got {other:?}"),
    }
    assert_eq!(repo.resolve("main").await.unwrap(), main3.id);

    // Fast-forwarding a branch: only to a descendant, only from the expected head.
    repo.create_branch("arno/bob", &base.id).await.unwrap();
    assert!(matches!(repo.fast_forward("arno/bob", &main3.id, &main3.id).await, Err(GitError::Conflict(_))));
    assert!(matches!(repo.fast_forward("arno/bob", &base.id, &side2.id).await, Ok(())));
    assert!(
        matches!(repo.fast_forward("arno/bob", &side2.id, &main3.id).await, Err(GitError::Conflict(_))),
        "not a descendant"
    );
    assert_eq!(repo.resolve("arno/bob").await.unwrap(), side2.id);
    git(&path, &["fsck", "--strict", "--no-progress"]);
}

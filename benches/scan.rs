//! Scanning a large repository: N files (default 10,000; `BENCH_SCAN_FILES`) of which a fifth are
//! component specs (2,000), committed with the local provider. Measures the project's first scan
//! (every spec read and parsed), a re-scan with nothing changed, a re-scan after a commit that
//! changes 20 specs (the incremental path), and a `GET …/components` of all 2,000.
//!
//! Run: `cargo bench --bench scan` (figures go to docs/performance.md).

use std::time::Instant;

use arno::audit::{Actor, Origin};
use arno::config::Config;
use arno::git::local::LocalProvider;
use arno::git::{Change, CommitRequest, GitProvider, Person};
use arno::projects::{self, NewProject, RepositoryChoice, Visibility};

mod common;

use common::spec;

fn main() -> anyhow::Result<()> {
    let files = common::scan_files();
    let specs = files / 5;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let roots = dir.path().join("roots");
        std::fs::create_dir_all(&roots)?;
        let repo_path = roots.join("big.git");
        let author = Person { name: "Bench".into(), email: "bench@example.com".into() };

        let started = Instant::now();
        let repo = LocalProvider::init(&repo_path, "main").map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut changes =
            vec![Change::Upsert { path: ".arno/config.json".into(), content: b"{\"version\":1}\n".to_vec() }];
        for i in 0..specs {
            changes.push(Change::Upsert {
                path: format!("Design_system/group{}/C{i}.md", i % 40),
                content: spec(i, "Buy").into_bytes(),
            });
        }
        for i in 0..(files - specs) {
            let content = format!("export const C{i} = () => null; // {}\n", "x".repeat(i % 200));
            changes.push(Change::Upsert {
                path: format!("src/components/dir{}/C{i}.tsx", i % 100),
                content: content.into_bytes(),
            });
        }
        let request = |parent: String, changes| CommitRequest {
            branch: "main".into(),
            parent,
            message: "bench".into(),
            author: author.clone(),
            changes,
        };
        let first = repo.commit(request(String::new(), changes)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("setup: committed {files} files ({specs} specs) in {:.2} s", started.elapsed().as_secs_f64());

        let mut env = std::collections::BTreeMap::new();
        env.insert("ARNO_CONFIG".to_owned(), String::new());
        env.insert("ARNO_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
        env.insert("ARNO_GIT_LOCAL_ROOTS".to_owned(), roots.display().to_string());
        let config = Config::load(&env).map_err(|e| anyhow::anyhow!("{e}"))?.config;
        let app = arno::app::build(config).await?;
        let state = app.state.clone();
        let origin = Origin::system();
        let auth = common::admin(&state.db).await?;

        // First scan (inside create): every spec read and parsed.
        let started = Instant::now();
        let new = NewProject {
            name: "Big".into(),
            slug: None,
            visibility: Visibility::Private,
            repository: RepositoryChoice::ExistingLocal(repo_path.display().to_string()),
        };
        let project = projects::create(&state.db, &state.config, &state.repos, &auth, &origin, new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let first_s = started.elapsed().as_secs_f64();
        let provider = state.repos.get(&project).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let on =
            projects::authorize_on::<arno::auth::access::Scan>(&state.db, &auth, &origin, &project.id, "project.scan")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;

        let started = Instant::now();
        let r = projects::scan::scan(&state.db, provider.as_ref(), &on, Actor::of(&auth), &origin)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let unchanged_s = started.elapsed().as_secs_f64();
        assert_eq!(r.parsed, 0);

        let changes: Vec<Change> = (0..20)
            .map(|k| {
                let i = k * 97;
                Change::Upsert {
                    path: format!("Design_system/group{}/C{i}.md", i % 40),
                    content: spec(i, "Pay").into_bytes(),
                }
            })
            .collect();
        repo.commit(request(first.id.clone(), changes)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        let r = projects::scan::scan(&state.db, provider.as_ref(), &on, Actor::of(&auth), &origin)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let incremental_s = started.elapsed().as_secs_f64();
        assert_eq!((r.parsed, r.components), (20, specs));

        let started = Instant::now();
        let mut conn = state.db.pool().acquire().await?;
        let rows = projects::store::components(&mut conn, &project.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let list: Vec<_> = rows.iter().map(|r| projects::routes::summarize(r, &rows).0).collect();
        let body = serde_json::to_vec(&list)?;
        let list_s = started.elapsed().as_secs_f64();

        println!("| first scan ({files} files, {specs} specs read and parsed) | {first_s:.2} s |");
        println!("| re-scan, nothing changed | {unchanged_s:.3} s |");
        println!("| re-scan after a commit changing 20 specs | {incremental_s:.3} s |");
        println!("| component list of {specs} ({:.1} MiB JSON) | {list_s:.3} s |", body.len() as f64 / 1048576.0);
        anyhow::Ok(())
    })
}

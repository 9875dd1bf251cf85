//! What the benchmarks share: an Admin with an API token, and the component specs the scan
//! benchmarks commit. Each benchmark includes this with `mod common;`.
#![allow(dead_code)] // each benchmark uses a part

pub mod live;

use arno::audit::{Actor, Origin};
use arno::db::Db;

/// Files the scan benchmarks commit (`BENCH_SCAN_FILES`, default 10,000; a fifth are specs).
pub fn scan_files() -> usize {
    std::env::var("BENCH_SCAN_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// Component spec number `i`, its `label` prop defaulting to `label`: front matter, prose, three
/// props and an event, about 900 bytes.
pub fn spec(i: usize, label: &str) -> String {
    format!(
        "---\nid: {:08x}-0000-4000-8000-{:012x}\nname: Component {i}\n---\n# Component {i}\n\nSome prose about \
         component {i}, with *emphasis* and a [link](https://example.com).\n\n<!-- arno:props v1 -->\n\
         | id | name | type | default | textEditable |\n|---|---|---|---|---|\n\
         | {:08x}-0001-4000-8000-000000000001 | label | string | \"{label}\" | true |\n\
         | {:08x}-0002-4000-8000-000000000002 | size | 'sm' \\| 'md' | 'md' | false |\n\
         | {:08x}-0003-4000-8000-000000000003 | disabled | boolean | false | false |\n<!-- /arno:props -->\n\n\
         <!-- arno:events v1 -->\n| id | name | payload |\n|---|---|---|\n\
         | {:08x}-0004-4000-8000-000000000004 | onClick | MouseEvent |\n<!-- /arno:events -->\n",
        i, i, i, i, i, i
    )
}

/// An Admin (`email`) and an API token of theirs.
pub async fn admin_token(db: &Db, email: &str) -> anyhow::Result<(arno::auth::User, String)> {
    let admin = arno::auth::create_local_user(
        db,
        arno::auth::NewLocalUser {
            email,
            name: "Bench",
            password: "a long enough password".into(),
            org_role: arno::auth::OrgRole::Admin,
        },
        Actor::System,
        &Origin::system(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut conn = db.pool().acquire().await?;
    let token =
        arno::auth::tokens::create(&mut conn, &admin.id, "bench", None).await.map_err(|e| anyhow::anyhow!("{e}"))?.1;
    Ok((admin, token))
}

/// An Admin as domain functions take a caller.
pub async fn admin(db: &Db) -> anyhow::Result<arno::auth::model::Authenticated> {
    let (_, token) = admin_token(db, "admin@example.com").await?;
    arno::auth::extract::bearer_user(db, &token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("the bench token does not authenticate"))
}

//! Hole 3: an org Auditor given a project role could change things. Auditors read and export;
//! a Member promoted to Auditor loses write everywhere at once, open connections included.

use reqwest::{Method, StatusCode};
use serde_json::json;
use yrs::sync::protocol::{Message, SyncMessage};
use yrs::{Map, ReadTxn, StateVector, Transact};

use crate::support::api;
use crate::workflow::{raw, synced_content, workflow};

#[tokio::test]
async fn an_auditor_with_the_maker_role_changes_nothing() {
    let w = workflow(&[]).await;
    // m2 is a Maker of the project; connected to the workflow before the promotion.
    let mut socket = raw::connect(&w.app.base, &w.project, &w.maker2).await;
    raw::send(&mut socket, Message::Sync(SyncMessage::SyncStep1(StateVector::default()))).await;
    raw::until(&mut socket, raw::is_step2).await.unwrap();

    let mut admin = w.app.admin_browser().await;
    let csrf = admin.session_csrf().await;
    let (m2,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email = 'm2@example.com'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    let r =
        admin.post_form(&format!("/admin/users/{m2}/role"), &[("csrf_token", &csrf), ("org_role", "auditor")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The open connection: its next update is refused and not stored.
    let doc = arno::workflow::filter::new_doc();
    doc.get_or_insert_map("screens").insert(&mut doc.transact_mut(), "audited", "no");
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    raw::send(&mut socket, Message::Sync(SyncMessage::Update(update))).await;
    let answer = raw::until(&mut socket, |m| matches!(m, Message::Auth(_))).await;
    assert!(matches!(answer, Ok(Message::Auth(Some(_)))), "{answer:?}");
    let content = synced_content(&w.app.base, &w.project, &w.maker).await;
    assert!(content["screens"].get("audited").is_none(), "an Auditor wrote the workflow");

    // The JSON API: saving a spec, taking a workflow snapshot, commenting.
    let spec =
        api(Method::GET, &w.app.url("/api/v1/projects/flows/specs/Design_system/Button.md"), Some(&w.maker2), None)
            .await;
    assert_eq!(spec.status, StatusCode::OK, "Auditors read: {}", spec.text);
    let r = api(
        Method::PUT,
        &w.app.url("/api/v1/projects/flows/specs/Design_system/Button.md"),
        Some(&w.maker2),
        Some(json!({"content": format!("{}\nAudited.\n", spec.json()["content"].as_str().unwrap()), "base_version": spec.json()["version"], "session_id": "a"})),
    )
    .await;
    assert_eq!((r.status, r.json()["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
    let r = api(
        Method::POST,
        &w.app.url(&format!("/api/v1/projects/{}/workflow/snapshots", w.project)),
        Some(&w.maker2),
        Some(json!({"label": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let (denied,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE outcome = 'denied' AND actor_id = $1 AND action IN ('spec.save', 'workflow.snapshot', 'workflow.update')",
    )
    .bind(&m2)
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert!(denied >= 3, "every refusal is audited ({denied})");
}

//! The live workflow under load: merged broadcasts against stock Yjs clients.

use super::workflow::{node_clients, synced_content, workflow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_yjs_writers_at_full_speed_converge_through_merged_updates() {
    let w = workflow(&[]).await;
    let clients = w.clients();
    let Some(result) = tokio::task::block_in_place(|| {
        node_clients(&clients, "burst", &[("WRITERS", "4"), ("EDITS", "400"), ("SEED", "20261207")])
    }) else {
        return;
    };
    assert_eq!(result["converged"], true, "{result}");
    assert_eq!(result["screens_match"], true, "no screen lost or revived: {result}");
    let edits = result["edits"].as_u64().unwrap();
    assert_eq!(edits, 1600);
    // The server passed the updates on merged: observers got fewer messages than there were edits.
    for n in result["observer_messages"].as_array().unwrap() {
        let n = n.as_u64().unwrap();
        assert!(n > 0 && n < edits, "an observer received {n} messages for {edits} edits");
    }
    // What the server stored is what the clients converged on.
    let stored = synced_content(&w.app.base, &w.project, &w.maker).await;
    assert_eq!(stored["screens"], result["content"]["screens"]);
    assert_eq!(stored["edges"], result["content"]["edges"]);
}

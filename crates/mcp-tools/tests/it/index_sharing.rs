//! The embedded index is one process at a time: the server opens it for searches,
//! releases it when idle, and reports another holder as busy instead of failing hard.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_releases_the_idle_index_and_reports_another_holder_as_busy() {
    let crm = Crm::with_index().await;
    let client = serve(&crm, Duration::from_millis(300)).await;

    // The first search opens the index; without a model, hybrid answers from sparse.
    let result = call(&client, "search", json!({"query": "orbital mechanics"})).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let answer = result.structured_content.unwrap();
    assert_eq!(answer["mode_used"], "sparse");
    assert!(
        answer["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("no embedding model")
    );
    assert_eq!(answer["hits"].as_array().unwrap().len(), 10);

    // While the server holds it, another process cannot open it; once idle, it can.
    let other = open_within(&crm.index_dir, Duration::from_secs(20)).await;

    // Now the server finds it busy, says so, and the structured tools still work.
    let busy = call(&client, "search", json!({"query": "orbital"})).await;
    assert_eq!(busy.is_error, Some(true));
    let message = text_of(&busy);
    assert!(message.contains("in use by another process"), "{message}");
    let stats = call(&client, "crm_stats", json!({})).await;
    assert_eq!(stats.structured_content.unwrap()["index"]["state"], "busy");
    let found = call(&client, "find_people", json!({"name": "person 3"})).await;
    assert_ne!(found.is_error, Some(true));

    // When the other holder lets go, searches work again.
    drop(other);
    let again = call(
        &client,
        "search",
        json!({"query": "orbital", "mode": "sparse", "limit": 3}),
    )
    .await;
    assert_ne!(again.is_error, Some(true), "{}", text_of(&again));
    assert_eq!(
        again.structured_content.unwrap()["hits"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    client.cancel().await.unwrap();
}

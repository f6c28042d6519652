//! What only the embedded engine has: a directory that survives the process, and a lock.

use index_qdrant::{
    CollectionSpec, CollectionStatus, Index, IndexConfig, IndexError, ScrollRequest, SearchFilter,
    SearchRequest,
};

use crate::support::{DIM, people, sparse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let points = people(500);
    {
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        index
            .ensure_collection(&CollectionSpec::new(DIM), false)
            .await
            .unwrap();
        index.upsert(points.clone()).await.unwrap();
        index
            .set_entity_id("people", &[3], Some("person:1"))
            .await
            .unwrap();
        index.delete_source_rows("people", &[4]).await.unwrap();
        index.optimize().await.unwrap();
        index.upsert(people(2)).await.unwrap();
    }
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    assert!(index.exists().await.unwrap());
    // Warming the page cache runs beside the calls below.
    let warming = index
        .warm_cache()
        .expect("the embedded engine warms its cache");
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 499);
    let info = index.info().await.unwrap();
    assert_eq!(info.dense_dim, DIM);
    assert_eq!(
        info.payload_indexes.len(),
        index_qdrant::PAYLOAD_INDEXES.len()
    );
    let stored = index
        .retrieve(&[points[3].id, points[4].id], true)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload.entity_id.as_deref(), Some("person:1"));
    let hits = index
        .search(&SearchRequest::hybrid(
            points[77].dense.clone(),
            sparse(&[(1077, 1.0)]),
            3,
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[77].id);
    let (files, bytes) = warming.wait();
    assert!(files > 0 && bytes > 0, "{files} files, {bytes} bytes");
    // Reopening with the same spec keeps the data.
    assert_eq!(
        index
            .ensure_collection(&CollectionSpec::new(DIM), false)
            .await
            .unwrap(),
        CollectionStatus::Existing
    );
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 499);
}

#[tokio::test]
async fn a_second_handle_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    first
        .ensure_collection(&CollectionSpec::new(DIM), false)
        .await
        .unwrap();
    let err = match Index::open(IndexConfig::embedded(dir.path())).await {
        Ok(_) => panic!("a second handle opened the same directory"),
        Err(err) => err,
    };
    let text = err.to_string();
    assert!(matches!(err, IndexError::Locked { .. }), "{text}");
    assert!(text.contains("crm_chunks.lock"), "{text}");
    assert!(text.contains("QDRANT_URL"), "{text}");
    // Another collection in the same directory has its own lock.
    let other = Index::open(IndexConfig::embedded(dir.path()).with_collection("other"))
        .await
        .unwrap();
    assert!(!other.exists().await.unwrap());
    drop(first);
    let again = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    assert!(again.exists().await.unwrap());
}

#[tokio::test]
async fn a_directory_that_does_not_load_is_reported_and_recreate_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        index
            .ensure_collection(&CollectionSpec::new(DIM), false)
            .await
            .unwrap();
        index.upsert(people(10)).await.unwrap();
    }
    let shard = dir.path().join("crm_chunks");
    std::fs::write(shard.join("edge_config.json"), b"{ not json").unwrap();
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    let err = index.count(&SearchFilter::default()).await.unwrap_err();
    assert!(err.to_string().contains("does not load"), "{err}");
    let err = index
        .ensure_collection(&CollectionSpec::new(DIM), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("re-create"), "{err}");
    assert_eq!(
        index
            .ensure_collection(&CollectionSpec::new(DIM), true)
            .await
            .unwrap(),
        CollectionStatus::Recreated
    );
    index.upsert(people(3)).await.unwrap();
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 3);
}

#[tokio::test]
async fn an_existing_collection_is_checked_without_loading_it_and_loads_at_first_use() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = with_collection(dir.path()).await;
        index.upsert(people(10)).await.unwrap();
    }
    // A segment that no longer loads: only loading the shard can notice.
    let segments = dir.path().join("crm_chunks").join("segments");
    for segment in std::fs::read_dir(&segments).unwrap() {
        let segment = segment.unwrap().path();
        std::fs::write(segment.join("segment.json"), b"{ not json").unwrap();
    }
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    // The stored config answers this: the shard is not loaded.
    assert_eq!(
        index
            .ensure_collection(&CollectionSpec::new(DIM), false)
            .await
            .unwrap(),
        CollectionStatus::Existing
    );
    // A config that does not match is still refused without loading.
    let err = index
        .ensure_collection(&CollectionSpec::new(DIM + 1), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dimensions"), "{err}");
    // The first operation that needs the shard loads it, and reports what it found.
    let err = index.count(&SearchFilter::default()).await.unwrap_err();
    assert!(err.to_string().contains("does not load"), "{err}");
}

#[tokio::test]
async fn collection_names_cannot_escape_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../x", "a/b", "", "with space"] {
        let err = match Index::open(IndexConfig::embedded(dir.path()).with_collection(bad)).await {
            Ok(_) => panic!("collection {bad:?} was accepted"),
            Err(err) => err,
        };
        assert!(matches!(err, IndexError::InvalidConfig { .. }), "{err}");
    }
}

#[tokio::test]
async fn scroll_with_vectors_returns_normalised_dense_and_sorted_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    index
        .ensure_collection(&CollectionSpec::new(DIM), false)
        .await
        .unwrap();
    let mut points = people(1);
    points[0].sparse = sparse(&[(900, 0.9), (3, 0.3), (77, 0.7)]);
    index.upsert(points.clone()).await.unwrap();
    let page = index
        .scroll(&ScrollRequest {
            limit: 10,
            with_vectors: true,
            ..ScrollRequest::default()
        })
        .await
        .unwrap();
    let vectors = page.points[0].vectors.as_ref().unwrap();
    assert_eq!(vectors.sparse, sparse(&[(3, 0.3), (77, 0.7), (900, 0.9)]));
    let norm: f32 = vectors.dense.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
}

fn closed_wal_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join(index_qdrant::DEFAULT_COLLECTION).join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("closed-")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ahead_log_is_compacted_on_load_and_later_writes_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CollectionSpec {
        wal_segment_bytes: Some(64 * 1024),
        ..CollectionSpec::new(DIM)
    };
    let points = people(2000);
    {
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        index.ensure_collection(&spec, false).await.unwrap();
        for batch in points.chunks(100) {
            index.upsert(batch.to_vec()).await.unwrap();
        }
    }
    let before = closed_wal_segments(dir.path());
    assert!(
        before > 1,
        "the test must write several WAL segments, got {before}"
    );

    {
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        // Opening is lazy: the shard loads (and its log is compacted) at first use.
        assert_eq!(closed_wal_segments(dir.path()), before);
        assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 2000);
        assert_eq!(closed_wal_segments(dir.path()), 1);
        // Operation numbers continue after compaction: updates to points already in a
        // segment must take effect, not be skipped as old.
        index
            .set_entity_id("people", &[5], Some("person:99"))
            .await
            .unwrap();
        let stored = index.retrieve(&[points[5].id], false).await.unwrap();
        assert_eq!(stored[0].payload.entity_id.as_deref(), Some("person:99"));
        index.delete_source_rows("people", &[7]).await.unwrap();
    }

    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 1999);
    let stored = index.retrieve(&[points[5].id], false).await.unwrap();
    assert_eq!(stored[0].payload.entity_id.as_deref(), Some("person:99"));
    index
        .set_entity_id("people", &[6], Some("person:42"))
        .await
        .unwrap();
    drop(index);
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    let stored = index.retrieve(&[points[6].id], false).await.unwrap();
    assert_eq!(stored[0].payload.entity_id.as_deref(), Some("person:42"));
}

/// The collection's stored HNSW degree, and whether it is marked as in bulk mode.
fn stored_graph_degree(dir: &std::path::Path) -> (u64, bool) {
    let collection = dir.join(index_qdrant::DEFAULT_COLLECTION);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(collection.join("edge_config.json")).unwrap())
            .unwrap();
    (
        config["hnsw_config"]["m"].as_u64().unwrap(),
        collection.join("crm-bulk-mode.json").exists(),
    )
}

/// The JSON file `file` of every segment of the default collection in `dir`.
fn segment_json(dir: &std::path::Path, file: &str) -> Vec<serde_json::Value> {
    let segments = dir.join(index_qdrant::DEFAULT_COLLECTION).join("segments");
    std::fs::read_dir(segments)
        .unwrap()
        .map(|segment| {
            let path = segment.unwrap().path().join(file);
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect()
}

/// For every payload index of every segment: whether it is declared on disk, and for
/// every immutable one (large segments) whether it is stored so.
fn payload_indexes_on_disk(dir: &std::path::Path) -> Vec<bool> {
    let mut found = Vec::new();
    for config in segment_json(dir, "payload_index/config.json") {
        for schema in config["indexed_fields"].as_object().unwrap().values() {
            found.push(schema["on_disk"] == true);
        }
        for indexes in config["indexed_types"].as_object().unwrap().values() {
            for index in indexes.as_array().unwrap() {
                if index["mutability"] == "immutable" {
                    found.push(index["storage_type"]["mmap"]["is_on_disk"] == true);
                }
            }
        }
    }
    found
}

/// An index in `dir` with the default collection created.
async fn with_collection(dir: &std::path::Path) -> Index {
    let index = Index::open(IndexConfig::embedded(dir)).await.unwrap();
    index
        .ensure_collection(&CollectionSpec::new(DIM), false)
        .await
        .unwrap();
    index
}

/// Upserts `points` in calls of 2,500, as a sync's batches do.
async fn upsert_in_batches(index: &Index, points: &[index_qdrant::ChunkPoint]) {
    for batch in points.chunks(2_500) {
        index.upsert(batch.to_vec()).await.unwrap();
    }
}

/// Searches every mode for a few of `points` and checks each is found first.
async fn each_is_found(index: &Index, points: &[index_qdrant::ChunkPoint], ids: &[usize]) {
    for &i in ids {
        let rare = sparse(&[(1000 + i as u32, 1.0)]);
        for request in [
            SearchRequest::dense(points[i].dense.clone(), 1),
            SearchRequest::sparse(rare.clone(), 1),
            SearchRequest::hybrid(points[i].dense.clone(), rare, 1),
        ] {
            let hits = index.search(&request).await.unwrap();
            assert_eq!(hits[0].id, points[i].id, "point {i}, {:?}", request.mode);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_seals_segments_without_graphs_and_optimize_builds_them() {
    let dir = tempfile::tempdir().unwrap();
    let index = with_collection(dir.path()).await;
    assert_eq!(stored_graph_degree(dir.path()), (16, false));
    // Every point shares token 7: the posting list sealing keeps short.
    let points = people(40_000);
    upsert_in_batches(&index, &points).await;
    assert_eq!(stored_graph_degree(dir.path()), (0, true), "in bulk mode");
    let info = index.info().await.unwrap();
    assert!(info.segments_count >= 3, "sealed twice: {info:?}");
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 40_000);
    // Sealed segments, without graphs, are searched exactly.
    each_is_found(&index, &points, &[0, 16_383, 16_384, 39_999]).await;
    let outcome = index.optimize().await.unwrap();
    assert!(outcome.optimized);
    assert_eq!(
        stored_graph_degree(dir.path()),
        (16, false),
        "settings restored"
    );
    let info = index.info().await.unwrap();
    assert_eq!(info.points_count, 40_000);
    assert!(info.segments_count < 3, "sealed segments merged: {info:?}");
    // Payload indexes are memory-mapped, not loaded in RAM when the collection opens.
    let on_disk = payload_indexes_on_disk(dir.path());
    assert!(
        !on_disk.is_empty() && on_disk.iter().all(|&d| d),
        "{on_disk:?}"
    );
    each_is_found(&index, &points, &[0, 16_383, 16_384, 39_999]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_bulk_mode_gets_its_settings_back_when_next_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let points = people(20_000);
    {
        let index = with_collection(dir.path()).await;
        upsert_in_batches(&index, &points).await;
        // Dropped without the optimizer pass that ends bulk mode.
    }
    assert_eq!(stored_graph_degree(dir.path()), (0, true));
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    // Loaded at first use, and the settings come back then.
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 20_000);
    assert_eq!(stored_graph_degree(dir.path()), (16, false));
    each_is_found(&index, &points, &[5, 19_999]).await;
    index.optimize().await.unwrap();
    assert_eq!(index.info().await.unwrap().points_count, 20_000);
    each_is_found(&index, &points, &[5, 19_999]).await;
    // A short write after that stays out of bulk mode.
    index.upsert(people(10)).await.unwrap();
    assert_eq!(stored_graph_degree(dir.path()), (16, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflushed_upserts_seal_beside_the_writes_and_survive_a_flush_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let points = people(30_000);
    {
        let index = with_collection(dir.path()).await;
        // Batches of 1,000 go in unflushed; seals start on their own thread every
        // few thousand points while the next batches are written and searched.
        for (i, batch) in points.chunks(1_000).enumerate() {
            assert_eq!(
                index.upsert_unflushed(batch.to_vec()).await.unwrap(),
                batch.len()
            );
            if i % 7 == 3 {
                each_is_found(&index, &points, &[i * 1_000]).await;
            }
        }
        // A durable write waits for a running seal, then flushes everything.
        let extra = people(30_001).split_off(30_000);
        index.upsert(extra).await.unwrap();
        index.flush().await.unwrap();
        let info = index.info().await.unwrap();
        // How many seals ran depends on how long each took (the appendable segment
        // grows while one runs); at least one always does.
        assert!(info.segments_count >= 2, "sealed: {info:?}");
        assert_eq!(stored_graph_degree(dir.path()), (0, true), "in bulk mode");
        assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 30_001);
        // An empty call is no call.
        assert_eq!(index.upsert_unflushed(Vec::new()).await.unwrap(), 0);
    }
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 30_001);
    each_is_found(&index, &points, &[0, 4_095, 4_096, 17_777, 29_999]).await;
    index.optimize().await.unwrap();
    assert_eq!(index.info().await.unwrap().points_count, 30_001);
    each_is_found(&index, &points, &[0, 29_999]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflushed_points_are_validated_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let index = with_collection(dir.path()).await;
    let mut points = people(3);
    points[2].dense.pop();
    let err = index.upsert_unflushed(points).await.unwrap_err();
    assert!(
        matches!(err, IndexError::InvalidPoint { source_id: 2, .. }),
        "{err}"
    );
    index.flush().await.unwrap();
    assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 0);
}

/// How each sealed segment stores its search structures, from its `segment.json`: the
/// sparse index type, whether the HNSW graph is on disk, the dense storage type and
/// whether the int8 copy is kept in RAM.
fn sealed_storage(dir: &std::path::Path) -> Vec<(String, bool, String, bool)> {
    let mut found = Vec::new();
    for segment in segment_json(dir, "segment.json") {
        let config = &segment["config"];
        let sparse = config["sparse_vector_data"]["bm25"]["index"]["index_type"]
            .as_str()
            .unwrap()
            .to_owned();
        if sparse == "MutableRam" {
            continue; // the appendable segment
        }
        let dense = &config["vector_data"]["dense"];
        found.push((
            sparse,
            dense["index"]["options"]["on_disk"] == true,
            dense["storage_type"].as_str().unwrap().to_owned(),
            dense["quantization_config"]["scalar"]["always_ram"] == true,
        ));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_structures_are_memory_mapped_unless_the_spec_keeps_them_in_memory() {
    let in_memory = CollectionSpec {
        dense_on_disk: false,
        index_on_disk: false,
        ..CollectionSpec::new(DIM)
    };
    let cases = [
        (CollectionSpec::new(DIM), ("Mmap", true, "Mmap", false)),
        (in_memory, ("ImmutableRam", false, "InRamChunkedMmap", true)),
    ];
    let points = people(10_000);
    for (spec, (sparse_type, graph_on_disk, dense_type, int8_in_ram)) in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(IndexConfig::embedded(dir.path()))
                .await
                .unwrap();
            index.ensure_collection(&spec, false).await.unwrap();
            upsert_in_batches(&index, &points).await;
            let sealed = sealed_storage(dir.path());
            assert!(!sealed.is_empty(), "a 10,000-point write seals");
            for (sparse, graph, dense, int8) in sealed {
                assert_eq!(
                    (sparse.as_str(), graph, dense.as_str(), int8),
                    (sparse_type, graph_on_disk, dense_type, int8_in_ram),
                    "{spec:?}"
                );
            }
            index.optimize().await.unwrap();
            each_is_found(&index, &points, &[0, 4_095, 9_999]).await;
        }
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        assert_eq!(index.count(&SearchFilter::default()).await.unwrap(), 10_000);
        each_is_found(&index, &points, &[1, 5_000, 9_998]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_from_empty_ends_as_one_segment_and_later_writes_leave_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A cap far below the data: the optimizer would otherwise split it in many.
    let spec = CollectionSpec {
        max_segment_kb: Some(100),
        ..CollectionSpec::new(DIM)
    };
    let index = Index::open(IndexConfig::embedded(dir.path()))
        .await
        .unwrap();
    index.ensure_collection(&spec, false).await.unwrap();
    let points = people(30_000);
    upsert_in_batches(&index, &points[..20_000]).await;
    assert!(index.info().await.unwrap().segments_count >= 4, "sealed");
    index.optimize().await.unwrap();
    let info = index.info().await.unwrap();
    assert!(
        info.segments_count <= 2,
        "one segment (and an appendable one): {info:?}"
    );
    assert_eq!(
        stored_graph_degree(dir.path()),
        (16, false),
        "settings restored"
    );
    each_is_found(&index, &points, &[0, 9_999, 19_999]).await;

    // A long write into the built collection seals segments of its own; the optimizer
    // pass after it keeps the cap (merging everything again would rebuild every graph).
    upsert_in_batches(&index, &points[20_000..]).await;
    index.optimize().await.unwrap();
    let info = index.info().await.unwrap();
    assert_eq!(info.points_count, 30_000);
    assert!(info.segments_count >= 3, "the cap holds: {info:?}");
    each_is_found(&index, &points, &[1, 19_998, 20_000, 29_999]).await;
}

//! One suite, both engines: every test here runs against the embedded engine (with one
//! shard, and with three), and against a Qdrant server when `QDRANT_URL` is set.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use index_qdrant::{
    ChunkId, ChunkPoint, CollectionSpec, CollectionStatus, IndexError, PAYLOAD_INDEXES,
    PointSelector, ScrollRequest, SearchFilter, SearchMode, SearchRequest, SparseVector,
};
use serde_json::{Map, Value, json};

use crate::support::{DIM, Harness, at_cosine, normalised, payload, people, point, sparse, spread};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = crate::support::Harness::embedded().await;
                    super::$name(&harness).await;
                }
            )*
        }
        mod embedded_sharded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = crate::support::Harness::embedded_sharded(3).await;
                    super::$name(&harness).await;
                }
            )*
        }
        mod server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = crate::support::Harness::server(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&harness).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    create_recreate_and_info,
    dimension_mismatch_is_a_specific_error,
    calls_before_the_collection_exists_say_so,
    upsert_is_idempotent,
    payload_round_trips_every_field,
    deletes_by_id_row_and_stale_chunk,
    set_entity_id_keeps_vectors,
    set_payload_fields_adds_extras_and_refuses_typed_fields,
    dense_search_finds_the_point_equal_to_the_query,
    sparse_search_finds_the_rare_token,
    hybrid_rrf_matches_a_hand_computation,
    every_filter_restricts_every_mode,
    date_range_is_inclusive_and_skips_undated_points,
    grouped_search_returns_best_chunk_per_row,
    grouped_search_widens_past_a_crowding_row,
    bad_points_are_refused_by_name_and_nothing_is_written,
    empty_sparse_vectors_are_allowed,
    bad_queries_are_refused,
    scroll_pages_through_everything_once,
    large_upsert_is_split_into_batches,
    concurrent_searches_while_upserting,
    optimize_keeps_every_point,
    in_memory_collection_searches_like_any_other,
    dense_scores_are_exact_cosines_after_the_int8_copy_is_built,
);

fn ids_of(hits: &[index_qdrant::SearchHit]) -> Vec<ChunkId> {
    hits.iter().map(|h| h.id).collect()
}

async fn create_recreate_and_info(h: &Harness) {
    let spec = h.spec(DIM);
    assert!(!h.index.exists().await.unwrap());
    assert_eq!(
        h.index.ensure_collection(&spec, false).await.unwrap(),
        CollectionStatus::Created
    );
    assert!(h.index.exists().await.unwrap());
    assert_eq!(
        h.index.ensure_collection(&spec, false).await.unwrap(),
        CollectionStatus::Existing
    );
    h.index.upsert(people(3)).await.unwrap();

    let info = h.index.info().await.unwrap();
    assert_eq!(info.points_count, 3);
    assert_eq!(info.dense_dim, DIM);
    assert_eq!(info.collection, h.index.collection());
    for (field, kind) in PAYLOAD_INDEXES {
        assert!(
            info.payload_indexes.contains(&((*field).to_owned(), *kind)),
            "payload index {field} missing from {:?}",
            info.payload_indexes
        );
    }

    assert_eq!(
        h.index.ensure_collection(&spec, true).await.unwrap(),
        CollectionStatus::Recreated
    );
    assert_eq!(h.index.count(&SearchFilter::default()).await.unwrap(), 0);
    assert!(h.index.drop_collection().await.unwrap());
    assert!(!h.index.exists().await.unwrap());
    // Recreate of a missing collection simply creates it.
    assert_eq!(
        h.index.ensure_collection(&spec, true).await.unwrap(),
        CollectionStatus::Created
    );
}

async fn dimension_mismatch_is_a_specific_error(h: &Harness) {
    h.create().await;
    let err = h
        .index
        .ensure_collection(&h.spec(DIM * 2), false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, IndexError::CollectionMismatch { .. }),
        "{text}"
    );
    assert!(text.contains(&format!("{DIM} dimensions")), "{text}");
    assert!(text.contains(&format!("{} dimensions", DIM * 2)), "{text}");
    assert!(text.contains(h.index.collection()), "{text}");
    // The collection is untouched and still usable at its own size.
    h.index.upsert(people(2)).await.unwrap();
    // Recreate switches the size.
    h.index
        .ensure_collection(&h.spec(DIM * 2), true)
        .await
        .unwrap();
    assert_eq!(h.index.info().await.unwrap().dense_dim, DIM * 2);
    assert_eq!(h.index.count(&SearchFilter::default()).await.unwrap(), 0);
}

async fn calls_before_the_collection_exists_say_so(h: &Harness) {
    let missing = |err: IndexError| {
        assert!(
            matches!(err, IndexError::CollectionMissing { .. }),
            "expected CollectionMissing, got {err}"
        );
    };
    missing(h.index.upsert(people(1)).await.unwrap_err());
    missing(
        h.index
            .search(&SearchRequest::dense(spread(1), 3))
            .await
            .unwrap_err(),
    );
    missing(h.index.count(&SearchFilter::default()).await.unwrap_err());
    missing(h.index.info().await.unwrap_err());
}

async fn upsert_is_idempotent(h: &Harness) {
    h.create().await;
    let points = people(50);
    assert_eq!(h.index.upsert(points.clone()).await.unwrap(), 50);
    assert_eq!(h.index.upsert(points.clone()).await.unwrap(), 50);
    assert_eq!(h.index.count(&SearchFilter::default()).await.unwrap(), 50);

    // Writing the same id with new content replaces it.
    let mut changed = points[7].clone();
    changed.payload.title = "renamed".to_owned();
    changed.dense = spread(999);
    h.index.upsert(vec![changed.clone()]).await.unwrap();
    assert_eq!(h.index.count(&SearchFilter::default()).await.unwrap(), 50);
    let stored = h.index.retrieve(&[changed.id], true).await.unwrap();
    assert_eq!(stored[0].payload.title, "renamed");
    let dense = &stored[0].vectors.as_ref().unwrap().dense;
    for (got, want) in dense.iter().zip(normalised(&spread(999))) {
        assert!((got - want).abs() < 1e-5, "{dense:?}");
    }
}

async fn payload_round_trips_every_field(h: &Harness) {
    h.create().await;
    let mut full = payload("interactions", 42, 3);
    full.entity_id = Some("person:17".to_owned());
    full.kind = "email".to_owned();
    full.title = "Réunion ✉️ — שלום — 会议 — e\u{301}".to_owned();
    // A megabyte of mixed text, with quotes, backslashes, a NUL and control characters.
    let block = "Ünïcödé \"quoted\" \\back\\slash\u{0}\t\n🦀 ";
    full.text = block.repeat(1024 * 1024 / block.len() + 1);
    full.organization_id = Some(-9);
    full.occurred_at = Some("2026-06-05T13:55:12.123Z".to_owned());
    full.updated_at = "2026-06-06T00:00:00Z".to_owned();
    full.content_hash = "a".repeat(64);
    full.extra.insert("lang".to_owned(), json!("fr"));
    full.extra.insert("tags".to_owned(), json!(["a", "b"]));
    let mut bare = payload("people", 1, 0);
    bare.entity_id = None;
    bare.organization_id = None;
    bare.occurred_at = None;
    bare.title = String::new();
    bare.text = String::new();

    let points = vec![
        ChunkPoint::new(spread(1), sparse(&[(1, 1.0)]), full.clone()),
        ChunkPoint::new(spread(2), sparse(&[(2, 1.0)]), bare.clone()),
    ];
    let ids: Vec<ChunkId> = points.iter().map(|p| p.id).collect();
    h.index.upsert(points).await.unwrap();

    let stored = h.index.retrieve(&ids, false).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].payload, full);
    assert_eq!(stored[1].payload, bare);
    assert!(stored[0].vectors.is_none());

    let page = h
        .index
        .scroll(&ScrollRequest {
            limit: 10,
            ..ScrollRequest::default()
        })
        .await
        .unwrap();
    let by_id: Vec<_> = page.points.iter().filter(|p| p.id == ids[0]).collect();
    assert_eq!(by_id[0].payload, full);

    let hits = h
        .index
        .search(&SearchRequest::dense(spread(1), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].payload, full);
}

async fn deletes_by_id_row_and_stale_chunk(h: &Harness) {
    h.create().await;
    let mut points = Vec::new();
    for row in 1..=4 {
        for chunk in 0..5 {
            points.push(point(
                "interactions",
                row,
                chunk,
                spread((row * 10 + i64::from(chunk)) as u64),
                sparse(&[(chunk, 1.0)]),
            ));
        }
    }
    // Same ids in another table must never be touched by row deletes.
    for chunk in 0..2 {
        points.push(point(
            "deals",
            1,
            chunk,
            spread(900 + u64::from(chunk)),
            sparse(&[(1, 1.0)]),
        ));
    }
    h.index.upsert(points).await.unwrap();
    let all = SearchFilter::default();
    assert_eq!(h.index.count(&all).await.unwrap(), 22);

    h.index
        .delete_points(&[
            ChunkId::new("interactions", 1, 0),
            ChunkId::new("nope", 1, 0),
        ])
        .await
        .unwrap();
    assert_eq!(h.index.count(&all).await.unwrap(), 21);

    h.index
        .delete_source_rows("interactions", &[1, 2])
        .await
        .unwrap();
    assert_eq!(h.index.count(&all).await.unwrap(), 12);
    let deals = SearchFilter {
        source_tables: vec!["deals".into()],
        ..SearchFilter::default()
    };
    assert_eq!(h.index.count(&deals).await.unwrap(), 2);

    // Row 3 shrinks to 2 chunks.
    h.index
        .delete_chunks_from("interactions", 3, 2)
        .await
        .unwrap();
    let left: BTreeSet<u32> = h
        .index
        .scroll(&ScrollRequest {
            limit: 100,
            filter: SearchFilter {
                source_tables: vec!["interactions".into()],
                ..SearchFilter::default()
            },
            ..ScrollRequest::default()
        })
        .await
        .unwrap()
        .points
        .iter()
        .filter(|p| p.payload.source_id == 3)
        .map(|p| p.payload.chunk_index)
        .collect();
    assert_eq!(left, BTreeSet::from([0, 1]));
    assert_eq!(h.index.count(&all).await.unwrap(), 9);
    // Row 4 still has all five.
    let row4 = h
        .index
        .retrieve(
            &(0..5)
                .map(|c| ChunkId::new("interactions", 4, c))
                .collect::<Vec<_>>(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(row4.len(), 5);
}

async fn set_entity_id_keeps_vectors(h: &Harness) {
    h.create().await;
    let points = vec![
        point("people", 1, 0, spread(1), sparse(&[(1, 0.5), (2, 0.25)])),
        point("people", 1, 1, spread(2), sparse(&[(3, 0.5)])),
        point("people", 2, 0, spread(3), sparse(&[(4, 0.5)])),
    ];
    let ids: Vec<ChunkId> = points.iter().map(|p| p.id).collect();
    h.index.upsert(points).await.unwrap();
    let before = h.index.retrieve(&ids, true).await.unwrap();

    h.index
        .set_entity_id("people", &[1], Some("person:99"))
        .await
        .unwrap();
    let after = h.index.retrieve(&ids, true).await.unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.vectors, a.vectors, "vectors of {} changed", b.id);
        assert_eq!(b.payload.text, a.payload.text);
        assert_eq!(b.payload.content_hash, a.payload.content_hash);
    }
    assert_eq!(after[0].payload.entity_id.as_deref(), Some("person:99"));
    assert_eq!(after[1].payload.entity_id.as_deref(), Some("person:99"));
    assert_eq!(after[2].payload.entity_id.as_deref(), Some("person:2"));

    let by_entity = SearchFilter {
        entity_ids: vec!["person:99".into()],
        ..SearchFilter::default()
    };
    assert_eq!(h.index.count(&by_entity).await.unwrap(), 2);

    h.index.set_entity_id("people", &[1], None).await.unwrap();
    let cleared = h.index.retrieve(&ids[..1], true).await.unwrap();
    assert_eq!(cleared[0].payload.entity_id, None);
    assert_eq!(cleared[0].vectors, before[0].vectors);
    assert_eq!(h.index.count(&by_entity).await.unwrap(), 0);
}

async fn set_payload_fields_adds_extras_and_refuses_typed_fields(h: &Harness) {
    h.create().await;
    let points = people(3);
    let ids: Vec<ChunkId> = points.iter().map(|p| p.id).collect();
    h.index.upsert(points).await.unwrap();

    let fields = Map::from_iter([("reviewed".to_owned(), json!(true))]);
    h.index
        .set_payload_fields(PointSelector::Ids(vec![ids[0]]), fields)
        .await
        .unwrap();
    let fields = Map::from_iter([("batch".to_owned(), json!("b7"))]);
    h.index
        .set_payload_fields(
            PointSelector::SourceRows {
                source_table: "people".into(),
                source_ids: vec![1, 2],
            },
            fields,
        )
        .await
        .unwrap();
    let stored = h.index.retrieve(&ids, false).await.unwrap();
    assert_eq!(stored[0].payload.extra.get("reviewed"), Some(&json!(true)));
    assert_eq!(stored[0].payload.extra.get("batch"), None);
    assert_eq!(stored[1].payload.extra.get("batch"), Some(&json!("b7")));
    assert_eq!(stored[2].payload.extra.get("batch"), Some(&json!("b7")));
    assert_eq!(stored[1].payload.title, "people 1");

    let typed = Map::from_iter([("source_id".to_owned(), json!("oops"))]);
    let err = h
        .index
        .set_payload_fields(PointSelector::Ids(ids.clone()), typed)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("source_id"), "{err}");
    assert!(matches!(err, IndexError::InvalidRequest { .. }), "{err}");
}

async fn dense_search_finds_the_point_equal_to_the_query(h: &Harness) {
    h.create().await;
    let points = people(200);
    h.index.upsert(points.clone()).await.unwrap();
    for target in [0usize, 57, 199] {
        let hits = h
            .index
            .search(&SearchRequest::dense(points[target].dense.clone(), 5))
            .await
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].id, points[target].id);
        assert!(
            (hits[0].score - 1.0).abs() < 1e-4,
            "score {}",
            hits[0].score
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // Cosine ignores the query's length.
    let scaled: Vec<f32> = points[57].dense.iter().map(|x| x * 40.0).collect();
    let hits = h
        .index
        .search(&SearchRequest::dense(scaled, 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[57].id);
}

async fn sparse_search_finds_the_rare_token(h: &Harness) {
    h.create().await;
    let mut points = people(100);
    // Point 33 alone has token 424242.
    points[33].sparse = sparse(&[(7, 1.0), (424_242, 0.3)]);
    h.index.upsert(points.clone()).await.unwrap();

    let hits = h
        .index
        .search(&SearchRequest::sparse(sparse(&[(424_242, 1.0)]), 10))
        .await
        .unwrap();
    assert_eq!(ids_of(&hits), vec![points[33].id]);

    // With a common token in the query, IDF makes the rare one decide the ranking.
    let hits = h
        .index
        .search(&SearchRequest::sparse(
            sparse(&[(7, 1.0), (424_242, 1.0)]),
            5,
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[33].id);
    assert_eq!(hits.len(), 5);
    // A token nobody has matches nothing.
    let hits = h
        .index
        .search(&SearchRequest::sparse(sparse(&[(5, 1.0)]), 5))
        .await
        .unwrap();
    assert!(hits.is_empty());
}

async fn hybrid_rrf_matches_a_hand_computation(h: &Harness) {
    h.create().await;
    // Dense ranking for query e0: X, a, b, Y, c. Sparse ranking for token 5: a, b, c, Y
    // (X has no token 5). With prefetch limit 4 the dense prefetch is X, a, b, Y.
    let named = [
        ("X", at_cosine(1.0), sparse(&[(9, 1.0)])),
        ("a", at_cosine(0.9), sparse(&[(5, 4.0)])),
        ("b", at_cosine(0.8), sparse(&[(5, 3.0)])),
        ("Y", at_cosine(0.7), sparse(&[(5, 1.0)])),
        ("c", at_cosine(0.1), sparse(&[(5, 2.0)])),
    ];
    let points: Vec<ChunkPoint> = named
        .iter()
        .enumerate()
        .map(|(i, (_, dense, sp))| point("deals", i as i64, 0, dense.clone(), sp.clone()))
        .collect();
    h.index.upsert(points.clone()).await.unwrap();
    let id = |name: &str| {
        let position = named.iter().position(|(n, _, _)| *n == name).unwrap();
        points[position].id
    };
    let dense_rank = ["X", "a", "b", "Y"];
    let sparse_rank = ["a", "b", "c", "Y"];
    // Qdrant's RRF: a hit at 0-based position p of a prefetch scores 1 / (k + p).
    let expected = |k: f32| {
        let mut scores: Vec<(ChunkId, f32)> = ["X", "a", "b", "Y", "c"]
            .iter()
            .map(|name| {
                let score: f32 = [&dense_rank[..], &sparse_rank[..]]
                    .iter()
                    .filter_map(|rank| rank.iter().position(|n| n == name))
                    .map(|p| 1.0 / (k + p as f32))
                    .sum();
                (id(name), score)
            })
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        scores
    };
    for (k, order) in [
        (60u32, ["a", "b", "Y", "X", "c"]),
        (2, ["a", "b", "X", "Y", "c"]),
    ] {
        let request = SearchRequest::hybrid(at_cosine(1.0), sparse(&[(5, 1.0)]), 5)
            .with_rrf_k(k)
            .with_prefetch_limit(4);
        let hits = h.index.search(&request).await.unwrap();
        let want = expected(k as f32);
        let got: Vec<(ChunkId, f32)> = hits.iter().map(|hit| (hit.id, hit.score)).collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            order.iter().map(|n| id(n)).collect::<Vec<_>>(),
            "k={k}"
        );
        for ((got_id, got_score), (want_id, want_score)) in got.iter().zip(&want) {
            assert_eq!(got_id, want_id, "k={k}");
            assert!(
                (got_score - want_score).abs() < 1e-6,
                "k={k}: score {got_score} != {want_score}"
            );
        }
    }
    // The default k is 60, sent explicitly.
    let default =
        SearchRequest::hybrid(at_cosine(1.0), sparse(&[(5, 1.0)]), 5).with_prefetch_limit(4);
    assert_eq!(default.rrf_k, 60);
    let hits = h.index.search(&default).await.unwrap();
    assert_eq!(hits[2].id, id("Y"));
}

/// Points spread over every filtered field, all near the same dense and sparse query.
fn filter_fixture() -> Vec<ChunkPoint> {
    let mut points = Vec::new();
    let tables = ["people", "organizations", "interactions", "deals"];
    for i in 0..40i64 {
        let table = tables[(i % 4) as usize];
        let mut p = point(
            table,
            i,
            0,
            at_cosine(1.0 - i as f32 / 100.0),
            sparse(&[(5, 1.0 + i as f32)]),
        );
        p.payload.kind = if table == "interactions" {
            ["meeting", "email"][(i / 4 % 2) as usize].to_owned()
        } else {
            p.payload.kind
        };
        p.payload.organization_id = (i % 3 != 0).then_some(i % 5);
        p.payload.entity_id = Some(format!("e{}", i % 6));
        points.push(p);
    }
    points
}

async fn every_filter_restricts_every_mode(h: &Harness) {
    h.create().await;
    let points = filter_fixture();
    h.index.upsert(points.clone()).await.unwrap();
    type Keep = Box<dyn Fn(&ChunkPoint) -> bool>;
    let filters: Vec<(SearchFilter, Keep)> = vec![
        (
            SearchFilter {
                kinds: vec!["email".into(), "person".into()],
                ..SearchFilter::default()
            },
            Box::new(|p| p.payload.kind == "email" || p.payload.kind == "person"),
        ),
        (
            SearchFilter {
                source_tables: vec!["organizations".into()],
                ..SearchFilter::default()
            },
            Box::new(|p| p.payload.source_table == "organizations"),
        ),
        (
            SearchFilter {
                entity_ids: vec!["e1".into(), "e4".into()],
                ..SearchFilter::default()
            },
            Box::new(|p| matches!(p.payload.entity_id.as_deref(), Some("e1" | "e4"))),
        ),
        (
            SearchFilter {
                organization_ids: vec![2, 0],
                ..SearchFilter::default()
            },
            Box::new(|p| matches!(p.payload.organization_id, Some(2 | 0))),
        ),
        (
            SearchFilter {
                source_tables: vec!["interactions".into(), "people".into()],
                entity_ids: vec!["e0".into(), "e2".into(), "e4".into()],
                organization_ids: vec![1, 2, 3, 4],
                ..SearchFilter::default()
            },
            Box::new(|p| {
                matches!(p.payload.source_table.as_str(), "interactions" | "people")
                    && matches!(p.payload.entity_id.as_deref(), Some("e0" | "e2" | "e4"))
                    && matches!(p.payload.organization_id, Some(1..=4))
            }),
        ),
    ];
    for (filter, keep) in &filters {
        let want: HashSet<ChunkId> = points.iter().filter(|p| keep(p)).map(|p| p.id).collect();
        assert!(!want.is_empty() && want.len() < points.len(), "{filter:?}");
        assert_eq!(
            h.index.count(filter).await.unwrap(),
            want.len() as u64,
            "{filter:?}"
        );
        for mode in [SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid] {
            let mut request = SearchRequest::hybrid(at_cosine(1.0), sparse(&[(5, 1.0)]), 100)
                .with_filter(filter.clone());
            request.mode = mode;
            let got: HashSet<ChunkId> = h
                .index
                .search(&request)
                .await
                .unwrap()
                .iter()
                .map(|hit| hit.id)
                .collect();
            assert_eq!(got, want, "{mode:?} {filter:?}");
        }
        let scrolled: HashSet<ChunkId> = h
            .index
            .scroll(&ScrollRequest {
                filter: filter.clone(),
                limit: 100,
                ..ScrollRequest::default()
            })
            .await
            .unwrap()
            .points
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(scrolled, want, "scroll {filter:?}");
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

async fn date_range_is_inclusive_and_skips_undated_points(h: &Harness) {
    h.create().await;
    let dates = [
        Some("2026-01-01T00:00:00Z"),
        Some("2026-03-15T12:30:00.500Z"),
        Some("2026-03-15T12:30:00.501Z"),
        Some("2026-06-05T13:55:12+02:00"),
        Some("2027-01-01T00:00:00Z"),
        None,
    ];
    let points: Vec<ChunkPoint> = dates
        .iter()
        .enumerate()
        .map(|(i, date)| {
            let mut p = point(
                "interactions",
                i as i64,
                0,
                at_cosine(0.9),
                sparse(&[(5, 1.0)]),
            );
            p.payload.occurred_at = date.map(str::to_owned);
            p
        })
        .collect();
    h.index.upsert(points.clone()).await.unwrap();
    let range = |from: Option<&str>, to: Option<&str>| SearchFilter {
        date_from: from.map(at),
        date_to: to.map(at),
        ..SearchFilter::default()
    };
    let cases: Vec<(SearchFilter, Vec<usize>)> = vec![
        (
            range(Some("2026-03-15T12:30:00.500Z"), None),
            vec![1, 2, 3, 4],
        ),
        (range(None, Some("2026-03-15T12:30:00.500Z")), vec![0, 1]),
        (
            range(
                Some("2026-03-15T12:30:00.501Z"),
                Some("2026-06-05T11:55:12Z"),
            ),
            vec![2, 3],
        ),
        (
            range(Some("2026-06-05T11:55:13Z"), Some("2026-12-31T23:59:59Z")),
            vec![],
        ),
        (
            range(Some("2000-01-01T00:00:00Z"), None),
            vec![0, 1, 2, 3, 4],
        ),
    ];
    for (filter, want) in cases {
        let want: HashSet<ChunkId> = want.iter().map(|i| points[*i].id).collect();
        assert_eq!(
            h.index.count(&filter).await.unwrap(),
            want.len() as u64,
            "{filter:?}"
        );
        let got: HashSet<ChunkId> = h
            .index
            .search(
                &SearchRequest::hybrid(at_cosine(1.0), sparse(&[(5, 1.0)]), 10)
                    .with_filter(filter.clone()),
            )
            .await
            .unwrap()
            .iter()
            .map(|hit| hit.id)
            .collect();
        assert_eq!(got, want, "{filter:?}");
    }
}

async fn grouped_search_returns_best_chunk_per_row(h: &Harness) {
    h.create().await;
    // Row r has chunks at cosines 0.99 - r/20 - c/100: row 0 is best, then row 1, ...
    // and each row's best chunk is chunk 0; chunk 3 of row 1 has its own near match.
    let mut points = Vec::new();
    for row in 0..5i64 {
        for chunk in 0..4u32 {
            let cos = 0.99 - row as f32 / 20.0 - chunk as f32 / 100.0;
            points.push(point(
                "interactions",
                row,
                chunk,
                at_cosine(cos),
                sparse(&[(5, 1.0)]),
            ));
        }
    }
    // The same source id in another table is another group.
    points.push(point("deals", 0, 0, at_cosine(0.5), sparse(&[(5, 1.0)])));
    h.index.upsert(points).await.unwrap();
    for mode in [SearchMode::Dense, SearchMode::Hybrid] {
        let mut request = SearchRequest::hybrid(at_cosine(1.0), sparse(&[(5, 1.0)]), 3);
        request.mode = mode;
        let groups = h.index.search_grouped(&request).await.unwrap();
        let got: Vec<(String, i64, u32)> = groups
            .iter()
            .map(|g| {
                (
                    g.payload.source_table.clone(),
                    g.payload.source_id,
                    g.payload.chunk_index,
                )
            })
            .collect();
        if mode == SearchMode::Dense {
            assert_eq!(
                got,
                vec![
                    ("interactions".into(), 0, 0),
                    ("interactions".into(), 1, 0),
                    ("interactions".into(), 2, 0)
                ]
            );
        } else {
            let rows: HashSet<(String, i64)> = got.iter().map(|g| (g.0.clone(), g.1)).collect();
            assert_eq!(rows.len(), 3, "{got:?}");
        }
        assert!(groups.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // More groups asked than exist: every row once.
    let all = h
        .index
        .search_grouped(&SearchRequest::dense(at_cosine(1.0), 50))
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].payload.source_table, "deals");
}

async fn grouped_search_widens_past_a_crowding_row(h: &Harness) {
    h.create().await;
    // Row 1 has 40 chunks that all beat every chunk of rows 2 and 3.
    let mut points: Vec<ChunkPoint> = (0..40u32)
        .map(|c| {
            point(
                "interactions",
                1,
                c,
                at_cosine(0.999 - c as f32 / 1000.0),
                sparse(&[(5, 1.0)]),
            )
        })
        .collect();
    points.push(point(
        "interactions",
        2,
        0,
        at_cosine(0.8),
        sparse(&[(5, 1.0)]),
    ));
    points.push(point(
        "interactions",
        3,
        0,
        at_cosine(0.7),
        sparse(&[(5, 1.0)]),
    ));
    h.index.upsert(points).await.unwrap();
    let groups = h
        .index
        .search_grouped(&SearchRequest::dense(at_cosine(1.0), 2))
        .await
        .unwrap();
    let rows: Vec<(i64, u32)> = groups
        .iter()
        .map(|g| (g.payload.source_id, g.payload.chunk_index))
        .collect();
    assert_eq!(rows, vec![(1, 0), (2, 0)]);
    let groups = h
        .index
        .search_grouped(&SearchRequest::hybrid(
            at_cosine(1.0),
            sparse(&[(5, 1.0)]),
            3,
        ))
        .await
        .unwrap();
    let rows: BTreeSet<i64> = groups.iter().map(|g| g.payload.source_id).collect();
    assert_eq!(rows, BTreeSet::from([1, 2, 3]));
}

async fn bad_points_are_refused_by_name_and_nothing_is_written(h: &Harness) {
    h.create().await;
    h.index.upsert(people(2)).await.unwrap();
    type Spoil = fn(&mut ChunkPoint);
    let cases: Vec<(&str, Spoil)> = vec![
        ("not finite", |p| p.dense[3] = f32::NAN),
        ("not finite", |p| p.dense[0] = f32::INFINITY),
        ("dimensions", |p| p.dense.push(1.0)),
        ("dimensions", |p| p.dense.clear()),
        ("all zeros", |p| p.dense = vec![0.0; DIM]),
        ("appears more than once", |p| {
            p.sparse = sparse(&[(4, 1.0), (9, 1.0), (4, 2.0)])
        }),
        ("not finite", |p| p.sparse = sparse(&[(4, f32::NAN)])),
        ("indices but", |p| p.sparse.values.push(1.0)),
        ("RFC 3339", |p| {
            p.payload.occurred_at = Some("yesterday".into())
        }),
        ("source_table is empty", |p| {
            p.payload.source_table.clear();
            p.id = ChunkId::new("", p.payload.source_id, 0);
        }),
        ("is not the chunk id of people:17:0", |p| {
            p.id = ChunkId::new("people", 18, 0)
        }),
        ("is not the chunk id of people:17:3", |p| {
            p.payload.chunk_index = 3
        }),
        ("shadows a typed field", |p| {
            p.payload.extra.insert("kind".into(), Value::from("x"));
        }),
    ];
    for (expected, spoil) in cases {
        let mut batch = people(30);
        spoil(&mut batch[17]);
        let bad_id = batch[17].id;
        let err = h.index.upsert(batch).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, IndexError::InvalidPoint { .. }), "{text}");
        assert!(text.contains(expected), "expected {expected:?} in {text}");
        assert!(text.contains(&bad_id.to_string()), "{text}");
        assert_eq!(
            h.index.count(&SearchFilter::default()).await.unwrap(),
            2,
            "{text}"
        );
    }
    let mut twice = people(3);
    twice[2] = twice[0].clone();
    let err = h.index.upsert(twice).await.unwrap_err();
    assert!(err.to_string().contains("same id appears twice"), "{err}");
    assert_eq!(h.index.count(&SearchFilter::default()).await.unwrap(), 2);
}

async fn empty_sparse_vectors_are_allowed(h: &Harness) {
    h.create().await;
    let mut points = people(5);
    points[2].sparse = SparseVector::default();
    h.index.upsert(points.clone()).await.unwrap();
    let stored = h.index.retrieve(&[points[2].id], true).await.unwrap();
    assert!(stored[0].vectors.as_ref().unwrap().sparse.is_empty());

    let hits = h
        .index
        .search(&SearchRequest::dense(points[2].dense.clone(), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[2].id);
    // Token 7 is in every point but the empty one.
    let hits = h
        .index
        .search(&SearchRequest::sparse(sparse(&[(7, 1.0)]), 10))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4);
    assert!(!ids_of(&hits).contains(&points[2].id));

    // An empty query (all stopwords): sparse finds nothing, hybrid ranks by dense alone.
    let hits = h
        .index
        .search(&SearchRequest::sparse(SparseVector::default(), 10))
        .await
        .unwrap();
    assert!(hits.is_empty());
    let hits = h
        .index
        .search(&SearchRequest::hybrid(
            points[3].dense.clone(),
            SparseVector::default(),
            3,
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[3].id);
    assert!(
        (hits[0].score - 1.0 / 60.0).abs() < 1e-6,
        "{}",
        hits[0].score
    );
}

async fn bad_queries_are_refused(h: &Harness) {
    h.create().await;
    h.index.upsert(people(3)).await.unwrap();
    let base = SearchRequest::hybrid(spread(1), sparse(&[(7, 1.0)]), 3);
    let cases = vec![
        (
            "limit 0",
            SearchRequest {
                limit: 0,
                ..base.clone()
            },
        ),
        (
            "limit 10001",
            SearchRequest {
                limit: 10_001,
                ..base.clone()
            },
        ),
        ("rrf_k must be at least 1", base.clone().with_rrf_k(0)),
        ("prefetch limit 0", base.clone().with_prefetch_limit(0)),
        (
            "needs a dense query",
            SearchRequest {
                dense: None,
                ..base.clone()
            },
        ),
        (
            "needs a sparse query",
            SearchRequest {
                sparse: None,
                ..base.clone()
            },
        ),
        (
            "dimensions",
            SearchRequest {
                dense: Some(vec![1.0; DIM + 1]),
                ..base.clone()
            },
        ),
        (
            "not finite",
            SearchRequest {
                dense: Some(vec![f32::NAN; DIM]),
                ..base.clone()
            },
        ),
        (
            "appears more than once",
            SearchRequest {
                sparse: Some(sparse(&[(1, 1.0), (1, 1.0)])),
                ..base.clone()
            },
        ),
    ];
    for (expected, request) in cases {
        let err = h.index.search(&request).await.unwrap_err();
        assert!(matches!(err, IndexError::InvalidRequest { .. }), "{err}");
        assert!(
            err.to_string().contains(expected),
            "expected {expected:?} in {err}"
        );
    }
    let err = h
        .index
        .scroll(&ScrollRequest {
            limit: 0,
            ..ScrollRequest::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scroll limit 0"), "{err}");
}

async fn scroll_pages_through_everything_once(h: &Harness) {
    h.create().await;
    let points = people(250);
    h.index.upsert(points.clone()).await.unwrap();
    let mut seen = Vec::new();
    let mut offset = None;
    let mut pages = 0;
    loop {
        let page = h
            .index
            .scroll(&ScrollRequest {
                limit: 100,
                offset,
                with_vectors: pages == 0,
                ..ScrollRequest::default()
            })
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.points.iter().all(|p| p.vectors.is_some()), pages == 1);
        seen.extend(page.points.iter().map(|p| p.id));
        match page.next_offset {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "scroll is in id order");
    let want: BTreeSet<ChunkId> = points.iter().map(|p| p.id).collect();
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), want);
    assert_eq!(seen.len(), 250);
}

async fn large_upsert_is_split_into_batches(h: &Harness) {
    h.create().await;
    let points = people(2_300);
    assert_eq!(h.index.upsert(points.clone()).await.unwrap(), 2_300);
    assert_eq!(
        h.index.count(&SearchFilter::default()).await.unwrap(),
        2_300
    );
    let last = h.index.retrieve(&[points[2_299].id], false).await.unwrap();
    assert_eq!(last[0].payload, points[2_299].payload);
}

async fn concurrent_searches_while_upserting(h: &Harness) {
    h.create().await;
    h.index.upsert(people(10)).await.unwrap();
    let index = &h.index;
    let writer = async {
        for batch in 0..20i64 {
            let points: Vec<ChunkPoint> = (0..50)
                .map(|i| {
                    let id = 1_000 + batch * 50 + i;
                    point("people", id, 0, spread(id as u64), sparse(&[(7, 1.0)]))
                })
                .collect();
            index.upsert(points).await.unwrap();
        }
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = |seed: u64| {
        let done = Arc::clone(&done);
        async move {
            let mut last = 0;
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || rounds == 0 {
                let hits = index
                    .search(&SearchRequest::hybrid(
                        spread(seed + rounds),
                        sparse(&[(7, 1.0)]),
                        10,
                    ))
                    .await
                    .unwrap();
                assert_eq!(hits.len(), 10);
                let count = index.count(&SearchFilter::default()).await.unwrap();
                assert!(count >= last, "count went back from {last} to {count}");
                assert!((10..=1_010).contains(&count), "{count}");
                last = count;
                rounds += 1;
            }
            rounds
        }
    };
    let writer = async {
        writer.await;
        done.store(true, std::sync::atomic::Ordering::Release);
    };
    let ((), a, b, c) = tokio::join!(writer, reader(1), reader(2), reader(3));
    assert!(a > 0 && b > 0 && c > 0);
    assert_eq!(
        h.index.count(&SearchFilter::default()).await.unwrap(),
        1_010
    );
}

async fn optimize_keeps_every_point(h: &Harness) {
    h.create().await;
    let points = people(3_000);
    h.index.upsert(points.clone()).await.unwrap();
    h.index
        .delete_source_rows("people", &(0..1_000).collect::<Vec<_>>())
        .await
        .unwrap();
    // A third of the points deleted: the embedded vacuum optimizer rebuilds the
    // segment, behind proxy segments, while searches keep running.
    let done = std::sync::atomic::AtomicBool::new(false);
    let searches = async {
        let mut rounds = 0u64;
        while !done.load(std::sync::atomic::Ordering::Acquire) || rounds == 0 {
            let hits = h
                .index
                .search(&SearchRequest::hybrid(
                    spread(rounds),
                    sparse(&[(7, 1.0)]),
                    5,
                ))
                .await
                .unwrap();
            assert_eq!(hits.len(), 5);
            assert!(hits.iter().all(|hit| hit.payload.source_id >= 1_000));
            assert_eq!(
                h.index.count(&SearchFilter::default()).await.unwrap(),
                2_000
            );
            rounds += 1;
        }
        rounds
    };
    let optimize = async {
        let outcome = h.index.optimize().await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Release);
        outcome
    };
    let (outcome, rounds) = tokio::join!(optimize, searches);
    assert!(rounds > 0);
    if h.index.engine_kind() == index_qdrant::EngineKind::Embedded {
        assert!(outcome.optimized, "{outcome:?}");
    }
    assert_eq!(
        h.index.count(&SearchFilter::default()).await.unwrap(),
        2_000
    );
    let hits = h
        .index
        .search(&SearchRequest::dense(points[2_500].dense.clone(), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[2_500].id);
    let stored = h.index.retrieve(&[points[2_999].id], true).await.unwrap();
    assert_eq!(stored[0].payload, points[2_999].payload);
}

/// The default keeps everything memory-mapped (every other test uses it); this one keeps
/// vectors, payloads and search structures in the process's memory instead.
async fn in_memory_collection_searches_like_any_other(h: &Harness) {
    let spec = CollectionSpec {
        dense_on_disk: false,
        payload_on_disk: false,
        index_on_disk: false,
        quantize_int8: true,
        hnsw_m: Some(8),
        hnsw_ef_construct: Some(32),
        hnsw_payload_m: Some(0),
        ..h.spec(DIM)
    };
    h.index.ensure_collection(&spec, false).await.unwrap();
    // Storage choices are not part of the match: a plain spec of the same size is fine.
    assert_eq!(
        h.index
            .ensure_collection(&h.spec(DIM), false)
            .await
            .unwrap(),
        CollectionStatus::Existing
    );
    let points = people(300);
    h.index.upsert(points.clone()).await.unwrap();
    h.index.optimize().await.unwrap();
    let hits = h
        .index
        .search(&SearchRequest::hybrid(
            points[123].dense.clone(),
            sparse(&[(1123, 1.0)]),
            3,
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[123].id);
    let hits = h
        .index
        .search(&SearchRequest::dense(points[5].dense.clone(), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[5].id);
}

/// Candidates found on the int8 copy are re-scored with the original vectors: the
/// scores a dense search returns, and its order, are the exact cosines (Qdrant leaves
/// the int8 approximations unless asked to re-score: 0.62620 for an exact 0.62606 here
/// before it was asked). The
/// collection is large enough (12 MB of vectors) for the optimizer to give its segment
/// a graph and an int8 copy; split in shards, each part stays below that, so the check
/// bites on the unsharded engines.
async fn dense_scores_are_exact_cosines_after_the_int8_copy_is_built(h: &Harness) {
    const WIDE: usize = 384;
    let wide = |seed: u64| -> Vec<f32> {
        (0..(WIDE / DIM) as u64)
            .flat_map(|part| spread(seed * 1_000 + part))
            .collect()
    };
    h.index
        .ensure_collection(&h.spec(WIDE), false)
        .await
        .unwrap();
    let points: Vec<ChunkPoint> = (0..8_000)
        .map(|id| point("people", id, 0, wide(id as u64), sparse(&[(7, 1.0)])))
        .collect();
    h.index.upsert(points.clone()).await.unwrap();
    h.index.optimize().await.unwrap();
    let exact = |query: &[f32], point: &ChunkPoint| -> f32 {
        normalised(query)
            .iter()
            .zip(normalised(&point.dense))
            .map(|(a, b)| a * b)
            .sum()
    };
    for seed in [9_001, 9_002, 9_003] {
        let query = wide(seed);
        let hits = h
            .index
            .search(&SearchRequest::dense(query.clone(), 10))
            .await
            .unwrap();
        assert_eq!(hits.len(), 10);
        for hit in &hits {
            let point = points.iter().find(|p| p.id == hit.id).unwrap();
            let want = exact(&query, point);
            assert!(
                (hit.score - want).abs() < 1e-5,
                "hit {} scored {} against an exact cosine of {want}",
                hit.id,
                hit.score
            );
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
}

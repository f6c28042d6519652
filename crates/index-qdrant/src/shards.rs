//! The embedded engine of one collection: one or more `qdrant-edge` shards
//! ([`crate::embedded::Shard`]), each point in the shard its id routes it to.
//!
//! One shard has one writer: qdrant-edge applies every update of a shard under one lock,
//! on one thread. A collection of `n` shards is written by `n` threads at once (each
//! write is split by shard and the parts run side by side), and its optimizer passes run
//! one shard after the other, so the memory they need is one shard's.
//!
//! Layout under `dir`: shard 0 in `{collection}` (where a collection of one shard has
//! always been), shard `k` in `{collection}.shard-{k}`, the lock in `{collection}.lock`
//! (collection names cannot hold a `.`, so these never meet another collection's). A
//! collection of more than one shard records how many in [`SHARDS_FILE`] in shard 0's
//! directory, written after every shard was created: a collection whose creation was
//! cut short has one shard and maybe stray directories, which the next creation
//! removes. Shard 0 is created last and removed first, so its presence means the whole
//! collection is there.
//!
//! Routing: a point lives in shard `uuid(id) mod n` (its UUID read as a big-endian
//! 128-bit integer). Chunk ids are UUIDv5 (SHA-1) values, so the shards fill evenly.
//! The rule is part of the on-disk format: changing it would lose points.
//!
//! Searches ask every shard and merge: dense and sparse hits by score, hybrid searches
//! by fusing the merged prefetch lists (RRF over ranks in the merged lists). Sparse
//! scores use each shard's own IDF statistics, as a Qdrant cluster with several shards
//! does; with ids spread at random, a shard's statistics are a random half (third, …)
//! of the collection's, so a token's IDF differs from the collection-wide one by the
//! sampling error of its document frequency, which shrinks as the collection grows.
//! Small collections are best kept in one shard, where scores are exact.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::try_join_all;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{PointId, ScoringQuery};
use serde_json::{Map, Value};

use crate::config::CollectionSpec;
use crate::embedded::{
    Shard, dense_query, edge_filter, panic_message, read_into_cache, rrf, sparse_query,
    write_durably,
};
use crate::error::IndexError;
use crate::point::{ChunkId, ChunkPoint, StoredPoint};
use crate::query::{FilterSpec, IndexInfo, OptimizeOutcome, ScrollPage, SearchHit};
use crate::{CollectionStatus, Durability, PayloadTarget, PlanQuery, SearchPlan};

/// File in shard 0's directory recording the shard count of a collection of several.
const SHARDS_FILE: &str = "crm-shards.json";

/// Most shards a collection may have.
pub(crate) const MAX_SHARDS: usize = 64;

#[derive(serde::Serialize, serde::Deserialize)]
struct ShardsRecord {
    shards: usize,
}

/// The shard a point lives in, of `shards`.
pub(crate) fn shard_of(id: &ChunkId, shards: usize) -> usize {
    (id.as_uuid().as_u128() % shards as u128) as usize
}

/// The embedded engine of one collection.
pub(crate) struct Embedded {
    dir: PathBuf,
    /// Shard 0's directory, the collection's own.
    root: PathBuf,
    collection: String,
    /// The shards; replaced whole when the collection is created, re-created or dropped.
    shards: RwLock<Arc<Vec<Shard>>>,
    /// Serialises changes of the layout (create, re-create, drop).
    layout: tokio::sync::Mutex<()>,
    lock: Arc<File>,
}

impl Embedded {
    /// Opens (without creating) the collection under `dir`, taking its lock.
    pub(crate) async fn open(dir: PathBuf, collection: String) -> Result<Self, IndexError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, collection))
            .await
            .map_err(|join| IndexError::EnginePanicked {
                operation: "open",
                collection: String::new(),
                path: PathBuf::new(),
                detail: panic_message(join),
            })?
    }

    fn open_blocking(dir: PathBuf, collection: String) -> Result<Self, IndexError> {
        std::fs::create_dir_all(&dir).map_err(|source| IndexError::Io {
            operation: "create directory",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(&collection);
        let lock_path = dir.join(format!("{collection}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| IndexError::Io {
                operation: "open lock file",
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(IndexError::Locked {
                    path,
                    lock: lock_path,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(IndexError::Io {
                    operation: "lock",
                    path: lock_path,
                    source,
                });
            }
        }
        let engine = Self {
            root: path,
            dir,
            collection,
            shards: RwLock::new(Arc::new(Vec::new())),
            layout: tokio::sync::Mutex::new(()),
            lock: Arc::new(lock),
        };
        let shards = engine.shards_on_disk();
        engine.set_shards(shards);
        Ok(engine)
    }

    /// Directory of shard `k`.
    fn shard_path(&self, k: usize) -> PathBuf {
        if k == 0 {
            self.dir.join(&self.collection)
        } else {
            self.dir.join(format!("{}.shard-{k}", self.collection))
        }
    }

    fn shard(&self, k: usize, broken: Option<String>) -> Shard {
        Shard::new(
            self.shard_path(k),
            self.collection.clone(),
            Arc::clone(&self.lock),
            broken,
        )
    }

    /// Handles on the shards the directory holds: shard 0, and the others its
    /// [`SHARDS_FILE`] names. A record that does not read, or names a shard whose
    /// directory is gone, breaks the collection (every call says to re-create it).
    fn shards_on_disk(&self) -> Vec<Shard> {
        let record = self.shard_path(0).join(SHARDS_FILE);
        let count = match std::fs::read(&record) {
            Ok(bytes) => match serde_json::from_slice::<ShardsRecord>(&bytes) {
                Ok(ShardsRecord { shards }) if (1..=MAX_SHARDS).contains(&shards) => Ok(shards),
                Ok(ShardsRecord { shards }) => Err(format!(
                    "{} names {shards} shards (1 to {MAX_SHARDS} allowed)",
                    record.display()
                )),
                Err(err) => Err(format!("{} is not readable: {err}", record.display())),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(err) => Err(format!("reading {}: {err}", record.display())),
        };
        match count {
            Ok(count) => (0..count)
                .map(|k| {
                    let missing = k > 0 && !self.shard_path(k).exists();
                    let broken = missing.then(|| {
                        format!(
                            "shard {k} of {count} is missing ({})",
                            self.shard_path(k).display()
                        )
                    });
                    self.shard(k, broken)
                })
                .collect(),
            Err(detail) => vec![self.shard(0, Some(detail))],
        }
    }

    fn set_shards(&self, shards: Vec<Shard>) {
        *self
            .shards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(shards);
    }

    /// The shards as they are now (a re-create meanwhile does not change this list).
    fn shards(&self) -> Arc<Vec<Shard>> {
        Arc::clone(
            &self
                .shards
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Directory of shard 0, the collection's own.
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// How many shards the collection has (1 while it does not exist).
    pub(crate) fn shard_count(&self) -> usize {
        self.shards().len()
    }

    /// Reads every shard's search files into the OS's page cache from a thread of its
    /// own ([`read_into_cache`]); returns at once, with the thread unless it could not
    /// start.
    pub(crate) fn warm_cache(&self) -> Option<std::thread::JoinHandle<(u64, u64)>> {
        let dirs: Vec<PathBuf> = self
            .shards()
            .iter()
            .map(|shard| shard.path().join("segments"))
            .collect();
        let spawned = std::thread::Builder::new()
            .name("index-warm".to_owned())
            .spawn(move || {
                let started = std::time::Instant::now();
                let (mut files, mut bytes) = (0, 0);
                for dir in &dirs {
                    let (f, b) = read_into_cache(dir);
                    files += f;
                    bytes += b;
                }
                tracing::debug!(
                    files,
                    bytes,
                    seconds = started.elapsed().as_secs_f64(),
                    shards = dirs.len(),
                    "read the collection's files into the page cache"
                );
                (files, bytes)
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(err) => {
                tracing::warn!(error = %err, "could not start the page-cache warming thread");
                None
            }
        }
    }

    /// Whether every shard is loaded (or the collection is missing or broken).
    pub(crate) fn is_loaded(&self) -> bool {
        self.shards().iter().all(Shard::is_loaded)
    }

    pub(crate) async fn exists(&self) -> Result<bool, IndexError> {
        self.shards()[0].exists().await
    }

    pub(crate) async fn dense_dim(&self) -> Result<usize, IndexError> {
        self.shards()[0].dense_dim().await
    }

    pub(crate) async fn ensure_collection(
        &self,
        spec: CollectionSpec,
        recreate: bool,
    ) -> Result<CollectionStatus, IndexError> {
        let _layout = self.layout.lock().await;
        let mut status = CollectionStatus::Created;
        if recreate && self.remove_all().await? {
            status = CollectionStatus::Recreated;
        }
        let shards = self.shards();
        if shards[0].exists_on_disk() {
            // An existing collection keeps its shards; each checks its own config.
            for shard in shards.iter() {
                shard.ensure_collection(spec.clone(), false).await?;
            }
            return Ok(CollectionStatus::Existing);
        }
        let count = spec.shards;
        self.remove_strays().await?;
        let mut created: Vec<Shard> = (1..count).map(|k| self.shard(k, None)).collect();
        for shard in created.iter().rev() {
            shard.ensure_collection(spec.clone(), false).await?;
        }
        shards[0].ensure_collection(spec.clone(), false).await?;
        if count > 1 {
            let record = self.shard_path(0).join(SHARDS_FILE);
            let bytes = serde_json::to_vec(&ShardsRecord { shards: count })
                .map_err(|err| self.layout_error(&record, &err.to_string()))?;
            let path = record.clone();
            tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
                .await
                .map_err(|join| self.layout_error(&record, &panic_message(join)))?
                .map_err(|detail| self.layout_error(&record, &detail))?;
        }
        let mut all = vec![shards[0].clone()];
        all.append(&mut created);
        self.set_shards(all);
        Ok(status)
    }

    fn layout_error(&self, path: &Path, detail: &str) -> IndexError {
        IndexError::Embedded {
            operation: "create collection",
            collection: self.collection.clone(),
            path: path.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// Drops every shard (shard 0 first) and removes stray shard directories; says
    /// whether the collection existed.
    async fn remove_all(&self) -> Result<bool, IndexError> {
        let shards = self.shards();
        let existed = shards[0].drop_collection().await?;
        for shard in shards.iter().skip(1) {
            shard.drop_collection().await?;
        }
        self.set_shards(vec![shards[0].clone()]);
        self.remove_strays().await?;
        Ok(existed)
    }

    /// Removes shard directories no collection owns (`{collection}.shard-*` while shard
    /// 0 is missing): left by a creation or a drop that was cut short.
    async fn remove_strays(&self) -> Result<(), IndexError> {
        let dir = self.dir.clone();
        let prefix = format!("{}.shard-", self.collection);
        let removed = tokio::task::spawn_blocking(move || -> Result<usize, IndexError> {
            let entries = std::fs::read_dir(&dir).map_err(|source| IndexError::Io {
                operation: "read directory",
                path: dir.clone(),
                source,
            })?;
            let mut removed = 0;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let stray = name.to_str().is_some_and(|name| {
                    name.strip_prefix(&prefix)
                        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                });
                if stray {
                    let path = entry.path();
                    std::fs::remove_dir_all(&path).map_err(|source| IndexError::Io {
                        operation: "remove stray shard directory",
                        path: path.clone(),
                        source,
                    })?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|join| IndexError::EnginePanicked {
            operation: "remove stray shards",
            collection: self.collection.clone(),
            path: self.dir.clone(),
            detail: panic_message(join),
        })??;
        if removed > 0 {
            tracing::info!(removed, collection = %self.collection, "removed stray shard directories");
        }
        Ok(())
    }

    pub(crate) async fn drop_collection(&self) -> Result<bool, IndexError> {
        let _layout = self.layout.lock().await;
        self.remove_all().await
    }

    pub(crate) async fn upsert(
        &self,
        points: Vec<ChunkPoint>,
        durability: Durability,
    ) -> Result<usize, IndexError> {
        let shards = self.shards();
        if shards.len() == 1 {
            return shards[0].upsert(points, durability).await;
        }
        let written = routed(
            &shards,
            points,
            |point| &point.id,
            |shard, part| shard.upsert(part, durability),
        )
        .await?;
        Ok(written.into_iter().sum())
    }

    /// Makes every write so far durable, in every shard.
    pub(crate) async fn flush(&self) -> Result<(), IndexError> {
        let shards = self.shards();
        try_join_all(shards.iter().map(Shard::flush)).await?;
        Ok(())
    }

    pub(crate) async fn delete_points(&self, ids: Vec<ChunkId>) -> Result<(), IndexError> {
        let shards = self.shards();
        if shards.len() == 1 {
            return shards[0].delete_points(ids).await;
        }
        routed(&shards, ids, |id| id, Shard::delete_points).await?;
        Ok(())
    }

    pub(crate) async fn delete_by_filter(
        &self,
        operation: &'static str,
        filters: Vec<FilterSpec>,
    ) -> Result<(), IndexError> {
        let shards = self.shards();
        try_join_all(
            shards
                .iter()
                .map(|shard| shard.delete_by_filter(operation, filters.clone())),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn set_payload(
        &self,
        operation: &'static str,
        target: PayloadTarget,
        fields: Map<String, Value>,
    ) -> Result<(), IndexError> {
        let shards = self.shards();
        if shards.len() == 1 {
            return shards[0].set_payload(operation, target, fields).await;
        }
        match target {
            PayloadTarget::Ids(ids) => {
                routed(
                    &shards,
                    ids,
                    |id| id,
                    |shard, part| {
                        shard.set_payload(operation, PayloadTarget::Ids(part), fields.clone())
                    },
                )
                .await?;
            }
            PayloadTarget::Filters(filters) => {
                try_join_all(shards.iter().map(|shard| {
                    shard.set_payload(
                        operation,
                        PayloadTarget::Filters(filters.clone()),
                        fields.clone(),
                    )
                }))
                .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn search(&self, plan: SearchPlan) -> Result<Vec<SearchHit>, IndexError> {
        let shards = self.shards();
        let SearchPlan {
            filter,
            limit,
            query,
        } = plan;
        match query {
            PlanQuery::Fused {
                dense,
                sparse,
                rrf_k,
                prefetch_limit,
            } if sparse.is_some() || shards.len() > 1 => {
                self.fused_search(
                    &shards,
                    &filter,
                    limit,
                    dense,
                    sparse,
                    rrf_k,
                    prefetch_limit,
                )
                .await
            }
            query if shards.len() == 1 => {
                shards[0]
                    .single_search(SearchPlan {
                        filter,
                        limit,
                        query,
                    })
                    .await
            }
            query => {
                let searches = shards.iter().map(|shard| {
                    shard.single_search(SearchPlan {
                        filter: filter.clone(),
                        limit,
                        query: match &query {
                            PlanQuery::Dense(dense) => PlanQuery::Dense(dense.clone()),
                            PlanQuery::Sparse(sparse) => PlanQuery::Sparse(sparse.clone()),
                            PlanQuery::Fused { .. } => unreachable!("fused plans are split above"),
                        },
                    })
                });
                let mut hits: Vec<SearchHit> = try_join_all(searches)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
                hits.sort_by(|a, b| {
                    OrderedFloat(b.score)
                        .cmp(&OrderedFloat(a.score))
                        .then_with(|| a.id.as_uuid().cmp(b.id.as_uuid()))
                });
                hits.truncate(limit);
                Ok(hits)
            }
        }
    }

    /// A hybrid search: every shard's dense and sparse prefetches run at the same time
    /// (the engine would run them one after the other, each over every segment in
    /// turn); each kind's lists are merged by score into one list of `prefetch_limit`,
    /// then RRF fuses the lists exactly as the engine does (`1 / (k + i)` for the i-th
    /// hit, counting from 0), ties broken by point id so that equal scores always come
    /// in the same order, and the payloads of the fused top `limit` are read from the
    /// shards that hold them.
    #[allow(clippy::too_many_arguments)]
    async fn fused_search(
        &self,
        shards: &[Shard],
        filter: &FilterSpec,
        limit: usize,
        dense: Vec<f32>,
        sparse: Option<crate::point::SparseVector>,
        rrf_k: u32,
        prefetch_limit: usize,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let edge_filter = edge_filter(filter);
        let prefetch = |query: ScoringQuery| {
            let edge_filter = edge_filter.clone();
            async move {
                let lists =
                    try_join_all(shards.iter().map(|shard| {
                        shard.ranked(edge_filter.clone(), query.clone(), prefetch_limit)
                    }))
                    .await?;
                Ok::<_, IndexError>(merge_ranked(lists, prefetch_limit))
            }
        };
        let lists = match sparse {
            Some(sparse) => {
                let (dense, sparse) =
                    tokio::join!(prefetch(dense_query(dense)), prefetch(sparse_query(sparse)));
                vec![dense?, sparse?]
            }
            None => vec![prefetch(dense_query(dense)).await?],
        };
        let fused = rrf(&lists, rrf_k, limit);
        if shards.len() == 1 {
            return shards[0].hits(fused).await;
        }
        // Each shard reads the payloads of its own hits; the fused order is kept.
        let mut parts: Vec<Vec<(PointId, f32)>> = (0..shards.len()).map(|_| Vec::new()).collect();
        for (id, score) in &fused {
            let PointId::Uuid(uuid) = id else { continue };
            parts[shard_of(&ChunkId::from_uuid(*uuid), shards.len())].push((*id, *score));
        }
        let mut hits: Vec<SearchHit> = try_join_all(
            shards
                .iter()
                .zip(parts)
                .map(|(shard, part)| shard.hits(part)),
        )
        .await?
        .into_iter()
        .flatten()
        .collect();
        hits.sort_by(|a, b| {
            OrderedFloat(b.score)
                .cmp(&OrderedFloat(a.score))
                .then_with(|| a.id.as_uuid().cmp(b.id.as_uuid()))
        });
        Ok(hits)
    }

    pub(crate) async fn count(&self, filter: FilterSpec) -> Result<u64, IndexError> {
        let shards = self.shards();
        let counts = try_join_all(shards.iter().map(|shard| shard.count(filter.clone()))).await?;
        Ok(counts.into_iter().sum())
    }

    /// A page of points in id order. Each shard gives its first `limit + 1` points from
    /// `offset`; the first `limit` of all of them are the page, and the next one is where
    /// the next page starts (a point a shard did not give comes after `limit + 1` of its
    /// own, so after the page and its successor).
    pub(crate) async fn scroll(
        &self,
        filter: FilterSpec,
        limit: usize,
        offset: Option<ChunkId>,
        with_vectors: bool,
    ) -> Result<ScrollPage, IndexError> {
        let shards = self.shards();
        if shards.len() == 1 {
            return shards[0].scroll(filter, limit, offset, with_vectors).await;
        }
        let pages = try_join_all(shards.iter().map(|shard| {
            shard.scroll(
                filter.clone(),
                limit.saturating_add(1),
                offset,
                with_vectors,
            )
        }))
        .await?;
        let mut points: Vec<StoredPoint> = pages.into_iter().flat_map(|page| page.points).collect();
        points.sort_by(|a, b| a.id.as_uuid().cmp(b.id.as_uuid()));
        let next_offset = points.get(limit).map(|point| point.id);
        points.truncate(limit);
        Ok(ScrollPage {
            points,
            next_offset,
        })
    }

    pub(crate) async fn retrieve(
        &self,
        ids: Vec<ChunkId>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, IndexError> {
        let shards = self.shards();
        if shards.len() == 1 {
            return shards[0].retrieve(ids, with_vectors).await;
        }
        // In the order asked for, as one shard (and a server) answers.
        let order: std::collections::HashMap<ChunkId, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let found = routed(
            &shards,
            ids,
            |id| id,
            |shard, part| shard.retrieve(part, with_vectors),
        )
        .await?;
        let mut found: Vec<StoredPoint> = found.into_iter().flatten().collect();
        found.sort_by_key(|point| order.get(&point.id).copied().unwrap_or(usize::MAX));
        Ok(found)
    }

    pub(crate) async fn info(&self) -> Result<IndexInfo, IndexError> {
        let shards = self.shards();
        let infos = try_join_all(shards.iter().map(Shard::info)).await?;
        let mut infos = infos.into_iter();
        let mut total = infos.next().ok_or_else(|| IndexError::CollectionMissing {
            engine: crate::EngineKind::Embedded,
            collection: self.collection.clone(),
        })?;
        for info in infos {
            total.points_count += info.points_count;
            total.indexed_vectors_count += info.indexed_vectors_count;
            total.segments_count += info.segments_count;
        }
        Ok(total)
    }

    /// Optimizes the shards one after the other: a merge pass holds much memory (at 1M
    /// chunks in one shard, ~2 GB), and one at a time keeps the peak to one shard's.
    pub(crate) async fn optimize(&self) -> Result<OptimizeOutcome, IndexError> {
        let shards = self.shards();
        let mut total = OptimizeOutcome {
            optimized: false,
            segments_before: 0,
            segments_after: 0,
            indexed_vectors_count: 0,
        };
        for shard in shards.iter() {
            let outcome = shard.optimize().await?;
            total.optimized |= outcome.optimized;
            total.segments_before += outcome.segments_before;
            total.segments_after += outcome.segments_after;
            total.indexed_vectors_count += outcome.indexed_vectors_count;
        }
        Ok(total)
    }
}

/// Runs `op` on every shard with the `items` whose ids route to it, all shards side by
/// side (a shard with none is left out); the results come in shard order.
async fn routed<'a, T, R, Fut>(
    shards: &'a [Shard],
    items: Vec<T>,
    id: impl Fn(&T) -> &ChunkId,
    op: impl Fn(&'a Shard, Vec<T>) -> Fut,
) -> Result<Vec<R>, IndexError>
where
    Fut: Future<Output = Result<R, IndexError>>,
{
    let mut parts: Vec<Vec<T>> = shards.iter().map(|_| Vec::new()).collect();
    for item in items {
        let k = shard_of(id(&item), shards.len());
        parts[k].push(item);
    }
    try_join_all(
        shards
            .iter()
            .zip(parts)
            .filter(|(_, part)| !part.is_empty())
            .map(|(shard, part)| op(shard, part)),
    )
    .await
}

/// One list of a prefetch from every shard's: by score, best first (a shard's own order
/// kept among equal scores, shards in order), cut at `limit`.
fn merge_ranked(lists: Vec<Vec<(PointId, f32)>>, limit: usize) -> Vec<PointId> {
    if lists.len() == 1 {
        return lists
            .into_iter()
            .flatten()
            .map(|(id, _)| id)
            .take(limit)
            .collect();
    }
    let mut all: Vec<(PointId, f32)> = lists.into_iter().flatten().collect();
    all.sort_by_key(|entry| std::cmp::Reverse(OrderedFloat(entry.1)));
    all.into_iter().take(limit).map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{ChunkPayload, SparseVector};

    pub(crate) const DIM: usize = 8;

    pub(crate) fn point(id: i64) -> ChunkPoint {
        // Vectors and terms that give the two prefetches different orders, with ties.
        let dense: Vec<f32> = (0..DIM)
            .map(|d| (((id as usize * 7 + d * 3) % 11) as f32) - 4.5)
            .collect();
        let sparse = SparseVector::new(
            vec![1, 2 + (id % 5) as u32, 100 + id as u32],
            vec![1.0 + (id % 3) as f32, 0.5, 0.25],
        );
        let payload = ChunkPayload {
            source_table: "people".to_owned(),
            source_id: id,
            chunk_index: 0,
            entity_id: None,
            kind: "person".to_owned(),
            title: format!("person {id}"),
            text: format!("text {id}"),
            organization_id: None,
            occurred_at: None,
            updated_at: "2026-06-05T13:55:12Z".to_owned(),
            content_hash: format!("hash-{id}"),
            extra: Default::default(),
        };
        ChunkPoint::new(dense, sparse, payload)
    }

    async fn collection(dir: &Path, shards: usize) -> Embedded {
        let index = Embedded::open(dir.to_owned(), "c".to_owned())
            .await
            .unwrap();
        index
            .ensure_collection(
                CollectionSpec {
                    shards,
                    ..CollectionSpec::new(DIM)
                },
                false,
            )
            .await
            .unwrap();
        index
    }

    #[test]
    fn routing_is_the_id_modulo_the_shard_count() {
        // The rule is part of the on-disk format: these values must never change.
        let id = ChunkId::new("people", 17, 0);
        let n = id.as_uuid().as_u128();
        for shards in 1..=5 {
            assert_eq!(shard_of(&id, shards), (n % shards as u128) as usize);
        }
        // UUIDv5 ids fill the shards evenly.
        let mut counts = [0usize; 3];
        for row in 0..30_000 {
            counts[shard_of(&ChunkId::new("people", row, 0), 3)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn points_live_in_the_shard_their_id_routes_to() {
        let dir = tempfile::tempdir().unwrap();
        let index = collection(dir.path(), 3).await;
        index
            .upsert((0..200).map(point).collect(), Durability::Now)
            .await
            .unwrap();
        assert_eq!(index.shard_count(), 3);
        let shards = index.shards();
        for (k, shard) in shards.iter().enumerate() {
            let page = shard
                .scroll(FilterSpec::default(), 1_000, None, false)
                .await
                .unwrap();
            assert!(page.points.len() > 40, "shard {k}: {}", page.points.len());
            assert!(page.points.iter().all(|p| shard_of(&p.id, 3) == k));
        }
        assert!(dir.path().join("c.shard-1").is_dir());
        assert!(dir.path().join("c.shard-2").is_dir());
        let record = std::fs::read_to_string(dir.path().join("c").join(SHARDS_FILE)).unwrap();
        assert_eq!(record, r#"{"shards":3}"#);
        drop(shards);
        drop(index);

        // Opened again, the layout comes from the record.
        let index = Embedded::open(dir.path().to_owned(), "c".to_owned())
            .await
            .unwrap();
        assert_eq!(index.shard_count(), 3);
        assert_eq!(index.count(FilterSpec::default()).await.unwrap(), 200);
        // Deleting a row finds its points wherever they are.
        index
            .delete_by_filter(
                "delete source rows",
                vec![FilterSpec::source_rows("people", &[7])],
            )
            .await
            .unwrap();
        assert_eq!(index.count(FilterSpec::default()).await.unwrap(), 199);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_shard_or_a_bad_record_breaks_the_collection_until_recreated() {
        let dir = tempfile::tempdir().unwrap();
        drop(collection(dir.path(), 2).await);
        std::fs::remove_dir_all(dir.path().join("c.shard-1")).unwrap();
        let index = Embedded::open(dir.path().to_owned(), "c".to_owned())
            .await
            .unwrap();
        let err = index
            .count(FilterSpec::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard 1 of 2 is missing"), "{err}");
        assert!(err.contains("re-create"), "{err}");
        let err = index
            .ensure_collection(CollectionSpec::new(DIM), false)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard 1 of 2 is missing"), "{err}");
        let status = index
            .ensure_collection(CollectionSpec::new(DIM), true)
            .await
            .unwrap();
        assert_eq!(status, CollectionStatus::Recreated);
        assert_eq!(index.shard_count(), 1);
        assert!(!dir.path().join("c").join(SHARDS_FILE).exists());
        drop(index);

        std::fs::write(dir.path().join("c").join(SHARDS_FILE), b"{\"shards\": 0}").unwrap();
        let index = Embedded::open(dir.path().to_owned(), "c".to_owned())
            .await
            .unwrap();
        let err = index.info().await.unwrap_err().to_string();
        assert!(err.contains("names 0 shards"), "{err}");
        assert!(index.drop_collection().await.unwrap());
        assert!(!index.exists().await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_creation_cut_short_leaves_strays_that_the_next_creation_removes() {
        let dir = tempfile::tempdir().unwrap();
        // Shards 1 and 2 made, shard 0 (made last) not: no collection.
        std::fs::create_dir_all(dir.path().join("c.shard-1/segments")).unwrap();
        std::fs::create_dir_all(dir.path().join("c.shard-2")).unwrap();
        std::fs::create_dir_all(dir.path().join("c.shard-x")).unwrap();
        let index = Embedded::open(dir.path().to_owned(), "c".to_owned())
            .await
            .unwrap();
        assert!(!index.exists().await.unwrap());
        assert_eq!(index.shard_count(), 1);
        let status = index
            .ensure_collection(CollectionSpec::new(DIM), false)
            .await
            .unwrap();
        assert_eq!(status, CollectionStatus::Created);
        assert!(!dir.path().join("c.shard-1").exists());
        assert!(!dir.path().join("c.shard-2").exists());
        // Not a shard directory's name: left alone.
        assert!(dir.path().join("c.shard-x").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_fusion_scores_exactly_as_the_engine_fuses() {
        let dir = tempfile::tempdir().unwrap();
        let index = collection(dir.path(), 1).await;
        index
            .upsert((0..300).map(point).collect(), Durability::Now)
            .await
            .unwrap();
        let shard = index.shards()[0].clone();
        for (seed, k) in [(3, 60), (17, 2), (42, 1)] {
            let query = point(seed);
            let plan = || SearchPlan {
                filter: FilterSpec::default(),
                // Every candidate of both prefetches: no cut among equal scores.
                limit: 100,
                query: PlanQuery::Fused {
                    dense: query.dense.clone(),
                    sparse: Some(query.sparse.clone()),
                    rrf_k: k,
                    prefetch_limit: 40,
                },
            };
            let ours = index.search(plan()).await.unwrap();
            let engine = shard.single_search(plan()).await.unwrap();
            let key = |hits: &[SearchHit]| {
                let mut key: Vec<(String, u32)> = hits
                    .iter()
                    .map(|h| (h.id.to_string(), h.score.to_bits()))
                    .collect();
                key.sort();
                key
            };
            assert!(ours.len() > 40, "both prefetches contribute");
            assert_eq!(key(&ours), key(&engine), "k = {k}");
            assert!(ours.windows(2).all(|w| w[0].score >= w[1].score));
            assert_eq!(
                ours[0].payload.title,
                format!("person {}", {
                    let id = &ours[0].id;
                    engine
                        .iter()
                        .find(|h| &h.id == id)
                        .unwrap()
                        .payload
                        .source_id
                })
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dense_results_of_several_shards_are_those_of_one() {
        // Dense scores do not depend on the layout: the same points give the same hits.
        let one_dir = tempfile::tempdir().unwrap();
        let three_dir = tempfile::tempdir().unwrap();
        let one = collection(one_dir.path(), 1).await;
        let three = collection(three_dir.path(), 3).await;
        for index in [&one, &three] {
            index
                .upsert((0..300).map(point).collect(), Durability::Now)
                .await
                .unwrap();
        }
        for seed in [3, 17, 42, 299] {
            let plan = || SearchPlan {
                filter: FilterSpec::default(),
                limit: 25,
                query: PlanQuery::Dense(point(seed).dense),
            };
            let key = |hits: Vec<SearchHit>| -> Vec<(u32, i64)> {
                let mut key: Vec<(u32, i64)> = hits
                    .iter()
                    .map(|h| (h.score.to_bits(), h.payload.source_id))
                    .collect();
                key.sort();
                key
            };
            let a = key(one.search(plan()).await.unwrap());
            let b = key(three.search(plan()).await.unwrap());
            // Equal scores at the cut may be different points; all scores agree.
            assert_eq!(
                a.iter().map(|k| k.0).collect::<Vec<_>>(),
                b.iter().map(|k| k.0).collect::<Vec<_>>(),
                "seed {seed}"
            );
        }
    }
}

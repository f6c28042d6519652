//! The server engine: a Qdrant server or cluster over gRPC (`qdrant-client`).
//!
//! Needs Qdrant 1.16 or newer (the `Rrf` query with an explicit `k`, and the vector
//! encoding this client version sends). Every write waits for the server to apply it
//! (`wait=true`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_client::config::QdrantConfig;
use qdrant_client::qdrant::{
    self, Condition, CountPoints, CreateCollection, CreateFieldIndexCollection, DatetimeRange,
    DeletePoints, Distance, FieldType, Filter, GetPoints, HnswConfigDiff, Modifier, NamedVectors,
    OptimizersConfigDiff, PointId, PointStruct, PointsSelector, PrefetchQuery, QuantizationConfig,
    QuantizationSearchParams, QuantizationType, Query, QueryPoints, Range, Rrf, ScalarQuantization,
    ScrollPoints, SearchParams, SetPayloadPoints, SparseIndexConfig, SparseVectorConfig,
    SparseVectorParams, UpsertPoints, VectorInput, VectorParams, VectorParamsMap, Vectors,
    VectorsConfig, point_id::PointIdOptions, quantization_config, vector_output, vectors_config,
    vectors_output,
};
use qdrant_client::{Qdrant, QdrantError};
use serde_json::{Map, Value};

use crate::config::{ApiKey, CollectionSpec, EngineKind};
use crate::error::IndexError;
use crate::point::{
    ChunkId, ChunkPayload, ChunkPoint, PAYLOAD_INDEXES, PayloadIndexKind, SparseVector,
    StoredPoint, StoredVectors,
};
use crate::query::{Cond, FilterSpec, IndexInfo, OptimizeOutcome, ScrollPage, SearchHit};
use crate::{
    CollectionStatus, DENSE_VECTOR, Durability, PayloadTarget, PlanQuery, SPARSE_VECTOR, SearchPlan,
};

/// Most points per upsert request.
const UPSERT_BATCH: usize = 256;

/// Most estimated bytes per upsert request (Qdrant refuses very large messages).
const UPSERT_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most ids or source ids per delete/payload request.
const ID_BATCH: usize = 4096;

/// The server engine of one collection.
pub(crate) struct Server {
    client: Qdrant,
    collection: String,
    endpoint: String,
    /// Dense dimension of the collection, 0 while unknown.
    dense_dim: AtomicUsize,
}

/// Where the server is, as parsed from its URL.
#[derive(Debug, PartialEq)]
pub(crate) struct Endpoint {
    /// `scheme://host:port`, without credentials or path: what messages show.
    pub(crate) display: String,
    host: String,
    port: u16,
    tls: bool,
}

/// Parses the URL and refuses the REST port.
pub(crate) fn check_url(url: &str) -> Result<Endpoint, IndexError> {
    let uri: http::Uri = url.parse().map_err(|err| IndexError::InvalidConfig {
        reason: format!("Qdrant URL {:?} is not a URL: {err}", redact_url(url)),
    })?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(IndexError::InvalidConfig {
            reason: format!(
                "Qdrant URL {:?} must start with http:// or https:// (gRPC, e.g. http://localhost:6334)",
                redact_url(url)
            ),
        });
    }
    let Some(host) = uri.host() else {
        return Err(IndexError::InvalidConfig {
            reason: format!("Qdrant URL {:?} has no host", redact_url(url)),
        });
    };
    let display = match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    if uri.port_u16() == Some(6333) {
        return Err(IndexError::RestPort {
            suggestion: format!("{scheme}://{host}:6334"),
            endpoint: display,
        });
    }
    let tls = scheme == "https";
    Ok(Endpoint {
        display,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        tls,
    })
}

/// The URL without user information, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Server {
    /// Connects and checks that the server answers over gRPC.
    pub(crate) async fn open(
        url: &str,
        api_key: Option<&ApiKey>,
        timeout: Duration,
        collection: String,
    ) -> Result<Self, IndexError> {
        let parsed = check_url(url)?;
        let endpoint = parsed.display.clone();
        if let Some(key) = api_key
            && !key
                .expose()
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            // The client would put the key itself into its error message.
            return Err(IndexError::InvalidConfig {
                reason: "QDRANT_API_KEY contains characters that cannot go in a header \
                         (a trailing newline?)"
                    .to_owned(),
            });
        }
        let mut config = QdrantConfig::from_url(url)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(key) = api_key {
            config.set_api_key(key.expose());
        }
        // The version check prints to stdout, which belongs to the caller (MCP stdio).
        config.check_compatibility = false;
        let client = Qdrant::new(config).map_err(|err| IndexError::InvalidConfig {
            reason: format!("Qdrant URL {endpoint}: {err}"),
        })?;
        match client.health_check().await {
            Ok(reply) => {
                tracing::debug!(%endpoint, version = %reply.version, "connected to qdrant server");
            }
            Err(err) => return Err(classify_connect_error(&parsed, &err).await),
        }
        Ok(Self {
            client,
            collection,
            endpoint,
            dense_dim: AtomicUsize::new(0),
        })
    }

    fn err(&self, operation: &'static str, err: QdrantError) -> IndexError {
        if let QdrantError::ResponseError { status } = &err
            && status.code() == tonic::Code::NotFound
            && status.message().contains("doesn't exist")
        {
            self.dense_dim.store(0, Ordering::Relaxed);
            return IndexError::CollectionMissing {
                engine: EngineKind::Server,
                collection: self.collection.clone(),
            };
        }
        if let QdrantError::ResponseError { status } = &err
            && matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown
            )
            && looks_like_http1(&format!("{err:?}"))
        {
            return IndexError::NotGrpc {
                endpoint: self.endpoint.clone(),
                detail: status.message().to_owned(),
            };
        }
        IndexError::Server {
            operation,
            collection: self.collection.clone(),
            endpoint: self.endpoint.clone(),
            source: Box::new(err),
        }
    }

    fn invalid(&self, reason: String) -> IndexError {
        IndexError::InvalidRequest {
            engine: EngineKind::Server,
            collection: self.collection.clone(),
            reason,
        }
    }

    fn bad_point(&self, id: String, reason: &str) -> IndexError {
        IndexError::BadStoredPoint {
            engine: EngineKind::Server,
            collection: self.collection.clone(),
            id,
            reason: reason.to_owned(),
        }
    }

    pub(crate) async fn exists(&self) -> Result<bool, IndexError> {
        self.client
            .collection_exists(self.collection.clone())
            .await
            .map_err(|err| self.err("check collection", err))
    }

    async fn collection_info(&self) -> Result<qdrant::CollectionInfo, IndexError> {
        let response = self
            .client
            .collection_info(self.collection.clone())
            .await
            .map_err(|err| self.err("read collection info", err))?;
        response
            .result
            .ok_or_else(|| self.invalid("the server returned no collection info".to_owned()))
    }

    pub(crate) async fn dense_dim(&self) -> Result<usize, IndexError> {
        let cached = self.dense_dim.load(Ordering::Relaxed);
        if cached != 0 {
            return Ok(cached);
        }
        let info = self.collection_info().await?;
        let dim = dense_params(&info).map(|p| p.size as usize).unwrap_or(0);
        self.dense_dim.store(dim, Ordering::Relaxed);
        Ok(dim)
    }

    pub(crate) async fn ensure_collection(
        &self,
        spec: CollectionSpec,
        recreate: bool,
    ) -> Result<CollectionStatus, IndexError> {
        let mut status = CollectionStatus::Created;
        let mut exists = self.exists().await?;
        if recreate && exists {
            self.drop_collection().await?;
            status = CollectionStatus::Recreated;
            exists = false;
        }
        if exists {
            let info = self.collection_info().await?;
            let found = describe_info(&info);
            let expected = CollectionSpec::describe(spec.dense_dim);
            if found != expected {
                return Err(IndexError::CollectionMismatch {
                    engine: EngineKind::Server,
                    collection: self.collection.clone(),
                    expected,
                    found,
                });
            }
            self.ensure_payload_indexes(&info).await?;
            self.dense_dim.store(spec.dense_dim, Ordering::Relaxed);
            return Ok(CollectionStatus::Existing);
        }
        #[allow(deprecated)]
        // `on_disk`, `on_disk_payload`, `always_ram`: the flags older servers know
        let request = CreateCollection {
            collection_name: self.collection.clone(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: HashMap::from([(
                        DENSE_VECTOR.to_owned(),
                        VectorParams {
                            size: spec.dense_dim as u64,
                            distance: Distance::Cosine as i32,
                            on_disk: Some(spec.dense_on_disk),
                            ..VectorParams::default()
                        },
                    )]),
                })),
            }),
            sparse_vectors_config: Some(SparseVectorConfig {
                map: HashMap::from([(
                    SPARSE_VECTOR.to_owned(),
                    SparseVectorParams {
                        index: Some(SparseIndexConfig {
                            on_disk: Some(spec.index_on_disk),
                            ..SparseIndexConfig::default()
                        }),
                        modifier: Some(Modifier::Idf as i32),
                    },
                )]),
            }),
            hnsw_config: Some(HnswConfigDiff {
                m: spec.hnsw_m.map(|m| m as u64),
                ef_construct: spec.hnsw_ef_construct.map(|ef| ef as u64),
                payload_m: spec.hnsw_payload_m.map(|m| m as u64),
                on_disk: Some(spec.index_on_disk),
                ..HnswConfigDiff::default()
            }),
            on_disk_payload: Some(spec.payload_on_disk),
            optimizers_config: spec.max_segment_kb.map(|kb| OptimizersConfigDiff {
                max_segment_size: Some(kb as u64),
                ..OptimizersConfigDiff::default()
            }),
            quantization_config: spec.quantize_int8.then_some(QuantizationConfig {
                quantization: Some(quantization_config::Quantization::Scalar(
                    ScalarQuantization {
                        r#type: QuantizationType::Int8 as i32,
                        always_ram: Some(!spec.index_on_disk),
                        ..ScalarQuantization::default()
                    },
                )),
            }),
            ..CreateCollection::default()
        };
        self.client
            .create_collection(request)
            .await
            .map_err(|err| self.err("create collection", err))?;
        let info = self.collection_info().await?;
        self.ensure_payload_indexes(&info).await?;
        self.dense_dim.store(spec.dense_dim, Ordering::Relaxed);
        tracing::info!(endpoint = %self.endpoint, collection = %self.collection, dense_dim = spec.dense_dim, "created server collection");
        Ok(status)
    }

    async fn ensure_payload_indexes(
        &self,
        info: &qdrant::CollectionInfo,
    ) -> Result<(), IndexError> {
        for (name, kind) in PAYLOAD_INDEXES {
            if info.payload_schema.contains_key(*name) {
                continue;
            }
            let field_type = match kind {
                PayloadIndexKind::Keyword => FieldType::Keyword,
                PayloadIndexKind::Integer => FieldType::Integer,
                PayloadIndexKind::Datetime => FieldType::Datetime,
            };
            self.client
                .create_field_index(CreateFieldIndexCollection {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    field_name: (*name).to_owned(),
                    field_type: Some(field_type as i32),
                    ..CreateFieldIndexCollection::default()
                })
                .await
                .map_err(|err| self.err("create payload index", err))?;
        }
        Ok(())
    }

    pub(crate) async fn drop_collection(&self) -> Result<bool, IndexError> {
        let response = self
            .client
            .delete_collection(self.collection.clone())
            .await
            .map_err(|err| self.err("drop collection", err))?;
        self.dense_dim.store(0, Ordering::Relaxed);
        Ok(response.result)
    }

    /// Every write waits for the server's acknowledgement (`wait`), so it is durable
    /// whatever `_durability` asks.
    pub(crate) async fn upsert(
        &self,
        points: Vec<ChunkPoint>,
        _durability: Durability,
    ) -> Result<usize, IndexError> {
        let total = points.len();
        let mut batch = Vec::with_capacity(UPSERT_BATCH.min(total));
        let mut batch_bytes = 0;
        for point in points {
            let bytes = estimated_bytes(&point);
            if !batch.is_empty()
                && (batch.len() >= UPSERT_BATCH || batch_bytes + bytes > UPSERT_BATCH_BYTES)
            {
                self.send_upsert(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch.push(self.to_grpc_point(point)?);
            batch_bytes += bytes;
        }
        if !batch.is_empty() {
            self.send_upsert(batch).await?;
        }
        Ok(total)
    }

    async fn send_upsert(&self, points: Vec<PointStruct>) -> Result<(), IndexError> {
        self.client
            .upsert_points(UpsertPoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                points,
                ..UpsertPoints::default()
            })
            .await
            .map_err(|err| self.err("upsert", err))?;
        Ok(())
    }

    fn to_grpc_point(&self, point: ChunkPoint) -> Result<PointStruct, IndexError> {
        let payload = ChunkPoint::payload_object(&point.payload)
            .map_err(|err| self.invalid(format!("payload of point {}: {err}", point.id)))?;
        let mut sparse = point.sparse;
        sparse.sort_by_index();
        let vectors = HashMap::from([
            (
                DENSE_VECTOR.to_owned(),
                qdrant::Vector::new_dense(point.dense),
            ),
            (
                SPARSE_VECTOR.to_owned(),
                qdrant::Vector::new_sparse(sparse.indices, sparse.values),
            ),
        ]);
        Ok(PointStruct {
            id: Some(point_id(&point.id)),
            payload: grpc_payload(payload),
            vectors: Some(Vectors::from(NamedVectors { vectors })),
        })
    }

    pub(crate) async fn delete_points(&self, ids: Vec<ChunkId>) -> Result<(), IndexError> {
        for batch in ids.chunks(ID_BATCH) {
            let ids: Vec<PointId> = batch.iter().map(point_id).collect();
            let selector = PointsSelector::from(ids);
            self.delete(selector, "delete points").await?;
        }
        Ok(())
    }

    pub(crate) async fn delete_by_filter(
        &self,
        operation: &'static str,
        filters: Vec<FilterSpec>,
    ) -> Result<(), IndexError> {
        for spec in &filters {
            let filter = grpc_filter(spec).ok_or_else(|| {
                self.invalid("an empty filter would delete every point".to_owned())
            })?;
            self.delete(PointsSelector::from(filter), operation).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        selector: PointsSelector,
        operation: &'static str,
    ) -> Result<(), IndexError> {
        self.client
            .delete_points(DeletePoints {
                collection_name: self.collection.clone(),
                wait: Some(true),
                points: Some(selector),
                ..DeletePoints::default()
            })
            .await
            .map_err(|err| self.err(operation, err))?;
        Ok(())
    }

    pub(crate) async fn set_payload(
        &self,
        operation: &'static str,
        target: PayloadTarget,
        fields: Map<String, Value>,
    ) -> Result<(), IndexError> {
        let selectors: Vec<PointsSelector> = match target {
            PayloadTarget::Ids(ids) => ids
                .chunks(ID_BATCH)
                .map(|batch| PointsSelector::from(batch.iter().map(point_id).collect::<Vec<_>>()))
                .collect(),
            PayloadTarget::Filters(specs) => specs
                .iter()
                .map(|spec| {
                    grpc_filter(spec).map(PointsSelector::from).ok_or_else(|| {
                        self.invalid("an empty filter would update every point".to_owned())
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let payload = grpc_payload(fields);
        for selector in selectors {
            self.client
                .set_payload(SetPayloadPoints {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    payload: payload.clone(),
                    points_selector: Some(selector),
                    ..SetPayloadPoints::default()
                })
                .await
                .map_err(|err| self.err(operation, err))?;
        }
        Ok(())
    }

    pub(crate) async fn search(&self, plan: SearchPlan) -> Result<Vec<SearchHit>, IndexError> {
        let filter = grpc_filter(&plan.filter);
        let mut request = QueryPoints {
            collection_name: self.collection.clone(),
            limit: Some(plan.limit as u64),
            with_payload: Some(true.into()),
            with_vectors: Some(false.into()),
            ..QueryPoints::default()
        };
        match plan.query {
            PlanQuery::Dense(dense) => {
                request.query = Some(Query::new_nearest(VectorInput::new_dense(dense)));
                request.using = Some(DENSE_VECTOR.to_owned());
                request.filter = filter;
                request.params = Some(dense_search_params());
            }
            PlanQuery::Sparse(sparse) => {
                request.query = Some(Query::new_nearest(VectorInput::new_sparse(
                    sparse.indices,
                    sparse.values,
                )));
                request.using = Some(SPARSE_VECTOR.to_owned());
                request.filter = filter;
            }
            PlanQuery::Fused {
                dense,
                sparse,
                rrf_k,
                prefetch_limit,
            } => {
                // The filter goes into each prefetch: fusion only ranks what they found.
                let prefetch = |query: Query, using: &str| PrefetchQuery {
                    query: Some(query),
                    using: Some(using.to_owned()),
                    filter: filter.clone(),
                    limit: Some(prefetch_limit as u64),
                    params: (using == DENSE_VECTOR).then(dense_search_params),
                    ..PrefetchQuery::default()
                };
                request.prefetch.push(prefetch(
                    Query::new_nearest(VectorInput::new_dense(dense)),
                    DENSE_VECTOR,
                ));
                if let Some(sparse) = sparse {
                    request.prefetch.push(prefetch(
                        Query::new_nearest(VectorInput::new_sparse(sparse.indices, sparse.values)),
                        SPARSE_VECTOR,
                    ));
                }
                request.query = Some(Query::new_rrf(Rrf {
                    k: Some(rrf_k),
                    weights: Vec::new(),
                }));
            }
        }
        let response = self
            .client
            .query(request)
            .await
            .map_err(|err| self.err("search", err))?;
        response
            .result
            .into_iter()
            .map(|point| {
                let id = self.chunk_id(point.id)?;
                let payload = self.payload(&id, point.payload)?;
                Ok(SearchHit {
                    id,
                    score: point.score,
                    payload,
                })
            })
            .collect()
    }

    pub(crate) async fn count(&self, filter: FilterSpec) -> Result<u64, IndexError> {
        let response = self
            .client
            .count(CountPoints {
                collection_name: self.collection.clone(),
                filter: grpc_filter(&filter),
                exact: Some(true),
                ..CountPoints::default()
            })
            .await
            .map_err(|err| self.err("count", err))?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    pub(crate) async fn scroll(
        &self,
        filter: FilterSpec,
        limit: usize,
        offset: Option<ChunkId>,
        with_vectors: bool,
    ) -> Result<ScrollPage, IndexError> {
        let limit = u32::try_from(limit)
            .map_err(|_| self.invalid(format!("scroll limit {limit} is too large")))?;
        let response = self
            .client
            .scroll(ScrollPoints {
                collection_name: self.collection.clone(),
                filter: grpc_filter(&filter),
                offset: offset.as_ref().map(point_id),
                limit: Some(limit),
                with_payload: Some(true.into()),
                with_vectors: Some(with_vectors.into()),
                ..ScrollPoints::default()
            })
            .await
            .map_err(|err| self.err("scroll", err))?;
        let points = response
            .result
            .into_iter()
            .map(|point| self.to_stored(point))
            .collect::<Result<_, _>>()?;
        let next_offset = response
            .next_page_offset
            .map(|id| self.chunk_id(Some(id)))
            .transpose()?;
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
        let mut found = Vec::with_capacity(ids.len());
        for batch in ids.chunks(ID_BATCH) {
            let response = self
                .client
                .get_points(GetPoints {
                    collection_name: self.collection.clone(),
                    ids: batch.iter().map(point_id).collect(),
                    with_payload: Some(true.into()),
                    with_vectors: Some(with_vectors.into()),
                    ..GetPoints::default()
                })
                .await
                .map_err(|err| self.err("retrieve", err))?;
            let mut by_id: HashMap<ChunkId, StoredPoint> = response
                .result
                .into_iter()
                .map(|point| self.to_stored(point).map(|p| (p.id, p)))
                .collect::<Result<_, _>>()?;
            // Same order as asked, like the embedded engine.
            found.extend(batch.iter().filter_map(|id| by_id.remove(id)));
        }
        Ok(found)
    }

    pub(crate) async fn info(&self) -> Result<IndexInfo, IndexError> {
        let info = self.collection_info().await?;
        let points_count = self.count(FilterSpec::default()).await?;
        let mut payload_indexes: Vec<(String, PayloadIndexKind)> = info
            .payload_schema
            .iter()
            .filter_map(|(key, schema)| {
                let kind = match qdrant::PayloadSchemaType::try_from(schema.data_type).ok()? {
                    qdrant::PayloadSchemaType::Keyword => PayloadIndexKind::Keyword,
                    qdrant::PayloadSchemaType::Integer => PayloadIndexKind::Integer,
                    qdrant::PayloadSchemaType::Datetime => PayloadIndexKind::Datetime,
                    _ => return None,
                };
                Some((key.clone(), kind))
            })
            .collect();
        payload_indexes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(IndexInfo {
            engine: EngineKind::Server,
            collection: self.collection.clone(),
            points_count,
            indexed_vectors_count: info.indexed_vectors_count.unwrap_or(0),
            segments_count: info.segments_count,
            dense_dim: dense_params(&info).map(|p| p.size as usize).unwrap_or(0),
            payload_indexes,
        })
    }

    /// The server optimises in the background; this only reports where it stands.
    pub(crate) async fn optimize(&self) -> Result<OptimizeOutcome, IndexError> {
        let info = self.collection_info().await?;
        Ok(OptimizeOutcome {
            optimized: false,
            segments_before: info.segments_count,
            segments_after: info.segments_count,
            indexed_vectors_count: info.indexed_vectors_count.unwrap_or(0),
        })
    }

    fn chunk_id(&self, id: Option<PointId>) -> Result<ChunkId, IndexError> {
        match id.and_then(|id| id.point_id_options) {
            Some(PointIdOptions::Uuid(text)) => text
                .parse()
                .map(ChunkId::from_uuid)
                .map_err(|_| self.bad_point(text.clone(), "the id is not a UUID")),
            Some(PointIdOptions::Num(num)) => {
                Err(self.bad_point(num.to_string(), "a numeric id (chunk ids are UUIDs)"))
            }
            None => Err(self.bad_point(String::new(), "the server returned a point without id")),
        }
    }

    fn payload(
        &self,
        id: &ChunkId,
        payload: HashMap<String, qdrant::Value>,
    ) -> Result<ChunkPayload, IndexError> {
        let map: Map<String, Value> = payload
            .into_iter()
            .map(|(key, value)| (key, Value::from(value)))
            .collect();
        serde_json::from_value(Value::Object(map))
            .map_err(|err| self.bad_point(id.to_string(), &format!("payload: {err}")))
    }

    fn to_stored(&self, point: qdrant::RetrievedPoint) -> Result<StoredPoint, IndexError> {
        let id = self.chunk_id(point.id)?;
        let payload = self.payload(&id, point.payload)?;
        let vectors = match point.vectors.and_then(|v| v.vectors_options) {
            None => None,
            Some(vectors_output::VectorsOptions::Vectors(named)) => {
                let mut named = named.vectors;
                let dense = match named.remove(DENSE_VECTOR).map(|v| v.into_vector()) {
                    Some(vector_output::Vector::Dense(dense)) => dense.data,
                    _ => return Err(self.bad_point(id.to_string(), "no dense vector \"dense\"")),
                };
                let sparse = match named.remove(SPARSE_VECTOR).map(|v| v.into_vector()) {
                    Some(vector_output::Vector::Sparse(sparse)) => {
                        let mut sparse = SparseVector::new(sparse.indices, sparse.values);
                        sparse.sort_by_index();
                        sparse
                    }
                    None => SparseVector::default(),
                    Some(_) => {
                        return Err(self.bad_point(id.to_string(), "vector \"bm25\" is not sparse"));
                    }
                };
                Some(StoredVectors { dense, sparse })
            }
            Some(vectors_output::VectorsOptions::Vector(_)) => {
                return Err(self.bad_point(id.to_string(), "vectors are not named"));
            }
        };
        Ok(StoredPoint {
            id,
            payload,
            vectors,
        })
    }
}

fn point_id(id: &ChunkId) -> PointId {
    PointId::from(id.as_uuid().to_string())
}

fn grpc_payload(map: Map<String, Value>) -> HashMap<String, qdrant::Value> {
    map.into_iter()
        .map(|(key, value)| (key, qdrant::Value::from(value)))
        .collect()
}

fn estimated_bytes(point: &ChunkPoint) -> usize {
    point.dense.len() * 4
        + point.sparse.indices.len() * 8
        + point.payload.text.len()
        + point.payload.title.len()
        + 512
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The server's filter for a spec, or `None` when the spec does not constrain.
fn grpc_filter(spec: &FilterSpec) -> Option<Filter> {
    if spec.must.is_empty() {
        return None;
    }
    let must = spec.must.iter().map(|cond| match cond {
        Cond::Keywords(key, values) => Condition::matches(*key, values.clone()),
        Cond::Integers(key, values) => Condition::matches(*key, values.clone()),
        Cond::IntegerAtLeast(key, min) => Condition::range(
            *key,
            Range {
                gte: Some(*min as f64),
                ..Range::default()
            },
        ),
        Cond::Datetime { key, gte, lte } => Condition::datetime_range(
            *key,
            DatetimeRange {
                gte: gte.map(timestamp),
                lte: lte.map(timestamp),
                ..DatetimeRange::default()
            },
        ),
    });
    Some(Filter::must(must))
}

/// A dense search's parameters: the int8 copy's candidates re-scored with the original
/// vectors, as on the embedded engine (its `search_params` says why).
fn dense_search_params() -> SearchParams {
    SearchParams {
        quantization: Some(QuantizationSearchParams {
            rescore: Some(true),
            ..QuantizationSearchParams::default()
        }),
        ..SearchParams::default()
    }
}

fn dense_params(info: &qdrant::CollectionInfo) -> Option<&VectorParams> {
    let config = info
        .config
        .as_ref()?
        .params
        .as_ref()?
        .vectors_config
        .as_ref()?;
    match config.config.as_ref()? {
        vectors_config::Config::ParamsMap(map) => map.map.get(DENSE_VECTOR),
        vectors_config::Config::Params(_) => None,
    }
}

/// The same words [`CollectionSpec::describe`] uses, read from the server's config.
fn describe_info(info: &qdrant::CollectionInfo) -> String {
    let dense = match dense_params(info) {
        Some(params) if params.distance == Distance::Cosine as i32 => {
            format!(
                "dense vector \"dense\" of {} dimensions (cosine)",
                params.size
            )
        }
        Some(params) => format!(
            "dense vector \"dense\" of {} dimensions ({})",
            params.size,
            Distance::try_from(params.distance)
                .map(|d| d.as_str_name())
                .unwrap_or("unknown distance")
        ),
        None => "no dense vector \"dense\"".to_owned(),
    };
    let sparse = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.sparse_vectors_config.as_ref())
        .and_then(|s| s.map.get(SPARSE_VECTOR));
    let sparse = match sparse {
        Some(params) if params.modifier == Some(Modifier::Idf as i32) => {
            "sparse vector \"bm25\" (IDF)".to_owned()
        }
        Some(_) => "sparse vector \"bm25\" (no IDF)".to_owned(),
        None => "no sparse vector \"bm25\"".to_owned(),
    };
    format!("{dense} and {sparse}")
}

/// Whether a transport error reads like an HTTP/1 server answering an HTTP/2 handshake.
fn looks_like_http1(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    [
        "http/1",
        "frame with invalid size",
        "invalid http version",
        "invalid preface",
        "connection preface",
        "frame_size_error",
        "protocol error",
        "content-type",
        "text/html",
        "text/plain",
    ]
    .iter()
    .any(|marker| detail.contains(marker))
}

/// Explains why the first request failed: an HTTP/1 server where gRPC was expected, or
/// no server at all.
async fn classify_connect_error(endpoint: &Endpoint, err: &QdrantError) -> IndexError {
    let message = match err {
        QdrantError::ResponseError { status } => status.message().to_owned(),
        other => other.to_string(),
    };
    if looks_like_http1(&format!("{err:?}")) || probe_http1(endpoint).await {
        return IndexError::NotGrpc {
            endpoint: endpoint.display.clone(),
            detail: message,
        };
    }
    IndexError::Unreachable {
        endpoint: endpoint.display.clone(),
        detail: message,
    }
}

/// Sends an HTTP/2 connection preface and says whether the answer is an HTTP/1 status
/// line (what Qdrant's REST port, or any HTTP/1-only server, replies). Plain TCP only.
async fn probe_http1(endpoint: &Endpoint) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    if endpoint.tls {
        return false;
    }
    let probe = async {
        let mut stream =
            tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        // Connection preface followed by an empty SETTINGS frame.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await?;
        let mut reply = [0u8; 8];
        let mut read = 0;
        while read < reply.len() {
            let n = stream.read(&mut reply[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<bool, std::io::Error>(reply[..read].starts_with(b"HTTP/1."))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_port_is_refused_with_the_grpc_url() {
        let err = check_url("http://qdrant.local:6333").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, IndexError::RestPort { .. }), "{text}");
        assert!(text.contains("http://qdrant.local:6334"), "{text}");
    }

    #[test]
    fn urls_are_checked_and_credentials_never_shown() {
        let endpoint = check_url("http://localhost:6334").unwrap();
        assert_eq!(endpoint.display, "http://localhost:6334");
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port, endpoint.tls),
            ("localhost", 6334, false)
        );
        let endpoint = check_url("https://q.example").unwrap();
        assert_eq!(endpoint.display, "https://q.example");
        assert_eq!((endpoint.port, endpoint.tls), (443, true));
        let err = check_url("ftp://user:pw@q:6334").unwrap_err().to_string();
        assert!(!err.contains("pw"), "{err}");
        assert!(err.contains("http://"), "{err}");
        let err = check_url("not a url").unwrap_err().to_string();
        assert!(err.contains("not a URL"), "{err}");
        assert_eq!(
            check_url("http://user:secret@q:6334").unwrap().display,
            "http://q:6334"
        );
    }
}

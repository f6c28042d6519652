import { FileHelper, z } from '@start9labs/start-sdk'
import { sdk } from '../sdk'
import { CONFIG_SUBPATH } from '../utils'

/**
 * /data/config.json: the one settings file of every substrate binary (DESIGN §6).
 *
 * This schema mirrors `Settings` in bins/src/settings.rs key for key: nested sections,
 * snake_case keys, strict objects (the Rust loader rejects unknown keys, so this does
 * too). Every key is optional: a key that is absent takes the Rust default, so the
 * defaults live in one place and this file holds only what the operator (or the
 * package) chose. Keys that are `Option<_>` in Rust also accept null.
 *
 * bins/tests/fixtures/config.*.json are parsed by this schema (scripts/check-config-fixtures.ts)
 * and by the Rust loader (bins/tests/settings_fixture.rs), so the two cannot drift apart.
 */

const u32 = z.number().int().min(0).max(4_294_967_295)
const u64 = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const positiveU32 = u32.min(1)
/** Same rule as `check_http_url` in settings.rs: a scheme and a host. */
const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^/]/, 'must start with http:// or https:// followed by a host')
const secret = z.string().min(1)
/** A socket address as Rust's `SocketAddr` parses it: `1.2.3.4:80` or `[::1]:80`. */
const socketAddr = z
  .string()
  .regex(
    /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/,
    'must be an IP address and a port, e.g. 0.0.0.0:8765',
  )

export const sparkControlShape = z.strictObject({
  url: httpUrl.nullable().optional(),
  api_key: secret.nullable().optional(),
  verify_tls: z.boolean().optional(),
  embedding_model: z.string().min(1).optional(),
  chat_model: z.string().min(1).optional(),
  query_prefix: z.string().optional(),
  document_prefix: z.string().optional(),
  connect_timeout_secs: u64.optional(),
  request_timeout_secs: u64.optional(),
  max_retries: u32.optional(),
  max_concurrency: positiveU32.optional(),
  embed_batch_size: positiveU32.optional(),
  embed_batch_max_chars: u32.optional(),
  embed_max_input_chars: u32.optional(),
  embed_encoding: z.enum(['base64', 'float']).optional(),
})

export const embeddingShape = z.strictObject({
  local_model_dir: z.string().min(1).nullable().optional(),
  local_batch_size: u32.optional(),
})

export const qdrantShape = z.strictObject({
  url: httpUrl.nullable().optional(),
  api_key: secret.nullable().optional(),
  collection: z.string().min(1).optional(),
  embedded_dir: z.string().min(1).nullable().optional(),
  rrf_k: u32.optional(),
  embedded_shards: z.number().int().min(0).max(64).optional(),
  hnsw_m: z.number().int().min(4).max(128).optional(),
  hnsw_ef_construct: z.number().int().min(4).max(1000).optional(),
})

export const resolveShape = z.strictObject({
  default_region: z
    .string()
    .regex(/^[A-Z]{2}$/, 'must be a two-letter ISO 3166 code such as US')
    .optional(),
})

export const fuzzyShape = z.strictObject({
  min_confidence: z.number().min(0).max(1).optional(),
  max_merges_per_run: u32.optional(),
})

export const syncShape = z.strictObject({
  interval_secs: u64.optional(),
  batch_size: positiveU32.optional(),
  overlap_secs: u32.optional(),
})

export const mcpShape = z.strictObject({
  http_addr: socketAddr.optional(),
  token: secret.nullable().optional(),
  read_only: z.boolean().optional(),
  allowed_origins: z.array(z.string().min(1)).optional(),
  allowed_hosts: z.array(z.string().min(1)).optional(),
})

export const logShape = z.strictObject({
  format: z.enum(['auto', 'text', 'json']).optional(),
  filter: z.string().optional(),
})

export const configShape = z.strictObject({
  db_path: z.string().min(1).optional(),
  spark_control: sparkControlShape.optional(),
  embedding: embeddingShape.optional(),
  qdrant: qdrantShape.optional(),
  resolve: resolveShape.optional(),
  fuzzy: fuzzyShape.optional(),
  sync: syncShape.optional(),
  mcp: mcpShape.optional(),
  log: logShape.optional(),
})

export type Config = z.infer<typeof configShape>

export const configJson = FileHelper.json(
  { base: sdk.volumes.main, subpath: CONFIG_SUBPATH },
  configShape,
)

import { randomBytes } from 'node:crypto'
import { sdk } from '../sdk'
import { Config, configJson } from '../fileModels/config.json'

const { InputSpec, Value } = sdk

/**
 * The Configure form. Every field maps to one key of /data/config.json (the table in
 * docs/operator.md). A field left empty removes its key, so the binaries use their
 * built-in default; placeholders show those defaults.
 */
export const inputSpec = InputSpec.of({
  spark: Value.object(
    {
      name: 'Spark Control',
      description:
        'The OpenAI-compatible API of your GPU machines. Leave the URL empty to embed on this server with the built-in model and to skip the LLM tier of entity resolution.',
    },
    InputSpec.of({
      url: Value.text({
        name: 'URL',
        description: 'Base URL of Spark Control, e.g. https://spark.local:8443 (spark_control.url).',
        required: false,
        default: null,
        placeholder: 'https://spark.local:8443',
        inputmode: 'url',
        patterns: [
          {
            regex: '^https?://[^/].*$',
            description: 'Must start with http:// or https:// followed by a host.',
          },
        ],
      }),
      verifyTls: Value.toggle({
        name: 'Verify TLS certificate',
        description:
          'Turn off to accept the self-signed certificate Spark Control ships with (spark_control.verify_tls). Traffic stays encrypted; only the certificate check is skipped.',
        default: true,
      }),
      apiKey: Value.text({
        name: 'API key',
        description: 'Bearer key for Spark Control, if it asks for one (spark_control.api_key).',
        required: false,
        default: null,
        masked: true,
      }),
      embeddingModel: Value.text({
        name: 'Embedding model',
        description:
          'Model name as Spark Control lists it at /v1/models (spark_control.embedding_model). Changing it requires Build search index.',
        required: false,
        default: null,
        placeholder: 'Qwen/Qwen3-Embedding-0.6B',
      }),
      chatModel: Value.text({
        name: 'Chat model',
        description: 'Model that adjudicates possible duplicates (spark_control.chat_model).',
        required: false,
        default: null,
        placeholder: 'Qwen/Qwen3-8B',
      }),
    }),
  ),
  qdrant: Value.object(
    {
      name: 'Search index',
      description:
        'Leave the URL empty to keep the index on this server (embedded engine, in /data/crm.db.index). Set it to use a Qdrant server or cluster instead.',
    },
    InputSpec.of({
      url: Value.text({
        name: 'Qdrant URL',
        description:
          'gRPC URL of a Qdrant server: port 6334, not the REST port 6333 (qdrant.url).',
        required: false,
        default: null,
        placeholder: 'http://qdrant.local:6334',
        inputmode: 'url',
        patterns: [
          {
            regex: '^https?://[^/].*$',
            description: 'Must start with http:// or https:// followed by a host.',
          },
        ],
      }),
      apiKey: Value.text({
        name: 'Qdrant API key',
        description: 'API key of the Qdrant server, if it has one (qdrant.api_key).',
        required: false,
        default: null,
        masked: true,
      }),
      collection: Value.text({
        name: 'Collection',
        description: 'Collection name (qdrant.collection).',
        required: false,
        default: null,
        placeholder: 'crm_chunks',
      }),
    }),
  ),
  sync: Value.object(
    { name: 'Incremental sync', description: null },
    InputSpec.of({
      intervalSecs: Value.number({
        name: 'Interval',
        description:
          'Seconds between incremental syncs of the search index (sync.interval_secs).',
        required: true,
        default: 300,
        integer: true,
        min: 10,
        max: 86_400,
        units: 'seconds',
      }),
    }),
  ),
  mcp: Value.object(
    {
      name: 'MCP server',
      description:
        'The endpoint AI agents use. Every request must carry the token as "Authorization: Bearer <token>".',
    },
    InputSpec.of({
      token: Value.text({
        name: 'Bearer token',
        description:
          'Leave empty to have one generated (mcp.token). Use the MCP connection action to copy it.',
        required: false,
        default: null,
        masked: true,
        minLength: 32,
        generate: { charset: 'a-z,A-Z,0-9', len: 48 },
      }),
      rotateToken: Value.toggle({
        name: 'Rotate token',
        description:
          'Replace the token with a new random one. Agents registered with the old token stop working until they are given the new one.',
        default: false,
      }),
      readOnly: Value.toggle({
        name: 'Read-only',
        description: 'Remove the write tools (notes, field updates, merge review) (mcp.read_only).',
        default: false,
      }),
    }),
  ),
  advanced: Value.object(
    { name: 'Advanced', description: 'Leave empty for the defaults shown.' },
    InputSpec.of({
      queryPrefix: Value.text({
        name: 'Query prefix',
        description:
          'Text put before search queries before embedding, e.g. "query: " for e5 models (spark_control.query_prefix). Changing it requires Build search index.',
        required: false,
        default: null,
      }),
      documentPrefix: Value.text({
        name: 'Document prefix',
        description:
          'Text put before documents before embedding, e.g. "passage: " for e5 models (spark_control.document_prefix). Changing it requires Build search index.',
        required: false,
        default: null,
      }),
      minConfidence: Value.number({
        name: 'Merge confidence',
        description:
          'The chat model\'s "same entity" answer merges two records only at or above this confidence (fuzzy.min_confidence).',
        required: false,
        default: null,
        integer: false,
        min: 0,
        max: 1,
        step: 0.01,
        placeholder: '0.9',
      }),
      maxMergesPerRun: Value.number({
        name: 'Merges per run',
        description:
          'At most this many LLM merges per Resolve entities run (fuzzy.max_merges_per_run).',
        required: false,
        default: null,
        integer: true,
        min: 0,
        placeholder: '200',
      }),
      defaultRegion: Value.text({
        name: 'Phone region',
        description:
          'Country assumed for phone numbers written without a country code, as two capital letters (resolve.default_region).',
        required: false,
        default: null,
        placeholder: 'US',
        patterns: [{ regex: '^[A-Z]{2}$', description: 'Two capital letters, e.g. US or GB.' }],
      }),
      logFilter: Value.text({
        name: 'Log filter',
        description:
          'A tracing filter such as info or info,sync_watermark=debug (log.filter).',
        required: false,
        default: null,
        placeholder: 'info',
      }),
    }),
  ),
})

export type ConfigureInput = typeof inputSpec._TYPE

/** A new MCP bearer token: 32 random bytes, URL-safe base64 (43 characters). */
export function newToken(): string {
  return randomBytes(32).toString('base64url')
}

/** What the form shows for a config file (prefill maps absent or null keys to undefined). */
export function configToForm(config: Config | null) {
  const c = config ?? {}
  const orUndefined = <T>(v: T | null | undefined): T | undefined => v ?? undefined
  return {
    spark: {
      url: orUndefined(c.spark_control?.url),
      verifyTls: orUndefined(c.spark_control?.verify_tls),
      apiKey: orUndefined(c.spark_control?.api_key),
      embeddingModel: orUndefined(c.spark_control?.embedding_model),
      chatModel: orUndefined(c.spark_control?.chat_model),
    },
    qdrant: {
      url: orUndefined(c.qdrant?.url),
      apiKey: orUndefined(c.qdrant?.api_key),
      collection: orUndefined(c.qdrant?.collection),
    },
    sync: { intervalSecs: orUndefined(c.sync?.interval_secs) },
    mcp: {
      token: orUndefined(c.mcp?.token),
      rotateToken: false,
      readOnly: orUndefined(c.mcp?.read_only),
    },
    advanced: {
      queryPrefix: orUndefined(c.spark_control?.query_prefix),
      documentPrefix: orUndefined(c.spark_control?.document_prefix),
      minConfidence: orUndefined(c.fuzzy?.min_confidence),
      maxMergesPerRun: orUndefined(c.fuzzy?.max_merges_per_run),
      defaultRegion: orUndefined(c.resolve?.default_region),
      logFilter: orUndefined(c.log?.filter),
    },
  }
}

/** Trimmed text, or undefined when empty (the key is then left out of the file). */
function text(value: string | null): string | undefined {
  const trimmed = value?.trim()
  return trimmed ? trimmed : undefined
}

/** Like `text`, but keeps spaces: "query: " is a meaningful prefix. */
function prefix(value: string | null): string | undefined {
  return value ? value : undefined
}

/** Drops keys whose value is undefined, and returns undefined for an empty section. */
function section<T extends Record<string, unknown>>(value: T): T | undefined {
  const kept = Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined))
  return Object.keys(kept).length > 0 ? (kept as T) : undefined
}

/**
 * The config file after a Configure run: the keys the form owns are replaced (or
 * removed when left empty); every other key, such as the package's own `db_path` or a
 * hand-set `spark_control.max_retries`, is kept. `token` is the MCP token to store.
 */
export function applyForm(existing: Config | null, input: ConfigureInput, token: string): Config {
  const c = existing ?? {}
  const next: Config = {
    ...c,
    spark_control: section({
      ...c.spark_control,
      url: text(input.spark.url),
      api_key: text(input.spark.apiKey),
      verify_tls: input.spark.verifyTls,
      embedding_model: text(input.spark.embeddingModel),
      chat_model: text(input.spark.chatModel),
      query_prefix: prefix(input.advanced.queryPrefix),
      document_prefix: prefix(input.advanced.documentPrefix),
    }),
    qdrant: section({
      ...c.qdrant,
      url: text(input.qdrant.url),
      api_key: text(input.qdrant.apiKey),
      collection: text(input.qdrant.collection),
    }),
    resolve: section({
      ...c.resolve,
      default_region: text(input.advanced.defaultRegion),
    }),
    fuzzy: section({
      ...c.fuzzy,
      min_confidence: input.advanced.minConfidence ?? undefined,
      max_merges_per_run: input.advanced.maxMergesPerRun ?? undefined,
    }),
    sync: section({ ...c.sync, interval_secs: input.sync.intervalSecs }),
    mcp: section({ ...c.mcp, token, read_only: input.mcp.readOnly }),
    log: section({ ...c.log, filter: text(input.advanced.logFilter) }),
  }
  return section(next) ?? {}
}

/** The token to store: a fresh one when asked to rotate or when none was given. */
export function chooseToken(input: ConfigureInput): string {
  const given = text(input.mcp.token)
  return input.mcp.rotateToken || !given ? newToken() : given
}

export const configure = sdk.Action.withInput(
  'configure',

  async () => ({
    name: 'Configure',
    description:
      'Spark Control, the search index, sync interval and the MCP token: everything the substrate binaries read from /data/config.json.',
    warning: null,
    allowedStatuses: 'any',
    group: null,
    visibility: 'enabled',
  }),

  inputSpec,

  async () => configToForm(await configJson.read().once()),

  async ({ effects, input }) => {
    const existing = await configJson.read().once()
    const token = chooseToken(input)
    await configJson.write(effects, applyForm(existing, input, token))
    if (token !== existing?.mcp?.token) {
      return {
        version: '1',
        title: 'New MCP token',
        message:
          'Give this token to every agent that uses the MCP endpoint (see the MCP connection action). The old token, if any, no longer works.',
        result: {
          type: 'single',
          value: token,
          copyable: true,
          qr: false,
          masked: true,
        },
      }
    }
    return null
  },
)

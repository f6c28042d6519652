/**
 * The package's side of the shared config fixtures (bins/tests/fixtures/config.*.json);
 * bins/tests/settings_fixture.rs is the Rust side. Run by scripts/check-package.sh:
 * bundled with ncc (as the package itself is) and run with node's test runner.
 *
 *   node <bundle>/index.js <fixtures dir>
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  applyForm,
  chooseToken,
  ConfigureInput,
  configToForm,
  newToken,
} from '../startos/actions/configure'
import { Config, configShape } from '../startos/fileModels/config.json'
import { withPackageKeys } from '../startos/init/configFile'
import { parseJsonSummary } from '../startos/utils'
import { configFromLegacyEnv } from '../startos/versions/v0.2.0.0'

const fixturesDir = process.argv[2]
if (!fixturesDir) {
  throw new Error('usage: check-config-fixtures <bins/tests/fixtures directory>')
}

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(fixturesDir, name), 'utf8'))
}

/** The zod issues of a value the schema rejects, as "path: message" lines. */
function rejection(value: unknown): string {
  const parsed = configShape.safeParse(value)
  assert.equal(parsed.success, false, `accepted: ${JSON.stringify(value)}`)
  return (parsed.error?.issues ?? [])
    .map((i) => `${i.path.join('.')}: ${i.message} ${'keys' in i ? JSON.stringify(i.keys) : ''}`)
    .join('\n')
}

/** A deep copy of a fixture, for mutating. */
function copy(value: unknown): Record<string, Record<string, unknown>> {
  return JSON.parse(JSON.stringify(value)) as Record<string, Record<string, unknown>>
}

/** The form as an operator fills in every field (the complete fixture). */
const FULL_FORM: ConfigureInput = {
  spark: {
    url: 'https://spark.local:8443',
    verifyTls: false,
    apiKey: 'sk-spark-fixture',
    embeddingModel: 'intfloat/multilingual-e5-large',
    chatModel: 'Qwen/Qwen3-14B',
  },
  qdrant: {
    url: 'http://qdrant.local:6334',
    apiKey: 'qdrant-fixture-key',
    collection: 'ten31_chunks',
  },
  sync: { intervalSecs: 120 },
  mcp: {
    token: 'tok-fixture-0123456789abcdef0123456789abcdef',
    rotateToken: false,
    readOnly: true,
  },
  advanced: {
    queryPrefix: 'query: ',
    documentPrefix: 'passage: ',
    minConfidence: 0.95,
    maxMergesPerRun: 50,
    defaultRegion: 'GB',
    logFilter: 'info,sync_watermark=debug',
  },
}

/** The form left as it opens on a fresh install, token field empty. */
const EMPTY_FORM: ConfigureInput = {
  spark: { url: null, verifyTls: true, apiKey: null, embeddingModel: null, chatModel: null },
  qdrant: { url: null, apiKey: null, collection: null },
  sync: { intervalSecs: 300 },
  mcp: { token: null, rotateToken: false, readOnly: false },
  advanced: {
    queryPrefix: null,
    documentPrefix: null,
    minConfidence: null,
    maxMergesPerRun: null,
    defaultRegion: null,
    logFilter: null,
  },
}

/** What StartOS submits when the operator opens the prefilled form and saves it as is. */
function resubmit(config: Config): ConfigureInput {
  const f = configToForm(config)
  const n = <T>(v: T | undefined): T | null => v ?? null
  return {
    spark: {
      url: n(f.spark.url),
      verifyTls: f.spark.verifyTls ?? true,
      apiKey: n(f.spark.apiKey),
      embeddingModel: n(f.spark.embeddingModel),
      chatModel: n(f.spark.chatModel),
    },
    qdrant: { url: n(f.qdrant.url), apiKey: n(f.qdrant.apiKey), collection: n(f.qdrant.collection) },
    sync: { intervalSecs: f.sync.intervalSecs ?? 300 },
    mcp: { token: n(f.mcp.token), rotateToken: false, readOnly: f.mcp.readOnly ?? false },
    advanced: {
      queryPrefix: n(f.advanced.queryPrefix),
      documentPrefix: n(f.advanced.documentPrefix),
      minConfidence: n(f.advanced.minConfidence),
      maxMergesPerRun: n(f.advanced.maxMergesPerRun),
      defaultRegion: n(f.advanced.defaultRegion),
      logFilter: n(f.advanced.logFilter),
    },
  }
}

/** config.json as it stands before Configure runs: fresh install plus main's host list. */
const BEFORE_CONFIGURE: Config = {
  ...withPackageKeys(null),
  mcp: { allowed_hosts: ['192.168.1.20', 'ten31-database.local'] },
}

test('a fresh install writes exactly config.startos.fresh.json', () => {
  const fresh = fixture('config.startos.fresh.json')
  assert.deepEqual(withPackageKeys(null), fresh)
  assert.deepEqual(configShape.parse(fresh), fresh)
})

test('Configure with every field filled writes exactly config.startos.json', () => {
  const complete = fixture('config.startos.json')
  const written = applyForm(BEFORE_CONFIGURE, FULL_FORM, chooseToken(FULL_FORM))
  assert.deepEqual(written, complete)
  assert.deepEqual(configShape.parse(complete), complete)
  // Init re-applies the package keys on every start: a no-op on this file.
  assert.deepEqual(withPackageKeys(written), written)
})

test('the zod schema accepts every key of the Rust settings (config.all-keys.json)', () => {
  const all = fixture('config.all-keys.json')
  assert.deepEqual(configShape.parse(all), all)
})

test('saving the prefilled form unchanged changes nothing', () => {
  const complete = configShape.parse(fixture('config.startos.json'))
  const input = resubmit(complete)
  assert.deepEqual(applyForm(complete, input, chooseToken(input)), complete)
})

test('an empty form removes what it owns and keeps what it does not', () => {
  const complete = copy(fixture('config.startos.json'))
  // Set by hand, outside the form: survives a Configure run.
  complete.spark_control.max_retries = 9
  complete.sync.batch_size = 64
  const token = chooseToken(EMPTY_FORM)
  const written = applyForm(configShape.parse(complete), EMPTY_FORM, token)
  assert.deepEqual(written, {
    db_path: '/data/crm.db',
    log: { format: 'text' },
    mcp: {
      allowed_hosts: ['192.168.1.20', 'ten31-database.local'],
      token,
      read_only: false,
    },
    spark_control: { verify_tls: true, max_retries: 9 },
    sync: { interval_secs: 300, batch_size: 64 },
  })
  configShape.parse(written)
})

test('empty text is left out, but prefixes keep their spaces', () => {
  const form: ConfigureInput = {
    ...EMPTY_FORM,
    spark: { ...EMPTY_FORM.spark, url: '  ', chatModel: ' Qwen/Qwen3-8B ' },
    advanced: { ...EMPTY_FORM.advanced, queryPrefix: 'query: ', documentPrefix: '' },
  }
  const written = applyForm(null, form, 'x'.repeat(43))
  assert.deepEqual(written.spark_control, {
    verify_tls: true,
    chat_model: 'Qwen/Qwen3-8B',
    query_prefix: 'query: ',
  })
})

test('the MCP token is kept, generated when empty, and replaced when rotating', () => {
  const given = 'tok-fixture-0123456789abcdef0123456789abcdef'
  assert.equal(chooseToken(FULL_FORM), given)
  const generated = chooseToken(EMPTY_FORM)
  assert.match(generated, /^[A-Za-z0-9_-]{43}$/)
  const rotated = chooseToken({ ...FULL_FORM, mcp: { ...FULL_FORM.mcp, rotateToken: true } })
  assert.notEqual(rotated, given)
  assert.match(rotated, /^[A-Za-z0-9_-]{43}$/)
  assert.notEqual(newToken(), newToken())
})

test('unknown keys are rejected and named, as the Rust loader does', () => {
  const base = fixture('config.startos.json')

  const nested = copy(base)
  nested.spark_control.verify_tsl = false
  assert.match(rejection(nested), /verify_tsl/)

  const top = copy(base)
  ;(top as Record<string, unknown>).qdrant_url = 'http://qdrant.local:6334'
  assert.match(rejection(top), /qdrant_url/)

  const section = copy(base)
  section.schedule = { interval_secs: 60 }
  assert.match(rejection(section), /schedule/)
})

test('values the Rust loader rejects are rejected here too', () => {
  const base = fixture('config.startos.json')
  const cases: Array<[string, string, unknown]> = [
    ['spark_control', 'url', 'spark.local:8443'],
    ['qdrant', 'url', 'qdrant.local'],
    ['resolve', 'default_region', 'gb'],
    ['fuzzy', 'min_confidence', 1.5],
    ['spark_control', 'verify_tls', 'false'],
    ['sync', 'interval_secs', -1],
    ['sync', 'batch_size', 0],
    ['mcp', 'http_addr', 'localhost:8765'],
    ['log', 'format', 'pretty'],
  ]
  for (const [section, key, value] of cases) {
    const doc = copy(base)
    doc[section] = { ...doc[section], [key]: value }
    assert.match(rejection(doc), new RegExp(`${section}\\.${key}`), `${section}.${key}`)
  }
})

test('null clears optional keys, as in Rust', () => {
  const doc = {
    spark_control: { url: null, api_key: null },
    embedding: { local_model_dir: null },
    qdrant: { url: null, api_key: null, embedded_dir: null },
    mcp: { token: null },
  }
  assert.deepEqual(configShape.parse(doc), doc)
  // ...but not where Rust has no Option.
  assert.match(rejection({ spark_control: { embedding_model: null } }), /embedding_model/)
})

test('the 0.1.0 settings file migrates into config.json', () => {
  const { config, skipped } = configFromLegacyEnv({
    SPARK_CONTROL_URL: '"https://spark.local:8443"',
    'export SPARK_CONTROL_VERIFY_TLS': 'false',
    SPARK_CONTROL_API_KEY: "'sk-legacy'",
    SPARK_EMBEDDING_MODEL: 'Qwen/Qwen3-Embedding-0.6B',
    QDRANT_URL: 'http://qdrant.embassy:6333',
    QDRANT_COLLECTION: 'crm_chunks',
    CRM_SYNC_INTERVAL_SECS: '600',
    MCP_READ_ONLY: 'yes',
    // Set by the package now, so not carried over.
    CRM_DB_PATH: '/data/old.db',
    MCP_HTTP_ADDR: '0.0.0.0:9999',
    // Empty means unset.
    QDRANT_API_KEY: '',
  })
  assert.deepEqual(skipped, [])
  assert.deepEqual(config, {
    spark_control: {
      url: 'https://spark.local:8443',
      verify_tls: false,
      api_key: 'sk-legacy',
      embedding_model: 'Qwen/Qwen3-Embedding-0.6B',
    },
    // The Python client used REST (6333); the Rust client speaks gRPC (6334).
    qdrant: { url: 'http://qdrant.embassy:6334', collection: 'crm_chunks' },
    sync: { interval_secs: 600 },
    mcp: { read_only: true },
  })
  assert.deepEqual(withPackageKeys(config).db_path, '/data/crm.db')
})

test('invalid 0.1.0 values are skipped and named, not carried over', () => {
  const { config, skipped } = configFromLegacyEnv({
    SPARK_CONTROL_URL: 'spark.local',
    SPARK_CONTROL_VERIFY_TLS: 'maybe',
    CRM_SYNC_INTERVAL_SECS: 'often',
    QDRANT_URL: 'https://qdrant.example:6333/prefix',
  })
  assert.deepEqual(skipped, ['SPARK_CONTROL_URL', 'SPARK_CONTROL_VERIFY_TLS', 'CRM_SYNC_INTERVAL_SECS'])
  assert.deepEqual(config, { qdrant: { url: 'https://qdrant.example:6334/prefix' } })
  assert.deepEqual(configFromLegacyEnv({}), { config: {}, skipped: [] })
})

test('action summaries are read from --json output', () => {
  assert.deepEqual(parseJsonSummary('{"indexed":3,"status":"done"}\n'), {
    indexed: 3,
    status: 'done',
  })
  assert.deepEqual(parseJsonSummary('{\n  "indexed": 3\n}\n'), { indexed: 3 })
  assert.deepEqual(parseJsonSummary('progress 10%\n{"deleted": 1}\n'), { deleted: 1 })
  assert.equal(parseJsonSummary('error: database is locked\n'), null)
  assert.equal(parseJsonSummary('[1, 2]'), null)
  assert.equal(parseJsonSummary(''), null)
})

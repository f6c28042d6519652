import { rename, stat } from 'node:fs/promises'
import { FileHelper, VersionInfo, z } from '@start9labs/start-sdk'
import { sdk } from '../sdk'
import { Config, configJson, configShape } from '../fileModels/config.json'
import { withPackageKeys } from '../init/configFile'
import { LEGACY_ENV_BACKUP, LEGACY_ENV_SUBPATH } from '../utils'

/**
 * The 0.1.0 settings that carry over, as `[variable, config key, kind]`. The names are
 * the ones bins/src/settings.rs still reads (its `env::TABLE`); variables the package now
 * sets itself (CRM_DB_PATH, MCP_HTTP_ADDR, CRM_INDEX_DIR, CRM_MODEL_DIR, CRM_LOG_FORMAT)
 * are left behind.
 */
const LEGACY_KEYS: ReadonlyArray<readonly [string, string, 'string' | 'bool' | 'int']> = [
  ['SPARK_CONTROL_URL', 'spark_control.url', 'string'],
  ['SPARK_CONTROL_API_KEY', 'spark_control.api_key', 'string'],
  ['SPARK_CONTROL_VERIFY_TLS', 'spark_control.verify_tls', 'bool'],
  ['SPARK_EMBEDDING_MODEL', 'spark_control.embedding_model', 'string'],
  ['SPARK_CHAT_MODEL', 'spark_control.chat_model', 'string'],
  ['QDRANT_URL', 'qdrant.url', 'string'],
  ['QDRANT_API_KEY', 'qdrant.api_key', 'string'],
  ['QDRANT_COLLECTION', 'qdrant.collection', 'string'],
  ['CRM_SYNC_INTERVAL_SECS', 'sync.interval_secs', 'int'],
  ['MCP_HTTP_TOKEN', 'mcp.token', 'string'],
  ['MCP_READ_ONLY', 'mcp.read_only', 'bool'],
]

/** Strips `export ` and matching quotes, as a shell would read `export KEY="value"`. */
function unquote(value: string): string {
  const v = value.trim()
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) {
    return v.slice(1, -1)
  }
  return v
}

function convert(raw: string, kind: 'string' | 'bool' | 'int'): unknown {
  if (kind === 'string') return raw
  if (kind === 'int') return /^\d+$/.test(raw) ? Number(raw) : raw
  const lower = raw.toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true
  if (['0', 'false', 'no', 'off'].includes(lower)) return false
  return raw
}

/**
 * The 0.1.0 Python client talked to Qdrant's REST port, 6333; the Rust client speaks
 * gRPC, which a stock Qdrant serves on 6334.
 */
function restToGrpc(url: string): string {
  return url.replace(/^(https?:\/\/[^/:]+):6333(\/|$)/, '$1:6334$2')
}

/**
 * config.json settings from a 0.1.0 KEY=value file. A value the schema rejects (say
 * `SPARK_CONTROL_VERIFY_TLS=maybe`) is left out and named in `skipped`, so one bad line
 * cannot block the update; the operator sets it again with Configure.
 */
export function configFromLegacyEnv(env: Record<string, string>): {
  config: Config
  skipped: string[]
} {
  const vars = new Map(
    Object.entries(env).map(([k, v]) => [k.trim().replace(/^export\s+/, ''), unquote(v)]),
  )
  const config: Record<string, Record<string, unknown>> = {}
  const skipped: string[] = []
  for (const [name, key, kind] of LEGACY_KEYS) {
    const raw = vars.get(name)
    if (raw === undefined || raw === '') continue
    const [section, field] = key.split('.')
    let value = convert(raw, kind)
    if (key === 'qdrant.url' && typeof value === 'string') value = restToGrpc(value)
    const candidate = { [section]: { [field]: value } }
    if (configShape.safeParse(candidate).success) {
      config[section] = { ...config[section], [field]: value }
    } else {
      skipped.push(name)
    }
  }
  return { config: configShape.parse(config), skipped }
}

/** Section by section, `over` wins. */
function mergeConfigs(under: Config, over: Config | null): Config {
  if (!over) return under
  const merged: Record<string, unknown> = { ...under, ...over }
  for (const [key, value] of Object.entries(under)) {
    const top = (over as Record<string, unknown>)[key]
    if (value && typeof value === 'object' && top && typeof top === 'object') {
      merged[key] = { ...value, ...top }
    }
  }
  return configShape.parse(merged)
}

const legacyEnvFile = FileHelper.env(
  { base: sdk.volumes.main, subpath: LEGACY_ENV_SUBPATH },
  z.record(z.string(), z.string()),
)

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

export const v0_2_0_0 = VersionInfo.of({
  version: '0.2.0:0',
  releaseNotes:
    'The pipeline is now crm-substrate (Rust): one settings file (/data/config.json, set with Configure), an MCP server for agents, incremental sync every few minutes, and an embedded index and embedding model when no Qdrant server or Spark Control is configured. Run Build search index once after updating.',
  migrations: {
    /**
     * 0.1.0 → 0.2.0: the old KEY=value settings become config.json, and the old file
     * is renamed so the binaries (which would read ./.env from /data, above
     * config.json) no longer see it. The index format changed too: the operator is
     * asked to run Build search index (release notes; the old Python index is unused).
     */
    up: async ({ effects }) => {
      const legacy = await legacyEnvFile.read().once()
      const { config, skipped } = configFromLegacyEnv(legacy ?? {})
      if (skipped.length > 0) {
        console.warn(
          `settings not carried over from ${LEGACY_ENV_SUBPATH} (invalid values): ${skipped.join(', ')}`,
        )
      }
      const existing = await configJson.read().once()
      await configJson.write(effects, withPackageKeys(mergeConfigs(config, existing)))
      if (legacy !== null) {
        await rename(
          sdk.volumes.main.subpath(LEGACY_ENV_SUBPATH),
          sdk.volumes.main.subpath(LEGACY_ENV_BACKUP),
        )
      }
    },
    /** 0.2.0 → 0.1.0: put the old settings file back; 0.1.0 ignores config.json. */
    down: async () => {
      const backup = sdk.volumes.main.subpath(LEGACY_ENV_BACKUP)
      const original = sdk.volumes.main.subpath(LEGACY_ENV_SUBPATH)
      if ((await exists(backup)) && !(await exists(original))) {
        await rename(backup, original)
      }
    },
  },
})

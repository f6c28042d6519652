import { sdk } from '../sdk'
import { Config, configJson } from '../fileModels/config.json'
import { CRM_DB_PATH } from '../utils'

/**
 * The keys the package itself owns in config.json, applied over whatever is there.
 *
 * - `db_path` is where the CRM web server keeps its database; the substrate must read
 *   the same file, so it is reset on every start.
 * - `log.format` defaults to text, which reads better in the StartOS log viewer than
 *   the JSON lines `auto` picks when stderr is not a terminal; an operator may change it.
 *
 * `withPackageKeys(null)` is exactly what a fresh install writes
 * (bins/tests/fixtures/config.startos.fresh.json).
 */
export function withPackageKeys(config: Config | null): Config {
  return {
    ...config,
    db_path: CRM_DB_PATH,
    log: { ...config?.log, format: config?.log?.format ?? 'text' },
  }
}

/** Creates config.json on install, and keeps the package's keys right on every init. */
export const ensureConfigFile = sdk.setupOnInit(async (effects) => {
  const current = await configJson.read().once()
  const next = withPackageKeys(current)
  if (JSON.stringify(next) !== JSON.stringify(current)) {
    await configJson.write(effects, next)
  }
})

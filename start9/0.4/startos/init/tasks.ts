import { stat } from 'node:fs/promises'
import { sdk } from '../sdk'
import { buildIndex } from '../actions/buildIndex'
import { configure } from '../actions/configure'
import { configJson } from '../fileModels/config.json'
import { INDEX_SUBPATH } from '../utils'

/**
 * Tasks the operator must run before the service starts:
 * - Configure, while config.json has no MCP token (a fresh install, or an update from
 *   0.1.0, which had no MCP server);
 * - Build search index when the embedded index is missing after a restore (backups
 *   leave it out, see backups.ts) or an update from 0.1.0 (which kept its index
 *   elsewhere): the database says which rows were indexed, so incremental sync alone
 *   would never fill an empty index. Not on install: the CRM creates its database on
 *   first start, and the first incremental sync then indexes everything.
 */
export const tasks = sdk.setupOnInit(async (effects, kind) => {
  const config = await configJson.read().once()
  if (!config?.mcp?.token) {
    await sdk.action.createOwnTask(effects, configure, 'critical', {
      reason:
        'Set up Spark Control, the search index and the MCP token. Leave everything empty to run on this server alone.',
    })
  }
  const embedded = !config?.qdrant?.url
  if ((kind === 'restore' || kind === 'update') && embedded) {
    const indexExists = await stat(sdk.volumes.main.subpath(INDEX_SUBPATH)).then(
      () => true,
      () => false,
    )
    if (!indexExists) {
      await sdk.action.createOwnTask(effects, buildIndex, 'critical', {
        reason: 'The search index is missing: build it from the CRM.',
      })
    }
  }
})

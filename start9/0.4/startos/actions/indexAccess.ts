import { T } from '@start9labs/start-sdk'
import { configJson } from '../fileModels/config.json'

/**
 * When an action that writes the search index may run.
 *
 * The embedded index is one process at a time (an exclusive lock on its directory), and
 * while the service runs, `crm-mcp` holds it (it searches and syncs); so with the embedded index
 * these actions run while the service is stopped. A Qdrant server takes concurrent
 * writers, so with one configured they run at any time.
 */
export async function indexWriterStatuses(effects: T.Effects): Promise<{
  allowedStatuses: T.AllowedStatuses
  note: string
}> {
  const embedded = await configJson.read((c) => !c.qdrant?.url).const(effects)
  return embedded === false
    ? { allowedStatuses: 'any', note: '' }
    : {
        allowedStatuses: 'only-stopped',
        note: ' With the embedded index, stop the service first: the index is opened by one process at a time.',
      }
}

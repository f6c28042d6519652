import { sdk } from '../sdk'
import { buildIndex } from './buildIndex'
import { configure } from './configure'
import { mcpConnection } from './mcpConnection'
import { resolveEntities } from './resolveEntities'
import { syncNow } from './syncNow'

/** Every action, in the order the StartOS UI shows them. */
export const actions = sdk.Actions.of()
  .addAction(configure)
  .addAction(buildIndex)
  .addAction(syncNow)
  .addAction(resolveEntities)
  .addAction(mcpConnection)

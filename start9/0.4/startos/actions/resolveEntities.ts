import { sdk } from '../sdk'
import { runSteps, stepsResult } from '../utils'

/**
 * Resolve entities: the deterministic resolver, then the LLM tier on the candidates it
 * flagged. Both work on SQLite only, so they run whatever the service is doing; the
 * next sync carries merges into the index.
 */
export const resolveEntities = sdk.Action.withoutInput(
  'resolve-entities',

  async () => ({
    name: 'Resolve entities',
    description:
      'Links CRM rows that are the same person or organisation (crm-resolve), then asks the Spark Control chat model about the possible duplicates it flagged (crm-fuzzy). Without Spark Control, the flagged pairs stay pending for review through the MCP server.',
    warning: null,
    allowedStatuses: 'any',
    group: 'Entities',
    visibility: 'enabled',
  }),

  async ({ effects }) => {
    const outcomes = await runSteps(effects, 'resolve-entities', [
      ['crm-resolve'],
      ['crm-fuzzy'],
    ])
    return stepsResult('Entities resolved', outcomes)
  },
)

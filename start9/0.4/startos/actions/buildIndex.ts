import { sdk } from '../sdk'
import { runSteps, stepsResult } from '../utils'
import { indexWriterStatuses } from './indexAccess'

/**
 * Build search index: deterministic entity resolution, then a full rebuild of the
 * index (`crm-backfill --recreate` drops and recreates the collection). Needed after
 * install, after a restore (the embedded index is not backed up), and after changing
 * the embedding model or its prefixes.
 */
export const buildIndex = sdk.Action.withoutInput(
  'build-index',

  async ({ effects }) => {
    const { allowedStatuses, note } = await indexWriterStatuses(effects)
    return {
      name: 'Build search index',
      description: `Resolves entities, then rebuilds the whole search index from the CRM (crm-resolve, then crm-backfill --recreate).${note}`,
      warning:
        'The index is dropped and rebuilt: search returns partial results until the build finishes, which can take a while on a large CRM.',
      allowedStatuses,
      group: 'Search index',
      visibility: 'enabled',
    }
  },

  async ({ effects }) => {
    const outcomes = await runSteps(effects, 'build-index', [
      ['crm-resolve'],
      ['crm-backfill', '--recreate'],
    ])
    return stepsResult('Search index built', outcomes)
  },
)

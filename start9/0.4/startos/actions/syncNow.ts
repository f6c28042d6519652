import { sdk } from '../sdk'
import { runSteps, stepsResult } from '../utils'
import { indexWriterStatuses } from './indexAccess'

/** Sync now: one incremental sync, without waiting for the next scheduled one. */
export const syncNow = sdk.Action.withoutInput(
  'sync-now',

  async ({ effects }) => {
    const { allowedStatuses, note } = await indexWriterStatuses(effects)
    return {
      name: 'Sync now',
      description: `Indexes what changed in the CRM since the last sync (crm-sync).${note}`,
      warning: null,
      allowedStatuses,
      group: 'Search index',
      visibility: 'enabled',
    }
  },

  async ({ effects }) => {
    const outcomes = await runSteps(effects, 'sync-now', [['crm-sync']])
    return stepsResult('Sync finished', outcomes)
  },
)

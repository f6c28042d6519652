import { sdk } from './sdk'
import { INDEX_SUBPATH } from './utils'

/**
 * Backups hold the whole `main` volume except the embedded search index
 * (/data/crm.db.index). The index is derived data: Build search index recreates it
 * from the CRM, which is backed up. Copying it would also risk a torn copy, since the
 * engine rewrites its segment files while the service runs, and it can be as large as
 * the CRM itself. After a restore, init asks the operator to run Build search index
 * (init/index.ts). With a Qdrant server the index lives there and is not this
 * package's to back up.
 */
export const { createBackup, restoreInit } = sdk.setupBackups(async () =>
  sdk.Backups.ofVolumes('main').setOptions({ exclude: [`/${INDEX_SUBPATH}`] }),
)

import { sdk } from '../sdk'
import { actions } from '../actions'
import { restoreInit } from '../backups'
import { setInterfaces } from '../interfaces'
import { versionGraph } from '../versions'
import { ensureConfigFile } from './configFile'
import { tasks } from './tasks'

/**
 * In order: restore the volume (after a restore), migrate between versions, make sure
 * config.json exists with the package's keys, export the interfaces, register the
 * actions, then ask for what is still missing.
 */
export const init = sdk.setupInit(
  restoreInit,
  versionGraph,
  ensureConfigFile,
  setInterfaces,
  actions,
  tasks,
)

export const uninit = sdk.setupUninit(versionGraph)

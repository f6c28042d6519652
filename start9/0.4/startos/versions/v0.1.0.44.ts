import { VersionInfo } from '@start9labs/start-sdk'

/**
 * The last release of the Python package: the CRM web server plus the Phase-0 scripts,
 * configured by KEY=value settings that each action repeated. Kept in the graph so
 * StartOS can update from it (versions/v0.2.0.0.ts holds the migration).
 */
export const v0_1_0_44 = VersionInfo.of({
  version: '0.1.0:44',
  releaseNotes: 'The CRM web server with the Python Phase-0 pipeline.',
  migrations: {},
})

import { VersionGraph } from '@start9labs/start-sdk'
import { v0_1_0_44 } from './v0.1.0.44'
import { v0_2_0_0 } from './v0.2.0.0'

/** Every version StartOS can update from or to; `current` is the one being built. */
export const versionGraph = VersionGraph.of({
  current: v0_2_0_0,
  other: [v0_1_0_44],
})

import { StartSdk } from '@start9labs/start-sdk'
import { manifest } from './manifest'

/** The SDK bound to this package's manifest: every other file imports it from here. */
export const sdk = StartSdk.of().withManifest(manifest).build(true)

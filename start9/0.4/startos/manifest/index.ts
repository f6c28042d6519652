import { setupManifest } from '@start9labs/start-sdk'

/**
 * The CRM's own web-server image, left untouched: it is pulled by tag, never rebuilt
 * here. Bump this one constant to ship a new CRM release. (It lives here, not in
 * utils.ts, because utils.ts imports the SDK, which imports this manifest.)
 */
export const CRM_IMAGE_TAG = 'ghcr.io/ten31/ten31-database:0.1.0'

/**
 * The package keeps the id of the package it replaces (0.1.0:44, the CRM web server
 * plus the Python pipeline), so StartOS offers this as an update and runs the
 * migration in versions/v0.2.0.0.ts. s9pk.mk reads the id below with awk: keep the
 * single quotes.
 */
export const manifest = setupManifest({
  id: 'ten31-database',
  title: 'Ten31 Database',
  license: 'Apache-2.0',
  packageRepo: 'https://github.com/ten31/crm-substrate',
  upstreamRepo: 'https://github.com/ten31/crm-substrate',
  marketingUrl: 'https://github.com/ten31/crm-substrate',
  donationUrl: null,
  description: {
    short: 'The firm CRM, with canonical entities, hybrid search and an MCP server for agents',
    long: 'Runs the Ten31 CRM web app and the crm-substrate beside it: deterministic and LLM-assisted entity resolution, a hybrid (dense + BM25) search index kept fresh by incremental sync, and a Streamable HTTP MCP server through which AI agents read, search and annotate the CRM. Works on its own with an embedded index and an in-process embedding model; uses Spark Control and a Qdrant server when configured.',
  },
  volumes: ['main'],
  images: {
    // The CRM's own web server, referenced by tag and never rebuilt here.
    crm: {
      source: { dockerTag: CRM_IMAGE_TAG },
      arch: ['x86_64', 'aarch64'],
    },
    // The substrate binaries, built from this repository's Dockerfile. start-cli runs
    // `docker build <workdir> -f <dockerfile>` from this directory, so both paths are
    // relative to start9/0.4 and the build context is the repository root.
    substrate: {
      source: { dockerBuild: { workdir: '../..', dockerfile: '../../Dockerfile' } },
      arch: ['x86_64', 'aarch64'],
    },
  },
  dependencies: {},
})

import { healthFns, T } from '@start9labs/start-sdk'
import { sdk } from './sdk'
import { Config, configJson, configShape } from './fileModels/config.json'
import { MCP_HOST_ID, MCP_INTERFACE_ID } from './interfaces'
import {
  CONFIG_PATH,
  CRM_DB_PATH,
  CRM_UI_PORT,
  DATA_DIR,
  MCP_PORT,
  substrateMounts,
} from './utils'

/**
 * `crm-mcp` checks the Host header of every request (DNS-rebinding protection) and
 * accepts only loopback names plus `mcp.allowed_hosts`. Behind the StartOS proxy the
 * Host header is the name the agent used (.local, .onion, an IP, a domain), so the
 * package keeps that list equal to the MCP interface's hostnames. It is written before
 * config.json is read with `const` below, so this write never restarts main by itself.
 */
async function syncAllowedHosts(effects: T.Effects, hostnames: string[]): Promise<void> {
  const current = await configJson.read().once()
  if (!current) return
  const stored = current.mcp?.allowed_hosts ?? []
  if (JSON.stringify(stored) === JSON.stringify(hostnames)) return
  const next: Config = { ...current, mcp: { ...current.mcp, allowed_hosts: hostnames } }
  await configJson.write(effects, next)
}

/**
 * `crm-mcp`'s /health (no token needed): HTTP 200 with a JSON object saying
 * `"status": "ok"` (or `"ok": true`) once the database opens and the index answers;
 * anything else is reported with the server's own words.
 */
async function mcpHealth(): Promise<healthFns.HealthCheckResult> {
  try {
    const res = await fetch(`http://127.0.0.1:${MCP_PORT}/health`, {
      signal: AbortSignal.timeout(5_000),
    })
    const body: unknown = await res.json().catch(() => null)
    const fields = body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : {}
    if (res.ok && (fields.status === 'ok' || fields.ok === true)) {
      return { result: 'success', message: 'The MCP server is answering' }
    }
    const detail = fields.error ?? fields.message ?? fields.status ?? `HTTP ${res.status}`
    return { result: 'failure', message: `The MCP server is not ready: ${String(detail)}` }
  } catch (e) {
    return { result: 'starting', message: `Waiting for the MCP server: ${String(e)}` }
  }
}

export const main = sdk.setupMain(async ({ effects }) => {
  // Re-runs main (restarting the daemons) when the MCP interface's addresses change.
  const hostnames = await sdk.host
    .getOwn(effects, MCP_HOST_ID, (host) => {
      const iface = host?.bindings[MCP_PORT]?.interfaces[MCP_INTERFACE_ID]
      const names = iface?.addressInfo.hostnames.map((h) => h.hostname) ?? []
      return [...new Set(names)].sort()
    })
    .const()
  await syncAllowedHosts(effects, hostnames ?? [])

  // Every binary reads config.json when it starts, so a change to it (Configure)
  // restarts the daemons through this `const`.
  const config = await configJson.read().const(effects)
  // The file model keeps unknown keys (the SDK loosens its schema), but every binary
  // would reject them: say which, once, here.
  const strict = configShape.safeParse(config ?? {})
  if (!strict.success) {
    const issues = strict.error.issues.map((i) => {
      const where = i.path.join('.') || '(top level)'
      return `${where}: ${i.message}`
    })
    throw new Error(`${CONFIG_PATH} is not valid: ${issues.join('; ')}`)
  }
  if (!config?.mcp?.token) {
    throw new Error('The MCP server has no token yet: run the Configure action.')
  }
  const interval = config.sync?.interval_secs

  return sdk.Daemons.of(effects)
    .addDaemon('primary', {
      subcontainer: sdk.SubContainer.of(
        effects,
        { imageId: 'crm' },
        sdk.Mounts.of().mountVolume({
          volumeId: 'main',
          subpath: null,
          mountpoint: DATA_DIR,
          readonly: false,
        }),
        'crm',
      ),
      exec: {
        command: sdk.useEntrypoint(),
        env: { CRM_DB_PATH },
      },
      ready: {
        display: 'Web interface',
        fn: () =>
          sdk.healthCheck.checkPortListening(effects, CRM_UI_PORT, {
            successMessage: 'The web interface is ready',
            errorMessage: 'The web interface is not ready',
          }),
      },
      requires: [],
    })
    .addDaemon('mcp', {
      subcontainer: sdk.SubContainer.of(effects, { imageId: 'substrate' }, substrateMounts, 'mcp'),
      exec: {
        // Bound to all interfaces so the StartOS proxy reaches it; crm-mcp then insists
        // on the bearer token from config.json. `--sync-every` keeps the index in step
        // from this same process (at start, then every sync.interval_secs): the
        // embedded index admits one process at a time, so a separate `crm-sync --watch`
        // would find it held by the searches and skip its runs. While Spark Control
        // does not answer, the server serves and the sync retries.
        command: [
          'crm-mcp',
          '--config',
          CONFIG_PATH,
          '--http',
          `0.0.0.0:${MCP_PORT}`,
          '--sync-every',
          ...(interval === undefined ? [] : [String(interval)]),
        ],
        cwd: DATA_DIR,
      },
      ready: {
        display: 'MCP server',
        fn: mcpHealth,
      },
      // The CRM creates its tables on first start; crm-mcp checks them when it opens.
      requires: ['primary'],
    })
})

/**
 * Constants shared by the package, and the few helpers that more than one file needs.
 * Everything the operator can change lives in /data/config.json (fileModels/config.json.ts),
 * not here.
 */
import { T } from '@start9labs/start-sdk'
import { sdk } from './sdk'

/** Port the CRM web server listens on inside its container. */
export const CRM_UI_PORT = 8000

/** Port `crm-mcp --http` listens on (the settings default, bound to all interfaces here). */
export const MCP_PORT = 8765

/** Where the `main` volume is mounted in every container. */
export const DATA_DIR = '/data'

/** The CRM's SQLite file, on the `main` volume. */
export const CRM_DB_PATH = `${DATA_DIR}/crm.db`

/** The one settings file every substrate binary reads (DESIGN §6). */
export const CONFIG_SUBPATH = 'config.json'
export const CONFIG_PATH = `${DATA_DIR}/${CONFIG_SUBPATH}`

/**
 * The embedded search index: `<db_path>.index`, the settings default beside the
 * database. Excluded from backups (see backups.ts).
 */
export const INDEX_SUBPATH = 'crm.db.index'

/**
 * Owner of the files on the `main` volume. The CRM web server creates crm.db and its
 * -wal/-shm files as root in its image, and this package's own scripts write
 * config.json as root.
 */
export const VOLUME_OWNER_UID = 0

/** The non-root user of the `substrate` image (`USER 10001:10001` in the Dockerfile). */
export const SUBSTRATE_UID = 10001

/**
 * The settings file as written before 0.2.0: KEY=value lines that every action
 * repeated. Migrated into config.json, then renamed to LEGACY_ENV_BACKUP so the
 * binaries (which read ./.env from their working directory, /data) no longer see it.
 */
export const LEGACY_ENV_SUBPATH = '.env'
export const LEGACY_ENV_BACKUP = '.env.pre-0.2.0'

/** Stdout of a substrate binary run with `--json`: its summary object, or null. */
export function parseJsonSummary(stdout: string | Buffer): Record<string, unknown> | null {
  const text = stdout.toString().trim()
  // One document (compact or pretty-printed), else the last line that is one.
  const candidates = [text, ...text.split('\n').reverse()]
  for (const candidate of candidates) {
    const trimmed = candidate.trim()
    if (!trimmed.startsWith('{')) continue
    try {
      const value: unknown = JSON.parse(trimmed)
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        return value as Record<string, unknown>
      }
    } catch {
      // Not JSON: keep looking further up.
    }
  }
  return null
}

/** The last `n` lines of a process's stderr, for an error message. */
export function tail(text: string | Buffer, n = 15): string {
  return text.toString().trimEnd().split('\n').slice(-n).join('\n')
}

/**
 * /data for a substrate container. The volume is idmapped so that files owned by
 * VOLUME_OWNER_UID appear to be owned by the image's non-root user, and files that
 * user creates (the index, SQLite -wal/-shm files, Phase-0 tables) land on disk owned
 * by VOLUME_OWNER_UID, like everything the CRM web server writes: both processes can
 * then open the same SQLite database read-write.
 */
export const substrateMounts = sdk.Mounts.of().mountVolume({
  volumeId: 'main',
  subpath: null,
  mountpoint: DATA_DIR,
  readonly: false,
  idmap: [{ fromId: VOLUME_OWNER_UID, toId: SUBSTRATE_UID, range: 1 }],
})

/** One substrate command as an action runs it: its summary and how it ended. */
export type StepOutcome = {
  command: string
  exitCode: number | null
  summary: Record<string, unknown> | null
}

/**
 * Runs substrate binaries one after another in a temporary subcontainer with /data
 * mounted, each with `--config /data/config.json --json`, and collects their `--json`
 * summaries. A command that fails without printing a summary stops the run with its
 * stderr as the error. One that exits non-zero but still prints a summary ("nothing
 * to do", "partial failure": the binaries use distinct exit codes) is reported, and
 * the next command still runs.
 */
export async function runSteps(
  effects: T.Effects,
  name: string,
  commands: string[][],
): Promise<StepOutcome[]> {
  return sdk.SubContainer.withTemp(
    effects,
    { imageId: 'substrate' },
    substrateMounts,
    name,
    async (sub) => {
      const outcomes: StepOutcome[] = []
      for (const argv of commands) {
        const command = [...argv, '--config', CONFIG_PATH, '--json']
        // No timeout: a first index build of a large CRM takes a while.
        const res = await sub.exec(command, { cwd: DATA_DIR }, null)
        const summary = parseJsonSummary(res.stdout)
        const label = argv.join(' ')
        if (res.exitCode !== 0 && summary === null) {
          const how = res.exitSignal ? `was killed by ${res.exitSignal}` : `exited with ${res.exitCode}`
          throw new Error(`${label} ${how}:\n${tail(res.stderr)}`)
        }
        outcomes.push({ command: label, exitCode: res.exitCode, summary })
      }
      return outcomes
    },
  )
}

/** Flattens a `--json` summary into the rows of an action result. */
function summaryMembers(summary: Record<string, unknown>): T.ActionResultMember[] {
  return Object.entries(summary).map(([key, value]): T.ActionResultMember => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return {
        type: 'group',
        name: key,
        description: null,
        value: summaryMembers(value as Record<string, unknown>),
      }
    }
    return {
      type: 'single',
      name: key,
      description: null,
      value: typeof value === 'string' ? value : JSON.stringify(value),
      copyable: false,
      qr: false,
      masked: false,
    }
  })
}

/** An action result showing each step's summary as a group. */
export function stepsResult(
  title: string,
  outcomes: StepOutcome[],
): T.ActionResult & { version: '1' } {
  const nonZero = outcomes.filter((o) => o.exitCode !== 0)
  return {
    version: '1',
    title,
    message:
      nonZero.length === 0
        ? null
        : nonZero
            .map((o) => `${o.command}: exit status ${o.exitCode} (see its summary and the logs)`)
            .join('\n'),
    result: {
      type: 'group',
      value: outcomes.map((o) => ({
        type: 'group',
        name: o.command,
        description: o.exitCode === 0 ? null : `exit status ${o.exitCode}`,
        value: o.summary ? summaryMembers(o.summary) : [],
      })),
    },
  }
}

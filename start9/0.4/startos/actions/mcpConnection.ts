import { sdk } from '../sdk'
import { configJson } from '../fileModels/config.json'
import { MCP_HOST_ID, MCP_INTERFACE_ID } from '../interfaces'
import { MCP_PORT } from '../utils'

/** MCP connection: the endpoint URLs, the token, and a ready-made Claude Code command. */
export const mcpConnection = sdk.Action.withoutInput(
  'mcp-connection',

  async () => ({
    name: 'MCP connection',
    description:
      'Shows the MCP endpoint URLs and bearer token, and the command that registers them with Claude Code.',
    warning: null,
    allowedStatuses: 'any',
    group: 'MCP',
    visibility: 'enabled',
  }),

  async ({ effects }) => {
    const token = (await configJson.read((c) => c.mcp?.token ?? null).once()) ?? null
    if (!token) {
      throw new Error('No MCP token is set yet: run Configure first.')
    }
    const host = await sdk.host.getOwn(effects, MCP_HOST_ID).once()
    const found = host?.bindings[MCP_PORT]?.interfaces[MCP_INTERFACE_ID]?.addressInfo.nonLocal.format()
    const urls = [...new Set(found ?? [])]
    const first = urls[0] ?? '<URL>'
    return {
      version: '1',
      title: 'MCP connection',
      message:
        'Agents connect with Streamable HTTP and send "Authorization: Bearer <token>" on every request. docs/operator.md shows the Agent SDK configuration.',
      result: {
        type: 'group',
        value: [
          {
            type: 'single',
            name: 'Bearer token',
            description: 'Rotate it with Configure → MCP server → Rotate token.',
            value: token,
            copyable: true,
            qr: false,
            masked: true,
          },
          ...urls.map((url, i) => ({
            type: 'single' as const,
            name: i === 0 ? 'Endpoint' : `Endpoint ${i + 1}`,
            description: null,
            value: url,
            copyable: true,
            qr: false,
            masked: false,
          })),
          {
            type: 'single',
            name: 'Claude Code',
            description: 'Registers the endpoint for the current project (add --scope user for all projects).',
            value: `claude mcp add --transport http ten31-crm ${first} --header "Authorization: Bearer ${token}"`,
            copyable: true,
            qr: false,
            masked: true,
          },
        ],
      },
    }
  },
)

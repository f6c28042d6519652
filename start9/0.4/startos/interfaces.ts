import { sdk } from './sdk'
import { CRM_UI_PORT, MCP_PORT } from './utils'

export const UI_HOST_ID = 'ui'
export const UI_INTERFACE_ID = 'ui'
export const MCP_HOST_ID = 'mcp'
export const MCP_INTERFACE_ID = 'mcp'

/** Two interfaces on two hosts: the CRM's web UI, and the MCP endpoint for agents. */
export const setInterfaces = sdk.setupInterfaces(async ({ effects }) => {
  const uiOrigin = await sdk.MultiHost.of(effects, UI_HOST_ID).bindPort(CRM_UI_PORT, {
    protocol: 'http',
  })
  const ui = sdk.createInterface(effects, {
    name: 'Web UI',
    id: UI_INTERFACE_ID,
    description: 'The Ten31 Database web app.',
    type: 'ui',
    masked: false,
    schemeOverride: null,
    username: null,
    path: '',
    query: {},
  })

  const mcpOrigin = await sdk.MultiHost.of(effects, MCP_HOST_ID).bindPort(MCP_PORT, {
    protocol: 'http',
  })
  const mcp = sdk.createInterface(effects, {
    name: 'MCP endpoint',
    id: MCP_INTERFACE_ID,
    description:
      'Streamable HTTP endpoint of the MCP server for AI agents. Every request needs the bearer token (see the MCP connection action).',
    type: 'api',
    masked: false,
    schemeOverride: null,
    username: null,
    path: '/mcp',
    query: {},
  })

  return [await uiOrigin.export([ui]), await mcpOrigin.export([mcp])]
})

// bench/servers/signalyard.mjs — the server under test: createServer from the built package on
// 127.0.0.1, an ephemeral port, the in-memory broker. Options: { limits } passed through.
// Compression is off (signalyard never negotiates permessage-deflate).
import { createServer } from '../../dist/server/index.js'
import { serveControl, serverOptions } from '../lib/servers.mjs'

const options = serverOptions()
const yard = await createServer({ port: 0, host: '127.0.0.1', limits: options.limits, logger: () => {} })
serveControl({
  port: yard.port,
  url: yard.url,
  extra: () => yard.health(),
  stop: () => yard.close()
})

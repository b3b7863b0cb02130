// bench/servers/signalyard.mjs — the server under test: createServer from the built package on
// 127.0.0.1, an ephemeral port, the in-memory broker. Options: { limits } passed through.
// Compression is off (signalyard never negotiates permessage-deflate).
import { createServer } from '../../dist/server/index.js'
import { serveControl, serverOptions } from '../lib/servers.mjs'

const options = serverOptions()
// The bench measures throughput and memory, not the abuse limits: one generator process sends
// far more than 5,000 frames/s per connection and opens 10k sockets from 127.0.0.1.
const BENCH_LIMITS = { messagesPerSecond: 1_000_000, messageBurst: 500_000, maxConnectionsPerIp: 1_000_000 }
const yard = await createServer({ port: 0, host: '127.0.0.1', limits: { ...BENCH_LIMITS, ...options.limits }, logger: () => {} })
serveControl({
  port: yard.port,
  url: yard.url,
  extra: () => yard.health(),
  stop: () => yard.close()
})

// bench/servers/signalyard.mjs — the server under test: createServer from the built package on
// 127.0.0.1, an ephemeral port. Options: { limits } passed through; { redis: 'redis://…', prefix }
// runs it on the Redis broker (redisBroker({ url, prefix }); every process given the same url and
// prefix is one yard) instead of the in-memory one.
// Compression is off (signalyard never negotiates permessage-deflate).
import * as server from '../../dist/server/index.js'
import { serveControl, serverOptions } from '../lib/servers.mjs'

const options = serverOptions()
// The bench measures throughput and memory, not the abuse limits: one generator process sends
// far more than 5,000 frames/s per connection and opens 10k sockets from 127.0.0.1, and the KV
// expiry loader writes 100k keys (~28 MB counted) from one connection (kv.maxOwnedBytes is 8 MiB).
const BENCH_LIMITS = { messagesPerSecond: 1_000_000, messageBurst: 500_000, maxConnectionsPerIp: 1_000_000, kv: { maxOwnedBytes: 1024 * 1024 * 1024 } }
let broker
if (options.redis !== undefined) {
  // A namespace import, so that a build without the Redis broker still serves the other scenarios.
  if (typeof server.redisBroker !== 'function') throw new Error('this build of signalyard has no redisBroker (dist/server/index.js)')
  broker = server.redisBroker({ url: options.redis, ...(options.prefix !== undefined ? { prefix: options.prefix } : {}) })
}
const yard = await server.createServer({ port: 0, host: '127.0.0.1', broker, limits: { ...BENCH_LIMITS, ...options.limits }, logger: () => {} })
serveControl({
  port: yard.port,
  url: yard.url,
  extra: () => yard.health(),
  stop: async () => {
    await yard.close()
    // A broker passed in is not closed by yard.close().
    await broker?.close()
  }
})

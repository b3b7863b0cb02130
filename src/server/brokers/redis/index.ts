/**
 * The Redis broker: any number of server processes on one Redis act as one yard. This file
 * composes its parts, which share one Context (connections, key names, process id):
 *
 * - topics (here): Redis channels `t:<topic>`. Every process subscribes once per topic with local
 *   subscribers; a publish reaches each process once (this one too, through Redis), in the
 *   publisher's order, and each process frames it once for its sockets.
 * - kv.ts: KV state in Redis, written, deleted and expired by scripts that order, store and
 *   publish in one step.
 * - claims.ts: presence and signal ids, records owned by a token of the process holding the stream.
 * - relay.ts: relay sides, paired in Redis, their traffic flow-controlled end to end.
 * - inbox.ts: each process's inbox channel `i:<pid>`, for directed frames and relay traffic.
 * - liveness.ts: up/down, heartbeats and reaping: the survivors remove what a process that stopped
 *   beating held. When Redis is lost, every local relay side and id is dropped and the server is
 *   told (it closes its sockets and refuses new ones until Redis is back): clients reconnect and
 *   resync, and nobody is served state that Redis no longer has.
 * - keys.ts: every key prefix, inbox message kind and record layout, for TypeScript and Lua alike;
 *   lua.ts: the record format and the Lua every script starts with.
 *
 * Keys and channels are listed in docs/REDIS.md.
 */
import type { Broker } from '../types.js'
import { Claims } from './claims.js'
import { Context } from './context.js'
import { Inbox } from './inbox.js'
import { Kv } from './kv.js'
import { Liveness } from './liveness.js'
import { toBuffer } from './lua.js'
import { Relay } from './relay.js'

export interface RedisBrokerOptions {
  /** Redis URL (default `redis://127.0.0.1:6379`). */
  url?: string
  /** Prefix of every key and channel (default `signalyard:`): several yards can share one Redis. */
  prefix?: string
  /** Milliseconds between this process's heartbeats (default 1000). */
  heartbeat?: number
  /**
   * A process that has not beaten for this long is dead: another process removes its ids
   * (presence `leave`) and relay sides (default 5000). Keep it well above `heartbeat`.
   */
  deadAfter?: number
  /** How often expired KV keys are swept, in ms (default 100). */
  sweepInterval?: number
}

/**
 * Create a Redis broker. createServer waits until it is connected; close it after the yard.
 *
 * @example
 * import { createServer, redisBroker } from 'signalyard/server'
 * const broker = redisBroker({ url: process.env.REDIS_URL })
 * const yard = await createServer({ port: 3000, broker })
 * // on shutdown: await yard.close(); await broker.close()
 */
export function redisBroker (options: RedisBrokerOptions = {}): Broker {
  const ctx = new Context(options.url ?? 'redis://127.0.0.1:6379', options.prefix ?? 'signalyard:')
  const inbox = new Inbox(ctx)
  const claims = new Claims(ctx, inbox)
  const relay = new Relay(ctx, inbox)
  const liveness = new Liveness(ctx, options.deadAfter ?? 5000, options.heartbeat ?? 1000, () => {
    relay.closeAll()
    claims.drop()
  })
  const kv = new Kv(ctx, options.sweepInterval ?? 100, () => liveness.up)
  liveness.start(inbox)

  return {
    ready: () => liveness.ready,
    watch: (watcher) => liveness.watch(watcher),

    subscribe: (topic, handler) => ctx.subscribe(ctx.keys.topic(topic), Kv.deliver(topic, handler)),
    unsubscribe: (topic) => ctx.unsubscribe(ctx.keys.topic(topic)),
    publish: (topic, message) => ctx.cmd.publish(ctx.keys.topic(topic), toBuffer(message)).then(() => {}),

    kvSet: kv.kvSet,
    kvDelete: kv.kvDelete,
    kvSnapshot: kv.kvSnapshot,
    kvScan: (ns, since, pageBytes) => kv.kvScan(ns, since, pageBytes),
    kvGet: kv.kvGet,
    relayOpen: relay.relayOpen,
    claim: claims.claim,
    members: (space, ns, pageBytes) => claims.members(space, ns, pageBytes),
    direct: claims.direct,

    tables: () => ({ channels: ctx.channelCount, relaySides: relay.size, claims: claims.size }),

    async stats () {
      const { kvKeys, kvBytes } = await kv.stats(liveness.up)
      return { kvKeys, kvBytes, relayPairs: relay.pairs, peers: claims.live.peers, signals: claims.live.signal }
    },

    async close () {
      if (!liveness.stop()) return
      kv.stop()
      claims.stopTimers()
      // Claims still in their grace period are handed to the other processes (they remove them
      // when the grace ends); the last process removes everything.
      await liveness.leave()
      claims.forget()
      relay.closeAll()
      await ctx.quit()
      liveness.closed()
    }
  }
}

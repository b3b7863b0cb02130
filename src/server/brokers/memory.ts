/**
 * The in-memory broker: the default, for a single server process. Topics are a Map of handlers,
 * KV state is the pure KvModel swept by one interval, relay pairing is a Map of token sides.
 */
import { KvModel } from '../../kv/model.js'
import { writeKvEvent } from '../../protocol/events.js'
import { SignalyardError } from '../../protocol/errors.js'
import { topicOf, type Broker, type RelayLink, type RelayOpened, type RelaySink, type TopicHandler } from './types.js'

export interface MemoryBrokerOptions {
  /** How often expired keys are swept, in ms (default 100). */
  sweepInterval?: number
  /** Clock in ms; monotonic by default. */
  now?: () => number
}

interface Side { key: string, sink: RelaySink, peer: Side | null, closed: boolean }

const sideKey = (ns: string, local: string, remote: string): string => JSON.stringify([ns, local, remote])

/**
 * Create the in-memory broker (what createServer uses when given no broker).
 *
 * @example
 * const yard = await createServer({ port: 0, broker: memoryBroker({ sweepInterval: 50 }) })
 */
export function memoryBroker (options: MemoryBrokerOptions = {}): Broker {
  const now = options.now ?? (() => performance.now())
  const topics = new Map<string, Set<TopicHandler>>()
  const model = new KvModel({ resolution: Math.min(100, options.sweepInterval ?? 100) })
  const sides = new Map<string, Side>()
  let pairs = 0

  const publish = (topic: string, message: Uint8Array): void => {
    const handlers = topics.get(topic)
    if (handlers !== undefined) for (const handler of handlers) handler(message)
  }
  const sweep = setInterval(() => {
    for (const change of model.sweep(now())) publish(topicOf('kv', change.ns), writeKvEvent(change))
  }, options.sweepInterval ?? 100)
  sweep.unref?.()

  const release = (side: Side): void => {
    if (side.closed) return
    side.closed = true
    sides.delete(side.key)
    const peer = side.peer
    if (peer === null) return
    pairs--
    side.peer = null
    peer.peer = null
    peer.closed = true
    sides.delete(peer.key)
    peer.sink.closed()
  }

  return {
    subscribe (topic, handler) {
      let handlers = topics.get(topic)
      if (handlers === undefined) topics.set(topic, handlers = new Set())
      handlers.add(handler)
    },
    unsubscribe (topic, handler) {
      const handlers = topics.get(topic)
      handlers?.delete(handler)
      if (handlers?.size === 0) topics.delete(topic)
    },
    publish,

    kvSet ({ ns, key, kind, value, ttl, maxKeys }) {
      const change = model.set(ns, key, kind, value, ttl, now(), maxKeys)
      publish(topicOf('kv', ns), writeKvEvent(change))
      return change
    },
    kvDelete (ns, key) {
      const change = model.delete(ns, key)
      if (change !== null) publish(topicOf('kv', ns), writeKvEvent(change))
      return change
    },
    kvSnapshot (ns, since) { return model.snapshot(ns, since, now()) },

    relayOpen (ns, local, remote, sink): RelayOpened {
      const key = sideKey(ns, local, remote)
      if (sides.has(key)) throw new SignalyardError('relay-token-in-use', `relay tokens ${local} → ${remote} are in use`)
      const side: Side = { key, sink, peer: null, closed: false }
      sides.set(key, side)
      const waiting = sides.get(sideKey(ns, remote, local))
      if (waiting !== undefined && waiting !== side && waiting.peer === null) {
        side.peer = waiting
        waiting.peer = side
        pairs++
        waiting.sink.paired()
      }
      const link: RelayLink = {
        send (frame) { side.peer?.sink.data(frame) },
        close () { release(side) }
      }
      return { link, paired: side.peer !== null }
    },

    stats () { return { kvKeys: model.size, relayPairs: pairs } },
    close () {
      clearInterval(sweep)
      topics.clear()
      for (const side of [...sides.values()]) release(side)
    }
  }
}

/**
 * The Redis broker: any number of server processes on one Redis act as one yard.
 *
 * - Topics are Redis channels (`<prefix>t:<topic>`). Every process subscribes once per topic with
 *   local subscribers; a publish reaches each process once (this one too, through Redis), in the
 *   publisher's order, and each process frames it once for its sockets.
 * - KV state lives in Redis (a hash per namespace, its epoch and seq beside it, one sorted set of
 *   expiry times). Writes, deletes and expiries are Lua scripts that order, store and publish in one
 *   step, so every replica sees the same order and an expiry is published once, by whichever
 *   process swept first.
 * - Presence and signal ids are records in a hash per namespace and space, owned by a token of the
 *   process holding the stream. Each process beats a heartbeat; the survivors reap a process that
 *   stopped beating (its ids leave, its relay sides close), so nothing it held outlives it.
 * - Directed frames and relay traffic for another process go through that process's inbox channel
 *   (`<prefix>i:<pid>`). Relay traffic is flow-controlled end to end by the relay endpoint: the
 *   receiving process acknowledges ('a') what it wrote to its socket, and the sender's stream never
 *   has more than its window in flight, so Redis's output buffers stay small without any socket
 *   being paused.
 * - When Redis is lost, every local relay side and id is dropped and the server is told (it closes
 *   its sockets and refuses new ones until Redis is back): clients reconnect and resync, and
 *   nobody is served state that Redis no longer has.
 *
 * Keys and channels are listed in the README ("Running several servers").
 */
import { Redis, ReplyError } from 'ioredis'
import { nanoid } from 'nanoid'
import type { KvChange, KvPage, KvSnapshot } from '../../kv/model.js'
import { writeKvEvent } from '../../protocol/kv.js'
import { SignalyardError, type ErrorCode } from '../../protocol/errors.js'
import { SCRIPTS, type ScriptName } from './redis-scripts.js'
import {
  writePeersEvent, writeSignalLeave,
  type Broker, type Claim, type ClaimSink, type ClaimSpace, type Member, type MemberPage, type RelayLink, type RelaySink, type TopicHandler
} from './types.js'

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

/** A relay side held by this process. */
interface Side {
  readonly addr: string
  readonly sink: RelaySink
  /** The other side's address; '' while pending. */
  peer: string
  closed: boolean
}

/** An id this process holds (or held: during its grace period `sink` is null). */
interface Held {
  readonly space: ClaimSpace
  sink: ClaimSink | null
  timer: ReturnType<typeof setTimeout> | null
  /** Waits for markers ('m': the claim's, then one per update), oldest first. */
  markers: Array<() => void>
}

type ScriptFn = (...args: Array<string | Buffer | number>) => Promise<unknown>

/** Expiries handled per sweep script run (a run that hits it goes again at once). */
const SWEEP_BATCH = 1000
/** Bytes per page when kvSnapshot reads a whole namespace. */
const SNAPSHOT_PAGE = 256 * 1024

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
  const url = options.url ?? 'redis://127.0.0.1:6379'
  const prefix = options.prefix ?? 'signalyard:'
  const heartbeat = options.heartbeat ?? 1000
  const deadAfter = options.deadAfter ?? 5000
  const pid = nanoid(10)
  const inbox = `${prefix}i:${pid}`
  const procs = `${prefix}procs`
  const expiry = `${prefix}kvx`
  /** The KV bytes the whole yard holds (entryBytes of every entry; limits.total.kv bounds it). */
  const kvBytes = `${prefix}kvbytes`
  const channelOf = (topic: string): string => `${prefix}t:${topic}`
  const inboxOf = (addr: string): string => `${prefix}i:${addr.slice(0, addr.indexOf('/'))}`
  const isLocal = (addr: string): boolean => addr.startsWith(`${pid}/`)
  /** A namespace's two KV keys: its entries and its epoch/seq. */
  const kvKeys = (ns: string): [string, string] => [`${prefix}kv:${ns}`, `${prefix}kvm:${ns}`]
  const relayKey = (ns: string, local: string, remote: string): string => `${prefix}relay:${JSON.stringify([ns, local, remote])}`

  // Commands never wait for a connection and are never replayed on a new one: state from before
  // a loss must not land in a Redis that may have restarted empty.
  const cmd = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, lazyConnect: true, retryStrategy: retry })
  const sub = new Redis(url, { autoResubscribe: true, maxRetriesPerRequest: null, lazyConnect: true, retryStrategy: retry })
  const run = {} as Record<ScriptName, ScriptFn>
  for (const [name, { keys, lua }] of Object.entries(SCRIPTS)) {
    cmd.defineCommand(name, { numberOfKeys: keys, lua })
    const fn = (cmd as unknown as Record<string, ScriptFn>)[`${name}Buffer`]
    run[name as ScriptName] = (...args) => fn.apply(cmd, args)
  }

  /** channel (as bytes, latin1) → what its messages go to. */
  const channels = new Map<string, (message: Buffer) => void>()
  const sides = new Map<string, Side>()
  const held = new Map<string, Held>()
  /** Counts for stats(), kept as sides and claims change: paired relay sides (one per pair) and live ids. */
  let pairs = 0
  const live: Record<ClaimSpace, number> = { peers: 0, signal: 0 }
  let counter = 0
  const nextAddr = (): string => `${pid}/${(++counter).toString(36)}`

  // ---- availability ----------------------------------------------------------------------
  let up = false
  let lost = false
  let closing = false
  /** Set once the inbox is subscribed: the broker serves nothing before. */
  let started = false
  /** A reconnect is being set up (cleaning what this process left in Redis, first heartbeat). */
  let recovering = false
  let lastError = ''
  const watchers = new Set<(up: boolean, reason: string) => void>()
  let readyResolve: () => void = () => {}
  let readyReject: (err: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => { readyResolve = resolve; readyReject = reject })
  ready.catch(() => {})
  const setUp = (next: boolean, reason: string): void => {
    if (up === next) return
    up = next
    for (const watcher of watchers) watcher(next, reason)
  }
  /** What this process held in Redis may be gone: drop it all and tell the server (it closes its sockets). */
  const reset = (reason: string): void => {
    if (closing || !up) return
    lost = true
    for (const side of [...sides.values()]) closeLocal(side)
    for (const h of held.values()) {
      if (h.timer !== null) clearTimeout(h.timer)
      for (const resolve of h.markers.splice(0)) resolve()
    }
    held.clear()
    live.peers = live.signal = 0
    setUp(false, reason)
  }
  const onLost = (): void => reset(lastError === '' ? 'connection to Redis lost' : lastError)
  const onReady = (): void => {
    if (!started || closing || recovering || up || cmd.status !== 'ready' || sub.status !== 'ready') return
    recovering = true
    // After a loss, remove whatever of this process survived in Redis (its sockets were closed).
    const cleaned = lost ? run.syLeave(procs, prefix, pid, '0') : Promise.resolve()
    cleaned
      .then(() => run.syBeat(procs, pid, deadAfter))
      .then(() => { readyResolve(); setUp(true, 'connected to Redis') })
      .catch((err: Error) => { lastError = err.message })
      .finally(() => { recovering = false })
  }
  for (const client of [cmd, sub]) {
    client.on('error', (err: Error) => { lastError = err.message })
    client.on('close', onLost)
    client.on('ready', onReady)
  }
  sub.on('messageBuffer', (channel: Buffer, message: Buffer) => channels.get(channel.toString('latin1'))?.(message))
  const subscribeChannel = (channel: string, handler: (message: Buffer) => void): Promise<void> => {
    channels.set(Buffer.from(channel).toString('latin1'), handler)
    return sub.subscribe(channel).then(() => {})
  }
  const start = async (): Promise<void> => {
    await Promise.all([cmd.connect(), sub.connect()])
    await subscribeChannel(inbox, onInbox)
    started = true
    onReady()
  }
  start().catch((err: Error) => readyReject(new Error(`cannot connect to Redis at ${url}: ${lastError === '' ? err.message : lastError}`)))

  // ---- liveness and sweeping ---------------------------------------------------------------
  const beat = setInterval(() => {
    // Down: try to come back (a recovery that failed without a reconnect is retried here).
    if (!up) return onReady()
    run.syBeat(procs, pid, deadAfter).then((added) => {
      // Not listed any more: this process stalled past its deadline and the others reaped it.
      // What it serves (ids, relay sides) may belong to others now: start over, like a lost Redis.
      if (Number(added) === 1) return reset('this server was reaped by the others after a stall')
      return run.syReap(procs, prefix, pid)
    }).catch(ignore)
  }, heartbeat)
  beat.unref?.()
  let sweeping = false
  const sweep = setInterval(() => {
    if (!up || sweeping) return
    sweeping = true
    const once = async (): Promise<void> => {
      for (let i = 0; i < 10; i++) if (Number(await run.syKvSweep(expiry, kvBytes, prefix, SWEEP_BATCH)) < SWEEP_BATCH) break
    }
    once().catch(ignore).finally(() => { sweeping = false })
  }, options.sweepInterval ?? 100)
  sweep.unref?.()

  // ---- inbox: directed frames, relay traffic, claims taken -------------------------------------
  function onInbox (message: Buffer): void {
    const [type, addr, body] = unpack(message)
    const what = type.toString()
    const target = addr.toString()
    if (what === 's') {
      held.get(target)?.sink?.data(body)
    } else if (what === 'm') {
      const h = held.get(target)
      h?.sink?.placed?.()
      h?.markers.shift()?.()
    } else if (what === 't') {
      const h = held.get(target)
      if (h === undefined || h.sink === null) return
      const sink = h.sink
      held.delete(target)
      live[h.space]--
      for (const resolve of h.markers.splice(0)) resolve()
      sink.taken()
    } else {
      const side = sides.get(target)
      if (side === undefined || side.closed) return
      if (what === 'd') side.sink.data(body)
      else if (what === 'a') side.sink.acked(Number(body.toString()))
      else if (what === 'p' && side.peer === '') {
        setPeer(side, body.toString())
        side.sink.paired()
      } else if (what === 'c') {
        closeLocal(side, body.length === 0 ? undefined : body.toString() as ErrorCode)
      }
    }
  }

  /** Forget a side of this process (false when it was gone already). */
  const drop = (side: Side): boolean => {
    if (side.closed) return false
    side.closed = true
    pairs -= pairOf(side)
    sides.delete(side.addr)
    return true
  }
  /** 1 when `side` counts as a relay pair in stats (each pair counted once, on one side). */
  const pairOf = (side: Side): number => side.peer !== '' && (!isLocal(side.peer) || side.addr < side.peer) ? 1 : 0
  /** Set a side's peer, keeping the pair count (stats() is O(1)). */
  const setPeer = (side: Side, peer: string): void => {
    pairs -= pairOf(side)
    side.peer = peer
    pairs += pairOf(side)
  }
  /** A side of this process ends because its peer did (or Redis was lost). */
  const closeLocal = (side: Side, reason?: ErrorCode): void => {
    if (drop(side)) side.sink.closed(reason)
  }

  const publishTo = (channel: string, message: Buffer): Promise<void> =>
    cmd.publish(channel, message).then(() => {}, ignore)

  // ---- claims ----------------------------------------------------------------------------
  const idsKey = (space: ClaimSpace, ns: string): string => `${prefix}id:${space}:${ns}`

  const claim: Broker['claim'] = async ({ space, ns, id, key, meta, maxPeers }, sink) => {
    const token = nextAddr()
    const member: Member = { id, meta: meta ?? {} }
    const leaveFrame = (m: Member): Buffer => toBuffer(space === 'peers' ? writePeersEvent(ns, 'leave', m) : writeSignalLeave(ns, id))
    const ids = idsKey(space, ns)
    const topic = channelOf(`${space}:${ns}`)
    const ref = pack(space, ns, id)
    const index = `${prefix}pc:${pid}`
    const h: Held = { space, sink, timer: null, markers: [] }
    // The answer comes on the command connection, the events and the marker on the subscriber
    // one: answer only once both arrived, so the answer is never taken for the claim's place.
    const placed = marker(h)
    held.set(token, h)
    live[space]++
    try {
      await run.syClaim(ids, topic, index, id, key, token, JSON.stringify(member.meta), leaveFrame(member),
        space === 'peers' ? toBuffer(writePeersEvent(ns, 'join', member)) : '', maxPeers, ref, prefix)
    } catch (err) {
      held.delete(token)
      live[space]--
      throw coded(err)
    }
    await placed
    let released = false
    const handle: Claim = {
      async update (next) {
        if (released || held.get(token) !== h) return
        const m = { id, meta: next }
        // Answered once the update's own event reached this process (as with the memory broker).
        const marked = marker(h)
        await run.syUpdate(ids, topic, inbox, id, token, JSON.stringify(next), leaveFrame(m), toBuffer(writePeersEvent(ns, 'update', m)))
        await marked
      },
      release (graceMs) {
        if (released) return
        released = true
        if (held.get(token) !== h) return
        h.sink = null
        live[space]--
        for (const resolve of h.markers.splice(0)) resolve()
        if (graceMs <= 0) held.delete(token)
        run.syRelease(ids, topic, index, id, token, graceMs, ref, 'release').catch(ignore)
        if (graceMs <= 0) return
        h.timer = setTimeout(() => {
          held.delete(token)
          run.syRelease(ids, topic, index, id, token, 0, ref, 'expire').catch(ignore)
        }, graceMs)
        h.timer.unref?.()
      },
      async * members (pageBytes): AsyncGenerator<MemberPage, void, void> {
        let cursor = '0'
        do {
          if (released || held.get(token) !== h) return
          // The page's marker calls the sink's placed() (its place among the events) and ends this wait.
          const marked = marker(h)
          const reply = await run.syMembers(ids, inbox, cursor, pageBytes, token) as Buffer[]
          await marked
          cursor = reply[0].toString()
          const members: Member[] = []
          for (let i = 1; i + 1 < reply.length; i += 2) members.push({ id: reply[i].toString(), meta: JSON.parse(reply[i + 1].toString()) as object })
          yield { members, last: cursor === '0' }
        } while (cursor !== '0')
      }
    }
    return { claim: handle }
  }

  /** A namespace's snapshot a page at a time (syKvScan: HSCAN in steps, never the whole hash in one reply). */
  async function * scan (ns: string, since: { epoch: string, seq: number } | null, pageBytes: number): AsyncGenerator<KvPage, void, void> {
    let cursor = '0'
    do {
      const reply = await run.syKvScan(...kvKeys(ns), cursor, pageBytes, since?.epoch ?? '', since?.seq ?? 0) as Buffer[]
      cursor = reply[3].toString()
      yield pageOf(ns, reply, since)
    } while (cursor !== '0')
  }

  /** A wait for the next marker a script publishes to this process for `h`'s token. */
  const marker = (h: Held): Promise<void> => new Promise((resolve) => h.markers.push(resolve))

  // ---- the broker ------------------------------------------------------------------------
  const broker: Broker = {
    ready: () => ready,
    watch (watcher) {
      watchers.add(watcher)
      return () => { watchers.delete(watcher) }
    },

    subscribe (topic, handler) {
      const deliver: (message: Buffer) => void = topic.startsWith('kv:')
        ? (message) => handler(writeKvEvent(kvChangeOf(topic.slice(3), message)))
        : handler
      return subscribeChannel(channelOf(topic), deliver)
    },
    unsubscribe (topic) {
      const channel = channelOf(topic)
      channels.delete(Buffer.from(channel).toString('latin1'))
      return sub.unsubscribe(channel).then(() => {})
    },
    publish (topic, message) {
      return cmd.publish(channelOf(topic), toBuffer(message)).then(() => {})
    },

    async kvSet ({ ns, key, kind, value, ttl, maxKeys, maxBytes, maxTotal }) {
      let reply: Buffer[]
      try {
        reply = await run.syKvSet(...kvKeys(ns), expiry, channelOf(`kv:${ns}`), kvBytes,
          key, kind, toBuffer(value), ttl, maxKeys, nanoid(12), pack(ns, key), bound(maxBytes), bound(maxTotal)) as Buffer[]
      } catch (err) {
        throw coded(err)
      }
      return { op: 'set', ns, epoch: reply[0].toString(), key, seq: Number(reply[1]), kind, value, ttl }
    },
    async kvDelete (ns, key) {
      const reply = await run.syKvDelete(...kvKeys(ns), expiry, channelOf(`kv:${ns}`), kvBytes, key, pack(ns, key)) as Buffer[] | null
      if (reply === null) return null
      return { op: 'delete', ns, epoch: reply[0].toString(), key, seq: Number(reply[1]) }
    },
    async kvSnapshot (ns, since) {
      // All pages at once, for callers that want the whole state (never one HGETALL reply).
      const byKey = new Map<string, KvChange>()
      const keys = new Set<string>()
      let first: KvPage | null = null
      for await (const page of scan(ns, since, SNAPSHOT_PAGE)) {
        first ??= page
        for (const key of page.keys) keys.add(key)
        for (const change of page.changes) byKey.set(change.key, change)
      }
      if (first === null || first.epoch === '') return { epoch: '', seq: 0, changes: [], keys: [] }
      return { epoch: first.epoch, seq: first.seq, changes: [...byKey.values()], keys: [...keys] }
    },
    kvScan: (ns, since, pageBytes) => scan(ns, since, pageBytes),

    async relayOpen (ns, local, remote, sink) {
      const addr = nextAddr()
      const key = relayKey(ns, local, remote)
      const side: Side = { addr, sink, peer: '', closed: false }
      sides.set(addr, side)
      let peer: string
      try {
        peer = String(await run.syRelayOpen(key, relayKey(ns, remote, local), `${prefix}pr:${pid}`, addr, prefix, pid))
      } catch (err) {
        sides.delete(addr)
        throw coded(err)
      }
      if (peer !== '') {
        setPeer(side, peer)
        const other = isLocal(peer) ? sides.get(peer) : undefined
        if (other !== undefined && other.peer === '') {
          setPeer(other, addr)
          other.sink.paired()
        }
      }
      const link: RelayLink = {
        send (frame) {
          if (side.closed || side.peer === '') return
          if (isLocal(side.peer)) sides.get(side.peer)?.sink.data(frame)
          else void publishTo(inboxOf(side.peer), pack('d', side.peer, frame))
        },
        ack (bytes) {
          if (side.closed || side.peer === '') return
          if (isLocal(side.peer)) sides.get(side.peer)?.sink.acked(bytes)
          else void publishTo(inboxOf(side.peer), pack('a', side.peer, String(bytes)))
        },
        close (reason) {
          if (!drop(side)) return
          run.syRelayClose(key, `${prefix}pr:${pid}`, addr, prefix, pid, reason ?? '').then((reply) => {
            const other = sides.get(String(reply))
            if (other !== undefined) closeLocal(other, reason)
          }, ignore)
        }
      }
      return { link, paired: peer !== '' }
    },

    claim,
    async direct (ns, to, frame) {
      const reply = await run.syDirect(idsKey('signal', ns), to, toBuffer(frame), prefix, pid)
      if (Buffer.isBuffer(reply)) {
        held.get(reply.toString())?.sink?.data(frame)
        return true
      }
      return Number(reply) === 1
    },

    tables () { return { channels: channels.size, relaySides: sides.size, claims: held.size } },

    async stats () {
      const [keys, bytes] = up ? await Promise.all([cmd.zcard(expiry), cmd.get(kvBytes)]) : [0, null]
      return { kvKeys: keys, kvBytes: Math.max(0, Number(bytes ?? 0)), relayPairs: pairs, peers: live.peers, signals: live.signal }
    },

    async close () {
      if (closing) return
      closing = true
      clearInterval(beat)
      clearInterval(sweep)
      for (const h of held.values()) if (h.timer !== null) clearTimeout(h.timer)
      // Claims still in their grace period are handed to the other processes (they remove them
      // when the grace ends); the last process removes everything.
      if (up) await run.syLeave(procs, prefix, pid, '1').catch(ignore)
      held.clear()
    live.peers = live.signal = 0
      for (const side of [...sides.values()]) closeLocal(side)
      await Promise.all([cmd.quit().catch(ignore), sub.quit().catch(ignore)])
      cmd.disconnect()
      sub.disconnect()
      up = false
    }
  }
  return broker
}

/** Reconnect after 50 ms, growing to 2 s; never give up. */
function retry (times: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(times, 6))
}

function ignore (): void {}

/** A script's refusal (`redis.error_reply('<code>')`) as the coded error it stands for. */
function coded (err: unknown): unknown {
  if (err instanceof ReplyError) {
    // Redis puts ERR before a script's error_reply text.
    const code = (err as Error).message.replace(/^ERR /, '').trim() as ErrorCode
    if (code === 'too-many-keys' || code === 'quota-exceeded' || code === 'peer-id-taken' || code === 'too-many-peers' || code === 'relay-token-in-use') {
      const what: Partial<Record<ErrorCode, string>> = {
        'too-many-keys': 'the namespace holds the most keys it may',
        'quota-exceeded': 'the namespace or the yard holds as many KV bytes as it may',
        'peer-id-taken': 'the id is held by another client',
        'too-many-peers': 'the namespace holds the most ids it may',
        'relay-token-in-use': 'these relay tokens are in use'
      }
      return new SignalyardError(code, what[code])
    }
  }
  return err
}

/** A Uint8Array as a Buffer over the same memory. */
function toBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Length-prefixed fields (`<len>:<bytes>`…), the record format the scripts read and write. */
export function pack (...fields: Array<string | Uint8Array>): Buffer {
  const parts: Buffer[] = []
  for (const field of fields) {
    const bytes = typeof field === 'string' ? Buffer.from(field) : toBuffer(field)
    parts.push(Buffer.from(`${bytes.length}:`), bytes)
  }
  return Buffer.concat(parts)
}

/** The fields of a packed record, as views into it. */
export function unpack (record: Buffer): Buffer[] {
  const fields: Buffer[] = []
  let pos = 0
  while (pos < record.length) {
    const colon = record.indexOf(0x3a, pos)
    if (colon < 0) break
    const start = colon + 1
    const end = start + Number(record.toString('latin1', pos, colon))
    fields.push(record.subarray(start, end))
    pos = end
  }
  return fields
}

/** A KV change as the scripts publish it: op, epoch, seq, ttl, kind, key, value. */
function kvChangeOf (ns: string, message: Buffer): KvChange {
  const [op, epoch, seq, ttl, kind, key, value] = unpack(message)
  const base = { ns, epoch: epoch.toString(), key: key.toString(), seq: Number(seq.toString()) }
  const name = op.toString()
  if (name === 'set') return { ...base, op: 'set', kind: Number(kind.toString()), value: new Uint8Array(value), ttl: Number(ttl.toString()) }
  return { ...base, op: name === 'expire' ? 'expire' : 'delete' }
}

/** The scan script's reply (now, epoch, seq, cursor, then key/record pairs) as a page for a replica at `since`. */
function pageOf (ns: string, reply: Buffer[], since: { epoch: string, seq: number } | null): KvPage {
  const now = Number(reply[0].toString())
  const epoch = reply[1].toString()
  const seq = Number(reply[2].toString())
  const from = since !== null && since.epoch === epoch ? since.seq : 0
  const changes: KvChange[] = []
  const keys: string[] = []
  for (let i = 4; i + 1 < reply.length; i += 2) {
    const key = reply[i].toString()
    const [n, kind, expires, value] = unpack(reply[i + 1])
    const left = Number(expires.toString()) - now
    if (left <= 0) continue
    keys.push(key)
    const entrySeq = Number(n.toString())
    if (entrySeq > from) changes.push({ op: 'set', ns, epoch, key, seq: entrySeq, kind: Number(kind.toString()), value: new Uint8Array(value), ttl: left })
  }
  return { epoch, seq, changes, keys }
}

/** A bound as a script argument (Infinity has no integer form: the largest safe one stands for it). */
function bound (n: number): number {
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER
}

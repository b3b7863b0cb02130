/**
 * The server-side API (SPEC §11): what the app that runs a yard can do without being a client —
 * publish to a namespace's echo streams, read and write its KV store, list its presence members —
 * and the `onJoin` / `onLeave` hooks. Everything goes through the broker, the way the endpoints
 * go, and sends the frames they send: on a Redis broker it reaches every process of the yard,
 * and clients cannot tell a server write from a client's.
 *
 * The hooks are per process: each process reports the members that joined through its own
 * connections, once per join and once per leave (see Presence). server.ts only wires this file.
 */
import { decodePayload, encodePayload, type EncodedPayload } from '../protocol/codec.js'
import { echoEventMeta, writeEchoEvent } from '../protocol/echo.js'
import { SignalyardError } from '../protocol/errors.js'
import { isName, NAME_MAX } from '../protocol/frames.js'
import { topicOf, type Broker, type BrokerClaimRequest, type BrokerKvEntry, type Claim, type Claimed, type ClaimSink } from './brokers/types.js'
import type { ServerContext } from './context.js'
import { PAGE_BYTES } from './endpoints/pace.js'
import type { Logger } from './logger.js'

/** A presence member as the server API gives it: its id and the meta it joined with (what a client's `peers.list()` holds). */
export type PeerMeta = { id: string } & Record<string, unknown>

/**
 * `from` of the echo EVENTs `yard.publish` sends. Stream ids are `<connection>.<n>`, so this one
 * never names a client's stream, and `echo({ self: false })` never drops it.
 */
export const SERVER_FROM = 'server'

/**
 * A namespace's KV store as the server reaches it (`yard.kv(ns)`): the store clients replicate,
 * so a write here reaches every replica as an `'update'` / `'delete'`.
 */
export interface YardKv<V = unknown> {
  /**
   * Write a key (any JSON value, a string or bytes, as a client's `kv.set`); resolves once the
   * broker has ordered it. `ttl` in ms defaults to kv.defaultTtl and is capped at kv.maxTtl.
   * Rejects with `payload-too-large` past kv.maxValue, `too-many-keys`, `quota-exceeded` (the
   * namespace's or the yard's bytes), `bad-request` for a bad key, TTL or a value JSON cannot encode.
   */
  set: (key: string, value: V, options?: { ttl?: number }) => Promise<void>
  /** The key's value as a client's replica would hold it; undefined when it is not set (or expired). */
  get: (key: string) => Promise<V | undefined>
  /** Delete a key; true when it existed. Replicas get `'delete'` (`'deleted'`). */
  delete: (key: string) => Promise<boolean>
  /** The live keys of the namespace (in no particular order). */
  keys: () => Promise<string[]>
}

/** The presence hooks of createServer (ServerOptions `onJoin` / `onLeave`). */
export interface PresenceHooks {
  onJoin?: (namespace: string, member: PeerMeta) => void | Promise<void>
  onLeave?: (namespace: string, member: PeerMeta) => void | Promise<void>
}

/** `namespace`, checked as the wire checks a namespace. */
function checkNamespace (namespace: unknown): string {
  if (!isName(namespace)) throw new SignalyardError('bad-request', `namespace must be a well-formed string of 1..${NAME_MAX} characters`)
  return namespace
}

/** A value as a client would encode it; what JSON cannot encode is a `bad-request`. */
function encode (value: unknown): EncodedPayload {
  try {
    return encodePayload(value)
  } catch (err) {
    throw new SignalyardError('bad-request', `cannot encode value: ${(err as Error).message}`)
  }
}

/**
 * Publish `data` to every echo stream of `namespace` in the yard, as an EVENT from SERVER_FROM;
 * resolves once the broker has taken it.
 */
export async function publish (ctx: ServerContext, namespace: string, data: unknown): Promise<void> {
  const ns = checkNamespace(namespace)
  const frame = writeEchoEvent(echoEventMeta(ns, SERVER_FROM), encode(data))
  // No bigger than what a client may send: every client can take it.
  if (frame.length > ctx.limits.maxFrame) {
    throw new SignalyardError('payload-too-large', `an echo message is limited to ${ctx.limits.maxFrame} bytes`)
  }
  await ctx.broker.publish(topicOf('echo', ns), frame)
}

/** `yard.kv(namespace)`: the KV store of one namespace, through the broker. */
export function kvOf<V> (ctx: ServerContext, namespace: string): YardKv<V> {
  const ns = checkNamespace(namespace)
  const { broker, limits, budgets } = ctx
  const checkKey = (key: unknown): string => {
    if (!isName(key)) throw new SignalyardError('bad-request', `key must be a well-formed string of 1..${NAME_MAX} characters`)
    return key
  }
  return {
    async set (key, value, options = {}) {
      checkKey(key)
      const { ttl } = options
      if (ttl !== undefined && (!Number.isInteger(ttl) || ttl <= 0)) {
        throw new SignalyardError('bad-request', 'ttl must be a positive integer of milliseconds')
      }
      const { kind, bytes } = encode(value)
      if (bytes.length > limits.kv.maxValue) {
        throw new SignalyardError('payload-too-large', `KV values are limited to ${limits.kv.maxValue} bytes`)
      }
      // A copy: the broker keeps the bytes, and the app may reuse its buffer.
      await broker.kvSet({
        ns, key, kind, value: new Uint8Array(bytes), ttl: Math.min(ttl ?? limits.kv.defaultTtl, limits.kv.maxTtl),
        maxKeys: limits.kv.maxKeys, maxBytes: limits.kv.maxBytes, maxTotal: budgets.kv.limit
      })
    },
    async get (key) {
      checkKey(key)
      const entry = await (broker.kvGet === undefined ? scanFor(broker, ns, key) : broker.kvGet(ns, key))
      if (entry === null) return undefined
      try {
        return decodePayload(entry.kind, entry.value) as V
      } catch {
        throw new SignalyardError('bad-frame', `the value of ${JSON.stringify(key)} does not decode`)
      }
    },
    async delete (key) {
      return await broker.kvDelete(ns, checkKey(key)) !== null
    },
    async keys () {
      // A key may come in two pages (the scan walks a table that changes meanwhile).
      const keys = new Set<string>()
      for await (const page of broker.kvScan(ns, null, PAGE_BYTES)) for (const key of page.keys) keys.add(key)
      return [...keys]
    }
  }
}

/** One key read by walking the namespace (a broker without kvGet). */
async function scanFor (broker: Broker, ns: string, key: string): Promise<BrokerKvEntry | null> {
  let found: BrokerKvEntry | null = null
  for await (const page of broker.kvScan(ns, null, PAGE_BYTES)) {
    for (const change of page.changes) if (change.key === key && change.op === 'set') found = change
  }
  return found
}

/** `yard.peers(namespace)`: every presence member of the namespace in the yard, ids in their grace period included. */
export async function peersOf (ctx: ServerContext, namespace: string): Promise<PeerMeta[]> {
  const ns = checkNamespace(namespace)
  const { broker } = ctx
  if (broker.members === undefined) throw new SignalyardError('internal-error', 'this broker cannot list members (Broker.members): yard.peers needs it')
  const members = new Map<string, PeerMeta>()
  for await (const page of broker.members('peers', ns, PAGE_BYTES)) {
    for (const { id, meta } of page.members) members.set(id, { ...meta, id })
  }
  return [...members.values()]
}

/** One member this process reported as joined: the latest claim of its id made through this process. */
interface Joined {
  readonly ns: string
  readonly id: string
  readonly key: string
  meta: object
  /** Set while its socket is gone and the id is in its grace period: the leave, when it ends. */
  timer: ReturnType<typeof setTimeout> | null
  /** Its owner claimed the id again through this process: the new claim carries on, no leave. */
  superseded: boolean
}

/**
 * The presence hooks. The broker is wrapped so that each claim of a presence id made through this
 * process is seen: the first claim of an id is a join; a later claim with the same owner key (a
 * reconnect within the grace, or a second socket taking the id over) carries on silently, as
 * clients see it; the id's release is a leave, at once for a CLOSE and after `peers.grace` for a
 * socket that went away, unless its owner claimed it again through this process meanwhile. An id
 * taken over by its owner through another process (Redis) leaves here and joins there; so every
 * join a process reports is followed by exactly one leave from the same process, at the latest
 * when the yard closes.
 */
export class Presence {
  /** `ns` and id (JSON) → the member as last claimed through this process. */
  private readonly joined = new Map<string, Joined>()
  /** Claims in flight per `ns` and id: a takeover seen meanwhile is this process's own. */
  private readonly claiming = new Map<string, number>()

  constructor (private readonly hooks: PresenceHooks, private readonly log: Logger) {}

  /** `broker` with its claims watched; every other call goes to it as it is. */
  wrap (broker: Broker): Broker {
    const claim: Broker['claim'] = (request, sink) => request.space === 'peers' ? this.claim(broker, request, sink) : broker.claim(request, sink)
    // A Proxy, not a copy: a broker that is a class instance keeps its methods and its `this`.
    return new Proxy(broker, { get: (target, prop) => prop === 'claim' ? claim : Reflect.get(target, prop) as unknown })
  }

  /** Report a leave for every member still here (the yard is closing) and stop the grace timers. */
  close (): void {
    const left = [...this.joined.values()]
    this.joined.clear()
    for (const member of left) {
      if (member.timer !== null) clearTimeout(member.timer)
      if (!member.superseded) this.report('leave', member)
    }
  }

  private async claim (broker: Broker, request: BrokerClaimRequest, sink: ClaimSink): Promise<Claimed> {
    const { ns, id, key } = request
    const slot = JSON.stringify([ns, id])
    const member: Joined = { ns, id, key, meta: request.meta ?? {}, timer: null, superseded: false }
    const watched: ClaimSink = {
      data: (frame) => sink.data(frame),
      taken: () => {
        this.taken(slot, member)
        sink.taken()
      }
    }
    if (sink.placed !== undefined) watched.placed = () => sink.placed?.()
    this.claiming.set(slot, (this.claiming.get(slot) ?? 0) + 1)
    let claimed: Claimed
    try {
      claimed = await broker.claim(request, watched)
    } catch (err) {
      this.unclaiming(slot)
      // A member taken over by a claim that then failed (Redis lost meanwhile) is gone.
      const previous = this.joined.get(slot)
      if (previous?.superseded === true && !this.claiming.has(slot)) this.left(slot, previous)
      throw err
    }
    this.unclaiming(slot)
    const previous = this.joined.get(slot)
    this.joined.set(slot, member)
    if (previous === undefined) {
      this.report('join', member)
    } else {
      if (previous.timer !== null) clearTimeout(previous.timer)
      previous.superseded = true
      // Another owner: the previous one's id ended elsewhere (another process released it) unseen here.
      if (previous.key !== key) {
        this.report('leave', previous)
        this.report('join', member)
      }
    }
    return { claim: this.watch(claimed.claim, slot, member) }
  }

  private unclaiming (slot: string): void {
    const n = (this.claiming.get(slot) ?? 1) - 1
    if (n > 0) this.claiming.set(slot, n)
    else this.claiming.delete(slot)
  }

  /** The claim handle the endpoint holds: its meta kept for the leave, its release reported. */
  private watch (claim: Claim, slot: string, member: Joined): Claim {
    let released = false
    return {
      update: (meta) => {
        if (!released && this.joined.get(slot) === member) member.meta = meta
        return claim.update(meta)
      },
      members: (pageBytes) => claim.members(pageBytes),
      release: (graceMs) => {
        claim.release(graceMs)
        if (released) return
        released = true
        if (this.joined.get(slot) !== member || member.superseded) return
        if (graceMs <= 0) return this.left(slot, member)
        member.timer = setTimeout(() => this.left(slot, member), graceMs)
        member.timer.unref?.()
      }
    }
  }

  /** The broker says another stream of the same owner took `member`'s id. */
  private taken (slot: string, member: Joined): void {
    if (this.joined.get(slot) !== member) return
    // Taken by a claim through this process (still in flight): that claim carries on.
    if (this.claiming.has(slot)) member.superseded = true
    else this.left(slot, member)
  }

  private left (slot: string, member: Joined): void {
    if (this.joined.get(slot) !== member) return
    if (member.timer !== null) clearTimeout(member.timer)
    member.timer = null
    this.joined.delete(slot)
    this.report('leave', member)
  }

  /** Call the app's hook; what it throws or rejects with is logged, never passed on. */
  private report (what: 'join' | 'leave', { ns, id, meta }: Joined): void {
    const hook = what === 'join' ? this.hooks.onJoin : this.hooks.onLeave
    if (hook === undefined) return
    const failed = (err: unknown): void => this.log('error', `${what === 'join' ? 'onJoin' : 'onLeave'} failed`, { namespace: ns, id, error: String(err) })
    try {
      const result = hook(ns, { ...meta, id })
      if (result instanceof Promise) result.catch(failed)
    } catch (err) {
      failed(err)
    }
  }
}

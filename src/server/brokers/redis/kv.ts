/**
 * KV state on Redis: a hash per namespace (`kv:<ns>`), its epoch, seq and bytes beside it
 * (`kvm:<ns>`), one sorted set of expiry times (`kvx`) and the yard's byte count (`kvbytes`).
 * Writes, deletes and expiries are scripts (kv.lua.ts) that order, store and publish in one step;
 * every process sweeps expiries, and whichever is first publishes each once. Snapshots are read a
 * page at a time (HSCAN), never the whole hash in one reply.
 */
import { nanoid } from 'nanoid'
import type { KvChange, KvPage } from '../../../kv/model.js'
import { writeKvEvent } from '../../../protocol/kv.js'
import { topicOf, type Broker, type TopicHandler } from '../types.js'
import { coded, ignore, type Context } from './context.js'
import { KV_SCRIPTS } from './kv.lua.js'
import { pack, toBuffer, unpack } from './lua.js'

/** What every kv topic starts with (`kv:<ns>`). */
const KV_TOPICS = topicOf('kv', '')

/** Expiries handled per sweep script run (a run that hits it goes again at once). */
const SWEEP_BATCH = 1000
/** Bytes per page when kvSnapshot reads a whole namespace. */
const SNAPSHOT_PAGE = 256 * 1024

type Since = { epoch: string, seq: number } | null

/** The KV methods of the broker, and the sweep of expired keys. */
export class Kv {
  private readonly run
  private readonly sweep: ReturnType<typeof setInterval>
  private sweeping = false

  /** @param isUp whether the broker serves (the sweep waits while it does not). */
  constructor (private readonly ctx: Context, sweepInterval: number, isUp: () => boolean) {
    this.run = ctx.define(KV_SCRIPTS)
    this.sweep = setInterval(() => {
      if (!isUp() || this.sweeping) return
      this.sweeping = true
      this.sweepDue().catch(ignore).finally(() => { this.sweeping = false })
    }, sweepInterval)
    this.sweep.unref?.()
  }

  private async sweepDue (): Promise<void> {
    const { keys } = this.ctx
    for (let i = 0; i < 10; i++) if (Number(await this.run.syKvSweep(keys.kvExpiry, keys.kvBytes, keys.prefix, SWEEP_BATCH)) < SWEEP_BATCH) break
  }

  /** Stop sweeping (the broker is closing). */
  stop (): void { clearInterval(this.sweep) }

  /** A topic handler for `kv:<ns>` topics: the scripts publish changes as records, sockets get KV events. */
  static deliver (topic: string, handler: TopicHandler): (message: Buffer) => void {
    return topic.startsWith(KV_TOPICS) ? (message) => handler(writeKvEvent(kvChangeOf(topic.slice(KV_TOPICS.length), message))) : handler
  }

  /** A namespace's two KV keys: its entries and its epoch/seq. */
  private kvKeys (ns: string): [string, string] { return [this.ctx.keys.kvData(ns), this.ctx.keys.kvMeta(ns)] }

  /** Broker.kvSet. */
  kvSet: Broker['kvSet'] = async ({ ns, key, kind, value, ttl, maxKeys, maxBytes, maxTotal }) => {
    const { keys } = this.ctx
    let reply: Buffer[]
    try {
      reply = await this.run.syKvSet(...this.kvKeys(ns), keys.kvExpiry, keys.topic(topicOf('kv', ns)), keys.kvBytes,
        key, kind, toBuffer(value), ttl, maxKeys, nanoid(12), pack(ns, key), bound(maxBytes), bound(maxTotal)) as Buffer[]
    } catch (err) {
      throw coded(err)
    }
    return { op: 'set', ns, epoch: reply[0].toString(), key, seq: Number(reply[1]), kind, value, ttl }
  }

  /** Broker.kvDelete. */
  kvDelete: Broker['kvDelete'] = async (ns, key) => {
    const { keys } = this.ctx
    const reply = await this.run.syKvDelete(...this.kvKeys(ns), keys.kvExpiry, keys.topic(topicOf('kv', ns)), keys.kvBytes, key, pack(ns, key)) as Buffer[] | null
    if (reply === null) return null
    return { op: 'delete', ns, epoch: reply[0].toString(), key, seq: Number(reply[1]) }
  }

  /** Broker.kvSnapshot. */
  kvSnapshot: Broker['kvSnapshot'] = async (ns, since) => {
    // All pages at once, for callers that want the whole state (never one HGETALL reply).
    const byKey = new Map<string, KvChange>()
    const keys = new Set<string>()
    let first: KvPage | null = null
    for await (const page of this.kvScan(ns, since, SNAPSHOT_PAGE)) {
      first ??= page
      for (const key of page.keys) keys.add(key)
      for (const change of page.changes) byKey.set(change.key, change)
    }
    if (first === null || first.epoch === '') return { epoch: '', seq: 0, changes: [], keys: [] }
    return { epoch: first.epoch, seq: first.seq, changes: [...byKey.values()], keys: [...keys] }
  }

  /** Broker.kvGet: one key, read with Redis's clock (an entry past its expiry is gone even before the sweep). */
  kvGet: Broker['kvGet'] = async (ns, key) => {
    const reply = await this.run.syKvGet(this.ctx.keys.kvData(ns), key) as Buffer[] | null
    if (reply === null) return null
    const [, kind, expires, value] = unpack(reply[1])
    const ttl = Number(expires.toString()) - Number(reply[0].toString())
    return ttl > 0 ? { kind: Number(kind.toString()), value: new Uint8Array(value), ttl } : null
  }

  /** A namespace's snapshot a page at a time (syKvScan: HSCAN in steps, never the whole hash in one reply). */
  async * kvScan (ns: string, since: Since, pageBytes: number): AsyncGenerator<KvPage, void, void> {
    let cursor = '0'
    do {
      const reply = await this.run.syKvScan(...this.kvKeys(ns), cursor, pageBytes, since?.epoch ?? '', since?.seq ?? 0) as Buffer[]
      cursor = reply[3].toString()
      yield pageOf(ns, reply, since)
    } while (cursor !== '0')
  }

  /** Keys and bytes the yard holds (zeros while Redis is down). */
  async stats (up: boolean): Promise<{ kvKeys: number, kvBytes: number }> {
    const { cmd, keys } = this.ctx
    const [count, bytes] = up ? await Promise.all([cmd.zcard(keys.kvExpiry), cmd.get(keys.kvBytes)]) : [0, null]
    return { kvKeys: count, kvBytes: Math.max(0, Number(bytes ?? 0)) }
  }
}

/** A KV change as the scripts publish it (RECORD.change). */
function kvChangeOf (ns: string, message: Buffer): KvChange {
  const [op, epoch, seq, ttl, kind, key, value] = unpack(message)
  const base = { ns, epoch: epoch.toString(), key: key.toString(), seq: Number(seq.toString()) }
  const name = op.toString()
  if (name === 'set') return { ...base, op: 'set', kind: Number(kind.toString()), value: new Uint8Array(value), ttl: Number(ttl.toString()) }
  return { ...base, op: name === 'expire' ? 'expire' : 'delete' }
}

/** The scan script's reply (now, epoch, seq, cursor, then key/RECORD.entry pairs) as a page for a replica at `since`. */
function pageOf (ns: string, reply: Buffer[], since: Since): KvPage {
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

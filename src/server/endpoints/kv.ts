/**
 * kv: the expiring key-value store. OPEN subscribes the connection to the namespace's changes and
 * then sends what the replica lacks (EVENT frames, one per entry) and OPENED with the epoch, seq
 * and live keys, so the replica holds the server's state when ready() resolves. Requests `set`
 * and `delete` are answered with REPLY (seq) after the broker has ordered and published them.
 */
import { writeKvEvent } from '../../protocol/events.js'
import { SignalyardError } from '../../protocol/errors.js'
import type { OpenKv, RequestFrame } from '../../protocol/frames.js'
import { topicOf } from '../brokers/types.js'
import type { Connection, OpenHandler, ServerContext, ServerStream } from '../connection.js'

/** One kv stream. A class, not closures: an idle server holds thousands of these. */
class KvStream implements ServerStream {
  constructor (private readonly conn: Connection, private readonly sid: number, readonly ns: string) {}

  private get ctx (): ServerContext { return this.conn.ctx }

  async request (frame: RequestFrame): Promise<void> {
    const { ctx: { broker, limits }, conn, sid, ns } = this
    if (frame.op === 'delete') {
      const change = await broker.kvDelete(ns, frame.key)
      return conn.reply(sid, { req: frame.req, seq: change?.seq ?? null, epoch: change?.epoch ?? null })
    }
    const { kind, payload } = frame.raw
    if (payload.length > limits.kv.maxValue) {
      throw new SignalyardError('payload-too-large', `KV values are limited to ${limits.kv.maxValue} bytes`)
    }
    const ttl = Math.min(frame.ttl ?? limits.kv.defaultTtl, limits.kv.maxTtl)
    // The value must outlive this frame's buffer: copy it out of the received message.
    const value = payload.slice()
    const change = await broker.kvSet({ ns, key: frame.key, kind, value, ttl, maxKeys: limits.kv.maxKeys })
    conn.reply(sid, { req: frame.req, seq: change.seq, epoch: change.epoch, ttl })
  }

  close (): void {
    this.ctx.hub.unsubscribe(topicOf('kv', this.ns), this.conn)
  }
}

export const openKv: OpenHandler<OpenKv> = async (ctx, conn, { sid, ns, since }) => {
  await ctx.hub.subscribe(topicOf('kv', ns), conn)
  const stream = new KvStream(conn, sid, ns)
  try {
    const snapshot = await ctx.broker.kvSnapshot(ns, since)
    for (const change of snapshot.changes) conn.send(writeKvEvent(change))
    conn.opened(sid, { id: `${conn.id}.${sid}`, epoch: snapshot.epoch, seq: snapshot.seq, keys: snapshot.keys })
  } catch (err) {
    stream.close()
    throw err
  }
  return stream
}

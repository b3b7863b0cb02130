/**
 * signal: directed messages between claimed ids (what createNode's handshake travels over). OPEN
 * claims an id in the namespace's signal space for an owner key (see claim.ts); DATA `{ to }` is
 * framed once as DATA `{ from }` (the sender's claimed id, set here, so no one can pose as another
 * id; an application's message keeps its `app: 1`) and handed to the broker, which gives it to the one stream holding `to`, and to no one else.
 * The connection is subscribed to the namespace's signal events (EVENT leave when an id is released).
 */
import { SignalyardError } from '../../protocol/errors.js'
import { NAME_MAX, type DataFrame } from '../../protocol/frames.js'
import { readSignalTo, writeSignalFrom, type OpenSignal, type SignalRequest } from '../../protocol/signal.js'
import type { Connection } from '../connection.js'
import type { OpenHandler, ServerStream, StreamEnd } from '../context.js'
import { holdClaim, type HeldClaim } from './claim.js'

/** One signal stream: a claimed id that sends and receives directed messages. */
class SignalStream implements ServerStream {
  constructor (
    private readonly conn: Connection,
    private readonly sid: number,
    readonly ns: string,
    /** The id this stream claimed: the `from` of what it sends. */
    private readonly id: string,
    private readonly held: HeldClaim,
  ) {}

  data ({ raw }: DataFrame): void | Promise<void> {
    const { conn, ns } = this
    const { limits, broker } = conn.ctx
    const { to, app, payload } = readSignalTo(raw)
    if (to === null) throw new SignalyardError('bad-request', `to must be a string of 1..${NAME_MAX} characters`)
    if (raw.payload.length > limits.peers.maxSignal) {
      throw new SignalyardError('payload-too-large', `signal messages are limited to ${limits.peers.maxSignal} bytes`)
    }
    const delivered = broker.direct(ns, to, writeSignalFrom(this.id, payload, app))
    if (delivered instanceof Promise) return delivered.then((ok) => { if (!ok) this.undeliverable(to, app) })
    if (!delivered) this.undeliverable(to, app)
  }

  /** `settled`: a pc this id started settled on a transport (counted for /metrics). */
  request (frame: SignalRequest): void {
    this.conn.ctx.metrics.settled(frame.tr)
    this.conn.reply(this.sid, { req: frame.req })
  }

  private undeliverable (to: string, app: boolean): void {
    this.conn.error(this.sid, 'unknown-peer', `no client holds ${JSON.stringify(to)} in this namespace`, app ? { to, app: 1 } : { to })
  }

  close (end: StreamEnd = 'closed'): void {
    this.held.close(end)
  }
}

export const openSignal: OpenHandler<OpenSignal> = async (ctx, conn, { sid, ns, id, key }) => {
  const held = await holdClaim(ctx, conn, { space: 'signal', sid, ns, id, key, meta: null })
  const stream = new SignalStream(conn, sid, ns, id, held)
  held.open({ id: conn.streamId(sid) })
  return stream
}

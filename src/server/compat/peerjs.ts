/**
 * PeerJS's signalling protocol (the reference is peers/peerjs-server), spoken at
 * `compat.peerjs.path` (default `/peerjs`) so unmodified PeerJS clients (`new Peer(id, { host,
 * port, path: '/peerjs' })`) can use a yard. The WebSocket is `{path}/peerjs?key&id&token`; every
 * frame is JSON text `{ type, src?, dst?, payload? }`:
 *
 *   server → client   OPEN                     the id is this socket's (also after a reconnect with
 *                                              the same token: the reference sends nothing then)
 *                     ID-TAKEN { msg }         another token holds the id; the socket closes
 *                     ERROR { msg }            missing parameters, a wrong key, a full server; closes
 *                     OFFER|ANSWER|CANDIDATE|LEAVE|EXPIRE { src, dst, payload }   forwarded
 *   client → server   HEARTBEAT                liveness (so are WebSocket pongs)
 *                     OFFER|ANSWER|CANDIDATE|LEAVE|EXPIRE { dst, payload }   to `dst`, with `src`
 *                                              set here to the sender's id (never the client's)
 *                     LEAVE without dst        gives the id up at once
 *
 * Ids are claims in the broker's signal space under namespace `peerjs:<key>` with an owner key
 * derived from the client's token (a hash: the token itself is never stored), so an id is owned
 * yard-wide, its owner reclaims it from any process (within `peers.grace` after a drop: nobody
 * else can take it meanwhile), and forwarding is the broker's directed delivery, across processes.
 * A message whose destination holds no id yet waits in the sender's queue and is tried again every
 * RETRY_MS; after EXPIRE_MS the sender gets EXPIRE (once per destination), as the reference does.
 * OFFER/ANSWER/CANDIDATE wait; LEAVE and EXPIRE to nobody are dropped.
 */
import { createHash } from 'node:crypto'
import type { WebSocket } from 'ws'
import { readFrame, Kind } from '../../protocol/codec.js'
import { isName } from '../../protocol/check.js'
import { SignalyardError } from '../../protocol/errors.js'
import { writeSignalFrom } from '../../protocol/signal.js'
import { countBad } from '../abuse.js'
import type { Claim } from '../brokers/types.js'
import { CloseCode, type ServerContext } from '../context.js'
import { CompatConnection } from './connection.js'

/** The endpoint name (metrics, `authorize`). */
export const PEERJS = 'peerjs'
/** How long a message waits for its destination before the sender gets EXPIRE (the reference's `expire_timeout`). */
export const EXPIRE_MS = 5000
/** How often waiting messages are tried again. */
export const RETRY_MS = 200
/**
 * Messages (and bytes) one connection may have waiting for absent destinations, and held for its
 * id before OPEN; the bytes also count against the server's backlog budget (limits.total.backlog).
 */
const MAX_WAITING = 256
const MAX_WAITING_BYTES = 1024 * 1024
const FORWARDED = new Set(['OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'EXPIRE'])
const WAITS = new Set(['OFFER', 'ANSWER', 'CANDIDATE'])

/** The claim namespace of PeerJS key `key`. */
export const peerjsNamespace = (key: string): string => `${PEERJS}:${key}`

const ownerKey = (token: string): string => `peerjs:${createHash('sha256').update(token).digest('base64url')}`
const utf8 = new TextDecoder('utf-8', { fatal: true })
const encoder = new TextEncoder()

/** What the WebSocket's query says. */
export interface PeerjsParams { key: string | null, id: string | null, token: string | null }

/** A message waiting for its destination. */
interface Waiting { dst: string, frame: Uint8Array, bytes: number, since: number }

/** One PeerJS client. */
export class PeerjsConnection extends CompatConnection {
  private claim: Claim | null = null
  private ns = ''
  private waiting: Waiting[] = []
  private waitingBytes = 0
  private retry: ReturnType<typeof setInterval> | null = null
  /** `again` is running. */
  private trying = false
  /** Messages for this id that came before OPEN went out. */
  private inbound: Uint8Array[] = []
  private inboundBytes = 0
  /** Per destination, the last message handed to an asynchronous broker and not answered yet. */
  private readonly sending = new Map<string, Promise<void>>()

  constructor (
    id: string, ws: WebSocket, ctx: ServerContext,
    private readonly params: PeerjsParams, private readonly keys: ReadonlySet<string>,
    private readonly gone: (conn: PeerjsConnection) => void
  ) {
    super(id, ws, ctx, PEERJS) // frames are held until the id is ours (authenticate, the claim)
  }

  /** The peer id this socket holds once OPEN went out. */
  get peerId (): string | null { return this.claim === null ? null : this.params.id }

  /** authenticate() accepted the connection: check the parameters, authorize, claim the id. */
  admit (identity: unknown): void {
    void this.start(identity).catch((err: unknown) => {
      if (this.closed) return
      if (err instanceof SignalyardError && err.code === 'peer-id-taken') {
        this.sendJson({ type: 'ID-TAKEN', payload: { msg: 'ID is taken' } })
        return this.close(CloseCode.Normal, 'id-taken')
      }
      const msg = err instanceof SignalyardError ? err.message : 'internal error'
      if (!(err instanceof SignalyardError)) this.ctx.log('error', 'peerjs open failed', { conn: this.id, error: String(err) })
      this.refuse(msg)
    })
  }

  private async start (identity: unknown): Promise<void> {
    const { key, id, token } = this.params
    if (key === null || id === null || token === null || !isName(id) || !isName(key) || token === '') {
      return this.refuse('No id, token, or key supplied to websocket server')
    }
    if (!this.keys.has(key)) return this.refuse('Invalid key provided')
    const authorize = this.ctx.authorize
    if (authorize !== undefined && await authorize(identity, key, PEERJS) !== true) {
      this.ctx.metrics.refused('forbidden')
      return this.refuse('Not authorized for this key')
    }
    if (this.closed) return
    this.ns = peerjsNamespace(key)
    const { claim } = await this.ctx.broker.claim(
      { space: 'signal', ns: this.ns, id, key: ownerKey(token), meta: null, maxPeers: this.ctx.limits.peers.maxPeers },
      {
        data: (frame) => this.delivered(frame),
        taken: () => this.close(CloseCode.Normal, 'reclaimed') // the same token connected elsewhere
      }
    )
    if (this.closed) return claim.release(this.ctx.limits.peers.grace)
    this.claim = claim
    this.sendJson({ type: 'OPEN' })
    const inbound = this.inbound
    this.inbound = []
    this.ctx.budgets.backlog.give(this.inboundBytes)
    this.inboundBytes = 0
    for (const frame of inbound) this.delivered(frame)
    for (let text = this.nextHeld(); text !== undefined; text = this.nextHeld()) this.handle(text)
    this.dropHeld()
  }

  /** A connection-level error the client can read (ERROR), then close. */
  private refuse (msg: string): void {
    this.sendJson({ type: 'ERROR', payload: { msg } })
    this.close(CloseCode.Normal, 'error')
  }

  message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.closed) return
    // PeerJS has no error a client survives (ERROR destroys its Peer): a bad frame is dropped and counted.
    const bytes = this.received(data)
    const text = bytes === null ? null : this.text(data, isBinary)
    if (bytes === null || text === null) return countBad(this)
    if (this.held !== null) return this.hold(text, bytes)
    this.handle(text)
  }

  private handle (text: string): void {
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch {
      return countBad(this)
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return countBad(this)
    const m = msg as Record<string, unknown>
    const type = m.type
    if (type === 'HEARTBEAT') return
    if (typeof type !== 'string' || !FORWARDED.has(type)) return countBad(this)
    const dst = m.dst
    if (dst === undefined || dst === null) {
      if (type === 'LEAVE') return this.leave()
      return countBad(this)
    }
    if (!isName(dst)) return countBad(this)
    const src = this.params.id as string
    let json: string
    try {
      json = JSON.stringify({ type, src, dst, payload: m.payload })
    } catch {
      return countBad(this)
    }
    this.forward(type, dst, writeSignalFrom(src, { kind: Kind.Text, bytes: encoder.encode(json) }))
  }

  /**
   * Hand `frame` to the broker for `dst`, in order: one destination's messages go one after the
   * other (a Redis broker answers later), and once one had to wait, the next ones wait behind it.
   */
  private forward (type: string, dst: string, frame: Uint8Array): void {
    const send = async (): Promise<void> => {
      if (this.closed) return
      if (this.waiting.some((w) => w.dst === dst)) return this.wait(type, dst, frame)
      let ok = false
      try {
        ok = await this.ctx.broker.direct(this.ns, dst, frame)
      } catch {}
      if (!ok) this.wait(type, dst, frame)
    }
    const before = this.sending.get(dst)
    if (before === undefined && !this.waiting.some((w) => w.dst === dst)) {
      const delivered = this.ctx.broker.direct(this.ns, dst, frame)
      if (!(delivered instanceof Promise)) {
        if (!delivered) this.wait(type, dst, frame)
        return // (the in-memory broker answers at once: no chain needed)
      }
      return this.chain(dst, delivered.then((ok) => { if (!ok) this.wait(type, dst, frame) }, () => this.wait(type, dst, frame)))
    }
    this.chain(dst, (before ?? Promise.resolve()).then(send))
  }

  /** `dst`'s latest send in flight (the next one goes after it). */
  private chain (dst: string, sent: Promise<void>): void {
    this.sending.set(dst, sent)
    void sent.finally(() => { if (this.sending.get(dst) === sent) this.sending.delete(dst) })
  }

  /** Keep `frame` for `dst` until it holds an id (OFFER, ANSWER, CANDIDATE), or drop it. */
  private wait (type: string, dst: string, frame: Uint8Array): void {
    if (!WAITS.has(type) || this.closed) return
    if (this.waiting.length >= MAX_WAITING || this.waitingBytes + frame.length > MAX_WAITING_BYTES || !this.ctx.budgets.backlog.take(frame.length)) {
      this.ctx.metrics.refused('queue-full')
      return
    }
    this.waiting.push({ dst, frame, bytes: frame.length, since: performance.now() })
    this.waitingBytes += frame.length
    this.retry ??= setInterval(() => { void this.again() }, RETRY_MS)
  }

  /**
   * Try the waiting messages again, in order per destination (a destination that still holds no
   * id blocks its later messages); EXPIRE, once per destination, what waited EXPIRE_MS. Messages
   * sent meanwhile to a destination with messages waiting join the end of the queue.
   */
  private async again (): Promise<void> {
    if (this.trying) return
    this.trying = true
    try {
      const t = performance.now()
      const expired = new Set<string>()
      const blocked = new Set<string>()
      let i = 0
      while (i < this.waiting.length) {
        const w = this.waiting[i]
        if (expired.has(w.dst) || t - w.since >= EXPIRE_MS) {
          expired.add(w.dst)
          this.drop(i)
          continue
        }
        if (blocked.has(w.dst)) {
          i++
          continue
        }
        let ok = false
        try {
          ok = await this.ctx.broker.direct(this.ns, w.dst, w.frame)
        } catch {}
        if (this.closed) return
        if (ok) this.drop(i)
        else {
          blocked.add(w.dst)
          i++
        }
      }
      for (const dst of expired) this.sendJson({ type: 'EXPIRE', src: dst, dst: this.params.id })
      if (this.waiting.length === 0 && this.retry !== null) {
        clearInterval(this.retry)
        this.retry = null
      }
    } finally {
      this.trying = false
    }
  }

  private drop (i: number): void {
    this.waitingBytes -= this.waiting[i].bytes
    this.ctx.budgets.backlog.give(this.waiting[i].bytes)
    this.waiting.splice(i, 1)
  }

  /** A forwarded message for this id: its payload is the finished JSON text (held until OPEN went out). */
  private delivered (frame: Uint8Array): void {
    if (this.closed) return
    if (this.claim === null) {
      // The broker can deliver between the claim and its answer (Redis): after OPEN, in order.
      if (this.inbound.length < MAX_WAITING && this.inboundBytes + frame.length <= MAX_WAITING_BYTES && this.ctx.budgets.backlog.take(frame.length)) {
        this.inbound.push(frame)
        this.inboundBytes += frame.length
      } else {
        this.ctx.metrics.refused('queue-full')
      }
      return
    }
    const raw = readFrame(frame)
    if (raw === null) return
    try {
      utf8.decode(raw.payload) // text frames must be UTF-8: checked, then the same bytes go out
    } catch {
      return
    }
    this.sendText(raw.payload)
    this.ctx.metrics.sent(PEERJS, raw.payload.length)
  }

  /** LEAVE without a destination: the id is given up at once. */
  private leave (): void {
    this.claim?.release(0)
    this.claim = null
    this.close(CloseCode.Normal, 'left')
  }

  teardown (): void {
    if (this.closed) return
    this.closed = true
    if (this.retry !== null) clearInterval(this.retry)
    this.retry = null
    this.ctx.budgets.backlog.give(this.waitingBytes + this.inboundBytes)
    this.waiting = []
    this.waitingBytes = 0
    this.inbound = []
    this.inboundBytes = 0
    // A dropped socket keeps the id for the grace: the same token reclaims it, nobody else can.
    this.claim?.release(this.ctx.limits.peers.grace)
    this.claim = null
    this.dropHeld()
    this.gone(this)
  }
}


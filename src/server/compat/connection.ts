/**
 * What a compat connection (y-webrtc.ts, peerjs.ts) shares: a Flow (rate limit, outbound bound,
 * liveness) over a socket of JSON text frames, the frames held in order while something is pending
 * (authenticate, authorize, a claim, a broker subscription) — bounded by limits.maxBacklog per
 * connection and the server's backlog budget —, and writing JSON.
 */
import type { WebSocket } from 'ws'
import { CloseCode, type ServerContext } from '../context.js'
import { Flow } from '../flow.js'
import type { CompatEndpoint } from '../metrics.js'
import { attach, byteLength, toBytes, type SocketOwner } from '../socket.js'

/** What a held frame counts besides its bytes (its bookkeeping). */
const HELD_COST = 64
const utf8 = new TextDecoder('utf-8', { fatal: true })

export abstract class CompatConnection extends Flow implements SocketOwner {
  /** Flow counts frames by their stream's endpoint: a compat connection has no streams. */
  readonly streams = new Map<number, { ep?: undefined }>()
  /** Frames held while something is pending (null: none held, frames are handled at once). */
  protected held: Array<{ text: string, bytes: number }> | null = []
  private heldBytes = 0

  constructor (id: string, ws: WebSocket, ctx: ServerContext, private readonly ep: CompatEndpoint) {
    super(id, ws, ctx)
    attach(ws, this)
  }

  /** A frame's text, or null when it is not UTF-8 (both libraries' servers take binary frames too). */
  protected text (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): string | null {
    try {
      return isBinary ? utf8.decode(toBytes(data)) : data.toString()
    } catch {
      return null
    }
  }

  /** Count a received frame; false (dropped, refusal counted) past the rate limit. */
  protected received (data: Buffer | ArrayBuffer | Buffer[]): number | null {
    this.touch()
    if (this.closed) return null
    const bytes = byteLength(data)
    this.ctx.metrics.received(this.ep, bytes)
    if (this.take()) return bytes
    this.ctx.metrics.refused('rate-limited')
    return null
  }

  /** Hold a frame (in order) while `held` is on; past the backlog bounds the socket closes (1008). */
  protected hold (text: string, bytes: number): void {
    const cost = bytes + HELD_COST
    if (this.heldBytes + cost > this.ctx.limits.maxBacklog || !this.ctx.budgets.backlog.take(cost)) {
      this.ctx.metrics.refused('quota-exceeded')
      return this.close(CloseCode.Policy, 'backlog-full')
    }
    ;(this.held ??= []).push({ text, bytes })
    this.heldBytes += cost
  }

  /** The oldest held frame's text (its bytes given back to the budget), or undefined. */
  protected nextHeld (): string | undefined {
    const next = this.held?.shift()
    if (next === undefined) return undefined
    this.heldBytes -= next.bytes + HELD_COST
    this.ctx.budgets.backlog.give(next.bytes + HELD_COST)
    return next.text
  }

  /** Stop holding; whatever is still held is dropped and given back. */
  protected dropHeld (): void {
    this.ctx.budgets.backlog.give(this.heldBytes)
    this.heldBytes = 0
    this.held = null
  }

  protected sendJson (message: object): void {
    if (this.closed) return
    const text = JSON.stringify(message)
    this.sendText(text)
    this.ctx.metrics.sent(this.ep, text.length)
  }

  abstract message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void
  abstract teardown (): void

  internalError (where: string, err: unknown): void {
    this.ctx.log('error', `${this.ep} connection failed`, { conn: this.id, where, error: String(err) })
  }

  socketError (err: Error): void {
    this.ctx.log('warn', 'socket error', { conn: this.id, error: err.message })
  }
}

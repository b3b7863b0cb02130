/**
 * The client's side of the server's rate limit: HELLO announces `limits.messagesPerSecond` and
 * `limits.messageBurst` (the server's token bucket per connection; a frame past it is dropped
 * with ERROR `rate-limited`). The socket's frames go through this bucket, kept a little below the
 * server's, and wait here when it is empty, so a client that writes faster than the server takes
 * is slowed down (its streams see it as `bufferedAmount`) instead of having frames dropped.
 *
 * Frames wait per stream, in order, and the streams take turns: a signalling message is not stuck
 * behind a relay stream's backlog. A stream's control frames (CLOSE) wait behind its own data, so
 * they never overtake it; OPEN, PING and the control frames of streams with nothing waiting go at
 * once and only spend a token.
 */
import { SignalyardError } from '../protocol/errors.js'
import { Fifo } from './fifo.js'
import type { QueuedFrame } from './offline-queue.js'

/**
 * The share of the server's rate and of its burst the client allows itself: room for control
 * frames, timers that fire late, and frames the network delivers bunched together.
 */
const RATE_SHARE = 0.8
const BURST_SHARE = 0.5
/**
 * Bytes of data frames that may wait here; past it `send` throws `queue-full` (a stream's own
 * flow control keeps well below it: a relay stream's window, a peer connection's high-water mark).
 */
export const MAX_PACED_BYTES = 32 * 1024 * 1024
/** A waiting queue is written in batches: at least this long between two writes. */
const MIN_WAIT_MS = 4
const MAX_WAIT_MS = 60_000


export class Pacer {
  private rate = Infinity
  private burst = Infinity
  private tokens = Infinity
  private refilled = 0
  /** Each stream's frames waiting, oldest first. */
  private readonly lanes = new Map<number, Fifo<Uint8Array>>()
  /** Streams with frames waiting, in turn order. */
  private turns: number[] = []
  private turn = 0
  private size = 0
  private timer: ReturnType<typeof setTimeout> | null = null

  constructor (private readonly write: (frame: Uint8Array) => void) {}

  /** Bytes waiting. */
  get bytes (): number { return this.size }

  /** A new connection (HELLO): its rate and burst (Infinity when the server announces none), a full bucket. */
  reset (perSecond: number, burst: number): void {
    this.rate = perSecond * RATE_SHARE / 1000
    this.burst = Math.max(1, Math.floor(burst * BURST_SHARE))
    this.tokens = this.burst
    this.refilled = performance.now()
  }

  /** A control frame of stream `sid` (0: none): behind that stream's waiting frames if it has any, else now. */
  control (sid: number, frame: Uint8Array): void {
    if (sid !== 0 && this.lanes.has(sid)) return this.queue(sid, frame)
    this.refill()
    this.tokens -= 1
    this.write(frame)
  }

  /** Write data frame `frame` of stream `sid` now if the bucket allows and nothing waits, else queue it (`queue-full` past MAX_PACED_BYTES). */
  send (sid: number, frame: Uint8Array): void {
    if (this.size === 0 && this.take()) return this.write(frame)
    if (this.size + frame.length > MAX_PACED_BYTES) {
      throw new SignalyardError('queue-full', `${this.size} bytes already wait for the server's rate limit; wait for 'drain' or send less often`)
    }
    this.queue(sid, frame)
  }

  /** Everything waiting, each stream's frames in order (the socket went down: it moves to the offline queue); the pacer stops. */
  drain (): QueuedFrame[] {
    const waiting: QueuedFrame[] = []
    for (const [sid, lane] of this.lanes) for (const frame of lane) waiting.push({ sid, frame })
    this.lanes.clear()
    this.turns = []
    this.turn = 0
    this.size = 0
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    return waiting
  }

  private queue (sid: number, frame: Uint8Array): void {
    let lane = this.lanes.get(sid)
    if (lane === undefined) {
      this.lanes.set(sid, lane = new Fifo())
      this.turns.push(sid)
    }
    lane.push(frame)
    this.size += frame.length
    this.schedule()
  }

  private refill (): void {
    const t = performance.now()
    // Monotonic clock; a tick that went backwards refills nothing.
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, t - this.refilled) * this.rate)
    this.refilled = t
  }

  private take (): boolean {
    if (this.rate === Infinity) return true
    this.refill()
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  private schedule (): void {
    if (this.timer !== null) return
    // Bounded: a server announcing a near-zero rate must not overflow the timer (Node fires those at once).
    const wait = Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, Math.ceil((1 - this.tokens) / this.rate)))
    this.timer = setTimeout(() => this.flush(), wait)
  }

  /** One frame per stream in turn while the bucket allows. */
  private flush (): void {
    this.timer = null
    while (this.turns.length > 0 && this.take()) {
      if (this.turn >= this.turns.length) this.turn = 0
      const sid = this.turns[this.turn]
      const lane = this.lanes.get(sid) as Fifo<Uint8Array>
      const frame = lane.shift() as Uint8Array
      this.size -= frame.length
      if (lane.length === 0) {
        this.lanes.delete(sid)
        this.turns.splice(this.turn, 1) // the next stream now sits at this index
      } else {
        this.turn++
      }
      this.write(frame)
    }
    if (this.turns.length > 0) this.schedule()
  }
}

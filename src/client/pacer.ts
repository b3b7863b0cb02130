/**
 * The client's side of the server's rate limit: HELLO announces `limits.messagesPerSecond` and
 * `limits.messageBurst` (the server's token bucket per connection; a frame past it is dropped
 * with ERROR `rate-limited`). The socket's data frames go through this bucket, kept a little
 * below the server's, and wait here in order when it is empty, so a client that writes faster
 * than the server takes is slowed down (its streams see it as `bufferedAmount`) instead of having
 * frames dropped. Control frames (OPEN, CLOSE, PING) are never held; they only spend tokens.
 */
import type { QueuedFrame } from './offline-queue.js'

/**
 * The share of the server's rate and of its burst the client allows itself: room for control
 * frames, timers that fire late, and frames the network delivers bunched together.
 */
const RATE_SHARE = 0.8
const BURST_SHARE = 0.5
/** A waiting queue is written in batches: at least this long between two writes. */
const MIN_WAIT_MS = 4

export class Pacer {
  private rate = Infinity
  private burst = Infinity
  private tokens = Infinity
  private refilled = 0
  private queue: QueuedFrame[] = []
  private head = 0
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

  /** A frame that goes out anyway (control): it spends a token all the same. */
  spend (): void {
    this.refill()
    this.tokens -= 1
  }

  /** Write `frame` now if the bucket allows and nothing waits, else queue it. */
  send (sid: number, frame: Uint8Array): void {
    if (this.head === this.queue.length && this.take()) return this.write(frame)
    this.queue.push({ sid, frame })
    this.size += frame.length
    this.schedule()
  }

  /** Everything waiting, oldest first (the socket went down: it moves to the offline queue); the pacer stops. */
  drain (): QueuedFrame[] {
    const waiting = this.queue.slice(this.head)
    this.queue = []
    this.head = 0
    this.size = 0
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    return waiting
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
    const wait = Math.max(MIN_WAIT_MS, Math.ceil((1 - this.tokens) / this.rate))
    this.timer = setTimeout(() => this.flush(), wait)
  }

  private flush (): void {
    this.timer = null
    while (this.head < this.queue.length && this.take()) {
      const { frame } = this.queue[this.head]
      this.queue[this.head++] = undefined as unknown as QueuedFrame
      this.size -= frame.length
      this.write(frame)
    }
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    } else {
      if (this.head > 1024) {
        this.queue = this.queue.slice(this.head)
        this.head = 0
      }
      this.schedule()
    }
  }
}

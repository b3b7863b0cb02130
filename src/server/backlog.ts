/**
 * A connection's backlog: the frames that wait while it is busy (authenticate() running, an
 * OPEN's answer pending, too many broker calls in flight), in order. Bounded per connection
 * (limits.maxBacklog) and server-wide (budgets.backlog); each frame costs its length plus
 * BACKLOG_FRAME_COST. A connection makes one only while a frame waits: idle connections have none.
 */
import type { Budget } from './budget.js'
import { BACKLOG_FRAME_COST } from './limits.js'

export class Backlog {
  private readonly frames: Uint8Array[] = []
  /** What the waiting frames cost, taken from the server-wide budget. */
  private bytes = 0

  constructor (private readonly budget: Budget) {}

  get size (): number { return this.frames.length }

  /**
   * Keep `frame` at the end: null, or why not (nothing kept): `backlog-full` past `max` bytes for
   * this connection, `quota-exceeded` when every backlog together fills the server's budget.
   */
  push (frame: Uint8Array, max: number): null | 'backlog-full' | 'quota-exceeded' {
    const cost = frame.length + BACKLOG_FRAME_COST
    if (this.bytes + cost > max) return 'backlog-full'
    if (!this.budget.take(cost)) return 'quota-exceeded'
    this.frames.push(frame)
    this.bytes += cost
    return null
  }

  /** The frame that waited longest (its cost given back), or undefined. */
  shift (): Uint8Array | undefined {
    const frame = this.frames.shift()
    if (frame === undefined) return undefined
    const cost = frame.length + BACKLOG_FRAME_COST
    this.bytes -= cost
    this.budget.give(cost)
    return frame
  }

  /** Drop every waiting frame, giving back what they cost. */
  drop (): void {
    this.frames.length = 0
    this.budget.give(this.bytes)
    this.bytes = 0
  }
}

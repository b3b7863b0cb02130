/**
 * Dead-server detection for the client's socket (browsers cannot see WebSocket pings): after
 * `interval` ms without a frame from the server the socket sends PING; nothing back within
 * `timeout` ms and the server counts as dead, so the socket can drop the connection without
 * waiting for a close handshake that would never finish. Every duration is on the monotonic
 * clock: a wall-clock step (NTP) can neither hide a dead server nor fake one.
 */
import { writeFrame } from '../protocol/codec.js'
import { FrameType } from '../protocol/frames.js'
import type { ClientTunables } from './defaults.js'

/** The clock of every liveness duration: monotonic, so a wall-clock step (NTP) changes nothing. */
const monotonic = (): number => performance.now()

/** The client's liveness probe: always the same bytes. */
export const PING = writeFrame(FrameType.Ping, 0, null)

/** What the probe needs from its socket. */
export interface LivenessHost {
  /** Send PING now; false when the socket is not open (nothing was sent). */
  ping: () => boolean
  /** PING went unanswered: the server is dead, silent for `silentMs`. */
  dead: (silentMs: number) => void
}

/** The liveness probe of one socket: `start` when the server greets, `heard` on every frame, `stop` when the connection ends. */
export class Liveness {
  /** When the server last sent anything (monotonic ms). */
  private lastHeard = 0
  /** When PING went out (0: none is out). */
  private pingSent = 0
  private timer: ReturnType<typeof setInterval> | null = null

  constructor (private readonly tunables: ClientTunables['heartbeat'], private readonly host: LivenessHost) {}

  /** Something arrived since the last tick (the tick reads the clock, not every frame). */
  private fresh = false

  /**
   * A frame from the server arrived. Called for every frame, so it only sets a flag: the next
   * tick (every min(interval, timeout) / 2 ms) takes it as "heard now", so silence is measured
   * from at most one tick late and a PING goes out at most that much later.
   */
  heard (): void {
    this.fresh = true
    this.pingSent = 0
  }

  start (): void {
    this.stop()
    const { interval, timeout } = this.tunables
    this.lastHeard = monotonic()
    this.pingSent = 0
    this.fresh = false
    this.timer = setInterval(() => {
      const now = monotonic()
      if (this.fresh) {
        this.fresh = false
        this.lastHeard = now
      }
      if (this.pingSent !== 0 && now - this.pingSent >= timeout) return this.host.dead(now - this.lastHeard)
      if (this.pingSent === 0 && now - this.lastHeard >= interval && this.host.ping()) {
        this.pingSent = Math.max(now, 1) // 0 means "no PING out"
      }
    }, Math.max(10, Math.min(interval, timeout) / 2))
    ;(this.timer as { unref?: () => void }).unref?.()
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}

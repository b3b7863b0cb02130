/** Client tunables: one frozen object; `SignalChannel` options override parts of it. */
export interface ClientTunables {
  reconnect: {
    /** Ceiling of the first reconnect delay, in ms (full jitter: the delay is random below the ceiling). */
    minDelay: number
    /** Largest ceiling, in ms; the ceiling doubles per failed attempt up to this. */
    maxDelay: number
  }
  /**
   * Frames the offline queue holds at most; past it `send` throws `queue-full`. Kept below the
   * server's rate-limit burst (`limits.messageBurst`, 10,000) with room for every stream's OPEN,
   * so a flush after a reconnect is never rate-limited.
   */
  maxQueued: number
  /**
   * Bytes (whole frames) the offline queue holds at most; past it `send` throws `queue-full`. Kept
   * at half the server's per-connection backlog (`limits.maxBacklog`, 8 MiB), so a flush after a
   * reconnect, landing while the server still waits on its OPENs, is never cut with `backlog-full`.
   */
  maxQueuedBytes: number
  /** Frame limit assumed until the server's HELLO says otherwise. */
  maxFrame: number
  heartbeat: {
    /** After this many ms without a frame from the server, send PING. */
    interval: number
    /** No frame this many ms after the PING: the server is dead; reconnect. */
    timeout: number
  }
}

/**
 * The client's defaults; override them per channel.
 *
 * @example
 * SignalChannel('room', { url, reconnect: { maxDelay: CLIENT_DEFAULTS.reconnect.maxDelay * 3 } })
 */
export const CLIENT_DEFAULTS: Readonly<ClientTunables> = Object.freeze({
  reconnect: Object.freeze({ minDelay: 500, maxDelay: 10_000 }),
  maxQueued: 4096,
  maxQueuedBytes: 4 * 1024 * 1024,
  maxFrame: 1024 * 1024,
  heartbeat: Object.freeze({ interval: 10_000, timeout: 5_000 })
})

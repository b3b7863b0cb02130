/**
 * Server tunables: one frozen DEFAULTS object, merged with the `limits` option of createServer.
 * Every number is documented in the README ("Server options").
 */

export interface Limits {
  /** Largest WebSocket message accepted, in bytes; bigger ones close the socket with 1009. */
  maxFrame: number
  /** Streams one connection may have open at once. */
  maxStreams: number
  /** Distinct namespaces one connection may use at once. */
  maxNamespaces: number
  /**
   * Bytes of frames one connection may have waiting to be handled (before authenticate() answers,
   * and behind an OPEN whose answer is pending). Each waiting frame counts its length plus
   * BACKLOG_FRAME_COST. Past it the connection is closed (1008 `backlog-full`). Must stay above the
   * client's offline queue bound (maxQueuedBytes, 4 MiB) so a reconnecting client's flush fits.
   */
  maxBacklog: number
  /** Longest a connection may wait for authenticate() to answer (ms); then it is closed (4401). */
  authTimeout: number
  /**
   * Longest an HTTP request (headers included) may take before the upgrade, on the server's own
   * HTTP server (ms): half-open handshakes are cut off after it.
   */
  handshakeTimeout: number
  /** Rejected frames tolerated per `badFrameWindow` ms before the connection is closed (1008). */
  maxBadFrames: number
  badFrameWindow: number
  /** Frames per second one connection may send (token bucket refilled at this rate); past it ERROR `rate-limited`. */
  messagesPerSecond: number
  /** Bucket size: how many frames a connection may send at once after a quiet spell. */
  messageBurst: number
  /** Open connections from one IP address; past it the upgrade is refused (HTTP 429, `too-many-connections`). */
  maxConnectionsPerIp: number
  /** Bytes waiting to be written to one connection; past it the connection is closed (1008 `slow-consumer`). */
  maxOutbound: number
  kv: {
    /** TTL in ms when a set gives none. */
    defaultTtl: number
    /** Longest TTL in ms; longer ones are capped to it. */
    maxTtl: number
    /** Largest value, in bytes of its encoding. */
    maxValue: number
    /** Keys one namespace may hold. */
    maxKeys: number
    /**
     * Bytes one namespace may hold: each key counts its UTF-8 bytes, its value's bytes and 256 for
     * its record (KV_ENTRY_COST). A write past it is refused (`quota-exceeded`); overwrites count their growth.
     */
    maxBytes: number
    /**
     * Bytes (counted as for maxBytes) of the live keys one connection wrote and still owns: a key
     * counts until it expires, or until this connection deletes or overwrites it (its new size
     * counts then), or the connection closes. A set past it is refused (`quota-exceeded`), so one
     * connection cannot fill the yard's KV budget (limits.total.kv) alone.
     */
    maxOwnedBytes: number
    /** How often expired keys are swept, in ms. */
    sweepInterval: number
  }
  /** Seconds-scale liveness: the server pings every connection this often (ms) and drops one that
   * did not answer the previous ping, so a silently dead peer is gone within 2 intervals. */
  pingInterval: number
  peers: {
    /** Largest presence meta, in bytes of its JSON encoding. */
    maxMeta: number
    /** Presence members one namespace may hold. */
    maxPeers: number
    /** How long a peer or node id stays held after its socket closed without leaving (ms); the
     * owner reconnecting within it reclaims the id silently. */
    grace: number
    /** Largest directed signalling message, in bytes. */
    maxSignal: number
  }
  /**
   * Server-wide budgets: what all connections together may make this process hold. A connection
   * that would cross one is refused with a coded error (`quota-exceeded`); /metrics shows each
   * budget's use (signalyard_budget_used{budget}) and size (signalyard_budget_limit{budget}).
   */
  total: {
    /** Bytes waiting in all connections' backlogs (pre-auth included). */
    backlog: number
    /** Bytes held by relay streams: before pairing and waiting for a slow receiver. */
    relay: number
    /** Bytes of KV state (keys + values) in the whole yard. */
    kv: number
    /** TCP connections that have not finished their WebSocket handshake (and authentication). */
    pendingUpgrades: number
  }
  relay: {
    /** How long an unmatched relay stream waits before `relay-timeout`, in ms. */
    pendingTimeout: number
    /**
     * Bytes a relay stream may send before it is paired; they are delivered once it is. Past it the
     * stream is closed (`payload-too-large`). Reference clients send at most 64 KiB
     * (RELAY_PRE_OPEN_WINDOW) before OPENED; the rest is room for other clients.
     */
    prePairBuffer: number
    /**
     * The flow-control window announced in a relay stream's OPENED (`window`): a client keeps at
     * most this many bytes of DATA sent and not yet acknowledged (ACK frames), plus one frame.
     * At least RELAY_PRE_OPEN_WINDOW (64 KiB) whatever is set.
     */
    window: number
    /**
     * Bytes of one relay stream sent and not yet passed on to the receiver's socket, wherever they
     * wait (this process, Redis, the receiver's process); past it the stream is closed
     * (`relay-overflow`). Only a client that ignores the window reaches it: it is never taken
     * below `window` + maxFrame.
     */
    maxInFlight: number
    /**
     * Bytes this process holds for one connection's relay streams: what they sent before pairing
     * and what waits to be written to the connection. Past it the stream that would cross it is
     * closed (`quota-exceeded`). The server-wide bound is total.relay.
     */
    maxBufferedPerConnection: number
    /**
     * A relay stream with bytes in flight and none passed on to the receiver for this long (ms) is
     * closed on both sides (`relay-stalled`): the other side does not read.
     */
    stallTimeout: number
  }
}

/**
 * The server's default limits; override parts with the `limits` option.
 *
 * @example
 * await createServer({ limits: { kv: { maxTtl: DEFAULTS.kv.maxTtl / 24 } } })
 */
export const DEFAULTS: Readonly<Limits> = Object.freeze({
  maxFrame: 1024 * 1024,
  maxStreams: 1024,
  maxNamespaces: 256,
  maxBacklog: 8 * 1024 * 1024,
  authTimeout: 10_000,
  handshakeTimeout: 10_000,
  maxBadFrames: 100,
  badFrameWindow: 10_000,
  messagesPerSecond: 5_000,
  messageBurst: 10_000,
  maxConnectionsPerIp: 1_000,
  maxOutbound: 8 * 1024 * 1024,
  kv: Object.freeze({
    defaultTtl: 5 * 60_000,
    maxTtl: 24 * 60 * 60_000,
    maxValue: 64 * 1024,
    maxKeys: 10_000,
    maxBytes: 16 * 1024 * 1024,
    maxOwnedBytes: 8 * 1024 * 1024,
    sweepInterval: 100
  }),
  pingInterval: 10_000,
  peers: Object.freeze({
    maxMeta: 8 * 1024,
    maxPeers: 10_000,
    grace: 3_000,
    maxSignal: 64 * 1024
  }),
  total: Object.freeze({
    backlog: 256 * 1024 * 1024,
    relay: 256 * 1024 * 1024,
    kv: 256 * 1024 * 1024,
    pendingUpgrades: 1024
  }),
  relay: Object.freeze({
    pendingTimeout: 30_000,
    prePairBuffer: 256 * 1024,
    window: 1024 * 1024,
    maxInFlight: 4 * 1024 * 1024,
    maxBufferedPerConnection: 8 * 1024 * 1024,
    stallTimeout: 30_000
  })
})

/** The limits grouped in sub-objects (kv, peers, relay, total). */
type Group = { [K in keyof Limits]: Limits[K] extends object ? K : never }[keyof Limits]
const GROUPS: readonly Group[] = ['kv', 'peers', 'relay', 'total']

/** A partial `limits` option, as users pass it. */
export type LimitsOption = Partial<Omit<Limits, Group>> & { [G in Group]?: Partial<Limits[G]> }

/** Bytes a waiting frame costs beyond its length (the Buffer object and the backlog's slot). */
export const BACKLOG_FRAME_COST = 64

/** Merge user limits over the defaults; rejects values that are not positive numbers. */
export function resolveLimits (option: LimitsOption = {}): Limits {
  const merged = { ...DEFAULTS, ...option } as Record<string, unknown>
  for (const group of GROUPS) merged[group] = { ...DEFAULTS[group], ...option[group] }
  const check = (path: string, value: unknown): void => {
    if (typeof value !== 'number' || !(value > 0)) throw new TypeError(`limits.${path} must be a positive number`)
  }
  for (const [k, v] of Object.entries(merged)) {
    if (!(k in DEFAULTS)) throw new TypeError(`limits.${k} is not a limit`)
    if (typeof v === 'object' && v !== null) {
      for (const [k2, v2] of Object.entries(v)) {
        if (!(k2 in (DEFAULTS as unknown as Record<string, object>)[k])) throw new TypeError(`limits.${k}.${k2} is not a limit`)
        check(`${k}.${k2}`, v2)
      }
    } else check(k, v)
  }
  return merged as unknown as Limits
}

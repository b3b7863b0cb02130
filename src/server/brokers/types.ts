/**
 * The Broker: the only way the server reaches namespace state. An endpoint never touches another
 * connection directly; it publishes to a topic, asks the broker for KV state, or opens a relay
 * link. The in-memory broker serves one process; a Redis broker makes many processes one yard.
 *
 * Messages on topics are finished frames (see docs/PROTOCOL.md): the publisher encodes once and
 * every process writes the same bytes to its sockets. Methods may answer synchronously or with a
 * Promise; callers handle both.
 */
import type { KvChange, KvSnapshot } from '../../kv/model.js'

export type MaybePromise<T> = T | Promise<T>

/** Called with each message published to a topic this process subscribed to. */
export type TopicHandler = (message: Uint8Array) => void

/** The relay endpoint's side of a link: the broker calls it. */
export interface RelaySink {
  /** The other side arrived (only called for the side that was waiting). */
  paired: () => void
  /** A DATA frame from the other side; the sink may rewrite it in place. */
  data: (frame: Uint8Array) => void
  /** The other side closed or went away. */
  closed: () => void
}

/** The handle a relay stream holds. */
export interface RelayLink {
  /** Forward a DATA frame to the other side (only once paired). */
  send: (frame: Uint8Array) => void
  /** Give up the tokens; the other side, if any, is told. */
  close: () => void
}

export interface RelayOpened { link: RelayLink, paired: boolean }

export interface KvSetRequest {
  ns: string
  key: string
  kind: number
  value: Uint8Array
  /** Milliseconds to live, already capped by the server. */
  ttl: number
  /** Refuse (`too-many-keys`) a new key past this many in the namespace. */
  maxKeys: number
}

export interface Broker {
  /** Start receiving a topic in this process (called once per topic, on its first local subscriber). */
  subscribe: (topic: string, handler: TopicHandler) => MaybePromise<void>
  /** Stop delivering a topic to this handler (on the topic's last local subscriber leaving). */
  unsubscribe: (topic: string, handler: TopicHandler) => MaybePromise<void>
  /** Deliver a message to every process subscribed to the topic, this one included, in order per publisher. */
  publish: (topic: string, message: Uint8Array) => MaybePromise<void>

  /** Write a key and publish the change on the namespace's KV topic. Throws `too-many-keys`. */
  kvSet: (request: KvSetRequest) => MaybePromise<KvChange>
  /** Delete a key and publish the change; null when it did not exist. */
  kvDelete: (ns: string, key: string) => MaybePromise<KvChange | null>
  /** The state a replica needs to catch up from `since`. */
  kvSnapshot: (ns: string, since: { epoch: string, seq: number } | null) => MaybePromise<KvSnapshot>

  /**
   * Claim the relay tokens (ns, local, remote) and pair with the stream that holds (ns, remote,
   * local). Throws `relay-token-in-use` when the tokens are pending or paired already.
   */
  relayOpen: (ns: string, local: string, remote: string, sink: RelaySink) => MaybePromise<RelayOpened>

  /** Counts for /healthz and /metrics. */
  stats: () => MaybePromise<{ kvKeys: number, relayPairs: number }>
  /** Release timers and connections. */
  close: () => MaybePromise<void>
}

/** Topic names: one per endpoint and namespace. */
export const topicOf = (endpoint: 'echo' | 'kv', ns: string): string => `${endpoint}:${ns}`

/**
 * The Broker: the only way the server reaches namespace state. An endpoint never touches another
 * connection directly; it publishes to a topic, asks the broker for KV state, or opens a relay
 * link. The in-memory broker serves one process; a Redis broker makes many processes one yard.
 *
 * Messages on topics are finished frames (see docs/PROTOCOL.md): the publisher encodes once and
 * every process writes the same bytes to its sockets. Methods may answer synchronously or with a
 * Promise; callers handle both.
 */
import type { KvChange, KvPage, KvSnapshot } from '../../kv/model.js'
import type { ErrorCode } from '../../protocol/errors.js'
import type { Endpoint } from '../../protocol/frames.js'

export type MaybePromise<T> = T | Promise<T>

/** Called with each message published to a topic this process subscribed to. */
export type TopicHandler = (message: Uint8Array) => void

/** The relay endpoint's side of a link: the broker calls it. */
export interface RelaySink {
  /** The other side arrived (only called for the side that was waiting). */
  paired: () => void
  /**
   * A DATA frame from the other side; the sink may rewrite it in place and keeps it until it is
   * written to its socket, then acknowledges it (RelayLink.ack).
   */
  data: (frame: Uint8Array) => void
  /** The other side passed on `bytes` of this side's frames (flow control: the sender may send more). */
  acked: (bytes: number) => void
  /** The other side closed or went away; `reason` when it ended on an error (`relay-stalled`, …). */
  closed: (reason?: ErrorCode) => void
}

/**
 * The handle a relay stream holds. The broker passes frames and acknowledgements on at once and
 * keeps no queue of its own: each stream bounds what it sends by its window (limits.relay).
 */
export interface RelayLink {
  /** Forward a DATA frame to the other side (only once paired). */
  send: (frame: Uint8Array) => void
  /** Tell the other side that `bytes` of its frames were passed on to this side's socket. */
  ack: (bytes: number) => void
  /** Give up the tokens; the other side, if any, is told (with `reason` when it is an error). */
  close: (reason?: ErrorCode) => void
}

export interface RelayOpened { link: RelayLink, paired: boolean }

export interface BrokerKvSet {
  ns: string
  key: string
  kind: number
  value: Uint8Array
  /** Milliseconds to live, already capped by the server. */
  ttl: number
  /** Refuse (`too-many-keys`) a new key past this many in the namespace. */
  maxKeys: number
  /**
   * Refuse (`quota-exceeded`) a write that takes the namespace past this many bytes: each entry
   * counts kvEntryBytes (key and value bytes plus KV_ENTRY_COST); an overwrite counts its growth.
   */
  maxBytes: number
  /** Refuse (`quota-exceeded`) a write that takes the whole yard's KV state past this many bytes. */
  maxTotal: number
}

/** A KV entry as kvGet reads it: its payload kind and bytes, and the milliseconds it has left. */
export interface BrokerKvEntry { kind: number, value: Uint8Array, ttl: number }

/**
 * The two id spaces of a namespace: presence members (`peers`) and signal ids (`signal`). They are
 * separate: the same id may be claimed in both, by the same or by different owners.
 */
export type ClaimSpace = Extract<Endpoint, 'peers' | 'signal'>

/** A presence member as listed in OPENED and carried by EVENTs. */
export interface BrokerMember { id: string, meta: object }

/** What a stream asks for when it claims an id. */
export interface BrokerClaimRequest {
  space: ClaimSpace
  ns: string
  id: string
  /** The owner key: a claim with the key that holds the id moves the id to the new stream. */
  key: string
  /** Presence meta (`peers`); null in the `signal` space. */
  meta: object | null
  /** Refuse (`too-many-peers`) a new id past this many in the namespace's space. */
  maxPeers: number
}

/** The claiming stream's side: the broker calls it. */
export interface ClaimSink {
  /**
   * A directed DATA frame for this signal id (`signal` space only), encoded once by the sender
   * with `from` set and stream id 0. It is this receiver's alone: the sink rewrites its stream id
   * in place and sends it.
   */
  data: (frame: Uint8Array) => void
  /** The same owner key claimed the id from another stream: this stream no longer holds it. */
  taken: () => void
  /**
   * Called at the moment something read from the space takes its place among the space's events
   * as this process receives them: first (brokers whose events and answers travel apart, Redis)
   * the claim itself, then each page of `Claim.members` (every broker). Events before it are
   * reflected in what was read; events after it are not, so the stream holds them until that
   * page is sent. Without the first call the claim's answer is its place (the in-memory broker
   * delivers nothing in between).
   */
  placed?: () => void
}

/**
 * The handle a stream holds on its id. A handle whose id was since claimed by a newer stream (same
 * key) is stale: its calls do nothing, so a late release never removes the new owner's id.
 */
export interface Claim {
  /** Replace the presence meta and publish EVENT `update` (resolves once published). */
  update: (meta: object) => MaybePromise<void>
  /**
   * Give the id up. `graceMs` 0: at once, EVENT `leave`. Above 0 (the socket went away): the id
   * stays held for that long, directed messages to it are dropped, and then it is removed with
   * EVENT `leave`, unless its owner key claimed it again meanwhile (EVENT `join` then, no `leave`).
   * Calls after the first do nothing.
   */
  release: (graceMs: number) => void
  /**
   * The space's members (this one included) a page at a time, each about `pageBytes` of meta
   * (at least one member): a page is read when it is asked for and takes its place among the
   * space's events at once (the sink's `placed()`), so a receiver that applies pages and events in
   * the order they come holds the space's state. A member may come twice. `last` marks the final
   * page. Pages stop early when the handle is stale.
   */
  members: (pageBytes: number) => Iterable<MemberPage> | AsyncIterable<MemberPage>
}

/** One page of Claim.members. */
export interface MemberPage { members: BrokerMember[], last: boolean }

/** What a successful claim gives (the members are read with `claim.members`). */
export interface Claimed {
  claim: Claim
}

export interface Broker {
  /** Start receiving a topic in this process (called once per topic, on its first local subscriber). */
  subscribe: (topic: string, handler: TopicHandler) => MaybePromise<void>
  /** Stop delivering a topic to this handler (on the topic's last local subscriber leaving). */
  unsubscribe: (topic: string, handler: TopicHandler) => MaybePromise<void>
  /** Deliver a message to every process subscribed to the topic, this one included, in order per publisher. */
  publish: (topic: string, message: Uint8Array) => MaybePromise<void>

  /** Write a key and publish the change on the namespace's KV topic. Throws `too-many-keys`, `quota-exceeded`. */
  kvSet: (request: BrokerKvSet) => MaybePromise<KvChange>
  /** Delete a key and publish the change; null when it did not exist. */
  kvDelete: (ns: string, key: string) => MaybePromise<KvChange | null>
  /** The state a replica needs to catch up from `since`, at once (for small namespaces and tests; streams use kvScan). */
  kvSnapshot: (ns: string, since: { epoch: string, seq: number } | null) => MaybePromise<KvSnapshot>
  /**
   * The same state a page at a time: each page is read when it is asked for and holds entries of
   * about `pageBytes` bytes, so a caller paces a big namespace's snapshot (docs/PROTOCOL.md, kv).
   * The first page is the namespace's state at the start (its epoch and seq); an entry may come
   * twice or, when it changed during the scan, not at all (its change is published instead); it
   * is read as it is at its turn. Pages end early when the namespace empties meanwhile.
   */
  kvScan: (ns: string, since: { epoch: string, seq: number } | null, pageBytes: number) => Iterable<KvPage> | AsyncIterable<KvPage>
  /**
   * One key as it is now, or null when the namespace does not hold it (an expired key that is not
   * swept yet counts as gone). For the server-side API (`yard.kv(ns).get`): replicas use kvScan.
   * Optional (brokers written before it): without it `get` reads the namespace with kvScan.
   */
  kvGet?: (ns: string, key: string) => MaybePromise<BrokerKvEntry | null>

  /**
   * Claim the relay tokens (ns, local, remote) and pair with the stream that holds (ns, remote,
   * local). Throws `relay-token-in-use` when the tokens are pending or paired already.
   */
  relayOpen: (ns: string, local: string, remote: string, sink: RelaySink) => MaybePromise<RelayOpened>

  /**
   * Claim `id` in a namespace's id space for a stream. Publishes presence EVENT `join` (peers
   * space) on `topicOf('peers', ns)`; the broker also publishes `update` and `leave` there, and
   * signal EVENT `leave` on `topicOf('signal', ns)`, from the Claim's calls and its grace timers
   * (so a broker shared by many processes can publish the leaves of a process that died).
   * Throws SignalyardError `peer-id-taken` when another key holds the id (live or in its grace
   * period), `too-many-peers` when the space holds `maxPeers` ids already. A claim with the key
   * that holds the id takes it over at once: the previous stream's sink gets `taken()`.
   */
  claim: (request: BrokerClaimRequest, sink: ClaimSink) => MaybePromise<Claimed>
  /**
   * A space's members a page at a time, each about `pageBytes` of meta, read without holding an id
   * (the server-side API: `yard.peers(ns)`): what a claim's `members` would list, ids in their
   * grace period included, but the pages take no place among the space's events. A member may
   * come twice; `last` marks the final page. Optional (brokers written before it): without it
   * `yard.peers` rejects with `internal-error`.
   */
  members?: (space: ClaimSpace, ns: string, pageBytes: number) => Iterable<MemberPage> | AsyncIterable<MemberPage>
  /**
   * Hand a directed DATA frame to the stream that holds signal id `to` in `ns`. False when nobody
   * holds it; true when it was delivered, or dropped because the id is in its grace period.
   */
  direct: (ns: string, to: string, frame: Uint8Array) => MaybePromise<boolean>

  /**
   * Resolves once the broker can serve (createServer waits for it); rejects when it cannot start.
   * Optional: a broker without it is ready at once.
   */
  ready?: () => Promise<void>
  /**
   * Be told when the broker loses its backing store (`up` false: the server closes its sockets
   * and refuses new ones, since state may be gone) and when it is back. Returns an unwatch.
   * Optional: the in-memory broker never goes down.
   */
  watch?: (watcher: (up: boolean, reason: string) => void) => () => void

  /** Counts for /healthz and /metrics: KV keys, relay pairs, held presence and signal ids. */
  stats: () => MaybePromise<{ kvKeys: number, kvBytes?: number, relayPairs: number, peers?: number, signals?: number }>
  /** Release timers and connections. */
  close: () => MaybePromise<void>

  /**
   * Entries in this process's own tables (topics, relay sides, claims, namespaces…), by table:
   * read-only, for leak checks (back to their starting size once every client left). Optional.
   */
  tables?: () => Record<string, number>
}

/** The endpoints whose streams share a topic per namespace (relay pairs two streams: no topic). */
export type TopicEndpoint = Exclude<Endpoint, 'relay'>

/** Topic names: one per endpoint and namespace, `<endpoint>:<ns>` (the hub reads the endpoint back for its metrics). */
export const topicOf = (endpoint: TopicEndpoint, ns: string): string => `${endpoint}${TOPIC_SEPARATOR}${ns}`
/** Between a topic's endpoint and namespace (the Redis broker's Lua builds topics with it too). */
export const TOPIC_SEPARATOR = ':'

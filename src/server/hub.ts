/**
 * The hub: this process's subscriptions, tracked both ways. A topic maps to the connections that
 * want it (with a count, since one connection may hold several streams of one namespace); the
 * broker is subscribed on a topic's first local subscriber and unsubscribed on its last, and an
 * empty topic leaves nothing behind. A message from the broker is framed for WebSocket once and
 * written, as the same bytes, to each subscribed connection.
 */
import type { Broker, MaybePromise, TopicHandler } from './brokers/types.js'
import type { MetricEndpoint, Metrics } from './metrics.js'
import { wsMessage } from './socket.js'

/**
 * One broadcast frame, and the same frame wrapped in its WebSocket message header (binary, final,
 * unmasked: what a server sends), built once on first use and shared by every receiver.
 */
export class Broadcast {
  private wrapped: Buffer | null = null
  /** A text message (y-webrtc's JSON frames), not a binary one. */
  readonly text: boolean

  /** `ep` is the endpoint of the topic it was published on (for the metrics). */
  constructor (readonly frame: Uint8Array, readonly ep: MetricEndpoint) {
    this.text = TEXT_ENDPOINTS.has(ep)
  }

  /** The whole WebSocket message: header and frame in one buffer, ready for the TCP socket. */
  get wire (): Buffer {
    return this.wrapped ??= wsMessage(this.frame, this.text)
  }
}

/** Endpoints whose topics carry text (JSON) messages. */
const TEXT_ENDPOINTS: ReadonlySet<MetricEndpoint> = new Set<MetricEndpoint>(['y-webrtc'])

/** Anything that can take a broadcast: a connection. */
export interface Subscriber { broadcast: (message: Broadcast) => void }

export class Hub {
  private readonly topics = new Map<string, { subs: Map<Subscriber, number>, handler: TopicHandler }>()
  /** Broker subscriptions still being set up (Redis); later subscribers wait for them. */
  private readonly starting = new Map<string, Promise<void>>()

  constructor (private readonly broker: Broker, private readonly metrics?: Metrics) {}

  /** Number of topics with at least one local subscriber. */
  get size (): number { return this.topics.size }

  /** Local subscribers of `topic`. */
  count (topic: string): number { return this.topics.get(topic)?.subs.size ?? 0 }

  subscribe (topic: string, subscriber: Subscriber): MaybePromise<void> {
    let entry = this.topics.get(topic)
    if (entry === undefined) {
      const subs = new Map<Subscriber, number>()
      const ep = topic.slice(0, topic.indexOf(':')) as MetricEndpoint
      const handler: TopicHandler = (frame) => {
        const message = new Broadcast(frame, ep)
        for (const sub of subs.keys()) sub.broadcast(message)
        this.metrics?.sentMany(ep, subs.size, frame.length)
      }
      entry = { subs, handler }
      this.topics.set(topic, entry)
      const started = this.broker.subscribe(topic, handler)
      if (started instanceof Promise) {
        const done = started.finally(() => this.starting.delete(topic))
        this.starting.set(topic, done)
      }
    }
    entry.subs.set(subscriber, (entry.subs.get(subscriber) ?? 0) + 1)
    return this.starting.get(topic)
  }

  unsubscribe (topic: string, subscriber: Subscriber): void {
    const entry = this.topics.get(topic)
    const count = entry?.subs.get(subscriber)
    if (entry === undefined || count === undefined) return
    if (count > 1) entry.subs.set(subscriber, count - 1)
    else entry.subs.delete(subscriber)
    if (entry.subs.size === 0) {
      this.topics.delete(topic)
      const stopped = this.broker.unsubscribe(topic, entry.handler)
      if (stopped instanceof Promise) stopped.catch(() => {}) // a broker that lost its connection resubscribes nothing
    }
  }
}

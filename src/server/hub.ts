/**
 * The hub: this process's subscriptions, tracked both ways. A topic maps to the connections that
 * want it (with a count, since one connection may hold several streams of one namespace); the
 * broker is subscribed on a topic's first local subscriber and unsubscribed on its last, and an
 * empty topic leaves nothing behind. A message from the broker is written, as the same bytes, once
 * to each subscribed connection.
 */
import type { Broker, MaybePromise, TopicHandler } from './brokers/types.js'

/** Anything that can take a finished frame: a connection. */
export interface Subscriber { send: (frame: Uint8Array) => void }

export class Hub {
  private readonly topics = new Map<string, { subs: Map<Subscriber, number>, handler: TopicHandler }>()
  /** Broker subscriptions still being set up (Redis); later subscribers wait for them. */
  private readonly starting = new Map<string, Promise<void>>()

  constructor (private readonly broker: Broker) {}

  /** Number of topics with at least one local subscriber. */
  get size (): number { return this.topics.size }

  subscribe (topic: string, subscriber: Subscriber): MaybePromise<void> {
    let entry = this.topics.get(topic)
    if (entry === undefined) {
      const subs = new Map<Subscriber, number>()
      const handler: TopicHandler = (frame) => {
        for (const sub of subs.keys()) sub.send(frame)
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

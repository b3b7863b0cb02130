/**
 * y-webrtc's signalling protocol (Yjs; the reference is y-webrtc's `bin/server.js`), spoken at
 * `compat.yWebrtc.path` (default `/y-webrtc`) so unmodified y-webrtc clients can use a yard:
 *
 *   client → server   { type: 'subscribe', topics: string[] }     receive what is published to them
 *                     { type: 'unsubscribe', topics: string[] }
 *                     { type: 'publish', topic, data }            to every subscriber, the sender included
 *                     { type: 'ping' }                            answered { type: 'pong' }
 *   server → client   { type: 'publish', topic, data, clients }   `clients`: the topic's subscribers on
 *                                                                 the server process the publish came in on
 *                     { type: 'pong' }
 *                     { type: 'error', code, message }            not in the reference (which crashes on
 *                                                                 bad input); y-webrtc clients ignore it
 *
 * Every frame is a JSON text frame. Topics are topics of the broker (`y-webrtc:<topic>`), so
 * subscribers on every process of a Redis cluster receive each publish, and a topic nobody on this
 * process subscribes to any more leaves nothing behind here (the hub drops it). What the native
 * protocol bounds is bounded here too: the frame rate (messagesPerSecond, messageBurst), a frame's
 * size (peers.maxSignal), topics per connection (maxNamespaces), a topic's length (NAME_MAX), what
 * waits for `authorize` (maxBacklog), a client that does not read (maxOutbound), and repeated bad
 * frames (maxBadFrames per badFrameWindow: the socket closes, 1008).
 */
import type { WebSocket } from 'ws'
import { isName, NAME_MAX } from '../../protocol/check.js'
import type { ErrorCode } from '../../protocol/errors.js'
import { countBad } from '../abuse.js'
import type { ServerContext } from '../context.js'
import type { Subscriber } from '../hub.js'
import { CompatConnection } from './connection.js'

/** The endpoint name (metrics, `authorize`, topic prefix). */
export const Y_WEBRTC = 'y-webrtc'

const topicOf = (name: string): string => `${Y_WEBRTC}:${name}`

/** One y-webrtc client. */
export class YWebrtcConnection extends CompatConnection implements Subscriber {
  /** Topics subscribed (each once). */
  private readonly topics = new Set<string>()
  /** Topics `authorize` allowed (bounded like `topics`). */
  private readonly allowed = new Set<string>()
  private identity: unknown = null
  /** An authorize() or a broker subscription is pending: frames are held (until authenticate() too). */
  private busy = false

  constructor (id: string, ws: WebSocket, ctx: ServerContext, private readonly gone: (conn: YWebrtcConnection) => void) {
    super(id, ws, ctx, Y_WEBRTC)
  }

  /** authenticate() accepted the connection: what waited is handled. */
  admit (identity: unknown): void {
    this.identity = identity
    this.busy = false
    this.drain()
  }

  message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.closed) return
    const bytes = this.received(data)
    if (bytes === null) return this.fail('rate-limited', `at most ${this.ctx.limits.messagesPerSecond} frames per second; this one was dropped`)
    const text = this.text(data, isBinary)
    if (text === null) return this.fail('bad-frame', 'a frame is not UTF-8 text')
    if (this.held !== null) return this.hold(text, bytes)
    this.handle(text)
  }

  /** Handle held frames in order until one makes the connection wait again. */
  private drain (): void {
    if (this.held === null || this.busy) return
    while (!this.busy && !this.closed) {
      const text = this.nextHeld()
      if (text === undefined) break
      this.handle(text)
    }
    if (!this.busy && this.held?.length === 0) this.held = null
  }

  private handle (text: string): void {
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch {
      return this.fail('bad-frame', 'a frame is not JSON')
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return this.fail('bad-frame', 'a frame is a JSON object with a type')
    const m = msg as Record<string, unknown>
    switch (m.type) {
      case 'subscribe': return this.withTopics(m.topics, (topic) => this.subscribe(topic))
      case 'unsubscribe': return this.withTopics(m.topics, (topic) => this.unsubscribe(topic), false)
      case 'publish': return this.withTopics([m.topic], (topic) => this.publish(topic, m.data))
      case 'ping': return this.sendJson({ type: 'pong' })
      default: return this.fail('unknown-frame', `unknown type ${JSON.stringify(String(m.type)).slice(0, 40)}`)
    }
  }

  /**
   * Run `act` on each topic of `list` (an array of names), asking authorize() first where it must
   * (`check`): while an answer is pending, later messages wait, so everything happens in order.
   */
  private withTopics (list: unknown, act: (topic: string) => void | Promise<void>, check = true): void {
    if (!Array.isArray(list) || list.length > this.ctx.limits.maxNamespaces) return this.fail('bad-request', `topics is an array of at most ${this.ctx.limits.maxNamespaces} names`)
    const topics = list.filter((t): t is string => isName(t))
    if (topics.length !== list.length) return this.fail('bad-request', `a topic is a string of 1..${NAME_MAX} characters`)
    const authorize = this.ctx.authorize
    const pending = check && authorize !== undefined ? topics.filter((t) => !this.allowed.has(t)) : []
    if (pending.length === 0) return this.after(topics.map(act))
    this.pause()
    Promise.all(pending.map(async (topic) => await authorize?.(this.identity, topic, Y_WEBRTC)))
      .then((answers) => {
        if (this.closed) return
        for (const [i, topic] of pending.entries()) {
          if (answers[i] !== true) {
            this.ctx.metrics.refused('forbidden')
            this.sendJson({ type: 'error', code: 'forbidden', message: 'not authorized for this topic', topic })
          } else if (this.allowed.size < this.ctx.limits.maxNamespaces) {
            this.allowed.add(topic)
          }
        }
        return Promise.all(topics.filter((t) => !pending.includes(t) || answers[pending.indexOf(t)] === true).map(act))
      }, (err: unknown) => {
        this.ctx.log('error', 'authorize failed', { conn: this.id, error: String(err) })
        this.fail('internal-error', 'authorization failed')
      })
      .finally(() => this.resume())
      .catch(() => {}) // a failed subscription: the broker lost its store, and the connections are closed
  }

  /**
   * What `act` started: a subscription the broker is still setting up (Redis) holds the frames
   * that follow until it is in place. y-webrtc sends its first publish (its announce) right behind
   * the subscribe; without the wait, that publish could reach Redis before the SUBSCRIBE and the
   * sender would miss its own copy.
   */
  private after (results: Array<void | Promise<void>>): void {
    const pending = results.filter((r): r is Promise<void> => r instanceof Promise)
    if (pending.length === 0) return
    this.pause()
    void Promise.all(pending).catch(() => {}).finally(() => this.resume())
  }

  /** Later frames are held (in order) until `resume`. */
  private pause (): void {
    this.busy = true
    this.held ??= []
  }

  private resume (): void {
    this.busy = false
    this.drain()
  }

  private subscribe (topic: string): void | Promise<void> {
    if (this.topics.has(topic) || this.closed) return
    if (this.topics.size >= this.ctx.limits.maxNamespaces) return this.fail('too-many-namespaces', `at most ${this.ctx.limits.maxNamespaces} topics per connection`)
    this.topics.add(topic)
    // (a broker that lost its store closes the connections: a failed subscription needs no more)
    return this.ctx.hub.subscribe(topicOf(topic), this)
  }

  private unsubscribe (topic: string): void {
    if (!this.topics.delete(topic)) return
    this.ctx.hub.unsubscribe(topicOf(topic), this)
  }

  private publish (topic: string, data: unknown): void {
    let text: string
    try {
      text = JSON.stringify({ type: 'publish', topic, data, clients: this.ctx.hub.count(topicOf(topic)) })
    } catch {
      return this.fail('bad-frame', 'data cannot be encoded as JSON') // too deep to re-encode, say
    }
    const published = this.ctx.broker.publish(topicOf(topic), Buffer.from(text))
    if (published instanceof Promise) published.catch((err: unknown) => this.ctx.log('warn', 'y-webrtc publish failed', { conn: this.id, error: String(err) }))
  }

  /** Bad input: a coded error frame, counted toward the bad-frame limit; the connection goes on. */
  private fail (code: ErrorCode, message: string): void {
    this.sendJson({ type: 'error', code, message })
    countBad(this)
  }

  teardown (): void {
    if (this.closed) return
    this.closed = true
    for (const topic of this.topics) this.ctx.hub.unsubscribe(topicOf(topic), this)
    this.topics.clear()
    this.dropHeld()
    this.gone(this)
  }
}

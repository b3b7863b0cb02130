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
import { CloseCode, type ServerContext } from '../context.js'
import { Flow } from '../flow.js'
import type { Subscriber } from '../hub.js'
import { attach, byteLength, type SocketOwner } from '../socket.js'

/** The endpoint name (metrics, `authorize`, topic prefix). */
export const Y_WEBRTC = 'y-webrtc'

const topicOf = (name: string): string => `${Y_WEBRTC}:${name}`
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** One y-webrtc client. */
export class YWebrtcConnection extends Flow implements Subscriber, SocketOwner {
  /** Flow counts frames by their stream's endpoint: this connection has no streams. */
  readonly streams = new Map<number, { ep?: undefined }>()
  /** Topics subscribed (each once). */
  private readonly topics = new Set<string>()
  /** Topics `authorize` allowed (bounded like `topics`). */
  private readonly allowed = new Set<string>()
  private identity: unknown = null
  /** Messages waiting: for authenticate(), or behind an authorize() still running. */
  private waiting: Array<{ text: string, bytes: number }> | null = []
  private waitingBytes = 0
  private busy = false

  constructor (id: string, ws: WebSocket, ctx: ServerContext, private readonly gone: (conn: YWebrtcConnection) => void) {
    super(id, ws, ctx)
    attach(ws, this)
  }

  /** authenticate() accepted the connection: what waited is handled. */
  admit (identity: unknown): void {
    this.identity = identity
    this.busy = false
    this.drain()
  }

  message (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    this.touch()
    if (this.closed) return
    const bytes = byteLength(data)
    this.ctx.metrics.received(Y_WEBRTC, bytes)
    if (!this.take()) {
      this.ctx.metrics.refused('rate-limited')
      this.fail('rate-limited', `at most ${this.ctx.limits.messagesPerSecond} frames per second; this one was dropped`)
      return
    }
    let text: string
    try {
      // The reference takes text and binary frames alike.
      text = isBinary ? utf8.decode(Array.isArray(data) ? Buffer.concat(data) : data as Uint8Array) : data.toString()
    } catch {
      return this.fail('bad-frame', 'a frame is not UTF-8 text')
    }
    if (this.waiting !== null) {
      if (this.waitingBytes + bytes + 64 > this.ctx.limits.maxBacklog || !this.ctx.budgets.backlog.take(bytes + 64)) {
        this.ctx.metrics.refused('quota-exceeded')
        return this.close(CloseCode.Policy, 'backlog-full')
      }
      this.waiting.push({ text, bytes })
      this.waitingBytes += bytes + 64
      return
    }
    this.handle(text)
  }

  /** Handle waiting messages in order until one waits for authorize(). */
  private drain (): void {
    const waiting = this.waiting
    if (waiting === null || this.busy) return
    while (waiting.length > 0 && !this.busy && !this.closed) {
      const next = waiting.shift() as { text: string, bytes: number }
      this.waitingBytes -= next.bytes + 64
      this.ctx.budgets.backlog.give(next.bytes + 64)
      this.handle(next.text)
    }
    if (!this.busy && waiting.length === 0) this.waiting = null
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
    this.hold()
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
      .finally(() => this.release())
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
    this.hold()
    void Promise.all(pending).catch(() => {}).finally(() => this.release())
  }

  /** Later frames wait (in order) until `release`. */
  private hold (): void {
    this.busy = true
    this.waiting ??= []
  }

  private release (): void {
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

  private sendJson (message: object): void {
    if (this.closed) return
    const text = JSON.stringify(message)
    this.ws.send(text)
    this.ctx.metrics.sent(Y_WEBRTC, text.length)
    this.checkOutbound()
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
    if (this.waiting !== null) this.ctx.budgets.backlog.give(this.waitingBytes)
    this.waiting = null
    this.waitingBytes = 0
    this.gone(this)
  }

  internalError (where: string, err: unknown): void {
    this.ctx.log('error', 'y-webrtc connection failed', { conn: this.id, where, error: String(err) })
  }

  socketError (err: Error): void {
    this.ctx.log('warn', 'socket error', { conn: this.id, error: err.message })
  }
}

/**
 * What every client stream shares: a stream id on the channel's socket, the OPEN it re-sends after
 * each reconnect, `ready()`, `close()`, and the lifecycle events 'open', 'close', 'error'.
 * Subclasses add their endpoint's behaviour through the protected hooks.
 */
import { EventEmitter } from 'eventemitter3'
import { decodePayload, encodePayload, writeFrame, type RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { FrameType, type Endpoint, type ServerStreamFrame } from '../protocol/frames.js'
import { errorFromMeta, type YardSocket } from './socket.js'

export type StreamState = 'opening' | 'open' | 'closed'

/** @internal What Stream#decode returns for a payload that does not decode (no result object per message). */
export const UNDECODABLE: unique symbol = Symbol('undecodable')

/** Events every stream emits. */
export interface StreamEvents {
  /** The server acknowledged the stream (again after each reconnect). */
  open: []
  /** The stream ended; `error` says why when it was not closed on purpose. */
  close: [error?: SignalyardError]
  /** A coded error about this stream. */
  error: [error: SignalyardError]
}

/**
 * The base of EchoStream, KvStream and RelayStream.
 *
 * @example
 * const stream = channel.echo()
 * stream.on('open', () => {}).on('close', (err) => {}).on('error', (err) => console.error(err.code))
 * await stream.ready()
 * stream.close()
 */
export abstract class Stream<Events extends StreamEvents = StreamEvents> extends EventEmitter<Events> {
  /** @internal The stream's number on the socket. */
  readonly sid: number
  /** @internal */
  readonly topic: string
  private serverId: string | null = null
  private phase: StreamState = 'opening'
  /** The server's id for this stream (the `from` others see), known once open. */
  get id (): string | null { return this.serverId }
  /** 'opening' (also again while the socket reconnects), 'open', 'closed'. */
  get state (): StreamState { return this.phase }
  private everOpened = false
  private failure: SignalyardError | null = null
  private waiters: Array<{ resolve: () => void, reject: (err: SignalyardError) => void }> = []

  constructor (protected readonly socket: YardSocket, readonly namespace: string, readonly endpoint: Endpoint) {
    super()
    this.sid = socket.allocateSid()
    this.topic = `${endpoint}:${namespace}`
    // Registering may open the stream at once (socket already open): subclasses are set up by then
    // because they call `attach()` at the end of their constructor.
  }

  /** Resolves once the server has acknowledged the stream; rejects with the coded refusal. */
  ready (): Promise<void> {
    if (this.everOpened) return Promise.resolve()
    if (this.failure !== null) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  /** Close the stream; 'close' fires, and the server forgets it. */
  close (): void {
    if (this.state === 'closed') return
    this.socket.control(writeFrame(FrameType.Close, this.sid, null))
    this.finish()
  }

  /** Register on the socket; subclasses call this last in their constructor. */
  protected attach (): void {
    this.socket.add(this)
  }

  /** Fields of the OPEN frame beyond `ep` and `ns`. */
  protected openMeta (): object { return {} }

  /** @internal The socket (re)opened: OPEN goes out. */
  socketOpened (): void {
    this.socket.control(writeFrame(FrameType.Open, this.sid, { ep: this.endpoint, ns: this.namespace, ...this.openMeta() }))
  }

  /** @internal */
  refused (error: SignalyardError): void {
    this.finish(error)
  }

  /** @internal */
  socketDown (): void {
    if (this.phase === 'open') this.phase = 'opening'
  }

  /** @internal A frame of this stream from the server. */
  frame (frame: ServerStreamFrame): void {
    switch (frame.type) {
      case 'opened': return this.opened(frame.meta)
      case 'closed': return this.finish(typeof frame.meta.code === 'string' ? errorFromMeta(frame.meta) : undefined)
      case 'error': return this.failedRequest(frame.meta)
      case 'data': return this.data(frame.raw)
      case 'reply': return this.reply(frame.meta)
    }
  }

  /** @internal A broadcast EVENT of the stream's topic. */
  event (_frame: RawFrame): void {}

  /** Encode and send application data on this stream (queued while the socket is down). */
  protected sendData (data: unknown): void {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', `${this.endpoint} stream is closed`)
    let frame: Uint8Array
    try {
      frame = writeFrame(FrameType.Data, this.sid, null, encodePayload(data))
    } catch (err) {
      throw new SignalyardError('bad-request', `cannot encode payload: ${(err as Error).message}`)
    }
    this.socket.send(this.sid, frame)
  }

  /** Decode a payload; a malformed one becomes an 'error' event and UNDECODABLE. */
  protected decode (kind: number, bytes: Uint8Array): unknown {
    try {
      return decodePayload(kind, bytes)
    } catch {
      this.emitError(new SignalyardError('bad-frame', 'received a payload that does not decode'))
      return UNDECODABLE
    }
  }

  protected opened (meta: Record<string, unknown>): void {
    this.phase = 'open'
    this.serverId = typeof meta.id === 'string' ? meta.id : null
    this.everOpened = true
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.resolve()
    this.emitAny('open')
  }

  protected data (_frame: RawFrame): void {}
  protected reply (_meta: Record<string, unknown>): void {}

  /** ERROR frames never end a stream; those with `req` belong to a request. */
  protected failedRequest (meta: Record<string, unknown>): void {
    this.emitError(errorFromMeta(meta))
  }

  protected emitError (error: SignalyardError): void {
    this.emitAny('error', error)
  }

  /** End the stream: reject waiters, unregister, emit 'error' (if any) and 'close'. */
  protected finish (error?: SignalyardError): void {
    if (this.state === 'closed') return
    this.phase = 'closed'
    this.socket.remove(this)
    this.failure = error ?? new SignalyardError('stream-closed', `${this.endpoint} stream closed before it opened`)
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.reject(this.failure)
    if (error !== undefined) this.emitError(error)
    this.emitAny('close', error)
  }

  /** Emit a base event without fighting the subclass's event map. */
  protected emitAny (event: string, ...args: unknown[]): void {
    (this as unknown as EventEmitter).emit(event, ...args)
  }
}

/** A request waiting for its REPLY or ERROR. */
export interface Waiting { resolve: () => void, reject: (err: SignalyardError) => void }

/**
 * The REQUESTs of one stream waiting for their answer, by `req` (numbered from 1 per stream):
 * what kv and presence streams share.
 */
export class Requests<T extends Waiting> {
  private next = 1
  private readonly table = new Map<number, T>()

  /** Number the next request. */
  number (): number { return this.next++ }

  add (req: number, entry: T): void { this.table.set(req, entry) }

  /** The request a REPLY's or ERROR's meta names (`req`), no longer waiting; undefined when none. */
  take (meta: Record<string, unknown>): T | undefined {
    const req = meta.req
    const entry = typeof req === 'number' ? this.table.get(req) : undefined
    if (entry !== undefined) this.table.delete(req as number)
    return entry
  }

  values (): IterableIterator<T> { return this.table.values() }

  /** Every waiting request, no longer waiting. */
  drain (): T[] {
    const all = [...this.table.values()]
    this.table.clear()
    return all
  }
}

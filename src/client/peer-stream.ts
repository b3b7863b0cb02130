/**
 * A named stream inside a peer connection: ordered, reliable, binary-safe messages, with the
 * byte count still waiting to go out and a 'drain' event after `send()` returned false, like a
 * Node writable. Writes before the connection opens are held and delivered after it opens.
 */
import { EventEmitter } from 'eventemitter3'
import { SignalyardError } from '../protocol/errors.js'
import { toWebStreams, type WebStreams } from './web-streams.js'

export interface PeerStreamEvents<T = unknown> {
  /** The connection opened (streams made before it did get this once). */
  open: []
  /** A message from the other side. */
  data: [data: T]
  /** `bufferedAmount` fell back below the low-water mark after `send()` returned false. */
  drain: []
  /** The stream ended (either side closed it, or the connection ended); `error` says why if not on purpose. */
  close: [error?: SignalyardError]
  error: [error: SignalyardError]
}

/** What a stream needs from its connection's mux (which alone keeps the stream's byte counts). */
export interface StreamHost {
  /** The stream's number on the connection. */
  readonly id: number
  /** The connection is open: writes go out now. */
  readonly isOpen: boolean
  /** This stream's bytes waiting in the connection plus what the transport holds. */
  readonly bufferedAmount: number
  /** Queue a message; false when the stream should wait for 'drain'. */
  write: (data: unknown) => boolean
  /** CLOSE goes to the peer after what was sent. */
  close: () => void
}

/**
 * One stream of a peer connection (from `pc.createStream(label)` or the pc's 'connection' event).
 *
 * @example
 * const s = pc.createStream('file')
 * for (const chunk of chunks) if (!s.send(chunk)) await new Promise((r) => s.once('drain', r))
 * s.close()
 */
export class PeerStream<T = unknown> extends EventEmitter<PeerStreamEvents<T>> {
  private phase: 'opening' | 'open' | 'closed'
  /** 'opening' until the connection opens, then 'open' until 'close'. */
  get state (): 'opening' | 'open' | 'closed' { return this.phase }
  private waiters: Array<{ resolve: () => void, reject: (err: SignalyardError) => void }> = []
  private failure: SignalyardError | null = null

  constructor (private readonly host: StreamHost, readonly label: string) {
    super()
    this.phase = host.isOpen ? 'open' : 'opening'
  }

  /** The stream's number on the connection (odd when the initiator made it, even for the acceptor). */
  get id (): number { return this.host.id }

  /**
   * Bytes written and not yet on the wire: this stream's own queue plus what the transport holds
   * for the whole connection.
   */
  get bufferedAmount (): number { return this.host.bufferedAmount }

  /** The messages as a Web `ReadableStream` (web-streams.ts), made on first use: `stream.readable.pipeTo(sink)`. */
  get readable (): ReadableStream<T> { return (this.web ??= toWebStreams(this)).readable as ReadableStream<T> }

  /** A Web `WritableStream` that sends each chunk and waits for 'drain' (web-streams.ts), made on first use. */
  get writable (): WritableStream<T> { return (this.web ??= toWebStreams(this)).writable as WritableStream<T> }

  private web: WebStreams | undefined

  /**
   * Send any JSON value, a string, or binary. Like `WebSocket.send`, it takes a copy: the buffer
   * may be reused as soon as `send()` returns. Returns false when `bufferedAmount` reached the
   * high-water mark (1 MiB): wait for 'drain' before sending more. Throws `stream-closed` after
   * close and `payload-too-large` over 16 MiB.
   */
  send (data: T): boolean {
    if (this.state === 'closed') throw new SignalyardError('stream-closed', `peer stream "${this.label}" is closed`)
    return this.host.write(data)
  }

  /** Resolves when the connection is open; rejects if it closes first. */
  ready (): Promise<void> {
    if (this.state === 'open') return Promise.resolve()
    if (this.failure !== null) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  /** Close this stream on both sides (what was sent before is still delivered). */
  close (): void {
    if (this.state === 'closed') return
    this.host.close()
    this.finish()
  }

  /** @internal The connection opened. */
  opened (): void {
    if (this.phase !== 'opening') return
    this.phase = 'open'
    for (const w of this.waiters.splice(0)) w.resolve()
    this.emit('open')
  }

  /** @internal End the stream here (no frame is sent). */
  finish (error?: SignalyardError): void {
    if (this.phase === 'closed') return
    this.phase = 'closed'
    this.failure = error ?? new SignalyardError('stream-closed', 'the peer stream closed before the connection opened')
    for (const w of this.waiters.splice(0)) w.reject(this.failure)
    if (error !== undefined) this.emit('error', error)
    this.emit('close', error)
  }
}

/**
 * relay: a private pipe through the server between the two streams of a namespace that present
 * mirrored tokens. After a reconnect the stream presents its tokens again and re-pairs ('open'
 * fires again); what it sends meanwhile is queued. Messages in flight when a socket died may be lost.
 *
 * Flow control is per stream: the server's OPENED announces a `window` and ACK frames return
 * what it passed on to the other side. The stream writes to the socket only while less than the
 * window is unacknowledged (64 KiB before OPENED); the rest waits in its own queue, counted in
 * `bufferedAmount`, and 'drain' fires once that queue has emptied. A stream whose peer does not
 * read thus stops alone: the socket and every other stream on it keep flowing.
 */
import { encodePayload, writeFrame, type RawFrame } from '../protocol/codec.js'
import { readRelayAck, readRelayWindow } from '../protocol/relay.js'
import { SignalyardError } from '../protocol/errors.js'
import { FrameType, RELAY_PRE_OPEN_WINDOW, type ServerStreamFrame } from '../protocol/frames.js'
import { Stream, type StreamEvents, UNDECODABLE } from './stream.js'
import type { YardSocket } from './socket.js'
import { Fifo } from './fifo.js'
import { toWebStreams, type WebStreams } from './web-streams.js'

/** Bytes a relay stream keeps waiting (window full, or not open yet) before `send` throws `queue-full`. */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024

export interface RelayOptions {
  /** This side's token. */
  local: string
  /** The token the other side presents as its `local`. */
  remote: string
}

export interface RelayEvents<T = unknown> extends StreamEvents {
  data: [data: T]
  /** The stream's queue emptied after `send()` returned false: send more. */
  drain: []
}

/**
 * A relay stream (from `channel.relay({ local, remote })`).
 *
 * @example
 * const a = channel.relay({ local: 'a', remote: 'b' })
 * const b = channel.relay({ local: 'b', remote: 'a' })
 * b.on('data', (msg) => console.log(msg))   // 'hello'
 * a.send('hello')                            // held until paired, then delivered
 * // large transfers: wait for 'drain' when send() returns false
 * for (const chunk of chunks) if (!a.send(chunk)) await new Promise((r) => a.once('drain', r))
 */
export class RelayStream<T = unknown> extends Stream<RelayEvents<T>> {
  readonly local: string
  readonly remote: string
  /** The server's window for this stream (bytes unacknowledged); Infinity with a server that has none. */
  private window = RELAY_PRE_OPEN_WINDOW
  /** Bytes written on the current socket and not acknowledged yet. */
  private unacked = 0
  /** This stream's OPEN went out on the current socket (frames may follow it). */
  private onSocket = false
  private readonly queue = new Fifo<Uint8Array>()
  private queuedBytes = 0
  private needDrain = false
  /** close() was called while frames waited for the window: CLOSE follows the last of them. */
  private closing = false

  constructor (socket: YardSocket, namespace: string, options: RelayOptions, private readonly endWithSocket = false) {
    super(socket, namespace, 'relay')
    this.local = options.local
    this.remote = options.remote
    this.attach()
  }

  /**
   * A relay stream that belongs to a peer connection ends when its socket goes down: the server
   * closes the other side at once, so re-pairing could only lose what was in flight.
   */
  override socketDown (): void {
    this.onSocket = false
    this.unacked = 0
    this.window = RELAY_PRE_OPEN_WINDOW
    if (this.endWithSocket && this.state === 'open') return this.finish(new SignalyardError('connection-closed', 'the relay pair ended with the socket'))
    super.socketDown()
  }

  override socketOpened (): void {
    super.socketOpened()
    this.onSocket = true
    this.unacked = 0
    this.pump()
  }

  /**
   * Send to the paired stream: any JSON value, a string, or binary. Held until paired (and while
   * the server's window is full). Returns false when the message had to wait: send more after
   * 'drain'. Throws `queue-full` past 16 MiB waiting, `payload-too-large` past the frame limit.
   */
  send (data: T): boolean {
    if (this.state === 'closed' || this.closing) throw new SignalyardError('stream-closed', 'relay stream is closed')
    let frame: Uint8Array
    try {
      frame = writeFrame(FrameType.Data, this.sid, null, encodePayload(data))
    } catch (err) {
      throw new SignalyardError('bad-request', `cannot encode payload: ${(err as Error).message}`)
    }
    const maxFrame = this.socket.maxFrame
    if (frame.length > maxFrame) throw new SignalyardError('payload-too-large', `frame of ${frame.length} bytes is over the server's ${maxFrame}-byte limit`)
    if (this.queue.length === 0 && this.canWrite) {
      this.write(frame)
      return true
    }
    if (this.queuedBytes + frame.length > MAX_QUEUED_BYTES) {
      throw new SignalyardError('queue-full', `the relay stream holds ${this.queuedBytes} bytes already; wait for 'drain'`)
    }
    this.queue.push(frame)
    this.queuedBytes += frame.length
    this.needDrain = true
    return false
  }

  /**
   * Close both sides. What was sent before is delivered first: frames still waiting for the
   * server's window go out, then the close (the server writes them to the other side before it
   * closes it there). No more sends meanwhile.
   */
  override close (): void {
    if (this.state === 'closed' || this.closing) return
    if (this.queue.length === 0) return super.close()
    this.closing = true
  }

  /** Close both sides at once: what still waits for the window is dropped (close() sends it first). */
  abort (): void {
    if (this.state === 'closed') return
    this.closing = false
    this.queue.clear()
    this.queuedBytes = 0
    super.close()
  }

  /** Bytes not yet sent: this stream's queue plus what the realm's socket holds (shared by its streams). */
  get bufferedAmount (): number { return this.queuedBytes + this.socket.bufferedAmount }

  /** The messages as a Web `ReadableStream` (web-streams.ts), made on first use: `stream.readable.pipeTo(sink)`. */
  get readable (): ReadableStream<T> { return (this.web ??= toWebStreams(this)).readable as ReadableStream<T> }

  /** A Web `WritableStream` that sends each chunk and waits for 'drain' (web-streams.ts), made on first use. */
  get writable (): WritableStream<T> { return (this.web ??= toWebStreams(this)).writable as WritableStream<T> }

  private web: WebStreams | undefined

  /** May a frame go to the socket now? */
  private get canWrite (): boolean {
    return this.onSocket && this.socket.isOpen && this.unacked < this.window
  }

  private write (frame: Uint8Array): void {
    this.socket.send(this.sid, frame)
    this.unacked += frame.length
  }

  /** Write what waits while the window allows; 'drain' once the queue is empty. */
  private pump (): void {
    while (this.queue.length > 0 && this.canWrite) {
      const frame = this.queue.shift() as Uint8Array
      this.queuedBytes -= frame.length
      this.write(frame)
    }
    if (this.queue.length > 0 || this.state === 'closed') return
    if (this.closing) return super.close()
    if (this.needDrain) {
      this.needDrain = false
      this.emitAny('drain')
    }
  }

  override frame (frame: ServerStreamFrame): void {
    if (frame.type !== 'ack') return super.frame(frame)
    const bytes = readRelayAck(frame.raw)
    if (bytes === null) return
    this.unacked = Math.max(0, this.unacked - bytes)
    this.pump()
  }

  protected override openMeta (): object {
    return { local: this.local, remote: this.remote }
  }

  protected override opened (meta: Record<string, unknown>): void {
    // A server without per-stream flow control announces no window: write as it comes.
    this.window = readRelayWindow(meta) ?? Infinity
    super.opened(meta)
    this.pump()
  }

  protected override finish (error?: SignalyardError): void {
    this.queue.clear()
    this.queuedBytes = 0
    this.needDrain = false
    super.finish(error)
  }

  protected override data (frame: RawFrame): void {
    if (this.state !== 'open') return
    const value = this.decode(frame.kind, frame.payload)
    if (value !== UNDECODABLE) this.emit('data', value as T)
  }
}

/**
 * relay: a private pipe through the server between the two streams of a namespace that present
 * mirrored tokens. After a reconnect the stream presents its tokens again and re-pairs ('open'
 * fires again); what it sends meanwhile is queued. Messages in flight when a socket died may be lost.
 */
import type { RawFrame } from '../protocol/codec.js'
import { SignalyardError } from '../protocol/errors.js'
import { Stream, type StreamEvents } from './stream.js'
import type { YardSocket } from './socket.js'

export interface RelayOptions {
  /** This side's token. */
  local: string
  /** The token the other side presents as its `local`. */
  remote: string
}

export interface RelayEvents extends StreamEvents {
  data: [data: unknown]
}

/**
 * A relay stream (from `channel.relay({ local, remote })`).
 *
 * @example
 * const a = channel.relay({ local: 'a', remote: 'b' })
 * const b = channel.relay({ local: 'b', remote: 'a' })
 * b.on('data', (msg) => console.log(msg))   // 'hello'
 * a.send('hello')                            // held until paired, then delivered
 */
export class RelayStream extends Stream<RelayEvents> {
  readonly local: string
  readonly remote: string

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
    if (this.endWithSocket && this.state === 'open') return this.finish(new SignalyardError('connection-closed', 'the relay pair ended with the socket'))
    super.socketDown()
  }

  /** Send to the paired stream: any JSON value, a string, or binary. Held until paired. */
  send (data: unknown): void {
    this.sendData(data)
  }

  /** Bytes written on this realm's socket and not yet sent (shared by every stream of the socket). */
  get bufferedAmount (): number { return this.socket.bufferedAmount }

  protected override openMeta (): object {
    return { local: this.local, remote: this.remote }
  }

  protected override data (frame: RawFrame): void {
    if (this.state !== 'open') return
    const decoded = this.decode(frame.kind, frame.payload)
    if (decoded.ok) this.emit('data', decoded.value)
  }
}

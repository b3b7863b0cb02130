/**
 * echo: namespace broadcast. What one stream sends reaches every echo stream of the namespace
 * subscribed when it arrives, the sender's own included unless `self: false`.
 */
import { readEchoFrom } from '../protocol/echo.js'
import type { RawFrame } from '../protocol/codec.js'
import { Stream, type StreamEvents, UNDECODABLE } from './stream.js'
import type { YardSocket } from './socket.js'

export interface EchoOptions {
  /** Receive your own messages too (default true). */
  self?: boolean
}

export interface EchoEvents<T = unknown> extends StreamEvents {
  /** A message; `from` is the sender's stream id, stamped by the server. */
  data: [data: T, info: { from: string }]
}

/**
 * An echo stream (from `channel.echo()`). `T` types what it sends and receives (not checked at
 * run time: other clients may send anything).
 *
 * @example
 * const echo = channel.echo<{ hello: string }>()
 * echo.on('data', (msg, { from }) => console.log(from, msg))
 * echo.send({ hello: 'world' })
 */
export class EchoStream<T = unknown> extends Stream<EchoEvents<T>> {
  private readonly self: boolean

  constructor (socket: YardSocket, namespace: string, options: EchoOptions = {}) {
    super(socket, namespace, 'echo')
    this.self = options.self !== false
    this.attach()
  }

  /** Publish to the namespace: any JSON value, a string, or binary. Queued while offline. */
  send (data: T): void {
    this.sendData(data)
  }

  /** @internal */
  override event (frame: RawFrame): void {
    if (this.state !== 'open') return
    const from = readEchoFrom(frame)
    if (!this.self && from === this.id) return
    const value = this.decode(frame.kind, frame.payload)
    if (value !== UNDECODABLE) this.emit('data', value as T, { from })
  }
}

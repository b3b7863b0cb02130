/**
 * The relay pipe: a peer connection over the server's relay endpoint, paired by the tokens
 * `<cid>/i` (initiator) and `<cid>/a` (acceptor): the connection's random id makes them a secret
 * only the two peers know, and they stay short whatever the ids are. Used when either side has no WebRTC
 * or ICE did not connect in time. Backpressure is the relay stream's `bufferedAmount`, polled: its
 * own queue (what the server's per-stream window holds back) plus the shared WebSocket's bytes.
 */
import { SignalyardError } from '../../protocol/errors.js'
import type { RelayStream } from '../relay-stream.js'
import { PIPE_LOW_WATER, type Pipe, type PipeHandlers } from './pipe.js'

/** Opens a relay stream on the node's channel. */
export type RelayOpener = (local: string, remote: string) => RelayStream

const DRAIN_POLL_MS = 5

export class RelayPipe implements Pipe {
  readonly transport = 'relay'
  readonly chunk = 64 * 1024
  private readonly stream: RelayStream
  private opened = false
  private closed = false
  private drainTimer: ReturnType<typeof setTimeout> | null = null

  constructor (open: RelayOpener, cid: string, initiator: boolean, private readonly on: PipeHandlers) {
    const [local, remote] = initiator ? ['i', 'a'] : ['a', 'i']
    this.stream = open(`${cid}/${local}`, `${cid}/${remote}`)
    this.stream.on('open', () => {
      if (this.opened || this.closed) return
      this.opened = true
      this.on.open()
    })
    this.stream.on('data', (data) => {
      if (!this.closed && data instanceof Uint8Array) this.on.message(data)
    })
    this.stream.on('close', (error) => {
      if (this.closed) return
      this.release()
      this.on.close(error ?? new SignalyardError('peer-left', 'the relay pair closed'))
    })
  }

  get bufferedAmount (): number { return this.stream.bufferedAmount }

  send (bytes: Uint8Array): void {
    this.stream.send(bytes)
    if (this.drainTimer === null && this.bufferedAmount > PIPE_LOW_WATER) this.pollDrain()
  }

  private pollDrain (): void {
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null
      if (this.closed) return
      if (this.bufferedAmount > PIPE_LOW_WATER) return this.pollDrain()
      this.on.drain()
    }, DRAIN_POLL_MS)
  }

  close (): void {
    if (this.closed) return
    this.release()
    this.stream.close()
  }

  private release (): void {
    this.closed = true
    if (this.drainTimer !== null) clearTimeout(this.drainTimer)
    this.drainTimer = null
  }
}

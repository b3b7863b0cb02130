/**
 * A pipe: what a peer connection needs from a transport. Ordered, reliable, binary messages, a
 * buffered byte count and a drain signal. The WebRTC data channel and the server relay both fit.
 */
import type { SignalyardError } from '../../protocol/errors.js'

export interface PipeHandlers {
  /** The pipe carries messages now. */
  open: () => void
  message: (bytes: Uint8Array) => void
  /** `bufferedAmount` fell to the pipe's low-water mark. */
  drain: () => void
  /** The pipe is gone (after it opened, or while trying). */
  close: (error?: SignalyardError) => void
}

export interface Pipe {
  readonly transport: 'webrtc' | 'relay'
  /** Largest fragment to send in one message. */
  readonly chunk: number
  /** Bytes handed to the pipe and not yet on the wire. */
  readonly bufferedAmount: number
  /** Send one frame; the pipe may keep `bytes` for a while, so nothing may change them afterwards. */
  send: (bytes: Uint8Array) => void
  /** Release everything; no handler is called afterwards. */
  close: () => void
}

/** Below this many buffered bytes a pipe reports 'drain'. */
export const PIPE_LOW_WATER = 256 * 1024
/** A peer connection stops handing fragments to a pipe at this many buffered bytes. */
export const PIPE_HIGH_WATER = 1024 * 1024

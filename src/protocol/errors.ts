/**
 * Errors: one class with stable string codes, shared by client and server.
 * The codes travel in ERROR frames (see docs/PROTOCOL.md) and are listed in the README.
 */

/**
 * Every code signalyard can report, with a short meaning. Stable: apps may switch on them.
 *
 * @example
 * channel.on('error', (err) => console.warn(err.code, ERROR_CODES[err.code]))
 */
export const ERROR_CODES = {
  'bad-frame': 'a frame could not be parsed, or its fields have the wrong type',
  'unknown-frame': 'the frame type is not one this side understands',
  'unknown-stream': 'the frame names a stream id that is not open on this connection',
  'stream-exists': 'OPEN for a stream id that is already open on this connection',
  'unknown-endpoint': 'OPEN names an endpoint the server does not have',
  'bad-request': 'a field is missing, too long or of the wrong type',
  'payload-too-large': 'a frame, value or buffer is over its limit',
  'too-many-streams': 'the connection has too many open streams',
  'too-many-namespaces': 'the connection uses too many namespaces',
  'too-many-keys': 'the namespace holds too many KV keys',
  'quota-exceeded': 'a byte budget (the namespace\'s, the connection\'s or the whole server\'s) is full; try again later',
  'queue-full': 'the client offline queue is full; the frame was not queued',
  'relay-token-in-use': 'a relay stream with these tokens is already pending or paired',
  'relay-timeout': 'no stream paired with this relay stream in time',
  'relay-stalled': 'the relay stream made no progress for relay.stallTimeout ms: the other side does not read',
  'relay-overflow': 'the client sent more than relay.maxInFlight bytes on a relay stream without waiting for ACKs',
  'stream-closed': 'the stream is closed',
  'connection-closed': 'the connection closed before the stream was acknowledged',
  'connect-failed': 'the client could not connect (the message says why); it retries',
  'server-closing': 'the server is shutting down',
  'channel-closed': 'the channel was closed',
  unauthorized: 'authentication failed',
  forbidden: 'not authorized for this namespace or endpoint',
  'rate-limited': 'too many messages per second',
  'peer-id-taken': 'another client owns this peer id',
  'too-many-peers': 'the namespace holds too many presence members',
  'unknown-peer': 'no client holds this peer id in the namespace',
  'peer-left': 'the remote peer went away',
  'connect-timeout': 'the peer connection did not open in time',
  'webrtc-unavailable': 'WebRTC was required but one side has no RTCPeerConnection',
  'media-needs-webrtc': 'tracks need a WebRTC leg, and this peer connection can never have one (transport \'relay\', or a side without RTCPeerConnection)',
  'media-unsupported': 'one side\'s RTCPeerConnection cannot carry media or renegotiate (node-datachannel\'s polyfill)',
  'must-listen-first': 'connect() was called before listen()',
  'internal-error': 'the server failed while handling the frame'
} as const

/** A stable machine-readable error code. */
export type ErrorCode = keyof typeof ERROR_CODES

/**
 * The one error class of signalyard: `code` is stable, `message` is for people. Every error the
 * library raises says what happened in its message; an error made without one has the code as its
 * message (`ERROR_CODES[code]` is the code's meaning). The constructor does not look the meaning up,
 * so a browser bundle that never reads ERROR_CODES leaves the table out (about 1 kB gzipped).
 *
 * @example
 * try { await kv.set('k', 'v') } catch (err) {
 *   if (err instanceof SignalyardError && err.code === 'payload-too-large') shrink()
 * }
 */
export class SignalyardError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message?: string) {
    super(message ?? code)
    this.name = 'SignalyardError'
    this.code = code
  }
}

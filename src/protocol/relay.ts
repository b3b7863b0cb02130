/**
 * The relay endpoint on the wire: two streams presenting mirrored tokens are paired, and what one
 * sends the other receives (docs/PROTOCOL.md, "relay").
 *
 *   client → server  OPEN   { ep: "relay", ns, local, remote }   tokens: names, local ≠ remote
 *   server → client  OPENED { id, window }   paired; window: bytes a client may have unacknowledged
 *   both             DATA   + payload        forwarded as the same frame, id rewritten
 *   server → client  ACK    { bytes }        bytes of this stream's DATA passed on to the other side
 *   server → client  CLOSED { code? }        the pair ended (relay-timeout, relay-stalled, …)
 *
 * Before OPENED a client may send RELAY_PRE_OPEN_WINDOW bytes; after it, `window` bytes (plus one
 * frame) beyond what was acknowledged.
 */
import { FrameType, writeFrame, type RawFrame } from './codec.js'
import { bad, isName, NAME_MAX, type EndpointWire } from './check.js'

/**
 * Bytes of DATA a client may send on a relay stream before its OPENED (which announces the
 * stream's `window`); the server's window is never smaller.
 */
export const RELAY_PRE_OPEN_WINDOW = 64 * 1024

/** OPEN of a relay stream. */
export interface OpenRelay { type: 'open', sid: number, ep: 'relay', ns: string, local: string, remote: string }

export const relayWire: EndpointWire<OpenRelay> = {
  open: (sid, ns, m) => {
    if (!isName(m.local) || !isName(m.remote)) return bad(sid, `local and remote must be strings of 1..${NAME_MAX} characters`)
    if (m.local === m.remote) return bad(sid, 'local and remote must differ')
    return { type: 'open', sid, ep: 'relay', ns, local: m.local, remote: m.remote }
  },
  requests: {}
}

/** ACK `{ bytes }` on stream `sid`. */
export function writeRelayAck (sid: number, bytes: number): Uint8Array {
  return writeFrame(FrameType.Ack, sid, { bytes })
}

/** The bytes an ACK acknowledges; null when malformed or not positive. */
export function readRelayAck (frame: RawFrame): number | null {
  const bytes = frame.meta?.bytes
  return typeof bytes === 'number' && bytes > 0 ? bytes : null
}

/** OPENED of a relay stream. */
export function relayOpenedMeta (id: string, window: number): { id: string, window: number } {
  return { id, window }
}

/**
 * The window OPENED announces (never below RELAY_PRE_OPEN_WINDOW); null when it announces none
 * (a server without per-stream flow control: write as it comes).
 */
export function readRelayWindow (meta: Record<string, unknown>): number | null {
  const window = meta.window
  return typeof window === 'number' && window > 0 ? Math.max(window, RELAY_PRE_OPEN_WINDOW) : null
}

/**
 * The STUN room: a stateless STUN Binding responder over UDP (SPEC §8, "STUN"), so a WebRTC peer
 * can learn its server-reflexive address from the signalling server itself.
 *
 * Followed: RFC 8489 (= RFC 5389 for everything here) §5 header (two zero bits, 0x2112A442
 * cookie, 96-bit transaction id, length a multiple of 4 that matches the datagram), §6.3 the
 * Binding request → success response, §14.2 XOR-MAPPED-ADDRESS (IPv4 and IPv6; an IPv4-mapped
 * IPv6 sender on a dual-stack socket is answered as IPv4), §14.7 FINGERPRINT (CRC-32 XOR
 * 0x5354554e, on every response; a request's FINGERPRINT, when present, must be the last
 * attribute and valid). §7.3.1 choice: a request with a comprehension-required attribute
 * (type < 0x8000) we do not understand gets 420 Unknown Attribute (ERROR-CODE + UNKNOWN-ATTRIBUTES,
 * at most 16 types listed) — that is what the RFC requires, and how an RFC 5780 client learns we
 * do not do CHANGE-REQUEST. "Understood" is: USERNAME, MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256
 * (this server uses no credentials, so it ignores them, RFC 8489 §9). No SOFTWARE attribute (smaller
 * answers, nothing to fingerprint the server by).
 *
 * Dropped silently, never thrown on: datagrams over MAX_DATAGRAM (548 bytes, RFC 8489 §6.2.1's
 * bound for UDP without path MTU knowledge) or under 20 bytes, non-STUN bytes, a wrong cookie, a
 * length that does not match, malformed attributes, a bad FINGERPRINT, indications, responses,
 * any method but Binding, and senders with port 0. There is no per-sender state (nothing for a
 * flood to exhaust): each datagram is parsed, answered and forgotten.
 *
 * Budget: answers are bounded for the whole responder, never per sender (a sender's address may
 * be spoofed, and per-sender state is what a flood exhausts): a token bucket of
 * `answersPerSecond` (2,000 by default) and a send queue of at most 256 KiB; past either a
 * request goes unanswered (onDropped).
 *
 * Amplification: a success response is 40 bytes (IPv4) or 52 (IPv6) for a request of at least
 * 20; a 420 is 64 bytes for a request of at least 24 (one unknown attribute) and at most 92 for
 * one of at least 84 (16 of them), so the factor stays under 2.7 (2.6 for a bare request). Only requests are
 * answered, so two STUN servers cannot be made to bounce datagrams at each other.
 *
 * No package: `stun` on npm (a general STUN library, far more than a Binding responder needs) was
 * considered; ~230 lines of our own keep the server free of a new runtime dependency.
 *
 * @example
 *   const stun = await startStun({ port: 3478, onAnswered: () => metrics.stunAnswered++ })
 *   // iceServers: [{ urls: `stun:${host}:${stun.port}` }]
 *   await stun.close()
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'

/** A running STUN responder. */
export interface StunServer {
  /** The UDP port it is bound to (the ephemeral one chosen when started with port 0). */
  readonly port: number
  /** Stops answering and releases the port. Safe to call twice. */
  close: () => Promise<void>
}

/** Options of startStun. */
export interface StunOptions {
  /** UDP port; 0 picks an ephemeral one. */
  port: number
  /** Address to bind (default: all IPv4 addresses); an IPv6 address binds a udp6 socket. */
  host?: string
  /** Called once per response sent (success or 420), e.g. for a metrics counter. */
  onAnswered?: () => void
  /**
   * Answers per second for the whole responder, in a token bucket of one second's worth (default
   * ANSWERS_PER_SECOND): a flood, spoofed senders included, gets no more out of the yard than this.
   */
  answersPerSecond?: number
  /** Called once per request left unanswered because of that budget or a full send queue. */
  onDropped?: () => void
}

/** Default budget of answers per second (a busy public STUN server sees a few hundred). */
export const ANSWERS_PER_SECOND = 2000
/** Bytes of answers waiting in the socket's send queue past which requests go unanswered. */
export const MAX_SEND_QUEUE = 256 * 1024

/** Largest datagram looked at (RFC 8489 §6.2.1); larger ones are dropped unread. */
export const MAX_DATAGRAM = 548
const HEADER = 20
const MAGIC_COOKIE = 0x2112a442
const FINGERPRINT_XOR = 0x5354554e
/** At most this many attribute types in an UNKNOWN-ATTRIBUTES (keeps a 420 small). */
const MAX_UNKNOWN = 16

const enum Type { BindingRequest = 0x0001, BindingSuccess = 0x0101, BindingError = 0x0111 }
const enum Attr {
  XorMappedAddress = 0x0020, ErrorCode = 0x0009, UnknownAttributes = 0x000a, Fingerprint = 0x8028
}
/** Comprehension-required attributes this server understands (by ignoring them: no credentials). */
const UNDERSTOOD = new Set([0x0006 /* USERNAME */, 0x0008 /* MESSAGE-INTEGRITY */, 0x001c /* MESSAGE-INTEGRITY-SHA256 */])

/**
 * Starts a STUN Binding responder on UDP `port` (0 → ephemeral); resolves once bound, rejects if
 * the port cannot be bound.
 *
 * @example
 *   const stun = await startStun({ port: 0, host: '127.0.0.1' })
 *   console.log(`stun:127.0.0.1:${stun.port}`)
 */
export async function startStun (options: StunOptions): Promise<StunServer> {
  const rate = options.answersPerSecond ?? ANSWERS_PER_SECOND
  if (!(Number.isFinite(rate) && rate > 0)) throw new TypeError('answersPerSecond must be a positive number')
  const socket = createSocket(options.host !== undefined && isIPv6(options.host) ? 'udp6' : 'udp4')
  const { onAnswered, onDropped } = options
  // Token bucket on the monotonic clock (a wall-clock step neither starves nor floods it).
  let tokens = rate
  let refilled = performance.now()
  await new Promise<void>((resolve, reject) => {
    socket.once('error', (err) => { socket.close(); reject(err) })
    socket.bind(options.port, options.host, () => { socket.removeAllListeners('error'); resolve() })
  })
  // A send to an unreachable sender is no reason to stop answering the others.
  socket.on('error', () => {})
  socket.on('message', (msg, rinfo) => {
    try {
      const answer = respond(msg, rinfo)
      if (answer === null) return
      const t = performance.now()
      tokens = Math.min(rate, tokens + Math.max(0, t - refilled) * rate / 1000)
      refilled = t
      if (tokens < 1 || socket.getSendQueueSize() > MAX_SEND_QUEUE) return onDropped?.()
      tokens -= 1
      socket.send(answer, rinfo.port, rinfo.address, () => {})
      onAnswered?.()
    } catch {
      // garbage (or a throwing onAnswered) never takes the responder down
    }
  })
  const port = socket.address().port
  let closing: Promise<void> | null = null
  return {
    port,
    close: () => closing ??= new Promise<void>((resolve) => { socket.close(() => resolve()) })
  }
}

/** The response to one datagram, or null when it gets none. Pure: no I/O, no state. */
export function respond (msg: Buffer, sender: Pick<RemoteInfo, 'address' | 'port'>): Buffer | null {
  if (msg.length < HEADER || msg.length > MAX_DATAGRAM || sender.port === 0) return null
  if (msg.readUInt16BE(0) !== Type.BindingRequest) return null // also rejects the two top bits
  const length = msg.readUInt16BE(2)
  if (length % 4 !== 0 || HEADER + length !== msg.length || msg.readUInt32BE(4) !== MAGIC_COOKIE) return null
  const unknown = unknownAttributes(msg)
  if (unknown === null) return null
  const txid = msg.subarray(8, HEADER)
  if (unknown.length > 0) return finish(Type.BindingError, txid, [errorCode(420, 'Unknown Attribute'), unknownList(unknown)])
  const mapped = xorMappedAddress(sender.address, sender.port, txid)
  return mapped === null ? null : finish(Type.BindingSuccess, txid, [mapped])
}

/**
 * The comprehension-required attribute types we do not understand ([] when none), or null when
 * the attributes are malformed or a FINGERPRINT is misplaced or wrong.
 */
function unknownAttributes (msg: Buffer): number[] | null {
  const unknown: number[] = []
  let at = HEADER
  while (at < msg.length) {
    if (at + 4 > msg.length) return null
    const type = msg.readUInt16BE(at)
    const end = at + 4 + msg.readUInt16BE(at + 2)
    const next = end + ((4 - (end % 4)) % 4)
    if (next > msg.length) return null
    if (type === Attr.Fingerprint) {
      if (next !== msg.length || end - at !== 8) return null
      if (msg.readUInt32BE(at + 4) !== ((crc32(msg.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0)) return null
    } else if (type < 0x8000 && !UNDERSTOOD.has(type) && !unknown.includes(type) && unknown.length < MAX_UNKNOWN) {
      unknown.push(type)
    }
    at = next
  }
  return unknown
}

/** XOR-MAPPED-ADDRESS of address:port (RFC 8489 §14.2), or null for an address we cannot parse. */
function xorMappedAddress (address: string, port: number, txid: Buffer): Buffer | null {
  const mappedV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  const ip = ipBytes(mappedV4 !== null ? mappedV4[1] : address)
  if (ip === null) return null
  const value = Buffer.alloc(4 + ip.length)
  value[1] = ip.length === 4 ? 0x01 : 0x02
  value.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2)
  const mask = Buffer.alloc(16)
  mask.writeUInt32BE(MAGIC_COOKIE, 0)
  txid.copy(mask, 4)
  for (let i = 0; i < ip.length; i++) value[4 + i] = ip[i] ^ mask[i]
  return attribute(Attr.XorMappedAddress, value)
}

/** ERROR-CODE (RFC 8489 §14.8): class, number, UTF-8 reason. */
function errorCode (code: number, reason: string): Buffer {
  const value = Buffer.concat([Buffer.from([0, 0, Math.floor(code / 100), code % 100]), Buffer.from(reason, 'utf8')])
  return attribute(Attr.ErrorCode, value)
}

/** UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the types, 16 bits each. */
function unknownList (types: number[]): Buffer {
  const value = Buffer.alloc(types.length * 2)
  types.forEach((type, i) => value.writeUInt16BE(type, i * 2))
  return attribute(Attr.UnknownAttributes, value)
}

/** One TLV attribute, value padded to 4 bytes. */
function attribute (type: number, value: Buffer): Buffer {
  const out = Buffer.alloc(4 + value.length + ((4 - (value.length % 4)) % 4))
  out.writeUInt16BE(type, 0)
  out.writeUInt16BE(value.length, 2)
  value.copy(out, 4)
  return out
}

/** A whole message: header, attributes, then FINGERPRINT over all that precedes it. */
function finish (type: number, txid: Buffer, attributes: Buffer[]): Buffer {
  const body = Buffer.concat(attributes)
  const msg = Buffer.alloc(HEADER + body.length + 8)
  msg.writeUInt16BE(type, 0)
  msg.writeUInt16BE(body.length + 8, 2) // the length covers FINGERPRINT when its CRC is computed
  msg.writeUInt32BE(MAGIC_COOKIE, 4)
  txid.copy(msg, 8)
  body.copy(msg, HEADER)
  const at = HEADER + body.length
  msg.writeUInt16BE(Attr.Fingerprint, at)
  msg.writeUInt16BE(4, at + 2)
  msg.writeUInt32BE((crc32(msg.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0, at + 4)
  return msg
}

/** IPv4 or IPv6 text (a `%zone` suffix ignored) as 4 or 16 bytes; null when it is neither. */
function ipBytes (text: string): Buffer | null {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (v4 !== null) {
    const parts = v4.slice(1).map(Number)
    return parts.every((n) => n <= 255) ? Buffer.from(parts) : null
  }
  const address = text.split('%')[0]
  if (!isIPv6(address)) return null
  const [head, tail] = address.split('::') as [string, string | undefined]
  const words = (part: string | undefined): number[] => {
    if (part === undefined || part === '') return []
    return part.split(':').flatMap((w) => {
      const v4tail = ipBytes(w)
      return v4tail !== null && v4tail.length === 4 ? [v4tail.readUInt16BE(0), v4tail.readUInt16BE(2)] : [parseInt(w, 16)]
    })
  }
  const left = words(head)
  const right = words(tail)
  const all = tail === undefined ? left : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
  if (all.length !== 8) return null
  const out = Buffer.alloc(16)
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2))
  return out
}

/** CRC-32 (IEEE 802.3, reflected 0xEDB88320), as FINGERPRINT uses it. */
const CRC_TABLE = new Int32Array(256).map((_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c
})
function crc32 (bytes: Uint8Array): number {
  let crc = -1
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return (crc ^ -1) >>> 0
}

/**
 * Opening a stream (an OPEN frame): the server's authorize() first, then the connection's bounds
 * (streams, namespaces), then the endpoint's OpenHandler from the table (endpoints/index.ts).
 * Whatever stops it is answered with CLOSED and its code (Connection.refuse); a duplicate stream
 * id with ERROR instead, since CLOSED would read as the end of the stream that holds the id.
 */
import { SignalyardError } from '../protocol/errors.js'
import type { OpenFrame } from '../protocol/frames.js'
import type { Connection } from './connection.js'
import type { OpenHandler, ServerStream } from './context.js'
import { endpoints } from './endpoints/index.js'

/** Handle an OPEN frame of `conn` (a Promise while authorize() or the endpoint answers). */
export function open (conn: Connection, frame: OpenFrame): void | Promise<void> {
  const { authorize, log } = conn.ctx
  if (authorize === undefined) return openStream(conn, frame)
  const forbidden = (): void => conn.refuse(frame.sid, 'forbidden', `not authorized for ${frame.ep} in this namespace`)
  const decide = (allowed: boolean): void | Promise<void> => allowed === true ? openStream(conn, frame) : forbidden()
  let allowed: boolean | Promise<boolean>
  try {
    allowed = authorize(conn.identity, frame.ns, frame.ep)
  } catch (err) {
    log('error', 'authorize threw', { conn: conn.id, error: String(err) })
    return forbidden()
  }
  if (!(allowed instanceof Promise)) return decide(allowed)
  return allowed.then(decide, (err: unknown) => {
    log('error', 'authorize failed', { conn: conn.id, error: String(err) })
    forbidden()
  })
}

function openStream (conn: Connection, frame: OpenFrame): void | Promise<void> {
  const { sid, ns } = frame
  const { limits, log } = conn.ctx
  if (conn.streams.has(sid)) return conn.reject({ error: 'stream-exists', message: `stream ${sid} is open already`, sid })
  if (conn.streams.size >= limits.maxStreams) return conn.refuse(sid, 'too-many-streams', `at most ${limits.maxStreams} streams per connection`)
  // Counted from the streams (at most maxStreams of them): no per-connection namespace table.
  const use = namespaceUse(conn, ns)
  if (!use.has && use.count >= limits.maxNamespaces) {
    return conn.refuse(sid, 'too-many-namespaces', `at most ${limits.maxNamespaces} namespaces per connection`)
  }
  const register = (stream: ServerStream): void => conn.register(frame.ep, sid, stream)
  const onError = (err: unknown): void => {
    if (err instanceof SignalyardError) return conn.refuse(sid, err.code, err.message)
    log('error', 'endpoint failed to open a stream', { conn: conn.id, ep: frame.ep, error: String(err) })
    conn.refuse(sid, 'internal-error', 'the server failed to open the stream')
  }
  try {
    const opening = (endpoints[frame.ep] as OpenHandler)(conn.ctx, conn, frame)
    if (opening instanceof Promise) return opening.then(register, onError)
    register(opening)
  } catch (err) {
    onError(err)
  }
}

/** How many namespaces the open streams of `conn` use, and whether `ns` is one of them. */
function namespaceUse (conn: Connection, ns: string): { count: number, has: boolean } {
  const seen = new Set<string>()
  for (const stream of conn.streams.values()) seen.add(stream.ns)
  return { count: seen.size, has: seen.has(ns) }
}

/**
 * Abuse: which refusals count against a client, and the count. A rejected frame (unparseable,
 * rate-limited, for a stream that is not open…) and an OPEN past a limit the client was told
 * count as bad frames; more than limits.maxBadFrames in one limits.badFrameWindow closes the
 * connection (1008 `too-many-bad-frames`). A refusal that is nobody's fault (an id taken, a full
 * budget, a relay partner gone) does not count. Most connections never send a bad frame, so the
 * count is kept aside, in a WeakMap.
 */
import type { ErrorCode } from '../protocol/errors.js'
import { CloseCode, type ServerContext } from './context.js'
import { now } from './flow.js'

/** OPEN refusals that count as bad frames: limits the client was told (HELLO, docs) and crossed anyway. */
export const ABUSIVE_OPENS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['too-many-streams', 'too-many-namespaces', 'payload-too-large', 'bad-request'])

/** The part of a connection the count uses. */
interface Counted {
  readonly ctx: ServerContext
  close: (code: number, reason: string) => void
}

/** Rejected frames of a connection in the current window (limits.badFrameWindow). */
const badFrames = new WeakMap<Counted, { count: number, since: number }>()

/** Count a rejected frame of `conn`; too many in one window closes the connection. */
export function countBad (conn: Counted): void {
  const { limits, metrics } = conn.ctx
  const t = now()
  let bad = badFrames.get(conn)
  if (bad === undefined) badFrames.set(conn, bad = { count: 0, since: t })
  if (t - bad.since > limits.badFrameWindow) {
    bad.since = t
    bad.count = 0
  }
  if (++bad.count === limits.maxBadFrames + 1) {
    metrics.refused('too-many-bad-frames')
    conn.close(CloseCode.Policy, 'too-many-bad-frames')
  }
}

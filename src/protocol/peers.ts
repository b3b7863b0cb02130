/**
 * The peers endpoint on the wire: presence, a member list per namespace with a meta per member
 * (docs/PROTOCOL.md, "peers").
 *
 *   client → server  OPEN    { ep: "peers", ns, id, key, meta? }   claim `id` for owner `key`
 *   server → client  DATA    { peers: [{ id, meta }, …] }          a page of the member list
 *                    DATA    { ep: "peers", ns, op, id, meta }     a change since the pages began
 *                    OPENED  { id, peers: [{ id, meta }, …] }      the last page; the list is whole
 *   server → client  EVENT   { ep: "peers", ns, op: "join" | "update" | "leave", id, meta }
 *   client → server  REQUEST { op: "update", req, meta }           → REPLY { req }
 *
 * `meta` is a JSON object (absent means `{}`); the server checks its size against peers.maxMeta,
 * so the parsers measure it (`metaSize`) without knowing the limit.
 */
import { FrameType, writeFrame } from './codec.js'
import { bad, badName, isName, isObject, isOwnerKey, jsonSize, metaObject, OWNER_KEY_MAX, OWNER_KEY_MIN, type EndpointWire, type FrameError, type JsonObject } from './check.js'

/**
 * Claim a presence id. `meta` is `{}` when the client sent none; `metaSize` is the byte length of
 * its JSON encoding, which the endpoint checks against `peers.maxMeta` (parsers know no limits).
 */
export interface OpenPeers { type: 'open', sid: number, ep: 'peers', ns: string, id: string, key: string, meta: JsonObject, metaSize: number }
/** A presence member's new meta; `metaSize` as in OpenPeers. */
export interface PeersUpdateRequest { type: 'request', sid: number, req: number, op: 'update', meta: JsonObject, metaSize: number }
/** The requests of a peers stream. */
export type PeersRequest = PeersUpdateRequest

/** The id and owner key of a peers or signal OPEN, checked; what signal.ts shares. */
export function readClaim (sid: number, m: JsonObject): { id: string, key: string } | FrameError {
  if (!isName(m.id)) return badName(sid, 'id')
  if (!isOwnerKey(m.key)) return bad(sid, `key must be a string of ${OWNER_KEY_MIN}..${OWNER_KEY_MAX} characters`)
  return { id: m.id, key: m.key }
}

export const peersWire: EndpointWire<OpenPeers, PeersRequest> = {
  open: (sid, ns, m) => {
    const claim = readClaim(sid, m)
    if ('error' in claim) return claim
    const meta = metaObject(m.meta)
    if (meta === null) return bad(sid, 'meta must be a JSON object')
    return { type: 'open', sid, ep: 'peers', ns, id: claim.id, key: claim.key, meta, metaSize: jsonSize(meta) }
  },
  requests: {
    update: (sid, req, m) => {
      const meta = metaObject(m.meta)
      if (meta === null) return bad(sid, 'meta must be a JSON object', req)
      return { type: 'request', sid, req, op: 'update', meta, metaSize: jsonSize(meta) }
    }
  }
}

/** A member as pages, OPENED and changes carry it. */
export interface PresenceEntry { id: string, meta: object | null }

/** The presence EVENT a broker publishes to the namespace's peers topic. */
export function writePeersEvent (ns: string, op: 'join' | 'update' | 'leave', member: PresenceEntry): Uint8Array {
  return writeFrame(FrameType.Event, 0, { ep: 'peers', ns, op, id: member.id, meta: member.meta })
}

/** DATA `{ peers }` on stream `sid`: a page of the member list. */
export function writePeersPage (sid: number, members: PresenceEntry[]): Uint8Array {
  return writeFrame(FrameType.Data, sid, { peers: members })
}

/** OPENED of a peers stream: the last page of the list. */
export function peersOpenedMeta (id: string, members: PresenceEntry[]): { id: string, peers: PresenceEntry[] } {
  return { id, peers: members }
}

/** A member as a client reads it: its id and a meta object. */
export interface PresenceMember { id: string, meta: JsonObject }

/** A member read from the wire: its id and meta (`{}` when not an object); null without an id. */
export function readPresenceEntry (entry: unknown): PresenceMember | null {
  if (!isObject(entry) || typeof entry.id !== 'string') return null
  return { id: entry.id, meta: isObject(entry.meta) ? entry.meta : {} }
}

/** The members of a page (DATA `{ peers }` or OPENED); null when the frame is not a page. */
export function readPresencePage (meta: Record<string, unknown>): PresenceMember[] | null {
  if (!Array.isArray(meta.peers)) return null
  const members: PresenceMember[] = []
  for (const entry of meta.peers) {
    const member = readPresenceEntry(entry)
    if (member !== null) members.push(member)
  }
  return members
}

/** A change (EVENT, or DATA before OPENED); null when malformed. */
export function readPresenceChange (meta: Record<string, unknown>): { op: 'join' | 'update' | 'leave' } & PresenceMember | null {
  const { op } = meta
  const member = readPresenceEntry(meta)
  if (member === null || (op !== 'join' && op !== 'update' && op !== 'leave')) return null
  return { op, ...member }
}

/**
 * The kv endpoint on the wire: an expiring key-value store per namespace, replicated to every
 * stream open on it (docs/PROTOCOL.md, "kv").
 *
 *   client → server  OPEN    { ep: "kv", ns }  or  { ep: "kv", ns, epoch, seq }  (catch up from there)
 *   server → client  EVENT   { ep: "kv", ns, op: "set", key, seq, epoch, ttl } + value payload
 *                    EVENT   { ep: "kv", ns, op: "delete" | "expire", key, seq, epoch }
 *   server → client  DATA    { keys: [...] }     a snapshot page's live keys (before OPENED)
 *   server → client  OPENED  { id, epoch, seq, keys }   the last page's keys; the replica is whole
 *   client → server  REQUEST { op: "set", req, key, ttl? } + value payload   → REPLY { req, seq, epoch, ttl }
 *                    REQUEST { op: "delete", req, key }                      → REPLY { req, seq, epoch }
 *                    (a delete of a missing key answers seq and epoch null)
 *
 * `seq` orders a namespace's changes; `epoch` names its incarnation; `ttl` is the time a key has
 * left in ms (replicas keep deadlines on their own clock).
 */
import { FrameType, writeFrame, type Kind, type RawFrame } from './codec.js'
import { bad, badName, isName, isUint, type EndpointWire } from './check.js'

/** OPEN of a kv stream; `since` is the state the client holds (null: send everything). */
export interface OpenKv { type: 'open', sid: number, ep: 'kv', ns: string, since: { epoch: string, seq: number } | null }
/** REQUEST set: `ttl` null means the server's default; the value is the frame's payload. */
export interface KvSetRequest { type: 'request', sid: number, req: number, op: 'set', key: string, ttl: number | null, raw: RawFrame }
export interface KvDeleteRequest { type: 'request', sid: number, req: number, op: 'delete', key: string }
/** The requests of a kv stream. */
export type KvRequest = KvSetRequest | KvDeleteRequest

export const kvWire: EndpointWire<OpenKv, KvRequest> = {
  open: (sid, ns, m) => {
    if (m.epoch === undefined && m.seq === undefined) return { type: 'open', sid, ep: 'kv', ns, since: null }
    if (typeof m.epoch !== 'string' || m.epoch.length > 64 || !isUint(m.seq)) return bad(sid, 'epoch must be a string and seq an integer')
    return { type: 'open', sid, ep: 'kv', ns, since: { epoch: m.epoch, seq: m.seq } }
  },
  requests: {
    set: (sid, req, m, raw) => {
      if (!isName(m.key)) return badName(sid, 'key', req)
      if (m.ttl !== undefined && (!isUint(m.ttl) || m.ttl === 0)) return bad(sid, 'ttl must be a positive integer of milliseconds', req)
      return { type: 'request', sid, req, op: 'set', key: m.key, ttl: m.ttl ?? null, raw }
    },
    delete: (sid, req, m) => isName(m.key) ? { type: 'request', sid, req, op: 'delete', key: m.key } : badName(sid, 'key', req)
  }
}

/** One change of a namespace, as broadcast to replicas (an EVENT). */
export type KvChange =
  | { op: 'set', ns: string, epoch: string, key: string, seq: number, kind: number, value: Uint8Array, ttl: number }
  | { op: 'delete' | 'expire', ns: string, epoch: string, key: string, seq: number }

/** Frame one KV change as an EVENT (a set carries its value as the payload and the time it has left). */
export function writeKvEvent (change: KvChange): Uint8Array {
  const { ns, epoch, key, seq, op } = change
  if (op === 'set') {
    return writeFrame(FrameType.Event, 0, { ep: 'kv', ns, op, key, seq, epoch, ttl: change.ttl }, { kind: change.kind as Kind, bytes: change.value })
  }
  return writeFrame(FrameType.Event, 0, { ep: 'kv', ns, op, key, seq, epoch }, undefined)
}

/** A kv EVENT as a replica reads it (a set's value is the frame's payload, still encoded); null when malformed. */
export type KvEventIn =
  | { op: 'set', key: string, seq: number, epoch: string, ttl: number }
  | { op: 'delete' | 'expire', key: string, seq: number, epoch: string }

export function readKvEvent (frame: RawFrame): KvEventIn | null {
  const m = frame.meta ?? {}
  const { key, seq, epoch, op } = m
  if (typeof key !== 'string' || typeof seq !== 'number' || typeof epoch !== 'string') return null
  if (op === 'set') return { op, key, seq, epoch, ttl: Number(m.ttl) }
  if (op === 'delete' || op === 'expire') return { op, key, seq, epoch }
  return null
}

/** DATA `{ keys }`: one snapshot page's live keys. */
export function writeKvKeys (sid: number, keys: string[]): Uint8Array {
  return writeFrame(FrameType.Data, sid, { keys })
}

/** The keys of a DATA page or of OPENED (strings only). */
export function readKvKeys (meta: Record<string, unknown> | null): string[] {
  const keys = meta?.keys
  return Array.isArray(keys) ? keys.filter((k): k is string => typeof k === 'string') : []
}

/** OPENED of a kv stream: the namespace's epoch and seq as of the snapshot, and the last page's keys. */
export function kvOpenedMeta (id: string, epoch: string, seq: number, keys: string[]): { id: string, epoch: string, seq: number, keys: string[] } {
  return { id, epoch, seq, keys }
}

/** OPENED's epoch and seq (an empty namespace: `""` and 0). */
export function readKvOpened (meta: Record<string, unknown>): { epoch: string, seq: number } {
  return { epoch: typeof meta.epoch === 'string' ? meta.epoch : '', seq: typeof meta.seq === 'number' ? meta.seq : 0 }
}

/** REPLY to a set (`ttl` set) or a delete (`seq`/`epoch` null: the key did not exist). */
export function kvReplyMeta (req: number, seq: number | null, epoch: string | null, ttl?: number): { req: number, seq: number | null, epoch: string | null, ttl?: number } {
  return ttl === undefined ? { req, seq, epoch } : { req, seq, epoch, ttl }
}

/** A REPLY's change: what the replica applies for its own write; null when there was none. */
export function readKvReply (meta: Record<string, unknown>): { seq: number, epoch: string, ttl: number | null } | null {
  const { seq, epoch, ttl } = meta
  if (typeof seq !== 'number' || typeof epoch !== 'string') return null
  return { seq, epoch, ttl: typeof ttl === 'number' ? ttl : null }
}

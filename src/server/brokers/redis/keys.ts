/**
 * The names and layouts the Redis broker shares with its Lua: the three tables below are the only
 * place a key prefix, an inbox message kind or a record's field order is written. The TypeScript
 * builds key names with `Keys`; every script gets the same tables as Lua (`LUA_TABLES`, put in
 * front of each script by lua.ts), so both sides spell them from one source.
 *
 * Records are length-prefixed fields (`<len>:<bytes>` repeated; pack/unpack in lua.ts), which are
 * binary-safe in Lua and in JS alike. Addresses are `<pid>/<n>`: the broker process id (its inbox
 * channel is `<prefix>i:<pid>`) and a number local to it. docs/REDIS.md lists the keys
 * too.
 */
import { TOPIC_SEPARATOR, type ClaimSpace } from '../types.js'

/** Every key and channel, as the part after the yard's prefix, with what it holds. */
export const KEY = {
  /** `procs` sorted set: live processes, scored by the time each counts as dead (last beat + its deadAfter). */
  procs: 'procs',
  /** `kv:<ns>` hash: a namespace's entries, field key → RECORD.entry. */
  kvData: 'kv:',
  /** `kvm:<ns>` hash: the namespace's `epoch`, `seq` and `bytes` (entryBytes of its entries). */
  kvMeta: 'kvm:',
  /** `kvx` sorted set: RECORD.expiring members scored by their entry's expiry time. */
  kvExpiry: 'kvx',
  /** `kvbytes` string: the yard's KV bytes (entryBytes of every entry; limits.total.kv bounds it). */
  kvBytes: 'kvbytes',
  /** `id:<space>:<ns>` hash: held ids, field id → RECORD.claim. */
  ids: 'id:',
  /** `pc:<pid>` set: RECORD.claimRef of every id the process holds (for reaping). */
  claimIndex: 'pc:',
  /** `pr:<pid>` set: the `relay:` keys of the process's relay sides (for reaping). */
  relayIndex: 'pr:',
  /** `relay:<JSON [ns, local, remote]>` string: one relay side, RECORD.side. */
  relay: 'relay:',
  /** channel `t:<topic>`: a topic's messages (finished frames; RECORD.change for `kv:<ns>`). */
  topic: 't:',
  /** channel `i:<pid>`: one process's inbox, RECORD.inbox messages. */
  inbox: 'i:'
} as const

/** The kinds of inbox message (RECORD.inbox): what it tells the process about `addr`, and its body. */
export const INBOX = {
  /** `s` a directed frame for the id whose holder's token is addr; body: the frame. */
  signal: 's',
  /**
   * `m` a marker for the claim with token addr: a script's place among its space's events; body ''
   * for one place, or how many places in a row it stands for ('2': a claim and its first page).
   */
  marker: 'm',
  /** `t` the id held with token addr was claimed by another stream of its owner key; body ''. */
  taken: 't',
  /** `d` relay DATA for side addr; body: the frame. */
  data: 'd',
  /** `a` the peer of side addr passed on bytes of its frames; body: the count, decimal. */
  ack: 'a',
  /** `p` side addr was paired; body: the peer's address. */
  paired: 'p',
  /** `c` the peer of side addr closed; body: the error code it ended on, or ''. */
  closed: 'c'
} as const

/** One of the inbox message kinds. */
export type InboxKind = typeof INBOX[keyof typeof INBOX]

/** The field order of every record the scripts store or publish (each is `pack(...fields)`). */
export const RECORD = {
  /** A KV entry: its seq, kind, expiry time (Redis clock, ms), value. */
  entry: ['seq', 'kind', 'expires', 'value'],
  /** A KV change on `t:kv:<ns>`: op (set, delete, expire), epoch, seq, and for a set its ttl, kind and value ('' otherwise). */
  change: ['op', 'epoch', 'seq', 'ttl', 'kind', 'key', 'value'],
  /** Which entry a `kvx` member stands for. */
  expiring: ['ns', 'key'],
  /** A held id: owner key, the holder's token (an address), grace deadline ('' while held), meta JSON, the frame its leave publishes. */
  claim: ['key', 'token', 'grace', 'meta', 'leave'],
  /** Which id a `pc:<pid>` member stands for. */
  claimRef: ['space', 'ns', 'id'],
  /** A relay side: its address, the peer's ('' while pending), the peer's `relay:` key. */
  side: ['addr', 'peer', 'mirror'],
  /** An inbox message: its kind (INBOX), the address it is for, its body. */
  inbox: ['kind', 'addr', 'body']
} as const

/** Key and channel names of one yard (`prefix`), built from KEY. */
export class Keys {
  readonly procs: string
  readonly kvExpiry: string
  readonly kvBytes: string

  constructor (readonly prefix: string) {
    this.procs = prefix + KEY.procs
    this.kvExpiry = prefix + KEY.kvExpiry
    this.kvBytes = prefix + KEY.kvBytes
  }

  kvData (ns: string): string { return `${this.prefix}${KEY.kvData}${ns}` }
  kvMeta (ns: string): string { return `${this.prefix}${KEY.kvMeta}${ns}` }
  ids (space: ClaimSpace, ns: string): string { return `${this.prefix}${KEY.ids}${space}:${ns}` }
  claimIndex (pid: string): string { return `${this.prefix}${KEY.claimIndex}${pid}` }
  relayIndex (pid: string): string { return `${this.prefix}${KEY.relayIndex}${pid}` }
  relay (ns: string, local: string, remote: string): string { return `${this.prefix}${KEY.relay}${JSON.stringify([ns, local, remote])}` }
  topic (topic: string): string { return `${this.prefix}${KEY.topic}${topic}` }
  inbox (pid: string): string { return `${this.prefix}${KEY.inbox}${pid}` }
  /** The inbox of the process an address belongs to. */
  inboxOf (addr: string): string { return this.inbox(addr.slice(0, addr.indexOf('/'))) }
}

/** A table of names as a Lua table constructor (`{procs = "procs", …}`). */
const luaTable = (table: Record<string, string>): string =>
  `{${Object.entries(table).map(([name, value]) => `${name} = ${JSON.stringify(value)}`).join(', ')}}`

/** A named piece of Lua a script may need: lua.ts puts in front of each script only the ones it uses. */
export interface LuaChunk { name: string, code: string }

/**
 * KEY and INBOX as Lua tables; per RECORD, a decoder `<name>Record(rec)` → a table of named
 * fields (nil for a missing record, false or nil) and an encoder `<name>Pack(r)` → the record of
 * such a table (they need `pack` and `fields`, which lua.ts defines before them).
 */
export const LUA_TABLES: LuaChunk[] = [
  { name: 'KEY', code: `local KEY = ${luaTable(KEY)}` },
  { name: 'topicOf', code: `local function topicOf(ep, ns)\n  return ep .. ${JSON.stringify(TOPIC_SEPARATOR)} .. ns\nend` },
  { name: 'INBOX', code: `local INBOX = ${luaTable(INBOX)}` },
  ...Object.entries(RECORD).flatMap(([name, fields]) => [
    {
      name: `${name}Record`,
      code: `local function ${name}Record(rec)
  if not rec then return nil end
  local f = fields(rec)
  return {${fields.map((field, i) => `${field} = f[${i + 1}]`).join(', ')}}
end`
    },
    { name: `${name}Pack`, code: `local function ${name}Pack(r)\n  return pack(${fields.map((field) => `r.${field}`).join(', ')})\nend` }
  ])
]

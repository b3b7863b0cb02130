/**
 * The record format on both sides, and what every Lua script of the Redis broker starts with.
 *
 * Each script runs atomically in Redis, so the steps that must not interleave across processes
 * (claim an id and publish its join; order a KV write, store it and publish it; pair two relay
 * sides) happen as one. Times come from Redis (`TIME`), so the servers' clocks never need to agree.
 * The scripts build key names from the prefix (they are not Redis Cluster safe; one Redis, or a
 * primary with replicas, is what the broker is for). Each domain file keeps its scripts beside it
 * (`*.lua.ts`); every script names its KEYS and ARGV in its first lines.
 */
import type { Redis } from 'ioredis'
import { LUA_TABLES, type LuaChunk } from './keys.js'

/** A Uint8Array as a Buffer over the same memory. */
export function toBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Length-prefixed fields (`<len>:<bytes>`…), the record format the scripts read and write. */
export function pack (...fields: Array<string | Uint8Array>): Buffer {
  const parts: Buffer[] = []
  for (const field of fields) {
    const bytes = typeof field === 'string' ? Buffer.from(field) : toBuffer(field)
    parts.push(Buffer.from(`${bytes.length}:`), bytes)
  }
  return Buffer.concat(parts)
}

/** The fields of a packed record, as views into it. */
export function unpack (record: Buffer): Buffer[] {
  const fields: Buffer[] = []
  let pos = 0
  while (pos < record.length) {
    const colon = record.indexOf(0x3a, pos)
    if (colon < 0) break
    const start = colon + 1
    const end = start + Number(record.toString('latin1', pos, colon))
    fields.push(record.subarray(start, end))
    pos = end
  }
  return fields
}

/**
 * The Lua helpers scripts share, in dependency order: pack and fields (the record format), the
 * KEY, INBOX and RECORD tables of keys.ts (`<record>Record(rec)` decoders, `<record>Pack(r)`
 * encoders), the Redis clock, and the two steps several scripts take (tell a process through its
 * inbox; read a page of a hash). A script gets only those it uses (Redis builds every local
 * function of a script on each call).
 */
const HELPERS: LuaChunk[] = [
  {
    name: 'pack',
    code: `local function pack(...)
  local out = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if type(v) == 'number' then v = string.format('%.0f', v) end
    out[#out + 1] = #v .. ':' .. v
  end
  return table.concat(out)
end`
  },
  {
    name: 'fields',
    code: `local function fields(s)
  local out, pos = {}, 1
  while pos <= #s do
    local c = string.find(s, ':', pos, true)
    local n = tonumber(string.sub(s, pos, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    pos = c + n + 1
  end
  return out
end`
  },
  ...LUA_TABLES,
  {
    name: 'clock',
    code: `local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`
  },
  {
    name: 'pidOf',
    code: `local function pidOf(addr)
  return string.match(addr, '^([^/]*)/')
end`
  },
  {
    name: 'tell',
    code: `-- publish an inbox message (RECORD.inbox) to the process that addr belongs to
local function tell(prefix, addr, kind, body)
  redis.call('PUBLISH', prefix .. KEY.inbox .. pidOf(addr), inboxPack({kind = kind, addr = addr, body = body}))
end`
  },
  {
    name: 'scanPage',
    code: `-- one page of a hash from cursor: HSCAN COUNT 2 steps until about pageBytes were read; appends
-- each field and each(field, value) to out; returns the cursor to go on from ('0' when done)
local function scanPage(hash, cursor, pageBytes, out, each)
  local bytes = 0
  repeat
    local r = redis.call('HSCAN', hash, cursor, 'COUNT', 2)
    cursor = r[1]
    local page = r[2]
    for i = 1, #page, 2 do
      local value = each(page[i], page[i + 1])
      out[#out + 1] = page[i]
      out[#out + 1] = value
      bytes = bytes + #page[i] + #value
    end
  until cursor == '0' or bytes >= pageBytes
  return cursor
end`
  }
]

/** The helpers `lua` uses, directly or through another helper, in HELPERS order. */
function prelude (lua: string): string {
  const used = new Set<LuaChunk>()
  let text = lua
  for (let grew = true; grew;) {
    grew = false
    for (const helper of HELPERS) {
      if (used.has(helper) || !new RegExp(`\\b${helper.name}\\b`).test(text)) continue
      used.add(helper)
      text += helper.code
      grew = true
    }
  }
  return HELPERS.filter((helper) => used.has(helper)).map((helper) => helper.code + '\n').join('')
}

/** A script: its Lua and how many of its arguments are keys. */
export interface ScriptSource { keys: number, lua: string }

/** A script with the helpers it uses in front of `body` (and of `helpers`, Lua functions only it needs). */
export const script = (keys: number, body: string, helpers = ''): ScriptSource => ({ keys, lua: prelude(helpers + body) + helpers + body })

/** Runs a script: KEYS then ARGV; replies come as Buffers. */
export type ScriptFn = (...args: Array<string | Buffer | number>) => Promise<unknown>

/** Define `scripts` on a client (EVALSHA, loaded on first use) and return a runner per name. */
export function defineScripts<T extends Record<string, ScriptSource>> (client: Redis, scripts: T): Record<keyof T, ScriptFn> {
  const run = {} as Record<keyof T, ScriptFn>
  for (const [name, { keys, lua }] of Object.entries(scripts)) {
    client.defineCommand(name, { numberOfKeys: keys, lua })
    const fn = (client as unknown as Record<string, ScriptFn>)[`${name}Buffer`]
    run[name as keyof T] = (...args) => fn.apply(client, args)
  }
  return run
}

/**
 * The scripts of kv.ts: each orders, stores and publishes one KV change in one step, so every
 * replica sees the same order and an expiry is published once, by whichever process swept first.
 * A namespace is hash `kv:<ns>` (key → RECORD.entry) with `kvm:<ns>` beside it (epoch, seq,
 * bytes); `kvx` holds every entry's expiry (RECORD.expiring) and `kvbytes` the yard's bytes.
 * Changes are published as RECORD.change on the namespace's topic `t:kv:<ns>`.
 */
import { KV_ENTRY_COST } from '../../../kv/model.js'
import { script } from './lua.js'

const KV_HELPERS = `
-- the bytes a KV entry counts against the bounds (kvEntryBytes in src/kv/model.ts)
local function entryBytes(key, value)
  return #key + #value + ${KV_ENTRY_COST}
end
`
const kvScript = (keys: number, body: string): ReturnType<typeof script> => script(keys, body, KV_HELPERS)

/** The KV scripts, by name (KEYS and ARGV of each in its doc). */
export const KV_SCRIPTS = {
  /**
   * KEYS data, meta, expiry, channel, bytes · ARGV key, kind, value, ttl, maxKeys, epochIfNew,
   * member, maxBytes, maxTotal → {epoch, seq}. Orders, stores and publishes one write. The
   * namespace's bytes (meta field `bytes`) and the yard's (key `bytes`) count entryBytes of every
   * entry; a write that grows them past maxBytes / maxTotal is refused (`quota-exceeded`).
   */
  syKvSet: kvScript(5, `
local data, meta, expiry, channel, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local key, kind, value, ttl, maxKeys, epochIfNew, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local maxBytes, maxTotal = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = clock()
local old = redis.call('HGET', data, key)
if not old and redis.call('HLEN', data) >= tonumber(maxKeys) then
  return redis.error_reply('too-many-keys')
end
local growth = entryBytes(key, value)
if old then growth = growth - entryBytes(key, entryRecord(old).value) end
if growth > 0 then
  if tonumber(redis.call('HGET', meta, 'bytes') or '0') + growth > maxBytes then return redis.error_reply('quota-exceeded') end
  if tonumber(redis.call('GET', bytes) or '0') + growth > maxTotal then return redis.error_reply('quota-exceeded') end
end
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = epochIfNew
  redis.call('HSET', meta, 'epoch', epoch)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HINCRBY', meta, 'bytes', growth)
redis.call('INCRBY', bytes, growth)
local expires = now + tonumber(ttl)
redis.call('HSET', data, key, entryPack({seq = seq, kind = kind, expires = expires, value = value}))
redis.call('ZADD', expiry, expires, member)
redis.call('PUBLISH', channel, changePack({op = 'set', epoch = epoch, seq = seq, ttl = ttl, kind = kind, key = key, value = value}))
return {epoch, seq}
`),

  /** KEYS data, meta, expiry, channel, bytes · ARGV key, member → {epoch, seq} or nil. */
  syKvDelete: kvScript(5, `
local data, meta, expiry, channel, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local key, member = ARGV[1], ARGV[2]
local old = redis.call('HGET', data, key)
if not old then return false end
redis.call('HDEL', data, key)
redis.call('ZREM', expiry, member)
local size = entryBytes(key, entryRecord(old).value)
-- the yard's counter goes away with its last byte (no key is left behind by an empty yard)
if redis.call('INCRBY', bytes, -size) <= 0 then redis.call('DEL', bytes) end
local epoch = redis.call('HGET', meta, 'epoch')
local seq = redis.call('HINCRBY', meta, 'seq', 1)
if redis.call('HLEN', data) == 0 then redis.call('DEL', meta) else redis.call('HINCRBY', meta, 'bytes', -size) end
redis.call('PUBLISH', channel, changePack({op = 'delete', epoch = epoch, seq = seq, ttl = '', kind = '', key = key, value = ''}))
return {epoch, seq}
`),

  /**
   * KEYS expiry, bytes · ARGV prefix, limit → how many were due. Expires the keys whose time has
   * come: each is removed and its expiry published once, by whichever process swept first.
   */
  syKvSweep: kvScript(2, `
local expiry, bytes = KEYS[1], KEYS[2]
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local now = clock()
local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZREM', expiry, member)
  local e = expiringRecord(member)
  local data = prefix .. KEY.kvData .. e.ns
  local meta = prefix .. KEY.kvMeta .. e.ns
  local old = redis.call('HGET', data, e.key)
  if old then
    redis.call('HDEL', data, e.key)
    local size = entryBytes(e.key, entryRecord(old).value)
    if redis.call('INCRBY', bytes, -size) <= 0 then redis.call('DEL', bytes) end
    local epoch = redis.call('HGET', meta, 'epoch')
    local seq = redis.call('HINCRBY', meta, 'seq', 1)
    if redis.call('HLEN', data) == 0 then redis.call('DEL', meta) else redis.call('HINCRBY', meta, 'bytes', -size) end
    -- on the namespace's topic, topicOf('kv', ns)
    redis.call('PUBLISH', prefix .. KEY.topic .. topicOf('kv', e.ns), changePack({op = 'expire', epoch = epoch, seq = seq, ttl = '', kind = '', key = e.key, value = ''}))
  end
end
return #due
`),

  /**
   * KEYS data · ARGV key → {now, RECORD.entry}, or nil when the namespace does not hold the key.
   * The caller compares the entry's expiry with `now` (Redis's clock, as the expiry is).
   */
  syKvGet: script(1, `
local data, key = KEYS[1], ARGV[1]
local rec = redis.call('HGET', data, key)
if not rec then return false end
return {tostring(clock()), rec}
`),

  /**
   * KEYS data, meta · ARGV cursor, pageBytes, sinceEpoch, sinceSeq → {now, epoch, seq, cursor,
   * key, record, key, record, …}: one page of a namespace's snapshot (HSCAN from `cursor` until
   * about pageBytes were read or the scan is done, cursor '0'). Records the replica has already
   * (current epoch is sinceEpoch, seq ≤ sinceSeq) come without their value. A page stays small
   * in Redis's output buffer whatever the namespace holds (HSCAN COUNT 2: a step overshoots the
   * page by a couple of entries at most, even with 64 KiB values).
   */
  syKvScan: script(2, `
local data, meta = KEYS[1], KEYS[2]
local cursor, pageBytes, sinceEpoch, sinceSeq = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local epoch = redis.call('HGET', meta, 'epoch') or ''
local out = {tostring(clock()), epoch, redis.call('HGET', meta, 'seq') or '0', '0'}
local has = epoch ~= '' and epoch == sinceEpoch
out[4] = scanPage(data, cursor, pageBytes, out, function (_, rec)
  local entry = entryRecord(rec)
  if has and tonumber(entry.seq) <= sinceSeq then
    entry.value = ''
    return entryPack(entry)
  end
  return rec
end)
return out
`)
}

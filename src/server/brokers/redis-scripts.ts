/**
 * The Lua scripts of the Redis broker. Each runs atomically in Redis, so the steps that must not
 * interleave across processes (claim an id and publish its join; order a KV write, store it and
 * publish it; pair two relay sides) happen as one. Times come from Redis (`TIME`), so the servers'
 * clocks never need to agree.
 *
 * Records are length-prefixed fields (`<len>:<bytes>` repeated; see pack/unpack here and in
 * redis.ts), which are binary-safe in Lua and in JS alike. Addresses are `<pid>/<n>`: the broker
 * process id (its inbox channel is `<prefix>i:<pid>`) and a number local to it.
 *
 * These scripts build key names from the prefix (they are not Redis Cluster safe; one Redis, or a
 * primary with replicas, is what the broker is for).
 */

import { KV_ENTRY_COST } from '../../kv/model.js'

const PRELUDE = `
local function pack(...)
  local out = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    if type(v) == 'number' then v = string.format('%.0f', v) end
    out[#out + 1] = #v .. ':' .. v
  end
  return table.concat(out)
end
local function unpack(s)
  local out, pos = {}, 1
  while pos <= #s do
    local c = string.find(s, ':', pos, true)
    local n = tonumber(string.sub(s, pos, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    pos = c + n + 1
  end
  return out
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pidOf(addr)
  return string.match(addr, '^([^/]*)/')
end
-- the bytes a KV entry counts against the bounds (kvEntryBytes in src/kv/model.ts)
local function entryBytes(key, value)
  return #key + #value + ${KV_ENTRY_COST}
end
local function record(hash, field)
  local rec = redis.call('HGET', hash, field)
  if rec then return unpack(rec) end
  return nil
end
-- one page of a hash from cursor: HSCAN COUNT 2 steps until about pageBytes were read; appends
-- each field and each(field, value) to out; returns the cursor to go on from ('0' when done)
local function scanPage(hash, cursor, pageBytes, out, each)
  local bytes = 0
  repeat
    local r = redis.call('HSCAN', hash, cursor, 'COUNT', 2)
    cursor = r[1]
    local fields = r[2]
    for i = 1, #fields, 2 do
      local value = each(fields[i], fields[i + 1])
      out[#out + 1] = fields[i]
      out[#out + 1] = value
      bytes = bytes + #fields[i] + #value
    end
  until cursor == '0' or bytes >= pageBytes
  return cursor
end
`

/** A script: its Lua and how many of its arguments are keys. */
export interface ScriptSource { keys: number, lua: string }

const script = (keys: number, body: string): ScriptSource => ({ keys, lua: PRELUDE + body })

/**
 * Removing the claims and relay sides of process `pid` (a dead one, or this one closing).
 * `force` 0 leaves claims still in their grace period for a later run (and then keeps the process
 * listed so it is visited again); returns 1 when everything of the process is gone.
 */
const REAP = `
local function reap(prefix, pid, now, force)
  local done = 1
  local pc = prefix .. 'pc:' .. pid
  for _, ref in ipairs(redis.call('SMEMBERS', pc)) do
    local f = unpack(ref)
    local ids = prefix .. 'id:' .. f[1] .. ':' .. f[2]
    local g = record(ids, f[3])
    local gone = true
    if g then
      if pidOf(g[2]) == pid then
        if force == 1 or g[3] == '' or tonumber(g[3]) <= now then
          redis.call('HDEL', ids, f[3])
          redis.call('PUBLISH', prefix .. 't:' .. f[1] .. ':' .. f[2], g[5])
        else
          gone = false
          done = 0
        end
      end
    end
    if gone then redis.call('SREM', pc, ref) end
  end
  local pr = prefix .. 'pr:' .. pid
  for _, side in ipairs(redis.call('SMEMBERS', pr)) do
    local rec = redis.call('GET', side)
    if rec then
      local g = unpack(rec)
      if pidOf(g[1]) == pid then
        redis.call('DEL', side)
        if g[2] ~= '' then
          local m = redis.call('GET', g[3])
          if m and unpack(m)[1] == g[2] then
            redis.call('DEL', g[3])
            redis.call('SREM', prefix .. 'pr:' .. pidOf(g[2]), g[3])
            redis.call('PUBLISH', prefix .. 'i:' .. pidOf(g[2]), pack('c', g[2], ''))
          end
        end
      end
    end
  end
  redis.call('DEL', pr)
  return done
end
`

export const SCRIPTS = {
  /**
   * KEYS procs · ARGV pid, deadAfter → 1 when the process was not listed (first beat, or the others
   * reaped it meanwhile), else 0. This process is alive, and counts as dead if it has not beaten
   * again by now + deadAfter (its own setting: processes with different settings agree).
   */
  syBeat: script(1, `
return redis.call('ZADD', KEYS[1], clock() + tonumber(ARGV[2]), ARGV[1])
`),

  /**
   * KEYS procs · ARGV prefix, ourPid → number of processes reaped. Processes past the deadline
   * of their last heartbeat lose their ids (leave published) and relay sides (the other side is
   * told).
   */
  syReap: script(1, REAP + `
local now = clock()
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 8)
local n = 0
for _, pid in ipairs(dead) do
  if pid ~= ARGV[2] and reap(ARGV[1], pid, now, 0) == 1 then
    redis.call('ZREM', KEYS[1], pid)
    n = n + 1
  end
end
return n
`),

  /**
   * KEYS procs · ARGV prefix, ourPid, handOff. This process is closing. With handOff 1 and another
   * process alive, its claims in their grace period are left to the others (the process is marked
   * dead now, so they reap it when the grace ends); otherwise everything of it is removed now, and
   * everything of processes already dead (it is the last one).
   */
  syLeave: script(1, REAP + `
local now = clock()
-- other processes still alive (not past their deadline, nor closed and waiting to be reaped)
local others = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local mine = redis.call('ZSCORE', KEYS[1], ARGV[2])
if mine and tonumber(mine) > now then others = others - 1 end
if ARGV[3] == '1' and others > 0 then
  if reap(ARGV[1], ARGV[2], now, 0) == 1 then
    redis.call('ZREM', KEYS[1], ARGV[2])
  else
    redis.call('ZADD', KEYS[1], 0, ARGV[2])
  end
  return 0
end
-- the last one out: remove everything of itself, and of processes that closed before it and
-- left ids in their grace period for others to remove (there are no others now)
reap(ARGV[1], ARGV[2], now, 1)
redis.call('ZREM', KEYS[1], ARGV[2])
if others == 0 then
  for _, pid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    reap(ARGV[1], pid, now, 1)
    redis.call('ZREM', KEYS[1], pid)
  end
end
return 1
`),

  /**
   * KEYS data, meta, expiry, channel, bytes · ARGV key, kind, value, ttl, maxKeys, epochIfNew,
   * member, maxBytes, maxTotal → {epoch, seq}. Orders, stores and publishes one write. The
   * namespace's bytes (meta field `bytes`) and the yard's (key `bytes`) count entryBytes of every
   * entry; a write that grows them past maxBytes / maxTotal is refused (`quota-exceeded`).
   */
  syKvSet: script(5, `
local key, kind, value, ttl, maxKeys, epochIfNew, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local maxBytes, maxTotal = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = clock()
local old = redis.call('HGET', KEYS[1], key)
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(maxKeys) then
  return redis.error_reply('too-many-keys')
end
local growth = entryBytes(key, value)
if old then growth = growth - entryBytes(key, unpack(old)[4]) end
if growth > 0 then
  if tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0') + growth > maxBytes then return redis.error_reply('quota-exceeded') end
  if tonumber(redis.call('GET', KEYS[5]) or '0') + growth > maxTotal then return redis.error_reply('quota-exceeded') end
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = epochIfNew
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HINCRBY', KEYS[2], 'bytes', growth)
redis.call('INCRBY', KEYS[5], growth)
local expires = now + tonumber(ttl)
redis.call('HSET', KEYS[1], key, pack(seq, kind, expires, value))
redis.call('ZADD', KEYS[3], expires, member)
redis.call('PUBLISH', KEYS[4], pack('set', epoch, seq, ttl, kind, key, value))
return {epoch, seq}
`),

  /** KEYS data, meta, expiry, channel, bytes · ARGV key, member → {epoch, seq} or nil. */
  syKvDelete: script(5, `
local key, member = ARGV[1], ARGV[2]
local old = redis.call('HGET', KEYS[1], key)
if not old then return false end
redis.call('HDEL', KEYS[1], key)
redis.call('ZREM', KEYS[3], member)
local size = entryBytes(key, unpack(old)[4])
-- the yard's counter goes away with its last byte (no key is left behind by an empty yard)
if redis.call('INCRBY', KEYS[5], -size) <= 0 then redis.call('DEL', KEYS[5]) end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) else redis.call('HINCRBY', KEYS[2], 'bytes', -size) end
redis.call('PUBLISH', KEYS[4], pack('delete', epoch, seq, '', '', key, ''))
return {epoch, seq}
`),

  /**
   * KEYS expiry, bytes · ARGV prefix, limit → how many were due. Expires the keys whose time has
   * come: each is removed and its expiry published once, by whichever process swept first.
   */
  syKvSweep: script(2, `
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local now = clock()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local f = unpack(member)
  local data = prefix .. 'kv:' .. f[1]
  local meta = prefix .. 'kvm:' .. f[1]
  local old = redis.call('HGET', data, f[2])
  if old then
    redis.call('HDEL', data, f[2])
    local size = entryBytes(f[2], unpack(old)[4])
    if redis.call('INCRBY', KEYS[2], -size) <= 0 then redis.call('DEL', KEYS[2]) end
    local epoch = redis.call('HGET', meta, 'epoch')
    local seq = redis.call('HINCRBY', meta, 'seq', 1)
    if redis.call('HLEN', data) == 0 then redis.call('DEL', meta) else redis.call('HINCRBY', meta, 'bytes', -size) end
    redis.call('PUBLISH', prefix .. 't:kv:' .. f[1], pack('expire', epoch, seq, '', '', f[2], ''))
  end
end
return #due
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
local cursor, pageBytes, sinceEpoch, sinceSeq = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local epoch = redis.call('HGET', KEYS[2], 'epoch') or ''
local out = {tostring(clock()), epoch, redis.call('HGET', KEYS[2], 'seq') or '0', '0'}
local has = epoch ~= '' and epoch == sinceEpoch
out[4] = scanPage(KEYS[1], cursor, pageBytes, out, function (_, rec)
  local f = unpack(rec)
  if has and tonumber(f[1]) <= sinceSeq then return pack(f[1], f[2], f[3], '') end
  return rec
end)
return out
`),

  /**
   * KEYS ids, channel, index · ARGV id, key, token, meta, leaveFrame, joinFrame, maxPeers, ref,
   * prefix → 1. Claims an id for an owner key; the holder it replaces (same key, another stream)
   * is told ('t'); the claiming process gets a marker ('m') on its inbox right after the join.
   * (The members are read a page at a time with syMembers, never the whole space in one reply.)
   */
  syClaim: script(3, `
local f = record(KEYS[1], ARGV[1])
if f then
  if f[1] ~= ARGV[2] then return redis.error_reply('peer-id-taken') end
  local old = pidOf(f[2])
  if old ~= pidOf(ARGV[3]) then redis.call('SREM', ARGV[9] .. 'pc:' .. old, ARGV[8]) end
  if f[3] == '' then redis.call('PUBLISH', ARGV[9] .. 'i:' .. old, pack('t', f[2], '')) end
elseif redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[7]) then
  return redis.error_reply('too-many-peers')
end
redis.call('HSET', KEYS[1], ARGV[1], pack(ARGV[2], ARGV[3], '', ARGV[4], ARGV[5]))
redis.call('SADD', KEYS[3], ARGV[8])
if ARGV[6] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[6]) end
-- the claim's place in the order of the space's events, as the claiming process will receive them
redis.call('PUBLISH', ARGV[9] .. 'i:' .. pidOf(ARGV[3]), pack('m', ARGV[3], ''))
return 1
`),

  /**
   * KEYS ids, inbox · ARGV cursor, pageBytes, token → {cursor, id, meta, id, meta, …}: one page of
   * a space's members (HSCAN from `cursor` until about pageBytes of meta were read; cursor '0'
   * when done), and a marker ('m' for `token`) on the claiming process's inbox: the page's place
   * among the space's events.
   */
  syMembers: script(2, `
local cursor, pageBytes, token = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {'0'}
out[1] = scanPage(KEYS[1], cursor, pageBytes, out, function (_, rec) return unpack(rec)[4] end)
redis.call('PUBLISH', KEYS[2], pack('m', token, ''))
return out
`),

  /**
   * KEYS ids, channel, inbox · ARGV id, token, meta, leaveFrame, updateFrame → 1 when applied. Either
   * way the updating process gets a marker ('m') after the event, so it answers after it.
   */
  syUpdate: script(3, `
local f = record(KEYS[1], ARGV[1])
local applied = 0
if f and f[2] == ARGV[2] and f[3] == '' then
  redis.call('HSET', KEYS[1], ARGV[1], pack(f[1], f[2], '', ARGV[3], ARGV[4]))
  redis.call('PUBLISH', KEYS[2], ARGV[5])
  applied = 1
end
redis.call('PUBLISH', KEYS[3], pack('m', ARGV[2], ''))
return applied
`),

  /**
   * KEYS ids, channel, index · ARGV id, token, graceMs, ref, mode → 1 when applied. mode 'release':
   * graceMs 0 removes the id now (leave published), above 0 marks it held until then. mode
   * 'expire': removes it only if it is still in the grace this token started.
   */
  syRelease: script(3, `
local f = record(KEYS[1], ARGV[1])
if not f then return 0 end
if f[2] ~= ARGV[2] then return 0 end
if ARGV[5] == 'expire' and f[3] == '' then return 0 end
local grace = tonumber(ARGV[3])
if ARGV[5] == 'release' and grace > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], pack(f[1], f[2], clock() + grace, f[4], f[5]))
  return 1
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[4])
redis.call('PUBLISH', KEYS[2], f[5])
return 1
`),

  /**
   * KEYS ids · ARGV id, frame, prefix, ourPid → 0 nobody holds the id, 1 published to its process
   * (or dropped: the id is in its grace period), or the holder's token when it is in this process.
   */
  syDirect: script(1, `
local f = record(KEYS[1], ARGV[1])
if not f then return 0 end
if f[3] ~= '' then return 1 end
local pid = pidOf(f[2])
if pid == ARGV[4] then return f[2] end
redis.call('PUBLISH', ARGV[3] .. 'i:' .. pid, pack('s', f[2], ARGV[2]))
return 1
`),

  /**
   * KEYS side, mirror, index · ARGV addr, prefix, ourPid → the peer's address ('' while pending).
   * Claims relay tokens and pairs with the mirrored side if it waits; a remote waiting side is told
   * ('p') through its process's inbox.
   */
  syRelayOpen: script(3, `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('relay-token-in-use') end
local peer = ''
local m = redis.call('GET', KEYS[2])
if m then
  local f = unpack(m)
  if f[2] == '' then
    peer = f[1]
    redis.call('SET', KEYS[2], pack(f[1], ARGV[1], f[3]))
    if pidOf(peer) ~= ARGV[3] then redis.call('PUBLISH', ARGV[2] .. 'i:' .. pidOf(peer), pack('p', peer, ARGV[1])) end
  end
end
redis.call('SET', KEYS[1], pack(ARGV[1], peer, KEYS[2]))
redis.call('SADD', KEYS[3], KEYS[1])
return peer
`),

  /**
   * KEYS side, index · ARGV addr, prefix, ourPid, reason → the peer's address when it was in this
   * process (the caller closes it), else ''. Gives up a side; a remote peer is told ('c', with the
   * error code it ended on, or '').
   */
  syRelayClose: script(2, `
local rec = redis.call('GET', KEYS[1])
if not rec then return '' end
local f = unpack(rec)
if f[1] ~= ARGV[1] then return '' end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
if f[2] == '' then return '' end
local m = redis.call('GET', f[3])
if not m or unpack(m)[1] ~= f[2] then return '' end
redis.call('DEL', f[3])
redis.call('SREM', ARGV[2] .. 'pr:' .. pidOf(f[2]), f[3])
if pidOf(f[2]) == ARGV[3] then return f[2] end
redis.call('PUBLISH', ARGV[2] .. 'i:' .. pidOf(f[2]), pack('c', f[2], ARGV[4]))
return ''
`)
} satisfies Record<string, ScriptSource>

export type ScriptName = keyof typeof SCRIPTS

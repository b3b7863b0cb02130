/**
 * The scripts of claims.ts: claiming, updating, releasing and listing ids, directed frames, and
 * removing the ids of a dead process. An id is field `<id>` of hash `id:<space>:<ns>`, holding
 * RECORD.claim (owner key, holder's token, grace deadline, meta, leave frame); `pc:<pid>` lists
 * RECORD.claimRef of the ids a process holds, so the others can reap them.
 */
import { script } from './lua.js'

/**
 * `reapClaims(prefix, pid, now, force)`: removes the ids process `pid` holds (their leave
 * published). `force` 0 keeps those still in their grace period (for a later run); returns 1 when
 * none is left.
 */
export const REAP_CLAIMS = `
local function reapClaims(prefix, pid, now, force)
  local done = 1
  local index = prefix .. KEY.claimIndex .. pid
  for _, ref in ipairs(redis.call('SMEMBERS', index)) do
    local r = claimRefRecord(ref)
    local ids = prefix .. KEY.ids .. r.space .. ':' .. r.ns
    local held = claimRecord(redis.call('HGET', ids, r.id))
    local gone = true
    if held and pidOf(held.token) == pid then
      if force == 1 or held.grace == '' or tonumber(held.grace) <= now then
        redis.call('HDEL', ids, r.id)
        redis.call('PUBLISH', prefix .. KEY.topic .. topicOf(r.space, r.ns), held.leave)
      else
        gone = false
        done = 0
      end
    end
    if gone then redis.call('SREM', index, ref) end
  end
  return done
end
`

/** The claim scripts, by name (KEYS and ARGV of each in its doc). */
export const CLAIM_SCRIPTS = {
  /**
   * KEYS ids, channel, index · ARGV id, key, token, meta, leaveFrame, joinFrame, maxPeers, ref,
   * prefix, pageBytes → {cursor, id, meta, id, meta, …}. Claims an id for an owner key; the holder
   * it replaces (same key, another stream) is told (INBOX.taken). With pageBytes above 0 (a
   * presence claim, whose stream lists the members next) it also reads the first page of the
   * members right after the join, as syMembers would (the rest are read with syMembers from the
   * cursor; never the whole space in one reply): one round trip where there were two. pageBytes 0
   * reads none ({'0'}). The claiming process gets one marker (INBOX.marker) on its inbox right
   * after the join: the claim's place in the order of the space's events, and with a page, the
   * page's place too (the same place: nothing comes between them in one script), body '2'.
   */
  syClaim: script(3, `
local ids, channel, index = KEYS[1], KEYS[2], KEYS[3]
local id, key, token, meta, leave = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local join, maxPeers, ref, prefix, pageBytes = ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9], tonumber(ARGV[10])
local held = claimRecord(redis.call('HGET', ids, id))
if held then
  if held.key ~= key then return redis.error_reply('peer-id-taken') end
  local old = pidOf(held.token)
  if old ~= pidOf(token) then redis.call('SREM', prefix .. KEY.claimIndex .. old, ref) end
  if held.grace == '' then tell(prefix, held.token, INBOX.taken, '') end
elseif redis.call('HLEN', ids) >= maxPeers then
  return redis.error_reply('too-many-peers')
end
redis.call('HSET', ids, id, claimPack({key = key, token = token, grace = '', meta = meta, leave = leave}))
redis.call('SADD', index, ref)
if join ~= '' then redis.call('PUBLISH', channel, join) end
local out = {'0'}
local places = ''
if pageBytes > 0 then
  out[1] = scanPage(ids, '0', pageBytes, out, function (_, rec) return claimRecord(rec).meta end)
  places = '2'
end
-- the claim's place (and its first page's) in the order of the space's events, as the claiming
-- process will receive them
tell(prefix, token, INBOX.marker, places)
return out
`),

  /**
   * KEYS ids, inbox · ARGV cursor, pageBytes, token → {cursor, id, meta, id, meta, …}: one page of
   * a space's members (HSCAN from `cursor` until about pageBytes of meta were read; cursor '0'
   * when done), and a marker (INBOX.marker for `token`) on the claiming process's inbox: the
   * page's place among the space's events. `token` '' (a listing that holds no id: Broker.members)
   * publishes no marker.
   */
  syMembers: script(2, `
local ids, inbox = KEYS[1], KEYS[2]
local cursor, pageBytes, token = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {'0'}
out[1] = scanPage(ids, cursor, pageBytes, out, function (_, rec) return claimRecord(rec).meta end)
if token ~= '' then redis.call('PUBLISH', inbox, inboxPack({kind = INBOX.marker, addr = token, body = ''})) end
return out
`),

  /**
   * KEYS ids, channel, inbox · ARGV id, token, meta, leaveFrame, updateFrame → 1 when applied.
   * Either way the updating process gets a marker (INBOX.marker) after the event, so it answers
   * after it.
   */
  syUpdate: script(3, `
local ids, channel, inbox = KEYS[1], KEYS[2], KEYS[3]
local id, token, meta, leave, update = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local held = claimRecord(redis.call('HGET', ids, id))
local applied = 0
if held and held.token == token and held.grace == '' then
  held.meta, held.leave = meta, leave
  redis.call('HSET', ids, id, claimPack(held))
  redis.call('PUBLISH', channel, update)
  applied = 1
end
redis.call('PUBLISH', inbox, inboxPack({kind = INBOX.marker, addr = token, body = ''}))
return applied
`),

  /**
   * KEYS ids, channel, index · ARGV id, token, graceMs, ref, mode → 1 when applied. mode 'release':
   * graceMs 0 removes the id now (leave published), above 0 marks it held until then. mode
   * 'expire': removes it only if it is still in the grace this token started.
   */
  syRelease: script(3, `
local ids, channel, index = KEYS[1], KEYS[2], KEYS[3]
local id, token, grace, ref, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local held = claimRecord(redis.call('HGET', ids, id))
if not held then return 0 end
if held.token ~= token then return 0 end
if mode == 'expire' and held.grace == '' then return 0 end
if mode == 'release' and grace > 0 then
  held.grace = clock() + grace
  redis.call('HSET', ids, id, claimPack(held))
  return 1
end
redis.call('HDEL', ids, id)
redis.call('SREM', index, ref)
redis.call('PUBLISH', channel, held.leave)
return 1
`),

  /**
   * KEYS ids · ARGV id, frame, prefix, ourPid → 0 nobody holds the id, 1 published to its process
   * (or dropped: the id is in its grace period), or the holder's token when it is in this process.
   */
  syDirect: script(1, `
local ids = KEYS[1]
local id, frame, prefix, ourPid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local held = claimRecord(redis.call('HGET', ids, id))
if not held then return 0 end
if held.grace ~= '' then return 1 end
if pidOf(held.token) == ourPid then return held.token end
tell(prefix, held.token, INBOX.signal, frame)
return 1
`)
}

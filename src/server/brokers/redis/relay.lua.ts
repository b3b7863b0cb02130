/**
 * The scripts of relay.ts: opening, pairing and closing relay sides, and removing the sides of a
 * dead process. A side is key `relay:<[ns, local, remote]>` holding RECORD.side (its address, its
 * peer's, the peer's key: the mirrored token pair); `pr:<pid>` lists the side keys a process holds.
 */
import { script } from './lua.js'

/**
 * `dropPeer(prefix, side)`: removes the peer side of `side` if that key still holds the peer
 * (not a newer side on the same tokens); true when it did.
 */
const DROP_PEER = `
local function dropPeer(prefix, side)
  local peer = sideRecord(redis.call('GET', side.mirror))
  if not peer or peer.addr ~= side.peer then return false end
  redis.call('DEL', side.mirror)
  redis.call('SREM', prefix .. KEY.relayIndex .. pidOf(side.peer), side.mirror)
  return true
end
`

/**
 * `reapSides(prefix, pid)`: removes the relay sides of process `pid`; their peers in other
 * processes are told (INBOX.closed).
 */
export const REAP_SIDES = DROP_PEER + `
local function reapSides(prefix, pid)
  local index = prefix .. KEY.relayIndex .. pid
  for _, key in ipairs(redis.call('SMEMBERS', index)) do
    local side = sideRecord(redis.call('GET', key))
    if side and pidOf(side.addr) == pid then
      redis.call('DEL', key)
      if side.peer ~= '' and dropPeer(prefix, side) then tell(prefix, side.peer, INBOX.closed, '') end
    end
  end
  redis.call('DEL', index)
end
`

/** The relay scripts, by name (KEYS and ARGV of each in its doc). */
export const RELAY_SCRIPTS = {
  /**
   * KEYS side, mirror, index · ARGV addr, prefix, ourPid → the peer's address ('' while pending).
   * Claims relay tokens and pairs with the mirrored side if it waits; a remote waiting side is told
   * (INBOX.paired) through its process's inbox.
   */
  syRelayOpen: script(3, `
local key, mirror, index = KEYS[1], KEYS[2], KEYS[3]
local addr, prefix, ourPid = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 1 then return redis.error_reply('relay-token-in-use') end
local peer = ''
local waiting = sideRecord(redis.call('GET', mirror))
if waiting and waiting.peer == '' then
  peer = waiting.addr
  waiting.peer = addr
  redis.call('SET', mirror, sidePack(waiting))
  if pidOf(peer) ~= ourPid then tell(prefix, peer, INBOX.paired, addr) end
end
redis.call('SET', key, sidePack({addr = addr, peer = peer, mirror = mirror}))
redis.call('SADD', index, key)
return peer
`),

  /**
   * KEYS side, index · ARGV addr, prefix, ourPid, reason → the peer's address when it was in this
   * process (the caller closes it), else ''. Gives up a side; a remote peer is told
   * (INBOX.closed, with the error code it ended on, or '').
   */
  syRelayClose: script(2, `
local key, index = KEYS[1], KEYS[2]
local addr, prefix, ourPid, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local side = sideRecord(redis.call('GET', key))
if not side then return '' end
if side.addr ~= addr then return '' end
redis.call('DEL', key)
redis.call('SREM', index, key)
if side.peer == '' or not dropPeer(prefix, side) then return '' end
if pidOf(side.peer) == ourPid then return side.peer end
tell(prefix, side.peer, INBOX.closed, reason)
return ''
`, DROP_PEER)
}

/**
 * The scripts of liveness.ts: heartbeats in `procs` (a sorted set of process ids scored by the
 * time each counts as dead), reaping the processes that stopped beating, and leaving. Reaping a
 * process removes its ids (claims.lua.ts) and its relay sides (relay.lua.ts).
 */
import { REAP_CLAIMS } from './claims.lua.js'
import { script } from './lua.js'
import { REAP_SIDES } from './relay.lua.js'

/**
 * `reap(prefix, pid, now, force)`: removes the claims and relay sides of process `pid` (a dead
 * one, or this one closing). `force` 0 leaves claims still in their grace period for a later run
 * (and then keeps the process listed so it is visited again); returns 1 when everything of the
 * process is gone.
 */
const REAP = REAP_CLAIMS + REAP_SIDES + `
local function reap(prefix, pid, now, force)
  local done = reapClaims(prefix, pid, now, force)
  reapSides(prefix, pid)
  return done
end
`

/** `reapDead(procs, prefix, ourPid, now)`, after REAP: what a heartbeat reaps. */
const REAP_DEAD = `
-- reaps (up to 8 of) the processes other than ourPid whose deadline in procs has passed; a process
-- with claims still in their grace period stays listed for a later run; the number reaped
local function reapDead(procs, prefix, ourPid, now)
  local dead = redis.call('ZRANGEBYSCORE', procs, '-inf', now, 'LIMIT', 0, 8)
  local n = 0
  for _, pid in ipairs(dead) do
    if pid ~= ourPid and reap(prefix, pid, now, 0) == 1 then
      redis.call('ZREM', procs, pid)
      n = n + 1
    end
  end
  return n
end
`

/** The liveness scripts, by name (KEYS and ARGV of each in its doc). */
export const LIVENESS_SCRIPTS = {
  /**
   * KEYS procs · ARGV pid, deadAfter, prefix → 1 when the process was not listed (first beat, or
   * the others reaped it meanwhile), else 0. This process is alive, and counts as dead if it has
   * not beaten again by now + deadAfter (its own setting: processes with different settings
   * agree). With `prefix`, a process that was listed then reaps the processes past the deadline
   * of their last heartbeat (up to 8 per beat): their ids are removed (leave published) and their
   * relay sides closed (the other side is told). A heartbeat is one round trip.
   */
  syBeat: script(1, `
local procs = KEYS[1]
local pid, deadAfter, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = clock()
local added = redis.call('ZADD', procs, now + deadAfter, pid)
if added == 0 and prefix then reapDead(procs, prefix, pid, now) end
return added
`, REAP + REAP_DEAD),

  /**
   * KEYS procs · ARGV prefix, ourPid, handOff. This process is closing. With handOff 1 and another
   * process alive, its claims in their grace period are left to the others (the process is marked
   * dead now, so they reap it when the grace ends); otherwise everything of it is removed now, and
   * everything of processes already dead (it is the last one).
   */
  syLeave: script(1, `
local procs = KEYS[1]
local prefix, ourPid, handOff = ARGV[1], ARGV[2], ARGV[3]
local now = clock()
-- other processes still alive (not past their deadline, nor closed and waiting to be reaped)
local others = redis.call('ZCOUNT', procs, '(' .. now, '+inf')
local mine = redis.call('ZSCORE', procs, ourPid)
if mine and tonumber(mine) > now then others = others - 1 end
if handOff == '1' and others > 0 then
  if reap(prefix, ourPid, now, 0) == 1 then
    redis.call('ZREM', procs, ourPid)
  else
    redis.call('ZADD', procs, 0, ourPid)
  end
  return 0
end
-- the last one out: remove everything of itself, and of processes that closed before it and
-- left ids in their grace period for others to remove (there are no others now)
reap(prefix, ourPid, now, 1)
redis.call('ZREM', procs, ourPid)
if others == 0 then
  for _, pid in ipairs(redis.call('ZRANGEBYSCORE', procs, '-inf', now)) do
    reap(prefix, pid, now, 1)
    redis.call('ZREM', procs, pid)
  end
end
return 1
`, REAP)
}

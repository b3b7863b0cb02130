// test/peers.test.ts — presence (`channel.createPeers()`, SPEC §3.4) end to end: the real client
// against a real server. Who gets 'join' / 'update' / 'leave' and when (late joiners included,
// never for yourself), list() and self, the time bounds a user relies on for 'leave' (1 s after
// leave() or channel.close(), 5 s after the peer's process is killed, the presence TTL after its
// network silently dies), id ownership (peer-id-taken; the owner reclaims its id after a blip or
// a server restart), meta limits, prototype-named keys and ids, and 50 members in one namespace.
//
// Each client uses the server URL with its own query string, so it has a socket of its own (one
// socket per URL per process); its WebSocket is `ws`, tracked, so a test can cut or silence it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { SignalChannel, SignalyardError, type Channel, type PeerMeta, type Peers, type WebSocketConstructor } from 'signalyard'
import { createServer, DEFAULTS, type LimitsOption, type Yard } from 'signalyard/server'
import { next, sleep, startYard, until, within } from './helpers.js'

const NS = 'room'
/** Reconnect quickly: the reclaim tests measure the whole blip. */
const FAST = { minDelay: 50, maxDelay: 250 }
const CHILD = fileURLToPath(new URL('./fixtures/peer-child.mjs', import.meta.url))

type PeerEvent = 'join' | 'update' | 'leave'

/** One client: its own socket (tracked), a channel, a Peers, and every presence event it saw. */
interface Client {
  channel: Channel
  peers: Peers
  /** Every 'join' / 'update' / 'leave' as [event, meta], in order. */
  log: Array<[PeerEvent, PeerMeta]>
  /** Every 'error' the Peers emitted. */
  errors: SignalyardError[]
  /** The WebSockets this client constructed, the live one last. */
  sockets: WebSocket[]
}

interface Setup {
  yard: Yard
  /** A new client with a socket of its own (`url` defaults to the yard's). */
  client: (url?: string) => Client
}

/** Run `body` with a yard (these limits) and close every client and the yard, whatever happens. */
async function withYard (limits: LimitsOption, body: (s: Setup) => Promise<void>): Promise<void> {
  const yard = await startYard({ limits })
  const clients: Client[] = []
  try {
    await body({ yard, client: (url = yard.url) => track(clients, url) })
  } finally {
    closeAll(clients)
    await yard.close()
  }
}

let clientCount = 0

function track (clients: Client[], url: string): Client {
  const sockets: WebSocket[] = []
  class Tracked extends WebSocket {
    constructor (address: string, protocols?: string | string[]) {
      super(address, protocols)
      sockets.push(this)
    }
  }
  const channel = SignalChannel(NS, { url: `${url}?client=${++clientCount}`, WebSocket: Tracked as unknown as WebSocketConstructor, reconnect: FAST })
  const peers = channel.createPeers()
  const client: Client = { channel, peers, log: [], errors: [], sockets }
  for (const event of ['join', 'update', 'leave'] as const) peers.on(event, (meta) => client.log.push([event, meta]))
  peers.on('error', (err) => client.errors.push(err))
  clients.push(client)
  return client
}

/** Close every client's channel; a socket a test silenced is destroyed so nothing lingers. */
function closeAll (clients: Client[]): void {
  for (const c of clients) {
    c.channel.close()
    for (const ws of c.sockets) tcpOf(ws)?.destroy()
  }
}

/** The TCP socket under a `ws` WebSocket (ws keeps it in `_socket`). */
function tcpOf (ws: WebSocket): Socket | undefined {
  return (ws as unknown as { _socket?: Socket })._socket
}

const ids = (list: PeerMeta[]): string[] => list.map((m) => m.id).sort()
const logged = (c: Client): string[] => c.log.map(([event, meta]) => `${event} ${meta.id}`)

/** ms since `t0`, rounded. */
const since = (t0: number): number => Math.round(performance.now() - t0)

/** The meta of the next `event` for peer `id` and how long it took from `t0`; rejects after `ms`. */
function eventFor (c: Client, event: PeerEvent, id: string, t0: number, ms: number): Promise<{ meta: PeerMeta, ms: number }> {
  return within(new Promise((resolve) => {
    const on = (meta: PeerMeta): void => {
      if (meta.id !== id) return
      c.peers.off(event, on)
      resolve({ meta, ms: since(t0) })
    }
    c.peers.on(event, on)
  }), ms, `'${event}' of ${id}`)
}

/** `promise` rejects with a SignalyardError of `code` within 2 s. */
async function rejectsWith (promise: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await within(promise, 2000, what)
  } catch (err) {
    assert.instance(err, SignalyardError, `${what}: ${String(err)}`)
    assert.is((err as SignalyardError).code, code, what)
    return
  }
  assert.unreachable(`${what}: resolved, expected ${code}`)
}

test('join: the others get \'join\' with the id and the extra fields; a late joiner gets one for each member; list() and self; nothing for yourself', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    assert.is(a.peers.self, null, 'no self before join')
    await within(a.peers.join({ id: 'alice', name: 'Alice', n: 1, tags: ['x'], nested: { ok: true } }), 2000, 'alice joins')
    assert.equal(a.peers.self, { id: 'alice', name: 'Alice', n: 1, tags: ['x'], nested: { ok: true } })
    assert.equal(a.peers.list(), [], 'alone: nobody else')

    const t0 = performance.now()
    const seen = eventFor(a, 'join', 'bob', t0, 1000)
    await within(b.peers.join({ id: 'bob', name: 'Bob' }), 2000, 'bob joins')
    // Bob joined after Alice: he has her already when his join() resolves.
    assert.equal(b.peers.list(), [{ id: 'alice', name: 'Alice', n: 1, tags: ['x'], nested: { ok: true } }])
    assert.equal(logged(b), ['join alice'], 'the late joiner got \'join\' for the member already present')
    const { meta, ms } = await seen
    assert.equal(meta, { id: 'bob', name: 'Bob' }, 'the others get the id and the extra fields')
    assert.ok(ms < 1000, `'join' within 1 s (took ${ms} ms)`)
    assert.equal(a.peers.list(), [{ id: 'bob', name: 'Bob' }])

    const c = client()
    await within(c.peers.join({ id: 'carol' }), 2000, 'carol joins')
    assert.equal(ids(c.peers.list()), ['alice', 'bob'])
    assert.equal(logged(c).sort(), ['join alice', 'join bob'], 'one \'join\' for each member present')
    await until(() => a.peers.list().length === 2 && b.peers.list().length === 2, 1000, 'everyone sees carol')
    assert.equal(c.peers.self, { id: 'carol' })

    // Nobody ever got an event about themselves, nor appears in their own list.
    for (const [x, id] of [[a, 'alice'], [b, 'bob'], [c, 'carol']] as const) {
      assert.not.ok(x.log.some(([, m]) => m.id === id), `${id} got no event about itself`)
      assert.not.ok(x.peers.list().some((m) => m.id === id), `${id} is not in its own list`)
      assert.equal(x.errors, [])
    }
    assert.equal(logged(a), ['join bob', 'join carol'])
  })
})

test('join again: new meta → \'update\' on the others; the same meta → no event; another id → \'leave\' of the old id and \'join\' of the new', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    await a.peers.join({ id: 'a', mood: 'calm' })
    await b.peers.join({ id: 'b' })
    await until(() => b.peers.list().length === 1, 1000, 'b sees a')

    // The same meta again: the server may publish it, the others must not see an 'update'.
    await within(a.peers.join({ id: 'a', mood: 'calm' }), 2000, 'same meta again')
    const t0 = performance.now()
    const updated = eventFor(b, 'update', 'a', t0, 1000)
    await within(a.peers.join({ id: 'a', mood: 'happy', extra: 1 }), 2000, 'new meta')
    const { meta, ms } = await updated
    assert.equal(meta, { id: 'a', mood: 'happy', extra: 1 })
    assert.ok(ms < 1000, `'update' within 1 s (took ${ms} ms)`)
    // Events on one socket arrive in order: an 'update' for the unchanged meta would come first.
    assert.equal(logged(b), ['join a', 'update a'], 'no \'update\' when the meta did not change')
    assert.equal(b.peers.list(), [{ id: 'a', mood: 'happy', extra: 1 }])
    assert.equal(a.peers.self, { id: 'a', mood: 'happy', extra: 1 })

    // Another id: the old one leaves, the new one joins.
    const t1 = performance.now()
    const left = eventFor(b, 'leave', 'a', t1, 1000)
    const joined = eventFor(b, 'join', 'a2', t1, 1000)
    await within(a.peers.join({ id: 'a2', mood: 'new' }), 2000, 'join under another id')
    const [l, j] = await Promise.all([left, joined])
    assert.ok(l.ms < 1000 && j.ms < 1000, `leave + join within 1 s (${l.ms}, ${j.ms} ms)`)
    assert.equal(j.meta, { id: 'a2', mood: 'new' })
    assert.equal(b.peers.list(), [{ id: 'a2', mood: 'new' }])
    assert.equal(a.peers.self, { id: 'a2', mood: 'new' })
    assert.equal(a.peers.list(), [{ id: 'b' }], 'the one who switched still sees the others')
    // The old id is free again for anyone.
    const c = client()
    await within(c.peers.join({ id: 'a' }), 2000, 'someone else takes the released id')
    assert.equal(a.errors, [])
  })
})

test('\'leave\' within 1 s of peers.leave() and of channel.close()', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    const c = client()
    await Promise.all([a.peers.join({ id: 'a' }), b.peers.join({ id: 'b' }), c.peers.join({ id: 'c', k: 1 })])
    await until(() => a.peers.list().length === 2, 1000, 'a sees b and c')

    let t0 = performance.now()
    const left = eventFor(a, 'leave', 'b', t0, 1500)
    b.peers.leave()
    assert.is(b.peers.self, null, 'self is null after leave()')
    assert.equal(b.peers.list(), [], 'the list empties at once')
    const r1 = await left
    assert.equal(r1.meta, { id: 'b' })
    assert.ok(r1.ms < 1000, `'leave' within 1 s of leave() (took ${r1.ms} ms)`)

    t0 = performance.now()
    const closed = eventFor(a, 'leave', 'c', t0, 1500)
    c.channel.close()
    const r2 = await closed
    assert.equal(r2.meta, { id: 'c', k: 1 }, '\'leave\' carries the last meta')
    assert.ok(r2.ms < 1000, `'leave' within 1 s of channel.close() (took ${r2.ms} ms)`)
    assert.equal(a.peers.list(), [])
    assert.equal(logged(a).filter((e) => e.startsWith('leave')), ['leave b', 'leave c'], 'one \'leave\' each')

    // A member that left can come back.
    await within(b.peers.join({ id: 'b' }), 2000, 'b joins again')
    await until(() => ids(a.peers.list()).join() === 'b', 1000, 'a sees b again')
  })
})

test('\'leave\' within 5 s when the peer\'s process is killed (default limits); the id stays held until then', async () => {
  await withYard({}, async ({ yard, client }) => {
    assert.equal(yard.limits.peers.grace, DEFAULTS.peers.grace, 'default grace')
    const a = client()
    await a.peers.join({ id: 'a' })
    const child = spawn(process.execPath, [CHILD, yard.url, NS, 'child'], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const joinedLine = new Promise<void>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (d) => { out += String(d); if (out.includes('joined\n')) resolve() })
        child.once('exit', (code) => reject(new Error(`the child exited early (${code})`)))
      })
      await within(joinedLine, 5000, 'the child joins')
      await until(() => a.peers.list().some((m) => m.id === 'child'), 1000, 'a sees the child')
      assert.is(a.peers.list()[0].pid, child.pid, 'the child\'s meta')

      const t0 = performance.now()
      const left = eventFor(a, 'leave', 'child', t0, 6000)
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await within(exited, 2000, 'the child dies')

      // Until the grace period ends the id is still held: nobody else can take it.
      const thief = client()
      await rejectsWith(thief.peers.join({ id: 'child' }), 'peer-id-taken', 'joining a dead peer\'s id during its grace period')
      assert.is(thief.peers.self, null)

      const { ms } = await left
      assert.ok(ms <= 5000, `'leave' within 5 s of the kill (took ${ms} ms)`)
      assert.equal(a.peers.list(), [])
      await within(thief.peers.join({ id: 'child' }), 2000, 'the id is free after the leave')
      await until(() => a.peers.list().length === 1, 1000, 'a sees the new holder')
      assert.equal(a.peers.list(), [{ id: 'child' }])
    } finally {
      child.kill('SIGKILL')
    }
  })
})

test('\'leave\' within the presence TTL (2 × pingInterval + grace) when a peer\'s network silently dies; the default TTL is ≤ 30 s', async () => {
  assert.ok(DEFAULTS.pingInterval * 2 + DEFAULTS.peers.grace <= 30_000,
    `default presence TTL ${DEFAULTS.pingInterval * 2 + DEFAULTS.peers.grace} ms ≤ 30 s`)
  const pingInterval = 200
  const grace = 200
  await withYard({ pingInterval, peers: { grace } }, async ({ client }) => {
    const a = client()
    const b = client()
    await Promise.all([a.peers.join({ id: 'a' }), b.peers.join({ id: 'b' })])
    await until(() => a.peers.list().length === 1, 1000, 'a sees b')
    await sleep(pingInterval * 2) // b has answered pings: it is alive by the server's account

    // b's network disappears: no FIN, nothing read, so no pong either.
    const tcp = tcpOf(b.sockets[b.sockets.length - 1])
    assert.ok(tcp !== undefined, 'reached b\'s TCP socket')
    tcp.pause()
    const t0 = performance.now()
    const bound = 2 * pingInterval + grace + 400
    const { meta, ms } = await eventFor(a, 'leave', 'b', t0, bound + 1000)
    assert.equal(meta, { id: 'b' })
    assert.ok(ms <= bound, `'leave' within 2 × ${pingInterval} + ${grace} ms + 400 ms slack (took ${ms} ms)`)
    assert.equal(a.peers.list(), [])

    // When the network comes back, b notices its socket is gone, reconnects and joins again by itself.
    const t1 = performance.now()
    const back = eventFor(a, 'join', 'b', t1, 3000)
    tcp.resume()
    const r = await back
    assert.ok(r.ms < 2000, `b is back within 2 s of its network returning (took ${r.ms} ms)`)
    assert.equal(b.errors, [], 'b got no error (no peer-id-taken)')
    assert.equal(b.peers.list(), [{ id: 'a' }])
  })
})

test('peer-id-taken: a second client joining a live id is refused; the owner is unaffected', async () => {
  await withYard({}, async ({ client }) => {
    const owner = client()
    const observer = client()
    const thief = client()
    await owner.peers.join({ id: 'alice', who: 'owner' })
    await observer.peers.join({ id: 'obs' })
    await rejectsWith(thief.peers.join({ id: 'alice', who: 'thief' }), 'peer-id-taken', 'joining a live id')
    assert.is(thief.peers.self, null, 'the refused client holds nothing')

    await sleep(200) // anything the refused join caused would have arrived by now
    assert.equal(observer.peers.list(), [{ id: 'alice', who: 'owner' }], 'the others still see the owner\'s meta')
    assert.equal(logged(observer), ['join alice'], 'no leave / join / update for the refused join')
    assert.equal(logged(owner), ['join obs'])
    assert.equal(owner.errors, [], 'the owner got no error')
    assert.equal(owner.peers.self, { id: 'alice', who: 'owner' })

    // The owner still owns it: it can update its meta, and the refused client can use another id.
    const updated = eventFor(observer, 'update', 'alice', performance.now(), 1000)
    await owner.peers.join({ id: 'alice', who: 'owner', v: 2 })
    assert.equal((await updated).meta, { id: 'alice', who: 'owner', v: 2 })
    await within(thief.peers.join({ id: 'bob' }), 2000, 'the refused client joins under a free id')
    await until(() => observer.peers.list().length === 2, 1000, 'observer sees bob')
    assert.equal(ids(thief.peers.list()), ['alice', 'obs'])
  })
})

test('reclaim after a blip (server kept running): the owner holds its id again at once, the others see no leave / join', async () => {
  const grace = 300
  await withYard({ peers: { grace } }, async ({ client }) => {
    const a = client()
    const b = client()
    await a.peers.join({ id: 'a', n: 1 })
    await b.peers.join({ id: 'b' })
    await until(() => b.peers.list().length === 1 && a.peers.list().length === 1, 1000, 'a and b see each other')
    const before = logged(b).length

    // 1. The socket drops; the meta is unchanged.
    let t0 = performance.now()
    const reopened = next(a.channel, 'state', 2000)
    a.sockets[a.sockets.length - 1].terminate()
    const reconnected = new Promise<number>((resolve) => {
      const on = (state: string): void => { if (state === 'open') { a.channel.off('state', on); resolve(since(t0)) } }
      a.channel.on('state', on)
    })
    assert.is((await reopened)[0], 'reconnecting')
    const reconnectMs = await within(reconnected, 2000, 'a reconnects')
    assert.ok(reconnectMs < 1000, `reconnected within 1 s (took ${reconnectMs} ms)`)
    // Past the grace period: had a not reclaimed its id, it would have left by now.
    await sleep(grace + 300)
    assert.equal(logged(b).slice(before), [], 'b saw no leave / join / update across the blip')
    assert.equal(b.peers.list(), [{ id: 'a', n: 1 }])
    assert.equal(a.errors, [], 'no peer-id-taken for the owner')
    assert.equal(a.peers.list(), [{ id: 'b' }], 'a still sees b')
    const thief = client()
    await rejectsWith(thief.peers.join({ id: 'a' }), 'peer-id-taken', 'a reclaimed its id: nobody else gets it')

    // 2. Another blip, and the owner changes its meta while offline: the others get the 'update'
    //    as soon as it is back — the time the whole reclaim takes.
    t0 = performance.now()
    const updated = eventFor(b, 'update', 'a', t0, 2000)
    const down = next(a.channel, 'state', 2000)
    a.sockets[a.sockets.length - 1].terminate()
    await down
    await within(a.peers.join({ id: 'a', n: 2 }), 2000, 'join with new meta while offline')
    const { meta, ms } = await updated
    assert.equal(meta, { id: 'a', n: 2 })
    assert.ok(ms < 1000, `the reclaim (with the new meta) reached the others within 1 s of the drop (took ${ms} ms)`)
    await sleep(grace + 300)
    assert.equal(logged(b).slice(before), ['update a'], 'only the update: no leave / join')
    assert.equal(a.errors, [])
  })
})

test('server restart on the same port: every member re-joins by itself and each sees the others again', async () => {
  let yard = await startYard()
  const { port } = yard
  const url = yard.url
  const clients: Client[] = []
  try {
    const members = ['a', 'b', 'c'].map((id) => ({ id, c: track(clients, url) }))
    await Promise.all(members.map(({ id, c }) => c.peers.join({ id, name: id.toUpperCase() })))
    await until(() => members.every(({ c }) => c.peers.list().length === 2), 1000, 'everyone sees everyone')

    await yard.close()
    await until(() => members.every(({ c }) => c.channel.state === 'reconnecting'), 2000, 'every client noticed')
    const t0 = performance.now()
    yard = await createServer({ port, host: '127.0.0.1' })
    // The clients' lists still hold everyone from before; a newcomer shows who is on the new server.
    const d = track(clients, url)
    await d.peers.join({ id: 'd' })
    await until(() => ids(d.peers.list()).join() === 'a,b,c', 3000, 'a newcomer sees a, b and c on the new server')
    const ms = since(t0)
    assert.ok(ms < 2000, `all re-joined within 2 s of the restart (took ${ms} ms)`)
    await until(() => members.every(({ c }) => c.peers.list().length === 3), 1000, 'every member sees the newcomer')
    for (const { id, c } of members) {
      assert.equal(c.peers.self, { id, name: id.toUpperCase() })
      assert.equal(c.peers.list().sort((x, y) => x.id.localeCompare(y.id)),
        [...members.filter((m) => m.id !== id).map((m) => ({ id: m.id, name: m.id.toUpperCase() })), { id: 'd' }], `${id}'s list`)
      assert.equal(c.errors, [], `${id}: no peer-id-taken after the restart`)
    }
    // Presence is live on the new server: a leave reaches the others.
    const left = eventFor(members[0].c, 'leave', 'b', performance.now(), 1500)
    members[1].c.peers.leave()
    assert.ok((await left).ms < 1000, '\'leave\' within 1 s on the new server')
  } finally {
    closeAll(clients)
    await yard.close()
  }
})

test('meta limits: meta over peers.maxMeta (join or update) is refused with payload-too-large; nothing reaches the others', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    await b.peers.join({ id: 'b' })
    const big = 'x'.repeat(DEFAULTS.peers.maxMeta + 1)
    await rejectsWith(a.peers.join({ id: 'a', big }), 'payload-too-large', 'join with too large meta')
    assert.is(a.peers.self, null)

    await within(a.peers.join({ id: 'a', small: 1 }), 2000, 'join with small meta')
    await until(() => b.peers.list().length === 1, 1000, 'b sees a')
    await rejectsWith(a.peers.join({ id: 'a', big }), 'payload-too-large', 'update with too large meta')
    await sleep(200)
    assert.equal(b.peers.list(), [{ id: 'a', small: 1 }], 'the others keep the last accepted meta')
    assert.equal(logged(b), ['join a'])
    assert.is(a.channel.state, 'open', 'the socket stayed up')
    // Just under the limit is fine.
    const fits = 'y'.repeat(DEFAULTS.peers.maxMeta - JSON.stringify({ fits: '' }).length)
    await within(a.peers.join({ id: 'a', fits }), 2000, 'update with meta of exactly maxMeta bytes')
    await until(() => b.peers.list()[0]?.fits === fits, 1000, 'b sees the largest meta')
  })
})

// Meta changes that race the server: a refused update, a second join before the first resolved,
// meta over the frame limit.

test('a refused update changes nothing: self keeps the meta the server holds, and a later blip reclaims the id with it', async () => {
  await withYard({ peers: { grace: 300 } }, async ({ client }) => {
    const a = client()
    const b = client()
    await a.peers.join({ id: 'a', small: 1 })
    await b.peers.join({ id: 'b' })
    await until(() => b.peers.list().length === 1, 1000, 'b sees a')
    await rejectsWith(a.peers.join({ id: 'a', big: 'x'.repeat(DEFAULTS.peers.maxMeta + 1) }), 'payload-too-large', 'update with too large meta')
    assert.ok(a.peers.self?.big === undefined, 'self does not show the refused meta')
    assert.equal(a.peers.self, { id: 'a', small: 1 })

    a.sockets[a.sockets.length - 1].terminate()
    await next(a.channel, 'state', 2000) // reconnecting
    await until(() => a.channel.state === 'open', 2000, 'a reconnects')
    await sleep(600) // past the grace period
    assert.equal(a.errors, [], 'the reclaim was not refused')
    assert.equal(logged(b), ['join a'], 'b saw no leave')
    assert.equal(b.peers.list(), [{ id: 'a', small: 1 }])
  })
})

test('join again with new meta before the first join() resolved: the others end up with the new meta', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    await b.peers.join({ id: 'b' })
    await within(a.channel.echo().ready(), 2000, 'a is connected') // so the first OPEN goes out at once
    const first = a.peers.join({ id: 'a', v: 1 })
    const second = a.peers.join({ id: 'a', v: 2 })
    await within(Promise.all([first, second]), 2000, 'both joins')
    assert.equal(a.peers.self, { id: 'a', v: 2 })
    await until(() => b.peers.list()[0]?.v === 2, 1000, 'the others see v: 2')
  })
})

test('meta over the server\'s frame limit is refused with payload-too-large, without dropping the socket', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    await within(a.channel.echo().ready(), 2000, 'connected')
    const states: string[] = []
    a.channel.on('state', (s) => states.push(s))
    const huge = 'x'.repeat(DEFAULTS.maxFrame + 1)
    await rejectsWith(a.peers.join({ id: 'a', huge }), 'payload-too-large', 'join with meta over maxFrame')
    await sleep(300)
    assert.equal(states, [], 'the socket was never dropped')
    await within(a.peers.join({ id: 'a' }), 2000, 'a normal join works after it')
    await rejectsWith(a.peers.join({ id: 'a', huge }), 'payload-too-large', 'update with meta over maxFrame')
    await sleep(300)
    assert.equal(states, [], 'the socket was never dropped')
    assert.equal(a.peers.self, { id: 'a' })
  })
})

test('meta keys named __proto__ / constructor are ordinary data; ids like __proto__ work', async () => {
  await withYard({}, async ({ client }) => {
    const a = client()
    const b = client()
    const meta = JSON.parse('{"id":"a","__proto__":{"polluted":true},"constructor":"c","toString":5,"hasOwnProperty":null}') as PeerMeta
    await b.peers.join({ id: 'b' })
    await within(a.peers.join(meta), 2000, 'join with prototype-named keys')
    await until(() => b.peers.list().length === 1, 1000, 'b sees a')
    const got = b.peers.list()[0]
    assert.is(Object.getPrototypeOf(got), Object.prototype, 'no prototype was set from the data')
    assert.ok(Object.hasOwn(got, '__proto__'), '__proto__ arrived as an own key')
    assert.equal(JSON.parse(JSON.stringify(got)), JSON.parse('{"id":"a","__proto__":{"polluted":true},"constructor":"c","toString":5,"hasOwnProperty":null}'))
    assert.is(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')

    for (const id of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
      const c = client()
      const joined = eventFor(b, 'join', id, performance.now(), 1000)
      await within(c.peers.join({ id, k: id }), 2000, `join as ${id}`)
      assert.equal((await joined).meta, { id, k: id })
      const thief = client()
      await rejectsWith(thief.peers.join({ id }), 'peer-id-taken', `${id} is owned like any id`)
      const left = eventFor(b, 'leave', id, performance.now(), 1000)
      c.peers.leave()
      await left
    }
    assert.equal(ids(b.peers.list()), ['a'])
  })
})

test('many members: 50 clients join one namespace, each sees the other 49; all leave; lists empty', async () => {
  const N = 50
  await withYard({}, async ({ client }) => {
    const cs = Array.from({ length: N }, () => client())
    const t0 = performance.now()
    await within(Promise.all(cs.map((c, i) => c.peers.join({ id: `p${i}`, i }))), 5000, '50 joins')
    await until(() => cs.every((c) => c.peers.list().length === N - 1), 3000, 'each sees the other 49')
    const joinMs = since(t0)
    assert.ok(joinMs < 3000, `50 members see each other within 3 s (took ${joinMs} ms)`)
    cs.forEach((c, i) => {
      assert.is(c.log.filter(([e]) => e === 'join').length, N - 1, `p${i} got 49 'join' events`)
      assert.not.ok(c.peers.list().some((m) => m.id === `p${i}`))
      assert.equal(c.errors, [])
    })
    assert.equal(cs[7].peers.list().find((m) => m.id === 'p42'), { id: 'p42', i: 42 })

    // All but the first leave: the first gets 49 'leave' events within a second.
    const t1 = performance.now()
    for (const c of cs.slice(1)) c.peers.leave()
    await until(() => cs[0].peers.list().length === 0, 2000, 'p0\'s list empties')
    const leaveMs = since(t1)
    assert.ok(leaveMs < 1000, `49 leaves within 1 s (took ${leaveMs} ms)`)
    assert.is(cs[0].log.filter(([e]) => e === 'leave').length, N - 1)
    cs[0].peers.leave()
    for (const c of cs) {
      assert.equal(c.peers.list(), [])
      assert.is(c.peers.self, null)
    }
  })
})

test.run()

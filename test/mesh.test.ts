// test/mesh.test.ts — channel.mesh() (SPEC §11, src/client/mesh.ts): a room in one call. Every
// member connected to every other (the lower id dials), 'peer' exactly once per member when its
// connection opens and 'leave' exactly once when it leaves (on purpose, or its socket dying),
// room.peers(), room.send to all or to one, late joiners, simultaneous joins, a taken id, random
// ids, rejoining; on the relay and on WebRTC (node-datachannel). Both brokers.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import { SignalChannel, SignalyardError, type Channel, type MeshOptions, type PeerConnection, type PeerMeta, type Room, type RTCPeerConnectionConstructor } from 'signalyard'
import type { Yard } from 'signalyard/server'
import { sleep, startYard, until, within } from './helpers.js'

const WebRTC = PolyfillPC as unknown as RTCPeerConnectionConstructor
const LOOPBACK = { bindAddress: '127.0.0.1' }

/** A member on its own socket, with every room event it saw. */
interface Member {
  channel: Channel
  room: Room<unknown>
  joins: PeerMeta[]
  peers: Array<{ pc: PeerConnection, meta: PeerMeta }>
  leaves: PeerMeta[]
  got: Array<[string, unknown]>
  errors: SignalyardError[]
}

let seq = 0
function member (yard: Yard, ns: string, options: MeshOptions & { webrtc?: boolean } = {}): Member {
  const { webrtc = false, ...meshOptions } = options
  const channel = SignalChannel(ns, { url: `${yard.url}?m=${seq++}`, ...(webrtc ? { RTCPeerConnection: WebRTC, rtcConfig: LOOPBACK } : {}) })
  const room = channel.mesh(meshOptions)
  const m: Member = { channel, room, joins: [], peers: [], leaves: [], got: [], errors: [] }
  room.on('join', (meta) => m.joins.push(meta))
  room.on('peer', (pc, meta) => m.peers.push({ pc, meta }))
  room.on('leave', (meta) => m.leaves.push(meta))
  room.on('data', (data, { from }) => m.got.push([from, data]))
  room.on('error', (err) => m.errors.push(err))
  return m
}

const ids = (list: Array<{ id: string }>): string[] => list.map((x) => x.id).sort()

async function withYard (body: (yard: Yard) => Promise<void>): Promise<void> {
  const yard = await startYard()
  try {
    await body(yard)
  } finally {
    await yard.close()
  }
}

test('four members: each gets exactly one \'peer\' per other member with its meta, room.peers() lists them, send reaches all or one', async () => {
  await withYard(async (yard) => {
    const names = ['ann', 'bob', 'cat', 'dan']
    const ms = names.map((name) => member(yard, 'room-1', { id: name, meta: { name: name.toUpperCase() } }))
    try {
      await Promise.all(ms.map(async (m) => await within(m.room.ready(), 3000, 'ready')))
      await until(() => ms.every((m) => m.peers.length === 3), 5000, 'everyone connected to everyone')
      await sleep(200)
      for (const [i, m] of ms.entries()) {
        const others = names.filter((n) => n !== names[i])
        assert.equal(m.peers.map((p) => p.meta.id).sort(), others, `${names[i]}: one 'peer' per other member, no more`)
        assert.equal(ids(m.joins), others, `${names[i]}: one 'join' per other member`)
        assert.ok(m.peers.every((p) => p.meta.name === String(p.meta.id).toUpperCase() && p.pc.peerId === p.meta.id && p.pc.state === 'open'))
        assert.equal(ids(m.room.peers()), others)
        assert.ok(m.room.peers().every((p) => p.pc?.state === 'open'))
        assert.is(m.room.id, names[i])
      }
      // 6 pairs, one pc each: the lower id dialled every time.
      for (const [i, m] of ms.entries()) {
        for (const p of m.peers) assert.is((p.pc as unknown as { initiator: boolean }).initiator, names[i] < String(p.meta.id), `${names[i]}→${String(p.meta.id)}: the lower id dials`)
      }
      assert.is(ms[0].room.send({ hi: 'all' }), 3)
      assert.is(ms[1].room.send('just you', { to: 'dan' }), 1)
      await until(() => ms.slice(1).every((m) => m.got.some(([from]) => from === 'ann')) && ms[3].got.length === 2, 2000, 'messages')
      await sleep(100)
      assert.equal(ms[1].got, [['ann', { hi: 'all' }]])
      assert.equal(ms[2].got, [['ann', { hi: 'all' }]])
      assert.equal(ms[3].got.sort(), [['ann', { hi: 'all' }], ['bob', 'just you']])
      assert.equal(ms[0].got, [], 'not to oneself')
      assert.throws(() => ms[0].room.send('x', { to: 'zed' }), (err: SignalyardError) => err.code === 'unknown-peer')
      assert.ok(ms.every((m) => m.errors.length === 0))
    } finally {
      for (const m of ms) m.channel.close()
    }
  })
})

test('leave: on room.leave() and on a socket that died, every other member gets \'leave\' exactly once; the rest stay connected', async () => {
  await withYard(async (yard) => {
    const ms = ['a1', 'b2', 'c3', 'd4'].map((id) => member(yard, 'room-2', { id }))
    try {
      await until(() => ms.every((m) => m.peers.length === 3), 5000, 'all connected')
      ms[0].room.leave()
      await until(() => ms.slice(1).every((m) => m.leaves.length === 1), 2000, '\'leave\' for a1')
      assert.ok(ms.slice(1).every((m) => m.leaves[0].id === 'a1'))
      assert.ok(ms.slice(1).every((m) => m.peers.find((p) => p.meta.id === 'a1')?.pc.state === 'closed'), 'its connections closed')
      assert.throws(() => ms[0].room.send('x'), (err: SignalyardError) => err.code === 'channel-closed')
      // d4's socket dies without a word: 'leave' after the presence grace, once.
      ;(ms[3].channel as unknown as { socket: { ws: { terminate?: () => void, close: () => void } | null } }).socket.ws?.terminate?.()
      ms[3].channel.close()
      await until(() => ms.slice(1, 3).every((m) => m.leaves.length === 2), 6000, '\'leave\' for d4')
      await sleep(1500)
      for (const m of ms.slice(1, 3)) {
        assert.equal(ids(m.leaves), ['a1', 'd4'], 'each leave once')
        assert.equal(ids(m.joins), ['a1', 'b2', 'c3', 'd4'].filter((id) => id !== m.room.id), 'each join once')
        assert.equal(m.peers.length, 3, 'no new \'peer\' meanwhile')
      }
      assert.equal(ids(ms[1].room.peers()), ['c3'])
      ms[1].room.send('still here')
      await until(() => ms[2].got.length === 1, 2000, 'b2 → c3 still works')
    } finally {
      for (const m of ms) m.channel.close()
    }
  })
})

test('a late joiner is connected to everyone; six members joining at the same moment connect every pair once', async () => {
  await withYard(async (yard) => {
    const early = ['m1', 'm2', 'm3'].map((id) => member(yard, 'room-3', { id }))
    const crowd: Member[] = []
    try {
      await until(() => early.every((m) => m.peers.length === 2), 5000, 'the first three')
      const late = member(yard, 'room-3', { id: 'm0' }) // the lowest id: it dials everyone
      early.push(late)
      await until(() => early.every((m) => m.peers.length === 3), 5000, 'the late joiner too')
      crowd.push(...Array.from({ length: 6 }, (_, i) => member(yard, 'room-3b', { id: `p${i}` })))
      await until(() => crowd.every((m) => m.peers.length === 5), 8000, 'six at once')
      await sleep(300)
      for (const m of crowd) {
        assert.is(m.peers.length, 5, `${m.room.id}: exactly one 'peer' per member`)
        assert.is(new Set(m.peers.map((p) => p.meta.id)).size, 5)
      }
    } finally {
      for (const m of [...early, ...crowd]) m.channel.close()
    }
  })
})

test('\'join\' and \'leave\' for a member whose connection never opens (one forces WebRTC, the other has none): once each, no \'peer\'', async () => {
  await withYard(async (yard) => {
    const a = member(yard, 'room-6', { id: 'x1', webrtc: true, transport: 'webrtc', connectTimeout: 500 })
    const b = member(yard, 'room-6', { id: 'x2' })
    try {
      await until(() => a.joins.length === 1 && b.joins.length === 1, 3000, 'each sees the other')
      await sleep(1500) // a dial or two fail (webrtc-unavailable) and are tried again
      assert.equal([a.peers.length, b.peers.length], [0, 0], 'no connection ever opened')
      assert.equal(ids(b.room.peers()), ['x1'], 'listed all the same')
      a.room.leave()
      await until(() => b.leaves.length === 1, 2000, 'b hears a leave')
      await sleep(300)
      assert.equal(ids(b.leaves), ['x1'])
      assert.equal(b.room.peers(), [])
    } finally {
      for (const m of [a, b]) m.channel.close()
    }
  })
})

test('random ids; a taken id is an error and ready() rejects; leaving and joining again gives \'peer\' again, once', async () => {
  await withYard(async (yard) => {
    const a = member(yard, 'room-4')
    const b = member(yard, 'room-4', { meta: { name: 'B' } })
    const thief = member(yard, 'room-4', { id: 'owned' })
    const owner = member(yard, 'room-4', { id: 'owned' })
    try {
      await Promise.all([a.room.ready(), b.room.ready()])
      assert.match(a.room.id, /^[\w-]{21}$/)
      assert.is.not(a.room.id, b.room.id)
      await until(() => a.peers.length >= 1 && b.peers.length >= 1, 5000, 'a and b connected')
      const outcomes = await Promise.allSettled([thief.room.ready(), owner.room.ready()])
      const refused = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[]
      assert.is(refused.length, 1, 'one of the two claims of "owned" is refused')
      assert.is((refused[0].reason as SignalyardError).code, 'peer-id-taken')
      // Leave and come back under the same id: a second stay, a second 'peer'.
      b.room.leave()
      await until(() => a.leaves.some((l) => l.id === b.room.id), 2000, 'b left')
      const again = b.channel.mesh({ id: b.room.id, meta: { name: 'B again' } })
      await again.ready()
      await until(() => a.peers.filter((p) => p.meta.id === b.room.id).length === 2, 5000, 'b back')
      await sleep(300)
      const stays = a.peers.filter((p) => p.meta.id === b.room.id)
      assert.equal(stays.map((p) => p.meta.name), ['B', 'B again'])
      assert.is(a.leaves.filter((l) => l.id === b.room.id).length, 1)
    } finally {
      for (const m of [a, b, thief, owner]) m.channel.close()
    }
  })
})

test('on WebRTC (node-datachannel): the room\'s connections move to WebRTC and room.send works across the move', async () => {
  await withYard(async (yard) => {
    const ms = ['w1', 'w2', 'w3'].map((id) => member(yard, 'room-5', { id, webrtc: true, connectTimeout: 3000 }))
    try {
      await until(() => ms.every((m) => m.peers.length === 2), 5000, 'connected')
      for (let i = 0; i < 50; i++) ms[0].room.send(i)
      await until(() => ms.every((m) => m.peers.every((p) => p.pc.transport === 'webrtc')), 8000, 'every pc on WebRTC')
      for (let i = 50; i < 100; i++) ms[0].room.send(i)
      await until(() => ms.slice(1).every((m) => m.got.length === 100), 3000, 'every message')
      for (const m of ms.slice(1)) assert.equal(m.got.map(([, d]) => d), Array.from({ length: 100 }, (_, i) => i), 'in order, none lost in the move')
    } finally {
      for (const m of ms) m.channel.close()
    }
  })
})

test.run()

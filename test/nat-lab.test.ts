// test/nat-lab.test.ts — the NAT lab (SPEC §8 "Proof", issue 12): real network namespaces,
// iptables NAT, a real coturn and the signalyard CLI (test/natlab.ts), and two peers per pair
// (test/fixtures/nat-peer.mjs): Node processes on node-datachannel or @roamhq/wrtc, or Chromium
// pages (a browser inside each peer namespace). Every pair uses `transport: 'auto'`: it opens on the
// server relay at once, numbered messages start at connect() and flow across the live move, and
// each case asserts where the pair ENDS, read from the real RTCPeerConnection's selected
// candidate pair, and checks that the library's pc.path says the same:
//   1. open (no NAT)                       → WebRTC, host ↔ host
//   2. cone NAT both sides + STUN (+TURN)  → WebRTC, srflx/prflx, never a relay candidate
//   3. symmetric NAT both sides, STUN only → WebRTC cannot connect: the pc stays on the relay
//   4. symmetric NAT both sides + TURN     → WebRTC through coturn (relay candidates)
//   5. UDP blocked by both routers + TURN over TCP → @roamhq/wrtc and Chromium on relay
//      candidates over TCP; any pair with a node-datachannel side (libjuice has no TURN/TCP)
//      stays on the relay
//   6. cone NAT, a UDP DROP rule added on router a while 10 MB flow each way over WebRTC → both
//      sides back on the relay without a byte lost or reordered; the rule lifted → WebRTC again
//      (a fresh RTCPeerConnection)
// Every pair delivers its first message right after connect() (on the relay) and every message
// exactly once and in order. Where the machine cannot build the lab (not root, no `ip netns`,
// iptables, conntrack or coturn missing) the file is skipped with the reason; under CI=true that fails.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { createLab, ipOf, labUnavailable, runPair, runPairInTurn, takeTurns, throughCoturn, tierOf, timings, type Lab, type LabYard, type Line, type NatMode, type PairOptions, type PairResult, type PairTimings, type Path, type Peer, type Stack } from './natlab.js'

const CONNECT_TIMEOUT = 3000
const YARD_PORT = 8000
const STUN_ONLY_YARD_PORT = 8001
const STUN_PORT = 3478
const STUN_ONLY_STUN_PORT = 3477
const TURN_PORT = 3479
/** Messages each side sends per pair, their size, and the time they are spread over (so they cross the move). */
const COUNT = 500
const SIZE = 1024
const SPREAD_MS = 3000
/**
 * The first message is delivered within this of connect() (it goes on the relay at once). The
 * bench measures the 50 ms target with Node peers; here the pairs of a case start one at a time
 * (takeTurns) but run side by side, up to three Chromium pages among them, on 2 cores.
 */
const FIRST_BYTE_LIMIT = 1000
/**
 * The final path is read this long after the last move: libjuice starts on its first pair that
 * works (through TURN, say) and moves to a better one within its 2 s nomination timeout.
 */
const FINAL_AFTER_MOVE = 2500
/** Case 6: 640 × 16 KiB = 10 MiB each way, spread over this long. */
const DIE_COUNT = 640
const DIE_SIZE = 16 * 1024
const DIE_SPREAD_MS = 14_000
/** Case 6: the rule is lifted this long after the last side fell back to the relay; WebRTC is back within BACK_LIMIT of the lift. */
const LIFT_AFTER = 2500
const BACK_LIMIT = 10_000

const ci = process.env.CI === 'true' || process.env.CI === '1'
const unavailable = labUnavailable()

let lab: Lab | null = null
let building: Promise<{ lab: Lab, full: LabYard, stunOnly: LabYard }> | null = null
/** Every pair's times, printed as one table at the end. */
const measured: Array<{ name: string, stacks: string, ends: string, t: PairTimings }> = []

/** The lab with coturn, a yard offering STUN and TURN, and a yard offering STUN only (built once). */
function theLab (): Promise<{ lab: Lab, full: LabYard, stunOnly: LabYard }> {
  building ??= (async () => {
    const t0 = performance.now()
    lab = await createLab()
    const secret = randomBytes(18).toString('base64url')
    await lab.startCoturn({ port: TURN_PORT, secret })
    const ip = lab.publicIp
    const full = await lab.startYard({
      port: YARD_PORT,
      args: ['--stun-port', String(STUN_PORT), '--public-host', ip,
        '--turn-url', `turn:${ip}:${TURN_PORT}?transport=udp`, '--turn-url', `turn:${ip}:${TURN_PORT}?transport=tcp`],
      env: { TURN_SECRET: secret }
    })
    const stunOnly = await lab.startYard({ port: STUN_ONLY_YARD_PORT, args: ['--stun-port', String(STUN_ONLY_STUN_PORT), '--public-host', ip] })
    console.log(`natlab: ${lab.id} built in ${Math.round(performance.now() - t0)} ms (namespaces, coturn, 2 yards)`)
    return { lab, full, stunOnly }
  })()
  return building
}

const show = (p: Path): string => p.transport === 'webrtc'
  ? `${String(p.local)}→${String(p.remote)} ${String(p.protocol)}${p.rtt !== null ? ` rtt ${p.rtt} ms` : ''}`
  : String(p.transport)

/** A side's 'transport' lines, e.g. "webrtc@212 relay@5230 webrtc@9120" (ms since a's connect()). */
function moves (p: Peer, t0: number): string {
  return p.lines.filter((l) => l.ev === 'transport').map((l) => `${String(l.transport)}@${Math.round((l.at as number) - t0)}`).join(' ') || 'none'
}

/**
 * What every pair must do: open on the relay, deliver the first message within FIRST_BYTE_LIMIT
 * of connect() both ways, exchange every message in order and intact, and (once the library has
 * pc.path) report the path the RTCPeerConnection is on.
 */
function checkPair (r: PairResult, count: number): PairTimings {
  const t = timings(r)
  assert.is(r.open.transport, 'relay', `'auto' opens on the relay (${r.a.stack}→${r.b.stack})`)
  assert.ok(t.firstAtB !== null && t.firstAtB <= FIRST_BYTE_LIMIT, `a's first message at b ${String(t.firstAtB)} ms after connect()`)
  assert.ok(t.firstAtA !== null && t.firstAtA <= FIRST_BYTE_LIMIT, `b's first message at a ${String(t.firstAtA)} ms after connect()`)
  for (const side of ['a', 'b'] as const) {
    const done = r.done[side]
    assert.ok(done.ok, `${side}: ${JSON.stringify(done.problems)}`)
    assert.is(done.received, count, `${side} received every message`)
    // the library's pc.path says what the RTCPeerConnection's selected pair says
    const lib = r.final[side].libraryPath as Partial<Path> | null
    const own = r.final[side].path as Path
    assert.ok(lib !== null, `${side} has pc.path`)
    assert.equal([lib?.transport, lib?.local ?? null, lib?.remote ?? null, lib?.protocol ?? null], [own.transport, own.local, own.remote, own.protocol],
      `${side}: pc.path agrees with the selected candidate pair (re-read for ${String(r.final[side].libraryLagMs)} ms)`)
  }
  return t
}

/**
 * When a pair that can reach WebRTC must be there: within connectTimeout; or, when a
 * node-datachannel side's first attempt hung (libjuice leaves about one ICE attempt in 50–100 in
 * 'checking' for ever here, whatever the NAT), through the initiator's retry a second after that
 * attempt was given up: its second RTCPeerConnection, within RETRY_WINDOW.
 */
const RETRY_WINDOW = 2 * CONNECT_TIMEOUT + 1000 + 500

/** The pair ends on WebRTC on both sides, each moved in time (above), and a's messages went on both transports. */
function checkMovedUp (r: PairResult, t: PairTimings): void {
  for (const side of ['a', 'b'] as const) assert.is(r.final[side].transport, 'webrtc', `${side} ends on WebRTC`)
  const made = (r.final.a.rtcStates as string[]).length
  const retried = (r.a.stack === 'node-datachannel' || r.b.stack === 'node-datachannel') && made >= 2 && (t.webrtcA ?? Infinity) > CONNECT_TIMEOUT
  const limit = retried ? RETRY_WINDOW : CONNECT_TIMEOUT
  if (retried) console.log(`note: ${r.a.stack}→${r.b.stack}: the first WebRTC attempt never connected (libjuice); attempt ${made} did, at ${String(t.webrtcA)} ms`)
  assert.ok(t.webrtcA !== null && t.webrtcA <= limit, `a moved to WebRTC ${String(t.webrtcA)} ms after connect() (${made} RTCPeerConnection(s))`)
  assert.ok(t.webrtcB !== null && t.webrtcB <= limit, `b moved to WebRTC ${String(t.webrtcB)} ms after connect()`)
  const sentOn = r.done.a.sentOn as { relay: number, webrtc: number }
  assert.ok(sentOn.relay > 0 && sentOn.webrtc > 0, `a's messages went on the relay and on WebRTC: ${JSON.stringify(sentOn)}`)
}

/** Neither side ever moved to WebRTC, and both end on the relay. */
function checkStayed (r: PairResult): void {
  for (const side of ['a', 'b'] as const) {
    assert.is(r[side].lines.find((l) => l.ev === 'transport'), undefined, `${side} never moved: ${moves(r[side], r.a.first('connect')?.at as number)}`)
    assert.is(r.final[side].transport, 'relay', `${side} ends on the relay`)
    assert.is((r.final[side].path as Path).transport, 'relay')
  }
}

/** A side's path changes before the final one, e.g. "relay→srflx udp (at 330 ms), " (empty when it never changed). */
function history (r: PairResult, side: 'a' | 'b'): string {
  // leave out a moment on WebRTC before the stack names a pair
  const paths = r[side].lines.filter((l) => l.ev === 'path' && (l.path as Path).transport !== null && !((l.path as Path).transport === 'webrtc' && (l.path as Path).local === null))
  return paths.slice(0, -1).map((l) => `${show(l.path as Path)} (at ${String(l.ms)} ms), then `).join('')
}

/** Print a pair's measurements: connect→open, first message each way, the moves, the path each side ends on (with what came before). */
function report (name: string, r: PairResult, count: number, size: number): void {
  const t = timings(r)
  const t0 = r.a.first('connect')?.at as number
  console.log(`timing: ${name} [${r.a.stack}→${r.b.stack}]: open over ${String(r.open.transport)} in ${t.open} ms, first message at b ${String(t.firstAtB)} ms, at a ${String(t.firstAtA)} ms; ` +
    `moves a ${moves(r.a, t0)}, b ${moves(r.b, t0)}; ${count}×${size} B each way done at ${Math.round((r.done.a.at as number) - t0)} ms (a sent ${JSON.stringify(r.done.a.sentOn)}); ` +
    `ends a ${history(r, 'a')}${show(r.final.a.path as Path)}, b ${history(r, 'b')}${show(r.final.b.path as Path)}; ` +
    `pc.path agreed after ${String(r.final.a.libraryLagMs)} / ${String(r.final.b.libraryLagMs)} ms`)
}

/**
 * Set both routers, run one pair per stack combination (at the same time: each has its own
 * processes, ports and NAT mappings), report each, check each with checkPair, then with `expect`.
 */
async function runCase (name: string, mode: NatMode, combos: Array<[Stack, Stack]>, yard: 'full' | 'stunOnly', tier: string,
  expect: (r: PairResult, t: PairTimings, pa: Path, pb: Path) => void, extra: Partial<PairOptions> = {}): Promise<void> {
  const setup = await theLab()
  await setup.lab.setModes(mode)
  const count = extra.count ?? COUNT
  const size = extra.size ?? SIZE
  const turn = takeTurns()
  const results = await Promise.all(combos.map(async (stacks) => {
    const r = await runPairInTurn(setup.lab, {
      yard: setup[yard], stacks, transport: 'auto', connectTimeout: CONNECT_TIMEOUT, count, size, spreadMs: SPREAD_MS,
      // a pair that can reach WebRTC is waited for until it has (a retry included); one that cannot, past its first attempt
      settleMs: tier === 'relay' ? CONNECT_TIMEOUT + 500 : RETRY_WINDOW + 500, finalAfterMove: FINAL_AFTER_MOVE, ...extra
    }, turn)
    report(name, r, count, size)
    return r
  }))
  for (const r of results) {
    const t = withLines(r, () => {
      const t = checkPair(r, count)
      expect(r, t, r.final.a.path as Path, r.final.b.path as Path)
      // the bench's name for the tier agrees (bench/scenarios/08-connectivity.mjs counts by it)
      assert.is(tierOf(r.final.a.path as Path, r.final.b.path as Path), tier)
      return t
    })
    measured.push({ name, stacks: `${r.a.stack}→${r.b.stack}`, ends: `${tierOf(r.final.a.path as Path, r.final.b.path as Path)}: ${show(r.final.a.path as Path)} / ${show(r.final.b.path as Path)}`, t })
  }
}

/** Run `checks` on a pair; a failure's message gets what both peers printed. */
function withLines<T> (r: PairResult, checks: () => T): T {
  try {
    return checks()
  } catch (err) {
    (err as Error).message += `\n[${r.a.stack}→${r.b.stack}] a printed:\n${r.a.describe()}\nb printed:\n${r.b.describe()}`
    throw err
  }
}

/** The first line of `p` matching `match` that arrived after `since` (performance.now()), waiting until `deadline`. */
async function lineAfter (p: Peer, since: number, deadline: number, what: string, match: (l: Line) => boolean): Promise<Line> {
  for (;;) {
    const line = p.lines.find((l) => (l.arrived as number) >= since && match(l))
    if (line !== undefined) return line
    if (performance.now() > deadline) throw new Error(`${p.name} (${p.stack}): no ${what} by the deadline; it printed:\n${p.describe()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A promise with its resolve, for the steps case 6's pairs take together. */
function gate<T = void> (): { promise: Promise<T>, open: (value: T) => void } {
  let open = (_value: T): void => {}
  const promise = new Promise<T>((resolve) => { open = resolve })
  return { promise, open }
}

if (unavailable !== null) {
  if (ci) {
    test('NAT lab', () => {
      assert.unreachable(`CI=true: the NAT lab cannot be built here: ${unavailable}. .ci/run installs iproute2, iptables, conntrack and coturn and runs as root.`)
    })
  } else {
    console.log(`skipped: the NAT lab (${unavailable})`)
    test.skip('NAT lab')
  }
} else {
  test.after(async () => {
    if (measured.length > 0) {
      console.log('ms from connect():        open  first@b first@a webrtc@a webrtc@b  ends (a / b)')
      for (const m of measured) {
        const f = (n: number | null): string => (n === null ? '–' : String(n)).padStart(7)
        console.log(`${`${m.name} ${m.stacks}`.padEnd(52).slice(0, 52)} ${f(m.t.open)} ${f(m.t.firstAtB)} ${f(m.t.firstAtA)} ${f(m.t.webrtcA)} ${f(m.t.webrtcB)}  ${m.ends}`)
      }
    }
    await lab?.closeBrowsers()
    lab?.teardown()
  })

  test('1. open (no NAT): the pair moves to WebRTC and ends on host candidates on both sides', async () => {
    await runCase('1 open', 'open', [['node-datachannel', 'node-datachannel'], ['wrtc', 'wrtc']], 'full', 'host', (r, t, pa, pb) => {
      checkMovedUp(r, t)
      for (const [side, p, other] of [['a', pa, 'b'], ['b', pb, 'a']] as const) {
        assert.equal([p.transport, p.local, p.protocol], ['webrtc', 'host', 'udp'], JSON.stringify(p))
        assert.is(ipOf(p.localAddress), lab?.peerIp(side), `${side} sends from its own address`)
        // a host address can show as prflx when a check from it came before its candidate did
        assert.ok(p.remote === 'host' || p.remote === 'prflx', `remote host: ${JSON.stringify(p)}`)
        const remoteIp = ipOf(p.remoteAddress)
        if (remoteIp !== '') assert.is(remoteIp, lab?.peerIp(other), `${side} sends to the peer's own address`)
      }
    })
  })

  test('2. cone NAT on both sides + STUN: WebRTC by hole punching (srflx/prflx) at the end, never a relay candidate though TURN is offered', async () => {
    await runCase('2 cone+STUN', 'cone', [['node-datachannel', 'node-datachannel'], ['wrtc', 'wrtc'], ['chromium', 'chromium']], 'full', 'srflx', (r, t, pa, pb) => {
      checkMovedUp(r, t)
      for (const [side, p, other] of [['a', pa, 'b'], ['b', pb, 'a']] as const) {
        assert.equal([p.transport, p.protocol], ['webrtc', 'udp'], JSON.stringify(p))
        assert.ok(p.local !== 'relay' && p.remote !== 'relay', `no relay candidate: ${JSON.stringify(p)}`)
        // the peer's host address (10.0.x.2) is unreachable: the remote side is its NAT's mapping
        assert.ok(p.remote === 'srflx' || p.remote === 'prflx', `remote reflexive: ${JSON.stringify(p)}`)
        const remoteIp = ipOf(p.remoteAddress)
        if (remoteIp !== '') assert.is(remoteIp, lab?.publicIpOf(other), `${side} sends to the peer's router`)
      }
    })
  })

  test('3. symmetric NAT on both sides, STUN only: WebRTC cannot connect, the pc stays on the relay and carries everything', async () => {
    await runCase('3 symmetric+STUN', 'symmetric', [['node-datachannel', 'node-datachannel'], ['wrtc', 'wrtc']], 'stunOnly', 'relay', (r) => {
      checkStayed(r)
      // WebRTC was tried (and given up), not skipped
      assert.ok((r.final.a.rtcStates as string[]).length >= 1, `a tried WebRTC: ${JSON.stringify(r.final.a.rtcStates)}`)
    })
  })

  test('4. symmetric NAT on both sides + TURN: WebRTC through coturn (relay candidates)', async () => {
    await runCase('4 symmetric+TURN', 'symmetric', [['node-datachannel', 'node-datachannel'], ['wrtc', 'wrtc'], ['chromium', 'chromium']], 'full', 'TURN/UDP', (r, t, pa, pb) => {
      checkMovedUp(r, t)
      // Each side sends through coturn: from its own relay candidate, or to the peer's (both
      // sides may send from their NAT mapping to the other's relay: still relayed both ways).
      for (const [side, p, other] of [['a', pa, pb], ['b', pb, pa]] as const) {
        assert.equal([p.transport, p.protocol], ['webrtc', 'udp'], JSON.stringify(p))
        assert.ok(throughCoturn(p, other), `${side} goes through coturn: a ${JSON.stringify(pa)}, b ${JSON.stringify(pb)}`)
        if (p.local === 'relay') assert.is(ipOf(p.localAddress), lab?.publicIp, 'a relay candidate is on coturn')
      }
    })
  })

  test('5a. UDP blocked + TURN over TCP: @roamhq/wrtc and Chromium move to WebRTC on relay candidates over TCP', async () => {
    await runCase('5 udp-blocked+TURN/TCP', 'udp-blocked', [['wrtc', 'wrtc'], ['chromium', 'chromium'], ['chromium', 'wrtc']], 'full', 'TURN/TCP', (r, t, pa, pb) => {
      checkMovedUp(r, t)
      for (const p of [pa, pb]) {
        assert.equal([p.transport, p.local, p.remote, p.protocol], ['webrtc', 'relay', 'relay', 'tcp'], JSON.stringify(p))
        assert.is(ipOf(p.localAddress), lab?.publicIp, 'a relay candidate is on coturn')
      }
    })
  })

  test('5b. UDP blocked + TURN over TCP: a pair with a node-datachannel side (no TURN/TCP in libjuice) stays on the relay', async () => {
    await runCase('5 udp-blocked+TURN/TCP', 'udp-blocked', [['node-datachannel', 'node-datachannel'], ['node-datachannel', 'wrtc'], ['chromium', 'node-datachannel']], 'full', 'relay', (r) => {
      checkStayed(r)
    })
  })

  test('6. a path that dies mid-transfer: a UDP DROP on router a → back on the relay without a byte lost or reordered; lifted → WebRTC again', async () => {
    const setup = await theLab()
    const combos: Array<[Stack, Stack]> = [['node-datachannel', 'node-datachannel'], ['wrtc', 'wrtc'], ['chromium', 'chromium']]
    // every pair on WebRTC with data flowing → the rule; every side back on the relay → LIFT_AFTER later, the lift
    const ready = combos.map(() => gate())
    const fell = combos.map(() => gate())
    const dropped = gate<number>()
    const lifted = gate<number>()
    const story = combos.map(() => ({ loss: [0, 0], back: [0, 0] }))
    void Promise.all(ready.map(async (g) => await g.promise)).then(async () => {
      const lift = await setup.lab.dropOnRouter('a', ['-p', 'udp'])
      dropped.open(performance.now())
      // lifted once every side fell back (or failed to, by the deadline: its pair fails), LIFT_AFTER later
      await Promise.race([Promise.all(fell.map(async (g) => await g.promise)), new Promise((resolve) => setTimeout(resolve, 15_000))])
      await new Promise((resolve) => setTimeout(resolve, LIFT_AFTER))
      await lift()
      lifted.open(performance.now())
    })
    await setup.lab.setModes('cone')
    const results = await Promise.all(combos.map(async (stacks, i) => {
      const r = await runPair(setup.lab, {
        yard: setup.stunOnly, stacks, transport: 'auto', connectTimeout: CONNECT_TIMEOUT,
        count: DIE_COUNT, size: DIE_SIZE, spreadMs: DIE_SPREAD_MS, finalAfterMove: FINAL_AFTER_MOVE, deadline: 45_000,
        during: async (a, b) => {
          const by = performance.now() + 10_000
          // an established WebRTC path with a tenth of the data across
          for (const p of [a, b]) await lineAfter(p, 0, by, 'move to WebRTC', (l) => l.ev === 'transport' && l.transport === 'webrtc')
          await lineAfter(b, 0, by, 'progress', (l) => l.ev === 'progress' && l.transport === 'webrtc')
          ready[i].open()
          const dropAt = await dropped.promise
          try {
            for (const [k, p] of [a, b].entries()) {
              const line = await lineAfter(p, dropAt, dropAt + 15_000, "'transport' 'relay' after the DROP", (l) => l.ev === 'transport' && l.transport === 'relay')
              story[i].loss[k] = Math.round((line.arrived as number) - dropAt)
            }
          } finally {
            fell[i].open()
          }
          const liftAt = await lifted.promise
          for (const [k, p] of [a, b].entries()) {
            const line = await lineAfter(p, liftAt, liftAt + BACK_LIMIT, `'transport' 'webrtc' within ${BACK_LIMIT} ms of the lift`, (l) => l.ev === 'transport' && l.transport === 'webrtc')
            story[i].back[k] = Math.round((line.arrived as number) - liftAt)
          }
        }
      }).catch((err: Error) => {
        // the others must not wait for a pair that failed before its part
        ready[i].open()
        fell[i].open()
        throw err
      })
      report('6 path dies', r, DIE_COUNT, DIE_SIZE)
      console.log(`timing: 6 path dies [${r.a.stack}→${r.b.stack}]: back on the relay a ${story[i].loss[0]} ms, b ${story[i].loss[1]} ms after the DROP; ` +
        `on WebRTC again a ${story[i].back[0]} ms, b ${story[i].back[1]} ms after the lift; RTCPeerConnections a ${JSON.stringify(r.final.a.rtcStates)}`)
      return r
    }))
    for (const r of results) {
      const t = withLines(r, () => checkPair(r, DIE_COUNT))
      for (const side of ['a', 'b'] as const) {
        const seq = r[side].lines.filter((l) => l.ev === 'transport').map((l) => l.transport)
        withLines(r, () => assert.equal(seq.slice(0, 3), ['webrtc', 'relay', 'webrtc'], `${side}'s moves: ${JSON.stringify(seq)}`))
        assert.is(r.final[side].transport, 'webrtc', `${side} ends on WebRTC`)
        const p = r.final[side].path as Path
        assert.ok(p.transport === 'webrtc' && p.local !== 'relay' && p.remote !== 'relay', `${side} ends on a direct path again: ${JSON.stringify(p)}`)
      }
      // the initiator retried with a fresh RTCPeerConnection (with wrtc and Chromium the first one
      // is the pair's own, kept for media: it stays, and restarts ICE by itself only if it has tracks)
      assert.ok((r.final.a.rtcStates as string[]).length >= 2, `a made a fresh RTCPeerConnection: ${JSON.stringify(r.final.a.rtcStates)}`)
      measured.push({ name: '6 path dies', stacks: `${r.a.stack}→${r.b.stack}`, ends: `${tierOf(r.final.a.path as Path, r.final.b.path as Path)}: ${show(r.final.a.path as Path)} / ${show(r.final.b.path as Path)}`, t })
    }
  })
}

test.run()

// bench/scenarios/06-node.mjs — createNode: time from `connect()` to 'open' on the connecting side,
// over the server relay and over WebRTC (node-datachannel's W3C polyfill, candidates on 127.0.0.1
// only via rtcConfig { bindAddress: '127.0.0.1' }), one pair at a time, the two transports
// interleaved pair by pair. Each pair: two fresh nodes listening on two long-lived channels (two
// WebSockets, as two apps would have); both nodes are closed before the next pair starts.
//
// libdatachannel on loopback sometimes waits on an ICE retransmission (~1 s) before the first
// connectivity check succeeds: opens that took ≥ SLOW_MS are counted and reported.
import nodeDataChannel from 'node-datachannel'
import { RTCPeerConnection as PolyfillPC } from 'node-datachannel/polyfill'
import { SignalChannel } from '../../dist/node/index.js'
import { percentiles, fmt } from '../lib/stats.mjs'
import { sleep, within } from '../lib/util.mjs'

export const name = 'node'
export const title = 'createNode: connect() to open, relay vs WebRTC'

const SLOW_MS = 900
const PAIR_TIMEOUT = 5000

const now = () => performance.now()

/** RTCPeerConnections made and closed, so each pair starts with none left over. */
const rtc = { created: 0, closed: 0 }
class CountedPC extends PolyfillPC {
  constructor (config) {
    super(config)
    rtc.created++
    this.counted = false
  }

  close () {
    if (!this.counted) { this.counted = true; rtc.closed++ }
    super.close()
  }
}


async function until (test, ms) {
  const by = Date.now() + ms
  while (!test() && Date.now() < by) await sleep(5)
  return test()
}

/** One pair over `transport`: ms from connect() to the connecting pc's 'open', or an Error. */
async function onePair (channels, transport, i) {
  const [chA, chB] = channels
  let accepted = null
  const a = chA.createNode(undefined, { transport })
  const b = chB.createNode((pc) => { accepted = pc }, { transport })
  try {
    await within(Promise.all([a.listen(`a-${transport}-${i}`), b.listen(`b-${transport}-${i}`)]), PAIR_TIMEOUT, 'listen')
    const t0 = now()
    const pc = a.connect(`b-${transport}-${i}`)
    const opened = new Promise((resolve, reject) => {
      pc.once('open', () => resolve(now() - t0))
      pc.once('close', (err) => reject(err ?? new Error('closed before open')))
    })
    const ms = await within(opened, PAIR_TIMEOUT, `${transport} pair ${i}`)
    if (pc.transport !== transport) throw new Error(`pair ${i} opened over ${pc.transport}, not ${transport}`)
    // The accepting side opens too (READY over WebRTC, pairing on the relay) before the pair ends.
    await until(() => accepted?.state === 'open', 2000)
    return ms
  } finally {
    a.close()
    b.close()
    await until(() => rtc.created === rtc.closed, 3000)
  }
}

export async function run (ctx) {
  const pairs = ctx.quick ? 50 : 100
  const yard = await ctx.startServer('signalyard')
  const loopback = { bindAddress: '127.0.0.1', iceServers: [] }
  const channels = ['a', 'b'].map((c) => SignalChannel('bench-node', { url: `${yard.url}?c=${c}`, RTCPeerConnection: CountedPC, rtcConfig: loopback }))
  const samples = { relay: [], webrtc: [] }
  const failures = { relay: [], webrtc: [] }
  const bound = ctx.deadline(ctx.quick ? 12_000 : 300_000)
  let done = 0
  try {
    // one warm-up pair each (JIT, first RTCPeerConnection), not counted
    for (const transport of ['relay', 'webrtc']) await onePair(channels, transport, 'warm').catch(() => {})
    for (let i = 0; i < pairs && !bound.passed(); i++) {
      for (const transport of ['relay', 'webrtc']) {
        try {
          samples[transport].push(await onePair(channels, transport, i))
        } catch (err) {
          failures[transport].push(String(err?.message ?? err))
        }
      }
      done++
    }
  } finally {
    bound.cancel?.()
    for (const c of channels) c.close()
    await until(() => rtc.created === rtc.closed, 3000)
    await yard.stop()
    // node-datachannel's native threads hold the event loop until cleanup() runs.
    nodeDataChannel.cleanup()
  }

  const rows = []
  const series = []
  for (const transport of ['relay', 'webrtc']) {
    const s = samples[transport]
    const { p50, p90, p99 } = percentiles(s, [50, 90, 99])
    const slow = s.filter((ms) => ms >= SLOW_MS).length
    const fast = s.filter((ms) => ms < SLOW_MS)
    const fastP50 = percentiles(fast, [50]).p50
    rows.push([transport, String(s.length), fmt(p50, 1), fmt(p90, 1), fmt(p99, 1), fmt(Math.max(...s), 1),
      transport === 'webrtc' ? `${slow}/${s.length} (${s.length > 0 ? (slow / s.length * 100).toFixed(0) : '–'} %)` : `${slow}/${s.length}`,
      fmt(fastP50, 1), String(failures[transport].length)])
    const sorted = [...s].sort((x, y) => x - y)
    series.push({ label: transport, points: sorted.map((ms, k) => [Math.round(((k + 1) / sorted.length) * 100), ms]) })
    ctx.log(`${transport}: p50 ${fmt(p50, 1)} ms, p99 ${fmt(p99, 1)} ms, ${slow} opens ≥ ${SLOW_MS} ms, ${failures[transport].length} failed`)
  }
  const notes = [
    `${done} pairs per transport${ctx.quick ? ` (quick mode: at most ${pairs} pairs, bounded to 12 s; the full run does 100)` : ''}, interleaved relay/WebRTC, one pair at a time, after one warm-up pair each. ` +
    'Time from `node.connect()` to the connecting pc\'s \'open\' (WebRTC: its data channel opened and READY sent; relay: the relay stream paired).',
    `WebRTC: node-datachannel polyfill, rtcConfig { bindAddress: '127.0.0.1', iceServers: [] }, transport 'webrtc' forced. ` +
    `"≥ ${SLOW_MS} ms" counts opens that waited on libdatachannel's ICE retransmission on loopback (~1 s); "p50 without them" excludes those.`
  ]
  for (const transport of ['relay', 'webrtc']) {
    if (failures[transport].length > 0) notes.push(`${transport} failures: ${[...new Set(failures[transport])].slice(0, 3).join('; ')}`)
  }
  return {
    columns: ['transport', 'pairs', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', `opens ≥ ${SLOW_MS} ms`, 'p50 without them', 'failed'],
    rows,
    notes,
    chart: { title: 'connect() → open (latency by percentile)', unit: 'ms', xLabel: 'percentile', series }
  }
}

// bench/compare-builds.mjs — server CPU per echo delivery of two builds of signalyard, side by side
// in one process tree: did a change make the fan-out path dearer?
//
//   node bench/compare-builds.mjs <base repo root> [<other root, default this repo>] [--subscribers N] [--rate R] [--rounds K]
//
// Each root must hold a built dist/ (node build.mjs) and this bench/ directory. Both servers run
// at once (bench/servers/signalyard.mjs of each root, in-memory broker), each with N raw ws
// subscribers in one namespace and one publisher; rounds of R publishes/s for 2 s alternate
// between them (A B, then B A), after one warm-up round each. Raw ws clients keep the
// generator's cost the same for both, so only the servers differ. Separate runs of the full
// fan-out scenario drift by ±0.1 in their ratio to the ceiling on a 2-core machine (the machine
// changes between runs); here both builds see the same moments, and four runs of the same two
// builds gave 0.88–1.06.
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { frame, sendAtRate, sleep } from './lib/util.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const roots = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'))
if (roots.length < 1) {
  console.error('usage: node bench/compare-builds.mjs <base root> [<other root>] [--subscribers N] [--rate R] [--rounds K]')
  process.exit(2)
}
if (roots.length < 2) roots.push(fileURLToPath(new URL('..', import.meta.url)))
const SUBSCRIBERS = option('subscribers', 600)
const RATE = option('rate', 120)
const ROUNDS = option('rounds', 10)

const OPEN = 0x01
const DATA = 0x03
const payload = frame(DATA, 1, 1, null, Buffer.from(JSON.stringify({ t: 0, pad: 'x'.repeat(60) })))

const setups = []
for (const root of roots) {
  const { startServer } = await import(new URL(`file://${root.replace(/\/$/, '')}/bench/lib/servers.mjs`).href)
  const server = await startServer('signalyard', { limits: { maxConnectionsPerIp: 100_000, messagesPerSecond: 100_000, messageBurst: 100_000 } })
  const setup = { root, server, received: 0, cpu: 0, deliveries: 0, sockets: [] }
  for (let i = 0; i <= SUBSCRIBERS; i++) {
    const ws = new WebSocket(`${server.url}?s=${i}`, 'signalyard.2')
    ws.on('message', () => { setup.received++ })
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    ws.send(frame(OPEN, 1, 0, { ep: 'echo', ns: 'compare' }))
    setup.sockets.push(ws)
  }
  setups.push(setup)
}
await sleep(1000)

for (let round = 0; round <= ROUNDS; round++) {
  for (const setup of round % 2 === 0 ? setups : [...setups].reverse()) {
    const publisher = setup.sockets[SUBSCRIBERS]
    const before = await setup.server.stats()
    setup.received = 0
    await sendAtRate(RATE * 2, RATE, () => publisher.send(payload))
    await sleep(700)
    const after = await setup.server.stats()
    if (round === 0) continue // warm-up
    setup.cpu += (after.cpu.user - before.cpu.user) + (after.cpu.system - before.cpu.system)
    setup.deliveries += setup.received
  }
}

const perDelivery = setups.map((s) => s.cpu / s.deliveries)
for (const [i, s] of setups.entries()) {
  console.log(`${s.root}: ${s.deliveries} deliveries, ${perDelivery[i].toFixed(2)} server CPU-µs per delivery`)
}
console.log(`second ÷ first: ${(perDelivery[1] / perDelivery[0]).toFixed(3)}`)
for (const s of setups) {
  for (const ws of s.sockets) ws.terminate()
  await s.server.stop()
}
process.exit(0)

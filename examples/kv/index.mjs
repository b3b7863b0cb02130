// examples/kv — the expiring key-value endpoint (signal-channel's "scuttlebutt" endpoint).
//
// Two replicas, m1 and m2, join the namespace "some other namespace". m2 listens for updates;
// m1 sets a key. The server orders the write and every replica of the namespace receives it, so
// m2 prints:
//
//   update some key some value <a fresh uuid>
//
// Keys expire (the server's default TTL unless `set` passes { ttl }), so this is volatile state
// for presence and offers, not a database.
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/kv/index.mjs
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead (for example one started with `npx signalyard`).
import { randomUUID } from 'node:crypto'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const giveUp = setTimeout(() => fail('m2 saw no update within 5 s'), 5000)

const channel1 = SignalChannel('some other namespace', { url })
const channel2 = SignalChannel('some other namespace', { url })
const m1 = channel1.kv()
const m2 = channel2.kv()

// ready() resolves once a replica holds the namespace's current state (on a shared server that
// may already include keys from earlier runs; listening after it shows only what changes next).
await Promise.all([m1.ready(), m2.ready()])

const value = `some value ${randomUUID()}`
const seen = new Promise((resolve) => {
  m2.on('update', (key, newValue) => {
    console.log('update', key, newValue)
    if (key === 'some key' && newValue === value) resolve()
  })
})

await m1.set('some key', value) // resolves when the server has accepted the write
await seen
console.log('m1 and m2 agree:', m1.get('some key') === m2.get('some key'))

clearTimeout(giveUp)
channel1.close()
channel2.close()
await yard?.close()

function fail (why) {
  console.error(`kv example: ${why}`)
  process.exit(1)
}

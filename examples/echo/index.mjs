// examples/echo — the echo endpoint: a tiny pub/sub of named events over one namespace.
//
// Two echo streams join the namespace "optional namespace". Each gets a small event layer on
// top (emit an event name with arguments, listen for it on the other side). The second stream
// emits an "offer"; the first one hears it and prints:
//
//   got offer this is an offer from peer peer id #222
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/echo/index.mjs
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead (for example one started with `npx signalyard`).
import { EventEmitter } from 'node:events'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const giveUp = setTimeout(() => fail('no offer arrived within 5 s'), 5000)

/** Named events over an echo stream: emit(name, ...args) here, on(name, fn) on every stream. */
function remoteEvents (stream) {
  const local = new EventEmitter()
  stream.on('data', (message) => {
    if (message !== null && typeof message === 'object' && typeof message.event === 'string' && Array.isArray(message.args)) {
      local.emit(message.event, ...message.args)
    }
  })
  return {
    on: (event, listener) => local.on(event, listener),
    emit: (event, ...args) => stream.send({ event, args })
  }
}

// Two channels on one URL share one WebSocket; each has its own echo stream.
const channel1 = SignalChannel('optional namespace', { url })
const channel2 = SignalChannel('optional namespace', { url })
const stream1 = channel1.echo()
const stream2 = channel2.echo()
const ee1 = remoteEvents(stream1)
const ee2 = remoteEvents(stream2)

const gotOffer = new Promise((resolve) => {
  ee1.on('offer', (peer, offer) => {
    console.log('got offer', offer, 'from peer', peer)
    resolve()
  })
})

// Echo has no replay for late joiners: wait until both streams are subscribed, then emit.
await Promise.all([stream1.ready(), stream2.ready()])
ee2.emit('offer', 'peer id #222', 'this is an offer')
await gotOffer

clearTimeout(giveUp)
channel1.close()
channel2.close()
await yard?.close()

function fail (why) {
  console.error(`echo example: ${why}`)
  process.exit(1)
}

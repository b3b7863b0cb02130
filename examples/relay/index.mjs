// examples/relay — the relay endpoint: a private pipe through the server between two streams.
//
// Each side presents a local and a remote token; the server pairs the stream that says
// { local: '12', remote: '22' } with the one that says { local: '22', remote: '12' } and then
// forwards everything between those two streams only. stream6 writes a message; stream5 prints:
//
//   relay message hello! relay
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/relay/index.mjs
//
// It starts its own server on 127.0.0.1 (a free port). Set SIGNALYARD_URL=ws://host:port/ to use
// a server that is already running instead (for example one started with `npx signalyard`).
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

const yard = process.env.SIGNALYARD_URL ? null : await createServer({ port: 0, host: '127.0.0.1' })
const url = process.env.SIGNALYARD_URL || yard.url
const giveUp = setTimeout(() => fail('no relay message within 5 s'), 5000)

const channel5 = SignalChannel('namespace is optional', { url })
const channel6 = SignalChannel('namespace is optional', { url })
const stream5 = channel5.relay({ local: '12', remote: '22' })
const stream6 = channel6.relay({ local: '22', remote: '12' })

const received = new Promise((resolve) => {
  stream5.on('data', (message) => {
    console.log('relay message', message)
    resolve()
  })
})

// No need to wait for the pairing: what is sent before 'open' is held and delivered after it.
stream6.send('hello! relay')
await received

clearTimeout(giveUp)
channel5.close()
channel6.close()
await yard?.close()

function fail (why) {
  console.error(`relay example: ${why}`)
  process.exit(1)
}

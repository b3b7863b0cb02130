// test/types/usage.ts — what a TypeScript user writes against the published types (checked by
// test/types.test.ts with `tsc -p test/types`; never run). Plain lines must compile; every line
// under `@ts-expect-error` must NOT compile (tsc fails on an expectation that is not met): a
// payload of the wrong type, an internal member, a field the library owns.
import { SignalChannel, SignalyardError, type KvStream, type PeerConnection, type PeerStream, type Room } from 'signalyard'
import { createServer } from 'signalyard/server'

const channel = SignalChannel('room-42', { url: 'ws://127.0.0.1:3000' })

// echo<T>: what it sends and what 'data' gives are T.
const chat = channel.echo<{ text: string }>()
chat.send({ text: 'hi' })
// @ts-expect-error a number is not a { text }
chat.send(42)
chat.on('data', (msg, { from }) => { const text: string = msg.text; const who: string = from; void text; void who })

// kv<V>: set, get, 'update' and toJSON are V.
const scores: KvStream<number> = channel.kv<number>()
void scores.set('ada', 3, { ttl: 60_000 })
// @ts-expect-error a string is not a number
void scores.set('ada', 'three')
const score: number | undefined = scores.get('ada')
scores.on('update', (key, value) => { const n: number = value; void key; void n })
const all: Record<string, number> = scores.toJSON()
void score; void all

// Without a type argument payloads are unknown: narrow before use.
channel.echo().on('data', (msg) => {
  // @ts-expect-error unknown has no properties
  void msg.text
})

// mesh<T>
const room: Room<{ move: string }> = channel.mesh<{ move: string }>({ meta: { name: 'Ada' } })
room.send({ move: 'e4' }, { to: 'bob' })
// @ts-expect-error not the room's message type
room.send({ text: 'x' })
room.on('data', (m, { from }) => { const move: string = m.move; void move; void from })
room.on('peer', (pc: PeerConnection, meta) => { void pc.transport; void meta.id })
room.on('join', (meta) => { void meta.id })
const ids: string[] = room.peers().map((p) => p.id)
void ids

// relay<T>
const pipe = channel.relay<Uint8Array>({ local: 'a', remote: 'b' })
pipe.send(new Uint8Array(4))
// @ts-expect-error not bytes
pipe.send('text')
pipe.on('data', (bytes) => { const n: number = bytes.byteLength; void n })

// createNode: random ids, directed messages, streams.
const node = channel.createNode((pc) => { pc.on('connection', (stream: PeerStream) => stream.on('data', (d) => { void d })) })
void node.listen().then((id: string) => id)
node.send('bob', { type: 'offer' })
node.on('message', (data, { from }) => { void data; const who: string = from; void who })
const pc = node.connect('bob')
const positions = pc.createStream('pos', { ordered: false, maxRetransmits: 0 })
positions.send({ x: 1, y: 2 })
// @ts-expect-error ordered is a boolean
pc.createStream('pos', { ordered: 'no' })
const state: 'connecting' | 'open' | 'closed' = pc.state
void state
// pc.createStream<T>: send, 'data' and the Web Streams are T.
const typed = pc.createStream<{ x: number }>('typed')
typed.send({ x: 1 })
// @ts-expect-error not a { x }
typed.send('no')
typed.on('data', (d) => { const x: number = d.x; void x })
const sink: WritableStream<{ x: number }> = typed.writable
const source: ReadableStream<{ x: number }> = typed.readable
void sink; void source
// @ts-expect-error the library opens a stream
typed.opened()
// @ts-expect-error and ends it
typed.finish()
// @ts-expect-error its state is the library's
typed.state = 'closed'

// Internals the library calls or mutates are not in the public types.
// @ts-expect-error
pc.start()
// @ts-expect-error
void pc.cid
// @ts-expect-error
void pc.initiator
// @ts-expect-error
pc.handle({ t: 'bye', c: 'x' })
// @ts-expect-error
void pc.accept
// @ts-expect-error
void pc.lost
// @ts-expect-error
node.received('alice', {})
// @ts-expect-error
void node.peerGone
// @ts-expect-error
void chat.frame
// @ts-expect-error
void chat.sid
// @ts-expect-error
chat.socketOpened()
// @ts-expect-error the library owns a pc's state
pc.state = 'open'
// @ts-expect-error the library owns a pc's transport
pc.transport = 'relay'
// @ts-expect-error the library owns a stream's state
chat.state = 'closed'
// @ts-expect-error and its id
chat.id = 'me'

// Errors carry a code.
try {
  chat.send({ text: 'x' })
} catch (err) {
  if (err instanceof SignalyardError) { const code: string = err.code; void code }
}

// The server, with its server-side API.
const yard = await createServer({ port: 0, host: '127.0.0.1' })
await yard.publish('room-42', { text: 'from the server' })
await yard.kv('room-42').set('k', 1)
void yard.peers('room-42')
await yard.close()

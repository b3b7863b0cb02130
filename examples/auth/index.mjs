// examples/auth — signed tokens scoped to namespaces: the server's authenticate and authorize
// options, the client's token option.
//
// The server holds a secret. A token is base64url(JSON { sub, ns, exp }) + '.' + base64url(HMAC-SHA256
// of that first part under the secret): `sub` is who it is, `ns` the namespaces it may use, `exp`
// its expiry (seconds since the epoch). authenticate(request, token) checks the signature (in
// constant time) and the expiry and returns { sub, ns } as the connection's identity;
// authorize(identity, namespace) lets it into its own namespaces only. It prints one line per case:
//
//   alice in room-a: echoed "hello from alice"
//   alice in room-b: refused (forbidden); her connection stays open
//   tampered token: refused at connect (unauthorized; server log: bad signature); 1 connection attempt, the client gave up
//   expired token: refused at connect (unauthorized; server log: token expired)
//
// The client learns only the code: why authenticate refused stays in the server's log (an app's
// message could quote the token).
//   auth example: 1 admitted, 3 refused as expected
//
// Run it from the repository root (after `npm install`, which builds dist/):
//
//   node examples/auth/index.mjs
//
// It always starts its own server on 127.0.0.1 (a free port): what it shows lives in that server's
// options, which a server started elsewhere does not have, so SIGNALYARD_URL is ignored here.
import { createHmac, timingSafeEqual, randomBytes } from 'node:crypto'
import { SignalChannel } from 'signalyard'
import { createServer } from 'signalyard/server'

if (process.env.SIGNALYARD_URL) {
  console.error('auth example: SIGNALYARD_URL ignored (authenticate/authorize are options of the server this example starts)')
}

const SECRET = randomBytes(32) // the server's; in a real deployment, from its configuration

/** Sign a token for `sub`, valid in the namespaces `ns` for `seconds` (negative: already expired). */
function issue (sub, ns, seconds) {
  const body = Buffer.from(JSON.stringify({ sub, ns, exp: Math.floor(Date.now() / 1000) + seconds })).toString('base64url')
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`
}

/** The token's claims if its signature and expiry hold; throws (the reason goes to the client) otherwise. */
function verify (token) {
  const [body, signature, extra] = (token ?? '').split('.')
  if (!body || !signature || extra !== undefined) throw new Error('malformed token')
  const expected = createHmac('sha256', SECRET).update(body).digest()
  const given = Buffer.from(signature, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Error('bad signature')
  let claims
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new Error('malformed token')
  }
  const { sub, ns, exp } = claims ?? {}
  if (typeof sub !== 'string' || !Array.isArray(ns) || !ns.every((n) => typeof n === 'string') || typeof exp !== 'number') {
    throw new Error('malformed token')
  }
  if (exp <= Date.now() / 1000) throw new Error('token expired')
  return { sub, ns }
}

/** Why authenticate refused, from the server's log (the client is told only `unauthorized`). */
const refusals = []
const yard = await createServer({
  port: 0,
  host: '127.0.0.1',
  logger: (_level, message, fields) => { if (message === 'connection refused by authenticate') refusals.push(String(fields.error).replace(/^Error: /, '')) },
  authenticate: (_request, token) => verify(token),
  authorize: (identity, namespace) => identity.ns.includes(namespace)
})
// Count WebSocket upgrades: shows that a refused client does not keep reconnecting.
let upgrades = 0
yard.server.on('upgrade', () => { upgrades++ })

const giveUp = setTimeout(() => fail('did not finish within 10 s'), 10_000)
// Channels share a WebSocket only when both the URL and the token are the same: each token
// holder below gets a socket, and an identity, of its own, on the same URL.
const channels = []
const channel = (namespace, options) => {
  const c = SignalChannel(namespace, options)
  channels.push(c)
  return c
}
/** ready()'s rejection as an error, null if it resolved. */
const outcome = (stream) => stream.ready().then(() => null, (err) => err)
let refused = 0

// 1. alice's token for room-a: she joins room-a; her echo comes back to her.
const alice = issue('alice', ['room-a'], 60)
const roomA = channel('room-a', { url: yard.url, token: alice })
const echo = roomA.echo()
const joined = await outcome(echo)
if (joined !== null) fail(`alice could not join room-a: ${joined.code} ${joined.message}`)
const heard = new Promise((resolve) => echo.once('data', resolve))
echo.send('hello from alice')
console.log(`alice in room-a: echoed ${JSON.stringify(await heard)}`)

// 2. The same token in room-b: authorize says no; only that stream is refused.
const roomB = channel('room-b', { url: yard.url, token: alice })
const forbidden = await outcome(roomB.echo())
if (forbidden?.code !== 'forbidden') fail(`room-b with alice's token: expected forbidden, got ${forbidden?.code ?? 'admitted'}`)
if (roomA.state !== 'open') fail(`alice's connection is ${roomA.state} after the refusal`)
refused++
console.log(`alice in room-b: refused (${forbidden.code}); her connection stays open`)

// 3. Mallory edits alice's token to add room-b and keeps the signature: refused at connect. With
// a fast reconnect backoff a retrying client would try many times in the next 500 ms; it does not.
const [, signature] = alice.split('.')
const forged = Buffer.from(JSON.stringify({ sub: 'alice', ns: ['room-a', 'room-b'], exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')
const before = upgrades
const mallory = channel('room-b', { url: yard.url, token: `${forged}.${signature}`, reconnect: { minDelay: 10, maxDelay: 20 } })
mallory.on('error', () => {}) // the refusal is reported on ready() below
const tampered = await outcome(mallory.echo())
if (tampered?.code !== 'unauthorized') fail(`tampered token: expected unauthorized, got ${tampered?.code ?? 'admitted'}`)
await new Promise((resolve) => setTimeout(resolve, 500))
const attempts = upgrades - before
if (attempts !== 1 || mallory.state !== 'closed') fail(`tampered token: ${attempts} attempts, channel ${mallory.state}`)
refused++
console.log(`tampered token: refused at connect (${tampered.code}; server log: ${refusals.shift()}); ${attempts} connection attempt, the client gave up`)

// 4. bob's token expired a minute ago (issued as a function: asked before every connection).
const bob = channel('room-a', { url: yard.url, token: async () => issue('bob', ['room-a'], -60) })
bob.on('error', () => {})
const expired = await outcome(bob.echo())
if (expired?.code !== 'unauthorized') fail(`expired token: expected unauthorized, got ${expired?.code ?? 'admitted'}`)
refused++
console.log(`expired token: refused at connect (${expired.code}; server log: ${refusals.shift()})`)

console.log(`auth example: 1 admitted, ${refused} refused as expected`)
clearTimeout(giveUp)
for (const c of channels) c.close()
await yard.close()

function fail (why) {
  console.error(`auth example: ${why}`)
  process.exit(1)
}

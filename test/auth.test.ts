// test/auth.test.ts — SPEC §7 auth against a real server: authenticate(request, token) at connect
// (the client's token option, a string or an async function), authorize(identity, namespace,
// endpoint) per stream, the origin allow-list; refusals are coded, surface on ready(), and a
// permanent refusal stops the client from reconnecting.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import WebSocket from 'ws'
import { SignalChannel, SignalyardError } from 'signalyard'
import type { ServerOptions, Yard } from 'signalyard/server'
import { SUBPROTOCOL } from '../src/protocol/frames.js'
import { sleep, startYard, within } from './helpers.js'

async function withYard (options: ServerOptions, body: (yard: Yard, upgrades: () => number) => Promise<void>): Promise<void> {
  const yard = await startYard(options)
  let count = 0
  yard.server.on('upgrade', () => { count++ })
  try {
    await body(yard, () => count)
  } finally {
    await yard.close()
  }
}

const settle = (p: Promise<unknown>): Promise<SignalyardError | null> =>
  within(p.then(() => null, (e: SignalyardError) => e), 3000, 'ready() settles')

const TOKENS: Record<string, { user: string, rooms: string[] }> = {
  't-alice': { user: 'alice', rooms: ['lobby', 'alice-only'] },
  't-bob': { user: 'bob', rooms: ['lobby'] }
}
const auth: ServerOptions = {
  authenticate: async (_req, token) => {
    const identity = token === null ? undefined : TOKENS[token]
    if (identity === undefined) throw new Error('bad token')
    return identity
  },
  authorize: (identity, namespace) => (identity as { rooms: string[] }).rooms.includes(namespace)
}

test('a valid token connects; authorize lets each identity into its namespaces only (forbidden otherwise)', () => withYard(auth, async (yard) => {
  const alice = SignalChannel('alice-only', { url: `${yard.url}?c=alice`, token: 't-alice' })
  const bobLobby = SignalChannel('lobby', { url: `${yard.url}?c=bob`, token: async () => 't-bob' })
  const bobPrivate = SignalChannel('alice-only', { url: `${yard.url}?c=bob`, token: 't-bob' })
  try {
    const a = alice.echo()
    const b = bobLobby.echo()
    const denied = bobPrivate.echo()
    assert.is(await settle(a.ready()), null)
    assert.is(await settle(b.ready()), null)
    const err = await settle(denied.ready())
    assert.is(err?.code, 'forbidden')
    assert.is(bobLobby.state, 'open', 'a refused stream does not touch the connection')
    const got = new Promise((resolve) => b.once('data', resolve))
    b.send('still here')
    assert.is(await within(got, 2000, 'echo'), 'still here')
  } finally {
    alice.close(); bobLobby.close(); bobPrivate.close()
  }
}))

test('a bad or missing token: ready() rejects with unauthorized, the channel closes and does not reconnect', () => withYard(auth, async (yard, upgrades) => {
  for (const token of ['t-mallory', undefined]) {
    const before = upgrades()
    const channel = SignalChannel('lobby', { url: `${yard.url}?c=${String(token)}`, token, reconnect: { minDelay: 10, maxDelay: 20 } })
    const errors: SignalyardError[] = []
    channel.on('error', (e) => errors.push(e))
    try {
      const err = await settle(channel.echo().ready())
      assert.is(err?.code, 'unauthorized')
      assert.is(channel.state, 'closed')
      await sleep(300) // with a 10–20 ms backoff, a reconnecting client would have tried many times
      assert.is(upgrades() - before, 1, 'one attempt, no reconnects')
      assert.ok(errors.some((e) => e.code === 'unauthorized'))
    } finally {
      channel.close()
    }
  }
}))

test('the token function is asked again before every connection', () => withYard(auth, async (yard) => {
  let asked = 0
  const channel = SignalChannel('lobby', { url: `${yard.url}?c=fn`, token: async () => { asked++; return 't-alice' }, reconnect: { minDelay: 10, maxDelay: 20 } })
  try {
    const echo = channel.echo()
    await within(echo.ready(), 2000, 'ready')
    assert.is(asked, 1)
    // the server drops every connection: the client reconnects with a fresh token
    const reopened = new Promise<void>((resolve) => echo.once('open', () => resolve()))
    const port = yard.port // read before close: a closed yard has no address
    await yard.close()
    const again = await startYard({ ...auth, port })
    try {
      await within(reopened, 5000, 'reopened on the restarted server')
      assert.ok(asked >= 2, `asked ${asked} times`)
    } finally {
      channel.close()
      await again.close()
    }
  } finally {
    channel.close()
  }
}))

test('origins: an Origin outside the allow-list is closed with 4403 forbidden; an allowed one and none pass', () => withYard({ origins: ['https://app.example'] }, async (yard) => {
  const attempt = (origin?: string): Promise<number> => new Promise((resolve) => {
    const ws = new WebSocket(yard.url, SUBPROTOCOL, origin === undefined ? {} : { origin })
    ws.on('message', () => { ws.close(1000) })
    ws.on('close', (code) => resolve(code))
    ws.on('error', () => {})
  })
  assert.is(await attempt('https://evil.example'), 4403)
  assert.is(await attempt('https://app.example'), 1000)
  assert.is(await attempt(), 1000)
}))

test.run()

// test/metrics.test.ts — GET /metrics (SPEC §2): Prometheus text with connections, namespaces,
// frames and bytes in/out per endpoint, relay pairs, KV keys and refusals by code, counted from
// real traffic against a real server.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { SignalChannel } from 'signalyard'
import { FrameType } from '../src/protocol/frames.js'
import { rawClient, type RawClient } from './raw-client.js'
import { fetchText, startYard, within } from './helpers.js'

/** `name{labels} value` lines as a map. */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

test('GET /metrics counts what happened: connections, namespaces, frames and bytes per endpoint, relay pairs, KV keys, refusals', async () => {
  const yard = await startYard()
  const raws: RawClient[] = []
  const a = SignalChannel('m1', `${yard.url}?c=a`)
  const b = SignalChannel('m1', `${yard.url}?c=b`)
  try {
    const echo = a.echo()
    const echoB = b.echo()
    const kv = a.kv()
    const ra = a.relay({ local: 'x', remote: 'y' })
    const rb = b.relay({ local: 'y', remote: 'x' })
    await within(Promise.all([echo.ready(), echoB.ready(), kv.ready(), ra.ready(), rb.ready()]), 2000, 'streams ready')
    for (let i = 0; i < 10; i++) echo.send('hello')
    await kv.set('k', 'v')
    await kv.set('k2', 'v2')
    const bad = await rawClient(yard, raws)
    bad.sendRaw(new Uint8Array([1, 2, 3]))
    await bad.take((f) => f.type === FrameType.Error)
    const res = await fetchText(yard.url.replace('ws:', 'http:') + 'metrics')
    assert.is(res.status, 200)
    assert.match(res.type, 'text/plain')
    assert.match(res.body, '# TYPE signalyard_frames_in_total counter')
    const m = parse(res.body)
    assert.is(m.get('signalyard_connections'), 3)
    assert.is(m.get('signalyard_namespaces'), 1)
    assert.is(m.get('signalyard_relay_pairs'), 1)
    assert.is(m.get('signalyard_kv_keys'), 2)
    assert.ok((m.get('signalyard_frames_in_total{endpoint="echo"}') ?? 0) >= 12, 'two OPENs and ten DATA on echo')
    assert.ok((m.get('signalyard_frames_out_total{endpoint="echo"}') ?? 0) >= 20, 'ten publishes to two connections')
    assert.ok((m.get('signalyard_bytes_out_total{endpoint="echo"}') ?? 0) > (m.get('signalyard_frames_out_total{endpoint="echo"}') ?? 0) * 10)
    assert.ok((m.get('signalyard_frames_in_total{endpoint="kv"}') ?? 0) >= 3, 'OPEN and two sets')
    assert.is(m.get('signalyard_refusals_total{code="bad-frame"}'), 1)
    assert.is((await yard.metrics()).split('\n').filter((l) => l.startsWith('signalyard_kv_keys'))[0], 'signalyard_kv_keys 2')
  } finally {
    for (const r of raws) r.ws.terminate()
    a.close()
    b.close()
    await yard.close()
  }
})

test.run()
